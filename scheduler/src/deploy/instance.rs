//! One instance's life: start (pull → run → wait for health → register → running) with
//! clean-up on failure, and teardown (deregister → drain → stop → remove → release).

use super::{claims, docker_error, probe, zk_error, Orchestrator, Progress};
use crate::error::{Error, Result};
use crate::metrics::DeployMetrics;
use crate::store::{DeploymentRow, HostRow, InstanceRow};
use caas_deployer::{Deployer, RunSpec};
use caas_registry::HealthTarget;
use caas_types::api::InstanceState;
use caas_types::{labels, ContainerId, Endpoint, Resources};
use futures::StreamExt;
use std::collections::HashMap;
use std::time::Duration;

/// How often a starting instance's health path is polled: often, since every poll interval
/// is latency added to a deploy, and a loopback probe costs microseconds.
const START_POLL: Duration = Duration::from_millis(10);

impl Orchestrator {
    /// The engine client of an instance's host.
    pub(crate) async fn engine_of(&self, host_id: i64) -> Result<(HostRow, Deployer)> {
        let host = self.store.get_host_by_id(host_id).await?;
        let deployer = self.engines.get(&host.name, &host.docker)?;
        Ok((host, deployer))
    }

    /// Starts one claimed instance. On failure everything it did is undone (container removed,
    /// node removed, claim released) before the error is returned.
    pub(crate) async fn start_instance(
        &self,
        row: &DeploymentRow,
        inst: &InstanceRow,
        progress: &Progress,
    ) -> Result<()> {
        let mut started: Option<(Deployer, ContainerId)> = None;
        let result = self.start_steps(row, inst, progress, &mut started).await;
        if let Err(e) = &result {
            progress.step(Some(&inst.id), "failed", e.to_string());
            if let Some((deployer, cid)) = started {
                if let Err(z) = self
                    .registry
                    .deregister(&row.spec.app, &row.spec.version, &cid)
                    .await
                {
                    tracing::warn!(error = %z, container = %cid, "could not remove a failed instance's node");
                }
                if let Err(d) = deployer.remove(&cid).await {
                    tracing::warn!(error = %d, container = %cid, "could not remove a failed instance's container");
                }
            }
            if let Err(r) = claims::release(&self.store, &inst.id).await {
                tracing::warn!(error = %r, instance = %inst.id, "could not release a failed instance's claim");
            }
        }
        result
    }

    async fn start_steps(
        &self,
        row: &DeploymentRow,
        inst: &InstanceRow,
        progress: &Progress,
        started: &mut Option<(Deployer, ContainerId)>,
    ) -> Result<()> {
        let (host, deployer) = self.engine_of(inst.host_id).await?;
        self.ensure_image(&host, &deployer, &row.spec.image, inst, progress)
            .await?;
        self.store
            .set_instance_state(&inst.id, InstanceState::Starting)
            .await?;
        let endpoint = inst.endpoint()?;
        let spec = self.run_spec(row, inst, &host, endpoint);
        let running = deployer
            .run(&spec)
            .await
            .map_err(|e| docker_error(&host.name, e))?;
        *started = Some((deployer.clone(), running.id.clone()));
        self.store
            .set_instance_container(&inst.id, Some(&running.id))
            .await?;
        progress.step(
            Some(&inst.id),
            "starting",
            format!("container {} on {}", short(&running.id), running.endpoint),
        );

        let timeout = Duration::from_millis(row.spec.health.timeout_ms.max(100));
        let deadline = Duration::from_secs(self.config.start_timeout_secs);
        if !probe::wait_healthy(
            endpoint,
            &row.spec.health.path,
            timeout,
            START_POLL,
            deadline,
        )
        .await
        {
            let why = match deployer.inspect(&running.id).await {
                Ok(s) if s.oom_killed => "it was killed for running out of memory".to_owned(),
                Ok(s) if s.exit_code.is_some_and(|c| c != 0) => {
                    format!("it exited with code {}", s.exit_code.unwrap_or_default())
                }
                _ => format!(
                    "it did not answer {} within {}s",
                    row.spec.health.path,
                    deadline.as_secs()
                ),
            };
            return Err(Error::Timeout(format!(
                "instance {} on {} failed to start: {why}",
                inst.id, host.name
            )));
        }
        progress.step(
            Some(&inst.id),
            "healthy",
            format!("{} answers {}", endpoint, row.spec.health.path),
        );

        self.registry
            .register(&row.spec.app, &row.spec.version, &running.id, endpoint)
            .await
            .map_err(zk_error)?;
        self.store
            .set_instance_state(&inst.id, InstanceState::Running)
            .await?;
        self.store.set_instance_healthy(&inst.id, true).await?;
        self.health.watch(HealthTarget {
            app: row.spec.app.clone(),
            version: row.spec.version.clone(),
            container: running.id.clone(),
            endpoint,
            spec: row.spec.health.clone(),
            registered: true,
        });
        DeployMetrics::inc(&self.metrics.instances_started);
        progress.step(
            Some(&inst.id),
            "running",
            format!("registered at {endpoint}"),
        );
        Ok(())
    }

