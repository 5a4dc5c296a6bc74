//! The write half of placement: one claim transaction (optimistic host update, host port,
//! instance row), one release transaction, and the retry loop they share. The retry loop, the
//! attempt outcome, the instance-row insert and the rollback are public so the benchmark's
//! pessimistic baseline (`examples/bench_placement`) claims with the same parts.
//!
//! Why a port search is safe without locking `instances`: every transaction that adds or removes
//! an instance row of a host first updates that host's row, so it holds the host's row lock
//! until it commits; the port query runs after that lock is taken and therefore sees every
//! committed row of the host. `UNIQUE (host_id, host_port)` backs this up.

use super::plan::Candidate;
use super::{random, Claim, PlacementMetrics, PlacementRequest, MAX_ATTEMPTS};
use crate::error::{Error, Result};
use crate::store::sql::{self, get, Failure};
use crate::store::{lock_and_count, Quota, Store};
use caas_types::{InstanceId, PortRange, TenantName};
use sqlx::mysql::MySqlQueryResult;
use sqlx::{MySql, Transaction};
use std::future::Future;
use std::time::Duration;

/// The result of one attempt that did not fail for good; [`retry`] ends on `Done` and tries
/// again on the others.
#[derive(Debug)]
pub enum Attempt<T> {
    /// Committed.
    Done(T),
    /// The optimistic check lost: another scheduler changed the host first.
    Conflict,
    /// Deadlock, lock-wait timeout, a port or id taken in between: try the whole thing again.
    Transient,
    /// The host had no free port (the snapshot did not count them): retry with a full read.
    PortsFull,
}

/// Maps an error inside an attempt: retryable database failures become [`Attempt::Transient`].
pub fn attempt_error<T>(what: &str, e: sqlx::Error) -> Result<Attempt<T>> {
    match sql::classify(&e) {
        Failure::Transient | Failure::Duplicate => {
            tracing::debug!(error = %e, "retrying after a transient failure while {what}");
            Ok(Attempt::Transient)
        }
        _ => Err(sql::db_error(what, e)),
    }
}

/// Runs `attempt` (one transaction) until it commits. A lost optimistic check, a transient
/// failure or a full host is tried again in a new transaction after a jittered back-off, up to
/// [`MAX_ATTEMPTS`] in all, then [`Error::Contention`]; any other error ends it at once. The
/// attempt itself reacts to what it saw (e.g. reads every host after [`Attempt::PortsFull`]).
pub async fn retry<T, F, Fut>(metrics: &PlacementMetrics, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Attempt<T>>>,
{
    for n in 0..MAX_ATTEMPTS {
        if n > 0 {
            metrics.retry();
            backoff(n).await;
        }
        match attempt().await? {
            Attempt::Done(done) => return Ok(done),
            Attempt::Conflict => metrics.conflict(),
            Attempt::Transient | Attempt::PortsFull => {}
        }
    }
    metrics.gave_up();
    Err(Error::Contention {
        attempts: MAX_ATTEMPTS,
    })
}

/// Sleeps a random time that grows with the attempt number ("full jitter"), so schedulers that
/// just collided do not collide again in lockstep. Not used for correctness.
async fn backoff(attempt: u32) {
    const BASE_US: u64 = 500;
    const CAP_US: u64 = 40_000;
    let ceiling = BASE_US.saturating_mul(1 << attempt.min(16)).min(CAP_US);
    tokio::time::sleep(Duration::from_micros(random::below(ceiling + 1))).await;
}

/// The lowest port of `range` not in `used` (sorted ascending).
pub(crate) fn free_port(range: PortRange, used: &[u16]) -> Option<u16> {
    let mut want = range.first();
    for &p in used {
        if p < want {
            continue;
        }
        if p > want {
            return Some(want);
        }
        if want == range.last() {
            return None;
        }
        want += 1;
    }
    Some(want)
}

/// Takes a free host port of `host_id` and inserts the instance row, inside `tx` (which must
/// already hold the host's row lock). A port released less than `quarantine_s` seconds ago is
/// not free: a gateway cut off from ZooKeeper may still route the old app's requests to it.
/// `Ok(None)`: every port is taken.
pub async fn insert_instance(
    tx: &mut Transaction<'static, MySql>,
    req: &PlacementRequest,
    host_id: i64,
    ports: PortRange,
    instance: &InstanceId,
    quarantine_s: u64,
) -> std::result::Result<Option<u16>, sqlx::Error> {
    let used: Vec<u16> = sqlx::query_scalar::<_, i32>(
        "SELECT host_port FROM instances WHERE host_id = ? AND host_port IS NOT NULL \
         UNION SELECT host_port FROM port_quarantine WHERE host_id = ? \
           AND released_at > NOW(3) - INTERVAL ? SECOND \
         ORDER BY host_port",
    )
    .bind(host_id)
    .bind(host_id)
    .bind(quarantine_s)
    .fetch_all(&mut **tx)
    .await?
    .into_iter()
    .filter_map(|p| u16::try_from(p).ok())
    .collect();
    let Some(port) = free_port(ports, &used) else {
        return Ok(None);
    };
    sqlx::query(
        "INSERT INTO instances (id, deployment_id, job_id, app_id, host_id, host_port, memory, \
         cpu, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending')",
    )
    .bind(instance.as_str())
    .bind(req.owner.deployment_id())
    .bind(req.owner.job_id())
    .bind(req.app.as_str())
    .bind(host_id)
    .bind(i32::from(port))
    .bind(req.memory_i64())
    .bind(i64::from(req.resources.cpus.millis()))
    .execute(&mut **tx)
    .await?;
    Ok(Some(port))
}

/// Inserts the row of a claim that holds no host port (a worker's instance, a job), inside `tx` (which must
/// already hold the host's row lock).
async fn insert_worker_instance(
    tx: &mut Transaction<'static, MySql>,
    req: &PlacementRequest,
    host_id: i64,
    instance: &InstanceId,
) -> std::result::Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO instances (id, deployment_id, job_id, app_id, host_id, host_port, memory, \
         cpu, state) VALUES (?, ?, ?, ?, ?, NULL, ?, ?, 'pending')",
    )
    .bind(instance.as_str())
    .bind(req.owner.deployment_id())
    .bind(req.owner.job_id())
    .bind(req.app.as_str())
    .bind(host_id)
    .bind(req.memory_i64())
    .bind(i64::from(req.resources.cpus.millis()))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// One optimistic claim of `host` (as read at `host.version`) in one transaction. With a
