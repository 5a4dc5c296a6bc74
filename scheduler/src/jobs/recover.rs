//! The leader's sweep over jobs, every `--job-heartbeat-secs`: nothing a dead scheduler ran is
//! left behind.
//!
//! - A job whose runner's heartbeat is older than `--job-stale-secs` is taken over (one
//!   scheduler wins the row). If its container still runs, this process attaches to it again
//!   (output from then on; no stdin) and drives it to its end under what is left of its
//!   timeout. If it exited meanwhile, its exit code is recorded. If it is gone, or never
//!   started, the job fails with the reason. Its claim is released in every case.
//! - A workflow whose runner died cannot be resumed (the runner was its pipe): every step is
//!   stopped, the workflow fails (see `workflows::recover`).
//! - Ended jobs that still note a claim, and claims whose job no longer notes them, are
//!   released.
//! - Jobs that ended more than `--jobs-keep-hours` ago are deleted.

use super::live::{Kind, LiveJob, LiveOutput};
use super::output::OutputTail;
use super::run::{job_end, Launched};
use super::view::job_ref;
use super::Jobs;
use crate::engine::EngineRef;
use crate::error::{Error, Result};
use crate::placement;
use crate::store::RunTable;
use crate::store::{HostRow, JobEnd, JobRow};
use caas_deployer::{ContainerState, TaskEnd, TaskExit};
use caas_types::api::JobState;
use caas_types::{labels, ContainerId};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Sweeps between two retention passes.
const PURGE_EVERY: u32 = 30;

impl Jobs {
    /// Sweeps every `--job-heartbeat-secs` until `stop` completes (the leadership ended).
    pub async fn run_sweeps(self: Arc<Self>, stop: impl Future<Output = ()>) {
        let every = Duration::from_secs(self.config.job_heartbeat_secs.max(1));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        let mut n: u32 = 0;
        loop {
            tokio::select! {
                () = &mut stop => return,
                _ = tick.tick() => {
                    if let Err(e) = self.sweep(n % PURGE_EVERY == 0).await {
                        tracing::warn!(error = %e, "jobs sweep failed");
                    }
                    n = n.wrapping_add(1);
                }
            }
        }
    }

    /// One sweep; `purge` also deletes jobs past their keep time.
    pub async fn sweep(self: &Arc<Self>, purge: bool) -> Result<()> {
        for row in self.store.stale_jobs(self.config.job_stale_secs).await? {
            let id = row.id;
            if self.live.get(Kind::Job, id).is_some() {
                // This process runs it: slow, not dead (its heartbeat write may have failed).
                continue;
            }
            if let Err(e) = self.adopt(row).await {
                tracing::warn!(job = %job_ref(id), error = %e, "could not adopt a job");
            }
        }
        self.recover_workflows().await?;
        for row in self.store.ended_jobs_with_claims().await? {
            if let Some(claim) = &row.instance_id {
                // Its runner may be releasing it right now: leave it the heartbeat's time.
                if row.finished_at.is_some_and(|f| {
                    caas_types::Timestamp::now().as_secs() - f.as_secs()
                        < i64::try_from(self.config.job_heartbeat_secs).unwrap_or(2)
                }) {
                    continue;
                }
                self.release_claim(row.id, claim).await;
            }
        }
        for claim in self.store.orphan_job_claims().await? {
            match placement::release(&self.store, &claim).await {
                Ok(()) | Err(Error::NotFound(_)) => {
                    tracing::info!(%claim, "released a job claim its job no longer holds")
                }
                Err(e) => {
                    tracing::warn!(%claim, error = %e, "could not release an orphan job claim")
                }
            }
        }
        if purge {
            let keep = self.config.jobs_keep_hours.saturating_mul(3600);
            let jobs = self.store.purge_jobs(keep).await?;
            let workflows = self.store.purge_workflows(keep).await?;
            if jobs + workflows > 0 {
                tracing::info!(
                    jobs,
                    workflows,
                    "deleted jobs and workflows past their keep time"
                );
            }
        }
        Ok(())
    }

