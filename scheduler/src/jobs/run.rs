//! A job's run on this process: [`Jobs::launch`] (claim → pull → start, everything undone on
//! failure) and [`Jobs::drive`] (copy output, heartbeat, wait under the timeout and the cancel
//! switch, record the end, release the claim, emit `job.finished`). Workflow steps launch the
//! same way; their pipeline is driven by `workflows`.

use super::live::{Kind, LiveJob, LiveOutput};
use super::view::job_ref;
use super::{validate, Jobs};
use crate::error::{Error, Result};
use crate::events::EventType;
use crate::image_digest::pinned_reference;
use crate::placement::{self, Owner, PlacementRequest};
use crate::progress::Progress;
use crate::store::RunTable;
use crate::store::{HostRow, JobEnd, JobRow, NewJob};
use caas_deployer::{Task, TaskEnd, TaskExit, TaskOutput, TaskSpec};
use caas_types::api::{CreateJob, JobState};
use caas_types::{labels, AppId, HostName, InstanceId, PlacementPolicy, Resources, Version};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// Bytes read from a container's output at a time.
const READ_CHUNK: usize = 64 * 1024;

/// What one container to launch needs (a job, or a workflow step).
#[derive(Debug, Clone)]
pub(crate) struct Launch<'a> {
    /// The job row's id.
    pub id: i64,
    /// Its app.
    pub app: &'a AppId,
    /// Its image, pinned by digest.
    pub image: &'a str,
    /// Its command.
    pub command: &'a [String],
    /// Its own environment (the app's config goes over it).
    pub env: &'a BTreeMap<String, String>,
    /// Whether its stdin is open.
    pub stdin: bool,
    /// What it claims.
    pub resources: Resources,
}

/// A launched container: its task (streams not taken yet), host and claim.
#[derive(Debug)]
pub(crate) struct Launched {
    /// The task.
    pub task: Task,
    /// Its host.
    pub host: HostRow,
    /// Its claim (`None`: an adopted job whose claim went already).
    pub claim: Option<InstanceId>,
}

impl Jobs {
    /// Checks `req`, pins its image, records the job, launches it and starts its driver.
    /// Every failure leaves nothing behind: no claim, no container, no row.
    pub(crate) async fn start_job(
        self: &Arc<Self>,
        app: &AppId,
        req: &CreateJob,
        schedule_id: Option<i64>,
    ) -> Result<JobRow> {
        validate::command_and_env("", &req.command, &req.env)?;
        validate::timeout("", req.timeout_s)?;
        let resources = validate::resources("", req.memory_mb, req.cpus)?;
        let image = self.pin(app, &req.version).await?;
        let id = self
            .store
            .insert_job(&NewJob {
                app: app.clone(),
                version: req.version.clone(),
                image: image.clone(),
                command: req.command.clone(),
                memory: resources.memory.bytes(),
                cpu: resources.cpus.millis(),
                timeout_s: req.timeout_s,
                stdin: req.stdin,
                step: None,
                schedule_id,
                runner: self.runner.clone(),
            })
            .await?;
        let launch = Launch {
            id,
            app,
            image: &image,
            command: &req.command,
            env: &req.env,
            stdin: req.stdin,
            resources,
        };
        // Live (and heartbeating) from the start: a launch slowed by a busy engine must not
        // look like a dead runner to the leader's sweep.
        let live = LiveJob::new(LiveOutput::new(self.keep_bytes()), None);
        self.live.insert(Kind::Job, id, live.clone());
        let launched = self
            .with_heartbeats(Kind::Job, id, &live, self.launch(&launch))
            .await;
        let mut launched = match launched {
            Ok(l) => l,
            Err(e) => {
                self.live.remove(Kind::Job, id);
                if let Err(d) = self.store.delete_failed_start(id).await {
                    tracing::warn!(job = id, error = %d, "could not delete a job that did not start");
                }
                return Err(e);
            }
        };
        live.set_stdin(launched.task.stdin.take());
        let row = match self.store.get_job(id).await {
            Ok(row) => row,
            Err(e) => {
                // Undo the start: the dropped task removes its container.
                let claim = launched.claim.clone();
                drop(launched);
                if let Some(claim) = &claim {
                    self.release_claim(id, claim).await;
                }
                self.live.remove(Kind::Job, id);
                if let Err(d) = self.store.delete_failed_start(id).await {
                    tracing::warn!(job = id, error = %d, "could not delete a job that did not start");
                }
                return Err(e);
            }
        };
        let timeout = Duration::from_secs(u64::try_from(req.timeout_s).unwrap_or(1));
        tokio::spawn(self.clone().drive(row.clone(), launched, live, timeout));
        Ok(row)
    }

    /// The image reference of `req`'s version, pinned by the digest its tag points to now
    /// (422 `image_not_found` for an unknown version).
    pub(crate) async fn pin(&self, app: &AppId, version: &Version) -> Result<String> {
        let digest = self.digests.resolve(app, version).await?;
        Ok(pinned_reference(self.digests.registry(), app, &digest))
    }

