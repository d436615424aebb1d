//! The etcd `Maintenance` service.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use openraft::ServerState;
use tonic::{Request, Response, Status};

use super::node::StoreNode;
use crate::engine::Engine;
use crate::pb::etcdserverpb::maintenance_server::Maintenance;
use crate::pb::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, DowngradeRequest, DowngradeResponse,
    HashKvRequest, HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest, MoveLeaderResponse, SnapshotRequest,
    SnapshotResponse, StatusRequest, StatusResponse,
};
use crate::pb::storepb::CampaignRequest;
use crate::raft::{NodeId, Raft};
use crate::Error;

/// The etcd API level this store speaks, reported by Status (clients print it).
pub const API_VERSION: &str = "3.4.0";

/// Bytes per `SnapshotResponse` message.
const SNAPSHOT_CHUNK: usize = 64 * 1024;

/// Serves `etcdserverpb.Maintenance`.
#[derive(Debug, Clone)]
pub struct MaintenanceService {
    node: Arc<StoreNode>,
}

impl MaintenanceService {
    /// A maintenance service on `node`.
    pub fn new(node: Arc<StoreNode>) -> Self {
        Self { node }
    }

    /// A point-in-time copy of the state machine, taken through raft's own snapshot mechanism
    /// so it is consistent with an applied log index.
    async fn snapshot_bytes(&self) -> Result<Vec<u8>, Error> {
        let raft = self.node.raft();
        let target = self.node.state().last_applied().map(|l| l.index);
        raft.trigger().snapshot().await.map_err(|_| Error::Stopped)?;
        let mut metrics = raft.metrics();
        let deadline = tokio::time::Instant::now() + self.node.config().request_timeout * 4;
        loop {
            if metrics.borrow().snapshot.map(|l| l.index) >= target {
                break;
            }
            tokio::time::timeout_at(deadline, metrics.changed())
                .await
                .map_err(|_| Error::Timeout)?
                .map_err(|_| Error::Stopped)?;
        }
        let snapshot = raft.get_snapshot().await.map_err(|e| Error::Storage(e.to_string()))?;
        let snapshot = snapshot.ok_or_else(|| Error::Storage("no snapshot after building one".into()))?;
        Ok(snapshot.snapshot.into_inner())
    }
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, request: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        // No alarm is ever raised yet (no space quota): GET lists none, (de)activation is accepted.
        let _ = request;
        let rev = self.node.mvcc().current_revision();
        Ok(Response::new(AlarmResponse { header: Some(self.node.header(rev)), alarms: vec![] }))
    }

    async fn status(&self, request: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let _ = request;
        let m = self.node.raft().metrics().borrow().clone();
        let rev = self.node.mvcc().current_revision();
        let size = self.node.engine().size_bytes() as i64;
        let mut errors = vec![];
        if m.current_leader.is_none() {
            errors.push("etcdserver: no leader".to_string());
        }
        Ok(Response::new(StatusResponse {
            header: Some(self.node.header(rev)),
            version: API_VERSION.into(),
            db_size: size,
            leader: m.current_leader.unwrap_or(0),
            raft_index: m.last_log_index.unwrap_or(0),
            raft_term: m.current_term,
            raft_applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            errors,
            db_size_in_use: size,
            is_learner: m.state == ServerState::Learner,
            ..Default::default()
        }))
    }

    async fn defragment(&self, request: Request<DefragmentRequest>) -> Result<Response<DefragmentResponse>, Status> {
        // A no-op on purpose: RocksDB's background compaction already reclaims the space
        // that bbolt needs defragmentation for.
        let _ = request;
        let rev = self.node.mvcc().current_revision();
        Ok(Response::new(DefragmentResponse { header: Some(self.node.header(rev)) }))
    }

    async fn hash(&self, request: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        let _ = request;
        let mvcc = self.node.mvcc();
        let (hash, _) = mvcc.hash_kv(0)?;
        Ok(Response::new(HashResponse { header: Some(self.node.header(mvcc.current_revision())), hash }))
    }

    async fn hash_kv(&self, request: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        let req = request.into_inner();
        let mvcc = self.node.mvcc();
        let current = mvcc.current_revision();
        let (hash, compact_revision) = mvcc.hash_kv(req.revision)?;
        Ok(Response::new(HashKvResponse {
            header: Some(self.node.header(current)),
            hash,
            compact_revision,
            hash_revision: if req.revision > 0 { req.revision } else { current },
        }))
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(&self, request: Request<SnapshotRequest>) -> Result<Response<SnapshotStream>, Status> {
        let _ = request;
        let data = self.snapshot_bytes().await?;
        let header = self.node.header(self.node.mvcc().current_revision());
        let total = data.len();
        let chunks: Vec<Result<SnapshotResponse, Status>> = data
            .chunks(SNAPSHOT_CHUNK)
            .enumerate()
            .map(|(i, chunk)| {
                let sent = (i * SNAPSHOT_CHUNK + chunk.len()) as u64;
                Ok(SnapshotResponse {
                    header: Some(header),
                    remaining_bytes: total as u64 - sent,
                    blob: chunk.to_vec(),
                    version: API_VERSION.into(),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(chunks))))
    }

    async fn move_leader(&self, request: Request<MoveLeaderRequest>) -> Result<Response<MoveLeaderResponse>, Status> {
        let req = request.into_inner();
        // As etcd: only the leader moves leadership (etcdctl finds it among its endpoints).
        if self.node.raft().metrics().borrow().state != ServerState::Leader {
            return Err(Error::NotLeader.into());
        }
        if req.target_id != self.node.id() {
            transfer_leadership(&self.node, req.target_id).await?;
        }
        let rev = self.node.mvcc().current_revision();
        Ok(Response::new(MoveLeaderResponse { header: Some(self.node.header(rev)) }))
    }

    async fn downgrade(&self, request: Request<DowngradeRequest>) -> Result<Response<DowngradeResponse>, Status> {
        let _ = request;
        Err(Error::Unsupported("downgrade".into()).into())
    }
}

/// Moves leadership from this member (the leader) to the voter `target`.
///
/// openraft 0.9 has no leader transfer, and a voter refuses to vote while its leader lease (the
/// last AppendEntries from the leader, plus `election_timeout_max`) lasts — the leader included,
/// counting from its election. So, once the target has every entry, the leader stops its
/// heartbeats, waits until no entry has been sent for a lease (plus a heartbeat interval for
/// messages in flight), checks the target still has every entry, and tells it to campaign.
/// Every voter's lease has then expired and nobody has a longer log, so the target wins; the
/// followers' own election timers (a lease plus an election timeout after the last heartbeat)
/// have not fired yet. The leader's own vote alone makes the target win in a three-member
/// cluster: its lease counts from its election, which is older than the wait.
///
/// New writes would send entries and restart the wait, so they are held back for the whole
/// transfer (as etcd's leader drops proposals while it transfers): a steady write load stalls
/// for about two election timeouts, then continues on the new leader (held writes get "leader
/// changed" and the client retries). If the target stops answering, the answer is `Timeout`
/// after the request timeout (etcd's "leader transfer took too long"), with the leadership
/// unchanged.
async fn transfer_leadership(node: &StoreNode, target: NodeId) -> Result<(), Error> {
    let _no_membership_change = node.lock_membership().await?;
    let _no_new_entries = node.pause_proposals();
    let raft = node.raft();
    let deadline = tokio::time::Instant::now() + node.config().request_timeout;
    let mut metrics = raft.metrics();
    let target_member = {
        let m = metrics.borrow_and_update();
        let membership = m.membership_config.membership();
        match membership.get_node(&target) {
            Some(member) if membership.voter_ids().any(|v| v == target) => member.clone(),
            _ => return Err(Error::MembershipConflict("bad leader transferee".into())),
        }
    };
    let quiet_needed = Duration::from_millis(raft.config().election_timeout_max) + node.config().heartbeat;
    // Heartbeats are paused only while the target is caught up: paused for longer than a lease
    // plus an election timeout without sending entries, the followers would start elections.
    let mut paused: Option<PausedHeartbeats<'_>> = None;
    let mut quiet_since = tokio::time::Instant::now();
    let mut seen_last = metrics.borrow().last_log_index;
    loop {
        let (leading, last, matched) = {
            let m = metrics.borrow_and_update();
            let matched = m.replication.as_ref().and_then(|r| r.get(&target).copied().flatten()).map(|l| l.index);
            (m.state == ServerState::Leader, m.last_log_index, matched)
        };
        if !leading {
            return Err(Error::LeaderChanged);
        }
        let now = tokio::time::Instant::now();
        if last != seen_last {
            // New entries went out and refreshed the followers' leases.
            seen_last = last;
            quiet_since = now;
        }
        let caught_up = matched == last;
        match paused {
            None if caught_up => {
                tracing::info!(target = format_args!("{target:x}"), wait = ?quiet_needed, "moving leadership: heartbeats paused");
                paused = Some(PausedHeartbeats::new(raft));
                quiet_since = now;
            }
            Some(_) if now >= quiet_since + quiet_needed => {
                if caught_up {
                    break;
                }
                // The target fell behind with nothing new to send (it stopped answering):
                // resume heartbeats until it is back.
                paused = None;
            }
            _ => {}
        }
        if now >= deadline {
            return Err(Error::Timeout);
        }
        let wake = (quiet_since + quiet_needed).max(now + node.config().heartbeat).min(deadline);
        if let Ok(Err(_)) = tokio::time::timeout_at(wake, metrics.changed()).await {
            return Err(Error::Stopped);
        }
    }

    let mut client = node.peer(target, &target_member).await?;
    let mut call = tonic::Request::new(CampaignRequest {});
    call.set_timeout(deadline.saturating_duration_since(tokio::time::Instant::now()).max(Duration::from_millis(100)));
    match client.campaign(call).await {
        Ok(_) => {}
        Err(status) if status.code() == tonic::Code::FailedPrecondition => {
            return Err(Error::MembershipConflict("bad leader transferee".into()));
        }
        Err(status) => return Err(super::forward::unreachable(status)),
    }
    loop {
        let leader = metrics.borrow_and_update().current_leader;
        match leader {
            Some(l) if l == target => {
                tracing::info!(target = format_args!("{target:x}"), "moved leadership");
                return Ok(());
            }
            Some(l) if l != node.id() => return Err(Error::LeaderChanged),
            _ => {}
        }
        match tokio::time::timeout_at(deadline, metrics.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(Error::Stopped),
            Err(_) => return Err(Error::Timeout),
        }
    }
}

/// The target's side of a leadership transfer: campaign now (a no-op on the leader).
pub async fn campaign(node: &StoreNode) -> Result<(), Error> {
    let (state, voter) = {
        let m = node.raft().metrics().borrow().clone();
        (m.state, m.membership_config.membership().voter_ids().any(|v| v == node.id()))
    };
    if state == ServerState::Leader {
        return Ok(());
    }
    if !voter || node.is_removed() {
        return Err(Error::MembershipConflict("bad leader transferee".into()));
    }
    tracing::info!("campaigning: the leader is moving leadership here");
    node.raft().trigger().elect().await.map_err(|_| Error::Stopped)
}

/// Heartbeats stay off while this lives.
struct PausedHeartbeats<'a>(&'a Raft);

impl<'a> PausedHeartbeats<'a> {
    fn new(raft: &'a Raft) -> Self {
        raft.runtime_config().heartbeat(false);
        Self(raft)
    }
}

impl Drop for PausedHeartbeats<'_> {
    fn drop(&mut self) {
        self.0.runtime_config().heartbeat(true);
    }
}
