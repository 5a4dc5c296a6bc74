//! The `jobs` table: containers that run to completion, one row each (a one-off job, a schedule's
//! run, or a workflow's step), with their state, exit code, the last bytes of their output, and
//! the scheduler process (`runner`) that holds their streams and keeps `heartbeat_at` fresh.
//!
//! Writes that only the runner may make (`started`, heartbeats, the end) carry the runner's id in
//! their `WHERE`: a runner the leader took a job over from (its heartbeat had stopped) cannot
//! overwrite what the new runner writes.

use super::sql::{self, get, json, opt_text, parse, text, to_json};
use super::Store;
use crate::error::{Error, Result};
use caas_types::api::JobState;
use caas_types::{AppId, ContainerId, HostName, InstanceId, Timestamp, Version};
use sqlx::mysql::MySqlRow;

/// A job as stored (without its output; see [`Store::job_output`]).
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    /// Database id (the API shows `j-{id}`).
    pub id: i64,
    /// Its app.
    pub app: AppId,
    /// The version it runs.
    pub version: Version,
    /// The image reference it runs (pinned by digest).
    pub image: String,
    /// Its command.
    pub command: Vec<String>,
    /// Memory claimed, bytes.
    pub memory: u64,
    /// CPU claimed, millicores.
    pub cpu: u32,
    /// Longest run, seconds.
    pub timeout_s: i64,
    /// Whether it reads a streamed stdin.
    pub stdin: bool,
    /// Where it is.
    pub state: JobState,
    /// Its exit code, once it exited.
    pub exit_code: Option<i64>,
    /// Why it failed when the exit code does not say.
    pub reason: Option<String>,
    /// Its host, once placed.
    pub host_id: Option<i64>,
    /// Its host's name, once placed.
    pub host: Option<HostName>,
    /// Its claim (an `instances` row), while it holds one.
    pub instance_id: Option<InstanceId>,
    /// Its container, once created.
    pub container_id: Option<ContainerId>,
    /// The workflow it is a step of.
    pub workflow_id: Option<i64>,
    /// Its position in that workflow, from 0.
    pub step_index: Option<u32>,
    /// Its step name in that workflow.
    pub step_name: Option<String>,
    /// The schedule that started it, by name.
    pub schedule: Option<String>,
    /// Bytes of output written in all (the stored output is the last of them).
    pub output_written: u64,
    /// The scheduler process that runs it.
    pub runner: Option<String>,
    /// Whether a cancel was asked for.
    pub cancel_requested: bool,
    /// When it was accepted.
    pub created_at: Timestamp,
    /// When its container started.
    pub started_at: Option<Timestamp>,
    /// When it ended.
    pub finished_at: Option<Timestamp>,
    /// How many seconds ago its runner last refreshed it.
    pub heartbeat_age_s: Option<f64>,
}

/// A job to record (`pending`, runner set, no claim yet).
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// Its app.
    pub app: AppId,
    /// The version it runs.
    pub version: Version,
    /// The image reference (pinned by digest).
    pub image: String,
    /// Its command.
    pub command: Vec<String>,
    /// Memory, bytes.
    pub memory: u64,
    /// CPU, millicores.
    pub cpu: u32,
    /// Longest run, seconds.
    pub timeout_s: i64,
    /// Whether it reads a streamed stdin.
    pub stdin: bool,
    /// The workflow and position, for a step.
    pub step: Option<(i64, u32, String)>,
    /// The schedule that starts it.
    pub schedule_id: Option<i64>,
    /// The scheduler process that runs it.
    pub runner: String,
}

/// How a job ended, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct JobEnd {
    /// A final state.
    pub state: JobState,
    /// The exit code, when the engine said.
    pub exit_code: Option<i64>,
    /// Why, when the exit code does not say.
    pub reason: Option<String>,
}

/// The output a job kept, and how much it wrote in all.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredOutput {
    /// The last bytes written.
    pub bytes: Vec<u8>,
    /// Bytes written in all (`bytes` are the last of them).
    pub written: u64,
    /// Whether the job ended (nothing more will come).
    pub done: bool,
}

/// Timestamps as milliseconds since the Unix epoch.
fn ms(column: &str) -> String {
    format!("CAST(UNIX_TIMESTAMP(j.{column}) * 1000 AS SIGNED) AS {column}_ms")
}

