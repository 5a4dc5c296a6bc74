//! Where the routes come from, as `/healthz` reports it: a live route cache, one that has not
//! answered yet, or one that lost ZooKeeper and serves its last good copy — until that copy is
//! older than `--max-route-staleness-ms` ([`Freshness`]): then every proxied request gets 503
//! until the cache is connected and has read the tree again.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The state of the route source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteStatus {
    /// Routes follow a connected source.
    Live,
    /// No source has answered yet: nothing is routed.
    Starting {
        /// Why not, for the operator.
        reason: String,
    },
    /// The source lost its connection; requests are routed from the last good copy.
    Disconnected {
        /// When the connection was lost.
        since: Instant,
        /// Why, for the operator.
        reason: String,
    },
}

impl RouteStatus {
    /// How long the routes have not been known current: zero unless disconnected.
    pub(crate) fn age(&self) -> Duration {
        match self {
            RouteStatus::Disconnected { since, .. } => since.elapsed(),
            RouteStatus::Live | RouteStatus::Starting { .. } => Duration::ZERO,
        }
    }

    /// `/healthz`'s answer: healthy or not, and one line that says why. `stale` is how long the
    /// gateway has been cut off when its routes are stale ([`Freshness::stale_for`]).
    pub(crate) fn health(&self, generation: u64, stale: Option<Duration>) -> (bool, String) {
        if let (RouteStatus::Disconnected { reason, .. }, Some(cut_off)) = (self, stale) {
            return (
                false,
                format!(
                    "degraded: {} ({reason}); every proxied request gets 503 until ZooKeeper is back (generation {generation})\n",
                    stale_reason(cut_off).trim_end()
                ),
            );
        }
        match self {
            RouteStatus::Live => (true, "ok\n".to_owned()),
            RouteStatus::Starting { reason } => (
                false,
                format!("degraded: route cache not started ({reason}); nothing is routed\n"),
            ),
            RouteStatus::Disconnected { since, reason } => (
                false,
                format!(
                    "degraded: route cache disconnected for {:.1} s ({reason}); serving the last good routes (generation {generation})\n",
                    since.elapsed().as_secs_f64()
                ),
            ),
        }
    }
}

/// The body of the 503 every proxied request gets while the routes are stale.
pub(crate) fn stale_reason(cut_off: Duration) -> String {
    format!(
        "routes stale: cut off from ZooKeeper for {}s\n",
        cut_off.as_secs()
    )
}

/// Whether the routes in use are stale: one atomic, read once per request.
#[derive(Debug)]
pub(crate) struct Freshness {
    epoch: Instant,
    /// 0: fresh; else 1 + milliseconds from `epoch` to when the gateway was cut off.
    cut_off_at: AtomicU64,
}

impl Default for Freshness {
    fn default() -> Self {
        Freshness {
            epoch: Instant::now(),
            cut_off_at: AtomicU64::new(0),
        }
    }
}

impl Freshness {
    /// `Some(how long the gateway has been cut off)` while the routes are stale.
    pub(crate) fn stale_for(&self) -> Option<Duration> {
        match self.cut_off_at.load(Relaxed) {
            0 => None,
            at => Some(
                self.epoch
                    .elapsed()
                    .saturating_sub(Duration::from_millis(at - 1)),
            ),
        }
    }

    fn mark_stale(&self, cut_off: Instant) {
        let ms = cut_off.saturating_duration_since(self.epoch).as_millis();
        self.cut_off_at
            .store(u64::try_from(ms).unwrap_or(u64::MAX - 1) + 1, Relaxed);
    }

    /// Fresh again; whether they were stale.
    fn mark_fresh(&self) -> bool {
        self.cut_off_at.swap(0, Relaxed) != 0
    }
}

/// Follows the route status: routes go stale `max` after the source was cut off (if it still
/// is), and fresh once it is live again (connected, the tree read again). Ends at `stop` or when
/// the status sender goes (the routes stay as they are then).
pub(crate) async fn follow_staleness(
    mut status: watch::Receiver<RouteStatus>,
    max: Duration,
    fresh: Arc<Freshness>,
    stop: CancellationToken,
) {
    loop {
        let current = status.borrow_and_update().clone();
        match current {
            RouteStatus::Disconnected { since, .. } => {
                let at = tokio::time::Instant::from_std(since.checked_add(max).unwrap_or(since));
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep_until(at) => {
                        tracing::warn!(
                            cut_off_s = since.elapsed().as_secs(),
                            "routes stale: cut off from ZooKeeper for longer than the staleness period; answering 503"
                        );
                        fresh.mark_stale(since);
                    }
                    changed = status.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        continue;
                    }
                }
            }
            RouteStatus::Live | RouteStatus::Starting { .. } => {
                if fresh.mark_fresh() {
                    tracing::info!("routes fresh again: ZooKeeper is back and the tree re-read");
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = status.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_routes_are_unhealthy_with_the_time_cut_off() {
        let since = Instant::now();
        let s = RouteStatus::Disconnected {
            since,
            reason: "no ZooKeeper session".into(),
        };
        let (ok, text) = s.health(4, Some(Duration::from_secs(601)));
        assert!(!ok);
        assert!(
            text.starts_with(
                "degraded: routes stale: cut off from ZooKeeper for 601s (no ZooKeeper session)"
            ),
            "{text}"
        );
        let f = Freshness::default();
        assert_eq!(f.stale_for(), None);
        f.mark_stale(since);
        assert!(f.stale_for().is_some());
        assert!(f.mark_fresh());
        assert!(!f.mark_fresh());
        assert_eq!(f.stale_for(), None);
        assert_eq!(RouteStatus::Live.age(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn routes_go_stale_after_the_period_and_fresh_when_live() {
        let (tx, rx) = watch::channel(RouteStatus::Live);
        let fresh = Arc::new(Freshness::default());
        let stop = CancellationToken::new();
        let task = tokio::spawn(follow_staleness(
            rx,
            Duration::from_secs(600),
            Arc::clone(&fresh),
            stop.clone(),
        ));
        tx.send_replace(RouteStatus::Disconnected {
            since: Instant::now(),
            reason: "cut".into(),
        });
        tokio::time::sleep(Duration::from_secs(599)).await;
        assert_eq!(fresh.stale_for(), None, "inside the period");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(fresh.stale_for().is_some(), "past the period");
        tx.send_replace(RouteStatus::Live);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(fresh.stale_for(), None, "live again");
        // A short cut that heals inside the period never makes them stale.
        tx.send_replace(RouteStatus::Disconnected {
            since: Instant::now(),
            reason: "cut".into(),
        });
        tokio::time::sleep(Duration::from_secs(10)).await;
        tx.send_replace(RouteStatus::Live);
        tokio::time::sleep(Duration::from_secs(1000)).await;
        assert_eq!(fresh.stale_for(), None);
        stop.cancel();
        let _ = task.await;
    }

    #[test]
    fn only_live_is_healthy_and_the_reason_is_shown() {
        assert_eq!(RouteStatus::Live.health(3, None), (true, "ok\n".to_owned()));
        let (ok, text) = RouteStatus::Disconnected {
            since: Instant::now(),
            reason: "zookeeper session lost".into(),
        }
        .health(7, None);
        assert!(!ok);
        assert!(text.contains("zookeeper session lost"), "{text}");
        assert!(text.contains("generation 7"), "{text}");
        let (ok, text) = RouteStatus::Starting {
            reason: "connection refused".into(),
        }
        .health(0, None);
        assert!(!ok);
        assert!(text.contains("not started"), "{text}");
    }
}
