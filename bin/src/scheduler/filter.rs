//! Filters: can this pod run on this node? Each check is a pure function; `filter` runs them
//! in kube-scheduler's plugin order (NodeUnschedulable, TaintToleration, NodeAffinity,
//! NodePorts, NodeResourcesFit) and stops at the first that fails, whose reasons (kube's
//! wording) go into the "0/3 nodes are available: ..." message.

use std::collections::BTreeMap;

use apiserver::admission::quantity::Quantity;
use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, Taint, Toleration,
};

use super::cache::NodeInfo;
use super::resources::{self, Demand};

/// The taint kube puts on a cordoned node; tolerating it lets a pod onto one.
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
/// The taint kube's node lifecycle controller puts on a node whose Ready condition is False.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// ... and on one whose Ready condition is Unknown or missing.
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// kube's reason for a cordoned node.
pub const REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
/// kube's reason for a node that fails the node selector or required node affinity.
pub const REASON_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
/// kube's reason for a host port already taken.
pub const REASON_PORTS: &str = "node(s) didn't have free ports for the requested pod ports";

fn tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[])
}

/// Whether `t` tolerates `taint` (kube's `Toleration.ToleratesTaint`): same effect unless the
/// toleration names none, same key unless it names none, and `Exists` or an equal value.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != taint.effect)
    {
        return false;
    }
    if t.key
        .as_deref()
        .is_some_and(|k| !k.is_empty() && k != taint.key)
    {
        return false;
    }
    match t.operator.as_deref().unwrap_or("") {
        "" | "Equal" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        "Exists" => true,
        _ => false,
    }
}

/// A node's taints as the scheduler sees them: its own, plus the one kube's node lifecycle
/// controller would add for a node that is not Ready (there is no such controller here, and
/// this keeps kube's semantics: a pod tolerating `not-ready` may still go there).
pub fn effective_taints(node: &Node) -> Vec<Taint> {
    let mut taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.as_str());
    let implicit = match ready {
        Some("True") => None,
        Some("False") => Some(TAINT_NOT_READY),
        _ => Some(TAINT_UNREACHABLE),
    };
    if let Some(key) = implicit {
        if !taints
            .iter()
            .any(|t| t.key == key && t.effect == "NoSchedule")
        {
            taints.push(Taint {
                key: key.into(),
                effect: "NoSchedule".into(),
                ..Default::default()
            });
        }
    }
    taints
}

/// The first NoSchedule/NoExecute taint no toleration tolerates.
pub fn untolerated_taint<'a>(taints: &'a [Taint], tolerations: &[Toleration]) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .find(|taint| !tolerations.iter().any(|t| tolerates(t, taint)))
}

/// kube's reason for an untolerated taint: `node(s) had untolerated taint {key: value}`.
pub fn taint_reason(taint: &Taint) -> String {
    format!(
        "node(s) had untolerated taint {{{}: {}}}",
        taint.key,
        taint.value.as_deref().unwrap_or("")
    )
}

/// Whether a cordoned node keeps this pod out (unless it tolerates the unschedulable taint).
pub fn blocked_by_cordon(pod: &Pod, node: &Node) -> bool {
    let cordoned = node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    let taint = Taint {
        key: TAINT_UNSCHEDULABLE.into(),
        effect: "NoSchedule".into(),
        ..Default::default()
    };
    cordoned && !tolerations(pod).iter().any(|t| tolerates(t, &taint))
}

/// One node selector requirement against a value that may be absent (a label, a field).
pub fn requirement_matches(req: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = req.values.as_deref().unwrap_or(&[]);
    let int = |s: &str| s.parse::<i64>().ok();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        // Exactly one integer value; the label must be an integer too.
        "Gt" | "Lt" => {
            let (Some(v), [bound]) = (value.and_then(int), values) else {
                return false;
            };
            let Some(bound) = int(bound) else {
                return false;
            };
            if req.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// Whether a node selector term matches: all of its expressions (on labels) and fields (only
/// `metadata.name`); a term with neither matches nothing, as in kube.
pub fn term_matches(
    term: &NodeSelectorTerm,
    labels: &BTreeMap<String, String>,
    name: &str,
) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && requirement_matches(r, Some(name)))
}

/// Whether the node satisfies the pod's `nodeSelector` and its required node affinity (any
/// one of the terms).
pub fn matches_node_selection(pod: &Pod, node: &Node) -> bool {
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let name = node.metadata.name.as_deref().unwrap_or("");
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    let affinity_ok = required.is_none_or(|sel| {
        sel.node_selector_terms
            .iter()
            .any(|t| term_matches(t, labels, name))
    });
    selector_ok && affinity_ok
}

/// Whether one of the pod's host ports is already taken on the node.
pub fn ports_conflict(demand: &Demand, info: &NodeInfo) -> bool {
    demand
        .host_ports
        .iter()
        .any(|want| info.host_ports.iter().any(|used| used.conflicts(want)))
}

