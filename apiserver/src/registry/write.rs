//! The storage write step every registry verb ends with, and the request options that shape it
//! (kube's `CreateOptions`/`UpdateOptions`/`PatchOptions`/`DeleteOptions`).
//!
//! A dry run (`dryRun=All`) goes through the whole request (defaults, admission, validation,
//! preconditions, the 409 on a stale resourceVersion) and stops here: instead of the
//! compare-and-swap, the update function is evaluated once against the current object and its
//! result answered, so the store (and its revision) never moves.

use serde_json::Value;

use crate::error::Error;
use crate::storage::{
    set_resource_version, Preconditions, Storage, Stored, UpdateAction, UpdateFn, UpdateOutcome,
};
use crate::Result;

/// Per-request options of a write.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// `dryRun=All`: run everything but the store write.
    pub dry_run: bool,
    /// Who is writing, for `metadata.managedFields`: the `fieldManager` parameter, else the
    /// User-Agent's product (`kubectl` from `kubectl/v1.37.0 (linux/amd64) ...`).
    pub field_manager: String,
    /// `force=true`: a server-side apply takes over fields other managers own.
    pub force: bool,
    /// `fieldValidation`: what a patch or apply with duplicate or unknown fields gets.
    pub field_validation: crate::codec::strict::FieldValidation,
    /// Set by `Registry::apply`: managedFields are already computed, not recorded as an update.
    pub(crate) applying: bool,
    /// Set by `Registry::update_scale`: the subresource its managedFields entries name.
    pub(crate) via: Option<&'static str>,
}

/// Creates `value` at `key`; a dry run only checks that the name is free and answers the
/// object as it would be stored, without a resourceVersion (there is no revision yet).
pub async fn create(
    storage: &dyn Storage,
    key: &str,
    value: Value,
    ttl: Option<std::time::Duration>,
    dry_run: bool,
) -> Result<Stored> {
    if !dry_run {
        return storage.create(key, value, ttl).await;
    }
    if storage.get(key).await?.is_some() {
        return Err(Error::KeyExists(key.to_string()));
    }
    Ok(Stored {
        key: key.to_string(),
        value,
        mod_revision: 0,
        create_revision: 0,
        lease: 0,
    })
}

/// `guaranteed_update`, or for a dry run one evaluation of `update` on the current object: the
/// outcome is what the write would have produced, stamped with the current resourceVersion
/// (nothing was written, so the object is still at it).
pub async fn update(
    storage: &dyn Storage,
    key: &str,
    preconditions: Preconditions,
    update: UpdateFn<'_>,
    dry_run: bool,
) -> Result<UpdateOutcome> {
    if !dry_run {
        return storage.guaranteed_update(key, preconditions, update).await;
    }
    let cur = storage
        .get(key)
        .await?
        .ok_or_else(|| Error::KeyNotFound(key.to_string()))?;
    preconditions.check(&cur)?;
    Ok(match update(&cur)? {
        UpdateAction::Unchanged => UpdateOutcome::Unchanged(cur),
        UpdateAction::Delete => UpdateOutcome::Deleted(cur),
        UpdateAction::Put(mut value) => {
            set_resource_version(&mut value, cur.mod_revision);
            UpdateOutcome::Updated(Stored { value, ..cur })
        }
    })
}
