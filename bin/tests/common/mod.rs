//! Shared helpers for the end-to-end tests: a `ferrokube store` child process guard, an
//! `etcdctl` runner with hard timeouts, a background `etcdctl watch` reader and tiny JSON /
//! base64 helpers for `-w json` output.
//!
//! Every child process is ended by its own PID (`Child::kill` or `kill -TERM <pid>`), never by
//! name.
#![allow(dead_code)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The binary under test.
pub const FERROKUBE: &str = env!("CARGO_BIN_EXE_ferrokube");
/// Debian's etcdctl (etcd-client 3.4.23).
pub const ETCDCTL: &str = "/usr/bin/etcdctl";
/// How long a store may take to answer `endpoint health` after spawning.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Hard wall-clock bound on any one etcdctl invocation (its own timeouts are shorter).
pub const ETCDCTL_TIMEOUT: Duration = Duration::from_secs(30);

/// Ports handed out by this test binary, so two tests in one process never get the same one.
static USED_PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A free loopback port: bind 127.0.0.1:0, read the port, drop the listener.
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0").local_addr().unwrap().port();
        let mut used = USED_PORTS.lock().unwrap();
        if used.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
    panic!("no free port found in 100 tries");
}

/// The last `max` bytes of a file, lossily decoded (for failure messages).
pub fn file_tail(path: &Path, max: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(max);
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// Spawns `BINARY SUBCOMMAND --data-dir DATA --secure-port <a free port> EXTRA...` (`up`,
/// `apiserver`), stderr appended to `log`, and waits up to 60 s for it to print `serving on`.
/// Returns the child and the kubeconfig path it printed; panics with the log if it never serves.
pub fn spawn_serving(binary: &Path, subcommand: &str, data: &Path, log: &Path, extra: &[&str]) -> (Child, PathBuf) {
    let port = free_port().to_string();
    let stderr = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("opening the log");
    let mut child = Command::new(binary)
        .args([subcommand, "--data-dir", data.to_str().expect("utf-8 data dir"), "--secure-port", &port])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning ferrokube {subcommand}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut kubeconfig = None;
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line.starts_with("kubeconfig: ") => kubeconfig = Some(PathBuf::from(&line[12..])),
            Ok(line) if line.starts_with("serving on ") => break,
            Ok(_) => {}
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("ferrokube {subcommand} did not start:\n{}", file_tail(log, 4000));
            }
        }
    }
    (child, kubeconfig.expect("the kubeconfig path is printed before serving"))
}

/// Runs `cmd` to completion with `stdin` fed to it, killing it (by PID) and panicking if it
/// takes longer than `timeout`.
pub fn run_with_timeout(mut cmd: Command, stdin: Option<&str>, timeout: Duration) -> Output {
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let described = format!("{cmd:?}");
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawning {described}: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let input = input.to_string();
        std::thread::spawn(move || {
            let _ = pipe.write_all(input.as_bytes());
        });
    }
    let out_reader = spawn_reader(child.stdout.take().unwrap());
    let err_reader = spawn_reader(child.stderr.take().unwrap());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait().expect("try_wait") {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                let stdout = out_reader.join().unwrap_or_default();
                let stderr = err_reader.join().unwrap_or_default();
                panic!(
                    "{described} did not finish within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                    String::from_utf8_lossy(&stdout),
                    String::from_utf8_lossy(&stderr)
                );
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    Output { status, stdout: out_reader.join().unwrap_or_default(), stderr: err_reader.join().unwrap_or_default() }
}

