//! What `jobs` and `workflows` rows share, written once: the runner's heartbeat (with the
//! stored output and the cancel flag it reads back), the end, the stored output, a cancel
//! request, and the take-over of a row whose runner stopped. Writes that only the runner may
//! make carry its id in their `WHERE`.

use super::jobs::{truncate, JobEnd, StoredOutput};
use super::sql::{self, get, opt_text, text};
use super::Store;
use crate::error::{Error, Result};
use caas_types::api::JobState;

/// Which of the two tables a run row is in (`jobs` or `workflows`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunTable {
    /// `jobs` (one-off jobs, schedule runs, workflow steps).
    Jobs,
    /// `workflows`.
    Workflows,
}

impl RunTable {
    fn table(self) -> &'static str {
        match self {
            RunTable::Jobs => "jobs",
            RunTable::Workflows => "workflows",
        }
    }

    fn what(self, id: i64) -> String {
        match self {
            RunTable::Jobs => format!("job j-{id}"),
            RunTable::Workflows => format!("workflow w-{id}"),
        }
    }
}

fn written(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Store {
    /// Refreshes a row's heartbeat (and stored output, when given), if `runner` still runs
    /// it. Returns whether a cancel was asked for, or `None` when another runner took it.
    pub async fn heartbeat(
        &self,
        t: RunTable,
        id: i64,
        runner: &str,
        output: Option<(&[u8], u64)>,
    ) -> Result<Option<bool>> {
        let table = t.table();
        let (with_output, plain);
        let q = match output {
            Some((bytes, n)) => {
                with_output = format!(
                    "UPDATE {table} SET heartbeat_at = NOW(3), output = ?, output_written = ? \
                     WHERE id = ? AND runner = ?"
                );
                sqlx::query(&with_output).bind(bytes).bind(written(n))
            }
            None => {
                plain =
                    format!("UPDATE {table} SET heartbeat_at = NOW(3) WHERE id = ? AND runner = ?");
                sqlx::query(&plain)
            }
        };
        q.bind(id)
            .bind(runner)
            .execute(self.pool())
            .await
            .map_err(|e| sql::db_error("refreshing a heartbeat", e))?;
        let read = format!("SELECT runner, cancel_requested FROM {table} WHERE id = ?");
        let row = sqlx::query(&read)
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(|e| sql::db_error("reading a cancel flag", e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let cancel: bool = get(&row, "cancel_requested")?;
        Ok((opt_text(&row, "runner")?.as_deref() == Some(runner)).then_some(cancel))
    }

    /// Records how a row ended with its output, if `runner` still runs it and it is not final
    /// already. Returns whether the row changed.
    pub async fn finish_run(
        &self,
        t: RunTable,
        id: i64,
        runner: &str,
        end: &JobEnd,
        output: (&[u8], u64),
    ) -> Result<bool> {
        let exit_code = match t {
            RunTable::Jobs => "exit_code = ?,",
            RunTable::Workflows => "",
        };
        let q = format!(
            "UPDATE {} SET state = ?, {exit_code} reason = ?, output = ?, output_written = ?, \
             finished_at = NOW(3) WHERE id = ? AND runner = ? AND state IN ('pending', 'running')",
            t.table()
        );
        let mut query = sqlx::query(&q).bind(end.state.as_str());
        if t == RunTable::Jobs {
            query = query.bind(end.exit_code);
        }
        let done = query
            .bind(end.reason.as_deref().map(|r| truncate(r, 1024)))
            .bind(output.0)
            .bind(written(output.1))
            .bind(id)
            .bind(runner)
            .execute(self.pool())
            .await
            .map_err(|e| sql::db_error("recording an end", e))?;
        Ok(done.rows_affected() == 1)
    }

    /// The output a row kept (as of its runner's last heartbeat while it runs).
    pub async fn stored_output(&self, t: RunTable, id: i64) -> Result<StoredOutput> {
        let q = format!(
            "SELECT output, output_written, state FROM {} WHERE id = ?",
            t.table()
        );
        let row = sqlx::query(&q)
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(|e| sql::db_error("reading an output", e))?
            .ok_or_else(|| Error::NotFound(t.what(id)))?;
        let bytes: Option<Vec<u8>> = get(&row, "output")?;
        let state = text(&row, "state")?;
        Ok(StoredOutput {
            bytes: bytes.unwrap_or_default(),
            written: sql::unsigned(&row, "output_written")?,
            done: state
                .parse::<JobState>()
                .map(JobState::is_final)
                .unwrap_or(true),
        })
    }

    /// Asks a row's runner to cancel it (it sees the flag at its next heartbeat).
    pub async fn request_cancel(&self, t: RunTable, id: i64) -> Result<()> {
        let q = format!(
            "UPDATE {} SET cancel_requested = TRUE WHERE id = ?",
            t.table()
        );
        sqlx::query(&q)
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(|e| sql::db_error("asking for a cancel", e))?;
        Ok(())
    }

    /// Takes a row over from the runner `from` (whose heartbeat stopped): true when this call
    /// won (another scheduler may race for it).
    pub async fn take_over(
        &self,
        t: RunTable,
        id: i64,
        from: Option<&str>,
        to: &str,
    ) -> Result<bool> {
        let q = format!(
            "UPDATE {} SET runner = ?, heartbeat_at = NOW(3) \
             WHERE id = ? AND runner <=> ? AND state IN ('pending', 'running')",
            t.table()
        );
        let done = sqlx::query(&q)
            .bind(to)
            .bind(id)
            .bind(from)
            .execute(self.pool())
            .await
            .map_err(|e| sql::db_error("taking a run over", e))?;
        Ok(done.rows_affected() == 1)
    }
}
