//! Spawning store servers (etcd or ferrokube) as child processes on loopback.
//!
//! A [`Cluster`] starts N members of one kind, each with a fresh temp data dir and free
//! loopback ports, waits until every member answers a client call, and hands back the
//! client endpoints. Dropping it stops every member it started, by PID (SIGTERM, then
//! SIGKILL after a grace period) — also on panic or when the run future is dropped on
//! ctrl-c. Children additionally get `PR_SET_PDEATHSIG(SIGKILL)`, so they die if this
//! runner is killed outright.
//!
//! With N members every member lists all of them in `--initial-cluster`, readiness also
//! waits for a leader, and [`Cluster::endpoints_by_role`] orders the endpoints followers
//! first, leader last, so that the load spreads over the members the same way, by role, for
//! both servers.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use etcd_client::{Client, ConnectOptions};

/// Which server implementation a cluster runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerKind {
    Etcd,
    Ferrokube,
}

impl ServerKind {
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Etcd => "etcd",
            ServerKind::Ferrokube => "ferrokube",
        }
    }
}

/// What to run: the kind and its binary.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    pub kind: ServerKind,
    pub binary: PathBuf,
}

impl ServerSpec {
    /// First line of `BINARY --version` (best effort, for the report header).
    pub fn version(&self) -> String {
        let out = Command::new(&self.binary)
            .arg("--version")
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) => String::from_utf8_lossy(&o.stdout)
                .lines()
                .chain(String::from_utf8_lossy(&o.stderr).lines())
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("?")
                .to_string(),
            Err(e) => format!("? ({e})"),
        }
    }
}

/// One running member.
pub struct Member {
    pub name: String,
    pub client_url: String,
    pub peer_url: String,
    pub log_path: PathBuf,
    pub data_dir: PathBuf,
    child: Option<Child>,
}

impl Member {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the child this member spawned: SIGTERM to its PID, wait up to `grace`,
    /// then SIGKILL (via the `Child` handle, i.e. the same PID). Idempotent.
    fn stop(&mut self, grace: Duration) {
        if let Some(child) = self.child.take() {
            stop_child(child, grace);
        }
    }
}

/// Stops a child process we spawned: SIGTERM to its PID, wait up to `grace`, then SIGKILL
/// (via the `Child` handle, i.e. the same PID).
pub fn stop_child(mut child: std::process::Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let pid = child.id() as libc::pid_t;
    // SAFETY: plain kill(2) on the PID of a child we spawned and have not reaped yet, so the
    // PID cannot have been reused.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// N members of one kind, stopped on drop.
pub struct Cluster {
    pub kind: ServerKind,
    pub members: Vec<Member>,
    // Declared last: dropped after `members` have been stopped.
    root: tempfile::TempDir,
}

/// Memory of one process, from /proc/PID/status.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct MemStat {
    /// Resident set size now (VmRSS), KiB.
    pub rss_kib: u64,
    /// Peak resident set size (VmHWM), KiB.
    pub hwm_kib: u64,
}

/// Reserve `n` distinct free loopback ports: bind them all at once (so they differ),
/// then release them for the server to take.
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0"))
        .collect::<Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// Last `max` bytes of a log file, for error messages.
pub fn log_tail(path: &Path, max: u64) -> String {
    let Ok(mut f) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// VmRSS / VmHWM of a process.
pub fn mem_of(pid: u32) -> Result<MemStat> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    Ok(MemStat {
        rss_kib: parse_status_kib(&status, "VmRSS").context("no VmRSS")?,
        hwm_kib: parse_status_kib(&status, "VmHWM").unwrap_or(0),
    })
}

/// CPU time (user + system) a process has used so far, in seconds.
pub fn cpu_secs_of(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the parenthesised command name (which may contain spaces): utime and stime
    // are fields 14 and 15 of the whole line, so 12 and 13 after it.
    let rest = stat.rsplit_once(')').context("malformed stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64> {
        Ok(fields.get(i).context("short stat")?.parse::<u64>()? as f64)
    };
    // The kernel reports these in USER_HZ ticks, 100 per second on Linux.
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

/// Connect options used for every benchmark client, for both servers.
pub fn connect_options() -> ConnectOptions {
    ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(10))
}

