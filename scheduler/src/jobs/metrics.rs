//! Counters of run-to-completion work for `/metrics`: jobs and workflows ended (by state), jobs
//! adopted from a dead scheduler, schedule due times (by outcome), and what this process runs.

use caas_types::api::JobState;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// The final states, in the order they are rendered.
const FINAL: [JobState; 4] = [
    JobState::Succeeded,
    JobState::Failed,
    JobState::TimedOut,
    JobState::Cancelled,
];

/// Cheap atomics shared by the job runners, the sweep and the schedules' tick.
#[derive(Debug, Default)]
pub struct JobMetrics {
    jobs: [AtomicU64; 4],
    workflows: [AtomicU64; 4],
    /// Jobs taken over from a scheduler whose heartbeat stopped.
    pub adopted: AtomicU64,
    /// Schedule due times that started a run.
    pub schedule_started: AtomicU64,
    /// Schedule due times skipped (late, or `forbid` while running).
    pub schedule_skipped: AtomicU64,
    /// Schedule due times whose run could not start.
    pub schedule_failed: AtomicU64,
}

fn slot(state: JobState) -> Option<usize> {
    FINAL.iter().position(|s| *s == state)
}

impl JobMetrics {
    /// Counts a job that ended in `state`.
    pub fn job_ended(&self, state: JobState) {
        if let Some(i) = slot(state) {
            self.jobs[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a workflow that ended in `state`.
    pub fn workflow_ended(&self, state: JobState) {
        if let Some(i) = slot(state) {
            self.workflows[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text of these counters; `running` is how many jobs and workflows this
    /// process runs now.
    pub fn render(&self, running: usize) -> String {
        let mut out = String::new();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        for (name, help, counts) in [
            (
                "caas_scheduler_jobs_total",
                "Jobs ended, by state.",
                &self.jobs,
            ),
            (
                "caas_scheduler_workflows_total",
                "Workflows ended, by state.",
                &self.workflows,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (state, c) in FINAL.iter().zip(counts) {
                let _ = writeln!(out, "{name}{{state=\"{}\"}} {}", state.as_str(), get(c));
            }
        }
        let _ = writeln!(out, "# HELP caas_scheduler_jobs_adopted_total Jobs taken over from a scheduler whose heartbeat stopped.\n# TYPE caas_scheduler_jobs_adopted_total counter\ncaas_scheduler_jobs_adopted_total {}", get(&self.adopted));
        let _ = writeln!(out, "# HELP caas_scheduler_schedule_due_total Schedule due times handled by this scheduler, by outcome.\n# TYPE caas_scheduler_schedule_due_total counter");
        for (outcome, c) in [
            ("started", &self.schedule_started),
            ("skipped", &self.schedule_skipped),
            ("failed", &self.schedule_failed),
        ] {
            let _ = writeln!(
                out,
                "caas_scheduler_schedule_due_total{{outcome=\"{outcome}\"}} {}",
                get(c)
            );
        }
        let _ = writeln!(out, "# HELP caas_scheduler_jobs_running Jobs and workflows this scheduler runs now.\n# TYPE caas_scheduler_jobs_running gauge\ncaas_scheduler_jobs_running {running}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ended_work_is_counted_by_state() {
        let m = JobMetrics::default();
        m.job_ended(JobState::Succeeded);
        m.job_ended(JobState::Succeeded);
        m.job_ended(JobState::Running);
        m.workflow_ended(JobState::Cancelled);
        let text = m.render(3);
        assert!(
            text.contains("caas_scheduler_jobs_total{state=\"succeeded\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("caas_scheduler_workflows_total{state=\"cancelled\"} 1"),
            "{text}"
        );
        assert!(text.contains("caas_scheduler_jobs_running 3"), "{text}");
    }
}
