//! Raft traffic between members over gRPC (`storepb.RaftPeer`). Each message carries a bincode
//! encoded openraft request, and each reply a `Result<response, RaftError>`, so remote raft
//! errors arrive as the typed errors openraft acts on. AppendEntries (replication and
//! heartbeats, the steady traffic) go on one long-lived stream per replication session, which
//! costs a frame each way instead of a whole HTTP/2 request; votes and snapshots are unary.

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{decode, encode, Dropped, LeaderLog, LinkFaults, Member, NodeId, TypeConfig};
use crate::pb::storepb::raft_peer_client::RaftPeerClient;
use crate::pb::storepb::RaftMessage;

/// One lazily connected client per peer URL, shared by everything a member sends to its
/// peers: replication streams, the leadership checks of linearizable reads, votes and the
/// requests a follower forwards to the leader. (A connection per request would cost a TCP and
/// HTTP/2 handshake for every read index.)
#[derive(Debug, Default)]
pub struct PeerClients {
    clients: Mutex<HashMap<String, RaftPeerClient<Channel>>>,
}

impl PeerClients {
    /// The client for `url` (connecting on first use); `None` for a URL that is not one.
    pub fn get(&self, url: &str) -> Option<RaftPeerClient<Channel>> {
        let mut clients = self.clients.lock().expect("peer clients lock poisoned");
        if let Some(c) = clients.get(url) {
            return Some(c.clone());
        }
        let endpoint = Endpoint::from_shared(url.to_string()).ok()?.connect_timeout(Duration::from_secs(1));
        let client = RaftPeerClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        clients.insert(url.to_string(), client.clone());
        Some(client)
    }
}

/// When each peer last answered a raft message: how a leader knows which voters are
/// reachable right now (openraft 0.9's metrics do not say).
#[derive(Debug, Default)]
pub struct PeerContacts {
    last: Mutex<HashMap<NodeId, std::time::Instant>>,
}

impl PeerContacts {
    fn answered(&self, peer: NodeId) {
        self.last.lock().expect("peer contacts lock poisoned").insert(peer, std::time::Instant::now());
    }

    /// Whether `peer` answered a raft message within `window`.
    pub fn answered_within(&self, peer: NodeId, window: Duration) -> bool {
        self.last.lock().expect("peer contacts lock poisoned").get(&peer).is_some_and(|t| t.elapsed() <= window)
    }
}

/// Creates connections to peers from their advertised peer URLs.
#[derive(Debug, Clone)]
pub struct Network {
    pub from: NodeId,
    /// Bounds the commit index sent to followers (see `durability`).
    pub leader_log: Arc<LeaderLog>,
    pub faults: Option<Arc<LinkFaults>>,
    pub peers: Arc<PeerClients>,
    pub contacts: Arc<PeerContacts>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> Self::Network {
        let url = node.peer_urls.first().cloned().unwrap_or_default();
        let client = self.peers.get(&url);
        PeerConnection {
            from: self.from,
            target,
            url,
            client,
            faults: self.faults.clone(),
            contacts: self.contacts.clone(),
            leader_log: self.leader_log.clone(),
            appends: None,
        }
    }
}

pub struct PeerConnection {
    from: NodeId,
    faults: Option<Arc<LinkFaults>>,
    target: NodeId,
    url: String,
    client: Option<RaftPeerClient<Channel>>,
    contacts: Arc<PeerContacts>,
    leader_log: Arc<LeaderLog>,
    appends: Option<AppendStream>,
}

/// A failed raft RPC as openraft wants it.
type PeerError<E> = RPCError<NodeId, Member, RaftError<NodeId, E>>;
type RpcResult<T, E> = Result<T, PeerError<E>>;

impl PeerConnection {
    /// Passes the test network's faults for one message (no-op outside tests).
    async fn pass_faults<E>(&self) -> Result<(), PeerError<E>>
    where
        E: std::error::Error,
    {
        let Some(faults) = &self.faults else { return Ok(()) };
        match faults.pass(self.from, self.target).await {
            Ok(()) => Ok(()),
            Err(Dropped::Cut) => {
                let e = std::io::Error::other("test network: link cut");
                Err(RPCError::Unreachable(Unreachable::new(&e)))
            }
            // Not `Unreachable`: that makes openraft pause replication to the peer for
            // 500 ms, longer than an election timeout in tests, so every lost heartbeat
            // would start an election instead of being made up by the next one.
            Err(Dropped::Lost) => {
                let e = std::io::Error::other("test network: message lost");
                Err(RPCError::Network(NetworkError::new(&e)))
            }
        }
    }

