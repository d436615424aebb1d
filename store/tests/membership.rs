//! etcd's membership operations against in-process members, through the `etcd-client` crate:
//! every member is a real [`RunningStore`] on loopback (fixed ports picked free before start,
//! since a member's peer URL is part of its identity).
//!
//! What each test proves, in one line:
//! - `every_member_lists_every_name_and_url`: members publish their name and client URLs, so
//!   MemberList (serializable and linearizable) is complete on every member;
//! - `added_voter_joins_catches_up_and_counts_in_the_quorum`: MemberAdd through a follower, the
//!   new member starts with `existing`, catches up, is promoted automatically and its vote is
//!   needed once a founding member is down;
//! - `added_voter_is_promoted_by_the_next_leader`: the promotion survives a leader change;
//! - `strict_reconfig_check_keeps_a_reachable_quorum`: a removal that would lose the quorum is
//!   refused;
//! - `learner_promotion_and_refused_changes`: promote rules and etcd's error codes/messages;
//! - `removed_follower_stops_serving_and_the_cluster_keeps_writing`, and
//!   `removing_the_leader_leaves_the_rest_serving`;
//! - `updated_peer_urls_are_used_after_the_member_moves`;
//! - `move_leader_hands_leadership_to_the_target`, also under a steady write load.
//!
//! Every wait is a bounded poll; every client call is bounded by [`CALL_BOUND`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, GetOptions, MemberAddOptions};
use openraft::ServerState;
use store::pb::etcdserverpb::cluster_client::ClusterClient;
use store::pb::etcdserverpb::MemberListRequest;
use store::server::{member_id, ClusterState, RunningStore, StoreConfig, StoreNode};
use tempfile::TempDir;

mod common;
use common::{bounded, free_ports, poll};

const HEARTBEAT: Duration = Duration::from_millis(50);
const ELECTION: Duration = Duration::from_millis(300);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest any one client call may take (request timeout plus waiting for a leader plus slack).
const CALL_BOUND: Duration = Duration::from_secs(8);
/// Bound on a cluster electing a leader, a member catching up, a publish landing.
const SETTLE: Duration = Duration::from_secs(20);
const TOKEN: &str = "membership-test";

