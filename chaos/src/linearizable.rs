//! Linearizability of register histories: a Wing–Gong search with Lowe's memoization, one
//! register (etcd key) at a time.
//!
//! # The model
//!
//! Each key is an independent register whose initial value is "absent". A read returns the
//! current value; a write sets it; a value compare-and-set sets `new` iff the current value is
//! `expected` and otherwise executes without effect. Outcomes (see [`crate::history`]):
//!
//! | record                     | effect                          | constraint                        |
//! |----------------------------|---------------------------------|-----------------------------------|
//! | read `ok` → v              | none                            | current == v                      |
//! | write `ok`                 | current := value                | –                                 |
//! | cas `ok`, succeeded        | current := new                  | current == expected               |
//! | cas `ok`, compare failed   | none                            | current != expected               |
//! | anything `fail`            | none (never executed)           | none — dropped                    |
//! | read `info`                | none                            | none — dropped                    |
//! | write `info`               | current := value, or never      | –                                 |
//! | cas `info`                 | if current == expected then new | – (or never)                      |
//!
//! A completed operation takes effect at one instant between its invocation and completion;
//! an `info` one at any instant after its invocation, or never (its completion time is +∞, so
//! the search may always defer it past the end, where nothing observes it). Two operations
//! whose windows touch (one completes at the very nanosecond the other is invoked) count as
//! concurrent: the checker never invents an order the clock did not show.
//!
//! # The search
//!
//! Invocations and completions of the completed operations are laid out as one time-ordered
//! list. The search repeatedly tries to linearize, in the current register state, an
//! operation whose invocation comes before the first remaining completion (any such op could
//! have taken effect first); on success it removes the op's two entries and restarts from the
//! head; when it reaches a completion whose op is not linearized yet, that op should have
//! taken effect already, so it backtracks. A cache of (set of linearized ops, register state)
//! prunes every configuration already explored (Lowe's improvement to Wing & Gong). An empty
//! list means every completed op is linearized: the `info` ops left may never have happened,
//! so the history is linearizable. On top of that (each rule is argued where it is coded,
//! and a brute-force oracle in the tests checks them on thousands of random histories):
//!
//! * reads and failed CASes legal right now are linearized at once, without alternatives;
//! * `info` ops are tried "just in time": only after the completed candidates, and only where
//!   a candidate would notice them; a linearization that used one for nothing is skipped;
//! * values nobody observes are merged into one, and cached sets are stored as a window of
//!   O(concurrency) words rather than a bitset of the whole history.
//!
//! Before the search, `info` writes and CASes that nothing could have observed are dropped
//! (no later read returned the value, no CAS expected it, no failed CAS could have been
//! helped by it): that is exact, and it keeps the many timed-out writes of a partition out of
//! the search.
//!
//! The search is exponential in the worst case; a [`Budget`] of steps, time and cache memory
//! bounds it per key, and exceeding it reports [`Verdict::Unknown`] — never a guess. Proving
//! a history *not* linearizable means exhausting every configuration up to the violation, so
//! invalid histories cost far more than valid ones of the same size; measured limits are in
//! the crate's `capacity` test (`cargo test -p chaos --test linearizable_prop capacity --
//! --ignored --nocapture`). Keep per-key concurrency low (≤ 10–20 clients per key) and spread
//! the workload over many keys.
//!
//! # Minimal sub-histories
//!
//! A non-linearizable key is reduced to a small set of its operations that is *still* not
//! linearizable and whose non-linearizability *implies* the full history's. Arbitrary removal
//! would not do that: dropping the only write of "x" makes a perfectly good read of "x" look
//! like a phantom. So the reduction only uses sound steps:
//! 1. cut the history at the earliest instant where it already fails (linearizability is
//!    prefix-closed): the witness is a prefix of the history, so an op still running at the
//!    cut keeps only its invocation record and counts as `info`;
//! 2. drop what is known to have had no effect: `fail`ed ops (even if they failed after the
//!    cut), `info` reads, `info` effects nothing observed;
//! 3. delta-debug removals of reads and failed CASes (pure observers: a linearization of the
//!    whole is one of the part), and of writes / CASes whose value nothing that could come
//!    after them observed.
//!
//! Minimization has its own time limit ([`Budget::minimize_time`]); when it runs out, the
//! witness is still sound but may be larger, and the explanation says so.
//!
//! Value-based CAS only: a CAS on `mod_revision` needs a model of the store-wide revision
//! counter and is not modelled here.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::history::{History, Op, Operation, Outcome, Record};
use crate::Result;

/// Per-key limits of the search; exceeding any yields [`Verdict::Unknown`] for that key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// Search steps (one step = one candidate tried, or one configuration left).
    pub max_steps: u64,
    /// Wall-clock time of the search.
    pub max_time: Duration,
    /// Approximate memory of the (linearized set, state) cache.
    pub max_cache_bytes: usize,
    /// Extra wall-clock time spent minimizing an invalid key's sub-history.
    pub minimize_time: Duration,
}

impl Default for Budget {
    /// 10 s, 500 million steps and 512 MiB of cache per key, plus 5 s to minimize.
    fn default() -> Budget {
        Budget {
            max_steps: 500_000_000,
            max_time: Duration::from_secs(10),
            max_cache_bytes: 512 << 20,
            minimize_time: Duration::from_secs(5),
        }
    }
}

