//! The per-kind strategies: small, one per kind that needs more than the defaults.

use base64::Engine;
use serde_json::{json, Map, Value};

use crate::error::Cause;
use crate::registry::strategy::Strategy;
use crate::registry::validation::NameRule;

/// Kinds with nothing special: ConfigMap, ServiceAccount.
pub struct DefaultStrategy;
impl Strategy for DefaultStrategy {}

/// Events: stored with a TTL of one hour (kube-apiserver's `--event-ttl` default).
pub struct EventStrategy;
impl Strategy for EventStrategy {
    fn ttl(&self) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_secs(3600))
    }
    fn selectable_fields(&self) -> &'static [&'static str] {
        &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ]
    }
}

fn obj_mut<'a>(v: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    if !v.get(key).is_some_and(Value::is_object) {
        v[key] = json!({});
    }
    v[key].as_object_mut().expect("just made an object")
}

fn default_field(map: &mut Map<String, Value>, key: &str, value: Value) {
    map.entry(key.to_string()).or_insert(value);
}

/// Namespaces: Active on create; DELETE makes them Terminating until `spec.finalizers` (set by
/// the namespace controller through `.../finalize`) and `metadata.finalizers` are empty.
pub struct NamespaceStrategy;
impl Strategy for NamespaceStrategy {
    fn name_rule(&self) -> NameRule {
        NameRule::Label
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"phase": "Active"});
        default_field(obj_mut(obj, "spec"), "finalizers", json!(["kubernetes"]));
    }
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        // Only `.../finalize` changes spec.finalizers (kube-apiserver's rule).
        obj_mut(new, "spec").insert("finalizers".into(), old.pointer("/spec/finalizers").cloned().unwrap_or(json!([])));
    }
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["status.phase"]
    }
    fn blocks_deletion(&self, obj: &Value) -> bool {
        obj.pointer("/spec/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty())
    }
    fn mark_terminating(&self, obj: &mut Value) {
        obj_mut(obj, "status").insert("phase".into(), json!("Terminating"));
    }
}

/// Pods: defaults of the pod spec, status reset to Pending, spec immutable but for images.
pub struct PodStrategy;
impl Strategy for PodStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"phase": "Pending"});
        let spec = obj_mut(obj, "spec");
        default_field(spec, "restartPolicy", json!("Always"));
        default_field(spec, "dnsPolicy", json!("ClusterFirst"));
        default_field(spec, "terminationGracePeriodSeconds", json!(30));
        default_field(spec, "schedulerName", json!("default-scheduler"));
        for list in ["containers", "initContainers"] {
            if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
                for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                    let image = c.get("image").and_then(Value::as_str).unwrap_or("");
                    let last = image.rsplit('/').next().unwrap_or("");
                    let latest = !last.contains(':') || last.ends_with(":latest");
                    let policy = if latest && !image.contains('@') { "Always" } else { "IfNotPresent" };
                    default_field(c, "imagePullPolicy", json!(policy));
                    default_field(c, "terminationMessagePath", json!("/dev/termination-log"));
                    default_field(c, "terminationMessagePolicy", json!("File"));
                }
            }
        }
    }
    fn validate(&self, obj: &Value, causes: &mut Vec<Cause>) {
        let mut seen = std::collections::HashSet::new();
        for list in ["initContainers", "containers"] {
            let Some(cs) = obj.pointer(&format!("/spec/{list}")).and_then(Value::as_array) else { continue };
            for (i, c) in cs.iter().enumerate() {
                let Some(name) = c.get("name").and_then(Value::as_str) else { continue };
                let field = format!("spec.{list}[{i}].name");
                for msg in crate::registry::validation::dns1123_label(name) {
                    causes.push(Cause::invalid(&field, &json!(name), &msg));
                }
                if !seen.insert(name.to_string()) {
                    causes.push(Cause {
                        reason: "FieldValueDuplicate".into(),
                        message: format!("Duplicate value: {}", json!(name)),
                        field,
                    });
                }
            }
        }
    }
    fn validate_update(&self, new: &Value, old: &Value, causes: &mut Vec<Cause>) {
        // kube-apiserver allows only images (and a few scheduling fields) to change in a pod
        // spec; compare with images blanked out.
        let strip = |v: &Value| {
            let mut spec = v.get("spec").cloned().unwrap_or(json!({}));
            for list in ["containers", "initContainers"] {
                if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
                    for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                        c.remove("image");
                    }
                }
            }
            if let Some(s) = spec.as_object_mut() {
                s.remove("activeDeadlineSeconds");
                s.remove("tolerations");
                // The scheduler's binding sets nodeName once.
                if old.pointer("/spec/nodeName").is_none() {
                    s.remove("nodeName");
                }
            }
            spec
        };
        if strip(new) != strip(old) {
            causes.push(Cause {
                reason: "FieldValueForbidden".into(),
                message: "Forbidden: pod updates may not change fields other than `spec.containers[*].image`, \
                          `spec.initContainers[*].image`, `spec.activeDeadlineSeconds` or `spec.tolerations` \
                          (only additions to existing tolerations)"
                    .into(),
                field: "spec".into(),
            });
        }
    }
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["spec.nodeName", "status.phase", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName", "status.podIP"]
    }
    fn returns_deleted_object(&self) -> bool {
        true
    }
    fn grace_period(&self, obj: &Value, requested: Option<i64>) -> i64 {
        // Nothing runs a pod that is not on a node or has finished: it goes at once.
        let node = obj.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("");
        let phase = obj.pointer("/status/phase").and_then(Value::as_str).unwrap_or("");
        if node.is_empty() || phase == "Succeeded" || phase == "Failed" {
            return 0;
        }
        requested.unwrap_or_else(|| obj.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(30))
    }
}

