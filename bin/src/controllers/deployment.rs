//! The Deployment controller: rolls a Deployment's pod template out through ReplicaSets, as
//! kube-controller-manager's does.
//!
//! Each distinct template gets one ReplicaSet, named `DEPLOYMENT-HASH` after [`template_hash`]
//! and labelled `pod-template-hash=HASH` (so the ReplicaSets' selectors never overlap). The
//! ReplicaSet whose template equals the Deployment's is the new one; the others are old. A
//! sync takes one rollout step ([`rolling_step`] within `maxSurge`/`maxUnavailable`, or
//! [`recreate_step`]), numbers revisions in the `deployment.kubernetes.io/revision` annotation,
//! deletes old empty ReplicaSets beyond `revisionHistoryLimit` once the rollout is complete and
//! writes the status with kube's Available and Progressing conditions ([`next_status`]), which
//! is what `kubectl rollout status` reads.
//!
//! `kubectl rollout undo` copies an old ReplicaSet's template into the Deployment: that
//! ReplicaSet then matches, becomes the new one again and gets the next revision. A paused
//! Deployment takes no rollout step but still scales ([`paused_step`]).
//!
//! Not done: adopting orphan ReplicaSets, proportional scaling of several active ReplicaSets
//! while a rollout is under way (the rollout arithmetic converges anyway), the
//! `DeploymentPaused` reason.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{json, Value};

use super::objects::{controller_ref, controller_ref_to, record_event, Error};

/// The label carrying a ReplicaSet's template hash, on it, its selector and its pods.
pub const HASH_LABEL: &str = "pod-template-hash";
/// The annotation numbering a Deployment's templates (on the Deployment and its ReplicaSets).
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// The name this controller signs its events with.
const COMPONENT: &str = "deployment-controller";

// ---------------------------------------------------------------------------------------------
// The template hash.

/// JSON with object keys in sorted order and no whitespace, so equal values hash equally
/// whatever order their fields were written in.
fn canonical_json(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical_json(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// 32-bit FNV-1a: small, fast and stable across versions and platforms (kube hashes templates
/// with it too).
fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}

/// The hash naming a template's ReplicaSet: FNV-1a of the template's canonical JSON (without
/// any `pod-template-hash` label) and of the collision count, its decimal digits spelled in
/// kube's alphabet of consonants and digits (no vowels: no words; no 0/1/3: no look-alikes).
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut text = String::new();
    canonical_json(&template_without_hash(template), &mut text);
    if let Some(c) = collision_count {
        text.push_str(&format!("#{c}"));
    }
    let hash = fnv1a32(text.as_bytes());
    hash.to_string().bytes().map(|d| ALPHABET[usize::from(d) % ALPHABET.len()] as char).collect()
}

/// The template as JSON, without the `pod-template-hash` label and without zero values: what
/// a Deployment's template and its ReplicaSets' are compared and hashed by.
fn template_without_hash(template: &PodTemplateSpec) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(HASH_LABEL);
    }
    serde_json::to_value(&t).ok().and_then(without_zeros).unwrap_or(Value::Null)
}

/// `v` without null, false, 0, "" and empty objects and lists, at any depth (list items keep
/// their places, as null). A template arrives with `stdin: false` or `resources: {}` written
/// out or left out depending on the client and the wire format (kubectl's protobuf leaves
/// zero values in); kube compares Go structs, where both are the same zero value. (As there,
/// an explicit 0 that differs from a left-out field, e.g. `terminationGracePeriodSeconds: 0`,
/// is not told apart.)
fn without_zeros(v: Value) -> Option<Value> {
    match v {
        Value::Null | Value::Bool(false) => None,
        Value::Number(n) if n.as_f64() == Some(0.0) => None,
        Value::String(s) if s.is_empty() => None,
        Value::Object(map) => {
            let kept: serde_json::Map<String, Value> =
                map.into_iter().filter_map(|(k, v)| without_zeros(v).map(|v| (k, v))).collect();
            (!kept.is_empty()).then_some(Value::Object(kept))
        }
        Value::Array(items) if items.is_empty() => None,
        Value::Array(items) => Some(Value::Array(items.into_iter().map(|i| without_zeros(i).unwrap_or(Value::Null)).collect())),
        other => Some(other),
    }
}

// ---------------------------------------------------------------------------------------------
// Rollout arithmetic.

/// `value` (an int, or a percentage of `total`) as a count: percentages round up for surge and
/// down for unavailability, as kube does, so neither bound is ever exceeded by rounding.
pub fn scaled_value(value: &IntOrString, total: i32, round_up: bool) -> Result<i32, Error> {
    match value {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| Error::Invalid(format!("{s:?} is neither an integer nor a percentage")))?;
            let scaled = pct * i64::from(total);
            let v = if round_up { (scaled + 99).div_euclid(100) } else { scaled.div_euclid(100) };
            i32::try_from(v).map_err(|_| Error::Invalid(format!("{s} of {total} is out of range")))
        }
    }
}

