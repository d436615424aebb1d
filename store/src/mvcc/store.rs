//! [`Mvcc`]: the multi-version key-value store over an [`Engine`].
//!
//! Disk is the truth: every change is a [`Record`] in `Cf::Kv` under its revision key, the
//! current and compacted revisions are in `Cf::Meta`, lease grants in `Cf::Lease`. Memory holds
//! what makes reads fast and is rebuilt from disk by [`Mvcc::open`]: the key index (key →
//! revisions by generation) and the lease table.
//!
//! Applying a command: decide everything first from the committed state (nothing written yet, so
//! a semantic error changes nothing), then write the records and metadata in the caller's batch,
//! then update memory. Readers hold the state lock for their whole read; new records are
//! invisible to them until the index names them, and compaction takes the lock exclusively
//! before its deletes reach the engine, so a reader never misses a record it was promised.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::engine::{Durability, Engine, Scan, WriteBatch};
use crate::keys::{
    lease_key, parse_revision_key, parse_u64_key, revision_key, u64_key, Cf, META_COMPACT_REV, META_CURRENT_REV,
};
use crate::pb::etcdserverpb::{
    CompactionResponse, DeleteRangeResponse, LeaseGrantResponse, LeaseRevokeResponse, PutResponse, RangeRequest,
    RangeResponse, TxnRequest, TxnResponse,
};
use crate::pb::mvccpb::event::EventType;
use crate::pb::mvccpb::Event;
use crate::pb::storepb::internal_request::Request;
use crate::pb::storepb::InternalRequest;
use crate::{Error, Result};

use super::index::Index;
use super::lease::{decode_lease, encode_lease, LeaseInfo, LeaseTable};
use super::range;
use super::reader::Reader;
use super::record::{Record, RecordKind};
use super::txn::WriteTxn;
use super::{validate, KeyRange, Revision};

/// The in-memory state, guarded by [`Mvcc`]'s lock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct State {
    /// Key → revisions; names exactly the records in `Cf::Kv`.
    pub index: Index,
    /// The store's revision: 1 when empty, +1 per write that changed something.
    pub current: i64,
    /// Reads below this revision fail with `Compacted`; 0 if never compacted.
    pub compact: i64,
    /// Granted leases and their keys.
    pub leases: LeaseTable,
}

/// The successful outcome of one command, by command kind (headers left for the server).
#[derive(Debug, Clone, PartialEq)]
pub enum ApplyResponse {
    /// A Put.
    Put(PutResponse),
    /// A DeleteRange.
    DeleteRange(DeleteRangeResponse),
    /// A Txn.
    Txn(TxnResponse),
    /// A Compaction.
    Compaction(CompactionResponse),
    /// A LeaseGrant.
    LeaseGrant(LeaseGrantResponse),
    /// A LeaseRevoke.
    LeaseRevoke(LeaseRevokeResponse),
}

/// What applying one raft command produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The client's answer: a response, or the semantic error that made the command a no-op.
    pub response: std::result::Result<ApplyResponse, Error>,
    /// Events produced, in order, with prev_kv filled where the key had a previous live value.
    pub events: Vec<Event>,
    /// The store's revision after this command.
    pub revision: i64,
}

/// A lease change decided by a command.
#[derive(Debug, Clone, Copy)]
enum LeaseChange {
    Grant { id: i64, ttl: i64 },
    Revoke(i64),
}

/// Everything one command will change, decided before anything is written.
struct Plan {
    response: ApplyResponse,
    /// New records, all at main revision `current + 1`.
    changes: Vec<(Revision, Record)>,
    lease: Option<LeaseChange>,
    /// Compact at this revision.
    compact: Option<i64>,
}

impl Plan {
    fn respond(response: ApplyResponse) -> Self {
        Self { response, changes: Vec::new(), lease: None, compact: None }
    }
}

/// The multi-version store: etcd's revisioned key space, leases and compaction over an engine.
pub struct Mvcc<E: Engine> {
    engine: Arc<E>,
    state: RwLock<State>,
    /// Serializes `apply` (raft applies one entry at a time anyway): the plan is computed under
    /// the shared lock and must still hold when the exclusive lock is taken to commit it.
    apply_lock: Mutex<()>,
}

