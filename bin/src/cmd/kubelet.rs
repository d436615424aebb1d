//! `ferrokube kubelet`: the node agent, against any apiserver a kubeconfig names.

use std::path::PathBuf;

use clap::Args;

/// Flags of `ferrokube kubelet` (kubelet's names).
#[derive(Debug, Args)]
pub struct KubeletArgs {
    /// The kubeconfig of the cluster to join (e.g. the one `ferrokube apiserver` writes).
    #[arg(long)]
    kubeconfig: PathBuf,
    /// The Node's name; the machine's hostname (lowercased) by default.
    #[arg(long)]
    node_name: Option<String>,
    /// Where pods' logs, working directories and runtime state live.
    #[arg(long, default_value = "ferrokube-kubelet")]
    root_dir: PathBuf,
}

/// Runs the kubelet until SIGTERM or Ctrl-C, then stops its pods' processes.
pub fn run(args: KubeletArgs) -> anyhow::Result<()> {
    let node_name = args.node_name.unwrap_or_else(crate::kubelet::node::hostname);
    let config = crate::kubelet::Config { node_name, root_dir: args.root_dir };
    super::run_with_client(&args.kubeconfig, "kubelet", |client| crate::kubelet::run(client, config, super::termination()))
}
