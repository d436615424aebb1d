//! Parsing a resource request: the URL into a target, the query into options, the body into
//! JSON (with the size limit and content types kube-apiserver accepts).

use axum::body::Body;
use axum::http::{HeaderMap, Method, Uri};
use serde::Deserialize;
use serde_json::Value;

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
    /// Strict/Warn/Ignore. Accepted; unknown fields are not detected yet (the schemas cover
    /// only the fields we use), so every value behaves as Ignore.
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
    match q.field_validation.as_deref() {
        None | Some("" | "Strict" | "Warn" | "Ignore") => {}
        Some(other) => {
            return Err(Error::BadRequest(format!(
                "fieldValidation must be one of Strict, Warn or Ignore, not {other:?}"
            )))
        }
    }
    Ok(q)
}

/// Reads the body, refusing more than 3 MiB.
pub async fn read_body(body: Body) -> Result<bytes::Bytes> {
    axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            Error::TooLarge(MAX_BODY_BYTES)
        } else {
            Error::BadRequest(format!("reading the request body: {e}"))
        }
    })
}

/// Decodes a create/update body: JSON, or no Content-Type (the Python client sends none on
/// some calls). Protobuf and YAML are not supported yet: 415.
pub fn json_body(headers: &HeaderMap, bytes: &[u8]) -> Result<Value> {
    let ct = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if !(media.is_empty() || media == "application/json" || media == "*/*") {
        return Err(Error::UnsupportedMediaType("application/json".into()));
    }
    let v: Value = serde_json::from_slice(bytes).map_err(|e| Error::BadRequest(format!("error decoding the body as JSON: {e}")))?;
    if !v.is_object() {
        return Err(Error::BadRequest("the body must be a JSON object".into()));
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
}
