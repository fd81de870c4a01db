//! Stopping cleanly on a signal.

/// Resolves on SIGINT (Ctrl-C) or SIGTERM: the programs stop a run cleanly
/// on either (temporary files removed, every resource reported, counters
/// printed).
pub async fn interrupted() {
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let terminate = async {
        match sigterm.as_mut() {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
