//! `benches apiserver`: the real `ferrokube apiserver` binary (embedded store, temp data dir,
//! free loopback port) driven over HTTPS/HTTP2 with its own kubeconfig token and CA.
//!
//! Phases, each bounded by `--phase-timeout`:
//! 1. create throughput: `--pods` pods created by `--creators` concurrent clients;
//! 2. LIST of those pods, whole and paginated (`limit=500` and `continue`), `--list-runs` each;
//! 3. watch fan-out, for each of `--watchers` (1,100,1000): that many watches on the pods of one
//!    namespace (from one resourceVersion, ~100 per HTTP/2 connection) while one writer makes
//!    `--updates` sequential PATCHes to 10 pods there: events delivered per second, latency
//!    from the PATCH's response to each watcher receiving that event (an event that arrives
//!    before the response counts as 0), whether every watcher got every event, and the
//!    apiserver's memory (VmRSS after the phase, VmHWM: peak so far; the store is in-process).
//!
//! The apiserver is stopped by PID (SIGTERM, then SIGKILL) when the run ends, fails or is
//! interrupted.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::json;

use crate::cluster::{mem_of, spawn, MemStat};
use crate::https::{read_kubeconfig, resource_version, ApiClient};
use crate::stats::{rate, summarize, Summary};

/// Options of `benches apiserver`.
#[derive(Debug, clap::Args)]
pub struct ApiserverOpts {
    /// Small counts: a smoke run (seconds, not minutes).
    #[arg(long)]
    quick: bool,
    /// Pods created (and listed). Default 10000 (quick 500).
    #[arg(long)]
    pods: Option<usize>,
    /// Concurrent creators.
    #[arg(long, default_value_t = 16)]
    creators: usize,
    /// Timed runs of each LIST.
    #[arg(long, default_value_t = 3)]
    list_runs: usize,
    /// Watcher counts of the fan-out phases (comma-separated). Default 1,100,1000 (quick 1,10,100).
    #[arg(long, value_delimiter = ',')]
    watchers: Option<Vec<usize>>,
    /// Updates made by the writer in each fan-out phase. Default 10000 (quick 300).
    #[arg(long)]
    updates: Option<usize>,
    /// Watches per HTTP/2 connection (the server allows 200 streams per connection).
    #[arg(long, default_value_t = 100)]
    watches_per_conn: usize,
    /// Wall-clock bound per phase, seconds. Default 300 (quick 60).
    #[arg(long)]
    phase_timeout: Option<u64>,
    /// ferrokube binary; by default it is built (`cargo build --release -p ferrokube`).
    #[arg(long)]
    ferrokube_bin: Option<PathBuf>,
}

/// The apiserver process; stopped by PID on drop.
struct Server {
    child: Option<std::process::Child>,
    pid: u32,
    log: PathBuf,
}

