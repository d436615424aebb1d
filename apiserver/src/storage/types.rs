//! Values passed across the `Storage` interface.

use serde_json::Value;

/// An object as stored, with the revisions the store gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The storage key (`/registry/pods/default/web`).
    pub key: String,
    /// The object, with `metadata.resourceVersion` set to `mod_revision`.
    pub value: Value,
    /// The revision of the last write (the object's resourceVersion).
    pub mod_revision: i64,
    /// The revision that created the key.
    pub create_revision: i64,
    /// The store lease the key is attached to (0: none), for objects with a TTL.
    pub lease: i64,
}

impl Stored {
    /// Decodes a stored value and stamps its resourceVersion.
    pub fn decode(kv: &etcd_client::KeyValue) -> crate::Result<Self> {
        Self::decode_at(kv, kv.mod_revision())
    }

    /// Decodes a stored value as of `mod_revision` (a deleted key's last value, stamped with the
    /// delete revision).
    pub fn decode_at(kv: &etcd_client::KeyValue, mod_revision: i64) -> crate::Result<Self> {
        let (key, bytes, create_revision, lease) = (kv.key(), kv.value(), kv.create_revision(), kv.lease());
        let key = String::from_utf8_lossy(key).into_owned();
        let mut value: Value = serde_json::from_slice(bytes)
            .map_err(|e| crate::Error::Internal(format!("undecodable object at {key}: {e}")))?;
        if !value.is_object() {
            return Err(crate::Error::Internal(format!("the value at {key} is not a JSON object")));
        }
        set_resource_version(&mut value, mod_revision);
        Ok(Self { key, value, mod_revision, create_revision, lease })
    }
}

/// Sets `metadata.resourceVersion` (creating `metadata` if needed).
pub fn set_resource_version(value: &mut Value, revision: i64) {
    if let Some(obj) = value.as_object_mut() {
        let meta = obj.entry("metadata").or_insert_with(|| Value::Object(Default::default()));
        if let Some(meta) = meta.as_object_mut() {
            meta.insert("resourceVersion".into(), Value::String(revision.to_string()));
        }
    }
}

/// Encodes an object for storage: without its resourceVersion (the store's revision is the
/// only source of truth for it).
pub fn encode(value: &Value) -> Vec<u8> {
    let mut v = value.clone();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

/// Conditions checked against the current object before an update or delete.
#[derive(Debug, Clone, Default)]
pub struct Preconditions {
    /// The object's uid must be this.
    pub uid: Option<String>,
    /// The object's resourceVersion must be this.
    pub resource_version: Option<i64>,
}

impl Preconditions {
    /// `Error::PreconditionFailed` unless `cur` has the required uid and resourceVersion.
    pub fn check(&self, cur: &Stored) -> crate::Result<()> {
        if let Some(uid) = &self.uid {
            let actual = cur.value.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
            if actual != uid {
                return Err(crate::Error::PreconditionFailed(format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
                )));
            }
        }
        if let Some(rv) = self.resource_version {
            if rv != cur.mod_revision {
                return Err(crate::Error::PreconditionFailed(format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    cur.mod_revision
                )));
            }
        }
        Ok(())
    }
}

/// What an update function decided.
#[derive(Debug, Clone)]
pub enum UpdateAction {
    /// Write this object.
    Put(Value),
    /// Delete the object (e.g. its last finalizer was removed).
    Delete,
    /// Nothing to change: answer with the current object, write nothing.
    Unchanged,
}

/// What `guaranteed_update` did.
#[derive(Debug, Clone)]
pub enum UpdateOutcome {
    /// The new object.
    Updated(Stored),
    /// The object was deleted; this is its last state, resourceVersion = the delete revision.
    Deleted(Stored),
    /// Nothing was written; the current object.
    Unchanged(Stored),
}

/// `list` options.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// At most this many matching objects (0 or absent: all).
    pub limit: Option<i64>,
    /// The continue token of the previous page.
    pub continue_token: Option<String>,
    /// Read at this revision instead of the latest (resourceVersionMatch=Exact).
    pub revision: Option<i64>,
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct ListPage {
    /// Matching objects, in key order.
    pub items: Vec<Stored>,
    /// The revision everything was read at: the list's resourceVersion.
    pub revision: i64,
    /// Token for the next page, when more keys remain.
    pub continue_token: Option<String>,
}

/// An object carried by a watch event, shared by every watcher it is delivered to (an event is
/// decoded once and fanned out to many clients), with its JSON encoding made at most once.
#[derive(Debug)]
pub struct WatchObject {
    stored: Stored,
    json: std::sync::OnceLock<bytes::Bytes>,
}

impl WatchObject {
    /// Wraps a stored object for delivery.
    pub fn new(stored: Stored) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self { stored, json: std::sync::OnceLock::new() })
    }

    /// The object's JSON, encoded on first use: a thousand watchers cost one encoding.
    pub fn json(&self) -> &bytes::Bytes {
        self.json.get_or_init(|| bytes::Bytes::from(serde_json::to_vec(&self.stored.value).unwrap_or_default()))
    }
}

impl std::ops::Deref for WatchObject {
    type Target = Stored;
    fn deref(&self) -> &Stored {
        &self.stored
    }
}

/// One change seen by a watch. Cloning is cheap: the objects are shared.
#[derive(Debug, Clone)]
pub enum WatchEvent {
    /// A key was written. `prev` is the previous version (absent when the key was created).
    Put { object: std::sync::Arc<WatchObject>, prev: Option<std::sync::Arc<WatchObject>> },
    /// A key was deleted; `prev` is its last version with resourceVersion = the delete revision.
    Delete { prev: std::sync::Arc<WatchObject> },
    /// Nothing changed under the prefix up to this revision.
    Progress(i64),
}

impl WatchEvent {
    /// The revision of the change (the store revision of a progress notification).
    pub fn revision(&self) -> i64 {
        match self {
            WatchEvent::Put { object, .. } => object.mod_revision,
            WatchEvent::Delete { prev } => prev.mod_revision,
            WatchEvent::Progress(rev) => *rev,
        }
    }

    /// The key changed (none for progress).
    pub fn key(&self) -> Option<&str> {
        match self {
            WatchEvent::Put { object, .. } => Some(&object.key),
            WatchEvent::Delete { prev } => Some(&prev.key),
            WatchEvent::Progress(_) => None,
        }
    }

    /// Whether a watcher on `key_prefix` with `filter` must see this change: the object matches
    /// now or matched before, because an object leaving a selection is DELETED for that watcher
    /// and one entering it is ADDED (Kubernetes' cacheWatcher does the same with the previous
    /// object). Progress is for everyone.
    pub fn wanted_by(&self, key_prefix: &str, filter: Option<&super::WatchFilter>) -> bool {
        let Some(key) = self.key() else { return true };
        if !key.starts_with(key_prefix) {
            return false;
        }
        let Some(filter) = filter else { return true };
        match self {
            WatchEvent::Put { object, prev } => filter(&object.value) || prev.as_ref().is_some_and(|p| filter(&p.value)),
            WatchEvent::Delete { prev } => filter(&prev.value),
            WatchEvent::Progress(_) => true,
        }
    }
}
