//! ResourceQuota admission: a create that would take a namespace over a quota's `spec.hard` is
//! refused (403), and each admitted create is charged to the quota's `status.used` with a
//! compare-and-swap, so concurrent creates cannot both take the last unit. An update is charged
//! only what it adds (a claim's bigger request, a service turned LoadBalancer); updates that add
//! nothing (status writes, a pod finishing) never reach this plugin.
//!
//! How usage stays right without a quota controller: every charge recounts the namespace from
//! the store (the objects that exist, read after the quota) and adds the reservations of creates
//! still in flight, kept in `status.pendingCharges`; the charge itself adds a reservation and is
//! written with the quota's resourceVersion as precondition (a lost race recounts). When the
//! create is over, `finish` removes the reservation and writes the recount. An update's
//! reservation also names the resourceVersion its object was admitted at, and holds while the
//! object is still there: it ends as soon as that update (or any other) lands. So a deleted
//! object stops counting at the next charge or settle in its namespace: `status.used` can be
//! stale after deletions and shrinks (and spec.hard edits) until then, but enforcement never is.
//!
//! The mutating half fills `status` of a new quota (hard, and used counted from the store).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use serde_json::{json, Value};

use super::quantity::{resource_list_lenient, to_json, ResourceList};
use super::quota_usage::{self as qu, PENDING};
use super::{Attributes, MutatingPlugin, ValidatingPlugin};
use crate::error::Error;
use crate::registry::{kinds, Kind};
use crate::storage::{Preconditions, Storage, Stored, UpdateAction};
use crate::Result;

/// How long a reservation outlives an apiserver that died mid-create.
const RESERVATION_TTL: Duration = Duration::from_secs(120);

/// See the module comment.
#[derive(Default)]
pub struct ResourceQuota {
    /// Quotas (storage keys) charged for each write in flight here, by `Attributes::request`.
    charged: Mutex<HashMap<String, (Instant, Vec<String>)>>,
}

