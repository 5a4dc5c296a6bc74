//! The reading side: [`LogFeed`], an app's lines as the logs API streams them (NDJSON, one
//! [`caas_types::api::LogLine`] per line). History comes from the table in time order; with
//! `follow`, the feed then reads the chunks stored after the last one it read (by chunk `id`,
//! the order the collector's one writer commits in), so any scheduler serving the API can
//! follow, whichever one leads and collects, and a follow lasts across deploys: it reads the
//! app's lines, not one instance's. On the leader a commit wakes the follow at once; elsewhere
//! it polls every [`POLL`]. A follow that finds a full page reads the next one at once, so it
//! keeps up with any rate the writer does. Each line is sent once: a copy that an old and a
//! new leader both stored is dropped ([`super::plan::Sent`]). (In the moment an old and a new
//! leader both write, ids may commit out of order and a follow can skip a line there; the
//! history still has it.)

use super::plan::Sent;
use super::query::LogQuery;
use crate::error::Result;
use crate::store::{in_time_order, LogRow, Store};
use axum::body::Bytes;
use caas_types::AppId;
use futures::Stream;
use std::time::Duration;
use tokio::sync::watch;

/// How often a follow looks for new lines when nothing wakes it (on a scheduler that is not
/// the leader, the collector's commits are not seen in-process).
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
    /// Changes when this process's collector commits lines: a follow reads at once.
    written: watch::Receiver<u64>,
}

impl LogFeed {
    /// Reads the history (before anything is answered, so a database failure is an error
    /// status rather than a cut stream).
    /// `closing` turning true ends a follow (the scheduler is shutting down); a change of
    /// `written` makes it read new lines before its next poll.
    pub async fn open(
        store: Store,
        app: AppId,
        query: LogQuery,
        closing: watch::Receiver<bool>,
        written: watch::Receiver<u64>,
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
            written,
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
            written,
        } = self;
        let first = (!history.is_empty()).then(|| ndjson(&history));
        let mut sent = Sent::default();
        sent.keep_new(&mut history.clone());
        let state = Follow {
            store,
            app,
            query,
            cursor,
            polls: 0,
            behind: false,
            sent,
            first,
            closing,
            written,
        };
        futures::stream::unfold(state, |mut s| async move {
            if let Some(first) = s.first.take() {
                return Some((Ok(first), s));
            }
            if !s.query.follow {
                return None;
            }
            loop {
                if !s.behind {
                    tokio::select! {
                        _ = tokio::time::sleep(POLL) => {}
                        // A closed sender (no collector in this process) leaves the poll.
                        Ok(()) = s.written.changed() => {}
                        _ = s.closing.wait_for(|c| *c) => return None,
                    }
                } else if *s.closing.borrow() {
                    return None;
                }
                s.polls = s.polls.wrapping_add(1);
                if s.polls % EXISTS_EVERY == 0 && !s.app_exists().await {
                    return None;
                }
                match s.store.logs_after(&s.app, s.cursor, PAGE_CHUNKS).await {
                    Ok(page) => {
                        s.cursor = page.last;
                        s.behind = page.full;
                        let mut rows = page.lines;
                        rows.retain(|r| s.query.since.is_none_or(|t| r.line.ts >= t));
                        in_time_order(&mut rows);
                        s.sent.keep_new(&mut rows);
                        if rows.is_empty() {
                            continue;
                        }
                        return Some((Ok(ndjson(&rows)), s));
                    }
                    // The database may come back: the follow waits rather than ends.
                    Err(e) => {
                        s.behind = false;
                        tracing::warn!(app = %s.app, error = %e, "log follow poll failed");
                    }
                }
            }
        })
    }
}

struct Follow {
    store: Store,
    app: AppId,
    query: LogQuery,
    cursor: i64,
    polls: u32,
    /// The last page was full: read the next at once.
    behind: bool,
    sent: Sent,
    first: Option<Bytes>,
    closing: watch::Receiver<bool>,
    written: watch::Receiver<u64>,
}

impl Follow {
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
