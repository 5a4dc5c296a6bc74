//! The reading side: [`LogFeed`], an app's lines as the logs API streams them (NDJSON, one
//! [`caas_types::api::LogLine`] per line). History comes from the table in time order; with
//! `follow`, the feed sends the chunks stored after the last one it covered (by chunk `id`, the
//! order the collector's one writer commits in), so a follow lasts across deploys: it reads
//! the app's lines, not one instance's. On the leader, each commit's chunks come from the
//! writer itself (`ControlPlane::logs_live`, with their ids) and are sent at once without
//! reading the table, as long as they follow on from what the feed covered; any gap (a follow
//! that fell behind, a commit whose ids are unknown) and every [`POLL`] on other schedulers,
//! it reads the table instead, a page after another without waiting while pages come full. Each line is sent once: a copy that an old and a
//! new leader both stored is dropped ([`super::plan::Sent`]). (In the moment an old and a new
//! leader both write, ids may commit out of order and a follow can skip a line there; the
//! history still has it.)

use super::plan::Sent;
use super::query::LogQuery;
use crate::error::Result;
use crate::store::{in_time_order, LogRow, Store, StoredBatch};
use axum::body::Bytes;
use caas_types::AppId;
use futures::Stream;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::watch;

/// How often a follow reads the table (on a scheduler that is not the leader, the collector's
/// commits are not seen in-process).
pub const POLL: Duration = Duration::from_millis(100);
/// Most chunks read per page (a follower behind by more reads the next page at once).
const PAGE_CHUNKS: u32 = 256;
/// Every this many polls, a follow checks that its app still exists, and ends if not.
const EXISTS_EVERY: u32 = 50;

/// An app's lines from a query: the history first, then (with `follow`) new lines.
#[derive(Debug)]
pub struct LogFeed {
    store: Store,
    app: AppId,
    query: LogQuery,
    history: Vec<LogRow>,
    /// The largest chunk id already covered: new lines are those of later chunks.
    cursor: i64,
    /// True once the scheduler shuts down: a follow ends.
    closing: watch::Receiver<bool>,
    /// What this process's collector stores, as it commits.
    live: broadcast::Receiver<Arc<StoredBatch>>,
}

impl LogFeed {
    /// Reads the history (before anything is answered, so a database failure is an error
    /// status rather than a cut stream).
    /// `closing` turning true ends a follow (the scheduler is shutting down); `live` (taken
    /// before anything is read, so no commit falls between) brings this process's commits.
    pub async fn open(
        store: Store,
        app: AppId,
        query: LogQuery,
        closing: watch::Receiver<bool>,
        live: broadcast::Receiver<Arc<StoredBatch>>,
    ) -> Result<LogFeed> {
        // Read the newest id first: lines committed in between are either in the history or
        // after the cursor, never skipped (the writer commits in id order).
        let before = store.log_max_id(&app).await?;
        let history = if query.tail == 0 {
            Vec::new()
        } else {
            store.log_tail(&app, query.since, query.tail).await?
        };
        let cursor = history
            .iter()
            .map(|r| r.chunk)
            .max()
            .unwrap_or(0)
            .max(before);
        Ok(LogFeed {
            store,
            app,
            query,
            history,
            cursor,
            closing,
            live,
        })
    }

    /// The NDJSON body: the history, then new lines until the client goes away (the body is
    /// dropped), the app is deleted or the scheduler shuts down. Without `follow`, only the
    /// history.
    pub fn into_stream(self) -> impl Stream<Item = std::result::Result<Bytes, std::io::Error>> {
        let LogFeed {
            store,
            app,
            query,
            history,
            cursor,
            closing,
            live,
        } = self;
        let first = (!history.is_empty()).then(|| ndjson(&history));
        let mut sent = Sent::default();
        sent.keep_new(&mut history.clone());
        let state = Follow {
            store,
            app,
            query,
            cursor,
            known: cursor,
            polls: 0,
            behind: false,
            sent,
            first,
            closing,
            live: Some(live),
        };
        futures::stream::unfold(state, |mut s| async move {
            if let Some(first) = s.first.take() {
                return Some((Ok(first), s));
            }
            if !s.query.follow {
                return None;
            }
            loop {
                let rows = if s.behind {
                    if *s.closing.borrow() {
                        return None;
                    }
                    s.read_table().await
                } else {
                    let wake = tokio::select! {
                        _ = tokio::time::sleep(POLL) => Wake::Tick,
                        got = recv(&mut s.live) => Wake::Live(got),
                        _ = s.closing.wait_for(|c| *c) => return None,
                    };
                    match wake {
                        Wake::Tick => {
                            s.polls = s.polls.wrapping_add(1);
                            if s.polls % EXISTS_EVERY == 0 && !s.app_exists().await {
                                return None;
                            }
                            s.read_table().await
                        }
                        Wake::Live(Some(batch)) => match s.take(&batch) {
                            Some(rows) => rows,
                            None => s.read_table().await,
                        },
                        // Fell behind the live commits: the table has them.
                        Wake::Live(None) => s.read_table().await,
                    }
                };
                let mut rows = rows;
                rows.retain(|r| s.query.since.is_none_or(|t| r.line.ts >= t));
                in_time_order(&mut rows);
                s.sent.keep_new(&mut rows);
                if !rows.is_empty() {
                    return Some((Ok(ndjson(&rows)), s));
                }
            }
        })
    }
}

