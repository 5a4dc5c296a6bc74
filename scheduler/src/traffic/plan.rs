//! The traffic statistics' arithmetic, with no I/O: the query's bounds, the steps of a time
//! series, and from the gateways' counts to what the API shows (requests per second, status
//! classes, percentiles, bytes).
//!
//! Each stored sample is what one gateway counted of one app between two of its accepted
//! reports (`app_traffic`), stamped with the time the scheduler took the report. So a series
//! is plain addition: the samples of every gateway are added up per step by their time, and a
//! gateway that restarted simply has samples under a new boot. No counter is ever subtracted
//! here: the gateway sends differences, and a resent report replaces its first copy on
//! insert, so a restart, a lost answer or a second gateway cannot make a count go wrong.
//!
//! Percentiles come from the latency histogram of the step (or window): the bucket where the
//! rank falls, and linear interpolation within it, as Prometheus' `histogram_quantile` does; a
//! rank in the last (+Inf) bucket answers the largest bound.

use caas_types::api::{
    AppTrafficSeries, AppTrafficTotal, TrafficCounts, TrafficOverview, TrafficPoint, TrafficStats,
    LATENCY_BUCKETS_S, LATENCY_SLOTS,
};
use caas_types::{AppId, Timestamp};
use std::collections::HashMap;

/// The shortest window, seconds.
pub const MIN_WINDOW_S: u32 = 60;
/// The longest window, seconds.
pub const MAX_WINDOW_S: u32 = 3600;
/// The shortest step, seconds.
pub const MIN_STEP_S: u32 = 1;
/// The longest step, seconds.
pub const MAX_STEP_S: u32 = 300;
/// The most points one series may have.
pub const MAX_POINTS: u32 = 3600;
/// A series' window when none is asked for.
pub const DEFAULT_WINDOW_S: u32 = 900;
/// The points of a series whose step is not asked for (its step: the window divided by this,
/// rounded up to a second).
pub const DEFAULT_POINTS: u32 = 60;
/// The overview's window when none is asked for.
pub const DEFAULT_OVERVIEW_WINDOW_S: u32 = 60;
/// How long samples are kept, milliseconds: the longest window plus the longest step (the
/// first step of a series may start that long ago).
pub const KEEP_MS: i64 = (MAX_WINDOW_S as i64 + MAX_STEP_S as i64) * 1000;

/// `?window=15m&step=10s` of `GET /v1/apps/{app}/traffic`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesQuery {
    /// Seconds of traffic to show.
    pub window_s: u32,
    /// Seconds per point.
    pub step_s: u32,
}

/// `?window=1m` of `GET /v1/traffic`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverviewQuery {
    /// Seconds of traffic to add up.
    pub window_s: u32,
}

/// The raw query's parameters, each once and each one of `allowed`.
fn params<'a>(raw: Option<&'a str>, allowed: &[&str]) -> Result<Vec<(&'a str, &'a str)>, String> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !allowed.contains(&key) {
            return Err(format!(
                "unknown query parameter {key:?} ({})",
                allowed.join(", ")
            ));
        }
        if out.iter().any(|(k, _)| *k == key) {
            return Err(format!("query parameter {key:?} given twice"));
        }
        out.push((key, value));
    }
    Ok(out)
}

/// A duration in whole seconds: a number with an optional unit, `s`, `m` or `h` (`90`, `90s`,
/// `15m`, `1h`).
pub fn parse_duration(what: &str, s: &str) -> Result<u32, String> {
    let bad = || format!("{what}: expected a duration such as 30s, 15m or 1h, not {s:?}");
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, "s"),
    };
    if digits.is_empty() || digits.len() > 9 {
        return Err(bad());
    }
    let n: u32 = digits.parse().map_err(|_| bad())?;
    let per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(bad()),
    };
    n.checked_mul(per).ok_or_else(bad)
}

