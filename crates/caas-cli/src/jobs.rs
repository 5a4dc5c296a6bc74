//! `caas run` and `caas jobs`: a command run to completion in a new container of an app's
//! version, its output streamed as it comes and its exit code made caas's (like
//! `docker run --rm`); and an app's jobs listed, shown, their output printed, cancelled or
//! forgotten.

use crate::cli::{JobResources, JobsCmd, Output, RunArgs};
use crate::client::Client;
use crate::commands::print_json;
use crate::output::{out, outln};
use crate::stream::{self, Attach, Ended, INTERRUPTED};
use crate::table::{time_cell, Table};
use anyhow::Result;
use caas_types::api::{
    CreateJob, Job, JobState, DEFAULT_JOB_CPUS, DEFAULT_JOB_MEMORY_MB, DEFAULT_JOB_TIMEOUT_S,
};
use caas_types::Version;
use reqwest::Method;
use std::pin::pin;

/// The job `resources` describe: `version` running `command`, reading a streamed standard
/// input when `stdin`. What is left out takes the API's default.
pub fn job_request(
    resources: &JobResources,
    version: Version,
    command: Vec<String>,
    stdin: bool,
) -> CreateJob {
    CreateJob {
        version,
        command,
        env: resources.env.iter().cloned().collect(),
        memory_mb: resources.memory.map_or(DEFAULT_JOB_MEMORY_MB, |m| m.mib()),
        cpus: resources.cpus.map_or(DEFAULT_JOB_CPUS, |c| c.cores()),
        timeout_s: resources.timeout.unwrap_or(DEFAULT_JOB_TIMEOUT_S),
        stdin,
    }
}

/// `caas run`: starts the job, prints its output as it comes (sending standard input with
/// `-i`), and answers its exit code; on Ctrl-C cancels it and answers 130.
pub async fn run(client: &Client, args: RunArgs) -> Result<u8> {
    let body = job_request(
        &args.resources,
        args.version,
        args.command,
        args.interactive,
    );
    let jobs = format!("/v1/apps/{}/jobs", args.app);
    let mut interrupt = pin!(stream::ctrl_c());
    let job: Job = tokio::select! {
        created = client.post(&jobs, &body) => created?,
        // Cut off before the answer: there is no id to cancel.
        () = &mut interrupt => {
            eprintln!("cancelled");
            return Ok(INTERRUPTED);
        }
    };
    let resource = format!("{jobs}/{}", job.id);
    let output = format!("{resource}/logs?follow=true");
    let stdin = format!("{resource}/stdin");
    let what = Attach {
        resource: &resource,
        output: &output,
        stdin: args.interactive.then_some(stdin.as_str()),
    };
    match stream::attach(client, what, |j: &Job| j.state.is_final(), interrupt).await? {
        Ended::Cancelled => Ok(INTERRUPTED),
        Ended::Finished(job) => {
            if let Some(note) = ending_note(&job) {
                eprintln!("caas: {note}");
            }
            Ok(exit_code(job.exit_code))
        }
    }
}

/// A process exit code for a job's or step's: itself when it fits (0 to 255), else 1; 1 when
/// there is none (it never exited by itself).
pub fn exit_code(code: Option<i64>) -> u8 {
    code.and_then(|c| u8::try_from(c).ok()).unwrap_or(1)
}

/// What to say on stderr about how a finished job ended, when its exit code alone does not
/// say it: not succeeded, and no exit code, a timeout or cancel, or a reason.
fn ending_note(job: &Job) -> Option<String> {
    let plain_exit = job.state == JobState::Failed && job.exit_code.is_some();
    if job.state == JobState::Succeeded || (plain_exit && job.reason.is_none()) {
        return None;
    }
    let mut note = format!("job {} {}", job.id, job.state.as_str());
    if let Some(code) = job.exit_code {
        note.push_str(&format!(" (exit code {code})"));
    }
    if let Some(reason) = &job.reason {
        note.push_str(&format!(": {reason}"));
    }
    Some(note)
}

