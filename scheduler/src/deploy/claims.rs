//! The bridge from deploys to placement: claim instances of a deployment on hosts, and give
//! claims back. Placement (filter → rank → optimistic claim) lives in `crate::placement`.

use crate::error::Result;
use crate::placement;
use crate::store::{DeploymentRow, InstanceRow, Store};
use caas_types::InstanceId;

/// Claims `count` instances of `row` (all or none) and returns their rows (state `pending`).
pub async fn claim(store: &Store, row: &DeploymentRow, count: u32) -> Result<Vec<InstanceRow>> {
    let claims = placement::place(
        store,
        &placement::PlacementRequest::for_deployment(row, count),
    )
    .await?;
    let mut out = Vec::with_capacity(claims.len());
    for c in &claims {
        out.push(store.get_instance(&c.instance).await?);
    }
    Ok(out)
}

/// Gives an instance's memory, CPU and port back and deletes its row.
pub async fn release(store: &Store, instance: &InstanceId) -> Result<()> {
    placement::release(store, instance).await
}
