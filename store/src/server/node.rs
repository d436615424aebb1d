//! One store member: the engine, the raft instance, the state machine's read side and the
//! lessor, with the operations every gRPC service needs (propose, read barrier, headers), and
//! its life as a member: founding or joining a cluster, publishing its name and client URLs,
//! and noticing that it has been removed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::{ServerState, SnapshotPolicy};
use prost::Message;
use tokio::sync::{mpsc, oneshot, watch};
use tonic::transport::Channel;

use super::coalesce::Coalesced;
use super::config::{ClusterState, StoreConfig};
use super::forward;
use super::lessor::Lessor;
use crate::engine::{Durability, Engine, RocksEngine, WriteBatch};
use crate::keys::{self, Cf};
use crate::mvcc::{ApplyResponse, Mvcc};
use crate::pb::etcdserverpb::Member as PbMember;
use crate::pb::etcdserverpb::{LeaseRevokeRequest, ResponseHeader};
use crate::pb::storepb::raft_peer_client::RaftPeerClient;
use crate::pb::storepb::{
    internal_request, membership_change, ClusterInfoRequest, InternalBatch, InternalRequest, ProposeFailure,
    ReadIndexRequest,
};
use crate::raft::{
    Command, LeaderLog, LogId, LogStore, Member, Network, NodeId, PeerClients, PeerContacts, Raft, StateMachine,
    StateMachineHandle,
    WriteOutcome,
};
use crate::{Error, Result};

/// Who does leader-only work for this member.
#[derive(Debug, Clone)]
pub enum Leader {
    /// This member leads.
    Me,
    /// Another member leads: forward to it.
    Peer(NodeId, Member),
}

/// Most requests in one raft entry, and the byte budget that closes an entry early.
const MAX_BATCH: usize = 512;
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// A write waiting for the batcher, and where its outcome goes.
struct Proposal {
    request: InternalRequest,
    size: usize,
    reply: Reply,
}

/// Where the leader sends a follower the writes it could not propose.
pub type FailureSender = mpsc::UnboundedSender<std::result::Result<ProposeFailure, tonic::Status>>;

/// Who waits for a proposal's outcome.
enum Reply {
    /// A caller on this member.
    Local(oneshot::Sender<WriteOutcome>),
    /// A follower, through its stream of forwarded writes: it learns a committed outcome by
    /// applying the entry itself, so only failures to propose are sent.
    Forwarded { id: u64, failures: FailureSender },
}

impl Reply {
    /// The write was applied with `outcome`.
    fn applied(self, outcome: WriteOutcome) {
        if let Reply::Local(tx) = self {
            // The caller may have timed out and gone: nothing to tell it then.
            let _ = tx.send(outcome);
        }
    }

    /// The write could not be proposed (or its fate is unknown).
    fn fail(self, error: Error) {
        match self {
            Reply::Local(tx) => {
                let _ = tx.send(Err(error));
            }
            Reply::Forwarded { id, failures } => {
                // A follower that went away has nobody to tell.
                let _ = failures.send(Ok(ProposeFailure { id, error: crate::raft::encode(&error) }));
            }
        }
    }
}

/// A running store member.
pub struct StoreNode {
    config: StoreConfig,
    id: NodeId,
    cluster_id: u64,
    raft: Raft,
    engine: Arc<RocksEngine>,
    sm: Arc<StateMachineHandle<RocksEngine>>,
    lessor: Lessor,
    proposals: mpsc::Sender<Proposal>,
    /// While true, proposals wait in the queue instead of becoming entries (leader transfer).
    proposals_paused: watch::Sender<bool>,
    /// See [`keys::RAFT_JOINED_AT`] (0 for a founding member).
    joined_at: u64,
    /// This member's linearizable reads share read indexes.
    read_index: Coalesced<u64>,
    /// As the leader: its own reads and followers' read index requests share confirmations.
    leader_read_index: Coalesced<u64>,
    stopping: watch::Sender<bool>,
    peers: Arc<PeerClients>,
    /// Writes to the leader, as a follower.
    forwarder: forward::Forwarder,
    /// When each peer last answered a raft message.
    contacts: Arc<PeerContacts>,
    /// Held while a membership change (or a leadership transfer) runs on the leader: openraft
    /// refuses a change while another is uncommitted, so changes queue here instead.
    membership_changes: tokio::sync::Mutex<()>,
    /// False while a member that joins an existing cluster has not caught up yet.
    ready: watch::Sender<bool>,
    /// True once this member knows it has been removed from the cluster.
    removed: watch::Sender<bool>,
    /// When a leader last sent us entries or a snapshot (or when we started).
    last_leader_contact: Mutex<Instant>,
}

impl std::fmt::Debug for StoreNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreNode").field("name", &self.config.name).field("id", &self.id).finish()
    }
}

