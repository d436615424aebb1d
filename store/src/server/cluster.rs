//! The etcd `Cluster` service: members come from the raft membership.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::node::StoreNode;
use crate::pb::etcdserverpb::cluster_server::Cluster;
use crate::pb::etcdserverpb::{
    Member as PbMember, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest,
    MemberUpdateResponse,
};
use crate::Error;

/// Serves `etcdserverpb.Cluster`.
#[derive(Debug, Clone)]
pub struct ClusterService {
    node: Arc<StoreNode>,
}

impl ClusterService {
    /// A cluster service on `node`.
    pub fn new(node: Arc<StoreNode>) -> Self {
        Self { node }
    }

    fn members(&self) -> Vec<PbMember> {
        let stored = self.node.state().membership();
        let membership = stored.membership();
        let voters: Vec<u64> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, m)| PbMember {
                id: *id,
                name: m.name.clone(),
                peer_ur_ls: m.peer_urls.clone(),
                client_ur_ls: m.client_urls.clone(),
                is_learner: !voters.contains(id),
            })
            .collect()
    }
}

fn membership_changes_unsupported<T>() -> Result<Response<T>, Status> {
    Err(Error::Unsupported("membership changes (three-member clusters)".into()).into())
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, _: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        membership_changes_unsupported()
    }

    async fn member_remove(&self, _: Request<MemberRemoveRequest>) -> Result<Response<MemberRemoveResponse>, Status> {
        membership_changes_unsupported()
    }

    async fn member_update(&self, _: Request<MemberUpdateRequest>) -> Result<Response<MemberUpdateResponse>, Status> {
        membership_changes_unsupported()
    }

    async fn member_list(&self, request: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        let req = request.into_inner();
        self.node.read_barrier(!req.linearizable).await?;
        let rev = self.node.mvcc().current_revision();
        Ok(Response::new(MemberListResponse { header: Some(self.node.header(rev)), members: self.members() }))
    }

    async fn member_promote(
        &self,
        _: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        membership_changes_unsupported()
    }
}
