//! App config and secrets against the real MariaDB, ZooKeeper, Docker engine and registry: a new
//! app's empty config; bad changes refused precisely with nothing changed; secrets refused
//! without a key; a config change rolling every instance (a new one healthy before the old one
//! drains) with no failed request, the new values in the containers' environment; a restart the
//! same way; and a secret's value found nowhere but in the container: not in any API answer,
//! not in the scheduler's log, not in the database's rows.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/db.rs"]
mod db;
#[path = "common/platform.rs"]
mod platform;
#[path = "common/traffic.rs"]
mod traffic;

use caas_testkit::{eventually, unique_u64, var};
use platform::{instances, Platform, TOKEN};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::Row;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use traffic::{traffic, Traffic};

/// A key for the tests' schedulers (any 32 bytes; tests never share a database).
const KEY: &str = "5ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2";

/// Everything every scheduler in this test binary logs, at debug level and above, through the
/// daemons' own filter (`caas_service::env_filter`), `log` records of dependencies (bollard's
/// request bodies among them) included.
fn captured_log() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        tracing_subscriber::fmt()
            .with_env_filter(caas_service::env_filter(
                "debug,zookeeper_client=info,h2=info,hyper=info,hyper_util=info",
            ))
            .with_ansi(false)
            .with_writer(move || Capture(sink.clone()))
            .try_init()
            .expect("one subscriber per test binary");
        buf
    })
}

/// A `Write` into the shared buffer.
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn config(p: &Platform, app: &str) -> Value {
    let (s, c) = p
        .call("GET", &format!("/v1/apps/{app}/config"), None, TOKEN)
        .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    c
}

async fn patch(p: &Platform, app: &str, body: Value) -> (StatusCode, Value) {
    p.call(
        "PATCH",
        &format!("/v1/apps/{app}/config"),
        Some(body),
        TOKEN,
    )
    .await
}

/// Every row of `app_config` as text, as a person with SQL access would read it.
async fn raw_config_rows(p: &Platform) -> Vec<String> {
    let store = p.db.store(1).await;
    let rows = sqlx::query(
        "SELECT CONCAT_WS('|', app_id, version, CAST(vars AS CHAR), CAST(secrets AS CHAR)) AS raw \
         FROM app_config",
    )
    .fetch_all(store.pool())
    .await
    .expect("read app_config");
    rows.iter()
        .map(|r| {
            let raw: Vec<u8> = r.try_get("raw").expect("raw column");
            String::from_utf8_lossy(&raw).into_owned()
        })
        .collect()
}

