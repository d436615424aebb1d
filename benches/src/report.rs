//! Results → a comparison table (metric | etcd | ferrokube | ratio | better) or JSON.
//!
//! A phase that failed (timeout, error, missing events) keeps its partial numbers but
//! every cell from it is marked `FAILED`, and the failure text is listed under the table.

use std::fmt::Write as _;

use crate::cluster::{MemStat, ServerKind};
use crate::load::{PutResult, SuiteResult, WatchResult};
use crate::stats::ratio;

/// Everything measured on one server kind.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServerReport {
    pub kind: ServerKind,
    pub binary: String,
    pub version: String,
    pub members: usize,
    pub suite: Option<SuiteResult>,
    /// Summed over members, read right after the load.
    pub memory: Option<MemStat>,
    /// Set when the server could not be built/started or died; the suite may be partial.
    pub error: Option<String>,
}

/// Which way is better for a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Higher,
    Lower,
    /// Counts that must match the expected value exactly.
    Equal,
}

/// One side's value in a row.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Cell {
    pub value: Option<f64>,
    /// For `Equal` rows: the expected count.
    pub expected: Option<f64>,
    /// The phase this value comes from did not complete cleanly.
    pub failed: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub metric: String,
    pub unit: &'static str,
    pub better: Better,
    pub etcd: Option<Cell>,
    pub ferrokube: Option<Cell>,
    /// ferrokube / etcd.
    pub ratio: Option<f64>,
}

type Extract = Box<dyn Fn(&ServerReport) -> Option<Cell>>;

/// Which request phase a row reads.
#[derive(Clone, Copy)]
enum Phase {
    Sequential,
    /// The i-th concurrent put phase.
    Puts(usize),
    /// The i-th concurrent linearizable get phase.
    Gets(usize),
}

fn put_cell(
    r: &ServerReport,
    phase: Phase,
    val: impl Fn(&PutResult) -> f64,
) -> Option<Cell> {
    let s = r.suite.as_ref()?;
    let p = match phase {
        Phase::Sequential => &s.sequential,
        Phase::Puts(i) => s.throughput.get(i)?,
        Phase::Gets(i) => s.reads.get(i)?,
    };
    Some(Cell {
        value: Some(val(p)),
        expected: None,
        failed: p.failure.is_some() || p.completed == 0,
    })
}

fn watch_cell(
    r: &ServerReport,
    pick: fn(&SuiteResult) -> &WatchResult,
    val: impl Fn(&WatchResult) -> f64,
) -> Option<Cell> {
    let w = pick(r.suite.as_ref()?);
    Some(Cell {
        value: Some(val(w)),
        expected: None,
        failed: w.failure.is_some(),
    })
}

fn single(s: &SuiteResult) -> &WatchResult {
    &s.watch_single
}
fn fanout(s: &SuiteResult) -> &WatchResult {
    &s.watch_fanout
}

