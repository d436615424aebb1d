//! The columns `kubectl get` shows: per kind, kube-apiserver's table printers as pure functions
//! from a stored object (and the time now) to its cells, and the meta.k8s.io Table around them.
//!
//! Every cell is computed as if `-o wide` were asked (kube-apiserver does the same); kubectl
//! hides columns with priority > 0 unless the user asks for them.

use serde_json::{json, Map, Value};

use crate::registry::meta::rfc3339;

/// One column of a Table (`columnDefinitions[]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Header as kube-apiserver names it (`Cluster-IP`); kubectl upper-cases it.
    pub name: &'static str,
    /// OpenAPI type of the cells: `string`, `integer`, `date`.
    pub ty: &'static str,
    /// `name` for the column that identifies the object, else "".
    pub format: &'static str,
    /// What the column means.
    pub description: &'static str,
    /// 0 = always shown, 1 = only with `-o wide`.
    pub priority: u32,
}

const fn col(name: &'static str, ty: &'static str, description: &'static str) -> Column {
    Column { name, ty, format: "", description, priority: 0 }
}

const fn wide(name: &'static str, ty: &'static str, description: &'static str) -> Column {
    Column { name, ty, format: "", description, priority: 1 }
}

const NAME: Column = Column {
    name: "Name",
    ty: "string",
    format: "name",
    description: "Name must be unique within a namespace.",
    priority: 0,
};
const AGE: Column = col("Age", "string", "Time since the object was created (metadata.creationTimestamp).");
const CONTAINERS: Column = wide("Containers", "string", "Names of each container in the template.");
const IMAGES: Column = wide("Images", "string", "Images referenced by each container in the template.");
const SELECTOR: Column = wide("Selector", "string", "The label selector of the pods this object manages.");

/// How a row carries its object (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    /// No object.
    None,
    /// A meta.k8s.io PartialObjectMetadata (kube's default for tables).
    Metadata,
    /// The whole object.
    Object,
}

impl IncludeObject {
    /// Parses the `includeObject` query value ("" = Metadata).
    pub fn parse(v: &str) -> Option<Self> {
        match v {
            "" | "Metadata" => Some(Self::Metadata),
            "Object" => Some(Self::Object),
            "None" => Some(Self::None),
            _ => None,
        }
    }
}

/// What the Table is made for: the version of meta.k8s.io and the row objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableOptions {
    /// `v1` or `v1beta1`.
    pub version: &'static str,
    /// What each row carries.
    pub include: IncludeObject,
    /// Leave `columnDefinitions` empty (watch events after the first, as kube-apiserver does).
    pub no_headers: bool,
}

/// A kind's printer: its columns and the cells of one object.
struct Printer {
    columns: &'static [Column],
    cells: fn(&Value, i64) -> Vec<Value>,
}

/// A Table of `items` (a list's, or one object's), with `metadata` (resourceVersion, continue)
/// carried over; `now` is the time in seconds since the epoch, for the ages.
pub fn table(group: &str, resource: &str, items: &[Value], metadata: Value, opts: TableOptions, now: i64) -> Value {
    let printer = printer(group, resource);
    let columns: Vec<Value> = if opts.no_headers {
        Vec::new()
    } else {
        printer
            .columns
            .iter()
            .map(|c| {
                json!({"name": c.name, "type": c.ty, "format": c.format, "description": c.description, "priority": c.priority})
            })
            .collect()
    };
    let meta_api_version = format!("meta.k8s.io/{}", opts.version);
    let rows: Vec<Value> = items
        .iter()
        .map(|obj| {
            let mut row = Map::new();
            row.insert("cells".into(), Value::Array((printer.cells)(obj, now)));
            if let Some(c) = row_conditions(group, resource, obj) {
                row.insert("conditions".into(), c);
            }
            match opts.include {
                IncludeObject::None => {}
                IncludeObject::Object => {
                    row.insert("object".into(), obj.clone());
                }
                IncludeObject::Metadata => {
                    let partial = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": meta_api_version,
                        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
                    });
                    row.insert("object".into(), partial);
                }
            }
            Value::Object(row)
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": meta_api_version,
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// The columns `kubectl get` shows for a resource.
pub fn columns(group: &str, resource: &str) -> &'static [Column] {
    printer(group, resource).columns
}

/// The cells of one object, in the order of `columns`.
pub fn cells(group: &str, resource: &str, obj: &Value, now: i64) -> Vec<Value> {
    (printer(group, resource).cells)(obj, now)
}

fn printer(group: &str, resource: &str) -> Printer {
    let p = |columns: &'static [Column], cells: fn(&Value, i64) -> Vec<Value>| Printer { columns, cells };
    match (group, resource) {
        ("", "pods") => p(POD_COLUMNS, pod_cells),
        ("", "namespaces") => p(NAMESPACE_COLUMNS, namespace_cells),
        ("", "nodes") => p(NODE_COLUMNS, node_cells),
        ("", "services") => p(SERVICE_COLUMNS, service_cells),
        ("", "configmaps") => p(CONFIGMAP_COLUMNS, configmap_cells),
        ("", "secrets") => p(SECRET_COLUMNS, secret_cells),
        ("", "serviceaccounts") => p(SERVICEACCOUNT_COLUMNS, serviceaccount_cells),
        ("", "events") => p(EVENT_COLUMNS, event_cells),
        ("", "endpoints") => p(ENDPOINTS_COLUMNS, endpoints_cells),
        ("", "persistentvolumes") => p(PV_COLUMNS, pv_cells),
        ("", "persistentvolumeclaims") => p(PVC_COLUMNS, pvc_cells),
        ("", "replicationcontrollers") => p(REPLICASET_COLUMNS, replicationcontroller_cells),
        ("apps", "deployments") => p(DEPLOYMENT_COLUMNS, deployment_cells),
        ("apps", "replicasets") => p(REPLICASET_COLUMNS, replicaset_cells),
        ("apps", "statefulsets") => p(STATEFULSET_COLUMNS, statefulset_cells),
        ("apps", "daemonsets") => p(DAEMONSET_COLUMNS, daemonset_cells),
        ("batch", "jobs") => p(JOB_COLUMNS, job_cells),
        ("batch", "cronjobs") => p(CRONJOB_COLUMNS, cronjob_cells),
        ("coordination.k8s.io", "leases") => p(LEASE_COLUMNS, lease_cells),
        _ => p(&[NAME, AGE], default_cells),
    }
}

