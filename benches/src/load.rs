//! The workloads. Each takes client endpoints and returns a plain result struct; none of
//! them panics or hangs on a misbehaving server: every loop is bounded by a count and by
//! the phase deadline, and a phase that did not finish is returned with `failure` set and
//! whatever partial numbers it got.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Client, WatchOptions, WatchStream};
use tokio::sync::Barrier;
use tokio::time::Instant;

use crate::cluster::connect_options;
use crate::stats::{rate, summarize, Summary};

/// How concurrent put clients map to connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnMode {
    /// One `etcd_client::Client` (one HTTP/2 connection) cloned into every worker.
    Shared,
    /// Every worker connects its own `etcd_client::Client` (its own connection).
    PerClient,
}

/// Knobs shared by all workloads.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadConfig {
    /// Bytes per value.
    pub value_size: usize,
    /// Puts before each measured phase (on keys outside the measured prefix).
    pub warmup: usize,
    /// Hard wall-clock bound of each phase.
    #[serde(serialize_with = "ser_secs")]
    pub phase_timeout: Duration,
    /// After the writer of a watch phase finishes, how long watchers may still drain.
    #[serde(serialize_with = "ser_secs")]
    pub watch_drain: Duration,
    /// Connection mode for the concurrent put phases.
    pub conn_mode: ConnMode,
    /// Connections that carry the watchers of the fan-out phase.
    pub watch_conns: usize,
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Result of a put phase (sequential = 1 client).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PutResult {
    pub clients: usize,
    pub requested: u64,
    pub completed: u64,
    pub elapsed_s: f64,
    pub ops_per_s: f64,
    pub latency: Summary,
    /// Why the phase did not complete (timeout, error); `None` when all puts succeeded.
    pub failure: Option<String>,
    /// CPU time (user + system) all members spent per completed put, in microseconds: the
    /// cost of a write, which load from other processes on the machine does not distort as
    /// much as it distorts rates and latencies.
    pub member_cpu_us_per_put: Option<f64>,
}

/// Result of a watch phase.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct WatchResult {
    pub watchers: usize,
    pub puts_requested: u64,
    pub puts_acked: u64,
    /// `watchers * puts_requested`.
    pub events_expected: u64,
    /// Distinct (watcher, key) events received.
    pub events_delivered: u64,
    /// Events received a second time for the same key by the same watcher.
    pub duplicate_events: u64,
    /// Watchers that received every event.
    pub watchers_complete: usize,
    /// From the first measured put to the last event received.
    pub elapsed_s: f64,
    pub events_per_s: f64,
    /// Put acknowledged → event received, matched by key (events seen before their put's
    /// ack count as 0 ms; see `events_before_ack`).
    pub delivery: Summary,
    pub events_before_ack: u64,
    /// Put issued → event received (includes the put's own commit time).
    pub delivery_from_issue: Summary,
    pub failure: Option<String>,
}

fn value(cfg: &LoadConfig) -> Vec<u8> {
    (0..cfg.value_size).map(|i| b'a' + (i % 26) as u8).collect()
}

fn key(prefix: &str, i: u64) -> String {
    format!("{prefix}{i:08}")
}

/// The endpoint list of member `k mod n`: connection `k` of a phase talks to that member only,
/// so a phase's connections are spread evenly, and in the same way for both servers, over the
/// members (whose order the caller fixes; see `Cluster::endpoints_by_role`).
fn member(endpoints: &[String], k: usize) -> &[String] {
    let i = k % endpoints.len();
    &endpoints[i..=i]
}

/// One client per member, for a single sequential writer that spreads its puts over every
/// member in turn (put `i` goes to member `i mod n`).
async fn connect_each(endpoints: &[String]) -> Result<Vec<Client>, String> {
    let mut out = Vec::with_capacity(endpoints.len());
    for k in 0..endpoints.len() {
        out.push(connect(member(endpoints, k)).await?);
    }
    Ok(out)
}

async fn connect(endpoints: &[String]) -> Result<Client, String> {
    match tokio::time::timeout(
        Duration::from_secs(10),
        Client::connect(endpoints, Some(connect_options())),
    )
    .await
    {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(format!("connect: {e}")),
        Err(_) => Err("connect: timed out".into()),
    }
}

