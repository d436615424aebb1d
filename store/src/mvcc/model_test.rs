//! Model-based property test: random sequences of puts, deletes, range deletes, flat txns,
//! compactions and historical ranges, run on the store and on a model that keeps the whole
//! key space of every revision in a `BTreeMap`. They must agree on every response, on when the
//! revision moves, and on which reads are `Compacted`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proptest::collection::vec;
use proptest::prelude::*;

use crate::engine::{MemoryEngine, WriteBatch};
use crate::pb::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::pb::etcdserverpb::request_op::Request as Op;
use crate::pb::etcdserverpb::response_op::Response as OpResponse;
use crate::pb::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use crate::pb::mvccpb::KeyValue;
use crate::pb::storepb::internal_request::Request;
use crate::pb::storepb::InternalRequest;
use crate::Error;

use super::{ApplyResponse, Mvcc};

/// Keys are "a".."e"; a range end of 6 stands for "\0" (every key >= start).
fn key(k: u8) -> Vec<u8> {
    vec![b'a' + k]
}

fn range_end(e: u8) -> Vec<u8> {
    if e == 6 {
        vec![0]
    } else {
        vec![b'a' + e]
    }
}

fn value(v: u8) -> Vec<u8> {
    vec![b'0' + v]
}

#[derive(Debug, Clone)]
enum TxnOp {
    Put(u8, u8),
    Delete(u8),
    Range(u8),
}

#[derive(Debug, Clone)]
struct Cmp {
    key: u8,
    target: CompareTarget,
    result: CompareResult,
    operand: u8,
}

#[derive(Debug, Clone)]
enum Action {
    Put(u8, u8),
    Delete(u8),
    DeleteRange(u8, u8),
    Txn(Vec<Cmp>, Vec<TxnOp>, Vec<TxnOp>),
    /// Compact at `n mod (current + 3) - 1`: anything from -1 to one past the current revision.
    Compact(i64),
    /// Range `[start, end)` at `n mod (current + 3) - 1`.
    RangeAt(u8, u8, i64),
}

fn txn_op() -> impl Strategy<Value = TxnOp> {
    prop_oneof![
        (0u8..5, 0u8..4).prop_map(|(k, v)| TxnOp::Put(k, v)),
        (0u8..5).prop_map(TxnOp::Delete),
        (0u8..5).prop_map(TxnOp::Range),
    ]
}

fn cmp() -> impl Strategy<Value = Cmp> {
    let targets = prop_oneof![
        Just(CompareTarget::Version),
        Just(CompareTarget::Create),
        Just(CompareTarget::Mod),
        Just(CompareTarget::Value)
    ];
    let results = prop_oneof![
        Just(CompareResult::Equal),
        Just(CompareResult::NotEqual),
        Just(CompareResult::Greater),
        Just(CompareResult::Less)
    ];
    (0u8..5, targets, results, 0u8..6).prop_map(|(key, target, result, operand)| Cmp { key, target, result, operand })
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => (0u8..5, 0u8..4).prop_map(|(k, v)| Action::Put(k, v)),
        1 => (0u8..5).prop_map(Action::Delete),
        1 => (0u8..5, 0u8..7).prop_map(|(k, e)| Action::DeleteRange(k, e)),
        3 => (vec(cmp(), 0..3), vec(txn_op(), 0..4), vec(txn_op(), 0..4)).prop_map(|(c, s, f)| Action::Txn(c, s, f)),
        1 => (0i64..1000).prop_map(Action::Compact),
        2 => (0u8..5, 0u8..7, 0i64..1000).prop_map(|(k, e, r)| Action::RangeAt(k, e, r)),
    ]
}

/// The model's key-value (no leases in this test).
#[derive(Debug, Clone, PartialEq)]
struct Kv {
    value: Vec<u8>,
    create: i64,
    modified: i64,
    version: i64,
}

type Space = BTreeMap<Vec<u8>, Kv>;

/// Every revision's whole key space: `revs[r - 1]` is the store at revision `r`.
struct Model {
    revs: Vec<Space>,
    compact: i64,
}

impl Model {
    fn current(&self) -> i64 {
        self.revs.len() as i64
    }

    fn now(&self) -> &Space {
        self.revs.last().expect("revision 1 always exists")
    }

    /// Keeps `next` as a new revision if it differs (every write here changes or adds a key).
    fn commit(&mut self, next: Space, changed: bool) {
        if changed {
            self.revs.push(next);
        }
    }

    fn read(&self, rev: i64) -> Result<&Space, Error> {
        if rev > self.current() {
            return Err(Error::FutureRevision);
        }
        let rev = if rev <= 0 { self.current() } else { rev };
        if rev < self.compact {
            return Err(Error::Compacted { compact_revision: self.compact });
        }
        Ok(&self.revs[rev as usize - 1])
    }
}

