//! Autoscaling: deployments whose instance count the platform sets within their `autoscale`
//! bounds, from the demand the gateways report. So far this holds the demand side
//! ([`demand`]: what the gateways report, stored and added up); the deploy side (the
//! `autoscale` policy, the starting count clamped to `[min, max]`, the `desired` count) lives
//! with deployments (`deployments/validate.rs`, `store/deployments.rs`). The leader's loop that
//! turns demand into a desired count comes next, as another module here.

pub mod demand;

pub use crate::store::Demand;
pub use demand::{DemandReports, DEFAULT_STALE_AFTER};
