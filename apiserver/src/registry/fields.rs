//! Field sets for `metadata.managedFields` (server-side apply), as pure functions on JSON.
//!
//! A field set is a set of paths; a path is a list of elements in kube's `FieldsV1` spelling:
//! `f:<field>` (a field of an object), `k:<json>` (an element of an associative list, named by
//! its merge key), `v:<json>` (an element of a set-like list). Only *members* are in a set:
//! scalars, atomic lists, empty objects, and list elements themselves (`.` in FieldsV1);
//! an object with fields is never a member, its fields are.
//!
//! Worked example: `{"metadata": {"labels": {"app": "web"}}, "spec": {"containers":
//! [{"name": "c", "image": "i"}]}}` has the members
//! `f:metadata f:labels f:app`, `f:spec f:containers k:{"name":"c"}`,
//! `f:spec f:containers k:{"name":"c"} f:name` and `... f:image`, encoded as
//! `{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"c\"}":{".":{},"f:image":{},"f:name":{}}}}}`.
//!
//! Lists: those strategic merge patch merges by key (`patch::merge_key`: containers, env,
//! volumes by name, ports by containerPort or port, ...) are associative; `finalizers` is a set;
//! every other list is atomic (owned as a whole, like a scalar), as is a keyed list whose
//! elements lack the key or repeat it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use crate::registry::patch::merge_key;

/// One path: `["f:spec", "f:replicas"]`.
pub type Path = Vec<String>;

/// A set of member paths.
pub type FieldSet = BTreeSet<Path>;