impl StoreNode {
    /// Opens the data dir, starts raft and, for a new cluster, bootstraps its membership.
    ///
    /// With `--initial-cluster-state existing` (a member added with MemberAdd), raft is not
    /// initialized: the member learns the cluster id from a peer, starts empty and is sent the
    /// log or a snapshot by the leader; reads wait until it has caught up.
    pub async fn start(config: StoreConfig) -> Result<Arc<Self>> {
        config.validate()?;
        if let Ok(note) = std::fs::read_to_string(removed_marker(&config)) {
            return Err(Error::InvalidArgument(format!(
                "the member has been permanently removed from the cluster ({}); start it with a fresh \
                 --data-dir after `etcdctl member add`",
                note.trim()
            )));
        }
        let db_dir = config.data_dir.join("db");
        std::fs::create_dir_all(&db_dir)
            .map_err(|e| Error::Storage(format!("cannot create data dir {}: {e}", config.data_dir.display())))?;
        let engine = Arc::new(RocksEngine::open(&db_dir)?);
        let (id, cluster_id, joined_at) = identity(&engine, &config).await?;

        let leader_log = Arc::new(LeaderLog::new(id));
        let sm = StateMachine::open(engine.clone())?.with_leader_log(leader_log.clone());
        let handle = sm.handle();
        let raft_config = openraft::Config {
            cluster_name: "ferrokube".into(),
            heartbeat_interval: config.heartbeat.as_millis() as u64,
            // openraft 0.9 starts an election after its leader lease (= election_timeout_max)
            // plus a random timeout in [min, max), and a candidate that saw a longer log
            // elsewhere waits 2 x max more. With min = E/2 and max = 3E/4 the first election
            // comes 1.25-1.5 E after the leader went silent, near etcd's [E, 2E). (With
            // min = E, max = 2E it came after 3-4 E, and 7-8 E when the first candidate had
            // the shorter log: 4-10 s outages in `chaos run` with E = 1 s.)
            election_timeout_min: config.election_timeout.as_millis() as u64 / 2,
            election_timeout_max: config.election_timeout.as_millis() as u64 * 3 / 4,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_count),
            max_in_snapshot_log_to_keep: 1000,
            ..Default::default()
        }
        .validate()
        .map_err(|e| Error::InvalidArgument(format!("raft config: {e}")))?;
        let peers = Arc::new(PeerClients::default());
        let contacts = Arc::new(PeerContacts::default());
        let network = Network {
            from: id,
            leader_log: leader_log.clone(),
            faults: config.faults.clone(),
            peers: peers.clone(),
            contacts: contacts.clone(),
        };
        let log_store = LogStore::new(engine.clone(), leader_log.clone());
        let raft = Raft::new(id, Arc::new(raft_config), network, log_store, sm)
            .await
            .map_err(|e| Error::Storage(format!("starting raft: {e}")))?;

        let initialized = raft.is_initialized().await.map_err(|_| Error::Stopped)?;
        let joining = !initialized && config.initial_cluster_state == ClusterState::Existing;
        if joining {
            tracing::info!(
                member_id = format_args!("{id:x}"),
                cluster_id = format_args!("{cluster_id:x}"),
                "joining an existing cluster: waiting for the leader to send the log or a snapshot"
            );
        }
        if !initialized && config.initial_cluster_state == ClusterState::New {
            let members: BTreeMap<NodeId, Member> = config
                .initial_cluster
                .iter()
                .map(|(name, url)| {
                    let m = Member { name: name.clone(), peer_urls: vec![url.clone()], ..Default::default() };
                    (super::config::member_id(url, &config.initial_cluster_token), m)
                })
                .collect();
            // Every founding member calls this with the same membership (client URLs are
            // published once a leader is known); raft lets one win.
            if let Err(e) = raft.initialize(members).await {
                tracing::info!(error = %e, "cluster already initialized");
            }
        }

