//! How deployments look in the admin API.

use super::Deployments;
use crate::error::Result;
use crate::store::DeploymentRow;
use caas_types::api;

impl Deployments {
    /// The API view of a deployment with its instances.
    pub(crate) async fn view(&self, row: &DeploymentRow) -> Result<api::Deployment> {
        let instances = self.store.list_instances_by_deployment(row.id).await?;
        let instance_list = instances
            .iter()
            .map(|i| i.to_api())
            .collect::<Result<Vec<_>>>()?;
        Ok(api::Deployment {
            app: row.spec.app.clone(),
            version: row.spec.version.clone(),
            image: row.spec.image.clone(),
            instances: row.spec.instances,
            memory_mb: row.spec.resources.memory.mib(),
            cpus: row.spec.resources.cpus.cores(),
            port: row.spec.port,
            command: row.spec.command.clone(),
            stop_timeout_s: row.spec.stop_timeout_s,
            recycle_after_s: row.spec.recycle_after_s,
            autoscale: row.spec.autoscale.map(api::Autoscale::from),
            desired: row.spec.autoscale.and(row.desired),
            user: row.spec.user.clone(),
            read_only: row.spec.read_only,
            instance_list,
        })
    }
}
