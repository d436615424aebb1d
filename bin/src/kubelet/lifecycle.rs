//! The pod lifecycle as a pure state machine: given a pod (spec, metadata, last status), what
//! the runtime observed of its containers and the clock, decide what to start and kill, the
//! pod's next status, whether the pod can now be removed from the apiserver, and when to look
//! again. No I/O: the driver (`sync.rs`) applies the decision.
//!
//! Phases (kubelet's `getPhase`):
//!
//! ```text
//!   Pending ──init containers done, app containers started──▶ Running
//!   Pending ──an init container failed, restartPolicy Never──▶ Failed
//!   Running ──all app containers exited──▶ Succeeded (all exit 0) │ Failed (Never, some ≠ 0)
//!                                          │ stays Running while a restart is due (Always, OnFailure)
//!   any     ──deletionTimestamp──▶ containers killed (SIGTERM, SIGKILL after the grace period),
//!                                  then terminal by exit codes, then the pod is deleted
//! ```
//!
//! A terminal phase (Succeeded, Failed) is final: nothing is started again.
//!
//! Restarts: a container that exited restarts when the policy says so (Always: always;
//! OnFailure: exit code ≠ 0; Never: never), after a back-off counted from when it exited:
//! 10 s before the first restart, doubling per restart, at most 5 minutes. While it waits its
//! state is `waiting: CrashLoopBackOff` with the exit in `lastState`. (The real kubelet also
//! forgets the back-off after 10 minutes of running; this one does not.)
//!
//! Init containers run one at a time, in order, each to exit 0, before any app container
//! starts; a failed one is restarted (back-off as above) unless the policy is Never, which
//! fails the pod. Sidecar init containers (`restartPolicy: Always` on an init container) are
//! not supported: they are run like the others and block the pod until they exit.
//!
//! Every timestamp in the status is whole seconds (the API's resolution), and times that did
//! not change are copied from the last status, so the same inputs give the same status and
//! the driver writes only real changes.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, HostIP, Pod,
    PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::launch::launch;
use super::runtime::{Exit, Launch, Observed, RunState};

/// Wait before the first restart of a container.
pub const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
/// Longest wait before a restart.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Grace period when neither the deletion nor the spec names one (the API's default).
const DEFAULT_GRACE_SECONDS: i64 = 30;

/// Something the driver must ask the runtime to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start a new instance of a container.
    Start {
        /// Container name.
        container: String,
        /// `restartCount` the new instance will have.
        restart_count: i32,
        /// What to run.
        launch: Launch,
    },
    /// Stop a running container: SIGTERM now, SIGKILL after `grace`.
    Kill {
        /// Container name.
        container: String,
        /// The grace period.
        grace: Duration,
    },
}

/// The state machine's answer for one pod.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Runtime actions, in order.
    pub actions: Vec<Action>,
    /// The pod's status after this step (write it if it differs from the last one).
    pub status: PodStatus,
    /// The pod is being deleted and nothing of it runs: delete it with gracePeriodSeconds=0.
    pub delete_pod: bool,
    /// Look again after this long at the latest (a back-off ends).
    pub requeue_after: Option<Duration>,
}

/// How long a container waits before restart number `restart_count + 1`.
pub fn backoff_delay(restart_count: i32) -> Duration {
    let doublings = restart_count.clamp(0, 16) as u32;
    BACKOFF_INITIAL.saturating_mul(1 << doublings).min(BACKOFF_MAX)
}

/// Whether a container that exited with `exit_code` is restarted under `policy`.
pub fn should_restart(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

/// The API's time resolution: whole seconds.
fn secs(t: Timestamp) -> Time {
    Time(Timestamp::from_second(t.as_second()).unwrap_or(t))
}

fn is_terminal(phase: Option<&str>) -> bool {
    matches!(phase, Some("Succeeded" | "Failed"))
}

/// One container's status line, built up by the step below.
struct Line {
    status: ContainerStatus,
    /// Counts as stopped in the phase: exited, or waiting to restart after an exit.
    stopped: bool,
    /// Stopped with exit code 0.
    succeeded: bool,
}

/// Shared inputs of the per-container steps.
struct Step<'a> {
    pod: &'a Pod,
    policy: &'a str,
    may_start: bool,
    host_ip: &'a str,
    now: Timestamp,
    old: &'a [ContainerStatus],
    observed: &'a HashMap<String, Observed>,
    actions: Vec<Action>,
    requeue_after: Option<Duration>,
}

