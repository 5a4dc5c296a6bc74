//! The `deployments` table: one row per (app, version) with its image, per-instance resources,
//! container port (NULL: a worker), command (NULL: the image's), env, placement and health
//! settings, desired instance count, autoscaling (bounds, and the count the autoscaler
//! wants), and container hardening (the user its containers run as, a read-only root). While a
//! rollback rolls the version that runs, the deployment it replaces is *superseded* (moved out
//! of the (app, version) key) until it is undeployed; lookups by version see the current one.

use super::sql::{self, get, json, opt_json, opt_text, opt_unsigned, parse, text, unsigned};
use super::Store;
use crate::error::{Error, Result};
use caas_types::{
    AppId, AutoscalePolicy, ContainerUser, Cpus, HealthPolicy, Memory, PlacementPolicy, Resources,
    Version,
};
use sqlx::mysql::MySqlRow;
use std::collections::BTreeMap;

/// Where a deployment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeploymentState {
    /// Being rolled out.
    Deploying,
    /// All desired instances were started.
    Running,
    /// Being undeployed.
    Stopping,
    /// The roll-out failed and was rolled back.
    Failed,
}

impl DeploymentState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentState::Deploying => "deploying",
            DeploymentState::Running => "running",
            DeploymentState::Stopping => "stopping",
            DeploymentState::Failed => "failed",
        }
    }

    fn parse(raw: &str) -> Result<Self> {
        Ok(match raw {
            "deploying" => DeploymentState::Deploying,
            "running" => DeploymentState::Running,
            "stopping" => DeploymentState::Stopping,
            "failed" => DeploymentState::Failed,
            other => return Err(Error::Invalid(format!("stored deployment state {other:?}"))),
        })
    }
}

/// A deployment's spec: what a deploy records, and what a stored row ([`DeploymentRow`]) holds.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDeployment {
    /// The app.
    pub app: AppId,
    /// The version (image tag).
    pub version: Version,
    /// The image reference, `{registry}/{app}:{version}`.
    pub image: String,
    /// What each instance claims.
    pub resources: Resources,
    /// The port the app listens on inside its container; `None` for a worker (no host port,
    /// no route, no health path: supervised by its container's state).
    pub port: Option<u16>,
    /// The command overriding the image's `CMD` (`None`: the image's own).
    pub command: Option<Vec<String>>,
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// Placement policy.
    pub placement: PlacementPolicy,
    /// Health-check policy.
    pub health: HealthPolicy,
    /// Desired instance count.
    pub instances: u32,
    /// Stop grace period of its instances, seconds (`None`: the scheduler's `--stop-grace-secs`).
    pub stop_timeout_s: Option<u32>,
    /// Age after which the leader replaces an instance, seconds (`None`: never).
    pub recycle_after_s: Option<u64>,
    /// Autoscaling bounds (`None`: scaled by hand only). With it, `instances` is the starting
    /// count, already within `[min, max]`.
    pub autoscale: Option<AutoscalePolicy>,
    /// The user its containers run as (`None`: the image's).
    pub user: Option<ContainerUser>,
    /// Whether its containers' root filesystem is read-only (a tmpfs at `/tmp` stays writable).
    pub read_only: bool,
}

impl NewDeployment {
    /// Whether this is a worker deployment (no port).
    pub fn is_worker(&self) -> bool {
        self.port.is_none()
    }
}

/// A deployment as stored: the spec it was recorded with, and where it is in its life.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentRow {
    /// Database id.
    pub id: i64,
    /// What was asked for (the desired instance count follows scaling).
    pub spec: NewDeployment,
    /// Life-cycle state.
    pub state: DeploymentState,
    /// Last change, milliseconds since the epoch (the reconciler's "stuck" clock).
    pub updated_ms: i64,
    /// The count the autoscaler wants (`None` without `spec.autoscale`; the starting count
    /// until it decides otherwise).
    pub desired: Option<u32>,
}

const DEPLOYMENT_COLUMNS: &str =
    "id, app_id, version, image, memory, cpu, port, command, env, placement, health, instances, \
     state, stop_timeout_s, recycle_after_s, autoscale, desired, run_as_user, read_only, CAST(UNIX_TIMESTAMP(updated_at) * 1000 AS SIGNED) AS updated_ms";

