//! Schedules at work: the API's part (create with checks, list with next due time and last
//! runs, delete) and the leader's tick, which asks [`super::plan::decide`] about every schedule
//! and lets the database decide which scheduler handles a due time
//! (`Store::claim_due_time`: one row per schedule and due time).

use super::cron::CronExpr;
use super::plan::{decide, Decision, SkipReason};
use crate::error::{Error, Result};
use crate::jobs::metrics::JobMetrics;
use crate::jobs::{validate, view, Jobs};
use crate::store::{RunOutcome, ScheduleRow, Store};
use caas_types::api::{self, Concurrency, CreateSchedule};
use caas_types::{AppId, Timestamp};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// How often the leader looks for due schedules: under a second, for 6-field expressions.
pub const TICK: Duration = Duration::from_millis(500);
/// Runs shown with each schedule.
const LAST_RUNS: u32 = 5;
/// Longest schedule name.
const MAX_NAME: usize = 63;

/// An app's schedules, and the leader's tick over all of them.
#[derive(Debug)]
pub struct Schedules {
    store: Store,
    jobs: Arc<Jobs>,
}

/// Checks a schedule name: 1 to 63 of `a-z`, `0-9`, `-`, `_`, `.`, starting with a letter or
/// digit (it is a path segment of the API).
fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "name: 1 to {MAX_NAME} of a-z, 0-9, '-', '_', '.', starting with a letter or digit"
        )))
    }
}

impl Schedules {
    /// Schedules over the store, starting their runs through `jobs`.
    pub fn new(store: Store, jobs: Arc<Jobs>) -> Schedules {
        Schedules { store, jobs }
    }

    /// `POST /v1/apps/{app}/schedules`: checks the name, the cron expression (400 naming the
    /// field), the job (400) and its version (422 when the registry lacks it), then records it.
    pub async fn create(&self, app: &AppId, req: &CreateSchedule) -> Result<api::Schedule> {
        check_name(&req.name)?;
        let cron = CronExpr::parse(&req.cron).map_err(Error::Invalid)?;
        validate::command_and_env("job.", &req.job.command, &req.job.env)?;
        validate::timeout("job.", req.job.timeout_s)?;
        validate::resources("job.", req.job.memory_mb, req.job.cpus)?;
        self.jobs.pin(app, &req.job.version).await?;
        let row = self
            .store
            .insert_schedule(app, &req.name, cron.as_str(), &req.job, req.concurrency)
            .await?;
        tracing::info!(%app, name = %row.name, cron = %row.cron, "schedule added");
        self.view(&row).await
    }

    /// An app's schedules, each with its next due time and latest runs.
    pub async fn list(&self, app: &AppId) -> Result<Vec<api::Schedule>> {
        let mut out = Vec::new();
        for row in self.store.list_schedules(Some(app)).await? {
            out.push(self.view(&row).await?);
        }
        Ok(out)
    }

    /// Deletes a schedule (its past runs stay in the app's jobs).
    pub async fn delete(&self, app: &AppId, name: &str) -> Result<()> {
        self.store.delete_schedule(app, name).await
    }

    async fn view(&self, row: &ScheduleRow) -> Result<api::Schedule> {
        let next_run_at = CronExpr::parse(&row.cron)
            .ok()
            .and_then(|c| c.next_after(Timestamp::now()));
        let last_runs = self
            .store
            .list_schedule_runs(row.id, LAST_RUNS)
            .await?
            .iter()
            .map(view::job)
            .collect();
        Ok(api::Schedule {
            name: row.name.clone(),
            cron: row.cron.clone(),
            job: row.job.clone(),
            concurrency: row.concurrency,
            next_run_at,
            last_runs,
            created_at: row.created_at,
        })
    }

    /// Ticks every [`TICK`] until `stop` completes (the leadership ended).
    pub async fn run(self: Arc<Self>, stop: impl Future<Output = ()>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                _ = tick.tick() => {
                    if let Err(e) = self.tick(Timestamp::now()).await {
                        tracing::warn!(error = %e, "schedules tick failed");
                    }
                }
            }
        }
    }

    /// One look at every schedule at `now`: a due time is handled by whichever scheduler
    /// records it first; that one starts its run in a task of its own (or records why not).
    /// Returns how many runs this call claimed.
    pub async fn tick(&self, now: Timestamp) -> Result<usize> {
        let mut started = 0;
        for s in self.store.list_schedules(None).await? {
            let Ok(cron) = CronExpr::parse(&s.cron) else {
                tracing::warn!(app = %s.app, name = %s.name, "a stored schedule's cron no longer parses");
                continue;
            };
            let handled = s.handled.unwrap_or(s.created_at);
            let forbid = s.concurrency == Concurrency::Forbid;
            match decide(&cron, handled, now, s.busy, forbid) {
                Decision::Wait => {}
                Decision::Skip(due, why) => {
                    let outcome = match why {
                        SkipReason::Late => RunOutcome::SkippedLate,
                        SkipReason::StillRunning => RunOutcome::SkippedBusy,
                    };
                    if self.store.claim_due_time(s.id, due, outcome).await? {
                        JobMetrics::inc(&self.jobs.metrics.schedule_skipped);
                        tracing::info!(app = %s.app, name = %s.name, %due, ?why, "schedule skipped a due time");
                    }
                }
                Decision::Run(due) => {
                    if !self
                        .store
                        .claim_due_time(s.id, due, RunOutcome::Started)
                        .await?
                    {
                        continue;
                    }
                    // This scheduler handles the due time; the start runs on its own so one
                    // slow start does not hold the other schedules' due times back.
                    started += 1;
                    let (jobs, store) = (self.jobs.clone(), self.store.clone());
                    tokio::spawn(async move {
                        let run = jobs.start_job(&s.app, &s.job, Some(s.id)).await;
                        let (job, outcome) = match &run {
                            Ok(job) => {
                                JobMetrics::inc(&jobs.metrics.schedule_started);
                                tracing::info!(app = %s.app, name = %s.name, %due, job = %view::job_ref(job.id), "schedule started a run");
                                (Some(job.id), RunOutcome::Started)
                            }
                            Err(e) => {
                                JobMetrics::inc(&jobs.metrics.schedule_failed);
                                tracing::warn!(app = %s.app, name = %s.name, %due, error = %e, "a schedule's run could not start");
                                (None, RunOutcome::Failed)
                            }
                        };
                        if let Err(e) = store.set_due_time_run(s.id, due, job, outcome).await {
                            tracing::warn!(app = %s.app, name = %s.name, error = %e, "could not record a schedule's run");
                        }
                    });
                }
            }
        }
        Ok(started)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_names_are_path_segments() {
        for ok in ["nightly", "a", "backup-db_2.x", "9am"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Nightly", "-x", "a/b", "..", "a b", &"x".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