        let (proposals, queue) = mpsc::channel(MAX_BATCH * 4);
        let proposals_paused = watch::channel(false).0;
        tokio::spawn(batch_proposals(raft.clone(), queue, proposals_paused.subscribe()));
        let timeout = config.request_timeout;
        let leader_raft = raft.clone();
        let node = Arc::new_cyclic(|node: &Weak<Self>| Self {
            leader_read_index: Coalesced::start(move || confirm_leadership(leader_raft.clone(), timeout)),
            read_index: Coalesced::start({
                let node = node.clone();
                move || member_read_index(node.clone())
            }),
            config,
            id,
            cluster_id,
            raft,
            engine,
            sm: handle,
            lessor: Lessor::default(),
            proposals,
            proposals_paused,
            joined_at,
            stopping: watch::channel(false).0,
            peers,
            forwarder: forward::Forwarder::default(),
            contacts,
            membership_changes: tokio::sync::Mutex::new(()),
            ready: watch::channel(!joining).0,
            removed: watch::channel(false).0,
            last_leader_contact: Mutex::new(Instant::now()),
        });
        tokio::spawn(release_held_commits(node.raft.clone(), Arc::downgrade(&leader_log), leader_log.durable()));
        tokio::spawn(expire_leases(Arc::downgrade(&node)));
        tokio::spawn(super::cluster::promote_added_voters(Arc::downgrade(&node)));
        tokio::spawn(publish_attributes(Arc::downgrade(&node)));
        tokio::spawn(watch_membership(Arc::downgrade(&node)));
        Ok(node)
    }

    /// The configuration this member runs with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// This member's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// The raft instance.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The engine (for sizes and backups).
    pub fn engine(&self) -> &Arc<RocksEngine> {
        &self.engine
    }

    /// The state machine's read side.
    pub fn state(&self) -> &Arc<StateMachineHandle<RocksEngine>> {
        &self.sm
    }

    /// The current MVCC store.
    pub fn mvcc(&self) -> Arc<Mvcc<RocksEngine>> {
        self.sm.mvcc()
    }

    /// The lessor (leader-local lease deadlines).
    pub fn lessor(&self) -> &Lessor {
        &self.lessor
    }

    /// A response header at `revision`.
    pub fn header(&self, revision: i64) -> ResponseHeader {
        let term = self.raft.metrics().borrow().current_term;
        ResponseHeader { cluster_id: self.cluster_id, member_id: self.id, revision, raft_term: term }
    }

    /// Replicates and applies one write, returning its outcome and the header to answer with.
    /// On a follower the write is forwarded to the leader.
    ///
    /// Writes from concurrent callers share raft entries (see [`batch_proposals`]), so a burst
    /// of writes costs one fsync rather than one each; each keeps its own revision and outcome.
    pub async fn propose(&self, request: internal_request::Request) -> Result<(ApplyResponse, ResponseHeader)> {
        let request = InternalRequest { id: 0, request: Some(request) };
        // Refuse what no state could make valid before it costs a log entry.
        crate::mvcc::validate(&request)?;
        if request.encoded_len() > self.config.max_request_bytes {
            return Err(Error::RequestTooLarge);
        }
        let (response, revision) = match self.leader().await? {
            Leader::Me => self.propose_local(request).await?,
            Leader::Peer(leader_id, leader) => {
                if let Some(faults) = &self.config.faults {
                    faults.pass(self.id, leader_id).await.map_err(|_| Error::LeaderChanged)?;
                }
                let writes = self.sm.forwarded();
                let timeout = self.config.request_timeout;
                self.forwarder.propose(writes, &self.peers, (leader_id, &leader), request, timeout).await?
            }
        };
        Ok((response, self.header(revision)))
    }

    /// Proposes on this member, which must be the leader (else `LeaderChanged`).
    async fn propose_local(&self, request: InternalRequest) -> Result<(ApplyResponse, i64)> {
        let size = request.encoded_len();
        let (reply, outcome) = oneshot::channel();
        let wait = async {
            self.proposals.send(Proposal { request, size, reply: Reply::Local(reply) }).await.map_err(|_| Error::Stopped)?;
            outcome.await.map_err(|_| Error::Stopped)?
        };
        tokio::time::timeout(self.config.request_timeout, wait).await.map_err(|_| Error::Timeout)?
    }

    /// Proposes a write a follower forwarded (the leader side of [`forward::Forwarder`]): only
    /// a failure to propose it goes back on `failures`.
    pub async fn propose_forwarded(&self, request: InternalRequest, failures: &FailureSender) {
        let size = request.encoded_len();
        let reply = Reply::Forwarded { id: request.id, failures: failures.clone() };
        if let Err(mpsc::error::SendError(p)) = self.proposals.send(Proposal { request, size, reply }).await {
            p.reply.fail(Error::Stopped);
        }
    }

    /// Who serves leader-only work now: this member or a peer. Waits a few election timeouts
    /// for an election in progress; `NoLeader` after that.
    pub async fn leader(&self) -> Result<Leader> {
        let mut metrics = self.raft.metrics();
        let deadline = tokio::time::Instant::now() + self.config.election_timeout * 3;
        loop {
            {
                let m = metrics.borrow_and_update();
                if m.running_state.is_err() {
                    return Err(Error::Stopped);
                }
                match m.current_leader {
                    // openraft 0.9 restores a restarted member whose stored vote is its own as
                    // leader of its old term; until a quorum acknowledges it, a newer leader may
                    // exist, so wait to learn who really leads instead of accepting writes that
                    // would fail when it steps down.
                    Some(id) if id == self.id => {
                        let voters = m.membership_config.membership().voter_ids().count();
                        let lease = self.config.election_timeout.as_millis() as u64;
                        if voters <= 1 || m.millis_since_quorum_ack.is_some_and(|ms| ms < lease) {
                            return Ok(Leader::Me);
                        }
                    }
                    Some(id) => {
                        if let Some(member) = m.membership_config.membership().get_node(&id) {
                            return Ok(Leader::Peer(id, member.clone()));
                        }
                    }
                    None => {}
                }
            }
            match tokio::time::timeout_at(deadline, metrics.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(Error::Stopped),
                Err(_) => return Err(Error::NoLeader),
            }
        }
    }

    /// A client of `member`'s peer service for forwarding one request (through the test
    /// network's faults, in tests: a cut link looks like an unreachable leader).
    pub async fn peer(&self, id: NodeId, member: &Member) -> Result<RaftPeerClient<Channel>> {
        if let Some(faults) = &self.config.faults {
            faults.pass(self.id, id).await.map_err(|_| Error::LeaderChanged)?;
        }
        forward::client(&self.peers, member)
    }

    /// A request forwarded to the leader, bounded by the request timeout: a leader that stops
    /// answering on an open connection must not hold the client forever.
    pub fn forwarded<T>(&self, message: T) -> tonic::Request<T> {
        let mut call = tonic::Request::new(message);
        call.set_timeout(self.config.request_timeout);
        call
    }

    /// Waits until this member's state reflects every write committed before the call
    /// (linearizable read, through the leader's read index), unless `serializable` allows a
    /// member-local read.
    pub async fn read_barrier(&self, serializable: bool) -> Result<()> {
        self.check_serving().await?;
        if serializable {
            return Ok(());
        }
        let index = self.read_index.call().await?;
        self.raft
            .wait(Some(self.config.request_timeout))
            .applied_index_at_least(Some(index), "read index")
            .await
            .map(|_| ())
            .map_err(|e| match e {
                openraft::metrics::WaitError::Timeout(..) => Error::Timeout,
                openraft::metrics::WaitError::ShuttingDown => Error::Stopped,
            })
    }

    /// The leader's read index: confirms leadership with a quorum (so no newer leader can have
    /// committed anything) and returns the commit index a linearizable read must see applied.
    /// Concurrent callers share one confirmation round (see [`Coalesced`]).
    pub async fn read_index_local(&self) -> Result<u64> {
        self.leader_read_index.call().await
    }

    /// Holds new writes back until the guard is dropped: a leadership transfer needs a window
    /// without new entries (as etcd's leader stops accepting proposals while it transfers).
    /// Held writes are proposed afterwards, or answered "leader changed" if leadership moved.
    pub fn pause_proposals(&self) -> PausedProposals<'_> {
        self.proposals_paused.send_replace(true);
        PausedProposals(&self.proposals_paused)
    }

    /// This member's entry in the applied membership, if that membership is about this
    /// incarnation of the member (see [`keys::RAFT_JOINED_AT`]): while a member added again at
    /// a removed member's URL replays the log, its predecessor's entry (same id, maybe the same
    /// name and URLs) must not pass for its own.
    fn own_applied_entry(&self) -> Option<Member> {
        let applied = self.sm.membership();
        if applied.log_id().map_or(0, |l| l.index) < self.joined_at {
            return None;
        }
        applied.membership().get_node(&self.id).cloned()
    }

    /// Whether voter `peer` counts as reachable from this member (the leader): it answered a
    /// raft message within etcd's health window (5 s). This member always counts.
    pub fn reachable(&self, peer: NodeId) -> bool {
        peer == self.id || self.contacts.answered_within(peer, Duration::from_secs(5))
    }

    /// Serializes membership changes and leadership transfers on this member; `Timeout` if
    /// another one holds it longer than a request may wait.
    pub async fn lock_membership(&self) -> Result<tokio::sync::MutexGuard<'_, ()>> {
        tokio::time::timeout(self.config.request_timeout, self.membership_changes.lock())
            .await
            .map_err(|_| Error::Timeout)
    }

    /// Records that a leader has just sent this member entries or a snapshot (the peer service
    /// calls it): a member that hears from no leader for long checks whether it was removed.
    pub fn note_leader_contact(&self) {
        *self.last_leader_contact.lock().expect("leader contact lock poisoned") = Instant::now();
    }

    /// Whether this member has been removed from the cluster (it then serves nothing).
    pub fn is_removed(&self) -> bool {
        *self.removed.borrow()
    }

    /// Resolves once this member has been removed from the cluster; a process should then shut
    /// down and exit, as etcd's removed member does.
    pub async fn removed(&self) {
        let mut rx = self.removed.subscribe();
        // An error means the node is gone: nothing left to wait for either.
        let _ = rx.wait_for(|removed| *removed).await;
    }

    /// Whether this member has caught up with the cluster it joined (always, for a member that
    /// founded the cluster or restarted): reads wait for it.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Refuses requests once removed (`Stopped`, as etcd's stopping server answers), and holds
    /// them (up to the request timeout) while a joining member catches up.
    async fn check_serving(&self) -> Result<()> {
        if self.is_removed() {
            return Err(Error::Stopped);
        }
        if self.is_ready() {
            return Ok(());
        }
        let mut ready = self.ready.subscribe();
        let waited = tokio::time::timeout(self.config.request_timeout, ready.wait_for(|r| *r)).await.map(|r| r.is_ok());
        match waited {
            Ok(true) if !self.is_removed() => Ok(()),
            Ok(_) => Err(Error::Stopped),
            Err(_) => Err(Error::Timeout),
        }
    }

    /// This member has been removed: remembers it in the data dir (a restart refuses to
    /// start), ends streams and stops raft. Idempotent.
    async fn leave(&self, why: &str) {
        if self.removed.send_replace(true) {
            return;
        }
        tracing::error!(
            member_id = format_args!("{:x}", self.id),
            why,
            "the member has been permanently removed from the cluster; stopping raft"
        );
        let note = format!("member {:x} was removed from cluster {:x}: {why}\n", self.id, self.cluster_id);
        if let Err(e) = std::fs::write(removed_marker(&self.config), note) {
            tracing::warn!(error = %e, "cannot record the removal in the data dir");
        }
        self.begin_shutdown();
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }

    /// Resolves once shutdown has begun: long-lived streams (watches, keep-alives) end on it so
    /// that a graceful shutdown does not wait for clients to hang up.
    pub async fn stopped(&self) {
        let mut rx = self.stopping.subscribe();
        // An error means the node is gone, which is stopped too.
        let _ = rx.wait_for(|stopping| *stopping).await;
    }

    /// Tells long-lived streams to end.
    pub fn begin_shutdown(&self) {
        self.stopping.send_replace(true);
    }

    /// Stops raft; the engine closes when the last reference goes.
    pub async fn shutdown(&self) {
        self.begin_shutdown();
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}

