//! Configuration of one store member, with etcd's flag meanings.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::raft::NodeId;
use crate::{Error, Result};

/// Whether this member founds a new cluster or joins an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState {
    /// Bootstrap a new cluster from `initial_cluster`.
    New,
    /// Join a running cluster (this member was added with MemberAdd first).
    Existing,
}

/// One member's settings.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Member name (`--name`).
    pub name: String,
    /// Where the database lives (`--data-dir`).
    pub data_dir: PathBuf,
    /// Addresses the client API listens on.
    pub listen_client: Vec<SocketAddr>,
    /// Client URLs advertised to other members and clients.
    pub advertise_client_urls: Vec<String>,
    /// Address the peer (raft) API listens on.
    pub listen_peer: Option<SocketAddr>,
    /// Peer URLs advertised to other members.
    pub advertise_peer_urls: Vec<String>,
    /// Every founding member: (name, peer URL).
    pub initial_cluster: Vec<(String, String)>,
    /// New or existing cluster.
    pub initial_cluster_state: ClusterState,
    /// Token mixed into member and cluster ids so distinct clusters never share ids.
    pub initial_cluster_token: String,
    /// Largest request accepted (`--max-request-bytes`, default 1.5 MiB as etcd).
    pub max_request_bytes: usize,
    /// Raft heartbeat interval (`--heartbeat-interval`).
    pub heartbeat: Duration,
    /// Raft election timeout (`--election-timeout`).
    pub election_timeout: Duration,
    /// How long a write may wait for consensus before the client gets "request timed out".
    pub request_timeout: Duration,
    /// How often watches that asked for progress notifications get one.
    pub progress_notify_interval: Duration,
    /// Take a raft snapshot (and purge the log) after this many applied entries.
    pub snapshot_count: u64,
    /// Refuse membership changes that would leave too few started or reachable voters for a
    /// quorum (`--strict-reconfig-check`, on by default as in etcd).
    pub strict_reconfig_check: bool,
    /// In-process cluster tests only: the shared test network that cuts, drops or delays this
    /// member's outgoing raft messages and forwarded requests. `None` in production.
    pub faults: Option<std::sync::Arc<crate::raft::LinkFaults>>,
}

impl StoreConfig {
    /// A single-member configuration serving clients on `client` with data in `data_dir`.
    pub fn single(name: &str, data_dir: PathBuf, client: SocketAddr) -> Self {
        let peer_url = "http://127.0.0.1:2380".to_string();
        Self {
            name: name.to_string(),
            data_dir,
            listen_client: vec![client],
            advertise_client_urls: vec![format!("http://{client}")],
            listen_peer: None,
            advertise_peer_urls: vec![peer_url.clone()],
            initial_cluster: vec![(name.to_string(), peer_url)],
            initial_cluster_state: ClusterState::New,
            initial_cluster_token: "ferrokube-cluster".into(),
            max_request_bytes: 1536 * 1024,
            heartbeat: Duration::from_millis(100),
            election_timeout: Duration::from_millis(1000),
            request_timeout: Duration::from_secs(7),
            progress_notify_interval: Duration::from_secs(600),
            snapshot_count: 100_000,
            strict_reconfig_check: true,
            faults: None,
        }
    }

    /// This member's id: derived from its peer URL and the cluster token, like etcd's, so a
    /// member added by `MemberAdd` (which knows only peer URLs) gets the id it will compute.
    pub fn member_id(&self) -> NodeId {
        let peer = self
            .initial_cluster
            .iter()
            .find(|(n, _)| *n == self.name)
            .map(|(_, u)| u.clone())
            .unwrap_or_else(|| self.advertise_peer_urls.join(","));
        member_id(&peer, &self.initial_cluster_token)
    }

    /// The cluster id: derived from every founding member and the token.
    pub fn cluster_id(&self) -> u64 {
        let mut members: Vec<String> = self.initial_cluster.iter().map(|(n, u)| format!("{n}={u}")).collect();
        members.sort();
        nonzero_hash(&format!("{}|{}", members.join(","), self.initial_cluster_token))
    }

    /// Checks what can be checked before touching the disk or network.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(m));
        if self.name.is_empty() {
            return bad("--name must not be empty".into());
        }
        if self.listen_client.is_empty() {
            return bad("--listen-client-urls needs at least one URL".into());
        }
        if self.initial_cluster.is_empty() {
            return bad("--initial-cluster must list at least this member".into());
        }
        if self.initial_cluster_state == ClusterState::New && !self.initial_cluster.iter().any(|(n, _)| *n == self.name) {
            return bad(format!("--initial-cluster has no member named {:?} (--name)", self.name));
        }
        if self.max_request_bytes == 0 {
            return bad("--max-request-bytes must be positive".into());
        }
        if self.election_timeout < self.heartbeat * 5 {
            return bad("--election-timeout must be at least 5x --heartbeat-interval".into());
        }
        Ok(())
    }
}

/// A member id from its peer URL and the cluster token.
pub fn member_id(peer_url: &str, token: &str) -> NodeId {
    nonzero_hash(&format!("{peer_url}|{token}"))
}

/// FNV-1a: stable across builds and platforms (unlike `DefaultHasher`), never 0 (etcd treats 0
/// as "no member").
fn nonzero_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    // Keep ids positive as i64 too: some clients print them signed.
    (h & (i64::MAX as u64)).max(1)
}
