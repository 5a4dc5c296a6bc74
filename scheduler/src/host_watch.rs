//! The leader's host watch: is each host's engine still there? Every `--host-check-ms` the
//! leader pings the engine of every host the watch may change (each ping bounded by
//! `--host-ping-timeout-ms`, all hosts at once) and counts, in memory, the answers in a row:
//!
//! - a `ready` host whose engine misses `--host-down-after` pings in a row is marked `down`
//!   with `auto_down` set (`Store::mark_host_down_auto`); the reconciler, run at once, then
//!   replaces its instances elsewhere (`Repair::ReplaceLost`);
//! - a host so marked whose engine answers [`UP_AFTER`] pings in a row is `ready` again
//!   (`Store::mark_host_ready_auto`); the reconciler, run at once, removes what the host still
//!   runs of the instances it replaced meanwhile (orphans). Two answers rather than one, so an
//!   engine that answers once in a while does not flip the host back and forth; going down
//!   needs more, since it moves instances.
//!
//! No host is marked down in a round where no watched engine answered: when every engine is
//! silent at once, the likelier fault is this scheduler's (cut off from the hosts' network, its
//! TLS client files unusable), and marking every host down would deregister every instance
//! with nowhere to put a replacement. Once any engine answers again, a host still failing is
//! marked down at once.
//!
//! A host an operator set to `draining` or `down` is never pinged nor changed, and an operator's
//! state change clears `auto_down` (`Store::set_host_state`), so the watch never overrides an
//! operator. `auto_down` is stored, not remembered, so a new leader brings back the hosts its
//! predecessor marked down. Each change is fenced ([`Fence`]), logged, counted and recorded
//! as a `host.down` / `host.up` event (no app: the operator's).
//!
//! [`Counts::observe`] decides (pure, unit-tested below); [`HostWatch::run`] pings and applies.

use crate::config::Config;
use crate::engine::Engines;
use crate::error::{Error, Result};
use crate::events::{EventType, Events};
use crate::fence::Fence;
use crate::store::{HostRow, Store};
use caas_types::{HostName, HostState};
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Answers in a row after which a host the watch marked `down` is `ready` again.
pub const UP_AFTER: u32 = 2;

/// What the watch may do to a host, from its stored state. A host it may do nothing to
/// (`draining`, or `down` by an operator) is not watched at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watched {
    /// `ready`: marked down after enough failed pings.
    Ready,
    /// `down` by the watch: marked ready after enough answers.
    AutoDown,
}

impl Watched {
    /// How the watch sees a host in `state`, marked down by the watch or not; `None` for a
    /// host it leaves alone.
    pub fn of(state: HostState, auto_down: bool) -> Option<Watched> {
        match state {
            HostState::Ready => Some(Watched::Ready),
            HostState::Down if auto_down => Some(Watched::AutoDown),
            HostState::Down | HostState::Draining => None,
        }
    }

    /// How the watch sees a stored host.
    pub fn of_row(host: &HostRow) -> Option<Watched> {
        Watched::of(host.state, host.auto_down)
    }
}

/// A change the watch makes to one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Mark the `ready` host `down`: its engine missed this many pings in a row.
    Down {
        /// Failed pings in a row.
        failures: u32,
    },
    /// Mark the host the watch marked `down` `ready`: its engine answered this many in a row.
    Up {
        /// Answers in a row.
        answers: u32,
    },
}

/// How many results in a row make a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Failed pings in a row that mark a `ready` host down; 0: never.
    pub down_after: u32,
    /// Answers in a row that bring back a host the watch marked down (at least 1).
    pub up_after: u32,
}

impl Rules {
    /// The rules of `config`: `--host-down-after`, and [`UP_AFTER`].
    pub fn of(config: &Config) -> Rules {
        Rules {
            down_after: config.host_down_after,
            up_after: UP_AFTER,
        }
    }
}

/// One host's results in a row, counted while the watch saw it as `seen`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Count {
    seen: Watched,
    failures: u32,
    answers: u32,
}

