//! A test network's knobs: in-process cluster tests cut, drop or delay traffic between members
//! through a shared [`LinkFaults`], consulted before every raft message and every forwarded
//! request a member sends. Production members have none.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::NodeId;

/// What happens to messages on one directed link.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LinkFault {
    /// Every message is lost (the link is cut).
    pub cut: bool,
    /// Each message is lost with this probability (0.0 to 1.0).
    pub drop_rate: f64,
    /// Each message waits this long before it is sent.
    pub delay: Duration,
}

/// Faults on directed links between members, shared by every member of a test cluster.
#[derive(Debug)]
pub struct LinkFaults {
    links: Mutex<HashMap<(NodeId, NodeId), LinkFault>>,
    rng: Mutex<u64>,
}

/// A message the test network did not deliver, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// The link is cut: the peer looks unreachable (raft backs off before trying again).
    Cut,
    /// This one message was lost (`drop_rate`): a transient failure, retried at once, as a
    /// lost packet would be retransmitted.
    Lost,
}

impl Default for LinkFaults {
    /// Same as [`LinkFaults::new`]: a derived default would seed xorshift with 0, which stays 0
    /// forever and so drops every message of a lossy link.
    fn default() -> Self {
        Self::new()
    }
}

impl LinkFaults {
    /// A network with every link healthy.
    pub fn new() -> Self {
        Self { links: Mutex::default(), rng: Mutex::new(0x9e37_79b9_7f4a_7c15) }
    }

    /// Sets the fault on `from → to`.
    pub fn set(&self, from: NodeId, to: NodeId, fault: LinkFault) {
        self.links.lock().expect("faults lock poisoned").insert((from, to), fault);
    }

    /// Cuts both directions between every member of `a` and every member of `b`.
    pub fn partition(&self, a: &[NodeId], b: &[NodeId]) {
        for x in a {
            for y in b {
                let cut = LinkFault { cut: true, ..Default::default() };
                self.set(*x, *y, cut);
                self.set(*y, *x, cut);
            }
        }
    }

    /// Heals every link.
    pub fn heal(&self) {
        self.links.lock().expect("faults lock poisoned").clear();
    }

    /// Applies the fault on `from → to` to one message: waits out its delay, then says whether
    /// it is delivered.
    pub async fn pass(&self, from: NodeId, to: NodeId) -> Result<(), Dropped> {
        let fault = self.links.lock().expect("faults lock poisoned").get(&(from, to)).copied().unwrap_or_default();
        if !fault.delay.is_zero() {
            tokio::time::sleep(fault.delay).await;
        }
        if fault.cut {
            return Err(Dropped::Cut);
        }
        if fault.drop_rate > 0.0 && self.roll() < fault.drop_rate {
            return Err(Dropped::Lost);
        }
        Ok(())
    }

    /// A deterministic pseudo-random number in [0, 1) (xorshift), so runs are repeatable.
    fn roll(&self) -> f64 {
        let mut s = self.rng.lock().expect("faults lock poisoned");
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        (*s >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cuts_drops_and_heals() {
        let f = LinkFaults::default();
        assert_eq!(f.pass(1, 2).await, Ok(()));
        f.partition(&[1], &[2, 3]);
        assert_eq!(f.pass(1, 2).await, Err(Dropped::Cut));
        assert_eq!(f.pass(3, 1).await, Err(Dropped::Cut));
        assert_eq!(f.pass(2, 3).await, Ok(()));
        f.heal();
        assert_eq!(f.pass(1, 2).await, Ok(()));
        f.set(1, 2, LinkFault { drop_rate: 0.5, ..Default::default() });
        let mut dropped = 0;
        for _ in 0..1000 {
            dropped += usize::from(f.pass(1, 2).await == Err(Dropped::Lost));
        }
        assert!((350..650).contains(&dropped), "dropped {dropped} of 1000 at rate 0.5");
    }
}
