//! End-to-end: the real `ferrokube store` binary driven by Debian's `etcdctl` 3.4.23, checking
//! etcdctl's exact output.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// The member id as etcdctl prints it (hex), from `member list -w json`.
fn member_id_hex(s: &StoreProcess) -> String {
    let v = s.json(&["member", "list"]);
    let members = v["members"].as_array().unwrap_or_else(|| panic!("no members in {v}"));
    assert_eq!(members.len(), 1, "one member expected: {v}");
    format!("{:x}", u64_at(&members[0], &["ID"]))
}

/// Parses `lease <hex> granted with TTL(<n>s)`.
fn parse_grant(out: &str) -> (String, i64) {
    let line = out.trim_end();
    let rest = line.strip_prefix("lease ").unwrap_or_else(|| panic!("unexpected grant output {out:?}"));
    let (id, rest) = rest.split_once(' ').unwrap_or_else(|| panic!("unexpected grant output {out:?}"));
    let ttl = rest
        .strip_prefix("granted with TTL(")
        .and_then(|r| r.strip_suffix("s)"))
        .unwrap_or_else(|| panic!("unexpected grant output {out:?}"));
    i64::from_str_radix(id, 16).unwrap_or_else(|_| panic!("lease id {id:?} is not hex"));
    (id.to_string(), ttl.parse().unwrap())
}

