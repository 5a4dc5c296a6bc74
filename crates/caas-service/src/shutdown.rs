//! When a daemon stops: the signal a service manager or a person sends.

/// Completes on the first Ctrl-C (SIGINT) or SIGTERM, the signals `docker stop`, systemd and
/// `scripts/down` send. Where SIGTERM cannot be listened to (not Unix, or the handler cannot be
/// installed), only Ctrl-C. Logs nothing: each daemon says what it does next.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = ctrl_c.await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::time::Duration;

    // One test, not two: a SIGTERM sent to the test process reaches every listener in it.
    #[cfg(unix)]
    #[tokio::test]
    async fn waits_until_sigterm() {
        // Listening first replaces SIGTERM's default action (ending the process) for good, so
        // the signals below only reach the listeners, whenever `shutdown_signal` installs its own.
        let _guard =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(100), shutdown_signal()).await;
        assert!(waiting.is_err(), "completed without a signal");

        let waiting = tokio::spawn(shutdown_signal());
        let pid = std::process::id().to_string();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !waiting.is_finished() {
            assert!(tokio::time::Instant::now() < deadline, "SIGTERM not seen");
            let sent = std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap();
            assert!(sent.success());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
