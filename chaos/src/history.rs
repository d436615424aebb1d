//! The operation history a register workload records: one JSON line per invocation or
//! completion, paired afterwards into [`Operation`]s.
//!
//! A worked example (one line each, as in the file; times are nanoseconds on one monotonic
//! clock shared by every client of the run):
//!
//! ```text
//! {"process":0,"key":"r1","op":{"type":"write","value":"a"},"phase":"invoke","time_ns":100}
//! {"process":1,"key":"r1","op":{"type":"read","value":null},"phase":"invoke","time_ns":110}
//! {"process":0,"key":"r1","op":{"type":"write","value":"a"},"phase":"ok","time_ns":150}
//! {"process":1,"key":"r1","op":{"type":"read","value":"a"},"phase":"ok","time_ns":160}
//! {"process":2,"key":"r1","op":{"type":"cas","expected":"a","new":"b"},"phase":"invoke","time_ns":170}
//! {"process":2,"key":"r1","op":{"type":"cas","expected":"a","new":"b"},"phase":"info","time_ns":900}
//! ```
//!
//! Process 2 timed out: its compare-and-set may take effect at any later instant, or never, so
//! process 2 must never be used again (the workload continues as a fresh process id, as in
//! Jepsen). The phases mean:
//!
//! * `invoke`: written *before* the request is sent.
//! * `ok`: the request executed; the completion carries the result (`value` of a read,
//!   `succeeded` of a compare-and-set — a CAS whose compare failed is `ok` with
//!   `succeeded: false`: it executed, had no effect, and still observed `current != expected`).
//! * `fail`: the request definitely did not execute (e.g. rejected before it was proposed):
//!   no effect and no observation.
//! * `info`: unknown; it may take effect at any time after its invocation, or never.
//!
//! An invocation with no completion at the end of the history is treated as `info`.

use std::collections::HashMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One line of a history file: an invocation or a completion of one operation on one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The logical client; it has at most one outstanding operation, and is retired after `info`.
    pub process: u32,
    /// The register (etcd key) the operation reads or writes.
    pub key: String,
    /// What was asked, and, on an `ok` completion, what came back.
    pub op: Op,
    /// Invocation or which kind of completion.
    pub phase: Phase,
    /// Monotonic timestamp in nanoseconds, from one clock for all processes of a run.
    pub time_ns: u64,
}

/// A register operation. Result fields (`Read::value`, `Cas::succeeded`) are set only on an
/// `ok` completion.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Op {
    /// Read the register; `value` is the result (`None`: the key does not exist).
    Read {
        #[serde(default)]
        value: Option<String>,
    },
    /// Set the register to `value`.
    Write { value: String },
    /// Set the register to `new` iff it currently holds `expected` (an etcd Txn comparing the
    /// value). `succeeded` is the Txn's `succeeded` flag.
    Cas {
        expected: String,
        new: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        succeeded: Option<bool>,
    },
}

impl Op {
    /// A read invocation.
    pub fn read() -> Op {
        Op::Read { value: None }
    }

    /// A read completion that returned `value` (`None`: absent).
    pub fn read_ok(value: Option<&str>) -> Op {
        Op::Read {
            value: value.map(str::to_owned),
        }
    }

    /// A write of `value` (invocation and completion look the same).
    pub fn write(value: &str) -> Op {
        Op::Write {
            value: value.to_owned(),
        }
    }

    /// A compare-and-set invocation (or a `fail`/`info` completion).
    pub fn cas(expected: &str, new: &str) -> Op {
        Op::Cas {
            expected: expected.to_owned(),
            new: new.to_owned(),
            succeeded: None,
        }
    }

    /// A compare-and-set `ok` completion.
    pub fn cas_ok(expected: &str, new: &str, succeeded: bool) -> Op {
        Op::Cas {
            expected: expected.to_owned(),
            new: new.to_owned(),
            succeeded: Some(succeeded),
        }
    }

    /// Whether the op carries a result (only allowed on `ok` completions).
    fn has_result(&self) -> bool {
        match self {
            Op::Read { value } => value.is_some(),
            Op::Write { .. } => false,
            Op::Cas { succeeded, .. } => succeeded.is_some(),
        }
    }

