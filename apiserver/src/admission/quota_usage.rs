//! What objects count against a ResourceQuota: pure functions over JSON, used by the
//! ResourceQuota admission plugin (kube's quota evaluators in spirit).
//!
//! Worked example: a running pod with one container requesting `cpu: 250m` and limiting
//! `memory: 1Gi` uses `pods=1, count/pods=1, cpu=250m, requests.cpu=250m, limits.memory=1Gi`;
//! a quota with `hard: {pods: 2, requests.cpu: 1}` counts only `pods` and `requests.cpu` of it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::quantity::{pretty, resource_list_lenient, Quantity, ResourceList};
use crate::registry::Kind;

/// Compute resources that a quota can only enforce if every container states them (kube's
/// backward-compatibility rule for cpu and memory).
const MUST_SPECIFY: &[&str] = &["cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"];

/// Compute resources that are also quota names without the `requests.` prefix.
const BARE_REQUEST_NAMES: &[&str] = &["cpu", "memory", "ephemeral-storage"];

/// The field under a quota's status that lists reservations of creates still in flight.
pub const PENDING: &str = "pendingCharges";

/// `count/pods`, `count/deployments.apps`: the object-count name of a kind.
pub fn count_name(kind: &Kind) -> String {
    if kind.group.is_empty() {
        format!("count/{}", kind.resource)
    } else {
        format!("count/{}.{}", kind.resource, kind.group)
    }
}

fn core(kind: &Kind, resource: &str) -> bool {
    kind.group.is_empty() && kind.resource == resource
}

/// Whether objects of `kind` can use the quota resource `name`: the kinds to count for a quota.
pub fn tracks(kind: &Kind, name: &str) -> bool {
    if name == count_name(kind) {
        return true;
    }
    if !kind.group.is_empty() {
        return false;
    }
    match kind.resource {
        "pods" => {
            name == "pods"
                || BARE_REQUEST_NAMES.contains(&name)
                || name.starts_with("hugepages-")
                || name.starts_with("limits.")
                || (name.starts_with("requests.") && name != "requests.storage")
        }
        "services" => matches!(name, "services" | "services.loadbalancers" | "services.nodeports"),
        "persistentvolumeclaims" => {
            matches!(name, "persistentvolumeclaims" | "requests.storage")
                || name.ends_with(".storageclass.storage.k8s.io/requests.storage")
                || name.ends_with(".storageclass.storage.k8s.io/persistentvolumeclaims")
        }
        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas" => name == kind.resource,
        _ => false,
    }
}

/// A pod that has finished no longer uses quota.
pub fn is_terminal(pod: &Value) -> bool {
    matches!(pod.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed"))
}

fn containers<'a>(pod: &'a Value, list: &str) -> impl Iterator<Item = &'a Value> {
    pod.pointer(&format!("/spec/{list}")).and_then(Value::as_array).into_iter().flatten()
}

fn add_into(acc: &mut ResourceList, list: &ResourceList) {
    for (k, v) in list {
        let sum = acc.get(k).copied().unwrap_or(Quantity::ZERO) + *v;
        acc.insert(k.clone(), sum);
    }
}

fn max_into(acc: &mut ResourceList, list: &ResourceList) {
    for (k, v) in list {
        if acc.get(k).is_none_or(|cur| v > cur) {
            acc.insert(k.clone(), *v);
        }
    }
}

/// A pod's effective `requests` or `limits` (`which`): the sum over containers, raised to
/// any init container's (they run one at a time, before the others), plus `spec.overhead`.
pub fn pod_resources(pod: &Value, which: &str) -> ResourceList {
    let mut total = ResourceList::new();
    for c in containers(pod, "containers") {
        add_into(&mut total, &resource_list_lenient(c.pointer(&format!("/resources/{which}"))));
    }
    for c in containers(pod, "initContainers") {
        max_into(&mut total, &resource_list_lenient(c.pointer(&format!("/resources/{which}"))));
    }
    add_into(&mut total, &resource_list_lenient(pod.pointer("/spec/overhead")));
    total
}

