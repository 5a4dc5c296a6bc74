//! Which apps may sleep, and their wake nodes in ZooKeeper (`/caas/service/wake/{app}`): an
//! app with a deployment (deploying or running) whose `autoscale.min` is 0 has one, naming the
//! newest such deployment's version; no other app has one. A gateway holds a request for an app with
//! a wake node and no address instead of answering 503.
//!
//! Three writers keep it so: a deploy or undeploy syncs its app at once ([`sync_app`]); the
//! reconciler repairs drift with the same rule ([`sleepers`]); the autoscaler writes a
//! failure into the node when waking the app fails and clears it after its back-off.

use crate::error::Result;
use crate::routes::RouteRegistry;
use crate::store::{DeploymentRow, DeploymentState, Store};
use caas_types::{AppId, Version};
use std::collections::HashMap;

/// The version whose wake node each app that may sleep should have: its newest deployment
/// (deploying or running) with `autoscale.min` 0. The one rule both the deploy path
/// (`crate::autoscale::wake`) and the reconciler follow.
pub fn sleepers(deployments: &[DeploymentRow]) -> HashMap<&AppId, &Version> {
    let mut out: HashMap<&AppId, (i64, &Version)> = HashMap::new();
    for d in deployments {
        let sleeps = d.spec.autoscale.is_some_and(|a| a.min == 0)
            && matches!(
                d.state,
                DeploymentState::Deploying | DeploymentState::Running
            );
        if !sleeps {
            continue;
        }
        let newest = out.get(&d.spec.app).is_none_or(|(id, _)| d.id > *id);
        if newest {
            out.insert(&d.spec.app, (d.id, &d.spec.version));
        }
    }
    out.into_iter().map(|(a, (_, v))| (a, v)).collect()
}

/// Makes `app`'s wake node say what its deployments say: written (with no failure: a deploy
/// starts afresh) if one may sleep, deleted otherwise.
pub async fn sync_app(store: &Store, routes: &dyn RouteRegistry, app: &AppId) -> Result<()> {
    let rows = store.list_deployments(app).await?;
    match sleepers(&rows).get(app) {
        Some(version) => routes.set_wake(app, version, None).await?,
        None => routes.clear_wake(app).await?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fixtures;
    use caas_types::AutoscalePolicy;

    fn row(
        id: i64,
        app: &str,
        version: &str,
        min: Option<u32>,
        state: DeploymentState,
    ) -> DeploymentRow {
        let mut d = fixtures::deployment(id, app, version, 0);
        d.spec.autoscale = min.map(|min| AutoscalePolicy {
            min,
            max: 3,
            target_concurrency: 10,
            scale_down_delay_s: 60,
        });
        d.desired = min.map(|_| 0);
        d.state = state;
        d
    }

    #[test]
    fn the_newest_live_deployment_with_min_zero_makes_its_app_sleep() {
        use DeploymentState::*;
        let rows = vec![
            row(1, "shop", "v1", Some(0), Running),
            row(2, "shop", "v2", Some(0), Deploying),
            row(3, "blog", "v1", Some(1), Running),
            row(4, "api", "v1", None, Running),
            row(5, "gone", "v1", Some(0), Stopping),
            row(6, "bad", "v1", Some(0), Failed),
            row(7, "mixed", "v2", Some(0), Running),
            row(8, "mixed", "v3", Some(2), Running),
        ];
        let s = sleepers(&rows);
        let mut got: Vec<(String, String)> = s
            .iter()
            .map(|(a, v)| (a.to_string(), v.to_string()))
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("mixed".to_owned(), "v2".to_owned()),
                ("shop".to_owned(), "v2".to_owned()),
            ]
        );
    }
}
