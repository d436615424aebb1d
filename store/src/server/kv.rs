//! The etcd `KV` service.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::node::StoreNode;
use crate::mvcc::ApplyResponse;
use crate::pb::etcdserverpb::kv_server::Kv;
use crate::pb::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use crate::pb::storepb::internal_request::Request as Cmd;
use crate::Error;

/// Serves `etcdserverpb.KV`.
#[derive(Debug, Clone)]
pub struct KvService {
    node: Arc<StoreNode>,
}

impl KvService {
    /// A KV service on `node`.
    pub fn new(node: Arc<StoreNode>) -> Self {
        Self { node }
    }
}

/// Writes answer with the variant matching their request; anything else is a bug worth a loud
/// error rather than a panic.
fn mismatch() -> Status {
    Status::from(Error::Storage("apply returned a response of the wrong kind".into()))
}

/// A txn that only reads needs no consensus round, like etcd's read-only txn path.
fn is_read_only(txn: &TxnRequest) -> bool {
    use crate::pb::etcdserverpb::request_op::Request as Op;
    txn.success.iter().chain(txn.failure.iter()).all(|op| match &op.request {
        Some(Op::RequestRange(_)) | None => true,
        Some(Op::RequestTxn(t)) => is_read_only(t),
        Some(Op::RequestPut(_)) | Some(Op::RequestDeleteRange(_)) => false,
    })
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, request: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let req = request.into_inner();
        self.node.read_barrier(req.serializable).await?;
        let mvcc = self.node.mvcc();
        let mut resp = mvcc.range(&req)?;
        resp.header = Some(self.node.header(mvcc.current_revision()));
        Ok(Response::new(resp))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let req = request.into_inner();
        match self.node.propose(Cmd::Put(req)).await? {
            (ApplyResponse::Put(mut r), header) => {
                r.header = Some(header);
                Ok(Response::new(r))
            }
            _ => Err(mismatch()),
        }
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let req = request.into_inner();
        match self.node.propose(Cmd::DeleteRange(req)).await? {
            (ApplyResponse::DeleteRange(mut r), header) => {
                r.header = Some(header);
                Ok(Response::new(r))
            }
            _ => Err(mismatch()),
        }
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let req = request.into_inner();
        if is_read_only(&req) {
            self.node.read_barrier(false).await?;
            let mvcc = self.node.mvcc();
            let mut resp = mvcc.read_txn(&req)?;
            resp.header = Some(self.node.header(mvcc.current_revision()));
            return Ok(Response::new(resp));
        }
        match self.node.propose(Cmd::Txn(req)).await? {
            (ApplyResponse::Txn(mut r), header) => {
                r.header = Some(header);
                Ok(Response::new(r))
            }
            _ => Err(mismatch()),
        }
    }

    async fn compact(&self, request: Request<CompactionRequest>) -> Result<Response<CompactionResponse>, Status> {
        let req = request.into_inner();
        match self.node.propose(Cmd::Compaction(req)).await? {
            (ApplyResponse::Compaction(mut r), header) => {
                r.header = Some(header);
                Ok(Response::new(r))
            }
            _ => Err(mismatch()),
        }
    }
}
