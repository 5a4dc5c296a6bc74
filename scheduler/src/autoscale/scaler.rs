//! The leader's autoscaler: every [`TICK`] (and at once when a gateway reports a held request
//! to this process) it reads the gateways' fresh demand and the running autoscaled
//! deployments, feeds each deployment's [`Window`] and moves its desired count as
//! [`super::decide`] says. A changed count is stored (`deployments.desired`, so a new leader
//! starts from it), recorded as an `autoscale.changed` event with its reason, and carried out
//! by [`Deployments::scale`] in a task of its own under the app's lock (up: claim and start;
//! down: deregister, drain, stop), one scale per deployment at a time.
//!
//! A scale that fails (no host can take the instances, a bad image) is an event and a back-off
//! ([`backoff`]: 2 s doubling to a minute), never a loop of retries. When the app was asleep,
//! its wake node says why (gateways answer 503 with the reason instead of holding requests
//! until they time out) until the back-off ends. A placement failure halves the next step up.
//!
//! One wake-up for one request however many gateways saw it: demand is summed over gateways
//! before it becomes a count, and only the leader scales.

use super::decide::{self, backoff, wanted, Window};
use crate::deployments::Deployments;
use crate::error::{Error, Result};
use crate::events::{EventType, Events};
use crate::routes::RoutesRef;
use crate::store::{Demand, DeploymentRow, Store};
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How often the autoscaler looks at the demand (a held request also kicks it at once).
pub const TICK: Duration = Duration::from_millis(200);

/// How often demand reports of gateways gone for good (and traffic samples past
/// `traffic::plan::KEEP_MS`) are deleted, and how old the reports are then.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
const PRUNE_OLDER_THAN: Duration = Duration::from_secs(3600);

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct AutoscaleMetrics {
    /// Desired counts raised.
    pub up: AtomicU64,
    /// Desired counts lowered.
    pub down: AtomicU64,
    /// Scales that failed (each followed by a back-off).
    pub failed: AtomicU64,
    /// Sleeping apps woken (desired count raised from 0).
    pub woken: AtomicU64,
}

impl AutoscaleMetrics {
    /// The Prometheus text of these counters.
    pub fn render(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let name = "caas_scheduler_autoscale_changes_total";
        let _ = writeln!(out, "# HELP {name} Desired counts changed by the autoscaler, by direction.\n# TYPE {name} counter");
        let _ = writeln!(out, "{name}{{direction=\"up\"}} {}", get(&self.up));
        let _ = writeln!(out, "{name}{{direction=\"down\"}} {}", get(&self.down));
        let _ = writeln!(out, "# HELP caas_scheduler_autoscale_failures_total Autoscaler scales that failed (each backs off).\n# TYPE caas_scheduler_autoscale_failures_total counter\ncaas_scheduler_autoscale_failures_total {}", get(&self.failed));
        let _ = writeln!(out, "# HELP caas_scheduler_autoscale_wakeups_total Sleeping apps woken by demand.\n# TYPE caas_scheduler_autoscale_wakeups_total counter\ncaas_scheduler_autoscale_wakeups_total {}", get(&self.woken));
        out
    }
}

/// Scales autoscaled deployments on the leader.
#[derive(Debug)]
pub struct Autoscaler {
    store: Store,
    deployments: Arc<Deployments>,
    routes: RoutesRef,
    events: Events,
    /// Pinged when a gateway reports a held request to this process.
    kick: Notify,
    /// How long a gateway's report counts.
    stale_after: Duration,
    /// Counters for `/metrics`.
    pub metrics: AutoscaleMetrics,
}

/// What the autoscaler keeps of one deployment between ticks.
#[derive(Debug)]
struct Tracked {
    window: Window,
    /// The desired count as stored; a different stored value was written by someone else (a
    /// hand scale), and the window starts again from it.
    desired: u32,
    /// The scale under way, to this count.
    scaling: Option<(u32, JoinHandle<Result<()>>)>,
    /// Failed scales in a row.
    failures: u32,
    /// No new scale before this.
    retry_at: Option<Instant>,
    /// Most instances one scale adds (halved by a placement failure; `None`: no limit).
    step: Option<u32>,
    /// The app's wake node says waking it failed.
    failing: bool,
}

impl Tracked {
    fn new(now: Instant, desired: u32) -> Tracked {
        Tracked {
            window: Window::seeded(now.into_std(), desired),
            desired,
            scaling: None,
            failures: 0,
            retry_at: None,
            step: None,
            failing: false,
        }
    }
}