fn job_select() -> String {
    format!(
        "SELECT j.id, j.app_id, j.version, j.image, j.command, j.memory, j.cpu, j.timeout_s, \
         j.stdin, j.state, j.exit_code, j.reason, j.host_id, h.name AS host_name, j.instance_id, \
         j.container_id, j.workflow_id, j.step_index, j.step_name, s.name AS schedule_name, \
         j.output_written, j.runner, j.cancel_requested, {}, {}, {}, \
         CAST(TIMESTAMPDIFF(MICROSECOND, j.heartbeat_at, NOW(3)) AS DOUBLE) / 1e6 AS heartbeat_age_s \
         FROM jobs j LEFT JOIN hosts h ON h.id = j.host_id \
         LEFT JOIN schedules s ON s.id = j.schedule_id",
        ms("created_at"),
        ms("started_at"),
        ms("finished_at")
    )
}

fn opt_ts(row: &MySqlRow, column: &str) -> Result<Option<Timestamp>> {
    let raw: Option<i64> = get(row, column)?;
    Ok(raw.map(|ms| Timestamp::from_nanos(ms.saturating_mul(1_000_000))))
}

fn job_from_row(row: &MySqlRow) -> Result<JobRow> {
    let state: String = text(row, "state")?;
    let host: Option<String> = opt_text(row, "host_name")?;
    let instance: Option<String> = opt_text(row, "instance_id")?;
    let container: Option<String> = opt_text(row, "container_id")?;
    Ok(JobRow {
        id: get(row, "id")?,
        app: parse(row, "app_id")?,
        version: parse(row, "version")?,
        image: text(row, "image")?,
        command: json(row, "command")?,
        memory: sql::unsigned(row, "memory")?,
        cpu: sql::unsigned(row, "cpu")?,
        timeout_s: get(row, "timeout_s")?,
        stdin: get(row, "stdin")?,
        state: state
            .parse()
            .map_err(|_| Error::Invalid(format!("stored job state {state:?}")))?,
        exit_code: get(row, "exit_code")?,
        reason: opt_text(row, "reason")?,
        host_id: get(row, "host_id")?,
        host: host
            .map(|h| h.parse())
            .transpose()
            .map_err(|_| Error::Invalid("stored host name".into()))?,
        instance_id: instance
            .map(|i| i.parse())
            .transpose()
            .map_err(|_| Error::Invalid("stored instance id".into()))?,
        container_id: container
            .map(|c| c.parse())
            .transpose()
            .map_err(|_| Error::Invalid("stored container id".into()))?,
        workflow_id: get(row, "workflow_id")?,
        step_index: sql::opt_unsigned(row, "step_index")?,
        step_name: opt_text(row, "step_name")?,
        schedule: opt_text(row, "schedule_name")?,
        output_written: sql::unsigned(row, "output_written")?,
        runner: opt_text(row, "runner")?,
        cancel_requested: get(row, "cancel_requested")?,
        created_at: opt_ts(row, "created_at_ms")?.unwrap_or(Timestamp::from_nanos(0)),
        started_at: opt_ts(row, "started_at_ms")?,
        finished_at: opt_ts(row, "finished_at_ms")?,
        heartbeat_age_s: get(row, "heartbeat_age_s")?,
    })
}

impl Store {
    /// Records a new job (`pending`, heartbeat now) and returns its id.
    pub async fn insert_job(&self, job: &NewJob) -> Result<i64> {
        let (workflow, index, name) = match &job.step {
            Some((w, i, n)) => (Some(*w), Some(i64::from(*i)), Some(n.as_str())),
            None => (None, None, None),
        };
        let done = sqlx::query(
            "INSERT INTO jobs (app_id, version, image, command, memory, cpu, timeout_s, stdin, \
             workflow_id, step_index, step_name, schedule_id, runner, heartbeat_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NOW(3))",
        )
        .bind(job.app.as_str())
        .bind(job.version.as_str())
        .bind(&job.image)
        .bind(to_json(&job.command, "job command")?)
        .bind(i64::try_from(job.memory).unwrap_or(i64::MAX))
        .bind(i64::from(job.cpu))
        .bind(job.timeout_s)
        .bind(job.stdin)
        .bind(workflow)
        .bind(index)
        .bind(name)
        .bind(job.schedule_id)
        .bind(&job.runner)
        .execute(self.pool())
        .await
        .map_err(|e| {
            sql::write_error(
                "recording a job",
                || format!("app {} is being deleted", job.app),
                e,
            )
        })?;
        i64::try_from(done.last_insert_id())
            .map_err(|_| Error::Database("job id out of range".into()))
    }

