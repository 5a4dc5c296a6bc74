//! The `caas-gateway` binary: parses configuration, follows the registry's route cache and runs
//! the gateway until Ctrl-C or SIGTERM.

use anyhow::Context as _;
use caas_gateway::{Config, RouteSnapshot};
use caas_registry::{RouteCache, ZkAuth, ZkConfig};
use clap::Parser;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// caas-gateway: round-robin reverse proxy for caas apps.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    gateway: Config,

    /// ZooKeeper connect string (`host:port,...`).
    #[arg(long, env = "CAAS_ZK", default_value = "127.0.0.1:2181")]
    zk: String,

    /// ZooKeeper chroot the caas tree lives under, if any.
    #[arg(long, env = "CAAS_ZK_CHROOT")]
    zk_chroot: Option<String>,

    /// Read-only digest credential `user:password` for ZooKeeper.
    #[arg(long, env = "CAAS_ZK_READ_AUTH", hide_env_values = true)]
    zk_auth: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        // Colours only for a person at a terminal; log files stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let mut zk = ZkConfig::new(cli.zk.clone());
    if let Some(root) = cli.zk_chroot.clone().filter(|r| !r.is_empty()) {
        zk = zk.with_chroot(root);
    }
    if let Some(auth) = &cli.zk_auth {
        let auth: ZkAuth = auth.parse().context("CAAS_ZK_READ_AUTH")?;
        zk = zk.with_auth(auth);
    }
    // Serve from the start (404 for everything) and switch to the cache's snapshots once
    // ZooKeeper answers, so a gateway started before ZooKeeper comes up on its own.
    let (tx, routes) = watch::channel(Arc::new(RouteSnapshot::default()));
    tokio::spawn(follow_routes(zk, tx));
    caas_gateway::run(cli.gateway, routes, shutdown_signal())
        .await
        .context("gateway failed")
}

/// Starts the route cache (retrying until ZooKeeper answers) and forwards its snapshots.
async fn follow_routes(zk: ZkConfig, tx: watch::Sender<Arc<RouteSnapshot>>) {
    let cache = loop {
        match RouteCache::start(&zk).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(error = %e, connect = %zk.connect, "route cache not started; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    tracing::info!(connect = %zk.connect, "route cache started");
    let mut rx = cache.subscribe();
    loop {
        let snap = rx.borrow_and_update().clone();
        if tx.send(snap).is_err() || rx.changed().await.is_err() {
            break;
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
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
