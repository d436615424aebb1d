//! What a run's summary reports, computed from its histories and its nemesis timeline: operations
//! by outcome, availability during each fault, stale reads, and the latency plot (an SVG written
//! by hand). Pure logic over [`Operation`]s.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::history::{Op, Operation, Outcome};

/// One fault, from injection to healing, as recorded in `nemesis.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultWindow {
    /// The nemesis name (`partition`, `kill`, ...).
    pub nemesis: String,
    /// What exactly it did, e.g. `n1 | n2 n3` or `kill -9 n2`.
    pub detail: String,
    /// When the fault was in place, on the run's clock (the histories' `time_ns`).
    pub start_ns: u64,
    pub end_ns: u64,
}

/// Operations counted by kind and outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub ok: usize,
    pub fail: usize,
    pub info: usize,
}

impl Counts {
    fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Ok => self.ok += 1,
            Outcome::Fail => self.fail += 1,
            Outcome::Info => self.info += 1,
        }
    }

    /// All operations.
    pub fn total(&self) -> usize {
        self.ok + self.fail + self.info
    }
}

/// Counts per operation kind (`read`, `write`, `cas`) and over all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutcomeTable {
    pub read: Counts,
    pub write: Counts,
    pub cas: Counts,
    pub all: Counts,
}

/// Tallies `ops` by kind and outcome.
pub fn outcome_table(ops: &[Operation]) -> OutcomeTable {
    let mut t = OutcomeTable::default();
    for op in ops {
        match op.op {
            Op::Read { .. } => t.read.add(op.outcome),
            Op::Write { .. } => t.write.add(op.outcome),
            Op::Cas { .. } => t.cas.add(op.outcome),
        }
        t.all.add(op.outcome);
    }
    t
}

/// How the cluster served clients while one fault was in place.
#[derive(Debug, Clone, PartialEq)]
pub struct Availability {
    pub window: FaultWindow,
    /// Operations invoked inside the window, by outcome.
    pub counts: Counts,
    /// Successful operations per second inside the window.
    pub ok_per_sec: f64,
    /// The longest stretch inside the window in which no operation completed `ok`: how long
    /// clients saw the cluster down (the window itself when nothing succeeded).
    pub longest_outage_ns: u64,
}

/// Availability during each window: the operations invoked in `[start, end)`.
pub fn availability(ops: &[Operation], windows: &[FaultWindow]) -> Vec<Availability> {
    windows
        .iter()
        .map(|w| {
            let mut counts = Counts::default();
            for op in ops
                .iter()
                .filter(|o| (w.start_ns..w.end_ns).contains(&o.invoke_ns))
            {
                counts.add(op.outcome);
            }
            let mut oks: Vec<u64> = ops
                .iter()
                .filter(|o| o.outcome == Outcome::Ok)
                .filter_map(|o| o.complete_ns)
                .filter(|t| (w.start_ns..w.end_ns).contains(t))
                .collect();
            oks.sort_unstable();
            let mut longest = 0;
            let mut previous = w.start_ns;
            for t in oks.into_iter().chain([w.end_ns]) {
                longest = longest.max(t - previous);
                previous = t;
            }
            Availability {
                window: w.clone(),
                counts,
                ok_per_sec: per_sec(counts.ok, w.end_ns.saturating_sub(w.start_ns)),
                longest_outage_ns: longest,
            }
        })
        .collect()
}

/// Successful operations per second outside every fault window, over `[0, end_ns)`: the
/// baseline the windows compare against.
pub fn healthy_ok_per_sec(ops: &[Operation], windows: &[FaultWindow], end_ns: u64) -> f64 {
    let in_fault = |t: u64| windows.iter().any(|w| (w.start_ns..w.end_ns).contains(&t));
    let ok = ops
        .iter()
        .filter(|o| o.outcome == Outcome::Ok && o.invoke_ns < end_ns && !in_fault(o.invoke_ns))
        .count();
    let faulty: u64 = windows
        .iter()
        .map(|w| w.end_ns.min(end_ns).saturating_sub(w.start_ns))
        .sum();
    per_sec(ok, end_ns.saturating_sub(faulty))
}

fn per_sec(n: usize, ns: u64) -> f64 {
    if ns == 0 {
        0.0
    } else {
        n as f64 / (ns as f64 / 1e9)
    }
}

