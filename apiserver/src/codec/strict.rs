//! Strict decoding (`fieldValidation`): JSON and YAML bodies parsed into a `serde_json::Value`
//! in one pass that also records the keys an object repeats, and the verdict on a request's
//! duplicate and unknown fields (kube-apiserver's `strict decoding error`).
//!
//! `{"metadata": {"name": "a", "name": "b"}}` parses to `{"metadata": {"name": "b"}}` (the last
//! one wins, as in kube-apiserver) with the duplicate `metadata.name`; paths name list items by
//! index (`spec.containers[0].image`), like the unknown-field paths of `unknown`.

use std::cell::RefCell;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::error::Error;
use crate::Result;

/// What to do with duplicate and unknown fields: the `fieldValidation` parameter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FieldValidation {
    /// Say nothing.
    Ignore,
    /// A `Warning` header per field (kube-apiserver's default).
    #[default]
    Warn,
    /// 400 `strict decoding error: ...`, nothing written.
    Strict,
}

impl FieldValidation {
    /// The `fieldValidation` query value; unset or empty is `Warn`.
    pub fn parse(v: Option<&str>) -> Result<Self> {
        match v.unwrap_or("") {
            "" | "Warn" => Ok(Self::Warn),
            "Strict" => Ok(Self::Strict),
            "Ignore" => Ok(Self::Ignore),
            other => Err(Error::BadRequest(format!(
                "fieldValidation must be one of Strict, Warn or Ignore, not {other:?}"
            ))),
        }
    }

    /// Reports the `duplicates` of a body and the unknown fields of `obj` (the object a create,
    /// update or patch asks for). With `old`, the stored object, only unknown fields it does not
    /// already have count: Warn and Ignore store unknown fields, and a later Strict patch that
    /// does not touch them must not fail for them. Strict refuses with one 400 naming them all;
    /// Warn records one warning each.
    pub fn check(self, obj: &Value, old: Option<&Value>, duplicates: &[String]) -> Result<()> {
        if self == Self::Ignore {
            return Ok(());
        }
        let mut unknown = crate::codec::unknown::unknown_fields(obj).unwrap_or_default();
        if let Some(before) = old.and_then(crate::codec::unknown::unknown_fields) {
            unknown.retain(|p| !before.contains(p));
        }
        // A field both unknown and repeated is reported as unknown only, as kube-apiserver does.
        let each: Vec<String> = duplicates
            .iter()
            .filter(|d| !unknown.contains(d))
            .map(|d| format!("duplicate field {d:?}"))
            .chain(unknown.iter().map(|u| format!("unknown field {u:?}")))
            .collect();
        if each.is_empty() {
            return Ok(());
        }
        if self == Self::Strict {
            return Err(Error::BadRequest(format!("strict decoding error: {}", each.join(", "))));
        }
        each.into_iter().for_each(crate::warning::add);
        Ok(())
    }
}

/// Parses JSON; answers the value and the paths of repeated keys, in document order.
pub fn from_json(bytes: &[u8]) -> serde_json::Result<(Value, Vec<String>)> {
    let dups = RefCell::new(Vec::new());
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = Seed { path: Path::Root, dups: &dups }.deserialize(&mut de)?;
    de.end()?;
    Ok((v, dups.into_inner()))
}

/// Parses one YAML document, as `from_json`.
pub fn from_yaml(bytes: &[u8]) -> std::result::Result<(Value, Vec<String>), serde_yaml_ng::Error> {
    let dups = RefCell::new(Vec::new());
    let v = Seed { path: Path::Root, dups: &dups }.deserialize(serde_yaml_ng::Deserializer::from_slice(bytes))?;
    Ok((v, dups.into_inner()))
}

/// Where a value sits, as a chain of borrowed parents: built for free while parsing and only
/// rendered to a string for a duplicate.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => Ok(()),
            Path::Key(Path::Root, k) => f.write_str(k),
            Path::Key(parent, k) => write!(f, "{parent}.{k}"),
            Path::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

