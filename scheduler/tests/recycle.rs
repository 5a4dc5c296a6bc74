//! Killing, recycling and per-deployment stop grace against the real MariaDB, ZooKeeper,
//! Docker engine and registry: `DELETE /v1/apps/{app}/instances/{id}` replaces the instance
//! with a new container under load with no failed request, its container gone; the leader
//! recycles every instance past `recycle_after_s` with no failed request; `stop_timeout_s`
//! reaches the container (its `StopTimeout`), and bad values are refused with nothing deployed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/db.rs"]
mod db;
#[path = "common/platform.rs"]
mod platform;
#[path = "common/traffic.rs"]
mod traffic;

use caas_testkit::{eventually, var};
use platform::{Platform, TOKEN};
use reqwest::StatusCode;
use serde_json::json;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use traffic::{traffic, Traffic};

/// The app's instances: (id, container id, running and healthy).
async fn listed(p: &Platform) -> Vec<(String, String, bool)> {
    let (s, list) = p.call("GET", "/v1/apps/hello/instances", None, TOKEN).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    list.as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap().to_owned(),
                i["container_id"].as_str().unwrap_or_default().to_owned(),
                i["state"] == "running" && i["healthy"] == true,
            )
        })
        .collect()
}

/// Exactly `count` instances, all running and healthy: their ids, once that holds.
async fn settled(p: &Platform, count: usize) -> HashSet<String> {
    eventually("the instances settle", || async {
        let l = listed(p).await;
        (l.len() == count && l.iter().all(|i| i.2)).then(|| l.into_iter().map(|i| i.0).collect())
    })
    .await
}

/// A container's `Config.StopTimeout` as the engine recorded it.
fn stop_timeout(container: &str) -> String {
    let out = std::process::Command::new("docker")
        .args(["-H", &var("CAAS_DOCKER"), "inspect", "--format"])
        .arg("{{.Config.StopTimeout}}")
        .arg(container)
        .output()
        .expect("the docker CLI runs (scripts/up installs it)");
    assert!(out.status.success(), "docker inspect {container}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Starts the request loop and waits until it has had answers.
async fn start_load(
    p: &Platform,
) -> (
    Arc<AtomicBool>,
    Arc<Mutex<Traffic>>,
    tokio::task::JoinHandle<()>,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Traffic::default()));
    let load = tokio::spawn(traffic(p.chroot.clone(), stop.clone(), seen.clone()));
    eventually("the loop reaches the instances", || async {
        (seen.lock().unwrap().total_ok() >= 10).then_some(())
    })
    .await;
    (stop, seen, load)
}

