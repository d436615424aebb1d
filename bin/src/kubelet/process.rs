//! The process runtime: every container is a host process (no image, no isolation) in its own
//! process group, so a stop reaches the children it forked too.
//!
//! Layout under the kubelet's root dir:
//!
//! ```text
//!   pods/UID/CONTAINER.log         stdout and stderr of every instance, appended
//!   pods/UID/CONTAINER/            default working directory
//!   pods/UID/CONTAINER.state.json  the latest instance: pid (+ its start time in clock
//!                                  ticks, against PID reuse), restart count, exit once known
//! ```
//!
//! A restarted kubelet cannot adopt processes it did not start (it cannot wait for them or
//! learn their exit code), so on start it kills every process group a state file names that
//! still runs (same PID and start time) and records that instance as exited 137,
//! `ContainerStatusUnknown`. The lifecycle then restarts it per the pod's restartPolicy
//! (`Never` pods end Failed). Nothing is left running untracked.
//!
//! When a container's main process exits, whatever is left of its process group is killed
//! (a container ends with its init process).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::mpsc::UnboundedSender;
use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::runtime::{Exit, Launch, Observed, PodKey, RunState, Runtime};

/// `PATH` of a container's process (the one container runtimes default to).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Exit code of a process that could not be started (what containerd reports).
const START_ERROR_CODE: i32 = 128;
/// How long removing a pod waits for its killed processes to be reaped.
const REAP_BOUND: Duration = Duration::from_secs(5);

/// The process runtime (see the module doc).
#[derive(Clone)]
pub struct ProcessRuntime {
    root: PathBuf,
    state: Arc<Mutex<HashMap<String, PodEntry>>>,
    events: UnboundedSender<PodKey>,
}

struct PodEntry {
    key: PodKey,
    containers: HashMap<String, Record>,
}

struct Record {
    observed: Observed,
    /// PID of the running instance's process (= its process group).
    pid: Option<u32>,
    /// When the running instance, asked to stop, gets SIGKILL.
    kill_deadline: Option<tokio::time::Instant>,
}

/// What a state file holds (times as Unix seconds).
#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    namespace: String,
    pod: String,
    uid: String,
    container: String,
    restart_count: i32,
    pid: Option<u32>,
    /// Field 22 of /proc/PID/stat when started: tells our process from a later one that
    /// reuses its PID.
    pid_start_ticks: Option<u64>,
    started_at: Option<i64>,
    exit: Option<ExitFile>,
    previous: Option<ExitFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ExitFile {
    exit_code: i32,
    reason: String,
    message: Option<String>,
    started_at: Option<i64>,
    finished_at: i64,
    container_id: Option<String>,
}

impl From<&Exit> for ExitFile {
    fn from(e: &Exit) -> Self {
        ExitFile {
            exit_code: e.exit_code,
            reason: e.reason.clone(),
            message: e.message.clone(),
            started_at: e.started_at.map(|t| t.as_second()),
            finished_at: e.finished_at.as_second(),
            container_id: e.container_id.clone(),
        }
    }
}

impl From<&ExitFile> for Exit {
    fn from(e: &ExitFile) -> Self {
        Exit {
            exit_code: e.exit_code,
            reason: e.reason.clone(),
            message: e.message.clone(),
            started_at: e.started_at.and_then(|s| Timestamp::from_second(s).ok()),
            finished_at: Timestamp::from_second(e.finished_at).unwrap_or(Timestamp::UNIX_EPOCH),
            container_id: e.container_id.clone(),
        }
    }
}

