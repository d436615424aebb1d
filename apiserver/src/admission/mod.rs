//! Admission: a chain of mutating plugins, then validating ones, run on writes after the kind's
//! own defaulting and before storage (kube-apiserver's `pkg/admission/chain.go` in spirit).
//! Each plugin is one small unit in its own file.
//!
//! Today the chain runs on create; updates and deletes do not consult it yet (no plugin needs
//! them so far). Validating plugins may read the store; once the watch cache exists they will
//! read it instead.

mod default_service_account;
mod namespace_lifecycle;

pub use default_service_account::DefaultServiceAccount;
pub use namespace_lifecycle::NamespaceLifecycle;

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
}

/// A plugin that may change the object (defaults that depend on policy, not on the kind).
pub trait MutatingPlugin: Send + Sync {
    /// Plugin name for logs and errors.
    fn name(&self) -> &'static str;
    /// Changes `obj` in place, or refuses it.
    fn admit(&self, attrs: &Attributes<'_>, obj: &mut Value) -> Result<()>;
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
}

/// Mutating plugins in order, then validating plugins in order; the first refusal wins.
pub struct Chain {
    mutating: Vec<Box<dyn MutatingPlugin>>,
    validating: Vec<Box<dyn ValidatingPlugin>>,
}

impl Chain {
    /// The default chain.
    pub fn standard() -> Self {
        Self { mutating: vec![Box::new(DefaultServiceAccount)], validating: vec![Box::new(NamespaceLifecycle)] }
    }

    /// Runs every mutating plugin.
    pub fn mutate(&self, attrs: &Attributes<'_>, obj: &mut Value) -> Result<()> {
        for p in &self.mutating {
            p.admit(attrs, obj)?;
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
}
