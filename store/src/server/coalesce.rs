//! One operation answers every caller that asked before it started: how concurrent
//! linearizable reads share one leadership check (read index) instead of one round of
//! heartbeats each.
//!
//! Worked example: reads A and B arrive, a check starts for both; C arrives while it runs and
//! waits for the next check, because a check that began before C arrived could miss a write
//! acknowledged just before C. When the first check answers A and B, the second starts for C
//! (and anything else that queued meanwhile).

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

use crate::{Error, Result};

/// Callers queued beyond this wait for room: a bound, not a limit anyone should reach.
const MAX_WAITING: usize = 4096;

/// A shared runner of one async operation; see the module docs.
#[derive(Debug)]
pub struct Coalesced<T> {
    waiting: mpsc::Sender<oneshot::Sender<Result<T>>>,
}

impl<T: Clone + Send + 'static> Coalesced<T> {
    /// Starts the runner; it stops when the `Coalesced` is dropped.
    pub fn start<F, Fut>(operation: F) -> Self
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>> + Send,
    {
        let (waiting, mut queue) = mpsc::channel::<oneshot::Sender<Result<T>>>(MAX_WAITING);
        tokio::spawn(async move {
            while let Some(first) = queue.recv().await {
                let mut callers = vec![first];
                while let Ok(next) = queue.try_recv() {
                    callers.push(next);
                }
                let outcome = operation().await;
                for caller in callers {
                    // A caller that timed out has gone: nothing to tell it.
                    let _ = caller.send(outcome.clone());
                }
            }
        });
        Self { waiting }
    }

    /// The outcome of an operation that starts after this call.
    pub async fn call(&self) -> Result<T> {
        let (reply, outcome) = oneshot::channel();
        self.waiting.send(reply).await.map_err(|_| Error::Stopped)?;
        outcome.await.map_err(|_| Error::Stopped)?
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn callers_share_an_operation_that_started_after_they_asked() {
        let started = Arc::new(AtomicU64::new(0));
        let counter = started.clone();
        let coalesced = Arc::new(Coalesced::start(move || {
            let run = counter.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                Ok(run)
            }
        }));

        // Ten callers at once share at most two runs (depending on whether the runner wakes
        // before the other nine have queued).
        let calls: Vec<_> = (0..10)
            .map(|_| {
                let c = coalesced.clone();
                tokio::spawn(async move { c.call().await.unwrap() })
            })
            .collect();
        let mut runs = Vec::new();
        for call in calls {
            runs.push(call.await.unwrap());
        }
        assert!(runs.iter().all(|&r| r <= 2), "{runs:?}");
        let shared = started.load(Ordering::SeqCst);
        assert!(shared <= 2, "{shared} runs for 10 concurrent callers");

        // A caller arriving while a run is in progress never gets that run's answer.
        let c = coalesced.clone();
        let early = tokio::spawn(async move { c.call().await.unwrap() });
        tokio::time::sleep(Duration::from_millis(5)).await;
        let late = coalesced.call().await.unwrap();
        let early = early.await.unwrap();
        assert_eq!(early, shared + 1);
        assert_eq!(late, shared + 2);
    }

    #[tokio::test]
    async fn errors_reach_every_caller() {
        let coalesced = Coalesced::<u64>::start(|| async { Err(Error::NoLeader) });
        assert_eq!(coalesced.call().await, Err(Error::NoLeader));
    }
}
