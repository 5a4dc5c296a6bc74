//! The caas scheduler as a library. [`ControlPlane`] wires the parts, each holding only what it
//! needs: `Lifecycle` (one instance's life), `Deployments`, `Apps`, `Blacklist`, `Healer`,
//! `Reconciler`, `AutoDeployer`, `Releases`, `AppConfigs`, the log collector, `Events`, `Webhooks` and
//! the gateways' `DemandReports`, over the store (MySQL), placement with optimistic locking and
//! three seams (`engine`, `routes`, `health_targets`); `LeaderDuties` runs what only the leader
//! does; `api` is the admin API. `main.rs` only parses configuration and calls [`run`], so
//! tests drive the same code without a process. docs/ARCHITECTURE.md is the map.

pub mod api;
pub mod app_config;
pub mod app_lock;
pub mod apps;
pub mod autodeploy;
pub mod autoscale;
pub mod blacklist;
pub mod config;
pub mod control;
pub mod deployments;
pub mod domain_policy;
pub mod engine;
pub mod error;
pub mod events;
pub mod fence;
pub mod healing;
pub mod health_targets;
pub mod host_watch;
pub mod image_digest;
pub mod image_purge;
pub mod image_push;
pub mod jobs;
pub mod leader;
pub mod lifecycle;
pub mod logs;
pub mod metrics;
pub mod placement;
pub mod progress;
pub mod reconcile;
pub mod recycle;
pub mod registry_token;
pub mod releases;
pub mod routes;
pub mod schedules;
pub mod store;
pub mod traffic;
pub mod workflows;

pub use config::Config;
pub use control::ControlPlane;
pub use error::{Error, Result};

use caas_registry::{
    AclPolicy, HealthChecker, HealthEvent, LeaderElection, Registry, ZkAuth, ZkConfig,
};
use engine::{DockerConnector, Engines};
use std::future::Future;
use std::sync::Arc;
use store::Store;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

/// The ZooKeeper settings of a scheduler.
pub fn zk_config(config: &Config) -> Result<(ZkConfig, AclPolicy)> {
    let auth: ZkAuth = config
        .zk_auth
        .as_deref()
        .ok_or_else(|| {
            Error::Config(
                "zookeeper credential: set CAAS_ZK_AUTH or --zk-auth (user:password)".into(),
            )
        })?
        .parse()
        .map_err(|_| Error::Config("zookeeper credential: expected user:password".into()))?;
    let reader = match config.zk_read_auth.as_deref() {
        Some(r) => Some(r.parse().map_err(|_| {
            Error::Config("zookeeper read credential: expected user:password".into())
        })?),
        None => None,
    };
    let zk = config.zk.zk_config(Some(auth.clone()));
    Ok((zk, AclPolicy::new(auth, reader)))
}

/// A running scheduler's parts, for tests and for [`run`].
pub struct Scheduler {
    /// The admin API's state (configuration, token hashes, the control plane).
    pub state: api::AppState,
    election: LeaderElection,
    checker: HealthChecker,
    events: mpsc::Receiver<HealthEvent>,
}

impl Scheduler {
    /// Connects to MySQL (applying migrations) and ZooKeeper (creating the layout) and joins
    /// the leader election.
    pub async fn start(config: Config) -> Result<Scheduler> {
        let config = Arc::new(config);
        // A malformed key stops the start before anything is touched.
        let secrets_key = app_config::secrets_key(&config)?;
        let registry_tokens = registry_token::RegistryTokens::load(&config)?.map(Arc::new);
        let store = Store::connect(&config.database_url, config.db_max_connections)
            .await?
            .with_port_quarantine(config.port_quarantine_secs);
        let (zk, acl) = zk_config(&config)?;
        let registry = Registry::connect(&zk, acl).await?;
        registry.ensure_layout().await?;
        let (health, events) = HealthChecker::new(registry.clone(), config.health_concurrency);
        let engines = Arc::new(Engines::new(DockerConnector::new(&config)));
        let control = ControlPlane::new(
            config.clone(),
            store,
            Arc::new(registry),
            engines,
            Arc::new(health.clone()),
            secrets_key,
        );
        let id = format!("{}-{}", config.listen, std::process::id());
        let election = LeaderElection::join(&zk, &id).await?;
        control.fence.arm(election.fence());
        let mut state = api::AppState::new(control);
        state.registry_tokens = registry_tokens;
        Ok(Scheduler {
            state,
            election,
            checker: health,
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
        let duties = leader::LeaderDuties::new(&self.state.control, self.checker);
        let leader_task = tokio::spawn(duties.run(self.election.subscribe(), self.events, stop_rx));
        let control = self.state.control.clone();
        let app = api::router(self.state);
        tracing::info!(addr = ?listener.local_addr().ok(), "admin API listening");
        let served = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
            control.close_streams();
        })
        .await;
        let _ = leader_task.await;
        self.election.resign().await;
        served.map_err(Error::Serve)
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

/// `caas-scheduler rotate-secrets-key`: re-seals every stored secret from the old key to the
/// new one, resumable (what is under the new key already is skipped).
pub async fn rotate_secrets_key(args: config::RotateSecretsKey) -> Result<app_config::Rotation> {
    let parse = |what: &str, k: &config::Redacted| {
        app_config::crypto::SecretsKey::parse(k.expose())
            .map_err(|e| Error::Config(format!("{what}: {e}")))
    };
    let old = parse("--old-key / CAAS_OLD_SECRETS_KEY", &args.old_key)?;
    let new = parse("--secrets-key / CAAS_SECRETS_KEY", &args.new_key)?;
    let store = Store::connect(&args.database_url, 2).await?;
    app_config::rotate(&store, &old, &new).await
}