impl Cluster {
    /// Starts `members` members of `spec.kind` and waits (up to `ready_timeout`) until
    /// each answers a client call.
    pub async fn start(
        spec: &ServerSpec,
        members: usize,
        ready_timeout: Duration,
    ) -> Result<Cluster> {
        if members == 0 {
            bail!("a cluster needs at least one member");
        }
        let root = tempfile::Builder::new()
            .prefix(&format!("bench-{}-", spec.kind.name()))
            .tempdir()
            .context("creating temp dir")?;
        let ports = free_ports(members * 2)?;
        let names: Vec<String> = (0..members).map(|i| format!("b{i}")).collect();
        let client_urls: Vec<String> = (0..members)
            .map(|i| format!("http://127.0.0.1:{}", ports[2 * i]))
            .collect();
        let peer_urls: Vec<String> = (0..members)
            .map(|i| format!("http://127.0.0.1:{}", ports[2 * i + 1]))
            .collect();
        let initial_cluster = names
            .iter()
            .zip(&peer_urls)
            .map(|(n, p)| format!("{n}={p}"))
            .collect::<Vec<_>>()
            .join(",");

        let mut cluster = Cluster {
            kind: spec.kind,
            members: Vec::with_capacity(members),
            root,
        };
        for i in 0..members {
            let dir = cluster.root.path().join(&names[i]);
            std::fs::create_dir_all(&dir)?;
            let data_dir = dir.join("data");
            let log_path = dir.join("server.log");
            let args = member_args(
                spec.kind,
                &names[i],
                &data_dir,
                &client_urls[i],
                &peer_urls[i],
                &initial_cluster,
            );
            let child = spawn(&spec.binary, &args, &log_path).with_context(|| {
                format!("starting {} ({})", spec.kind.name(), spec.binary.display())
            })?;
            cluster.members.push(Member {
                name: names[i].clone(),
                client_url: client_urls[i].clone(),
                peer_url: peer_urls[i].clone(),
                log_path,
                data_dir,
                child: Some(child),
            });
        }
        cluster.wait_ready(ready_timeout).await?;
        Ok(cluster)
    }

    /// Client endpoints of all members (what `etcd_client::Client::connect` takes).
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// Client endpoints ordered by role: followers (in member order), then the leader, as
    /// reported by `Status`. The load maps connection `k` to endpoint `k mod n`, so with this
    /// order a single connection lands on a follower and the leader serves every n-th
    /// connection, whichever member won the election. Falls back to member order when the
    /// members do not agree on a leader. Returns the endpoints and the leader's name.
    pub async fn endpoints_by_role(&self) -> (Vec<String>, Option<String>) {
        let mut ids = Vec::new();
        let mut leaders = Vec::new();
        for m in &self.members {
            let status = async {
                let mut c = Client::connect([&m.client_url], Some(connect_options())).await?;
                c.status().await
            };
            match tokio::time::timeout(Duration::from_secs(5), status).await {
                Ok(Ok(s)) => {
                    ids.push(s.header().map(|h| h.member_id()).unwrap_or(0));
                    leaders.push(s.leader());
                }
                _ => return (self.endpoints(), None),
            }
        }
        let agreed = leaders.iter().all(|l| *l != 0 && *l == leaders[0]);
        let Some(li) = ids.iter().position(|id| agreed && *id == leaders[0]) else {
            return (self.endpoints(), None);
        };
        let mut eps: Vec<String> = (0..self.members.len())
            .filter(|i| *i != li)
            .map(|i| self.members[i].client_url.clone())
            .collect();
        eps.push(self.members[li].client_url.clone());
        (eps, Some(self.members[li].name.clone()))
    }

