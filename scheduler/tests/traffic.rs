//! Traffic statistics end to end, against the real MariaDB, ZooKeeper, Docker engine and
//! registry: hello deployed by the in-process scheduler, two real gateways in-process reporting
//! to it, and an exact number of requests sent through them. `GET /v1/apps/{app}/traffic` and
//! `GET /v1/traffic` show exactly what was sent (requests, status classes, body bytes both
//! ways), also across a gateway's restart; a report sent again counts once; other tenants see
//! nothing; bad parameters are 400; an app's traffic goes with it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/db.rs"]
mod db;
#[path = "common/gateway.rs"]
mod gateway;
#[path = "common/platform.rs"]
mod platform;

use caas_testkit::eventually_within;
use futures::StreamExt;
use gateway::{client, Gw, GATEWAY_TOKEN};
use platform::{Platform, TOKEN};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

/// What the client saw come back, to compare with what the scheduler shows.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    requests: u64,
    /// By class: 1xx .. 5xx.
    status: [u64; 5],
    bytes_in: u64,
    bytes_out: u64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.requests += other.requests;
        for (a, b) in self.status.iter_mut().zip(other.status) {
            *a += b;
        }
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
    }

    /// The same numbers as the traffic API shows them.
    fn of(v: &Value) -> Tally {
        let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"));
        let s = &v["status"];
        Tally {
            requests: n("requests"),
            status: ["1xx", "2xx", "3xx", "4xx", "5xx"].map(|c| s[c].as_u64().unwrap()),
            bytes_in: n("bytes_in"),
            bytes_out: n("bytes_out"),
        }
    }
}