impl<E: Engine> std::fmt::Debug for Mvcc<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.read();
        f.debug_struct("Mvcc")
            .field("current_revision", &state.current)
            .field("compact_revision", &state.compact)
            .field("keys", &state.index.key_count())
            .finish()
    }
}

/// Engine and corruption errors are fatal for the member; every other error is a semantic
/// outcome of the command.
fn is_fatal(e: &Error) -> bool {
    matches!(e, Error::Storage(_) | Error::Corrupt(_))
}

impl<E: Engine> Mvcc<E> {
    /// Rebuilds the in-memory key index and lease table from the engine (Cf::Kv, Cf::Meta, Cf::Lease).
    pub fn open(engine: Arc<E>) -> Result<Self> {
        let state = load(&*engine)?;
        Ok(Self { engine, state: RwLock::new(state), apply_lock: Mutex::new(()) })
    }

    /// The engine this store reads and writes.
    pub fn engine(&self) -> &Arc<E> {
        &self.engine
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        // A panic while the state was locked may have left it half-updated: refuse to go on.
        self.state.read().expect("mvcc state lock poisoned")
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().expect("mvcc state lock poisoned")
    }

    /// 1 for an empty store (as etcd), then +1 per applied write that changed something.
    pub fn current_revision(&self) -> i64 {
        self.read().current
    }

    /// 0 if never compacted.
    pub fn compact_revision(&self) -> i64 {
        self.read().compact
    }

