//! End to end: the scheduler inside the real `ferrokube up` (and as `ferrokube scheduler` next
//! to `ferrokube apiserver`), driven with kubectl 1.37 from the venv `.ci/setup` creates.
//! There is no kubelet: the tests register Node objects themselves, with an allocatable and a
//! Ready condition, as a kubelet would.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{file_tail, run_with_timeout, show, spawn_serving, FERROKUBE};
use serde_json::{json, Value};

/// Bound on one kubectl run.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on waiting for the scheduler to get somewhere.
const WAIT: Duration = Duration::from_secs(30);

fn kubectl_bin() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let p = Path::new(&home).join(".cache/ferrokube-venv/bin/kubectl");
    assert!(p.exists(), "{} not found: run .ci/setup", p.display());
    p
}

/// A `ferrokube` server child (`up`, or `apiserver`); dropping it stops it by PID.
struct Cluster {
    child: Child,
    kubeconfig: PathBuf,
    log: PathBuf,
    /// Holds the data dir and log until the cluster is dropped.
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// `ferrokube SUBCOMMAND` on a fresh data dir and a free port, once it serves.
    fn start(subcommand: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        let data = dir.path().join("data");
        let (child, kubeconfig) = spawn_serving(Path::new(FERROKUBE), subcommand, &data, &log, &[]);
        Self {
            child,
            kubeconfig,
            log,
            _dir: dir,
        }
    }

    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        let mut cmd = Command::new(kubectl_bin());
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        run_with_timeout(cmd, stdin, CLIENT_TIMEOUT)
    }

    fn kubectl_ok(&self, args: &[&str]) -> String {
        self.kubectl_stdin_ok(args, None)
    }

    fn kubectl_stdin_ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\n{}\nserver log:\n{}",
            show(&out),
            file_tail(&self.log, 3000)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl create -f -` of these objects.
    fn create(&self, objects: &[Value]) {
        let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
        self.kubectl_stdin_ok(&["create", "-f", "-"], Some(&list.to_string()));
    }

    fn get_json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.kubectl_ok(&all)).expect("kubectl -o json prints JSON")
    }

    /// Pod name → node name ("" when unbound), in the default namespace.
    fn placements(&self) -> BTreeMap<String, String> {
        let pods = self.get_json(&["get", "pods"]);
        pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let name = p["metadata"]["name"].as_str().unwrap().to_string();
                (
                    name,
                    p["spec"]["nodeName"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// Polls `check` until it returns Some, for at most [`WAIT`].
    fn wait_for<T>(&self, what: &str, mut check: impl FnMut(&Self) -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(v) = check(self) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {WAIT:?} waiting for {what}\nserver log:\n{}",
                file_tail(&self.log, 4000)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The events about a pod with this reason, as (type, message).
    fn events(&self, pod: &str, reason: &str) -> Vec<(String, String)> {
        let selector = format!("involvedObject.name={pod},reason={reason}");
        let events = self.get_json(&["get", "events", "--field-selector", &selector]);
        events["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["type"].as_str().unwrap_or("").to_string(),
                    e["message"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// The pod's PodScheduled condition as (status, reason, message).
    fn scheduled_condition(&self, pod: &str) -> Option<(String, String, String)> {
        let p = self.get_json(&["get", "pod", pod]);
        let conditions = p["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        conditions
            .iter()
            .find(|c| c["type"] == "PodScheduled")
            .map(|c| {
                let s = |k: &str| c[k].as_str().unwrap_or("").to_string();
                (s("status"), s("reason"), s("message"))
            })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        if common::wait_exit(&mut self.child, Duration::from_secs(10)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A Node as a kubelet would register it: allocatable cpu, 8Gi memory, 110 pods, Ready.
fn node(name: &str, cpu: &str, extra: Value) -> Value {
    let mut n = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {},
        "status": {
            "capacity": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status"}],
        },
    });
    merge(&mut n, &extra);
    n
}

/// A pod requesting `cpu` (none when empty).
fn pod(name: &str, cpu: &str, extra: Value) -> Value {
    let resources = if cpu.is_empty() {
        json!({})
    } else {
        json!({"requests": {"cpu": cpu}})
    };
    let mut p = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": "busybox", "resources": resources}]},
    });
    merge(&mut p, &extra);
    p
}

/// JSON merge of `patch` into `target` (objects merge, everything else replaces).
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn count_by_node(placements: &BTreeMap<String, String>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for node in placements.values() {
        *counts.entry(node.clone()).or_insert(0) += 1;
    }
    counts
}

#[test]
fn a_burst_of_pods_fills_nodes_to_capacity_and_the_rest_waits_for_a_bigger_node() {
    let (c, _scheduler) = Cluster::with_scheduler();
    // Pods first: with no node at all they wait, with kube's message.
    let pods: Vec<Value> = (0..21)
        .map(|i| pod(&format!("p{i:02}"), "500m", json!({})))
        .collect();
    c.create(&pods);
    let condition = c.wait_for("PodScheduled=False without nodes", |c| {
        c.scheduled_condition("p00").filter(|(s, ..)| s == "False")
    });
    assert_eq!(
        condition,
        (
            "False".into(),
            "Unschedulable".into(),
            "no nodes available to schedule pods".into()
        )
    );

    // Room for 4 + 6 + 10 = 20 pods of 500m; node status must survive the create. The waiting
    // pods are placed in few passes, so this checks the accounting within one pass too.
    c.create(&[
        node("small", "2", json!({})),
        node("medium", "3", json!({})),
        node("large", "5", json!({})),
    ]);
    let alloc = c.kubectl_ok(&[
        "get",
        "node",
        "large",
        "-o",
        "jsonpath={.status.allocatable.cpu}",
    ]);
    assert_eq!(alloc, "5", "node status is kept on create");
    let placements = c.wait_for("20 of 21 pods bound", |c| {
        let p = c.placements();
        (p.values().filter(|n| !n.is_empty()).count() == 20).then_some(p)
    });
    let counts = count_by_node(&placements);
    let expected: BTreeMap<String, usize> = [
        ("".to_string(), 1),
        ("large".into(), 10),
        ("medium".into(), 6),
        ("small".into(), 4),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        counts, expected,
        "every node filled exactly to its cpu, never beyond: {placements:?}"
    );

    // kubectl sees the binding and its event.
    let (bound_pod, bound_node) = placements.iter().find(|(_, n)| !n.is_empty()).unwrap();
    let node_name = c.kubectl_ok(&["get", "pod", bound_pod, "-o", "jsonpath={.spec.nodeName}"]);
    assert_eq!(&node_name, bound_node);
    let expected_event = (
        "Normal".to_string(),
        format!("Successfully assigned default/{bound_pod} to {bound_node}"),
    );
    c.wait_for("the Scheduled event", |c| {
        c.events(bound_pod, "Scheduled")
            .contains(&expected_event)
            .then_some(())
    });
    let (cond_status, ..) = c
        .scheduled_condition(bound_pod)
        .expect("a bound pod has PodScheduled");
    assert_eq!(cond_status, "True");

    // The 21st waits, saying why, as kube-scheduler would.
    let waiting = placements
        .iter()
        .find(|(_, n)| n.is_empty())
        .unwrap()
        .0
        .clone();
    let message = "0/3 nodes are available: 3 Insufficient cpu.";
    let condition = c.wait_for("PodScheduled=False", |c| {
        c.scheduled_condition(&waiting)
            .filter(|(s, ..)| s == "False")
    });
    assert_eq!(
        condition,
        ("False".into(), "Unschedulable".into(), message.into())
    );
    // Earlier passes may have said other things (no nodes yet, fewer nodes); this one is said once.
    let said = |c: &Cluster| {
        c.events(&waiting, "FailedScheduling")
            .into_iter()
            .filter(|(_, m)| m == message)
            .collect::<Vec<_>>()
    };
    let events = c.wait_for("a FailedScheduling event", |c| {
        Some(said(c)).filter(|e| !e.is_empty())
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        said(&c),
        [("Warning".to_string(), message.to_string())],
        "one event, not one per pass: {events:?}"
    );
    let phase = c.kubectl_ok(&["get", "pod", &waiting, "-o", "jsonpath={.status.phase}"]);
    assert!(phase.is_empty() || phase == "Pending", "{phase}");

    // A node with room appears: the waiting pod goes there without being touched.
    c.create(&[node("extra", "1", json!({}))]);
    let node_of_waiting = c.wait_for("the waiting pod bound after a node was added", |c| {
        Some(c.kubectl_ok(&["get", "pod", &waiting, "-o", "jsonpath={.spec.nodeName}"]))
            .filter(|n| !n.is_empty())
    });
    assert_eq!(node_of_waiting, "extra");
    let (cond_status, ..) = c.scheduled_condition(&waiting).unwrap();
    assert_eq!(cond_status, "True");
}

#[test]
fn node_selectors_taints_readiness_and_cordons_are_honoured() {
    let (c, _scheduler) = Cluster::with_scheduler();
    c.create(&[
        node("plain", "4", json!({})),
        node("ssd", "4", json!({"metadata": {"labels": {"disk": "ssd"}}})),
        node("gpu", "4", json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}})),
        node("cordoned", "4", json!({"spec": {"unschedulable": true}})),
        node("down", "4", json!({"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady"}]}})),
    ]);
    let mut pods = vec![
        pod(
            "wants-ssd",
            "",
            json!({"spec": {"nodeSelector": {"disk": "ssd"}}}),
        ),
        pod(
            "wants-gpu",
            "",
            json!({"spec": {
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}],
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["gpu"]}]}]}}},
            }}),
        ),
        pod(
            "wants-hdd",
            "",
            json!({"spec": {"nodeSelector": {"disk": "hdd"}}}),
        ),
    ];
    pods.extend((0..8).map(|i| pod(&format!("any{i}"), "100m", json!({}))));
    c.create(&pods);
    let placements = c.wait_for("10 pods bound", |c| {
        let p = c.placements();
        (p.values().filter(|n| !n.is_empty()).count() == 10).then_some(p)
    });
    assert_eq!(placements["wants-ssd"], "ssd");
    assert_eq!(placements["wants-gpu"], "gpu");
    assert_eq!(placements["wants-hdd"], "");
    for i in 0..8 {
        let n = &placements[&format!("any{i}")];
        assert!(
            n == "plain" || n == "ssd",
            "any{i} went to {n}: only plain and ssd take untolerating pods"
        );
    }
    let counts = count_by_node(&placements);
    assert!(
        counts.get("plain").copied().unwrap_or(0) >= 3,
        "least-allocated spreads the pods: {counts:?}"
    );

    // kube's message: one reason per node, counted, sorted.
    let message = "0/5 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, \
                   1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, 1 node(s) were unschedulable, \
                   2 node(s) didn't match Pod's node affinity/selector.";
    let condition = c.wait_for("wants-hdd unschedulable", |c| {
        c.scheduled_condition("wants-hdd")
            .filter(|(s, ..)| s == "False")
    });
    assert_eq!(
        condition,
        ("False".into(), "Unschedulable".into(), message.into())
    );

    // kubectl cordon: new pods avoid the node; its pods stay.
    c.kubectl_ok(&["cordon", "plain"]);
    let on_plain_before = counts.get("plain").copied().unwrap_or(0);
    c.create(
        &(0..3)
            .map(|i| pod(&format!("late{i}"), "100m", json!({})))
            .collect::<Vec<_>>(),
    );
    let placements = c.wait_for("the late pods bound", |c| {
        let p = c.placements();
        (0..3)
            .all(|i| !p[&format!("late{i}")].is_empty())
            .then_some(p)
    });
    for i in 0..3 {
        assert_eq!(placements[&format!("late{i}")], "ssd", "plain is cordoned");
    }
    assert_eq!(
        count_by_node(&placements)
            .get("plain")
            .copied()
            .unwrap_or(0),
        on_plain_before
    );

    // Labelling a node is a change too: the waiting pod goes to the node that now matches.
    c.kubectl_ok(&["label", "node", "plain", "disk=hdd"]);
    c.kubectl_ok(&["uncordon", "plain"]);
    let n = c.wait_for("wants-hdd bound after labelling and uncordoning", |c| {
        Some(c.kubectl_ok(&["get", "pod", "wants-hdd", "-o", "jsonpath={.spec.nodeName}"]))
            .filter(|n| !n.is_empty())
    });
    assert_eq!(n, "plain");

    // A node that turns Ready (its kubelet would patch nodes/status) takes pods again.
    let to_down = json!({"spec": {"nodeSelector": {"kubernetes.io/hostname": "down"}}});
    c.create(&[pod("wants-down", "", to_down)]);
    let condition = c.wait_for("wants-down unschedulable", |c| {
        c.scheduled_condition("wants-down")
            .filter(|(s, ..)| s == "False")
    });
    assert!(
        condition
            .2
            .contains("1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }"),
        "{condition:?}"
    );
    let ready = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}});
    c.kubectl_ok(&[
        "patch",
        "node",
        "down",
        "--subresource=status",
        "--type=merge",
        "-p",
        &ready.to_string(),
    ]);
    let n = c.wait_for("wants-down bound once its node is Ready", |c| {
        Some(c.kubectl_ok(&[
            "get",
            "pod",
            "wants-down",
            "-o",
            "jsonpath={.spec.nodeName}",
        ]))
        .filter(|n| !n.is_empty())
    });
    assert_eq!(n, "down");
}

#[test]
fn the_scheduler_runs_as_its_own_process_and_stops_on_sigterm() {
    let c = Cluster::start("apiserver");
    c.create(&[node("only", "1", json!({}))]);
    c.create(&[pod("early", "250m", json!({}))]);
    // Nothing schedules in a bare apiserver.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(c.placements()["early"], "");

    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("scheduler.log");
    let mut scheduler = Process(
        Command::new(FERROKUBE)
            .args(["scheduler", "--kubeconfig", c.kubeconfig.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawning ferrokube scheduler"),
    );
    let bound = c.wait_for("the pod bound by ferrokube scheduler", |c| {
        Some(c.placements()).filter(|p| p["early"] == "only")
    });
    assert_eq!(bound["early"], "only");
    // Too big for the node: stays pending.
    c.create(&[pod("huge", "2", json!({}))]);
    let condition = c.wait_for("huge unschedulable", |c| {
        c.scheduled_condition("huge").filter(|(s, ..)| s == "False")
    });
    assert_eq!(condition.2, "0/1 nodes are available: 1 Insufficient cpu.");

    // Even with its apiserver gone (watches retrying), SIGTERM stops it promptly and cleanly.
    drop(c);
    std::thread::sleep(Duration::from_secs(1));
    let _ = Command::new("kill")
        .args(["-TERM", &scheduler.0.id().to_string()])
        .status();
    let status = common::wait_exit(&mut scheduler.0, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no exit within 10 s of SIGTERM\n{}", file_tail(&log, 3000)));
    assert!(status.success(), "{status:?}\n{}", file_tail(&log, 3000));
}

/// A child process killed (by PID) when the test ends, however it ends.
struct Process(Child);

impl Cluster {
    /// `ferrokube apiserver` with `ferrokube scheduler` next to it: the nodes are exactly the
    /// ones a test registers (`up` would add its kubelet's node).
    fn with_scheduler() -> (Self, Process) {
        let c = Cluster::start("apiserver");
        let scheduler = Process(
            Command::new(FERROKUBE)
                .args(["scheduler", "--kubeconfig", c.kubeconfig.to_str().unwrap()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(c.log.with_file_name("scheduler.log")).unwrap())
                .spawn()
                .expect("spawning ferrokube scheduler"),
        );
        (c, scheduler)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn a_bad_kubeconfig_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.yaml");
    let out = common::run_ferrokube(
        &["scheduler", "--kubeconfig", missing.to_str().unwrap()],
        Duration::from_secs(30),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ferrokube: error: reading") && stderr.contains("nope.yaml"),
        "{}",
        show(&out)
    );
}