/// Now, to the second (the API's resolution).
fn now() -> Timestamp {
    let t = Timestamp::now();
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// Field 22 (starttime) of /proc/PID/stat, None when the process is gone.
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Sends `signal` to the process group `pgid` (ESRCH, nothing left, is fine).
fn signal_group(pgid: u32, signal: i32) {
    let Ok(pgid) = i32::try_from(pgid) else { return };
    if pgid > 1 {
        // SAFETY: kill(2) with a negative PID signals a process group; no memory involved.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

/// The exit code a container runtime reports: the code, or 128 + the killing signal.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(255)
}

impl ProcessRuntime {
    /// A runtime keeping its files under `root` (`ROOT/pods/...`); reads what a previous
    /// kubelet left there and kills the processes it left running (see the module doc).
    /// Pods whose containers change are sent on `events`.
    pub fn new(root: &Path, events: UnboundedSender<PodKey>) -> std::io::Result<Self> {
        std::fs::create_dir_all(root.join("pods"))?;
        let rt = ProcessRuntime { root: root.to_path_buf(), state: Arc::default(), events };
        rt.recover()?;
        Ok(rt)
    }

    fn pod_dir(&self, uid: &str) -> PathBuf {
        self.root.join("pods").join(uid)
    }

    fn state_path(&self, uid: &str, container: &str) -> PathBuf {
        self.pod_dir(uid).join(format!("{container}.state.json"))
    }

    /// Loads the state files of a previous run.
    fn recover(&self) -> std::io::Result<()> {
        let mut state = self.state.lock().unwrap();
        for pod_dir in std::fs::read_dir(self.root.join("pods"))?.flatten() {
            let Ok(files) = std::fs::read_dir(pod_dir.path()) else { continue };
            for file in files.flatten() {
                let path = file.path();
                if !path.to_string_lossy().ends_with(".state.json") {
                    continue;
                }
                let Some(mut saved) = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice::<StateFile>(&b).ok()) else {
                    tracing::warn!(path = %path.display(), "unreadable container state file; ignored");
                    continue;
                };
                if saved.exit.is_none() {
                    let alive = saved.pid.is_some_and(|pid| saved.pid_start_ticks.is_some() && start_ticks(pid) == saved.pid_start_ticks);
                    let message = if alive {
                        let pid = saved.pid.unwrap_or(0);
                        signal_group(pid, libc::SIGKILL);
                        tracing::info!(pid, pod = %saved.pod, container = %saved.container, "killed a container process left by a previous kubelet");
                        "the kubelet restarted and cannot adopt a process it did not start: it was killed"
                    } else {
                        "the process was gone when the kubelet restarted"
                    };
                    saved.exit = Some(ExitFile {
                        exit_code: 137,
                        reason: "ContainerStatusUnknown".into(),
                        message: Some(message.into()),
                        started_at: saved.started_at,
                        finished_at: now().as_second(),
                        container_id: saved.pid.map(|p| format!("process://{p}")),
                    });
                    if let Ok(bytes) = serde_json::to_vec(&saved) {
                        let _ = std::fs::write(&path, bytes);
                    }
                }
                let exit: Exit = saved.exit.as_ref().map(Exit::from).expect("set above");
                let key = PodKey { uid: saved.uid.clone(), namespace: saved.namespace.clone(), name: saved.pod.clone() };
                let entry = state.entry(saved.uid.clone()).or_insert_with(|| PodEntry { key, containers: HashMap::new() });
                entry.containers.insert(
                    saved.container.clone(),
                    Record {
                        observed: Observed {
                            restart_count: saved.restart_count,
                            container_id: exit.container_id.clone(),
                            state: RunState::Exited(exit),
                            previous: saved.previous.as_ref().map(Exit::from),
                        },
                        pid: None,
                        kill_deadline: None,
                    },
                );
            }
        }
        Ok(())
    }

    /// Writes the state file of one container from its record.
    fn persist(&self, key: &PodKey, container: &str, record: &Record) {
        let (started_at, exit) = match &record.observed.state {
            RunState::Running { started_at } => (Some(started_at.as_second()), None),
            RunState::Exited(e) => (e.started_at.map(|t| t.as_second()), Some(ExitFile::from(e))),
        };
        let file = StateFile {
            namespace: key.namespace.clone(),
            pod: key.name.clone(),
            uid: key.uid.clone(),
            container: container.to_string(),
            restart_count: record.observed.restart_count,
            pid: record.pid,
            pid_start_ticks: record.pid.and_then(start_ticks),
            started_at,
            exit,
            previous: record.observed.previous.as_ref().map(ExitFile::from),
        };
        let path = self.state_path(&key.uid, container);
        let tmp = path.with_extension("json.tmp");
        let written = serde_json::to_vec(&file)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the container state file");
        }
    }

    /// Spawns the process; Err is the message of a start error.
    fn spawn(&self, pod: &PodKey, container: &str, launch: &Launch) -> Result<tokio::process::Child, String> {
        let dir = self.pod_dir(&pod.uid);
        let log_path = dir.join(format!("{container}.log"));
        let cwd = match &launch.working_dir {
            Some(d) => d.clone(),
            None => dir.join(container),
        };
        std::fs::create_dir_all(&cwd).map_err(|e| format!("creating the working directory {}: {e}", cwd.display()))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("opening the log file {}: {e}", log_path.display()))?;
        let log_err = log.try_clone().map_err(|e| format!("opening the log file {}: {e}", log_path.display()))?;
        let (program, args) = launch.argv.split_first().ok_or("empty command")?;
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .env_clear()
            .env("PATH", DEFAULT_PATH)
            .env("HOSTNAME", &pod.name)
            .env("HOME", &cwd)
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&cwd)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .kill_on_drop(false);
        cmd.spawn().map_err(|e| format!("starting {program:?} in {}: {e}", cwd.display()))
    }

    /// Waits for the process, records its exit, kills what is left of its group, tells.
    fn watch_exit(&self, pod: PodKey, container: String, pid: u32, mut child: tokio::process::Child, started_at: Timestamp) {
        let rt = self.clone();
        tokio::spawn(async move {
            let code = match child.wait().await {
                Ok(status) => exit_code(status),
                Err(e) => {
                    tracing::warn!(pid, error = %e, "waiting for a container process failed");
                    255
                }
            };
            signal_group(pid, libc::SIGKILL);
            let exit = Exit {
                exit_code: code,
                reason: Exit::reason_for(code).into(),
                message: None,
                started_at: Some(started_at),
                finished_at: now(),
                container_id: Some(format!("process://{pid}")),
            };
            tracing::info!(pod = %pod.name, namespace = %pod.namespace, container = %container, pid, exit_code = code, "container exited");
            {
                let mut state = rt.state.lock().unwrap();
                let Some(record) = state.get_mut(&pod.uid).and_then(|e| e.containers.get_mut(&container)) else { return };
                if record.pid != Some(pid) {
                    return;
                }
                record.observed.state = RunState::Exited(exit);
                record.pid = None;
                record.kill_deadline = None;
                rt.persist(&pod, &container, record);
            }
            let _ = rt.events.unbounded_send(pod);
        });
    }

    /// PIDs of the running containers of one pod (all pods when None).
    fn running_pids(&self, pod_uid: Option<&str>) -> Vec<u32> {
        let state = self.state.lock().unwrap();
        state
            .iter()
            .filter(|(uid, _)| pod_uid.is_none_or(|p| p == uid.as_str()))
            .flat_map(|(_, e)| e.containers.values().filter_map(|r| r.pid))
            .collect()
    }

    /// Waits (at most `bound`) until none of `pids` is a running container any more.
    async fn wait_gone(&self, pids: &[u32], bound: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            let running = self.running_pids(None);
            if !pids.iter().any(|p| running.contains(p)) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Runtime for ProcessRuntime {
    fn version(&self) -> String {
        "process://ferrokube".into()
    }

    fn observe(&self, pod_uid: &str) -> HashMap<String, Observed> {
        let state = self.state.lock().unwrap();
        state.get(pod_uid).map(|e| e.containers.iter().map(|(n, r)| (n.clone(), r.observed.clone())).collect()).unwrap_or_default()
    }

    fn pods(&self) -> Vec<PodKey> {
        self.state.lock().unwrap().values().map(|e| e.key.clone()).collect()
    }

    fn start(&self, pod: &PodKey, container: &str, restart_count: i32, launch: &Launch) {
        let mut state = self.state.lock().unwrap();
        let entry = state.entry(pod.uid.clone()).or_insert_with(|| PodEntry { key: pod.clone(), containers: HashMap::new() });
        let previous = entry.containers.get(container).and_then(|r| match &r.observed.state {
            RunState::Exited(e) => Some(e.clone()),
            RunState::Running { .. } => None,
        });
        if entry.containers.get(container).is_some_and(|r| r.pid.is_some()) {
            // Already running: a duplicate request.
            return;
        }
        let started_at = now();
        let record = match self.spawn(pod, container, launch) {
            Ok(child) => {
                let pid = child.id().unwrap_or(0);
                tracing::info!(pod = %pod.name, namespace = %pod.namespace, container, pid, restart_count, "container started");
                self.watch_exit(pod.clone(), container.to_string(), pid, child, started_at);
                Record {
                    observed: Observed {
                        restart_count,
                        container_id: Some(format!("process://{pid}")),
                        state: RunState::Running { started_at },
                        previous,
                    },
                    pid: Some(pid),
                    kill_deadline: None,
                }
            }
            Err(message) => {
                tracing::warn!(pod = %pod.name, namespace = %pod.namespace, container, %message, "container failed to start");
                Record {
                    observed: Observed {
                        restart_count,
                        container_id: None,
                        state: RunState::Exited(Exit {
                            exit_code: START_ERROR_CODE,
                            reason: "StartError".into(),
                            message: Some(message),
                            started_at: None,
                            finished_at: started_at,
                            container_id: None,
                        }),
                        previous,
                    },
                    pid: None,
                    kill_deadline: None,
                }
            }
        };
        self.persist(pod, container, &record);
        entry.containers.insert(container.to_string(), record);
        drop(state);
        // Told at once, so the status turns Running (or shows the start error) without
        // waiting for a resync; the exit watcher tells about the end.
        let _ = self.events.unbounded_send(pod.clone());
    }

    fn kill(&self, pod_uid: &str, container: &str, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        let (pid, first) = {
            let mut state = self.state.lock().unwrap();
            let Some(record) = state.get_mut(pod_uid).and_then(|e| e.containers.get_mut(container)) else { return };
            let Some(pid) = record.pid else { return };
            match record.kill_deadline {
                // Already stopping, at least as soon: a repeated request.
                Some(d) if d <= deadline => return,
                // First request, or a shorter grace period (a second delete) than before.
                previous => {
                    record.kill_deadline = Some(deadline);
                    (pid, previous.is_none())
                }
            }
        };
        tracing::info!(pid, container, grace_seconds = grace.as_secs(), "stopping container");
        if grace.is_zero() {
            signal_group(pid, libc::SIGKILL);
            return;
        }
        if first {
            signal_group(pid, libc::SIGTERM);
        }
        let rt = self.clone();
        tokio::spawn(async move {
            if !rt.wait_gone(&[pid], grace).await {
                tracing::info!(pid, "grace period over; killing");
                signal_group(pid, libc::SIGKILL);
            }
        });
    }

    fn remove_pod(&self, pod_uid: &str) -> BoxFuture<'static, ()> {
        let rt = self.clone();
        let uid = pod_uid.to_string();
        async move {
            let pids = rt.running_pids(Some(&uid));
            for &pid in &pids {
                signal_group(pid, libc::SIGKILL);
            }
            if !rt.wait_gone(&pids, REAP_BOUND).await {
                tracing::warn!(pod_uid = %uid, "processes of a removed pod did not go away in time");
            }
            rt.state.lock().unwrap().remove(&uid);
            let dir = rt.pod_dir(&uid);
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a pod's directory");
                }
            }
        }
        .boxed()
    }

    fn stop_all(&self, grace: Duration) -> BoxFuture<'static, ()> {
        let rt = self.clone();
        async move {
            let pids = rt.running_pids(None);
            for &pid in &pids {
                signal_group(pid, libc::SIGTERM);
            }
            if !rt.wait_gone(&pids, grace).await {
                for &pid in &rt.running_pids(None) {
                    signal_group(pid, libc::SIGKILL);
                }
                rt.wait_gone(&pids, REAP_BOUND).await;
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn key() -> PodKey {
        PodKey { uid: "uid-1".into(), namespace: "default".into(), name: "p".into() }
    }

    fn sh(script: &str) -> Launch {
        Launch {
            argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
            env: vec![("GREETING".into(), "hi".into())],
            working_dir: None,
            image: "busybox".into(),
        }
    }

    async fn wait_exit(rt: &ProcessRuntime, container: &str) -> Exit {
        for _ in 0..200 {
            if let Some(RunState::Exited(e)) = rt.observe("uid-1").get(container).map(|o| o.state.clone()) {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{container} did not exit within 5 s");
    }

    #[tokio::test]
    async fn runs_a_command_with_env_and_log_and_reports_the_exit_code() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = futures::channel::mpsc::unbounded();
        let rt = ProcessRuntime::new(dir.path(), tx).unwrap();
        rt.start(&key(), "c", 0, &sh("echo $GREETING from $(pwd); exit 3"));
        assert_eq!(rx.next().await, Some(key()), "a start is reported");
        let exit = wait_exit(&rt, "c").await;
        assert_eq!((exit.exit_code, exit.reason.as_str()), (3, "Error"));
        let log = std::fs::read_to_string(dir.path().join("pods/uid-1/c.log")).unwrap();
        assert_eq!(log.trim(), format!("hi from {}", dir.path().join("pods/uid-1/c").display()));
        let saved: StateFile = serde_json::from_slice(&std::fs::read(dir.path().join("pods/uid-1/c.state.json")).unwrap()).unwrap();
        assert_eq!(saved.exit.unwrap().exit_code, 3);
    }

    #[tokio::test]
    async fn a_missing_program_is_a_start_error() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, _rx) = futures::channel::mpsc::unbounded();
        let rt = ProcessRuntime::new(dir.path(), tx).unwrap();
        let mut launch = sh("");
        launch.argv = vec!["/nonexistent/program".into()];
        rt.start(&key(), "c", 2, &launch);
        let o = rt.observe("uid-1").remove("c").unwrap();
        assert_eq!(o.restart_count, 2);
        let RunState::Exited(e) = o.state else { panic!("{o:?}") };
        assert_eq!((e.exit_code, e.reason.as_str()), (128, "StartError"));
        assert!(e.message.unwrap().contains("/nonexistent/program"));
    }

    #[tokio::test]
    async fn kill_stops_the_whole_group_and_a_new_runtime_kills_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, _rx) = futures::channel::mpsc::unbounded();
        let rt = ProcessRuntime::new(dir.path(), tx).unwrap();
        // A child that ignores SIGTERM: the group kill after the grace period gets it.
        rt.start(&key(), "c", 0, &sh("trap '' TERM; echo ready; sleep 60 & wait"));
        let pid = rt.running_pids(None)[0];
        let log = dir.path().join("pods/uid-1/c.log");
        for _ in 0..200 {
            if std::fs::read_to_string(&log).unwrap_or_default().contains("ready") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        rt.kill("uid-1", "c", Duration::from_secs(60));
        rt.kill("uid-1", "c", Duration::from_secs(90));
        // A shorter grace period (a second delete) shortens the first one.
        rt.kill("uid-1", "c", Duration::from_millis(300));
        let exit = wait_exit(&rt, "c").await;
        assert_eq!(exit.exit_code, 137, "SIGKILL after the grace period");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(start_ticks(pid).is_none(), "the leader is gone");

        // A "previous kubelet" that left a process running: the next one kills it.
        rt.start(&key(), "d", 0, &sh("sleep 60"));
        let pid = rt.running_pids(None)[0];
        let (tx2, _rx2) = futures::channel::mpsc::unbounded();
        let rt2 = ProcessRuntime::new(dir.path(), tx2).unwrap();
        let o = rt2.observe("uid-1").remove("d").unwrap();
        let RunState::Exited(e) = o.state else { panic!("{o:?}") };
        assert_eq!((e.exit_code, e.reason.as_str()), (137, "ContainerStatusUnknown"));
        wait_exit(&rt, "d").await;
        assert!(start_ticks(pid).is_none(), "the leftover process was killed");
        assert_eq!(rt2.observe("uid-1")["c"].restart_count, 0);

        rt2.remove_pod("uid-1").await;
        assert!(rt2.pods().is_empty());
        assert!(!dir.path().join("pods/uid-1").exists());
    }
}
