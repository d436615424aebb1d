//! The replicated state machine: decodes each committed entry and lets [`Mvcc`] apply it, with
//! the entry's log id recorded in the same engine write batch. A crash therefore never applies an
//! entry twice or skips one: on restart, openraft re-applies exactly the entries after the
//! recorded `last_applied`.

use std::io::Cursor;
use std::sync::{Arc, Mutex, RwLock};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageIOError};
use prost::Message;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;

use super::{decode, encode, Entry, LogId, Member, NodeId, StorageError, StoredMembership, TypeConfig};
use crate::engine::{Engine, Scan, WriteBatch};
use crate::keys::{self, Cf};
use crate::mvcc::{ApplyResponse, Mvcc};
use crate::pb::mvccpb::Event;
use crate::pb::storepb::InternalRequest;
use crate::{Error, Result};

/// What applying one entry produced, as returned to the proposer by `Raft::client_write`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CommandResponse {
    /// The store revision after the entry.
    pub revision: i64,
    /// The outcome. Only ever read on the member that applied the entry (proposals are
    /// answered by the leader that applied them), so it is not serialized; `None` only for
    /// blank and membership entries.
    #[serde(skip)]
    pub result: Option<Result<ApplyResponse>>,
}

/// Events of one applied write, fanned out to watchers.
#[derive(Debug)]
pub struct AppliedEvents {
    /// The revision they were written at.
    pub revision: i64,
    /// The events, in order, with `prev_kv` filled.
    pub events: Vec<Event>,
}

/// How many applied writes a watcher may fall behind before it must catch up from history.
const EVENT_BUFFER: usize = 4096;

/// The read side of the state machine, shared with the servers.
pub struct StateMachineHandle<E: Engine> {
    mvcc: RwLock<Arc<Mvcc<E>>>,
    applied: Mutex<(Option<LogId>, StoredMembership)>,
    events: broadcast::Sender<Arc<AppliedEvents>>,
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
        self.applied.lock().expect("applied lock poisoned").0
    }

    /// The last applied membership.
    pub fn membership(&self) -> StoredMembership {
        self.applied.lock().expect("applied lock poisoned").1.clone()
    }
}

/// The openraft state machine over an [`Engine`].
pub struct StateMachine<E: Engine> {
    engine: Arc<E>,
    handle: Arc<StateMachineHandle<E>>,
}

fn sm_err(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::write_state_machine(openraft::AnyError::error(e)).into()
}

fn read_meta<E: Engine, T: serde::de::DeserializeOwned>(engine: &E, key: &[u8]) -> Result<Option<T>> {
    engine.get(Cf::Meta, key)?.map(|b| decode(&b)).transpose()
}

/// `last_applied` is stored as `Option<LogId>` (a snapshot may cover no entry at all).
fn read_last_applied<E: Engine>(engine: &E) -> Result<Option<LogId>> {
    Ok(read_meta::<E, Option<LogId>>(engine, keys::META_LAST_APPLIED)?.flatten())
}

impl<E: Engine> StateMachine<E> {
    /// Opens the state machine stored in `engine`.
    pub fn open(engine: Arc<E>) -> Result<Self> {
        let mvcc = Arc::new(Mvcc::open(engine.clone())?);
        let last_applied = read_last_applied(&*engine)?;
        let membership: StoredMembership = read_meta(&*engine, keys::META_MEMBERSHIP)?.unwrap_or_default();
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let handle =
            Arc::new(StateMachineHandle { mvcc: RwLock::new(mvcc), applied: Mutex::new((last_applied, membership)), events });
        Ok(Self { engine, handle })
    }

    /// The shared read side.
    pub fn handle(&self) -> Arc<StateMachineHandle<E>> {
        self.handle.clone()
    }

    fn apply_one(&mut self, entry: Entry) -> Result<CommandResponse> {
        let mut batch = WriteBatch::default();
        batch.put(Cf::Meta, keys::META_LAST_APPLIED, encode(&Some(entry.log_id)));
        let mvcc = self.handle.mvcc();
        let response = match entry.payload {
            EntryPayload::Blank => {
                self.engine.write(batch, false)?;
                CommandResponse { revision: mvcc.current_revision(), result: None }
            }
            EntryPayload::Membership(m) => {
                let stored = StoredMembership::new(Some(entry.log_id), m);
                batch.put(Cf::Meta, keys::META_MEMBERSHIP, encode(&stored));
                self.engine.write(batch, false)?;
                self.handle.applied.lock().expect("applied lock poisoned").1 = stored;
                CommandResponse { revision: mvcc.current_revision(), result: None }
            }
            EntryPayload::Normal(cmd) => match InternalRequest::decode(cmd.0.as_slice()) {
                Ok(req) => {
                    let applied = mvcc.apply(&req, batch)?;
                    if !applied.events.is_empty() {
                        // No receivers is fine: nobody is watching.
                        let _ = self
                            .handle
                            .events
                            .send(Arc::new(AppliedEvents { revision: applied.revision, events: applied.events }));
                    }
                    CommandResponse { revision: applied.revision, result: Some(applied.response) }
                }
                Err(e) => {
                    // A proposer bug, not a storage fault: the entry is consumed and reported.
                    self.engine.write(batch, false)?;
                    CommandResponse {
                        revision: mvcc.current_revision(),
                        result: Some(Err(Error::InvalidArgument(format!("undecodable command: {e}")))),
                    }
                }
            },
        };
        self.handle.applied.lock().expect("applied lock poisoned").0 = Some(entry.log_id);
        Ok(response)
    }

