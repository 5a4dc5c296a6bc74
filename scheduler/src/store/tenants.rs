//! The `tenants` and `tenant_domains` tables: who owns apps, the domain suffixes each may route
//! custom domains under, and its quota. Only a hash of each tenant's token is stored; hashing is
//! the caller's business (the admin API), this module compares the hashes it is given.
//!
//! A quota is checked where what it limits is taken: `max_apps` when an app is created
//! ([`Store::create_app`] locks the tenant's row and counts), the others inside each claim
//! ([`crate::placement`] locks the row after the host's and counts with [`Store::usage_in`]), so
//! concurrent deploys of one tenant cannot overshoot.

use super::sql::{self, opt_unsigned, parse, text};
use super::Store;
use crate::error::{Error, Result};
use caas_types::{Domain, TenantName};
use sqlx::mysql::MySqlRow;
use sqlx::{MySql, Transaction};

/// A tenant's limits as stored; each `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    /// Apps it may own.
    pub max_apps: Option<u64>,
    /// Instance rows (instances and running jobs) its apps may hold.
    pub max_instances: Option<u64>,
    /// Memory its apps' instance rows may hold, MiB.
    pub max_memory_mib: Option<u64>,
    /// CPU its apps' instance rows may hold, millicores.
    pub max_cpu_millis: Option<u64>,
}

impl Quota {
    /// Whether a claim must count: some limit on what instances hold is set.
    pub fn limits_instances(&self) -> bool {
        self.max_instances.is_some()
            || self.max_memory_mib.is_some()
            || self.max_cpu_millis.is_some()
    }

    /// Why one more instance holding `memory` bytes and `cpu_millis` would exceed this quota
    /// given `usage`, or `None` if it fits.
    pub fn exceeded_by(&self, usage: &Usage, memory: u64, cpu_millis: u64) -> Option<String> {
        if let Some(max) = self.max_instances {
            if usage.instances + 1 > max {
                return Some(format!("instances: {} of {max} in use", usage.instances));
            }
        }
        if let Some(max) = self.max_memory_mib {
            let want = usage.memory_bytes.saturating_add(memory);
            if want > max.saturating_mul(1 << 20) {
                return Some(format!(
                    "memory: {} MiB of {max} MiB in use, {} MiB more asked",
                    usage.memory_bytes >> 20,
                    memory.div_ceil(1 << 20)
                ));
            }
        }
        if let Some(max) = self.max_cpu_millis {
            if usage.cpu_millis.saturating_add(cpu_millis) > max {
                return Some(format!(
                    "cpus: {:.3} of {:.3} in use, {:.3} more asked",
                    usage.cpu_millis as f64 / 1000.0,
                    max as f64 / 1000.0,
                    cpu_millis as f64 / 1000.0
                ));
            }
        }
        None
    }
}

/// What a tenant's apps hold now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Apps it owns.
    pub apps: u64,
    /// Instance rows of its apps (instances, running jobs and workflow steps).
    pub instances: u64,
    /// Memory those rows hold, bytes.
    pub memory_bytes: u64,
    /// CPU those rows hold, millicores.
    pub cpu_millis: u64,
}

/// A tenant as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRow {
    /// Its name.
    pub name: TenantName,
    /// Hex hash of its bearer token.
    pub token_hash: String,
    /// Its limits.
    pub quota: Quota,
}

const TENANT_COLUMNS: &str =
    "name, token_hash, max_apps, max_instances, max_memory_mb, max_cpu_millis";

fn quota_from_row(row: &MySqlRow) -> Result<Quota> {
    Ok(Quota {
        max_apps: opt_unsigned(row, "max_apps")?,
        max_instances: opt_unsigned(row, "max_instances")?,
        max_memory_mib: opt_unsigned(row, "max_memory_mb")?,
        max_cpu_millis: opt_unsigned(row, "max_cpu_millis")?,
    })
}

fn tenant_from_row(row: &MySqlRow) -> Result<TenantRow> {
    Ok(TenantRow {
        name: parse(row, "name")?,
        token_hash: text(row, "token_hash")?,
        quota: quota_from_row(row)?,
    })
}

