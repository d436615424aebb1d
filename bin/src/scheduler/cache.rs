//! The scheduler's view of each node: what the pods on it already take, including pods this
//! scheduler bound a moment ago that its watch has not shown bound yet ("assumed" pods, as
//! kube-scheduler calls them). Without them a burst of pods would all see the same empty node
//! and land on it beyond its capacity.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apiserver::admission::quantity::{Quantity, ResourceList};
use k8s_openapi::api::core::v1::{Node, Pod};

use super::resources::{self, Demand, HostPort};

/// How long an assumed pod counts if the watch never shows it bound (a lost event, a binding
/// that the apiserver answered but did not keep): afterwards the watch is the truth again.
pub const ASSUME_TTL: Duration = Duration::from_secs(60);

/// A node and what is already placed on it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// The node object.
    pub node: Arc<Node>,
    /// The node's name.
    pub name: String,
    /// `status.allocatable`.
    pub allocatable: ResourceList,
    /// The sum of the requests of the pods on it.
    pub requested: ResourceList,
    /// The sum of their cpu/memory with scoring defaults.
    pub nonzero_requested: ResourceList,
    /// How many pods are on it.
    pub pod_count: i64,
    /// The host ports in use.
    pub host_ports: Vec<HostPort>,
}

impl NodeInfo {
    /// An empty node.
    pub fn new(node: Arc<Node>) -> Self {
        Self {
            name: node.metadata.name.clone().unwrap_or_default(),
            allocatable: resources::allocatable(&node),
            node,
            requested: ResourceList::new(),
            nonzero_requested: ResourceList::new(),
            pod_count: 0,
            host_ports: Vec::new(),
        }
    }

    /// Counts one more pod on this node.
    pub fn add(&mut self, demand: &Demand) {
        resources::add(&mut self.requested, &demand.requests);
        resources::add(&mut self.nonzero_requested, &demand.nonzero);
        self.pod_count += 1;
        self.host_ports.extend(demand.host_ports.iter().cloned());
    }

    /// How many pods the node allows (`allocatable.pods`, zero when absent, as kube).
    pub fn allowed_pods(&self) -> Quantity {
        resources::get(&self.allocatable, resources::PODS)
    }
}

/// Whether a pod has finished and no longer holds its node's resources.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// The node a pod is bound to, if any.
pub fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// A pod's uid (the assumed-pod key; a pod recreated under the same name is another pod).
pub fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

/// A pod this scheduler bound whose binding the watch has not shown yet.
#[derive(Debug, Clone)]
pub struct AssumedPod {
    /// Where it was bound.
    pub node: String,
    /// What it takes there.
    pub demand: Demand,
    /// When it was bound.
    pub since: Instant,
}

/// Assumed pods by uid.
#[derive(Debug, Default)]
pub struct Assumed {
    pods: HashMap<String, AssumedPod>,
}

impl Assumed {
    /// Records a pod just bound to `node`.
    pub fn assume(&mut self, pod: &Pod, node: &str, now: Instant) {
        self.pods.insert(
            uid(pod).to_string(),
            AssumedPod {
                node: node.to_string(),
                demand: resources::demand(pod),
                since: now,
            },
        );
    }

    /// Whether this pod was bound by us and is waiting for the watch to show it.
    pub fn contains(&self, uid: &str) -> bool {
        self.pods.contains_key(uid)
    }

    /// Drops assumptions the watch has caught up with: the pod shows as bound (the node's
    /// pods count it now), is gone, or the assumption is older than [`ASSUME_TTL`].
    pub fn settle(&mut self, pods: &[Arc<Pod>], now: Instant) {
        let seen: HashMap<&str, &Pod> = pods.iter().map(|p| (uid(p), p.as_ref())).collect();
        self.pods.retain(|uid, a| {
            let fresh = now.saturating_duration_since(a.since) < ASSUME_TTL;
            let unbound_in_cache = seen
                .get(uid.as_str())
                .is_some_and(|p| node_name(p).is_none());
            fresh && unbound_in_cache
        });
    }

    /// The assumed pods, by uid.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &AssumedPod)> {
        self.pods.iter()
    }
}