impl Budget {
    /// A deterministic budget of `max_steps` steps (time and memory limits stay generous).
    pub fn steps(max_steps: u64) -> Budget {
        Budget {
            max_steps,
            ..Budget::default()
        }
    }
}

/// The checker's answer for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A linearization exists.
    Valid,
    /// None exists; `minimal_subhistory` (records from the input) is a small witness that is
    /// itself not linearizable.
    Invalid {
        key: String,
        minimal_subhistory: Vec<Record>,
        explanation: String,
    },
    /// The budget ran out before an answer.
    Unknown { key: String, reason: String },
}

/// What the checker found for one key, with the effort it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyReport {
    /// The register.
    pub key: String,
    /// Operations on the key in the history (all outcomes).
    pub operations: usize,
    /// Operations the search had to place (after dropping `fail`s, `info` reads and
    /// unobservable `info` writes).
    pub searched: usize,
    /// Search steps of the main check (minimization not included).
    pub steps: u64,
    /// Wall-clock time, minimization included.
    pub elapsed: Duration,
    /// The answer.
    pub verdict: Verdict,
}

/// Pairs the history's records and checks every key; reports come sorted by key.
pub fn check_history(history: &History, budget: &Budget) -> Result<Vec<KeyReport>> {
    Ok(check_operations(&history.operations()?, budget))
}

/// Checks every key of already-paired operations, several keys in parallel; reports come
/// sorted by key.
pub fn check_operations(ops: &[Operation], budget: &Budget) -> Vec<KeyReport> {
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in ops {
        by_key.entry(&op.key).or_default().push(op);
    }
    let groups: Vec<(&str, Vec<&Operation>)> = by_key.into_iter().collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(groups.len())
        .max(1);
    let next = AtomicUsize::new(0);
    let reports: Mutex<Vec<Option<KeyReport>>> = Mutex::new(vec![None; groups.len()]);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((key, ops)) = groups.get(i) else {
                    break;
                };
                let report = check_key_refs(key, ops, budget);
                reports.lock().expect("no panics while holding the lock")[i] = Some(report);
            });
        }
    });
    reports
        .into_inner()
        .expect("workers finished")
        .into_iter()
        .map(|r| r.expect("every key checked"))
        .collect()
}

/// Checks the operations of one key (all of `ops` must be on `key`).
pub fn check_key(key: &str, ops: &[Operation], budget: &Budget) -> KeyReport {
    let refs: Vec<&Operation> = ops.iter().collect();
    check_key_refs(key, &refs, budget)
}

fn check_key_refs(key: &str, ops: &[&Operation], budget: &Budget) -> KeyReport {
    let started = Instant::now();
    debug_assert!(ops.iter().all(|op| op.key == key), "ops of another key");
    let relevant = relevant_ops(ops);
    let (result, steps) = search(&prepare(&relevant, None).ops, budget, false);
    let verdict = match result {
        SearchResult::Linearizable => Verdict::Valid,
        SearchResult::OutOfBudget(why) => Verdict::Unknown {
            key: key.to_owned(),
            reason: format!(
                "{why} after {steps} steps over {} operations; raise the budget or shorten the \
                 run",
                relevant.len()
            ),
        },
        SearchResult::Violation { .. } => {
            let minimized = minimize(&relevant, budget);
            let witness: Vec<&Operation> = minimized.ops.iter().collect();
            let mut minimal_subhistory: Vec<Record> = witness
                .iter()
                .flat_map(|op| op.records())
                .cloned()
                .collect();
            minimal_subhistory.sort_by_key(|r| r.time_ns);
            Verdict::Invalid {
                key: key.to_owned(),
                explanation: explain(key, &witness, relevant.len(), &minimized, budget),
                minimal_subhistory,
            }
        }
    };
    KeyReport {
        key: key.to_owned(),
        operations: ops.len(),
        searched: relevant.len(),
        steps,
        elapsed: started.elapsed(),
        verdict,
    }
}

// ---------------------------------------------------------------------------------------
// Preparing operations for the search.

/// What an op does to the register; values are interned (0 = absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Read(u32),
    Write(u32),
    CasSucceeded {
        expected: u32,
        new: u32,
    },
    CasFailed {
        expected: u32,
    },
    /// An `info` CAS: takes effect iff the compare holds at its (unknown) instant.
    MaybeCas {
        expected: u32,
        new: u32,
    },
}

impl Step {
    /// Whether the step only looks (a read or a failed compare): it never changes the state.
    fn is_observer(self) -> bool {
        matches!(self, Step::Read(_) | Step::CasFailed { .. })
    }

    /// The state after applying the step, or `None` if the step cannot happen in `state`.
    fn apply(self, state: u32) -> Option<u32> {
        match self {
            Step::Read(v) => (state == v).then_some(state),
            Step::Write(v) => Some(v),
            Step::CasSucceeded { expected, new } => (state == expected).then_some(new),
            Step::CasFailed { expected } => (state != expected).then_some(state),
            Step::MaybeCas { expected, new } => Some(if state == expected { new } else { state }),
        }
    }
}

/// An operation as the search sees it: a step and a window `[call, ret]` (`ret` = +∞ for
/// `info`), and its index in the ops it was prepared from.
#[derive(Debug, Clone, Copy)]
struct SearchOp {
    step: Step,
    call: u64,
    ret: u64,
    src: usize,
}

