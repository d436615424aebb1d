//! Lease expiry bookkeeping. Deadlines are leader-local wall-clock state (never replicated):
//! the leader decides a lease has expired and proposes its revocation through raft, so every
//! member deletes the attached keys at the same revision.
//!
//! A leader that just took over has no deadlines, so it grants every lease a full TTL from the
//! moment it first sees it; a failover therefore never expires a lease that was kept alive (it
//! may extend one, as etcd does).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::mvcc::LeaseInfo;

/// Leader-local lease deadlines.
#[derive(Debug, Default)]
pub struct Lessor {
    state: Mutex<LessorState>,
}

#[derive(Debug, Default)]
struct LessorState {
    /// The term these deadlines belong to; a new term starts afresh.
    term: Option<u64>,
    deadlines: HashMap<i64, Instant>,
}

impl Lessor {
    /// Forgets every deadline when leadership moved to `term` (or away: `None`).
    pub fn observe_term(&self, term: Option<u64>) {
        let mut s = self.state.lock().expect("lessor lock poisoned");
        if s.term != term {
            s.term = term;
            s.deadlines.clear();
        }
    }

    /// Renews `lease` for a full TTL from `now`.
    pub fn keep_alive(&self, lease: &LeaseInfo, now: Instant) {
        let mut s = self.state.lock().expect("lessor lock poisoned");
        s.deadlines.insert(lease.id, now + ttl(lease));
    }

    /// Seconds left on `lease` (rounded up, as etcd reports), starting its clock if unseen.
    pub fn remaining(&self, lease: &LeaseInfo, now: Instant) -> i64 {
        let mut s = self.state.lock().expect("lessor lock poisoned");
        let deadline = *s.deadlines.entry(lease.id).or_insert(now + ttl(lease));
        let left = deadline.saturating_duration_since(now);
        left.as_secs() as i64 + i64::from(left.subsec_nanos() > 0)
    }

    /// The leases (from the full current set `leases`) whose deadline has passed. Unseen leases
    /// start their clock now; deadlines of leases that no longer exist are dropped.
    pub fn expired(&self, leases: &[LeaseInfo], now: Instant) -> Vec<i64> {
        let mut s = self.state.lock().expect("lessor lock poisoned");
        s.deadlines.retain(|id, _| leases.iter().any(|l| l.id == *id));
        leases
            .iter()
            .filter(|l| *s.deadlines.entry(l.id).or_insert(now + ttl(l)) <= now)
            .map(|l| l.id)
            .collect()
    }
}

fn ttl(lease: &LeaseInfo) -> Duration {
    Duration::from_secs(lease.ttl.max(1) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(id: i64, ttl: i64) -> LeaseInfo {
        LeaseInfo { id, ttl, keys: vec![] }
    }

    #[test]
    fn leases_expire_after_ttl_unless_kept_alive() {
        let l = Lessor::default();
        l.observe_term(Some(1));
        let t0 = Instant::now();
        let leases = [lease(1, 5), lease(2, 5)];
        assert!(l.expired(&leases, t0).is_empty());
        l.keep_alive(&leases[0], t0 + Duration::from_secs(4));
        assert_eq!(l.expired(&leases, t0 + Duration::from_secs(5)), vec![2]);
        assert_eq!(l.remaining(&leases[0], t0 + Duration::from_secs(5)), 4);
        assert_eq!(l.expired(&leases, t0 + Duration::from_secs(9)), vec![1, 2]);
    }

    #[test]
    fn a_new_term_grants_a_full_ttl() {
        let l = Lessor::default();
        l.observe_term(Some(1));
        let t0 = Instant::now();
        let leases = [lease(7, 2)];
        assert!(l.expired(&leases, t0).is_empty());
        l.observe_term(Some(2));
        // Under term 1 it would have expired at t0+2s; the new leader restarts the clock.
        assert!(l.expired(&leases, t0 + Duration::from_secs(3)).is_empty());
        assert_eq!(l.expired(&leases, t0 + Duration::from_secs(5)), vec![7]);
    }
}
