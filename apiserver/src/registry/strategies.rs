//! The per-kind strategies: small, one per kind that needs more than the defaults.

use base64::Engine;
use serde_json::{json, Map, Value};

use crate::admission::quantity::{resource_list_lenient, validate_list};
use crate::error::Cause;
use crate::registry::strategy::Strategy;
use crate::registry::validation::NameRule;

/// Kinds with nothing special: ConfigMap, ServiceAccount, Endpoints, PodTemplate,
/// Lease, EndpointSlice.
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
                    default_requests_from_limits(c);
                }
            }
        }
    }
    fn validate(&self, obj: &Value, causes: &mut Vec<Cause>) {
        let mut seen = std::collections::HashSet::new();
        for list in ["initContainers", "containers"] {
            let Some(cs) = obj.pointer(&format!("/spec/{list}")).and_then(Value::as_array) else { continue };
            for (i, c) in cs.iter().enumerate() {
                for which in ["limits", "requests"] {
                    let field = format!("spec.{list}[{i}].resources.{which}");
                    validate_list(c.pointer(&format!("/resources/{which}")), &field, causes);
                }
                let requests = resource_list_lenient(c.pointer("/resources/requests"));
                let limits = resource_list_lenient(c.pointer("/resources/limits"));
                for (k, r) in &requests {
                    if let Some(l) = limits.get(k).filter(|l| r > *l) {
                        let field = format!("spec.{list}[{i}].resources.requests");
                        causes.push(Cause::invalid(field, &json!(r.to_string()), &format!("must be less than or equal to {k} limit of {l}")));
                    }
                }
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

/// kube's pod defaulting: a container that states a limit but no request for a resource
/// requests its limit (what LimitRange defaults and quota accounting then see).
fn default_requests_from_limits(c: &mut Map<String, Value>) {
    let Some(limits) = c.get("resources").and_then(|r| r.get("limits")).and_then(Value::as_object).cloned() else { return };
    if limits.is_empty() {
        return;
    }
    let resources = c.get_mut("resources").expect("limits live in resources");
    if resources.get("requests").is_some_and(|r| !r.is_object() && !r.is_null()) {
        return;
    }
    let requests = obj_mut(resources, "requests");
    for (k, v) in limits {
        requests.entry(k).or_insert(v);
    }
}

/// ResourceQuota: `spec.hard` holds quantities.
pub fn validate_resourcequota(obj: &Value, causes: &mut Vec<Cause>) {
    validate_list(obj.pointer("/spec/hard"), "spec.hard", causes);
}

/// LimitRange: every bound of every item is a quantity.
pub fn validate_limitrange(obj: &Value, causes: &mut Vec<Cause>) {
    let items = obj.pointer("/spec/limits").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    for (i, item) in items.iter().enumerate() {
        for f in ["max", "min", "default", "defaultRequest", "maxLimitRequestRatio"] {
            validate_list(item.get(f), &format!("spec.limits[{i}].{f}"), causes);
        }
    }
}

/// PersistentVolumeClaim: the requested size is a quantity.
pub fn validate_persistentvolumeclaim(obj: &Value, causes: &mut Vec<Cause>) {
    validate_list(obj.pointer("/spec/resources/requests"), "spec.resources.requests", causes);
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
        validate_template_selector(obj, "deployment", causes);
    }
    fn validate_update(&self, new: &Value, old: &Value, causes: &mut Vec<Cause>) {
        if new.pointer("/spec/selector") != old.pointer("/spec/selector") {
            causes.push(Cause::immutable("spec.selector"));
        }
    }
}

/// The rule every pod-template workload shares: `spec.selector` (a LabelSelector) is not empty
/// and selects the pods of `spec.template`, or the controller would adopt pods it never made
/// and never see the ones it makes. `what` names the kind in the message, as kube-apiserver does.
fn validate_template_selector(obj: &Value, what: &str, causes: &mut Vec<Cause>) {
    let Some(selector) = obj.pointer("/spec/selector") else { return };
    let labels = obj.pointer("/spec/template/metadata/labels").cloned().unwrap_or(json!({}));
    if !crate::registry::selector::label_selector_matches(selector, &labels) {
        causes.push(Cause::invalid("spec.template.metadata.labels", &labels, "`selector` does not match template `labels`"));
    }
    let empty = selector.get("matchLabels").and_then(Value::as_object).is_none_or(|m| m.is_empty())
        && selector.get("matchExpressions").and_then(Value::as_array).is_none_or(|m| m.is_empty());
    if empty {
        causes.push(Cause::invalid("spec.selector", selector, &format!("empty selector is invalid for {what}")));
    }
}

/// A strategy made of data: the kinds added for issue 6 differ only in these few facts, so
/// each is one `static` in `kinds.rs` rather than one more type here.
pub struct RulesStrategy {
    /// Whether `metadata.generation` counts spec changes (kinds a controller reconciles).
    pub generation: bool,
    /// Whether create starts from an empty status (kinds with a status subresource: the
    /// controller, not the client, writes status).
    pub reset_status: bool,
    /// Status counters kube-apiserver always serializes (Go `int32` without `omitempty`), so
    /// the reset status has them at 0: typed clients (the Python one) reject a status
    /// without them.
    pub status_zeroes: &'static [&'static str],
    /// Defaults applied on create.
    pub prepare: fn(&mut Value),
    /// Kind-specific rules on create and update.
    pub validate: fn(&Value, &mut Vec<Cause>),
    /// Dotted paths that may not change after create.
    pub immutable: &'static [&'static str],
}

