//! Model-based property tests: histories produced by *simulating* a linearizable register
//! (every operation takes effect atomically at a random instant inside its window, or — for
//! unknown outcomes — possibly later or never) must check Valid; the same histories with one
//! injected stale read must check Invalid, with a witness that fails on its own.

use std::collections::HashMap;

use chaos::history::{History, Op, Phase, Record};
use chaos::linearizable::{check_history, Budget, Verdict};
use proptest::prelude::*;

/// xorshift64*: the simulation draws from one seed so proptest can replay failures.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
    Cas,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Ok,
    Fail,
    /// Unknown outcome; `applied` says whether the simulated store executed it.
    Info {
        applied: bool,
    },
}

/// One simulated operation before its result is known.
#[derive(Debug, Clone)]
struct SimOp {
    process: u32,
    key: String,
    kind: Kind,
    /// The written value (write) or the new value (cas).
    value: String,
    expected: String,
    invoke: u64,
    complete: u64,
    /// When it takes effect (may be after `complete` for an info op).
    at: u64,
    end: End,
}

struct Simulated {
    history: History,
    /// (key, value, complete time) of writes and successful CASes that completed ok.
    acknowledged: Vec<(String, String, u64, u64)>,
    end_time: u64,
    next_process: u32,
}

/// Runs `clients` concurrent clients doing `per_client` operations over `keys` registers.
/// With `unique`, every written value is distinct; otherwise values come from {a, b, c}.
fn simulate(seed: u64, clients: u32, per_client: u32, keys: u32, unique: bool) -> Simulated {
    simulate_with(seed, clients, per_client, keys, unique, 8)
}

/// [`simulate`] with `info_percent` of operations ending with an unknown outcome.
fn simulate_with(
    seed: u64,
    clients: u32,
    per_client: u32,
    keys: u32,
    unique: bool,
    info_percent: u64,
) -> Simulated {
    let mut rng = Rng(seed | 1);
    let mut ops: Vec<SimOp> = Vec::new();
    let mut written: HashMap<String, Vec<String>> = HashMap::new();
    let mut next_process = clients;
    let mut counter = 0u32;
    for client in 0..clients {
        let mut process = client;
        let mut now = rng.below(10);
        for _ in 0..per_client {
            let key = format!("k{}", rng.below(u64::from(keys)));
            let kind = match rng.below(10) {
                0..=3 => Kind::Read,
                4..=6 => Kind::Write,
                _ => Kind::Cas,
            };
            counter += 1;
            let value = if unique {
                format!("v{counter}")
            } else {
                ["a", "b", "c"][rng.below(3) as usize].to_owned()
            };
            let seen = written.entry(key.clone()).or_default();
            let expected = if !seen.is_empty() && rng.chance(80) {
                seen[rng.below(seen.len() as u64) as usize].clone()
            } else {
                "never".to_owned()
            };
            if kind != Kind::Read {
                seen.push(value.clone());
            }
            let invoke = now;
            let complete = invoke + 1 + rng.below(40);
            let roll = rng.below(100);
            let end = if roll < info_percent {
                End::Info {
                    applied: rng.chance(50),
                }
            } else if roll < info_percent + 4 {
                End::Fail
            } else {
                End::Ok
            };
            let at = match end {
                // An unknown outcome may apply long after the client gave up.
                End::Info { .. } => invoke + rng.below(3 * (complete - invoke) + 1),
                _ => invoke + rng.below(complete - invoke + 1),
            };
            ops.push(SimOp {
                process,
                key,
                kind,
                value,
                expected,
                invoke,
                complete,
                at,
                end,
            });
            if matches!(end, End::Info { .. }) {
                // Jepsen's rule: a process with an unknown op is never reused.
                process = next_process;
                next_process += 1;
            }
            now = complete + rng.below(8); // sometimes touching the previous window
        }
    }

    // Execute atomically in effect order (ties in any order: each is inside its window).
    let mut order: Vec<usize> = (0..ops.len()).collect();
    order.sort_by_key(|&i| ops[i].at);
    let mut register: HashMap<String, String> = HashMap::new();
    let mut results: Vec<Option<Op>> = vec![None; ops.len()];
    for i in order {
        let op = &ops[i];
        let executes = match op.end {
            End::Ok => true,
            End::Fail => false,
            End::Info { applied } => applied,
        };
        if !executes {
            continue;
        }
        let current = register.get(&op.key).cloned();
        results[i] = Some(match op.kind {
            Kind::Read => Op::read_ok(current.as_deref()),
            Kind::Write => {
                register.insert(op.key.clone(), op.value.clone());
                Op::write(&op.value)
            }
            Kind::Cas => {
                let succeeded = current.as_deref() == Some(op.expected.as_str());
                if succeeded {
                    register.insert(op.key.clone(), op.value.clone());
                }
                Op::cas_ok(&op.expected, &op.value, succeeded)
            }
        });
    }

    let mut history = History::new();
    let mut acknowledged = Vec::new();
    let mut end_time = 0;
    for (op, result) in ops.iter().zip(results) {
        let invocation = match op.kind {
            Kind::Read => Op::read(),
            Kind::Write => Op::write(&op.value),
            Kind::Cas => Op::cas(&op.expected, &op.value),
        };
        let (phase, done) = match op.end {
            End::Ok => (Phase::Ok, result.expect("ok ops executed")),
            End::Fail => (Phase::Fail, invocation.clone()),
            End::Info { .. } => (Phase::Info, invocation.clone()),
        };
        let effective = match &done {
            Op::Write { .. } => phase == Phase::Ok,
            Op::Cas { succeeded, .. } => *succeeded == Some(true),
            Op::Read { .. } => false,
        };
        if effective {
            acknowledged.push((op.key.clone(), op.value.clone(), op.invoke, op.complete));
        }
        for (op_, phase, time_ns) in [
            (invocation, Phase::Invoke, op.invoke),
            (done, phase, op.complete),
        ] {
            history.push(Record {
                process: op.process,
                key: op.key.clone(),
                op: op_,
                phase,
                time_ns,
            });
        }
        end_time = end_time.max(op.complete).max(op.at);
    }
    Simulated {
        history,
        acknowledged,
        end_time,
        next_process,
    }
}

