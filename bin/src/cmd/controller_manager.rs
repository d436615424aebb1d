//! `ferrokube controller-manager`: the controllers, against any apiserver a kubeconfig names.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

/// Flags of `ferrokube controller-manager` (kube-controller-manager's names).
#[derive(Debug, Args)]
pub struct ControllerManagerArgs {
    /// The kubeconfig of the cluster to manage (e.g. the one `ferrokube apiserver` writes).
    #[arg(long)]
    kubeconfig: PathBuf,
}

/// Runs the controllers until SIGTERM or Ctrl-C.
pub fn run(args: ControllerManagerArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let client = crate::controllers::client_from_kubeconfig(&args.kubeconfig).await?;
        tracing::info!(kubeconfig = %args.kubeconfig.display(), "controller-manager running");
        crate::controllers::run(client, async {
            let _ = super::wait_for_termination().await;
            tracing::info!("shutting down");
        })
        .await;
        Ok(())
    })
}
