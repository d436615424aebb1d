//! The `storepb.RaftPeer` service: hands raft messages from other members to our raft, and
//! serves what other members forward to the leader or ask of a member (membership, campaigns).

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, UnboundedReceiverStream};
use tonic::{Request, Response, Status, Streaming};

use super::node::StoreNode;
use crate::pb::etcdserverpb::{
    LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use crate::pb::storepb::raft_peer_server::RaftPeer;
use crate::pb::storepb::{
    CampaignReply, CampaignRequest, ClusterInfoReply, ClusterInfoRequest, InternalRequest, MembershipChange,
    MembershipChangeReply, ProposeFailure, RaftMessage, ReadIndexReply, ReadIndexRequest,
};
use crate::raft::{decode, encode};
use crate::Error;

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
    type AppendEntriesStream = ReceiverStream<Result<RaftMessage, Status>>;

    async fn append_entries(
        &self,
        request: Request<Streaming<RaftMessage>>,
    ) -> Result<Response<Self::AppendEntriesStream>, Status> {
        let mut incoming = request.into_inner();
        let (replies, outgoing) = mpsc::channel(1);
        let node = self.node.clone();
        tokio::spawn(async move {
            // Ends when this member stops, like the forwarded-writes stream.
            loop {
                let message = tokio::select! {
                    message = incoming.message() => message,
                    _ = node.stopped() => return,
                };
                let Ok(Some(message)) = message else { return };
                let reply = match decode(&message.data) {
                    Ok(rpc) => {
                        let result = node.raft().append_entries(rpc).await;
                        if result.is_ok() {
                            node.note_leader_contact();
                        }
                        Ok(RaftMessage { data: encode(&result) })
                    }
                    Err(e) => Err(bad_message(e)),
                };
                let refused = reply.is_err();
                if replies.send(reply).await.is_err() || refused {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(outgoing)))
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc = decode(&request.into_inner().data).map_err(bad_message)?;
        let result = self.node.raft().vote(rpc).await;
        Ok(Response::new(RaftMessage { data: encode(&result) }))
    }

    async fn install_snapshot(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc = decode(&request.into_inner().data).map_err(bad_message)?;
        let result = self.node.raft().install_snapshot(rpc).await;
        if result.is_ok() {
            self.node.note_leader_contact();
        }
        Ok(Response::new(RaftMessage { data: encode(&result) }))
    }

    type ProposeStreamStream = UnboundedReceiverStream<Result<ProposeFailure, Status>>;

    async fn propose_stream(
        &self,
        request: Request<Streaming<InternalRequest>>,
    ) -> Result<Response<Self::ProposeStreamStream>, Status> {
        let mut writes = request.into_inner();
        let (failures, replies) = mpsc::unbounded_channel();
        let node = self.node.clone();
        tokio::spawn(async move {
            // In arrival order, so a follower's writes keep their order in the log. Ends when
            // this member stops: the stream must not keep a stopped member (and its database)
            // alive, or hold up a graceful shutdown, for as long as the follower stays.
            loop {
                let write = tokio::select! {
                    write = writes.message() => write,
                    _ = node.stopped() => return,
                };
                match write {
                    Ok(Some(write)) => node.propose_forwarded(write, &failures).await,
                    Ok(None) | Err(_) => return,
                }
            }
        });
        // The reply stream ends once every write has been answered or committed: the proposals
        // in flight hold the other senders.
        Ok(Response::new(UnboundedReceiverStream::new(replies)))
    }

    async fn read_index(&self, _: Request<ReadIndexRequest>) -> Result<Response<ReadIndexReply>, Status> {
        let index = self.node.read_index_local().await?;
        Ok(Response::new(ReadIndexReply { index }))
    }

    async fn lease_keep_alive(
        &self,
        request: Request<LeaseKeepAliveRequest>,
    ) -> Result<Response<LeaseKeepAliveResponse>, Status> {
        let id = request.into_inner().id;
        self.node.read_index_local().await?;
        let ttl = super::lease::keep_alive_local(&self.node, id);
        Ok(Response::new(LeaseKeepAliveResponse { header: None, id, ttl }))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        self.node.read_index_local().await?;
        Ok(Response::new(super::lease::time_to_live_local(&self.node, &request.into_inner())))
    }

    async fn cluster_info(&self, _: Request<ClusterInfoRequest>) -> Result<Response<ClusterInfoReply>, Status> {
        if self.node.is_removed() {
            return Err(Error::Stopped.into());
        }
        let applied = self.node.state().membership();
        Ok(Response::new(ClusterInfoReply {
            cluster_id: self.node.cluster_id(),
            members: super::cluster::pb_members(applied.membership()),
            membership_index: applied.log_id().map(|l| l.index).unwrap_or(0),
        }))
    }

    async fn change_membership(
        &self,
        request: Request<MembershipChange>,
    ) -> Result<Response<MembershipChangeReply>, Status> {
        let change = request.into_inner().change.ok_or_else(|| Status::invalid_argument("empty membership change"))?;
        let outcome = super::cluster::change_membership_local(&self.node, change).await;
        Ok(Response::new(super::cluster::to_reply(outcome)))
    }

    async fn campaign(&self, _: Request<CampaignRequest>) -> Result<Response<CampaignReply>, Status> {
        super::maintenance::campaign(&self.node).await?;
        Ok(Response::new(CampaignReply {}))
    }
}
