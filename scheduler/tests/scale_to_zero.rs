//! Scale to zero end to end, against the real MariaDB, ZooKeeper, Docker engine and registry:
//! the in-process scheduler (its leader's autoscaler) and real gateways, in-process too, that
//! route from this test's ZooKeeper chroot and report demand to the scheduler with the gateway
//! token. A sleeping app wakes on one request and answers 200, and goes back to zero after
//! its delay with no failed request; 200 concurrent requests to a sleeping app all succeed;
//! two gateways each holding a request start one instance, not two; an app that cannot start
//! answers 503 with the reason instead of holding requests until they time out.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/db.rs"]
mod db;
#[path = "common/gateway.rs"]
mod gateway;
#[path = "common/platform.rs"]
mod platform;

use caas_testkit::{eventually, eventually_within};
use gateway::{client, Gw, GATEWAY_TOKEN};
use platform::{Platform, TOKEN};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A sleeping hello deployment of `app` (each test has its own database, so every test's app
/// is `hello`, whose image `scripts/up` pushed): min 0, with `autoscale` fields over the
/// defaults.
async fn sleeping(p: &Platform, app: &str, autoscale: Value, extra: Value) -> Value {
    p.create_app(app).await;
    let mut a = json!({"min": 0, "max": 3, "target_concurrency": 10, "scale_down_delay_s": 60});
    for (k, v) in autoscale.as_object().unwrap() {
        a[k] = v.clone();
    }
    let mut body = json!({"version": "v1", "memory_mb": 64, "cpus": 0.1, "autoscale": a});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let d = p.deploy(app, body).await;
    assert_eq!(d["instances"], 0, "asleep at first: {d}");
    d
}

/// The deployment v1 of `app`: (instances, desired).
async fn counts(p: &Platform, app: &str) -> (u64, u64) {
    let (s, d) = p
        .call(
            "GET",
            &format!("/v1/apps/{app}/deployments/v1"),
            None,
            TOKEN,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    (
        d["instances"].as_u64().unwrap(),
        d["desired"].as_u64().unwrap(),
    )
}

/// The `autoscale.changed` events of `app`, oldest first.
async fn scalings(p: &Platform, app: &str) -> Vec<Value> {
    let mut ev: Vec<Value> = p
        .events(&format!("?app={app}&limit=500"), TOKEN)
        .await
        .into_iter()
        .filter(|e| e["type"] == "autoscale.changed")
        .collect();
    ev.reverse();
    ev
}

#[tokio::test]
async fn a_sleeping_app_wakes_on_one_request_and_sleeps_again_with_no_failed_request() {
    let p = Platform::new(&["--gateway-token", GATEWAY_TOKEN]).await;
    p.add_hosts(2, 1024, 2.0).await;
    sleeping(&p, "hello", json!({"scale_down_delay_s": 1}), json!({})).await;
    let gw = Gw::start(&p, "gw-a").await;
    let http = client();

    // One request wakes it: held, then served.
    let t = Instant::now();
    let (status, _, body) = gw.get(&http, "hello", "/").await;
    assert_eq!(status, 200, "the first request is served: {body}");
    eprintln!("cold start through the gateway: {:?}", t.elapsed());
    // The request is served as soon as the instance's address is in ZooKeeper; the scale that
    // started it records its count and its event a moment later.
    eventually_within("the wake-up recorded", Duration::from_secs(20), || async {
        (counts(&p, "hello").await == (1, 1) && !scalings(&p, "hello").await.is_empty())
            .then_some(())
    })
    .await;
    let woke = scalings(&p, "hello").await;
    assert_eq!(woke.len(), 1, "{woke:?}");
    assert_eq!(
        (woke[0]["from"].clone(), woke[0]["to"].clone()),
        (json!(0), json!(1))
    );
    assert!(
        woke[0]["reason"].as_str().unwrap().contains("held"),
        "{woke:?}"
    );

    // Steady requests for a while: all served, by the one instance.
    let until = Instant::now() + Duration::from_secs(2);
    let mut served = 0;
    while Instant::now() < until {
        let (status, _, body) = gw.get(&http, "hello", "/").await;
        assert_eq!(status, 200, "{body}");
        served += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served > 10);

    // No more requests: back to zero after the delay (at least the 6 s panic window), drained.
    eventually_within(
        "the app to go back to zero",
        Duration::from_secs(40),
        || async {
            let (instances, desired) = counts(&p, "hello").await;
            (instances == 0 && desired == 0).then_some(())
        },
    )
    .await;
    assert!(p.nodes().await.is_empty(), "its address node went");
    let down = scalings(&p, "hello").await;
    let last = down.last().unwrap();
    assert_eq!(
        (last["from"].clone(), last["to"].clone()),
        (json!(1), json!(0))
    );
    assert!(
        last["reason"].as_str().unwrap().starts_with("no request"),
        "{last}"
    );
    eventually_within("its container to go", Duration::from_secs(20), || async {
        p.containers().await.is_empty().then_some(())
    })
    .await;

    // And it wakes again.
    let (status, _, body) = gw.get(&http, "hello", "/").await;
    assert_eq!(status, 200, "woken again: {body}");
    gw.shutdown().await;
}

#[tokio::test]
async fn two_hundred_concurrent_requests_to_a_sleeping_app_all_succeed() {
    let p = Platform::new(&["--gateway-token", GATEWAY_TOKEN]).await;
    p.add_hosts(2, 1024, 2.0).await;
    sleeping(
        &p,
        "hello",
        json!({"max": 4, "target_concurrency": 50}),
        json!({}),
    )
    .await;
    let gw = std::sync::Arc::new(Gw::start(&p, "gw-burst").await);
    let http = client();
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let (gw, http) = (gw.clone(), http.clone());
            tokio::spawn(async move { gw.get(&http, "hello", "/").await })
        })
        .collect();
    let mut failed = Vec::new();
    for t in tasks {
        let (status, _, body) = t.await.unwrap();
        if status != 200 {
            failed.push((status, body));
        }
    }
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    // Served means registered; the scale records its count a moment later.
    eventually_within("the scale recorded", Duration::from_secs(20), || async {
        let (instances, _) = counts(&p, "hello").await;
        (instances >= 1).then_some(())
    })
    .await;
    let (instances, desired) = counts(&p, "hello").await;
    assert!((1..=4).contains(&instances), "{instances}");
    assert!(desired <= 4, "{desired}");
}

