//! `ferrokube`: the control plane's command. Today: `ferrokube up` (store, apiserver,
//! controller-manager and kubelet in one process), `ferrokube store` (an etcd-compatible store member),
//! `ferrokube store-restore` (load a backup into a fresh data dir), `ferrokube apiserver` (the
//! Kubernetes API over HTTPS), `ferrokube controller-manager` and `ferrokube kubelet`.
#![deny(clippy::all)]

mod cmd;
mod controllers;
mod scheduler;
mod kubelet;

use clap::{Parser, Subcommand};

/// ferrokube: a Kubernetes-style control plane.
#[derive(Debug, Parser)]
#[command(name = "ferrokube", version, about)]
struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a single-node cluster: embedded store, apiserver, controller-manager and kubelet.
    Up(cmd::up::UpArgs),
    /// Run an etcd-compatible store member (etcd v3 gRPC API).
    Store(Box<cmd::store::StoreArgs>),
    /// Create a data dir from a `Maintenance.Snapshot` backup (e.g. `etcdctl snapshot save`).
    StoreRestore(cmd::store::RestoreArgs),
    /// Serve the Kubernetes API over HTTPS (embedded store by default).
    Apiserver(cmd::apiserver::ApiserverArgs),
    /// Run the controllers (namespace) against the cluster a kubeconfig names.
    ControllerManager(cmd::controller_manager::ControllerManagerArgs),
    /// Assign pending pods to nodes (kube-scheduler) in the cluster a kubeconfig names.
    Scheduler(cmd::scheduler::SchedulerArgs),
    /// Run the node agent: register the Node, run its pods as host processes.
    Kubelet(cmd::kubelet::KubeletArgs),
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn,h2=warn,tower=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    let result = match cli.command {
        Command::Store(args) => cmd::store::run(*args),
        Command::StoreRestore(args) => cmd::store::restore(args),
        Command::Up(args) => cmd::up::run(args),
        Command::Apiserver(args) => cmd::apiserver::run(args),
        Command::ControllerManager(args) => cmd::controller_manager::run(args),
        Command::Scheduler(args) => cmd::scheduler::run(args),
        Command::Kubelet(args) => cmd::kubelet::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrokube: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
