//! The gRPC edge: etcd's v3 services plus the raft peer service, and the only place store
//! errors become gRPC statuses (`status`).

mod authority;
mod cluster;
mod coalesce;
mod config;
mod forward;
mod kv;
mod lease;
mod lessor;
mod maintenance;
mod node;
mod peer;
mod status;
mod watch;

pub use config::{member_id, ClusterState, StoreConfig};
pub use maintenance::API_VERSION;
pub use node::{Leader, StoreNode};

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch as signal;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;

use crate::pb::etcdserverpb::cluster_server::ClusterServer;
use crate::pb::etcdserverpb::kv_server::KvServer;
use crate::pb::etcdserverpb::lease_server::LeaseServer;
use crate::pb::etcdserverpb::maintenance_server::MaintenanceServer;
use crate::pb::etcdserverpb::watch_server::WatchServer;
use crate::pb::storepb::raft_peer_server::RaftPeerServer;
use crate::{Error, Result};

/// etcd accepts gRPC messages this much larger than `--max-request-bytes`, so that an
/// oversized request gets the clear "request is too large" error rather than a transport one.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// A store member serving clients (and peers) until [`RunningStore::shutdown`].
pub struct RunningStore {
    node: Arc<StoreNode>,
    client_addrs: Vec<SocketAddr>,
    peer_addr: Option<SocketAddr>,
    stop: signal::Sender<bool>,
    servers: Vec<JoinHandle<std::result::Result<(), tonic::transport::Error>>>,
}

impl std::fmt::Debug for RunningStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningStore").field("client_addrs", &self.client_addrs).finish()
    }
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| Error::InvalidArgument(format!("cannot listen for {what} on {addr}: {e}")))
}

impl RunningStore {
    /// Starts a member: opens its data, joins raft and binds every listener (port 0 picks a
    /// free port; see [`RunningStore::client_addrs`]).
    pub async fn start(config: StoreConfig) -> Result<Self> {
        config.validate()?;
        // Bind before opening the data dir so a busy port fails fast and touches nothing.
        let mut client_listeners = Vec::new();
        for addr in &config.listen_client {
            client_listeners.push(bind(*addr, "clients").await?);
        }
        let peer_listener = match config.listen_peer {
            Some(addr) => Some(bind(addr, "peers").await?),
            None => None,
        };
        let client_addrs = client_listeners.iter().filter_map(|l| l.local_addr().ok()).collect();
        let peer_addr = peer_listener.as_ref().and_then(|l| l.local_addr().ok());

        let node = StoreNode::start(config.clone()).await?;
        let (stop, stopped) = signal::channel(false);
        let max_in = config.max_request_bytes + GRPC_OVERHEAD_BYTES;
        let mut servers = Vec::new();
        for listener in client_listeners {
            let router = Server::builder()
                .add_service(KvServer::new(kv::KvService::new(node.clone())).max_decoding_message_size(max_in))
                .add_service(WatchServer::new(watch::WatchService::new(node.clone())).max_decoding_message_size(max_in))
                .add_service(LeaseServer::new(lease::LeaseService::new(node.clone())).max_decoding_message_size(max_in))
                .add_service(ClusterServer::new(cluster::ClusterService::new(node.clone())))
                .add_service(
                    MaintenanceServer::new(maintenance::MaintenanceService::new(node.clone()))
                        .max_encoding_message_size(usize::MAX),
                );
            servers.push(tokio::spawn(
                router.serve_with_incoming_shutdown(
                    authority::fix_incoming(accept(listener)),
                    wait_for_stop(stopped.clone()),
                ),
            ));
        }
        if let Some(listener) = peer_listener {
            let router = Server::builder().add_service(
                RaftPeerServer::new(peer::PeerService::new(node.clone()))
                    .max_decoding_message_size(usize::MAX)
                    .max_encoding_message_size(usize::MAX),
            );
            servers.push(tokio::spawn(
                router.serve_with_incoming_shutdown(accept(listener), wait_for_stop(stopped.clone())),
            ));
        }
        Ok(Self { node, client_addrs, peer_addr, stop, servers })
    }

    /// The member.
    pub fn node(&self) -> &Arc<StoreNode> {
        &self.node
    }

    /// The addresses clients can reach this member at.
    pub fn client_addrs(&self) -> &[SocketAddr] {
        &self.client_addrs
    }

    /// The address peers reach this member at, if it listens for peers.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer_addr
    }

    /// Stops accepting requests, ends watch and keep-alive streams, lets in-flight unary
    /// requests finish, then stops raft.
    ///
    /// Returns once the database is closed (its lock released), so the same data dir can be
    /// opened again at once; if something still holds it after 5 s, that is logged.
    pub async fn shutdown(self) {
        self.node.begin_shutdown();
        let _ = self.stop.send(true);
        for mut server in self.servers {
            // In-flight requests get a bounded grace period; then the server (and the node it
            // holds) is dropped rather than left running.
            if tokio::time::timeout(std::time::Duration::from_secs(5), &mut server).await.is_err() {
                server.abort();
            }
        }
        self.node.shutdown().await;
        // openraft's storage tasks let go of the engine a moment after `shutdown` returns, and
        // closing RocksDB then takes a little longer: wait for the engine to say it is closed.
        let closed = self.node.engine().on_close();
        drop(self.node);
        if tokio::time::timeout(std::time::Duration::from_secs(5), closed).await.is_err() {
            tracing::warn!("database still open 5 s after shutdown");
        }
    }
}

/// Accepted connections with Nagle's algorithm off: watch events and raft messages are small
/// writes that must leave at once, not wait for the previous segment's ACK.
fn accept(listener: TcpListener) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    TcpListenerStream::new(listener).map(|conn| {
        let conn = conn?;
        conn.set_nodelay(true)?;
        Ok(conn)
    })
}

async fn wait_for_stop(mut stopped: signal::Receiver<bool>) {
    while !*stopped.borrow() {
        if stopped.changed().await.is_err() {
            return;
        }
    }
}

/// Writes a backup (the `Maintenance.Snapshot` format) into a new data dir as a member that
/// will found a new cluster: keys, revisions and leases are kept; raft history and membership
/// start afresh.
pub fn restore_into(data_dir: &std::path::Path, backup: &[u8]) -> Result<()> {
    use crate::engine::{Durability, Engine, RocksEngine, WriteBatch};
    use crate::keys::{self, Cf};
    let mut batch = crate::raft::parse_snapshot(backup)?;
    let mut reset = WriteBatch::default();
    reset.delete(Cf::Meta, keys::META_LAST_APPLIED);
    reset.delete(Cf::Meta, keys::META_MEMBERSHIP);
    batch.ops.extend(reset.ops);
    let db_dir = data_dir.join("db");
    std::fs::create_dir_all(&db_dir).map_err(|e| Error::Storage(format!("creating {}: {e}", db_dir.display())))?;
    RocksEngine::open(&db_dir)?.write(batch, Durability::Synced)
}
