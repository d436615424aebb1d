//! Warnings for the response's `Warning` headers (`299 - "text"`), recorded by whatever code
//! serves the request (codec, registry), as kube-apiserver's request-context warning recorder.
//! The handlers collect them and write the headers.

use std::cell::RefCell;
use std::future::Future;

tokio::task_local! {
    static WARNINGS: RefCell<Vec<String>>;
}

/// Runs `f` with a warning recorder; returns its output and the warnings it recorded.
pub async fn collect<F: Future>(f: F) -> (F::Output, Vec<String>) {
    WARNINGS
        .scope(RefCell::new(Vec::new()), async {
            let out = f.await;
            (out, WARNINGS.with(|w| w.take()))
        })
        .await
}

/// Records a warning for the current request (a no-op outside `collect`); a warning already
/// recorded is not repeated (an update retried after a lost race checks its object again).
pub fn add(text: String) {
    let _ = WARNINGS.try_with(|w| {
        let mut w = w.borrow_mut();
        if !w.contains(&text) {
            w.push(text);
        }
    });
}
