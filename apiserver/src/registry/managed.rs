//! `metadata.managedFields`: which manager owns which fields, kept on every write, and
//! server-side apply on top of it. Pure functions over JSON; the sets are `fields.rs`.
//!
//! - A non-apply write (POST, PUT, PATCH) gives its manager an `Update` entry for the fields
//!   it added or changed, takes them away from every other manager (updates never conflict),
//!   and removes the fields it deleted from everyone.
//! - An apply merges the configuration into the live object (`fields::merge`: maps by field,
//!   keyed lists by key, finalizers as a set, other lists whole), removes the fields this
//!   manager applied last time and no longer applies unless another manager owns them (or
//!   something below them), and refuses with the list of conflicts if it would change a value
//!   another manager owns, unless forced, which moves those fields to the applier.
//! - System fields (`apiVersion`, `kind`, name, uid, resourceVersion, ...) are never owned; nor
//!   is `status` on the main resource of a kind with a status subresource (it is reset there),
//!   while writes to `.../status` own only `status`.
//! - An entry's time changes only when its fields do, so a repeated apply writes nothing.

use serde_json::{json, Map, Value};

use crate::error::{Cause, Error};
use crate::registry::fields::{self, diff, field_set, has_descendant, leaves, FieldSet, Path};

/// `operation` of an entry written by server-side apply.
pub const APPLY: &str = "Apply";
/// `operation` of an entry written by any other write.
pub const UPDATE: &str = "Update";

/// Metadata fields nobody owns.
const SYSTEM_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// One `metadata.managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The field manager.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// The apiVersion the fields were written in.
    pub api_version: String,
    /// When the fields last changed (RFC 3339).
    pub time: String,
    /// `status` or `scale` for writes to those subresources, else "".
    pub subresource: String,
    /// The owned fields.
    pub fields: FieldSet,
}

impl Entry {
    fn is(&self, manager: &str, operation: &str, subresource: &str) -> bool {
        self.manager == manager && self.operation == operation && self.subresource == subresource
    }

    /// How conflicts name the manager: `"kubectl"`, `"kubectl-scale" using apps/v1`.
    fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == UPDATE {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }

    fn to_json(&self) -> Value {
        let mut v = json!({
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": fields::encode(&self.fields),
        });
        if !self.subresource.is_empty() {
            v["subresource"] = json!(self.subresource);
        }
        v
    }

    fn from_json(v: &Value) -> Option<Self> {
        let s = |f: &str| v.get(f).and_then(Value::as_str).unwrap_or("").to_string();
        let operation = s("operation");
        if operation != APPLY && operation != UPDATE {
            return None;
        }
        Some(Self {
            manager: s("manager"),
            operation,
            api_version: s("apiVersion"),
            time: s("time"),
            subresource: s("subresource"),
            fields: fields::decode(v.get("fieldsV1")?)?,
        })
    }
}

/// Who writes, and where.
#[derive(Debug, Clone)]
pub struct Writer<'a> {
    /// The field manager ("" records nothing for this writer).
    pub manager: &'a str,
    /// The kind's apiVersion (`apps/v1`).
    pub api_version: String,
    /// `Some("status")` for the status subresource (which owns only `status`), `Some("scale")`
    /// for the scale subresource (which writes the main resource's `spec.replicas`).
    pub subresource: Option<&'a str>,
    /// Whether the kind's status is written only through `.../status`.
    pub status_separate: bool,
    /// The time stamped on entries that change.
    pub now: &'a str,
}

/// The entries of `obj` (entries that are not valid FieldsV1 are dropped).
pub fn read(obj: &Value) -> Vec<Entry> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Entry::from_json).collect())
        .unwrap_or_default()
}

/// Sets `metadata.managedFields` to the entries that own something (none: the field goes).
pub fn write(obj: &mut Value, entries: Vec<Entry>) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(Entry::to_json)
        .collect();
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    if list.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(list));
    }
}

