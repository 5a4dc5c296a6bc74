//! What the leader does with health transitions: record them, then restart the container in
//! place or replace the instance, per the deployment's policy, with an exponential back-off so a
//! crash-looping app does not hammer its host. Also keeps the health checker's target set equal
//! to the database's running instances (deploys made by other scheduler processes included).
//!
//! Transitions come from the health checker (`/_ping` of instances with a port) and, for
//! workers, from their containers' state (`workers.rs`: engine events, and a listing per host
//! for what the events missed); both go through [`Healer::on_transition`], so a worker that
//! exits is healed exactly like an instance that fails its checks.

mod backoff;
pub mod plan;
mod workers;

pub use backoff::Backoff;
pub use workers::{WorkerEvent, WorkerWatch};

use crate::error::Result;
use crate::events::{EventType, Events};
use crate::fence::Fence;
use crate::health_targets::HealthRef;
use crate::lifecycle::Lifecycle;
use crate::metrics::DeployMetrics;
use crate::store::{InstanceRow, Store};
use caas_registry::{HealthEvent, HealthEventKind, HealthTarget};
use caas_types::{ContainerId, InstanceId};
use caas_types::{InstanceState, OnFailure};
use plan::HealthAction;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The states a health verdict may move an instance out of: any but `stopping`, which teardown
/// owns (the plan ignores a stopping instance; the compare-and-set closes the race between
/// reading the row and writing it).
const ALIVE: &[InstanceState] = &[
    InstanceState::Pending,
    InstanceState::Starting,
    InstanceState::Running,
    InstanceState::Unhealthy,
];

/// Acts on health transitions and keeps the checker's targets current (leader only).
#[derive(Debug)]
pub struct Healer {
    store: Store,
    lifecycle: Arc<Lifecycle>,
    health: HealthRef,
    metrics: Arc<DeployMetrics>,
    events: Events,
    backoff: Backoff,
    fence: Arc<Fence>,
}

impl Healer {
    /// A healer over these handles.
    pub fn new(
        store: Store,
        lifecycle: Arc<Lifecycle>,
        health: HealthRef,
        metrics: Arc<DeployMetrics>,
        events: Events,
        fence: Arc<Fence>,
    ) -> Healer {
        Healer {
            store,
            lifecycle,
            health,
            metrics,
            events,
            backoff: Backoff::default(),
            fence,
        }
    }

    async fn instance_by_container(&self, ev: &HealthEvent) -> Result<Option<InstanceRow>> {
        let rows = self.store.list_instances_by_app(&ev.app).await?;
        Ok(rows
            .into_iter()
            .find(|r| r.container_id.as_ref() == Some(&ev.container)))
    }

    /// Acts on one health transition of the checker (which has already updated ZooKeeper).
    pub async fn on_health_event(self: &Arc<Self>, ev: HealthEvent) -> Result<()> {
        let inst = self.instance_by_container(&ev).await?;
        let cause = format!("health checks of {}", ev.endpoint);
        self.on_transition(ev.kind, &ev.container, inst.as_ref(), &cause)
            .await
    }

