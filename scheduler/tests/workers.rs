//! Workers (`"port": null`) and `command` against the real MariaDB, ZooKeeper, Docker engine and
//! registry, with the busybox image (`scripts/build-busybox`): a worker holds no host port and
//! has no route; a worker that exits is restarted in place (`on_failure: "restart"`) or replaced
//! (`"replace"`), supervised by its container's state; `command` reaches the container of a
//! worker and of an HTTP deployment and shows in the deployment's view; bad input is a 400 with
//! nothing left behind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/db.rs"]
mod db;
#[path = "common/platform.rs"]
mod platform;

use caas_testkit::{eventually, var, HOW};
use caas_types::InstanceState;
use platform::{instances, Platform, TOKEN};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// `docker inspect -f {format} {id}` on the engine the tests use, trimmed.
fn inspect(id: &str, format: &str) -> String {
    let out = std::process::Command::new("docker")
        .args(["-H", &var("CAAS_DOCKER"), "inspect", "-f", format, id])
        .output()
        .unwrap_or_else(|e| panic!("running docker inspect ({e}): {HOW}"));
    assert!(
        out.status.success(),
        "docker inspect {id}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Runs the docker CLI against the engine the tests use.
fn docker(args: &[&str]) {
    let out = std::process::Command::new("docker")
        .args(["-H", &var("CAAS_DOCKER")])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running docker {args:?} ({e}): {HOW}"));
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn field<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str()
        .unwrap_or_else(|| panic!("no string {k} in {v}"))
}

/// A busybox worker request: no port, `command`, 32 MiB and 0.1 CPU per instance.
fn worker(instances: u32, command: &[&str], on_failure: &str) -> Value {
    json!({"version": "v1", "instances": instances, "memory_mb": 32, "cpus": 0.1, "port": null,
           "command": command, "health": {"on_failure": on_failure}})
}

/// Undeploys `app`'s `version`, then checks nothing is left.
async fn undeploy(p: &Platform, app: &str, version: &str) {
    let (s, body) = p
        .call(
            "DELETE",
            &format!("/v1/apps/{app}/deployments/{version}"),
            None,
            TOKEN,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    p.assert_empty(&format!("after undeploying {app}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_has_no_port_no_route_and_runs_its_command() {
    let p = Platform::new(&[]).await;
    p.add_hosts(2, 1024, 2.0).await;
    p.create_app("busybox").await;
    let d = p
        .deploy(
            "busybox",
            json!({"version": "v1", "instances": 2, "memory_mb": 32, "cpus": 0.1, "port": null,
                   "placement": {"spread": true}, "env": {"GREETING": "hi"},
                   "command": ["sh", "-c", "echo worker-says-$GREETING; exec sleep 600"]}),
        )
        .await;
    // The view says what it is: no port, its command; its instances have no address.
    assert_eq!(d["port"], Value::Null, "{d}");
    assert_eq!(
        d["command"],
        json!(["sh", "-c", "echo worker-says-$GREETING; exec sleep 600"])
    );
    let list = instances(&d);
    assert_eq!(list.len(), 2, "{d}");
    for i in &list {
        assert_eq!(i["address"], Value::Null, "{i}");
        assert_eq!(
            (i["state"].as_str(), i["healthy"].as_bool()),
            (Some("running"), Some(true))
        );
        let cid = field(i, "container_id");
        assert_eq!(inspect(cid, "{{json .NetworkSettings.Ports}}"), "{}");
        let bindings = inspect(cid, "{{json .HostConfig.PortBindings}}");
        assert!(matches!(bindings.as_str(), "null" | "{}"), "{bindings}");
        assert_eq!(
            inspect(cid, "{{json .Config.Cmd}}"),
            r#"["sh","-c","echo worker-says-$GREETING; exec sleep 600"]"#
        );
        assert!(!inspect(cid, "{{json .Config.Env}}").contains("PORT="));
    }
    let started: Vec<String> = list
        .iter()
        .map(|i| inspect(field(i, "container_id"), "{{.State.StartedAt}}"))
        .collect();
    let (_, shown) = p
        .call("GET", "/v1/apps/busybox/deployments/v1", None, TOKEN)
        .await;
    assert_eq!(
        (&shown["port"], &shown["command"]),
        (&d["port"], &d["command"])
    );

    // No host port held, no address node, however long we look.
    let store = p.db.store(2).await;
    let rows = store.list_all_instances().await.expect("instances");
    assert!(rows.iter().all(|r| r.host_port.is_none()), "{rows:?}");
    assert!(p.nodes().await.is_empty(), "{:?}", p.nodes().await);
    let report = p.control().reconciler.reconcile().await.expect("reconcile");
    assert_eq!(report, Default::default(), "nothing to repair for workers");
    assert!(p.nodes().await.is_empty(), "{:?}", p.nodes().await);

    // The command ran: its line is in the app's logs.
    eventually("the worker's line in the app's logs", || async {
        let text = p
            .http
            .get(format!("{}/v1/apps/busybox/logs?tail=100", p.api))
            .bearer_auth(TOKEN)
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.contains("worker-says-hi").then_some(())
    })
    .await;

    // An HTTP deployment beside it takes the first port of the range: the workers took none.
    // Its command reaches its container too (hello's entrypoint ignores the arguments).
    p.create_app("hello").await;
    let h = p
        .deploy(
            "hello",
            json!({"version": "v1", "instances": 1, "memory_mb": 32, "cpus": 0.1,
                   "command": ["--an-argument"]}),
        )
        .await;
    assert_eq!(h["port"], 8080);
    let hi = &instances(&h)[0];
    assert!(field(hi, "address").ends_with(":25700"), "{hi}");
    assert_eq!(
        inspect(field(hi, "container_id"), "{{json .Config.Cmd}}"),
        r#"["--an-argument"]"#
    );
    assert_eq!(p.nodes().await.len(), 1, "only hello is routed");
    let (s, body) = p
        .call("DELETE", "/v1/apps/hello/deployments/v1", None, TOKEN)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    // The workers ran all along: the same containers as deployed.
    let mut now: Vec<String> = p
        .containers()
        .await
        .iter()
        .map(|c| c.id.to_string())
        .collect();
    let mut was: Vec<String> = list
        .iter()
        .map(|i| field(i, "container_id").to_owned())
        .collect();
    now.sort();
    was.sort();
    assert_eq!(now, was);
    for (i, at) in list.iter().zip(&started) {
        let cid = field(i, "container_id");
        assert_eq!(
            inspect(cid, "{{.State.Running}} {{.State.StartedAt}}"),
            format!("true {at}"),
            "never restarted"
        );
    }
    undeploy(&p, "busybox", "v1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_that_exits_is_restarted_in_place() {
    let p = Platform::new(&[]).await;
    p.add_hosts(1, 1024, 2.0).await;
    p.create_app("busybox").await;
    // Its first run exits 1 after a second; the run after a restart in place finds the mark
    // its first run left in the same container's file system, and stays up.
    let once = "if [ -e /tmp/ran ]; then exec sleep 600; fi; touch /tmp/ran; sleep 1; exit 1";
    let d = p
        .deploy("busybox", worker(1, &["sh", "-c", once], "restart"))
        .await;
    let first = &instances(&d)[0];
    let (id, cid) = (field(first, "id"), field(first, "container_id"));
    let started = inspect(cid, "{{.State.StartedAt}}");

    let store = p.db.store(2).await;
    eventually("the exited worker restarted in place", || async {
        let rows = store.list_all_instances().await.ok()?;
        let [row] = rows.as_slice() else {
            return None;
        };
        let again = inspect(cid, "{{.State.Running}} {{.State.StartedAt}}");
        (row.id.as_str() == id
            && row
                .container_id
                .as_ref()
                .map(ToString::to_string)
                .as_deref()
                == Some(cid)
            && row.state == InstanceState::Running
            && row.healthy
            && again.starts_with("true ")
            && !again.ends_with(&started))
        .then_some(())
    })
    .await;
    // Told as a health transition each way.
    let events = p.events("?app=busybox", TOKEN).await;
    let types: Vec<&str> = events.iter().map(|e| field(e, "type")).collect();
    assert!(
        types.contains(&"instance.unhealthy") && types.contains(&"instance.healthy"),
        "{types:?}"
    );
    undeploy(&p, "busybox", "v1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_that_exits_is_replaced_when_the_policy_says_replace() {
    let p = Platform::new(&[]).await;
    p.add_hosts(2, 1024, 2.0).await;
    p.create_app("busybox").await;
    let d = p
        .deploy("busybox", worker(1, &["sleep", "600"], "replace"))
        .await;
    let first = &instances(&d)[0];
    let (id, cid) = (field(first, "id"), field(first, "container_id"));
    // It exits (137), behind the platform's back.
    docker(&["kill", cid]);

    let store = p.db.store(2).await;
    let new = eventually("the exited worker replaced by a new instance", || async {
        let rows = store.list_all_instances().await.ok()?;
        let [row] = rows.as_slice() else {
            return None;
        };
        let live = p.containers().await;
        let new_cid = row.container_id.as_ref()?.to_string();
        (row.id.as_str() != id
            && row.state == InstanceState::Running
            && row.host_port.is_none()
            && live.len() == 1
            && live[0].id.to_string() == new_cid)
            .then(|| row.clone())
    })
    .await;
    assert_ne!(
        new.container_id
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some(cid)
    );
    let events = p.events("?app=busybox", TOKEN).await;
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "instance.replaced" && e["instance"] == id),
        "{events:?}"
    );
    assert!(p.nodes().await.is_empty());
    undeploy(&p, "busybox", "v1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_commands_and_ports_are_400_and_leave_nothing() {
    let p = Platform::new(&[]).await;
    p.add_hosts(1, 1024, 2.0).await;
    p.create_app("busybox").await;
    let base = json!({"version": "v1", "instances": 1, "memory_mb": 32, "cpus": 0.1});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    for (body, says) in [
        (with("command", json!([])), "command"),
        (with("command", json!(["sh", ""])), "command[1]"),
        (with("command", json!(["a\u{0}b"])), "command[0]"),
        (with("command", json!("sh -c true")), "command"),
        (with("command", json!([1])), "command"),
        (with("port", json!(0)), "port"),
        (with("port", json!("none")), "port"),
    ] {
        let (s, e) = p
            .call(
                "POST",
                "/v1/apps/busybox/deployments",
                Some(body.clone()),
                TOKEN,
            )
            .await;
        assert_eq!(
            (s, e["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid")),
            "{body} → {e}"
        );
        let message = e["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{body} → {message}");
        p.assert_empty(&format!("after {body}")).await;
        let (_, deps) = p
            .call("GET", "/v1/apps/busybox/deployments", None, TOKEN)
            .await;
        assert_eq!(deps, json!([]), "no deployment row after {body}");
    }
}
