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

/// Hands a decision's actions to the runtime, in order.
pub fn apply_actions(runtime: &dyn Runtime, key: &PodKey, actions: &[Action]) {
    for action in actions {
        match action {
            Action::Start { container, restart_count, launch } => runtime.start(key, container, *restart_count, launch),
            Action::Kill { container, grace } => runtime.kill(&key.uid, container, *grace),
        }
    }
}

/// One step for one pod.
pub async fn reconcile(pod: Arc<Pod>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let Some(key) = pod_key(&pod) else { return Ok(Requeue::await_change()) };
    if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(ctx.node_name.as_str()) {
        return Ok(Requeue::await_change());
    }
    let observed = ctx.runtime.observe(&key.uid);
    let decision = decide(&pod, &observed, NODE_IP, Timestamp::now());
    apply_actions(ctx.runtime.as_ref(), &key, &decision.actions);
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
    use crate::kubelet::runtime::{Exit, Launch, Observed, RunState};
    use futures::future::BoxFuture;
    use futures::FutureExt;
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// A runtime on a simulated clock: an instance runs `RUN_FOR`, then exits with the next
    /// scripted code; a kill ends it at once with 143.
    struct FakeRuntime {
        now: Mutex<Timestamp>,
        exit_codes: Mutex<Vec<i32>>,
        containers: Mutex<HashMap<String, (Observed, Option<i32>)>>,
        starts: Mutex<Vec<(String, i32, Timestamp)>>,
    }

    const RUN_FOR: i64 = 1;

    impl FakeRuntime {
        fn new(start: Timestamp, exit_codes: &[i32]) -> Self {
            FakeRuntime {
                now: Mutex::new(start),
                exit_codes: Mutex::new(exit_codes.iter().rev().copied().collect()),
                containers: Mutex::default(),
                starts: Mutex::default(),
            }
        }

        /// Moves the clock; instances whose time is up exit.
        fn advance_to(&self, now: Timestamp) {
            *self.now.lock().unwrap() = now;
            for (o, code) in self.containers.lock().unwrap().values_mut() {
                if let (RunState::Running { started_at }, Some(code)) = (&o.state, *code) {
                    if now.as_second() - started_at.as_second() >= RUN_FOR {
                        let finished = Timestamp::from_second(started_at.as_second() + RUN_FOR).unwrap();
                        o.state = RunState::Exited(exit(code, *started_at, finished));
                    }
                }
            }
        }
    }

    fn exit(code: i32, started: Timestamp, finished: Timestamp) -> Exit {
        Exit {
            exit_code: code,
            reason: Exit::reason_for(code).into(),
            message: None,
            started_at: Some(started),
            finished_at: finished,
            container_id: None,
        }
    }

    impl Runtime for FakeRuntime {
        fn version(&self) -> String {
            "fake://".into()
        }
        fn observe(&self, _pod_uid: &str) -> HashMap<String, Observed> {
            self.containers.lock().unwrap().iter().map(|(n, (o, _))| (n.clone(), o.clone())).collect()
        }
        fn pods(&self) -> Vec<PodKey> {
            vec![]
        }
        fn start(&self, _pod: &PodKey, container: &str, restart_count: i32, _launch: &Launch) {
            let now = *self.now.lock().unwrap();
            let code = self.exit_codes.lock().unwrap().pop();
            let mut containers = self.containers.lock().unwrap();
            let previous = containers.get(container).and_then(|(o, _)| match &o.state {
                RunState::Exited(e) => Some(e.clone()),
                RunState::Running { .. } => None,
            });
            let observed = Observed { restart_count, container_id: None, state: RunState::Running { started_at: now }, previous };
            containers.insert(container.into(), (observed, code));
            self.starts.lock().unwrap().push((container.into(), restart_count, now));
        }
        fn kill(&self, _pod_uid: &str, container: &str, _grace: Duration) {
            let now = *self.now.lock().unwrap();
            if let Some((o, _)) = self.containers.lock().unwrap().get_mut(container) {
                if let RunState::Running { started_at } = o.state {
                    o.state = RunState::Exited(exit(143, started_at, now));
                }
            }
        }
        fn remove_pod(&self, _pod_uid: &str) -> BoxFuture<'static, ()> {
            async {}.boxed()
        }
        fn stop_all(&self, _grace: Duration) -> BoxFuture<'static, ()> {
            async {}.boxed()
        }
    }

    fn pod(policy: &str) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some("p".into());
        p.metadata.namespace = Some("default".into());
        p.metadata.uid = Some("uid".into());
        p.spec = Some(PodSpec {
            containers: vec![Container { name: "a".into(), command: Some(vec!["run".into()]), ..Default::default() }],
            restart_policy: Some(policy.into()),
            node_name: Some("node".into()),
            ..Default::default()
        });
        p
    }

    /// Runs the state machine against the fake runtime, one simulated second per step, as the
    /// driver would (decide, apply, write the status back), until `done` or 1000 steps.
    fn simulate(p: &mut Pod, rt: &FakeRuntime, start: i64, done: impl Fn(&Pod) -> bool) -> (i64, bool) {
        let key = pod_key(p).unwrap();
        for s in start..start + 1000 {
            let now = Timestamp::from_second(1_800_000_000 + s).unwrap();
            rt.advance_to(now);
            let d = decide(p, &rt.observe(&key.uid), NODE_IP, now);
            apply_actions(rt, &key, &d.actions);
            p.status = Some(d.status);
            if d.delete_pod {
                return (s, true);
            }
            if done(p) {
                return (s, false);
            }
        }
        panic!("did not settle: {:?}", p.status);
    }

    fn phase(p: &Pod) -> &str {
        p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
    }

    #[test]
    fn on_failure_pod_crash_loops_with_growing_back_off_then_succeeds() {
        let rt = FakeRuntime::new(Timestamp::from_second(1_800_000_000).unwrap(), &[1, 1, 1, 0]);
        let mut p = pod("OnFailure");
        simulate(&mut p, &rt, 0, |p| phase(p) == "Succeeded");
        let starts = rt.starts.lock().unwrap().clone();
        let counts: Vec<i32> = starts.iter().map(|s| s.1).collect();
        assert_eq!(counts, [0, 1, 2, 3]);
        // Each instance runs 1 s; the waits after the exits are 10, 20, 40 s.
        let gaps: Vec<i64> = starts.windows(2).map(|w| w[1].2.as_second() - w[0].2.as_second()).collect();
        assert_eq!(gaps, [11, 21, 41]);
        let status = &p.status.as_ref().unwrap().container_statuses.as_ref().unwrap()[0];
        assert_eq!(status.restart_count, 3);
        assert_eq!(status.last_state.as_ref().unwrap().terminated.as_ref().unwrap().exit_code, 1);
    }

    #[test]
    fn deleting_a_running_pod_kills_then_deletes() {
        let rt = FakeRuntime::new(Timestamp::from_second(1_800_000_000).unwrap(), &[]);
        let mut p = pod("Always");
        simulate(&mut p, &rt, 0, |p| phase(p) == "Running");
        p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()));
        p.metadata.deletion_grace_period_seconds = Some(30);
        let (_, deleted) = simulate(&mut p, &rt, 10, |_| false);
        assert!(deleted);
        assert_eq!(phase(&p), "Failed", "killed by SIGTERM: 143");
        assert_eq!(rt.starts.lock().unwrap().len(), 1, "nothing restarted while deleting");
    }

    #[test]
    fn orphans_are_runtime_pods_the_apiserver_does_not_have() {
        let key = |uid: &str| PodKey { uid: uid.into(), namespace: "ns".into(), name: format!("p-{uid}") };
        let live: HashSet<String> = ["a".to_string(), "c".to_string()].into();
        assert_eq!(orphans(&[key("a"), key("b"), key("c")], &live), [key("b")]);
        assert!(orphans(&[], &live).is_empty());
    }
}