fn deployment_from_row(row: &MySqlRow) -> Result<DeploymentRow> {
    let memory: u64 = unsigned(row, "memory")?;
    let cpu: u32 = unsigned(row, "cpu")?;
    let state = text(row, "state")?;
    Ok(DeploymentRow {
        id: get(row, "id")?,
        spec: NewDeployment {
            app: parse(row, "app_id")?,
            version: parse(row, "version")?,
            image: text(row, "image")?,
            resources: Resources {
                memory: Memory::from_bytes(memory)
                    .map_err(|_| Error::Invalid("stored memory".into()))?,
                cpus: Cpus::from_millis(cpu).map_err(|_| Error::Invalid("stored cpu".into()))?,
            },
            port: opt_unsigned(row, "port")?,
            command: opt_json(row, "command")?,
            env: json(row, "env")?,
            placement: json(row, "placement")?,
            health: json(row, "health")?,
            instances: unsigned(row, "instances")?,
            stop_timeout_s: opt_unsigned(row, "stop_timeout_s")?,
            recycle_after_s: opt_unsigned(row, "recycle_after_s")?,
            autoscale: opt_json(row, "autoscale")?,
            user: opt_text(row, "run_as_user")?
                .map(|u| {
                    u.parse()
                        .map_err(|_| Error::Invalid(format!("stored run_as_user {u:?}")))
                })
                .transpose()?,
            read_only: get(row, "read_only")?,
        },
        state: DeploymentState::parse(&state)?,
        updated_ms: get(row, "updated_ms")?,
        desired: opt_unsigned(row, "desired")?,
    })
}

