//! Work that runs to completion (brief, part 2, "Jobs", "Workflows", "Schedules"): the request
//! and answer shapes of `/v1/apps/{app}/jobs`, `/v1/workflows` and `/v1/apps/{app}/schedules`.
//! Checks that need more than the shape (command rules, step count, cron syntax, whether an
//! app is visible) are the scheduler's.

use crate::{AppId, HostName, Timestamp, Version};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Memory of a job or step without `memory_mb`, MiB.
pub const DEFAULT_JOB_MEMORY_MB: u64 = 64;
/// CPU of a job or step without `cpus`, cores.
pub const DEFAULT_JOB_CPUS: f64 = 0.25;
/// Time a job or workflow may run without `timeout_s`, seconds.
pub const DEFAULT_JOB_TIMEOUT_S: i64 = 600;

fn default_memory() -> u64 {
    DEFAULT_JOB_MEMORY_MB
}

fn default_cpus() -> f64 {
    DEFAULT_JOB_CPUS
}

fn default_timeout() -> i64 {
    DEFAULT_JOB_TIMEOUT_S
}

/// Where a job or workflow is in its life. The last four are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Accepted, not started yet.
    Pending,
    /// Its container (or every step's) runs.
    Running,
    /// Exited with code 0 (a workflow: every step did).
    Succeeded,
    /// Exited with another code, or could not go on (its container vanished, a step failed).
    Failed,
    /// Killed when its `timeout_s` passed.
    TimedOut,
    /// Killed on request (`DELETE`).
    Cancelled,
}

impl JobState {
    /// True for the states a job never leaves.
    pub fn is_final(self) -> bool {
        !matches!(self, JobState::Pending | JobState::Running)
    }

    /// The state as on the wire and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::TimedOut => "timed_out",
            JobState::Cancelled => "cancelled",
        }
    }
}

impl std::str::FromStr for JobState {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<JobState> {
        Ok(match s {
            "pending" => JobState::Pending,
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "failed" => JobState::Failed,
            "timed_out" => JobState::TimedOut,
            "cancelled" => JobState::Cancelled,
            other => {
                return Err(crate::Error::invalid(
                    "job state",
                    format!("{other:?} is not one of pending, running, succeeded, failed, timed_out, cancelled"),
                ))
            }
        })
    }
}

/// `POST /v1/apps/{app}/jobs`, and the job a schedule starts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CreateJob {
    /// The image tag of the app to run.
    pub version: Version,
    /// The command, overriding the image's `CMD`; at least one argument.
    pub command: Vec<String>,
    /// Environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Memory limit, MiB (claimed on the host like an instance's).
    #[serde(default = "default_memory")]
    pub memory_mb: u64,
    /// CPU limit, cores.
    #[serde(default = "default_cpus")]
    pub cpus: f64,
    /// Longest run, seconds, more than 0; then the job is killed (`timed_out`).
    #[serde(default = "default_timeout")]
    pub timeout_s: i64,
    /// True: the job reads a streamed `PUT .../stdin`.
    #[serde(default)]
    pub stdin: bool,
}

/// A job (`GET /v1/apps/{app}/jobs/{id}`; lists are newest first).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Job {
    /// The job's id.
    pub id: String,
    /// Its app.
    pub app: AppId,
    /// The version it runs.
    pub version: Version,
    /// Where it is.
    pub state: JobState,
    /// The exit code, once it exited (137 after a kill); `null` before.
    pub exit_code: Option<i64>,
    /// The host it runs or ran on; `null` before placement.
    pub host: Option<HostName>,
    /// When it was accepted.
    pub created_at: Timestamp,
    /// When its container started.
    pub started_at: Option<Timestamp>,
    /// When it ended.
    pub finished_at: Option<Timestamp>,
    /// Why it failed when its exit code does not say (its container vanished, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The schedule that started it, for a schedule's run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
}

/// One step of `POST /v1/workflows`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorkflowStepRequest {
    /// The step's name (need not be unique).
    pub name: String,
    /// The app whose image the step runs; the caller must see it.
    pub app: AppId,
    /// The image tag.
    pub version: Version,
    /// The command; at least one argument.
    pub command: Vec<String>,
    /// Memory limit, MiB.
    #[serde(default = "default_memory")]
    pub memory_mb: u64,
    /// CPU limit, cores.
    #[serde(default = "default_cpus")]
    pub cpus: f64,
    /// Environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// `POST /v1/workflows`: 2 to 16 steps run at once as `a | b | c`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkflow {
    /// The workflow's name.
    pub name: String,
    /// The steps, first to last.
    pub steps: Vec<WorkflowStepRequest>,
    /// True: the first step reads a streamed `PUT /v1/workflows/{id}/stdin`.
    #[serde(default)]
    pub stdin: bool,
    /// Longest run of the whole pipeline, seconds, more than 0.
    #[serde(default = "default_timeout")]
    pub timeout_s: i64,
}

/// One step of a workflow as shown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WorkflowStep {
    /// Its name.
    pub name: String,
    /// Where it is.
    pub state: JobState,
    /// Its exit code, once it exited.
    pub exit_code: Option<i64>,
    /// The host it runs or ran on.
    pub host: Option<HostName>,
}

/// A workflow (`GET /v1/workflows/{id}`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Workflow {
    /// The workflow's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Where the whole pipeline is.
    pub state: JobState,
    /// Its steps, first to last.
    pub steps: Vec<WorkflowStep>,
    /// When it was accepted.
    pub created_at: Timestamp,
    /// When it ended.
    pub finished_at: Option<Timestamp>,
}

