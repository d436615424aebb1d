//! What the nemesis does and when: the fault kinds, a seeded schedule that alternates faults
//! and healing, and the link cuts of each partition shape. Pure logic; `run` applies it.
//!
//! A worked example: `--time 45 --nemesis partition,kill --fault-secs 10 --heal-secs 8` with
//! the default 3 s warm-up gives two cycles (3 + 2 × 18 = 39 ≤ 45):
//!
//! ```text
//!  0 s  3 s        13 s     21 s        31 s     39 s      45 s
//!  |warm|  kill n2  | healed | partition | healed | (quiet) | final heal, final reads
//! ```
//!
//! The order of the nemeses is a seeded shuffle, redrawn each round, so a long run with all
//! nemeses covers each of them evenly.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

/// A small deterministic generator (SplitMix64): schedules and fault targets replay from
/// `--seed`, and the crate needs no RNG dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`; the modulo bias is irrelevant at these sizes).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// A kind of fault the nemesis injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Nemesis {
    /// Split the members into two random groups (a minority and a majority).
    Partition,
    /// Cut the current leader off from every other member.
    Isolate,
    /// Every member sees a majority, and no two members see the same one.
    Ring,
    /// `kill -9` one or two members; restart them on the same data dir when healing.
    Kill,
    /// SIGSTOP one member (the leader half of the time); SIGCONT when healing.
    Pause,
    /// Drop a random share of the packets between members.
    Lossy,
    /// Remove a member from the cluster; re-add it with a wiped data dir when healing.
    Membership,
}

impl Nemesis {
    /// Every nemesis, in the order `--nemesis all` names them.
    pub const ALL: [Nemesis; 7] = [
        Nemesis::Partition,
        Nemesis::Isolate,
        Nemesis::Ring,
        Nemesis::Kill,
        Nemesis::Pause,
        Nemesis::Lossy,
        Nemesis::Membership,
    ];

    /// The name used on the command line and in the timeline.
    pub fn name(self) -> &'static str {
        match self {
            Nemesis::Partition => "partition",
            Nemesis::Isolate => "isolate",
            Nemesis::Ring => "ring",
            Nemesis::Kill => "kill",
            Nemesis::Pause => "pause",
            Nemesis::Lossy => "lossy",
            Nemesis::Membership => "membership",
        }
    }

    /// Parses `all`, `none` or a comma-separated list of names (duplicates collapse).
    pub fn parse_list(s: &str) -> Result<Vec<Nemesis>, String> {
        let s = s.trim();
        if s == "none" || s.is_empty() {
            return Ok(Vec::new());
        }
        if s == "all" {
            return Ok(Nemesis::ALL.to_vec());
        }
        let mut out = BTreeSet::new();
        for part in s.split(',') {
            let part = part.trim();
            let n = Nemesis::ALL
                .into_iter()
                .find(|n| n.name() == part)
                .ok_or_else(|| {
                    let names: Vec<_> = Nemesis::ALL.iter().map(|n| n.name()).collect();
                    format!(
                        "unknown nemesis {part:?}: use all, none or some of {}",
                        names.join(",")
                    )
                })?;
            out.insert(n);
        }
        Ok(out.into_iter().collect())
    }
}

impl fmt::Display for Nemesis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How long each phase of a run lasts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    /// The whole workload phase (`--time`); the final heal and reads come after it.
    pub total: Duration,
    /// Quiet time before the first fault, so the cluster has a leader and some data.
    pub warmup: Duration,
    /// How long each fault stays in place.
    pub fault: Duration,
    /// How long the cluster runs healed after each fault.
    pub heal: Duration,
}

/// One fault cycle: the fault from `start` to `start + fault`, then healing for `heal`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub nemesis: Nemesis,
    /// Offset from the start of the workload.
    pub start: Duration,
    pub fault: Duration,
    pub heal: Duration,
}