/// How a Deployment replaces its pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// At most `surge` pods above the desired count, at most `unavailable` below it.
    RollingUpdate { surge: i32, unavailable: i32 },
    /// All old pods gone before any new one.
    Recreate,
}

/// The Deployment's strategy with its bounds resolved against `desired` replicas (defaults 25%
/// and 25%; if both resolve to 0, one pod may be unavailable, or nothing could ever move).
pub fn strategy_of(d: &Deployment, desired: i32) -> Result<Strategy, Error> {
    let s = d.spec.strategy.as_ref();
    if s.and_then(|s| s.type_.as_deref()) == Some("Recreate") {
        return Ok(Strategy::Recreate);
    }
    let ru = s.and_then(|s| s.rolling_update.as_ref());
    let quarter = IntOrString::String("25%".into());
    let surge = scaled_value(ru.and_then(|r| r.max_surge.as_ref()).unwrap_or(&quarter), desired, true)?;
    let mut unavailable = scaled_value(ru.and_then(|r| r.max_unavailable.as_ref()).unwrap_or(&quarter), desired, false)?;
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    Ok(Strategy::RollingUpdate { surge, unavailable })
}

/// How many pods may be unavailable (kube's MaxUnavailable): 0 for Recreate, never above
/// `desired`.
pub fn max_unavailable(strategy: Strategy, desired: i32) -> i32 {
    match strategy {
        Strategy::RollingUpdate { unavailable, .. } if desired > 0 => unavailable.min(desired),
        _ => 0,
    }
}

/// What the rollout arithmetic needs of a ReplicaSet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsState {
    /// Its name.
    pub name: String,
    /// `spec.replicas`.
    pub replicas: i32,
    /// `status.replicas`: pods that exist.
    pub current: i32,
    /// `status.availableReplicas`.
    pub available: i32,
    /// Creation time (seconds), the order old ReplicaSets are scaled down in.
    pub created: i64,
}

impl RsState {
    /// The state of a ReplicaSet object.
    pub fn of(rs: &ReplicaSet) -> Self {
        let status = rs.status.as_ref();
        Self {
            name: rs.name_any(),
            replicas: rs.spec.replicas.unwrap_or(1),
            current: status.map_or(0, |s| s.replicas),
            available: status.and_then(|s| s.available_replicas).unwrap_or(0),
            created: rs.metadata.creation_timestamp.as_ref().map_or(0, |t| t.0.as_second()),
        }
    }
}

/// One rolling-update step: new `spec.replicas` for some ReplicaSets (empty: nothing to do).
///
/// First the new ReplicaSet grows as far as the surge allows. Only when it cannot grow, old
/// ones shrink: first their unavailable pods (they count for nothing), then available ones as
/// long as `desired - unavailable` pods stay available, oldest ReplicaSet first.
///
/// Worked example, desired 4, surge 1, unavailable 1, old `a` at 4 all available, new `n` at 0,
/// every new pod available by the next step: step 1 grows `n` to 1 (total 5 = 4 + surge).
/// Step 2 cannot grow `n` (total is 5); 5 pods are available and 3 must stay, so `a` shrinks
/// by 2 to 2 (had `n`'s pod not been available yet, only by 1). Step 3 grows `n` to 3, step 4
/// shrinks `a` to 0, step 5 grows `n` to 4.
pub fn rolling_step(desired: i32, surge: i32, unavailable: i32, new: &RsState, old: &[RsState]) -> Vec<(String, i32)> {
    let old_total: i32 = old.iter().map(|r| r.replicas).sum();
    let all_total = old_total + new.replicas;
    let target = if new.replicas >= desired {
        desired
    } else {
        let room = desired + surge - all_total;
        if room <= 0 {
            new.replicas
        } else {
            new.replicas + room.min(desired - new.replicas)
        }
    };
    if target != new.replicas {
        return vec![(new.name.clone(), target)];
    }
    if old_total == 0 {
        return vec![];
    }
    let min_available = desired - unavailable.min(desired.max(0));
    let new_unavailable = new.replicas - new.available;
    let max_scaled_down = all_total - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return vec![];
    }
    let mut old: Vec<RsState> = old.to_vec();
    old.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    let mut targets: BTreeMap<String, i32> = BTreeMap::new();
    // Unavailable old pods first: removing them costs no availability.
    let mut cleaned = 0;
    for rs in old.iter_mut() {
        if cleaned >= max_scaled_down {
            break;
        }
        let unhealthy = rs.replicas - rs.available;
        if rs.replicas == 0 || unhealthy <= 0 {
            continue;
        }
        let down = (max_scaled_down - cleaned).min(unhealthy);
        rs.replicas -= down;
        cleaned += down;
        targets.insert(rs.name.clone(), rs.replicas);
    }
    // Then available ones, keeping `min_available`.
    let available: i32 = old.iter().map(|r| r.available).sum::<i32>() + new.available;
    if available > min_available {
        let mut budget = available - min_available;
        for rs in old.iter_mut() {
            if budget <= 0 {
                break;
            }
            if rs.replicas == 0 {
                continue;
            }
            let down = rs.replicas.min(budget);
            rs.replicas -= down;
            budget -= down;
            targets.insert(rs.name.clone(), rs.replicas);
        }
    }
    targets.into_iter().collect()
}

