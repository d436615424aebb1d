//! The replicated state machine: decodes each committed entry (a batch of requests) and lets
//! [`Mvcc`] apply each request, with the apply progress recorded in that request's engine write
//! batch. A crash therefore never applies a request twice or skips one: on restart, openraft
//! re-applies the entries after the last complete one, and a partly applied entry resumes after
//! its last written request (see [`Progress`]).

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::{Arc, Mutex, RwLock};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageIOError};
use prost::Message;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, oneshot};

use super::{decode, encode, Entry, LeaderLog, LogId, Member, NodeId, StorageError, StoredMembership, TypeConfig};
use crate::engine::{Durability, Engine, WriteBatch};
use crate::keys::{self, Cf};
use crate::mvcc::{ApplyResponse, Mvcc};
use crate::pb::mvccpb::Event;
use crate::pb::storepb::InternalBatch;
use crate::{Error, Result};

/// What applying one entry produced, as returned to the proposer by `Raft::client_write`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CommandResponse {
    /// Per request of the entry's batch, in order: its outcome and the store revision after it.
    /// Only ever read on the member that applied the entry (proposals are answered by the
    /// leader that applied them), so it is not serialized; empty for blank and membership
    /// entries.
    #[serde(skip)]
    pub results: Vec<(Result<ApplyResponse>, i64)>,
}

/// How far application has got, stored with every applied request so that a crash in the
/// middle of a multi-request entry resumes exactly after the last request it wrote.
///
/// Worked example: entry 7 carries requests [a, b, c]. Applying `a` writes progress
/// `{applied: 6, partial: (7, 1)}` in a's own batch, `b` writes `(7, 2)`, and `c` writes
/// `{applied: 7, partial: None}`. A crash after b's batch leaves `(7, 2)`: openraft re-applies
/// entry 7 (applied is still 6), and only `c` runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Progress {
    /// The last entry applied completely.
    applied: Option<LogId>,
    /// An entry applied in part: its id and how many of its requests are done.
    partial: Option<(LogId, u32)>,
}

/// What the state machine tells watchers, in apply order.
#[derive(Debug)]
pub enum AppliedEvents {
    /// The events of one applied write, in order, with `prev_kv` filled.
    Write {
        /// The revision they were written at.
        revision: i64,
        /// The events.
        events: Vec<Event>,
    },
    /// The whole state was replaced by an installed snapshot: revisions it covers produced no
    /// events here, so every watch must catch up from history.
    Replaced,
}

/// How many applied writes a watcher may fall behind before it must catch up from history.
const EVENT_BUFFER: usize = 4096;

/// The outcome of one write: its response and the revision after it.
pub type WriteOutcome = Result<(ApplyResponse, i64)>;

/// Writes this member forwarded to the leader, waiting for their outcome. Every member computes
/// the same outcome when it applies an entry, so a forwarded write is answered by this member's
/// own apply of it, found by its request id; the leader sends back only failures to propose.
#[derive(Debug, Default)]
pub struct ForwardedWrites {
    waiting: Mutex<HashMap<u64, Waiting>>,
}

#[derive(Debug)]
struct Waiting {
    /// The stream to the leader it went out on (see [`ForwardedWrites::fail_link`]).
    link: u64,
    reply: oneshot::Sender<WriteOutcome>,
}

impl ForwardedWrites {
    /// Registers request `id`, about to be sent on stream `link`.
    pub fn register(&self, id: u64, link: u64) -> oneshot::Receiver<WriteOutcome> {
        let (reply, outcome) = oneshot::channel();
        self.waiting.lock().expect("forwarded writes lock poisoned").insert(id, Waiting { link, reply });
        outcome
    }

    /// Answers request `id` if this member is waiting for it (a no-op otherwise).
    pub fn resolve(&self, id: u64, outcome: impl FnOnce() -> WriteOutcome) {
        let waiting = self.waiting.lock().expect("forwarded writes lock poisoned").remove(&id);
        if let Some(w) = waiting {
            // The caller may have timed out and gone: nothing to tell it then.
            let _ = w.reply.send(outcome());
        }
    }