#[tokio::test]
async fn two_gateways_holding_one_request_each_start_one_instance() {
    let p = Platform::new(&["--gateway-token", GATEWAY_TOKEN]).await;
    p.add_hosts(2, 1024, 2.0).await;
    sleeping(&p, "hello", json!({"target_concurrency": 10}), json!({})).await;
    let (a, b) = (Gw::start(&p, "gw-a").await, Gw::start(&p, "gw-b").await);
    let http = client();
    let (ra, rb) = tokio::join!(a.get(&http, "hello", "/"), b.get(&http, "hello", "/"));
    assert_eq!((ra.0, rb.0), (200, 200), "{ra:?} {rb:?}");
    // Both gateways' reports have reached the scheduler; it still wants one.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    eventually_within("the wake-up recorded", Duration::from_secs(20), || async {
        (counts(&p, "hello").await == (1, 1)).then_some(())
    })
    .await;
    let ups: Vec<Value> = scalings(&p, "hello").await;
    assert_eq!(ups.len(), 1, "one wake-up: {ups:?}");
    assert_eq!(ups[0]["to"], 1);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_sleeping_app_that_cannot_start_answers_503_with_the_reason_and_backs_off() {
    let p = Platform::new(&["--gateway-token", GATEWAY_TOKEN]).await;
    p.add_hosts(1, 1024, 2.0).await;
    // No host can take an instance of it: every wake-up fails at once (422 unplaceable).
    sleeping(&p, "hello", json!({}), json!({"memory_mb": 4096})).await;
    let gw = Gw::start(&p, "gw-broken").await;
    let http = client();
    let t = Instant::now();
    let (status, retry, body) = gw.get(&http, "hello", "/").await;
    assert_eq!(status, 503, "not held until the 30 s timeout: {body}");
    assert!(body.contains("failed to start"), "{body}");
    assert!(
        body.contains("no host"),
        "the reason is the scheduler's: {body}"
    );
    assert_eq!(retry.as_deref(), Some("5"));
    assert!(t.elapsed() < Duration::from_secs(25), "{:?}", t.elapsed());
    // The failure is an event with the error and a back-off, and nothing is left behind.
    let failed = scalings(&p, "hello").await;
    assert!(
        failed
            .iter()
            .any(|e| e["error"].is_string() && e["retry_in_s"].as_u64() >= Some(2)),
        "{failed:?}"
    );
    // During the back-off requests are answered at once, not held.
    let (status, _, body) = gw.get(&http, "hello", "/").await;
    assert_eq!(status, 503, "{body}");
    // After it, a request is held and tried again (and fails again): backs off, never loops.
    let retried = eventually_within("a second attempt", Duration::from_secs(30), || async {
        let n = scalings(&p, "hello")
            .await
            .iter()
            .filter(|e| e["error"].is_string())
            .count();
        if n < 2 {
            let _ = gw.get(&http, "hello", "/").await;
        }
        (n >= 2).then_some(n)
    })
    .await;
    assert!(retried >= 2);
    gw.shutdown().await;
    eventually("no container or claim left", || async {
        let store = p.db.store(2).await;
        let rows = store.list_all_instances().await.unwrap();
        (rows.is_empty() && p.containers().await.is_empty()).then_some(())
    })
    .await;
}
