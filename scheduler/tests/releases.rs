//! Releases and rollback against the real MariaDB, ZooKeeper, Docker engine and registry: a
//! deploy records a release pinned to its tag's digest, and a tag pushed again changes neither
//! the release nor what a new container of it runs; rollback under a request loop loses no
//! request and leaves only the rolled-to release running, also when it rolls the version that
//! runs; unknown releases, deleted images and other tenants' apps are refused with nothing
//! changed.
//!
//! Images are copied between repositories through the registry's HTTP API (blob mounts and
//! manifest puts, as `docker push` does), into a repository named after a per-test app, so
//! re-pushing or deleting never touches the shared `hello` images.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/db.rs"]
mod db;
#[path = "common/image_registry.rs"]
mod image_registry;
#[path = "common/platform.rs"]
mod platform;
#[path = "common/traffic.rs"]
mod traffic;

use caas_testkit::{eventually, unique_u64, var};
use image_registry::ImageRegistry;
use platform::{Platform, TOKEN};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use traffic::{traffic_to, Traffic};

/// A fresh app id, so its registry repository is this test's alone.
fn unique_app() -> String {
    format!("rel{}", unique_u64() % 1_000_000_000)
}

/// The app's releases as the operator sees them.
async fn releases(p: &Platform, app: &str) -> Vec<Value> {
    let (s, v) = p
        .call("GET", &format!("/v1/apps/{app}/releases"), None, TOKEN)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v.as_array().cloned().unwrap()
}

async fn deployments(p: &Platform, app: &str) -> Vec<Value> {
    let (s, v) = p
        .call("GET", &format!("/v1/apps/{app}/deployments"), None, TOKEN)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v.as_array().cloned().unwrap()
}

/// The instances' `GET /` answers' `version`, by instance address.
async fn answers(deployment: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for i in platform::instances(deployment) {
        let addr = i["address"].as_str().unwrap();
        let body: Value = reqwest::get(format!("http://{addr}/"))
            .await
            .expect("instance answers")
            .json()
            .await
            .expect("hello's JSON");
        out.push(body["version"].as_str().unwrap().to_owned());
    }
    out
}

