//! [`Reader`]: reads of the committed state (index + records) under the caller's state lock.

use crate::engine::Engine;
use crate::keys::{revision_key, Cf};
use crate::pb::mvccpb::KeyValue;
use crate::{Error, Result};

use super::range::Entry;
use super::record::Record;
use super::store::State;
use super::{KeyRange, Revision};

/// The committed store as seen through a held state lock: while it lives, compaction cannot
/// remove a record the index names.
pub(super) struct Reader<'a, E: Engine> {
    /// Index, revisions and leases.
    pub state: &'a State,
    /// Where the records are.
    pub engine: &'a E,
}

impl<'a, E: Engine> Reader<'a, E> {
    /// The record at `rev`; the index named it, so its absence is corruption.
    pub fn record(&self, rev: Revision) -> Result<Record> {
        let bytes = self
            .engine
            .get(Cf::Kv, &revision_key(rev))?
            .ok_or_else(|| Error::corrupt(format!("the key index names revision {rev} but Cf::Kv has no record")))?;
        Record::decode(&bytes)
    }

    /// The key-value stored at `rev`.
    pub fn kv(&self, rev: Revision) -> Result<KeyValue> {
        Ok(self.record(rev)?.kv)
    }

    /// `key` as of main revision `at`, if it existed then.
    pub fn get(&self, key: &[u8], at: i64) -> Result<Option<KeyValue>> {
        match self.state.index.get(key, at) {
            Some(k) => Ok(Some(self.kv(k.modified)?)),
            None => Ok(None),
        }
    }

    /// The keys of `range` that existed at `at`, ascending, with their record revisions.
    pub fn entries<'r>(&'r self, range: &'r KeyRange, at: i64) -> impl Iterator<Item = (&'r [u8], Revision)> + 'r {
        self.state.index.range(range, at)
    }

    /// The keys of `range` at `at` as range entries.
    pub fn stored(&self, range: &KeyRange, at: i64) -> Vec<Entry> {
        self.entries(range, at).map(|(_, rev)| Entry::Stored(rev)).collect()
    }

    /// Resolves a requested read revision as etcd's `rangeKeys`: `<= 0` is the current one,
    /// beyond the current one is `FutureRevision`, below the compacted one is `Compacted`.
    pub fn read_revision(&self, requested: i64) -> Result<i64> {
        let (current, compact) = (self.state.current, self.state.compact);
        if requested > current {
            return Err(Error::FutureRevision);
        }
        let rev = if requested <= 0 { current } else { requested };
        if rev < compact {
            return Err(Error::Compacted { compact_revision: compact });
        }
        Ok(rev)
    }
}
