//! The pure half of healing: what a health transition does to an instance, whether an instance
//! is still to be healed once its back-off has passed, which containers the health checker
//! should start or stop watching, and which transitions a worker's container state makes (a
//! worker has no health path: its container exiting is its failing health). No I/O here; the
//! healer reads the rows, asks these functions and acts.

use crate::store::InstanceRow;
use caas_deployer::{ContainerState, ContainerSummary};
use caas_registry::HealthEventKind;
use caas_types::{ContainerId, InstanceId};
use caas_types::{InstanceState, OnFailure};
use std::collections::HashSet;

/// What to do with one health transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthAction {
    /// The container belongs to no instance any more (undeployed meanwhile): stop checking it.
    Unwatch,
    /// The instance is being stopped: nothing to do.
    Ignore,
    /// Record the instance healthy and `running`.
    MarkHealthy {
        /// The instance.
        instance: InstanceId,
    },
    /// Record the instance unhealthy (`unhealthy` state), then, after the back-off, heal it
    /// per its deployment's policy.
    MarkUnhealthy {
        /// The instance.
        instance: InstanceId,
        /// The deployment's `on_failure` policy; `None` if it could not be read: mark only
        /// (the reconciler re-creates the container if it is gone).
        then: Option<OnFailure>,
    },
}

/// What a health transition of `kind` does to `instance`, the row whose container it is
/// (`None`: no row has that container). `on_failure` is its deployment's policy, `None` if it
/// could not be read (only an unhealthy transition uses it).
pub fn on_event(
    kind: HealthEventKind,
    instance: Option<&InstanceRow>,
    on_failure: Option<OnFailure>,
) -> HealthAction {
    let Some(inst) = instance else {
        return HealthAction::Unwatch;
    };
    if inst.state == InstanceState::Stopping {
        return HealthAction::Ignore;
    }
    let instance = inst.id.clone();
    match kind {
        HealthEventKind::Healthy => HealthAction::MarkHealthy { instance },
        HealthEventKind::Unhealthy => HealthAction::MarkUnhealthy {
            instance,
            then: on_failure,
        },
    }
}

/// Whether an instance, read again after its back-off, is still to be healed (it may have
/// recovered, or been undeployed, meanwhile).
pub fn still_unhealthy(now: &InstanceRow) -> bool {
    now.state == InstanceState::Unhealthy
}

/// The container a restart in place restarts: the instance's, if it is still unhealthy and has
/// one.
pub fn restart_target(now: &InstanceRow) -> Option<&ContainerId> {
    now.container_id.as_ref().filter(|_| still_unhealthy(now))
}

/// Whether the health checker treats an instance as registered in ZooKeeper when it starts
/// watching it: healthy and `running`.
pub fn registered(r: &InstanceRow) -> bool {
    r.healthy && r.state == InstanceState::Running
}

/// An instance the health checker should start watching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    /// The instance's row (app, version, endpoint, deployment for the health spec).
    pub instance: InstanceRow,
    /// Its container.
    pub container: ContainerId,
    /// Whether it is registered already ([`registered`]).
    pub registered: bool,
}

/// How the health checker's targets change to equal the database's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetDiff {
    /// Instances to start watching, in row order.
    pub watch: Vec<Watch>,
    /// Containers to stop watching, sorted.
    pub unwatch: Vec<ContainerId>,
}

/// The targets to add and remove so that the checker watches exactly the containers of the
/// `running` and `unhealthy` instances in `rows`, given the containers it `watched`.
pub fn target_diff(rows: &[InstanceRow], watched: &HashSet<ContainerId>) -> TargetDiff {
    let mut want: HashSet<&ContainerId> = HashSet::new();
    let mut watch = Vec::new();
    for r in rows {
        let Some(cid) = &r.container_id else {
            continue;
        };
        // A worker has no health path; its container's state is its health.
        if r.is_worker() {
            continue;
        }
        if !matches!(r.state, InstanceState::Running | InstanceState::Unhealthy) {
            continue;
        }
        // Watched already, or named by an earlier row.
        if !want.insert(cid) || watched.contains(cid) {
            continue;
        }
        watch.push(Watch {
            instance: r.clone(),
            container: cid.clone(),
            registered: registered(r),
        });
    }
    let mut unwatch: Vec<ContainerId> = watched
        .iter()
        .filter(|c| !want.contains(c))
        .cloned()
        .collect();
    unwatch.sort();
    TargetDiff { watch, unwatch }
}