/// kubectl marks finished pods with a Completed condition on their row.
fn row_conditions(group: &str, resource: &str, obj: &Value) -> Option<Value> {
    if (group, resource) != ("", "pods") {
        return None;
    }
    let (reason, message) = match str_at(obj, "/status/phase") {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(json!([{"type": "Completed", "status": "True", "reason": reason, "message": message}]))
}

// ---- helpers over JSON ----

fn str_at<'a>(obj: &'a Value, ptr: &str) -> &'a str {
    obj.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn int_at(obj: &Value, ptr: &str) -> i64 {
    obj.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

fn arr_at<'a>(obj: &'a Value, ptr: &str) -> &'a [Value] {
    obj.pointer(ptr).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

fn len_at(obj: &Value, ptr: &str) -> i64 {
    match obj.pointer(ptr) {
        Some(Value::Object(m)) => m.len() as i64,
        Some(Value::Array(a)) => a.len() as i64,
        _ => 0,
    }
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s.to_string()
    }
}

fn name(obj: &Value) -> Value {
    json!(str_at(obj, "/metadata/name"))
}

fn age(obj: &Value, now: i64) -> Value {
    json!(since(str_at(obj, "/metadata/creationTimestamp"), now))
}

/// kube's `translateTimestampSince`: "<unknown>" for no time, else the human duration since.
pub fn since(timestamp: &str, now: i64) -> String {
    match parse_time(timestamp) {
        Some(t) => human_duration(now - t),
        None => "<unknown>".into(),
    }
}

/// Seconds since the epoch of an RFC 3339 time (`2026-11-24T10:00:00Z`, fractions and offsets
/// allowed); `None` for "" or a malformed value.
pub fn parse_time(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && rest.as_bytes()[3] == b':' => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            sign * (rest[1..3].parse::<i64>().ok()? * 3600 + rest[4..6].parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    let month = time::Month::try_from(u8::try_from(month).ok()?).ok()?;
    let date = time::Date::from_calendar_date(i32::try_from(year).ok()?, month, u8::try_from(day).ok()?).ok()?;
    let t = time::Time::from_hms(u8::try_from(hour).ok()?, u8::try_from(minute).ok()?, u8::try_from(second).ok()?).ok()?;
    Some(date.with_time(t).assume_utc().unix_timestamp() - offset)
}

/// apimachinery's `duration.HumanDuration`: "5s", "3m20s", "2d4h", "3y"; a little in the future
/// is "0s" (clock skew), more is "<invalid>".
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        return match secs % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{}d", hours / 24),
            h => format!("{}d{h}h", hours / 24),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        return match (hours / 24) % 365 {
            0 => format!("{}y", hours / 24 / 365),
            d => format!("{}y{d}d", hours / 24 / 365),
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// `a=1,b=2` of a label map, "<none>" when empty (kube's `labels.FormatLabels`).
fn format_labels(map: Option<&Value>) -> String {
    let parts: Vec<String> = map
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect())
        .unwrap_or_default();
    or_none(&parts.join(","))
}

/// A LabelSelector as kubectl prints it (`app=web`), "" when there is none.
fn label_selector(sel: Option<&Value>) -> String {
    sel.map(crate::registry::selector::selector_string).unwrap_or_default()
}

/// The CONTAINERS and IMAGES cells of a pod template's spec.
fn containers_and_images(pod_spec: Option<&Value>) -> [Value; 2] {
    let containers = pod_spec.and_then(|s| s.get("containers")).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    let names: Vec<&str> = containers.iter().map(|c| str_at(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| str_at(c, "/image")).collect();
    [json!(names.join(",")), json!(images.join(","))]
}

fn default_cells(obj: &Value, now: i64) -> Vec<Value> {
    vec![name(obj), age(obj, now)]
}

// ---- pods ----

const POD_COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
    col("Status", "string", "The aggregate status of the containers in this pod."),
    col("Restarts", "string", "The number of times the containers in this pod have been restarted, and when the last one was."),
    AGE,
    wide("IP", "string", "The pod's IP address (status.podIPs[0])."),
    wide("Node", "string", "The node the pod is bound to (spec.nodeName)."),
    wide("Nominated Node", "string", "The node the scheduler nominated for a preempting pod."),
    wide("Readiness Gates", "string", "True readiness gate conditions out of the pod's readiness gates."),
];

fn is_restartable_init(c: Option<&Value>) -> bool {
    c.is_some_and(|c| str_at(c, "/restartPolicy") == "Always")
}

/// kubectl's STATUS: the phase (or status.reason), overridden by what the containers report,
/// "Init:..." while init containers run, and "Terminating" once deleted.
fn pod_cells(pod: &Value, now: i64) -> Vec<Value> {
    let init_specs = arr_at(pod, "/spec/initContainers");
    let mut total = arr_at(pod, "/spec/containers").len();
    total += init_specs.iter().filter(|c| is_restartable_init(Some(c))).count();
    let phase = str_at(pod, "/status/phase");
    let mut reason = match str_at(pod, "/status/reason") {
        "" => phase.to_string(),
        r => r.to_string(),
    };
    let conditions = arr_at(pod, "/status/conditions");
    if conditions.iter().any(|c| str_at(c, "/type") == "PodScheduled" && str_at(c, "/reason") == "SchedulingGated") {
        reason = "SchedulingGated".into();
    }
    let mut ready = 0;
    let mut restarts = 0;
    let mut last_restart: Option<i64> = None;
    let mut sidecar_restarts = 0;
    let mut last_sidecar_restart: Option<i64> = None;
    let finished_at = |c: &Value| parse_time(str_at(c, "/lastTerminationState/terminated/finishedAt"));
    let init_statuses = arr_at(pod, "/status/initContainerStatuses");
    let mut initializing = false;
    for (i, c) in init_statuses.iter().enumerate() {
        restarts += int_at(c, "/restartCount");
        last_restart = last_restart.max(finished_at(c));
        let spec = init_specs.iter().find(|s| str_at(s, "/name") == str_at(c, "/name"));
        let sidecar = is_restartable_init(spec);
        if sidecar {
            sidecar_restarts += int_at(c, "/restartCount");
            last_sidecar_restart = last_sidecar_restart.max(finished_at(c));
        }
        let terminated = c.pointer("/state/terminated");
        let waiting_reason = str_at(c, "/state/waiting/reason");
        if terminated.is_some_and(|t| int_at(t, "/exitCode") == 0) {
            continue;
        }
        if sidecar && c.get("started").and_then(Value::as_bool) == Some(true) {
            if c.get("ready").and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        reason = if let Some(t) = terminated {
            match (str_at(t, "/reason"), int_at(t, "/signal")) {
                ("", 0) => format!("Init:ExitCode:{}", int_at(t, "/exitCode")),
                ("", sig) => format!("Init:Signal:{sig}"),
                (r, _) => format!("Init:{r}"),
            }
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{i}/{}", init_specs.len())
        };
        initializing = true;
        break;
    }
    let initialized = conditions.iter().any(|c| str_at(c, "/type") == "Initialized" && str_at(c, "/status") == "True");
    if !initializing || initialized {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for c in arr_at(pod, "/status/containerStatuses").iter().rev() {
            restarts += int_at(c, "/restartCount");
            last_restart = last_restart.max(finished_at(c));
            let waiting = str_at(c, "/state/waiting/reason");
            let terminated = c.pointer("/state/terminated");
            if !waiting.is_empty() {
                reason = waiting.to_string();
            } else if let Some(t) = terminated {
                reason = match (str_at(t, "/reason"), int_at(t, "/signal")) {
                    ("", 0) => format!("ExitCode:{}", int_at(t, "/exitCode")),
                    ("", sig) => format!("Signal:{sig}"),
                    (r, _) => r.to_string(),
                };
            } else if c.get("ready").and_then(Value::as_bool) == Some(true) && c.pointer("/state/running").is_some() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = conditions.iter().any(|c| str_at(c, "/type") == "Ready" && str_at(c, "/status") == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.into();
        }
    }
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        if str_at(pod, "/status/reason") == "NodeLost" {
            reason = "Unknown".into();
        } else if !matches!(phase, "Succeeded" | "Failed") {
            reason = "Terminating".into();
        }
    }
    let restarts = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", human_duration(now - t)),
        _ => restarts.to_string(),
    };
    let ip = arr_at(pod, "/status/podIPs").first().map(|p| str_at(p, "/ip")).unwrap_or("");
    let ip = if ip.is_empty() { str_at(pod, "/status/podIP") } else { ip };
    let gates = arr_at(pod, "/spec/readinessGates");
    let gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let true_gates = gates
            .iter()
            .filter(|g| {
                let ty = str_at(g, "/conditionType");
                conditions.iter().find(|c| str_at(c, "/type") == ty).is_some_and(|c| str_at(c, "/status") == "True")
            })
            .count();
        format!("{true_gates}/{}", gates.len())
    };
    vec![
        name(pod),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts),
        age(pod, now),
        json!(or_none(ip)),
        json!(or_none(str_at(pod, "/spec/nodeName"))),
        json!(or_none(str_at(pod, "/status/nominatedNodeName"))),
        json!(gates),
    ]
}

