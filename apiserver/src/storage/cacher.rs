//! One resource's watch cache at work: a single store watch feeding the window and the fan-out,
//! reconnected when it breaks, reset when the store compacted past it; and the client streams
//! served from it. The decisions live in `WatchCache` and `Watchers`; this is the async driver.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;

use super::{Delivery, EventStream, Storage, TooOld, WatchCache, WatchEvent, WatchFilter, Watchers};
use crate::{Error, Result};

/// Reconnection backoff bounds after the store watch breaks.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

struct State {
    window: WatchCache,
    watchers: Watchers,
}

struct Shared {
    prefix: String,
    state: Mutex<State>,
    /// `window.progress()`, readable without the lock; stored after each dispatch, so a client
    /// that reads it and then finds its channel empty has received every change up to it.
    progress: AtomicI64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the window half-updated in a way that
        // matters more than stopping every watch would.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn apply(&self, ev: WatchEvent) {
        let mut st = self.lock();
        match ev {
            WatchEvent::Progress(rev) => st.window.observe(rev),
            ev if ev.revision() <= st.window.progress() => {
                tracing::warn!(prefix = %self.prefix, rev = ev.revision(), "watch cache: stale change from the store ignored");
            }
            ev => {
                let ev = Arc::new(ev);
                st.window.push(ev.clone());
                st.watchers.dispatch(&ev);
            }
        }
        self.progress.store(st.window.progress(), Ordering::Release);
    }

    fn reset(&self, start: i64, why: &str) {
        let mut st = self.lock();
        st.window.reset(start);
        st.watchers.expire_all(why);
        self.progress.store(start, Ordering::Release);
    }
}

/// The watch cache of one resource prefix (`/registry/pods/`). Dropping it stops its store watch.
pub struct Cacher {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Cacher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Cacher {
    /// Opens the store watch of `prefix` after revision `from` and starts feeding a window of
    /// `capacity` changes. `store_progress_every` keeps the progress (bookmarks) current when idle.
    pub async fn start(
        store: Arc<dyn Storage>,
        prefix: &str,
        from: i64,
        capacity: usize,
        store_progress_every: Duration,
    ) -> Result<Self> {
        let events = store.watch(prefix, from, Some(store_progress_every), None).await?;
        let shared = Arc::new(Shared {
            prefix: prefix.to_string(),
            state: Mutex::new(State { window: WatchCache::new(capacity, from), watchers: Watchers::default() }),
            progress: AtomicI64::new(from),
        });
        let task = tokio::spawn(drive(store, shared.clone(), events, store_progress_every));
        Ok(Self { shared, task })
    }

    /// The resource prefix cached.
    pub fn prefix(&self) -> &str {
        &self.shared.prefix
    }

    /// Every change up to this revision has been seen.
    pub fn progress(&self) -> i64 {
        self.shared.progress.load(Ordering::Acquire)
    }

    /// Client watches registered.
    pub fn watchers(&self) -> usize {
        self.shared.lock().watchers.len()
    }

    /// Client watches terminated because they fell `buffer` changes behind.
    pub fn terminated(&self) -> u64 {
        self.shared.lock().watchers.terminated()
    }

