//! What a gateway tells the scheduler: `POST /v1/gateway/demand`, authenticated by the gateway
//! token (`CAAS_GATEWAY_TOKEN`), which opens that endpoint only.
//!
//! A report carries each app's demand (held and in-flight requests, for the autoscaler) and,
//! from gateways that count it, the app's traffic since the gateway's last accepted report that
//! carried it ([`AppTraffic`]), for the traffic statistics. Both traffic fields are optional, so
//! a report of an older gateway still parses.

use crate::{AppId, GatewayName};
use serde::{Deserialize, Serialize};

/// Most apps in one demand report.
pub const MAX_DEMAND_APPS: usize = 10_000;

/// Upper bounds of the gateways' latency histogram (time to response headers), in seconds. A
/// report's [`TrafficCounts::latency`] has one more slot, for everything slower (+Inf).
pub const LATENCY_BUCKETS_S: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Slots of a latency histogram: one per bound of [`LATENCY_BUCKETS_S`], then +Inf.
pub const LATENCY_SLOTS: usize = LATENCY_BUCKETS_S.len() + 1;

/// `POST /v1/gateway/demand`: one gateway's demand per app, now. It replaces what the same
/// gateway reported before for each app it names; the scheduler adds up the reports of every
/// gateway that reported lately.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DemandReport {
    /// The reporting gateway (`[a-z0-9-]`, 1 to 63 characters), distinct per gateway.
    pub gateway: GatewayName,
    /// The gateway process: a random number drawn at its start (below 2^53, so JSON readers
    /// that use doubles keep it exact). Counts of a new boot start from zero. Required when an
    /// app carries `traffic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<u64>,
    /// This report's number within its boot, larger than every earlier report's (accepted or
    /// not). Required when an app carries `traffic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Per app (at most [`MAX_DEMAND_APPS`]); apps the scheduler does not know are ignored.
    pub apps: Vec<AppDemand>,
}

/// One app's demand as one gateway sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AppDemand {
    /// The app.
    pub app: AppId,
    /// Requests the gateway holds because the app has no instance (it sleeps).
    pub held: u32,
    /// Requests the gateway has sent to the app's instances and not yet answered.
    pub in_flight: u32,
    /// What the gateway counted of the app's traffic since the report `since` (absent: no
    /// traffic counted since then, or a gateway that does not count it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<AppTraffic>,
}

/// One app's traffic at one gateway since the gateway's last accepted report that carried it.
///
/// The gateway keeps, per app, the counters as of its last report that the scheduler accepted
/// (2xx) and sends what was counted since, naming that report (`since`). A report whose answer
/// is lost is sent again, as part of the next one, with the same `since` and larger counts: the
/// scheduler keeps one sample per (gateway, boot, app, since), the larger, so nothing is
/// counted twice and nothing counted is lost while the gateway lives.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AppTraffic {
    /// The `seq` of the gateway's last accepted report that carried this app's traffic; 0: none
    /// since the gateway started. Below this report's `seq`.
    pub since: u64,
    /// What was counted since then.
    pub counts: TrafficCounts,
}

/// Traffic counters of one app: answers by status class, body bytes and a latency histogram.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TrafficCounts {
    /// Answers by status class: 1xx, 2xx, 3xx, 4xx, 5xx.
    pub status: [u64; 5],
    /// Request body bytes received from clients.
    pub bytes_in: u64,
    /// Response body bytes sent to clients.
    pub bytes_out: u64,
    /// Answers by time to response headers: one count per bound of [`LATENCY_BUCKETS_S`] (the
    /// answers slower than the bound before and at most this one), then the slower ones.
    pub latency: [u64; LATENCY_SLOTS],
    /// The sum of those times, in microseconds.
    pub latency_sum_us: u64,
}

impl TrafficCounts {
    /// Answers counted (all status classes).
    pub fn requests(&self) -> u64 {
        self.status.iter().fold(0, |a, n| a.saturating_add(*n))
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        *self == TrafficCounts::default()
    }

    /// `self + other`, counter by counter (saturating).
    pub fn plus(&self, other: &TrafficCounts) -> TrafficCounts {
        self.zip(other, u64::saturating_add)
    }

    /// `self - earlier`, counter by counter (0 where `earlier` is larger).
    pub fn minus(&self, earlier: &TrafficCounts) -> TrafficCounts {
        self.zip(earlier, u64::saturating_sub)
    }

