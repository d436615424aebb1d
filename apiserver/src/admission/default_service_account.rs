//! ServiceAccount admission, the defaulting half: a pod without `spec.serviceAccountName` runs
//! as the namespace's `default` account. (Checking that the account exists and mounting its
//! token come with the controller-manager, which creates `default` accounts.)

use futures::future::BoxFuture;
use serde_json::{json, Value};

use super::{Attributes, MutatingPlugin};
use crate::storage::Storage;
use crate::Result;

/// See the module comment.
pub struct DefaultServiceAccount;

impl MutatingPlugin for DefaultServiceAccount {
    fn name(&self) -> &'static str {
        "ServiceAccount"
    }

    fn admit<'a>(
        &'a self,
        attrs: &'a Attributes<'a>,
        obj: &'a mut Value,
        _storage: &'a dyn Storage,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            default_account(attrs, obj);
            Ok(())
        })
    }
}

fn default_account(attrs: &Attributes<'_>, obj: &mut Value) {
    if attrs.kind.group.is_empty() && attrs.kind.resource == "pods" {
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            let unset = spec.get("serviceAccountName").and_then(Value::as_str).is_none_or(str::is_empty);
            if unset {
                spec.insert("serviceAccountName".into(), json!("default"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_get_the_default_account_and_keep_their_own() {
        let pods = crate::registry::lookup("", "v1", "pods").unwrap();
        let attrs = Attributes::create(pods, Some("ns"), "p", "u");
        let mut p = json!({"spec": {"containers": []}});
        default_account(&attrs, &mut p);
        assert_eq!(p["spec"]["serviceAccountName"], "default");
        let mut own = json!({"spec": {"serviceAccountName": "robot"}});
        default_account(&attrs, &mut own);
        assert_eq!(own["spec"]["serviceAccountName"], "robot");
        let cms = crate::registry::lookup("", "v1", "configmaps").unwrap();
        let mut cm = json!({"spec": {}});
        default_account(&Attributes { kind: cms, ..attrs }, &mut cm);
        assert_eq!(cm, json!({"spec": {}}));
    }
}
