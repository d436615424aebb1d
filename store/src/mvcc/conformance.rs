//! The MVCC conformance suite: every case is written once, generic over the engine, and run
//! against both [`MemoryEngine`] and [`RocksEngine`] (see the `conformance!` list at the end).

use std::sync::Arc;

use crate::engine::{Engine, MemoryEngine, RocksEngine, Scan, WriteBatch};
use crate::keys::{revision_key, Cf};
use crate::pb::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::pb::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::pb::etcdserverpb::request_op::Request as Op;
use crate::pb::etcdserverpb::response_op::Response as OpResponse;
use crate::pb::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, DeleteRangeResponse, LeaseGrantRequest, LeaseRevokeRequest,
    PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseHeader, TxnRequest, TxnResponse,
};
use crate::pb::mvccpb::event::EventType;
use crate::pb::mvccpb::{Event, KeyValue};
use crate::pb::storepb::internal_request::Request;
use crate::pb::storepb::InternalRequest;
use crate::Error;

use super::{Applied, ApplyResponse, LeaseInfo, Mvcc, Revision, MAX_LEASE_TTL, MAX_TXN_OPS};

/// Makes fresh, empty engines for one case.
type NewEngine<'a, E> = &'a mut dyn FnMut() -> Arc<E>;

// ---- requests -------------------------------------------------------------------------------

fn cmd(r: Request) -> InternalRequest {
    InternalRequest { id: 0, request: Some(r) }
}

fn put_req(k: &str, v: &str) -> PutRequest {
    PutRequest { key: k.into(), value: v.into(), ..Default::default() }
}

fn del_req(k: &str, end: &str) -> DeleteRangeRequest {
    DeleteRangeRequest { key: k.into(), range_end: end.into(), prev_kv: false }
}

fn range_req(k: &str, end: &str) -> RangeRequest {
    RangeRequest { key: k.into(), range_end: end.into(), ..Default::default() }
}

fn op_put(k: &str, v: &str) -> RequestOp {
    RequestOp { request: Some(Op::RequestPut(put_req(k, v))) }
}

fn op_del(k: &str, end: &str) -> RequestOp {
    RequestOp { request: Some(Op::RequestDeleteRange(del_req(k, end))) }
}

fn op_range(r: RangeRequest) -> RequestOp {
    RequestOp { request: Some(Op::RequestRange(r)) }
}

fn op_txn(t: TxnRequest) -> RequestOp {
    RequestOp { request: Some(Op::RequestTxn(t)) }
}

fn cmp(k: &str, target: CompareTarget, result: CompareResult, union: TargetUnion) -> Compare {
    Compare {
        result: result as i32,
        target: target as i32,
        key: k.into(),
        range_end: vec![],
        target_union: Some(union),
    }
}

fn kv(k: &str, v: &str, create: i64, modr: i64, version: i64, lease: i64) -> KeyValue {
    KeyValue { key: k.into(), create_revision: create, mod_revision: modr, version, value: v.into(), lease }
}

fn hdr(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader { revision, ..Default::default() })
}

// ---- driving a store ------------------------------------------------------------------------

fn apply<E: Engine>(s: &Mvcc<E>, r: Request) -> Applied {
    s.apply(&cmd(r), WriteBatch::default()).expect("engine failure")
}

fn put<E: Engine>(s: &Mvcc<E>, k: &str, v: &str) -> PutResponse {
    match apply(s, Request::Put(put_req(k, v))).response {
        Ok(ApplyResponse::Put(r)) => r,
        other => panic!("put {k}: {other:?}"),
    }
}

fn put_with<E: Engine>(s: &Mvcc<E>, p: PutRequest) -> Result<PutResponse, Error> {
    apply(s, Request::Put(p)).response.map(|r| match r {
        ApplyResponse::Put(r) => r,
        other => panic!("{other:?}"),
    })
}

fn del<E: Engine>(s: &Mvcc<E>, k: &str, end: &str) -> DeleteRangeResponse {
    match apply(s, Request::DeleteRange(del_req(k, end))).response {
        Ok(ApplyResponse::DeleteRange(r)) => r,
        other => panic!("delete {k}: {other:?}"),
    }
}

fn txn<E: Engine>(s: &Mvcc<E>, t: TxnRequest) -> Result<TxnResponse, Error> {
    apply(s, Request::Txn(t)).response.map(|r| match r {
        ApplyResponse::Txn(r) => r,
        other => panic!("{other:?}"),
    })
}

fn compact<E: Engine>(s: &Mvcc<E>, rev: i64) -> Result<(), Error> {
    apply(s, Request::Compaction(CompactionRequest { revision: rev, physical: false })).response.map(|_| ())
}

fn grant<E: Engine>(s: &Mvcc<E>, id: i64, ttl: i64) -> Result<(), Error> {
    apply(s, Request::LeaseGrant(LeaseGrantRequest { ttl, id })).response.map(|_| ())
}

fn revoke<E: Engine>(s: &Mvcc<E>, id: i64) -> Applied {
    apply(s, Request::LeaseRevoke(LeaseRevokeRequest { id }))
}

fn get_at<E: Engine>(s: &Mvcc<E>, k: &str, rev: i64) -> Option<KeyValue> {
    let r = s.range(&RangeRequest { revision: rev, ..range_req(k, "") }).unwrap();
    assert!(r.kvs.len() <= 1);
    r.kvs.into_iter().next()
}

fn get<E: Engine>(s: &Mvcc<E>, k: &str) -> Option<KeyValue> {
    get_at(s, k, 0)
}

fn keys(r: &RangeResponse) -> Vec<String> {
    r.kvs.iter().map(|kv| String::from_utf8(kv.key.clone()).unwrap()).collect()
}

fn all_at<E: Engine>(s: &Mvcc<E>, rev: i64) -> Result<RangeResponse, Error> {
    s.range(&RangeRequest { revision: rev, ..range_req("\0", "\0") })
}

/// Every record in `Cf::Kv`, in revision order.
fn records<E: Engine>(s: &Mvcc<E>) -> Vec<Revision> {
    let mut out = Vec::new();
    s.engine()
        .scan(Cf::Kv, &[], None, &mut |k, _| {
            out.push(crate::keys::parse_revision_key(k).unwrap());
            Scan::Continue
        })
        .unwrap();
    out
}

