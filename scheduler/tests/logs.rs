//! App logs end to end against the real services: the leader's collector follows every
//! instance (hello with `HELLO_LOG_LINES`), `GET /v1/apps/{app}/logs` merges them in time
//! order, a follow picks up a version deployed after it began, lines stay readable after their
//! container is gone and after the scheduler restarts (and are stored once across it); tail,
//! since, bad input, tenants, app deletion and the ring's trimming.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/db.rs"]
mod db;
#[path = "common/platform.rs"]
mod platform;

use caas_scheduler::store::NewLogLine;
use caas_testkit::eventually;
use caas_types::api::LogStream;
use caas_types::Timestamp;
use futures::StreamExt;
use platform::{instances, Platform, TOKEN};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

/// Lines each hello instance writes at start with `HELLO_LOG_LINES`, plus its "listening" line.
const LINES: usize = 40;
const PER_INSTANCE: usize = LINES + 1;

/// `GET path` as `token`: the status and the NDJSON lines (an error body as one line).
async fn get_lines(p: &Platform, path: &str, token: &str) -> (StatusCode, Vec<Value>) {
    let resp = p
        .http
        .get(format!("{}{path}", p.api))
        .bearer_auth(token)
        .send()
        .await
        .expect("admin API reachable");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    let lines = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l:?}")))
        .collect();
    (status, lines)
}

fn ts(line: &Value) -> Timestamp {
    line["ts"].as_str().unwrap().parse().unwrap()
}

/// Asserts the lines are in time order and none is there twice.
fn assert_merged_once(lines: &[Value], what: &str) {
    assert!(
        lines.windows(2).all(|w| ts(&w[0]) <= ts(&w[1])),
        "{what}: not in time order"
    );
    let keys: HashSet<(String, String, String)> = lines
        .iter()
        .map(|l| {
            (
                l["instance"].to_string(),
                l["ts"].to_string(),
                l["stream"].to_string(),
            )
        })
        .collect();
    assert_eq!(keys.len(), lines.len(), "{what}: a line came twice");
}

/// Lines per instance.
fn per_instance(lines: &[Value]) -> BTreeMap<String, Vec<&Value>> {
    let mut by: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for l in lines {
        by.entry(l["instance"].as_str().unwrap().to_owned())
            .or_default()
            .push(l);
    }
    by
}

