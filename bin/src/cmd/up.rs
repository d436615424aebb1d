//! `ferrokube up`: a single-node control plane in one process: the embedded store, the
//! apiserver, and the controller-manager talking to that apiserver over HTTPS with the admin
//! kubeconfig, exactly as a separate `ferrokube controller-manager` would, and a kubelet (its
//! own client, the node named after the host, pods' files under DATA_DIR/kubelet).

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

/// Runs everything until SIGTERM or Ctrl-C, then stops the controllers before the apiserver.
pub fn run(args: UpArgs) -> anyhow::Result<()> {
    let config = args.apiserver.into_config()?;
    let kubelet_config = crate::kubelet::Config {
        node_name: args.node_name.unwrap_or_else(crate::kubelet::node::hostname),
        root_dir: config.data_dir.join("kubelet"),
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let server = ApiServer::start(config).await?;
        let client = crate::controllers::client_from_kubeconfig(&server.kubeconfig).await?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let controllers = tokio::spawn(crate::controllers::run(client, async {
            let _ = stopped.await;
        }));
        // The kubelet, with its own client like a separate `ferrokube kubelet`.
        let kubelet_client = crate::controllers::client_from_kubeconfig(&server.kubeconfig).await?;
        let (stop_kubelet, kubelet_stopped) = tokio::sync::oneshot::channel::<()>();
        let kubelet = tokio::spawn(crate::kubelet::run(kubelet_client, kubelet_config, async {
            let _ = kubelet_stopped.await;
        }));
        println!("kubeconfig: {}", server.kubeconfig.display());
        println!("serving on https://{}", server.addr);
        tracing::info!(addr = %server.addr, "control plane up: store, apiserver, controller-manager, kubelet");
        super::wait_for_termination().await?;
        tracing::info!("shutting down");
        let _ = stop.send(());
        let _ = controllers.await;
        // Before the apiserver: it stops its pods' processes.
        let _ = stop_kubelet.send(());
        if let Ok(Err(e)) = kubelet.await {
            tracing::warn!(error = %e, "kubelet");
        }
        server.shutdown().await;
        Ok(())
    })
}
