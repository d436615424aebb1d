//! The client watches of one watch cache and the fan-out to them. Each has a bounded channel;
//! delivery never waits: a watcher whose channel is full is dropped (its stream ends after what
//! it already holds, and the client relists or rewatches, as with kube-apiserver's
//! "terminating a slow watcher"). So one stuck client can neither block the others nor make the
//! server buffer without bound.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::{WatchEvent, WatchFilter};

/// What a client watch receives from the cache.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// A change it wants.
    Event(Arc<WatchEvent>),
    /// The window was reset (the store compacted past it): the stream ends with 410.
    Expired(String),
}

struct Entry {
    key_prefix: String,
    filter: Option<WatchFilter>,
    /// Only changes after this revision (a watcher may start ahead of the cache).
    after: i64,
    tx: mpsc::Sender<Delivery>,
}

/// The registered client watches of one cache.
#[derive(Default)]
pub struct Watchers {
    entries: Vec<Entry>,
    terminated: u64,
}

impl Watchers {
    /// Registers a watcher of changes after `after` under `key_prefix` matching `filter`, with
    /// a buffer of `buffer` changes. Watchers whose client went away are forgotten here too,
    /// so an idle resource does not collect them.
    pub fn add(&mut self, key_prefix: &str, filter: Option<WatchFilter>, after: i64, buffer: usize) -> mpsc::Receiver<Delivery> {
        self.entries.retain(|e| !e.tx.is_closed());
        let (tx, rx) = mpsc::channel(buffer.max(1));
        self.entries.push(Entry { key_prefix: key_prefix.to_string(), filter, after, tx });
        rx
    }

    /// Hands a change to every watcher that wants it, without waiting. Returns how many
    /// watchers were terminated because their buffer was full.
    pub fn dispatch(&mut self, ev: &Arc<WatchEvent>) -> usize {
        let rev = ev.revision();
        let mut slow = 0;
        self.entries.retain(|e| {
            if rev <= e.after || !ev.wanted_by(&e.key_prefix, e.filter.as_ref()) {
                return !e.tx.is_closed();
            }
            match e.tx.try_send(Delivery::Event(ev.clone())) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    slow += 1;
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        if slow > 0 {
            self.terminated += slow as u64;
            tracing::info!(slow, remaining = self.entries.len(), rev, "watch cache: terminated slow watchers (buffer full)");
        }
        slow
    }

    /// Ends every watch with 410 (best effort: a full buffer just ends the stream, which makes
    /// the client rewatch and get its 410 then).
    pub fn expire_all(&mut self, message: &str) {
        for e in self.entries.drain(..) {
            let _ = e.tx.try_send(Delivery::Expired(message.to_string()));
        }
    }

    /// Registered watchers.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is registered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Watchers terminated for being slow since the start.
    pub fn terminated(&self) -> u64 {
        self.terminated
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::watch_cache::tests::{put, stored};
    use crate::storage::WatchObject;
    use serde_json::{json, Value};

    fn labelled(name: &str, rev: i64, app: &str, prev_app: Option<&str>) -> Arc<WatchEvent> {
        let obj = |rev: i64, app: &str| WatchObject::new(stored(name, rev, json!({"metadata": {"labels": {"app": app}}})));
        Arc::new(WatchEvent::Put { object: obj(rev, app), prev: prev_app.map(|p| obj(rev - 1, p)) })
    }

    fn app_is(app: &'static str) -> Option<WatchFilter> {
        Some(Arc::new(move |v: &Value| v.pointer("/metadata/labels/app").and_then(Value::as_str) == Some(app)))
    }

    fn drain(rx: &mut mpsc::Receiver<Delivery>) -> Vec<i64> {
        let mut out = Vec::new();
        while let Ok(d) = rx.try_recv() {
            match d {
                Delivery::Event(ev) => out.push(ev.revision()),
                Delivery::Expired(_) => out.push(-1),
            }
        }
        out
    }

    #[test]
    fn filters_by_namespace_prefix_and_start_revision() {
        let mut w = Watchers::default();
        let mut all = w.add("/registry/pods/", None, 0, 8);
        let mut ns = w.add("/registry/pods/ns/", None, 0, 8);
        let mut other = w.add("/registry/pods/other/", None, 0, 8);
        let mut late = w.add("/registry/pods/", None, 5, 8);
        for r in [4, 5, 6] {
            w.dispatch(&put("a", r));
        }
        assert_eq!(drain(&mut all), [4, 5, 6]);
        assert_eq!(drain(&mut ns), [4, 5, 6]);
        assert!(drain(&mut other).is_empty());
        assert_eq!(drain(&mut late), [6]);
    }

    #[test]
    fn an_object_entering_or_leaving_a_selection_reaches_the_watcher() {
        let mut w = Watchers::default();
        let mut web = w.add("/registry/pods/", app_is("web"), 0, 8);
        w.dispatch(&labelled("a", 2, "db", None)); // never matched: not delivered
        w.dispatch(&labelled("a", 3, "web", Some("db"))); // enters: the registry says ADDED
        w.dispatch(&labelled("a", 4, "web", Some("web"))); // MODIFIED
        w.dispatch(&labelled("a", 5, "db", Some("web"))); // leaves: DELETED
        w.dispatch(&labelled("a", 6, "db", Some("db"))); // still out
        let prev = WatchObject::new(stored("a", 7, json!({"metadata": {"labels": {"app": "web"}}})));
        w.dispatch(&Arc::new(WatchEvent::Delete { prev }));
        assert_eq!(drain(&mut web), [3, 4, 5, 7]);
    }

    #[test]
    fn a_slow_watcher_is_terminated_without_disturbing_the_others() {
        let mut w = Watchers::default();
        let mut slow = w.add("/registry/pods/", None, 0, 2);
        let mut fast = w.add("/registry/pods/", None, 0, 2);
        let mut fast_seen = Vec::new();
        let mut terminated = 0;
        for r in 1..=10 {
            terminated += w.dispatch(&put("a", r));
            fast_seen.extend(drain(&mut fast));
        }
        assert_eq!(terminated, 1);
        assert_eq!(w.len(), 1);
        assert_eq!(w.terminated(), 1);
        assert_eq!(fast_seen, (1..=10).collect::<Vec<_>>());
        // The slow one keeps what fitted, then its stream ends (the sender is gone).
        assert_eq!(drain(&mut slow), [1, 2]);
        assert!(matches!(slow.try_recv(), Err(mpsc::error::TryRecvError::Disconnected)));
    }

    #[test]
    fn gone_clients_are_forgotten_and_expiry_reaches_everyone() {
        let mut w = Watchers::default();
        let gone = w.add("/registry/pods/", None, 0, 2);
        drop(gone);
        let mut a = w.add("/registry/pods/", None, 0, 2);
        assert_eq!(w.len(), 1);
        w.expire_all("too old resource version: 1 (9)");
        assert!(w.is_empty());
        assert_eq!(drain(&mut a), [-1]);
    }
}