    /// Pulls the image on the host unless it is there already, reporting layer progress.
    async fn ensure_image(
        &self,
        host: &HostRow,
        deployer: &Deployer,
        image: &str,
        inst: &InstanceRow,
        progress: &Progress,
    ) -> Result<()> {
        if deployer
            .image_present(image)
            .await
            .map_err(|e| docker_error(&host.name, e))?
        {
            return Ok(());
        }
        progress.step(
            Some(&inst.id),
            "pulling",
            format!("{image} on {}", host.name),
        );
        let stream = deployer.pull(image, self.credentials());
        futures::pin_mut!(stream);
        let mut layers: HashMap<String, String> = HashMap::new();
        while let Some(step) = stream.next().await {
            let step = step.map_err(|e| docker_error(&host.name, e))?;
            let Some(layer) = step.layer.clone() else {
                continue;
            };
            // One line per layer state change, not per byte.
            if layers.get(&layer) != Some(&step.status) {
                let bytes = match (step.current, step.total) {
                    (Some(c), Some(t)) => format!(" {c}/{t} bytes"),
                    _ => String::new(),
                };
                progress.step(
                    Some(&inst.id),
                    "pull",
                    format!("{layer}: {}{bytes}", step.status),
                );
                layers.insert(layer, step.status);
            }
        }
        progress.step(
            Some(&inst.id),
            "pulled",
            format!("{image} ({} layers)", layers.len()),
        );
        Ok(())
    }

    /// The container spec of an instance.
    pub(crate) fn run_spec(
        &self,
        row: &DeploymentRow,
        inst: &InstanceRow,
        host: &HostRow,
        endpoint: Endpoint,
    ) -> RunSpec {
        let resources = Resources {
            memory: row.spec.resources.memory,
            cpus: row.spec.resources.cpus,
        };
        let mut spec = RunSpec::for_instance(
            &self.config.namespace,
            &row.spec.app,
            &row.spec.version,
            &inst.id,
            row.spec.image.clone(),
            row.spec.port,
            endpoint,
            resources,
        );
        spec.env = row.spec.env.clone();
        spec.labels
            .insert(labels::HOST.to_owned(), host.name.to_string());
        spec
    }

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
                if let Err(e) = self
                    .registry
                    .deregister(&inst.app, &inst.version, cid)
                    .await
                {
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
                let (host, deployer) = self.engine_of(inst.host_id).await?;
                let grace = Duration::from_secs(self.config.stop_grace_secs);
                deployer
                    .stop(cid, grace)
                    .await
                    .map_err(|e| docker_error(&host.name, e))?;
                deployer
                    .remove(cid)
                    .await
                    .map_err(|e| docker_error(&host.name, e))
            }
            .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, instance = %inst.id, "could not remove a container; the reconciler will retry");
                return;
            }
        }
        match claims::release(&self.store, &inst.id).await {
            Ok(()) => DeployMetrics::inc(&self.metrics.instances_stopped),
            Err(e) => {
                tracing::warn!(error = %e, instance = %inst.id, "could not release a claim; the reconciler will retry")
            }
        }
    }
}

/// The first 12 characters of a container id, as docker prints them.
pub(crate) fn short(id: &ContainerId) -> &str {
    &id.as_str()[..12.min(id.as_str().len())]
}