/// Waits for `more` further answers, stops the loop and asserts nothing failed.
async fn finish_load(
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Traffic>>,
    load: tokio::task::JoinHandle<()>,
    more: u64,
) {
    let now = seen.lock().unwrap().total_ok();
    eventually("the loop reaches the new instances", || async {
        (seen.lock().unwrap().total_ok() >= now + more).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    load.await.expect("request loop");
    let seen = seen.lock().unwrap();
    assert!(seen.failed.is_empty(), "failed requests: {:?}", seen.failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_an_instance_replaces_it_without_a_failed_request() {
    let p = Platform::new(&["--drain-ms", "300"]).await;
    p.add_hosts(2, 512, 2.0).await;
    p.create_app("hello").await;
    p.create_app("other").await;

    // Bad values are refused, and nothing is deployed.
    for bad in [
        json!({"stop_timeout_s": 601}),
        json!({"stop_timeout_s": -1}),
        json!({"recycle_after_s": 59}),
        json!({"recycle_after_s": 2_592_001}),
    ] {
        let mut body = json!({"version": "v1", "instances": 2, "memory_mb": 64, "cpus": 0.1});
        body.as_object_mut()
            .unwrap()
            .extend(bad.as_object().unwrap().clone());
        let (s, e) = p
            .call("POST", "/v1/apps/hello/deployments", Some(body), TOKEN)
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {e}");
        assert_eq!(e["error"]["code"], "invalid", "{e}");
    }
    assert!(listed(&p).await.is_empty());

    let d = p
        .deploy(
            "hello",
            json!({"version": "v1", "instances": 2, "memory_mb": 64, "cpus": 0.1,
                   "placement": {"spread": true}, "stop_timeout_s": 1}),
        )
        .await;
    assert_eq!(d["stop_timeout_s"], 1, "{d}");
    assert!(d.get("recycle_after_s").is_none(), "{d}");
    let before = settled(&p, 2).await;
    // The grace period reaches the containers (the global one is 2 here).
    for (_, container, _) in listed(&p).await {
        assert_eq!(stop_timeout(&container), "1");
    }
    // ... and the instance rows teardown reads it from.
    let store = p.db.store(2).await;
    for row in store
        .list_instances_by_app(&"hello".parse().unwrap())
        .await
        .unwrap()
    {
        assert_eq!(row.stop_timeout_s, Some(1), "{row:?}");
    }

    // Unknown instances, instances of another app and another tenant's are not found.
    let victim = before.iter().next().unwrap().clone();
    let (s, t) = p
        .call(
            "POST",
            "/v1/tenants",
            Some(json!({"name": "globex"})),
            TOKEN,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let globex = t["token"].as_str().unwrap().to_owned();
    let path = format!("/v1/apps/hello/instances/{victim}");
    let (s, e) = p.call("DELETE", &path, None, &globex).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "another tenant: {e}");
    for path in [
        "/v1/apps/hello/instances/hello-nosuchinstance".to_owned(),
        format!("/v1/apps/other/instances/{victim}"),
        format!("/v1/apps/nowhere/instances/{victim}"),
    ] {
        let (s, e) = p.call("DELETE", &path, None, TOKEN).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}: {e}");
    }

    assert_eq!(settled(&p, 2).await, before, "nothing was killed");
    let (stop, seen, load) = start_load(&p).await;
    let victim_container = listed(&p)
        .await
        .into_iter()
        .find(|i| i.0 == victim)
        .unwrap()
        .1;
    let (s, killed) = p
        .call(
            "DELETE",
            &format!("/v1/apps/hello/instances/{victim}"),
            None,
            TOKEN,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{killed}");
    assert_eq!(killed["id"], victim.as_str(), "{killed}");
    let after = settled(&p, 2).await;
    assert!(!after.contains(&victim), "{after:?}");
    assert_eq!(
        after.intersection(&before).count(),
        1,
        "only the killed one was replaced: {before:?} {after:?}"
    );
    let gone = p
        .containers()
        .await
        .iter()
        .all(|c| c.id.as_str() != victim_container);
    assert!(gone, "the killed container is removed");
    assert_eq!(p.nodes().await.len(), 2, "{:?}", p.nodes().await);
    finish_load(stop, seen, load, 20).await;

    // Killing it again: it is gone.
    let (s, _) = p
        .call(
            "DELETE",
            &format!("/v1/apps/hello/instances/{victim}"),
            None,
            TOKEN,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let killed = p.events("?app=hello", TOKEN).await;
    assert!(
        killed
            .iter()
            .any(|e| e["type"] == "instance.killed" && e["instance"] == victim.as_str()),
        "an instance.killed event names the victim: {killed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recycling_replaces_every_instance_without_a_failed_request() {
    let p = Platform::new(&["--drain-ms", "300", "--min-recycle-after-s", "1"]).await;
    p.add_hosts(2, 512, 2.0).await;
    p.create_app("hello").await;
    let d = p
        .deploy(
            "hello",
            json!({"version": "v1", "instances": 2, "memory_mb": 64, "cpus": 0.1,
                   "placement": {"spread": true}, "recycle_after_s": 5}),
        )
        .await;
    assert_eq!(d["recycle_after_s"], 5, "{d}");
    assert!(d.get("stop_timeout_s").is_none(), "{d}");
    let before = settled(&p, 2).await;
    // Without `stop_timeout_s` the containers get the scheduler's --stop-grace-secs (2 here).
    for (_, container, _) in listed(&p).await {
        assert_eq!(stop_timeout(&container), "2");
    }
    let (stop, seen, load) = start_load(&p).await;

    // Every instance is replaced (and the count holds meanwhile: at most one extra).
    eventually("every instance is recycled", || async {
        let l = listed(&p).await;
        assert!(l.len() <= 3, "one at a time: {l:?}");
        let ids: HashSet<String> = l.iter().map(|i| i.0.clone()).collect();
        (l.len() == 2 && l.iter().all(|i| i.2) && ids.is_disjoint(&before)).then_some(())
    })
    .await;
    finish_load(stop, seen, load, 20).await;
    let recycled = p.events("?app=hello", TOKEN).await;
    let count = recycled
        .iter()
        .filter(|e| e["type"] == "instance.recycled")
        .count();
    assert!(
        count >= 2,
        "one instance.recycled per replaced instance: {recycled:?}"
    );
}
