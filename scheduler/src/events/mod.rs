//! Events: what happened to apps, stored in the `events` table (the source of truth, so any
//! scheduler serves a follower), tenant-scoped on read, bounded (`--events-keep`), and
//! delivered to webhooks by the leader ([`webhooks`]).
//!
//! Architecture invariant: emitting an event never fails the operation that emits it; a store
//! failure is a warning in the log.

pub mod webhooks;

use crate::error::{Error, Result};
use crate::store::{EventRow, EventScope, Store};
use caas_types::{AppId, TenantName};
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Events a page holds when the client does not say.
pub const DEFAULT_PAGE: u32 = 100;
/// Most events one page holds.
pub const MAX_PAGE: u32 = 1000;
/// How often a follower reads the table when no event of this process woke it (events stored
/// by other schedulers).
const FOLLOW_POLL: Duration = Duration::from_millis(500);
/// Events read per batch by a follower or the webhook worker.
const BATCH: u32 = 500;
/// Ids below the newest one seen that a follower still looks back at, so an event whose insert
/// committed after a later id's is not missed.
const LOOK_BACK: i64 = 100;
/// Prune the history every this many events stored by this process.
const PRUNE_EVERY: u64 = 100;

/// The event types, by their wire names. Webhooks subscribe to these names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// A deploy began.
    DeployStarted,
    /// A deploy has every instance up.
    DeploySucceeded,
    /// A deploy failed and was rolled back.
    DeployFailed,
    /// A deployment's instance count changed.
    DeploymentScaled,
    /// A deployment was undeployed.
    DeploymentRemoved,
    /// An instance passed its health check again.
    InstanceHealthy,
    /// An instance failed its health check.
    InstanceUnhealthy,
    /// An unhealthy instance was replaced by a new one.
    InstanceReplaced,
    /// An instance's container was killed for running out of memory.
    InstanceOomKilled,
    /// An instance was killed on request.
    InstanceKilled,
    /// An instance was replaced for its age.
    InstanceRecycled,
    /// A release was recorded.
    ReleaseCreated,
    /// An app's instances were restarted.
    AppRestarted,
    /// An app's config changed.
    ConfigChanged,
    /// A job (one-off or a schedule's run) ended.
    JobFinished,
    /// A workflow ended.
    WorkflowFinished,
    /// The autoscaler changed a deployment's desired count, or could not reach it (with why).
    AutoscaleChanged,
    /// The leader marked a host `down`: its engine stopped answering (no app: operator only).
    HostDown,
    /// The leader marked a host it had marked `down` `ready` again: its engine answers.
    HostUp,
}

impl EventType {
    /// Every type.
    pub const ALL: [EventType; 19] = [
        EventType::DeployStarted,
        EventType::DeploySucceeded,
        EventType::DeployFailed,
        EventType::DeploymentScaled,
        EventType::DeploymentRemoved,
        EventType::InstanceHealthy,
        EventType::InstanceUnhealthy,
        EventType::InstanceReplaced,
        EventType::InstanceOomKilled,
        EventType::InstanceKilled,
        EventType::InstanceRecycled,
        EventType::ReleaseCreated,
        EventType::AppRestarted,
        EventType::ConfigChanged,
        EventType::JobFinished,
        EventType::WorkflowFinished,
        EventType::AutoscaleChanged,
        EventType::HostDown,
        EventType::HostUp,
    ];

    /// The wire name, e.g. `deploy.started`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::DeployStarted => "deploy.started",
            EventType::DeploySucceeded => "deploy.succeeded",
            EventType::DeployFailed => "deploy.failed",
            EventType::DeploymentScaled => "deployment.scaled",
            EventType::DeploymentRemoved => "deployment.removed",
            EventType::InstanceHealthy => "instance.healthy",
            EventType::InstanceUnhealthy => "instance.unhealthy",
            EventType::InstanceReplaced => "instance.replaced",
            EventType::InstanceOomKilled => "instance.oom_killed",
            EventType::InstanceKilled => "instance.killed",
            EventType::InstanceRecycled => "instance.recycled",
            EventType::ReleaseCreated => "release.created",
            EventType::AppRestarted => "app.restarted",
            EventType::ConfigChanged => "config.changed",
            EventType::JobFinished => "job.finished",
            EventType::WorkflowFinished => "workflow.finished",
            EventType::AutoscaleChanged => "autoscale.changed",
            EventType::HostDown => "host.down",
            EventType::HostUp => "host.up",
        }
    }

    /// The type of a wire name.
    pub fn parse(name: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks `?limit=&before=` of the event list: the page size (default [`DEFAULT_PAGE`], 1 to
/// [`MAX_PAGE`]) and the id the page stays below (at least 1).
pub fn page(limit: Option<u32>, before: Option<i64>) -> Result<(u32, Option<i64>)> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Error::Invalid(format!(
            "limit: must be between 1 and {MAX_PAGE}"
        )));
    }
    if before.is_some_and(|b| b < 1) {
        return Err(Error::Invalid(
            "before: must be an event id (1 or more)".into(),
        ));
    }
    Ok((limit, before))
}

