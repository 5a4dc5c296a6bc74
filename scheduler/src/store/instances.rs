//! The `instances` table: one row per claim (deployment, host, host port unless it is a
//! worker's, the resources it holds), with the container id and life-cycle state the deploy code moves along. Rows are
//! created and deleted only by `placement` (claim and release), inside the host's optimistic
//! update, so they always add up with the host's free amounts.

use super::sql::{self, get, opt_text, opt_unsigned, parse, text, unsigned};
use super::Store;
use crate::error::{Error, Result};
use caas_types::api;
use caas_types::{AppId, ContainerId, Endpoint, HostName, InstanceId, InstanceState, Version};
use sqlx::mysql::MySqlRow;
use std::net::IpAddr;

/// An instance as stored, joined with its deployment's version and its host's name and address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRow {
    /// Instance id (also the container name's suffix).
    pub id: InstanceId,
    /// Its deployment's database id.
    pub deployment_id: i64,
    /// App id.
    pub app: AppId,
    /// Deployment version.
    pub version: Version,
    /// Its host's database id.
    pub host_id: i64,
    /// Its host's name.
    pub host: HostName,
    /// Its host's address.
    pub host_address: IpAddr,
    /// The host port it owns; `None` for a worker's instance, which publishes nothing.
    pub host_port: Option<u16>,
    /// Memory it holds on the host, bytes.
    pub memory: u64,
    /// CPU it holds on the host, millicores.
    pub cpu: u32,
    /// Docker container id, once created.
    pub container_id: Option<ContainerId>,
    /// Life-cycle state.
    pub state: InstanceState,
    /// Whether its last health checks passed.
    pub healthy: bool,
    /// Last change, milliseconds since the Unix epoch (the reconciler ages transitional states).
    pub updated_ms: i64,
    /// When it last became `running`, milliseconds since the Unix epoch (its creation for an
    /// instance that never ran, or one recorded before this was kept): what recycling ages.
    pub started_ms: i64,
    /// Its deployment's stop grace period, seconds (`None`: the scheduler's default).
    pub stop_timeout_s: Option<u32>,
}

impl InstanceRow {
    /// Whether it is a worker's instance: no port, no route, no health path; its container's
    /// state is its health.
    pub fn is_worker(&self) -> bool {
        self.host_port.is_none()
    }

    /// `{hostAddress}:{hostPort}`, what gateways connect to; `None` for a worker.
    pub fn address(&self) -> Result<Option<Endpoint>> {
        self.host_port
            .map(|port| {
                Endpoint::new(self.host_address, port)
                    .map_err(|_| Error::Invalid(format!("address of instance {}", self.id)))
            })
            .transpose()
    }

    /// `{hostAddress}:{hostPort}`, for what only instances with a port have (routes, health
    /// checks); a worker's instance is [`Error::Invalid`].
    pub fn endpoint(&self) -> Result<Endpoint> {
        self.address()?.ok_or_else(|| {
            Error::Invalid(format!(
                "instance {} is a worker's: it has no address",
                self.id
            ))
        })
    }

    /// The admin API's view.
    pub fn to_api(&self) -> Result<api::Instance> {
        Ok(api::Instance {
            id: self.id.clone(),
            app: self.app.clone(),
            version: self.version.clone(),
            host: self.host.clone(),
            address: self.address()?,
            container_id: self.container_id.clone(),
            state: self.state.into(),
            healthy: self.healthy,
        })
    }
}

/// The stored name of an instance state.
pub(crate) fn state_str(state: InstanceState) -> &'static str {
    match state {
        InstanceState::Pending => "pending",
        InstanceState::Starting => "starting",
        InstanceState::Running => "running",
        InstanceState::Unhealthy => "unhealthy",
        InstanceState::Stopping => "stopping",
    }
}

fn parse_state(raw: &str) -> Result<InstanceState> {
    Ok(match raw {
        "pending" => InstanceState::Pending,
        "starting" => InstanceState::Starting,
        "running" => InstanceState::Running,
        "unhealthy" => InstanceState::Unhealthy,
        "stopping" => InstanceState::Stopping,
        other => return Err(Error::Invalid(format!("stored instance state {other:?}"))),
    })
}

const INSTANCE_SELECT: &str = "SELECT i.id, i.deployment_id, i.app_id, d.version, i.host_id, \
     h.name AS host_name, h.address AS host_address, i.host_port, i.memory, i.cpu, \
     i.container_id, i.state, i.healthy, \
     CAST(UNIX_TIMESTAMP(i.updated_at) * 1000 AS SIGNED) AS updated_ms, \
     CAST(UNIX_TIMESTAMP(COALESCE(i.started_at, i.created_at)) * 1000 AS SIGNED) AS started_ms, \
     d.stop_timeout_s \
     FROM instances i JOIN deployments d ON d.id = i.deployment_id JOIN hosts h ON h.id = i.host_id";