fn status_of(e: etcd_client::Error) -> tonic::Status {
    match e {
        etcd_client::Error::GRpcStatus(s) => s,
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}

fn assert_status(what: &str, e: etcd_client::Error, code: tonic::Code, message: &str) {
    let s = status_of(e);
    assert_eq!((s.code(), s.message()), (code, message), "{what}");
}

/// One member: its configuration (ports included, so it can restart in place) and, while it
/// runs, the store.
struct Member {
    config: StoreConfig,
    id: u64,
    endpoint: String,
    peer_url: String,
    running: Option<RunningStore>,
}

impl Member {
    fn new(root: &TempDir, name: &str, ports: (u16, u16), initial: &[(String, String)], state: ClusterState) -> Self {
        let client: SocketAddr = format!("127.0.0.1:{}", ports.0).parse().unwrap();
        let peer_url = format!("http://127.0.0.1:{}", ports.1);
        let mut config = StoreConfig::single(name, root.path().join(name), client);
        config.listen_peer = Some(format!("127.0.0.1:{}", ports.1).parse().unwrap());
        config.advertise_peer_urls = vec![peer_url.clone()];
        config.initial_cluster = initial.to_vec();
        config.initial_cluster_state = state;
        config.initial_cluster_token = TOKEN.into();
        config.heartbeat = HEARTBEAT;
        config.election_timeout = ELECTION;
        config.request_timeout = REQUEST_TIMEOUT;
        Self { id: config.member_id(), endpoint: format!("http://{client}"), peer_url, config, running: None }
    }

    fn node(&self) -> &Arc<StoreNode> {
        self.running.as_ref().unwrap_or_else(|| panic!("{} is not running", self.config.name)).node()
    }

    async fn client(&self) -> Client {
        let opts = ConnectOptions::new().with_connect_timeout(Duration::from_secs(2)).with_timeout(CALL_BOUND);
        bounded("connect", CALL_BOUND, Client::connect([&self.endpoint], Some(opts))).await.expect("connect")
    }

    async fn stop(&mut self) {
        if let Some(s) = self.running.take() {
            bounded("shutdown", Duration::from_secs(20), s.shutdown()).await;
        }
    }
}

/// Founding members on loopback, plus the members added later.
struct Cluster {
    members: Vec<Member>,
    root: TempDir,
}

impl Cluster {
    /// `n` founding members, started together; returns once they follow one leader.
    async fn start(n: usize) -> Self {
        let root = tempfile::tempdir().unwrap();
        let ports = free_ports(2 * n);
        let names: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
        let initial: Vec<(String, String)> =
            (0..n).map(|i| (names[i].clone(), format!("http://127.0.0.1:{}", ports[2 * i + 1]))).collect();
        let mut members: Vec<Member> = (0..n)
            .map(|i| Member::new(&root, &names[i], (ports[2 * i], ports[2 * i + 1]), &initial, ClusterState::New))
            .collect();
        let started = futures::future::join_all(members.iter().map(|m| RunningStore::start(m.config.clone()))).await;
        for (m, s) in members.iter_mut().zip(started) {
            m.running = Some(s.unwrap_or_else(|e| panic!("starting {}: {e}", m.config.name)));
        }
        let c = Self { members, root };
        c.leader().await;
        c
    }

    fn running(&self) -> Vec<usize> {
        (0..self.members.len()).filter(|i| self.members[*i].running.is_some()).collect()
    }

    /// The index of the member every running voter follows (waiting for one).
    async fn leader(&self) -> usize {
        poll("a leader every running member follows", SETTLE, || async {
            let metrics: Vec<_> = self
                .running()
                .into_iter()
                .map(|i| (i, self.members[i].node().raft().metrics().borrow().clone()))
                .collect();
            let (leader, lm) = metrics.iter().find(|(_, m)| m.state == ServerState::Leader)?;
            let all = metrics.iter().all(|(_, m)| m.current_leader == Some(lm.id) && m.current_term == lm.current_term);
            all.then_some(*leader)
        })
        .await
    }

    /// A running member other than the leader (and other than `not`).
    async fn follower(&self, not: &[usize]) -> usize {
        let leader = self.leader().await;
        self.running().into_iter().find(|i| *i != leader && !not.contains(i)).expect("a follower")
    }

    /// The initial cluster a member added now starts with: every member plus itself.
    fn initial_with(&self, name: &str, peer_url: &str) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> =
            self.members.iter().map(|m| (m.config.name.clone(), m.peer_url.clone())).collect();
        v.push((name.to_string(), peer_url.to_string()));
        v
    }

    /// Describes a member to be added (not started): fresh ports, `existing` state.
    fn prepare(&self, name: &str) -> Member {
        let ports = free_ports(2);
        let url = format!("http://127.0.0.1:{}", ports[1]);
        Member::new(&self.root, name, (ports[0], ports[1]), &self.initial_with(name, &url), ClusterState::Existing)
    }

    /// Starts a prepared member and adds it to the cluster's list; returns its index.
    async fn start_added(&mut self, mut m: Member) -> usize {
        let store = bounded("start the added member", SETTLE, RunningStore::start(m.config.clone()))
            .await
            .unwrap_or_else(|e| panic!("starting {}: {e}", m.config.name));
        assert_eq!(store.node().id(), m.id, "the added member's id");
        m.running = Some(store);
        self.members.push(m);
        self.members.len() - 1
    }

    /// Members as member `i` lists them (serializable), by id.
    async fn list(&self, i: usize) -> Vec<etcd_client::Member> {
        let mut c = self.members[i].client().await;
        let resp = bounded("member list", CALL_BOUND, c.member_list()).await.expect("member list");
        resp.members().to_vec()
    }

    /// Waits until member `i` lists exactly `expect` (id, name, peer URL, client URL, learner).
    async fn wait_listed(&self, i: usize, expect: &[(u64, String, String, String, bool)]) {
        let mut want = expect.to_vec();
        want.sort();
        let mut last = vec![];
        let deadline = Instant::now() + SETTLE;
        loop {
            let mut got: Vec<_> = self
                .list(i)
                .await
                .iter()
                .map(|m| {
                    (m.id(), m.name().to_string(), m.peer_urls().join(","), m.client_urls().join(","), m.is_learner())
                })
                .collect();
            got.sort();
            if got == want {
                return;
            }
            last = got;
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("member {i} lists {last:#?}, expected {want:#?}");
    }

    /// What every member should list: each running-or-not member as a voter unless `learners`.
    fn expected(&self, idx: &[usize], learners: &[usize]) -> Vec<(u64, String, String, String, bool)> {
        idx.iter()
            .map(|i| {
                let m = &self.members[*i];
                (m.id, m.config.name.clone(), m.peer_url.clone(), m.endpoint.clone(), learners.contains(i))
            })
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(s) = m.running.take() {
                s.node().begin_shutdown();
            }
        }
    }
}

