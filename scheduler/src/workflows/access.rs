//! Reading and stopping workflows: the API's view, lists scoped to the caller, output and step
//! logs (live on the runner, stored elsewhere), stdin, cancel and forget.

use super::Jobs;
use crate::error::{Error, Result};
use crate::jobs::follow_stored;
use crate::jobs::live::Kind;
use crate::jobs::view::workflow_ref;
use crate::store::RunTable;
use crate::store::{JobRow, WorkflowRow};
use bytes::Bytes;
use caas_deployer::TaskStdin;
use caas_types::api;
use caas_types::TenantName;
use futures::stream::BoxStream;
use futures::StreamExt;
use std::time::Duration;

/// How long a `DELETE` of a running workflow waits for it to end before answering.
const CANCEL_WAIT: Duration = Duration::from_secs(15);

/// A workflow and its steps as the API shows them.
pub fn view(row: &WorkflowRow, steps: &[JobRow]) -> api::Workflow {
    api::Workflow {
        id: workflow_ref(row.id),
        name: row.name.clone(),
        state: row.state,
        steps: steps
            .iter()
            .map(|s| api::WorkflowStep {
                name: s.step_name.clone().unwrap_or_default(),
                state: s.state,
                exit_code: s.exit_code,
                host: s.host.clone(),
            })
            .collect(),
        created_at: row.created_at,
        finished_at: row.finished_at,
    }
}

impl Jobs {
    /// A workflow the caller (`tenant`; `None`: the operator, who sees all) may see.
    pub async fn workflow(
        &self,
        tenant: Option<&TenantName>,
        id: i64,
    ) -> Result<(WorkflowRow, Vec<JobRow>)> {
        let row = self.store.get_workflow(id).await?;
        if tenant.is_some() && row.tenant.as_ref() != tenant {
            return Err(Error::NotFound(format!("workflow {}", workflow_ref(id))));
        }
        let steps = self.store.list_steps(id).await?;
        Ok((row, steps))
    }

    /// The caller's workflows (the operator's: all), newest first.
    pub async fn workflows(
        &self,
        tenant: Option<&TenantName>,
        limit: Option<u32>,
        before: Option<&str>,
    ) -> Result<Vec<(WorkflowRow, Vec<JobRow>)>> {
        let limit = limit.unwrap_or(crate::jobs::DEFAULT_PAGE);
        if !(1..=crate::jobs::MAX_PAGE).contains(&limit) {
            return Err(Error::Invalid(format!(
                "limit: must be between 1 and {}",
                crate::jobs::MAX_PAGE
            )));
        }
        let before = before
            .map(|b| {
                crate::jobs::view::parse_workflow_ref(b).ok_or_else(|| {
                    Error::Invalid(format!("before: {b:?} is not a workflow id (w-N)"))
                })
            })
            .transpose()?;
        let scope = tenant.map(Some);
        let rows = self.store.list_workflows(scope, limit, before).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let steps = self.store.list_steps(r.id).await?;
            out.push((r, steps));
        }
        Ok(out)
    }

    /// `DELETE`: cancels a running workflow (every step stopped) and returns it once it
    /// ended, or forgets a finished one (`None`).
    pub async fn cancel_or_forget_workflow(
        &self,
        tenant: Option<&TenantName>,
        id: i64,
    ) -> Result<Option<(WorkflowRow, Vec<JobRow>)>> {
        let (row, _) = self.workflow(tenant, id).await?;
        if row.state.is_final() {
            self.store.delete_workflow(id).await?;
            return Ok(None);
        }
        self.store.request_cancel(RunTable::Workflows, id).await?;
        if let Some(live) = self.live.get(Kind::Workflow, id) {
            live.cancel.cancel();
            let _ = tokio::time::timeout(CANCEL_WAIT, live.ended()).await;
        } else {
            let deadline = tokio::time::Instant::now() + CANCEL_WAIT;
            while tokio::time::Instant::now() < deadline
                && !self.store.get_workflow(id).await?.state.is_final()
            {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        self.workflow(tenant, id).await.map(Some)
    }

    /// The last step's stdout: what is kept, then with `follow` what comes until the end.
    pub async fn workflow_output(
        &self,
        tenant: Option<&TenantName>,
        id: i64,
        follow: bool,
    ) -> Result<BoxStream<'static, std::io::Result<Bytes>>> {
        self.workflow(tenant, id).await?;
        if let Some(live) = self.live.get(Kind::Workflow, id) {
            return Ok(live.output.clone().follow(follow).boxed());
        }
        let store = self.store.clone();
        Ok(follow_stored(follow, move || {
            let store = store.clone();
            async move { store.stored_output(RunTable::Workflows, id).await }
        }))
    }

    /// A step's stderr (`step`: its index from 0).
    pub async fn step_logs(
        &self,
        tenant: Option<&TenantName>,
        id: i64,
        step: usize,
        follow: bool,
    ) -> Result<BoxStream<'static, std::io::Result<Bytes>>> {
        let (_, steps) = self.workflow(tenant, id).await?;
        let row = steps.get(step).ok_or_else(|| {
            Error::NotFound(format!(
                "step {step} of workflow {} (it has {} steps, numbered from 0)",
                workflow_ref(id),
                steps.len()
            ))
        })?;
        if let Some(live) = self.live.get(Kind::Workflow, id) {
            if let Some(log) = live.step_logs.get(step) {
                return Ok(log.clone().follow(follow).boxed());
            }
        }
        let store = self.store.clone();
        let job = row.id;
        Ok(follow_stored(follow, move || {
            let store = store.clone();
            async move { store.stored_output(RunTable::Jobs, job).await }
        }))
    }

    /// The first step's stdin of a running workflow this process runs (once).
    pub async fn take_workflow_stdin(
        &self,
        tenant: Option<&TenantName>,
        id: i64,
    ) -> Result<TaskStdin> {
        let (row, _) = self.workflow(tenant, id).await?;
        let wf = workflow_ref(id);
        if !row.stdin {
            return Err(Error::Conflict(format!(
                "workflow {wf} was created without \"stdin\": true; it reads no input"
            )));
        }
        if row.state.is_final() {
            return Err(Error::Conflict(format!("workflow {wf} has ended")));
        }
        let live = self.live.get(Kind::Workflow, id).ok_or_else(|| {
            Error::Conflict(format!(
                "workflow {wf} is run by another scheduler ({}); send its stdin there",
                row.runner.as_deref().unwrap_or("unknown")
            ))
        })?;
        live.take_stdin()
            .ok_or_else(|| Error::Conflict(format!("workflow {wf}'s stdin was sent already")))
    }
}
