//! Deploy orchestration: validate → claim → pull → run → wait for health → register → running,
//! and the reverse for scale-down and undeploy (deregister → drain → stop → remove → release).
//! Any failure part-way undoes what was done, so the admin API never leaves half a deploy.
//!
//! The [`Orchestrator`] owns the handles every step needs: the store, the ZooKeeper registry,
//! the health checker and one Docker engine client per host.

mod claims;
mod engines;
mod instance;
pub mod probe;
mod progress;
mod validate;
mod view;

pub use progress::Progress;
pub use validate::{check_instance_count, DeployPlan};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::metrics::DeployMetrics;
use crate::store::{DeploymentRow, DeploymentState, InstanceRow, Store};
use caas_deployer::RegistryCredentials;
use caas_registry::{HealthChecker, IpRule, Registry};
use caas_types::api::{self, InstanceState};
use caas_types::{AppId, Domain, HostName, Version};
use engines::Engines;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A per-deployment lock within one process.
type DeploymentLock = Arc<tokio::sync::Mutex<()>>;

/// Turns deployment requests into running, registered, health-checked containers.
pub struct Orchestrator {
    pub(crate) config: Arc<Config>,
    pub(crate) store: Store,
    pub(crate) registry: Registry,
    pub(crate) health: HealthChecker,
    pub(crate) engines: Engines,
    pub(crate) metrics: DeployMetrics,
    pub(crate) leader: AtomicBool,
    creds: Option<RegistryCredentials>,
    /// Serialises scale/undeploy of one deployment within this process (the database keeps
    /// several processes consistent; this keeps one process from racing itself).
    locks: Mutex<HashMap<(AppId, Version), DeploymentLock>>,
    blacklist_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Orchestrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Orchestrator")
            .field("namespace", &self.config.namespace)
            .finish_non_exhaustive()
    }
}

impl Orchestrator {
    /// An orchestrator over these handles.
    pub fn new(
        config: Arc<Config>,
        store: Store,
        registry: Registry,
        health: HealthChecker,
    ) -> Orchestrator {
        let creds = match (&config.registry_user, &config.registry_password) {
            (Some(u), Some(p)) => Some(RegistryCredentials {
                username: u.clone(),
                password: p.clone(),
                server: config.registry.clone(),
            }),
            _ => None,
        };
        Orchestrator {
            engines: Engines::new(&config),
            config,
            store,
            registry,
            health,
            metrics: DeployMetrics::default(),
            leader: AtomicBool::new(false),
            creds,
            locks: Mutex::new(HashMap::new()),
            blacklist_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The registry credentials pulls use.
    pub(crate) fn credentials(&self) -> Option<&RegistryCredentials> {
        self.creds.as_ref()
    }

    fn lock_for(&self, app: &AppId, version: &Version) -> DeploymentLock {
        let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        map.entry((app.clone(), version.clone()))
            .or_default()
            .clone()
    }

    /// Whether this process holds the scheduler leadership (runs health checks and the reconciler).
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed)
    }