    /// Stops waiting for request `id` (its caller gave up).
    pub fn forget(&self, id: u64) {
        self.waiting.lock().expect("forwarded writes lock poisoned").remove(&id);
    }

    /// Answers every write sent on stream `link` (or on any stream, with `None`) with `error`:
    /// the stream broke, so whether they were proposed is unknown.
    pub fn fail_link(&self, link: Option<u64>, error: &Error) {
        let failed: Vec<Waiting> = {
            let mut waiting = self.waiting.lock().expect("forwarded writes lock poisoned");
            let ids: Vec<u64> =
                waiting.iter().filter(|(_, w)| link.is_none_or(|l| w.link == l)).map(|(id, _)| *id).collect();
            ids.iter().filter_map(|id| waiting.remove(id)).collect()
        };
        for w in failed {
            let _ = w.reply.send(Err(error.clone()));
        }
    }

    fn is_empty(&self) -> bool {
        self.waiting.lock().expect("forwarded writes lock poisoned").is_empty()
    }
}

/// The read side of the state machine, shared with the servers.
pub struct StateMachineHandle<E: Engine> {
    mvcc: RwLock<Arc<Mvcc<E>>>,
    applied: Mutex<(Progress, StoredMembership)>,
    events: broadcast::Sender<Arc<AppliedEvents>>,
    forwarded: Arc<ForwardedWrites>,
}

impl<E: Engine> std::fmt::Debug for StateMachineHandle<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachineHandle").field("applied", &self.applied).finish()
    }
}

impl<E: Engine> StateMachineHandle<E> {
    /// The current MVCC store (replaced wholesale when a snapshot is installed).
    pub fn mvcc(&self) -> Arc<Mvcc<E>> {
        self.mvcc.read().expect("mvcc lock poisoned").clone()
    }

    /// Subscribes to events of writes applied from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<AppliedEvents>> {
        self.events.subscribe()
    }

    /// The last applied log id.
    pub fn last_applied(&self) -> Option<LogId> {
        self.applied.lock().expect("applied lock poisoned").0.applied
    }

    /// The last applied membership.
    pub fn membership(&self) -> StoredMembership {
        self.applied.lock().expect("applied lock poisoned").1.clone()
    }

    /// Writes this member forwarded and waits to apply.
    pub fn forwarded(&self) -> &Arc<ForwardedWrites> {
        &self.forwarded
    }
}

/// The openraft state machine over an [`Engine`].
pub struct StateMachine<E: Engine> {
    engine: Arc<E>,
    handle: Arc<StateMachineHandle<E>>,
    /// Entries the leader wrote are applied only once they are on its disk (see `durability`).
    leader_log: Option<Arc<LeaderLog>>,
}

fn sm_err(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::write_state_machine(openraft::AnyError::error(e)).into()
}

fn read_meta<E: Engine + ?Sized, T: serde::de::DeserializeOwned>(engine: &E, key: &[u8]) -> Result<Option<T>> {
    engine.get(Cf::Meta, key)?.map(|b| decode(&b)).transpose()
}

fn read_progress<E: Engine + ?Sized>(engine: &E) -> Result<Progress> {
    Ok(engine.get(Cf::Meta, keys::META_LAST_APPLIED)?.map(|b| decode(&b)).transpose()?.unwrap_or_default())
}

impl<E: Engine> StateMachine<E> {
    /// Opens the state machine stored in `engine`.
    pub fn open(engine: Arc<E>) -> Result<Self> {
        let mvcc = Arc::new(Mvcc::open(engine.clone())?);
        let progress = read_progress(&*engine)?;
        let membership: StoredMembership = read_meta(&*engine, keys::META_MEMBERSHIP)?.unwrap_or_default();
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let handle =
            Arc::new(StateMachineHandle {
                mvcc: RwLock::new(mvcc),
                applied: Mutex::new((progress, membership)),
                events,
                forwarded: Arc::default(),
            });
        Ok(Self { engine, handle, leader_log: None })
    }

    /// Applies the leader's own entries only once `leader_log` has them on disk.
    pub fn with_leader_log(mut self, leader_log: Arc<LeaderLog>) -> Self {
        self.leader_log = Some(leader_log);
        self
    }