#[test]
fn kv_put_get_del() {
    let s = StoreProcess::start();
    let r0 = s.revision();

    assert_eq!(s.ok(&["put", "foo", "bar1"]), "OK\n");
    assert_eq!(s.ok(&["put", "--prev-kv", "foo", "bar2"]), "OK\nfoo\nbar1\n");
    assert_eq!(s.ok(&["get", "foo"]), "foo\nbar2\n");
    assert_eq!(s.ok(&["get", "foo", "--print-value-only"]), "bar2\n");

    // -w json: header revision and the key's revisions, base64 key/value.
    let v = s.json(&["get", "foo"]);
    assert_eq!(i64_at(&v, &["header", "revision"]), r0 + 2, "{v}");
    assert_eq!(v["kvs"][0]["key"], "Zm9v", "key is base64 of foo: {v}");
    assert_eq!(v["kvs"][0]["value"], "YmFyMg==", "value is base64 of bar2: {v}");
    assert_eq!(
        kvs(&v),
        vec![JsonKv {
            key: "foo".into(),
            value: "bar2".into(),
            create_revision: r0 + 1,
            mod_revision: r0 + 2,
            version: 2,
            lease: 0
        }]
    );
    assert_eq!(i64_at(&v, &["count"]), 1, "{v}");

    // A past value.
    assert_eq!(s.ok(&["get", "foo", &format!("--rev={}", r0 + 1)]), "foo\nbar1\n");

    assert_eq!(s.ok(&["put", "foo/a", "x"]), "OK\n"); // r0+3
    assert_eq!(s.ok(&["put", "foo/b", "y"]), "OK\n"); // r0+4
    assert_eq!(s.ok(&["put", "zoo", "z"]), "OK\n"); // r0+5
    assert_eq!(s.ok(&["get", "--prefix", "foo"]), "foo\nbar2\nfoo/a\nx\nfoo/b\ny\n");
    assert_eq!(s.ok(&["get", "--prefix", "foo", "--limit=2"]), "foo\nbar2\nfoo/a\nx\n");
    assert_eq!(s.ok(&["get", "--prefix", "foo", "--keys-only"]), "foo\n\nfoo/a\n\nfoo/b\n\n");
    assert_eq!(s.ok(&["get", "--from-key", "foo/a"]), "foo/a\nx\nfoo/b\ny\nzoo\nz\n");
    assert_eq!(s.ok(&["get", "foo/a", "foo/c"]), "foo/a\nx\nfoo/b\ny\n", "explicit range end");
    assert_eq!(s.ok(&["get", "--prefix", "nothing-here"]), "");

    // Count (etcdctl 3.4.23 has no --count-only flag; the count is in the JSON answer):
    // the total in range, not the number returned under --limit.
    let v = s.json(&["get", "--prefix", "foo", "--limit=1"]);
    assert_eq!(i64_at(&v, &["count"]), 3, "{v}");
    assert_eq!(v["more"], true, "{v}");
    assert_eq!(kvs(&v).len(), 1, "{v}");
    let v = s.json(&["get", "--prefix", "foo", "--keys-only"]);
    assert_eq!(i64_at(&v, &["count"]), 3, "{v}");
    assert!(kvs(&v).iter().all(|kv| kv.value.is_empty()), "keys-only returned values: {v}");

    // Sort by modification revision, newest first (differs from key order after foo/a changes).
    assert_eq!(s.ok(&["put", "foo/a", "x2"]), "OK\n"); // r0+6
    assert_eq!(
        s.ok(&["get", "--prefix", "foo", "--sort-by=MODIFY", "--order=DESCEND"]),
        "foo/a\nx2\nfoo/b\ny\nfoo\nbar2\n"
    );
    assert_eq!(s.ok(&["get", "--prefix", "foo", "--sort-by=KEY", "--order=DESCEND"]), "foo/b\ny\nfoo/a\nx2\nfoo\nbar2\n");
    assert_eq!(
        s.ok(&["get", "--prefix", "foo", "--sort-by=MODIFY", "--order=DESCEND", "--limit=1"]),
        "foo/a\nx2\n",
        "sort applies before limit"
    );

    // Deletes.
    assert_eq!(s.ok(&["del", "foo/a"]), "1\n"); // r0+7
    assert_eq!(s.ok(&["del", "no-such-key"]), "0\n"); // no revision
    assert_eq!(s.ok(&["del", "--prev-kv", "foo"]), "1\nfoo\nbar2\n"); // r0+8
    assert_eq!(s.ok(&["del", "--prefix", "foo"]), "1\n"); // foo/b, r0+9
    assert_eq!(s.ok(&["get", "--prefix", "foo"]), "");
    assert_eq!(s.ok(&["get", "--from-key", ""]), "zoo\nz\n", "only zoo is left");
    assert_eq!(s.revision(), r0 + 9, "each effective write is one revision; a no-op delete is none");
    // History of deleted keys is still readable.
    assert_eq!(s.ok(&["get", "foo/a", &format!("--rev={}", r0 + 6)]), "foo/a\nx2\n");
    assert_eq!(s.ok(&["get", "--prefix", "foo", &format!("--rev={}", r0 + 7)]), "foo\nbar2\nfoo/b\ny\n");
    // Recreating a deleted key starts a new generation: version 1, new create revision.
    assert_eq!(s.ok(&["put", "foo", "again"]), "OK\n"); // r0+10
    let kv = kvs(&s.json(&["get", "foo"]));
    assert_eq!(
        kv,
        vec![JsonKv {
            key: "foo".into(),
            value: "again".into(),
            create_revision: r0 + 10,
            mod_revision: r0 + 10,
            version: 1,
            lease: 0
        }]
    );
}

