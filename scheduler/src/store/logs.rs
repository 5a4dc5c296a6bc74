//! The `app_log_chunks` table: the lines the apps' containers wrote, a ring of the newest lines
//! per app, stored as chunks (the lines one instance wrote during one flush of the collector,
//! encoded by [`super::log_chunk`]). Written only by the log collector's one writer
//! (`INSERT IGNORE`, so a chunk written twice is stored once), read by the logs API (history by
//! time, new chunks by `id`), trimmed in the background, and removed with the app (foreign key,
//! `ON DELETE CASCADE`).

use super::log_chunk::{self, ChunkLine, LINE_OVERHEAD};
use super::sql::{self, get, parse};
use super::Store;
use crate::error::{Error, Result};
use caas_types::api::{LogLine, LogStream};
use caas_types::{AppId, InstanceId, Timestamp, Version};
use sqlx::mysql::MySqlRow;
use std::collections::HashSet;

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

/// A stored line with its place in commit order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRow {
    /// The id of its chunk: chunks committed later have larger ids.
    pub chunk: i64,
    /// Its place in the chunk.
    pub index: u32,
    /// The line as the API shows it.
    pub line: LogLine,
}

/// A chunk as the writer stored it, with its id: what a follow in the writer's process reads
/// instead of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChunk {
    /// Its id in the table.
    pub id: i64,
    /// Its app.
    pub app: AppId,
    /// Its lines, as the API shows them.
    pub lines: Vec<LogRow>,
}

/// What one insert of the writer stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBatch {
    /// The chunks with their ids, oldest id first; `None` when their ids are not known
    /// (a chunk was skipped as stored before, or the server does not number rows one by one):
    /// then only the table can say.
    pub chunks: Option<Vec<StoredChunk>>,
}

impl StoredBatch {
    /// The ids of the first and last chunk, when known.
    pub fn ids(&self) -> Option<(i64, i64)> {
        let chunks = self.chunks.as_ref()?;
        Some((chunks.first()?.id, chunks.last()?.id))
    }
}

/// New lines of an app, as a follower reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPage {
    /// The lines of the chunks read, chunk by chunk in commit order.
    pub lines: Vec<LogRow>,
    /// The id of the last chunk read: the next page starts after it.
    pub last: i64,
    /// True when the page holds as many chunks as asked for: more may be waiting.
    pub full: bool,
}

/// Lines in the order the API shows them: by the engine's timestamp, then by commit order
/// (lines of one instance with one timestamp keep the order they were stored in).
pub fn in_time_order(rows: &mut [LogRow]) {
    rows.sort_by_key(|r| (r.line.ts, r.chunk, r.index));
}

/// Most lines in one chunk; an instance's lines of one flush beyond it start another.
pub const MAX_CHUNK_LINES: usize = 4_096;
/// Most encoded bytes in one chunk (a MEDIUMBLOB holds 16 MiB).
pub const MAX_CHUNK_BYTES: usize = 1 << 20;
/// Most encoded bytes the writer puts in one insert statement, well below MariaDB's default
/// `max_allowed_packet` (16 MiB).
pub const MAX_INSERT_BYTES: usize = 4 << 20;

const CHUNK_COLUMNS: &str = "id, instance_id, version, body";

/// A chunk to insert: consecutive lines of one instance.
#[derive(Debug)]
struct NewChunk<'a> {
    lines: Vec<&'a NewLogLine>,
    bytes: usize,
}

/// Groups `lines` into chunks: one per instance, in the order each instance's lines came,
/// split at [`MAX_CHUNK_LINES`] or [`MAX_CHUNK_BYTES`].
fn chunks_of(lines: &[NewLogLine]) -> Vec<NewChunk<'_>> {
    let mut chunks: Vec<NewChunk<'_>> = Vec::new();
    // The open chunk of each instance, by index into `chunks`.
    let mut open: std::collections::HashMap<&InstanceId, usize> = Default::default();
    for l in lines {
        let size = LINE_OVERHEAD + l.line.len();
        let fits =
            |c: &NewChunk<'_>| c.lines.len() < MAX_CHUNK_LINES && c.bytes + size <= MAX_CHUNK_BYTES;
        match open.get(&l.instance) {
            Some(&i) if fits(&chunks[i]) => {
                chunks[i].lines.push(l);
                chunks[i].bytes += size;
            }
            _ => {
                open.insert(&l.instance, chunks.len());
                chunks.push(NewChunk {
                    lines: vec![l],
                    bytes: 1 + size,
                });
            }
        }
    }
    chunks
}