/// Sends `n` requests of `app` through `gw`, 16 at a time: `GET path`, or `POST path` with
/// `body` bytes. What came back, every answer counted (whatever its status).
async fn send(
    gw: &Gw,
    http: &reqwest::Client,
    app: &str,
    path: &str,
    body: Option<usize>,
    n: usize,
) -> Tally {
    let url = format!("http://{}{path}", gw.addr);
    let answers: Vec<(u16, u64)> = futures::stream::iter(0..n)
        .map(|_| {
            let req = match body {
                Some(len) => http.post(&url).body(vec![b'x'; len]),
                None => http.get(&url),
            };
            async move {
                let r = req
                    .header("host", format!("{app}.caas.localhost"))
                    .timeout(Duration::from_secs(30))
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("{path} through the gateway: {e}"));
                let status = r.status().as_u16();
                let bytes = r.bytes().await.expect("the whole answer").len() as u64;
                (status, bytes)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut t = Tally::default();
    for (status, bytes) in answers {
        t.requests += 1;
        t.status[usize::from(status / 100).clamp(1, 5) - 1] += 1;
        t.bytes_in += body.unwrap_or(0) as u64;
        t.bytes_out += bytes;
    }
    t
}

/// `GET path` with `token`: the status and JSON answer.
async fn get(p: &Platform, path: &str, token: &str) -> (StatusCode, Value) {
    p.call("GET", path, None, token).await
}

/// Waits until the series' total of `app` over the last 5 minutes is `want` (the gateways
/// report about once a second), then answers the series.
async fn total_reaches(p: &Platform, app: &str, want: Tally) -> Value {
    let path = format!("/v1/apps/{app}/traffic?window=5m&step=1s");
    let reached = eventually_within(
        "the traffic API to show every request sent",
        Duration::from_secs(30),
        || async {
            let (s, v) = get(p, &path, TOKEN).await;
            assert_eq!(s, StatusCode::OK, "{v}");
            let got = Tally::of(&v["total"]);
            assert!(
                got.requests <= want.requests,
                "more than sent: {got:?} {want:?}"
            );
            (got.requests == want.requests).then_some(v)
        },
    )
    .await;
    // Every report that could still come has come (they are at most a second apart): the
    // count stays where it is.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let (_, again) = get(p, &path, TOKEN).await;
    assert_eq!(
        Tally::of(&again["total"]),
        Tally::of(&reached["total"]),
        "settled"
    );
    again
}

#[tokio::test]
async fn the_traffic_api_counts_what_went_through_the_gateways_across_a_restart() {
    let p = Platform::new(&["--gateway-token", GATEWAY_TOKEN]).await;
    p.add_hosts(1, 1024, 2.0).await;
    p.create_app("hello").await;
    p.create_app("other").await;
    let d = p
        .deploy(
            "hello",
            json!({"version": "v1", "memory_mb": 64, "cpus": 0.1}),
        )
        .await;
    assert_eq!(d["instances"], 1, "{d}");
    let (a, b) = (Gw::start(&p, "gw-a").await, Gw::start(&p, "gw-b").await);
    let http = client();

    // Nothing yet: every step is zeros, no percentile.
    let (s, v) = get(&p, "/v1/apps/hello/traffic?window=1m&step=10s", TOKEN).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["app"].clone(), v["window_s"].clone(), v["step_s"].clone()),
        (json!("hello"), json!(60), json!(10))
    );
    assert_eq!(v["points"].as_array().unwrap().len(), 6);
    assert_eq!(v["total"]["requests"], 0);
    assert_eq!(v["total"]["p50_ms"], Value::Null);

    // 1500 GETs through one gateway, 4xx and request bodies through the other.
    let mut sent = send(&a, &http, "hello", "/", None, 1500).await;
    assert_eq!(sent.status[1], 1500, "hello answers every one: {sent:?}");
    sent.add(send(&b, &http, "hello", "/no-such-page", None, 100).await);
    sent.add(send(&b, &http, "hello", "/echo", Some(1000), 50).await);
    assert_eq!(sent.status[3], 100, "{sent:?}");
    assert_eq!(sent.bytes_in, 50_000);
    let series = total_reaches(&p, "hello", sent).await;
    assert_eq!(Tally::of(&series["total"]), sent, "{}", series["total"]);
    let (p50, p99) = (
        series["total"]["p50_ms"].as_f64().unwrap(),
        series["total"]["p99_ms"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= 10_000.0, "{p50} {p99}");
    // The points add up to the total, one per second of the window.
    let points = series["points"].as_array().unwrap();
    assert_eq!(points.len(), 300);
    let mut summed = Tally::default();
    for pt in points {
        summed.add(Tally::of(pt));
        let rps = pt["rps"].as_f64().unwrap();
        assert_eq!(rps, pt["requests"].as_u64().unwrap() as f64, "1 s steps");
        let t = pt["t"].as_str().unwrap();
        assert!(
            t.len() == 20 && t.parse::<caas_types::Timestamp>().is_ok(),
            "{t}"
        );
    }
    assert_eq!(summed, sent);

    // A gateway's restart: its last counts go out as it stops, the new process counts from
    // zero under a new boot, and nothing is lost or counted twice.
    // Stopped right after its last requests, before its next tick.
    sent.add(send(&a, &http, "hello", "/", None, 200).await);
    a.shutdown().await;
    let a = Gw::start(&p, "gw-a").await;
    sent.add(send(&a, &http, "hello", "/", None, 300).await);
    let series = total_reaches(&p, "hello", sent).await;
    assert_eq!(Tally::of(&series["total"]), sent, "{}", series["total"]);
    let boots: i64 =
        sqlx::query_scalar("SELECT COUNT(DISTINCT boot) FROM app_traffic WHERE gateway = 'gw-a'")
            .fetch_one(p.db.store(1).await.pool())
            .await
            .unwrap();
    assert_eq!(boots, 2, "one boot per gateway process");

    // The overview: every app the operator sees, the busiest first.
    let (s, o) = get(&p, "/v1/traffic?window=5m", TOKEN).await;
    assert_eq!(s, StatusCode::OK, "{o}");
    assert_eq!(o["window_s"], 300);
    assert_eq!(o["apps"][0]["app"], "hello", "{o}");
    assert_eq!(Tally::of(&o["apps"][0]), sent);
    assert_eq!(
        (
            o["apps"][1]["app"].clone(),
            o["apps"][1]["requests"].clone()
        ),
        (json!("other"), json!(0))
    );

    // Another tenant sees none of it; its own (idle) app only.
    let (s, t) = p
        .call("POST", "/v1/tenants", Some(json!({"name": "acme"})), TOKEN)
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let acme = t["token"].as_str().unwrap().to_owned();
    let (s, _) = p
        .call("POST", "/v1/apps", Some(json!({"id": "acme-web"})), &acme)
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, v) = get(&p, "/v1/apps/hello/traffic", &acme).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, v) = get(&p, "/v1/apps/hello/traffic?window=bogus", &acme).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "404 before the parameters: {v}");
    let (s, v) = get(&p, "/v1/traffic", &acme).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["apps"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["apps"][0]["app"], "acme-web");

    // Bad parameters: 400 with the API's error shape, naming the parameter.
    for (query, says) in [
        ("window=2h", "window"),
        ("window=1m&step=0s", "step"),
        ("step=10m", "step"),
        ("window=5m&step=2m&window=1m", "twice"),
        ("since=1", "unknown query parameter"),
    ] {
        let (s, v) = get(&p, &format!("/v1/apps/hello/traffic?{query}"), TOKEN).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{query}: {v}");
        assert_eq!(v["error"]["code"], "invalid", "{v}");
        let m = v["error"]["message"].as_str().unwrap();
        assert!(m.contains(says), "{query}: {m}");
    }
    let (s, v) = get(&p, "/v1/traffic?window=30s", TOKEN).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");

    a.shutdown().await;
    b.shutdown().await;
    let (s, _) = p
        .call("DELETE", "/v1/apps/hello/deployments/v1", None, TOKEN)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}

