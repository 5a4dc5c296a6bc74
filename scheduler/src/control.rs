//! The control plane's wiring: one of each part, built over the same handles. Nothing here
//! decides anything; each part holds only the dependencies it needs, and new kinds of work
//! (jobs, workflows, autoscaling) are added as parts next to [`Deployments`].

use crate::app_config::crypto::SecretsKey;
use crate::app_config::AppConfigs;
use crate::apps::Apps;
use crate::autodeploy::AutoDeployer;
use crate::autoscale::{Autoscaler, DemandReports, DEFAULT_STALE_AFTER};
use crate::blacklist::Blacklist;
use crate::config::Config;
use crate::deployments::Deployments;
use crate::engine::Engines;
use crate::error::Result;
use crate::events::webhooks::Webhooks;
use crate::events::Events;
use crate::fence::Fence;
use crate::healing::Healer;
use crate::health_targets::HealthRef;
use crate::host_watch::HostWatch;
use crate::jobs::Jobs;
use crate::lifecycle::Lifecycle;
use crate::metrics::DeployMetrics;
use crate::reconcile::Reconciler;
use crate::releases::Releases;
use crate::routes::RoutesRef;
use crate::schedules::Schedules;
use crate::store::Store;
use crate::traffic::Traffic;
use caas_types::HostName;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Every part of the scheduler, wired.
#[derive(Debug)]
pub struct ControlPlane {
    /// Configuration.
    pub config: Arc<Config>,
    /// The database.
    pub store: Store,
    /// The service registry (ZooKeeper).
    pub routes: RoutesRef,
    /// One engine client per host.
    pub engines: Arc<Engines>,
    /// The instances whose health is checked (the leader runs the checker).
    pub health: HealthRef,
    /// Counters for `/metrics`.
    pub metrics: Arc<DeployMetrics>,
    /// One instance's life: start, replace, remove.
    pub lifecycle: Arc<Lifecycle>,
    /// Deploy, scale, undeploy.
    pub deployments: Arc<Deployments>,
    /// Apps and custom domains.
    pub apps: Apps,
    /// Apps' config versions and secrets.
    pub app_configs: Arc<AppConfigs>,
    /// The gateway blacklist.
    pub blacklist: Blacklist,
    /// Acts on health transitions (leader).
    pub healer: Arc<Healer>,
    /// Repairs drift between the database, the engines and ZooKeeper (leader).
    pub reconciler: Arc<Reconciler>,
    /// Releases (deploys pinned by digest) and rollbacks.
    pub releases: Arc<Releases>,
    /// Rolls auto-deploy apps to pushed tags.
    pub autodeploy: Arc<AutoDeployer>,
    /// What happened to apps, stored and followed.
    pub events: Events,
    /// Where events are POSTed (the leader delivers).
    pub webhooks: Arc<Webhooks>,
    /// Jobs and workflows: run to completion.
    pub jobs: Arc<Jobs>,
    /// Cron schedules of jobs (the leader ticks them).
    pub schedules: Arc<Schedules>,
    /// The gateways' demand reports (the autoscaler's input).
    pub demand: DemandReports,
    /// The traffic the gateways counted, per app (stored with their demand reports).
    pub traffic: Traffic,
    /// Sets autoscaled deployments' counts from the demand (the leader runs it).
    pub autoscaler: Arc<Autoscaler>,
    /// Marks hosts whose engine stops answering down, and ready again (the leader runs it).
    pub host_watch: Arc<HostWatch>,
    leader: Arc<AtomicBool>,
    /// Checked before each repair (reconciler, healing): armed with the election at start.
    pub fence: Arc<Fence>,
    /// True once the scheduler shuts down: answers that stream until the client leaves (log
    /// follows) end, so a graceful shutdown does not wait on them.
    closing: tokio::sync::watch::Sender<bool>,
    /// What this process's log collector stored at each commit, chunk ids and lines, so this
    /// process's log follows take new lines from here at once instead of reading the table.
    pub logs_live: tokio::sync::broadcast::Sender<Arc<crate::store::StoredBatch>>,
}

