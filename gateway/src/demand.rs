//! Demand reports: the gateway tells the scheduler, over the admin API and with its own bearer
//! token (`CAAS_GATEWAY_TOKEN`, role `gateway`), how many requests it holds for sleeping apps
//! and how many it is proxying, per app, and what it counted of each app's traffic:
//!
//! ```text
//! POST {CAAS_API}/v1/gateway/demand
//! {"gateway": "gw-1234", "boot": 8364, "seq": 12, "apps": [{"app": "hello", "held": 3,
//!  "in_flight": 7, "traffic": {"since": 11, "counts": {"status": [0, 95, 0, 5, 0], ...}}}]}   → 204
//! ```
//!
//! `in_flight` is the most requests in flight at once since the last report, so a short request
//! between two reports still counts as demand. `traffic` is what the app's counters went up by
//! since the last accepted report that carried them ([`crate::traffic::Ledger`]); an app whose
//! counters did not move carries none, and an app with traffic but no demand is named with
//! `held` and `in_flight` 0 (which the autoscaler reads as no demand, as it reads an absent app).
//!
//! A report goes out at once when an app's first request is held ([`Wake::demand`]), then
//! about once a second while any app has held requests, had some in flight or has traffic not
//! yet accepted, and once more with no apps when that has gone (so the scheduler need not wait
//! for this gateway's reports to age out). At shutdown, once the connections are closed, one
//! last report carries the traffic not yet accepted. A failed report is logged and replaced by
//! the next one; nothing on the request path waits for it. A scheduler that refuses a report
//! with traffic (400 or 413: older than this gateway) gets the same report without it at once, and
//! none with traffic for [`crate::traffic::OFF_AFTER_REFUSAL`]. The gateway never links
//! scheduler code: this is plain HTTP.

use crate::config::DemandTarget;
use crate::metrics::Stats;
use crate::traffic::{Carried, Ledger};
use crate::wake::Wake;
use caas_types::api::{AppTraffic, MAX_DEMAND_APPS};
use caas_types::AppId;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Time between two reports while there is demand.
const EVERY: Duration = Duration::from_secs(1);

/// Longest one report may take; a slow scheduler delays the next report, never a request.
const TIMEOUT: Duration = Duration::from_secs(2);

/// One report, as sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Report {
    pub(crate) gateway: String,
    /// This process's boot id, with any traffic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) boot: Option<u64>,
    /// This report's number, with any traffic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) seq: Option<u64>,
    pub(crate) apps: Vec<AppDemand>,
    /// The traffic it carries, for the ledger once it is accepted.
    #[serde(skip)]
    pub(crate) carried: Carried,
}

/// One app's demand at this gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct AppDemand {
    pub(crate) app: String,
    /// Requests held for the app (asleep) right now.
    pub(crate) held: u64,
    /// The most requests in flight at once since the last report, so a short request between
    /// two reports still counts as demand.
    pub(crate) in_flight: u64,
    /// Its traffic since its last accepted report, if it moved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) traffic: Option<AppTraffic>,
}

/// Puts the held and in-flight (peak) counts and the traffic together, one entry per app with
/// any, sorted by app. Every app with demand is named; apps with traffic only fill the report
/// up to [`MAX_DEMAND_APPS`] (those left out carry theirs in a later report).
pub(crate) fn report(
    gateway: &str,
    boot: u64,
    held: &[(AppId, usize)],
    in_flight: &[(String, u64)],
    carried: Carried,
) -> Report {
    let mut demand: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (app, n) in held {
        demand.entry(app.as_str()).or_default().0 += *n as u64;
    }
    for (app, n) in in_flight {
        demand.entry(app.as_str()).or_default().1 += *n;
    }
    demand.retain(|_, (h, f)| *h > 0 || *f > 0);
    let mut room = MAX_DEMAND_APPS.saturating_sub(demand.len());
    let mut apps: BTreeMap<String, AppDemand> = demand
        .iter()
        .map(|(app, (held, in_flight))| {
            let d = AppDemand {
                app: (*app).to_owned(),
                held: *held,
                in_flight: *in_flight,
                traffic: None,
            };
            ((*app).to_owned(), d)
        })
        .collect();
    let mut kept = Carried {
        seq: carried.seq,
        apps: Vec::with_capacity(carried.apps.len()),
    };
    for (app, traffic, counts) in carried.apps {
        let entry = match apps.get_mut(&app) {
            Some(entry) => entry,
            None if room > 0 => {
                room -= 1;
                apps.entry(app.clone()).or_insert_with(|| AppDemand {
                    app: app.clone(),
                    held: 0,
                    in_flight: 0,
                    traffic: None,
                })
            }
            None => continue,
        };
        entry.traffic = Some(traffic.clone());
        kept.apps.push((app, traffic, counts));
    }
    let with_traffic = !kept.apps.is_empty();
    Report {
        gateway: gateway.to_owned(),
        boot: with_traffic.then_some(boot),
        seq: with_traffic.then_some(kept.seq),
        apps: apps.into_values().collect(),
        carried: kept,
    }
}