/// A report with traffic, as a gateway sends it: `ok` answers of 100 bytes each for `app`
/// since report `since`.
fn report(boot: u64, seq: u64, app: &str, since: u64, ok: u64) -> Value {
    json!({"gateway": "gw-x", "boot": boot, "seq": seq, "apps": [{"app": app, "held": 0,
        "in_flight": 0, "traffic": {"since": since, "counts": {
            "status": [0, ok, 0, 0, 0], "bytes_in": 0, "bytes_out": 100 * ok,
            "latency": [0, 0, ok, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            "latency_sum_us": 2000 * ok}}}]})
}

async fn post(p: &Platform, body: Value) -> StatusCode {
    p.call("POST", "/v1/gateway/demand", Some(body), GATEWAY_TOKEN)
        .await
        .0
}

/// The app's requests over the last minute.
async fn requests(p: &Platform, app: &str) -> u64 {
    let (s, v) = get(p, &format!("/v1/apps/{app}/traffic?window=1m"), TOKEN).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["total"]["requests"].as_u64().unwrap()
}

#[tokio::test]
async fn a_report_sent_again_counts_once_and_an_apps_traffic_goes_with_it() {
    let p = Platform::new(&["--gateway-token", GATEWAY_TOKEN]).await;
    p.create_app("shop").await;

    // Report 2 (since 0) is stored but its answer is lost; report 3 carries its counts again
    // with more (still since 0): the larger replaces it.
    assert_eq!(
        post(&p, report(7, 2, "shop", 0, 5)).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(requests(&p, "shop").await, 5);
    assert_eq!(
        post(&p, report(7, 3, "shop", 0, 8)).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(requests(&p, "shop").await, 8, "5 of them were the same");
    // Report 3 was accepted: what follows counts from it, and adds up.
    assert_eq!(
        post(&p, report(7, 4, "shop", 3, 2)).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(requests(&p, "shop").await, 10);
    // A delayed copy of an older report changes nothing.
    assert_eq!(
        post(&p, report(7, 2, "shop", 0, 5)).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(requests(&p, "shop").await, 10);
    // A new process of the same gateway counts from zero under its own boot.
    assert_eq!(
        post(&p, report(8, 1, "shop", 0, 5)).await,
        StatusCode::NO_CONTENT
    );
    let (_, v) = get(&p, "/v1/apps/shop/traffic?window=1m", TOKEN).await;
    assert_eq!(v["total"]["requests"], 15);
    assert_eq!(v["total"]["bytes_out"], 1500);
    assert_eq!(v["total"]["p50_ms"], 1.75, "{v}");
    // The traffic-only app has no demand: the autoscaler's input is unchanged.
    let demand =
        p.db.store(1)
            .await
            .app_demand(Duration::from_secs(30))
            .await
            .unwrap();
    assert!(demand.is_empty(), "{demand:?}");

    // Traffic without its boot and seq, or since a report not before it: 400, nothing stored.
    let mut no_boot = report(9, 5, "shop", 0, 1000);
    no_boot.as_object_mut().unwrap().remove("boot");
    for bad in [no_boot, report(9, 5, "shop", 5, 1000)] {
        assert_eq!(post(&p, bad).await, StatusCode::BAD_REQUEST);
    }
    assert_eq!(requests(&p, "shop").await, 15);
    // Unknown apps are skipped, as for demand.
    assert_eq!(
        post(&p, report(7, 9, "ghost", 0, 1)).await,
        StatusCode::NO_CONTENT
    );
    let store = p.db.store(1).await;
    let ghosts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM app_traffic WHERE app_id = 'ghost'")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(ghosts, 0);

    // Deleted with the app: a new owner of the id starts from nothing.
    let (s, _) = p.call("DELETE", "/v1/apps/shop", None, TOKEN).await;
    assert!(s.is_success(), "{s}");
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM app_traffic")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(rows, 0);
    p.create_app("shop").await;
    assert_eq!(requests(&p, "shop").await, 0);
    // Old samples are pruned.
    assert_eq!(
        post(&p, report(7, 10, "shop", 0, 1)).await,
        StatusCode::NO_CONTENT
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(store.prune_traffic(3_600_000).await.unwrap(), 0, "recent");
    assert_eq!(store.prune_traffic(0).await.unwrap(), 1, "older than now");
}
