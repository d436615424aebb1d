//! LimitRanger: the namespace's LimitRanges give pods default requests and limits (mutating),
//! and bound what containers, pods and PersistentVolumeClaims may ask for (validating: 403
//! with kube's words, `maximum cpu usage per Container is 500m, but limit is 1`).
//!
//! On update only a claim's resize is checked (kube does not re-default or re-check pods, whose
//! resources are immutable, and skips objects being deleted).
//!
//! Items are read with kube's LimitRange defaulting applied (a Container item's `default` falls
//! back to `max`, its `defaultRequest` to `default`, then to `min`), whether or not the stored
//! object has it; this plugin also writes those defaults into new LimitRanges. Entries that are
//! not quantities are ignored.

use std::collections::BTreeSet;

use futures::future::BoxFuture;
use serde_json::{json, Map, Value};

use super::quantity::{resource_list_lenient, Quantity, ResourceList};
use super::{Attributes, MutatingPlugin, ValidatingPlugin};
use crate::error::Error;
use crate::storage::Storage;
use crate::Result;

/// The annotation that records which defaults were set.
const ANNOTATION: &str = "kubernetes.io/limit-ranger";

/// See the module comment.
pub struct LimitRanger;

/// One `spec.limits[]` entry, parsed and defaulted.
#[derive(Debug, Default)]
struct Item {
    ty: String,
    min: ResourceList,
    max: ResourceList,
    default: ResourceList,
    default_request: ResourceList,
    ratio: ResourceList,
}

/// Kube's defaulting of a LimitRange item, on the raw JSON.
fn default_item(item: &mut Value) {
    if item.get("type").and_then(Value::as_str) != Some("Container") {
        return;
    }
    let fill = |item: &mut Value, into: &str, from: &str| {
        let source = item.get(from).and_then(Value::as_object).cloned().unwrap_or_default();
        if source.is_empty() {
            return;
        }
        if !item.get(into).is_some_and(Value::is_object) {
            item[into] = json!({});
        }
        let target = item[into].as_object_mut().expect("just made an object");
        for (k, v) in source {
            target.entry(k).or_insert(v);
        }
    };
    fill(item, "default", "max");
    fill(item, "defaultRequest", "default");
    fill(item, "defaultRequest", "min");
}

fn items(limit_range: &Value) -> Vec<Item> {
    let raw = limit_range.pointer("/spec/limits").and_then(Value::as_array).cloned().unwrap_or_default();
    raw.into_iter()
        .map(|mut i| {
            default_item(&mut i);
            Item {
                ty: i.get("type").and_then(Value::as_str).unwrap_or("").to_string(),
                min: resource_list_lenient(i.get("min")),
                max: resource_list_lenient(i.get("max")),
                default: resource_list_lenient(i.get("default")),
                default_request: resource_list_lenient(i.get("defaultRequest")),
                ratio: resource_list_lenient(i.get("maxLimitRequestRatio")),
            }
        })
        .collect()
}

fn is(attrs: &Attributes<'_>, resource: &str) -> bool {
    attrs.kind.group.is_empty() && attrs.kind.resource == resource
}

/// The object at `map[key]`, made if absent or null; None if something else is there.
fn object_at<'a>(map: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    let v = map.entry(key).or_insert(Value::Null);
    if v.is_null() {
        *v = json!({});
    }
    v.as_object_mut()
}

/// Sets the Container defaults of one LimitRange on every container that lacks them; returns
/// what was set, as kube's annotation phrases (`cpu, memory request for container web`).
fn apply_defaults(limit_range: &Value, pod: &mut Value) -> Vec<String> {
    let (mut requests, mut limits) = (ResourceList::new(), ResourceList::new());
    for item in items(limit_range).into_iter().filter(|i| i.ty == "Container") {
        requests.extend(item.default_request);
        limits.extend(item.default);
    }
    let mut notes = Vec::new();
    if requests.is_empty() && limits.is_empty() {
        return notes;
    }
    for (list, what) in [("containers", "container"), ("initContainers", "init container")] {
        let Some(cs) = pod.pointer_mut(&format!("/spec/{list}")).and_then(Value::as_array_mut) else { continue };
        for c in cs.iter_mut().filter_map(Value::as_object_mut) {
            let name = c.get("name").and_then(Value::as_str).unwrap_or("").to_string();
            // Malformed resources are left for validation to refuse.
            let Some(res) = object_at(c, "resources") else { continue };
            for (field, defaults, phrase) in [("requests", &requests, "request"), ("limits", &limits, "limit")] {
                if defaults.is_empty() {
                    continue;
                }
                let Some(map) = object_at(res, field) else { continue };
                let mut set = Vec::new();
                for (k, q) in defaults {
                    if !map.contains_key(k) {
                        map.insert(k.clone(), json!(q.to_string()));
                        set.push(k.clone());
                    }
                }
                if !set.is_empty() {
                    notes.push(format!("{} {phrase} for {what} {name}", set.join(", ")));
                }
            }
        }
    }
    notes
}

