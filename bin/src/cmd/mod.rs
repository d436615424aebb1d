//! One module per subcommand.

pub mod apiserver;
pub mod controller_manager;
pub mod kubelet;
pub mod scheduler;
pub mod store;
pub mod up;

/// Resolves on SIGTERM or Ctrl-C: when a server subcommand shuts down gracefully.
async fn wait_for_termination() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        r = tokio::signal::ctrl_c() => r?,
    }
    Ok(())
}

/// Runs a component that acts only through the API (controller-manager, scheduler, kubelet) on
/// its own runtime, with a client of the cluster `kubeconfig` names.
fn run_with_client<Fut>(
    kubeconfig: &std::path::Path,
    name: &str,
    component: impl FnOnce(kube::Client) -> Fut,
) -> anyhow::Result<()>
where
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    use anyhow::Context;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let client = crate::controllers::client_from_kubeconfig(kubeconfig).await?;
        tracing::info!(kubeconfig = %kubeconfig.display(), "{name} running");
        component(client).await
    })
}

/// What such a component is given to stop on: SIGTERM or Ctrl-C.
async fn termination() {
    let _ = wait_for_termination().await;
    tracing::info!("shutting down");
}
