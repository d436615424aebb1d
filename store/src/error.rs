//! The store's one semantic error enum. It is translated to a gRPC status in exactly one place,
//! `server::status`; everything below the wire speaks only this type.

use serde::{Deserialize, Serialize};

/// `Result` with the store's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the store, by meaning rather than by origin.
///
/// Serializable because an error decided while applying a raft entry is part of the
/// deterministic outcome of that entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum Error {
    /// A request named no key.
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// `ignore_value`/`ignore_lease` on a key that does not exist.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// `ignore_value` together with a value.
    #[error("etcdserver: value is provided")]
    ValueProvided,
    /// `ignore_lease` together with a lease.
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    /// A txn with more operations than allowed.
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    /// A txn that writes the same key twice (or writes a key it deletes).
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// A request larger than `--max-request-bytes`.
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    /// Malformed request that no more specific variant covers.
    #[error("etcdserver: {0}")]
    InvalidArgument(String),
    /// A read or watch below the compacted revision.
    #[error("mvcc: required revision has been compacted")]
    Compacted {
        /// The revision history starts after.
        compact_revision: i64,
    },
    /// A read at a revision the store has not reached.
    #[error("mvcc: required revision is a future revision")]
    FutureRevision,
    /// A lease id that does not exist.
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// Granting a lease id that already exists.
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    /// A lease TTL beyond the maximum.
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    /// A member id that does not exist.
    #[error("etcdserver: member not found")]
    MemberNotFound,
    /// A membership or leadership change the current membership does not allow: etcd's
    /// FailedPrecondition answers, e.g. "Peer URLs already exists", "can only promote a learner
    /// member", "bad leader transferee". The text is etcd's, without the "etcdserver: " prefix.
    #[error("etcdserver: {0}")]
    MembershipConflict(String),
    /// This member is not the leader and cannot serve the request itself.
    #[error("etcdserver: not leader")]
    NotLeader,
    /// A membership change would leave fewer reachable voters than a quorum
    /// (`--strict-reconfig-check`).
    #[error("etcdserver: unhealthy cluster")]
    Unhealthy,
    /// No leader is known right now.
    #[error("etcdserver: no leader")]
    NoLeader,
    /// Leadership changed while the request was in flight; its outcome is unknown.
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    /// The request did not complete in time; its outcome is unknown.
    #[error("etcdserver: request timed out")]
    Timeout,
    /// The server is shutting down.
    #[error("etcdserver: server stopped")]
    Stopped,
    /// The operation exists in etcd's API but is not supported here.
    #[error("etcdserver: {0} is not supported")]
    Unsupported(String),
    /// Disk or engine failure. Fatal for the member: state may no longer be trusted.
    #[error("storage: {0}")]
    Storage(String),
    /// Stored bytes that do not decode: corruption or a bug.
    #[error("corrupt data: {0}")]
    Corrupt(String),
}

impl Error {
    /// Wraps an engine or I/O failure.
    pub fn storage(e: impl std::fmt::Display) -> Self {
        Error::Storage(e.to_string())
    }

    /// Wraps a decoding failure of bytes we wrote ourselves.
    pub fn corrupt(e: impl std::fmt::Display) -> Self {
        Error::Corrupt(e.to_string())
    }
}
