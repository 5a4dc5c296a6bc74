//! The leader's fence: checked before each repair (a reconciler repair, a healing restart or
//! replacement), so a scheduler that lost the leadership without noticing yet (cut off from
//! ZooKeeper, its session expired by the ensemble) never acts on what the new leader is
//! repairing. The check asks ZooKeeper ([`LeaderFence::still_leads`]), not the local flag.

use crate::error::{Error, Result};
use caas_registry::LeaderFence;
use std::sync::OnceLock;

/// Armed once with this process's election; unarmed (a reconciler or healer driven by hand,
/// as tests do, with no election) it lets every repair through.
#[derive(Debug, Default)]
pub struct Fence(OnceLock<LeaderFence>);

impl Fence {
    /// Arms the fence with this process's candidacy (later calls change nothing).
    pub fn arm(&self, fence: LeaderFence) {
        let _ = self.0.set(fence);
    }

    /// `Ok` when this process may repair `what` now; [`Error::NotLeader`] when ZooKeeper says
    /// another leads, or cannot say (cut off): the repair is then left to the leader.
    pub async fn check(&self, what: &str) -> Result<()> {
        let Some(fence) = self.0.get() else {
            return Ok(());
        };
        match fence.still_leads().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::NotLeader(format!(
                "not the leader any more: {what} left to the leader"
            ))),
            Err(e) => Err(Error::NotLeader(format!(
                "cannot confirm the leadership ({e}): {what} left to the leader"
            ))),
        }
    }
}
