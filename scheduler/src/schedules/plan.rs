//! When a schedule runs, as a pure function of its cron expression, the last due time it
//! handled and the clock: the leader asks this on every tick, and the database then decides
//! which scheduler starts the run (a unique key on schedule and due time), so a due time
//! starts once however many schedulers ask.
//!
//! The missed-run rule: due times that passed while no scheduler led are not all started; only
//! the latest one is, once, and only if it is less than one interval late (the interval being
//! the time from the due time before it). A `forbid` schedule skips a due time while its
//! previous run is still running; a skipped due time is handled all the same.

use super::cron::CronExpr;
use caas_types::Timestamp;

/// What a schedule does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nothing is due since the last handled due time.
    Wait,
    /// Start a run for this due time (then record it as handled).
    Run(Timestamp),
    /// This due time is handled without a run: too late, or the previous run is still running
    /// under `forbid`.
    Skip(Timestamp, SkipReason),
}

/// Why a due time got no run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// More than one interval passed since it was due (no scheduler led meanwhile).
    Late,
    /// `concurrency: forbid` and the previous run is still running.
    StillRunning,
}

/// Whether a schedule with `cron`, whose last handled due time is `handled` (its creation
/// time before its first run), runs at `now`; `busy` is true when its previous run is still
/// running and `forbid` when it forbids overlapping runs.
pub fn decide(
    cron: &CronExpr,
    handled: Timestamp,
    now: Timestamp,
    busy: bool,
    forbid: bool,
) -> Decision {
    let Some(due) = cron.last_at_or_before(now) else {
        return Decision::Wait;
    };
    if due <= handled {
        return Decision::Wait;
    }
    let late = now.as_nanos().saturating_sub(due.as_nanos());
    let interval = cron
        .last_before(due)
        .map(|before| due.as_nanos().saturating_sub(before.as_nanos()));
    if interval.is_some_and(|i| late >= i) {
        return Decision::Skip(due, SkipReason::Late);
    }
    if busy && forbid {
        return Decision::Skip(due, SkipReason::StillRunning);
    }
    Decision::Run(due)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::schedules::cron::tests::at;

    #[test]
    fn a_due_time_runs_once() {
        let hourly = CronExpr::parse("0 * * * *").unwrap();
        let created = at("2026-12-02T10:20:00Z");
        assert_eq!(
            decide(&hourly, created, at("2026-12-02T10:59:59Z"), false, true),
            Decision::Wait
        );
        let now = at("2026-12-02T11:00:00.2Z");
        let due = at("2026-12-02T11:00:00Z");
        assert_eq!(
            decide(&hourly, created, now, false, true),
            Decision::Run(due)
        );
        // Handled: the next tick waits.
        assert_eq!(
            decide(&hourly, due, at("2026-12-02T11:00:01Z"), false, true),
            Decision::Wait
        );
    }

    #[test]
    fn after_a_gap_only_the_latest_due_time_runs_if_less_than_an_interval_late() {
        let hourly = CronExpr::parse("0 * * * *").unwrap();
        // No leader from 10:30 to 13:50: 11:00, 12:00 and 13:00 passed; 13:00 runs, once.
        assert_eq!(
            decide(
                &hourly,
                at("2026-12-02T10:00:00Z"),
                at("2026-12-02T13:50:00Z"),
                false,
                true
            ),
            Decision::Run(at("2026-12-02T13:00:00Z"))
        );
        // Weekdays at 03:00: Friday's run is 55 h late on Sunday, more than its 24 h interval.
        let weekdays = CronExpr::parse("0 3 * * MON-FRI").unwrap();
        assert_eq!(
            decide(
                &weekdays,
                at("2026-12-03T03:00:00Z"),
                at("2026-12-06T10:00:00Z"),
                false,
                true
            ),
            Decision::Skip(at("2026-12-04T03:00:00Z"), SkipReason::Late)
        );
        // ... but Monday's run, 7 h late, is within the 72 h since Friday's.
        assert_eq!(
            decide(
                &weekdays,
                at("2026-12-04T03:00:00Z"),
                at("2026-12-07T10:00:00Z"),
                false,
                true
            ),
            Decision::Run(at("2026-12-07T03:00:00Z"))
        );
    }

    #[test]
    fn forbid_skips_while_the_previous_run_runs_and_allow_does_not() {
        let every_5s = CronExpr::parse("*/5 * * * * *").unwrap();
        let handled = at("2026-12-02T10:00:00Z");
        let now = at("2026-12-02T10:00:05.1Z");
        let due = at("2026-12-02T10:00:05Z");
        assert_eq!(
            decide(&every_5s, handled, now, true, true),
            Decision::Skip(due, SkipReason::StillRunning)
        );
        assert_eq!(
            decide(&every_5s, handled, now, true, false),
            Decision::Run(due)
        );
        assert_eq!(
            decide(&every_5s, handled, now, false, true),
            Decision::Run(due)
        );
    }
}
