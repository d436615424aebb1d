//! Scoring: among the nodes that fit, which is best. Three of kube-scheduler's default score
//! plugins, with its weights and normalisation:
//!
//! - NodeResourcesFit, `LeastAllocated` (weight 1), so pods spread out: per resource (cpu,
//!   memory, equal weights) `(allocatable - requested) * 100 / allocatable` with the pod
//!   placed, 0 when the node has none of it or would be over; the integer mean of the two.
//!   Worked example: 4 cpu allocatable, 1 requested, a pod of 1 → cpu 50; 8Gi memory, 2Gi
//!   requested, a pod of 2Gi → memory 50; score 50.
//! - NodeAffinity (weight 2): the summed weights of the pod's preferred node affinity terms
//!   the node matches, scaled so the best node gets 100.
//! - TaintToleration (weight 3): how many PreferNoSchedule taints the pod does not tolerate,
//!   reversed and scaled: none → 100, the most → 0.

use apiserver::admission::quantity::Quantity;

use k8s_openapi::api::core::v1::Pod;

use super::cache::NodeInfo;
use super::filter;
use super::resources::{self, Demand};

/// The highest score a node gets.
pub const MAX_SCORE: i64 = 100;

/// The score of one resource: the free share after placing `want`, in 0..=100.
pub fn least_allocated(allocatable: Quantity, requested: Quantity) -> i64 {
    if allocatable <= Quantity::ZERO || requested > allocatable {
        return 0;
    }
    let free = (allocatable - requested).as_f64() / allocatable.as_f64();
    ((free * MAX_SCORE as f64).floor() as i64).clamp(0, MAX_SCORE)
}

/// NodeResourcesFit's score of a node for a pod (higher is better).
pub fn score(demand: &Demand, info: &NodeInfo) -> i64 {
    let per = |name: &str| {
        let requested =
            resources::get(&info.nonzero_requested, name) + resources::get(&demand.nonzero, name);
        least_allocated(resources::get(&info.allocatable, name), requested)
    };
    (per(resources::CPU) + per(resources::MEMORY)) / 2
}

/// The summed weights of the pod's preferred node affinity terms this node matches.
pub fn preferred_affinity(pod: &Pod, info: &NodeInfo) -> i64 {
    let preferred = pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        });
    let empty = Default::default();
    let labels = info.node.metadata.labels.as_ref().unwrap_or(&empty);
    preferred
        .into_iter()
        .flatten()
        .filter(|t| filter::term_matches(&t.preference, labels, &info.name))
        .map(|t| i64::from(t.weight))
        .sum()
}

/// How many of the node's PreferNoSchedule taints the pod does not tolerate (only
/// tolerations for that effect, or for every effect, count).
pub fn intolerable_soft_taints(pod: &Pod, info: &NodeInfo) -> i64 {
    let tolerations: Vec<_> = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_ref())
        .into_iter()
        .flatten()
        .filter(|t| {
            matches!(
                t.effect.as_deref(),
                None | Some("") | Some("PreferNoSchedule")
            )
        })
        .collect();
    let taints = info.node.spec.as_ref().and_then(|s| s.taints.as_ref());
    taints
        .into_iter()
        .flatten()
        .filter(|taint| taint.effect == "PreferNoSchedule")
        .filter(|taint| !tolerations.iter().any(|t| filter::tolerates(t, taint)))
        .count() as i64
}

/// kube's `DefaultNormalizeScore`: scales raw scores so the largest becomes 100 (`reverse`:
/// the largest becomes 0 and zero 100); all zero stays all zero (reversed: all 100).
pub fn normalize(raw: &[i64], reverse: bool) -> Vec<i64> {
    let max = raw.iter().copied().max().unwrap_or(0);
    raw.iter()
        .map(|&r| {
            let scaled = if max > 0 { MAX_SCORE * r / max } else { 0 };
            if reverse {
                MAX_SCORE - scaled
            } else {
                scaled
            }
        })
        .collect()
}

/// The final scores of the feasible nodes for a pod: each plugin's normalised score times its
/// weight (kube's defaults: resources 1, node affinity 2, taints 3), summed.
pub fn score_all<'a>(pod: &Pod, demand: &Demand, feasible: &[&'a NodeInfo]) -> Vec<(&'a str, i64)> {
    let affinity: Vec<i64> = feasible
        .iter()
        .map(|i| preferred_affinity(pod, i))
        .collect();
    let taints: Vec<i64> = feasible
        .iter()
        .map(|i| intolerable_soft_taints(pod, i))
        .collect();
    let (affinity, taints) = (normalize(&affinity, false), normalize(&taints, true));
    feasible
        .iter()
        .enumerate()
        .map(|(k, info)| {
            (
                info.name.as_str(),
                score(demand, info) + 2 * affinity[k] + 3 * taints[k],
            )
        })
        .collect()
}

