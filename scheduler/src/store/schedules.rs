//! The `schedules` and `schedule_runs` tables: an app's cron schedules, and one row per
//! (schedule, due time) that was handled (started, skipped or failed to start). The primary key
//! of `schedule_runs` is what makes a due time start once, however many schedulers race for it:
//! the one whose insert lands starts the run.

use super::sql::{self, get, json, parse, text, to_json};
use super::Store;
use crate::error::{Error, Result};
use caas_types::api::{Concurrency, CreateJob};
use caas_types::{AppId, Timestamp};
use sqlx::mysql::MySqlRow;

/// A schedule as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRow {
    /// Database id.
    pub id: i64,
    /// Its app.
    pub app: AppId,
    /// Its name, unique within the app.
    pub name: String,
    /// Its cron expression (normalised).
    pub cron: String,
    /// The job each run starts.
    pub job: CreateJob,
    /// Whether runs may overlap.
    pub concurrency: Concurrency,
    /// When it was made.
    pub created_at: Timestamp,
    /// The latest due time handled (`None` before the first).
    pub handled: Option<Timestamp>,
    /// Whether a run of it is still pending or running.
    pub busy: bool,
}

/// What became of a due time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// A job was started.
    Started,
    /// Skipped: more than an interval late.
    SkippedLate,
    /// Skipped: the previous run still runs (`forbid`).
    SkippedBusy,
    /// The job could not start (the reason is in the scheduler's log and events).
    Failed,
}

impl RunOutcome {
    fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Started => "started",
            RunOutcome::SkippedLate => "skipped_late",
            RunOutcome::SkippedBusy => "skipped_busy",
            RunOutcome::Failed => "failed",
        }
    }
}

fn ms_ts(ms: Option<i64>) -> Option<Timestamp> {
    ms.map(|ms| Timestamp::from_nanos(ms.saturating_mul(1_000_000)))
}

fn millis(t: Timestamp) -> i64 {
    t.as_nanos() / 1_000_000
}

const SCHEDULE_SELECT: &str = "SELECT s.id, s.app_id, s.name, s.cron, s.job, s.concurrency, \
     CAST(UNIX_TIMESTAMP(s.created_at) * 1000 AS SIGNED) AS created_ms, \
     (SELECT CAST(UNIX_TIMESTAMP(MAX(r.due_at)) * 1000 AS SIGNED) FROM schedule_runs r \
        WHERE r.schedule_id = s.id) AS handled_ms, \
     EXISTS (SELECT 1 FROM jobs j WHERE j.schedule_id = s.id \
        AND j.state IN ('pending', 'running')) AS busy \
     FROM schedules s";

fn schedule_from_row(row: &MySqlRow) -> Result<ScheduleRow> {
    let concurrency = match text(row, "concurrency")?.as_str() {
        "allow" => Concurrency::Allow,
        _ => Concurrency::Forbid,
    };
    let busy: i64 = get(row, "busy")?;
    Ok(ScheduleRow {
        id: get(row, "id")?,
        app: parse(row, "app_id")?,
        name: text(row, "name")?,
        cron: text(row, "cron")?,
        job: json(row, "job")?,
        concurrency,
        created_at: ms_ts(get(row, "created_ms")?).unwrap_or(Timestamp::from_nanos(0)),
        handled: ms_ts(get(row, "handled_ms")?),
        busy: busy != 0,
    })
}

