//! Admission of an update, kept out of the store's compare-and-swap loop.
//!
//! An update's new object is computed from the current one inside `guaranteed_update`, whose
//! function is synchronous and re-run on every lost race. Admission is async and may write
//! (a quota reservation), so it cannot run in there. Instead the update function hands its
//! result to `UpdateGate::action`:
//!
//! 1. no plugin handles the change (most updates: status writes): it is written at once;
//! 2. else the gate holds it back (the function answers Unchanged, so nothing is written), the
//!    registry runs the chain on (current, new) and tries again;
//! 3. the retry writes the admitted object only while the store is still at the revision it was
//!    computed from (the compare-and-swap guarantees that); if the object moved meanwhile, the
//!    new state is admitted afresh, after the previous admission is finished (its quota
//!    reservation ends).
//!
//! So, as in kube, admission judges the object computed from the current state, and what it
//! reserved is settled by `finish` once the write is over.

use std::future::Future;
use std::sync::Mutex;

use serde_json::Value;

use super::{Attributes, Chain, Operation};
use crate::registry::meta::new_uid;
use crate::registry::Kind;
use crate::storage::{Storage, Stored, UpdateAction, UpdateOutcome};
use crate::Result;

/// A change admitted at one revision of the object.
struct Admitted {
    revision: i64,
    old: Value,
    new: Value,
    request: String,
}

/// Admission for one update request; see the module comment.
pub struct UpdateGate<'a> {
    chain: &'a Chain,
    kind: &'a Kind,
    namespace: Option<&'a str>,
    name: &'a str,
    dry_run: bool,
    /// The change the update function held back for admission: (revision, old, new).
    held: Mutex<Option<(i64, Value, Value)>>,
    /// The last admitted change, until finished.
    admitted: Mutex<Option<Admitted>>,
}

impl<'a> UpdateGate<'a> {
    /// A gate for an update of `name` through `chain`.
    pub fn new(chain: &'a Chain, kind: &'a Kind, namespace: Option<&'a str>, name: &'a str, dry_run: bool) -> Self {
        Self { chain, kind, namespace, name, dry_run, held: Mutex::new(None), admitted: Mutex::new(None) }
    }

    fn attrs<'b>(&'b self, old: &'b Value, request: &'b str) -> Attributes<'b> {
        Attributes {
            kind: self.kind,
            namespace: self.namespace,
            name: self.name,
            dry_run: self.dry_run,
            operation: Operation::Update,
            old: Some(old),
            request,
        }
    }

    /// Inside the update function: what to do with `new`, computed from `cur`.
    pub fn action(&self, cur: &Stored, new: Value) -> UpdateAction {
        let admitted = self.admitted.lock().unwrap_or_else(|p| p.into_inner());
        // Computed from this very state before, and admitted: write that.
        if let Some(a) = admitted.as_ref().filter(|a| a.revision == cur.mod_revision) {
            return UpdateAction::Put(a.new.clone());
        }
        drop(admitted);
        if !self.chain.handles(&self.attrs(&cur.value, ""), &new) {
            return UpdateAction::Put(new);
        }
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = Some((cur.mod_revision, cur.value.clone(), new));
        UpdateAction::Unchanged
    }

    /// Runs `write` (one `guaranteed_update` whose function asks `action`), admitting what it
    /// held back and writing again, until the store answers; then finishes the admission.
    pub async fn run<F, Fut>(&self, storage: &dyn Storage, write: F) -> Result<UpdateOutcome>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<UpdateOutcome>>,
    {
        let outcome = loop {
            let outcome = write().await;
            let held = self.held.lock().unwrap_or_else(|p| p.into_inner()).take();
            // A held-back change answered Unchanged: nothing was written yet.
            let (Ok(_), Some((revision, old, new))) = (&outcome, held) else { break outcome };
            self.finish(storage).await;
            let request = new_uid();
            if let Err(e) = self.chain.validate(&self.attrs(&old, &request), &new, storage).await {
                break Err(e);
            }
            *self.admitted.lock().unwrap_or_else(|p| p.into_inner()) = Some(Admitted { revision, old, new, request });
        };
        self.finish(storage).await;
        outcome
    }

    /// Settles the last admission, if any.
    async fn finish(&self, storage: &dyn Storage) {
        let Some(a) = self.admitted.lock().unwrap_or_else(|p| p.into_inner()).take() else { return };
        self.chain.finish(&self.attrs(&a.old, &a.request), storage).await;
    }
}
