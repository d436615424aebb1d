//! One scheduling decision, as a pure function: which pods wait for a node, in which order,
//! where one goes (filter, then score), and kube-scheduler's message when it fits nowhere.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::Pod;

use super::cache::{self, NodeInfo};
use super::filter;
use super::resources::Demand;
use super::score;

/// The scheduler name this scheduler answers to (pods naming none get it by default).
pub const SCHEDULER_NAME: &str = "default-scheduler";

/// Why a pod fits on no node: how many nodes there were and how many failed for each reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FitError {
    /// How many nodes were considered.
    pub nodes: usize,
    /// Reason → number of nodes that gave it.
    pub reasons: BTreeMap<String, usize>,
}

/// kube-scheduler's wording: `0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had
/// untolerated taint {k: v}.`: "count reason" strings sorted as strings, as kube sorts them.
impl fmt::Display for FitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nodes == 0 {
            return f.write_str("no nodes available to schedule pods");
        }
        let mut parts: Vec<String> = self
            .reasons
            .iter()
            .map(|(r, n)| format!("{n} {r}"))
            .collect();
        parts.sort();
        write!(
            f,
            "0/{} nodes are available: {}.",
            self.nodes,
            parts.join(", ")
        )
    }
}

/// Whether this scheduler should place the pod: not bound, not being deleted, not finished,
/// ours by `schedulerName`, and not held back by scheduling gates.
pub fn is_pending(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    let ours = matches!(
        spec.scheduler_name.as_deref(),
        None | Some("") | Some(SCHEDULER_NAME)
    );
    let gated = spec
        .scheduling_gates
        .as_ref()
        .is_some_and(|g| !g.is_empty());
    ours && !gated
        && cache::node_name(pod).is_none()
        && pod.metadata.deletion_timestamp.is_none()
        && !cache::is_terminal(pod)
}

/// The order pods are tried in (kube's PrioritySort): higher priority first, then older
/// first, then by namespace/name.
pub fn queue_order(pods: &mut [std::sync::Arc<Pod>]) {
    pods.sort_by_key(|p| {
        let priority = p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
        let created = p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        (
            Reverse(priority),
            created,
            p.metadata.namespace.clone(),
            p.metadata.name.clone(),
        )
    });
}

/// Where the pod goes: the best-scoring node among those every filter accepts, or why none
/// does.
pub fn schedule(
    pod: &Pod,
    demand: &Demand,
    nodes: &BTreeMap<String, NodeInfo>,
) -> Result<String, FitError> {
    let mut reasons = BTreeMap::new();
    let mut feasible = Vec::new();
    for info in nodes.values() {
        match filter::filter(pod, demand, info) {
            Ok(()) => feasible.push(info),
            Err(rs) => {
                for r in rs {
                    *reasons.entry(r).or_insert(0) += 1;
                }
            }
        }
    }
    let scored = score::score_all(pod, demand, &feasible);
    score::best(scored).map(str::to_string).ok_or(FitError {
        nodes: nodes.len(),
        reasons,
    })
}