/// How a list's elements are owned.
enum ListKind {
    /// By merge key: `k:{"name":"c"}`.
    Associative(&'static str),
    /// By value: `v:"example.com/x"`.
    Set,
    /// As a whole.
    Atomic,
}

fn list_kind(field: &str, items: &[Value]) -> ListKind {
    if items.is_empty() {
        return ListKind::Atomic;
    }
    if field == "finalizers" && items.iter().all(Value::is_string) {
        let unique: BTreeSet<&str> = items.iter().filter_map(Value::as_str).collect();
        return if unique.len() == items.len() {
            ListKind::Set
        } else {
            ListKind::Atomic
        };
    }
    let Some(key) = merge_key(field, items) else {
        return ListKind::Atomic;
    };
    let mut seen = BTreeSet::new();
    for item in items {
        match item.get(key) {
            Some(k) if item.is_object() && seen.insert(k.to_string()) => {}
            _ => return ListKind::Atomic,
        }
    }
    ListKind::Associative(key)
}

/// Checks that every list the sets treat by key or by value can be: keyed elements are objects
/// with their key, keys and set values do not repeat (`Err` names the first offender, like
/// `.spec.containers: duplicate entries for key name="c"`).
pub fn check_lists(obj: &Value) -> Result<(), String> {
    check_value("", obj, &mut Vec::new())
}

fn check_value(field: &str, v: &Value, path: &mut Path) -> Result<(), String> {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                path.push(format!("f:{k}"));
                check_value(k, child, path)?;
                path.pop();
            }
            Ok(())
        }
        Value::Array(items) if !items.is_empty() => {
            let at = path_string(path);
            if field == "finalizers" && items.iter().all(Value::is_string) {
                let unique: BTreeSet<&str> = items.iter().filter_map(Value::as_str).collect();
                return if unique.len() == items.len() {
                    Ok(())
                } else {
                    Err(format!("{at}: duplicate entries"))
                };
            }
            let Some(key) = merge_key(field, items) else {
                return Ok(());
            };
            let mut seen = BTreeSet::new();
            for item in items {
                let Some(k) = item.get(key).filter(|_| item.is_object()) else {
                    return Err(format!("{at}: every element needs its key {key}"));
                };
                if !seen.insert(k.to_string()) {
                    return Err(format!("{at}: duplicate entries for key {key}={k}"));
                }
            }
            for item in items {
                path.push(format!("k:{}", json!({ key: item[key].clone() })));
                check_value("", item, path)?;
                path.pop();
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Merges an applied configuration into `live` the way the sets see objects: maps field by
/// field, keyed lists element by element (new elements appended), set lists as a union, other
/// lists and scalars replaced. An empty list leaves a keyed or set list as it is.
pub fn merge(live: &Value, config: &Value) -> Value {
    merge_field("", live, config)
}

fn merge_field(field: &str, live: &Value, config: &Value) -> Value {
    match (live, config) {
        (Value::Object(l), Value::Object(c)) => {
            let mut out = l.clone();
            for (k, v) in c {
                let merged = match l.get(k) {
                    Some(lv) => merge_field(k, lv, v),
                    None => v.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(l), Value::Array(c)) => {
            let kind = if c.is_empty() {
                list_kind(field, l)
            } else {
                list_kind(field, c)
            };
            match kind {
                ListKind::Associative(key) => {
                    let mut out = l.clone();
                    for item in c {
                        match out.iter().position(|o| o.get(key) == item.get(key)) {
                            Some(i) => out[i] = merge_field("", &out[i], item),
                            None => out.push(item.clone()),
                        }
                    }
                    Value::Array(out)
                }
                ListKind::Set => {
                    let mut out = l.clone();
                    for item in c {
                        if !out.contains(item) {
                            out.push(item.clone());
                        }
                    }
                    Value::Array(out)
                }
                ListKind::Atomic => config.clone(),
            }
        }
        _ => config.clone(),
    }
}

/// `obj` without its null fields (in an applied configuration, null means "not mine").
pub fn without_nulls(obj: &Value) -> Value {
    match obj {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// Every member path of `obj` with its value (a list element's value is its key object).
pub fn leaves(obj: &Value) -> BTreeMap<Path, Value> {
    let mut out = BTreeMap::new();
    if let Value::Object(m) = obj {
        walk_fields(m, &mut Vec::new(), &mut out);
    }
    out
}

/// The member paths of `obj`.
pub fn field_set(obj: &Value) -> FieldSet {
    leaves(obj).into_keys().collect()
}

fn walk_fields(m: &Map<String, Value>, path: &mut Path, out: &mut BTreeMap<Path, Value>) {
    for (k, v) in m {
        path.push(format!("f:{k}"));
        walk_value(k, v, path, out);
        path.pop();
    }
}

fn walk_value(field: &str, v: &Value, path: &mut Path, out: &mut BTreeMap<Path, Value>) {
    match v {
        Value::Object(m) if !m.is_empty() => walk_fields(m, path, out),
        Value::Array(items) => match list_kind(field, items) {
            ListKind::Associative(key) => {
                for item in items {
                    let key_obj = json!({ key: item[key].clone() });
                    path.push(format!("k:{key_obj}"));
                    out.insert(path.clone(), key_obj);
                    if let Value::Object(m) = item {
                        walk_fields(m, path, out);
                    }
                    path.pop();
                }
            }
            ListKind::Set => {
                for item in items {
                    path.push(format!("v:{item}"));
                    out.insert(path.clone(), item.clone());
                    path.pop();
                }
            }
            ListKind::Atomic => {
                out.insert(path.clone(), v.clone());
            }
        },
        _ => {
            out.insert(path.clone(), v.clone());
        }
    }
}

/// The paths whose value `new` adds or changes relative to `old`, and those it removes.
pub fn diff(old: &BTreeMap<Path, Value>, new: &BTreeMap<Path, Value>) -> (FieldSet, FieldSet) {
    let changed = new
        .iter()
        .filter(|(p, v)| old.get(*p) != Some(*v))
        .map(|(p, _)| p.clone())
        .collect();
    let removed = old
        .keys()
        .filter(|p| !new.contains_key(*p))
        .cloned()
        .collect();
    (changed, removed)
}

/// Whether `set` holds a path strictly below `path`.
pub fn has_descendant(set: &FieldSet, path: &Path) -> bool {
    set.range(path.clone()..)
        .skip_while(|p| *p == path)
        .take_while(|p| p.starts_with(path))
        .next()
        .is_some()
}

/// A set as `FieldsV1` JSON.
pub fn encode(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut node = &mut root;
        for el in path {
            node = node
                .entry(el.clone())
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("nodes are objects");
        }
        node.insert(".".into(), json!({}));
    }
    let mut root = Value::Object(root);
    collapse_leaves(&mut root);
    root
}

/// `{".": {}}` (a member without children) is written `{}`.
fn collapse_leaves(v: &mut Value) {
    if let Value::Object(m) = v {
        if m.len() == 1 && m.contains_key(".") {
            m.clear();
            return;
        }
        for (k, child) in m.iter_mut() {
            if k != "." {
                collapse_leaves(child);
            }
        }
    }
}

/// A set from `FieldsV1` JSON; `None` if it is not one.
pub fn decode(v: &Value) -> Option<FieldSet> {
    let mut set = FieldSet::new();
    let Value::Object(m) = v else { return None };
    for (k, child) in m {
        decode_node(k, child, &mut Vec::new(), &mut set)?;
    }
    Some(set)
}

fn decode_node(el: &str, node: &Value, path: &mut Path, set: &mut FieldSet) -> Option<()> {
    if !["f:", "k:", "v:", "i:"].iter().any(|p| el.starts_with(p)) {
        return None;
    }
    let Value::Object(m) = node else { return None };
    path.push(el.to_string());
    if m.is_empty() || m.contains_key(".") {
        set.insert(path.clone());
    }
    for (k, child) in m {
        if k != "." {
            decode_node(k, child, path, set)?;
        }
    }
    path.pop();
    Some(())
}

/// A path as kube prints it in conflicts: `.spec.containers[name="app"].image`,
/// `.metadata.finalizers[="example.com/x"]`.
pub fn path_string(path: &Path) -> String {
    let mut out = String::new();
    for el in path {
        if let Some(f) = el.strip_prefix("f:") {
            out.push('.');
            out.push_str(f);
        } else if let Some(k) = el.strip_prefix("k:") {
            let keys: Vec<String> = match serde_json::from_str::<Map<String, Value>>(k) {
                Ok(m) => m.iter().map(|(k, v)| format!("{k}={v}")).collect(),
                Err(_) => vec![k.to_string()],
            };
            out.push_str(&format!("[{}]", keys.join(",")));
        } else if let Some(v) = el.strip_prefix("v:") {
            out.push_str(&format!("[={v}]"));
        } else {
            out.push_str(&format!("[{el}]"));
        }
    }
    out
}

/// Whether `path` names the merge key of a keyed list element (`... k:{"name":"c"} f:name`).
pub fn is_key_field(path: &[String]) -> bool {
    let [.., el, field] = path else { return false };
    let (Some(keys), Some(field)) = (el.strip_prefix("k:"), field.strip_prefix("f:")) else {
        return false;
    };
    serde_json::from_str::<Map<String, Value>>(keys).is_ok_and(|m| m.contains_key(field))
}

/// Whether list element `item` is the one path element `el` (`k:` or `v:`) names.
fn element_matches(el: &str, item: &Value) -> bool {
    if let Some(k) = el.strip_prefix("k:") {
        let Ok(Value::Object(keys)) = serde_json::from_str::<Value>(k) else {
            return false;
        };
        return keys.iter().all(|(k, v)| item.get(k) == Some(v));
    }
    if let Some(v) = el.strip_prefix("v:") {
        return serde_json::from_str::<Value>(v).is_ok_and(|v| &v == item);
    }
    false
}

fn child_mut<'a>(v: &'a mut Value, el: &str) -> Option<&'a mut Value> {
    match v {
        Value::Object(m) => m.get_mut(el.strip_prefix("f:")?),
        Value::Array(items) => items.iter_mut().find(|i| element_matches(el, i)),
        _ => None,
    }
}

/// The value at `path`, if it exists.
pub fn get_mut<'a>(obj: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(obj, |v, el| child_mut(v, el))
}

/// Removes the field or list element at `path`; false if there was none.
pub fn remove(obj: &mut Value, path: &Path) -> bool {
    let Some((last, parent)) = path.split_last() else {
        return false;
    };
    match get_mut(obj, parent) {
        Some(Value::Object(m)) => last
            .strip_prefix("f:")
            .is_some_and(|f| m.remove(f).is_some()),
        Some(Value::Array(items)) => {
            let before = items.len();
            items.retain(|i| !element_matches(last, i));
            items.len() != before
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(els: &[&str]) -> Path {
        els.iter().map(|s| s.to_string()).collect()
    }

    fn deployment() -> Value {
        json!({"metadata": {"labels": {"app": "web"}, "finalizers": ["a/b"]},
               "spec": {"replicas": 2, "template": {"spec": {
                   "containers": [{"name": "c", "image": "i", "args": ["x", "y"], "ports": [{"containerPort": 80}]}],
                   "tolerations": [{"key": "k"}]}}}})
    }

    #[test]
    fn members_of_an_object() {
        let set = field_set(&deployment());
        let c = [
            "f:spec",
            "f:template",
            "f:spec",
            "f:containers",
            r#"k:{"name":"c"}"#,
        ];
        let expected: FieldSet = [
            p(&["f:metadata", "f:labels", "f:app"]),
            p(&["f:metadata", "f:finalizers", r#"v:"a/b""#]),
            p(&["f:spec", "f:replicas"]),
            p(&c),
            p(&[&c[..], &["f:name"]].concat()),
            p(&[&c[..], &["f:image"]].concat()),
            p(&[&c[..], &["f:args"]].concat()),
            p(&[&c[..], &["f:ports", r#"k:{"containerPort":80}"#]].concat()),
            p(&[
                &c[..],
                &["f:ports", r#"k:{"containerPort":80}"#, "f:containerPort"],
            ]
            .concat()),
            p(&["f:spec", "f:template", "f:spec", "f:tolerations"]),
        ]
        .into_iter()
        .collect();
        assert_eq!(set, expected);
        // Keys that repeat make the list atomic; an empty object is a member.
        let dup = json!({"env": [{"name": "A"}, {"name": "A"}], "labels": {}});
        assert_eq!(
            field_set(&dup),
            [p(&["f:env"]), p(&["f:labels"])].into_iter().collect()
        );
    }

    #[test]
    fn fields_v1_round_trip() {
        let set = field_set(&deployment());
        let enc = encode(&set);
        assert_eq!(enc["f:spec"]["f:replicas"], json!({}));
        let el = &enc["f:spec"]["f:template"]["f:spec"]["f:containers"][r#"k:{"name":"c"}"#];
        assert_eq!(el["."], json!({}));
        assert_eq!(el["f:image"], json!({}));
        assert_eq!(enc["f:metadata"]["f:finalizers"][r#"v:"a/b""#], json!({}));
        assert_eq!(decode(&enc), Some(set));
        assert_eq!(decode(&json!({"spec": {}})), None);
        assert_eq!(decode(&json!([])), None);
        assert_eq!(decode(&json!({})), Some(FieldSet::new()));
    }

    #[test]
    fn diffs_and_descendants() {
        let old = leaves(&deployment());
        let mut new_obj = deployment();
        new_obj["spec"]["replicas"] = json!(3);
        new_obj["metadata"]["labels"] = json!({"tier": "fe"});
        let (changed, removed) = diff(&old, &leaves(&new_obj));
        assert_eq!(
            changed,
            [
                p(&["f:metadata", "f:labels", "f:tier"]),
                p(&["f:spec", "f:replicas"])
            ]
            .into_iter()
            .collect()
        );
        assert_eq!(
            removed,
            [p(&["f:metadata", "f:labels", "f:app"])]
                .into_iter()
                .collect()
        );
        let set = field_set(&deployment());
        assert!(has_descendant(&set, &p(&["f:spec", "f:template"])));
        assert!(!has_descendant(&set, &p(&["f:spec", "f:replicas"])));
        assert!(!has_descendant(&set, &p(&["f:spe"])));
    }

    #[test]
    fn paths_print_and_remove() {
        let c = p(&[
            "f:spec",
            "f:template",
            "f:spec",
            "f:containers",
            r#"k:{"name":"c"}"#,
            "f:image",
        ]);
        assert_eq!(
            path_string(&c),
            r#".spec.template.spec.containers[name="c"].image"#
        );
        assert_eq!(
            path_string(&p(&["f:metadata", "f:finalizers", r#"v:"a/b""#])),
            r#".metadata.finalizers[="a/b"]"#
        );
        let mut obj = deployment();
        assert!(remove(&mut obj, &c));
        assert!(obj["spec"]["template"]["spec"]["containers"][0]
            .get("image")
            .is_none());
        assert!(remove(
            &mut obj,
            &p(&["f:metadata", "f:finalizers", r#"v:"a/b""#])
        ));
        assert_eq!(obj["metadata"]["finalizers"], json!([]));
        assert!(remove(&mut obj, &c[..5].to_vec()));
        assert_eq!(obj["spec"]["template"]["spec"]["containers"], json!([]));
        assert!(!remove(&mut obj, &p(&["f:nope", "f:x"])));
        assert!(!remove(&mut obj, &Vec::new()));
        assert!(is_key_field(&p(&["f:c", r#"k:{"name":"c"}"#, "f:name"])));
        assert!(!is_key_field(&p(&["f:c", r#"k:{"name":"c"}"#, "f:image"])));
        assert!(!is_key_field(&p(&["f:name"])));
    }

    #[test]
    fn merging_and_checking_configurations() {
        let live = json!({"metadata": {"labels": {"a": "1"}, "finalizers": ["x"]},
                          "spec": {"containers": [{"name": "c", "image": "i", "args": ["1"]}], "tolerations": [{"key": "k"}]}});
        let config = json!({"metadata": {"labels": {"b": "2"}, "finalizers": ["y"]},
                            "spec": {"containers": [{"name": "c", "args": ["2"]}, {"name": "d"}], "tolerations": []}});
        assert_eq!(
            merge(&live, &config),
            json!({"metadata": {"labels": {"a": "1", "b": "2"}, "finalizers": ["x", "y"]},
            "spec": {"containers": [{"name": "c", "image": "i", "args": ["2"]}, {"name": "d"}], "tolerations": []}})
        );
        // An empty keyed list takes nothing away.
        let kept = merge(&live, &json!({"spec": {"containers": []}}));
        assert_eq!(kept["spec"]["containers"], live["spec"]["containers"]);
        assert_eq!(
            without_nulls(&json!({"a": null, "b": {"c": null, "d": 1}})),
            json!({"b": {"d": 1}})
        );
        assert!(check_lists(&live).is_ok());
        let dup = json!({"spec": {"containers": [{"name": "c"}, {"name": "c"}]}});
        assert_eq!(
            check_lists(&dup).unwrap_err(),
            r#".spec.containers: duplicate entries for key name="c""#
        );
        let keyless = json!({"spec": {"containers": [{"name": "c", "env": [{"value": "1"}]}]}});
        assert_eq!(
            check_lists(&keyless).unwrap_err(),
            r#".spec.containers[name="c"].env: every element needs its key name"#
        );
        assert!(check_lists(&json!({"metadata": {"finalizers": ["a", "a"]}})).is_err());
    }
}