#[test]
fn txn_success_and_failure_branches() {
    let s = StoreProcess::start();
    assert_eq!(s.ok(&["put", "k", "v1"]), "OK\n");

    // The compare holds: success branch.
    let out = s.ok_stdin(&["txn"], "mod(\"k\") > \"0\"\n\nput k v2\n\nput k v3\n\n");
    assert_eq!(out, "SUCCESS\n\nOK\n");
    assert_eq!(s.ok(&["get", "k"]), "k\nv2\n");

    // The compare fails: failure branch.
    let out = s.ok_stdin(&["txn"], "value(\"k\") = \"nope\"\n\nput k v4\n\nput k v5\n\n");
    assert_eq!(out, "FAILURE\n\nOK\n");
    assert_eq!(s.ok(&["get", "k"]), "k\nv5\n");

    // A compare on a missing key's mod revision (Kubernetes' create-if-absent), with a read.
    let out = s.ok_stdin(&["txn"], "mod(\"new\") = \"0\"\n\nput new n1\nget k\n\nget new\n\n");
    assert_eq!(out, "SUCCESS\n\nOK\n\nk\nv5\n");
    // ...and again, now that it exists: failure branch reads it.
    let out = s.ok_stdin(&["txn"], "mod(\"new\") = \"0\"\n\nput new n2\n\nget new\n\n");
    assert_eq!(out, "FAILURE\n\nnew\nn1\n");
    // A value compare on a missing key is false.
    let out = s.ok_stdin(&["txn"], "value(\"missing\") = \"\"\n\nput t yes\n\nput t no\n\n");
    assert_eq!(out, "FAILURE\n\nOK\n");
    assert_eq!(s.ok(&["get", "t"]), "t\nno\n");

    // Several compares must all hold; deletes in a txn.
    let out = s.ok_stdin(&["txn"], "value(\"k\") = \"v5\"\nversion(\"k\") = \"3\"\n\ndel t\nput k v6\n\n\n");
    assert_eq!(out, "SUCCESS\n\n1\n\nOK\n");
    assert_eq!(s.ok(&["get", "t"]), "");
    let out = s.ok_stdin(&["txn"], "value(\"k\") = \"v6\"\nversion(\"k\") = \"99\"\n\nput k bad\n\n\n");
    assert_eq!(out, "FAILURE\n");
    assert_eq!(s.ok(&["get", "k"]), "k\nv6\n");

    // A txn is one revision, however many writes it makes.
    let before = s.revision();
    let out = s.ok_stdin(&["txn"], "\nput m1 a\nput m2 b\nput m3 c\n\n\n");
    assert_eq!(out, "SUCCESS\n\nOK\n\nOK\n\nOK\n");
    assert_eq!(s.revision(), before + 1);
    let v = s.json(&["get", "--prefix", "m"]);
    assert!(kvs(&v).iter().all(|kv| kv.mod_revision == before + 1), "all txn writes share one revision: {v}");
}

#[test]
fn watch_prints_live_events() {
    let s = StoreProcess::start();
    let mut w = s.watch(&["--prefix", "w/"]);
    w.sync(&s, "w/sync-");
    s.ok(&["put", "w/a", "1"]);
    s.ok(&["put", "w/a", "2"]);
    s.ok(&["put", "other", "not watched"]);
    s.ok(&["del", "w/a"]);
    s.ok(&["put", "w/b", "3"]);
    w.expect_lines(
        &["PUT", "w/a", "1", "PUT", "w/a", "2", "DELETE", "w/a", "", "PUT", "w/b", "3"],
        Duration::from_secs(10),
    );
    // A txn's events arrive too.
    s.ok_stdin(&["txn"], "\nput w/t1 x\nput w/t2 y\n\n\n");
    w.expect_lines(&["PUT", "w/t1", "x", "PUT", "w/t2", "y"], Duration::from_secs(10));
    w.expect_silence(Duration::from_millis(300));

    // --prev-kv: the previous value precedes the new one.
    let mut p = s.watch(&["--prefix", "--prev-kv", "pk/"]);
    p.sync(&s, "pk/sync-");
    s.ok(&["put", "pk/a", "1"]);
    s.ok(&["put", "pk/a", "2"]);
    s.ok(&["del", "pk/a"]);
    p.expect_lines(
        &["PUT", "pk/a", "1", "PUT", "pk/a", "1", "pk/a", "2", "DELETE", "pk/a", "2", "pk/a", ""],
        Duration::from_secs(10),
    );
    p.expect_silence(Duration::from_millis(300));
    // The first watcher did not see the pk/ keys.
    w.expect_silence(Duration::from_millis(100));
}