    /// The shared read side.
    pub fn handle(&self) -> Arc<StateMachineHandle<E>> {
        self.handle.clone()
    }

    fn apply_one(&mut self, entry: Entry) -> Result<CommandResponse> {
        let done = Progress { applied: Some(entry.log_id), partial: None };
        let mut batch = WriteBatch::default();
        let response = match entry.payload {
            EntryPayload::Blank => {
                batch.put(Cf::Meta, keys::META_LAST_APPLIED, encode(&done));
                self.engine.write(batch, Durability::Unlogged)?;
                CommandResponse::default()
            }
            EntryPayload::Membership(m) => {
                let stored = StoredMembership::new(Some(entry.log_id), m);
                batch.put(Cf::Meta, keys::META_LAST_APPLIED, encode(&done));
                batch.put(Cf::Meta, keys::META_MEMBERSHIP, encode(&stored));
                self.engine.write(batch, Durability::Unlogged)?;
                self.handle.applied.lock().expect("applied lock poisoned").1 = stored;
                CommandResponse::default()
            }
            EntryPayload::Normal(cmd) => self.apply_batch(entry.log_id, &cmd.0)?,
        };
        self.handle.applied.lock().expect("applied lock poisoned").0 = done;
        Ok(response)
    }

    /// Applies an entry's requests one by one, each in its own engine batch that also records
    /// the [`Progress`] reached, skipping requests a crash interrupted after writing.
    fn apply_batch(&mut self, log_id: LogId, bytes: &[u8]) -> Result<CommandResponse> {
        let mvcc = self.handle.mvcc();
        let requests = match InternalBatch::decode(bytes) {
            Ok(b) => b.requests,
            Err(e) => {
                // A proposer bug, not a storage fault: the entry is consumed and nothing applied.
                tracing::error!(index = log_id.index, error = %e, "undecodable raft entry skipped");
                let mut batch = WriteBatch::default();
                batch.put(Cf::Meta, keys::META_LAST_APPLIED, encode(&Progress { applied: Some(log_id), partial: None }));
                self.engine.write(batch, Durability::Unlogged)?;
                return Ok(CommandResponse::default());
            }
        };
        let before = self.handle.applied.lock().expect("applied lock poisoned").0;
        let already = match before.partial {
            Some((id, n)) if id == log_id => n as usize,
            _ => 0,
        };
        let mut results = Vec::with_capacity(requests.len());
        for _ in 0..already.min(requests.len()) {
            // Applied before a crash; nobody is waiting for these answers any more.
            results.push((Err(Error::LeaderChanged), mvcc.current_revision()));
        }
        let total = requests.len();
        if total == 0 {
            let mut batch = WriteBatch::default();
            batch.put(Cf::Meta, keys::META_LAST_APPLIED, encode(&Progress { applied: Some(log_id), partial: None }));
            self.engine.write(batch, Durability::Unlogged)?;
        }
        for (i, req) in requests.iter().enumerate().skip(already) {
            let progress = if i + 1 == total {
                Progress { applied: Some(log_id), partial: None }
            } else {
                Progress { applied: before.applied, partial: Some((log_id, i as u32 + 1)) }
            };
            let mut batch = WriteBatch::default();
            batch.put(Cf::Meta, keys::META_LAST_APPLIED, encode(&progress));
            let applied = mvcc.apply(req, batch)?;
            self.handle.applied.lock().expect("applied lock poisoned").0 = progress;
            if !applied.events.is_empty() {
                // No receivers is fine: nobody is watching.
                let _ = self
                    .handle
                    .events
                    .send(Arc::new(AppliedEvents::Write { revision: applied.revision, events: applied.events }));
            }
            if req.id != 0 && !self.handle.forwarded.is_empty() {
                let (response, revision) = (&applied.response, applied.revision);
                self.handle.forwarded.resolve(req.id, || response.clone().map(|r| (r, revision)));
            }
            results.push((applied.response, applied.revision));
        }
        Ok(CommandResponse { results })
    }

