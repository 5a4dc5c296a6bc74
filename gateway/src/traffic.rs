//! The traffic part of demand reports: what each app's counters ([`crate::metrics::AppStats`])
//! went up by since the scheduler last accepted them.
//!
//! The [`Ledger`] keeps, per app, the counters as of the last report the scheduler accepted
//! (2xx) that carried the app's traffic, and that report's number. Each report carries, for
//! every app whose counters moved since, the difference and the number it counts from
//! (`since`). Until a report is accepted nothing moves: a refused or lost report's counts go
//! out again in the next one, with the same `since`, so the scheduler (which keeps one sample
//! per gateway, boot, app and `since`, the larger) counts them once whatever happened to the
//! answer. A new process draws a new boot id and counts from zero.
//!
//! The reporter's task owns the ledger: the request path only adds to atomics, as before.

use caas_types::api::{AppTraffic, TrafficCounts};
use std::collections::HashMap;
use std::hash::BuildHasher as _;
use std::time::{Duration, Instant};

/// How long traffic stays out of reports after a scheduler refused a report that carried it
/// (a scheduler older than this gateway): demand reports go on without it meanwhile.
pub(crate) const OFF_AFTER_REFUSAL: Duration = Duration::from_secs(600);

/// What one report carries of the traffic: per app, the counts since its last accepted report
/// and the counters they reach (what the ledger keeps once the report is accepted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Carried {
    pub(crate) seq: u64,
    pub(crate) apps: Vec<(String, AppTraffic, TrafficCounts)>,
}

/// The traffic this gateway process has had accepted, per app.
#[derive(Debug)]
pub(crate) struct Ledger {
    boot: u64,
    seq: u64,
    /// Per app: the `seq` of the last accepted report that carried it, and its counters then.
    acked: HashMap<String, (u64, TrafficCounts)>,
    /// Traffic is left out of reports until then (a scheduler refused it).
    off_until: Option<Instant>,
}

/// A random boot id below 2^53 (JSON readers that use doubles keep it exact): the standard
/// library's per-process random hash keys over the time and the process id.
pub(crate) fn boot_id() -> u64 {
    let seed = (
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
        std::process::id(),
    );
    std::collections::hash_map::RandomState::new().hash_one(seed) & ((1 << 53) - 1)
}

impl Ledger {
    /// A ledger for the process with this boot id: nothing accepted yet.
    pub(crate) fn new(boot: u64) -> Ledger {
        Ledger {
            boot,
            seq: 0,
            acked: HashMap::new(),
            off_until: None,
        }
    }

    /// This process's boot id.
    pub(crate) fn boot(&self) -> u64 {
        self.boot
    }

    /// The number of the next report (every report sent gets one).
    pub(crate) fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Whether traffic goes into reports at `now`.
    pub(crate) fn on(&self, now: Instant) -> bool {
        self.off_until.is_none_or(|t| now >= t)
    }

    /// Leaves traffic out of reports for [`OFF_AFTER_REFUSAL`] from `now`; nothing counted is
    /// lost (it goes out once traffic is back on, while this process lives).
    pub(crate) fn turn_off(&mut self, now: Instant) {
        self.off_until = Some(now + OFF_AFTER_REFUSAL);
    }

    /// For the report numbered `seq`: every app of `now` (its counters since the process
    /// started) whose counters moved since its last accepted report, sorted by app.
    pub(crate) fn pending(&self, seq: u64, now: &[(String, TrafficCounts)]) -> Carried {
        let mut apps: Vec<(String, AppTraffic, TrafficCounts)> = now
            .iter()
            .filter_map(|(app, counts)| {
                let (since, base) = self.acked.get(app).copied().unwrap_or_default();
                let moved = counts.minus(&base);
                (!moved.is_empty()).then(|| {
                    let traffic = AppTraffic {
                        since,
                        counts: moved,
                    };
                    (app.clone(), traffic, *counts)
                })
            })
            .collect();
        apps.sort_by(|a, b| a.0.cmp(&b.0));
        Carried { seq, apps }
    }