#[test]
fn watch_rev_replays_history() {
    let s = StoreProcess::start();
    let r0 = s.revision();
    s.ok(&["put", "h/a", "1"]); // r0+1
    s.ok(&["put", "h/a", "2"]); // r0+2
    s.ok(&["del", "h/a"]); // r0+3
    s.ok(&["put", "h/b", "3"]); // r0+4
    s.ok(&["put", "x", "outside"]); // r0+5

    let mut w = s.watch(&["--prefix", "h/", &format!("--rev={}", r0 + 1)]);
    w.expect_lines(
        &["PUT", "h/a", "1", "PUT", "h/a", "2", "DELETE", "h/a", "", "PUT", "h/b", "3"],
        Duration::from_secs(10),
    );
    // History replay continues into live events.
    s.ok(&["put", "h/c", "4"]);
    w.expect_lines(&["PUT", "h/c", "4"], Duration::from_secs(10));
    w.expect_silence(Duration::from_millis(300));

    // Starting mid-history, on one key, with previous values.
    let mut p = s.watch(&["--prev-kv", "h/a", &format!("--rev={}", r0 + 2)]);
    p.expect_lines(&["PUT", "h/a", "1", "h/a", "2", "DELETE", "h/a", "2", "h/a", ""], Duration::from_secs(10));
    p.expect_silence(Duration::from_millis(300));
}

#[test]
fn lease_grant_attach_keepalive_revoke() {
    let s = StoreProcess::start();
    let (id, ttl) = parse_grant(&s.ok(&["lease", "grant", "60"]));
    assert_eq!(ttl, 60);
    let id_num = i64::from_str_radix(&id, 16).unwrap();

    assert_eq!(s.ok(&["put", &format!("--lease={id}"), "lk", "lv"]), "OK\n");
    assert_eq!(s.ok(&["put", "plain", "p"]), "OK\n");
    let kv = kvs(&s.json(&["get", "lk"]));
    assert_eq!(kv.len(), 1);
    assert_eq!(kv[0].lease, id_num, "the key carries the lease id");

    let out = s.ok(&["lease", "timetolive", &id, "--keys"]);
    let prefix = format!("lease {id} granted with TTL(60s), remaining(");
    let rest = out.strip_prefix(&prefix).unwrap_or_else(|| panic!("unexpected timetolive output {out:?}"));
    let (remaining, rest) = rest.split_once("s)").unwrap_or_else(|| panic!("unexpected timetolive output {out:?}"));
    let remaining: i64 = remaining.parse().unwrap();
    assert!((50..=60).contains(&remaining), "remaining {remaining} out of range: {out:?}");
    assert_eq!(rest, ", attached keys([lk])\n");

    assert_eq!(s.ok(&["lease", "list"]), format!("found 1 leases\n{id}\n"));
    assert_eq!(s.ok(&["lease", "keep-alive", "--once", &id]), format!("lease {id} keepalived with TTL(60)\n"));

    let before = s.revision();
    assert_eq!(s.ok(&["lease", "revoke", &id]), format!("lease {id} revoked\n"));
    assert_eq!(s.ok(&["get", "lk"]), "", "revoking deletes the attached key");
    assert_eq!(s.ok(&["get", "plain"]), "plain\np\n", "keys without the lease stay");
    assert_eq!(s.revision(), before + 1, "the revoke (and its key deletion) is one revision");
    assert_eq!(s.ok(&["lease", "timetolive", &id]), format!("lease {id} already expired\n"));
    assert_eq!(s.ok(&["lease", "list"]), "found 0 leases\n");
    let err = s.fails(&["lease", "keep-alive", "--once", &id]);
    assert!(err.contains("requested lease not found"), "keep-alive of a revoked lease: {err}");
}