fn budget() -> Budget {
    Budget::steps(5_000_000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn simulated_linearizable_registers_check_valid(
        seed in any::<u64>(),
        clients in 1u32..6,
        per_client in 1u32..14,
        keys in 1u32..4,
        unique in any::<bool>(),
    ) {
        let sim = simulate(seed, clients, per_client, keys, unique);
        for report in check_history(&sim.history, &budget()).unwrap() {
            prop_assert_eq!(&report.verdict, &Verdict::Valid, "key {}", report.key);
        }
    }

    #[test]
    fn an_injected_stale_read_is_always_caught(
        seed in any::<u64>(),
        clients in 1u32..6,
        per_client in 1u32..14,
        keys in 1u32..4,
        pick in any::<prop::sample::Index>(),
        delay in 1u64..20,
    ) {
        let mut sim = simulate(seed, clients, per_client, keys, true);
        // A pair (older, newer) of acknowledged effects on one key where the newer one was
        // invoked after the older completed: real time orders them, so once the newer has
        // completed, the older value (written once, values are unique) is gone for good.
        let acked = &sim.acknowledged;
        let mut pairs = Vec::new();
        for (i, old) in acked.iter().enumerate() {
            for (j, new) in acked.iter().enumerate() {
                if i != j && old.0 == new.0 && new.2 > old.3 {
                    pairs.push((i, j));
                }
            }
        }
        let (key, stale, after) = if pairs.is_empty() {
            // None arose by chance: append one.
            let t = sim.end_time + 10;
            let p = sim.next_process;
            sim.next_process += 2;
            for (p, v, t0) in [(p, "old", t), (p + 1, "new", t + 10)] {
                sim.history.push(Record { process: p, key: "k0".into(), op: Op::write(v), phase: Phase::Invoke, time_ns: t0 });
                sim.history.push(Record { process: p, key: "k0".into(), op: Op::write(v), phase: Phase::Ok, time_ns: t0 + 5 });
            }
            ("k0".to_owned(), "old".to_owned(), t + 15)
        } else {
            let (i, j) = pairs[pick.index(pairs.len())];
            (acked[i].0.clone(), acked[i].1.clone(), acked[j].3)
        };
        let reader = sim.next_process;
        let stale_read = [
            Record { process: reader, key: key.clone(), op: Op::read(), phase: Phase::Invoke, time_ns: after + delay },
            Record { process: reader, key: key.clone(), op: Op::read_ok(Some(&stale)), phase: Phase::Ok, time_ns: after + 2 * delay },
        ];
        sim.history.records.extend(stale_read.iter().cloned());

        let reports = check_history(&sim.history, &budget()).unwrap();
        for report in reports {
            if report.key != key {
                prop_assert_eq!(&report.verdict, &Verdict::Valid);
                continue;
            }
            let Verdict::Invalid { minimal_subhistory, .. } = &report.verdict else {
                return Err(TestCaseError::fail(format!("stale read missed: {:?}", report.verdict)));
            };
            prop_assert!(minimal_subhistory.contains(&stale_read[1]), "the stale read is the culprit");
            prop_assert!(minimal_subhistory.iter().all(|r| sim.history.records.contains(r)));
            assert_faithful(&sim.history, minimal_subhistory)?;
            let alone = History { records: minimal_subhistory.clone() };
            let again = check_history(&alone, &budget()).unwrap();
            prop_assert!(matches!(again[0].verdict, Verdict::Invalid { .. }), "witness fails alone");
        }
    }
}

// ---- witnesses must be faithful ---------------------------------------------------------

/// A witness must be a prefix of the history (up to some cut, ops still running then cut
/// short) minus removals that no remaining op could notice: removing the only write of a
/// value somebody read would make the read look like a phantom. Checked independently of the
/// checker's own rule, for some cut at or after the witness's last record.
fn assert_faithful(history: &History, witness: &[Record]) -> Result<(), TestCaseError> {
    let end = witness.iter().map(|r| r.time_ns).max().unwrap_or(0);
    let mut cuts: Vec<u64> = history
        .records
        .iter()
        .map(|r| r.time_ns)
        .filter(|&t| t >= end)
        .collect();
    cuts.push(end);
    let problems: Vec<String> = cuts
        .iter()
        .filter_map(|&cut| unfaithful(history, witness, cut))
        .collect();
    prop_assert!(
        problems.len() < cuts.len(),
        "unfaithful at every cut: {:?}",
        problems
    );
    Ok(())
}

/// Why `witness` is not a sound reduction of `history` cut at `cut`, if it is not.
fn unfaithful(history: &History, witness: &[Record], cut: u64) -> Option<String> {
    use chaos::history::{Operation, Outcome};
    let all = history.operations().unwrap();
    let kept = History {
        records: witness.to_vec(),
    }
    .operations()
    .unwrap();
    let same = |a: &Operation, b: &Operation| {
        a.process == b.process && a.invoke_ns == b.invoke_ns && a.key == b.key
    };
    for w in &kept {
        let Some(h) = all.iter().find(|h| same(h, w)) else {
            return Some(format!("witness op not in the history: {w}"));
        };
        let faithful = match &w.completion {
            Some(c) => Some(c) == h.completion.as_ref() && c.time_ns <= cut,
            None => h.completion.as_ref().is_none_or(|c| c.time_ns > cut),
        };
        if !faithful {
            return Some(format!("{w} is not {h} cut at {cut}"));
        }
    }
    for x in all
        .iter()
        .filter(|x| x.key == kept[0].key && x.invoke_ns <= cut)
    {
        if kept.iter().any(|w| same(w, x)) {
            continue;
        }
        let finished = x.completion.as_ref().is_some_and(|c| c.time_ns <= cut);
        // A failed op never executed (the full history says so even if it ends after the cut).
        let written = match (&x.op, finished, x.outcome) {
            (_, _, Outcome::Fail) | (Op::Read { .. }, _, _) => None,
            (
                Op::Cas {
                    succeeded: Some(false),
                    ..
                },
                true,
                Outcome::Ok,
            ) => None,
            // Setting what must already be there changes nothing.
            (Op::Cas { expected, new, .. }, _, _) if expected == new => None,
            (Op::Write { value }, _, _) | (Op::Cas { new: value, .. }, _, _) => Some(value),
        };
        let Some(v) = written else { continue };
        for o in &kept {
            if o.complete_ns.is_some_and(|t| t < x.invoke_ns) {
                continue; // finished before x began: cannot see it
            }
            let notices = match &o.op {
                Op::Read { value } => value.as_ref() == Some(v),
                Op::Write { .. } => false,
                Op::Cas {
                    expected,
                    succeeded,
                    ..
                } => expected == v || (o.outcome == Outcome::Ok && *succeeded == Some(false)),
            };
            if notices {
                return Some(format!("removed {x} but kept {o} which could notice it"));
            }
        }
    }
    None
}

// ---- a brute-force oracle on small arbitrary histories ---------------------------------

/// Linearizability by exhaustive search over orders, written straight from the semantics in
/// the module docs and sharing no code with the checker.
fn oracle(history: &History) -> bool {
    use chaos::history::Outcome;
    struct O {
        call: u64,
        ret: u64, // u64::MAX: unknown outcome, may also never happen
        op: Op,
        maybe: bool,
    }
    let ops: Vec<O> = history
        .operations()
        .unwrap()
        .into_iter()
        .filter(|o| o.outcome != Outcome::Fail)
        .filter(|o| !(o.outcome == Outcome::Info && matches!(o.op, Op::Read { .. })))
        .map(|o| O {
            call: o.invoke_ns,
            ret: o.complete_ns.unwrap_or(u64::MAX),
            maybe: o.outcome == Outcome::Info,
            op: o.op,
        })
        .collect();
    fn dfs(ops: &[O], done: &mut Vec<bool>, state: Option<String>) -> bool {
        if ops.iter().zip(done.iter()).all(|(o, &d)| d || o.maybe) {
            return true;
        }
        for i in 0..ops.len() {
            if done[i] {
                continue;
            }
            // Something still pending that completed before `i` was invoked must come first.
            let blocked = (0..ops.len()).any(|j| !done[j] && j != i && ops[j].ret < ops[i].call);
            if blocked {
                continue;
            }
            let next = match &ops[i].op {
                Op::Read { value } => (state == *value).then(|| state.clone()),
                Op::Write { value } => Some(Some(value.clone())),
                Op::Cas {
                    expected,
                    new,
                    succeeded,
                } => {
                    let holds = state.as_deref() == Some(expected.as_str());
                    match succeeded {
                        Some(true) => holds.then(|| Some(new.clone())),
                        Some(false) => (!holds).then(|| state.clone()),
                        None => Some(if holds {
                            Some(new.clone())
                        } else {
                            state.clone()
                        }),
                    }
                }
            };
            if let Some(next) = next {
                done[i] = true;
                if dfs(ops, done, next) {
                    return true;
                }
                done[i] = false;
            }
        }
        false
    }
    dfs(&ops, &mut vec![false; ops.len()], None)
}

/// Up to 8 arbitrary operations on one key: reads and CAS compares over {a, b}, writes over
/// {a, b, c} (so some values are never observed). About half are not linearizable.
fn arbitrary_history(seed: u64, n: u32) -> History {
    let mut rng = Rng(seed | 1);
    let mut history = History::new();
    let value = |rng: &mut Rng| ["a", "b"][rng.below(2) as usize];
    for process in 0..n {
        let t0 = rng.below(30);
        let t1 = t0 + rng.below(15);
        let (invoke, ok) = match rng.below(3) {
            0 => {
                let seen = match rng.below(3) {
                    0 => None,
                    _ => Some(value(&mut rng)),
                };
                (Op::read(), Op::read_ok(seen))
            }
            1 => {
                let v = ["a", "b", "c"][rng.below(3) as usize];
                (Op::write(v), Op::write(v))
            }
            _ => {
                let (e, n) = (value(&mut rng), ["a", "b", "c"][rng.below(3) as usize]);
                (Op::cas(e, n), Op::cas_ok(e, n, rng.chance(50)))
            }
        };
        let (phase, done) = match rng.below(10) {
            0 => (Phase::Fail, invoke.clone()),
            1 | 2 => (Phase::Info, invoke.clone()),
            _ => (Phase::Ok, ok),
        };
        for (op, phase, time_ns) in [(invoke, Phase::Invoke, t0), (done, phase, t1)] {
            history.push(Record {
                process,
                key: "k".into(),
                op,
                phase,
                time_ns,
            });
        }
    }
    history
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn agrees_with_brute_force_and_witnesses_fail_alone(seed in any::<u64>(), n in 1u32..9) {
        let history = arbitrary_history(seed, n);
        let verdict = check_history(&history, &budget()).unwrap().remove(0).verdict;
        let expected = oracle(&history);
        match &verdict {
            Verdict::Valid => prop_assert!(expected, "checker says valid, oracle not"),
            Verdict::Invalid { minimal_subhistory, .. } => {
                prop_assert!(!expected, "checker says invalid, oracle valid");
                let witness = History { records: minimal_subhistory.clone() };
                prop_assert!(!oracle(&witness), "the witness must fail on its own");
                assert_faithful(&history, minimal_subhistory)?;
            }
            Verdict::Unknown { .. } => prop_assert!(false, "tiny histories fit any budget"),
        }
    }
}

/// How big a single-key history the default budget handles: simulated workloads of growing
/// size at several concurrencies, valid and with a stale read injected mid-way (which adds
/// minimization). Run with
/// `cargo test -p chaos --test linearizable_prop capacity -- --ignored --nocapture`
/// (`INFO_PERCENT` sets the share of unknown outcomes, default 8).
#[test]
#[ignore = "a measurement, not a test (minutes)"]
fn capacity() {
    let info: u64 = std::env::var("INFO_PERCENT").map_or(8, |v| v.parse().unwrap());
    for clients in [5u32, 10, 20, 50] {
        for ops in [1_000u32, 5_000, 20_000, 50_000, 200_000] {
            let mut sim = simulate_with(
                42 + u64::from(clients),
                clients,
                ops / clients,
                1,
                true,
                info,
            );
            let started = std::time::Instant::now();
            let report = check_history(&sim.history, &Budget::default())
                .unwrap()
                .remove(0);
            eprintln!(
                "clients {clients:>3} ops {:>6} searched {:>6}: {} in {:>8.2?}, {} steps",
                report.operations,
                report.searched,
                summary(&report.verdict),
                started.elapsed(),
                report.steps
            );
            if !matches!(report.verdict, Verdict::Valid) {
                break;
            }
            // The same with a stale read in the middle.
            let mut acked = sim.acknowledged.clone();
            acked.sort_by_key(|a| a.2);
            let middle = acked.len() / 2;
            let Some(newer) = acked[middle..].iter().find(|n| n.2 > acked[middle].3) else {
                continue;
            };
            let (stale, after) = (acked[middle].1.clone(), newer.3);
            let reader = sim.next_process;
            for (op, phase, t) in [
                (Op::read(), Phase::Invoke, after + 1),
                (Op::read_ok(Some(&stale)), Phase::Ok, after + 2),
            ] {
                sim.history.push(Record {
                    process: reader,
                    key: "k0".into(),
                    op,
                    phase,
                    time_ns: t,
                });
            }
            let started = std::time::Instant::now();
            let report = check_history(&sim.history, &Budget::default())
                .unwrap()
                .remove(0);
            let size = match &report.verdict {
                Verdict::Invalid {
                    minimal_subhistory,
                    explanation,
                    ..
                } => format!(
                    "witness {} records{}",
                    minimal_subhistory.len(),
                    if explanation.contains("ran out of time") {
                        " (not minimal)"
                    } else {
                        ""
                    }
                ),
                _ => String::new(),
            };
            eprintln!(
                "    + stale read: {} {size} in {:>8.2?}",
                summary(&report.verdict),
                started.elapsed(),
            );
        }
    }
}

fn summary(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Valid => "valid".to_owned(),
        Verdict::Invalid { .. } => "INVALID".to_owned(),
        Verdict::Unknown { reason, .. } => format!("unknown ({reason})"),
    }
}