/// What a load phase sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Puts of `cfg.value_size` bytes.
    Put,
    /// Linearizable (default consistency) gets of one key each.
    Get,
}

/// One request with a bound; `Err` carries a message.
async fn request_bounded(
    client: &mut Client,
    request: Request,
    key: String,
    value: Vec<u8>,
    deadline: Instant,
) -> Result<(), String> {
    let outcome = match request {
        Request::Put => tokio::time::timeout_at(deadline, client.put(key, value, None)).await.map(|r| r.map(|_| ())),
        Request::Get => tokio::time::timeout_at(deadline, client.get(key, None)).await.map(|r| r.map(|_| ())),
    };
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("{request:?}: {e}")),
        Err(_) => Err("phase deadline reached".into()),
    }
}

/// `total` puts of `cfg.value_size` bytes under `prefix`, spread over `clients` concurrent
/// workers (each taking the next key index from a shared counter). `clients == 1` is the
/// sequential latency test. Before measuring, the workers together do `cfg.warmup` puts
/// under `warm_prefix`, then all start at once.
///
/// With several members: in per-client mode worker `w` talks to member `w mod n`, and a
/// single worker rotates its puts over all members; in shared mode the one connection is
/// etcd-client's balanced channel over every endpoint.
///
/// With `Request::Get` the workers read (linearizably) the keys `0..total` under `prefix`
/// instead; the warm-up still puts.
pub async fn puts(
    endpoints: &[String],
    prefix: &str,
    warm_prefix: &str,
    total: u64,
    clients: usize,
    cfg: &LoadConfig,
    request: Request,
) -> PutResult {
    let clients = clients.max(1);
    let mut result = PutResult {
        clients,
        requested: total,
        ..Default::default()
    };
    let deadline = Instant::now() + cfg.phase_timeout;

    // Per worker: the clients it rotates its puts over (usually one).
    let conns: Vec<Vec<Client>> = match (cfg.conn_mode, clients) {
        (ConnMode::Shared, _) => match connect(endpoints).await {
            Ok(c) => vec![vec![c]; clients],
            Err(e) => {
                result.failure = Some(e);
                return result;
            }
        },
        (ConnMode::PerClient, 1) => match connect_each(endpoints).await {
            Ok(each) => vec![each],
            Err(e) => {
                result.failure = Some(e);
                return result;
            }
        },
        (ConnMode::PerClient, _) => {
            let mut v = Vec::with_capacity(clients);
            for w in 0..clients {
                match connect(member(endpoints, w)).await {
                    Ok(c) => v.push(vec![c]),
                    Err(e) => {
                        result.failure = Some(e);
                        return result;
                    }
                }
            }
            v
        }
    };

    let value = value(cfg);
    let next = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(Barrier::new(clients + 1));
    let warm_each = cfg.warmup.div_ceil(clients);
    let mut tasks = tokio::task::JoinSet::new();
    for (w, mut mine) in conns.into_iter().enumerate() {
        let (next, barrier, value) = (next.clone(), barrier.clone(), value.clone());
        let (prefix, warm_prefix) = (prefix.to_string(), format!("{warm_prefix}{w:03}/"));
        tasks.spawn(async move {
            let n = mine.len();
            let mut failure = None;
            for j in 0..warm_each as u64 {
                let client = &mut mine[j as usize % n];
                if let Err(e) = request_bounded(
                    client,
                    Request::Put,
                    key(&warm_prefix, j),
                    value.clone(),
                    deadline,
                )
                .await
                {
                    failure = Some(format!("warm-up {e}"));
                    break;
                }
            }
            barrier.wait().await;
            let mut lat = Vec::new();
            if failure.is_none() {
                lat.reserve((total as usize / clients) + 1);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let client = &mut mine[i as usize % n];
                    let t = Instant::now();
                    match request_bounded(client, request, key(&prefix, i), value.clone(), deadline)
                        .await
                    {
                        Ok(()) => lat.push(t.elapsed()),
                        Err(e) => {
                            failure = Some(e);
                            break;
                        }
                    }
                }
            }
            (lat, failure, Instant::now())
        });
    }
    barrier.wait().await;
    let t0 = Instant::now();
    let mut all = Vec::with_capacity(total as usize);
    let mut end = t0;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((lat, failure, t_end)) => {
                all.extend(lat);
                end = end.max(t_end);
                if result.failure.is_none() {
                    result.failure = failure;
                }
            }
            Err(e) => result.failure = Some(format!("worker panicked: {e}")),
        }
    }
    let elapsed = end - t0;
    result.completed = all.len() as u64;
    result.elapsed_s = elapsed.as_secs_f64();
    result.ops_per_s = rate(result.completed, elapsed);
    result.latency = summarize(&mut all);
    if result.failure.is_none() && result.completed != total {
        result.failure = Some(format!(
            "only {} of {total} requests completed",
            result.completed
        ));
    }
    result
}

