//! The etcd `Watch` service: one bidirectional stream carrying many watches.
//!
//! Each watch is either *synced* (it has seen everything up to the store's revision and takes
//! new events from the live broadcast) or *catching up* (it reads history from the MVCC store,
//! a bounded window at a time, until it reaches the current revision). A watch that falls behind
//! the broadcast buffer, or a client that reads slowly, simply becomes a catching-up watch again:
//! memory stays bounded and no event is skipped or repeated.
//!
//! Worked example: the store is at revision 10 and a client creates a watch from revision 4.
//! `next_rev` = 4, catching up: it reads events 4..=10 from history and sends them, then
//! `next_rev` = 11 and it is synced. A live batch at revision 9 still sitting in the broadcast
//! queue is skipped (9 < 11); the batch at revision 11 is sent.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::node::StoreNode;
use crate::pb::etcdserverpb::watch_create_request::FilterType;
use crate::pb::etcdserverpb::watch_request::RequestUnion;
use crate::pb::etcdserverpb::watch_server::Watch;
use crate::pb::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use crate::pb::mvccpb::event::EventType;
use crate::pb::mvccpb::Event;
use crate::raft::AppliedEvents;
use crate::Error;

/// Revisions read from history per catch-up step, so one slow watch cannot hog the stream.
const CATCH_UP_WINDOW: i64 = 1000;
/// Responses buffered per stream before the stream task waits for the client.
const SEND_BUFFER: usize = 128;

/// Serves `etcdserverpb.Watch`.
#[derive(Debug, Clone)]
pub struct WatchService {
    node: Arc<StoreNode>,
}