/// Everything one object uses, under every quota name that applies to it.
pub fn usage(kind: &Kind, obj: &Value) -> ResourceList {
    let mut u = ResourceList::new();
    if core(kind, "pods") && is_terminal(obj) {
        return u;
    }
    let one = Quantity::from_units(1);
    u.insert(count_name(kind), one);
    if !kind.group.is_empty() {
        return u;
    }
    match kind.resource {
        "pods" => {
            u.insert("pods".into(), one);
            for (name, q) in pod_resources(obj, "requests") {
                if BARE_REQUEST_NAMES.contains(&name.as_str()) || name.starts_with("hugepages-") {
                    u.insert(name.clone(), q);
                }
                u.insert(format!("requests.{name}"), q);
            }
            for (name, q) in pod_resources(obj, "limits") {
                u.insert(format!("limits.{name}"), q);
            }
        }
        "services" => {
            u.insert("services".into(), one);
            let ports = obj.pointer("/spec/ports").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            let with_node_port = ports.iter().filter(|p| p.get("nodePort").and_then(Value::as_i64).is_some_and(|n| n > 0));
            match obj.pointer("/spec/type").and_then(Value::as_str) {
                Some("NodePort") => {
                    u.insert("services.nodeports".into(), Quantity::from_units(ports.len() as i64));
                }
                Some("LoadBalancer") => {
                    u.insert("services.loadbalancers".into(), one);
                    // Without node port allocation only explicitly requested node ports count.
                    let allocate = obj.pointer("/spec/allocateLoadBalancerNodePorts").and_then(Value::as_bool) != Some(false);
                    let n = if allocate { ports.len() } else { with_node_port.count() };
                    u.insert("services.nodeports".into(), Quantity::from_units(n as i64));
                }
                _ => {}
            }
        }
        "persistentvolumeclaims" => {
            u.insert("persistentvolumeclaims".into(), one);
            let class = obj.pointer("/spec/storageClassName").and_then(Value::as_str).filter(|c| !c.is_empty());
            if let Some(c) = class {
                u.insert(format!("{c}.storageclass.storage.k8s.io/persistentvolumeclaims"), one);
            }
            if let Some(s) = obj.pointer("/spec/resources/requests/storage").and_then(Quantity::from_json) {
                u.insert("requests.storage".into(), s);
                if let Some(c) = class {
                    u.insert(format!("{c}.storageclass.storage.k8s.io/requests.storage"), s);
                }
            }
        }
        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas" => {
            u.insert(kind.resource.into(), one);
        }
        _ => {}
    }
    u
}

/// `list` restricted to the names in `keys`.
pub fn mask<'a>(list: &ResourceList, keys: impl IntoIterator<Item = &'a String>) -> ResourceList {
    keys.into_iter().filter_map(|k| list.get(k).map(|v| (k.clone(), *v))).collect()
}

/// Kube's QoS class BestEffort: no container states a cpu or memory request or limit.
fn best_effort(pod: &Value) -> bool {
    containers(pod, "containers").chain(containers(pod, "initContainers")).all(|c| {
        ["requests", "limits"].iter().all(|w| {
            let l = resource_list_lenient(c.pointer(&format!("/resources/{w}")));
            !l.contains_key("cpu") && !l.contains_key("memory")
        })
    })
}