/// One Recreate step: old ReplicaSets to 0; once none of their pods is left, the new one to
/// `desired`. Empty: nothing to do, or waiting for old pods to go.
pub fn recreate_step(desired: i32, new: &RsState, old: &[RsState]) -> Vec<(String, i32)> {
    let scale_down: Vec<(String, i32)> = old.iter().filter(|r| r.replicas > 0).map(|r| (r.name.clone(), 0)).collect();
    if !scale_down.is_empty() {
        return scale_down;
    }
    if old.iter().any(|r| r.current > 0) || new.replicas == desired {
        return vec![];
    }
    vec![(new.name.clone(), desired)]
}

/// The step of a paused Deployment: no rollout, but `kubectl scale` still applies when a single
/// ReplicaSet has pods (with several, which one should grow is a rollout decision: none does).
/// With none, the new one (if any) takes the replicas.
pub fn paused_step(desired: i32, new: Option<&RsState>, old: &[RsState]) -> Vec<(String, i32)> {
    let active: Vec<&RsState> = old.iter().chain(new).filter(|r| r.replicas > 0).collect();
    let target = match active.as_slice() {
        [one] => Some(*one),
        [] => new,
        _ => None,
    };
    target.filter(|r| r.replicas != desired).map(|r| vec![(r.name.clone(), desired)]).unwrap_or_default()
}

/// Old ReplicaSets to delete: those without pods beyond the newest `limit`, oldest revision
/// first (`old` holds name, revision, spec and status replicas).
pub fn history_to_delete(old: &[(String, i64, i32, i32)], limit: i32) -> Vec<String> {
    let mut empty: Vec<&(String, i64, i32, i32)> = old.iter().filter(|r| r.2 == 0 && r.3 == 0).collect();
    let excess = empty.len().saturating_sub(usize::try_from(limit).unwrap_or(0));
    empty.sort_by_key(|r| r.1);
    empty.into_iter().take(excess).map(|r| r.0.clone()).collect()
}

// ---------------------------------------------------------------------------------------------
// Status.

/// The `deployment.kubernetes.io/revision` of an object (0: none).
pub fn revision_of(meta: &ObjectMeta) -> i64 {
    meta.annotations.as_ref().and_then(|a| a.get(REVISION)).and_then(|r| r.parse().ok()).unwrap_or(0)
}

fn condition<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status.conditions.as_ref()?.iter().find(|c| c.type_.as_deref() == Some(type_))
}

/// A condition as kube sets it: the transition time kept while the status stays the same.
fn set_condition(
    conditions: &mut Vec<DeploymentCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) {
    let old = conditions.iter().position(|c| c.type_.as_deref() == Some(type_));
    let transition = old
        .map(|i| &conditions[i])
        .filter(|c| c.status.as_deref() == Some(status))
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    let new = DeploymentCondition {
        type_: Some(type_.into()),
        status: Some(status.into()),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(transition),
    };
    match old {
        Some(i) => conditions[i] = new,
        None => conditions.push(new),
    }
}

