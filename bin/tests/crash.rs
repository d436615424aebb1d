//! Crash consistency: writes acknowledged by `ferrokube store` survive `kill -9`.
//!
//! Three rounds on one data dir of: start, concurrent write load (etcd-client), SIGKILL mid-load.
//! After every restart (and once more at the end) the store must hold every acknowledged write
//! with the revision it was acknowledged at, nothing that was never attempted, and revisions
//! that respect each writer's order.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::StoreProcess;
use etcd_client::{Client, ConnectOptions, GetOptions};

const TASKS: usize = 8;
const ROUNDS: usize = 3;
/// How long the load runs before the SIGKILL.
const LOAD_TIME: Duration = Duration::from_secs(2);
/// Bound on puts per task per round.
const MAX_PUTS_PER_ROUND: u64 = 5_000;
/// Bound on one put.
const PUT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
enum Outcome {
    /// Acknowledged at this revision (the put response's header revision).
    Acked(i64),
    /// Failed or in flight at the crash: may or may not have been applied.
    Unknown { error: String, before_kill: bool },
}

#[derive(Debug, Clone)]
struct Attempt {
    task: usize,
    n: u64,
    round: usize,
    key: String,
    value: String,
    outcome: Outcome,
}

fn key_of(task: usize, n: u64) -> String {
    format!("crash/{task}/{n:06}")
}

async fn connect(endpoint: &str) -> Client {
    let opts = ConnectOptions::new().with_timeout(PUT_TIMEOUT).with_connect_timeout(Duration::from_secs(3));
    tokio::time::timeout(Duration::from_secs(10), Client::connect([endpoint], Some(opts)))
        .await
        .expect("connect timed out")
        .expect("connect")
}

