//! The autoscaler's arithmetic, with no I/O: how many instances a demand wants, and how the
//! count moves with it.
//!
//! Each tick the demand of an app (held + in-flight requests, summed over the gateways) becomes
//! a wanted count, ⌈demand ÷ `target_concurrency`⌉ (any demand at all wants one instance). The
//! desired count is the largest wanted count over a trailing window, clamped to `[min, max]`:
//! a newer, larger count is in the window at once, so the count goes **up at once**; it comes
//! **down** only when every count in the window is lower, that is after `scale_down_delay_s`
//! of lower demand (the stable window), and never sooner than [`PANIC_WINDOW`] after a burst,
//! so a bursty client does not make instances come and go between its requests.
//!
//! The window is a sliding maximum ([`Window`]): only counts larger than every later one are
//! kept, so it holds at most `max` entries however long the delay, and each tick costs O(1)
//! amortised.

use crate::store::Demand;
use caas_types::AutoscalePolicy;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The shortest time a count stays up after the demand that raised it (Knative's panic window
/// is 6 s too): within it a burst's count is kept whatever the delay.
pub const PANIC_WINDOW: Duration = Duration::from_secs(6);

/// Instances that `demand` wants at `target` requests per instance: ⌈(held + in-flight) ÷
/// target⌉, so any demand at all wants one (a target of 0 is treated as 1).
pub fn wanted(demand: Demand, target: u32) -> u32 {
    let load = demand.held.saturating_add(demand.in_flight);
    let per = u64::from(target.max(1));
    u32::try_from(load.div_ceil(per)).unwrap_or(u32::MAX)
}

/// How long a count stays up after the demand that wanted it: the policy's delay, at least
/// [`PANIC_WINDOW`].
pub fn hold_time(policy: &AutoscalePolicy) -> Duration {
    Duration::from_secs(u64::from(policy.scale_down_delay_s)).max(PANIC_WINDOW)
}

/// The wanted counts of one deployment over the last [`hold_time`], as a sliding maximum.
#[derive(Debug, Clone, Default)]
pub struct Window {
    /// (when, wanted), times increasing and counts strictly decreasing: each entry is the
    /// largest count seen from its time on.
    samples: VecDeque<(Instant, u32)>,
}

impl Window {
    /// A window that already holds `count` at `now`: the count it starts from (the stored
    /// desired count on a new leader, or a hand scale) stays until the demand has been lower
    /// for the hold time.
    pub fn seeded(now: Instant, count: u32) -> Window {
        let mut w = Window::default();
        w.observe(now, count);
        w
    }

    /// Records the count wanted at `now` (times must not go backwards).
    pub fn observe(&mut self, now: Instant, wanted: u32) {
        while self.samples.back().is_some_and(|(_, c)| *c <= wanted) {
            self.samples.pop_back();
        }
        self.samples.push_back((now, wanted));
    }

    /// The largest count wanted at or after `since` (0 when none was).
    pub fn max_since(&mut self, since: Instant) -> u32 {
        while self.samples.front().is_some_and(|(t, _)| *t < since) {
            self.samples.pop_front();
        }
        self.samples.front().map_or(0, |(_, c)| *c)
    }

    /// Entries kept (bounded by the largest count, not by the window's length).
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

/// The count a deployment should have at `now`: the largest count wanted over the hold time,
/// within `[min, max]`.
pub fn desired(policy: &AutoscalePolicy, window: &mut Window, now: Instant) -> u32 {
    let since = now.checked_sub(hold_time(policy)).unwrap_or(now);
    policy.clamp(window.max_since(since))
}

/// Why the count changes, in words for the `autoscale.changed` event.
pub fn reason(policy: &AutoscalePolicy, demand: Demand, from: u32, to: u32) -> String {
    let per = policy.target_concurrency;
    if to > from {
        if from == 0 && demand.held > 0 {
            return format!(
                "woken by {} held request(s) ({} in flight), {per} per instance",
                demand.held, demand.in_flight
            );
        }
        return format!(
            "{} request(s) in flight and {} held, {per} per instance",
            demand.in_flight, demand.held
        );
    }
    let delay = hold_time(policy).as_secs();
    if to == 0 {
        return format!("no request for {delay} s");
    }
    format!(
        "demand wanted at most {to} instance(s) for {delay} s ({} in flight now)",
        demand.in_flight
    )
}

/// Exponential back-off after failed scales: 2 s, 4 s, … up to one minute.
pub fn backoff(failures: u32) -> Duration {
    let secs = 2u64.saturating_pow(failures.clamp(1, 6));
    Duration::from_secs(secs.min(60))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(min: u32, max: u32, target: u32, delay: u32) -> AutoscalePolicy {
        AutoscalePolicy {
            min,
            max,
            target_concurrency: target,
            scale_down_delay_s: delay,
        }
    }

    fn demand(held: u64, in_flight: u64) -> Demand {
        Demand { held, in_flight }
    }

    #[test]
    fn any_demand_wants_an_instance_and_more_at_the_target() {
        assert_eq!(wanted(demand(0, 0), 10), 0);
        assert_eq!(wanted(demand(1, 0), 10), 1);
        assert_eq!(wanted(demand(0, 1), 10), 1);
        assert_eq!(
            wanted(demand(1, 1), 10),
            1,
            "two gateways' one request each: one"
        );
        assert_eq!(wanted(demand(0, 10), 10), 1);
        assert_eq!(wanted(demand(0, 11), 10), 2);
        assert_eq!(wanted(demand(200, 0), 10), 20);
        assert_eq!(wanted(demand(3, 0), 0), 3, "target 0 counts as 1");
        assert_eq!(wanted(demand(u64::MAX, u64::MAX), 1), u32::MAX);
    }

    #[test]
    fn up_at_once_down_only_after_the_delay_and_never_inside_the_panic_window() {
        let p = policy(0, 20, 10, 10);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_millis(s);
        let mut w = Window::seeded(t0, 0);
        assert_eq!(desired(&p, &mut w, t0), 0);
        // A burst: up at once.
        w.observe(at(100), 20);
        assert_eq!(desired(&p, &mut w, at(100)), 20);
        // Demand drops: the count holds for the delay (10 s), then follows.
        w.observe(at(1_000), 3);
        assert_eq!(desired(&p, &mut w, at(1_000)), 20);
        w.observe(at(10_099), 3);
        assert_eq!(desired(&p, &mut w, at(10_099)), 20);
        w.observe(at(10_101), 3);
        assert_eq!(desired(&p, &mut w, at(10_101)), 3);
        // Nothing at all after the delay: zero (min 0).
        w.observe(at(12_000), 0);
        assert_eq!(desired(&p, &mut w, at(20_000)), 3);
        assert_eq!(desired(&p, &mut w, at(22_001)), 0);
        // A delay of 0 still keeps a burst's count through the panic window.
        let p0 = policy(0, 5, 1, 0);
        let mut w = Window::seeded(t0, 0);
        w.observe(at(0), 4);
        w.observe(at(500), 0);
        assert_eq!(desired(&p0, &mut w, at(5_999)), 4);
        assert_eq!(desired(&p0, &mut w, at(6_001)), 0);
    }

    #[test]
    fn the_count_stays_within_the_bounds_and_a_seed_holds_until_the_hold_time() {
        let p = policy(2, 5, 10, 30);
        let t0 = Instant::now();
        let mut w = Window::seeded(t0, 4);
        assert_eq!(desired(&p, &mut w, t0 + Duration::from_secs(29)), 4);
        w.observe(t0 + Duration::from_secs(29), 100);
        assert_eq!(desired(&p, &mut w, t0 + Duration::from_secs(29)), 5);
        w.observe(t0 + Duration::from_secs(30), 0);
        assert_eq!(desired(&p, &mut w, t0 + Duration::from_secs(60)), 2);
    }

    #[test]
    fn the_window_keeps_only_decreasing_counts() {
        let t0 = Instant::now();
        let mut w = Window::default();
        assert!(w.is_empty());
        for i in 0..10_000u64 {
            // A long rise then a plateau: only the latest of equal counts stays.
            w.observe(t0 + Duration::from_millis(i), (i.min(5_000) / 1_000) as u32);
        }
        assert_eq!(w.len(), 1);
        w.observe(t0 + Duration::from_secs(11), 2);
        w.observe(t0 + Duration::from_secs(12), 1);
        assert_eq!(w.len(), 3);
        assert_eq!(w.max_since(t0 + Duration::from_millis(10_500)), 2);
        assert_eq!(w.max_since(t0 + Duration::from_millis(11_500)), 1);
        assert_eq!(w.max_since(t0 + Duration::from_secs(13)), 0);
    }

    #[test]
    fn reasons_say_what_moved_the_count() {
        let p = policy(0, 10, 10, 60);
        assert_eq!(
            reason(&p, demand(1, 0), 0, 1),
            "woken by 1 held request(s) (0 in flight), 10 per instance"
        );
        assert_eq!(
            reason(&p, demand(0, 35), 2, 4),
            "35 request(s) in flight and 0 held, 10 per instance"
        );
        assert_eq!(reason(&p, demand(0, 0), 1, 0), "no request for 60 s");
        assert_eq!(
            reason(&p, demand(0, 5), 4, 1),
            "demand wanted at most 1 instance(s) for 60 s (5 in flight now)"
        );
    }

    #[test]
    fn back_off_doubles_up_to_a_minute() {
        let secs: Vec<u64> = (0..9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, vec![2, 2, 4, 8, 16, 32, 60, 60, 60]);
    }
}
