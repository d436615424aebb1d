//! Watch histories with known answers; several reproduce watch bugs etcd's robustness tests
//! found (issue numbers in the names).

use chaos::watch_check::{
    check_watches, AnomalyKind, Event, EventKind, Evidence, Session, Source, Truth, Watcher,
    WatcherReport,
};

fn put(revision: i64, key: &str, value: &str) -> Event {
    Event {
        revision,
        key: key.to_owned(),
        kind: EventKind::Put,
        value: value.to_owned(),
    }
}

fn delete(revision: i64, key: &str) -> Event {
    Event {
        revision,
        key: key.to_owned(),
        kind: EventKind::Delete,
        value: String::new(),
    }
}

/// r2 put /w/a=1, r3 put /other=x, r4 put /w/b=1, r5 put /w/a=2, r6 delete /w/b,
/// r7 put /w/c=1 and /w/d=1 (one Txn), r8 put /w/a=3.
fn truth() -> Truth {
    Truth {
        first_revision: 1,
        current_revision: Some(9),
        events: vec![
            put(2, "/w/a", "1"),
            put(3, "/other", "x"),
            put(4, "/w/b", "1"),
            put(5, "/w/a", "2"),
            delete(6, "/w/b"),
            put(7, "/w/c", "1"),
            put(7, "/w/d", "1"),
            put(8, "/w/a", "3"),
        ],
    }
}

/// The truth's event at (revision, key).
fn t(revision: i64, key: &str) -> Event {
    truth()
        .events
        .into_iter()
        .find(|e| e.revision == revision && e.key == key)
        .expect("in the truth")
}

fn session(start_revision: i64, events: Vec<Event>) -> Session {
    Session {
        start_revision,
        member: None,
        events,
    }
}

fn check(sessions: Vec<Session>) -> WatcherReport {
    let watcher = Watcher {
        watcher: "w1".into(),
        prefix: "/w/".into(),
        sessions,
    };
    check_watches(&truth(), &[watcher]).unwrap().remove(0)
}

fn seen(session: usize, index: usize, event: Event) -> Evidence {
    Evidence {
        source: Source::Observed { session, index },
        event,
    }
}

fn truly(event: Event) -> Evidence {
    Evidence {
        source: Source::Truth,
        event,
    }
}

/// The single anomaly of a report (panics unless there is exactly one).
fn only(report: &WatcherReport) -> (AnomalyKind, Vec<Evidence>) {
    assert_eq!(report.anomalies.len(), 1, "{:#?}", report.anomalies);
    let a = &report.anomalies[0];
    assert_eq!(a.watcher, "w1");
    (a.kind, a.evidence.clone())
}

#[test]
fn complete_history_in_one_session_is_clean() {
    let all = vec![
        t(2, "/w/a"),
        t(4, "/w/b"),
        t(5, "/w/a"),
        t(6, "/w/b"),
        t(7, "/w/c"),
        t(7, "/w/d"),
        t(8, "/w/a"),
    ];
    let report = check(vec![session(1, all)]);
    assert_eq!(report.anomalies, vec![]);
    assert_eq!((report.events, report.sessions), (7, 1));
}

#[test]
fn reconnects_resuming_from_last_plus_one_are_clean() {
    let report = check(vec![
        session(1, vec![t(2, "/w/a"), t(4, "/w/b")]),
        session(5, vec![]), // broke before anything arrived
        session(5, vec![t(5, "/w/a"), t(6, "/w/b"), t(7, "/w/c")]),
        // Broke in the middle of revision 7: asking for 7 again re-delivers /w/c.
        session(7, vec![t(7, "/w/c"), t(7, "/w/d")]),
        session(8, vec![t(8, "/w/a")]),
    ]);
    assert_eq!(report.anomalies, vec![]);
}

