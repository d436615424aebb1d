//! `chaos run`: three members in their own network namespaces, register clients and watchers
//! working against them while the nemesis injects and heals faults, then a final heal, final
//! reads, the checkers and a summary. Everything a run produces goes to its results folder:
//!
//! ```text
//! RESULTS/history/client-NN.jsonl   register histories (one per client) + final-reads.jsonl
//! RESULTS/history/watch/*.json      watchers' sessions and truth.json
//! RESULTS/logs/nN.log               each member's stdout+stderr, with chaos's markers
//! RESULTS/nemesis.jsonl             the fault timeline (one window per line)
//! RESULTS/check.txt                 the checkers' full output (one line per key / watcher)
//! RESULTS/summary.txt               what `chaos run` printed
//! RESULTS/latency.svg               op latency over time, fault windows shaded
//! ```
//!
//! Cleanup is a drop guard: on success, error, panic or SIGINT/SIGTERM the members are killed
//! by pid and the namespaces deleted. Only a SIGKILL of the harness leaks them (`ip netns list
//! | grep fkc<pid>`, then `ip netns del`).

pub mod cluster;
pub mod net;
pub mod watcher;
pub mod workload;

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use self::cluster::{mark_log, Cluster, Target};
use self::net::Net;
use self::workload::{Ctx, RegisterConfig};
use crate::check::{self, Verdict};
use crate::history::History;
use crate::linearizable::Budget;
use crate::schedule::{self, Nemesis, Rng, Timing};
use crate::summary::{self, FaultWindow};

/// Everything `chaos run` needs to know.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub target: Target,
    pub members: usize,
    pub nemeses: Vec<Nemesis>,
    pub timing: Timing,
    pub seed: u64,
    pub register: RegisterConfig,
    pub watchers: usize,
    /// Share of packets dropped by the `lossy` nemesis.
    pub loss: f64,
    pub results: PathBuf,
    /// Keep the members' data dirs even after a valid run.
    pub keep_data: bool,
    pub budget: Budget,
}

/// How a run ended: the verdict line (printed last) and the exit status.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub line: String,
    pub exit: u8,
}

/// Exit status when the harness itself could not do its job (no network, no members).
pub const EXIT_HARNESS: u8 = 5;

/// Prints to stdout and appends to the summary file.
struct Out {
    file: Option<File>,
}

impl Out {
    fn line(&mut self, s: &str) {
        let mut stdout = std::io::stdout();
        let _ = writeln!(stdout, "{s}");
        let _ = stdout.flush();
        if let Some(f) = &mut self.file {
            let _ = writeln!(f, "{s}");
        }
    }
}