impl Autoscaler {
    /// An autoscaler over these parts; reports older than `stale_after` count for nothing.
    pub fn new(
        store: Store,
        deployments: Arc<Deployments>,
        routes: RoutesRef,
        events: Events,
        stale_after: Duration,
    ) -> Autoscaler {
        Autoscaler {
            store,
            deployments,
            routes,
            events,
            kick: Notify::new(),
            stale_after,
            metrics: AutoscaleMetrics::default(),
        }
    }

    /// Looks at the demand at once (a gateway holds a request for a sleeping app). Does
    /// nothing while this process does not lead.
    pub fn kick(&self) {
        self.kick.notify_one();
    }

    /// Runs until `stop` completes (leadership lost or shutdown); a scale under way finishes
    /// first (stopping it half-way would leave instances half started).
    pub async fn run(self: Arc<Self>, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        self.clear_old_failures().await;
        let mut tracked: HashMap<i64, Tracked> = HashMap::new();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pruned = Instant::now();
        loop {
            tokio::select! {
                () = &mut stop => break,
                _ = tick.tick() => {}
                () = self.kick.notified() => {}
            }
            if let Err(e) = self.pass(&mut tracked).await {
                tracing::warn!(error = %e, "autoscaler pass failed");
            }
            if pruned.elapsed() >= PRUNE_EVERY {
                pruned = Instant::now();
                match self.store.prune_demand(PRUNE_OLDER_THAN).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(reports = n, "pruned old demand reports"),
                    Err(e) => tracing::warn!(error = %e, "could not prune demand reports"),
                }
                // The traffic the gateways counted is kept for the longest window served.
                match self
                    .store
                    .prune_traffic(crate::traffic::plan::KEEP_MS)
                    .await
                {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(samples = n, "pruned old traffic samples"),
                    Err(e) => tracing::warn!(error = %e, "could not prune traffic samples"),
                }
            }
        }
        for t in tracked.into_values() {
            if let Some((_, task)) = t.scaling {
                let _ = task.await;
            }
        }
    }

    /// A failure that an earlier leader wrote into a wake node is cleared: this leader tries
    /// afresh on the next request.
    async fn clear_old_failures(&self) {
        let nodes = match self.routes.wake_nodes().await {
            Ok(nodes) => nodes,
            Err(e) => {
                tracing::warn!(error = %e, "autoscaler: cannot read the wake nodes");
                return;
            }
        };
        let failing = nodes
            .into_iter()
            .filter_map(|(app, node)| node.filter(|n| n.failing.is_some()).map(|n| (app, n)));
        for (app, node) in failing {
            if let Err(e) = self.routes.set_wake(&app, &node.version, None).await {
                tracing::warn!(error = %e, %app, "autoscaler: cannot clear a wake failure");
            }
        }
    }

    /// One look at every autoscaled deployment.
    async fn pass(&self, tracked: &mut HashMap<i64, Tracked>) -> Result<()> {
        let demand = self.store.app_demand(self.stale_after).await?;
        let rows = self.store.list_autoscaled_deployments().await?;
        let now = Instant::now();
        let ids: HashSet<i64> = rows.iter().map(|r| r.id).collect();
        // Deployments gone (undeployed, rolled) are forgotten once no scale of theirs runs.
        tracked.retain(|id, t| {
            ids.contains(id) || t.scaling.as_ref().is_some_and(|(_, h)| !h.is_finished())
        });
        for row in &rows {
            let d = demand.get(&row.spec.app).copied().unwrap_or_default();
            self.step(row, d, now, tracked).await;
        }
        Ok(())
    }

    /// One deployment's tick.
    async fn step(
        &self,
        row: &DeploymentRow,
        demand: Demand,
        now: Instant,
        tracked: &mut HashMap<i64, Tracked>,
    ) {
        let Some(policy) = row.spec.autoscale else {
            return;
        };
        let stored = row.desired.unwrap_or(row.spec.instances);
        let t = tracked
            .entry(row.id)
            .or_insert_with(|| Tracked::new(now, stored));
        t.window
            .observe(now.into_std(), wanted(demand, policy.target_concurrency));
        if let Some((to, task)) = t.scaling.take() {
            if !task.is_finished() {
                t.scaling = Some((to, task));
                return;
            }
            let result = match task.await {
                Ok(r) => r,
                Err(e) => Err(Error::Incomplete(format!("the scale task ended: {e}"))),
            };
            self.scaled(row, t, to, result, now).await;
            // Decide again on the next tick, from the row as the scale left it.
            return;
        }
        if stored != t.desired {
            // Scaled by hand (within the bounds): start from that count.
            t.window = Window::seeded(now.into_std(), stored);
            t.desired = stored;
        }
        if t.retry_at.is_some_and(|at| now < at) {
            return;
        }
        t.retry_at = None;
        if t.failing {
            // The back-off is over: requests are held again, and one wakes it anew.
            t.failing = false;
            if let Err(e) = self
                .routes
                .set_wake(&row.spec.app, &row.spec.version, None)
                .await
            {
                tracing::warn!(error = %e, app = %row.spec.app, "autoscaler: cannot clear a wake failure");
            }
        }
        let next = decide::desired(&policy, &mut t.window, now.into_std());
        if next != t.desired {
            match self.store.set_deployment_desired(row.id, next).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(error = %e, deployment = row.id, "autoscaler: cannot store a desired count");
                    return;
                }
            }
            let why = decide::reason(&policy, demand, t.desired, next);
            let counter = if next > t.desired {
                &self.metrics.up
            } else {
                &self.metrics.down
            };
            counter.fetch_add(1, Ordering::Relaxed);
            if t.desired == 0 {
                self.metrics.woken.fetch_add(1, Ordering::Relaxed);
            }
            tracing::info!(app = %row.spec.app, version = %row.spec.version, from = t.desired, to = next, reason = %why, "autoscaling");
            let fields = serde_json::json!({"version": row.spec.version, "deployment": row.id,
                "from": t.desired, "to": next, "reason": why});
            self.events
                .emit(EventType::AutoscaleChanged, Some(&row.spec.app), fields)
                .await;
            t.desired = next;
        }
        let current = row.spec.instances;
        if next == current {
            return;
        }
        let to = match t.step {
            Some(step) if next > current => next.min(current.saturating_add(step)),
            _ => next,
        };
        let (deployments, app, version) = (
            self.deployments.clone(),
            row.spec.app.clone(),
            row.spec.version.clone(),
        );
        let task = tokio::spawn(async move {
            let _app = deployments.lock_app(&app).await;
            deployments
                .autoscale_to(&app, &version, to)
                .await
                .map(|_| ())
        });
        t.scaling = Some((to, task));
    }

    /// Records how a scale to `to` ended: success resets the back-off (and any failure in the
    /// wake node); a failure is an event and a back-off, and a sleeping app's wake node says
    /// why.
    async fn scaled(
        &self,
        row: &DeploymentRow,
        t: &mut Tracked,
        to: u32,
        result: Result<()>,
        now: Instant,
    ) {
        let e = match result {
            Ok(()) => {
                t.failures = 0;
                t.step = None;
                return;
            }
            Err(e) => e,
        };
        self.metrics.failed.fetch_add(1, Ordering::Relaxed);
        t.failures = t.failures.saturating_add(1);
        let wait = backoff(t.failures);
        t.retry_at = Some(now + wait);
        // The stored row may be older than the scale; read what runs now.
        let current = match self.store.get_deployment_by_id(row.id).await {
            Ok(r) => r.spec.instances,
            Err(_) => row.spec.instances,
        };
        if matches!(e, Error::Unplaceable(_)) && to > current {
            t.step = Some(((to - current) / 2).max(1));
        }
        let why = e.to_string();
        tracing::warn!(app = %row.spec.app, version = %row.spec.version, to, error = %why, retry_in_s = wait.as_secs(), "autoscaler: scale failed; backing off");
        let fields = serde_json::json!({"version": row.spec.version, "deployment": row.id,
            "from": current, "to": to, "error": why, "retry_in_s": wait.as_secs()});
        self.events
            .emit(EventType::AutoscaleChanged, Some(&row.spec.app), fields)
            .await;
        if current == 0 && row.spec.autoscale.is_some_and(|a| a.min == 0) {
            match self
                .routes
                .set_wake(&row.spec.app, &row.spec.version, Some(&why))
                .await
            {
                Ok(()) => t.failing = true,
                Err(z) => {
                    tracing::warn!(error = %z, app = %row.spec.app, "autoscaler: cannot record the wake failure")
                }
            }
        }
    }
}
