//! The `chaos` binary end to end on small directories.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use chaos::watch_check::{Event, EventKind, Session, Truth, Watcher};
use common::*;

fn chaos(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chaos"))
        .args(args)
        .output()
        .expect("runs")
}

fn last_line(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned()
}

fn check_dir(dir: &Path) -> Output {
    chaos(&["check", "--history", dir.to_str().unwrap()])
}

fn write_watch(dir: &Path, seen: Vec<Event>) {
    let watch = dir.join("watch");
    std::fs::create_dir_all(&watch).unwrap();
    let event = |revision, value: &str| Event {
        revision,
        key: "x".into(),
        kind: EventKind::Put,
        value: value.into(),
    };
    let truth = Truth {
        first_revision: 1,
        current_revision: Some(3),
        events: vec![event(2, "a"), event(3, "b")],
    };
    let watcher = Watcher {
        watcher: "w1".into(),
        prefix: "x".into(),
        sessions: vec![Session {
            start_revision: 1,
            member: Some("m1".into()),
            events: if seen.is_empty() {
                truth.events.clone()
            } else {
                seen
            },
        }],
    };
    std::fs::write(
        watch.join("truth.json"),
        serde_json::to_string(&truth).unwrap(),
    )
    .unwrap();
    std::fs::write(
        watch.join("w1.json"),
        serde_json::to_string(&watcher).unwrap(),
    )
    .unwrap();
}

#[test]
fn valid_histories_exit_zero_with_valid_last() {
    let dir = tempfile::tempdir().unwrap();
    history(vec![write(0, "a", 0, 10)])
        .save(dir.path().join("c0.jsonl"))
        .unwrap();
    history(vec![read(1, Some("a"), 20, 30)])
        .save(dir.path().join("c1.jsonl"))
        .unwrap();
    write_watch(dir.path(), vec![]);
    let out = check_dir(dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(last_line(&out), "valid", "{stdout}");
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout.contains("key \"x\": linearizable"), "{stdout}");
    assert!(stdout.contains("watcher \"w1\": ok"), "{stdout}");
}

#[test]
fn stale_read_and_watch_gap_exit_one_with_invalid_last() {
    let dir = tempfile::tempdir().unwrap();
    history(vec![write(0, "a", 0, 10), read(1, None, 20, 30)])
        .save(dir.path().join("h.jsonl"))
        .unwrap();
    let skipped = Event {
        revision: 3,
        key: "x".into(),
        kind: EventKind::Put,
        value: "b".into(),
    };
    write_watch(dir.path(), vec![skipped]);
    let out = check_dir(dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(last_line(&out).starts_with("INVALID: "), "{stdout}");
    assert!(stdout.contains("NOT LINEARIZABLE"), "{stdout}");
    assert!(stdout.contains("Gap at watcher \"w1\""), "{stdout}");
}

#[test]
fn exhausted_budget_exits_three_with_unknown_last() {
    let dir = tempfile::tempdir().unwrap();
    let mut ops: Vec<_> = (0..24u32)
        .map(|p| write(p, &format!("v{p}"), u64::from(p), 1_000))
        .collect();
    ops.push(read(99, Some("nobody"), 500, 2_000));
    history(ops).save(dir.path().join("h.jsonl")).unwrap();
    let out = chaos(&[
        "check",
        "--history",
        dir.path().to_str().unwrap(),
        "--max-steps",
        "1000",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        last_line(&out).starts_with("unknown: "),
        "{}",
        last_line(&out)
    );
}

#[test]
fn nothing_to_check_is_not_valid() {
    let dir = tempfile::tempdir().unwrap();
    let out = check_dir(dir.path());
    assert_ne!(out.status.code(), Some(0));
    assert!(last_line(&out).starts_with("unknown: "));
}