const INFINITY: u64 = u64::MAX;

/// When `op` completed, +∞ for unknown outcomes.
fn ret_of(op: &Operation) -> u64 {
    match (op.outcome, op.complete_ns) {
        (Outcome::Info, _) | (_, None) => INFINITY,
        (_, Some(t)) => t.min(INFINITY - 1),
    }
}

/// The value an op may write, if it has an effect.
fn written_value(op: &Operation) -> Option<&str> {
    match &op.op {
        Op::Write { value } => Some(value),
        Op::Cas {
            new,
            succeeded: Some(true) | None,
            ..
        } => Some(new),
        _ => None,
    }
}

/// Whether `op` would notice a write of `value` that preceded it (directly, or — for a CAS
/// whose compare failed — by the register not holding its `expected`).
fn observes(op: &Operation, value: &str) -> bool {
    match &op.op {
        Op::Read { value: Some(v) } => v == value,
        Op::Read { value: None } => false,
        Op::Write { .. } => false,
        Op::Cas {
            expected,
            succeeded,
            ..
        } => expected == value || (op.outcome == Outcome::Ok && *succeeded == Some(false)),
    }
}

/// Whether removing the effectful `x` from `ops` keeps every linearization of `ops` valid
/// for the rest: nothing that may be linearized after `x` could tell that `x` wrote.
fn unobserved(x: &Operation, ops: &[&Operation]) -> bool {
    let Some(value) = written_value(x) else {
        return false;
    };
    if let Op::Cas { expected, .. } = &x.op {
        if expected == value {
            return false; // x observes its own value
        }
    }
    ops.iter()
        .all(|o| std::ptr::eq(*o, x) || ret_of(o) < x.invoke_ns || !observes(o, value))
}

/// The ops the search must place: no `fail`s (never executed), no `info` reads (observed
/// nothing), no `info` effects nothing could observe (deferring them past the end is always
/// allowed, and nothing could tell if they happened earlier).
fn relevant_ops<'a>(ops: &[&'a Operation]) -> Vec<&'a Operation> {
    let mut kept: Vec<&Operation> = ops
        .iter()
        .copied()
        .filter(|op| match op.outcome {
            Outcome::Ok => true,
            Outcome::Fail => false,
            Outcome::Info => !matches!(op.op, Op::Read { .. }),
        })
        .collect();
    // `unobserved` for every info op at once: per value, the latest completion of an op
    // observing it; and the latest completion of a failed CAS. Dropping an info CAS may make
    // the info writes of its `expected` unobservable, hence the loop.
    loop {
        let mut latest_observer: HashMap<&str, u64> = HashMap::new();
        let mut latest_failed_cas = None;
        for op in &kept {
            let observed = match &op.op {
                Op::Read { value: Some(v) } => Some(v.as_str()),
                Op::Cas {
                    expected,
                    succeeded,
                    ..
                } => {
                    if op.outcome == Outcome::Ok && *succeeded == Some(false) {
                        latest_failed_cas = latest_failed_cas.max(Some(ret_of(op)));
                    }
                    Some(expected.as_str())
                }
                _ => None,
            };
            if let Some(v) = observed {
                let latest = latest_observer.entry(v).or_insert(0);
                *latest = (*latest).max(ret_of(op));
            }
        }
        let before = kept.len();
        kept.retain(|op| {
            if op.outcome != Outcome::Info {
                return true;
            }
            let Some(value) = written_value(op) else {
                return true;
            };
            if matches!(&op.op, Op::Cas { expected, .. } if expected == value) {
                return false; // sets what is already there: no effect either way
            }
            let may_be_seen = |latest: Option<u64>| latest.is_some_and(|t| t >= op.invoke_ns);
            may_be_seen(latest_observer.get(value).copied()) || may_be_seen(latest_failed_cas)
        });
        if kept.len() == before {
            break;
        }
    }
    kept.sort_by_key(|op| op.invoke_ns);
    kept
}

/// The search input: ops with interned values (see [`prepare`]).
struct Prepared<'a> {
    ops: Vec<SearchOp>,
    /// Observed values: id `i + 2` is `values[i]`.
    values: Vec<&'a str>,
}

/// The register's initial value.
const ABSENT: u32 = 0;
/// Every value that no read returned and no CAS expected: nothing can tell them apart.
const UNOBSERVED: u32 = 1;

impl Prepared<'_> {
    fn value(&self, id: u32) -> String {
        match id {
            ABSENT => "absent".to_owned(),
            UNOBSERVED => "holding a value no operation observed".to_owned(),
            id => format!("{:?}", self.values[id as usize - 2]),
        }
    }
}

/// Builds the search input. With `cut = Some(t)`: only ops invoked by `t`; those still
/// running at `t` become unknown (reads dropped, effects may happen or not).
///
/// Values nobody observes (no read returned them, no CAS expected them) all become one value,
/// [`UNOBSERVED`]: the register's behaviour only depends on which observed value it holds,
/// if any, so this is exact — and it lets the cache merge the configurations that differ
/// only in which of several concurrent, never-read writes came last.
fn prepare<'a>(ops: &[&'a Operation], cut: Option<u64>) -> Prepared<'a> {
    prepare_with(ops, cut, true)
}

