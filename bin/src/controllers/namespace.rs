//! The namespace controller: empties a Terminating namespace, then releases it.
//!
//! Deleting a namespace only marks it (deletionTimestamp, phase Terminating, the `kubernetes`
//! finalizer in `spec.finalizers`). This controller deletes every namespaced object in it,
//! waits until none is left (objects with finalizers or in graceful deletion take their time),
//! and then removes its `kubernetes` finalizer through `namespaces/NAME/finalize`, after which
//! the apiserver deletes the namespace. Model: kube-controller-manager's namespace controller.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::discovery::{verbs, ApiResource, Scope};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

/// The finalizer this controller owns (kube's `FinalizerKubernetes`).
pub const FINALIZER: &str = "kubernetes";

/// How soon a namespace whose content is still going away is looked at again.
const RECHECK: Duration = Duration::from_secs(1);

/// What to do with a namespace, given how many objects are still in it (`None`: not counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Not being deleted, or no longer ours to finalize: nothing.
    Nothing,
    /// Being deleted and the content is not known to be gone: delete it, then count again.
    DeleteContent,
    /// Empty: remove our finalizer so the apiserver deletes the namespace.
    Finalize,
}

/// The controller's decision, a pure function of the namespace and what is left in it.
pub fn next_step(deleting: bool, finalizers: &[String], remaining: Option<usize>) -> Step {
    if !deleting || !finalizers.iter().any(|f| f == FINALIZER) {
        return Step::Nothing;
    }
    match remaining {
        Some(0) => Step::Finalize,
        _ => Step::DeleteContent,
    }
}

/// Errors of one reconcile; the controller retries.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("{0}")]
    Api(#[from] kube::Error),
}

struct Context {
    client: Client,
}

/// The namespaced resources that can be listed and deleted (every kind the apiserver serves,
/// found through discovery, so kinds added later are emptied too).
async fn namespaced_resources(client: &Client) -> Result<Vec<ApiResource>, kube::Error> {
    let found = super::discover(client, |caps| {
        caps.scope == Scope::Namespaced && caps.supports_operation(verbs::LIST) && caps.supports_operation(verbs::DELETE)
    })
    .await?;
    Ok(found.into_iter().map(|(ar, _)| ar).collect())
}

/// Deletes everything in `ns` that is not already going away; returns how many objects remain.
async fn delete_content(client: &Client, ns: &str) -> Result<usize, kube::Error> {
    let mut remaining = 0;
    for ar in namespaced_resources(client).await? {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
        let objects = api.list(&ListParams::default()).await?;
        remaining += objects.items.len();
        for obj in objects.items.iter().filter(|o| o.metadata.deletion_timestamp.is_none()) {
            match api.delete(&obj.name_any(), &DeleteParams::default()).await {
                Ok(_) => {}
                // Gone in the meantime.
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(remaining)
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = ns.name_any();
    let finalizers = ns.spec.as_ref().and_then(|s| s.finalizers.clone()).unwrap_or_default();
    let deleting = ns.metadata.deletion_timestamp.is_some();
    if next_step(deleting, &finalizers, None) == Step::Nothing {
        return Ok(Action::await_change());
    }
    let remaining = delete_content(&ctx.client, &name).await?;
    match next_step(deleting, &finalizers, Some(remaining)) {
        Step::Finalize => {
            let mut released = (*ns).clone();
            if let Some(spec) = released.spec.as_mut() {
                spec.finalizers = Some(finalizers.into_iter().filter(|f| f != FINALIZER).collect());
            }
            let api: Api<Namespace> = Api::all(ctx.client.clone());
            api.replace_subresource("finalize", &name, &PostParams::default(), &released).await?;
            tracing::info!(namespace = %name, "namespace emptied and finalized");
            Ok(Action::await_change())
        }
        // Objects with finalizers or in graceful deletion: look again soon.
        _ => {
            tracing::debug!(namespace = %name, remaining, "waiting for the namespace's content to go");
            Ok(Action::requeue(RECHECK))
        }
    }
}

fn error_policy(ns: Arc<Namespace>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(namespace = %ns.name_any(), %error, "namespace reconcile failed; retrying");
    Action::requeue(Duration::from_secs(2))
}

/// Runs the namespace controller until `shutdown` resolves.
pub async fn run(client: Client, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    Controller::new(namespaces, watcher::Config::default())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, Arc::new(Context { client }))
        .for_each(|_| futures::future::ready(()))
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_deleting_namespace_with_our_finalizer_is_emptied_then_finalized() {
        let ours = vec![FINALIZER.to_string()];
        let other = vec!["example.com/keep".to_string()];
        assert_eq!(next_step(false, &ours, None), Step::Nothing);
        assert_eq!(next_step(false, &ours, Some(0)), Step::Nothing);
        assert_eq!(next_step(true, &[], Some(0)), Step::Nothing, "already finalized by us");
        assert_eq!(next_step(true, &other, Some(0)), Step::Nothing, "someone else's finalizer only");
        assert_eq!(next_step(true, &ours, None), Step::DeleteContent);
        assert_eq!(next_step(true, &ours, Some(3)), Step::DeleteContent);
        assert_eq!(next_step(true, &ours, Some(0)), Step::Finalize);
        let both = vec![FINALIZER.to_string(), "example.com/keep".to_string()];
        assert_eq!(next_step(true, &both, Some(0)), Step::Finalize, "ours goes; theirs stays for them");
    }
}
