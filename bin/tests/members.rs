//! End-to-end membership: real `ferrokube store` processes driven by Debian's `etcdctl` 3.4,
//! the way an etcd operator grows, inspects, re-leads and shrinks a cluster:
//! `member list`, `member add` + a member started with `--initial-cluster-state existing` from
//! the `ETCD_INITIAL_CLUSTER` line etcdctl prints, `endpoint status --cluster`, `move-leader`,
//! `member remove` (the removed process exits).
//!
//! Every child process is ended by its own PID (`Child::kill`), never by name.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::{
    file_tail, free_port, poll, run_with_timeout, show, u64_at, wait_exit, ETCDCTL, ETCDCTL_TIMEOUT, FERROKUBE,
};
use tempfile::TempDir;

const TOKEN: &str = "members-e2e";
const SETTLE: Duration = Duration::from_secs(30);

/// One `ferrokube store` member process. Dropping it kills the process (by PID).
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
    log_path: PathBuf,
    work: TempDir,
}

impl Member {
    /// Ports and a work dir for a member named `name` (not started).
    fn new(name: &str) -> Self {
        let work = tempfile::Builder::new().prefix("ferrokube-members-").tempdir().expect("tempdir");
        Self {
            name: name.into(),
            client_port: free_port(),
            peer_port: free_port(),
            child: None,
            log_path: work.path().join("store.log"),
            work,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    /// Spawns `ferrokube store` with `--initial-cluster initial` in `state` (new / existing).
    fn spawn(&mut self, initial: &str, state: &str) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log_path).expect("open log");
        let mut cmd = Command::new(FERROKUBE);
        cmd.arg("store")
            .args(["--name", &self.name])
            .arg("--data-dir")
            .arg(self.work.path().join("data"))
            .args(["--listen-client-urls", &self.endpoint()])
            .args(["--advertise-client-urls", &self.endpoint()])
            .args(["--listen-peer-urls", &self.peer_url()])
            .args(["--initial-advertise-peer-urls", &self.peer_url()])
            .args(["--initial-cluster", initial])
            .args(["--initial-cluster-state", state])
            .args(["--initial-cluster-token", TOKEN])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log);
        self.child = Some(cmd.spawn().unwrap_or_else(|e| panic!("spawning {FERROKUBE}: {e}")));
    }

    fn log_tail(&self) -> String {
        file_tail(&self.log_path, 4000)
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- {} log tail ---\n{}", self.name, self.log_tail());
        }
    }
}

/// `etcdctl --endpoints=EPS ARGS` (ETCDCTL_API=3).
fn etcdctl(endpoints: &[String], args: &[&str]) -> Output {
    let mut cmd = Command::new(ETCDCTL);
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", endpoints.join(",")))
        .arg("--dial-timeout=3s")
        .arg("--command-timeout=8s")
        .args(args);
    run_with_timeout(cmd, None, ETCDCTL_TIMEOUT)
}