impl Store {
    /// Records a schedule; a name the app uses already is [`Error::Conflict`].
    pub async fn insert_schedule(
        &self,
        app: &AppId,
        name: &str,
        cron: &str,
        job: &CreateJob,
        concurrency: Concurrency,
    ) -> Result<ScheduleRow> {
        let concurrency = match concurrency {
            Concurrency::Allow => "allow",
            Concurrency::Forbid => "forbid",
        };
        sqlx::query(
            "INSERT INTO schedules (app_id, name, cron, job, concurrency) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(app.as_str())
        .bind(name)
        .bind(cron)
        .bind(to_json(job, "schedule job")?)
        .bind(concurrency)
        .execute(self.pool())
        .await
        .map_err(|e| {
            sql::write_error(
                "recording a schedule",
                || format!("app {app} has a schedule named {name:?} already"),
                e,
            )
        })?;
        self.get_schedule(app, name).await
    }

    /// One schedule of an app, by name.
    pub async fn get_schedule(&self, app: &AppId, name: &str) -> Result<ScheduleRow> {
        let row = sqlx::query(&format!(
            "{SCHEDULE_SELECT} WHERE s.app_id = ? AND s.name = ?"
        ))
        .bind(app.as_str())
        .bind(name)
        .fetch_optional(self.pool())
        .await
        .map_err(|e| sql::db_error("reading a schedule", e))?
        .ok_or_else(|| Error::NotFound(format!("schedule {name:?} of app {app}")))?;
        schedule_from_row(&row)
    }

    /// An app's schedules by name, or every schedule (`None`).
    pub async fn list_schedules(&self, app: Option<&AppId>) -> Result<Vec<ScheduleRow>> {
        let rows = match app {
            Some(app) => {
                sqlx::query(&format!(
                    "{SCHEDULE_SELECT} WHERE s.app_id = ? ORDER BY s.name"
                ))
                .bind(app.as_str())
                .fetch_all(self.pool())
                .await
            }
            None => {
                sqlx::query(&format!("{SCHEDULE_SELECT} ORDER BY s.id"))
                    .fetch_all(self.pool())
                    .await
            }
        }
        .map_err(|e| sql::db_error("listing schedules", e))?;
        rows.iter().map(schedule_from_row).collect()
    }

    /// Deletes a schedule (its handled due times go with it; its runs stay as jobs).
    pub async fn delete_schedule(&self, app: &AppId, name: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM schedules WHERE app_id = ? AND name = ?")
            .bind(app.as_str())
            .bind(name)
            .execute(self.pool())
            .await
            .map_err(|e| sql::db_error("deleting a schedule", e))?;
        sql::found(&done, || format!("schedule {name:?} of app {app}"))
    }

    /// Claims due time `due` of schedule `id` with `outcome`: true when this call recorded it
    /// (and so handles it), false when another scheduler did first.
    pub async fn claim_due_time(
        &self,
        id: i64,
        due: Timestamp,
        outcome: RunOutcome,
    ) -> Result<bool> {
        let done = sqlx::query(
            "INSERT IGNORE INTO schedule_runs (schedule_id, due_at, outcome) \
             VALUES (?, FROM_UNIXTIME(? / 1000), ?)",
        )
        .bind(id)
        .bind(millis(due))
        .bind(outcome.as_str())
        .execute(self.pool())
        .await
        .map_err(|e| sql::db_error("recording a schedule's due time", e))?;
        Ok(done.rows_affected() == 1)
    }

    /// Notes how a claimed due time ended: its job, or that it failed to start.
    pub async fn set_due_time_run(
        &self,
        id: i64,
        due: Timestamp,
        job: Option<i64>,
        outcome: RunOutcome,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE schedule_runs SET job_id = ?, outcome = ? \
             WHERE schedule_id = ? AND due_at = FROM_UNIXTIME(? / 1000)",
        )
        .bind(job)
        .bind(outcome.as_str())
        .bind(id)
        .bind(millis(due))
        .execute(self.pool())
        .await
        .map_err(|e| sql::db_error("recording a schedule's run", e))?;
        Ok(())
    }

    /// How many due times of schedule `id` were handled with each outcome (tests, metrics).
    pub async fn due_time_outcomes(&self, id: i64) -> Result<Vec<(i64, String)>> {
        let rows = sqlx::query(
            "SELECT CAST(UNIX_TIMESTAMP(due_at) * 1000 AS SIGNED) AS due_ms, outcome \
             FROM schedule_runs WHERE schedule_id = ? ORDER BY due_at",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await
        .map_err(|e| sql::db_error("listing a schedule's due times", e))?;
        rows.iter()
            .map(|r| Ok((get(r, "due_ms")?, text(r, "outcome")?)))
            .collect()
    }
}