fn model_put(space: &mut Space, k: &[u8], v: Vec<u8>, rev: i64) {
    let kv = match space.get(k) {
        Some(prev) => Kv { value: v, create: prev.create, modified: rev, version: prev.version + 1 },
        None => Kv { value: v, create: rev, modified: rev, version: 1 },
    };
    space.insert(k.to_vec(), kv);
}

fn in_range(k: &[u8], start: &[u8], end: &[u8]) -> bool {
    k >= start && (end == [0] || k < end)
}

fn to_kvs<'a>(space: impl IntoIterator<Item = (&'a Vec<u8>, &'a Kv)>) -> Vec<KeyValue> {
    space
        .into_iter()
        .map(|(k, kv)| KeyValue {
            key: k.clone(),
            create_revision: kv.create,
            mod_revision: kv.modified,
            version: kv.version,
            value: kv.value.clone(),
            lease: 0,
        })
        .collect()
}

fn model_compare(space: &Space, c: &Cmp) -> bool {
    let Some(kv) = space.get(&key(c.key)) else {
        // A missing key: no value at all, every number 0.
        return c.target != CompareTarget::Value && ordering_holds(0i64.cmp(&i64::from(c.operand)), c.result);
    };
    let ord = match c.target {
        CompareTarget::Version => kv.version.cmp(&i64::from(c.operand)),
        CompareTarget::Create => kv.create.cmp(&i64::from(c.operand)),
        CompareTarget::Mod => kv.modified.cmp(&i64::from(c.operand)),
        CompareTarget::Value => kv.value.cmp(&value(c.operand)),
        CompareTarget::Lease => unreachable!(),
    };
    ordering_holds(ord, c.result)
}

fn ordering_holds(ord: std::cmp::Ordering, r: CompareResult) -> bool {
    use std::cmp::Ordering::*;
    match r {
        CompareResult::Equal => ord == Equal,
        CompareResult::NotEqual => ord != Equal,
        CompareResult::Greater => ord == Greater,
        CompareResult::Less => ord == Less,
    }
}

/// The flat form of etcd's duplicate-key rule: a branch may not put a key twice, nor put a key
/// it deletes.
fn has_duplicates(ops: &[TxnOp]) -> bool {
    let mut puts = BTreeSet::new();
    let dels: BTreeSet<u8> =
        ops.iter().filter_map(|op| if let TxnOp::Delete(k) = op { Some(*k) } else { None }).collect();
    ops.iter().any(|op| matches!(op, TxnOp::Put(k, _) if !puts.insert(*k) || dels.contains(k)))
}

fn to_request(c: &Cmp) -> Compare {
    let union = match c.target {
        CompareTarget::Version => TargetUnion::Version(i64::from(c.operand)),
        CompareTarget::Create => TargetUnion::CreateRevision(i64::from(c.operand)),
        CompareTarget::Mod => TargetUnion::ModRevision(i64::from(c.operand)),
        CompareTarget::Value => TargetUnion::Value(value(c.operand)),
        CompareTarget::Lease => TargetUnion::Lease(i64::from(c.operand)),
    };
    Compare {
        result: c.result as i32,
        target: c.target as i32,
        key: key(c.key),
        range_end: vec![],
        target_union: Some(union),
    }
}

fn to_ops(ops: &[TxnOp]) -> Vec<RequestOp> {
    ops.iter()
        .map(|op| RequestOp {
            request: Some(match op {
                TxnOp::Put(k, v) => Op::RequestPut(PutRequest { key: key(*k), value: value(*v), ..Default::default() }),
                TxnOp::Delete(k) => Op::RequestDeleteRange(DeleteRangeRequest { key: key(*k), ..Default::default() }),
                TxnOp::Range(k) => Op::RequestRange(RangeRequest { key: key(*k), ..Default::default() }),
            }),
        })
        .collect()
}

fn all_at(s: &Mvcc<MemoryEngine>, rev: i64) -> Result<Vec<KeyValue>, Error> {
    s.range(&RangeRequest { key: vec![0], range_end: vec![0], revision: rev, ..Default::default() }).map(|r| r.kvs)
}