    /// Whether `completion` answers this invocation (same kind and arguments).
    fn answered_by(&self, completion: &Op) -> bool {
        match (self, completion) {
            (Op::Read { .. }, Op::Read { .. }) => true,
            (Op::Write { value: a }, Op::Write { value: b }) => a == b,
            (
                Op::Cas {
                    expected: e1,
                    new: n1,
                    ..
                },
                Op::Cas {
                    expected: e2,
                    new: n2,
                    ..
                },
            ) => e1 == e2 && n1 == n2,
            _ => false,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Read { value: Some(v) } => write!(f, "read -> {v:?}"),
            Op::Read { value: None } => write!(f, "read -> absent"),
            Op::Write { value } => write!(f, "write {value:?}"),
            Op::Cas {
                expected,
                new,
                succeeded,
            } => {
                write!(f, "cas {expected:?} -> {new:?}")?;
                match succeeded {
                    Some(true) => write!(f, " succeeded"),
                    Some(false) => write!(f, " compare failed"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// Where a [`Record`] sits in its operation's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The request is about to be sent.
    Invoke,
    /// It executed; the record's op carries the result.
    Ok,
    /// It definitely did not execute.
    Fail,
    /// Unknown: it may take effect at any later time, or never.
    Info,
}

/// How an [`Operation`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Executed; [`Operation::op`] holds the result.
    Ok,
    /// Definitely not executed.
    Fail,
    /// Unknown (an `info` completion, or no completion at all).
    Info,
}

/// An invocation paired with its completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// The process that ran it.
    pub process: u32,
    /// The register.
    pub key: String,
    /// The completion's op for `ok` (with the result), the invocation's op otherwise.
    pub op: Op,
    /// How it ended.
    pub outcome: Outcome,
    /// When it was invoked.
    pub invoke_ns: u64,
    /// When it completed; `None` when [`Outcome::Info`] (it may take effect arbitrarily late).
    pub complete_ns: Option<u64>,
    /// The invocation record, verbatim.
    pub invocation: Record,
    /// The completion record, verbatim (`None` when the history ends before it).
    pub completion: Option<Record>,
}

impl Operation {
    /// The operation's records, as they appear in the history file.
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        std::iter::once(&self.invocation).chain(self.completion.as_ref())
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{} {}", self.process, self.op)?;
        match (self.outcome, self.complete_ns) {
            (Outcome::Ok, Some(end)) => write!(f, " [{}, {}]", self.invoke_ns, end),
            (Outcome::Fail, Some(end)) => write!(f, " (failed) [{}, {}]", self.invoke_ns, end),
            _ => write!(f, " (unknown outcome) [{}, ∞)", self.invoke_ns),
        }
    }
}

/// A list of records in any order: one file, several files merged, or built in memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// The records, in the order they were read or pushed.
    pub records: Vec<Record>,
}

impl History {
    /// An empty history.
    pub fn new() -> History {
        History::default()
    }

    /// Adds one record in memory.
    pub fn push(&mut self, record: Record) {
        self.records.push(record);
    }

