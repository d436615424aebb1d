//! Benchmark runner: ferrokube's store vs etcd, same client, same load, same machine, one run.
//!
//! `cargo run --release -p benches -- store` builds `ferrokube` (release), starts
//! `/usr/bin/etcd` and `ferrokube store` one after the other (one member each by default,
//! `--members 3` for three-member clusters on loopback; fresh temp data dirs, free loopback
//! ports, both servers with their default raft timings, 100 ms heartbeat / 1 s election),
//! drives each with identical `etcd-client` load and prints metric | etcd | ferrokube |
//! ratio (ferrokube/etcd) | which way is better.
//! `--quick` is a small smoke run; `--json` prints one JSON object instead of the table;
//! `--only etcd|ferrokube`; `--ferrokube-bin PATH` skips the build. Exit code: 0 when every
//! phase completed and every watcher saw every event, 1 otherwise (the table says why),
//! 2 on a setup error, 130 on ctrl-c (servers are stopped in every case).
//!
//! Phases (each on its own key prefix, each preceded by a warm-up of `--warmup` puts on
//! other keys, each bounded by `--phase-timeout`):
//! 1. sequential puts from one client: p50/p99 latency and puts/s;
//! 2. put throughput at 16 and 64 concurrent workers sharing one fixed total count, then
//!    linearizable gets of those keys at the same concurrency (member CPU per request is
//!    reported for both: it is less distorted by other load on the machine than rates);
//! 3. one watcher on a prefix + one writer doing sequential puts: events/s, and latency
//!    put-acknowledged → event-received matched by key ("ack->event"; etcd usually sends
//!    the event before the put's response arrives, which counts as 0 ms, so the table also
//!    shows put-issued → event); then `--watchers` (100) watches on one prefix, each its own
//!    watch stream, spread over `--watch-conns` (4) connections: events/s and a check that
//!    every watcher received every event;
//! 4. VmRSS / VmHWM of the server process after the load (summed over members).
//!
//! Several members: the endpoints are ordered followers first, leader last (by `Status`
//! after startup), and connection `k` of a phase talks to member `k mod n` only: per-client
//! throughput workers round-robin over the members, a single sequential writer rotates its
//! puts over all of them, the fan-out watch connections (rounded up to a multiple of n) split
//! the watchers evenly, and the single watcher sits on a follower. Writes that land on a
//! follower are forwarded to the leader by both servers. `--conn-mode shared` instead uses one
//! etcd-client balanced channel over every endpoint.
//!
//! Connections: with `--conn-mode per-client` (the default) every throughput worker has its
//! own `etcd_client::Client`, i.e. its own HTTP/2 connection; `shared` clones one client
//! into all workers. Per-client gave etcd its best numbers on this 2-core machine (e.g.
//! ~10.5k vs ~8.6k puts/s at 16 clients, ~16.6k vs ~15.7k at 64; noisy), so it is the
//! default, and the same mode is always used for both servers.
//!
//! Modules: `cluster` (spawning/stopping N-member clusters), `load` (workloads → result
//! structs), `report` (table + JSON), `stats` (percentiles, rates, ratios).
//!
//! `benches apiserver` is a separate benchmark of `ferrokube apiserver` (create throughput,
//! LIST, watch fan-out through the watch cache): see `apiserver.rs`; `https.rs` is its client.
#![deny(clippy::all)]

mod apiserver;
mod cluster;
mod https;
mod load;
mod report;
mod stats;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use cluster::{Cluster, ServerKind, ServerSpec};
use load::{ConnMode, LoadConfig, SuiteCounts};
use report::ServerReport;

#[derive(Debug, Parser)]
#[command(name = "benches", about = "ferrokube benchmark runner")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Store benchmark: etcd vs ferrokube store over the etcd v3 API.
    Store(StoreOpts),
    /// Apiserver benchmark: create throughput, LIST, and watch fan-out through the watch cache.
    Apiserver(apiserver::ApiserverOpts),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Only {
    Etcd,
    Ferrokube,
}

