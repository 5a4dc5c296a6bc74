//! The reconciler: at start and periodically (on the leader only), compare the database, each
//! host's Docker engine (our containers, found by the `caas.managed` label) and ZooKeeper, and
//! repair the differences:
//!
//! - a transitional instance (`pending`/`starting`) left by a crash is finished if its container
//!   runs and answers its health check, else rolled back (container removed, claim released);
//! - a `stopping` instance left by a crash is finished (stopped, removed, released);
//! - a `running` instance whose container is gone or dead is re-created on its claim (a paused
//!   one is not gone: its health check and the deployment's policy deal with it);
//! - a container with no instance row is an orphan and is removed;
//! - an address node with no instance row is stale and is removed; a healthy running instance
//!   with no node is registered again; app and custom-domain nodes are made to match the
//!   database;
//! - instances on a host marked `down` are replaced elsewhere and their claims released; their
//!   containers are removed if the host's engine still answers (briefly asked);
//! - a deployment below its desired count is topped up; a deployment stuck in `deploying` or
//!   `stopping` after a crash is finished.

use crate::config::Config;
use crate::engine::Engines;
use crate::error::Result;
use crate::lifecycle::{probe, Lifecycle};
use crate::metrics::DeployMetrics;
use crate::progress::Progress;
use crate::routes::RoutesRef;
use crate::store::{DeploymentState, InstanceRow, Store};
use caas_deployer::{ContainerState, ContainerSummary};
use caas_registry::HealthChecker;
use caas_types::{labels, ContainerId, HostState, InstanceState};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    /// Instances added to reach a deployment's desired count.
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

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Repairs the differences between the database, the engines and ZooKeeper (leader only).
#[derive(Debug)]
pub struct Reconciler {
    config: Arc<Config>,
    store: Store,
    engines: Arc<Engines>,
    routes: RoutesRef,
    health: HealthChecker,
    lifecycle: Arc<Lifecycle>,
    metrics: Arc<DeployMetrics>,
}

impl Reconciler {
    /// A reconciler over these handles.
    pub fn new(
        config: Arc<Config>,
        store: Store,
        engines: Arc<Engines>,
        routes: RoutesRef,
        health: HealthChecker,
        lifecycle: Arc<Lifecycle>,
        metrics: Arc<DeployMetrics>,
    ) -> Reconciler {
        Reconciler {
            config,
            store,
            engines,
            routes,
            health,
            lifecycle,
            metrics,
        }
    }

    /// How long an instance may sit in a transitional state before a crash is assumed.
    fn stuck_after(&self) -> Duration {
        Duration::from_secs(self.config.start_timeout_secs + 10)
            + Duration::from_millis(self.config.drain_ms)
            + Duration::from_secs(self.config.stop_grace_secs)
    }