    /// One job.
    pub async fn get_job(&self, id: i64) -> Result<JobRow> {
        let row = sqlx::query(&format!("{} WHERE j.id = ?", job_select()))
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(|e| sql::db_error("reading a job", e))?
            .ok_or_else(|| Error::NotFound(format!("job j-{id}")))?;
        job_from_row(&row)
    }

    /// An app's one-off jobs and schedule runs (not workflow steps), newest first: at most
    /// `limit`, with ids below `before` when given.
    pub async fn list_jobs(
        &self,
        app: &AppId,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<JobRow>> {
        let rows = sqlx::query(&format!(
            "{} WHERE j.app_id = ? AND j.workflow_id IS NULL AND j.id < ? \
             ORDER BY j.id DESC LIMIT ?",
            job_select()
        ))
        .bind(app.as_str())
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(|e| sql::db_error("listing jobs", e))?;
        rows.iter().map(job_from_row).collect()
    }

    /// A schedule's latest runs, newest first.
    pub async fn list_schedule_runs(&self, schedule_id: i64, limit: u32) -> Result<Vec<JobRow>> {
        let rows = sqlx::query(&format!(
            "{} WHERE j.schedule_id = ? ORDER BY j.id DESC LIMIT ?",
            job_select()
        ))
        .bind(schedule_id)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(|e| sql::db_error("listing a schedule's runs", e))?;
        rows.iter().map(job_from_row).collect()
    }

    /// A workflow's steps, first to last.
    pub async fn list_steps(&self, workflow_id: i64) -> Result<Vec<JobRow>> {
        let rows = sqlx::query(&format!(
            "{} WHERE j.workflow_id = ? ORDER BY j.step_index",
            job_select()
        ))
        .bind(workflow_id)
        .fetch_all(self.pool())
        .await
        .map_err(|e| sql::db_error("listing a workflow's steps", e))?;
        rows.iter().map(job_from_row).collect()
    }

    /// Notes the claim a job holds (after placement).
    pub async fn set_job_claim(&self, id: i64, host_id: i64, instance: &InstanceId) -> Result<()> {
        let done = sqlx::query("UPDATE jobs SET host_id = ?, instance_id = ? WHERE id = ?")
            .bind(host_id)
            .bind(instance.as_str())
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(|e| sql::db_error("recording a job's claim", e))?;
        sql::found(&done, || format!("job j-{id}"))
    }

    /// Forgets a job's claim once it was released.
    pub async fn clear_job_claim(&self, id: i64) -> Result<()> {
        sqlx::query("UPDATE jobs SET instance_id = NULL WHERE id = ?")
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(|e| sql::db_error("forgetting a job's claim", e))?;
        Ok(())
    }

    /// Marks a job `running` in `container`, if `runner` still runs it.
    pub async fn set_job_started(
        &self,
        id: i64,
        runner: &str,
        container: &ContainerId,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE jobs SET state = 'running', container_id = ?, \
             started_at = COALESCE(started_at, NOW(3)), heartbeat_at = NOW(3) \
             WHERE id = ? AND runner = ? AND state IN ('pending', 'running')",
        )
        .bind(container.as_str())
        .bind(id)
        .bind(runner)
        .execute(self.pool())
        .await
        .map_err(|e| sql::db_error("marking a job running", e))?;
        Ok(())
    }

    /// Deletes a finished job that holds no claim. A running one is [`Error::Conflict`].
    pub async fn delete_job(&self, id: i64) -> Result<()> {
        let done = sqlx::query(
            "DELETE FROM jobs WHERE id = ? AND state NOT IN ('pending', 'running') \
             AND instance_id IS NULL",
        )
        .bind(id)
        .execute(self.pool())
        .await
        .map_err(|e| {
            sql::write_error("deleting a job", || format!("job j-{id} holds a claim"), e)
        })?;
        if done.rows_affected() == 0 {
            self.get_job(id).await?;
            return Err(Error::Conflict(format!("job j-{id} has not ended yet")));
        }
        Ok(())
    }

