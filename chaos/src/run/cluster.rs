//! The member processes of one run: started in their namespaces with `ip netns exec` (which
//! execs, so the child's pid is the member's), killed, paused and restarted by pid only.
//! Dropping the [`Cluster`] kills every member still running.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::net::Net;

/// Which server the members run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `ferrokube store` from this binary.
    Ferrokube(PathBuf),
    /// An etcd binary (Debian's 3.4 at `/usr/bin/etcd`).
    Etcd(PathBuf),
}

impl Target {
    /// `ferrokube` or `etcd`, for reports.
    pub fn name(&self) -> &'static str {
        match self {
            Target::Ferrokube(_) => "ferrokube",
            Target::Etcd(_) => "etcd",
        }
    }
}

/// One member: where it lives and its process, if running.
pub struct Member {
    /// `n1`, `n2`, ...
    pub name: String,
    pub ns: String,
    pub ip: String,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    paused: bool,
}

impl Member {
    /// Its client URL (as seen from the bridge namespace).
    pub fn client_url(&self) -> String {
        format!("http://{}:2379", self.ip)
    }

    /// Its peer URL.
    pub fn peer_url(&self) -> String {
        format!("http://{}:2380", self.ip)
    }

    /// The pid of the running process, if any.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// The members of one run.
pub struct Cluster {
    pub target: Target,
    pub members: Vec<Member>,
    token: String,
    started: Instant,
}

impl Cluster {
    /// Describes (does not start) one member per namespace of `net`, with data dirs and logs
    /// under `results`; log markers give times on the run's clock `started`.
    pub fn new(
        target: Target,
        net: &Net,
        members: usize,
        results: &Path,
        token: &str,
        started: Instant,
    ) -> Cluster {
        let members = (0..members)
            .map(|m| Member {
                name: format!("n{}", m + 1),
                ns: net.member_ns(m),
                ip: net.member_ip(m),
                data_dir: results.join("data").join(format!("n{}", m + 1)),
                log: results.join("logs").join(format!("n{}.log", m + 1)),
                child: None,
                paused: false,
            })
            .collect();
        Cluster {
            target,
            members,
            token: token.to_owned(),
            started,
        }
    }