/// An event as the API and webhooks show it: `{"id", "ts", "type", "app", ...fields}`.
pub fn to_json(row: &EventRow) -> Value {
    let mut out = Map::new();
    out.insert("id".into(), Value::from(row.id));
    out.insert(
        "ts".into(),
        Value::from(caas_types::api::rfc3339_from_ms(row.ts_ms)),
    );
    out.insert("type".into(), Value::from(row.kind.clone()));
    out.insert(
        "app".into(),
        row.app.clone().map_or(Value::Null, Value::from),
    );
    for (k, v) in &row.body {
        out.entry(k.clone()).or_insert_with(|| v.clone());
    }
    Value::Object(out)
}

/// Which ids a reader of the table has passed on: every id up to `floor`, and those in `seen`
/// above it. A reader asks for ids above `floor`, so an event whose insert committed after a
/// later id's (up to [`LOOK_BACK`] ids back) still comes, once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    floor: i64,
    seen: BTreeSet<i64>,
}

impl Cursor {
    /// A cursor that has passed on every id up to `floor`.
    pub fn after(floor: i64) -> Cursor {
        Cursor {
            floor,
            seen: BTreeSet::new(),
        }
    }

    /// The id to read above.
    pub fn floor(&self) -> i64 {
        self.floor
    }

    /// Whether `id` is new (and remembers it).
    pub fn admit(&mut self, id: i64) -> bool {
        if id <= self.floor || !self.seen.insert(id) {
            return false;
        }
        let newest = self.seen.last().copied().unwrap_or(self.floor);
        let floor = newest - LOOK_BACK;
        if floor > self.floor {
            self.floor = floor;
            self.seen = self.seen.split_off(&(floor + 1));
        }
        true
    }
}

/// Who reads events: a tenant (its apps only) or the operator, optionally one app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reader {
    /// `None`: the operator (every event).
    pub tenant: Option<TenantName>,
    /// Only this app's events.
    pub app: Option<AppId>,
}

impl Reader {
    fn scope(&self) -> EventScope<'_> {
        match &self.tenant {
            Some(t) => EventScope::Tenant(t),
            None => EventScope::All,
        }
    }
}

/// Stores events, wakes followers, prunes the history.
#[derive(Debug, Clone)]
pub struct Events {
    store: Store,
    keep: u32,
    /// The newest id this process stored; followers wait on it.
    newest: Arc<watch::Sender<i64>>,
    stored: Arc<AtomicU64>,
}