fn spawn_reader(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// Runs `ferrokube ARGS...` to completion (bounded by `timeout`).
pub fn run_ferrokube(args: &[&str], timeout: Duration) -> Output {
    let mut cmd = Command::new(FERROKUBE);
    cmd.args(args);
    run_with_timeout(cmd, None, timeout)
}

/// A human-readable rendering of an `Output` for assertion messages.
pub fn show(out: &Output) -> String {
    format!(
        "status: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Waits (bounded) for a child to exit.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One `ferrokube store` child process. Dropping it kills the process (by PID).
pub struct StoreProcess {
    child: Option<Child>,
    /// Client port: the store serves the etcd API at http://127.0.0.1:<client_port>.
    pub client_port: u16,
    /// Peer (raft) port.
    pub peer_port: u16,
    /// `--name`.
    pub name: String,
    /// `--data-dir`.
    pub data_dir: PathBuf,
    /// Where the child's stderr goes.
    pub log_path: PathBuf,
    extra_args: Vec<String>,
    starts: u32,
    /// Holds the log file (and the data dir when the store owns it).
    work: TempDir,
}

impl StoreProcess {
    /// A store on a fresh temporary data dir, waited until ready.
    pub fn start() -> Self {
        Self::start_with(None, &[])
    }

    /// A store on `data_dir` (or a fresh one) with `extra` flags appended, waited until ready.
    pub fn start_with(data_dir: Option<&Path>, extra: &[&str]) -> Self {
        let work = tempfile::Builder::new().prefix("ferrokube-e2e-").tempdir().expect("tempdir");
        let data_dir = data_dir.map(Path::to_path_buf).unwrap_or_else(|| work.path().join("data"));
        let mut store = Self {
            child: None,
            client_port: free_port(),
            peer_port: free_port(),
            name: "e2e".to_string(),
            data_dir,
            log_path: work.path().join("store.log"),
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            starts: 0,
            work,
        };
        store.spawn();
        store.wait_ready();
        store
    }

    /// The client URL (`http://127.0.0.1:P`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The peer URL (`http://127.0.0.1:Q`).
    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    /// A scratch directory that lives as long as this guard.
    pub fn scratch(&self) -> &Path {
        self.work.path()
    }

    /// The PID of the running child.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("store is not running").id()
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "store is already running");
        self.starts += 1;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log_path).expect("open log");
        {
            let mut l = &log;
            let _ = writeln!(l, "===== e2e: start #{} =====", self.starts);
        }
        // Developer aid: E2E_REFERENCE_ETCD=/usr/bin/etcd runs the same tests against real etcd
        // (to validate the expected outputs; ferrokube-only tests will then fail).
        let mut cmd = match std::env::var_os("E2E_REFERENCE_ETCD") {
            Some(etcd) => {
                let mut c = Command::new(etcd);
                c.arg("--initial-advertise-peer-urls").arg(self.peer_url());
                c
            }
            None => {
                let mut c = Command::new(FERROKUBE);
                c.arg("store");
                c
            }
        };
        cmd.arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen-client-urls")
            .arg(self.endpoint())
            .arg("--advertise-client-urls")
            .arg(self.endpoint())
            .arg("--listen-peer-urls")
            .arg(self.peer_url())
            .arg("--initial-cluster")
            .arg(format!("{}={}", self.name, self.peer_url()))
            .arg("--heartbeat-interval")
            .arg("50")
            .arg("--election-timeout")
            .arg("500")
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log);
        self.child = Some(cmd.spawn().unwrap_or_else(|e| panic!("spawning {FERROKUBE}: {e}")));
    }

    /// Polls `etcdctl endpoint health` until it succeeds; panics with the log tail after
    /// [`READY_TIMEOUT`] or if the process exits.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().expect("not running").try_wait().expect("try_wait") {
                self.child = None;
                panic!(
                    "store exited during startup with {status}\n--- log tail ---\n{}",
                    file_tail(&self.log_path, 6000)
                );
            }
            let out = self.etcdctl_timeouts(&["endpoint", "health"], None, "1s", "2s");
            if out.status.success() {
                return;
            }
            if Instant::now() >= deadline {
                let last = show(&out);
                panic!(
                    "store not healthy within {READY_TIMEOUT:?}; last probe:\n{last}\n--- log tail ---\n{}",
                    file_tail(&self.log_path, 6000)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL by PID, then reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM by PID (`kill -TERM <pid>`); waits up to `timeout` for the exit and returns its
    /// status (None: still running after `timeout`; the process is then SIGKILLed).
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take().expect("store is not running");
        let sent = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().expect("run kill");
        assert!(sent.success(), "kill -TERM {} failed", child.id());
        let status = wait_exit(&mut child, timeout);
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        status
    }

    /// Starts the (stopped) store again on the same data dir and ports, waited until ready.
    pub fn restart(&mut self) {
        self.spawn();
        self.wait_ready();
    }

    /// Whether the child is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().expect("try_wait").is_none(),
            None => false,
        }
    }

    /// The log so far (tail).
    pub fn log_tail(&self) -> String {
        file_tail(&self.log_path, 6000)
    }

    fn etcdctl_timeouts(&self, args: &[&str], stdin: Option<&str>, dial: &str, command: &str) -> Output {
        let mut cmd = Command::new(ETCDCTL);
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint()))
            .arg(format!("--dial-timeout={dial}"))
            .arg(format!("--command-timeout={command}"))
            .args(args);
        run_with_timeout(cmd, stdin, ETCDCTL_TIMEOUT)
    }

    /// `etcdctl ARGS` against this store (ETCDCTL_API=3, dial 5 s, command 10 s).
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        self.etcdctl_timeouts(args, None, "5s", "10s")
    }

    /// `etcdctl ARGS` with `stdin` piped in.
    pub fn etcdctl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        self.etcdctl_timeouts(args, Some(stdin), "5s", "10s")
    }

    /// `etcdctl ARGS`, asserting success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.etcdctl(args);
        assert!(out.status.success(), "etcdctl {args:?} failed\n{}\n--- store log tail ---\n{}", show(&out), self.log_tail());
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// `etcdctl ARGS` with stdin, asserting success; returns stdout.
    pub fn ok_stdin(&self, args: &[&str], stdin: &str) -> String {
        let out = self.etcdctl_stdin(args, stdin);
        assert!(
            out.status.success(),
            "etcdctl {args:?} <<< {stdin:?} failed\n{}\n--- store log tail ---\n{}",
            show(&out),
            self.log_tail()
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// `etcdctl ARGS`, asserting failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.etcdctl(args);
        assert!(!out.status.success(), "etcdctl {args:?} unexpectedly succeeded\n{}", show(&out));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `etcdctl ARGS` with stdin, asserting failure; returns stderr.
    pub fn fails_stdin(&self, args: &[&str], stdin: &str) -> String {
        let out = self.etcdctl_stdin(args, stdin);
        assert!(!out.status.success(), "etcdctl {args:?} <<< {stdin:?} unexpectedly succeeded\n{}", show(&out));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `etcdctl ARGS -w json`, parsed.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-w", "json"]);
        let out = self.ok(&all);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("etcdctl {all:?}: not JSON ({e}):\n{out}"))
    }

    /// The store's current revision (header of `get -w json` on an unused key).
    pub fn revision(&self) -> i64 {
        let v = self.json(&["get", "__e2e_no_such_key__"]);
        i64_at(&v, &["header", "revision"])
    }

    /// Starts `etcdctl watch ARGS` in the background.
    pub fn watch(&self, args: &[&str]) -> Watcher {
        let mut cmd = Command::new(ETCDCTL);
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint()))
            .arg("--dial-timeout=5s")
            .arg("watch")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn etcdctl watch");
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        });
        let stderr = spawn_reader(child.stderr.take().unwrap());
        Watcher { child, rx, stderr: Some(stderr), args: args.iter().map(|s| s.to_string()).collect() }
    }
}

