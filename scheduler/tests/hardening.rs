//! Container hardening per deployment against the real MariaDB, ZooKeeper, Docker engine and
//! registry: hello deployed with `read_only: true` and `user: "65534"` becomes healthy (a static
//! binary in a `FROM scratch` image writes nothing), its containers carry the user, the
//! read-only root with its `/tmp` tmpfs, the scheduler's log rotation and `nofile` flags; the
//! deployment shows both fields; a bad user is refused with nothing deployed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/db.rs"]
mod db;
#[path = "common/platform.rs"]
mod platform;

use caas_testkit::{eventually, var};
use platform::{Platform, TOKEN};
use reqwest::StatusCode;
use serde_json::json;

/// `docker inspect --format {format} {container}`, trimmed.
fn inspect(container: &str, format: &str) -> String {
    let out = std::process::Command::new("docker")
        .args([
            "-H",
            &var("CAAS_DOCKER"),
            "inspect",
            "--format",
            format,
            container,
        ])
        .output()
        .expect("the docker CLI runs (scripts/up installs it)");
    assert!(out.status.success(), "docker inspect {container}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_only_deployment_as_another_user_runs_healthy_with_the_platforms_limits() {
    let p = Platform::new(&[
        "--log-max-size-mb",
        "10",
        "--log-max-files",
        "3",
        "--container-nofile",
        "4096",
    ])
    .await;
    p.add_hosts(1, 512, 1.0).await;
    p.create_app("hello").await;

    // A bad user is refused before anything is claimed.
    let (s, e) = p
        .call(
            "POST",
            "/v1/apps/hello/deployments",
            Some(json!({"version": "v1", "memory_mb": 64, "cpus": 0.1, "user": "0;rm -rf /"})),
            TOKEN,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    p.assert_empty("after a refused user").await;

    let d = p
        .deploy(
            "hello",
            json!({"version": "v1", "instances": 2, "memory_mb": 64, "cpus": 0.1,
                   "read_only": true, "user": "65534"}),
        )
        .await;
    assert_eq!(
        (&d["user"], &d["read_only"]),
        (&json!("65534"), &json!(true)),
        "{d}"
    );

    // Both instances become running and healthy (the deploy answered 201 once they were).
    let containers: Vec<String> = eventually("two healthy instances", || async {
        let (s, list) = p.call("GET", "/v1/apps/hello/instances", None, TOKEN).await;
        assert_eq!(s, StatusCode::OK, "{list}");
        let list = list.as_array().cloned().unwrap_or_default();
        (list.len() == 2
            && list
                .iter()
                .all(|i| i["state"] == "running" && i["healthy"] == true))
        .then(|| {
            list.iter()
                .map(|i| i["container_id"].as_str().unwrap().to_owned())
                .collect()
        })
    })
    .await;
    for c in &containers {
        assert_eq!(
            inspect(c, "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} {{index .HostConfig.Tmpfs \"/tmp\"}} {{.HostConfig.LogConfig.Type}} {{index .HostConfig.LogConfig.Config \"max-size\"}} {{index .HostConfig.LogConfig.Config \"max-file\"}} {{range .HostConfig.Ulimits}}{{.Name}}={{.Soft}}:{{.Hard}}{{end}}"),
            format!(
                "65534 true {} json-file 10m 3 nofile=4096:4096",
                caas_deployer::READ_ONLY_TMPFS.1
            ),
            "{c}"
        );
    }

    // The app's view shows the fields with the deployment; a plain deployment has neither.
    let (s, app) = p.call("GET", "/v1/apps/hello", None, TOKEN).await;
    assert_eq!(s, StatusCode::OK, "{app}");
    let shown = app["deployments"]
        .as_array()
        .and_then(|ds| ds.iter().find(|d| d["version"] == "v1"))
        .cloned()
        .unwrap_or_else(|| panic!("v1 in {app}"));
    assert_eq!(
        (&shown["user"], &shown["read_only"]),
        (&json!("65534"), &json!(true)),
        "{app}"
    );
    let plain = p
        .deploy(
            "hello",
            json!({"version": "v2", "instances": 1, "memory_mb": 64, "cpus": 0.1}),
        )
        .await;
    assert!(plain.get("user").is_none(), "{plain}");
    assert_eq!(plain["read_only"], false, "{plain}");
}
