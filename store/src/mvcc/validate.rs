//! Checks that depend only on the request, never on the store's state: etcd runs them in its
//! gRPC layer (`api/v3rpc/key.go`) before proposing. [`super::Mvcc::apply`] runs them again so a
//! raft command is judged the same way wherever it came from; the server can call [`validate`]
//! to reject a bad request without a raft round trip.

use std::collections::HashSet;

use crate::pb::etcdserverpb::request_op::Request as Op;
use crate::pb::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};
use crate::pb::storepb::internal_request::Request;
use crate::pb::storepb::InternalRequest;
use crate::{Error, Result};

use super::{MAX_LEASE_TTL, MAX_TXN_OPS};

/// Rejects a raft command that no state could make valid (empty keys, too many txn ops,
/// duplicate keys in a txn, a lease id 0 or a TTL too large).
pub fn validate(req: &InternalRequest) -> Result<()> {
    match &req.request {
        Some(Request::Put(p)) => check_put(p),
        Some(Request::DeleteRange(d)) => check_delete(d),
        Some(Request::Txn(t)) => check_txn(t),
        Some(Request::Compaction(_)) => Ok(()),
        Some(Request::LeaseGrant(g)) => {
            if g.id == 0 {
                // etcd picks the id before proposing; a command with id 0 is a caller bug.
                return Err(Error::InvalidArgument(
                    "lease id 0 must be replaced by a chosen id before proposing".into(),
                ));
            }
            if g.ttl > MAX_LEASE_TTL {
                return Err(Error::LeaseTtlTooLarge);
            }
            Ok(())
        }
        Some(Request::LeaseRevoke(_)) => Ok(()),
        None => Err(Error::InvalidArgument("empty raft command".into())),
    }
}

/// etcd `checkRangeRequest`.
pub(super) fn check_range(r: &RangeRequest) -> Result<()> {
    if r.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    Ok(())
}

/// etcd `checkPutRequest`.
pub(super) fn check_put(p: &PutRequest) -> Result<()> {
    if p.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if p.ignore_value && !p.value.is_empty() {
        return Err(Error::ValueProvided);
    }
    if p.ignore_lease && p.lease != 0 {
        return Err(Error::LeaseProvided);
    }
    Ok(())
}

/// etcd `checkDeleteRequest`.
pub(super) fn check_delete(d: &DeleteRangeRequest) -> Result<()> {
    if d.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    Ok(())
}

/// etcd's Txn checks: `checkTxnRequest` with the default `--max-txn-ops`, then `checkIntervals`
/// on each branch.
pub(super) fn check_txn(t: &TxnRequest) -> Result<()> {
    check_txn_ops(t, MAX_TXN_OPS)?;
    check_intervals(&t.success)?;
    check_intervals(&t.failure)?;
    Ok(())
}

/// etcd `checkTxnRequest`: no list (compares, success, failure) longer than `max_ops`, no empty
/// key anywhere, no empty op. A nested txn gets what its parent's longest list left over.
fn check_txn_ops(t: &TxnRequest, max_ops: usize) -> Result<()> {
    let opc = t.compare.len().max(t.success.len()).max(t.failure.len());
    if opc > max_ops {
        return Err(Error::TooManyOps);
    }
    if t.compare.iter().any(|c| c.key.is_empty()) {
        return Err(Error::EmptyKey);
    }
    for op in t.success.iter().chain(&t.failure) {
        check_op(op, max_ops - opc)?;
    }
    Ok(())
}

fn check_op(op: &RequestOp, max_ops: usize) -> Result<()> {
    match &op.request {
        Some(Op::RequestRange(r)) => check_range(r),
        Some(Op::RequestPut(p)) => check_put(p),
        Some(Op::RequestDeleteRange(d)) => check_delete(d),
        Some(Op::RequestTxn(t)) => check_txn_ops(t, max_ops),
        // etcd answers an empty op with "key not found".
        None => Err(Error::KeyNotFound),
    }
}

/// A deleted interval `[begin, end)`, where an empty `end` means "no upper bound" (etcd's
/// `StringAffineInterval`). A single-key delete is `[key, key + "\0")`.
#[derive(Debug, Clone)]
struct Interval {
    begin: Vec<u8>,
    end: Vec<u8>,
}

impl Interval {
    fn of(d: &DeleteRangeRequest) -> Self {
        let end = if d.range_end.is_empty() { [d.key.as_slice(), b"\0"].concat() } else { d.range_end.clone() };
        Self { begin: d.key.clone(), end }
    }

    /// Taken literally, as etcd does: a `range_end` of "\0" ("every key >= key" everywhere else)
    /// is an interval ending at "\0" here and covers no key, so etcd lets a txn put a key it
    /// also deletes with a `>= key` range. We reproduce that.
    fn covers(&self, key: &[u8]) -> bool {
        self.begin.as_slice() <= key && (self.end.is_empty() || key < self.end.as_slice())
    }
}

