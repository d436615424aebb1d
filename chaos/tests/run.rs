//! `chaos run` end to end: the real harness binary, real members in network namespaces, real
//! faults. One test, three runs in sequence (they need root and the machine's 2 cores):
//!
//! 1. ferrokube, partition + kill, two fault cycles → `valid`, exit 0;
//! 2. Debian's etcd 3.4 under the same nemeses → `valid` (the checker agrees with the reference);
//! 3. ferrokube with `--unsafe-serializable-reads` → `INVALID`, exit 1, stale reads reported.
//!
//! Needs root; set `FERROKUBE_SKIP_ROOT_TESTS=1` to skip it when not root. Needs the
//! `ferrokube` binary next to `chaos` (`cargo test --workspace` builds both; with `-p chaos`
//! run `cargo build -p ferrokube` first).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

fn chaos_bin() -> &'static str {
    env!("CARGO_BIN_EXE_chaos")
}

/// Runs `chaos run ARGS --results DIR`; returns the output, the results dir and the pid.
fn chaos_run(name: &str, args: &[&str], scratch: &Path) -> (Output, PathBuf, u32) {
    let results = scratch.join(name);
    let started = Instant::now();
    let child = Command::new(chaos_bin())
        .arg("run")
        .args(args)
        .arg("--results")
        .arg(&results)
        .arg("--seed")
        .arg("42")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("chaos starts");
    let pid = child.id();
    let out = child.wait_with_output().expect("chaos runs");
    eprintln!(
        "--- {name}: {:.1} s, {}\n{}{}",
        started.elapsed().as_secs_f64(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, results, pid)
}

fn last_line(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned()
}

/// The run left nothing behind: no namespace of its own, no member process.
fn assert_cleaned_up(pid: u32) {
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    let prefix = format!("fkc{pid}-");
    assert!(
        !list.contains(&prefix),
        "namespaces of run {pid} left behind:\n{list}"
    );
}

fn assert_results_folder(results: &Path, cycles: usize) {
    for f in [
        "summary.txt",
        "check.txt",
        "latency.svg",
        "nemesis.jsonl",
        "history/final-reads.jsonl",
        "history/client-00.jsonl",
        "history/watch/truth.json",
        "history/watch/w0.json",
        "logs/n1.log",
        "logs/n2.log",
        "logs/n3.log",
    ] {
        assert!(
            results.join(f).is_file(),
            "{f} missing in {}",
            results.display()
        );
    }
    let timeline = std::fs::read_to_string(results.join("nemesis.jsonl")).unwrap();
    assert_eq!(timeline.lines().count(), cycles, "{timeline}");
    let svg = std::fs::read_to_string(results.join("latency.svg")).unwrap();
    assert_eq!(svg.matches("class=\"fault\"").count(), cycles);
    assert!(svg.matches("<circle").count() > 100);
    // `chaos check` on the recorded histories reaches the same verdict.
    let check = Command::new(chaos_bin())
        .args(["check", "--history"])
        .arg(results.join("history"))
        .output()
        .unwrap();
    let summary = std::fs::read_to_string(results.join("summary.txt")).unwrap();
    let run_verdict = summary.lines().last().unwrap_or_default();
    assert_eq!(
        last_line(&check) == "valid",
        run_verdict == "valid",
        "chaos check says {:?}, chaos run said {run_verdict:?}",
        last_line(&check)
    );
}

#[test]
fn chaos_run_end_to_end() {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        if std::env::var("FERROKUBE_SKIP_ROOT_TESTS").as_deref() == Ok("1") {
            eprintln!(
                "SKIPPED chaos_run_end_to_end: needs root (network namespaces, iptables); \
                 FERROKUBE_SKIP_ROOT_TESTS=1 is set"
            );
            return;
        }
        panic!(
            "chaos_run_end_to_end needs root (network namespaces, iptables): run the tests as \
             root, or set FERROKUBE_SKIP_ROOT_TESTS=1 to skip it"
        );
    }
    let ferrokube = Path::new(chaos_bin()).with_file_name("ferrokube");
    assert!(
        ferrokube.is_file(),
        "no ferrokube binary at {}: `cargo test --workspace` builds it; with `cargo test -p \
         chaos`, run `cargo build -p ferrokube` first",
        ferrokube.display()
    );
    let scratch = tempfile::tempdir().unwrap();

    // 1. Our store, two fault cycles (3 s warm-up + 2 × (10 + 8) s).
    let (out, results, pid) = chaos_run(
        "ferrokube",
        &["--time", "40", "--nemesis", "partition,kill"],
        scratch.path(),
    );
    assert_cleaned_up(pid);
    assert_eq!(last_line(&out), "valid", "see the output above");
    assert_eq!(out.status.code(), Some(0));
    assert_results_folder(&results, 2);

    // 2. etcd 3.4 under the same nemeses, shorter cycles.
    let (out, results, pid) = chaos_run(
        "etcd",
        &[
            "--target",
            "etcd",
            "--time",
            "32",
            "--nemesis",
            "partition,kill",
            "--fault-secs",
            "8",
            "--heal-secs",
            "6",
        ],
        scratch.path(),
    );
    assert_cleaned_up(pid);
    assert_eq!(last_line(&out), "valid", "etcd: see the output above");
    assert_eq!(out.status.code(), Some(0));
    assert_results_folder(&results, 2);

    // 3. The unsafe mode must be caught.
    let (out, results, pid) = chaos_run(
        "unsafe",
        &[
            "--time",
            "20",
            "--nemesis",
            "isolate",
            "--unsafe-serializable-reads",
            "--heal-secs",
            "5",
        ],
        scratch.path(),
    );
    assert_cleaned_up(pid);
    let last = last_line(&out);
    assert!(
        last.starts_with("INVALID: ") && last.contains("stale reads"),
        "unsafe mode not caught: {last:?}"
    );
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("stale read: "), "no stale read shown");
    assert_results_folder(&results, 1);
}

#[test]
fn chaos_run_refuses_bad_arguments_before_touching_anything() {
    let out = Command::new(chaos_bin())
        .args(["run", "--nemesis", "flood"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        assert!(err.contains("unknown nemesis"), "{err}");
    } else {
        assert!(err.contains("chaos run needs root"), "{err}");
    }
}
