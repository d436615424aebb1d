//! Helpers shared by the multi-member test files: free ports, bounded calls, bounded polls.
#![allow(dead_code)] // each test file uses its own subset

use std::future::Future;
use std::time::{Duration, Instant};

/// `n` distinct free loopback ports: all bound at once (so they differ), then released.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind")).collect();
    listeners.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

/// Runs `fut`, failing the test if it does not finish within `bound` (a hang).
pub async fn bounded<T>(what: &str, bound: Duration, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(bound, fut).await {
        Ok(t) => t,
        Err(_) => panic!("{what}: no answer within {bound:?} (hang)"),
    }
}

/// Polls `check` every 20 ms until it returns `Some`, failing with `what` after `timeout`.
pub async fn poll<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(t) = check().await {
            return t;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
