//! The crate's one error type: bad input files and malformed histories. Checker *verdicts*
//! (valid / invalid / unknown) are results, not errors.

use std::path::PathBuf;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a history or watch file could not be loaded or checked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A line or file is not the JSON we expect.
    #[error("{path}:{line}: {source}")]
    Json {
        path: PathBuf,
        /// 1-based line for JSON-lines files, 0 for whole-file JSON.
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    /// The records do not form a well-formed history (a harness bug, never a store bug): e.g. a
    /// process with two outstanding operations, a completion without an invocation, or a
    /// process reused after an indefinite (`info`) completion.
    #[error("malformed history: {0}")]
    MalformedHistory(String),
    /// The watch ground truth or a watcher's observations are not well-formed.
    #[error("malformed watch input: {0}")]
    MalformedWatch(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
