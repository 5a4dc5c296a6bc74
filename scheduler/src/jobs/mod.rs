//! Jobs: containers of an app that run to completion (brief, part 2, "Jobs"), and the parts
//! workflows and schedules build on.
//!
//! A job is recorded (`pending`), claimed like an instance (an `instances` row owned by the
//! job: memory and CPU, no host port), its image pinned by digest and pulled, its container
//! started with its streams attached ([`caas_deployer::Task`]); the create call answers once
//! the container runs, and any failure before that leaves nothing (no claim, no container, no
//! row). A driver task on this process then copies the output into a bounded tail, refreshes
//! the job's heartbeat (and stored output) every `--job-heartbeat-secs`, waits for the exit
//! under the job's timeout and cancel switch, records the end, releases the claim and emits
//! `job.finished`. If this process dies, the leader's sweep ([`recover`]) adopts the job once
//! its heartbeat is older than `--job-stale-secs`.
//!
//! - [`output`]: the last bytes a job keeps.
//! - [`metrics`]: counters for `/metrics`.
//! - [`live`]: what this process holds of the jobs it runs (output followers, stdin, cancel).
//! - [`validate`]: request checks shared with workflow steps.
//! - [`run`]: launch (claim → pull → start) and drive (→ end → release).
//! - [`recover`]: the leader's sweep (adoption, leftovers, retention).
//! - [`view`]: the API's shapes and ids.

pub mod live;
pub mod metrics;
pub mod output;
pub mod recover;
pub mod run;
pub mod validate;
pub mod view;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::events::Events;
use crate::image_digest::ImageDigests;
use crate::lifecycle::Lifecycle;
use crate::store::RunTable;
use crate::store::{JobRow, Store};
use bytes::Bytes;
use caas_deployer::TaskStdin;
use caas_types::api::CreateJob;
use caas_types::AppId;
use futures::stream::BoxStream;
use futures::StreamExt;
use live::{Kind, Live};
use std::sync::Arc;
use std::time::Duration;

pub use view::{job_ref, parse_job_ref};

/// Jobs per page of a list when `limit` is not given.
pub const DEFAULT_PAGE: u32 = 50;
/// Most jobs per page.
pub const MAX_PAGE: u32 = 500;
/// How often a follower on another process than the runner reads the stored output.
const STORED_POLL: Duration = Duration::from_millis(300);
/// How long a `DELETE` of a running job waits for it to end before answering.
const CANCEL_WAIT: Duration = Duration::from_secs(15);

/// Starts, drives, shows and cancels jobs.
#[derive(Debug)]
pub struct Jobs {
    pub(crate) config: Arc<Config>,
    pub(crate) store: Store,
    pub(crate) lifecycle: Arc<Lifecycle>,
    pub(crate) digests: ImageDigests,
    pub(crate) events: Events,
    /// The jobs and workflows this process runs.
    pub live: Live,
    /// Counters for `/metrics`.
    pub metrics: metrics::JobMetrics,
    /// This process's runner id (written into the rows it runs).
    pub runner: String,
}

impl Jobs {
    /// Jobs over these handles; `runner` names this process in the rows it runs.
    pub fn new(
        config: Arc<Config>,
        store: Store,
        lifecycle: Arc<Lifecycle>,
        events: Events,
    ) -> Arc<Jobs> {
        let runner = format!(
            "{}-{}-{:08x}",
            std::process::id(),
            chrono::Utc::now().timestamp(),
            crate::placement::random::next_u64() & 0xffff_ffff
        );
        Arc::new(Jobs {
            digests: ImageDigests::new(&config),
            config,
            store,
            lifecycle,
            events,
            live: Live::default(),
            metrics: metrics::JobMetrics::default(),
            runner,
        })
    }

    /// Bytes of output kept per stream.
    pub fn keep_bytes(&self) -> usize {
        usize::try_from(self.config.job_output_keep_bytes).unwrap_or(output::DEFAULT_KEEP_BYTES)
    }

    /// `POST /v1/apps/{app}/jobs`: starts a job and returns it once its container runs.
    pub async fn create(self: &Arc<Self>, app: &AppId, req: &CreateJob) -> Result<JobRow> {
        self.start_job(app, req, None).await
    }

    /// One job of `app` (not a workflow step: those are their workflow's).
    pub async fn get(&self, app: &AppId, id: i64) -> Result<JobRow> {
        let row = self.store.get_job(id).await?;
        if &row.app != app || row.workflow_id.is_some() {
            return Err(Error::NotFound(format!("job {} of app {app}", job_ref(id))));
        }
        Ok(row)
    }

