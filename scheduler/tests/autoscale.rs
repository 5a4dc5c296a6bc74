//! Autoscaling's first piece against the real MariaDB, ZooKeeper, Docker engine and registry,
//! with the hello image: a deployment with `autoscale` starts at its `instances` clamped to
//! `[min, max]` (min 0: nothing placed) and shows its bounds and `desired` count; its release
//! keeps the bounds; bad bounds are a 400 naming the field with nothing left; the gateways'
//! demand reports (`POST /v1/gateway/demand`, the gateway token only) add up over gateways,
//! skip unknown apps, replace the gateway's last report whole, stop counting when stale and go with
//! their app.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/db.rs"]
mod db;
#[path = "common/platform.rs"]
mod platform;

use caas_scheduler::store::Demand;
use caas_types::AppId;
use platform::{instances, Platform, TOKEN};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

const GATEWAY_TOKEN: &str = "gateway-test-token";

/// A hello request with `extra` fields (autoscale among them): 64 MiB, 0.1 CPU.
fn hello(version: &str, extra: Value) -> Value {
    let mut body = json!({"version": version, "memory_mb": 64, "cpus": 0.1});
    for (k, v) in extra.as_object().expect("an object").clone() {
        body[k] = v;
    }
    body
}

/// The app's deployments as `GET /v1/apps/hello` shows them.
async fn shown(p: &Platform) -> Vec<Value> {
    let (s, app) = p.call("GET", "/v1/apps/hello", None, TOKEN).await;
    assert_eq!(s, StatusCode::OK, "{app}");
    app["deployments"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn an_autoscaled_deployment_starts_clamped_shows_its_bounds_and_refuses_bad_ones() {
    let p = Platform::new(&["--gateway-token", GATEWAY_TOKEN]).await;
    p.add_hosts(2, 1024, 2.0).await;
    p.create_app("hello").await;

    // min 0 and no count: the app starts asleep, nothing placed.
    let d = p
        .deploy(
            "hello",
            hello("v1", json!({"autoscale": {"min": 0, "max": 3}})),
        )
        .await;
    assert_eq!(d["instances"], 0, "{d}");
    assert_eq!(d["desired"], 0, "{d}");
    assert_eq!(
        d["autoscale"],
        json!({"min": 0, "max": 3, "target_concurrency": 10, "scale_down_delay_s": 60})
    );
    assert!(instances(&d).is_empty(), "{d}");
    let listed = shown(&p).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["desired"], 0);
    assert_eq!(listed[0]["autoscale"]["max"], 3);
    assert!(p.containers().await.is_empty(), "nothing started");
    let (s, one) = p
        .call("GET", "/v1/apps/hello/deployments/v1", None, TOKEN)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (one["desired"].clone(), one["autoscale"]["min"].clone()),
        (json!(0), json!(0))
    );
    // The release keeps the request's bounds, so a rollback to it autoscales the same way.
    let (s, releases) = p.call("GET", "/v1/apps/hello/releases", None, TOKEN).await;
    assert_eq!(s, StatusCode::OK, "{releases}");
    assert_eq!(releases[0]["spec"]["autoscale"]["max"], 3, "{releases}");
    // A hand scale stays within the bounds.
    let (s, body) = p
        .call(
            "PUT",
            "/v1/apps/hello/deployments/v1",
            Some(json!({"instances": 4})),
            TOKEN,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("instances: "), "{message}");

    // Bad bounds: 400 naming the field, nothing deployed.
    for (autoscale, extra, field) in [
        (json!({"min": 3, "max": 2}), json!({}), "autoscale.min"),
        (json!({"min": 0, "max": 1001}), json!({}), "autoscale.max"),
        (json!({"min": 0, "max": 0}), json!({}), "autoscale.max"),
        (
            json!({"min": 0, "max": 2, "target_concurrency": 0}),
            json!({}),
            "autoscale.target_concurrency",
        ),
        (
            json!({"min": 0, "max": 2, "scale_down_delay_s": -1}),
            json!({}),
            "autoscale.scale_down_delay_s",
        ),
        (
            json!({"min": 0, "max": 2, "scale_down_delay_s": 86401}),
            json!({}),
            "autoscale.scale_down_delay_s",
        ),
        (
            json!({"min": 0, "max": 2}),
            json!({"port": null}),
            "autoscale",
        ),
        (json!({"max": 2}), json!({}), "autoscale"),
    ] {
        let mut body = hello("v2", extra);
        body["autoscale"] = autoscale.clone();
        let (s, answer) = p
            .call("POST", "/v1/apps/hello/deployments", Some(body), TOKEN)
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{autoscale}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(field), "{autoscale}: {message}");
    }
    assert_eq!(shown(&p).await.len(), 1, "only v1 is there");
    assert!(p.containers().await.is_empty(), "nothing started");
    let (s, _) = p
        .call("DELETE", "/v1/apps/hello/deployments/v1", None, TOKEN)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    // min 2, max 5, 9 asked for: it starts with 5.
    let d = p
        .deploy(
            "hello",
            hello(
                "v1",
                json!({"instances": 9, "autoscale": {"min": 2, "max": 5, "target_concurrency": 4}}),
            ),
        )
        .await;
    assert_eq!(
        (d["instances"].clone(), d["desired"].clone()),
        (json!(5), json!(5)),
        "{d}"
    );
    assert_eq!(instances(&d).len(), 5, "{d}");
    assert!(instances(&d).iter().all(|i| i["state"] == "running"), "{d}");
    assert_eq!(shown(&p).await[0]["autoscale"]["target_concurrency"], 4);
    // Without autoscale nothing new shows.
    let (s, _) = p
        .call("DELETE", "/v1/apps/hello/deployments/v1", None, TOKEN)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let d = p.deploy("hello", hello("v1", json!({}))).await;
    assert!(
        d.get("autoscale").is_none() && d.get("desired").is_none(),
        "{d}"
    );
    assert_eq!(instances(&d).len(), 1);
    let (s, _) = p
        .call("DELETE", "/v1/apps/hello/deployments/v1", None, TOKEN)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    p.assert_empty("after the undeploys").await;
}