impl ResourceQuota {
    /// A plugin with nothing in flight.
    pub fn new() -> Self {
        Self::default()
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn quota_kind() -> &'static Kind {
    crate::registry::lookup("", "v1", "resourcequotas").expect("resourcequotas are in the kind table")
}

fn forbidden(attrs: &Attributes<'_>, why: &str) -> Error {
    Error::Forbidden(format!("{} \"{}\" is forbidden: {why}", attrs.kind.group_resource(), attrs.name))
}

/// The quotas of a namespace, read from the store.
async fn quotas(storage: &dyn Storage, ns: &str) -> Result<Vec<Stored>> {
    super::all_in_namespace(storage, quota_kind(), ns).await
}

/// Every object of the namespace of a kind `quota` tracks (read now, so after the quota).
async fn tracked_objects(storage: &dyn Storage, ns: &str, quota: &Value) -> Result<Vec<(&'static Kind, Value)>> {
    let hard = resource_list_lenient(quota.pointer("/spec/hard"));
    let mut out = Vec::new();
    for kind in kinds().iter().filter(|k| k.namespaced && hard.keys().any(|name| qu::tracks(k, name))) {
        out.extend(super::all_in_namespace(storage, kind, ns).await?.into_iter().map(|s| (kind, s.value)));
    }
    Ok(out)
}

/// The quota's usage recounted from the store: see `quota_usage::tally`.
async fn recount(storage: &dyn Storage, ns: &str, quota: &Value, settled: Option<&str>) -> Result<(ResourceList, Vec<Value>)> {
    let objects = tracked_objects(storage, ns, quota).await?;
    let refs: Vec<(&Kind, &Value)> = objects.iter().map(|(k, v)| (*k, v)).collect();
    Ok(qu::tally(quota, &refs, unix_now(), settled))
}

/// The quota with a new status.
fn with_status(quota: &Value, used: &ResourceList, pending: Vec<Value>) -> Value {
    let mut new = quota.clone();
    let hard = to_json(&resource_list_lenient(quota.pointer("/spec/hard")));
    let mut status = json!({"hard": hard, "used": to_json(used)});
    if !pending.is_empty() {
        status[PENDING] = json!(pending);
    }
    new["status"] = status;
    new
}

/// Writes `new` over the quota if it is still at `revision`; false if it changed meanwhile
/// (or is gone).
async fn write_if_unchanged(storage: &dyn Storage, cur: &Stored, new: Value) -> Result<bool> {
    let pre = Preconditions { uid: None, resource_version: Some(cur.mod_revision) };
    let put = move |_: &Stored| -> Result<UpdateAction> { Ok(UpdateAction::Put(new.clone())) };
    match storage.guaranteed_update(&cur.key, pre, &put).await {
        Ok(_) => Ok(true),
        Err(Error::PreconditionFailed(_) | Error::KeyNotFound(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

impl ResourceQuota {
    /// Charges one quota for the object, or refuses it. Ok(true) if a reservation was made.
    async fn charge(&self, attrs: &Attributes<'_>, obj: &Value, storage: &dyn Storage, quota: Stored) -> Result<bool> {
        let ns = attrs.namespace.unwrap_or("");
        let uid = obj.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
        let usage = match attrs.old {
            Some(old) => qu::increase(attrs.kind, old, obj),
            None => qu::usage(attrs.kind, obj),
        };
        let name = quota.value.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
        let mut cur = quota;
        loop {
            let hard = resource_list_lenient(cur.value.pointer("/spec/hard"));
            if !qu::applies(&cur.value, attrs.kind, obj) {
                return Ok(false);
            }
            if attrs.kind.group.is_empty() && attrs.kind.resource == "pods" {
                if let Some(why) = qu::missing_requests(&hard, obj) {
                    return Err(forbidden(attrs, &format!("failed quota: {name}: {why}")));
                }
            }
            let requested = qu::mask(&usage, hard.keys());
            if requested.is_empty() {
                return Ok(false);
            }
            let (used, mut pending) = recount(storage, ns, &cur.value, None).await?;
            qu::check(&name, &hard, &used, &requested).map_err(|why| forbidden(attrs, &why))?;
            if attrs.dry_run {
                // Checked as a real create would be; a dry run reserves nothing.
                return Ok(false);
            }
            let mut new_used = used.clone();
            for (k, v) in &requested {
                new_used.insert(k.clone(), used[k] + *v);
            }
            let expires = unix_now() + RESERVATION_TTL.as_secs();
            let mut reservation = json!({"uid": uid, "expires": expires, "usage": to_json(&requested)});
            if let Some(old) = attrs.old {
                reservation["id"] = json!(attrs.request);
                reservation["revision"] = old.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null);
            }
            pending.push(reservation);
            if write_if_unchanged(storage, &cur, with_status(&cur.value, &new_used, pending)).await? {
                return Ok(true);
            }
            // Someone else charged or edited the quota: recount on top of their change.
            match storage.get(&cur.key).await? {
                Some(s) => cur = s,
                None => return Ok(false),
            }
        }
    }

    /// Ends the reservation `id` on one quota and writes the recount.
    async fn settle(storage: &dyn Storage, ns: &str, key: &str, id: &str) -> Result<()> {
        loop {
            let Some(cur) = storage.get(key).await? else { return Ok(()) };
            let (used, pending) = recount(storage, ns, &cur.value, Some(id)).await?;
            if write_if_unchanged(storage, &cur, with_status(&cur.value, &used, pending)).await? {
                return Ok(());
            }
        }
    }
}

impl MutatingPlugin for ResourceQuota {
    fn name(&self) -> &'static str {
        "ResourceQuota"
    }

    fn admit<'a>(
        &'a self,
        attrs: &'a Attributes<'a>,
        obj: &'a mut Value,
        storage: &'a dyn Storage,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let is_quota = attrs.kind.group.is_empty() && attrs.kind.resource == "resourcequotas";
            let (Some(ns), true) = (attrs.namespace, is_quota) else { return Ok(()) };
            // A new quota has no reservations: its status starts as a recount of what exists,
            // plus the quota itself for a quota on `resourcequotas`.
            let (mut used, _) = recount(storage, ns, obj, None).await?;
            if qu::applies(obj, attrs.kind, obj) {
                let own = qu::mask(&qu::usage(attrs.kind, obj), used.keys());
                for (k, v) in own {
                    let sum = used[&k] + v;
                    used.insert(k, sum);
                }
            }
            *obj = with_status(obj, &used, Vec::new());
            Ok(())
        })
    }
}