/// Whether the pod's PodScheduled condition already says exactly this (so reporting it again
/// would only be noise, and a write that changes nothing).
pub fn already_reported(pod: &Pod, message: &str) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
                && c.message.as_deref() == Some(message)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::cache::{snapshot, Assumed};
    use crate::scheduler::resources;
    use k8s_openapi::api::core::v1::Node;
    use serde_json::{json, Value};
    use std::sync::Arc;

    fn node(name: &str, cpu: &str, spec: Value) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name},
                "spec": spec,
                "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"}, "conditions": [{"type": "Ready", "status": "True"}]},
            }))
            .unwrap(),
        )
    }

    fn pod(name: &str, cpu: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
                "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]},
            }))
            .unwrap(),
        )
    }

    #[test]
    fn the_message_counts_reasons_per_node_sorted_as_kube_does() {
        let mut reasons = BTreeMap::new();
        reasons.insert("node(s) had untolerated taint {k: v}".to_string(), 2);
        reasons.insert("Insufficient cpu".to_string(), 1);
        let e = FitError { nodes: 3, reasons };
        assert_eq!(
            e.to_string(),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {k: v}."
        );
        assert_eq!(
            FitError {
                nodes: 0,
                reasons: BTreeMap::new()
            }
            .to_string(),
            "no nodes available to schedule pods"
        );
    }

    #[test]
    fn a_pod_that_fits_nowhere_gets_every_nodes_reasons() {
        let nodes = [
            node("a", "1", json!({})),
            node(
                "b",
                "8",
                json!({"taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]}),
            ),
            node("c", "8", json!({"unschedulable": true})),
            node(
                "d",
                "8",
                json!({"taints": [{"key": "k", "value": "v", "effect": "NoExecute"}]}),
            ),
        ];
        let p = pod("big", "2");
        let s = snapshot(&nodes, &[], &Assumed::default());
        let e = schedule(&p, &resources::demand(&p), &s).unwrap_err();
        assert_eq!(
            e.to_string(),
            "0/4 nodes are available: 1 Insufficient cpu, 1 node(s) were unschedulable, 2 node(s) had untolerated taint {k: v}."
        );
    }

    #[test]
    fn pods_spread_by_least_allocated_and_assumed_pods_fill_nodes() {
        // Two nodes of 2 cpu; five pods of 1 cpu, placed one after another as the driver does:
        // a, b, a, b, then nothing fits.
        let nodes = [node("b", "2", json!({})), node("a", "2", json!({}))];
        let t0 = std::time::Instant::now();
        let mut assumed = Assumed::default();
        let mut placed = Vec::new();
        for i in 0..5 {
            let p = pod(&format!("p{i}"), "1");
            let s = snapshot(&nodes, &[], &assumed);
            match schedule(&p, &resources::demand(&p), &s) {
                Ok(n) => {
                    assumed.assume(&p, &n, t0);
                    placed.push(n);
                }
                Err(e) => placed.push(e.to_string()),
            }
        }
        assert_eq!(
            placed,
            [
                "a",
                "b",
                "a",
                "b",
                "0/2 nodes are available: 2 Insufficient cpu."
            ]
        );
    }

    #[test]
    fn only_unbound_live_pods_of_ours_are_pending_and_high_priority_goes_first() {
        let plain = pod("plain", "1");
        assert!(is_pending(&plain));
        let with = |patch: Value| {
            let mut v = serde_json::to_value(plain.as_ref()).unwrap();
            json_patch_merge(&mut v, &patch);
            serde_json::from_value::<Pod>(v).unwrap()
        };
        assert!(is_pending(&with(
            json!({"spec": {"schedulerName": "default-scheduler"}})
        )));
        assert!(!is_pending(&with(
            json!({"spec": {"schedulerName": "other"}})
        )));
        assert!(!is_pending(&with(json!({"spec": {"nodeName": "a"}}))));
        assert!(!is_pending(&with(
            json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}})
        )));
        assert!(!is_pending(&with(json!({"status": {"phase": "Failed"}}))));
        assert!(!is_pending(&with(
            json!({"spec": {"schedulingGates": [{"name": "wait"}]}})
        )));

        let mut queue = vec![
            Arc::new(with(
                json!({"metadata": {"name": "old", "creationTimestamp": "2026-01-01T00:00:00Z"}}),
            )),
            Arc::new(with(
                json!({"metadata": {"name": "new", "creationTimestamp": "2026-01-02T00:00:00Z"}}),
            )),
            Arc::new(with(
                json!({"metadata": {"name": "vip", "creationTimestamp": "2026-01-03T00:00:00Z"}, "spec": {"priority": 1000}}),
            )),
        ];
        queue_order(&mut queue);
        let names: Vec<_> = queue
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["vip", "old", "new"]);
    }

    #[test]
    fn an_identical_unschedulable_condition_is_not_reported_twice() {
        let mut p = (*pod("p", "1")).clone();
        assert!(!already_reported(&p, "m"));
        p.status = Some(
            serde_json::from_value(json!({"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "m"}]}))
                .unwrap(),
        );
        assert!(already_reported(&p, "m"));
        assert!(!already_reported(&p, "another message"));
    }

    fn json_patch_merge(target: &mut Value, patch: &Value) {
        match (target, patch) {
            (Value::Object(t), Value::Object(p)) => {
                for (k, v) in p {
                    json_patch_merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
            (t, p) => *t = p.clone(),
        }
    }
}
