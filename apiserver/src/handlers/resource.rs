//! The resource endpoints: one handler that parses the request and calls the registry.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use serde_json::Value;

use super::discovery::resource_list;
use super::options::{dry_run, write_options};
use super::request::{
    is_write, json_body, legacy_watch, parse_bool, parse_int, parse_query, parse_target, read_body, Query, Target,
};
use super::table;
use super::AppState;
use crate::error::Error;
use crate::printers::TableOptions;
use crate::registry::{DeleteResult, Kind, PatchType, ScaleChange, Selector, WatchRequest, WriteOptions};
use crate::storage::{ListOptions, Preconditions};
use crate::Result;

/// Bound on producing a response (a watch's response is its stream's start; the stream itself
/// ends with `timeoutSeconds`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn handle(State(st): State<AppState>, req: Request) -> Response {
    let (result, warnings) = crate::warning::collect(tokio::time::timeout(REQUEST_TIMEOUT, serve(st, req))).await;
    let mut resp = match result {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => e.into_response(),
        Err(_) => Error::Timeout(format!("the request did not complete within {}s", REQUEST_TIMEOUT.as_secs())).into_response(),
    };
    warning_headers(&mut resp, &warnings);
    resp
}

/// One `Warning: 299 - "..."` header per recorded warning.
fn warning_headers(resp: &mut Response, warnings: &[String]) {
    for w in warnings {
        let quoted = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{quoted}\"")) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
}

fn object(code: StatusCode, v: Value) -> Response {
    (code, Json(v)).into_response()
}

fn method_not_allowed(method: &Method, what: &str) -> Error {
    Error::MethodNotAllowed(format!("the server does not allow this method on the requested resource: {method} {what}"))
}