/// `etcdctl ARGS`, asserting success; returns stdout.
fn ok(endpoints: &[String], args: &[&str]) -> String {
    let out = etcdctl(endpoints, args);
    assert!(out.status.success(), "etcdctl {args:?} against {endpoints:?} failed\n{}", show(&out));
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// `etcdctl ARGS -w json` parsed, or None if it failed.
fn json(endpoints: &[String], args: &[&str]) -> Option<serde_json::Value> {
    let mut all = args.to_vec();
    all.extend(["-w", "json"]);
    let out = etcdctl(endpoints, &all);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// One member as `member list -w json` shows it: (hex id, name, peer URLs, client URLs,
/// learner).
type Listed = (String, String, String, String, bool);

/// `member list -w json`, sorted by name.
fn member_list(endpoint: &str) -> Option<Vec<Listed>> {
    let v = json(&[endpoint.to_string()], &["member", "list"])?;
    let mut out: Vec<_> = v["members"]
        .as_array()?
        .iter()
        .map(|m| {
            let urls = |k: &str| {
                m[k].as_array()
                    .map(|a| a.iter().filter_map(|u| u.as_str()).collect::<Vec<_>>().join(","))
                    .unwrap_or_default()
            };
            (
                format!("{:x}", u64_at(m, &["ID"])),
                m["name"].as_str().unwrap_or("").to_string(),
                urls("peerURLs"),
                urls("clientURLs"),
                m["isLearner"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Some(out)
}

/// Waits until `endpoint` lists exactly `members` (name, peer URL, client URL) as voters;
/// returns the hex ids by name order.
fn wait_listed(endpoint: &str, members: &[&Member]) -> Vec<String> {
    let mut want: Vec<(String, String, String)> =
        members.iter().map(|m| (m.name.clone(), m.peer_url(), m.endpoint())).collect();
    want.sort();
    let listed = poll(&format!("{endpoint} to list {want:?}"), SETTLE, || {
        let got = member_list(endpoint)?;
        let seen: Vec<(String, String, String)> =
            got.iter().filter(|m| !m.4).map(|m| (m.1.clone(), m.2.clone(), m.3.clone())).collect();
        (seen == want && got.len() == want.len()).then_some(got)
    });
    listed.into_iter().map(|m| m.0).collect()
}

/// `endpoint status --cluster -w json` as (endpoint, member id, leader id).
fn cluster_status(endpoint: &str) -> Option<Vec<(String, u64, u64)>> {
    let v = json(&[endpoint.to_string()], &["endpoint", "status", "--cluster"])?;
    let mut out: Vec<_> = v
        .as_array()?
        .iter()
        .map(|e| {
            (
                e["Endpoint"].as_str().unwrap_or("").to_string(),
                u64_at(&e["Status"], &["header", "member_id"]),
                u64_at(&e["Status"], &["leader"]),
            )
        })
        .collect();
    out.sort();
    Some(out)
}

#[test]
fn members_are_added_listed_moved_to_and_removed_with_etcdctl() {
    // Three founding members.
    let mut members: Vec<Member> = ["a", "b", "c"].iter().map(|n| Member::new(n)).collect();
    let initial = members.iter().map(|m| format!("{}={}", m.name, m.peer_url())).collect::<Vec<_>>().join(",");
    for m in &mut members {
        m.spawn(&initial, "new");
    }
    let all = |ms: &[Member]| ms.iter().map(Member::endpoint).collect::<Vec<_>>();
    for m in &members {
        poll(&format!("{} healthy", m.name), SETTLE, || {
            etcdctl(&[m.endpoint()], &["endpoint", "health"]).status.success().then_some(())
        });
    }

    // Every member lists every member with its name, peer URL and client URL.
    let founders: Vec<&Member> = members.iter().collect();
    let ids = wait_listed(&members[0].endpoint(), &founders);
    for m in &members[1..] {
        assert_eq!(wait_listed(&m.endpoint(), &founders), ids, "{} lists the same ids", m.name);
    }
    assert_eq!(ok(&[members[1].endpoint()], &["put", "before", "added"]), "OK\n");

    // member add, through a member that may well be a follower; etcdctl prints the
    // environment the new member starts with.
    let mut d = Member::new("d");
    let out = ok(&[members[2].endpoint()], &["member", "add", "d", &format!("--peer-urls={}", d.peer_url())]);
    let added_line = out.lines().next().unwrap_or_default();
    assert!(added_line.starts_with("Member ") && added_line.contains(" added to cluster "), "{out}");
    let d_id = added_line.split_whitespace().nth(1).unwrap().to_string();
    let env = |key: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=\"")).and_then(|v| v.strip_suffix('"')))
            .unwrap_or_else(|| panic!("no {key} in member add output:\n{out}"))
            .to_string()
    };
    assert_eq!(env("ETCD_NAME"), "d");
    assert_eq!(env("ETCD_INITIAL_CLUSTER_STATE"), "existing");
    assert_eq!(env("ETCD_INITIAL_ADVERTISE_PEER_URLS"), d.peer_url());
    let d_initial = env("ETCD_INITIAL_CLUSTER");
    for m in members.iter().chain([&d]) {
        assert!(d_initial.contains(&format!("{}={}", m.name, m.peer_url())), "{d_initial}");
    }
    d.spawn(&d_initial, "existing");
    poll("d healthy", SETTLE, || etcdctl(&[d.endpoint()], &["endpoint", "health"]).status.success().then_some(()));
    // d has caught up: a serializable read on it sees what was written before it joined.
    assert_eq!(ok(&[d.endpoint()], &["get", "before", "--consistency=s", "--print-value-only"]), "added\n");
    members.push(d);
    let everyone: Vec<&Member> = members.iter().collect();
    let ids4 = wait_listed(&members[3].endpoint(), &everyone);
    assert!(ids4.contains(&d_id), "{ids4:?} lacks {d_id}");
    assert_eq!(wait_listed(&members[0].endpoint(), &everyone), ids4);

    // endpoint status --cluster reaches every member through its published client URL, and
    // all four follow one leader.
    let status = poll("endpoint status --cluster on 4 members with one leader", SETTLE, || {
        let s = cluster_status(&members[0].endpoint())?;
        (s.len() == 4 && s.iter().all(|e| e.2 == s[0].2 && e.2 != 0)).then_some(s)
    });
    let endpoints: Vec<String> = status.iter().map(|e| e.0.clone()).collect();
    assert_eq!(endpoints, {
        let mut e = all(&members);
        e.sort();
        e
    });

    // move-leader to the new member (etcdctl finds the leader among the endpoints).
    let target = u64::from_str_radix(&d_id, 16).unwrap();
    let leader = status[0].2;
    if leader != target {
        let out = ok(&all(&members), &["move-leader", &d_id]);
        assert_eq!(out, format!("Leadership transferred from {leader:x} to {d_id}\n"));
    }
    poll("every member follows d", SETTLE, || {
        let s = cluster_status(&members[0].endpoint())?;
        (s.len() == 4 && s.iter().all(|e| e.2 == target)).then_some(())
    });
    assert_eq!(ok(&[members[0].endpoint()], &["put", "after-move", "x"]), "OK\n");

    // member remove b: the others keep serving, and b's process exits.
    let b_id = {
        let listed = member_list(&members[0].endpoint()).unwrap();
        listed.iter().find(|m| m.1 == "b").unwrap().0.clone()
    };
    let out = ok(&[members[0].endpoint()], &["member", "remove", &b_id]);
    // etcdctl prints ids with %16x: space-padded when shorter than 16 hex digits.
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(words[..5], ["Member", b_id.as_str(), "removed", "from", "cluster"], "{out}");
    let mut b = members.remove(1);
    let exited = wait_exit(b.child.as_mut().unwrap(), SETTLE);
    assert!(exited.is_some_and(|s| s.success()), "the removed member exits cleanly: {exited:?}\n{}", b.log_tail());
    b.child = None;
    assert!(b.log_tail().contains("permanently removed from the cluster"), "{}", b.log_tail());
    let rest: Vec<&Member> = members.iter().collect();
    for m in &members {
        wait_listed(&m.endpoint(), &rest);
    }
    poll("endpoint status --cluster on the 3 left", SETTLE, || {
        let s = cluster_status(&members[0].endpoint())?;
        (s.len() == 3 && s.iter().all(|e| e.2 == s[0].2 && e.2 != 0)).then_some(())
    });
    assert_eq!(ok(&[members[1].endpoint()], &["put", "after-remove", "y"]), "OK\n");
    assert_eq!(ok(&[members[2].endpoint()], &["get", "after-remove", "--print-value-only"]), "y\n");
}
