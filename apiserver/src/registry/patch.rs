//! PATCH bodies: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and strategic merge patch.
//!
//! Strategic merge patch covers the common case: a merge patch in which the well-known lists
//! below are merged element by element on their merge key instead of being replaced, with the
//! `$patch: delete` / `$patch: replace` directives and `$deleteFromPrimitiveList/<field>`.
//! Other lists are replaced; `$retainKeys` and `$setElementOrder` are accepted and ignored
//! (order is kept as the original's, new elements are appended).
//!
//! | field | merge key |
//! |---|---|
//! | containers, initContainers, ephemeralContainers, env, volumes, imagePullSecrets | name |
//! | ports (container) / ports (service) | containerPort / port |
//! | volumeMounts / volumeDevices | mountPath / devicePath |
//! | conditions | type |
//! | ownerReferences | uid |
//! | finalizers | (list of strings: union) |

use serde_json::{Map, Value};

use crate::error::Error;

/// The PATCH content types we understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json`.
    Json,
    /// `application/merge-patch+json`.
    Merge,
    /// `application/strategic-merge-patch+json`.
    StrategicMerge,
    /// `application/apply-patch+yaml`: server-side apply (`registry::managed`).
    Apply,
}

impl PatchType {
    /// From a Content-Type header (parameters ignored).
    pub fn from_content_type(ct: Option<&str>) -> Result<Self, Error> {
        let media = ct.unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match media.as_str() {
            "application/json-patch+json" => Ok(Self::Json),
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/strategic-merge-patch+json" => Ok(Self::StrategicMerge),
            "application/apply-patch+yaml" => Ok(Self::Apply),
            _ => Err(Error::UnsupportedMediaType(
                "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, \
                 application/apply-patch+yaml"
                    .into(),
            )),
        }
    }

    /// Applies `patch` (the raw body) to `original`. Server-side apply needs a field manager and
    /// is done by `Registry::patch`; here it is a bad request (e.g. on `.../scale`).
    pub fn apply(self, original: &Value, patch: &[u8]) -> Result<Value, Error> {
        self.apply_value(original, &self.decode(patch)?.0)
    }

    /// Parses a patch body, once for all the attempts of an update: the patch, and the keys
    /// it repeats for `fieldValidation` (merge-type patches; a JSON patch is a list of
    /// operations, not part of an object).
    pub fn decode(self, patch: &[u8]) -> Result<(Value, Vec<String>), Error> {
        let (patch, duplicates) = crate::codec::strict::from_json(patch)
            .map_err(|e| Error::BadRequest(format!("error decoding patch: {e}")))?;
        Ok(match self {
            Self::Json => (patch, Vec::new()),
            _ => (patch, duplicates),
        })
    }

    /// Applies a decoded patch to `original`.
    pub fn apply_value(self, original: &Value, patch: &Value) -> Result<Value, Error> {
        match self {
            Self::Apply => Err(Error::BadRequest("server-side apply is not supported on this resource".into())),
            Self::Json => json_patch(original, patch),
            Self::Merge => {
                if !patch.is_object() {
                    return Err(Error::BadRequest("a merge patch must be a JSON object".into()));
                }
                Ok(merge_patch(original, patch))
            }
            Self::StrategicMerge => {
                if !patch.is_object() {
                    return Err(Error::BadRequest("a strategic merge patch must be a JSON object".into()));
                }
                Ok(strategic(original, patch))
            }
        }
    }
}

/// RFC 7386.
pub fn merge_patch(original: &Value, patch: &Value) -> Value {
    let Value::Object(p) = patch else { return patch.clone() };
    let mut out = match original {
        Value::Object(o) => o.clone(),
        _ => Map::new(),
    };
    for (k, v) in p {
        if v.is_null() {
            out.remove(k);
        } else {
            let merged = merge_patch(out.get(k).unwrap_or(&Value::Null), v);
            out.insert(k.clone(), merged);
        }
    }
    Value::Object(out)
}

/// The merge key of a well-known list (`None`: the list is replaced as a whole); server-side
/// apply's field sets use the same keys.
pub(crate) fn merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    match field {
        "containers" | "initContainers" | "ephemeralContainers" | "env" | "volumes" | "imagePullSecrets" => Some("name"),
        "ports" => {
            if items.iter().any(|i| i.get("containerPort").is_some()) {
                Some("containerPort")
            } else {
                Some("port")
            }
        }
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        "conditions" => Some("type"),
        "ownerReferences" => Some("uid"),
        _ => None,
    }
}

fn is_directive(v: &Value, which: &str) -> bool {
    v.get("$patch").and_then(Value::as_str) == Some(which)
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter().filter(|(k, _)| !k.starts_with('$')).map(|(k, v)| (k.clone(), strip_directives(v))).collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().filter(|i| !is_directive(i, "delete")).map(strip_directives).collect()),
        other => other.clone(),
    }
}

