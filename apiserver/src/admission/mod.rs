//! Admission: a chain of mutating plugins, then validating ones, run on writes after the kind's
//! own defaulting and before storage (kube-apiserver's `pkg/admission/chain.go` in spirit).
//! Each plugin is one small unit in its own file.
//!
//! The whole chain runs on create. On update only the validating plugins that `handle` the
//! change run (a pure look at the old and new object: a claim's resize, a service's new type),
//! through `UpdateGate`, outside the store's compare-and-swap loop; no mutating plugin of ours
//! changes updates (kube's LimitRanger leaves pods alone on update, the ServiceAccount plugin
//! only sets up new pods). Deletes do not consult the chain. Plugins may read the store
//! (LimitRanger reads the namespace's LimitRanges; ResourceQuota counts objects and charges
//! quotas, then `finish` settles the charge once the write is done).

mod default_service_account;
mod limit_ranger;
mod namespace_lifecycle;
pub mod quantity;
mod quota_usage;
mod resource_quota;
mod update_gate;

pub use default_service_account::DefaultServiceAccount;
pub use limit_ranger::LimitRanger;
pub use namespace_lifecycle::NamespaceLifecycle;
pub use resource_quota::ResourceQuota;
pub use update_gate::UpdateGate;

use futures::future::BoxFuture;
use serde_json::Value;

use crate::registry::Kind;
use crate::storage::{ListOptions, Storage, Stored};
use crate::Result;

/// The kind of write being admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// POST (and the create half of server-side apply).
    Create,
    /// PUT, PATCH, apply, and writes of the status, scale and finalize subresources.
    Update,
}

/// What is being admitted.
#[derive(Debug, Clone, Copy)]
pub struct Attributes<'a> {
    /// The kind of the object.
    pub kind: &'a Kind,
    /// Its namespace (None for cluster-scoped kinds).
    pub namespace: Option<&'a str>,
    /// Its name.
    pub name: &'a str,
    /// `dryRun=All`: plugins decide as usual but write nothing (a quota is checked, not charged).
    pub dry_run: bool,
    /// Create or update.
    pub operation: Operation,
    /// The stored object an update replaces (None on create).
    pub old: Option<&'a Value>,
    /// An id unique to this admission (the new object's uid on create): plugins key what they
    /// reserve by it, and `finish` gets the same attributes back.
    pub request: &'a str,
}

impl<'a> Attributes<'a> {
    /// The attributes of a create of an object whose uid is `uid`.
    pub fn create(kind: &'a Kind, namespace: Option<&'a str>, name: &'a str, uid: &'a str) -> Self {
        Self { kind, namespace, name, dry_run: false, operation: Operation::Create, old: None, request: uid }
    }
}

/// A plugin that may change the object (defaults that depend on policy, not on the kind).
pub trait MutatingPlugin: Send + Sync {
    /// Plugin name for logs and errors.
    fn name(&self) -> &'static str;
    /// Changes `obj` in place, or refuses it.
    fn admit<'a>(
        &'a self,
        attrs: &'a Attributes<'a>,
        obj: &'a mut Value,
        storage: &'a dyn Storage,
    ) -> BoxFuture<'a, Result<()>>;
}

/// A plugin that accepts or refuses the (final) object.
pub trait ValidatingPlugin: Send + Sync {
    /// Plugin name for logs and errors.
    fn name(&self) -> &'static str;
    /// Whether this plugin has anything to decide about the write: every create; on update,
    /// only changes it cares about. Runs inside the store's update loop: pure and cheap.
    fn handles(&self, attrs: &Attributes<'_>, _obj: &Value) -> bool {
        attrs.operation == Operation::Create
    }

    /// Accepts or refuses `obj`.
    fn validate<'a>(
        &'a self,
        attrs: &'a Attributes<'a>,
        obj: &'a Value,
        storage: &'a dyn Storage,
    ) -> BoxFuture<'a, Result<()>>;

    /// Called once the store answered the write this plugin admitted (whether or not it
    /// succeeded), to settle what `validate` reserved under `attrs.request`.
    fn finish<'a>(&'a self, _attrs: &'a Attributes<'a>, _storage: &'a dyn Storage) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// Mutating plugins in order, then validating plugins in order; the first refusal wins.
pub struct Chain {
    mutating: Vec<Box<dyn MutatingPlugin>>,
    validating: Vec<Box<dyn ValidatingPlugin>>,
}

impl Chain {
    /// The default chain, in kube-apiserver's order: ResourceQuota validates last because it
    /// reserves quota for an object every other plugin has accepted. (Its mutating instance
    /// only fills a new quota's status; the validating one tracks the reservations.)
    pub fn standard() -> Self {
        Self {
            mutating: vec![Box::new(DefaultServiceAccount), Box::new(LimitRanger), Box::new(ResourceQuota::new())],
            validating: vec![Box::new(NamespaceLifecycle), Box::new(LimitRanger), Box::new(ResourceQuota::new())],
        }
    }

    /// Runs every mutating plugin.
    pub async fn mutate(&self, attrs: &Attributes<'_>, obj: &mut Value, storage: &dyn Storage) -> Result<()> {
        for p in &self.mutating {
            p.admit(attrs, obj, storage).await?;
        }
        Ok(())
    }

    /// Whether any validating plugin handles this write.
    pub fn handles(&self, attrs: &Attributes<'_>, obj: &Value) -> bool {
        self.validating.iter().any(|p| p.handles(attrs, obj))
    }

    /// Runs every validating plugin that handles the write.
    pub async fn validate(&self, attrs: &Attributes<'_>, obj: &Value, storage: &dyn Storage) -> Result<()> {
        for p in self.validating.iter().filter(|p| p.handles(attrs, obj)) {
            p.validate(attrs, obj, storage).await?;
        }
        Ok(())
    }

    /// Tells every validating plugin the write it admitted reached the store (or failed).
    pub async fn finish(&self, attrs: &Attributes<'_>, storage: &dyn Storage) {
        for p in &self.validating {
            p.finish(attrs, storage).await;
        }
    }
}

/// Every object of `kind` in namespace `ns`, as the store has them now (plugins that count or
/// look up policy objects: quotas, limit ranges, what a quota tracks).
async fn all_in_namespace(storage: &dyn Storage, kind: &Kind, ns: &str) -> Result<Vec<Stored>> {
    Ok(storage.list(&kind.prefix(Some(ns)), ListOptions::default(), &|_| true).await?.items)
}