async fn serve(st: AppState, req: Request) -> Result<Response> {
    let (parts, body) = req.into_parts();
    let mut query = parse_query(&parts.uri)?;
    let target = match legacy_watch(parts.uri.path()) {
        Some((collection, name)) => {
            if parts.method != Method::GET {
                return Err(method_not_allowed(&parts.method, "a watch path"));
            }
            query.watch = Some("true".into());
            if let Some(name) = name {
                let by_name = format!("metadata.name={name}");
                query.field_selector = Some(match query.field_selector.take().filter(|f| !f.is_empty()) {
                    Some(f) => format!("{f},{by_name}"),
                    None => by_name,
                });
            }
            match parse_target(&collection)? {
                t @ Target::Collection { .. } => t,
                _ => return Err(Error::UnknownPath),
            }
        }
        None => parse_target(parts.uri.path())?,
    };
    let method = parts.method;
    let headers = parts.headers;
    let mut opts = if is_write(&method) { write_options(&method, &query, &headers)? } else { WriteOptions::default() };
    let reg = &st.registry;
    match target {
        Target::Discovery { group, version } => match (method, resource_list(&group, &version)) {
            (Method::GET, Some(doc)) => Ok(Json(doc).into_response()),
            (_, None) => Err(Error::UnknownPath),
            (m, Some(_)) => Err(method_not_allowed(&m, "discovery")),
        },
        Target::Collection { kind, namespace } => match method {
            Method::GET => {
                let selector =
                    Selector::parse(query.label_selector.as_deref(), query.field_selector.as_deref(), kind)?;
                let as_table = table::requested(&headers, &parts.uri)?;
                if parse_bool("watch", &query.watch)?.unwrap_or(false) {
                    return watch(st, kind, namespace, selector, &query, as_table).await;
                }
                let (opts, not_older_than) = list_options(&query)?;
                let list = reg.list(kind, namespace.as_deref(), &selector, opts, not_older_than).await?;
                Ok(Json(match as_table {
                    Some(t) => table::of_list(kind, &list, t),
                    None => list,
                })
                .into_response())
            }
            Method::POST => {
                if kind.namespaced && namespace.is_none() {
                    return Err(method_not_allowed(&method, "a namespaced collection across all namespaces"));
                }
                let body = json_body(&headers, &query, &read_body(body).await?)?;
                Ok(object(StatusCode::CREATED, reg.create(kind, namespace.as_deref(), body, &opts).await?))
            }
            Method::DELETE => {
                let selector =
                    Selector::parse(query.label_selector.as_deref(), query.field_selector.as_deref(), kind)?;
                let body = delete_options(&read_body(body).await?)?;
                opts.dry_run |= dry_run(&method, &body.dry_run)?;
                Ok(Json(reg.delete_collection(kind, namespace.as_deref(), &selector, &opts).await?).into_response())
            }
            m => Err(method_not_allowed(&m, kind.resource)),
        },
        Target::Object { kind, namespace, name, subresource } => {
            let ns = namespace.as_deref();
            let sub = subresource.as_deref();
            if let Some(s) = sub {
                let known = (s == "status" && kind.status_subresource)
                    || (s == "finalize" && kind.resource == "namespaces")
                    || (s == "scale" && kind.scale_subresource)
                    || (s == "binding" && kind.resource == "pods" && kind.group.is_empty());
                if !known {
                    return Err(Error::UnknownPath);
                }
            }
            match (sub, &method) {
                (Some("binding"), &Method::POST) => {
                    let body = json_body(&headers, &query, &read_body(body).await?)?;
                    return Ok(object(StatusCode::CREATED, reg.bind(kind, ns, &name, body, &opts).await?));
                }
                (Some("binding"), m) => return Err(method_not_allowed(m, "pods/binding")),
                (Some("scale"), &Method::GET) => return Ok(Json(reg.get_scale(kind, ns, &name).await?).into_response()),
                (Some("scale"), &Method::PUT) => {
                    let body = json_body(&headers, &query, &read_body(body).await?)?;
                    let v = reg.update_scale(kind, ns, &name, ScaleChange::Replace(&body), &opts).await?;
                    return Ok(Json(v).into_response());
                }
                (Some("scale"), &Method::PATCH) => {
                    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
                    let patch_type = PatchType::from_content_type(ct)?;
                    let bytes = read_body(body).await?;
                    let v = reg.update_scale(kind, ns, &name, ScaleChange::Patch(patch_type, &bytes), &opts).await?;
                    return Ok(Json(v).into_response());
                }
                (Some("scale"), m) => return Err(method_not_allowed(m, "scale")),
                _ => {}
            }
            if is_write(&method) && method != Method::DELETE && method != Method::PATCH && method != Method::PUT {
                return Err(method_not_allowed(&method, kind.resource));
            }
            match method {
                Method::GET if sub != Some("finalize") => {
                    let rv = query.resource_version.as_deref();
                    let obj = reg.get_not_older_than(kind, ns, &name, rv).await?;
                    Ok(Json(match table::requested(&headers, &parts.uri)? {
                        Some(t) => table::of_object(kind, &obj, t),
                        None => obj,
                    })
                    .into_response())
                }
                Method::PUT => {
                    let body = json_body(&headers, &query, &read_body(body).await?)?;
                    Ok(Json(reg.update(kind, ns, &name, sub, body, &opts).await?).into_response())
                }
                Method::PATCH if sub != Some("finalize") => {
                    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
                    let patch_type = PatchType::from_content_type(ct)?;
                    let bytes = read_body(body).await?;
                    if patch_type == PatchType::Apply {
                        let (v, created) = reg.apply(kind, ns, &name, sub, &bytes, &opts).await?;
                        return Ok(object(if created { StatusCode::CREATED } else { StatusCode::OK }, v));
                    }
                    Ok(Json(reg.patch(kind, ns, &name, sub, patch_type, &bytes, &opts).await?).into_response())
                }
                Method::DELETE if sub.is_none() => {
                    let bytes = read_body(body).await?;
                    let body = delete_options(&bytes)?;
                    opts.dry_run |= dry_run(&method, &body.dry_run)?;
                    let grace = parse_int("gracePeriodSeconds", &query.grace_period_seconds)?.or(body.grace_period);
                    // kube-apiserver answers 200 both when the object is gone and when it is
                    // only marked for deletion (202 only for orphanDependents=false).
                    match reg.delete(kind, ns, &name, body.preconditions, grace, &opts).await? {
                        DeleteResult::Deleted(v) | DeleteResult::Pending(v) => Ok(object(StatusCode::OK, v)),
                    }
                }
                m => Err(method_not_allowed(&m, kind.resource)),
            }
        }
    }
}

