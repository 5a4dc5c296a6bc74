//! Reads the candidate hosts for one placement attempt from MySQL: either a random window of
//! hosts that have room (cheap at 10,000 hosts, and different schedulers look at different
//! windows, so they rarely collide), or every host (policies that need the whole picture:
//! constraints, spread, co-location, global), or one given host. Reads are plain consistent
//! reads without locks; the claim's `version` check is what makes them safe to act on.

use super::plan::Candidate;
use super::{random, PlacementRequest};
use crate::error::{Error, Result};
use crate::store::sql::{self, get, json, parse, text, unsigned};
use crate::store::Store;
use caas_types::PortRange;
use sqlx::mysql::MySqlRow;

/// Which hosts one attempt reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Up to this many ready hosts with room, starting at a random id (wrapping around).
    Window(u32),
    /// Every host.
    All,
    /// One host.
    Host(i64),
}

const CANDIDATE_COLUMNS: &str = "SELECT h.id, h.name, h.address, h.state, h.labels, h.mem_free, \
     h.cpu_free, h.port_first, h.port_last, h.version";

/// Every column, with the per-host counts that ports (workers' instances hold none; a port
/// in quarantine counts as used), spread and co-location need. `quarantine_s`: the store's
/// port quarantine, an integer formatted into the text (never user input).
fn candidate_select(quarantine_s: u64) -> String {
    format!(
        "(SELECT COUNT(i.host_port) FROM instances i WHERE i.host_id = h.id) + \
         (SELECT COUNT(*) FROM port_quarantine q WHERE q.host_id = h.id \
            AND q.released_at > NOW(3) - INTERVAL {quarantine_s} SECOND) AS used_ports, \
         (SELECT COUNT(*) FROM instances i \
            WHERE i.host_id = h.id AND i.deployment_id = ?) AS same_deployment, \
         EXISTS (SELECT 1 FROM instances i WHERE i.host_id = h.id AND i.app_id = ?) AS colocated \
         FROM hosts h"
    )
}

/// A window only serves plain requests (no spread, no co-location) and skips the per-host
/// counts: used ports are checked by the claim itself, which asks for a full read next time
/// if a host turns out to have no free port (rare: memory or CPU run out first). It walks the primary key from the pivot: left alone, the optimizer prefers the `state`
/// index and scans every ready host below the pivot first (O(hosts) instead of O(window)).
const WINDOW_SELECT: &str =
    "0 AS used_ports, 0 AS same_deployment, 0 AS colocated FROM hosts h FORCE INDEX (PRIMARY)";

/// A host row (the `CANDIDATE_COLUMNS`, and with `with_counts` the `used_ports`,
/// `same_deployment` and `colocated` counts) as a candidate; without counts, every port is
/// free and no instance of the deployment or the co-location app is on the host.
pub fn candidate_from_row(row: &MySqlRow, with_counts: bool) -> Result<Candidate> {
    let first: u16 = unsigned(row, "port_first")?;
    let last: u16 = unsigned(row, "port_last")?;
    let ports = PortRange::new(first, last)
        .map_err(|_| Error::Invalid(format!("stored port range {first}-{last}")))?;
    let range = u32::try_from(ports.len()).unwrap_or(0);
    let state = text(row, "state")?;
    let (used, same, colocated): (u32, u32, bool) = if with_counts {
        let colocated: i64 = get(row, "colocated")?;
        (
            unsigned(row, "used_ports")?,
            unsigned(row, "same_deployment")?,
            colocated != 0,
        )
    } else {
        (0, 0, false)
    };
    Ok(Candidate {
        id: get(row, "id")?,
        name: parse(row, "name")?,
        address: parse(row, "address")?,
        state: crate::store::hosts_state(&state)?,
        labels: json(row, "labels")?,
        mem_free: unsigned(row, "mem_free")?,
        cpu_free: unsigned(row, "cpu_free")?,
        ports,
        ports_free: range.saturating_sub(used),
        version: get(row, "version")?,
        same_deployment: same,
        colocated,
    })
}

/// A random host id between the smallest and the largest, or `None` without hosts. The
/// bounds are cached for a second: a stale bound only skews which window is read, and the
/// wrap-around still covers every host.
pub async fn random_pivot(store: &Store) -> Result<Option<i64>> {
    let (lo, hi) = match store.cached_host_id_bounds() {
        Some(bounds) => bounds,
        None => {
            let row = sqlx::query("SELECT MIN(id) AS lo, MAX(id) AS hi FROM hosts")
                .fetch_one(store.pool())
                .await
                .map_err(|e| sql::db_error("reading host ids", e))?;
            let bounds: (Option<i64>, Option<i64>) = (get(&row, "lo")?, get(&row, "hi")?);
            store.cache_host_id_bounds(bounds);
            bounds
        }
    };
    Ok(match (lo, hi) {
        (Some(lo), Some(hi)) if hi >= lo => {
            let span = u64::try_from(hi - lo + 1).unwrap_or(1);
            Some(lo + i64::try_from(random::below(span)).unwrap_or(0))
        }
        _ => None,
    })
}

/// Reads the candidates of one attempt.
pub(crate) async fn read(
    store: &Store,
    req: &PlacementRequest,
    scope: Scope,
) -> Result<Vec<Candidate>> {
    let colocate = req
        .placement
        .colocate_with
        .as_ref()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_default();
    let select = candidate_select(store.port_quarantine_s());
    let base = |filter: &str| format!("{CANDIDATE_COLUMNS}, {select} {filter}");
    let window_base = |filter: &str| format!("{CANDIDATE_COLUMNS}, {WINDOW_SELECT} {filter}");
    let rows = match scope {
        Scope::All => sqlx::query(&base("ORDER BY h.id"))
            .bind(req.owner.deployment_id())
            .bind(&colocate)
            .fetch_all(store.pool())
            .await
            .map_err(|e| sql::db_error("reading hosts", e))?,
        Scope::Host(id) => sqlx::query(&base("WHERE h.id = ?"))
            .bind(req.owner.deployment_id())
            .bind(&colocate)
            .bind(id)
            .fetch_all(store.pool())
            .await
            .map_err(|e| sql::db_error("reading a host", e))?,
        Scope::Window(limit) => {
            let Some(pivot) = random_pivot(store).await? else {
                return Ok(Vec::new());
            };
            let window = window_base(
                "WHERE h.state = 'ready' AND h.mem_free >= ? AND h.cpu_free >= ? AND h.id >= ? \
                 ORDER BY h.id LIMIT ?",
            );
            let mut rows = sqlx::query(&window)
                .bind(req.memory_i64())
                .bind(i64::from(req.resources.cpus.millis()))
                .bind(pivot)
                .bind(i64::from(limit))
                .fetch_all(store.pool())
                .await
                .map_err(|e| sql::db_error("reading hosts", e))?;
            let short = u32::try_from(rows.len()).unwrap_or(limit);
            if short < limit {
                // Wrap around to the start of the id space for the rest of the window.
                let wrap = window_base(
                    "WHERE h.state = 'ready' AND h.mem_free >= ? AND h.cpu_free >= ? \
                     AND h.id < ? ORDER BY h.id LIMIT ?",
                );
                rows.extend(
                    sqlx::query(&wrap)
                        .bind(req.memory_i64())
                        .bind(i64::from(req.resources.cpus.millis()))
                        .bind(pivot)
                        .bind(i64::from(limit - short))
                        .fetch_all(store.pool())
                        .await
                        .map_err(|e| sql::db_error("reading hosts", e))?,
                );
            }
            rows
        }
    };
    rows.iter().map(|r| candidate_from_row(r, true)).collect()
}
