//! The Jepsen-style chaos harness for the store: what the workloads record, the checkers that
//! judge it, and `chaos run`, which drives three real members through faults.
//!
//! * [`history`]: the register workload's operation records (`invoke` / `ok` / `fail` /
//!   `info`, JSON lines) and their pairing into [`history::Operation`]s.
//! * [`linearizable`]: is each key's register history linearizable? (Wing–Gong search with
//!   Lowe's memoization; a budget turns "too hard" into `Unknown`, never a guess; failures come
//!   with a minimal sub-history.)
//! * [`watch_check`]: did every watcher see a contiguous, duplicate-free, never-backwards
//!   stretch of the store's one revision history?
//! * [`check`]: both checkers over one directory, one verdict (`chaos check --history DIR`).
//! * [`schedule`]: the nemeses, the fault/heal schedule and the partition shapes (pure).
//! * [`summary`]: operations by outcome, availability per fault, stale reads, latency SVG (pure).
//! * [`run`]: namespaces, members, nemesis and workloads (`chaos run`; needs root).
#![deny(clippy::all)]

pub mod check;
mod error;
pub mod history;
pub mod linearizable;
pub mod run;
pub mod schedule;
pub mod summary;
pub mod watch_check;

pub use error::{Error, Result};
