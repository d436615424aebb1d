//! End to end: the real `ferrokube apiserver` binary over HTTPS, driven by the official
//! Kubernetes Python client (pip `kubernetes`) and kubectl 1.37 from the venv `.ci/setup`
//! creates at `$HOME/.cache/ferrokube-venv` (`FERROKUBE_PYTHON` overrides the interpreter).

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{file_tail, run_with_timeout, show, spawn_serving, StoreProcess, FERROKUBE};

/// Bound on one Python or kubectl run.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

fn venv_bin(name: &str) -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    Path::new(&home).join(".cache/ferrokube-venv/bin").join(name)
}

fn python() -> PathBuf {
    let p = std::env::var("FERROKUBE_PYTHON").map(PathBuf::from).unwrap_or_else(|_| venv_bin("python"));
    assert!(p.exists(), "{} not found: run .ci/setup (it creates the venv with the kubernetes client)", p.display());
    p
}

/// One `ferrokube apiserver` child process; dropping it kills it by PID.
struct Apiserver {
    child: Child,
    kubeconfig: PathBuf,
    log: PathBuf,
    dir: tempfile::TempDir,
}

impl Apiserver {
    fn start(extra: &[&str]) -> Self {
        Self::start_command("apiserver", extra)
    }

    /// `ferrokube SUBCOMMAND` (`apiserver` or `up`) on a fresh data dir and a free port.
    fn start_command(subcommand: &str, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("apiserver.log");
        let data = dir.path().join("data");
        let (child, kubeconfig) = spawn_serving(Path::new(FERROKUBE), subcommand, &data, &log, extra);
        assert_eq!(kubeconfig, data.join("kubeconfig"));
        Self { child, kubeconfig, log, dir }
    }

