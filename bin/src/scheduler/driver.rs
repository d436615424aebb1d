//! The async side of the scheduler: two reflectors (pods, nodes) keep a cache; any change to
//! either, or a timer, starts a scheduling pass over the pods waiting for a node. The pass
//! decides with the pure functions of `algorithm` and writes what it decided: a Binding, or
//! the PodScheduled=False condition and a FailedScheduling event, plus events for bindings.
//!
//! No hot loops: a pass only writes when something changed (a pod bound, a new message for
//! an unschedulable pod), bursts of watch events are coalesced into one pass, unschedulable
//! pods are retried on the next change or every [`RETRY`], and a pod whose API call failed
//! waits an exponential backoff (1 s up to 30 s).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    Binding, Event, EventSource, Node, ObjectReference, Pod, PodCondition, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use tokio::time::Instant;

use super::algorithm::{self, SCHEDULER_NAME};
use super::cache::{self, Assumed};
use super::resources;
use super::Error;

/// How long watch events are collected before a pass, so a burst makes one pass.
const COALESCE: Duration = Duration::from_millis(50);
/// Unschedulable pods are tried again at least this often, even if nothing seems to change.
pub const RETRY: Duration = Duration::from_secs(30);
/// The bound on one API call.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Backoff after a failed API call for a pod: doubling from the first to the last.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// How long a pod waits after its `failures`-th failed API call in a row: doubling from 1 s
/// to 30 s; a conflict (already bound, being deleted) waits the longest at once, since the
/// watch will show what happened and the pod then leaves the queue by itself.
pub fn retry_after(failures: u32, conflict: bool) -> Duration {
    if conflict {
        return BACKOFF_MAX;
    }
    BACKOFF_FIRST
        .saturating_mul(1 << (failures.clamp(1, 6) - 1))
        .min(BACKOFF_MAX)
}

/// What a watch event means to the loop.
enum Signal {
    /// The initial list of this kind is in the cache.
    Synced(Kind),
    /// Something changed.
    Changed,
    /// The watch failed (it retries by itself, with backoff).
    Failed,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pods,
    Nodes,
}

fn signal<K>(kind: Kind, event: Result<watcher::Event<K>, watcher::Error>) -> Signal {
    match event {
        Ok(watcher::Event::InitDone) => Signal::Synced(kind),
        // Init/InitApply too: passes wait for InitDone, this only brings the next one closer.
        Ok(_) => Signal::Changed,
        Err(e) => {
            let what = if kind == Kind::Pods { "pods" } else { "nodes" };
            tracing::warn!(error = %e, "scheduler: watching {what} failed; retrying");
            Signal::Failed
        }
    }
}

/// Awaits `fut` for at most [`CALL_TIMEOUT`].
async fn bounded<T>(
    action: &'static str,
    pod: &str,
    fut: impl Future<Output = kube::Result<T>>,
) -> Result<T, Error> {
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(Error::Api {
            action,
            pod: pod.to_string(),
            source,
        }),
        Err(_) => Err(Error::Timeout {
            action,
            pod: pod.to_string(),
            after: CALL_TIMEOUT,
        }),
    }
}

/// State kept between passes.
struct Scheduler {
    client: Client,
    assumed: Assumed,
    /// uid → (failed attempts, not before).
    backoff: HashMap<String, (u32, Instant)>,
    /// uid → the last unschedulable message written for it.
    reported: HashMap<String, String>,
}

fn key(pod: &Pod) -> String {
    format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any())
}

fn pod_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        ..Default::default()
    }
}

