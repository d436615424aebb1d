//! The ReplicaSet controller: keeps `spec.replicas` active pods matching a ReplicaSet's
//! selector, as kube-controller-manager's does.
//!
//! A pod belongs to a ReplicaSet through its controller owner reference (matched by uid).
//! Each sync lists the namespace's pods, adopts matching orphans, releases owned pods that no
//! longer match, creates missing pods from `spec.template` in slow-start batches (1, 2, 4, ...;
//! a batch with a failure stops the sync, so a template the apiserver refuses costs one failed
//! create, not `replicas` of them), deletes extras the cheapest first ([`deletion_order`]),
//! and writes the status. The decisions are [`plan`] and [`next_status`]; `reconcile` only
//! carries them out.
//!
//! The pods are read with a fresh LIST rather than from a watch cache: a cache that has not yet
//! seen the pods created by the previous sync would make the next sync create them again (kube
//! guards its cache with "expectations"; a LIST costs more but needs no such bookkeeping).

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;

use super::objects::{
    api_message, controller_ref, controller_ref_to, is_active, is_ready, ready_since, record_event, seconds_until_available,
    Error,
};

/// The most pods one sync creates or deletes (kube's `burstReplicas`).
pub const BURST_REPLICAS: usize = 500;

/// The name this controller signs its events with.
const COMPONENT: &str = "replicaset-controller";

/// How soon a sync whose pod creations or deletions failed is retried.
const RETRY: Duration = Duration::from_secs(5);

/// The order in which pods are deleted when there are too many: those cheapest to lose first
/// (kube's `ActivePods` ranking): not yet on a node, then Pending before Unknown before Running,
/// not ready before ready, ready for a shorter time, more container restarts, created later.
/// The name breaks remaining ties so the order is deterministic.
pub fn deletion_order(a: &Pod, b: &Pod) -> std::cmp::Ordering {
    fn key(p: &Pod) -> (bool, u8, bool, Reverse<i64>, Reverse<i32>, Reverse<i64>, String) {
        let assigned = p.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_some_and(|n| !n.is_empty());
        let phase = match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
            Some("Pending") | None => 0,
            Some("Unknown") => 1,
            Some("Running") => 2,
            Some(_) => 0,
        };
        let ready = is_ready(p);
        let ready_for = Reverse(if ready { ready_since(p).map_or(0, |t| t.as_second()) } else { 0 });
        let restarts = p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|cs| cs.iter().map(|c| c.restart_count).max())
            .unwrap_or(0);
        let created = p.metadata.creation_timestamp.as_ref().map_or(0, |t| t.0.as_second());
        (assigned, phase, ready, ready_for, Reverse(restarts), Reverse(created), p.name_any())
    }
    key(a).cmp(&key(b))
}

/// The sizes of the create batches for `total` pods: 1, 2, 4, ... with the last one clipped,
/// so a failing template fails fast and a working one still converges in a few rounds.
pub fn slow_start_batches(total: usize) -> Vec<usize> {
    let mut batches = Vec::new();
    let (mut size, mut left) = (1, total);
    while left > 0 {
        let batch = size.min(left);
        batches.push(batch);
        left -= batch;
        size *= 2;
    }
    batches
}

/// Pod counts a ReplicaSet's status reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Active pods owned.
    pub replicas: i32,
    /// ... whose labels include all of the template's.
    pub fully_labeled: i32,
    /// ... that are ready.
    pub ready: i32,
    /// ... that have been ready for `minReadySeconds`.
    pub available: i32,
}

/// What one sync of a ReplicaSet does, decided from the ReplicaSet and its namespace's pods.
#[derive(Debug, Default)]
pub struct Plan<'a> {
    /// Orphans that match the selector: become ours.
    pub adopt: Vec<&'a Pod>,
    /// Owned pods that no longer match the selector: no longer ours.
    pub release: Vec<&'a Pod>,
    /// How many pods to create from the template.
    pub create: usize,
    /// Pods to delete, in order.
    pub delete: Vec<&'a Pod>,
    /// The counts of the pods that are ours after adoption and release.
    pub counts: Counts,
    /// Seconds until a ready pod becomes available (the status changes then without an event).
    pub recheck_after: Option<i64>,
}

/// The selector of a ReplicaSet (or Deployment): kube-rs' parsed form, refusing a missing one
/// (which would select everything).
pub fn selector_of(selector: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>) -> Result<Selector, Error> {
    let s = selector.ok_or_else(|| Error::Invalid("spec.selector is missing".into()))?;
    Selector::try_from(s.clone()).map_err(|e| Error::Invalid(format!("spec.selector: {e}")))
}

