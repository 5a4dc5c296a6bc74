//! Rolling restart of an app: every running instance of every running deployment is replaced
//! by a new one, one at a time, the new one healthy and registered before the old one is
//! deregistered, drained and removed, so the app keeps serving throughout and its desired
//! count never drops. New containers start with the app's current config, which is how a
//! config change reaches them. A global deployment has one instance per host and no second
//! slot on it, so its hosts go one at a time the other way round: the old instance drains
//! first, while the other hosts' instances serve, then the new one starts there.

use super::Deployments;
use crate::error::{Error, Result};
use crate::events::EventType;
use crate::lifecycle::StopMode;
use crate::progress::Progress;
use crate::store::{DeploymentRow, DeploymentState};
use caas_types::{AppId, InstanceState};

impl Deployments {
    /// Restarts every running instance of `app`, rolling; answers how many were replaced. The
    /// caller holds the app's lock ([`Deployments::lock_app`]). A failure stops the roll where
    /// it is: the instance being replaced keeps running, those already replaced stay new.
    pub async fn restart(&self, app: &AppId, progress: &Progress) -> Result<u32> {
        let deployments: Vec<DeploymentRow> = self
            .store
            .list_deployments(app)
            .await?
            .into_iter()
            .filter(|d| d.state == DeploymentState::Running)
            .collect();
        let mut restarted = 0;
        for row in &deployments {
            let lock = self.lock_for(app, &row.spec.version);
            let _guard = lock.lock().await;
            restarted += self.restart_deployment(row, progress).await.map_err(|e| {
                progress.step(
                    None,
                    "failed",
                    format!("restart stopped after {restarted} instance(s): {e}"),
                );
                e
            })?;
        }
        progress.step(
            None,
            "restarted",
            format!("{app}: {restarted} instance(s) replaced"),
        );
        let event = serde_json::json!({ "restarted": restarted });
        self.events
            .emit(EventType::AppRestarted, Some(app), event)
            .await;
        Ok(restarted)
    }

    async fn restart_deployment(&self, row: &DeploymentRow, progress: &Progress) -> Result<u32> {
        let old: Vec<_> = self
            .store
            .list_instances_by_deployment(row.id)
            .await?
            .into_iter()
            .filter(|i| i.state == InstanceState::Running)
            .collect();
        let total = old.len();
        let mut done = 0;
        for inst in old {
            progress.step(
                Some(&inst.id),
                "restarting",
                format!(
                    "{} {} instance {} of {total}",
                    row.spec.app,
                    row.spec.version,
                    done + 1
                ),
            );
            // Read again: healing may have replaced or removed it meanwhile.
            let current = match self.store.get_instance(&inst.id).await {
                Ok(i) if i.state == InstanceState::Running => i,
                Ok(_) | Err(Error::NotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            self.replace_one(row, current, StopMode::Graceful, progress)
                .await?;
            progress.step(Some(&inst.id), "replaced", "drained and removed");
            done += 1;
        }
        Ok(done)
    }
}
