//! The `app_tags` table: every tag of an app's image that the registry reported as pushed, with
//! the digest it pointed to at its last push.

use super::sql::{self, get, opt_text, parse, text};
use super::Store;
use crate::error::{Error, Result};
use caas_types::{AppId, Version};
use sqlx::mysql::MySqlRow;

/// A pushed tag as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRow {
    /// The app (registry repository).
    pub app: AppId,
    /// The tag.
    pub tag: Version,
    /// Manifest digest at the last push.
    pub digest: String,
    /// Manifest media type.
    pub media_type: String,
    /// Registry user who pushed it, if the registry has auth.
    pub pushed_by: Option<String>,
    /// Time of the last push, milliseconds since the Unix epoch.
    pub pushed_ms: i64,
}

/// A push to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTag {
    /// The app.
    pub app: AppId,
    /// The tag.
    pub tag: Version,
    /// Manifest digest (already validated).
    pub digest: String,
    /// Manifest media type (already validated).
    pub media_type: String,
    /// Registry user, if any (already validated).
    pub pushed_by: Option<String>,
}

const TAG_COLUMNS: &str = "app_id, tag, digest, media_type, pushed_by, \
     CAST(UNIX_TIMESTAMP(pushed_at) * 1000 AS SIGNED) AS pushed_ms";

fn tag_from_row(row: &MySqlRow) -> Result<TagRow> {
    Ok(TagRow {
        app: parse(row, "app_id")?,
        tag: parse(row, "tag")?,
        digest: text(row, "digest")?,
        media_type: text(row, "media_type")?,
        pushed_by: opt_text(row, "pushed_by")?,
        pushed_ms: get(row, "pushed_ms")?,
    })
}

impl TagRow {
    /// The API's view.
    pub fn to_api(&self) -> caas_types::api::Tag {
        caas_types::api::Tag {
            app: self.app.clone(),
            tag: self.tag.clone(),
            digest: self.digest.clone(),
            media_type: self.media_type.clone(),
            pushed_by: self.pushed_by.clone(),
            pushed_at: caas_types::api::rfc3339_from_ms(self.pushed_ms),
        }
    }
}

impl Store {
    /// Records a push of a tag: a new row, or the new digest and time of a tag pushed again
    /// (the registry delivers at least once, so a repeat is harmless). An unknown app is
    /// [`Error::NotFound`].
    pub async fn record_tag(&self, t: &NewTag) -> Result<()> {
        sqlx::query(
            "INSERT INTO app_tags (app_id, tag, digest, media_type, pushed_by) \
             VALUES (?, ?, ?, ?, ?) \
             ON DUPLICATE KEY UPDATE digest = VALUES(digest), media_type = VALUES(media_type), \
             pushed_by = VALUES(pushed_by), pushed_at = CURRENT_TIMESTAMP(3)",
        )
        .bind(t.app.as_str())
        .bind(t.tag.as_str())
        .bind(&t.digest)
        .bind(&t.media_type)
        .bind(t.pushed_by.as_deref())
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(|e| {
            if sql::classify(&e) == sql::Failure::Reference {
                Error::NotFound(format!("app {}", t.app))
            } else {
                sql::write_error(
                    "recording a pushed tag",
                    || format!("tag {}:{}", t.app, t.tag),
                    e,
                )
            }
        })
    }

    /// An app's pushed tags, newest push first.
    pub async fn list_tags(&self, app: &AppId) -> Result<Vec<TagRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {TAG_COLUMNS} FROM app_tags WHERE app_id = ? ORDER BY pushed_at DESC, tag"
        ))
        .bind(app.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| sql::db_error("listing pushed tags", e))?;
        rows.iter().map(tag_from_row).collect()
    }
}