    /// `app`'s jobs, newest first.
    pub async fn list(
        &self,
        app: &AppId,
        limit: Option<u32>,
        before: Option<&str>,
    ) -> Result<Vec<JobRow>> {
        let limit = limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(Error::Invalid(format!(
                "limit: must be between 1 and {MAX_PAGE}"
            )));
        }
        let before = before
            .map(|b| {
                parse_job_ref(b)
                    .ok_or_else(|| Error::Invalid(format!("before: {b:?} is not a job id (j-N)")))
            })
            .transpose()?;
        self.store.list_jobs(app, limit, before).await
    }

    /// `DELETE`: cancels a running job and returns it once it ended (`Some`), or forgets a
    /// finished one (`None`).
    pub async fn cancel_or_forget(&self, app: &AppId, id: i64) -> Result<Option<JobRow>> {
        let row = self.get(app, id).await?;
        if row.state.is_final() {
            self.store.delete_job(id).await?;
            return Ok(None);
        }
        self.store.request_cancel(RunTable::Jobs, id).await?;
        if let Some(live) = self.live.get(Kind::Job, id) {
            live.cancel.cancel();
            // Bounded: the driver kills the container at once.
            let _ = tokio::time::timeout(CANCEL_WAIT, live.ended()).await;
        } else {
            // Its runner sees the flag at its next heartbeat.
            let deadline = tokio::time::Instant::now() + CANCEL_WAIT;
            while tokio::time::Instant::now() < deadline {
                if self.store.get_job(id).await?.state.is_final() {
                    break;
                }
                tokio::time::sleep(STORED_POLL).await;
            }
        }
        self.store.get_job(id).await.map(Some)
    }

    /// The output of a job of `app`: what is kept, then with `follow` what comes until it ends.
    pub async fn output(
        &self,
        app: &AppId,
        id: i64,
        follow: bool,
    ) -> Result<BoxStream<'static, std::io::Result<Bytes>>> {
        self.get(app, id).await?;
        if let Some(live) = self.live.get(Kind::Job, id) {
            return Ok(live.output.clone().follow(follow).boxed());
        }
        let store = self.store.clone();
        Ok(follow_stored(follow, move || {
            let store = store.clone();
            async move { store.stored_output(RunTable::Jobs, id).await }
        }))
    }

    /// The stdin of a running job of `app` this process runs, for a `PUT .../stdin` (once).
    pub async fn take_stdin(&self, app: &AppId, id: i64) -> Result<TaskStdin> {
        let row = self.get(app, id).await?;
        if !row.stdin {
            return Err(Error::Conflict(format!(
                "job {} was created without \"stdin\": true; it reads no input",
                job_ref(id)
            )));
        }
        if row.state.is_final() {
            return Err(Error::Conflict(format!("job {} has ended", job_ref(id))));
        }
        let live = self.live.get(Kind::Job, id).ok_or_else(|| {
            Error::Conflict(format!(
                "job {} is run by another scheduler ({}); send its stdin there",
                job_ref(id),
                row.runner.as_deref().unwrap_or("unknown")
            ))
        })?;
        live.take_stdin()
            .ok_or_else(|| Error::Conflict(format!("job {}'s stdin was sent already", job_ref(id))))
    }
}

/// Streams a stored output: what is kept, then (with `follow`) what the runner stores at its
/// heartbeats, until the row is final. `read` reads the row's output.
pub(crate) fn follow_stored<F, Fut>(
    follow: bool,
    read: F,
) -> BoxStream<'static, std::io::Result<Bytes>>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<crate::store::StoredOutput>> + Send,
{
    futures::stream::unfold(
        (read, 0u64, false),
        move |(read, offset, ended)| async move {
            if ended {
                return None;
            }
            loop {
                let out = match read().await {
                    Ok(out) => out,
                    Err(e) => {
                        return Some((
                            Err(std::io::Error::other(e.to_string())),
                            (read, offset, true),
                        ))
                    }
                };
                let start = out.written.saturating_sub(out.bytes.len() as u64);
                let from = offset.max(start);
                let skip = usize::try_from(from - start).unwrap_or(usize::MAX);
                let fresh = out.bytes.get(skip..).unwrap_or_default();
                let end = out.done || !follow;
                if !fresh.is_empty() {
                    let next = out.written;
                    return Some((Ok(Bytes::copy_from_slice(fresh)), (read, next, end)));
                }
                if end {
                    return None;
                }
                tokio::time::sleep(STORED_POLL).await;
            }
        },
    )
    .boxed()
}