/// A quota limit as the database's signed BIGINT.
fn limit(v: Option<u64>) -> Option<i64> {
    v.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

impl Store {
    /// Adds a tenant with its domain suffixes and quota. A taken name (or token hash) is
    /// [`Error::Conflict`].
    pub async fn create_tenant(
        &self,
        name: &TenantName,
        token_hash: &str,
        domains: &[Domain],
        quota: Quota,
    ) -> Result<TenantRow> {
        const WHAT: &str = "adding a tenant";
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| sql::db_error(WHAT, e))?;
        sqlx::query(
            "INSERT INTO tenants (name, token_hash, max_apps, max_instances, max_memory_mb, \
             max_cpu_millis) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(name.as_str())
        .bind(token_hash)
        .bind(limit(quota.max_apps))
        .bind(limit(quota.max_instances))
        .bind(limit(quota.max_memory_mib))
        .bind(limit(quota.max_cpu_millis))
        .execute(&mut *tx)
        .await
        .map_err(|e| sql::write_error(WHAT, || format!("tenant {name} already exists"), e))?;
        insert_domains(&mut tx, name, domains).await?;
        tx.commit().await.map_err(|e| sql::db_error(WHAT, e))?;
        Ok(TenantRow {
            name: name.clone(),
            token_hash: token_hash.to_owned(),
            quota,
        })
    }

    /// Replaces a tenant's domain suffixes and/or its quota (what is `None` stays).
    pub async fn update_tenant(
        &self,
        name: &TenantName,
        domains: Option<&[Domain]>,
        quota: Option<Quota>,
    ) -> Result<()> {
        const WHAT: &str = "changing a tenant";
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| sql::db_error(WHAT, e))?;
        let exists = sqlx::query("SELECT name FROM tenants WHERE name = ? FOR UPDATE")
            .bind(name.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| sql::db_error(WHAT, e))?;
        if exists.is_none() {
            return Err(Error::NotFound(format!("tenant {name}")));
        }
        if let Some(q) = quota {
            sqlx::query(
                "UPDATE tenants SET max_apps = ?, max_instances = ?, max_memory_mb = ?, \
                 max_cpu_millis = ? WHERE name = ?",
            )
            .bind(limit(q.max_apps))
            .bind(limit(q.max_instances))
            .bind(limit(q.max_memory_mib))
            .bind(limit(q.max_cpu_millis))
            .bind(name.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| sql::db_error(WHAT, e))?;
        }
        if let Some(domains) = domains {
            sqlx::query("DELETE FROM tenant_domains WHERE tenant = ?")
                .bind(name.as_str())
                .execute(&mut *tx)
                .await
                .map_err(|e| sql::db_error(WHAT, e))?;
            insert_domains(&mut tx, name, domains).await?;
        }
        tx.commit().await.map_err(|e| sql::db_error(WHAT, e))
    }

    /// Gives a tenant a new token hash; the old token fails from the next request on.
    pub async fn set_tenant_token(&self, name: &TenantName, token_hash: &str) -> Result<()> {
        let done = sqlx::query("UPDATE tenants SET token_hash = ? WHERE name = ?")
            .bind(token_hash)
            .bind(name.as_str())
            .execute(&self.pool)
            .await
            .map_err(|e| sql::db_error("rotating a tenant's token", e))?;
        sql::found(&done, || format!("tenant {name}"))
    }

    /// Every tenant, by name.
    pub async fn list_tenants(&self) -> Result<Vec<TenantRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {TENANT_COLUMNS} FROM tenants ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| sql::db_error("listing tenants", e))?;
        rows.iter().map(tenant_from_row).collect()
    }

    /// One tenant by name.
    pub async fn get_tenant(&self, name: &TenantName) -> Result<TenantRow> {
        let row = sqlx::query(&format!(
            "SELECT {TENANT_COLUMNS} FROM tenants WHERE name = ?"
        ))
        .bind(name.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| sql::db_error("reading a tenant", e))?
        .ok_or_else(|| Error::NotFound(format!("tenant {name}")))?;
        tenant_from_row(&row)
    }

    /// The domain suffixes of a tenant, sorted.
    pub async fn tenant_domains(&self, name: &TenantName) -> Result<Vec<Domain>> {
        let rows =
            sqlx::query("SELECT suffix FROM tenant_domains WHERE tenant = ? ORDER BY suffix")
                .bind(name.as_str())
                .fetch_all(&self.pool)
                .await
                .map_err(|e| sql::db_error("reading a tenant's domains", e))?;
        rows.iter().map(|r| parse(r, "suffix")).collect()
    }

    /// Every tenant's domain suffixes, by tenant.
    pub async fn all_tenant_domains(&self) -> Result<Vec<(TenantName, Domain)>> {
        let rows = sqlx::query("SELECT tenant, suffix FROM tenant_domains ORDER BY tenant, suffix")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| sql::db_error("reading tenants' domains", e))?;
        rows.iter()
            .map(|r| Ok((parse(r, "tenant")?, parse(r, "suffix")?)))
            .collect()
    }

    /// The tenant whose token hashes to `token_hash`, if any.
    pub async fn tenant_by_token_hash(&self, token_hash: &str) -> Result<Option<TenantRow>> {
        let row = sqlx::query(&format!(
            "SELECT {TENANT_COLUMNS} FROM tenants WHERE token_hash = ?"
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| sql::db_error("looking up a token", e))?;
        row.as_ref().map(tenant_from_row).transpose()
    }

    /// The tenant owning `app` and its quota, when that quota limits instances; `None` for an
    /// operator's app or a tenant without such a limit (a claim then counts nothing).
    pub async fn instance_quota_of_app(
        &self,
        app: &caas_types::AppId,
    ) -> Result<Option<(TenantName, Quota)>> {
        let row = sqlx::query(
            "SELECT t.name, t.token_hash, t.max_apps, t.max_instances, t.max_memory_mb, \
             t.max_cpu_millis FROM apps a JOIN tenants t ON t.name = a.tenant WHERE a.id = ?",
        )
        .bind(app.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| sql::db_error("reading an app's quota", e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let t = tenant_from_row(&row)?;
        Ok(t.quota.limits_instances().then_some((t.name, t.quota)))
    }

    /// What a tenant's apps hold now.
    pub async fn tenant_usage(&self, name: &TenantName) -> Result<Usage> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| sql::db_error("reading a tenant's usage", e))?;
        count(&mut conn, name)
            .await
            .map_err(|e| sql::db_error("reading a tenant's usage", e))
    }

    /// Deletes a tenant. A tenant that still owns apps is [`Error::Conflict`].
    pub async fn delete_tenant(&self, name: &TenantName) -> Result<()> {
        let done = sqlx::query("DELETE FROM tenants WHERE name = ?")
            .bind(name.as_str())
            .execute(&self.pool)
            .await
            .map_err(|e| {
                sql::write_error(
                    "deleting a tenant",
                    || format!("tenant {name} still owns apps"),
                    e,
                )
            })?;
        sql::found(&done, || format!("tenant {name}"))
    }
}

