//! The `tenants` table: who owns apps. Only a hash of each tenant's token is stored; hashing is
//! the caller's business (the admin API), this module compares the hashes it is given.

use super::sql::{self, parse, text};
use super::Store;
use crate::error::{Error, Result};
use caas_types::TenantName;
use sqlx::mysql::MySqlRow;

/// A tenant as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRow {
    /// Its name.
    pub name: TenantName,
    /// Hex hash of its bearer token.
    pub token_hash: String,
}

fn tenant_from_row(row: &MySqlRow) -> Result<TenantRow> {
    Ok(TenantRow {
        name: parse(row, "name")?,
        token_hash: text(row, "token_hash")?,
    })
}

impl Store {
    /// Adds a tenant. A taken name (or token hash) is [`Error::Conflict`].
    pub async fn create_tenant(&self, name: &TenantName, token_hash: &str) -> Result<TenantRow> {
        sqlx::query("INSERT INTO tenants (name, token_hash) VALUES (?, ?)")
            .bind(name.as_str())
            .bind(token_hash)
            .execute(&self.pool)
            .await
            .map_err(|e| {
                sql::write_error(
                    "adding a tenant",
                    || format!("tenant {name} already exists"),
                    e,
                )
            })?;
        Ok(TenantRow {
            name: name.clone(),
            token_hash: token_hash.to_owned(),
        })
    }

    /// Every tenant, by name.
    pub async fn list_tenants(&self) -> Result<Vec<TenantRow>> {
        let rows = sqlx::query("SELECT name, token_hash FROM tenants ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| sql::db_error("listing tenants", e))?;
        rows.iter().map(tenant_from_row).collect()
    }

    /// One tenant by name.
    pub async fn get_tenant(&self, name: &TenantName) -> Result<TenantRow> {
        let row = sqlx::query("SELECT name, token_hash FROM tenants WHERE name = ?")
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| sql::db_error("reading a tenant", e))?
            .ok_or_else(|| Error::NotFound(format!("tenant {name}")))?;
        tenant_from_row(&row)
    }

    /// The tenant whose token hashes to `token_hash`, if any.
    pub async fn tenant_by_token_hash(&self, token_hash: &str) -> Result<Option<TenantRow>> {
        let row = sqlx::query("SELECT name, token_hash FROM tenants WHERE token_hash = ?")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| sql::db_error("looking up a token", e))?;
        row.as_ref().map(tenant_from_row).transpose()
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