/// Builds the comparison rows; `throughput_clients` names the concurrent put phases.
pub fn rows(
    etcd: Option<&ServerReport>,
    ferro: Option<&ServerReport>,
    throughput_clients: &[usize],
    watchers: usize,
) -> Vec<Row> {
    let mut defs: Vec<(String, &'static str, Better, Extract)> = vec![
        (
            "seq put p50".into(),
            "ms",
            Better::Lower,
            Box::new(|r| put_cell(r, Phase::Sequential, |p| p.latency.p50_ms)),
        ),
        (
            "seq put p99".into(),
            "ms",
            Better::Lower,
            Box::new(|r| put_cell(r, Phase::Sequential, |p| p.latency.p99_ms)),
        ),
        (
            "seq put rate".into(),
            "puts/s",
            Better::Higher,
            Box::new(|r| put_cell(r, Phase::Sequential, |p| p.ops_per_s)),
        ),
    ];
    for (i, &c) in throughput_clients.iter().enumerate() {
        let pick = Phase::Puts(i);
        defs.push((
            format!("put x{c} clients rate"),
            "puts/s",
            Better::Higher,
            Box::new(move |r| put_cell(r, pick, |p| p.ops_per_s)),
        ));
        defs.push((
            format!("put x{c} clients p50"),
            "ms",
            Better::Lower,
            Box::new(move |r| put_cell(r, pick, |p| p.latency.p50_ms)),
        ));
        defs.push((
            format!("put x{c} clients p99"),
            "ms",
            Better::Lower,
            Box::new(move |r| put_cell(r, pick, |p| p.latency.p99_ms)),
        ));
        defs.push((
            format!("put x{c} clients member CPU/put"),
            "us",
            Better::Lower,
            Box::new(move |r| put_cell(r, pick, |p| p.member_cpu_us_per_put.unwrap_or(f64::NAN))),
        ));
    }
    for (i, &c) in throughput_clients.iter().enumerate() {
        let pick = Phase::Gets(i);
        defs.push((
            format!("get x{c} clients rate"),
            "gets/s",
            Better::Higher,
            Box::new(move |r| put_cell(r, pick, |p| p.ops_per_s)),
        ));
        defs.push((
            format!("get x{c} clients p99"),
            "ms",
            Better::Lower,
            Box::new(move |r| put_cell(r, pick, |p| p.latency.p99_ms)),
        ));
        defs.push((
            format!("get x{c} clients member CPU/get"),
            "us",
            Better::Lower,
            Box::new(move |r| put_cell(r, pick, |p| p.member_cpu_us_per_put.unwrap_or(f64::NAN))),
        ));
    }
    for (label, pick) in [
        (
            "watch x1".to_string(),
            single as fn(&SuiteResult) -> &WatchResult,
        ),
        (format!("watch x{watchers}"), fanout),
    ] {
        defs.push((
            format!("{label} events rate"),
            "events/s",
            Better::Higher,
            Box::new(move |r| watch_cell(r, pick, |w| w.events_per_s)),
        ));
        defs.push((
            format!("{label} ack->event p50"),
            "ms",
            Better::Lower,
            Box::new(move |r| watch_cell(r, pick, |w| w.delivery.p50_ms)),
        ));
        defs.push((
            format!("{label} ack->event p99"),
            "ms",
            Better::Lower,
            Box::new(move |r| watch_cell(r, pick, |w| w.delivery.p99_ms)),
        ));
        defs.push((
            format!("{label} put-issued->event p50"),
            "ms",
            Better::Lower,
            Box::new(move |r| watch_cell(r, pick, |w| w.delivery_from_issue.p50_ms)),
        ));
        defs.push((
            format!("{label} put-issued->event p99"),
            "ms",
            Better::Lower,
            Box::new(move |r| watch_cell(r, pick, |w| w.delivery_from_issue.p99_ms)),
        ));
        defs.push((
            format!("{label} events delivered"),
            "events",
            Better::Equal,
            Box::new(move |r| {
                let w = pick(r.suite.as_ref()?);
                Some(Cell {
                    value: Some(w.events_delivered as f64),
                    expected: Some(w.events_expected as f64),
                    failed: w.failure.is_some(),
                })
            }),
        ));
        if label != "watch x1" {
            defs.push((
                format!("{label} watchers complete"),
                "watchers",
                Better::Equal,
                Box::new(move |r| {
                    let w = pick(r.suite.as_ref()?);
                    Some(Cell {
                        value: Some(w.watchers_complete as f64),
                        expected: Some(w.watchers as f64),
                        failed: w.failure.is_some(),
                    })
                }),
            ));
        }
    }
    let mem = |f: fn(&MemStat) -> u64| -> Extract {
        Box::new(move |r: &ServerReport| {
            let m = r.memory.as_ref()?;
            Some(Cell {
                value: Some(f(m) as f64 / 1024.0),
                expected: None,
                failed: false,
            })
        })
    };
    defs.push((
        "RSS after load (VmRSS)".into(),
        "MiB",
        Better::Lower,
        mem(|m| m.rss_kib),
    ));
    defs.push((
        "peak RSS (VmHWM)".into(),
        "MiB",
        Better::Lower,
        mem(|m| m.hwm_kib),
    ));

    defs.into_iter()
        .map(|(metric, unit, better, f)| {
            let e = etcd.and_then(&f);
            let k = ferro.and_then(&f);
            let ratio = if better == Better::Equal {
                None
            } else {
                ratio(
                    k.as_ref().and_then(|c| c.value),
                    e.as_ref().and_then(|c| c.value),
                )
            };
            Row {
                metric,
                unit,
                better,
                etcd: e,
                ferrokube: k,
                ratio,
            }
        })
        .collect()
}

fn fmt_value(v: f64, unit: &str) -> String {
    match unit {
        "ms" if v < 10.0 => format!("{v:.3}"),
        "ms" => format!("{v:.1}"),
        "MiB" => format!("{v:.1}"),
        _ => format!("{v:.0}"),
    }
}

fn fmt_cell(c: Option<&Cell>, unit: &str, kind_present: bool) -> String {
    let Some(c) = c else {
        return if kind_present {
            "n/a".into()
        } else {
            "-".into()
        };
    };
    let Some(v) = c.value else {
        return "n/a".into();
    };
    let mut s = match c.expected {
        Some(exp) if v == exp => format!("{v:.0}/{exp:.0} ok"),
        Some(exp) => format!("{v:.0}/{exp:.0} MISMATCH"),
        None => fmt_value(v, unit),
    };
    if c.failed {
        s.push_str(" FAILED");
    }
    s
}

