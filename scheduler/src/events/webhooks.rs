//! Webhooks: `POST`s of events to a tenant's (or the operator's) URL, signed with HMAC-SHA256 of
//! the body under the webhook's secret (`X-Caas-Signature: sha256=<hex>`), with short timeouts,
//! retries with exponential back-off and a bounded queue per webhook (the oldest is dropped
//! when full). The secret is sealed with the operator's secrets key. The leader delivers
//! ([`Webhooks::run`]); each webhook's row records the last event it is done with, so a new
//! leader resumes there: delivery is at least once.

use super::{to_json, Cursor, EventType, BATCH};
use crate::app_config::crypto::SecretsKey;
use crate::app_config::NO_KEY;
use crate::error::{Error, Result};
use crate::store::{EventRow, Store, WebhookRow};
use caas_types::api::{self, CreateWebhook};
use caas_types::TenantName;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// Longest webhook URL.
const MAX_URL: usize = 2048;
/// Largest secret, bytes.
const MAX_SECRET: usize = 1024;
/// Events waiting per webhook; when full, the oldest is dropped.
pub const QUEUE: usize = 1000;
/// Delivery attempts per event.
pub const TRIES: u32 = 6;
/// The first retry's delay; each next one doubles.
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// How long connecting to a webhook may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one delivery may take in all.
const TOTAL_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the worker reads the webhooks and new events.
const TICK: Duration = Duration::from_millis(500);

/// The delays before the 2nd, 3rd, ... attempt: 0.5 s doubling, [`TRIES`] attempts in all.
pub fn retry_delays() -> impl Iterator<Item = Duration> {
    (0..TRIES.saturating_sub(1)).map(|i| FIRST_RETRY * 2u32.pow(i))
}

/// `sha256=` and the hex HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Checks a webhook URL: absolute `http` or `https`, a host, no user name or password, at
/// most [`MAX_URL`] bytes. Answers the URL as parsed (normalised).
pub fn check_url(raw: &str) -> Result<String> {
    let bad = |why: &str| Error::Invalid(format!("webhook url: {why}"));
    if raw.len() > MAX_URL {
        return Err(bad("too long"));
    }
    if raw.trim() != raw || raw.is_empty() {
        return Err(bad("must be an absolute http:// or https:// URL"));
    }
    // The URL parser forgives `http:///host` and `http:\\host`; a webhook URL must be plain.
    let lower = raw.to_ascii_lowercase();
    let after_scheme = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"))
        .ok_or_else(|| bad("only http:// and https:// URLs are allowed"))?;
    if after_scheme.is_empty() || after_scheme.starts_with(['/', '\\', '?', '#']) {
        return Err(bad("must name a host"));
    }
    let url = reqwest::Url::parse(raw).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("only http:// and https:// URLs are allowed"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("must name a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "must not hold credentials (sign with the secret instead)",
        ));
    }
    Ok(url.to_string())
}

/// Checks the subscribed types: at least one, each a known type, no repeats (answered sorted).
pub fn check_types(types: &[String]) -> Result<Vec<String>> {
    if types.is_empty() {
        return Err(Error::Invalid(
            "events: name at least one event type".into(),
        ));
    }
    let mut out = Vec::new();
    for t in types {
        if EventType::parse(t).is_none() {
            return Err(Error::Invalid(format!(
                "events: unknown event type {t:?} (known: {})",
                EventType::ALL.map(EventType::as_str).join(", ")
            )));
        }
        if !out.contains(t) {
            out.push(t.clone());
        }
    }
    out.sort();
    Ok(out)
}

/// Whether a webhook gets an event: a type it subscribes to, and (for a tenant's webhook) an
/// event of one of the tenant's apps.
pub fn wants(hook: &WebhookRow, event: &EventRow) -> bool {
    hook.events.contains(&event.kind)
        && (hook.tenant.is_none() || hook.tenant.as_deref() == event.tenant.as_deref())
}

fn to_api(row: &WebhookRow) -> api::Webhook {
    api::Webhook {
        id: row.id.clone(),
        url: row.url.clone(),
        events: row.events.clone(),
        created_at: api::rfc3339_from_ms(row.created_ms),
    }
}

/// Adds, lists and removes webhooks, and delivers events to them (leader).
#[derive(Debug)]
pub struct Webhooks {
    store: Store,
    key: Option<SecretsKey>,
    http: reqwest::Client,
}

