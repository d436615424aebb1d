//! ferrokube's etcd-compatible store: MVCC revisions on RocksDB, replicated with openraft,
//! served as the etcd v3 gRPC API.
//!
//! Layers, one direction: [`mvcc`] (pure logic over an [`engine::Engine`]) ← [`raft`] (openraft
//! log store, state machine, network) ← [`server`] (tonic services, the only place errors become
//! gRPC statuses).
#![deny(clippy::all)]

pub mod engine;
mod error;
pub mod keys;
pub mod mvcc;
pub mod pb;
pub mod raft;
pub mod server;

pub use error::{Error, Result};
