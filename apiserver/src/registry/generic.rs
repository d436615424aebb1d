//! The generic registry: create/get/list/update/patch/delete/watch for any kind in the table,
//! with kube-apiserver's object semantics. Per-kind differences come from `Kind::strategy`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use serde_json::{json, Value};

use crate::admission::{Attributes, Chain, UpdateGate};
use crate::error::{Cause, Error};
use crate::registry::kind::Kind;
use crate::registry::managed::{self, Writer};
use crate::registry::meta::{finalizers, generate_name, meta_str, new_uid, now_rfc3339, rfc3339_in};
use crate::registry::patch::PatchType;
use crate::registry::selector::Selector;
use crate::registry::validation::{validate_metadata, Schemas};
use crate::registry::write::{self, WriteOptions};
use crate::storage::{ListOptions, Preconditions, Storage, UpdateAction, UpdateOutcome, WatchEvent, WatchFilter};
use crate::Result;

/// Metadata fields only the server sets; carried over from the stored object on update.
const SYSTEM_META: &[&str] =
    &["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation", "namespace", "name"];

/// The answer to DELETE.
#[derive(Debug)]
pub enum DeleteResult {
    /// The object is gone: its last state (or a Success Status, per the kind's strategy).
    Deleted(Value),
    /// Finalizers keep it: it is marked for deletion (deletionTimestamp set).
    Pending(Value),
}

/// A change to `.../scale`.
#[derive(Debug)]
pub enum ScaleChange<'a> {
    /// PUT of a whole Scale.
    Replace(&'a Value),
    /// PATCH of the Scale view.
    Patch(PatchType, &'a [u8]),
}

/// The autoscaling/v1 Scale of an object with `spec.replicas` and `spec.selector`.
fn scale_view(obj: &Value) -> Value {
    let meta = obj.get("metadata").cloned().unwrap_or(json!({}));
    let pick = |f: &str| meta.get(f).cloned().unwrap_or(Value::Null);
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": pick("name"),
            "namespace": pick("namespace"),
            "uid": pick("uid"),
            "resourceVersion": pick("resourceVersion"),
            "creationTimestamp": pick("creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {
            "replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": obj.pointer("/spec/selector").map(scale_selector).unwrap_or_default(),
        },
    })
}

/// A Scale's `status.selector`: from a LabelSelector, or from a ReplicationController's plain
/// label map (`{"app": "web"}`).
fn scale_selector(selector: &Value) -> String {
    if selector.get("matchLabels").is_some() || selector.get("matchExpressions").is_some() {
        crate::registry::selector::selector_string(selector)
    } else {
        crate::registry::selector::selector_string(&json!({ "matchLabels": selector }))
    }
}

/// Parameters of a watch.
#[derive(Debug, Clone, Default)]
pub struct WatchRequest {
    /// `resourceVersion`: "" or "0" (current state as ADDED events first) or a revision.
    pub resource_version: Option<String>,
    /// `allowWatchBookmarks`.
    pub allow_bookmarks: bool,
    /// `sendInitialEvents`.
    pub send_initial_events: Option<bool>,
    /// `timeoutSeconds` (default 30 minutes).
    pub timeout: Option<Duration>,
}

/// The generic registry over a `Storage`.
pub struct Registry {
    storage: Arc<dyn Storage>,
    admission: Chain,
    schemas: Schemas,
    bookmark_every: Duration,
}