impl Scheduler {
    fn pods(&self, pod: &Pod) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default())
    }

    /// One pass over the pending pods; returns when the next pass is due without any change
    /// (`None`: only a change can help).
    async fn pass(&mut self, pods: Vec<Arc<Pod>>, nodes: Vec<Arc<Node>>) -> Option<Instant> {
        let now = Instant::now();
        self.assumed.settle(&pods, now.into_std());
        let mut pending: Vec<Arc<Pod>> = pods
            .iter()
            .filter(|p| algorithm::is_pending(p) && !self.assumed.contains(cache::uid(p)))
            .cloned()
            .collect();
        let waiting: std::collections::HashSet<&str> =
            pending.iter().map(|p| cache::uid(p)).collect();
        self.backoff.retain(|uid, _| waiting.contains(uid.as_str()));
        self.reported
            .retain(|uid, _| waiting.contains(uid.as_str()));
        algorithm::queue_order(&mut pending);
        let mut infos = cache::snapshot(&nodes, &pods, &self.assumed);
        let mut next: Option<Instant> = None;
        let mut due = |at: Instant| next = Some(next.map_or(at, |n| n.min(at)));
        for pod in pending {
            let uid = cache::uid(&pod).to_string();
            if let Some(&(_, until)) = self.backoff.get(&uid) {
                if until > now {
                    due(until);
                    continue;
                }
            }
            let demand = resources::demand(&pod);
            let result = match algorithm::schedule(&pod, &demand, &infos) {
                Ok(node) => match self.bind(&pod, &node).await {
                    Ok(()) => {
                        self.assumed.assume(&pod, &node, Instant::now().into_std());
                        if let Some(info) = infos.get_mut(&node) {
                            info.add(&demand);
                        }
                        let msg = format!("Successfully assigned {} to {node}", key(&pod));
                        tracing::info!(pod = %key(&pod), %node, "scheduled");
                        self.event(&pod, "Normal", "Scheduled", &msg).await;
                        Ok(())
                    }
                    Err(e) => Err(e),
                },
                Err(fit) => {
                    due(now + RETRY);
                    self.report_unschedulable(&pod, &fit.to_string()).await
                }
            };
            match result {
                Ok(()) => {
                    self.backoff.remove(&uid);
                }
                Err(e) => {
                    let entry = self.backoff.entry(uid).or_insert((0, now));
                    entry.0 += 1;
                    let wait = retry_after(entry.0, e.is_conflict());
                    entry.1 = Instant::now() + wait;
                    due(entry.1);
                    if e.is_conflict() {
                        // Bound by someone else or being deleted: the watch will show it.
                        tracing::info!(error = %e, "scheduler: pod changed under us; looking again in {wait:?}");
                    } else if e.apiserver_unreachable() {
                        tracing::warn!(error = %e, "scheduler: apiserver unreachable; next pass in {wait:?}");
                        break;
                    } else {
                        tracing::warn!(error = %e, "scheduler: retrying in {wait:?}");
                    }
                }
            }
        }
        next
    }

    /// POSTs the pod's Binding to `node`.
    async fn bind(&self, pod: &Pod, node: &str) -> Result<(), Error> {
        let binding = Binding {
            metadata: ObjectMeta {
                name: pod.metadata.name.clone(),
                namespace: pod.metadata.namespace.clone(),
                ..Default::default()
            },
            target: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(node.into()),
                ..Default::default()
            },
        };
        let (api, name, pp) = (self.pods(pod), pod.name_any(), PostParams::default());
        let call = api.create_subresource::<_, k8s_openapi::serde_json::Value>(
            "binding", &name, &pp, &binding,
        );
        bounded("binding", &key(pod), call).await.map(|_| ())
    }

    /// Sets PodScheduled=False/Unschedulable with `message` and records a FailedScheduling
    /// event, unless that is what was reported last.
    async fn report_unschedulable(&mut self, pod: &Pod, message: &str) -> Result<(), Error> {
        let uid = cache::uid(pod).to_string();
        if algorithm::already_reported(pod, message)
            || self.reported.get(&uid).is_some_and(|m| m == message)
        {
            return Ok(());
        }
        tracing::info!(pod = %key(pod), %message, "unschedulable");
        let condition = PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            reason: Some("Unschedulable".into()),
            message: Some(message.into()),
            last_transition_time: Some(Time(Timestamp::now())),
            ..Default::default()
        };
        // A strategic merge patch merges conditions by type, leaving the others alone.
        let patch = Pod {
            status: Some(PodStatus {
                conditions: Some(vec![condition]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let api = self.pods(pod);
        bounded(
            "updating the status of",
            &key(pod),
            api.patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            ),
        )
        .await?;
        self.reported.insert(uid, message.to_string());
        self.event(pod, "Warning", "FailedScheduling", message)
            .await;
        Ok(())
    }

    /// Records a core/v1 Event about the pod; a failure is logged, not retried (events are
    /// best effort, as kube's recorder).
    async fn event(&self, pod: &Pod, type_: &str, reason: &str, message: &str) {
        let now = Timestamp::now();
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!("{}.{:x}", pod.name_any(), now.as_nanosecond())),
                namespace: pod.metadata.namespace.clone(),
                ..Default::default()
            },
            involved_object: pod_ref(pod),
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some(type_.into()),
            source: Some(EventSource {
                component: Some(SCHEDULER_NAME.into()),
                host: None,
            }),
            reporting_component: Some(SCHEDULER_NAME.into()),
            reporting_instance: Some(SCHEDULER_NAME.into()),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: Some(MicroTime(now)),
            action: Some(
                if reason == "Scheduled" {
                    "Binding"
                } else {
                    "Scheduling"
                }
                .into(),
            ),
            count: Some(1),
            ..Default::default()
        };
        let api: Api<Event> =
            Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        if let Err(e) = bounded(
            "recording an event for",
            &key(pod),
            api.create(&PostParams::default(), &event),
        )
        .await
        {
            tracing::warn!(error = %e, "scheduler: event not recorded");
        }
    }
}