/// Asserts one instance's lines are what hello writes: the start line on stderr, then
/// `hello-log 1..=LINES`, every tenth on stderr, in order per stream.
fn assert_hello_lines(lines: &[&Value], version: &str) {
    assert_eq!(lines.len(), PER_INSTANCE, "{lines:?}");
    assert!(lines.iter().all(|l| l["version"] == version));
    let start: Vec<_> = lines
        .iter()
        .filter(|l| l["line"].as_str().unwrap().starts_with("hello: listening"))
        .collect();
    assert_eq!(start.len(), 1);
    assert_eq!(start[0]["stream"], "stderr");
    for stream in ["stdout", "stderr"] {
        let numbers: Vec<usize> = lines
            .iter()
            .filter(|l| l["stream"] == stream)
            .filter_map(|l| l["line"].as_str().unwrap().strip_prefix("hello-log "))
            .map(|rest| rest.split(' ').next().unwrap().parse().unwrap())
            .collect();
        let want: Vec<usize> = (1..=LINES)
            .filter(|i| (i % 10 == 0) == (stream == "stderr"))
            .collect();
        assert_eq!(numbers, want, "{stream}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logs_merge_follow_a_new_version_and_outlive_containers_and_a_restart() {
    let mut p = Platform::new(&[]).await;
    p.add_hosts(2, 1024, 2.0).await;
    p.create_app("hello").await;

    // A new app: 200 and nothing.
    let (s, lines) = get_lines(&p, "/v1/apps/hello/logs", TOKEN).await;
    assert_eq!(s, StatusCode::OK);
    assert!(lines.is_empty(), "{lines:?}");

    // A follow that starts before anything runs.
    let followed: Arc<Mutex<Vec<Value>>> = Arc::default();
    let resp = p
        .http
        .get(format!("{}/v1/apps/hello/logs?follow=true", p.api))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("follow");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/x-ndjson"
    );
    let sink = followed.clone();
    let follow = tokio::spawn(async move {
        let mut body = resp.bytes_stream();
        let mut buf = Vec::new();
        while let Some(Ok(chunk)) = body.next().await {
            buf.extend_from_slice(&chunk);
            while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                sink.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&line).expect("NDJSON line"));
            }
        }
    });

    // Two instances of v1 on two hosts.
    let env = json!({"HELLO_LOG_LINES": LINES.to_string(), "HELLO_REQUEST_LOG": "1"});
    let v1 = p
        .deploy(
            "hello",
            json!({"version": "v1", "instances": 2, "memory_mb": 64, "cpus": 0.25,
                   "placement": {"spread": true}, "env": env}),
        )
        .await;
    let v1_ids: HashSet<String> = instances(&v1)
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    let lines = eventually("both v1 instances' lines stored", || async {
        let (_, lines) = get_lines(&p, "/v1/apps/hello/logs?tail=10000", TOKEN).await;
        (lines.len() == 2 * PER_INSTANCE).then_some(lines)
    })
    .await;
    assert_merged_once(&lines, "v1");
    let by = per_instance(&lines);
    assert_eq!(by.keys().cloned().collect::<HashSet<_>>(), v1_ids);
    for l in by.values() {
        assert_hello_lines(l, "v1");
    }

    // v2 deployed while the follow runs: the follow picks it up.
    let v2 = p
        .deploy(
            "hello",
            json!({"version": "v2", "instances": 1, "memory_mb": 64, "cpus": 0.25, "env": env}),
        )
        .await;
    let v2_instance = instances(&v2)[0].clone();
    let all = 3 * PER_INSTANCE;
    let seen = eventually("the follow has v1's and v2's lines", || async {
        let seen = followed.lock().unwrap().clone();
        (seen.len() >= all).then_some(seen)
    })
    .await;
    assert_eq!(seen.len(), all, "every line once");
    let by = per_instance(&seen);
    assert_hello_lines(&by[v2_instance["id"].as_str().unwrap()], "v2");
    for id in &v1_ids {
        assert_hello_lines(&by[id], "v1");
    }

    // v1 undeployed: its containers are gone, its lines are not.
    let (s, _) = p
        .call("DELETE", "/v1/apps/hello/deployments/v1", None, TOKEN)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    for id in &v1_ids {
        assert!(p
            .containers()
            .await
            .iter()
            .all(|c| c.labels.get("caas.instance") != Some(id)));
    }
    let (_, lines) = get_lines(&p, "/v1/apps/hello/logs?tail=10000", TOKEN).await;
    assert_eq!(lines.len(), all);
    assert_merged_once(&lines, "after the undeploy");

    // The scheduler restarts (the follow ends with it): every line is still there, and the
    // new leader resumes v2 after its last stored line: one new request line, nothing twice.
    p.stop().await;
    follow.await.expect("the follow ended with the scheduler");
    p.start().await;
    let (_, lines) = get_lines(&p, "/v1/apps/hello/logs?tail=10000", TOKEN).await;
    assert_eq!(lines.len(), all, "every line after the restart");
    let address = v2_instance["address"].as_str().unwrap();
    let answered = reqwest::get(format!("http://{address}/")).await.unwrap();
    assert_eq!(answered.status(), StatusCode::OK);
    let lines = eventually("v2's request line stored by the new leader", || async {
        let (_, lines) = get_lines(&p, "/v1/apps/hello/logs?tail=10000", TOKEN).await;
        lines.iter().any(|l| l["line"] == "GET /").then_some(lines)
    })
    .await;
    assert_eq!(
        lines.len(),
        all + 1,
        "nothing stored twice across the restart"
    );
    assert_merged_once(&lines, "after the restart");
    let last = lines.last().unwrap();
    assert_eq!(last["instance"], v2_instance["id"]);
    assert_eq!(last["stream"], "stdout");
}

/// Removes the lines of `instance` (test set-up only; the API has no such call).
async fn delete_lines_of(p: &Platform, instance: &str) {
    let pool = p.db.store(1).await;
    sqlx::query("DELETE FROM app_log_chunks WHERE instance_id = ?")
        .bind(instance)
        .execute(pool.pool())
        .await
        .expect("delete");
}

