//! `ferrokube controller-manager`: the controllers, against any apiserver a kubeconfig names.

use std::path::PathBuf;

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
    super::run_with_client(&args.kubeconfig, "controller-manager", |client| async {
        crate::controllers::run(client, super::termination()).await;
        Ok(())
    })
}