/// Whether the pod has an affinity term reaching other namespaces.
fn cross_namespace_affinity(pod: &Value) -> bool {
    let mut terms = Vec::new();
    for a in ["podAffinity", "podAntiAffinity"] {
        let base = format!("/spec/affinity/{a}");
        let required = pod.pointer(&format!("{base}/requiredDuringSchedulingIgnoredDuringExecution"));
        terms.extend(required.and_then(Value::as_array).into_iter().flatten());
        let preferred = pod.pointer(&format!("{base}/preferredDuringSchedulingIgnoredDuringExecution"));
        terms.extend(preferred.and_then(Value::as_array).into_iter().flatten().filter_map(|p| p.get("podAffinityTerm")));
    }
    terms.iter().any(|t| {
        t.get("namespaces").and_then(Value::as_array).is_some_and(|n| !n.is_empty())
            || t.get("namespaceSelector").is_some_and(|s| !s.is_null())
    })
}

/// A pod with a deadline (`activeDeadlineSeconds`), which the Terminating scope selects.
fn terminating(pod: &Value) -> bool {
    pod.pointer("/spec/activeDeadlineSeconds").and_then(Value::as_i64).is_some_and(|s| s >= 0)
}

/// One scope requirement (`spec.scopes` entries are `Exists`) against a pod.
fn scope_matches(scope: &str, operator: &str, values: &[&str], pod: &Value) -> bool {
    let has = match scope {
        "Terminating" => terminating(pod),
        "NotTerminating" => !terminating(pod),
        "BestEffort" => best_effort(pod),
        "NotBestEffort" => !best_effort(pod),
        "CrossNamespacePodAffinity" => cross_namespace_affinity(pod),
        "PriorityClass" => {
            let class = pod.pointer("/spec/priorityClassName").and_then(Value::as_str).filter(|c| !c.is_empty());
            return match operator {
                "In" => class.is_some_and(|c| values.contains(&c)),
                "NotIn" => !class.is_some_and(|c| values.contains(&c)),
                "DoesNotExist" => class.is_none(),
                _ => class.is_some(),
            };
        }
        _ => return false,
    };
    match operator {
        "DoesNotExist" => !has,
        _ => has,
    }
}

/// Whether the quota counts this object: an unscoped quota counts everything; scopes
/// (`spec.scopes` and `spec.scopeSelector`) only ever select pods, and a pod must match all.
pub fn applies(quota: &Value, kind: &Kind, obj: &Value) -> bool {
    let scopes = quota.pointer("/spec/scopes").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let exprs = quota
        .pointer("/spec/scopeSelector/matchExpressions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if scopes.is_empty() && exprs.is_empty() {
        return true;
    }
    if !core(kind, "pods") {
        return false;
    }
    let plain = scopes.iter().all(|s| scope_matches(s.as_str().unwrap_or(""), "Exists", &[], obj));
    plain
        && exprs.iter().all(|e| {
            let values: Vec<&str> =
                e.get("values").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
            let get = |f: &str| e.get(f).and_then(Value::as_str).unwrap_or("");
            scope_matches(get("scopeName"), get("operator"), &values, obj)
        })
}

/// What an update adds to an object's usage: the positive parts of new minus old (kube charges
/// nothing back for what shrinks). A claim grown from 1Gi to 5Gi adds `requests.storage=4Gi`;
/// a ClusterIP service turned LoadBalancer adds `services.loadbalancers=1` and its node ports;
/// a pod that finished adds nothing.
pub fn increase(kind: &Kind, old: &Value, new: &Value) -> ResourceList {
    let before = usage(kind, old);
    usage(kind, new)
        .into_iter()
        .filter(|(k, v)| before.get(k).is_none_or(|b| v > b))
        .map(|(k, v)| {
            let grown = before.get(&k).map_or(v, |b| v - *b);
            (k, grown)
        })
        .collect()
}

