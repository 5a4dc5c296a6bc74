//! One instance's life, whatever asked for it (a deploy, a scale, healing, the reconciler):
//! claim (placement) → start (pull → run → wait for health → register → running) with clean-up
//! on failure, and teardown (deregister → drain → stop → remove → release). [`Lifecycle`] holds
//! only what those steps need: the store, the engines, the route registry, the health checker.

pub mod probe;
mod start;
mod teardown;

pub(crate) use teardown::StopMode;

use crate::app_config::AppConfigs;
use crate::config::Config;
use crate::engine::{EngineRef, Engines};
use crate::error::{Error, Result};
use crate::events::Events;
use crate::health_targets::HealthRef;
use crate::metrics::DeployMetrics;
use crate::placement;
use crate::progress::Progress;
use crate::routes::RoutesRef;
use crate::store::{DeploymentRow, HostRow, InstanceRow, Store};
use caas_deployer::RegistryCredentials;
use std::sync::Arc;
use std::time::Duration;

/// Starts, replaces and removes instances.
#[derive(Debug)]
pub struct Lifecycle {
    pub(crate) config: Arc<Config>,
    pub(crate) store: Store,
    pub(crate) engines: Arc<Engines>,
    pub(crate) routes: RoutesRef,
    pub(crate) health: HealthRef,
    pub(crate) metrics: Arc<DeployMetrics>,
    /// Apps' config: the environment an instance starts with.
    pub(crate) app_configs: Arc<AppConfigs>,
    /// Events (an instance killed for its memory limit).
    pub(crate) events: Events,
    creds: Option<RegistryCredentials>,
}

impl Lifecycle {
    /// A lifecycle over these handles; pulls use the registry credentials of `config`, and
    /// containers get their app's config from `app_configs`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Arc<Config>,
        store: Store,
        engines: Arc<Engines>,
        routes: RoutesRef,
        health: HealthRef,
        metrics: Arc<DeployMetrics>,
        app_configs: Arc<AppConfigs>,
        events: Events,
    ) -> Lifecycle {
        let creds = match (&config.registry_user, &config.registry_password) {
            (Some(u), Some(p)) => Some(RegistryCredentials {
                username: u.clone(),
                password: p.clone(),
                server: config.registry.clone(),
            }),
            _ => None,
        };
        Lifecycle {
            config,
            store,
            engines,
            routes,
            health,
            metrics,
            app_configs,
            events,
            creds,
        }
    }

    /// The stop grace period of an instance, seconds: its deployment's `stop_timeout_s`, or
    /// `--stop-grace-secs`.
    pub(crate) fn stop_grace_s(&self, per_deployment: Option<u32>) -> u32 {
        per_deployment
            .unwrap_or_else(|| u32::try_from(self.config.stop_grace_secs).unwrap_or(u32::MAX))
    }

    /// The engine of an instance's host.
    pub(crate) async fn engine_of(&self, host_id: i64) -> Result<(HostRow, EngineRef)> {
        let host = self.store.get_host_by_id(host_id).await?;
        let engine = self.engines.get(&host.name, &host.docker)?;
        Ok((host, engine))
    }

    /// Claims `count` instances of `row` (all or none) and returns their rows (`pending`).
    async fn claim(&self, row: &DeploymentRow, count: u32) -> Result<Vec<InstanceRow>> {
        let claims = placement::place(
            &self.store,
            &placement::PlacementRequest::for_deployment(row, count),
        )
        .await?;
        let mut out = Vec::with_capacity(claims.len());
        for c in &claims {
            out.push(self.store.get_instance(&c.instance).await?);
        }
        Ok(out)
    }

    /// Claims and starts `count` more instances of `row` (global: one on every eligible host
    /// that has none, whatever `count` is, as long as it is not 0); all or none.
    pub(crate) async fn add_instances(
        &self,
        row: &DeploymentRow,
        count: u32,
        progress: &Progress,
    ) -> Result<()> {
        if count == 0 {
            return Ok(());
        }
        let claimed = self.claim(row, count).await?;
        for c in &claimed {
            let at = match c.host_port {
                Some(port) => format!("on {} at {}:{port}", c.host, c.host_address),
                None => format!("on {} (a worker: no port)", c.host),
            };
            progress.step(Some(&c.id), "placed", at);
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
        Err(error.unwrap_or_else(|| Error::Incomplete("deploy failed".into())))
    }

    /// Places and starts one more instance of a deployment (a replacement).
    pub(crate) async fn add_replacement(&self, deployment: &DeploymentRow) -> Result<()> {
        self.add_instances(deployment, 1, &Progress::silent()).await
    }

    /// Re-creates the container of an instance whose container is gone, on the same claim.
    pub(crate) async fn recreate(&self, inst: &InstanceRow) -> Result<()> {
        if let Some(cid) = &inst.container_id {
            self.health.unwatch(cid);
            self.routes
                .deregister(&inst.app, &inst.version, cid)
                .await?;
            let (host, engine) = self.engine_of(inst.host_id).await?;
            engine
                .remove(cid)
                .await
                .map_err(|e| Error::engine(&host.name, e))?;
            self.store.set_instance_container(&inst.id, None).await?;
        }
        let deployment = self.store.get_deployment_by_id(inst.deployment_id).await?;
        DeployMetrics::inc(&self.metrics.replacements);
        self.start_instance(&deployment, inst, &Progress::silent())
            .await
    }

    /// Restarts an instance's container in place; a container that is gone is re-created on
    /// the same claim. The health checker registers it again once it passes.
    pub(crate) async fn restart_in_place(&self, inst: &InstanceRow) -> Result<()> {
        let Some(cid) = &inst.container_id else {
            return Ok(());
        };
        let (host, engine) = self.engine_of(inst.host_id).await?;
        let grace = Duration::from_secs(self.config.stop_grace_secs.min(5));
        match engine.restart(cid, grace).await {
            Ok(()) => {
                DeployMetrics::inc(&self.metrics.restarts);
                tracing::info!(instance = %inst.id, host = %host.name, "restarted in place");
                Ok(())
            }
            Err(caas_deployer::Error::ContainerNotFound(_)) => self.recreate(inst).await,
            Err(e) => Err(Error::engine(&host.name, e)),
        }
    }

    /// Gives an instance's memory, CPU and port back and deletes its row.
    pub(crate) async fn release(&self, inst: &InstanceRow) -> Result<()> {
        placement::release(&self.store, &inst.id).await
    }
}
