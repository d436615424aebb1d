//! The garbage collector: deletes objects whose owners are gone, as kube-controller-manager's
//! does.
//!
//! It watches every kind the apiserver serves with list, watch and delete (found once through
//! discovery at start: kinds registered later are not watched) and keeps a graph of owner
//! references by uid. When an owner disappears, each dependent is looked at again:
//!
//! * every owner gone (or replaced by a new object of the same name, so another uid): the
//!   dependent is deleted, with background propagation, so its own dependents follow the same
//!   way (`kubectl delete deployment` removes the ReplicaSets, then their pods);
//! * some owners left: only the references to the gone ones are removed.
//!
//! An owner missing from the graph is looked up through the API before anything is deleted
//! (the graph may lag behind a just-created owner). Two deletion finalizers are honoured when an
//! object carries them: `orphan` (the references to it are removed from its dependents, then the
//! finalizer) and `foregroundDeletion` (its dependents are deleted first; the finalizer goes once
//! no dependent with `blockOwnerDeletion` is left). The apiserver does not yet add them itself
//! for `propagationPolicy: Orphan/Foreground`, so today they only act when a client sets them.
//! The decisions are [`verdict`], [`owner_step`] and the [`Graph`]; `run` carries them out.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use kube::discovery::{verbs, ApiCapabilities, ApiResource, Scope};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use serde_json::json;

/// The finalizer asking for dependents to be deleted before their owner.
pub const FOREGROUND: &str = "foregroundDeletion";
/// The finalizer asking for dependents to be kept, without the reference to their owner.
pub const ORPHAN: &str = "orphan";

/// How soon checks that failed (API errors, owners that could not be told) are retried.
const RETRY: Duration = Duration::from_secs(2);
/// How soon discovery is tried again when it fails at start.
const DISCOVERY_RETRY: Duration = Duration::from_secs(3);

/// What the collector keeps of one object.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Index of its kind in the collector's table of watched kinds.
    pub kind: usize,
    /// Its namespace (None: cluster-scoped).
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
    /// Its uid: owner references point here.
    pub uid: String,
    /// Its resourceVersion: the precondition of the collector's patches to it.
    pub resource_version: Option<String>,
    /// Its owner references.
    pub owners: Vec<OwnerReference>,
    /// Whether it has a deletionTimestamp.
    pub deleting: bool,
    /// Its `metadata.finalizers`.
    pub finalizers: Vec<String>,
}

impl Node {
    /// The node of an object of kind `kind` as watched; None without a uid or a name.
    pub fn of(kind: usize, obj: &DynamicObject) -> Option<Self> {
        let meta = &obj.metadata;
        Some(Self {
            kind,
            namespace: meta.namespace.clone(),
            name: meta.name.clone()?,
            uid: meta.uid.clone()?,
            resource_version: meta.resource_version.clone(),
            owners: meta.owner_references.clone().unwrap_or_default(),
            deleting: meta.deletion_timestamp.is_some(),
            finalizers: meta.finalizers.clone().unwrap_or_default(),
        })
    }

    fn has_finalizer(&self, f: &str) -> bool {
        self.finalizers.iter().any(|x| x == f)
    }
}

/// An owner as its dependents see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerState {
    /// It exists (possibly being deleted without waiting for its dependents).
    Present,
    /// It is being deleted in the foreground: its dependents go first.
    WaitingForDependents,
    /// It is gone, or its name now belongs to another object (another uid).
    Absent,
    /// It could not be told (unknown kind, API error): decide nothing now.
    Unknown,
}

impl OwnerState {
    /// The state of an existing owner object.
    pub fn of(node: &Node) -> Self {
        if node.deleting && node.has_finalizer(FOREGROUND) {
            Self::WaitingForDependents
        } else {
            Self::Present
        }
    }
}