fn put_event(kv: KeyValue, prev: Option<KeyValue>) -> Event {
    Event { r#type: EventType::Put as i32, kv: Some(kv), prev_kv: prev }
}

fn delete_event(k: &str, rev: i64, prev: Option<KeyValue>) -> Event {
    Event {
        r#type: EventType::Delete as i32,
        kv: Some(KeyValue { key: k.into(), mod_revision: rev, ..Default::default() }),
        prev_kv: prev,
    }
}

// ---- cases ----------------------------------------------------------------------------------

fn put_get_revisions_versions<E: Engine>(new: NewEngine<E>) {
    let s = Mvcc::open(new()).unwrap();
    assert_eq!(s.current_revision(), 1, "an empty store is at revision 1, as etcd");
    assert_eq!(s.compact_revision(), 0);
    assert_eq!(get(&s, "a"), None);

    let applied = apply(&s, Request::Put(put_req("a", "1")));
    assert_eq!(applied.revision, 2);
    assert_eq!(applied.response, Ok(ApplyResponse::Put(PutResponse::default())));
    assert_eq!(applied.events, vec![put_event(kv("a", "1", 2, 2, 1, 0), None)]);
    assert_eq!(get(&s, "a"), Some(kv("a", "1", 2, 2, 1, 0)));

    let applied = apply(&s, Request::Put(PutRequest { prev_kv: true, ..put_req("a", "2") }));
    assert_eq!(applied.revision, 3);
    assert_eq!(
        applied.response,
        Ok(ApplyResponse::Put(PutResponse { header: None, prev_kv: Some(kv("a", "1", 2, 2, 1, 0)) }))
    );
    assert_eq!(applied.events, vec![put_event(kv("a", "2", 2, 3, 2, 0), Some(kv("a", "1", 2, 2, 1, 0)))]);
    put(&s, "b", "x");
    assert_eq!(s.current_revision(), 4);

    // History reads.
    assert_eq!(get_at(&s, "a", 1), None);
    assert_eq!(get_at(&s, "a", 2), Some(kv("a", "1", 2, 2, 1, 0)));
    assert_eq!(get_at(&s, "a", 3), Some(kv("a", "2", 2, 3, 2, 0)));
    assert_eq!(get_at(&s, "b", 3), None);
    assert_eq!(get_at(&s, "b", -7), Some(kv("b", "x", 4, 4, 1, 0)), "a negative revision reads the current one");
    assert_eq!(s.range(&RangeRequest { revision: 5, ..range_req("a", "") }), Err(Error::FutureRevision));
    assert_eq!(s.range(&range_req("", "")), Err(Error::EmptyKey));

    // An empty key is refused and changes nothing.
    let applied = apply(&s, Request::Put(put_req("", "v")));
    assert_eq!((applied.response, applied.revision), (Err(Error::EmptyKey), 4));
    assert!(applied.events.is_empty());
    // A put of an unchanged value is still a write.
    put(&s, "b", "x");
    assert_eq!(get(&s, "b"), Some(kv("b", "x", 4, 5, 2, 0)));
}

fn tombstones_and_generations<E: Engine>(new: NewEngine<E>) {
    let s = Mvcc::open(new()).unwrap();
    put(&s, "a", "1"); // 2
    put(&s, "a", "2"); // 3
    let applied = apply(&s, Request::DeleteRange(DeleteRangeRequest { prev_kv: true, ..del_req("a", "") })); // 4
    assert_eq!(applied.revision, 4);
    assert_eq!(
        applied.response,
        Ok(ApplyResponse::DeleteRange(DeleteRangeResponse {
            header: None,
            deleted: 1,
            prev_kvs: vec![kv("a", "2", 2, 3, 2, 0)]
        }))
    );
    assert_eq!(applied.events, vec![delete_event("a", 4, Some(kv("a", "2", 2, 3, 2, 0)))]);
    assert_eq!(get(&s, "a"), None);

    // Deleting nothing is not a write.
    let applied = apply(&s, Request::DeleteRange(del_req("a", "")));
    assert_eq!(applied.revision, 4);
    assert_eq!(applied.response, Ok(ApplyResponse::DeleteRange(DeleteRangeResponse::default())));
    assert!(applied.events.is_empty());
    assert_eq!(del(&s, "zz", "zzz").deleted, 0);
    assert_eq!(s.current_revision(), 4);

    // Re-creation starts a new generation: version 1, new create_revision.
    put(&s, "a", "3"); // 5
    assert_eq!(get(&s, "a"), Some(kv("a", "3", 5, 5, 1, 0)));
    assert_eq!(get_at(&s, "a", 3), Some(kv("a", "2", 2, 3, 2, 0)));
    assert_eq!(get_at(&s, "a", 4), None);

    // A range delete tombstones every live key in one revision, in key order.
    put(&s, "b", "1"); // 6
    put(&s, "c", "1"); // 7
    let applied = apply(&s, Request::DeleteRange(del_req("a", "c"))); // 8
    assert_eq!(applied.revision, 8);
    assert_eq!(
        applied.events,
        vec![
            delete_event("a", 8, Some(kv("a", "3", 5, 5, 1, 0))),
            delete_event("b", 8, Some(kv("b", "1", 6, 6, 1, 0)))
        ]
    );
    assert_eq!(keys(&all_at(&s, 0).unwrap()), vec!["c"]);
    assert_eq!(records(&s).iter().filter(|r| r.main == 8).map(|r| r.sub).collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!(apply(&s, Request::DeleteRange(del_req("", ""))).response, Err(Error::EmptyKey));
}

fn ranges<E: Engine>(new: NewEngine<E>) {
    let s = Mvcc::open(new()).unwrap();
    // rev: a=2 b=3 ab=4 c=5 d=6, then b again at 7 (version 2), e at 8.
    for (k, v) in [("a", "5"), ("b", "3"), ("ab", "4"), ("c", "1"), ("d", "2"), ("b", "9"), ("e", "0")] {
        put(&s, k, v);
    }
    let r = |req: RangeRequest| s.range(&req).unwrap();

    assert_eq!(keys(&r(range_req("a", ""))), vec!["a"]);
    assert_eq!(keys(&r(range_req("a", "b"))), vec!["a", "ab"], "prefix a");
    assert_eq!(keys(&r(range_req("b", "\0"))), vec!["b", "c", "d", "e"], "from b");
    assert_eq!(keys(&r(range_req("\0", "\0"))), vec!["a", "ab", "b", "c", "d", "e"], "all");
    assert!(r(range_req("c", "a")).kvs.is_empty(), "inverted range");
    assert_eq!(r(range_req("zz", "")).count, 0);

    let all = RangeRequest { ..range_req("\0", "\0") };
    let limited = r(RangeRequest { limit: 2, ..all.clone() });
    assert_eq!((keys(&limited), limited.more, limited.count), (vec!["a".into(), "ab".into()], true, 6));
    let exact = r(RangeRequest { limit: 6, ..all.clone() });
    assert_eq!((exact.kvs.len(), exact.more, exact.count), (6, false, 6));

    let counted = r(RangeRequest { count_only: true, limit: 1, ..all.clone() });
    assert_eq!((counted.kvs.len(), counted.more, counted.count), (0, false, 6));

    let keys_only = r(RangeRequest { keys_only: true, ..range_req("b", "") });
    assert_eq!(keys_only.kvs, vec![KeyValue { value: vec![], ..kv("b", "", 3, 7, 2, 0) }]);

    // Sorting.
    let sorted = |order: SortOrder, target: SortTarget| {
        keys(&r(RangeRequest { sort_order: order as i32, sort_target: target as i32, ..all.clone() }))
    };
    let ks = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(sorted(SortOrder::None, SortTarget::Key), ks(&["a", "ab", "b", "c", "d", "e"]));
    assert_eq!(sorted(SortOrder::Descend, SortTarget::Key), ks(&["e", "d", "c", "b", "ab", "a"]));
    assert_eq!(sorted(SortOrder::Ascend, SortTarget::Value), ks(&["e", "c", "d", "ab", "a", "b"]));
    assert_eq!(
        sorted(SortOrder::None, SortTarget::Value),
        ks(&["e", "c", "d", "ab", "a", "b"]),
        "NONE + VALUE ascends"
    );
    assert_eq!(sorted(SortOrder::Descend, SortTarget::Value), ks(&["b", "a", "ab", "d", "c", "e"]));
    assert_eq!(sorted(SortOrder::Descend, SortTarget::Mod), ks(&["e", "b", "d", "c", "ab", "a"]));
    assert_eq!(sorted(SortOrder::Ascend, SortTarget::Create), ks(&["a", "b", "ab", "c", "d", "e"]));
    assert_eq!(sorted(SortOrder::Descend, SortTarget::Version)[0], "b");
    assert_eq!(sorted(SortOrder::Ascend, SortTarget::Version).last().unwrap(), "b");

    // The limit applies after sorting.
    let top = r(RangeRequest {
        limit: 2,
        sort_order: SortOrder::Descend as i32,
        sort_target: SortTarget::Mod as i32,
        ..all.clone()
    });
    assert_eq!((keys(&top), top.more, top.count), (ks(&["e", "b"]), true, 6));

    // Revision filters (0 = unbounded); count ignores them, as etcd's does.
    let f = r(RangeRequest { min_mod_revision: 5, max_mod_revision: 7, ..all.clone() });
    assert_eq!((keys(&f), f.count), (ks(&["b", "c", "d"]), 6));
    let f = r(RangeRequest { min_create_revision: 3, max_create_revision: 4, ..all.clone() });
    assert_eq!(keys(&f), ks(&["ab", "b"]));
    let f = r(RangeRequest { max_create_revision: 2, ..all.clone() });
    assert_eq!(keys(&f), ks(&["a"]));
    let f = r(RangeRequest { min_mod_revision: 7, limit: 1, ..all.clone() });
    assert_eq!((keys(&f), f.more), (ks(&["b"]), true));

    // Range at an older revision.
    let old = r(RangeRequest { revision: 4, ..all.clone() });
    assert_eq!(keys(&old), ks(&["a", "ab", "b"]));
    assert_eq!(old.kvs[2], kv("b", "3", 3, 3, 1, 0));
}

fn txn_compares<E: Engine>(new: NewEngine<E>) {
    use CompareResult::*;
    use CompareTarget as T;
    let s = Mvcc::open(new()).unwrap();
    put(&s, "a", "m"); // 2
    put(&s, "a", "m"); // 3: a version 2, create 2, mod 3
    grant(&s, 7, 60).unwrap();
    put_with(&s, PutRequest { lease: 7, ..put_req("b", "x") }).unwrap(); // 4: b lease 7

    let check = |c: Compare| -> bool {
        let t = TxnRequest { compare: vec![c], success: vec![], failure: vec![] };
        txn(&s, t).unwrap().succeeded
    };
    let cases: Vec<(Compare, bool)> = vec![
        (cmp("a", T::Version, Equal, TargetUnion::Version(2)), true),
        (cmp("a", T::Version, NotEqual, TargetUnion::Version(2)), false),
        (cmp("a", T::Version, Greater, TargetUnion::Version(1)), true),
        (cmp("a", T::Version, Less, TargetUnion::Version(2)), false),
        (cmp("a", T::Create, Equal, TargetUnion::CreateRevision(2)), true),
        (cmp("a", T::Create, Greater, TargetUnion::CreateRevision(2)), false),
        (cmp("a", T::Mod, Equal, TargetUnion::ModRevision(3)), true),
        (cmp("a", T::Mod, Less, TargetUnion::ModRevision(4)), true),
        (cmp("a", T::Value, Equal, TargetUnion::Value(b"m".to_vec())), true),
        (cmp("a", T::Value, Greater, TargetUnion::Value(b"a".to_vec())), true),
        (cmp("a", T::Value, Less, TargetUnion::Value(b"a".to_vec())), false),
        (cmp("a", T::Value, NotEqual, TargetUnion::Value(b"n".to_vec())), true),
        (cmp("b", T::Lease, Equal, TargetUnion::Lease(7)), true),
        (cmp("a", T::Lease, Equal, TargetUnion::Lease(0)), true),
        (cmp("b", T::Lease, Less, TargetUnion::Lease(7)), false),
        // A missing key has version/create/mod/lease 0...
        (cmp("zz", T::Version, Equal, TargetUnion::Version(0)), true),
        (cmp("zz", T::Create, Equal, TargetUnion::CreateRevision(0)), true),
        (cmp("zz", T::Mod, Less, TargetUnion::ModRevision(1)), true),
        (cmp("zz", T::Lease, Equal, TargetUnion::Lease(0)), true),
        // ...but no value: every VALUE compare on it is false, even NOT_EQUAL.
        (cmp("zz", T::Value, Equal, TargetUnion::Value(vec![])), false),
        (cmp("zz", T::Value, NotEqual, TargetUnion::Value(b"x".to_vec())), false),
        // A mismatched target_union compares against zero / empty (etcd compareKV).
        (cmp("a", T::Version, Greater, TargetUnion::ModRevision(100)), true),
    ];
    for (i, (c, want)) in cases.into_iter().enumerate() {
        assert_eq!(check(c.clone()), want, "case {i}: {c:?}");
    }

    // A compare over a range: every key in it must satisfy it.
    let ranged = |c: Compare, end: &str| Compare { range_end: end.into(), ..c };
    assert!(check(ranged(cmp("a", T::Create, Greater, TargetUnion::CreateRevision(1)), "c")));
    assert!(!check(ranged(cmp("a", T::Create, Greater, TargetUnion::CreateRevision(2)), "c")), "a has create 2");
    assert!(check(ranged(cmp("a", T::Mod, Greater, TargetUnion::ModRevision(0)), "\0")));
    assert!(check(ranged(cmp("x", T::Version, Equal, TargetUnion::Version(0)), "z")), "empty range = zero kv");
    assert!(!check(ranged(cmp("x", T::Value, Equal, TargetUnion::Value(vec![])), "z")), "empty range VALUE");

    // All compares must hold; none of these txns wrote anything.
    let two = TxnRequest {
        compare: vec![
            cmp("a", T::Version, Equal, TargetUnion::Version(2)),
            cmp("b", T::Version, Equal, TargetUnion::Version(5)),
        ],
        success: vec![op_put("s", "1")],
        failure: vec![op_put("f", "1")],
    };
    let resp = txn(&s, two).unwrap();
    assert!(!resp.succeeded);
    assert_eq!(get(&s, "f").unwrap().mod_revision, 5);
    assert_eq!(get(&s, "s"), None);
    // An empty compare list succeeds.
    assert!(txn(&s, TxnRequest { compare: vec![], success: vec![], failure: vec![] }).unwrap().succeeded);
    assert_eq!(s.current_revision(), 5, "read-only txns do not bump the revision");
}

fn txn_nested_and_read_your_writes<E: Engine>(new: NewEngine<E>) {
    use CompareResult::*;
    use CompareTarget as T;
    let s = Mvcc::open(new()).unwrap();
    put(&s, "a", "1"); // 2
    put(&s, "gone", "1"); // 3

    // Outer txn at revision 4: put b, read b back, nested txn whose compare sees the state
    // *before* the outer txn (b missing), delete "gone", read a range after all of it.
    let nested = TxnRequest {
        compare: vec![cmp("b", T::Version, Equal, TargetUnion::Version(0))],
        success: vec![op_put("c", "from-nested"), op_range(range_req("b", ""))],
        failure: vec![op_put("c", "wrong-branch")],
    };
    let t = TxnRequest {
        compare: vec![cmp("a", T::Value, Equal, TargetUnion::Value(b"1".to_vec()))],
        success: vec![
            op_range(range_req("b", "")),
            op_put("b", "2"),
            op_range(range_req("b", "")),
            op_txn(nested),
            op_del("gone", ""),
            op_range(range_req("\0", "\0")),
            op_range(RangeRequest { revision: 3, ..range_req("\0", "\0") }),
        ],
        failure: vec![],
    };
    let applied = apply(&s, Request::Txn(t));
    assert_eq!(applied.revision, 4);
    let Ok(ApplyResponse::Txn(resp)) = applied.response else { panic!("{:?}", applied.response) };
    assert!(resp.succeeded);
    assert_eq!(resp.header, None, "the server fills the top-level header");
    let rr = |i: usize| match &resp.responses[i].response {
        Some(OpResponse::ResponseRange(r)) => r.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!((rr(0).kvs.len(), rr(0).header), (0, hdr(3)), "before any write: revision 3");
    let Some(OpResponse::ResponsePut(p)) = &resp.responses[1].response else { panic!() };
    assert_eq!(p.header, hdr(4));
    assert_eq!((rr(2).kvs.clone(), rr(2).header), (vec![kv("b", "2", 4, 4, 1, 0)], hdr(4)), "reads its own write");
    let Some(OpResponse::ResponseTxn(n)) = &resp.responses[3].response else { panic!() };
    assert!(n.succeeded, "nested compares read the state before the txn");
    assert_eq!(n.header, Some(ResponseHeader::default()), "nested txn headers are empty, as etcd's");
    let Some(OpResponse::ResponseRange(nr)) = &n.responses[1].response else { panic!() };
    assert_eq!(nr.kvs, vec![kv("b", "2", 4, 4, 1, 0)]);
    let Some(OpResponse::ResponseDeleteRange(d)) = &resp.responses[4].response else { panic!() };
    assert_eq!((d.deleted, d.header), (1, hdr(4)));
    assert_eq!(keys(&rr(5)), vec!["a", "b", "c"]);
    assert_eq!(keys(&rr(6)), vec!["a", "gone"], "an explicit revision reads committed history");

    // One revision, subs in op order.
    assert_eq!(
        applied.events,
        vec![
            put_event(kv("b", "2", 4, 4, 1, 0), None),
            put_event(kv("c", "from-nested", 4, 4, 1, 0), None),
            delete_event("gone", 4, Some(kv("gone", "1", 3, 3, 1, 0))),
        ]
    );
    assert_eq!(records(&s).iter().filter(|r| r.main == 4).map(|r| r.sub).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert_eq!(get(&s, "c").unwrap().value, b"from-nested");

    // Put then delete of one key in one revision (legal through nested txns, as in etcd).
    let t = TxnRequest {
        compare: vec![],
        success: vec![
            op_txn(TxnRequest { compare: vec![], success: vec![op_put("tmp", "x")], failure: vec![] }),
            op_txn(TxnRequest { compare: vec![], success: vec![op_del("tmp", "")], failure: vec![] }),
        ],
        failure: vec![],
    };
    let applied = apply(&s, Request::Txn(t));
    assert_eq!(applied.revision, 5);
    assert_eq!(applied.events, vec![put_event(kv("tmp", "x", 5, 5, 1, 0), None), delete_event("tmp", 5, None)]);
    assert_eq!(get(&s, "tmp"), None);
    assert_eq!(get_at(&s, "tmp", 4), None);

    // A txn whose chosen branch changes nothing does not bump.
    let t = TxnRequest {
        compare: vec![],
        success: vec![op_del("nothing", ""), op_range(range_req("a", ""))],
        failure: vec![],
    };
    let resp = txn(&s, t).unwrap();
    let Some(OpResponse::ResponseDeleteRange(d)) = &resp.responses[0].response else { panic!() };
    assert_eq!((d.deleted, d.header), (0, hdr(5)));
    assert_eq!(s.current_revision(), 5);

    // read_txn serves read-only txns without raft, and refuses writes.
    let ro = TxnRequest { compare: vec![], success: vec![op_range(range_req("a", ""))], failure: vec![] };
    let resp = s.read_txn(&ro).unwrap();
    let Some(OpResponse::ResponseRange(r)) = &resp.responses[0].response else { panic!() };
    assert_eq!((keys(r), r.header), (vec!["a".to_string()], hdr(5)));
    let rw = TxnRequest { compare: vec![], success: vec![op_put("a", "no")], failure: vec![] };
    assert!(matches!(s.read_txn(&rw), Err(Error::InvalidArgument(_))));
    assert_eq!(get(&s, "a").unwrap().value, b"1");
}

fn txn_errors_change_nothing<E: Engine>(new: NewEngine<E>) {
    let s = Mvcc::open(new()).unwrap();
    put(&s, "a", "1"); // 2
    put(&s, "a", "2"); // 3
    put(&s, "b", "1"); // 4
    compact(&s, 3).unwrap();
    let before = records(&s);
    let t = |success: Vec<RequestOp>| TxnRequest { compare: vec![], success, failure: vec![] };

    let cases: Vec<(TxnRequest, Error)> = vec![
        (t(vec![op_put("x", "1"), op_put("x", "2")]), Error::DuplicateKey),
        (t(vec![op_put("b", "1"), op_del("a", "c")]), Error::DuplicateKey),
        (
            TxnRequest { compare: vec![], success: vec![], failure: vec![op_put("x", "1"), op_put("x", "1")] },
            Error::DuplicateKey,
        ),
        (t((0..=MAX_TXN_OPS).map(|i| op_put(&format!("k{i}"), "v")).collect()), Error::TooManyOps),
        (
            t(vec![op_put("x", "1"), op_range(RangeRequest { revision: 2, ..range_req("a", "") })]),
            Error::Compacted { compact_revision: 3 },
        ),
        (
            t(vec![op_put("x", "1"), op_range(RangeRequest { revision: 5, ..range_req("a", "") })]),
            Error::FutureRevision,
        ),
        (
            t(vec![op_put("x", "1"), op_range(RangeRequest { revision: -1, ..range_req("a", "") })]),
            Error::Compacted { compact_revision: 3 },
        ),
        (
            t(vec![
                op_put("x", "1"),
                RequestOp { request: Some(Op::RequestPut(PutRequest { ignore_value: true, ..put_req("nope", "") })) },
            ]),
            Error::KeyNotFound,
        ),
        (
            t(vec![
                op_put("x", "1"),
                RequestOp { request: Some(Op::RequestPut(PutRequest { lease: 99, ..put_req("y", "") })) },
            ]),
            Error::LeaseNotFound,
        ),
        (t(vec![op_put("x", "1"), op_put("", "1")]), Error::EmptyKey),
        (t(vec![op_put("x", "1"), RequestOp { request: None }]), Error::KeyNotFound),
        (TxnRequest { compare: vec![Compare::default()], success: vec![], failure: vec![] }, Error::EmptyKey),
    ];
    for (i, (req, err)) in cases.into_iter().enumerate() {
        let applied = apply(&s, Request::Txn(req));
        assert_eq!(applied.response, Err(err), "case {i}");
        assert_eq!(applied.revision, 4, "case {i}");
        assert!(applied.events.is_empty());
    }
    // A range at the compacted revision itself is fine; only the failing branch is checked.
    let ok = TxnRequest {
        compare: vec![],
        success: vec![op_range(RangeRequest { revision: 3, ..range_req("a", "") })],
        failure: vec![op_range(RangeRequest { revision: 2, ..range_req("a", "") })],
    };
    let resp = txn(&s, ok).unwrap();
    let Some(OpResponse::ResponseRange(r)) = &resp.responses[0].response else { panic!() };
    assert_eq!(r.kvs, vec![kv("a", "2", 2, 3, 2, 0)]);
    assert_eq!(records(&s), before);
    assert_eq!(s.current_revision(), 4);
}

fn put_options<E: Engine>(new: NewEngine<E>) {
    let s = Mvcc::open(new()).unwrap();
    grant(&s, 1, 60).unwrap();
    grant(&s, 2, 60).unwrap();
    assert_eq!(
        put_with(&s, PutRequest { ignore_value: true, ..put_req("k", "") }),
        Err(Error::KeyNotFound),
        "ignore_value needs an existing key"
    );
    assert_eq!(put_with(&s, PutRequest { ignore_lease: true, ..put_req("k", "v") }), Err(Error::KeyNotFound));
    put_with(&s, PutRequest { lease: 1, ..put_req("k", "v1") }).unwrap(); // 2
    assert_eq!(put_with(&s, PutRequest { ignore_value: true, ..put_req("k", "v2") }), Err(Error::ValueProvided));
    assert_eq!(
        put_with(&s, PutRequest { ignore_lease: true, lease: 2, ..put_req("k", "v2") }),
        Err(Error::LeaseProvided)
    );
    assert_eq!(put_with(&s, PutRequest { lease: 3, ..put_req("k", "v2") }), Err(Error::LeaseNotFound));
    assert_eq!(
        put_with(&s, PutRequest { lease: 3, ignore_value: true, ..put_req("missing", "") }),
        Err(Error::LeaseNotFound),
        "etcd checks the lease before the key"
    );
    assert_eq!(s.current_revision(), 2);

    // ignore_value keeps the value and takes the new lease.
    put_with(&s, PutRequest { ignore_value: true, lease: 2, ..put_req("k", "") }).unwrap(); // 3
    assert_eq!(get(&s, "k"), Some(kv("k", "v1", 2, 3, 2, 2)));
    // ignore_lease keeps the lease and takes the new value.
    put_with(&s, PutRequest { ignore_lease: true, ..put_req("k", "v3") }).unwrap(); // 4
    assert_eq!(get(&s, "k"), Some(kv("k", "v3", 2, 4, 3, 2)));
    assert_eq!(s.lease(2).unwrap().keys, vec![b"k".to_vec()]);
    assert!(s.lease(1).unwrap().keys.is_empty());
}

fn leases<E: Engine>(new: NewEngine<E>) {
    let s = Mvcc::open(new()).unwrap();
    let applied = apply(&s, Request::LeaseGrant(LeaseGrantRequest { ttl: 30, id: 5 }));
    let Ok(ApplyResponse::LeaseGrant(g)) = &applied.response else { panic!("{applied:?}") };
    assert_eq!((g.id, g.ttl, applied.revision), (5, 30, 1), "a grant does not bump the revision");
    assert_eq!(grant(&s, 5, 10), Err(Error::LeaseExists));
    assert_eq!(grant(&s, 6, MAX_LEASE_TTL + 1), Err(Error::LeaseTtlTooLarge));
    assert!(matches!(grant(&s, 0, 10), Err(Error::InvalidArgument(_))));
    grant(&s, 6, MAX_LEASE_TTL).unwrap();
    grant(&s, -3, 1).unwrap();

    for k in ["c", "a", "b"] {
        put_with(&s, PutRequest { lease: 5, ..put_req(k, "v") }).unwrap(); // 2, 3, 4
    }
    put_with(&s, PutRequest { lease: 6, ..put_req("other", "v") }).unwrap(); // 5
    put_with(&s, PutRequest { lease: 5, ..put_req("moved", "v") }).unwrap(); // 6
    put_with(&s, PutRequest { lease: 6, ..put_req("moved", "v") }).unwrap(); // 7: re-attached to 6
    put_with(&s, PutRequest { lease: 5, ..put_req("plain", "v") }).unwrap(); // 8
    put(&s, "plain", "v"); // 9: detached
    put_with(&s, PutRequest { lease: 5, ..put_req("dead", "v") }).unwrap(); // 10
    del(&s, "dead", ""); // 11: detached by the delete
    let b = |v: &[&str]| v.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>();
    assert_eq!(s.lease(5), Some(LeaseInfo { id: 5, ttl: 30, keys: b(&["a", "b", "c"]) }));
    assert_eq!(s.lease(6).unwrap().keys, b(&["moved", "other"]));
    assert_eq!(s.leases().iter().map(|l| l.id).collect::<Vec<_>>(), vec![-3, 5, 6]);

    // Reopening derives the same attachments from the data.
    let reopened = Mvcc::open(s.engine().clone()).unwrap();
    assert_eq!(reopened.leases(), s.leases());

    // Revoke deletes every attached key in one revision, in key order.
    let applied = revoke(&s, 5);
    assert_eq!(applied.response, Ok(ApplyResponse::LeaseRevoke(Default::default())));
    assert_eq!(applied.revision, 12);
    assert_eq!(
        applied.events,
        vec![
            delete_event("a", 12, Some(kv("a", "v", 3, 3, 1, 5))),
            delete_event("b", 12, Some(kv("b", "v", 4, 4, 1, 5))),
            delete_event("c", 12, Some(kv("c", "v", 2, 2, 1, 5))),
        ]
    );
    assert_eq!(records(&s).iter().filter(|r| r.main == 12).map(|r| r.sub).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert_eq!(keys(&all_at(&s, 0).unwrap()), vec!["moved", "other", "plain"]);
    assert_eq!(s.lease(5), None);
    assert_eq!(revoke(&s, 5).response, Err(Error::LeaseNotFound));
    assert_eq!(put_with(&s, PutRequest { lease: 5, ..put_req("x", "v") }), Err(Error::LeaseNotFound));

    // Revoking a lease without keys changes no key and does not bump.
    let applied = revoke(&s, -3);
    assert_eq!((applied.response.is_ok(), applied.revision, applied.events.len()), (true, 12, 0));
    assert_eq!(Mvcc::open(s.engine().clone()).unwrap().leases(), s.leases(), "revocations persist");
}

fn compaction<E: Engine>(new: NewEngine<E>) {
    let s = Mvcc::open(new()).unwrap();
    put(&s, "a", "1"); // 2
    put(&s, "a", "2"); // 3
    put(&s, "b", "1"); // 4
    del(&s, "b", ""); // 5
    put(&s, "c", "1"); // 6
    put(&s, "a", "3"); // 7
    del(&s, "c", ""); // 8
    let history: Vec<_> = (1..=8).map(|r| all_at(&s, r).unwrap()).collect();

    assert_eq!(compact(&s, 9), Err(Error::FutureRevision));
    assert_eq!(compact(&s, 0), Err(Error::Compacted { compact_revision: 0 }));
    let applied = apply(&s, Request::Compaction(CompactionRequest { revision: 6, physical: true }));
    assert_eq!(applied.response, Ok(ApplyResponse::Compaction(Default::default())));
    assert_eq!(applied.revision, 8, "compaction is not a write");
    assert!(applied.events.is_empty());
    assert_eq!((s.compact_revision(), s.current_revision()), (6, 8));

    // Kept: a@3 (latest <= 6 of a), c@6 (latest of c), everything after 6. Gone: a@2, b@4, b@5(t).
    let mains = |s: &Mvcc<E>| records(s).iter().map(|r| r.main).collect::<Vec<_>>();
    assert_eq!(mains(&s), vec![3, 6, 7, 8]);
    for rev in 6..=8 {
        assert_eq!(all_at(&s, rev).unwrap(), history[rev as usize - 1], "revision {rev} reads as before");
    }
    for rev in 1..6 {
        assert_eq!(all_at(&s, rev), Err(Error::Compacted { compact_revision: 6 }));
    }
    assert_eq!(get_at(&s, "a", 6), Some(kv("a", "2", 2, 3, 2, 0)), "version and create survive");
    assert_eq!(compact(&s, 6), Err(Error::Compacted { compact_revision: 6 }));
    assert_eq!(compact(&s, 5), Err(Error::Compacted { compact_revision: 6 }));

    // Compacting at the newest revision drops the tombstoned key entirely.
    compact(&s, 8).unwrap();
    assert_eq!(mains(&s), vec![7]);
    assert_eq!(all_at(&s, 8).unwrap(), history[7]);
    assert_eq!(s.current_revision(), 8);
    // History continues after compaction; the current revision survives a reopen even when
    // every record is gone.
    del(&s, "a", ""); // 9
    compact(&s, 9).unwrap();
    assert!(records(&s).is_empty());
    let reopened = Mvcc::open(s.engine().clone()).unwrap();
    assert_eq!((reopened.current_revision(), reopened.compact_revision()), (9, 9));
    put(&reopened, "a", "new"); // 10
    assert_eq!(get(&reopened, "a"), Some(kv("a", "new", 10, 10, 1, 0)));
}

fn events_replay<E: Engine>(new: NewEngine<E>) {
    let s = Mvcc::open(new()).unwrap();
    let mut applied_events = Vec::new();
    let mut record = |a: Applied| applied_events.extend(a.events);
    record(apply(&s, Request::Put(put_req("a", "1")))); // 2
    record(apply(&s, Request::Put(put_req("a", "2")))); // 3
    record(apply(
        &s,
        Request::Txn(TxnRequest {
            compare: vec![],
            success: vec![op_put("b", "1"), op_put("c", "1")],
            failure: vec![],
        }),
    )); // 4
    record(apply(&s, Request::DeleteRange(del_req("a", "c")))); // 5
    record(apply(&s, Request::Put(put_req("b", "2")))); // 6

    let all = s.events(2, 6, 0, true).unwrap();
    assert_eq!(all, applied_events, "replay equals what apply reported");
    assert_eq!(
        all,
        vec![
            put_event(kv("a", "1", 2, 2, 1, 0), None),
            put_event(kv("a", "2", 2, 3, 2, 0), Some(kv("a", "1", 2, 2, 1, 0))),
            put_event(kv("b", "1", 4, 4, 1, 0), None),
            put_event(kv("c", "1", 4, 4, 1, 0), None),
            delete_event("a", 5, Some(kv("a", "2", 2, 3, 2, 0))),
            delete_event("b", 5, Some(kv("b", "1", 4, 4, 1, 0))),
            put_event(kv("b", "2", 6, 6, 1, 0), None),
        ]
    );
    let without_prev: Vec<Event> = all.iter().cloned().map(|e| Event { prev_kv: None, ..e }).collect();
    assert_eq!(s.events(0, 0, 0, false).unwrap(), without_prev, "0..0 means everything");
    assert_eq!(s.events(3, 4, 0, false).unwrap(), without_prev[1..4].to_vec());
    assert_eq!(s.events(7, 100, 0, false).unwrap(), vec![], "future revisions have no events yet");

    // The limit ends on a revision boundary: 2 events would split revision 4.
    // The limit ends on a revision boundary: revision 4 has 2 events and is never split.
    assert_eq!(s.events(3, 6, 2, false).unwrap(), without_prev[1..2].to_vec(), "revision 4 would exceed 2");
    assert_eq!(s.events(2, 6, 3, false).unwrap(), without_prev[..2].to_vec(), "revision 4 would exceed 3");
    assert_eq!(s.events(2, 6, 4, false).unwrap(), without_prev[..4].to_vec());
    assert_eq!(
        s.events(4, 6, 1, false).unwrap(),
        without_prev[2..4].to_vec(),
        "a first revision over the limit comes whole"
    );

    compact(&s, 4).unwrap();
    assert_eq!(s.events(4, 6, 0, false), Err(Error::Compacted { compact_revision: 4 }));
    assert_eq!(s.events(5, 6, 0, true).unwrap(), all[4..].to_vec(), "prev_kv at the compacted revision is readable");
}

fn reopen_rebuilds_identical_state<E: Engine>(new: NewEngine<E>) {
    let s = Mvcc::open(new()).unwrap();
    grant(&s, 1, 10).unwrap();
    grant(&s, 2, 10).unwrap();
    for i in 0..40 {
        let k = format!("k{}", i % 7);
        match i % 5 {
            0 | 1 => {
                // Lease 1 until it is revoked at i == 34, then lease 2.
                let lease = if i % 3 != 0 {
                    0
                } else if i < 34 {
                    1
                } else {
                    2
                };
                put_with(&s, PutRequest { lease, ..put_req(&k, &format!("v{i}")) }).unwrap();
            }
            2 => {
                del(&s, &k, "");
            }
            3 => {
                let t = TxnRequest {
                    compare: vec![cmp(&k, CompareTarget::Version, CompareResult::Greater, TargetUnion::Version(0))],
                    success: vec![op_put(&k, "txn"), op_put("t", &format!("{i}"))],
                    failure: vec![op_del("k", "l")],
                };
                txn(&s, t).unwrap();
            }
            _ => {
                if i == 24 {
                    compact(&s, s.current_revision() - 5).unwrap();
                }
                if i == 34 {
                    revoke(&s, 1);
                }
            }
        }
    }
    let reopened = Mvcc::open(s.engine().clone()).unwrap();
    assert_eq!(reopened.state_snapshot(), s.state_snapshot(), "index, revisions and leases rebuilt identically");
    for rev in 0..=s.current_revision() {
        assert_eq!(all_at(&reopened, rev), all_at(&s, rev), "revision {rev}");
    }
    assert_eq!(reopened.hash_kv(0), s.hash_kv(0));
}

fn hash_kv_tracks_history<E: Engine>(new: NewEngine<E>) {
    let history = |s: &Mvcc<E>, last: &str| {
        put(s, "a", "1");
        put(s, "b", "2");
        del(s, "a", "");
        put(s, "c", last);
    };
    let (x, y, z) = (Mvcc::open(new()).unwrap(), Mvcc::open(new()).unwrap(), Mvcc::open(new()).unwrap());
    history(&x, "3");
    history(&y, "3");
    history(&z, "different");
    assert_eq!(x.hash_kv(0).unwrap(), y.hash_kv(0).unwrap());
    assert_ne!(x.hash_kv(0).unwrap(), z.hash_kv(0).unwrap());
    assert_eq!(x.hash_kv(4).unwrap(), z.hash_kv(4).unwrap(), "identical up to revision 4");
    assert_eq!(x.hash_kv(5).unwrap(), x.hash_kv(0).unwrap());
    assert_eq!(x.hash_kv(6), Err(Error::FutureRevision));

    compact(&x, 4).unwrap();
    assert_ne!(x.hash_kv(0).unwrap(), y.hash_kv(0).unwrap(), "compaction changes the history");
    compact(&y, 4).unwrap();
    let (hash, compact_rev) = x.hash_kv(0).unwrap();
    assert_eq!((hash, compact_rev), y.hash_kv(0).unwrap());
    assert_eq!(compact_rev, 4);
    assert_eq!(x.hash_kv(3), Err(Error::Compacted { compact_revision: 4 }));
    assert!(x.hash_kv(4).is_ok(), "etcd allows hashing at the compacted revision");
}

fn failed_commands_still_write_the_batch<E: Engine>(new: NewEngine<E>) {
    let s = Mvcc::open(new()).unwrap();
    let batch = |n: u8| {
        let mut b = WriteBatch::default();
        b.put(Cf::Meta, b"test_last_applied".to_vec(), vec![n]);
        b
    };
    let last = |s: &Mvcc<E>| s.engine().get(Cf::Meta, b"test_last_applied").unwrap();
    let a = s.apply(&cmd(Request::Put(put_req("a", "1"))), batch(1)).unwrap();
    assert!(a.response.is_ok());
    assert_eq!(last(&s), Some(vec![1]));
    let a = s.apply(&cmd(Request::Put(PutRequest { lease: 42, ..put_req("a", "2") })), batch(2)).unwrap();
    assert_eq!(a.response, Err(Error::LeaseNotFound));
    assert_eq!(last(&s), Some(vec![2]), "the caller's batch is written even when the command fails");
    let a = s.apply(&InternalRequest { id: 0, request: None }, batch(3)).unwrap();
    assert!(matches!(a.response, Err(Error::InvalidArgument(_))));
    assert_eq!(last(&s), Some(vec![3]));
    assert_eq!(records(&s), vec![Revision::new(2, 0)]);
    assert_eq!(
        s.engine().get(Cf::Meta, crate::keys::META_CURRENT_REV).unwrap(),
        Some(2u64.to_be_bytes().to_vec()),
        "the current revision is persisted with the write"
    );
    assert!(s.engine().get(Cf::Kv, &revision_key(Revision::new(2, 0))).unwrap().is_some());
}

// ---- the two engines ------------------------------------------------------------------------

fn memory() -> Arc<MemoryEngine> {
    Arc::new(MemoryEngine::new())
}

/// Runs `case` with engines on fresh temporary directories (kept until the case ends).
fn with_rocks(case: fn(NewEngine<RocksEngine>)) {
    let mut dirs = Vec::new();
    let mut new = || {
        let dir = tempfile::tempdir().unwrap();
        let engine = Arc::new(RocksEngine::open(dir.path()).unwrap());
        dirs.push(dir);
        engine
    };
    case(&mut new);
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod memory_engine {
            $( #[test] fn $case() { super::$case(&mut super::memory); } )*
        }
        mod rocks_engine {
            $( #[test] fn $case() { super::with_rocks(super::$case::<crate::engine::RocksEngine>); } )*
        }
    };
}

conformance!(
    put_get_revisions_versions,
    tombstones_and_generations,
    ranges,
    txn_compares,
    txn_nested_and_read_your_writes,
    txn_errors_change_nothing,
    put_options,
    leases,
    compaction,
    events_replay,
    reopen_rebuilds_identical_state,
    hash_kv_tracks_history,
    failed_commands_still_write_the_batch,
);

/// Closing RocksDB and opening the directory again gives the same store.
#[test]
fn rocks_store_survives_a_real_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (snapshot, ranges) = {
        let s = Mvcc::open(Arc::new(RocksEngine::open(dir.path()).unwrap())).unwrap();
        grant(&s, 9, 100).unwrap();
        put_with(&s, PutRequest { lease: 9, ..put_req("a", "1") }).unwrap();
        put(&s, "b", "1");
        del(&s, "b", "");
        put_with(&s, PutRequest { lease: 9, ..put_req("a", "2") }).unwrap();
        compact(&s, 3).unwrap();
        let ranges: Vec<_> = (0..=s.current_revision()).map(|r| all_at(&s, r)).collect();
        (s.state_snapshot(), ranges)
    };
    let s = Mvcc::open(Arc::new(RocksEngine::open(dir.path()).unwrap())).unwrap();
    assert_eq!(s.state_snapshot(), snapshot);
    assert_eq!((0..=s.current_revision()).map(|r| all_at(&s, r)).collect::<Vec<_>>(), ranges);
    assert_eq!(s.lease(9).unwrap().keys, vec![b"a".to_vec()]);
}

/// `Mvcc` is shared between the state machine, the gRPC services and watchers.
#[test]
fn mvcc_is_send_and_sync() {
    fn shared<T: Send + Sync>() {}
    shared::<Mvcc<MemoryEngine>>();
    shared::<Mvcc<RocksEngine>>();
    shared::<Applied>();
}

/// Readers racing writes and compactions see either a consistent answer or `Compacted`, never
/// a record the index promised but compaction already deleted (that would be `Corrupt`).
#[test]
fn reads_race_writes_and_compactions_safely() {
    let s = Arc::new(Mvcc::open(memory()).unwrap());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (s, stop) = (s.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut reads = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let rev = s.compact_revision().max(1);
                    match all_at(&s, rev) {
                        Ok(r) => assert!(r.kvs.iter().all(|kv| kv.mod_revision <= rev)),
                        Err(Error::Compacted { .. }) => {}
                        Err(e) => panic!("read at {rev}: {e}"),
                    }
                    match s.events(s.compact_revision() + 1, 0, 50, true) {
                        Ok(_) | Err(Error::Compacted { .. }) => {}
                        Err(e) => panic!("events: {e}"),
                    }
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for i in 0..2000 {
        put(&s, &format!("k{}", i % 13), &format!("{i}"));
        if i % 7 == 0 {
            del(&s, &format!("k{}", (i + 3) % 13), "");
        }
        if i % 25 == 24 {
            compact(&s, s.current_revision() - 3).unwrap();
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
}
