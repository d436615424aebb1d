//! Parsing a resource request: the URL into a target, the query into options, the body into
//! JSON (with the size limit and the content types kube-apiserver accepts: JSON, YAML, protobuf).

use axum::body::Body;
use axum::http::{HeaderMap, Method, Uri};
use serde::Deserialize;
use serde_json::Value;

use crate::codec::strict::{self, FieldValidation};
use crate::error::Error;
use crate::registry::{lookup, Kind};
use crate::{Result, MAX_BODY_BYTES};

/// What a resource URL names.
#[derive(Debug)]
pub enum Target {
    /// `/api/v1` or `/apis/apps/v1`: the APIResourceList.
    Discovery { group: String, version: String },
    /// A collection, in one namespace or across all.
    Collection { kind: &'static Kind, namespace: Option<String> },
    /// One object, possibly a subresource of it.
    Object { kind: &'static Kind, namespace: Option<String>, name: String, subresource: Option<String> },
}

fn kind_of(group: &str, version: &str, resource: &str) -> Result<&'static Kind> {
    lookup(group, version, resource).ok_or(Error::UnknownPath)
}

/// `/api/v1/namespaces/ns/pods/web/status` → `Object { pods, ns, web, status }`.
pub fn parse_target(path: &str) -> Result<Target> {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(Error::UnknownPath),
    };
    if rest.iter().any(|s| s.is_empty()) {
        return Err(Error::UnknownPath);
    }
    let obj = |kind: &'static Kind, ns: Option<&str>, name: &str, sub: Option<&str>| Target::Object {
        kind,
        namespace: ns.map(String::from),
        name: name.to_string(),
        subresource: sub.map(String::from),
    };
    let target = match rest {
        [] => Target::Discovery { group: group.to_string(), version: version.to_string() },
        [res] => Target::Collection { kind: kind_of(group, version, res)?, namespace: None },
        ["namespaces", ns, sub @ ("status" | "finalize")] if group.is_empty() => {
            obj(kind_of(group, version, "namespaces")?, None, ns, Some(sub))
        }
        ["namespaces", ns, res] => {
            let kind = kind_of(group, version, res)?;
            if !kind.namespaced {
                return Err(Error::UnknownPath);
            }
            Target::Collection { kind, namespace: Some(ns.to_string()) }
        }
        ["namespaces", ns, res, name] | ["namespaces", ns, res, name, _] => {
            let kind = kind_of(group, version, res)?;
            if !kind.namespaced {
                return Err(Error::UnknownPath);
            }
            obj(kind, Some(ns), name, rest.get(4).copied())
        }
        [res, name] | [res, name, _] => {
            let kind = kind_of(group, version, res)?;
            if kind.namespaced {
                return Err(Error::UnknownPath);
            }
            obj(kind, None, name, rest.get(2).copied())
        }
        _ => return Err(Error::UnknownPath),
    };
    Ok(target)
}

/// The deprecated watch paths kube-apiserver still serves: `/api/v1/watch/namespaces/ns/pods`
/// is `/api/v1/namespaces/ns/pods?watch=true`, and `/api/v1/watch/namespaces/ns/pods/web` the
/// same with `fieldSelector=metadata.name=web`. Returns the collection path and the name.
pub fn legacy_watch(path: &str) -> Option<(String, Option<String>)> {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let at = match segs.as_slice() {
        ["", "api", _, "watch", ..] => 3,
        ["", "apis", _, _, "watch", ..] => 4,
        _ => return None,
    };
    let (head, rest) = (&segs[..at], &segs[at + 1..]);
    // A collection is `res` or `namespaces/ns/res`; one more segment names an object, except
    // under `namespaces` itself (`watch/namespaces/ns` is the namespace ns).
    let (collection, name) = match rest {
        ["namespaces", ns, res, name] => (vec!["namespaces", ns, res], Some(*name)),
        ["namespaces", ns] => (vec!["namespaces"], Some(*ns)),
        [res, name] if *res != "namespaces" => (vec![*res], Some(*name)),
        other => (other.to_vec(), None),
    };
    Some(([head, &collection[..]].concat().join("/"), name.map(String::from)))
}

/// The query parameters we read; all strings, so a malformed value becomes a clean 400.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Query {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: Option<String>,
    #[serde(rename = "continue")]
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
    pub watch: Option<String>,
    pub timeout_seconds: Option<String>,
    pub allow_watch_bookmarks: Option<String>,
    pub send_initial_events: Option<String>,
    /// `All` or unset; checked per verb by `options::write_options`.
    pub dry_run: Option<String>,
    /// The manager a write is recorded under in managedFields.
    pub field_manager: Option<String>,
    /// Server-side apply: take over conflicting fields.
    pub force: Option<String>,
    pub grace_period_seconds: Option<String>,
    /// What to do with duplicate and unknown fields of a JSON or YAML create/update body or of
    /// a patched object: Strict (400), Warn (the default: `Warning` headers) or Ignore. Either
    /// way the object is stored as sent (the last of repeated keys).
    pub field_validation: Option<String>,
}