/// The best of the candidates (`(name, score)`): the highest score, and among equal scores
/// the first name, so the choice does not depend on map order.
pub fn best<'a>(scored: impl IntoIterator<Item = (&'a str, i64)>) -> Option<&'a str> {
    scored
        .into_iter()
        .max_by(|(an, a), (bn, b)| a.cmp(b).then_with(|| bn.cmp(an)))
        .map(|(n, _)| n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Node;
    use serde_json::json;
    use std::sync::Arc;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    fn info(cpu: &str, memory: &str) -> NodeInfo {
        let n: Node = serde_json::from_value(json!({"metadata": {"name": "n"}, "status": {"allocatable": {"cpu": cpu, "memory": memory}}})).unwrap();
        NodeInfo::new(Arc::new(n))
    }

    fn demand(cpu: &str, memory: &str) -> Demand {
        let p: Pod =
            serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "c", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}}))
            .unwrap();
        resources::demand(&p)
    }

    #[test]
    fn the_free_share_after_placing_the_pod() {
        assert_eq!(least_allocated(q("4"), q("1")), 75);
        assert_eq!(least_allocated(q("4"), q("4")), 0);
        assert_eq!(least_allocated(q("4"), q("5")), 0, "over");
        assert_eq!(least_allocated(Quantity::ZERO, q("1")), 0, "none of it");
        assert_eq!(least_allocated(q("3"), q("1")), 66, "floored");
    }

    #[test]
    fn the_worked_example_and_defaults_for_pods_without_requests() {
        let mut node = info("4", "8Gi");
        node.add(&demand("1", "2Gi"));
        assert_eq!(score(&demand("1", "2Gi"), &node), 50);
        // A pod without requests still counts 100m / 200Mi, so an emptier node scores higher.
        let empty: Pod = serde_json::from_value(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}}),
        )
        .unwrap();
        let d = resources::demand(&empty);
        let fresh = info("4", "8Gi");
        assert!(score(&d, &fresh) > score(&d, &node));
    }

    fn tainted_labelled(
        name: &str,
        labels: serde_json::Value,
        taints: serde_json::Value,
    ) -> NodeInfo {
        let n: Node = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi"}},
        }))
        .unwrap();
        NodeInfo::new(Arc::new(n))
    }

    #[test]
    fn normalisation_scales_to_the_best_and_reverses_counts() {
        assert_eq!(normalize(&[0, 5, 10], false), [0, 50, 100]);
        assert_eq!(normalize(&[0, 0], false), [0, 0]);
        assert_eq!(normalize(&[0, 1, 2], true), [100, 50, 0]);
        assert_eq!(normalize(&[0, 0], true), [100, 100]);
    }

    #[test]
    fn preferred_affinity_and_soft_taints_steer_the_choice() {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {
            "containers": [{"name": "c"}],
            "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}},
                {"weight": 30, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}},
            ]}},
            "tolerations": [{"key": "tolerated", "operator": "Exists", "effect": "PreferNoSchedule"}],
        }}))
        .unwrap();
        let d = resources::demand(&pod);
        let soft = json!([{"key": "busy", "effect": "PreferNoSchedule"}]);
        let a = tainted_labelled("a", json!({"zone": "z1"}), json!([]));
        let b = tainted_labelled("b", json!({"zone": "z1", "disk": "ssd"}), soft.clone());
        let c = tainted_labelled(
            "c",
            json!({}),
            json!([{"key": "tolerated", "effect": "PreferNoSchedule"}]),
        );
        assert_eq!(
            (preferred_affinity(&pod, &a), preferred_affinity(&pod, &b)),
            (10, 40)
        );
        assert_eq!(
            (
                intolerable_soft_taints(&pod, &b),
                intolerable_soft_taints(&pod, &c)
            ),
            (1, 0)
        );
        let base = score(&d, &a);
        // a: affinity 25 * 2 + taints 100 * 3; b: 100 * 2 + 0; c: 0 + 100 * 3.
        let scores = score_all(&pod, &d, &[&a, &b, &c]);
        assert_eq!(
            scores,
            [("a", base + 50 + 300), ("b", base + 200), ("c", base + 300)]
        );
        assert_eq!(best(scores), Some("a"));
    }

    #[test]
    fn ties_go_to_the_first_name() {
        assert_eq!(best([("b", 50), ("a", 50), ("c", 10)]), Some("a"));
        assert_eq!(best([("b", 60), ("a", 50)]), Some("b"));
        assert_eq!(best([]), None);
    }
}