    fn load(&mut self, data: &[u8]) -> Result<()> {
        let batch = parse_snapshot(data)?;
        self.engine.write(batch, Durability::Synced)?;
        let mvcc = Arc::new(Mvcc::open(self.engine.clone())?);
        let progress = read_progress(&*self.engine)?;
        let membership: StoredMembership = read_meta(&*self.engine, keys::META_MEMBERSHIP)?.unwrap_or_default();
        *self.handle.mvcc.write().expect("mvcc lock poisoned") = mvcc;
        *self.handle.applied.lock().expect("applied lock poisoned") = (progress, membership);
        // No receivers is fine: nobody is watching.
        let _ = self.handle.events.send(Arc::new(AppliedEvents::Replaced));
        // Writes the snapshot covers will not be applied here one by one: their outcome is
        // unknown to this member.
        self.handle.forwarded.fail_link(None, &Error::LeaderChanged);
        Ok(())
    }
}

/// Serializes every state-machine column family from one point-in-time engine view: the raft
/// snapshot format, which is also what `Maintenance.Snapshot` streams as a backup.
///
/// Layout: magic, then records `[cf tag u8][key len u32 BE][key][value len u32 BE][value]`, an
/// end tag, zero padding to a multiple of 512 bytes, and the sha256 of everything before it.
/// The padding and digest are what `etcdctl snapshot save` checks for (etcd's bbolt snapshots
/// are page-sized with a sha256 appended), so etcd's own tool can take our backups.
fn dump(engine: &dyn Engine) -> Result<Dumped> {
    let mut out = SNAPSHOT_MAGIC.to_vec();
    let (mut last_applied, mut membership) = (None, None);
    engine.scan_consistent(&Cf::STATE_MACHINE, &mut |cf, k, v| {
        let tag = Cf::STATE_MACHINE.iter().position(|c| *c == cf).expect("asked for these") as u8;
        out.push(tag);
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(v);
        if cf == Cf::Meta && k == keys::META_LAST_APPLIED {
            last_applied = Some(v.to_vec());
        } else if cf == Cf::Meta && k == keys::META_MEMBERSHIP {
            membership = Some(v.to_vec());
        }
    })?;
    out.push(SNAPSHOT_END);
    out.resize(out.len().div_ceil(SNAPSHOT_ALIGN) * SNAPSHOT_ALIGN, 0);
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    Ok(Dumped {
        data: out,
        last_applied: last_applied.map(|b| decode::<Progress>(&b)).transpose()?.unwrap_or_default().applied,
        membership: membership.map(|b| decode(&b)).transpose()?.unwrap_or_default(),
    })
}