/// As many fault/heal cycles as fit in `timing.total` after the warm-up, nemeses in a seeded
/// order reshuffled each round. An empty `nemeses` gives no cycles (a fault-free run); a
/// `total` too short for one cycle is an error naming the minimum.
pub fn schedule(nemeses: &[Nemesis], timing: &Timing, rng: &mut Rng) -> Result<Vec<Step>, String> {
    if nemeses.is_empty() {
        return Ok(Vec::new());
    }
    let cycle = timing.fault + timing.heal;
    if cycle.is_zero() {
        return Err("a fault cycle must last longer than 0 s".into());
    }
    let minimum = timing.warmup + cycle;
    if timing.total < minimum {
        return Err(format!(
            "--time {} s is too short for one fault cycle: it needs at least {} s \
             (warm-up {} s + fault {} s + heal {} s)",
            timing.total.as_secs_f64(),
            minimum.as_secs_f64(),
            timing.warmup.as_secs_f64(),
            timing.fault.as_secs_f64(),
            timing.heal.as_secs_f64()
        ));
    }
    let mut steps = Vec::new();
    let mut round: Vec<Nemesis> = Vec::new();
    let mut start = timing.warmup;
    while start + cycle <= timing.total {
        if round.is_empty() {
            round = nemeses.to_vec();
            rng.shuffle(&mut round);
            round.reverse(); // popped from the back
        }
        let nemesis = round.pop().expect("refilled above");
        steps.push(Step {
            nemesis,
            start,
            fault: timing.fault,
            heal: timing.heal,
        });
        start += cycle;
    }
    Ok(steps)
}

/// Unordered member pairs (`a < b`) whose traffic is dropped in both directions.
pub type Cuts = BTreeSet<(usize, usize)>;

/// Splits members `0..n` into two random groups, the smaller (minority) first.
pub fn random_halves(n: usize, rng: &mut Rng) -> Vec<Vec<usize>> {
    let mut members: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut members);
    let (small, large) = members.split_at(n / 2);
    let (mut small, mut large) = (small.to_vec(), large.to_vec());
    small.sort_unstable();
    large.sort_unstable();
    vec![small, large]
}

/// `who` alone, everybody else together.
pub fn isolate(n: usize, who: usize) -> Vec<Vec<usize>> {
    vec![vec![who], (0..n).filter(|&m| m != who).collect()]
}

/// Every pair of members that are in different groups.
pub fn cuts_between(groups: &[Vec<usize>]) -> Cuts {
    let mut cuts = Cuts::new();
    for (gi, g) in groups.iter().enumerate() {
        for h in &groups[gi + 1..] {
            for &a in g {
                for &b in h {
                    cuts.insert((a.min(b), a.max(b)));
                }
            }
        }
    }
    cuts
}

/// Jepsen's "majorities ring": each member sees (itself plus its connected peers) a majority,
/// and no two members see the same majority. Cuts are symmetric because TCP cannot carry a
/// one-way link: a dropped ACK kills the connection both ways.
///
/// With 5 members, member i keeps its ring neighbours i±1: views {4,0,1}, {0,1,2}, … With 3
/// a symmetric ring is the full mesh, so one random link is cut instead: for a cut 0–2 the
/// views are {0,1}, {0,1,2}, {1,2} — member 1 bridges two majorities that each lack a member.
pub fn majorities_ring(n: usize, rng: &mut Rng) -> Cuts {
    let mut cuts = Cuts::new();
    if n < 3 {
        return cuts;
    }
    // A random relabelling, so the ring's shape lands on different members each time.
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    if n == 3 {
        let (a, b) = (order[0], order[2]);
        cuts.insert((a.min(b), a.max(b)));
        return cuts;
    }
    let majority = n / 2 + 1;
    let reach = (majority - 1).div_ceil(2); // neighbours kept on each side
    for i in 0..n {
        for j in i + 1..n {
            let d = j - i;
            if d.min(n - d) > reach {
                let (a, b) = (order[i], order[j]);
                cuts.insert((a.min(b), a.max(b)));
            }
        }
    }
    cuts
}