/// Posts a demand report with `token`; the status.
async fn report(p: &Platform, token: &str, body: Value) -> StatusCode {
    p.call("POST", "/v1/gateway/demand", Some(body), token)
        .await
        .0
}

fn demand(held: u64, in_flight: u64) -> Demand {
    Demand { held, in_flight }
}

#[tokio::test]
async fn two_gateways_demand_reports_add_up_and_expire() {
    let p = Platform::new(&["--gateway-token", GATEWAY_TOKEN]).await;
    p.create_app("hello").await;
    p.create_app("other").await;
    let store = p.db.store(2).await;
    let hello: AppId = "hello".parse().unwrap();
    let other: AppId = "other".parse().unwrap();

    let gw1 = json!({"gateway": "gw-1", "apps": [
        {"app": "hello", "held": 3, "in_flight": 7},
        {"app": "ghost", "held": 5, "in_flight": 5},
    ]});
    assert_eq!(report(&p, GATEWAY_TOKEN, gw1).await, StatusCode::NO_CONTENT);
    let gw2 = json!({"gateway": "gw-2", "apps": [
        {"app": "hello", "held": 1, "in_flight": 2},
        {"app": "other", "held": 0, "in_flight": 5},
    ]});
    assert_eq!(
        report(&p, GATEWAY_TOKEN, gw2.clone()).await,
        StatusCode::NO_CONTENT
    );
    let now = store.app_demand(Duration::from_secs(30)).await.unwrap();
    assert_eq!(now.get(&hello), Some(&demand(4, 9)), "{now:?}");
    assert_eq!(now.get(&other), Some(&demand(0, 5)), "{now:?}");
    assert_eq!(now.len(), 2, "an unknown app is skipped: {now:?}");
    let ghosts: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM gateway_demand WHERE app_id = 'ghost'")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(ghosts, 0);

    // A gateway's next report replaces its last one per app.
    let gw1 = json!({"gateway": "gw-1", "apps": [{"app": "hello", "held": 0, "in_flight": 1}]});
    assert_eq!(report(&p, GATEWAY_TOKEN, gw1).await, StatusCode::NO_CONTENT);
    let now = store.app_demand(Duration::from_secs(30)).await.unwrap();
    assert_eq!(now.get(&hello), Some(&demand(1, 3)), "{now:?}");
    // A report is the gateway's whole demand: an empty one clears what it reported.
    let empty = json!({"gateway": "gw-1", "apps": []});
    assert_eq!(
        report(&p, GATEWAY_TOKEN, empty).await,
        StatusCode::NO_CONTENT
    );
    let now = store.app_demand(Duration::from_secs(30)).await.unwrap();
    assert_eq!(now.get(&hello), Some(&demand(1, 2)), "{now:?}");

    // gw-1 stops reporting: after the staleness window only gw-2's fresh report counts.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(report(&p, GATEWAY_TOKEN, gw2).await, StatusCode::NO_CONTENT);
    let now = store.app_demand(Duration::from_secs(1)).await.unwrap();
    assert_eq!(now.get(&hello), Some(&demand(1, 2)), "{now:?}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let now = store.app_demand(Duration::from_secs(1)).await.unwrap();
    assert!(now.is_empty(), "every report is stale: {now:?}");
    assert_eq!(store.prune_demand(Duration::from_secs(1)).await.unwrap(), 2);

    // Only the gateway token opens it, and it opens nothing else.
    let body = json!({"gateway": "gw-1", "apps": []});
    assert_eq!(
        report(&p, TOKEN, body.clone()).await,
        StatusCode::UNAUTHORIZED
    );
    let (s, _) = p.call("GET", "/v1/apps", None, GATEWAY_TOKEN).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = p
        .call(
            "POST",
            "/v1/apps",
            Some(json!({"id": "sneaky"})),
            GATEWAY_TOKEN,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // Bad reports are 400 with nothing stored.
    let too_many: Vec<Value> = (0..10_001)
        .map(|i| json!({"app": format!("a{i}"), "held": 0, "in_flight": 1}))
        .collect();
    for bad in [
        json!({"gateway": "gw-1", "apps": too_many}),
        json!({"gateway": "GW", "apps": []}),
        json!({"gateway": "gw-1", "apps": [{"app": "hello", "held": -1, "in_flight": 0}]}),
    ] {
        assert_eq!(
            report(&p, GATEWAY_TOKEN, bad).await,
            StatusCode::BAD_REQUEST
        );
    }
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM gateway_demand")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(rows, 0);

    // An app's reports go with it.
    let body = json!({"gateway": "gw-3", "apps": [{"app": "other", "held": 1, "in_flight": 1}]});
    assert_eq!(
        report(&p, GATEWAY_TOKEN, body).await,
        StatusCode::NO_CONTENT
    );
    let (s, _) = p.call("DELETE", "/v1/apps/other", None, TOKEN).await;
    assert!(s.is_success(), "{s}");
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM gateway_demand")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(rows, 0);
}

#[tokio::test]
async fn without_a_gateway_token_the_demand_endpoint_does_not_exist() {
    // Empty is off (and overrides a CAAS_GATEWAY_TOKEN in the test's environment).
    let p = Platform::new(&["--gateway-token", ""]).await;
    let body = json!({"gateway": "gw-1", "apps": []});
    for token in [TOKEN, GATEWAY_TOKEN] {
        assert_eq!(report(&p, token, body.clone()).await, StatusCode::NOT_FOUND);
    }
}