/// A read that returned a value already overwritten before the read began — the signature
/// of a member serving reads from a stale copy. Every one is a linearizability violation;
/// not every violation is one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleRead {
    pub read: Operation,
    /// A successful write of another value that completed before `read` was invoked, and was
    /// itself invoked after the write of the value read had completed.
    pub newer: Operation,
}

/// Finds stale reads, relying on the workload writing each value at most once per key.
///
/// Worked example on one key: `write a [10, 20]`, `write b [30, 40]`, `read -> a [50, 60]`:
/// `a` was complete before `b` began and `b` complete before the read began, so the read is
/// stale. A read `-> absent` after any completed write is stale too.
pub fn stale_reads(ops: &[Operation]) -> Vec<StaleRead> {
    // Per key: successful writes as (value, invoke, complete), sorted by completion.
    let mut writes: HashMap<&str, Vec<(&str, u64, u64, &Operation)>> = HashMap::new();
    for op in ops.iter().filter(|o| o.outcome == Outcome::Ok) {
        let value = match &op.op {
            Op::Write { value } => value.as_str(),
            Op::Cas {
                new,
                succeeded: Some(true),
                ..
            } => new.as_str(),
            _ => continue,
        };
        let complete = op.complete_ns.expect("ok operations complete");
        writes
            .entry(op.key.as_str())
            .or_default()
            .push((value, op.invoke_ns, complete, op));
    }
    for w in writes.values_mut() {
        w.sort_by_key(|&(_, _, complete, _)| complete);
    }
    let mut stale = Vec::new();
    for read in ops.iter().filter(|o| o.outcome == Outcome::Ok) {
        let Op::Read { value } = &read.op else {
            continue;
        };
        let Some(ws) = writes.get(read.key.as_str()) else {
            continue;
        };
        // The write of the value read (none for "absent": it precedes everything).
        let written_at = match value {
            None => Some(0),
            Some(v) => ws.iter().find(|w| w.0 == v).map(|w| w.2),
        };
        let Some(written_at) = written_at else {
            continue; // written by an info op, or never: the checker judges it
        };
        let newer = ws.iter().find(|&&(v, invoke, complete, _)| {
            Some(v) != value.as_deref() && invoke > written_at && complete < read.invoke_ns
        });
        if let Some(&(_, _, _, newer)) = newer {
            stale.push(StaleRead {
                read: read.clone(),
                newer: newer.clone(),
            });
        }
    }
    stale.sort_by_key(|s| s.read.invoke_ns);
    stale
}

