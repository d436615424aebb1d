//! The controller-manager: controllers that act through the Kubernetes API (kube-rs' client,
//! watcher and controller runner), as kube-controller-manager does. Today: the namespace
//! controller, the ReplicaSet and Deployment controllers, the garbage collector.

pub mod deployment;
pub mod garbage_collector;
pub mod namespace;
pub mod objects;
pub mod replicaset;

use std::path::Path;

use anyhow::Context;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// A client for the cluster a kubeconfig file names (its current context).
pub async fn client_from_kubeconfig(path: &Path) -> anyhow::Result<kube::Client> {
    let kubeconfig = Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("using {}", path.display()))?;
    kube::Client::try_from(config).context("building the API client")
}

/// Every resource the apiserver serves (its preferred version, found through discovery, so
/// kinds added later are covered too) whose capabilities `keep` accepts.
pub async fn discover(
    client: &kube::Client,
    keep: impl Fn(&kube::discovery::ApiCapabilities) -> bool,
) -> Result<Vec<(kube::discovery::ApiResource, kube::discovery::ApiCapabilities)>, kube::Error> {
    let discovery = kube::discovery::Discovery::new(client.clone()).run().await?;
    Ok(discovery.groups().flat_map(|g| g.recommended_resources()).filter(|(_, caps)| keep(caps)).collect())
}

/// Runs every controller until `shutdown` resolves.
pub async fn run(client: kube::Client, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    use futures::FutureExt;
    let shutdown = shutdown.shared();
    futures::join!(
        namespace::run(client.clone(), shutdown.clone()),
        replicaset::run(client.clone(), shutdown.clone()),
        deployment::run(client.clone(), shutdown.clone()),
        garbage_collector::run(client.clone(), shutdown.clone()),
    );
}
