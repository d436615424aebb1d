//! The storage engine seam: a tiny ordered key-value interface with atomic write batches.
//! [`RocksEngine`] is the real one; [`MemoryEngine`] serves tests of pure logic. Both pass
//! the same conformance suite (`engine::conformance`).

mod memory;
mod rocks;

pub use memory::MemoryEngine;
pub use rocks::RocksEngine;

use crate::keys::Cf;
use crate::Result;

/// One change inside a [`WriteBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOp {
    /// Set `key` to `value`.
    Put {
        /// Column family.
        cf: Cf,
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
    },
    /// Remove `key`.
    Delete {
        /// Column family.
        cf: Cf,
        /// Key.
        key: Vec<u8>,
    },
    /// Remove every key in `[start, end)`.
    DeleteRange {
        /// Column family.
        cf: Cf,
        /// First key removed.
        start: Vec<u8>,
        /// First key kept.
        end: Vec<u8>,
    },
}

/// Changes applied all together or not at all.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WriteBatch {
    /// The changes, applied in order.
    pub ops: Vec<BatchOp>,
}

impl WriteBatch {
    /// Adds a put.
    pub fn put(&mut self, cf: Cf, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(BatchOp::Put { cf, key: key.into(), value: value.into() });
    }

    /// Adds a delete.
    pub fn delete(&mut self, cf: Cf, key: impl Into<Vec<u8>>) {
        self.ops.push(BatchOp::Delete { cf, key: key.into() });
    }

    /// Adds a range delete of `[start, end)`.
    pub fn delete_range(&mut self, cf: Cf, start: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) {
        self.ops.push(BatchOp::DeleteRange { cf, start: start.into(), end: end.into() });
    }

    /// True when the batch holds no change.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// What a scan callback tells the scan to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// Keep going.
    Continue,
    /// Stop here.
    Stop,
}

/// Receives `(column family, key, value)` from [`Engine::scan_consistent`].
pub type Visitor<'a> = dyn FnMut(Cf, &[u8], &[u8]) + 'a;

/// How far a write must have reached when [`Engine::write`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// On stable storage (WAL fsynced): survives power loss.
    Synced,
    /// In the WAL, not yet fsynced: survives a crash of the process; the next synced write (or
    /// the OS) makes it durable.
    Logged,
    /// In memory until the engine flushes (or [`Engine::flush`]): only for state that can be
    /// rebuilt after a crash, i.e. the state machine, which re-applies the raft log from the
    /// last applied entry that reached disk. Saves a WAL write per applied request.
    Unlogged,
}

/// An ordered key-value engine with column families and atomic batches.
pub trait Engine: Send + Sync + 'static {
    /// The value at `key`, if any.
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Visits keys in `[start, end)` (`end = None`: to the last key) in ascending order.
    fn scan(
        &self,
        cf: Cf,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> Scan,
    ) -> Result<()>;

    /// The greatest key and its value, if the column family is not empty.
    fn last(&self, cf: Cf) -> Result<Option<(Vec<u8>, Vec<u8>)>>;

    /// Applies `batch` atomically, as durable as `durability` says.
    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<()>;

    /// Makes every earlier [`Durability::Logged`] write durable.
    fn sync(&self) -> Result<()>;

    /// Makes every earlier write durable, [`Durability::Unlogged`] ones included.
    fn flush(&self) -> Result<()>;

    /// Visits every key of `cfs`, in order, all from one point-in-time view, while writes go on.
    fn scan_consistent(&self, cfs: &[Cf], visit: &mut Visitor<'_>) -> Result<()>;

    /// Approximate bytes the engine occupies (etcd's `dbSize`).
    fn size_bytes(&self) -> u64;
}

#[cfg(test)]
pub(crate) mod conformance;
