//! Replacing one running instance by a new one of the same deployment: the step a rolling
//! restart, a recycle and a kill share. The new instance is placed, healthy and registered
//! before the old one is deregistered, drained and ended, so the deployment keeps serving and
//! its count never drops; a global deployment has no second slot on the host, so there the old
//! one goes first while the other hosts' instances serve.

use super::Deployments;
use crate::error::{Error, Result};
use crate::events::EventType;
use crate::lifecycle::StopMode;
use crate::progress::Progress;
use crate::store::{DeploymentRow, DeploymentState, InstanceRow};
use caas_types::{InstanceId, InstanceState};

impl Deployments {
    /// Replaces `old`, a running instance of `row`, ending its container as `mode` says. The
    /// caller holds the deployment's lock. A failure to place the new one (not global) leaves
    /// the old one running.
    pub(crate) async fn replace_one(
        &self,
        row: &DeploymentRow,
        old: InstanceRow,
        mode: StopMode,
        progress: &Progress,
    ) -> Result<()> {
        if row.spec.placement.global {
            self.lifecycle.teardown_with(&[old], true, mode).await;
            self.lifecycle.add_instances(row, 1, progress).await
        } else {
            self.lifecycle.add_instances(row, 1, progress).await?;
            self.lifecycle.teardown_with(&[old], true, mode).await;
            Ok(())
        }
    }

    /// Recycles one instance (the leader's recycling duty): replaces it, gracefully, if it and
    /// its deployment are still running when the deployment's lock is held; answers whether it
    /// did. The caller holds the app's lock.
    pub async fn recycle_one(&self, deployment_id: i64, instance: &InstanceId) -> Result<bool> {
        let row = self.store.get_deployment_by_id(deployment_id).await?;
        let lock = self.lock_for(&row.spec.app, &row.spec.version);
        let _guard = lock.lock().await;
        // Read again under the lock: an operation or healing may have changed either.
        let row = match self.store.get_deployment_by_id(deployment_id).await {
            Ok(r) if r.state == DeploymentState::Running => r,
            Ok(_) | Err(Error::NotFound(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        let old = match self.store.get_instance(instance).await {
            Ok(i) if i.state == InstanceState::Running && i.deployment_id == row.id => i,
            Ok(_) | Err(Error::NotFound(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        tracing::info!(app = %row.spec.app, version = %row.spec.version, %instance, "recycling an instance (instance.recycled)");
        self.replace_one(&row, old, StopMode::Graceful, &Progress::silent())
            .await?;
        self.events
            .emit(
                EventType::InstanceRecycled,
                Some(&row.spec.app),
                serde_json::json!({"instance": instance.as_str(), "version": row.spec.version.as_str()}),
            )
            .await;
        Ok(true)
    }
}
