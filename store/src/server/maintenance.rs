//! The etcd `Maintenance` service.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use openraft::ServerState;
use tonic::{Request, Response, Status};

use super::node::StoreNode;
use crate::engine::Engine;
use crate::pb::etcdserverpb::maintenance_server::Maintenance;
use crate::pb::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, DowngradeRequest, DowngradeResponse,
    HashKvRequest, HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest, MoveLeaderResponse,
    SnapshotRequest, SnapshotResponse, StatusRequest, StatusResponse,
};
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
        let rev = self.node.mvcc().current_revision();
        if req.target_id == self.node.id() && self.node.raft().metrics().borrow().state == ServerState::Leader {
            return Ok(Response::new(MoveLeaderResponse { header: Some(self.node.header(rev)) }));
        }
        if !self.node.state().membership().membership().voter_ids().any(|id| id == req.target_id) {
            return Err(Error::MemberNotFound.into());
        }
        Err(Error::Unsupported("moving leadership to another member".into()).into())
    }

    async fn downgrade(&self, request: Request<DowngradeRequest>) -> Result<Response<DowngradeResponse>, Status> {
        let _ = request;
        Err(Error::Unsupported("downgrade".into()).into())
    }
}
