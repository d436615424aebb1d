//! A kind served by the apiserver: one row of the table in `kinds.rs`.

use crate::error::GroupResource;
use crate::registry::strategy::Strategy;

/// Everything the generic registry, discovery and validation need to know about a kind.
pub struct Kind {
    /// API group ("" for the core group).
    pub group: &'static str,
    /// API version within the group.
    pub version: &'static str,
    /// `Pod`.
    pub kind: &'static str,
    /// Plural resource name in URLs and storage keys: `pods`.
    pub resource: &'static str,
    /// `pod`.
    pub singular: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// kubectl short names (`po`).
    pub short_names: &'static [&'static str],
    /// The JSON Schema (a file in schemas/).
    pub schema: &'static str,
    /// Whether `.../status` exists; then the main resource ignores status changes and the
    /// status subresource changes only status.
    pub status_subresource: bool,
    /// Whether `.../scale` exists (autoscaling/v1 Scale over `spec.replicas`).
    pub scale_subresource: bool,
    /// Per-kind behaviour.
    pub strategy: &'static (dyn Strategy + Sync),
}

impl Kind {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// For error messages: `pods`, `deployments.apps`.
    pub fn group_resource(&self) -> GroupResource {
        GroupResource { group: self.group.to_string(), resource: self.resource.to_string() }
    }

    /// The storage key of an object; `namespace` is ignored for cluster-scoped kinds.
    /// `/registry/pods/default/web`, `/registry/namespaces/default`.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("/registry/{}/{ns}/{name}", self.resource),
            _ => format!("/registry/{}/{name}", self.resource),
        }
    }

    /// The prefix of a list or watch: one namespace, or all of them.
    pub fn prefix(&self, namespace: Option<&str>) -> String {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("/registry/{}/{ns}/", self.resource),
            _ => format!("/registry/{}/", self.resource),
        }
    }
}

impl std::fmt::Debug for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kind({}/{})", self.api_version(), self.kind)
    }
}
