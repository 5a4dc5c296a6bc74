//! Autoscaling: deployments whose instance count the platform sets within their `autoscale`
//! bounds, from the demand the gateways report, down to zero for those with `min` 0.
//!
//! - [`demand`]: the gateways' reports, stored and added up over gateways.
//! - [`decide`]: the arithmetic, pure (wanted count, the stable and panic windows, back-off).
//! - [`scaler`]: the leader's loop that turns demand into desired counts and scales.
//! - [`wake`]: which apps may sleep, and their wake nodes in ZooKeeper.
//!
//! The deploy side (the `autoscale` policy, the starting count clamped to `[min, max]`, the
//! stored `desired` count) lives with deployments (`deployments/validate.rs`,
//! `store/deployments.rs`).

pub mod decide;
pub mod demand;
pub mod scaler;
pub mod wake;

pub use crate::store::Demand;
pub use demand::{DemandReports, DEFAULT_STALE_AFTER};
pub use scaler::Autoscaler;