/// What one watcher saw: receive time per key index.
struct WatcherSeen {
    recv: Vec<Option<Instant>>,
    delivered: u64,
    duplicates: u64,
    failure: Option<String>,
}

/// Opens one watch on `prefix` and waits for its `created` response.
async fn open_watch(
    client: &mut Client,
    prefix: &str,
    deadline: Instant,
) -> Result<WatchStream, String> {
    let mut stream = match tokio::time::timeout_at(
        deadline,
        client.watch(prefix, Some(WatchOptions::new().with_prefix())),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(format!("watch: {e}")),
        Err(_) => return Err("watch: phase deadline reached".into()),
    };
    match tokio::time::timeout_at(deadline, stream.message()).await {
        Ok(Ok(Some(resp))) if resp.created() && !resp.canceled() => Ok(stream),
        Ok(Ok(Some(resp))) => Err(format!(
            "watch: first response not a create (created={}, canceled={}, reason={:?})",
            resp.created(),
            resp.canceled(),
            resp.cancel_reason()
        )),
        Ok(Ok(None)) => Err("watch: stream closed before created".into()),
        Ok(Err(e)) => Err(format!("watch: {e}")),
        Err(_) => Err("watch: no created response before the phase deadline".into()),
    }
}

/// Receives events until all `n` keys were seen or the (shared, movable) deadline passes.
async fn run_watcher(
    mut stream: WatchStream,
    prefix: String,
    n: u64,
    deadline: Arc<Mutex<Instant>>,
) -> WatcherSeen {
    let mut seen = WatcherSeen {
        recv: vec![None; n as usize],
        delivered: 0,
        duplicates: 0,
        failure: None,
    };
    while seen.delivered < n {
        let dl = *deadline.lock().unwrap();
        let now = Instant::now();
        if now >= dl {
            seen.failure = Some(format!(
                "watcher got {} of {n} events before the deadline",
                seen.delivered
            ));
            break;
        }
        // Short slices so a moved-up deadline (writer done + drain) is noticed.
        let slice = (dl - now).min(Duration::from_millis(250));
        let resp = match tokio::time::timeout(slice, stream.message()).await {
            Err(_) => continue,
            Ok(Ok(Some(r))) => r,
            Ok(Ok(None)) => {
                seen.failure = Some("watch stream closed by server".into());
                break;
            }
            Ok(Err(e)) => {
                seen.failure = Some(format!("watch stream error: {e}"));
                break;
            }
        };
        let at = Instant::now();
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let idx = kv
                .key()
                .strip_prefix(prefix.as_bytes())
                .and_then(|s| std::str::from_utf8(s).ok())
                .and_then(|s| s.parse::<u64>().ok());
            match idx {
                Some(i) if i < n => match &mut seen.recv[i as usize] {
                    slot @ None => {
                        *slot = Some(at);
                        seen.delivered += 1;
                    }
                    Some(_) => seen.duplicates += 1,
                },
                _ => {} // not one of ours
            }
        }
        if resp.canceled() {
            seen.failure = Some(format!(
                "watch canceled by server: {:?}",
                resp.cancel_reason()
            ));
            break;
        }
    }
    seen
}