/// What to do with a dependent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// An owner holds it (or it has none): nothing.
    Keep,
    /// No owner is left to hold it: delete it.
    Delete,
    /// Some owners are left: only drop the references to these (gone) owner uids.
    RemoveRefs(Vec<String>),
    /// An owner's state is unknown: look again later.
    Retry,
}

/// The fate of an object with owner references `owners`, given each owner's state (kube's
/// attemptToDeleteItem: solid owners keep it; dangling ones and those deleting in the
/// foreground do not).
pub fn verdict(owners: &[OwnerReference], state: impl Fn(&OwnerReference) -> OwnerState) -> Verdict {
    let mut solid = 0;
    let mut gone = Vec::new();
    for r in owners {
        match state(r) {
            OwnerState::Present => solid += 1,
            OwnerState::WaitingForDependents | OwnerState::Absent => gone.push(r.uid.clone()),
            OwnerState::Unknown => return Verdict::Retry,
        }
    }
    match (gone.is_empty(), solid) {
        (true, _) => Verdict::Keep,
        (false, 0) => Verdict::Delete,
        (false, _) => Verdict::RemoveRefs(gone),
    }
}

/// What to do with an object being deleted that carries one of the collector's finalizers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerStep {
    /// Not ours to act on.
    Nothing,
    /// Remove the references to it from these dependents (uids).
    Orphan(Vec<String>),
    /// Its dependents are still being deleted: wait for them.
    WaitForDependents,
    /// Done with it: remove this finalizer so the deletion completes.
    RemoveFinalizer(&'static str),
}

/// The step for `owner` given the objects that reference it. `orphan` comes first when both
/// finalizers are there, as in kube.
pub fn owner_step(owner: &Node, dependents: &[&Node]) -> OwnerStep {
    if !owner.deleting {
        return OwnerStep::Nothing;
    }
    let refers = |d: &&&Node| d.owners.iter().any(|r| r.uid == owner.uid);
    if owner.has_finalizer(ORPHAN) {
        let left: Vec<String> = dependents.iter().filter(refers).map(|d| d.uid.clone()).collect();
        return if left.is_empty() { OwnerStep::RemoveFinalizer(ORPHAN) } else { OwnerStep::Orphan(left) };
    }
    if owner.has_finalizer(FOREGROUND) {
        let blocking =
            dependents.iter().any(|d| d.owners.iter().any(|r| r.uid == owner.uid && r.block_owner_deletion == Some(true)));
        return if blocking { OwnerStep::WaitForDependents } else { OwnerStep::RemoveFinalizer(FOREGROUND) };
    }
    OwnerStep::Nothing
}

/// Every watched object by uid, and who refers to whom.
#[derive(Debug, Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
    /// Owner uid → uids of the objects that reference it (the owner need not be known).
    dependents: HashMap<String, HashSet<String>>,
}

