//! The watch cache over a real store: many client watches share one store watch, every one of
//! them gets every change while a writer writes, and a client that stops reading is
//! disconnected without holding the others back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use apiserver::storage::{CacheConfig, CachedStorage, EtcdStorage, Preconditions, Storage, UpdateAction, WatchEvent};
use futures::StreamExt;
use serde_json::json;
use store::server::{RunningStore, StoreConfig};

async fn start(config: CacheConfig) -> (RunningStore, Arc<CachedStorage>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut sc = StoreConfig::single("t", dir.path().to_path_buf(), "127.0.0.1:0".parse().unwrap());
    sc.election_timeout = Duration::from_millis(300);
    sc.heartbeat = Duration::from_millis(50);
    let store = RunningStore::start(sc).await.unwrap();
    let endpoint = format!("http://{}", store.client_addrs()[0]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(s) = EtcdStorage::connect(std::slice::from_ref(&endpoint)).await {
            if s.current_revision().await.is_ok() {
                return (store, Arc::new(CachedStorage::new(Arc::new(s), config)), dir);
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "store never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn bump(s: &CachedStorage, key: &str) -> i64 {
    let f = |cur: &apiserver::storage::Stored| {
        let mut v = cur.value.clone();
        v["n"] = json!(v["n"].as_i64().unwrap_or(0) + 1);
        Ok(UpdateAction::Put(v))
    };
    match s.guaranteed_update(key, Preconditions::default(), &f).await.unwrap() {
        apiserver::storage::UpdateOutcome::Updated(u) => u.mod_revision,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_watchers_get_every_change_from_one_store_watch() {
    const WATCHERS: usize = 200;
    const WRITES: usize = 300;
    let (store, s, _dir) = start(CacheConfig::default()).await;
    let keys: Vec<String> = (0..5).map(|i| format!("/registry/pods/ns{}/p{i}", i % 2)).collect();
    for k in &keys {
        s.create(k, json!({"n": 0}), None).await.unwrap();
    }
    let after = s.current_revision().await.unwrap();
    let mut readers = Vec::new();
    for w in 0..WATCHERS {
        // A tenth watch one namespace only: they must see exactly its changes.
        let prefix = if w % 10 == 0 { "/registry/pods/ns0/" } else { "/registry/pods/" };
        let mut events = s.watch(prefix, after, None, None).await.unwrap();
        readers.push(tokio::spawn(async move {
            let mut revs = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, events.next()).await {
                let ev = ev.unwrap();
                revs.push((ev.revision(), ev.key().unwrap_or_default().to_string()));
                if revs.len() == if prefix.ends_with("ns0/") { WRITES * 3 / 5 } else { WRITES } {
                    break;
                }
            }
            (prefix, revs)
        }));
    }
    let cacher = s.cacher("/registry/pods/").await.expect("the first watch created the cache");
    assert_eq!(cacher.watchers(), WATCHERS, "one cache, every client watch registered on it");
    let began = Instant::now();
    let mut written = Vec::new();
    for i in 0..WRITES {
        let key = &keys[i % keys.len()];
        written.push((bump(&s, key).await, key.clone()));
    }
    let wrote_for = began.elapsed();
    for r in readers {
        let (prefix, got) = r.await.unwrap();
        let want: Vec<(i64, String)> = written.iter().filter(|(_, k)| k.starts_with(prefix)).cloned().collect();
        assert_eq!(got, want, "{prefix}: every change, in order, once");
    }
    assert_eq!(cacher.terminated(), 0);
    eprintln!("{WATCHERS} watchers x {WRITES} writes: written in {wrote_for:?}, all delivered in {:?}", began.elapsed());
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_stops_reading_is_disconnected_and_the_others_go_on() {
    let config = CacheConfig { watcher_buffer: 8, ..Default::default() };
    let (store, s, _dir) = start(config).await;
    s.create("/registry/pods/ns/a", json!({"n": 0}), None).await.unwrap();
    let after = s.current_revision().await.unwrap();
    let mut stuck = s.watch("/registry/pods/", after, None, None).await.unwrap();
    let mut reader = s.watch("/registry/pods/", after, None, None).await.unwrap();
    let reading = tokio::spawn(async move {
        let mut n = 0;
        while n < 40 {
            match tokio::time::timeout(Duration::from_secs(20), reader.next()).await {
                Ok(Some(Ok(WatchEvent::Put { .. }))) => n += 1,
                other => panic!("the live reader was disturbed: {other:?}"),
            }
        }
        n
    });
    for _ in 0..40 {
        bump(&s, "/registry/pods/ns/a").await;
    }
    assert_eq!(reading.await.unwrap(), 40);
    let cacher = s.cacher("/registry/pods/").await.unwrap();
    assert_eq!(cacher.terminated(), 1);
    // The stuck client gets what fitted in its buffer, then its stream ends: it must rewatch.
    let mut kept = 0;
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(5), stuck.next()).await.unwrap() {
        ev.unwrap();
        kept += 1;
    }
    assert_eq!(kept, 8);
    // Rewatching from the last change it saw works from the window.
    let resumed = s.watch("/registry/pods/", after + 8, None, None).await.unwrap();
    let replay: Vec<i64> = resumed.take(32).map(|e| e.unwrap().revision()).collect().await;
    assert_eq!(replay.len(), 32);
    assert!(replay.windows(2).all(|w| w[0] < w[1]));
    store.shutdown().await;
}