/// What we read of a DELETE's optional `DeleteOptions` body.
#[derive(Default)]
struct DeleteBody {
    preconditions: Preconditions,
    grace_period: Option<i64>,
    /// kubectl sends `--dry-run=server` of a delete here rather than in the query.
    dry_run: Vec<String>,
}

/// `DeleteOptions.preconditions`, `gracePeriodSeconds` and `dryRun` from an optional body.
fn delete_options(bytes: &[u8]) -> Result<DeleteBody> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(DeleteBody::default());
    }
    let opts: Value =
        serde_json::from_slice(bytes).map_err(|e| Error::BadRequest(format!("error decoding DeleteOptions: {e}")))?;
    let p = opts.get("preconditions");
    let uid = p.and_then(|p| p.get("uid")).and_then(Value::as_str).map(String::from);
    let resource_version = match p.and_then(|p| p.get("resourceVersion")).and_then(Value::as_str) {
        Some(rv) => Some(rv.parse::<i64>().map_err(|_| Error::BadRequest(format!("invalid resourceVersion {rv:?}")))?),
        None => None,
    };
    let grace = match opts.get("gracePeriodSeconds") {
        None | Some(Value::Null) => None,
        Some(g) => Some(g.as_i64().filter(|g| *g >= 0).ok_or_else(|| Error::BadRequest(format!("invalid gracePeriodSeconds {g}")))?),
    };
    let dry_run = match opts.get("dryRun") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
            a.iter().filter_map(Value::as_str).map(String::from).collect()
        }
        Some(d) => return Err(Error::BadRequest(format!("invalid dryRun {d}: must be a list of strings"))),
    };
    Ok(DeleteBody { preconditions: Preconditions { uid, resource_version }, grace_period: grace, dry_run })
}

/// The list options, and the NotOlderThan revision the answer must reach (0: any).
fn list_options(q: &Query) -> Result<(ListOptions, i64)> {
    let limit = parse_int("limit", &q.limit)?;
    let rv = q.resource_version.as_deref().unwrap_or("");
    let continue_token = q.continue_token.clone().filter(|c| !c.is_empty());
    if continue_token.is_some() && !(rv.is_empty() || rv == "0") {
        return Err(Error::BadRequest("specifying resource version is not allowed when using continue".into()));
    }
    let (revision, not_older_than) = match q.resource_version_match.as_deref() {
        Some("Exact") => {
            let r = parse_int("resourceVersion", &q.resource_version)?.filter(|r| *r > 0).ok_or_else(|| {
                Error::BadRequest("resourceVersionMatch=Exact needs a resourceVersion".into())
            })?;
            (Some(r), 0)
        }
        // The latest state is never older than a revision the store has reached; one it has
        // not reached is refused by the registry.
        None | Some("") | Some("NotOlderThan") => (None, parse_int("resourceVersion", &q.resource_version)?.unwrap_or(0)),
        Some(other) => return Err(Error::BadRequest(format!("unknown resourceVersionMatch {other:?}"))),
    };
    Ok((ListOptions { limit, continue_token, revision }, not_older_than))
}

async fn watch(
    st: AppState,
    kind: &'static Kind,
    namespace: Option<String>,
    selector: Selector,
    q: &Query,
    as_table: Option<TableOptions>,
) -> Result<Response> {
    let req = WatchRequest {
        resource_version: q.resource_version.clone(),
        allow_bookmarks: parse_bool("allowWatchBookmarks", &q.allow_watch_bookmarks)?.unwrap_or(false),
        send_initial_events: parse_bool("sendInitialEvents", &q.send_initial_events)?,
        timeout: parse_int("timeoutSeconds", &q.timeout_seconds)?.map(|s| Duration::from_secs(s as u64)),
    };
    let mut events = st.registry.watch(kind, namespace, selector, req).await?;
    if let Some(t) = as_table {
        events = table::of_watch(kind, events, t);
    }
    let body = Body::from_stream(events.map(Ok::<_, Infallible>));
    let mut resp = Response::new(body);
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    Ok(resp)
}
