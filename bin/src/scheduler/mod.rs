//! The scheduler: places pods that have no node on one that can run them, as kube-scheduler
//! does, through the API (a Binding per pod), so it works with any node objects, whoever
//! registers them.
//!
//! Layout: `resources` (what a pod asks for), `cache` (what each node already holds, with
//! pods bound but not yet seen bound), `filter` and `score` (pure decisions per node),
//! `algorithm` (one pod: filter, score, pick, or kube's "0/3 nodes are available" message),
//! `driver` (reflectors, the pass loop and the API writes).

pub mod algorithm;
pub mod cache;
pub mod driver;
pub mod filter;
pub mod resources;
pub mod score;

use std::time::Duration;

pub use driver::run;

/// A failed API call for one pod; the driver logs it and retries that pod with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The apiserver refused or the request failed.
    #[error("{action} pod {pod}: {source}")]
    Api {
        /// What was being done ("binding", ...).
        action: &'static str,
        /// namespace/name.
        pod: String,
        /// The client's error.
        source: kube::Error,
    },
    /// No answer in time.
    #[error("{action} pod {pod}: no answer within {after:?}")]
    Timeout {
        /// What was being done.
        action: &'static str,
        /// namespace/name.
        pod: String,
        /// The bound that passed.
        after: Duration,
    },
}

impl Error {
    /// A 409: the pod is already bound or being deleted (not worth retrying soon).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Api { source: kube::Error::Api(s), .. } if s.code == 409)
    }

    /// No answer from the apiserver at all (timeout, connection refused, TLS): the other
    /// pods' calls would fail the same way, so the pass stops.
    pub fn apiserver_unreachable(&self) -> bool {
        !matches!(
            self,
            Error::Api {
                source: kube::Error::Api(_),
                ..
            }
        )
    }
}
