//! The `workflows` table: pipelines of job steps (`jobs` rows with `workflow_id`), with their
//! state, the last bytes of the last step's stdout, and the runner that pipes them.

use super::run_rows::RunTable;
use super::sql::{self, get, opt_text, text};
use super::Store;
use crate::error::{Error, Result};
use caas_types::api::JobState;
use caas_types::{TenantName, Timestamp};
use sqlx::mysql::MySqlRow;

/// A workflow as stored (its steps are [`super::JobRow`]s).
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowRow {
    /// Database id (the API shows `w-{id}`).
    pub id: i64,
    /// The tenant that made it (`None`: the operator).
    pub tenant: Option<TenantName>,
    /// Its name.
    pub name: String,
    /// Where it is.
    pub state: JobState,
    /// Why it failed, when no step's exit code says.
    pub reason: Option<String>,
    /// Whether its first step reads a streamed stdin.
    pub stdin: bool,
    /// Longest run, seconds.
    pub timeout_s: i64,
    /// The process that runs it.
    pub runner: Option<String>,
    /// Whether a cancel was asked for.
    pub cancel_requested: bool,
    /// When it was accepted.
    pub created_at: Timestamp,
    /// When its steps started.
    pub started_at: Option<Timestamp>,
    /// When it ended.
    pub finished_at: Option<Timestamp>,
}

const WORKFLOW_SELECT: &str = "SELECT id, tenant, name, state, reason, stdin, timeout_s, runner, \
     cancel_requested, CAST(UNIX_TIMESTAMP(created_at) * 1000 AS SIGNED) AS created_ms, \
     CAST(UNIX_TIMESTAMP(started_at) * 1000 AS SIGNED) AS started_ms, \
     CAST(UNIX_TIMESTAMP(finished_at) * 1000 AS SIGNED) AS finished_ms FROM workflows";

fn ts(ms: Option<i64>) -> Option<Timestamp> {
    ms.map(|ms| Timestamp::from_nanos(ms.saturating_mul(1_000_000)))
}

fn workflow_from_row(row: &MySqlRow) -> Result<WorkflowRow> {
    let state = text(row, "state")?;
    let tenant: Option<String> = opt_text(row, "tenant")?;
    Ok(WorkflowRow {
        id: get(row, "id")?,
        tenant: tenant
            .map(|t| t.parse())
            .transpose()
            .map_err(|_| Error::Invalid("stored tenant".into()))?,
        name: text(row, "name")?,
        state: state
            .parse()
            .map_err(|_| Error::Invalid(format!("stored workflow state {state:?}")))?,
        reason: opt_text(row, "reason")?,
        stdin: get(row, "stdin")?,
        timeout_s: get(row, "timeout_s")?,
        runner: opt_text(row, "runner")?,
        cancel_requested: get(row, "cancel_requested")?,
        created_at: ts(get(row, "created_ms")?).unwrap_or(Timestamp::from_nanos(0)),
        started_at: ts(get(row, "started_ms")?),
        finished_at: ts(get(row, "finished_ms")?),
    })
}

impl Store {
    /// Records a new workflow (`pending`, heartbeat now, run by `runner`); its steps are added
    /// as jobs.
    pub async fn insert_workflow(
        &self,
        tenant: Option<&TenantName>,
        name: &str,
        stdin: bool,
        timeout_s: i64,
        runner: &str,
    ) -> Result<i64> {
        let done = sqlx::query(
            "INSERT INTO workflows (tenant, name, stdin, timeout_s, runner, heartbeat_at) \
             VALUES (?, ?, ?, ?, ?, NOW(3))",
        )
        .bind(tenant.map(TenantName::as_str))
        .bind(name)
        .bind(stdin)
        .bind(timeout_s)
        .bind(runner)
        .execute(self.pool())
        .await
        .map_err(|e| sql::write_error("recording a workflow", || "its tenant is gone".into(), e))?;
        i64::try_from(done.last_insert_id())
            .map_err(|_| Error::Database("workflow id out of range".into()))
    }

    /// One workflow.
    pub async fn get_workflow(&self, id: i64) -> Result<WorkflowRow> {
        let row = sqlx::query(&format!("{WORKFLOW_SELECT} WHERE id = ?"))
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(|e| sql::db_error("reading a workflow", e))?
            .ok_or_else(|| Error::NotFound(format!("workflow w-{id}")))?;
        workflow_from_row(&row)
    }

