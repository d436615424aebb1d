//! End to end: the kubelet inside the real `ferrokube up`, driven with kubectl 1.37 from the
//! venv `.ci/setup` creates. Pods are bound by setting `spec.nodeName` (no scheduler needed)
//! and run as host processes (/bin/sh, sleep, echo only).
//!
//! `FERROKUBE_BIN` overrides the binary under test (a hard link of it, when other builds
//! share the target directory and may replace `target/debug/ferrokube` meanwhile).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{file_tail, poll, run_with_timeout, show, spawn_serving, wait_exit};

/// Bound on one kubectl run.
const KUBECTL_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on any state the test waits for.
const WAIT: Duration = Duration::from_secs(30);

fn ferrokube() -> PathBuf {
    std::env::var_os("FERROKUBE_BIN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(common::FERROKUBE))
}

fn kubectl_bin() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let p = Path::new(&home).join(".cache/ferrokube-venv/bin/kubectl");
    assert!(p.exists(), "{} not found: run .ci/setup", p.display());
    p
}

/// Whether a process with this PID exists (a zombie counts as gone).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit(')').next().and_then(|r| r.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

/// PIDs of the live processes in process group `pgid` (from /proc/*/stat, field 5).
fn group_members(pgid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
        if fields.first() != Some(&"Z") && fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid) {
            found.push(pid);
        }
    }
    found
}

/// Kills (by PID) the process groups of pods this test saw, should it fail half-way.
#[derive(Default)]
struct PodProcesses(Vec<u32>);

impl PodProcesses {
    fn track(&mut self, pid: u32) -> u32 {
        self.0.push(pid);
        pid
    }
}

impl Drop for PodProcesses {
    fn drop(&mut self) {
        for &pgid in &self.0 {
            if !group_members(pgid).is_empty() {
                let _ = Command::new("kill").args(["-KILL", "--", &format!("-{pgid}")]).status();
            }
        }
    }
}

/// One `ferrokube up` (or `apiserver`) child process; dropping it stops it (SIGTERM, then
/// SIGKILL, by PID).
struct Up {
    child: Option<Child>,
    subcommand: &'static str,
    kubeconfig: PathBuf,
    log: PathBuf,
    data: PathBuf,
    _dir: tempfile::TempDir,
}

impl Up {
    /// `ferrokube up` on a fresh data dir and a free port.
    fn start(extra: &[&str]) -> Self {
        Self::start_command("up", extra)
    }

    /// `ferrokube SUBCOMMAND` (`up` or `apiserver`) on a fresh data dir and a free port.
    fn start_command(subcommand: &'static str, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut up = Up { child: None, subcommand, kubeconfig: data.join("kubeconfig"), log: dir.path().join("up.log"), data, _dir: dir };
        up.spawn(extra);
        up
    }

    /// Starts `ferrokube up` on this data dir (again), waiting until it serves.
    fn spawn(&mut self, extra: &[&str]) {
        assert!(self.child.is_none());
        let (child, _) = spawn_serving(&ferrokube(), self.subcommand, &self.data, &self.log, extra);
        self.child = Some(child);
    }