/// `caas jobs ...`
pub async fn jobs(client: &Client, out: Output, cmd: JobsCmd) -> Result<()> {
    match cmd {
        JobsCmd::Ls { app, limit, before } => {
            let mut path = format!("/v1/apps/{app}/jobs?limit={limit}");
            if let Some(b) = before {
                path.push_str(&format!("&before={b}"));
            }
            let list: Vec<Job> = client.get(&path).await?;
            match out {
                Output::Json => print_json(&list),
                Output::Table => {
                    out!("{}", job_table(&list).render());
                    Ok(())
                }
            }
        }
        JobsCmd::Show { app, id } => {
            let job: Job = client.get(&format!("/v1/apps/{app}/jobs/{id}")).await?;
            match out {
                Output::Json => print_json(&job),
                Output::Table => {
                    out!("{}", job_table(std::slice::from_ref(&job)).render());
                    if let Some(s) = &job.schedule {
                        outln!("schedule: {s}");
                    }
                    if let Some(r) = &job.reason {
                        outln!("reason: {r}");
                    }
                    Ok(())
                }
            }
        }
        JobsCmd::Logs { app, id, follow } => {
            let mut path = format!("/v1/apps/{app}/jobs/{id}/logs");
            if follow {
                path.push_str("?follow=true");
            }
            stream::print_body(client, &path).await
        }
        JobsCmd::Rm { app, id } => {
            let v = client
                .call::<()>(Method::DELETE, &format!("/v1/apps/{app}/jobs/{id}"), None)
                .await?;
            match (out, v.is_null()) {
                (Output::Json, false) => print_json(&v)?,
                (_, false) => outln!("cancelled {id}"),
                (_, true) => outln!("removed {id}"),
            }
            Ok(())
        }
    }
}