/// kube's `minConstraint`.
fn min_constraint(ty: &str, res: &str, min: Quantity, req: Option<Quantity>, lim: Option<Quantity>) -> Option<String> {
    let Some(req) = req else {
        return Some(format!("minimum {res} usage per {ty} is {min}.  No request is specified"));
    };
    if req < min {
        return Some(format!("minimum {res} usage per {ty} is {min}, but request is {req}"));
    }
    match lim {
        Some(lim) if lim < min => Some(format!("minimum {res} usage per {ty} is {min}, but limit is {lim}")),
        _ => None,
    }
}

/// kube's `maxConstraint`: a limit must be stated and both must be at most `max`.
fn max_constraint(ty: &str, res: &str, max: Quantity, req: Option<Quantity>, lim: Option<Quantity>) -> Option<String> {
    let Some(lim) = lim else {
        return Some(format!("maximum {res} usage per {ty} is {max}.  No limit is specified"));
    };
    if lim > max {
        return Some(format!("maximum {res} usage per {ty} is {max}, but limit is {lim}"));
    }
    match req {
        Some(req) if req > max => Some(format!("maximum {res} usage per {ty} is {max}, but request is {req}")),
        _ => None,
    }
}

/// kube's `maxRequestConstraint` (claims have no limits).
fn max_request_constraint(ty: &str, res: &str, max: Quantity, req: Option<Quantity>) -> Option<String> {
    match req {
        None => Some(format!("maximum {res} usage per {ty} is {max}.  No request is specified")),
        Some(req) if req > max => Some(format!("maximum {res} usage per {ty} is {max}, but request is {req}")),
        Some(_) => None,
    }
}

/// kube's `limitRequestRatioConstraint`.
fn ratio_constraint(ty: &str, res: &str, ratio: Quantity, req: Option<Quantity>, lim: Option<Quantity>) -> Option<String> {
    let (Some(req), false) = (req, req.is_none_or(|r| r.is_zero())) else {
        return Some(format!(
            "{res} max limit to request ratio per {ty} is {ratio}, but no request is specified or request is 0"
        ));
    };
    let (Some(lim), false) = (lim, lim.is_none_or(|l| l.is_zero())) else {
        return Some(format!("{res} max limit to request ratio per {ty} is {ratio}, but no limit is specified or limit is 0"));
    };
    let observed = lim.as_f64() / req.as_f64();
    (observed > ratio.as_f64())
        .then(|| format!("{res} max limit to request ratio per {ty} is {ratio}, but provided ratio is {observed:.6}"))
}

/// Min, max and ratio of one item against one set of requests and limits.
fn check_bounds(item: &Item, requests: &ResourceList, limits: &ResourceList, errs: &mut Vec<String>) {
    let ty = item.ty.as_str();
    for (res, min) in &item.min {
        errs.extend(min_constraint(ty, res, *min, requests.get(res).copied(), limits.get(res).copied()));
    }
    for (res, max) in &item.max {
        errs.extend(max_constraint(ty, res, *max, requests.get(res).copied(), limits.get(res).copied()));
    }
    for (res, ratio) in &item.ratio {
        errs.extend(ratio_constraint(ty, res, *ratio, requests.get(res).copied(), limits.get(res).copied()));
    }
}

