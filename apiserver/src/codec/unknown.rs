//! Unknown fields of a JSON object (`fieldValidation`), found with the same generated table as
//! protobuf decoding: a name the table has no field for, at any depth, is unknown.

use serde_json::Value;

use super::table::{root, Label, Message, Special};

/// The paths of `obj`'s fields that its kind does not have (`spec.foo`,
/// `spec.template.spec.containers[0].bar`), or `None` when the object names no kind the table
/// knows (no `apiVersion`/`kind`, or a kind without a protobuf schema).
pub fn unknown_fields(obj: &Value) -> Option<Vec<String>> {
    let api_version = obj.get("apiVersion")?.as_str()?;
    let kind = obj.get("kind")?.as_str()?;
    let msg = root(api_version, kind)?;
    let mut out = Vec::new();
    if let Value::Object(m) = obj {
        for (k, v) in m {
            if k != "apiVersion" && k != "kind" {
                field(msg, k, v, k, &mut out);
            }
        }
    }
    Some(out)
}

/// Checks `value`, found under `name` in an object of `msg`.
fn field(msg: &'static Message, name: &str, value: &Value, path: &str, out: &mut Vec<String>) {
    let Some(f) = msg.field_named(name) else {
        out.push(path.to_string());
        return;
    };
    let Some(inner) = f.ty.message().filter(|m| m.special == Special::None) else { return };
    match (f.label, value) {
        (Label::Single | Label::Inline, v) => object(inner, v, path, out),
        (Label::Repeated, Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                object(inner, item, &format!("{path}[{i}]"), out);
            }
        }
        (Label::Map, Value::Object(entries)) => {
            for (k, v) in entries {
                object(inner, v, &format!("{path}[{k}]"), out);
            }
        }
        // A wrong shape is the schema validation's to report.
        _ => {}
    }
}

fn object(msg: &'static Message, value: &Value, path: &str, out: &mut Vec<String>) {
    if let Value::Object(m) = value {
        for (k, v) in m {
            field(msg, k, v, &format!("{path}.{k}"), out);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn finds_unknown_fields_at_any_depth() {
        let d = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"any": "label"}, "bogus": 1},
            "spec": {
                "replicas": 1, "foo": true,
                "strategy": {"rollingUpdate": {"maxSurge": "25%"}},
                "template": {"spec": {
                    "hostIPC": true,
                    "containers": [{"name": "a", "resources": {"limits": {"cpu": "1"}}}, {"name": "b", "bar": 1}],
                    "volumes": [{"name": "v", "configMap": {"name": "c"}, "downwardAPI": {}}],
                }},
            },
            "status": {},
        });
        let mut got = unknown_fields(&d).unwrap();
        got.sort();
        assert_eq!(got, ["metadata.bogus", "spec.foo", "spec.template.spec.containers[1].bar"]);
        // Inlined structs (volumeSource, LocalObjectReference) are part of their parent.
        assert!(got.iter().all(|p| !p.contains("volumes")));
        assert_eq!(unknown_fields(&json!({"metadata": {"name": "x"}})), None);
        assert_eq!(unknown_fields(&json!({"apiVersion": "v1", "kind": "Widget"})), None);
        assert_eq!(unknown_fields(&json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v"}})), Some(vec![]));
    }
}
