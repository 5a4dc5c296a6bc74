//! Releases: every deploy and rollback of an app, pinned to the manifest digest its tag resolved
//! to, and the rollback to one of them.
//!
//! A deploy resolves `{registry}/{app}:{version}` to its digest ([`ImageDigests`]), deploys the
//! pinned reference `{registry}/{app}@sha256:...` through [`Deployments::deploy`] (so every
//! container of the deployment, scale-ups and replacements included, runs that digest whatever
//! is pushed later), and records a release. A rollback deploys a release's spec at its digest and
//! then undeploys every other running deployment through [`Deployments::undeploy_id`]: a roll is
//! a deploy followed by undeploys, nothing else. Rolling to the version that runs supersedes the
//! running deployment first (it leaves the (app, version) key, see `store::deployments`), so the
//! new generation deploys next to it, healthy first, and the old one drains after.
//!
//! Operations on one app (deploy, rollback, auto-deploy roll) queue behind each other
//! ([`Deployments::lock_app`]).

mod plan;

pub use plan::{default_target, page, prune_cutoff, request_of, DEFAULT_PAGE, MAX_PAGE};

use crate::app_lock::AppGuard;
use crate::config::Config;
use crate::deployments::Deployments;
use crate::error::{Error, Result};
use crate::events::EventType;
use crate::image_digest::{pinned_reference, Digest, ImageDigests};
use crate::progress::Progress;
use crate::store::{DeploymentState, NewRelease, ReleaseRow, Store};
use caas_types::api::{self, CreateDeployment};
use caas_types::{AppId, Version};
use std::sync::Arc;

/// What a roll does besides deploying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RollMode {
    /// Whether the version may be the one that runs (a rollback to it rolls it; a plain deploy
    /// of it is a conflict).
    pub replace_same_version: bool,
    /// Whether every deployment that ran before is undeployed once the new one is up.
    pub retire_others: bool,
}

/// What a roll came to.
#[derive(Debug, Clone)]
pub struct Rolled {
    /// The new deployment, as it was when every instance was up.
    pub deployment: api::Deployment,
    /// The release recorded for it.
    pub release: ReleaseRow,
    /// The versions undeployed after it (a version rolled onto itself included).
    pub retired: Vec<Version>,
}

/// Records releases and rolls back to them.
#[derive(Debug)]
pub struct Releases {
    config: Arc<Config>,
    store: Store,
    deployments: Arc<Deployments>,
    digests: ImageDigests,
}

impl Releases {
    /// Releases over `deployments`' deploy and undeploy, resolving tags in the configured
    /// registry.
    pub fn new(config: Arc<Config>, store: Store, deployments: Arc<Deployments>) -> Releases {
        Releases {
            digests: ImageDigests::new(&config),
            config,
            store,
            deployments,
        }
    }

    /// Waits until no other operation on `app` runs in this process (the one per-app lock,
    /// [`Deployments::lock_app`]).
    pub async fn lock(&self, app: &AppId) -> AppGuard {
        self.deployments.lock_app(app).await
    }

    /// The digest `tag` of `app` points to in the registry now.
    pub async fn resolve(&self, app: &AppId, tag: &Version) -> Result<Digest> {
        self.digests.resolve(app, tag).await
    }

    /// `POST /v1/apps/{app}/deployments`: resolves the tag, deploys its digest, records a
    /// release. The request is validated again here (the API checked it before streaming).
    pub async fn deploy(
        &self,
        app: &AppId,
        req: CreateDeployment,
        created_by: String,
        progress: Progress,
    ) -> Result<api::Deployment> {
        self.deployments.validate(app, &req)?;
        let _app = self.lock(app).await;
        let digest = self.resolve(app, &req.version).await?;
        progress.step(
            None,
            "resolved",
            format!("{app}:{} is {digest}", req.version),
        );
        let mode = RollMode {
            replace_same_version: false,
            retire_others: false,
        };
        let config_version = self.store.get_app_config(app).await?.version;
        let rolled = self
            .roll_locked(
                app,
                req,
                &digest,
                config_version,
                created_by,
                mode,
                &progress,
            )
            .await?;
        Ok(rolled.deployment)
    }

    /// `POST /v1/apps/{app}/rollback`: rolls the app to exactly release `target` (default: the
    /// one before the active release), then runs that release only, and records a new release.
    /// Unknown release → [`Error::NotFound`]; its image gone from the registry →
    /// [`Error::ImageNotFound`], with nothing changed.
    pub async fn rollback(
        &self,
        app: &AppId,
        target: Option<u32>,
        created_by: String,
        progress: Progress,
    ) -> Result<api::Deployment> {
        let _app = self.lock(app).await;
        let number = match target {
            Some(n) => n,
            None => {
                let history: Vec<(u32, bool)> = self
                    .store
                    .list_releases(app, u32::MAX, None)
                    .await?
                    .iter()
                    .map(|r| (r.number, r.active))
                    .collect();
                default_target(&history)?
            }
        };
        let release = self.store.get_release(app, number).await?;
        let digest = Digest::parse(&release.digest)
            .ok_or_else(|| Error::Invalid(format!("stored digest of release {number}")))?;
        // Before anything changes: the image must still be there.
        self.digests.check(app, &digest).await?;
        progress.step(
            None,
            "rollback",
            format!(
                "rolling back to release {number} ({} at {digest})",
                release.version
            ),
        );
        let mode = RollMode {
            replace_same_version: true,
            retire_others: true,
        };
        // The release's config comes back too, as a new config version (new instances start
        // with it); if the roll fails, the config that was current goes back.
        let before = self.store.get_app_config(app).await?.version;
        let (config, restored) = self
            .store
            .restore_app_config(app, release.config_version)
            .await?;
        if restored {
            progress.step(
                None,
                "config",
                format!(
                    "config version {} restored as version {}",
                    release.config_version, config.version
                ),
            );
        }
        let rolled = self
            .roll_locked(
                app,
                release.spec,
                &digest,
                config.version,
                created_by,
                mode,
                &progress,
            )
            .await;
        match rolled {
            Ok(rolled) => Ok(rolled.deployment),
            Err(e) => {
                if restored {
                    if let Err(undo) = self.store.restore_app_config(app, before).await {
                        tracing::warn!(%app, error = %undo, "could not put the config back after a failed rollback");
                    }
                }
                Err(e)
            }
        }
    }

