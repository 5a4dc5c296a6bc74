//! The `apps` and `domains` tables: apps, their owning tenant, and the custom domains routed to
//! them.

use super::sql::{self, get, opt_text, parse};
use super::Store;
use crate::error::{Error, Result};
use caas_types::{AppId, Domain, TenantName};
use sqlx::mysql::MySqlRow;

/// An app as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRow {
    /// App id.
    pub id: AppId,
    /// Owning tenant; `None` for apps created with the operator token.
    pub tenant: Option<TenantName>,
    /// Roll the running deployment to a newly pushed tag automatically.
    pub auto_deploy: bool,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: i64,
}

/// A custom domain routed to an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainRow {
    /// The domain.
    pub domain: Domain,
    /// The app it routes to.
    pub app: AppId,
}

const APP_COLUMNS: &str =
    "id, tenant, auto_deploy, CAST(UNIX_TIMESTAMP(created_at) * 1000 AS SIGNED) AS created_ms";

fn app_from_row(row: &MySqlRow) -> Result<AppRow> {
    let tenant = opt_text(row, "tenant")?;
    Ok(AppRow {
        id: parse(row, "id")?,
        tenant: tenant
            .map(|t| {
                t.parse()
                    .map_err(|_| Error::Invalid(format!("stored tenant {t:?}")))
            })
            .transpose()?,
        auto_deploy: get(row, "auto_deploy")?,
        created_ms: get(row, "created_ms")?,
    })
}

