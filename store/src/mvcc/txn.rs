//! [`WriteTxn`]: one write in progress. Puts, deletes, ranges and (nested) txns of a single raft
//! command run against it; it collects the changes, all at main revision `current + 1` with
//! sub 0, 1, 2…, without touching the store, so a failed command changes nothing.
//!
//! Reads inside the write see its earlier changes (etcd's `storeTxnWrite`): a Range after a Put
//! in the same txn returns the put value. Compares, however, are all evaluated first against the
//! state before the txn, nested ones included (etcd's `compareToPath`).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use crate::engine::Engine;
use crate::pb::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::pb::etcdserverpb::request_op::Request as Op;
use crate::pb::etcdserverpb::response_op::Response as OpResponse;
use crate::pb::etcdserverpb::{
    Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp,
    ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use crate::pb::mvccpb::KeyValue;
use crate::{Error, Result};

use super::range::{self, Entry};
use super::reader::Reader;
use super::record::Record;
use super::{KeyRange, Revision};

/// A write being built over the committed state `base` (see the module docs).
pub(super) struct WriteTxn<'r, 'a, E: Engine> {
    base: &'r Reader<'a, E>,
    /// Records to write, in order.
    changes: Vec<(Revision, Record)>,
    /// Latest value per key written so far (`None`: deleted by this write).
    overlay: BTreeMap<Vec<u8>, Option<KeyValue>>,
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader { revision, ..Default::default() })
}

impl<'r, 'a, E: Engine> WriteTxn<'r, 'a, E> {
    /// An empty write on top of `base`.
    pub fn new(base: &'r Reader<'a, E>) -> Self {
        Self { base, changes: Vec::new(), overlay: BTreeMap::new() }
    }

    /// The records to write, in order.
    pub fn into_changes(self) -> Vec<(Revision, Record)> {
        self.changes
    }

    /// The revision before this write.
    fn begin(&self) -> i64 {
        self.base.state.current
    }

    /// The main revision of this write's changes.
    fn write_rev(&self) -> i64 {
        self.begin() + 1
    }

    /// The revision reads inside the write observe: the write's own once it changed something.
    fn read_rev(&self) -> i64 {
        self.begin() + i64::from(!self.changes.is_empty())
    }

    /// `key` as this write sees it.
    fn live(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        match self.overlay.get(key) {
            Some(pending) => Ok(pending.clone()),
            None => self.base.get(key, self.begin()),
        }
    }

    /// The keys of `range` as this write sees them, ascending.
    fn view(&self, range: &KeyRange) -> Vec<(Vec<u8>, Entry)> {
        let begin = self.begin();
        if self.overlay.is_empty() {
            return self.base.entries(range, begin).map(|(k, rev)| (k.to_vec(), Entry::Stored(rev))).collect();
        }
        let mut merged: BTreeMap<&[u8], Entry> =
            self.base.entries(range, begin).map(|(k, rev)| (k, Entry::Stored(rev))).collect();
        for (k, pending) in self.overlay.iter().filter(|(k, _)| range.contains(k)) {
            match pending {
                Some(kv) => merged.insert(k, Entry::Pending(kv.clone())),
                None => merged.remove(k.as_slice()),
            };
        }
        merged.into_iter().map(|(k, e)| (k.to_vec(), e)).collect()
    }

    fn fetch(&self, entry: Entry) -> Result<KeyValue> {
        match entry {
            Entry::Stored(rev) => self.base.kv(rev),
            Entry::Pending(kv) => Ok(kv),
        }
    }

    /// etcd `applierV3backend.Put` inside a write: `ignore_*` on a missing key is `KeyNotFound`.
    /// Static checks and the lease's existence are the caller's.
    pub fn put(&mut self, p: &PutRequest) -> Result<PutResponse> {
        let prev = self.live(&p.key)?;
        if (p.ignore_value || p.ignore_lease) && prev.is_none() {
            return Err(Error::KeyNotFound);
        }
        let rev = Revision::new(self.write_rev(), self.changes.len() as i64);
        let kv = KeyValue {
            key: p.key.clone(),
            create_revision: prev.as_ref().map_or(rev.main, |kv| kv.create_revision),
            mod_revision: rev.main,
            version: prev.as_ref().map_or(1, |kv| kv.version + 1),
            value: match &prev {
                Some(kv) if p.ignore_value => kv.value.clone(),
                _ => p.value.clone(),
            },
            lease: match &prev {
                Some(kv) if p.ignore_lease => kv.lease,
                _ => p.lease,
            },
        };
        self.changes.push((rev, Record::put(kv.clone())));
        self.overlay.insert(p.key.clone(), Some(kv));
        Ok(PutResponse { header: None, prev_kv: if p.prev_kv { prev } else { None } })
    }

