//! [`KeyIndex`]: every revision of one key still present in `Cf::Kv`, grouped into generations.
//!
//! A generation is one lifetime of the key: from the put that created it to the tombstone that
//! deleted it. A delete appends the tombstone to the current generation and opens a new, empty
//! one. The last generation is the open one (empty while the key does not exist).
//!
//! Worked example: put(1.0); put(2.0); tombstone(3.0); put(4.0); tombstone(5.0) on key "foo" gives
//!
//! ```text
//! generations:
//!     {empty}                 <- open: "foo" does not exist now
//!     {4.0, 5.0(t)}
//!     {1.0, 2.0, 3.0(t)}
//! ```
//!
//! `get(2)` is 2.0 (version 2), `get(3)` is nothing (deleted at 3), `get(4)` is 4.0 (version 1,
//! created at 4), `get(5)` is nothing.
//!
//! Compaction at R keeps, per key, the latest revision <= R unless it is a tombstone, and drops
//! every other revision <= R (so whole generations that ended at or before R disappear):
//!
//! ```text
//! compact(2): {empty} {4.0, 5.0(t)} {2.0, 3.0(t)}
//! compact(4): {empty} {4.0, 5.0(t)}
//! compact(5): {empty}                 <- nothing left: the key leaves the index
//! ```
//!
//! (etcd keeps `5.0(t)` until the next compaction; we drop it at once, as etcd <= 3.4.33 did on
//! disk, so that the index always mirrors exactly the records in `Cf::Kv`.)

use super::Revision;

/// One lifetime of a key: from creation to (optionally) its tombstone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Generation {
    /// Main revision of the put that created this lifetime (the clients' `create_revision`).
    created: i64,
    /// Version of the last revision in `revs` (a tombstone counts, as in etcd).
    ver: i64,
    /// Revisions still on disk, ascending; in a closed generation the last one is the tombstone.
    revs: Vec<Revision>,
}

impl Generation {
    fn is_empty(&self) -> bool {
        self.revs.is_empty()
    }

    /// Index of the last revision with `main <= at`.
    fn last_at(&self, at: i64) -> Option<usize> {
        self.revs.partition_point(|r| r.main <= at).checked_sub(1)
    }
}

/// Where a key stood at some revision: what [`KeyIndex::get`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyAt {
    /// The revision of the record holding the key's value.
    pub modified: Revision,
    /// Main revision that created the key's current lifetime.
    pub created: i64,
    /// The key's version at that revision (1 for the creating put).
    pub version: i64,
}

/// The revisions of one key, by generation (see the module docs for a worked example).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyIndex {
    /// Oldest first; never empty; only the last one may be empty.
    generations: Vec<Generation>,
}

impl Default for KeyIndex {
    fn default() -> Self {
        Self { generations: vec![Generation::default()] }
    }
}

impl KeyIndex {
    /// An index with no revisions.
    pub fn new() -> Self {
        Self::default()
    }

    fn open(&mut self) -> &mut Generation {
        self.generations.last_mut().expect("a key index always has a generation")
    }

    fn last_rev(&self) -> Option<Revision> {
        self.generations.iter().rev().find_map(|g| g.revs.last().copied())
    }

    /// Records a put at `rev` (which must be greater than every revision already recorded).
    pub fn put(&mut self, rev: Revision) {
        debug_assert!(self.last_rev().is_none_or(|last| rev > last), "put {rev} is not after {:?}", self.last_rev());
        let g = self.open();
        if g.is_empty() {
            g.created = rev.main;
            g.ver = 0;
        }
        g.revs.push(rev);
        g.ver += 1;
    }

    /// Records a put read back from disk, where earlier revisions of its lifetime may already be
    /// compacted away: `created` and `version` come from the stored key-value.
    pub fn restore_put(&mut self, rev: Revision, created: i64, version: i64) {
        let g = self.open();
        if g.is_empty() {
            g.created = created;
        }
        g.revs.push(rev);
        g.ver = version;
    }

