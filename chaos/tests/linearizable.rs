//! Hand-written register histories with known answers. Times are nanoseconds; `[a, b]` in
//! comments is an operation's invoke/complete window.

mod common;

use chaos::history::{History, Op, Phase, Record};
use chaos::linearizable::{check_history, Budget, Verdict};
use common::*;

/// The witness, as (process, op-kind) pairs of its invocations — compact to assert on.
fn witness_ops(verdict: &Verdict) -> Vec<(u32, Op)> {
    let records = witness(verdict);
    let mut ops: Vec<(u32, Op)> = records
        .iter()
        .filter(|r| r.phase != Phase::Invoke)
        .map(|r| (r.process, r.op.clone()))
        .collect();
    // Operations without a completion record (still pending when the history ended).
    for r in records.iter().filter(|r| r.phase == Phase::Invoke) {
        if !records
            .iter()
            .any(|c| c.process == r.process && c.phase != Phase::Invoke)
        {
            ops.push((r.process, r.op.clone()));
        }
    }
    ops
}

/// The witness is itself a non-linearizable history.
fn assert_witness_fails_alone(verdict: &Verdict) {
    let alone = History {
        records: witness(verdict).to_vec(),
    };
    let reports = check_history(&alone, &Budget::default()).unwrap();
    assert!(
        matches!(reports[0].verdict, Verdict::Invalid { .. }),
        "{reports:?}"
    );
}

// ---- linearizable ----------------------------------------------------------------------

#[test]
fn empty_and_absent_reads_are_valid() {
    assert_eq!(check(vec![read(0, None, 0, 5)]), Verdict::Valid);
    assert_eq!(
        check_history(&History::new(), &Budget::default()).unwrap(),
        vec![]
    );
}

#[test]
fn concurrent_writes_and_reads_with_overlapping_windows() {
    // w1 [0,10] and w2 [5,15] overlap; r->2 [6,8] puts w2 first, r->1 [9,20] needs w1 after
    // it (w1 may still take effect until 10); r->1 [21,22] is after both.
    let v = check(vec![
        write(0, "1", 0, 10),
        write(1, "2", 5, 15),
        read(2, Some("2"), 6, 8),
        read(3, Some("1"), 9, 20),
        read(2, Some("1"), 21, 22),
    ]);
    assert_eq!(v, Verdict::Valid);
}

#[test]
fn touching_windows_count_as_concurrent() {
    // The read is invoked at the very nanosecond the write completes: either order is allowed.
    assert_eq!(
        check(vec![write(0, "a", 0, 10), read(1, None, 10, 12)]),
        Verdict::Valid
    );
}

#[test]
fn cas_success_and_compare_failure() {
    let v = check(vec![
        write(0, "a", 0, 10),
        cas(1, "a", "b", true, 20, 30),
        cas(2, "a", "c", false, 25, 35), // after the first CAS: register holds b
        read(0, Some("b"), 40, 50),
        cas(1, "b", "d", true, 60, 70),
        read(2, Some("d"), 80, 90),
    ]);
    assert_eq!(v, Verdict::Valid);
}

#[test]
fn info_write_may_take_effect_much_later() {
    // The client gave up at 5, but the write applied somewhere after 20.
    let v = check(vec![
        write_info(0, "a", 0, 5),
        read(1, None, 10, 20),
        read(1, Some("a"), 1_000, 1_010),
    ]);
    assert_eq!(v, Verdict::Valid);
}

#[test]
fn info_write_may_never_take_effect() {
    let v = check(vec![
        write(0, "a", 0, 5),
        write_info(1, "b", 10, 20),
        read(2, Some("a"), 100, 110),
        read(2, Some("a"), 200, 210),
    ]);
    assert_eq!(v, Verdict::Valid);
}

#[test]
fn info_cas_applies_only_if_its_compare_held() {
    // The info CAS a->b took effect between the two reads.
    let v = check(vec![
        write(0, "a", 0, 5),
        cas_info(1, "a", "b", 10, 20),
        read(2, Some("a"), 30, 40),
        read(2, Some("b"), 50, 60),
    ]);
    assert_eq!(v, Verdict::Valid);
}

#[test]
fn failed_compare_explained_by_an_unknown_write() {
    // The register held "a"; the CAS saw something else: the timed-out write of "b" applied.
    let v = check(vec![
        write(0, "a", 0, 1),
        write_info(1, "b", 2, 3),
        cas(2, "a", "c", false, 10, 11),
    ]);
    assert_eq!(v, Verdict::Valid);
}