impl RulesStrategy {
    /// No defaults, no rules, no immutable fields: a kind the schema describes completely.
    pub const PLAIN: Self = Self {
        generation: false,
        reset_status: false,
        status_zeroes: &[],
        prepare: no_prepare,
        validate: no_validate,
        immutable: &[],
    };
}

/// For `RulesStrategy::prepare` when there are no defaults.
pub fn no_prepare(_obj: &mut Value) {}

/// For `RulesStrategy::validate` when the schema says it all.
pub fn no_validate(_obj: &Value, _causes: &mut Vec<Cause>) {}

impl Strategy for RulesStrategy {
    fn tracks_generation(&self) -> bool {
        self.generation
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        if self.reset_status {
            obj["status"] = self.status_zeroes.iter().map(|f| (f.to_string(), json!(0))).collect::<Map<String, Value>>().into();
        }
        (self.prepare)(obj);
    }
    fn validate(&self, obj: &Value, causes: &mut Vec<Cause>) {
        (self.validate)(obj, causes);
    }
    fn validate_update(&self, new: &Value, old: &Value, causes: &mut Vec<Cause>) {
        for field in self.immutable {
            let pointer = format!("/{}", field.replace('.', "/"));
            if new.pointer(&pointer) != old.pointer(&pointer) {
                causes.push(Cause::immutable(*field));
            }
        }
    }
}

/// Defaults a map under `obj` (`spec`, `spec.jobTemplate.spec`), creating it if needed.
fn defaults_at(obj: &mut Value, pointer: &str, defaults: &[(&str, Value)]) {
    let Some(target) = obj.pointer_mut(pointer) else { return };
    let Some(map) = target.as_object_mut() else { return };
    for (k, v) in defaults {
        default_field(map, k, v.clone());
    }
}

/// ReplicaSet and StatefulSet: one replica unless told.
pub fn prepare_replicas(obj: &mut Value) {
    obj_mut(obj, "spec");
    defaults_at(obj, "/spec", &[("replicas", json!(1))]);
}

/// StatefulSet: kube-apiserver's defaults for the fields users read back.
pub fn prepare_statefulset(obj: &mut Value) {
    obj_mut(obj, "spec");
    defaults_at(
        obj,
        "/spec",
        &[
            ("replicas", json!(1)),
            ("podManagementPolicy", json!("OrderedReady")),
            ("revisionHistoryLimit", json!(10)),
            ("updateStrategy", json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})),
        ],
    );
}

