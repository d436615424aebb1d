//! The `storepb.RaftPeer` service: hands raft messages from other members to our raft.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::node::StoreNode;
use crate::pb::storepb::raft_peer_server::RaftPeer;
use crate::pb::storepb::RaftMessage;
use crate::raft::{decode, encode};

/// Serves raft traffic from peers.
#[derive(Debug, Clone)]
pub struct PeerService {
    node: Arc<StoreNode>,
}

impl PeerService {
    /// A peer service on `node`.
    pub fn new(node: Arc<StoreNode>) -> Self {
        Self { node }
    }
}

fn bad_message(e: crate::Error) -> Status {
    Status::invalid_argument(format!("undecodable raft message: {e}"))
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn append_entries(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc = decode(&request.into_inner().data).map_err(bad_message)?;
        let result = self.node.raft().append_entries(rpc).await;
        Ok(Response::new(RaftMessage { data: encode(&result) }))
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc = decode(&request.into_inner().data).map_err(bad_message)?;
        let result = self.node.raft().vote(rpc).await;
        Ok(Response::new(RaftMessage { data: encode(&result) }))
    }

    async fn install_snapshot(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc = decode(&request.into_inner().data).map_err(bad_message)?;
        let result = self.node.raft().install_snapshot(rpc).await;
        Ok(Response::new(RaftMessage { data: encode(&result) }))
    }
}
