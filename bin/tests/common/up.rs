//! A `ferrokube up` child process (store + apiserver + controller-manager + scheduler +
//! kubelet) for end-to-end tests of controllers, with kubectl 1.37 from the venv. Include it
//! with `#[path = "common/up.rs"] mod up;` next to `mod common;`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{file_tail, run_with_timeout, show, spawn_serving, wait_exit, FERROKUBE};

/// Bound on one kubectl run.
pub const KUBECTL_TIMEOUT: Duration = Duration::from_secs(60);

/// kubectl from the venv `.ci/setup` creates.
pub fn kubectl_bin() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let p = Path::new(&home).join(".cache/ferrokube-venv/bin/kubectl");
    assert!(p.exists(), "{} not found: run .ci/setup", p.display());
    p
}

/// One `ferrokube up` child (or `ferrokube apiserver` and `ferrokube controller-manager`
/// children); dropping it stops them by PID (SIGTERM, then SIGKILL), and then kills any pod
/// process the kubelet of `up` left behind.
pub struct Up {
    child: Child,
    /// A separate controller-manager process, when started with [`Up::start_split`].
    controller_manager: Option<Child>,
    /// The admin kubeconfig it wrote.
    pub kubeconfig: PathBuf,
    /// Its stderr.
    pub log: PathBuf,
    /// Scratch space that lives as long as the process.
    pub dir: tempfile::TempDir,
}

impl Up {
    /// `ferrokube up` on a fresh data dir and a free port, waited until it serves.
    pub fn start() -> Self {
        Self::start_command("up")
    }

    /// `ferrokube apiserver`, then `ferrokube controller-manager --kubeconfig` against it as a
    /// process of its own (its log is appended to the same log file).
    pub fn start_split() -> Self {
        let mut up = Self::start_command("apiserver");
        let log = std::fs::OpenOptions::new().append(true).open(&up.log).unwrap();
        let cm = Command::new(FERROKUBE)
            .args(["controller-manager", "--kubeconfig"])
            .arg(&up.kubeconfig)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning ferrokube controller-manager");
        up.controller_manager = Some(cm);
        up
    }

    fn start_command(subcommand: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("up.log");
        let data = dir.path().join("data");
        let (child, kubeconfig) = spawn_serving(Path::new(FERROKUBE), subcommand, &data, &log, &[]);
        Self { child, controller_manager: None, kubeconfig, log, dir }
    }

    /// The last few KB of the process log.
    pub fn log_tail(&self) -> String {
        file_tail(&self.log, 5000)
    }

    /// `kubectl --kubeconfig ... ARGS`.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(kubectl_bin());
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        run_with_timeout(cmd, None, KUBECTL_TIMEOUT)
    }

    /// kubectl that must succeed; its stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(out.status.success(), "kubectl {args:?} failed:\n{}\nlog:\n{}", show(&out), self.log_tail());
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl get ARGS -o json`, parsed.
    pub fn get_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.kubectl_ok(&all)).expect("kubectl -o json prints JSON")
    }

    /// The items of `kubectl get KIND -n NS [-l SELECTOR] -o json`.
    pub fn items(&self, kind: &str, ns: &str, selector: Option<&str>) -> Vec<Value> {
        let mut args = vec![kind, "-n", ns];
        if let Some(s) = selector {
            args.extend(["-l", s]);
        }
        self.get_json(&args)["items"].as_array().cloned().unwrap_or_default()
    }

    /// Polls `f` every 200 ms until it returns Some; after `timeout` panics with `what`, the
    /// last value `describe` gives and the log tail.
    pub fn wait_for<T>(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            match f() {
                Ok(t) => return t,
                Err(last) if Instant::now() >= deadline => {
                    panic!("timed out after {timeout:?} waiting for {what}; last: {last}\nlog:\n{}", self.log_tail())
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// The PIDs of the running containers of the pods `selector` picks in `ns` (the process
    /// runtime's containerID is `process://PID`).
    pub fn pod_pids(&self, ns: &str, selector: &str) -> Vec<u32> {
        self.items("pods", ns, Some(selector)).iter().flat_map(container_pids).collect()
    }

    /// SIGTERM to `up` (and the split controller-manager); waits (bounded) for the exit.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        if let Some(cm) = self.controller_manager.as_mut() {
            stop(cm);
        }
        stop(&mut self.child)
    }
}

/// The PIDs in the containerIDs of a pod's running containers.
pub fn container_pids(pod: &Value) -> Vec<u32> {
    let statuses = pod["status"]["containerStatuses"].as_array().cloned().unwrap_or_default();
    statuses
        .iter()
        .filter(|c| c["state"]["running"].is_object())
        .filter_map(|c| c["containerID"].as_str()?.strip_prefix("process://")?.parse().ok())
        .collect()
}

/// Whether a process with this PID exists (a zombie counts as gone).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit(')').next().and_then(|r| r.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

/// The live processes whose process group is their own PID and whose cwd is under `dir`: the
/// pods' main processes (the kubelet starts each in its own group, in its pod directory).
fn pod_group_leaders(dir: &Path) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd")) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
        let leader = fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pid);
        if cwd.starts_with(dir) && leader && fields.first() != Some(&"Z") {
            found.push(pid);
        }
    }
    found
}

/// SIGTERM by PID, then SIGKILL if it has not exited within 20 s (the kubelet in `up` gives its
/// pods 10 s before it kills them). A child already reaped is left alone: its PID may be reused.
fn stop(child: &mut Child) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let status = wait_exit(child, Duration::from_secs(20));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    status
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Some(cm) = self.controller_manager.as_mut() {
            stop(cm);
        }
        stop(&mut self.child);
        // A test that failed half-way, or an `up` that had to be SIGKILLed, must not leave pods
        // running: they are the process groups started in this test's data dir.
        for pid in pod_group_leaders(self.dir.path()) {
            eprintln!("killing pod process group {pid} left running");
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).status();
        }
        if std::thread::panicking() {
            eprintln!("--- ferrokube up log tail ---\n{}", self.log_tail());
        }
    }
}
