//! The scheduler end to end against the real MariaDB, ZooKeeper, Docker engine and registry:
//! deploy with spread, limits, scale, undeploy, failed deploys leaving nothing, tenants, and the
//! reconciler repairing a scheduler killed mid-deploy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/db.rs"]
mod db;
#[path = "common/platform.rs"]
mod platform;

use caas_testkit::zk::super_client;
use caas_testkit::{eventually, var};
use platform::{instances, ping, Platform, TOKEN};
use reqwest::StatusCode;
use serde_json::json;
use std::collections::HashSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deploy_with_spread_scale_and_undeploy_leave_nothing_behind() {
    let p = Platform::new(&[]).await;
    p.add_hosts(3, 1024, 2.0).await;
    let app = p.create_app("hello").await;
    assert_eq!(app["domain"], "hello.caas.localhost");

    let d = p
        .deploy(
            "hello",
            json!({"version": "v1", "instances": 3, "memory_mb": 128, "cpus": 0.5, "port": 8080,
                   "placement": {"spread": true}}),
        )
        .await;
    let list = instances(&d);
    assert_eq!(list.len(), 3);
    let hosts: HashSet<&str> = list.iter().map(|i| i["host"].as_str().unwrap()).collect();
    assert_eq!(
        hosts.len(),
        3,
        "spread puts one instance per host: {list:?}"
    );

    // Each registered at the brief's path with "{hostIP}:{hostPort}", and answering /_ping.
    let nodes = p.nodes().await;
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    for i in &list {
        assert_eq!(i["state"], "running");
        assert_eq!(i["healthy"], true);
        let cid = i["container_id"].as_str().unwrap();
        let addr = i["address"].as_str().unwrap();
        assert!(
            nodes.contains(&(format!("hello/v1/{cid}"), addr.to_owned())),
            "{cid} at {addr} in {nodes:?}"
        );
        assert_eq!(ping(addr).await.as_deref(), Some("pong"));
        // Limits as asked, as the engine applied them.
        let status = p.docker.inspect(&cid.parse().unwrap()).await.unwrap();
        assert_eq!(status.limits.memory, Some(128 << 20));
        assert_eq!(status.limits.memory_swap, Some(128 << 20));
        assert_eq!(status.limits.nano_cpus, Some(500_000_000));
    }

    // A reconciliation pass changes nothing on a healthy platform, even though the three
    // "hosts" share one engine and each sees the others' containers.
    let report = p.control().reconciler.reconcile().await.expect("reconcile");
    assert_eq!(report, Default::default(), "nothing to repair");
    let mut now: Vec<String> = p
        .containers()
        .await
        .into_iter()
        .map(|c| c.id.to_string())
        .collect();
    let mut was: Vec<String> = list
        .iter()
        .map(|i| i["container_id"].as_str().unwrap().to_owned())
        .collect();
    now.sort();
    was.sort();
    assert_eq!(now, was, "the reconciler kept every container");

    // Scale 3 → 1 → 2.
    let (s, d) = p
        .call(
            "PUT",
            "/v1/apps/hello/deployments/v1",
            Some(json!({"instances": 1})),
            TOKEN,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(instances(&d).len(), 1);
    assert_eq!(p.containers().await.len(), 1);
    assert_eq!(p.nodes().await.len(), 1);
    let (s, d) = p
        .call(
            "PUT",
            "/v1/apps/hello/deployments/v1",
            Some(json!({"instances": 2})),
            TOKEN,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(instances(&d).len(), 2);
    assert_eq!(p.nodes().await.len(), 2);

    let (s, list) = p.call("GET", "/v1/apps/hello/instances", None, TOKEN).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list.as_array().map(Vec::len), Some(2));

    // Undeploy: no container, node, port or claim left.
    let (s, body) = p
        .call("DELETE", "/v1/apps/hello/deployments/v1", None, TOKEN)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    p.assert_empty("after undeploy").await;
    let (s, _) = p.call("DELETE", "/v1/apps/hello", None, TOKEN).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, body) = p.call("GET", "/v1/apps/hello", None, TOKEN).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_deploys_answer_precisely_and_leave_nothing() {
    let p = Platform::new(&[]).await;
    p.add_hosts(2, 512, 1.0).await;
    p.create_app("hello").await;

    let cases = [
        // A tag the registry does not have.
        (
            json!({"version": "v404", "instances": 2, "memory_mb": 64, "cpus": 0.1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "image_not_found",
        ),
        // 10 TiB of memory: valid input, no host can take it.
        (
            json!({"version": "v1", "instances": 1, "memory_mb": 10u64 * 1024 * 1024, "cpus": 0.1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unplaceable",
        ),
        // More instances than all hosts hold together: nothing may stay claimed.
        (
            json!({"version": "v1", "instances": 9, "memory_mb": 128, "cpus": 0.1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unplaceable",
        ),
        // Invalid version.
        (
            json!({"version": "../v1", "instances": 1, "memory_mb": 64, "cpus": 0.1}),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            json!({"version": "v1", "instances": 1, "memory_mb": 64, "cpus": 0.1, "oops": true}),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
    ];
    for (body, status, code) in cases {
        let (s, e) = p
            .call(
                "POST",
                "/v1/apps/hello/deployments",
                Some(body.clone()),
                TOKEN,
            )
            .await;
        assert_eq!(
            (s, e["error"]["code"].as_str()),
            (status, Some(code)),
            "{body} → {e}"
        );
        p.assert_empty(&format!("after {body}")).await;
        let (_, deps) = p
            .call("GET", "/v1/apps/hello/deployments", None, TOKEN)
            .await;
        assert_eq!(deps, json!([]), "no deployment row after {body}");
    }

    // Invalid ids in the path and the body.
    let (s, e) = p
        .call(
            "POST",
            "/v1/apps/Bad_App/deployments",
            Some(json!({"version": "v1", "memory_mb": 64, "cpus": 0.1})),
            TOKEN,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    let (s, e) = p
        .call("POST", "/v1/apps", Some(json!({"id": "-bad"})), TOKEN)
        .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid")),
        "{e}"
    );
    let (s, _) = p
        .call("POST", "/v1/apps", Some(json!({"id": "hello"})), TOKEN)
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = p.call("GET", "/v1/apps", None, "wrong-token").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    p.assert_empty("at the end").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_cannot_see_or_change_another_tenants_app() {
    let p = Platform::new(&[]).await;
    let mut tokens = Vec::new();
    for (name, suffix) in [("acme", "example.com"), ("globex", "globex.example")] {
        let body = json!({"name": name, "domains": [suffix]});
        let (s, t) = p.call("POST", "/v1/tenants", Some(body), TOKEN).await;
        assert_eq!(s, StatusCode::CREATED, "{t}");
        tokens.push(t["token"].as_str().unwrap().to_owned());
    }
    let (acme, globex) = (&tokens[0], &tokens[1]);
    let (s, _) = p
        .call("POST", "/v1/apps", Some(json!({"id": "shop"})), acme)
        .await;
    assert_eq!(s, StatusCode::CREATED);

    let (s, list) = p.call("GET", "/v1/apps", None, globex).await;
    assert_eq!((s, list), (StatusCode::OK, json!([])));
    for (method, path) in [
        ("GET", "/v1/apps/shop"),
        ("DELETE", "/v1/apps/shop"),
        ("GET", "/v1/apps/shop/instances"),
    ] {
        let (s, _) = p.call(method, path, None, globex).await;
        assert_eq!(
            s,
            StatusCode::NOT_FOUND,
            "{method} {path} as another tenant"
        );
    }
    let (s, _) = p
        .call(
            "POST",
            "/v1/apps/shop/deployments",
            Some(json!({"version": "v1", "memory_mb": 64, "cpus": 0.1})),
            globex,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Operator-only endpoints.
    for path in ["/v1/hosts", "/v1/tenants", "/v1/blacklist"] {
        let (s, _) = p.call("GET", path, None, acme).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path} as a tenant");
    }
    // A custom domain: in ZooKeeper for the gateways; restored by the reconciler if lost.
    let (s, _) = p
        .call(
            "POST",
            "/v1/apps/shop/domains",
            Some(json!({"domain": "shop.example.com"})),
            acme,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let node = format!("{}/caas/domains/shop.example.com", p.chroot);
    let zk = super_client().await;
    assert_eq!(zk.get_data(&node).await.expect("domain node").0, b"shop");
    zk.delete(&node, None)
        .await
        .expect("delete the node behind the scheduler's back");
    // This pass restores it, unless the leader's own periodic pass (every 2 s here) got there
    // first: either way the node is back after it, and restored once.
    let report = p.control().reconciler.reconcile().await.expect("reconcile");
    assert!(report.nodes <= 1, "{report:?}");
    assert_eq!(
        zk.get_data(&node).await.expect("domain node restored").0,
        b"shop"
    );
    let (s, _) = p
        .call(
            "DELETE",
            "/v1/apps/shop/domains/shop.example.com",
            None,
            globex,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "another tenant cannot remove it");
    let (s, _) = p
        .call(
            "DELETE",
            "/v1/apps/shop/domains/shop.example.com",
            None,
            acme,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(zk.get_data(&node).await.is_err(), "domain node removed");

    // The owner and the operator see it.
    let (s, _) = p.call("GET", "/v1/apps/shop", None, acme).await;
    assert_eq!(s, StatusCode::OK);
    let (s, list) = p.call("GET", "/v1/apps", None, TOKEN).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list[0]["tenant"], "acme");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_reconciler_repairs_a_scheduler_killed_mid_deploy() {
    let mut p = Platform::new(&[]).await;
    p.add_hosts(2, 1024, 2.0).await;
    p.create_app("hello").await;
    // The in-process scheduler steps aside; a real process takes over and is killed with
    // SIGKILL as soon as its deploy has started containers.
    p.stop().await;
    let port = platform::free_port();
    let exe = env!("CARGO_BIN_EXE_caas-scheduler");
    let mut child = p.spawn_process(port, exe, &["--reconcile-secs", "3600"]);
    let api = format!("http://127.0.0.1:{port}");
    platform::wait_serving(&api).await;
    let http = reqwest::Client::new();
    let mut resp = http
        .post(format!("{api}/v1/apps/hello/deployments"))
        .bearer_auth(TOKEN)
        .header("accept", "application/x-ndjson")
        .json(&json!({"version": "v1", "instances": 2, "memory_mb": 64, "cpus": 0.1}))
        .send()
        .await
        .expect("deploy request");
    assert!(resp.status().is_success());
    let mut seen = String::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        seen.push_str(&String::from_utf8_lossy(&chunk));
        if seen.contains("\"stage\":\"starting\"") {
            break;
        }
    }
    assert!(
        seen.contains("\"stage\":\"starting\""),
        "the deploy got as far as starting a container: {seen}"
    );
    child.kill().expect("kill -9 the scheduler");
    let _ = child.wait();

    // A new scheduler with short timeouts repairs what the dead one left.
    p.config = p.config_with(&[
        "--start-timeout-secs",
        "2",
        "--drain-ms",
        "0",
        "--stop-grace-secs",
        "1",
        "--reconcile-secs",
        "1",
    ]);
    p.start().await;
    let store = p.db.store(2).await;
    eventually("the half-done deploy is finished or rolled back", || {
        let store = store.clone();
        let p = &p;
        async move {
            let deployments = store.list_all_deployments().await.ok()?;
            let rows = store.list_all_instances().await.ok()?;
            let containers = p.containers().await;
            let nodes = p.nodes().await;
            let settled = deployments
                .iter()
                .all(|d| d.state == caas_scheduler::store::DeploymentState::Running)
                && rows
                    .iter()
                    .all(|r| r.state == caas_types::InstanceState::Running)
                && containers.len() == rows.len()
                && nodes.len() == rows.len();
            settled.then_some(())
        }
    })
    .await;
    // The claims match what is left.
    let hosts = store.list_hosts().await.unwrap();
    let rows = store.list_all_instances().await.unwrap();
    for h in hosts {
        let held: u64 = rows
            .iter()
            .filter(|r| r.host_id == h.id)
            .map(|r| r.memory)
            .sum();
        assert_eq!(
            h.mem_free + held,
            h.mem_total,
            "claims on {} match the instance rows",
            h.name
        );
    }
    // And undeploying what is left leaves nothing.
    if !rows.is_empty() {
        let (s, body) = p
            .call("DELETE", "/v1/apps/hello/deployments/v1", None, TOKEN)
            .await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    }
    p.assert_empty("after repair").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_global_deployment_reaches_a_host_added_later() {
    let p = Platform::new(&[]).await;
    p.add_hosts(2, 1024, 2.0).await;
    p.create_app("hello").await;
    let d = p
        .deploy(
            "hello",
            json!({"version": "v1", "memory_mb": 64, "cpus": 0.1,
                   "placement": {"global": true}}),
        )
        .await;
    assert_eq!(instances(&d).len(), 2, "one per host: {d}");

    // A third host joins after the deploy; the next reconciliation pass gives it its instance.
    let (s, body) = p
        .call(
            "POST",
            "/v1/hosts",
            Some(
                json!({"name": "h3", "address": p.host_ip(3), "docker": var("CAAS_DOCKER"),
                        "memory_mb": 1024, "cpus": 2.0, "ports": "25700-25799"}),
            ),
            TOKEN,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let report = p.control().reconciler.reconcile().await.expect("reconcile");
    assert_eq!(report.topped_up, 1, "{report:?}");
    let (s, d) = p
        .call("GET", "/v1/apps/hello/deployments/v1", None, TOKEN)
        .await;
    assert_eq!(s, StatusCode::OK);
    let list = instances(&d);
    let hosts: HashSet<&str> = list.iter().filter_map(|i| i["host"].as_str()).collect();
    assert_eq!(hosts, HashSet::from(["h1", "h2", "h3"]), "{d}");
    let on_h3 = list
        .iter()
        .find(|i| i["host"] == "h3")
        .and_then(|i| i["address"].as_str())
        .expect("an instance on h3");
    assert!(ping(on_h3).await.is_some(), "the new instance answers");
    // A second pass finds nothing more to do.
    let again = p.control().reconciler.reconcile().await.expect("reconcile");
    assert_eq!(again.topped_up, 0, "{again:?}");

    let (s, _) = p
        .call("DELETE", "/v1/apps/hello/deployments/v1", None, TOKEN)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    p.assert_empty("after undeploying the global deployment")
        .await;
}