/// The part of `obj` that can be owned by a write to `subresource`.
pub fn owned_view(obj: &Value, subresource: Option<&str>, status_separate: bool) -> Value {
    let mut v = obj.clone();
    let Some(m) = v.as_object_mut() else {
        return json!({});
    };
    if subresource == Some("status") {
        m.retain(|k, _| k == "status");
        return v;
    }
    m.remove("apiVersion");
    m.remove("kind");
    if status_separate {
        m.remove("status");
    }
    if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
        for f in SYSTEM_META {
            meta.remove(*f);
        }
        if meta.is_empty() {
            m.remove("metadata");
        }
    }
    v
}

/// The entries a write starts from: the ones in the new object if the client changed them (a
/// non-empty list that differs, as kube-apiserver allows), else the stored ones.
fn base_entries(old: Option<&Value>, new: &Value) -> Vec<Entry> {
    let sent = new.pointer("/metadata/managedFields");
    let stored = old.and_then(|o| o.pointer("/metadata/managedFields"));
    match sent {
        Some(Value::Array(a)) if !a.is_empty() && sent != stored => read(new),
        _ => old.map(read).unwrap_or_default(),
    }
}

/// Records a non-apply write of `new` over `old` (`None`: a create) in `new`'s managedFields.
pub fn record_update(old: Option<&Value>, new: &mut Value, w: &Writer) {
    let mut entries = base_entries(old, new);
    let view = |o: &Value| leaves(&owned_view(o, w.subresource, w.status_separate));
    let before = old.map(view).unwrap_or_default();
    let (changed, removed) = diff(&before, &view(new));
    let sub = w.subresource.unwrap_or("");
    for e in entries.iter_mut().filter(|e| !e.is(w.manager, UPDATE, sub)) {
        e.fields
            .retain(|p| !changed.contains(p) && !removed.contains(p));
    }
    if !w.manager.is_empty() {
        let pos = match entries.iter().position(|e| e.is(w.manager, UPDATE, sub)) {
            Some(i) => i,
            None => {
                entries.push(Entry {
                    manager: w.manager.to_string(),
                    operation: UPDATE.into(),
                    api_version: w.api_version.clone(),
                    time: w.now.to_string(),
                    subresource: sub.to_string(),
                    fields: FieldSet::new(),
                });
                entries.len() - 1
            }
        };
        let mine = &mut entries[pos];
        let owned: FieldSet = mine
            .fields
            .union(&changed)
            .filter(|p| !removed.contains(*p))
            .cloned()
            .collect();
        if owned != mine.fields {
            mine.fields = owned;
            mine.time = w.now.to_string();
            mine.api_version = w.api_version.clone();
        }
    }
    write(new, entries);
}