    /// Reads one JSON-lines history file. Blank lines are skipped; any malformed line is an
    /// error (a half-written line could hide an invocation, so it is never silently dropped).
    pub fn load(path: impl AsRef<Path>) -> Result<History> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut records = Vec::new();
        for (i, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| Error::io(path, e))?;
            if line.trim().is_empty() {
                continue;
            }
            let record = serde_json::from_str(&line).map_err(|source| Error::Json {
                path: path.to_owned(),
                line: i + 1,
                source,
            })?;
            records.push(record);
        }
        Ok(History { records })
    }

    /// Reads and merges every `*.jsonl` file directly in `dir` (e.g. one per client). Process
    /// ids must be unique across files and timestamps must come from one clock.
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<History> {
        let mut merged = History::new();
        for path in files_with_extension(dir.as_ref(), "jsonl")? {
            merged.records.extend(History::load(&path)?.records);
        }
        Ok(merged)
    }

    /// Appends `records` to the JSON-lines file at `path` (created if missing) and flushes.
    pub fn append(path: impl AsRef<Path>, records: &[Record]) -> Result<()> {
        let mut writer = HistoryWriter::open(path)?;
        for record in records {
            writer.append(record)?;
        }
        Ok(())
    }

    /// Writes the whole history to `path` as JSON lines, replacing the file.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        let mut out = BufWriter::new(file);
        for record in &self.records {
            write_line(&mut out, record).map_err(|e| Error::io(path, e))?;
        }
        out.flush().map_err(|e| Error::io(path, e))
    }

    /// Pairs invocations with completions, per process, in timestamp order (ties keep record
    /// order). Errors on anything a correct harness cannot produce: a second invocation while
    /// one is outstanding, a completion with nothing outstanding or for another key/op, a
    /// result on a record that cannot carry one, or a process reused after `info`.
    pub fn operations(&self) -> Result<Vec<Operation>> {
        let mut order: Vec<usize> = (0..self.records.len()).collect();
        order.sort_by_key(|&i| self.records[i].time_ns); // stable: ties keep file order

        let mut outstanding: HashMap<u32, usize> = HashMap::new(); // process -> index in `ops`
        let mut retired: HashMap<u32, u64> = HashMap::new(); // process -> time of its info
        let mut ops: Vec<Operation> = Vec::new();
        for i in order {
            let r = &self.records[i];
            let malformed = |why: &str| {
                Error::MalformedHistory(format!(
                    "record {} (process {}, key {:?}, {:?} at {} ns): {why}",
                    i + 1,
                    r.process,
                    r.key,
                    r.phase,
                    r.time_ns
                ))
            };
            if let Some(at) = retired.get(&r.process) {
                return Err(malformed(&format!(
                    "process was retired by an info completion at {at} ns and must not be \
                     reused (its last op may still take effect); use a fresh process id"
                )));
            }
            match r.phase {
                Phase::Invoke => {
                    if outstanding.contains_key(&r.process) {
                        return Err(malformed("invoked while its previous op is outstanding"));
                    }
                    if r.op.has_result() {
                        return Err(malformed("an invocation cannot carry a result"));
                    }
                    outstanding.insert(r.process, ops.len());
                    ops.push(Operation {
                        process: r.process,
                        key: r.key.clone(),
                        op: r.op.clone(),
                        outcome: Outcome::Info,
                        invoke_ns: r.time_ns,
                        complete_ns: None,
                        invocation: r.clone(),
                        completion: None,
                    });
                }
                Phase::Ok | Phase::Fail | Phase::Info => {
                    let Some(at) = outstanding.remove(&r.process) else {
                        return Err(malformed(
                            "completion without an outstanding invocation (or timestamps not \
                             monotonic)",
                        ));
                    };
                    let op = &mut ops[at];
                    if op.key != r.key || !op.op.answered_by(&r.op) {
                        return Err(malformed(&format!(
                            "completion does not match the invocation of {:?} on key {:?}",
                            op.op, op.key
                        )));
                    }
                    match r.phase {
                        Phase::Ok => {
                            if matches!(
                                r.op,
                                Op::Cas {
                                    succeeded: None,
                                    ..
                                }
                            ) {
                                return Err(malformed("an ok cas must say whether it succeeded"));
                            }
                            op.outcome = Outcome::Ok;
                            op.op = r.op.clone();
                            op.complete_ns = Some(r.time_ns);
                        }
                        Phase::Fail => {
                            if r.op.has_result() {
                                return Err(malformed("a failed op cannot carry a result"));
                            }
                            op.outcome = Outcome::Fail;
                            op.complete_ns = Some(r.time_ns);
                        }
                        _ => {
                            if r.op.has_result() {
                                return Err(malformed("an info op cannot carry a result"));
                            }
                            retired.insert(r.process, r.time_ns);
                        }
                    }
                    op.completion = Some(r.clone());
                }
            }
        }
        Ok(ops)
    }
}

/// Appends records to one history file, one flushed line each, so that a crash of the
/// workload loses nothing it has already acknowledged to itself.
pub struct HistoryWriter {
    path: PathBuf,
    file: File,
}

impl HistoryWriter {
    /// Opens `path` for appending, creating it if missing.
    pub fn open(path: impl AsRef<Path>) -> Result<HistoryWriter> {
        let path = path.as_ref().to_owned();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        Ok(HistoryWriter { path, file })
    }

    /// Writes one record as one line (a single `write` call, so lines never interleave).
    pub fn append(&mut self, record: &Record) -> Result<()> {
        let mut line = Vec::with_capacity(128);
        write_line(&mut line, record).map_err(|e| Error::io(&self.path, e))?;
        self.file
            .write_all(&line)
            .map_err(|e| Error::io(&self.path, e))
    }
}