    fn client<E: std::error::Error>(&mut self) -> Result<&mut RaftPeerClient<Channel>, PeerError<E>> {
        match self.client.as_mut() {
            Some(c) => Ok(c),
            None => {
                let e = std::io::Error::other(format!("bad peer url {:?}", self.url));
                Err(RPCError::Unreachable(Unreachable::new(&e)))
            }
        }
    }

    /// Decodes a peer's reply (a bincode `Result<response, RaftError>`).
    fn reply<Resp, E>(&self, reply: &RaftMessage) -> RpcResult<Resp, E>
    where
        Resp: serde::de::DeserializeOwned,
        E: std::error::Error + serde::de::DeserializeOwned,
    {
        self.contacts.answered(self.target);
        let result: Result<Resp, RaftError<NodeId, E>> =
            decode(&reply.data).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    /// One unary RPC (votes, snapshots).
    async fn call<Req, Resp, E>(&mut self, kind: RpcKind, req: &Req, option: &RPCOption) -> RpcResult<Resp, E>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
        E: std::error::Error + serde::de::DeserializeOwned,
    {
        self.pass_faults().await?;
        let client = self.client()?;
        let mut request = tonic::Request::new(RaftMessage { data: encode(req) });
        request.set_timeout(option.hard_ttl());
        let reply = match kind {
            RpcKind::Vote => client.vote(request).await,
            RpcKind::Snapshot => client.install_snapshot(request).await,
        };
        match reply {
            Ok(r) => self.reply(&r.into_inner()),
            Err(status) => Err(transport_error(status)),
        }
    }

    /// One AppendEntries on this session's stream (opened on first use, and again after a
    /// failure: a late answer must never be taken for the next request's).
    async fn append(
        &mut self,
        rpc: &AppendEntriesRequest<TypeConfig>,
        option: &RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        self.pass_faults().await?;
        if self.appends.is_none() {
            let client = self.client()?;
            let (requests, outgoing) = tokio::sync::mpsc::channel(1);
            let opened = tokio::time::timeout(option.hard_ttl(), client.append_entries(ReceiverStream::new(outgoing)));
            let replies = match opened.await {
                Ok(Ok(r)) => r.into_inner(),
                Ok(Err(status)) => return Err(transport_error(status)),
                Err(_) => return Err(timed_out()),
            };
            self.appends = Some(AppendStream { requests, replies });
        }
        let stream = self.appends.as_mut().expect("opened above");
        let exchange = async {
            stream.requests.send(RaftMessage { data: encode(rpc) }).await.map_err(|_| None)?;
            match stream.replies.message().await {
                Ok(Some(reply)) => Ok(reply),
                Ok(None) => Err(None),
                Err(status) => Err(Some(status)),
            }
        };
        let outcome = tokio::time::timeout(option.hard_ttl(), exchange).await;
        match outcome {
            Ok(Ok(reply)) => self.reply(&reply),
            Ok(Err(status)) => {
                self.appends = None;
                let status = status.unwrap_or_else(|| tonic::Status::unavailable("replication stream closed"));
                Err(transport_error(status))
            }
            Err(_) => {
                self.appends = None;
                Err(timed_out())
            }
        }
    }
}

/// The stream a replication session sends its AppendEntries on.
struct AppendStream {
    requests: tokio::sync::mpsc::Sender<RaftMessage>,
    replies: tonic::Streaming<RaftMessage>,
}

/// A transport failure as openraft wants it: `Unreachable` (back off) when the peer is down.
fn transport_error<E: std::error::Error>(status: tonic::Status) -> PeerError<E> {
    if status.code() == tonic::Code::Unavailable {
        RPCError::Unreachable(Unreachable::new(&status))
    } else {
        RPCError::Network(NetworkError::new(&status))
    }
}

fn timed_out<E: std::error::Error>() -> PeerError<E> {
    RPCError::Network(NetworkError::new(&tonic::Status::deadline_exceeded("raft message timed out")))
}

enum RpcKind {
    Vote,
    Snapshot,
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        rpc.leader_commit = self.leader_log.commit_bound(rpc.leader_commit);
        self.append(&rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(RpcKind::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        self.call(RpcKind::Vote, &rpc, &option).await
    }
}