    /// One reconciliation pass.
    pub async fn reconcile(&self) -> Result<Report> {
        let mut report = Report::default();
        let stuck = i64::try_from(self.stuck_after().as_millis()).unwrap_or(i64::MAX);
        let hosts = self.store.list_hosts().await?;

        // Containers first, then rows: a row is always written before its container, so a
        // container seen here without a row (read afterwards) is really an orphan. A host
        // marked down is asked too, briefly: if its engine still answers, what ran there is
        // removed rather than left running unaccounted for.
        let mut containers: HashMap<i64, HashMap<String, ContainerSummary>> = HashMap::new();
        for h in &hosts {
            let listed = match self.engines.get(&h.name, &h.docker) {
                // Several hosts may share one engine (loopback hosts on one machine): ask the
                // engine for the containers placed on this host only.
                Ok(d) => {
                    let ns = self.config.namespace.as_str();
                    let by_label = [(labels::MANAGED, ns), (labels::HOST, h.name.as_str())];
                    let list = d.list(&by_label);
                    if h.state != HostState::Down {
                        list.await
                    } else if let Ok(listed) = tokio::time::timeout(DOWN_ENGINE_WAIT, list).await {
                        listed
                    } else {
                        tracing::info!(host = %h.name, "reconciler: the engine of a down host does not answer; leaving its containers");
                        continue;
                    }
                }
                Err(e) => {
                    tracing::warn!(host = %h.name, error = %e, "reconciler: engine unusable; skipping host");
                    continue;
                }
            };
            match listed {
                Ok(list) => {
                    let by_instance = list
                        .into_iter()
                        .filter_map(|c| c.labels.get(labels::INSTANCE).cloned().map(|i| (i, c)))
                        .collect();
                    containers.insert(h.id, by_instance);
                }
                Err(e) => {
                    tracing::warn!(host = %h.name, error = %e, "reconciler: cannot list containers; skipping host")
                }
            }
        }
        let rows = self.store.list_all_instances().await?;
        let now = now_ms();
        let down: HashSet<i64> = hosts
            .iter()
            .filter(|h| h.state == HostState::Down)
            .map(|h| h.id)
            .collect();

        // Orphans.
        let known: HashSet<(i64, &str)> = rows.iter().map(|r| (r.host_id, r.id.as_str())).collect();
        for (host_id, by_instance) in &containers {
            for (instance, c) in by_instance {
                if !known.contains(&(*host_id, instance.as_str())) {
                    if let Ok((host, d)) = self.lifecycle.engine_of(*host_id).await {
                        tracing::info!(host = %host.name, container = %c.id, instance, "reconciler: removing orphan container");
                        if d.remove(&c.id).await.is_ok() {
                            report.orphans += 1;
                        }
                    }
                }
            }
        }

        for r in &rows {
            let age = now - r.updated_ms;
            if down.contains(&r.host_id) {
                if r.state != InstanceState::Stopping {
                    let container = containers
                        .get(&r.host_id)
                        .and_then(|on_host| on_host.get(r.id.as_str()))
                        .map(|c| c.id.clone());
                    self.replace_lost(r, container, &mut report).await;
                }
                continue;
            }
            // A host we could not list: leave its instances alone this pass.
            let Some(on_host) = containers.get(&r.host_id) else {
                continue;
            };
            let container = on_host.get(r.id.as_str());
            let alive = container.is_some_and(|c| still_there(c.state));
            match r.state {
                InstanceState::Pending | InstanceState::Starting if age > stuck => {
                    self.finish_or_roll_back(
                        r,
                        container.map(|c| c.id.clone()),
                        alive,
                        &mut report,
                    )
                    .await;
                }
                InstanceState::Stopping if age > stuck => {
                    tracing::info!(instance = %r.id, "reconciler: finishing an interrupted stop");
                    self.lifecycle
                        .teardown(std::slice::from_ref(r), false)
                        .await;
                    report.rolled_back += 1;
                }
                // Gone or dead. An `unhealthy` instance is being restarted by the healer: act
                // on it only once that had its time.
                InstanceState::Running | InstanceState::Unhealthy
                    if !alive
                        && (age > stuck || (r.state == InstanceState::Running && age > 10_000)) =>
                {
                    tracing::info!(instance = %r.id, "reconciler: container lost; re-creating");
                    match self.lifecycle.recreate(r).await {
                        Ok(()) => report.recreated += 1,
                        Err(e) => {
                            tracing::warn!(instance = %r.id, error = %e, "reconciler: re-create failed")
                        }
                    }
                }
                _ => {}
            }
        }

        self.reconcile_nodes(&mut report).await?;
        self.reconcile_domains(&mut report).await?;
        self.reconcile_deployments(stuck, now, &mut report).await?;
        if report.total() > 0 {
            for _ in 0..report.total() {
                DeployMetrics::inc(&self.metrics.reconciler_repairs);
            }
            tracing::info!(?report, "reconciler repaired the platform");
        }
        Ok(report)
    }