impl Store {
    /// Records a deployment (state `deploying`; with autoscale, `desired` is its starting
    /// count). An existing (app, version) is [`Error::Conflict`]; an unknown app is
    /// [`Error::NotFound`].
    pub async fn create_deployment(&self, d: &NewDeployment) -> Result<DeploymentRow> {
        let memory = i64::try_from(d.resources.memory.bytes())
            .map_err(|_| Error::Invalid("memory".into()))?;
        let result = sqlx::query(
            "INSERT INTO deployments (app_id, version, image, memory, cpu, port, command, env, \
             placement, health, instances, state, stop_timeout_s, recycle_after_s, autoscale, \
             desired, run_as_user, read_only) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'deploying', ?, ?, ?, ?, ?, ?)",
        )
        .bind(d.app.as_str())
        .bind(d.version.as_str())
        .bind(&d.image)
        .bind(memory)
        .bind(i64::from(d.resources.cpus.millis()))
        .bind(d.port.map(i64::from))
        .bind(
            d.command
                .as_ref()
                .map(|c| sql::to_json(c, "command"))
                .transpose()?,
        )
        .bind(sql::to_json(&d.env, "env")?)
        .bind(sql::to_json(&d.placement, "placement")?)
        .bind(sql::to_json(&d.health, "health")?)
        .bind(i64::from(d.instances))
        .bind(d.stop_timeout_s.map(i64::from))
        .bind(
            d.recycle_after_s
                .map(|s| i64::try_from(s).unwrap_or(i64::MAX)),
        )
        .bind(
            d.autoscale
                .as_ref()
                .map(|a| sql::to_json(a, "autoscale"))
                .transpose()?,
        )
        .bind(d.autoscale.map(|_| i64::from(d.instances)))
        .bind(d.user.as_ref().map(ContainerUser::as_str))
        .bind(d.read_only)
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => self.get_deployment(&d.app, &d.version).await,
            Err(e) if sql::classify(&e) == sql::Failure::Reference => {
                Err(Error::NotFound(format!("app {}", d.app)))
            }
            Err(e) => Err(sql::write_error(
                "adding a deployment",
                || format!("app {} already has version {}", d.app, d.version),
                e,
            )),
        }
    }

    /// One deployment by app and version.
    pub async fn get_deployment(&self, app: &AppId, version: &Version) -> Result<DeploymentRow> {
        let row = sqlx::query(&format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments \
             WHERE app_id = ? AND version = ? AND generation = 0"
        ))
        .bind(app.as_str())
        .bind(version.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| sql::db_error("reading a deployment", e))?
        .ok_or_else(|| Error::NotFound(format!("deployment {app}:{version}")))?;
        deployment_from_row(&row)
    }

    /// One deployment by database id.
    pub async fn get_deployment_by_id(&self, id: i64) -> Result<DeploymentRow> {
        let row = sqlx::query(&format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| sql::db_error("reading a deployment", e))?
        .ok_or_else(|| Error::NotFound(format!("deployment #{id}")))?;
        deployment_from_row(&row)
    }

    /// An app's deployments, oldest first.
    pub async fn list_deployments(&self, app: &AppId) -> Result<Vec<DeploymentRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE app_id = ? ORDER BY id"
        ))
        .bind(app.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| sql::db_error("listing deployments", e))?;
        rows.iter().map(deployment_from_row).collect()
    }

    /// Every deployment (for the reconciler), oldest first.
    pub async fn list_all_deployments(&self) -> Result<Vec<DeploymentRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| sql::db_error("listing deployments", e))?;
        rows.iter().map(deployment_from_row).collect()
    }

    /// Every running deployment with `autoscale` (for the autoscaler), oldest first. Those
    /// still deploying or being removed are left to whoever is doing that.
    pub async fn list_autoscaled_deployments(&self) -> Result<Vec<DeploymentRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments \
             WHERE autoscale IS NOT NULL AND state = 'running' ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| sql::db_error("listing autoscaled deployments", e))?;
        rows.iter().map(deployment_from_row).collect()
    }

    /// Records the count the autoscaler wants for an autoscaled deployment (its `instances`
    /// follow once the scale is done). False if the row is gone or has no `autoscale`.
    pub async fn set_deployment_desired(&self, id: i64, desired: u32) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE deployments SET desired = ? WHERE id = ? AND autoscale IS NOT NULL",
        )
        .bind(i64::from(desired))
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(|e| sql::db_error("recording a desired count", e))?;
        Ok(done.rows_affected() > 0)
    }

    /// Sets a deployment's instance count; `with_desired` (a hand scale) sets an autoscaled
    /// one's desired count with it, so the autoscaler starts from it (the autoscaler's own
    /// scales leave the desired count it stored).
    pub async fn set_deployment_instances(
        &self,
        id: i64,
        instances: u32,
        with_desired: bool,
    ) -> Result<()> {
        let done = sqlx::query(
            "UPDATE deployments SET instances = ?, \
             desired = IF(autoscale IS NULL, NULL, IF(?, ?, desired)) WHERE id = ?",
        )
        .bind(i64::from(instances))
        .bind(with_desired)
        .bind(i64::from(instances))
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(|e| sql::db_error("scaling a deployment", e))?;
        sql::found(&done, || format!("deployment #{id}"))
    }

    /// Sets a deployment's state.
    pub async fn set_deployment_state(&self, id: i64, state: DeploymentState) -> Result<()> {
        let done = sqlx::query("UPDATE deployments SET state = ? WHERE id = ?")
            .bind(state.as_str())
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(|e| sql::db_error("changing a deployment's state", e))?;
        sql::found(&done, || format!("deployment #{id}"))
    }

    /// Moves a deployment out of its (app, version) key, so a new deployment of the same
    /// version can be created next to it (a rollback to the version that runs); it keeps its
    /// instances and is undeployed by id afterwards.
    pub async fn supersede_deployment(&self, id: i64) -> Result<()> {
        let done = sqlx::query("UPDATE deployments SET generation = id WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(|e| sql::db_error("superseding a deployment", e))?;
        sql::found(&done, || format!("deployment #{id}"))
    }

    /// Puts a superseded deployment back under its (app, version) key (the roll that was to
    /// replace it failed). [`Error::Conflict`] if another deployment of that version took it.
    pub async fn restore_deployment(&self, id: i64) -> Result<()> {
        let done = sqlx::query("UPDATE deployments SET generation = 0 WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(|e| {
                sql::write_error(
                    "restoring a deployment",
                    || format!("deployment #{id}: its version was deployed again"),
                    e,
                )
            })?;
        sql::found(&done, || format!("deployment #{id}"))
    }

    /// Deletes a deployment. One that still has instances is [`Error::Conflict`]: release them
    /// first (`placement::release`).
    pub async fn delete_deployment(&self, id: i64) -> Result<()> {
        let done = sqlx::query("DELETE FROM deployments WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(|e| {
                sql::write_error(
                    "deleting a deployment",
                    || format!("deployment #{id} still has instances"),
                    e,
                )
            })?;
        sql::found(&done, || format!("deployment #{id}"))
    }
}
