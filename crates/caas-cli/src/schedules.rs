//! `caas schedules`: jobs an app runs at cron times (UTC), added, listed with their next run
//! and last state, and removed.

use crate::cli::{ConcurrencyArg, Output, ScheduleAddArgs, SchedulesCmd};
use crate::client::Client;
use crate::commands::print_json;
use crate::jobs::job_request;
use crate::output::{out, outln};
use crate::table::{time_cell, Table};
use anyhow::Result;
use caas_types::api::{Concurrency, CreateSchedule, Schedule};
use reqwest::Method;

/// The schedule `args` describe; its runs read no standard input.
fn schedule_request(args: ScheduleAddArgs) -> CreateSchedule {
    CreateSchedule {
        job: job_request(&args.resources, args.version, args.command, false),
        name: args.name,
        cron: args.cron,
        concurrency: match args.concurrency {
            ConcurrencyArg::Forbid => Concurrency::Forbid,
            ConcurrencyArg::Allow => Concurrency::Allow,
        },
    }
}

/// `caas schedules ...`
pub async fn schedules(client: &Client, out: Output, cmd: SchedulesCmd) -> Result<()> {
    match cmd {
        SchedulesCmd::Add(args) => {
            let path = format!("/v1/apps/{}/schedules", args.app);
            let schedule: Schedule = client.post(&path, &schedule_request(args)).await?;
            match out {
                Output::Json => print_json(&schedule)?,
                Output::Table => outln!(
                    "added schedule {} ({}); next run {}",
                    schedule.name,
                    schedule.cron,
                    time_cell(schedule.next_run_at)
                ),
            }
        }
        SchedulesCmd::Ls { app } => {
            let list: Vec<Schedule> = client.get(&format!("/v1/apps/{app}/schedules")).await?;
            match out {
                Output::Json => print_json(&list)?,
                Output::Table => out!("{}", schedule_table(&list).render()),
            }
        }
        SchedulesCmd::Rm { app, name } => {
            client
                .call::<()>(
                    Method::DELETE,
                    &format!("/v1/apps/{app}/schedules/{name}"),
                    None,
                )
                .await?;
            outln!("removed schedule {name}");
        }
    }
    Ok(())
}

/// NAME, CRON, NEXT RUN, LAST STATE (of its newest run; `-` before the first).
fn schedule_table(list: &[Schedule]) -> Table {
    let mut t = Table::new(&["NAME", "CRON", "NEXT RUN", "LAST STATE"]);
    for s in list {
        t.row(vec![
            s.name.clone(),
            s.cron.clone(),
            time_cell(s.next_run_at),
            s.last_runs
                .first()
                .map_or_else(|| "-".into(), |j| j.state.as_str().into()),
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

    fn add_args(args: &[&str]) -> ScheduleAddArgs {
        let cli = Cli::try_parse_from(args).expect("valid command line");
        let Command::Schedules(SchedulesCmd::Add(add)) = cli.command else {
            panic!("not schedules add: {:?}", cli.command)
        };
        add
    }

    #[test]
    fn add_builds_the_schedule_from_its_flags() {
        let a = add_args(&[
            "caas",
            "schedules",
            "add",
            "busybox",
            "nightly",
            "--cron",
            "0 3 * * *",
            "--version",
            "v1",
            "--concurrency",
            "allow",
            "-m",
            "128m",
            "--timeout",
            "1h",
            "-e",
            "MODE=full",
            "--",
            "sh",
            "-c",
            "echo hi",
        ]);
        assert_eq!(a.app.as_str(), "busybox");
        assert_eq!(
            serde_json::to_value(schedule_request(a)).unwrap(),
            json!({
                "name": "nightly", "cron": "0 3 * * *", "concurrency": "allow",
                "job": {
                    "version": "v1", "command": ["sh", "-c", "echo hi"], "env": {"MODE": "full"},
                    "memory_mb": 128, "cpus": 0.25, "timeout_s": 3600, "stdin": false
                }
            })
        );
        let a = add_args(&[
            "caas",
            "schedules",
            "add",
            "busybox",
            "often",
            "--cron",
            "*/5 * * * * *",
            "--version",
            "v2",
            "--",
            "true",
        ]);
        let s = schedule_request(a);
        assert_eq!(s.concurrency, Concurrency::Forbid);
        assert_eq!((s.job.memory_mb, s.job.timeout_s), (64, 600));
    }

    #[test]
    fn schedules_subcommands_refuse_what_is_missing() {
        let cli = Cli::try_parse_from(["caas", "schedules", "ls", "busybox"]).expect("valid");
        assert!(matches!(
            cli.command,
            Command::Schedules(SchedulesCmd::Ls { .. })
        ));
        let cli =
            Cli::try_parse_from(["caas", "schedules", "rm", "busybox", "nightly"]).expect("valid");
        assert!(matches!(
            cli.command,
            Command::Schedules(SchedulesCmd::Rm { .. })
        ));
        let add = ["caas", "schedules", "add", "busybox", "n"];
        for extra in [
            &["--version", "v1", "--", "true"][..],
            &["--cron", "* * * * *", "--", "true"],
            &["--cron", "* * * * *", "--version", "v1"],
            &[
                "--cron",
                "* * * * *",
                "--version",
                "v1",
                "--concurrency",
                "maybe",
                "--",
                "true",
            ],
            &[
                "--cron",
                "* * * * *",
                "--version",
                "v1",
                "-e",
                "X",
                "--",
                "true",
            ],
        ] {
            let mut args = add.to_vec();
            args.extend_from_slice(extra);
            assert!(Cli::try_parse_from(&args).is_err(), "{args:?}");
        }
        assert!(Cli::try_parse_from(["caas", "schedules", "rm", "busybox", "a/b"]).is_err());
    }

    #[test]
    fn the_schedule_table_shows_the_next_run_and_last_state() {
        let s: Schedule = serde_json::from_value(json!({
            "name": "nightly", "cron": "0 3 * * *", "concurrency": "forbid",
            "job": {"version": "v1", "command": ["true"]},
            "next_run_at": "2026-11-23T03:00:00Z",
            "last_runs": [{
                "id": "j-9", "app": "busybox", "version": "v1", "state": "succeeded",
                "exit_code": 0, "host": "h1", "created_at": "2026-11-22T03:00:00Z",
                "started_at": null, "finished_at": null, "schedule": "nightly"
            }],
            "created_at": "2026-11-21T10:00:00Z"
        }))
        .expect("a schedule");
        let mut never = s.clone();
        never.name = "new".into();
        never.last_runs.clear();
        never.next_run_at = None;
        assert_eq!(
            schedule_table(&[s, never]).render(),
            "NAME      CRON        NEXT RUN               LAST STATE\n\
             nightly   0 3 * * *   2026-11-23T03:00:00Z   succeeded\n\
             new       0 3 * * *   -                      -\n"
        );
    }
}