fn container_lists(pod: &Value, list: &str, which: &str) -> Vec<ResourceList> {
    pod.pointer(&format!("/spec/{list}"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| resource_list_lenient(c.pointer(&format!("/resources/{which}"))))
        .collect()
}

/// The pod-level total that a Pod item bounds: the sum over containers of each resource every
/// container states, raised to any init container's.
fn pod_total(pod: &Value, which: &str) -> ResourceList {
    let lists = container_lists(pod, "containers", which);
    let mut names: BTreeSet<&String> = lists.iter().flat_map(|l| l.keys()).collect();
    names.retain(|n| lists.iter().all(|l| l.contains_key(*n)));
    let mut total: ResourceList =
        names.into_iter().map(|n| (n.clone(), lists.iter().fold(Quantity::ZERO, |acc, l| acc + l[n]))).collect();
    for init in container_lists(pod, "initContainers", which) {
        for (k, v) in init {
            if total.get(&k).is_none_or(|cur| v > *cur) {
                total.insert(k, v);
            }
        }
    }
    total
}

/// Everything one LimitRange refuses about a pod.
fn pod_violations(limit_range: &Value, pod: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    for item in items(limit_range) {
        match item.ty.as_str() {
            "Container" => {
                for list in ["containers", "initContainers"] {
                    let requests = container_lists(pod, list, "requests");
                    let limits = container_lists(pod, list, "limits");
                    for (r, l) in requests.iter().zip(&limits) {
                        check_bounds(&item, r, l, &mut errs);
                    }
                }
            }
            "Pod" => check_bounds(&item, &pod_total(pod, "requests"), &pod_total(pod, "limits"), &mut errs),
            _ => {}
        }
    }
    errs
}

/// Everything one LimitRange refuses about a PersistentVolumeClaim's requests.
fn claim_violations(limit_range: &Value, claim: &Value) -> Vec<String> {
    let requests = resource_list_lenient(claim.pointer("/spec/resources/requests"));
    let mut errs = Vec::new();
    for item in items(limit_range).into_iter().filter(|i| i.ty == "PersistentVolumeClaim") {
        for (res, min) in &item.min {
            errs.extend(min_constraint(&item.ty, res, *min, requests.get(res).copied(), None));
        }
        for (res, max) in &item.max {
            errs.extend(max_request_constraint(&item.ty, res, *max, requests.get(res).copied()));
        }
    }
    errs
}

/// kube's aggregate error text: one message, or `[a, b]`.
fn aggregate(errs: &[String]) -> String {
    if errs.len() == 1 {
        errs[0].clone()
    } else {
        format!("[{}]", errs.join(", "))
    }
}

async fn limit_ranges(storage: &dyn Storage, ns: &str) -> Result<Vec<Value>> {
    let kind = crate::registry::lookup("", "v1", "limitranges").expect("limitranges are in the kind table");
    Ok(super::all_in_namespace(storage, kind, ns).await?.into_iter().map(|s| s.value).collect())
}

impl MutatingPlugin for LimitRanger {
    fn name(&self) -> &'static str {
        "LimitRanger"
    }

    fn admit<'a>(
        &'a self,
        attrs: &'a Attributes<'a>,
        obj: &'a mut Value,
        storage: &'a dyn Storage,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if is(attrs, "limitranges") {
                if let Some(limits) = obj.pointer_mut("/spec/limits").and_then(Value::as_array_mut) {
                    limits.iter_mut().filter(|i| i.is_object()).for_each(default_item);
                }
                return Ok(());
            }
            let (true, Some(ns)) = (is(attrs, "pods"), attrs.namespace) else { return Ok(()) };
            let mut notes = Vec::new();
            // The first LimitRange to give a default wins, as in kube.
            for lr in limit_ranges(storage, ns).await? {
                notes.extend(apply_defaults(&lr, obj));
            }
            if !notes.is_empty() {
                if !obj.pointer("/metadata/annotations").is_some_and(Value::is_object) {
                    obj["metadata"]["annotations"] = json!({});
                }
                obj["metadata"]["annotations"][ANNOTATION] = json!(format!("LimitRanger plugin set: {}", notes.join("; ")));
            }
            Ok(())
        })
    }
}

