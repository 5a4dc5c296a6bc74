//! The pure rules of a workflow: which requests are acceptable, and how the steps' ends make
//! the workflow's (`pipefail`: the first step that did not succeed decides).

use crate::error::{Error, Result};
use crate::jobs::validate;
use crate::store::JobEnd;
use caas_types::api::{CreateWorkflow, JobState};

/// Longest workflow or step name.
const MAX_NAME: usize = 255;

/// Checks a workflow request: its name, 2 to 16 steps, each step's command, env and size,
/// the timeout. Messages name the field (`steps[2].command`).
pub fn check(req: &CreateWorkflow) -> Result<()> {
    if req.name.trim().is_empty() || req.name.len() > MAX_NAME || req.name.contains('\0') {
        return Err(Error::Invalid(format!(
            "name: must be 1 to {MAX_NAME} characters"
        )));
    }
    if !super::STEPS.contains(&req.steps.len()) {
        return Err(Error::Invalid(format!(
            "steps: a workflow has 2 to 16 steps (got {})",
            req.steps.len()
        )));
    }
    validate::timeout("", req.timeout_s)?;
    for (i, s) in req.steps.iter().enumerate() {
        let field = format!("steps[{i}].");
        if s.name.trim().is_empty() || s.name.len() > MAX_NAME || s.name.contains('\0') {
            return Err(Error::Invalid(format!(
                "{field}name: must be 1 to {MAX_NAME} characters"
            )));
        }
        validate::command_and_env(&field, &s.command, &s.env)?;
        validate::resources(&field, s.memory_mb, s.cpus)?;
    }
    Ok(())
}

/// The workflow's end from its steps' ends: succeeded when every step did; else cancelled
/// when asked to be, timed out when a step ran out of time, else failed, naming the first
/// step (in pipeline order) that failed by itself.
pub fn workflow_end(steps: &[JobEnd], cancelled: bool) -> JobEnd {
    let ok = |e: &JobEnd| e.state == JobState::Succeeded;
    if steps.iter().all(ok) && !cancelled {
        return JobEnd {
            state: JobState::Succeeded,
            exit_code: Some(0),
            reason: None,
        };
    }
    if cancelled {
        return JobEnd {
            state: JobState::Cancelled,
            exit_code: None,
            reason: Some("cancelled".into()),
        };
    }
    if let Some(i) = steps.iter().position(|e| e.state == JobState::TimedOut) {
        return JobEnd {
            state: JobState::TimedOut,
            exit_code: None,
            reason: steps[i].reason.clone(),
        };
    }
    // The steps stopped because another failed read `cancelled`; the failure is the cause.
    let cause = steps
        .iter()
        .position(|e| e.state == JobState::Failed)
        .or_else(|| steps.iter().position(|e| !ok(e)));
    let reason = cause.map(|i| {
        let e = &steps[i];
        match (e.exit_code, &e.reason) {
            (_, Some(r)) => format!("step {i} failed: {r}"),
            (Some(c), None) => format!("step {i} exited with code {c}"),
            (None, None) => format!("step {i} failed"),
        }
    });
    JobEnd {
        state: JobState::Failed,
        exit_code: cause.and_then(|i| steps[i].exit_code),
        reason,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn end(state: JobState, code: Option<i64>) -> JobEnd {
        JobEnd {
            state,
            exit_code: code,
            reason: None,
        }
    }

    #[test]
    fn the_first_failing_step_fails_the_workflow() {
        use JobState::*;
        let all_ok = [end(Succeeded, Some(0)), end(Succeeded, Some(0))];
        assert_eq!(workflow_end(&all_ok, false).state, Succeeded);
        let mid = [
            end(Cancelled, Some(137)),
            end(Failed, Some(3)),
            end(Cancelled, Some(137)),
        ];
        let w = workflow_end(&mid, false);
        assert_eq!((w.state, w.exit_code), (Failed, Some(3)));
        assert!(w.reason.unwrap().contains("step 1"));
        assert_eq!(workflow_end(&mid, true).state, Cancelled);
        let slow = [end(TimedOut, Some(137)), end(TimedOut, Some(137))];
        assert_eq!(workflow_end(&slow, false).state, TimedOut);
    }

    #[test]
    fn step_counts_and_fields_are_checked() {
        let step = |name: &str, cmd: serde_json::Value| json!({"name": name, "app": "tools", "version": "v1", "command": cmd});
        let wf = |steps: Vec<serde_json::Value>| -> CreateWorkflow {
            serde_json::from_value(json!({"name": "etl", "steps": steps})).unwrap()
        };
        assert!(check(&wf(vec![
            step("a", json!(["seq", "3"])),
            step("b", json!(["wc"]))
        ]))
        .is_ok());
        let one = check(&wf(vec![step("a", json!(["true"]))]))
            .unwrap_err()
            .to_string();
        assert!(one.contains("2 to 16"), "{one}");
        let many = check(&wf((0..17).map(|_| step("a", json!(["cat"]))).collect()))
            .unwrap_err()
            .to_string();
        assert!(many.contains("got 17"), "{many}");
        let empty = check(&wf(vec![step("a", json!(["cat"])), step("b", json!([]))]))
            .unwrap_err()
            .to_string();
        assert!(empty.contains("steps[1].command"), "{empty}");
    }
}
