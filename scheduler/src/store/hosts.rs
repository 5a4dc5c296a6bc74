//! The `hosts` table: machines that run instances, with their capacity, free amounts, port
//! range, labels, state and the optimistic-locking `version`.

use super::sql::{self, get, json, parse, text, unsigned};
use super::Store;
use crate::error::{Error, Result};
use caas_types::api;
use caas_types::{Cpus, HostName, HostState, Memory, PortRange};
use sqlx::mysql::MySqlRow;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// A host to add.
#[derive(Debug, Clone, PartialEq)]
pub struct NewHost {
    /// Unique name.
    pub name: HostName,
    /// The IP instance ports are bound to.
    pub address: IpAddr,
    /// Docker endpoint URL.
    pub docker: String,
    /// Memory capacity.
    pub memory: Memory,
    /// CPU capacity.
    pub cpus: Cpus,
    /// Labels for placement constraints.
    pub labels: BTreeMap<String, String>,
    /// Host ports handed to instances.
    pub ports: PortRange,
}

impl NewHost {
    /// Converts the admin API's request, checking the amounts.
    pub fn from_api(req: &api::CreateHost) -> Result<NewHost> {
        Ok(NewHost {
            name: req.name.clone(),
            address: req.address,
            docker: req.docker.clone(),
            memory: Memory::from_mib(req.memory_mb)
                .map_err(|e| Error::Invalid(format!("memory_mb: {e}")))?,
            cpus: Cpus::from_cores(req.cpus).map_err(|e| Error::Invalid(format!("cpus: {e}")))?,
            labels: req.labels.clone(),
            ports: req.ports,
        })
    }
}

/// A host as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct HostRow {
    /// Database id.
    pub id: i64,
    /// Unique name.
    pub name: HostName,
    /// The IP instance ports are bound to.
    pub address: IpAddr,
    /// Docker endpoint URL.
    pub docker: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Memory capacity, bytes.
    pub mem_total: u64,
    /// Unclaimed memory, bytes.
    pub mem_free: u64,
    /// CPU capacity, millicores.
    pub cpu_total: u32,
    /// Unclaimed CPU, millicores.
    pub cpu_free: u32,
    /// Host ports handed to instances.
    pub ports: PortRange,
    /// Scheduling state.
    pub state: HostState,
    /// Optimistic-locking version: bumped by every claim and release.
    pub version: i64,
    /// `down` because the leader's host watch found its engine not answering (not an
    /// operator): the watch brings it back to `ready` once the engine answers again.
    pub auto_down: bool,
}

impl HostRow {
    /// The admin API's view.
    pub fn to_api(&self) -> api::Host {
        api::Host {
            name: self.name.clone(),
            address: self.address,
            docker: self.docker.clone(),
            memory_mb: self.mem_total >> 20,
            memory_free_mb: self.mem_free >> 20,
            cpus: f64::from(self.cpu_total) / 1000.0,
            cpus_free: f64::from(self.cpu_free) / 1000.0,
            labels: self.labels.clone(),
            ports: self.ports,
            state: self.state.into(),
        }
    }
}

/// The stored name of a host state.
pub(crate) fn state_str(state: HostState) -> &'static str {
    match state {
        HostState::Ready => "ready",
        HostState::Draining => "draining",
        HostState::Down => "down",
    }
}

pub(crate) fn parse_state(raw: &str) -> Result<HostState> {
    match raw {
        "ready" => Ok(HostState::Ready),
        "draining" => Ok(HostState::Draining),
        "down" => Ok(HostState::Down),
        other => Err(Error::Invalid(format!("stored host state {other:?}"))),
    }
}

pub(crate) const HOST_COLUMNS: &str = "h.id, h.name, h.address, h.docker, h.labels, h.mem_total, \
     h.mem_free, h.cpu_total, h.cpu_free, h.port_first, h.port_last, h.state, h.version, h.auto_down";

pub(crate) fn host_from_row(row: &MySqlRow) -> Result<HostRow> {
    let first: u16 = unsigned(row, "port_first")?;
    let last: u16 = unsigned(row, "port_last")?;
    let state = text(row, "state")?;
    Ok(HostRow {
        id: get(row, "id")?,
        name: parse(row, "name")?,
        address: parse(row, "address")?,
        docker: text(row, "docker")?,
        labels: json(row, "labels")?,
        mem_total: unsigned(row, "mem_total")?,
        mem_free: unsigned(row, "mem_free")?,
        cpu_total: unsigned(row, "cpu_total")?,
        cpu_free: unsigned(row, "cpu_free")?,
        ports: PortRange::new(first, last)
            .map_err(|_| Error::Invalid(format!("stored port range {first}-{last}")))?,
        state: parse_state(&state)?,
        version: get(row, "version")?,
        auto_down: get(row, "auto_down")?,
    })
}