/// `quota`, the tenant's row is locked after the host's and what its apps hold is counted in
/// the same transaction: over the quota, nothing is claimed ([`Error::QuotaExceeded`]).
pub(crate) async fn try_claim(
    store: &Store,
    req: &PlacementRequest,
    host: &Candidate,
    quota: Option<&(TenantName, Quota)>,
) -> Result<Attempt<Claim>> {
    const WHAT: &str = "claiming a host";
    let instance = InstanceId::generate(&req.app, random::next_u64());
    let mut tx = match store.pool().begin().await {
        Ok(tx) => tx,
        Err(e) => return attempt_error(WHAT, e),
    };
    let updated = sqlx::query(
        "UPDATE hosts SET mem_free = mem_free - ?, cpu_free = cpu_free - ?, version = version + 1 \
         WHERE id = ? AND version = ? AND state = 'ready' AND mem_free >= ? AND cpu_free >= ?",
    )
    .bind(req.memory_i64())
    .bind(i64::from(req.resources.cpus.millis()))
    .bind(host.id)
    .bind(host.version)
    .bind(req.memory_i64())
    .bind(i64::from(req.resources.cpus.millis()))
    .execute(&mut *tx)
    .await;
    if let Some(end) = unless_one_row(WHAT, updated) {
        rollback(tx).await;
        return end;
    }
    if let Some((tenant, quota)) = quota {
        let usage = match lock_and_count(&mut tx, tenant).await {
            Ok(usage) => usage,
            Err(e) => {
                rollback(tx).await;
                return attempt_error(WHAT, e);
            }
        };
        let cpu = u64::from(req.resources.cpus.millis());
        if let Some(why) = quota.exceeded_by(&usage, req.resources.memory.bytes(), cpu) {
            rollback(tx).await;
            return Err(Error::QuotaExceeded(format!("tenant {tenant}: {why}")));
        }
    }
    let inserted = if req.port {
        insert_instance(
            &mut tx,
            req,
            host.id,
            host.ports,
            &instance,
            store.port_quarantine_s(),
        )
        .await
        .map(|port| port.map(Some))
    } else {
        insert_worker_instance(&mut tx, req, host.id, &instance)
            .await
            .map(|()| Some(None))
    };
    let port = match inserted {
        Ok(Some(port)) => port,
        Ok(None) => {
            // Every port is taken: a full snapshot (which counts ports) skips this host.
            rollback(tx).await;
            return Ok(Attempt::PortsFull);
        }
        Err(e) => {
            rollback(tx).await;
            return attempt_error(WHAT, e);
        }
    };
    if let Err(e) = tx.commit().await {
        return attempt_error(WHAT, e);
    }
    Ok(Attempt::Done(Claim {
        instance,
        owner: req.owner,
        host_id: host.id,
        host: host.name.clone(),
        address: host.address,
        host_port: port,
        resources: req.resources,
    }))
}