    /// Read-only Range at req.revision (<=0: current); errors: EmptyKey, FutureRevision, Compacted. Header left None.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        validate::check_range(req)?;
        let state = self.read();
        let reader = Reader { state: &state, engine: &*self.engine };
        let rev = reader.read_revision(req.revision)?;
        let entries = reader.stored(&KeyRange::new(&req.key, &req.range_end), rev);
        range::evaluate(req, entries, |r| reader.kv(r))
    }

    /// Evaluates a txn that writes nothing (no put or delete on either branch, nested included)
    /// against the current state without raft, as etcd serves read-only txns. Semantic errors
    /// are returned as `Err`; a txn that would write is `InvalidArgument`. Header left None.
    pub fn read_txn(&self, req: &TxnRequest) -> Result<TxnResponse> {
        validate::check_txn(req)?;
        let state = self.read();
        let reader = Reader { state: &state, engine: &*self.engine };
        let mut w = WriteTxn::new(&reader);
        let resp = w.txn(req)?;
        if !w.into_changes().is_empty() {
            return Err(Error::InvalidArgument("a txn that writes must be proposed through raft".into()));
        }
        Ok(resp)
    }

    /// Applies one raft command deterministically, adding its changes to `batch` and writing it
    /// (sync = false). A semantic failure is `Ok` with `response: Err` and changes nothing but
    /// still writes `batch`; an outer `Err` is an engine failure (fatal).
    pub fn apply(&self, req: &InternalRequest, mut batch: WriteBatch) -> Result<Applied> {
        let _serial = self.apply_lock.lock().expect("mvcc apply lock poisoned");
        let state = self.read();
        let reader = Reader { state: &state, engine: &*self.engine };

        let plan = match plan(&reader, req) {
            Ok(plan) => plan,
            Err(e) if is_fatal(&e) => return Err(e),
            Err(e) => {
                let revision = state.current;
                drop(state);
                self.engine.write(batch, Durability::Unlogged)?;
                return Ok(Applied { response: Err(e), events: Vec::new(), revision });
            }
        };
        let events = events_of(&reader, &plan.changes)?;
        let revision = state.current + i64::from(!plan.changes.is_empty());

        for (rev, record) in &plan.changes {
            batch.put(Cf::Kv, revision_key(*rev), record.encode());
        }
        if !plan.changes.is_empty() {
            batch.put(Cf::Meta, META_CURRENT_REV, u64_key(revision as u64));
        }
        match plan.lease {
            Some(LeaseChange::Grant { id, ttl }) => batch.put(Cf::Lease, lease_key(id), encode_lease(ttl)),
            Some(LeaseChange::Revoke(id)) => batch.delete(Cf::Lease, lease_key(id)),
            None => {}
        }
        if let Some(at) = plan.compact {
            for rev in state.index.compacted_revisions(at) {
                batch.delete(Cf::Kv, revision_key(rev));
            }
            batch.put(Cf::Meta, META_COMPACT_REV, u64_key(at as u64));
        }
        drop(state);

        if plan.compact.is_some() {
            // Readers fetch records while holding the shared lock: delete only while holding it
            // exclusively, so no read in flight can lose a record its index lookup promised.
            let mut state = self.write();
            self.engine.write(batch, Durability::Unlogged)?;
            commit(&mut state, &plan);
        } else {
            // The new records are invisible until the index names them; readers carry on.
            self.engine.write(batch, Durability::Unlogged)?;
            commit(&mut self.write(), &plan);
        }
        Ok(Applied { response: Ok(plan.response), events, revision })
    }

    /// Events of every key with revision in [start_rev, end_rev] in revision order (end_rev <= 0:
    /// up to the current revision). Err(Compacted) if start_rev <= compact_revision.
    ///
    /// At most `limit` events (0: no limit), and never part of a revision: the result ends on a
    /// revision boundary, so resuming from the last event's revision + 1 loses nothing. The one
    /// exception: a first revision with more than `limit` events is returned whole. DELETE
    /// events carry kv = {key, mod_revision}; with `with_prev_kv`, prev_kv is the key's value
    /// just before the event's revision, as etcd's watch fills it.
    pub fn events(&self, start_rev: i64, end_rev: i64, limit: usize, with_prev_kv: bool) -> Result<Vec<Event>> {
        let state = self.read();
        if state.compact > 0 && start_rev <= state.compact {
            return Err(Error::Compacted { compact_revision: state.compact });
        }
        let start = start_rev.max(1);
        let end = if end_rev <= 0 { state.current } else { end_rev.min(state.current) };
        if start > end {
            return Ok(Vec::new());
        }

        let mut records: Vec<(Revision, Vec<u8>)> = Vec::new();
        // Where the revision being read started in `records`: a cut can only go there.
        let mut boundary = 0;
        let mut bad_key = None;
        let upper = revision_key(Revision::new(end + 1, 0));
        self.engine.scan(Cf::Kv, &revision_key(Revision::new(start, 0)), Some(&upper), &mut |k, v| {
            let Some(rev) = parse_revision_key(k) else {
                bad_key = Some(k.to_vec());
                return Scan::Stop;
            };
            if records.last().is_some_and(|(last, _)| last.main != rev.main) {
                if limit > 0 && records.len() >= limit {
                    return Scan::Stop;
                }
                boundary = records.len();
            }
            records.push((rev, v.to_vec()));
            if limit > 0 && records.len() > limit && boundary > 0 {
                // This revision does not fit: end before it.
                records.truncate(boundary);
                return Scan::Stop;
            }
            Scan::Continue
        })?;
        if let Some(k) = bad_key {
            return Err(Error::corrupt(format!("Cf::Kv key {k:02x?} is not a revision")));
        }

        let reader = Reader { state: &state, engine: &*self.engine };
        let mut events = Vec::with_capacity(records.len());
        for (rev, bytes) in records {
            let record = Record::decode(&bytes)?;
            let is_create = record.kind == RecordKind::Put && record.kv.create_revision == record.kv.mod_revision;
            let prev_kv = if with_prev_kv && !is_create { reader.get(&record.kv.key, rev.main - 1)? } else { None };
            events.push(event(record, prev_kv));
        }
        Ok(events)
    }

    /// etcd HashKV: (crc32 over all kv records with main revision <= rev (0 = current), compact_revision).
    ///
    /// Members that applied the same commands hash the same. Errors as etcd: `Compacted` below
    /// the compacted revision, `FutureRevision` beyond the current one.
    pub fn hash_kv(&self, rev: i64) -> Result<(u32, i64)> {
        let state = self.read();
        if rev > 0 && rev < state.compact {
            return Err(Error::Compacted { compact_revision: state.compact });
        }
        if rev > state.current {
            return Err(Error::FutureRevision);
        }
        let rev = if rev <= 0 { state.current } else { rev };
        let mut hasher = crc32fast::Hasher::new();
        let upper = revision_key(Revision::new(rev + 1, 0));
        self.engine.scan(Cf::Kv, &[], Some(&upper), &mut |k, v| {
            hasher.update(k);
            hasher.update(v);
            Scan::Continue
        })?;
        Ok((hasher.finalize(), state.compact))
    }

    /// All leases with the keys attached to them (sorted), by id.
    pub fn leases(&self) -> Vec<LeaseInfo> {
        self.read().leases.all()
    }

    /// One lease with the keys attached to it (sorted).
    pub fn lease(&self, id: i64) -> Option<LeaseInfo> {
        self.read().leases.info(id)
    }

    #[cfg(test)]
    pub(super) fn state_snapshot(&self) -> State {
        self.read().clone()
    }
}