    /// Records a tombstone at `rev` and opens a new generation. Returns false (and changes
    /// nothing) when the key does not currently exist: there is nothing to delete.
    pub fn tombstone(&mut self, rev: Revision) -> bool {
        if self.open().is_empty() {
            return false;
        }
        self.put(rev);
        self.generations.push(Generation::default());
        true
    }

    /// Records a tombstone read back from disk. Unlike [`KeyIndex::tombstone`] it accepts a
    /// tombstone whose puts are gone, so that the index mirrors every record on disk.
    pub fn restore_tombstone(&mut self, rev: Revision) {
        let g = self.open();
        g.revs.push(rev);
        g.ver += 1;
        self.generations.push(Generation::default());
    }

    /// True when no revision is recorded (the key can leave the index).
    pub fn is_empty(&self) -> bool {
        self.generations.iter().all(Generation::is_empty)
    }

    /// True when the key exists at the newest revision.
    pub fn is_live(&self) -> bool {
        self.generations.last().is_some_and(|g| !g.is_empty())
    }

    /// The key as of main revision `at`, or `None` if it did not exist then.
    pub fn get(&self, at: i64) -> Option<KeyAt> {
        let last = self.generations.len() - 1;
        for (i, g) in self.generations.iter().enumerate().rev() {
            let (Some(first), Some(tomb)) = (g.revs.first(), g.revs.last()) else { continue };
            if i != last && tomb.main <= at {
                // `at` falls after this lifetime ended and before the next began.
                return None;
            }
            if first.main <= at {
                let n = g.last_at(at)?;
                let version = g.ver - (g.revs.len() - 1 - n) as i64;
                return Some(KeyAt { modified: g.revs[n], created: g.created, version });
            }
        }
        None
    }