    /// A client watch of changes after `after` under `key_prefix` (inside this resource)
    /// matching `filter`: the window's changes it missed, then live ones through a channel of
    /// `buffer`. Bookmarks every `progress_every` carry the cache's progress.
    pub fn watch(
        &self,
        key_prefix: &str,
        filter: Option<WatchFilter>,
        after: i64,
        buffer: usize,
        progress_every: Option<Duration>,
    ) -> Result<EventStream, TooOld> {
        // Registering under the lock that dispatch holds: nothing is missed or seen twice
        // between the replay and the first live change.
        let (replay, rx) = {
            let mut st = self.shared.lock();
            let replay: Vec<_> =
                st.window.since(after)?.into_iter().filter(|e| e.wanted_by(key_prefix, filter.as_ref())).collect();
            (replay, st.watchers.add(key_prefix, filter, after, buffer))
        };
        Ok(client_stream(self.shared.clone(), replay, rx, after, progress_every))
    }
}

/// One client's events. It ends when its channel closes (terminated as slow, or the cache is
/// gone) or with `Expired` when the window was reset.
fn client_stream(
    shared: Arc<Shared>,
    replay: Vec<Arc<WatchEvent>>,
    mut rx: mpsc::Receiver<Delivery>,
    after: i64,
    progress_every: Option<Duration>,
) -> EventStream {
    let stream = async_stream::stream! {
        let mut last = after;
        for ev in replay {
            last = last.max(ev.revision());
            yield Ok(WatchEvent::clone(&ev));
        }
        let period = progress_every.unwrap_or(Duration::from_secs(3600));
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut bookmark_due = false;
        loop {
            let delivery = if bookmark_due {
                // Progress first, then the channel: if it is empty, every change up to that
                // progress was already yielded, so the bookmark does not overtake one.
                let progress = shared.progress.load(Ordering::Acquire);
                match rx.try_recv() {
                    Ok(d) => Some(d),
                    Err(mpsc::error::TryRecvError::Empty) => {
                        bookmark_due = false;
                        last = last.max(progress);
                        yield Ok(WatchEvent::Progress(last));
                        continue;
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => None,
                }
            } else {
                tokio::select! {
                    d = rx.recv() => d,
                    _ = ticker.tick(), if progress_every.is_some() => {
                        bookmark_due = true;
                        continue;
                    }
                }
            };
            match delivery {
                Some(Delivery::Event(ev)) => {
                    last = last.max(ev.revision());
                    yield Ok(WatchEvent::clone(&ev));
                }
                Some(Delivery::Expired(why)) => {
                    yield Err(Error::Expired(why));
                    break;
                }
                None => break,
            }
        }
    };
    stream.boxed()
}

/// Reads the store watch for the life of the cache.
async fn drive(store: Arc<dyn Storage>, shared: Arc<Shared>, mut events: EventStream, every: Duration) {
    let mut backoff = MIN_BACKOFF;
    loop {
        match events.next().await {
            Some(Ok(ev)) => {
                shared.apply(ev);
                backoff = MIN_BACKOFF;
                continue;
            }
            Some(Err(Error::Expired(why))) => {
                // The store compacted past what the cache has seen: nothing can fill the gap.
                // Start over at the current revision; every client gets 410 and relists.
                let start = loop {
                    match store.current_revision().await {
                        Ok(rev) => break rev,
                        Err(e) => {
                            tracing::warn!(prefix = %shared.prefix, error = %e, "watch cache: reading the store revision");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                        }
                    }
                };
                tracing::warn!(prefix = %shared.prefix, start, %why, "watch cache: store compacted past the window, reset");
                shared.reset(start, &why);
            }
            Some(Err(e)) => {
                tracing::warn!(prefix = %shared.prefix, error = %e, "watch cache: the store watch broke, reconnecting");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            None => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        // Resume right after what the cache has seen (progress + 1); a compacted revision comes
        // back as `Expired` on the new stream and resets the window above.
        loop {
            let from = shared.progress.load(Ordering::Acquire);
            match store.watch(&shared.prefix, from, Some(every), None).await {
                Ok(s) => {
                    events = s;
                    break;
                }
                Err(e) => {
                    tracing::warn!(prefix = %shared.prefix, error = %e, "watch cache: reopening the store watch");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::watch_cache::tests::put;
    use crate::storage::{Filter, ListOptions, ListPage, Preconditions, Stored, UpdateFn, UpdateOutcome};
    use futures::future::BoxFuture;
    use serde_json::Value;
    use tokio::sync::mpsc::UnboundedSender;

    /// A store whose watches the test drives by hand: every `watch` call is recorded with its
    /// revision and gets a fresh stream fed through `feed()`.
    #[derive(Default)]
    struct Scripted {
        watches: Mutex<Vec<(i64, UnboundedSender<Result<WatchEvent>>)>>,
        revision: AtomicI64,
    }

    impl Scripted {
        fn feed(&self) -> UnboundedSender<Result<WatchEvent>> {
            self.watches.lock().unwrap().last().unwrap().1.clone()
        }
        fn opened_after(&self) -> Vec<i64> {
            self.watches.lock().unwrap().iter().map(|(a, _)| *a).collect()
        }
        /// Ends the current store watch (the connection broke).
        fn break_watch(&self) {
            let mut w = self.watches.lock().unwrap();
            let (after, _) = w.pop().unwrap();
            let (dead, _) = tokio::sync::mpsc::unbounded_channel();
            w.push((after, dead));
        }
    }

    fn unavailable<'a, T: Send + 'a>() -> BoxFuture<'a, Result<T>> {
        Box::pin(async { Err(Error::Unavailable("not scripted".into())) })
    }

    impl Storage for Scripted {
        fn get<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Option<Stored>>> {
            unavailable()
        }
        fn list<'a>(&'a self, _: &'a str, _: ListOptions, _: Filter<'a>) -> BoxFuture<'a, Result<ListPage>> {
            unavailable()
        }
        fn create<'a>(&'a self, _: &'a str, _: Value, _: Option<Duration>) -> BoxFuture<'a, Result<Stored>> {
            unavailable()
        }
        fn guaranteed_update<'a>(&'a self, _: &'a str, _: Preconditions, _: UpdateFn<'a>) -> BoxFuture<'a, Result<UpdateOutcome>> {
            unavailable()
        }
        fn delete<'a>(&'a self, _: &'a str, _: Preconditions) -> BoxFuture<'a, Result<Stored>> {
            unavailable()
        }
        fn watch<'a>(
            &'a self,
            _: &'a str,
            after: i64,
            _: Option<Duration>,
            _: Option<WatchFilter>,
        ) -> BoxFuture<'a, Result<EventStream>> {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            self.watches.lock().unwrap().push((after, tx));
            Box::pin(async move { Ok(tokio_stream::wrappers::UnboundedReceiverStream::new(rx).boxed()) })
        }
        fn current_revision(&self) -> BoxFuture<'_, Result<i64>> {
            let rev = self.revision.load(Ordering::SeqCst);
            Box::pin(async move { Ok(rev) })
        }
    }

