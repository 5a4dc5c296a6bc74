//! Deployments: validate → deploy (all instances running and registered, or none) → scale →
//! undeploy, and how deployments look in the admin API. One instance's steps are the
//! [`Lifecycle`]'s; this module decides how many, and keeps the
//! deployment row's state.

mod kill;
mod replace;
mod restart;
mod validate;
mod view;

#[cfg(test)]
pub(crate) use validate::plan;
pub use validate::{
    check_autoscale, check_command, check_env, check_instance_count, check_timings, env_name_ok,
    DeployPlan, ENV_NAME_RULE, MAX_ENV_BYTES, MAX_INSTANCES, MAX_RECYCLE_AFTER_S,
    MAX_SCALE_DOWN_DELAY_S, MAX_STOP_TIMEOUT_S,
};

use crate::app_lock::{AppGuard, AppLocks};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::events::{EventType, Events};
use crate::lifecycle::Lifecycle;
use crate::metrics::DeployMetrics;
use crate::progress::Progress;
use crate::store::{DeploymentRow, DeploymentState, InstanceRow, Store};
use caas_types::api;
use caas_types::{AppId, HostState, InstanceState, Version};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A per-deployment lock within one process.
type DeploymentLock = Arc<tokio::sync::Mutex<()>>;

/// Deploys, scales and undeploys versions of apps.
#[derive(Debug)]
pub struct Deployments {
    config: Arc<Config>,
    store: Store,
    lifecycle: Arc<Lifecycle>,
    metrics: Arc<DeployMetrics>,
    events: Events,
    /// Serialises deploy/scale/undeploy of one deployment within this process (the database
    /// keeps several processes consistent; this keeps one process from racing itself).
    locks: Mutex<HashMap<(AppId, Version), DeploymentLock>>,
    /// One operation per app at a time; see [`Deployments::lock_app`].
    app_locks: AppLocks,
}

impl Deployments {
    /// Deployments over these handles.
    pub fn new(
        config: Arc<Config>,
        store: Store,
        lifecycle: Arc<Lifecycle>,
        metrics: Arc<DeployMetrics>,
        events: Events,
    ) -> Deployments {
        Deployments {
            config,
            store,
            lifecycle,
            metrics,
            events,
            locks: Mutex::new(HashMap::new()),
            app_locks: AppLocks::default(),
        }
    }

    /// Waits until no other operation on `app` (deploy, scale, undeploy, restart, config
    /// change, rollback, auto-deploy roll) runs in this process, and holds the app until the
    /// guard is dropped. Whoever runs a whole operation takes it, once; the steps below
    /// (deploy, scale, undeploy, restart) do not, so a roll of several steps holds it across all.
    pub async fn lock_app(&self, app: &AppId) -> AppGuard {
        self.app_locks.lock(app).await
    }

    /// The events this part and those over it (releases, config changes) emit.
    pub fn events(&self) -> &Events {
        &self.events
    }

    fn lock_for(&self, app: &AppId, version: &Version) -> DeploymentLock {
        let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        map.entry((app.clone(), version.clone()))
            .or_default()
            .clone()
    }

    /// Deploys a validated plan: all instances running and registered, or none.
    pub async fn deploy(&self, plan: DeployPlan, progress: Progress) -> Result<api::Deployment> {
        self.deploy_with_id(plan, progress).await.map(|(_, d)| d)
    }

