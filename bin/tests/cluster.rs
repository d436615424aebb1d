//! Three real `ferrokube store` processes on loopback, as an operator would run them:
//! - `kill_9_the_leader_under_load`: concurrent writers over all three endpoints, SIGKILL of
//!   the leader mid-load, failover, restart; afterwards every member holds every acknowledged
//!   write at its acknowledged revision, HashKV agrees, and each writer saw its revisions rise;
//! - `etcdctl_sees_three_members`: Debian's etcdctl 3.4 with all three endpoints
//!   (`endpoint status --cluster`, `endpoint health --cluster`, `member list`).
//!
//! Processes are stopped by their own PID (`Child::kill` is SIGKILL to that PID), never by name.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{file_tail, free_port, run_with_timeout, show, ETCDCTL, ETCDCTL_TIMEOUT, FERROKUBE};
use etcd_client::{Client, ConnectOptions, GetOptions};
use tempfile::TempDir;

const NAMES: [&str; 3] = ["a", "b", "c"];
/// Raft timing flags of every member (ms): etcd's flag names.
const ELECTION_MS: u64 = 500;
const HEARTBEAT_MS: u64 = 50;
/// Bound on one client call; longer is a hang.
const CALL_BOUND: Duration = Duration::from_secs(12);
/// Bound on a new leader after the old one is SIGKILLed. openraft 0.9 followers wait out the
/// leader lease (the maximal election timeout, 2 x 500 ms) plus their randomized election
/// timeout (500..1000 ms): 1.5..2 s, measured 1.6..1.8 s, once 4.1 s (a second round, e.g.
/// after a split vote). 8 s is generous.
const FAILOVER_BOUND: Duration = Duration::from_secs(8);
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// One member process.
struct Member {
    name: &'static str,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Member {
    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    fn spawn(&mut self, initial_cluster: &str) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        self.starts += 1;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log_path).expect("open log");
        writeln!(&log, "===== test: start #{} =====", self.starts).expect("write log");
        let mut cmd = Command::new(FERROKUBE);
        cmd.arg("store")
            .args(["--name", self.name])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--listen-client-urls", &self.endpoint()])
            .args(["--advertise-client-urls", &self.endpoint()])
            .args(["--listen-peer-urls", &self.peer_url()])
            .args(["--initial-advertise-peer-urls", &self.peer_url()])
            .args(["--initial-cluster", initial_cluster])
            .args(["--election-timeout", &ELECTION_MS.to_string()])
            .args(["--heartbeat-interval", &HEARTBEAT_MS.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log);
        self.child = Some(cmd.spawn().unwrap_or_else(|e| panic!("spawning {FERROKUBE}: {e}")));
    }

    /// SIGKILL to this member's PID, then reap it.
    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().expect("try_wait")) {
            panic!("{} exited with {status}\n--- log tail ---\n{}", self.name, file_tail(&self.log_path, 6000));
        }
    }
}

/// Three members, killed (by PID) on drop; logs are printed when a test fails.
struct ProcCluster {
    members: Vec<Member>,
    initial_cluster: String,
    _work: TempDir,
}

impl ProcCluster {
    fn start() -> Self {
        let work = tempfile::Builder::new().prefix("ferrokube-cluster-").tempdir().expect("tempdir");
        let mut members: Vec<Member> = NAMES
            .iter()
            .map(|name| Member {
                name,
                client_port: free_port(),
                peer_port: free_port(),
                data_dir: work.path().join(name).join("data"),
                log_path: work.path().join(format!("{name}.log")),
                child: None,
                starts: 0,
            })
            .collect();
        let initial_cluster =
            members.iter().map(|m| format!("{}={}", m.name, m.peer_url())).collect::<Vec<_>>().join(",");
        for m in &mut members {
            m.spawn(&initial_cluster);
        }
        Self { members, initial_cluster, _work: work }
    }

    fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::endpoint).collect()
    }

    fn restart(&mut self, i: usize) {
        let ic = self.initial_cluster.clone();
        self.members[i].spawn(&ic);
    }

    fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("--- {} log tail ---\n{}", m.name, file_tail(&m.log_path, 4000)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until every member in `among` is up and all of them report the same leader (one of
    /// `among`); returns that leader's index.
    async fn wait_leader(&mut self, among: &[usize], timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            for &i in among {
                self.members[i].assert_running();
            }
            let last = match leader_of(&self.endpoints(), among).await {
                Ok(Some(l)) => return l,
                Ok(None) => "members disagree or have no leader".to_string(),
                Err(e) => e,
            };
            assert!(Instant::now() < deadline, "no common leader among {among:?} within {timeout:?}: {last}\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ProcCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            m.kill9();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

async fn connect(endpoints: &[String]) -> Client {
    let opts = ConnectOptions::new().with_connect_timeout(Duration::from_secs(2)).with_timeout(Duration::from_secs(5));
    tokio::time::timeout(CALL_BOUND, Client::connect(endpoints, Some(opts)))
        .await
        .expect("connect hung")
        .expect("connect")
}

/// The member (index into `endpoints`) that every member of `among` names as leader, if they
/// agree; `Err` when one of them does not answer.
async fn leader_of(endpoints: &[String], among: &[usize]) -> Result<Option<usize>, String> {
    let mut ids = HashMap::new();
    let mut leaders = Vec::new();
    for &i in among {
        let mut c = connect(&endpoints[i..=i]).await;
        let s = match tokio::time::timeout(Duration::from_secs(2), c.status()).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(format!("status of member {i}: {e}")),
            Err(_) => return Err(format!("status of member {i} timed out")),
        };
        ids.insert(s.header().map(|h| h.member_id()).unwrap_or(0), i);
        leaders.push(s.leader());
    }
    if leaders.iter().any(|l| *l == 0 || *l != leaders[0]) {
        return Ok(None);
    }
    Ok(ids.get(&leaders[0]).copied())
}

#[derive(Debug, Clone)]
enum Outcome {
    Acked(i64),
    Unknown(String),
}

#[derive(Debug, Clone)]
struct Attempt {
    writer: usize,
    key: String,
    value: String,
    outcome: Outcome,
    /// Issued after the leader was killed.
    after_kill: bool,
}

/// Writer `w`: sequential puts of fresh keys through `endpoints` until stopped, carrying on
/// after failures (they are the expected effect of the kill) after a short pause.
async fn writer(endpoints: Vec<String>, w: usize, stop: Arc<AtomicBool>, killed: Arc<AtomicBool>) -> Vec<Attempt> {
    let mut client = connect(&endpoints).await;
    let mut attempts = Vec::new();
    for n in 0..100_000u64 {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let key = format!("cluster/{w}/{n:06}");
        let value = format!("w{w}-n{n}-{:x}", n.wrapping_mul(0x9e3779b97f4a7c15) ^ w as u64);
        let after_kill = killed.load(Ordering::SeqCst);
        let outcome = match tokio::time::timeout(CALL_BOUND, client.put(key.clone(), value.clone(), None)).await {
            Ok(Ok(r)) => Outcome::Acked(r.header().expect("header").revision()),
            Ok(Err(e)) => Outcome::Unknown(e.to_string()),
            Err(_) => panic!("writer {w}: put {key} hung for {CALL_BOUND:?}"),
        };
        let failed = matches!(outcome, Outcome::Unknown(_));
        attempts.push(Attempt { writer: w, key, value, outcome, after_kill });
        if failed {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    attempts
}

/// Every key under cluster/ on member `endpoint`, read serializably (its own state) at one
/// revision: key → (value, mod_revision), and that revision.
async fn read_all(endpoint: &str) -> (i64, BTreeMap<String, (String, i64)>) {
    let mut client = connect(&[endpoint.to_string()]).await;
    let mut out = BTreeMap::new();
    let mut start = b"cluster/".to_vec();
    let mut at = 0;
    loop {
        let mut opts = GetOptions::new().with_range("cluster0").with_limit(1000).with_serializable();
        if at > 0 {
            opts = opts.with_revision(at);
        }
        let resp = tokio::time::timeout(CALL_BOUND, client.get(start.clone(), Some(opts)))
            .await
            .expect("get hung")
            .expect("get");
        if at == 0 {
            at = resp.header().expect("header").revision();
        }
        for kv in resp.kvs() {
            out.insert(kv.key_str().unwrap().to_string(), (kv.value_str().unwrap().to_string(), kv.mod_revision()));
        }
        if !resp.more() || resp.kvs().is_empty() {
            return (at, out);
        }
        start = resp.kvs().last().unwrap().key().to_vec();
        start.push(0);
    }
}

fn verify(label: &str, present: &BTreeMap<String, (String, i64)>, attempts: &[Attempt]) -> Vec<String> {
    let mut problems = Vec::new();
    let by_key: HashMap<&str, &Attempt> = attempts.iter().map(|a| (a.key.as_str(), a)).collect();
    for a in attempts {
        if let Outcome::Acked(rev) = a.outcome {
            match present.get(&a.key) {
                None => problems.push(format!("{label}: acknowledged {} (rev {rev}) is missing", a.key)),
                Some((v, m)) if *v != a.value || *m != rev => {
                    problems.push(format!("{label}: {} = {v:?} at {m}, acknowledged {:?} at {rev}", a.key, a.value))
                }
                Some(_) => {}
            }
        }
    }
    for (k, (v, m)) in present {
        match by_key.get(k.as_str()) {
            None => problems.push(format!("{label}: {k} (rev {m}) was never written")),
            Some(a) if a.value != *v => problems.push(format!("{label}: {k} = {v:?}, written {:?}", a.value)),
            Some(_) => {}
        }
    }
    let mut revs: HashMap<i64, &str> = HashMap::new();
    for (k, (_, m)) in present {
        if let Some(other) = revs.insert(*m, k) {
            problems.push(format!("{label}: {k} and {other} share revision {m}"));
        }
    }
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_the_leader_under_load() {
    let mut cluster = tokio::task::block_in_place(ProcCluster::start);
    let all = [0, 1, 2];
    let old = cluster.wait_leader(&all, READY_TIMEOUT).await;
    let endpoints = cluster.endpoints();

    // Six writers: one pinned to each member, three over all three endpoints (etcd-client
    // balances them).
    let stop = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..6 {
        let eps = if w < 3 { vec![endpoints[w].clone()] } else { endpoints.clone() };
        writers.push(tokio::spawn(writer(eps, w, stop.clone(), killed.clone())));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let t0 = Instant::now();
    killed.store(true, Ordering::SeqCst);
    tokio::task::block_in_place(|| cluster.members[old].kill9());
    let rest: Vec<usize> = all.iter().copied().filter(|i| *i != old).collect();
    let new = cluster.wait_leader(&rest, FAILOVER_BOUND).await;
    let failover = t0.elapsed();
    eprintln!("kill -9 of leader {}: {} leads after {failover:?}", NAMES[old], NAMES[new]);

    // The survivors take writes for 2 s (checked below: acknowledgements after the kill), then
    // the killed member comes back under the same load.
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::block_in_place(|| cluster.restart(old));
    cluster.wait_leader(&all, READY_TIMEOUT).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    let mut attempts = Vec::new();
    for (w, h) in writers.into_iter().enumerate() {
        let mine = tokio::time::timeout(CALL_BOUND * 2, h)
            .await
            .unwrap_or_else(|_| panic!("writer {w} did not stop"))
            .expect("writer panicked");
        attempts.extend(mine);
    }
    let acked = attempts.iter().filter(|a| matches!(a.outcome, Outcome::Acked(_))).count();
    let acked_after = attempts.iter().filter(|a| a.after_kill && matches!(a.outcome, Outcome::Acked(_))).count();
    let mut errors: Vec<&str> = attempts
        .iter()
        .filter_map(|a| match &a.outcome {
            Outcome::Unknown(e) => Some(e.as_str()),
            Outcome::Acked(_) => None,
        })
        .collect();
    let failed = errors.len();
    errors.sort();
    errors.dedup();
    eprintln!("load: {} puts, {acked} acknowledged ({acked_after} after the kill), {failed} failed: {errors:?}", attempts.len());
    assert!(acked_after > 0, "no write was acknowledged after the leader was killed");

    // Each writer's acknowledged revisions only go up.
    let mut problems = Vec::new();
    let mut last: HashMap<usize, (i64, &str)> = HashMap::new();
    for a in &attempts {
        if let Outcome::Acked(rev) = a.outcome {
            if let Some((prev, pk)) = last.insert(a.writer, (rev, &a.key)) {
                if rev <= prev {
                    problems.push(format!("writer {}: {} acknowledged at {rev} after {pk} at {prev}", a.writer, a.key));
                }
            }
        }
    }

    // Converged: the same revision everywhere, the same HashKV at it, the same content.
    let deadline = Instant::now() + Duration::from_secs(20);
    let rev = loop {
        let mut revs = Vec::new();
        for ep in &endpoints {
            let mut c = connect(std::slice::from_ref(ep)).await;
            let r = tokio::time::timeout(CALL_BOUND, c.get("nothing", Some(GetOptions::new().with_serializable())))
                .await
                .expect("get hung");
            revs.push(r.map(|r| r.header().unwrap().revision()).unwrap_or(-1));
        }
        if revs.iter().all(|r| *r == revs[0] && *r > 0) {
            break revs[0];
        }
        assert!(Instant::now() < deadline, "members did not converge: revisions {revs:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut hashes = Vec::new();
    for ep in &endpoints {
        let mut c = connect(std::slice::from_ref(ep)).await;
        let h = tokio::time::timeout(CALL_BOUND, c.hash_kv(rev)).await.expect("hash_kv hung").expect("hash_kv");
        hashes.push(h.hash());
    }
    assert!(hashes.iter().all(|h| *h == hashes[0]), "HashKV at {rev} differs: {hashes:?}");
    let mut views = Vec::new();
    for (i, ep) in endpoints.iter().enumerate() {
        let (at, present) = read_all(ep).await;
        assert_eq!(at, rev, "member {} moved on", NAMES[i]);
        problems.extend(verify(NAMES[i], &present, &attempts));
        views.push(present);
    }
    assert!(views.windows(2).all(|w| w[0] == w[1]), "members hold different data");
    eprintln!("converged at revision {rev} with {} keys on every member", views[0].len());
    assert!(problems.is_empty(), "{} problem(s) (first 40):\n{:#?}", problems.len(), &problems[..problems.len().min(40)]);
}

/// `etcdctl --endpoints=<all three> ARGS` (ETCDCTL_API=3).
fn etcdctl(endpoints: &[String], args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(ETCDCTL);
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", endpoints.join(",")))
        .args(["--dial-timeout=5s", "--command-timeout=10s"])
        .args(args);
    run_with_timeout(cmd, None, ETCDCTL_TIMEOUT)
}

fn etcdctl_ok(endpoints: &[String], args: &[&str]) -> String {
    let out = etcdctl(endpoints, args);
    assert!(out.status.success(), "etcdctl {args:?} failed\n{}", show(&out));
    String::from_utf8(out.stdout).expect("utf-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_sees_three_members() {
    let mut cluster = tokio::task::block_in_place(ProcCluster::start);
    cluster.wait_leader(&[0, 1, 2], READY_TIMEOUT).await;
    let eps = cluster.endpoints();

    tokio::task::block_in_place(|| {
        // Like etcd, a member publishes its name and client URLs through raft after it starts
        // (until then `member list` shows it without client URLs): wait for all three.
        common::poll("every member to publish its client URLs", Duration::from_secs(15), || {
            let v: serde_json::Value =
                serde_json::from_str(&etcdctl_ok(&eps, &["member", "list", "-w", "json"])).expect("json");
            let members = v["members"].as_array().cloned().unwrap_or_default();
            let published = members.iter().filter(|m| m["clientURLs"].as_array().is_some_and(|u| !u.is_empty()));
            (published.count() == 3).then_some(())
        });
        // member list: the three founding members with their URLs.
        let list = etcdctl_ok(&eps, &["member", "list"]);
        let mut rows: Vec<Vec<String>> =
            list.lines().map(|l| l.split(", ").map(str::to_string).collect()).collect();
        rows.sort_by(|a, b| a[2].cmp(&b[2]));
        assert_eq!(rows.len(), 3, "member list:\n{list}");
        for (row, m) in rows.iter().zip(&cluster.members) {
            // <id>, started, <name>, <peer urls>, <client urls>, <is learner>
            assert_eq!(row[1..].to_vec(), vec!["started".to_string(), m.name.into(), m.peer_url(), m.endpoint(), "false".into()], "member list:\n{list}");
        }

        // endpoint status --cluster: one row per member, exactly one leader, the same everywhere.
        let v: serde_json::Value =
            serde_json::from_str(&etcdctl_ok(&eps, &["endpoint", "status", "--cluster", "-w", "json"])).expect("json");
        let rows = v.as_array().unwrap_or_else(|| panic!("not an array: {v}"));
        assert_eq!(rows.len(), 3, "endpoint status --cluster: {v}");
        let mut leaders = Vec::new();
        let mut endpoints: Vec<&str> = Vec::new();
        for r in rows {
            endpoints.push(r["Endpoint"].as_str().unwrap_or(""));
            let me = common::u64_at(&r["Status"], &["header", "member_id"]);
            let leader = common::u64_at(&r["Status"], &["leader"]);
            leaders.push(leader);
            assert_ne!(me, 0, "{r}");
        }
        assert!(leaders.iter().all(|l| *l != 0 && *l == leaders[0]), "members disagree on the leader: {v}");
        let is_leader = rows.iter().filter(|r| common::u64_at(&r["Status"], &["header", "member_id"]) == leaders[0]).count();
        assert_eq!(is_leader, 1, "exactly one leader: {v}");
        endpoints.sort();
        let mut want: Vec<String> = eps.clone();
        want.sort();
        assert_eq!(endpoints, want, "endpoint status --cluster reaches every member");

        // The table form: three rows, one with IS LEADER true.
        let table = etcdctl_ok(&eps, &["endpoint", "status", "--cluster", "-w", "table"]);
        let data_rows: Vec<&str> = table.lines().filter(|l| l.starts_with("| http://")).collect();
        assert_eq!(data_rows.len(), 3, "{table}");
        assert_eq!(data_rows.iter().filter(|l| l.contains("|      true |")).count(), 1, "one leader row:\n{table}");

        // endpoint health --cluster: every member healthy.
        let out = etcdctl(&eps, &["endpoint", "health", "--cluster"]);
        assert!(out.status.success(), "endpoint health --cluster\n{}", show(&out));
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let healthy: Vec<&str> = text.lines().filter(|l| l.contains("is healthy")).collect();
        assert_eq!(healthy.len(), 3, "{text}");
        for ep in &eps {
            assert!(healthy.iter().any(|l| l.starts_with(&format!("{ep} is healthy"))), "{ep} missing:\n{text}");
        }
    });
}