impl Drop for StoreProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- ferrokube log tail ({}) ---\n{}", self.log_path.display(), self.log_tail());
        }
    }
}

/// A background `etcdctl watch`; its stdout lines arrive through a channel. Dropping it kills
/// the etcdctl child by PID.
pub struct Watcher {
    child: Child,
    rx: Receiver<String>,
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
    args: Vec<String>,
}

impl Watcher {
    /// The next line, or None after `timeout`.
    pub fn next_line(&mut self, timeout: Duration) -> Option<String> {
        match self.rx.recv_timeout(timeout) {
            Ok(l) => Some(l),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Reads exactly `expected.len()` lines (within `timeout` overall) and asserts they equal
    /// `expected`.
    pub fn expect_lines(&mut self, expected: &[&str], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut got: Vec<String> = Vec::new();
        while got.len() < expected.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_line(left) {
                Some(l) => got.push(l),
                None => {
                    let diag = self.diagnostics();
                    panic!(
                        "watch {:?}: expected lines {expected:?} within {timeout:?}, got only {got:?}\n{diag}",
                        self.args
                    );
                }
            }
        }
        assert_eq!(got, expected, "watch {:?} printed unexpected lines", self.args);
    }

    /// Asserts nothing more is printed within `quiet`.
    pub fn expect_silence(&mut self, quiet: Duration) {
        if let Some(l) = self.next_line(quiet) {
            panic!("watch {:?}: unexpected extra line {l:?}", self.args);
        }
    }

    /// Establishes that the watch is live: puts `<key>0`, `<key>1`, ... (bounded) until the
    /// watcher prints an event, then consumes events up to the last one put. `key` must be a
    /// prefix inside the watched range.
    pub fn sync(&mut self, store: &StoreProcess, key: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        for i in 0.. {
            if Instant::now() >= deadline {
                let diag = self.diagnostics();
                panic!("watch {:?} never delivered an event for {key}*\n{diag}", self.args);
            }
            // A fresh key each time, so events are 3 lines even with --prev-kv.
            let value = format!("sync-{i}");
            store.ok(&["put", &format!("{key}{i}"), &value]);
            if let Some(first) = self.next_line(Duration::from_millis(500)) {
                assert_eq!(first, "PUT", "first watch line");
                // Consume PUT/key/value triples until the last value we put shows up.
                let mut line_no = 1;
                loop {
                    let l = self
                        .next_line(Duration::from_secs(10))
                        .unwrap_or_else(|| panic!("watch stalled while syncing\n{}", self.diagnostics()));
                    line_no += 1;
                    if line_no % 3 == 0 && l == value {
                        return;
                    }
                }
            }
        }
    }

    fn diagnostics(&mut self) -> String {
        let exited = self.child.try_wait().ok().flatten();
        let stderr = if exited.is_some() {
            self.stderr.take().and_then(|h| h.join().ok()).map(|b| String::from_utf8_lossy(&b).into_owned())
        } else {
            None
        };
        format!("etcdctl watch exited: {exited:?}; stderr: {}", stderr.unwrap_or_else(|| "<still running>".into()))
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `v[path...]` as i64 (panics with the JSON on mismatch). Missing numeric fields count as 0,
/// as etcd's JSON omits zero values.
pub fn i64_at(v: &serde_json::Value, path: &[&str]) -> i64 {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(next) => cur = next,
            None => return 0,
        }
    }
    cur.as_i64().or_else(|| cur.as_u64().map(|u| u as i64)).unwrap_or_else(|| panic!("{path:?} is not a number in {v}"))
}

/// `v[path...]` as u64 (0 when missing).
pub fn u64_at(v: &serde_json::Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(next) => cur = next,
            None => return 0,
        }
    }
    cur.as_u64().unwrap_or_else(|| panic!("{path:?} is not an unsigned number in {v}"))
}