/// Decides what `req` changes (see [`Plan`]); a non-fatal error means "change nothing".
fn plan<E: Engine>(reader: &Reader<'_, E>, req: &InternalRequest) -> Result<Plan> {
    validate::validate(req)?;
    let state = reader.state;
    let Some(request) = &req.request else {
        return Err(Error::InvalidArgument("empty raft command".into()));
    };
    let mut w = WriteTxn::new(reader);
    let plan = match request {
        Request::Put(p) => {
            // etcd checks the lease before looking at the key (`applierV3backend.Put`).
            if p.lease != 0 && !state.leases.contains(p.lease) {
                return Err(Error::LeaseNotFound);
            }
            let resp = w.put(p)?;
            Plan { changes: w.into_changes(), ..Plan::respond(ApplyResponse::Put(resp)) }
        }
        Request::DeleteRange(d) => {
            let resp = w.delete_range(d)?;
            Plan { changes: w.into_changes(), ..Plan::respond(ApplyResponse::DeleteRange(resp)) }
        }
        Request::Txn(t) => {
            let resp = w.txn(t)?;
            Plan { changes: w.into_changes(), ..Plan::respond(ApplyResponse::Txn(resp)) }
        }
        Request::Compaction(c) => {
            // etcd `updateCompactRev`: Compacted is checked before FutureRevision.
            if c.revision <= state.compact {
                return Err(Error::Compacted { compact_revision: state.compact });
            }
            if c.revision > state.current {
                return Err(Error::FutureRevision);
            }
            Plan {
                compact: Some(c.revision),
                ..Plan::respond(ApplyResponse::Compaction(CompactionResponse::default()))
            }
        }
        Request::LeaseGrant(g) => {
            if state.leases.contains(g.id) {
                return Err(Error::LeaseExists);
            }
            let resp = LeaseGrantResponse { header: None, id: g.id, ttl: g.ttl, error: String::new() };
            Plan {
                lease: Some(LeaseChange::Grant { id: g.id, ttl: g.ttl }),
                ..Plan::respond(ApplyResponse::LeaseGrant(resp))
            }
        }
        Request::LeaseRevoke(r) => {
            if !state.leases.contains(r.id) {
                return Err(Error::LeaseNotFound);
            }
            // Sorted keys, one revision: every member deletes in the same order (etcd `Revoke`).
            for key in state.leases.keys(r.id) {
                w.delete_key(&key)?;
            }
            Plan {
                changes: w.into_changes(),
                lease: Some(LeaseChange::Revoke(r.id)),
                ..Plan::respond(ApplyResponse::LeaseRevoke(LeaseRevokeResponse::default()))
            }
        }
    };
    Ok(plan)
}

