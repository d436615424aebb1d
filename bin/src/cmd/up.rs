//! `ferrokube up`: a single-node cluster in one process: the embedded store, the apiserver,
//! and, each with its own client of that apiserver over HTTPS with the admin kubeconfig exactly
//! as the separate commands would: the controller-manager, the scheduler and a kubelet (the
//! node named after the host, pods' files under DATA_DIR/kubelet).

use anyhow::Context;
use apiserver::ApiServer;

use super::apiserver::ApiserverArgs;

/// Flags of `ferrokube up`: the apiserver's, plus the node's name.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    apiserver: ApiserverArgs,
    /// The kubelet's Node name; the machine's hostname (lowercased) by default.
    #[arg(long)]
    node_name: Option<String>,
}

/// Runs everything until SIGTERM or Ctrl-C, then stops the controllers and the scheduler, then
/// the kubelet (which stops its pods' processes), then the apiserver.
pub fn run(args: UpArgs) -> anyhow::Result<()> {
    let config = args.apiserver.into_config()?;
    let kubelet_config = crate::kubelet::Config {
        node_name: args.node_name.unwrap_or_else(crate::kubelet::node::hostname),
        root_dir: config.data_dir.join("kubelet"),
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let server = ApiServer::start(config).await?;
        let client = || crate::controllers::client_from_kubeconfig(&server.kubeconfig);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let stop_signal = || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            }
        };
        let controllers = tokio::spawn(crate::controllers::run(client().await?, stop_signal()));
        let scheduler = tokio::spawn(crate::scheduler::run(client().await?, stop_signal()));
        let (stop_kubelet, kubelet_stopped) = tokio::sync::oneshot::channel::<()>();
        let kubelet = tokio::spawn(crate::kubelet::run(client().await?, kubelet_config, async {
            let _ = kubelet_stopped.await;
        }));
        println!("kubeconfig: {}", server.kubeconfig.display());
        println!("serving on https://{}", server.addr);
        tracing::info!(addr = %server.addr, "cluster up: store, apiserver, controller-manager, scheduler, kubelet");
        super::wait_for_termination().await?;
        tracing::info!("shutting down");
        let _ = stop.send(true);
        let _ = controllers.await;
        let _ = scheduler.await;
        let _ = stop_kubelet.send(());
        if let Ok(Err(e)) = kubelet.await {
            tracing::warn!(error = %e, "kubelet");
        }
        server.shutdown().await;
        Ok(())
    })
}