/// Runs the whole thing. Must be called before any other thread exists (it moves the calling
/// thread into the run's network namespace, and every thread started later inherits that).
pub fn run(opts: RunOptions) -> Outcome {
    let harness_error = |what: String| Outcome {
        line: format!("unknown: {what}"),
        exit: EXIT_HARNESS,
    };
    let history_dir = opts.results.join("history");
    if let Err(e) = fs::create_dir_all(history_dir.join("watch"))
        .and_then(|_| fs::create_dir_all(opts.results.join("logs")))
    {
        return harness_error(format!("{}: {e}", opts.results.display()));
    }
    let mut out = Out {
        file: File::create(opts.results.join("summary.txt")).ok(),
    };
    let mut rng = Rng::new(opts.seed);
    let steps = match schedule::schedule(&opts.nemeses, &opts.timing, &mut rng) {
        Ok(s) => s,
        Err(e) => return harness_error(e),
    };
    let names: Vec<&str> = opts.nemeses.iter().map(|n| n.name()).collect();
    out.line(&format!(
        "chaos run: {} x{}, {} s, nemeses [{}] ({} fault cycles), {} clients on {} keys, {} \
         watchers, {} reads, seed {}",
        opts.target.name(),
        opts.members,
        opts.timing.total.as_secs_f64(),
        names.join(","),
        steps.len(),
        opts.register.clients,
        opts.register.keys,
        opts.watchers,
        if opts.register.serializable_reads {
            "UNSAFE serializable"
        } else {
            "linearizable"
        },
        opts.seed
    ));
    out.line(&format!("results: {}", opts.results.display()));
    let started = Instant::now();

    let prefix = format!("fkc{}", std::process::id());
    let net = match Net::create(&prefix, opts.members) {
        Ok(n) => n,
        Err(e) => return harness_error(format!("could not build the network: {e}")),
    };
    if let Err(e) = net.enter_bridge_ns() {
        return harness_error(format!("could not enter the bridge namespace: {e}"));
    }
    // The run's one clock: histories, the timeline and the members' log markers all use it.
    let clock = Instant::now();
    let cluster = Arc::new(Mutex::new(Cluster::new(
        opts.target.clone(),
        &net,
        opts.members,
        &opts.results,
        &format!("{prefix}-token"),
        clock,
    )));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return harness_error(format!("tokio runtime: {e}")),
    };
    let driven = runtime.block_on(async {
        let drive = drive(
            &opts,
            &steps,
            &net,
            cluster.clone(),
            &history_dir,
            rng,
            clock,
        );
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => return Err(format!("SIGTERM handler: {e}")),
            };
        tokio::select! {
            r = drive => r,
            _ = tokio::signal::ctrl_c() => Err("interrupted (SIGINT)".to_owned()),
            _ = term.recv() => Err("interrupted (SIGTERM)".to_owned()),
        }
    });
    // Tasks still running (after an interrupt) are dropped with the runtime, before the members
    // and namespaces they talk to go away.
    runtime.shutdown_timeout(Duration::from_secs(2));
    // tokio's handlers stay installed after its runtime is gone; without this, Ctrl-C would be
    // ignored while the checkers run (nothing is left to clean up by then).
    // SAFETY: signal(2) with SIG_DFL for two standard signals.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
        libc::signal(libc::SIGTERM, libc::SIG_DFL);
    }
    {
        let mut c = lock(&cluster);
        c.stop_all(Duration::from_secs(5));
    }
    let driven = match driven {
        Ok(d) => d,
        Err(e) => {
            drop(cluster);
            drop(net);
            out.line(&format!("harness error: {e}"));
            return harness_error(e);
        }
    };
    drop(net);

    // Judge.
    let mut check_out: Box<dyn Write> = match File::create(opts.results.join("check.txt")) {
        Ok(f) => Box::new(std::io::BufWriter::new(f)),
        Err(_) => Box::new(std::io::sink()),
    };
    let report = match check::check_dir(&history_dir, &opts.budget, &mut *check_out) {
        Ok(r) => r,
        Err(e) => return harness_error(format!("could not check the histories: {e}")),
    };
    drop(check_out);
    let ops = History::load_dir(&history_dir)
        .and_then(|h| h.operations())
        .unwrap_or_default();
    let end_ns = driven.workload_end_ns;
    let table = summary::outcome_table(&ops);
    out.line("operations (ok / fail / unknown):");
    for (name, c) in [
        ("read", table.read),
        ("write", table.write),
        ("cas", table.cas),
        ("all", table.all),
    ] {
        out.line(&format!(
            "  {name:<6} {:>7} / {:>5} / {:>5}   ({} total)",
            c.ok,
            c.fail,
            c.info,
            c.total()
        ));
    }
    let healthy = summary::healthy_ok_per_sec(&ops, &driven.windows, end_ns);
    out.line(&format!(
        "availability (ops invoked in each fault window; healthy baseline {healthy:.0} ok/s):"
    ));
    for a in summary::availability(&ops, &driven.windows) {
        let w = &a.window;
        out.line(&format!(
            "  {:>6.1}-{:<6.1}s {:<10} {:<26} {:>5} ops, {:>3.0}% ok, {:>4.0} ok/s, longest \
             outage {:.1} s",
            w.start_ns as f64 / 1e9,
            w.end_ns as f64 / 1e9,
            w.nemesis,
            w.detail,
            a.counts.total(),
            if a.counts.total() == 0 {
                0.0
            } else {
                100.0 * a.counts.ok as f64 / a.counts.total() as f64
            },
            a.ok_per_sec,
            a.longest_outage_ns as f64 / 1e9
        ));
    }
    if driven.windows.is_empty() {
        out.line("  (no faults)");
    }
    let stale = summary::stale_reads(&ops);
    out.line(&format!(
        "checker: {} keys linearizable, {} not, {} unknown; {} watchers, {} watch anomalies; \
         {} stale reads (details: {})",
        report.keys_valid,
        report.keys_invalid,
        report.keys_unknown,
        report.watchers,
        report.watch_anomalies,
        stale.len(),
        opts.results.join("check.txt").display()
    ));
    for s in stale.iter().take(3) {
        out.line(&format!(
            "  stale read: {} on {:?} invoked at {:.3} s, after {} had completed",
            s.read,
            s.read.key,
            s.read.invoke_ns as f64 / 1e9,
            s.newer
        ));
    }
    let svg = summary::latency_svg(
        &ops,
        &driven.windows,
        end_ns,
        opts.register.op_timeout.as_secs_f64() * 1000.0,
        20_000,
    );
    if fs::write(opts.results.join("latency.svg"), svg).is_ok() {
        out.line(&format!(
            "latency plot: {}",
            opts.results.join("latency.svg").display()
        ));
    }
    for p in &driven.problems {
        out.line(&format!("problem: {p}"));
    }
    out.line(&format!(
        "duration: {:.1} s",
        started.elapsed().as_secs_f64()
    ));

    let mut invalid = Vec::new();
    let mut unknown = Vec::new();
    match &report.verdict {
        Verdict::Valid | Verdict::Empty => {}
        Verdict::Invalid(_) => {
            if report.keys_invalid > 0 {
                invalid.push(format!(
                    "{} of {} keys not linearizable ({} stale reads)",
                    report.keys_invalid,
                    report.keys_valid + report.keys_invalid + report.keys_unknown,
                    stale.len()
                ));
            }
            if report.watch_anomalies > 0 {
                invalid.push(format!("{} watch anomalies", report.watch_anomalies));
            }
        }
        Verdict::Unknown(s) => unknown.push(s.clone()),
    }
    if report.verdict == Verdict::Empty || table.all.ok == 0 {
        unknown.push("no operation succeeded".to_owned());
    }
    invalid.extend(driven.liveness.iter().cloned());
    unknown.extend(driven.problems.iter().cloned());
    let outcome = if !invalid.is_empty() {
        Outcome {
            line: format!("INVALID: {}", invalid.join("; ")),
            exit: 1,
        }
    } else if !unknown.is_empty() {
        Outcome {
            line: format!("unknown: {}", unknown.join("; ")),
            exit: 3,
        }
    } else {
        Outcome {
            line: "valid".to_owned(),
            exit: 0,
        }
    };
    let c = lock(&cluster);
    if outcome.exit == 0 && !opts.keep_data {
        c.remove_data();
    }
    if let Some(f) = &mut out.file {
        let _ = writeln!(f, "{}", outcome.line);
    }
    outcome
}