    /// Every recorded revision, ascending.
    pub fn revisions(&self) -> impl Iterator<Item = Revision> + '_ {
        self.generations.iter().flat_map(|g| g.revs.iter().copied())
    }

    /// What compaction at `at` cuts: (whole generations dropped, revisions dropped from the
    /// first remaining generation).
    fn cut(&self, at: i64) -> (usize, usize) {
        let mut gens = 0;
        // Closed generations whose tombstone is at or before `at` are entirely history.
        while gens + 1 < self.generations.len() {
            match self.generations[gens].revs.last() {
                Some(tomb) if tomb.main <= at => gens += 1,
                _ => break,
            }
        }
        // In the first surviving generation keep the latest revision <= `at` (never its
        // tombstone: that one is > `at`, or the loop above would have dropped the generation).
        let revs = self.generations[gens].last_at(at).unwrap_or(0);
        (gens, revs)
    }

    /// The revisions [`KeyIndex::compact`] at `at` would remove, ascending.
    pub fn compacted_revisions(&self, at: i64) -> Vec<Revision> {
        let (gens, revs) = self.cut(at);
        let mut out: Vec<Revision> = self.generations[..gens].iter().flat_map(|g| g.revs.iter().copied()).collect();
        out.extend_from_slice(&self.generations[gens].revs[..revs]);
        out
    }

    /// Drops every revision <= `at` except the latest non-tombstone one (see module docs).
    pub fn compact(&mut self, at: i64) {
        let (gens, revs) = self.cut(at);
        self.generations.drain(..gens);
        self.generations[0].revs.drain(..revs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    /// put(1); put(2); tombstone(3); put(4); tombstone(5), the module docs' example.
    fn foo() -> KeyIndex {
        let mut ki = KeyIndex::new();
        ki.put(r(1));
        ki.put(r(2));
        assert!(ki.tombstone(r(3)));
        ki.put(r(4));
        assert!(ki.tombstone(r(5)));
        ki
    }

    fn at(modified: i64, created: i64, version: i64) -> Option<KeyAt> {
        Some(KeyAt { modified: r(modified), created, version })
    }

    #[test]
    fn get_walks_generations() {
        let ki = foo();
        assert_eq!(ki.get(0), None);
        assert_eq!(ki.get(1), at(1, 1, 1));
        assert_eq!(ki.get(2), at(2, 1, 2));
        assert_eq!(ki.get(3), None, "deleted at 3");
        assert_eq!(ki.get(4), at(4, 4, 1), "a new generation restarts version and create_revision");
        assert_eq!(ki.get(5), None);
        assert_eq!(ki.get(100), None);
        assert!(!ki.is_live());
        assert_eq!(ki.revisions().map(|r| r.main).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn tombstone_of_a_missing_key_does_nothing() {
        let mut ki = KeyIndex::new();
        assert!(!ki.tombstone(r(1)));
        assert!(ki.is_empty());
        let mut ki = foo();
        assert!(!ki.tombstone(r(6)), "already deleted at 5");
        assert_eq!(ki, foo());
    }

    #[test]
    fn compaction_by_worked_example() {
        let mut ki = foo();
        assert_eq!(ki.compacted_revisions(1), vec![]);
        ki.compact(1);
        assert_eq!(ki, foo(), "1.0 is the latest <= 1, kept");

        assert_eq!(ki.compacted_revisions(2), vec![r(1)]);
        ki.compact(2);
        assert_eq!(ki.revisions().map(|r| r.main).collect::<Vec<_>>(), vec![2, 3, 4, 5]);
        assert_eq!(ki.get(2), at(2, 1, 2), "version and create_revision survive compaction");
        assert_eq!(ki.get(4), at(4, 4, 1));

        assert_eq!(ki.compacted_revisions(4), vec![r(2), r(3)]);
        ki.compact(4);
        assert_eq!(ki.revisions().map(|r| r.main).collect::<Vec<_>>(), vec![4, 5]);
        assert_eq!(ki.get(4), at(4, 4, 1));

        assert_eq!(ki.compacted_revisions(5), vec![r(4), r(5)]);
        ki.compact(5);
        assert!(ki.is_empty(), "a key deleted at or before the compaction leaves the index");
    }

    #[test]
    fn compaction_keeps_the_live_value() {
        let mut ki = KeyIndex::new();
        for m in [2, 3, 7] {
            ki.put(r(m));
        }
        ki.compact(5);
        assert_eq!(ki.revisions().collect::<Vec<_>>(), vec![r(3), r(7)]);
        assert_eq!(ki.get(5), at(3, 2, 2));
        assert_eq!(ki.get(7), at(7, 2, 3));
        ki.compact(100);
        assert_eq!(ki.revisions().collect::<Vec<_>>(), vec![r(7)]);
        assert_eq!(ki.get(100), at(7, 2, 3));
        assert!(ki.is_live());
    }

    #[test]
    fn put_then_delete_in_one_write() {
        // A txn may put a key and (from a later nested txn) delete it: (6.0) then (6.1)(t).
        let mut ki = KeyIndex::new();
        ki.put(r(2));
        ki.put(Revision::new(6, 0));
        assert!(ki.tombstone(Revision::new(6, 1)));
        assert_eq!(ki.get(5), at(2, 2, 1));
        assert_eq!(ki.get(6), None);
        assert_eq!(ki.compacted_revisions(6), vec![r(2), Revision::new(6, 0), Revision::new(6, 1)]);
    }

    #[test]
    fn restore_rebuilds_a_compacted_history() {
        // After compact(4) of foo() the disk holds 4.0 (version 1, created 4) and 5.0(t).
        let mut live = foo();
        live.compact(2);
        let mut restored = KeyIndex::new();
        restored.restore_put(r(2), 1, 2);
        restored.restore_tombstone(r(3));
        restored.restore_put(r(4), 4, 1);
        restored.restore_tombstone(r(5));
        assert_eq!(restored, live);

        // A tombstone whose put was lost is still indexed, so compaction can remove it.
        let mut orphan = KeyIndex::new();
        orphan.restore_tombstone(r(9));
        assert_eq!(orphan.get(9), None);
        assert_eq!(orphan.compacted_revisions(9), vec![r(9)]);
        orphan.compact(9);
        assert!(orphan.is_empty());
    }
}