/// Proposals stay paused while this lives (see [`StoreNode::pause_proposals`]).
pub struct PausedProposals<'a>(&'a watch::Sender<bool>);

impl Drop for PausedProposals<'_> {
    fn drop(&mut self) {
        self.0.send_replace(false);
    }
}

/// One leadership confirmation by a quorum: the read index every read queued before it
/// started may use.
async fn confirm_leadership(raft: Raft, timeout: Duration) -> Result<u64> {
    let checked = tokio::time::timeout(timeout, raft.get_read_log_id()).await.map_err(|_| Error::Timeout)?;
    match checked {
        Ok((read_log_id, _applied)) => Ok(read_log_id.map(|l| l.index).unwrap_or(0)),
        Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
            Err(if f.leader_id.is_some() { Error::NotLeader } else { Error::NoLeader })
        }
        Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_))) => Err(Error::LeaderChanged),
        Err(RaftError::Fatal(_)) => Err(Error::Stopped),
    }
}

/// The read index for this member's linearizable reads: its own confirmation when it leads,
/// else the leader's, asked once for every read queued on this member meanwhile.
async fn member_read_index(node: Weak<StoreNode>) -> Result<u64> {
    let node = node.upgrade().ok_or(Error::Stopped)?;
    match node.leader().await? {
        Leader::Me => node.read_index_local().await,
        Leader::Peer(leader_id, leader) => {
            let mut client = node.peer(leader_id, &leader).await?;
            let reply = client.read_index(node.forwarded(ReadIndexRequest {})).await.map_err(forward::unreachable)?;
            Ok(reply.into_inner().index)
        }
    }
}