    async fn next(s: &mut EventStream) -> Option<Result<WatchEvent>> {
        tokio::time::timeout(Duration::from_secs(60), s.next()).await.expect("an event within a minute")
    }

    fn ev(rev: i64) -> Result<WatchEvent> {
        Ok(WatchEvent::clone(&put("a", rev)))
    }

    #[tokio::test(start_paused = true)]
    async fn a_broken_store_watch_resumes_after_the_last_revision_seen() {
        let store = Arc::new(Scripted::default());
        let cacher = Cacher::start(store.clone(), "/registry/pods/", 10, 16, Duration::from_secs(1)).await.unwrap();
        let mut client = cacher.watch("/registry/pods/", None, 10, 16, None).unwrap();
        store.feed().send(ev(12)).unwrap();
        assert_eq!(next(&mut client).await.unwrap().unwrap().revision(), 12);
        store.feed().send(Ok(WatchEvent::Progress(20))).unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
        store.break_watch();
        // Reconnection waits a backoff; paused time runs it at once.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(store.opened_after(), [10, 20], "resumed after the progress seen, not from the start");
        store.feed().send(ev(21)).unwrap();
        assert_eq!(next(&mut client).await.unwrap().unwrap().revision(), 21, "the client never noticed");
        assert_eq!(cacher.progress(), 21);
    }

    #[tokio::test(start_paused = true)]
    async fn compaction_past_the_window_resets_it_and_every_client_gets_410() {
        let store = Arc::new(Scripted::default());
        let cacher = Cacher::start(store.clone(), "/registry/pods/", 10, 16, Duration::from_secs(1)).await.unwrap();
        let mut client = cacher.watch("/registry/pods/", None, 10, 16, None).unwrap();
        store.feed().send(ev(12)).unwrap();
        assert_eq!(next(&mut client).await.unwrap().unwrap().revision(), 12);
        store.revision.store(30, Ordering::SeqCst);
        store.feed().send(Err(Error::Expired("too old resource version: 12 (25)".into()))).unwrap();
        assert!(matches!(next(&mut client).await, Some(Err(Error::Expired(_)))));
        assert!(next(&mut client).await.is_none(), "the stream ends after the 410");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(store.opened_after(), [10, 30], "started over at the store's revision");
        assert_eq!(cacher.progress(), 30);
        // The client relists (rv 30) and rewatches; the old revision is gone.
        assert!(cacher.watch("/registry/pods/", None, 12, 16, None).is_err());
        let mut again = cacher.watch("/registry/pods/", None, 30, 16, None).unwrap();
        store.feed().send(ev(31)).unwrap();
        assert_eq!(next(&mut again).await.unwrap().unwrap().revision(), 31);
    }

    #[tokio::test(start_paused = true)]
    async fn bookmarks_carry_the_cache_progress_and_never_overtake_a_change() {
        let store = Arc::new(Scripted::default());
        let cacher = Cacher::start(store.clone(), "/registry/pods/", 10, 16, Duration::from_secs(1)).await.unwrap();
        let mut client = cacher.watch("/registry/pods/", None, 10, 16, Some(Duration::from_secs(5))).unwrap();
        // Idle: the bookmark says how far the cache has seen.
        store.feed().send(Ok(WatchEvent::Progress(15))).unwrap();
        assert!(matches!(next(&mut client).await, Some(Ok(WatchEvent::Progress(15)))));
        // Changes queued before the tick come out before the bookmark that covers them.
        store.feed().send(ev(16)).unwrap();
        store.feed().send(ev(17)).unwrap();
        store.feed().send(Ok(WatchEvent::Progress(40))).unwrap();
        tokio::time::sleep(Duration::from_secs(6)).await;
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(match next(&mut client).await.unwrap().unwrap() {
                WatchEvent::Progress(r) => -r,
                other => other.revision(),
            });
        }
        assert_eq!(seen, [16, 17, -40]);
        // A client ahead of the cache never gets a bookmark older than where it started.
        let mut ahead = cacher.watch("/registry/pods/", None, 100, 16, Some(Duration::from_secs(5))).unwrap();
        assert!(matches!(next(&mut ahead).await, Some(Ok(WatchEvent::Progress(100)))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_behind_the_cache_is_replayed_from_the_window_then_live() {
        let store = Arc::new(Scripted::default());
        let cacher = Cacher::start(store.clone(), "/registry/pods/", 10, 2, Duration::from_secs(1)).await.unwrap();
        for r in [11, 12, 13] {
            store.feed().send(ev(r)).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(cacher.watch("/registry/pods/", None, 10, 16, None).is_err(), "11 left the window of 2");
        let mut client = cacher.watch("/registry/pods/", None, 11, 16, None).unwrap();
        store.feed().send(ev(14)).unwrap();
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(next(&mut client).await.unwrap().unwrap().revision());
        }
        assert_eq!(got, [12, 13, 14]);
        assert_eq!(cacher.watchers(), 1);
    }
}