/// Kube's rule for pods under a quota on cpu or memory: every container must state each
/// constrained one. The error is `must specify limits.cpu for: a,b; requests.cpu for: a`.
pub fn missing_requests(hard: &ResourceList, pod: &Value) -> Option<String> {
    let required: BTreeSet<&str> = MUST_SPECIFY.iter().copied().filter(|r| hard.contains_key(*r)).collect();
    if required.is_empty() {
        return None;
    }
    let mut missing: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for c in containers(pod, "containers").chain(containers(pod, "initContainers")) {
        let requests = resource_list_lenient(c.pointer("/resources/requests"));
        let limits = resource_list_lenient(c.pointer("/resources/limits"));
        let mut stated = BTreeSet::new();
        for r in ["cpu", "memory"] {
            if requests.contains_key(r) {
                stated.insert(r.to_string());
                stated.insert(format!("requests.{r}"));
            }
            if limits.contains_key(r) {
                stated.insert(format!("limits.{r}"));
            }
        }
        let name = c.get("name").and_then(Value::as_str).unwrap_or("");
        for r in &required {
            if !stated.contains(*r) {
                missing.entry(*r).or_default().insert(name);
            }
        }
    }
    if missing.is_empty() {
        return None;
    }
    let parts: Vec<String> =
        missing.iter().map(|(r, names)| format!("{r} for: {}", names.iter().copied().collect::<Vec<_>>().join(","))).collect();
    Some(format!("must specify {}", parts.join("; ")))
}

/// The quota check: `requested` (already masked to the hard names) on top of `used`. Refuses
/// with kube's words, naming only the exceeded resources.
pub fn check(name: &str, hard: &ResourceList, used: &ResourceList, requested: &ResourceList) -> Result<(), String> {
    let exceeded: Vec<&String> = requested
        .iter()
        .filter(|(k, r)| {
            let new = used.get(*k).copied().unwrap_or(Quantity::ZERO) + **r;
            hard.get(*k).is_some_and(|h| new > *h)
        })
        .map(|(k, _)| k)
        .collect();
    if exceeded.is_empty() {
        return Ok(());
    }
    let used_or_zero: ResourceList =
        exceeded.iter().map(|k| ((*k).clone(), used.get(*k).copied().unwrap_or(Quantity::ZERO))).collect();
    Err(format!(
        "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
        pretty(&mask(requested, exceeded.iter().copied())),
        pretty(&used_or_zero),
        pretty(&mask(hard, exceeded.iter().copied())),
    ))
}

