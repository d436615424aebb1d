//! End to end: the workload controllers and the garbage collector of `ferrokube up`, driven
//! with kubectl 1.37, on the real single-node cluster: the scheduler binds the pods to the
//! node of `up`'s kubelet, which runs their `command` as host processes (a running container
//! is ready; one that keeps exiting non-zero crash-loops and stays unready).

mod common;
#[path = "common/up.rs"]
mod up;

use std::time::Duration;

use serde_json::Value;
use up::Up;

/// Bound on each convergence the tests wait for (real pods are scheduled, started and stopped
/// by the kubelet).
const CONVERGE: Duration = Duration::from_secs(60);

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
      "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}}}}"#;

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
        let rs = up.get_json(&["rs", "solo"]);
        let st = &rs["status"];
        let ok = st["replicas"] == 3
            && st["readyReplicas"] == 3
            && st["availableReplicas"] == 3
            && st["fullyLabeledReplicas"] == 3
            && st["observedGeneration"] == rs["metadata"]["generation"];
        if ok {
            Ok(())
        } else {
            Err(st.to_string())
        }
    });

    // An orphan that matches is adopted, and one too many is then deleted: the not-ready orphan
    // (its command keeps failing) is the one to go (ready pods are kept).
    up.kubectl_ok(&["run", "stray", "--image=busybox", "--labels=app=solo", "--command", "--", "sh", "-c", "exit 1"]);
    up.wait_for("the orphan to be adopted, then deleted as the extra pod", CONVERGE, || {
        let pods = active(up.items("pods", "default", Some("app=solo")));
        let names: Vec<String> = pods.iter().map(name).collect();
        if pods.len() == 3 && !names.contains(&"stray".to_string()) {
            Ok(())
        } else {
            Err(format!("{names:?}"))
        }
    });

    // Deleting the ReplicaSet (kubectl's default: background propagation) takes its pods along.
    up.kubectl_ok(&["delete", "rs", "solo"]);
    wait_pods(&up, "default", "app=solo", 0);
}