    /// Acts on one health transition of `container`, whose instance row is `inst` (`None`: no
    /// row has it): decides with [`plan::on_event`], then records it and, for an unhealthy
    /// instance, heals it after its back-off per its deployment's policy. `cause` says what
    /// saw the transition, for the log.
    pub async fn on_transition(
        self: &Arc<Self>,
        kind: HealthEventKind,
        container: &ContainerId,
        inst: Option<&InstanceRow>,
        cause: &str,
    ) -> Result<()> {
        let policy = match (inst, kind) {
            (Some(i), HealthEventKind::Unhealthy) => {
                match self.store.get_deployment_by_id(i.deployment_id).await {
                    Ok(d) => Some(d.spec.health.on_failure),
                    Err(e) => {
                        tracing::warn!(instance = %i.id, error = %e, "could not read the deployment's health policy");
                        None
                    }
                }
            }
            _ => None,
        };
        let action = plan::on_event(kind, inst, policy);
        let (app, version) = match (&action, inst) {
            (HealthAction::MarkHealthy { .. } | HealthAction::MarkUnhealthy { .. }, Some(i)) => {
                (&i.app, &i.version)
            }
            (HealthAction::Unwatch, _) => {
                self.health.unwatch(container);
                return Ok(());
            }
            _ => return Ok(()),
        };
        match action {
            HealthAction::Unwatch | HealthAction::Ignore => {}
            HealthAction::MarkHealthy { instance } => {
                DeployMetrics::inc(&self.metrics.health_healthy);
                // Compare-and-set: an instance a teardown already marked `stopping` stays so.
                if !self
                    .store
                    .set_instance_state_if(&instance, ALIVE, InstanceState::Running)
                    .await?
                {
                    tracing::debug!(%instance, "healthy verdict for an instance no longer alive; ignored");
                    return Ok(());
                }
                tracing::info!(%instance, cause, "instance healthy again");
                self.store.set_instance_healthy(&instance, true).await?;
                let healthy = serde_json::json!({"instance": instance, "version": version});
                self.events
                    .emit(EventType::InstanceHealthy, Some(app), healthy)
                    .await;
            }
            HealthAction::MarkUnhealthy { instance, then } => {
                if !self
                    .store
                    .set_instance_state_if(&instance, ALIVE, InstanceState::Unhealthy)
                    .await?
                {
                    tracing::debug!(%instance, "unhealthy verdict for an instance no longer alive; ignored");
                    return Ok(());
                }
                DeployMetrics::inc(&self.metrics.health_unhealthy);
                self.store.set_instance_healthy(&instance, false).await?;
                let unhealthy = serde_json::json!({"instance": instance, "version": version});
                self.events
                    .emit(EventType::InstanceUnhealthy, Some(app), unhealthy)
                    .await;
                let delay = self.backoff.next_delay(&instance);
                tracing::warn!(%instance, cause, policy = ?then,
                    delay_ms = delay.as_millis() as u64, "instance unhealthy; out of the gateway until healed");
                let Some(policy) = then else {
                    return Ok(());
                };
                let this = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let result = match policy {
                        OnFailure::Restart => this.restart_in_place(&instance).await,
                        OnFailure::Replace => this.replace(&instance).await,
                    };
                    if let Err(e) = result {
                        tracing::warn!(error = %e, %instance, "could not heal an instance");
                    }
                });
            }
        }
        Ok(())
    }

    /// Restarts an unhealthy instance's container; the checker re-registers it once it passes.
    async fn restart_in_place(&self, instance: &InstanceId) -> Result<()> {
        let now = self.store.get_instance(instance).await?;
        if plan::restart_target(&now).is_none() {
            return Ok(());
        }
        self.fence.check("a restart in place").await?;
        self.lifecycle.restart_in_place(&now).await
    }

    /// Replaces an unhealthy instance: a new placement first, then the old one goes.
    async fn replace(&self, instance: &InstanceId) -> Result<()> {
        let now = self.store.get_instance(instance).await?;
        if !plan::still_unhealthy(&now) {
            return Ok(());
        }
        self.fence.check("a replacement").await?;
        let deployment = self.store.get_deployment_by_id(now.deployment_id).await?;
        self.lifecycle.add_replacement(&deployment).await?;
        DeployMetrics::inc(&self.metrics.replacements);
        let replaced = serde_json::json!({"instance": now.id, "version": now.version});
        self.events
            .emit(EventType::InstanceReplaced, Some(&now.app), replaced)
            .await;
        self.lifecycle
            .teardown(std::slice::from_ref(&now), false)
            .await;
        Ok(())
    }

    /// Makes the checker's targets equal to the database's running and unhealthy instances
    /// ([`plan::target_diff`]).
    pub async fn sync_health_targets(&self) -> Result<()> {
        let rows = self.store.list_all_instances().await?;
        let watched: HashSet<ContainerId> = self
            .health
            .watched()
            .into_iter()
            .map(|t| t.container)
            .collect();
        let diff = plan::target_diff(&rows, &watched);
        let mut specs = HashMap::new();
        for w in diff.watch {
            let r = &w.instance;
            let health = match specs.get(&r.deployment_id) {
                Some(h) => h,
                None => {
                    let d = self.store.get_deployment_by_id(r.deployment_id).await?;
                    specs.entry(r.deployment_id).or_insert(d.spec.health)
                }
            };
            self.health.watch(HealthTarget {
                app: r.app.clone(),
                version: r.version.clone(),
                container: w.container.clone(),
                endpoint: r.endpoint()?,
                spec: health.clone(),
                registered: w.registered,
            });
        }
        for cid in &diff.unwatch {
            self.health.unwatch(cid);
        }
        Ok(())
    }
}
