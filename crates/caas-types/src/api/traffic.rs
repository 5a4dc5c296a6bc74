//! Traffic statistics, as the gateways counted them: `GET /v1/apps/{app}/traffic` (one app's
//! time series) and `GET /v1/traffic` (every app the caller sees, totals over a window, what
//! `caas top` shows).

use crate::AppId;
use serde::{Deserialize, Serialize};

/// Answers by status class.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct StatusClasses {
    /// 1xx answers.
    #[serde(rename = "1xx")]
    pub informational: u64,
    /// 2xx answers.
    #[serde(rename = "2xx")]
    pub success: u64,
    /// 3xx answers.
    #[serde(rename = "3xx")]
    pub redirect: u64,
    /// 4xx answers.
    #[serde(rename = "4xx")]
    pub client_error: u64,
    /// 5xx answers (the gateway's own 502/503/504 included).
    #[serde(rename = "5xx")]
    pub server_error: u64,
}

impl From<[u64; 5]> for StatusClasses {
    fn from(c: [u64; 5]) -> StatusClasses {
        StatusClasses {
            informational: c[0],
            success: c[1],
            redirect: c[2],
            client_error: c[3],
            server_error: c[4],
        }
    }
}

/// The traffic of one span of time (one step, or a whole window).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TrafficStats {
    /// Answers sent (every status class).
    pub requests: u64,
    /// `requests` per second of the span.
    pub rps: f64,
    /// `requests` by status class.
    pub status: StatusClasses,
    /// Median time to response headers, milliseconds, interpolated within the gateways'
    /// histogram bucket; `null` without requests.
    pub p50_ms: Option<f64>,
    /// 99th percentile of the same; `null` without requests.
    pub p99_ms: Option<f64>,
    /// Request body bytes received from clients.
    pub bytes_in: u64,
    /// Response body bytes sent to clients.
    pub bytes_out: u64,
}

/// One step of a time series.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrafficPoint {
    /// Where the step starts (RFC 3339, UTC, whole seconds).
    pub t: String,
    /// The step's traffic.
    #[serde(flatten)]
    pub stats: TrafficStats,
}

/// `GET /v1/apps/{app}/traffic?window=15m&step=10s`: one app's traffic as a time series, the
/// steps ending with the current one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AppTrafficSeries {
    /// The app.
    pub app: AppId,
    /// The window asked for, seconds.
    pub window_s: u32,
    /// The length of one point, seconds.
    pub step_s: u32,
    /// Oldest first, one per step, the last one the step under way.
    pub points: Vec<TrafficPoint>,
    /// The points added up (`rps` over their whole span).
    pub total: TrafficStats,
}

/// One app's line of `GET /v1/traffic`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AppTrafficTotal {
    /// The app.
    pub app: AppId,
    /// Its traffic over the window.
    #[serde(flatten)]
    pub stats: TrafficStats,
}

/// `GET /v1/traffic?window=1m`: every app the caller sees with its traffic over the window,
/// the busiest first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrafficOverview {
    /// The window, seconds.
    pub window_s: u32,
    /// Every app, by requests (most first), then by id.
    pub apps: Vec<AppTrafficTotal>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_reads_as_the_contract_says() {
        let p = TrafficPoint {
            t: "2026-12-03T15:00:00Z".into(),
            stats: TrafficStats {
                requests: 125,
                rps: 12.5,
                status: [0, 120, 0, 5, 0].into(),
                p50_ms: Some(1.2),
                p99_ms: None,
                bytes_in: 0,
                bytes_out: 12345,
            },
        };
        assert_eq!(
            serde_json::to_value(&p).expect("serializes"),
            serde_json::json!({"t": "2026-12-03T15:00:00Z", "rps": 12.5, "requests": 125,
                "status": {"1xx": 0, "2xx": 120, "3xx": 0, "4xx": 5, "5xx": 0},
                "p50_ms": 1.2, "p99_ms": null, "bytes_in": 0, "bytes_out": 12345})
        );
    }
}