impl Store {
    /// Adds a host with all its capacity free. A taken name is [`Error::Conflict`].
    pub async fn create_host(&self, host: &NewHost) -> Result<HostRow> {
        let labels = sql::to_json(&host.labels, "labels")?;
        let mem =
            i64::try_from(host.memory.bytes()).map_err(|_| Error::Invalid("memory".into()))?;
        let cpu = i64::from(host.cpus.millis());
        let result = sqlx::query(
            "INSERT INTO hosts (name, address, docker, labels, mem_total, mem_free, cpu_total, \
             cpu_free, port_first, port_last, state, version) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'ready', 0)",
        )
        .bind(host.name.as_str())
        .bind(host.address.to_string())
        .bind(&host.docker)
        .bind(labels)
        .bind(mem)
        .bind(mem)
        .bind(cpu)
        .bind(cpu)
        .bind(i64::from(host.ports.first()))
        .bind(i64::from(host.ports.last()))
        .execute(&self.pool)
        .await
        .map_err(|e| {
            sql::write_error(
                "adding a host",
                || format!("host {} already exists", host.name),
                e,
            )
        })?;
        let id =
            i64::try_from(result.last_insert_id()).map_err(|_| Error::Invalid("host id".into()))?;
        self.get_host_by_id(id).await
    }

    /// Every host, by name.
    pub async fn list_hosts(&self) -> Result<Vec<HostRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {HOST_COLUMNS} FROM hosts h ORDER BY h.name"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| sql::db_error("listing hosts", e))?;
        rows.iter().map(host_from_row).collect()
    }

    /// One host by name.
    pub async fn get_host(&self, name: &HostName) -> Result<HostRow> {
        let row = sqlx::query(&format!(
            "SELECT {HOST_COLUMNS} FROM hosts h WHERE h.name = ?"
        ))
        .bind(name.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| sql::db_error("reading a host", e))?
        .ok_or_else(|| Error::NotFound(format!("host {name}")))?;
        host_from_row(&row)
    }

    /// One host by database id.
    pub async fn get_host_by_id(&self, id: i64) -> Result<HostRow> {
        let row = sqlx::query(&format!(
            "SELECT {HOST_COLUMNS} FROM hosts h WHERE h.id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| sql::db_error("reading a host", e))?
        .ok_or_else(|| Error::NotFound(format!("host #{id}")))?;
        host_from_row(&row)
    }

    /// Sets a host's scheduling state (drain, down, ready): an operator's. Bumps `version` so a
    /// claim planned on the old state fails its optimistic check, and clears `auto_down`, so
    /// the host watch never changes a state an operator set.
    pub async fn set_host_state(&self, name: &HostName, state: HostState) -> Result<HostRow> {
        let done = sqlx::query(
            "UPDATE hosts SET state = ?, auto_down = FALSE, version = version + 1 WHERE name = ?",
        )
        .bind(state_str(state))
        .bind(name.as_str())
        .execute(&self.pool)
        .await
        .map_err(|e| sql::db_error("changing a host's state", e))?;
        sql::found(&done, || format!("host {name}"))?;
        self.get_host(name).await
    }

    /// Marks a `ready` host `down` because its engine stopped answering (the leader's host
    /// watch), remembering that the watch did (`auto_down`). Bumps `version` like any state
    /// change. False when the host is not `ready` any more (an operator changed it meanwhile,
    /// or it is gone): nothing changed.
    pub async fn mark_host_down_auto(&self, id: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE hosts SET state = 'down', auto_down = TRUE, version = version + 1 \
             WHERE id = ? AND state = 'ready'",
        )
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(|e| sql::db_error("marking a host down", e))?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks a host the watch marked `down` `ready` again (its engine answers). False when it is
    /// not down by the watch any more (an operator set its state meanwhile, or it is gone):
    /// nothing changed.
    pub async fn mark_host_ready_auto(&self, id: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE hosts SET state = 'ready', auto_down = FALSE, version = version + 1 \
             WHERE id = ? AND state = 'down' AND auto_down",
        )
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(|e| sql::db_error("marking a host ready", e))?;
        Ok(done.rows_affected() == 1)
    }

    /// Replaces a host's labels (bumps `version`, like a state change).
    pub async fn set_host_labels(
        &self,
        name: &HostName,
        labels: &BTreeMap<String, String>,
    ) -> Result<HostRow> {
        let done = sqlx::query("UPDATE hosts SET labels = ?, version = version + 1 WHERE name = ?")
            .bind(sql::to_json(labels, "labels")?)
            .bind(name.as_str())
            .execute(&self.pool)
            .await
            .map_err(|e| sql::db_error("changing a host's labels", e))?;
        sql::found(&done, || format!("host {name}"))?;
        self.get_host(name).await
    }

    /// Deletes a host. A host that still holds instances is [`Error::Conflict`].
    pub async fn delete_host(&self, name: &HostName) -> Result<()> {
        let done = sqlx::query("DELETE FROM hosts WHERE name = ?")
            .bind(name.as_str())
            .execute(&self.pool)
            .await
            .map_err(|e| {
                sql::write_error(
                    "deleting a host",
                    || format!("host {name} still has instances"),
                    e,
                )
            })?;
        sql::found(&done, || format!("host {name}"))
    }
}