/// Locks a tenant's row inside `tx` (after any host row the transaction holds: always host, then
/// tenant, so two claims never wait on each other in a cycle) and reads what its apps hold.
pub(crate) async fn lock_and_count(
    tx: &mut Transaction<'static, MySql>,
    name: &TenantName,
) -> std::result::Result<Usage, sqlx::Error> {
    sqlx::query("SELECT name FROM tenants WHERE name = ? FOR UPDATE")
        .bind(name.as_str())
        .fetch_optional(&mut **tx)
        .await?;
    count(tx, name).await
}

async fn count(
    conn: &mut sqlx::MySqlConnection,
    name: &TenantName,
) -> std::result::Result<Usage, sqlx::Error> {
    use sqlx::Row;
    let row = sqlx::query(
        "SELECT (SELECT COUNT(*) FROM apps WHERE tenant = ?) AS apps, COUNT(i.id) AS instances, \
         CAST(COALESCE(SUM(i.memory), 0) AS SIGNED) AS memory, \
         CAST(COALESCE(SUM(i.cpu), 0) AS SIGNED) AS cpu \
         FROM instances i JOIN apps a ON a.id = i.app_id WHERE a.tenant = ?",
    )
    .bind(name.as_str())
    .bind(name.as_str())
    .fetch_one(conn)
    .await?;
    let n = |c: &str| -> std::result::Result<u64, sqlx::Error> {
        let v: i64 = row.try_get(c)?;
        Ok(u64::try_from(v).unwrap_or(0))
    };
    Ok(Usage {
        apps: n("apps")?,
        instances: n("instances")?,
        memory_bytes: n("memory")?,
        cpu_millis: n("cpu")?,
    })
}

async fn insert_domains(
    tx: &mut Transaction<'static, MySql>,
    name: &TenantName,
    domains: &[Domain],
) -> Result<()> {
    for d in domains {
        sqlx::query("INSERT IGNORE INTO tenant_domains (tenant, suffix) VALUES (?, ?)")
            .bind(name.as_str())
            .bind(d.as_str())
            .execute(&mut **tx)
            .await
            .map_err(|e| sql::db_error("adding a tenant's domains", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quota_is_exceeded_by_the_first_dimension_over() {
        let q = Quota {
            max_instances: Some(2),
            max_memory_mib: Some(256),
            max_cpu_millis: Some(1000),
            ..Quota::default()
        };
        let mut u = Usage {
            instances: 1,
            memory_bytes: 128 << 20,
            cpu_millis: 500,
            ..Usage::default()
        };
        assert_eq!(q.exceeded_by(&u, 128 << 20, 500), None, "exactly full fits");
        assert!(q
            .exceeded_by(&u, (128 << 20) + 1, 500)
            .is_some_and(|m| m.starts_with("memory")));
        assert!(q
            .exceeded_by(&u, 1, 501)
            .is_some_and(|m| m.starts_with("cpus")));
        u.instances = 2;
        assert!(q
            .exceeded_by(&u, 1, 1)
            .is_some_and(|m| m.starts_with("instances")));
        assert_eq!(Quota::default().exceeded_by(&u, u64::MAX, u64::MAX), None);
        assert!(!Quota::default().limits_instances());
        let apps_only = Quota {
            max_apps: Some(1),
            ..Quota::default()
        };
        assert!(
            !apps_only.limits_instances(),
            "max_apps is checked at app creation"
        );
    }

    #[test]
    fn stored_limits_saturate() {
        assert_eq!(limit(Some(u64::MAX)), Some(i64::MAX));
        assert_eq!(limit(None), None);
    }
}