/// One writer: sequential puts of fresh keys until stopped, the time bound, the count bound
/// or the first failure (after which the outcome of that put is unknown and the task ends, so
/// its order stays meaningful).
async fn writer(
    endpoint: String,
    task: usize,
    first_n: u64,
    round: usize,
    killed: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> Vec<Attempt> {
    let mut client = connect(&endpoint).await;
    let deadline = Instant::now() + LOAD_TIME + Duration::from_secs(20);
    let mut attempts = Vec::new();
    for n in first_n..first_n + MAX_PUTS_PER_ROUND {
        if stop.load(Ordering::SeqCst) || Instant::now() >= deadline {
            break;
        }
        let key = key_of(task, n);
        let value = format!("t{task}-n{n}-r{round}-{:x}", n.wrapping_mul(0x9e3779b97f4a7c15) ^ task as u64);
        let result = tokio::time::timeout(PUT_TIMEOUT, client.put(key.clone(), value.clone(), None)).await;
        let outcome = match result {
            Ok(Ok(resp)) => match resp.header() {
                Some(h) => Outcome::Acked(h.revision()),
                None => Outcome::Unknown { error: "put response without header".into(), before_kill: true },
            },
            Ok(Err(e)) => Outcome::Unknown { error: e.to_string(), before_kill: !killed.load(Ordering::SeqCst) },
            Err(_) => Outcome::Unknown { error: "timed out".into(), before_kill: !killed.load(Ordering::SeqCst) },
        };
        let failed = matches!(outcome, Outcome::Unknown { .. });
        attempts.push(Attempt { task, n, round, key, value, outcome });
        if failed {
            break;
        }
    }
    attempts
}

/// Every key under crash/ with (value, mod_revision), read in pages at one revision, and that
/// revision.
async fn read_all(endpoint: &str) -> (i64, BTreeMap<String, (String, i64)>) {
    let mut client = connect(endpoint).await;
    let mut out = BTreeMap::new();
    let mut start = b"crash/".to_vec();
    let end = b"crash0".to_vec();
    let mut at_rev = 0;
    for _page in 0..10_000 {
        let mut opts = GetOptions::new().with_range(end.clone()).with_limit(1000);
        if at_rev > 0 {
            opts = opts.with_revision(at_rev);
        }
        let resp = tokio::time::timeout(Duration::from_secs(20), client.get(start.clone(), Some(opts)))
            .await
            .expect("get timed out")
            .expect("get");
        if at_rev == 0 {
            at_rev = resp.header().expect("header").revision();
        }
        for kv in resp.kvs() {
            let key = String::from_utf8(kv.key().to_vec()).expect("utf-8 key");
            let value = String::from_utf8(kv.value().to_vec()).expect("utf-8 value");
            out.insert(key, (value, kv.mod_revision()));
        }
        if !resp.more() || resp.kvs().is_empty() {
            return (at_rev, out);
        }
        start = resp.kvs().last().unwrap().key().to_vec();
        start.push(0);
    }
    panic!("too many pages under crash/");
}

/// Checks the store's content against every attempt so far; `seen` carries keys observed by
/// earlier checks (once read after a restart, a write must stay).
fn verify(
    label: &str,
    rev: i64,
    present: &BTreeMap<String, (String, i64)>,
    attempts: &[Attempt],
    seen: &mut HashMap<String, i64>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let by_key: HashMap<&str, &Attempt> = attempts.iter().map(|a| (a.key.as_str(), a)).collect();
    // The last attempt of each (task, round): the only one whose outcome may be unknown.
    let mut last_of: HashMap<(usize, usize), u64> = HashMap::new();
    for a in attempts {
        let e = last_of.entry((a.task, a.round)).or_insert(a.n);
        *e = (*e).max(a.n);
    }

    let acked: Vec<&Attempt> = attempts.iter().filter(|a| matches!(a.outcome, Outcome::Acked(_))).collect();
    for a in &acked {
        let Outcome::Acked(at) = a.outcome else { unreachable!() };
        match present.get(&a.key) {
            None => problems.push(format!("{label}: acknowledged {} (rev {at}, round {}) is missing", a.key, a.round)),
            Some((v, m)) => {
                if *v != a.value {
                    problems.push(format!("{label}: {} = {v:?}, acknowledged {:?}", a.key, a.value));
                }
                if *m != at {
                    problems.push(format!("{label}: {} has mod_revision {m}, acknowledged at {at}", a.key));
                }
            }
        }
    }
    for (key, (value, m)) in present {
        match by_key.get(key.as_str()) {
            None => problems.push(format!("{label}: {key} = {value:?} (rev {m}) was never attempted")),
            Some(a) => {
                if *value != a.value {
                    problems.push(format!("{label}: {key} = {value:?}, attempted {:?}", a.value));
                }
                if matches!(a.outcome, Outcome::Unknown { .. }) && last_of.get(&(a.task, a.round)) != Some(&a.n) {
                    problems.push(format!("{label}: {key} present but was not the in-flight write of its task"));
                }
            }
        }
    }
    for (key, m) in seen.iter() {
        match present.get(key) {
            None => problems.push(format!("{label}: {key} (rev {m}) was present after an earlier restart, now gone")),
            Some((_, now)) if now != m => {
                problems.push(format!("{label}: {key} mod_revision changed from {m} to {now}"))
            }
            _ => {}
        }
    }
    if rev < acked.len() as i64 {
        problems.push(format!("{label}: revision {rev} < {} acknowledged writes", acked.len()));
    }
    let mut revs = HashSet::new();
    for (key, (_, m)) in present {
        if !revs.insert(*m) {
            problems.push(format!("{label}: mod_revision {m} of {key} is shared with another key"));
        }
        if *m > rev {
            problems.push(format!("{label}: {key} has mod_revision {m} above the store revision {rev}"));
        }
    }
    for task in 0..TASKS {
        let mut mine: Vec<(&Attempt, i64)> = attempts
            .iter()
            .filter(|a| a.task == task)
            .filter_map(|a| present.get(&a.key).map(|(_, m)| (a, *m)))
            .collect();
        mine.sort_by_key(|(a, _)| a.n);
        for pair in mine.windows(2) {
            if pair[1].1 <= pair[0].1 {
                problems.push(format!(
                    "{label}: task {task}: {} (rev {}) written after {} (rev {}) has a lower revision",
                    pair[1].0.key, pair[1].1, pair[0].0.key, pair[0].1
                ));
            }
        }
    }
    for (key, (_, m)) in present {
        seen.insert(key.clone(), *m);
    }
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_kill_9() {
    let mut store = tokio::task::block_in_place(StoreProcess::start);
    let endpoint = store.endpoint();
    let mut attempts: Vec<Attempt> = Vec::new();
    let mut next_n = [0u64; TASKS];
    let mut seen = HashMap::new();
    let mut problems = Vec::new();

    for round in 0..ROUNDS {
        if round > 0 {
            tokio::task::block_in_place(|| store.restart());
            let (rev, present) = read_all(&endpoint).await;
            problems.extend(verify(&format!("after kill #{round}"), rev, &present, &attempts, &mut seen));
        }
        let killed = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..TASKS)
            .map(|task| {
                tokio::spawn(writer(endpoint.clone(), task, next_n[task], round, killed.clone(), stop.clone()))
            })
            .collect();
        tokio::time::sleep(LOAD_TIME).await;
        killed.store(true, Ordering::SeqCst);
        tokio::task::block_in_place(|| store.kill9());
        stop.store(true, Ordering::SeqCst);

        let mut round_acked = 0;
        let mut round_unknown = 0;
        for (task, w) in writers.into_iter().enumerate() {
            let mine = tokio::time::timeout(Duration::from_secs(30), w)
                .await
                .unwrap_or_else(|_| panic!("writer {task} did not stop within 30 s of the kill"))
                .expect("writer panicked");
            for a in &mine {
                match &a.outcome {
                    Outcome::Acked(_) => round_acked += 1,
                    Outcome::Unknown { error, before_kill } => {
                        round_unknown += 1;
                        if *before_kill {
                            problems.push(format!(
                                "round {round}: put of {} failed while the store was up: {error}",
                                a.key
                            ));
                        }
                    }
                }
            }
            if let Some(last) = mine.last() {
                next_n[task] = last.n + 1;
            }
            attempts.extend(mine);
        }
        eprintln!("round {round}: {round_acked} acknowledged, {round_unknown} unknown at the kill");
        assert!(round_acked > 0, "round {round}: no write was acknowledged\n{}", store.log_tail());
    }

    tokio::task::block_in_place(|| store.restart());
    let (rev, present) = read_all(&endpoint).await;
    problems.extend(verify("final", rev, &present, &attempts, &mut seen));
    let acked = attempts.iter().filter(|a| matches!(a.outcome, Outcome::Acked(_))).count();
    let unknown_present = attempts
        .iter()
        .filter(|a| matches!(a.outcome, Outcome::Unknown { .. }) && present.contains_key(&a.key))
        .count();
    eprintln!(
        "final: revision {rev}, {} keys present, {acked} acknowledged, {unknown_present} unacknowledged but applied",
        present.len()
    );

    // The store still takes writes after all that.
    let mut client = connect(&endpoint).await;
    let resp = client.put("crash-after", "ok", None).await.expect("put after the crashes");
    assert_eq!(resp.header().expect("header").revision(), rev + 1, "the revision continues");

    if !problems.is_empty() {
        let shown: Vec<_> = problems.iter().take(40).collect();
        panic!("{} problem(s) (first 40):\n{shown:#?}\n--- log tail ---\n{}", problems.len(), store.log_tail());
    }
}