impl Store {
    /// Adds an app. A taken id is [`Error::Conflict`] (naming no owner); an unknown tenant is
    /// [`Error::NotFound`]; a tenant at its `max_apps` is [`Error::QuotaExceeded`] (counted under
    /// the tenant's row lock, so concurrent creations cannot overshoot).
    pub async fn create_app(
        &self,
        id: &AppId,
        tenant: Option<&TenantName>,
        auto_deploy: bool,
    ) -> Result<AppRow> {
        const WHAT: &str = "adding an app";
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| sql::db_error(WHAT, e))?;
        if let Some(t) = tenant {
            let row = sqlx::query(
                "SELECT max_apps, (SELECT COUNT(*) FROM apps WHERE tenant = ?) AS apps \
                 FROM tenants WHERE name = ? FOR UPDATE",
            )
            .bind(t.as_str())
            .bind(t.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| sql::db_error(WHAT, e))?
            .ok_or_else(|| Error::NotFound(format!("tenant {t}")))?;
            let max: Option<u64> = sql::opt_unsigned(&row, "max_apps")?;
            let apps: u64 = sql::unsigned(&row, "apps")?;
            if let Some(max) = max.filter(|&max| apps >= max) {
                return Err(Error::QuotaExceeded(format!(
                    "tenant {t} owns {apps} of its {max} apps"
                )));
            }
        }
        let result = sqlx::query("INSERT INTO apps (id, tenant, auto_deploy) VALUES (?, ?, ?)")
            .bind(id.as_str())
            .bind(tenant.map(TenantName::as_str))
            .bind(auto_deploy)
            .execute(&mut *tx)
            .await;
        if let Err(e) = result {
            if sql::classify(&e) == sql::Failure::Reference {
                let t = tenant.map(ToString::to_string).unwrap_or_default();
                return Err(Error::NotFound(format!("tenant {t}")));
            }
            return Err(sql::write_error(
                WHAT,
                || format!("app {id} already exists"),
                e,
            ));
        }
        tx.commit().await.map_err(|e| sql::db_error(WHAT, e))?;
        self.get_app(id).await
    }

    /// Apps by id: all of them, or only `tenant`'s.
    pub async fn list_apps(&self, tenant: Option<&TenantName>) -> Result<Vec<AppRow>> {
        let rows = match tenant {
            Some(t) => {
                sqlx::query(&format!(
                    "SELECT {APP_COLUMNS} FROM apps WHERE tenant = ? ORDER BY id"
                ))
                .bind(t.as_str())
                .fetch_all(&self.pool)
                .await
            }
            None => {
                sqlx::query(&format!("SELECT {APP_COLUMNS} FROM apps ORDER BY id"))
                    .fetch_all(&self.pool)
                    .await
            }
        }
        .map_err(|e| sql::db_error("listing apps", e))?;
        rows.iter().map(app_from_row).collect()
    }

    /// Turns auto-deploy of an app on or off; the app as it is now.
    pub async fn set_app_auto_deploy(&self, id: &AppId, on: bool) -> Result<AppRow> {
        // rows_affected is 0 both for a missing app and an unchanged value, so read it back.
        sqlx::query("UPDATE apps SET auto_deploy = ? WHERE id = ?")
            .bind(on)
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(|e| sql::db_error("changing an app", e))?;
        self.get_app(id).await
    }

    /// One app.
    pub async fn get_app(&self, id: &AppId) -> Result<AppRow> {
        let row = sqlx::query(&format!("SELECT {APP_COLUMNS} FROM apps WHERE id = ?"))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| sql::db_error("reading an app", e))?
            .ok_or_else(|| Error::NotFound(format!("app {id}")))?;
        app_from_row(&row)
    }

    /// Deletes an app, its domains, its events, demand reports and traffic. An app that still has deployments is
    /// [`Error::Conflict`]: undeploy first.
    pub async fn delete_app(&self, id: &AppId) -> Result<()> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| sql::db_error("deleting an app", e))?;
        let done = sqlx::query("DELETE FROM apps WHERE id = ?")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                sql::write_error(
                    "deleting an app",
                    || format!("app {id} still has deployments"),
                    e,
                )
            })?;
        sql::found(&done, || format!("app {id}"))?;
        // Its events go with it (they have no foreign key, see migration 0006).
        sqlx::query("DELETE FROM events WHERE app = ?")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| sql::db_error("deleting an app's events", e))?;
        // So are the gateways' demand reports (migration 0011).
        sqlx::query("DELETE FROM gateway_demand WHERE app_id = ?")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| sql::db_error("deleting an app's demand reports", e))?;
        // And the traffic the gateways counted (migration 0015): a new owner of the id starts
        // from nothing.
        sqlx::query("DELETE FROM app_traffic WHERE app_id = ?")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| sql::db_error("deleting an app's traffic", e))?;
        tx.commit()
            .await
            .map_err(|e| sql::db_error("deleting an app", e))
    }

    /// Routes a custom domain to an app. A domain already routed is [`Error::Conflict`].
    pub async fn add_domain(&self, app: &AppId, domain: &Domain) -> Result<DomainRow> {
        let result = sqlx::query("INSERT INTO domains (domain, app_id) VALUES (?, ?)")
            .bind(domain.as_str())
            .bind(app.as_str())
            .execute(&self.pool)
            .await;
        match result {
            Ok(_) => Ok(DomainRow {
                domain: domain.clone(),
                app: app.clone(),
            }),
            Err(e) if sql::classify(&e) == sql::Failure::Reference => {
                Err(Error::NotFound(format!("app {app}")))
            }
            Err(e) => Err(sql::write_error(
                "adding a domain",
                || format!("domain {domain} is already routed"),
                e,
            )),
        }
    }

    /// Removes a custom domain from an app.
    pub async fn remove_domain(&self, app: &AppId, domain: &Domain) -> Result<()> {
        let done = sqlx::query("DELETE FROM domains WHERE domain = ? AND app_id = ?")
            .bind(domain.as_str())
            .bind(app.as_str())
            .execute(&self.pool)
            .await
            .map_err(|e| sql::db_error("removing a domain", e))?;
        sql::found(&done, || format!("domain {domain} of app {app}"))
    }

    /// An app's custom domains, sorted.
    pub async fn list_domains(&self, app: &AppId) -> Result<Vec<DomainRow>> {
        let rows =
            sqlx::query("SELECT domain, app_id FROM domains WHERE app_id = ? ORDER BY domain")
                .bind(app.as_str())
                .fetch_all(&self.pool)
                .await
                .map_err(|e| sql::db_error("listing domains", e))?;
        rows.iter().map(domain_from_row).collect()
    }

    /// Every app's custom domains, in one query (the reconciler's view).
    pub async fn list_all_domains(&self) -> Result<Vec<DomainRow>> {
        let rows = sqlx::query("SELECT domain, app_id FROM domains")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| sql::db_error("listing domains", e))?;
        rows.iter().map(domain_from_row).collect()
    }
}

fn domain_from_row(r: &MySqlRow) -> Result<DomainRow> {
    Ok(DomainRow {
        domain: parse(r, "domain")?,
        app: parse(r, "app_id")?,
    })
}