#[test]
fn chain_of_unknown_outcomes() {
    // The timed-out write of "e" applied, then the timed-out CAS e -> n applied on top of it:
    // only that chain explains the read of "n".
    let v = check(vec![
        write(0, "p", 0, 1),
        write_info(1, "e", 2, 3),
        cas_info(2, "e", "n", 4, 5),
        read(3, Some("n"), 10, 11),
    ]);
    assert_eq!(v, Verdict::Valid);
    // Without the write of "e" the CAS cannot have applied.
    let v = check(vec![
        write(0, "p", 0, 1),
        cas_info(2, "e", "n", 4, 5),
        read(3, Some("n"), 10, 11),
    ]);
    assert!(matches!(v, Verdict::Invalid { .. }), "{v:?}");
}

#[test]
fn unobservable_info_writes_are_not_searched() {
    // A partition's worth of timed-out writes nobody ever read: dropped before the search.
    let mut ops = vec![write(0, "a", 0, 5)];
    for p in 1..200u32 {
        ops.push(write_info(
            p,
            &format!("lost{p}"),
            10 + u64::from(p),
            20 + u64::from(p),
        ));
    }
    ops.push(read(500, Some("a"), 1_000, 1_010));
    let report = check_with(ops, &Budget::default());
    assert_eq!(report.verdict, Verdict::Valid);
    assert_eq!((report.operations, report.searched), (201, 2));
}

// ---- not linearizable ------------------------------------------------------------------

#[test]
fn stale_read_after_a_completed_write() {
    // A serializable read served by a member cut off from the leader: it still returns "a"
    // long after "b" was acknowledged. Noise around it must not end up in the witness.
    let v = check(vec![
        write(0, "a", 0, 10),
        read(1, Some("a"), 5, 8),
        write(0, "b", 20, 30),
        read(2, Some("b"), 32, 36),
        read(1, Some("a"), 40, 50), // the stale read
        read(2, Some("b"), 60, 70),
    ]);
    assert_witness_fails_alone(&v);
    assert_eq!(
        witness_ops(&v),
        vec![
            (0, Op::write("a")),
            (0, Op::write("b")),
            (1, Op::read_ok(Some("a")))
        ]
    );
    assert_eq!(witness(&v).len(), 6);
    let Verdict::Invalid {
        explanation, key, ..
    } = &v
    else {
        unreachable!()
    };
    assert_eq!(key, KEY);
    assert!(
        explanation.contains("3 of the 6 operations"),
        "{explanation}"
    );
}

#[test]
fn read_of_a_value_never_written() {
    let v = check(vec![
        write(0, "a", 0, 10),
        read(1, Some("a"), 20, 30),
        read(2, Some("zz"), 40, 50),
    ]);
    assert_witness_fails_alone(&v);
    assert_eq!(witness_ops(&v), vec![(2, Op::read_ok(Some("zz")))]);
    let Verdict::Invalid { explanation, .. } = &v else {
        unreachable!()
    };
    assert!(
        explanation.contains("no operation can take effect first"),
        "{explanation}"
    );
}

#[test]
fn reads_see_a_then_b_then_a_with_one_write_of_each() {
    // Both writes are still running while the reads happen, so "a then b" and "b then a"
    // alone are fine; "a, b, a" would need a second write of "a".
    let v = check(vec![
        write(0, "a", 0, 100),
        write(1, "b", 0, 100),
        read(2, Some("a"), 10, 20),
        read(2, Some("b"), 30, 40),
        read(2, Some("a"), 50, 60),
    ]);
    assert_witness_fails_alone(&v);
    // All five are needed; the history is cut after the last read, while both writes are
    // still running, so the witness holds only their invocations.
    assert_eq!(witness(&v).len(), 8, "{v:?}");
    assert_eq!(
        witness_ops(&v),
        vec![
            (2, Op::read_ok(Some("a"))),
            (2, Op::read_ok(Some("b"))),
            (2, Op::read_ok(Some("a"))),
            (0, Op::write("a")),
            (1, Op::write("b")),
        ]
    );

    // Once both writes have completed, the register is settled: "a" then "b" alone fails.
    let v = check(vec![
        write(0, "a", 0, 10),
        write(1, "b", 0, 10),
        read(2, Some("a"), 20, 30),
        read(2, Some("b"), 40, 50),
        read(2, Some("a"), 60, 70),
    ]);
    assert_witness_fails_alone(&v);
    assert_eq!(witness(&v).len(), 8, "the last read is not needed: {v:?}");
}

