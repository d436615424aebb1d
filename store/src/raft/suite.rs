//! openraft's own storage test suite, run on our log store and state machine over both engines.

use std::sync::Arc;

use openraft::testing::{StoreBuilder, Suite};

use super::{LogStore, NodeId, StateMachine, TypeConfig};
use crate::engine::{MemoryEngine, RocksEngine};

struct Rocks;

impl StoreBuilder<TypeConfig, LogStore<RocksEngine>, StateMachine<RocksEngine>, tempfile::TempDir> for Rocks {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore<RocksEngine>, StateMachine<RocksEngine>), openraft::StorageError<NodeId>>
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Arc::new(RocksEngine::open(dir.path()).expect("open rocksdb"));
        Ok((dir, LogStore::new(engine.clone(), Arc::new(crate::raft::LeaderLog::new(1))), StateMachine::open(engine).expect("open state machine")))
    }
}

struct Memory;

impl StoreBuilder<TypeConfig, LogStore<MemoryEngine>, StateMachine<MemoryEngine>, ()> for Memory {
    async fn build(&self) -> Result<((), LogStore<MemoryEngine>, StateMachine<MemoryEngine>), openraft::StorageError<NodeId>> {
        let engine = Arc::new(MemoryEngine::new());
        Ok(((), LogStore::new(engine.clone(), Arc::new(crate::raft::LeaderLog::new(1))), StateMachine::open(engine).expect("open state machine")))
    }
}

#[test]
fn openraft_suite_on_rocksdb() {
    Suite::test_all(Rocks).expect("openraft storage suite");
}

#[test]
fn openraft_suite_on_memory() {
    Suite::test_all(Memory).expect("openraft storage suite");
}
