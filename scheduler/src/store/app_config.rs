//! The `app_config` table: every version of an app's config, the newest being the current one.
//! Vars are stored as given; secrets only sealed (see `app_config::crypto`), never in plaintext.

use super::sql::{self, json, to_json, unsigned};
use super::Store;
use crate::error::{Error, Result};
use caas_types::AppId;
use std::collections::BTreeMap;

/// One version of an app's config as stored. `Debug` shows the secrets' names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AppConfigRow {
    /// The config version; 0 for an app never configured (no row).
    pub version: u64,
    /// Plain variables.
    pub vars: BTreeMap<String, String>,
    /// Sealed secrets by name (`v1:{key id}:{base64}`).
    pub secrets: BTreeMap<String, String>,
}

impl std::fmt::Debug for AppConfigRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppConfigRow")
            .field("version", &self.version)
            .field("vars", &self.vars)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .finish()
    }
}

const CONFIG_COLUMNS: &str = "version, vars, secrets";

fn config_from_row(row: &sqlx::mysql::MySqlRow) -> Result<AppConfigRow> {
    Ok(AppConfigRow {
        version: unsigned(row, "version")?,
        vars: json(row, "vars")?,
        secrets: json(row, "secrets")?,
    })
}

impl Store {
    /// An app's current config: its newest version, or version 0 (empty) when it has none.
    /// The app itself is not checked (the API edge has loaded it).
    pub async fn get_app_config(&self, app: &AppId) -> Result<AppConfigRow> {
        let row = sqlx::query(&format!(
            "SELECT {CONFIG_COLUMNS} FROM app_config WHERE app_id = ? \
             ORDER BY version DESC LIMIT 1"
        ))
        .bind(app.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| sql::db_error("reading an app's config", e))?;
        row.as_ref()
            .map(config_from_row)
            .transpose()
            .map(Option::unwrap_or_default)
    }

    /// One stored version of an app's config ([`Error::NotFound`] if there is no such version).
    pub async fn get_app_config_version(&self, app: &AppId, version: u64) -> Result<AppConfigRow> {
        if version == 0 {
            return Ok(AppConfigRow::default());
        }
        let row = sqlx::query(&format!(
            "SELECT {CONFIG_COLUMNS} FROM app_config WHERE app_id = ? AND version = ?"
        ))
        .bind(app.as_str())
        .bind(i64::try_from(version).unwrap_or(i64::MAX))
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| sql::db_error("reading an app's config", e))?;
        match row {
            Some(r) => config_from_row(&r),
            None => Err(Error::NotFound(format!(
                "config version {version} of app {app}"
            ))),
        }
    }

    /// Changes an app's config in one transaction: the app row is locked (so concurrent changes
    /// from any scheduler queue), `change` maps the current config to the next one (`None`:
    /// nothing changes, no version is written), and the result is stored as the next version.
    /// Returns the config as it is afterwards and whether a version was written. An unknown app
    /// is [`Error::NotFound`]; an error from `change` writes nothing.
    pub async fn change_app_config<F>(&self, app: &AppId, change: F) -> Result<(AppConfigRow, bool)>
    where
        F: FnOnce(&AppConfigRow) -> Result<Option<AppConfigRow>>,
    {
        let what = "changing an app's config";
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| sql::db_error(what, e))?;
        let locked = sqlx::query("SELECT id FROM apps WHERE id = ? FOR UPDATE")
            .bind(app.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| sql::db_error(what, e))?;
        if locked.is_none() {
            return Err(Error::NotFound(format!("app {app}")));
        }
        let current = sqlx::query(&format!(
            "SELECT {CONFIG_COLUMNS} FROM app_config WHERE app_id = ? \
             ORDER BY version DESC LIMIT 1"
        ))
        .bind(app.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| sql::db_error(what, e))?
        .as_ref()
        .map(config_from_row)
        .transpose()?
        .unwrap_or_default();
        let Some(mut next) = change(&current)? else {
            return Ok((current, false));
        };
        next.version = current.version + 1;
        sqlx::query("INSERT INTO app_config (app_id, version, vars, secrets) VALUES (?, ?, ?, ?)")
            .bind(app.as_str())
            .bind(i64::try_from(next.version).unwrap_or(i64::MAX))
            .bind(to_json(&next.vars, "config vars")?)
            .bind(to_json(&next.secrets, "config secrets")?)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                sql::write_error(what, || format!("config of app {app} changed meanwhile"), e)
            })?;
        tx.commit().await.map_err(|e| sql::db_error(what, e))?;
        Ok((next, true))
    }

    /// Makes version `version`'s vars and secrets the app's config again, as a new version (a
    /// rollback to a release rolls to its config too). Nothing is written when the current
    /// config holds exactly those already. Returns the config afterwards and whether it changed.
    pub async fn restore_app_config(
        &self,
        app: &AppId,
        version: u64,
    ) -> Result<(AppConfigRow, bool)> {
        let wanted = self.get_app_config_version(app, version).await?;
        self.change_app_config(app, |current| {
            let same = current.vars == wanted.vars && current.secrets == wanted.secrets;
            Ok((!same).then(|| wanted.clone()))
        })
        .await
    }

    /// Every stored config version of every app, oldest first, for a key rotation.
    pub async fn list_all_app_configs(&self) -> Result<Vec<(AppId, AppConfigRow)>> {
        let rows = sqlx::query(&format!(
            "SELECT app_id, {CONFIG_COLUMNS} FROM app_config ORDER BY app_id, version"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| sql::db_error("listing app configs", e))?;
        rows.iter()
            .map(|r| Ok((sql::parse(r, "app_id")?, config_from_row(r)?)))
            .collect()
    }

    /// Replaces the sealed secrets of one stored config version (a key rotation re-seals them;
    /// nothing else about a version ever changes).
    pub async fn reseal_app_config(
        &self,
        app: &AppId,
        version: u64,
        secrets: &BTreeMap<String, String>,
    ) -> Result<()> {
        let done =
            sqlx::query("UPDATE app_config SET secrets = ? WHERE app_id = ? AND version = ?")
                .bind(to_json(secrets, "config secrets")?)
                .bind(app.as_str())
                .bind(i64::try_from(version).unwrap_or(i64::MAX))
                .execute(&self.pool)
                .await
                .map_err(|e| sql::db_error("re-sealing an app's secrets", e))?;
        sql::found(&done, || format!("config version {version} of app {app}"))
    }
}