    /// Runs a Python snippet (after a prelude with `v1`, `apps`, `expect_status`) against this
    /// apiserver; panics with its output and the server log if it fails.
    fn python(&self, script: &str, env: &[(&str, &str)]) -> String {
        let path = self.dir.path().join("test.py");
        std::fs::write(&path, format!("{PRELUDE}\n{script}")).unwrap();
        let mut cmd = Command::new(python());
        cmd.arg(&path).env("KUBECONFIG", &self.kubeconfig);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = run_with_timeout(cmd, None, CLIENT_TIMEOUT);
        assert!(out.status.success(), "python failed:\n{}\napiserver log:\n{}", show(&out), file_tail(&self.log, 3000));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn kubectl(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(venv_bin("kubectl"));
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        run_with_timeout(cmd, None, CLIENT_TIMEOUT)
    }

    fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(out.status.success(), "kubectl {args:?} failed:\n{}\napiserver log:\n{}", show(&out), file_tail(&self.log, 3000));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Apiserver {
    fn drop(&mut self) {
        // SIGTERM by PID for a graceful stop, then make sure.
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        if common::wait_exit(&mut self.child, Duration::from_secs(10)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

const PRELUDE: &str = r#"
import json, os, subprocess, sys, time
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException
config.load_kube_config(os.environ["KUBECONFIG"])
v1 = client.CoreV1Api()
apps = client.AppsV1Api()

def expect_status(code, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except ApiException as e:
        assert e.status == code, f"expected {code}, got {e.status}: {e.body}"
        return json.loads(e.body) if e.body else None
    raise AssertionError(f"expected HTTP {code}, the call succeeded")

def ns(name):
    v1.create_namespace({"metadata": {"name": name}})
    return name
"#;

#[test]
fn python_crud_in_a_namespace() {
    let api = Apiserver::start(&[]);
    api.python(
        r#"
n = ns("shop")
cm = v1.create_namespaced_config_map(n, {"metadata": {"name": "settings", "labels": {"app": "shop"}}, "data": {"a": "1"}})
assert cm.metadata.uid and cm.metadata.creation_timestamp and int(cm.metadata.resource_version) > 0
assert v1.read_namespaced_config_map("settings", n).data == {"a": "1"}
cm.data["b"] = "2"
cm = v1.replace_namespaced_config_map("settings", n, cm)
assert cm.data == {"a": "1", "b": "2"}
# The client's default patch type is strategic merge.
cm = v1.patch_namespaced_config_map("settings", n, {"data": {"c": "3"}})
assert cm.data == {"a": "1", "b": "2", "c": "3"}, cm.data
secret = v1.create_namespaced_secret(n, {"metadata": {"name": "pw"}, "string_data": {"password": "hunter2"}})
assert secret.data == {"password": "aHVudGVyMg=="}, secret.data
pod = v1.create_namespaced_pod(n, client.V1Pod(
    metadata=client.V1ObjectMeta(name="web", labels={"app": "web"}),
    spec=client.V1PodSpec(containers=[client.V1Container(name="app", image="nginx:1.27", ports=[client.V1ContainerPort(container_port=80)])])))
assert pod.status.phase == "Pending" and pod.spec.restart_policy == "Always"
pod = v1.patch_namespaced_pod("web", n, {"spec": {"containers": [{"name": "app", "image": "nginx:1.28"}]}})
assert [c.image for c in pod.spec.containers] == ["nginx:1.28"] and pod.spec.containers[0].ports[0].container_port == 80
st = v1.patch_namespaced_pod_status("web", n, {"status": {"phase": "Running", "podIP": "10.0.0.5"}})
assert st.status.phase == "Running" and st.status.pod_ip == "10.0.0.5"
svc = v1.create_namespaced_service(n, {"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})
assert svc.spec.ports[0].protocol == "TCP"
v1.create_namespaced_service_account(n, {"metadata": {"name": "robot"}})
d = apps.create_namespaced_deployment(n, {"metadata": {"name": "web"}, "spec": {
    "selector": {"matchLabels": {"app": "web"}},
    "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "nginx"}]}}}})
assert d.metadata.generation == 1 and d.spec.replicas == 1
scale = apps.patch_namespaced_deployment_scale("web", n, {"spec": {"replicas": 3}})
assert scale.spec.replicas == 3 and scale.status.selector == "app=web", scale
d = apps.read_namespaced_deployment("web", n)
assert d.metadata.generation == 2 and d.spec.replicas == 3
assert [p.metadata.name for p in v1.list_namespaced_pod(n).items] == ["web"]
assert len(v1.list_config_map_for_all_namespaces().items) >= 1
body = expect_status(422, v1.create_namespaced_config_map, n, {"metadata": {"name": "Not_Valid"}})
assert body["reason"] == "Invalid" and body["details"]["causes"][0]["field"] == "metadata.name", body
expect_status(409, v1.create_namespaced_config_map, n, {"metadata": {"name": "settings"}})
expect_status(404, v1.read_namespaced_config_map, "missing", n)
expect_status(404, v1.create_namespaced_config_map, "no-such-ns", {"metadata": {"name": "x"}})
v1.delete_namespaced_config_map("settings", n)
deleted = v1.delete_namespaced_pod("web", n)
expect_status(404, v1.read_namespaced_config_map, "settings", n)
expect_status(404, v1.read_namespaced_pod, "web", n)
apps.delete_namespaced_deployment("web", n)
# Deleting the namespace leaves it Terminating (the namespace controller empties it later).
v1.delete_namespace(n)
assert v1.read_namespace(n).status.phase == "Terminating"
expect_status(403, v1.create_namespaced_config_map, n, {"metadata": {"name": "late"}})
print("ok")
"#,
        &[],
    );
}

#[test]
fn python_stale_update_is_a_conflict() {
    let api = Apiserver::start(&[]);
    api.python(
        r#"
first = v1.create_namespaced_config_map("default", {"metadata": {"name": "c"}, "data": {"v": "0"}})
a = v1.read_namespaced_config_map("c", "default")
b = v1.read_namespaced_config_map("c", "default")
a.data["v"] = "a"
v1.replace_namespaced_config_map("c", "default", a)
b.data["v"] = "b"
body = expect_status(409, v1.replace_namespaced_config_map, "c", "default", b)
assert body["reason"] == "Conflict" and "the object has been modified" in body["message"], body
assert v1.read_namespaced_config_map("c", "default").data == {"v": "a"}
# A patch carrying the stale resourceVersion conflicts too; without one it applies.
expect_status(409, v1.patch_namespaced_config_map, "c", "default",
              {"metadata": {"resourceVersion": first.metadata.resource_version}, "data": {"v": "p"}})
assert v1.patch_namespaced_config_map("c", "default", {"data": {"v": "p"}}).data == {"v": "p"}
print("ok")
"#,
        &[],
    );
}

#[test]
fn python_typed_clients_of_every_api_group() {
    let api = Apiserver::start(&[]);
    api.python(
        r#"
t = {"metadata": {"labels": {"app": "w"}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.36"}]}}
job = client.BatchV1Api().create_namespaced_job("default", {"metadata": {"name": "j"}, "spec": {"template": t}})
assert job.spec.backoff_limit == 6 and job.spec.selector.match_labels, job.spec
body = expect_status(422, client.BatchV1Api().create_namespaced_job, "default",
                     {"metadata": {"name": "bad"}, "spec": {"template": dict(t, spec=dict(t["spec"], restartPolicy="Always"))}})
assert body["details"]["causes"][0]["field"] == "spec.template.spec.restartPolicy", body
cj = client.BatchV1Api().create_namespaced_cron_job("default", {"metadata": {"name": "cj"}, "spec": {"schedule": "@daily", "jobTemplate": {"spec": {"template": t}}}})
assert cj.spec.concurrency_policy == "Allow"
lease = client.CoordinationV1Api().create_namespaced_lease("default", {"metadata": {"name": "l"}, "spec": {"holderIdentity": "me", "leaseDurationSeconds": 15}})
assert client.CoordinationV1Api().read_namespaced_lease("l", "default").spec.holder_identity == "me"
client.DiscoveryV1Api().create_namespaced_endpoint_slice("default", {"metadata": {"name": "s"}, "addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"]}]})
assert len(client.DiscoveryV1Api().list_namespaced_endpoint_slice("default").items) == 1
client.NetworkingV1Api().create_namespaced_ingress("default", {"metadata": {"name": "i"}, "spec": {"rules": [{"host": "a.example", "http": {"paths": [
    {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}})
client.PolicyV1Api().create_namespaced_pod_disruption_budget("default", {"metadata": {"name": "p"}, "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "w"}}}})
hpa = client.AutoscalingV2Api().create_namespaced_horizontal_pod_autoscaler("default",
    {"metadata": {"name": "h"}, "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 3}})
assert hpa.spec.min_replicas == 1
sts = apps.create_namespaced_stateful_set("default", {"metadata": {"name": "db"}, "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "w"}}, "template": t}})
assert apps.patch_namespaced_stateful_set_scale("db", "default", {"spec": {"replicas": 2}}).spec.replicas == 2
sel = {"matchLabels": {"app": "w"}}
apps.create_namespaced_replica_set("default", {"metadata": {"name": "rs"}, "spec": {"selector": sel, "template": t}})
apps.create_namespaced_daemon_set("default", {"metadata": {"name": "ds"}, "spec": {"selector": sel, "template": t}})
assert apps.read_namespaced_daemon_set_status("ds", "default").status.number_ready == 0
v1.create_namespaced_replication_controller("default", {"metadata": {"name": "rc"}, "spec": {"template": t}})
assert v1.read_namespaced_replication_controller_scale("rc", "default").status.selector == "app=w"
assert client.PolicyV1Api().read_namespaced_pod_disruption_budget("p", "default").status.disruptions_allowed == 0
v1.create_namespaced_persistent_volume_claim("default", {"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
v1.create_persistent_volume({"metadata": {"name": "pv"}, "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/tmp"}}})
assert [p.metadata.name for p in v1.list_persistent_volume().items] == ["pv"]
print("ok")
"#,
        &[],
    );
}

#[test]
fn python_list_pagination_and_label_selectors() {
    let api = Apiserver::start(&[]);
    api.python(
        r#"
n = ns("many")
for i in range(25):
    tier = ["fe", "be", "db"][i % 3]
    v1.create_namespaced_config_map(n, {"metadata": {"name": f"cm-{i:02d}", "labels": {"app": "shop", "tier": tier}}})
seen, token, rvs, pages = [], None, set(), 0
while True:
    page = v1.list_namespaced_config_map(n, limit=10, _continue=token)
    pages += 1
    seen += [i.metadata.name for i in page.items]
    rvs.add(page.metadata.resource_version)
    if pages == 1:
        v1.create_namespaced_config_map(n, {"metadata": {"name": "cm-99"}})  # after the list's revision
    token = page.metadata._continue
    if not token:
        break
assert pages == 3 and seen == [f"cm-{i:02d}" for i in range(25)], (pages, seen)
assert len(rvs) == 1, rvs
names = lambda sel: [i.metadata.name for i in v1.list_namespaced_config_map(n, label_selector=sel).items]
assert names("tier=db") == [f"cm-{i:02d}" for i in range(2, 25, 3)]
assert names("tier in (fe,db),app=shop") == [f"cm-{i:02d}" for i in range(25) if i % 3 != 1]
assert names("tier notin (fe,db),app") == [f"cm-{i:02d}" for i in range(1, 25, 3)]
assert names("!tier") == ["cm-99"]
assert names("tier!=fe,tier!=be,tier") == names("tier=db")
paged = v1.list_namespaced_config_map(n, label_selector="tier=fe", limit=4)
assert len(paged.items) == 4 and paged.metadata._continue
assert [i.metadata.name for i in v1.list_namespaced_config_map(n, field_selector="metadata.name=cm-07").items] == ["cm-07"]
expect_status(400, v1.list_namespaced_config_map, n, label_selector="tier in fe")
print("ok")
"#,
        &[],
    );
}

#[test]
fn python_watch_resumes_from_a_resource_version() {
    let api = Apiserver::start(&[]);
    api.python(
        r#"
n = ns("watched")
a = v1.create_namespaced_config_map(n, {"metadata": {"name": "a", "labels": {"w": "yes"}}})
start = a.metadata.resource_version
v1.patch_namespaced_config_map("a", n, {"data": {"k": "1"}})
v1.create_namespaced_config_map(n, {"metadata": {"name": "b", "labels": {"w": "no"}}})
v1.delete_namespaced_config_map("a", n)
events = []
w = watch.Watch()
for ev in w.stream(v1.list_namespaced_config_map, n, resource_version=start, timeout_seconds=3):
    events.append((ev["type"], ev["object"].metadata.name, int(ev["object"].metadata.resource_version)))
    if len(events) == 3:
        w.stop()
assert [e[:2] for e in events] == [("MODIFIED", "a"), ("ADDED", "b"), ("DELETED", "a")], events
assert events[0][2] > int(start) and events[0][2] < events[1][2] < events[2][2], events
# Without a resourceVersion: the current state first (ADDED), then live changes, filtered.
got = []
w = watch.Watch()
for ev in w.stream(v1.list_namespaced_config_map, n, label_selector="w=no", timeout_seconds=5):
    got.append((ev["type"], ev["object"].metadata.name))
    if len(got) == 1:
        v1.patch_namespaced_config_map("b", n, {"data": {"x": "y"}})
        v1.create_namespaced_config_map(n, {"metadata": {"name": "c", "labels": {"w": "yes"}}})
    if len(got) == 2:
        w.stop()
assert got == [("ADDED", "b"), ("MODIFIED", "b")], got
# timeoutSeconds ends an idle watch.
t = time.time()
now = v1.list_namespaced_config_map(n).metadata.resource_version
assert list(watch.Watch().stream(v1.list_namespaced_config_map, n, resource_version=now, timeout_seconds=1)) == []
assert time.time() - t < 10
print("ok")
"#,
        &[],
    );
}

#[test]
fn python_finalizers_hold_deletion() {
    let api = Apiserver::start(&[]);
    api.python(
        r#"
n = ns("fin")
v1.create_namespaced_config_map(n, {"metadata": {"name": "held", "finalizers": ["example.com/a", "example.com/b"]}})
v1.delete_namespaced_config_map("held", n)
obj = v1.read_namespaced_config_map("held", n)
assert obj.metadata.deletion_timestamp is not None and obj.metadata.finalizers == ["example.com/a", "example.com/b"]
w = watch.Watch()
rv = obj.metadata.resource_version
v1.patch_namespaced_config_map("held", n, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["example.com/a"]}})
assert v1.read_namespaced_config_map("held", n).metadata.finalizers == ["example.com/b"]
v1.patch_namespaced_config_map("held", n, {"metadata": {"finalizers": None}})
expect_status(404, v1.read_namespaced_config_map, "held", n)
types = [ev["type"] for ev in w.stream(v1.list_namespaced_config_map, n, resource_version=rv, timeout_seconds=2)]
assert types == ["MODIFIED", "DELETED"], types
print("ok")
"#,
        &[],
    );
}

/// Bookmarks through the official client: an idle watch with `allow_watch_bookmarks` gets a
/// BOOKMARK carrying a resourceVersion, and a watch resumed from it sees the next change, once.
#[test]
fn python_watch_bookmarks_and_resume_from_one() {
    let api = Apiserver::start(&[]);
    let out = api.python(
        r#"
n = ns("bm")
v1.create_namespaced_config_map(n, {"metadata": {"name": "before"}})
rv = v1.list_namespaced_config_map(n).metadata.resource_version
bookmark = None
w = watch.Watch()
for ev in w.stream(v1.list_namespaced_config_map, n, resource_version=rv, allow_watch_bookmarks=True, timeout_seconds=15):
    assert ev["type"] == "BOOKMARK", f"an idle namespace had a {ev['type']} event"
    bookmark = ev["raw_object"]["metadata"]["resourceVersion"]
    w.stop()
    break
assert bookmark is not None, "no bookmark within 15 s"
assert int(bookmark) >= int(rv), (bookmark, rv)
v1.create_namespaced_config_map(n, {"metadata": {"name": "after"}})
seen = [(ev["type"], ev["object"].metadata.name)
        for ev in watch.Watch().stream(v1.list_namespaced_config_map, n, resource_version=bookmark, timeout_seconds=2)]
assert seen == [("ADDED", "after")], seen
print("bookmark ok", bookmark)
"#,
        &[],
    );
    assert!(out.contains("bookmark ok"), "{out}");
}

#[test]
fn python_remote_store_shared_by_two_apiservers_and_watch_expiry() {
    let store = StoreProcess::start();
    let api = Apiserver::start(&["--store-endpoints", &store.endpoint()]);
    let api2 = Apiserver::start(&["--store-endpoints", &store.endpoint()]);
    let kubeconfig2 = api2.kubeconfig.to_str().unwrap().to_string();
    api.python(
        r#"
ep = os.environ["STORE_ENDPOINT"].removeprefix("http://")
# Two apiservers on one store: a write through one is read and watched through the other.
other = client.CoreV1Api(config.new_client_from_config(os.environ["KUBECONFIG2"]))
seen = v1.create_namespaced_config_map("default", {"metadata": {"name": "shared"}})
assert other.read_namespaced_config_map("shared", "default").metadata.uid == seen.metadata.uid
v1.delete_namespaced_config_map("shared", "default")
w = watch.Watch()
for ev in w.stream(other.list_namespaced_config_map, "default", resource_version=seen.metadata.resource_version, timeout_seconds=5):
    if ev["type"] == "BOOKMARK":
        continue
    assert ev["type"] == "DELETED" and ev["object"].metadata.name == "shared", ev["type"]
    w.stop()
    break
else:
    raise AssertionError("no event")

c = v1.create_namespaced_config_map("default", {"metadata": {"name": "c"}})
old = c.metadata.resource_version
for i in range(3):
    v1.patch_namespaced_config_map("c", "default", {"data": {"i": str(i)}})
head = v1.list_namespaced_config_map("default").metadata.resource_version
# The keys really are in the remote store, under kube-apiserver's layout.
keys = subprocess.run(["etcdctl", "--endpoints", ep, "get", "--prefix", "--keys-only", "/registry/configmaps/"],
                      env={"ETCDCTL_API": "3"}, capture_output=True, text=True, check=True).stdout.split()
assert keys == ["/registry/configmaps/default/c"], keys
subprocess.run(["etcdctl", "--endpoints", ep, "compact", head], env={"ETCDCTL_API": "3"}, check=True, capture_output=True)
try:
    for ev in watch.Watch().stream(v1.list_namespaced_config_map, "default", resource_version=old, timeout_seconds=5):
        raise AssertionError(f"unexpected event {ev['type']}")
    raise AssertionError("no 410")
except ApiException as e:
    assert e.status == 410, (e.status, e.reason)
# The client's answer to 410: relist, then watch from the list's resourceVersion.
rv = v1.list_namespaced_config_map("default").metadata.resource_version
v1.patch_namespaced_config_map("c", "default", {"data": {"after": "compaction"}})
evs = []
w = watch.Watch()
for ev in w.stream(v1.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=5):
    evs.append(ev["type"])
    w.stop()
assert evs == ["MODIFIED"], evs
print("ok")
"#,
        &[("STORE_ENDPOINT", &store.endpoint()), ("KUBECONFIG2", &kubeconfig2)],
    );
}

/// `ferrokube up` runs the controller-manager too: deleting a namespace empties it (the
/// namespace controller deletes its objects, waits for those with finalizers, then finalizes
/// the namespace), so `kubectl delete namespace` completes.
#[test]
fn up_deleting_a_namespace_empties_it_then_removes_it() {
    let api = Apiserver::start_command("up", &[]);
    let dir = api.dir.path();
    let manifest = dir.join("doomed.yaml");
    let docs = [
        r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"}}"#,
        r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "plain", "namespace": "doomed"}}"#,
        r#"{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "doomed"}, "stringData": {"k": "v"}}"#,
        r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "held", "namespace": "doomed", "finalizers": ["example.com/hold"]}}"#,
        r#"{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "doomed"},
           "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}},
             "spec": {"containers": [{"name": "app", "image": "busybox"}]}}}}"#,
    ];
    std::fs::write(&manifest, docs.join("\n---\n")).unwrap();
    api.kubectl_ok(&["create", "-f", manifest.to_str().unwrap()]);
    // Without waiting: the finalizer on "held" keeps the namespace until it is removed.
    api.kubectl_ok(&["delete", "namespace", "doomed", "--wait=false"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = api.kubectl_ok(&["get", "configmaps,secrets,deployments", "-n", "doomed", "-o", "name"]);
        if left.trim() == "configmap/held" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the namespace was not emptied: {left}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let phase = api.kubectl_ok(&["get", "namespace", "doomed", "-o", "jsonpath={.status.phase}"]);
    assert_eq!(phase, "Terminating", "held by the configmap's finalizer");
    std::thread::sleep(Duration::from_secs(2));
    api.kubectl_ok(&["get", "namespace", "doomed"]);
    api.kubectl_ok(&["patch", "configmap", "held", "-n", "doomed", "--type=merge", "-p", r#"{"metadata":{"finalizers":null}}"#]);
    // Now the deletion completes and kubectl's wait sees it.
    api.kubectl_ok(&["delete", "namespace", "doomed", "--timeout=30s", "--ignore-not-found"]);
    let out = api.kubectl(&["get", "namespace", "doomed"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("NotFound"), "{}", show(&out));
    // A namespace of the same name can be made again, empty.
    api.kubectl_ok(&["create", "-f", manifest.to_str().unwrap()]);
    let again = api.kubectl_ok(&["get", "configmaps", "-n", "doomed", "-o", "name"]);
    assert!(again.contains("configmap/plain") && again.contains("configmap/held"), "{again}");
}

/// `ferrokube controller-manager` as its own process, against an apiserver started alone:
/// namespaces it did not see created are emptied too, and SIGTERM stops it cleanly.
#[test]
fn controller_manager_process_empties_namespaces_of_a_separate_apiserver() {
    let api = Apiserver::start(&[]);
    api.kubectl_ok(&["create", "namespace", "gone"]);
    api.kubectl_ok(&["create", "configmap", "c", "-n", "gone", "--from-literal=k=v"]);
    // Without a controller-manager the namespace stays Terminating.
    api.kubectl_ok(&["delete", "namespace", "gone", "--wait=false"]);
    std::thread::sleep(Duration::from_secs(2));
    let phase = api.kubectl_ok(&["get", "namespace", "gone", "-o", "jsonpath={.status.phase}"]);
    assert_eq!(phase, "Terminating");

    let log = api.dir.path().join("controller-manager.log");
    let mut cm = Command::new(FERROKUBE)
        .args(["controller-manager", "--kubeconfig"])
        .arg(&api.kubeconfig)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawning ferrokube controller-manager");
    let out = api.kubectl(&["delete", "namespace", "gone", "--timeout=30s", "--ignore-not-found"]);
    let gone = api.kubectl(&["get", "namespace", "gone"]);
    let _ = Command::new("kill").args(["-TERM", &cm.id().to_string()]).status();
    let exited = common::wait_exit(&mut cm, Duration::from_secs(10));
    if exited.is_none() {
        let _ = cm.kill();
        let _ = cm.wait();
    }
    assert!(out.status.success(), "{}\ncontroller-manager log:\n{}", show(&out), file_tail(&log, 3000));
    assert!(String::from_utf8_lossy(&gone.stderr).contains("NotFound"), "{}", show(&gone));
    assert!(exited.is_some_and(|s| s.success()), "controller-manager did not stop on SIGTERM: {exited:?}\n{}", file_tail(&log, 3000));
}

/// A `kind: List` manifest (what `kubectl get -o yaml` of several objects prints): kubectl
/// validates its items through `/openapi/v2`, which used to be a 404 that failed the whole
/// command. The server still validates each item strictly.
#[test]
fn kubectl_create_and_apply_a_list_manifest() {
    let api = Apiserver::start(&[]);
    let list = api.dir.path().join("list.json");
    std::fs::write(
        &list,
        r#"{"apiVersion": "v1", "kind": "List", "items": [
          {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "l1", "namespace": "default"}, "data": {"a": "1"}},
          {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ld", "namespace": "default"},
           "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": {"metadata": {"labels": {"app": "x"}},
             "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}]}"#,
    )
    .unwrap();
    let out = api.kubectl_ok(&["create", "-f", list.to_str().unwrap()]);
    assert!(out.contains("configmap/l1 created") && out.contains("deployment.apps/ld created"), "{out}");
    let out = api.kubectl_ok(&["apply", "-f", list.to_str().unwrap()]);
    assert!(out.contains("configmap/l1 configured"), "{out}");
    let bad = api.dir.path().join("bad-list.json");
    std::fs::write(
        &bad,
        r#"{"apiVersion": "v1", "kind": "List", "items": [
          {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "l2", "namespace": "default"}, "bogus": 1}]}"#,
    )
    .unwrap();
    let out = api.kubectl(&["create", "-f", bad.to_str().unwrap()]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains(r#"unknown field "bogus""#), "{}", show(&out));
}

/// A body over the 3 MiB limit comes back as the 413 Status over HTTP/2 too. Answering before
/// reading the body made the server reset the stream: curl (7.88) reported "Stream error in
/// the HTTP/2 framing layer" instead of the Status; kubectl coped either way.
#[test]
fn oversized_body_gets_a_413_status_over_http2() {
    let api = Apiserver::start(&[]);
    let big = api.dir.path().join("big.json");
    let data = "x".repeat(4 * 1024 * 1024);
    let cm = format!(r#"{{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {{"name": "big", "namespace": "default"}}, "data": {{"k": "{data}"}}}}"#);
    std::fs::write(&big, cm).unwrap();
    let out = api.kubectl(&["create", "-f", big.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(stderr.contains("RequestEntityTooLarge") && stderr.contains("larger than the limit"), "{}", show(&out));

    let data_dir = api.dir.path().join("data");
    let token = std::fs::read_to_string(data_dir.join("tokens.csv")).unwrap();
    let token = token.split(',').next().unwrap();
    let server = api.kubectl_ok(&["config", "view", "-o", "jsonpath={.clusters[0].cluster.server}"]);
    let mut curl = Command::new("curl");
    curl.args(["-sS", "--http2", "--cacert"]).arg(data_dir.join("pki/ca.crt"));
    curl.args(["-H", &format!("Authorization: Bearer {token}"), "-H", "Content-Type: application/json"]);
    curl.args(["--data-binary", &format!("@{}", big.display()), "-w", "\nHTTP %{http_code} %{http_version}"]);
    curl.arg(format!("{server}/api/v1/namespaces/default/configmaps"));
    let out = run_with_timeout(curl, None, CLIENT_TIMEOUT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.ends_with("HTTP 413 2"), "{}", show(&out));
    let status: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!((status["kind"].as_str(), status["reason"].as_str()), (Some("Status"), Some("RequestEntityTooLarge")));

    let out = api.kubectl(&["get", "configmap", "big", "-n", "default"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("NotFound"), "nothing was stored: {}", show(&out));
}

#[test]
fn kubectl_get_create_apply_delete() {
    let api = Apiserver::start(&[]);
    let dir = api.dir.path();
    let namespaces = api.kubectl_ok(&["get", "namespaces"]);
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(namespaces.contains(ns), "{namespaces}");
    }
    assert!(api.kubectl_ok(&["version"]).contains("Server Version: v1.37.0+ferrokube"));
    let ns = dir.join("ns.json");
    std::fs::write(&ns, r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kc"}}"#).unwrap();
    assert!(api.kubectl_ok(&["create", "-f", ns.to_str().unwrap()]).contains("namespace/kc created"));
    let deploy = dir.join("deploy.yaml");
    let manifest = |image: &str, replicas: u32| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: kc\n  labels: {{app: web}}\n\
             spec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n\
             \x20     labels: {{app: web}}\n    spec:\n      containers:\n      - name: app\n        image: {image}\n\
             \x20       env:\n        - {{name: A, value: \"1\"}}\n"
        )
    };
    std::fs::write(&deploy, manifest("nginx:1.27", 1)).unwrap();
    let out = api.kubectl_ok(&["apply", "-f", deploy.to_str().unwrap()]);
    assert!(out.contains("deployment.apps/web created"), "{out}");
    // Client-side apply of a changed manifest sends a strategic merge patch.
    std::fs::write(&deploy, manifest("nginx:1.28", 3)).unwrap();
    let out = api.kubectl_ok(&["apply", "-f", deploy.to_str().unwrap()]);
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    let got: serde_json::Value =
        serde_json::from_str(&api.kubectl_ok(&["get", "deployment", "web", "-n", "kc", "-o", "json"])).unwrap();
    assert_eq!(got["spec"]["replicas"], 3);
    assert_eq!(got["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.28");
    assert_eq!(got["metadata"]["generation"], 2);
    assert!(got["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].is_string());
    let out = api.kubectl_ok(&["apply", "-f", deploy.to_str().unwrap()]);
    assert!(out.contains("unchanged"), "{out}");
    let out = api.kubectl_ok(&["scale", "deployment/web", "-n", "kc", "--replicas=5"]);
    assert!(out.contains("deployment.apps/web scaled"), "{out}");
    let replicas = api.kubectl_ok(&["get", "deployment", "web", "-n", "kc", "-o", "jsonpath={.spec.replicas}"]);
    assert_eq!(replicas, "5");
    let listed = api.kubectl_ok(&["get", "deployments", "-n", "kc", "-l", "app=web"]);
    assert!(listed.contains("web"), "{listed}");
    let out = api.kubectl_ok(&["delete", "-f", deploy.to_str().unwrap()]);
    assert!(out.contains("deleted"), "{out}");
    let out = api.kubectl(&["get", "deployment", "web", "-n", "kc"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("NotFound"), "{}", show(&out));
    // Imperative `create` sends protobuf (more in `protobuf_kubectl_imperative_commands`).
    assert!(api.kubectl_ok(&["create", "namespace", "imperative"]).contains("namespace/imperative created"));
}

/// kubectl's imperative commands send `application/vnd.kubernetes.protobuf` bodies.
#[test]
fn protobuf_kubectl_imperative_commands() {
    let api = Apiserver::start(&[]);
    let json = |args: &[&str]| -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["-n", "imp", "-o", "json"]);
        serde_json::from_str(&api.kubectl_ok(&all)).unwrap()
    };
    for (args, created) in [
        (&["create", "namespace", "imp"][..], "namespace/imp created"),
        (&["create", "configmap", "conf", "-n", "imp", "--from-literal=k=v", "--from-literal=port=80"], "configmap/conf created"),
        (&["create", "secret", "generic", "db", "-n", "imp", "--from-literal=password=s3cr:et"], "secret/db created"),
        (&["create", "serviceaccount", "robot", "-n", "imp"], "serviceaccount/robot created"),
        (&["create", "deployment", "web", "-n", "imp", "--image=busybox", "--replicas=2"], "deployment.apps/web created"),
        (&["create", "service", "clusterip", "web", "-n", "imp", "--tcp=80:8080"], "service/web created"),
        (&["create", "job", "once", "-n", "imp", "--image=busybox"], "job.batch/once created"),
        (&["run", "solo", "-n", "imp", "--image=busybox", "--labels=app=solo,tier=demo"], "pod/solo created"),
        (&["create", "quota", "q", "-n", "imp", "--hard=pods=10"], "resourcequota/q created"),
        (&["create", "cronjob", "tick", "-n", "imp", "--image=busybox", "--schedule=*/5 * * * *"], "cronjob.batch/tick created"),
        (&["create", "pdb", "budget", "-n", "imp", "--selector=app=web", "--min-available=1"], "poddisruptionbudget.policy/budget created"),
        (&["create", "ingress", "entry", "-n", "imp", "--rule=foo.example/bar=web:80"], "ingress.networking.k8s.io/entry created"),
        (&["expose", "deployment", "web", "-n", "imp", "--port=81", "--target-port=8081", "--name=web-exposed"], "service/web-exposed exposed"),
    ] {
        let out = api.kubectl_ok(args);
        assert!(out.contains(created), "kubectl {args:?}: {out}");
    }
    let ns: serde_json::Value = serde_json::from_str(&api.kubectl_ok(&["get", "namespace", "imp", "-o", "json"])).unwrap();
    assert_eq!((ns["metadata"]["name"].as_str(), ns["status"]["phase"].as_str()), (Some("imp"), Some("Active")));
    let cm = json(&["get", "configmap", "conf"]);
    assert_eq!(cm["data"], serde_json::json!({"k": "v", "port": "80"}));
    let secret = json(&["get", "secret", "db"]);
    let decoded = api.kubectl_ok(&["get", "secret", "db", "-n", "imp", "-o", "go-template={{.data.password | base64decode}}"]);
    assert_eq!(decoded, "s3cr:et");
    assert_eq!(secret["type"], "Opaque");
    assert_eq!(json(&["get", "serviceaccount", "robot"])["metadata"]["name"], "robot");
    let d = json(&["get", "deployment", "web"]);
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "web");
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "busybox");
    // Go sends non-pointer zeros (`minReadySeconds: 0`, `stdin: false`); they are kept.
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["stdin"], false);
    let svc = json(&["get", "service", "web"]);
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    let job = json(&["get", "job", "once"]);
    assert_eq!(job["spec"]["template"]["spec"]["containers"][0]["image"], "busybox");
    assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");
    let pod = json(&["get", "pod", "solo"]);
    assert_eq!(pod["metadata"]["labels"], serde_json::json!({"app": "solo", "tier": "demo"}));
    assert_eq!(pod["spec"]["containers"][0]["image"], "busybox");
    assert_eq!(json(&["get", "quota", "q"])["spec"]["hard"]["pods"], "10");
    let cron = json(&["get", "cronjob", "tick"]);
    assert_eq!(cron["spec"]["schedule"], "*/5 * * * *");
    assert_eq!(cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"], "busybox");
    let pdb = json(&["get", "pdb", "budget"]);
    assert_eq!((pdb["spec"]["minAvailable"].clone(), pdb["spec"]["selector"]["matchLabels"]["app"].clone()), (1.into(), "web".into()));
    let ing = json(&["get", "ingress", "entry"]);
    let rule = &ing["spec"]["rules"][0];
    assert_eq!(rule["host"], "foo.example");
    // `http` is an inlined struct in Go (IngressRuleValue): it sits in the rule itself.
    assert_eq!(rule["http"]["paths"][0]["path"], "/bar");
    assert_eq!(rule["http"]["paths"][0]["backend"]["service"]["port"]["number"], 80);
    let exposed = json(&["get", "service", "web-exposed"]);
    assert_eq!(exposed["spec"]["selector"]["app"], "web");
    assert_eq!((exposed["spec"]["ports"][0]["port"].clone(), exposed["spec"]["ports"][0]["targetPort"].clone()), (81.into(), 8081.into()));
}

/// kubectl asks for `fieldValidation=Strict` by default and `Warn` with `--validate=warn`.
#[test]
fn protobuf_field_validation_with_kubectl() {
    let api = Apiserver::start(&[]);
    let manifest = api.dir.path().join("cm.yaml");
    std::fs::write(&manifest, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n  namespace: default\ndata:\n  k: v\nfoo: 1\n").unwrap();
    let out = api.kubectl(&["create", "-f", manifest.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains(r#"strict decoding error: unknown field "foo""#), "{}", show(&out));
    let out = api.kubectl(&["create", "--validate=warn", "-f", manifest.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains(r#"Warning: unknown field "foo""#), "{}", show(&out));
    assert_eq!(api.kubectl_ok(&["get", "configmap", "cm", "-o", "jsonpath={.data.k}"]), "v");
}

#[test]
fn quota_limitrange_and_resourcequota_with_the_python_client() {
    let api = Apiserver::start(&[]);
    let out = api.python(
        r#"
n = ns("team")
v1.create_namespaced_limit_range(n, {"metadata": {"name": "limits"}, "spec": {"limits": [
    {"type": "Container", "default": {"cpu": "200m", "memory": "128Mi"}, "defaultRequest": {"cpu": "100m"}, "max": {"cpu": "500m"}}]}})
v1.create_namespaced_resource_quota(n, {"metadata": {"name": "compute"}, "spec": {"hard": {"pods": "2", "requests.cpu": "1", "limits.memory": "1Gi"}}})
q = v1.read_namespaced_resource_quota("compute", n)
assert q.status.hard == {"pods": "2", "requests.cpu": "1", "limits.memory": "1Gi"}, q.status
assert q.status.used == {"pods": "0", "requests.cpu": "0", "limits.memory": "0"}, q.status

def pod(name, resources=None):
    c = {"name": "app", "image": "busybox:1.36"}
    if resources:
        c["resources"] = resources
    return {"metadata": {"name": name}, "spec": {"containers": [c]}}

p = v1.create_namespaced_pod(n, pod("a"))
r = p.spec.containers[0].resources
assert r.limits == {"cpu": "200m", "memory": "128Mi"} and r.requests == {"cpu": "100m", "memory": "128Mi"}, r
assert "LimitRanger plugin set" in p.metadata.annotations["kubernetes.io/limit-ranger"]

body = expect_status(403, v1.create_namespaced_pod, n, pod("big", {"limits": {"cpu": "1"}}))
assert body["reason"] == "Forbidden", body
assert body["message"] == 'pods "big" is forbidden: maximum cpu usage per Container is 500m, but limit is 1', body

v1.create_namespaced_pod(n, pod("b", {"requests": {"cpu": "300m"}, "limits": {"cpu": "500m", "memory": "256Mi"}}))
body = expect_status(403, v1.create_namespaced_pod, n, pod("c"))
assert body["message"] == 'pods "c" is forbidden: exceeded quota: compute, requested: pods=1, used: pods=2, limited: pods=2', body

q = v1.read_namespaced_resource_quota("compute", n)
assert q.status.used == {"pods": "2", "requests.cpu": "400m", "limits.memory": "384Mi"}, q.status.used
v1.delete_namespaced_pod("a", n)
v1.create_namespaced_pod(n, pod("c"))
q = v1.read_namespaced_resource_quota("compute", n)
assert q.status.used["pods"] == "2" and q.status.used["requests.cpu"] == "400m", q.status.used
print("quota ok")
"#,
        &[],
    );
    assert!(out.contains("quota ok"), "{out}");
    let described = api.kubectl_ok(&["describe", "quota", "compute", "-n", "team"]);
    assert!(described.contains("requests.cpu") && described.contains("400m"), "{described}");
}

/// Splits `kubectl get` output into rows of whitespace-separated words (headers with a space,
/// like NOMINATED NODE, become two words).
fn table_rows(out: &str) -> Vec<Vec<&str>> {
    out.lines().map(|l| l.split_whitespace().collect()).collect()
}

#[test]
fn table_kubectl_get_prints_server_columns() {
    let api = Apiserver::start(&[]);
    let dir = api.dir.path();
    let pod = dir.join("pod.json");
    std::fs::write(
        &pod,
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"nodeName": "node-1", "containers": [{"name": "app", "image": "nginx"}, {"name": "log", "image": "busybox"}]}}"#,
    )
    .unwrap();
    api.kubectl_ok(&["create", "-f", pod.to_str().unwrap()]);
    let status = r#"{"status": {"phase": "Running", "podIP": "10.0.0.7", "containerStatuses": [
        {"name": "app", "ready": true, "restartCount": 2, "state": {"running": {}}},
        {"name": "log", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}"#;
    api.kubectl_ok(&["patch", "pod", "web", "--subresource=status", "--type=merge", "-p", status]);

    let out = api.kubectl_ok(&["get", "pods"]);
    let rows = table_rows(&out);
    assert_eq!(rows[0], ["NAME", "READY", "STATUS", "RESTARTS", "AGE"], "{out}");
    assert_eq!(rows[1][..4], ["web", "1/2", "CrashLoopBackOff", "2"], "{out}");
    assert!(rows[1][4].ends_with('s'), "{out}");
    let out = api.kubectl_ok(&["get", "pods", "-o", "wide"]);
    let rows = table_rows(&out);
    assert_eq!(rows[0][5..], ["IP", "NODE", "NOMINATED", "NODE", "READINESS", "GATES"], "{out}");
    assert_eq!(rows[1][5..], ["10.0.0.7", "node-1", "<none>", "<none>"], "{out}");
    // Across namespaces kubectl adds NAMESPACE from the rows' PartialObjectMetadata.
    let out = api.kubectl_ok(&["get", "pods", "-A"]);
    let rows = table_rows(&out);
    assert_eq!((&rows[0][..3], &rows[1][..4]), (&["NAMESPACE", "NAME", "READY"][..], &["default", "web", "1/2", "CrashLoopBackOff"][..]), "{out}");
    // One object, and a label selector, go through the same columns.
    for args in [&["get", "pod", "web"][..], &["get", "pods", "-l", "app=web"]] {
        let out = api.kubectl_ok(args);
        assert!(table_rows(&out)[1][..3] == ["web", "1/2", "CrashLoopBackOff"], "{out}");
    }

    let deploy = dir.join("deploy.json");
    std::fs::write(
        &deploy,
        r#"{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 2,
            "selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}}}"#,
    )
    .unwrap();
    let svc = dir.join("svc.json");
    std::fs::write(
        &svc,
        r#"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}]}}"#,
    )
    .unwrap();
    api.kubectl_ok(&["create", "-f", deploy.to_str().unwrap(), "-f", svc.to_str().unwrap()]);
    let out = api.kubectl_ok(&["get", "deployments"]);
    let rows = table_rows(&out);
    assert_eq!(rows[0], ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"], "{out}");
    assert_eq!(rows[1][..4], ["web", "0/2", "0", "0"], "{out}");
    let out = api.kubectl_ok(&["get", "deployments", "-o", "wide"]);
    assert_eq!(table_rows(&out)[1][5..], ["app", "nginx:1.27", "app=web"], "{out}");
    let out = api.kubectl_ok(&["get", "svc"]);
    let rows = table_rows(&out);
    assert_eq!(rows[0], ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"], "{out}");
    assert_eq!(rows[1][..5], ["web", "ClusterIP", "<none>", "<none>", "80/TCP,53/UDP"], "{out}");
    let out = api.kubectl_ok(&["get", "ns"]);
    let rows = table_rows(&out);
    assert_eq!(rows[0], ["NAME", "STATUS", "AGE"], "{out}");
    assert!(rows.iter().any(|r| r[..2] == ["default", "Active"]), "{out}");
    let cm = dir.join("cm.json");
    std::fs::write(&cm, r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"a": "1", "b": "2"}}"#)
        .unwrap();
    api.kubectl_ok(&["create", "-f", cm.to_str().unwrap()]);
    let out = api.kubectl_ok(&["get", "configmaps"]);
    let rows = table_rows(&out);
    assert_eq!((rows[0].as_slice(), &rows[1][..2]), (&["NAME", "DATA", "AGE"][..], &["settings", "2"][..]), "{out}");

    // `get -w`: kubectl lists, then watches with the same Accept; each change prints a row.
    let mut cmd = Command::new(venv_bin("kubectl"));
    cmd.arg("--kubeconfig").arg(&api.kubeconfig).args(["get", "pods", "-w"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
    let mut watcher = cmd.spawn().unwrap();
    let stdout = watcher.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let wait_for = |want: &str, seen: &mut Vec<String>| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !seen.iter().any(|l: &String| l.contains(want)) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => seen.push(line),
                Err(_) => return false,
            }
        }
        true
    };
    let listed = wait_for("CrashLoopBackOff", &mut seen);
    let running = r#"{"status": {"containerStatuses": [
        {"name": "app", "ready": true, "restartCount": 2, "state": {"running": {}}},
        {"name": "log", "ready": true, "restartCount": 1, "state": {"running": {}}}]}}"#;
    api.kubectl_ok(&["patch", "pod", "web", "--subresource=status", "--type=merge", "-p", running]);
    let updated = wait_for("Running", &mut seen);
    let _ = watcher.kill();
    let _ = watcher.wait();
    assert!(listed && updated, "kubectl get -w printed:\n{}", seen.join("\n"));
    let headers = seen.iter().filter(|l| l.starts_with("NAME")).count();
    assert_eq!(headers, 1, "{}", seen.join("\n"));
    let row = seen.iter().find(|l| l.contains("Running")).unwrap();
    assert_eq!(row.split_whitespace().take(4).collect::<Vec<_>>(), ["web", "2/2", "Running", "3"], "{}", seen.join("\n"));
}

/// Writes a kubeconfig next to `base` (same server and CA) whose user is `user` (JSON).
fn certauth_kubeconfig(base: &Path, name: &str, user: serde_json::Value) -> PathBuf {
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(base).unwrap()).unwrap();
    config["users"][0]["user"] = user;
    let path = base.with_file_name(name);
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

fn certauth_kubectl(kubeconfig: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(venv_bin("kubectl"));
    cmd.arg("--kubeconfig").arg(kubeconfig).args(args);
    run_with_timeout(cmd, None, CLIENT_TIMEOUT)
}

#[test]
fn certauth_client_certificates_tokens_and_refusals() {
    let api = Apiserver::start(&[]);
    let cert_config = api.kubeconfig.with_file_name("kubeconfig-cert");
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cert_config).unwrap()).unwrap();
    assert!(config["users"][0]["user"]["client-certificate-data"].is_string(), "{config}");
    assert!(config["users"][0]["user"].get("token").is_none(), "{config}");

    // kubectl with the admin certificate: CN=admin, O=system:masters.
    let out = certauth_kubectl(&cert_config, &["get", "namespaces"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("kube-system"), "{}", show(&out));
    let out = certauth_kubectl(&cert_config, &["auth", "whoami", "-o", "json"]);
    assert!(out.status.success(), "{}\n{}", show(&out), file_tail(&api.log, 2000));
    let review: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(review["status"]["userInfo"]["username"], "admin");
    assert_eq!(review["status"]["userInfo"]["groups"], serde_json::json!(["system:masters", "system:authenticated"]));
    // The token kubeconfig still works, and the server knows its user too.
    let whoami = api.kubectl_ok(&["auth", "whoami"]);
    assert!(whoami.contains("admin") && whoami.contains("system:masters"), "{whoami}");

    // The Python client with the certificate kubeconfig.
    let out = api.python(
        r#"
assert "default" in [n.metadata.name for n in v1.list_namespace().items]
cm = v1.create_namespaced_config_map("default", {"metadata": {"name": "by-cert"}})
assert cm.metadata.uid
print("ok")
"#,
        &[("KUBECONFIG", cert_config.to_str().unwrap())],
    );
    assert!(out.contains("ok"), "{out}");

    // A certificate from a CA the apiserver does not know: the TLS handshake refuses it.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "ferrokube-ca");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let (cert, key) = apiserver::pki::client_certificate("admin", "system:masters", &issuer).unwrap();
    let (cert_file, key_file) = (api.dir.path().join("foreign.crt"), api.dir.path().join("foreign.key"));
    std::fs::write(&cert_file, cert).unwrap();
    std::fs::write(&key_file, key).unwrap();
    let foreign = certauth_kubeconfig(
        &api.kubeconfig,
        "kubeconfig-foreign",
        serde_json::json!({"client-certificate": cert_file, "client-key": key_file}),
    );
    let out = certauth_kubectl(&foreign, &["get", "namespaces"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Refused in the handshake: kubectl reports the TLS alert, or, when the server's close wins
    // the race with its next write, a broken pipe or reset; never an HTTP answer.
    let refused_in_handshake = ["tls", "broken pipe", "connection reset"].iter().any(|s| stderr.contains(s));
    assert!(!out.status.success() && refused_in_handshake, "{}", show(&out));
    assert!(!stderr.contains("Unauthorized"), "{}", show(&out));
    let script = api.dir.path().join("foreign.py");
    std::fs::write(&script, format!("{PRELUDE}\nv1.list_namespace()\nprint('listed')\n")).unwrap();
    let mut cmd = Command::new(python());
    cmd.arg(&script).env("KUBECONFIG", &foreign);
    let out = run_with_timeout(cmd, None, CLIENT_TIMEOUT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && !String::from_utf8_lossy(&out.stdout).contains("listed"), "{}", show(&out));
    assert!(stderr.contains("SSL") || stderr.contains("certificate"), "{}", show(&out));

    // No credential at all: 401 (kubectl would prompt for a password here, so Python asks).
    let anonymous = certauth_kubeconfig(&api.kubeconfig, "kubeconfig-anonymous", serde_json::json!({}));
    let out = api.python(
        "st = expect_status(401, v1.list_namespace)\nassert st['reason'] == 'Unauthorized', st\nprint('ok')\n",
        &[("KUBECONFIG", anonymous.to_str().unwrap())],
    );
    assert!(out.contains("ok"), "{out}");

    // The access log names the user of each request.
    let log = std::fs::read_to_string(&api.log).unwrap();
    assert!(log.contains("selfsubjectreviews") && log.contains("\"admin\""), "{}", file_tail(&api.log, 2000));
}

/// A deployment manifest as JSON (kubectl reads JSON and YAML alike).
fn apply_deployment(ns: &str, replicas: u32, labels: serde_json::Value) -> String {
    serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": ns, "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]}}}
    })
    .to_string()
}

#[test]
fn apply_dry_run_server_leaves_the_cluster_unchanged() {
    let api = Apiserver::start(&[]);
    let dir = api.dir.path();
    let ns = dir.join("ns.json");
    std::fs::write(&ns, r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "dry"}}"#).unwrap();
    api.kubectl_ok(&["create", "-f", ns.to_str().unwrap()]);
    let deploy = dir.join("deploy.json");
    std::fs::write(&deploy, apply_deployment("dry", 2, serde_json::json!({"app": "web"}))).unwrap();
    let deploy = deploy.to_str().unwrap();
    let revision = || {
        let list: serde_json::Value = serde_json::from_str(&api.kubectl_ok(&["get", "--raw", "/api/v1/namespaces"])).unwrap();
        list["metadata"]["resourceVersion"].as_str().unwrap().to_string()
    };

    let before = revision();
    let out: serde_json::Value =
        serde_json::from_str(&api.kubectl_ok(&["create", "--dry-run=server", "-f", deploy, "-o", "json"])).unwrap();
    assert_eq!(out["metadata"]["uid"].as_str().map(str::len), Some(36), "{out}");
    assert!(out["metadata"].get("resourceVersion").is_none(), "{out}");
    let out = api.kubectl_ok(&["apply", "--dry-run=server", "-f", deploy]);
    assert!(out.contains("created (server dry run)"), "{out}");
    let out = api.kubectl(&["get", "deployment", "web", "-n", "dry"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("NotFound"), "{}", show(&out));
    assert_eq!(revision(), before);

    api.kubectl_ok(&["apply", "-f", deploy]);
    let live = api.kubectl_ok(&["get", "deployment", "web", "-n", "dry", "-o", "json"]);
    let before = revision();
    std::fs::write(deploy, apply_deployment("dry", 7, serde_json::json!({"app": "web", "tier": "fe"}))).unwrap();
    let out = api.kubectl_ok(&["apply", "--dry-run=server", "-f", deploy, "-o", "json"]);
    let out: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((out["spec"]["replicas"].as_i64(), out["metadata"]["labels"]["tier"].as_str()), (Some(7), Some("fe")));
    let out = api.kubectl_ok(&["scale", "deployment/web", "-n", "dry", "--replicas=9", "--dry-run=server"]);
    assert!(out.contains("scaled (server dry run)"), "{out}");
    let out = api.kubectl_ok(&["delete", "--dry-run=server", "-f", deploy]);
    assert!(out.contains("deleted") && out.contains("(server dry run)"), "{out}");
    let out = api.kubectl_ok(&["delete", "deployments", "--all", "-n", "dry", "--dry-run=server"]);
    assert!(out.contains("deleted") && out.contains("(server dry run)"), "{out}");
    assert_eq!(api.kubectl_ok(&["get", "deployment", "web", "-n", "dry", "-o", "json"]), live);
    assert_eq!(revision(), before);
}

#[test]
fn apply_server_side_create_update_conflict_force() {
    let api = Apiserver::start(&[]);
    let dir = api.dir.path();
    let ns = dir.join("ns.json");
    std::fs::write(&ns, r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ssa"}}"#).unwrap();
    api.kubectl_ok(&["create", "-f", ns.to_str().unwrap()]);
    let deploy = dir.join("deploy.json");
    let deploy_path = deploy.to_str().unwrap();
    let get = || -> serde_json::Value {
        serde_json::from_str(&api.kubectl_ok(&["get", "deployment", "web", "-n", "ssa", "-o", "json", "--show-managed-fields"]))
            .unwrap()
    };

    std::fs::write(&deploy, apply_deployment("ssa", 2, serde_json::json!({"app": "web", "tier": "fe"}))).unwrap();
    let out = api.kubectl_ok(&["apply", "--server-side", "-f", deploy_path]);
    assert!(out.contains("deployment.apps/web serverside-applied"), "{out}");
    let live = get();
    assert_eq!(live["metadata"]["managedFields"][0]["manager"], "kubectl");
    assert_eq!(live["metadata"]["managedFields"][0]["operation"], "Apply");

    std::fs::write(&deploy, apply_deployment("ssa", 3, serde_json::json!({"app": "web"}))).unwrap();
    api.kubectl_ok(&["apply", "--server-side", "-f", deploy_path]);
    let live = get();
    assert_eq!(live["spec"]["replicas"], 3);
    assert_eq!(live["metadata"]["labels"], serde_json::json!({"app": "web"}), "the label no longer applied is gone");

    let out = api.kubectl_ok(&["scale", "deployment/web", "-n", "ssa", "--replicas=5"]);
    assert!(out.contains("scaled"), "{out}");
    let scaler = get()["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["fieldsV1"]["f:spec"]["f:replicas"].is_object())
        .map(|e| e["manager"].as_str().unwrap().to_string())
        .unwrap();
    // kubectl scale sends no fieldManager: its manager is the User-Agent's product, in an Update
    // entry of the scale subresource.
    assert_eq!(scaler, "kubectl");
    std::fs::write(&deploy, apply_deployment("ssa", 4, serde_json::json!({"app": "web"}))).unwrap();
    let out = api.kubectl(&["apply", "--server-side", "-f", deploy_path]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{}", show(&out));
    let expected = r#"Apply failed with 1 conflict: conflict with "kubectl" with subresource "scale" using apps/v1: .spec.replicas"#;
    assert!(err.contains(expected), "{err}");
    assert_eq!(get()["spec"]["replicas"], 5);

    let before = get();
    let out = api.kubectl_ok(&["apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f", deploy_path]);
    assert!(out.contains("serverside-applied (server dry run)"), "{out}");
    assert_eq!(get(), before, "a dry run changes nothing");

    api.kubectl_ok(&["apply", "--server-side", "--force-conflicts", "-f", deploy_path]);
    let live = get();
    assert_eq!(live["spec"]["replicas"], 4);
    let owners: Vec<&str> = live["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["fieldsV1"]["f:spec"]["f:replicas"].is_object())
        .map(|e| e["manager"].as_str().unwrap())
        .collect();
    assert_eq!(owners, ["kubectl"]);

    // From client-side to server-side apply: kubectl moves the ownership of its client-side
    // manager to its apply entry and applies again; the server's defaults survive that.
    let csa = dir.join("csa.json");
    let config = apply_deployment("ssa", 2, serde_json::json!({"app": "web"}));
    std::fs::write(&csa, config.replace("\"name\":\"web\"", "\"name\":\"csa\"")).unwrap();
    api.kubectl_ok(&["apply", "-f", csa.to_str().unwrap()]);
    let out = api.kubectl_ok(&["apply", "--server-side", "-f", csa.to_str().unwrap()]);
    assert!(out.contains("deployment.apps/csa serverside-applied"), "{out}");
    let live: serde_json::Value =
        serde_json::from_str(&api.kubectl_ok(&["get", "deployment", "csa", "-n", "ssa", "-o", "json", "--show-managed-fields"])).unwrap();
    assert_eq!(live["spec"]["strategy"]["type"], "RollingUpdate", "{live}");
    assert_eq!(live["metadata"]["generation"], 1, "{live}");
    let managers: Vec<&str> = live["metadata"]["managedFields"].as_array().unwrap().iter().map(|e| e["manager"].as_str().unwrap()).collect();
    assert!(!managers.contains(&"kubectl-client-side-apply"), "{managers:?}");

    // The status subresource, as a controller would apply it.
    let status = dir.join("status.json");
    let config = r#"{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "csa", "namespace": "ssa"},
                     "status": {"replicas": 2, "readyReplicas": 1}}"#;
    std::fs::write(&status, config).unwrap();
    let status = status.to_str().unwrap();
    api.kubectl_ok(&["apply", "--server-side", "--subresource=status", "--field-manager=ctl", "-f", status]);
    let ready = api.kubectl_ok(&["get", "deployment", "csa", "-n", "ssa", "-o", "jsonpath={.status.readyReplicas}"]);
    assert_eq!(ready, "1");
}

/// What kubectl 1.37 sends: `fieldValidation=Strict` with `apply` (a strategic merge patch of
/// an existing object) and `apply --server-side`, so an unknown field fails the command and
/// changes nothing; no fieldValidation with `patch` (the server's default, Warn: a warning).
/// kubectl resolves a manifest's repeated YAML keys itself (the last wins) but sends `patch -p`
/// and `--raw` bodies as written, so those repeated keys reach the server.
#[test]
fn fieldval_kubectl_patch_apply_and_duplicates() {
    let api = Apiserver::start(&[]);
    let dir = api.dir.path();
    let deploy = |extra: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: default\nspec:\n  replicas: 1\n{extra}  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      containers:\n      - name: c\n        image: busybox\n"
        )
    };
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let fails_with = |args: &[&str], message: &str| {
        let out = api.kubectl(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(message), "{args:?}: {}", show(&out));
    };
    let warns = |args: &[&str], warning: &str| {
        let out = api.kubectl(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && stderr.contains(&format!("Warning: {warning}")), "{args:?}: {}", show(&out));
    };
    let plain = write("web.yaml", &deploy(""));
    let bogus = write("bogus.yaml", &deploy("  bogus: 1\n"));
    api.kubectl_ok(&["apply", "-f", &plain]);
    let get = |what: &str| api.kubectl_ok(&["get", "deployment", "web", "-o", &format!("jsonpath={{{what}}}")]);
    let before = get(".metadata.resourceVersion");
    fails_with(&["apply", "-f", &bogus], r#"strict decoding error: unknown field "spec.bogus""#);
    fails_with(&["apply", "--server-side", "-f", &bogus], r#"strict decoding error: unknown field "spec.bogus""#);
    assert_eq!(get(".metadata.resourceVersion"), before, "a refused patch writes nothing");
    warns(&["patch", "deployment", "web", "--type", "merge", "-p", r#"{"spec":{"bogus":1}}"#], r#"unknown field "spec.bogus""#);
    warns(&["patch", "deployment", "web", "--type", "json", "-p", r#"[{"op":"add","path":"/spec/other","value":1}]"#], r#"unknown field "spec.other""#);
    warns(&["patch", "deployment", "web", "--type", "merge", "-p", r#"{"spec":{"replicas":2,"replicas":3}}"#], r#"duplicate field "spec.replicas""#);
    assert_eq!(get(".spec.replicas"), "3");
    // A manifest's repeated key never reaches the server: kubectl keeps the last one.
    let out = api.kubectl(&["apply", "-f", &write("dup.yaml", &deploy("  replicas: 4\n"))]);
    assert!(out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("duplicate"), "{}", show(&out));
    assert_eq!(get(".spec.replicas"), "4");
    // Raw bodies do.
    let cms = "/api/v1/namespaces/default/configmaps";
    let dup = write("dup.json", r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "d", "name": "d"}, "data": {"k": "1", "k": "2"}}"#);
    fails_with(
        &["create", "--raw", &format!("{cms}?fieldValidation=Strict"), "-f", &dup],
        r#"strict decoding error: duplicate field "metadata.name", duplicate field "data.k""#,
    );
    let out = api.kubectl(&["get", "configmap", "d"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("NotFound"), "{}", show(&out));
    warns(&["create", "--raw", cms, "-f", &dup], r#"duplicate field "data.k""#);
    assert_eq!(api.kubectl_ok(&["get", "configmap", "d", "-o", "jsonpath={.data.k}"]), "2");
    let put = write("put.json", r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "d"}, "data": {"k": "3", "k": "4"}}"#);
    fails_with(&["replace", "--raw", &format!("{cms}/d?fieldValidation=Strict"), "-f", &put], r#"duplicate field "data.k""#);
    assert_eq!(api.kubectl_ok(&["get", "configmap", "d", "-o", "jsonpath={.data.k}"]), "2");
}

#[test]
fn update_admission_kubectl_patch_beyond_quota_and_limitrange() {
    let api = Apiserver::start(&[]);
    api.kubectl_ok(&["create", "namespace", "grow"]);
    api.kubectl_ok(&["create", "quota", "disk", "-n", "grow", "--hard=requests.storage=5Gi,services.loadbalancers=0"]);
    let claim = api.dir.path().join("claim.json");
    std::fs::write(
        &claim,
        serde_json::json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": "grow"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}}})
        .to_string(),
    )
    .unwrap();
    api.kubectl_ok(&["apply", "-f", claim.to_str().unwrap()]);
    let size = || api.kubectl_ok(&["get", "pvc", "data", "-n", "grow", "-o", "jsonpath={.spec.resources.requests.storage}"]);

    let grow = |to: &str| format!(r#"{{"spec":{{"resources":{{"requests":{{"storage":"{to}"}}}}}}}}"#);
    let out = api.kubectl(&["patch", "pvc", "data", "-n", "grow", "-p", &grow("10Gi")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        stderr.contains(
            r#"persistentvolumeclaims "data" is forbidden: exceeded quota: disk, requested: requests.storage=8Gi, used: requests.storage=2Gi, limited: requests.storage=5Gi"#
        ),
        "{}",
        show(&out)
    );
    assert_eq!(size(), "2Gi");
    api.kubectl_ok(&["patch", "pvc", "data", "-n", "grow", "-p", &grow("4Gi")]);
    assert_eq!(size(), "4Gi");
    let used = api.kubectl_ok(&["get", "quota", "disk", "-n", "grow", "-o", r"jsonpath={.status.used.requests\.storage}"]);
    assert_eq!(used, "4Gi");

    // A service turned LoadBalancer under services.loadbalancers=0.
    api.kubectl_ok(&["create", "service", "clusterip", "web", "-n", "grow", "--tcp=80:80"]);
    let out = api.kubectl(&["patch", "service", "web", "-n", "grow", "-p", r#"{"spec":{"type":"LoadBalancer"}}"#]);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("exceeded quota: disk, requested: services.loadbalancers=1"), "{}", show(&out));

    // A LimitRange bounds a resize.
    api.kubectl_ok(&["delete", "quota", "disk", "-n", "grow"]);
    let range = api.dir.path().join("range.json");
    std::fs::write(
        &range,
        serde_json::json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "claims", "namespace": "grow"},
            "spec": {"limits": [{"type": "PersistentVolumeClaim", "max": {"storage": "6Gi"}}]}})
        .to_string(),
    )
    .unwrap();
    api.kubectl_ok(&["apply", "-f", range.to_str().unwrap()]);
    let out = api.kubectl(&["patch", "pvc", "data", "-n", "grow", "-p", &grow("7Gi")]);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("maximum storage usage per PersistentVolumeClaim is 6Gi, but request is 7Gi"),
        "{}",
        show(&out)
    );
    api.kubectl_ok(&["patch", "pvc", "data", "-n", "grow", "-p", &grow("6Gi")]);
    assert_eq!(size(), "6Gi");
}
