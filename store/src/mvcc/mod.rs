//! Multi-version concurrency control: pure logic over an [`crate::engine::Engine`].
//!
//! etcd's data model, written for ferrokube: every write that changes something gets the next
//! main [`Revision`]; each key's history is kept as generations in a [`KeyIndex`]; ranges read
//! any revision not yet compacted; txns compare then run one op list atomically; leases own keys
//! and delete them all in one revision when revoked. No RocksDB, no openraft here: the
//! [`Mvcc`] store works over the `Engine` trait and is tested on the in-memory engine.
//!
//! Files: `revision` (the clock), `record` (the `Cf::Kv` value), `key_index` (one key's
//! generations), `index` (all keys), `range` (key ranges and Range evaluation), `validate`
//! (etcd's request checks), `txn` (a write in progress: put, delete, range, nested txn),
//! `lease` (lease table), `reader` (reads of committed state), `store` (the [`Mvcc`] store).

mod index;
mod key_index;
mod lease;
mod range;
mod reader;
mod record;
mod revision;
mod store;
mod txn;
mod validate;

#[cfg(test)]
mod conformance;
#[cfg(test)]
mod model_test;

pub use key_index::{KeyAt, KeyIndex};
pub use lease::LeaseInfo;
pub use range::KeyRange;
pub use record::{Record, RecordKind};
pub use revision::Revision;
pub use store::{Applied, ApplyResponse, Mvcc};
pub use validate::validate;

/// Most operations (compares, success ops, failure ops, each counted apart) in one txn, as
/// etcd's default `--max-txn-ops`.
pub const MAX_TXN_OPS: usize = 128;

/// Longest lease TTL in seconds a grant may ask for (etcd's `MaxLeaseTTL`).
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;