/// A dump and the raft position it reflects.
struct Dumped {
    data: Vec<u8>,
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

const SNAPSHOT_MAGIC: &[u8] = b"FERROKUBE-SNAPSHOT-1\n";
const SNAPSHOT_END: u8 = 0xff;
const SNAPSHOT_ALIGN: usize = 512;
const DIGEST_LEN: usize = 32;

/// Checks a snapshot (magic, framing, sha256 trailer) and turns it into a batch that replaces
/// the whole state machine.
pub fn parse_snapshot(data: &[u8]) -> Result<WriteBatch> {
    let bad = |why: &str| Error::InvalidArgument(format!("not a valid ferrokube snapshot: {why}"));
    if data.len() % SNAPSHOT_ALIGN != DIGEST_LEN || !data.starts_with(SNAPSHOT_MAGIC) {
        return Err(bad("bad header or size"));
    }
    let (body, digest) = data.split_at(data.len() - DIGEST_LEN);
    if Sha256::digest(body).as_slice() != digest {
        return Err(bad("sha256 mismatch"));
    }
    let mut batch = WriteBatch::default();
    for cf in Cf::STATE_MACHINE {
        // Every key we store is shorter than this bound.
        batch.delete_range(cf, Vec::new(), vec![0xff; 64]);
    }
    let mut rest = &body[SNAPSHOT_MAGIC.len()..];
    let take = |n: usize, rest: &mut &[u8]| -> Result<Vec<u8>> {
        if rest.len() < n {
            return Err(bad("truncated"));
        }
        let (a, b) = rest.split_at(n);
        *rest = b;
        Ok(a.to_vec())
    };
    loop {
        let tag = take(1, &mut rest)?[0];
        if tag == SNAPSHOT_END {
            break;
        }
        let cf = *Cf::STATE_MACHINE.get(tag as usize).ok_or_else(|| bad("unknown column family"))?;
        let klen = u32::from_be_bytes(take(4, &mut rest)?.try_into().expect("4 bytes")) as usize;
        let key = take(klen, &mut rest)?;
        let vlen = u32::from_be_bytes(take(4, &mut rest)?.try_into().expect("4 bytes")) as usize;
        let value = take(vlen, &mut rest)?;
        batch.put(cf, key, value);
    }
    if rest.iter().any(|b| *b != 0) {
        return Err(bad("garbage after the end marker"));
    }
    Ok(batch)
}

/// Builds a snapshot from one point-in-time view of the engine, on a blocking thread, while
/// the state machine keeps applying: the snapshot's log id and membership are read from that
/// same view, so they always describe exactly the data it holds.
pub struct SnapshotBuilder {
    engine: Arc<dyn Engine>,
}

/// A snapshot as kept in `RaftMeta`.
#[derive(Serialize, Deserialize)]
pub struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, Member>,
    data: Vec<u8>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let engine = self.engine.clone();
        let dumped = tokio::task::spawn_blocking(move || dump(&*engine))
            .await
            .map_err(sm_err)?
            .map_err(sm_err)?;
        let micros =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros()).unwrap_or(0);
        let meta = SnapshotMeta {
            last_log_id: dumped.last_applied,
            last_membership: dumped.membership,
            snapshot_id: format!("{}-{micros}", dumped.last_applied.map(|l| l.index).unwrap_or(0)),
        };
        let stored = StoredSnapshot { meta, data: dumped.data };
        let mut b = WriteBatch::default();
        b.put(Cf::RaftMeta, keys::RAFT_SNAPSHOT, encode(&stored));
        self.engine.write(b, Durability::Unlogged).map_err(sm_err)?;
        Ok(Snapshot { meta: stored.meta, snapshot: Box::new(Cursor::new(stored.data)) })
    }
}

