//! Watches never go back in time, skip, repeat or invent: every watcher must see a
//! contiguous, strictly increasing, duplicate-free stretch of the store's one revision history,
//! with each event exactly as that history has it — across reconnects to any member.
//!
//! # Inputs
//!
//! The ground truth ([`Truth`]) comes from a final read after the run (e.g. a watch from
//! revision 1 on the workload's prefix, served by a healthy member): every event from
//! `first_revision` through `current_revision`, in revision order. Each watcher
//! ([`Watcher`]) records its sessions: a session starts with the `start_revision` it asked
//! for (etcd's `WatchCreateRequest.start_revision`; 0 = "from now") and lists the events it
//! received in order. After an error the watcher reconnects, to any member, asking for its
//! last received revision + 1.
//!
//! # Files
//!
//! `DIR/watch/truth.json`:
//!
//! ```json
//! {"first_revision": 1, "current_revision": 9,
//!  "events": [{"revision": 2, "key": "/w/a", "kind": "put", "value": "1"},
//!             {"revision": 5, "key": "/w/a", "kind": "delete"}]}
//! ```
//!
//! Every other `DIR/watch/*.json` is one watcher:
//!
//! ```json
//! {"watcher": "w1", "prefix": "/w/",
//!  "sessions": [{"start_revision": 1, "member": "m1",
//!                "events": [{"revision": 2, "key": "/w/a", "kind": "put", "value": "1"}]},
//!               {"start_revision": 3, "member": "m3",
//!                "events": [{"revision": 5, "key": "/w/a", "kind": "delete"}]}]}
//! ```
//!
//! # A worked example of each anomaly
//!
//! Truth under `/w/`: r2 put a=1, r3 put b=1, r4 put a=2.
//!
//! | watcher saw                                    | anomaly     | evidence                 |
//! |------------------------------------------------|-------------|--------------------------|
//! | r2, r4                                         | `Gap`       | r2 (seen), r3 (truth), r4 |
//! | r2, r3, r3                                     | `Duplicate` | r3, r3                   |
//! | r3, r2                                         | `OutOfOrder`| r3, r2                   |
//! | r2 put a=**7**                                 | `Mismatch`  | r2 (truth), r2 (seen)    |
//! | r2, r3 ∥ reconnect at 4: r3                    | `WentBack`  | r3 (seen), r3 (seen again) |
//! | r9 put a=3 (truth ends at r4)                  | `Phantom`   | r9 (seen)                |
//!
//! Several events may share a revision (one Txn touching several keys); the order is then the
//! truth's order within the revision, and events are identified by (revision, key).
//! A session that asks for a start revision at or below what the watcher already saw
//! legitimately receives those events again; only events *below* the requested start are
//! `WentBack`.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::history::files_with_extension;
use crate::{Error, Result};

/// One change of one key at one revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The store revision (`mod_revision` of the kv) the change created.
    pub revision: i64,
    /// The key changed.
    pub key: String,
    /// Put or delete.
    pub kind: EventKind,
    /// The value put; empty for a delete.
    #[serde(default)]
    pub value: String,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            EventKind::Put => write!(f, "r{} put {:?}={:?}", self.revision, self.key, self.value),
            EventKind::Delete => write!(f, "r{} delete {:?}", self.revision, self.key),
        }
    }
}

/// The type of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Put,
    Delete,
}

/// The store's one true history, from a final read after the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Truth {
    /// Events below this revision are unknown (compacted before the final read); observed
    /// events there are counted as unverifiable, not judged.
    #[serde(default = "one")]
    pub first_revision: i64,
    /// The store's revision at the final read; `None`: the last event's revision. An
    /// observed event above it never happened.
    #[serde(default)]
    pub current_revision: Option<i64>,
    /// Every event from `first_revision` through `current_revision`, by revision.
    pub events: Vec<Event>,
}

fn one() -> i64 {
    1
}

/// What one watcher received, session by session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watcher {
    /// A name for reports.
    pub watcher: String,
    /// The watched key prefix (empty: everything).
    pub prefix: String,
    /// Its connections, in order.
    pub sessions: Vec<Session>,
}

/// One watch stream, from creation until it broke or the run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The revision requested (0: from the current revision on, nothing to hold it to).
    pub start_revision: i64,
    /// The member it was connected to, for reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// The events received, in order.
    pub events: Vec<Event>,
}

/// The ways a watcher can be wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnomalyKind {
    /// Events of the truth (under the prefix) were skipped.
    Gap,
    /// The same event was delivered twice in one session.
    Duplicate,
    /// An event arrived after a later one in the same session.
    OutOfOrder,
    /// An event differs from the truth's event at that revision.
    Mismatch,
    /// A session delivered an event older than the revision it asked to start from.
    WentBack,
    /// An event the truth does not have (or outside the watched prefix).
    Phantom,
}