/// `n` lines of `instance`, one a second from `start` (nanoseconds), alternating streams.
fn synthetic(app: &str, instance: &str, start: i64, n: i64) -> Vec<NewLogLine> {
    (0..n)
        .map(|i| NewLogLine {
            app: app.parse().unwrap(),
            instance: instance.parse().unwrap(),
            version: "v1".parse().unwrap(),
            stream: if i % 2 == 0 {
                LogStream::Stdout
            } else {
                LogStream::Stderr
            },
            ts: Timestamp::from_nanos(start + i * 1_000_000_000),
            line: format!("{instance} line {i}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tail_since_bad_input_tenants_deletion_and_the_ring() {
    let mut p = Platform::new(&["--logs-keep-lines", "30"]).await;
    let store = p.db.store(2).await;
    p.create_app("shop").await;
    // Two instances' lines interleaved in time: a at 0, 2, 4, ... s; b at 1, 3, 5, ... s.
    let t0: i64 = 1_800_000_000 * 1_000_000_000;
    let mut lines = synthetic("shop", "shop-a", t0, 10);
    lines.extend(synthetic("shop", "shop-b", t0 + 500_000_000, 10));
    // One chunk per instance. Stored twice (a commit retried after its answer was lost): the
    // second time changes nothing.
    assert_eq!(store.insert_log_lines(&lines).await.unwrap(), 2);
    assert_eq!(store.insert_log_lines(&lines).await.unwrap(), 0);
    // A chunk of an app deleted meanwhile is skipped, not a failure of the whole batch.
    let mut mixed = synthetic("ghost", "ghost-a", t0, 1);
    mixed.extend(synthetic("shop", "shop-z", t0 - 1, 1));
    assert_eq!(store.insert_log_lines(&mixed).await.unwrap(), 1);
    let (s, zs) = get_lines(&p, "/v1/apps/shop/logs", TOKEN).await;
    assert_eq!((s, zs.len()), (StatusCode::OK, 21));
    assert_eq!(zs[0]["instance"], "shop-z", "the oldest line first");
    delete_lines_of(&p, "shop-z").await;

    let (s, all) = get_lines(&p, "/v1/apps/shop/logs", TOKEN).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(all.len(), 20);
    assert_merged_once(&all, "history");
    let order: Vec<&str> = all
        .iter()
        .map(|l| l["instance"].as_str().unwrap())
        .collect();
    assert_eq!(order[..4], ["shop-a", "shop-b", "shop-a", "shop-b"]);
    assert_eq!(all[1]["stream"], "stdout");
    assert_eq!(all[3]["stream"], "stderr");

    // tail: the newest n, oldest first; 0 is none.
    let (_, tail) = get_lines(&p, "/v1/apps/shop/logs?tail=3", TOKEN).await;
    assert_eq!(tail, all[17..].to_vec());
    let (_, none) = get_lines(&p, "/v1/apps/shop/logs?tail=0", TOKEN).await;
    assert!(none.is_empty());
    // since: from that instant on (inclusive), in any offset.
    let from = all[15]["ts"].as_str().unwrap().to_owned();
    let (_, since) = get_lines(&p, &format!("/v1/apps/shop/logs?since={from}"), TOKEN).await;
    assert_eq!(since, all[15..].to_vec());
    let t: Timestamp = from.parse().unwrap();
    let secs = t.as_secs() + 3600;
    let shifted = Timestamp::from_nanos(secs * 1_000_000_000 + t.as_nanos() % 1_000_000_000)
        .to_string()
        .replace('Z', "+01:00");
    let (_, since) = get_lines(
        &p,
        &format!("/v1/apps/shop/logs?since={}", shifted.replace('+', "%2B")),
        TOKEN,
    )
    .await;
    assert_eq!(since, all[15..].to_vec(), "{shifted}");
    let (_, both) = get_lines(
        &p,
        &format!("/v1/apps/shop/logs?since={from}&tail=2"),
        TOKEN,
    )
    .await;
    assert_eq!(both, all[18..].to_vec());

    // Bad input: 400 invalid, with the parameter named.
    for bad in [
        "since=yesterday",
        "since=2024-05-01",
        "since=2024-13-01T00:00:00Z",
        "tail=10001",
        "tail=-1",
        "follow=maybe",
        "lines=5",
    ] {
        let (s, body) = p
            .call("GET", &format!("/v1/apps/shop/logs?{bad}"), None, TOKEN)
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid", "{bad}");
    }
    let (s, _) = p.call("GET", "/v1/apps/nope/logs", None, TOKEN).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Tenants: another tenant's app is a 404; its own is visible.
    let mut tokens = Vec::new();
    for name in ["acme", "umbrella"] {
        let (s, t) = p
            .call("POST", "/v1/tenants", Some(json!({"name": name})), TOKEN)
            .await;
        assert_eq!(s, StatusCode::CREATED, "{t}");
        tokens.push(t["token"].as_str().unwrap().to_owned());
    }
    let (s, _) = p
        .call(
            "POST",
            "/v1/apps",
            Some(json!({"id": "acme-web"})),
            &tokens[0],
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    store
        .insert_log_lines(&synthetic("acme-web", "acme-web-a", t0, 3))
        .await
        .unwrap();
    let (s, mine) = get_lines(&p, "/v1/apps/acme-web/logs", &tokens[0]).await;
    assert_eq!((s, mine.len()), (StatusCode::OK, 3));
    let (s, body) = p
        .call("GET", "/v1/apps/acme-web/logs", None, &tokens[1])
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    let (s, _) = p.call("GET", "/v1/apps/shop/logs", None, &tokens[1]).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // The ring: lines the collector did not write (a former leader's) are trimmed when a
    // leader starts, back to the newest 30 of the app.
    p.stop().await;
    store
        .insert_log_lines(&synthetic("shop", "shop-c", t0 + 100_000_000_000, 25))
        .await
        .unwrap();
    assert_eq!(
        store
            .count_log_lines(&"shop".parse().unwrap())
            .await
            .unwrap(),
        45
    );
    p.start().await;
    let kept = eventually("shop trimmed to 30 lines", || async {
        let n = store
            .count_log_lines(&"shop".parse().unwrap())
            .await
            .unwrap();
        (n == 30).then_some(n)
    })
    .await;
    assert_eq!(kept, 30);
    let (_, ring) = get_lines(&p, "/v1/apps/shop/logs?tail=10000", TOKEN).await;
    assert_eq!(ring.len(), 30);
    assert_eq!(ring[..5], all[15..]);
    assert!(ring[5..].iter().all(|l| l["instance"] == "shop-c"));

    // Deleting the app deletes its lines.
    let (s, _) = p.call("DELETE", "/v1/apps/shop", None, TOKEN).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        store
            .count_log_lines(&"shop".parse().unwrap())
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .count_log_lines(&"acme-web".parse().unwrap())
            .await
            .unwrap(),
        3
    );
}

/// A smaller cousin of `scripts/bench-logs` on a test's own platform: 3 instances write
/// `CAAS_LOGS_RATE` lines a second in all (default 1,500, small enough for every run of the
/// suite) for 2 s while a follow reads; the follow gets every line exactly once. Prints the
/// write → client latency (no threshold: `scripts/bench-logs` records it at 20,000 lines/s).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follow_receives_every_line_at_rate() {
    let rate: usize = std::env::var("CAAS_LOGS_RATE")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1_500);
    let per = rate / 3 * 2;
    let p = Platform::new(&[]).await;
    p.add_hosts(3, 1024, 2.0).await;
    p.create_app("hello").await;
    let resp = p
        .http
        .get(format!("{}/v1/apps/hello/logs?follow=true&tail=0", p.api))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("follow");
    let reader = tokio::spawn(async move {
        let mut body = resp.bytes_stream();
        let (mut buf, mut latencies, mut keys) = (Vec::new(), Vec::new(), HashSet::new());
        while let Some(Ok(chunk)) = body.next().await {
            let now = Timestamp::now().as_nanos();
            buf.extend_from_slice(&chunk);
            while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                let v: Value = serde_json::from_slice(&line).unwrap();
                let text = v["line"].as_str().unwrap();
                if let Some(rest) = text.strip_prefix("hello-log ") {
                    let written: i64 = rest.split(' ').nth(1).unwrap().parse().unwrap();
                    latencies.push(((now - written) / 1_000_000, written));
                    keys.insert((v["instance"].to_string(), rest.to_owned()));
                    if latencies.len() == 3 * per {
                        return (latencies, keys.len());
                    }
                }
            }
        }
        (latencies, keys.len())
    });
    p.deploy(
        "hello",
        json!({"version": "v1", "instances": 3, "memory_mb": 64, "cpus": 0.5,
               "placement": {"spread": true},
               "env": {"HELLO_LOG_LINES": per.to_string(),
                       "HELLO_LOG_RATE": (rate / 3).to_string()}}),
    )
    .await;
    let (latencies, distinct) = reader.await.unwrap();
    assert_eq!(latencies.len(), 3 * per, "every line");
    assert_eq!(distinct, 3 * per, "each once");
    let first = latencies.iter().map(|l| l.1).min().unwrap();
    for (label, from) in [("all", first), ("after 2 s", first + 2_000_000_000)] {
        let mut ms: Vec<i64> = latencies
            .iter()
            .filter(|l| l.1 >= from)
            .map(|l| l.0)
            .collect();
        ms.sort_unstable();
        let pct = |q: f64| ms[((ms.len() as f64 * q) as usize).min(ms.len() - 1)];
        println!(
            "{label}: {} lines at {rate}/s: write -> client p50 {} ms, p99 {} ms, max {} ms",
            ms.len(),
            pct(0.5),
            pct(0.99),
            ms[ms.len() - 1]
        );
    }
}