/// One line of a watch stream: `{"type":TYPE,"object":OBJECT}` and a newline, with the
/// object's JSON made once per change however many watchers receive it.
fn event_line(ty: &str, object_json: &[u8]) -> Bytes {
    let mut line = Vec::with_capacity(object_json.len() + ty.len() + 24);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(ty.as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    line.extend_from_slice(object_json);
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}

/// A watch line built from a whole event value.
fn value_line(event: &Value) -> Bytes {
    let mut line = serde_json::to_vec(event).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// Parses a resourceVersion parameter.
fn parse_rv(rv: &str) -> Result<i64> {
    rv.parse::<i64>()
        .ok()
        .filter(|r| *r >= 0)
        .ok_or_else(|| Error::BadRequest(format!("invalid resource version: {rv:?}")))
}

fn meta_mut(obj: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"].as_object_mut().expect("just made an object")
}

/// Everything but metadata and status: what `generation` counts changes of.
fn spec_part(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    v
}

fn without_rv(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    v
}

impl Registry {
    /// A registry over `storage`; compiles every kind's schema.
    pub fn new(storage: Arc<dyn Storage>) -> anyhow::Result<Self> {
        Ok(Self {
            storage,
            admission: Chain::standard(),
            schemas: Schemas::compile(crate::registry::kinds())?,
            bookmark_every: Duration::from_secs(5),
        })
    }

    /// How often an idle watch with bookmarks gets one (tests shorten it).
    pub fn with_bookmark_interval(mut self, every: Duration) -> Self {
        self.bookmark_every = every;
        self
    }

    /// The storage underneath (health checks).
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// Fills in or checks `kind` and `apiVersion` against the URL's kind.
    fn check_type_meta(kind: &Kind, obj: &mut Value) -> Result<()> {
        let Some(map) = obj.as_object_mut() else {
            return Err(Error::BadRequest("the body must be a JSON object".into()));
        };
        let want_av = kind.api_version();
        match map.get("apiVersion").and_then(Value::as_str) {
            None | Some("") => {
                map.insert("apiVersion".into(), json!(want_av));
            }
            Some(av) if av == want_av => {}
            Some(av) => {
                return Err(Error::BadRequest(format!(
                    "the API version in the data ({av}) does not match the expected API version ({want_av})"
                )))
            }
        }
        match map.get("kind").and_then(Value::as_str) {
            None | Some("") => {
                map.insert("kind".into(), json!(kind.kind));
            }
            Some(k) if k == kind.kind => {}
            Some(k) => {
                return Err(Error::BadRequest(format!(
                    "the kind in the data ({k}) does not match the expected kind ({})",
                    kind.kind
                )))
            }
        }
        if map.get("metadata").is_some_and(|m| !m.is_object()) {
            return Err(Error::BadRequest("metadata must be a JSON object".into()));
        }
        Ok(())
    }

    /// Sets `metadata.namespace` from the URL, refusing a different one in the body.
    fn check_namespace(kind: &Kind, namespace: Option<&str>, obj: &mut Value) -> Result<()> {
        let meta = meta_mut(obj);
        match (kind.namespaced, namespace) {
            (true, Some(ns)) => {
                match meta.get("namespace").and_then(Value::as_str) {
                    None | Some("") => {}
                    Some(body_ns) if body_ns == ns => {}
                    Some(_) => {
                        return Err(Error::BadRequest(
                            "the namespace of the provided object does not match the namespace sent on the request"
                                .into(),
                        ))
                    }
                }
                meta.insert("namespace".into(), json!(ns));
            }
            (true, None) => return Err(Error::BadRequest("a namespace is required for namespaced objects".into())),
            (false, _) => {
                meta.remove("namespace");
            }
        }
        Ok(())
    }

    fn validate(&self, kind: &Kind, obj: &Value, old: Option<&Value>) -> Result<()> {
        let mut causes: Vec<Cause> = Vec::new();
        self.schemas.validate(kind, obj, &mut causes);
        validate_metadata(obj, kind.strategy.name_rule(), &mut causes);
        kind.strategy.validate(obj, &mut causes);
        if let Some(old) = old {
            kind.strategy.validate_update(obj, old, &mut causes);
        }
        if causes.is_empty() {
            return Ok(());
        }
        // The same problem found by the schema and a rule is reported once.
        let mut seen = std::collections::HashSet::new();
        causes.retain(|c| seen.insert((c.field.clone(), c.message.clone())));
        Err(Error::Invalid {
            group: kind.group.to_string(),
            kind: kind.kind.to_string(),
            name: meta_str(obj, "name").to_string(),
            causes,
        })
    }

    /// GET of one object, at the latest revision.
    pub async fn get(&self, kind: &Kind, namespace: Option<&str>, name: &str) -> Result<Value> {
        self.get_not_older_than(kind, namespace, name, None).await
    }

    /// GET with a `resourceVersion` parameter: "" and "0" read the latest state, which is never
    /// older than any revision this cluster gave out; a revision the store has not reached is
    /// kube-apiserver's 504 ResourceVersionTooLarge rather than an older object.
    pub async fn get_not_older_than(
        &self,
        kind: &Kind,
        namespace: Option<&str>,
        name: &str,
        resource_version: Option<&str>,
    ) -> Result<Value> {
        let wanted = match resource_version {
            None | Some("") | Some("0") => 0,
            Some(rv) => parse_rv(rv)?,
        };
        let found = self.storage.get(&kind.key(namespace, name)).await?;
        // The object's own revision proves the store got that far; otherwise ask it.
        if wanted > found.as_ref().map_or(0, |s| s.mod_revision) {
            self.require_revision(wanted).await?;
        }
        match found {
            Some(s) => Ok(s.value),
            None => Err(Error::NotFound { resource: kind.group_resource(), name: name.to_string() }),
        }
    }

    /// Ok once the store has reached `wanted`; else 504 ResourceVersionTooLarge with the store's
    /// current revision. kube-apiserver waits up to 3 s for its cache first; reads here are
    /// linearizable, so waiting could only help a revision nobody was ever told about.
    async fn require_revision(&self, wanted: i64) -> Result<()> {
        let current = self.storage.current_revision().await?;
        if wanted > current {
            return Err(Error::TooLargeResourceVersion { requested: wanted, current });
        }
        Ok(())
    }

    /// LIST: a `<Kind>List` object. `not_older_than` is a NotOlderThan resourceVersion (0: any).
    pub async fn list(
        &self,
        kind: &Kind,
        namespace: Option<&str>,
        selector: &Selector,
        opts: ListOptions,
        not_older_than: i64,
    ) -> Result<Value> {
        let prefix = kind.prefix(namespace);
        let exact = opts.revision;
        let page = match self.storage.list(&prefix, opts, &|v| selector.matches(v)).await {
            // The store only says "future revision": give the client both numbers.
            Err(Error::TooLargeResourceVersion { .. }) => {
                let current = self.storage.current_revision().await?;
                return Err(Error::TooLargeResourceVersion { requested: exact.unwrap_or(0), current });
            }
            other => other?,
        };
        if not_older_than > page.revision {
            return Err(Error::TooLargeResourceVersion { requested: not_older_than, current: page.revision });
        }
        let mut metadata = json!({"resourceVersion": page.revision.to_string()});
        if let Some(token) = page.continue_token {
            metadata["continue"] = json!(token);
        }
        Ok(json!({
            "kind": format!("{}List", kind.kind),
            "apiVersion": kind.api_version(),
            "metadata": metadata,
            "items": page.items.into_iter().map(|s| s.value).collect::<Vec<_>>(),
        }))
    }

    /// POST: creates an object from `body`.
    pub async fn create(&self, kind: &'static Kind, namespace: Option<&str>, mut obj: Value, opts: &WriteOptions) -> Result<Value> {
        Self::check_type_meta(kind, &mut obj)?;
        Self::check_namespace(kind, namespace, &mut obj)?;
        let meta = meta_mut(&mut obj);
        let name = meta.get("name").and_then(Value::as_str).unwrap_or("").to_string();
        let generate = meta.get("generateName").and_then(Value::as_str).unwrap_or("").to_string();
        if name.is_empty() && !generate.is_empty() {
            meta.insert("name".into(), json!(generate_name(&generate)));
        }
        for f in ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"] {
            meta.remove(f);
        }
        meta.insert("uid".into(), json!(new_uid()));
        meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
        if kind.strategy.tracks_generation() {
            meta.insert("generation".into(), json!(1));
        } else {
            meta.remove("generation");
        }
        // The creator owns what it sent, not the server's defaults: updates do not default
        // again, so an apply that pruned a default would lose it for good.
        if !opts.applying {
            let now = now_rfc3339();
            managed::record_update(None, &mut obj, &Self::writer(kind, None, opts, &now));
        }
        kind.strategy.prepare_for_create(&mut obj);
        let name = meta_str(&obj, "name").to_string();
        let uid = meta_str(&obj, "uid").to_string();
        let attrs = Attributes { dry_run: opts.dry_run, ..Attributes::create(kind, namespace, &name, &uid) };
        self.admission.mutate(&attrs, &mut obj, self.storage.as_ref()).await?;
        self.validate(kind, &obj, None)?;
        self.admission.validate(&attrs, &obj, self.storage.as_ref()).await?;
        let key = kind.key(namespace, &name);
        let created = write::create(self.storage.as_ref(), &key, obj, kind.strategy.ttl(), opts.dry_run).await;
        // Settles what admission reserved (quota), whether or not the store took the object.
        self.admission.finish(&attrs, self.storage.as_ref()).await;
        Ok(created.map_err(|e| e.for_object(&kind.group_resource(), &name))?.value)
    }

    /// The shared path of PUT and PATCH (main resource or a subresource): `requested` turns the
    /// current object into the one the client asks for; the rules of the kind do the rest.
    async fn update_with(
        &self,
        kind: &Kind,
        namespace: Option<&str>,
        name: &str,
        subresource: Option<&str>,
        requested: &(dyn Fn(&Value) -> Result<Value> + Send + Sync),
        opts: &WriteOptions,
    ) -> Result<Value> {
        match subresource {
            None => {}
            Some("status") if kind.status_subresource => {}
            Some("finalize") if kind.resource == "namespaces" => {}
            Some(other) => return Err(Error::NotFound { resource: kind.group_resource(), name: format!("{name}/{other}") }),
        }
        let gr = kind.group_resource();
        let gate = UpdateGate::new(&self.admission, kind, namespace, name, opts.dry_run);
        let update = |cur: &crate::storage::Stored| -> Result<UpdateAction> {
            let old = &cur.value;
            let mut new = requested(old)?;
            Self::check_type_meta(kind, &mut new)?;
            Self::check_namespace(kind, namespace, &mut new)?;
            let body_name = meta_str(&new, "name");
            if !body_name.is_empty() && body_name != name {
                return Err(Error::BadRequest(format!(
                    "the name of the object ({body_name}) does not match the name on the URL ({name})"
                )));
            }
            let rv = meta_str(&new, "resourceVersion");
            if !rv.is_empty() && rv != cur.mod_revision.to_string() {
                return Err(Error::modified(&gr, name));
            }
            // The status branch keeps only status; an apply's managedFields come along.
            let applied_fields = opts.applying.then(|| new.pointer("/metadata/managedFields").cloned());
            let mut new = match subresource {
                Some("status") => {
                    let mut merged = old.clone();
                    match applied_fields {
                        Some(Some(mf)) => meta_mut(&mut merged).insert("managedFields".into(), mf),
                        Some(None) => meta_mut(&mut merged).remove("managedFields"),
                        None => None,
                    };
                    match new.get("status") {
                        Some(s) => merged["status"] = s.clone(),
                        None => {
                            merged.as_object_mut().map(|m| m.remove("status"));
                        }
                    }
                    merged
                }
                Some(_) => {
                    let mut merged = old.clone();
                    if !merged.get("spec").is_some_and(Value::is_object) {
                        merged["spec"] = json!({});
                    }
                    merged["spec"]["finalizers"] = new.pointer("/spec/finalizers").cloned().unwrap_or(json!([]));
                    merged
                }
                None => {
                    let old_meta = old.get("metadata").cloned().unwrap_or(json!({}));
                    let body_uid = meta_str(&new, "uid");
                    if !body_uid.is_empty() && Some(body_uid) != old_meta.get("uid").and_then(Value::as_str) {
                        return Err(Error::Invalid {
                            group: kind.group.to_string(),
                            kind: kind.kind.to_string(),
                            name: name.to_string(),
                            causes: vec![Cause::immutable("metadata.uid")],
                        });
                    }
                    let meta = meta_mut(&mut new);
                    for f in SYSTEM_META {
                        match old_meta.get(*f) {
                            Some(v) => meta.insert(f.to_string(), v.clone()),
                            None => meta.remove(*f),
                        };
                    }
                    if kind.status_subresource {
                        match old.get("status") {
                            Some(s) => new["status"] = s.clone(),
                            None => {
                                new.as_object_mut().map(|m| m.remove("status"));
                            }
                        }
                    }
                    kind.strategy.prepare_for_update(&mut new, old);
                    if kind.strategy.tracks_generation() && spec_part(&new) != spec_part(old) {
                        let g = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
                        meta_mut(&mut new).insert("generation".into(), json!(g + 1));
                    }
                    new
                }
            };
            if !opts.applying {
                let now = now_rfc3339();
                managed::record_update(Some(old), &mut new, &Self::writer(kind, subresource, opts, &now));
            }
            self.validate(kind, &new, Some(old))?;
            // The update that removes the last finalizer completes a deletion, unless a graceful
            // deletion is still running (then the final DELETE does).
            let deleting = new.pointer("/metadata/deletionTimestamp").is_some();
            let graceful = new.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(0) > 0;
            if deleting && !graceful && finalizers(&new).is_empty() && !kind.strategy.blocks_deletion(&new) {
                return Ok(UpdateAction::Delete);
            }
            if without_rv(&new) == without_rv(old) {
                return Ok(UpdateAction::Unchanged);
            }
            meta_mut(&mut new).remove("resourceVersion");
            Ok(gate.action(cur, new))
        };
        let (key, update, storage) = (&kind.key(namespace, name), &update, self.storage.as_ref());
        let write = move || write::update(storage, key, Preconditions::default(), update, opts.dry_run);
        let outcome = gate.run(storage, write).await.map_err(|e| e.for_object(&gr, name))?;
        Ok(match outcome {
            UpdateOutcome::Updated(s) | UpdateOutcome::Unchanged(s) | UpdateOutcome::Deleted(s) => s.value,
        })
    }

    /// PUT: replaces the object (or its status / finalizers with a subresource).
    pub async fn update(
        &self,
        kind: &Kind,
        namespace: Option<&str>,
        name: &str,
        subresource: Option<&str>,
        body: Value,
        opts: &WriteOptions,
    ) -> Result<Value> {
        if !body.is_object() {
            return Err(Error::BadRequest("the body must be a JSON object".into()));
        }
        self.update_with(kind, namespace, name, subresource, &|_| Ok(body.clone()), opts).await
    }

    /// PATCH: applies the patch to the current object, checks the result's new unknown fields
    /// and the patch's repeated keys (`fieldValidation`), then proceeds as PUT.
    #[allow(clippy::too_many_arguments)] // the URL's parts, the body and the request options
    pub async fn patch(
        &self,
        kind: &Kind,
        namespace: Option<&str>,
        name: &str,
        subresource: Option<&str>,
        patch_type: PatchType,
        patch: &[u8],
        opts: &WriteOptions,
    ) -> Result<Value> {
        let (patch, duplicates) = patch_type.decode(patch)?;
        let requested = |old: &Value| -> Result<Value> {
            let new = patch_type.apply_value(old, &patch)?;
            opts.field_validation.check(&new, Some(old), &duplicates)?;
            Ok(new)
        };
        self.update_with(kind, namespace, name, subresource, &requested, opts).await
    }

    /// Who a write is by, for managedFields.
    fn writer<'a>(kind: &'a Kind, subresource: Option<&'a str>, opts: &'a WriteOptions, now: &'a str) -> Writer<'a> {
        Writer {
            manager: &opts.field_manager,
            api_version: kind.api_version(),
            subresource: subresource.filter(|s| *s == "status").or(opts.via),
            status_separate: kind.status_subresource,
            now,
        }
    }

    /// PATCH with `application/apply-patch+yaml` (YAML or JSON): server-side apply of the
    /// configuration by `opts.field_manager`, creating the object if it does not exist.
    /// Answers the object and whether it was created.
    pub async fn apply(
        &self,
        kind: &'static Kind,
        namespace: Option<&str>,
        name: &str,
        subresource: Option<&str>,
        patch: &[u8],
        opts: &WriteOptions,
    ) -> Result<(Value, bool)> {
        let status = match subresource {
            None => false,
            Some("status") if kind.status_subresource => true,
            Some(other) => {
                return Err(Error::BadRequest(format!("server-side apply of {}/{other} is not supported", kind.resource)))
            }
        };
        // kubectl sends JSON, which most YAML parsers take too, but not all JSON is YAML 1.2.
        let (config, duplicates) = match crate::codec::strict::from_json(patch) {
            Ok(v) => v,
            Err(_) => crate::codec::strict::from_yaml(patch)
                .map_err(|e| Error::BadRequest(format!("error decoding the apply patch as YAML or JSON: {e}")))?,
        };
        let has = |f: &str| config.get(f).and_then(Value::as_str).is_some_and(|s| !s.is_empty());
        if !config.is_object() || !has("apiVersion") || !has("kind") {
            return Err(Error::BadRequest("an applied configuration must set apiVersion and kind".into()));
        }
        if meta_str(&config, "name").is_empty() {
            return Err(Error::BadRequest("an applied configuration must set metadata.name".into()));
        }
        if config.pointer("/metadata/managedFields").is_some_and(|m| !m.is_null()) {
            return Err(Error::BadRequest("metadata.managedFields must be nil in an applied configuration".into()));
        }
        crate::registry::fields::check_lists(&config).map_err(Error::BadRequest)?;
        // The configuration is what the applier sends: all its unknown fields are its own.
        opts.field_validation.check(&config, None, &duplicates)?;
        let opts = WriteOptions { applying: true, ..opts.clone() };
        let now = now_rfc3339();
        let w = Self::writer(kind, subresource, &opts, &now);
        let merge = |live: Option<&Value>| managed::apply(live, &config, &w, opts.force).map_err(|c| managed::conflict_error(&c));
        if status {
            let v = self.update_with(kind, namespace, name, subresource, &|old| merge(Some(old)), &opts).await?;
            return Ok((v, false));
        }
        // Create-or-update; a create that lost a race to another create updates instead.
        for _ in 0..2 {
            match self.update_with(kind, namespace, name, None, &|old| merge(Some(old)), &opts).await {
                Err(Error::NotFound { .. }) => {}
                other => return other.map(|v| (v, false)),
            }
            match self.create(kind, namespace, merge(None)?, &opts).await {
                Err(Error::AlreadyExists { .. }) => {}
                other => return other.map(|v| (v, true)),
            }
        }
        Err(Error::modified(&kind.group_resource(), name))
    }

    /// DELETE: removes the object, or marks it for deletion (deletionTimestamp) while
    /// finalizers remain or while a graceful deletion runs (pods on a node: the kubelet stops
    /// the containers, then deletes with `gracePeriodSeconds=0`). A shorter grace period
    /// shortens a running one.
    pub async fn delete(
        &self,
        kind: &Kind,
        namespace: Option<&str>,
        name: &str,
        preconditions: Preconditions,
        grace_period: Option<i64>,
        opts: &WriteOptions,
    ) -> Result<DeleteResult> {
        let strategy = kind.strategy;
        let update = |cur: &crate::storage::Stored| -> Result<UpdateAction> {
            let obj = &cur.value;
            let grace = strategy.grace_period(obj, grace_period).max(0);
            let held = !finalizers(obj).is_empty() || strategy.blocks_deletion(obj);
            if grace == 0 && !held {
                return Ok(UpdateAction::Delete);
            }
            let current = obj.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(0);
            let deleting = obj.pointer("/metadata/deletionTimestamp").is_some();
            if deleting && grace >= current {
                return Ok(UpdateAction::Unchanged);
            }
            let mut new = without_rv(obj);
            let meta = meta_mut(&mut new);
            meta.insert("deletionTimestamp".into(), json!(rfc3339_in(grace)));
            meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
            if !deleting {
                strategy.mark_terminating(&mut new);
            }
            Ok(UpdateAction::Put(new))
        };
        let gr = kind.group_resource();
        let outcome = write::update(self.storage.as_ref(), &kind.key(namespace, name), preconditions, &update, opts.dry_run)
            .await
            .map_err(|e| e.for_object(&gr, name))?;
        Ok(match outcome {
            UpdateOutcome::Deleted(s) if strategy.returns_deleted_object() => DeleteResult::Deleted(s.value),
            UpdateOutcome::Deleted(s) => DeleteResult::Deleted(crate::status::success(json!({
                "name": name,
                "group": kind.group,
                "kind": kind.resource,
                "uid": meta_str(&s.value, "uid"),
            }))),
            UpdateOutcome::Updated(s) | UpdateOutcome::Unchanged(s) => DeleteResult::Pending(s.value),
        })
    }

    /// GET of `.../scale`: the autoscaling/v1 Scale view of the object.
    pub async fn get_scale(&self, kind: &Kind, namespace: Option<&str>, name: &str) -> Result<Value> {
        Self::check_scale(kind, name)?;
        Ok(scale_view(&self.get(kind, namespace, name).await?))
    }

    /// PUT (`patch` = None, `body` = the Scale) or PATCH of `.../scale`: changes only
    /// `spec.replicas`, with the Scale's resourceVersion as precondition.
    pub async fn update_scale(
        &self,
        kind: &Kind,
        namespace: Option<&str>,
        name: &str,
        change: ScaleChange<'_>,
        opts: &WriteOptions,
    ) -> Result<Value> {
        Self::check_scale(kind, name)?;
        let requested = |old: &Value| -> Result<Value> {
            let view = scale_view(old);
            let wanted = match &change {
                ScaleChange::Replace(body) => (*body).clone(),
                ScaleChange::Patch(pt, patch) => pt.apply(&view, patch)?,
            };
            if let Some(k) = wanted.get("kind").and_then(Value::as_str) {
                if k != "Scale" {
                    return Err(Error::BadRequest(format!("expected a Scale, got a {k}")));
                }
            }
            let replicas = wanted.pointer("/spec/replicas").and_then(Value::as_i64).filter(|r| *r >= 0);
            let Some(replicas) = replicas else {
                return Err(Error::Invalid {
                    group: "autoscaling".into(),
                    kind: "Scale".into(),
                    name: name.to_string(),
                    causes: vec![Cause::invalid(
                        "spec.replicas",
                        wanted.pointer("/spec/replicas").unwrap_or(&Value::Null),
                        "must be a non-negative integer",
                    )],
                });
            };
            let mut new = old.clone();
            if !new.get("spec").is_some_and(Value::is_object) {
                new["spec"] = json!({});
            }
            new["spec"]["replicas"] = json!(replicas);
            let rv = wanted.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null);
            let meta = meta_mut(&mut new);
            match rv {
                Value::String(rv) if !rv.is_empty() => meta.insert("resourceVersion".into(), json!(rv)),
                _ => meta.remove("resourceVersion"),
            };
            Ok(new)
        };
        let opts = WriteOptions { via: Some("scale"), ..opts.clone() };
        Ok(scale_view(&self.update_with(kind, namespace, name, None, &requested, &opts).await?))
    }

    fn check_scale(kind: &Kind, name: &str) -> Result<()> {
        if kind.scale_subresource {
            Ok(())
        } else {
            Err(Error::NotFound { resource: kind.group_resource(), name: format!("{name}/scale") })
        }
    }

    /// POST `pods/NAME/binding`: the scheduler assigns a pod to a node, once.
    pub async fn bind(&self, kind: &Kind, namespace: Option<&str>, name: &str, binding: Value, opts: &WriteOptions) -> Result<Value> {
        if kind.resource != "pods" || !kind.group.is_empty() {
            return Err(Error::NotFound { resource: kind.group_resource(), name: format!("{name}/binding") });
        }
        let node = binding.pointer("/target/name").and_then(Value::as_str).unwrap_or("").to_string();
        if node.is_empty() {
            return Err(Error::Invalid {
                group: String::new(),
                kind: "Binding".into(),
                name: name.to_string(),
                causes: vec![Cause::required("target.name", "")],
            });
        }
        let gr = kind.group_resource();
        let update = |cur: &crate::storage::Stored| -> Result<UpdateAction> {
            let conflict = |detail: String| Error::Conflict { resource: gr.clone(), name: name.to_string(), detail };
            if cur.value.pointer("/metadata/deletionTimestamp").is_some() {
                return Err(conflict(format!("pod {name} is being deleted, cannot be assigned to a host")));
            }
            if let Some(existing) = cur.value.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()) {
                return Err(conflict(format!("pod {name} is already assigned to node \"{existing}\"")));
            }
            let mut new = without_rv(&cur.value);
            if !new.get("spec").is_some_and(Value::is_object) {
                new["spec"] = json!({});
            }
            new["spec"]["nodeName"] = json!(node);
            if !new.get("status").is_some_and(Value::is_object) {
                new["status"] = json!({});
            }
            let mut conditions = new.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
            conditions.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
            conditions.push(json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": now_rfc3339()}));
            new["status"]["conditions"] = json!(conditions);
            Ok(UpdateAction::Put(new))
        };
        write::update(self.storage.as_ref(), &kind.key(namespace, name), Preconditions::default(), &update, opts.dry_run)
            .await
            .map_err(|e| e.for_object(&gr, name))?;
        Ok(crate::status::success(json!({"name": name, "kind": "pods"})))
    }

    /// DELETE of a collection: deletes (or marks for deletion) every selected object; answers
    /// the list of what it deleted or marked.
    pub async fn delete_collection(
        &self,
        kind: &Kind,
        namespace: Option<&str>,
        selector: &Selector,
        opts: &WriteOptions,
    ) -> Result<Value> {
        let mut list = self.list(kind, namespace, selector, ListOptions::default(), 0).await?;
        let mut done = Vec::new();
        for item in list["items"].as_array().cloned().unwrap_or_default() {
            let ns = item.pointer("/metadata/namespace").and_then(Value::as_str);
            let name = meta_str(&item, "name");
            match self.delete(kind, ns.or(namespace), name, Preconditions::default(), None, opts).await {
                Ok(DeleteResult::Pending(v)) => done.push(v),
                Ok(DeleteResult::Deleted(_)) => done.push(item),
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        list["items"] = json!(done);
        Ok(list)
    }

    /// Creates a namespace if it does not exist (default, kube-system, ... at startup).
    pub async fn ensure_namespace(&self, name: &str) -> Result<()> {
        let nk = crate::registry::lookup("", "v1", "namespaces").expect("namespaces are in the table");
        match self.create(nk, None, json!({"metadata": {"name": name}}), &WriteOptions::default()).await {
            Ok(_) | Err(Error::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// WATCH: a stream of watch event lines (`{"type": ..., "object": ...}\n`), ending at the timeout
    /// or after an ERROR event. Errors before the first event (bad parameters, store down) are
    /// returned directly so the handler can answer with a plain Status.
    pub async fn watch(
        self: &Arc<Self>,
        kind: &'static Kind,
        namespace: Option<String>,
        selector: Selector,
        req: WatchRequest,
    ) -> Result<BoxStream<'static, Bytes>> {
        let rv = req.resource_version.clone().unwrap_or_default();
        let initial = match req.send_initial_events {
            Some(true) => {
                if !req.allow_bookmarks {
                    return Err(Error::Invalid {
                        group: "meta.k8s.io".into(),
                        kind: "ListOptions".into(),
                        name: String::new(),
                        causes: vec![Cause::invalid(
                            "sendInitialEvents",
                            &json!(true),
                            "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled \
                             and allowWatchBookmarks is set",
                        )],
                    });
                }
                true
            }
            Some(false) => false,
            None => rv.is_empty() || rv == "0",
        };
        let prefix = kind.prefix(namespace.as_deref());
        // Initial state: the objects at one revision, then changes after it.
        let (initial_items, after) = if initial {
            let page = self.storage.list(&prefix, ListOptions::default(), &|v| selector.matches(v)).await?;
            (page.items, page.revision)
        } else if rv.is_empty() || rv == "0" {
            (Vec::new(), self.storage.current_revision().await?)
        } else {
            let from = parse_rv(&rv)?;
            self.require_revision(from).await?;
            (Vec::new(), from)
        };
        let progress = req.allow_bookmarks.then_some(self.bookmark_every);
        let selector = Arc::new(selector);
        let filter: Option<WatchFilter> = if selector.is_empty() {
            None
        } else {
            let selector = selector.clone();
            Some(Arc::new(move |v: &Value| selector.matches(v)))
        };
        let mut events = self.storage.watch(&prefix, after, progress, filter).await?;
        let timeout = req.timeout.unwrap_or(Duration::from_secs(1800));
        let bookmark = move |rv: i64, end_of_initial: bool| {
            let mut meta = json!({"resourceVersion": rv.to_string()});
            if end_of_initial {
                meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
            }
            value_line(&json!({"type": "BOOKMARK", "object": {"kind": kind.kind, "apiVersion": kind.api_version(), "metadata": meta}}))
        };
        let send_end_bookmark = req.send_initial_events == Some(true);
        let stream = async_stream::stream! {
            let _open = crate::metrics::global().watch_started();
            for item in initial_items {
                yield value_line(&json!({"type": "ADDED", "object": item.value}));
            }
            if send_end_bookmark {
                yield bookmark(after, true);
            }
            let deadline = tokio::time::sleep(timeout);
            tokio::pin!(deadline);
            loop {
                let ev = tokio::select! {
                    _ = &mut deadline => break,
                    ev = events.next() => ev,
                };
                let ev = match ev {
                    Some(Ok(ev)) => ev,
                    Some(Err(e)) => {
                        yield value_line(&json!({"type": "ERROR", "object": crate::status::status_of(&e).1}));
                        break;
                    }
                    None => break,
                };
                match ev {
                    WatchEvent::Progress(rev) => {
                        yield bookmark(rev, false);
                    }
                    WatchEvent::Put { object, prev } => {
                        let now = selector.matches(&object.value);
                        let before = prev.as_ref().map(|p| selector.matches(&p.value));
                        let ty = match (now, before) {
                            (true, None) | (true, Some(false)) => "ADDED",
                            (true, Some(true)) => "MODIFIED",
                            // It left the selection: watchers see it go away.
                            (false, Some(true)) => "DELETED",
                            (false, _) => continue,
                        };
                        yield event_line(ty, object.json());
                    }
                    WatchEvent::Delete { prev } => {
                        if selector.matches(&prev.value) {
                            yield event_line("DELETED", prev.json());
                        }
                    }
                }
            }
        };
        Ok(stream.boxed())
    }
}