    /// SIGTERM by PID; waits (bounded) for the exit.
    fn terminate(&mut self) {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let status = wait_exit(&mut child, WAIT);
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ferrokube up did not exit within {WAIT:?} of SIGTERM:\n{}", file_tail(&self.log, 4000));
        }
        assert!(status.unwrap().success(), "ferrokube up exited with {status:?}:\n{}", file_tail(&self.log, 4000));
    }

    /// SIGKILL by PID: nothing of ours gets to clean up.
    fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        let _ = child.wait();
    }

    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(kubectl_bin());
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        run_with_timeout(cmd, stdin, KUBECTL_TIMEOUT)
    }

    fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args, None);
        assert!(out.status.success(), "kubectl {args:?} failed:\n{}\nlog:\n{}", show(&out), file_tail(&self.log, 3000));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn apply(&self, manifest: &str) {
        let out = self.kubectl(&["apply", "-f", "-"], Some(manifest));
        assert!(out.status.success(), "kubectl apply failed:\n{}\nlog:\n{}", show(&out), file_tail(&self.log, 3000));
    }

    /// `kubectl get pod NAME -o jsonpath=PATH` ("" while the pod or the field is missing).
    fn pod_field(&self, name: &str, path: &str) -> String {
        let out = self.kubectl(&["get", "pod", name, "-o", &format!("jsonpath={path}")], None);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the pod's field has `want`.
    fn wait_pod_field(&self, name: &str, path: &str, want: &str) {
        let mut last = String::new();
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            last = self.pod_field(name, path);
            if last == want {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let yaml = self.kubectl(&["get", "pod", name, "-o", "yaml"], None);
        panic!(
            "pod {name} {path}: wanted {want:?}, still {last:?} after {WAIT:?}\n{}\nlog:\n{}",
            String::from_utf8_lossy(&yaml.stdout),
            file_tail(&self.log, 3000)
        );
    }

    /// The PID of the pod's first container (its containerID is `process://PID`).
    fn container_pid(&self, name: &str) -> u32 {
        let id = self.pod_field(name, "{.status.containerStatuses[0].containerID}");
        id.strip_prefix("process://").and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("pod {name}: containerID {id:?}"))
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            if wait_exit(&mut child, Duration::from_secs(20)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn pod_manifest(name: &str, node: &str, policy: &str, script: &str) -> String {
    format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "{name}"}},
            "spec": {{"nodeName": "{node}", "restartPolicy": "{policy}", "terminationGracePeriodSeconds": 30,
              "containers": [{{"name": "main", "image": "busybox", "command": ["sh", "-c", "{script}"]}}]}}}}"#
    )
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_lowercase()
}

