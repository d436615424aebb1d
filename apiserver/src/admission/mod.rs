//! Admission: a chain of mutating plugins, then validating ones, run on writes after the kind's
//! own defaulting and before storage (kube-apiserver's `pkg/admission/chain.go` in spirit).
//! Each plugin is one small unit in its own file.
//!
//! Today the chain runs on create; updates and deletes do not consult it yet. Plugins may read
//! the store (LimitRanger reads the namespace's LimitRanges; ResourceQuota counts objects and
//! charges quotas, then `finish` settles the charge once the create is done).

mod default_service_account;
mod limit_ranger;
mod namespace_lifecycle;
pub mod quantity;
mod quota_usage;
mod resource_quota;

pub use default_service_account::DefaultServiceAccount;
pub use limit_ranger::LimitRanger;
pub use namespace_lifecycle::NamespaceLifecycle;
pub use resource_quota::ResourceQuota;

use futures::future::BoxFuture;
use serde_json::Value;

use crate::registry::Kind;
use crate::storage::Storage;
use crate::Result;

/// What is being admitted.
#[derive(Debug, Clone, Copy)]
pub struct Attributes<'a> {
    /// The kind of the object.
    pub kind: &'static Kind,
    /// Its namespace (None for cluster-scoped kinds).
    pub namespace: Option<&'a str>,
    /// Its name.
    pub name: &'a str,
    /// `dryRun=All`: plugins decide as usual but write nothing (a quota is checked, not charged).
    pub dry_run: bool,
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
    /// Accepts or refuses `obj`.
    fn validate<'a>(
        &'a self,
        attrs: &'a Attributes<'a>,
        obj: &'a Value,
        storage: &'a dyn Storage,
    ) -> BoxFuture<'a, Result<()>>;

    /// Called once the store answered the create this plugin admitted (whether or not it
    /// succeeded), to settle what `validate` reserved.
    fn finish<'a>(&'a self, _attrs: &'a Attributes<'a>, _uid: &'a str, _storage: &'a dyn Storage) -> BoxFuture<'a, ()> {
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

    /// Runs every validating plugin.
    pub async fn validate(&self, attrs: &Attributes<'_>, obj: &Value, storage: &dyn Storage) -> Result<()> {
        for p in &self.validating {
            p.validate(attrs, obj, storage).await?;
        }
        Ok(())
    }

    /// Tells every validating plugin the create it admitted reached the store (or failed).
    pub async fn finish(&self, attrs: &Attributes<'_>, uid: &str, storage: &dyn Storage) {
        for p in &self.validating {
            p.finish(attrs, uid, storage).await;
        }
    }
}
