//! [`Index`]: the in-memory key index, key → [`KeyIndex`], rebuilt from `Cf::Kv` at open.
//!
//! Invariant: the revisions in the index are exactly the records in `Cf::Kv`. That lets a range
//! trust every revision it finds, and lets compaction list the records to delete without
//! scanning the disk.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::key_index::{KeyAt, KeyIndex};
use super::{KeyRange, Revision};

/// Key → revisions of that key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Index {
    keys: BTreeMap<Vec<u8>, KeyIndex>,
}

impl Index {
    /// `key` as of main revision `at`.
    pub fn get(&self, key: &[u8], at: i64) -> Option<KeyAt> {
        self.keys.get(key)?.get(at)
    }

    /// The key indexes whose keys fall in `range`, ascending.
    fn span<'a>(&'a self, range: &'a KeyRange) -> Box<dyn Iterator<Item = (&'a Vec<u8>, &'a KeyIndex)> + 'a> {
        match range {
            KeyRange::Key(k) => Box::new(self.keys.get_key_value(k).into_iter()),
            KeyRange::Span { start, end } => {
                if end.as_ref().is_some_and(|e| e <= start) {
                    return Box::new(std::iter::empty());
                }
                let upper = end.as_ref().map_or(Bound::Unbounded, Bound::Excluded);
                Box::new(self.keys.range::<Vec<u8>, _>((Bound::Included(start), upper)))
            }
        }
    }

    /// Every key in `range` that existed at `at`, with the revision holding its value.
    pub fn range<'a>(&'a self, range: &'a KeyRange, at: i64) -> impl Iterator<Item = (&'a [u8], Revision)> + 'a {
        self.span(range).filter_map(move |(k, ki)| Some((k.as_slice(), ki.get(at)?.modified)))
    }

    /// Records a put of `key` at `rev`; returns where the key now stands.
    pub fn put(&mut self, key: &[u8], rev: Revision) -> KeyAt {
        let ki = self.keys.entry(key.to_vec()).or_default();
        ki.put(rev);
        ki.get(rev.main).expect("a key exists right after its put")
    }

    /// Records a tombstone; false (nothing changed) if `key` does not exist.
    pub fn tombstone(&mut self, key: &[u8], rev: Revision) -> bool {
        self.keys.get_mut(key).is_some_and(|ki| ki.tombstone(rev))
    }

    /// Replays a put read from disk (see [`KeyIndex::restore_put`]).
    pub fn restore_put(&mut self, key: &[u8], rev: Revision, created: i64, version: i64) {
        self.keys.entry(key.to_vec()).or_default().restore_put(rev, created, version);
    }

    /// Replays a tombstone read from disk (see [`KeyIndex::restore_tombstone`]).
    pub fn restore_tombstone(&mut self, key: &[u8], rev: Revision) {
        self.keys.entry(key.to_vec()).or_default().restore_tombstone(rev);
    }

    /// The revisions compaction at `at` would remove, over all keys.
    pub fn compacted_revisions(&self, at: i64) -> Vec<Revision> {
        let mut out: Vec<Revision> = self.keys.values().flat_map(|ki| ki.compacted_revisions(at)).collect();
        out.sort_unstable();
        out
    }

    /// Compacts every key at `at` and forgets keys with nothing left.
    pub fn compact(&mut self, at: i64) {
        self.keys.retain(|_, ki| {
            ki.compact(at);
            !ki.is_empty()
        });
    }

    /// Number of keys (live or with history) in the index.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }
}
