//! Registry notifications against the real MariaDB, ZooKeeper, Docker engine and registry:
//! the hook's auth and validation, pushed tags recorded and listed, and auto-deploy rolling a
//! running app to a pushed tag with no failed request (and keeping the old version when the
//! roll fails). Events are posted in distribution's own envelope format; the path from a real
//! `docker push` through the registry is exercised by the compose check.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/db.rs"]
mod db;
#[path = "common/platform.rs"]
mod platform;
#[path = "common/traffic.rs"]
mod traffic;

use caas_testkit::eventually;
use platform::{Platform, TOKEN};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use traffic::{traffic, Traffic};

const HOOK: &str = "registry-hook-test-token";
const EVENTS_TYPE: &str = "application/vnd.docker.distribution.events.v1+json";
const MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

fn digest(n: u8) -> String {
    format!("sha256:{}", format!("{n:02x}").repeat(32))
}

/// One event as distribution sends it.
fn event(action: &str, media: &str, repo: &str, tag: Option<&str>, digest: &str) -> Value {
    let mut target = json!({
        "mediaType": media, "size": 528, "length": 528, "digest": digest,
        "repository": repo, "url": format!("http://127.0.0.1:5000/v2/{repo}/manifests/{digest}"),
    });
    if let Some(t) = tag {
        target["tag"] = json!(t);
    }
    json!({
        "id": format!("evt-{repo}-{}", tag.unwrap_or("none")),
        "timestamp": "2026-11-22T06:10:01.402973972Z",
        "action": action,
        "target": target,
        "request": {"id": "req-1", "addr": "127.0.0.1:40000", "host": "127.0.0.1:5000",
                    "method": "PUT", "useragent": "docker/27.5.1"},
        "actor": {"name": "operator"},
        "source": {"addr": "registry:5000", "instanceID": "a53db899-3b4b-4a62-a067-8dd013beaca4"},
    })
}

fn push(repo: &str, tag: &str, digest: &str) -> Value {
    event("push", MANIFEST, repo, Some(tag), digest)
}