impl Graph {
    /// The object with this uid.
    pub fn get(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    /// The known objects that reference `uid`.
    pub fn dependents_of(&self, uid: &str) -> Vec<&Node> {
        self.dependents.get(uid).into_iter().flatten().filter_map(|d| self.nodes.get(d)).collect()
    }

    /// Uids of the objects of kind `kind`.
    pub fn uids_of_kind(&self, kind: usize) -> Vec<String> {
        self.nodes.values().filter(|n| n.kind == kind).map(|n| n.uid.clone()).collect()
    }

    /// Records an added or changed object; returns the uids to look at again: the object, its
    /// dependents (its deletion state may concern them) and its old and new owners (one
    /// waiting for its dependents may now be done).
    pub fn upsert(&mut self, node: Node) -> Vec<String> {
        let uid = node.uid.clone();
        let mut touched = vec![uid.clone()];
        if let Some(old) = self.nodes.get(&uid) {
            for r in &old.owners {
                touched.push(r.uid.clone());
                if let Some(set) = self.dependents.get_mut(&r.uid) {
                    set.remove(&uid);
                }
            }
        }
        for r in &node.owners {
            touched.push(r.uid.clone());
            self.dependents.entry(r.uid.clone()).or_default().insert(uid.clone());
        }
        touched.extend(self.dependents.get(&uid).into_iter().flatten().cloned());
        self.nodes.insert(uid, node);
        self.dependents.retain(|_, set| !set.is_empty());
        touched
    }

    /// Forgets a deleted object; returns the uids to look at again: its dependents (their
    /// owner is gone) and its owners.
    pub fn remove(&mut self, uid: &str) -> Vec<String> {
        let Some(old) = self.nodes.remove(uid) else { return vec![] };
        let mut touched: Vec<String> = self.dependents.get(uid).into_iter().flatten().cloned().collect();
        for r in &old.owners {
            touched.push(r.uid.clone());
            if let Some(set) = self.dependents.get_mut(&r.uid) {
                set.remove(uid);
            }
        }
        self.dependents.retain(|_, set| !set.is_empty());
        touched
    }

    /// The state of an owner the graph knows (None: not in the graph, ask the API).
    pub fn owner_state(&self, r: &OwnerReference) -> Option<OwnerState> {
        self.nodes.get(&r.uid).map(OwnerState::of)
    }
}

/// A watched kind.
struct Kind {
    resource: ApiResource,
    caps: ApiCapabilities,
}

/// The collector: the graph, the kinds it watches, and the work left.
struct Collector {
    client: Client,
    kinds: Vec<Kind>,
    /// (API group, kind) → index in `kinds`; owner references name a kind, not a resource.
    by_kind: HashMap<(String, String), usize>,
    graph: Graph,
}

/// The outcome of checking one object.
enum Checked {
    Done,
    Retry,
}

impl Collector {
    fn api(&self, kind: usize, namespace: Option<&str>) -> Api<DynamicObject> {
        let k = &self.kinds[kind];
        match (k.caps.scope == Scope::Namespaced, namespace) {
            (true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, &k.resource),
            _ => Api::all_with(self.client.clone(), &k.resource),
        }
    }

    /// The state of an owner, from the graph or else from the API.
    async fn owner_state(&self, dependent: &Node, r: &OwnerReference) -> OwnerState {
        if let Some(state) = self.graph.owner_state(r) {
            return state;
        }
        let group = r.api_version.split_once('/').map_or("", |(g, _)| g);
        let Some(&kind) = self.by_kind.get(&(group.to_string(), r.kind.clone())) else {
            tracing::debug!(kind = %r.kind, api_version = %r.api_version, "owner of a kind not watched");
            return OwnerState::Unknown;
        };
        let namespaced = self.kinds[kind].caps.scope == Scope::Namespaced;
        // A cluster-scoped object cannot be owned by a namespaced one: such a reference
        // resolves to nothing, as in kube.
        if namespaced && dependent.namespace.is_none() {
            return OwnerState::Absent;
        }
        match self.api(kind, dependent.namespace.as_deref()).get_opt(&r.name).await {
            Ok(Some(obj)) if obj.uid().as_deref() == Some(r.uid.as_str()) => {
                Node::of(kind, &obj).map_or(OwnerState::Present, |n| OwnerState::of(&n))
            }
            Ok(_) => OwnerState::Absent,
            Err(e) => {
                tracing::debug!(owner = %r.name, error = %e, "could not look an owner up");
                OwnerState::Unknown
            }
        }
    }

    async fn check(&self, uid: &str) -> Checked {
        let Some(node) = self.graph.get(uid).cloned() else { return Checked::Done };
        let mut ok = true;
        if !node.owners.is_empty() {
            let mut states = HashMap::new();
            for r in &node.owners {
                states.insert(r.uid.clone(), self.owner_state(&node, r).await);
            }
            let v = verdict(&node.owners, |r| states.get(&r.uid).copied().unwrap_or(OwnerState::Unknown));
            ok &= self.carry_out_verdict(&node, v).await;
        }
        let step = owner_step(&node, &self.graph.dependents_of(uid));
        ok &= self.carry_out_owner_step(&node, step).await;
        if ok {
            Checked::Done
        } else {
            Checked::Retry
        }
    }

