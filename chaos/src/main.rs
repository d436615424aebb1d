//! `chaos`: run workloads and nemeses against three members in network namespaces and judge
//! the result (`chaos run --time SECONDS`, needs root), or check recorded histories again
//! (`chaos check --history DIR`).
//!
//! `DIR/*.jsonl` are register histories (see `chaos::history`), `DIR/watch/` holds
//! `truth.json` and one `*.json` per watcher (see `chaos::watch_check`); a run writes them to
//! `RESULTS/history/`.
//!
//! The last line of stdout is the verdict: `valid`, `INVALID: <summary>` or `unknown: <why>`.
//! Exit status: 0 valid, 1 invalid, 2 usage error (including `chaos run` without root or
//! without `ip`/`iptables`), 3 unknown (a budget ran out, or the run was incomplete), 4
//! unreadable or malformed input, 5 the harness could not set up or drive the run (network,
//! members, interrupted).
#![deny(clippy::all)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chaos::check::check_dir;
use chaos::linearizable::Budget;
use chaos::run::cluster::Target;
use chaos::run::workload::RegisterConfig;
use chaos::run::{self, RunOptions};
use chaos::schedule::{Nemesis, Timing};
use clap::{Args, Parser, Subcommand, ValueEnum};

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
        #[command(flatten)]
        budget: BudgetArgs,
    },
    /// Run workloads and nemeses against three members in network namespaces (needs root),
    /// then check the histories. The last line of output is the verdict.
    Run(Box<RunArgs>),
}

#[derive(Args)]
struct BudgetArgs {
    /// Per-key time budget of the linearizability search, in seconds.
    #[arg(long, default_value_t = Budget::default().max_time.as_secs_f64())]
    time_limit_secs: f64,
    /// Per-key step budget of the linearizability search.
    #[arg(long, default_value_t = Budget::default().max_steps)]
    max_steps: u64,
}