/// The lines of one stored chunk row, as the API shows them.
fn lines_of(row: &MySqlRow) -> Result<Vec<LogRow>> {
    let chunk: i64 = get(row, "id")?;
    let instance: InstanceId = parse(row, "instance_id")?;
    let version: Version = parse(row, "version")?;
    let body: Vec<u8> = get(row, "body")?;
    let lines = log_chunk::decode(&body).map_err(|e| {
        tracing::error!(chunk, error = %e, "cannot decode a stored log chunk");
        Error::Database(format!("log chunk {chunk} cannot be decoded"))
    })?;
    Ok(lines
        .into_iter()
        .enumerate()
        .map(|(i, ChunkLine { ts, stream, line })| LogRow {
            chunk,
            index: u32::try_from(i).unwrap_or(u32::MAX),
            line: LogLine {
                ts,
                instance: instance.clone(),
                version: version.clone(),
                stream,
                line,
            },
        })
        .collect())
}

fn rows_of(rows: &[MySqlRow]) -> Result<Vec<LogRow>> {
    let mut out = Vec::new();
    for r in rows {
        out.extend(lines_of(r)?);
    }
    Ok(out)
}

/// Drops the second and later copies of a line (same instance, stream and timestamp), which
/// an old and a new leader can both store in the moment they overlap.
pub fn without_copies(rows: &mut Vec<LogRow>) {
    let mut seen = HashSet::with_capacity(rows.len());
    rows.retain(|r| seen.insert((r.line.instance.clone(), r.line.stream, r.line.ts)));
}

impl Store {
    /// Stores `lines` as chunks (one per instance, see [`MAX_CHUNK_LINES`]) in one statement;
    /// a chunk already stored (same instance and first timestamp) and chunks of apps deleted
    /// meanwhile are skipped. Returns how many chunks were added. At most
    /// [`MAX_INSERT_BYTES`] (and a line) should be given at once.
    pub async fn insert_log_lines(&self, lines: &[NewLogLine]) -> Result<u64> {
        let (added, _) = self.insert_chunks(&chunks_of(lines)).await?;
        Ok(added)
    }