    /// Claims, pulls and starts one container. On failure its claim is released and its
    /// container (if any) removed before the error returns.
    pub(crate) async fn launch(&self, l: &Launch<'_>) -> Result<Launched> {
        let req = PlacementRequest {
            owner: Owner::Job(l.id),
            app: l.app.clone(),
            resources: l.resources,
            count: 1,
            port: false,
            placement: PlacementPolicy::default(),
        };
        let claim = placement::place(&self.store, &req)
            .await?
            .pop()
            .ok_or_else(|| Error::Unplaceable(format!("no host for job {}", job_ref(l.id))))?;
        let started = self.start_claimed(l, claim.host_id, &claim.instance).await;
        match started {
            Ok((task, host)) => Ok(Launched {
                task,
                host,
                claim: Some(claim.instance),
            }),
            Err(e) => {
                self.release_claim(l.id, &claim.instance).await;
                Err(e)
            }
        }
    }

    /// Starts the container of a claimed job or step: notes the claim, pulls, starts, notes
    /// the container. The caller releases the claim on failure.
    pub(crate) async fn start_claimed(
        &self,
        l: &Launch<'_>,
        host_id: i64,
        claim: &InstanceId,
    ) -> Result<(Task, HostRow)> {
        self.store.set_job_claim(l.id, host_id, claim).await?;
        let (host, engine) = self.lifecycle.engine_of(host_id).await?;
        self.lifecycle
            .ensure_image(&host, &engine, l.image, None, &Progress::silent())
            .await?;
        let mut spec = TaskSpec::new(
            &self.config.namespace,
            l.app,
            format!("{}-job-{}", self.config.namespace, l.id),
            l.image.to_owned(),
            l.resources,
        );
        spec.command = l.command.to_vec();
        spec.env = self.lifecycle.app_configs.environment(l.app, l.env).await?;
        spec.stdin = l.stdin;
        spec.nofile = self.config.container_nofile;
        spec.network = self.lifecycle.network_of(l.app).await?;
        spec.labels.insert(labels::JOB.to_owned(), job_ref(l.id));
        spec.labels
            .insert(labels::HOST.to_owned(), host.name.to_string());
        let task = engine
            .start_task(&spec)
            .await
            .map_err(|e| Error::engine(&host.name, e))?;
        self.store
            .set_job_started(l.id, &self.runner, task.id())
            .await?;
        Ok((task, host))
    }

    /// Releases a job's claim and forgets it in the row; a failure is logged and left to the
    /// leader's sweep.
    pub(crate) async fn release_claim(&self, id: i64, claim: &InstanceId) {
        match placement::release(&self.store, claim).await {
            Ok(()) | Err(Error::NotFound(_)) => {
                if let Err(e) = self.store.clear_job_claim(id).await {
                    tracing::warn!(job = id, error = %e, "could not note a job's released claim");
                }
            }
            Err(e) => {
                tracing::warn!(job = id, %claim, error = %e, "could not release a job's claim; the sweep will")
            }
        }
    }

    /// Runs a started (or adopted) job to its end: output into `live`, heartbeats, the wait
    /// under `timeout` and the cancel switch; then records the end, releases the claim and
    /// emits `job.finished`.
    pub(crate) async fn drive(
        self: Arc<Self>,
        row: JobRow,
        mut launched: Launched,
        live: Arc<LiveJob>,
        timeout: Duration,
    ) {
        let id = row.id;
        let readers: Vec<_> = [launched.task.stdout.take(), launched.task.stderr.take()]
            .into_iter()
            .flatten()
            .map(|s| tokio::spawn(copy_into(s, live.output.clone())))
            .collect();
        let wait = launched
            .task
            .wait(timeout, live.cancel.clone().cancelled_owned());
        let exit = self.with_heartbeats(Kind::Job, id, &live, wait).await;
        for r in readers {
            let _ = r.await;
        }
        let end = job_end(&exit, row.timeout_s);
        let (bytes, written) = live.output.snapshot();
        match self
            .store
            .finish_run(RunTable::Jobs, id, &self.runner, &end, (&bytes, written))
            .await
        {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                job = id,
                "a job's end was not recorded: another scheduler runs it now"
            ),
            Err(e) => {
                tracing::warn!(job = id, error = %e, "could not record a job's end; the sweep will")
            }
        }
        if let Some(claim) = &launched.claim {
            self.release_claim(id, claim).await;
        }
        live.output.finish();
        self.live.remove(Kind::Job, id);
        tracing::info!(job = %job_ref(id), app = %row.app, state = end.state.as_str(), exit_code = ?end.exit_code, "job finished");
        self.emit_finished(&row, &end, Some(&launched.host.name))
            .await;
    }

    /// Counts and emits `job.finished` for `row`, ended as `end` on `host`.
    pub(crate) async fn emit_finished(&self, row: &JobRow, end: &JobEnd, host: Option<&HostName>) {
        self.metrics.job_ended(end.state);
        let fields = serde_json::json!({
            "job": job_ref(row.id), "version": row.version, "state": end.state,
            "exit_code": end.exit_code, "host": host, "reason": end.reason,
            "schedule": row.schedule,
        });
        self.events
            .emit(EventType::JobFinished, Some(&row.app), fields)
            .await;
    }

    /// Awaits `work` while refreshing row `id`'s heartbeat (with its output when it grew)
    /// every `--job-heartbeat-secs`; a cancel asked for through the row fires `live.cancel`.
    pub(crate) async fn with_heartbeats<T>(
        &self,
        kind: Kind,
        id: i64,
        live: &LiveJob,
        work: impl std::future::Future<Output = T>,
    ) -> T {
        let every = Duration::from_secs(self.config.job_heartbeat_secs.max(1));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stored = live.output.written();
        tokio::pin!(work);
        loop {
            tokio::select! {
                done = &mut work => return done,
                _ = tick.tick() => {
                    let written = live.output.written();
                    let snapshot = (written != stored).then(|| live.output.snapshot());
                    let output = snapshot.as_ref().map(|(b, w)| (b.as_slice(), *w));
                    let table = match kind {
                        Kind::Job => RunTable::Jobs,
                        Kind::Workflow => RunTable::Workflows,
                    };
                    let beat = self.store.heartbeat(table, id, &self.runner, output).await;
                    match beat {
                        Ok(Some(cancel)) => {
                            stored = written;
                            if cancel {
                                live.cancel.cancel();
                            }
                        }
                        Ok(None) => tracing::warn!(?kind, id, "another scheduler took this over"),
                        Err(e) => tracing::warn!(job = id, error = %e, "heartbeat failed"),
                    }
                }
            }
        }
    }
}

