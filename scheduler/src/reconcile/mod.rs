//! The reconciler: at start and periodically (on the leader only), compare the database, each
//! host's Docker engine (our containers, found by the `caas.managed` and `caas.host` labels)
//! and ZooKeeper, and repair the differences. A pass is three steps: read a [`Snapshot`]
//! (`snapshot.rs`: containers first, then nodes, then rows, so a container or node without a
//! row really has none), compute the [`Repair`]s (`plan.rs`, pure logic, where every decision
//! and its tests live), and apply them in order (here).
//!
//! What is repaired: a transitional instance left by a crash is finished if its container runs
//! and answers its health check, else rolled back; an interrupted stop is finished; a running
//! instance whose container is gone or dead is re-created on its claim (a paused one is left to
//! its health policy); an orphan container is removed; instances on a host marked `down` are
//! replaced elsewhere; address, app and custom-domain nodes are made to match the database; a
//! deployment below its count is topped up, a global one reaches every eligible host (hosts
//! added later included); a deploy or undeploy interrupted by a crash is finished or removed.

pub mod plan;
mod snapshot;

pub use plan::{Repair, Snapshot};

use crate::config::Config;
use crate::engine::Engines;
use crate::error::Result;
use crate::fence::Fence;
use crate::health_targets::HealthRef;
use crate::lifecycle::{probe, Lifecycle};
use crate::metrics::DeployMetrics;
use crate::progress::Progress;
use crate::routes::RoutesRef;
use crate::store::{DeploymentState, InstanceRow, Store};
use caas_types::ContainerId;
use caas_types::InstanceState;
use std::sync::Arc;
use std::time::Duration;

/// How long a pass waits for the engine of a host marked down (which may really be gone)
/// before it leaves that host's containers alone.
const DOWN_ENGINE_WAIT: Duration = Duration::from_secs(5);

/// What one pass repaired.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Transitional instances finished.
    pub finished: usize,
    /// Transitional instances rolled back.
    pub rolled_back: usize,
    /// Instances re-created or replaced.
    pub recreated: usize,
    /// Orphan containers removed.
    pub orphans: usize,
    /// Stale ZooKeeper nodes removed, or missing ones restored.
    pub nodes: usize,
    /// Instances added to reach a deployment's desired count (or every host, when global).
    pub topped_up: usize,
}

impl Report {
    fn total(&self) -> usize {
        self.finished
            + self.rolled_back
            + self.recreated
            + self.orphans
            + self.nodes
            + self.topped_up
    }
}

/// Repairs the differences between the database, the engines and ZooKeeper (leader only).
#[derive(Debug)]
pub struct Reconciler {
    config: Arc<Config>,
    store: Store,
    engines: Arc<Engines>,
    routes: RoutesRef,
    health: HealthRef,
    lifecycle: Arc<Lifecycle>,
    metrics: Arc<DeployMetrics>,
    fence: Arc<Fence>,
}

impl Reconciler {
    /// A reconciler over the lifecycle's handles, checking `fence` before each repair.
    pub fn new(lifecycle: Arc<Lifecycle>, fence: Arc<Fence>) -> Reconciler {
        Reconciler {
            config: lifecycle.config.clone(),
            store: lifecycle.store.clone(),
            engines: lifecycle.engines.clone(),
            routes: lifecycle.routes.clone(),
            health: lifecycle.health.clone(),
            metrics: lifecycle.metrics.clone(),
            lifecycle,
            fence,
        }
    }

    /// How long an instance may sit in a transitional state before a crash is assumed.
    fn stuck_after(&self) -> Duration {
        Duration::from_secs(self.config.start_timeout_secs + 10)
            + Duration::from_millis(self.config.drain_ms)
            + Duration::from_secs(self.config.stop_grace_secs)
    }

    /// One reconciliation pass: snapshot, plan, apply. A failed instance repair is logged and
    /// left to the next pass; a failed node, app or domain repair ends the pass with its error,
    /// and so does the fence before any repair when this process no longer leads
    /// ([`crate::Error::NotLeader`]).
    pub async fn reconcile(&self) -> Result<Report> {
        let snapshot = self.snapshot().await?;
        let repairs = plan::plan(&snapshot);
        let mut report = Report::default();
        for repair in repairs {
            self.apply(&snapshot, repair, &mut report).await?;
        }
        if report.total() > 0 {
            for _ in 0..report.total() {
                DeployMetrics::inc(&self.metrics.reconciler_repairs);
            }
            tracing::info!(?report, "reconciler repaired the platform");
        }
        Ok(report)
    }