    /// [`Store::insert_log_lines`] for the collector's writer: also returns the chunks with
    /// their ids when every chunk was added and `step` (the server's
    /// `auto_increment_increment`, [`Store::id_step`]) is 1, with their lines as the API shows
    /// them when `with_lines` (else empty, the ids still told).
    pub async fn store_log_batch(
        &self,
        lines: &[NewLogLine],
        step: i64,
        with_lines: bool,
    ) -> Result<StoredBatch> {
        let chunks = chunks_of(lines);
        let (added, first) = self.insert_chunks(&chunks).await?;
        // One statement of n rows takes n consecutive ids from the first (InnoDB numbers the
        // rows of one insert together; the collector's one writer is the table's only
        // inserter): known only if none was skipped.
        if added != chunks.len() as u64 || first == 0 || step != 1 {
            return Ok(StoredBatch { chunks: None });
        }
        let stored = chunks
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let id = first + i as i64;
                let lines = if with_lines {
                    c.lines
                        .iter()
                        .enumerate()
                        .map(|(j, l)| LogRow {
                            chunk: id,
                            index: u32::try_from(j).unwrap_or(u32::MAX),
                            line: LogLine {
                                ts: l.ts,
                                instance: l.instance.clone(),
                                version: l.version.clone(),
                                stream: l.stream,
                                line: l.line.clone(),
                            },
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                StoredChunk {
                    id,
                    app: c.lines[0].app.clone(),
                    lines,
                }
            })
            .collect();
        Ok(StoredBatch {
            chunks: Some(stored),
        })
    }

    /// Inserts `chunks` in one statement; returns the rows added and the id of the first.
    async fn insert_chunks(&self, chunks: &[NewChunk<'_>]) -> Result<(u64, i64)> {
        if chunks.is_empty() {
            return Ok((0, 0));
        }
        let mut q = sqlx::QueryBuilder::<sqlx::MySql>::new(
            "INSERT IGNORE INTO app_log_chunks \
             (app_id, instance_id, version, first_ns, last_ns, line_count, body) ",
        );
        q.push_values(chunks, |mut b, c| {
            let first = c.lines[0];
            let (lo, hi) = c.lines.iter().fold((i64::MAX, i64::MIN), |(lo, hi), l| {
                (lo.min(l.ts.as_nanos()), hi.max(l.ts.as_nanos()))
            });
            let body = log_chunk::encode(c.lines.iter().map(|l| (l.ts, l.stream, l.line.as_str())));
            b.push_bind(first.app.as_str())
                .push_bind(first.instance.as_str())
                .push_bind(first.version.as_str())
                .push_bind(lo)
                .push_bind(hi)
                .push_bind(u32::try_from(c.lines.len()).unwrap_or(u32::MAX))
                .push_bind(body);
        });
        let done = q
            .build()
            .execute(&self.pool)
            .await
            .map_err(|e| sql::db_error("storing log lines", e))?;
        Ok((
            done.rows_affected(),
            i64::try_from(done.last_insert_id()).unwrap_or(0),
        ))
    }

    /// The server's `auto_increment_increment`: how far apart the ids of one insert's rows are.
    pub async fn id_step(&self) -> Result<i64> {
        let row = sqlx::query("SELECT CAST(@@auto_increment_increment AS SIGNED) AS step")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| sql::db_error("reading the id step", e))?;
        get(&row, "step")
    }

    /// The timestamp of the newest stored line of `instance`, where a follower resumes.
    pub async fn last_log_ts(&self, instance: &InstanceId) -> Result<Option<Timestamp>> {
        let row =
            sqlx::query("SELECT MAX(last_ns) AS ts FROM app_log_chunks WHERE instance_id = ?")
                .bind(instance.as_str())
                .fetch_one(&self.pool)
                .await
                .map_err(|e| sql::db_error("reading the last log line of an instance", e))?;
        let ts: Option<i64> = get(&row, "ts")?;
        Ok(ts.map(Timestamp::from_nanos))
    }

    /// The newest `tail` lines of `app` at or after `since`, oldest first (by timestamp, then
    /// commit order), each line once.
    ///
    /// Exact although chunks of several instances overlap in time: the newest chunks (by their
    /// last line) that hold `tail` lines between them all start at or after some instant τ, so
    /// the newest `tail` lines are all at or after τ, and every line at or after τ is in a
    /// chunk whose last line is: those chunks are read whole, merged and cut.
    pub async fn log_tail(
        &self,
        app: &AppId,
        since: Option<Timestamp>,
        tail: u32,
    ) -> Result<Vec<LogRow>> {
        if tail == 0 {
            return Ok(Vec::new());
        }
        let since = since.map_or(0, Timestamp::as_nanos);
        // Each chunk holds a line at least: `tail` chunks are always enough.
        let newest = sqlx::query(
            "SELECT first_ns, line_count FROM app_log_chunks WHERE app_id = ? AND last_ns >= ? \
             ORDER BY last_ns DESC, id DESC LIMIT ?",
        )
        .bind(app.as_str())
        .bind(since)
        .bind(tail)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| sql::db_error("reading log lines", e))?;
        let mut held = 0u64;
        let mut from = since;
        for r in &newest {
            let first: i64 = get(r, "first_ns")?;
            let lines: u32 = get(r, "line_count")?;
            from = if held == 0 { first } else { from.min(first) };
            held += u64::from(lines);
            if held >= u64::from(tail) {
                break;
            }
        }
        if held < u64::from(tail) {
            // Fewer lines than asked for: every chunk from `since` on.
            from = since;
        }
        let text =
            format!("SELECT {CHUNK_COLUMNS} FROM app_log_chunks WHERE app_id = ? AND last_ns >= ?");
        let rows = sqlx::query(&text)
            .bind(app.as_str())
            .bind(from.max(since))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| sql::db_error("reading log lines", e))?;
        let mut lines = rows_of(&rows)?;
        lines.retain(|l| l.line.ts.as_nanos() >= since);
        in_time_order(&mut lines);
        without_copies(&mut lines);
        let cut = lines.len().saturating_sub(tail as usize);
        lines.drain(..cut);
        Ok(lines)
    }

    /// The largest chunk id of `app` (0 when it has none): a follower's starting point.
    pub async fn log_max_id(&self, app: &AppId) -> Result<i64> {
        let row =
            sqlx::query("SELECT COALESCE(MAX(id), 0) AS id FROM app_log_chunks WHERE app_id = ?")
                .bind(app.as_str())
                .fetch_one(&self.pool)
                .await
                .map_err(|e| sql::db_error("reading the newest log line", e))?;
        get(&row, "id")
    }

    /// The lines of up to `limit` chunks of `app` stored after chunk `after`, in commit order,
    /// and the id of the last chunk read (`after` when there was none).
    pub async fn logs_after(&self, app: &AppId, after: i64, limit: u32) -> Result<LogPage> {
        let text = format!(
            "SELECT {CHUNK_COLUMNS} FROM app_log_chunks WHERE app_id = ? AND id > ? \
             ORDER BY id LIMIT ?"
        );
        let rows = sqlx::query(&text)
            .bind(app.as_str())
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| sql::db_error("reading new log lines", e))?;
        let mut last = after;
        for r in &rows {
            last = last.max(get(r, "id")?);
        }
        Ok(LogPage {
            lines: rows_of(&rows)?,
            last,
            full: rows.len() >= limit as usize,
        })
    }

    /// The apps that have stored lines.
    pub async fn apps_with_logs(&self) -> Result<Vec<AppId>> {
        let rows = sqlx::query("SELECT DISTINCT app_id FROM app_log_chunks")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| sql::db_error("listing apps with logs", e))?;
        rows.iter().map(|r| parse(r, "app_id")).collect()
    }

    /// How many lines `app` has stored.
    pub async fn count_log_lines(&self, app: &AppId) -> Result<u64> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(line_count), 0) AS SIGNED) AS n FROM app_log_chunks \
             WHERE app_id = ?",
        )
        .bind(app.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| sql::db_error("counting log lines", e))?;
        let n: i64 = get(&row, "n")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Cuts `app` back to its newest `keep` lines (by timestamp; lines sharing the oldest
    /// kept timestamp all stay): chunks wholly older are deleted, `batch` a statement, and
    /// chunks across the edge lose their older lines. Returns the chunks deleted or cut.
    pub async fn trim_logs(&self, app: &AppId, keep: u32, batch: u32) -> Result<u64> {
        let kept = self.log_tail(app, None, keep).await?;
        let Some(edge) = kept.first().filter(|_| kept.len() >= keep as usize) else {
            return Ok(0);
        };
        let edge = edge.line.ts.as_nanos();
        drop(kept);
        let mut changed = 0;
        loop {
            let done =
                sqlx::query("DELETE FROM app_log_chunks WHERE app_id = ? AND last_ns < ? LIMIT ?")
                    .bind(app.as_str())
                    .bind(edge)
                    .bind(batch.max(1))
                    .execute(&self.pool)
                    .await
                    .map_err(|e| sql::db_error("trimming logs", e))?;
            changed += done.rows_affected();
            if done.rows_affected() < u64::from(batch.max(1)) {
                break;
            }
        }
        let across = sqlx::query(
            "SELECT id, body FROM app_log_chunks WHERE app_id = ? AND first_ns < ? AND last_ns >= ?",
        )
        .bind(app.as_str())
        .bind(edge)
        .bind(edge)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| sql::db_error("reading log chunks to trim", e))?;
        for row in &across {
            let id: i64 = get(row, "id")?;
            let body: Vec<u8> = get(row, "body")?;
            let mut lines = log_chunk::decode(&body).map_err(|e| {
                tracing::error!(chunk = id, error = %e, "cannot decode a stored log chunk");
                Error::Database(format!("log chunk {id} cannot be decoded"))
            })?;
            lines.retain(|l| l.ts.as_nanos() >= edge);
            let Some(first) = lines.iter().map(|l| l.ts.as_nanos()).min() else {
                continue;
            };
            let body = log_chunk::encode(lines.iter().map(|l| (l.ts, l.stream, l.line.as_str())));
            // IGNORE: a copy of this instance's chunk starting at `first` (two leaders
            // overlapping) leaves this one uncut rather than failing the trim.
            let done = sqlx::query(
                "UPDATE IGNORE app_log_chunks SET first_ns = ?, line_count = ?, body = ? WHERE id = ?",
            )
            .bind(first)
            .bind(u32::try_from(lines.len()).unwrap_or(u32::MAX))
            .bind(body)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(|e| sql::db_error("trimming a log chunk", e))?;
            changed += done.rows_affected();
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn line(instance: &str, ts: i64, text: &str) -> NewLogLine {
        NewLogLine {
            app: "shop".parse().unwrap(),
            instance: instance.parse().unwrap(),
            version: "v1".parse().unwrap(),
            stream: LogStream::Stdout,
            ts: Timestamp::from_nanos(ts),
            line: text.into(),
        }
    }

    #[test]
    fn a_batch_makes_one_chunk_per_instance_in_order() {
        let lines = vec![
            line("shop-a", 1, "a1"),
            line("shop-b", 2, "b1"),
            line("shop-a", 3, "a2"),
            line("shop-b", 4, "b2"),
            line("shop-c", 5, "c1"),
        ];
        let chunks = chunks_of(&lines);
        let texts: Vec<Vec<&str>> = chunks
            .iter()
            .map(|c| c.lines.iter().map(|l| l.line.as_str()).collect())
            .collect();
        assert_eq!(texts, vec![vec!["a1", "a2"], vec!["b1", "b2"], vec!["c1"]]);
        assert!(chunks_of(&[]).is_empty());
    }

    #[test]
    fn a_chunk_is_split_at_its_line_and_byte_limits() {
        let many: Vec<NewLogLine> = (0..MAX_CHUNK_LINES as i64 + 1)
            .map(|i| line("shop-a", i, "x"))
            .collect();
        let sizes: Vec<usize> = chunks_of(&many).iter().map(|c| c.lines.len()).collect();
        assert_eq!(sizes, vec![MAX_CHUNK_LINES, 1]);
        let big = "y".repeat(16 * 1024);
        let n = MAX_CHUNK_BYTES / (big.len() + LINE_OVERHEAD) + 1;
        let wide: Vec<NewLogLine> = (0..n as i64).map(|i| line("shop-a", i, &big)).collect();
        let chunks = chunks_of(&wide);
        assert_eq!(chunks.len(), 2);
        assert!(chunks.iter().all(|c| c.bytes <= MAX_CHUNK_BYTES));
    }

    #[test]
    fn lines_of_two_instances_merge_by_time_then_commit_order() {
        let row = |chunk, index, ts| {
            super::super::fixtures::log_row(chunk, index, "shop-a", ts, &format!("{chunk}.{index}"))
        };
        let mut rows = vec![row(2, 0, 30), row(1, 1, 10), row(1, 0, 10), row(3, 0, 20)];
        in_time_order(&mut rows);
        let order: Vec<&str> = rows.iter().map(|r| r.line.line.as_str()).collect();
        assert_eq!(order, vec!["1.0", "1.1", "3.0", "2.0"]);
    }

    #[test]
    fn a_line_stored_twice_is_shown_once() {
        let row = |chunk, instance: &str, ts| {
            super::super::fixtures::log_row(chunk, 0, instance, ts, "l")
        };
        let mut rows = vec![
            row(1, "shop-a", 1),
            row(2, "shop-a", 1),
            row(2, "shop-b", 1),
        ];
        without_copies(&mut rows);
        assert_eq!(
            rows.iter().map(|r| r.chunk).collect::<Vec<_>>(),
            vec![1, 2],
            "shop-a's copy in chunk 2 dropped, shop-b's line kept"
        );
    }
}