impl Events {
    /// Events over `store`, keeping the `keep` newest.
    pub fn new(store: Store, keep: u32) -> Events {
        Events {
            store,
            keep: keep.max(1),
            newest: Arc::new(watch::channel(0).0),
            stored: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Stores an event of `kind` about `app` with `fields` (a JSON object; anything else is
    /// stored under `"detail"`) and wakes this process's followers. Never fails: a store
    /// failure is logged.
    pub async fn emit(&self, kind: EventType, app: Option<&AppId>, fields: Value) {
        let body = match fields {
            Value::Object(m) => m,
            Value::Null => Map::new(),
            other => Map::from_iter([("detail".to_owned(), other)]),
        };
        match self.store.insert_event(kind.as_str(), app, &body).await {
            Ok(id) => {
                self.newest.send_modify(|n| *n = (*n).max(id));
                if self.stored.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == 0 {
                    let (store, keep) = (self.store.clone(), self.keep);
                    tokio::spawn(async move {
                        if let Err(e) = store.prune_events(keep).await {
                            tracing::warn!(error = %e, "could not prune old events");
                        }
                    });
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, event = %kind, app = ?app.map(AppId::as_str), "could not store an event");
            }
        }
    }

    /// A page of the events `reader` sees, newest first.
    pub async fn page(
        &self,
        reader: &Reader,
        limit: Option<u32>,
        before: Option<i64>,
    ) -> Result<Vec<Value>> {
        let (limit, before) = page(limit, before)?;
        let rows = self
            .store
            .list_events(reader.scope(), reader.app.as_ref(), limit, before)
            .await?;
        Ok(rows.iter().map(to_json).collect())
    }

    /// Wakes when this process stores an event.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.newest.subscribe()
    }

    /// Follows the events `reader` sees: the newest `limit` (oldest first), then every new one
    /// as it is stored (by any scheduler), until the receiver is dropped. A read failure ends
    /// the stream with that error.
    pub async fn follow(
        &self,
        reader: Reader,
        limit: Option<u32>,
    ) -> Result<mpsc::Receiver<Result<Value>>> {
        let (limit, _) = page(limit, None)?;
        let start = self.store.newest_event_id().await?;
        let mut tail = self
            .store
            .list_events(
                reader.scope(),
                reader.app.as_ref(),
                limit,
                Some(start.saturating_add(1)),
            )
            .await?;
        tail.reverse();
        let (tx, rx) = mpsc::channel(256);
        let store = self.store.clone();
        let mut wake = self.subscribe();
        tokio::spawn(async move {
            for row in &tail {
                if tx.send(Ok(to_json(row))).await.is_err() {
                    return;
                }
            }
            let mut cursor = Cursor::after(start);
            loop {
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = wake.changed() => {}
                    _ = tokio::time::sleep(FOLLOW_POLL) => {}
                }
                let rows = store
                    .events_after(reader.scope(), reader.app.as_ref(), cursor.floor(), BATCH)
                    .await;
                let rows = match rows {
                    Ok(rows) => rows,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                for row in rows.iter().filter(|r| cursor.admit(r.id)) {
                    if tx.send(Ok(to_json(row))).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_round_trip_and_are_the_briefs() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
        assert_eq!(EventType::DeployFailed.as_str(), "deploy.failed");
        assert_eq!(EventType::InstanceOomKilled.as_str(), "instance.oom_killed");
        assert_eq!(EventType::HostDown.as_str(), "host.down");
        assert_eq!(EventType::HostUp.as_str(), "host.up");
        assert_eq!(EventType::parse("deploy.exploded"), None);
        assert_eq!(EventType::parse("Deploy.Failed"), None);
    }

    #[test]
    fn page_bounds() {
        assert_eq!(page(None, None).ok(), Some((DEFAULT_PAGE, None)));
        assert_eq!(page(Some(1000), Some(5)).ok(), Some((1000, Some(5))));
        assert!(page(Some(0), None).is_err());
        assert!(page(Some(1001), None).is_err());
        assert!(page(None, Some(0)).is_err());
        assert!(page(None, Some(-3)).is_err());
    }

    #[test]
    fn a_cursor_passes_each_id_on_once_and_catches_late_commits() {
        let mut c = Cursor::after(10);
        assert!(!c.admit(10), "at or below the start: already passed on");
        assert!(c.admit(12));
        assert!(!c.admit(12));
        // 11 committed after 12: still new, once.
        assert!(c.admit(11));
        assert!(!c.admit(11));
        assert_eq!(c.floor(), 10);
        // Far ahead: the floor follows, LOOK_BACK behind the newest.
        assert!(c.admit(500));
        assert_eq!(c.floor(), 500 - LOOK_BACK);
        assert!(c.admit(450), "within the look-back window");
        assert!(!c.admit(450));
        assert!(!c.admit(300), "too far back");
    }

    #[test]
    fn an_event_shows_its_fields_beside_the_fixed_ones() {
        let row = EventRow {
            id: 7,
            ts_ms: 0,
            kind: "deploy.started".into(),
            app: Some("shop".into()),
            tenant: None,
            body: Map::from_iter([
                ("version".to_owned(), Value::from("v1")),
                ("type".to_owned(), Value::from("spoofed")),
            ]),
        };
        assert_eq!(
            to_json(&row),
            serde_json::json!({"id": 7, "ts": "1970-01-01T00:00:00.000Z", "type": "deploy.started",
                               "app": "shop", "version": "v1"})
        );
    }
}