#[test]
fn watch_from_now_and_a_stream_cut_short_are_clean() {
    // start_revision 0 = "from now": nothing before the first event is owed; a watcher that
    // stops early saw a prefix, which is fine.
    let report = check(vec![session(0, vec![t(5, "/w/a"), t(6, "/w/b")])]);
    assert_eq!(report.anomalies, vec![]);
}

#[test]
fn gap_lost_events_during_stream_starvation_17529() {
    let report = check(vec![session(
        1,
        vec![t(2, "/w/a"), t(4, "/w/b"), t(7, "/w/c")],
    )]);
    let (kind, evidence) = only(&report);
    assert_eq!(kind, AnomalyKind::Gap);
    assert_eq!(
        evidence,
        vec![
            seen(0, 1, t(4, "/w/b")),
            truly(t(5, "/w/a")),
            seen(0, 2, t(7, "/w/c"))
        ]
    );
    assert!(
        report.anomalies[0].detail.contains("2 event(s)"),
        "{}",
        report.anomalies[0].detail
    );
}

#[test]
fn gap_dropped_delete_event_across_a_reconnect_18089() {
    let report = check(vec![
        session(1, vec![t(2, "/w/a"), t(4, "/w/b"), t(5, "/w/a")]),
        session(6, vec![t(7, "/w/c"), t(7, "/w/d")]),
    ]);
    let (kind, evidence) = only(&report);
    assert_eq!(kind, AnomalyKind::Gap);
    assert_eq!(
        evidence,
        vec![
            seen(0, 2, t(5, "/w/a")),
            truly(t(6, "/w/b")),
            seen(1, 0, t(7, "/w/c"))
        ]
    );
}

#[test]
fn gap_at_the_start_of_the_first_session() {
    let report = check(vec![session(3, vec![t(5, "/w/a")])]);
    let (kind, evidence) = only(&report);
    assert_eq!(kind, AnomalyKind::Gap);
    assert_eq!(
        evidence,
        vec![truly(t(4, "/w/b")), seen(0, 0, t(5, "/w/a"))]
    );
}

#[test]
fn duplicate_event_in_one_stream_17247() {
    let report = check(vec![session(
        1,
        vec![t(2, "/w/a"), t(4, "/w/b"), t(4, "/w/b")],
    )]);
    let (kind, evidence) = only(&report);
    assert_eq!(kind, AnomalyKind::Duplicate);
    assert_eq!(
        evidence,
        vec![seen(0, 1, t(4, "/w/b")), seen(0, 2, t(4, "/w/b"))]
    );
}

#[test]
fn out_of_order_within_a_session() {
    let report = check(vec![session(
        1,
        vec![t(2, "/w/a"), t(5, "/w/a"), t(4, "/w/b")],
    )]);
    // 5 before 4 is out of order; the jump from 2 to 5 is also a gap at that moment.
    let kinds: Vec<AnomalyKind> = report.anomalies.iter().map(|a| a.kind).collect();
    assert_eq!(kinds, vec![AnomalyKind::Gap, AnomalyKind::OutOfOrder]);
    assert_eq!(
        report.anomalies[1].evidence,
        vec![seen(0, 1, t(5, "/w/a")), seen(0, 2, t(4, "/w/b"))]
    );
}

#[test]
fn out_of_order_within_one_revision() {
    let report = check(vec![session(7, vec![t(7, "/w/d"), t(7, "/w/c")])]);
    let kinds: Vec<AnomalyKind> = report.anomalies.iter().map(|a| a.kind).collect();
    assert_eq!(kinds, vec![AnomalyKind::Gap, AnomalyKind::OutOfOrder]);
}