impl Step<'_> {
    /// The runtime's view of a container or, when it has none but the last status says the
    /// container ran (state lost with a kubelet's data), an exit of unknown cause, as the real
    /// kubelet reports it. Its times come from the last status so the result is stable.
    fn observation(&self, name: &str) -> Option<Observed> {
        if let Some(o) = self.observed.get(name) {
            return Some(o.clone());
        }
        let old = self.old.iter().find(|s| s.name == name)?;
        let state = old.state.as_ref()?;
        let recorded = |t: &ContainerStateTerminated| Exit {
            exit_code: t.exit_code,
            reason: t.reason.clone().unwrap_or_else(|| Exit::reason_for(t.exit_code).to_string()),
            message: t.message.clone(),
            started_at: t.started_at.as_ref().map(|t| t.0),
            finished_at: t.finished_at.as_ref().map(|t| t.0).unwrap_or(self.now),
            container_id: t.container_id.clone(),
        };
        let exit = if let Some(t) = &state.terminated {
            recorded(t)
        } else if let Some(r) = &state.running {
            let started = r.started_at.as_ref().map(|t| t.0);
            Exit {
                exit_code: 137,
                reason: "ContainerStatusUnknown".into(),
                message: Some("The container could not be located when the pod was terminated".into()),
                started_at: started,
                finished_at: started.unwrap_or(self.now),
                container_id: old.container_id.clone(),
            }
        } else {
            // Waiting: a restart was pending; what ended before is in lastState.
            recorded(old.last_state.as_ref()?.terminated.as_ref()?)
        };
        Some(Observed {
            restart_count: old.restart_count,
            container_id: exit.container_id.clone(),
            state: RunState::Exited(exit),
            previous: None,
        })
    }

    /// Starts `c` if allowed: its status is then `waiting: ContainerCreating`, or
    /// `CreateContainerConfigError` when its spec cannot run here.
    fn start(&mut self, c: &Container, restart_count: i32) -> ContainerState {
        if !self.may_start {
            return waiting("ContainerCreating", None);
        }
        match launch(self.pod, c, self.host_ip, self.host_ip) {
            Ok(launch) => {
                self.actions.push(Action::Start { container: c.name.clone(), restart_count, launch });
                waiting("ContainerCreating", None)
            }
            Err(message) => waiting("CreateContainerConfigError", Some(message)),
        }
    }

    /// The status line of `c`, starting or restarting it when due. `init` containers restart
    /// on failure only (restartPolicy Always means OnFailure for them).
    fn container(&mut self, c: &Container, init: bool) -> Line {
        let policy = if init && self.policy == "Always" { "OnFailure" } else { self.policy };
        let o = self.observation(&c.name);
        let image = c.image.clone().unwrap_or_default();
        let mut status = ContainerStatus {
            name: c.name.clone(),
            image_id: format!("process://{image}"),
            image,
            restart_count: o.as_ref().map_or(0, |o| o.restart_count),
            container_id: o.as_ref().and_then(|o| o.container_id.clone()),
            ready: false,
            started: Some(false),
            ..Default::default()
        };
        let mut line = Line { status: ContainerStatus::default(), stopped: false, succeeded: false };
        match o {
            None => {
                status.state = Some(self.start(c, 0));
            }
            Some(o) => match &o.state {
                RunState::Running { started_at } => {
                    status.state = Some(ContainerState {
                        running: Some(ContainerStateRunning { started_at: Some(secs(*started_at)) }),
                        ..Default::default()
                    });
                    status.last_state = o.previous.as_ref().map(terminated);
                    status.ready = !init;
                    status.started = Some(true);
                }
                RunState::Exited(exit) if self.may_start && should_restart(policy, exit.exit_code) => {
                    line.stopped = true;
                    line.succeeded = exit.exit_code == 0;
                    status.last_state = Some(terminated(exit));
                    let delay = backoff_delay(o.restart_count);
                    let due = exit.finished_at + delay;
                    status.state = Some(if self.now >= due {
                        self.start(c, o.restart_count + 1)
                    } else {
                        let left = Duration::from_secs(due.as_second().saturating_sub(self.now.as_second()).max(1) as u64);
                        self.requeue_after = Some(self.requeue_after.map_or(left, |r| r.min(left)));
                        let pod = self.pod.metadata.name.as_deref().unwrap_or("");
                        let ns = self.pod.metadata.namespace.as_deref().unwrap_or("");
                        let uid = self.pod.metadata.uid.as_deref().unwrap_or("");
                        let message = format!("back-off {}s restarting failed container={} pod={pod}_{ns}({uid})", delay.as_secs(), c.name);
                        waiting("CrashLoopBackOff", Some(message))
                    });
                }
                RunState::Exited(exit) => {
                    line.stopped = true;
                    line.succeeded = exit.exit_code == 0;
                    status.state = Some(terminated(exit));
                    status.last_state = o.previous.as_ref().map(terminated);
                }
            },
        }
        line.status = status;
        line
    }
}

fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState { waiting: Some(ContainerStateWaiting { reason: Some(reason.into()), message }), ..Default::default() }
}

fn terminated(exit: &Exit) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: exit.exit_code,
            reason: Some(exit.reason.clone()),
            message: exit.message.clone(),
            started_at: exit.started_at.map(secs),
            finished_at: Some(secs(exit.finished_at)),
            container_id: exit.container_id.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn placeholder(c: &Container, reason: &str) -> ContainerStatus {
    let image = c.image.clone().unwrap_or_default();
    ContainerStatus {
        name: c.name.clone(),
        image_id: format!("process://{image}"),
        image,
        started: Some(false),
        state: Some(waiting(reason, None)),
        ..Default::default()
    }
}

/// Sets condition `kind`, keeping its lastTransitionTime when its status did not change and
/// its place in the list.
fn set_condition(conditions: &mut Vec<PodCondition>, kind: &str, ok: bool, reason: Option<&str>, message: Option<String>, now: Timestamp) {
    let status = if ok { "True" } else { "False" };
    let new = |since: Option<Time>| PodCondition {
        type_: kind.into(),
        status: status.into(),
        reason: reason.map(Into::into),
        message: message.clone(),
        last_transition_time: since.or(Some(secs(now))),
        ..Default::default()
    };
    match conditions.iter_mut().find(|c| c.type_ == kind) {
        Some(c) => {
            let since = (c.status == status).then(|| c.last_transition_time.clone()).flatten();
            *c = PodCondition { last_probe_time: c.last_probe_time.clone(), ..new(since) };
        }
        None => conditions.push(new(None)),
    }
}

