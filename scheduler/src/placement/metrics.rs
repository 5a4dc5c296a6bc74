//! Placement counters of one scheduler process: plain atomics the admin API exports as
//! Prometheus metrics (`caas_scheduler_placements_total`, ...), and the benchmark reads.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters, shared by every clone of a `Store`.
#[derive(Debug, Default)]
pub struct PlacementMetrics {
    placements: AtomicU64,
    conflicts: AtomicU64,
    retries: AtomicU64,
    unplaceable: AtomicU64,
    gave_up: AtomicU64,
    releases: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Instances claimed (one per committed claim transaction).
    pub placements: u64,
    /// Optimistic claims that lost: the host's `version` had moved since it was read.
    pub conflicts: u64,
    /// Claim or release attempts made again after a conflict, a deadlock, a lock-wait timeout
    /// or a host port taken in between.
    pub retries: u64,
    /// Requests refused because no host could take them.
    pub unplaceable: u64,
    /// Requests that ran out of attempts under contention.
    pub gave_up: u64,
    /// Instances released.
    pub releases: u64,
}

impl PlacementMetrics {
    /// The counters now.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            placements: self.placements.load(Ordering::Relaxed),
            conflicts: self.conflicts.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            unplaceable: self.unplaceable.load(Ordering::Relaxed),
            gave_up: self.gave_up.load(Ordering::Relaxed),
            releases: self.releases.load(Ordering::Relaxed),
        }
    }

    /// Counts one committed claim (also called by the benchmark's pessimistic baseline).
    pub fn placed(&self) {
        self.placements.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn conflict(&self) {
        self.conflicts.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }
    /// Counts one request refused because no host could take it (also called by the
    /// benchmark's pessimistic baseline).
    pub fn unplaceable(&self) {
        self.unplaceable.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn gave_up(&self) {
        self.gave_up.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn released(&self) {
        self.releases.fetch_add(1, Ordering::Relaxed);
    }
}