/// What the driving phase leaves for the summary.
struct Driven {
    windows: Vec<FaultWindow>,
    workload_end_ns: u64,
    /// Failures to become available again after the final heal: a finding, not a harness bug.
    liveness: Vec<String>,
    /// Things that make the verdict incomplete (e.g. a truth that could not be read).
    problems: Vec<String>,
}

/// Waits until every member answers a linearizable read, for at most `limit`.
async fn await_healthy(ctx: &Ctx, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let mut sick = Vec::new();
    while Instant::now() < deadline {
        sick = workload::all_healthy(&ctx.members, Duration::from_secs(2)).await;
        if sick.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Err(format!(
        "{} not answering linearizable reads {} s after healing",
        sick.join(", "),
        limit.as_secs()
    ))
}

async fn drive(
    opts: &RunOptions,
    steps: &[schedule::Step],
    net: &Net,
    cluster: Arc<Mutex<Cluster>>,
    history_dir: &Path,
    mut rng: Rng,
    clock: Instant,
) -> Result<Driven, String> {
    let members: Vec<(String, String)> = {
        let mut c = lock(&cluster);
        for m in 0..opts.members {
            c.start(m, false)?;
        }
        c.members
            .iter()
            .map(|m| (m.name.clone(), m.client_url()))
            .collect()
    };
    let ctx = Arc::new(Ctx {
        start: clock,
        stop: AtomicBool::new(false),
        next_process: AtomicU32::new(opts.register.clients as u32),
        members,
    });
    if let Err(e) = await_healthy(&ctx, Duration::from_secs(30)).await {
        return Err(format!("the cluster never became ready: {e}"));
    }
    // The workload's clock starts once the cluster is up, so fault times are comparable
    // between runs; `ctx.start` stays the history clock.
    let t0 = ctx.start.elapsed();

    let mut clients: Vec<JoinHandle<Result<u64, String>>> = Vec::new();
    for i in 0..opts.register.clients {
        let path = history_dir.join(format!("client-{i:02}.jsonl"));
        clients.push(tokio::spawn(workload::register_client(
            i,
            opts.register.clone(),
            ctx.clone(),
            path,
            opts.seed,
        )));
    }
    let final_revision = Arc::new(AtomicI64::new(0));
    let mut watchers = Vec::new();
    for i in 0..opts.watchers {
        watchers.push(tokio::spawn(watcher::watcher(
            i,
            ctx.clone(),
            final_revision.clone(),
            Duration::from_secs(10),
            Duration::from_secs(30),
            opts.seed,
        )));
    }

    let mut timeline = File::create(opts.results.join("nemesis.jsonl"))
        .map_err(|e| format!("nemesis.jsonl: {e}"))?;
    let mut windows = Vec::new();
    let mut nemesis = NemesisState::default();
    let at = |offset: Duration| ctx.start + t0 + offset;
    for step in steps {
        tokio::time::sleep_until(at(step.start).into()).await;
        let start_ns = ctx.now_ns();
        let detail = match nemesis
            .inject(step.nemesis, opts, net, &cluster, &ctx, &mut rng)
            .await
        {
            Ok(d) => d,
            Err(e) => format!("could not inject: {e}"),
        };
        eprintln!(
            "chaos: {:>6.1}s {} {}",
            start_ns as f64 / 1e9,
            step.nemesis,
            detail
        );
        tokio::time::sleep_until(at(step.start + step.fault).into()).await;
        let healed = nemesis.heal(net, &cluster, &ctx).await;
        let end_ns = ctx.now_ns();
        eprintln!("chaos: {:>6.1}s healed ({healed})", end_ns as f64 / 1e9);
        let window = FaultWindow {
            nemesis: step.nemesis.name().to_owned(),
            detail,
            start_ns,
            end_ns,
        };
        let mut line = serde_json::to_string(&window).expect("serializes");
        line.pop(); // add the healing actions to the same JSON object
        line.push_str(&format!(
            ",\"healed\":{}}}",
            serde_json::to_string(&healed).expect("serializes")
        ));
        let _ = writeln!(timeline, "{line}");
        windows.push(window);
    }
    tokio::time::sleep_until(at(opts.timing.total).into()).await;

    // Always heal at the end, then let the cluster prove it recovered.
    let healed = nemesis.heal(net, &cluster, &ctx).await;
    if !healed.is_empty() {
        eprintln!("chaos: final heal ({healed})");
    }
    let mut liveness = Vec::new();
    let mut problems = Vec::new();
    if let Err(e) = await_healthy(&ctx, Duration::from_secs(60)).await {
        liveness.push(e);
    }
    ctx.stop.store(true, Ordering::SeqCst);
    let workload_end_ns = ctx.now_ns();
    for c in clients {
        match tokio::time::timeout(opts.register.op_timeout * 3, c).await {
            Ok(Ok(Ok(_))) => {}
            Ok(Ok(Err(e))) => problems.push(format!("a client failed: {e}")),
            Ok(Err(e)) => problems.push(format!("a client panicked: {e}")),
            Err(_) => problems.push("a client did not stop".to_owned()),
        }
    }
    // Clients ran until now (through the recovery wait too): read every key they could reach.
    let keys = workload::all_keys(&opts.register, ctx.start.elapsed());
    match workload::final_reads(
        &ctx,
        &keys,
        &history_dir.join("final-reads.jsonl"),
        Duration::from_secs(5),
        6,
    )
    .await
    {
        Ok(unread) if unread.is_empty() => {}
        Ok(unread) => liveness.push(format!(
            "{} keys could not be read at the end",
            unread.len()
        )),
        Err(e) => problems.push(format!("final reads: {e}")),
    }
    if opts.watchers > 0 {
        match watcher::current_revision(&ctx, Duration::from_secs(5)).await {
            Ok(rev) => {
                final_revision.store(rev, Ordering::SeqCst);
                match watcher::truth(&ctx, rev, Duration::from_secs(30)).await {
                    Ok(truth) => write_json(&history_dir.join("watch/truth.json"), &truth)?,
                    Err(e) => problems.push(format!("watch truth: {e}")),
                }
            }
            Err(e) => problems.push(format!("final revision: {e}")),
        }
        for w in watchers {
            match tokio::time::timeout(Duration::from_secs(130), w).await {
                Ok(Ok(w)) => {
                    // The checker judges what was delivered; a watcher that never caught up
                    // after healing is a liveness failure it cannot see.
                    let target = final_revision.load(Ordering::SeqCst);
                    let seen = w
                        .sessions
                        .iter()
                        .flat_map(|s| s.events.iter().map(|e| e.revision))
                        .max()
                        .unwrap_or(0);
                    if target > 1 && seen < target {
                        liveness.push(format!(
                            "watcher {} got to revision {seen} of {target} within 30 s after \
                             healing",
                            w.watcher
                        ));
                    }
                    write_json(&history_dir.join(format!("watch/{}.json", w.watcher)), &w)?
                }
                _ => problems.push("a watcher did not finish".to_owned()),
            }
        }
        if !history_dir.join("watch/truth.json").exists() {
            // Without a truth the watch checker cannot run; don't leave half its input behind.
            let _ = fs::remove_dir_all(history_dir.join("watch"));
        }
    } else {
        let _ = fs::remove_dir(history_dir.join("watch"));
    }
    Ok(Driven {
        windows,
        workload_end_ns,
        liveness,
        problems,
    })
}

/// The cluster, even if a panicking thread poisoned the lock (cleanup must still work).
fn lock(c: &Mutex<Cluster>) -> std::sync::MutexGuard<'_, Cluster> {
    c.lock().unwrap_or_else(|p| p.into_inner())
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), String> {
    let text = serde_json::to_string(value).map_err(|e| e.to_string())?;
    fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// What the nemesis has done and must undo.
#[derive(Default)]
struct NemesisState {
    /// A member removed from the cluster, to re-add when healing.
    removed: Option<usize>,
}

impl NemesisState {
    /// Injects one fault; returns what it did, for the timeline.
    async fn inject(
        &mut self,
        nemesis: Nemesis,
        opts: &RunOptions,
        net: &Net,
        cluster: &Arc<Mutex<Cluster>>,
        ctx: &Ctx,
        rng: &mut Rng,
    ) -> Result<String, String> {
        let n = opts.members;
        let name = |m: usize| format!("n{}", m + 1);
        let group = |g: &[usize]| g.iter().map(|&m| name(m)).collect::<Vec<_>>().join(" ");

        let mark = |what: &str| {
            let c = lock(cluster);
            for m in 0..n {
                mark_log(
                    c.log_path(m),
                    &format!("t={:.3}s nemesis: {what}", ctx.now_ns() as f64 / 1e9),
                );
            }
        };
        let detail = match nemesis {
            Nemesis::Partition => {
                let groups = schedule::random_halves(n, rng);
                net.apply(&schedule::cuts_between(&groups), 0.0)?;
                format!("{} | {}", group(&groups[0]), group(&groups[1]))
            }
            Nemesis::Isolate => {
                let (who, known) =
                    match workload::leader(&ctx.members, Duration::from_secs(1)).await {
                        Some(l) => (l, true),
                        None => (rng.below(n), false),
                    };
                let groups = schedule::isolate(n, who);
                net.apply(&schedule::cuts_between(&groups), 0.0)?;
                format!(
                    "{} {} | {}",
                    if known { "leader" } else { "(leader unknown)" },
                    group(&groups[0]),
                    group(&groups[1])
                )
            }
            Nemesis::Ring => {
                let cuts = schedule::majorities_ring(n, rng);
                net.apply(&cuts, 0.0)?;
                let cut: Vec<String> = cuts
                    .iter()
                    .map(|&(a, b)| format!("{}-{}", name(a), name(b)))
                    .collect();
                format!("cut {}", cut.join(" "))
            }
            Nemesis::Lossy => {
                net.apply(&Default::default(), opts.loss)?;
                format!("drop {:.0}% of peer packets", opts.loss * 100.0)
            }
            Nemesis::Kill => {
                let mut victims: Vec<usize> = (0..n).collect();
                rng.shuffle(&mut victims);
                // Mostly a minority; sometimes a majority, which stops the cluster entirely.
                let count = if rng.below(3) == 0 { n / 2 + 1 } else { 1 };
                victims.truncate(count);
                victims.sort_unstable();
                let mut c = lock(cluster);
                for &m in &victims {
                    c.kill(m);
                }
                format!("kill -9 {}", group(&victims))
            }
            Nemesis::Pause => {
                let who = if rng.below(2) == 0 {
                    workload::leader(&ctx.members, Duration::from_secs(1)).await
                } else {
                    None
                }
                .unwrap_or_else(|| rng.below(n));
                lock(cluster).signal_pause(who, true);
                format!("SIGSTOP {}", name(who))
            }
            Nemesis::Membership => {
                let who = rng.below(n);
                self.remove_member(who, cluster, ctx).await?;
                format!("member remove {}", name(who))
            }
        };
        mark(&format!("{nemesis}: {detail}"));
        Ok(detail)
    }

    async fn remove_member(
        &mut self,
        who: usize,
        cluster: &Arc<Mutex<Cluster>>,
        ctx: &Ctx,
    ) -> Result<(), String> {
        let peer_url = lock(cluster).members[who].peer_url();
        let (id, via) = member_id(ctx, who, &peer_url).await?;
        let mut client = workload::connect(&ctx.members[via].1).await?;
        tokio::time::timeout(Duration::from_secs(10), client.member_remove(id))
            .await
            .map_err(|_| "member remove timed out".to_owned())?
            .map_err(|e| format!("member remove: {e}"))?;
        self.removed = Some(who);
        let mut c = lock(cluster);
        // A removed member stops by itself; if it has not after a while, stop it ourselves.
        if !c.wait_exit(who, Duration::from_secs(5)) {
            c.kill(who);
        }
        Ok(())
    }

    /// Undoes everything: rules flushed, a removed member re-added on a wiped data dir,
    /// paused members resumed, stopped ones restarted. Returns what it did.
    async fn heal(&mut self, net: &Net, cluster: &Arc<Mutex<Cluster>>, ctx: &Ctx) -> String {
        let mut done = Vec::new();
        if let Err(e) = net.heal() {
            done.push(format!("flushing rules failed: {e}"));
        }
        if let Some(who) = self.removed {
            match self.re_add(who, cluster, ctx).await {
                Ok(()) => {
                    self.removed = None;
                    done.push(format!("member add n{} (fresh data dir)", who + 1));
                }
                Err(e) => done.push(format!("re-adding n{} failed: {e}", who + 1)),
            }
        }
        let mut c = lock(cluster);
        if let Some(who) = self.removed {
            // Not re-added: keep it down rather than restart it on a removed member's data.
            c.kill(who);
        }
        let skip = self.removed;
        for m in 0..c.members.len() {
            if Some(m) == skip {
                continue;
            }
            if c.members[m].pid().is_some() {
                // SIGCONT is harmless to a running member and undoes a pause.
                c.signal_pause(m, false);
            }
        }
        match c.heal_except(skip) {
            Ok(mut d) => done.append(&mut d),
            Err(e) => done.push(format!("restart failed: {e}")),
        }
        let summary = if done.is_empty() {
            "rules flushed".to_owned()
        } else {
            format!("rules flushed, {}", done.join(", "))
        };
        for m in 0..c.members.len() {
            mark_log(
                c.log_path(m),
                &format!(
                    "t={:.3}s nemesis: healed: {summary}",
                    ctx.now_ns() as f64 / 1e9
                ),
            );
        }
        summary
    }

    async fn re_add(
        &mut self,
        who: usize,
        cluster: &Arc<Mutex<Cluster>>,
        ctx: &Ctx,
    ) -> Result<(), String> {
        let peer_url = lock(cluster).members[who].peer_url();
        let mut last_error = String::new();
        // Bounded: a few members times a few attempts, each with a timeout.
        for attempt in 0..6 {
            let via = (who + 1 + attempt) % ctx.members.len();
            if via == who {
                continue;
            }
            let added = async {
                let mut client = workload::connect(&ctx.members[via].1).await?;
                client
                    .member_add([peer_url.clone()], None)
                    .await
                    .map_err(|e| format!("member add via n{}: {e}", via + 1))
            };
            match tokio::time::timeout(Duration::from_secs(10), added).await {
                Ok(Ok(_)) => {
                    let mut c = lock(cluster);
                    c.kill(who);
                    c.wipe(who)?;
                    return c.start(who, true);
                }
                Ok(Err(e)) => last_error = e,
                Err(_) => last_error = format!("member add via n{} timed out", via + 1),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(last_error)
    }
}

/// The cluster's id for the member with `peer_url`, and a member index to send requests to.
async fn member_id(ctx: &Ctx, who: usize, peer_url: &str) -> Result<(u64, usize), String> {
    let mut last_error = String::new();
    for via in (0..ctx.members.len()).filter(|&m| m != who) {
        let list = async {
            let mut client = workload::connect(&ctx.members[via].1).await?;
            client.member_list().await.map_err(|e| e.to_string())
        };
        match tokio::time::timeout(Duration::from_secs(5), list).await {
            Ok(Ok(resp)) => {
                return resp
                    .members()
                    .iter()
                    .find(|m| m.peer_urls().iter().any(|u| u == peer_url))
                    .map(|m| (m.id(), via))
                    .ok_or_else(|| format!("{peer_url} is not a member"))
            }
            Ok(Err(e)) => last_error = e,
            Err(_) => last_error = "member list timed out".to_owned(),
        }
    }
    Err(last_error)
}