/// Seconds as the shortest of `1h`, `15m`, `90s`.
pub fn show_duration(s: u32) -> String {
    if s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else if s % 60 == 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

fn check_window(window_s: u32) -> Result<u32, String> {
    if !(MIN_WINDOW_S..=MAX_WINDOW_S).contains(&window_s) {
        return Err(format!(
            "window: from {} to {}, not {}",
            show_duration(MIN_WINDOW_S),
            show_duration(MAX_WINDOW_S),
            show_duration(window_s)
        ));
    }
    Ok(window_s)
}

impl SeriesQuery {
    /// Parses a raw query string strictly (without `?`; `None` or empty: the defaults): an
    /// unknown or repeated parameter, a bad duration, a window outside 1m..1h, a step outside
    /// 1s..5m or longer than the window, or more than [`MAX_POINTS`] points is refused.
    pub fn parse(raw: Option<&str>) -> Result<SeriesQuery, String> {
        let (mut window, mut step) = (None, None);
        for (key, value) in params(raw, &["window", "step"])? {
            match key {
                "window" => window = Some(parse_duration("window", value)?),
                _ => step = Some(parse_duration("step", value)?),
            }
        }
        let window_s = check_window(window.unwrap_or(DEFAULT_WINDOW_S))?;
        let step_s = step.unwrap_or_else(|| window_s.div_ceil(DEFAULT_POINTS).max(MIN_STEP_S));
        if !(MIN_STEP_S..=MAX_STEP_S).contains(&step_s) {
            return Err(format!(
                "step: from {} to {}, not {}",
                show_duration(MIN_STEP_S),
                show_duration(MAX_STEP_S),
                show_duration(step_s)
            ));
        }
        if step_s > window_s {
            return Err(format!(
                "step: at most the window ({}), not {}",
                show_duration(window_s),
                show_duration(step_s)
            ));
        }
        let q = SeriesQuery { window_s, step_s };
        if q.points() > MAX_POINTS {
            return Err(format!(
                "window ÷ step: at most {MAX_POINTS} points, not {}",
                q.points()
            ));
        }
        Ok(q)
    }

    /// Points of the series: the window in steps, rounded up.
    pub fn points(&self) -> u32 {
        self.window_s.div_ceil(self.step_s.max(1))
    }
}

impl OverviewQuery {
    /// Parses a raw query string strictly: `window` only, 1m..1h (default 1m).
    pub fn parse(raw: Option<&str>) -> Result<OverviewQuery, String> {
        let mut window = None;
        for (_, value) in params(raw, &["window"])? {
            window = Some(parse_duration("window", value)?);
        }
        Ok(OverviewQuery {
            window_s: check_window(window.unwrap_or(DEFAULT_OVERVIEW_WINDOW_S))?,
        })
    }
}

/// The steps of a series: `points` steps of `step_ms`, aligned to multiples of the step since
/// the Unix epoch, the last one the step under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Where the first step starts, milliseconds since the Unix epoch.
    pub start_ms: i64,
    /// One step, milliseconds.
    pub step_ms: i64,
    /// How many steps.
    pub points: usize,
}

impl Span {
    /// The steps of `q` ending with the one that holds `now_ms`.
    pub fn ending_at(now_ms: i64, q: SeriesQuery) -> Span {
        let step_ms = i64::from(q.step_s.max(1)) * 1000;
        let points = q.points().max(1);
        let current = now_ms.div_euclid(step_ms) * step_ms;
        Span {
            start_ms: current - i64::from(points - 1) * step_ms,
            step_ms,
            points: points as usize,
        }
    }

    /// Where the last step ends.
    pub fn end_ms(&self) -> i64 {
        self.start_ms + self.step_ms * self.points as i64
    }
}

/// The samples (time, counts) added up per step of `span`; samples outside it count for
/// nothing.
pub fn steps(span: &Span, samples: &[(i64, TrafficCounts)]) -> Vec<TrafficCounts> {
    let mut out = vec![TrafficCounts::default(); span.points];
    for (at, counts) in samples {
        if *at < span.start_ms || *at >= span.end_ms() {
            continue;
        }
        let i = ((at - span.start_ms) / span.step_ms) as usize;
        if let Some(slot) = out.get_mut(i) {
            *slot = slot.plus(counts);
        }
    }
    out
}