/// What a worker's container did, from its engine's events or a listing of its containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerSignal {
    /// It is not running any more (exited or dead), with its exit code when known.
    Exited {
        /// The exit code, from a `die` event.
        exit_code: Option<i64>,
    },
    /// It runs (started again).
    Running,
}

impl WorkerSignal {
    /// The signal of a listed container's state: `None` for states that say nothing either
    /// way (created, paused, restarting, being removed).
    pub fn of_state(state: ContainerState) -> Option<WorkerSignal> {
        match state {
            ContainerState::Running => Some(WorkerSignal::Running),
            ContainerState::Exited | ContainerState::Dead => {
                Some(WorkerSignal::Exited { exit_code: None })
            }
            _ => None,
        }
    }
}

/// The health transition `signal` about `container` makes for `row`, a worker's instance: an
/// exit of its running container makes it unhealthy (then healed per `on_failure` after its
/// back-off, like a failed health check), its container running again makes an unhealthy one
/// healthy. Anything else changes nothing: a row that is not a worker's (the health checker
/// has those), a signal about another container than the row's (an older one, or a new one
/// not recorded yet), a transitional or stopping row (its own operation has it).
pub fn worker_transition(
    row: &InstanceRow,
    container: &ContainerId,
    signal: WorkerSignal,
) -> Option<HealthEventKind> {
    if !row.is_worker() || row.container_id.as_ref() != Some(container) {
        return None;
    }
    match (row.state, signal) {
        (InstanceState::Running, WorkerSignal::Exited { .. }) => Some(HealthEventKind::Unhealthy),
        (InstanceState::Unhealthy, WorkerSignal::Running) => Some(HealthEventKind::Healthy),
        _ => None,
    }
}