/// etcd `checkIntervals`: within one op list (recursively through nested txns), no key may be
/// put twice, and no key may be put if the list deletes it, except that the success and
/// failure branches of one nested txn may put the same key (only one of them runs).
///
/// Worked example (one list): `[put a, delete [a, c)]` → duplicate; `[txn{then: put a},
/// txn{then: put a}]` → duplicate; `[txn{then: put a, else: put a}]` → fine; `[txn{then: put a},
/// txn{then: delete a}]` → fine (etcd checks a nested txn's puts only against deletes seen
/// before it), which is how one revision can put and then delete the same key.
fn check_intervals(ops: &[RequestOp]) -> Result<(HashSet<Vec<u8>>, Vec<Interval>)> {
    // Deletes at this level first, so nested puts are checked against all of them.
    let mut dels: Vec<Interval> = ops
        .iter()
        .filter_map(|op| match &op.request {
            Some(Op::RequestDeleteRange(d)) => Some(Interval::of(d)),
            _ => None,
        })
        .collect();
    let deleted = |dels: &[Interval], k: &[u8]| dels.iter().any(|d| d.covers(k));

    let mut puts: HashSet<Vec<u8>> = HashSet::new();
    for op in ops {
        let Some(Op::RequestTxn(t)) = &op.request else { continue };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || deleted(&dels, k) {
                return Err(Error::DuplicateKey);
            }
        }
        puts.extend(puts_then.iter().cloned());
        for k in puts_else {
            if (puts.contains(&k) && !puts_then.contains(&k)) || deleted(&dels, &k) {
                return Err(Error::DuplicateKey);
            }
            puts.insert(k);
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }

    for op in ops {
        let Some(Op::RequestPut(p)) = &op.request else { continue };
        if puts.contains(&p.key) || deleted(&dels, &p.key) {
            return Err(Error::DuplicateKey);
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, dels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str) -> RequestOp {
        RequestOp { request: Some(Op::RequestPut(PutRequest { key: k.into(), ..Default::default() })) }
    }
    fn del(k: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(Op::RequestDeleteRange(DeleteRangeRequest {
                key: k.into(),
                range_end: end.into(),
                ..Default::default()
            })),
        }
    }
    fn txn(then: Vec<RequestOp>, els: Vec<RequestOp>) -> RequestOp {
        RequestOp { request: Some(Op::RequestTxn(TxnRequest { compare: vec![], success: then, failure: els })) }
    }
    fn check(ops: Vec<RequestOp>) -> Result<()> {
        check_txn(&TxnRequest { compare: vec![], success: ops, failure: vec![] })
    }

    #[test]
    fn duplicate_keys_as_etcd() {
        assert_eq!(check(vec![put("a"), put("b")]), Ok(()));
        assert_eq!(check(vec![put("a"), put("a")]), Err(Error::DuplicateKey));
        assert_eq!(check(vec![put("a"), del("a", "")]), Err(Error::DuplicateKey));
        assert_eq!(check(vec![del("a", "c"), put("b")]), Err(Error::DuplicateKey));
        assert_eq!(check(vec![del("a", "c"), put("c")]), Ok(()));
        assert_eq!(check(vec![del("a", "\0"), put("b")]), Ok(()), "etcd's literal \\0 interval");
        assert_eq!(check(vec![del("a", ""), del("a", "")]), Ok(()), "deleting twice is fine");
        assert_eq!(check(vec![txn(vec![put("a")], vec![]), txn(vec![put("a")], vec![])]), Err(Error::DuplicateKey));
        assert_eq!(check(vec![txn(vec![put("a")], vec![put("a")])]), Ok(()));
        assert_eq!(check(vec![txn(vec![put("a")], vec![]), put("a")]), Err(Error::DuplicateKey));
        assert_eq!(check(vec![del("a", ""), txn(vec![put("a")], vec![])]), Err(Error::DuplicateKey));
        assert_eq!(check(vec![txn(vec![del("a", "")], vec![]), txn(vec![put("a")], vec![])]), Err(Error::DuplicateKey));
        assert_eq!(check(vec![txn(vec![put("a")], vec![]), txn(vec![del("a", "")], vec![])]), Ok(()));
        assert_eq!(check(vec![txn(vec![del("a", "")], vec![]), put("a")]), Err(Error::DuplicateKey));
        // Branches are checked separately.
        let t = TxnRequest { compare: vec![], success: vec![put("a")], failure: vec![put("a")] };
        assert_eq!(check_txn(&t), Ok(()));
    }

    #[test]
    fn op_counts_and_empty_keys() {
        let many = |n: usize| (0..n).map(|i| put(&format!("k{i}"))).collect::<Vec<_>>();
        let nested = |n: usize| (0..n).map(|i| put(&format!("n{i}"))).collect::<Vec<_>>();
        assert_eq!(check(many(MAX_TXN_OPS)), Ok(()));
        assert_eq!(check(many(MAX_TXN_OPS + 1)), Err(Error::TooManyOps));
        // A nested txn may use only what the parent's longest list leaves.
        let mut ops = many(MAX_TXN_OPS - 10);
        ops.push(txn(nested(10), vec![]));
        assert_eq!(check(ops), Err(Error::TooManyOps), "parent uses 119 ops, nested gets 9");
        let mut ops = many(MAX_TXN_OPS - 11);
        ops.push(txn(nested(10), vec![]));
        assert_eq!(check(ops), Ok(()));
        assert_eq!(check(vec![put("")]), Err(Error::EmptyKey));
        assert_eq!(check(vec![RequestOp { request: None }]), Err(Error::KeyNotFound));
        let bad = PutRequest { key: b"k".to_vec(), value: b"v".to_vec(), ignore_value: true, ..Default::default() };
        assert_eq!(check_put(&bad), Err(Error::ValueProvided));
        let bad = PutRequest { key: b"k".to_vec(), lease: 1, ignore_lease: true, ..Default::default() };
        assert_eq!(check_put(&bad), Err(Error::LeaseProvided));
    }
}