#[test]
fn lease_expiry_deletes_attached_keys() {
    let s = StoreProcess::start();
    let (id, _ttl) = parse_grant(&s.ok(&["lease", "grant", "2"]));
    let granted = Instant::now();
    s.ok(&["put", &format!("--lease={id}"), "exp/a", "1"]);
    s.ok(&["put", &format!("--lease={id}"), "exp/b", "2"]);
    s.ok(&["put", "exp/keep", "3"]);
    assert_eq!(s.ok(&["get", "--prefix", "exp/", "--keys-only"]), "exp/a\n\nexp/b\n\nexp/keep\n\n");
    let mut w = s.watch(&["--prefix", "exp/", &format!("--rev={}", s.revision() + 1)]);

    poll("the leased keys to be deleted by expiry", Duration::from_secs(10), || {
        (s.ok(&["get", "--prefix", "exp/", "--keys-only"]) == "exp/keep\n\n").then_some(())
    });
    let took = granted.elapsed();
    assert!(took >= Duration::from_millis(1500), "a 2 s lease expired after only {took:?}");
    // Expiry shows up as DELETE events for both keys (order within the revoke is by key).
    w.expect_lines(&["DELETE", "exp/a", "", "DELETE", "exp/b", ""], Duration::from_secs(10));
    assert_eq!(s.ok(&["lease", "timetolive", &id]), format!("lease {id} already expired\n"));
    assert_eq!(s.ok(&["lease", "list"]), "found 0 leases\n");
}

#[test]
fn compaction_and_revision_bounds() {
    let s = StoreProcess::start();
    let r0 = s.revision();
    for v in ["v1", "v2", "v3", "v4"] {
        s.ok(&["put", "c", v]);
    }
    let (r2, r3, r4) = (r0 + 2, r0 + 3, r0 + 4);
    assert_eq!(s.ok(&["compaction", &r3.to_string()]), format!("compacted revision {r3}\n"));

    let err = s.fails(&["get", "c", &format!("--rev={r2}")]);
    assert!(err.contains("required revision has been compacted"), "get below the compaction: {err}");
    assert_eq!(s.ok(&["get", "c", &format!("--rev={r3}")]), "c\nv3\n", "the compaction revision itself is kept");
    assert_eq!(s.ok(&["get", "c"]), "c\nv4\n");
    let err = s.fails(&["get", "c", &format!("--rev={}", r4 + 100)]);
    assert!(err.contains("required revision is a future revision"), "get above the head: {err}");

    // Compacting again at or below the compacted revision is an error.
    let err = s.fails(&["compaction", &r2.to_string()]);
    assert!(err.contains("required revision has been compacted"), "re-compaction: {err}");
    // Compacting a future revision is an error.
    let err = s.fails(&["compaction", &(r4 + 100).to_string()]);
    assert!(err.contains("required revision is a future revision"), "future compaction: {err}");

    // A watch from a compacted revision is canceled (etcdctl exits) rather than hanging.
    let mut cmd = Command::new(ETCDCTL);
    cmd.env("ETCDCTL_API", "3").arg(format!("--endpoints={}", s.endpoint())).args([
        "watch",
        "c",
        &format!("--rev={r2}"),
    ]);
    let out = run_with_timeout(cmd, None, Duration::from_secs(15));
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "watch from a compacted revision should fail: {}", show(&out));
    assert!(all.contains("required revision has been compacted"), "watch cancel reason: {}", show(&out));
    assert_eq!(s.revision(), r4, "compaction is not a revision");
}

#[test]
fn endpoint_health_and_member_list() {
    let s = StoreProcess::start();
    s.ok(&["put", "a", "b"]);
    let id = member_id_hex(&s);
    let ep = s.endpoint();

    let out = s.etcdctl(&["endpoint", "health"]);
    assert!(out.status.success(), "{}", show(&out));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(&format!("{ep} is healthy: successfully committed proposal")), "{}", show(&out));

    assert_eq!(
        s.ok(&["member", "list"]),
        format!("{id}, started, {}, {}, {}, false\n", s.name, s.peer_url(), ep)
    );
    let v = s.json(&["member", "list"]);
    assert_eq!(v["members"][0]["name"], s.name.as_str(), "{v}");
    assert_eq!(v["members"][0]["peerURLs"][0], s.peer_url().as_str(), "{v}");
    assert_eq!(v["members"][0]["clientURLs"][0], ep.as_str(), "{v}");
    assert_eq!(format!("{:x}", u64_at(&v, &["header", "member_id"])), id, "{v}");
    assert!(u64_at(&v, &["header", "cluster_id"]) != 0, "{v}");
}