// ---- workloads ----

const DEPLOYMENT_COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", "Ready replicas out of the desired ones."),
    col("Up-to-date", "integer", "Replicas updated to the current template."),
    col("Available", "integer", "Replicas available to users (ready for at least minReadySeconds)."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

fn deployment_cells(d: &Value, now: i64) -> Vec<Value> {
    let [containers, images] = containers_and_images(d.pointer("/spec/template/spec"));
    vec![
        name(d),
        json!(format!("{}/{}", int_at(d, "/status/readyReplicas"), int_at(d, "/spec/replicas"))),
        json!(int_at(d, "/status/updatedReplicas")),
        json!(int_at(d, "/status/availableReplicas")),
        age(d, now),
        containers,
        images,
        json!(label_selector(d.pointer("/spec/selector"))),
    ]
}

const REPLICASET_COLUMNS: &[Column] = &[
    NAME,
    col("Desired", "integer", "Number of desired pods (spec.replicas)."),
    col("Current", "integer", "Number of pods observed (status.replicas)."),
    col("Ready", "integer", "Number of ready pods (status.readyReplicas)."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

fn replica_cells(obj: &Value, now: i64, selector: String) -> Vec<Value> {
    let [containers, images] = containers_and_images(obj.pointer("/spec/template/spec"));
    vec![
        name(obj),
        json!(int_at(obj, "/spec/replicas")),
        json!(int_at(obj, "/status/replicas")),
        json!(int_at(obj, "/status/readyReplicas")),
        age(obj, now),
        containers,
        images,
        json!(selector),
    ]
}

fn replicaset_cells(rs: &Value, now: i64) -> Vec<Value> {
    replica_cells(rs, now, label_selector(rs.pointer("/spec/selector")))
}

/// A ReplicationController's selector is a plain label map.
fn replicationcontroller_cells(rc: &Value, now: i64) -> Vec<Value> {
    let selector = format_labels(rc.pointer("/spec/selector"));
    replica_cells(rc, now, if selector == "<none>" { String::new() } else { selector })
}

const STATEFULSET_COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", "Ready replicas out of the desired ones."),
    AGE,
    CONTAINERS,
    IMAGES,
];

fn statefulset_cells(s: &Value, now: i64) -> Vec<Value> {
    let [containers, images] = containers_and_images(s.pointer("/spec/template/spec"));
    vec![
        name(s),
        json!(format!("{}/{}", int_at(s, "/status/readyReplicas"), int_at(s, "/spec/replicas"))),
        age(s, now),
        containers,
        images,
    ]
}

const DAEMONSET_COLUMNS: &[Column] = &[
    NAME,
    col("Desired", "integer", "Nodes that should run the daemon pod."),
    col("Current", "integer", "Nodes running at least one daemon pod."),
    col("Ready", "integer", "Nodes whose daemon pod is ready."),
    col("Up-to-date", "integer", "Nodes running the updated daemon pod."),
    col("Available", "integer", "Nodes whose daemon pod is available."),
    col("Node Selector", "string", "The nodes the daemon pods may run on (the template's nodeSelector)."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

fn daemonset_cells(d: &Value, now: i64) -> Vec<Value> {
    let [containers, images] = containers_and_images(d.pointer("/spec/template/spec"));
    vec![
        name(d),
        json!(int_at(d, "/status/desiredNumberScheduled")),
        json!(int_at(d, "/status/currentNumberScheduled")),
        json!(int_at(d, "/status/numberReady")),
        json!(int_at(d, "/status/updatedNumberScheduled")),
        json!(int_at(d, "/status/numberAvailable")),
        json!(format_labels(d.pointer("/spec/template/spec/nodeSelector"))),
        age(d, now),
        containers,
        images,
        json!(label_selector(d.pointer("/spec/selector"))),
    ]
}

const JOB_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "Status of the job."),
    col("Completions", "string", "Succeeded pods out of the desired completions."),
    col("Duration", "string", "Time the job took to complete, or has run so far."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

fn has_condition(obj: &Value, ty: &str) -> bool {
    arr_at(obj, "/status/conditions").iter().any(|c| str_at(c, "/type") == ty && str_at(c, "/status") == "True")
}

fn job_cells(j: &Value, now: i64) -> Vec<Value> {
    let succeeded = int_at(j, "/status/succeeded");
    let completions = match j.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => match int_at(j, "/spec/parallelism") {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let duration = match (parse_time(str_at(j, "/status/startTime")), parse_time(str_at(j, "/status/completionTime"))) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now - start),
        (Some(start), Some(end)) => human_duration(end - start),
    };
    let status = if has_condition(j, "Complete") {
        "Complete"
    } else if has_condition(j, "Failed") {
        "Failed"
    } else if j.pointer("/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else if has_condition(j, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else if has_condition(j, "Suspended") {
        "Suspended"
    } else if has_condition(j, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let [containers, images] = containers_and_images(j.pointer("/spec/template/spec"));
    vec![
        name(j),
        json!(status),
        json!(completions),
        json!(duration),
        age(j, now),
        containers,
        images,
        json!(or_none(&label_selector(j.pointer("/spec/selector")))),
    ]
}

const CRONJOB_COLUMNS: &[Column] = &[
    NAME,
    col("Schedule", "string", "The schedule in Cron format."),
    col("Timezone", "string", "The time zone of the schedule."),
    col("Suspend", "boolean", "Whether later executions are suspended."),
    col("Active", "integer", "Number of currently running jobs."),
    col("Last Schedule", "string", "When the job was last scheduled."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

fn cronjob_cells(c: &Value, now: i64) -> Vec<Value> {
    let last = match str_at(c, "/status/lastScheduleTime") {
        "" => "<none>".to_string(),
        t => since(t, now),
    };
    let suspend = c.pointer("/spec/suspend").and_then(Value::as_bool).unwrap_or(false);
    let [containers, images] = containers_and_images(c.pointer("/spec/jobTemplate/spec/template/spec"));
    vec![
        name(c),
        json!(str_at(c, "/spec/schedule")),
        json!(or_none(str_at(c, "/spec/timeZone"))),
        json!(if suspend { "True" } else { "False" }),
        json!(len_at(c, "/status/active")),
        json!(last),
        age(c, now),
        containers,
        images,
        json!(or_none(&label_selector(c.pointer("/spec/jobTemplate/spec/selector")))),
    ]
}

// ---- core kinds ----

const NAMESPACE_COLUMNS: &[Column] =
    &[NAME, col("Status", "string", "The phase of the namespace (Active or Terminating)."), AGE];

fn namespace_cells(n: &Value, now: i64) -> Vec<Value> {
    vec![name(n), json!(str_at(n, "/status/phase")), age(n, now)]
}

const NODE_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "The Ready condition, and whether scheduling is disabled."),
    col("Roles", "string", "The roles of the node (node-role.kubernetes.io/ labels)."),
    AGE,
    col("Version", "string", "Kubelet version reported by the node."),
    wide("Internal-IP", "string", "The node's first InternalIP address."),
    wide("External-IP", "string", "The node's first ExternalIP address."),
    wide("OS-Image", "string", "OS image reported by the node."),
    wide("Kernel-Version", "string", "Kernel version reported by the node."),
    wide("Container-Runtime", "string", "Container runtime version reported by the node."),
];

fn node_cells(n: &Value, now: i64) -> Vec<Value> {
    let mut status: Vec<String> = arr_at(n, "/status/conditions")
        .iter()
        .filter(|c| str_at(c, "/type") == "Ready")
        .take(1)
        .map(|c| if str_at(c, "/status") == "True" { "Ready".into() } else { "NotReady".into() })
        .collect();
    if status.is_empty() {
        status.push("Unknown".into());
    }
    if n.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled".into());
    }
    let mut roles = std::collections::BTreeSet::new();
    if let Some(labels) = n.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/").filter(|r| !r.is_empty()) {
                roles.insert(role.to_string());
            } else if k == "kubernetes.io/role" && v.as_str().is_some_and(|v| !v.is_empty()) {
                roles.insert(v.as_str().unwrap_or_default().to_string());
            }
        }
    }
    let address = |ty: &str| {
        arr_at(n, "/status/addresses").iter().find(|a| str_at(a, "/type") == ty).map(|a| str_at(a, "/address")).unwrap_or("")
    };
    let info = |f: &str| match str_at(n, &format!("/status/nodeInfo/{f}")) {
        "" => "<unknown>".to_string(),
        v => v.to_string(),
    };
    vec![
        name(n),
        json!(status.join(",")),
        json!(or_none(&roles.into_iter().collect::<Vec<_>>().join(","))),
        age(n, now),
        json!(str_at(n, "/status/nodeInfo/kubeletVersion")),
        json!(or_none(address("InternalIP"))),
        json!(or_none(address("ExternalIP"))),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ]
}

