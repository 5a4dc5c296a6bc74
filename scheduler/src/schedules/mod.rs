//! Schedules: jobs of an app started on a cron expression (brief, part 2, "Schedules: cron").
//!
//! So far the pure parts: [`cron`] (which expressions are accepted, and their due times in UTC)
//! and [`plan`] (whether a schedule runs now: once per due time, the missed-run rule,
//! `forbid`). The runner on the leader, the table with its unique (schedule, due time) key and
//! the API come with jobs (issue #14).

pub mod cron;
pub mod plan;