#[test]
fn endpoint_status() {
    let s = StoreProcess::start();
    s.ok(&["put", "a", "b"]);
    let id = member_id_hex(&s);
    let ep = s.endpoint();

    // `http://.., <id>, <version>, <db size>, <is leader>, <is learner>, <term>, <index>, <applied>, <errors>`
    let out = s.ok(&["endpoint", "status"]);
    let fields: Vec<&str> = out.trim_end_matches('\n').split(", ").collect();
    assert!(fields.len() >= 9, "endpoint status: {out:?}");
    assert_eq!(fields[0], ep, "{out:?}");
    assert_eq!(fields[1], id, "member id: {out:?}");
    assert!(fields[2].starts_with("3."), "version: {out:?}");
    assert!(fields[3].ends_with("B"), "db size: {out:?}");
    assert_eq!(fields[4], "true", "is leader: {out:?}");
    assert_eq!(fields[5], "false", "is learner: {out:?}");
    let term: u64 = fields[6].parse().unwrap_or_else(|_| panic!("term: {out:?}"));
    let index: u64 = fields[7].parse().unwrap_or_else(|_| panic!("index: {out:?}"));
    assert!(term >= 1 && index >= 1, "{out:?}");
    assert_eq!(fields.get(9).copied(), Some(""), "no errors: {out:?}");

    let v = s.json(&["endpoint", "status"]);
    let st = &v[0];
    assert_eq!(st["Endpoint"], ep.as_str(), "{v}");
    let member = u64_at(st, &["Status", "header", "member_id"]);
    assert_eq!(format!("{member:x}"), id, "{v}");
    assert_eq!(u64_at(st, &["Status", "leader"]), member, "the single member leads: {v}");
    assert!(u64_at(st, &["Status", "header", "cluster_id"]) != 0, "{v}");
    assert!(i64_at(st, &["Status", "dbSize"]) > 0, "db size: {v}");
    assert!(i64_at(st, &["Status", "raftTerm"]) >= 1, "{v}");
    assert!(i64_at(st, &["Status", "raftIndex"]) >= 1, "{v}");
    assert!(i64_at(st, &["Status", "raftAppliedIndex"]) >= 1, "{v}");
    assert!(st["Status"]["version"].as_str().is_some_and(|s| s.starts_with("3.")), "{v}");
    assert_eq!(i64_at(st, &["Status", "header", "revision"]), s.revision(), "{v}");

    // `endpoint hashkv` dials the endpoint the same way `endpoint status` does.
    let out = s.ok(&["endpoint", "hashkv"]);
    assert!(out.starts_with(&format!("{ep}, ")), "hashkv: {out:?}");
}

/// The same Status content through a Rust gRPC client (which sends a plain host:port
/// `:authority`), so a failure of `endpoint_status` can be told apart from wrong content.
#[test]
fn status_content_via_grpc_client() {
    let s = StoreProcess::start();
    s.ok(&["put", "a", "b"]);
    let id = member_id_hex(&s);
    let rev = s.revision();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let st = rt.block_on(async {
        let mut c = etcd_client::Client::connect([s.endpoint()], None).await.expect("connect");
        tokio::time::timeout(Duration::from_secs(10), c.status()).await.expect("status timed out").expect("status")
    });
    let h = st.header().expect("header");
    assert_eq!(format!("{:x}", h.member_id()), id);
    assert_eq!(st.leader(), h.member_id(), "the single member leads");
    assert_eq!(h.revision(), rev);
    assert!(st.version().starts_with("3."), "version {:?}", st.version());
    assert!(st.db_size() > 0);
    assert!(st.raft_term() >= 1 && st.raft_index() >= 1 && st.raft_applied_index() >= 1);
    assert!(!st.is_learner());
    assert!(st.errors().is_empty(), "{:?}", st.errors());
}