/// `true`/`1` → true, `false`/`0` → false.
pub fn parse_bool(name: &str, v: &Option<String>) -> Result<Option<bool>> {
    match v.as_deref() {
        None | Some("") => Ok(None),
        Some("true") | Some("1") | Some("True") => Ok(Some(true)),
        Some("false") | Some("0") | Some("False") => Ok(Some(false)),
        Some(other) => Err(Error::BadRequest(format!("invalid value for {name}: {other:?}"))),
    }
}

/// A non-negative integer parameter.
pub fn parse_int(name: &str, v: &Option<String>) -> Result<Option<i64>> {
    match v.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(Some)
            .ok_or_else(|| Error::BadRequest(format!("invalid value for {name}: {s:?}"))),
    }
}

pub fn parse_query(uri: &Uri) -> Result<Query> {
    let q: Query = match uri.query() {
        Some(raw) => axum::extract::Query::<Query>::try_from_uri(uri)
            .map(|q| q.0)
            .map_err(|e| Error::BadRequest(format!("invalid query {raw:?}: {e}")))?,
        None => Query::default(),
    };
    FieldValidation::parse(q.field_validation.as_deref())?;
    Ok(q)
}

/// How much of an oversized body is read and thrown away before answering 413. Over HTTP/2 a
/// response to a request whose body is still arriving resets the stream, and clients report a
/// stream error instead of the 413 Status; past this bound they get the reset.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// Reads the body, refusing more than 3 MiB.
pub async fn read_body(body: Body) -> Result<bytes::Bytes> {
    use futures::StreamExt;
    let mut chunks = body.into_data_stream();
    let mut kept = bytes::BytesMut::new();
    let mut total = 0usize;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| Error::BadRequest(format!("reading the request body: {e}")))?;
        total = total.saturating_add(chunk.len());
        if total <= MAX_BODY_BYTES {
            kept.extend_from_slice(&chunk);
        } else if total > DRAIN_LIMIT {
            break;
        }
    }
    if total > MAX_BODY_BYTES {
        return Err(Error::TooLarge(MAX_BODY_BYTES));
    }
    Ok(kept.freeze())
}

/// The body media types `json_body` reads, as a 415 lists them.
const BODY_MEDIA_TYPES: &str = "application/json, application/yaml, application/vnd.kubernetes.protobuf";

/// Decodes a create/update body into the object's JSON: JSON (also with no Content-Type, as the
/// Python client sends some calls), YAML, or Kubernetes protobuf (kubectl's imperative commands).
/// Any other media type is 415. Duplicate and unknown fields of JSON and YAML bodies are handled
/// as `fieldValidation` says (protobuf bodies cannot carry them: an unknown field number is a
/// 400). Bodies without apiVersion/kind are checked for duplicates only (the kind they would be
/// checked against comes from the body: a scale PUT carries a Scale, a binding a Binding).
pub fn json_body(headers: &HeaderMap, query: &Query, bytes: &[u8]) -> Result<Value> {
    let ct = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let (v, duplicates) = match media.as_str() {
        "" | "application/json" | "*/*" => strict::from_json(bytes)
            .map_err(|e| Error::BadRequest(format!("error decoding the body as JSON: {e}")))?,
        "application/yaml" => strict::from_yaml(bytes)
            .map_err(|e| Error::BadRequest(format!("error decoding the body as YAML: {e}")))?,
        crate::codec::protobuf::MEDIA_TYPE => return object(crate::codec::protobuf::decode(bytes)?),
        _ => return Err(Error::UnsupportedMediaType(BODY_MEDIA_TYPES.into())),
    };
    let v = object(v)?;
    FieldValidation::parse(query.field_validation.as_deref())?.check(&v, None, &duplicates)?;
    Ok(v)
}

fn object(v: Value) -> Result<Value> {
    if !v.is_object() {
        return Err(Error::BadRequest("the body must be an object".into()));
    }
    Ok(v)
}

