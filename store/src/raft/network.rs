//! Raft traffic between members over gRPC (`storepb.RaftPeer`). Each RPC carries a bincode
//! encoded openraft message, and the reply carries `Result<response, RaftError>`, so remote
//! raft errors arrive as the typed errors openraft acts on.

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
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
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, Member, RaftError<NodeId, E>>>;

impl PeerConnection {
    async fn call<Req, Resp, E>(&mut self, kind: RpcKind, req: &Req, option: &RPCOption) -> RpcResult<Resp, E>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
        E: std::error::Error + serde::de::DeserializeOwned,
    {
        if let Some(faults) = &self.faults {
            match faults.pass(self.from, self.target).await {
                Ok(()) => {}
                Err(Dropped::Cut) => {
                    let e = std::io::Error::other("test network: link cut");
                    return Err(RPCError::Unreachable(Unreachable::new(&e)));
                }
                // Not `Unreachable`: that makes openraft pause replication to the peer for
                // 500 ms, longer than an election timeout in tests, so every lost heartbeat
                // would start an election instead of being made up by the next one.
                Err(Dropped::Lost) => {
                    let e = std::io::Error::other("test network: message lost");
                    return Err(RPCError::Network(NetworkError::new(&e)));
                }
            }
        }
        let Some(client) = self.client.as_mut() else {
            let e = std::io::Error::other(format!("bad peer url {:?}", self.url));
            return Err(RPCError::Unreachable(Unreachable::new(&e)));
        };
        let mut request = tonic::Request::new(RaftMessage { data: encode(req) });
        request.set_timeout(option.hard_ttl());
        let reply = match kind {
            RpcKind::Append => client.append_entries(request).await,
            RpcKind::Vote => client.vote(request).await,
            RpcKind::Snapshot => client.install_snapshot(request).await,
        };
        let reply = match reply {
            Ok(r) => {
                self.contacts.answered(self.target);
                r.into_inner()
            }
            Err(status) if status.code() == tonic::Code::Unavailable => {
                return Err(RPCError::Unreachable(Unreachable::new(&status)));
            }
            Err(status) => return Err(RPCError::Network(NetworkError::new(&status))),
        };
        let result: Result<Resp, RaftError<NodeId, E>> =
            decode(&reply.data).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

enum RpcKind {
    Append,
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
        self.call(RpcKind::Append, &rpc, &option).await
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
