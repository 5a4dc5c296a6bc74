//! The `gateway_demand` table: each gateway's latest demand report per app (held and in-flight
//! requests, with the database's time of the report), and the sum over the gateways that
//! reported lately. Rows of apps that do not exist are never written; an app's rows go with it.
//! A report's traffic goes into `app_traffic` in the same transaction (`store/traffic.rs`).

use super::sql::{self, get, parse, text};
use super::Store;
use crate::error::Result;
use caas_types::api::{AppDemand, AppTraffic, DemandReport};
use caas_types::AppId;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// Apps per statement when a report is stored (4 placeholders each).
const CHUNK: usize = 1000;

/// One app's demand added up over the gateways whose reports are fresh.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Demand {
    /// Requests held for the app while it has no instance.
    pub held: u64,
    /// Requests sent to its instances and not yet answered.
    pub in_flight: u64,
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl Store {
    /// Stores a gateway's report, which is its whole demand: it replaces everything the same
    /// gateway reported before (an app it no longer names, or names with no held or in-flight
    /// request, has no demand from it; an empty report clears it), in one transaction, stamped
    /// with the database's time; the apps' traffic (with the report's `boot`, which the caller
    /// checked is there when any app has traffic) is added in the same transaction. Apps that
    /// do not exist are skipped (a gateway's cache may still name a deleted app). An app named
    /// twice keeps its last counts.
    pub async fn record_demand(&self, report: &DemandReport) -> Result<()> {
        let (gateway, apps) = (&report.gateway, report.apps.as_slice());
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| sql::db_error("recording a demand report", e))?;
        sqlx::query("DELETE FROM gateway_demand WHERE gateway = ?")
            .bind(gateway.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| sql::db_error("replacing a gateway's demand", e))?;
        for chunk in apps.chunks(CHUNK) {
            // Which of them exist (an app deleted right after this leaves a row that counts
            // for nothing once stale, and is pruned).
            let mut q = sqlx::QueryBuilder::<sqlx::MySql>::new("SELECT id FROM apps WHERE id IN (");
            let mut names = q.separated(", ");
            for d in chunk {
                names.push_bind(d.app.as_str());
            }
            q.push(")");
            let known: HashSet<String> = q
                .build()
                .fetch_all(&self.pool)
                .await
                .map_err(|e| sql::db_error("reading a demand report's apps", e))?
                .iter()
                .map(|row| text(row, "id"))
                .collect::<Result<_>>()?;
            // The last entry of an app wins, written once.
            let mut last: HashMap<&str, &AppDemand> = HashMap::new();
            for d in chunk.iter().filter(|d| known.contains(d.app.as_str())) {
                last.insert(d.app.as_str(), d);
            }
            if let Some(boot) = report.boot {
                let traffic: Vec<(&str, &AppTraffic)> = last
                    .iter()
                    .filter_map(|(app, d)| d.traffic.as_ref().map(|t| (*app, t)))
                    .collect();
                super::traffic::insert(&mut tx, gateway, boot, &traffic).await?;
            }
            // An app named for its traffic alone has no demand here: no row, as before.
            last.retain(|_, d| d.held > 0 || d.in_flight > 0);
            if last.is_empty() {
                continue;
            }
            let mut q = sqlx::QueryBuilder::<sqlx::MySql>::new(
                "INSERT INTO gateway_demand (gateway, app_id, held, in_flight, reported_at) ",
            );
            q.push_values(last.values(), |mut row, d| {
                row.push_bind(gateway.as_str())
                    .push_bind(d.app.as_str())
                    .push_bind(i64::from(d.held))
                    .push_bind(i64::from(d.in_flight))
                    .push("NOW(3)");
            });
            q.push(
                " ON DUPLICATE KEY UPDATE held = VALUES(held), in_flight = VALUES(in_flight), \
                 reported_at = VALUES(reported_at)",
            );
            q.build()
                .execute(&mut *tx)
                .await
                .map_err(|e| sql::db_error("recording a demand report", e))?;
        }
        tx.commit()
            .await
            .map_err(|e| sql::db_error("recording a demand report", e))
    }

    /// Every app's demand summed over the gateways that reported it within `stale_after`
    /// (older reports count for nothing: their gateway stopped reporting). Apps without a
    /// fresh report are absent.
    pub async fn app_demand(&self, stale_after: Duration) -> Result<HashMap<AppId, Demand>> {
        let rows = sqlx::query(
            "SELECT app_id, CAST(SUM(held) AS SIGNED) AS held, \
             CAST(SUM(in_flight) AS SIGNED) AS in_flight FROM gateway_demand \
             WHERE reported_at >= NOW(3) - INTERVAL ? MICROSECOND GROUP BY app_id",
        )
        .bind(micros(stale_after))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| sql::db_error("reading demand reports", e))?;
        let mut out = HashMap::with_capacity(rows.len());
        for row in &rows {
            let held: i64 = get(row, "held")?;
            let in_flight: i64 = get(row, "in_flight")?;
            out.insert(
                parse(row, "app_id")?,
                Demand {
                    held: u64::try_from(held).unwrap_or(0),
                    in_flight: u64::try_from(in_flight).unwrap_or(0),
                },
            );
        }
        Ok(out)
    }

    /// Deletes reports older than `older_than` (of gateways gone for good); how many.
    pub async fn prune_demand(&self, older_than: Duration) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM gateway_demand WHERE reported_at < NOW(3) - INTERVAL ? MICROSECOND",
        )
        .bind(micros(older_than))
        .execute(&self.pool)
        .await
        .map_err(|e| sql::db_error("pruning demand reports", e))?;
        Ok(done.rows_affected())
    }
}