/// The garbage collector covers every kind (here ConfigMaps owning a Secret and a ConfigMap),
/// keeps a dependent while one of its owners is left, and honours the `orphan` and
/// `foregroundDeletion` finalizers when a client puts them on the owner.
#[test]
fn garbage_collector_any_kind_and_deletion_finalizers() {
    let up = Up::start();
    let create_owner = |name: &str, finalizers: &str| -> String {
        let manifest = up.dir.path().join(format!("{name}.json"));
        let body = format!(
            r#"{{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {{"name": "{name}", "finalizers": [{finalizers}]}}}}"#
        );
        std::fs::write(&manifest, body).unwrap();
        up.kubectl_ok(&["create", "-f", manifest.to_str().unwrap()]);
        up.kubectl_ok(&["get", "configmap", name, "-o", "jsonpath={.metadata.uid}"])
    };
    let create_dependent = |kind: &str, name: &str, owners: &[(&str, &str)]| {
        let refs: Vec<String> = owners
            .iter()
            .map(|(owner, uid)| {
                format!(
                    r#"{{"apiVersion": "v1", "kind": "ConfigMap", "name": "{owner}", "uid": "{uid}", "blockOwnerDeletion": true}}"#
                )
            })
            .collect();
        let manifest = up.dir.path().join(format!("{kind}-{name}.json"));
        let body = format!(
            r#"{{"apiVersion": "v1", "kind": "{kind}", "metadata": {{"name": "{name}", "ownerReferences": [{}]}}}}"#,
            refs.join(",")
        );
        std::fs::write(&manifest, body).unwrap();
        up.kubectl_ok(&["create", "-f", manifest.to_str().unwrap()]);
    };
    let gone = |what: &str, kind: &str, name: &str| {
        up.wait_for(what, CONVERGE, || {
            let out = up.kubectl(&["get", kind, name]);
            if String::from_utf8_lossy(&out.stderr).contains("NotFound") {
                Ok(())
            } else {
                Err(common::show(&out))
            }
        })
    };

    // Background: a Secret owned by a ConfigMap goes with it; one with a second owner stays,
    // without the reference to the deleted owner.
    let a = create_owner("owner-a", "");
    let b = create_owner("owner-b", "");
    create_dependent("Secret", "only-a", &[("owner-a", &a)]);
    create_dependent("ConfigMap", "a-and-b", &[("owner-a", &a), ("owner-b", &b)]);
    // An owner reference to an object that never existed (dangling from the start) goes too.
    create_dependent("ConfigMap", "dangling", &[("no-such-owner", "00000000-0000-0000-0000-000000000000")]);
    up.kubectl_ok(&["delete", "configmap", "owner-a"]);
    gone("the secret owned by owner-a to be collected", "secret", "only-a");
    gone("the configmap with a dangling owner reference to be collected", "configmap", "dangling");
    up.wait_for("a-and-b to lose its reference to owner-a only", CONVERGE, || {
        let refs = up.kubectl_ok(&["get", "configmap", "a-and-b", "-o", "jsonpath={.metadata.ownerReferences[*].name}"]);
        if refs == "owner-b" {
            Ok(())
        } else {
            Err(refs)
        }
    });

    // Orphan: the dependent stays, without its reference; then the owner's deletion completes.
    let o = create_owner("owner-o", r#""orphan""#);
    create_dependent("Secret", "orphaned", &[("owner-o", &o)]);
    up.kubectl_ok(&["delete", "configmap", "owner-o", "--wait=false"]);
    gone("owner-o, once its dependents are orphaned", "configmap", "owner-o");
    let refs = up.kubectl_ok(&["get", "secret", "orphaned", "-o", "jsonpath={.metadata.ownerReferences}"]);
    assert_eq!(refs.trim(), "", "the orphaned secret keeps no reference to its deleted owner");

    // Foreground: the dependent goes first, then the owner.
    let f = create_owner("owner-f", r#""foregroundDeletion""#);
    create_dependent("Secret", "blocking", &[("owner-f", &f)]);
    up.kubectl_ok(&["delete", "configmap", "owner-f", "--wait=false"]);
    gone("the blocking dependent of a foreground deletion", "secret", "blocking");
    gone("owner-f after its dependents", "configmap", "owner-f");
}

/// The ReplicaSets a Deployment controls: (name, spec.replicas, revision annotation, template
/// hash label).
fn deployment_replicasets(up: &Up, deploy_uid: &str) -> Vec<(String, i64, String, String)> {
    let mut found: Vec<(String, i64, String, String)> = up
        .items("rs", "default", None)
        .into_iter()
        .filter(|rs| controller_of(rs).is_some_and(|(kind, _, uid, _)| kind == "Deployment" && uid == deploy_uid))
        .map(|rs| {
            (
                name(&rs),
                rs["spec"]["replicas"].as_i64().unwrap_or(-1),
                rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"].as_str().unwrap_or("").to_string(),
                rs["metadata"]["labels"]["pod-template-hash"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    found.sort();
    found
}

/// `kubectl create deployment`, scale, pod replacement, `rollout status`, `set image` rolling
/// to a new ReplicaSet within maxSurge, and `delete deployment` collecting everything.
#[test]
fn deployment_create_scale_roll_out_and_delete() {
    let up = Up::start();
    up.kubectl_ok(&["create", "deployment", "web", "--image=nginx", "--replicas=3", "--", "sleep", "3600"]);
    let d = up.get_json(&["deployment", "web"]);
    let d_uid = d["metadata"]["uid"].as_str().unwrap().to_string();

    // One ReplicaSet, named after the template hash, revision 1, owning 3 pods.
    let (rs1, hash1) = up.wait_for("the first ReplicaSet at 3 replicas", CONVERGE, || {
        let rss = deployment_replicasets(&up, &d_uid);
        match rss.as_slice() {
            [(n, 3, rev, hash)] if rev == "1" && *n == format!("web-{hash}") => Ok((n.clone(), hash.clone())),
            _ => Err(format!("{rss:?}")),
        }
    });
    let rs1_json = up.get_json(&["rs", &rs1]);
    let rs1_uid = rs1_json["metadata"]["uid"].as_str().unwrap().to_string();
    assert_eq!(rs1_json["spec"]["selector"]["matchLabels"]["pod-template-hash"], hash1.as_str());
    let pods = wait_pods(&up, "default", "app=web", 3);
    for p in &pods {
        assert_eq!(controller_of(p), Some(("ReplicaSet".into(), rs1.clone(), rs1_uid.clone(), true)), "{p}");
        assert_eq!(p["metadata"]["labels"]["pod-template-hash"], hash1.as_str());
    }

    // kubectl scale, both ways.
    up.kubectl_ok(&["scale", "deployment", "web", "--replicas=5"]);
    wait_pods(&up, "default", "app=web", 5);
    up.kubectl_ok(&["scale", "deployment", "web", "--replicas=1"]);
    wait_pods(&up, "default", "app=web", 1);
    up.kubectl_ok(&["scale", "deployment", "web", "--replicas=3"]);
    let pods = wait_pods(&up, "default", "app=web", 3);

    // A deleted pod is replaced.
    let victim = name(&pods[0]);
    up.kubectl_ok(&["delete", "pod", &victim]);
    let pods = wait_pods(&up, "default", "app=web", 3);
    assert!(pods.iter().all(|p| name(p) != victim));

    // Once the kubelet has the pods running (so ready), the rollout is complete.
    up.wait_for("3 available replicas in the Deployment's status", CONVERGE, || {
        let st = up.get_json(&["deployment", "web"])["status"].clone();
        if st["availableReplicas"] == 3 && st["updatedReplicas"] == 3 {
            Ok(())
        } else {
            Err(st.to_string())
        }
    });
    let out = up.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let d = up.get_json(&["deployment", "web"]);
    let conditions = d["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let reason = |t: &str| conditions.iter().find(|c| c["type"] == t).map(|c| (c["status"].clone(), c["reason"].clone()));
    assert_eq!(reason("Available"), Some(("True".into(), "MinimumReplicasAvailable".into())), "{d}");
    assert_eq!(reason("Progressing"), Some(("True".into(), "NewReplicaSetAvailable".into())), "{d}");
    assert_eq!(d["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "1");
    assert_eq!(d["status"]["observedGeneration"], d["metadata"]["generation"]);

    // A new image: a second ReplicaSet takes over; `rollout status` (started now) finishes on
    // its own once the kubelet runs the new pods.
    up.kubectl_ok(&["set", "image", "deployment/web", "nginx=nginx:1.27"]);
    let kubeconfig = up.kubeconfig.clone();
    let status = std::thread::spawn(move || {
        let mut cmd = std::process::Command::new(up::kubectl_bin());
        cmd.arg("--kubeconfig").arg(kubeconfig).args(["rollout", "status", "deployment/web", "--timeout=60s"]);
        common::run_with_timeout(cmd, None, Duration::from_secs(90))
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !status.is_finished() {
        assert!(std::time::Instant::now() < deadline, "rollout status did not finish\n{}", up.log_tail());
        // maxSurge 25% of 3 rounds up to 1: never more than 4 pods asked for.
        let total: i64 = deployment_replicasets(&up, &d_uid).iter().map(|r| r.1).sum();
        assert!(total <= 4, "more replicas than maxSurge allows: {:?}", deployment_replicasets(&up, &d_uid));
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = status.join().unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("successfully rolled out"),
        "{}",
        common::show(&out)
    );
    let rss = deployment_replicasets(&up, &d_uid);
    assert_eq!(rss.len(), 2, "{rss:?}");
    let old = rss.iter().find(|r| r.0 == rs1).expect("the old ReplicaSet is kept as history");
    let new = rss.iter().find(|r| r.0 != rs1).unwrap();
    assert_eq!((old.1, old.2.as_str()), (0, "1"), "old scaled to 0: {rss:?}");
    assert_eq!((new.1, new.2.as_str()), (3, "2"), "new at 3, revision 2: {rss:?}");
    let pods = wait_pods(&up, "default", "app=web", 3);
    for p in &pods {
        assert_eq!(p["metadata"]["labels"]["pod-template-hash"], new.3.as_str(), "{p}");
        assert_eq!(p["spec"]["containers"][0]["image"], "nginx:1.27");
    }
    let d = up.get_json(&["deployment", "web"]);
    assert_eq!(d["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "2");

    // `rollout undo` puts the first template back: its ReplicaSet becomes the new one again,
    // as revision 3, and the second is scaled to 0.
    up.kubectl_ok(&["rollout", "undo", "deployment/web"]);
    up.wait_for("the first ReplicaSet back at 3 replicas as revision 3", CONVERGE, || {
        let rss = deployment_replicasets(&up, &d_uid);
        let back = rss.iter().any(|r| r.0 == rs1 && r.1 == 3 && r.2 == "3");
        let other_empty = rss.iter().all(|r| r.0 == rs1 || r.1 == 0);
        if back && other_empty {
            Ok(())
        } else {
            Err(format!("{rss:?}"))
        }
    });
    let history = up.kubectl_ok(&["rollout", "history", "deployment/web"]);
    assert!(history.contains('2') && history.contains('3'), "{history}");
    up.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);

    // Deleting the Deployment (background propagation) takes the ReplicaSets and pods along.
    up.kubectl_ok(&["delete", "deployment", "web"]);
    up.wait_for("the Deployment's ReplicaSets to be collected", CONVERGE, || {
        let left = up.kubectl_ok(&["get", "rs", "-o", "name"]);
        if left.trim().is_empty() {
            Ok(())
        } else {
            Err(left)
        }
    });
    wait_pods(&up, "default", "app=web", 0);
}

/// The Recreate strategy (the old pods all go before any new one is created), pause/resume,
/// and a rollout that fails at its progress deadline.
#[test]
fn deployment_recreate_pause_and_progress_deadline() {
    let up = Up::start();
    let manifest = up.dir.path().join("recreate.json");
    let body = r#"{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "rec"},
      "spec": {"replicas": 2, "strategy": {"type": "Recreate"}, "selector": {"matchLabels": {"app": "rec"}},
        "template": {"metadata": {"labels": {"app": "rec"}}, "spec": {"containers": [{"name": "c", "image": "busybox:1", "command": ["sleep", "3600"]}]}}}}"#;
    std::fs::write(&manifest, body).unwrap();
    up.kubectl_ok(&["create", "-f", manifest.to_str().unwrap()]);
    wait_pods(&up, "default", "app=rec", 2);
    up.kubectl_ok(&["set", "image", "deployment/rec", "c=busybox:2"]);
    // Sample while it converges: never an old and a new pod at once.
    up.wait_for("two busybox:2 pods and no busybox:1 pod", CONVERGE, || {
        let pods = active(up.items("pods", "default", Some("app=rec")));
        let images: Vec<String> =
            pods.iter().map(|p| p["spec"]["containers"][0]["image"].as_str().unwrap_or("").to_string()).collect();
        assert!(
            !(images.contains(&"busybox:1".to_string()) && images.contains(&"busybox:2".to_string())),
            "old and new pods at the same time: {images:?}"
        );
        if images == ["busybox:2", "busybox:2"] {
            Ok(())
        } else {
            Err(format!("{images:?}"))
        }
    });
    up.wait_for("rollout status to report success", CONVERGE, || {
        let out = up.kubectl(&["rollout", "status", "deployment/rec", "--timeout=2s"]);
        if out.status.success() {
            Ok(())
        } else {
            Err(common::show(&out))
        }
    });

    // Paused: `kubectl scale` still applies, a new template waits for `rollout resume`.
    up.kubectl_ok(&["rollout", "pause", "deployment/rec"]);
    up.kubectl_ok(&["scale", "deployment", "rec", "--replicas=3"]);
    wait_pods(&up, "default", "app=rec", 3);
    let before = up.kubectl_ok(&["get", "rs", "-l", "app=rec", "-o", "name"]);
    up.kubectl_ok(&["set", "image", "deployment/rec", "c=busybox:3"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(up.kubectl_ok(&["get", "rs", "-l", "app=rec", "-o", "name"]), before, "no rollout while paused");
    up.kubectl_ok(&["rollout", "resume", "deployment/rec"]);
    up.wait_for("three busybox:3 pods after resuming", CONVERGE, || {
        let pods = active(up.items("pods", "default", Some("app=rec")));
        let images: Vec<&str> = pods.iter().map(|p| p["spec"]["containers"][0]["image"].as_str().unwrap_or("")).collect();
        if images == ["busybox:3"; 3] {
            Ok(())
        } else {
            Err(format!("{images:?}"))
        }
    });

    // Pods that never become ready (their command exits 1, so they crash-loop): the rollout
    // fails at its progress deadline.
    let manifest = up.dir.path().join("stuck.json");
    let body = r#"{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "stuck"},
      "spec": {"replicas": 1, "progressDeadlineSeconds": 3, "selector": {"matchLabels": {"app": "stuck"}},
        "template": {"metadata": {"labels": {"app": "stuck"}}, "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c", "exit 1"]}]}}}}"#;
    std::fs::write(&manifest, body).unwrap();
    up.kubectl_ok(&["create", "-f", manifest.to_str().unwrap()]);
    let out = up.kubectl(&["rollout", "status", "deployment/stuck", "--timeout=60s"]);
    assert!(!out.status.success(), "{}", common::show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("exceeded its progress deadline"), "{}", common::show(&out));
    // The kubelet really ran the command and saw it fail.
    let pods = active(up.items("pods", "default", Some("app=stuck")));
    let exits: Vec<Value> = pods
        .iter()
        .flat_map(|p| p["status"]["containerStatuses"].as_array().cloned().unwrap_or_default())
        .map(|c| if c["lastState"]["terminated"].is_object() { c["lastState"].clone() } else { c["state"].clone() })
        .map(|s| s["terminated"]["exitCode"].clone())
        .collect();
    assert_eq!(exits, [Value::from(1)], "the stuck pod's container exited 1: {pods:?}");
}

/// Pod creations the apiserver refuses (here: a pod quota) are reported as a ReplicaFailure
/// condition and a FailedCreate event, and retried until the quota allows them.
#[test]
fn replicaset_reports_refused_pod_creations() {
    let up = Up::start();
    up.kubectl_ok(&["create", "namespace", "tight"]);
    up.kubectl_ok(&["create", "quota", "q", "-n", "tight", "--hard=pods=1"]);
    let manifest = up.dir.path().join("rs.json");
    std::fs::write(&manifest, RS_MANIFEST.replace("\"default\"", "\"tight\"")).unwrap();
    up.kubectl_ok(&["create", "-f", manifest.to_str().unwrap()]);
    up.wait_for("a ReplicaFailure condition", CONVERGE, || {
        let rs = up.get_json(&["rs", "solo", "-n", "tight"]);
        let failed = rs["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter().any(|c| c["type"] == "ReplicaFailure" && c["status"] == "True" && c["reason"] == "FailedCreate")
        });
        if failed && rs["status"]["replicas"] == 1 {
            Ok(())
        } else {
            Err(rs["status"].to_string())
        }
    });
    assert_eq!(active(up.items("pods", "tight", Some("app=solo"))).len(), 1, "the quota allows one pod");
    let events = up.kubectl_ok(&["get", "events", "-n", "tight", "-o", "jsonpath={.items[*].reason}"]);
    assert!(events.contains("FailedCreate") && events.contains("SuccessfulCreate"), "{events}");
    // With room again, the retry creates the missing pod and clears the condition.
    up.kubectl_ok(&["patch", "quota", "q", "-n", "tight", "--type=merge", "-p", r#"{"spec":{"hard":{"pods":"5"}}}"#]);
    up.wait_for("2 replicas and no ReplicaFailure condition", CONVERGE, || {
        let rs = up.get_json(&["rs", "solo", "-n", "tight"]);
        let st = &rs["status"];
        if st["replicas"] == 2 && st["conditions"].is_null() {
            Ok(())
        } else {
            Err(st.to_string())
        }
    });
}

/// `ferrokube controller-manager` as a process of its own runs the same controllers against a
/// separate `ferrokube apiserver` (no scheduler, no kubelet: the pods stay Pending): a
/// Deployment gets its ReplicaSet and pods, and they are collected when it is deleted.
#[test]
fn controller_manager_process_runs_the_workload_controllers() {
    let up = Up::start_split();
    up.kubectl_ok(&["create", "deployment", "split", "--image=nginx", "--replicas=2"]);
    let pods = wait_pods(&up, "default", "app=split", 2);
    let (kind, rs, _, _) = controller_of(&pods[0]).expect("the pods have a controller");
    assert_eq!(kind, "ReplicaSet");
    assert!(rs.starts_with("split-"), "{rs}");
    up.kubectl_ok(&["delete", "deployment", "split"]);
    wait_pods(&up, "default", "app=split", 0);
    up.wait_for("the ReplicaSet to be collected", CONVERGE, || {
        let left = up.kubectl_ok(&["get", "rs", "-o", "name"]);
        if left.trim().is_empty() {
            Ok(())
        } else {
            Err(left)
        }
    });
}

/// The README's quick start on the whole single-node cluster: `up`'s scheduler binds the pods
/// of `kubectl create deployment` to the node its kubelet registered, the kubelet runs them as
/// host processes, `kubectl delete deployment` stops them, and so does SIGTERM to `up`.
#[test]
fn quick_start_runs_a_deployment_on_the_node() {
    let mut up = Up::start();
    let nodes = up.wait_for("the kubelet's node", CONVERGE, || {
        let nodes: Vec<String> = up.items("nodes", "default", None).iter().map(name).collect();
        if nodes.len() == 1 {
            Ok(nodes)
        } else {
            Err(format!("{nodes:?}"))
        }
    });
    let node = nodes[0].clone();
    let running = |up: &Up| -> Vec<u32> {
        up.wait_for("2 pods Running on the node, with live processes", CONVERGE, || {
            let pods = active(up.items("pods", "default", Some("app=web")));
            let running: Vec<&Value> = pods.iter().filter(|p| p["status"]["phase"] == "Running").collect();
            let pids: Vec<u32> = running.iter().flat_map(|p| up::container_pids(p)).collect();
            if pods.len() != 2 || running.len() != 2 || pids.len() != 2 {
                return Err(format!("{pods:?}"));
            }
            for p in &pods {
                assert_eq!(p["spec"]["nodeName"], node.as_str(), "bound to the kubelet's node: {p}");
            }
            for pid in &pids {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                assert_eq!(cmdline, b"sleep\x003600\x00", "process {pid} runs the container's command");
            }
            Ok(pids)
        })
    };

    up.kubectl_ok(&["create", "deployment", "web", "--image=busybox", "--replicas=2", "--", "sleep", "3600"]);
    let pids = running(&up);
    up.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    up.kubectl_ok(&["delete", "deployment", "web"]);
    up.wait_for("the pods to be gone", CONVERGE, || {
        let pods: Vec<String> = up.items("pods", "default", Some("app=web")).iter().map(name).collect();
        if pods.is_empty() {
            Ok(())
        } else {
            Err(format!("{pods:?}"))
        }
    });
    up.wait_for("the pods' processes to be gone", CONVERGE, || {
        let alive: Vec<&u32> = pids.iter().filter(|p| up::process_alive(**p)).collect();
        if alive.is_empty() {
            Ok(())
        } else {
            Err(format!("still running: {alive:?}"))
        }
    });

    // Stopping `up` stops the pods it runs.
    up.kubectl_ok(&["create", "deployment", "web", "--image=busybox", "--replicas=2", "--", "sleep", "3600"]);
    let pids = running(&up);
    let status = up.terminate();
    assert!(status.is_some_and(|s| s.success()), "up exits cleanly on SIGTERM: {status:?}\n{}", up.log_tail());
    let alive: Vec<&u32> = pids.iter().filter(|p| up::process_alive(**p)).collect();
    assert!(alive.is_empty(), "pods' processes left running after up exited: {alive:?}");
}
