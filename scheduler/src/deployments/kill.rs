//! Killing one instance on demand (`DELETE /v1/apps/{app}/instances/{id}`): its deployment
//! replaces it with a new container whatever `on_failure` says. The replacement is placed
//! first (not for a global deployment, which has no second slot on the host); then the killed
//! instance is deregistered at once, one drain period lets gateways drop it and requests in
//! flight finish, and its container gets SIGKILL and is removed. If no replacement fits while
//! the old one holds its room, the old one is killed first and the replacement placed after.

use super::Deployments;
use crate::error::{Error, Result};
use crate::events::EventType;
use crate::lifecycle::StopMode;
use crate::progress::Progress;
use crate::store::DeploymentState;
use caas_types::{api, AppId, InstanceId, InstanceState};

impl Deployments {
    /// Kills instance `id` of `app` and replaces it; answers the instance as it was before the
    /// kill. Unknown, or of another app: [`Error::NotFound`]; already being stopped:
    /// [`Error::Conflict`]. The caller holds the app's lock.
    pub async fn kill(
        &self,
        app: &AppId,
        id: &InstanceId,
        progress: &Progress,
    ) -> Result<api::Instance> {
        let not_found = || Error::NotFound(format!("instance {id} of app {app}"));
        let inst = match self.store.get_instance(id).await {
            Ok(i) if i.app == *app => i,
            Ok(_) | Err(Error::NotFound(_)) => return Err(not_found()),
            Err(e) => return Err(e),
        };
        let row = self.store.get_deployment_by_id(inst.deployment_id).await?;
        let lock = self.lock_for(&row.spec.app, &row.spec.version);
        let _guard = lock.lock().await;
        // Read both again under the lock.
        let row = self.store.get_deployment_by_id(inst.deployment_id).await?;
        let inst = match self.store.get_instance(id).await {
            Ok(i) if i.app == *app => i,
            Ok(_) | Err(Error::NotFound(_)) => return Err(not_found()),
            Err(e) => return Err(e),
        };
        if inst.state == InstanceState::Stopping {
            return Err(Error::Conflict(format!(
                "instance {id} is already being stopped"
            )));
        }
        let before = inst.to_api()?;
        tracing::info!(%app, instance = %id, "killing an instance (instance.killed)");
        progress.step(Some(id), "killing", format!("{app} {}", row.spec.version));
        if row.state != DeploymentState::Running {
            // Deploying or being removed: its own operation decides the count.
            self.lifecycle
                .teardown_with(&[inst], true, StopMode::Kill)
                .await;
            return Ok(before);
        }
        let global = row.spec.placement.global;
        match self
            .replace_one(&row, inst.clone(), StopMode::Kill, progress)
            .await
        {
            Ok(()) => {}
            Err(e) if global => return Err(replacement_failed(id, e)),
            Err(e) => {
                tracing::warn!(error = %e, instance = %id, "no room for a replacement beside the killed instance; killing it first");
                self.lifecycle
                    .teardown_with(&[inst], true, StopMode::Kill)
                    .await;
                self.lifecycle
                    .add_instances(&row, 1, progress)
                    .await
                    .map_err(|e| replacement_failed(id, e))?;
            }
        }
        progress.step(Some(id), "killed", "replaced");
        self.events
            .emit(
                EventType::InstanceKilled,
                Some(app),
                serde_json::json!({"instance": id.as_str(), "version": row.spec.version.as_str()}),
            )
            .await;
        Ok(before)
    }
}

fn replacement_failed(id: &InstanceId, e: Error) -> Error {
    Error::Incomplete(format!(
        "instance {id} was killed but its replacement could not be started ({e}); the reconciler will retry"
    ))
}