/// [`prepare`], optionally keeping every value distinct (for explanations a person reads).
fn prepare_with<'a>(ops: &[&'a Operation], cut: Option<u64>, merge: bool) -> Prepared<'a> {
    let mut observed: HashMap<&'a str, u32> = HashMap::new();
    let mut values: Vec<&'a str> = Vec::new();
    for op in ops {
        let seen: &[&String] = match &op.op {
            Op::Read { value: Some(v) } => &[v],
            Op::Cas { expected, .. } if merge => &[expected],
            Op::Cas { expected, new, .. } => &[expected, new],
            Op::Write { value } if !merge => &[value],
            _ => continue,
        };
        for v in seen {
            observed.entry(v.as_str()).or_insert_with(|| {
                values.push(v.as_str());
                values.len() as u32 + 1
            });
        }
    }
    let id = |v: &str| -> u32 { observed.get(v).copied().unwrap_or(UNOBSERVED) };
    let mut out = Vec::with_capacity(ops.len());
    for (src, op) in ops.iter().enumerate() {
        let mut ret = ret_of(op);
        if let Some(t) = cut {
            if op.invoke_ns > t {
                continue;
            }
            if ret > t {
                ret = INFINITY;
            }
        }
        let pending = ret == INFINITY;
        let step = match &op.op {
            Op::Read { .. } if pending => continue,
            Op::Read { value } => Step::Read(value.as_deref().map_or(ABSENT, id)),
            Op::Write { value } => Step::Write(id(value)),
            Op::Cas { expected, new, .. } if pending => Step::MaybeCas {
                expected: id(expected),
                new: id(new),
            },
            Op::Cas {
                expected,
                new,
                succeeded,
            } => {
                if *succeeded == Some(true) {
                    Step::CasSucceeded {
                        expected: id(expected),
                        new: id(new),
                    }
                } else {
                    Step::CasFailed {
                        expected: id(expected),
                    }
                }
            }
        };
        out.push(SearchOp {
            step,
            call: op.invoke_ns,
            ret,
            src,
        });
    }
    Prepared { ops: out, values }
}

// ---------------------------------------------------------------------------------------
// The search.

#[derive(Debug)]
enum SearchResult {
    Linearizable,
    /// Not linearizable; `longest` is the deepest legal partial linearization reached (indices
    /// into the search input) and `state` the register after it.
    Violation {
        longest: Vec<usize>,
        state: u32,
    },
    OutOfBudget(String),
}

const NIL: u32 = u32::MAX;

/// A hasher for keys that are already good 64-bit hashes.
#[derive(Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The set of explored (linearized set, state) configurations. Sets are stored compactly
/// (see [`search`]) in one arena, chained per hash.
struct Cache {
    heads: HashMap<u64, u32, BuildHasherDefault<PreHashed>>,
    entries: Vec<CacheEntry>,
    arena: Vec<u64>,
}

struct CacheEntry {
    state: u32,
    /// The next entry with the same hash.
    next: u32,
    start: usize,
    len: usize,
}

impl Cache {
    fn new() -> Cache {
        Cache {
            heads: HashMap::default(),
            entries: Vec::new(),
            arena: Vec::new(),
        }
    }

    /// Inserts; `false` if it was already there.
    fn insert(&mut self, hash: u64, set: &[u64], state: u32) -> bool {
        let head = self.heads.get(&hash).copied().unwrap_or(NIL);
        let mut k = head;
        while k != NIL {
            let e = &self.entries[k as usize];
            if e.state == state && self.arena[e.start..e.start + e.len] == *set {
                return false;
            }
            k = e.next;
        }
        self.heads.insert(hash, self.entries.len() as u32);
        self.entries.push(CacheEntry {
            state,
            next: head,
            start: self.arena.len(),
            len: set.len(),
        });
        self.arena.extend_from_slice(set);
        true
    }

    fn bytes(&self) -> usize {
        // arena + entry + hash-map slot (key, value, control byte, load-factor slack).
        self.arena.len() * 8 + self.entries.len() * (std::mem::size_of::<CacheEntry>() + 24)
    }
}

/// The doubly linked list of call/return entries: node `2i` calls op `i`, `2i + 1` returns
/// it, `head` is a sentinel. Lifting an op unlinks both of its nodes; unlifting in reverse
/// order restores them (dancing links).
struct Entries {
    next: Vec<u32>,
    prev: Vec<u32>,
    head: u32,
}

impl Entries {
    fn new(ops: &[SearchOp]) -> Entries {
        let mut order: Vec<(u64, u8, u32)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            // Calls sort before returns at the same instant: touching windows are concurrent.
            order.push((op.call, 0, 2 * i as u32));
            order.push((op.ret, 1, 2 * i as u32 + 1));
        }
        order.sort_unstable();
        let head = 2 * ops.len() as u32;
        let mut next = vec![NIL; ops.len() * 2 + 1];
        let mut prev = vec![NIL; ops.len() * 2 + 1];
        let mut last = head;
        for &(_, _, node) in &order {
            next[last as usize] = node;
            prev[node as usize] = last;
            last = node;
        }
        Entries { next, prev, head }
    }

    fn unlink(&mut self, x: u32) {
        let (p, n) = (self.prev[x as usize], self.next[x as usize]);
        self.next[p as usize] = n;
        if n != NIL {
            self.prev[n as usize] = p;
        }
    }

    fn relink(&mut self, x: u32) {
        let (p, n) = (self.prev[x as usize], self.next[x as usize]);
        self.next[p as usize] = x;
        if n != NIL {
            self.prev[n as usize] = x;
        }
    }

    fn lift(&mut self, op: usize) {
        self.unlink(2 * op as u32);
        self.unlink(2 * op as u32 + 1);
    }

    fn unlift(&mut self, op: usize) {
        self.relink(2 * op as u32 + 1);
        self.relink(2 * op as u32);
    }
}

