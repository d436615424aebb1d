//! One store member: the engine, the raft instance, the state machine's read side and the
//! lessor, with the operations every gRPC service needs (propose, read barrier, headers).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::{ServerState, SnapshotPolicy};
use prost::Message;

use super::config::{ClusterState, StoreConfig};
use super::lessor::Lessor;
use crate::engine::{Engine, RocksEngine, WriteBatch};
use crate::keys::{self, Cf};
use crate::mvcc::{ApplyResponse, Mvcc};
use crate::pb::etcdserverpb::{LeaseRevokeRequest, ResponseHeader};
use crate::pb::storepb::{internal_request, InternalBatch, InternalRequest, ReadIndexRequest};
use super::forward::{self, PeerClients};
use crate::pb::storepb::raft_peer_client::RaftPeerClient;
use tonic::transport::Channel;
use tokio::sync::{mpsc, oneshot, watch};
use crate::raft::{Command, LogStore, Member, Network, NodeId, Raft, StateMachine, StateMachineHandle};
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
    reply: oneshot::Sender<Result<(ApplyResponse, i64)>>,
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
    stopping: watch::Sender<bool>,
    peers: PeerClients,
}

impl std::fmt::Debug for StoreNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreNode").field("name", &self.config.name).field("id", &self.id).finish()
    }
}

impl StoreNode {
    /// Opens the data dir, starts raft and, for a new cluster, bootstraps its membership.
    pub async fn start(config: StoreConfig) -> Result<Arc<Self>> {
        config.validate()?;
        let db_dir = config.data_dir.join("db");
        std::fs::create_dir_all(&db_dir).map_err(|e| {
            Error::Storage(format!("cannot create data dir {}: {e}", config.data_dir.display()))
        })?;
        let engine = Arc::new(RocksEngine::open(&db_dir)?);
        let (id, cluster_id) = identity(&engine, &config)?;

        let sm = StateMachine::open(engine.clone())?;
        let handle = sm.handle();
        let raft_config = openraft::Config {
            cluster_name: "ferrokube".into(),
            heartbeat_interval: config.heartbeat.as_millis() as u64,
            election_timeout_min: config.election_timeout.as_millis() as u64,
            election_timeout_max: config.election_timeout.as_millis() as u64 * 2,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_count),
            max_in_snapshot_log_to_keep: 1000,
            ..Default::default()
        }
        .validate()
        .map_err(|e| Error::InvalidArgument(format!("raft config: {e}")))?;
        let network = Network { from: id, faults: config.faults.clone() };
        let raft = Raft::new(id, Arc::new(raft_config), network, LogStore::new(engine.clone()), sm)
            .await
            .map_err(|e| Error::Storage(format!("starting raft: {e}")))?;

        let initialized = raft.is_initialized().await.map_err(|_| Error::Stopped)?;
        if !initialized && config.initial_cluster_state == ClusterState::New {
            let members: BTreeMap<NodeId, Member> = config
                .initial_cluster
                .iter()
                .map(|(name, url)| {
                    let m = Member { name: name.clone(), peer_urls: vec![url.clone()], client_urls: vec![] };
                    (super::config::member_id(url, &config.initial_cluster_token), m)
                })
                .map(|(mid, mut m)| {
                    if mid == id {
                        m.client_urls = config.advertise_client_urls.clone();
                    }
                    (mid, m)
                })
                .collect();
            // Every founding member may call this with the same membership; raft lets one win.
            if let Err(e) = raft.initialize(members).await {
                tracing::info!(error = %e, "cluster already initialized");
            }
        }