impl BudgetArgs {
    fn budget(&self) -> Budget {
        Budget {
            max_time: Duration::from_secs_f64(self.time_limit_secs),
            max_steps: self.max_steps,
            ..Budget::default()
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TargetKind {
    Ferrokube,
    Etcd,
}

/// The nemeses a plain `chaos run` uses: all of them.
const DEFAULT_NEMESES: &str = "partition,isolate,ring,kill,pause,lossy,membership";
/// What the unsafe mode uses unless told otherwise: faults that leave a cut-off member
/// serving reads while the majority moves on.
const UNSAFE_NEMESES: &str = "isolate,partition";

#[derive(Args)]
struct RunArgs {
    /// Length of the workload phase in seconds (faults happen inside it; the final heal,
    /// final reads and checking come after).
    #[arg(long, default_value_t = 60.0)]
    time: f64,
    /// The server the members run.
    #[arg(long, value_enum, default_value_t = TargetKind::Ferrokube)]
    target: TargetKind,
    /// The ferrokube binary (default: `ferrokube` next to this `chaos` executable).
    #[arg(long)]
    ferrokube: Option<PathBuf>,
    /// The etcd binary for `--target etcd`.
    #[arg(long, default_value = "/usr/bin/etcd")]
    etcd: PathBuf,
    /// Nemeses: `all`, `none`, or a comma-separated list of partition, isolate, ring, kill,
    /// pause, lossy, membership [default: all of them; with --unsafe-serializable-reads:
    /// isolate,partition].
    #[arg(long)]
    nemesis: Option<String>,
    /// Seconds each fault stays in place.
    #[arg(long, default_value_t = 10.0)]
    fault_secs: f64,
    /// Seconds of healthy running after each fault.
    #[arg(long, default_value_t = 8.0)]
    heal_secs: f64,
    /// Seconds before the first fault.
    #[arg(long, default_value_t = 3.0)]
    warmup_secs: f64,
    /// Register clients.
    #[arg(long, default_value_t = 10)]
    clients: usize,
    /// Keys per generation (a new generation of keys every --key-period-secs).
    #[arg(long, default_value_t = 8)]
    keys: usize,
    #[arg(long, default_value_t = 15.0)]
    key_period_secs: f64,
    /// Target request rate of all register clients together, per second.
    #[arg(long, default_value_t = 300.0)]
    rate: f64,
    /// Client-side timeout of one operation, in seconds.
    #[arg(long, default_value_t = 2.0)]
    op_timeout_secs: f64,
    /// Watchers on the workload's prefix (0: no watch workload).
    #[arg(long, default_value_t = 3)]
    watchers: usize,
    /// Share of member-to-member packets the `lossy` nemesis drops.
    #[arg(long, default_value_t = 0.2)]
    loss: f64,
    /// UNSAFE on purpose: reads are serializable (served locally by the client's member), so
    /// a cut-off member serves stale values. The checker must report INVALID.
    #[arg(long)]
    unsafe_serializable_reads: bool,
    /// Results folder (default: chaos-results/<UTC timestamp>).
    #[arg(long)]
    results: Option<PathBuf>,
    /// Seed of the schedule, fault targets and workload (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Keep the members' data dirs after a valid run (always kept otherwise).
    #[arg(long)]
    keep_data: bool,
    #[command(flatten)]
    budget: BudgetArgs,
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
        Command::Run(args) => match run_options(*args) {
            Ok(opts) => {
                let outcome = run::run(opts);
                out!("{}", outcome.line);
                ExitCode::from(outcome.exit)
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Check { history, budget } => {
            let mut stdout = std::io::stdout();
            match check_dir(&history, &budget.budget(), &mut stdout) {
                Ok(report) => {
                    out!("{}", report.verdict.line(&history));
                    ExitCode::from(report.verdict.exit_code())
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    out!("unknown: could not check: {e}");
                    ExitCode::from(4)
                }
            }
        }
    }
}

/// Validates the environment and the arguments of `chaos run`; errors are usage errors.
fn run_options(a: RunArgs) -> Result<RunOptions, String> {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("chaos run needs root (network namespaces, iptables): run it with sudo".into());
    }
    for tool in ["ip", "iptables"] {
        if !run::net::have(tool) {
            return Err(format!(
                "chaos run needs `{tool}` on PATH: install the Debian packages iproute2 and \
                 iptables (.ci/setup does)"
            ));
        }
    }
    let target = match a.target {
        TargetKind::Ferrokube => {
            let path = match a.ferrokube {
                Some(p) => p,
                None => std::env::current_exe()
                    .map_err(|e| format!("cannot locate this executable: {e}"))?
                    .with_file_name("ferrokube"),
            };
            if !path.is_file() {
                return Err(format!(
                    "no ferrokube binary at {}: build it with `cargo build [--release] -p \
                     ferrokube` (same profile as chaos), or pass --ferrokube PATH",
                    path.display()
                ));
            }
            Target::Ferrokube(path)
        }
        TargetKind::Etcd => {
            if !a.etcd.is_file() {
                return Err(format!(
                    "no etcd binary at {}: install the Debian package etcd-server, or pass \
                     --etcd PATH",
                    a.etcd.display()
                ));
            }
            Target::Etcd(a.etcd)
        }
    };
    let nemesis = a.nemesis.unwrap_or_else(|| {
        if a.unsafe_serializable_reads {
            UNSAFE_NEMESES
        } else {
            DEFAULT_NEMESES
        }
        .to_owned()
    });
    let nemeses = Nemesis::parse_list(&nemesis)?;
    let secs = |name: &str, v: f64| {
        if v.is_finite() && v >= 0.0 {
            Ok(Duration::from_secs_f64(v))
        } else {
            Err(format!("--{name} must be a number of seconds ≥ 0, not {v}"))
        }
    };
    if a.clients == 0 || a.keys == 0 {
        return Err("--clients and --keys must be at least 1".into());
    }
    if !(0.0..1.0).contains(&a.loss) {
        return Err("--loss is a share of packets in [0, 1)".into());
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let results = a
        .results
        .unwrap_or_else(|| PathBuf::from("chaos-results").join(utc_stamp(now.as_secs())));
    if results.exists() && std::fs::read_dir(&results).is_ok_and(|mut d| d.next().is_some()) {
        return Err(format!(
            "results folder {} exists and is not empty: choose another --results",
            results.display()
        ));
    }
    Ok(RunOptions {
        target,
        members: 3,
        nemeses,
        timing: Timing {
            total: secs("time", a.time)?,
            warmup: secs("warmup-secs", a.warmup_secs)?,
            fault: secs("fault-secs", a.fault_secs)?,
            heal: secs("heal-secs", a.heal_secs)?,
        },
        seed: a.seed.unwrap_or(now.as_nanos() as u64),
        register: RegisterConfig {
            clients: a.clients,
            keys: a.keys,
            key_period: secs("key-period-secs", a.key_period_secs.max(1.0))?,
            rate: a.rate.max(1.0),
            op_timeout: secs("op-timeout-secs", a.op_timeout_secs.max(0.1))?,
            serializable_reads: a.unsafe_serializable_reads,
        },
        watchers: a.watchers,
        loss: a.loss,
        results,
        keep_data: a.keep_data,
        budget: a.budget.budget(),
    })
}

/// `YYYYMMDD-HHMMSS` (UTC) for a Unix time.
fn utc_stamp(unix: u64) -> String {
    let t = i64::try_from(unix)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_stamps() {
        assert_eq!(super::utc_stamp(0), "19700101-000000");
        assert_eq!(super::utc_stamp(1_795_000_000), "20261118-110640");
        assert_eq!(super::utc_stamp(951_782_400), "20000229-000000");
    }
}
