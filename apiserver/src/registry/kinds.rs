//! The table of kinds. Adding a kind = a schema file in schemas/ plus a row here (and a
//! strategy in `strategies.rs` when the defaults are not enough).

use crate::registry::kind::Kind;
use crate::registry::strategies::{
    DefaultStrategy, DeploymentStrategy, EventStrategy, NamespaceStrategy, NodeStrategy, PodStrategy, SecretStrategy, ServiceStrategy,
};

macro_rules! schema {
    ($file:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/", $file))
    };
}

static KINDS: &[Kind] = &[
    Kind {
        group: "",
        version: "v1",
        kind: "Namespace",
        resource: "namespaces",
        singular: "namespace",
        namespaced: false,
        short_names: &["ns"],
        schema: schema!("namespace.json"),
        status_subresource: true,
        scale_subresource: false,
        strategy: &NamespaceStrategy,
    },
    Kind {
        group: "",
        version: "v1",
        kind: "Pod",
        resource: "pods",
        singular: "pod",
        namespaced: true,
        short_names: &["po"],
        schema: schema!("pod.json"),
        status_subresource: true,
        scale_subresource: false,
        strategy: &PodStrategy,
    },
    Kind {
        group: "",
        version: "v1",
        kind: "ConfigMap",
        resource: "configmaps",
        singular: "configmap",
        namespaced: true,
        short_names: &["cm"],
        schema: schema!("configmap.json"),
        status_subresource: false,
        scale_subresource: false,
        strategy: &DefaultStrategy,
    },
    Kind {
        group: "",
        version: "v1",
        kind: "Secret",
        resource: "secrets",
        singular: "secret",
        namespaced: true,
        short_names: &[],
        schema: schema!("secret.json"),
        status_subresource: false,
        scale_subresource: false,
        strategy: &SecretStrategy,
    },
    Kind {
        group: "",
        version: "v1",
        kind: "Service",
        resource: "services",
        singular: "service",
        namespaced: true,
        short_names: &["svc"],
        schema: schema!("service.json"),
        status_subresource: true,
        scale_subresource: false,
        strategy: &ServiceStrategy,
    },
    Kind {
        group: "",
        version: "v1",
        kind: "ServiceAccount",
        resource: "serviceaccounts",
        singular: "serviceaccount",
        namespaced: true,
        short_names: &["sa"],
        schema: schema!("serviceaccount.json"),
        status_subresource: false,
        scale_subresource: false,
        strategy: &DefaultStrategy,
    },
    Kind {
        group: "",
        version: "v1",
        kind: "Node",
        resource: "nodes",
        singular: "node",
        namespaced: false,
        short_names: &["no"],
        schema: schema!("node.json"),
        status_subresource: true,
        scale_subresource: false,
        strategy: &NodeStrategy,
    },
    Kind {
        group: "",
        version: "v1",
        kind: "Event",
        resource: "events",
        singular: "event",
        namespaced: true,
        short_names: &["ev"],
        schema: schema!("event.json"),
        status_subresource: false,
        scale_subresource: false,
        strategy: &EventStrategy,
    },
    Kind {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        resource: "deployments",
        singular: "deployment",
        namespaced: true,
        short_names: &["deploy"],
        schema: schema!("deployment.json"),
        status_subresource: true,
        scale_subresource: true,
        strategy: &DeploymentStrategy,
    },
];

/// Every kind served.
pub fn kinds() -> &'static [Kind] {
    KINDS
}

/// The kind served at `group/version/resource`.
pub fn lookup(group: &str, version: &str, resource: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.group == group && k.version == version && k.resource == resource)
}

/// The kind named `kind` in `group`.
pub fn lookup_kind(group: &str, kind: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.group == group && k.kind == kind)
}