        let (proposals, queue) = mpsc::channel(MAX_BATCH * 4);
        tokio::spawn(batch_proposals(raft.clone(), queue));
        let node =
            Arc::new(Self {
                config,
                id,
                cluster_id,
                raft,
                engine,
                sm: handle,
                lessor: Lessor::default(),
                proposals,
                stopping: watch::channel(false).0,
                peers: PeerClients::default(),
            });
        tokio::spawn(expire_leases(Arc::downgrade(&node)));
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
                let mut client = self.peer(leader_id, &leader).await?;
                let mut call = tonic::Request::new(request);
                call.set_timeout(self.config.request_timeout);
                let reply = client.propose(call).await.map_err(forward::unreachable)?;
                forward::from_reply(reply.into_inner())?
            }
        };
        Ok((response, self.header(revision)))
    }

    /// Proposes on this member, which must be the leader (else `NotLeader`): the forwarding
    /// target for followers.
    pub async fn propose_local(&self, request: InternalRequest) -> Result<(ApplyResponse, i64)> {
        let size = request.encoded_len();
        let (reply, outcome) = oneshot::channel();
        let wait = async {
            self.proposals.send(Proposal { request, size, reply }).await.map_err(|_| Error::Stopped)?;
            outcome.await.map_err(|_| Error::Stopped)?
        };
        tokio::time::timeout(self.config.request_timeout, wait).await.map_err(|_| Error::Timeout)?
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
                    Some(id) if id == self.id => return Ok(Leader::Me),
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
        self.peers.get(member)
    }

    /// Waits until this member's state reflects every write committed before the call
    /// (linearizable read, through the leader's read index), unless `serializable` allows a
    /// member-local read.
    pub async fn read_barrier(&self, serializable: bool) -> Result<()> {
        if serializable {
            return Ok(());
        }
        let index = match self.leader().await? {
            Leader::Me => self.read_index_local().await?,
            Leader::Peer(leader_id, leader) => {
                let mut client = self.peer(leader_id, &leader).await?;
                let mut call = tonic::Request::new(ReadIndexRequest {});
                call.set_timeout(self.config.request_timeout);
                let reply = client.read_index(call).await.map_err(forward::unreachable)?;
                reply.into_inner().index
            }
        };
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
    pub async fn read_index_local(&self) -> Result<u64> {
        let checked = tokio::time::timeout(self.config.request_timeout, self.raft.get_read_log_id())
            .await
            .map_err(|_| Error::Timeout)?;
        match checked {
            Ok((read_log_id, _applied)) => Ok(read_log_id.map(|l| l.index).unwrap_or(0)),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(if f.leader_id.is_some() { Error::NotLeader } else { Error::NoLeader })
            }
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_))) => Err(Error::LeaderChanged),
            Err(RaftError::Fatal(_)) => Err(Error::Stopped),
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

/// The group-commit loop: takes every proposal queued while the previous entry was being
/// replicated and made durable, and proposes them as one entry.
async fn batch_proposals(raft: Raft, mut queue: mpsc::Receiver<Proposal>) {
    while let Some(first) = queue.recv().await {
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
        match raft.client_write(Command(entry)).await {
            Ok(written) => {
                let mut results = written.data.results.into_iter();
                for reply in replies {
                    let result = results.next().unwrap_or_else(|| {
                        (Err(Error::Storage("entry applied with fewer results than requests".into())), 0)
                    });
                    // The caller may have timed out and gone: nothing to tell it then.
                    let _ = reply.send(result.0.map(|r| (r, result.1)));
                }
            }
            Err(e) => {
                let error = match e {
                    RaftError::APIError(ClientWriteError::ForwardToLeader(f)) if f.leader_id.is_some() => Error::NotLeader,
                    RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => Error::NoLeader,
                    RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => Error::InvalidArgument(e.to_string()),
                    RaftError::Fatal(_) => Error::Stopped,
                };
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }
}

/// Member and cluster ids are fixed on first start and kept in the data dir, so a restart with
/// different flags cannot silently change them (etcd ignores `--initial-cluster` on restart too).
fn identity(engine: &RocksEngine, config: &StoreConfig) -> Result<(NodeId, u64)> {
    if let Some(b) = engine.get(Cf::RaftMeta, keys::RAFT_IDENTITY)? {
        let ids: (NodeId, u64) = crate::raft::decode(&b)?;
        return Ok(ids);
    }
    let ids = (config.member_id(), config.cluster_id());
    let mut b = WriteBatch::default();
    b.put(Cf::RaftMeta, keys::RAFT_IDENTITY, crate::raft::encode(&ids));
    engine.write(b, true)?;
    Ok(ids)
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