    fn zip(&self, o: &TrafficCounts, f: impl Fn(u64, u64) -> u64) -> TrafficCounts {
        TrafficCounts {
            status: std::array::from_fn(|i| f(self.status[i], o.status[i])),
            bytes_in: f(self.bytes_in, o.bytes_in),
            bytes_out: f(self.bytes_out, o.bytes_out),
            latency: std::array::from_fn(|i| f(self.latency[i], o.latency[i])),
            latency_sum_us: f(self.latency_sum_us, o.latency_sum_us),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_from_the_contract_parses_and_bad_ones_do_not() {
        let r: DemandReport = serde_json::from_str(
            r#"{"gateway":"gw-1","apps":[{"app":"hello","held":3,"in_flight":7}]}"#,
        )
        .expect("valid");
        assert_eq!(r.gateway.as_str(), "gw-1");
        assert_eq!((r.apps[0].held, r.apps[0].in_flight), (3, 7));
        assert_eq!((r.boot, r.seq, &r.apps[0].traffic), (None, None, &None));
        for bad in [
            r#"{"gateway":"","apps":[]}"#,
            r#"{"gateway":"GW","apps":[]}"#,
            r#"{"gateway":"gw_1","apps":[]}"#,
            r#"{"apps":[]}"#,
            r#"{"gateway":"gw","apps":[{"app":"hello","held":-1,"in_flight":0}]}"#,
            r#"{"gateway":"gw","apps":[{"app":"hello","held":4294967296,"in_flight":0}]}"#,
            r#"{"gateway":"gw","apps":[{"app":"hello","held":1}]}"#,
            r#"{"gateway":"gw","apps":[],"extra":1}"#,
            r#"{"gateway":"gw","boot":-1,"apps":[]}"#,
            r#"{"gateway":"gw","boot":"1","apps":[]}"#,
        ] {
            assert!(serde_json::from_str::<DemandReport>(bad).is_err(), "{bad}");
        }
        let long = format!(r#"{{"gateway":"{}","apps":[]}}"#, "g".repeat(64));
        assert!(serde_json::from_str::<DemandReport>(&long).is_err());
        let edge = format!(r#"{{"gateway":"{}","apps":[]}}"#, "-".repeat(63));
        assert!(serde_json::from_str::<DemandReport>(&edge).is_ok());
    }

    const COUNTS: &str = r#"{"status":[0,120,0,5,0],"bytes_in":0,"bytes_out":12345,
        "latency":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15],"latency_sum_us":99}"#;

    #[test]
    fn a_report_with_traffic_parses_and_bad_traffic_does_not() {
        let good = format!(
            r#"{{"gateway":"gw-1","boot":77,"seq":9,"apps":[
                {{"app":"hello","held":0,"in_flight":2,"traffic":{{"since":4,"counts":{COUNTS}}}}}]}}"#
        );
        let r: DemandReport = serde_json::from_str(&good).expect("valid");
        assert_eq!((r.boot, r.seq), (Some(77), Some(9)));
        let t = r.apps[0].traffic.as_ref().expect("traffic");
        assert_eq!(t.since, 4);
        assert_eq!(t.counts.requests(), 125);
        assert_eq!(t.counts.latency[14], 15);
        // What is sent is what is read back.
        let again: DemandReport =
            serde_json::from_str(&serde_json::to_string(&r).expect("serializes")).expect("valid");
        assert_eq!(again, r);

        let with = |traffic: &str| {
            format!(
                r#"{{"gateway":"gw","boot":1,"seq":2,"apps":[{{"app":"a","held":0,"in_flight":0,"traffic":{traffic}}}]}}"#
            )
        };
        for bad in [
            // Too few or too many latency slots, a negative count, an unknown field.
            with(
                r#"{"since":0,"counts":{"status":[0,0,0,0,0],"bytes_in":0,"bytes_out":0,"latency":[0,0,0,0,0,0,0,0,0,0,0,0,0,0],"latency_sum_us":0}}"#,
            ),
            with(
                r#"{"since":0,"counts":{"status":[0,0,0,0,0],"bytes_in":0,"bytes_out":0,"latency":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"latency_sum_us":0}}"#,
            ),
            with(
                r#"{"since":0,"counts":{"status":[0,0,0,0],"bytes_in":0,"bytes_out":0,"latency":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"latency_sum_us":0}}"#,
            ),
            with(
                r#"{"since":0,"counts":{"status":[0,0,0,0,-1],"bytes_in":0,"bytes_out":0,"latency":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"latency_sum_us":0}}"#,
            ),
            with(&format!(r#"{{"since":0,"counts":{COUNTS},"extra":1}}"#)),
            with(r#"{"since":0}"#),
            with(&format!(r#"{{"counts":{COUNTS}}}"#)),
        ] {
            assert!(serde_json::from_str::<DemandReport>(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn counts_add_and_subtract_counter_by_counter() {
        let a: TrafficCounts = serde_json::from_str(COUNTS).expect("valid");
        assert_eq!(a.plus(&a).minus(&a), a);
        assert!(a.minus(&a).is_empty());
        assert!(
            TrafficCounts::default().minus(&a).is_empty(),
            "never below 0"
        );
        assert_eq!(a.plus(&a).bytes_out, 24690);
        assert_eq!(a.plus(&a).latency[0], 2);
    }
}
