//! Starting one claimed instance: pull → run → wait for health → register → running, with
//! everything undone on failure. A worker's instance (no port) is `running` once its container
//! started: it has no health path to wait for and no route to register; its container's state
//! is its health from then on (`healing::workers`).

use super::{probe, Lifecycle};
use crate::engine::EngineRef;
use crate::error::{Error, Result};
use crate::events::EventType;
use crate::metrics::DeployMetrics;
use crate::progress::Progress;
use crate::registry_token::OPERATOR_USER;
use crate::store::{DeploymentRow, HostRow, InstanceRow};
use caas_deployer::{RunSpec, TenantNetwork};
use caas_registry::HealthTarget;
use caas_types::{labels, AppId, ContainerId, Endpoint, InstanceId, InstanceState, Resources};
use futures::StreamExt;
use std::collections::HashMap;
use std::time::Duration;

/// How often a starting instance's health path is polled: often, since every poll interval
/// is latency added to a deploy, and a loopback probe costs microseconds.
const START_POLL: Duration = Duration::from_millis(10);

impl Lifecycle {
    /// Starts one claimed instance. On failure everything it did is undone (container removed,
    /// node removed, claim released) before the error is returned.
    pub(crate) async fn start_instance(
        &self,
        row: &DeploymentRow,
        inst: &InstanceRow,
        progress: &Progress,
    ) -> Result<()> {
        let mut started: Option<(EngineRef, ContainerId)> = None;
        let result = self.start_steps(row, inst, progress, &mut started).await;
        if let Err(e) = &result {
            progress.step(Some(&inst.id), "failed", e.to_string());
            let mut node_gone = true;
            if let Some((engine, cid)) = started {
                if let Err(z) = self
                    .routes
                    .deregister(&row.spec.app, &row.spec.version, &cid)
                    .await
                {
                    tracing::warn!(error = %z, container = %cid, "could not remove a failed instance's node");
                    node_gone = false;
                }
                if let Err(d) = engine.remove(&cid).await {
                    tracing::warn!(error = %d, container = %cid, "could not remove a failed instance's container");
                }
            }
            if !node_gone {
                // The port stays claimed until the reconciler has removed the node.
                if let Err(s) = self
                    .store
                    .set_instance_state(&inst.id, caas_types::InstanceState::Stopping)
                    .await
                {
                    tracing::warn!(error = %s, instance = %inst.id, "could not mark a failed instance stopping");
                }
            } else if let Err(r) = self.release(inst).await {
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
        started: &mut Option<(EngineRef, ContainerId)>,
    ) -> Result<()> {
        let (host, engine) = self.engine_of(inst.host_id).await?;
        self.ensure_image(&host, &engine, &row.spec.image, Some(&inst.id), progress)
            .await?;
        self.store
            .set_instance_state(&inst.id, InstanceState::Starting)
            .await?;
        let address = inst.address()?;
        let spec = self.run_spec(row, inst, &host, address).await?;
        let running = engine
            .run(&spec)
            .await
            .map_err(|e| Error::engine(&host.name, e))?;
        *started = Some((engine.clone(), running.id.clone()));
        self.store
            .set_instance_container(&inst.id, Some(&running.id))
            .await?;
        let Some(endpoint) = address else {
            progress.step(
                Some(&inst.id),
                "starting",
                format!(
                    "container {} on {} (a worker)",
                    short(&running.id),
                    host.name
                ),
            );
            self.store
                .set_instance_state(&inst.id, InstanceState::Running)
                .await?;
            self.store.set_instance_healthy(&inst.id, true).await?;
            DeployMetrics::inc(&self.metrics.instances_started);
            progress.step(
                Some(&inst.id),
                "running",
                "a worker: supervised by its container's state",
            );
            return Ok(());
        };
        progress.step(
            Some(&inst.id),
            "starting",
            format!("container {} on {endpoint}", short(&running.id)),
        );

        let timeout = Duration::from_millis(row.spec.health.timeout_ms.max(100));
        let deadline = Duration::from_secs(self.config.start_timeout_secs);
        if !probe::wait_healthy(
            endpoint,
            row.spec.health.path.as_str(),
            timeout,
            START_POLL,
            deadline,
        )
        .await
        {
            let state = engine.inspect(&running.id).await;
            if state.as_ref().is_ok_and(|s| s.oom_killed) {
                let fields = serde_json::json!({"instance": inst.id, "version": row.spec.version,
                    "host": host.name});
                let app = Some(&row.spec.app);
                self.events
                    .emit(EventType::InstanceOomKilled, app, fields)
                    .await;
            }
            let why = match state {
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

        self.routes
            .register(&row.spec.app, &row.spec.version, &running.id, endpoint)
            .await?;
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

    /// Pulls the image on the host unless it is there already, reporting layer progress (for
    /// instance `who`, when it is one; a job's pull reports none).
    pub(crate) async fn ensure_image(
        &self,
        host: &HostRow,
        engine: &EngineRef,
        image: &str,
        who: Option<&InstanceId>,
        progress: &Progress,
    ) -> Result<()> {
        if engine
            .image_present(image)
            .await
            .map_err(|e| Error::engine(&host.name, e))?
        {
            return Ok(());
        }
        progress.step(who, "pulling", format!("{image} on {}", host.name));
        let mut stream = engine.pull(image, self.creds.as_ref());
        let mut layers: HashMap<String, String> = HashMap::new();
        while let Some(step) = stream.next().await {
            let step = step.map_err(|e| Error::engine(&host.name, e))?;
            let Some(layer) = step.layer.clone() else {
                continue;
            };
            // One line per layer state change, not per byte.
            if layers.get(&layer) != Some(&step.status) {
                let bytes = match (step.current, step.total) {
                    (Some(c), Some(t)) => format!(" {c}/{t} bytes"),
                    _ => String::new(),
                };
                progress.step(who, "pull", format!("{layer}: {}{bytes}", step.status));
                layers.insert(layer, step.status);
            }
        }
        progress.step(who, "pulled", format!("{image} ({} layers)", layers.len()));
        Ok(())
    }

    /// The container spec of an instance (published at `address`; `None` for a worker's) with
    /// its deployment's command. Its environment is the deployment's `env` with the app's
    /// current config over it (config wins); secrets are opened here and nowhere else.
    pub(crate) async fn run_spec(
        &self,
        row: &DeploymentRow,
        inst: &InstanceRow,
        host: &HostRow,
        address: Option<Endpoint>,
    ) -> Result<RunSpec> {
        let resources = Resources {
            memory: row.spec.resources.memory,
            cpus: row.spec.resources.cpus,
        };
        let (namespace, app, version) = (&self.config.namespace, &row.spec.app, &row.spec.version);
        let image = row.spec.image.clone();
        let mut spec = match (row.spec.port, address) {
            (Some(port), Some(endpoint)) => RunSpec::for_instance(
                namespace, app, version, &inst.id, image, port, endpoint, resources,
            ),
            (None, None) => {
                RunSpec::for_worker(namespace, app, version, &inst.id, image, resources)
            }
            _ => {
                return Err(Error::Invalid(format!(
                    "instance {} and its deployment disagree on having a port",
                    inst.id
                )))
            }
        };
        spec.command = row.spec.command.clone().unwrap_or_default();
        spec.env = self
            .app_configs
            .environment(&row.spec.app, &row.spec.env)
            .await?;
        spec.log_rotation = caas_deployer::LogRotation {
            max_size_mb: self.config.log_max_size_mb,
            max_files: self.config.log_max_files,
        };
        spec.nofile = self.config.container_nofile;
        spec.user = row.spec.user.as_ref().map(|u| u.as_str().to_owned());
        spec.read_only_rootfs = row.spec.read_only;
        spec.labels
            .insert(labels::HOST.to_owned(), host.name.to_string());
        spec.stop_timeout = Some(self.stop_grace_s(row.spec.stop_timeout_s));
        spec.network = self.network_of(app).await?;
        Ok(spec)
    }

    /// The network an app's containers join: its tenant's (`operator` for an app the operator
    /// owns), or the engine's default bridge when tenant networks are off.
    pub(crate) async fn network_of(&self, app: &AppId) -> Result<Option<TenantNetwork>> {
        if !self.config.tenant_networks {
            return Ok(None);
        }
        let owner = self.store.get_app(app).await?.tenant;
        let tenant = owner.as_ref().map_or(OPERATOR_USER, |t| t.as_str());
        Ok(Some(TenantNetwork::for_tenant(
            &self.config.namespace,
            tenant,
        )))
    }
}

/// The first 12 characters of a container id, as docker prints them.
pub(crate) fn short(id: &ContainerId) -> &str {
    &id.as_str()[..12.min(id.as_str().len())]
}