    /// [`Deployments::deploy`], also answering the new deployment's database id (what a
    /// release records).
    pub async fn deploy_with_id(
        &self,
        plan: DeployPlan,
        progress: Progress,
    ) -> Result<(i64, api::Deployment)> {
        let started = Instant::now();
        let lock = self.lock_for(&plan.new.app, &plan.new.version);
        let _guard = lock.lock().await;
        let row = self.store.create_deployment(&plan.new).await?;
        let what = serde_json::json!({"version": row.spec.version, "deployment": row.id});
        self.events
            .emit(EventType::DeployStarted, Some(&row.spec.app), what.clone())
            .await;
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
            self.lifecycle.add_instances(&row, count, &progress).await
        };
        match placed.await {
            Ok(()) => {
                self.store
                    .set_deployment_state(row.id, DeploymentState::Running)
                    .await?;
                self.metrics.observe_deploy(started.elapsed());
                DeployMetrics::inc(&self.metrics.deploys_ok);
                self.sync_wake(&row.spec.app).await;
                self.events
                    .emit(EventType::DeploySucceeded, Some(&row.spec.app), what)
                    .await;
                let running = self.store.get_deployment_by_id(row.id).await?;
                Ok((row.id, self.view(&running).await?))
            }
            Err(e) => {
                DeployMetrics::inc(&self.metrics.deploys_failed);
                let failed = serde_json::json!({"version": row.spec.version, "deployment": row.id, "error": e.to_string()});
                self.events
                    .emit(EventType::DeployFailed, Some(&row.spec.app), failed)
                    .await;
                progress.step(None, "failed", format!("rolled back: {e}"));
                if let Err(cleanup) = self.store.delete_deployment(row.id).await {
                    // The reconciler removes a deployment row with no instances left.
                    tracing::warn!(error = %cleanup, deployment = row.id, "could not delete a failed deployment");
                }
                self.sync_wake(&row.spec.app).await;
                Err(e)
            }
        }
    }

    /// Brings the app's wake node in line with its deployments (scale to zero); a failure is
    /// logged and left to the reconciler.
    async fn sync_wake(&self, app: &AppId) {
        let routes = self.lifecycle.routes.as_ref();
        if let Err(e) = crate::autoscale::wake::sync_app(&self.store, routes, app).await {
            tracing::warn!(error = %e, %app, "could not update the app's wake node; the reconciler will");
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
            .filter(|h| h.state == HostState::Ready)
            .count();
        Ok(u32::try_from(ready).unwrap_or(u32::MAX))
    }

    /// Scales a deployment to `n` instances by hand (an autoscaled one within its `[min,
    /// max]`, 400 otherwise; its desired count becomes `n`, which the autoscaler starts from).
    pub async fn scale(
        &self,
        app: &AppId,
        version: &Version,
        n: u32,
        progress: Progress,
    ) -> Result<api::Deployment> {
        self.scale_to(app, version, n, progress, true).await
    }

    /// Carries out the autoscaler's decision: scales to `n` (within the bounds) and leaves the
    /// desired count, which the autoscaler owns, as it stored it.
    pub async fn autoscale_to(
        &self,
        app: &AppId,
        version: &Version,
        n: u32,
    ) -> Result<api::Deployment> {
        self.scale_to(app, version, n, Progress::silent(), false)
            .await
    }

    async fn scale_to(
        &self,
        app: &AppId,
        version: &Version,
        n: u32,
        progress: Progress,
        by_hand: bool,
    ) -> Result<api::Deployment> {
        let lock = self.lock_for(app, version);
        let _guard = lock.lock().await;
        let row = self.store.get_deployment(app, version).await?;
        if let Some(a) = row.spec.autoscale.filter(|a| a.clamp(n) != n) {
            return Err(Error::Invalid(format!(
                "instances: this deployment autoscales between {} and {}",
                a.min, a.max
            )));
        }
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
            self.lifecycle
                .add_instances(&row, n - current, &progress)
                .await?;
        } else if n < current {
            progress.step(None, "scaling", format!("{current} → {n}"));
            let victims = pick_victims(live, (current - n) as usize);
            self.store
                .set_deployment_instances(row.id, n, by_hand)
                .await?;
            self.lifecycle.teardown(&victims, true).await;
        }
        self.store
            .set_deployment_instances(row.id, n, by_hand)
            .await?;
        let scaled = serde_json::json!({"version": version, "from": current, "to": n});
        self.events
            .emit(EventType::DeploymentScaled, Some(app), scaled)
            .await;
        self.deployment(app, version).await
    }

    /// Undeploys one version: deregister every instance, drain, stop, remove, release; then the
    /// deployment row goes.
    pub async fn undeploy(&self, app: &AppId, version: &Version) -> Result<()> {
        let lock = self.lock_for(app, version);
        let _guard = lock.lock().await;
        let row = self.store.get_deployment(app, version).await?;
        self.undeploy_locked(&row).await
    }

    /// Undeploys one deployment by database id: how a roll removes a deployment that a roll of
    /// the same version superseded (it has no (app, version) key of its own any more).
    pub async fn undeploy_id(&self, id: i64) -> Result<()> {
        let row = self.store.get_deployment_by_id(id).await?;
        let lock = self.lock_for(&row.spec.app, &row.spec.version);
        let _guard = lock.lock().await;
        // Read again under the lock: it may have gone meanwhile.
        let row = self.store.get_deployment_by_id(id).await?;
        self.undeploy_locked(&row).await
    }

    async fn undeploy_locked(&self, row: &DeploymentRow) -> Result<()> {
        let (app, version) = (&row.spec.app, &row.spec.version);
        self.store
            .set_deployment_state(row.id, DeploymentState::Stopping)
            .await?;
        let instances = self.store.list_instances_by_deployment(row.id).await?;
        tracing::info!(%app, %version, instances = instances.len(), "undeploying");
        self.lifecycle.teardown(&instances, true).await;
        let left = self.store.list_instances_by_deployment(row.id).await?;
        if !left.is_empty() {
            return Err(Error::Incomplete(format!(
                "{} instance(s) of {app} {version} could not be removed; the reconciler will retry",
                left.len()
            )));
        }
        self.store.delete_deployment(row.id).await?;
        self.sync_wake(app).await;
        let removed = serde_json::json!({"version": version, "deployment": row.id});
        self.events
            .emit(EventType::DeploymentRemoved, Some(app), removed)
            .await;
        Ok(())
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
