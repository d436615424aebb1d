//! Runs every checker over one history directory and turns their reports into one verdict:
//! what `chaos check --history DIR` prints and what `chaos run` decides with.

use std::io::Write;
use std::path::Path;

use crate::history::History;
use crate::linearizable::{self, Budget};
use crate::watch_check;
use crate::Result;

/// The verdict over a whole directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every key linearizable and every watcher free of anomalies.
    Valid,
    /// At least one anomaly; the summary names each.
    Invalid(String),
    /// No anomaly found, but some key's search ran out of budget.
    Unknown(String),
    /// The directory has no histories at all.
    Empty,
}

impl Verdict {
    /// The verdict as the last line of output: `valid`, `INVALID: ...` or `unknown: ...`.
    pub fn line(&self, dir: &Path) -> String {
        match self {
            Verdict::Valid => "valid".into(),
            Verdict::Invalid(s) => format!("INVALID: {s}"),
            Verdict::Unknown(s) => format!("unknown: {s}"),
            Verdict::Empty => format!(
                "unknown: nothing to check in {} (no *.jsonl, no watch/)",
                dir.display()
            ),
        }
    }

    /// The process exit status documented in `main.rs`: 0 valid, 1 invalid, 3 unknown, 4 empty.
    pub fn exit_code(&self) -> u8 {
        match self {
            Verdict::Valid => 0,
            Verdict::Invalid(_) => 1,
            Verdict::Unknown(_) => 3,
            Verdict::Empty => 4,
        }
    }
}

/// What [`check_dir`] found, besides the per-key lines it wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub verdict: Verdict,
    /// Keys found linearizable, not, and undecided.
    pub keys_valid: usize,
    pub keys_invalid: usize,
    pub keys_unknown: usize,
    /// Watchers checked, and the anomalies among them.
    pub watchers: usize,
    pub watch_anomalies: usize,
}

/// Checks `dir/*.jsonl` (register histories) and `dir/watch/` (watchers and truth), writing one
/// line per key and per watcher — with the minimal sub-history or the anomalies' evidence when
/// something is wrong — to `out`. The verdict line itself is left to the caller.
pub fn check_dir(dir: &Path, budget: &Budget, out: &mut dyn Write) -> Result<Report> {
    let mut invalid: Vec<String> = Vec::new();
    let mut unknown: Vec<String> = Vec::new();
    let mut checked_anything = false;
    let mut report = Report {
        verdict: Verdict::Valid,
        keys_valid: 0,
        keys_invalid: 0,
        keys_unknown: 0,
        watchers: 0,
        watch_anomalies: 0,
    };
    // A closed pipe (`chaos check ... | head`) must not hide the verdict's exit code.
    macro_rules! line {
        ($($arg:tt)*) => {{ let _ = writeln!(out, $($arg)*); }};
    }

    let history = History::load_dir(dir)?;
    if !history.records.is_empty() {
        checked_anything = true;
        for key in linearizable::check_history(&history, budget)? {
            let effort = format!(
                "{} ops, {} searched, {} steps, {:.1?}",
                key.operations, key.searched, key.steps, key.elapsed
            );
            match &key.verdict {
                linearizable::Verdict::Valid => {
                    report.keys_valid += 1;
                    line!("key {:?}: linearizable ({effort})", key.key);
                }
                linearizable::Verdict::Invalid {
                    key,
                    minimal_subhistory,
                    explanation,
                } => {
                    report.keys_invalid += 1;
                    let explanation = explanation.replace('\n', "\n    ");
                    line!("key {key:?}: NOT LINEARIZABLE ({effort})\n    {explanation}");
                    line!(
                        "  minimal sub-history ({} records):",
                        minimal_subhistory.len()
                    );
                    for r in minimal_subhistory {
                        line!(
                            "    {}",
                            serde_json::to_string(r).expect("records serialize")
                        );
                    }
                    invalid.push(format!("key {key:?} not linearizable"));
                }
                linearizable::Verdict::Unknown { key, reason } => {
                    report.keys_unknown += 1;
                    line!("key {key:?}: unknown ({reason})");
                    unknown.push(format!("key {key:?}: {reason}"));
                }
            }
        }
    }

    let watch_dir = dir.join("watch");
    if watch_dir.is_dir() {
        checked_anything = true;
        let (truth, watchers) = watch_check::load_watch_dir(&watch_dir)?;
        for w in watch_check::check_watches(&truth, &watchers)? {
            report.watchers += 1;
            let summary = format!(
                "{} events in {} sessions, {} unverifiable",
                w.events, w.sessions, w.unverifiable
            );
            if w.anomalies.is_empty() {
                line!("watcher {:?}: ok ({summary})", w.watcher);
            } else {
                report.watch_anomalies += w.anomalies.len();
                line!(
                    "watcher {:?}: {} ANOMALIES ({summary})",
                    w.watcher,
                    w.anomalies.len()
                );
                for a in &w.anomalies {
                    line!("  {a}");
                }
                invalid.push(format!(
                    "watcher {:?} has {} anomalies",
                    w.watcher,
                    w.anomalies.len()
                ));
            }
        }
    }

    report.verdict = if !checked_anything {
        Verdict::Empty
    } else if !invalid.is_empty() {
        if !unknown.is_empty() {
            invalid.push(format!("and {} key(s) unknown", unknown.len()));
        }
        Verdict::Invalid(invalid.join("; "))
    } else if !unknown.is_empty() {
        Verdict::Unknown(unknown.join("; "))
    } else {
        Verdict::Valid
    };
    Ok(report)
}