/// The sync decision for `rs` over `pods` (all pods of its namespace).
pub fn plan<'a>(rs: &ReplicaSet, pods: &'a [Pod], now: Timestamp) -> Result<Plan<'a>, Error> {
    let spec = &rs.spec;
    let selector = selector_of(Some(&spec.selector))?;
    let uid = rs.metadata.uid.as_deref().unwrap_or("");
    let deleting = rs.metadata.deletion_timestamp.is_some();
    let empty = BTreeMap::new();
    let matches = |p: &Pod| selector.matches(p.metadata.labels.as_ref().unwrap_or(&empty));
    let mut out = Plan::default();
    let mut ours: Vec<&Pod> = Vec::new();
    for pod in pods {
        match controller_ref(&pod.metadata) {
            Some(r) if r.uid == uid => {
                if matches(pod) {
                    ours.push(pod);
                } else if pod.metadata.deletion_timestamp.is_none() {
                    out.release.push(pod);
                }
            }
            Some(_) => {}
            // A ReplicaSet on its way out adopts nothing, nor does anyone adopt a dying pod.
            None if !deleting && pod.metadata.deletion_timestamp.is_none() && matches(pod) => {
                out.adopt.push(pod);
                ours.push(pod);
            }
            None => {}
        }
    }
    let mut active: Vec<&Pod> = ours.into_iter().filter(|p| is_active(p)).collect();
    let template_labels = spec.template.as_ref().and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.clone());
    let template_labels = template_labels.unwrap_or_default();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    for p in &active {
        out.counts.replicas += 1;
        let labels = p.metadata.labels.as_ref().unwrap_or(&empty);
        if template_labels.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            out.counts.fully_labeled += 1;
        }
        if is_ready(p) {
            out.counts.ready += 1;
        }
        match seconds_until_available(p, min_ready, now) {
            Some(0) => out.counts.available += 1,
            Some(s) => out.recheck_after = Some(out.recheck_after.map_or(s, |r: i64| r.min(s))),
            None => {}
        }
    }
    if !deleting {
        let want = usize::try_from(spec.replicas.unwrap_or(1)).unwrap_or(0);
        if active.len() < want {
            out.create = (want - active.len()).min(BURST_REPLICAS);
        } else if active.len() > want {
            let extra = active.len() - want;
            active.sort_by(|a, b| deletion_order(a, b));
            out.delete = active.into_iter().take(extra.min(BURST_REPLICAS)).collect();
        }
    }
    Ok(out)
}

/// The condition type a failed create or delete sets.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// The status to write after a sync: the counts, the generation they answer, and the
/// ReplicaFailure condition set (`failure` = reason and message) or cleared.
pub fn next_status(rs: &ReplicaSet, counts: Counts, failure: Option<(&str, &str)>, now: Timestamp) -> ReplicaSetStatus {
    let old = rs.status.clone().unwrap_or_default();
    let mut conditions: Vec<ReplicaSetCondition> =
        old.conditions.clone().unwrap_or_default().into_iter().filter(|c| c.type_.as_deref() != Some(REPLICA_FAILURE)).collect();
    if let Some((reason, message)) = failure {
        let previous = old.conditions.iter().flatten().find(|c| {
            c.type_.as_deref() == Some(REPLICA_FAILURE)
                && c.status.as_deref() == Some("True")
                && c.reason.as_deref() == Some(reason)
        });
        // The same failure again keeps its first message: messages name the refused pod, and
        // a status rewritten on every failure would trigger the next sync at once, in a loop.
        conditions.push(previous.cloned().unwrap_or_else(|| ReplicaSetCondition {
            type_: Some(REPLICA_FAILURE.into()),
            status: Some("True".into()),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_transition_time: Some(Time(now)),
        }));
    }
    ReplicaSetStatus {
        replicas: counts.replicas,
        fully_labeled_replicas: Some(counts.fully_labeled),
        ready_replicas: Some(counts.ready),
        available_replicas: Some(counts.available),
        observed_generation: rs.metadata.generation,
        conditions: if conditions.is_empty() { None } else { Some(conditions) },
        terminating_replicas: old.terminating_replicas,
    }
}