/// Why the pod's requests do not fit next to what the node already runs (kube's
/// NodeResourcesFit: the pod count always, every other resource only when the pod asks for
/// some of it); empty when it fits.
pub fn insufficient(demand: &Demand, info: &NodeInfo) -> Vec<String> {
    let mut reasons = Vec::new();
    if Quantity::from_units(info.pod_count + 1) > info.allowed_pods() {
        reasons.push("Too many pods".to_string());
    }
    for (name, want) in &demand.requests {
        if name == resources::PODS || *want <= Quantity::ZERO {
            continue;
        }
        let free = resources::get(&info.allocatable, name) - resources::get(&info.requested, name);
        if *want > free {
            reasons.push(format!("Insufficient {name}"));
        }
    }
    reasons
}

/// Runs the filters in kube's order; `Err` carries the first failing filter's reasons.
pub fn filter(pod: &Pod, demand: &Demand, info: &NodeInfo) -> Result<(), Vec<String>> {
    let node = info.node.as_ref();
    if blocked_by_cordon(pod, node) {
        return Err(vec![REASON_UNSCHEDULABLE.into()]);
    }
    if let Some(taint) = untolerated_taint(&effective_taints(node), tolerations(pod)) {
        return Err(vec![taint_reason(taint)]);
    }
    if !matches_node_selection(pod, node) {
        return Err(vec![REASON_AFFINITY.into()]);
    }
    if ports_conflict(demand, info) {
        return Err(vec![REASON_PORTS.into()]);
    }
    let short = insufficient(demand, info);
    if short.is_empty() {
        Ok(())
    } else {
        Err(short)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::sync::Arc;

    fn node(v: Value) -> Node {
        serde_json::from_value(v).unwrap()
    }

    fn ready_node(name: &str, cpu: &str, extra_spec: Value, labels: Value) -> Node {
        node(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": extra_spec,
            "status": {"allocatable": {"cpu": cpu, "memory": "4Gi", "pods": "3"}, "conditions": [{"type": "Ready", "status": "True"}]},
        }))
    }

    fn pod(spec: Value) -> Pod {
        let mut spec = spec;
        if spec.get("containers").is_none() {
            spec["containers"] = json!([{"name": "c"}]);
        }
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "default"}, "spec": spec}),
        )
        .unwrap()
    }

    fn tol(v: Value) -> Toleration {
        serde_json::from_value(v).unwrap()
    }

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: Some(value.into()),
            effect: effect.into(),
            ..Default::default()
        }
    }

    fn check(p: &Pod, n: Node) -> Result<(), Vec<String>> {
        let info = NodeInfo::new(Arc::new(n));
        filter(p, &resources::demand(p), &info)
    }

    #[test]
    fn tolerations_match_like_kube() {
        let t = taint("dedicated", "gpu", "NoSchedule");
        assert!(tolerates(
            &tol(
                json!({"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"})
            ),
            &t
        ));
        assert!(
            tolerates(&tol(json!({"key": "dedicated", "value": "gpu"})), &t),
            "operator defaults to Equal, any effect"
        );
        assert!(
            !tolerates(&tol(json!({"key": "dedicated", "value": "cpu"})), &t),
            "other value"
        );
        assert!(
            !tolerates(
                &tol(json!({"key": "dedicated", "value": "gpu", "effect": "NoExecute"})),
                &t
            ),
            "other effect"
        );
        assert!(tolerates(
            &tol(json!({"key": "dedicated", "operator": "Exists"})),
            &t
        ));
        assert!(!tolerates(
            &tol(json!({"key": "other", "operator": "Exists"})),
            &t
        ));
        assert!(
            tolerates(&tol(json!({"operator": "Exists"})), &t),
            "empty key + Exists tolerates everything"
        );
        assert!(!tolerates(
            &tol(json!({"key": "dedicated", "operator": "Bogus"})),
            &t
        ));
    }

    #[test]
    fn only_noschedule_and_noexecute_taints_keep_pods_out() {
        let taints = [
            taint("soft", "", "PreferNoSchedule"),
            taint("hard", "x", "NoExecute"),
        ];
        assert_eq!(
            untolerated_taint(&taints, &[]).map(|t| t.key.as_str()),
            Some("hard")
        );
        assert_eq!(untolerated_taint(&taints[..1], &[]), None);
        assert_eq!(
            taint_reason(&taints[1]),
            "node(s) had untolerated taint {hard: x}"
        );
        let no_value = Taint {
            key: "k".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        assert_eq!(
            taint_reason(&no_value),
            "node(s) had untolerated taint {k: }"
        );
    }

    #[test]
    fn a_node_that_is_not_ready_is_tainted_as_kube_would() {
        let mut n = ready_node("a", "1", json!({}), json!({}));
        assert!(effective_taints(&n).is_empty());
        n.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "False".into();
        let p = pod(json!({}));
        assert_eq!(
            check(&p, n.clone()),
            Err(vec![
                "node(s) had untolerated taint {node.kubernetes.io/not-ready: }".to_string()
            ])
        );
        let tolerant = pod(
            json!({"tolerations": [{"key": TAINT_NOT_READY, "operator": "Exists", "effect": "NoSchedule"}]}),
        );
        assert_eq!(check(&tolerant, n.clone()), Ok(()));
        n.status.as_mut().unwrap().conditions = None;
        assert_eq!(
            effective_taints(&n)[0].key,
            TAINT_UNREACHABLE,
            "no Ready condition counts as Unknown"
        );
    }

    #[test]
    fn cordoned_nodes_refuse_pods_unless_they_tolerate_it() {
        let n = ready_node("a", "1", json!({"unschedulable": true}), json!({}));
        assert_eq!(
            check(&pod(json!({})), n.clone()),
            Err(vec![REASON_UNSCHEDULABLE.to_string()])
        );
        let tolerant =
            pod(json!({"tolerations": [{"key": TAINT_UNSCHEDULABLE, "operator": "Exists"}]}));
        assert_eq!(check(&tolerant, n), Ok(()));
    }

    #[test]
    fn node_selector_and_required_affinity_must_both_match() {
        let n = ready_node(
            "a",
            "1",
            json!({}),
            json!({"disk": "ssd", "zone": "z1", "cores": "8"}),
        );
        assert_eq!(
            check(&pod(json!({"nodeSelector": {"disk": "ssd"}})), n.clone()),
            Ok(())
        );
        assert_eq!(
            check(&pod(json!({"nodeSelector": {"disk": "hdd"}})), n.clone()),
            Err(vec![REASON_AFFINITY.to_string()])
        );
        let affinity = |exprs: Value| {
            pod(
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": exprs}]}}}}),
            )
        };
        let yes = [
            json!([{"key": "zone", "operator": "In", "values": ["z0", "z1"]}]),
            json!([{"key": "zone", "operator": "NotIn", "values": ["z2"]}, {"key": "gpu", "operator": "NotIn", "values": ["a"]}]),
            json!([{"key": "disk", "operator": "Exists"}, {"key": "gpu", "operator": "DoesNotExist"}]),
            json!([{"key": "cores", "operator": "Gt", "values": ["4"]}, {"key": "cores", "operator": "Lt", "values": ["16"]}]),
        ];
        for e in yes {
            assert_eq!(check(&affinity(e.clone()), n.clone()), Ok(()), "{e}");
        }
        let no = [
            json!([{"key": "zone", "operator": "In", "values": ["z2"]}]),
            json!([{"key": "gpu", "operator": "In", "values": ["a"]}]),
            json!([{"key": "zone", "operator": "NotIn", "values": ["z1"]}]),
            json!([{"key": "gpu", "operator": "Exists"}]),
            json!([{"key": "disk", "operator": "DoesNotExist"}]),
            json!([{"key": "cores", "operator": "Gt", "values": ["8"]}]),
            json!([{"key": "zone", "operator": "Lt", "values": ["9"]}]),
            json!([{"key": "cores", "operator": "Gt", "values": ["1", "2"]}]),
            json!([]),
        ];
        for e in no {
            assert!(check(&affinity(e.clone()), n.clone()).is_err(), "{e}");
        }
        // Terms are ORed; matchFields sees the node's name.
        let terms = pod(
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["nope"]}]},
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a"]}]},
            ]}}}}),
        );
        assert_eq!(check(&terms, n), Ok(()));
    }

    #[test]
    fn resources_fit_against_allocatable_minus_what_is_placed() {
        let n = Arc::new(ready_node("a", "2", json!({}), json!({})));
        let mut info = NodeInfo::new(n);
        let p = pod(
            json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "1500m", "memory": "1Gi"}}}]}),
        );
        let d = resources::demand(&p);
        assert_eq!(filter(&p, &d, &info), Ok(()));
        info.add(&d);
        assert_eq!(
            filter(&p, &d, &info),
            Err(vec!["Insufficient cpu".to_string()])
        );
        let huge = pod(
            json!({"containers": [{"name": "c", "resources": {"limits": {"cpu": "8", "memory": "8Gi", "example.com/gpu": "1"}}}]}),
        );
        assert_eq!(
            insufficient(&resources::demand(&huge), &info),
            vec![
                "Insufficient cpu",
                "Insufficient example.com/gpu",
                "Insufficient memory"
            ]
        );
        // Three pods allowed: zero-request pods fill it by count.
        let tiny = pod(json!({}));
        let td = resources::demand(&tiny);
        info.add(&td);
        info.add(&td);
        assert_eq!(
            filter(&tiny, &td, &info),
            Err(vec!["Too many pods".to_string()])
        );
    }

    #[test]
    fn a_node_without_allocatable_takes_nothing_and_host_ports_conflict() {
        let bare = node(
            json!({"metadata": {"name": "bare"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        );
        assert_eq!(
            check(&pod(json!({})), bare),
            Err(vec!["Too many pods".to_string()])
        );
        let n = Arc::new(ready_node("a", "2", json!({}), json!({})));
        let mut info = NodeInfo::new(n);
        let web = pod(
            json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 80}]}]}),
        );
        let d = resources::demand(&web);
        info.add(&d);
        assert_eq!(filter(&web, &d, &info), Err(vec![REASON_PORTS.to_string()]));
    }
}