#[derive(Debug, clap::Args)]
struct StoreOpts {
    /// Small counts and short deadlines: a smoke run (seconds, not minutes).
    #[arg(long)]
    quick: bool,
    /// Print one JSON object on stdout instead of the table (progress still goes to stderr).
    #[arg(long)]
    json: bool,
    /// Operation count for every phase (sequential puts, throughput puts, watch puts,
    /// fan-out puts). Default per phase: 2000 / 10000 / 10000 / 2000 (quick: 100/500/500/50).
    /// The per-phase flags below override it.
    #[arg(long, value_name = "N")]
    ops: Option<u64>,
    /// Sequential puts (latency phase).
    #[arg(long, value_name = "N")]
    seq_ops: Option<u64>,
    /// Total puts of each concurrent throughput phase.
    #[arg(long, value_name = "N")]
    throughput_ops: Option<u64>,
    /// Puts observed by the single watcher.
    #[arg(long, value_name = "N")]
    watch_ops: Option<u64>,
    /// Puts observed by each of the fan-out watchers.
    #[arg(long, value_name = "N")]
    fanout_ops: Option<u64>,
    /// Watchers of the fan-out phase.
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    /// Concurrent clients of the throughput phases (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = vec![16, 64])]
    clients: Vec<usize>,
    /// How throughput clients map to connections: `per-client` (each worker its own
    /// etcd_client::Client and connection; gave etcd its best numbers here) or `shared`
    /// (one connection for all). The same mode is used for both servers.
    #[arg(long, value_enum, default_value_t = ConnMode::PerClient)]
    conn_mode: ConnMode,
    /// Connections carrying the fan-out watchers (each watcher has its own watch stream).
    #[arg(long, default_value_t = 4)]
    watch_conns: usize,
    /// Warm-up puts before each phase (default 200, quick 20).
    #[arg(long)]
    warmup: Option<usize>,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Wall-clock bound per phase in seconds (default 120, quick 30).
    #[arg(long)]
    phase_timeout: Option<u64>,
    /// Run only one server kind.
    #[arg(long, value_enum)]
    only: Option<Only>,
    /// Members per cluster (e.g. 3), all on loopback; clients spread over every member.
    #[arg(long, default_value_t = 1)]
    members: usize,
    /// etcd binary.
    #[arg(long, default_value = "/usr/bin/etcd")]
    etcd_bin: PathBuf,
    /// ferrokube binary; by default the runner builds it with
    /// `cargo build --release -p ferrokube --bin ferrokube` and takes it from the target dir.
    #[arg(long)]
    ferrokube_bin: Option<PathBuf>,
}

fn progress(msg: &str) {
    eprintln!("[benches] {msg}");
}

/// Builds the release ferrokube binary and returns its path (target dir from `cargo metadata`).
fn build_ferrokube() -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("no workspace dir")?;
    progress("building ferrokube: cargo build --release -p ferrokube --bin ferrokube");
    let status = Command::new(&cargo)
        .args([
            "build",
            "--release",
            "-p",
            "ferrokube",
            "--bin",
            "ferrokube",
        ])
        .current_dir(workspace)
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --release -p ferrokube failed ({status})");
    }
    let out = Command::new(&cargo)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(workspace)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed ({})", out.status);
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing cargo metadata")?;
    let target = meta["target_directory"]
        .as_str()
        .context("cargo metadata: no target_directory")?;
    let bin = Path::new(target).join("release").join("ferrokube");
    if !bin.is_file() {
        bail!("{} does not exist after the build", bin.display());
    }
    Ok(bin)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Starts a cluster of `spec`, runs the suite, reads memory, stops it.
async fn bench_one(
    spec: &ServerSpec,
    members: usize,
    counts: &SuiteCounts,
    cfg: &LoadConfig,
) -> ServerReport {
    let name = spec.kind.name();
    let mut rep = ServerReport {
        kind: spec.kind,
        binary: spec.binary.display().to_string(),
        version: spec.version(),
        members,
        suite: None,
        memory: None,
        error: None,
    };
    progress(&format!(
        "starting {name} ({members} member(s)): {}",
        rep.version
    ));
    let mut cluster = match Cluster::start(spec, members, Duration::from_secs(30)).await {
        Ok(c) => c,
        Err(e) => {
            rep.error = Some(format!("start failed: {e:#}"));
            return rep;
        }
    };
    let (eps, leader) = cluster.endpoints_by_role().await;
    progress(&format!("{name} ready: {}", cluster.describe()));
    if members > 1 {
        progress(&format!(
            "{name}: leader {}; load spreads over {} (followers first)",
            leader.as_deref().unwrap_or("unknown"),
            eps.join(" ")
        ));
    }
    let suite = load::run_suite(&eps, counts, cfg, &|m| progress(&format!("{name}: {m}")), &|| cluster.cpu_secs()).await;
    rep.suite = Some(suite);
    if let Some(exit) = cluster.exited_member() {
        rep.error = Some(format!("{exit}\n{}", cluster.describe_logs()));
    } else {
        match cluster.memory() {
            Ok(m) => rep.memory = Some(m),
            Err(e) => rep.error = Some(format!("reading memory: {e:#}")),
        }
    }
    cluster.stop();
    progress(&format!("{name} stopped"));
    rep
}

