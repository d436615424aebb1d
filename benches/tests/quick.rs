//! Smoke test: `benches store --quick --only etcd --json` against the installed etcd.
//! Skipped (passes with a note) when /usr/bin/etcd is not installed. ferrokube is not run
//! here because that needs a release build of it (see `benches store --quick`).

use std::path::Path;
use std::process::Command;

#[test]
fn quick_etcd_json() {
    if !Path::new("/usr/bin/etcd").exists() {
        eprintln!("skipping: /usr/bin/etcd not installed");
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_benches"))
        .args([
            "store",
            "--quick",
            "--only",
            "etcd",
            "--json",
            "--phase-timeout",
            "60",
        ])
        .output()
        .expect("running benches");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "benches failed ({}):\n{stderr}",
        out.status
    );
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is one JSON object");
    assert_eq!(v["ok"], true, "{v:#}");
    assert!(v["ferrokube"].is_null());
    let etcd = &v["etcd"]["suite"];
    assert_eq!(etcd["sequential"]["completed"], 100);
    assert_eq!(
        etcd["watch_fanout"]["events_delivered"],
        etcd["watch_fanout"]["events_expected"]
    );
    assert_eq!(etcd["watch_fanout"]["watchers_complete"], 100);
    assert!(v["etcd"]["memory"]["rss_kib"].as_u64().unwrap() > 0);
    let rows = v["rows"].as_array().unwrap();
    assert!(rows.iter().any(|r| r["metric"] == "seq put p99"));
}
