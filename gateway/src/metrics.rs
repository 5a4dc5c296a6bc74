//! Traffic statistics: per-app counters and a latency histogram made of plain atomics, so the
//! request path never takes a lock; rendered in the Prometheus text format on scrape.

use caas_types::api::{TrafficCounts, LATENCY_BUCKETS_S};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds of the latency histogram buckets, in seconds: the ones demand reports carry
/// (the scheduler's percentiles read them).
const BUCKETS: [f64; 14] = LATENCY_BUCKETS_S;

/// One app's counters. The routing table holds an `Arc` to it, so recording is atomics only.
#[derive(Debug, Default)]
pub struct AppStats {
    /// Responses by status class: index 0 is 1xx … 4 is 5xx.
    status: [AtomicU64; 5],
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    upstream_errors: AtomicU64,
    /// Responses cut off because the backend stalled mid-body past the body timeout.
    body_timeouts: AtomicU64,
    /// Cumulative-on-render bucket counts; the last slot is +Inf.
    latency: [AtomicU64; BUCKETS.len() + 1],
    latency_sum_us: AtomicU64,
    /// Requests being proxied to the app right now.
    in_flight: AtomicU64,
    /// The most requests in flight at once since the demand reporter last looked (what it
    /// reports as `in_flight`), so a request that came and went between two reports counts.
    peak: AtomicU64,
}

/// Counts one request as in flight for its app until dropped.
#[derive(Debug)]
pub(crate) struct InFlight<'a>(&'a AppStats);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

impl AppStats {
    /// Counts a request as in flight until the guard is dropped: one atomic add and one
    /// subtract per request, and a load of the peak (written only when this request raises it).
    pub(crate) fn enter(&self) -> InFlight<'_> {
        let now = self.in_flight.fetch_add(1, Relaxed) + 1;
        if self.peak.load(Relaxed) < now {
            self.peak.fetch_max(now, Relaxed);
        }
        InFlight(self)
    }

    /// The most requests in flight at once since the last call (at least those in flight now);
    /// the next call counts from those in flight now.
    fn take_peak(&self) -> u64 {
        let now = self.in_flight.load(Relaxed);
        self.peak.swap(now, Relaxed).max(now)
    }

    /// Records one response's status and time to response headers.
    pub(crate) fn response(&self, status: u16, elapsed: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.status[class].fetch_add(1, Relaxed);
        let secs = elapsed.as_secs_f64();
        let slot = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.latency[slot].fetch_add(1, Relaxed);
        self.latency_sum_us.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Relaxed,
        );
    }

    /// Adds request body bytes received from the client.
    pub(crate) fn bytes_in(&self, n: u64) {
        self.bytes_in.fetch_add(n, Relaxed);
    }

    /// Adds response body bytes sent to the client.
    pub(crate) fn bytes_out(&self, n: u64) {
        self.bytes_out.fetch_add(n, Relaxed);
    }

    /// Counts one failed try at a backend.
    pub(crate) fn upstream_error(&self) {
        self.upstream_errors.fetch_add(1, Relaxed);
    }

    /// Counts one response cut off by the body timeout.
    pub(crate) fn body_timeout(&self) {
        self.body_timeouts.fetch_add(1, Relaxed);
    }

    /// The traffic counters now (each one read once; an answer being recorded meanwhile may
    /// show in one counter before the others, and in all of them by the next read).
    pub(crate) fn counts(&self) -> TrafficCounts {
        TrafficCounts {
            status: std::array::from_fn(|i| self.status[i].load(Relaxed)),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            latency: std::array::from_fn(|i| self.latency[i].load(Relaxed)),
            latency_sum_us: self.latency_sum_us.load(Relaxed),
        }
    }
}

/// Counters that belong to no app.
#[derive(Debug, Default)]
pub(crate) struct GlobalStats {
    pub(crate) unknown_host: AtomicU64,
    pub(crate) blacklisted: AtomicU64,
    pub(crate) no_backend: AtomicU64,
    pub(crate) connections: AtomicU64,
    /// Client connections the HTTP/1.1 fast path handed over to the general (hyper) path.
    pub(crate) handovers: AtomicU64,
    pub(crate) generation: AtomicU64,
    pub(crate) routes: AtomicU64,
    /// Requests held for a sleeping app right now.
    pub(crate) held: AtomicU64,
    /// Held requests released because their app got an address.
    pub(crate) activated: AtomicU64,
    /// Held requests answered 504 after the activation timeout.
    pub(crate) activation_timeouts: AtomicU64,
    /// Requests for a sleeping app refused (503) because its hold queue was full.
    pub(crate) hold_queue_full: AtomicU64,
    /// Requests for a sleeping app answered 503 because it failed to start (held ones
    /// included).
    pub(crate) wake_failed: AtomicU64,
    /// Connections closed at accept: over `--max-connections`.
    pub(crate) refused_global: AtomicU64,
    /// Connections closed at accept: over `--max-connections-per-ip`.
    pub(crate) refused_per_ip: AtomicU64,
    /// Requests answered 503 because the routes were stale.
    pub(crate) stale_refused: AtomicU64,
}

