//! Prometheus metrics (text format at `/metrics`): requests by verb/group/resource/code with
//! latency histograms, open watches, and store request latencies by operation. Process-wide,
//! like kube-apiserver's legacy registry.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

/// Histogram bucket upper bounds in seconds.
const BOUNDS: [f64; 12] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Default, Clone)]
struct Histogram {
    buckets: [u64; BOUNDS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        for (b, bound) in self.buckets.iter_mut().zip(BOUNDS) {
            if secs <= bound {
                *b += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        for (b, bound) in self.buckets.iter().zip(BOUNDS) {
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {b}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

/// (verb, group, resource).
type RequestKey = (String, String, String);

/// Request counts by (verb, group, resource, code) and latencies by (verb, group, resource).
type RequestStats = (BTreeMap<(String, String, String, u16), u64>, BTreeMap<RequestKey, Histogram>);

/// The process's metrics.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<RequestStats>,
    store: Mutex<BTreeMap<&'static str, Histogram>>,
    watches: AtomicI64,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::default);

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    &METRICS
}

/// Decrements the open-watch gauge when the watch ends (its stream is dropped).
pub struct WatchGuard<'a>(&'a Metrics);

impl Drop for WatchGuard<'_> {
    fn drop(&mut self) {
        self.0.watches.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// One served request. `code` is the response's status.
    pub fn observe_request(&self, verb: &str, group: &str, resource: &str, code: u16, took: Duration) {
        let mut r = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *r.0.entry((verb.into(), group.into(), resource.into(), code)).or_default() += 1;
        r.1.entry((verb.into(), group.into(), resource.into())).or_default().observe(took.as_secs_f64());
    }

    /// One store request (`get`, `list`, `txn`, ...).
    pub fn observe_store(&self, operation: &'static str, took: Duration) {
        let mut s = self.store.lock().unwrap_or_else(|p| p.into_inner());
        s.entry(operation).or_default().observe(took.as_secs_f64());
    }

    /// Counts an open watch until the guard is dropped.
    pub fn watch_started(&self) -> WatchGuard<'_> {
        self.watches.fetch_add(1, Ordering::Relaxed);
        WatchGuard(self)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let r = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        out.push_str("# HELP apiserver_request_total Requests by verb, group, resource and HTTP code.\n");
        out.push_str("# TYPE apiserver_request_total counter\n");
        for ((verb, group, resource, code), n) in &r.0 {
            let _ = writeln!(
                out,
                "apiserver_request_total{{verb=\"{verb}\",group=\"{group}\",resource=\"{resource}\",code=\"{code}\"}} {n}"
            );
        }
        out.push_str("# HELP apiserver_request_duration_seconds Time to the response head (a watch's start).\n");
        out.push_str("# TYPE apiserver_request_duration_seconds histogram\n");
        for ((verb, group, resource), h) in &r.1 {
            let labels = format!("verb=\"{verb}\",group=\"{group}\",resource=\"{resource}\"");
            h.render(&mut out, "apiserver_request_duration_seconds", &labels);
        }
        drop(r);
        out.push_str("# HELP apiserver_registered_watchers Open watch streams.\n");
        out.push_str("# TYPE apiserver_registered_watchers gauge\n");
        let _ = writeln!(out, "apiserver_registered_watchers {}", self.watches.load(Ordering::Relaxed));
        out.push_str("# HELP etcd_request_duration_seconds Store request latency by operation.\n");
        out.push_str("# TYPE etcd_request_duration_seconds histogram\n");
        for (op, h) in self.store.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            h.render(&mut out, "etcd_request_duration_seconds", &format!("operation=\"{op}\""));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_the_watch_gauge() {
        let m = Metrics::default();
        m.observe_request("get", "", "pods", 200, Duration::from_millis(3));
        m.observe_request("get", "", "pods", 404, Duration::from_millis(30));
        m.observe_store("txn", Duration::from_millis(2));
        let g = m.watch_started();
        let text = m.render();
        assert!(text.contains("apiserver_request_total{verb=\"get\",group=\"\",resource=\"pods\",code=\"404\"} 1"), "{text}");
        assert!(text.contains("apiserver_request_duration_seconds_bucket{verb=\"get\",group=\"\",resource=\"pods\",le=\"0.005\"} 1"));
        assert!(text.contains("apiserver_request_duration_seconds_count{verb=\"get\",group=\"\",resource=\"pods\"} 2"));
        assert!(text.contains("etcd_request_duration_seconds_count{operation=\"txn\"} 1"));
        assert!(text.contains("apiserver_registered_watchers 1"));
        drop(g);
        assert!(m.render().contains("apiserver_registered_watchers 0"));
    }
}
