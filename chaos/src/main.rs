//! `chaos`: check recorded histories (`chaos check --history DIR`); running the workloads
//! against a three-member cluster (`chaos run`) comes with that cluster.
//!
//! `DIR/*.jsonl` are register histories (see `chaos::history`), `DIR/watch/` holds
//! `truth.json` and one `*.json` per watcher (see `chaos::watch_check`).
//!
//! Exit status: 0 valid, 1 invalid, 2 usage error or not implemented, 3 unknown (a budget ran
//! out), 4 unreadable or malformed input.
#![deny(clippy::all)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use chaos::history::History;
use chaos::linearizable::{self, Budget, Verdict};
use chaos::watch_check;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "chaos",
    about = "Jepsen-style chaos harness for the ferrokube store"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check the histories a run recorded.
    Check {
        /// Directory with `*.jsonl` register histories and optionally `watch/*.json`.
        #[arg(long)]
        history: PathBuf,
        /// Per-key time budget of the linearizability search, in seconds.
        #[arg(long, default_value_t = Budget::default().max_time.as_secs_f64())]
        time_limit_secs: f64,
        /// Per-key step budget of the linearizability search.
        #[arg(long, default_value_t = Budget::default().max_steps)]
        max_steps: u64,
    },
    /// Run workloads and nemeses against a three-member store (not implemented yet).
    Run,
}

/// Prints a line to stdout, ignoring a closed pipe (`chaos check ... | head`): the reader has
/// all it wanted, and a panic would only hide the verdict's exit code.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run => {
            eprintln!("not implemented yet: needs the three-member store");
            ExitCode::from(2)
        }
        Command::Check {
            history,
            time_limit_secs,
            max_steps,
        } => {
            let budget = Budget {
                max_time: Duration::from_secs_f64(time_limit_secs),
                max_steps,
                ..Budget::default()
            };
            match check(&history, &budget) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("error: {e}");
                    out!("unknown: could not check: {e}");
                    ExitCode::from(4)
                }
            }
        }
    }
}

fn check(dir: &Path, budget: &Budget) -> chaos::Result<ExitCode> {
    let mut invalid: Vec<String> = Vec::new();
    let mut unknown: Vec<String> = Vec::new();
    let mut checked_anything = false;

    let history = History::load_dir(dir)?;
    if !history.records.is_empty() {
        checked_anything = true;
        for report in linearizable::check_history(&history, budget)? {
            let effort = format!(
                "{} ops, {} searched, {} steps, {:.1?}",
                report.operations, report.searched, report.steps, report.elapsed
            );
            match &report.verdict {
                Verdict::Valid => out!("key {:?}: linearizable ({effort})", report.key),
                Verdict::Invalid {
                    key,
                    minimal_subhistory,
                    explanation,
                } => {
                    let explanation = explanation.replace('\n', "\n    ");
                    out!("key {key:?}: NOT LINEARIZABLE ({effort})\n    {explanation}");
                    out!(
                        "  minimal sub-history ({} records):",
                        minimal_subhistory.len()
                    );
                    for r in minimal_subhistory {
                        out!(
                            "    {}",
                            serde_json::to_string(r).expect("records serialize")
                        );
                    }
                    invalid.push(format!("key {key:?} not linearizable"));
                }
                Verdict::Unknown { key, reason } => {
                    out!("key {key:?}: unknown ({reason})");
                    unknown.push(format!("key {key:?}: {reason}"));
                }
            }
        }
    }

    let watch_dir = dir.join("watch");
    if watch_dir.is_dir() {
        checked_anything = true;
        let (truth, watchers) = watch_check::load_watch_dir(&watch_dir)?;
        for report in watch_check::check_watches(&truth, &watchers)? {
            let summary = format!(
                "{} events in {} sessions, {} unverifiable",
                report.events, report.sessions, report.unverifiable
            );
            if report.anomalies.is_empty() {
                out!("watcher {:?}: ok ({summary})", report.watcher);
            } else {
                out!(
                    "watcher {:?}: {} ANOMALIES ({summary})",
                    report.watcher,
                    report.anomalies.len()
                );
                for a in &report.anomalies {
                    out!("  {a}");
                }
                invalid.push(format!(
                    "watcher {:?} has {} anomalies",
                    report.watcher,
                    report.anomalies.len()
                ));
            }
        }
    }

    if !checked_anything {
        out!(
            "unknown: nothing to check in {} (no *.jsonl, no watch/)",
            dir.display()
        );
        return Ok(ExitCode::from(4));
    }
    Ok(if !invalid.is_empty() {
        if !unknown.is_empty() {
            invalid.push(format!("and {} key(s) unknown", unknown.len()));
        }
        out!("INVALID: {}", invalid.join("; "));
        ExitCode::from(1)
    } else if !unknown.is_empty() {
        out!("unknown: {}", unknown.join("; "));
        ExitCode::from(3)
    } else {
        out!("valid");
        ExitCode::SUCCESS
    })
}
