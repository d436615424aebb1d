//! `ferrokube scheduler`: assigns pods to nodes, against any apiserver a kubeconfig names.

use std::path::PathBuf;

use anyhow::Context;
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
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let client = crate::controllers::client_from_kubeconfig(&args.kubeconfig).await?;
        tracing::info!(kubeconfig = %args.kubeconfig.display(), "scheduler running");
        crate::scheduler::run(client, async {
            let _ = super::wait_for_termination().await;
            tracing::info!("shutting down");
        })
        .await;
        Ok(())
    })
}
