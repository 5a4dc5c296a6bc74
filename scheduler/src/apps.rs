//! Apps and their custom domains: the database row first (uniqueness, ownership), then the
//! ZooKeeper node gateways route by; a failure on the second step takes the first back.

use crate::deployments::Deployments;
use crate::error::{Error, Result};
use crate::image_digest::{Digest, ImageDigests};
use crate::routes::RoutesRef;
use crate::store::{AppRow, Store};
use caas_types::{AppId, Domain, TenantName};
use std::sync::Arc;

/// Creates and deletes apps, routes custom domains to them.
#[derive(Debug)]
pub struct Apps {
    store: Store,
    routes: RoutesRef,
    deployments: Arc<Deployments>,
    /// The registry a deleted app's repository is purged in (`None`: `--purge-images false`).
    purge: Option<ImageDigests>,
}

impl Apps {
    /// Apps over these handles; deleting an app undeploys through `deployments` and purges its
    /// repository through `purge`, if given.
    pub fn new(
        store: Store,
        routes: RoutesRef,
        deployments: Arc<Deployments>,
        purge: Option<ImageDigests>,
    ) -> Apps {
        Apps {
            store,
            routes,
            deployments,
            purge,
        }
    }

    /// Creates an app: its row, then its ZooKeeper node (so the gateway knows the name and
    /// answers 503 until an instance runs). If ZooKeeper fails the row is removed again.
    pub async fn create(
        &self,
        id: &AppId,
        tenant: Option<&TenantName>,
        auto_deploy: bool,
    ) -> Result<AppRow> {
        let app = self.store.create_app(id, tenant, auto_deploy).await?;
        if let Err(e) = self.routes.add_app(id).await {
            let _ = self.store.delete_app(id).await;
            return Err(e.into());
        }
        Ok(app)
    }

    /// Undeploys every version of an app, purges the manifests its registry repository holds
    /// (its tags' and its releases' digests, `crate::image_purge`), removes its domains from
    /// ZooKeeper, deletes it (its config versions and tags go with the row; its ended jobs and
    /// its schedules go first). An app with a job or workflow step still running is
    /// [`crate::Error::Conflict`], before anything is undeployed. A purge that fails (registry
    /// down, deletes not allowed) fails the delete before the row goes: the app is undeployed
    /// but still exists, and deleting it again retries. Waits for an operation on the app to
    /// end.
    pub async fn delete(&self, app: &AppId) -> Result<()> {
        let _app = self.deployments.lock_app(app).await;
        self.store.delete_app_jobs(app).await?;
        for d in self.store.list_deployments(app).await? {
            // By id: a rollback in flight may hold two deployments of one version.
            self.deployments.undeploy_id(d.id).await?;
        }
        if let Some(registry) = &self.purge {
            let pinned: Vec<Digest> = self
                .store
                .list_releases(app, u32::MAX, None)
                .await?
                .iter()
                .filter_map(|r| Digest::parse(&r.digest))
                .collect();
            registry.purge(app, &pinned).await?;
        }
        for d in self.store.list_domains(app).await? {
            self.routes.remove_domain(&d.domain).await?;
        }
        self.routes.remove_app(app).await?;
        self.store.delete_app(app).await
    }

    /// Routes a custom domain to an app: database first (uniqueness), then ZooKeeper.
    pub async fn add_domain(&self, app: &AppId, domain: &Domain) -> Result<()> {
        self.store.add_domain(app, domain).await?;
        if let Err(e) = self.routes.set_domain(domain, app).await {
            let _ = self.store.remove_domain(app, domain).await;
            return Err(e.into());
        }
        Ok(())
    }

    /// Stops routing a custom domain: ZooKeeper first (the gateway stops at once), then the row.
    pub async fn remove_domain(&self, app: &AppId, domain: &Domain) -> Result<()> {
        let owned = self
            .store
            .list_domains(app)
            .await?
            .iter()
            .any(|d| &d.domain == domain);
        if !owned {
            return Err(Error::NotFound(format!("domain {domain} of app {app}")));
        }
        self.routes.remove_domain(domain).await?;
        self.store.remove_domain(app, domain).await
    }
}