    /// Deletes one key if it exists (what a lease revoke does per attached key).
    pub fn delete_key(&mut self, key: &[u8]) -> Result<bool> {
        if self.live(key)?.is_none() {
            return Ok(false);
        }
        self.tombstone(key.to_vec());
        Ok(true)
    }

    fn tombstone(&mut self, key: Vec<u8>) {
        let rev = Revision::new(self.write_rev(), self.changes.len() as i64);
        self.changes.push((rev, Record::tombstone(key.clone(), rev.main)));
        self.overlay.insert(key, None);
    }

    /// etcd `applierV3backend.DeleteRange`: tombstones every live key in the range, in key order.
    pub fn delete_range(&mut self, d: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        let entries = self.view(&KeyRange::new(&d.key, &d.range_end));
        let deleted = entries.len() as i64;
        let mut prev_kvs = Vec::new();
        let mut keys = Vec::with_capacity(entries.len());
        for (key, entry) in entries {
            if d.prev_kv {
                prev_kvs.push(self.fetch(entry)?);
            }
            keys.push(key);
        }
        for key in keys {
            self.tombstone(key);
        }
        Ok(DeleteRangeResponse { header: None, deleted, prev_kvs })
    }

    /// A Range inside the write: revision 0 reads the write's own view, an explicit revision
    /// reads the committed history (callers have checked it, as etcd's `checkRequestRange`).
    pub fn range(&self, r: &RangeRequest) -> Result<RangeResponse> {
        let key_range = KeyRange::new(&r.key, &r.range_end);
        let entries = if r.revision > 0 {
            let rev = self.base.read_revision(r.revision)?;
            self.base.stored(&key_range, rev)
        } else {
            self.view(&key_range).into_iter().map(|(_, e)| e).collect()
        };
        range::evaluate(r, entries, |rev| self.base.kv(rev))
    }

    /// etcd `applierV3backend.Txn`: compares (all of them, nested included, on the state before
    /// the txn), the state checks of the chosen ops (puts first, then ranges), then the chosen
    /// ops in order. The static checks ([`super::validate()`]) are the caller's. On an error the
    /// caller discards the whole write, so a txn applies entirely or not at all. Leaves the
    /// top-level `header` unset.
    pub fn txn(&mut self, t: &TxnRequest) -> Result<TxnResponse> {
        let mut path = Vec::new();
        self.compare_path(t, &mut path)?;
        self.check_chosen(t, &path, &Self::check_put)?;
        self.check_chosen(t, &path, &Self::check_range)?;
        let mut path = path.into_iter();
        self.exec(t, &mut path)
    }

    /// etcd `compareToPath`: the branch every txn on the chosen path takes, in pre-order.
    fn compare_path(&self, t: &TxnRequest, path: &mut Vec<bool>) -> Result<()> {
        let mut succeeded = true;
        for c in &t.compare {
            if !self.compare(c)? {
                succeeded = false;
                break;
            }
        }
        path.push(succeeded);
        for op in if succeeded { &t.success } else { &t.failure } {
            if let Some(Op::RequestTxn(nested)) = &op.request {
                self.compare_path(nested, path)?;
            }
        }
        Ok(())
    }