impl Count {
    /// Nothing counted yet for a host seen as `seen`.
    fn new(seen: Watched) -> Count {
        Count {
            seen,
            failures: 0,
            answers: 0,
        }
    }
}

/// The results in a row of every watched host, kept in memory by the leader (a new leader
/// starts from nothing: a host is marked down only after failures it saw itself).
#[derive(Debug, Default, Clone)]
pub struct Counts {
    by_host: HashMap<i64, Count>,
    /// The last round held back a host's change to `down`: no engine answered in it.
    held_back: bool,
}

impl Counts {
    /// Records one round of pings: per watched host, its id, how the watch sees it now and
    /// whether its engine answered. A host not in the round (not watched any more, deleted)
    /// is forgotten, and so are its counts when the watch sees it otherwise than before (a
    /// change made by the watch or by an operator starts the count again). Returns the
    /// changes to make, in the round's order; none to `down` when no engine answered.
    pub fn observe(&mut self, round: &[(i64, Watched, bool)], rules: Rules) -> Vec<(i64, Change)> {
        let present: HashSet<i64> = round.iter().map(|(id, _, _)| *id).collect();
        self.by_host.retain(|id, _| present.contains(id));
        let any_answered = round.iter().any(|(_, _, answered)| *answered);
        self.held_back = false;
        let mut changes = Vec::new();
        for &(id, seen, answered) in round {
            let count = self.by_host.entry(id).or_insert(Count::new(seen));
            if count.seen != seen {
                *count = Count::new(seen);
            }
            if answered {
                count.failures = 0;
                count.answers = count.answers.saturating_add(1);
            } else {
                count.answers = 0;
                count.failures = count.failures.saturating_add(1);
            }
            match seen {
                Watched::Ready if rules.down_after > 0 && count.failures >= rules.down_after => {
                    if !any_answered {
                        self.held_back = true;
                        continue;
                    }
                    changes.push((
                        id,
                        Change::Down {
                            failures: count.failures,
                        },
                    ));
                }
                Watched::AutoDown if count.answers >= rules.up_after.max(1) => {
                    changes.push((
                        id,
                        Change::Up {
                            answers: count.answers,
                        },
                    ));
                }
                _ => {}
            }
        }
        changes
    }

    /// Failed pings in a row of host `id` (0 when not watched).
    pub fn failures(&self, id: i64) -> u32 {
        self.by_host.get(&id).map_or(0, |c| c.failures)
    }

    /// Whether the last round kept a host that failed enough `ready` because no engine
    /// answered in it.
    pub fn held_back(&self) -> bool {
        self.held_back
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct HostWatchMetrics {
    /// Hosts marked `down` by the watch.
    pub down: AtomicU64,
    /// Hosts the watch marked `down` and then `ready` again.
    pub up: AtomicU64,
    /// Pings that failed or timed out.
    pub failed_pings: AtomicU64,
}

impl HostWatchMetrics {
    /// The Prometheus text of these counters.
    pub fn render(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let name = "caas_scheduler_host_transitions_total";
        let _ = writeln!(out, "# HELP {name} Host states changed by the leader's host watch, by new state.\n# TYPE {name} counter");
        let _ = writeln!(out, "{name}{{to=\"down\"}} {}", get(&self.down));
        let _ = writeln!(out, "{name}{{to=\"ready\"}} {}", get(&self.up));
        let name = "caas_scheduler_host_ping_failures_total";
        let _ = writeln!(out, "# HELP {name} Pings of hosts' engines that failed or timed out.\n# TYPE {name} counter\n{name} {}", get(&self.failed_pings));
        out
    }
}

/// The leader's host watch: pings, counts, marks hosts down and ready again.
#[derive(Debug)]
pub struct HostWatch {
    store: Store,
    engines: Arc<Engines>,
    events: Events,
    fence: Arc<Fence>,
    rules: Rules,
    every: Duration,
    ping_timeout: Duration,
    /// Notified after the watch changed a host's state: the leader reconciles at once.
    changed: Notify,
    /// Counters for `/metrics`.
    pub metrics: HostWatchMetrics,
}

impl HostWatch {
    /// A watch over these parts with `config`'s period, timeout and rules; `fence` is checked
    /// before each change.
    pub fn new(
        config: &Config,
        store: Store,
        engines: Arc<Engines>,
        events: Events,
        fence: Arc<Fence>,
    ) -> HostWatch {
        HostWatch {
            store,
            engines,
            events,
            fence,
            rules: Rules::of(config),
            every: Duration::from_millis(config.host_check_ms.max(1)),
            ping_timeout: Duration::from_millis(config.host_ping_timeout_ms.max(1)),
            changed: Notify::new(),
            metrics: HostWatchMetrics::default(),
        }
    }

    /// Completes once the watch changed a host's state since the last time it completed (a
    /// change made while nobody waited is kept for the next waiter).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Pings every watched host each period until `stop` completes (leadership lost or
    /// shutdown). A round that cannot read the hosts is logged and skipped.
    pub async fn run(self: Arc<Self>, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let mut counts = Counts::default();
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut stop => return,
                _ = tick.tick() => {}
            }
            // A round stops with the leadership too: a ping of a gone host may take a while.
            tokio::select! {
                () = &mut stop => return,
                r = self.round(&mut counts) => if let Err(e) = r {
                    tracing::warn!(error = %e, "host watch: round failed");
                },
            }
        }
    }

