//! The `Storage` contract, one suite run on both implementations over a real store: the
//! etcd-backed storage (`etcd::*`) and the watch cache in front of it (`cached::*`).

use std::sync::Arc;
use std::time::Duration;

use apiserver::storage::{CacheConfig, CachedStorage, EtcdStorage, ListOptions, Preconditions, Storage, UpdateAction, UpdateOutcome, WatchEvent};
use apiserver::Error;
use futures::StreamExt;
use serde_json::json;
use store::server::{RunningStore, StoreConfig};

/// Each test body below runs once per implementation.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod etcd {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(false).await
            })*
        }
        mod cached {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(true).await
            })*
        }
    };
}

on_both!(
    create_get_update_delete_with_preconditions,
    guaranteed_update_retries_lost_races,
    list_pages_at_one_revision_and_expire_after_compaction,
    watch_delivers_puts_and_deletes_in_order_with_previous_values,
    watch_filters_by_namespace_and_selector,
    objects_with_a_ttl_share_a_lease_and_keep_it_across_updates,
);

async fn next(events: &mut apiserver::storage::EventStream) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(5), events.next()).await.unwrap().unwrap().unwrap()
}

async fn start(cached: bool) -> (RunningStore, Arc<dyn Storage>, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StoreConfig::single("t", dir.path().to_path_buf(), "127.0.0.1:0".parse().unwrap());
    config.election_timeout = Duration::from_millis(300);
    config.heartbeat = Duration::from_millis(50);
    let store = RunningStore::start(config).await.unwrap();
    let endpoint = format!("http://{}", store.client_addrs()[0]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(s) = EtcdStorage::connect(std::slice::from_ref(&endpoint)).await {
            if s.current_revision().await.is_ok() {
                let s: Arc<dyn Storage> = if cached {
                    let config = CacheConfig { store_progress_every: Duration::from_millis(100), ..Default::default() };
                    Arc::new(CachedStorage::new(Arc::new(s), config))
                } else {
                    Arc::new(s)
                };
                return (store, s, endpoint, dir);
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "store never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn create_get_update_delete_with_preconditions(cached: bool) {
    let (store, s, _, _dir) = start(cached).await;
    let k = "/registry/things/ns/a";
    let created = s.create(k, json!({"metadata": {"name": "a", "uid": "u1"}, "n": 0}), None).await.unwrap();
    assert_eq!(created.value["metadata"]["resourceVersion"], created.mod_revision.to_string());
    assert!(matches!(s.create(k, json!({}), None).await, Err(Error::KeyExists(_))));
    let got = s.get(k).await.unwrap().unwrap();
    assert_eq!(got, created);
    assert!(s.get("/registry/things/ns/none").await.unwrap().is_none());

    let bump = |cur: &apiserver::storage::Stored| {
        let mut v = cur.value.clone();
        v["n"] = json!(v["n"].as_i64().unwrap() + 1);
        Ok(UpdateAction::Put(v))
    };
    let UpdateOutcome::Updated(u) = s.guaranteed_update(k, Preconditions::default(), &bump).await.unwrap() else { panic!() };
    assert_eq!(u.value["n"], 1);
    assert!(u.mod_revision > created.mod_revision);
    assert_eq!(u.create_revision, created.mod_revision);
    let stale = Preconditions { resource_version: Some(created.mod_revision), uid: None };
    assert!(matches!(s.guaranteed_update(k, stale.clone(), &bump).await, Err(Error::PreconditionFailed(_))));
    let wrong_uid = Preconditions { uid: Some("other".into()), resource_version: None };
    assert!(matches!(s.delete(k, wrong_uid).await, Err(Error::PreconditionFailed(_))));
    let UpdateOutcome::Unchanged(same) = s.guaranteed_update(k, Preconditions::default(), &|_| Ok(UpdateAction::Unchanged)).await.unwrap() else { panic!() };
    assert_eq!(same.mod_revision, u.mod_revision);
    // An error from the update function is returned as is and writes nothing.
    let refuse = |_: &apiserver::storage::Stored| Err(Error::BadRequest("no".into()));
    assert!(matches!(s.guaranteed_update(k, Preconditions::default(), &refuse).await, Err(Error::BadRequest(_))));
    let last = s.delete(k, Preconditions { uid: Some("u1".into()), resource_version: Some(u.mod_revision) }).await.unwrap();
    assert!(last.mod_revision > u.mod_revision);
    assert_eq!(last.value["n"], 1);
    assert!(matches!(s.delete(k, Preconditions::default()).await, Err(Error::KeyNotFound(_))));
    assert!(matches!(s.guaranteed_update(k, Preconditions::default(), &bump).await, Err(Error::KeyNotFound(_))));
    store.shutdown().await;
}

async fn guaranteed_update_retries_lost_races(cached: bool) {
    let (store, s, _, _dir) = start(cached).await;
    let k = "/registry/counters/c";
    s.create(k, json!({"n": 0}), None).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                let inc = |cur: &apiserver::storage::Stored| {
                    let mut v = cur.value.clone();
                    v["n"] = json!(v["n"].as_i64().unwrap() + 1);
                    Ok(UpdateAction::Put(v))
                };
                s.guaranteed_update(k, Preconditions::default(), &inc).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(s.get(k).await.unwrap().unwrap().value["n"], 80, "every increment applied exactly once");
    store.shutdown().await;
}

async fn list_pages_at_one_revision_and_expire_after_compaction(cached: bool) {
    let (store, s, endpoint, _dir) = start(cached).await;
    for i in 0..10 {
        s.create(&format!("/registry/items/ns/i{i}"), json!({"even": i % 2 == 0, "i": i}), None).await.unwrap();
    }
    s.create("/registry/items/other/x", json!({"even": true}), None).await.unwrap();
    s.create("/registry/itemsx/ns/y", json!({"even": true}), None).await.unwrap();
    let even = |v: &serde_json::Value| v["even"] == true;
    let all = |_: &serde_json::Value| true;
    let page = s.list("/registry/items/ns/", ListOptions { limit: Some(2), ..Default::default() }, &even).await.unwrap();
    let is: Vec<i64> = page.items.iter().map(|i| i.value["i"].as_i64().unwrap()).collect();
    assert_eq!(is, [0, 2]);
    s.create("/registry/items/ns/i3a", json!({"even": true, "i": 99}), None).await.unwrap();
    let mut token = page.continue_token.clone();
    let mut rest = Vec::new();
    while let Some(t) = token {
        let p = s.list("/registry/items/ns/", ListOptions { limit: Some(2), continue_token: Some(t), revision: None }, &even).await.unwrap();
        assert_eq!(p.revision, page.revision);
        rest.extend(p.items.iter().map(|i| i.value["i"].as_i64().unwrap()));
        token = p.continue_token;
    }
    assert_eq!(rest, [4, 6, 8], "the write after the first page is not seen");
    assert_eq!(s.list("/registry/items/", ListOptions::default(), &all).await.unwrap().items.len(), 12);
    let old = s.list("/registry/items/ns/", ListOptions { revision: Some(page.revision), ..Default::default() }, &all).await.unwrap();
    assert_eq!(old.items.len(), 10);

    let mut c = etcd_client::Client::connect([&endpoint], None).await.unwrap();
    c.compact(s.current_revision().await.unwrap(), None).await.unwrap();
    let expired = s.list("/registry/items/ns/", ListOptions { limit: Some(2), continue_token: page.continue_token, revision: None }, &even).await;
    assert!(matches!(expired, Err(Error::Expired(_))), "{expired:?}");
    store.shutdown().await;
}

async fn watch_delivers_puts_and_deletes_in_order_with_previous_values(cached: bool) {
    let (store, s, endpoint, _dir) = start(cached).await;
    let start_rev = s.current_revision().await.unwrap();
    let a = s.create("/registry/w/ns/a", json!({"v": 1}), None).await.unwrap();
    s.guaranteed_update("/registry/w/ns/a", Preconditions::default(), &|c| {
        let mut v = c.value.clone();
        v["v"] = json!(2);
        Ok(UpdateAction::Put(v))
    })
    .await
    .unwrap();
    s.create("/registry/wx/ns/outside", json!({}), None).await.unwrap();
    let del = s.delete("/registry/w/ns/a", Preconditions::default()).await.unwrap();
    let mut events = s.watch("/registry/w/", start_rev, Some(Duration::from_millis(200)), None).await.unwrap();
    match next(&mut events).await {
        WatchEvent::Put { object, prev: None } => assert_eq!(object.mod_revision, a.mod_revision),
        other => panic!("{other:?}"),
    }
    match next(&mut events).await {
        WatchEvent::Put { object, prev: Some(prev) } => {
            assert_eq!((object.value["v"].as_i64(), prev.value["v"].as_i64()), (Some(2), Some(1)));
        }
        other => panic!("{other:?}"),
    }
    match next(&mut events).await {
        WatchEvent::Delete { prev } => {
            assert_eq!(prev.mod_revision, del.mod_revision);
            assert_eq!(prev.value["metadata"]["resourceVersion"], del.mod_revision.to_string());
        }
        other => panic!("{other:?}"),
    }
    match next(&mut events).await {
        WatchEvent::Progress(rev) => assert!(rev >= del.mod_revision),
        other => panic!("{other:?}"),
    }
    drop(events);

    let mut c = etcd_client::Client::connect([&endpoint], None).await.unwrap();
    c.compact(s.current_revision().await.unwrap(), None).await.unwrap();
    let mut events = s.watch("/registry/w/", start_rev, None, None).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), events.next()).await.unwrap().unwrap();
    assert!(matches!(first, Err(Error::Expired(_))), "{first:?}");
    store.shutdown().await;
}

async fn objects_with_a_ttl_share_a_lease_and_keep_it_across_updates(cached: bool) {
    let (store, s, endpoint, _dir) = start(cached).await;
    let ttl = Some(Duration::from_secs(30));
    let a = s.create("/registry/events/ns/a", json!({"n": 0}), ttl).await.unwrap();
    let b = s.create("/registry/events/ns/b", json!({"n": 0}), ttl).await.unwrap();
    assert!(a.lease != 0);
    assert_eq!(a.lease, b.lease, "one lease for a burst");
    assert_eq!(s.create("/registry/plain/x", json!({}), None).await.unwrap().lease, 0);
    let bump = |cur: &apiserver::storage::Stored| {
        let mut v = cur.value.clone();
        v["n"] = json!(1);
        Ok(UpdateAction::Put(v))
    };
    let UpdateOutcome::Updated(u) = s.guaranteed_update("/registry/events/ns/a", Preconditions::default(), &bump).await.unwrap() else { panic!() };
    assert_eq!(u.lease, a.lease);
    assert_eq!(s.get("/registry/events/ns/a").await.unwrap().unwrap().lease, a.lease);
    let mut c = etcd_client::Client::connect([&endpoint], None).await.unwrap();
    let ttl_left = c.lease_time_to_live(a.lease, None).await.unwrap().ttl();
    assert!((60..=90).contains(&ttl_left), "ttl + reuse window: {ttl_left}");
    // Revoking the lease (what expiry does) removes both objects.
    c.lease_revoke(a.lease).await.unwrap();
    assert!(s.get("/registry/events/ns/a").await.unwrap().is_none());
    assert!(s.get("/registry/events/ns/b").await.unwrap().is_none());
    store.shutdown().await;
}

async fn watch_filters_by_namespace_and_selector(cached: bool) {
    let (store, s, _, _dir) = start(cached).await;
    let start_rev = s.current_revision().await.unwrap();
    let web: apiserver::storage::WatchFilter = Arc::new(|v: &serde_json::Value| v["app"] == "web");
    let mut events = s.watch("/registry/f/ns/", start_rev, None, Some(web)).await.unwrap();
    let put = |k: &'static str, app: &'static str| {
        let s = s.clone();
        async move {
            let key = format!("/registry/f/{k}");
            if s.get(&key).await.unwrap().is_none() {
                return s.create(&key, json!({"app": app}), None).await.unwrap().mod_revision;
            }
            let set = move |_: &apiserver::storage::Stored| Ok(UpdateAction::Put(json!({"app": app})));
            match s.guaranteed_update(&key, Preconditions::default(), &set).await.unwrap() {
                UpdateOutcome::Updated(u) => u.mod_revision,
                other => panic!("{other:?}"),
            }
        }
    };
    put("ns/a", "db").await; // never selected
    let enters = put("ns/a", "web").await;
    put("other/b", "web").await; // another namespace
    let leaves = put("ns/a", "db").await;
    put("ns/a", "db").await; // still out
    let del = s.delete("/registry/f/ns/c", Preconditions::default()).await;
    assert!(matches!(del, Err(Error::KeyNotFound(_))));
    let c = put("ns/c", "web").await;
    let gone = s.delete("/registry/f/ns/c", Preconditions::default()).await.unwrap().mod_revision;
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(next(&mut events).await.revision());
    }
    assert_eq!(got, [enters, leaves, c, gone]);
    let quiet = tokio::time::timeout(Duration::from_millis(300), events.next()).await;
    assert!(quiet.is_err(), "nothing else: {quiet:?}");
    store.shutdown().await;
}