    async fn apply(&self, s: &Snapshot, repair: Repair, report: &mut Report) -> Result<()> {
        // A leader that lost the leadership since the snapshot ends its pass here.
        self.fence.check("a reconciler repair").await?;
        if let Some(id) = repair.instance() {
            // An instance repair acts on the row the plan saw.
            return match s.instances.iter().find(|r| &r.id == id) {
                Some(r) => self.apply_to_instance(r, repair, report).await,
                None => Ok(()),
            };
        }
        match repair {
            Repair::RemoveOrphan { host_id, container } => {
                if let Ok((host, engine)) = self.lifecycle.engine_of(host_id).await {
                    tracing::info!(host = %host.name, %container, "reconciler: removing orphan container");
                    if engine.remove(&container).await.is_ok() {
                        report.orphans += 1;
                    }
                }
            }
            Repair::DeregisterNode {
                app,
                version,
                container,
            } => {
                tracing::info!(%app, %version, %container, "reconciler: removing a stale address node");
                self.routes.deregister(&app, &version, &container).await?;
                report.nodes += 1;
            }
            Repair::AddAppNode(app) => {
                tracing::info!(%app, "reconciler: restoring a missing app node");
                self.routes.add_app(&app).await?;
                report.nodes += 1;
            }
            Repair::RemoveAppNode(app) => {
                // An app being created has its row before its node, so a node without a row is stale.
                tracing::info!(%app, "reconciler: removing the node of a deleted app");
                self.routes.remove_app(&app).await?;
                report.nodes += 1;
            }
            Repair::SetDomain { domain, app } => {
                tracing::info!(%domain, %app, "reconciler: restoring a custom domain node");
                self.routes.set_domain(&domain, &app).await?;
                report.nodes += 1;
            }
            Repair::SetWake { app, version } => {
                tracing::info!(%app, %version, "reconciler: restoring the wake node of an app that may sleep");
                self.routes.set_wake(&app, &version, None).await?;
                report.nodes += 1;
            }
            Repair::ClearWake(app) => {
                tracing::info!(%app, "reconciler: removing the wake node of an app that may not sleep");
                self.routes.clear_wake(&app).await?;
                report.nodes += 1;
            }
            Repair::RemoveDomain(domain) => {
                tracing::info!(%domain, "reconciler: removing a stale custom domain node");
                self.routes.remove_domain(&domain).await?;
                report.nodes += 1;
            }
            Repair::TopUp {
                deployment_id,
                missing,
            } => {
                let d = self.store.get_deployment_by_id(deployment_id).await?;
                tracing::info!(app = %d.spec.app, version = %d.spec.version, missing, "reconciler: topping up a deployment");
                match self
                    .lifecycle
                    .add_instances(&d, missing, &Progress::silent())
                    .await
                {
                    Ok(()) => report.topped_up += missing as usize,
                    Err(e) => {
                        tracing::warn!(app = %d.spec.app, version = %d.spec.version, error = %e, "reconciler: top-up failed")
                    }
                }
            }
            Repair::PlaceGlobal {
                deployment_id,
                hosts,
            } => {
                let d = self.store.get_deployment_by_id(deployment_id).await?;
                tracing::info!(app = %d.spec.app, version = %d.spec.version, hosts = hosts.len(), "reconciler: placing a global deployment on hosts without it");
                // Placement places a global deployment on every eligible host that has none.
                match self
                    .lifecycle
                    .add_instances(&d, 1, &Progress::silent())
                    .await
                {
                    Ok(()) => report.topped_up += hosts.len(),
                    Err(e) => {
                        tracing::warn!(app = %d.spec.app, version = %d.spec.version, error = %e, "reconciler: global placement failed")
                    }
                }
            }
            // Applied above, with their row.
            Repair::FinishStart { .. }
            | Repair::RollBackStart { .. }
            | Repair::FinishStop { .. }
            | Repair::Recreate { .. }
            | Repair::ReplaceLost { .. }
            | Repair::RegisterNode { .. } => {}
            Repair::FinishDeploy { deployment_id } => {
                tracing::info!(
                    deployment = deployment_id,
                    "reconciler: finishing an interrupted deploy"
                );
                self.store
                    .set_deployment_state(deployment_id, DeploymentState::Running)
                    .await?;
                report.finished += 1;
            }
            Repair::RemoveDeployment { deployment_id } => {
                // Its deploy or undeploy was interrupted: the user never got a success, so the
                // safe end state is "not deployed".
                tracing::info!(
                    deployment = deployment_id,
                    "reconciler: removing an interrupted deployment"
                );
                let instances = self
                    .store
                    .list_instances_by_deployment(deployment_id)
                    .await?;
                self.lifecycle.teardown(&instances, false).await;
                if self
                    .store
                    .list_instances_by_deployment(deployment_id)
                    .await?
                    .is_empty()
                {
                    self.store.delete_deployment(deployment_id).await?;
                    report.rolled_back += 1;
                }
            }
        }
        Ok(())
    }

