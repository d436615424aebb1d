//! `ferrokube scheduler`: assigns pods to nodes, against any apiserver a kubeconfig names.

use std::path::PathBuf;

use clap::Args;

/// Flags of `ferrokube scheduler` (kube-scheduler's names).
#[derive(Debug, Args)]
pub struct SchedulerArgs {
    /// The kubeconfig of the cluster to schedule for (e.g. the one `ferrokube apiserver` writes).
    #[arg(long)]
    kubeconfig: PathBuf,
}

/// Runs the scheduler until SIGTERM or Ctrl-C.
pub fn run(args: SchedulerArgs) -> anyhow::Result<()> {
    super::run_with_client(&args.kubeconfig, "scheduler", |client| async {
        crate::scheduler::run(client, super::termination()).await;
        Ok(())
    })
}
