//! A minimal OpenAPI v3 discovery: for each group/version, one PATCH and one POST operation per
//! kind, tagged with `x-kubernetes-group-version-kind` and a `fieldValidation` parameter.
//! That is what kubectl 1.37 looks for to decide the server validates (so it sends
//! `fieldValidation=Strict` and skips client-side schema validation). The schemas themselves
//! are not published (no `components.schemas` yet): `kubectl explain` does not work.

use std::collections::BTreeMap;

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::error::Error;
use crate::registry::kinds;

/// "api/v1", "apis/apps/v1" for every group/version served.
fn group_versions() -> BTreeMap<String, (&'static str, &'static str)> {
    kinds()
        .iter()
        .map(|k| {
            let path = if k.group.is_empty() { format!("api/{}", k.version) } else { format!("apis/{}/{}", k.group, k.version) };
            (path, (k.group, k.version))
        })
        .collect()
}

/// `/openapi/v2`, which kubectl reads (as gnostic protobuf) to validate the items of a
/// `kind: List` manifest, since a List has no entry in OpenAPI v3. An empty document (the empty
/// protobuf message is zero bytes) lists no schemas, and kubectl leaves kinds it has no schema
/// for to the server, which validates them anyway (`fieldValidation=Strict`). Without it the
/// whole manifest failed with "the server could not find the requested resource".
pub async fn v2() -> Response {
    const GNOSTIC_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
    ([(axum::http::header::CONTENT_TYPE, GNOSTIC_PROTOBUF)], Vec::<u8>::new()).into_response()
}

pub async fn root() -> Json<Value> {
    let paths: serde_json::Map<String, Value> = group_versions()
        .into_keys()
        .map(|p| {
            let url = format!("/openapi/v3/{p}?hash=ferrokube1");
            (p, json!({"serverRelativeURL": url}))
        })
        .collect();
    Json(json!({"paths": paths}))
}

pub async fn group_version(Path(rest): Path<String>) -> Response {
    let Some((group, version)) = group_versions().get(rest.trim_end_matches('/')).copied() else {
        return Error::UnknownPath.into_response();
    };
    let param = json!({"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}});
    let mut paths = serde_json::Map::new();
    for k in kinds().iter().filter(|k| k.group == group && k.version == version) {
        let gvk = json!({"group": k.group, "version": k.version, "kind": k.kind});
        let prefix = if k.group.is_empty() { format!("/api/{}", k.version) } else { format!("/apis/{}/{}", k.group, k.version) };
        let collection = if k.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", k.resource)
        } else {
            format!("{prefix}/{}", k.resource)
        };
        let op = |action: &str| {
            json!({
                "operationId": format!("{action}{}", k.kind),
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
                "parameters": [param],
                "responses": {"200": {"description": "OK"}},
            })
        };
        paths.insert(collection.clone(), json!({"post": op("post")}));
        paths.insert(format!("{collection}/{{name}}"), json!({"patch": op("patch"), "put": op("put")}));
    }
    Json(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.37.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
    .into_response()
}
