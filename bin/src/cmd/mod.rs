//! One module per subcommand.

pub mod apiserver;
pub mod controller_manager;
pub mod scheduler;
pub mod kubelet;
pub mod store;
pub mod up;

/// Resolves on SIGTERM or Ctrl-C: when a server subcommand shuts down gracefully.
async fn wait_for_termination() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        r = tokio::signal::ctrl_c() => r?,
    }
    Ok(())
}
