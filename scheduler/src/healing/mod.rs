//! What the leader does with health transitions: record them, then restart the container in
//! place or replace the instance, per the deployment's policy, with an exponential back-off so a
//! crash-looping app does not hammer its host. Also keeps the health checker's target set equal
//! to the database's running instances (deploys made by other scheduler processes included).

use crate::config::Config;
use crate::error::Result;
use crate::lifecycle::Lifecycle;
use crate::metrics::DeployMetrics;
use crate::store::{InstanceRow, Store};
use caas_registry::{HealthChecker, HealthEvent, HealthEventKind, HealthTarget};
use caas_types::{ContainerId, InstanceId};
use caas_types::{InstanceState, OnFailure};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// First restart delay; doubles per consecutive failure up to [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// An instance healthy this long has its back-off reset.
const STABLE_AFTER: Duration = Duration::from_secs(60);

/// Crash-loop bookkeeping per instance.
#[derive(Debug, Default)]
pub struct Backoff {
    state: Mutex<HashMap<InstanceId, (u32, Instant)>>,
}

impl Backoff {
    /// The delay before the next restart of `id`, counting this failure.
    pub fn next_delay(&self, id: &InstanceId) -> Duration {
        let mut map = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let entry = map.entry(id.clone()).or_insert((0, now));
        if now.duration_since(entry.1) > STABLE_AFTER {
            entry.0 = 0;
        }
        let delay = BASE_BACKOFF
            .saturating_mul(1u32 << entry.0.min(10))
            .min(MAX_BACKOFF);
        entry.0 += 1;
        entry.1 = now;
        delay
    }

    /// Forgets an instance.
    pub fn forget(&self, id: &InstanceId) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

/// Acts on health transitions and keeps the checker's targets current (leader only).
#[derive(Debug)]
pub struct Healer {
    store: Store,
    lifecycle: Arc<Lifecycle>,
    health: HealthChecker,
    metrics: Arc<DeployMetrics>,
    backoff: Backoff,
}

impl Healer {
    /// A healer over these handles.
    pub fn new(
        _config: Arc<Config>,
        store: Store,
        lifecycle: Arc<Lifecycle>,
        health: HealthChecker,
        metrics: Arc<DeployMetrics>,
    ) -> Healer {
        Healer {
            store,
            lifecycle,
            health,
            metrics,
            backoff: Backoff::default(),
        }
    }

    async fn instance_by_container(&self, ev: &HealthEvent) -> Result<Option<InstanceRow>> {
        let rows = self.store.list_instances_by_app(&ev.app).await?;
        Ok(rows
            .into_iter()
            .find(|r| r.container_id.as_ref() == Some(&ev.container)))
    }

    /// Acts on one health transition (the checker has already updated ZooKeeper).
    pub async fn on_health_event(self: &Arc<Self>, ev: HealthEvent) -> Result<()> {
        let Some(inst) = self.instance_by_container(&ev).await? else {
            // Not ours any more (undeployed meanwhile): stop checking it.
            self.health.unwatch(&ev.container);
            return Ok(());
        };
        if inst.state == InstanceState::Stopping {
            return Ok(());
        }
        match ev.kind {
            HealthEventKind::Healthy => {
                DeployMetrics::inc(&self.metrics.health_healthy);
                tracing::info!(instance = %inst.id, endpoint = %ev.endpoint, "instance healthy again");
                self.store.set_instance_healthy(&inst.id, true).await?;
                self.store
                    .set_instance_state(&inst.id, InstanceState::Running)
                    .await?;
            }
            HealthEventKind::Unhealthy => {
                DeployMetrics::inc(&self.metrics.health_unhealthy);
                self.store.set_instance_healthy(&inst.id, false).await?;
                self.store
                    .set_instance_state(&inst.id, InstanceState::Unhealthy)
                    .await?;
                let deployment = self.store.get_deployment_by_id(inst.deployment_id).await?;
                let delay = self.backoff.next_delay(&inst.id);
                tracing::warn!(instance = %inst.id, endpoint = %ev.endpoint, policy = ?deployment.spec.health.on_failure,
                    delay_ms = delay.as_millis() as u64, "instance unhealthy; removed from the gateway");
                let this = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let result = match deployment.spec.health.on_failure {
                        OnFailure::Restart => this.restart_in_place(&inst).await,
                        OnFailure::Replace => this.replace(&inst).await,
                    };
                    if let Err(e) = result {
                        tracing::warn!(error = %e, instance = %inst.id, "could not heal an instance");
                    }
                });
            }
        }
        Ok(())
    }

    /// Restarts an unhealthy instance's container; the checker re-registers it once it passes.
    async fn restart_in_place(&self, inst: &InstanceRow) -> Result<()> {
        // Still unhealthy? (It may have recovered, or been undeployed, during the back-off.)
        let now = self.store.get_instance(&inst.id).await?;
        if now.state != InstanceState::Unhealthy {
            return Ok(());
        }
        self.lifecycle.restart_in_place(&now).await
    }

    /// Replaces an unhealthy instance: a new placement first, then the old one goes.
    async fn replace(&self, inst: &InstanceRow) -> Result<()> {
        let now = self.store.get_instance(&inst.id).await?;
        if now.state != InstanceState::Unhealthy {
            return Ok(());
        }
        let deployment = self.store.get_deployment_by_id(now.deployment_id).await?;
        self.lifecycle.add_replacement(&deployment).await?;
        DeployMetrics::inc(&self.metrics.replacements);
        self.lifecycle
            .teardown(std::slice::from_ref(&now), false)
            .await;
        Ok(())
    }

    /// Makes the checker's targets equal to the database's running and unhealthy instances.
    pub async fn sync_health_targets(&self) -> Result<()> {
        let rows = self.store.list_all_instances().await?;
        let watched: HashSet<ContainerId> = self
            .health
            .watched()
            .into_iter()
            .map(|t| t.container)
            .collect();
        let mut want = HashSet::new();
        let mut specs = HashMap::new();
        for r in rows {
            let Some(cid) = r.container_id.clone() else {
                continue;
            };
            if !matches!(r.state, InstanceState::Running | InstanceState::Unhealthy) {
                continue;
            }
            want.insert(cid.clone());
            if watched.contains(&cid) {
                continue;
            }
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
                container: cid,
                endpoint: r.endpoint()?,
                spec: health.clone(),
                registered: r.healthy && r.state == InstanceState::Running,
            });
        }
        for cid in watched.difference(&want) {
            self.health.unwatch(cid);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Backoff::default();
        let id: InstanceId = "app-1".parse().expect("valid");
        let delays: Vec<Duration> = (0..10).map(|_| b.next_delay(&id)).collect();
        assert_eq!(delays[0], BASE_BACKOFF);
        assert_eq!(delays[1], BASE_BACKOFF * 2);
        assert_eq!(delays[2], BASE_BACKOFF * 4);
        assert!(delays.iter().all(|d| *d <= MAX_BACKOFF));
        assert_eq!(delays[9], MAX_BACKOFF);
        b.forget(&id);
        assert_eq!(b.next_delay(&id), BASE_BACKOFF);
    }
}