    /// One line per member: name, pid, URLs, data dir.
    pub fn describe(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                format!(
                    "{} pid={} client={} peer={} data={}",
                    m.name,
                    m.pid().map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                    m.client_url,
                    m.peer_url,
                    m.data_dir.display()
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// PIDs of the running members.
    pub fn pids(&self) -> Vec<u32> {
        self.members.iter().filter_map(Member::pid).collect()
    }

    /// Memory of every member, summed.
    pub fn memory(&self) -> Result<MemStat> {
        let mut total = MemStat::default();
        for pid in self.pids() {
            let m = mem_of(pid)?;
            total.rss_kib += m.rss_kib;
            total.hwm_kib += m.hwm_kib;
        }
        Ok(total)
    }

    /// CPU time all members have used so far, in seconds (`None` if one cannot be read).
    pub fn cpu_secs(&self) -> Option<f64> {
        self.pids().into_iter().map(|pid| cpu_secs_of(pid).ok()).sum()
    }

    /// Error text with the tail of each member's log, for failures mid-run.
    pub fn describe_logs(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                format!(
                    "--- {} log tail ({}) ---\n{}",
                    m.name,
                    m.log_path.display(),
                    log_tail(&m.log_path, 3000)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Whether any member process has exited (e.g. crashed under load).
    pub fn exited_member(&mut self) -> Option<String> {
        for m in &mut self.members {
            if let Some(child) = m.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Some(format!(
                        "{} member {} exited: {status}",
                        self.kind.name(),
                        m.name
                    ));
                }
            }
        }
        None
    }

    /// Polls each member with `status()` (falling back to `get("health")` for servers
    /// that do not implement Maintenance.Status) until it answers, or fails with the log
    /// tail after `timeout`. With several members also waits until a leader is known.
    async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        for i in 0..self.members.len() {
            let url = self.members[i].client_url.clone();
            let mut last_err = String::from("not polled yet");
            loop {
                if let Some(exit) = self.exited_member() {
                    bail!("{exit} before becoming ready\n{}", self.describe_logs());
                }
                if tokio::time::Instant::now() >= deadline {
                    bail!(
                        "{} member {} not ready after {:?} (last error: {last_err})\n{}",
                        self.kind.name(),
                        self.members[i].name,
                        timeout,
                        self.describe_logs()
                    );
                }
                match tokio::time::timeout(
                    Duration::from_secs(3),
                    probe(&url, self.members.len() > 1),
                )
                .await
                {
                    Ok(Ok(())) => break,
                    Ok(Err(e)) => last_err = format!("{e:#}"),
                    Err(_) => last_err = "probe timed out".into(),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// Stops every member (also done on drop).
    pub fn stop(&mut self) {
        for m in &mut self.members {
            m.stop(Duration::from_secs(5));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One readiness probe against one endpoint.
async fn probe(url: &str, need_leader: bool) -> Result<()> {
    let mut client = Client::connect([url], Some(connect_options())).await?;
    match client.status().await {
        Ok(s) => {
            if need_leader && s.leader() == 0 {
                bail!("no leader yet");
            }
            Ok(())
        }
        Err(status_err) => client
            .get("health", None)
            .await
            .map(|_| ())
            .with_context(|| format!("status() failed: {status_err}")),
    }
}

/// Command-line flags for one member. Both servers take etcd's flag names.
fn member_args(
    kind: ServerKind,
    name: &str,
    data_dir: &Path,
    client_url: &str,
    peer_url: &str,
    initial_cluster: &str,
) -> Vec<String> {
    let data_dir = data_dir.display().to_string();
    let mut args: Vec<String> = Vec::new();
    if kind == ServerKind::Ferrokube {
        args.push("store".into());
    }
    let mut flag = |k: &str, v: &str| {
        args.push(format!("--{k}"));
        args.push(v.to_string());
    };
    flag("name", name);
    flag("data-dir", &data_dir);
    flag("listen-client-urls", client_url);
    flag("advertise-client-urls", client_url);
    flag("listen-peer-urls", peer_url);
    flag("initial-advertise-peer-urls", peer_url);
    flag("initial-cluster", initial_cluster);
    if kind == ServerKind::Etcd {
        // 8 GiB backend quota (etcd's default of 2 GiB is not the limit we want to measure).
        flag("quota-backend-bytes", "8589934592");
        flag("log-level", "warn");
    }
    args
}

/// Spawns `binary args…` with stdout+stderr appended to `log_path`, stdin closed, and
/// PR_SET_PDEATHSIG so the child dies with this process.
pub(crate) fn spawn(binary: &Path, args: &[String], log_path: &Path) -> Result<Child> {
    let log = File::create(log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let log2 = log.try_clone()?;
    let mut cmd = Command::new(binary);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2));
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(cmd.spawn()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_status() {
        let s = "Name:\tetcd\nVmHWM:\t   51234 kB\nVmRSS:\t   40960 kB\n";
        assert_eq!(parse_status_kib(s, "VmRSS"), Some(40960));
        assert_eq!(parse_status_kib(s, "VmHWM"), Some(51234));
        assert_eq!(parse_status_kib(s, "VmSwap"), None);
    }

    #[test]
    fn own_cpu_time_is_readable_and_grows() {
        let before = cpu_secs_of(std::process::id()).unwrap();
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        std::hint::black_box(x);
        let after = cpu_secs_of(std::process::id()).unwrap();
        assert!(after > before, "{before} -> {after}");
    }

    #[test]
    fn own_memory_is_readable() {
        let m = mem_of(std::process::id()).unwrap();
        assert!(m.rss_kib > 0);
    }

    #[test]
    fn ports_are_distinct() {
        let p = free_ports(6).unwrap();
        let mut q = p.clone();
        q.sort_unstable();
        q.dedup();
        assert_eq!(p.len(), q.len());
    }

    #[test]
    fn args_use_etcd_flag_names() {
        let a = member_args(
            ServerKind::Ferrokube,
            "b0",
            Path::new("/d"),
            "http://c",
            "http://p",
            "b0=http://p",
        );
        assert_eq!(a[0], "store");
        assert!(a
            .windows(2)
            .any(|w| w[0] == "--initial-cluster" && w[1] == "b0=http://p"));
        let e = member_args(
            ServerKind::Etcd,
            "b0",
            Path::new("/d"),
            "http://c",
            "http://p",
            "b0=http://p",
        );
        assert!(e
            .windows(2)
            .any(|w| w[0] == "--quota-backend-bytes" && w[1] == "8589934592"));
    }
}
