//! Auto-deploy: when a tag of an app with auto-deploy on is pushed, roll the app's running
//! deployment to it. The roll deploys the new version with the spec of the newest running
//! deployment through [`Deployments::deploy`] (which returns once every new instance is
//! healthy and registered), then undeploys the versions that ran before through
//! [`Deployments::undeploy`] (deregister, drain, stop): new instances serve before any old one
//! leaves, so the roll loses no request.
//!
//! One roll per app at a time in this process. A push that arrives during a roll is rolled
//! after it, to the newest tag pushed meanwhile; tags in between are skipped.

use crate::config::Config;
use crate::deployments::{DeployPlan, Deployments};
use crate::error::Result;
use crate::metrics::DeployMetrics;
use crate::progress::Progress;
use crate::store::{DeploymentState, NewDeployment, Store};
use caas_types::{AppId, Version};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tracing::Instrument;

/// What a roll request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rolled {
    /// The app now runs `to`; `from` were undeployed.
    Done {
        /// The versions that ran before.
        from: Vec<Version>,
        /// The version that runs now.
        to: Version,
    },
    /// Nothing to do; the text says why.
    Skipped(&'static str),
}

/// Per-app state: the roll lock and the newest tag waiting to be rolled.
#[derive(Debug, Default)]
struct Slot {
    roll: tokio::sync::Mutex<()>,
    wanted: Mutex<Option<Version>>,
}

/// Rolls apps to newly pushed tags, one roll per app at a time.
#[derive(Debug)]
pub struct AutoDeployer {
    config: Arc<Config>,
    store: Store,
    deployments: Arc<Deployments>,
    metrics: Arc<DeployMetrics>,
    slots: Mutex<HashMap<AppId, Arc<Slot>>>,
}

impl AutoDeployer {
    /// An auto-deployer over `deployments`' deploy and undeploy.
    pub fn new(
        config: Arc<Config>,
        store: Store,
        deployments: Arc<Deployments>,
        metrics: Arc<DeployMetrics>,
    ) -> Arc<AutoDeployer> {
        Arc::new(AutoDeployer {
            config,
            store,
            deployments,
            metrics,
            slots: Mutex::new(HashMap::new()),
        })
    }

    fn slot(&self, app: &AppId) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.entry(app.clone()).or_default().clone()
    }

    /// Notes that `tag` of `app` was pushed and rolls to it in a task of its own (the registry
    /// must not wait for a deploy). The result is logged and counted; the handle lets a caller
    /// wait for it.
    pub fn pushed(self: &Arc<Self>, app: AppId, tag: Version) -> tokio::task::JoinHandle<()> {
        let slot = self.slot(&app);
        *slot.wanted.lock().unwrap_or_else(|p| p.into_inner()) = Some(tag.clone());
        let this = self.clone();
        let span = tracing::info_span!("auto_deploy", %app, pushed = %tag);
        tokio::spawn(
            async move {
                this.take_and_roll(&app, &slot).await;
                this.forget_if_idle(&app, &slot);
            }
            .instrument(span),
        )
    }

    /// Waits for the app's roll lock, then rolls to the newest wanted tag, if any is left.
    async fn take_and_roll(&self, app: &AppId, slot: &Slot) {
        let _rolling = slot.roll.lock().await;
        // A roll that ran while this task waited may have taken the newest tag already.
        let wanted = slot.wanted.lock().unwrap_or_else(|p| p.into_inner()).take();
        let metrics = &self.metrics;
        let Some(tag) = wanted else {
            tracing::info!("superseded by a roll to a newer push");
            DeployMetrics::inc(&metrics.auto_deploys_skipped);
            return;
        };
        match self.roll(app, &tag).await {
            Ok(Rolled::Done { from, to }) => {
                tracing::info!(?from, %to, "auto-deploy rolled the app");
                DeployMetrics::inc(&metrics.auto_deploys_ok);
            }
            Ok(Rolled::Skipped(why)) => {
                tracing::info!(%tag, "auto-deploy: nothing to roll: {why}");
                DeployMetrics::inc(&metrics.auto_deploys_skipped);
            }
            Err(e) => {
                tracing::warn!(%tag, error = %e, "auto-deploy failed; the running version stays");
                DeployMetrics::inc(&metrics.auto_deploys_failed);
            }
        }
    }

    /// Drops the app's slot when no task holds it, so the map does not keep every app ever
    /// pushed. Tasks get their handle only under the map's lock, so with that lock held, a count
    /// of two (the map and the caller) means nobody else has or can get one, and no tag waits.
    fn forget_if_idle(&self, app: &AppId, slot: &Arc<Slot>) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if Arc::strong_count(slot) == 2 {
            slots.remove(app);
        }
    }

    /// Rolls `app` to `tag` now (the caller holds the app's roll lock). The roll also holds
    /// the app's operation lock, so it queues behind a deploy, restart or config change.
    async fn roll(&self, app: &AppId, tag: &Version) -> Result<Rolled> {
        let _app = self.deployments.lock_app(app).await;
        let store = &self.store;
        // Read again under the lock: auto-deploy may have been turned off meanwhile.
        if !store.get_app(app).await?.auto_deploy {
            return Ok(Rolled::Skipped("auto-deploy is off"));
        }
        let deployments = store.list_deployments(app).await?;
        if deployments.iter().any(|d| &d.spec.version == tag) {
            return Ok(Rolled::Skipped("a deployment of this version exists"));
        }
        let running: Vec<_> = deployments
            .into_iter()
            .filter(|d| d.state == DeploymentState::Running)
            .collect();
        let Some(template) = running.iter().max_by_key(|d| d.id) else {
            return Ok(Rolled::Skipped("no running deployment"));
        };
        let plan = DeployPlan {
            // The running deployment's spec (instances, limits, port, env, policies) for the tag.
            new: NewDeployment {
                version: tag.clone(),
                image: app.image(&self.config.registry, tag),
                ..template.spec.clone()
            },
        };
        tracing::info!(from = %template.spec.version, instances = template.spec.instances, "rolling");
        // A failure here rolls the new deployment back and leaves the old ones untouched.
        self.deployments.deploy(plan, Progress::silent()).await?;
        let mut from = Vec::with_capacity(running.len());
        let mut first_error = None;
        for old in running {
            match self.deployments.undeploy(app, &old.spec.version).await {
                Ok(()) => from.push(old.spec.version),
                Err(e) => {
                    tracing::warn!(version = %old.spec.version, error = %e, "could not undeploy the old version");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(Rolled::Done {
                from,
                to: tag.clone(),
            }),
        }
    }
}