impl Server {
    fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            crate::cluster::stop_child(child, Duration::from_secs(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn progress(msg: &str) {
    eprintln!("[benches apiserver] {msg}");
}

/// One fan-out phase's numbers.
struct FanOut {
    watchers: usize,
    updates: usize,
    write_secs: f64,
    delivered: u64,
    expected: u64,
    complete: usize,
    ended_early: usize,
    events_per_sec: f64,
    latency: Summary,
    /// From sending the PATCH (the event cannot exist before) to receiving the event.
    from_issue: Summary,
    mem: Option<MemStat>,
    timed_out: bool,
}

/// Starts `ferrokube apiserver` and waits for its kubeconfig and /readyz.
async fn start_server(bin: &std::path::Path, dir: &std::path::Path) -> Result<(Server, ApiClient, String, Vec<u8>, String)> {
    let port = crate::cluster::free_ports(1)?[0];
    let data = dir.join("apiserver");
    let log = dir.join("apiserver.log");
    let args: Vec<String> =
        ["apiserver", "--data-dir", &data.display().to_string(), "--secure-port", &port.to_string()].map(String::from).to_vec();
    let child = spawn(bin, &args, &log)?;
    let pid = child.id();
    let server = Server { child: Some(child), pid, log };
    let deadline = Instant::now() + Duration::from_secs(60);
    let kubeconfig = data.join("kubeconfig");
    loop {
        if Instant::now() > deadline {
            bail!("the apiserver did not become ready in 60 s:\n{}", crate::cluster::log_tail(&server.log, 2000));
        }
        if let Ok((url, ca, token)) = read_kubeconfig(&kubeconfig) {
            if url.ends_with(&format!(":{port}")) {
                if let Ok(client) = ApiClient::connect(&url, &ca, &token, 1).await {
                    if client.call(0, Method::GET, "/readyz", None, Bytes::new()).await.is_ok() {
                        return Ok((server, client, url, ca, token));
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn pod(name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]},
    })
}

async fn ensure_namespace(c: &ApiClient, ns: &str) -> Result<()> {
    c.create(0, "/api/v1/namespaces", &json!({"metadata": {"name": ns}})).await.map(|_| ())
}

/// Creates `n` pods with `creators` concurrent clients; returns pods/s.
async fn create_phase(c: &ApiClient, ns: &str, n: usize, creators: usize, timeout: Duration) -> Result<(f64, Summary)> {
    let next = Arc::new(AtomicU64::new(0));
    let began = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..creators.max(1) {
        let (c, next, ns) = (c.clone(), next.clone(), ns.to_string());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= n {
                    return Ok::<_, anyhow::Error>(lat);
                }
                let t = Instant::now();
                c.create(w, &format!("/api/v1/namespaces/{ns}/pods"), &pod(&format!("p-{i:06}"))).await?;
                lat.push(t.elapsed());
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let lat = tokio::time::timeout(timeout, t).await.context("create phase timed out")???;
        all.extend(lat);
    }
    Ok((rate(n as u64, began.elapsed()), summarize(&mut all)))
}

/// LISTs the namespace whole and in pages; returns (whole ms, paged ms, items, bytes) medians.
async fn list_phase(c: &ApiClient, ns: &str, runs: usize) -> Result<(f64, f64, usize, usize)> {
    let mut whole = Vec::new();
    let mut paged = Vec::new();
    let (mut items, mut bytes) = (0, 0);
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        let body = c.call(0, Method::GET, &format!("/api/v1/namespaces/{ns}/pods"), None, Bytes::new()).await?;
        whole.push(t.elapsed());
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        items = v["items"].as_array().map(Vec::len).unwrap_or(0);
        bytes = body.len();

        let t = Instant::now();
        let mut token: Option<String> = None;
        let mut n = 0;
        for _page in 0..100_000 {
            let mut path = format!("/api/v1/namespaces/{ns}/pods?limit=500");
            if let Some(t) = &token {
                path.push_str(&format!("&continue={t}"));
            }
            let body = c.call(0, Method::GET, &path, None, Bytes::new()).await?;
            let v: serde_json::Value = serde_json::from_slice(&body)?;
            n += v["items"].as_array().map(Vec::len).unwrap_or(0);
            token = v["metadata"]["continue"].as_str().filter(|s| !s.is_empty()).map(String::from);
            if token.is_none() {
                break;
            }
        }
        paged.push(t.elapsed());
        if n != items {
            bail!("paginated LIST returned {n} pods, the whole LIST {items}");
        }
    }
    let whole = summarize(&mut whole).p50_ms;
    let paged = summarize(&mut paged).p50_ms;
    Ok((whole, paged, items, bytes))
}

/// What one watcher saw: (resourceVersion, microseconds since the phase began) per event.
struct Seen {
    events: Vec<(i64, u64)>,
    ended_early: bool,
}

async fn watch_one(
    c: ApiClient,
    conn: usize,
    path: String,
    want: usize,
    t0: Instant,
    deadline: tokio::time::Instant,
    ready: tokio::sync::mpsc::Sender<()>,
) -> Result<Seen> {
    let resp = c.send(conn, Method::GET, &path, None, Bytes::new()).await?;
    if !resp.status().is_success() {
        bail!("watch: {}", resp.status());
    }
    let _ = ready.send(()).await;
    let mut body = resp.into_body();
    let mut buf: Vec<u8> = Vec::new();
    let mut events = Vec::with_capacity(want);
    while events.len() < want {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(f))) => f,
            // The stream ended (the server dropped a watcher that fell behind) or failed.
            Ok(_) => return Ok(Seen { events, ended_early: true }),
            Err(_) => break,
        };
        let Ok(data) = frame.into_data() else { continue };
        let at = t0.elapsed().as_micros() as u64;
        buf.extend_from_slice(&data);
        let mut start = 0;
        while let Some(i) = buf[start..].iter().position(|b| *b == b'\n') {
            let line = &buf[start..start + i];
            if line.starts_with(b"{\"type\":\"MODIFIED\"") {
                if let Some(rv) = resource_version(line) {
                    events.push((rv, at));
                }
            } else if line.starts_with(b"{\"type\":\"ERROR\"") {
                return Ok(Seen { events, ended_early: true });
            }
            start += i + 1;
        }
        buf.drain(..start);
    }
    Ok(Seen { events, ended_early: false })
}

#[allow(clippy::too_many_arguments)]
async fn fanout_phase(
    client: &ApiClient,
    server: &Server,
    url: &str,
    ca: &[u8],
    token: &str,
    watchers: usize,
    updates: usize,
    per_conn: usize,
    timeout: Duration,
    phase: usize,
) -> Result<FanOut> {
    let ns = "bench-watch";
    let targets: Vec<String> = (0..10).map(|i| format!("w-{i}")).collect();
    let list = client.call(0, Method::GET, &format!("/api/v1/namespaces/{ns}/pods?limit=1"), None, Bytes::new()).await?;
    let list: serde_json::Value = serde_json::from_slice(&list)?;
    let from: i64 = list["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .context("no resourceVersion on the list")?;
    let conns = watchers.div_ceil(per_conn.max(1)).max(1);
    let wc = ApiClient::connect(url, ca, token, conns).await?;
    let t0 = Instant::now();
    let deadline = tokio::time::Instant::now() + timeout;
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(watchers.max(1));
    let mut tasks = Vec::new();
    for w in 0..watchers {
        let path = format!("/api/v1/namespaces/{ns}/pods?watch=true&resourceVersion={from}&timeoutSeconds={}", timeout.as_secs() + 30);
        tasks.push(tokio::spawn(watch_one(wc.clone(), w, path, updates, t0, deadline, ready_tx.clone())));
    }
    drop(ready_tx);
    for _ in 0..watchers {
        if tokio::time::timeout_at(deadline, ready_rx.recv()).await.ok().flatten().is_none() {
            bail!("the watches did not all start");
        }
    }
    progress(&format!("{watchers} watches open on {conns} connection(s); writing {updates} updates"));
    // The writer: sequential PATCHes; issued-at and acknowledged-at per resourceVersion.
    let mut acked: Vec<(i64, (u64, u64))> = Vec::with_capacity(updates);
    let write_began = Instant::now();
    let mut timed_out = false;
    for i in 0..updates {
        if tokio::time::Instant::now() > deadline {
            timed_out = true;
            break;
        }
        let name = &targets[i % targets.len()];
        // Unique per phase: a PATCH that changes nothing writes nothing and makes no event.
        let patch = Bytes::from(json!({"metadata": {"annotations": {"bench/n": format!("{phase}-{i}")}}}).to_string());
        let issued = t0.elapsed().as_micros() as u64;
        let body = client
            .call(0, Method::PATCH, &format!("/api/v1/namespaces/{ns}/pods/{name}"), Some("application/merge-patch+json"), patch)
            .await?;
        let at = t0.elapsed().as_micros() as u64;
        acked.push((resource_version(&body).context("no resourceVersion in the PATCH answer")?, (issued, at)));
    }
    let write_secs = write_began.elapsed().as_secs_f64();
    let ack: std::collections::HashMap<i64, (u64, u64)> = acked.iter().copied().collect();
    let mut latencies = Vec::new();
    let mut from_issue = Vec::new();
    let (mut delivered, mut complete, mut ended_early) = (0u64, 0usize, 0usize);
    let mut last_at = 0u64;
    for t in tasks {
        let seen = match tokio::time::timeout_at(deadline + Duration::from_secs(5), t).await {
            Ok(Ok(Ok(s))) => s,
            Ok(Ok(Err(e))) => bail!("a watcher failed: {e:#}"),
            _ => {
                timed_out = true;
                continue;
            }
        };
        let mut got = 0;
        for (rv, at) in &seen.events {
            if let Some((issued, acked_at)) = ack.get(rv) {
                got += 1;
                latencies.push(Duration::from_micros(at.saturating_sub(*acked_at)));
                from_issue.push(Duration::from_micros(at.saturating_sub(*issued)));
                last_at = last_at.max(*at);
            }
        }
        delivered += got;
        if got as usize == acked.len() && acked.len() == updates {
            complete += 1;
        }
        ended_early += usize::from(seen.ended_early);
    }
    let mem = mem_of(server.pid).ok();
    let first_ack = acked.first().map(|a| a.1 .1).unwrap_or(0);
    let span = Duration::from_micros(last_at.saturating_sub(first_ack).max(1));
    Ok(FanOut {
        watchers,
        updates: acked.len(),
        write_secs,
        delivered,
        expected: (acked.len() * watchers) as u64,
        complete,
        ended_early,
        events_per_sec: rate(delivered, span),
        latency: summarize(&mut latencies),
        from_issue: summarize(&mut from_issue),
        mem,
        timed_out,
    })
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn mib(m: Option<MemStat>) -> String {
    m.map(|m| format!("{:.0} MiB rss / {:.0} MiB peak", m.rss_kib as f64 / 1024.0, m.hwm_kib as f64 / 1024.0))
        .unwrap_or_else(|| "?".into())
}

/// Runs the whole bench; `Ok(true)` when every phase completed and every watcher got every event.
pub async fn run(o: ApiserverOpts) -> Result<bool> {
    let pods = o.pods.unwrap_or(if o.quick { 500 } else { 10_000 });
    let updates = o.updates.unwrap_or(if o.quick { 300 } else { 10_000 });
    let watcher_counts = o.watchers.clone().unwrap_or(if o.quick { vec![1, 10, 100] } else { vec![1, 100, 1000] });
    let timeout = Duration::from_secs(o.phase_timeout.unwrap_or(if o.quick { 60 } else { 300 }));
    let bin = match &o.ferrokube_bin {
        Some(b) => b.clone(),
        None => crate::build_ferrokube()?,
    };
    let dir = tempfile::tempdir()?;
    progress(&format!("starting {} apiserver in {}", bin.display(), dir.path().display()));
    let (server, _probe, url, ca, token) = start_server(&bin, dir.path()).await?;
    let client = ApiClient::connect(&url, &ca, &token, o.creators.max(1)).await?;
    progress(&format!("apiserver pid {} at {url}; load average {}", server.pid, loadavg()));
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut ok = true;

    ensure_namespace(&client, "bench-list").await?;
    progress(&format!("creating {pods} pods with {} creators", o.creators));
    let (creates, create_lat) = create_phase(&client, "bench-list", pods, o.creators, timeout).await?;
    rows.push((format!("create ({} concurrent)", o.creators), format!("{creates:.0} pods/s (p50 {:.1} ms, p99 {:.1} ms)", create_lat.p50_ms, create_lat.p99_ms)));
    rows.push(("memory after creates".into(), mib(mem_of(server.pid).ok())));
    progress("listing");
    let (whole, paged, items, bytes) = list_phase(&client, "bench-list", o.list_runs).await?;
    rows.push((format!("LIST {items} pods, whole"), format!("{whole:.0} ms ({:.1} MiB)", bytes as f64 / 1048576.0)));
    rows.push((format!("LIST {items} pods, limit=500 pages"), format!("{paged:.0} ms")));

    ensure_namespace(&client, "bench-watch").await?;
    for i in 0..10 {
        client.create(0, "/api/v1/namespaces/bench-watch/pods", &pod(&format!("w-{i}"))).await?;
    }
    let mut phases = Vec::new();
    for (phase, &w) in watcher_counts.iter().enumerate() {
        progress(&format!("fan-out: {w} watcher(s), {updates} updates"));
        let f = fanout_phase(&client, &server, &url, &ca, &token, w, updates, o.watches_per_conn, timeout, phase).await?;
        progress(&format!(
            "fan-out {w}: {}/{} events, {} complete watchers, p99 {:.1} ms",
            f.delivered, f.expected, f.complete, f.latency.p99_ms
        ));
        phases.push(f);
        // Let the server notice the closed watches before the next phase.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(client);
    let load = loadavg();
    drop(server);

    println!("ferrokube apiserver bench ({} pods, {updates} updates per fan-out phase; load average at the end {load})", pods);
    println!();
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(10).max(36);
    println!("{:width$} | value", "metric");
    println!("{}-|-{}", "-".repeat(width), "-".repeat(40));
    for (k, v) in &rows {
        println!("{k:width$} | {v}");
    }
    println!();
    println!("watch fan-out (latency: PATCH acknowledged -> event received by a watcher)");
    println!("(an event received before the PATCH response counts as 0; \"issued p99\": from sending the PATCH instead)");
    println!("watchers | updates | writes/s | events delivered / expected | events/s  | p50 ms | p99 ms | max ms | issued p99 | complete watchers | apiserver memory");
    println!("---------|---------|----------|-----------------------------|-----------|--------|--------|--------|------------|-------------------|-----------------");
    for f in &phases {
        let all = f.delivered == f.expected && f.complete == f.watchers && !f.timed_out && f.updates == updates;
        ok &= all;
        println!(
            "{:>8} | {:>7} | {:>8.0} | {:>27} | {:>9.0} | {:>6.1} | {:>6.1} | {:>6.1} | {:>10.1} | {:>17} | {}",
            f.watchers,
            f.updates,
            rate(f.updates as u64, Duration::from_secs_f64(f.write_secs)),
            format!("{} / {}", f.delivered, f.expected),
            f.events_per_sec,
            f.latency.p50_ms,
            f.latency.p99_ms,
            f.latency.max_ms,
            f.from_issue.p99_ms,
            format!("{}/{}{}", f.complete, f.watchers, if all { "" } else { " NOT ALL" }),
            mib(f.mem),
        );
        if !all {
            println!(
                "  {} watcher(s) missed events: {} stream(s) ended early (the server disconnects a watcher whose \
                 buffer fills){}",
                f.watchers - f.complete,
                f.ended_early,
                if f.timed_out { "; the phase hit its time limit" } else { "" }
            );
        }
    }
    Ok(ok)
}