#[test]
fn lost_update_two_cas_succeed_from_the_same_value() {
    let v = check(vec![
        write(0, "0", 0, 5),
        cas(1, "0", "1", true, 10, 20),
        cas(2, "0", "2", true, 12, 22),
        read(0, Some("2"), 30, 40),
    ]);
    assert_witness_fails_alone(&v);
    assert_eq!(
        witness_ops(&v),
        vec![
            (0, Op::write("0")),
            (1, Op::cas_ok("0", "1", true)),
            (2, Op::cas_ok("0", "2", true)),
        ]
    );
}

#[test]
fn read_started_after_a_write_completed_sees_the_older_value() {
    let v = check(vec![write(0, "a", 0, 10), read(1, None, 11, 20)]);
    assert_witness_fails_alone(&v);
    assert_eq!(
        witness_ops(&v),
        vec![(0, Op::write("a")), (1, Op::read_ok(None))]
    );
}

#[test]
fn a_failed_compare_is_still_an_observation() {
    // The register definitely holds "a", so a CAS expecting "a" cannot have seen otherwise.
    let v = check(vec![write(0, "a", 0, 10), cas(1, "a", "b", false, 20, 30)]);
    assert_witness_fails_alone(&v);
    assert_eq!(witness(&v).len(), 4);
}

#[test]
fn a_failed_op_never_executed() {
    let v = check(vec![write_fail(0, "a", 0, 10), read(1, Some("a"), 20, 30)]);
    assert_eq!(witness_ops(&v), vec![(1, Op::read_ok(Some("a")))]);
}

#[test]
fn value_read_before_its_write_was_invoked() {
    // An info write can apply arbitrarily late — but never before it was invoked.
    let v = check(vec![read(1, Some("a"), 0, 10), write_info(0, "a", 20, 30)]);
    assert_witness_fails_alone(&v);
    assert_eq!(witness_ops(&v), vec![(1, Op::read_ok(Some("a")))]);
}

#[test]
fn pending_invocation_at_the_end_is_unknown_not_failed() {
    // The history ends while the write is outstanding: it may have applied.
    let mut ops = vec![read(1, None, 0, 5)];
    ops.push(vec![Record {
        process: 0,
        key: KEY.into(),
        op: Op::write("a"),
        phase: Phase::Invoke,
        time_ns: 10,
    }]);
    ops.push(read(1, Some("a"), 20, 30));
    assert_eq!(check(ops), Verdict::Valid);
}

#[test]
fn keys_are_checked_independently() {
    let mut records = history(vec![write(0, "a", 0, 10), read(1, Some("a"), 20, 30)]).records;
    let mut y = history(vec![write(2, "a", 0, 10), read(3, None, 20, 30)]).records;
    for r in &mut y {
        r.key = "y".into();
    }
    records.extend(y);
    let reports = check_history(&History { records }, &Budget::default()).unwrap();
    assert_eq!(reports.len(), 2);
    assert_eq!(
        (reports[0].key.as_str(), &reports[0].verdict),
        ("x", &Verdict::Valid)
    );
    assert!(matches!(&reports[1].verdict, Verdict::Invalid { key, .. } if key == "y"));
}

// ---- budget ----------------------------------------------------------------------------

/// 24 concurrent writes, then a read of a value none of them wrote: proving that takes
/// exploring every subset of the writes.
fn pathological() -> Vec<Vec<Record>> {
    let mut ops: Vec<Vec<Record>> = (0..24u32)
        .map(|p| write(p, &format!("v{p}"), u64::from(p), 1_000 + u64::from(p)))
        .collect();
    ops.push(read(99, Some("nobody"), 500, 2_000));
    ops
}

#[test]
fn exhausted_budget_is_unknown_never_a_guess() {
    let report = check_with(pathological(), &Budget::steps(5_000));
    match &report.verdict {
        Verdict::Unknown { key, reason } => {
            assert_eq!(key, KEY);
            assert!(reason.contains("step budget (5000) exhausted"), "{reason}");
        }
        other => panic!("expected Unknown, got {other:?}"),
    }
    assert_eq!(report.steps, 5_001);

    let tiny_cache = Budget {
        max_cache_bytes: 4096,
        ..Budget::default()
    };
    assert!(matches!(
        check_with(pathological(), &tiny_cache).verdict,
        Verdict::Unknown { .. }
    ));
}
