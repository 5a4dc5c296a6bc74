//! Workflows: 2 to 16 job steps run at once as a shell pipeline `a | b | c` (brief, part 2,
//! "Workflows").
//!
//! Every step is claimed first (all or nothing), then every container is started with its
//! streams attached; this process copies step k's stdout into step k+1's stdin
//! (`caas_deployer::pipe`: bounded chunks, back-pressure end to end, whichever hosts they are
//! on), each step's stderr into its log, and the last step's stdout into the workflow's output
//! (the last `--job-output-keep-bytes`, never waiting for a reader). A step that ends other than
//! with exit code 0 fails the workflow and stops the others (`pipefail`); the timeout and a
//! cancel stop them all. At the end every step's container is gone and every claim released.
//! A workflow cannot outlive its runner (the runner is its pipe): the leader's sweep stops the
//! steps of one whose runner died and fails it ([`Jobs::recover_workflows`]).

pub mod access;
pub mod plan;
mod recover;

pub use access::view;

use crate::error::{Error, Result};
use crate::events::EventType;
use crate::jobs::live::{Kind, LiveJob, LiveOutput};
use crate::jobs::run::{copy_into, job_end, Launch};
use crate::jobs::view::workflow_ref;
use crate::jobs::{validate, Jobs};
use crate::placement::{self, Owner, PlacementRequest};
use crate::store::RunTable;
use crate::store::{HostRow, JobEnd, JobRow, NewJob, WorkflowRow};
use caas_deployer::{Task, TaskStdin};
use caas_types::api::{CreateWorkflow, JobState};
use caas_types::{InstanceId, PlacementPolicy, TenantName};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;

/// Fewest and most steps of a workflow.
pub const STEPS: std::ops::RangeInclusive<usize> = 2..=16;

/// One started step: its row, task, host and claim.
struct Step {
    row: JobRow,
    task: Option<Task>,
    host: HostRow,
    claim: InstanceId,
}

impl Jobs {
    /// `POST /v1/workflows`: checks, claims every step (all or nothing), starts them piped, and
    /// returns the workflow once every container runs. The caller checked that it sees every
    /// step's app. Any failure leaves nothing: no claim, no container, no row.
    pub async fn create_workflow(
        self: &Arc<Self>,
        tenant: Option<&TenantName>,
        req: &CreateWorkflow,
    ) -> Result<WorkflowRow> {
        plan::check(req)?;
        let mut images = Vec::with_capacity(req.steps.len());
        for s in &req.steps {
            images.push(self.pin(&s.app, &s.version).await?);
        }
        let id = self
            .store
            .insert_workflow(tenant, &req.name, req.stdin, req.timeout_s, &self.runner)
            .await?;
        // Live (and heartbeating) from the start, so a slow start does not look dead.
        let live = Arc::new(LiveJob {
            output: LiveOutput::new(self.keep_bytes()),
            step_logs: req
                .steps
                .iter()
                .map(|_| LiveOutput::new(self.keep_bytes()))
                .collect(),
            stdin: std::sync::Mutex::new(None),
            cancel: tokio_util::sync::CancellationToken::new(),
        });
        self.live.insert(Kind::Workflow, id, live.clone());
        let started = self
            .with_heartbeats(
                Kind::Workflow,
                id,
                &live,
                self.start_steps(id, req, &images),
            )
            .await;
        match started {
            Ok(mut steps) => {
                if req.stdin {
                    live.set_stdin(
                        steps
                            .first_mut()
                            .and_then(|s| s.task.as_mut())
                            .and_then(|t| t.stdin.take()),
                    );
                }
                // The steps run from here on: whatever the database says now, they are driven
                // to their end (which records it), never left behind.
                if let Err(e) = self.store.set_workflow_started(id, &self.runner).await {
                    tracing::warn!(workflow = id, error = %e, "could not mark a workflow running");
                }
                let row = self.store.get_workflow(id).await.unwrap_or_else(|e| {
                    tracing::warn!(workflow = id, error = %e, "could not read a started workflow back");
                    WorkflowRow {
                        id,
                        tenant: tenant.cloned(),
                        name: req.name.clone(),
                        state: JobState::Running,
                        reason: None,
                        stdin: req.stdin,
                        timeout_s: req.timeout_s,
                        runner: Some(self.runner.clone()),
                        cancel_requested: false,
                        created_at: caas_types::Timestamp::now(),
                        started_at: Some(caas_types::Timestamp::now()),
                        finished_at: None,
                    }
                });
                let timeout = Duration::from_secs(u64::try_from(req.timeout_s).unwrap_or(1));
                tokio::spawn(
                    self.clone()
                        .drive_workflow(row.clone(), steps, live, timeout),
                );
                Ok(row)
            }
            Err(e) => {
                self.live.remove(Kind::Workflow, id);
                if let Err(d) = self.store.delete_failed_workflow(id).await {
                    tracing::warn!(workflow = id, error = %d, "could not delete a workflow that did not start");
                }
                Err(e)
            }
        }
    }

