//! What a pod asks of a node, counted as kube-scheduler counts it.
//!
//! A container requests what `resources.requests` says; a resource it only limits requests its
//! limit. A pod requests the sum over its containers, or more if an init container needs more
//! while it runs: init containers run one at a time before the others, so each one counts on
//! its own (plus the sidecars, `restartPolicy: Always` init containers, started before it) and
//! the pod needs the larger of the two. `spec.overhead` comes on top.
//!
//! Worked example: containers of 200m and 300m cpu, init containers of 1 and 100m cpu: the pod
//! requests max(200m + 300m, 1, 100m) = 1 cpu.

use std::collections::BTreeMap;

use apiserver::admission::quantity::{Quantity, ResourceList};
use k8s_openapi::api::core::v1::{Container, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;

/// The resource name of the pod count a node allows (`status.allocatable.pods`).
pub const PODS: &str = "pods";
/// CPU, in cores.
pub const CPU: &str = "cpu";
/// Memory, in bytes.
pub const MEMORY: &str = "memory";

/// What scoring assumes a container without a cpu request uses (kube's 100m).
fn default_cpu() -> Quantity {
    Quantity::parse("100m").expect("a valid quantity")
}

/// What scoring assumes a container without a memory request uses (kube's 200Mi).
fn default_memory() -> Quantity {
    Quantity::parse("200Mi").expect("a valid quantity")
}

/// Parses an API resource map; entries that are not quantities are left out (the apiserver
/// validated them, and a bad one must not stop scheduling).
pub fn parse_list(list: Option<&BTreeMap<String, ApiQuantity>>) -> ResourceList {
    list.into_iter()
        .flatten()
        .filter_map(|(k, q)| Quantity::parse(&q.0).map(|q| (k.clone(), q)))
        .collect()
}

/// `acc += other`, resource by resource.
pub fn add(acc: &mut ResourceList, other: &ResourceList) {
    for (k, q) in other {
        let sum = acc.get(k).copied().unwrap_or(Quantity::ZERO) + *q;
        acc.insert(k.clone(), sum);
    }
}

/// `acc = max(acc, other)`, resource by resource.
fn max_into(acc: &mut ResourceList, other: &ResourceList) {
    for (k, q) in other {
        if acc.get(k).is_none_or(|cur| cur < q) {
            acc.insert(k.clone(), *q);
        }
    }
}

/// The amount of `name` in a list (zero when absent).
pub fn get(list: &ResourceList, name: &str) -> Quantity {
    list.get(name).copied().unwrap_or(Quantity::ZERO)
}

/// A container's requests, with limits standing in for requests it does not state.
pub fn container_requests(c: &Container) -> ResourceList {
    let resources = c.resources.as_ref();
    let mut out = parse_list(resources.and_then(|r| r.requests.as_ref()));
    for (k, q) in parse_list(resources.and_then(|r| r.limits.as_ref())) {
        out.entry(k).or_insert(q);
    }
    out
}

/// A container's requests for scoring: cpu and memory only, with kube's defaults for a
/// container that states none, so that pods without requests still spread.
fn container_nonzero_requests(c: &Container) -> ResourceList {
    let stated = container_requests(c);
    let mut out = ResourceList::new();
    out.insert(
        CPU.into(),
        stated.get(CPU).copied().unwrap_or_else(default_cpu),
    );
    out.insert(
        MEMORY.into(),
        stated.get(MEMORY).copied().unwrap_or_else(default_memory),
    );
    out
}

/// Combines per-container amounts into the pod's (see the module comment).
fn aggregate(pod: &Pod, per_container: impl Fn(&Container) -> ResourceList) -> ResourceList {
    let Some(spec) = pod.spec.as_ref() else {
        return ResourceList::new();
    };
    let mut sum = ResourceList::new();
    for c in &spec.containers {
        add(&mut sum, &per_container(c));
    }
    let mut sidecars = ResourceList::new();
    let mut init_peak = ResourceList::new();
    for c in spec.init_containers.iter().flatten() {
        let own = per_container(c);
        if c.restart_policy.as_deref() == Some("Always") {
            add(&mut sidecars, &own);
            max_into(&mut init_peak, &sidecars);
        } else {
            let mut running = sidecars.clone();
            add(&mut running, &own);
            max_into(&mut init_peak, &running);
        }
    }
    add(&mut sum, &sidecars);
    max_into(&mut sum, &init_peak);
    add(&mut sum, &parse_list(spec.overhead.as_ref()));
    sum
}

/// What a pod takes from a node: its requests (for the fit check) and its cpu/memory with
/// defaults (for scoring).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Demand {
    /// Requests by resource name, without the pod count.
    pub requests: ResourceList,
    /// cpu and memory with kube's non-zero defaults (100m, 200Mi per container).
    pub nonzero: ResourceList,
    /// The host ports the pod's containers bind.
    pub host_ports: Vec<HostPort>,
}

/// One host port a pod binds: (protocol, host IP, port).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct HostPort {
    /// TCP, UDP or SCTP.
    pub protocol: String,
    /// The host IP, `0.0.0.0` for all.
    pub ip: String,
    /// The port number.
    pub port: i32,
}