    /// One round: ping the watched hosts at once, count, apply the changes.
    async fn round(&self, counts: &mut Counts) -> Result<()> {
        let hosts = self.store.list_hosts().await?;
        // Every watched host with its kind and the result of its ping, pinged at once.
        let pinged: Vec<(&HostRow, Watched, std::result::Result<(), String>)> =
            futures::future::join_all(hosts.iter().filter_map(|h| {
                let watched = Watched::of_row(h)?;
                Some(async move { (h, watched, self.ping(&h.name, &h.docker).await) })
            }))
            .await;
        let round: Vec<(i64, Watched, bool)> = pinged
            .iter()
            .map(|(h, w, r)| (h.id, *w, r.is_ok()))
            .collect();
        let was_held_back = counts.held_back();
        let changes = counts.observe(&round, self.rules);
        if counts.held_back() && !was_held_back {
            tracing::warn!(hosts = round.len(), "host watch: no host's engine answers; marking none down (is this scheduler cut off from the hosts?)");
        }
        for (h, w, r) in &pinged {
            if let Err(e) = r {
                self.metrics.failed_pings.fetch_add(1, Ordering::Relaxed);
                if *w == Watched::Ready {
                    tracing::debug!(host = %h.name, failures = counts.failures(h.id), error = %e, "host watch: the engine did not answer");
                }
            }
        }
        for (id, change) in changes {
            let Some((host, _, result)) = pinged.iter().find(|(h, _, _)| h.id == id) else {
                continue;
            };
            match self.apply(host, change, result.as_ref().err()).await {
                Ok(()) => {}
                // Another scheduler leads: it watches; this round ends here.
                Err(e @ Error::NotLeader(_)) => {
                    tracing::info!(host = %host.name, error = %e, "host watch: change left to the leader");
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(host = %host.name, error = %e, "host watch: could not change the host's state");
                }
            }
        }
        Ok(())
    }