impl ValidatingPlugin for ResourceQuota {
    fn name(&self) -> &'static str {
        "ResourceQuota"
    }

    fn handles(&self, attrs: &Attributes<'_>, obj: &Value) -> bool {
        match attrs.old {
            None => true,
            Some(old) => attrs.kind.namespaced && !qu::increase(attrs.kind, old, obj).is_empty(),
        }
    }

    fn validate<'a>(
        &'a self,
        attrs: &'a Attributes<'a>,
        obj: &'a Value,
        storage: &'a dyn Storage,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let (true, Some(ns)) = (attrs.kind.namespaced, attrs.namespace) else { return Ok(()) };
            let id = attrs.request;
            let mut charged = Vec::new();
            let mut outcome = Ok(());
            for quota in quotas(storage, ns).await? {
                let key = quota.key.clone();
                match self.charge(attrs, obj, storage, quota).await {
                    Ok(true) => charged.push(key),
                    Ok(false) => {}
                    Err(e) => {
                        outcome = Err(e);
                        break;
                    }
                }
            }
            if let Err(e) = outcome {
                // A later quota refused: the earlier reservations are void.
                for key in &charged {
                    Self::settle(storage, ns, key, id).await?;
                }
                return Err(e);
            }
            if !charged.is_empty() {
                let mut inflight = self.charged.lock().unwrap_or_else(|p| p.into_inner());
                // Creates whose `finish` never came (client gone) are forgotten with their reservation.
                inflight.retain(|_, (at, _)| at.elapsed() < RESERVATION_TTL);
                inflight.insert(id.to_string(), (Instant::now(), charged));
            }
            Ok(())
        })
    }

    fn finish<'a>(&'a self, attrs: &'a Attributes<'a>, storage: &'a dyn Storage) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let entry = self.charged.lock().unwrap_or_else(|p| p.into_inner()).remove(attrs.request);
            let (Some((_, keys)), Some(ns)) = (entry, attrs.namespace) else { return };
            for key in keys {
                // The write is already answered by the store; a failure here only leaves the
                // reservation to expire.
                if let Err(e) = Self::settle(storage, ns, &key, attrs.request).await {
                    tracing::warn!(error = %e, quota = %key, "could not settle a quota reservation");
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_has_hard_used_and_only_open_reservations() {
        let quota = json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "2", "requests.memory": "1024Mi"}}});
        let used: ResourceList = [("pods".to_string(), crate::admission::quantity::Quantity::from_units(1))].into();
        let s = with_status(&quota, &used, Vec::new());
        assert_eq!(s["status"], json!({"hard": {"pods": "2", "requests.memory": "1Gi"}, "used": {"pods": "1"}}));
        let s = with_status(&quota, &used, vec![json!({"uid": "u"})]);
        assert_eq!(s["status"][PENDING], json!([{"uid": "u"}]));
    }

    #[test]
    fn refusals_name_the_object() {
        let pods = crate::registry::lookup("", "v1", "pods").unwrap();
        let attrs = Attributes::create(pods, Some("ns"), "web", "u");
        assert_eq!(forbidden(&attrs, "exceeded quota: q").to_string(), "pods \"web\" is forbidden: exceeded quota: q");
    }
}