    /// Records the steps, claims them all, then starts them all; on any failure every started
    /// container is removed and every claim released.
    async fn start_steps(
        &self,
        id: i64,
        req: &CreateWorkflow,
        images: &[String],
    ) -> Result<Vec<Step>> {
        let mut rows = Vec::with_capacity(req.steps.len());
        for (i, (s, image)) in req.steps.iter().zip(images).enumerate() {
            let resources = validate::resources("", s.memory_mb, s.cpus)?;
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            let job = self
                .store
                .insert_job(&NewJob {
                    app: s.app.clone(),
                    version: s.version.clone(),
                    image: image.clone(),
                    command: s.command.clone(),
                    memory: resources.memory.bytes(),
                    cpu: resources.cpus.millis(),
                    timeout_s: req.timeout_s,
                    stdin: i > 0 || req.stdin,
                    step: Some((id, index, s.name.clone())),
                    schedule_id: None,
                    runner: self.runner.clone(),
                })
                .await?;
            rows.push((job, resources));
        }
        // Every claim first: all or nothing.
        let mut claims: Vec<(i64, InstanceId)> = Vec::with_capacity(rows.len());
        for ((job, resources), s) in rows.iter().zip(&req.steps) {
            let placed = placement::place(
                &self.store,
                &PlacementRequest {
                    owner: Owner::Job(*job),
                    app: s.app.clone(),
                    resources: *resources,
                    count: 1,
                    port: false,
                    placement: PlacementPolicy::default(),
                },
            )
            .await;
            match placed.map(|mut c| c.pop()) {
                Ok(Some(c)) => {
                    if let Err(e) = self.store.set_job_claim(*job, c.host_id, &c.instance).await {
                        self.release_claim(*job, &c.instance).await;
                        self.release_claims(&claims).await;
                        return Err(e);
                    }
                    claims.push((*job, c.instance));
                }
                Ok(None) => {
                    self.release_claims(&claims).await;
                    return Err(Error::Unplaceable(format!(
                        "step {} ({}) has no host",
                        claims.len(),
                        s.name
                    )));
                }
                Err(e) => {
                    self.release_claims(&claims).await;
                    let e = match e {
                        Error::Unplaceable(m) => {
                            Error::Unplaceable(format!("step {} ({}): {m}", claims.len(), s.name))
                        }
                        other => other,
                    };
                    return Err(e);
                }
            }
        }
        // Then every container; tasks dropped on an error path remove their containers.
        let starts = req.steps.iter().enumerate().map(|(i, s)| {
            let (job, resources) = rows[i];
            let launch = Launch {
                id: job,
                app: &s.app,
                image: &images[i],
                command: &s.command,
                env: &s.env,
                stdin: i > 0 || req.stdin,
                resources,
            };
            let claim = claims[i].1.clone();
            async move {
                let row = self.store.get_job(job).await?;
                let host_id = row
                    .host_id
                    .ok_or_else(|| Error::Invalid(format!("step {i} has a claim but no host")))?;
                let (task, host) = self.start_claimed(&launch, host_id, &claim).await?;
                Ok::<_, Error>((task, host))
            }
        });
        let started: Vec<Result<(Task, HostRow)>> = futures::future::join_all(starts).await;
        if let Some(i) = started.iter().position(Result::is_err) {
            let mut tasks = Vec::new();
            let mut first_error = None;
            for (k, r) in started.into_iter().enumerate() {
                match r {
                    Ok((task, _)) => tasks.push(task),
                    Err(e) if k == i => first_error = Some(e),
                    Err(_) => {}
                }
            }
            for t in tasks {
                let id = t.id().clone();
                drop(t);
                tracing::debug!(container = %id, "removing a step of a workflow that did not start");
            }
            self.release_claims(&claims).await;
            let e = first_error.unwrap_or_else(|| Error::Incomplete("a step did not start".into()));
            return Err(match e {
                Error::Engine { host, source } => Error::Engine {
                    host: format!("{host} (step {i}, {})", req.steps[i].name),
                    source,
                },
                other => other,
            });
        }
        let mut steps = Vec::with_capacity(started.len());
        for ((r, (job, _)), (_, claim)) in started.into_iter().zip(&rows).zip(claims) {
            let (task, host) = r?;
            let row = self.store.get_job(*job).await?;
            steps.push(Step {
                row,
                task: Some(task),
                host,
                claim,
            });
        }
        Ok(steps)
    }