    /// Takes over a job whose runner stopped, and attaches to it, records its exit, or fails
    /// it, as its container's state says.
    async fn adopt(self: &Arc<Self>, row: JobRow) -> Result<()> {
        if !self
            .store
            .take_over(RunTable::Jobs, row.id, row.runner.as_deref(), &self.runner)
            .await?
        {
            return Ok(());
        }
        tracing::info!(job = %job_ref(row.id), from = ?row.runner, "adopting a job whose scheduler stopped");
        super::metrics::JobMetrics::inc(&self.metrics.adopted);
        let host = match row.host_id {
            Some(h) => Some(self.lifecycle.engine_of(h).await?),
            None => None,
        };
        let Some(container) = row.container_id.clone() else {
            if let Some((host, engine)) = &host {
                self.remove_job_containers(&row, host, engine).await;
            }
            return self
                .end_unattended(
                    &row,
                    None,
                    "its scheduler stopped before its container started",
                )
                .await;
        };
        let Some((host, engine)) = host else {
            return self
                .end_unattended(&row, None, "it has a container but no host")
                .await;
        };
        match engine.inspect(&container).await {
            Ok(s) if matches!(s.state, ContainerState::Running | ContainerState::Paused) => {
                self.reattach(row, host, engine, container).await
            }
            Ok(s) => {
                let exit = Ok(TaskExit {
                    end: TaskEnd::Exited,
                    exit_code: s.exit_code,
                    oom_killed: s.oom_killed,
                    removed: false,
                });
                if let Err(e) = engine.remove(&container).await {
                    tracing::warn!(job = %job_ref(row.id), error = %e, "could not remove an adopted job's container");
                }
                let end = job_end(&exit, row.timeout_s);
                self.record_unattended(&row, end).await
            }
            Err(caas_deployer::Error::ContainerNotFound(_)) => {
                self.end_unattended(
                    &row,
                    None,
                    "its container is gone (removed while its scheduler was stopped)",
                )
                .await
            }
            Err(e) => Err(Error::engine(&host.name, e)),
        }
    }

    /// Attaches to an adopted job's running container and drives it to its end.
    async fn reattach(
        self: &Arc<Self>,
        row: JobRow,
        host: HostRow,
        engine: EngineRef,
        container: ContainerId,
    ) -> Result<()> {
        let task = engine
            .attach_task(&container)
            .await
            .map_err(|e| Error::engine(&host.name, e))?;
        let stored = self.store.stored_output(RunTable::Jobs, row.id).await?;
        let tail = OutputTail::resume(self.keep_bytes(), &stored.bytes, stored.written);
        let live = LiveJob::new(LiveOutput::resume(tail), None);
        self.live.insert(Kind::Job, row.id, live.clone());
        let ran = row
            .started_at
            .map(|s| (caas_types::Timestamp::now().as_secs() - s.as_secs()).max(0))
            .unwrap_or(0);
        let left = (row.timeout_s - ran).max(1);
        if row.instance_id.is_none() {
            // Its claim went already; it is driven to its end all the same (which then
            // releases nothing), never dropped with its container and its live entry.
            tracing::warn!(job = %job_ref(row.id), "an adopted job holds no claim");
        }
        let launched = Launched {
            task,
            host,
            claim: row.instance_id.clone(),
        };
        let timeout = Duration::from_secs(u64::try_from(left).unwrap_or(1));
        tokio::spawn(self.clone().drive(row, launched, live, timeout));
        Ok(())
    }

    /// Removes whatever container of `row` is on its host (a create whose id was never
    /// recorded).
    async fn remove_job_containers(&self, row: &JobRow, host: &HostRow, engine: &EngineRef) {
        let job = job_ref(row.id);
        let filter = [
            (labels::MANAGED, self.config.namespace.as_str()),
            (labels::JOB, job.as_str()),
        ];
        match engine.list(&filter).await {
            Ok(found) => {
                for c in found {
                    if let Err(e) = engine.remove(&c.id).await {
                        tracing::warn!(%job, host = %host.name, error = %e, "could not remove a job's container");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(%job, host = %host.name, error = %e, "could not list a job's containers")
            }
        }
    }

    /// Fails an adopted job that cannot go on, with `reason`.
    async fn end_unattended(
        &self,
        row: &JobRow,
        exit_code: Option<i64>,
        reason: &str,
    ) -> Result<()> {
        let end = JobEnd {
            state: JobState::Failed,
            exit_code,
            reason: Some(reason.to_owned()),
        };
        self.record_unattended(row, end).await
    }

    /// Records the end of an adopted job that is not running any more, and releases its claim.
    async fn record_unattended(&self, row: &JobRow, end: JobEnd) -> Result<()> {
        let stored = self.store.stored_output(RunTable::Jobs, row.id).await?;
        self.store
            .finish_run(
                RunTable::Jobs,
                row.id,
                &self.runner,
                &end,
                (&stored.bytes, stored.written),
            )
            .await?;
        if let Some(claim) = &row.instance_id {
            self.release_claim(row.id, claim).await;
        }
        tracing::info!(job = %job_ref(row.id), state = end.state.as_str(), reason = ?end.reason, "recorded an adopted job's end");
        self.emit_finished(row, &end, row.host.as_ref()).await;
        Ok(())
    }
}