const SERVICE_COLUMNS: &[Column] = &[
    NAME,
    col("Type", "string", "How the service is exposed (ClusterIP, NodePort, LoadBalancer, ExternalName)."),
    col("Cluster-IP", "string", "The service's cluster IP address."),
    col("External-IP", "string", "External addresses of the service."),
    col("Port(s)", "string", "The ports the service exposes."),
    AGE,
    wide("Selector", "string", "The labels of the pods the service routes to."),
];

fn service_cells(s: &Value, now: i64) -> Vec<Value> {
    let ty = str_at(s, "/spec/type");
    let cluster_ip = arr_at(s, "/spec/clusterIPs").first().and_then(Value::as_str).unwrap_or(str_at(s, "/spec/clusterIP"));
    let external_ips: Vec<&str> = arr_at(s, "/spec/externalIPs").iter().filter_map(Value::as_str).collect();
    let external = match ty {
        "ClusterIP" | "NodePort" => or_none(&external_ips.join(",")),
        "LoadBalancer" => {
            let mut ips: Vec<&str> = arr_at(s, "/status/loadBalancer/ingress")
                .iter()
                .map(|i| match str_at(i, "/ip") {
                    "" => str_at(i, "/hostname"),
                    ip => ip,
                })
                .filter(|i| !i.is_empty())
                .collect();
            ips.extend(external_ips);
            if ips.is_empty() {
                "<pending>".into()
            } else {
                ips.join(",")
            }
        }
        "ExternalName" => str_at(s, "/spec/externalName").to_string(),
        _ => "<unknown>".into(),
    };
    let ports: Vec<String> = arr_at(s, "/spec/ports")
        .iter()
        .map(|p| {
            let proto = match str_at(p, "/protocol") {
                "" => "TCP",
                proto => proto,
            };
            match int_at(p, "/nodePort") {
                0 => format!("{}/{proto}", int_at(p, "/port")),
                node_port => format!("{}:{node_port}/{proto}", int_at(p, "/port")),
            }
        })
        .collect();
    vec![
        name(s),
        json!(ty),
        json!(or_none(cluster_ip)),
        json!(external),
        json!(or_none(&ports.join(","))),
        age(s, now),
        json!(format_labels(s.pointer("/spec/selector"))),
    ]
}

