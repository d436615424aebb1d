//! `ferrokube up`: a single-node control plane in one process: the embedded store, the
//! apiserver, and the controller-manager and scheduler talking to that apiserver over HTTPS with the admin
//! kubeconfig, exactly as a separate `ferrokube controller-manager` would.

use anyhow::Context;
use apiserver::ApiServer;

use super::apiserver::ApiserverArgs;

/// Runs everything until SIGTERM or Ctrl-C, then stops the controllers and the scheduler before the apiserver.
pub fn run(args: ApiserverArgs) -> anyhow::Result<()> {
    let config = args.into_config()?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let server = ApiServer::start(config).await?;
        let client = crate::controllers::client_from_kubeconfig(&server.kubeconfig).await?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let controllers = tokio::spawn(crate::controllers::run(client, async {
            let _ = stopped.await;
        }));
        let scheduler_client = crate::controllers::client_from_kubeconfig(&server.kubeconfig).await?;
        let (stop_scheduler, scheduler_stopped) = tokio::sync::oneshot::channel::<()>();
        let scheduler = tokio::spawn(crate::scheduler::run(scheduler_client, async {
            let _ = scheduler_stopped.await;
        }));
        println!("kubeconfig: {}", server.kubeconfig.display());
        println!("serving on https://{}", server.addr);
        tracing::info!(addr = %server.addr, "control plane up: store, apiserver, controller-manager, scheduler");
        super::wait_for_termination().await?;
        tracing::info!("shutting down");
        let _ = stop.send(());
        let _ = stop_scheduler.send(());
        let _ = controllers.await;
        let _ = scheduler.await;
        server.shutdown().await;
        Ok(())
    })
}