/// ID, VERSION, STATE, EXIT, HOST, CREATED, FINISHED.
fn job_table(jobs: &[Job]) -> Table {
    let mut t = Table::new(&[
        "ID", "VERSION", "STATE", "EXIT", "HOST", "CREATED", "FINISHED",
    ]);
    for j in jobs {
        t.row(vec![
            j.id.clone(),
            j.version.to_string(),
            j.state.as_str().into(),
            j.exit_code.map_or_else(|| "-".into(), |c| c.to_string()),
            j.host
                .as_ref()
                .map_or_else(|| "-".into(), ToString::to_string),
            time_cell(Some(j.created_at)),
            time_cell(j.finished_at),
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

    fn run_args(args: &[&str]) -> RunArgs {
        let cli = Cli::try_parse_from(args).expect("valid command line");
        let Command::Run(run) = cli.command else {
            panic!("not a run: {:?}", cli.command)
        };
        run
    }

    fn job(v: serde_json::Value) -> Job {
        let mut base = json!({
            "id": "j-42", "app": "busybox", "version": "v1", "state": "succeeded",
            "exit_code": 0, "host": "h1", "created_at": "2026-11-22T06:10:01.5Z",
            "started_at": "2026-11-22T06:10:02Z", "finished_at": "2026-11-22T06:10:03Z"
        });
        for (k, val) in v.as_object().expect("an object") {
            base[k] = val.clone();
        }
        serde_json::from_value(base).expect("a job")
    }

    #[test]
    fn run_builds_the_job_from_its_flags() {
        let a = run_args(&[
            "caas",
            "run",
            "busybox",
            "v1",
            "-i",
            "-m",
            "1g",
            "--cpus",
            "0.5",
            "--timeout",
            "30s",
            "-e",
            "A=b=c",
            "--env",
            "B=",
            "--",
            "sh",
            "-c",
            "echo out; exit 3",
        ]);
        assert_eq!((a.app.as_str(), a.interactive), ("busybox", true));
        let body = job_request(&a.resources, a.version, a.command, a.interactive);
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({
                "version": "v1", "command": ["sh", "-c", "echo out; exit 3"],
                "env": {"A": "b=c", "B": ""}, "memory_mb": 1024, "cpus": 0.5,
                "timeout_s": 30, "stdin": true
            })
        );
    }

    #[test]
    fn run_without_flags_takes_the_api_s_defaults() {
        let a = run_args(&["caas", "run", "busybox", "v1", "--", "cat"]);
        let body = job_request(&a.resources, a.version, a.command, a.interactive);
        assert_eq!(
            (body.memory_mb, body.cpus, body.timeout_s, body.stdin),
            (64, 0.25, 600, false)
        );
        assert_eq!(body.command, ["cat"]);
        assert!(body.env.is_empty());
        // The options after `--` are the command's, not caas's.
        let a = run_args(&["caas", "run", "busybox", "v1", "--", "ls", "-i", "-m"]);
        assert_eq!((a.interactive, a.command.len()), (false, 3));
    }

    #[test]
    fn run_refuses_bad_flags_before_any_request() {
        for bad in [
            &["caas", "run", "busybox", "v1"][..],
            &["caas", "run", "busybox", "v1", "--"],
            &[
                "caas", "run", "busybox", "v1", "-e", "novalue", "--", "true",
            ],
            &["caas", "run", "busybox", "v1", "-e", "=x", "--", "true"],
            &["caas", "run", "busybox", "v1", "-m", "lots", "--", "true"],
            &["caas", "run", "busybox", "v1", "-m", "7000k", "--", "true"],
            &[
                "caas",
                "run",
                "busybox",
                "v1",
                "--timeout",
                "0",
                "--",
                "true",
            ],
            &[
                "caas",
                "run",
                "busybox",
                "v1",
                "--timeout",
                "10d",
                "--",
                "true",
            ],
            &[
                "caas", "run", "busybox", "v1", "--cpus", "many", "--", "true",
            ],
            &["caas", "run", "Bad_App", "v1", "--", "true"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn jobs_subcommands_parse() {
        let cli = Cli::try_parse_from([
            "caas", "jobs", "ls", "busybox", "--limit", "5", "--before", "j-42",
        ])
        .expect("valid");
        let Command::Jobs(JobsCmd::Ls { app, limit, before }) = cli.command else {
            panic!("not jobs ls")
        };
        assert_eq!(
            (app.as_str(), limit, before.as_deref()),
            ("busybox", 5, Some("j-42"))
        );
        let cli =
            Cli::try_parse_from(["caas", "jobs", "logs", "busybox", "j-1", "-f"]).expect("valid");
        assert!(matches!(
            cli.command,
            Command::Jobs(JobsCmd::Logs { follow: true, .. })
        ));
        let cli = Cli::try_parse_from(["caas", "jobs", "show", "busybox", "j-1", "-o", "json"])
            .expect("valid");
        assert!(matches!(cli.command, Command::Jobs(JobsCmd::Show { .. })));
        let cli = Cli::try_parse_from(["caas", "jobs", "rm", "busybox", "j-1"]).expect("valid");
        assert!(matches!(cli.command, Command::Jobs(JobsCmd::Rm { .. })));
        for bad in [
            &["caas", "jobs", "show", "busybox", ".."][..],
            &["caas", "jobs", "show", "busybox", "j/1"],
            &["caas", "jobs", "rm", "busybox"],
            &["caas", "jobs", "ls", "busybox", "--before", "a?b"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_exit_code_is_the_job_s_or_1() {
        assert_eq!(exit_code(Some(0)), 0);
        assert_eq!(exit_code(Some(3)), 3);
        assert_eq!(exit_code(Some(137)), 137);
        assert_eq!(exit_code(Some(256)), 1);
        assert_eq!(exit_code(Some(-1)), 1);
        assert_eq!(exit_code(None), 1);
    }

    #[test]
    fn only_an_ending_the_exit_code_does_not_tell_is_said() {
        assert_eq!(ending_note(&job(json!({}))), None);
        assert_eq!(
            ending_note(&job(json!({"state": "failed", "exit_code": 3}))),
            None
        );
        assert_eq!(
            ending_note(&job(
                json!({"state": "failed", "exit_code": null, "reason": "its container vanished"})
            ))
            .as_deref(),
            Some("job j-42 failed: its container vanished")
        );
        assert_eq!(
            ending_note(&job(json!({"state": "timed_out", "exit_code": 137}))).as_deref(),
            Some("job j-42 timed_out (exit code 137)")
        );
    }

    #[test]
    fn the_job_table_has_the_brief_s_columns() {
        let running = job(json!({"state": "running", "exit_code": null, "finished_at": null}));
        assert_eq!(
            job_table(&[job(json!({"exit_code": 3, "state": "failed"})), running]).render(),
            "ID     VERSION   STATE     EXIT   HOST   CREATED                FINISHED\n\
             j-42   v1        failed    3      h1     2026-11-22T06:10:01Z   2026-11-22T06:10:03Z\n\
             j-42   v1        running   -      h1     2026-11-22T06:10:01Z   -\n"
        );
    }
}
