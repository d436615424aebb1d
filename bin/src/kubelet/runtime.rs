//! The container runtime seen by the kubelet: a small trait (the process runtime implements it
//! today; a CRI/containerd runtime can implement it later) and the plain data it reports.
//!
//! The runtime remembers, per pod and container, the latest instance (running or exited), the
//! one before it (for `lastState`) and how often the container was restarted. It decides
//! nothing: the lifecycle state machine (`lifecycle.rs`) reads these observations and returns
//! the starts and kills the driver asks the runtime for.
//!
//! No method blocks: a runtime whose calls are remote (CRI over gRPC) answers `observe` from
//! a cache its own task refreshes (as the kubelet's PLEG does) and starts and stops
//! containers in tasks of its own, reporting changes on the event channel.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::jiff::Timestamp;

/// A pod as the runtime names it: its UID keys everything, namespace/name say whom to tell.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodKey {
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

/// How one container instance ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// The exit code; 128 + N for a process killed by signal N (as container runtimes report).
    pub exit_code: i32,
    /// `Completed` (exit 0), `Error`, `StartError` (could not be started) or
    /// `ContainerStatusUnknown` (lost across a kubelet restart).
    pub reason: String,
    /// Why, for humans (start errors, lost processes).
    pub message: Option<String>,
    /// When it started (None: it never ran).
    pub started_at: Option<Timestamp>,
    /// When it ended.
    pub finished_at: Timestamp,
    /// The instance's ID (`process://PID`), when it had one.
    pub container_id: Option<String>,
}

impl Exit {
    /// The reason a process exit gets: `Completed` for 0, `Error` otherwise.
    pub fn reason_for(exit_code: i32) -> &'static str {
        if exit_code == 0 {
            "Completed"
        } else {
            "Error"
        }
    }
}

/// The latest instance of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    /// Its process runs.
    Running {
        /// When it was started.
        started_at: Timestamp,
    },
    /// It ended (or never got going).
    Exited(Exit),
}

/// What the runtime knows about one container of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// How many times it was restarted (0 for the first instance).
    pub restart_count: i32,
    /// The latest instance's ID (`process://PID`).
    pub container_id: Option<String>,
    /// The latest instance.
    pub state: RunState,
    /// How the instance before the latest one ended (`lastState`).
    pub previous: Option<Exit>,
}

impl Observed {
    /// Whether its latest instance is running.
    pub fn is_running(&self) -> bool {
        matches!(self.state, RunState::Running { .. })
    }
}

/// Everything needed to start one container instance, resolved from the pod spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// `command` + `args`, after `$(VAR)` expansion; never empty.
    pub argv: Vec<String>,
    /// The container's environment (`env`), in order, after expansion.
    pub env: Vec<(String, String)>,
    /// `workingDir`, if the spec sets one.
    pub working_dir: Option<PathBuf>,
    /// The image named in the spec (recorded, not pulled).
    pub image: String,
}

/// A container runtime. Starting and killing return at once; when a container's state
/// changes the runtime sends its pod's key on the channel it was built with, and the kubelet
/// looks again.
pub trait Runtime: Send + Sync + 'static {
    /// `nodeInfo.containerRuntimeVersion` (`process://ferrokube`).
    fn version(&self) -> String;
    /// What is known about the containers of the pod with this UID, by container name.
    fn observe(&self, pod_uid: &str) -> HashMap<String, Observed>;
    /// Every pod the runtime holds something for (running or remembered).
    fn pods(&self) -> Vec<PodKey>;
    /// Starts a new instance of `container`; a failure to start is recorded as an exited
    /// instance (reason `StartError`), not returned.
    fn start(&self, pod: &PodKey, container: &str, restart_count: i32, launch: &Launch);
    /// Asks a running container to stop: SIGTERM (or the runtime's equivalent), and a hard
    /// kill after `grace`. Repeating it while the stop is under way changes nothing, unless
    /// the new grace period ends sooner.
    fn kill(&self, pod_uid: &str, container: &str, grace: Duration);
    /// Kills whatever still runs of the pod (bounded) and forgets it, files included.
    fn remove_pod(&self, pod_uid: &str) -> BoxFuture<'static, ()>;
    /// Stops every running container: a polite stop, a hard kill after `grace`. Resolves when
    /// they are gone (bounded).
    fn stop_all(&self, grace: Duration) -> BoxFuture<'static, ()>;
}