/// What each member can reach (itself included) under `cuts`.
pub fn views(n: usize, cuts: &Cuts) -> Vec<BTreeSet<usize>> {
    (0..n)
        .map(|a| {
            (0..n)
                .filter(|&b| a == b || !cuts.contains(&(a.min(b), a.max(b))))
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn timing(total: u64) -> Timing {
        Timing {
            total: secs(total),
            warmup: secs(3),
            fault: secs(10),
            heal: secs(8),
        }
    }

    #[test]
    fn schedule_fits_whole_cycles_and_alternates() {
        let steps = schedule(
            &[Nemesis::Partition, Nemesis::Kill],
            &timing(45),
            &mut Rng::new(1),
        )
        .unwrap();
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[0].start, secs(3));
        assert_eq!(steps[1].start, secs(21));
        let last = steps.last().unwrap();
        assert!(last.start + last.fault + last.heal <= secs(45));
        let kinds: BTreeSet<_> = steps.iter().map(|s| s.nemesis).collect();
        assert_eq!(kinds.len(), 2, "one round covers every nemesis once");
    }

    #[test]
    fn schedule_covers_every_nemesis_evenly_and_replays_from_the_seed() {
        let all = Nemesis::ALL.to_vec();
        let a = schedule(&all, &timing(600), &mut Rng::new(7)).unwrap();
        let b = schedule(&all, &timing(600), &mut Rng::new(7)).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), (600 - 3) / 18);
        for n in all {
            let count = a.iter().filter(|s| s.nemesis == n).count();
            assert!((4..=5).contains(&count), "{n}: {count}");
        }
    }

    #[test]
    fn schedule_rejects_a_run_too_short_and_allows_no_nemesis() {
        let err = schedule(&[Nemesis::Kill], &timing(20), &mut Rng::new(1)).unwrap_err();
        assert!(err.contains("at least 21 s"), "{err}");
        assert!(schedule(&[], &timing(5), &mut Rng::new(1))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn parses_nemesis_lists() {
        assert_eq!(Nemesis::parse_list("all").unwrap().len(), 7);
        assert!(Nemesis::parse_list("none").unwrap().is_empty());
        assert_eq!(
            Nemesis::parse_list("kill, partition,kill").unwrap(),
            vec![Nemesis::Partition, Nemesis::Kill]
        );
        assert!(Nemesis::parse_list("flood")
            .unwrap_err()
            .contains("unknown nemesis"));
    }

    #[test]
    fn halves_put_a_minority_against_a_majority() {
        let mut rng = Rng::new(3);
        let mut alone = BTreeSet::new();
        for _ in 0..50 {
            let g = random_halves(3, &mut rng);
            assert_eq!((g[0].len(), g[1].len()), (1, 2));
            alone.insert(g[0][0]);
            let cuts = cuts_between(&g);
            assert_eq!(cuts.len(), 2);
            let v = views(3, &cuts);
            assert_eq!(v[g[0][0]].len(), 1);
        }
        assert_eq!(alone.len(), 3, "every member gets isolated sometimes");
        let g = random_halves(5, &mut rng);
        assert_eq!((g[0].len(), g[1].len()), (2, 3));
        assert_eq!(cuts_between(&g).len(), 6);
    }

    #[test]
    fn isolate_cuts_every_link_of_one_member() {
        let cuts = cuts_between(&isolate(3, 1));
        assert_eq!(cuts, Cuts::from([(0, 1), (1, 2)]));
        let v = views(3, &cuts);
        assert_eq!(v[1], BTreeSet::from([1]));
        assert_eq!(v[0], BTreeSet::from([0, 2]));
    }

    #[test]
    fn majorities_ring_gives_every_member_a_different_majority() {
        let mut rng = Rng::new(11);
        for n in [3, 5, 7] {
            for _ in 0..20 {
                let cuts = majorities_ring(n, &mut rng);
                assert!(!cuts.is_empty(), "n={n}");
                let v = views(n, &cuts);
                for (m, view) in v.iter().enumerate() {
                    assert!(view.len() > n / 2, "n={n}: member {m} sees {view:?}");
                    assert!(view.len() < n || n == 3, "n={n}: member {m} sees everybody");
                }
                let distinct: BTreeSet<_> = v.iter().collect();
                assert_eq!(distinct.len(), n, "n={n}: views {v:?}");
            }
        }
    }

    #[test]
    fn rng_is_roughly_uniform() {
        let mut rng = Rng::new(5);
        let mut counts = [0; 4];
        for _ in 0..4000 {
            counts[rng.below(4)] += 1;
        }
        assert!(
            counts.iter().all(|&c| (850..1150).contains(&c)),
            "{counts:?}"
        );
        assert!((0..1000)
            .map(|_| rng.unit())
            .all(|u| (0.0..1.0).contains(&u)));
    }
}