/// `ferrokube up`'s kubelet registers the host as a Ready node, runs pods bound to it, reports
/// exits, restarts per policy, completes deletions, and stops its processes when `up` stops.
#[test]
fn up_runs_pods_on_its_node() {
    let mut up = Up::start(&[]);
    let mut procs = PodProcesses::default();
    let node = hostname();

    // The node: Ready, labelled, with a lease.
    poll("the node to be Ready", WAIT, || {
        let out = up.kubectl(&["get", "nodes", "--no-headers"], None);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines().any(|l| l.split_whitespace().take(2).eq([node.as_str(), "Ready"])).then_some(())
    });
    let labels = up.kubectl_ok(&["get", "node", &node, "-o", "jsonpath={.metadata.labels}"]);
    assert!(
        labels.contains(&format!(r#""kubernetes.io/hostname":"{node}""#)) && labels.contains(r#""kubernetes.io/os":"linux""#),
        "{labels}"
    );
    let info = up.kubectl_ok(&["get", "node", &node, "-o", "jsonpath={.status.nodeInfo.containerRuntimeVersion} {.status.capacity.pods}"]);
    assert_eq!(info, "process://ferrokube 110");
    let holder = up.kubectl_ok(&["get", "lease", &node, "-n", "kube-node-lease", "-o", "jsonpath={.spec.holderIdentity}"]);
    assert_eq!(holder, node);

    up.apply(&pod_manifest("sleeper", &node, "Always", "echo hi; sleep 3600"));
    up.apply(&pod_manifest("fails", &node, "Never", "exit 3"));
    up.apply(&pod_manifest("retries", &node, "OnFailure", "exit 3"));
    up.apply(&format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "no-command"}},
            "spec": {{"nodeName": "{node}", "containers": [{{"name": "main", "image": "nginx", "args": ["serve"]}}]}}}}"#
    ));

    // Running, for real: its process lives and wrote to its log.
    up.wait_pod_field("sleeper", "{.status.phase}", "Running");
    up.wait_pod_field("sleeper", "{.status.conditions[?(@.type=='Ready')].status}", "True");
    let pid = procs.track(up.container_pid("sleeper"));
    assert!(alive(pid), "the sleeper's process {pid} runs");
    let uid = up.pod_field("sleeper", "{.metadata.uid}");
    let log = up.data.join("kubelet/pods").join(&uid).join("main.log");
    poll("hi in the sleeper's log", WAIT, || std::fs::read_to_string(&log).ok().filter(|l| l.contains("hi")));
    assert_eq!(up.pod_field("sleeper", "{.status.podIP}"), "127.0.0.1");
    // Nothing changes, so nothing is written.
    let rv = up.pod_field("sleeper", "{.metadata.resourceVersion}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(up.pod_field("sleeper", "{.metadata.resourceVersion}"), rv, "a running pod's status is not rewritten");

    // Never: Failed with the exit code.
    up.wait_pod_field("fails", "{.status.phase}", "Failed");
    let term = up.pod_field(
        "fails",
        "{.status.containerStatuses[0].state.terminated.exitCode} {.status.containerStatuses[0].state.terminated.reason}",
    );
    assert_eq!(term, "3 Error");

    // OnFailure: restarted (after the 10 s back-off), and waiting in CrashLoopBackOff between.
    poll("the OnFailure pod to restart", Duration::from_secs(45), || {
        let n: i32 = up.pod_field("retries", "{.status.containerStatuses[0].restartCount}").parse().unwrap_or(0);
        (n >= 1).then_some(())
    });
    assert_eq!(up.pod_field("retries", "{.status.containerStatuses[0].lastState.terminated.exitCode}"), "3");
    assert_ne!(up.pod_field("retries", "{.status.phase}"), "Failed");

    // No command: nothing to run, said clearly.
    up.wait_pod_field("no-command", "{.status.containerStatuses[0].state.waiting.reason}", "CreateContainerConfigError");
    let message = up.pod_field("no-command", "{.status.containerStatuses[0].state.waiting.message}");
    assert!(message.contains("no image entrypoint"), "{message}");
    assert_eq!(up.pod_field("no-command", "{.status.phase}"), "Pending");

    // kubectl delete waits for the pod to be gone: the kubelet stops it and deletes it.
    let started = Instant::now();
    up.kubectl_ok(&["delete", "pod", "sleeper", "--timeout=20s"]);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(8), "kubectl delete pod took {took:?}");
    poll("the sleeper's processes to be gone", Duration::from_secs(5), || group_members(pid).is_empty().then_some(()));
    let out = up.kubectl(&["get", "pod", "sleeper"], None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("NotFound"), "{}", show(&out));

    // Deleting a namespace: the namespace controller deletes its pods gracefully, the kubelet
    // stops and removes them, then the namespace goes.
    up.kubectl_ok(&["create", "namespace", "doomed"]);
    let doomed = pod_manifest("inside", &node, "Always", "sleep 3600")
        .replace(r#""name": "inside"}"#, r#""name": "inside", "namespace": "doomed"}"#);
    up.apply(&doomed);
    let path = "jsonpath={.status.containerStatuses[0].containerID}";
    let pid = poll("the pod in the namespace to run", WAIT, || {
        let out = up.kubectl(&["get", "pod", "inside", "-n", "doomed", "-o", path], None);
        String::from_utf8_lossy(&out.stdout).strip_prefix("process://").and_then(|p| p.parse::<u32>().ok())
    });
    let inside = procs.track(pid);
    up.kubectl_ok(&["delete", "namespace", "doomed", "--timeout=30s"]);
    assert!(group_members(inside).is_empty(), "the namespace's pod process outlived it");

    // Stopping `up` stops the pods' processes.
    up.apply(&pod_manifest("sleeper2", &node, "Always", "sleep 3600"));
    up.wait_pod_field("sleeper2", "{.status.phase}", "Running");
    let pid2 = procs.track(up.container_pid("sleeper2"));
    assert!(alive(pid2));
    up.terminate();
    assert!(group_members(pid2).is_empty(), "pod processes left after up stopped: {:?}", group_members(pid2));
}