impl WatchService {
    /// A watch service on `node`.
    pub fn new(node: Arc<StoreNode>) -> Self {
        Self { node }
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = WatchStream;

    async fn watch(&self, request: Request<Streaming<WatchRequest>>) -> Result<Response<WatchStream>, Status> {
        let incoming = request.into_inner();
        let (tx, rx) = mpsc::channel(SEND_BUFFER);
        // Subscribe before anything reads the current revision, so no live event can fall
        // between a watch's starting point and its first broadcast batch.
        let live = self.node.state().subscribe();
        let session = Session { node: self.node.clone(), watches: BTreeMap::new(), next_id: 0, tx };
        tokio::spawn(session.run(incoming, live));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// One client watch.
#[derive(Debug)]
struct Watcher {
    key: Vec<u8>,
    range_end: Vec<u8>,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
    progress_notify: bool,
    /// The first revision this watch has not yet delivered.
    next_rev: i64,
    /// True while `next_rev` is past the store's revision, so live batches are in order for it.
    synced: bool,
}

impl Watcher {
    fn matches(&self, key: &[u8]) -> bool {
        if self.range_end.is_empty() {
            return key == self.key.as_slice();
        }
        // range_end "\0" means every key >= key.
        key >= self.key.as_slice() && (self.range_end == [0] || key < self.range_end.as_slice())
    }

    fn select(&self, events: &[Event]) -> Vec<Event> {
        events
            .iter()
            .filter(|e| {
                let put = e.r#type == EventType::Put as i32;
                !(put && self.no_put || !put && self.no_delete)
                    && e.kv.as_ref().is_some_and(|kv| self.matches(&kv.key))
            })
            .map(|e| {
                let mut e = e.clone();
                if !self.prev_kv {
                    e.prev_kv = None;
                }
                e
            })
            .collect()
    }
}

struct Session {
    node: Arc<StoreNode>,
    watches: BTreeMap<i64, Watcher>,
    next_id: i64,
    tx: mpsc::Sender<Result<WatchResponse, Status>>,
}

/// The client went away; the session ends.
struct Closed;

impl Session {
    async fn run(mut self, mut incoming: Streaming<WatchRequest>, mut live: broadcast::Receiver<Arc<AppliedEvents>>) {
        let interval = self.node.config().progress_notify_interval;
        let mut progress = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        let mut catch_up = tokio::time::interval(Duration::from_millis(50));
        loop {
            let step = tokio::select! {
                msg = incoming.next() => match msg {
                    Some(Ok(req)) => self.on_request(req).await,
                    // Client closed its side or the transport failed: nothing left to serve.
                    Some(Err(_)) | None => Err(Closed),
                },
                batch = live.recv() => match batch.as_deref() {
                    Ok(AppliedEvents::Write { revision, events }) => self.on_live(*revision, events).await,
                    // Missed batches, or a snapshot that replaced the state without events: the
                    // history has what the live feed lacks, so every watch reads it.
                    Ok(AppliedEvents::Replaced) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        self.watches.values_mut().for_each(|w| w.synced = false);
                        Ok(())
                    }
                    Err(broadcast::error::RecvError::Closed) => Err(Closed),
                },
                _ = catch_up.tick(), if self.watches.values().any(|w| !w.synced) => self.catch_up().await,
                _ = progress.tick() => self.notify_progress().await,
                _ = self.node.stopped() => Err(Closed),
            };
            if step.is_err() {
                return;
            }
        }
    }

    async fn send(&self, resp: WatchResponse) -> Result<(), Closed> {
        self.tx.send(Ok(resp)).await.map_err(|_| Closed)
    }

    fn response(&self, watch_id: i64) -> WatchResponse {
        let rev = self.node.mvcc().current_revision();
        WatchResponse { header: Some(self.node.header(rev)), watch_id, ..Default::default() }
    }

    async fn on_request(&mut self, req: WatchRequest) -> Result<(), Closed> {
        match req.request_union {
            Some(RequestUnion::CreateRequest(c)) => self.create(c).await,
            Some(RequestUnion::CancelRequest(c)) => {
                if self.watches.remove(&c.watch_id).is_some() {
                    self.send(WatchResponse { canceled: true, ..self.response(c.watch_id) }).await?;
                }
                Ok(())
            }
            Some(RequestUnion::ProgressRequest(_)) => {
                // Only truthful when every watch has delivered everything up to the revision in
                // the header; otherwise stay silent, as etcd does.
                if self.watches.values().all(|w| w.synced) {
                    let mut r = self.response(-1);
                    if let Some(delivered) = self.watches.values().map(|w| w.next_rev - 1).min() {
                        r.header.as_mut().expect("header set").revision = delivered;
                    }
                    self.send(r).await?;
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    async fn create(&mut self, c: WatchCreateRequest) -> Result<(), Closed> {
        let id = if c.watch_id > 0 {
            if self.watches.contains_key(&c.watch_id) {
                let mut r = self.response(c.watch_id);
                r.created = true;
                r.canceled = true;
                r.cancel_reason = "etcdserver: duplicate watch ID".into();
                return self.send(r).await;
            }
            c.watch_id
        } else {
            while self.watches.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            self.next_id
        };
        self.next_id = self.next_id.max(id + 1);
        if !c.range_end.is_empty() && c.range_end != [0] && c.range_end <= c.key {
            let mut r = self.response(id);
            r.created = true;
            r.canceled = true;
            r.cancel_reason = "mvcc: watcher range is empty".into();
            return self.send(r).await;
        }
        let current = self.node.mvcc().current_revision();
        let start = if c.start_revision <= 0 { current + 1 } else { c.start_revision };
        let w = Watcher {
            key: c.key,
            range_end: c.range_end,
            no_put: c.filters.contains(&(FilterType::Noput as i32)),
            no_delete: c.filters.contains(&(FilterType::Nodelete as i32)),
            prev_kv: c.prev_kv,
            progress_notify: c.progress_notify,
            next_rev: start,
            synced: start > current,
        };
        let mut created = self.response(id);
        created.created = true;
        created.header.as_mut().expect("header set").revision = current;
        self.watches.insert(id, w);
        self.send(created).await?;
        if self.watches.get(&id).is_some_and(|w| !w.synced) {
            self.catch_up_one(id).await?;
        }
        Ok(())
    }

    async fn on_live(&mut self, revision: i64, events: &[Event]) -> Result<(), Closed> {
        let mut out = Vec::new();
        for (id, w) in self.watches.iter_mut().filter(|(_, w)| w.synced) {
            if revision < w.next_rev {
                continue; // already delivered from history
            }
            if revision > w.next_rev {
                // A gap can only mean a missed batch; history has it.
                w.synced = false;
                continue;
            }
            w.next_rev = revision + 1;
            let events = w.select(events);
            if !events.is_empty() {
                out.push((*id, events));
            }
        }
        for (id, events) in out {
            let mut r = self.response(id);
            r.header.as_mut().expect("header set").revision = revision;
            r.events = events;
            self.send(r).await?;
        }
        Ok(())
    }

    async fn catch_up(&mut self) -> Result<(), Closed> {
        let ids: Vec<i64> = self.watches.iter().filter(|(_, w)| !w.synced).map(|(id, _)| *id).collect();
        for id in ids {
            self.catch_up_one(id).await?;
        }
        Ok(())
    }

    /// Sends one window of history to watch `id`; marks it synced once it reaches the present.
    async fn catch_up_one(&mut self, id: i64) -> Result<(), Closed> {
        let mvcc = self.node.mvcc();
        let Some(w) = self.watches.get(&id) else { return Ok(()) };
        let current = mvcc.current_revision();
        let until = current.min(w.next_rev + CATCH_UP_WINDOW - 1);
        let events = if w.next_rev <= until { mvcc.events(w.next_rev, until, usize::MAX, w.prev_kv) } else { Ok(vec![]) };
        let events = match events {
            Ok(events) => events,
            Err(Error::Compacted { compact_revision }) => {
                self.watches.remove(&id);
                let mut r = self.response(id);
                r.canceled = true;
                r.compact_revision = compact_revision;
                r.cancel_reason = Error::Compacted { compact_revision }.to_string();
                return self.send(r).await;
            }
            Err(e) => {
                tracing::error!(watch = id, error = %e, "reading watch history failed");
                self.watches.remove(&id);
                let mut r = self.response(id);
                r.canceled = true;
                r.cancel_reason = e.to_string();
                return self.send(r).await;
            }
        };
        let selected = w.select(&events);
        let w = self.watches.get_mut(&id).expect("present above");
        w.next_rev = until + 1;
        w.synced = until == current;
        // One response per revision keeps etcd's "all events of a response share a header"
        // reading simple for clients that resume from the last revision they saw.
        let mut by_rev: BTreeMap<i64, Vec<Event>> = BTreeMap::new();
        for e in selected {
            let rev = e.kv.as_ref().map(|kv| kv.mod_revision).unwrap_or_default();
            by_rev.entry(rev).or_default().push(e);
        }
        for (rev, events) in by_rev {
            let mut r = self.response(id);
            r.header.as_mut().expect("header set").revision = rev;
            r.events = events;
            self.send(r).await?;
        }
        Ok(())
    }

    async fn notify_progress(&mut self) -> Result<(), Closed> {
        let due: Vec<(i64, i64)> = self
            .watches
            .iter()
            .filter(|(_, w)| w.synced && w.progress_notify)
            .map(|(id, w)| (*id, w.next_rev - 1))
            .collect();
        for (id, delivered) in due {
            // The header promises every later event is above it: only what was delivered counts.
            let mut r = self.response(id);
            r.header.as_mut().expect("header set").revision = delivered;
            self.send(r).await?;
        }
        Ok(())
    }
}