impl<E: Engine> RaftStateMachine<TypeConfig> for StateMachine<E> {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let (progress, membership) = self.handle.applied.lock().expect("applied lock poisoned").clone();
        Ok((progress.applied, membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        if let (Some(log), Some(last)) = (&self.leader_log, entries.last()) {
            log.wait_durable(last.log_id.index).await;
        }
        entries.into_iter().map(|e| self.apply_one(e).map_err(sm_err)).collect()
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { engine: self.engine.clone() }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        self.load(&data).map_err(sm_err)?;
        // The data carries its own progress and membership (the meta was derived from them when
        // the snapshot was built), so only the snapshot itself is recorded here.
        let mut b = WriteBatch::default();
        b.put(Cf::RaftMeta, keys::RAFT_SNAPSHOT, encode(&StoredSnapshot { meta: meta.clone(), data }));
        self.engine.write(b, Durability::Synced).map_err(sm_err)?;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let Some(b) = self.engine.get(Cf::RaftMeta, keys::RAFT_SNAPSHOT).map_err(sm_err)? else {
            return Ok(None);
        };
        let s: StoredSnapshot = decode(&b).map_err(sm_err)?;
        Ok(Some(Snapshot { meta: s.meta, snapshot: Box::new(Cursor::new(s.data)) }))
    }
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::MemoryEngine;

    #[tokio::test]
    async fn forwarded_writes_are_answered_once_by_apply_or_by_a_broken_link() {
        use crate::pb::etcdserverpb::PutResponse;
        let writes = ForwardedWrites::default();
        let applied = writes.register(1, 10);
        let on_broken_link = writes.register(2, 10);
        let on_other_link = writes.register(3, 11);
        writes.resolve(1, || Ok((ApplyResponse::Put(PutResponse::default()), 5)));
        // A second answer for the same id (the leader's failure after our apply) is dropped.
        writes.resolve(1, || Err(Error::LeaderChanged));
        assert_eq!(applied.await.unwrap(), Ok((ApplyResponse::Put(PutResponse::default()), 5)));
        writes.fail_link(Some(10), &Error::LeaderChanged);
        assert_eq!(on_broken_link.await.unwrap(), Err(Error::LeaderChanged));
        assert!(!writes.is_empty(), "a write on another stream still waits");
        writes.forget(3);
        assert!(on_other_link.await.is_err(), "a forgotten write is never answered");
        assert!(writes.is_empty());
    }

    #[test]
    fn snapshots_round_trip_and_look_like_etcd_backups() {
        let engine = MemoryEngine::new();
        let mut b = WriteBatch::default();
        b.put(Cf::Kv, b"rev".to_vec(), b"record".to_vec());
        b.put(Cf::Lease, b"lease".to_vec(), b"ttl".to_vec());
        b.put(Cf::RaftLog, b"not-in-snapshot".to_vec(), b"x".to_vec());
        engine.write(b, Durability::Unlogged).unwrap();
        let snap = dump(&engine).unwrap().data;
        // What `etcdctl snapshot save` requires of a snapshot stream.
        assert_eq!(snap.len() % 512, 32);
        let batch = parse_snapshot(&snap).unwrap();
        let target = MemoryEngine::new();
        target.write(batch, Durability::Unlogged).unwrap();
        assert_eq!(target.get(Cf::Kv, b"rev").unwrap(), Some(b"record".to_vec()));
        assert_eq!(target.get(Cf::Lease, b"lease").unwrap(), Some(b"ttl".to_vec()));
        assert_eq!(target.get(Cf::RaftLog, b"not-in-snapshot").unwrap(), None);

        let mut corrupt = snap.clone();
        corrupt[SNAPSHOT_MAGIC.len() + 2] ^= 1;
        assert!(parse_snapshot(&corrupt).is_err());
        assert!(parse_snapshot(&snap[..snap.len() - 1]).is_err());
    }

    #[tokio::test]
    async fn a_crash_inside_a_batched_entry_resumes_after_the_last_written_request() {
        use prost::Message;

        use crate::pb::etcdserverpb::{PutRequest, RangeRequest};
        use crate::pb::storepb::{internal_request, InternalRequest};
        use crate::raft::Command;

        let put = |k: &str| InternalRequest {
            id: 0,
            request: Some(internal_request::Request::Put(PutRequest {
                key: k.into(),
                value: b"v".to_vec(),
                ..Default::default()
            })),
        };
        let requests = vec![put("a"), put("b"), put("c")];
        let log_id = openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), 3);
        let engine = Arc::new(MemoryEngine::new());
        {
            // What apply_batch leaves behind when the process dies right after b's batch.
            let mvcc = Mvcc::open(engine.clone()).unwrap();
            for (i, req) in requests.iter().take(2).enumerate() {
                let mut batch = WriteBatch::default();
                let progress = Progress { applied: None, partial: Some((log_id, i as u32 + 1)) };
                batch.put(Cf::Meta, keys::META_LAST_APPLIED, encode(&progress));
                mvcc.apply(req, batch).unwrap();
            }
        }
        let mut sm = StateMachine::open(engine).unwrap();
        assert_eq!(sm.applied_state().await.unwrap().0, None, "the entry is not applied yet");
        let entry = Entry {
            log_id,
            payload: EntryPayload::Normal(Command(InternalBatch { requests }.encode_to_vec())),
        };
        let out = sm.apply([entry]).await.unwrap();
        assert!(out[0].results[2].0.is_ok());
        assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id));
        let mvcc = sm.handle().mvcc();
        // a and b kept their first (and only) write: revisions 2 and 3; c is revision 4.
        assert_eq!(mvcc.current_revision(), 4);
        for (key, rev) in [("a", 2), ("b", 3), ("c", 4)] {
            let got = mvcc.range(&RangeRequest { key: key.into(), ..Default::default() }).unwrap();
            assert_eq!((got.kvs[0].version, got.kvs[0].mod_revision), (1, rev), "{key}");
        }
    }
}