/// A kubelet killed with SIGKILL leaves its pods' processes behind; the next one kills them
/// (it cannot adopt them) and restarts per policy: Always runs again with restartCount 1,
/// Never ends Failed with ContainerStatusUnknown.
#[test]
fn a_restarted_kubelet_kills_the_processes_it_left() {
    let mut up = Up::start(&["--node-name", "e2e-restart"]);
    let mut procs = PodProcesses::default();
    up.apply(&pod_manifest("always", "e2e-restart", "Always", "sleep 3600"));
    up.apply(&pod_manifest("never", "e2e-restart", "Never", "sleep 3600"));
    up.wait_pod_field("always", "{.status.phase}", "Running");
    up.wait_pod_field("never", "{.status.phase}", "Running");
    let always = procs.track(up.container_pid("always"));
    let never = procs.track(up.container_pid("never"));

    up.kill9();
    assert!(alive(always) && alive(never), "SIGKILL of the kubelet leaves its processes running");
    up.spawn(&["--node-name", "e2e-restart"]);
    poll("the left-over processes to be killed", WAIT, || {
        (group_members(always).is_empty() && group_members(never).is_empty()).then_some(())
    });

    up.wait_pod_field("never", "{.status.phase}", "Failed");
    assert_eq!(up.pod_field("never", "{.status.containerStatuses[0].state.terminated.reason}"), "ContainerStatusUnknown");
    poll("the Always pod to run again", Duration::from_secs(45), || {
        let restarts = up.pod_field("always", "{.status.containerStatuses[0].restartCount}");
        let running = up.pod_field("always", "{.status.containerStatuses[0].state.running.startedAt}");
        (restarts == "1" && !running.is_empty()).then_some(())
    });
    let again = procs.track(up.container_pid("always"));
    assert_ne!(again, always);
    assert!(alive(again));
    up.terminate();
    assert!(group_members(again).is_empty());
}

/// `ferrokube kubelet` as its own process against `ferrokube apiserver` (no kubelet of its
/// own): it registers the node it is told, runs a pod's init container then its container
/// with field references in its environment, and SIGTERM stops it and the pod's process.
#[test]
fn kubelet_command_joins_a_separate_apiserver() {
    let api = Up::start_command("apiserver", &[]);
    let mut procs = PodProcesses::default();
    let root = api.data.parent().unwrap().join("kubelet-root");
    let log = api.data.parent().unwrap().join("kubelet.log");
    let mut cmd = Command::new(ferrokube());
    cmd.args(["kubelet", "--kubeconfig", api.kubeconfig.to_str().unwrap(), "--node-name", "solo", "--root-dir", root.to_str().unwrap()]);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(std::fs::File::create(&log).unwrap());
    let mut kubelet = cmd.spawn().expect("spawning ferrokube kubelet");
    let guard = KillOnDrop(kubelet.id());

    poll("node solo to be Ready", WAIT, || {
        let s = api.kubectl(&["get", "node", "solo", "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}"], None);
        (String::from_utf8_lossy(&s.stdout) == "True").then_some(())
    });
    api.apply(
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "env", "labels": {"app": "demo"}},
            "spec": {"nodeName": "solo",
              "initContainers": [{"name": "setup", "image": "busybox", "command": ["sh", "-c", "echo setting up"]}],
              "containers": [{"name": "main", "image": "busybox",
              "command": ["sh", "-c", "echo $POD in $NS at $IP for $(APP); sleep 3600"],
              "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                      {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                      {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                      {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}}]}]}}"#,
    );
    api.wait_pod_field("env", "{.status.phase}", "Running");
    let pid = procs.track(api.container_pid("env"));
    let uid = api.pod_field("env", "{.metadata.uid}");
    let pod_log = root.join("pods").join(uid).join("main.log");
    poll("the pod's greeting in its log", WAIT, || {
        std::fs::read_to_string(&pod_log).ok().filter(|l| l.contains("env in default at 127.0.0.1 for demo"))
    });
    // The init container ran first, to completion.
    assert_eq!(api.pod_field("env", "{.status.initContainerStatuses[0].state.terminated.reason}"), "Completed");
    assert_eq!(api.pod_field("env", "{.status.conditions[?(@.type=='Initialized')].status}"), "True");
    let setup_log = std::fs::read_to_string(pod_log.with_file_name("setup.log")).unwrap_or_default();
    assert_eq!(setup_log.trim(), "setting up");

    let _ = Command::new("kill").args(["-TERM", &kubelet.id().to_string()]).status();
    let status = wait_exit(&mut kubelet, WAIT).unwrap_or_else(|| panic!("kubelet ignored SIGTERM:\n{}", file_tail(&log, 3000)));
    assert!(status.success(), "kubelet exited with {status:?}:\n{}", file_tail(&log, 3000));
    drop(guard);
    assert!(group_members(pid).is_empty(), "the pod's processes outlived the kubelet");
}

/// Kills a child by PID when dropped (a test that fails half-way leaves nothing running).
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if alive(self.0) {
            let _ = Command::new("kill").args(["-KILL", &self.0.to_string()]).status();
        }
    }
}