    /// Records leadership changes.
    pub fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Ordering::Relaxed);
    }

    /// Whether ZooKeeper answers a read.
    pub async fn zookeeper_ok(&self) -> bool {
        tokio::time::timeout(Duration::from_secs(2), self.registry.blacklist())
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Prometheus text of the scheduler's metrics.
    pub fn render_metrics(&self, store: &Store) -> String {
        self.metrics.render(store.metrics())
    }

    /// Checks that a Docker endpoint answers (before a host is added).
    pub async fn check_engine(&self, url: &str) -> Result<()> {
        let d = self.engines.connect(url)?;
        d.ping()
            .await
            .map_err(|e| Error::Docker(format!("docker endpoint {url} does not answer: {e}")))
    }

    /// Drops the engine client of a removed host.
    pub fn forget_engine(&self, host: &HostName) {
        self.engines.forget(host);
    }

    /// Deploys a validated plan: all instances running and registered, or none.
    pub async fn deploy(&self, plan: DeployPlan, progress: Progress) -> Result<api::Deployment> {
        let started = Instant::now();
        let lock = self.lock_for(&plan.new.app, &plan.new.version);
        let _guard = lock.lock().await;
        let row = self.store.create_deployment(&plan.new).await?;
        // Everything after the row exists goes through the one rollback below, so a failure
        // here (even counting hosts) never leaves a `deploying` row behind.
        let placed = async {
            let count = self.instance_count(&row).await?;
            progress.step(
                None,
                "accepted",
                format!(
                    "deploying {} × {count} ({})",
                    row.spec.version, row.spec.image
                ),
            );
            self.add_instances(&row, count, &progress).await
        };
        match placed.await {
            Ok(()) => {
                self.store
                    .set_deployment_state(row.id, DeploymentState::Running)
                    .await?;
                self.metrics.observe_deploy(started.elapsed());
                DeployMetrics::inc(&self.metrics.deploys_ok);
                self.deployment(&row.spec.app, &row.spec.version).await
            }
            Err(e) => {
                DeployMetrics::inc(&self.metrics.deploys_failed);
                progress.step(None, "failed", format!("rolled back: {e}"));
                if let Err(cleanup) = self.store.delete_deployment(row.id).await {
                    // The reconciler removes a deployment row with no instances left.
                    tracing::warn!(error = %cleanup, deployment = row.id, "could not delete a failed deployment");
                }
                Err(e)
            }
        }
    }

    /// How many instances a deployment wants (global: one per ready host).
    async fn instance_count(&self, row: &DeploymentRow) -> Result<u32> {
        if !row.spec.placement.global {
            return Ok(row.spec.instances);
        }
        let ready = self
            .store
            .list_hosts()
            .await?
            .into_iter()
            .filter(|h| h.state == api::HostState::Ready)
            .count();
        Ok(u32::try_from(ready).unwrap_or(u32::MAX))
    }

    /// Claims and starts `count` more instances of `row`; all or none.
    pub(crate) async fn add_instances(
        &self,
        row: &DeploymentRow,
        count: u32,
        progress: &Progress,
    ) -> Result<()> {
        if count == 0 {
            return Ok(());
        }
        let claimed = claims::claim(&self.store, row, count).await?;
        for c in &claimed {
            progress.step(
                Some(&c.id),
                "placed",
                format!("on {} at {}:{}", c.host, c.host_address, c.host_port),
            );
        }
        let results = futures::future::join_all(
            claimed
                .iter()
                .map(|c| self.start_instance(row, c, progress)),
        )
        .await;
        let first_error = results.iter().position(Result::is_err);
        let Some(failed_at) = first_error else {
            return Ok(());
        };
        // Undo the instances that did start; the failed ones cleaned up after themselves.
        let mut error = None;
        let mut started = Vec::new();
        for (c, r) in claimed.into_iter().zip(results) {
            match r {
                Ok(()) => started.push(c),
                Err(e) if error.is_none() => error = Some(e),
                Err(_) => {}
            }
        }
        tracing::warn!(
            failed_at,
            started = started.len(),
            "rolling back a partial deploy"
        );
        self.teardown(&started, false).await;
        Err(error.unwrap_or_else(|| Error::Docker("deploy failed".into())))
    }

    /// Scales a deployment to `n` instances.
    pub async fn scale(
        &self,
        app: &AppId,
        version: &Version,
        n: u32,
        progress: Progress,
    ) -> Result<api::Deployment> {
        let lock = self.lock_for(app, version);
        let _guard = lock.lock().await;
        let row = self.store.get_deployment(app, version).await?;
        let live: Vec<InstanceRow> = self
            .store
            .list_instances_by_deployment(row.id)
            .await?
            .into_iter()
            .filter(|i| i.state != InstanceState::Stopping)
            .collect();
        let current = u32::try_from(live.len()).unwrap_or(u32::MAX);
        if n > current {
            progress.step(None, "scaling", format!("{current} → {n}"));
            self.add_instances(&row, n - current, &progress).await?;
        } else if n < current {
            progress.step(None, "scaling", format!("{current} → {n}"));
            let victims = pick_victims(live, (current - n) as usize);
            self.store.set_deployment_instances(row.id, n).await?;
            self.teardown(&victims, true).await;
        }
        self.store.set_deployment_instances(row.id, n).await?;
        self.deployment(app, version).await
    }

    /// Undeploys one version: deregister every instance, drain, stop, remove, release; then the
    /// deployment row goes.
    pub async fn undeploy(&self, app: &AppId, version: &Version) -> Result<()> {
        let lock = self.lock_for(app, version);
        let _guard = lock.lock().await;
        let row = self.store.get_deployment(app, version).await?;
        self.store
            .set_deployment_state(row.id, DeploymentState::Stopping)
            .await?;
        let instances = self.store.list_instances_by_deployment(row.id).await?;
        tracing::info!(%app, %version, instances = instances.len(), "undeploying");
        self.teardown(&instances, true).await;
        let left = self.store.list_instances_by_deployment(row.id).await?;
        if !left.is_empty() {
            return Err(Error::Docker(format!(
                "{} instance(s) of {app} {version} could not be removed; the reconciler will retry",
                left.len()
            )));
        }
        self.store.delete_deployment(row.id).await?;
        Ok(())
    }

    /// Creates an app: its row, then its ZooKeeper node (so the gateway knows the name and
    /// answers 503 until an instance runs). If ZooKeeper fails the row is removed again.
    pub async fn create_app(
        &self,
        id: &AppId,
        tenant: Option<&caas_types::TenantName>,
        auto_deploy: bool,
    ) -> Result<crate::store::AppRow> {
        let app = self.store.create_app(id, tenant, auto_deploy).await?;
        if let Err(e) = self.registry.add_app(id).await {
            let _ = self.store.delete_app(id).await;
            return Err(zk_error(e));
        }
        Ok(app)
    }

    /// Undeploys every version of an app, removes its domains from ZooKeeper, deletes it.
    pub async fn delete_app(&self, app: &AppId) -> Result<()> {
        for d in self.store.list_deployments(app).await? {
            self.undeploy(app, &d.spec.version).await?;
        }
        for d in self.store.list_domains(app).await? {
            self.registry
                .remove_domain(&d.domain)
                .await
                .map_err(zk_error)?;
        }
        self.registry.remove_app(app).await.map_err(zk_error)?;
        self.store.delete_app(app).await
    }

    /// Routes a custom domain to an app: database first (uniqueness), then ZooKeeper.
    pub async fn add_domain(&self, app: &AppId, domain: &Domain) -> Result<()> {
        self.store.add_domain(app, domain).await?;
        if let Err(e) = self.registry.set_domain(domain, app).await {
            let _ = self.store.remove_domain(app, domain).await;
            return Err(zk_error(e));
        }
        Ok(())
    }

    /// Stops routing a custom domain: ZooKeeper first (the gateway stops at once), then the row.
    pub async fn remove_domain(&self, app: &AppId, domain: &Domain) -> Result<()> {
        let owned = self
            .store
            .list_domains(app)
            .await?
            .iter()
            .any(|d| &d.domain == domain);
        if !owned {
            return Err(Error::NotFound(format!("domain {domain} of app {app}")));
        }
        self.registry
            .remove_domain(domain)
            .await
            .map_err(zk_error)?;
        self.store.remove_domain(app, domain).await
    }

    /// The blacklist as stored in ZooKeeper.
    pub async fn blacklist(&self) -> Result<Vec<IpRule>> {
        self.registry.blacklist().await.map_err(zk_error)
    }

    /// Replaces the blacklist.
    pub async fn set_blacklist(&self, rules: Vec<IpRule>) -> Result<()> {
        let _guard = self.blacklist_lock.lock().await;
        self.registry.set_blacklist(&rules).await.map_err(zk_error)
    }

    /// Read-modify-write of the blacklist; ZooKeeper's version check keeps concurrent edits
    /// (from several schedulers) from overwriting each other.
    pub async fn update_blacklist(&self, f: impl FnMut(&mut Vec<IpRule>)) -> Result<Vec<IpRule>> {
        self.registry.update_blacklist(f).await.map_err(zk_error)
    }

    /// Every deployment of an app with its instances.
    pub async fn deployments_of(&self, app: &AppId) -> Result<Vec<api::Deployment>> {
        let mut out = Vec::new();
        for row in self.store.list_deployments(app).await? {
            out.push(self.view(&row).await?);
        }
        Ok(out)
    }

    /// One deployment with its instances.
    pub async fn deployment(&self, app: &AppId, version: &Version) -> Result<api::Deployment> {
        let row = self.store.get_deployment(app, version).await?;
        self.view(&row).await
    }
}

/// Chooses which instances a scale-down removes: unhealthy ones first, then the newest.
fn pick_victims(mut live: Vec<InstanceRow>, n: usize) -> Vec<InstanceRow> {
    live.sort_by_key(|i| {
        (
            i.healthy,
            i.state == InstanceState::Running,
            std::cmp::Reverse(i.updated_ms),
        )
    });
    live.truncate(n);
    live
}

/// A ZooKeeper failure as the scheduler's error.
pub(crate) fn zk_error(e: caas_registry::Error) -> Error {
    Error::Zookeeper(format!("zookeeper: {e}"))
}

/// A Docker failure as the scheduler's error, keeping "image not found" distinct.
pub(crate) fn docker_error(host: &HostName, e: caas_deployer::Error) -> Error {
    match e {
        caas_deployer::Error::ImageNotFound { image, .. } => {
            Error::ImageNotFound(format!("image {image} not found in the registry"))
        }
        other => Error::Docker(format!("host {host}: {other}")),
    }
}