    async fn finish_or_roll_back(
        &self,
        r: &InstanceRow,
        container: Option<ContainerId>,
        alive: bool,
        report: &mut Report,
    ) {
        if let (true, Some(cid)) = (alive, &container) {
            if let Ok(deployment) = self.store.get_deployment_by_id(r.deployment_id).await {
                if let Ok(endpoint) = r.endpoint() {
                    let timeout = Duration::from_millis(deployment.spec.health.timeout_ms.max(100));
                    if probe::check(endpoint, deployment.spec.health.path.as_str(), timeout).await {
                        let done = async {
                            self.store.set_instance_container(&r.id, Some(cid)).await?;
                            self.routes
                                .register(&r.app, &r.version, cid, endpoint)
                                .await?;
                            self.store
                                .set_instance_state(&r.id, InstanceState::Running)
                                .await?;
                            self.store.set_instance_healthy(&r.id, true).await
                        }
                        .await;
                        if done.is_ok() {
                            tracing::info!(instance = %r.id, "reconciler: finished an interrupted start");
                            report.finished += 1;
                            return;
                        }
                    }
                }
            }
        }
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
                self.routes
                    .deregister(&r.app, &r.version, cid)
                    .await
                    ?;
            }
            // Removed while the engine answers; a host that is really gone keeps its container
            // (found as an orphan if the host comes back), and its claim is given back anyway.
            if let Some(cid) = &container {
                if let Ok((host, d)) = self.lifecycle.engine_of(r.host_id).await {
                    match tokio::time::timeout(DOWN_ENGINE_WAIT, d.remove(cid)).await {
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

    /// Keeps `/caas/domains` equal to the domains in the database (the database is the truth;
    /// ZooKeeper's copy is what gateways route by).
    async fn reconcile_domains(&self, report: &mut Report) -> Result<()> {
        let want: HashMap<caas_types::Domain, caas_types::AppId> = self
            .store
            .list_all_domains()
            .await?
            .into_iter()
            .map(|d| (d.domain, d.app))
            .collect();
        let have: HashMap<caas_types::Domain, caas_types::AppId> =
            self.routes.domains().await?.into_iter().collect();
        for (domain, app) in &want {
            if have.get(domain) != Some(app) {
                tracing::info!(%domain, %app, "reconciler: restoring a custom domain node");
                self.routes.set_domain(domain, app).await?;
                report.nodes += 1;
            }
        }
        for domain in have.keys().filter(|d| !want.contains_key(*d)) {
            tracing::info!(%domain, "reconciler: removing a stale custom domain node");
            self.routes.remove_domain(domain).await?;
            report.nodes += 1;
        }
        Ok(())
    }

    /// Removes address nodes no instance owns; restores nodes of healthy running instances;
    /// keeps the app nodes equal to the apps in the database.
    async fn reconcile_nodes(&self, report: &mut Report) -> Result<()> {
        let known: HashSet<caas_types::AppId> = self.routes.apps().await?.into_iter().collect();
        let apps: HashSet<caas_types::AppId> = self
            .store
            .list_apps(None)
            .await?
            .into_iter()
            .map(|a| a.id)
            .collect();
        for missing in apps.difference(&known) {
            tracing::info!(app = %missing, "reconciler: restoring a missing app node");
            self.routes.add_app(missing).await?;
            report.nodes += 1;
        }
        for stale in known.difference(&apps) {
            // An app being created has its row before its node, so a node without a row is stale.
            tracing::info!(app = %stale, "reconciler: removing the node of a deleted app");
            self.routes.remove_app(stale).await?;
            report.nodes += 1;
        }
        let nodes = self.routes.instances().await?;
        // Read rows after nodes: a node registered meanwhile has its row already.
        let rows = self.store.list_all_instances().await?;
        let owned: HashMap<&ContainerId, &InstanceRow> = rows
            .iter()
            .filter_map(|r| r.container_id.as_ref().map(|c| (c, r)))
            .collect();
        let present: HashSet<&ContainerId> = nodes.iter().map(|(_, _, c, _)| c).collect();
        for (app, version, cid, _) in &nodes {
            let keep = owned
                .get(cid)
                .is_some_and(|r| r.state != InstanceState::Stopping);
            if !keep {
                tracing::info!(%app, %version, container = %cid, "reconciler: removing a stale address node");
                self.routes.deregister(app, version, cid).await?;
                report.nodes += 1;
            }
        }
        for r in &rows {
            let Some(cid) = &r.container_id else { continue };
            if r.state == InstanceState::Running && r.healthy && !present.contains(cid) {
                tracing::info!(instance = %r.id, "reconciler: restoring a missing address node");
                self.routes
                    .register(&r.app, &r.version, cid, r.endpoint()?)
                    .await?;
                report.nodes += 1;
            }
        }
        Ok(())
    }

    /// Tops deployments up to their desired count; finishes deployments stuck after a crash.
    async fn reconcile_deployments(&self, stuck: i64, now: i64, report: &mut Report) -> Result<()> {
        for d in self.store.list_all_deployments().await? {
            let instances = self.store.list_instances_by_deployment(d.id).await?;
            let live = instances
                .iter()
                .filter(|i| i.state != InstanceState::Stopping)
                .count();
            let age = now - d.updated_ms;
            match d.state {
                DeploymentState::Running
                    if !d.spec.placement.global && (live as u64) < u64::from(d.spec.instances) =>
                {
                    let missing =
                        u32::try_from(u64::from(d.spec.instances) - live as u64).unwrap_or(0);
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
                DeploymentState::Deploying
                    if age > stuck
                        && !d.spec.placement.global
                        && running_count(&instances) >= u64::from(d.spec.instances) =>
                {
                    // Its deploy was interrupted after every instance came up: finish it.
                    tracing::info!(app = %d.spec.app, version = %d.spec.version, "reconciler: finishing an interrupted deploy");
                    self.store
                        .set_deployment_state(d.id, DeploymentState::Running)
                        .await?;
                    report.finished += 1;
                }
                DeploymentState::Deploying
                | DeploymentState::Stopping
                | DeploymentState::Failed
                    if age > stuck =>
                {
                    // Its deploy or undeploy was interrupted: the user never got a success, so
                    // the safe end state is "not deployed".
                    tracing::info!(app = %d.spec.app, version = %d.spec.version, state = ?d.state, "reconciler: removing an interrupted deployment");
                    self.lifecycle.teardown(&instances, false).await;
                    if self
                        .store
                        .list_instances_by_deployment(d.id)
                        .await?
                        .is_empty()
                    {
                        self.store.delete_deployment(d.id).await?;
                        report.rolled_back += 1;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn running_count(instances: &[InstanceRow]) -> u64 {
    instances
        .iter()
        .filter(|i| i.state == InstanceState::Running)
        .count() as u64
}

/// Whether a container still stands for its instance: running, or paused (frozen, not gone:
/// its failing health check and the deployment's `on_failure` policy deal with it, not a
/// re-creation behind the policy's back).
fn still_there(state: ContainerState) -> bool {
    matches!(state, ContainerState::Running | ContainerState::Paused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_gone_or_dead_container_counts_as_lost() {
        assert!(still_there(ContainerState::Running));
        assert!(still_there(ContainerState::Paused));
        for lost in [
            ContainerState::Created,
            ContainerState::Exited,
            ContainerState::Dead,
            ContainerState::Removing,
        ] {
            assert!(!still_there(lost), "{lost:?}");
        }
    }
}