/// Where an event of an anomaly's evidence comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The watcher's `session`-th session, `index`-th event (both 0-based).
    Observed { session: usize, index: usize },
    /// The ground truth.
    Truth,
}

/// One event of an anomaly's evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    pub source: Source,
    pub event: Event,
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.source {
            Source::Observed { session, index } => {
                write!(f, "seen in session {session} #{index}: {}", self.event)
            }
            Source::Truth => write!(f, "truth: {}", self.event),
        }
    }
}

/// One violation, with the two or three events that show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    pub watcher: String,
    pub kind: AnomalyKind,
    pub evidence: Vec<Evidence>,
    pub detail: String,
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} at watcher {:?}: {}",
            self.kind, self.watcher, self.detail
        )?;
        for e in &self.evidence {
            write!(f, "\n    {e}")?;
        }
        Ok(())
    }
}

/// The result for one watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatcherReport {
    pub watcher: String,
    pub sessions: usize,
    pub events: usize,
    /// Events below the truth's `first_revision`, which cannot be judged.
    pub unverifiable: usize,
    pub anomalies: Vec<Anomaly>,
}

/// Loads `dir/truth.json` and every other `dir/*.json` as a watcher (sorted by file name).
pub fn load_watch_dir(dir: impl AsRef<Path>) -> Result<(Truth, Vec<Watcher>)> {
    let dir = dir.as_ref();
    let mut truth = None;
    let mut watchers = Vec::new();
    for path in files_with_extension(dir, "json")? {
        if path.file_name().is_some_and(|n| n == "truth.json") {
            truth = Some(read_json(&path)?);
        } else {
            watchers.push(read_json(&path)?);
        }
    }
    let truth = truth
        .ok_or_else(|| Error::MalformedWatch(format!("{} has no truth.json", dir.display())))?;
    Ok((truth, watchers))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|source| Error::Json {
        path: path.to_owned(),
        line: 0,
        source,
    })
}

/// The truth, indexed.
struct Index<'a> {
    truth: &'a Truth,
    current_revision: i64,
    /// (revision, key) -> index in `truth.events`.
    by_event: HashMap<(i64, &'a str), usize>,
    /// revision -> indices in `truth.events`.
    by_revision: HashMap<i64, Vec<usize>>,
}