    /// Every member's client URL, in member order.
    pub fn client_urls(&self) -> Vec<String> {
        self.members.iter().map(Member::client_url).collect()
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts member `m` (`existing`: join a running cluster after a MemberAdd, on a fresh
    /// data dir). Its stdout and stderr are appended to `logs/n<m>.log`.
    pub fn start(&mut self, m: usize, existing: bool) -> Result<(), String> {
        let initial_cluster = self.initial_cluster();
        let elapsed = self.started.elapsed();
        let (bin, leading): (&Path, &[&str]) = match &self.target {
            Target::Ferrokube(p) => (p, &["store"]),
            Target::Etcd(p) => (p, &[]),
        };
        let member = &mut self.members[m];
        if member.child.is_some() {
            return Err(format!("{} is already running", member.name));
        }
        if let Some(dir) = member.log.parent() {
            fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        fs::create_dir_all(member.data_dir.parent().expect("data/nX"))
            .map_err(|e| format!("{}: {e}", member.data_dir.display()))?;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&member.log)
            .map_err(|e| format!("{}: {e}", member.log.display()))?;
        let _ = writeln!(
            log,
            "=== chaos: starting {} at t={:.3}s ({}) ===",
            member.name,
            elapsed.as_secs_f64(),
            if existing {
                "--initial-cluster-state existing, fresh data dir"
            } else {
                "--initial-cluster-state new"
            }
        );
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let client = member.client_url();
        let peer = member.peer_url();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &member.ns])
            .arg(bin)
            .args(leading)
            .args(["--name", &member.name])
            .arg("--data-dir")
            .arg(&member.data_dir)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial_cluster])
            .args([
                "--initial-cluster-state",
                if existing { "existing" } else { "new" },
            ])
            .args(["--initial-cluster-token", &self.token])
            .args(["--election-timeout", "1000", "--heartbeat-interval", "100"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err));
        // Its own process group: a Ctrl-C in the terminal reaches the harness, which then
        // stops the members itself, instead of killing them mid-run behind its back.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd
            .spawn()
            .map_err(|e| format!("starting {}: {e}", member.name))?;
        member.child = Some(child);
        member.paused = false;
        Ok(())
    }

    /// `kill -9` member `m` and reaps it (no-op if not running).
    pub fn kill(&mut self, m: usize) {
        let member = &mut self.members[m];
        if let Some(mut child) = member.child.take() {
            let _ = child.kill(); // SIGKILL, by pid
            let _ = child.wait();
        }
        member.paused = false;
    }

    /// SIGSTOP (`pause`) or SIGCONT member `m`, by pid.
    pub fn signal_pause(&mut self, m: usize, pause: bool) {
        let member = &mut self.members[m];
        if let Some(pid) = member.pid() {
            let sig = if pause { libc::SIGSTOP } else { libc::SIGCONT };
            // SAFETY: kill(2) on the pid of a child we have not reaped yet, so it cannot
            // have been recycled for another process.
            unsafe { libc::kill(pid as libc::pid_t, sig) };
            member.paused = pause;
        }
    }

    /// Whether member `m`'s process is running (reaping it if it exited).
    pub fn running(&mut self, m: usize) -> bool {
        let member = &mut self.members[m];
        match &mut member.child {
            Some(c) => match c.try_wait() {
                Ok(None) => true,
                _ => {
                    member.child = None;
                    false
                }
            },
            None => false,
        }
    }

    /// Waits up to `timeout` for member `m` to exit by itself (a removed member does).
    pub fn wait_exit(&mut self, m: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if !self.running(m) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Deletes member `m`'s data dir (it must not be running).
    pub fn wipe(&mut self, m: usize) -> Result<(), String> {
        let dir = &self.members[m].data_dir;
        match fs::remove_dir_all(dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("{}: {e}", dir.display())),
        }
    }

    /// Resumes every paused member and starts every stopped one (on its data dir), except
    /// `skip` (a removed member that must not restart on its old data).
    pub fn heal_except(&mut self, skip: Option<usize>) -> Result<Vec<String>, String> {
        let mut done = Vec::new();
        for m in 0..self.members.len() {
            if Some(m) == skip {
                continue;
            }
            if self.members[m].paused {
                self.signal_pause(m, false);
                done.push(format!("SIGCONT {}", self.members[m].name));
            }
            if !self.running(m) {
                self.start(m, false)?;
                done.push(format!("restart {}", self.members[m].name));
            }
        }
        Ok(done)
    }

    /// Stops every member: SIGCONT, SIGTERM, then SIGKILL after `grace`.
    pub fn stop_all(&mut self, grace: Duration) {
        for m in 0..self.members.len() {
            self.signal_pause(m, false);
            if let Some(pid) = self.members[m].pid() {
                // SAFETY: as in `signal_pause`: our unreaped child.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
            }
        }
        let deadline = Instant::now() + grace;
        for m in 0..self.members.len() {
            while self.running(m) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            self.kill(m);
        }
    }

    /// Removes the data dirs (after a valid run: they can be large and prove nothing).
    pub fn remove_data(&self) {
        if let Some(data) = self.members.first().and_then(|m| m.data_dir.parent()) {
            let _ = fs::remove_dir_all(data);
        }
    }

    /// The log file of member `m`.
    pub fn log_path(&self, m: usize) -> &Path {
        &self.members[m].log
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in 0..self.members.len() {
            self.signal_pause(m, false);
            self.kill(m);
        }
    }
}

/// Appends a line to a member's log, marking a nemesis action next to the member's own output.
pub fn mark_log(path: &Path, line: &str) {
    if let Ok(mut f) = OpenOptions::new().append(true).open(path) {
        let _ = writeln!(f, "=== chaos: {line} ===");
    }
}

/// Creates `path`'s file empty (e.g. a results file that must exist even if nothing is written).
pub fn touch(path: &Path) -> std::io::Result<File> {
    File::create(path)
}
