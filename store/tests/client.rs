//! The etcd v3 API end to end through a real client (the `etcd-client` crate) against an
//! in-process member on RocksDB and openraft, checking results precisely.

use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, EventType, GetOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp,
    WatchFilterType, WatchOptions,
};
use store::server::{RunningStore, StoreConfig};

struct TestStore {
    store: Option<RunningStore>,
    dir: tempfile::TempDir,
    endpoint: String,
}

impl TestStore {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, |_| {}).await
    }

    async fn start_in(dir: tempfile::TempDir, tweak: impl FnOnce(&mut StoreConfig)) -> Self {
        let mut config = StoreConfig::single("t", dir.path().to_path_buf(), "127.0.0.1:0".parse().unwrap());
        config.election_timeout = Duration::from_millis(300);
        config.heartbeat = Duration::from_millis(50);
        tweak(&mut config);
        let store = RunningStore::start(config).await.unwrap();
        let endpoint = format!("http://{}", store.client_addrs()[0]);
        let t = Self { store: Some(store), dir, endpoint };
        t.wait_ready().await;
        t
    }

    async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut c) = Client::connect([&self.endpoint], None).await {
                if c.put("ready", "", None).await.is_ok() {
                    return;
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "store never became ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn client(&self) -> Client {
        Client::connect([&self.endpoint], None).await.unwrap()
    }

    async fn restart(mut self) -> Self {
        self.store.take().unwrap().shutdown().await;
        Self::start_in(self.dir, |_| {}).await
    }
}