async fn run_store(o: StoreOpts) -> Result<bool> {
    if o.members == 0 {
        bail!("--members must be at least 1");
    }
    if o.clients.is_empty() || o.clients.contains(&0) {
        bail!("--clients needs positive counts");
    }
    let (seq, tput, watch, fan, warm, timeout) = if o.quick {
        (100, 500, 500, 50, 20, 30)
    } else {
        (2000, 10_000, 10_000, 2000, 200, 120)
    };
    let counts = SuiteCounts {
        sequential_puts: o.seq_ops.or(o.ops).unwrap_or(seq),
        throughput_puts: o.throughput_ops.or(o.ops).unwrap_or(tput),
        throughput_clients: o.clients.clone(),
        watch_puts: o.watch_ops.or(o.ops).unwrap_or(watch),
        fanout_puts: o.fanout_ops.or(o.ops).unwrap_or(fan),
        fanout_watchers: o.watchers.max(1),
    };
    let cfg = LoadConfig {
        value_size: o.value_size,
        warmup: o.warmup.unwrap_or(warm),
        phase_timeout: Duration::from_secs(o.phase_timeout.unwrap_or(timeout)),
        watch_drain: Duration::from_secs(if o.quick { 10 } else { 30 }),
        conn_mode: o.conn_mode,
        watch_conns: o.watch_conns.max(1),
    };
    let want_etcd = o.only != Some(Only::Ferrokube);
    let want_ferro = o.only != Some(Only::Etcd);

    // Build first, so the build does not overlap any measurement.
    let ferro_bin = if want_ferro {
        Some(match &o.ferrokube_bin {
            Some(p) => Ok(p.clone()),
            None => tokio::task::spawn_blocking(build_ferrokube)
                .await
                .context("build task")?,
        })
    } else {
        None
    };

    let load_before = loadavg();
    let mut etcd_rep = None;
    let mut ferro_rep = None;
    if want_etcd {
        let spec = ServerSpec {
            kind: ServerKind::Etcd,
            binary: o.etcd_bin.clone(),
        };
        etcd_rep = Some(bench_one(&spec, o.members, &counts, &cfg).await);
    }
    match ferro_bin {
        Some(Ok(bin)) => {
            let spec = ServerSpec {
                kind: ServerKind::Ferrokube,
                binary: bin,
            };
            ferro_rep = Some(bench_one(&spec, o.members, &counts, &cfg).await);
        }
        Some(Err(e)) => {
            ferro_rep = Some(ServerReport {
                kind: ServerKind::Ferrokube,
                binary: "(not built)".into(),
                version: "?".into(),
                members: o.members,
                suite: None,
                memory: None,
                error: Some(format!("build failed: {e:#}")),
            });
        }
        None => {}
    }
    let load_after = loadavg();

    let rows = report::rows(
        etcd_rep.as_ref(),
        ferro_rep.as_ref(),
        &counts.throughput_clients,
        counts.fanout_watchers,
    );
    let present: Vec<&ServerReport> = etcd_rep.iter().chain(ferro_rep.iter()).collect();
    let problems = report::problems(&present);
    let ok = problems.is_empty();
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    if o.json {
        let obj = serde_json::json!({
            "benchmark": "store",
            "ok": ok,
            "quick": o.quick,
            "members": o.members,
            "counts": counts,
            "load_config": cfg,
            "machine": { "cpus": nproc, "loadavg_before": load_before, "loadavg_after": load_after },
            "rows": rows,
            "problems": problems,
            "etcd": etcd_rep,
            "ferrokube": ferro_rep,
        });
        println!("{}", serde_json::to_string_pretty(&obj)?);
    } else {
        let mut header = vec![format!(
            "store benchmark: {} member(s) each; {} B values; seq {} puts; throughput {} puts at {:?} clients ({}); \
             watch x1 {} puts; watch x{} {} puts; warm-up {} puts/phase",
            o.members,
            cfg.value_size,
            counts.sequential_puts,
            counts.throughput_puts,
            counts.throughput_clients,
            match cfg.conn_mode {
                ConnMode::PerClient => "one connection per client",
                ConnMode::Shared => "one shared connection",
            },
            counts.watch_puts,
            counts.fanout_watchers,
            counts.fanout_puts,
            cfg.warmup
        )];
        if o.members > 1 {
            header.push(format!(
                "{} members on loopback: connection k -> member k mod {} (followers first, leader last); \
                 the single writer rotates over members; memory rows are summed over members",
                o.members, o.members
            ));
        }
        for r in &present {
            header.push(format!("{}: {} ({})", r.kind.name(), r.version, r.binary));
        }
        header.push(format!(
            "machine: {nproc} cpus, loadavg before {load_before}, after {load_after}"
        ));
        header.push(String::new());
        print!(
            "{}",
            report::table(
                &rows,
                etcd_rep.is_some(),
                ferro_rep.is_some(),
                &header,
                &problems
            )
        );
    }
    Ok(ok)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let run = async {
        match cli.command {
            Cmd::Store(o) => run_store(o).await,
            Cmd::Apiserver(o) => apiserver::run(o).await,
        }
    };
    // On ctrl-c the run future is dropped, which drops any Cluster and stops its servers.
    tokio::select! {
        r = run => match r {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("benches: error: {e:#}");
                ExitCode::from(2)
            }
        },
        _ = tokio::signal::ctrl_c() => {
            eprintln!("benches: interrupted; servers stopped");
            ExitCode::from(130)
        }
    }
}
