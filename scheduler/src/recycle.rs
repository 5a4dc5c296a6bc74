//! Recycling: the leader replaces instances older than their deployment's `recycle_after_s`,
//! one per deployment per pass and gracefully (new healthy before the old drains), and never
//! while a deployment has an instance that is not running and healthy. [`due`] is the pure
//! decision; [`Recycler::pass`] applies it through [`Deployments::recycle_one`] under the app's
//! lock, so it queues behind operators' operations on the app.

use crate::deployments::Deployments;
use crate::error::Result;
use crate::store::{DeploymentRow, DeploymentState, InstanceRow, Store};
use caas_types::{InstanceId, InstanceState};
use std::sync::Arc;

/// One instance a pass replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// Its deployment's database id.
    pub deployment_id: i64,
    /// The instance.
    pub instance: InstanceId,
}

/// The instances to recycle now (`now_ms`, milliseconds since the epoch): for every running
/// deployment with a `recycle_after_s`, whose instances are all running and healthy and (not
/// global) at least its desired count, its oldest instance if that started at least
/// `recycle_after_s` ago. At most one per deployment.
pub fn due(deployments: &[DeploymentRow], instances: &[InstanceRow], now_ms: i64) -> Vec<Due> {
    let mut out = Vec::new();
    for d in deployments {
        let Some(after_s) = d.spec.recycle_after_s else {
            continue;
        };
        if d.state != DeploymentState::Running {
            continue;
        }
        let mine: Vec<&InstanceRow> = instances
            .iter()
            .filter(|i| i.deployment_id == d.id)
            .collect();
        let all_well = mine
            .iter()
            .all(|i| i.state == InstanceState::Running && i.healthy);
        let enough = d.spec.placement.global || mine.len() >= d.spec.instances as usize;
        if mine.is_empty() || !all_well || !enough {
            continue;
        }
        let after_ms = i64::try_from(after_s.saturating_mul(1000)).unwrap_or(i64::MAX);
        let oldest = mine
            .iter()
            .filter(|i| now_ms.saturating_sub(i.started_ms) >= after_ms)
            .min_by(|a, b| a.started_ms.cmp(&b.started_ms).then(a.id.cmp(&b.id)));
        if let Some(i) = oldest {
            out.push(Due {
                deployment_id: d.id,
                instance: i.id.clone(),
            });
        }
    }
    out
}

/// Applies [`due`] (the leader's recycling duty).
#[derive(Debug)]
pub struct Recycler {
    store: Store,
    deployments: Arc<Deployments>,
}

impl Recycler {
    /// A recycler over the store and the deployments.
    pub fn new(store: Store, deployments: Arc<Deployments>) -> Recycler {
        Recycler { store, deployments }
    }

    /// One pass: replaces every instance that is due, one after the other; answers how many
    /// were replaced. A failed replacement is logged and the pass goes on.
    pub async fn pass(self: Arc<Self>) -> Result<u32> {
        let deployments = self.store.list_all_deployments().await?;
        if deployments.iter().all(|d| d.spec.recycle_after_s.is_none()) {
            return Ok(0);
        }
        let instances = self.store.list_all_instances().await?;
        let mut done = 0;
        for d in due(&deployments, &instances, now_ms()) {
            let Some(app) = deployments
                .iter()
                .find(|r| r.id == d.deployment_id)
                .map(|r| r.spec.app.clone())
            else {
                continue;
            };
            let _app = self.deployments.lock_app(&app).await;
            match self
                .deployments
                .recycle_one(d.deployment_id, &d.instance)
                .await
            {
                Ok(true) => done += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, %app, instance = %d.instance, "could not recycle an instance")
                }
            }
        }
        Ok(done)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fixtures;

    const HOUR_MS: i64 = 3_600_000;
    const NOW: i64 = 100 * HOUR_MS;

    fn deployment(id: i64, instances: u32, recycle_after_s: Option<u64>) -> DeploymentRow {
        let mut d = fixtures::deployment(id, "web", &format!("v{id}"), instances);
        d.spec.recycle_after_s = recycle_after_s;
        d
    }

    fn inst(id: &str, deployment_id: i64, age_ms: i64) -> InstanceRow {
        InstanceRow {
            deployment_id,
            started_ms: NOW - age_ms,
            ..fixtures::instance(&format!("web-{id}"), 1, InstanceState::Running, Some(1))
        }
    }

    #[test]
    fn the_oldest_instance_past_its_age_is_due() {
        let d = [deployment(1, 3, Some(3600))];
        let i = [
            inst("a", 1, 2 * HOUR_MS),
            inst("b", 1, 3 * HOUR_MS),
            inst("c", 1, HOUR_MS / 2),
        ];
        assert_eq!(
            due(&d, &i, NOW),
            vec![Due {
                deployment_id: 1,
                instance: "web-b".parse().expect("valid id")
            }]
        );
    }

    #[test]
    fn nothing_is_due_before_its_age_or_without_recycle_after() {
        let i = [inst("a", 1, HOUR_MS - 1), inst("b", 2, 10 * HOUR_MS)];
        let d = [deployment(1, 1, Some(3600)), deployment(2, 1, None)];
        assert_eq!(due(&d, &i, NOW), vec![]);
        // Exactly the age is due.
        let i = [inst("a", 1, HOUR_MS)];
        assert_eq!(due(&d, &i, NOW).len(), 1);
    }

    #[test]
    fn one_per_deployment_per_pass() {
        let d = [deployment(1, 2, Some(60)), deployment(2, 2, Some(60))];
        let i = [
            inst("a", 1, HOUR_MS),
            inst("b", 1, HOUR_MS),
            inst("c", 2, HOUR_MS),
            inst("d", 2, 2 * HOUR_MS),
        ];
        let ids: Vec<(i64, String)> = due(&d, &i, NOW)
            .into_iter()
            .map(|d| (d.deployment_id, d.instance.to_string()))
            .collect();
        assert_eq!(ids, vec![(1, "web-a".into()), (2, "web-d".into())]);
    }

    #[test]
    fn nothing_while_a_deployment_is_unhealthy_short_or_not_running() {
        let d = [deployment(1, 2, Some(60))];
        let old = || inst("a", 1, HOUR_MS);
        for other in [
            InstanceRow {
                healthy: false,
                ..inst("b", 1, 0)
            },
            InstanceRow {
                state: InstanceState::Starting,
                ..inst("b", 1, 0)
            },
            InstanceRow {
                state: InstanceState::Stopping,
                ..inst("b", 1, 0)
            },
            InstanceRow {
                state: InstanceState::Unhealthy,
                ..inst("b", 1, 0)
            },
        ] {
            assert_eq!(due(&d, &[old(), other.clone()], NOW), vec![], "{other:?}");
        }
        // One instance short of the desired two (healing has not replaced one yet).
        assert_eq!(due(&d, &[old()], NOW), vec![]);
        // Not running (being deployed, undeployed, failed).
        for state in [
            DeploymentState::Deploying,
            DeploymentState::Stopping,
            DeploymentState::Failed,
        ] {
            let d = [DeploymentRow {
                state,
                ..deployment(1, 1, Some(60))
            }];
            assert_eq!(due(&d, &[old()], NOW), vec![]);
        }
    }
}
