//! openraft glue: the type config, the RocksDB-backed log store and state machine, and the
//! network between members.
//!
//! Writes always go through raft, even with one member, so the single-member and the
//! three-member store share one code path.

// openraft's `StorageError` is large, and its traits fix it as our error type.
#![allow(clippy::result_large_err)]

mod durability;
mod faults;
mod log_store;
mod network;
mod state_machine;
#[cfg(test)]
mod suite;

pub use durability::LeaderLog;
pub use faults::{Dropped, LinkFault, LinkFaults};
pub use log_store::LogStore;
pub use network::{Network, PeerClients, PeerContacts};
pub use state_machine::{
    parse_snapshot, AppliedEvents, CommandResponse, ForwardedWrites, StateMachine, StateMachineHandle, WriteOutcome,
};

use std::io::Cursor;

use serde::{Deserialize, Serialize};

/// A member's raft id (etcd's member ID).
pub type NodeId = u64;

/// What raft knows about a member: etcd's `Member` fields that are part of membership.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Human-readable name (`--name`).
    pub name: String,
    /// URLs other members reach it at (`--initial-advertise-peer-urls`).
    pub peer_urls: Vec<String>,
    /// URLs clients reach it at (`--advertise-client-urls`).
    pub client_urls: Vec<String>,
    /// Added as a voter (`member add` without `--learner`): it joins as a learner and whichever
    /// member leads promotes it once it is in sync. Kept in the membership so that a leader
    /// change before then does not strand it as a learner.
    pub promote_when_in_sync: bool,
}

impl std::fmt::Display for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}({})", self.name, self.peer_urls.join(","))
    }
}

/// A raft log payload: an encoded `storepb::InternalBatch` of requests.
///
/// Kept as bytes so the log stores exactly what was proposed, in the same wire format the
/// clients used, and decoding happens once, at apply.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command(#[serde(with = "serde_bytes_compat")] pub Vec<u8>);

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Command({} bytes)", self.0.len())
    }
}

/// bincode writes `Vec<u8>` as a length and raw bytes either way; this keeps JSON (used only in
/// debug output) compact as well.
mod serde_bytes_compat {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        Vec::<u8>::deserialize(d)
    }
}

openraft::declare_raft_types!(
    /// The store's raft types.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        Node = Member,
        SnapshotData = Cursor<Vec<u8>>,
);

/// The store's raft instance.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id.
pub type LogId = openraft::LogId<NodeId>;
/// Storage errors as openraft wants them.
pub type StorageError = openraft::StorageError<NodeId>;
/// Membership as recorded in the state machine.
pub type StoredMembership = openraft::StoredMembership<NodeId, Member>;

/// Encodes a value we persist for raft (entries, votes, membership).
pub(crate) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Serializing plain data structs to a Vec cannot fail.
    bincode::serialize(v).expect("bincode serialization of in-memory data")
}

/// Decodes a value written by [`encode`].
pub(crate) fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> crate::Result<T> {
    bincode::deserialize(b).map_err(crate::Error::corrupt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_entries_round_trip() {
        let e = Entry {
            log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(3, 7), 42),
            payload: openraft::EntryPayload::Normal(Command(vec![1, 2, 3, 255])),
        };
        let back: Entry = decode(&encode(&e)).unwrap();
        assert_eq!(back.log_id, e.log_id);
        match back.payload {
            openraft::EntryPayload::Normal(c) => assert_eq!(c.0, vec![1, 2, 3, 255]),
            other => panic!("decoded {other:?}"),
        }
    }

    #[tokio::test]
    async fn state_machine_reopens_at_its_last_applied_entry() {
        use openraft::storage::RaftStateMachine;
        use prost::Message;

        use crate::engine::RocksEngine;
        use crate::pb::etcdserverpb::{PutRequest, RangeRequest};
        use crate::pb::storepb::{internal_request, InternalBatch, InternalRequest};

        let dir = tempfile::tempdir().unwrap();
        let log_id = openraft::LogId::new(openraft::CommittedLeaderId::new(1, 9), 5);
        {
            let engine = std::sync::Arc::new(RocksEngine::open(dir.path()).unwrap());
            let mut sm = StateMachine::open(engine).unwrap();
            let put = PutRequest { key: b"k".to_vec(), value: b"v".to_vec(), ..Default::default() };
            let cmd = InternalRequest { id: 0, request: Some(internal_request::Request::Put(put)) };
            let batch = InternalBatch { requests: vec![cmd] };
            let entry = Entry { log_id, payload: openraft::EntryPayload::Normal(Command(batch.encode_to_vec())) };
            let out = sm.apply([entry]).await.unwrap();
            assert!(out[0].results[0].0.is_ok());
        }
        let engine = std::sync::Arc::new(RocksEngine::open(dir.path()).unwrap());
        let mut sm = StateMachine::open(engine).unwrap();
        let (applied, _) = sm.applied_state().await.unwrap();
        assert_eq!(applied, Some(log_id));
        let got = sm.handle().mvcc().range(&RangeRequest { key: b"k".to_vec(), ..Default::default() }).unwrap();
        assert_eq!(got.kvs[0].value, b"v");
    }
}