/// `watchers` watches on `prefix` (spread over `cfg.watch_conns` connections, each
/// watcher its own gRPC watch stream; a single watcher gets its own connection), one
/// writer (its own connection) doing `puts` sequential puts under the prefix. Delivery
/// latency is put-ack → event-received, matched by key.
///
/// With several members: watch connection `k` talks to member `k mod n` (the connection
/// count is rounded up to a multiple of n, so watchers split evenly), a single watcher is on
/// member 0, and the writer rotates its puts over all members.
pub async fn watch(
    endpoints: &[String],
    prefix: &str,
    warm_prefix: &str,
    puts: u64,
    watchers: usize,
    cfg: &LoadConfig,
) -> WatchResult {
    let watchers = watchers.max(1);
    let mut result = WatchResult {
        watchers,
        puts_requested: puts,
        events_expected: puts * watchers as u64,
        ..Default::default()
    };
    let phase_deadline = Instant::now() + cfg.phase_timeout;
    let mut writers = match connect_each(endpoints).await {
        Ok(c) => c,
        Err(e) => {
            result.failure = Some(format!("writer {e}"));
            return result;
        }
    };
    let members = writers.len();
    let value = value(cfg);

    // Warm-up: writer puts outside the watched prefix.
    for j in 0..cfg.warmup as u64 {
        if let Err(e) = request_bounded(
            &mut writers[j as usize % members],
            Request::Put,
            key(warm_prefix, j),
            value.clone(),
            phase_deadline,
        )
        .await
        {
            result.failure = Some(format!("warm-up {e}"));
            return result;
        }
    }

    let nconns = (cfg.watch_conns.div_ceil(members) * members).clamp(1, watchers);
    let mut wconns = Vec::with_capacity(nconns);
    for k in 0..nconns {
        match connect(member(endpoints, k)).await {
            Ok(c) => wconns.push(c),
            Err(e) => {
                result.failure = Some(format!("watcher {e}"));
                return result;
            }
        }
    }
    let deadline = Arc::new(Mutex::new(phase_deadline));
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..watchers {
        let stream = match open_watch(&mut wconns[w % nconns], prefix, phase_deadline).await {
            Ok(s) => s,
            Err(e) => {
                result.failure = Some(format!("watcher {w}: {e}"));
                return result;
            }
        };
        tasks.spawn(run_watcher(
            stream,
            prefix.to_string(),
            puts,
            deadline.clone(),
        ));
    }

    // Measured writer.
    let mut acked: Vec<Option<Instant>> = vec![None; puts as usize];
    let mut issued: Vec<Option<Instant>> = vec![None; puts as usize];
    let t0 = Instant::now();
    for i in 0..puts {
        issued[i as usize] = Some(Instant::now());
        let writer = &mut writers[i as usize % members];
        match request_bounded(writer, Request::Put, key(prefix, i), value.clone(), phase_deadline).await {
            Ok(()) => acked[i as usize] = Some(Instant::now()),
            Err(e) => {
                result.failure = Some(format!("writer stopped after {i} puts: {e}"));
                break;
            }
        }
    }
    result.puts_acked = acked.iter().filter(|a| a.is_some()).count() as u64;
    {
        let mut dl = deadline.lock().unwrap();
        *dl = (*dl).min(Instant::now() + cfg.watch_drain);
    }

    let mut samples = Vec::with_capacity(result.events_expected as usize);
    let mut from_issue = Vec::with_capacity(result.events_expected as usize);
    let mut last_recv = t0;
    let mut watcher_failure = None;
    while let Some(joined) = tasks.join_next().await {
        let seen = match joined {
            Ok(s) => s,
            Err(e) => {
                watcher_failure.get_or_insert(format!("watcher panicked: {e}"));
                continue;
            }
        };
        result.events_delivered += seen.delivered;
        result.duplicate_events += seen.duplicates;
        if seen.delivered == puts {
            result.watchers_complete += 1;
        }
        if let Some(f) = seen.failure {
            watcher_failure.get_or_insert(f);
        }
        for ((ack, recv), sent) in acked.iter().zip(&seen.recv).zip(&issued) {
            if let Some(r) = recv {
                last_recv = last_recv.max(*r);
                if let Some(s) = sent {
                    from_issue.push(r.saturating_duration_since(*s));
                }
                if let Some(a) = ack {
                    if r < a {
                        result.events_before_ack += 1;
                    }
                    samples.push(r.saturating_duration_since(*a));
                }
            }
        }
    }
    let elapsed = last_recv - t0;
    result.elapsed_s = elapsed.as_secs_f64();
    result.events_per_s = rate(result.events_delivered, elapsed);
    result.delivery = summarize(&mut samples);
    result.delivery_from_issue = summarize(&mut from_issue);
    if result.failure.is_none() {
        result.failure = watcher_failure;
    }
    if result.failure.is_none()
        && (result.events_delivered != result.events_expected || result.duplicate_events != 0)
    {
        result.failure = Some(format!(
            "delivered {} of {} events ({} duplicates)",
            result.events_delivered, result.events_expected, result.duplicate_events
        ));
    }
    result
}