fn merge_list(field: &str, original: &[Value], patch: &[Value]) -> Vec<Value> {
    if patch.is_empty() {
        return Vec::new();
    }
    if patch.iter().any(|p| is_directive(p, "replace")) {
        return patch.iter().filter(|p| !is_directive(p, "replace")).map(strip_directives).collect();
    }
    if field == "finalizers" && patch.iter().all(Value::is_string) {
        let mut out = original.to_vec();
        for p in patch {
            if !out.contains(p) {
                out.push(p.clone());
            }
        }
        return out;
    }
    let Some(key) = merge_key(field, patch) else {
        return patch.iter().map(strip_directives).collect();
    };
    let mut out = original.to_vec();
    for p in patch {
        let Some(kv) = p.get(key) else {
            out.push(strip_directives(p));
            continue;
        };
        let pos = out.iter().position(|o| o.get(key) == Some(kv));
        match (pos, is_directive(p, "delete")) {
            (Some(i), true) => {
                out.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => out[i] = strategic(&out[i], p),
            (None, false) => out.push(strip_directives(p)),
        }
    }
    out
}

/// Strategic merge patch for the common case (see the module comment).
pub fn strategic(original: &Value, patch: &Value) -> Value {
    let Value::Object(p) = patch else { return patch.clone() };
    if is_directive(patch, "replace") {
        return strip_directives(patch);
    }
    let mut out = match original {
        Value::Object(o) => o.clone(),
        _ => Map::new(),
    };
    for (k, v) in p {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(remove)) = (out.get_mut(field), v.as_array()) {
                list.retain(|x| !remove.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        match (out.get(k), v) {
            (_, Value::Null) => {
                out.remove(k);
            }
            (_, Value::Object(_)) if is_directive(v, "delete") => {
                out.remove(k);
            }
            (Some(Value::Array(o)), Value::Array(pl)) => {
                let merged = merge_list(k, o, pl);
                out.insert(k.clone(), Value::Array(merged));
            }
            (Some(o @ Value::Object(_)), Value::Object(_)) => {
                let merged = strategic(o, v);
                out.insert(k.clone(), merged);
            }
            _ => {
                out.insert(k.clone(), strip_directives(v));
            }
        }
    }
    Value::Object(out)
}

fn unescape(seg: &str) -> String {
    seg.replace("~1", "/").replace("~0", "~")
}

fn parent_and_last(path: &str) -> Result<(String, String), Error> {
    if !path.starts_with('/') {
        return Err(Error::BadRequest(format!("invalid JSON pointer in patch: {path:?}")));
    }
    let idx = path.rfind('/').unwrap_or(0);
    Ok((path[..idx].to_string(), unescape(&path[idx + 1..])))
}

fn pointer_mut<'a>(doc: &'a mut Value, pointer: &str) -> Result<&'a mut Value, Error> {
    doc.pointer_mut(pointer).ok_or_else(|| Error::BadRequest(format!("the path {pointer:?} does not exist")))
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), Error> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = parent_and_last(path)?;
    match pointer_mut(doc, &parent)? {
        Value::Object(m) => {
            m.insert(last, value);
            Ok(())
        }
        Value::Array(a) => {
            let i = if last == "-" { a.len() } else { last.parse::<usize>().map_err(|_| bad_index(path))? };
            if i > a.len() {
                return Err(bad_index(path));
            }
            a.insert(i, value);
            Ok(())
        }
        _ => Err(Error::BadRequest(format!("cannot add at {path:?}: parent is not an object or array"))),
    }
}

