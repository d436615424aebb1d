//! `Storage` over the etcd v3 API (the embedded ferrokube store or any remote etcd-compatible
//! endpoints): every write is a transaction comparing the key's create or mod revision.

use std::time::{Duration, Instant};

use base64::Engine;
use etcd_client::{Client, Compare, CompareOp, EventType, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions};
use futures::future::BoxFuture;
use futures::StreamExt;
use serde_json::{json, Value};

use super::types::{encode, set_resource_version};
use super::{EventStream, Filter, ListOptions, ListPage, Preconditions, Storage, Stored, UpdateFn, UpdateAction, UpdateOutcome, WatchEvent, WatchFilter, WatchObject};
use crate::{metrics, Error, Result};

/// How many keys one range request reads while filling a filtered page.
const LIST_CHUNK: i64 = 500;

/// Objects created with a TTL within this window share one lease (granted for the TTL plus
/// the window), so a burst of events costs one lease, not one each (kube-apiserver does the same).
const LEASE_REUSE: Duration = Duration::from_secs(60);

/// Storage backed by an etcd v3 client. Cloning the client is cheap (one shared channel).
#[derive(Clone)]
pub struct EtcdStorage {
    client: Client,
    /// The lease being reused: (id, ttl asked for, when granted).
    lease: std::sync::Arc<tokio::sync::Mutex<Option<(i64, Duration, tokio::time::Instant)>>>,
}

/// `[prefix, prefix_end)` covers every key starting with `prefix`.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A continue token: the list's revision and the next key relative to the prefix, as
/// kube-apiserver encodes it (base64 of `{"v":"meta.k8s.io/v1","rv":N,"start":"..."}`).
fn encode_continue(revision: i64, prefix: &str, next_key: &str) -> String {
    let start = next_key.strip_prefix(prefix).unwrap_or(next_key);
    let token = json!({"v": "meta.k8s.io/v1", "rv": revision, "start": start});
    base64::engine::general_purpose::URL_SAFE.encode(token.to_string())
}

fn decode_continue(token: &str, prefix: &str) -> Result<(i64, String)> {
    let bad = || Error::BadRequest(format!("continue key is not valid: {token:?}"));
    let raw = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(token))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v.get("rv").and_then(Value::as_i64).filter(|rv| *rv > 0).ok_or_else(bad)?;
    let start = v.get("start").and_then(Value::as_str).ok_or_else(bad)?;
    // A token may not escape its prefix (e.g. "../secrets/").
    if start.contains("..") || start.starts_with('/') {
        return Err(bad());
    }
    Ok((rv, format!("{prefix}{start}")))
}