/// Whether a schedule's run may start while its previous run still runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Concurrency {
    /// Skip the due time (the default).
    #[default]
    Forbid,
    /// Start it anyway.
    Allow,
}

/// `POST /v1/apps/{app}/schedules`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CreateSchedule {
    /// Its name, unique within the app.
    pub name: String,
    /// 5 fields, or 6 with seconds first, UTC.
    pub cron: String,
    /// The job each run starts.
    pub job: CreateJob,
    /// `forbid` (default) or `allow`.
    #[serde(default)]
    pub concurrency: Concurrency,
}

/// A schedule (`GET /v1/apps/{app}/schedules`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Schedule {
    /// Its name.
    pub name: String,
    /// Its cron expression.
    pub cron: String,
    /// The job each run starts.
    pub job: CreateJob,
    /// `forbid` or `allow`.
    pub concurrency: Concurrency,
    /// The next due time.
    pub next_run_at: Option<Timestamp>,
    /// Its latest runs, newest first.
    pub last_runs: Vec<Job>,
    /// When it was made.
    pub created_at: Timestamp,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn a_job_request_takes_the_brief_s_fields_and_defaults() {
        let full: CreateJob = serde_json::from_value(json!({
            "version": "v1", "command": ["sh", "-c", "exit 3"], "env": {"A": "b"},
            "memory_mb": 128, "cpus": 0.5, "timeout_s": 30, "stdin": true
        }))
        .unwrap();
        assert_eq!(full.command, vec!["sh", "-c", "exit 3"]);
        assert_eq!(
            (full.memory_mb, full.cpus, full.timeout_s, full.stdin),
            (128, 0.5, 30, true)
        );
        let short: CreateJob =
            serde_json::from_value(json!({"version": "v1", "command": ["true"]})).unwrap();
        assert_eq!(
            (short.memory_mb, short.cpus, short.timeout_s, short.stdin),
            (64, 0.25, 600, false)
        );
        for bad in [
            json!({"version": "v1"}),
            json!({"command": ["true"]}),
            json!({"version": "v1", "command": ["true"], "instances": 2}),
            json!({"version": "Not A Tag!", "command": ["true"]}),
        ] {
            assert!(
                serde_json::from_value::<CreateJob>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn states_read_and_print_as_the_brief_spells_them() {
        for (s, state, done) in [
            ("pending", JobState::Pending, false),
            ("running", JobState::Running, false),
            ("succeeded", JobState::Succeeded, true),
            ("failed", JobState::Failed, true),
            ("timed_out", JobState::TimedOut, true),
            ("cancelled", JobState::Cancelled, true),
        ] {
            assert_eq!(s.parse::<JobState>().unwrap(), state);
            assert_eq!(state.as_str(), s);
            assert_eq!(serde_json::to_value(state).unwrap(), json!(s));
            assert_eq!(state.is_final(), done);
        }
        assert!("done".parse::<JobState>().is_err());
    }

    #[test]
    fn a_job_shows_the_brief_s_fields() {
        let job = Job {
            id: "tools-j1".into(),
            app: "tools".parse().unwrap(),
            version: "v1".parse().unwrap(),
            state: JobState::Running,
            exit_code: None,
            host: Some("h1".parse().unwrap()),
            created_at: Timestamp::from_nanos(1),
            started_at: None,
            finished_at: None,
            reason: None,
            schedule: None,
        };
        let v = serde_json::to_value(&job).unwrap();
        for key in [
            "id",
            "app",
            "version",
            "state",
            "exit_code",
            "host",
            "created_at",
            "started_at",
            "finished_at",
        ] {
            assert!(v.get(key).is_some(), "{key} missing from {v}");
        }
        assert_eq!(v["exit_code"], json!(null));
        assert!(v.get("reason").is_none());
    }

    #[test]
    fn workflows_and_schedules_take_the_brief_s_examples() {
        let wf: CreateWorkflow = serde_json::from_value(json!({
            "name": "etl",
            "steps": [
                {"name": "gen", "app": "tools", "version": "v1", "command": ["seq", "1", "3"],
                 "memory_mb": 64, "cpus": 0.25, "env": {}},
                {"name": "count", "app": "tools", "version": "v1", "command": ["wc", "-l"]}
            ],
            "stdin": false, "timeout_s": 600
        }))
        .unwrap();
        assert_eq!(wf.steps.len(), 2);
        assert_eq!(wf.steps[1].memory_mb, DEFAULT_JOB_MEMORY_MB);
        let s: CreateSchedule = serde_json::from_value(json!({
            "name": "nightly", "cron": "0 3 * * *",
            "job": {"version": "v1", "command": ["true"]}
        }))
        .unwrap();
        assert_eq!(s.concurrency, Concurrency::Forbid);
        let s: CreateSchedule = serde_json::from_value(json!({
            "name": "often", "cron": "*/5 * * * * *", "concurrency": "allow",
            "job": {"version": "v1", "command": ["true"]}
        }))
        .unwrap();
        assert_eq!(s.concurrency, Concurrency::Allow);
        assert!(serde_json::from_value::<CreateSchedule>(json!({
            "name": "x", "cron": "* * * * *", "concurrency": "sometimes",
            "job": {"version": "v1", "command": ["true"]}
        }))
        .is_err());
    }
}