/// Starts a member again on its data dir. openraft's state-machine worker task ends (and lets
/// go of the database) a moment after `Raft::shutdown` returns, so RocksDB's lock may still be
/// held for a few milliseconds: that one error is retried, within a bound.
async fn restart_in_place(config: &StoreConfig) -> RunningStore {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match RunningStore::start(config.clone()).await {
            Ok(store) => return store,
            Err(e) if e.to_string().contains("lock") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("restarting {}: {e}", config.name),
        }
    }
}

async fn put(c: &mut Client, key: &str, value: &str) {
    bounded("put", CALL_BOUND, c.put(key, value, None)).await.unwrap_or_else(|e| panic!("put {key}: {e}"));
}

/// Polls a serializable read of `key` on member `m` until it returns `value`.
async fn wait_value(m: &Member, key: &str, value: &str) {
    let c = m.client().await;
    poll(&format!("{key}={value} on {}", m.config.name), SETTLE, || {
        let mut c = c.clone();
        async move {
            let got = tokio::time::timeout(CALL_BOUND, c.get(key, Some(GetOptions::new().with_serializable()))).await;
            match got {
                Ok(Ok(r)) => r.kvs().first().filter(|kv| kv.value() == value.as_bytes()).map(|_| ()),
                _ => None,
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_member_lists_every_name_and_url() {
    let c = Cluster::start(3).await;
    let want = c.expected(&[0, 1, 2], &[]);
    for i in 0..3 {
        c.wait_listed(i, &want).await;
    }
    // Linearizable MemberList on a follower goes through the leader's read index.
    let f = c.follower(&[]).await;
    let mut raw = ClusterClient::connect(c.members[f].endpoint.clone()).await.unwrap();
    let resp =
        bounded("linearizable member list", CALL_BOUND, raw.member_list(MemberListRequest { linearizable: true }))
            .await
            .unwrap()
            .into_inner();
    let header = resp.header.unwrap();
    assert_eq!(header.member_id, c.members[f].id);
    assert_eq!(header.cluster_id, c.members[0].node().cluster_id());
    assert_eq!(resp.members.len(), 3);
    assert!(resp.members.iter().all(|m| !m.name.is_empty() && !m.client_ur_ls.is_empty() && !m.is_learner));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn added_voter_joins_catches_up_and_counts_in_the_quorum() {
    let mut c = Cluster::start(3).await;
    let f = c.follower(&[]).await;
    let mut client = c.members[f].client().await;
    for i in 0..30 {
        put(&mut client, &format!("before/{i}"), &format!("v{i}")).await;
    }

    // MemberAdd through a follower: forwarded to the leader, answered at once.
    let new = c.prepare("m3");
    let added =
        bounded("member add", CALL_BOUND, client.member_add([new.peer_url.as_str()], None)).await.expect("member add");
    let member = added.member().expect("the added member");
    assert_eq!(member.id(), member_id(&new.peer_url, TOKEN), "MemberAdd's id is the one the member computes");
    assert_eq!(member.id(), new.id);
    assert_eq!(member.peer_urls(), std::slice::from_ref(&new.peer_url));
    assert_eq!(member.name(), "", "unstarted");
    assert_eq!(added.member_list().len(), 4);
    assert_eq!(added.header().unwrap().member_id(), c.members[f].id);

    let n = c.start_added(new).await;
    // It catches up: its serializable reads see what was written before it was added.
    wait_value(&c.members[n], "before/29", "v29").await;
    wait_value(&c.members[n], "before/0", "v0").await;
    // It was added as a voter: once in sync the leader promotes it; its name and client URLs
    // are published.
    let want = c.expected(&[0, 1, 2, 3], &[]);
    for i in 0..4 {
        c.wait_listed(i, &want).await;
    }
    let leader = c.leader().await;
    let voters: Vec<u64> = c.members[leader].node().state().membership().membership().voter_ids().collect();
    assert!(voters.contains(&c.members[n].id), "voters {voters:?}");

    // Four voters: a quorum is three. With one founding follower down, every write needs the
    // new member's vote.
    let down = c.follower(&[n]).await;
    c.members[down].stop().await;
    let writer = c.running().into_iter().find(|i| *i != n).unwrap();
    let mut w = c.members[writer].client().await;
    put(&mut w, "after", "quorum-with-m3").await;
    wait_value(&c.members[n], "after", "quorum-with-m3").await;
    let leader = c.leader().await;
    let matched = c.members[leader].node().raft().metrics().borrow().replication.clone().unwrap();
    assert!(matched.get(&c.members[n].id).copied().flatten().is_some(), "the leader replicates to m3: {matched:?}");
}

/// The promotion of a member added as a voter survives a leader change: the next leader
/// promotes it (the intent is part of the membership).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn added_voter_is_promoted_by_the_next_leader() {
    let mut c = Cluster::start(3).await;
    let leader = c.leader().await;
    let mut lc = c.members[leader].client().await;
    let new = c.prepare("m3");
    bounded("member add", CALL_BOUND, lc.member_add([new.peer_url.as_str()], None)).await.expect("member add");

    // Leadership moves before the new member has even started.
    let next = c.follower(&[]).await;
    bounded("move-leader", CALL_BOUND, lc.move_leader(c.members[next].id)).await.expect("move-leader");
    assert_eq!(c.leader().await, next);

    let n = c.start_added(new).await;
    let want = c.expected(&[0, 1, 2, n], &[]);
    for i in 0..4 {
        c.wait_listed(i, &want).await;
    }
}

/// `--strict-reconfig-check` (on by default): with one voter down, removing another would
/// leave one reachable voter of two: refused as etcd does ("unhealthy cluster"); removing the
/// down one is allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn strict_reconfig_check_keeps_a_reachable_quorum() {
    let mut c = Cluster::start(3).await;
    let leader = c.leader().await;
    let down = c.follower(&[]).await;
    let alive = c.follower(&[down]).await;
    c.members[down].stop().await;
    // A voter counts as reachable for etcd's health window (5 s) after its last answer.
    tokio::time::sleep(Duration::from_millis(5500)).await;
    let mut lc = c.members[leader].client().await;
    let e = bounded("remove a live voter", CALL_BOUND, lc.member_remove(c.members[alive].id)).await.unwrap_err();
    assert_status("remove a live voter", e, tonic::Code::Unavailable, "etcdserver: unhealthy cluster");
    assert_eq!(c.list(leader).await.len(), 3, "nothing was removed");
    bounded("remove the down voter", CALL_BOUND, lc.member_remove(c.members[down].id)).await.expect("member remove");
    put(&mut lc, "k", "two voters").await;
    wait_value(&c.members[alive], "k", "two voters").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn learner_promotion_and_refused_changes() {
    let mut c = Cluster::start(3).await;
    let leader = c.leader().await;
    let f = c.follower(&[]).await;
    let mut client = c.members[f].client().await;
    put(&mut client, "k", "v").await;

    let new = c.prepare("learner");
    let added = bounded(
        "member add --learner",
        CALL_BOUND,
        client.member_add([new.peer_url.as_str()], Some(MemberAddOptions::new().with_is_learner())),
    )
    .await
    .expect("member add as learner");
    let id = added.member().unwrap().id();
    assert!(added.member().unwrap().is_learner());
    assert!(added.member_list().iter().any(|m| m.id() == id && m.is_learner()));

    // Refused changes, with etcd's codes and messages.
    use tonic::Code::{FailedPrecondition, InvalidArgument, NotFound};
    let e = client.member_promote(id).await.unwrap_err();
    assert_status(
        "promote an unstarted learner",
        e,
        FailedPrecondition,
        "etcdserver: can only promote a learner member which is in sync with leader",
    );
    let e = client.member_promote(c.members[leader].id).await.unwrap_err();
    assert_status("promote a voter", e, FailedPrecondition, "etcdserver: can only promote a learner member");
    let e = client.member_add([new.peer_url.as_str()], None).await.unwrap_err();
    assert_status("add a known peer URL", e, FailedPrecondition, "etcdserver: Peer URLs already exists");
    let e = client.member_add([c.members[0].peer_url.as_str()], None).await.unwrap_err();
    assert_status("add a founding member's peer URL", e, FailedPrecondition, "etcdserver: Peer URLs already exists");
    let e = client.member_remove(42).await.unwrap_err();
    assert_status("remove an unknown id", e, NotFound, "etcdserver: member not found");
    let e = client.member_promote(42).await.unwrap_err();
    assert_status("promote an unknown id", e, NotFound, "etcdserver: member not found");
    let e = client.member_update(42, vec!["http://127.0.0.1:1".to_string()]).await.unwrap_err();
    assert_status("update an unknown id", e, NotFound, "etcdserver: member not found");
    let e = client.member_add(["not-a-url"], None).await.unwrap_err();
    assert_status("add a bad URL", e, InvalidArgument, "etcdserver: given member URLs are invalid");
    let e = client.member_update(c.members[f].id, vec![c.members[leader].peer_url.clone()]).await.unwrap_err();
    assert_status("update to another member's URL", e, FailedPrecondition, "etcdserver: Peer URLs already exists");

    // Started, it catches up and stays a learner until promoted.
    let n = c.start_added(new).await;
    wait_value(&c.members[n], "k", "v").await;
    let want = c.expected(&[0, 1, 2, 3], &[3]);
    c.wait_listed(f, &want).await;
    let status = bounded("status", CALL_BOUND, c.members[n].client().await.status()).await.unwrap();
    assert!(status.is_learner(), "Status of a learner says so");
    let promoted = poll("promotion once in sync", SETTLE, || {
        let mut client = client.clone();
        async move { client.member_promote(id).await.ok() }
    })
    .await;
    assert!(promoted.members().iter().any(|m| m.id() == id && !m.is_learner()));
    let want = c.expected(&[0, 1, 2, 3], &[]);
    for i in 0..4 {
        c.wait_listed(i, &want).await;
    }
    let e = client.member_promote(id).await.unwrap_err();
    assert_status("promote twice", e, FailedPrecondition, "etcdserver: can only promote a learner member");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn removed_follower_stops_serving_and_the_cluster_keeps_writing() {
    let mut c = Cluster::start(3).await;
    let gone = c.follower(&[]).await;
    let via = c.follower(&[gone]).await;
    let mut client = c.members[via].client().await;
    put(&mut client, "k", "before").await;
    wait_value(&c.members[gone], "k", "before").await;

    let removed =
        bounded("member remove", CALL_BOUND, client.member_remove(c.members[gone].id)).await.expect("member remove");
    let ids: Vec<u64> = removed.members().iter().map(|m| m.id()).collect();
    assert_eq!(ids.len(), 2);
    assert!(!ids.contains(&c.members[gone].id));

    // The rest keeps serving writes (two voters: both needed).
    put(&mut client, "k", "after").await;
    let rest: Vec<usize> = (0..3).filter(|i| *i != gone).collect();
    let want = c.expected(&rest, &[]);
    for &i in &rest {
        wait_value(&c.members[i], "k", "after").await;
        c.wait_listed(i, &want).await;
    }

    // The removed member finds out (from its peers: the leader stopped talking to it) and
    // stops serving.
    let node = c.members[gone].node().clone();
    poll("the removed member notices", SETTLE, || async { node.is_removed().then_some(()) }).await;
    bounded("removed() resolves", CALL_BOUND, node.removed()).await;
    let mut rc = c.members[gone].client().await;
    let e = rc.get("k", Some(GetOptions::new().with_serializable())).await.unwrap_err();
    assert_status("read on a removed member", e, tonic::Code::Unavailable, "etcdserver: server stopped");
    let e = rc.put("k", "x", None).await.unwrap_err();
    assert_eq!(status_of(e).code(), tonic::Code::Unavailable);

    // Its data dir refuses a restart.
    c.members[gone].stop().await;
    let err = RunningStore::start(c.members[gone].config.clone()).await.unwrap_err();
    assert!(err.to_string().contains("permanently removed from the cluster"), "{err}");
    put(&mut client, "k", "still").await;

    // Added again at the same peer URL (so with the same member id) and started on a fresh
    // data dir, it replays the log, including the entry that removed its previous incarnation,
    // and must not take that for its own removal.
    let peer_url = c.members[gone].peer_url.clone();
    bounded("member add again", CALL_BOUND, client.member_add([peer_url.as_str()], None)).await.expect("member add");
    // Same name too (as an operator replacing a broken member would do), on a fresh data dir.
    let peer_port: u16 = peer_url.rsplit(':').next().unwrap().parse().unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let name = c.members[gone].config.name.clone();
    let again = Member::new(
        &fresh,
        &name,
        (free_ports(1)[0], peer_port),
        &c.members[gone].config.initial_cluster,
        ClusterState::Existing,
    );
    assert_eq!(again.id, c.members[gone].id, "same peer URL, same member id");
    let n = c.start_added(again).await;
    wait_value(&c.members[n], "k", "still").await;
    let want = c.expected(&[rest[0], rest[1], n], &[]);
    for i in [rest[0], rest[1], n] {
        c.wait_listed(i, &want).await;
    }
    let node = c.members[n].node().clone();
    assert!(!node.is_removed(), "the re-added member took the old removal for its own");
    let mut ac = c.members[n].client().await;
    let got = bounded("linearizable read on the re-added member", CALL_BOUND, ac.get("k", None)).await.expect("get");
    assert_eq!(got.kvs()[0].value(), b"still");
    put(&mut ac, "k", "through the re-added member").await;
    wait_value(&c.members[via], "k", "through the re-added member").await;
    // The members stop before their data dirs go.
    drop(c);
    drop(fresh);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn removing_the_leader_leaves_the_rest_serving() {
    let c = Cluster::start(3).await;
    let leader = c.leader().await;
    let mut lc = c.members[leader].client().await;
    put(&mut lc, "k", "v").await;
    let removed = bounded("member remove <leader>", CALL_BOUND, lc.member_remove(c.members[leader].id))
        .await
        .expect("the leader removes itself");
    assert_eq!(removed.members().len(), 2);
    let node = c.members[leader].node().clone();
    poll("the removed leader notices", SETTLE, || async { node.is_removed().then_some(()) }).await;

    let rest: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let new_leader = poll("a new leader among the rest", SETTLE, || async {
        let ms: Vec<_> = rest.iter().map(|i| c.members[*i].node().raft().metrics().borrow().clone()).collect();
        let l = ms.iter().find(|m| m.state == ServerState::Leader)?;
        ms.iter().all(|m| m.current_leader == Some(l.id)).then_some(l.id)
    })
    .await;
    assert_ne!(new_leader, c.members[leader].id);
    let mut rc = c.members[rest[0]].client().await;
    put(&mut rc, "k", "after").await;
    let want = c.expected(&rest, &[]);
    for &i in &rest {
        wait_value(&c.members[i], "k", "after").await;
        c.wait_listed(i, &want).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn updated_peer_urls_are_used_after_the_member_moves() {
    let mut c = Cluster::start(3).await;
    let f = c.follower(&[]).await;
    let via = c.follower(&[f]).await;
    let mut client = c.members[via].client().await;
    put(&mut client, "k", "v1").await;

    let port = free_ports(1)[0];
    let new_url = format!("http://127.0.0.1:{port}");
    let updated = bounded("member update", CALL_BOUND, client.member_update(c.members[f].id, vec![new_url.clone()]))
        .await
        .expect("member update");
    let m = updated.members().iter().find(|m| m.id() == c.members[f].id).unwrap().clone();
    assert_eq!(m.peer_urls(), std::slice::from_ref(&new_url));
    assert_eq!(m.name(), c.members[f].config.name, "the name is kept");
    assert_eq!(m.client_urls(), [c.members[f].endpoint.clone()], "the client URLs are kept");

    // The member moves to the new peer URL (same data dir, same id) and is reached there.
    c.members[f].stop().await;
    c.members[f].config.listen_peer = Some(format!("127.0.0.1:{port}").parse().unwrap());
    c.members[f].config.advertise_peer_urls = vec![new_url.clone()];
    c.members[f].peer_url = new_url.clone();
    let store = restart_in_place(&c.members[f].config).await;
    assert_eq!(store.node().id(), c.members[f].id);
    c.members[f].running = Some(store);
    put(&mut client, "k", "v2").await;
    wait_value(&c.members[f], "k", "v2").await;
    // And it forwards writes to the leader from there.
    let mut fc = c.members[f].client().await;
    put(&mut fc, "from-moved", "yes").await;
    let want = c.expected(&[0, 1, 2], &[]);
    for i in 0..3 {
        c.wait_listed(i, &want).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn move_leader_hands_leadership_to_the_target() {
    let c = Cluster::start(3).await;
    let mut leader = c.leader().await;
    let f = c.follower(&[]).await;
    let mut fc = c.members[f].client().await;
    put(&mut fc, "k", "v").await;

    // Only the leader moves leadership; the target must be a voter.
    let e = fc.move_leader(c.members[leader].id).await.unwrap_err();
    assert_status("move-leader on a follower", e, tonic::Code::FailedPrecondition, "etcdserver: not leader");
    let mut lc = c.members[leader].client().await;
    let e = lc.move_leader(42).await.unwrap_err();
    assert_status("move-leader to nobody", e, tonic::Code::FailedPrecondition, "etcdserver: bad leader transferee");
    bounded("move-leader to itself", CALL_BOUND, lc.move_leader(c.members[leader].id)).await.expect("no-op");

    // Round the cluster: each move lands on its target, and writes keep working.
    for round in 0..3 {
        let target = (leader + 1) % 3;
        let mut lc = c.members[leader].client().await;
        let started = Instant::now();
        bounded("move-leader", CALL_BOUND, lc.move_leader(c.members[target].id))
            .await
            .unwrap_or_else(|e| panic!("round {round}: move-leader {leader} -> {target}: {e}"));
        let now = c.leader().await;
        assert_eq!(now, target, "round {round}: leadership moved to the target");
        eprintln!("round {round}: moved leadership {leader} -> {target} in {:?}", started.elapsed());
        put(&mut fc, "k", &format!("round-{round}")).await;
        leader = target;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn move_leader_under_steady_writes_moves_it_and_loses_no_write() {
    let c = Cluster::start(3).await;
    let leader = c.leader().await;
    let target = c.follower(&[]).await;
    let other = c.follower(&[target]).await;

    // A write every 20 ms, to every member in turn: entries go out far more often than a
    // leader lease, so the transfer must hold them back to find its quiet window.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let mut clients = Vec::new();
        for m in &c.members {
            clients.push(m.client().await);
        }
        tokio::spawn(async move {
            let (mut acked, mut n) = (Vec::new(), 0u64);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let w = &mut clients[n as usize % 3];
                if let Ok(Ok(_)) = tokio::time::timeout(CALL_BOUND, w.put(format!("load/{n}"), n.to_string(), None)).await {
                    acked.push(n);
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (acked, n)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut lc = c.members[leader].client().await;
    bounded("move-leader under load", CALL_BOUND, lc.move_leader(c.members[target].id))
        .await
        .expect("move-leader under a steady write load");
    assert_eq!(c.leader().await, target, "leadership moved to the target, not to {other}");
    // Writes continue on the new leader.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acked, attempted) = writer.await.unwrap();
    let after: Vec<_> = acked.iter().filter(|&&n| n >= attempted.saturating_sub(10)).collect();
    assert!(!after.is_empty(), "writes succeed after the transfer ({} of {attempted} acknowledged)", acked.len());

    // Every acknowledged write is on every member.
    let mut tc = c.members[target].client().await;
    for n in &acked {
        let got = tc.get(format!("load/{n}"), None).await.unwrap();
        assert_eq!(got.kvs().len(), 1, "acknowledged write load/{n} is present");
    }
    for m in [leader, other] {
        wait_value(&c.members[m], &format!("load/{}", acked.last().unwrap()), &acked.last().unwrap().to_string()).await;
    }
}

/// Adding and removing members while clients write loses no acknowledged write: every
/// remaining member ends with every acknowledged value and the same HashKV.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn membership_changes_under_write_load_lose_no_acknowledged_write() {
    let mut c = Cluster::start(3).await;
    let leaving = c.follower(&[]).await;
    let staying: Vec<usize> = (0..3).filter(|i| *i != leaving).collect();

    // Four writers on the members that stay, each with its own keys, until told to stop.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4usize {
        let mut client = c.members[staying[w % staying.len()]].client().await;
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                let (key, value) = (format!("load/{w}/{n}"), format!("v{n}"));
                n += 1;
                // A failed or timed-out put is allowed (its outcome is unknown); only
                // acknowledged ones are checked.
                if let Ok(Ok(_)) = tokio::time::timeout(CALL_BOUND, client.put(key.as_str(), value.as_str(), None)).await {
                    acked.push((key, value));
                }
            }
            acked
        }));
    }

    // Add a voter while the load runs; it is promoted once in sync.
    let mut admin = c.members[staying[0]].client().await;
    let new = c.prepare("m3");
    bounded("member add", CALL_BOUND, admin.member_add([new.peer_url.as_str()], None)).await.expect("member add");
    let added = c.start_added(new).await;
    let added_id = c.members[added].id;
    poll("the added member promoted to voter", SETTLE, || async {
        let leader = c.leader().await;
        let voters: Vec<u64> = c.members[leader].node().state().membership().membership().voter_ids().collect();
        voters.contains(&added_id).then_some(())
    })
    .await;

    // Remove a founding member while the load still runs.
    let leaving_id = c.members[leaving].id;
    bounded("member remove", CALL_BOUND, admin.member_remove(leaving_id)).await.expect("member remove");
    c.members[leaving].stop().await;
    tokio::time::sleep(Duration::from_millis(300)).await; // let writes land on the new membership
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.expect("writer"));
    }
    assert!(acked.len() >= 50, "the load was real: only {} acknowledged writes", acked.len());

    // Every remaining member converges to the same revision and hash, with every acked value.
    let remaining: Vec<usize> = staying.iter().copied().chain([added]).collect();
    let rev = poll("remaining members at one revision", SETTLE, || async {
        let revs: Vec<i64> = remaining.iter().map(|i| c.members[*i].node().mvcc().current_revision()).collect();
        revs.windows(2).all(|w| w[0] == w[1]).then_some(revs[0])
    })
    .await;
    let mut hashes = Vec::new();
    for &i in &remaining {
        let mut client = c.members[i].client().await;
        hashes.push(bounded("hash_kv", CALL_BOUND, client.hash_kv(rev)).await.expect("hash_kv").hash());
        let got = bounded(
            "read the load back",
            CALL_BOUND,
            client.get("load/", Some(GetOptions::new().with_prefix().with_serializable())),
        )
        .await
        .expect("get");
        let stored: std::collections::HashMap<&[u8], &[u8]> = got.kvs().iter().map(|kv| (kv.key(), kv.value())).collect();
        for (key, value) in &acked {
            assert_eq!(
                stored.get(key.as_bytes()).copied(),
                Some(value.as_bytes()),
                "{key} acknowledged but missing or different on {}",
                c.members[i].config.name
            );
        }
    }
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "HashKV at {rev} differs: {hashes:?}");
}