/// What woke a follow.
enum Wake {
    /// [`POLL`] passed.
    Tick,
    /// A commit of this process's collector (`None`: some were missed).
    Live(Option<Arc<StoredBatch>>),
}

/// The next commit of this process's collector; `None` when some were missed (the follow fell
/// behind). Never ends if the channel is closed (no collector will publish again).
async fn recv(
    live: &mut Option<broadcast::Receiver<Arc<StoredBatch>>>,
) -> Option<Arc<StoredBatch>> {
    let Some(rx) = live else {
        return std::future::pending().await;
    };
    match rx.recv().await {
        Ok(batch) => Some(batch),
        Err(RecvError::Lagged(_)) => None,
        Err(RecvError::Closed) => {
            *live = None;
            std::future::pending().await
        }
    }
}

struct Follow {
    store: Store,
    app: AppId,
    query: LogQuery,
    /// Every chunk up to this id is covered (sent, or not of this app).
    cursor: i64,
    /// The last chunk id of the newest commit heard of live: committed, so a read of the
    /// table that comes back short covers up to it.
    known: i64,
    polls: u32,
    /// The last page was full: read the next at once.
    behind: bool,
    sent: Sent,
    first: Option<Bytes>,
    closing: watch::Receiver<bool>,
    /// `None` once the channel closed.
    live: Option<broadcast::Receiver<Arc<StoredBatch>>>,
}

impl Follow {
    /// This app's lines of a live commit, if it follows on from what is covered (`None`: a
    /// gap or unknown ids, read the table).
    fn take(&mut self, batch: &StoredBatch) -> Option<Vec<LogRow>> {
        let (first, last) = batch.ids()?;
        self.known = self.known.max(last);
        if first > self.cursor + 1 {
            return None;
        }
        let rows = batch
            .chunks
            .iter()
            .flatten()
            .filter(|c| c.id > self.cursor && c.app == self.app)
            .flat_map(|c| c.lines.iter().cloned())
            .collect();
        self.cursor = self.cursor.max(last);
        Some(rows)
    }

    /// The next page of this app's chunks after the cursor, from the table.
    async fn read_table(&mut self) -> Vec<LogRow> {
        match self
            .store
            .logs_after(&self.app, self.cursor, PAGE_CHUNKS)
            .await
        {
            Ok(page) => {
                self.behind = page.full;
                self.cursor = if page.full {
                    page.last
                } else {
                    // Every commit heard of before this read is in it.
                    page.last.max(self.known)
                };
                page.lines
            }
            // The database may come back: the follow waits rather than ends.
            Err(e) => {
                self.behind = false;
                tracing::warn!(app = %self.app, error = %e, "log follow poll failed");
                Vec::new()
            }
        }
    }

    async fn app_exists(&self) -> bool {
        !matches!(
            self.store.get_app(&self.app).await,
            Err(crate::Error::NotFound(_))
        )
    }
}

/// Rows as NDJSON, one object per line.
fn ndjson(rows: &[LogRow]) -> Bytes {
    let mut out = Vec::with_capacity(rows.len() * 128);
    for r in rows {
        // A LogLine is strings and a timestamp: serializing it cannot fail.
        if serde_json::to_writer(&mut out, &r.line).is_ok() {
            out.push(b'\n');
        }
    }
    Bytes::from(out)
}