const CONFIGMAP_COLUMNS: &[Column] = &[NAME, col("Data", "integer", "Number of entries in data and binaryData."), AGE];

fn configmap_cells(c: &Value, now: i64) -> Vec<Value> {
    vec![name(c), json!(len_at(c, "/data") + len_at(c, "/binaryData")), age(c, now)]
}

const SECRET_COLUMNS: &[Column] = &[
    NAME,
    col("Type", "string", "The type of the secret."),
    col("Data", "integer", "Number of entries in data."),
    AGE,
];

fn secret_cells(s: &Value, now: i64) -> Vec<Value> {
    vec![name(s), json!(str_at(s, "/type")), json!(len_at(s, "/data")), age(s, now)]
}

const SERVICEACCOUNT_COLUMNS: &[Column] =
    &[NAME, col("Secrets", "integer", "Number of secrets the service account lists."), AGE];

fn serviceaccount_cells(s: &Value, now: i64) -> Vec<Value> {
    vec![name(s), json!(len_at(s, "/secrets")), age(s, now)]
}

const EVENT_COLUMNS: &[Column] = &[
    col("Last Seen", "string", "When the event was last observed."),
    col("Type", "string", "Normal or Warning."),
    col("Reason", "string", "Why the event happened, in CamelCase."),
    col("Object", "string", "The object the event is about."),
    wide("Subobject", "string", "The part of the object the event is about (involvedObject.fieldPath)."),
    wide("Source", "string", "The component that reported the event."),
    col("Message", "string", "What happened, for people."),
    wide("First Seen", "string", "When the event was first observed."),
    wide("Count", "string", "How many times the event was observed."),
    Column { priority: 1, ..NAME },
];

fn event_cells(e: &Value, now: i64) -> Vec<Value> {
    let first = match str_at(e, "/firstTimestamp") {
        "" => since(str_at(e, "/eventTime"), now),
        t => since(t, now),
    };
    let mut last = match str_at(e, "/lastTimestamp") {
        "" => first.clone(),
        t => since(t, now),
    };
    let mut count = int_at(e, "/count");
    if let Some(series) = e.get("series").filter(|s| s.is_object()) {
        last = since(str_at(series, "/lastObservedTime"), now);
        count = int_at(series, "/count");
    } else if count == 0 {
        count = 1;
    }
    let kind = str_at(e, "/involvedObject/kind").to_ascii_lowercase();
    let target = match str_at(e, "/involvedObject/name") {
        "" => kind,
        n => format!("{kind}/{n}"),
    };
    let source = match str_at(e, "/source/component") {
        "" => [str_at(e, "/reportingComponent"), str_at(e, "/reportingInstance")],
        c => [c, str_at(e, "/source/host")],
    };
    let source: Vec<&str> = source.into_iter().filter(|s| !s.is_empty()).collect();
    vec![
        json!(last),
        json!(str_at(e, "/type")),
        json!(str_at(e, "/reason")),
        json!(target),
        json!(str_at(e, "/involvedObject/fieldPath")),
        json!(source.join(", ")),
        json!(str_at(e, "/message").trim()),
        json!(first),
        json!(count),
        name(e),
    ]
}

const LEASE_COLUMNS: &[Column] = &[NAME, col("Holder", "string", "The identity of the lease's holder."), AGE];

fn lease_cells(l: &Value, now: i64) -> Vec<Value> {
    vec![name(l), json!(str_at(l, "/spec/holderIdentity")), age(l, now)]
}

const ENDPOINTS_COLUMNS: &[Column] = &[NAME, col("Endpoints", "string", "The first addresses and ports, and how many more."), AGE];

fn endpoints_cells(ep: &Value, now: i64) -> Vec<Value> {
    const MAX: usize = 3;
    let mut shown: Vec<String> = Vec::new();
    let mut count = 0;
    for subset in arr_at(ep, "/subsets") {
        let addresses = arr_at(subset, "/addresses");
        let ports = arr_at(subset, "/ports");
        let addrs = addresses.iter().map(|a| str_at(a, "/ip"));
        if ports.is_empty() {
            // Headless services may have no ports.
            count += addresses.len();
            shown.extend(addrs.map(String::from));
        } else {
            for port in ports {
                count += addresses.len();
                let p = int_at(port, "/port");
                shown.extend(addrs.clone().map(|ip| if ip.contains(':') { format!("[{ip}]:{p}") } else { format!("{ip}:{p}") }));
            }
        }
    }
    let cell = if arr_at(ep, "/subsets").is_empty() {
        "<none>".to_string()
    } else if count > MAX {
        format!("{} + {} more...", shown[..MAX].join(","), count - MAX)
    } else {
        shown.join(",")
    };
    vec![name(ep), json!(cell), age(ep, now)]
}