/// Secrets: `stringData` is folded into base64 `data` on write, as kube-apiserver does.
pub struct SecretStrategy;
impl SecretStrategy {
    fn fold_string_data(obj: &mut Value) {
        let Some(string_data) = obj.as_object_mut().and_then(|o| o.remove("stringData")) else { return };
        let Some(entries) = string_data.as_object() else { return };
        let data = obj_mut(obj, "data");
        for (k, v) in entries {
            if let Some(s) = v.as_str() {
                data.insert(k.clone(), json!(base64::engine::general_purpose::STANDARD.encode(s)));
            }
        }
    }
}
impl Strategy for SecretStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        Self::fold_string_data(obj);
        if obj.get("type").is_none() {
            obj["type"] = json!("Opaque");
        }
    }
    fn prepare_for_update(&self, new: &mut Value, _old: &Value) {
        Self::fold_string_data(new);
    }
    fn validate(&self, obj: &Value, causes: &mut Vec<Cause>) {
        let Some(data) = obj.get("data").and_then(Value::as_object) else { return };
        for (k, v) in data {
            let ok = v.as_str().is_some_and(|s| base64::engine::general_purpose::STANDARD.decode(s).is_ok());
            if !ok {
                causes.push(Cause::invalid(format!("data[{k}]"), v, "must be base64-encoded"));
            }
        }
    }
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["type"]
    }
}

/// Services: DNS-1035 names, port defaults, clusterIP immutable once set.
pub struct ServiceStrategy;
impl Strategy for ServiceStrategy {
    fn name_rule(&self) -> NameRule {
        NameRule::Dns1035
    }
    fn tracks_generation(&self) -> bool {
        true
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"loadBalancer": {}});
        let spec = obj_mut(obj, "spec");
        default_field(spec, "type", json!("ClusterIP"));
        default_field(spec, "sessionAffinity", json!("None"));
        if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
            for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                default_field(p, "protocol", json!("TCP"));
                if let Some(port) = p.get("port").cloned() {
                    default_field(p, "targetPort", port);
                }
            }
        }
    }
    fn validate_update(&self, new: &Value, old: &Value, causes: &mut Vec<Cause>) {
        let old_ip = old.pointer("/spec/clusterIP").and_then(Value::as_str).unwrap_or("");
        let new_ip = new.pointer("/spec/clusterIP").and_then(Value::as_str).unwrap_or("");
        if !old_ip.is_empty() && old_ip != new_ip {
            causes.push(Cause::immutable("spec.clusterIP"));
        }
    }
}

/// Nodes: cluster-scoped; the kubelet registers them with a status, which is kept.
pub struct NodeStrategy;
impl Strategy for NodeStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["spec.unschedulable"]
    }
}

/// Deployments: defaults, the selector must match the template's labels and never changes.
pub struct DeploymentStrategy;
impl Strategy for DeploymentStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({});
        let spec = obj_mut(obj, "spec");
        default_field(spec, "replicas", json!(1));
        default_field(spec, "revisionHistoryLimit", json!(10));
        default_field(spec, "progressDeadlineSeconds", json!(600));
        default_field(
            spec,
            "strategy",
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}),
        );
    }
    fn validate(&self, obj: &Value, causes: &mut Vec<Cause>) {
        let Some(selector) = obj.pointer("/spec/selector") else { return };
        let labels = obj.pointer("/spec/template/metadata/labels").cloned().unwrap_or(json!({}));
        if !crate::registry::selector::label_selector_matches(selector, &labels) {
            causes.push(Cause::invalid(
                "spec.template.metadata.labels",
                &labels,
                "`selector` does not match template `labels`",
            ));
        }
        let empty = selector.get("matchLabels").and_then(Value::as_object).is_none_or(|m| m.is_empty())
            && selector.get("matchExpressions").and_then(Value::as_array).is_none_or(|m| m.is_empty());
        if empty {
            causes.push(Cause::invalid("spec.selector", selector, "empty selector is invalid for deployment"));
        }
    }
    fn validate_update(&self, new: &Value, old: &Value, causes: &mut Vec<Cause>) {
        if new.pointer("/spec/selector") != old.pointer("/spec/selector") {
            causes.push(Cause::immutable("spec.selector"));
        }
    }
}