/// Deserializes one value at `path`, recording repeated keys in `dups`.
#[derive(Clone, Copy)]
struct Seed<'a> {
    path: Path<'a>,
    dups: &'a RefCell<Vec<String>>,
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }

    // serde_json's own Value turns a YAML `.nan` or `.inf` into null; so do we.
    fn visit_f64<E>(self, v: f64) -> std::result::Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> std::result::Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> std::result::Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element_seed(Seed { path: Path::Index(&self.path, out.len()), dups: self.dups })? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let here = Path::Key(&self.path, &key);
            let v = map.next_value_seed(Seed { path: here, dups: self.dups })?;
            if out.contains_key(&key) {
                let p = here.to_string();
                let mut dups = self.dups.borrow_mut();
                // A key given three times is one duplicate.
                if !dups.contains(&p) {
                    dups.push(p);
                }
            }
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn json_duplicates_at_any_depth_last_one_wins() {
        let body = br#"{
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "a", "labels": {"x": "1", "x": "2"}, "name": "b"},
            "spec": {"paused": true, "paused": false, "paused": true,
                     "template": {"spec": {"containers": [
                        {"name": "c"},
                        {"name": "d", "image": "i1", "image": "i2"}]}}},
            "kind": "Deployment"
        }"#;
        let (v, dups) = from_json(body).unwrap();
        assert_eq!(
            dups,
            ["metadata.labels.x", "metadata.name", "spec.paused", "spec.template.spec.containers[1].image", "kind"]
        );
        assert_eq!(v["metadata"], json!({"name": "b", "labels": {"x": "2"}}));
        assert_eq!(v["spec"]["paused"], json!(true));
        assert_eq!(v["spec"]["template"]["spec"]["containers"][1], json!({"name": "d", "image": "i2"}));
    }

    #[test]
    fn json_values_are_what_serde_json_makes() {
        let body = br#"{"a": [1, -2, 3.5, 18446744073709551615, "s\u00e9", null, true, {}, []], "b": {"c": {}}}"#;
        let (v, dups) = from_json(body).unwrap();
        assert!(dups.is_empty());
        assert_eq!(v, serde_json::from_slice::<Value>(body).unwrap());
        // Nested arrays of objects: indexes at each level.
        let (_, dups) = from_json(br#"[[{"a": 1}], [{"a": 1, "a": 2}]]"#).unwrap();
        assert_eq!(dups, ["[1][0].a"]);
        let (_, dups) = from_json(br#"{"a": 1, "a": 2}"#).unwrap();
        assert_eq!(dups, ["a"]);
        // Errors are serde_json's; trailing data is refused.
        assert!(from_json(b"{\"a\": 1} x").is_err());
        assert!(from_json(b"{\"a\": ").is_err());
        let deep = "[".repeat(1000) + &"]".repeat(1000);
        assert!(from_json(deep.as_bytes()).is_err(), "the recursion limit holds");
    }

    #[test]
    fn yaml_duplicates() {
        let body = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  name: b\ndata:\n  k: v\n  k: w\nlist:\n- x: 1\n  x: 2\n- 3\n";
        let (v, dups) = from_yaml(body.as_bytes()).unwrap();
        assert_eq!(dups, ["metadata.name", "data.k", "list[0].x"]);
        assert_eq!(v["metadata"]["name"], "b");
        assert_eq!(v["data"], json!({"k": "w"}));
        assert_eq!(v["list"], json!([{"x": 2}, 3]));
        let (v, dups) = from_yaml(b"a: 1.5\nb: .nan\nc: ~\nd: \"2\"\n").unwrap();
        assert!(dups.is_empty());
        assert_eq!(v, json!({"a": 1.5, "b": null, "c": null, "d": "2"}));
        assert!(from_yaml(b"a: [unclosed").is_err());
        assert!(from_yaml(b"a: 1\n---\nb: 2\n").is_err(), "one document only");
    }

    #[test]
    fn check_modes() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {}, "bogus": 1});
        let dups = vec!["data.k".to_string(), "bogus".to_string()];
        assert_eq!(FieldValidation::Ignore.check(&cm, None, &dups).ok(), Some(()));
        assert_eq!(FieldValidation::Warn.check(&cm, None, &dups).ok(), Some(()));
        match FieldValidation::Strict.check(&cm, None, &dups) {
            // `bogus` is both: reported once, as unknown.
            Err(Error::BadRequest(m)) => {
                assert_eq!(m, r#"strict decoding error: duplicate field "data.k", unknown field "bogus""#)
            }
            other => panic!("{other:?}"),
        }
        // Unknown fields the stored object already has are not the patch's doing.
        assert!(FieldValidation::Strict.check(&cm, Some(&cm), &[]).is_ok());
        let more = json!({"apiVersion": "v1", "kind": "ConfigMap", "bogus": 1, "other": 2});
        match FieldValidation::Strict.check(&more, Some(&cm), &[]) {
            Err(Error::BadRequest(m)) => assert_eq!(m, r#"strict decoding error: unknown field "other""#),
            other => panic!("{other:?}"),
        }
        assert!(FieldValidation::Strict.check(&json!({"apiVersion": "v1", "kind": "ConfigMap"}), None, &[]).is_ok());
        assert_eq!(FieldValidation::parse(None).unwrap(), FieldValidation::Warn);
        assert_eq!(FieldValidation::parse(Some("")).unwrap(), FieldValidation::Warn);
        assert_eq!(FieldValidation::parse(Some("Strict")).unwrap(), FieldValidation::Strict);
        assert_eq!(FieldValidation::parse(Some("Ignore")).unwrap(), FieldValidation::Ignore);
        assert!(FieldValidation::parse(Some("strict")).is_err());
    }
}