    /// etcd `applyCompare`: every key in the compare's range must satisfy it; no key at all
    /// compares as a zero key-value, except that a VALUE compare then fails.
    fn compare(&self, c: &Compare) -> Result<bool> {
        let target = CompareTarget::try_from(c.target).ok();
        let key_range = KeyRange::new(&c.key, &c.range_end);
        let entries: Vec<Revision> = self.base.entries(&key_range, self.begin()).map(|(_, rev)| rev).collect();
        if entries.is_empty() {
            return Ok(target != Some(CompareTarget::Value) && compare_kv(c, target, &KeyValue::default()));
        }
        for rev in entries {
            if !compare_kv(c, target, &self.base.kv(rev)?) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// etcd `checkRequests`: runs `check` on every non-txn op of the chosen branches.
    fn check_chosen(
        &self,
        t: &TxnRequest,
        path: &[bool],
        check: &dyn Fn(&Self, &RequestOp) -> Result<()>,
    ) -> Result<usize> {
        let ops = if path[0] { &t.success } else { &t.failure };
        let mut rest = &path[1..];
        let mut nested_count = 0;
        for op in ops {
            if let Some(Op::RequestTxn(nested)) = &op.request {
                let n = self.check_chosen(nested, rest, check)?;
                nested_count += n + 1;
                rest = &rest[n + 1..];
                continue;
            }
            check(self, op)?;
        }
        Ok(nested_count)
    }

    /// etcd `checkRequestPut`, against the state before the txn.
    fn check_put(&self, op: &RequestOp) -> Result<()> {
        let Some(Op::RequestPut(p)) = &op.request else { return Ok(()) };
        if (p.ignore_value || p.ignore_lease) && self.base.state.index.get(&p.key, self.begin()).is_none() {
            return Err(Error::KeyNotFound);
        }
        if p.lease != 0 && !self.base.state.leases.contains(p.lease) {
            return Err(Error::LeaseNotFound);
        }
        Ok(())
    }

    /// etcd `checkRequestRange`: an explicit revision must be readable before the txn starts.
    /// (A negative revision is `Compacted` here, as in etcd, although a plain Range reads it as
    /// "current".)
    fn check_range(&self, op: &RequestOp) -> Result<()> {
        let Some(Op::RequestRange(r)) = &op.request else { return Ok(()) };
        let compact = self.base.state.compact;
        match r.revision {
            0 => Ok(()),
            rev if rev > self.begin() => Err(Error::FutureRevision),
            rev if rev < compact => Err(Error::Compacted { compact_revision: compact }),
            _ => Ok(()),
        }
    }

    /// etcd `applyTxn`: runs the chosen branch. Inner responses carry a header holding only
    /// the revision they observed, and nested txns an empty header, as etcd's do.
    fn exec(&mut self, t: &TxnRequest, path: &mut std::vec::IntoIter<bool>) -> Result<TxnResponse> {
        let succeeded = path.next().expect("compare_path yields one decision per txn on the path");
        let ops = if succeeded { &t.success } else { &t.failure };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let response = match &op.request {
                Some(Op::RequestRange(r)) => {
                    let revision = self.read_rev();
                    let mut resp = self.range(r)?;
                    resp.header = header(revision);
                    OpResponse::ResponseRange(resp)
                }
                Some(Op::RequestPut(p)) => {
                    let mut resp = self.put(p)?;
                    resp.header = header(self.write_rev());
                    OpResponse::ResponsePut(resp)
                }
                Some(Op::RequestDeleteRange(d)) => {
                    let mut resp = self.delete_range(d)?;
                    resp.header = header(self.read_rev());
                    OpResponse::ResponseDeleteRange(resp)
                }
                Some(Op::RequestTxn(nested)) => {
                    let mut resp = self.exec(nested, path)?;
                    resp.header = Some(ResponseHeader::default());
                    OpResponse::ResponseTxn(resp)
                }
                // Rejected by the static checks; kept total for safety.
                None => continue,
            };
            responses.push(ResponseOp { response: Some(response) });
        }
        Ok(TxnResponse { header: None, succeeded, responses })
    }
}

/// etcd `compareKV`: a missing or mismatched `target_union` compares against zero / empty.
fn compare_kv(c: &Compare, target: Option<CompareTarget>, kv: &KeyValue) -> bool {
    let union = c.target_union.as_ref();
    let int = |actual: i64, wanted: Option<i64>| actual.cmp(&wanted.unwrap_or(0));
    let ord = match target {
        Some(CompareTarget::Value) => {
            let wanted: &[u8] = match union {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value.as_slice().cmp(wanted)
        }
        Some(CompareTarget::Create) => {
            int(kv.create_revision, if let Some(TargetUnion::CreateRevision(v)) = union { Some(*v) } else { None })
        }
        Some(CompareTarget::Mod) => {
            int(kv.mod_revision, if let Some(TargetUnion::ModRevision(v)) = union { Some(*v) } else { None })
        }
        Some(CompareTarget::Version) => {
            int(kv.version, if let Some(TargetUnion::Version(v)) = union { Some(*v) } else { None })
        }
        Some(CompareTarget::Lease) => {
            int(kv.lease, if let Some(TargetUnion::Lease(v)) = union { Some(*v) } else { None })
        }
        None => Ordering::Equal,
    };
    match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => ord == Ordering::Equal,
        Ok(CompareResult::NotEqual) => ord != Ordering::Equal,
        Ok(CompareResult::Greater) => ord == Ordering::Greater,
        Ok(CompareResult::Less) => ord == Ordering::Less,
        // etcd: an unknown result is true.
        Err(_) => true,
    }
}
