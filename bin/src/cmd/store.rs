//! `ferrokube store`: one store member, with etcd's flag names and meanings.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use store::server::{ClusterState, RunningStore, StoreConfig};

/// Flags of `ferrokube store` (etcd's names).
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Human-readable name for this member.
    #[arg(long, default_value = "default")]
    name: String,
    /// Path to the data directory.
    #[arg(long, default_value = "default.ferrokube")]
    data_dir: PathBuf,
    /// Comma-separated URLs to listen on for client traffic.
    #[arg(long, default_value = "http://127.0.0.1:2379")]
    listen_client_urls: String,
    /// Comma-separated client URLs to advertise (default: the listen URLs).
    #[arg(long)]
    advertise_client_urls: Option<String>,
    /// URL to listen on for peer (raft) traffic.
    #[arg(long)]
    listen_peer_urls: Option<String>,
    /// Peer URL to advertise to the rest of the cluster (default: the listen peer URL).
    #[arg(long)]
    initial_advertise_peer_urls: Option<String>,
    /// Initial cluster: comma-separated name=peerURL (default: this member alone).
    #[arg(long)]
    initial_cluster: Option<String>,
    /// `new` to found a cluster, `existing` to join a running one after `etcdctl member add`
    /// (--initial-cluster then lists this member and running members to learn the cluster from).
    #[arg(long, default_value = "new")]
    initial_cluster_state: String,
    /// Initial cluster token, mixed into member and cluster ids.
    #[arg(long, default_value = "ferrokube-cluster")]
    initial_cluster_token: String,
    /// Maximum client request size in bytes.
    #[arg(long, default_value_t = 1536 * 1024)]
    max_request_bytes: usize,
    /// Raft heartbeat interval in milliseconds.
    #[arg(long, default_value_t = 100)]
    heartbeat_interval: u64,
    /// Raft election timeout in milliseconds.
    #[arg(long, default_value_t = 1000)]
    election_timeout: u64,
    /// Applied entries between raft snapshots (and log purges); etcd's default.
    #[arg(long, default_value_t = 100_000)]
    snapshot_count: u64,
    /// Seconds between progress notifications to watches that asked for them.
    #[arg(long, default_value_t = 600)]
    progress_notify_interval: u64,
    /// Refuse member add/remove/promote that would leave too few started or reachable voters
    /// for a quorum (etcd's flag and default).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    strict_reconfig_check: bool,
    /// Async runtime worker threads (default: half the CPUs, at least 1). Not an etcd flag.
    /// The rest is left to fsyncs (on their own threads), RocksDB's flushes and compactions,
    /// and the kernel's network stack, which on a 2-core machine made one worker the fastest
    /// (benches store --members 3: 15-25 % less CPU per write than two; see the README).
    #[arg(long)]
    worker_threads: Option<usize>,
}

/// Flags of `ferrokube store-restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup file (from `etcdctl snapshot save` against a ferrokube store).
    snapshot: PathBuf,
    /// The new data directory; must not exist or be empty.
    #[arg(long)]
    data_dir: PathBuf,
}

/// `http://127.0.0.1:2379` → 127.0.0.1:2379 (http only: TLS for the store is not built yet).
fn parse_url(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url:?}: only http:// URLs are supported (no TLS yet)"))?;
    let hostport = rest.trim_end_matches('/');
    hostport
        .to_socket_addrs()
        .with_context(|| format!("{url:?}: not a host:port"))?
        .next()
        .with_context(|| format!("{url:?}: resolves to no address"))
}

fn split(list: &str) -> Vec<String> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

fn config(args: StoreArgs) -> anyhow::Result<StoreConfig> {
    let client_urls = split(&args.listen_client_urls);
    let listen_client = client_urls.iter().map(|u| parse_url(u)).collect::<anyhow::Result<Vec<_>>>()?;
    if listen_client.is_empty() {
        bail!("--listen-client-urls is empty");
    }
    let listen_peer = args.listen_peer_urls.as_deref().map(parse_url).transpose()?;
    let advertise_peer = args
        .initial_advertise_peer_urls
        .or(args.listen_peer_urls.clone())
        .unwrap_or_else(|| "http://127.0.0.1:2380".into());
    let initial_cluster = match args.initial_cluster {
        Some(list) => split(&list)
            .into_iter()
            .map(|pair| {
                let (name, url) = pair
                    .split_once('=')
                    .with_context(|| format!("--initial-cluster entry {pair:?} is not name=URL"))?;
                parse_url(url)?;
                Ok((name.to_string(), url.to_string()))
            })
            .collect::<anyhow::Result<Vec<_>>>()?,
        None => vec![(args.name.clone(), advertise_peer.clone())],
    };
    let initial_cluster_state = match args.initial_cluster_state.as_str() {
        "new" => ClusterState::New,
        "existing" => ClusterState::Existing,
        other => bail!("--initial-cluster-state must be new or existing, not {other:?}"),
    };
    Ok(StoreConfig {
        name: args.name,
        data_dir: args.data_dir,
        listen_client,
        advertise_client_urls: args.advertise_client_urls.map(|u| split(&u)).unwrap_or(client_urls),
        listen_peer,
        advertise_peer_urls: vec![advertise_peer],
        initial_cluster,
        initial_cluster_state,
        initial_cluster_token: args.initial_cluster_token,
        max_request_bytes: args.max_request_bytes,
        heartbeat: Duration::from_millis(args.heartbeat_interval),
        election_timeout: Duration::from_millis(args.election_timeout),
        request_timeout: Duration::from_secs(7),
        progress_notify_interval: Duration::from_secs(args.progress_notify_interval.max(1)),
        snapshot_count: args.snapshot_count.max(1),
        strict_reconfig_check: args.strict_reconfig_check,
        faults: None,
    })
}

/// Half the CPUs this process may use, at least 1.
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// Runs a member until SIGTERM or Ctrl-C (or its removal from the cluster), then shuts down
/// gracefully.
pub fn run(args: StoreArgs) -> anyhow::Result<()> {
    let workers = args.worker_threads.unwrap_or_else(default_workers).max(1);
    let config = config(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let store = RunningStore::start(config.clone()).await?;
        tracing::info!(
            name = %config.name,
            member_id = format_args!("{:x}", store.node().id()),
            data_dir = %config.data_dir.display(),
            clients = ?store.client_addrs(),
            "serving the etcd v3 API"
        );
        tokio::select! {
            signal = super::wait_for_termination() => {
                signal?;
                tracing::info!("shutting down");
            }
            // etcd's removed member exits too; a restart on this data dir refuses to start.
            _ = store.node().removed() => {
                tracing::warn!("the member has been permanently removed from the cluster: shutting down");
            }
        }
        store.shutdown().await;
        Ok(())
    })
}


/// Loads a backup into a fresh data dir; `ferrokube store --data-dir` then starts a new
/// single-member cluster with the backed-up keys, revisions and leases.
pub fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    if args.data_dir.exists() && std::fs::read_dir(&args.data_dir)?.next().is_some() {
        bail!("{} is not empty; restore needs a fresh data dir", args.data_dir.display());
    }
    let data = std::fs::read(&args.snapshot).with_context(|| format!("reading {}", args.snapshot.display()))?;
    store::server::restore_into(&args.data_dir, &data)?;
    println!("restored {} into {}", args.snapshot.display(), args.data_dir.display());
    Ok(())
}
