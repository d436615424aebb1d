//! End to end: the workload controllers and the garbage collector of `ferrokube up`, driven
//! with kubectl 1.37. There is no kubelet or scheduler here: pods stay Pending until the test
//! marks them Running and Ready itself (`Up::mark_ready`).

mod common;
#[path = "common/up.rs"]
mod up;

use std::time::Duration;

use serde_json::Value;
use up::Up;

/// Bound on each convergence the tests wait for.
const CONVERGE: Duration = Duration::from_secs(30);

fn name(v: &Value) -> String {
    v["metadata"]["name"].as_str().unwrap_or_default().to_string()
}

fn active(pods: Vec<Value>) -> Vec<Value> {
    pods.into_iter().filter(|p| !p["metadata"]["deletionTimestamp"].is_string()).collect()
}

/// The controller owner reference of an object: (kind, name, uid, blockOwnerDeletion).
fn controller_of(v: &Value) -> Option<(String, String, String, bool)> {
    let r = v["metadata"]["ownerReferences"].as_array()?.iter().find(|r| r["controller"] == true)?;
    Some((
        r["kind"].as_str()?.to_string(),
        r["name"].as_str()?.to_string(),
        r["uid"].as_str()?.to_string(),
        r["blockOwnerDeletion"] == true,
    ))
}

/// Waits until exactly `n` active pods match `selector`; returns them.
fn wait_pods(up: &Up, ns: &str, selector: &str, n: usize) -> Vec<Value> {
    up.wait_for(&format!("{n} pods with {selector}"), CONVERGE, || {
        let pods = active(up.items("pods", ns, Some(selector)));
        if pods.len() == n {
            Ok(pods)
        } else {
            Err(format!("{} pods: {:?}", pods.len(), pods.iter().map(name).collect::<Vec<_>>()))
        }
    })
}

const RS_MANIFEST: &str = r#"{"apiVersion": "apps/v1", "kind": "ReplicaSet",
  "metadata": {"name": "solo", "namespace": "default"},
  "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "solo"}},
    "template": {"metadata": {"labels": {"app": "solo"}},
      "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}"#;

/// A ReplicaSet created directly: pods owned by it, replaced when deleted, scaled both ways,
/// status counted, an orphan with matching labels adopted, and (garbage collector) its pods
/// deleted with it.
#[test]
fn replicaset_on_its_own() {
    let up = Up::start();
    let manifest = up.dir.path().join("rs.json");
    std::fs::write(&manifest, RS_MANIFEST).unwrap();
    up.kubectl_ok(&["create", "-f", manifest.to_str().unwrap()]);
    let rs = up.get_json(&["rs", "solo"]);
    let uid = rs["metadata"]["uid"].as_str().unwrap().to_string();
    let pods = wait_pods(&up, "default", "app=solo", 2);
    for p in &pods {
        assert!(name(p).starts_with("solo-"), "pods are named after the ReplicaSet: {}", name(p));
        assert_eq!(controller_of(p), Some(("ReplicaSet".into(), "solo".into(), uid.clone(), true)), "{p}");
    }

    // A deleted pod is replaced.
    let victim = name(&pods[0]);
    up.kubectl_ok(&["delete", "pod", &victim, "--wait=false"]);
    let pods = wait_pods(&up, "default", "app=solo", 2);
    assert!(pods.iter().all(|p| name(p) != victim), "{victim} was replaced by a new pod");

    // Scale up and down.
    up.kubectl_ok(&["scale", "rs", "solo", "--replicas=4"]);
    wait_pods(&up, "default", "app=solo", 4);
    up.kubectl_ok(&["scale", "rs", "solo", "--replicas=1"]);
    wait_pods(&up, "default", "app=solo", 1);

    // Ready pods are counted in the status, with the generation it answers.
    up.kubectl_ok(&["scale", "rs", "solo", "--replicas=3"]);
    wait_pods(&up, "default", "app=solo", 3);
    up.wait_for("3 ready replicas in the ReplicaSet's status", CONVERGE, || {
        up.mark_ready("default", "app=solo");
        let rs = up.get_json(&["rs", "solo"]);
        let st = &rs["status"];
        let ok = st["replicas"] == 3
            && st["readyReplicas"] == 3
            && st["availableReplicas"] == 3
            && st["fullyLabeledReplicas"] == 3
            && st["observedGeneration"] == rs["metadata"]["generation"];
        if ok { Ok(()) } else { Err(st.to_string()) }
    });

    // An orphan that matches is adopted, and one too many is then deleted: the not-ready orphan
    // is the one to go (ready pods are kept).
    up.kubectl_ok(&["run", "stray", "--image=busybox", "--labels=app=solo"]);
    up.wait_for("the orphan to be adopted, then deleted as the extra pod", CONVERGE, || {
        let pods = active(up.items("pods", "default", Some("app=solo")));
        let names: Vec<String> = pods.iter().map(name).collect();
        if pods.len() == 3 && !names.contains(&"stray".to_string()) { Ok(()) } else { Err(format!("{names:?}")) }
    });

    // Deleting the ReplicaSet (kubectl's default: background propagation) takes its pods along.
    up.kubectl_ok(&["delete", "rs", "solo"]);
    wait_pods(&up, "default", "app=solo", 0);
}
