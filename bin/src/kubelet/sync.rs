//! The thin async driver of the pod lifecycle: for one pod, read what the runtime observed,
//! ask the state machine (`lifecycle::decide`), apply its actions, write the status when it
//! changed and delete the pod once its deletion is complete. Runs under kube-rs' applier (one
//! reconcile per pod at a time, deduplicated queue), triggered by the pod watch and by the
//! runtime's container events. Plus the housekeeping that stops pods gone from the apiserver.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};

use super::lifecycle::{decide, Action};
use super::node::NODE_IP;
use super::runtime::{PodKey, Runtime};
use super::Error;

/// Look at every pod at least this often, even without events.
pub const RESYNC: Duration = Duration::from_secs(30);
/// How often pods gone from the apiserver are looked for.
pub const HOUSEKEEPING: Duration = Duration::from_secs(2);

/// What every reconcile shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// This node's name.
    pub node_name: String,
    /// The container runtime.
    pub runtime: Arc<dyn Runtime>,
}

/// The runtime's key of a pod; None for a pod without UID (not stored yet: nothing to do).
pub fn pod_key(pod: &Pod) -> Option<PodKey> {
    Some(PodKey { uid: pod.metadata.uid.clone()?, namespace: pod.namespace().unwrap_or_default(), name: pod.name_any() })
}

/// One step for one pod.
pub async fn reconcile(pod: Arc<Pod>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let Some(key) = pod_key(&pod) else { return Ok(Requeue::await_change()) };
    if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(ctx.node_name.as_str()) {
        return Ok(Requeue::await_change());
    }
    let observed = ctx.runtime.observe(&key.uid);
    let decision = decide(&pod, &observed, NODE_IP, Timestamp::now());
    for action in &decision.actions {
        match action {
            Action::Start { container, restart_count, launch } => ctx.runtime.start(&key, container, *restart_count, launch),
            Action::Kill { container, grace } => ctx.runtime.kill(&key.uid, container, *grace),
        }
    }
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &key.namespace);
    if pod.status.as_ref() != Some(&decision.status) {
        let mut updated = (*pod).clone();
        updated.status = Some(decision.status.clone());
        tracing::debug!(pod = %key.name, namespace = %key.namespace, phase = ?decision.status.phase, "writing pod status");
        match api.replace_status(&key.name, &PostParams::default(), &updated).await {
            Ok(_) => {}
            // Gone meanwhile: housekeeping stops what is left.
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Requeue::await_change()),
            Err(e) => return Err(e.into()),
        }
    }
    if decision.delete_pod {
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions { uid: Some(key.uid.clone()), resource_version: None }),
            ..Default::default()
        };
        match api.delete(&key.name, &params).await {
            Ok(_) => tracing::info!(pod = %key.name, namespace = %key.namespace, "pod stopped and deleted"),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        return Ok(Requeue::await_change());
    }
    Ok(Requeue::requeue(decision.requeue_after.map_or(RESYNC, |d| d.min(RESYNC))))
}

/// A failed reconcile is retried soon (a status write lost to a newer version, a hiccup).
pub fn error_policy(pod: Arc<Pod>, error: &Error, _ctx: Arc<Context>) -> Requeue {
    tracing::debug!(pod = %pod.name_any(), %error, "pod sync failed; retrying");
    Requeue::requeue(Duration::from_secs(1))
}

/// The pods the runtime holds that the apiserver no longer has (by UID): to be stopped and
/// forgotten.
pub fn orphans(runtime_pods: &[PodKey], live_uids: &HashSet<String>) -> Vec<PodKey> {
    runtime_pods.iter().filter(|p| !live_uids.contains(&p.uid)).cloned().collect()
}

/// Every `HOUSEKEEPING`, removes from the runtime the pods that left the apiserver (deleted,
/// force-deleted, or gone while the kubelet was down). Starts once the pod cache has listed.
pub async fn housekeeping(store: Store<Pod>, runtime: Arc<dyn Runtime>, stop: impl std::future::Future<Output = ()>) {
    let mut stop = std::pin::pin!(stop);
    tokio::select! {
        _ = &mut stop => return,
        r = store.wait_until_ready() => if r.is_err() { return },
    }
    loop {
        // The runtime first: a pod started after this look is then in the cache below.
        let held = runtime.pods();
        let live: HashSet<String> = store.state().iter().filter_map(|p| p.metadata.uid.clone()).collect();
        for pod in orphans(&held, &live) {
            tracing::info!(pod = %pod.name, namespace = %pod.namespace, "pod left the apiserver; stopping what is left of it");
            runtime.remove_pod(&pod.uid).await;
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(HOUSEKEEPING) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orphans_are_runtime_pods_the_apiserver_does_not_have() {
        let key = |uid: &str| PodKey { uid: uid.into(), namespace: "ns".into(), name: format!("p-{uid}") };
        let live: HashSet<String> = ["a".to_string(), "c".to_string()].into();
        assert_eq!(orphans(&[key("a"), key("b"), key("c")], &live), [key("b")]);
        assert!(orphans(&[], &live).is_empty());
    }
}
