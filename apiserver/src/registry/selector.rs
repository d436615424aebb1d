//! Label selectors (equality- and set-based) and field selectors, parsed from query strings,
//! and `LabelSelector` objects (`matchLabels`/`matchExpressions`) used inside specs.

use serde_json::Value;

use crate::error::Error;
use crate::registry::kind::Kind;

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
}

#[derive(Debug, Clone, PartialEq)]
struct Requirement {
    key: String,
    op: Op,
}

impl Requirement {
    fn matches(&self, value: Option<&str>) -> bool {
        match (&self.op, value) {
            (Op::Eq(v), Some(x)) => v == x,
            (Op::Eq(_), None) => false,
            // `a!=b` and `a notin (b)` also match objects without the label (Kubernetes semantics).
            (Op::NotEq(v), x) => x != Some(v.as_str()),
            (Op::In(vs), Some(x)) => vs.iter().any(|v| v == x),
            (Op::In(_), None) => false,
            (Op::NotIn(vs), x) => x.is_none_or(|x| !vs.iter().any(|v| v == x)),
            (Op::Exists, x) => x.is_some(),
            (Op::DoesNotExist, x) => x.is_none(),
        }
    }
}

/// A parsed `labelSelector` plus `fieldSelector`.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    labels: Vec<Requirement>,
    fields: Vec<Requirement>,
}

/// Splits at commas outside parentheses: `a in (x,y),b` → [`a in (x,y)`, `b`].
fn split_top(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts.into_iter().map(str::trim).filter(|p| !p.is_empty()).collect()
}

fn parse_set(rest: &str) -> Option<Vec<String>> {
    let inner = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(inner.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect())
}

fn parse_label_requirement(part: &str) -> Result<Requirement, String> {
    let bad = || format!("unable to parse requirement: {part:?}");
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement { key: key.trim().to_string(), op: Op::DoesNotExist });
    }
    for (sym, is_eq) in [("!=", false), ("==", true), ("=", true)] {
        if let Some((k, v)) = part.split_once(sym) {
            let (k, v) = (k.trim().to_string(), v.trim().to_string());
            if k.is_empty() {
                return Err(bad());
            }
            return Ok(Requirement { key: k, op: if is_eq { Op::Eq(v) } else { Op::NotEq(v) } });
        }
    }
    let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
    match words.as_slice() {
        [key] => Ok(Requirement { key: key.to_string(), op: Op::Exists }),
        [key, rest] => {
            let rest = rest.trim();
            if let Some(set) = rest.strip_prefix("notin") {
                Ok(Requirement { key: key.to_string(), op: Op::NotIn(parse_set(set).ok_or_else(bad)?) })
            } else if let Some(set) = rest.strip_prefix("in") {
                Ok(Requirement { key: key.to_string(), op: Op::In(parse_set(set).ok_or_else(bad)?) })
            } else {
                Err(bad())
            }
        }
        _ => Err(bad()),
    }
}

fn parse_field_requirement(part: &str) -> Result<Requirement, String> {
    for (sym, is_eq) in [("!=", false), ("==", true), ("=", true)] {
        if let Some((k, v)) = part.split_once(sym) {
            let (k, v) = (k.trim().to_string(), v.trim().to_string());
            return Ok(Requirement { key: k, op: if is_eq { Op::Eq(v) } else { Op::NotEq(v) } });
        }
    }
    Err(format!("invalid selector: '{part}'; can't understand '{part}'"))
}

