//! A tiny vocabulary for hand-written histories: one call = one operation = two records.
#![allow(dead_code)] // each test binary uses a different part

use chaos::history::{History, Op, Phase, Record};
use chaos::linearizable::{check_history, Budget, KeyReport, Verdict};

pub const KEY: &str = "x";

fn record(process: u32, op: Op, phase: Phase, time_ns: u64) -> Record {
    Record {
        process,
        key: KEY.to_owned(),
        op,
        phase,
        time_ns,
    }
}

/// An operation on key `x` invoked at `t0` and completed with `phase` at `t1`.
pub fn op(process: u32, invoke: Op, phase: Phase, done: Op, t0: u64, t1: u64) -> Vec<Record> {
    vec![
        record(process, invoke, Phase::Invoke, t0),
        record(process, done, phase, t1),
    ]
}

pub fn write(p: u32, v: &str, t0: u64, t1: u64) -> Vec<Record> {
    op(p, Op::write(v), Phase::Ok, Op::write(v), t0, t1)
}

pub fn read(p: u32, v: Option<&str>, t0: u64, t1: u64) -> Vec<Record> {
    op(p, Op::read(), Phase::Ok, Op::read_ok(v), t0, t1)
}

pub fn cas(p: u32, expected: &str, new: &str, succeeded: bool, t0: u64, t1: u64) -> Vec<Record> {
    op(
        p,
        Op::cas(expected, new),
        Phase::Ok,
        Op::cas_ok(expected, new, succeeded),
        t0,
        t1,
    )
}

pub fn write_info(p: u32, v: &str, t0: u64, t1: u64) -> Vec<Record> {
    op(p, Op::write(v), Phase::Info, Op::write(v), t0, t1)
}

pub fn cas_info(p: u32, expected: &str, new: &str, t0: u64, t1: u64) -> Vec<Record> {
    op(
        p,
        Op::cas(expected, new),
        Phase::Info,
        Op::cas(expected, new),
        t0,
        t1,
    )
}

pub fn write_fail(p: u32, v: &str, t0: u64, t1: u64) -> Vec<Record> {
    op(p, Op::write(v), Phase::Fail, Op::write(v), t0, t1)
}

/// Concatenates operations into a history.
pub fn history(ops: Vec<Vec<Record>>) -> History {
    History {
        records: ops.into_iter().flatten().collect(),
    }
}

/// Checks a single-key history with `budget`.
pub fn check_with(ops: Vec<Vec<Record>>, budget: &Budget) -> KeyReport {
    let mut reports = check_history(&history(ops), budget).expect("well-formed history");
    assert_eq!(reports.len(), 1, "one key");
    reports.remove(0)
}

/// Checks a single-key history with the default budget.
pub fn check(ops: Vec<Vec<Record>>) -> Verdict {
    check_with(ops, &Budget::default()).verdict
}

/// The minimal sub-history of an invalid verdict (panics otherwise).
pub fn witness(verdict: &Verdict) -> &[Record] {
    match verdict {
        Verdict::Invalid {
            minimal_subhistory, ..
        } => minimal_subhistory,
        other => panic!("expected Invalid, got {other:?}"),
    }
}