/// Kubernetes' verb and the group/resource of a request, for metrics: `("list", "", "pods")`,
/// `("get", "", "pods/status")`; non-resource paths are `("get", "", "/healthz")`.
pub fn verb_and_resource(method: &Method, uri: &Uri) -> (&'static str, String, String) {
    let watch = uri.query().is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
    let target = parse_target(uri.path());
    let (collection, group, resource) = match &target {
        Ok(Target::Collection { kind, .. }) => (true, kind.group.to_string(), kind.resource.to_string()),
        Ok(Target::Object { kind, subresource, .. }) => {
            let r = match subresource {
                Some(s) => format!("{}/{s}", kind.resource),
                None => kind.resource.to_string(),
            };
            (false, kind.group.to_string(), r)
        }
        Ok(Target::Discovery { .. }) => return ("get", String::new(), "discovery".into()),
        Err(_) => {
            // Only known paths become labels, so that scanners cannot grow the label set.
            const KNOWN: &[&str] = &["/healthz", "/livez", "/readyz", "/version", "/metrics", "/api", "/apis"];
            let path = uri.path();
            let group_doc = crate::registry::kinds().iter().any(|k| !k.group.is_empty() && path == format!("/apis/{}", k.group));
            let label = if KNOWN.contains(&path) || group_doc || path.starts_with("/openapi/v3") {
                path
            } else {
                "other"
            };
            return ("get", String::new(), label.into());
        }
    };
    let verb = match (method, collection) {
        (&Method::GET, true) if watch => "watch",
        (&Method::GET, true) => "list",
        (&Method::GET, false) => "get",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, true) => "deletecollection",
        (&Method::DELETE, false) => "delete",
        _ => "other",
    };
    (verb, group, resource)
}

/// Whether a method is one of the verbs on objects.
pub fn is_write(m: &Method) -> bool {
    matches!(*m, Method::POST | Method::PUT | Method::PATCH | Method::DELETE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert!(matches!(parse_target("/api/v1").unwrap(), Target::Discovery { .. }));
        assert!(matches!(parse_target("/api/v1/pods").unwrap(), Target::Collection { namespace: None, .. }));
        match parse_target("/api/v1/namespaces/ns/pods/web/status").unwrap() {
            Target::Object { kind, namespace, name, subresource } => {
                assert_eq!((kind.resource, namespace.as_deref(), name.as_str()), ("pods", Some("ns"), "web"));
                assert_eq!(subresource.as_deref(), Some("status"));
            }
            other => panic!("{other:?}"),
        }
        match parse_target("/api/v1/namespaces/ns").unwrap() {
            Target::Object { kind, name, .. } => assert_eq!((kind.resource, name.as_str()), ("namespaces", "ns")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse_target("/api/v1/namespaces/ns/status").unwrap(), Target::Object { .. }));
        assert!(matches!(parse_target("/apis/apps/v1/namespaces/d/deployments").unwrap(), Target::Collection { .. }));
        assert!(matches!(parse_target("/api/v1/widgets"), Err(Error::UnknownPath)));
        assert!(matches!(parse_target("/api/v1/pods/web"), Err(Error::UnknownPath)));
        assert!(matches!(parse_target("/api/v1/namespaces/a/nodes"), Err(Error::UnknownPath)));
        assert!(matches!(parse_target("/apis/apps/v1/pods"), Err(Error::UnknownPath)));
        assert!(matches!(parse_target("/api/v1/namespaces//pods"), Err(Error::UnknownPath)));
    }

    #[test]
    fn legacy_watch_paths() {
        let lw = |p: &str| legacy_watch(p).map(|(path, name)| (path, name.unwrap_or_default()));
        assert_eq!(lw("/api/v1/watch/pods"), Some(("/api/v1/pods".into(), "".into())));
        assert_eq!(lw("/api/v1/watch/namespaces/ns/pods"), Some(("/api/v1/namespaces/ns/pods".into(), "".into())));
        assert_eq!(lw("/api/v1/watch/namespaces/ns/pods/web"), Some(("/api/v1/namespaces/ns/pods".into(), "web".into())));
        assert_eq!(lw("/api/v1/watch/namespaces"), Some(("/api/v1/namespaces".into(), "".into())));
        assert_eq!(lw("/api/v1/watch/namespaces/ns"), Some(("/api/v1/namespaces".into(), "ns".into())));
        assert_eq!(lw("/api/v1/watch/nodes/n1"), Some(("/api/v1/nodes".into(), "n1".into())));
        assert_eq!(
            lw("/apis/apps/v1/watch/namespaces/ns/deployments/d"),
            Some(("/apis/apps/v1/namespaces/ns/deployments".into(), "d".into()))
        );
        assert_eq!(lw("/api/v1/namespaces/ns/pods"), None);
        assert_eq!(lw("/apis/apps/v1/deployments"), None);
    }
}