pub(crate) fn instance_from_row(row: &MySqlRow) -> Result<InstanceRow> {
    let container = opt_text(row, "container_id")?;
    let state = text(row, "state")?;
    Ok(InstanceRow {
        id: parse(row, "id")?,
        deployment_id: get(row, "deployment_id")?,
        app: parse(row, "app_id")?,
        version: parse(row, "version")?,
        host_id: get(row, "host_id")?,
        host: parse(row, "host_name")?,
        host_address: parse(row, "host_address")?,
        host_port: opt_unsigned(row, "host_port")?,
        memory: unsigned(row, "memory")?,
        cpu: unsigned(row, "cpu")?,
        container_id: container
            .map(|c| {
                c.parse()
                    .map_err(|_| Error::Invalid(format!("stored container id {c:?}")))
            })
            .transpose()?,
        state: parse_state(&state)?,
        healthy: get(row, "healthy")?,
        updated_ms: get(row, "updated_ms")?,
        started_ms: get(row, "started_ms")?,
        stop_timeout_s: opt_unsigned(row, "stop_timeout_s")?,
    })
}

impl Store {
    async fn instances_where(
        &self,
        filter: &str,
        bind: Option<&str>,
        bind_id: Option<i64>,
    ) -> Result<Vec<InstanceRow>> {
        let text = format!("{INSTANCE_SELECT} {filter} ORDER BY i.created_at, i.id");
        let mut query = sqlx::query(&text);
        if let Some(b) = bind {
            query = query.bind(b);
        }
        if let Some(b) = bind_id {
            query = query.bind(b);
        }
        let rows = query
            .fetch_all(&self.pool)
            .await
            .map_err(|e| sql::db_error("listing instances", e))?;
        rows.iter().map(instance_from_row).collect()
    }

    /// One instance.
    pub async fn get_instance(&self, id: &InstanceId) -> Result<InstanceRow> {
        self.instances_where("WHERE i.id = ?", Some(id.as_str()), None)
            .await?
            .pop()
            .ok_or_else(|| Error::NotFound(format!("instance {id}")))
    }

    /// A deployment's instances, oldest first.
    pub async fn list_instances_by_deployment(&self, deployment: i64) -> Result<Vec<InstanceRow>> {
        self.instances_where("WHERE i.deployment_id = ?", None, Some(deployment))
            .await
    }

    /// An app's instances (all versions), oldest first.
    pub async fn list_instances_by_app(&self, app: &AppId) -> Result<Vec<InstanceRow>> {
        self.instances_where("WHERE i.app_id = ?", Some(app.as_str()), None)
            .await
    }

    /// The instances on one host, oldest first.
    pub async fn list_instances_by_host(&self, host: &HostName) -> Result<Vec<InstanceRow>> {
        self.instances_where("WHERE h.name = ?", Some(host.as_str()), None)
            .await
    }

    /// Every instance (for the reconciler), oldest first.
    pub async fn list_all_instances(&self) -> Result<Vec<InstanceRow>> {
        self.instances_where("", None, None).await
    }

    /// Moves an instance to `state`; becoming `running` from another state records its start
    /// time.
    pub async fn set_instance_state(&self, id: &InstanceId, state: InstanceState) -> Result<()> {
        // MariaDB assigns left to right: `started_at` sees the state before this change.
        let done = sqlx::query(
            "UPDATE instances SET started_at = IF(? = 'running' AND state <> 'running', \
             CURRENT_TIMESTAMP(3), started_at), state = ? WHERE id = ?",
        )
        .bind(state_str(state))
        .bind(state_str(state))
        .bind(id.as_str())
        .execute(&self.pool)
        .await
        .map_err(|e| sql::db_error("changing an instance's state", e))?;
        sql::found(&done, || format!("instance {id}"))
    }

    /// Moves an instance to `to` only if it is in one of `from` (compare-and-set): a health
    /// verdict read before a teardown began never turns `stopping` back into `running`.
    /// `Ok(false)`: the row is gone or in another state, and nothing changed.
    pub async fn set_instance_state_if(
        &self,
        id: &InstanceId,
        from: &[InstanceState],
        to: InstanceState,
    ) -> Result<bool> {
        if from.is_empty() {
            return Ok(false);
        }
        let marks = vec!["?"; from.len()].join(", ");
        let sql = format!(
            "UPDATE instances SET started_at = IF(? = 'running' AND state <> 'running', \
             CURRENT_TIMESTAMP(3), started_at), state = ? WHERE id = ? AND state IN ({marks})"
        );
        let mut q = sqlx::query(&sql)
            .bind(state_str(to))
            .bind(state_str(to))
            .bind(id.as_str());
        for f in from {
            q = q.bind(state_str(*f));
        }
        let done = q
            .execute(&self.pool)
            .await
            .map_err(|e| sql::db_error("changing an instance's state", e))?;
        Ok(done.rows_affected() == 1)
    }

    /// Records (or clears) an instance's container id.
    pub async fn set_instance_container(
        &self,
        id: &InstanceId,
        container: Option<&ContainerId>,
    ) -> Result<()> {
        let done = sqlx::query("UPDATE instances SET container_id = ? WHERE id = ?")
            .bind(container.map(ContainerId::as_str))
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(|e| sql::db_error("recording a container id", e))?;
        sql::found(&done, || format!("instance {id}"))
    }

    /// Records whether an instance's last health checks passed.
    pub async fn set_instance_healthy(&self, id: &InstanceId, healthy: bool) -> Result<()> {
        let done = sqlx::query("UPDATE instances SET healthy = ? WHERE id = ?")
            .bind(healthy)
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(|e| sql::db_error("recording an instance's health", e))?;
        sql::found(&done, || format!("instance {id}"))
    }
}