/// Renders op latency over time as an SVG: one dot per operation at (invocation time,
/// latency), log-scaled from 0.1 ms to `max_latency_ms`; `ok` dots blue, `fail` orange,
/// `info` red at the top edge (their latency is unknown); fault windows shaded and labelled.
/// At most `max_points` dots are drawn (evenly thinned), so a 10-minute run stays small.
pub fn latency_svg(
    ops: &[Operation],
    windows: &[FaultWindow],
    end_ns: u64,
    max_latency_ms: f64,
    max_points: usize,
) -> String {
    const W: f64 = 1000.0;
    const H: f64 = 420.0;
    const LEFT: f64 = 60.0;
    const RIGHT: f64 = 20.0;
    const TOP: f64 = 30.0;
    const BOTTOM: f64 = 40.0;
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let end_ns = end_ns.max(1);
    let x = |t_ns: u64| LEFT + plot_w * (t_ns.min(end_ns) as f64 / end_ns as f64);
    let (lo, hi) = (0.1f64.log10(), max_latency_ms.max(1.0).log10());
    let y = |ms: f64| {
        let l = ms.clamp(0.1, max_latency_ms.max(1.0)).log10();
        TOP + plot_h * (1.0 - (l - lo) / (hi - lo))
    };

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    for (i, w) in windows.iter().enumerate() {
        let (x0, x1) = (x(w.start_ns), x(w.end_ns));
        let _ = writeln!(
            s,
            r##"<rect class="fault" x="{x0:.1}" y="{TOP}" width="{:.1}" height="{plot_h}" fill="#f4c7c3" fill-opacity="0.6"><title>{}: {}</title></rect>"##,
            (x1 - x0).max(0.5),
            xml_escape(&w.nemesis),
            xml_escape(&w.detail)
        );
        // Labels alternate between two rows and are cut to what fits above their band plus
        // the gap before the next one (a 10-minute run has ~30 narrow bands).
        let room = match windows.get(i + 2) {
            Some(next) => x(next.start_ns) - x0,
            None => W - RIGHT - x0,
        };
        let chars = ((room - 4.0) / 6.5).max(1.0) as usize;
        let label: String = w.nemesis.chars().take(chars).collect();
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" fill="#a33">{}</text>"##,
            x0 + 1.0,
            if i % 2 == 0 { TOP - 4.0 } else { TOP - 16.0 },
            xml_escape(&label)
        );
    }
    // Axes and grid.
    let _ = writeln!(
        s,
        r#"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{:.1}" stroke="black"/>"#,
        TOP + plot_h
    );
    let _ = writeln!(
        s,
        r#"<line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="black"/>"#,
        TOP + plot_h,
        LEFT + plot_w,
        TOP + plot_h
    );
    let mut ms = 0.1;
    while ms <= max_latency_ms.max(1.0) * 1.0001 {
        let yy = y(ms);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{} ms</text>"##,
            LEFT + plot_w,
            LEFT - 4.0,
            yy + 4.0,
            ms
        );
        ms *= 10.0;
    }
    let secs = end_ns as f64 / 1e9;
    let step = nice_step(secs / 10.0);
    let decimals = if step >= 1.0 {
        0
    } else {
        1 + (-step.log10()).floor() as usize
    };
    for i in 0..=((secs / step + 1e-9) as usize) {
        let t = i as f64 * step;
        let xx = x((t * 1e9) as u64);
        let _ = writeln!(
            s,
            r#"<text x="{xx:.1}" y="{:.1}" text-anchor="middle">{t:.decimals$}</text>"#,
            TOP + plot_h + 16.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">time since start (s) — blue ok, orange fail, red unknown (info); shaded: faults</text>"#,
        LEFT + plot_w / 2.0,
        H - 6.0
    );

    let stride = ops.len().div_ceil(max_points.max(1)).max(1);
    let _ = writeln!(s, r#"<g class="ops">"#);
    for op in ops.iter().step_by(stride) {
        let (color, latency_ms) = match (op.outcome, op.complete_ns) {
            (Outcome::Ok, Some(c)) => ("#1f77b4", (c - op.invoke_ns) as f64 / 1e6),
            (Outcome::Fail, Some(c)) => ("#ff7f0e", (c - op.invoke_ns) as f64 / 1e6),
            _ => ("#d62728", max_latency_ms),
        };
        let _ = writeln!(
            s,
            r#"<circle cx="{:.1}" cy="{:.1}" r="1.5" fill="{color}"/>"#,
            x(op.invoke_ns),
            y(latency_ms)
        );
    }
    let _ = writeln!(s, "</g>");
    let _ = writeln!(s, "</svg>");
    s
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let raw = raw.max(1e-3);
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * p)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{History, Phase, Record};

    fn ops(spec: &[(u32, Op, Phase, u64)]) -> Vec<Operation> {
        let mut h = History::new();
        for (process, op, phase, t) in spec {
            h.push(Record {
                process: *process,
                key: "k".into(),
                op: op.clone(),
                phase: *phase,
                time_ns: *t,
            });
        }
        h.operations().unwrap()
    }

    fn window(start: u64, end: u64) -> FaultWindow {
        FaultWindow {
            nemesis: "partition".into(),
            detail: "n1 | n2 n3".into(),
            start_ns: start,
            end_ns: end,
        }
    }

    const S: u64 = 1_000_000_000;

    #[test]
    fn counts_by_kind_and_outcome() {
        let o = ops(&[
            (0, Op::write("a"), Phase::Invoke, 1),
            (0, Op::write("a"), Phase::Ok, 2),
            (1, Op::read(), Phase::Invoke, 3),
            (1, Op::read(), Phase::Fail, 4),
            (2, Op::cas("a", "b"), Phase::Invoke, 5),
            (2, Op::cas("a", "b"), Phase::Info, 6),
            (3, Op::cas("a", "c"), Phase::Invoke, 7),
        ]);
        let t = outcome_table(&o);
        assert_eq!(
            t.write,
            Counts {
                ok: 1,
                fail: 0,
                info: 0
            }
        );
        assert_eq!(
            t.read,
            Counts {
                ok: 0,
                fail: 1,
                info: 0
            }
        );
        assert_eq!(
            t.cas,
            Counts {
                ok: 0,
                fail: 0,
                info: 2
            }
        );
        assert_eq!(t.all.total(), 4);
    }

    #[test]
    fn availability_counts_ops_invoked_inside_each_window() {
        // Healthy: 4 ok in [0,2s) and [4s,6s); fault [2s,4s): 1 ok, 1 info.
        let o = ops(&[
            (0, Op::write("a"), Phase::Invoke, 0),
            (0, Op::write("a"), Phase::Ok, S / 2),
            (0, Op::read(), Phase::Invoke, S),
            (0, Op::read_ok(Some("a")), Phase::Ok, S + 1),
            (0, Op::read(), Phase::Invoke, 2 * S),
            (0, Op::read_ok(Some("a")), Phase::Ok, 3 * S),
            (0, Op::write("b"), Phase::Invoke, 3 * S + 1),
            (0, Op::write("b"), Phase::Info, 5 * S),
            (1, Op::read(), Phase::Invoke, 5 * S),
            (1, Op::read_ok(Some("b")), Phase::Ok, 5 * S + 1),
            (1, Op::read(), Phase::Invoke, 5 * S + 2),
            (1, Op::read_ok(Some("b")), Phase::Ok, 5 * S + 3),
        ]);
        let w = [window(2 * S, 4 * S)];
        let a = availability(&o, &w);
        assert_eq!(
            a[0].counts,
            Counts {
                ok: 1,
                fail: 0,
                info: 1
            }
        );
        assert!((a[0].ok_per_sec - 0.5).abs() < 1e-9);
        // The only ok completion inside [2 s, 4 s) is at 3 s: a 1 s outage on each side.
        assert_eq!(a[0].longest_outage_ns, S);
        let empty = availability(&o, &[window(6 * S, 9 * S)]);
        assert_eq!(empty[0].longest_outage_ns, 3 * S);
        assert!((healthy_ok_per_sec(&o, &w, 6 * S) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn finds_stale_reads_and_nothing_else() {
        let o = ops(&[
            (0, Op::write("a"), Phase::Invoke, 10),
            (0, Op::write("a"), Phase::Ok, 20),
            (1, Op::cas("a", "b"), Phase::Invoke, 30),
            (1, Op::cas_ok("a", "b", true), Phase::Ok, 40),
            (2, Op::read(), Phase::Invoke, 50),
            (2, Op::read_ok(Some("a")), Phase::Ok, 60), // stale: b completed at 40
            (3, Op::read(), Phase::Invoke, 35),
            (3, Op::read_ok(Some("a")), Phase::Ok, 70), // concurrent with the cas: fine
            (4, Op::read(), Phase::Invoke, 80),
            (4, Op::read_ok(None), Phase::Ok, 90), // stale: absent after writes
            (5, Op::read(), Phase::Invoke, 5),
            (5, Op::read_ok(None), Phase::Ok, 15), // before any write completed: fine
        ]);
        let stale = stale_reads(&o);
        assert_eq!(stale.len(), 2, "{stale:?}");
        assert_eq!(stale[0].read.process, 2);
        assert_eq!(stale[0].newer.process, 1);
        assert_eq!(stale[1].read.process, 4);
    }

    #[test]
    fn svg_has_one_dot_per_op_and_one_band_per_fault() {
        let o = ops(&[
            (0, Op::write("a"), Phase::Invoke, S),
            (0, Op::write("a"), Phase::Ok, S + 2_000_000),
            (1, Op::read(), Phase::Invoke, 2 * S),
            (1, Op::read(), Phase::Fail, 3 * S),
            (2, Op::write("b"), Phase::Invoke, 4 * S),
        ]);
        let svg = latency_svg(
            &o,
            &[window(S, 2 * S), window(3 * S, 4 * S)],
            5 * S,
            2000.0,
            1000,
        );
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<circle").count(), 3);
        assert_eq!(svg.matches("class=\"fault\"").count(), 2);
        assert!(svg.contains("n1 | n2 n3"));
        assert!(svg.contains("#d62728"), "the info op is drawn in red");
        assert!(
            svg.contains(">0.5</text>") && svg.contains(">5.0</text>"),
            "axis labels"
        );
        // Thinning keeps the plot bounded.
        let many: Vec<Operation> = (0..5000).map(|_| o[0].clone()).collect();
        let svg = latency_svg(&many, &[], 5 * S, 2000.0, 1000);
        assert_eq!(svg.matches("<circle").count(), 1000);
    }

    #[test]
    fn nice_steps() {
        assert_eq!(nice_step(4.5), 5.0);
        assert_eq!(nice_step(6.0), 10.0);
        assert_eq!(nice_step(0.13), 0.2);
        assert_eq!(nice_step(60.0), 100.0);
    }
}
