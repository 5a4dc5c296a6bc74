//! The pessimistic baseline the benchmark compares against: the same window, filter, rank and
//! pick, but the candidate hosts are read with `SELECT ... FOR UPDATE` inside the claim's
//! transaction, so concurrent schedulers wait for each other's row locks instead of retrying.
//! Not used by the scheduler itself (it lives here, beside the benchmark, and
//! `tests/placement.rs` includes it to check the invariant). It ignores spread and co-location
//! (no instance counts are read under the lock); constraints are applied.

use caas_scheduler::placement::claim::{self, attempt_error, rollback, Attempt};
use caas_scheduler::placement::snapshot::{candidate_from_row, random_pivot};
use caas_scheduler::placement::{
    plan, random, release_all, Claim, PlacementRequest, PICK_AMONG, WINDOW,
};
use caas_scheduler::store::Store;
use caas_scheduler::{Error, Result};
use caas_types::InstanceId;

const LOCKING_WINDOW: &str = "SELECT h.id, h.name, h.address, h.state, h.labels, h.mem_free, \
     h.cpu_free, h.port_first, h.port_last, h.version FROM hosts h FORCE INDEX (PRIMARY) \
     WHERE h.state = 'ready' AND h.mem_free >= ? AND h.cpu_free >= ? AND h.id >= ? \
     ORDER BY h.id LIMIT ? FOR UPDATE";

/// Places `req.count` instances one at a time with pessimistic locking (all or none).
pub async fn place_pessimistic(store: &Store, req: &PlacementRequest) -> Result<Vec<Claim>> {
    let mut claims = Vec::new();
    for _ in 0..req.count {
        match place_one_locked(store, req).await {
            Ok(c) => claims.push(c),
            Err(e) => {
                release_all(store, &claims).await;
                return Err(e);
            }
        }
    }
    Ok(claims)
}

async fn place_one_locked(store: &Store, req: &PlacementRequest) -> Result<Claim> {
    let claim = claim::retry(store.metrics(), || attempt_locked(store, req)).await?;
    store.metrics().placed();
    Ok(claim)
}

/// One locked attempt: a lock wait that timed out, a deadlock or a host whose ports are all
/// taken is [`Attempt::Transient`].
async fn attempt_locked(store: &Store, req: &PlacementRequest) -> Result<Attempt<Claim>> {
    const WHAT: &str = "claiming a host under lock";
    let pivot = random_pivot(store).await?.unwrap_or(0);
    let mut tx = match store.pool().begin().await {
        Ok(tx) => tx,
        Err(e) => return attempt_error(WHAT, e),
    };
    let mut rows = Vec::new();
    // The window, then (if short) the wrap-around from the smallest id, both locked.
    for (from, limit) in [(pivot, WINDOW), (i64::MIN, WINDOW)] {
        let want = limit.saturating_sub(u32::try_from(rows.len()).unwrap_or(limit));
        if want == 0 {
            break;
        }
        let got = sqlx::query(LOCKING_WINDOW)
            .bind(req.memory_i64())
            .bind(i64::from(req.resources.cpus.millis()))
            .bind(from)
            .bind(i64::from(want))
            .fetch_all(&mut *tx)
            .await;
        match got {
            Ok(more) => rows.extend(more),
            Err(e) => {
                rollback(tx).await;
                return attempt_error(WHAT, e);
            }
        }
    }
    let mut hosts = Vec::with_capacity(rows.len());
    for row in &rows {
        let mut host = candidate_from_row(row, false)?;
        if hosts.iter().any(|h: &plan::Candidate| h.id == host.id) {
            continue;
        }
        // Free ports are checked by the insert below, under the same lock.
        host.ports_free = host.ports_free.max(1);
        hosts.push(host);
    }
    let host = match plan::pick(&hosts, &req.ask(), PICK_AMONG, random::next_u64()) {
        Ok(h) => h.clone(),
        Err(no_fit) => {
            rollback(tx).await;
            store.metrics().unplaceable();
            return Err(Error::Unplaceable(format!(
                "no host can take {} ({no_fit})",
                req.describe()
            )));
        }
    };
    let updated = sqlx::query(
        "UPDATE hosts SET mem_free = mem_free - ?, cpu_free = cpu_free - ?, version = version + 1 \
         WHERE id = ?",
    )
    .bind(req.memory_i64())
    .bind(i64::from(req.resources.cpus.millis()))
    .bind(host.id)
    .execute(&mut *tx)
    .await;
    if let Err(e) = updated {
        rollback(tx).await;
        return attempt_error(WHAT, e);
    }
    let instance = InstanceId::generate(&req.app, random::next_u64());
    let port = match claim::insert_instance(
        &mut tx,
        req,
        host.id,
        host.ports,
        &instance,
        store.port_quarantine_s(),
    )
    .await
    {
        Ok(Some(port)) => port,
        Ok(None) => {
            rollback(tx).await;
            return Ok(Attempt::Transient);
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
        host: host.name,
        address: host.address,
        host_port: Some(port),
        resources: req.resources,
    }))
}
