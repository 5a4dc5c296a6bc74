//! Removing instances: deregister → drain → stop → remove → release. A step that fails leaves
//! the row in `stopping` for the reconciler to finish.

use super::Lifecycle;
use crate::error::Error;
use crate::metrics::DeployMetrics;
use crate::store::InstanceRow;
use caas_types::InstanceState;
use std::time::Duration;

impl Lifecycle {
    /// Removes instances: each leaves ZooKeeper first; then (if `drain`) one drain period lets
    /// gateways drop the addresses and requests in flight finish; then containers are stopped
    /// with the grace period and removed, and the claims released. Failures are logged and
    /// leave the row in `stopping` for the reconciler to finish.
    pub(crate) async fn teardown(&self, instances: &[InstanceRow], drain: bool) {
        let mut was_registered = false;
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
                was_registered |= inst.state == InstanceState::Running;
                if let Err(e) = self.routes.deregister(&inst.app, &inst.version, cid).await {
                    tracing::warn!(error = %e, container = %cid, "could not deregister; the reconciler will");
                }
            }
        }
        if drain && was_registered && self.config.drain_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.config.drain_ms)).await;
        }
        futures::future::join_all(instances.iter().map(|i| self.stop_and_release(i))).await;
    }

    async fn stop_and_release(&self, inst: &InstanceRow) {
        if let Some(cid) = &inst.container_id {
            let result = async {
                let (host, engine) = self.engine_of(inst.host_id).await?;
                let grace = Duration::from_secs(self.config.stop_grace_secs);
                engine
                    .stop(cid, grace)
                    .await
                    .map_err(|e| Error::engine(&host.name, e))?;
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
        match self.release(inst).await {
            Ok(()) => DeployMetrics::inc(&self.metrics.instances_stopped),
            Err(e) => {
                tracing::warn!(error = %e, instance = %inst.id, "could not release a claim; the reconciler will retry")
            }
        }
    }
}