/// Every node with what its pods (bound and not finished, plus assumed) take, by name.
pub fn snapshot(
    nodes: &[Arc<Node>],
    pods: &[Arc<Pod>],
    assumed: &Assumed,
) -> BTreeMap<String, NodeInfo> {
    let mut infos: BTreeMap<String, NodeInfo> = nodes
        .iter()
        .map(|n| NodeInfo::new(n.clone()))
        .map(|info| (info.name.clone(), info))
        .collect();
    let mut counted = std::collections::HashSet::new();
    for pod in pods {
        let Some(node) = node_name(pod) else { continue };
        if is_terminal(pod) {
            continue;
        }
        counted.insert(uid(pod));
        if let Some(info) = infos.get_mut(node) {
            info.add(&resources::demand(pod));
        }
    }
    for (uid, a) in assumed.iter() {
        if counted.contains(uid.as_str()) {
            continue;
        }
        if let Some(info) = infos.get_mut(&a.node) {
            info.add(&a.demand);
        }
    }
    infos
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str) -> Arc<Node> {
        Arc::new(serde_json::from_value(json!({"metadata": {"name": name}, "status": {"allocatable": {"cpu": "4", "pods": "110"}}})).unwrap())
    }

    fn pod(name: &str, node: Option<&str>, phase: Option<&str>, cpu: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
                "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]},
                "status": {"phase": phase},
            }))
            .unwrap(),
        )
    }

    fn cpu(info: &NodeInfo) -> String {
        resources::get(&info.requested, resources::CPU).to_string()
    }

    #[test]
    fn bound_running_pods_count_and_finished_or_unbound_ones_do_not() {
        let nodes = [node("a"), node("b")];
        let pods = [
            pod("run", Some("a"), Some("Running"), "1"),
            pod("pending-bound", Some("a"), None, "500m"),
            pod("done", Some("a"), Some("Succeeded"), "2"),
            pod("failed", Some("b"), Some("Failed"), "2"),
            pod("unbound", None, None, "3"),
            pod("elsewhere", Some("gone-node"), None, "3"),
        ];
        let s = snapshot(&nodes, &pods, &Assumed::default());
        assert_eq!(cpu(&s["a"]), "1500m");
        assert_eq!(s["a"].pod_count, 2);
        assert_eq!(cpu(&s["b"]), "0");
        assert_eq!(s["b"].pod_count, 0);
    }

    #[test]
    fn assumed_pods_count_until_the_watch_shows_them_bound_then_only_once() {
        let nodes = [node("a")];
        let t0 = Instant::now();
        let mut assumed = Assumed::default();
        let unbound = pod("p", None, None, "1");
        assumed.assume(&unbound, "a", t0);
        let s = snapshot(&nodes, std::slice::from_ref(&unbound), &assumed);
        assert_eq!(
            (cpu(&s["a"]), s["a"].pod_count),
            ("1".to_string(), 1),
            "assumed, not yet seen bound"
        );

        // The watch shows it bound: counted once, and the assumption goes.
        let bound = [pod("p", Some("a"), None, "1")];
        let s = snapshot(&nodes, &bound, &assumed);
        assert_eq!((cpu(&s["a"]), s["a"].pod_count), ("1".to_string(), 1));
        assumed.settle(&bound, t0);
        assert!(!assumed.contains("uid-p"));
    }

    #[test]
    fn assumptions_about_deleted_pods_or_too_old_ones_are_dropped() {
        let t0 = Instant::now();
        let mut assumed = Assumed::default();
        let p = pod("p", None, None, "1");
        assumed.assume(&p, "a", t0);
        assumed.settle(std::slice::from_ref(&p), t0 + Duration::from_secs(1));
        assert!(
            assumed.contains("uid-p"),
            "still unbound in the cache: keep"
        );
        assumed.settle(std::slice::from_ref(&p), t0 + ASSUME_TTL);
        assert!(!assumed.contains("uid-p"), "too old");
        assumed.assume(&p, "a", t0);
        assumed.settle(&[], t0);
        assert!(!assumed.contains("uid-p"), "deleted");
    }
}
