//! Discovery documents (/api, /apis, /api/v1, /apis/<group>/<version>), /version and health.

use std::collections::BTreeSet;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::AppState;
use crate::error::Error;
use crate::registry::kinds;

const VERBS: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

pub async fn healthz() -> &'static str {
    "ok"
}

/// Ready when the store answers.
pub async fn readyz(State(st): State<AppState>) -> Response {
    match st.registry.storage().current_revision().await {
        Ok(_) => "ok".into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("[-]etcd failed: {e}\nreadyz check failed")).into_response(),
    }
}

pub async fn version() -> Json<Value> {
    Json(json!({
        "major": "1",
        "minor": "37",
        "gitVersion": "v1.37.0+ferrokube",
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "n/a (ferrokube is written in Rust)",
        "compiler": "rustc",
        "platform": "linux/amd64",
    }))
}

pub async fn api_versions() -> Json<Value> {
    Json(json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}],
    }))
}

fn group_doc(group: &str) -> Value {
    let versions: BTreeSet<&str> = kinds().iter().filter(|k| k.group == group).map(|k| k.version).collect();
    let versions: Vec<Value> =
        versions.iter().map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v})).collect();
    json!({"name": group, "versions": versions, "preferredVersion": versions[0]})
}

pub async fn api_groups() -> Json<Value> {
    let groups: BTreeSet<&str> = kinds().iter().map(|k| k.group).filter(|g| !g.is_empty()).collect();
    let groups: Vec<Value> = groups.into_iter().map(group_doc).collect();
    Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
}

pub async fn api_group(Path(group): Path<String>) -> Response {
    if group.is_empty() || !kinds().iter().any(|k| k.group == group) {
        return Error::UnknownPath.into_response();
    }
    let mut doc = group_doc(&group);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Json(doc).into_response()
}

/// The APIResourceList of one group/version; `None` if we serve nothing there.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for k in kinds().iter().filter(|k| k.group == group && k.version == version) {
        resources.push(json!({
            "name": k.resource,
            "singularName": k.singular,
            "namespaced": k.namespaced,
            "kind": k.kind,
            "verbs": VERBS,
            "shortNames": k.short_names,
        }));
        let mut subs = Vec::new();
        if k.status_subresource {
            subs.push(("status", json!(["get", "patch", "update"])));
        }
        if k.scale_subresource {
            subs.push(("scale", json!(["get", "patch", "update"])));
        }
        if k.resource == "namespaces" {
            subs.push(("finalize", json!(["update"])));
        }
        if k.resource == "pods" && k.group.is_empty() {
            subs.push(("binding", json!(["create"])));
        }
        for (sub, verbs) in subs {
            let mut doc = json!({
                "name": format!("{}/{sub}", k.resource),
                "singularName": "",
                "namespaced": k.namespaced,
                "kind": k.kind,
                "verbs": verbs,
            });
            match sub {
                "scale" => {
                    doc["group"] = json!("autoscaling");
                    doc["version"] = json!("v1");
                    doc["kind"] = json!("Scale");
                }
                "binding" => doc["kind"] = json!("Binding"),
                _ => {}
            }
            resources.push(doc);
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}
