//! The `events` and `webhooks` tables: stored events (newest last by id, bounded history,
//! scoped by the owning tenant of their app) and the webhooks they are delivered to, with how
//! far each webhook's delivery got.

use super::sql::{self, get, json, opt_text, text};
use super::Store;
use crate::error::{Error, Result};
use caas_types::{AppId, TenantName};
use sqlx::mysql::MySqlRow;

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    /// Increasing id (the `before` of a page, the cursor of a follower).
    pub id: i64,
    /// Milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// The event type, e.g. `deploy.started`.
    pub kind: String,
    /// The app it is about, if any.
    pub app: Option<String>,
    /// The app's owning tenant when it was stored (`None`: an operator app or no app).
    pub tenant: Option<String>,
    /// The event's own fields (a JSON object).
    pub body: serde_json::Map<String, serde_json::Value>,
}

/// Which events a reader may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventScope<'a> {
    /// The operator: every event.
    All,
    /// A tenant: only events of its apps.
    Tenant(&'a TenantName),
}

/// A webhook as stored (its secret sealed).
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookRow {
    /// Its id.
    pub id: String,
    /// The tenant that owns it (`None`: the operator's, sees all events).
    pub tenant: Option<String>,
    /// Where events are POSTed.
    pub url: String,
    /// The event types it subscribes to.
    pub events: Vec<String>,
    /// The secret, sealed with the operator's key.
    pub sealed_secret: String,
    /// The last event id it is done with.
    pub delivered_id: i64,
    /// Milliseconds since the Unix epoch.
    pub created_ms: i64,
}

const EVENT_COLUMNS: &str = "id, CAST(UNIX_TIMESTAMP(ts) * 1000 AS SIGNED) AS ts_ms, type, app, \
     tenant, body";
const WEBHOOK_COLUMNS: &str = "id, tenant, url, events, secret, delivered_id, \
     CAST(UNIX_TIMESTAMP(created_at) * 1000 AS SIGNED) AS created_ms";

fn event_from_row(row: &MySqlRow) -> Result<EventRow> {
    Ok(EventRow {
        id: get(row, "id")?,
        ts_ms: get(row, "ts_ms")?,
        kind: text(row, "type")?,
        app: opt_text(row, "app")?,
        tenant: opt_text(row, "tenant")?,
        body: json(row, "body")?,
    })
}

fn webhook_from_row(row: &MySqlRow) -> Result<WebhookRow> {
    Ok(WebhookRow {
        id: text(row, "id")?,
        tenant: opt_text(row, "tenant")?,
        url: text(row, "url")?,
        events: json(row, "events")?,
        sealed_secret: text(row, "secret")?,
        delivered_id: get(row, "delivered_id")?,
        created_ms: get(row, "created_ms")?,
    })
}

/// `(sql, tenant)` of a scope's condition.
fn scope_sql(scope: EventScope<'_>) -> (&'static str, Option<&str>) {
    match scope {
        EventScope::All => ("TRUE", None),
        EventScope::Tenant(t) => ("tenant = ?", Some(t.as_str())),
    }
}

/// Which side of an event id a read takes.
#[derive(Debug, Clone, Copy)]
enum Page {
    /// Older than it, newest first (a listing's page).
    Before(i64),
    /// Newer than it, oldest first (a follower's next batch).
    After(i64),
}

impl Store {
    /// Stores an event; the tenant is read from the app's row in the same statement. Answers
    /// its id.
    pub async fn insert_event(
        &self,
        kind: &str,
        app: Option<&AppId>,
        body: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<i64> {
        let body = sql::to_json(body, "event body")?;
        let app = app.map(AppId::as_str);
        let done = sqlx::query(
            "INSERT INTO events (type, app, tenant, body) \
             SELECT ?, ?, (SELECT tenant FROM apps WHERE id = ?), ?",
        )
        .bind(kind)
        .bind(app)
        .bind(app)
        .bind(&body)
        .execute(&self.pool)
        .await
        .map_err(|e| sql::db_error("storing an event", e))?;
        i64::try_from(done.last_insert_id()).map_err(|_| Error::Invalid("event id".into()))
    }

    /// Deletes all but the `keep` newest events.
    pub async fn prune_events(&self, keep: u32) -> Result<u64> {
        let cutoff = sqlx::query("SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?")
            .bind(i64::from(keep))
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| sql::db_error("finding old events", e))?;
        let Some(row) = cutoff else { return Ok(0) };
        let cutoff: i64 = get(&row, "id")?;
        let done = sqlx::query("DELETE FROM events WHERE id <= ?")
            .bind(cutoff)
            .execute(&self.pool)
            .await
            .map_err(|e| sql::db_error("pruning events", e))?;
        Ok(done.rows_affected())
    }