    /// Returns whether it is done (false: retry).
    async fn carry_out_verdict(&self, node: &Node, v: Verdict) -> bool {
        let api = self.api(node.kind, node.namespace.as_deref());
        let what = format!("{} {}/{}", self.kinds[node.kind].resource.kind, node.namespace.as_deref().unwrap_or(""), node.name);
        let result = match v {
            Verdict::Keep => return true,
            Verdict::Retry => return false,
            Verdict::Delete => {
                if node.deleting {
                    return true;
                }
                tracing::info!(object = %what, "deleting: its owners are gone");
                let dp = DeleteParams {
                    preconditions: Some(Preconditions { uid: Some(node.uid.clone()), resource_version: None }),
                    ..DeleteParams::background()
                };
                api.delete(&node.name, &dp).await.map(|_| ())
            }
            Verdict::RemoveRefs(gone) => {
                tracing::info!(object = %what, "removing references to owners that are gone");
                self.set_owners(&api, node, node.owners.iter().filter(|r| !gone.contains(&r.uid)).cloned().collect()).await
            }
        };
        self.done(result, &what)
    }

    async fn carry_out_owner_step(&self, node: &Node, step: OwnerStep) -> bool {
        let what = format!("{} {}/{}", self.kinds[node.kind].resource.kind, node.namespace.as_deref().unwrap_or(""), node.name);
        match step {
            OwnerStep::Nothing | OwnerStep::WaitForDependents => true,
            OwnerStep::Orphan(dependents) => {
                let mut ok = true;
                for d in dependents.iter().filter_map(|uid| self.graph.get(uid)) {
                    let api = self.api(d.kind, d.namespace.as_deref());
                    let kept = d.owners.iter().filter(|r| r.uid != node.uid).cloned().collect();
                    ok &= self.done(self.set_owners(&api, d, kept).await, &format!("orphaning {}", d.name));
                }
                // The finalizer goes on the next look, once the graph shows the references gone.
                ok
            }
            OwnerStep::RemoveFinalizer(f) => {
                let api = self.api(node.kind, node.namespace.as_deref());
                let kept: Vec<&String> = node.finalizers.iter().filter(|x| x.as_str() != f).collect();
                let patch = json!({"metadata": {"finalizers": kept, "resourceVersion": node.resource_version}});
                tracing::info!(object = %what, finalizer = f, "removing the finalizer");
                self.done(api.patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ()), &what)
            }
        }
    }

    async fn set_owners(&self, api: &Api<DynamicObject>, node: &Node, owners: Vec<OwnerReference>) -> Result<(), kube::Error> {
        // No reference left: the field goes, rather than staying as an empty list.
        let owners = if owners.is_empty() { serde_json::Value::Null } else { json!(owners) };
        let patch = json!({"metadata": {"ownerReferences": owners, "resourceVersion": node.resource_version}});
        api.patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ())
    }

    /// Whether an API call's outcome means done: success, or the object is gone already.
    fn done(&self, result: Result<(), kube::Error>, what: &str) -> bool {
        match result {
            Ok(()) => true,
            Err(kube::Error::Api(s)) if s.code == 404 => true,
            Err(e) => {
                tracing::warn!(object = %what, error = %e, "garbage collection step failed; retrying");
                false
            }
        }
    }
}

/// The kinds the collector watches: everything served with list, watch and delete.
async fn watched_kinds(client: &Client) -> Result<Vec<Kind>, kube::Error> {
    let found =
        super::discover(client, |caps| [verbs::LIST, verbs::WATCH, verbs::DELETE].iter().all(|v| caps.supports_operation(v)))
            .await?;
    Ok(found.into_iter().map(|(resource, caps)| Kind { resource, caps }).collect())
}

