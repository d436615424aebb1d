//! The etcd `Lease` service. Grants and revocations go through raft; keep-alives only touch the
//! leader's lessor clock, as in etcd.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures::Stream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::node::{Leader, StoreNode};
use crate::mvcc::{ApplyResponse, MAX_LEASE_TTL};
use crate::pb::etcdserverpb::lease_server::Lease;
use crate::pb::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseLeasesRequest,
    LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus, LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse,
};
use crate::pb::storepb::internal_request::Request as Cmd;
use crate::Error;

/// Serves `etcdserverpb.Lease`.
#[derive(Debug, Clone)]
pub struct LeaseService {
    node: Arc<StoreNode>,
}

impl LeaseService {
    /// A lease service on `node`.
    pub fn new(node: Arc<StoreNode>) -> Self {
        Self { node }
    }
}

/// A fresh lease id: positive, unused. Chosen before proposing so every member applies the same id.
fn new_lease_id(node: &StoreNode) -> i64 {
    loop {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        // Member id in the high bits, time in the low ones: unique across members, like etcd's
        // id generator, without coordination.
        let id = ((node.id() << 40) ^ (nanos.as_nanos() as u64)) & (i64::MAX as u64);
        let id = id as i64;
        if id != 0 && node.mvcc().lease(id).is_none() {
            return id;
        }
    }
}

/// Renews `id` on the leader's clock (forwarding from a follower) and returns its TTL; 0 for an
/// unknown lease, as etcd answers.
async fn keep_alive(node: &StoreNode, id: i64) -> Result<i64, Error> {
    match node.leader().await? {
        Leader::Me => {
            // A deposed leader's clock no longer counts: confirm leadership first.
            node.read_index_local().await?;
            Ok(keep_alive_local(node, id))
        }
        Leader::Peer(leader_id, leader) => {
            let mut client = node.peer(leader_id, &leader).await?;
            let reply = client
                .lease_keep_alive(node.forwarded(LeaseKeepAliveRequest { id }))
                .await
                .map_err(super::forward::unreachable)?;
            Ok(reply.into_inner().ttl)
        }
    }
}

/// The leader's side of a keep-alive.
pub(super) fn keep_alive_local(node: &StoreNode, id: i64) -> i64 {
    match node.mvcc().lease(id) {
        Some(lease) => {
            node.lessor().keep_alive(&lease, Instant::now());
            lease.ttl
        }
        None => 0,
    }
}

/// A lease's remaining TTL by the leader's clock (forwarding from a follower).
async fn time_to_live(node: &StoreNode, req: LeaseTimeToLiveRequest) -> Result<LeaseTimeToLiveResponse, Error> {
    match node.leader().await? {
        Leader::Me => {
            node.read_index_local().await?;
            Ok(time_to_live_local(node, &req))
        }
        Leader::Peer(leader_id, leader) => {
            let mut client = node.peer(leader_id, &leader).await?;
            let reply = client.lease_time_to_live(node.forwarded(req)).await.map_err(super::forward::unreachable)?;
            Ok(reply.into_inner())
        }
    }
}

/// The leader's side of TimeToLive; TTL -1 for an unknown lease (etcdctl prints "already
/// expired").
pub(super) fn time_to_live_local(node: &StoreNode, req: &LeaseTimeToLiveRequest) -> LeaseTimeToLiveResponse {
    let Some(lease) = node.mvcc().lease(req.id) else {
        return LeaseTimeToLiveResponse { id: req.id, ttl: -1, ..Default::default() };
    };
    LeaseTimeToLiveResponse {
        header: None,
        id: lease.id,
        ttl: node.lessor().remaining(&lease, Instant::now()),
        granted_ttl: lease.ttl,
        keys: if req.keys { lease.keys } else { vec![] },
    }
}

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(&self, request: Request<LeaseGrantRequest>) -> Result<Response<LeaseGrantResponse>, Status> {
        let mut req = request.into_inner();
        if req.ttl > MAX_LEASE_TTL {
            return Err(Error::LeaseTtlTooLarge.into());
        }
        if req.id == 0 {
            req.id = new_lease_id(&self.node);
        }
        match self.node.propose(Cmd::LeaseGrant(req)).await? {
            (ApplyResponse::LeaseGrant(mut r), header) => {
                if let Some(lease) = self.node.mvcc().lease(r.id) {
                    self.node.lessor().keep_alive(&lease, Instant::now());
                }
                r.header = Some(header);
                Ok(Response::new(r))
            }
            _ => Err(Error::Storage("apply returned a response of the wrong kind".into()).into()),
        }
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        match self.node.propose(Cmd::LeaseRevoke(request.into_inner())).await? {
            (ApplyResponse::LeaseRevoke(mut r), header) => {
                r.header = Some(header);
                Ok(Response::new(r))
            }
            _ => Err(Error::Storage("apply returned a response of the wrong kind".into()).into()),
        }
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<KeepAliveStream>, Status> {
        let node = self.node.clone();
        let mut incoming = request.into_inner();
        let out = async_stream::try_stream! {
            loop {
                let req = tokio::select! {
                    req = incoming.next() => req,
                    _ = node.stopped() => None,
                };
                let Some(req) = req else { break };
                let req = req?;
                let ttl = keep_alive(&node, req.id).await?;
                let mvcc = node.mvcc();
                yield LeaseKeepAliveResponse { header: Some(node.header(mvcc.current_revision())), id: req.id, ttl };
            }
        };
        Ok(Response::new(Box::pin(out)))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let mut resp = time_to_live(&self.node, request.into_inner()).await?;
        resp.header = Some(self.node.header(self.node.mvcc().current_revision()));
        Ok(Response::new(resp))
    }

    async fn lease_leases(
        &self,
        request: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        let _ = request;
        self.node.read_barrier(false).await?;
        let mvcc = self.node.mvcc();
        let leases = mvcc.leases().into_iter().map(|l| LeaseStatus { id: l.id }).collect();
        Ok(Response::new(LeaseLeasesResponse { header: Some(self.node.header(mvcc.current_revision())), leases }))
    }
}
