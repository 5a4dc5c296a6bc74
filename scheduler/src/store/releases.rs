//! The `releases` table: every deploy and rollback of an app, numbered per app from 1, with the
//! digest its tag resolved to and the request it was made with. A release is active while its
//! deployment runs and no newer release names that deployment; the flag is computed on read, so
//! it cannot go stale. Rows survive undeploys and go with their app.

use super::sql::{self, get, json, parse, text, unsigned};
use super::Store;
use crate::error::{Error, Result};
use caas_types::api::{self, CreateDeployment};
use caas_types::{AppId, Version};
use sqlx::mysql::MySqlRow;

/// A release as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseRow {
    /// The app.
    pub app: AppId,
    /// Number within the app, from 1.
    pub number: u32,
    /// The version (tag).
    pub version: Version,
    /// The manifest digest, `sha256:...`.
    pub digest: String,
    /// The app's config version (0: no config).
    pub config_version: u64,
    /// The deployment request as given.
    pub spec: CreateDeployment,
    /// The deployment that runs it, while it exists.
    pub deployment_id: Option<i64>,
    /// Who made it.
    pub created_by: String,
    /// Milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// Whether its deployment runs now (and no newer release names it).
    pub active: bool,
}

/// A release to record (its number is the app's next).
#[derive(Debug, Clone, PartialEq)]
pub struct NewRelease {
    /// The app.
    pub app: AppId,
    /// The version (tag).
    pub version: Version,
    /// The manifest digest, `sha256:...`.
    pub digest: String,
    /// The app's config version (0: no config).
    pub config_version: u64,
    /// The deployment request as given.
    pub spec: CreateDeployment,
    /// The deployment that runs it.
    pub deployment_id: i64,
    /// Who made it.
    pub created_by: String,
}

/// Columns of a release with its computed `active`: it names a running deployment, and it is the
/// newest release that names it.
const RELEASE_SELECT: &str = "SELECT r.app_id, r.number, r.version, r.digest, r.config_version, \
     r.spec, r.deployment_id, r.created_by, \
     CAST(UNIX_TIMESTAMP(r.created_at) * 1000 AS SIGNED) AS created_ms, \
     (d.id IS NOT NULL AND r.number = (SELECT MAX(n.number) FROM releases n \
        WHERE n.app_id = r.app_id AND n.deployment_id = r.deployment_id)) AS active \
     FROM releases r LEFT JOIN deployments d ON d.id = r.deployment_id AND d.state = 'running'";

/// How many times a release insert retries when another scheduler took the same number.
const NUMBER_RETRIES: u32 = 5;

fn release_from_row(row: &MySqlRow) -> Result<ReleaseRow> {
    let active: i64 = get(row, "active")?;
    Ok(ReleaseRow {
        app: parse(row, "app_id")?,
        number: unsigned(row, "number")?,
        version: parse(row, "version")?,
        digest: text(row, "digest")?,
        config_version: unsigned(row, "config_version")?,
        spec: json(row, "spec")?,
        deployment_id: get(row, "deployment_id")?,
        created_by: text(row, "created_by")?,
        created_ms: get(row, "created_ms")?,
        active: active != 0,
    })
}

impl ReleaseRow {
    /// The API's view.
    pub fn to_api(&self) -> api::Release {
        api::Release {
            number: self.number,
            version: self.version.clone(),
            digest: self.digest.clone(),
            config_version: self.config_version,
            spec: self.spec.clone(),
            created_at: api::rfc3339_from_ms(self.created_ms),
            created_by: self.created_by.clone(),
            active: self.active,
        }
    }
}