    /// Deletes a job whose start failed: no claim, nothing to keep (the caller got the error).
    pub async fn delete_failed_start(&self, id: i64) -> Result<()> {
        sqlx::query("DELETE FROM jobs WHERE id = ? AND instance_id IS NULL")
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(|e| sql::db_error("deleting a job that did not start", e))?;
        Ok(())
    }

    /// One-off jobs and schedule runs not final whose runner's heartbeat is older than
    /// `stale_s` (workflow steps are their workflow's business).
    pub async fn stale_jobs(&self, stale_s: u64) -> Result<Vec<JobRow>> {
        let rows = sqlx::query(&format!(
            "{} WHERE j.state IN ('pending', 'running') AND j.workflow_id IS NULL \
             AND (j.heartbeat_at IS NULL OR j.heartbeat_at < NOW(3) - INTERVAL ? SECOND)",
            job_select()
        ))
        .bind(i64::try_from(stale_s).unwrap_or(i64::MAX))
        .fetch_all(self.pool())
        .await
        .map_err(|e| sql::db_error("listing stale jobs", e))?;
        rows.iter().map(job_from_row).collect()
    }

    /// Final jobs (and steps) that still note a claim: their runner stopped between the end
    /// and the release.
    pub async fn ended_jobs_with_claims(&self) -> Result<Vec<JobRow>> {
        let rows = sqlx::query(&format!(
            "{} WHERE j.instance_id IS NOT NULL AND j.state NOT IN ('pending', 'running')",
            job_select()
        ))
        .fetch_all(self.pool())
        .await
        .map_err(|e| sql::db_error("listing ended jobs with claims", e))?;
        rows.iter().map(job_from_row).collect()
    }

    /// Claims (`instances` rows) of jobs whose row does not note them any more, or whose job
    /// ended: what a runner stopped between claiming and recording left.
    pub async fn orphan_job_claims(&self) -> Result<Vec<InstanceId>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT i.id FROM instances i JOIN jobs j ON j.id = i.job_id \
             WHERE (j.instance_id IS NULL OR j.instance_id <> i.id) \
             AND i.created_at < NOW(3) - INTERVAL 60 SECOND",
        )
        .fetch_all(self.pool())
        .await
        .map_err(|e| sql::db_error("listing orphan job claims", e))?;
        ids.into_iter()
            .map(|i| {
                i.parse()
                    .map_err(|_| Error::Invalid(format!("stored instance id {i:?}")))
            })
            .collect()
    }

    /// Deletes one-off jobs and schedule runs that ended more than `keep_s` ago and hold no
    /// claim; returns how many went.
    pub async fn purge_jobs(&self, keep_s: u64) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM jobs WHERE workflow_id IS NULL AND instance_id IS NULL \
             AND finished_at < NOW(3) - INTERVAL ? SECOND",
        )
        .bind(i64::try_from(keep_s).unwrap_or(i64::MAX))
        .execute(self.pool())
        .await
        .map_err(|e| sql::db_error("deleting old jobs", e))?;
        Ok(done.rows_affected())
    }

    /// Deletes an app's ended jobs and its schedules (the app is being deleted); an app with a
    /// job still running is [`Error::Conflict`].
    pub async fn delete_app_jobs(&self, app: &AppId) -> Result<()> {
        let running: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE app_id = ? \
             AND (state IN ('pending', 'running') OR instance_id IS NOT NULL)",
        )
        .bind(app.as_str())
        .fetch_one(self.pool())
        .await
        .map_err(|e| sql::db_error("counting an app's jobs", e))?;
        if running > 0 {
            return Err(Error::Conflict(format!(
                "app {app} has {running} job(s) or workflow step(s) running; cancel them first"
            )));
        }
        sqlx::query("DELETE FROM jobs WHERE app_id = ?")
            .bind(app.as_str())
            .execute(self.pool())
            .await
            .map_err(|e| sql::db_error("deleting an app's jobs", e))?;
        sqlx::query("DELETE FROM schedules WHERE app_id = ?")
            .bind(app.as_str())
            .execute(self.pool())
            .await
            .map_err(|e| sql::db_error("deleting an app's schedules", e))?;
        Ok(())
    }
}

/// The first `max` bytes of `s`, cut at a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