/// The group-commit loop: takes every proposal queued since the previous entry was applied
/// and proposes them as one entry, in order.
///
/// One entry is in flight at a time, with or without followers. Every entry costs an fsync
/// on each member and a replication round trip, and on this 2-core VM an fsync is expensive
/// CPU work (a virtio exit), so fewer, fuller entries win: with three members, one entry in
/// flight used 270-300 µs of member CPU per put at 16 clients against 345 µs with four, and
/// raised throughput 15-50 % (`benches store --members 3`, member CPU/put rows). A single
/// voter measured the same way in the first place (openraft 0.9 fsyncs once per entry).
async fn batch_proposals(raft: Raft, mut queue: mpsc::Receiver<Proposal>, mut paused: watch::Receiver<bool>) {
    while let Some(first) = queue.recv().await {
        if paused.wait_for(|p| !*p).await.is_err() {
            return;
        }
        let mut bytes = first.size;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match queue.try_recv() {
                Ok(p) => {
                    bytes += p.size;
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let (requests, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|p| (p.request, p.reply)).unzip();
        let entry = InternalBatch { requests }.encode_to_vec();
        // The one entry in flight: the next batch forms while this one is replicated and applied.
        let outcome = match raft.client_write_ff(Command(entry)).await {
            Err(_fatal) => Err(Error::Stopped),
            Ok(applied) => match applied.await {
                Err(_) => Err(Error::Stopped),
                Ok(Ok(written)) => Ok(written),
                // Leadership was lost with the batch submitted: it may or may not commit under
                // the next leader, so the outcome is unknown ("leader changed", Unavailable), as
                // etcd answers; never "not leader", which would claim it was refused.
                Ok(Err(ClientWriteError::ForwardToLeader(_))) => Err(Error::LeaderChanged),
                Ok(Err(ClientWriteError::ChangeMembershipError(e))) => Err(Error::InvalidArgument(e.to_string())),
            },
        };
        match outcome {
            Ok(written) => {
                let mut results = written.data.results.into_iter();
                for reply in replies {
                    match results.next() {
                        Some((outcome, revision)) => reply.applied(outcome.map(|r| (r, revision))),
                        None => reply.fail(Error::Storage("entry applied with fewer results than requests".into())),
                    }
                }
            }
            Err(error) => {
                for reply in replies {
                    reply.fail(error.clone());
                }
            }
        }
    }
}

/// Once the leader's fsync catches up with a commit index it held back from its followers,
/// sends them a heartbeat carrying it (otherwise they would wait for the next one, or the next
/// entry, to apply the write).
async fn release_held_commits(raft: Raft, leader_log: Weak<LeaderLog>, mut durable: watch::Receiver<Option<LogId>>) {
    // Ends when raft drops its storage (and with it the last `LeaderLog`).
    while durable.changed().await.is_ok() {
        let Some(leader_log) = leader_log.upgrade() else { return };
        if leader_log.take_held_back() && raft.trigger().heartbeat().await.is_err() {
            return;
        }
    }
}

/// Member and cluster ids are fixed on first start and kept in the data dir, so a restart with
/// different flags cannot silently change them (etcd ignores `--initial-cluster` on restart too).
/// A member joining an existing cluster takes the cluster id from a peer.
async fn identity(engine: &RocksEngine, config: &StoreConfig) -> Result<(NodeId, u64, u64)> {
    let joined_at = match engine.get(Cf::RaftMeta, keys::RAFT_JOINED_AT)? {
        Some(b) => crate::raft::decode(&b)?,
        None => 0,
    };
    if let Some(b) = engine.get(Cf::RaftMeta, keys::RAFT_IDENTITY)? {
        let (id, cluster_id): (NodeId, u64) = crate::raft::decode(&b)?;
        return Ok((id, cluster_id, joined_at));
    }
    let id = config.member_id();
    let (cluster_id, joined_at) = match config.initial_cluster_state {
        ClusterState::New => (config.cluster_id(), 0),
        ClusterState::Existing => join_cluster(config, id).await?,
    };
    let mut b = WriteBatch::default();
    b.put(Cf::RaftMeta, keys::RAFT_IDENTITY, crate::raft::encode(&(id, cluster_id)));
    b.put(Cf::RaftMeta, keys::RAFT_JOINED_AT, crate::raft::encode(&joined_at));
    engine.write(b, Durability::Synced)?;
    Ok((id, cluster_id, joined_at))
}

/// The leader's lease clock: revokes expired leases through raft.
async fn expire_leases(node: std::sync::Weak<StoreNode>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let Some(node) = node.upgrade() else { return };
        let (term, leader) = {
            let m = node.raft.metrics().borrow().clone();
            (m.current_term, m.state == ServerState::Leader && m.running_state.is_ok())
        };
        if node.raft.metrics().borrow().running_state.is_err() {
            return;
        }
        node.lessor.observe_term(leader.then_some(term));
        if !leader {
            continue;
        }
        let expired = node.lessor.expired(&node.mvcc().leases(), Instant::now());
        for id in expired {
            match node.propose(internal_request::Request::LeaseRevoke(LeaseRevokeRequest { id })).await {
                Ok(_) | Err(Error::LeaseNotFound) => tracing::info!(lease = id, "lease expired and revoked"),
                Err(e) => tracing::warn!(lease = id, error = %e, "revoking expired lease failed; will retry"),
            }
        }
    }
}

/// Where a removed member notes its removal (a file in the data dir, readable by an operator).
fn removed_marker(config: &StoreConfig) -> PathBuf {
    config.data_dir.join("member-removed")
}

/// Asks the other members of `--initial-cluster` for the cluster this member joins: its id and
/// the log index of the membership that lists this member, once one of them lists it
/// (MemberAdd must have come first). Retries for twice the request timeout, since a follower
/// may not have applied the MemberAdd yet.
async fn join_cluster(config: &StoreConfig, id: NodeId) -> Result<(u64, u64)> {
    let own: Vec<&String> = config
        .initial_cluster
        .iter()
        .filter(|(name, _)| *name == config.name)
        .map(|(_, url)| url)
        .chain(&config.advertise_peer_urls)
        .collect();
    let peers: Vec<&String> =
        config.initial_cluster.iter().map(|(_, url)| url).filter(|url| !own.contains(url)).collect();
    if peers.is_empty() {
        return Err(Error::InvalidArgument(
            "--initial-cluster-state existing needs the cluster's members in --initial-cluster".into(),
        ));
    }
    let clients = PeerClients::default();
    let deadline = tokio::time::Instant::now() + config.request_timeout * 2;
    let mut problem = String::new();
    loop {
        for url in &peers {
            let member = Member { peer_urls: vec![url.to_string()], ..Default::default() };
            let mut client = forward::client(&clients, &member)?;
            let mut call = tonic::Request::new(ClusterInfoRequest {});
            call.set_timeout(Duration::from_secs(1));
            match client.cluster_info(call).await {
                Ok(reply) => {
                    let info = reply.into_inner();
                    if info.members.iter().any(|m| m.id == id) {
                        return Ok((info.cluster_id, info.membership_index));
                    }
                    let listed: Vec<String> = info.members.iter().map(|m| m.peer_ur_ls.join(",")).collect();
                    problem = format!("{url} lists the members at {listed:?}, not this one");
                }
                Err(status) => problem = format!("{url}: {}", status.message()),
            }
        }
        if tokio::time::Instant::now() >= deadline {
            let url = config.initial_cluster.iter().find(|(n, _)| *n == config.name).map(|(_, u)| u.as_str());
            return Err(Error::InvalidArgument(format!(
                "cannot join the cluster as member {id:x} (peer URL {}): {problem}; add it first with \
                 `etcdctl member add {} --peer-urls=URL` using the same URL, and the cluster's \
                 --initial-cluster-token",
                url.unwrap_or("?"),
                config.name
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// etcd's publish: once a leader is known, makes this member's entry in the raft membership
/// carry its name and client URLs (MemberAdd knows only peer URLs, and a restart may change the
/// client URLs). Retries with backoff (capped at 5 s) until done, logging each failure; ends
/// when done or when the member stops or is removed.
async fn publish_attributes(node: Weak<StoreNode>) {
    let Some(n) = node.upgrade() else { return };
    let mut metrics = n.raft.metrics();
    let (id, name, client_urls) = (n.id, n.config.name.clone(), n.config.advertise_client_urls.clone());
    drop(n);
    let mut backoff = Duration::from_millis(100);
    let mut attempt = 0u32;
    loop {
        let leader_known = {
            let m = metrics.borrow_and_update();
            if m.running_state.is_err() {
                return;
            }
            m.current_leader.is_some()
        };
        // The applied membership: committed, so a publish seen there cannot be undone.
        let Some(mine) = node.upgrade().map(|n| n.own_applied_entry()) else {
            return;
        };
        match mine {
            Some(m) if m.name == name && m.client_urls == client_urls => {
                tracing::info!(member = %m, client_urls = ?client_urls, "member attributes are published");
                return;
            }
            Some(_) if leader_known => {
                let Some(n) = node.upgrade() else { return };
                if n.is_removed() || *n.stopping.borrow() {
                    return;
                }
                let attributes =
                    PbMember { id, name: name.clone(), client_ur_ls: client_urls.clone(), ..Default::default() };
                let publish = super::cluster::change_membership(&n, membership_change::Change::Publish(attributes));
                // Holding the node keeps its database open: let go as soon as it stops.
                let outcome = tokio::select! {
                    outcome = publish => outcome,
                    _ = n.stopped() => return,
                };
                match outcome {
                    // Committed: look again once it has reached this member's log.
                    Ok(_) => backoff = Duration::from_millis(100),
                    Err(e) => {
                        attempt += 1;
                        tracing::warn!(attempt, error = %e, retry_in = ?backoff, "publishing member attributes failed");
                        drop(n);
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                }
            }
            // Not in the membership yet (a joining member catching up) or no leader: wait.
            _ => {}
        }
        // Bounded, so that a change already in the log is re-checked even without new metrics.
        if let Ok(Err(_)) = tokio::time::timeout(Duration::from_secs(1), metrics.changed()).await {
            return;
        }
    }
}

/// Follows this member's place in the applied (committed) membership:
/// - a joining member becomes ready once it has applied a membership that lists it with its
///   published name, i.e. it has caught up to at least its own publish entry (etcd's member
///   serves after its publish is applied, too);
/// - a member that was listed and is absent from a newer applied membership was removed;
/// - a removed member often never learns so from its log (openraft's leader stops replicating
///   to it at once), so a member that has heard from no leader for longer than a leader lease
///   and an election timeout asks the other members: one whose applied membership is newer than
///   the last that listed this member, and lacks it, proves the removal.
async fn watch_membership(node: Weak<StoreNode>) {
    let Some(n) = node.upgrade() else { return };
    let mut metrics = n.raft.metrics();
    let (id, name) = (n.id, n.config.name.clone());
    // openraft's leader lease is election_timeout_max (3/4 of ours, see `start`); a member
    // that hears from no leader for longer than this asks its peers.
    let silence = n.config.election_timeout * 3;
    drop(n);
    // The index of the newest applied membership that listed this member.
    let mut listed_at: Option<u64> = None;
    let mut last_asked = Instant::now();
    loop {
        let Some(n) = node.upgrade() else { return };
        if n.is_removed() || *n.stopping.borrow() {
            return;
        }
        let applied = n.sm.membership();
        let index = applied.log_id().map(|l| l.index).unwrap_or(0);
        let me = applied.membership().get_node(&id);
        match judge_membership(index, me.is_some(), n.joined_at, listed_at) {
            MembershipView::Listed => {
                listed_at = Some(index);
                if !n.is_ready() && me.is_some_and(|me| me.name == name) {
                    tracing::info!(member = %me.expect("listed"), "caught up with the cluster: serving clients");
                    n.ready.send_replace(true);
                }
            }
            MembershipView::Removed => {
                n.leave("the applied membership no longer lists it").await;
                return;
            }
            MembershipView::NotEvidence => {}
        }
        let leading = n.raft.metrics().borrow().state == ServerState::Leader;
        let silent_for = n.last_leader_contact.lock().expect("leader contact lock poisoned").elapsed();
        if !leading && listed_at.is_some() && silent_for > silence && last_asked.elapsed() > silence {
            last_asked = Instant::now();
            let removal = tokio::select! {
                removal = removal_seen_by_peers(&n, &applied, listed_at) => removal,
                _ = n.stopped() => return,
            };
            if let Some(why) = removal {
                n.leave(&why).await;
                return;
            }
        }
        drop(n);
        if let Ok(Err(_)) = tokio::time::timeout(silence / 3, metrics.changed()).await {
            return;
        }
    }
}

/// What one look at the applied membership says about this member.
#[derive(Debug, PartialEq, Eq)]
enum MembershipView {
    /// It lists this member.
    Listed,
    /// It is newer than the last one that listed this member, and does not: removed.
    Removed,
    /// Neither: not listed yet (still catching up), or about a previous member with the same
    /// id (older than the membership this member joined with).
    NotEvidence,
}

/// Judges the applied membership at log `index` (`lists_me`: whether it lists this member),
/// for a member that joined with the membership at `joined_at` (0: a founding member) and was
/// last listed by the membership at `listed_at`.
///
/// Worked example: a member at `http://b:2380` is removed at index 40 and added again at 57
/// (same URL, same id), and its new incarnation joins with `joined_at = 57`. Replaying the log
/// it applies the membership of index 12 (lists it: the old incarnation) and of index 40 (does
/// not): neither is evidence about it. Index 57 lists it; a later one without it means removed.
fn judge_membership(index: u64, lists_me: bool, joined_at: u64, listed_at: Option<u64>) -> MembershipView {
    if index < joined_at {
        return MembershipView::NotEvidence;
    }
    match (lists_me, listed_at) {
        (true, _) => MembershipView::Listed,
        (false, Some(at)) if index > at => MembershipView::Removed,
        (false, _) => MembershipView::NotEvidence,
    }
}

/// Asks the other members of `applied` for their applied membership; returns why this member
/// is removed if one of them has a newer membership than `listed_at` without it.
async fn removal_seen_by_peers(
    node: &StoreNode,
    applied: &crate::raft::StoredMembership,
    listed_at: Option<u64>,
) -> Option<String> {
    for (peer_id, member) in applied.membership().nodes().filter(|(pid, _)| **pid != node.id) {
        let Ok(mut client) = node.peer(*peer_id, member).await else { continue };
        let mut call = tonic::Request::new(ClusterInfoRequest {});
        call.set_timeout(Duration::from_secs(1));
        let Ok(reply) = client.cluster_info(call).await else { continue };
        let info = reply.into_inner();
        if Some(info.membership_index) > listed_at && !info.members.iter().any(|m| m.id == node.id) {
            return Some(format!(
                "member {peer_id:x} applied a membership without it at index {}",
                info.membership_index
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::{judge_membership, MembershipView::*};

    #[test]
    fn a_founding_member_is_removed_by_a_newer_membership_without_it() {
        assert_eq!(judge_membership(1, true, 0, None), Listed);
        assert_eq!(judge_membership(5, false, 0, Some(1)), Removed);
        // A membership not newer than the last that listed it proves nothing.
        assert_eq!(judge_membership(1, false, 0, Some(1)), NotEvidence);
        // Never listed yet (a learner still catching up): nothing to conclude.
        assert_eq!(judge_membership(9, false, 0, None), NotEvidence);
    }

    #[test]
    fn a_member_added_again_ignores_its_previous_incarnation() {
        // The worked example on `judge_membership`.
        let joined_at = 57;
        assert_eq!(judge_membership(12, true, joined_at, None), NotEvidence);
        assert_eq!(judge_membership(40, false, joined_at, None), NotEvidence);
        // Even had it recorded the old listing, the old removal is no evidence.
        assert_eq!(judge_membership(40, false, joined_at, Some(12)), NotEvidence);
        assert_eq!(judge_membership(57, true, joined_at, None), Listed);
        assert_eq!(judge_membership(80, false, joined_at, Some(57)), Removed);
    }
}