fn bad_index(path: &str) -> Error {
    Error::BadRequest(format!("invalid array index in patch path {path:?}"))
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, Error> {
    let (parent, last) = parent_and_last(path)?;
    match pointer_mut(doc, &parent)? {
        Value::Object(m) => m.remove(&last).ok_or_else(|| Error::BadRequest(format!("the path {path:?} does not exist"))),
        Value::Array(a) => {
            let i = last.parse::<usize>().map_err(|_| bad_index(path))?;
            if i >= a.len() {
                return Err(bad_index(path));
            }
            Ok(a.remove(i))
        }
        _ => Err(Error::BadRequest(format!("the path {path:?} does not exist"))),
    }
}

/// RFC 6902. Applied to a copy: a failing operation leaves nothing half-done.
pub fn json_patch(original: &Value, patch: &Value) -> Result<Value, Error> {
    let ops = patch.as_array().ok_or_else(|| Error::BadRequest("a JSON patch must be an array of operations".into()))?;
    let mut doc = original.clone();
    for op in ops {
        let name = op.get("op").and_then(Value::as_str).unwrap_or("");
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::BadRequest(format!("JSON patch operation without a path: {op}")))?;
        let value = || op.get("value").cloned().ok_or_else(|| Error::BadRequest(format!("{name} needs a value: {op}")));
        let from = || {
            op.get("from").and_then(Value::as_str).ok_or_else(|| Error::BadRequest(format!("{name} needs from: {op}")))
        };
        match name {
            "add" => add(&mut doc, path, value()?)?,
            "remove" => {
                remove(&mut doc, path)?;
            }
            "replace" => {
                let v = value()?;
                *pointer_mut(&mut doc, path)? = v;
            }
            "move" => {
                let v = remove(&mut doc, from()?)?;
                add(&mut doc, path, v)?;
            }
            "copy" => {
                let v = doc.pointer(from()?).cloned().ok_or_else(|| Error::BadRequest(format!("the path {:?} does not exist", from().unwrap_or(""))))?;
                add(&mut doc, path, v)?;
            }
            "test" => {
                if doc.pointer(path) != Some(&value()?) {
                    return Err(Error::Invalid {
                        group: String::new(),
                        kind: "JSONPatch".into(),
                        name: String::new(),
                        causes: vec![crate::error::Cause::invalid(path, &value()?, "test operation failed")],
                    });
                }
            }
            other => return Err(Error::BadRequest(format!("unknown JSON patch operation {other:?}"))),
        }
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_rfc7386() {
        let o = json!({"a": 1, "b": {"c": 2, "d": 3}, "l": [1, 2]});
        let p = json!({"a": null, "b": {"c": 9}, "l": [3]});
        assert_eq!(merge_patch(&o, &p), json!({"b": {"c": 9, "d": 3}, "l": [3]}));
    }

    #[test]
    fn strategic_merges_containers_by_name() {
        let o = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "b:1"}
        ], "tolerations": [{"key": "k"}]}});
        let p = json!({"spec": {"containers": [
            {"name": "a", "image": "a:2", "env": [{"name": "Y", "value": "2"}]},
            {"name": "b", "$patch": "delete"},
            {"name": "c", "image": "c:1"}
        ], "tolerations": [{"key": "z"}], "$setElementOrder/containers": [{"name": "a"}]}});
        let r = strategic(&o, &p);
        assert_eq!(r, json!({"spec": {"containers": [
            {"name": "a", "image": "a:2", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]},
            {"name": "c", "image": "c:1"}
        ], "tolerations": [{"key": "z"}]}}));
    }

    #[test]
    fn strategic_finalizers_and_directives() {
        let o = json!({"metadata": {"finalizers": ["a", "b"], "labels": {"x": "1"}}});
        assert_eq!(strategic(&o, &json!({"metadata": {"finalizers": ["c"]}}))["metadata"]["finalizers"], json!(["a", "b", "c"]));
        assert_eq!(strategic(&o, &json!({"metadata": {"finalizers": []}}))["metadata"]["finalizers"], json!([]));
        assert_eq!(strategic(&o, &json!({"metadata": {"finalizers": null}}))["metadata"].get("finalizers"), None);
        let r = strategic(&o, &json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}));
        assert_eq!(r["metadata"]["finalizers"], json!(["b"]));
        let r = strategic(&o, &json!({"metadata": {"labels": {"$patch": "replace", "y": "2"}}}));
        assert_eq!(r["metadata"]["labels"], json!({"y": "2"}));
    }

    #[test]
    fn json_patch_rfc6902() {
        let o = json!({"a": {"b": [1, 2]}, "c": "x"});
        let p = json!([
            {"op": "add", "path": "/a/b/-", "value": 3},
            {"op": "replace", "path": "/c", "value": "y"},
            {"op": "copy", "from": "/c", "path": "/d"},
            {"op": "move", "from": "/d", "path": "/e"},
            {"op": "remove", "path": "/a/b/0"},
            {"op": "test", "path": "/e", "value": "y"}
        ]);
        assert_eq!(json_patch(&o, &p).unwrap(), json!({"a": {"b": [2, 3]}, "c": "y", "e": "y"}));
        assert!(matches!(json_patch(&o, &json!([{"op": "remove", "path": "/nope"}])), Err(Error::BadRequest(_))));
        assert!(matches!(json_patch(&o, &json!([{"op": "test", "path": "/c", "value": "z"}])), Err(Error::Invalid { .. })));
        assert!(matches!(json_patch(&o, &json!({"op": "add"})), Err(Error::BadRequest(_))));
        assert!(matches!(PatchType::Merge.apply(&o, b"not json"), Err(Error::BadRequest(_))));
        assert_eq!(PatchType::from_content_type(Some("application/apply-patch+yaml")).unwrap(), PatchType::Apply);
        assert!(matches!(PatchType::from_content_type(Some("application/yaml")), Err(Error::UnsupportedMediaType(_))));
    }
}
