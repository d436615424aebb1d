//! Scoring: among the nodes that fit, prefer the least allocated (kube-scheduler's
//! NodeResourcesFit `LeastAllocated` strategy), so pods spread out.
//!
//! Per resource (cpu, memory, equal weights): `(allocatable - requested) * 100 / allocatable`
//! with the pod placed, 0 when the node has none of it or would be over; the node's score is
//! the integer mean. Worked example: 4 cpu allocatable, 1 requested, a pod of 1 → cpu 50; 8Gi
//! memory, 2Gi requested, a pod of 2Gi → memory 50; score 50.

use apiserver::admission::quantity::Quantity;

use super::cache::NodeInfo;
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

/// A node's score for a pod (higher is better).
pub fn score(demand: &Demand, info: &NodeInfo) -> i64 {
    let per = |name: &str| {
        let requested =
            resources::get(&info.nonzero_requested, name) + resources::get(&demand.nonzero, name);
        least_allocated(resources::get(&info.allocatable, name), requested)
    };
    (per(resources::CPU) + per(resources::MEMORY)) / 2
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
    use k8s_openapi::api::core::v1::{Node, Pod};
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

    #[test]
    fn ties_go_to_the_first_name() {
        assert_eq!(best([("b", 50), ("a", 50), ("c", 10)]), Some("a"));
        assert_eq!(best([("b", 60), ("a", 50)]), Some("b"));
        assert_eq!(best([]), None);
    }
}
