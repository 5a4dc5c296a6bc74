//! The `app_traffic` table: what the gateways counted of each app's traffic, one row per
//! (gateway, boot, app, since) with the database's time of the report (migration 0015). Rows
//! are written with a demand report, in its transaction (`record_demand`); reads add them up
//! per step of a time series, or per app over a window; old rows are pruned.

use super::sql::{self, get, parse};
use super::Store;
use crate::error::Result;
use caas_types::api::{AppTraffic, TrafficCounts, LATENCY_SLOTS};
use caas_types::{AppId, GatewayName};
use sqlx::mysql::MySqlRow;
use sqlx::{MySql, Transaction};
use std::collections::HashMap;

/// The counter columns, in [`counters`] order.
const COUNTERS: [&str; 8 + LATENCY_SLOTS] = [
    "s1xx",
    "s2xx",
    "s3xx",
    "s4xx",
    "s5xx",
    "bytes_in",
    "bytes_out",
    "l0",
    "l1",
    "l2",
    "l3",
    "l4",
    "l5",
    "l6",
    "l7",
    "l8",
    "l9",
    "l10",
    "l11",
    "l12",
    "l13",
    "l14",
    "latency_sum_us",
];

/// The database's time, milliseconds since the Unix epoch, as SQL.
pub(super) const NOW_MS: &str = "CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)";

/// Rows per statement when a report is stored (27 placeholders each).
const CHUNK: usize = 1000;

/// `c`'s counters in [`COUNTERS`] order.
fn counters(c: &TrafficCounts) -> [u64; COUNTERS.len()] {
    let mut out = [0; COUNTERS.len()];
    out[..5].copy_from_slice(&c.status);
    out[5] = c.bytes_in;
    out[6] = c.bytes_out;
    out[7..7 + LATENCY_SLOTS].copy_from_slice(&c.latency);
    out[7 + LATENCY_SLOTS] = c.latency_sum_us;
    out
}

/// The counters of a row that has the [`COUNTERS`] columns (sums cast to unsigned).
fn counts_of(row: &MySqlRow) -> Result<TrafficCounts> {
    let mut v = [0u64; COUNTERS.len()];
    for (slot, column) in v.iter_mut().zip(COUNTERS) {
        *slot = get(row, column)?;
    }
    Ok(TrafficCounts {
        status: std::array::from_fn(|i| v[i]),
        bytes_in: v[5],
        bytes_out: v[6],
        latency: std::array::from_fn(|i| v[7 + i]),
        latency_sum_us: v[7 + LATENCY_SLOTS],
    })
}

/// `SUM(col) AS col` for every counter.
fn sums() -> String {
    COUNTERS
        .iter()
        .map(|c| format!("CAST(COALESCE(SUM({c}), 0) AS UNSIGNED) AS {c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Stores the traffic of a report's (known) apps in the report's transaction: one row per
/// (gateway, boot, app, since); a row already there (the same counts sent again, with more)
/// keeps the larger of each counter and the later time.
pub(super) async fn insert(
    tx: &mut Transaction<'_, MySql>,
    gateway: &GatewayName,
    boot: u64,
    apps: &[(&str, &AppTraffic)],
) -> Result<()> {
    for chunk in apps.chunks(CHUNK) {
        let mut q = sqlx::QueryBuilder::<MySql>::new(format!(
            "INSERT INTO app_traffic (gateway, boot, app_id, since, at_ms, {}) ",
            COUNTERS.join(", ")
        ));
        q.push_values(chunk, |mut row, (app, t)| {
            row.push_bind(gateway.as_str())
                .push_bind(boot)
                .push_bind(*app)
                .push_bind(t.since)
                .push(NOW_MS);
            for v in counters(&t.counts) {
                row.push_bind(v);
            }
        });
        q.push(" ON DUPLICATE KEY UPDATE at_ms = GREATEST(at_ms, VALUES(at_ms))");
        for c in COUNTERS {
            q.push(format!(", {c} = GREATEST({c}, VALUES({c}))"));
        }
        q.build()
            .execute(&mut **tx)
            .await
            .map_err(|e| sql::db_error("recording traffic", e))?;
    }
    Ok(())
}

impl Store {
    /// The database's time, milliseconds since the Unix epoch (the clock reports are stamped
    /// with).
    pub async fn now_ms(&self) -> Result<i64> {
        sqlx::query_scalar(&format!("SELECT {NOW_MS}"))
            .fetch_one(&self.pool)
            .await
            .map_err(|e| sql::db_error("reading the database's clock", e))
    }

    /// `app`'s traffic reported in `[start_ms, start_ms + step_ms × steps)`, added up per
    /// step: (the step's start, its counts), steps without traffic absent.
    pub async fn traffic_steps(
        &self,
        app: &AppId,
        start_ms: i64,
        step_ms: i64,
        steps: usize,
    ) -> Result<Vec<(i64, TrafficCounts)>> {
        let end_ms = start_ms + step_ms * i64::try_from(steps).unwrap_or(i64::MAX / step_ms);
        let rows = sqlx::query(&format!(
            "SELECT CAST((at_ms - ?) DIV ? AS SIGNED) AS step, {} FROM app_traffic \
             WHERE app_id = ? AND at_ms >= ? AND at_ms < ? GROUP BY step",
            sums()
        ))
        .bind(start_ms)
        .bind(step_ms)
        .bind(app.as_str())
        .bind(start_ms)
        .bind(end_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| sql::db_error("reading an app's traffic", e))?;
        rows.iter()
            .map(|row| {
                let step: i64 = get(row, "step")?;
                Ok((start_ms + step * step_ms, counts_of(row)?))
            })
            .collect()
    }

    /// Every app's traffic reported at or after `since_ms`, added up; apps without any absent.
    pub async fn traffic_totals(&self, since_ms: i64) -> Result<HashMap<AppId, TrafficCounts>> {
        let rows = sqlx::query(&format!(
            "SELECT app_id, {} FROM app_traffic WHERE at_ms >= ? GROUP BY app_id",
            sums()
        ))
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| sql::db_error("reading the apps' traffic", e))?;
        rows.iter()
            .map(|row| Ok((parse(row, "app_id")?, counts_of(row)?)))
            .collect()
    }

    /// Deletes traffic reported more than `older_than_ms` ago (in batches, so no statement
    /// holds its locks long); how many rows.
    pub async fn prune_traffic(&self, older_than_ms: i64) -> Result<u64> {
        let mut total = 0;
        loop {
            let done = sqlx::query(&format!(
                "DELETE FROM app_traffic WHERE at_ms < {NOW_MS} - ? LIMIT 10000"
            ))
            .bind(older_than_ms)
            .execute(&self.pool)
            .await
            .map_err(|e| sql::db_error("pruning traffic", e))?;
            total += done.rows_affected();
            if done.rows_affected() < 10_000 {
                return Ok(total);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_has_its_column() {
        let c = TrafficCounts {
            status: [1, 2, 3, 4, 5],
            bytes_in: 6,
            bytes_out: 7,
            latency: std::array::from_fn(|i| 8 + i as u64),
            latency_sum_us: 23,
        };
        let v = counters(&c);
        assert_eq!(v.to_vec(), (1..=23).collect::<Vec<u64>>());
        assert_eq!(COUNTERS[7], "l0");
        assert_eq!(COUNTERS[21], "l14");
    }
}