    /// Pings `host`'s engine within the timeout; why not, in words.
    async fn ping(&self, host: &HostName, docker: &str) -> std::result::Result<(), String> {
        let engine = self.engines.get(host, docker).map_err(|e| e.to_string())?;
        match tokio::time::timeout(self.ping_timeout, engine.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "no answer within {} ms",
                self.ping_timeout.as_millis()
            )),
        }
    }

    /// Makes one change, fenced; `error` is why the last ping failed.
    async fn apply(&self, host: &HostRow, change: Change, error: Option<&String>) -> Result<()> {
        match change {
            Change::Down { failures } => {
                self.fence.check("marking a host down").await?;
                if !self.store.mark_host_down_auto(host.id).await? {
                    tracing::info!(host = %host.name, "host watch: the host is not ready any more; left as it is");
                    return Ok(());
                }
                self.metrics.down.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(host = %host.name, failures, error = error.map_or("", String::as_str), "host watch: the engine stopped answering; host marked down, its instances will be replaced");
                self.events
                    .emit(
                        EventType::HostDown,
                        None,
                        serde_json::json!({"host": host.name.as_str(), "failures": failures, "error": error}),
                    )
                    .await;
            }
            Change::Up { answers } => {
                self.fence.check("marking a host ready").await?;
                if !self.store.mark_host_ready_auto(host.id).await? {
                    tracing::info!(host = %host.name, "host watch: the host's state was set meanwhile; left as it is");
                    return Ok(());
                }
                self.metrics.up.fetch_add(1, Ordering::Relaxed);
                tracing::info!(host = %host.name, answers, "host watch: the engine answers again; host marked ready");
                self.events
                    .emit(
                        EventType::HostUp,
                        None,
                        serde_json::json!({"host": host.name.as_str(), "answers": answers}),
                    )
                    .await;
            }
        }
        self.changed.notify_one();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: Rules = Rules {
        down_after: 3,
        up_after: 2,
    };

    /// A host whose engine always answers, beside the one a test follows.
    const WELL: i64 = 99;

    /// Feeds rounds of one host (`seen`, answered), next to a host that always answers, and
    /// collects the changes of the followed one in each.
    fn rounds(counts: &mut Counts, id: i64, seq: &[(Watched, bool)]) -> Vec<Vec<Change>> {
        seq.iter()
            .map(|&(w, ok)| {
                counts
                    .observe(&[(id, w, ok), (WELL, Watched::Ready, true)], RULES)
                    .into_iter()
                    .filter(|(host, _)| *host == id)
                    .map(|(_, c)| c)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn only_ready_and_automatically_downed_hosts_are_watched() {
        assert_eq!(Watched::of(HostState::Ready, false), Some(Watched::Ready));
        assert_eq!(Watched::of(HostState::Down, true), Some(Watched::AutoDown));
        // An operator's states.
        assert_eq!(Watched::of(HostState::Down, false), None);
        assert_eq!(Watched::of(HostState::Draining, false), None);
        assert_eq!(Watched::of(HostState::Draining, true), None);
    }

    #[test]
    fn a_ready_host_goes_down_after_the_failures_in_a_row() {
        let mut c = Counts::default();
        let r = Watched::Ready;
        let out = rounds(&mut c, 1, &[(r, false), (r, false), (r, false)]);
        assert_eq!(
            out,
            vec![vec![], vec![], vec![Change::Down { failures: 3 }]]
        );
        // Not applied yet (the store write failed, say): asked again next round.
        assert_eq!(
            rounds(&mut c, 1, &[(r, false)]),
            vec![vec![Change::Down { failures: 4 }]]
        );
    }

    #[test]
    fn an_answer_starts_the_failures_again() {
        let mut c = Counts::default();
        let r = Watched::Ready;
        let out = rounds(
            &mut c,
            1,
            &[
                (r, false),
                (r, false),
                (r, true),
                (r, false),
                (r, false),
                (r, true),
            ],
        );
        assert!(out.iter().all(Vec::is_empty), "{out:?}");
        assert_eq!(c.failures(1), 0);
    }

    #[test]
    fn an_automatically_downed_host_comes_back_after_two_answers_in_a_row() {
        let mut c = Counts::default();
        let (r, d) = (Watched::Ready, Watched::AutoDown);
        let out = rounds(
            &mut c,
            1,
            &[
                (r, false),
                (r, false),
                (r, false),
                // Marked down: the count starts again.
                (d, false),
                (d, true),
                (d, false),
                (d, true),
                (d, true),
            ],
        );
        assert_eq!(
            out,
            vec![
                vec![],
                vec![],
                vec![Change::Down { failures: 3 }],
                vec![],
                vec![],
                vec![],
                vec![],
                vec![Change::Up { answers: 2 }],
            ]
        );
        // Ready again: one failure is not enough to go down again.
        assert_eq!(rounds(&mut c, 1, &[(r, false)]), vec![vec![]]);
        assert_eq!(c.failures(1), 1);
    }

    #[test]
    fn failures_counted_before_a_change_of_state_do_not_carry_over() {
        let mut c = Counts::default();
        let (r, d) = (Watched::Ready, Watched::AutoDown);
        // Two answers while ready do not bring an automatic down back at once.
        rounds(&mut c, 1, &[(r, true), (r, true)]);
        assert_eq!(rounds(&mut c, 1, &[(d, true)]), vec![vec![]]);
        // Two failures, then the operator drained it (not in the round), then ready again:
        // counting starts from nothing.
        let mut c = Counts::default();
        rounds(&mut c, 2, &[(r, false), (r, false)]);
        assert!(c.observe(&[], RULES).is_empty());
        assert_eq!(rounds(&mut c, 2, &[(r, false)]), vec![vec![]]);
        assert_eq!(c.failures(2), 1);
    }

    #[test]
    fn hosts_an_operator_set_are_never_changed() {
        // The I/O half pings only watched hosts; an operator's `down` or `draining` never is
        // one, however long its engine is silent or answers.
        let mut c = Counts::default();
        for _ in 0..10 {
            let round: Vec<(i64, Watched, bool)> = [
                (1, HostState::Down, false, true),
                (2, HostState::Draining, false, false),
                (3, HostState::Ready, false, true),
            ]
            .into_iter()
            .filter_map(|(id, state, auto, ok)| Watched::of(state, auto).map(|w| (id, w, ok)))
            .collect();
            assert!(c.observe(&round, RULES).is_empty());
        }
    }

    #[test]
    fn hosts_are_counted_apart_and_changed_in_the_rounds_order() {
        let mut c = Counts::default();
        let (r, d) = (Watched::Ready, Watched::AutoDown);
        let mut last = Vec::new();
        for _ in 0..3 {
            last = c.observe(&[(1, r, false), (2, r, true), (3, d, true)], RULES);
        }
        assert_eq!(
            last,
            vec![
                (1, Change::Down { failures: 3 }),
                (3, Change::Up { answers: 3 })
            ]
        );
        // Host 3 came back on the second round already.
        let mut c = Counts::default();
        assert!(c.observe(&[(3, d, true)], RULES).is_empty());
        assert_eq!(
            c.observe(&[(3, d, true)], RULES),
            vec![(3, Change::Up { answers: 2 })]
        );
    }

    #[test]
    fn no_host_is_marked_down_in_a_round_where_no_engine_answers() {
        let mut c = Counts::default();
        let r = Watched::Ready;
        for _ in 0..5 {
            assert!(c.observe(&[(1, r, false), (2, r, false)], RULES).is_empty());
        }
        assert!(c.held_back());
        // One engine answers again: the other, still silent, goes down at once.
        assert_eq!(
            c.observe(&[(1, r, true), (2, r, false)], RULES),
            vec![(2, Change::Down { failures: 6 })]
        );
        assert!(!c.held_back());
        // A single host is never marked down: there is nowhere to move its instances.
        let mut c = Counts::default();
        for _ in 0..5 {
            assert!(c.observe(&[(1, r, false)], RULES).is_empty());
        }
        // A host marked down automatically that answers counts as an answer.
        let mut c = Counts::default();
        let d = Watched::AutoDown;
        for _ in 0..2 {
            c.observe(&[(1, r, false), (2, d, false)], RULES);
        }
        assert_eq!(
            c.observe(&[(1, r, false), (2, d, true)], RULES),
            vec![(1, Change::Down { failures: 3 })]
        );
    }

    #[test]
    fn down_after_zero_never_marks_a_host_down_but_still_brings_one_back() {
        let rules = Rules {
            down_after: 0,
            up_after: 2,
        };
        let mut c = Counts::default();
        for _ in 0..10 {
            assert!(c.observe(&[(1, Watched::Ready, false)], rules).is_empty());
        }
        c.observe(&[(2, Watched::AutoDown, true)], rules);
        assert_eq!(
            c.observe(&[(2, Watched::AutoDown, true)], rules),
            vec![(2, Change::Up { answers: 2 })]
        );
    }
}
