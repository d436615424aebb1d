//! The register workload: concurrent clients doing reads, writes and value compare-and-sets on
//! a rotating set of keys through the etcd v3 API, each recording its history to its own
//! `history/client-NN.jsonl` (format: [`crate::history`]).
//!
//! Outcomes, and why:
//! * a read that errs or times out is `fail`: a read has no effect, so "did not happen" is
//!   always a correct account of it;
//! * a write or CAS that errs is `info` (unknown) unless the error proves the request never
//!   left the client (connection refused); "leader changed" or a timeout may hide a
//!   committed write. After `info` the client continues as a fresh process id.
//!
//! Keys are `chaos/r/GGG/KK`: generation `GGG` changes every `key_period`, so each key sees a
//! bounded number of operations (the checker's search is per key), and at most `clients`
//! processes are concurrent on a key.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, Txn, TxnOp};

use crate::history::{HistoryWriter, Op, Phase, Record};
use crate::schedule::Rng;

/// The prefix of every key the run writes (watchers watch all of it).
pub const PREFIX: &str = "chaos/";

/// Settings of the register workload.
#[derive(Debug, Clone)]
pub struct RegisterConfig {
    pub clients: usize,
    /// Keys per generation.
    pub keys: usize,
    pub key_period: Duration,
    /// Target total request rate over all clients (each sleeps a random think time).
    pub rate: f64,
    pub op_timeout: Duration,
    /// Reads use `serializable` (served locally by the client's home member): unsafe, for
    /// proving the checker catches stale reads.
    pub serializable_reads: bool,
}

/// What every task of a run shares.
pub struct Ctx {
    /// The run's one clock: every `time_ns` is measured from here.
    pub start: Instant,
    /// Set when the workload phase ends.
    pub stop: AtomicBool,
    /// Process ids handed out after `info` completions (the first `clients` are taken).
    pub next_process: AtomicU32,
    /// Member names and client URLs, in member order.
    pub members: Vec<(String, String)>,
}

impl Ctx {
    /// Nanoseconds since the run started.
    pub fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Whether the workload phase has ended.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// Connects a client to one member only (the harness chooses members, not the balancer).
/// The connection is made lazily: a dead member shows up as a failed or timed-out request.
pub async fn connect(url: &str) -> Result<Client, String> {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(1))
        .with_keep_alive(Duration::from_secs(1), Duration::from_secs(1));
    Client::connect([url], Some(options))
        .await
        .map_err(|e| format!("connect {url}: {e}"))
}

/// The key of generation `generation`, slot `slot`.
pub fn register_key(generation: u64, slot: usize) -> String {
    format!("{PREFIX}r/{generation:03}/{slot:02}")
}

/// Every key a run of `total` can touch: the final reads read each once.
pub fn all_keys(config: &RegisterConfig, total: Duration) -> Vec<String> {
    let generations = total.as_nanos() / config.key_period.as_nanos().max(1) + 1;
    (0..generations as u64)
        .flat_map(|g| (0..config.keys).map(move |k| register_key(g, k)))
        .collect()
}

/// Whether an error proves the request was never sent: the only case a write may be `fail`.
/// Everything else — timeouts, "leader changed", "no leader", a stream reset — may hide a
/// committed write.
pub fn never_sent(error: &etcd_client::Error) -> bool {
    let text = error.to_string().to_ascii_lowercase();
    text.contains("connection refused") || text.contains("tcp connect error")
}

