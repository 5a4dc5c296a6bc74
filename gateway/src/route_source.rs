//! Where the routes come from, as `/healthz` reports it: a live route cache, one that has not
//! answered yet, or one that lost ZooKeeper and serves its last good copy.

use std::time::Instant;

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
    /// `/healthz`'s answer: healthy or not, and one line that says why.
    pub(crate) fn health(&self, generation: u64) -> (bool, String) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_live_is_healthy_and_the_reason_is_shown() {
        assert_eq!(RouteStatus::Live.health(3), (true, "ok\n".to_owned()));
        let (ok, text) = RouteStatus::Disconnected {
            since: Instant::now(),
            reason: "zookeeper session lost".into(),
        }
        .health(7);
        assert!(!ok);
        assert!(text.contains("zookeeper session lost"), "{text}");
        assert!(text.contains("generation 7"), "{text}");
        let (ok, text) = RouteStatus::Starting {
            reason: "connection refused".into(),
        }
        .health(0);
        assert!(!ok);
        assert!(text.contains("not started"), "{text}");
    }
}
