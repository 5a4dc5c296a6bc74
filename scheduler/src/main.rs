//! The `caas-scheduler` binary: parses configuration, sets up logging, and runs the scheduler
//! until SIGINT or SIGTERM.

use anyhow::Context;
use caas_scheduler::Config;
use clap::Parser;
use std::time::Duration;

/// How long work still running after the server stopped (a blocking lookup, a container stop
/// in its grace period) may hold the process. Cutting it is safe: every step is recorded before
/// it is taken, and the next leader's reconciler finishes or rolls back what was cut.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    init_logging(&config.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let result = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        caas_scheduler::run(config, listener, shutdown_signal())
            .await
            .context("scheduler failed")
    });
    // Dropping a runtime waits for its blocking tasks without a bound; a stopped scheduler that
    // lingers keeps a restart from knowing whether it is still coming up.
    rt.shutdown_timeout(SHUTDOWN_GRACE);
    result?;
    tracing::info!("scheduler stopped");
    Ok(())
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,sqlx=warn,zookeeper_client=warn")
    });
    // Colours only for a person at a terminal; log files stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutting down");
}
