//! The network a run owns: one namespace per member and one holding the bridge (and the
//! harness's clients), all named `fkc<pid>-*`, and the iptables rules that cut or thin links.
//!
//! ```text
//!   fkc<pid>-n1  10.211.0.1 eth0 ─┐
//!   fkc<pid>-n2  10.211.0.2 eth0 ─┼─ v1 v2 v3 ─ br0 10.211.0.254   fkc<pid>-br (clients)
//!   fkc<pid>-n3  10.211.0.3 eth0 ─┘
//! ```
//!
//! Why clients live in the bridge namespace: the host gets no address, route or rule, so
//! nothing a run does can touch the machine's own network, and two runs at once cannot clash
//! (the same 10.211.0.0/24 exists separately in each run's namespaces). The harness process
//! enters that namespace with `setns(2)` before it starts any thread, so every socket its
//! tokio runtime opens is there; members are started with `ip netns exec`.
//!
//! Faults only drop traffic *between members* (rules on INPUT and OUTPUT inside each member's
//! namespace); clients keep reaching every member, as in Jepsen. That is what lets a client
//! observe a cut-off member serving stale reads.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};

use crate::schedule::Cuts;

/// The subnet inside the run's namespaces (never configured on the host).
const SUBNET: &str = "10.211.0";

/// The namespaces, bridge and veths of one run; dropping it deletes every namespace it
/// created (which removes the veths and the bridge with them).
pub struct Net {
    prefix: String,
    members: usize,
    /// Namespaces created so far, deleted on drop: a half-built topology is cleaned too.
    created: Vec<String>,
}

impl Net {
    /// Builds the topology for `members` members, with namespaces named `{prefix}-br` and
    /// `{prefix}-n1`…; `prefix` must be unique on the machine (the harness uses its pid).
    pub fn create(prefix: &str, members: usize) -> Result<Net, String> {
        let mut net = Net {
            prefix: prefix.to_owned(),
            members,
            created: Vec::new(),
        };
        let br = net.bridge_ns();
        net.add_ns(&br)?;
        ip(&["-n", &br, "link", "set", "lo", "up"])?;
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"])?;
        ip(&[
            "-n",
            &br,
            "addr",
            "add",
            &format!("{SUBNET}.254/24"),
            "dev",
            "br0",
        ])?;
        ip(&["-n", &br, "link", "set", "br0", "up"])?;
        for m in 0..members {
            let ns = net.member_ns(m);
            net.add_ns(&ns)?;
            let port = format!("v{}", m + 1);
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns",
                &br,
            ])?;
            ip(&["-n", &br, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", &br, "link", "set", &port, "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", net.member_ip(m)),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        }
        Ok(net)
    }

    fn add_ns(&mut self, name: &str) -> Result<(), String> {
        ip(&["netns", "add", name])?;
        self.created.push(name.to_owned());
        Ok(())
    }

    /// The namespace holding the bridge and the clients.
    pub fn bridge_ns(&self) -> String {
        format!("{}-br", self.prefix)
    }

    /// Member `m`'s namespace (0-based `m`, 1-based name).
    pub fn member_ns(&self, m: usize) -> String {
        format!("{}-n{}", self.prefix, m + 1)
    }

    /// Member `m`'s address.
    pub fn member_ip(&self, m: usize) -> String {
        format!("{SUBNET}.{}", m + 1)
    }

    /// Moves the calling thread into the bridge namespace. Call it before any other thread
    /// exists: threads inherit the namespace of the thread that creates them.
    pub fn enter_bridge_ns(&self) -> Result<(), String> {
        let path = format!("/run/netns/{}", self.bridge_ns());
        let f = File::open(&path).map_err(|e| format!("{path}: {e}"))?;
        // SAFETY: setns(2) on a valid, open namespace file descriptor; it only changes this
        // thread's network namespace.
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            return Err(format!("setns {path}: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Replaces every member's rules with drops for `cuts` (both directions, both ends) and,
    /// if `loss > 0`, random drops of that share of the packets from every other member.
    pub fn apply(&self, cuts: &Cuts, loss: f64) -> Result<(), String> {
        self.heal()?;
        for &(a, b) in cuts {
            for (me, peer) in [(a, b), (b, a)] {
                let ns = self.member_ns(me);
                let ip_peer = self.member_ip(peer);
                iptables(&ns, &["-A", "INPUT", "-s", &ip_peer, "-j", "DROP"])?;
                iptables(&ns, &["-A", "OUTPUT", "-d", &ip_peer, "-j", "DROP"])?;
            }
        }
        if loss > 0.0 {
            let p = format!("{loss:.3}");
            for me in 0..self.members {
                for peer in (0..self.members).filter(|&p| p != me) {
                    let ns = self.member_ns(me);
                    let ip_peer = self.member_ip(peer);
                    iptables(
                        &ns,
                        &[
                            "-A",
                            "INPUT",
                            "-s",
                            &ip_peer,
                            "-m",
                            "statistic",
                            "--mode",
                            "random",
                            "--probability",
                            &p,
                            "-j",
                            "DROP",
                        ],
                    )?;
                }
            }
        }
        Ok(())
    }

    /// Removes every rule from every member's namespace.
    pub fn heal(&self) -> Result<(), String> {
        for m in 0..self.members {
            let ns = self.member_ns(m);
            iptables(&ns, &["-F", "INPUT"])?;
            iptables(&ns, &["-F", "OUTPUT"])?;
        }
        Ok(())
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.created.drain(..).rev() {
            if let Err(e) = ip(&["netns", "del", &ns]) {
                eprintln!("chaos: could not delete namespace {ns}: {e}");
            }
        }
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    run("ip", args)
}

fn iptables(ns: &str, args: &[&str]) -> Result<(), String> {
    let mut full = vec!["netns", "exec", ns, "iptables", "-w", "5"];
    full.extend_from_slice(args);
    run("ip", &full)
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether `program` can be found on `PATH` (the harness checks `ip` and `iptables` up front).
pub fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}