/// Every app's stats, found by name when the routing table is rebuilt (not per request).
#[derive(Debug, Default)]
pub struct Stats {
    apps: Mutex<BTreeMap<String, Arc<AppStats>>>,
    pub(crate) global: GlobalStats,
}

impl Stats {
    /// The stats of `app`, created on first use. Stats outlive the app's routes so counters never
    /// go backwards while an app is briefly unrouted.
    pub(crate) fn app(&self, app: &str) -> Arc<AppStats> {
        let mut apps = self.apps.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(apps.entry(app.to_owned()).or_default())
    }

    /// Every app that had requests in flight since the last call, with the most it had at once
    /// (for the demand reporter); each app's peak starts again from its requests in flight now.
    pub(crate) fn in_flight_peaks(&self) -> Vec<(String, u64)> {
        let apps = self.apps.lock().unwrap_or_else(|e| e.into_inner());
        apps.iter()
            .map(|(app, s)| (app.clone(), s.take_peak()))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Every app's traffic counters since the gateway started (for the demand reporter).
    pub(crate) fn traffic(&self) -> Vec<(String, TrafficCounts)> {
        let apps: Vec<(String, Arc<AppStats>)> = {
            let apps = self.apps.lock().unwrap_or_else(|e| e.into_inner());
            apps.iter()
                .map(|(k, v)| (k.clone(), Arc::clone(v)))
                .collect()
        };
        apps.into_iter().map(|(app, s)| (app, s.counts())).collect()
    }

    /// Renders everything in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let g = &self.global;
        let globals = [
            (
                "caas_gateway_unknown_host_total",
                "counter",
                "requests for a host that routes nowhere",
                &g.unknown_host,
            ),
            (
                "caas_gateway_blacklisted_total",
                "counter",
                "requests refused by the blacklist",
                &g.blacklisted,
            ),
            (
                "caas_gateway_no_backend_total",
                "counter",
                "requests for an app with no usable instance",
                &g.no_backend,
            ),
            (
                "caas_gateway_connections_open",
                "gauge",
                "client connections open",
                &g.connections,
            ),
            (
                "caas_gateway_handovers_total",
                "counter",
                "client connections the HTTP/1.1 fast path handed to the general path (h2c, HTTP/1.0, upgrades, Expect, streamed request bodies)",
                &g.handovers,
            ),
            (
                "caas_gateway_route_generation",
                "gauge",
                "generation of the route snapshot in use",
                &g.generation,
            ),
            (
                "caas_gateway_routes",
                "gauge",
                "apps in the routing table",
                &g.routes,
            ),
            (
                "caas_gateway_held_requests",
                "gauge",
                "requests held for a sleeping app right now",
                &g.held,
            ),
            (
                "caas_gateway_activated_total",
                "counter",
                "held requests released because their app got an address",
                &g.activated,
            ),
            (
                "caas_gateway_activation_timeouts_total",
                "counter",
                "held requests answered 504 after the activation timeout",
                &g.activation_timeouts,
            ),
            (
                "caas_gateway_hold_queue_full_total",
                "counter",
                "requests for a sleeping app refused with 503 because its hold queue was full",
                &g.hold_queue_full,
            ),
            (
                "caas_gateway_wake_failed_total",
                "counter",
                "requests for a sleeping app answered 503 because it failed to start",
                &g.wake_failed,
            ),
            (
                "caas_gateway_stale_refused_total",
                "counter",
                "requests answered 503 because the gateway was cut off from ZooKeeper longer than the staleness period",
                &g.stale_refused,
            ),
        ];
        for (name, kind, help, v) in globals {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                v.load(Relaxed)
            );
        }
        let name = "caas_gateway_connections_refused_total";
        let _ = writeln!(
            out,
            "# HELP {name} client connections closed at accept, by the cap they were over\n# TYPE {name} counter\n{name}{{reason=\"global\"}} {}\n{name}{{reason=\"per_ip\"}} {}",
            g.refused_global.load(Relaxed),
            g.refused_per_ip.load(Relaxed)
        );
        let apps: Vec<(String, Arc<AppStats>)> = {
            let apps = self.apps.lock().unwrap_or_else(|e| e.into_inner());
            apps.iter()
                .map(|(k, v)| (k.clone(), Arc::clone(v)))
                .collect()
        };
        out.push_str("# HELP caas_gateway_requests_total responses sent, by app and status class\n# TYPE caas_gateway_requests_total counter\n");
        for (app, s) in &apps {
            for (i, c) in s.status.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "caas_gateway_requests_total{{app=\"{app}\",class=\"{}xx\"}} {}",
                    i + 1,
                    c.load(Relaxed)
                );
            }
        }
        let per_app = [
            (
                "caas_gateway_request_bytes_total",
                "request body bytes received from clients",
            ),
            (
                "caas_gateway_response_bytes_total",
                "response body bytes sent to clients",
            ),
            (
                "caas_gateway_upstream_errors_total",
                "failed tries at a backend",
            ),
            (
                "caas_gateway_body_timeouts_total",
                "responses cut off because the backend sent no body bytes within the body timeout",
            ),
        ];
        for (idx, (name, help)) in per_app.iter().enumerate() {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (app, s) in &apps {
                let v = match idx {
                    0 => &s.bytes_in,
                    1 => &s.bytes_out,
                    2 => &s.upstream_errors,
                    _ => &s.body_timeouts,
                };
                let _ = writeln!(out, "{name}{{app=\"{app}\"}} {}", v.load(Relaxed));
            }
        }
        let name = "caas_gateway_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} time to response headers\n# TYPE {name} histogram"
        );
        for (app, s) in &apps {
            let mut cumulative = 0;
            for (i, b) in BUCKETS.iter().enumerate() {
                cumulative += s.latency[i].load(Relaxed);
                let _ = writeln!(
                    out,
                    "{name}_bucket{{app=\"{app}\",le=\"{b}\"}} {cumulative}"
                );
            }
            cumulative += s.latency[BUCKETS.len()].load(Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{app=\"{app}\",le=\"+Inf\"}} {cumulative}"
            );
            let sum = s.latency_sum_us.load(Relaxed) as f64 / 1e6;
            let _ = writeln!(
                out,
                "{name}_sum{{app=\"{app}\"}} {sum}\n{name}_count{{app=\"{app}\"}} {cumulative}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let stats = Stats::default();
        let a = stats.app("shop");
        a.response(200, Duration::from_millis(3));
        a.response(503, Duration::from_secs(20));
        a.bytes_out(10);
        stats.global.held.store(2, Relaxed);
        stats.global.wake_failed.store(3, Relaxed);
        let text = stats.render();
        assert!(text.contains("caas_gateway_held_requests 2"), "{text}");
        assert!(
            text.contains("caas_gateway_activation_timeouts_total 0"),
            "{text}"
        );
        assert!(
            text.contains(
                "# TYPE caas_gateway_wake_failed_total counter\ncaas_gateway_wake_failed_total 3"
            ),
            "{text}"
        );
        assert!(
            text.contains("caas_gateway_requests_total{app=\"shop\",class=\"2xx\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("caas_gateway_requests_total{app=\"shop\",class=\"5xx\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "caas_gateway_request_duration_seconds_bucket{app=\"shop\",le=\"0.005\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "caas_gateway_request_duration_seconds_bucket{app=\"shop\",le=\"+Inf\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains("caas_gateway_response_bytes_total{app=\"shop\"} 10"),
            "{text}"
        );
    }

    #[test]
    fn traffic_counters_are_read_per_app() {
        let stats = Stats::default();
        let a = stats.app("shop");
        a.response(200, Duration::from_micros(400));
        a.response(204, Duration::from_millis(3));
        a.response(503, Duration::from_secs(20));
        a.bytes_in(7);
        a.bytes_out(10);
        let _ = stats.app("idle");
        let mut all = stats.traffic();
        all.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(all[0], ("idle".into(), TrafficCounts::default()));
        let c = all[1].1;
        assert_eq!(all[1].0, "shop");
        assert_eq!(c.status, [0, 2, 0, 0, 1]);
        assert_eq!((c.bytes_in, c.bytes_out, c.requests()), (7, 10, 3));
        // 0.4 ms in the first bucket, 3 ms in the 5 ms one, 20 s past the last bound.
        let mut latency = [0; 15];
        (latency[0], latency[3], latency[14]) = (1, 1, 1);
        assert_eq!(c.latency, latency);
        assert_eq!(c.latency_sum_us, 20_003_400);
    }

    #[test]
    fn in_flight_is_reported_as_the_peak_since_the_last_report() {
        let stats = Stats::default();
        let (shop, other) = (stats.app("shop"), stats.app("other"));
        assert!(stats.in_flight_peaks().is_empty(), "nothing yet");

        // Three at once, then all gone before the report: the report still sees three.
        let guards: Vec<_> = (0..3).map(|_| shop.enter()).collect();
        drop(guards);
        let short = other.enter();
        drop(short);
        let mut peaks = stats.in_flight_peaks();
        peaks.sort();
        assert_eq!(peaks, vec![("other".into(), 1), ("shop".into(), 3)]);
        // Reset: with nothing in flight since, nothing to report.
        assert!(stats.in_flight_peaks().is_empty());

        // A long request stays reported while it lasts; the peak restarts from it.
        let long = shop.enter();
        let burst: Vec<_> = (0..4).map(|_| shop.enter()).collect();
        assert_eq!(stats.in_flight_peaks(), vec![("shop".into(), 5)]);
        drop(burst);
        assert_eq!(
            stats.in_flight_peaks(),
            vec![("shop".into(), 5)],
            "still 5 in flight then"
        );
        assert_eq!(stats.in_flight_peaks(), vec![("shop".into(), 1)]);
        let again = shop.enter();
        drop(again);
        assert_eq!(stats.in_flight_peaks(), vec![("shop".into(), 2)]);
        drop(long);
        assert_eq!(
            stats.in_flight_peaks(),
            vec![("shop".into(), 1)],
            "it was in flight since the last report"
        );
        assert!(stats.in_flight_peaks().is_empty(), "demand over");
    }
}