/// One client: runs until `ctx.stop`, appending to `path`. Returns its operation count.
pub async fn register_client(
    index: usize,
    config: RegisterConfig,
    ctx: Arc<Ctx>,
    path: PathBuf,
    seed: u64,
) -> Result<u64, String> {
    let mut rng = Rng::new(seed ^ (index as u64).wrapping_mul(0x9e37_79b9));
    let mut writer = HistoryWriter::open(&path).map_err(|e| e.to_string())?;
    let mut clients = Vec::new();
    for (_, url) in &ctx.members {
        clients.push(connect(url).await?);
    }
    let n = clients.len();
    let home = index % n;
    let mut current = home;
    let mut process = index as u32;
    let mut seq = 0u64;
    let mut last_value: HashMap<String, String> = HashMap::new();
    let mean_think = config.clients as f64 / config.rate.max(0.1);
    let mut ops = 0u64;

    while !ctx.stopped() {
        let think = Duration::from_secs_f64(mean_think * 2.0 * rng.unit());
        tokio::time::sleep(think).await;
        if ctx.stopped() {
            break;
        }
        let generation = ctx.start.elapsed().as_nanos() / config.key_period.as_nanos().max(1);
        let key = register_key(generation as u64, rng.below(config.keys));
        let roll = rng.below(4);
        let op = if roll < 2 {
            Op::read()
        } else {
            seq += 1;
            let value = format!("{process}.{seq}");
            match last_value.get(&key) {
                Some(expected) if roll == 3 => Op::cas(expected, &value),
                _ => Op::write(&value),
            }
        };
        // Unsafe mode pins reads to the home member, so reads keep landing on a member that
        // a fault has cut off (writes still move away from it on errors).
        let target = if matches!(op, Op::Read { .. }) && config.serializable_reads {
            home
        } else {
            current
        };
        let record = |op: Op, phase: Phase, process: u32, time_ns: u64| Record {
            process,
            key: key.clone(),
            op,
            phase,
            time_ns,
        };
        writer
            .append(&record(op.clone(), Phase::Invoke, process, ctx.now_ns()))
            .map_err(|e| e.to_string())?;
        let result = tokio::time::timeout(
            config.op_timeout,
            execute(&mut clients[target], &key, &op, config.serializable_reads),
        )
        .await;
        let now = ctx.now_ns();
        ops += 1;
        let errored = match result {
            Ok(Ok(done)) => {
                match &done {
                    Op::Read { value: Some(v) } => {
                        last_value.insert(key.clone(), v.clone());
                    }
                    Op::Write { value } => {
                        last_value.insert(key.clone(), value.clone());
                    }
                    Op::Cas {
                        new,
                        succeeded: Some(true),
                        ..
                    } => {
                        last_value.insert(key.clone(), new.clone());
                    }
                    _ => {}
                }
                writer
                    .append(&record(done, Phase::Ok, process, now))
                    .map_err(|e| e.to_string())?;
                false
            }
            Ok(Err(e)) if matches!(op, Op::Read { .. }) || never_sent(&e) => {
                writer
                    .append(&record(op, Phase::Fail, process, now))
                    .map_err(|e| e.to_string())?;
                true
            }
            _ if matches!(op, Op::Read { .. }) => {
                writer
                    .append(&record(op, Phase::Fail, process, now))
                    .map_err(|e| e.to_string())?;
                true
            }
            _ => {
                writer
                    .append(&record(op, Phase::Info, process, now))
                    .map_err(|e| e.to_string())?;
                process = ctx.next_process.fetch_add(1, Ordering::SeqCst);
                true
            }
        };
        if errored {
            // Another member may serve us; back off so a dead member costs few operations.
            current = (current + 1) % n;
            let backoff = Duration::from_millis(100 + rng.below(200) as u64);
            tokio::time::sleep(backoff).await;
        }
    }
    Ok(ops)
}

/// Runs one operation; returns the op with its result filled in.
pub async fn execute(
    client: &mut Client,
    key: &str,
    op: &Op,
    serializable: bool,
) -> Result<Op, etcd_client::Error> {
    match op {
        Op::Read { .. } => {
            let options = if serializable {
                GetOptions::new().with_serializable()
            } else {
                GetOptions::new()
            };
            let resp = client.get(key, Some(options)).await?;
            let value = resp
                .kvs()
                .first()
                .map(|kv| String::from_utf8_lossy(kv.value()).into_owned());
            Ok(Op::Read { value })
        }
        Op::Write { value } => {
            client.put(key, value.as_str(), None).await?;
            Ok(op.clone())
        }
        Op::Cas { expected, new, .. } => {
            let txn = Txn::new()
                .when([Compare::value(key, CompareOp::Equal, expected.as_str())])
                .and_then([TxnOp::put(key, new.as_str(), None)]);
            let resp = client.txn(txn).await?;
            Ok(Op::cas_ok(expected, new, resp.succeeded()))
        }
    }
}