/// A step of the search: `op` was linearized in `state`, with `low`/`high` as they were.
struct Frame {
    op: usize,
    state: u32,
    low: usize,
    high: usize,
    /// Taken without alternatives (a forced observer): backtracking passes straight through.
    forced: bool,
    /// For an `info` op: its position among the configuration's `info` choices.
    choice: Option<usize>,
}

/// Whether linearizing `next` now is dominated by a configuration without the `info` op
/// that last changed the state.
///
/// Say an `info` op X moved the register from p to v, only no-op steps Z… followed (each also
/// a no-op in p), and `next` would yield the same state from p as from v — e.g. X is a timed
/// out write and `next` overwrites it. Then "X, Z…, next" reaches the same state as "Z…,
/// next" with X still unused, and an unused `info` op can always be used later or never:
/// the configuration without X is at least as good, and the search reaches it too (X's
/// completion is at +∞, so dropping X changes no op's eligibility). Without this rule every
/// `info` op nobody observed doubles the configurations to explore once the search must
/// backtrack across it.
fn redundant(ops: &[SearchOp], stack: &[Frame], state: u32, next: usize) -> bool {
    let Some(changed) = stack.iter().rposition(|f| f.state != state) else {
        return false;
    };
    let x = &stack[changed];
    let before = x.state;
    ops[x.op].ret == INFINITY
        && ops[next].step.apply(before) == ops[next].step.apply(state)
        && stack[changed + 1..]
            .iter()
            .all(|z| ops[z.op].step.apply(before) == Some(before))
}

/// The `info` ops, indexed by what they can do, for picking the ones worth trying.
///
/// An `info` op is only worth linearizing where a candidate would notice it right away: be
/// legal afterwards, end differently than without it, and not be a no-op either way. If a
/// successful continuation starts with `info` op X, look at the first op after it that
/// notices X: every op in between is a no-op with or without X, so X can move past them (its
/// completion is at +∞), and the continuation no longer starts with X; if nothing ever
/// notices X, X can be dropped altogether. A noticing `info` op that applies must in turn be
/// noticed, or be dropped likewise; one that merely stops applying is dropped. So X is worth
/// trying only if a completed candidate waits for X's value (or for any change), directly or
/// through a chain of `info` CASes. This also keeps the many `info` ops of a partition, which
/// stay candidates forever, from being rescanned at every step.
struct InfoOps {
    /// `info` writes by the value they write.
    writes: HashMap<u32, Vec<usize>>,
    /// `info` CASes by their expected value.
    cases_by_expected: HashMap<u32, Vec<usize>>,
    /// `info` CASes by the value they set.
    cases_by_new: HashMap<u32, Vec<usize>>,
    /// All `info` ops.
    all: std::ops::Range<usize>,
}

/// What the completed candidates of a configuration would notice.
struct Wanted {
    /// Any change of the value (a failed CAS expecting the current value is waiting).
    any: bool,
    /// Values some read or successful CAS is waiting for (sorted).
    values: Vec<u32>,
    /// Candidates are the ops invoked up to here: the first remaining completion.
    horizon: u64,
}

impl InfoOps {
    fn new(ops: &[SearchOp], all: std::ops::Range<usize>) -> InfoOps {
        let mut info = InfoOps {
            writes: HashMap::new(),
            cases_by_expected: HashMap::new(),
            cases_by_new: HashMap::new(),
            all: all.clone(),
        };
        for i in all {
            match ops[i].step {
                Step::Write(v) => info.writes.entry(v).or_default().push(i),
                Step::MaybeCas { expected, new } => {
                    info.cases_by_expected.entry(expected).or_default().push(i);
                    info.cases_by_new.entry(new).or_default().push(i);
                }
                _ => unreachable!("only writes and CASes can be of unknown outcome here"),
            }
        }
        info
    }