    /// A page of events the scope sees, newest first: at most `limit`, ids below `before`,
    /// of `app` only if given.
    pub async fn list_events(
        &self,
        scope: EventScope<'_>,
        app: Option<&AppId>,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<EventRow>> {
        self.read_events(scope, app, Page::Before(before.unwrap_or(i64::MAX)), limit)
            .await
    }

    /// Events the scope sees with ids above `after`, oldest first, at most `limit` (a
    /// follower's and the webhook worker's next batch).
    pub async fn events_after(
        &self,
        scope: EventScope<'_>,
        app: Option<&AppId>,
        after: i64,
        limit: u32,
    ) -> Result<Vec<EventRow>> {
        self.read_events(scope, app, Page::After(after), limit)
            .await
    }

    /// The one reader behind [`Store::list_events`] and [`Store::events_after`].
    async fn read_events(
        &self,
        scope: EventScope<'_>,
        app: Option<&AppId>,
        page: Page,
        limit: u32,
    ) -> Result<Vec<EventRow>> {
        let (cond, tenant) = scope_sql(scope);
        let app_cond = if app.is_some() { "app = ?" } else { "TRUE" };
        let (from, order, id, what) = match page {
            Page::Before(id) => ("id < ?", "id DESC", id, "listing events"),
            Page::After(id) => ("id > ?", "id", id, "reading new events"),
        };
        let text = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE {cond} AND {app_cond} AND {from} \
             ORDER BY {order} LIMIT ?"
        );
        let mut q = sqlx::query(&text);
        if let Some(t) = tenant {
            q = q.bind(t);
        }
        if let Some(a) = app {
            q = q.bind(a.as_str());
        }
        let rows = q
            .bind(id)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| sql::db_error(what, e))?;
        rows.iter().map(event_from_row).collect()
    }

    /// The newest event id (0 with none).
    pub async fn newest_event_id(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COALESCE(MAX(id), 0) AS id FROM events")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| sql::db_error("reading the newest event", e))?;
        get(&row, "id")
    }

    /// Stores a webhook; it starts after the newest event stored now (no history).
    pub async fn create_webhook(
        &self,
        id: &str,
        tenant: Option<&TenantName>,
        url: &str,
        events: &[String],
        sealed_secret: &str,
    ) -> Result<WebhookRow> {
        let events_json = sql::to_json(&events, "webhook events")?;
        sqlx::query(
            "INSERT INTO webhooks (id, tenant, url, events, secret, delivered_id) \
             SELECT ?, ?, ?, ?, ?, COALESCE(MAX(id), 0) FROM events",
        )
        .bind(id)
        .bind(tenant.map(TenantName::as_str))
        .bind(url)
        .bind(&events_json)
        .bind(sealed_secret)
        .execute(&self.pool)
        .await
        .map_err(|e| sql::write_error("storing a webhook", || format!("webhook {id}"), e))?;
        self.get_webhook(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("webhook {id}")))
    }

    /// One webhook.
    pub async fn get_webhook(&self, id: &str) -> Result<Option<WebhookRow>> {
        let row = sqlx::query(&format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| sql::db_error("reading a webhook", e))?;
        row.as_ref().map(webhook_from_row).transpose()
    }

    /// The webhooks of one owner: `tenant`'s, or the operator's (`None`).
    pub async fn list_webhooks(&self, tenant: Option<&TenantName>) -> Result<Vec<WebhookRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE tenant <=> ? ORDER BY created_at, id"
        ))
        .bind(tenant.map(TenantName::as_str))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| sql::db_error("listing webhooks", e))?;
        rows.iter().map(webhook_from_row).collect()
    }

    /// Every webhook (the delivery worker's).
    pub async fn all_webhooks(&self) -> Result<Vec<WebhookRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| sql::db_error("listing webhooks", e))?;
        rows.iter().map(webhook_from_row).collect()
    }

    /// Deletes a webhook of one owner (`tenant`'s, or the operator's with `None`);
    /// [`Error::NotFound`] if that owner has none with this id.
    pub async fn delete_webhook(&self, tenant: Option<&TenantName>, id: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM webhooks WHERE id = ? AND tenant <=> ?")
            .bind(id)
            .bind(tenant.map(TenantName::as_str))
            .execute(&self.pool)
            .await
            .map_err(|e| sql::db_error("deleting a webhook", e))?;
        sql::found(&done, || format!("webhook {id}"))
    }

    /// Replaces a webhook's sealed secret (a key rotation).
    pub async fn reseal_webhook(&self, id: &str, sealed_secret: &str) -> Result<()> {
        let done = sqlx::query("UPDATE webhooks SET secret = ? WHERE id = ?")
            .bind(sealed_secret)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(|e| sql::db_error("re-sealing a webhook's secret", e))?;
        sql::found(&done, || format!("webhook {id}"))
    }

    /// Records that a webhook is done with events up to `id` (never moves back).
    pub async fn set_webhook_delivered(&self, webhook: &str, id: i64) -> Result<()> {
        sqlx::query("UPDATE webhooks SET delivered_id = GREATEST(delivered_id, ?) WHERE id = ?")
            .bind(id)
            .bind(webhook)
            .execute(&self.pool)
            .await
            .map_err(|e| sql::db_error("recording a webhook delivery", e))?;
        Ok(())
    }
}
