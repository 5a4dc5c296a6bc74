//! The leader's duties: while this process leads, run the health checker, act on its events
//! and on workers' container exits and starts (`healing::WorkerWatch`), keep its targets in sync
//! with the database, reconcile at start and periodically, and after
//! each reconciliation recycle instances past their age ([`Recycler`]), collect the apps' logs,
//! deliver webhooks, sweep jobs (adopt those whose scheduler died, release leftovers),
//! start schedules' runs, scale autoscaled deployments with the demand, and watch the hosts'
//! engines (`host_watch.rs`: a host whose engine stops answering is marked down, and ready
//! again when it answers; each such change runs a reconciliation at once). They stop when
//! leadership is lost or on shutdown.

use crate::autoscale::Autoscaler;
use crate::control::ControlPlane;
use crate::events::webhooks::Webhooks;
use crate::healing::{Healer, WorkerEvent, WorkerWatch};
use crate::host_watch::HostWatch;
use crate::jobs::Jobs;
use crate::logs::LogCollector;
use crate::reconcile::Reconciler;
use crate::recycle::Recycler;
use crate::schedules::Schedules;
use caas_registry::{HealthChecker, HealthEvent};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// How often the leader syncs the health checker's targets with the database, so instances
/// deployed by other scheduler processes are checked within this time.
const HEALTH_SYNC: Duration = Duration::from_secs(2);

/// What only the leader does, with only what that needs.
#[derive(Debug)]
pub struct LeaderDuties {
    healer: Arc<Healer>,
    reconciler: Arc<Reconciler>,
    /// Runs a recycling pass after each reconciliation, in its own task (replacements take
    /// a while, and health events must not wait).
    recycler: Arc<Recycler>,
    checker: HealthChecker,
    logs: Arc<LogCollector>,
    webhooks: Arc<Webhooks>,
    /// Adopts jobs whose scheduler died, releases leftovers, deletes old jobs.
    jobs: Arc<Jobs>,
    /// Starts schedules' runs.
    schedules: Arc<Schedules>,
    /// Scales autoscaled deployments with the gateways' demand.
    autoscaler: Arc<Autoscaler>,
    /// Pings the hosts' engines, marks hosts down and ready again.
    host_watch: Arc<HostWatch>,
    reconcile_every: Duration,
    /// Shared with the control plane, whose `/healthz` reports it.
    leading: Arc<AtomicBool>,
}

impl LeaderDuties {
    /// The duties of `control`'s leader; `checker` polls health paths and reports transitions
    /// on the receiver given to [`LeaderDuties::run`].
    pub fn new(control: &ControlPlane, checker: HealthChecker) -> LeaderDuties {
        LeaderDuties {
            healer: control.healer.clone(),
            reconciler: control.reconciler.clone(),
            recycler: Arc::new(Recycler::new(
                control.store.clone(),
                control.deployments.clone(),
            )),
            checker,
            logs: Arc::new(LogCollector::new(
                control.store.clone(),
                control.engines.clone(),
                &control.config,
                control.logs_live.clone(),
            )),
            webhooks: control.webhooks.clone(),
            jobs: control.jobs.clone(),
            schedules: control.schedules.clone(),
            autoscaler: control.autoscaler.clone(),
            host_watch: control.host_watch.clone(),
            reconcile_every: Duration::from_secs(control.config.reconcile_secs.max(1)),
            leading: control.leader_flag(),
        }
    }