/// The transitions one host's listing shows for the worker rows of that host: what the engine's
/// events should have reported (a missed event, an exit while no scheduler led). A container
/// not listed is the reconciler's (it re-creates a lost one).
pub fn worker_transitions<'a>(
    rows: &'a [InstanceRow],
    host_id: i64,
    listed: &[ContainerSummary],
) -> Vec<(&'a InstanceRow, HealthEventKind)> {
    rows.iter()
        .filter(|r| r.host_id == host_id && r.is_worker())
        .filter_map(|r| {
            let cid = r.container_id.as_ref()?;
            let listed = listed.iter().find(|c| &c.id == cid)?;
            let signal = WorkerSignal::of_state(listed.state)?;
            worker_transition(r, cid, signal).map(|kind| (r, kind))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fixtures::{self, cid};

    fn worker(id: &str, state: InstanceState, container: Option<u8>) -> InstanceRow {
        InstanceRow {
            host_port: None,
            ..fixtures::instance(id, 1, state, container)
        }
    }

    #[test]
    fn a_workers_exit_makes_it_unhealthy_and_its_restart_healthy() {
        let running = worker("job-a", InstanceState::Running, Some(1));
        let exited = WorkerSignal::Exited { exit_code: Some(1) };
        assert_eq!(
            worker_transition(&running, &cid(1), exited),
            Some(HealthEventKind::Unhealthy)
        );
        assert_eq!(
            worker_transition(&running, &cid(1), WorkerSignal::Running),
            None
        );
        let unhealthy = worker("job-a", InstanceState::Unhealthy, Some(1));
        assert_eq!(
            worker_transition(&unhealthy, &cid(1), WorkerSignal::Running),
            Some(HealthEventKind::Healthy)
        );
        assert_eq!(worker_transition(&unhealthy, &cid(1), exited), None);
        // Another container than the row's, a row with a port, a stopping or starting row.
        assert_eq!(worker_transition(&running, &cid(2), exited), None);
        let http = fixtures::instance("web-a", 1, InstanceState::Running, Some(1));
        assert_eq!(worker_transition(&http, &cid(1), exited), None);
        for state in [
            InstanceState::Stopping,
            InstanceState::Starting,
            InstanceState::Pending,
        ] {
            let r = worker("job-a", state, Some(1));
            assert_eq!(worker_transition(&r, &cid(1), exited), None, "{state:?}");
        }
    }

    #[test]
    fn a_listing_shows_the_transitions_events_missed() {
        let summary = |n: u8, state: ContainerState| ContainerSummary {
            id: cid(n),
            name: format!("c{n}"),
            image: "i".into(),
            state,
            status: String::new(),
            labels: Default::default(),
        };
        let rows = vec![
            worker("job-a", InstanceState::Running, Some(1)),
            worker("job-b", InstanceState::Unhealthy, Some(2)),
            worker("job-c", InstanceState::Running, Some(3)),
            worker("job-d", InstanceState::Running, Some(4)),
            fixtures::instance("web-e", 1, InstanceState::Running, Some(5)),
            InstanceRow {
                host_id: 2,
                ..worker("job-f", InstanceState::Running, Some(6))
            },
        ];
        let listed = vec![
            summary(1, ContainerState::Exited),
            summary(2, ContainerState::Running),
            summary(3, ContainerState::Running),
            // job-d's container is not listed: the reconciler's.
            summary(5, ContainerState::Exited),
            summary(6, ContainerState::Dead),
        ];
        let got: Vec<(&str, HealthEventKind)> = worker_transitions(&rows, 1, &listed)
            .into_iter()
            .map(|(r, k)| (r.id.as_str(), k))
            .collect();
        assert_eq!(
            got,
            vec![
                ("job-a", HealthEventKind::Unhealthy),
                ("job-b", HealthEventKind::Healthy)
            ]
        );
    }

    #[test]
    fn workers_are_not_health_checked() {
        let rows = vec![worker("job-a", InstanceState::Running, Some(1))];
        assert_eq!(target_diff(&rows, &HashSet::new()), TargetDiff::default());
    }

    /// The instance `id` of app `web` on host `h1`, healthy or not whatever its state.
    fn inst(id: &str, state: InstanceState, container: Option<u8>, healthy: bool) -> InstanceRow {
        InstanceRow {
            healthy,
            ..fixtures::instance(id, 1, state, container)
        }
    }

    const STATES: [InstanceState; 5] = [
        InstanceState::Pending,
        InstanceState::Starting,
        InstanceState::Running,
        InstanceState::Unhealthy,
        InstanceState::Stopping,
    ];

    #[test]
    fn an_event_for_a_container_of_no_instance_unwatches_it() {
        for kind in [HealthEventKind::Healthy, HealthEventKind::Unhealthy] {
            assert_eq!(
                on_event(kind, None, Some(OnFailure::Replace)),
                HealthAction::Unwatch
            );
        }
    }

    #[test]
    fn events_of_a_stopping_instance_are_ignored() {
        let r = inst("web-a", InstanceState::Stopping, Some(1), false);
        for kind in [HealthEventKind::Healthy, HealthEventKind::Unhealthy] {
            assert_eq!(
                on_event(kind, Some(&r), Some(OnFailure::Restart)),
                HealthAction::Ignore
            );
        }
    }

    #[test]
    fn a_healthy_event_marks_any_other_instance_healthy() {
        for state in STATES.into_iter().filter(|s| *s != InstanceState::Stopping) {
            let r = inst("web-a", state, Some(1), false);
            assert_eq!(
                on_event(HealthEventKind::Healthy, Some(&r), None),
                HealthAction::MarkHealthy {
                    instance: r.id.clone()
                },
                "{state:?}"
            );
        }
    }

    #[test]
    fn an_unhealthy_event_marks_then_heals_per_policy() {
        let r = inst("web-a", InstanceState::Running, Some(1), true);
        for policy in [OnFailure::Restart, OnFailure::Replace] {
            assert_eq!(
                on_event(HealthEventKind::Unhealthy, Some(&r), Some(policy)),
                HealthAction::MarkUnhealthy {
                    instance: r.id.clone(),
                    then: Some(policy)
                }
            );
        }
    }

    #[test]
    fn an_unhealthy_event_without_a_policy_only_marks() {
        let r = inst("web-a", InstanceState::Running, Some(1), true);
        assert_eq!(
            on_event(HealthEventKind::Unhealthy, Some(&r), None),
            HealthAction::MarkUnhealthy {
                instance: r.id.clone(),
                then: None
            }
        );
    }

    #[test]
    fn only_a_still_unhealthy_instance_is_healed_after_its_backoff() {
        for state in STATES {
            let r = inst("web-a", state, Some(1), false);
            assert_eq!(
                still_unhealthy(&r),
                state == InstanceState::Unhealthy,
                "{state:?}"
            );
        }
    }

    #[test]
    fn a_restart_in_place_needs_a_container_and_an_unhealthy_instance() {
        let one = cid(1);
        assert_eq!(
            restart_target(&inst("web-a", InstanceState::Unhealthy, Some(1), false)),
            Some(&one)
        );
        assert_eq!(
            restart_target(&inst("web-a", InstanceState::Unhealthy, None, false)),
            None
        );
        assert_eq!(
            restart_target(&inst("web-a", InstanceState::Running, Some(1), true)),
            None
        );
    }

    #[test]
    fn running_and_unhealthy_instances_with_a_container_are_watched() {
        let rows = vec![
            inst("web-a", InstanceState::Running, Some(1), true),
            inst("web-b", InstanceState::Unhealthy, Some(2), false),
            // Running but failing its checks since the last sync: not registered.
            inst("web-c", InstanceState::Running, Some(3), false),
            inst("web-d", InstanceState::Running, None, true),
            inst("web-e", InstanceState::Starting, Some(5), false),
            inst("web-f", InstanceState::Pending, None, false),
            inst("web-g", InstanceState::Stopping, Some(7), false),
        ];
        let diff = target_diff(&rows, &HashSet::new());
        let got: Vec<(&str, ContainerId, bool)> = diff
            .watch
            .iter()
            .map(|w| (w.instance.id.as_str(), w.container.clone(), w.registered))
            .collect();
        assert_eq!(
            got,
            vec![
                ("web-a", cid(1), true),
                ("web-b", cid(2), false),
                ("web-c", cid(3), false),
            ]
        );
        assert_eq!(diff.unwatch, vec![]);
    }

    #[test]
    fn watched_targets_are_kept_and_unwanted_ones_unwatched() {
        let rows = vec![
            inst("web-a", InstanceState::Running, Some(1), true),
            inst("web-b", InstanceState::Unhealthy, Some(2), false),
            inst("web-e", InstanceState::Starting, Some(5), false),
            inst("web-g", InstanceState::Stopping, Some(7), false),
        ];
        let watched: HashSet<ContainerId> = [1, 9, 7, 5].into_iter().map(cid).collect();
        let diff = target_diff(&rows, &watched);
        assert_eq!(diff.watch.len(), 1);
        assert_eq!(diff.watch[0].container, cid(2));
        assert_eq!(diff.unwatch, vec![cid(5), cid(7), cid(9)]);
    }

    #[test]
    fn a_container_named_by_two_rows_is_watched_once() {
        let rows = vec![
            inst("web-a", InstanceState::Running, Some(1), true),
            inst("web-b", InstanceState::Unhealthy, Some(1), false),
        ];
        let diff = target_diff(&rows, &HashSet::new());
        assert_eq!(diff.watch.len(), 1);
        assert_eq!(diff.watch[0].instance.id.as_str(), "web-a");
    }

    #[test]
    fn in_step_targets_change_nothing() {
        let rows = vec![
            inst("web-a", InstanceState::Running, Some(1), true),
            inst("web-b", InstanceState::Unhealthy, Some(2), false),
        ];
        let watched: HashSet<ContainerId> = [1, 2].into_iter().map(cid).collect();
        assert_eq!(target_diff(&rows, &watched), TargetDiff::default());
    }
}
