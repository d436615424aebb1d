//! The Jepsen-style chaos harness for the store: what the workloads record and the checkers
//! that judge it. Pure logic — no store, no network — so it builds and tests in seconds.
//!
//! * [`history`]: the register workload's operation records (`invoke` / `ok` / `fail` /
//!   `info`, JSON lines) and their pairing into [`history::Operation`]s.
//! * [`linearizable`]: is each key's register history linearizable? (Wing–Gong search with
//!   Lowe's memoization; a budget turns "too hard" into `Unknown`, never a guess; failures come
//!   with a minimal sub-history.)
//! * [`watch_check`]: did every watcher see a contiguous, duplicate-free, never-backwards
//!   stretch of the store's one revision history?
//!
//! The `chaos` binary runs both over a directory: `chaos check --history DIR`.
#![deny(clippy::all)]

mod error;
pub mod history;
pub mod linearizable;
pub mod watch_check;

pub use error::{Error, Result};
