//! Auto-deploy: when a tag of an app with auto-deploy on is pushed, roll the app's running
//! deployment to it. The roll resolves the tag to its digest, deploys it with the spec of the
//! newest running deployment through [`Deployments::deploy`](crate::deployments::Deployments::deploy) (which returns once every new
//! instance is healthy and registered), records a release, then undeploys the versions that ran
//! before through [`Deployments::undeploy_id`](crate::deployments::Deployments::undeploy_id) (deregister, drain, stop): new instances serve
//! before any old one leaves, so the roll loses no request. The roll itself is
//! [`Releases`]' (the same as a rollback's).
//!
//! Rolls queue behind every other deploy or rollback of the app ([`Releases::lock`]). A push
//! that arrives during a roll is rolled after it, to the newest tag pushed meanwhile; tags in
//! between are skipped.

use crate::error::Result;
use crate::metrics::DeployMetrics;
use crate::progress::Progress;
use crate::releases::{request_of, Releases, RollMode};
use crate::store::{DeploymentState, Store};
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

/// Per-app state: the newest tag waiting to be rolled.
#[derive(Debug, Default)]
struct Slot {
    wanted: Mutex<Option<Version>>,
}

/// Who a release made by auto-deploy is recorded as.
pub const CREATED_BY: &str = "auto-deploy";

/// Rolls apps to newly pushed tags, one roll per app at a time.
#[derive(Debug)]
pub struct AutoDeployer {
    store: Store,
    releases: Arc<Releases>,
    metrics: Arc<DeployMetrics>,
    slots: Mutex<HashMap<AppId, Arc<Slot>>>,
}

impl AutoDeployer {
    /// An auto-deployer rolling through `releases` (and so through [`Deployments`](crate::deployments::Deployments)' deploy and
    /// undeploy).
    pub fn new(
        store: Store,
        releases: Arc<Releases>,
        metrics: Arc<DeployMetrics>,
    ) -> Arc<AutoDeployer> {
        Arc::new(AutoDeployer {
            store,
            releases,
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

    /// Waits for the app's lock, then rolls to the newest wanted tag, if any is left.
    async fn take_and_roll(&self, app: &AppId, slot: &Slot) {
        let _rolling = self.releases.lock(app).await;
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

    /// Rolls `app` to `tag` now (the caller holds the app's lock).
    async fn roll(&self, app: &AppId, tag: &Version) -> Result<Rolled> {
        let store = &self.store;
        // Read again under the lock: auto-deploy may have been turned off meanwhile.
        if !store.get_app(app).await?.auto_deploy {
            return Ok(Rolled::Skipped("auto-deploy is off"));
        }
        let deployments = store.list_deployments(app).await?;
        if deployments.iter().any(|d| &d.spec.version == tag) {
            return Ok(Rolled::Skipped("a deployment of this version exists"));
        }
        let Some(template) = deployments
            .iter()
            .filter(|d| d.state == DeploymentState::Running)
            .max_by_key(|d| d.id)
        else {
            return Ok(Rolled::Skipped("no running deployment"));
        };
        // The running deployment's request (instances, limits, port, env, policies) for the
        // tag: as its release recorded it, or as its row holds it if it predates releases.
        let (mut spec, config_version) = match store.release_of_deployment(app, template.id).await?
        {
            Some(r) => (r.spec, r.config_version),
            None => (request_of(&template.spec), 0),
        };
        spec.version = tag.clone();
        // The count it was scaled to since, as before releases existed.
        if !spec.placement.global && template.spec.instances > 0 {
            spec.instances = template.spec.instances;
        }
        let digest = self.releases.resolve(app, tag).await?;
        tracing::info!(from = %template.spec.version, %digest, instances = template.spec.instances, "rolling");
        let mode = RollMode {
            replace_same_version: false,
            retire_others: true,
        };
        // A failed deploy rolls the new deployment back and leaves the old ones untouched.
        let rolled = self
            .releases
            .roll_locked(
                app,
                spec,
                &digest,
                config_version,
                CREATED_BY.to_owned(),
                mode,
                &Progress::silent(),
            )
            .await?;
        Ok(Rolled::Done {
            from: rolled.retired,
            to: tag.clone(),
        })
    }
}