/// One step of the state machine for `pod` (see the module doc). `host_ip` is the node's
/// address, which is also every pod's (the process runtime shares the host's network).
pub fn decide(pod: &Pod, observed: &HashMap<String, Observed>, host_ip: &str, now: Timestamp) -> Decision {
    let old = pod.status.clone().unwrap_or_default();
    let Some(spec) = &pod.spec else {
        return Decision { actions: vec![], status: old, delete_pod: false, requeue_after: None };
    };
    let deleting = pod.metadata.deletion_timestamp.is_some();
    let was_terminal = is_terminal(old.phase.as_deref());
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let old_app = old.container_statuses.clone().unwrap_or_default();
    let old_init = old.init_container_statuses.clone().unwrap_or_default();
    let mut step = Step {
        pod,
        policy,
        may_start: !deleting && !was_terminal,
        host_ip,
        now,
        old: &old_init,
        observed,
        actions: vec![],
        requeue_after: None,
    };

    // Init containers: in order; the first one not yet done is the only one that may run.
    let init_specs = spec.init_containers.clone().unwrap_or_default();
    let mut init_statuses = Vec::new();
    let mut initialized = true;
    let mut init_failed = false;
    let mut unfinished_init = Vec::new();
    for c in &init_specs {
        if !initialized {
            init_statuses.push(placeholder(c, "PodInitializing"));
            unfinished_init.push(c.name.clone());
            continue;
        }
        let line = step.container(c, true);
        let done = line.stopped && line.succeeded && line.status.state.as_ref().is_some_and(|s| s.terminated.is_some());
        if !done {
            initialized = false;
            unfinished_init.push(c.name.clone());
            let failed = line.status.state.as_ref().and_then(|s| s.terminated.as_ref()).is_some_and(|t| t.exit_code != 0);
            init_failed |= failed;
        }
        init_statuses.push(line.status);
    }

    // App containers: all at once, once initialized.
    step.old = &old_app;
    let mut app_statuses = Vec::new();
    let (mut waiting_count, mut running, mut stopped, mut succeeded) = (0, 0, 0, 0);
    let mut unready = Vec::new();
    for c in &spec.containers {
        let line = if initialized || step.observation(&c.name).is_some() {
            // An app container seen running before an init container failed (kubelet restart,
            // lost data) is reported as it is, not started again.
            let may_start = step.may_start;
            step.may_start &= initialized;
            let line = step.container(c, false);
            step.may_start = may_start;
            line
        } else {
            Line { status: placeholder(c, "PodInitializing"), stopped: false, succeeded: false }
        };
        if line.stopped {
            stopped += 1;
            succeeded += usize::from(line.succeeded);
        } else if line.status.state.as_ref().is_some_and(|s| s.running.is_some()) {
            running += 1;
        } else {
            waiting_count += 1;
        }
        if !line.status.ready {
            unready.push(c.name.clone());
        }
        app_statuses.push(line.status);
    }
    let mut actions = step.actions;
    let mut requeue_after = step.requeue_after;

    // Deletion: stop whatever runs; once nothing does, the pod can go.
    let mut delete_pod = false;
    if deleting {
        let grace =
            pod.metadata.deletion_grace_period_seconds.or(spec.termination_grace_period_seconds).unwrap_or(DEFAULT_GRACE_SECONDS).max(0);
        let mut any_running = false;
        for c in init_specs.iter().chain(&spec.containers) {
            if observed.get(&c.name).is_some_and(Observed::is_running) {
                any_running = true;
                actions.push(Action::Kill { container: c.name.clone(), grace: Duration::from_secs(grace as u64) });
            }
        }
        delete_pod = !any_running;
        requeue_after = None;
    }

    let all_stopped = stopped == spec.containers.len();
    let phase = if was_terminal {
        old.phase.clone().unwrap_or_default()
    } else if init_failed && policy == "Never" {
        "Failed".into()
    } else if !initialized || waiting_count > 0 {
        // Not started (yet): a deletion ends it as Failed.
        if deleting && delete_pod {
            "Failed".into()
        } else {
            "Pending".into()
        }
    } else if running > 0 {
        "Running".into()
    } else if all_stopped {
        // Nothing more will run when the policy forbids restarts or the pod is going away.
        let final_ = deleting || policy == "Never" || (policy == "OnFailure" && succeeded == stopped);
        match (final_, succeeded == stopped) {
            (true, true) => "Succeeded".into(),
            (true, false) => "Failed".into(),
            (false, _) => "Running".into(),
        }
    } else {
        "Pending".into()
    };
    let terminal = is_terminal(Some(&phase));

    let mut status = old.clone();
    let mut conditions = old.conditions.clone().unwrap_or_default();
    if !conditions.iter().any(|c| c.type_ == "PodScheduled") {
        set_condition(&mut conditions, "PodScheduled", true, None, None, now);
    }
    let init_message = (!initialized).then(|| format!("containers with incomplete status: [{}]", unfinished_init.join(" ")));
    set_condition(&mut conditions, "Initialized", initialized, (!initialized).then_some("ContainersNotInitialized"), init_message, now);
    let ready = unready.is_empty() && !terminal;
    let (reason, message) = if ready {
        (None, None)
    } else if terminal {
        (Some("PodCompleted"), None)
    } else {
        (Some("ContainersNotReady"), Some(format!("containers with unready status: [{}]", unready.join(" "))))
    };
    set_condition(&mut conditions, "Ready", ready, reason, message.clone(), now);
    set_condition(&mut conditions, "ContainersReady", ready, reason, message, now);
    status.conditions = Some(conditions);
    status.phase = Some(phase);
    status.host_ip = Some(host_ip.into());
    status.host_ips = Some(vec![HostIP { ip: host_ip.into() }]);
    status.pod_ip = Some(host_ip.into());
    status.pod_ips = Some(vec![PodIP { ip: host_ip.into() }]);
    status.start_time = old.start_time.clone().or(Some(secs(now)));
    status.container_statuses = Some(app_statuses);
    status.init_container_statuses = (!init_statuses.is_empty()).then_some(init_statuses);
    if terminal {
        actions.retain(|a| matches!(a, Action::Kill { .. }));
        requeue_after = None;
    }
    Decision { actions, status, delete_pod, requeue_after }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    const IP: &str = "127.0.0.1";

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn container(name: &str) -> Container {
        Container {
            name: name.into(),
            image: Some("busybox".into()),
            command: Some(vec!["sh".into(), "-c".into(), "true".into()]),
            ..Default::default()
        }
    }

    fn pod(policy: &str, containers: &[&str]) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some("p".into());
        p.metadata.namespace = Some("default".into());
        p.metadata.uid = Some("uid-1".into());
        p.spec = Some(PodSpec {
            containers: containers.iter().map(|n| container(n)).collect(),
            restart_policy: Some(policy.into()),
            node_name: Some("node".into()),
            termination_grace_period_seconds: Some(30),
            ..Default::default()
        });
        p.status = Some(PodStatus { phase: Some("Pending".into()), ..Default::default() });
        p
    }

    fn with_init(mut p: Pod, inits: &[&str]) -> Pod {
        p.spec.as_mut().unwrap().init_containers = Some(inits.iter().map(|n| container(n)).collect());
        p
    }

    fn running(restarts: i32, since: i64) -> Observed {
        Observed {
            restart_count: restarts,
            container_id: Some("process://42".into()),
            state: RunState::Running { started_at: t(since) },
            previous: None,
        }
    }

    fn exited(restarts: i32, code: i32, at: i64) -> Observed {
        Observed {
            restart_count: restarts,
            container_id: Some("process://42".into()),
            state: RunState::Exited(Exit {
                exit_code: code,
                reason: Exit::reason_for(code).into(),
                message: None,
                started_at: Some(t(at - 1)),
                finished_at: t(at),
                container_id: Some("process://42".into()),
            }),
            previous: None,
        }
    }

    fn obs(items: &[(&str, Observed)]) -> HashMap<String, Observed> {
        items.iter().map(|(n, o)| (n.to_string(), o.clone())).collect()
    }

    fn starts(d: &Decision) -> Vec<(String, i32)> {
        d.actions
            .iter()
            .filter_map(|a| match a {
                Action::Start { container, restart_count, .. } => Some((container.clone(), *restart_count)),
                _ => None,
            })
            .collect()
    }

    fn cs<'a>(d: &'a Decision, name: &str) -> &'a ContainerStatus {
        d.status.container_statuses.as_ref().unwrap().iter().find(|c| c.name == name).unwrap()
    }

    fn condition(d: &Decision, kind: &str) -> String {
        d.status.conditions.as_ref().unwrap().iter().find(|c| c.type_ == kind).unwrap().status.clone()
    }

    /// Feeds the decision's status back into the pod, as the apiserver would after the write.
    fn written(mut p: Pod, d: &Decision) -> Pod {
        p.status = Some(d.status.clone());
        p
    }

    #[test]
    fn a_new_pod_starts_its_containers_then_runs() {
        let p = pod("Always", &["a", "b"]);
        let d = decide(&p, &HashMap::new(), IP, t(0));
        assert_eq!(starts(&d), [("a".to_string(), 0), ("b".to_string(), 0)]);
        assert_eq!(d.status.phase.as_deref(), Some("Pending"));
        assert_eq!(cs(&d, "a").state.as_ref().unwrap().waiting.as_ref().unwrap().reason.as_deref(), Some("ContainerCreating"));
        assert_eq!(condition(&d, "PodScheduled"), "True");
        assert_eq!(condition(&d, "Initialized"), "True");
        assert_eq!(condition(&d, "Ready"), "False");
        assert_eq!(d.status.pod_ip.as_deref(), Some(IP));
        assert_eq!(d.status.start_time, Some(secs(t(0))));
        assert_eq!(cs(&d, "a").image_id, "process://busybox");

        let p = written(p, &d);
        let d = decide(&p, &obs(&[("a", running(0, 0)), ("b", running(0, 0))]), IP, t(1));
        assert!(d.actions.is_empty(), "{:?}", d.actions);
        assert_eq!(d.status.phase.as_deref(), Some("Running"));
        assert_eq!(condition(&d, "Ready"), "True");
        assert_eq!(condition(&d, "ContainersReady"), "True");
        assert!(cs(&d, "a").ready);
        assert_eq!(cs(&d, "a").container_id.as_deref(), Some("process://42"));
        assert_eq!(d.status.start_time, Some(secs(t(0))), "startTime is set once");
    }

    #[test]
    fn the_same_inputs_give_the_same_status_so_nothing_is_rewritten() {
        let p = pod("Always", &["a"]);
        let o = obs(&[("a", running(0, 0))]);
        let d1 = decide(&p, &o, IP, t(5));
        let p = written(p, &d1);
        let d2 = decide(&p, &o, IP, t(65));
        assert_eq!(Some(&d2.status), p.status.as_ref(), "a later clock alone changes nothing");
        let ready = d2.status.conditions.as_ref().unwrap().iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.last_transition_time, Some(secs(t(5))));
    }

    #[test]
    fn never_ends_failed_with_the_exit_code_or_succeeded() {
        let p = pod("Never", &["a"]);
        let d = decide(&p, &obs(&[("a", exited(0, 3, 10))]), IP, t(11));
        assert!(d.actions.is_empty());
        assert_eq!(d.status.phase.as_deref(), Some("Failed"));
        let term = cs(&d, "a").state.as_ref().unwrap().terminated.clone().unwrap();
        assert_eq!((term.exit_code, term.reason.as_deref()), (3, Some("Error")));
        assert_eq!(term.finished_at, Some(secs(t(10))));
        assert_eq!(condition(&d, "Ready"), "False");

        let d = decide(&p, &obs(&[("a", exited(0, 0, 10))]), IP, t(11));
        assert_eq!(d.status.phase.as_deref(), Some("Succeeded"));
        let term = cs(&d, "a").state.as_ref().unwrap().terminated.clone().unwrap();
        assert_eq!(term.reason.as_deref(), Some("Completed"));
    }

    #[test]
    fn never_with_one_container_still_running_is_running() {
        let p = pod("Never", &["a", "b"]);
        let d = decide(&p, &obs(&[("a", exited(0, 1, 10)), ("b", running(0, 0))]), IP, t(11));
        assert_eq!(d.status.phase.as_deref(), Some("Running"));
        assert_eq!(condition(&d, "Ready"), "False");
    }

    #[test]
    fn on_failure_restarts_failures_after_back_off_and_completes_on_success() {
        let p = pod("OnFailure", &["a"]);
        // Exited at t=10 with 3: the first restart waits 10 s.
        let d = decide(&p, &obs(&[("a", exited(0, 3, 10))]), IP, t(15));
        assert!(starts(&d).is_empty());
        assert_eq!(d.requeue_after, Some(Duration::from_secs(5)));
        assert_eq!(d.status.phase.as_deref(), Some("Running"));
        let s = cs(&d, "a");
        let w = s.state.as_ref().unwrap().waiting.as_ref().unwrap();
        assert_eq!(w.reason.as_deref(), Some("CrashLoopBackOff"));
        assert!(w.message.as_deref().unwrap().contains("back-off 10s restarting failed container=a pod=p_default(uid-1)"));
        assert_eq!(s.last_state.as_ref().unwrap().terminated.as_ref().unwrap().exit_code, 3);

        let d = decide(&p, &obs(&[("a", exited(0, 3, 10))]), IP, t(20));
        assert_eq!(starts(&d), [("a".to_string(), 1)]);

        let d = decide(&p, &obs(&[("a", exited(1, 0, 30))]), IP, t(31));
        assert!(d.actions.is_empty(), "success is not restarted under OnFailure");
        assert_eq!(d.status.phase.as_deref(), Some("Succeeded"));
    }

    #[test]
    fn always_restarts_even_success_with_doubling_back_off() {
        let p = pod("Always", &["a"]);
        let d = decide(&p, &obs(&[("a", exited(0, 0, 10))]), IP, t(19));
        assert!(starts(&d).is_empty());
        assert_eq!(d.status.phase.as_deref(), Some("Running"));
        let d = decide(&p, &obs(&[("a", exited(0, 0, 10))]), IP, t(20));
        assert_eq!(starts(&d), [("a".to_string(), 1)]);
        // Third restart: 40 s after the exit.
        let d = decide(&p, &obs(&[("a", exited(2, 1, 100))]), IP, t(139));
        assert!(starts(&d).is_empty());
        assert_eq!(d.requeue_after, Some(Duration::from_secs(1)));
        let d = decide(&p, &obs(&[("a", exited(2, 1, 100))]), IP, t(140));
        assert_eq!(starts(&d), [("a".to_string(), 3)]);
    }

    #[test]
    fn back_off_doubles_from_ten_seconds_and_caps_at_five_minutes() {
        let secs: Vec<u64> = (0..8).map(|n| backoff_delay(n).as_secs()).collect();
        assert_eq!(secs, [10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(backoff_delay(1000), BACKOFF_MAX);
        assert_eq!(backoff_delay(-1), BACKOFF_INITIAL);
    }

    #[test]
    fn deletion_kills_with_the_grace_period_then_deletes() {
        let mut p = pod("Always", &["a", "b"]);
        p.metadata.deletion_timestamp = Some(secs(t(100)));
        p.metadata.deletion_grace_period_seconds = Some(7);
        let d = decide(&p, &obs(&[("a", running(0, 0)), ("b", exited(0, 0, 5))]), IP, t(50));
        assert_eq!(d.actions, [Action::Kill { container: "a".into(), grace: Duration::from_secs(7) }]);
        assert!(!d.delete_pod);
        assert!(starts(&d).is_empty(), "nothing restarts while deleting");

        let d = decide(&p, &obs(&[("a", exited(0, 143, 51)), ("b", exited(0, 0, 5))]), IP, t(52));
        assert!(d.actions.is_empty());
        assert!(d.delete_pod);
        assert_eq!(d.status.phase.as_deref(), Some("Failed"), "143 is a failure; nothing restarts");
        assert_eq!(d.requeue_after, None);
    }

    #[test]
    fn deleting_a_pod_that_never_started_deletes_at_once() {
        let mut p = pod("Always", &["a"]);
        p.metadata.deletion_timestamp = Some(secs(t(100)));
        let d = decide(&p, &HashMap::new(), IP, t(50));
        assert!(d.actions.is_empty());
        assert!(d.delete_pod);
    }

    #[test]
    fn a_terminal_phase_is_final() {
        let p = pod("Never", &["a"]);
        let d = decide(&p, &obs(&[("a", exited(0, 3, 10))]), IP, t(11));
        let p = written(p, &d);
        // Even if the runtime forgot everything, nothing starts again.
        let d = decide(&p, &HashMap::new(), IP, t(500));
        assert!(d.actions.is_empty());
        assert_eq!(d.status.phase.as_deref(), Some("Failed"));
        assert_eq!(cs(&d, "a").state.as_ref().unwrap().terminated.as_ref().unwrap().exit_code, 3);
        assert_eq!(Some(&d.status), p.status.as_ref(), "and the status stays as it was");
    }

    #[test]
    fn a_container_the_runtime_lost_is_an_unknown_exit_not_a_silent_rerun() {
        let p = pod("Never", &["a"]);
        let d = decide(&p, &obs(&[("a", running(0, 3))]), IP, t(4));
        let p = written(p, &d);
        let d = decide(&p, &HashMap::new(), IP, t(50));
        assert!(d.actions.is_empty());
        assert_eq!(d.status.phase.as_deref(), Some("Failed"));
        let term = cs(&d, "a").state.as_ref().unwrap().terminated.clone().unwrap();
        assert_eq!((term.exit_code, term.reason.as_deref()), (137, Some("ContainerStatusUnknown")));
        // Under Always it restarts, counting on from the old restartCount.
        let mut p2 = pod("Always", &["a"]);
        p2.status = p.status.clone();
        p2.status.as_mut().unwrap().container_statuses.as_mut().unwrap()[0].restart_count = 4;
        let d = decide(&p2, &HashMap::new(), IP, t(3 + 160));
        assert_eq!(starts(&d), [("a".to_string(), 5)]);
    }

    #[test]
    fn a_container_without_command_waits_with_a_config_error() {
        let mut p = pod("Always", &["a"]);
        p.spec.as_mut().unwrap().containers[0].command = None;
        p.spec.as_mut().unwrap().containers[0].args = Some(vec!["serve".into()]);
        let d = decide(&p, &HashMap::new(), IP, t(0));
        assert!(d.actions.is_empty());
        assert_eq!(d.status.phase.as_deref(), Some("Pending"));
        let w = cs(&d, "a").state.as_ref().unwrap().waiting.clone().unwrap();
        assert_eq!(w.reason.as_deref(), Some("CreateContainerConfigError"));
        assert!(w.message.unwrap().contains("no image entrypoint"));
    }

    #[test]
    fn init_containers_run_one_by_one_before_the_app() {
        let p = with_init(pod("Always", &["app"]), &["i1", "i2"]);
        let d = decide(&p, &HashMap::new(), IP, t(0));
        assert_eq!(starts(&d), [("i1".to_string(), 0)]);
        assert_eq!(d.status.phase.as_deref(), Some("Pending"));
        assert_eq!(condition(&d, "Initialized"), "False");
        let app = cs(&d, "app").state.as_ref().unwrap().waiting.clone().unwrap();
        assert_eq!(app.reason.as_deref(), Some("PodInitializing"));

        let d = decide(&p, &obs(&[("i1", running(0, 0))]), IP, t(1));
        assert!(d.actions.is_empty());
        let d = decide(&p, &obs(&[("i1", exited(0, 0, 2))]), IP, t(2));
        assert_eq!(starts(&d), [("i2".to_string(), 0)]);
        let d = decide(&p, &obs(&[("i1", exited(0, 0, 2)), ("i2", exited(0, 0, 3))]), IP, t(3));
        assert_eq!(starts(&d), [("app".to_string(), 0)]);
        assert_eq!(condition(&d, "Initialized"), "True");
        let inits = d.status.init_container_statuses.as_ref().unwrap();
        assert_eq!(inits.len(), 2);
        assert!(inits.iter().all(|s| s.state.as_ref().unwrap().terminated.as_ref().unwrap().reason.as_deref() == Some("Completed")));
    }

    #[test]
    fn a_failed_init_container_fails_a_never_pod_and_is_retried_otherwise() {
        let p = with_init(pod("Never", &["app"]), &["i1"]);
        let d = decide(&p, &obs(&[("i1", exited(0, 2, 5))]), IP, t(6));
        assert!(d.actions.is_empty());
        assert_eq!(d.status.phase.as_deref(), Some("Failed"));

        let p = with_init(pod("Always", &["app"]), &["i1"]);
        let d = decide(&p, &obs(&[("i1", exited(0, 2, 5))]), IP, t(6));
        assert!(d.actions.is_empty(), "back-off first");
        assert_eq!(d.status.phase.as_deref(), Some("Pending"));
        let d = decide(&p, &obs(&[("i1", exited(0, 2, 5))]), IP, t(15));
        assert_eq!(starts(&d), [("i1".to_string(), 1)]);
    }

    #[test]
    fn a_pod_without_spec_is_left_alone() {
        let mut p = pod("Always", &["a"]);
        p.spec = None;
        let d = decide(&p, &HashMap::new(), IP, t(0));
        assert!(d.actions.is_empty() && !d.delete_pod);
        assert_eq!(Some(&d.status), p.status.as_ref());
    }
}
