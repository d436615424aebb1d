//! The storage interface the registry is written against: `EtcdStorage` over the etcd v3 API,
//! and `CachedStorage` in front of it, which serves every watch of a resource from one store
//! watch (the watch cache). `layered` is the one place the stack is chosen. Objects are JSON
//! values; `resourceVersion` is never stored inside them: it is the key's mod revision, filled
//! in on every read (as kube-apiserver's etcd3 storage does).

mod cache_watcher;
mod cached;
mod cacher;
mod etcd;
mod types;
mod watch_cache;

pub use cache_watcher::{Delivery, Watchers};
pub use cached::{CacheConfig, CachedStorage};
pub use cacher::Cacher;
pub use etcd::EtcdStorage;
pub use types::{
    set_resource_version, ListOptions, ListPage, Preconditions, Stored, UpdateAction, UpdateOutcome, WatchEvent, WatchObject,
};
pub use watch_cache::{TooOld, WatchCache};

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde_json::Value;

use crate::Result;

/// A predicate on stored objects (label and field selectors), evaluated inside `list` so that
/// `limit` counts matching objects only.
pub type Filter<'a> = &'a (dyn Fn(&Value) -> bool + Send + Sync);

/// A per-watcher predicate on objects (label and field selectors), shared with the fan-out.
pub type WatchFilter = Arc<dyn Fn(&Value) -> bool + Send + Sync>;

/// The storage the apiserver runs on: the watch cache in front of the store.
pub fn layered(store: EtcdStorage) -> Arc<dyn Storage> {
    Arc::new(CachedStorage::new(Arc::new(store), CacheConfig::default()))
}

/// The function `guaranteed_update` retries: given the current object, decide what to write.
/// It may run several times (once per lost compare-and-swap), so it must not have side effects.
pub type UpdateFn<'a> = &'a (dyn Fn(&Stored) -> Result<UpdateAction> + Send + Sync);

/// A stream of watch events; it ends on error (`Error::Expired` for a compacted revision).
pub type EventStream = BoxStream<'static, Result<WatchEvent>>;

/// Object storage with optimistic concurrency on mod revisions.
pub trait Storage: Send + Sync + 'static {
    /// The object at `key`, at the latest revision.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Stored>>>;

    /// Objects under `prefix` matching `filter`, all read at one revision (the first page's, or
    /// the one carried by the continue token). `Error::Expired` if that revision is compacted.
    fn list<'a>(&'a self, prefix: &'a str, opts: ListOptions, filter: Filter<'a>) -> BoxFuture<'a, Result<ListPage>>;

    /// Writes `value` at `key` if the key does not exist (`Error::KeyExists` otherwise). With a
    /// `ttl`, the store deletes the object about that long after (updates keep the deadline).
    fn create<'a>(&'a self, key: &'a str, value: Value, ttl: Option<std::time::Duration>) -> BoxFuture<'a, Result<Stored>>;

    /// Reads the object, checks `preconditions`, calls `update` and writes its answer with a
    /// compare-and-swap on the mod revision it read; on a lost race, reads again and retries.
    fn guaranteed_update<'a>(
        &'a self,
        key: &'a str,
        preconditions: Preconditions,
        update: UpdateFn<'a>,
    ) -> BoxFuture<'a, Result<UpdateOutcome>>;

    /// Deletes the object if `preconditions` hold (`Error::KeyNotFound` if it is absent).
    fn delete<'a>(&'a self, key: &'a str, preconditions: Preconditions) -> BoxFuture<'a, Result<Stored>>;

    /// Changes under `prefix` after revision `after` (exclusive), in revision order. With
    /// `progress_every`, a `Progress` event carries the store revision that often when idle,
    /// which is what bookmarks are made of. With `filter`, only changes whose object matches
    /// now or matched before (`WatchEvent::wanted_by`) are delivered.
    fn watch<'a>(
        &'a self,
        prefix: &'a str,
        after: i64,
        progress_every: Option<std::time::Duration>,
        filter: Option<WatchFilter>,
    ) -> BoxFuture<'a, Result<EventStream>>;

    /// The store's current revision.
    fn current_revision(&self) -> BoxFuture<'_, Result<i64>>;
}