/// How an attempt ends when its statement did not change exactly one row, `None` when it did:
/// with [`Attempt::Conflict`] when another transaction changed or removed the row first, with
/// the mapped error (see [`attempt_error`]) when the statement failed. The caller rolls back.
fn unless_one_row<T>(
    what: &str,
    done: std::result::Result<MySqlQueryResult, sqlx::Error>,
) -> Option<Result<Attempt<T>>> {
    match done {
        Ok(done) if done.rows_affected() == 1 => None,
        Ok(_) => Some(Ok(Attempt::Conflict)),
        Err(e) => Some(attempt_error(what, e)),
    }
}

/// Rolls back, logging (only) a failure: the connection is dropped and the server rolls back
/// anyway.
pub async fn rollback(tx: Transaction<'static, MySql>) {
    if let Err(e) = tx.rollback().await {
        tracing::debug!(error = %e, "rollback failed; the connection is discarded");
    }
}

/// One optimistic release of `instance`: give its memory and CPU back to its host under the
/// host's `version` check and delete its row, in one transaction.
pub(crate) async fn try_release(store: &Store, instance: &InstanceId) -> Result<Attempt<()>> {
    const WHAT: &str = "releasing an instance";
    let row = sqlx::query(
        "SELECT i.host_id, i.host_port, i.memory, i.cpu, h.version FROM instances i \
         JOIN hosts h ON h.id = i.host_id WHERE i.id = ?",
    )
    .bind(instance.as_str())
    .fetch_optional(store.pool())
    .await
    .map_err(|e| sql::db_error(WHAT, e))?
    .ok_or_else(|| Error::NotFound(format!("instance {instance}")))?;
    let host_id: i64 = get(&row, "host_id")?;
    let memory: i64 = get(&row, "memory")?;
    let cpu: i64 = get(&row, "cpu")?;
    let version: i64 = get(&row, "version")?;
    let port: Option<i32> = get(&row, "host_port")?;
    let mut tx = match store.pool().begin().await {
        Ok(tx) => tx,
        Err(e) => return attempt_error(WHAT, e),
    };
    let updated = sqlx::query(
        "UPDATE hosts SET mem_free = mem_free + ?, cpu_free = cpu_free + ?, version = version + 1 \
         WHERE id = ? AND version = ?",
    )
    .bind(memory)
    .bind(cpu)
    .bind(host_id)
    .bind(version)
    .execute(&mut *tx)
    .await;
    if let Some(end) = unless_one_row(WHAT, updated) {
        rollback(tx).await;
        return end;
    }
    let deleted = sqlx::query("DELETE FROM instances WHERE id = ?")
        .bind(instance.as_str())
        .execute(&mut *tx)
        .await;
    // No row: released by someone else in between; the next attempt reports NotFound.
    if let Some(end) = unless_one_row(WHAT, deleted) {
        rollback(tx).await;
        return end;
    }
    if let Some(port) = port.filter(|_| store.port_quarantine_s() > 0) {
        // Under the host's row lock, like every claim of the host: the port leaves use now and
        // the host's expired quarantine entries go.
        let quarantined = async {
            sqlx::query(
                "DELETE FROM port_quarantine WHERE host_id = ? \
                 AND released_at <= NOW(3) - INTERVAL ? SECOND",
            )
            .bind(host_id)
            .bind(store.port_quarantine_s())
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO port_quarantine (host_id, host_port) VALUES (?, ?) \
                 ON DUPLICATE KEY UPDATE released_at = CURRENT_TIMESTAMP(3)",
            )
            .bind(host_id)
            .bind(port)
            .execute(&mut *tx)
            .await
        }
        .await;
        if let Err(e) = quarantined {
            rollback(tx).await;
            return attempt_error(WHAT, e);
        }
    }
    if let Err(e) = tx.commit().await {
        return attempt_error(WHAT, e);
    }
    Ok(Attempt::Done(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_takes_the_lowest_gap() {
        let r = PortRange::new(25700, 25703).expect("valid range");
        assert_eq!(free_port(r, &[]), Some(25700));
        assert_eq!(free_port(r, &[25700, 25701, 25703]), Some(25702));
        assert_eq!(free_port(r, &[25701]), Some(25700));
        assert_eq!(free_port(r, &[25700, 25701, 25702, 25703]), None);
        // Rows outside the range (a range shrunk later) do not count.
        assert_eq!(free_port(r, &[1500, 25700]), Some(25701));
        let one = PortRange::new(30000, 30000).expect("valid range");
        assert_eq!(free_port(one, &[30000]), None);
    }
}
