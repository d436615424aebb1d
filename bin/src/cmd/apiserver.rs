//! `ferrokube apiserver`: the Kubernetes API over HTTPS, on an embedded single-member store or
//! on remote store endpoints.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use apiserver::{ApiServer, ApiServerConfig};
use clap::Args;

/// Flags of `ferrokube apiserver` (kube-apiserver's names where they exist).
#[derive(Debug, Args)]
pub struct ApiserverArgs {
    /// Where credentials, the admin kubeconfig and the embedded store's data live.
    #[arg(long, default_value = "ferrokube-apiserver")]
    data_dir: PathBuf,
    /// HTTPS port.
    #[arg(long, default_value_t = 6443)]
    secure_port: u16,
    /// Address to listen on (loopback by default; the serving certificate names 127.0.0.1,
    /// ::1 and localhost only).
    #[arg(long, default_value = "127.0.0.1")]
    bind_address: std::net::IpAddr,
    /// Comma-separated etcd v3 endpoints of a remote store (http://host:port,...); without it an
    /// embedded single-member store runs in this process under DATA_DIR/store.
    #[arg(long)]
    store_endpoints: Option<String>,
}

impl ApiserverArgs {
    /// The apiserver's configuration; refuses store endpoints it cannot use.
    pub fn into_config(self) -> anyhow::Result<ApiServerConfig> {
        let store_endpoints: Vec<String> = self
            .store_endpoints
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        for e in &store_endpoints {
            if !e.starts_with("http://") {
                anyhow::bail!("--store-endpoints {e:?}: only http:// URLs are supported (the store has no TLS yet)");
            }
        }
        Ok(ApiServerConfig {
            data_dir: self.data_dir,
            listen: SocketAddr::new(self.bind_address, self.secure_port),
            store_endpoints,
        })
    }
}

/// Runs the apiserver until SIGTERM or Ctrl-C.
pub fn run(args: ApiserverArgs) -> anyhow::Result<()> {
    let config = args.into_config()?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let server = ApiServer::start(config.clone()).await?;
        tracing::info!(
            addr = %server.addr,
            data_dir = %config.data_dir.display(),
            store = if config.store_endpoints.is_empty() { "embedded".to_string() } else { config.store_endpoints.join(",") },
            "serving the Kubernetes API"
        );
        println!("kubeconfig: {}", server.kubeconfig.display());
        println!("kubeconfig-cert: {}", server.kubeconfig_cert.display());
        println!("serving on https://{}", server.addr);
        super::wait_for_termination().await?;
        tracing::info!("shutting down");
        server.shutdown().await;
        Ok(())
    })
}