    /// Applies a repair of one instance (`r`, as the snapshot read it).
    async fn apply_to_instance(
        &self,
        r: &InstanceRow,
        repair: Repair,
        report: &mut Report,
    ) -> Result<()> {
        match repair {
            Repair::FinishStart { container, .. } => {
                self.finish_or_roll_back(r, container, report).await
            }
            Repair::RollBackStart { container, .. } => {
                self.roll_back_start(r, container, report).await
            }
            Repair::FinishStop { .. } => {
                tracing::info!(instance = %r.id, "reconciler: finishing an interrupted stop");
                self.lifecycle
                    .teardown(std::slice::from_ref(r), false)
                    .await;
                report.rolled_back += 1;
            }
            Repair::Recreate { .. } => {
                tracing::info!(instance = %r.id, "reconciler: container lost; re-creating");
                match self.lifecycle.recreate(r).await {
                    Ok(()) => report.recreated += 1,
                    Err(e) => {
                        tracing::warn!(instance = %r.id, error = %e, "reconciler: re-create failed")
                    }
                }
            }
            Repair::ReplaceLost { container, .. } => self.replace_lost(r, container, report).await,
            Repair::RegisterNode { .. } => {
                if let Some(cid) = &r.container_id {
                    tracing::info!(instance = %r.id, "reconciler: restoring a missing address node");
                    self.routes
                        .register(&r.app, &r.version, cid, r.endpoint()?)
                        .await?;
                    report.nodes += 1;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Finishes an interrupted start whose container runs: registered and `running` if it
    /// answers its health check now, else rolled back. A worker's runs: that is its start.
    async fn finish_or_roll_back(&self, r: &InstanceRow, cid: ContainerId, report: &mut Report) {
        let finished = async {
            if r.is_worker() {
                self.store.set_instance_container(&r.id, Some(&cid)).await?;
                self.store
                    .set_instance_state(&r.id, InstanceState::Running)
                    .await?;
                self.store.set_instance_healthy(&r.id, true).await?;
                return Ok(true);
            }
            let deployment = self.store.get_deployment_by_id(r.deployment_id).await?;
            let endpoint = r.endpoint()?;
            let timeout = Duration::from_millis(deployment.spec.health.timeout_ms.max(100));
            if !probe::check(endpoint, deployment.spec.health.path.as_str(), timeout).await {
                return Ok(false);
            }
            self.store.set_instance_container(&r.id, Some(&cid)).await?;
            self.routes
                .register(&r.app, &r.version, &cid, endpoint)
                .await?;
            self.store
                .set_instance_state(&r.id, InstanceState::Running)
                .await?;
            self.store.set_instance_healthy(&r.id, true).await?;
            Ok::<_, crate::Error>(true)
        }
        .await;
        if matches!(finished, Ok(true)) {
            tracing::info!(instance = %r.id, "reconciler: finished an interrupted start");
            report.finished += 1;
            return;
        }
        self.roll_back_start(r, Some(cid), report).await;
    }

    /// Rolls back an interrupted start: container removed, claim released.
    async fn roll_back_start(
        &self,
        r: &InstanceRow,
        container: Option<ContainerId>,
        report: &mut Report,
    ) {
        tracing::info!(instance = %r.id, "reconciler: rolling back an interrupted start");
        let mut row = r.clone();
        if row.container_id.is_none() {
            row.container_id = container;
        }
        self.lifecycle
            .teardown(std::slice::from_ref(&row), false)
            .await;
        report.rolled_back += 1;
    }

    /// Replaces an instance of a host marked down. `container` is its container if the down
    /// host's engine still listed it this pass.
    async fn replace_lost(
        &self,
        r: &InstanceRow,
        container: Option<ContainerId>,
        report: &mut Report,
    ) {
        tracing::warn!(instance = %r.id, host = %r.host, "reconciler: host is down; replacing its instance");
        let result = async {
            let deployment = self.store.get_deployment_by_id(r.deployment_id).await?;
            if let Some(cid) = &r.container_id {
                self.health.unwatch(cid);
                self.routes.deregister(&r.app, &r.version, cid).await?;
            }
            // Removed while the engine answers; a host that is really gone keeps its container
            // (found as an orphan if the host comes back), and its claim is given back anyway.
            if let Some(cid) = &container {
                if let Ok((host, engine)) = self.lifecycle.engine_of(r.host_id).await {
                    match tokio::time::timeout(DOWN_ENGINE_WAIT, engine.remove(cid)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::warn!(host = %host.name, container = %cid, error = %e, "reconciler: could not remove the container of a lost instance")
                        }
                        Err(_) => {
                            tracing::warn!(host = %host.name, container = %cid, "reconciler: the down host's engine did not remove a container in time")
                        }
                    }
                }
            }
            self.lifecycle.release(r).await?;
            self.lifecycle.add_replacement(&deployment).await
        }
        .await;
        match result {
            Ok(()) => report.recreated += 1,
            Err(e) => {
                tracing::warn!(instance = %r.id, error = %e, "reconciler: could not replace a lost instance")
            }
        }
    }
}
