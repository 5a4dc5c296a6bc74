//! Removing instances: deregister → drain → stop (SIGTERM, then SIGKILL after the deployment's
//! `stop_timeout_s`) or kill (SIGKILL) → remove → release. A step that fails leaves the row in
//! `stopping` for the reconciler to finish.

use super::Lifecycle;
use crate::error::Error;
use crate::metrics::DeployMetrics;
use crate::store::InstanceRow;
use caas_types::InstanceState;
use std::time::Duration;

/// How teardown ends a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopMode {
    /// SIGTERM, then SIGKILL after the deployment's grace period.
    Graceful,
    /// SIGKILL at once (`DELETE /v1/apps/{app}/instances/{id}`).
    Kill,
}

impl Lifecycle {
    /// Removes instances: each leaves ZooKeeper first; then (if `drain`) one drain period lets
    /// gateways drop the addresses and requests in flight finish; then containers are stopped
    /// with the grace period and removed, and the claims released. Failures are logged and
    /// leave the row in `stopping` for the reconciler to finish.
    pub(crate) async fn teardown(&self, instances: &[InstanceRow], drain: bool) {
        self.teardown_with(instances, drain, StopMode::Graceful)
            .await;
    }

    /// [`Lifecycle::teardown`], ending the containers as `mode` says.
    pub(crate) async fn teardown_with(
        &self,
        instances: &[InstanceRow],
        drain: bool,
        mode: StopMode,
    ) {
        let mut was_registered = false;
        // Instances whose address node could not be removed keep their claim (and so their
        // host port) until the reconciler has removed the node: a port is never handed to
        // another app while a gateway may still route to it.
        let mut still_routed = std::collections::HashSet::new();
        for inst in instances {
            if let Err(e) = self
                .store
                .set_instance_state(&inst.id, InstanceState::Stopping)
                .await
            {
                tracing::warn!(error = %e, instance = %inst.id, "could not mark an instance stopping");
            }
            if let Some(cid) = &inst.container_id {
                self.health.unwatch(cid);
                // A worker is never in ZooKeeper: nothing to drain.
                was_registered |= inst.state == InstanceState::Running && !inst.is_worker();
                if let Err(e) = self.routes.deregister(&inst.app, &inst.version, cid).await {
                    tracing::warn!(error = %e, container = %cid, "could not deregister; the reconciler will");
                    still_routed.insert(inst.id.clone());
                }
            }
        }
        if drain && was_registered && self.config.drain_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.config.drain_ms)).await;
        }
        futures::future::join_all(
            instances
                .iter()
                .map(|i| self.stop_and_release(i, mode, !still_routed.contains(&i.id))),
        )
        .await;
    }

    /// Stops and removes an instance's container, then releases its claim unless `release` is
    /// false (its node is still in ZooKeeper: the row stays `stopping` for the reconciler).
    async fn stop_and_release(&self, inst: &InstanceRow, mode: StopMode, release: bool) {
        if let Some(cid) = &inst.container_id {
            let result = async {
                let (host, engine) = self.engine_of(inst.host_id).await?;
                let stopped = match mode {
                    StopMode::Graceful => {
                        let grace = self.stop_grace_s(inst.stop_timeout_s);
                        engine.stop(cid, Duration::from_secs(grace.into())).await
                    }
                    StopMode::Kill => engine.kill(cid).await,
                };
                stopped.map_err(|e| Error::engine(&host.name, e))?;
                engine
                    .remove(cid)
                    .await
                    .map_err(|e| Error::engine(&host.name, e))
            }
            .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, instance = %inst.id, "could not remove a container; the reconciler will retry");
                return;
            }
        }
        if !release {
            tracing::warn!(instance = %inst.id, "keeping the claim while the address node may remain; the reconciler will release it");
            return;
        }
        match self.release(inst).await {
            Ok(()) => DeployMetrics::inc(&self.metrics.instances_stopped),
            Err(e) => {
                tracing::warn!(error = %e, instance = %inst.id, "could not release a claim; the reconciler will retry")
            }
        }
    }
}