impl EtcdStorage {
    /// Connects to etcd v3 endpoints (`http://127.0.0.1:2379`, ...).
    pub async fn connect(endpoints: &[String]) -> Result<Self> {
        let opts = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(10))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        let client = Client::connect(endpoints, Some(opts)).await?;
        Ok(Self::from_client(client))
    }

    /// Wraps an existing client.
    pub fn from_client(client: Client) -> Self {
        Self { client, lease: Default::default() }
    }

    /// A lease that outlives `ttl` by at most `LEASE_REUSE`.
    async fn lease_for(&self, ttl: Duration) -> Result<i64> {
        let mut cur = self.lease.lock().await;
        if let Some((id, t, granted)) = *cur {
            if t == ttl && granted.elapsed() < LEASE_REUSE {
                return Ok(id);
            }
        }
        let secs = (ttl + LEASE_REUSE).as_secs() as i64;
        let id = self.client.clone().lease_grant(secs, None).await?.id();
        *cur = Some((id, ttl, tokio::time::Instant::now()));
        Ok(id)
    }

    async fn read(&self, key: &str) -> Result<Option<Stored>> {
        let t = Instant::now();
        let resp = self.client.clone().get(key, None).await;
        metrics::global().observe_store("get", t.elapsed());
        let resp = resp?;
        match resp.kvs().first() {
            Some(kv) => Ok(Some(Stored::decode(kv)?)),
            None => Ok(None),
        }
    }

    async fn update_loop(&self, key: &str, pre: &Preconditions, update: UpdateFn<'_>) -> Result<UpdateOutcome> {
        let mut current = self.read(key).await?;
        loop {
            let cur = current.take().ok_or_else(|| Error::KeyNotFound(key.to_string()))?;
            pre.check(&cur)?;
            let cas = Compare::mod_revision(key, CompareOp::Equal, cur.mod_revision);
            // The failure branch re-reads the key, so a lost race costs no extra round trip.
            let (op, action) = match update(&cur)? {
                UpdateAction::Unchanged => return Ok(UpdateOutcome::Unchanged(cur)),
                // A key with a TTL keeps its lease across updates.
                UpdateAction::Put(v) => {
                    let opts = (cur.lease != 0).then(|| PutOptions::new().with_lease(cur.lease));
                    (TxnOp::put(key, encode(&v), opts), UpdateAction::Put(v))
                }
                UpdateAction::Delete => (TxnOp::delete(key, None), UpdateAction::Delete),
            };
            let txn = Txn::new().when([cas]).and_then([op]).or_else([TxnOp::get(key, None)]);
            let t = Instant::now();
            let resp = self.client.clone().txn(txn).await;
            metrics::global().observe_store("update", t.elapsed());
            let resp = resp?;
            let revision = resp.header().map(|h| h.revision()).unwrap_or_default();
            if resp.succeeded() {
                return Ok(match action {
                    UpdateAction::Put(mut v) => {
                        set_resource_version(&mut v, revision);
                        UpdateOutcome::Updated(Stored {
                            key: key.to_string(),
                            value: v,
                            mod_revision: revision,
                            create_revision: cur.create_revision,
                            lease: cur.lease,
                        })
                    }
                    _ => {
                        let mut last = cur;
                        set_resource_version(&mut last.value, revision);
                        last.mod_revision = revision;
                        UpdateOutcome::Deleted(last)
                    }
                });
            }
            for r in resp.op_responses() {
                if let TxnOpResponse::Get(g) = r {
                    if let Some(kv) = g.kvs().first() {
                        current = Some(Stored::decode(kv)?);
                    }
                }
            }
        }
    }

    async fn list_impl(&self, prefix: &str, opts: ListOptions, filter: Filter<'_>) -> Result<ListPage> {
        let (mut revision, mut start) = match &opts.continue_token {
            Some(token) => {
                let (rv, start) = decode_continue(token, prefix)?;
                (rv, start.into_bytes())
            }
            None => (opts.revision.unwrap_or(0), prefix.as_bytes().to_vec()),
        };
        let limit = opts.limit.filter(|l| *l > 0);
        let end = prefix_end(prefix);
        let mut items = Vec::new();
        let mut client = self.client.clone();
        loop {
            let want = match limit {
                Some(l) => (l - items.len() as i64).max(1).max(LIST_CHUNK.min(l * 2)),
                None => LIST_CHUNK,
            };
            let mut ro = GetOptions::new().with_range(end.clone()).with_limit(want);
            if revision > 0 {
                ro = ro.with_revision(revision);
            }
            let t = Instant::now();
            let resp = client.get(start.clone(), Some(ro)).await;
            metrics::global().observe_store("list", t.elapsed());
            let resp = resp.map_err(|e| match Error::from(e) {
                Error::Expired(_) if opts.continue_token.is_some() => Error::Expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start \
                     a new list without the continue parameter."
                        .into(),
                ),
                other => other,
            })?;
            if revision == 0 {
                revision = resp.header().map(|h| h.revision()).unwrap_or_default();
            }
            let kvs = resp.kvs();
            for (i, kv) in kvs.iter().enumerate() {
                let stored = Stored::decode(kv)?;
                if !filter(&stored.value) {
                    continue;
                }
                items.push(stored);
                if limit == Some(items.len() as i64) {
                    let more = i + 1 < kvs.len() || resp.more();
                    let continue_token = more.then(|| {
                        let mut next = kv.key().to_vec();
                        next.push(0);
                        encode_continue(revision, prefix, &String::from_utf8_lossy(&next))
                    });
                    return Ok(ListPage { items, revision, continue_token });
                }
            }
            match (resp.more(), kvs.last()) {
                (true, Some(last)) => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => return Ok(ListPage { items, revision, continue_token: None }),
            }
        }
    }

    async fn watch_impl(
        &self,
        prefix: &str,
        after: i64,
        progress_every: Option<Duration>,
        filter: Option<WatchFilter>,
    ) -> Result<EventStream> {
        let opts = WatchOptions::new().with_prefix().with_start_revision(after + 1).with_prev_key();
        let (mut sender, mut responses) = self.client.clone().watch(prefix, Some(opts)).await?.split();
        let prefix = prefix.to_string();
        let stream = async_stream::stream! {
            let period = progress_every.unwrap_or(Duration::from_secs(3600));
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            loop {
                let resp = tokio::select! {
                    r = responses.message() => r,
                    _ = ticker.tick(), if progress_every.is_some() => {
                        if let Err(e) = sender.request_progress().await {
                            yield Err(Error::from(e));
                            break;
                        }
                        continue;
                    }
                };
                let resp = match resp {
                    Ok(Some(r)) => r,
                    Ok(None) => { yield Err(Error::Unavailable("the store closed the watch".into())); break; }
                    Err(e) => { yield Err(Error::from(e)); break; }
                };
                if resp.canceled() {
                    if resp.compact_revision() > 0 {
                        yield Err(Error::Expired(format!("too old resource version: {after} ({})", resp.compact_revision())));
                    } else {
                        yield Err(Error::Unavailable(format!("the store cancelled the watch: {}", resp.cancel_reason())));
                    }
                    break;
                }
                if resp.created() && resp.events().is_empty() {
                    continue;
                }
                if resp.events().is_empty() {
                    let rev = resp.header().map(|h| h.revision()).unwrap_or_default();
                    yield Ok(WatchEvent::Progress(rev));
                    continue;
                }
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    let decoded = match ev.event_type() {
                        EventType::Put => {
                            let object = Stored::decode(kv);
                            let prev = match ev.prev_kv() {
                                Some(p) if kv.create_revision() != kv.mod_revision() => {
                                    Stored::decode(p).map(Some)
                                }
                                _ => Ok(None),
                            };
                            object.and_then(|object| {
                                prev.map(|prev| WatchEvent::Put { object: WatchObject::new(object), prev: prev.map(WatchObject::new) })
                            })
                        }
                        EventType::Delete => match ev.prev_kv() {
                            Some(p) => Stored::decode_at(p, kv.mod_revision())
                                .map(|prev| WatchEvent::Delete { prev: WatchObject::new(prev) }),
                            None => Err(Error::Internal(format!(
                                "delete event without its previous value at revision {}", kv.mod_revision()
                            ))),
                        },
                    };
                    let failed = decoded.is_err();
                    if let Ok(ev) = &decoded {
                        if !ev.wanted_by(prefix.as_str(), filter.as_ref()) {
                            continue;
                        }
                    }
                    yield decoded;
                    if failed {
                        break;
                    }
                }
            }
        };
        Ok(stream.boxed())
    }
}