    /// The `info` ops worth trying in `state`, in a fixed order (so backtracking can resume).
    fn choices(
        &self,
        ops: &[SearchOp],
        wanted: &Wanted,
        state: u32,
        is_pending: impl Fn(usize) -> bool,
    ) -> Vec<usize> {
        let candidate = |i: usize| is_pending(i) && ops[i].call <= wanted.horizon;
        let changes = |i: usize| ops[i].step.apply(state).is_some_and(|v| v != state);
        if wanted.any {
            return self
                .all
                .clone()
                .filter(|&i| candidate(i) && changes(i))
                .collect();
        }
        // Values wanted directly, or through info CASes that would turn them into wanted ones.
        let mut values = wanted.values.clone();
        let mut i = 0;
        while i < values.len() {
            for &m in self.cases_by_new.get(&values[i]).into_iter().flatten() {
                if let Step::MaybeCas { expected, .. } = ops[m].step {
                    if candidate(m) && !values.contains(&expected) {
                        values.push(expected);
                    }
                }
            }
            i += 1;
        }
        let mut out: Vec<usize> = values
            .iter()
            .flat_map(|v| self.writes.get(v).into_iter().flatten().copied())
            .chain(
                self.cases_by_expected
                    .get(&state)
                    .into_iter()
                    .flatten()
                    .copied()
                    .filter(|&m| matches!(ops[m].step, Step::MaybeCas { new, .. } if values.contains(&new))),
            )
            .filter(|&i| candidate(i) && changes(i))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// Wing–Gong search with memoization; returns the result and the steps taken. With
/// `track_longest`, a violation reports the deepest partial linearization (costs a copy of
/// the stack per new depth record, so only for small inputs).
///
/// Refinements over the textbook loop:
/// * **Forced observers.** A read or failed CAS that is legal in the current state and may
///   take effect now is linearized at once, with no alternatives tried: it does not change
///   the state, and any linearization that places it later can place it now instead (every
///   op it would jump over completes after it was invoked). Without this, k concurrent reads
///   of the current value cost 2^k configurations.
/// * **`info` ops just in time.** They are kept out of the call/return list and tried after
///   the completed candidates, and only where something would notice them (see
///   [`InfoOps`]); a configuration that used one needlessly is skipped (see [`redundant`]).
/// * **Compact sets.** Ops are numbered by invocation, completed ones first; a linearized
///   set is stored as (first word with an unlinearized completed op, the words from there to
///   the last linearized completed op, the bits of the `info` ops). Everything older than the
///   window is linearized, so a cache entry costs O(concurrency), not O(history).
fn search(input: &[SearchOp], budget: &Budget, track_longest: bool) -> (SearchResult, u64) {
    let started = Instant::now();
    let mut order: Vec<usize> = (0..input.len()).collect();
    order.sort_by_key(|&i| (input[i].ret == INFINITY, input[i].call));
    let ops: Vec<SearchOp> = order.iter().map(|&i| input[i]).collect();
    let definite = ops.iter().take_while(|o| o.ret != INFINITY).count();
    let info = InfoOps::new(&ops, definite..ops.len());
    let definite_words = definite.div_ceil(64);
    let words = definite_words + (ops.len() - definite).div_ceil(64);
    // Bit of op `i`: completed ops from bit 0, info ops from word `definite_words` on.
    let bit_of = |i: usize| {
        if i < definite {
            i
        } else {
            definite_words * 64 + i - definite
        }
    };
    let zobrist: Vec<u64> = (0..ops.len() as u64).map(|i| splitmix64(i + 1)).collect();
    let mut entries = Entries::new(&ops[..definite]);
    let head = entries.head as usize;
    let mut cache = Cache::new();
    let mut set = vec![0u64; words];
    let is_set = |set: &[u64], i: usize| set[bit_of(i) / 64] & (1 << (bit_of(i) % 64)) != 0;
    let flip = |set: &mut [u64], i: usize| set[bit_of(i) / 64] ^= 1 << (bit_of(i) % 64);
    let mut set_hash = 0u64;
    let mut low = 0usize; // the first unlinearized completed op
    let mut high = 0usize; // one past the last linearized completed op
    let mut stack: Vec<Frame> = Vec::new();
    let mut state = ABSENT;
    let mut longest: (Vec<usize>, u32) = (Vec::new(), 0);
    let mut steps = 0u64;
    let mut key: Vec<u64> = Vec::new();

    // Where the scan of the current configuration stands.
    enum Scan {
        /// Just arrived: look for a forced observer.
        Fresh,
        /// Scanning completed candidates from this list entry.
        Completed(u32),
        /// Trying `info` choices from this position.
        Info(Vec<usize>, usize),
    }
    let mut scan = Scan::Fresh;

    macro_rules! tick {
        () => {
            steps += 1;
            if steps > budget.max_steps {
                let why = format!("step budget ({}) exhausted", budget.max_steps);
                return (SearchResult::OutOfBudget(why), steps);
            }
            if steps.is_multiple_of(1024) && started.elapsed() > budget.max_time {
                let why = format!("time budget ({:?}) exhausted", budget.max_time);
                return (SearchResult::OutOfBudget(why), steps);
            }
        };
    }

    loop {
        if entries.next[head] == NIL {
            // Every completed op is linearized; the `info` ops left may never have happened.
            return (SearchResult::Linearizable, steps);
        }
        tick!();
        // Pick the next op to try here: (op, forced, info choice), or find this dead.
        let mut take: Option<(usize, bool, Option<usize>)> = None;
        match &mut scan {
            Scan::Fresh => {
                let mut e = entries.next[head];
                while e != NIL && e.is_multiple_of(2) {
                    let op = e as usize / 2;
                    if ops[op].step.is_observer() && ops[op].step.apply(state).is_some() {
                        take = Some((op, true, None));
                        break;
                    }
                    e = entries.next[e as usize];
                }
                if take.is_none() {
                    scan = Scan::Completed(entries.next[head]);
                    continue;
                }
            }
            Scan::Completed(entry) => {
                let e = *entry;
                if e.is_multiple_of(2) {
                    let op = e as usize / 2;
                    *entry = entries.next[e as usize];
                    if ops[op].step.apply(state).is_some() && !redundant(&ops, &stack, state, op) {
                        take = Some((op, false, None));
                    } else {
                        continue;
                    }
                } else {
                    // The first remaining completion: every completed candidate was tried.
                    let wanted = wanted_by(&ops, &entries, state);
                    let choices = info.choices(&ops, &wanted, state, |i| !is_set(&set, i));
                    scan = Scan::Info(choices, 0);
                    continue;
                }
            }
            Scan::Info(choices, at) => {
                while *at < choices.len() && redundant(&ops, &stack, state, choices[*at]) {
                    *at += 1;
                }
                if let Some(&op) = choices.get(*at) {
                    take = Some((op, false, Some(*at)));
                    *at += 1;
                }
            }
        }

        if let Some((op, forced, choice)) = take {
            let after = ops[op].step.apply(state).expect("checked legal");
            flip(&mut set, op);
            set_hash ^= zobrist[op];
            let (mut new_low, mut new_high) = (low, high);
            if op < definite {
                new_high = high.max(op + 1);
                while new_low < definite && is_set(&set, new_low) {
                    new_low += 1;
                }
            }
            key.clear();
            key.push((new_low / 64) as u64);
            key.extend_from_slice(&set[definite_words..]);
            if new_high > 0 && (new_high - 1) / 64 >= new_low / 64 {
                key.extend_from_slice(&set[new_low / 64..=(new_high - 1) / 64]);
            }
            let hash = set_hash ^ splitmix64(u64::from(after) ^ 0xA5A5_5A5A_0F0F_F0F0);
            if cache.insert(hash, &key, after) {
                if cache.bytes() > budget.max_cache_bytes {
                    let why = format!("cache budget ({} bytes) exhausted", budget.max_cache_bytes);
                    return (SearchResult::OutOfBudget(why), steps);
                }
                stack.push(Frame {
                    op,
                    state,
                    low,
                    high,
                    forced,
                    choice,
                });
                (state, low, high) = (after, new_low, new_high);
                if op < definite {
                    entries.lift(op);
                }
                if track_longest && stack.len() > longest.0.len() {
                    longest = (stack.iter().map(|f| order[f.op]).collect(), state);
                }
                scan = Scan::Fresh;
                continue;
            }
            // Explored before, and it failed.
            flip(&mut set, op);
            set_hash ^= zobrist[op];
            if !forced {
                continue; // try the next candidate
            }
            // The forced child is as good as any: this configuration fails.
        }

        // Dead: back to the last configuration with untried alternatives.
        loop {
            let Some(frame) = stack.pop() else {
                let (longest, state) = longest;
                return (SearchResult::Violation { longest, state }, steps);
            };
            flip(&mut set, frame.op);
            set_hash ^= zobrist[frame.op];
            (state, low, high) = (frame.state, frame.low, frame.high);
            if frame.op < definite {
                entries.unlift(frame.op);
            }
            if frame.forced {
                continue;
            }
            scan = match frame.choice {
                None => Scan::Completed(entries.next[2 * frame.op]),
                Some(at) => {
                    let wanted = wanted_by(&ops, &entries, state);
                    let choices = info.choices(&ops, &wanted, state, |i| !is_set(&set, i));
                    debug_assert_eq!(choices.get(at), Some(&frame.op), "choices are stable");
                    Scan::Info(choices, at + 1)
                }
            };
            break;
        }
    }
}

/// What the completed candidates (calls before the first remaining completion) wait for.
fn wanted_by(ops: &[SearchOp], entries: &Entries, state: u32) -> Wanted {
    let mut wanted = Wanted {
        any: false,
        values: Vec::new(),
        horizon: INFINITY,
    };
    let mut e = entries.next[entries.head as usize];
    while e != NIL {
        let op = e as usize / 2;
        if !e.is_multiple_of(2) {
            wanted.horizon = ops[op].ret;
            break;
        }
        match ops[op].step {
            Step::Read(v) | Step::CasSucceeded { expected: v, .. } if v != state => {
                wanted.values.push(v)
            }
            Step::CasFailed { expected } if expected == state => wanted.any = true,
            _ => {}
        }
        e = entries.next[e as usize];
    }
    wanted.values.sort_unstable();
    wanted.values.dedup();
    wanted
}

// ---------------------------------------------------------------------------------------
// Minimization and explanation.

struct Minimized {
    /// The witness: a sub-history of the ops, some of them cut short (see [`minimize`]).
    ops: Vec<Operation>,
    /// The instant the history was cut at, if it was.
    cut: Option<u64>,
    /// Whether the reduction ran to a fixpoint (otherwise the time ran out first).
    complete: bool,
}

/// `op` as seen by a history that ends at `cut`: its completion is dropped if it came later
/// (the op is then still running at the end, i.e. of unknown outcome).
fn cut_short(op: &Operation, cut: u64) -> Operation {
    match &op.completion {
        Some(c) if c.time_ns > cut => Operation {
            op: op.invocation.op.clone(),
            outcome: Outcome::Info,
            complete_ns: None,
            completion: None,
            ..op.clone()
        },
        _ => op.clone(),
    }
}

/// Reduces a non-linearizable `ops` to a small sub-history that still fails and whose failure
/// implies the whole history's (see the module docs for why each step is sound).
fn minimize(ops: &[&Operation], budget: &Budget) -> Minimized {
    let deadline = Instant::now() + budget.minimize_time;
    let fails = |input: &[SearchOp]| -> Option<bool> {
        let left = deadline.checked_duration_since(Instant::now())?;
        let check = Budget {
            max_time: left.min(budget.max_time),
            ..budget.clone()
        };
        match search(input, &check, false).0 {
            SearchResult::Violation { .. } => Some(true),
            SearchResult::Linearizable => Some(false),
            SearchResult::OutOfBudget(_) => None,
        }
    };

    // 1. The earliest cut at which the history already fails (binary search: prefix-closed).
    //    The prefix keeps only what had happened by then: an op still running at the cut
    //    loses its completion (a read then says nothing, a write may or may not apply).
    let mut cuts: Vec<u64> = ops
        .iter()
        .flat_map(|op| [op.invoke_ns, ret_of(op)])
        .filter(|&t| t != INFINITY)
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let (mut lo, mut hi) = (0usize, cuts.len()); // cut `cuts.len()` = no cut, known to fail
    let mut complete = true;
    while lo < hi {
        let mid = (lo + hi) / 2;
        match fails(&prepare(ops, Some(cuts[mid])).ops) {
            Some(true) => hi = mid,
            Some(false) => lo = mid + 1,
            None => {
                complete = false;
                break;
            }
        }
    }
    let cut = cuts.get(hi).copied();
    let prefix: Vec<Operation> = match cut {
        Some(t) => ops
            .iter()
            .filter(|op| op.invoke_ns <= t)
            .map(|op| cut_short(op, t))
            .collect(),
        None => ops.iter().map(|&op| op.clone()).collect(),
    };
    let prefix_refs: Vec<&Operation> = prefix.iter().collect();
    let prefix_refs = relevant_ops(&prefix_refs);
    let mut candidate: Vec<usize> = (0..prefix_refs.len()).collect();
    // Observers first: removing failed CASes is what lets writes become removable.
    candidate.sort_by_key(|&i| {
        let op = prefix_refs[i];
        (written_value(op).is_some(), op.invoke_ns)
    });

    // 2. Delta debugging over sound removals.
    let pick = |set: &[usize]| -> Vec<&Operation> { set.iter().map(|&i| prefix_refs[i]).collect() };
    let mut chunk = (candidate.len() / 2).max(1);
    'passes: loop {
        let mut progress = false;
        let mut i = 0;
        while i < candidate.len() {
            let end = (i + chunk).min(candidate.len());
            let current = pick(&candidate);
            // Observers (reads, failed CASes) can always go; effects only if unobserved.
            let sound = current[i..end]
                .iter()
                .all(|x| written_value(x).is_none() || unobserved(x, &current));
            let mut rest = candidate.clone();
            rest.drain(i..end);
            if sound && !rest.is_empty() {
                match fails(&prepare(&pick(&rest), None).ops) {
                    Some(true) => {
                        candidate = rest;
                        progress = true;
                        continue;
                    }
                    Some(false) => {}
                    None => {
                        complete = false;
                        break 'passes;
                    }
                }
            }
            i = end;
        }
        if chunk == 1 && !progress {
            break;
        }
        if !progress {
            chunk = (chunk / 2).max(1);
        }
    }
    let mut witness: Vec<Operation> = pick(&candidate).into_iter().cloned().collect();
    witness.sort_by_key(|op| op.invoke_ns);
    Minimized {
        ops: witness,
        cut: cut.filter(|_| witness_cut_matters(ops, cut)),
        complete,
    }
}

/// Whether cutting at `cut` shortened any op (only then is the cut worth mentioning).
fn witness_cut_matters(ops: &[&Operation], cut: Option<u64>) -> bool {
    cut.is_some_and(|t| {
        ops.iter()
            .any(|op| op.invoke_ns <= t && op.completion.as_ref().is_some_and(|c| c.time_ns > t))
    })
}

/// A human explanation of why `witness` (already minimized) is not linearizable.
fn explain(
    key: &str,
    witness: &[&Operation],
    searched: usize,
    minimized: &Minimized,
    budget: &Budget,
) -> String {
    let mut out = format!(
        "{} of the {searched} operations on key {key:?} admit no linearization{}{}:",
        witness.len(),
        match minimized.cut {
            Some(t) => format!(
                " in the history up to {t} ns (operations still running then count as of \
                 unknown outcome)"
            ),
            None => String::new(),
        },
        if minimized.complete {
            ""
        } else {
            " (minimization ran out of time; this may not be the smallest witness)"
        }
    );
    for op in witness {
        out.push_str(&format!("\n  {op}"));
    }
    let input = prepare_with(witness, None, false);
    if witness.len() > 200 {
        return out; // too big for a readable account (and for tracking the longest order)
    }
    if let (SearchResult::Violation { longest, state }, _) = search(&input.ops, budget, true) {
        if longest.is_empty() {
            out.push_str("\nno operation can take effect first (the register starts absent)");
        } else {
            let order: Vec<String> = longest
                .iter()
                .map(|&i| witness[input.ops[i].src].to_string())
                .collect();
            out.push_str(&format!(
                "\nthe longest legal order found is {} leaving the register {}; none of the \
                 remaining operations can take effect next without contradicting the value it \
                 saw or the real-time order",
                order.join(" ; "),
                input.value(state)
            ));
        }
    }
    out
}