#[test]
fn snapshot_save_and_restore() {
    let s = StoreProcess::start();
    for i in 0..20 {
        s.ok(&["put", &format!("s/{i:02}"), &format!("value-{i}")]);
    }
    s.ok(&["put", "s/05", "changed"]);
    s.ok(&["del", "s/07"]);
    let (lease, _) = parse_grant(&s.ok(&["lease", "grant", "600"]));
    s.ok(&["put", &format!("--lease={lease}"), "s/leased", "l"]);
    let before = s.json(&["get", "--prefix", "s/"]);
    let rev = i64_at(&before, &["header", "revision"]);

    let file = s.scratch().join("backup.db");
    let file_s = file.to_str().unwrap();
    let out = s.ok(&["snapshot", "save", file_s]);
    assert!(out.contains(&format!("Snapshot saved at {file_s}")), "{out:?}");
    let len = std::fs::metadata(&file).expect("snapshot file").len();
    assert!(len > 0, "empty snapshot file");

    let new_dir = s.scratch().join("restored");
    let out = run_ferrokube(
        &["store-restore", file_s, "--data-dir", new_dir.to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "store-restore: {}", show(&out));

    // Restoring into a non-empty dir is refused.
    let out = run_ferrokube(
        &["store-restore", file_s, "--data-dir", new_dir.to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert!(!out.status.success(), "restore over existing data must fail: {}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("restored"), "message should name the dir: {}", show(&out));

    let r = StoreProcess::start_with(Some(&new_dir), &[]);
    let after = r.json(&["get", "--prefix", "s/"]);
    assert_eq!(kvs(&after), kvs(&before), "keys, values and revisions survive backup+restore");
    assert_eq!(kvs(&after).len(), 20);
    assert_eq!(i64_at(&after, &["header", "revision"]), rev, "the revision survives backup+restore");
    // History before the backup point stays readable.
    assert_eq!(r.ok(&["get", "s/07", &format!("--rev={}", rev - 3)]), "s/07\nvalue-7\n");
    // Leases survive, with their keys.
    let out = r.ok(&["lease", "timetolive", &lease, "--keys"]);
    assert!(out.contains("attached keys([s/leased])"), "{out:?}");
    // The restored store takes writes, continuing the revision sequence.
    r.ok(&["put", "s/new", "n"]);
    assert_eq!(r.revision(), rev + 1);
    // The original is unaffected.
    assert_eq!(s.ok(&["get", "s/new"]), "");
}

#[test]
fn rejected_requests_leave_no_trace() {
    let s = StoreProcess::start_with(None, &["--max-request-bytes", "10000"]);
    s.ok(&["put", "k", "original"]);
    let rev = s.revision();
    let unchanged = |what: &str| {
        assert_eq!(s.revision(), rev, "{what} changed the revision");
        assert_eq!(s.ok(&["get", "k"]), "k\noriginal\n", "{what} changed k");
        let h = s.etcdctl(&["endpoint", "health"]);
        assert!(h.status.success(), "store unhealthy after {what}: {}", show(&h));
    };

    let err = s.fails(&["put", "", "v"]);
    assert!(err.contains("key is not provided"), "empty key: {err}");
    unchanged("put with an empty key");

    let big = "x".repeat(20_000);
    let err = s.fails(&["put", "big", &big]);
    assert!(err.contains("request is too large"), "oversized put: {err}");
    assert_eq!(s.ok(&["get", "big"]), "");
    unchanged("an oversized put");
    let err = s.fails_stdin(&["txn"], &format!("\nput big {big}\n\n\n"));
    assert!(err.contains("request is too large"), "oversized txn: {err}");
    unchanged("an oversized txn");

    let err = s.fails(&["lease", "revoke", "1234"]);
    assert!(err.contains("requested lease not found"), "revoke of a missing lease: {err}");
    unchanged("revoking a missing lease");

    let err = s.fails(&["put", "--lease=1234", "k", "v"]);
    assert!(err.contains("requested lease not found"), "put with a missing lease: {err}");
    unchanged("a put with a missing lease");

    let err = s.fails_stdin(&["txn"], "\nput d a\nput d b\n\n\n");
    assert!(err.contains("duplicate key given in txn request"), "duplicate puts in a txn: {err}");
    assert_eq!(s.ok(&["get", "d"]), "", "no half-applied txn");
    unchanged("a txn with duplicate puts");

    let err = s.fails_stdin(&["txn"], "\nput k changed\ndel k\n\n\n");
    assert!(err.contains("duplicate key given in txn request"), "put+delete of one key in a txn: {err}");
    unchanged("a txn that puts and deletes one key");

    let err = s.fails_stdin(&["txn"], "\nput ok1 a\nput --lease=1234 ok2 b\n\n\n");
    assert!(err.contains("requested lease not found"), "txn with a missing lease: {err}");
    assert_eq!(s.ok(&["get", "--prefix", "ok"]), "", "no half-applied txn");
    unchanged("a txn with a missing lease");

    // A request just under the limit still works, and then bumps the revision by one.
    let fine = "y".repeat(5_000);
    s.ok(&["put", "fine", &fine]);
    assert_eq!(s.revision(), rev + 1);
    assert_eq!(s.ok(&["get", "fine", "--print-value-only"]), format!("{fine}\n"));
}

#[test]
fn bogus_initial_cluster_state_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let out = run_ferrokube(
        &[
            "store",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen-client-urls",
            &format!("http://127.0.0.1:{port}"),
            "--initial-cluster-state",
            "bogus",
        ],
        Duration::from_secs(20),
    );
    assert!(!out.status.success(), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--initial-cluster-state") && err.contains("bogus"), "{}", show(&out));
    assert!(!data.exists(), "a rejected configuration must not create the data dir");
}

#[test]
fn data_dir_that_is_a_file_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"hello").unwrap();
    let port = free_port();
    let out = run_ferrokube(
        &[
            "store",
            "--data-dir",
            file.to_str().unwrap(),
            "--listen-client-urls",
            &format!("http://127.0.0.1:{port}"),
        ],
        Duration::from_secs(20),
    );
    assert!(!out.status.success(), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(file.to_str().unwrap()), "the message should name the path: {}", show(&out));
    assert_eq!(std::fs::read(&file).unwrap(), b"hello", "the file must be left alone");
}

#[test]
fn busy_client_port_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let out = run_ferrokube(
        &[
            "store",
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
            "--listen-client-urls",
            &format!("http://127.0.0.1:{port}"),
        ],
        Duration::from_secs(20),
    );
    assert!(!out.status.success(), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "the message should name the address: {}", show(&out));
    assert!(err.to_lowercase().contains("in use"), "the message should say why: {}", show(&out));
    drop(holder);
}

#[test]
fn sigterm_shuts_down_cleanly_and_data_survives() {
    let mut s = StoreProcess::start();
    for i in 0..10 {
        s.ok(&["put", &format!("t/{i}"), &format!("v{i}")]);
    }
    let (lease, _) = parse_grant(&s.ok(&["lease", "grant", "600"]));
    s.ok(&["put", &format!("--lease={lease}"), "t/leased", "l"]);
    // An open (established) watch stream must not keep the process alive.
    let mut w = s.watch(&["--prefix", "t/"]);
    w.sync(&s, "t/sync-");
    let before = s.json(&["get", "--prefix", "t/"]);

    let started = Instant::now();
    let status = s.terminate(Duration::from_secs(10));
    let took = started.elapsed();
    let status = status.unwrap_or_else(|| panic!("no exit within 10 s of SIGTERM\n{}", s.log_tail()));
    assert!(status.success(), "exit status after SIGTERM: {status}\n{}", s.log_tail());
    eprintln!("SIGTERM: exited in {took:?}");

    s.restart();
    let after = s.json(&["get", "--prefix", "t/"]);
    assert_eq!(kvs(&after), kvs(&before), "keys after a graceful restart");
    assert_eq!(i64_at(&after, &["header", "revision"]), i64_at(&before, &["header", "revision"]));
    let out = s.ok(&["lease", "timetolive", &lease, "--keys"]);
    assert!(out.contains("attached keys([t/leased])"), "lease after restart: {out:?}");
    s.ok(&["put", "t/after", "x"]);
    assert_eq!(s.revision(), i64_at(&before, &["header", "revision"]) + 1);
}
