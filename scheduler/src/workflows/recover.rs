//! A workflow whose runner died cannot be resumed: its runner was the pipe between its steps.
//! The leader's sweep takes it over, removes every step's container, records each step and the
//! workflow as failed with the reason, and releases every claim.

use super::Jobs;
use crate::error::Result;
use crate::events::EventType;
use crate::jobs::live::Kind;
use crate::jobs::view::workflow_ref;
use crate::store::JobEnd;
use crate::store::RunTable;
use caas_types::api::JobState;

/// Why a workflow whose runner died failed.
const RUNNER_GONE: &str =
    "the scheduler running it stopped; a workflow's pipe cannot be resumed by another";

impl Jobs {
    /// Fails the workflows whose runner's heartbeat stopped (see the module doc).
    pub(crate) async fn recover_workflows(&self) -> Result<()> {
        for row in self
            .store
            .stale_workflows(self.config.job_stale_secs)
            .await?
        {
            if self.live.get(Kind::Workflow, row.id).is_some() {
                continue;
            }
            if !self
                .store
                .take_over_workflow(row.id, row.runner.as_deref(), &self.runner)
                .await?
            {
                continue;
            }
            tracing::warn!(workflow = %workflow_ref(row.id), from = ?row.runner, "failing a workflow whose scheduler stopped");
            let steps = self.store.list_steps(row.id).await?;
            let mut app = None;
            for s in &steps {
                app.get_or_insert_with(|| s.app.clone());
                if let (Some(host), Some(container)) = (s.host_id, &s.container_id) {
                    match self.lifecycle.engine_of(host).await {
                        Ok((h, engine)) => {
                            if let Err(e) = engine.remove(container).await {
                                tracing::warn!(host = %h.name, %container, error = %e, "could not remove a step's container");
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "no engine for a step's host"),
                    }
                }
                if !s.state.is_final() {
                    let end = JobEnd {
                        state: JobState::Failed,
                        exit_code: None,
                        reason: Some(RUNNER_GONE.into()),
                    };
                    let out = self.store.stored_output(RunTable::Jobs, s.id).await?;
                    self.store
                        .finish_run(
                            RunTable::Jobs,
                            s.id,
                            &self.runner,
                            &end,
                            (&out.bytes, out.written),
                        )
                        .await?;
                }
                if let Some(claim) = &s.instance_id {
                    self.release_claim(s.id, claim).await;
                }
            }
            let end = JobEnd {
                state: JobState::Failed,
                exit_code: None,
                reason: Some(RUNNER_GONE.into()),
            };
            let out = self
                .store
                .stored_output(RunTable::Workflows, row.id)
                .await?;
            self.store
                .finish_run(
                    RunTable::Workflows,
                    row.id,
                    &self.runner,
                    &end,
                    (&out.bytes, out.written),
                )
                .await?;
            self.metrics.workflow_ended(end.state);
            let fields = serde_json::json!({"workflow": workflow_ref(row.id), "name": row.name,
                "state": end.state, "reason": end.reason});
            self.events
                .emit(EventType::WorkflowFinished, app.as_ref(), fields)
                .await;
        }
        Ok(())
    }
}