fn status_of(e: etcd_client::Error) -> tonic::Status {
    match e {
        etcd_client::Error::GRpcStatus(s) => s,
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}

async fn rev(c: &mut Client) -> i64 {
    c.get("nothing-here", None).await.unwrap().header().unwrap().revision()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puts_get_revisions_and_versions() {
    let t = TestStore::start().await;
    let mut c = t.client().await;
    let base = rev(&mut c).await;
    let r1 = c.put("k", "v1", None).await.unwrap().header().unwrap().revision();
    assert_eq!(r1, base + 1);
    let r2 = c.put("k", "v2", Some(PutOptions::new().with_prev_key())).await.unwrap();
    assert_eq!(r2.prev_key().unwrap().value(), b"v1");
    assert_eq!(r2.header().unwrap().revision(), base + 2);

    let got = c.get("k", None).await.unwrap();
    let kv = &got.kvs()[0];
    assert_eq!((kv.value(), kv.create_revision(), kv.mod_revision(), kv.version()), (&b"v2"[..], base + 1, base + 2, 2));
    // A read in the past sees the past.
    let old = c.get("k", Some(GetOptions::new().with_revision(base + 1))).await.unwrap();
    assert_eq!(old.kvs()[0].value(), b"v1");
    // Future revisions are refused with etcd's message.
    let err = status_of(c.get("k", Some(GetOptions::new().with_revision(base + 100))).await.unwrap_err());
    assert_eq!(err.code(), tonic::Code::OutOfRange);
    assert!(err.message().contains("required revision is a future revision"), "{}", err.message());

    // Delete leaves a tombstone; recreating starts a new generation.
    let d = c.delete("k", Some(DeleteOptions::new().with_prev_key())).await.unwrap();
    assert_eq!(d.deleted(), 1);
    assert_eq!(d.prev_kvs()[0].value(), b"v2");
    assert!(c.get("k", None).await.unwrap().kvs().is_empty());
    c.put("k", "again", None).await.unwrap();
    let kv = c.get("k", None).await.unwrap().kvs()[0].clone();
    assert_eq!((kv.version(), kv.create_revision()), (1, base + 4));
    // A delete of nothing does not bump the revision.
    let before = rev(&mut c).await;
    assert_eq!(c.delete("absent", None).await.unwrap().deleted(), 0);
    assert_eq!(rev(&mut c).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_prefix_limit_sort_count() {
    let t = TestStore::start().await;
    let mut c = t.client().await;
    for (k, v) in [("p/b", "2"), ("p/a", "3"), ("p/c", "1"), ("q", "x")] {
        c.put(k, v, None).await.unwrap();
    }
    let all = c.get("p/", Some(GetOptions::new().with_prefix())).await.unwrap();
    let keys: Vec<&[u8]> = all.kvs().iter().map(|kv| kv.key()).collect();
    assert_eq!(keys, vec![&b"p/a"[..], b"p/b", b"p/c"]);
    assert_eq!(all.count(), 3);

    let limited = c.get("p/", Some(GetOptions::new().with_prefix().with_limit(2))).await.unwrap();
    assert_eq!(limited.kvs().len(), 2);
    assert!(limited.more());
    assert_eq!(limited.count(), 3);

    let by_value = c
        .get("p/", Some(GetOptions::new().with_prefix().with_sort(SortTarget::Value, SortOrder::Descend)))
        .await
        .unwrap();
    let values: Vec<&[u8]> = by_value.kvs().iter().map(|kv| kv.value()).collect();
    assert_eq!(values, vec![&b"3"[..], b"2", b"1"]);

    let count = c.get("p/", Some(GetOptions::new().with_prefix().with_count_only())).await.unwrap();
    assert_eq!((count.count(), count.kvs().len()), (3, 0));
    let keys_only = c.get("p/", Some(GetOptions::new().with_prefix().with_keys_only())).await.unwrap();
    assert!(keys_only.kvs().iter().all(|kv| kv.value().is_empty()));
    let from = c.get("p/b", Some(GetOptions::new().with_from_key())).await.unwrap();
    let keys: Vec<&[u8]> = from.kvs().iter().map(|kv| kv.key()).collect();
    assert_eq!(keys, vec![&b"p/b"[..], b"p/c", b"q", b"ready"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_compare_branches_and_errors() {
    let t = TestStore::start().await;
    let mut c = t.client().await;
    c.put("acct", "10", None).await.unwrap();
    let cas = |expect: &str, new: &str| {
        Txn::new()
            .when([Compare::value("acct", CompareOp::Equal, expect)])
            .and_then([TxnOp::put("acct", new, None), TxnOp::get("acct", None)])
            .or_else([TxnOp::get("acct", None)])
    };
    let ok = c.txn(cas("10", "20")).await.unwrap();
    assert!(ok.succeeded());
    // Reads later in a txn see its earlier writes.
    match &ok.op_responses()[1] {
        etcd_client::TxnOpResponse::Get(g) => assert_eq!(g.kvs()[0].value(), b"20"),
        other => panic!("unexpected {other:?}"),
    }
    let failed = c.txn(cas("10", "30")).await.unwrap();
    assert!(!failed.succeeded());
    assert_eq!(c.get("acct", None).await.unwrap().kvs()[0].value(), b"20");

    let mod_rev = c.get("acct", None).await.unwrap().kvs()[0].mod_revision();
    let by_rev = Txn::new()
        .when([Compare::mod_revision("acct", CompareOp::Equal, mod_rev)])
        .and_then([TxnOp::delete("acct", None)]);
    assert!(c.txn(by_rev).await.unwrap().succeeded());

    let before = rev(&mut c).await;
    let dup = Txn::new().and_then([TxnOp::put("d", "1", None), TxnOp::put("d", "2", None)]);
    let err = status_of(c.txn(dup).await.unwrap_err());
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("duplicate key given in txn request"), "{}", err.message());
    assert_eq!(rev(&mut c).await, before, "a refused txn changes nothing");
    assert!(c.get("d", None).await.unwrap().kvs().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_etcd_errors_and_changes_nothing() {
    let t = TestStore::start_in(tempfile::tempdir().unwrap(), |c| c.max_request_bytes = 10_000).await;
    let mut c = t.client().await;
    let before = rev(&mut c).await;

    let err = status_of(c.put("", "v", None).await.unwrap_err());
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(err.message(), "etcdserver: key is not provided");

    let err = status_of(c.put("big", vec![b'x'; 20_000], None).await.unwrap_err());
    assert_eq!(err.message(), "etcdserver: request is too large");

    let err = status_of(c.put("k", "v", Some(PutOptions::new().with_lease(1234))).await.unwrap_err());
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert_eq!(err.message(), "etcdserver: requested lease not found");

    let err = status_of(c.lease_revoke(1234).await.unwrap_err());
    assert_eq!(err.message(), "etcdserver: requested lease not found");

    let err = status_of(c.put("k", "", Some(PutOptions::new().with_ignore_value())).await.unwrap_err());
    assert_eq!(err.message(), "etcdserver: key not found");

    assert_eq!(rev(&mut c).await, before);
    assert!(c.get("big", None).await.unwrap().kvs().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_removes_history() {
    let t = TestStore::start().await;
    let mut c = t.client().await;
    let r1 = c.put("c", "1", None).await.unwrap().header().unwrap().revision();
    let r2 = c.put("c", "2", None).await.unwrap().header().unwrap().revision();
    c.put("c", "3", None).await.unwrap();
    c.compact(r2, None).await.unwrap();
    let err = status_of(c.get("c", Some(GetOptions::new().with_revision(r1))).await.unwrap_err());
    assert!(err.message().contains("required revision has been compacted"), "{}", err.message());
    // The compaction revision itself is still readable, and so is the present.
    assert_eq!(c.get("c", Some(GetOptions::new().with_revision(r2))).await.unwrap().kvs()[0].value(), b"2");
    assert_eq!(c.get("c", None).await.unwrap().kvs()[0].value(), b"3");
    let err = status_of(c.compact(r1, None).await.unwrap_err());
    assert!(err.message().contains("compacted"), "{}", err.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_replays_history_then_follows_live_exactly_once() {
    let t = TestStore::start().await;
    let mut c = t.client().await;
    let start = rev(&mut c).await + 1;
    for i in 0..50 {
        c.put(format!("w/{i}"), format!("v{i}"), None).await.unwrap();
    }
    let mut s = c.watch("w/", Some(WatchOptions::new().with_prefix().with_start_revision(start))).await.unwrap();
    let mut writer = t.client().await;
    let live = tokio::spawn(async move {
        for i in 50..300 {
            writer.put(format!("w/{i}"), format!("v{i}"), None).await.unwrap();
        }
        writer.delete("w/0", None).await.unwrap();
    });
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.len() < 301 {
        let msg = tokio::time::timeout_at(deadline, s.message()).await.expect("watch stalled").unwrap().unwrap();
        for e in msg.events() {
            let kv = e.kv().unwrap();
            seen.push((kv.mod_revision(), e.event_type(), kv.key().to_vec()));
        }
    }
    live.await.unwrap();
    let revs: Vec<i64> = seen.iter().map(|(r, _, _)| *r).collect();
    let expected: Vec<i64> = (start..start + 301).collect();
    assert_eq!(revs, expected, "every revision exactly once, in order");
    assert_eq!(seen[300].1, EventType::Delete);
    assert_eq!(seen[0].2, b"w/0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prev_kv_filters_cancel_and_compacted_start() {
    let t = TestStore::start().await;
    let mut c = t.client().await;
    c.put("f", "old", None).await.unwrap();
    let mut s = c
        .watch("f", Some(WatchOptions::new().with_prev_key().with_filters([WatchFilterType::NoPut])))
        .await
        .unwrap();
    let created = s.message().await.unwrap().unwrap();
    assert!(created.created());
    c.put("f", "new", None).await.unwrap(); // filtered out
    c.delete("f", None).await.unwrap();
    let msg = s.message().await.unwrap().unwrap();
    assert_eq!(msg.events().len(), 1);
    let e = &msg.events()[0];
    assert_eq!(e.event_type(), EventType::Delete);
    assert_eq!(e.prev_kv().unwrap().value(), b"new");
    s.cancel(created.watch_id()).await.unwrap();
    let canceled = s.message().await.unwrap().unwrap();
    assert!(canceled.canceled());

    let r = c.put("f", "1", None).await.unwrap().header().unwrap().revision();
    c.put("f", "2", None).await.unwrap();
    c.compact(r + 1, None).await.unwrap();
    let mut s = c.watch("f", Some(WatchOptions::new().with_start_revision(r))).await.unwrap();
    let mut compacted = None;
    for _ in 0..3 {
        let m = s.message().await.unwrap().unwrap();
        if m.canceled() {
            compacted = Some(m.compact_revision());
            break;
        }
    }
    assert_eq!(compacted, Some(r + 1), "a watch from a compacted revision is cancelled with compact_revision");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_attach_keep_alive_expire_and_revoke() {
    let t = TestStore::start().await;
    let mut c = t.client().await;
    let lease = c.lease_grant(60, None).await.unwrap();
    assert_eq!(lease.ttl(), 60);
    c.put("l/a", "1", Some(PutOptions::new().with_lease(lease.id()))).await.unwrap();
    let ttl = c
        .lease_time_to_live(lease.id(), Some(etcd_client::LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .unwrap();
    assert_eq!(ttl.granted_ttl(), 60);
    assert!(ttl.ttl() > 55 && ttl.ttl() <= 60, "remaining {}", ttl.ttl());
    assert_eq!(ttl.keys(), &[b"l/a".to_vec()]);
    assert!(c.leases().await.unwrap().leases().iter().any(|l| l.id() == lease.id()));
    let (mut keeper, mut stream) = c.lease_keep_alive(lease.id()).await.unwrap();
    keeper.keep_alive().await.unwrap();
    assert_eq!(stream.message().await.unwrap().unwrap().ttl(), 60);

    let before = rev(&mut c).await;
    c.lease_revoke(lease.id()).await.unwrap();
    assert!(c.get("l/a", None).await.unwrap().kvs().is_empty());
    assert_eq!(rev(&mut c).await, before + 1, "revoking deletes attached keys in one revision");
    assert_eq!(c.lease_time_to_live(lease.id(), None).await.unwrap().ttl(), -1);

    // Expiry: the leader revokes an unrenewed lease through raft.
    let short = c.lease_grant(1, None).await.unwrap();
    c.put("l/short", "1", Some(PutOptions::new().with_lease(short.id()))).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !c.get("l/short", None).await.unwrap().kvs().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "expired lease's key never deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_status_hash_snapshot_members() {
    let t = TestStore::start().await;
    let mut c = t.client().await;
    c.put("m", "1", None).await.unwrap();
    let status = c.status().await.unwrap();
    let member = status.header().unwrap().member_id();
    assert_eq!(status.leader(), member);
    assert!(status.raft_index() > 0 && status.raft_term() > 0);
    assert!(status.db_size() > 0);

    let h1 = c.hash_kv(0).await.unwrap().hash();
    assert_eq!(c.hash_kv(0).await.unwrap().hash(), h1, "hash is stable");
    c.put("m", "2", None).await.unwrap();
    assert_ne!(c.hash_kv(0).await.unwrap().hash(), h1, "hash covers new writes");

    let members = c.member_list().await.unwrap();
    assert_eq!(members.members().len(), 1);
    assert_eq!(members.members()[0].id(), member);
    assert_eq!(members.members()[0].name(), "t");

    let mut snap = c.snapshot().await.unwrap();
    let mut bytes = Vec::new();
    while let Some(chunk) = snap.message().await.unwrap() {
        bytes.extend_from_slice(chunk.blob());
    }
    assert!(store::raft::parse_snapshot(&bytes).is_ok(), "snapshot stream is a valid backup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_data_and_revision() {
    let t = TestStore::start().await;
    let mut c = t.client().await;
    for i in 0..20 {
        c.put(format!("r/{i}"), format!("{i}"), None).await.unwrap();
    }
    let r = rev(&mut c).await;
    drop(c);
    let t = t.restart().await;
    let mut c = t.client().await;
    let got = c.get("r/", Some(GetOptions::new().with_prefix())).await.unwrap();
    assert_eq!(got.count(), 20);
    // The readiness probe after restart wrote once more.
    assert_eq!(rev(&mut c).await, r + 1);
    let next = c.put("r/x", "x", None).await.unwrap().header().unwrap().revision();
    assert_eq!(next, r + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_request_reports_the_delivered_revision() {
    let t = TestStore::start().await;
    let mut c = t.client().await;
    let mut s = c.watch("pr/", Some(WatchOptions::new().with_prefix())).await.unwrap();
    assert!(s.message().await.unwrap().unwrap().created());
    let r = c.put("pr/a", "1", None).await.unwrap().header().unwrap().revision();
    let e = s.message().await.unwrap().unwrap();
    assert_eq!(e.events()[0].kv().unwrap().mod_revision(), r);
    c.put("other", "x", None).await.unwrap();
    s.request_progress().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = tokio::time::timeout_at(deadline, s.message()).await.expect("no progress response").unwrap().unwrap();
        if m.events().is_empty() && !m.created() && !m.canceled() {
            // Every event up to the header revision has been delivered, and the non-matching
            // write at r + 1 counts as delivered too.
            assert_eq!(m.header().unwrap().revision(), r + 1);
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_prompt_even_with_open_watches() {
    let mut t = TestStore::start().await;
    let mut c = t.client().await;
    let mut s = c.watch("sd/", Some(WatchOptions::new().with_prefix())).await.unwrap();
    assert!(s.message().await.unwrap().unwrap().created());
    let lease = c.lease_grant(60, None).await.unwrap().id();
    let (_keeper, _stream) = c.lease_keep_alive(lease).await.unwrap();
    let started = std::time::Instant::now();
    t.store.take().unwrap().shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(3), "shutdown took {:?}", started.elapsed());
}
