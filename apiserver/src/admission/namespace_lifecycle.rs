//! NamespaceLifecycle: a namespaced object may only be created in an existing namespace that is
//! not Terminating (the namespace controller is emptying a Terminating one).

use futures::future::BoxFuture;
use serde_json::Value;

use super::{Attributes, ValidatingPlugin};
use crate::error::Error;
use crate::registry::lookup;
use crate::storage::Storage;
use crate::Result;

/// See the module comment.
pub struct NamespaceLifecycle;

impl ValidatingPlugin for NamespaceLifecycle {
    fn name(&self) -> &'static str {
        "NamespaceLifecycle"
    }

    fn validate<'a>(
        &'a self,
        attrs: &'a Attributes<'a>,
        _obj: &'a Value,
        storage: &'a dyn Storage,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let (true, Some(ns)) = (attrs.kind.namespaced, attrs.namespace) else { return Ok(()) };
            let nk = lookup("", "v1", "namespaces").expect("namespaces are in the kind table");
            match storage.get(&nk.key(None, ns)).await? {
                None => Err(Error::NotFound { resource: nk.group_resource(), name: ns.to_string() }),
                Some(s) if s.value.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating") => {
                    Err(Error::Forbidden(format!(
                        "unable to create new content in namespace {ns} because it is being terminated"
                    )))
                }
                Some(_) => Ok(()),
            }
        })
    }
}