/// DaemonSet: rolling updates one node at a time.
pub fn prepare_daemonset(obj: &mut Value) {
    obj_mut(obj, "spec");
    defaults_at(
        obj,
        "/spec",
        &[
            ("revisionHistoryLimit", json!(10)),
            ("updateStrategy", json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})),
        ],
    );
}

/// ReplicationController: the selector defaults to the template's labels (the v1 rule), and
/// one replica.
pub fn prepare_replicationcontroller(obj: &mut Value) {
    obj_mut(obj, "spec");
    let labels = obj.pointer("/spec/template/metadata/labels").cloned();
    let spec = obj_mut(obj, "spec");
    default_field(spec, "replicas", json!(1));
    let unset = spec.get("selector").and_then(Value::as_object).is_none_or(|m| m.is_empty());
    if let (true, Some(labels)) = (unset, labels) {
        spec.insert("selector".into(), labels);
    }
}

/// ReplicaSet, StatefulSet, DaemonSet: the selector is required (the schema says so) and must
/// select the template.
pub fn validate_apps_workload(obj: &Value, causes: &mut Vec<Cause>) {
    let what = obj.get("kind").and_then(Value::as_str).unwrap_or("workload").to_ascii_lowercase();
    validate_template_selector(obj, &what, causes);
}

/// ReplicationController: its selector is a plain label map, which must select the template.
pub fn validate_replicationcontroller(obj: &Value, causes: &mut Vec<Cause>) {
    let Some(selector) = obj.pointer("/spec/selector") else {
        causes.push(Cause::required("spec.selector", ""));
        return;
    };
    let as_label_selector = json!({"spec": {
        "selector": {"matchLabels": selector},
        "template": obj.pointer("/spec/template").cloned().unwrap_or(json!({})),
    }});
    let mut found = Vec::new();
    validate_template_selector(&as_label_selector, "replicationcontroller", &mut found);
    causes.extend(found);
}

/// The label kube-apiserver puts on a Job's pods and selects them by.
const JOB_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";

/// Job: without `manualSelector` the selector is generated from the Job's uid (a user-chosen
/// one could select another Job's pods), and the template gets the matching labels; then the
/// defaults (`backoffLimit` 6, `completions`/`parallelism` 1 as kube-apiserver sets them for
/// a plain one-pod Job).
pub fn prepare_job(obj: &mut Value) {
    let uid = obj.pointer("/metadata/uid").cloned().unwrap_or(json!(""));
    let name = obj.pointer("/metadata/name").cloned().unwrap_or(json!(""));
    let manual = obj.pointer("/spec/manualSelector").and_then(Value::as_bool).unwrap_or(false);
    let spec = obj_mut(obj, "spec");
    if !manual && spec.get("selector").is_none() {
        spec.insert("selector".into(), json!({"matchLabels": {JOB_UID_LABEL: uid}}));
        let template = spec.entry("template").or_insert(json!({}));
        if let Some(template) = template.as_object_mut() {
            let meta = template.entry("metadata").or_insert(json!({}));
            if let Some(meta) = meta.as_object_mut() {
                let labels = meta.entry("labels").or_insert(json!({}));
                if !labels.is_object() {
                    *labels = json!({});
                }
                if let Some(labels) = labels.as_object_mut() {
                    labels.insert(JOB_UID_LABEL.into(), uid.clone());
                    labels.insert("batch.kubernetes.io/job-name".into(), name.clone());
                    labels.insert("controller-uid".into(), uid);
                    labels.insert("job-name".into(), name);
                }
            }
        }
    }
    default_field(spec, "backoffLimit", json!(6));
    // A Job with neither is one pod run once; one with only `parallelism` is a work queue,
    // whose `completions` stays unset.
    if spec.get("completions").is_none() && spec.get("parallelism").is_none() {
        spec.insert("completions".into(), json!(1));
    }
    default_field(spec, "parallelism", json!(1));
    default_field(spec, "completionMode", json!("NonIndexed"));
    default_field(spec, "suspend", json!(false));
}

