//! The `caas-gateway` binary: parses configuration, follows the registry's route cache and runs
//! the gateway until Ctrl-C or SIGTERM.

use anyhow::Context as _;
use caas_gateway::{Config, Gateway, RouteSnapshot, RouteStatus};
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

    /// Worker threads; 0 means one per CPU. With 1 the gateway runs a single-threaded event
    /// loop (like one nginx worker), which spends the least CPU per request.
    #[arg(long, env = "CAAS_GATEWAY_THREADS", default_value_t = 0)]
    threads: usize,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = match cli.threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        0 => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
    .context("cannot start the async runtime")?;
    rt.block_on(serve(cli))
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        // Colours only for a person at a terminal; log files stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
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
    let (status_tx, status) = watch::channel(RouteStatus::Starting {
        reason: format!("connecting to ZooKeeper at {}", zk.connect),
    });
    tokio::spawn(follow_routes(zk, tx, status_tx));
    Gateway::bind(cli.gateway)
        .await
        .context("gateway failed")?
        .with_route_status(status)
        .serve(routes, shutdown_signal())
        .await
        .context("gateway failed")
}

/// How often the cache's connection state is looked at for `/healthz`.
const STATUS_EVERY: Duration = Duration::from_millis(500);

/// Starts the route cache (retrying until ZooKeeper answers), forwards its snapshots and keeps
/// the route status current.
async fn follow_routes(
    zk: ZkConfig,
    tx: watch::Sender<Arc<RouteSnapshot>>,
    status: watch::Sender<RouteStatus>,
) {
    let cache = loop {
        match RouteCache::start(&zk).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(error = %e, connect = %zk.connect, "route cache not started; retrying");
                status.send_replace(RouteStatus::Starting {
                    reason: e.to_string(),
                });
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    tracing::info!(connect = %zk.connect, "route cache started");
    status.send_replace(RouteStatus::Live);
    let mut rx = cache.subscribe();
    let mut tick = tokio::time::interval(STATUS_EVERY);
    let mut snap = rx.borrow_and_update().clone();
    loop {
        if tx.send(snap).is_err() {
            break;
        }
        loop {
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    break;
                }
                _ = tick.tick() => {
                    let connected = cache.is_connected();
                    status.send_if_modified(|s| match (connected, &*s) {
                        (true, RouteStatus::Live) | (false, RouteStatus::Disconnected { .. }) => false,
                        (true, _) => {
                            tracing::info!("route cache connected again");
                            *s = RouteStatus::Live;
                            true
                        }
                        (false, _) => {
                            tracing::warn!("route cache lost ZooKeeper; serving the last good routes");
                            *s = RouteStatus::Disconnected {
                                since: std::time::Instant::now(),
                                reason: format!("no ZooKeeper session to {}", zk.connect),
                            };
                            true
                        }
                    });
                }
            }
        }
        snap = rx.borrow_and_update().clone();
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
