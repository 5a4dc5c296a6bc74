//! `caas workflow`: a pipeline of jobs (`a | b | c`) started from a JSON file, its last step's
//! output streamed as it comes and its outcome made caas's exit code; and workflows listed,
//! shown, their output and steps' stderr printed, cancelled or forgotten.

use crate::cli::{Output, WorkflowCmd};
use crate::client::Client;
use crate::commands::print_json;
use crate::jobs::exit_code;
use crate::output::{out, outln};
use crate::stream::{self, Attach, Ended, INTERRUPTED};
use crate::table::{time_cell, Table};
use anyhow::{Context, Result};
use caas_types::api::{CreateWorkflow, JobState, Workflow};
use reqwest::Method;
use std::path::Path;
use std::pin::pin;

/// The workflow `text` (a file's JSON) describes; `interactive` makes its first step read
/// standard input whatever the file says.
fn workflow_request(text: &str, interactive: bool) -> Result<CreateWorkflow> {
    let mut body: CreateWorkflow = serde_json::from_str(text)?;
    body.stdin |= interactive;
    Ok(body)
}

/// `caas workflow run FILE [-i]`: starts the workflow, prints its last step's output as it
/// comes (sending standard input to its first step with `-i`), and answers 0 when it
/// succeeded, else the first failed step's exit code (or 1); on Ctrl-C cancels it and
/// answers 130.
pub async fn run(client: &Client, file: &Path, interactive: bool) -> Result<u8> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading the workflow {}", file.display()))?;
    let body = workflow_request(&text, interactive)
        .with_context(|| format!("{} is not a workflow", file.display()))?;
    let mut interrupt = pin!(stream::ctrl_c());
    let workflow: Workflow = tokio::select! {
        created = client.post("/v1/workflows", &body) => created?,
        // Cut off before the answer: there is no id to cancel.
        () = &mut interrupt => {
            eprintln!("cancelled");
            return Ok(INTERRUPTED);
        }
    };
    let resource = format!("/v1/workflows/{}", workflow.id);
    let output = format!("{resource}/output?follow=true");
    let stdin = format!("{resource}/stdin");
    let what = Attach {
        resource: &resource,
        output: &output,
        stdin: body.stdin.then_some(stdin.as_str()),
    };
    match stream::attach(client, what, |w: &Workflow| w.state.is_final(), interrupt).await? {
        Ended::Cancelled => Ok(INTERRUPTED),
        Ended::Finished(w) => {
            let (code, note) = outcome(&w);
            if let Some(note) = note {
                eprintln!("caas: {note}");
            }
            Ok(code)
        }
    }
}

/// A finished workflow's exit code (0 when it succeeded, else the first failed step's, or 1)
/// and, when it did not succeed, what to say on stderr.
fn outcome(w: &Workflow) -> (u8, Option<String>) {
    if w.state == JobState::Succeeded {
        return (0, None);
    }
    let failed = w
        .steps
        .iter()
        .enumerate()
        .find(|(_, s)| s.state == JobState::Failed && s.exit_code != Some(0));
    let Some((i, step)) = failed else {
        return (1, Some(format!("workflow {} {}", w.id, w.state.as_str())));
    };
    let how = step
        .exit_code
        .map_or_else(|| "failed".to_owned(), |c| format!("exited {c}"));
    let note = format!(
        "workflow {} {}: step {i} ({}) {how}; its stderr: caas workflow logs {} {i}",
        w.id,
        w.state.as_str(),
        step.name,
        w.id
    );
    (exit_code(step.exit_code), Some(note))
}

/// `caas workflow ...`: the exit code of `run`'s workflow, 0 for the others.
pub async fn workflow(client: &Client, out: Output, cmd: WorkflowCmd) -> Result<u8> {
    match cmd {
        WorkflowCmd::Run { file, interactive } => return run(client, &file, interactive).await,
        WorkflowCmd::Ls { limit, before } => {
            let mut path = format!("/v1/workflows?limit={limit}");
            if let Some(b) = before {
                path.push_str(&format!("&before={b}"));
            }
            let list: Vec<Workflow> = client.get(&path).await?;
            match out {
                Output::Json => print_json(&list)?,
                Output::Table => out!("{}", workflow_table(&list).render()),
            }
        }
        WorkflowCmd::Show { id } => {
            let w: Workflow = client.get(&format!("/v1/workflows/{id}")).await?;
            match out {
                Output::Json => print_json(&w)?,
                Output::Table => {
                    out!("{}", workflow_table(std::slice::from_ref(&w)).render());
                    outln!("");
                    out!("{}", step_table(&w).render());
                }
            }
        }
        WorkflowCmd::Logs { id, step, follow } => {
            let mut path = format!("/v1/workflows/{id}/steps/{step}/logs");
            if follow {
                path.push_str("?follow=true");
            }
            stream::print_body(client, &path).await?;
        }
        WorkflowCmd::Output { id, follow } => {
            let mut path = format!("/v1/workflows/{id}/output");
            if follow {
                path.push_str("?follow=true");
            }
            stream::print_body(client, &path).await?;
        }
        WorkflowCmd::Rm { id } => {
            let v = client
                .call::<()>(Method::DELETE, &format!("/v1/workflows/{id}"), None)
                .await?;
            match (out, v.is_null()) {
                (Output::Json, false) => print_json(&v)?,
                (_, false) => outln!("cancelled {id}"),
                (_, true) => outln!("removed {id}"),
            }
        }
    }
    Ok(0)
}