fn run(actions: Vec<Action>) -> Result<(), TestCaseError> {
    let store = Mvcc::open(Arc::new(MemoryEngine::new())).unwrap();
    let mut model = Model { revs: vec![Space::new()], compact: 0 };
    let apply = |r: Request| store.apply(&InternalRequest { id: 0, request: Some(r) }, WriteBatch::default()).unwrap();

    for action in actions {
        let next_rev = model.current() + 1;
        match action {
            Action::Put(k, v) => {
                let applied = apply(Request::Put(PutRequest { key: key(k), value: value(v), ..Default::default() }));
                prop_assert!(applied.response.is_ok());
                let mut next = model.now().clone();
                model_put(&mut next, &key(k), value(v), next_rev);
                model.commit(next, true);
                prop_assert_eq!(applied.revision, model.current());
            }
            Action::Delete(k) => {
                let applied = apply(Request::DeleteRange(DeleteRangeRequest { key: key(k), ..Default::default() }));
                let mut next = model.now().clone();
                let existed = next.remove(&key(k)).is_some();
                model.commit(next, existed);
                let Ok(ApplyResponse::DeleteRange(d)) = applied.response else { panic!("{:?}", applied.response) };
                prop_assert_eq!(d.deleted, i64::from(existed));
                prop_assert_eq!(applied.revision, model.current());
            }
            Action::DeleteRange(k, e) => {
                let (start, end) = (key(k), range_end(e));
                let applied = apply(Request::DeleteRange(DeleteRangeRequest {
                    key: start.clone(),
                    range_end: end.clone(),
                    prev_kv: true,
                }));
                let mut next = model.now().clone();
                let doomed: Space = next
                    .iter()
                    .filter(|(k, _)| in_range(k, &start, &end))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                next.retain(|k, _| !in_range(k, &start, &end));
                model.commit(next, !doomed.is_empty());
                let Ok(ApplyResponse::DeleteRange(d)) = applied.response else { panic!("{:?}", applied.response) };
                prop_assert_eq!(d.deleted, doomed.len() as i64);
                prop_assert_eq!(d.prev_kvs, to_kvs(&doomed));
                prop_assert_eq!(applied.revision, model.current());
                prop_assert_eq!(applied.events.len(), doomed.len());
            }
            Action::Txn(cmps, success, failure) => {
                let req = TxnRequest {
                    compare: cmps.iter().map(to_request).collect(),
                    success: to_ops(&success),
                    failure: to_ops(&failure),
                };
                let applied = apply(Request::Txn(req));
                if has_duplicates(&success) || has_duplicates(&failure) {
                    prop_assert_eq!(applied.response, Err(Error::DuplicateKey));
                    prop_assert_eq!(applied.revision, model.current());
                    continue;
                }
                let succeeded = cmps.iter().all(|c| model_compare(model.now(), c));
                let ops = if succeeded { &success } else { &failure };
                let mut next = model.now().clone();
                let mut changed = false;
                let mut reads = Vec::new();
                for op in ops {
                    match op {
                        TxnOp::Put(k, v) => {
                            model_put(&mut next, &key(*k), value(*v), next_rev);
                            changed = true;
                        }
                        TxnOp::Delete(k) => changed |= next.remove(&key(*k)).is_some(),
                        TxnOp::Range(k) => reads.push(to_kvs(next.get_key_value(&key(*k)))),
                    }
                }
                model.commit(next, changed);
                let Ok(ApplyResponse::Txn(resp)) = applied.response else { panic!("{:?}", applied.response) };
                prop_assert_eq!(resp.succeeded, succeeded);
                let got: Vec<Vec<KeyValue>> = resp
                    .responses
                    .iter()
                    .filter_map(|r| match &r.response {
                        Some(OpResponse::ResponseRange(rr)) => Some(rr.kvs.clone()),
                        _ => None,
                    })
                    .collect();
                prop_assert_eq!(got, reads, "ranges inside the txn read its own writes");
                prop_assert_eq!(applied.revision, model.current());
            }
            Action::Compact(n) => {
                let rev = n % (model.current() + 3) - 1;
                let applied = apply(Request::Compaction(CompactionRequest { revision: rev, physical: false }));
                let expected = if rev <= model.compact {
                    Err(Error::Compacted { compact_revision: model.compact })
                } else if rev > model.current() {
                    Err(Error::FutureRevision)
                } else {
                    model.compact = rev;
                    Ok(())
                };
                prop_assert_eq!(applied.response.map(|_| ()), expected);
                prop_assert_eq!(applied.revision, model.current());
                prop_assert_eq!(store.compact_revision(), model.compact);
            }
            Action::RangeAt(k, e, n) => {
                let rev = n % (model.current() + 3) - 1;
                let (start, end) = (key(k), range_end(e));
                let got = store
                    .range(&RangeRequest {
                        key: start.clone(),
                        range_end: end.clone(),
                        revision: rev,
                        ..Default::default()
                    })
                    .map(|r| r.kvs);
                let want = model.read(rev).map(|space| to_kvs(space.iter().filter(|(k, _)| in_range(k, &start, &end))));
                prop_assert_eq!(got, want, "range [{:?}, {:?}) at {}", start, end, rev);
            }
        }
        prop_assert_eq!(store.current_revision(), model.current());
    }

    // Every revision reads as the model says, or is Compacted exactly below the compaction.
    let reopened = Mvcc::open(store.engine().clone()).unwrap();
    for rev in 1..=model.current() + 1 {
        let want = model.read(rev).map(to_kvs);
        prop_assert_eq!(all_at(&store, rev), want.clone(), "revision {}", rev);
        prop_assert_eq!(all_at(&reopened, rev), want, "revision {} after reopen", rev);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn store_agrees_with_a_btreemap_history(actions in vec(action(), 1..40)) {
        run(actions)?;
    }
}
