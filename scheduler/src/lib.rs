//! The caas scheduler as a library: the store (MySQL), placement with optimistic locking, the
//! admin API, deploy orchestration, health healing, the reconciler, and auto-deploy of tags the
//! registry reports as pushed. `main.rs` only parses
//! configuration and calls [`run`], so tests drive the same code without a process.

pub mod api;
pub mod autodeploy;
pub mod config;
pub mod deploy;
pub mod error;
pub mod healing;
pub mod metrics;
pub mod placement;
pub mod reconcile;
pub mod registry_events;
pub mod store;

pub use config::Config;
pub use error::{Error, Result};

use caas_registry::{
    AclPolicy, HealthChecker, HealthEvent, LeaderElection, Registry, ZkAuth, ZkConfig,
};
use deploy::{zk_error, Orchestrator};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use store::Store;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

/// How often the leader syncs the health checker's targets with the database, so instances
/// deployed by other scheduler processes are checked within this time.
const HEALTH_SYNC: Duration = Duration::from_secs(2);

/// The ZooKeeper settings of a scheduler.
pub fn zk_config(config: &Config) -> Result<(ZkConfig, AclPolicy)> {
    let auth: ZkAuth = config
        .zk_auth
        .as_deref()
        .ok_or_else(|| {
            Error::Invalid(
                "zookeeper credential: set CAAS_ZK_AUTH or --zk-auth (user:password)".into(),
            )
        })?
        .parse()
        .map_err(|_| Error::Invalid("zookeeper credential: expected user:password".into()))?;
    let reader = match config.zk_read_auth.as_deref() {
        Some(r) => Some(r.parse().map_err(|_| {
            Error::Invalid("zookeeper read credential: expected user:password".into())
        })?),
        None => None,
    };
    let zk = config.zk.zk_config(Some(auth.clone()));
    Ok((zk, AclPolicy::new(auth, reader)))
}

/// A running scheduler's parts, for tests and for [`run`].
pub struct Scheduler {
    /// The admin API's state (store, orchestrator, config).
    pub state: api::AppState,
    election: LeaderElection,
    events: mpsc::Receiver<HealthEvent>,
}

impl Scheduler {
    /// Connects to MySQL (applying migrations) and ZooKeeper (creating the layout) and joins
    /// the leader election.
    pub async fn start(config: Config) -> Result<Scheduler> {
        let config = Arc::new(config);
        let store = Store::connect(&config.database_url, config.db_max_connections).await?;
        let (zk, acl) = zk_config(&config)?;
        let registry = Registry::connect(&zk, acl).await.map_err(zk_error)?;
        registry.ensure_layout().await.map_err(zk_error)?;
        let (health, events) = HealthChecker::new(registry.clone(), config.health_concurrency);
        let orchestrator = Arc::new(Orchestrator::new(
            config.clone(),
            store.clone(),
            registry,
            health,
        ));
        let id = format!("{}-{}", config.listen, std::process::id());
        let election = LeaderElection::join(&zk, &id).await.map_err(zk_error)?;
        let state = api::AppState::new(config, store, orchestrator);
        Ok(Scheduler {
            state,
            election,
            events,
        })
    }

    /// Serves the admin API on `listener` and runs the leader duties until `shutdown` completes.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let orchestrator = self.state.orchestrator.clone();
        let leader_task = tokio::spawn(leader_duties(
            orchestrator,
            self.election.subscribe(),
            self.events,
            stop_rx,
        ));
        let app = api::router(self.state);
        tracing::info!(addr = ?listener.local_addr().ok(), "admin API listening");
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                shutdown.await;
                let _ = stop_tx.send(true);
            })
            .await;
        let _ = leader_task.await;
        self.election.resign().await;
        served.map_err(|e| Error::Invalid(format!("admin API server: {e}")))
    }
}

/// Connects everything, then serves until `shutdown`.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    Scheduler::start(config)
        .await?
        .serve(listener, shutdown)
        .await
}

/// While this process leads: run the health checker, act on its events, keep its targets in
/// sync, and reconcile at start and periodically. Stops when leadership is lost or on shutdown.
async fn leader_duties(
    orch: Arc<Orchestrator>,
    mut leader: watch::Receiver<bool>,
    mut events: mpsc::Receiver<HealthEvent>,
    mut stop: watch::Receiver<bool>,
) {
    let backoff = Arc::new(healing::Backoff::default());
    loop {
        tokio::select! {
            ok = until(&mut leader, true) => if !ok { return },
            _ = until(&mut stop, true) => return,
        }
        tracing::info!("this scheduler is the leader: running health checks and the reconciler");
        orch.set_leader(true);
        let mut lost = leader.clone();
        let mut stop_checker = stop.clone();
        let checker = orch.health.clone();
        let checker_task = tokio::spawn(checker.run(async move {
            tokio::select! {
                _ = until(&mut lost, false) => {}
                _ = until(&mut stop_checker, true) => {}
            }
        }));
        let mut sync = tokio::time::interval(HEALTH_SYNC);
        let mut reconcile =
            tokio::time::interval(Duration::from_secs(orch.config.reconcile_secs.max(1)));
        loop {
            tokio::select! {
                _ = until(&mut leader, false) => break,
                _ = until(&mut stop, true) => break,
                Some(ev) = events.recv() => {
                    if let Err(e) = orch.on_health_event(ev, &backoff).await {
                        tracing::warn!(error = %e, "could not act on a health event");
                    }
                }
                _ = sync.tick() => {
                    if let Err(e) = orch.sync_health_targets().await {
                        tracing::warn!(error = %e, "could not sync health-check targets");
                    }
                }
                _ = reconcile.tick() => {
                    if let Err(e) = orch.reconcile().await {
                        tracing::warn!(error = %e, "reconciliation pass failed");
                    }
                }
            }
        }
        orch.set_leader(false);
        let _ = checker_task.await;
        if *stop.borrow() {
            return;
        }
        tracing::warn!("this scheduler lost the leadership");
    }
}

/// Waits until `rx` holds `want`; false if its sender is gone.
async fn until(rx: &mut watch::Receiver<bool>, want: bool) -> bool {
    rx.wait_for(|v| *v == want).await.is_ok()
}