/// Runs the garbage collector until `shutdown` resolves.
pub async fn run(client: Client, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let mut shutdown = std::pin::pin!(shutdown);
    let kinds = loop {
        match watched_kinds(&client).await {
            Ok(k) => break k,
            Err(e) => {
                tracing::warn!(error = %e, "garbage collector: discovery failed; retrying");
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep(DISCOVERY_RETRY) => {}
                }
            }
        }
    };
    let by_kind = kinds.iter().enumerate().map(|(i, k)| ((k.resource.group.clone(), k.resource.kind.clone()), i)).collect();
    tracing::info!(kinds = kinds.len(), "garbage collector watching");
    let streams = kinds.iter().enumerate().map(|(i, k)| {
        let api = Api::<DynamicObject>::all_with(client.clone(), &k.resource);
        watcher(api, watcher::Config::default()).default_backoff().map(move |e| (i, e)).boxed()
    });
    let mut events = futures::stream::select_all(streams);
    let mut collector = Collector { client, kinds, by_kind, graph: Graph::default() };
    let mut synced = vec![false; collector.kinds.len()];
    // Per kind, during a (re)list: the uids listed so far; the others went while unwatched.
    let mut listing: HashMap<usize, HashSet<String>> = HashMap::new();
    let mut dirty: HashSet<String> = HashSet::new();
    let mut retry: HashSet<String> = HashSet::new();
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        let retry_timer = async {
            match retry_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut shutdown => return,
            _ = retry_timer => {
                dirty.extend(retry.drain());
                retry_at = None;
            }
            event = events.next() => {
                let Some((kind, event)) = event else { return };
                let graph = &mut collector.graph;
                match event {
                    Ok(watcher::Event::Apply(obj)) => dirty.extend(Node::of(kind, &obj).map(|n| graph.upsert(n)).unwrap_or_default()),
                    Ok(watcher::Event::Delete(obj)) => dirty.extend(obj.uid().map(|u| graph.remove(&u)).unwrap_or_default()),
                    Ok(watcher::Event::Init) => {
                        listing.insert(kind, HashSet::new());
                    }
                    Ok(watcher::Event::InitApply(obj)) => {
                        if let Some(n) = Node::of(kind, &obj) {
                            listing.entry(kind).or_default().insert(n.uid.clone());
                            dirty.extend(graph.upsert(n));
                        }
                    }
                    Ok(watcher::Event::InitDone) => {
                        let listed = listing.remove(&kind).unwrap_or_default();
                        for uid in graph.uids_of_kind(kind).into_iter().filter(|u| !listed.contains(u)) {
                            dirty.extend(graph.remove(&uid));
                        }
                        synced[kind] = true;
                    }
                    Err(e) => {
                        // A kind that cannot be listed must not hold the collector back for
                        // good: its objects are missing from the graph, and owners missing from
                        // the graph are looked up through the API anyway.
                        if !synced[kind] {
                            tracing::warn!(kind = %collector.kinds[kind].resource.plural, error = %e, "garbage collector cannot list a kind");
                            synced[kind] = true;
                        } else {
                            tracing::debug!(kind = %collector.kinds[kind].resource.plural, error = %e, "garbage collector watch error");
                        }
                    }
                }
            }
        }
        // Until every kind has been listed once, a missing owner may just not be listed yet.
        if !synced.iter().all(|s| *s) {
            continue;
        }
        for uid in std::mem::take(&mut dirty) {
            if let Checked::Retry = collector.check(&uid).await {
                retry.insert(uid);
            }
        }
        if !retry.is_empty() && retry_at.is_none() {
            retry_at = Some(tokio::time::Instant::now() + RETRY);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner_ref(uid: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: format!("rs-{uid}"),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(block),
        }
    }

    fn node(uid: &str, owners: &[&str]) -> Node {
        Node {
            kind: 0,
            namespace: Some("default".into()),
            name: format!("obj-{uid}"),
            uid: uid.into(),
            resource_version: Some("1".into()),
            owners: owners.iter().map(|o| owner_ref(o, true)).collect(),
            deleting: false,
            finalizers: vec![],
        }
    }

    #[test]
    fn a_dependent_goes_only_when_no_owner_holds_it() {
        use OwnerState::*;
        let refs = [owner_ref("a", true), owner_ref("b", false)];
        let states = |a: OwnerState, b: OwnerState| move |r: &OwnerReference| if r.uid == "a" { a } else { b };
        assert_eq!(verdict(&[], |_| Absent), Verdict::Keep, "no owners: never collected");
        assert_eq!(verdict(&refs, states(Present, Present)), Verdict::Keep);
        assert_eq!(verdict(&refs, states(Absent, Absent)), Verdict::Delete);
        assert_eq!(verdict(&refs, states(WaitingForDependents, Absent)), Verdict::Delete);
        assert_eq!(verdict(&refs, states(Present, Absent)), Verdict::RemoveRefs(vec!["b".into()]));
        assert_eq!(verdict(&refs, states(WaitingForDependents, Present)), Verdict::RemoveRefs(vec!["a".into()]));
        assert_eq!(verdict(&refs, states(Absent, Unknown)), Verdict::Retry, "never delete on a guess");
    }

    #[test]
    fn orphan_then_foreground_finalizers() {
        let mut owner = node("o", &[]);
        let dep = node("d", &["o"]);
        let unrelated = node("u", &["x"]);
        assert_eq!(owner_step(&owner, &[&dep]), OwnerStep::Nothing, "not being deleted");
        owner.deleting = true;
        assert_eq!(owner_step(&owner, &[&dep]), OwnerStep::Nothing, "no finalizer of ours");
        owner.finalizers = vec![ORPHAN.into(), FOREGROUND.into()];
        assert_eq!(owner_step(&owner, &[&dep, &unrelated]), OwnerStep::Orphan(vec!["d".into()]));
        assert_eq!(owner_step(&owner, &[&unrelated]), OwnerStep::RemoveFinalizer(ORPHAN));
        owner.finalizers = vec![FOREGROUND.into(), "example.com/other".into()];
        assert_eq!(OwnerState::of(&owner), OwnerState::WaitingForDependents);
        assert_eq!(owner_step(&owner, &[&dep]), OwnerStep::WaitForDependents);
        let mut loose = dep.clone();
        loose.owners[0].block_owner_deletion = Some(false);
        assert_eq!(owner_step(&owner, &[&loose]), OwnerStep::RemoveFinalizer(FOREGROUND), "only blocking dependents hold it");
        assert_eq!(owner_step(&owner, &[]), OwnerStep::RemoveFinalizer(FOREGROUND));
    }

    #[test]
    fn graph_tracks_dependents_and_says_what_to_look_at_again() {
        let mut g = Graph::default();
        let mut touched = g.upsert(node("rs", &["deploy"]));
        touched.sort();
        assert_eq!(touched, ["deploy", "rs"]);
        g.upsert(node("p1", &["rs"]));
        g.upsert(node("p2", &["rs"]));
        let mut deps: Vec<&str> = g.dependents_of("rs").iter().map(|n| n.uid.as_str()).collect();
        deps.sort();
        assert_eq!(deps, ["p1", "p2"]);
        assert_eq!(g.owner_state(&owner_ref("rs", true)), Some(OwnerState::Present));
        assert_eq!(g.owner_state(&owner_ref("deploy", true)), None, "not in the graph: ask the API");
        // The ReplicaSet goes: its pods are to be looked at (and its owner).
        let mut touched = g.remove("rs");
        touched.sort();
        assert_eq!(touched, ["deploy", "p1", "p2"]);
        assert_eq!(g.owner_state(&owner_ref("rs", true)), None);
        // A pod that drops its reference is no longer a dependent.
        g.upsert(node("p1", &[]));
        let deps: Vec<&str> = g.dependents_of("rs").iter().map(|n| n.uid.as_str()).collect();
        assert_eq!(deps, ["p2"]);
        assert!(g.remove("nope").is_empty());
    }
}