/// The Deployment's status from its ReplicaSets (`all` includes `new`), with kube's
/// conditions: Available (MinimumReplicasAvailable / MinimumReplicasUnavailable) and
/// Progressing (NewReplicaSetAvailable once complete; ReplicaSetUpdated while pods get
/// updated, ready or available; ProgressDeadlineExceeded after `progressDeadlineSeconds`
/// without progress).
pub fn next_status(
    d: &Deployment,
    new: Option<&ReplicaSet>,
    all: &[&ReplicaSet],
    strategy: Strategy,
    now: Timestamp,
) -> DeploymentStatus {
    let old = d.status.clone().unwrap_or_default();
    let desired = d.spec.replicas.unwrap_or(1);
    let sum = |f: &dyn Fn(&ReplicaSet) -> i32| all.iter().map(|rs| f(rs)).sum::<i32>();
    let replicas = sum(&|rs| rs.status.as_ref().map_or(0, |s| s.replicas));
    let updated = new.and_then(|rs| rs.status.as_ref()).map_or(0, |s| s.replicas);
    let ready = sum(&|rs| rs.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0));
    let available = sum(&|rs| rs.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0));
    let spec_total = sum(&|rs| rs.spec.replicas.unwrap_or(1));
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(replicas),
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        unavailable_replicas: Some((spec_total - available).max(0)),
        terminating_replicas: old.terminating_replicas,
        collision_count: old.collision_count,
        conditions: None,
    };
    let mut conditions = old.conditions.clone().unwrap_or_default();
    if available >= desired - max_unavailable(strategy, desired) {
        set_condition(
            &mut conditions,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
            now,
        );
    } else {
        set_condition(
            &mut conditions,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
            now,
        );
    }
    let new_name = new.map(|rs| rs.name_any()).unwrap_or_default();
    let complete = updated == desired && replicas == desired && available == desired;
    let old_of_old = old.replicas.unwrap_or(0) - old.updated_replicas.unwrap_or(0);
    let progressed = updated > old.updated_replicas.unwrap_or(0)
        || replicas - updated < old_of_old
        || ready > old.ready_replicas.unwrap_or(0)
        || available > old.available_replicas.unwrap_or(0);
    let progressing = condition(&old, "Progressing");
    let reason_was = progressing.and_then(|c| c.reason.as_deref());
    if complete {
        if reason_was != Some("NewReplicaSetAvailable") {
            let message = format!("ReplicaSet \"{new_name}\" has successfully progressed.");
            set_condition(&mut conditions, "Progressing", "True", "NewReplicaSetAvailable", message, now);
        }
    } else if progressed || progressing.is_none() || reason_was == Some("NewReplicaSetAvailable") {
        // A new rollout (after a complete one) or progress in this one: the deadline restarts.
        set_condition(
            &mut conditions,
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            format!("ReplicaSet \"{new_name}\" is progressing."),
            now,
        );
    } else if let (Some(deadline), Some(since)) =
        (d.spec.progress_deadline_seconds, progressing.and_then(|c| c.last_update_time.as_ref()))
    {
        if reason_was != Some("ProgressDeadlineExceeded") && since.0.as_second() + i64::from(deadline) <= now.as_second() {
            let message = format!("ReplicaSet \"{new_name}\" has timed out progressing.");
            set_condition(&mut conditions, "Progressing", "False", "ProgressDeadlineExceeded", message, now);
        }
    }
    status.conditions = Some(conditions);
    status
}

/// Seconds until the progress deadline passes without progress (None: no deadline pending).
fn seconds_to_deadline(d: &Deployment, status: &DeploymentStatus, now: Timestamp) -> Option<i64> {
    let c = condition(status, "Progressing")?;
    if c.reason.as_deref() != Some("ReplicaSetUpdated") {
        return None;
    }
    let since = c.last_update_time.as_ref()?.0.as_second();
    Some((since + i64::from(d.spec.progress_deadline_seconds?) - now.as_second()).max(0))
}

/// Status equality that ignores condition timestamps, so an unchanged status is not rewritten.
fn same_status(a: &DeploymentStatus, b: &DeploymentStatus) -> bool {
    let strip = |s: &DeploymentStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_update_time = None;
            c.last_transition_time = None;
        }
        s
    };
    strip(a) == strip(b)
}

// ---------------------------------------------------------------------------------------------
// The driver.

/// The new ReplicaSet for a Deployment with template hash `hash` and revision `revision`.
pub fn new_replicaset(d: &Deployment, hash: &str, revision: i64, replicas: i32) -> ReplicaSet {
    let mut template = d.spec.template.clone();
    let meta = template.metadata.get_or_insert_with(Default::default);
    meta.labels.get_or_insert_with(Default::default).insert(HASH_LABEL.into(), hash.into());
    let mut selector: LabelSelector = d.spec.selector.clone();
    selector.match_labels.get_or_insert_with(Default::default).insert(HASH_LABEL.into(), hash.into());
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("{}-{hash}", d.name_any())),
            namespace: d.namespace(),
            labels: meta.labels.clone(),
            annotations: Some([(REVISION.to_string(), revision.to_string())].into()),
            owner_references: controller_ref_to(d).map(|r| vec![r]),
            ..Default::default()
        },
        spec: ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: d.spec.min_ready_seconds,
            selector,
            template: Some(template),
        },
        status: None,
    }
}

struct Context {
    client: Client,
}