impl HostPort {
    /// Whether two pods binding these could not share a node.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        let wildcard = |ip: &str| ip == "0.0.0.0" || ip == "::";
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || wildcard(&self.ip) || wildcard(&other.ip))
    }
}

/// A pod's demand on the node it runs on.
pub fn demand(pod: &Pod) -> Demand {
    let host_ports = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.is_some_and(|h| h > 0))
        .map(|p| HostPort {
            protocol: p
                .protocol
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "TCP".into()),
            ip: p
                .host_ip
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "0.0.0.0".into()),
            port: p.host_port.unwrap_or_default(),
        })
        .collect();
    Demand {
        requests: aggregate(pod, container_requests),
        nonzero: aggregate(pod, container_nonzero_requests),
        host_ports,
    }
}

/// What a node offers (`status.allocatable`); a resource it does not list is zero.
pub fn allocatable(node: &Node) -> ResourceList {
    parse_list(node.status.as_ref().and_then(|s| s.allocatable.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "default"}, "spec": spec}),
        )
        .unwrap()
    }

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    #[test]
    fn containers_sum_and_limits_stand_in_for_missing_requests() {
        let p = pod(json!({"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}},
            {"name": "b", "resources": {"limits": {"cpu": "0.5", "memory": "1Gi"}, "requests": {"memory": "128Mi"}}},
            {"name": "c", "resources": {"requests": {"ephemeral-storage": "1e3", "example.com/gpu": "1"}}},
        ]}));
        let d = demand(&p);
        assert_eq!(get(&d.requests, CPU), q("750m"));
        assert_eq!(
            get(&d.requests, MEMORY),
            q("192Mi"),
            "b's own request wins over its limit"
        );
        assert_eq!(get(&d.requests, "ephemeral-storage"), q("1k"));
        assert_eq!(get(&d.requests, "example.com/gpu"), q("1"));
        // Scoring: c states no cpu/memory, so it counts kube's defaults.
        assert_eq!(get(&d.nonzero, CPU), q("850m"));
        assert_eq!(get(&d.nonzero, MEMORY), q("392Mi"));
    }

    #[test]
    fn init_containers_count_as_the_larger_of_their_peak_and_the_containers() {
        let p = pod(json!({
            "initContainers": [
                {"name": "big", "resources": {"requests": {"cpu": "1", "memory": "10Mi"}}},
                {"name": "small", "resources": {"requests": {"cpu": "100m"}}},
            ],
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "200m", "memory": "1Gi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "300m"}}},
            ],
            "overhead": {"cpu": "10m"},
        }));
        let d = demand(&p);
        assert_eq!(get(&d.requests, CPU), q("1010m"), "max(500m, 1) + overhead");
        assert_eq!(
            get(&d.requests, MEMORY),
            q("1Gi"),
            "the containers' memory exceeds the init peak"
        );
    }

    #[test]
    fn sidecars_run_alongside_later_init_containers_and_the_app() {
        let p = pod(json!({
            "initContainers": [
                {"name": "proxy", "restartPolicy": "Always", "resources": {"requests": {"cpu": "200m"}}},
                {"name": "migrate", "resources": {"requests": {"cpu": "1"}}},
            ],
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "500m"}}}],
        }));
        // Peak while migrating: 200m + 1; while running: 500m + 200m.
        assert_eq!(get(&demand(&p).requests, CPU), q("1200m"));
    }

    #[test]
    fn host_ports_default_protocol_and_ip_and_conflict_on_wildcards() {
        let p = pod(json!({"containers": [{"name": "a", "ports": [
            {"containerPort": 80, "hostPort": 8080},
            {"containerPort": 53, "hostPort": 53, "protocol": "UDP", "hostIP": "127.0.0.1"},
            {"containerPort": 9000},
        ]}]}));
        let ports = demand(&p).host_ports;
        assert_eq!(ports.len(), 2, "{ports:?}");
        let tcp = HostPort {
            protocol: "TCP".into(),
            ip: "10.0.0.1".into(),
            port: 8080,
        };
        assert!(ports[0].conflicts(&tcp), "0.0.0.0 covers every address");
        let udp_other_ip = HostPort {
            protocol: "UDP".into(),
            ip: "127.0.0.2".into(),
            port: 53,
        };
        assert!(!ports[1].conflicts(&udp_other_ip));
        let tcp53 = HostPort {
            protocol: "TCP".into(),
            ip: "127.0.0.1".into(),
            port: 53,
        };
        assert!(!ports[1].conflicts(&tcp53), "another protocol");
    }

    #[test]
    fn a_pod_without_spec_or_with_bad_quantities_asks_for_nothing_rather_than_failing() {
        let p: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}})).unwrap();
        assert!(demand(&p).requests.is_empty());
        let p = pod(
            json!({"containers": [{"name": "a", "resources": {"requests": {"cpu": "lots", "memory": "1Mi"}}}]}),
        );
        let d = demand(&p);
        assert_eq!(d.requests.get(CPU), None);
        assert_eq!(get(&d.requests, MEMORY), q("1Mi"));
    }
}