/// A pod made from the ReplicaSet's template, named `RSNAME-xxxxx` by the apiserver.
pub fn pod_from_template(rs: &ReplicaSet) -> Pod {
    let template = rs.spec.template.clone().unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", rs.name_any())),
            namespace: rs.namespace(),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: controller_ref_to(rs).map(|r| vec![r]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

struct Context {
    client: Client,
}

/// Sets (adopt) or removes (release) the pod's controller reference to `rs`, with the pod's
/// resourceVersion as precondition so a concurrent claim by someone else wins cleanly.
async fn claim(api: &Api<Pod>, rs: &ReplicaSet, pod: &Pod, adopt: bool) -> Result<(), kube::Error> {
    let uid = rs.metadata.uid.as_deref().unwrap_or("");
    let mut refs: Vec<_> = pod.metadata.owner_references.clone().unwrap_or_default();
    refs.retain(|r| r.uid != uid);
    if adopt {
        refs.extend(controller_ref_to(rs));
    }
    let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": pod.metadata.resource_version}});
    match api.patch(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates `n` pods in slow-start batches; the first failure ends it and is returned.
async fn create_pods(api: &Api<Pod>, rs: &ReplicaSet, n: usize) -> Result<usize, (usize, kube::Error)> {
    let pod = pod_from_template(rs);
    let params = PostParams::default();
    let mut created = 0;
    for batch in slow_start_batches(n) {
        let results = futures::future::join_all((0..batch).map(|_| api.create(&params, &pod))).await;
        let mut first_error = None;
        for r in results {
            match r {
                Ok(_) => created += 1,
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        if let Some(e) = first_error {
            return Err((created, e));
        }
    }
    Ok(created)
}

async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = rs.namespace().unwrap_or_default();
    let name = rs.name_any();
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pods = pods_api.list(&ListParams::default()).await?.items;
    let now = Timestamp::now();
    let plan = plan(&rs, &pods, now)?;
    for pod in &plan.adopt {
        claim(&pods_api, &rs, pod, true).await?;
    }
    for pod in &plan.release {
        claim(&pods_api, &rs, pod, false).await?;
    }
    let mut failure: Option<(&str, String)> = None;
    if plan.create > 0 {
        match create_pods(&pods_api, &rs, plan.create).await {
            Ok(n) => {
                tracing::info!(replicaset = %format!("{ns}/{name}"), created = n, "created pods");
                record_event(&ctx.client, COMPONENT, &*rs, "Normal", "SuccessfulCreate", format!("Created {n} pod(s)")).await;
            }
            Err((n, e)) => {
                if n > 0 {
                    record_event(&ctx.client, COMPONENT, &*rs, "Normal", "SuccessfulCreate", format!("Created {n} pod(s)")).await;
                }
                let message = format!("Error creating: {} ({n} of {} created)", api_message(&e), plan.create);
                tracing::warn!(replicaset = %format!("{ns}/{name}"), %message, "pod creation failed");
                record_event(&ctx.client, COMPONENT, &*rs, "Warning", "FailedCreate", message.clone()).await;
                failure = Some(("FailedCreate", message));
            }
        }
    }
    if !plan.delete.is_empty() {
        let params = DeleteParams::default();
        let deletes = plan.delete.iter().map(|p| pods_api.delete(p.metadata.name.as_deref().unwrap_or(""), &params));
        let results = futures::future::join_all(deletes).await;
        let errors: Vec<String> = results
            .into_iter()
            .filter_map(|r| match r {
                Err(kube::Error::Api(s)) if s.code == 404 => None,
                Err(e) => Some(api_message(&e)),
                Ok(_) => None,
            })
            .collect();
        let names: Vec<String> = plan.delete.iter().map(|p| p.name_any()).collect();
        if errors.is_empty() {
            record_event(
                &ctx.client,
                COMPONENT,
                &*rs,
                "Normal",
                "SuccessfulDelete",
                format!("Deleted pod(s): {}", names.join(", ")),
            )
            .await;
        } else {
            let message = format!("Error deleting: {}", errors.join("; "));
            record_event(&ctx.client, COMPONENT, &*rs, "Warning", "FailedDelete", message.clone()).await;
            failure = Some(("FailedDelete", message));
        }
    }
    let status = next_status(&rs, plan.counts, failure.as_ref().map(|(r, m)| (*r, m.as_str())), now);
    if rs.status.as_ref() != Some(&status) {
        let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
        let mut patch = json!({"status": status});
        // A merge patch leaves out what it does not name: a cleared condition list is an
        // explicit null.
        if status.conditions.is_none() {
            patch["status"]["conditions"] = serde_json::Value::Null;
        }
        match rs_api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(match (failure, plan.recheck_after) {
        (Some(_), _) => Action::requeue(RETRY),
        (None, Some(s)) => Action::requeue(Duration::from_secs(u64::try_from(s).unwrap_or(0) + 1)),
        // A periodic resync, as kube's informers do, in case a watch missed something.
        (None, None) => Action::requeue(Duration::from_secs(300)),
    })
}

fn error_policy(rs: Arc<ReplicaSet>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(replicaset = %format!("{}/{}", rs.namespace().unwrap_or_default(), rs.name_any()), %error, "sync failed; retrying");
    Action::requeue(Duration::from_secs(2))
}

/// The ReplicaSets a pod change concerns: its controller if that is a ReplicaSet, or, for an
/// orphan, every ReplicaSet of its namespace that selects it (one of them adopts it).
fn replicasets_for_pod(pod: &Pod, store: &Store<ReplicaSet>) -> Vec<ObjectRef<ReplicaSet>> {
    let ns = pod.namespace().unwrap_or_default();
    match controller_ref(&pod.metadata) {
        Some(r) if r.kind == "ReplicaSet" => vec![ObjectRef::new(&r.name).within(&ns)],
        Some(_) => vec![],
        None => {
            let empty = BTreeMap::new();
            let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
            store
                .state()
                .iter()
                .filter(|rs| rs.namespace().as_deref() == Some(ns.as_str()))
                .filter(|rs| selector_of(Some(&rs.spec.selector)).is_ok_and(|s| s.matches(labels)))
                .map(|rs| ObjectRef::from_obj(&**rs))
                .collect()
        }
    }
}

/// Runs the ReplicaSet controller until `shutdown` resolves.
pub async fn run(client: Client, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    let controller = Controller::new(Api::<ReplicaSet>::all(client.clone()), watcher::Config::default());
    let store = controller.store();
    controller
        .watches(Api::<Pod>::all(client.clone()), watcher::Config::default(), move |pod| replicasets_for_pod(&pod, &store))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, Arc::new(Context { client }))
        .for_each(|_| futures::future::ready(()))
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::objects::test_pods::pod;

    fn rs(replicas: i32) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": "web-1", "namespace": "default", "uid": "rs-uid", "generation": 3},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web", "tier": "front"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
        }))
        .unwrap()
    }

    fn owned(mut p: Pod, owner: &ReplicaSet) -> Pod {
        p.metadata.owner_references = controller_ref_to(owner).map(|r| vec![r]);
        p
    }

    fn names(pods: &[&Pod]) -> Vec<String> {
        pods.iter().map(|p| p.name_any()).collect()
    }

    #[test]
    fn slow_start_doubles_and_clips_the_last_batch() {
        assert_eq!(slow_start_batches(0), Vec::<usize>::new());
        assert_eq!(slow_start_batches(1), vec![1]);
        assert_eq!(slow_start_batches(3), vec![1, 2]);
        assert_eq!(slow_start_batches(10), vec![1, 2, 4, 3]);
        assert_eq!(slow_start_batches(16), vec![1, 2, 4, 8, 1]);
    }

    #[test]
    fn deletion_prefers_unscheduled_then_pending_then_unready_then_young() {
        let mut pods = [
            pod("running-ready-old", "Running", "n1", Some(100), 0, 10),
            pod("running-ready-recent", "Running", "n1", Some(500), 0, 10),
            pod("running-unready", "Running", "n1", None, 0, 10),
            pod("pending-on-node", "Pending", "n1", None, 0, 10),
            pod("unscheduled", "Pending", "", None, 0, 10),
            pod("running-ready-old-restarted", "Running", "n1", Some(100), 3, 10),
            pod("running-ready-old-newer", "Running", "n1", Some(100), 0, 20),
        ];
        pods.sort_by(deletion_order);
        let order: Vec<String> = pods.iter().map(|p| p.name_any()).collect();
        assert_eq!(
            order,
            [
                "unscheduled",
                "pending-on-node",
                "running-unready",
                "running-ready-recent",
                "running-ready-old-restarted",
                "running-ready-old-newer",
                "running-ready-old",
            ]
        );
    }

    #[test]
    fn plan_creates_the_missing_pods_and_counts_only_active_owned_ones() {
        let owner = rs(3);
        let now = Timestamp::from_second(1000).unwrap();
        let mut dying = owned(pod("dying", "Running", "n", Some(10), 0, 1), &owner);
        dying.metadata.deletion_timestamp = Some(Time(now));
        let pods = vec![
            owned(pod("a", "Running", "n", Some(10), 0, 1), &owner),
            owned(pod("done", "Succeeded", "n", None, 0, 1), &owner),
            dying,
        ];
        let p = plan(&owner, &pods, now).unwrap();
        assert_eq!(p.create, 2);
        assert!(p.delete.is_empty() && p.adopt.is_empty() && p.release.is_empty());
        // "a" lacks the template's tier label: counted, but not fully labeled.
        assert_eq!(p.counts, Counts { replicas: 1, fully_labeled: 0, ready: 1, available: 1 });
    }

    #[test]
    fn plan_deletes_the_cheapest_extras() {
        let owner = rs(1);
        let now = Timestamp::from_second(1000).unwrap();
        let pods = vec![
            owned(pod("old-ready", "Running", "n", Some(10), 0, 1), &owner),
            owned(pod("young-pending", "Pending", "", None, 0, 900), &owner),
            owned(pod("ready-later", "Running", "n", Some(20), 0, 1), &owner),
        ];
        let p = plan(&owner, &pods, now).unwrap();
        assert_eq!(p.create, 0);
        assert_eq!(names(&p.delete), ["young-pending", "ready-later"]);
    }

    #[test]
    fn plan_adopts_matching_orphans_and_releases_mismatched_pods() {
        let owner = rs(2);
        let now = Timestamp::from_second(1000).unwrap();
        let mut relabeled = owned(pod("relabeled", "Running", "n", None, 0, 1), &owner);
        relabeled.metadata.labels = Some([("app".to_string(), "other".to_string())].into());
        let mut others = pod("others", "Running", "n", None, 0, 1);
        others.metadata.owner_references = Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            controller: Some(true),
            uid: "someone-else".into(),
            ..Default::default()
        }]);
        let pods = vec![pod("orphan", "Running", "n", None, 0, 1), relabeled, others];
        let p = plan(&owner, &pods, now).unwrap();
        assert_eq!(names(&p.adopt), ["orphan"]);
        assert_eq!(names(&p.release), ["relabeled"]);
        assert_eq!(p.counts.replicas, 1);
        assert_eq!(p.create, 1);
    }

    #[test]
    fn plan_of_a_deleting_replicaset_neither_creates_nor_adopts() {
        let mut owner = rs(3);
        let now = Timestamp::from_second(1000).unwrap();
        owner.metadata.deletion_timestamp = Some(Time(now));
        let pods = vec![pod("orphan", "Running", "n", None, 0, 1)];
        let p = plan(&owner, &pods, now).unwrap();
        assert_eq!((p.create, p.adopt.len()), (0, 0));
    }

    #[test]
    fn min_ready_seconds_delays_availability_and_asks_for_a_recheck() {
        let mut owner = rs(1);
        owner.spec.min_ready_seconds = Some(30);
        let now = Timestamp::from_second(1000).unwrap();
        let pods = vec![owned(pod("a", "Running", "n", Some(990), 0, 1), &owner)];
        let p = plan(&owner, &pods, now).unwrap();
        assert_eq!((p.counts.ready, p.counts.available, p.recheck_after), (1, 0, Some(20)));
    }

    #[test]
    fn status_reports_counts_generation_and_failures() {
        let owner = rs(3);
        let now = Timestamp::from_second(1000).unwrap();
        let counts = Counts { replicas: 2, fully_labeled: 2, ready: 1, available: 1 };
        let failed = next_status(&owner, counts, Some(("FailedCreate", "quota")), now);
        assert_eq!((failed.replicas, failed.ready_replicas, failed.observed_generation), (2, Some(1), Some(3)));
        let cond = &failed.conditions.as_ref().unwrap()[0];
        assert_eq!((cond.type_.as_deref(), cond.reason.as_deref()), (Some(REPLICA_FAILURE), Some("FailedCreate")));
        let mut later = owner.clone();
        later.status = Some(failed.clone());
        let again =
            next_status(&later, counts, Some(("FailedCreate", "quota, another pod")), Timestamp::from_second(2000).unwrap());
        assert_eq!(again, failed, "the same failure leaves the status as it was");
        assert_eq!(next_status(&later, counts, None, now).conditions, None, "a good sync clears the failure");
    }

    #[test]
    fn pods_from_the_template_are_owned_and_named_after_the_replicaset() {
        let owner = rs(1);
        let p = pod_from_template(&owner);
        assert_eq!(p.metadata.generate_name.as_deref(), Some("web-1-"));
        let r = controller_ref(&p.metadata).unwrap();
        assert_eq!((r.uid.as_str(), r.kind.as_str(), r.block_owner_deletion), ("rs-uid", "ReplicaSet", Some(true)));
        assert_eq!(p.metadata.labels.unwrap().get("tier").map(String::as_str), Some("front"));
    }
}
