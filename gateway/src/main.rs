//! The `caas-gateway` binary: parses configuration and runs the gateway until Ctrl-C or SIGTERM.

use anyhow::Context as _;
use caas_gateway::{Config, RouteSnapshot};
use clap::Parser;
use std::sync::Arc;

/// caas-gateway: round-robin reverse proxy for caas apps.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    gateway: Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let (_routes_tx, routes) = tokio::sync::watch::channel(Arc::new(RouteSnapshot::default()));
    caas_gateway::run(cli.gateway, routes, shutdown_signal())
        .await
        .context("gateway failed")
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