/// kube's access mode abbreviations, in its order.
fn access_modes(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|v| v.as_str() == Some(m));
    [("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"), ("ReadWriteOncePod", "RWOP")]
        .iter()
        .filter(|(m, _)| has(m))
        .map(|(_, short)| *short)
        .collect::<Vec<_>>()
        .join(",")
}

fn storage_class(obj: &Value) -> String {
    match str_at(obj, "/spec/storageClassName") {
        "" => str_at(obj, "/metadata/annotations/volume.beta.kubernetes.io~1storage-class").to_string(),
        c => c.to_string(),
    }
}

fn unset(s: &str) -> String {
    if s.is_empty() {
        "<unset>".into()
    } else {
        s.to_string()
    }
}

const PV_COLUMNS: &[Column] = &[
    NAME,
    col("Capacity", "string", "The volume's storage capacity."),
    col("Access Modes", "string", "How the volume can be mounted."),
    col("Reclaim Policy", "string", "What happens to the volume when its claim is released."),
    col("Status", "string", "The phase of the volume."),
    col("Claim", "string", "The claim bound to the volume (namespace/name)."),
    col("StorageClass", "string", "The volume's storage class."),
    col("VolumeAttributesClass", "string", "The volume's attributes class."),
    col("Reason", "string", "Why the volume is in this phase."),
    AGE,
    wide("VolumeMode", "string", "Filesystem or Block."),
];

fn pv_cells(pv: &Value, now: i64) -> Vec<Value> {
    let claim = match pv.pointer("/spec/claimRef") {
        Some(r) if r.is_object() => format!("{}/{}", str_at(r, "/namespace"), str_at(r, "/name")),
        _ => String::new(),
    };
    let phase = if pv.pointer("/metadata/deletionTimestamp").is_some() { "Terminating" } else { str_at(pv, "/status/phase") };
    let capacity = match pv.pointer("/spec/capacity/storage") {
        Some(Value::String(s)) => s.clone(),
        Some(v @ Value::Number(_)) => v.to_string(),
        _ => "0".into(),
    };
    vec![
        name(pv),
        json!(capacity),
        json!(access_modes(arr_at(pv, "/spec/accessModes"))),
        json!(str_at(pv, "/spec/persistentVolumeReclaimPolicy")),
        json!(phase),
        json!(claim),
        json!(storage_class(pv)),
        json!(unset(str_at(pv, "/spec/volumeAttributesClassName"))),
        json!(str_at(pv, "/status/reason")),
        age(pv, now),
        json!(unset(str_at(pv, "/spec/volumeMode"))),
    ]
}

const PVC_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "The phase of the claim."),
    col("Volume", "string", "The volume bound to the claim."),
    col("Capacity", "string", "The bound volume's capacity."),
    col("Access Modes", "string", "How the bound volume can be mounted."),
    col("StorageClass", "string", "The claim's storage class."),
    col("VolumeAttributesClass", "string", "The claim's current attributes class."),
    AGE,
    wide("VolumeMode", "string", "Filesystem or Block."),
];

fn pvc_cells(pvc: &Value, now: i64) -> Vec<Value> {
    let phase = if pvc.pointer("/metadata/deletionTimestamp").is_some() { "Terminating" } else { str_at(pvc, "/status/phase") };
    let volume = str_at(pvc, "/spec/volumeName");
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        let cap = match pvc.pointer("/status/capacity/storage") {
            Some(Value::String(s)) => s.clone(),
            Some(v @ Value::Number(_)) => v.to_string(),
            _ => "0".into(),
        };
        (cap, access_modes(arr_at(pvc, "/status/accessModes")))
    };
    vec![
        name(pvc),
        json!(phase),
        json!(volume),
        json!(capacity),
        json!(modes),
        json!(storage_class(pvc)),
        json!(unset(str_at(pvc, "/status/currentVolumeAttributesClassName"))),
        age(pvc, now),
        json!(unset(str_at(pvc, "/spec/volumeMode"))),
    ]
}