/// One key-value from `get -w json`, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonKv {
    pub key: String,
    pub value: String,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub lease: i64,
}

/// The `kvs` of a `get -w json` answer, decoded (empty when absent).
pub fn kvs(v: &serde_json::Value) -> Vec<JsonKv> {
    let Some(list) = v.get("kvs") else { return vec![] };
    list.as_array()
        .unwrap_or_else(|| panic!("kvs is not an array in {v}"))
        .iter()
        .map(|kv| JsonKv {
            key: b64_str(kv.get("key").and_then(|k| k.as_str()).unwrap_or("")),
            value: b64_str(kv.get("value").and_then(|k| k.as_str()).unwrap_or("")),
            create_revision: i64_at(kv, &["create_revision"]),
            mod_revision: i64_at(kv, &["mod_revision"]),
            version: i64_at(kv, &["version"]),
            lease: i64_at(kv, &["lease"]),
        })
        .collect()
}

/// Standard base64 decode (with padding), as Go's encoding/json writes `[]byte`.
pub fn b64_decode(s: &str) -> Vec<u8> {
    fn val(c: u8) -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("bad base64 character {:?}", c as char),
        }
    }
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c) << (18 - 6 * i);
        }
        out.push((acc >> 16) as u8);
        if chunk.len() > 2 {
            out.push((acc >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(acc as u8);
        }
    }
    out
}

/// Base64 to a UTF-8 string.
pub fn b64_str(s: &str) -> String {
    String::from_utf8(b64_decode(s)).expect("utf-8 after base64")
}

/// Polls `f` every 100 ms until it returns Some, panicking with `what` after `timeout`.
pub fn poll<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