impl Storage for EtcdStorage {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Stored>>> {
        Box::pin(self.read(key))
    }

    fn list<'a>(&'a self, prefix: &'a str, opts: ListOptions, filter: Filter<'a>) -> BoxFuture<'a, Result<ListPage>> {
        Box::pin(self.list_impl(prefix, opts, filter))
    }

    fn create<'a>(&'a self, key: &'a str, value: Value, ttl: Option<Duration>) -> BoxFuture<'a, Result<Stored>> {
        Box::pin(async move {
            let lease = match ttl {
                Some(ttl) => self.lease_for(ttl).await?,
                None => 0,
            };
            let opts = (lease != 0).then(|| PutOptions::new().with_lease(lease));
            let txn = Txn::new()
                .when([Compare::create_revision(key, CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key, encode(&value), opts)]);
            let t = Instant::now();
            let resp = self.client.clone().txn(txn).await;
            metrics::global().observe_store("create", t.elapsed());
            let resp = resp?;
            if !resp.succeeded() {
                return Err(Error::KeyExists(key.to_string()));
            }
            let revision = resp.header().map(|h| h.revision()).unwrap_or_default();
            let mut value = value;
            set_resource_version(&mut value, revision);
            Ok(Stored { key: key.to_string(), value, mod_revision: revision, create_revision: revision, lease })
        })
    }

    fn guaranteed_update<'a>(
        &'a self,
        key: &'a str,
        preconditions: Preconditions,
        update: UpdateFn<'a>,
    ) -> BoxFuture<'a, Result<UpdateOutcome>> {
        Box::pin(async move { self.update_loop(key, &preconditions, update).await })
    }

    fn delete<'a>(&'a self, key: &'a str, preconditions: Preconditions) -> BoxFuture<'a, Result<Stored>> {
        Box::pin(async move {
            match self.update_loop(key, &preconditions, &|_| Ok(UpdateAction::Delete)).await? {
                UpdateOutcome::Deleted(s) | UpdateOutcome::Updated(s) | UpdateOutcome::Unchanged(s) => Ok(s),
            }
        })
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
        Box::pin(async move {
            let resp = self.client.clone().get("/registry/", Some(GetOptions::new().with_count_only())).await?;
            Ok(resp.header().map(|h| h.revision()).unwrap_or_default())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_stay_inside_their_prefix() {
        let t = encode_continue(42, "/registry/pods/", "/registry/pods/ns/b\0");
        assert_eq!(decode_continue(&t, "/registry/pods/").unwrap(), (42, "/registry/pods/ns/b\0".to_string()));
        let evil = base64::engine::general_purpose::URL_SAFE.encode(r#"{"rv":1,"start":"../secrets/"}"#);
        assert!(matches!(decode_continue(&evil, "/registry/pods/"), Err(Error::BadRequest(_))));
        assert!(matches!(decode_continue("%%%", "/registry/pods/"), Err(Error::BadRequest(_))));
        assert_eq!(prefix_end("/registry/pods/"), b"/registry/pods0".to_vec());
    }
}
