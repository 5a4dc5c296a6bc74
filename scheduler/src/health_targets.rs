//! The seam at the health checker: [`HealthTargets`] is what deploys, healing and the
//! reconciler ask of it (start, stop and list checks), implemented by
//! `caas_registry::HealthChecker`. Only the leader's duties run the checker itself.

use caas_registry::{HealthChecker, HealthTarget};
use caas_types::ContainerId;
use std::sync::Arc;

/// The set of instances whose health path is polled.
pub trait HealthTargets: Send + Sync + std::fmt::Debug {
    /// Starts checking `target` (replacing a target of the same container).
    fn watch(&self, target: HealthTarget);
    /// Stops checking a container.
    fn unwatch(&self, container: &ContainerId);
    /// Every target checked now.
    fn watched(&self) -> Vec<HealthTarget>;
}

/// A shared health-target set.
pub type HealthRef = Arc<dyn HealthTargets>;

impl HealthTargets for HealthChecker {
    fn watch(&self, target: HealthTarget) {
        HealthChecker::watch(self, target);
    }
    fn unwatch(&self, container: &ContainerId) {
        HealthChecker::unwatch(self, container);
    }
    fn watched(&self) -> Vec<HealthTarget> {
        HealthChecker::watched(self)
    }
}
