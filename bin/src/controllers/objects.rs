//! What the workload controllers and the garbage collector share: their error type, controller
//! references, pod readiness, and core/v1 Events.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::{Client, Resource, ResourceExt};

/// Errors of one reconcile of a workload controller; the controller retries.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("{0}")]
    Api(#[from] kube::Error),
    /// The object cannot be acted on as it stands (e.g. a selector that does not parse).
    #[error("{0}")]
    Invalid(String),
}

/// The owner reference with `controller: true`, if any (an object has at most one).
pub fn controller_ref(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.as_ref()?.iter().find(|r| r.controller == Some(true))
}

/// A reference making `owner` the controller of an object, blocking the owner's foreground
/// deletion until the object is gone (what kube's controllers set).
pub fn controller_ref_to<K: Resource<DynamicType = ()>>(owner: &K) -> Option<OwnerReference> {
    let mut r = owner.controller_owner_ref(&())?;
    r.block_owner_deletion = Some(true);
    Some(r)
}

/// Whether a pod still counts towards its controller's replicas: not finished, not being deleted.
pub fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
    pod.metadata.deletion_timestamp.is_none() && phase != "Succeeded" && phase != "Failed"
}

fn ready_condition(pod: &Pod) -> Option<&PodCondition> {
    pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready" && c.status == "True")
}

/// Whether the pod's Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some()
}

/// When the pod became ready (None: not ready, or no transition time recorded).
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    ready_condition(pod)?.last_transition_time.as_ref().map(|t| t.0)
}

/// Seconds until a pod counts as available: `Some(0)` when it already is (ready for at least
/// `min_ready_seconds`), None when it is not ready at all.
pub fn seconds_until_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> Option<i64> {
    ready_condition(pod)?;
    if min_ready_seconds <= 0 {
        return Some(0);
    }
    // A Ready condition without a transition time: we cannot tell how long, so count it as
    // ready from now on.
    let since = ready_since(pod).unwrap_or(now);
    Some((since.as_second() + i64::from(min_ready_seconds) - now.as_second()).max(0))
}

/// The apiserver's own message for a refused call (what users see in kubectl), or the error.
pub fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
        other => other.to_string(),
    }
}

/// Records a core/v1 Event about `obj` (what `kubectl describe` shows). Failing to record is
/// logged, never an error of the caller: events are informational.
pub async fn record_event<K: Resource<DynamicType = ()>>(
    client: &Client,
    component: &str,
    obj: &K,
    type_: &str,
    reason: &str,
    message: String,
) {
    let ns = obj.namespace().unwrap_or_else(|| "default".into());
    let now = Time(Timestamp::now());
    let event = Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}.", obj.name_any())),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some(K::api_version(&()).into_owned()),
            kind: Some(K::kind(&()).into_owned()),
            name: Some(obj.name_any()),
            namespace: obj.namespace(),
            uid: obj.uid(),
            resource_version: obj.resource_version(),
            ..Default::default()
        },
        reason: Some(reason.into()),
        message: Some(message),
        type_: Some(type_.into()),
        source: Some(EventSource { component: Some(component.into()), host: None }),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        ..Default::default()
    };
    let api: Api<Event> = Api::namespaced(client.clone(), &ns);
    if let Err(e) = api.create(&PostParams::default(), &event).await {
        tracing::debug!(%reason, error = %e, "could not record an event");
    }
}

#[cfg(test)]
pub(crate) mod test_pods {
    //! Pods for unit tests, written as JSON the way the apiserver returns them.
    use super::*;

    /// A pod named `name` with the given phase, node, readiness (transition at `ready_at`
    /// seconds since the epoch), restarts and creation time.
    pub fn pod(name: &str, phase: &str, node: &str, ready_at: Option<i64>, restarts: i32, created: i64) -> Pod {
        let ts = |s: i64| Timestamp::from_second(s).unwrap().to_string();
        let conditions = match ready_at {
            Some(t) => serde_json::json!([{"type": "Ready", "status": "True", "lastTransitionTime": ts(t)}]),
            None => serde_json::json!([{"type": "Ready", "status": "False"}]),
        };
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "uid": format!("uid-{name}"), "creationTimestamp": ts(created), "labels": {"app": "web"}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx"}]},
            "status": {"phase": phase, "conditions": conditions,
                "containerStatuses": [{"name": "c", "image": "nginx", "imageID": "", "ready": ready_at.is_some(),
                    "restartCount": restarts}]},
        }))
        .unwrap()
    }

    #[test]
    fn availability_waits_min_ready_seconds_after_the_ready_transition() {
        let now = Timestamp::from_second(1000).unwrap();
        let ready = pod("a", "Running", "n", Some(990), 0, 900);
        assert_eq!(seconds_until_available(&ready, 0, now), Some(0));
        assert_eq!(seconds_until_available(&ready, 10, now), Some(0));
        assert_eq!(seconds_until_available(&ready, 15, now), Some(5));
        let not_ready = pod("b", "Running", "n", None, 0, 900);
        assert_eq!(seconds_until_available(&not_ready, 0, now), None);
        assert!(is_active(&not_ready));
        let done = pod("c", "Succeeded", "n", None, 0, 900);
        assert!(!is_active(&done));
    }
}