fn write_line(out: &mut impl Write, record: &Record) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, record)?;
    out.write_all(b"\n")
}

/// The files directly in `dir` whose name ends in `.{ext}`, sorted by name.
pub(crate) fn files_with_extension(dir: &Path, ext: &str) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == ext) {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(process: u32, op: Op, phase: Phase, time_ns: u64) -> Record {
        Record {
            process,
            key: "k".into(),
            op,
            phase,
            time_ns,
        }
    }

    #[test]
    fn json_lines_round_trip_and_are_greppable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client-0.jsonl");
        let records = vec![
            rec(0, Op::cas("a", "b"), Phase::Invoke, 1),
            rec(0, Op::cas_ok("a", "b", false), Phase::Ok, 2),
            rec(1, Op::read(), Phase::Invoke, 3),
            rec(1, Op::read_ok(Some("a")), Phase::Ok, 4),
        ];
        History::append(&path, &records[..2]).unwrap();
        History::append(&path, &records[2..]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 4);
        assert!(text.lines().next().unwrap().contains(r#""type":"cas""#));
        assert!(text.contains(r#""succeeded":false"#));
        assert_eq!(History::load(&path).unwrap().records, records);
        assert_eq!(History::load_dir(dir.path()).unwrap().records, records);
    }

    #[test]
    fn malformed_line_is_an_error_with_its_line_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.jsonl");
        std::fs::write(
            &path,
            "\n{\"process\":0,\"key\":\"k\",\"op\":{\"type\":\"re",
        )
        .unwrap();
        let err = History::load(&path).unwrap_err();
        assert!(matches!(err, Error::Json { line: 2, .. }), "{err}");
    }

    #[test]
    fn pairs_per_process_and_treats_missing_completion_as_info() {
        let h = History {
            records: vec![
                rec(1, Op::write("x"), Phase::Invoke, 5),
                rec(0, Op::read(), Phase::Invoke, 1),
                rec(0, Op::read_ok(Some("x")), Phase::Ok, 9),
                rec(2, Op::cas("x", "y"), Phase::Invoke, 10),
                rec(2, Op::cas("x", "y"), Phase::Fail, 11),
            ],
        };
        let ops = h.operations().unwrap();
        assert_eq!(ops.len(), 3);
        assert_eq!(ops[0].op, Op::read_ok(Some("x")));
        assert_eq!((ops[0].invoke_ns, ops[0].complete_ns), (1, Some(9)));
        assert_eq!((ops[1].outcome, ops[1].complete_ns), (Outcome::Info, None));
        assert!(ops[1].completion.is_none());
        assert_eq!(ops[2].outcome, Outcome::Fail);
    }

    #[test]
    fn rejects_what_a_correct_harness_cannot_produce() {
        let cases: Vec<(&str, Vec<Record>)> = vec![
            (
                "outstanding",
                vec![
                    rec(0, Op::read(), Phase::Invoke, 1),
                    rec(0, Op::read(), Phase::Invoke, 2),
                ],
            ),
            (
                "without an outstanding",
                vec![rec(0, Op::read_ok(None), Phase::Ok, 1)],
            ),
            (
                "retired",
                vec![
                    rec(0, Op::write("a"), Phase::Invoke, 1),
                    rec(0, Op::write("a"), Phase::Info, 2),
                    rec(0, Op::read(), Phase::Invoke, 3),
                ],
            ),
            (
                "does not match",
                vec![
                    rec(0, Op::write("a"), Phase::Invoke, 1),
                    rec(0, Op::write("b"), Phase::Ok, 2),
                ],
            ),
            (
                "must say whether",
                vec![
                    rec(0, Op::cas("a", "b"), Phase::Invoke, 1),
                    rec(0, Op::cas("a", "b"), Phase::Ok, 2),
                ],
            ),
            (
                "invocation cannot carry",
                vec![rec(0, Op::read_ok(Some("a")), Phase::Invoke, 1)],
            ),
            (
                "failed op cannot carry",
                vec![
                    rec(0, Op::cas("a", "b"), Phase::Invoke, 1),
                    rec(0, Op::cas_ok("a", "b", true), Phase::Fail, 2),
                ],
            ),
        ];
        for (want, records) in cases {
            let err = History { records }.operations().unwrap_err().to_string();
            assert!(err.contains(want), "{want}: {err}");
        }
    }
}