/// Job: the (possibly generated) selector selects the template; a Job's pods must not
/// restart in place (`Always` would never let it complete).
pub fn validate_job(obj: &Value, causes: &mut Vec<Cause>) {
    validate_template_selector(obj, "job", causes);
    if let Some(policy) = obj.pointer("/spec/template/spec/restartPolicy").and_then(Value::as_str) {
        if policy == "Always" {
            causes.push(Cause {
                reason: "FieldValueNotSupported".into(),
                message: format!("Unsupported value: {}: supported values: \"OnFailure\", \"Never\"", json!(policy)),
                field: "spec.template.spec.restartPolicy".into(),
            });
        }
    }
}

/// CronJob: kube-apiserver's defaults.
pub fn prepare_cronjob(obj: &mut Value) {
    obj_mut(obj, "spec");
    defaults_at(
        obj,
        "/spec",
        &[
            ("concurrencyPolicy", json!("Allow")),
            ("suspend", json!(false)),
            ("successfulJobsHistoryLimit", json!(3)),
            ("failedJobsHistoryLimit", json!(1)),
        ],
    );
}

/// CronJob: a schedule the controller can parse (five fields or a `@` macro), and a job
/// template whose pods do not restart in place.
pub fn validate_cronjob(obj: &Value, causes: &mut Vec<Cause>) {
    if let Some(schedule) = obj.pointer("/spec/schedule").and_then(Value::as_str) {
        let macros = ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"];
        let body = schedule.split_whitespace().filter(|f| !f.starts_with("TZ=") && !f.starts_with("CRON_TZ=")).count();
        let ok = macros.contains(&schedule.trim()) || schedule.trim().starts_with("@every ") || body == 5;
        if !ok {
            causes.push(Cause::invalid("spec.schedule", &json!(schedule), "unparseable schedule: expected exactly 5 fields"));
        }
    }
    if let Some(policy) = obj.pointer("/spec/jobTemplate/spec/template/spec/restartPolicy").and_then(Value::as_str) {
        if policy == "Always" {
            causes.push(Cause {
                reason: "FieldValueNotSupported".into(),
                message: format!("Unsupported value: {}: supported values: \"OnFailure\", \"Never\"", json!(policy)),
                field: "spec.jobTemplate.spec.template.spec.restartPolicy".into(),
            });
        }
    }
}

/// PodDisruptionBudget: `minAvailable` and `maxUnavailable` exclude each other.
pub fn validate_pdb(obj: &Value, causes: &mut Vec<Cause>) {
    let set = |f: &str| obj.pointer(&format!("/spec/{f}")).is_some_and(|v| !v.is_null());
    if set("minAvailable") && set("maxUnavailable") {
        causes.push(Cause::invalid(
            "spec",
            obj.get("spec").unwrap_or(&Value::Null),
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
}

/// HorizontalPodAutoscaler: `minReplicas` defaults to 1 and may not exceed `maxReplicas`.
pub fn prepare_hpa(obj: &mut Value) {
    obj_mut(obj, "spec");
    defaults_at(obj, "/spec", &[("minReplicas", json!(1))]);
}

/// HorizontalPodAutoscaler: the bounds are ordered.
pub fn validate_hpa(obj: &Value, causes: &mut Vec<Cause>) {
    let min = obj.pointer("/spec/minReplicas").and_then(Value::as_i64);
    let max = obj.pointer("/spec/maxReplicas").and_then(Value::as_i64);
    if let (Some(min), Some(max)) = (min, max) {
        if min > max {
            causes.push(Cause::invalid("spec.maxReplicas", &json!(max), "must be greater than or equal to `minReplicas`"));
        }
    }
}