/// Copies a container's output stream into `out` until it ends (or is cut), held back by
/// `out`'s followers (see `live`).
pub(crate) async fn copy_into(mut from: TaskOutput, out: Arc<LiveOutput>) {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        match from.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => out.write(&buf[..n]).await,
            Err(e) => {
                tracing::debug!(error = %e, "a task's output ended early");
                return;
            }
        }
    }
}

/// How a task's exit reads as a job's end.
pub(crate) fn job_end(exit: &caas_deployer::Result<TaskExit>, timeout_s: i64) -> JobEnd {
    match exit {
        Ok(x) => {
            let (state, reason) = match (x.end, x.exit_code) {
                (TaskEnd::Exited, Some(0)) => (JobState::Succeeded, None),
                (TaskEnd::Exited, Some(_)) if x.oom_killed => (
                    JobState::Failed,
                    Some("killed for exceeding its memory limit".to_owned()),
                ),
                (TaskEnd::Exited, Some(_)) => (JobState::Failed, None),
                (TaskEnd::Exited, None) => (
                    JobState::Failed,
                    Some("the engine did not report an exit code".to_owned()),
                ),
                (TaskEnd::TimedOut, _) => (
                    JobState::TimedOut,
                    Some(format!("killed after its timeout of {timeout_s}s")),
                ),
                (TaskEnd::Cancelled, _) => (JobState::Cancelled, Some("cancelled".to_owned())),
            };
            JobEnd {
                state,
                exit_code: x.exit_code,
                reason,
            }
        }
        Err(e) => JobEnd {
            state: JobState::Failed,
            exit_code: None,
            reason: Some(format!("the engine lost the job's container: {e}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(end: TaskEnd, code: Option<i64>, oom: bool) -> caas_deployer::Result<TaskExit> {
        Ok(TaskExit {
            end,
            exit_code: code,
            oom_killed: oom,
            removed: true,
        })
    }

    #[test]
    fn exits_read_as_the_brief_s_states_and_keep_the_code() {
        let cases = [
            (
                exit(TaskEnd::Exited, Some(0), false),
                JobState::Succeeded,
                Some(0),
            ),
            (
                exit(TaskEnd::Exited, Some(3), false),
                JobState::Failed,
                Some(3),
            ),
            (
                exit(TaskEnd::Exited, Some(137), true),
                JobState::Failed,
                Some(137),
            ),
            (
                exit(TaskEnd::TimedOut, Some(137), false),
                JobState::TimedOut,
                Some(137),
            ),
            (
                exit(TaskEnd::Cancelled, Some(137), false),
                JobState::Cancelled,
                Some(137),
            ),
        ];
        for (x, state, code) in cases {
            let end = job_end(&x, 5);
            assert_eq!((end.state, end.exit_code), (state, code));
        }
        assert!(job_end(&exit(TaskEnd::TimedOut, None, false), 5)
            .reason
            .is_some_and(|r| r.contains("5s")));
        assert!(job_end(&exit(TaskEnd::Exited, Some(1), true), 5)
            .reason
            .is_some_and(|r| r.contains("memory")));
        let lost = job_end(&Err(caas_deployer::Error::Unexpected("gone".into())), 5);
        assert_eq!((lost.state, lost.exit_code), (JobState::Failed, None));
    }
}