    /// The report that carried `carried` was accepted: its apps count from its counters on.
    pub(crate) fn accepted(&mut self, carried: &Carried) {
        for (app, _, counts) in &carried.apps {
            self.acked.insert(app.clone(), (carried.seq, *counts));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(ok: u64, bytes: u64) -> TrafficCounts {
        let mut c = TrafficCounts::default();
        c.status[1] = ok;
        c.bytes_out = bytes;
        c.latency[3] = ok;
        c
    }

    fn snapshot(apps: &[(&str, TrafficCounts)]) -> Vec<(String, TrafficCounts)> {
        apps.iter().map(|(a, c)| ((*a).to_owned(), *c)).collect()
    }

    #[test]
    fn only_what_moved_since_the_last_accepted_report_is_carried() {
        let mut l = Ledger::new(7);
        assert_eq!(l.boot(), 7);
        // Nothing counted: nothing carried.
        let seq = l.next_seq();
        assert!(l
            .pending(seq, &snapshot(&[("idle", counts(0, 0))]))
            .apps
            .is_empty());

        // The first report of an app counts from zero (since 0).
        let seq = l.next_seq();
        let c = l.pending(
            seq,
            &snapshot(&[("a", counts(10, 100)), ("b", counts(1, 1))]),
        );
        assert_eq!(c.seq, 2);
        let carried: Vec<_> = c
            .apps
            .iter()
            .map(|(a, t, _)| (a.as_str(), t.since))
            .collect();
        assert_eq!(carried, vec![("a", 0), ("b", 0)]);
        assert_eq!(c.apps[0].1.counts, counts(10, 100));
        l.accepted(&c);

        // Then from that report on; an app that did not move is left out.
        let seq = l.next_seq();
        let c = l.pending(
            seq,
            &snapshot(&[("a", counts(15, 160)), ("b", counts(1, 1))]),
        );
        assert_eq!(c.apps.len(), 1);
        assert_eq!(c.apps[0].1.since, 2);
        assert_eq!(c.apps[0].1.counts, counts(5, 60));
        assert_eq!(c.apps[0].2, counts(15, 160), "the counters it reaches");
    }

    #[test]
    fn a_report_not_accepted_is_carried_again_from_the_same_point() {
        let mut l = Ledger::new(1);
        let seq = l.next_seq();
        let first = l.pending(seq, &snapshot(&[("a", counts(3, 30))]));
        l.accepted(&first);
        // Report 2 is refused (or its answer is lost): nothing moves.
        let seq = l.next_seq();
        let lost = l.pending(seq, &snapshot(&[("a", counts(8, 80))]));
        assert_eq!(
            (lost.apps[0].1.since, lost.apps[0].1.counts),
            (1, counts(5, 50))
        );
        // Report 3 carries report 2's counts and its own, from the same point: the scheduler
        // keeps the larger of the two samples, so each request counts once.
        let seq = l.next_seq();
        let again = l.pending(seq, &snapshot(&[("a", counts(9, 90))]));
        assert_eq!(
            (again.apps[0].1.since, again.apps[0].1.counts),
            (1, counts(6, 60))
        );
        l.accepted(&again);
        let seq = l.next_seq();
        let next = l.pending(seq, &snapshot(&[("a", counts(10, 100))]));
        assert_eq!(
            (next.apps[0].1.since, next.apps[0].1.counts),
            (3, counts(1, 10))
        );
    }

    #[test]
    fn a_new_process_counts_from_zero_under_a_new_boot_id() {
        let (a, b) = (boot_id(), boot_id());
        assert_ne!(a, b, "two draws differ");
        assert!(a < 1 << 53 && b < 1 << 53);
        let mut l = Ledger::new(a);
        let seq = l.next_seq();
        let c = l.pending(seq, &snapshot(&[("a", counts(4, 4))]));
        assert_eq!((c.seq, c.apps[0].1.since), (1, 0));
    }

    #[test]
    fn traffic_is_off_for_a_while_after_a_refusal() {
        let mut l = Ledger::new(1);
        let now = Instant::now();
        assert!(l.on(now));
        l.turn_off(now);
        assert!(!l.on(now + Duration::from_secs(1)));
        assert!(l.on(now + OFF_AFTER_REFUSAL));
    }
}
