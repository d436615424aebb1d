//! The watch cache's window: the last changes of one resource, in revision order, and how far
//! the cache has seen. Pure: no store, no tasks (model: Kubernetes `watch_cache.go`).
//!
//! Worked example, capacity 3, started at revision 10 (the cache knows every change after 10):
//!
//! ```text
//! push 12, 15, 17        ring [12 15 17]  oldest 10  progress 17
//! since(10) → [12 15 17]   since(15) → [17]   since(9) → TooOld (12 might not be the first)
//! push 20                ring [15 17 20]  oldest 12  (12 evicted: "after 12" is still complete)
//! since(11) → TooOld     since(12) → [15 17 20]
//! progress 25            ring unchanged   progress 25 (nothing under the prefix up to 25)
//! ```

use std::collections::VecDeque;
use std::sync::Arc;

use super::WatchEvent;

/// The cache cannot answer a watch from this old a revision: the client must relist (410).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooOld {
    /// The revision asked for.
    pub requested: i64,
    /// The oldest revision the window can resume after.
    pub oldest: i64,
}

impl std::fmt::Display for TooOld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "too old resource version: {} ({})", self.requested, self.oldest)
    }
}

/// A bounded ring of changes (each with its object, previous object and revision) plus the
/// cache's progress.
#[derive(Debug)]
pub struct WatchCache {
    ring: VecDeque<Arc<WatchEvent>>,
    capacity: usize,
    /// Every change after this revision is in the ring.
    oldest: i64,
    /// The cache has seen every change up to this revision.
    progress: i64,
}

impl WatchCache {
    /// An empty window that knows every change after `start` (none yet).
    pub fn new(capacity: usize, start: i64) -> Self {
        let capacity = capacity.max(1);
        Self { ring: VecDeque::with_capacity(capacity.min(1024)), capacity, oldest: start, progress: start }
    }

    /// Records a change (a put or delete; progress goes to `observe`). Changes arrive in
    /// revision order from the store; one that does not is a bug upstream and is ignored so
    /// the window stays sorted.
    pub fn push(&mut self, ev: Arc<WatchEvent>) {
        let rev = ev.revision();
        if matches!(*ev, WatchEvent::Progress(_)) {
            self.observe(rev);
            return;
        }
        if rev <= self.progress {
            tracing::warn!(rev, progress = self.progress, "watch cache: out-of-order change ignored");
            return;
        }
        if self.ring.len() == self.capacity {
            if let Some(evicted) = self.ring.pop_front() {
                self.oldest = evicted.revision();
            }
        }
        self.ring.push_back(ev);
        self.progress = self.progress.max(rev);
    }

    /// The store says nothing changed under the prefix up to `rev`.
    pub fn observe(&mut self, rev: i64) {
        self.progress = self.progress.max(rev);
    }

    /// The changes after `after`, oldest first; `TooOld` if some may have left the window.
    pub fn since(&self, after: i64) -> Result<Vec<Arc<WatchEvent>>, TooOld> {
        if after < self.oldest {
            return Err(TooOld { requested: after, oldest: self.oldest });
        }
        let first = self.ring.partition_point(|e| e.revision() <= after);
        Ok(self.ring.range(first..).cloned().collect())
    }

    /// Forgets everything: the store compacted past the window, so it restarts at `start`.
    pub fn reset(&mut self, start: i64) {
        self.ring.clear();
        self.oldest = start;
        self.progress = start;
    }

    /// Every change up to this revision has been seen.
    pub fn progress(&self) -> i64 {
        self.progress
    }

    /// A watch may resume after this revision or later.
    pub fn oldest(&self) -> i64 {
        self.oldest
    }

    /// Changes held.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether no change is held.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::storage::{Stored, WatchObject};
    use serde_json::{json, Value};

    pub(crate) fn stored(name: &str, rev: i64, value: Value) -> Stored {
        let mut value = value;
        crate::storage::types::set_resource_version(&mut value, rev);
        Stored { key: format!("/registry/pods/ns/{name}"), value, mod_revision: rev, create_revision: 1, lease: 0 }
    }

    pub(crate) fn put(name: &str, rev: i64) -> Arc<WatchEvent> {
        Arc::new(WatchEvent::Put { object: WatchObject::new(stored(name, rev, json!({"n": rev}))), prev: None })
    }

    fn revs(evs: &[Arc<WatchEvent>]) -> Vec<i64> {
        evs.iter().map(|e| e.revision()).collect()
    }

    #[test]
    fn serves_changes_after_a_revision_inside_the_window() {
        let mut w = WatchCache::new(3, 10);
        for r in [12, 15, 17] {
            w.push(put("a", r));
        }
        assert_eq!(revs(&w.since(10).unwrap()), [12, 15, 17]);
        assert_eq!(revs(&w.since(13).unwrap()), [15, 17]);
        assert_eq!(revs(&w.since(15).unwrap()), [17]);
        assert!(w.since(17).unwrap().is_empty());
        // Ahead of the cache (a client that wrote and read its own rv): nothing yet, not an error.
        assert!(w.since(40).unwrap().is_empty());
        assert_eq!((w.oldest(), w.progress()), (10, 17));
    }

    #[test]
    fn a_revision_older_than_the_window_is_too_old() {
        let w = WatchCache::new(3, 10);
        assert_eq!(w.since(9).unwrap_err(), TooOld { requested: 9, oldest: 10 });
        assert_eq!(w.since(9).unwrap_err().to_string(), "too old resource version: 9 (10)");
    }

    #[test]
    fn the_ring_wraps_around_and_moves_the_oldest_revision() {
        let mut w = WatchCache::new(3, 10);
        for r in [12, 15, 17, 20, 21] {
            w.push(put("a", r));
        }
        assert_eq!(w.len(), 3);
        assert_eq!(w.oldest(), 15);
        assert!(w.since(14).is_err());
        assert_eq!(revs(&w.since(15).unwrap()), [17, 20, 21]);
        assert_eq!(revs(&w.since(18).unwrap()), [20, 21]);
    }

    #[test]
    fn progress_advances_without_changes_and_reset_forgets_the_window() {
        let mut w = WatchCache::new(3, 10);
        w.push(put("a", 12));
        w.push(Arc::new(WatchEvent::Progress(30)));
        w.observe(25);
        assert_eq!(w.progress(), 30);
        assert_eq!(w.len(), 1);
        // Out of order (never from a healthy store): ignored, the window stays sorted.
        w.push(put("b", 11));
        assert_eq!(revs(&w.since(10).unwrap()), [12]);
        w.reset(50);
        assert!(w.is_empty());
        assert_eq!((w.oldest(), w.progress()), (50, 50));
        assert!(w.since(49).is_err());
        assert!(w.since(50).unwrap().is_empty());
    }
}