/// After healing: one linearizable read of every key, recorded in `path` as ordinary
/// operations (a lost acknowledged write shows up as a read the checker cannot place).
/// Each key is retried on other members, up to `attempts` times. Returns the keys never read.
pub async fn final_reads(
    ctx: &Ctx,
    keys: &[String],
    path: &Path,
    timeout: Duration,
    attempts: usize,
) -> Result<Vec<String>, String> {
    let mut writer = HistoryWriter::open(path).map_err(|e| e.to_string())?;
    let mut clients = Vec::new();
    for (_, url) in &ctx.members {
        clients.push(connect(url).await?);
    }
    let mut unread = Vec::new();
    let mut member = 0;
    for key in keys {
        let mut done = false;
        for _ in 0..attempts {
            let process = ctx.next_process.fetch_add(1, Ordering::SeqCst);
            let rec = |op: Op, phase: Phase, time_ns: u64| Record {
                process,
                key: key.clone(),
                op,
                phase,
                time_ns,
            };
            writer
                .append(&rec(Op::read(), Phase::Invoke, ctx.now_ns()))
                .map_err(|e| e.to_string())?;
            let r = tokio::time::timeout(
                timeout,
                execute(&mut clients[member], key, &Op::read(), false),
            )
            .await;
            match r {
                Ok(Ok(op)) => {
                    writer
                        .append(&rec(op, Phase::Ok, ctx.now_ns()))
                        .map_err(|e| e.to_string())?;
                    done = true;
                    break;
                }
                _ => {
                    writer
                        .append(&rec(Op::read(), Phase::Fail, ctx.now_ns()))
                        .map_err(|e| e.to_string())?;
                    member = (member + 1) % clients.len();
                }
            }
        }
        if !done {
            unread.push(key.clone());
        }
    }
    Ok(unread)
}

/// Whether every member answers a linearizable read within `timeout` (healthy cluster).
pub async fn all_healthy(members: &[(String, String)], timeout: Duration) -> Vec<String> {
    let mut sick = Vec::new();
    for (name, url) in members {
        let ok = match connect(url).await {
            Ok(mut c) => matches!(
                tokio::time::timeout(timeout, c.get("chaos/health", None)).await,
                Ok(Ok(_))
            ),
            Err(_) => false,
        };
        if !ok {
            sick.push(name.clone());
        }
    }
    sick
}

/// The index of the member every reachable member names as leader, if they agree.
pub async fn leader(members: &[(String, String)], timeout: Duration) -> Option<usize> {
    let mut ids: Vec<Option<(u64, u64)>> = Vec::new(); // (own id, leader id)
    for (_, url) in members {
        let answer = match connect(url).await {
            Ok(mut c) => match tokio::time::timeout(timeout, c.status()).await {
                Ok(Ok(s)) => s.header().map(|h| (h.member_id(), s.leader())),
                _ => None,
            },
            Err(_) => None,
        };
        ids.push(answer);
    }
    let leaders: Vec<u64> = ids
        .iter()
        .flatten()
        .map(|&(_, l)| l)
        .filter(|&l| l != 0)
        .collect();
    let first = *leaders.first()?;
    if leaders.iter().any(|&l| l != first) {
        return None;
    }
    ids.iter()
        .position(|a| a.is_some_and(|(own, _)| own == first))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(keys: usize, period_secs: u64) -> RegisterConfig {
        RegisterConfig {
            clients: 10,
            keys,
            key_period: Duration::from_secs(period_secs),
            rate: 300.0,
            op_timeout: Duration::from_secs(2),
            serializable_reads: false,
        }
    }

    #[test]
    fn keys_sort_by_generation_and_cover_every_generation_reached() {
        assert_eq!(register_key(3, 7), "chaos/r/003/07");
        assert!(register_key(9, 1) < register_key(10, 0));
        let keys = all_keys(&config(8, 15), Duration::from_secs(44));
        assert_eq!(keys.len(), 3 * 8, "generations 0, 1 and 2");
        assert_eq!(keys.last().unwrap(), "chaos/r/002/07");
        assert!(keys.iter().all(|k| k.starts_with(PREFIX)));
    }
}