/// Counts for one suite run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SuiteCounts {
    pub sequential_puts: u64,
    pub throughput_puts: u64,
    pub throughput_clients: Vec<usize>,
    pub watch_puts: u64,
    pub fanout_puts: u64,
    pub fanout_watchers: usize,
}

/// All load phases against one server.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SuiteResult {
    pub sequential: PutResult,
    pub throughput: Vec<PutResult>,
    /// Linearizable gets of the keys the throughput phase of the same client count wrote.
    pub reads: Vec<PutResult>,
    pub watch_single: WatchResult,
    pub watch_fanout: WatchResult,
}

/// Runs every phase in order, each on its own key prefix. `progress` gets one line per phase.
pub async fn run_suite(
    endpoints: &[String],
    counts: &SuiteCounts,
    cfg: &LoadConfig,
    progress: &dyn Fn(&str),
    member_cpu_secs: &dyn Fn() -> Option<f64>,
) -> SuiteResult {
    // Warm-up puts are counted in the CPU time too; they are few next to the measured ones.
    let with_cpu = |mut result: PutResult, before: Option<f64>| {
        if let (Some(before), Some(after)) = (before, member_cpu_secs()) {
            if result.completed > 0 {
                result.member_cpu_us_per_put = Some((after - before) * 1e6 / result.completed as f64);
            }
        }
        result
    };
    progress(&format!("sequential puts: {}", counts.sequential_puts));
    let before = member_cpu_secs();
    let sequential = puts(
        endpoints,
        "/bench/seq/",
        "/bench/warmup/seq/",
        counts.sequential_puts,
        1,
        cfg,
        Request::Put,
    )
    .await;
    let sequential = with_cpu(sequential, before);
    let mut throughput = Vec::new();
    for &c in &counts.throughput_clients {
        progress(&format!(
            "put throughput: {} puts, {c} clients ({:?})",
            counts.throughput_puts, cfg.conn_mode
        ));
        let p = format!("/bench/put{c}/");
        let w = format!("/bench/warmup/put{c}/");
        let before = member_cpu_secs();
        let result = puts(endpoints, &p, &w, counts.throughput_puts, c, cfg, Request::Put).await;
        throughput.push(with_cpu(result, before));
    }
    let mut reads = Vec::new();
    for &c in &counts.throughput_clients {
        progress(&format!("linearizable gets: {} gets, {c} clients", counts.throughput_puts));
        let p = format!("/bench/put{c}/");
        let w = format!("/bench/warmup/get{c}/");
        let before = member_cpu_secs();
        let result = puts(endpoints, &p, &w, counts.throughput_puts, c, cfg, Request::Get).await;
        reads.push(with_cpu(result, before));
    }
    progress(&format!("watch: 1 watcher, {} puts", counts.watch_puts));
    let watch_single = watch(
        endpoints,
        "/bench/watch1/",
        "/bench/warmup/watch1/",
        counts.watch_puts,
        1,
        cfg,
    )
    .await;
    progress(&format!(
        "watch: {} watchers, {} puts",
        counts.fanout_watchers, counts.fanout_puts
    ));
    let watch_fanout = watch(
        endpoints,
        "/bench/watchN/",
        "/bench/warmup/watchN/",
        counts.fanout_puts,
        counts.fanout_watchers,
        cfg,
    )
    .await;
    SuiteResult {
        sequential,
        throughput,
        reads,
        watch_single,
        watch_fanout,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_round_robin_over_members() {
        let eps: Vec<String> = ["f1", "f2", "leader"].iter().map(|s| s.to_string()).collect();
        let picked: Vec<&str> = (0..7).map(|k| member(&eps, k)[0].as_str()).collect();
        assert_eq!(picked, ["f1", "f2", "leader", "f1", "f2", "leader", "f1"]);
        assert_eq!(member(&eps[..1], 5), &eps[..1]);
    }
}
