//! The `caas-scheduler` binary: parses configuration, sets up logging, and runs the scheduler
//! until SIGINT or SIGTERM. `caas-scheduler rotate-secrets-key` re-seals the stored secrets
//! under a new key instead (docs/OPERATIONS.md).

use anyhow::Context;
use caas_scheduler::config::RotateSecretsKey;
use caas_scheduler::Config;
use caas_service::LogFormat;
use clap::Parser;
use std::time::Duration;

/// How long work still running after the server stopped (a blocking lookup, a container stop
/// in its grace period) may hold the process. Cutting it is safe: every step is recorded before
/// it is taken, and the next leader's reconciler finishes or rolls back what was cut.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("rotate-secrets-key") {
        return rotate_secrets_key(RotateSecretsKey::parse_from(std::env::args().skip(1)));
    }
    let config = Config::parse();
    caas_service::init_logging(
        "info,sqlx=warn,zookeeper_client=warn",
        LogFormat::from_name(&config.log_format),
    );
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

/// Re-seals every stored secret from the old key to the new one and says what it did.
fn rotate_secrets_key(args: RotateSecretsKey) -> anyhow::Result<()> {
    caas_service::init_logging("info,sqlx=warn", LogFormat::from_name("text"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let done = rt
        .block_on(caas_scheduler::rotate_secrets_key(args))
        .context("rotating the secrets key failed")?;
    println!(
        "re-sealed {} secret(s) in {} config version(s); {} were under the new key already",
        done.resealed, done.versions, done.already
    );
    Ok(())
}

/// Ctrl-C or SIGTERM, then a log line: the scheduler says it heard the signal.
async fn shutdown_signal() {
    caas_service::shutdown_signal().await;
    tracing::info!("shutting down");
}