    /// Deploys `spec` pinned at `digest` and records its release; with `mode.retire_others`,
    /// then undeploys every deployment that was running before. The caller holds the app's lock.
    ///
    /// All or nothing up to the release: a failed deploy, or a release that cannot be
    /// recorded, leaves the deployments as they were (a superseded one restored). Undeploys that
    /// fail afterwards are reported; the app then runs the new release next to what could not be
    /// removed, which the reconciler retries.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn roll_locked(
        &self,
        app: &AppId,
        spec: CreateDeployment,
        digest: &Digest,
        config_version: u64,
        created_by: String,
        mode: RollMode,
        progress: &Progress,
    ) -> Result<Rolled> {
        let mut plan = self.deployments.validate(app, &spec)?;
        plan.new.image = pinned_reference(&self.config.registry, app, digest);
        let before: Vec<_> = self
            .store
            .list_deployments(app)
            .await?
            .into_iter()
            .filter(|d| d.state == DeploymentState::Running)
            .collect();
        let superseded = match self.store.get_deployment(app, &spec.version).await {
            Ok(current) if mode.replace_same_version => {
                self.store.supersede_deployment(current.id).await?;
                Some(current.id)
            }
            // A plain deploy of a version that exists stays the deploy's 409.
            Ok(_) | Err(Error::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        let deployed = self
            .deployments
            .deploy_with_id(plan, progress.clone())
            .await;
        let (id, deployment) = match deployed {
            Ok(done) => done,
            Err(e) => {
                self.restore(superseded).await;
                return Err(e);
            }
        };
        let new = NewRelease {
            app: app.clone(),
            version: spec.version.clone(),
            digest: digest.to_string(),
            config_version,
            spec,
            deployment_id: id,
            created_by,
        };
        let release = match self
            .store
            .record_release(&new, self.config.releases_keep)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                // Nothing half-done: without its release, the new deployment goes again.
                if let Err(undo) = self.deployments.undeploy_id(id).await {
                    tracing::warn!(error = %undo, deployment = id, "could not undeploy a deployment whose release was not recorded");
                }
                self.restore(superseded).await;
                return Err(e);
            }
        };
        progress.step(
            None,
            "released",
            format!(
                "release {} of {app}: {} at {digest}",
                release.number, release.version
            ),
        );
        self.release_created(&release).await;
        let mut retired = Vec::new();
        let mut first_error = None;
        if mode.retire_others {
            for old in before {
                progress.step(
                    None,
                    "draining",
                    format!("undeploying {} (deployment #{})", old.spec.version, old.id),
                );
                match self.deployments.undeploy_id(old.id).await {
                    Ok(()) => retired.push(old.spec.version),
                    Err(e) => {
                        tracing::warn!(version = %old.spec.version, error = %e, "could not undeploy a version the roll replaced");
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(Rolled {
                deployment,
                release,
                retired,
            }),
        }
    }

    /// Emits `release.created` for a recorded release.
    async fn release_created(&self, r: &ReleaseRow) {
        let fields = serde_json::json!({"release": r.number, "version": r.version,
            "digest": r.digest, "config_version": r.config_version, "created_by": r.created_by});
        let events = self.deployments.events();
        events
            .emit(EventType::ReleaseCreated, Some(&r.app), fields)
            .await;
    }

    /// Puts a deployment superseded for a roll that failed back under its version.
    async fn restore(&self, superseded: Option<i64>) {
        let Some(id) = superseded else { return };
        if let Err(e) = self.store.restore_deployment(id).await {
            tracing::warn!(error = %e, deployment = id, "could not restore a superseded deployment");
        }
    }

    /// Records a release for each running deployment of `app` after its config changed to
    /// `config_version`: the same version, digest and spec, the new config. The caller holds
    /// the app's lock; the rolling restart that follows is the caller's.
    pub async fn record_config_change(
        &self,
        app: &AppId,
        config_version: u64,
        created_by: &str,
    ) -> Result<Vec<u32>> {
        let mut numbers = Vec::new();
        for d in self.store.list_deployments(app).await? {
            if d.state != DeploymentState::Running {
                continue;
            }
            let Some(current) = self.store.release_of_deployment(app, d.id).await? else {
                // A deployment made before releases existed has no release to carry on.
                continue;
            };
            let new = NewRelease {
                app: app.clone(),
                version: current.version.clone(),
                digest: current.digest.clone(),
                config_version,
                spec: current.spec.clone(),
                deployment_id: d.id,
                created_by: created_by.to_owned(),
            };
            let release = self
                .store
                .record_release(&new, self.config.releases_keep)
                .await?;
            self.release_created(&release).await;
            numbers.push(release.number);
        }
        Ok(numbers)
    }

    /// `GET /v1/apps/{app}/releases`: newest first, at most `limit`, numbered below `before`.
    pub async fn list(
        &self,
        app: &AppId,
        limit: Option<u32>,
        before: Option<u32>,
    ) -> Result<Vec<api::Release>> {
        let (limit, before) = page(limit, before)?;
        let rows = self.store.list_releases(app, limit, before).await?;
        Ok(rows.iter().map(ReleaseRow::to_api).collect())
    }
}