/// A quota's usage recounted: the objects that exist (each `(kind, object)`, all kinds the
/// quota tracks, read after the quota), plus reservations of writes still in flight. A
/// create's reservation ends when its object shows up in `objects`; an update's (it has a
/// `revision`) when its object is no longer at that resourceVersion (the update landed, or
/// another did and this one must retry). Either ends when `settled` names it (`id`, else `uid`:
/// its write is over), or when it expires (its apiserver went away mid-write). Returns the usage
/// of every hard name and the reservations still open.
pub fn tally(quota: &Value, objects: &[(&Kind, &Value)], now: u64, settled: Option<&str>) -> (ResourceList, Vec<Value>) {
    let hard = resource_list_lenient(quota.pointer("/spec/hard"));
    let mut used: ResourceList = hard.keys().map(|k| (k.clone(), Quantity::ZERO)).collect();
    let mut seen = BTreeMap::new();
    for (kind, obj) in objects {
        let rv = obj.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or("");
        seen.insert(obj.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or(""), rv);
        if applies(quota, kind, obj) {
            add_into(&mut used, &mask(&usage(kind, obj), hard.keys()));
        }
    }
    let mut open = Vec::new();
    let pending = quota.pointer(&format!("/status/{PENDING}")).and_then(Value::as_array).into_iter().flatten();
    for p in pending {
        let uid = p.get("uid").and_then(Value::as_str).unwrap_or("");
        let id = p.get("id").and_then(Value::as_str).unwrap_or(uid);
        let expired = p.get("expires").and_then(Value::as_u64).is_none_or(|e| e <= now);
        let landed = match p.get("revision") {
            Some(rev) => seen.get(uid).is_none_or(|at| Some(*at) != rev.as_str()),
            None => seen.contains_key(uid),
        };
        if uid.is_empty() || expired || landed || settled == Some(id) {
            continue;
        }
        add_into(&mut used, &mask(&resource_list_lenient(p.get("usage")), hard.keys()));
        open.push(p.clone());
    }
    (used, open)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::admission::quantity::to_json;

    fn kind(resource: &str) -> &'static Kind {
        crate::registry::lookup("", "v1", resource).unwrap()
    }

    fn pod(containers: Value) -> Value {
        json!({"metadata": {"name": "p", "uid": "u1"}, "spec": {"containers": containers}, "status": {"phase": "Pending"}})
    }

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    #[test]
    fn a_pod_uses_its_effective_requests_and_limits() {
        let mut p = pod(json!([
            {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"cpu": "1"}}},
            {"name": "b", "resources": {"requests": {"cpu": "250m", "memory": "512Mi", "nvidia.com/gpu": "1"}}},
        ]));
        p["spec"]["initContainers"] = json!([{"name": "i", "resources": {"requests": {"cpu": "2"}}}]);
        let u = to_json(&usage(kind("pods"), &p));
        assert_eq!(
            u,
            json!({
                "count/pods": "1", "pods": "1", "cpu": "2", "requests.cpu": "2", "memory": "1536Mi",
                "requests.memory": "1536Mi", "limits.cpu": "1", "requests.nvidia.com/gpu": "1"
            })
        );
        p["status"]["phase"] = json!("Succeeded");
        assert!(usage(kind("pods"), &p).is_empty(), "finished pods use nothing");
    }

    #[test]
    fn services_claims_and_counted_kinds() {
        let svc = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 443}]}});
        assert_eq!(to_json(&usage(kind("services"), &svc)), json!({"services": "1", "count/services": "1", "services.nodeports": "2"}));
        let lb = json!({"spec": {"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false, "ports": [{"port": 80, "nodePort": 30080}, {"port": 81}]}});
        let u = usage(kind("services"), &lb);
        assert_eq!((u["services.loadbalancers"], u["services.nodeports"]), (q("1"), q("1")));
        let pvc = json!({"spec": {"storageClassName": "fast", "resources": {"requests": {"storage": "5Gi"}}}});
        let u = usage(kind("persistentvolumeclaims"), &pvc);
        assert_eq!(u["requests.storage"], q("5Gi"));
        assert_eq!(u["fast.storageclass.storage.k8s.io/requests.storage"], q("5Gi"));
        assert_eq!(u["persistentvolumeclaims"], q("1"));
        let deploy = crate::registry::lookup("apps", "v1", "deployments").unwrap();
        assert_eq!(to_json(&usage(deploy, &json!({}))), json!({"count/deployments.apps": "1"}));
        assert!(tracks(deploy, "count/deployments.apps") && !tracks(deploy, "pods"));
        assert!(tracks(kind("pods"), "requests.cpu") && !tracks(kind("pods"), "requests.storage"));
        assert!(tracks(kind("persistentvolumeclaims"), "requests.storage"));
        assert!(tracks(kind("configmaps"), "configmaps") && !tracks(kind("configmaps"), "secrets"));
    }

    #[test]
    fn scopes_select_pods() {
        let terminating = json!({"spec": {"scopes": ["Terminating"]}});
        let mut p = pod(json!([{"name": "a"}]));
        assert!(!applies(&terminating, kind("pods"), &p));
        p["spec"]["activeDeadlineSeconds"] = json!(30);
        assert!(applies(&terminating, kind("pods"), &p));
        assert!(!applies(&terminating, kind("configmaps"), &json!({})), "scoped quotas count pods only");
        let best_effort = json!({"spec": {"scopes": ["BestEffort", "Terminating"]}});
        assert!(applies(&best_effort, kind("pods"), &p));
        let not_best_effort = json!({"spec": {"scopes": ["NotBestEffort"]}});
        assert!(!applies(&not_best_effort, kind("pods"), &p));
        let sized = pod(json!([{"name": "a", "resources": {"limits": {"memory": "1Gi"}}}]));
        assert!(applies(&not_best_effort, kind("pods"), &sized));
        let high = json!({"spec": {"scopeSelector": {"matchExpressions": [{"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}});
        assert!(!applies(&high, kind("pods"), &p));
        p["spec"]["priorityClassName"] = json!("high");
        assert!(applies(&high, kind("pods"), &p));
        assert!(applies(&json!({"spec": {"hard": {}}}), kind("configmaps"), &json!({})));
    }

    #[test]
    fn cpu_quotas_need_every_container_to_say() {
        let hard: ResourceList = [("requests.cpu".to_string(), q("1")), ("limits.memory".to_string(), q("1Gi"))].into();
        let p = pod(json!([
            {"name": "b", "resources": {"requests": {"cpu": "100m"}}},
            {"name": "a"},
        ]));
        assert_eq!(
            missing_requests(&hard, &p).as_deref(),
            Some("must specify limits.memory for: a,b; requests.cpu for: a")
        );
        let ok = pod(json!([{"name": "a", "resources": {"requests": {"cpu": "1"}, "limits": {"memory": "1Gi"}}}]));
        assert_eq!(missing_requests(&hard, &ok), None);
        assert_eq!(missing_requests(&[("pods".to_string(), q("1"))].into(), &p), None);
    }

    #[test]
    fn the_check_names_what_is_exceeded() {
        let hard: ResourceList = [("pods".to_string(), q("2")), ("requests.cpu".to_string(), q("1"))].into();
        let used: ResourceList = [("pods".to_string(), q("2")), ("requests.cpu".to_string(), q("500m"))].into();
        let one: ResourceList = [("pods".to_string(), q("1")), ("requests.cpu".to_string(), q("100m"))].into();
        assert_eq!(
            check("compute", &hard, &used, &one),
            Err("exceeded quota: compute, requested: pods=1, used: pods=2, limited: pods=2".into())
        );
        let used: ResourceList = [("pods".to_string(), q("1")), ("requests.cpu".to_string(), q("950m"))].into();
        assert_eq!(
            check("compute", &hard, &used, &one),
            Err("exceeded quota: compute, requested: requests.cpu=100m, used: requests.cpu=950m, limited: requests.cpu=1".into())
        );
        let used: ResourceList = [("pods".to_string(), q("1")), ("requests.cpu".to_string(), q("900m"))].into();
        assert_eq!(check("compute", &hard, &used, &one), Ok(()), "exactly at the limit is allowed");
    }

    #[test]
    fn updates_are_charged_what_they_add() {
        let pvcs = kind("persistentvolumeclaims");
        let claim = |size: &str| json!({"spec": {"storageClassName": "fast", "resources": {"requests": {"storage": size}}}});
        assert_eq!(
            to_json(&increase(pvcs, &claim("1Gi"), &claim("5Gi"))),
            json!({"requests.storage": "4Gi", "fast.storageclass.storage.k8s.io/requests.storage": "4Gi"})
        );
        assert!(increase(pvcs, &claim("5Gi"), &claim("1Gi")).is_empty(), "a shrink frees, never charges");
        assert!(increase(pvcs, &claim("5Gi"), &claim("5Gi")).is_empty());
        let mut moved = claim("2Gi");
        moved["spec"]["storageClassName"] = json!("slow");
        assert_eq!(
            to_json(&increase(pvcs, &claim("1Gi"), &moved)),
            json!({
                "requests.storage": "1Gi",
                "slow.storageclass.storage.k8s.io/requests.storage": "2Gi",
                "slow.storageclass.storage.k8s.io/persistentvolumeclaims": "1",
            }),
            "a name the old object did not use is charged whole"
        );
        let svcs = kind("services");
        let svc = |ty: &str| json!({"spec": {"type": ty, "ports": [{"port": 80}, {"port": 443}]}});
        assert_eq!(
            to_json(&increase(svcs, &svc("ClusterIP"), &svc("LoadBalancer"))),
            json!({"services.loadbalancers": "1", "services.nodeports": "2"})
        );
        assert_eq!(to_json(&increase(svcs, &svc("NodePort"), &svc("LoadBalancer"))), json!({"services.loadbalancers": "1"}));
        assert!(increase(svcs, &svc("LoadBalancer"), &svc("ClusterIP")).is_empty());
        let running = pod(json!([{"name": "a", "resources": {"requests": {"cpu": "1"}}}]));
        let mut done = running.clone();
        done["status"]["phase"] = json!("Succeeded");
        assert!(increase(kind("pods"), &running, &done).is_empty(), "a pod finishing frees its usage");
        let mut status_only = running.clone();
        status_only["status"]["podIP"] = json!("10.0.0.1");
        assert!(increase(kind("pods"), &running, &status_only).is_empty());
    }

    #[test]
    fn an_update_reservation_holds_while_its_object_is_at_the_admitted_revision() {
        let quota = |p: Value| json!({"spec": {"hard": {"requests.storage": "10Gi"}}, "status": {"pendingCharges": [p]}});
        let pvcs = kind("persistentvolumeclaims");
        let claim = |rv: &str, size: &str| {
            json!({"metadata": {"uid": "c", "resourceVersion": rv}, "spec": {"resources": {"requests": {"storage": size}}}})
        };
        let grow = json!({"uid": "c", "id": "r1", "revision": "7", "expires": 200, "usage": {"requests.storage": "4Gi"}});
        let before = claim("7", "1Gi");
        let (used, open) = tally(&quota(grow.clone()), &[(pvcs, &before)], 100, None);
        assert_eq!((to_json(&used), open.len()), (json!({"requests.storage": "5Gi"}), 1), "pending: old size + growth");
        let after = claim("9", "5Gi");
        let (used, open) = tally(&quota(grow.clone()), &[(pvcs, &after)], 100, None);
        assert_eq!((to_json(&used), open.len()), (json!({"requests.storage": "5Gi"}), 0), "landed: counted once");
        let (used, open) = tally(&quota(grow.clone()), &[(pvcs, &before)], 100, Some("r1"));
        assert_eq!((to_json(&used), open.len()), (json!({"requests.storage": "1Gi"}), 0), "settled by its id");
        let (_, open) = tally(&quota(grow), &[(pvcs, &before)], 100, Some("c"));
        assert_eq!(open.len(), 1, "the object's uid does not settle an update's reservation");
    }

    #[test]
    fn tally_counts_objects_and_open_reservations() {
        let quota = json!({
            "spec": {"hard": {"pods": "3", "requests.cpu": "2"}},
            "status": {"pendingCharges": [
                {"uid": "u1", "expires": 200, "usage": {"pods": "1", "requests.cpu": "1"}},
                {"uid": "u2", "expires": 200, "usage": {"pods": "1", "requests.cpu": "500m"}},
                {"uid": "u3", "expires": 50, "usage": {"pods": "1"}},
                {"uid": "u4", "expires": 200, "usage": {"pods": "1"}},
            ]},
        });
        let p1 = pod(json!([{"name": "a", "resources": {"requests": {"cpu": "1"}}}]));
        let mut done = p1.clone();
        done["metadata"]["uid"] = json!("u9");
        done["status"]["phase"] = json!("Failed");
        let cm = json!({"metadata": {"uid": "c"}});
        let objects = [(kind("pods"), &p1), (kind("pods"), &done), (kind("configmaps"), &cm)];
        // u1 exists (counted once, as an object), u3 expired, u4 settled: u2 stays open.
        let (used, open) = tally(&quota, &objects, 100, Some("u4"));
        assert_eq!(to_json(&used), json!({"pods": "2", "requests.cpu": "1500m"}));
        assert_eq!(open.len(), 1);
        assert_eq!(open[0]["uid"], "u2");
    }
}
