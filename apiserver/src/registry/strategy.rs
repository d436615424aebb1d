//! Per-kind behaviour plugged into the generic registry. Every method has a default that fits
//! a plain kind (ConfigMap), so a strategy only says what is special about its kind.

use serde_json::Value;

use crate::error::Cause;
use crate::registry::validation::NameRule;

/// What is special about a kind.
pub trait Strategy: Send + Sync {
    /// The syntax of `metadata.name`.
    fn name_rule(&self) -> NameRule {
        NameRule::Subdomain
    }

    /// Whether `metadata.generation` counts spec changes (kinds with a spec).
    fn tracks_generation(&self) -> bool {
        false
    }

    /// Defaults and status reset on create (metadata is already filled in).
    fn prepare_for_create(&self, _obj: &mut Value) {}

    /// Fields the main resource may not change on update (status is handled generically).
    fn prepare_for_update(&self, _new: &mut Value, _old: &Value) {}

    /// Kind-specific rules, on create and update.
    fn validate(&self, _obj: &Value, _causes: &mut Vec<Cause>) {}

    /// Rules that compare with the previous object (immutable fields).
    fn validate_update(&self, _new: &Value, _old: &Value, _causes: &mut Vec<Cause>) {}

    /// Field-selector fields beyond `metadata.name` and `metadata.namespace`, as dotted paths
    /// into the object.
    fn selectable_fields(&self) -> &'static [&'static str] {
        &[]
    }

    /// Whether something other than `metadata.finalizers` keeps the object after DELETE
    /// (a namespace's `spec.finalizers`).
    fn blocks_deletion(&self, _obj: &Value) -> bool {
        false
    }

    /// Seconds a DELETE waits before the object goes (0: at once, or when the finalizers are
    /// done). `requested` is the client's `gracePeriodSeconds`.
    fn grace_period(&self, _obj: &Value, _requested: Option<i64>) -> i64 {
        0
    }

    /// Called once when a DELETE marks the object for deletion instead of removing it.
    fn mark_terminating(&self, _obj: &mut Value) {}

    /// How long objects live in the store before it deletes them (Events), if limited.
    fn ttl(&self) -> Option<std::time::Duration> {
        None
    }

    /// Whether DELETE answers the deleted object instead of a Success Status.
    fn returns_deleted_object(&self) -> bool {
        false
    }
}