/// Follows a dotted path (`spec.nodeName`) to a scalar, as a string ("" when absent).
fn field_value(obj: &Value, path: &str) -> String {
    let mut cur = obj;
    for seg in path.split('.') {
        match cur.get(seg) {
            Some(v) => cur = v,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

impl Selector {
    /// Parses `labelSelector` and `fieldSelector` for `kind`; unknown fields are a 400.
    pub fn parse(labels: Option<&str>, fields: Option<&str>, kind: &Kind) -> Result<Self, Error> {
        let labels = split_top(labels.unwrap_or(""))
            .into_iter()
            .map(parse_label_requirement)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::BadRequest(format!("unable to parse labelSelector: {e}")))?;
        let fields = split_top(fields.unwrap_or(""))
            .into_iter()
            .map(parse_field_requirement)
            .collect::<Result<Vec<_>, _>>()
            .map_err(Error::BadRequest)?;
        for f in &fields {
            let known = matches!(f.key.as_str(), "metadata.name" | "metadata.namespace")
                || kind.strategy.selectable_fields().contains(&f.key.as_str());
            if !known {
                return Err(Error::BadRequest(format!(
                    "field label not supported: {} (\"{}\" {})",
                    f.key,
                    kind.kind,
                    kind.api_version()
                )));
            }
        }
        Ok(Self { labels, fields })
    }

    /// Whether nothing is filtered.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    /// Whether `obj` is selected.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels");
        let label_ok = self.labels.iter().all(|r| r.matches(labels.and_then(|l| l.get(&r.key)).and_then(Value::as_str)));
        label_ok && self.fields.iter().all(|r| r.matches(Some(&field_value(obj, &r.key))))
    }
}

/// Whether a `LabelSelector` object (`{"matchLabels":..., "matchExpressions":[...]}`) selects
/// `labels`. A malformed selector selects nothing.
pub fn label_selector_matches(selector: &Value, labels: &Value) -> bool {
    let get = |k: &str| labels.get(k).and_then(Value::as_str);
    if let Some(ml) = selector.get("matchLabels").and_then(Value::as_object) {
        if !ml.iter().all(|(k, v)| v.as_str().is_some() && get(k) == v.as_str()) {
            return false;
        }
    }
    let exprs = selector.get("matchExpressions").and_then(Value::as_array).cloned().unwrap_or_default();
    exprs.iter().all(|e| {
        let key = e.get("key").and_then(Value::as_str).unwrap_or("");
        let values: Vec<String> = e
            .get("values")
            .and_then(Value::as_array)
            .map(|vs| vs.iter().filter_map(Value::as_str).map(String::from).collect())
            .unwrap_or_default();
        let op = match e.get("operator").and_then(Value::as_str) {
            Some("In") => Op::In(values),
            Some("NotIn") => Op::NotIn(values),
            Some("Exists") => Op::Exists,
            Some("DoesNotExist") => Op::DoesNotExist,
            _ => return false,
        };
        Requirement { key: key.to_string(), op }.matches(get(key))
    })
}

/// A `LabelSelector` object as a query string: `app=web,tier in (a,b),!debug`.
pub fn selector_string(selector: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(ml) = selector.get("matchLabels").and_then(Value::as_object) {
        parts.extend(ml.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))));
    }
    for e in selector.get("matchExpressions").and_then(Value::as_array).cloned().unwrap_or_default() {
        let key = e.get("key").and_then(Value::as_str).unwrap_or("");
        let values: Vec<&str> =
            e.get("values").and_then(Value::as_array).map(|v| v.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        match e.get("operator").and_then(Value::as_str) {
            Some("In") => parts.push(format!("{key} in ({})", values.join(","))),
            Some("NotIn") => parts.push(format!("{key} notin ({})", values.join(","))),
            Some("Exists") => parts.push(key.to_string()),
            Some("DoesNotExist") => parts.push(format!("!{key}")),
            _ => {}
        }
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pods() -> &'static Kind {
        crate::registry::lookup("", "v1", "pods").unwrap()
    }

    fn sel(l: &str, f: &str) -> Selector {
        Selector::parse(Some(l), Some(f), pods()).unwrap()
    }

    #[test]
    fn label_selectors() {
        let obj = json!({"metadata": {"name": "a", "labels": {"app": "web", "tier": "fe"}}});
        assert!(sel("app=web", "").matches(&obj));
        assert!(sel("app==web,tier", "").matches(&obj));
        assert!(!sel("app!=web", "").matches(&obj));
        assert!(sel("app in (web, db),tier notin (be)", "").matches(&obj));
        assert!(!sel("app notin (web)", "").matches(&obj));
        assert!(sel("!env", "").matches(&obj));
        assert!(!sel("env", "").matches(&obj));
        assert!(sel("env!=prod", "").matches(&obj));
        assert!(Selector::parse(Some("app in web"), None, pods()).is_err());
    }

    #[test]
    fn field_selectors() {
        let obj = json!({"metadata": {"name": "a", "namespace": "ns"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        assert!(sel("", "metadata.name=a,metadata.namespace=ns").matches(&obj));
        assert!(sel("", "spec.nodeName=n1,status.phase!=Pending").matches(&obj));
        assert!(!sel("", "spec.nodeName=").matches(&obj));
        assert!(matches!(Selector::parse(None, Some("spec.image=x"), pods()), Err(Error::BadRequest(_))));
    }

    #[test]
    fn selector_objects_as_strings() {
        let s = json!({"matchLabels": {"app": "web"}, "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["a", "b"]}, {"key": "debug", "operator": "DoesNotExist"}]});
        assert_eq!(selector_string(&s), "app=web,tier in (a,b),!debug");
        let parsed = Selector::parse(Some(&selector_string(&s)), None, pods()).unwrap();
        assert!(parsed.matches(&json!({"metadata": {"labels": {"app": "web", "tier": "b"}}})));
    }

    #[test]
    fn label_selector_objects() {
        let labels = json!({"app": "web"});
        assert!(label_selector_matches(&json!({"matchLabels": {"app": "web"}}), &labels));
        assert!(!label_selector_matches(&json!({"matchLabels": {"app": "db"}}), &labels));
        assert!(label_selector_matches(&json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]}), &labels));
        assert!(!label_selector_matches(&json!({"matchExpressions": [{"key": "app", "operator": "Bogus"}]}), &labels));
    }
}