    async fn release_claims(&self, claims: &[(i64, InstanceId)]) {
        for (job, claim) in claims {
            self.release_claim(*job, claim).await;
        }
    }

    /// Pipes and waits for every step, then records each step's end and the workflow's,
    /// releases every claim and emits `workflow.finished`.
    async fn drive_workflow(
        self: Arc<Self>,
        row: WorkflowRow,
        mut steps: Vec<Step>,
        live: Arc<LiveJob>,
        timeout: Duration,
    ) {
        let id = row.id;
        let n = steps.len();
        let mut movers = Vec::new();
        // stdout of k → stdin of k+1; the last one's into the output.
        let mut next_stdin: Option<TaskStdin> = None;
        for k in (0..n).rev() {
            let Some(task) = steps[k].task.as_mut() else {
                continue;
            };
            let stdout = task.stdout.take();
            let stderr = task.stderr.take();
            let stdin = if k > 0 { task.stdin.take() } else { None };
            match (stdout, next_stdin.take()) {
                (Some(out), Some(stdin)) => movers.push(tokio::spawn(async move {
                    if let Err(e) = caas_deployer::pipe(out, stdin).await {
                        tracing::debug!(error = %e, "a workflow's pipe ended early");
                    }
                })),
                (Some(out), None) => movers.push(tokio::spawn(copy_into(out, live.output.clone()))),
                _ => {}
            }
            if let Some(err) = stderr {
                movers.push(tokio::spawn(copy_into(err, live.step_logs[k].clone())));
            }
            next_stdin = stdin;
        }
        // A step failing stops the others; so do the timeout and a cancel.
        let stop = live.cancel.child_token();
        let mut waits: FuturesUnordered<_> = steps
            .iter_mut()
            .enumerate()
            .filter_map(|(k, s)| s.task.take().map(|t| (k, t)))
            .map(|(k, task)| {
                let stop = stop.clone();
                async move { (k, task.wait(timeout, stop.cancelled_owned()).await) }
            })
            .collect();
        let all = async {
            let mut ends: Vec<Option<JobEnd>> = vec![None; n];
            while let Some((k, exit)) = waits.next().await {
                let end = job_end(&exit, row.timeout_s);
                if end.state != JobState::Succeeded {
                    stop.cancel();
                }
                ends[k] = Some(end);
            }
            ends
        };
        let ends = self.with_heartbeats(Kind::Workflow, id, &live, all).await;
        for m in movers {
            let _ = m.await;
        }
        let ends: Vec<JobEnd> = ends
            .into_iter()
            .map(|e| {
                e.unwrap_or(JobEnd {
                    state: JobState::Failed,
                    exit_code: None,
                    reason: Some("the step was lost".into()),
                })
            })
            .collect();
        let end = plan::workflow_end(&ends, live.cancel.is_cancelled());
        for (k, (s, step_end)) in steps.iter().zip(&ends).enumerate() {
            let (bytes, written) = live.step_logs[k].snapshot();
            if let Err(e) = self
                .store
                .finish_run(
                    RunTable::Jobs,
                    s.row.id,
                    &self.runner,
                    step_end,
                    (&bytes, written),
                )
                .await
            {
                tracing::warn!(workflow = id, step = k, error = %e, "could not record a step's end");
            }
            self.release_claim(s.row.id, &s.claim).await;
        }
        let (bytes, written) = live.output.snapshot();
        if let Err(e) = self
            .store
            .finish_run(
                RunTable::Workflows,
                id,
                &self.runner,
                &end,
                (&bytes, written),
            )
            .await
        {
            tracing::warn!(workflow = id, error = %e, "could not record a workflow's end");
        }
        live.output.finish();
        for l in &live.step_logs {
            l.finish();
        }
        self.live.remove(Kind::Workflow, id);
        tracing::info!(workflow = %workflow_ref(id), state = end.state.as_str(), "workflow finished");
        let step_states: Vec<_> = ends
            .iter()
            .zip(&steps)
            .map(|(e, s)| {
                serde_json::json!({"name": s.row.step_name, "state": e.state,
                "exit_code": e.exit_code, "host": s.host.name})
            })
            .collect();
        let fields = serde_json::json!({"workflow": workflow_ref(id), "name": row.name,
            "state": end.state, "reason": end.reason, "steps": step_states});
        self.metrics.workflow_ended(end.state);
        let app = steps.first().map(|s| &s.row.app);
        self.events
            .emit(EventType::WorkflowFinished, app, fields)
            .await;
    }
}