/// Runs the scheduler until `shutdown` resolves.
pub async fn run(client: Client, shutdown: impl Future<Output = ()> + Send + 'static) {
    let (pod_cache, pod_writer) = reflector::store::<Pod>();
    let (node_cache, node_writer) = reflector::store::<Node>();
    let pod_events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(pod_writer)
        .map(|e| signal(Kind::Pods, e));
    let node_events = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(node_writer)
        .map(|e| signal(Kind::Nodes, e));
    let events = futures::stream::select(pod_events, node_events);
    tokio::pin!(events);
    let mut scheduler = Scheduler {
        client,
        assumed: Assumed::default(),
        backoff: HashMap::new(),
        reported: HashMap::new(),
    };
    let (mut pods_synced, mut nodes_synced) = (false, false);
    let mut due: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let soon = |due: Option<Instant>| {
            Some(due.map_or(Instant::now() + COALESCE, |d| {
                d.min(Instant::now() + COALESCE)
            }))
        };
        tokio::select! {
            _ = &mut shutdown => break,
            signal = events.next() => match signal {
                None => break,
                Some(Signal::Synced(Kind::Pods)) => { pods_synced = true; due = soon(due); }
                Some(Signal::Synced(Kind::Nodes)) => { nodes_synced = true; due = soon(due); }
                Some(Signal::Changed) => due = soon(due),
                Some(Signal::Failed) => {}
            },
            _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                due = None;
                if pods_synced && nodes_synced {
                    // A pass may wait on the apiserver; shutdown does not wait for it.
                    tokio::select! {
                        _ = &mut shutdown => break,
                        next = scheduler.pass(pod_cache.state(), node_cache.state()) => due = next,
                    }
                }
            }
        }
    }
    tracing::info!("scheduler stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_calls_back_off_exponentially_up_to_a_bound_and_conflicts_wait_longest() {
        let secs: Vec<u64> = (1..=7).map(|n| retry_after(n, false).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(retry_after(0, false), BACKOFF_FIRST);
        assert_eq!(retry_after(u32::MAX, false), BACKOFF_MAX);
        assert_eq!(retry_after(1, true), BACKOFF_MAX);
    }

    #[test]
    fn only_a_409_from_the_apiserver_is_a_conflict() {
        let api = |code| Error::Api {
            action: "binding",
            pod: "ns/p".into(),
            source: kube::Error::Api(Box::new(
                kube::core::Status::failure("already assigned", "Conflict").with_code(code),
            )),
        };
        assert!(api(409).is_conflict());
        assert!(!api(500).is_conflict());
        let timeout = Error::Timeout {
            action: "binding",
            pod: "ns/p".into(),
            after: CALL_TIMEOUT,
        };
        assert!(!timeout.is_conflict());
        assert!(timeout.apiserver_unreachable());
        assert!(!api(409).apiserver_unreachable() && !api(500).apiserver_unreachable());
        assert_eq!(
            timeout.to_string(),
            "binding pod ns/p: no answer within 10s"
        );
    }
}