async fn scale(api: &Api<ReplicaSet>, name: &str, replicas: i32) -> Result<(), kube::Error> {
    let patch = json!({"spec": {"replicas": replicas}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ())
}

async fn annotate_revision<K>(api: &Api<K>, name: &str, revision: i64) -> Result<(), kube::Error>
where
    K: Clone + k8s_openapi::serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({"metadata": {"annotations": {REVISION: revision.to_string()}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ())
}

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = d.namespace().unwrap_or_default();
    let name = d.name_any();
    let uid = d.metadata.uid.clone().unwrap_or_default();
    if d.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
    let owned: Vec<ReplicaSet> = rs_api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|rs| controller_ref(&rs.metadata).is_some_and(|r| r.uid == uid) && rs.metadata.deletion_timestamp.is_none())
        .collect();
    let desired = d.spec.replicas.unwrap_or(1);
    let strategy = strategy_of(&d, desired)?;
    let wanted = template_without_hash(&d.spec.template);
    // The oldest ReplicaSet with the Deployment's template is the new one.
    let mut matching: Vec<&ReplicaSet> =
        owned.iter().filter(|rs| rs.spec.template.as_ref().map(template_without_hash).as_ref() == Some(&wanted)).collect();
    matching.sort_by_key(|rs| rs.metadata.creation_timestamp.as_ref().map_or(0, |t| t.0.as_second()));
    let mut new: Option<ReplicaSet> = matching.first().map(|rs| (*rs).clone());
    let max_old_revision = owned
        .iter()
        .filter(|rs| Some(rs.metadata.uid.clone()) != new.as_ref().map(|n| n.metadata.uid.clone()))
        .map(|rs| revision_of(&rs.metadata))
        .max()
        .unwrap_or(0);
    let paused = d.spec.paused == Some(true);

    if new.is_none() && !paused {
        let collisions = d.status.as_ref().and_then(|s| s.collision_count);
        let hash = template_hash(&d.spec.template, collisions);
        let rs = new_replicaset(&d, &hash, max_old_revision + 1, 0);
        match rs_api.create(&PostParams::default(), &rs).await {
            Ok(created) => {
                record_event(
                    &ctx.client,
                    COMPONENT,
                    &*d,
                    "Normal",
                    "ScalingReplicaSet",
                    format!("Created new replica set \"{}\"", created.name_any()),
                )
                .await;
                new = Some(created);
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // Someone else's ReplicaSet (or an old one of ours with another template) has
                // the name: count a collision, so the next hash differs.
                let d_api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
                let patch = json!({"status": {"collisionCount": collisions.unwrap_or(0) + 1}});
                d_api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
                return Ok(Action::requeue(Duration::from_secs(1)));
            }
            Err(e) => return Err(e.into()),
        }
    }

    let mut revision = new.as_ref().map_or(0, |rs| revision_of(&rs.metadata));
    if let Some(rs) = new.as_ref().filter(|_| revision <= max_old_revision) {
        // An old template back in use (a rollback): it becomes the newest revision.
        revision = max_old_revision + 1;
        annotate_revision(&rs_api, &rs.name_any(), revision).await?;
    }
    if revision > 0 && revision_of(&d.metadata) != revision {
        let d_api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
        annotate_revision(&d_api, &name, revision).await?;
    }

    let old: Vec<&ReplicaSet> =
        owned.iter().filter(|rs| Some(&rs.metadata.uid) != new.as_ref().map(|n| &n.metadata.uid)).collect();
    let new_state = new.as_ref().map(RsState::of);
    let old_states: Vec<RsState> = old.iter().map(|rs| RsState::of(rs)).collect();
    let steps = match (&new_state, paused) {
        (_, true) => paused_step(desired, new_state.as_ref(), &old_states),
        (Some(n), false) => match strategy {
            Strategy::RollingUpdate { surge, unavailable } => rolling_step(desired, surge, unavailable, n, &old_states),
            Strategy::Recreate => recreate_step(desired, n, &old_states),
        },
        (None, false) => vec![],
    };
    for (rs_name, replicas) in &steps {
        scale(&rs_api, rs_name, *replicas).await?;
        let from = old_states.iter().chain(new_state.as_ref()).find(|r| &r.name == rs_name).map_or(0, |r| r.replicas);
        let verb = if *replicas > from { "up" } else { "down" };
        let message = format!("Scaled {verb} replica set {rs_name} from {from} to {replicas}");
        record_event(&ctx.client, COMPONENT, &*d, "Normal", "ScalingReplicaSet", message).await;
    }
    let complete = !paused
        && steps.is_empty()
        && new_state.as_ref().is_some_and(|n| n.replicas == desired && n.available == desired)
        && old_states.iter().all(|r| r.replicas == 0 && r.current == 0);
    if complete {
        let history: Vec<(String, i64, i32, i32)> = old
            .iter()
            .map(|rs| (rs.name_any(), revision_of(&rs.metadata), rs.spec.replicas.unwrap_or(1), RsState::of(rs).current))
            .collect();
        for gone in history_to_delete(&history, d.spec.revision_history_limit.unwrap_or(10)) {
            match rs_api.delete(&gone, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    let now = Timestamp::now();
    let all: Vec<&ReplicaSet> = owned.iter().collect();
    let new_ref = new.as_ref();
    let mut all_with_new = all.clone();
    if let Some(n) = new_ref.filter(|n| !owned.iter().any(|rs| rs.metadata.uid == n.metadata.uid)) {
        all_with_new.push(n);
    }
    let status = next_status(&d, new_ref, &all_with_new, strategy, now);
    if !d.status.as_ref().is_some_and(|old| same_status(old, &status)) {
        let d_api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
        let patch = json!({"status": status});
        match d_api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    // Come back when the progress deadline would pass, and now and then regardless.
    let wait = seconds_to_deadline(&d, &status, now).map_or(300, |s| (s + 1).min(300));
    Ok(Action::requeue(Duration::from_secs(u64::try_from(wait).unwrap_or(300))))
}

fn error_policy(d: Arc<Deployment>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(deployment = %format!("{}/{}", d.namespace().unwrap_or_default(), d.name_any()), %error, "sync failed; retrying");
    Action::requeue(Duration::from_secs(2))
}

/// Runs the Deployment controller until `shutdown` resolves.
pub async fn run(client: Client, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    Controller::new(Api::<Deployment>::all(client.clone()), watcher::Config::default())
        .owns(Api::<ReplicaSet>::all(client.clone()), watcher::Config::default())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, Arc::new(Context { client }))
        .for_each(|_| futures::future::ready(()))
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(replicas: i32, strategy: Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "d-uid", "generation": 2},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}}, "strategy": strategy,
                "progressDeadlineSeconds": 600,
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}},
        }))
        .unwrap()
    }

    fn rs(name: &str, replicas: i32, available: i32, created: i64) -> RsState {
        RsState { name: name.into(), replicas, current: replicas, available, created }
    }

    fn pct(s: &str) -> IntOrString {
        IntOrString::String(s.into())
    }

    #[test]
    fn percentages_round_surge_up_and_unavailable_down() {
        assert_eq!(scaled_value(&pct("25%"), 10, true).unwrap(), 3, "2.5 surges to 3");
        assert_eq!(scaled_value(&pct("25%"), 10, false).unwrap(), 2, "2.5 unavailable is 2");
        assert_eq!(scaled_value(&pct("25%"), 1, true).unwrap(), 1);
        assert_eq!(scaled_value(&pct("25%"), 1, false).unwrap(), 0);
        assert_eq!(scaled_value(&pct("100%"), 7, false).unwrap(), 7);
        assert_eq!(scaled_value(&IntOrString::Int(2), 10, true).unwrap(), 2);
        assert!(scaled_value(&pct("lots"), 10, true).is_err());
        // Defaults 25%/25% of 3: surge 1, unavailable 0.
        let d = deployment(3, json!({"type": "RollingUpdate"}));
        assert_eq!(strategy_of(&d, 3).unwrap(), Strategy::RollingUpdate { surge: 1, unavailable: 0 });
        // Both resolving to 0: one pod may be unavailable.
        let d = deployment(1, json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "10%"}}));
        assert_eq!(strategy_of(&d, 1).unwrap(), Strategy::RollingUpdate { surge: 0, unavailable: 1 });
        assert_eq!(strategy_of(&deployment(3, json!({"type": "Recreate"})), 3).unwrap(), Strategy::Recreate);
        assert_eq!(max_unavailable(Strategy::RollingUpdate { surge: 1, unavailable: 5 }, 3), 3);
        assert_eq!(max_unavailable(Strategy::Recreate, 3), 0);
    }

    /// Plays a whole rollout with the step function, every pod becoming available at once,
    /// and checks the bounds hold at every step.
    #[test]
    fn rolling_update_worked_example_stays_within_bounds() {
        let (desired, surge, unavailable) = (4, 1, 1);
        let mut old = vec![rs("a", 4, 4, 1)];
        let mut new = rs("n", 0, 0, 2);
        let mut trace = Vec::new();
        for _ in 0..20 {
            let step = rolling_step(desired, surge, unavailable, &new, &old);
            if step.is_empty() {
                break;
            }
            for (name, replicas) in step {
                if name == "n" {
                    new.replicas = replicas;
                } else {
                    old[0].replicas = replicas;
                }
            }
            // Pods appear and become available before the next sync; removed ones vanish.
            new.available = new.replicas;
            old[0].available = old[0].replicas;
            let total = new.replicas + old[0].replicas;
            assert!(total <= desired + surge, "surge exceeded: {total}");
            assert!(new.available + old[0].available >= desired - unavailable, "too few available");
            trace.push((new.replicas, old[0].replicas));
        }
        assert_eq!(trace, [(1, 4), (1, 2), (3, 2), (3, 0), (4, 0)]);
    }

    #[test]
    fn rolling_update_waits_for_new_pods_before_removing_available_old_ones() {
        // desired 3, surge 1, unavailable 0: new at 1 but not yet available; old at 3.
        let old = [rs("a", 3, 3, 1)];
        let new = rs("n", 1, 0, 2);
        assert_eq!(rolling_step(3, 1, 0, &new, &old), vec![], "nothing may go until n's pod is available");
        let new = rs("n", 1, 1, 2);
        assert_eq!(rolling_step(3, 1, 0, &new, &old), vec![("a".to_string(), 2)]);
    }

    #[test]
    fn rolling_update_removes_unavailable_old_pods_first_and_oldest_replicaset_first() {
        // Two old ReplicaSets: "a" (oldest) with 2 pods of which 1 available, "b" with 2 available.
        let old = [rs("b", 2, 2, 5), rs("a", 2, 1, 1)];
        let new = rs("n", 4, 4, 9);
        // min available 4 - 1 = 3; all 8 pods, new has none unavailable: up to 5 may go.
        // Cleanup takes a's unavailable pod (a→1), then 7 available - 3 = 4 more: a→0, b→0.
        let step = rolling_step(4, 1, 1, &new, &old);
        assert_eq!(step, vec![("a".to_string(), 0), ("b".to_string(), 0)]);
        // Scaling a Deployment down shrinks the new ReplicaSet first.
        assert_eq!(rolling_step(2, 1, 1, &rs("n", 4, 4, 9), &[]), vec![("n".to_string(), 2)]);
        assert_eq!(rolling_step(5, 1, 1, &rs("n", 4, 4, 9), &[]), vec![("n".to_string(), 5)]);
        assert_eq!(rolling_step(4, 1, 1, &rs("n", 4, 4, 9), &[rs("a", 0, 0, 1)]), vec![]);
    }

    #[test]
    fn recreate_removes_every_old_pod_before_any_new_one() {
        let new = rs("n", 0, 0, 2);
        assert_eq!(recreate_step(3, &new, &[rs("a", 3, 3, 1)]), vec![("a".to_string(), 0)]);
        let draining = RsState { current: 2, ..rs("a", 0, 0, 1) };
        assert_eq!(recreate_step(3, &new, &[draining]), vec![], "old pods still there");
        assert_eq!(recreate_step(3, &new, &[rs("a", 0, 0, 1)]), vec![("n".to_string(), 3)]);
        assert_eq!(recreate_step(3, &rs("n", 3, 0, 2), &[]), vec![]);
    }

    #[test]
    fn a_paused_deployment_only_scales_a_lone_active_replicaset() {
        let new = rs("n", 2, 2, 2);
        assert_eq!(paused_step(4, Some(&new), &[rs("a", 0, 0, 1)]), vec![("n".to_string(), 4)]);
        assert_eq!(paused_step(4, None, &[rs("a", 2, 2, 1)]), vec![("a".to_string(), 4)], "template changed while paused");
        assert_eq!(paused_step(4, Some(&new), &[rs("a", 2, 2, 1)]), vec![], "mid-rollout: left alone");
        assert_eq!(paused_step(2, Some(&new), &[]), vec![]);
        assert_eq!(paused_step(3, Some(&rs("n", 0, 0, 2)), &[]), vec![("n".to_string(), 3)]);
    }

    #[test]
    fn template_hash_is_stable_and_tells_templates_apart() {
        let d = deployment(3, json!({}));
        let h = template_hash(&d.spec.template, None);
        // A fixed value: a change here renames every ReplicaSet of every existing Deployment.
        assert_eq!(h, template_hash(&d.spec.template, None));
        assert!(!h.is_empty() && h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)), "{h}");
        // The hash label itself does not count; field order does not count.
        let with_label = new_replicaset(&d, &h, 1, 0).spec.template.unwrap();
        assert_eq!(template_hash(&with_label, None), h);
        let reordered: PodTemplateSpec = serde_json::from_str(
            r#"{"spec": {"containers": [{"image": "nginx", "name": "nginx"}]}, "metadata": {"labels": {"app": "web"}}}"#,
        )
        .unwrap();
        assert_eq!(template_hash(&reordered, None), h);
        let mut other = d.spec.template.clone();
        other.spec.as_mut().unwrap().containers[0].image = Some("nginx:1.27".into());
        assert_ne!(template_hash(&other, None), h);
        assert_ne!(template_hash(&d.spec.template, Some(1)), h, "a collision count changes the name");
        // Zero values written out (as kubectl's protobuf leaves them) do not count either.
        let explicit: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"creationTimestamp": null, "generation": 0, "labels": {"app": "web"}},
            "spec": {"hostPID": false, "containers": [{"name": "nginx", "image": "nginx", "resources": {}, "stdin": false, "args": []}]},
        }))
        .unwrap();
        assert_eq!(template_hash(&explicit, None), h);
        assert_eq!(template_without_hash(&explicit), template_without_hash(&d.spec.template));
        assert_eq!(h, "6c8ffc4f57");
    }

    #[test]
    fn new_replicaset_selects_its_hash_and_is_controlled_by_the_deployment() {
        let d = deployment(3, json!({}));
        let rs = new_replicaset(&d, "abc", 4, 1);
        assert_eq!(rs.metadata.name.as_deref(), Some("web-abc"));
        assert_eq!(rs.spec.selector.match_labels.as_ref().unwrap().get(HASH_LABEL).map(String::as_str), Some("abc"));
        let labels = rs.spec.template.as_ref().unwrap().metadata.as_ref().unwrap().labels.clone().unwrap();
        assert_eq!(labels.get(HASH_LABEL).map(String::as_str), Some("abc"));
        assert_eq!(revision_of(&rs.metadata), 4);
        let owner = controller_ref(&rs.metadata).unwrap();
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("Deployment", "d-uid"));
    }

    #[test]
    fn history_keeps_the_newest_empty_replicasets() {
        let old = vec![
            ("r1".to_string(), 1, 0, 0),
            ("r2".to_string(), 2, 0, 0),
            ("r3".to_string(), 3, 0, 1),
            ("r4".to_string(), 4, 0, 0),
        ];
        assert_eq!(history_to_delete(&old, 1), ["r1", "r2"], "r3 still has a pod");
        assert!(history_to_delete(&old, 10).is_empty());
    }

    fn replicaset(name: &str, replicas: i32, current: i32, ready: i32, available: i32) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {}},
            "status": {"replicas": current, "readyReplicas": ready, "availableReplicas": available},
        }))
        .unwrap()
    }

    fn cond<'a>(s: &'a DeploymentStatus, t: &str) -> (&'a str, &'a str) {
        let c = condition(s, t).unwrap();
        (c.status.as_deref().unwrap(), c.reason.as_deref().unwrap())
    }

    #[test]
    fn status_counts_and_conditions_follow_the_rollout() {
        let mut d = deployment(3, json!({}));
        let strategy = strategy_of(&d, 3).unwrap();
        let t0 = Timestamp::from_second(1000).unwrap();
        // Mid-rollout: new at 1 (not available), old at 3 available.
        let old = replicaset("web-old", 3, 3, 3, 3);
        let new = replicaset("web-new", 1, 1, 0, 0);
        let s = next_status(&d, Some(&new), &[&old, &new], strategy, t0);
        assert_eq!(
            (
                s.replicas,
                s.updated_replicas,
                s.ready_replicas,
                s.available_replicas,
                s.unavailable_replicas,
                s.observed_generation
            ),
            (Some(4), Some(1), Some(3), Some(3), Some(1), Some(2))
        );
        assert_eq!(cond(&s, "Available"), ("True", "MinimumReplicasAvailable"));
        assert_eq!(cond(&s, "Progressing"), ("True", "ReplicaSetUpdated"));
        // No progress for longer than the deadline.
        d.status = Some(s);
        let late = Timestamp::from_second(1000 + 601).unwrap();
        let s = next_status(&d, Some(&new), &[&old, &new], strategy, late);
        assert_eq!(cond(&s, "Progressing"), ("False", "ProgressDeadlineExceeded"));
        // Done: all 3 updated and available, the old one empty.
        let old = replicaset("web-old", 0, 0, 0, 0);
        let new = replicaset("web-new", 3, 3, 3, 3);
        let s = next_status(&d, Some(&new), &[&old, &new], strategy, late);
        assert_eq!(cond(&s, "Progressing"), ("True", "NewReplicaSetAvailable"));
        assert_eq!((s.replicas, s.updated_replicas, s.unavailable_replicas), (Some(3), Some(3), Some(0)));
        // Nothing available: not even the minimum.
        let none = replicaset("web-new", 3, 3, 0, 0);
        let s = next_status(&d, Some(&none), &[&none], strategy, late);
        assert_eq!(cond(&s, "Available"), ("False", "MinimumReplicasUnavailable"));
    }
}