    fn load(&mut self, data: &[u8]) -> Result<()> {
        let batch = parse_snapshot(data)?;
        self.engine.write(batch, true)?;
        let mvcc = Arc::new(Mvcc::open(self.engine.clone())?);
        let last_applied = read_last_applied(&*self.engine)?;
        let membership: StoredMembership = read_meta(&*self.engine, keys::META_MEMBERSHIP)?.unwrap_or_default();
        *self.handle.mvcc.write().expect("mvcc lock poisoned") = mvcc;
        *self.handle.applied.lock().expect("applied lock poisoned") = (last_applied, membership);
        Ok(())
    }
}

/// Serializes every state-machine column family: the raft snapshot format, which is also what
/// `Maintenance.Snapshot` streams as a backup. Consistent only when nothing applies meanwhile,
/// which holds inside the state machine's own task.
///
/// Layout: magic, then records `[cf tag u8][key len u32 BE][key][value len u32 BE][value]`, an
/// end tag, zero padding to a multiple of 512 bytes, and the sha256 of everything before it.
/// The padding and digest are what `etcdctl snapshot save` checks for (etcd's bbolt snapshots
/// are page-sized with a sha256 appended), so etcd's own tool can take our backups.
fn dump<E: Engine>(engine: &E) -> Result<Vec<u8>> {
    let mut out = SNAPSHOT_MAGIC.to_vec();
    for (tag, cf) in Cf::STATE_MACHINE.iter().enumerate() {
        engine.scan(*cf, b"", None, &mut |k, v| {
            out.push(tag as u8);
            out.extend_from_slice(&(k.len() as u32).to_be_bytes());
            out.extend_from_slice(k);
            out.extend_from_slice(&(v.len() as u32).to_be_bytes());
            out.extend_from_slice(v);
            Scan::Continue
        })?;
    }
    out.push(SNAPSHOT_END);
    out.resize(out.len().div_ceil(SNAPSHOT_ALIGN) * SNAPSHOT_ALIGN, 0);
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    Ok(out)
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

/// A snapshot taken while the state machine was not applying, so it is point-in-time.
pub struct SnapshotBuilder {
    meta: SnapshotMeta<NodeId, Member>,
    data: Vec<u8>,
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
        let stored = StoredSnapshot { meta: self.meta.clone(), data: std::mem::take(&mut self.data) };
        let mut b = WriteBatch::default();
        b.put(Cf::RaftMeta, keys::RAFT_SNAPSHOT, encode(&stored));
        self.engine.write(b, false).map_err(sm_err)?;
        Ok(Snapshot { meta: stored.meta, snapshot: Box::new(Cursor::new(stored.data)) })
    }
}

impl<E: Engine> RaftStateMachine<TypeConfig> for StateMachine<E> {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let (applied, membership) = self.handle.applied.lock().expect("applied lock poisoned").clone();
        Ok((applied, membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        entries.into_iter().map(|e| self.apply_one(e).map_err(sm_err)).collect()
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        let (last_log_id, last_membership) = self.handle.applied.lock().expect("applied lock poisoned").clone();
        // A dump failure here surfaces as an empty snapshot that fails its checksum on install
        // rather than as a panic; it is logged as the storage fault it is.
        let data = dump(&*self.engine).unwrap_or_else(|e| {
            tracing::error!(error = %e, "building snapshot failed");
            Vec::new()
        });
        let snapshot_id = format!(
            "{}-{}",
            last_log_id.map(|l| l.index).unwrap_or(0),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros()).unwrap_or(0)
        );
        SnapshotBuilder {
            meta: SnapshotMeta { last_log_id, last_membership, snapshot_id },
            data,
            engine: self.engine.clone(),
        }
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
        // The snapshot's own meta is authoritative for what it covers.
        let mut b = WriteBatch::default();
        b.put(Cf::Meta, keys::META_LAST_APPLIED, encode(&meta.last_log_id));
        b.put(Cf::Meta, keys::META_MEMBERSHIP, encode(&meta.last_membership));
        b.put(Cf::RaftMeta, keys::RAFT_SNAPSHOT, encode(&StoredSnapshot { meta: meta.clone(), data }));
        self.engine.write(b, true).map_err(sm_err)?;
        *self.handle.applied.lock().expect("applied lock poisoned") = (meta.last_log_id, meta.last_membership.clone());
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

    #[test]
    fn snapshots_round_trip_and_look_like_etcd_backups() {
        let engine = MemoryEngine::new();
        let mut b = WriteBatch::default();
        b.put(Cf::Kv, b"rev".to_vec(), b"record".to_vec());
        b.put(Cf::Lease, b"lease".to_vec(), b"ttl".to_vec());
        b.put(Cf::RaftLog, b"not-in-snapshot".to_vec(), b"x".to_vec());
        engine.write(b, false).unwrap();
        let snap = dump(&engine).unwrap();
        // What `etcdctl snapshot save` requires of a snapshot stream.
        assert_eq!(snap.len() % 512, 32);
        let batch = parse_snapshot(&snap).unwrap();
        let target = MemoryEngine::new();
        target.write(batch, false).unwrap();
        assert_eq!(target.get(Cf::Kv, b"rev").unwrap(), Some(b"record".to_vec()));
        assert_eq!(target.get(Cf::Lease, b"lease").unwrap(), Some(b"ttl".to_vec()));
        assert_eq!(target.get(Cf::RaftLog, b"not-in-snapshot").unwrap(), None);

        let mut corrupt = snap.clone();
        corrupt[SNAPSHOT_MAGIC.len() + 2] ^= 1;
        assert!(parse_snapshot(&corrupt).is_err());
        assert!(parse_snapshot(&snap[..snap.len() - 1]).is_err());
    }
}