/// The environment of a container, as the engine holds it.
fn container_env(id: &str) -> BTreeMap<String, String> {
    let out = std::process::Command::new("docker")
        .args(["-H", &var("CAAS_DOCKER"), "inspect", "--format"])
        .arg("{{range .Config.Env}}{{println .}}{{end}}")
        .arg(id)
        .output()
        .expect("the docker CLI runs (scripts/up installs it)");
    assert!(out.status.success(), "docker inspect {id}: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_app_has_an_empty_config_and_bad_changes_change_nothing() {
    captured_log();
    let p = Platform::new(&["--secrets-key", KEY]).await;
    p.create_app("hello").await;
    assert_eq!(
        config(&p, "hello").await,
        json!({"version": 0, "vars": {}, "secrets": []})
    );

    let big = "x".repeat(64 * 1024);
    for (body, status, expected) in [
        (json!({}), StatusCode::BAD_REQUEST, "nothing to change"),
        (
            json!({"vars": {}, "secrets": {}}),
            StatusCode::BAD_REQUEST,
            "nothing to change",
        ),
        (
            json!({"vars": {"1A": "x"}}),
            StatusCode::BAD_REQUEST,
            "names use letters, digits and '_'",
        ),
        (
            json!({"secrets": {"DB-PASSWORD": "x"}}),
            StatusCode::BAD_REQUEST,
            "names use letters, digits and '_'",
        ),
        (
            json!({"vars": {"A": "a\u{0}b"}}),
            StatusCode::BAD_REQUEST,
            "contains a NUL byte",
        ),
        (
            json!({"vars": {"A": big}}),
            StatusCode::BAD_REQUEST,
            "at most 65536 (64 KiB)",
        ),
        (
            json!({"vars": {"A": "1"}, "secrets": {"A": "2"}}),
            StatusCode::BAD_REQUEST,
            "both as a var and as a secret",
        ),
        (
            json!({"env": {"A": "1"}}),
            StatusCode::BAD_REQUEST,
            "unknown field",
        ),
        (
            json!({"vars": {"A": 1}}),
            StatusCode::BAD_REQUEST,
            "invalid type",
        ),
    ] {
        let (s, e) = patch(&p, "hello", body.clone()).await;
        assert_eq!(s, status, "{body}: {e}");
        assert_eq!(e["error"]["code"], "invalid", "{body}: {e}");
        let message = e["error"]["message"].as_str().unwrap();
        assert!(message.contains(expected), "{body}: {message}");
        assert!(message.len() < 400, "the message does not echo the input");
        assert_eq!(
            config(&p, "hello").await["version"],
            0,
            "{body} changed nothing"
        );
    }
    assert!(raw_config_rows(&p).await.is_empty());

    // A good change (no deployment to restart), then the same again: one version.
    let (s, c) = patch(&p, "hello", json!({"vars": {"A": "1", "B": "2"}})).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(
        c,
        json!({"version": 1, "vars": {"A": "1", "B": "2"}, "secrets": []})
    );
    let (s, c) = patch(&p, "hello", json!({"vars": {"A": "1", "GONE": null}})).await;
    assert_eq!(
        (s, c["version"].clone()),
        (StatusCode::OK, json!(1)),
        "no-op"
    );
    let (s, c) = patch(
        &p,
        "hello",
        json!({"vars": {"B": null}, "secrets": {"S": "v"}}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(
        c,
        json!({"version": 2, "vars": {"A": "1"}, "secrets": ["S"]})
    );
    // Filling it exactly to the limit is fine; one byte more is not, and changes nothing.
    let room = 64 * 1024 - "A1S".len() - 1 - "C".len();
    let (s, c) = patch(&p, "hello", json!({"vars": {"C": "y".repeat(room)}})).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let (s, e) = patch(&p, "hello", json!({"vars": {"D": ""}})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert_eq!(config(&p, "hello").await["version"], 3);

    // Unknown apps and other tenants' apps are not found.
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
    for (method, path, body) in [
        ("GET", "/v1/apps/hello/config", None),
        (
            "PATCH",
            "/v1/apps/hello/config",
            Some(json!({"vars": {"A": "2"}})),
        ),
        ("POST", "/v1/apps/hello/restart", None),
    ] {
        let (s, _) = p.call(method, path, body.clone(), &globex).await;
        assert_eq!(
            s,
            StatusCode::NOT_FOUND,
            "{method} {path} as another tenant"
        );
        let nowhere = path.replace("hello", "nowhere");
        let (s, _) = p.call(method, &nowhere, body, TOKEN).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} {nowhere}");
    }
    assert_eq!(config(&p, "hello").await["version"], 3);

    // Deleting the app deletes its config.
    let (s, _) = p.call("DELETE", "/v1/apps/hello", None, TOKEN).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(raw_config_rows(&p).await.is_empty());
    p.create_app("hello").await;
    assert_eq!(config(&p, "hello").await["version"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_key_secrets_are_refused_and_the_rest_works() {
    captured_log();
    // An empty flag beats a CAAS_SECRETS_KEY the environment may hold.
    let p = Platform::new(&["--secrets-key", ""]).await;
    p.create_app("hello").await;
    let (s, e) = patch(
        &p,
        "hello",
        json!({"secrets": {"DB_PASSWORD": "no-key-plain"}}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["error"]["code"], "secrets_disabled");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("CAAS_SECRETS_KEY"),
        "{e}"
    );
    assert_eq!(config(&p, "hello").await["version"], 0);
    let (s, c) = patch(&p, "hello", json!({"vars": {"A": "1"}})).await;
    assert_eq!((s, c["version"].clone()), (StatusCode::OK, json!(1)), "{c}");

    // A malformed key stops the start with a configuration error that does not echo it.
    for bad in ["not-a-key", "abcd", &"f".repeat(63)] {
        let config = p.config_with(&["--secrets-key", bad]);
        let e = caas_scheduler::Scheduler::start(config)
            .await
            .err()
            .expect("a bad key stops the start");
        let shown = e.to_string();
        assert!(
            shown.contains("CAAS_SECRETS_KEY") && shown.contains("32 bytes"),
            "{shown}"
        );
        assert!(!shown.contains(bad), "{shown}");
    }
}

/// The ids of the app's instances, and their containers, checked all running and healthy.
async fn running(p: &Platform, count: usize) -> (HashSet<String>, Vec<String>) {
    let (s, list) = p.call("GET", "/v1/apps/hello/instances", None, TOKEN).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let list = list.as_array().cloned().unwrap_or_default();
    assert_eq!(list.len(), count, "instances: {list:?}");
    assert!(
        list.iter()
            .all(|i| i["state"] == "running" && i["healthy"] == true),
        "{list:?}"
    );
    let ids = list.iter().map(|i| i["id"].as_str().unwrap().to_owned());
    let containers = list
        .iter()
        .map(|i| i["container_id"].as_str().unwrap().to_owned());
    (ids.collect(), containers.collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_config_change_rolls_every_instance_without_a_failed_request_and_secrets_stay_sealed() {
    let log = captured_log();
    let p = Platform::new(&["--secrets-key", KEY, "--drain-ms", "300"]).await;
    p.add_hosts(2, 512, 2.0).await;
    p.create_app("hello").await;
    let deployed = p
        .deploy(
            "hello",
            json!({"version": "v1", "instances": 2, "memory_mb": 64, "cpus": 0.1,
                   "env": {"HELLO_APP": "from-deploy", "KEEP": "deploy"},
                   "placement": {"spread": true}}),
        )
        .await;
    assert_eq!(instances(&deployed).len(), 2);
    let (before, _) = running(&p, 2).await;

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Traffic::default()));
    let load = tokio::spawn(traffic(p.chroot.clone(), stop.clone(), seen.clone()));
    eventually("the loop reaches the deployed instances", || async {
        (seen
            .lock()
            .unwrap()
            .ok
            .get("from-deploy")
            .copied()
            .unwrap_or(0)
            >= 10)
            .then_some(())
    })
    .await;

    // One change: a var over the deployment's env, a new var and a secret. It answers once
    // every instance has been replaced.
    let plain = format!("s3cr3t-plaintext-{}", unique_u64());
    let (s, c) = patch(
        &p,
        "hello",
        json!({"vars": {"HELLO_APP": "from-config", "EXTRA": "1"},
               "secrets": {"DB_PASSWORD": plain}}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(
        c,
        json!({"version": 1, "vars": {"HELLO_APP": "from-config", "EXTRA": "1"},
               "secrets": ["DB_PASSWORD"]})
    );
    let (after, containers) = running(&p, 2).await;
    assert!(
        before.is_disjoint(&after),
        "every instance was replaced: {before:?} {after:?}"
    );
    for id in &containers {
        let env = container_env(id);
        assert_eq!(
            env.get("HELLO_APP").map(String::as_str),
            Some("from-config"),
            "config wins"
        );
        assert_eq!(env.get("EXTRA").map(String::as_str), Some("1"));
        assert_eq!(
            env.get("KEEP").map(String::as_str),
            Some("deploy"),
            "deployment env kept"
        );
        assert_eq!(
            env.get("DB_PASSWORD"),
            Some(&plain),
            "the secret reaches the container"
        );
    }
    assert_eq!(p.nodes().await.len(), 2, "{:?}", p.nodes().await);
    let new_answers = seen
        .lock()
        .unwrap()
        .ok
        .get("from-config")
        .copied()
        .unwrap_or(0);
    eventually("the loop reaches the new instances", || async {
        let n = seen
            .lock()
            .unwrap()
            .ok
            .get("from-config")
            .copied()
            .unwrap_or(0);
        (n >= new_answers + 10).then_some(())
    })
    .await;

    // A restart, with progress streamed: replaced again, one at a time.
    let resp = p
        .http
        .post(format!("{}/v1/apps/hello/restart", p.api))
        .bearer_auth(TOKEN)
        .header("accept", "application/x-ndjson")
        .send()
        .await
        .expect("restart");
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.expect("stream");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("an NDJSON line"))
        .collect();
    let last = lines.last().expect("a last line");
    assert_eq!(last["event"], "done", "{text}");
    assert_eq!(last["restart"]["restarted"], 2, "{last}");
    let stages: Vec<&str> = lines.iter().filter_map(|l| l["stage"].as_str()).collect();
    let first_replaced = stages
        .iter()
        .position(|s| *s == "replaced")
        .expect("{stages:?}");
    let second_start = stages
        .iter()
        .rposition(|s| *s == "restarting")
        .expect("{stages:?}");
    assert!(first_replaced < second_start, "one at a time: {stages:?}");
    let (restarted, _) = running(&p, 2).await;
    assert!(after.is_disjoint(&restarted), "{after:?} {restarted:?}");

    // A restart and a config change at once: the second queues behind the first, both succeed.
    let (a, b) = tokio::join!(
        p.call("POST", "/v1/apps/hello/restart", None, TOKEN),
        patch(&p, "hello", json!({"vars": {"EXTRA": null}}))
    );
    assert_eq!(a.0, StatusCode::OK, "{}", a.1);
    assert_eq!(b.0, StatusCode::OK, "{}", b.1);
    assert_eq!(b.1["version"], 2);
    let (_, containers) = running(&p, 2).await;
    for id in &containers {
        assert_eq!(
            container_env(id).get("EXTRA"),
            None,
            "removed from the environment"
        );
    }

    stop.store(true, Ordering::Relaxed);
    load.await.expect("request loop");
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert!(
        seen.failed.is_empty(),
        "failed requests during the rolls: {:?}",
        seen.failed
    );
    println!("requests during the rolls: {:?}, 0 failed", seen.ok);

    // The secret's value: nowhere in the API's answers, the rows or the log.
    let mut answers = Vec::new();
    for path in [
        "/v1/apps/hello/config",
        "/v1/apps/hello",
        "/v1/apps/hello/deployments",
        "/v1/apps/hello/instances",
        "/v1/apps",
    ] {
        answers.push(p.call("GET", path, None, TOKEN).await.1.to_string());
    }
    answers.push(c.to_string());
    answers.push(text);
    for answer in &answers {
        assert!(
            !answer.contains(&plain),
            "an API answer holds the secret: {answer}"
        );
    }
    let rows = raw_config_rows(&p).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    for row in &rows {
        assert!(row.contains("DB_PASSWORD"), "{row}");
        assert!(
            !row.contains(&plain),
            "a row holds the secret in plaintext: {row}"
        );
    }
    let logged = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    assert!(logged.contains("config changed"), "the log was captured");
    assert!(!logged.contains(&plain), "the scheduler logged the secret");

    // A wrong key: instances of this app cannot start (the secret does not open), and the
    // error says why without the value; the running ones are left alone.
    let mut q = p.config_with(&["--secrets-key", &"ab".repeat(32)]);
    q.listen = "127.0.0.1:0".parse().unwrap();
    let other = caas_scheduler::Scheduler::start(q).await.expect("starts");
    let e = other
        .state
        .control
        .deployments
        .restart(
            &"hello".parse().unwrap(),
            &caas_scheduler::progress::Progress::silent(),
        )
        .await
        .expect_err("the secret does not open under another key");
    let shown = e.to_string();
    assert!(shown.contains("sealed with key"), "{shown}");
    assert!(!shown.contains(&plain));
    running(&p, 2).await;

    let (s, body) = p.call("DELETE", "/v1/apps/hello", None, TOKEN).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    p.assert_empty("after the app is deleted").await;
    assert!(
        raw_config_rows(&p).await.is_empty(),
        "the config went with the app"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotation_reseals_every_version_and_can_be_run_again() {
    use caas_scheduler::app_config::{crypto::SecretsKey, AppConfigs};
    use caas_scheduler::config::RotateSecretsKey;
    use clap::Parser;
    captured_log();
    let p = Platform::new(&["--secrets-key", KEY]).await;
    p.create_app("hello").await;
    let plain = format!("rotate-me-{}", unique_u64());
    for body in [
        json!({"secrets": {"A": plain}}),
        json!({"secrets": {"B": "second"}, "vars": {"V": "1"}}),
    ] {
        let (s, c) = patch(&p, "hello", body).await;
        assert_eq!(s, StatusCode::OK, "{c}");
    }
    let new = "cd".repeat(32);
    let (old_key, new_key) = (
        SecretsKey::parse(KEY).unwrap(),
        SecretsKey::parse(&new).unwrap(),
    );
    let rotate = || {
        RotateSecretsKey::try_parse_from([
            "rotate-secrets-key",
            "--database-url",
            p.db.url.as_str(),
            "--old-key",
            KEY,
            "--secrets-key",
            new.as_str(),
        ])
        .expect("flags")
    };
    let done = caas_scheduler::rotate_secrets_key(rotate())
        .await
        .expect("rotates");
    // Version 1 holds A; version 2 holds A and B.
    assert_eq!((done.resealed, done.versions, done.already), (3, 2, 0));
    for row in raw_config_rows(&p).await {
        assert!(row.contains(new_key.id()), "{row}");
        assert!(!row.contains(old_key.id()), "{row}");
        assert!(!row.contains(&plain), "{row}");
    }
    let again = caas_scheduler::rotate_secrets_key(rotate())
        .await
        .expect("runs again");
    assert_eq!((again.resealed, again.versions, again.already), (0, 0, 3));

    let app = "hello".parse().unwrap();
    let store = p.db.store(1).await;
    let env = AppConfigs::new(store.clone(), Some(new_key))
        .environment(&app, &BTreeMap::new())
        .await
        .expect("opens under the new key");
    assert_eq!(env.get("A"), Some(&plain));
    assert_eq!(env.get("B").map(String::as_str), Some("second"));
    let e = AppConfigs::new(store, Some(old_key))
        .environment(&app, &BTreeMap::new())
        .await
        .expect_err("the old key no longer opens them");
    assert!(e.to_string().contains("sealed with key"), "{e}");
}

/// The running instances' container ids of `app`'s deployments.
async fn running_containers(p: &Platform, app: &str) -> Vec<String> {
    let (s, list) = p
        .call("GET", &format!("/v1/apps/{app}/instances"), None, TOKEN)
        .await;
    assert_eq!(s, StatusCode::OK, "{list}");
    list.as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|i| i["state"] == "running")
        .filter_map(|i| i["container_id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn config_changes_are_releases_and_a_rollback_brings_its_config_back() {
    let p = Platform::new(&["--secrets-key", KEY, "--drain-ms", "0"]).await;
    p.add_hosts(1, 1024, 2.0).await;
    p.create_app("hello").await;
    p.deploy(
        "hello",
        json!({"version": "v1", "instances": 1, "memory_mb": 64, "cpus": 0.1}),
    )
    .await;
    for greeting in ["first", "second"] {
        let (s, c) = patch(&p, "hello", json!({"vars": {"GREETING": greeting}})).await;
        assert_eq!(s, StatusCode::OK, "{c}");
    }
    let (s, list) = p.call("GET", "/v1/apps/hello/releases", None, TOKEN).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let seen: Vec<(u64, u64, bool)> = list
        .as_array()
        .expect("a list")
        .iter()
        .map(|r| {
            (
                r["number"].as_u64().expect("number"),
                r["config_version"].as_u64().expect("config_version"),
                r["active"].as_bool().expect("active"),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![(3, 2, true), (2, 1, false), (1, 0, false)],
        "a deploy, then one release per config change, the newest active: {list}"
    );

    // Back to release 2: its digest, spec and config ("first"), as config version 3.
    let (s, d) = p
        .call(
            "POST",
            "/v1/apps/hello/rollback",
            Some(json!({"release": 2})),
            TOKEN,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    let c = config(&p, "hello").await;
    assert_eq!(c["version"], 3, "{c}");
    assert_eq!(c["vars"]["GREETING"], "first", "{c}");
    let (_, list) = p
        .call("GET", "/v1/apps/hello/releases?limit=1", None, TOKEN)
        .await;
    assert_eq!(list[0]["number"], 4, "{list}");
    assert_eq!(list[0]["config_version"], 3, "{list}");
    assert_eq!(list[0]["active"], true, "{list}");
    let running = running_containers(&p, "hello").await;
    assert_eq!(running.len(), 1, "{running:?}");
    assert_eq!(
        container_env(&running[0])
            .get("GREETING")
            .map(String::as_str),
        Some("first"),
        "the rolled-back instance runs the release's config"
    );

    // A rollback to a release whose config is the current one writes no config version.
    let (s, d) = p
        .call(
            "POST",
            "/v1/apps/hello/rollback",
            Some(json!({"release": 4})),
            TOKEN,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(config(&p, "hello").await["version"], 3);
}
