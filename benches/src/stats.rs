//! Pure statistics: percentiles over latency samples, rates and ratios.

use std::time::Duration;

/// Summary of a set of latency samples, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Summary {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// Nearest-rank percentile (`q` in 0..=100) of already **sorted** samples.
/// Nearest rank: the smallest sample such that at least q % of samples are <= it.
/// `None` for an empty slice.
pub fn percentile_sorted(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let q = q.clamp(0.0, 100.0);
    let rank = ((q / 100.0) * sorted.len() as f64).ceil() as usize;
    let idx = rank.saturating_sub(1).min(sorted.len() - 1);
    Some(sorted[idx])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Sorts `samples` in place and summarises them. All zeros for no samples.
pub fn summarize(samples: &mut [Duration]) -> Summary {
    if samples.is_empty() {
        return Summary::default();
    }
    samples.sort_unstable();
    let total: Duration = samples.iter().sum();
    Summary {
        count: samples.len(),
        p50_ms: ms(percentile_sorted(samples, 50.0).unwrap_or_default()),
        p99_ms: ms(percentile_sorted(samples, 99.0).unwrap_or_default()),
        max_ms: ms(*samples.last().unwrap()),
        mean_ms: ms(total) / samples.len() as f64,
    }
}

/// Operations per second; 0 when no time elapsed.
pub fn rate(count: u64, elapsed: Duration) -> f64 {
    let s = elapsed.as_secs_f64();
    if s <= 0.0 {
        0.0
    } else {
        count as f64 / s
    }
}

/// `ours / theirs` (ferrokube / etcd). `None` when either side is missing, not finite,
/// or the denominator is zero.
pub fn ratio(ours: Option<f64>, theirs: Option<f64>) -> Option<f64> {
    let (o, t) = (ours?, theirs?);
    if !o.is_finite() || !t.is_finite() || t == 0.0 {
        return None;
    }
    Some(o / t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn percentile_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(d).collect();
        assert_eq!(percentile_sorted(&v, 50.0), Some(d(50)));
        assert_eq!(percentile_sorted(&v, 99.0), Some(d(99)));
        assert_eq!(percentile_sorted(&v, 100.0), Some(d(100)));
        assert_eq!(percentile_sorted(&v, 0.0), Some(d(1)));
        let v = vec![d(7)];
        assert_eq!(percentile_sorted(&v, 50.0), Some(d(7)));
        assert_eq!(percentile_sorted(&v, 99.0), Some(d(7)));
        assert_eq!(percentile_sorted(&[], 50.0), None);
        // 10 samples: p99 is the largest, p50 the 5th.
        let v: Vec<Duration> = (1..=10).map(d).collect();
        assert_eq!(percentile_sorted(&v, 99.0), Some(d(10)));
        assert_eq!(percentile_sorted(&v, 50.0), Some(d(5)));
    }

    #[test]
    fn summarize_sorts_and_reports() {
        let mut v = vec![d(4), d(1), d(3), d(2)];
        let s = summarize(&mut v);
        assert_eq!(s.count, 4);
        assert_eq!(s.p50_ms, 2.0);
        assert_eq!(s.p99_ms, 4.0);
        assert_eq!(s.max_ms, 4.0);
        assert_eq!(s.mean_ms, 2.5);
        assert_eq!(summarize(&mut []), Summary::default());
    }

    #[test]
    fn rate_and_ratio() {
        assert_eq!(rate(500, Duration::from_millis(250)), 2000.0);
        assert_eq!(rate(5, Duration::ZERO), 0.0);
        assert_eq!(ratio(Some(2.0), Some(4.0)), Some(0.5));
        assert_eq!(ratio(Some(2.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(1.0)), None);
        assert_eq!(ratio(Some(f64::NAN), Some(1.0)), None);
    }
}