/// ID, NAME, STATE, STEPS, CREATED, FINISHED.
fn workflow_table(list: &[Workflow]) -> Table {
    let mut t = Table::new(&["ID", "NAME", "STATE", "STEPS", "CREATED", "FINISHED"]);
    for w in list {
        t.row(vec![
            w.id.clone(),
            w.name.clone(),
            w.state.as_str().into(),
            w.steps.len().to_string(),
            time_cell(Some(w.created_at)),
            time_cell(w.finished_at),
        ]);
    }
    t
}

/// STEP (its index), NAME, STATE, EXIT, HOST.
fn step_table(w: &Workflow) -> Table {
    let mut t = Table::new(&["STEP", "NAME", "STATE", "EXIT", "HOST"]);
    for (i, s) in w.steps.iter().enumerate() {
        t.row(vec![
            i.to_string(),
            s.name.clone(),
            s.state.as_str().into(),
            s.exit_code.map_or_else(|| "-".into(), |c| c.to_string()),
            s.host
                .as_ref()
                .map_or_else(|| "-".into(), ToString::to_string),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;
    use serde_json::json;

    fn workflow(state: &str, steps: serde_json::Value) -> Workflow {
        serde_json::from_value(json!({
            "id": "w-7", "name": "etl", "state": state, "steps": steps,
            "created_at": "2026-11-22T06:10:01Z", "finished_at": null
        }))
        .expect("a workflow")
    }

    fn step(name: &str, state: &str, exit: Option<i64>) -> serde_json::Value {
        json!({"name": name, "state": state, "exit_code": exit, "host": "h1"})
    }

    const FILE: &str = r#"{"name": "etl", "steps": [
        {"name": "gen", "app": "busybox", "version": "v1", "command": ["seq", "1", "3"]},
        {"name": "count", "app": "busybox", "version": "v1", "command": ["wc", "-l"]}]}"#;

    #[test]
    fn the_file_is_the_request_and_i_forces_stdin() {
        let w = workflow_request(FILE, false).expect("a workflow");
        assert_eq!((w.steps.len(), w.stdin, w.timeout_s), (2, false, 600));
        assert!(workflow_request(FILE, true).expect("a workflow").stdin);
        let with_stdin =
            FILE.replacen("\"name\": \"etl\"", "\"name\": \"etl\", \"stdin\": true", 1);
        assert!(
            workflow_request(&with_stdin, false)
                .expect("a workflow")
                .stdin
        );
        assert!(workflow_request("{\"name\": \"x\"}", false).is_err());
        assert!(workflow_request("not json", false).is_err());
    }

    #[test]
    fn the_outcome_is_the_first_failed_step_s_exit_code() {
        let ok = workflow(
            "succeeded",
            json!([
                step("a", "succeeded", Some(0)),
                step("b", "succeeded", Some(0))
            ]),
        );
        assert_eq!(outcome(&ok), (0, None));
        let failed = workflow(
            "failed",
            json!([
                step("a", "succeeded", Some(0)),
                step("b", "failed", Some(3)),
                step("c", "failed", Some(4))
            ]),
        );
        assert_eq!(
            outcome(&failed),
            (
                3,
                Some(
                    "workflow w-7 failed: step 1 (b) exited 3; its stderr: caas workflow logs w-7 1"
                        .into()
                )
            )
        );
        let timed_out = workflow(
            "timed_out",
            json!([step("a", "cancelled", None), step("b", "cancelled", None)]),
        );
        assert_eq!(
            outcome(&timed_out),
            (1, Some("workflow w-7 timed_out".into()))
        );
        let vanished = workflow("failed", json!([step("a", "failed", None)]));
        assert_eq!(outcome(&vanished).0, 1);
    }

    #[test]
    fn workflow_subcommands_parse() {
        let cli =
            Cli::try_parse_from(["caas", "workflow", "run", "etl.json", "-i"]).expect("valid");
        let Command::Workflow(WorkflowCmd::Run { file, interactive }) = cli.command else {
            panic!("not workflow run")
        };
        assert_eq!((file.to_str(), interactive), (Some("etl.json"), true));
        let cli =
            Cli::try_parse_from(["caas", "workflow", "logs", "w-7", "1", "-f"]).expect("valid");
        assert!(matches!(
            cli.command,
            Command::Workflow(WorkflowCmd::Logs {
                step: 1,
                follow: true,
                ..
            })
        ));
        let cli = Cli::try_parse_from(["caas", "workflow", "output", "w-7"]).expect("valid");
        assert!(matches!(
            cli.command,
            Command::Workflow(WorkflowCmd::Output { follow: false, .. })
        ));
        let cli = Cli::try_parse_from(["caas", "workflow", "ls", "--limit", "3"]).expect("valid");
        assert!(matches!(
            cli.command,
            Command::Workflow(WorkflowCmd::Ls {
                limit: 3,
                before: None
            })
        ));
        for ok in [
            &["caas", "workflow", "show", "w-7"][..],
            &["caas", "workflow", "rm", "w-7"],
        ] {
            assert!(Cli::try_parse_from(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            &["caas", "workflow", "run"][..],
            &["caas", "workflow", "logs", "w-7"],
            &["caas", "workflow", "logs", "w-7", "-1"],
            &["caas", "workflow", "show", "../apps"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn show_lists_the_steps_by_index() {
        let w = workflow(
            "running",
            json!([
                step("gen", "succeeded", Some(0)),
                step("count", "running", None)
            ]),
        );
        assert_eq!(
            step_table(&w).render(),
            "STEP   NAME    STATE       EXIT   HOST\n\
             0      gen     succeeded   0      h1\n\
             1      count   running     -      h1\n"
        );
    }
}
