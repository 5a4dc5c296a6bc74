//! The API's shapes of jobs and their public ids (`j-{n}` for jobs, `w-{n}` for workflows).

use crate::store::JobRow;
use caas_types::api;

/// The public id of job `id`.
pub fn job_ref(id: i64) -> String {
    format!("j-{id}")
}

/// The database id of a public job id (`j-42`); `None` for anything else.
pub fn parse_job_ref(s: &str) -> Option<i64> {
    parse_ref(s, "j-")
}

/// The public id of workflow `id`.
pub fn workflow_ref(id: i64) -> String {
    format!("w-{id}")
}

/// The database id of a public workflow id (`w-7`); `None` for anything else.
pub fn parse_workflow_ref(s: &str) -> Option<i64> {
    parse_ref(s, "w-")
}

fn parse_ref(s: &str, prefix: &str) -> Option<i64> {
    let digits = s.strip_prefix(prefix)?;
    if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|n| *n > 0)
}

/// A job as the API shows it.
pub fn job(row: &JobRow) -> api::Job {
    api::Job {
        id: job_ref(row.id),
        app: row.app.clone(),
        version: row.version.clone(),
        state: row.state,
        exit_code: row.exit_code,
        host: row.host.clone(),
        created_at: row.created_at,
        started_at: row.started_at,
        finished_at: row.finished_at,
        reason: row.reason.clone(),
        schedule: row.schedule.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_back_and_nothing_else_reads() {
        assert_eq!(parse_job_ref(&job_ref(42)), Some(42));
        assert_eq!(parse_workflow_ref(&workflow_ref(7)), Some(7));
        for bad in [
            "42",
            "j-",
            "j-0",
            "j--1",
            "j-1x",
            "w-3",
            "j-99999999999999999999",
            "J-1",
        ] {
            assert_eq!(parse_job_ref(bad), None, "{bad}");
        }
        assert_eq!(parse_workflow_ref("j-3"), None);
    }
}
