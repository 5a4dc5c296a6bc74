//! The scheduler's Prometheus metrics, rendered by hand in the text exposition format:
//! deploys (by outcome) and their duration, instances started/stopped, health transitions,
//! restarts, reconciler repairs, registry notifications and auto-deploys (by result), and the
//! placement counters of the store.

use crate::placement::PlacementMetrics;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the deploy-duration histogram, seconds.
const BUCKETS: [f64; 10] = [0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0];

/// Counters of deploy work; cheap atomics, shared by every task.
#[derive(Debug, Default)]
pub struct DeployMetrics {
    /// Deploys that succeeded.
    pub deploys_ok: AtomicU64,
    /// Deploys that failed and were rolled back.
    pub deploys_failed: AtomicU64,
    /// Instances started and registered.
    pub instances_started: AtomicU64,
    /// Instances drained, stopped and released.
    pub instances_stopped: AtomicU64,
    /// Health transitions to unhealthy.
    pub health_unhealthy: AtomicU64,
    /// Health transitions to healthy.
    pub health_healthy: AtomicU64,
    /// In-place restarts after failed health checks.
    pub restarts: AtomicU64,
    /// Replacements after failed health checks or lost hosts.
    pub replacements: AtomicU64,
    /// Repairs made by the reconciler (rollbacks, orphans, stale nodes, re-creations).
    pub reconciler_repairs: AtomicU64,
    /// Registry events recorded as a pushed tag.
    pub registry_recorded: AtomicU64,
    /// Registry events that are not a tagged manifest push (pulls, blobs, pushes by digest).
    pub registry_ignored: AtomicU64,
    /// Tagged pushes whose repository, tag or digest caas cannot accept.
    pub registry_invalid: AtomicU64,
    /// Tagged pushes to a repository that is no app.
    pub registry_unknown_app: AtomicU64,
    /// Tagged pushes by an actor not allowed to push that repository (not recorded).
    pub registry_not_allowed: AtomicU64,
    /// Tagged pushes that could not be recorded (database down); the registry redelivers them.
    pub registry_failed: AtomicU64,
    /// Auto-deploy rolls that finished.
    pub auto_deploys_ok: AtomicU64,
    /// Auto-deploy rolls that failed (the old version kept running).
    pub auto_deploys_failed: AtomicU64,
    /// Pushes to auto-deploy apps with nothing to roll (same version, nothing running, superseded).
    pub auto_deploys_skipped: AtomicU64,
    duration_buckets: [AtomicU64; BUCKETS.len()],
    duration_count: AtomicU64,
    duration_sum_micros: AtomicU64,
}

impl DeployMetrics {
    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a deploy's duration.
    pub fn observe_deploy(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.duration_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.duration_count.fetch_add(1, Ordering::Relaxed);
        self.duration_sum_micros.fetch_add(
            d.as_micros().try_into().unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// The Prometheus text of these metrics and the placement counters.
    pub fn render(&self, placement: &PlacementMetrics) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = writeln!(out, "# HELP caas_scheduler_deploys_total Deploys by outcome.\n# TYPE caas_scheduler_deploys_total counter");
        let _ = writeln!(
            out,
            "caas_scheduler_deploys_total{{outcome=\"ok\"}} {}",
            get(&self.deploys_ok)
        );
        let _ = writeln!(
            out,
            "caas_scheduler_deploys_total{{outcome=\"failed\"}} {}",
            get(&self.deploys_failed)
        );
        counter(
            &mut out,
            "caas_scheduler_instances_started_total",
            "Instances started and registered.",
            get(&self.instances_started),
        );
        counter(
            &mut out,
            "caas_scheduler_instances_stopped_total",
            "Instances drained, stopped and released.",
            get(&self.instances_stopped),
        );
        let _ = writeln!(out, "# HELP caas_scheduler_health_transitions_total Health flips seen by the checker.\n# TYPE caas_scheduler_health_transitions_total counter");
        let _ = writeln!(
            out,
            "caas_scheduler_health_transitions_total{{to=\"unhealthy\"}} {}",
            get(&self.health_unhealthy)
        );
        let _ = writeln!(
            out,
            "caas_scheduler_health_transitions_total{{to=\"healthy\"}} {}",
            get(&self.health_healthy)
        );
        counter(
            &mut out,
            "caas_scheduler_restarts_total",
            "In-place restarts of unhealthy instances.",
            get(&self.restarts),
        );
        counter(
            &mut out,
            "caas_scheduler_replacements_total",
            "Instances replaced on a new placement.",
            get(&self.replacements),
        );
        counter(
            &mut out,
            "caas_scheduler_reconciler_repairs_total",
            "Repairs made by the reconciler.",
            get(&self.reconciler_repairs),
        );
        let _ = writeln!(out, "# HELP caas_scheduler_registry_events_total Registry notification events by result.\n# TYPE caas_scheduler_registry_events_total counter");
        for (result, c) in [
            ("recorded", &self.registry_recorded),
            ("ignored", &self.registry_ignored),
            ("invalid", &self.registry_invalid),
            ("unknown_app", &self.registry_unknown_app),
            ("not_allowed", &self.registry_not_allowed),
            ("failed", &self.registry_failed),
        ] {
            let _ = writeln!(
                out,
                "caas_scheduler_registry_events_total{{result=\"{result}\"}} {}",
                get(c)
            );
        }
        let _ = writeln!(out, "# HELP caas_scheduler_auto_deploys_total Rolls to a pushed tag by result.\n# TYPE caas_scheduler_auto_deploys_total counter");
        for (result, c) in [
            ("ok", &self.auto_deploys_ok),
            ("failed", &self.auto_deploys_failed),
            ("skipped", &self.auto_deploys_skipped),
        ] {
            let _ = writeln!(
                out,
                "caas_scheduler_auto_deploys_total{{result=\"{result}\"}} {}",
                get(c)
            );
        }
        let p = placement.snapshot();
        counter(
            &mut out,
            "caas_scheduler_placements_total",
            "Instances placed (claims committed).",
            p.placements,
        );
        counter(
            &mut out,
            "caas_scheduler_placement_conflicts_total",
            "Optimistic claims lost to another scheduler.",
            p.conflicts,
        );
        counter(
            &mut out,
            "caas_scheduler_placement_retries_total",
            "Placement transactions retried.",
            p.retries,
        );
        counter(
            &mut out,
            "caas_scheduler_placement_unplaceable_total",
            "Requests no host could take.",
            p.unplaceable,
        );
        let _ = writeln!(out, "# HELP caas_scheduler_deploy_duration_seconds Time from request to all instances registered.\n# TYPE caas_scheduler_deploy_duration_seconds histogram");
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "caas_scheduler_deploy_duration_seconds_bucket{{le=\"{b}\"}} {}",
                get(&self.duration_buckets[i])
            );
        }
        let count = get(&self.duration_count);
        let _ = writeln!(
            out,
            "caas_scheduler_deploy_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "caas_scheduler_deploy_duration_seconds_sum {}",
            get(&self.duration_sum_micros) as f64 / 1e6
        );
        let _ = writeln!(out, "caas_scheduler_deploy_duration_seconds_count {count}");
        out
    }
}
