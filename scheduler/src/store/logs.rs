//! The `app_logs` table: the lines the apps' containers wrote, a ring of the newest lines per
//! app. Written only by the log collector's one writer (`INSERT IGNORE`, so a line collected
//! twice is stored once), read by the logs API (history by time, new lines by `id`), trimmed in
//! the background, and removed with the app (foreign key, `ON DELETE CASCADE`).

use super::sql::{self, get, parse, text};
use super::Store;
use crate::error::Result;
use caas_types::api::{LogLine, LogStream};
use caas_types::{AppId, InstanceId, Timestamp, Version};
use sqlx::mysql::MySqlRow;

/// A line to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLogLine {
    /// The app.
    pub app: AppId,
    /// The instance that wrote it.
    pub instance: InstanceId,
    /// The instance's version.
    pub version: Version,
    /// stdout or stderr.
    pub stream: LogStream,
    /// The engine's timestamp.
    pub ts: Timestamp,
    /// The text (already cut to the line limit).
    pub line: String,
}

/// A stored line with its position in the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRow {
    /// Commit order of the collector's writer: new lines have larger ids.
    pub id: i64,
    /// The line as the API shows it.
    pub line: LogLine,
}

/// Rows per insert statement: 6 placeholders each, far below the protocol's 65,535.
pub const MAX_INSERT_ROWS: usize = 1_000;

const LOG_COLUMNS: &str = "id, instance_id, version, stream, ts_ns, line";

fn log_from_row(row: &MySqlRow) -> Result<LogRow> {
    Ok(LogRow {
        id: get(row, "id")?,
        line: LogLine {
            ts: Timestamp::from_nanos(get(row, "ts_ns")?),
            instance: parse(row, "instance_id")?,
            version: parse(row, "version")?,
            stream: parse(row, "stream")?,
            line: text(row, "line")?,
        },
    })
}

impl Store {
    /// Stores `lines` (at most [`MAX_INSERT_ROWS`]) in one statement; lines already stored
    /// (same instance, timestamp and stream) and lines of apps deleted meanwhile are skipped.
    /// Returns how many rows were added.
    pub async fn insert_log_lines(&self, lines: &[NewLogLine]) -> Result<u64> {
        if lines.is_empty() {
            return Ok(0);
        }
        let mut q = sqlx::QueryBuilder::<sqlx::MySql>::new(
            "INSERT IGNORE INTO app_logs (app_id, instance_id, version, stream, ts_ns, line) ",
        );
        q.push_values(lines.iter().take(MAX_INSERT_ROWS), |mut b, l| {
            b.push_bind(l.app.as_str())
                .push_bind(l.instance.as_str())
                .push_bind(l.version.as_str())
                .push_bind(l.stream.as_str())
                .push_bind(l.ts.as_nanos())
                .push_bind(l.line.as_str());
        });
        let done = q
            .build()
            .execute(&self.pool)
            .await
            .map_err(|e| sql::db_error("storing log lines", e))?;
        Ok(done.rows_affected())
    }

    /// The timestamp of the newest stored line of `instance`, where a follower resumes.
    pub async fn last_log_ts(&self, instance: &InstanceId) -> Result<Option<Timestamp>> {
        let row = sqlx::query("SELECT MAX(ts_ns) AS ts FROM app_logs WHERE instance_id = ?")
            .bind(instance.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(|e| sql::db_error("reading the last log line of an instance", e))?;
        let ts: Option<i64> = get(&row, "ts")?;
        Ok(ts.map(Timestamp::from_nanos))
    }

    /// The newest `tail` lines of `app` at or after `since`, oldest first (by timestamp, then
    /// commit order).
    pub async fn log_tail(
        &self,
        app: &AppId,
        since: Option<Timestamp>,
        tail: u32,
    ) -> Result<Vec<LogRow>> {
        let text = format!(
            "SELECT {LOG_COLUMNS} FROM (SELECT {LOG_COLUMNS} FROM app_logs \
             WHERE app_id = ? AND ts_ns >= ? ORDER BY ts_ns DESC, id DESC LIMIT ?) newest \
             ORDER BY ts_ns, id"
        );
        let rows = sqlx::query(&text)
            .bind(app.as_str())
            .bind(since.map_or(0, Timestamp::as_nanos))
            .bind(tail)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| sql::db_error("reading log lines", e))?;
        rows.iter().map(log_from_row).collect()
    }

    /// The largest line id of `app` (0 when it has none): a follower's starting point.
    pub async fn log_max_id(&self, app: &AppId) -> Result<i64> {
        let row = sqlx::query("SELECT COALESCE(MAX(id), 0) AS id FROM app_logs WHERE app_id = ?")
            .bind(app.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(|e| sql::db_error("reading the newest log line", e))?;
        get(&row, "id")
    }

    /// Up to `limit` lines of `app` stored after line `after` (by id), in commit order.
    pub async fn logs_after(&self, app: &AppId, after: i64, limit: u32) -> Result<Vec<LogRow>> {
        let text = format!(
            "SELECT {LOG_COLUMNS} FROM app_logs WHERE app_id = ? AND id > ? ORDER BY id LIMIT ?"
        );
        let rows = sqlx::query(&text)
            .bind(app.as_str())
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| sql::db_error("reading new log lines", e))?;
        rows.iter().map(log_from_row).collect()
    }

    /// The apps that have stored lines.
    pub async fn apps_with_logs(&self) -> Result<Vec<AppId>> {
        let rows = sqlx::query("SELECT DISTINCT app_id FROM app_logs")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| sql::db_error("listing apps with logs", e))?;
        rows.iter().map(|r| parse(r, "app_id")).collect()
    }

    /// How many lines `app` has stored.
    pub async fn count_log_lines(&self, app: &AppId) -> Result<u64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM app_logs WHERE app_id = ?")
            .bind(app.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(|e| sql::db_error("counting log lines", e))?;
        let n: i64 = get(&row, "n")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Deletes every line of `app` but its newest `keep` (by timestamp, then commit order), in
    /// chunks of `chunk` rows so no statement holds locks for long. Returns the rows deleted.
    pub async fn trim_logs(&self, app: &AppId, keep: u32, chunk: u32) -> Result<u64> {
        let cutoff = sqlx::query(
            "SELECT ts_ns, id FROM app_logs WHERE app_id = ? \
             ORDER BY ts_ns DESC, id DESC LIMIT 1 OFFSET ?",
        )
        .bind(app.as_str())
        .bind(keep)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| sql::db_error("finding where to trim logs", e))?;
        let Some(cutoff) = cutoff else {
            return Ok(0);
        };
        let (ts, id): (i64, i64) = (get(&cutoff, "ts_ns")?, get(&cutoff, "id")?);
        let mut deleted = 0;
        loop {
            let done = sqlx::query(
                "DELETE FROM app_logs WHERE app_id = ? \
                 AND (ts_ns < ? OR (ts_ns = ? AND id <= ?)) LIMIT ?",
            )
            .bind(app.as_str())
            .bind(ts)
            .bind(ts)
            .bind(id)
            .bind(chunk.max(1))
            .execute(&self.pool)
            .await
            .map_err(|e| sql::db_error("trimming logs", e))?;
            deleted += done.rows_affected();
            if done.rows_affected() < u64::from(chunk.max(1)) {
                return Ok(deleted);
            }
        }
    }
}
