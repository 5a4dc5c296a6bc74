//! The pure decisions of releases: which release a rollback without a number goes to, the
//! bounds of a page of the history, where pruning stops, and the request a running deployment
//! corresponds to.

use crate::error::{Error, Result};
use crate::store::NewDeployment;
use caas_types::api::{self, CreateDeployment};

/// Releases a page holds when the client does not say.
pub const DEFAULT_PAGE: u32 = 50;
/// Most releases one page holds.
pub const MAX_PAGE: u32 = 500;

/// The release a rollback without a number goes to: the newest one older than the newest
/// active release. `history` is `(number, active)` in any order.
pub fn default_target(history: &[(u32, bool)]) -> Result<u32> {
    let active = history
        .iter()
        .filter(|(_, active)| *active)
        .map(|(n, _)| *n)
        .max()
        .ok_or_else(|| {
            Error::Conflict("no release of this app runs; name the release to roll back to".into())
        })?;
    history
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| *n < active)
        .max()
        .ok_or_else(|| Error::NotFound(format!("a release before the active release {active}")))
}

/// Checks `?limit=&before=`: the page size (default [`DEFAULT_PAGE`], 1 to [`MAX_PAGE`]) and
/// the number the page stays below (at least 1).
pub fn page(limit: Option<u32>, before: Option<u32>) -> Result<(u32, Option<u32>)> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Error::Invalid(format!(
            "limit: must be between 1 and {MAX_PAGE}"
        )));
    }
    if before == Some(0) {
        return Err(Error::Invalid(
            "before: must be a release number (1 or more)".into(),
        ));
    }
    Ok((limit, before))
}

/// The highest release number pruning may delete once `newest` is recorded and `keep` are kept
/// (`None`: nothing to prune). The newest release is never pruned, so numbers are never reused.
pub fn prune_cutoff(newest: u32, keep: u32) -> Option<u32> {
    newest.checked_sub(keep.max(1)).filter(|c| *c > 0)
}

/// The request that would deploy `spec` again (for a running deployment recorded before
/// releases existed, e.g. the template of an auto-deploy roll).
pub fn request_of(spec: &NewDeployment) -> CreateDeployment {
    CreateDeployment {
        version: spec.version.clone(),
        instances: spec.instances,
        memory_mb: spec.resources.memory.mib(),
        cpus: spec.resources.cpus.cores(),
        port: spec.port,
        command: spec.command.clone(),
        env: spec.env.clone(),
        placement: api::Placement::from(spec.placement.clone()),
        health: api::HealthSpec::from(spec.health.clone()),
        stop_timeout_s: spec.stop_timeout_s,
        recycle_after_s: spec.recycle_after_s,
        autoscale: spec.autoscale.map(api::Autoscale::from),
        user: spec.user.clone(),
        read_only: spec.read_only,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rollback_without_a_number_goes_to_the_release_before_the_active_one() {
        // 1 v1, 2 v2, 3 v3 (active): back to 2.
        assert_eq!(
            default_target(&[(3, true), (2, false), (1, false)]).ok(),
            Some(2)
        );
        // After a rollback to 1 recorded as 4 (active): back to 3, as Heroku does.
        assert_eq!(
            default_target(&[(4, true), (3, false), (2, false), (1, false)]).ok(),
            Some(3)
        );
        // Two versions running: the newest active one counts; order does not matter.
        assert_eq!(
            default_target(&[(1, false), (3, true), (2, true)]).ok(),
            Some(2)
        );
        // Pruned numbers are skipped.
        assert_eq!(default_target(&[(9, true), (5, false)]).ok(), Some(5));
    }

    #[test]
    fn a_rollback_without_a_number_needs_an_active_release_with_one_before_it() {
        assert!(matches!(default_target(&[]), Err(Error::Conflict(_))));
        assert!(matches!(
            default_target(&[(2, false), (1, false)]),
            Err(Error::Conflict(_))
        ));
        assert!(matches!(
            default_target(&[(1, true)]),
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            default_target(&[(3, true), (4, false)]),
            Err(Error::NotFound(_))
        ));
    }

    #[test]
    fn pages_default_to_50_and_hold_1_to_500() {
        assert_eq!(page(None, None).ok(), Some((50, None)));
        assert_eq!(page(Some(1), Some(7)).ok(), Some((1, Some(7))));
        assert_eq!(page(Some(500), Some(1)).ok(), Some((500, Some(1))));
        for (limit, before) in [
            (Some(0), None),
            (Some(501), None),
            (Some(u32::MAX), None),
            (None, Some(0)),
        ] {
            assert!(
                matches!(page(limit, before), Err(Error::Invalid(_))),
                "{limit:?} {before:?}"
            );
        }
    }

    #[test]
    fn pruning_keeps_the_newest_and_never_reuses_a_number() {
        assert_eq!(prune_cutoff(1, 100), None);
        assert_eq!(prune_cutoff(100, 100), None);
        assert_eq!(prune_cutoff(101, 100), Some(1));
        assert_eq!(prune_cutoff(250, 100), Some(150));
        // keep 0 would delete the newest; it counts as 1.
        assert_eq!(prune_cutoff(5, 0), Some(4));
        assert_eq!(prune_cutoff(5, 1), Some(4));
    }

    #[test]
    fn a_deployment_turns_back_into_the_request_that_makes_it() {
        let req: CreateDeployment = serde_json::from_value(serde_json::json!({
            "version": "v3", "instances": 2, "memory_mb": 64, "cpus": 0.25, "port": 9000,
            "env": {"A": "1"}, "placement": {"spread": true, "constraints": {"zone": "a"}},
            "health": {"path": "/healthz", "interval_ms": 500, "on_failure": "replace"},
            "user": "1000:1000", "read_only": true
        }))
        .expect("valid request");
        let app = "hello".parse().expect("valid app");
        let plan = crate::deployments::plan("127.0.0.1:5000", &app, &req).expect("valid plan");
        assert_eq!(request_of(&plan.new), req);
    }
}
