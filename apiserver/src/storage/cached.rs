//! `Storage` with the watch cache in front: reads and writes go to the store underneath; every
//! watch of a resource is served by that resource's one `Cacher`, created on its first watch.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;

use super::{
    Cacher, EventStream, Filter, ListOptions, ListPage, Preconditions, Storage, Stored, UpdateFn, UpdateOutcome,
    WatchFilter,
};
use crate::{Error, Result};

/// Sizes of the watch cache.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Changes kept per resource: a watch may resume from this far back (older → 410).
    pub capacity: usize,
    /// Changes buffered per client watch; a client that falls further behind is disconnected.
    pub watcher_buffer: usize,
    /// How often the store reports progress to each cache (what bookmarks carry when idle).
    pub store_progress_every: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self { capacity: 1024, watcher_buffer: 1024, store_progress_every: Duration::from_secs(1) }
    }
}

/// `/registry/pods/ns/` → `/registry/pods/`: one cache per resource, namespaces are filters.
/// Other prefixes are cached as they are.
pub fn resource_prefix(prefix: &str) -> &str {
    const ROOT: &str = "/registry/";
    match prefix.strip_prefix(ROOT).and_then(|rest| rest.find('/')) {
        Some(i) => &prefix[..ROOT.len() + i + 1],
        None => prefix,
    }
}

/// The store with a watch cache per resource.
pub struct CachedStorage {
    store: Arc<dyn Storage>,
    config: CacheConfig,
    cachers: tokio::sync::Mutex<HashMap<String, Arc<Cacher>>>,
}

/// A watch that ends at once with 410, as the store's own watch does for a compacted revision.
fn expired(message: String) -> EventStream {
    Box::pin(futures::stream::once(async move { Err(Error::Expired(message)) }))
}

impl CachedStorage {
    /// Puts a watch cache in front of `store`.
    pub fn new(store: Arc<dyn Storage>, config: CacheConfig) -> Self {
        Self { store, config, cachers: Default::default() }
    }

    /// The cache of `prefix`, if a watch created it (tests and metrics).
    pub async fn cacher(&self, prefix: &str) -> Option<Arc<Cacher>> {
        self.cachers.lock().await.get(resource_prefix(prefix)).cloned()
    }

    /// The cache of `prefix`, created on first use. A new cache starts at the first watcher's
    /// revision when that is in the past, so that watcher is served from the store's history
    /// (a compacted one resets the new cache and the watcher gets 410).
    async fn cacher_for(&self, prefix: &str, after: i64) -> Result<Arc<Cacher>> {
        let mut cachers = self.cachers.lock().await;
        if let Some(c) = cachers.get(prefix) {
            return Ok(c.clone());
        }
        let current = self.store.current_revision().await?;
        let from = if after > 0 { after.min(current) } else { current };
        let cacher = Arc::new(
            Cacher::start(self.store.clone(), prefix, from, self.config.capacity, self.config.store_progress_every).await?,
        );
        cachers.insert(prefix.to_string(), cacher.clone());
        Ok(cacher)
    }

    async fn watch_impl(
        &self,
        prefix: &str,
        after: i64,
        progress_every: Option<Duration>,
        filter: Option<WatchFilter>,
    ) -> Result<EventStream> {
        let cacher = self.cacher_for(resource_prefix(prefix), after).await?;
        let after = if after > 0 { after } else { cacher.progress() };
        if after < cacher.progress() {
            // The window may still hold what the store has compacted; the store decides, so a
            // compacted resourceVersion is 410 exactly as without the cache. One small read at
            // `after + 1` (not past the store's revision: the cache has seen that far).
            let probe = ListOptions { limit: Some(1), revision: Some(after + 1), continue_token: None };
            match self.store.list(cacher.prefix(), probe, &|_| true).await {
                Ok(_) => {}
                Err(Error::Expired(_)) => return Ok(expired(format!("too old resource version: {after}"))),
                Err(e) => return Err(e),
            }
        }
        match cacher.watch(prefix, filter, after, self.config.watcher_buffer, progress_every) {
            Ok(stream) => Ok(stream),
            Err(too_old) => Ok(expired(too_old.to_string())),
        }
    }
}

impl Storage for CachedStorage {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Stored>>> {
        self.store.get(key)
    }

    fn list<'a>(&'a self, prefix: &'a str, opts: ListOptions, filter: Filter<'a>) -> BoxFuture<'a, Result<ListPage>> {
        self.store.list(prefix, opts, filter)
    }

    fn create<'a>(&'a self, key: &'a str, value: Value, ttl: Option<Duration>) -> BoxFuture<'a, Result<Stored>> {
        self.store.create(key, value, ttl)
    }

    fn guaranteed_update<'a>(
        &'a self,
        key: &'a str,
        preconditions: Preconditions,
        update: UpdateFn<'a>,
    ) -> BoxFuture<'a, Result<UpdateOutcome>> {
        self.store.guaranteed_update(key, preconditions, update)
    }

    fn delete<'a>(&'a self, key: &'a str, preconditions: Preconditions) -> BoxFuture<'a, Result<Stored>> {
        self.store.delete(key, preconditions)
    }

    fn watch<'a>(
        &'a self,
        prefix: &'a str,
        after: i64,
        progress_every: Option<Duration>,
        filter: Option<WatchFilter>,
    ) -> BoxFuture<'a, Result<EventStream>> {
        Box::pin(self.watch_impl(prefix, after, progress_every, filter))
    }

    fn current_revision(&self) -> BoxFuture<'_, Result<i64>> {
        self.store.current_revision()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_cache_per_resource() {
        assert_eq!(resource_prefix("/registry/pods/ns/"), "/registry/pods/");
        assert_eq!(resource_prefix("/registry/pods/"), "/registry/pods/");
        assert_eq!(resource_prefix("/registry/namespaces/"), "/registry/namespaces/");
        assert_eq!(resource_prefix("/registry/"), "/registry/");
        assert_eq!(resource_prefix("/other/x/"), "/other/x/");
    }
}