/// Whether an update changes what a claim asks for (its storage request or limit).
fn resizes(old: &Value, new: &Value) -> bool {
    let deleting = old.pointer("/metadata/deletionTimestamp").is_some();
    let resources = |v: &Value| v.pointer("/spec/resources").cloned();
    !deleting && resources(old) != resources(new)
}

impl ValidatingPlugin for LimitRanger {
    fn name(&self) -> &'static str {
        "LimitRanger"
    }

    fn handles(&self, attrs: &Attributes<'_>, obj: &Value) -> bool {
        match attrs.old {
            None => true,
            Some(old) => is(attrs, "persistentvolumeclaims") && resizes(old, obj),
        }
    }

    fn validate<'a>(
        &'a self,
        attrs: &'a Attributes<'a>,
        obj: &'a Value,
        storage: &'a dyn Storage,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let pod = is(attrs, "pods");
            let (true, Some(ns)) = (pod || is(attrs, "persistentvolumeclaims"), attrs.namespace) else { return Ok(()) };
            for lr in limit_ranges(storage, ns).await? {
                let errs = if pod { pod_violations(&lr, obj) } else { claim_violations(&lr, obj) };
                if !errs.is_empty() {
                    return Err(Error::Forbidden(format!(
                        "{} \"{}\" is forbidden: {}",
                        attrs.kind.group_resource(),
                        attrs.name,
                        aggregate(&errs)
                    )));
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lr(limits: Value) -> Value {
        json!({"metadata": {"name": "lr"}, "spec": {"limits": limits}})
    }

    fn pod(containers: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"containers": containers}})
    }

    #[test]
    fn items_get_kube_defaults() {
        let mut item = json!({"type": "Container", "max": {"cpu": "1"}, "min": {"memory": "64Mi"}, "default": {"memory": "256Mi"}});
        default_item(&mut item);
        assert_eq!(item["default"], json!({"cpu": "1", "memory": "256Mi"}));
        assert_eq!(item["defaultRequest"], json!({"cpu": "1", "memory": "256Mi"}), "the default wins over min");
        let mut pod_item = json!({"type": "Pod", "max": {"cpu": "1"}});
        default_item(&mut pod_item);
        assert_eq!(pod_item, json!({"type": "Pod", "max": {"cpu": "1"}}));
    }

    #[test]
    fn defaults_fill_only_what_is_missing() {
        let range = lr(json!([{"type": "Container", "default": {"cpu": "500m", "memory": "512Mi"}, "defaultRequest": {"cpu": "0.1"}}]));
        let mut p = pod(json!([
            {"name": "web"},
            {"name": "side", "resources": {"limits": {"cpu": "2"}, "requests": {"cpu": "2"}}},
        ]));
        p["spec"]["initContainers"] = json!([{"name": "init", "resources": {}}]);
        let notes = apply_defaults(&range, &mut p);
        assert_eq!(p["spec"]["containers"][0]["resources"], json!({
            "limits": {"cpu": "500m", "memory": "512Mi"},
            "requests": {"cpu": "100m", "memory": "512Mi"},
        }), "memory's request falls back to its default limit");
        assert_eq!(p["spec"]["containers"][1]["resources"], json!({
            "limits": {"cpu": "2", "memory": "512Mi"},
            "requests": {"cpu": "2", "memory": "512Mi"},
        }));
        assert_eq!(p["spec"]["initContainers"][0]["resources"]["limits"]["cpu"], "500m");
        assert_eq!(
            notes,
            vec![
                "cpu, memory request for container web",
                "cpu, memory limit for container web",
                "memory request for container side",
                "memory limit for container side",
                "cpu, memory request for init container init",
                "cpu, memory limit for init container init",
            ]
        );
        assert!(apply_defaults(&lr(json!([{"type": "Pod", "max": {"cpu": "1"}}])), &mut pod(json!([{"name": "a"}]))).is_empty());
    }

    #[test]
    fn container_bounds_in_kubes_words() {
        let range = lr(json!([{"type": "Container", "max": {"cpu": "500m"}, "min": {"memory": "64Mi"}, "maxLimitRequestRatio": {"cpu": "2"}}]));
        let big = pod(json!([{"name": "a", "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "1", "memory": "128Mi"}}}]));
        assert_eq!(pod_violations(&range, &big), vec!["maximum cpu usage per Container is 500m, but limit is 1"]);
        let small = pod(json!([{"name": "a", "resources": {"limits": {"cpu": "500m"}, "requests": {"cpu": "100m", "memory": "32Mi"}}}]));
        assert_eq!(
            pod_violations(&range, &small),
            vec![
                "minimum memory usage per Container is 64Mi, but request is 32Mi",
                "cpu max limit to request ratio per Container is 2, but provided ratio is 5.000000",
            ]
        );
        let bare = pod(json!([{"name": "a"}]));
        assert_eq!(
            aggregate(&pod_violations(&range, &bare)),
            "[minimum memory usage per Container is 64Mi.  No request is specified, \
             maximum cpu usage per Container is 500m.  No limit is specified, \
             cpu max limit to request ratio per Container is 2, but no request is specified or request is 0]"
        );
        let fine = pod(json!([{"name": "a", "resources": {"limits": {"cpu": "400m"}, "requests": {"cpu": "200m", "memory": "64Mi"}}}]));
        assert!(pod_violations(&range, &fine).is_empty());
    }

    #[test]
    fn pod_bounds_sum_the_containers() {
        let range = lr(json!([{"type": "Pod", "max": {"memory": "1Gi"}}]));
        let two = pod(json!([
            {"name": "a", "resources": {"limits": {"memory": "768Mi"}}},
            {"name": "b", "resources": {"limits": {"memory": "512Mi"}}},
        ]));
        assert_eq!(pod_violations(&range, &two), vec!["maximum memory usage per Pod is 1Gi, but limit is 1280Mi"]);
        let one_unlimited = pod(json!([{"name": "a", "resources": {"limits": {"memory": "768Mi"}}}, {"name": "b"}]));
        assert_eq!(pod_violations(&range, &one_unlimited), vec!["maximum memory usage per Pod is 1Gi.  No limit is specified"]);
        let mut init = pod(json!([{"name": "a", "resources": {"limits": {"memory": "100Mi"}}}]));
        init["spec"]["initContainers"] = json!([{"name": "i", "resources": {"limits": {"memory": "2Gi"}}}]);
        assert_eq!(pod_violations(&range, &init), vec!["maximum memory usage per Pod is 1Gi, but limit is 2Gi"]);
    }

    #[test]
    fn updates_are_checked_only_for_claim_resizes() {
        let pvcs = crate::registry::lookup("", "v1", "persistentvolumeclaims").unwrap();
        let pods = crate::registry::lookup("", "v1", "pods").unwrap();
        let claim = |s: &str| json!({"metadata": {}, "spec": {"resources": {"requests": {"storage": s}}}});
        let (small, big) = (claim("1Gi"), claim("5Gi"));
        let update = |kind, old| Attributes { operation: crate::admission::Operation::Update, old: Some(old), ..Attributes::create(kind, Some("ns"), "c", "r") };
        assert!(LimitRanger.handles(&update(pvcs, &small), &big));
        let mut labelled = small.clone();
        labelled["metadata"]["labels"] = json!({"a": "b"});
        assert!(!LimitRanger.handles(&update(pvcs, &small), &labelled), "no resize, nothing to check");
        let mut deleting = small.clone();
        deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert!(!LimitRanger.handles(&update(pvcs, &deleting), &big));
        let p = pod(json!([{"name": "a"}]));
        assert!(!LimitRanger.handles(&update(pods, &p), &pod(json!([{"name": "b"}]))), "pods are left alone on update");
        assert!(LimitRanger.handles(&Attributes::create(pods, Some("ns"), "p", "u"), &p));
    }

    #[test]
    fn claims_are_bounded_by_their_storage_request() {
        let range = lr(json!([{"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}, "max": {"storage": "10Gi"}}]));
        let claim = |s: &str| json!({"spec": {"resources": {"requests": {"storage": s}}}});
        assert_eq!(claim_violations(&range, &claim("20Gi")), vec!["maximum storage usage per PersistentVolumeClaim is 10Gi, but request is 20Gi"]);
        assert_eq!(claim_violations(&range, &claim("500Mi")), vec!["minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 500Mi"]);
        assert!(claim_violations(&range, &claim("5Gi")).is_empty());
    }
}