impl Store {
    /// Records a release as the app's next number, then prunes the app's history to `keep`
    /// releases (never an active one, never the newest). Returns the stored row.
    pub async fn record_release(&self, r: &NewRelease, keep: u32) -> Result<ReleaseRow> {
        let spec = sql::to_json(&r.spec, "release spec")?;
        let config_version =
            i64::try_from(r.config_version).map_err(|_| Error::Invalid("config version".into()))?;
        let mut attempt = 0;
        let number = loop {
            attempt += 1;
            // Two schedulers racing for the same number meet at the primary key; the loser
            // reads the newest number again and takes the next one.
            let number = self.newest_release_number(&r.app).await?.saturating_add(1);
            let result = sqlx::query(
                "INSERT INTO releases (app_id, number, version, digest, config_version, spec, \
                 deployment_id, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(r.app.as_str())
            .bind(i64::from(number))
            .bind(r.version.as_str())
            .bind(&r.digest)
            .bind(config_version)
            .bind(&spec)
            .bind(r.deployment_id)
            .bind(&r.created_by)
            .execute(&self.pool)
            .await;
            match result {
                Ok(_) => break number,
                Err(e) if sql::classify(&e) == sql::Failure::Reference => {
                    return Err(Error::NotFound(format!("app {}", r.app)));
                }
                Err(e)
                    if attempt < NUMBER_RETRIES
                        && matches!(
                            sql::classify(&e),
                            sql::Failure::Duplicate | sql::Failure::Transient
                        ) => {}
                Err(e) => {
                    return Err(sql::write_error(
                        "recording a release",
                        || format!("another release of {} was recorded at once", r.app),
                        e,
                    ))
                }
            }
        };
        self.prune_releases(&r.app, number, keep).await?;
        self.get_release(&r.app, number).await
    }

    async fn newest_release_number(&self, app: &AppId) -> Result<u32> {
        let row =
            sqlx::query("SELECT COALESCE(MAX(number), 0) AS n FROM releases WHERE app_id = ?")
                .bind(app.as_str())
                .fetch_one(&self.pool)
                .await
                .map_err(|e| sql::db_error("reading the newest release", e))?;
        unsigned(&row, "n")
    }

    /// Deletes the app's releases older than the `keep` newest (`newest` is the newest number),
    /// except active ones.
    async fn prune_releases(&self, app: &AppId, newest: u32, keep: u32) -> Result<()> {
        let Some(cutoff) = crate::releases::prune_cutoff(newest, keep) else {
            return Ok(());
        };
        sqlx::query(
            "DELETE r FROM releases r \
             LEFT JOIN deployments d ON d.id = r.deployment_id AND d.state = 'running' \
             WHERE r.app_id = ? AND r.number <= ? AND d.id IS NULL",
        )
        .bind(app.as_str())
        .bind(i64::from(cutoff))
        .execute(&self.pool)
        .await
        .map_err(|e| sql::db_error("pruning releases", e))?;
        Ok(())
    }

    /// One release of an app.
    pub async fn get_release(&self, app: &AppId, number: u32) -> Result<ReleaseRow> {
        let row = sqlx::query(&format!(
            "{RELEASE_SELECT} WHERE r.app_id = ? AND r.number = ?"
        ))
        .bind(app.as_str())
        .bind(i64::from(number))
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| sql::db_error("reading a release", e))?
        .ok_or_else(|| Error::NotFound(format!("release {number} of app {app}")))?;
        release_from_row(&row)
    }

    /// An app's releases, newest first: at most `limit`, numbered below `before` if given.
    pub async fn list_releases(
        &self,
        app: &AppId,
        limit: u32,
        before: Option<u32>,
    ) -> Result<Vec<ReleaseRow>> {
        let rows = sqlx::query(&format!(
            "{RELEASE_SELECT} WHERE r.app_id = ? AND r.number < ? ORDER BY r.number DESC LIMIT ?"
        ))
        .bind(app.as_str())
        .bind(before.map_or(i64::MAX, i64::from))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| sql::db_error("listing releases", e))?;
        rows.iter().map(release_from_row).collect()
    }

    /// The newest release that names deployment `id` (what a roll of the running deployment
    /// starts from), if any.
    pub async fn release_of_deployment(&self, app: &AppId, id: i64) -> Result<Option<ReleaseRow>> {
        let row = sqlx::query(&format!(
            "{RELEASE_SELECT} WHERE r.app_id = ? AND r.deployment_id = ? \
             ORDER BY r.number DESC LIMIT 1"
        ))
        .bind(app.as_str())
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| sql::db_error("reading a deployment's release", e))?;
        row.as_ref().map(release_from_row).transpose()
    }
}