/// Which (version, release number) is active, newest first.
fn active(list: &[Value]) -> Vec<(String, u64)> {
    list.iter()
        .filter(|r| r["active"] == true)
        .map(|r| {
            (
                r["version"].as_str().unwrap().to_owned(),
                r["number"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_release_pins_its_digest_and_a_re_pushed_tag_changes_nothing_it_runs() {
    let p = Platform::new(&[]).await;
    p.add_hosts(1, 512, 2.0).await;
    let registry = ImageRegistry::new();
    let app = unique_app();
    p.create_app(&app).await;
    assert_eq!(
        releases(&p, &app).await,
        Vec::<Value>::new(),
        "a new app has none"
    );

    registry.copy("hello", "v1", &app, "v1").await;
    let d1 = registry.digest(&app, "v1").await.expect("pushed");
    let pinned = format!("{}/{app}@{d1}", var("CAAS_REGISTRY"));

    let d = p
        .deploy(
            &app,
            json!({"version": "v1", "instances": 1, "memory_mb": 64, "cpus": 0.1,
                   "env": {"A": "1"}}),
        )
        .await;
    assert_eq!(d["image"], pinned.as_str(), "instances run the digest");
    let list = releases(&p, &app).await;
    assert_eq!(list.len(), 1, "{list:?}");
    let r = &list[0];
    assert_eq!(r["number"], 1);
    assert_eq!(r["version"], "v1");
    assert_eq!(r["digest"], d1.as_str());
    assert_eq!(r["config_version"], 0);
    assert_eq!(r["created_by"], "operator");
    assert_eq!(r["active"], true);
    assert_eq!(r["spec"]["version"], "v1");
    assert_eq!(r["spec"]["memory_mb"], 64);
    assert_eq!(r["spec"]["env"]["A"], "1");
    assert!(r["created_at"].as_str().unwrap().ends_with('Z'));
    let containers = p.containers().await;
    assert_eq!(containers.len(), 1);
    assert_eq!(
        containers[0].image, pinned,
        "the container's image reference"
    );

    // Another image pushed under the same tag.
    registry.copy("hello", "v2", &app, "v1").await;
    let d2 = registry.digest(&app, "v1").await.expect("re-pushed");
    assert_ne!(d1, d2, "hello v1 and v2 are different images");

    // The release is unchanged, and a new container of it (a scale-up) runs the old digest:
    // it answers "v1" (the v2 image would answer "v2").
    assert_eq!(releases(&p, &app).await[0]["digest"], d1.as_str());
    let (s, d) = p
        .call(
            "PUT",
            &format!("/v1/apps/{app}/deployments/v1"),
            Some(json!({"instances": 2})),
            TOKEN,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(platform::instances(&d).len(), 2);
    assert_eq!(answers(&d).await, ["v1", "v1"]);
    for c in p.containers().await {
        assert_eq!(c.image, pinned, "container {}", c.name);
    }
    let list = releases(&p, &app).await;
    assert_eq!(list.len(), 1, "a scale records no release: {list:?}");

    // Undeploy records nothing and keeps the history; the release is no longer active.
    let (s, _) = p
        .call(
            "DELETE",
            &format!("/v1/apps/{app}/deployments/v1"),
            None,
            TOKEN,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let list = releases(&p, &app).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["active"], false);

    // A deploy of the tag now resolves to the new image and records it.
    let d = p
        .deploy(&app, json!({"version": "v1", "memory_mb": 64, "cpus": 0.1}))
        .await;
    assert_eq!(answers(&d).await, ["v2"]);
    let list = releases(&p, &app).await;
    assert_eq!(
        list.iter()
            .map(|r| (r["number"].as_u64().unwrap(), r["digest"].as_str().unwrap()))
            .collect::<Vec<_>>(),
        [(2, d2.as_str()), (1, d1.as_str())]
    );

    // Pages: newest first, `before` and `limit`; bad bounds are 400.
    let (_, page) = p
        .call(
            "GET",
            &format!("/v1/apps/{app}/releases?limit=1"),
            None,
            TOKEN,
        )
        .await;
    assert_eq!(page.as_array().unwrap().len(), 1);
    assert_eq!(page[0]["number"], 2);
    let (_, page) = p
        .call(
            "GET",
            &format!("/v1/apps/{app}/releases?limit=5&before=2"),
            None,
            TOKEN,
        )
        .await;
    assert_eq!(page.as_array().unwrap().len(), 1);
    assert_eq!(page[0]["number"], 1);
    for bad in ["limit=0", "limit=501", "before=0", "limit=x", "what=1"] {
        let (s, e) = p
            .call(
                "GET",
                &format!("/v1/apps/{app}/releases?{bad}"),
                None,
                TOKEN,
            )
            .await;
        assert_eq!(
            (s, e["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid")),
            "{bad}: {e}"
        );
    }

    // A tag the registry does not have is the deploy's 422, and records nothing.
    let (s, e) = p
        .call(
            "POST",
            &format!("/v1/apps/{app}/deployments"),
            Some(json!({"version": "v404", "memory_mb": 64, "cpus": 0.1})),
            TOKEN,
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["error"]["code"], "image_not_found");
    assert_eq!(releases(&p, &app).await.len(), 2);

    // Releases go with their app.
    let (s, _) = p
        .call("DELETE", &format!("/v1/apps/{app}"), None, TOKEN)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let store = p.db.store(1).await;
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM releases")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(n, 0);
    registry.delete(&app, &d2).await;
    registry.delete(&app, &d1).await;
}

/// A request loop on `app` for the length of `work`; panics on any failed request.
struct Load {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Traffic>>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    async fn start(p: &Platform, app: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Traffic::default()));
        let task = tokio::spawn(traffic_to(
            p.chroot.clone(),
            app.to_owned(),
            stop.clone(),
            seen.clone(),
        ));
        eventually("the loop gets answers", || async {
            (seen.lock().unwrap().total_ok() >= 10).then_some(())
        })
        .await;
        Load { stop, seen, task }
    }

    /// Lets the loop see `version` answer a few more times, stops it, and answers the count
    /// of successful requests per version; any failed request fails the test.
    async fn finish(self, version: &str) -> BTreeMap<String, u64> {
        let at = self
            .seen
            .lock()
            .unwrap()
            .ok_by_version
            .get(version)
            .copied()
            .unwrap_or(0);
        eventually("the loop reaches the rolled-to version", || async {
            (self
                .seen
                .lock()
                .unwrap()
                .ok_by_version
                .get(version)
                .copied()
                .unwrap_or(0)
                >= at + 10)
                .then_some(())
        })
        .await;
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("request loop");
        let seen = std::mem::take(&mut *self.seen.lock().unwrap());
        assert!(
            seen.failed.is_empty(),
            "failed requests during the rollback: {:?}",
            seen.failed
        );
        seen.ok_by_version
    }
}

/// POSTs a rollback asking for the NDJSON progress stream; the last line's event and body.
async fn rollback_streamed(p: &Platform, app: &str, body: Value) -> (String, Value) {
    let resp = p
        .http
        .post(format!("{}/v1/apps/{app}/rollback", p.api))
        .bearer_auth(TOKEN)
        .header(reqwest::header::ACCEPT, "application/x-ndjson")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.unwrap();
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert!(
        text.lines().count() > 1,
        "progress before the result: {text}"
    );
    (last["event"].as_str().unwrap().to_owned(), last)
}

fn container_ids(deployments: &[Value]) -> BTreeSet<String> {
    deployments
        .iter()
        .flat_map(platform::instances)
        .map(|i| i["container_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollback_under_load_runs_exactly_the_chosen_release_without_a_failed_request() {
    let p = Platform::new(&["--drain-ms", "300"]).await;
    p.add_hosts(2, 512, 2.0).await;
    p.create_app("hello").await;
    let registry = ImageRegistry::new();
    let d1 = registry
        .digest("hello", "v1")
        .await
        .expect("scripts/build-hello pushed hello:v1");
    let d2 = registry
        .digest("hello", "v2")
        .await
        .expect("scripts/build-hello pushed hello:v2");

    // Release 1: v1 with two instances and a variable; release 2: v2 with one, then v1 goes.
    p.deploy(
        "hello",
        json!({"version": "v1", "instances": 2, "memory_mb": 64, "cpus": 0.1,
               "env": {"GREETING": "one"}, "placement": {"spread": true}}),
    )
    .await;
    p.deploy(
        "hello",
        json!({"version": "v2", "instances": 1, "memory_mb": 96, "cpus": 0.1}),
    )
    .await;
    let (s, _) = p
        .call("DELETE", "/v1/apps/hello/deployments/v1", None, TOKEN)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(active(&releases(&p, "hello").await), [("v2".into(), 2)]);

    // Bad requests change nothing: unknown release 404, release 0 and bad bodies 400.
    let (s, e) = p
        .call(
            "POST",
            "/v1/apps/hello/rollback",
            Some(json!({"release": 99})),
            TOKEN,
        )
        .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found")),
        "{e}"
    );
    for bad in [
        json!({"release": 0}),
        json!({"release": "1"}),
        json!({"to": 1}),
    ] {
        let (s, e) = p
            .call("POST", "/v1/apps/hello/rollback", Some(bad.clone()), TOKEN)
            .await;
        assert_eq!(
            (s, e["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid")),
            "{bad}: {e}"
        );
    }
    // Another tenant sees neither the releases nor the rollback.
    let (s, t) = p
        .call("POST", "/v1/tenants", Some(json!({"name": "acme"})), TOKEN)
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let acme = t["token"].as_str().unwrap().to_owned();
    let (s, _) = p.call("GET", "/v1/apps/hello/releases", None, &acme).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = p
        .call(
            "POST",
            "/v1/apps/hello/rollback",
            Some(json!({"release": 1})),
            &acme,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(releases(&p, "hello").await.len(), 2);
    assert_eq!(deployments(&p, "hello").await.len(), 1);

    // Rollback with no number (a POST without a body): the release before the active one,
    // v1, under a steady stream of requests.
    let load = Load::start(&p, "hello").await;
    let resp = p
        .http
        .post(format!("{}/v1/apps/hello/rollback", p.api))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let d: Value = resp.json().await.unwrap();
    assert_eq!(d["version"], "v1");
    assert_eq!(d["image"], format!("{}/hello@{d1}", var("CAAS_REGISTRY")));
    assert_eq!(d["memory_mb"], 64, "release 1's spec");
    assert_eq!(platform::instances(&d).len(), 2);
    let ok = load.finish("v1").await;
    assert!(ok.get("v2").is_some_and(|n| *n > 0), "{ok:?}");
    println!("requests during the rollback v2 → v1: {ok:?}, 0 failed");

    let list = deployments(&p, "hello").await;
    assert_eq!(list.len(), 1, "only the rolled-to release runs: {list:?}");
    assert_eq!(list[0]["version"], "v1");
    let nodes = p.nodes().await;
    assert_eq!(nodes.len(), 2, "{nodes:?}");
    assert!(
        nodes.iter().all(|(path, _)| path.starts_with("hello/v1/")),
        "{nodes:?}"
    );
    assert_eq!(p.containers().await.len(), 2, "v2's container is gone");
    let hosts: BTreeSet<String> = platform::instances(&list[0])
        .iter()
        .map(|i| i["host"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(hosts.len(), 2, "placement (spread) of release 1");
    let rels = releases(&p, "hello").await;
    assert_eq!(rels.len(), 3);
    assert_eq!(rels[0]["number"], 3);
    assert_eq!(rels[0]["version"], "v1");
    assert_eq!(rels[0]["digest"], d1.as_str());
    assert_eq!(rels[0]["spec"], rels[2]["spec"], "release 1's spec");
    assert_eq!(rels[1]["digest"], d2.as_str());
    assert_eq!(active(&rels), [("v1".into(), 3)]);

    // Rollback to the version that runs: a roll of v1 (new instances healthy first, then the
    // old ones drained), not a 409; progress streamed.
    let before = container_ids(&list);
    let load = Load::start(&p, "hello").await;
    let (event, last) = rollback_streamed(&p, "hello", json!({"release": 1})).await;
    assert_eq!(event, "done", "{last}");
    assert_eq!(last["deployment"]["version"], "v1");
    load.finish("v1").await;
    let list = deployments(&p, "hello").await;
    assert_eq!(list.len(), 1, "{list:?}");
    let after = container_ids(&list);
    assert_eq!(after.len(), 2);
    assert!(
        before.is_disjoint(&after),
        "new containers: {before:?} → {after:?}"
    );
    assert_eq!(p.containers().await.len(), 2, "the old generation is gone");
    assert_eq!(p.nodes().await.len(), 2);
    let rels = releases(&p, "hello").await;
    assert_eq!(rels.len(), 4);
    assert_eq!(active(&rels), [("v1".into(), 4)]);

    // The version's key is the new generation's: scale and undeploy by version reach it.
    let (s, d) = p
        .call(
            "PUT",
            "/v1/apps/hello/deployments/v1",
            Some(json!({"instances": 1})),
            TOKEN,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    let (s, body) = p
        .call("DELETE", "/v1/apps/hello/deployments/v1", None, TOKEN)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    p.assert_empty("after the rollbacks and undeploy").await;
    assert_eq!(
        releases(&p, "hello").await.len(),
        4,
        "releases survive undeploy"
    );

    // Nothing runs: a rollback needs a number (409), and with one it deploys the release.
    let (s, e) = p.call("POST", "/v1/apps/hello/rollback", None, TOKEN).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("conflict")),
        "{e}"
    );
    let (s, d) = p
        .call(
            "POST",
            "/v1/apps/hello/rollback",
            Some(json!({"release": 2})),
            TOKEN,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(answers(&d).await, ["v2"]);
    assert_eq!(active(&releases(&p, "hello").await), [("v2".into(), 5)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_release_whose_image_was_deleted_is_refused_with_nothing_changed() {
    let p = Platform::new(&[]).await;
    p.add_hosts(1, 512, 2.0).await;
    let registry = ImageRegistry::new();
    let app = unique_app();
    p.create_app(&app).await;
    registry.copy("hello", "v1", &app, "v1").await;
    registry.copy("hello", "v2", &app, "v2").await;
    let d1 = registry.digest(&app, "v1").await.expect("pushed");
    let spec = |v: &str| json!({"version": v, "memory_mb": 64, "cpus": 0.1});
    p.deploy(&app, spec("v1")).await;
    p.deploy(&app, spec("v2")).await;
    let (s, _) = p
        .call(
            "DELETE",
            &format!("/v1/apps/{app}/deployments/v1"),
            None,
            TOKEN,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    registry.delete(&app, &d1).await;
    let before = (
        deployments(&p, &app).await,
        releases(&p, &app).await,
        p.nodes().await,
    );
    let (s, e) = p
        .call(
            "POST",
            &format!("/v1/apps/{app}/rollback"),
            Some(json!({"release": 1})),
            TOKEN,
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["error"]["code"], "image_not_found");
    assert!(
        e["error"]["message"].as_str().unwrap().contains(&d1),
        "the message names the digest: {e}"
    );
    let after = (
        deployments(&p, &app).await,
        releases(&p, &app).await,
        p.nodes().await,
    );
    assert_eq!(before, after, "nothing changed");
    assert_eq!(p.containers().await.len(), 1);

    let d2 = registry.digest(&app, "v2").await.expect("still there");
    let (s, _) = p
        .call("DELETE", &format!("/v1/apps/{app}"), None, TOKEN)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    registry.delete(&app, &d2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn history_is_bounded_but_an_active_release_is_never_pruned() {
    let p = Platform::new(&["--releases-keep", "2"]).await;
    p.add_hosts(1, 512, 2.0).await;
    p.create_app("hello").await;
    let spec = |v: &str| json!({"version": v, "memory_mb": 64, "cpus": 0.1});
    let undeploy = |v: &'static str| {
        let p = &p;
        async move {
            let (s, _) = p
                .call(
                    "DELETE",
                    &format!("/v1/apps/hello/deployments/{v}"),
                    None,
                    TOKEN,
                )
                .await;
            assert_eq!(s, StatusCode::NO_CONTENT);
        }
    };
    p.deploy("hello", spec("v2")).await; // 1: v2, keeps running throughout
    p.deploy("hello", spec("v1")).await; // 2: v1
    undeploy("v1").await;
    p.deploy("hello", spec("v1")).await; // 3: v1; keep 2 → 1 would go, but it is active
    undeploy("v1").await;
    p.deploy("hello", spec("v1")).await; // 4: v1; 2 (inactive) goes, 1 (active) stays
    let numbers: Vec<(u64, bool)> = releases(&p, "hello")
        .await
        .iter()
        .map(|r| {
            (
                r["number"].as_u64().unwrap(),
                r["active"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(numbers, [(4, true), (3, false), (1, true)]);
}