impl ControlPlane {
    /// Wires every part over these handles; `secrets_key` seals and opens apps' secrets.
    pub fn new(
        config: Arc<Config>,
        store: Store,
        routes: RoutesRef,
        engines: Arc<Engines>,
        health: HealthRef,
        secrets_key: Option<SecretsKey>,
    ) -> Arc<ControlPlane> {
        let metrics = Arc::new(DeployMetrics::default());
        let events = Events::new(store.clone(), config.events_keep);
        let webhooks = Arc::new(Webhooks::new(store.clone(), secrets_key.clone()));
        let app_configs = Arc::new(AppConfigs::new(store.clone(), secrets_key));
        let lifecycle = Arc::new(Lifecycle::new(
            config.clone(),
            store.clone(),
            engines.clone(),
            routes.clone(),
            health.clone(),
            metrics.clone(),
            app_configs.clone(),
            events.clone(),
        ));
        let deployments = Arc::new(Deployments::new(
            config.clone(),
            store.clone(),
            lifecycle.clone(),
            metrics.clone(),
            events.clone(),
        ));
        let apps = Apps::new(
            store.clone(),
            routes.clone(),
            deployments.clone(),
            config
                .purge_images
                .then(|| crate::image_digest::ImageDigests::new(&config)),
        );
        let fence = Arc::new(Fence::default());
        let healer = Arc::new(Healer::new(
            store.clone(),
            lifecycle.clone(),
            health.clone(),
            metrics.clone(),
            events.clone(),
            fence.clone(),
        ));
        let reconciler = Arc::new(Reconciler::new(lifecycle.clone(), fence.clone()));
        let releases = Arc::new(Releases::new(
            config.clone(),
            store.clone(),
            deployments.clone(),
        ));
        let autodeploy = AutoDeployer::new(store.clone(), releases.clone(), metrics.clone());
        let jobs = Jobs::new(
            config.clone(),
            store.clone(),
            lifecycle.clone(),
            events.clone(),
        );
        let schedules = Arc::new(Schedules::new(store.clone(), jobs.clone()));
        let demand = DemandReports::new(store.clone());
        let traffic = Traffic::new(store.clone());
        let autoscaler = Arc::new(Autoscaler::new(
            store.clone(),
            deployments.clone(),
            routes.clone(),
            events.clone(),
            DEFAULT_STALE_AFTER,
        ));
        let host_watch = Arc::new(HostWatch::new(
            &config,
            store.clone(),
            engines.clone(),
            events.clone(),
            fence.clone(),
        ));
        Arc::new(ControlPlane {
            blacklist: Blacklist::new(routes.clone()),
            config,
            store,
            routes,
            engines,
            health,
            metrics,
            lifecycle,
            deployments,
            apps,
            app_configs,
            healer,
            reconciler,
            releases,
            autodeploy,
            events,
            webhooks,
            jobs,
            schedules,
            demand,
            traffic,
            autoscaler,
            host_watch,
            leader: Arc::new(AtomicBool::new(false)),
            fence,
            closing: tokio::sync::watch::Sender::new(false),
            logs_live: tokio::sync::broadcast::Sender::new(crate::logs::LIVE_BATCHES),
        })
    }

    /// Whether this process holds the scheduler leadership (runs health checks and the reconciler).
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed)
    }

    /// The flag the leader's duties set while this process leads.
    pub fn leader_flag(&self) -> Arc<AtomicBool> {
        self.leader.clone()
    }

    /// Tells streaming answers (log follows) to end: the scheduler is shutting down.
    pub fn close_streams(&self) {
        self.closing.send_replace(true);
    }

    /// What streaming answers watch to end at shutdown (true once closing).
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Whether ZooKeeper answers a read.
    pub async fn zookeeper_ok(&self) -> bool {
        tokio::time::timeout(Duration::from_secs(2), self.routes.blacklist())
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Prometheus text of the scheduler's metrics.
    pub fn render_metrics(&self) -> String {
        let mut text = self.metrics.render(self.store.metrics());
        text.push_str(&self.jobs.metrics.render(self.jobs.live.len()));
        text.push_str(&self.autoscaler.metrics.render());
        text.push_str(&self.host_watch.metrics.render());
        text
    }

    /// Checks that a Docker endpoint answers (before a host is added).
    pub async fn check_engine(&self, url: &str) -> Result<()> {
        self.engines.check(url).await
    }

    /// Drops the engine client of a removed host.
    pub fn forget_engine(&self, host: &HostName) {
        self.engines.forget(host);
    }
}
