//! `as=Table` at the handler edge: whether a GET asks for a meta.k8s.io Table (kubectl's
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io, ..., application/json`), and turning
//! the answer (one object, a list, or each watch event) into one. The cells come from
//! `crate::printers`.

use axum::http::{header, HeaderMap, Uri};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::Error;
use crate::printers::{self, IncludeObject, TableOptions};
use crate::registry::Kind;
use crate::Result;

/// What one entry of an Accept header asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wanted {
    Table(&'static str),
    Plain,
    /// Something we cannot produce (protobuf, PartialObjectMetadata, ...): try the next entry.
    Other,
}

fn wanted(media_range: &str) -> (f32, Wanted) {
    let mut parts = media_range.split(';').map(str::trim);
    let media = parts.next().unwrap_or("").to_ascii_lowercase();
    let (mut q, mut as_, mut g, mut v) = (1.0f32, None, None, None);
    for p in parts {
        let (k, val) = p.split_once('=').unwrap_or((p, ""));
        let val = val.trim().trim_matches('"');
        match k.trim() {
            "q" => q = val.parse().unwrap_or(0.0),
            "as" => as_ = Some(val),
            "g" => g = Some(val),
            "v" => v = Some(val),
            _ => {}
        }
    }
    if !matches!(media.as_str(), "application/json" | "application/*" | "*/*") {
        return (q, Wanted::Other);
    }
    let w = match (as_, g, v) {
        (None, _, _) => Wanted::Plain,
        (Some("Table"), Some("meta.k8s.io"), Some("v1")) => Wanted::Table("v1"),
        (Some("Table"), Some("meta.k8s.io"), Some("v1beta1")) => Wanted::Table("v1beta1"),
        _ => Wanted::Other,
    };
    (q, w)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TableQuery {
    include_object: Option<String>,
}

/// The Table a GET asks for, or `None` for the plain object or list. The client's preference
/// order (by `q`, then position) decides; an Accept header we cannot satisfy at all still gets
/// plain JSON, as before. A bad `includeObject` is a 400 like kube-apiserver's.
pub fn requested(headers: &HeaderMap, uri: &Uri) -> Result<Option<TableOptions>> {
    let accept = headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(",");
    let mut choices: Vec<(f32, Wanted)> = accept.split(',').filter(|r| !r.trim().is_empty()).map(wanted).collect();
    // A stable sort keeps the client's order among equal weights.
    choices.sort_by(|a, b| b.0.total_cmp(&a.0));
    let version = match choices.iter().map(|c| c.1).find(|w| *w != Wanted::Other) {
        Some(Wanted::Table(v)) => v,
        _ => return Ok(None),
    };
    let q = match uri.query() {
        Some(_) => axum::extract::Query::<TableQuery>::try_from_uri(uri).map(|q| q.0).unwrap_or_default(),
        None => TableQuery::default(),
    };
    let raw = q.include_object.unwrap_or_default();
    let include = IncludeObject::parse(&raw).ok_or_else(|| {
        Error::BadRequest(format!(
            "Unable to convert to Table as requested: includeObject: Unsupported value: {raw:?}: \
             supported values: \"Metadata\", \"None\", \"Object\""
        ))
    })?;
    Ok(Some(TableOptions { version, include, no_headers: false }))
}

/// A Table of one object; its resourceVersion becomes the Table's.
pub fn of_object(kind: &Kind, obj: &Value, opts: TableOptions) -> Value {
    let rv = obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(json!(""));
    let metadata = json!({ "resourceVersion": rv });
    printers::table(kind.group, kind.resource, std::slice::from_ref(obj), metadata, opts, printers::now_secs())
}

/// A Table of a `<Kind>List`, with the list's metadata (resourceVersion, continue).
pub fn of_list(kind: &Kind, list: &Value, opts: TableOptions) -> Value {
    let items = list.get("items").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    let metadata = list.get("metadata").cloned().unwrap_or_else(|| json!({}));
    printers::table(kind.group, kind.resource, items, metadata, opts, printers::now_secs())
}

/// A watch whose ADDED/MODIFIED/DELETED objects become one-row Tables, the first with the
/// column definitions and the rest without (as kube-apiserver sends them; kubectl keeps the
/// first header). BOOKMARK and ERROR events pass unchanged: their objects carry no row.
pub fn of_watch(kind: &'static Kind, events: BoxStream<'static, Bytes>, mut opts: TableOptions) -> BoxStream<'static, Bytes> {
    events
        .map(move |line| {
            let Ok(mut ev) = serde_json::from_slice::<Value>(&line) else { return line };
            if !matches!(ev.get("type").and_then(Value::as_str), Some("ADDED" | "MODIFIED" | "DELETED")) {
                return line;
            }
            let table = of_object(kind, &ev["object"], opts);
            opts.no_headers = true;
            ev["object"] = table;
            let mut out = serde_json::to_vec(&ev).unwrap_or_default();
            out.push(b'\n');
            Bytes::from(out)
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(accept: &str, uri: &str) -> Result<Option<TableOptions>> {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, accept.parse().unwrap());
        requested(&h, &uri.parse().unwrap())
    }

    const KUBECTL: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

    #[test]
    fn negotiation() {
        let t = ask(KUBECTL, "/api/v1/pods?limit=500").unwrap().unwrap();
        assert_eq!((t.version, t.include, t.no_headers), ("v1", IncludeObject::Metadata, false));
        let t = ask("application/json;as=Table;v=v1beta1;g=meta.k8s.io", "/api/v1/pods?includeObject=Object").unwrap();
        assert_eq!(t.map(|t| (t.version, t.include)), Some(("v1beta1", IncludeObject::Object)));
        assert_eq!(ask(KUBECTL, "/api/v1/pods?includeObject=None").unwrap().unwrap().include, IncludeObject::None);
        assert!(matches!(ask(KUBECTL, "/api/v1/pods?includeObject=All"), Err(Error::BadRequest(_))));
        // Plain JSON first, or by weight, or no Accept at all: the plain object.
        assert_eq!(ask("application/json", "/api/v1/pods").unwrap(), None);
        assert_eq!(ask("application/json, */*", "/api/v1/pods").unwrap(), None);
        assert_eq!(ask("application/json;as=Table;v=v1;g=meta.k8s.io;q=0.5,application/json", "/x").unwrap(), None);
        assert_eq!(requested(&HeaderMap::new(), &"/x".parse().unwrap()).unwrap(), None);
        // What we cannot make is skipped.
        let t = ask("application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1;g=meta.k8s.io", "/x");
        assert!(t.unwrap().is_some());
        assert_eq!(ask("application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json", "/x").unwrap(), None);
        assert_eq!(ask("application/json;as=Table;v=v2;g=meta.k8s.io", "/x").unwrap(), None);
    }
}