impl Webhooks {
    /// Webhooks over `store`; without `key`, adding one is refused (its secret cannot be sealed).
    pub fn new(store: Store, key: Option<SecretsKey>) -> Webhooks {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(TOTAL_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Webhooks { store, key, http }
    }

    /// Adds a webhook owned by `tenant` (`None`: the operator). Input is checked before
    /// anything is written.
    pub async fn create(
        &self,
        tenant: Option<&TenantName>,
        req: &CreateWebhook,
    ) -> Result<api::Webhook> {
        let url = check_url(&req.url)?;
        let events = check_types(&req.events)?;
        let secret = req.secret.expose();
        if secret.is_empty() || secret.len() > MAX_SECRET {
            return Err(Error::Invalid(format!(
                "secret: must be 1 to {MAX_SECRET} bytes"
            )));
        }
        let key = self
            .key
            .as_ref()
            .ok_or_else(|| Error::SecretsOff(NO_KEY.into()))?;
        let id = format!("wh_{}", &crate::api::auth::new_token()[..16]);
        let sealed = key.seal_webhook(&id, secret).map_err(Error::Secrets)?;
        let row = self
            .store
            .create_webhook(&id, tenant, &url, &events, &sealed)
            .await?;
        tracing::info!(webhook = %id, %url, ?events, "webhook added");
        Ok(to_api(&row))
    }

    /// The webhooks of `tenant` (`None`: the operator's own).
    pub async fn list(&self, tenant: Option<&TenantName>) -> Result<Vec<api::Webhook>> {
        Ok(self
            .store
            .list_webhooks(tenant)
            .await?
            .iter()
            .map(to_api)
            .collect())
    }

    /// Removes one of `tenant`'s webhooks (`None`: the operator's).
    pub async fn delete(&self, tenant: Option<&TenantName>, id: &str) -> Result<()> {
        self.store.delete_webhook(tenant, id).await
    }

    /// Delivers events to every webhook until `stop` completes (the leader runs this while it
    /// leads). Reads the webhooks and new events every [`TICK`].
    pub async fn run(self: Arc<Self>, stop: impl Future<Output = ()>) {
        let mut hooks: HashMap<String, Hook> = HashMap::new();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::sleep(TICK) => {}
            }
            if let Err(e) = self.dispatch(&mut hooks).await {
                tracing::warn!(error = %e, "webhook delivery could not read events");
            }
        }
        for (_, hook) in hooks.drain() {
            hook.task.abort();
        }
    }

    /// One pass: starts delivery for new webhooks, stops it for removed ones, queues new events.
    async fn dispatch(self: &Arc<Self>, hooks: &mut HashMap<String, Hook>) -> Result<()> {
        let rows = self.store.all_webhooks().await?;
        hooks.retain(|id, hook| {
            let keep = rows.iter().any(|r| &r.id == id);
            if !keep {
                hook.task.abort();
            }
            keep
        });
        for row in rows {
            if let Some(hook) = hooks.get_mut(&row.id) {
                hook.row = row;
                continue;
            }
            let queue = Arc::new(Queue::default());
            let task = tokio::spawn(self.clone().deliver_all(row.clone(), queue.clone()));
            hooks.insert(
                row.id.clone(),
                Hook {
                    cursor: Cursor::after(row.delivered_id),
                    row,
                    queue,
                    task,
                },
            );
        }
        let Some(floor) = hooks.values().map(|h| h.cursor.floor()).min() else {
            return Ok(());
        };
        let events = self
            .store
            .events_after(crate::store::EventScope::All, None, floor, BATCH)
            .await?;
        for hook in hooks.values_mut() {
            for ev in &events {
                if hook.cursor.admit(ev.id) && wants(&hook.row, ev) {
                    hook.queue.push(ev.clone(), &hook.row.id);
                }
            }
        }
        Ok(())
    }

    /// Delivers one webhook's queue, in order, recording each event it is done with.
    async fn deliver_all(self: Arc<Self>, row: WebhookRow, queue: Arc<Queue>) {
        let secret = match &self.key {
            Some(key) => match key.open_webhook(&row.id, &row.sealed_secret) {
                Ok(s) => s.into_inner(),
                Err(e) => {
                    tracing::warn!(webhook = %row.id, error = %e, "cannot open a webhook's secret; not delivering to it");
                    return;
                }
            },
            None => {
                tracing::warn!(webhook = %row.id, "no secrets key to open a webhook's secret; not delivering to it");
                return;
            }
        };
        loop {
            let ev = queue.pop().await;
            self.deliver(&row, secret.as_bytes(), &ev).await;
            if let Err(e) = self.store.set_webhook_delivered(&row.id, ev.id).await {
                tracing::warn!(webhook = %row.id, error = %e, "could not record a webhook delivery");
            }
        }
    }

    /// POSTs one event, retrying with back-off; gives up (with a warning) after [`TRIES`].
    async fn deliver(&self, row: &WebhookRow, secret: &[u8], ev: &EventRow) {
        let body = serde_json::to_vec(&to_json(ev)).unwrap_or_default();
        let sig = signature(secret, &body);
        let mut delays = retry_delays();
        let mut attempt = 1;
        loop {
            let sent = self
                .http
                .post(&row.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("X-Caas-Signature", &sig)
                .header("X-Caas-Event", &ev.kind)
                .header("X-Caas-Delivery", ev.id.to_string())
                .body(body.clone())
                .send()
                .await;
            let failure = match sent {
                Ok(r) if r.status().is_success() => return,
                Ok(r) => format!("answered {}", r.status()),
                Err(e) => format!("{e}"),
            };
            let Some(delay) = delays.next() else {
                tracing::warn!(webhook = %row.id, event = ev.id, attempts = attempt, %failure, "webhook delivery gave up");
                return;
            };
            tracing::debug!(webhook = %row.id, event = ev.id, attempt, %failure, "webhook delivery failed; retrying");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }
}

/// A webhook the worker delivers to.
struct Hook {
    row: WebhookRow,
    cursor: Cursor,
    queue: Arc<Queue>,
    task: tokio::task::JoinHandle<()>,
}

/// A bounded queue of events waiting for one webhook.
#[derive(Debug, Default)]
struct Queue {
    items: Mutex<VecDeque<EventRow>>,
    ready: Notify,
}

impl Queue {
    /// Adds an event; when [`QUEUE`] are waiting already, the oldest is dropped.
    fn push(&self, ev: EventRow, webhook: &str) {
        let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        if items.len() >= QUEUE {
            if let Some(dropped) = items.pop_front() {
                tracing::warn!(
                    webhook,
                    event = dropped.id,
                    "webhook queue full; dropped its oldest event"
                );
            }
        }
        items.push_back(ev);
        drop(items);
        self.ready.notify_one();
    }

    /// The next event, waiting for one.
    async fn pop(&self) -> EventRow {
        loop {
            let next = self
                .items
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop_front();
            if let Some(ev) = next {
                return ev;
            }
            self.ready.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_hex() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn only_plain_http_and_https_urls_are_accepted() {
        assert_eq!(
            check_url("https://hooks.example.com/caas?x=1")
                .ok()
                .as_deref(),
            Some("https://hooks.example.com/caas?x=1")
        );
        assert!(check_url("http://127.0.0.1:8080/").is_ok());
        for bad in [
            "file:///etc/passwd",
            "ftp://example.com/",
            "http://",
            "http:///path",
            "http:\\\\host/",
            "https://?x",
            "https://user:pw@example.com/",
            "https://user@example.com/",
            "example.com/hook",
            "/relative",
            "",
            " https://example.com/",
            "javascript:alert(1)",
        ] {
            assert!(
                matches!(check_url(bad), Err(Error::Invalid(_))),
                "{bad:?} was accepted"
            );
        }
        assert!(check_url(&format!("https://e.com/{}", "a".repeat(MAX_URL))).is_err());
    }

    #[test]
    fn types_must_be_known() {
        assert_eq!(
            check_types(&[
                "deploy.failed".into(),
                "app.restarted".into(),
                "deploy.failed".into()
            ])
            .ok(),
            Some(vec!["app.restarted".to_owned(), "deploy.failed".to_owned()])
        );
        assert!(check_types(&[]).is_err());
        assert!(check_types(&["deploy.failed".into(), "deploy.exploded".into()]).is_err());
    }

    #[test]
    fn retries_back_off_exponentially() {
        let delays: Vec<u64> = retry_delays().map(|d| d.as_millis() as u64).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 8000]);
        assert_eq!(delays.len() as u32 + 1, TRIES);
    }

    fn event(id: i64, kind: &str, tenant: Option<&str>) -> EventRow {
        EventRow {
            id,
            ts_ms: 0,
            kind: kind.into(),
            app: Some("a".into()),
            tenant: tenant.map(Into::into),
            body: Default::default(),
        }
    }

    #[test]
    fn a_tenants_webhook_gets_only_its_apps_events_of_its_types() {
        let mut hook = WebhookRow {
            id: "wh_1".into(),
            tenant: Some("acme".into()),
            url: "http://x/".into(),
            events: vec!["deploy.failed".into()],
            sealed_secret: String::new(),
            delivered_id: 0,
            created_ms: 0,
        };
        assert!(wants(&hook, &event(1, "deploy.failed", Some("acme"))));
        assert!(!wants(&hook, &event(1, "deploy.failed", Some("other"))));
        assert!(!wants(&hook, &event(1, "deploy.failed", None)));
        assert!(!wants(&hook, &event(1, "deploy.started", Some("acme"))));
        hook.tenant = None;
        assert!(wants(&hook, &event(1, "deploy.failed", Some("other"))));
        assert!(wants(&hook, &event(1, "deploy.failed", None)));
    }

    #[tokio::test]
    async fn a_full_queue_drops_its_oldest() {
        let q = Queue::default();
        for id in 0..(QUEUE as i64 + 3) {
            q.push(event(id, "deploy.failed", None), "wh_1");
        }
        assert_eq!(q.pop().await.id, 3);
    }
}