/// Now, in seconds since the epoch (the handlers' `now` for `table`).
pub fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// `secs` since the epoch as RFC 3339, for tests that build objects of a given age.
pub fn timestamp(secs: i64) -> String {
    rfc3339(secs.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn ago(secs: i64) -> String {
        timestamp(NOW - secs)
    }

    fn strs(cells: &[Value]) -> Vec<String> {
        cells.iter().map(|c| c.as_str().map(String::from).unwrap_or_else(|| c.to_string())).collect()
    }

    #[test]
    fn human_duration_follows_apimachinery() {
        let cases = [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (5, "5s"),
            (119, "119s"),
            (120, "2m"),
            (200, "3m20s"),
            (599, "9m59s"),
            (600, "10m"),
            (179 * 60 + 59, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 5 * 60, "3h5m"),
            (8 * 3600 + 59 * 60, "8h"),
            (47 * 3600, "47h"),
            (2 * 86400, "2d"),
            (2 * 86400 + 4 * 3600, "2d4h"),
            (8 * 86400 + 4 * 3600, "8d"),
            (729 * 86400, "729d"),
            (730 * 86400, "2y"),
            (800 * 86400, "2y70d"),
            (8 * 365 * 86400, "8y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(secs), want, "{secs}s");
        }
    }

    #[test]
    fn times_parse_with_fractions_and_offsets() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time("2026-11-24T12:59:59Z"), Some(1_795_525_199));
        assert_eq!(parse_time("2026-11-24T12:59:59.123456Z"), Some(1_795_525_199));
        assert_eq!(parse_time("2026-11-24T14:59:59+02:00"), Some(1_795_525_199));
        assert_eq!(parse_time(""), None);
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(parse_time("2026-13-24T12:59:59Z"), None);
        assert_eq!(since("", NOW), "<unknown>");
        assert_eq!(since(&ago(90), NOW), "90s");
    }

    fn pod(status: Value) -> Value {
        json!({
            "metadata": {"name": "web", "creationTimestamp": ago(300)},
            "spec": {"containers": [{"name": "app"}, {"name": "log"}], "nodeName": "n1"},
            "status": status,
        })
    }

    #[test]
    fn pod_ready_status_restarts_and_wide_columns() {
        let running = json!({"state": {"running": {}}, "ready": true, "restartCount": 0});
        let p = pod(json!({"phase": "Running", "podIP": "10.0.0.5", "containerStatuses": [running, running]}));
        assert_eq!(strs(&pod_cells(&p, NOW)), ["web", "2/2", "Running", "0", "5m", "10.0.0.5", "n1", "<none>", "<none>"]);
        assert_eq!(POD_COLUMNS.len(), pod_cells(&p, NOW).len());

        // A waiting container's reason wins over the phase; its restarts show when it last died.
        let crashing = json!({"state": {"waiting": {"reason": "CrashLoopBackOff"}}, "restartCount": 3,
            "lastTerminationState": {"terminated": {"exitCode": 1, "finishedAt": ago(60)}}});
        let p = pod(json!({"phase": "Running", "podIPs": [{"ip": "10.0.0.6"}], "containerStatuses": [running, crashing]}));
        let cells = strs(&pod_cells(&p, NOW));
        assert_eq!(cells[1..4], ["1/2", "CrashLoopBackOff", "3 (60s ago)"]);
        assert_eq!(cells[5], "10.0.0.6");

        let done = json!({"state": {"terminated": {"exitCode": 0, "reason": "Completed"}}});
        let p = pod(json!({"phase": "Succeeded", "containerStatuses": [done, done]}));
        assert_eq!(strs(&pod_cells(&p, NOW))[1..3], ["0/2", "Completed"]);
        assert!(row_conditions("", "pods", &p).is_some());

        let killed = json!({"state": {"terminated": {"exitCode": 137, "signal": 9}}});
        let p = pod(json!({"phase": "Failed", "containerStatuses": [killed]}));
        assert_eq!(strs(&pod_cells(&p, NOW))[2], "Signal:9");

        // No status yet: the phase alone; a deletion makes it Terminating.
        let mut p = pod(json!({"phase": "Pending"}));
        assert_eq!(strs(&pod_cells(&p, NOW))[1..3], ["0/2", "Pending"]);
        p["metadata"]["deletionTimestamp"] = json!(ago(-30));
        assert_eq!(strs(&pod_cells(&p, NOW))[2], "Terminating");
        p["status"]["reason"] = json!("Evicted");
        assert_eq!(strs(&pod_cells(&p, NOW))[2], "Terminating");
    }

    #[test]
    fn pod_init_containers_and_readiness_gates() {
        let p = json!({
            "metadata": {"name": "p", "creationTimestamp": ago(10)},
            "spec": {"initContainers": [{"name": "setup"}, {"name": "migrate"}], "containers": [{"name": "app"}],
                     "readinessGates": [{"conditionType": "example.com/lb"}]},
            "status": {"phase": "Pending",
                       "conditions": [{"type": "example.com/lb", "status": "True"}],
                       "initContainerStatuses": [
                           {"name": "setup", "state": {"terminated": {"exitCode": 0}}},
                           {"name": "migrate", "state": {"running": {}}}]},
        });
        let cells = strs(&pod_cells(&p, NOW));
        assert_eq!(cells[1..3], ["0/1", "Init:1/2"]);
        assert_eq!(cells[8], "1/1");
        let mut p = p;
        p["status"]["initContainerStatuses"][1]["state"] = json!({"waiting": {"reason": "ImagePullBackOff"}});
        assert_eq!(strs(&pod_cells(&p, NOW))[2], "Init:ImagePullBackOff");
    }

    #[test]
    fn workloads() {
        let template = json!({"spec": {"containers": [{"name": "app", "image": "nginx:1.27"}, {"name": "log", "image": "busybox"}]}});
        let d = json!({
            "metadata": {"name": "web", "creationTimestamp": ago(2 * 86400 + 4 * 3600)},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
        });
        assert_eq!(
            strs(&deployment_cells(&d, NOW)),
            ["web", "2/3", "3", "2", "2d4h", "app,log", "nginx:1.27,busybox", "app=web"]
        );
        assert_eq!(deployment_cells(&d, NOW)[2], json!(3), "integer columns hold numbers");
        assert_eq!(strs(&replicaset_cells(&d, NOW))[1..4], ["3", "0", "2"]);
        assert_eq!(strs(&statefulset_cells(&d, NOW))[1], "2/3");
        let rc = json!({"metadata": {"name": "rc"}, "spec": {"selector": {"app": "web"}}});
        assert_eq!(strs(&replicationcontroller_cells(&rc, NOW))[7], "app=web");
        let ds = json!({"metadata": {"name": "ds"}, "spec": {"template": {"spec": {"nodeSelector": {"disk": "ssd"}}}},
                        "status": {"desiredNumberScheduled": 2, "numberReady": 1}});
        assert_eq!(strs(&daemonset_cells(&ds, NOW))[1..7], ["2", "0", "1", "0", "0", "disk=ssd"]);
        assert_eq!(strs(&daemonset_cells(&ds, NOW))[4], "0");

        let mut job = json!({"metadata": {"name": "j"}, "spec": {"completions": 3},
                             "status": {"succeeded": 1, "startTime": ago(100)}});
        assert_eq!(strs(&job_cells(&job, NOW))[1..4], ["Running", "1/3", "100s"]);
        job["status"]["completionTime"] = json!(ago(40));
        job["status"]["conditions"] = json!([{"type": "Complete", "status": "True"}]);
        assert_eq!(strs(&job_cells(&job, NOW))[1..4], ["Complete", "1/3", "60s"]);
        let job = json!({"metadata": {"name": "j"}, "spec": {"parallelism": 2}});
        assert_eq!(strs(&job_cells(&job, NOW))[1..4], ["Running", "0/1 of 2", ""]);

        let cj = json!({"metadata": {"name": "c"}, "spec": {"schedule": "*/5 * * * *", "suspend": false},
                        "status": {"active": [{"name": "c-1"}], "lastScheduleTime": ago(120)}});
        assert_eq!(strs(&cronjob_cells(&cj, NOW))[1..6], ["*/5 * * * *", "<none>", "False", "1", "2m"]);
    }

    #[test]
    fn services_nodes_and_small_kinds() {
        let svc = json!({"metadata": {"name": "web"}, "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10",
            "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}], "selector": {"app": "web"}}});
        assert_eq!(strs(&service_cells(&svc, NOW))[1..5], ["ClusterIP", "10.96.0.10", "<none>", "80/TCP,53/UDP"]);
        assert_eq!(strs(&service_cells(&svc, NOW))[6], "app=web");
        let lb = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 443, "nodePort": 30443}]}});
        assert_eq!(strs(&service_cells(&lb, NOW))[2..5], ["<none>", "<pending>", "443:30443/TCP"]);

        let node = json!({"metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "False"}],
                       "nodeInfo": {"kubeletVersion": "v1.37.0"}, "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}});
        let cells = strs(&node_cells(&node, NOW));
        assert_eq!(cells[1..3], ["NotReady,SchedulingDisabled", "control-plane"]);
        assert_eq!(cells[4..8], ["v1.37.0", "10.0.0.1", "<none>", "<unknown>"]);

        let ns = json!({"metadata": {"name": "default", "creationTimestamp": ago(30)}, "status": {"phase": "Active"}});
        assert_eq!(strs(&namespace_cells(&ns, NOW)), ["default", "Active", "30s"]);
        let cm = json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
        assert_eq!(configmap_cells(&cm, NOW)[1], json!(3));
        assert_eq!(strs(&configmap_cells(&cm, NOW))[2], "<unknown>");
        let secret = json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"p": "eA=="}});
        assert_eq!(strs(&secret_cells(&secret, NOW))[1..3], ["Opaque", "1"]);
        let sa = json!({"metadata": {"name": "default"}});
        assert_eq!(serviceaccount_cells(&sa, NOW)[1], json!(0));
        let lease = json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "kcm-1"}});
        assert_eq!(strs(&lease_cells(&lease, NOW))[1], "kcm-1");

        let ev = json!({"metadata": {"name": "web.1"}, "type": "Warning", "reason": "BackOff", "message": " restarting \n",
            "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{app}"},
            "source": {"component": "kubelet", "host": "n1"}, "firstTimestamp": ago(600), "lastTimestamp": ago(5), "count": 4});
        assert_eq!(
            strs(&event_cells(&ev, NOW)),
            ["5s", "Warning", "BackOff", "pod/web", "spec.containers{app}", "kubelet, n1", "restarting", "10m", "4", "web.1"]
        );

        let ep = json!({"metadata": {"name": "web"}, "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
            "ports": [{"port": 80}, {"port": 8080}]}]});
        assert_eq!(strs(&endpoints_cells(&ep, NOW))[1], "10.0.0.1:80,10.0.0.2:80,10.0.0.1:8080 + 1 more...");
        assert_eq!(strs(&endpoints_cells(&json!({"metadata": {"name": "x"}}), NOW))[1], "<none>");

        let pv = json!({"metadata": {"name": "pv1"}, "spec": {"capacity": {"storage": "10Gi"},
            "accessModes": ["ReadWriteMany", "ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Retain",
            "claimRef": {"namespace": "default", "name": "data"}, "storageClassName": "fast"}, "status": {"phase": "Bound"}});
        assert_eq!(
            strs(&pv_cells(&pv, NOW))[1..9],
            ["10Gi", "RWO,RWX", "Retain", "Bound", "default/data", "fast", "<unset>", ""]
        );
        let pvc = json!({"metadata": {"name": "data"}, "spec": {"volumeName": "pv1", "storageClassName": "fast"},
            "status": {"phase": "Bound", "capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"]}});
        assert_eq!(strs(&pvc_cells(&pvc, NOW))[1..6], ["Bound", "pv1", "10Gi", "RWO", "fast"]);
    }

    #[test]
    fn every_printer_fills_every_column() {
        let empty = json!({"metadata": {"name": "x"}});
        for k in crate::registry::kinds() {
            let n = cells(k.group, k.resource, &empty, NOW).len();
            assert_eq!(n, columns(k.group, k.resource).len(), "{}", k.resource);
        }
        assert_eq!(columns("", "limitranges").iter().map(|c| c.name).collect::<Vec<_>>(), ["Name", "Age"]);
    }

    #[test]
    fn tables_carry_list_metadata_and_row_objects() {
        let cm = json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "c", "resourceVersion": "7"}, "data": {"k": "v"}});
        let meta = json!({"resourceVersion": "9", "continue": "abc"});
        let opts = TableOptions { version: "v1", include: IncludeObject::Metadata, no_headers: false };
        let t = table("", "configmaps", std::slice::from_ref(&cm), meta.clone(), opts, NOW);
        assert_eq!((t["kind"].as_str(), t["apiVersion"].as_str()), (Some("Table"), Some("meta.k8s.io/v1")));
        assert_eq!(t["metadata"], meta);
        assert_eq!(t["columnDefinitions"][0], json!({"name": "Name", "type": "string", "format": "name",
            "description": NAME.description, "priority": 0}));
        assert_eq!(t["rows"][0]["cells"], json!(["c", 1, "<unknown>"]));
        assert_eq!(t["rows"][0]["object"], json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"name": "c", "resourceVersion": "7"}}));

        let opts = TableOptions { version: "v1beta1", include: IncludeObject::Object, no_headers: true };
        let t = table("", "configmaps", std::slice::from_ref(&cm), json!({}), opts, NOW);
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1beta1");
        assert_eq!(t["columnDefinitions"], json!([]));
        assert_eq!(t["rows"][0]["object"], cm);

        let opts = TableOptions { version: "v1", include: IncludeObject::None, no_headers: false };
        let t = table("", "configmaps", &[cm], json!({}), opts, NOW);
        assert!(t["rows"][0].get("object").is_none());
        assert_eq!(IncludeObject::parse("Everything"), None);
    }
}
