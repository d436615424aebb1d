//! The kubelet: registers its Node and keeps it and its Lease fresh, watches the pods bound
//! to it and runs them with a container runtime (the built-in process runtime: containers are
//! host processes), reporting their status and finishing their deletion.
//!
//! - `lifecycle`: the pod state machine, pure (decisions from spec, observations, clock).
//! - `launch`: container spec → argv/env/dir, pure.
//! - `runtime`: the runtime trait; `process`: the process runtime.
//! - `sync`: the thin driver (kube-rs applier over the pod watch and runtime events).
//! - `node`: Node registration, status and Lease heartbeat.

pub mod launch;
pub mod lifecycle;
pub mod node;
pub mod process;
pub mod runtime;
pub mod sync;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::{FutureExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{controller, watcher, WatchStreamExt};
use kube::Client;

use self::process::ProcessRuntime;
use self::runtime::{PodKey, Runtime};

/// How long pods' processes get to stop on SIGTERM when the kubelet shuts down.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Bound on the pod workers' wind-down after shutdown is asked for.
const DRAIN_BOUND: Duration = Duration::from_secs(10);

/// Errors of the kubelet's API work; the operation is retried.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("{0}")]
    Api(#[from] kube::Error),
}

/// Where and as whom the kubelet runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The Node's name (pods with this `spec.nodeName` run here).
    pub node_name: String,
    /// Where pods' logs, working directories and runtime state live.
    pub root_dir: PathBuf,
}

/// Runs the kubelet until `shutdown` resolves, then stops its pods' processes.
pub async fn run(client: Client, config: Config, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let shutdown = shutdown.boxed().shared();
    std::fs::create_dir_all(&config.root_dir).with_context(|| format!("creating {}", config.root_dir.display()))?;
    let (events_tx, events_rx) = futures::channel::mpsc::unbounded::<PodKey>();
    let runtime: Arc<dyn Runtime> = Arc::new(
        ProcessRuntime::new(&config.root_dir, events_tx).with_context(|| format!("process runtime under {}", config.root_dir.display()))?,
    );
    let machine = node::MachineInfo::read(&config.root_dir, runtime.version());
    let name = config.node_name.clone();
    let registration = async {
        if let Err(e) = node::ensure_lease_namespace(&client).await {
            tracing::warn!(error = %e, "cannot ensure the {} namespace; leases will be retried", node::LEASE_NAMESPACE);
        }
        node::beat(&client, &name, &machine, None).await
    };
    // The heartbeat retries a registration that fails or hangs here.
    let first = match tokio::time::timeout(node::HEARTBEAT, registration).await {
        Ok(Ok(status)) => Some(status),
        Ok(Err(e)) => {
            tracing::warn!(node = %name, error = %e, "node registration failed; retrying");
            None
        }
        Err(_) => {
            tracing::warn!(node = %name, "node registration timed out; retrying");
            None
        }
    };
    let heartbeat = tokio::spawn(node::heartbeat(client.clone(), name.clone(), machine, first, shutdown.clone()));

    let pods: Api<Pod> = Api::all(client.clone());
    let wc = watcher::Config::default().fields(&format!("spec.nodeName={name}"));
    let writer = reflector::store::Writer::<Pod>::default();
    let store = writer.as_reader();
    let housekeeping = tokio::spawn(sync::housekeeping(store.clone(), runtime.clone(), shutdown.clone()));
    let pod_events =
        reflector::reflector(writer, watcher(pods, wc).default_backoff()).applied_objects().map_ok(|p| ObjectRef::from_obj(&p));
    let runtime_events = events_rx.map(|k| Ok::<_, watcher::Error>(ObjectRef::<Pod>::new(&k.name).within(&k.namespace)));
    let queue = futures::stream::select(pod_events, runtime_events).take_until(shutdown.clone());
    let ctx = Arc::new(sync::Context { client, node_name: name.clone(), runtime: runtime.clone() });
    tracing::info!(node = %name, root_dir = %config.root_dir.display(), runtime = %runtime.version(), "kubelet running");
    let pods_done = controller::applier(
        |pod, ctx| sync::reconcile(pod, ctx).boxed(),
        sync::error_policy,
        ctx,
        store,
        queue,
        controller::Config::default(),
    )
    .for_each(|r| {
        if let Err(e) = r {
            tracing::debug!(error = %e, "pod worker");
        }
        futures::future::ready(())
    });
    tokio::select! {
        _ = pods_done => {}
        _ = async { shutdown.clone().await; tokio::time::sleep(DRAIN_BOUND).await } => {
            tracing::warn!("pod workers did not wind down in time");
        }
    }
    let _ = heartbeat.await;
    let _ = housekeeping.await;
    tracing::info!("stopping the pods' processes");
    runtime.stop_all(SHUTDOWN_GRACE).await;
    Ok(())
}
