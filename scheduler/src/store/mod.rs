//! The MySQL store: typed functions over the scheduler's tables (tenants, hosts, apps, domains,
//! deployments, instances, jobs, pushed tags, releases, app config versions, app logs, events,
//! webhooks, gateways' demand reports). Only this module and `placement` write SQL.
//!
//! Architecture invariant: a host's free memory and CPU change only through
//! `placement::claim` / `placement::release`, inside the optimistic `version` check. Nothing
//! here updates `mem_free`, `cpu_free` or `version` except host creation.

mod app_config;
mod apps;
mod demand;
mod deployments;
mod events;
#[cfg(test)]
pub(crate) mod fixtures;
mod hosts;
mod instances;
mod jobs;
mod log_chunk;
mod logs;
mod releases;
mod run_rows;
mod schedules;
pub(crate) mod sql;
mod tags;
mod tenants;
mod traffic;
mod workflows;

pub use app_config::AppConfigRow;
pub use apps::{AppRow, DomainRow};
pub use demand::Demand;
pub use deployments::{DeploymentRow, DeploymentState, NewDeployment};
pub use events::{EventRow, EventScope, WebhookRow};
pub(crate) use hosts::parse_state as hosts_state;
pub use hosts::{HostRow, NewHost};
pub use instances::InstanceRow;
pub use jobs::{JobEnd, JobRow, NewJob, StoredOutput};
pub use logs::{
    in_time_order, without_copies, LogPage, LogRow, NewLogLine, StoredBatch, StoredChunk,
    MAX_INSERT_BYTES,
};
pub use releases::{NewRelease, ReleaseRow};
pub use run_rows::RunTable;
pub use schedules::{RunOutcome, ScheduleRow};
pub use tags::{NewTag, TagRow};
pub(crate) use tenants::lock_and_count;
pub use tenants::{Quota, TenantRow, Usage};
pub use workflows::WorkflowRow;

use crate::error::{Error, Result};
use crate::placement::PlacementMetrics;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The migrations in `scheduler/migrations`, embedded in the binary and applied at start.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The scheduler's handle on MySQL: a connection pool plus the placement counters of this
/// scheduler process. Cheap to clone; clones share the pool and the counters.
#[derive(Debug, Clone)]
pub struct Store {
    pool: MySqlPool,
    metrics: Arc<PlacementMetrics>,
    /// Smallest and largest host id and when they were read (placement's random windows).
    host_id_bounds: Arc<Mutex<Option<HostIdBounds>>>,
    /// How long a released host port stays out of use, seconds.
    port_quarantine_s: u64,
}

/// A released host port's quarantine unless configured otherwise (`--port-quarantine-secs`):
/// as long as a gateway cut off from ZooKeeper may still serve its cached routes.
pub const DEFAULT_PORT_QUARANTINE_S: u64 = 600;

/// `(min id, max id)` of `hosts` as last read, and when.
type HostIdBounds = ((Option<i64>, Option<i64>), Instant);

/// How long placement trusts cached host id bounds.
const HOST_ID_BOUNDS_TTL: Duration = Duration::from_secs(1);

impl Store {
    /// Connects to `url` (`mysql://user:pw@host:port/db`) with at most `max_connections`
    /// connections and applies the embedded migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store> {
        let options = MySqlConnectOptions::from_str(url)
            .map_err(|_| Error::Invalid("database url".into()))?;
        let pool = MySqlPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| sql::db_error("connecting to the database", e))?;
        let store = Store::from_pool(pool);
        store.migrate().await?;
        Ok(store)
    }

    /// Wraps an existing pool (migrations are not applied; call [`Store::migrate`]).
    pub fn from_pool(pool: MySqlPool) -> Store {
        Store {
            pool,
            metrics: Arc::new(PlacementMetrics::default()),
            host_id_bounds: Arc::new(Mutex::new(None)),
            port_quarantine_s: DEFAULT_PORT_QUARANTINE_S,
        }
    }

    /// This store with released host ports kept out of use for `secs` seconds (0: reused at
    /// once).
    pub fn with_port_quarantine(mut self, secs: u64) -> Store {
        self.port_quarantine_s = secs;
        self
    }

    /// How long a released host port stays out of use, seconds.
    pub fn port_quarantine_s(&self) -> u64 {
        self.port_quarantine_s
    }

    /// Applies the embedded migrations that are not applied yet.
    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await.map_err(|e| {
            tracing::error!(error = %e, "migration failed");
            Error::Migration(match e {
                sqlx::migrate::MigrateError::VersionMissing(v) => {
                    format!("the database has migration {v} that this binary does not know")
                }
                sqlx::migrate::MigrateError::VersionMismatch(v) => {
                    format!("migration {v} was changed after it was applied")
                }
                _ => "see the scheduler log".into(),
            })
        })
    }

    /// The connection pool, for health checks and for code that needs its own transaction.
    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    /// This scheduler's placement counters.
    pub fn metrics(&self) -> &PlacementMetrics {
        &self.metrics
    }

    pub(crate) fn cached_host_id_bounds(&self) -> Option<(Option<i64>, Option<i64>)> {
        let guard = self.host_id_bounds.lock().ok()?;
        guard
            .as_ref()
            .filter(|(_, at)| at.elapsed() < HOST_ID_BOUNDS_TTL)
            .map(|(bounds, _)| *bounds)
    }

    pub(crate) fn cache_host_id_bounds(&self, bounds: (Option<i64>, Option<i64>)) {
        if let Ok(mut guard) = self.host_id_bounds.lock() {
            *guard = Some((bounds, Instant::now()));
        }
    }

    /// Checks that the database answers (for `/healthz`).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(|e| sql::db_error("pinging the database", e))
    }
}