#[test]
fn mismatch_value_kind_or_key() {
    let report = check(vec![session(
        1,
        vec![
            put(2, "/w/a", "WRONG"),
            t(4, "/w/b"),
            t(5, "/w/a"),
            put(6, "/w/b", "1"), // a put where the store deleted
        ],
    )]);
    let kinds: Vec<AnomalyKind> = report.anomalies.iter().map(|a| a.kind).collect();
    assert_eq!(kinds, vec![AnomalyKind::Mismatch, AnomalyKind::Mismatch]);
    assert_eq!(
        report.anomalies[0].evidence,
        vec![truly(t(2, "/w/a")), seen(0, 0, put(2, "/w/a", "WRONG"))]
    );
    assert_eq!(
        report.anomalies[1].evidence,
        vec![truly(t(6, "/w/b")), seen(0, 3, put(6, "/w/b", "1"))]
    );

    // Revision 5 changed /w/a, not /w/z.
    let report = check(vec![session(5, vec![put(5, "/w/z", "2")])]);
    let (kind, evidence) = only(&report);
    assert_eq!(kind, AnomalyKind::Mismatch);
    assert_eq!(
        evidence,
        vec![truly(t(5, "/w/a")), seen(0, 0, put(5, "/w/z", "2"))]
    );
}

#[test]
fn went_back_after_a_network_partition_15271() {
    // Reconnected to a lagging member asking for 6; it replays 5.
    let report = check(vec![
        session(1, vec![t(2, "/w/a"), t(4, "/w/b"), t(5, "/w/a")]),
        session(6, vec![t(5, "/w/a"), t(6, "/w/b")]),
    ]);
    let (kind, evidence) = only(&report);
    assert_eq!(kind, AnomalyKind::WentBack);
    assert_eq!(
        evidence,
        vec![seen(0, 2, t(5, "/w/a")), seen(1, 0, t(5, "/w/a"))]
    );
}

#[test]
fn went_back_watch_on_future_revision_returns_old_events_20221() {
    let report = check(vec![session(8, vec![t(2, "/w/a"), t(8, "/w/a")])]);
    let (kind, evidence) = only(&report);
    assert_eq!(kind, AnomalyKind::WentBack);
    assert_eq!(evidence, vec![seen(0, 0, t(2, "/w/a"))]);
}

#[test]
fn phantoms_beyond_the_end_at_an_empty_revision_or_outside_the_prefix() {
    let report = check(vec![session(
        1,
        vec![
            t(2, "/w/a"),
            put(3, "/other", "x"), // real, but not under /w/
            put(20, "/w/a", "9"),  // after the store's final revision 9
            put(9, "/w/a", "9"),   // revision 9 changed nothing (e.g. a lease grant)
        ],
    )]);
    let kinds: Vec<AnomalyKind> = report.anomalies.iter().map(|a| a.kind).collect();
    assert_eq!(kinds, vec![AnomalyKind::Phantom; 3]);
    assert_eq!(
        report.anomalies[0].evidence,
        vec![truly(t(3, "/other")), seen(0, 1, put(3, "/other", "x"))]
    );
    assert_eq!(
        report.anomalies[1].evidence,
        vec![seen(0, 2, put(20, "/w/a", "9"))]
    );
    assert_eq!(
        report.anomalies[2].evidence,
        vec![seen(0, 3, put(9, "/w/a", "9"))]
    );
}

#[test]
fn events_below_a_compacted_truth_are_unverifiable_not_wrong() {
    let mut compacted = truth();
    compacted.first_revision = 5;
    compacted.events.retain(|e| e.revision >= 5);
    let watcher = Watcher {
        watcher: "w1".into(),
        prefix: "/w/".into(),
        sessions: vec![session(1, vec![t(2, "/w/a"), t(4, "/w/b"), t(5, "/w/a")])],
    };
    let report = check_watches(&compacted, &[watcher]).unwrap().remove(0);
    assert_eq!((report.unverifiable, report.anomalies.len()), (2, 0));
}

#[test]
fn malformed_truth_is_an_error() {
    let mut bad = truth();
    bad.events.swap(0, 1);
    assert!(check_watches(&bad, &[]).is_err());
    let mut dup = truth();
    dup.events.insert(1, put(2, "/w/a", "again"));
    assert!(check_watches(&dup, &[]).is_err());
}