    /// Runs the duties whenever `leader` says this process leads, until `stop`.
    pub async fn run(
        self,
        mut leader: watch::Receiver<bool>,
        mut events: mpsc::Receiver<HealthEvent>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                ok = until(&mut leader, true) => if !ok { return },
                _ = until(&mut stop, true) => return,
            }
            tracing::info!(
                "this scheduler is the leader: running health checks and the reconciler"
            );
            self.leading.store(true, Ordering::Relaxed);
            let mut lost = leader.clone();
            let mut stop_checker = stop.clone();
            let checker_task = tokio::spawn(self.checker.clone().run(async move {
                tokio::select! {
                    _ = until(&mut lost, false) => {}
                    _ = until(&mut stop_checker, true) => {}
                }
            }));
            let logs_task = tokio::spawn(self.logs.clone().run(ended(&leader, &stop)));
            let webhooks_task = tokio::spawn(self.webhooks.clone().run(ended(&leader, &stop)));
            let jobs_task = tokio::spawn(self.jobs.clone().run_sweeps(ended(&leader, &stop)));
            let schedules_task = tokio::spawn(self.schedules.clone().run(ended(&leader, &stop)));
            let autoscaler_task = tokio::spawn(self.autoscaler.clone().run(ended(&leader, &stop)));
            let host_watch_task = tokio::spawn(self.host_watch.clone().run(ended(&leader, &stop)));
            // Workers' exits and starts, from watchers that `sync_workers` keeps one per engine
            // and that stop with `workers` when this leadership ends.
            let (worker_tx, mut worker_events) = mpsc::channel::<WorkerEvent>(256);
            let mut workers = WorkerWatch::new(worker_tx);
            let mut sync = tokio::time::interval(HEALTH_SYNC);
            let mut reconcile = tokio::time::interval(self.reconcile_every);
            let mut recycling: Option<tokio::task::JoinHandle<()>> = None;
            loop {
                tokio::select! {
                    _ = until(&mut leader, false) => break,
                    _ = until(&mut stop, true) => break,
                    Some(ev) = events.recv() => {
                        if let Err(e) = self.healer.on_health_event(ev).await {
                            tracing::warn!(error = %e, "could not act on a health event");
                        }
                    }
                    Some(ev) = worker_events.recv() => {
                        if let Err(e) = self.healer.on_worker_event(ev).await {
                            tracing::warn!(error = %e, "could not act on a worker's exit or start");
                        }
                    }
                    _ = sync.tick() => {
                        if let Err(e) = self.healer.sync_health_targets().await {
                            tracing::warn!(error = %e, "could not sync health-check targets");
                        }
                        if let Err(e) = self.healer.sync_workers(&mut workers).await {
                            tracing::warn!(error = %e, "could not sync the workers' state");
                        }
                    }
                    _ = reconcile.tick() => self.reconcile(&mut recycling).await,
                    // A host went down (its instances are to be replaced) or came back (what it
                    // still runs of them is to be removed): now, not at the next tick.
                    () = self.host_watch.changed() => {
                        tracing::info!("a host's state changed: reconciling now");
                        self.reconcile(&mut recycling).await;
                        reconcile.reset();
                    }
                }
            }
            self.leading.store(false, Ordering::Relaxed);
            drop(workers);
            let _ = checker_task.await;
            // A replacement under way finishes (stopping it half-way would leave an extra
            // instance); no new pass starts until this process leads again.
            if let Some(t) = recycling {
                let _ = t.await;
            }
            let _ = logs_task.await;
            let _ = webhooks_task.await;
            let _ = jobs_task.await;
            let _ = schedules_task.await;
            let _ = autoscaler_task.await;
            let _ = host_watch_task.await;
            if *stop.borrow() {
                return;
            }
            tracing::warn!("this scheduler lost the leadership");
        }
    }

    /// One reconciliation pass, then a recycling pass in its own task unless one still runs.
    async fn reconcile(&self, recycling: &mut Option<tokio::task::JoinHandle<()>>) {
        if let Err(e) = self.reconciler.reconcile().await {
            tracing::warn!(error = %e, "reconciliation pass failed");
        }
        if recycling.as_ref().is_none_or(|t| t.is_finished()) {
            let pass = self.recycler.clone().pass();
            *recycling = Some(tokio::spawn(async move {
                if let Err(e) = pass.await {
                    tracing::warn!(error = %e, "recycling pass failed");
                }
            }));
        }
    }
}

/// Completes when the leadership is lost or the scheduler stops.
fn ended(leader: &watch::Receiver<bool>, stop: &watch::Receiver<bool>) -> impl Future<Output = ()> {
    let (mut leader, mut stop) = (leader.clone(), stop.clone());
    async move {
        tokio::select! {
            _ = until(&mut leader, false) => {}
            _ = until(&mut stop, true) => {}
        }
    }
}

/// Waits until `rx` holds `want`; false if its sender is gone.
async fn until(rx: &mut watch::Receiver<bool>, want: bool) -> bool {
    rx.wait_for(|v| *v == want).await.is_ok()
}