    /// Workflows newest first, of `tenant` only when given (`Some(None)`: the operator's own;
    /// `None`: everyone's).
    pub async fn list_workflows(
        &self,
        tenant: Option<Option<&TenantName>>,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<WorkflowRow>> {
        let (filter, bind) = match tenant {
            None => ("", None),
            Some(None) => ("tenant IS NULL AND", None),
            Some(Some(t)) => ("tenant = ? AND", Some(t.as_str())),
        };
        let q = format!("{WORKFLOW_SELECT} WHERE {filter} id < ? ORDER BY id DESC LIMIT ?");
        let mut query = sqlx::query(&q);
        if let Some(t) = bind {
            query = query.bind(t);
        }
        let rows = query
            .bind(before.unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await
            .map_err(|e| sql::db_error("listing workflows", e))?;
        rows.iter().map(workflow_from_row).collect()
    }

    /// Marks a workflow `running` (all its steps started), if `runner` still runs it.
    pub async fn set_workflow_started(&self, id: i64, runner: &str) -> Result<()> {
        sqlx::query(
            "UPDATE workflows SET state = 'running', started_at = NOW(3), heartbeat_at = NOW(3) \
             WHERE id = ? AND runner = ? AND state = 'pending'",
        )
        .bind(id)
        .bind(runner)
        .execute(self.pool())
        .await
        .map_err(|e| sql::db_error("marking a workflow running", e))?;
        Ok(())
    }

    /// Deletes a workflow (and its steps): a running one, or one whose steps still hold
    /// claims, is [`Error::Conflict`].
    pub async fn delete_workflow(&self, id: i64) -> Result<()> {
        let holding: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE workflow_id = ? AND instance_id IS NOT NULL",
        )
        .bind(id)
        .fetch_one(self.pool())
        .await
        .map_err(|e| sql::db_error("counting a workflow's claims", e))?;
        if holding > 0 {
            return Err(Error::Conflict(format!(
                "workflow w-{id} still has steps holding resources"
            )));
        }
        let done = sqlx::query(
            "DELETE FROM workflows WHERE id = ? AND state NOT IN ('pending', 'running')",
        )
        .bind(id)
        .execute(self.pool())
        .await
        .map_err(|e| sql::db_error("deleting a workflow", e))?;
        if done.rows_affected() == 0 {
            self.get_workflow(id).await?;
            return Err(Error::Conflict(format!(
                "workflow w-{id} has not ended yet"
            )));
        }
        Ok(())
    }

    /// Deletes a workflow that did not start (its steps first), whatever its state.
    pub async fn delete_failed_workflow(&self, id: i64) -> Result<()> {
        sqlx::query("DELETE FROM workflows WHERE id = ?")
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(|e| sql::db_error("deleting a workflow that did not start", e))?;
        Ok(())
    }

    /// Workflows not final whose runner's heartbeat is older than `stale_s`.
    pub async fn stale_workflows(&self, stale_s: u64) -> Result<Vec<WorkflowRow>> {
        let rows = sqlx::query(&format!(
            "{WORKFLOW_SELECT} WHERE state IN ('pending', 'running') \
             AND (heartbeat_at IS NULL OR heartbeat_at < NOW(3) - INTERVAL ? SECOND)"
        ))
        .bind(i64::try_from(stale_s).unwrap_or(i64::MAX))
        .fetch_all(self.pool())
        .await
        .map_err(|e| sql::db_error("listing stale workflows", e))?;
        rows.iter().map(workflow_from_row).collect()
    }

    /// Takes a workflow (and its steps) over from the runner `from`: true when this call won.
    pub async fn take_over_workflow(&self, id: i64, from: Option<&str>, to: &str) -> Result<bool> {
        if !self.take_over(RunTable::Workflows, id, from, to).await? {
            return Ok(false);
        }
        sqlx::query("UPDATE jobs SET runner = ? WHERE workflow_id = ?")
            .bind(to)
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(|e| sql::db_error("taking a workflow's steps over", e))?;
        Ok(true)
    }

    /// Deletes workflows (with their steps) that ended more than `keep_s` ago and whose steps
    /// hold no claim; returns how many went.
    pub async fn purge_workflows(&self, keep_s: u64) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM workflows WHERE finished_at < NOW(3) - INTERVAL ? SECOND \
             AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.workflow_id = workflows.id \
                             AND j.instance_id IS NOT NULL)",
        )
        .bind(i64::try_from(keep_s).unwrap_or(i64::MAX))
        .execute(self.pool())
        .await
        .map_err(|e| sql::db_error("deleting old workflows", e))?;
        Ok(done.rows_affected())
    }
}