impl<'a> Index<'a> {
    fn new(truth: &'a Truth) -> Result<Index<'a>> {
        let current_revision = truth
            .current_revision
            .or(truth.events.last().map(|e| e.revision))
            .unwrap_or(truth.first_revision - 1);
        let mut by_event = HashMap::new();
        let mut by_revision: HashMap<i64, Vec<usize>> = HashMap::new();
        let mut previous = i64::MIN;
        for (i, e) in truth.events.iter().enumerate() {
            if e.revision < previous {
                return Err(Error::MalformedWatch(format!(
                    "truth event {i} ({e}) comes after revision {previous}"
                )));
            }
            if e.revision < truth.first_revision || e.revision > current_revision {
                return Err(Error::MalformedWatch(format!(
                    "truth event {i} ({e}) is outside [{}, {current_revision}]",
                    truth.first_revision
                )));
            }
            if by_event.insert((e.revision, e.key.as_str()), i).is_some() {
                return Err(Error::MalformedWatch(format!(
                    "truth has two events for key {:?} at revision {}",
                    e.key, e.revision
                )));
            }
            by_revision.entry(e.revision).or_default().push(i);
            previous = e.revision;
        }
        Ok(Index {
            truth,
            current_revision,
            by_event,
            by_revision,
        })
    }
}

/// Checks every watcher against the truth.
pub fn check_watches(truth: &Truth, watchers: &[Watcher]) -> Result<Vec<WatcherReport>> {
    let index = Index::new(truth)?;
    Ok(watchers.iter().map(|w| check_watcher(&index, w)).collect())
}

/// The event a watcher had got furthest to, as evidence (none before its first event).
fn furthest_evidence(furthest: &Option<Seen>) -> Vec<Evidence> {
    furthest
        .iter()
        .map(|s| Evidence {
            source: s.evidence.0,
            event: s.evidence.1.clone(),
        })
        .collect()
}

/// Where the watcher stands: the furthest event it has received.
struct Seen<'a> {
    /// Position in the prefix-filtered truth.
    pos: usize,
    evidence: (Source, &'a Event),
}

fn check_watcher(index: &Index<'_>, w: &Watcher) -> WatcherReport {
    let truth = index.truth;
    // The truth as this watcher should see it, and each event's position in it.
    let filtered: Vec<usize> = (0..truth.events.len())
        .filter(|&i| truth.events[i].key.starts_with(&w.prefix))
        .collect();
    let position: HashMap<usize, usize> =
        filtered.iter().enumerate().map(|(p, &i)| (i, p)).collect();
    let observed = |session: usize, index: usize, event: &Event| Evidence {
        source: Source::Observed { session, index },
        event: event.clone(),
    };
    let from_truth = |i: usize| Evidence {
        source: Source::Truth,
        event: truth.events[i].clone(),
    };

    let mut anomalies = Vec::new();
    let mut report = |kind: AnomalyKind, evidence: Vec<Evidence>, detail: String| {
        anomalies.push(Anomaly {
            watcher: w.watcher.clone(),
            kind,
            evidence,
            detail,
        });
    };
    let mut furthest: Option<Seen> = None;
    let mut unverifiable = 0;
    let mut events = 0;
    for (si, session) in w.sessions.iter().enumerate() {
        let mut previous: Option<(usize, usize)> = None; // (position, index) in this session
        for (j, ev) in session.events.iter().enumerate() {
            events += 1;
            let here = observed(si, j, ev);
            if session.start_revision > 0 && ev.revision < session.start_revision {
                let mut evidence = furthest_evidence(&furthest);
                evidence.push(here);
                report(
                    AnomalyKind::WentBack,
                    evidence,
                    format!(
                        "session {si}{} asked to start at revision {} but delivered revision {}",
                        member(session),
                        session.start_revision,
                        ev.revision
                    ),
                );
                continue;
            }
            if ev.revision < truth.first_revision {
                unverifiable += 1;
                continue;
            }
            if ev.revision > index.current_revision {
                report(
                    AnomalyKind::Phantom,
                    vec![here],
                    format!(
                        "revision {} is beyond the store's final revision {}",
                        ev.revision, index.current_revision
                    ),
                );
                continue;
            }
            let Some(&ti) = index.by_event.get(&(ev.revision, ev.key.as_str())) else {
                match index.by_revision.get(&ev.revision) {
                    Some(others) => {
                        let mut evidence: Vec<Evidence> =
                            others.iter().map(|&i| from_truth(i)).collect();
                        evidence.push(here);
                        report(
                            AnomalyKind::Mismatch,
                            evidence,
                            format!("revision {} changed other keys", ev.revision),
                        );
                    }
                    None => report(
                        AnomalyKind::Phantom,
                        vec![here],
                        format!("the store has no event at revision {}", ev.revision),
                    ),
                }
                continue;
            };
            let Some(&pos) = position.get(&ti) else {
                report(
                    AnomalyKind::Phantom,
                    vec![from_truth(ti), here],
                    format!(
                        "key {:?} is outside the watched prefix {:?}",
                        ev.key, w.prefix
                    ),
                );
                continue;
            };
            let real = &truth.events[ti];
            if real.kind != ev.kind || real.value != ev.value {
                report(
                    AnomalyKind::Mismatch,
                    vec![from_truth(ti), here.clone()],
                    format!("revision {} differs from the store's history", ev.revision),
                );
            }
            if let Some((before, bj)) = previous {
                if pos <= before {
                    let kind = if pos == before {
                        AnomalyKind::Duplicate
                    } else {
                        AnomalyKind::OutOfOrder
                    };
                    report(
                        kind,
                        vec![observed(si, bj, &session.events[bj]), here],
                        format!(
                            "session {si}{} delivered revision {} after revision {}",
                            member(session),
                            ev.revision,
                            session.events[bj].revision
                        ),
                    );
                    continue;
                }
            }
            previous = Some((pos, j));
            if furthest.as_ref().is_some_and(|s| pos <= s.pos) {
                continue; // a re-delivery the session asked for (start at or below what was seen)
            }
            let expected = match &furthest {
                Some(s) => s.pos + 1,
                None if session.start_revision > 0 => {
                    filtered.partition_point(|&i| truth.events[i].revision < session.start_revision)
                }
                None => pos,
            };
            if pos > expected {
                let mut evidence = furthest_evidence(&furthest);
                evidence.push(from_truth(filtered[expected]));
                evidence.push(here);
                let missing = pos - expected;
                report(
                    AnomalyKind::Gap,
                    evidence,
                    format!(
                        "{missing} event(s) under {:?} never delivered (revisions {}..={}), \
                         session {si}{} started at revision {}",
                        w.prefix,
                        truth.events[filtered[expected]].revision,
                        truth.events[filtered[pos - 1]].revision,
                        member(session),
                        session.start_revision
                    ),
                );
            }
            furthest = Some(Seen {
                pos,
                evidence: (
                    Source::Observed {
                        session: si,
                        index: j,
                    },
                    ev,
                ),
            });
        }
    }
    WatcherReport {
        watcher: w.watcher.clone(),
        sessions: w.sessions.len(),
        events,
        unverifiable,
        anomalies,
    }
}

fn member(session: &Session) -> String {
    session
        .member
        .as_ref()
        .map(|m| format!(" (member {m})"))
        .unwrap_or_default()
}