impl Report {
    /// The same report without its traffic (for a scheduler that does not take it).
    fn without_traffic(&self) -> Report {
        Report {
            gateway: self.gateway.clone(),
            boot: None,
            seq: None,
            apps: self
                .apps
                .iter()
                .filter(|a| a.held > 0 || a.in_flight > 0)
                .map(|a| AppDemand {
                    traffic: None,
                    ..a.clone()
                })
                .collect(),
            carried: Carried::default(),
        }
    }
}

/// How one report went.
enum Sent {
    Accepted,
    Refused(reqwest::StatusCode),
    Failed(reqwest::Error),
}

async fn send(client: &reqwest::Client, target: &DemandTarget, r: &Report) -> Sent {
    let sent = client
        .post(&target.url)
        .bearer_auth(target.token.expose())
        .json(r)
        .send()
        .await;
    match sent {
        Ok(resp) if resp.status().is_success() => Sent::Accepted,
        Ok(resp) => Sent::Refused(resp.status()),
        Err(e) => Sent::Failed(e),
    }
}

/// Reports demand and traffic to `target` until `stop` is cancelled (after the gateway's
/// connections are closed), then sends the traffic not yet accepted once more.
pub(crate) async fn run(target: DemandTarget, wake: &Wake, stats: &Stats, stop: CancellationToken) {
    let client = match reqwest::Client::builder().timeout(TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "demand reports off: cannot build the HTTP client");
            return;
        }
    };
    let mut ledger = Ledger::new(crate::traffic::boot_id());
    tracing::info!(url = %target.url, gateway = %target.gateway, boot = ledger.boot(), "reporting demand and traffic");
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Whether the last report named any app: one empty report follows the last busy one.
    let mut busy = false;
    let mut failing = false;
    loop {
        let last = tokio::select! {
            () = stop.cancelled() => true,
            () = wake.demand.notified() => false,
            _ = tick.tick() => false,
        };
        let now = Instant::now();
        let seq = ledger.next_seq();
        let carried = if ledger.on(now) {
            ledger.pending(seq, &stats.traffic())
        } else {
            Carried::default()
        };
        let r = report(
            &target.gateway,
            ledger.boot(),
            &wake.held(),
            &stats.in_flight_peaks(),
            carried,
        );
        if last && r.carried.apps.is_empty() {
            return;
        }
        if r.apps.is_empty() && !busy {
            continue;
        }
        busy = !r.apps.is_empty();
        let mut outcome = send(&client, &target, &r).await;
        // 400: a scheduler that predates traffic (unknown fields); 413: its smaller body limit.
        let refused = |s: reqwest::StatusCode| {
            s == reqwest::StatusCode::BAD_REQUEST || s == reqwest::StatusCode::PAYLOAD_TOO_LARGE
        };
        if matches!(outcome, Sent::Refused(s) if refused(s)) && !r.carried.apps.is_empty() {
            tracing::warn!(url = %target.url, off_for_s = crate::traffic::OFF_AFTER_REFUSAL.as_secs(),
                "the admin API refused a report with traffic counts (older than this gateway?): reporting demand only for a while");
            ledger.turn_off(now);
            outcome = send(&client, &target, &r.without_traffic()).await;
        } else if matches!(outcome, Sent::Accepted) {
            ledger.accepted(&r.carried);
        }
        match outcome {
            Sent::Accepted => {
                if failing {
                    tracing::info!("demand reports accepted again");
                    failing = false;
                }
            }
            Sent::Refused(status) => {
                if !failing {
                    tracing::warn!(%status, url = %target.url, "demand report refused");
                }
                failing = true;
            }
            Sent::Failed(e) => {
                if !failing {
                    tracing::warn!(error = %e, url = %target.url, "demand report failed");
                }
                failing = true;
            }
        }
        if last {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use caas_types::api::TrafficCounts;

    #[test]
    fn a_report_merges_held_and_in_flight_per_app() {
        let held = vec![("sleepy".parse().unwrap(), 3), ("both".parse().unwrap(), 1)];
        let in_flight = vec![("both".to_owned(), 7), ("busy".to_owned(), 2)];
        let r = report("gw1", 9, &held, &in_flight, Carried::default());
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"gateway": "gw1", "apps": [
                {"app": "both", "held": 1, "in_flight": 7},
                {"app": "busy", "held": 0, "in_flight": 2},
                {"app": "sleepy", "held": 3, "in_flight": 0},
            ]})
        );
        assert!(report("gw1", 9, &[], &[], Carried::default())
            .apps
            .is_empty());
    }

    fn ok(n: u64) -> TrafficCounts {
        let mut c = TrafficCounts::default();
        c.status[1] = n;
        c
    }

    fn carried(seq: u64, apps: &[(&str, u64)]) -> Carried {
        Carried {
            seq,
            apps: apps
                .iter()
                .map(|(a, n)| {
                    let t = AppTraffic {
                        since: 0,
                        counts: ok(*n),
                    };
                    ((*a).to_owned(), t, ok(*n))
                })
                .collect(),
        }
    }

    #[test]
    fn traffic_rides_along_and_names_apps_without_demand_with_zero_demand() {
        let in_flight = vec![("busy".to_owned(), 2)];
        let r = report(
            "gw1",
            9,
            &[],
            &in_flight,
            carried(4, &[("busy", 3), ("quiet", 1)]),
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!((v["boot"].clone(), v["seq"].clone()), (9.into(), 4.into()));
        assert_eq!(v["apps"][0]["app"], "busy");
        assert_eq!(v["apps"][0]["in_flight"], 2);
        assert_eq!(v["apps"][0]["traffic"]["counts"]["status"][1], 3);
        assert_eq!(
            (
                v["apps"][1]["app"].clone(),
                v["apps"][1]["in_flight"].clone()
            ),
            ("quiet".into(), 0.into())
        );
        // The scheduler reads what the gateway writes.
        let parsed: caas_types::api::DemandReport = serde_json::from_value(v).unwrap();
        assert_eq!(parsed.apps[1].traffic.as_ref().unwrap().counts, ok(1));
        // Without its traffic: only the demand, as an older gateway sent it.
        assert_eq!(
            serde_json::to_value(r.without_traffic()).unwrap(),
            serde_json::json!({"gateway": "gw1", "apps": [{"app": "busy", "held": 0, "in_flight": 2}]})
        );
    }

    #[test]
    fn apps_with_traffic_only_fill_a_report_up_to_the_cap() {
        let in_flight: Vec<(String, u64)> = (0..MAX_DEMAND_APPS - 1)
            .map(|i| (format!("d{i:05}"), 1))
            .collect();
        let r = report(
            "gw1",
            1,
            &[],
            &in_flight,
            carried(2, &[("d00000", 5), ("t1", 1), ("t2", 1)]),
        );
        assert_eq!(r.apps.len(), MAX_DEMAND_APPS);
        let with: Vec<&str> = r.carried.apps.iter().map(|(a, _, _)| a.as_str()).collect();
        assert_eq!(with, vec!["d00000", "t1"], "t2 waits for a later report");
        assert!(r.apps.iter().all(|a| a.app != "t2"));
    }

    /// A local stand-in for the scheduler's demand endpoint: answers 204 (or 400 to reports
    /// with traffic when `refuse_traffic`), passes each report's JSON body on.
    async fn endpoint() -> (
        String,
        tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
    ) {
        endpoint_with(false).await
    }

    async fn endpoint_with(
        refuse_traffic: bool,
    ) -> (
        String,
        tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
    ) {
        use http_body_util::BodyExt as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/v1/gateway/demand",
            listener.local_addr().unwrap()
        );
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let tx = tx.clone();
                            async move {
                                let body = req.into_body().collect().await?.to_bytes();
                                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                                let refused = refuse_traffic && v.get("boot").is_some();
                                let _ = tx.send(v);
                                let mut r = hyper::Response::new(http_body_util::Empty::<
                                    bytes::Bytes,
                                >::new(
                                ));
                                *r.status_mut() = if refused {
                                    hyper::StatusCode::BAD_REQUEST
                                } else {
                                    hyper::StatusCode::NO_CONTENT
                                };
                                Ok::<_, hyper::Error>(r)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        (url, rx)
    }

    async fn next(
        rx: &mut tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
    ) -> serde_json::Value {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("a report within 5 s")
            .expect("endpoint running")
    }

    #[tokio::test]
    async fn requests_in_flight_between_two_reports_are_reported_then_one_empty_report() {
        let (url, mut rx) = endpoint().await;
        let (stats, stop, task) = reporter(url);
        let app = stats.app("brief");

        // Two requests at once that are over long before the next report: still demand.
        drop((app.enter(), app.enter()));
        assert_eq!(
            next(&mut rx).await,
            serde_json::json!({"gateway": "gw", "apps": [{"app": "brief", "held": 0, "in_flight": 2}]})
        );
        // Then one empty report, and quiet.
        assert_eq!(next(&mut rx).await["apps"], serde_json::json!([]));
        assert!(
            tokio::time::timeout(Duration::from_millis(1_500), rx.recv())
                .await
                .is_err(),
            "no reports without demand"
        );

        // A long request is reported at every tick while it lasts.
        let long = app.enter();
        for _ in 0..2 {
            assert_eq!(
                next(&mut rx).await["apps"],
                serde_json::json!([{"app": "brief", "held": 0, "in_flight": 1}])
            );
        }
        drop(long);
        // It was in flight during the last interval; then the demand is gone.
        let mut after = next(&mut rx).await;
        if after["apps"] != serde_json::json!([]) {
            assert_eq!(
                after["apps"],
                serde_json::json!([{"app": "brief", "held": 0, "in_flight": 1}])
            );
            after = next(&mut rx).await;
        }
        assert_eq!(after["apps"], serde_json::json!([]));
        stop.cancel();
        task.await.unwrap();
    }

    /// Runs the reporter against `url` with fresh stats; (stats, stop, task).
    fn reporter(
        url: String,
    ) -> (
        std::sync::Arc<Stats>,
        CancellationToken,
        tokio::task::JoinHandle<()>,
    ) {
        use std::sync::Arc;
        let stats = Arc::new(Stats::default());
        let wake = Arc::new(Wake::new(10, Duration::from_secs(30), Arc::clone(&stats)));
        let stop = CancellationToken::new();
        let target = DemandTarget {
            url,
            token: "t0ken".parse().unwrap(),
            gateway: "gw".into(),
        };
        let task = {
            let (stats, stop) = (Arc::clone(&stats), stop.clone());
            tokio::spawn(async move { run(target, &wake, &stats, stop).await })
        };
        (stats, stop, task)
    }

    #[tokio::test]
    async fn traffic_is_reported_once_accepted_and_the_rest_at_shutdown() {
        let (url, mut rx) = endpoint().await;
        let (stats, stop, task) = reporter(url);
        let app = stats.app("shop");
        for _ in 0..3 {
            app.response(200, Duration::from_millis(2));
        }
        app.bytes_out(30);
        let first = next(&mut rx).await;
        let (boot, seq) = (
            first["boot"].as_u64().unwrap(),
            first["seq"].as_u64().unwrap(),
        );
        assert_eq!(
            first["apps"],
            serde_json::json!([{"app": "shop", "held": 0, "in_flight": 0, "traffic": {"since": 0,
                "counts": {"status": [0, 3, 0, 0, 0], "bytes_in": 0, "bytes_out": 30,
                    "latency": [0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                    "latency_sum_us": 6000}}}])
        );
        // Accepted: the next report counts from it, once the counters move again. (An empty
        // report may come first: the last one named an app.)
        app.response(404, Duration::from_millis(2));
        let mut second = next(&mut rx).await;
        if second["apps"] == serde_json::json!([]) {
            second = next(&mut rx).await;
        }
        assert_eq!(second["boot"].as_u64(), Some(boot), "one boot per process");
        assert!(second["seq"].as_u64().unwrap() > seq);
        let t = &second["apps"][0]["traffic"];
        assert_eq!(t["since"].as_u64(), Some(seq));
        assert_eq!(t["counts"]["status"], serde_json::json!([0, 0, 0, 1, 0]));
        // Counted after the last tick and before the stop: the last report carries it.
        let mut last = second;
        app.response(500, Duration::from_millis(2));
        stop.cancel();
        task.await.unwrap();
        while let Ok(v) = rx.try_recv() {
            last = v;
        }
        let carried: u64 = last["apps"][0]["traffic"]["counts"]["status"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .sum();
        assert_eq!(
            last["apps"][0]["traffic"]["counts"]["status"][4], 1,
            "{last}"
        );
        assert_eq!(carried, 1, "{last}");
    }

    #[tokio::test]
    async fn a_scheduler_that_refuses_traffic_gets_the_demand_alone() {
        let (url, mut rx) = endpoint_with(true).await;
        let (stats, stop, task) = reporter(url);
        let app = stats.app("shop");
        let long = app.enter();
        app.response(200, Duration::from_millis(2));
        let refused = next(&mut rx).await;
        assert!(refused["apps"][0].get("traffic").is_some(), "{refused}");
        // At once, the same demand without the traffic, and no traffic after that.
        assert_eq!(
            next(&mut rx).await,
            serde_json::json!({"gateway": "gw", "apps": [{"app": "shop", "held": 0, "in_flight": 1}]})
        );
        app.response(200, Duration::from_millis(2));
        assert_eq!(
            next(&mut rx).await,
            serde_json::json!({"gateway": "gw", "apps": [{"app": "shop", "held": 0, "in_flight": 1}]})
        );
        drop(long);
        stop.cancel();
        task.await.unwrap();
    }
}