fn event(record: Record, prev_kv: Option<crate::pb::mvccpb::KeyValue>) -> Event {
    let ty = match record.kind {
        RecordKind::Put => EventType::Put,
        RecordKind::Tombstone => EventType::Delete,
    };
    Event { r#type: ty as i32, kv: Some(record.kv), prev_kv }
}

/// The events of a command's changes; prev_kv is the key's value before the command (as etcd's
/// watch reads it at `mod_revision - 1`), absent for a creation.
fn events_of<E: Engine>(reader: &Reader<'_, E>, changes: &[(Revision, Record)]) -> Result<Vec<Event>> {
    let before = reader.state.current;
    changes
        .iter()
        .map(|(_, record)| {
            let is_create = record.kind == RecordKind::Put && record.kv.create_revision == record.kv.mod_revision;
            let prev_kv = if is_create { None } else { reader.get(&record.kv.key, before)? };
            Ok(event(record.clone(), prev_kv))
        })
        .collect()
}

/// Applies a written plan to memory.
fn commit(state: &mut State, plan: &Plan) {
    for (rev, record) in &plan.changes {
        let key = &record.kv.key;
        match record.kind {
            RecordKind::Put => {
                let at = state.index.put(key, *rev);
                debug_assert_eq!((at.created, at.version), (record.kv.create_revision, record.kv.version));
                if record.kv.lease != 0 {
                    state.leases.attach(key, record.kv.lease);
                } else {
                    state.leases.detach(key);
                }
            }
            RecordKind::Tombstone => {
                let deleted = state.index.tombstone(key, *rev);
                debug_assert!(deleted, "tombstone of a key that does not exist");
                state.leases.detach(key);
            }
        }
    }
    if !plan.changes.is_empty() {
        state.current += 1;
    }
    match plan.lease {
        Some(LeaseChange::Grant { id, ttl }) => state.leases.grant(id, ttl),
        Some(LeaseChange::Revoke(id)) => state.leases.remove(id),
        None => {}
    }
    if let Some(at) = plan.compact {
        state.index.compact(at);
        state.compact = at;
    }
}

fn meta_rev<E: Engine>(engine: &E, key: &[u8]) -> Result<Option<i64>> {
    match engine.get(Cf::Meta, key)? {
        None => Ok(None),
        Some(bytes) => parse_u64_key(&bytes).map(|n| Some(n as i64)).ok_or_else(|| {
            Error::corrupt(format!("meta {} is {} bytes, not 8", String::from_utf8_lossy(key), bytes.len()))
        }),
    }
}

/// Reads the whole state back from the engine.
fn load<E: Engine>(engine: &E) -> Result<State> {
    let mut index = Index::default();
    // The lease of each key's newest record (0 after a tombstone): attachments are derived.
    let mut lease_of: HashMap<Vec<u8>, i64> = HashMap::new();
    let mut last_main = 0;
    let mut failure = None;
    engine.scan(Cf::Kv, &[], None, &mut |k, v| {
        let Some(rev) = parse_revision_key(k) else {
            failure = Some(Error::corrupt(format!("Cf::Kv key {k:02x?} is not a revision")));
            return Scan::Stop;
        };
        let record = match Record::decode(v) {
            Ok(r) => r,
            Err(e) => {
                failure = Some(e);
                return Scan::Stop;
            }
        };
        let kv = record.kv;
        match record.kind {
            RecordKind::Put => {
                index.restore_put(&kv.key, rev, kv.create_revision, kv.version);
                lease_of.insert(kv.key, kv.lease);
            }
            RecordKind::Tombstone => {
                index.restore_tombstone(&kv.key, rev);
                lease_of.insert(kv.key, 0);
            }
        }
        last_main = rev.main;
        Scan::Continue
    })?;
    if let Some(e) = failure {
        return Err(e);
    }

    let mut leases = LeaseTable::default();
    let mut failure = None;
    engine.scan(Cf::Lease, &[], None, &mut |k, v| {
        match (parse_u64_key(k), decode_lease(v)) {
            (Some(id), Ok(ttl)) => leases.grant(id as i64, ttl),
            (None, _) => failure = Some(Error::corrupt(format!("Cf::Lease key {k:02x?} is not a lease id"))),
            (_, Err(e)) => failure = Some(e),
        }
        if failure.is_some() {
            Scan::Stop
        } else {
            Scan::Continue
        }
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    for (key, id) in lease_of {
        if id != 0 {
            leases.attach(&key, id);
        }
    }

    // The meta revision survives the compaction of every record; records can only be ahead of
    // it if meta was lost, never in normal operation (both are written in one batch).
    let current = meta_rev(engine, META_CURRENT_REV)?.unwrap_or(1).max(last_main).max(1);
    let compact = meta_rev(engine, META_COMPACT_REV)?.unwrap_or(0);
    Ok(State { index, current, compact, leases })
}
