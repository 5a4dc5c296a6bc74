//! Where hosts and instances are in their lives, as the platform reasons with them.
//!
//! Domain types, apart from the admin API's wire shapes (`api::HostState`,
//! `api::InstanceState`), which the scheduler converts to at its API edge. The scheduler stores
//! them as strings of its own (`store::hosts`, `store::instances`); their serde form is the
//! lowercase name, the same as the wire's.

use serde::{Deserialize, Serialize};

/// A host's scheduling state.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum HostState {
    /// Accepts new instances.
    Ready,
    /// Keeps its instances, takes no new ones.
    Draining,
    /// Unreachable; its instances are re-created elsewhere.
    Down,
}

/// The life-cycle state of an instance.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum InstanceState {
    /// Claimed on a host; nothing started yet.
    Pending,
    /// Container created or starting, not yet healthy.
    Starting,
    /// Healthy and registered in ZooKeeper.
    Running,
    /// Failing its health checks; not in ZooKeeper.
    Unhealthy,
    /// Being drained and stopped.
    Stopping,
}