/// POSTs raw bytes to the hook with an optional bearer token.
async fn post_raw(p: &Platform, body: Vec<u8>, token: Option<&str>) -> (StatusCode, Value) {
    let mut req = p
        .http
        .post(format!("{}/v1/registry/events", p.api))
        .header(reqwest::header::CONTENT_TYPE, EVENTS_TYPE)
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("admin API reachable");
    let status = resp.status();
    let bytes = resp.bytes().await.expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Delivers `events` as one envelope with the hook token; the report of a 200.
async fn deliver(p: &Platform, events: Vec<Value>) -> Value {
    let body = serde_json::to_vec(&json!({ "events": events })).unwrap();
    let (s, report) = post_raw(p, body, Some(HOOK)).await;
    assert_eq!(s, StatusCode::OK, "{report}");
    report
}

/// The value of one sample of the scheduler's `/metrics`.
async fn metric(p: &Platform, sample: &str) -> u64 {
    let text = p
        .http
        .get(format!("{}/metrics", p.api))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{sample} not in /metrics:\n{text}"))
}

async fn tags(p: &Platform, app: &str) -> Vec<Value> {
    let (s, v) = p
        .call("GET", &format!("/v1/apps/{app}/tags"), None, TOKEN)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v.as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registry_events_are_off_without_a_hook_token() {
    // Empty overrides a CAAS_REGISTRY_HOOK_TOKEN that `.caas/env` may export.
    let p = Platform::new(&["--registry-hook-token", ""]).await;
    let body = serde_json::to_vec(&json!({"events": [push("hello", "v1", &digest(1))]})).unwrap();
    let (s, e) = post_raw(&p, body, Some(HOOK)).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");
    assert_eq!(e["error"]["code"], "not_found");
    assert_eq!(
        e["error"]["message"],
        "registry notifications are not configured"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_hook_authenticates_validates_and_ignores_what_is_not_a_tagged_push() {
    let p = Platform::new(&["--registry-hook-token", HOOK]).await;
    p.create_app("hello").await;
    let good = serde_json::to_vec(&json!({"events": [push("hello", "v1", &digest(1))]})).unwrap();

    // Missing, wrong, or another principal's token: 401 with our error body; nothing recorded.
    for token in [None, Some("wrong"), Some(TOKEN)] {
        let (s, e) = post_raw(&p, good.clone(), token).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{token:?}: {e}");
        assert_eq!(e["error"]["code"], "unauthorized");
    }
    assert!(tags(&p, "hello").await.is_empty());

    // Not an envelope: 400.
    for junk in [
        &b"not json"[..],
        b"",
        b"{}",
        br#"{"events":{}}"#,
        br#"{"events":[1]}"#,
        br#"{"events":[{"action":7}]}"#,
    ] {
        let (s, e) = post_raw(&p, junk.to_vec(), Some(HOOK)).await;
        assert_eq!(
            (s, e["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid")),
            "{}: {e}",
            String::from_utf8_lossy(junk)
        );
    }

    // Pulls, blob pushes and pushes by digest are ignored; a push to a repository that is no
    // app, or named in a way caas cannot use, is answered 200 and not recorded.
    let d = digest(2);
    let report = deliver(
        &p,
        vec![
            event("pull", MANIFEST, "hello", Some("v1"), &d),
            event(
                "push",
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "hello",
                None,
                &d,
            ),
            event("push", MANIFEST, "hello", None, &d),
            event("delete", MANIFEST, "hello", Some("v1"), &d),
            push("nosuchapp", "v1", &d),
            push("team/hello", "v1", &d),
            push("hello", "v1", "md5"),
        ],
    )
    .await;
    assert_eq!(
        report,
        json!({"recorded": 0, "ignored": 4, "invalid": 2, "unknown_app": 1, "not_allowed": 0,
               "auto_deploys": 0})
    );
    assert!(tags(&p, "hello").await.is_empty());
    assert_eq!(
        metric(
            &p,
            "caas_scheduler_registry_events_total{result=\"ignored\"}"
        )
        .await,
        4
    );
    assert_eq!(
        metric(
            &p,
            "caas_scheduler_registry_events_total{result=\"unknown_app\"}"
        )
        .await,
        1
    );

    // Any content type is accepted, and unknown fields are ignored.
    let mut ev = push("hello", "v1", &digest(1));
    ev["surprise"] = json!({"nested": true});
    let resp = p
        .http
        .post(format!("{}/v1/registry/events", p.api))
        .bearer_auth(HOOK)
        .header(reqwest::header::CONTENT_TYPE, "text/plain")
        .body(serde_json::to_vec(&json!({"events": [ev], "extra": 1})).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(tags(&p, "hello").await.len(), 1);

    // A push by an actor not allowed to push the repository changes nothing: another tenant,
    // a bare name, no actor at all. The owning tenant's push (`tenant:{name}`, as registry
    // tokens name it) is recorded.
    let (s, t) = p
        .call("POST", "/v1/tenants", Some(json!({"name": "acme"})), TOKEN)
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let acme = t["token"].as_str().unwrap().to_owned();
    let (s, a) = p
        .call("POST", "/v1/apps", Some(json!({"id": "acme-web"})), &acme)
        .await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    let by = |actor: Value| {
        let mut ev = push("acme-web", "v1", &digest(3));
        ev["actor"] = actor;
        ev
    };
    let report = deliver(
        &p,
        vec![
            by(json!({"name": "tenant:other"})),
            by(json!({"name": "acme"})),
            by(json!({})),
        ],
    )
    .await;
    assert_eq!(
        (report["not_allowed"].as_u64(), report["recorded"].as_u64()),
        (Some(3), Some(0))
    );
    assert!(tags(&p, "acme-web").await.is_empty());
    // The operator's app is not the tenant's to push either.
    let mut ev = push("hello", "v9", &digest(4));
    ev["actor"] = json!({"name": "tenant:acme"});
    assert_eq!(deliver(&p, vec![ev]).await["not_allowed"], 1);
    assert_eq!(
        metric(
            &p,
            "caas_scheduler_registry_events_total{result=\"not_allowed\"}"
        )
        .await,
        4
    );
    let report = deliver(&p, vec![by(json!({"name": "tenant:acme"}))]).await;
    assert_eq!(report["recorded"], 1, "{report}");
    assert_eq!(tags(&p, "acme-web").await[0]["pushed_by"], "tenant:acme");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_are_recorded_listed_newest_first_and_toggled_per_app() {
    let p = Platform::new(&["--registry-hook-token", HOOK]).await;
    let app = p.create_app("hello").await;
    assert_eq!(app["auto_deploy"], false);

    let report = deliver(&p, vec![push("hello", "v1", &digest(1))]).await;
    assert_eq!(report["recorded"], 1);
    assert_eq!(report["auto_deploys"], 0, "auto-deploy is off");
    let list = tags(&p, "hello").await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["app"], "hello");
    assert_eq!(list[0]["tag"], "v1");
    assert_eq!(list[0]["digest"], digest(1).as_str());
    assert_eq!(list[0]["media_type"], MANIFEST);
    assert_eq!(list[0]["pushed_by"], "operator");
    let v1_at = list[0]["pushed_at"].as_str().unwrap().to_owned();
    assert!(v1_at.ends_with('Z') && v1_at.len() == 24, "{v1_at}");

    // v2 pushed later is listed first. Pushes are upserts, so deliver again until the
    // database clock has moved past v1's millisecond.
    let list = eventually("v2 listed after v1 with a later time", || async {
        deliver(&p, vec![push("hello", "v2", &digest(2))]).await;
        let list = tags(&p, "hello").await;
        (list[0]["tag"] == "v2" && list[0]["pushed_at"].as_str()? > v1_at.as_str()).then_some(list)
    })
    .await;
    assert_eq!(list.len(), 2);
    let v2_at = list[0]["pushed_at"].as_str().unwrap().to_owned();

    // A re-push of v1 (a new image under the same tag) updates its digest and time.
    let list = eventually("v1 re-pushed listed first with its new digest", || async {
        deliver(&p, vec![push("hello", "v1", &digest(3))]).await;
        let list = tags(&p, "hello").await;
        (list[0]["tag"] == "v1" && list[0]["pushed_at"].as_str()? > v2_at.as_str()).then_some(list)
    })
    .await;
    assert_eq!(list.len(), 2, "still one row per tag: {list:?}");
    assert_eq!(list[0]["digest"], digest(3).as_str());
    assert_eq!(list[1]["tag"], "v2");

    // PATCH: auto-deploy on and off; bad bodies are 400 with our error body.
    let (s, a) = p
        .call(
            "PATCH",
            "/v1/apps/hello",
            Some(json!({"auto_deploy": true})),
            TOKEN,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert_eq!(a["auto_deploy"], true);
    let (_, a) = p.call("GET", "/v1/apps/hello", None, TOKEN).await;
    assert_eq!(a["auto_deploy"], true);
    for bad in [
        json!({}),
        json!({"auto_deploy": "yes"}),
        json!({"auto_deploy": true, "instances": 3}),
    ] {
        let (s, e) = p
            .call("PATCH", "/v1/apps/hello", Some(bad.clone()), TOKEN)
            .await;
        assert_eq!(
            (s, e["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid")),
            "{bad}: {e}"
        );
    }
    let (s, _) = p
        .call(
            "PATCH",
            "/v1/apps/nosuch",
            Some(json!({"auto_deploy": true})),
            TOKEN,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Same visibility as the other app endpoints: another tenant sees neither.
    let (s, t) = p
        .call("POST", "/v1/tenants", Some(json!({"name": "acme"})), TOKEN)
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let acme = t["token"].as_str().unwrap().to_owned();
    let (s, _) = p.call("GET", "/v1/apps/hello/tags", None, &acme).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = p
        .call(
            "PATCH",
            "/v1/apps/hello",
            Some(json!({"auto_deploy": false})),
            &acme,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // With nothing deployed, a push to an auto-deploy app is recorded and the roll is skipped.
    let report = deliver(&p, vec![push("hello", "v3", &digest(4))]).await;
    assert_eq!(
        (report["recorded"].as_u64(), report["auto_deploys"].as_u64()),
        (Some(1), Some(1))
    );
    eventually("the roll skipped", || async {
        (metric(&p, "caas_scheduler_auto_deploys_total{result=\"skipped\"}").await == 1)
            .then_some(())
    })
    .await;

    // Tags go with their app.
    let (s, _) = p.call("DELETE", "/v1/apps/hello", None, TOKEN).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let store = p.db.store(1).await;
    let left = store.list_tags(&"hello".parse().unwrap()).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
}

/// What the request loop saw.
/// Successful answers from `version`'s instances.
fn v(seen: &Traffic, version: &str) -> u64 {
    seen.ok_by_version.get(version).copied().unwrap_or(0)
}

async fn deployments(p: &Platform) -> Vec<Value> {
    let (s, v) = p
        .call("GET", "/v1/apps/hello/deployments", None, TOKEN)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v.as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn auto_deploy_rolls_to_a_pushed_tag_without_a_failed_request() {
    let p = Platform::new(&["--registry-hook-token", HOOK, "--drain-ms", "300"]).await;
    p.add_hosts(2, 512, 2.0).await;
    p.create_app("hello").await;
    p.deploy(
        "hello",
        json!({"version": "v1", "instances": 2, "memory_mb": 64, "cpus": 0.1,
               "env": {"GREETING": "hi"}, "placement": {"spread": true}}),
    )
    .await;

    // Auto-deploy off: the push is only recorded.
    let report = deliver(&p, vec![push("hello", "v2", &digest(2))]).await;
    assert_eq!(
        (report["recorded"].as_u64(), report["auto_deploys"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(tags(&p, "hello").await[0]["tag"], "v2");
    let list = deployments(&p).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["version"], "v1");
    for result in ["ok", "failed", "skipped"] {
        let sample = format!("caas_scheduler_auto_deploys_total{{result=\"{result}\"}}");
        assert_eq!(metric(&p, &sample).await, 0, "{sample}");
    }

    let (s, _) = p
        .call(
            "PATCH",
            "/v1/apps/hello",
            Some(json!({"auto_deploy": true})),
            TOKEN,
        )
        .await;
    assert_eq!(s, StatusCode::OK);

    // A tag the registry does not have: the roll fails, v1 keeps running untouched.
    let report = deliver(&p, vec![push("hello", "v404", &digest(9))]).await;
    assert_eq!(report["auto_deploys"], 1);
    eventually("the failed roll counted", || async {
        (metric(&p, "caas_scheduler_auto_deploys_total{result=\"failed\"}").await == 1)
            .then_some(())
    })
    .await;
    let list = deployments(&p).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["version"], "v1");
    assert_eq!(list[0]["instance_list"].as_array().unwrap().len(), 2);
    assert_eq!(p.nodes().await.len(), 2);

    // The roll to v2, under a steady stream of requests.
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Traffic::default()));
    let load = tokio::spawn(traffic(p.chroot.clone(), stop.clone(), seen.clone()));
    eventually("the loop reaches v1", || async {
        (v(&seen.lock().unwrap(), "v1") >= 10).then_some(())
    })
    .await;
    let report = deliver(&p, vec![push("hello", "v2", &digest(2))]).await;
    assert_eq!(report["auto_deploys"], 1);
    let list = eventually("only v2 deployed, both instances running", || async {
        let list = deployments(&p).await;
        let done = list.len() == 1
            && list[0]["version"] == "v2"
            && list[0]["instance_list"].as_array().is_some_and(|i| {
                i.len() == 2
                    && i.iter()
                        .all(|x| x["state"] == "running" && x["healthy"] == true)
            });
        done.then_some(list)
    })
    .await;
    let v2 = &list[0];
    assert_eq!(v2["memory_mb"], 64, "the spec of v1 carried over");
    assert_eq!(v2["cpus"], 0.1);
    assert_eq!(v2["port"], 8080);
    let hosts: std::collections::HashSet<&str> = v2["instance_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts.len(), 2, "placement (spread) carried over");
    eventually("the roll counted", || async {
        (metric(&p, "caas_scheduler_auto_deploys_total{result=\"ok\"}").await == 1).then_some(())
    })
    .await;
    // The roll is a release of the pushed tag, pinned to its digest, and the only active one.
    let (_, releases) = p.call("GET", "/v1/apps/hello/releases", None, TOKEN).await;
    let releases = releases.as_array().cloned().unwrap_or_default();
    assert_eq!(releases.len(), 2, "{releases:?}");
    assert_eq!(releases[0]["version"], "v2");
    assert_eq!(releases[0]["created_by"], "auto-deploy");
    assert_eq!(
        releases[0]["spec"]["env"]["GREETING"], "hi",
        "v1's request carried over"
    );
    assert_eq!(
        (
            releases[0]["active"].as_bool(),
            releases[1]["active"].as_bool()
        ),
        (Some(true), Some(false))
    );
    assert!(
        v2["image"].as_str().unwrap().contains("/hello@sha256:"),
        "{v2}"
    );
    let nodes = p.nodes().await;
    assert_eq!(nodes.len(), 2, "{nodes:?}");
    assert!(
        nodes.iter().all(|(path, _)| path.starts_with("hello/v2/")),
        "{nodes:?}"
    );
    let containers = p.containers().await;
    assert_eq!(
        containers.len(),
        2,
        "v1's containers are gone: {containers:?}"
    );

    // Two pushes back to back (v1 again, then v2): the second waits for the first roll, and
    // the app ends on the newest push. Whether the v1 roll ran or was overtaken depends on
    // timing; either way each push is counted once, and no request fails.
    const OK: &str = "caas_scheduler_auto_deploys_total{result=\"ok\"}";
    const SKIPPED: &str = "caas_scheduler_auto_deploys_total{result=\"skipped\"}";
    deliver(&p, vec![push("hello", "v1", &digest(1))]).await;
    deliver(&p, vec![push("hello", "v2", &digest(2))]).await;
    eventually("both pushes handled", || async {
        (metric(&p, OK).await + metric(&p, SKIPPED).await == 3).then_some(())
    })
    .await;
    let list = deployments(&p).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["version"], "v2");
    assert_eq!(p.nodes().await.len(), 2);

    // Let the loop see v2 serve for a while, then stop it.
    let ok_v2_at_end = v(&seen.lock().unwrap(), "v2");
    eventually("the loop reaches v2 after the roll", || async {
        (v(&seen.lock().unwrap(), "v2") >= ok_v2_at_end + 10).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    load.await.expect("request loop");
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert!(
        seen.failed.is_empty(),
        "failed requests during the roll: {:?}",
        seen.failed
    );
    assert!(
        v(&seen, "v1") > 0 && v(&seen, "v2") > 0,
        "both versions answered: {seen:?}"
    );
    println!(
        "requests during the roll: v1 {} ok, v2 {} ok, 0 failed",
        v(&seen, "v1"),
        v(&seen, "v2")
    );

    // The same tag again (a redelivery): nothing to do.
    let skipped = metric(&p, SKIPPED).await;
    deliver(&p, vec![push("hello", "v2", &digest(2))]).await;
    eventually("the repeat skipped", || async {
        (metric(&p, SKIPPED).await == skipped + 1).then_some(())
    })
    .await;
    assert_eq!(deployments(&p).await.len(), 1);

    let (s, body) = p
        .call("DELETE", "/v1/apps/hello/deployments/v2", None, TOKEN)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    p.assert_empty("after the roll and undeploy").await;
}