/// The `q` quantile (0 to 1) of a latency histogram, milliseconds (to the microsecond);
/// `None` when it is empty.
pub fn percentile_ms(latency: &[u64; LATENCY_SLOTS], q: f64) -> Option<f64> {
    let total: u64 = latency.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut below = 0u64;
    for (i, n) in latency.iter().enumerate() {
        let upto = below + n;
        if *n > 0 && upto as f64 >= rank {
            let Some(upper) = LATENCY_BUCKETS_S.get(i) else {
                // Past the last bound: all that is known is "more than" it.
                break;
            };
            let lower = if i == 0 {
                0.0
            } else {
                LATENCY_BUCKETS_S[i - 1]
            };
            let within = ((rank - below as f64) / *n as f64).clamp(0.0, 1.0);
            let secs = lower + (upper - lower) * within;
            return Some(round(secs * 1000.0, 3));
        }
        below = upto;
    }
    LATENCY_BUCKETS_S.last().map(|s| round(s * 1000.0, 3))
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

/// What the API shows of `c` counted over `seconds`.
pub fn stats(c: &TrafficCounts, seconds: f64) -> TrafficStats {
    let requests = c.requests();
    TrafficStats {
        requests,
        rps: if seconds > 0.0 {
            round(requests as f64 / seconds, 3)
        } else {
            0.0
        },
        status: c.status.into(),
        p50_ms: percentile_ms(&c.latency, 0.50),
        p99_ms: percentile_ms(&c.latency, 0.99),
        bytes_in: c.bytes_in,
        bytes_out: c.bytes_out,
    }
}

/// RFC 3339 in UTC to the second: `2026-12-03T15:00:00Z`.
pub fn rfc3339_seconds(ms: i64) -> String {
    let full = Timestamp::from_nanos(ms.saturating_mul(1_000_000)).to_string();
    match full.split_once('.') {
        Some((secs, _)) => format!("{secs}Z"),
        None => full,
    }
}

/// `app`'s series over `span` from its samples.
pub fn series(
    app: AppId,
    q: SeriesQuery,
    span: &Span,
    samples: &[(i64, TrafficCounts)],
) -> AppTrafficSeries {
    let per_step = steps(span, samples);
    let step_s = span.step_ms as f64 / 1000.0;
    let total = per_step
        .iter()
        .fold(TrafficCounts::default(), |a, c| a.plus(c));
    let points = per_step
        .iter()
        .enumerate()
        .map(|(i, c)| TrafficPoint {
            t: rfc3339_seconds(span.start_ms + span.step_ms * i as i64),
            stats: stats(c, step_s),
        })
        .collect();
    AppTrafficSeries {
        app,
        window_s: q.window_s,
        step_s: q.step_s,
        points,
        total: stats(&total, step_s * span.points as f64),
    }
}

/// Every app of `apps` with its traffic over the window (none: zeros), the most requests
/// first, then by id.
pub fn overview(
    q: OverviewQuery,
    apps: Vec<AppId>,
    totals: &HashMap<AppId, TrafficCounts>,
) -> TrafficOverview {
    let mut lines: Vec<AppTrafficTotal> = apps
        .into_iter()
        .map(|app| {
            let c = totals.get(&app).copied().unwrap_or_default();
            AppTrafficTotal {
                stats: stats(&c, f64::from(q.window_s)),
                app,
            }
        })
        .collect();
    lines.sort_by(|a, b| {
        b.stats
            .requests
            .cmp(&a.stats.requests)
            .then_with(|| a.app.cmp(&b.app))
    });
    TrafficOverview {
        window_s: q.window_s,
        apps: lines,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn counts(status: [u64; 5], latency: &[(usize, u64)], bytes_out: u64) -> TrafficCounts {
        let mut c = TrafficCounts {
            status,
            bytes_out,
            ..TrafficCounts::default()
        };
        for (slot, n) in latency {
            c.latency[*slot] = *n;
        }
        c
    }

    #[test]
    fn queries_are_parsed_strictly_within_their_bounds() {
        let q = |raw: &str| SeriesQuery::parse(Some(raw));
        assert_eq!(
            q("window=15m&step=10s"),
            Ok(SeriesQuery {
                window_s: 900,
                step_s: 10
            })
        );
        assert_eq!(
            SeriesQuery::parse(None),
            Ok(SeriesQuery {
                window_s: 900,
                step_s: 15
            }),
            "15m in 60 points by default"
        );
        assert_eq!(q("window=1h&step=1").unwrap().points(), 3600);
        assert_eq!(q("window=90&step=1m").unwrap().points(), 2, "rounded up");
        assert_eq!(q("window=1m").unwrap().step_s, 1);
        for (bad, says) in [
            ("window=59s", "window: from 1m to 1h, not 59s"),
            ("window=61m", "window: from 1m to 1h"),
            ("window=0", "window: from 1m"),
            ("step=0s", "step: from 1s to 5m"),
            ("step=6m&window=1h", "step: from 1s to 5m, not 6m"),
            ("window=2m&step=3m", "step: at most the window (2m)"),
            ("window=15", "window: from 1m to 1h, not 15s"),
            ("window=15x", "window: expected a duration"),
            ("window=", "window: expected a duration"),
            ("window=-1m", "window: expected a duration"),
            ("window=99999999999", "window: expected a duration"),
            ("window=4294967295h", "window: expected a duration"),
            ("window=1m&window=2m", "given twice"),
            ("tail=5", "unknown query parameter \"tail\" (window, step)"),
        ] {
            let e = q(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        assert_eq!(
            OverviewQuery::parse(None),
            Ok(OverviewQuery { window_s: 60 })
        );
        assert_eq!(
            OverviewQuery::parse(Some("window=5m")),
            Ok(OverviewQuery { window_s: 300 })
        );
        assert!(OverviewQuery::parse(Some("step=1s")).is_err());
        assert!(OverviewQuery::parse(Some("window=2h")).is_err());
    }

    #[test]
    fn a_span_ends_with_the_step_under_way_aligned_to_the_step() {
        let q = SeriesQuery {
            window_s: 60,
            step_s: 10,
        };
        let s = Span::ending_at(1_000_123_456, q);
        assert_eq!(s.points, 6);
        assert_eq!(s.step_ms, 10_000);
        assert_eq!(s.end_ms(), 1_000_130_000, "the step holding now ends it");
        assert_eq!(s.start_ms, 1_000_070_000);
        assert!(s.start_ms >= 1_000_123_456 - i64::from(MAX_WINDOW_S + MAX_STEP_S) * 1000);
    }

    #[test]
    fn samples_of_several_gateways_and_boots_add_up_per_step() {
        let span = Span {
            start_ms: 10_000,
            step_ms: 1000,
            points: 3,
        };
        let ok = |n| counts([0, n, 0, 0, 0], &[(2, n)], 10 * n);
        let samples = vec![
            (9_999, ok(100)), // before the span
            (10_000, ok(1)),  // gateway a
            (10_500, ok(2)),  // gateway b
            (10_999, ok(4)),  // gateway a after a restart (a new boot)
            (12_999, ok(8)),
            (13_000, ok(100)), // after the span
        ];
        let per = steps(&span, &samples);
        assert_eq!(per.len(), 3);
        assert_eq!(per[0].requests(), 7);
        assert_eq!(per[0].bytes_out, 70);
        assert_eq!(per[0].latency[2], 7);
        assert!(per[1].is_empty(), "a step without samples is zeros");
        assert_eq!(per[2].requests(), 8);

        let q = SeriesQuery {
            window_s: 3,
            step_s: 1,
        };
        let s = series("hello".parse().unwrap(), q, &span, &samples);
        assert_eq!(s.points.len(), 3);
        assert_eq!(s.points[0].t, "1970-01-01T00:00:10Z");
        assert_eq!(s.points[2].t, "1970-01-01T00:00:12Z");
        assert_eq!(s.points[0].stats.rps, 7.0);
        assert_eq!(s.points[1].stats.p50_ms, None, "no requests, no percentile");
        assert_eq!(s.total.requests, 15);
        assert_eq!(s.total.status.success, 15);
        assert_eq!(s.total.rps, 5.0, "15 requests over 3 s");
        assert_eq!(s.total.bytes_out, 150);
    }

    #[test]
    fn percentiles_interpolate_within_the_bucket_where_the_rank_falls() {
        let mut h = [0u64; LATENCY_SLOTS];
        assert_eq!(percentile_ms(&h, 0.5), None);
        // 100 answers in (1 ms, 2.5 ms]: the median halfway through it, p99 near its top.
        h[2] = 100;
        assert_eq!(percentile_ms(&h, 0.5), Some(1.75));
        assert_eq!(percentile_ms(&h, 0.99), Some(2.485));
        // 90 in [0, 0.5 ms] and 10 in (50 ms, 100 ms]: p50 in the first bucket (from 0),
        // p99 in the last tenth's bucket.
        let mut h = [0u64; LATENCY_SLOTS];
        h[0] = 90;
        h[7] = 10;
        assert_eq!(percentile_ms(&h, 0.5), Some(0.278));
        assert_eq!(percentile_ms(&h, 0.99), Some(95.0));
        // Past the last bound: the last bound.
        let mut h = [0u64; LATENCY_SLOTS];
        h[14] = 3;
        assert_eq!(percentile_ms(&h, 0.5), Some(10_000.0));
        // Empty buckets before the rank are skipped.
        let mut h = [0u64; LATENCY_SLOTS];
        h[5] = 1;
        assert_eq!(percentile_ms(&h, 0.5), Some(17.5));
        assert!(percentile_ms(&h, 0.99).unwrap() <= 25.0);
    }

    #[test]
    fn the_overview_lists_every_app_busiest_first() {
        let app = |s: &str| -> AppId { s.parse().unwrap() };
        let mut totals = HashMap::new();
        totals.insert(app("b"), counts([0, 50, 0, 10, 0], &[(1, 60)], 600));
        totals.insert(app("c"), counts([0, 60, 0, 0, 0], &[(1, 60)], 600));
        totals.insert(app("other-tenants"), counts([0, 999, 0, 0, 0], &[], 0));
        let o = overview(
            OverviewQuery { window_s: 60 },
            vec![app("a"), app("b"), app("c")],
            &totals,
        );
        let order: Vec<(&str, u64)> = o
            .apps
            .iter()
            .map(|l| (l.app.as_str(), l.stats.requests))
            .collect();
        assert_eq!(order, vec![("b", 60), ("c", 60), ("a", 0)]);
        assert_eq!(o.apps[0].stats.status.client_error, 10);
        assert_eq!(o.apps[0].stats.rps, 1.0);
        assert_eq!(o.apps[2].stats.p99_ms, None);
    }

    #[test]
    fn durations_show_in_their_largest_whole_unit() {
        assert_eq!(show_duration(3600), "1h");
        assert_eq!(show_duration(900), "15m");
        assert_eq!(show_duration(90), "90s");
        assert_eq!(parse_duration("w", "90"), Ok(90));
    }
}
