//! Events and webhooks against the real MariaDB, ZooKeeper, Docker engine and registry: a
//! deploy emits `deploy.started`, `deploy.succeeded` and `release.created`, readable as a page
//! and through a follower; a tenant reads only its apps' events; a webhook registered to a
//! local HTTP server receives the events it subscribed to, signed with HMAC-SHA256 of the body;
//! bad webhooks (`file://`, credentials, unknown types) are refused with nothing stored; an
//! app's events go with it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/db.rs"]
mod db;
#[path = "common/platform.rs"]
mod platform;

use axum::body::Bytes;
use axum::http::HeaderMap;
use caas_scheduler::app_config::crypto::SecretsKey;
use caas_testkit::eventually;
use hmac::{Hmac, Mac};
use platform::{Platform, TOKEN};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Sha256;
use std::sync::{Arc, Mutex};

const KEY: &str = "e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7";
const HOOK_SECRET: &str = "hook-secret-for-the-test";

fn types(list: &[Value]) -> Vec<&str> {
    list.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

/// What the test's webhook server received: headers and body of each POST.
type Received = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// An HTTP server on 127.0.0.1 that records every POST to `/hook`; its URL.
async fn hook_server(received: Received) -> String {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let received = received.clone();
            async move {
                received.lock().unwrap().push((headers, body));
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the webhook server");
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

/// Follows `/v1/events?follow=true{query}`, sending each line's event to the returned list.
async fn follow(p: &Platform, query: &str, token: &str) -> Arc<Mutex<Vec<Value>>> {
    let mut resp = p
        .http
        .get(format!("{}/v1/events?follow=true{query}", p.api))
        .bearer_auth(token)
        .send()
        .await
        .expect("admin API reachable");
    assert_eq!(resp.status(), StatusCode::OK);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let out = seen.clone();
    tokio::spawn(async move {
        let mut buf = Vec::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            buf.extend_from_slice(&chunk);
            while let Some(end) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=end).collect();
                let ev: Value = serde_json::from_slice(&line).expect("one JSON event per line");
                out.lock().unwrap().push(ev);
            }
        }
    });
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deploy_emits_events_that_pages_followers_and_a_signed_webhook_receive() {
    let p = Platform::new(&["--secrets-key", KEY]).await;
    p.add_hosts(1, 1024, 2.0).await;
    p.create_app("hello").await;
    assert!(
        p.events("?app=hello", TOKEN).await.is_empty(),
        "a new app has no events"
    );

    // Bad webhooks are refused and store nothing.
    let received: Received = Arc::default();
    let url = hook_server(received.clone()).await;
    for (bad, why) in [
        (
            json!({"url": "file:///etc/passwd", "events": ["deploy.failed"], "secret": "x"}),
            "file://",
        ),
        (
            json!({"url": "http://user:pw@127.0.0.1/", "events": ["deploy.failed"], "secret": "x"}),
            "credentials",
        ),
        (
            json!({"url": "http:///hook", "events": ["deploy.failed"], "secret": "x"}),
            "no host",
        ),
        (
            json!({"url": url, "events": ["deploy.exploded"], "secret": "x"}),
            "unknown type",
        ),
        (json!({"url": url, "events": [], "secret": "x"}), "no type"),
        (
            json!({"url": url, "events": ["deploy.failed"], "secret": ""}),
            "empty secret",
        ),
    ] {
        let (s, e) = p.call("POST", "/v1/webhooks", Some(bad), TOKEN).await;
        assert_eq!(
            (s, e["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid")),
            "{why}: {e}"
        );
    }
    let (s, list) = p.call("GET", "/v1/webhooks", None, TOKEN).await;
    assert_eq!((s, list), (StatusCode::OK, json!([])));

    let (s, hook) = p
        .call(
            "POST",
            "/v1/webhooks",
            Some(
                json!({"url": url, "events": ["deploy.succeeded", "release.created"],
                        "secret": HOOK_SECRET}),
            ),
            TOKEN,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{hook}");
    assert_eq!(hook["url"], url.as_str());
    assert_eq!(
        hook["events"],
        json!(["deploy.succeeded", "release.created"])
    );
    assert!(
        hook.get("secret").is_none(),
        "the secret is write-only: {hook}"
    );
    assert!(!hook.to_string().contains(HOOK_SECRET));
    let hook_id = hook["id"].as_str().unwrap().to_owned();
    // Sealed at rest: the raw row holds no plaintext.
    let store = &p.control().store;
    let raw = store.get_webhook(&hook_id).await.unwrap().unwrap();
    assert!(!raw.sealed_secret.contains(HOOK_SECRET));
    let key = SecretsKey::parse(KEY).unwrap();
    assert_eq!(
        key.open_webhook(&hook_id, &raw.sealed_secret)
            .unwrap()
            .into_inner(),
        HOOK_SECRET
    );

    let followed = follow(&p, "", TOKEN).await;
    p.deploy(
        "hello",
        json!({"version": "v1", "instances": 1, "memory_mb": 64, "cpus": 0.1}),
    )
    .await;

    // A page: newest first, every line `{"id", "ts", "type", "app", ...}`.
    let page = p.events("?app=hello", TOKEN).await;
    assert_eq!(
        types(&page),
        ["release.created", "deploy.succeeded", "deploy.started"],
        "{page:?}"
    );
    for ev in &page {
        assert_eq!(ev["app"], "hello");
        assert!(ev["ts"].as_str().unwrap().ends_with('Z'), "{ev}");
    }
    assert_eq!(page[0]["version"], "v1");
    assert_eq!(page[0]["release"], 1);
    let ids: Vec<i64> = page.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    // Pages: `limit` and `before`.
    let first = p.events("?limit=1", TOKEN).await;
    assert_eq!(first, page[..1]);
    let older = p
        .events(&format!("?limit=2&before={}", ids[0]), TOKEN)
        .await;
    assert_eq!(older, page[1..]);
    for bad in [
        "?limit=0",
        "?limit=1001",
        "?before=0",
        "?limit=x",
        "?nope=1",
    ] {
        let (s, _) = p
            .call("GET", &format!("/v1/events{bad}"), None, TOKEN)
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");
    }

    // The follower got the same events, oldest first.
    let mut want = page.clone();
    want.reverse();
    eventually("the follower receives the deploy's events", || {
        let got = followed.lock().unwrap().clone();
        let done = (got == want).then_some(());
        async move { done }
    })
    .await;

    // The webhook got the two it subscribed to, signed.
    let deliveries = eventually("the webhook receives two events", || {
        let got = received.lock().unwrap().clone();
        let done = (got.len() >= 2).then_some(got);
        async move { done }
    })
    .await;
    let mut delivered_types = Vec::new();
    for (headers, body) in &deliveries {
        let mut mac = Hmac::<Sha256>::new_from_slice(HOOK_SECRET.as_bytes()).unwrap();
        mac.update(body);
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            headers["x-caas-signature"].to_str().unwrap(),
            format!("sha256={hex}"),
            "the signature is HMAC-SHA256 of the body"
        );
        let ev: Value = serde_json::from_slice(body).expect("a JSON body");
        assert_eq!(headers["x-caas-event"].to_str().unwrap(), ev["type"]);
        assert_eq!(ev["app"], "hello");
        assert!(page.contains(&ev), "{ev} is one of the stored events");
        delivered_types.push(ev["type"].as_str().unwrap().to_owned());
    }
    delivered_types.sort();
    assert_eq!(delivered_types, ["deploy.succeeded", "release.created"]);

    // A tenant reads only its apps' events, and neither sees nor removes the operator's webhook.
    let (s, t) = p
        .call("POST", "/v1/tenants", Some(json!({"name": "acme"})), TOKEN)
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let acme = t["token"].as_str().unwrap().to_owned();
    let (s, _) = p
        .call("POST", "/v1/apps", Some(json!({"id": "shop"})), &acme)
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert!(
        p.events("", &acme).await.is_empty(),
        "no events of its own yet"
    );
    let acme_followed = follow(&p, "", &acme).await;
    let (s, e) = p
        .call(
            "PATCH",
            "/v1/apps/shop/config",
            Some(json!({"vars": {"GREETING": "hi"}})),
            &acme,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    let mine = p.events("", &acme).await;
    assert!(types(&mine).contains(&"config.changed"), "{mine:?}");
    assert!(mine.iter().all(|e| e["app"] == "shop"), "{mine:?}");
    let changed = mine.iter().find(|e| e["type"] == "config.changed").unwrap();
    assert_eq!(changed["vars"], json!(["GREETING"]));
    let (s, _) = p.call("GET", "/v1/events?app=hello", None, &acme).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "another's app");
    let all = p.events("", TOKEN).await;
    assert!(all.iter().any(|e| e["app"] == "shop"));
    assert!(all.iter().any(|e| e["app"] == "hello"));
    eventually("the tenant's follower gets its config change", || {
        let got = acme_followed.lock().unwrap().clone();
        let done = got
            .iter()
            .any(|e| e["type"] == "config.changed")
            .then_some(());
        async move { done }
    })
    .await;
    assert!(
        acme_followed
            .lock()
            .unwrap()
            .iter()
            .all(|e| e["app"] == "shop"),
        "a tenant's follower sees only its apps"
    );
    let (s, list) = p.call("GET", "/v1/webhooks", None, &acme).await;
    assert_eq!((s, list), (StatusCode::OK, json!([])));
    let (s, _) = p
        .call("DELETE", &format!("/v1/webhooks/{hook_id}"), None, &acme)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // The operator's webhook: listed, then removed.
    let (s, list) = p.call("GET", "/v1/webhooks", None, TOKEN).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], hook_id.as_str());
    let (s, _) = p
        .call("DELETE", &format!("/v1/webhooks/{hook_id}"), None, TOKEN)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, list) = p.call("GET", "/v1/webhooks", None, TOKEN).await;
    assert_eq!((s, list), (StatusCode::OK, json!([])));

    // An app's events go with it.
    let (s, _) = p
        .call("DELETE", "/v1/apps/hello/deployments/v1", None, TOKEN)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        types(&p.events("?app=hello&limit=1", TOKEN).await),
        ["deployment.removed"]
    );
    let (s, _) = p.call("DELETE", "/v1/apps/hello", None, TOKEN).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let left = p.events("", TOKEN).await;
    assert!(left.iter().all(|e| e["app"] != "hello"), "{left:?}");
    assert!(left.iter().any(|e| e["app"] == "shop"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotation_reseals_webhook_secrets() {
    let p = Platform::new(&["--secrets-key", KEY]).await;
    let (s, hook) = p
        .call(
            "POST",
            "/v1/webhooks",
            Some(
                json!({"url": "https://hooks.example.com/", "events": ["deploy.failed"],
                        "secret": HOOK_SECRET}),
            ),
            TOKEN,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{hook}");
    let id = hook["id"].as_str().unwrap();
    let store = &p.control().store;
    let old = SecretsKey::parse(KEY).unwrap();
    let new = SecretsKey::from_bytes(&[9; 32]);
    let done = caas_scheduler::app_config::rotate(store, &old, &new)
        .await
        .unwrap();
    assert_eq!(done.resealed, 1);
    let raw = store.get_webhook(id).await.unwrap().unwrap();
    assert_eq!(
        new.open_webhook(id, &raw.sealed_secret)
            .unwrap()
            .into_inner(),
        HOOK_SECRET
    );
    assert!(old.open_webhook(id, &raw.sealed_secret).is_err());
    // Run again: nothing left to do.
    let again = caas_scheduler::app_config::rotate(store, &old, &new)
        .await
        .unwrap();
    assert_eq!((again.resealed, again.already), (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_secrets_key_webhooks_are_refused() {
    let p = Platform::new(&["--secrets-key", ""]).await;
    let (s, e) = p
        .call(
            "POST",
            "/v1/webhooks",
            Some(
                json!({"url": "https://hooks.example.com/", "events": ["deploy.failed"],
                        "secret": "x"}),
            ),
            TOKEN,
        )
        .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("secrets_disabled")),
        "{e}"
    );
    let (s, list) = p.call("GET", "/v1/webhooks", None, TOKEN).await;
    assert_eq!((s, list), (StatusCode::OK, json!([])));
}