/// The 409 for fields owned by other managers, in kube-apiserver's words.
pub fn conflict_error(conflicts: &[(String, Path)]) -> Error {
    let causes: Vec<Cause> = conflicts
        .iter()
        .map(|(who, path)| Cause {
            reason: "FieldManagerConflict".into(),
            message: format!("conflict with {who}"),
            field: fields::path_string(path),
        })
        .collect();
    let message = if let [(who, path)] = conflicts {
        format!(
            "Apply failed with 1 conflict: conflict with {who}: {}",
            fields::path_string(path)
        )
    } else {
        let mut by_manager: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
        for (who, path) in conflicts {
            by_manager
                .entry(who)
                .or_default()
                .push(fields::path_string(path));
        }
        let parts: Vec<String> = by_manager
            .iter()
            .map(|(who, paths)| {
                format!(
                    "conflicts with {who}:\n{}",
                    paths
                        .iter()
                        .map(|p| format!("- {p}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            })
            .collect();
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            parts.join("\n")
        )
    };
    Error::ApplyConflict { message, causes }
}

/// Server-side apply of `config` by `w.manager` to `live` (`None`: the object is created from
/// it), of the whole object or (`w.subresource` = status) its status: the merged object with
/// its managedFields, or the conflicts (manager, path).
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    w: &Writer,
    force: bool,
) -> Result<Value, Vec<(String, Path)>> {
    let config = &fields::without_nulls(config);
    let sub = w.subresource.unwrap_or("");
    let config_view = owned_view(config, w.subresource, w.status_separate);
    let applied = field_set(&config_view);
    let mut entries = live.map(read).unwrap_or_default();
    let last = entries
        .iter()
        .find(|e| e.is(w.manager, APPLY, sub))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let base = live.cloned().unwrap_or_else(|| json!({}));
    let mut merged = fields::merge(&base, config);

    // Fields applied last time and not now go, unless someone (this apply included) still owns
    // them or something below them.
    let mut kept: FieldSet = applied.clone();
    for e in entries.iter().filter(|e| !e.is(w.manager, APPLY, sub)) {
        kept.extend(e.fields.iter().cloned());
    }
    for path in last.iter().rev() {
        // A kept list element keeps its key; a removed one takes it along.
        if kept.contains(path) || has_descendant(&kept, path) || fields::is_key_field(path) {
            continue;
        }
        if fields::remove(&mut merged, path) {
            prune_empty_parents(&mut merged, path, &kept);
        }
    }

    let view = |o: &Value| leaves(&owned_view(o, w.subresource, w.status_separate));
    let before = live.map(view).unwrap_or_default();
    let after = view(&merged);
    let (changed, removed) = diff(&before, &after);
    // Pruning spares what others own, so anything of theirs that changed or went, the merge
    // did: a value replaced, or a map replaced by a scalar (an empty map that got fields is
    // not gone, it just stops being a member).
    let after: FieldSet = after.into_keys().collect();
    let gone = |p: &Path| removed.contains(p) && !has_descendant(&after, p);
    let mut conflicts = Vec::new();
    for e in entries.iter().filter(|e| !e.is(w.manager, APPLY, sub)) {
        for p in e.fields.iter().filter(|p| changed.contains(*p) || gone(p)) {
            conflicts.push((e.describe(), p.clone()));
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    for e in entries.iter_mut().filter(|e| !e.is(w.manager, APPLY, sub)) {
        e.fields
            .retain(|p| !changed.contains(p) && !removed.contains(p));
    }
    match entries.iter_mut().find(|e| e.is(w.manager, APPLY, sub)) {
        Some(mine) if mine.fields == applied => {}
        Some(mine) => {
            mine.fields = applied;
            mine.time = w.now.to_string();
            mine.api_version = w.api_version.clone();
        }
        None => entries.push(Entry {
            manager: w.manager.to_string(),
            operation: APPLY.into(),
            api_version: w.api_version.clone(),
            time: w.now.to_string(),
            subresource: sub.to_string(),
            fields: applied,
        }),
    }
    if !merged.get("metadata").is_some_and(Value::is_object) {
        merged["metadata"] = Value::Object(Map::new());
    }
    write(&mut merged, entries);
    Ok(merged)
}

/// After removing `path`, removes the objects above it that it left empty and nobody owns
/// (`labels: {}` after the last applied label went); top-level fields stay.
fn prune_empty_parents(obj: &mut Value, path: &Path, kept: &FieldSet) {
    for len in (2..path.len()).rev() {
        let parent = path[..len].to_vec();
        let empty =
            fields::get_mut(obj, &parent).is_some_and(|v| v.as_object().is_some_and(Map::is_empty));
        if !empty || kept.contains(&parent) || !parent.last().is_some_and(|el| el.starts_with("f:"))
        {
            return;
        }
        fields::remove(obj, &parent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer<'a>(manager: &'a str, now: &'a str) -> Writer<'a> {
        Writer {
            manager,
            api_version: "apps/v1".into(),
            subresource: None,
            status_separate: true,
            now,
        }
    }

    fn deploy(replicas: i64, labels: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "labels": labels},
               "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "c", "image": "i:1"}]}}}})
    }

    fn owners(obj: &Value, path: &str) -> Vec<String> {
        let path: Path = path.split('.').map(|s| format!("f:{s}")).collect();
        read(obj)
            .into_iter()
            .filter(|e| e.fields.contains(&path))
            .map(|e| format!("{}/{}", e.manager, e.operation))
            .collect()
    }

    #[test]
    fn apply_creates_then_removes_what_it_no_longer_applies() {
        let created = apply(
            None,
            &deploy(2, json!({"app": "web", "tier": "fe"})),
            &writer("kubectl", "t1"),
            false,
        )
        .unwrap();
        assert_eq!(created["spec"]["replicas"], 2);
        let mf = &created["metadata"]["managedFields"];
        assert_eq!(
            (mf[0]["manager"].as_str(), mf[0]["operation"].as_str()),
            (Some("kubectl"), Some("Apply"))
        );
        assert_eq!(mf[0]["fieldsType"], "FieldsV1");
        assert_eq!(
            mf[0]["fieldsV1"]["f:metadata"]["f:labels"]["f:tier"],
            json!({})
        );
        assert!(mf[0]["fieldsV1"].get("f:apiVersion").is_none());
        assert!(mf[0]["fieldsV1"]["f:metadata"].get("f:name").is_none());

        let next = apply(
            Some(&created),
            &deploy(3, json!({"app": "web"})),
            &writer("kubectl", "t2"),
            false,
        )
        .unwrap();
        assert_eq!(next["spec"]["replicas"], 3);
        assert_eq!(next["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(next["metadata"]["managedFields"][0]["time"], "t2");
        // The same configuration again changes nothing, not even the time.
        let same = apply(
            Some(&next),
            &deploy(3, json!({"app": "web"})),
            &writer("kubectl", "t3"),
            false,
        )
        .unwrap();
        assert_eq!(same, next);
        // Dropping every label removes the emptied map too.
        let mut config = deploy(3, json!({}));
        config["metadata"].as_object_mut().unwrap().remove("labels");
        let bare = apply(Some(&next), &config, &writer("kubectl", "t4"), false).unwrap();
        assert!(bare["metadata"].get("labels").is_none(), "{bare}");
    }

    #[test]
    fn conflicts_force_and_shared_ownership() {
        let created = apply(
            None,
            &deploy(2, json!({"app": "web"})),
            &writer("kubectl", "t1"),
            false,
        )
        .unwrap();
        // Another manager changes replicas with an update: it now owns them alone.
        let mut scaled = created.clone();
        scaled["spec"]["replicas"] = json!(5);
        record_update(Some(&created), &mut scaled, &writer("kubectl-scale", "t2"));
        assert_eq!(owners(&scaled, "spec.replicas"), ["kubectl-scale/Update"]);
        assert_eq!(owners(&scaled, "metadata.labels.app"), ["kubectl/Apply"]);

        let err = apply(
            Some(&scaled),
            &deploy(3, json!({"app": "web"})),
            &writer("kubectl", "t3"),
            false,
        )
        .unwrap_err();
        assert_eq!(
            err,
            vec![(
                r#""kubectl-scale" using apps/v1"#.to_string(),
                vec!["f:spec".to_string(), "f:replicas".into()]
            )]
        );
        let Error::ApplyConflict { message, causes } = conflict_error(&err) else {
            panic!()
        };
        assert_eq!(
            message,
            r#"Apply failed with 1 conflict: conflict with "kubectl-scale" using apps/v1: .spec.replicas"#
        );
        assert_eq!(
            (causes[0].reason.as_str(), causes[0].field.as_str()),
            ("FieldManagerConflict", ".spec.replicas")
        );
        // Applying the live value is no conflict: both own it.
        let agreed = apply(
            Some(&scaled),
            &deploy(5, json!({"app": "web"})),
            &writer("kubectl", "t3"),
            false,
        )
        .unwrap();
        assert_eq!(
            owners(&agreed, "spec.replicas"),
            ["kubectl/Apply", "kubectl-scale/Update"]
        );
        // Forced: the field moves to the applier.
        let forced = apply(
            Some(&scaled),
            &deploy(3, json!({"app": "web"})),
            &writer("kubectl", "t3"),
            true,
        )
        .unwrap();
        assert_eq!(forced["spec"]["replicas"], 3);
        assert_eq!(owners(&forced, "spec.replicas"), ["kubectl/Apply"]);
        assert!(
            read(&forced).iter().all(|e| e.manager != "kubectl-scale"),
            "an entry that owns nothing goes"
        );
    }

    #[test]
    fn a_field_another_manager_owns_is_never_dropped() {
        let created = apply(
            None,
            &deploy(2, json!({"app": "web", "tier": "fe"})),
            &writer("a", "t1"),
            false,
        )
        .unwrap();
        let only_tier = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"tier": "fe"}}});
        let both = apply(Some(&created), &only_tier, &writer("b", "t2"), false).unwrap();
        assert_eq!(
            owners(&both, "metadata.labels.tier"),
            ["a/Apply", "b/Apply"]
        );
        // a stops applying tier: b still owns it, so it stays; app (a's alone) goes.
        let next = apply(
            Some(&both),
            &deploy(2, json!({})),
            &writer("a", "t3"),
            false,
        )
        .unwrap();
        assert_eq!(next["metadata"]["labels"], json!({"tier": "fe"}));
        // A container another manager added a field to stays when the applier drops it.
        let mut edited = next.clone();
        edited["spec"]["template"]["spec"]["containers"][0]["args"] = json!(["x"]);
        record_update(Some(&next), &mut edited, &writer("editor", "t4"));
        let mut without = deploy(2, json!({}));
        without["spec"]["template"]["spec"]["containers"] = json!([{"name": "d", "image": "j"}]);
        let out = apply(Some(&edited), &without, &writer("a", "t5"), false).unwrap();
        let names: Vec<&str> = out["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["c", "d"], "{out}");
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][0]["args"],
            json!(["x"])
        );
        assert!(out["spec"]["template"]["spec"]["containers"][0]
            .get("image")
            .is_none());
    }

    #[test]
    fn updates_track_changes_and_removals() {
        let obj = json!({"metadata": {"name": "x", "labels": {"a": "1"}}, "data": {"k": "v"}});
        let mut created = obj.clone();
        record_update(None, &mut created, &writer("creator", "t1"));
        let e = &read(&created)[0];
        assert_eq!(
            (e.manager.as_str(), e.operation.as_str(), e.fields.len()),
            ("creator", "Update", 2)
        );
        let mut next = created.clone();
        next["data"] = json!({"k": "w"});
        next["metadata"]["labels"] = json!({});
        record_update(Some(&created), &mut next, &writer("editor", "t2"));
        assert_eq!(owners(&next, "data.k"), ["editor/Update"]);
        assert_eq!(owners(&next, "metadata.labels"), ["editor/Update"]);
        assert!(read(&next).iter().all(|e| e.manager != "creator"), "{next}");
        // An unchanged write keeps the entries as they are.
        let mut same = next.clone();
        record_update(Some(&next), &mut same, &writer("third", "t3"));
        assert_eq!(same, next);
        // Status writes own status only; the main resource never owns it.
        let mut status = next.clone();
        status["status"] = json!({"phase": "x"});
        let mut w = writer("ctl", "t4");
        w.subresource = Some("status");
        record_update(Some(&next), &mut status, &w);
        let e = read(&status)
            .into_iter()
            .find(|e| e.manager == "ctl")
            .unwrap();
        assert_eq!((e.subresource.as_str(), e.fields.len()), ("status", 1));
        // A client may replace the entries ([{}] resets them).
        let mut reset = status.clone();
        reset["metadata"]["managedFields"] = json!([{}]);
        record_update(Some(&status), &mut reset, &writer("", "t5"));
        assert!(reset["metadata"].get("managedFields").is_none(), "{reset}");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;
        use proptest::test_runner::TestCaseError;

        /// Deployment configurations over a few labels, replicas, containers (keyed, with an
        /// atomic `args`) and finalizers (a set), so that managers often touch the same fields.
        fn config() -> impl Strategy<Value = Value> {
            let labels = prop::collection::btree_map(
                prop::sample::select(vec!["a", "b", "c"]),
                prop::sample::select(vec!["1", "2"]),
                0..3,
            );
            let container = (
                prop::option::of(prop::sample::select(vec!["i1", "i2"])),
                prop::option::of(prop::sample::select(vec!["p", "q"])),
            );
            let containers = prop::collection::btree_map(
                prop::sample::select(vec!["x", "y", "z"]),
                container,
                0..3,
            );
            let finalizers =
                prop::collection::btree_set(prop::sample::select(vec!["f1", "f2"]), 0..3);
            (labels, prop::option::of(0i64..3), containers, finalizers).prop_map(|(labels, replicas, containers, finalizers)| {
                let mut c = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}});
                if !labels.is_empty() {
                    c["metadata"]["labels"] = json!(labels);
                }
                if !finalizers.is_empty() {
                    c["metadata"]["finalizers"] = json!(finalizers);
                }
                if let Some(r) = replicas {
                    c["spec"]["replicas"] = json!(r);
                }
                if !containers.is_empty() {
                    let list: Vec<Value> = containers
                        .into_iter()
                        .map(|(name, (image, arg))| {
                            let mut c = json!({"name": name});
                            if let Some(i) = image {
                                c["image"] = json!(i);
                            }
                            if let Some(a) = arg {
                                c["args"] = json!([a]);
                            }
                            c
                        })
                        .collect();
                    c["spec"]["template"]["spec"]["containers"] = json!(list);
                }
                c
            })
        }

        fn view(o: &Value) -> std::collections::BTreeMap<Path, Value> {
            leaves(&owned_view(o, None, true))
        }

        /// One apply by `manager` of `config` over `prev`, checked against what apply promises.
        fn check_apply(
            prev: &Value,
            config: &Value,
            manager: &str,
        ) -> Result<Value, TestCaseError> {
            let w = writer(manager, "t9");
            let wanted = view(config);
            let new = match apply(Some(prev), config, &w, false) {
                Ok(new) => {
                    // Fields other managers own keep their values (an empty map may get fields).
                    let (before, after) = (view(prev), view(&new));
                    let after_set: FieldSet = after.keys().cloned().collect();
                    for e in read(prev).iter().filter(|e| !e.is(manager, APPLY, "")) {
                        for p in e.fields.iter().filter(|p| before.contains_key(*p)) {
                            if before[p] == json!({}) && has_descendant(&after_set, p) {
                                continue;
                            }
                            prop_assert_eq!(
                                after.get(p),
                                before.get(p),
                                "{} lost {:?}",
                                e.manager,
                                p
                            );
                        }
                    }
                    new
                }
                Err(conflicts) => {
                    prop_assert!(!conflicts.is_empty());
                    let new = apply(Some(prev), config, &w, true).unwrap();
                    // Forced: nobody else owns the conflicting fields.
                    for (_, p) in &conflicts {
                        let others: Vec<String> = read(&new)
                            .into_iter()
                            .filter(|e| e.fields.contains(p) && e.manager != manager)
                            .map(|e| e.manager)
                            .collect();
                        prop_assert!(others.is_empty(), "{:?} still own {:?}", others, p);
                    }
                    new
                }
            };
            // The applied values are live, and owned by the applier.
            let after = view(&new);
            let mine = read(&new)
                .into_iter()
                .find(|e| e.is(manager, APPLY, ""))
                .map(|e| e.fields)
                .unwrap_or_default();
            for (p, v) in &wanted {
                prop_assert_eq!(after.get(p), Some(v), "{:?}", p);
                prop_assert!(mine.contains(p));
            }
            // Nobody owns what does not exist; applying again changes nothing.
            for e in read(&new) {
                for p in &e.fields {
                    prop_assert!(after.contains_key(p), "{} owns missing {:?}", e.manager, p);
                }
            }
            prop_assert_eq!(&apply(Some(&new), config, &w, false).unwrap(), &new);
            Ok(new)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]

            #[test]
            fn field_sets_round_trip_through_fields_v1(c in config()) {
                let set = field_set(&c);
                prop_assert_eq!(fields::decode(&fields::encode(&set)), Some(set));
            }

            #[test]
            fn applies_and_updates_by_several_managers(c1 in config(), c2 in config(), edit in config(), c3 in config(), c4 in config()) {
                let live = apply(None, &c1, &writer("a", "t1"), false).unwrap();
                let live = check_apply(&live, &c2, "b")?;
                // An update by another manager: adds and changes, and drops label a.
                let mut edited = fields::merge(&live, &edit);
                if let Some(labels) = edited.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
                    labels.remove("a");
                }
                record_update(Some(&live), &mut edited, &writer("e", "t3"));
                let live = check_apply(&edited, &c3, "a")?;
                check_apply(&live, &c4, "b")?;
            }
        }
    }
}
