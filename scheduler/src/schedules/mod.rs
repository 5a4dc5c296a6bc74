//! Schedules: jobs of an app started on a cron expression (brief, part 2, "Schedules: cron").
//!
//! - [`cron`]: which expressions are accepted, and their due times in UTC.
//! - [`plan`]: whether a schedule runs now (once per due time, the missed-run rule, `forbid`).
//! - [`runner`]: the API's part and the leader's tick; the database decides which scheduler
//!   handles a due time (one `schedule_runs` row per schedule and due time).

pub mod cron;
pub mod plan;
pub mod runner;

pub use runner::Schedules;
