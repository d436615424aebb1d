//! Validation: the JSON Schema of each kind (schemas/) plus the syntax rules users hit every
//! day (DNS-1123 names, label and annotation keys and values). Every problem is one `Cause`.

use std::collections::HashMap;

use jsonschema::error::ValidationErrorKind;
use serde_json::{json, Value};

use crate::error::Cause;
use crate::registry::kind::Kind;

/// Which syntax `metadata.name` must follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// DNS-1123 subdomain: lowercase alphanumerics, '-' and '.', at most 253 characters.
    Subdomain,
    /// DNS-1123 label: lowercase alphanumerics and '-', at most 63 characters.
    Label,
    /// DNS-1035 label: a DNS-1123 label that starts with a letter (Services).
    Dns1035,
}

fn is_label_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

/// Problems with `s` as a DNS-1123 label (`my-name`); empty when valid.
pub fn dns1123_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push("must be no more than 63 characters".to_string());
    }
    let ok = !s.is_empty()
        && s.chars().all(is_label_char)
        && !s.starts_with('-')
        && !s.ends_with('-');
    if !ok {
        errs.push(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start \
             and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is \
             '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
                .to_string(),
        );
    }
    errs
}

/// Problems with `s` as a DNS-1123 subdomain (`example.com`); empty when valid.
pub fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 253 {
        errs.push("must be no more than 253 characters".to_string());
    }
    let ok = !s.is_empty()
        && s.split('.').all(|part| !part.is_empty() && part.chars().all(is_label_char) && !part.starts_with('-') && !part.ends_with('-'));
    if !ok {
        errs.push(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and \
             must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is \
             '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
                .to_string(),
        );
    }
    errs
}