/// Every failure of every phase, one line each, prefixed by server kind.
pub fn problems(reports: &[&ServerReport]) -> Vec<String> {
    let mut out = Vec::new();
    for r in reports {
        let k = r.kind.name();
        if let Some(e) = &r.error {
            out.push(format!("{k}: {e}"));
        }
        let Some(s) = &r.suite else { continue };
        let mut put = |name: String, p: &PutResult| {
            if let Some(f) = &p.failure {
                out.push(format!(
                    "{k}: {name}: {f} ({} of {} done)",
                    p.completed, p.requested
                ));
            }
        };
        put("seq put".into(), &s.sequential);
        for p in &s.throughput {
            put(format!("put x{}", p.clients), p);
        }
        for p in &s.reads {
            put(format!("get x{}", p.clients), p);
        }
        for w in [&s.watch_single, &s.watch_fanout] {
            if let Some(f) = &w.failure {
                out.push(format!(
                    "{k}: watch x{}: {f} (delivered {}/{}, {} of {} watchers complete)",
                    w.watchers,
                    w.events_delivered,
                    w.events_expected,
                    w.watchers_complete,
                    w.watchers
                ));
            }
        }
    }
    out
}

/// The human-readable table.
pub fn table(
    rows: &[Row],
    have_etcd: bool,
    have_ferro: bool,
    header: &[String],
    problems: &[String],
) -> String {
    let head = ["metric", "etcd", "ferrokube", "ratio (fk/etcd)", "better"];
    let mut lines: Vec<[String; 5]> = Vec::new();
    for r in rows {
        let better = match r.better {
            Better::Higher => "higher",
            Better::Lower => "lower",
            Better::Equal => "= expected",
        };
        lines.push([
            format!("{} ({})", r.metric, r.unit),
            fmt_cell(r.etcd.as_ref(), r.unit, have_etcd),
            fmt_cell(r.ferrokube.as_ref(), r.unit, have_ferro),
            r.ratio
                .map(|x| format!("{x:.2}x"))
                .unwrap_or_else(|| "-".into()),
            better.into(),
        ]);
    }
    let mut w = head.map(str::len);
    for l in &lines {
        for (i, c) in l.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let mut out = String::new();
    for h in header {
        let _ = writeln!(out, "{h}");
    }
    let fmt_line = |cells: [&str; 5]| {
        format!(
            "| {:<w0$} | {:>w1$} | {:>w2$} | {:>w3$} | {:<w4$} |",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3],
            w4 = w[4]
        )
    };
    let _ = writeln!(out, "{}", fmt_line(head));
    let _ = writeln!(
        out,
        "|{}|{}|{}|{}|{}|",
        "-".repeat(w[0] + 2),
        "-".repeat(w[1] + 2),
        "-".repeat(w[2] + 2),
        "-".repeat(w[3] + 2),
        "-".repeat(w[4] + 2)
    );
    for l in &lines {
        let _ = writeln!(out, "{}", fmt_line([&l[0], &l[1], &l[2], &l[3], &l[4]]));
    }
    if problems.is_empty() {
        let _ = writeln!(
            out,
            "\nall phases completed; every watcher received every event."
        );
    } else {
        let _ = writeln!(
            out,
            "\n!!! PROBLEMS ({}) — numbers marked FAILED are partial:",
            problems.len()
        );
        for p in problems {
            let _ = writeln!(out, "!!! {p}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_show_mismatch_and_failure() {
        let ok = Cell {
            value: Some(10.0),
            expected: Some(10.0),
            failed: false,
        };
        assert_eq!(fmt_cell(Some(&ok), "events", true), "10/10 ok");
        let bad = Cell {
            value: Some(9.0),
            expected: Some(10.0),
            failed: true,
        };
        assert_eq!(fmt_cell(Some(&bad), "events", true), "9/10 MISMATCH FAILED");
        let ms = Cell {
            value: Some(1.23456),
            expected: None,
            failed: false,
        };
        assert_eq!(fmt_cell(Some(&ms), "ms", true), "1.235");
        assert_eq!(fmt_cell(None, "ms", false), "-");
    }

    #[test]
    fn rows_without_ferrokube_have_no_ratio() {
        let r = ServerReport {
            kind: ServerKind::Etcd,
            binary: "etcd".into(),
            version: "x".into(),
            members: 1,
            suite: None,
            memory: Some(MemStat {
                rss_kib: 2048,
                hwm_kib: 4096,
            }),
            error: None,
        };
        let rows = rows(Some(&r), None, &[16, 64], 100);
        let rss = rows.iter().find(|x| x.metric.starts_with("RSS")).unwrap();
        assert_eq!(rss.etcd.as_ref().unwrap().value, Some(2.0));
        assert!(rss.ratio.is_none());
        assert!(rows.iter().any(|x| x.metric == "put x64 clients rate"));
        assert!(rows
            .iter()
            .any(|x| x.metric == "watch x100 watchers complete"));
    }
}
