//! Demand reports: the gateway tells the scheduler, over the admin API and with its own bearer
//! token (`CAAS_GATEWAY_TOKEN`, role `gateway`), how many requests it holds for sleeping apps
//! and how many it is proxying, per app:
//!
//! ```text
//! POST {CAAS_API}/v1/gateway/demand
//! {"gateway": "gw-1234", "apps": [{"app": "hello", "held": 3, "in_flight": 7}]}   → 204
//! ```
//!
//! `in_flight` is the most requests in flight at once since the last report, so a short request
//! between two reports still counts as demand.
//!
//! A report goes out at once when an app's first request is held ([`Wake::demand`]), then
//! about once a second while any app has held requests or had some in flight since the last
//! report, and once more with no apps when the demand has gone (so the scheduler need not wait for this gateway's reports to age
//! out). A failed report is logged and replaced by the next one; nothing on the request path
//! waits for it. The gateway never links scheduler code: this is plain HTTP.

use crate::config::DemandTarget;
use crate::metrics::Stats;
use crate::wake::Wake;
use caas_types::AppId;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Time between two reports while there is demand.
const EVERY: Duration = Duration::from_secs(1);

/// Longest one report may take; a slow scheduler delays the next report, never a request.
const TIMEOUT: Duration = Duration::from_secs(2);

/// One report, as sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Report {
    pub(crate) gateway: String,
    pub(crate) apps: Vec<AppDemand>,
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
}

/// Puts the held and in-flight (peak) counts together, one entry per app with any, sorted by app.
pub(crate) fn report(
    gateway: &str,
    held: &[(AppId, usize)],
    in_flight: &[(String, u64)],
) -> Report {
    let mut apps: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (app, n) in held {
        apps.entry(app.as_str()).or_default().0 += *n as u64;
    }
    for (app, n) in in_flight {
        apps.entry(app.as_str()).or_default().1 += *n;
    }
    Report {
        gateway: gateway.to_owned(),
        apps: apps
            .into_iter()
            .filter(|(_, (h, f))| *h > 0 || *f > 0)
            .map(|(app, (held, in_flight))| AppDemand {
                app: app.to_owned(),
                held,
                in_flight,
            })
            .collect(),
    }
}

/// Reports demand to `target` until `stop` is cancelled.
pub(crate) async fn run(target: DemandTarget, wake: &Wake, stats: &Stats, stop: CancellationToken) {
    let client = match reqwest::Client::builder().timeout(TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "demand reports off: cannot build the HTTP client");
            return;
        }
    };
    tracing::info!(url = %target.url, gateway = %target.gateway, "reporting demand");
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Whether the last report named any app: one empty report follows the last busy one.
    let mut busy = false;
    let mut failing = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = wake.demand.notified() => {}
            _ = tick.tick() => {}
        }
        let r = report(&target.gateway, &wake.held(), &stats.in_flight_peaks());
        if r.apps.is_empty() && !busy {
            continue;
        }
        busy = !r.apps.is_empty();
        let sent = client
            .post(&target.url)
            .bearer_auth(target.token.expose())
            .json(&r)
            .send()
            .await;
        match sent {
            Ok(resp) if resp.status().is_success() => {
                if failing {
                    tracing::info!("demand reports accepted again");
                    failing = false;
                }
            }
            Ok(resp) => {
                if !failing {
                    tracing::warn!(status = %resp.status(), url = %target.url, "demand report refused");
                }
                failing = true;
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, url = %target.url, "demand report failed");
                }
                failing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_report_merges_held_and_in_flight_per_app() {
        let held = vec![("sleepy".parse().unwrap(), 3), ("both".parse().unwrap(), 1)];
        let in_flight = vec![("both".to_owned(), 7), ("busy".to_owned(), 2)];
        let r = report("gw1", &held, &in_flight);
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"gateway": "gw1", "apps": [
                {"app": "both", "held": 1, "in_flight": 7},
                {"app": "busy", "held": 0, "in_flight": 2},
                {"app": "sleepy", "held": 3, "in_flight": 0},
            ]})
        );
        assert!(report("gw1", &[], &[]).apps.is_empty());
    }

    /// A local stand-in for the scheduler's demand endpoint: answers 204, passes each report's
    /// JSON body on.
    async fn endpoint() -> (
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
                                let _ = tx.send(serde_json::from_slice(&body).unwrap());
                                let mut r = hyper::Response::new(http_body_util::Empty::<
                                    bytes::Bytes,
                                >::new(
                                ));
                                *r.status_mut() = hyper::StatusCode::NO_CONTENT;
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
        use std::sync::Arc;
        let (url, mut rx) = endpoint().await;
        let stats = Arc::new(Stats::default());
        let wake = Arc::new(Wake::new(10, Duration::from_secs(30), Arc::clone(&stats)));
        let stop = CancellationToken::new();
        let target = DemandTarget {
            url,
            token: "t0ken".parse().unwrap(),
            gateway: "gw".into(),
        };
        let task = {
            let (wake, stats, stop) = (Arc::clone(&wake), Arc::clone(&stats), stop.clone());
            tokio::spawn(async move { run(target, &wake, &stats, stop).await })
        };
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
}