/// Problems with `s` as a DNS-1035 label (`my-name`, starting with a letter).
pub fn dns1035_label(s: &str) -> Vec<String> {
    let mut errs = dns1123_label(s);
    if errs.is_empty() && !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        errs.push(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic \
             character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for \
             validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
                .to_string(),
        );
    }
    errs
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?` of at most 63 characters (label values, names).
fn qualified_part(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(alnum)
        && s.ends_with(alnum)
        && s.chars().all(|c| alnum(c) || matches!(c, '-' | '_' | '.'))
}

/// Problems with a label or annotation key: `[prefix/]name`.
pub fn qualified_name(key: &str) -> Vec<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let mut errs = Vec::new();
    if let Some(p) = prefix {
        if p.is_empty() {
            errs.push("prefix part must be non-empty".to_string());
        } else {
            errs.extend(dns1123_subdomain(p).into_iter().map(|e| format!("prefix part {e}")));
        }
    }
    if !qualified_part(name) {
        errs.push(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an \
             alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is \
             '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') and be at most 63 characters"
                .to_string(),
        );
    }
    errs
}

/// Whether `v` is a valid label value (possibly empty).
pub fn label_value_ok(v: &str) -> bool {
    v.is_empty() || qualified_part(v)
}

/// The name, labels and annotations of `obj` against the rules of its kind.
pub fn validate_metadata(obj: &Value, rule: NameRule, causes: &mut Vec<Cause>) {
    let meta = obj.get("metadata").cloned().unwrap_or(json!({}));
    match meta.get("name").and_then(Value::as_str) {
        None | Some("") => causes.push(Cause::required("metadata.name", "name or generateName is required")),
        Some(name) => {
            let errs = match rule {
                NameRule::Subdomain => dns1123_subdomain(name),
                NameRule::Label => dns1123_label(name),
                NameRule::Dns1035 => dns1035_label(name),
            };
            for e in errs {
                causes.push(Cause::invalid("metadata.name", &json!(name), &e));
            }
        }
    }
    if let Some(labels) = meta.get("labels").and_then(Value::as_object) {
        for (k, v) in labels {
            for e in qualified_name(k) {
                causes.push(Cause::invalid("metadata.labels", &json!(k), &e));
            }
            match v.as_str() {
                Some(s) if label_value_ok(s) => {}
                _ => causes.push(Cause::invalid(
                    format!("metadata.labels[{k}]"),
                    v,
                    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', \
                     and must start and end with an alphanumeric character, at most 63 characters",
                )),
            }
        }
    }
    if let Some(annotations) = meta.get("annotations").and_then(Value::as_object) {
        let mut total = 0;
        for (k, v) in annotations {
            total += k.len() + v.as_str().map_or(0, str::len);
            for e in qualified_name(&k.to_lowercase()) {
                causes.push(Cause::invalid("metadata.annotations", &json!(k), &e));
            }
        }
        if total > 256 * 1024 {
            causes.push(Cause {
                reason: "FieldValueTooLong".into(),
                message: "Too long: must have at most 262144 bytes".into(),
                field: "metadata.annotations".into(),
            });
        }
    }
}

/// `/spec/containers/0/name` → `spec.containers[0].name`.
fn field_path(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if !seg.is_empty() && seg.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    out
}

/// The compiled JSON Schemas of every kind.
pub struct Schemas {
    validators: HashMap<String, jsonschema::Validator>,
}

/// Common definitions (ObjectMeta, Container, LabelSelector, ...) merged into every kind's
/// `$defs`, so kind files can `$ref` them without a resolver.
const DEFS: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/defs.json"));

impl Schemas {
    /// Compiles every kind's schema. An invalid schema file is a build bug: the error says which.
    pub fn compile(kinds: &[Kind]) -> anyhow::Result<Self> {
        let defs: Value = serde_json::from_str(DEFS).map_err(|e| anyhow::anyhow!("schemas/defs.json: {e}"))?;
        let mut validators = HashMap::new();
        for k in kinds {
            let mut schema: Value =
                serde_json::from_str(k.schema).map_err(|e| anyhow::anyhow!("schema of {}: {e}", k.kind))?;
            let own = schema.get("$defs").cloned().unwrap_or(json!({}));
            let mut merged = defs.get("$defs").cloned().unwrap_or(json!({}));
            if let (Some(m), Some(o)) = (merged.as_object_mut(), own.as_object()) {
                m.extend(o.clone());
            }
            schema["$defs"] = merged;
            let v = jsonschema::validator_for(&schema).map_err(|e| anyhow::anyhow!("schema of {}: {e}", k.kind))?;
            validators.insert(k.api_version() + "/" + k.kind, v);
        }
        Ok(Self { validators })
    }

    /// One cause per schema violation.
    pub fn validate(&self, kind: &Kind, obj: &Value, causes: &mut Vec<Cause>) {
        let Some(v) = self.validators.get(&(kind.api_version() + "/" + kind.kind)) else { return };
        for err in v.iter_errors(obj) {
            let path = field_path(err.instance_path().as_str());
            let cause = match err.kind() {
                ValidationErrorKind::Required { property } => {
                    let prop = property.as_str().unwrap_or_default();
                    let field = if path.is_empty() { prop.to_string() } else { format!("{path}.{prop}") };
                    Cause::required(field, "")
                }
                ValidationErrorKind::Enum { options } => Cause {
                    reason: "FieldValueNotSupported".into(),
                    message: format!("Unsupported value: {}: supported values: {options}", err.instance()),
                    field: path,
                },
                ValidationErrorKind::Type { .. } => Cause {
                    reason: "FieldValueTypeInvalid".into(),
                    message: format!("Invalid value: {}: {err}", err.instance()),
                    field: path,
                },
                _ => Cause { reason: "FieldValueInvalid".into(), message: format!("Invalid value: {err}"), field: path },
            };
            causes.push(cause);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels() {
        assert!(dns1123_label("web-1").is_empty());
        assert!(!dns1123_label("Web").is_empty());
        assert!(!dns1123_label("-a").is_empty());
        assert!(!dns1123_label(&"a".repeat(64)).is_empty());
        assert!(dns1123_subdomain("a.b-c.d").is_empty());
        assert!(!dns1123_subdomain("a..b").is_empty());
        assert!(!dns1035_label("1abc").is_empty());
        assert!(qualified_name("app.kubernetes.io/name").is_empty());
        assert!(qualified_name("app").is_empty());
        assert!(!qualified_name("/app").is_empty());
        assert!(!qualified_name("a b").is_empty());
        assert!(label_value_ok("") && label_value_ok("v1.2_x") && !label_value_ok("-x"));
        assert_eq!(field_path("/spec/containers/0/name"), "spec.containers[0].name");
        assert_eq!(field_path(""), "");
    }

    #[test]
    fn metadata_causes_name_each_field() {
        let mut causes = Vec::new();
        let obj = json!({"metadata": {"name": "Bad_Name", "labels": {"ok": "x", "bad key": "-v"}}});
        validate_metadata(&obj, NameRule::Subdomain, &mut causes);
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["metadata.name", "metadata.labels", "metadata.labels[bad key]"]);
    }
}
