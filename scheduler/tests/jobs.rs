//! Jobs and workflows against the real MariaDB, ZooKeeper, Docker engine and registry, with the
//! busybox image (`scripts/build-busybox`): a job's exit code, output, timeout, stdin and
//! cancel; bad input answered precisely with nothing left; a 3-step workflow piping `seq`
//! through `tr` into `wc -l` across two hosts; a failing middle step failing its workflow; and
//! a scheduler killed mid-job leaving nothing behind once another one leads.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/db.rs"]
mod db;
#[path = "common/platform.rs"]
mod platform;

use caas_testkit::{eventually, eventually_within};
use platform::{Platform, TOKEN};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

/// The busybox app `busybox` (its image is pushed by `scripts/build-busybox`) on `hosts` hosts
/// of `memory_mb` each.
async fn platform(hosts: u8, memory_mb: u64, extra: &[&str]) -> Platform {
    let p = Platform::new(extra).await;
    caas_testkit::docker::busybox_image(&p.docker).await;
    p.add_hosts(hosts, memory_mb, 2.0).await;
    p.create_app("busybox").await;
    p
}

/// Starts a job of `busybox`; its status and body.
async fn start(p: &Platform, body: Value) -> (StatusCode, Value) {
    p.call("POST", "/v1/apps/busybox/jobs", Some(body), TOKEN)
        .await
}

fn id(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_owned()
}

/// Waits until `path` (a job or workflow) is in a final state; returns it.
async fn finished(p: &Platform, path: &str) -> Value {
    eventually_within(
        &format!("{path} to end"),
        Duration::from_secs(90),
        || async {
            let (s, v) = p.call("GET", path, None, TOKEN).await;
            assert_eq!(s, StatusCode::OK, "{path}: {v}");
            let state = v["state"].as_str().unwrap_or_default().to_owned();
            (!["pending", "running"].contains(&state.as_str())).then_some(v)
        },
    )
    .await
}

/// How many `jobs` rows the test's database holds.
async fn job_rows(p: &Platform) -> i64 {
    let store = p.db.store(1).await;
    sqlx::query_scalar("SELECT COUNT(*) FROM jobs")
        .fetch_one(store.pool())
        .await
        .expect("count jobs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_keeps_its_exit_code_and_output_and_a_slow_one_times_out() {
    let p = platform(1, 512, &[]).await;
    let (s, job) = start(
        &p,
        json!({"version": "v1", "command": ["sh", "-c", "echo out; echo err >&2; exit 3"]}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{job}");
    assert_eq!(job["app"], "busybox");
    assert_eq!(job["host"], "h1");
    let jid = id(&job);
    // Following the output ends when the job does, with both streams in it.
    let (s, out) = p
        .text(&format!("/v1/apps/busybox/jobs/{jid}/logs?follow=true"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(out.contains("out\n") && out.contains("err\n"), "{out:?}");
    let done = finished(&p, &format!("/v1/apps/busybox/jobs/{jid}")).await;
    assert_eq!(done["state"], "failed", "{done}");
    assert_eq!(done["exit_code"], 3, "{done}");
    assert!(done["finished_at"].is_string() && done["started_at"].is_string());
    // Afterwards the output stays readable.
    let (_, again) = p.text(&format!("/v1/apps/busybox/jobs/{jid}/logs")).await;
    assert_eq!(again, out);

    let (s, ok) = start(&p, json!({"version": "v1", "command": ["echo", "fine"]})).await;
    assert_eq!(s, StatusCode::CREATED, "{ok}");
    let ok = finished(&p, &format!("/v1/apps/busybox/jobs/{}", id(&ok))).await;
    assert_eq!(
        (ok["state"].as_str(), ok["exit_code"].as_i64()),
        (Some("succeeded"), Some(0))
    );

    let (s, slow) = start(
        &p,
        json!({"version": "v1", "command": ["sleep", "60"], "timeout_s": 1}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{slow}");
    let slow = finished(&p, &format!("/v1/apps/busybox/jobs/{}", id(&slow))).await;
    assert_eq!(slow["state"], "timed_out", "{slow}");
    assert_eq!(slow["exit_code"], 137, "{slow}");

    // The list holds all three, newest first, and pages.
    let (_, list) = p.call("GET", "/v1/apps/busybox/jobs", None, TOKEN).await;
    let ids: Vec<_> = list.as_array().unwrap().iter().map(id).collect();
    assert_eq!(ids.len(), 3, "{list}");
    assert_eq!(ids[2], jid);
    let (_, page) = p
        .call(
            "GET",
            &format!("/v1/apps/busybox/jobs?limit=1&before={}", ids[0]),
            None,
            TOKEN,
        )
        .await;
    assert_eq!(page.as_array().map(|a| a.len()), Some(1), "{page}");
    assert_eq!(id(&page[0]), ids[1]);
    let finished_events = p.events("?app=busybox", TOKEN).await;
    eventually("three job.finished events", || async {
        let n = p
            .events("?app=busybox", TOKEN)
            .await
            .iter()
            .filter(|e| e["type"] == "job.finished")
            .count();
        (n == 3).then_some(())
    })
    .await;
    drop(finished_events);
    p.assert_empty("after three jobs").await;
    // Forgetting a finished job deletes it.
    let (s, _) = p
        .call(
            "DELETE",
            &format!("/v1/apps/busybox/jobs/{jid}"),
            None,
            TOKEN,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = p
        .call("GET", &format!("/v1/apps/busybox/jobs/{jid}"), None, TOKEN)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stdin_streams_into_a_job_and_cancel_stops_one() {
    let p = platform(1, 512, &[]).await;
    let (s, job) = start(
        &p,
        json!({"version": "v1", "command": ["wc", "-c"], "stdin": true}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{job}");
    let jid = id(&job);
    // 4 MiB in many chunks: more than any buffer on the way.
    let chunks = (0..64).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 64 * 1024]));
    let resp = p
        .http
        .put(format!("{}/v1/apps/busybox/jobs/{jid}/stdin", p.api))
        .bearer_auth(TOKEN)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let (_, out) = p
        .text(&format!("/v1/apps/busybox/jobs/{jid}/logs?follow=true"))
        .await;
    assert_eq!(out.trim(), (4 << 20).to_string());
    let done = finished(&p, &format!("/v1/apps/busybox/jobs/{jid}")).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    // A second PUT, or one to a job without stdin, is a conflict.
    let (s, body) = p
        .call(
            "PUT",
            &format!("/v1/apps/busybox/jobs/{jid}/stdin"),
            None,
            TOKEN,
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");

    let (_, sleeper) = start(&p, json!({"version": "v1", "command": ["sleep", "60"]})).await;
    let sid = id(&sleeper);
    let (s, body) = p
        .call(
            "PUT",
            &format!("/v1/apps/busybox/jobs/{sid}/stdin"),
            None,
            TOKEN,
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("stdin"),
        "{body}"
    );
    let (s, cancelled) = p
        .call(
            "DELETE",
            &format!("/v1/apps/busybox/jobs/{sid}"),
            None,
            TOKEN,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["state"], "cancelled", "{cancelled}");
    p.assert_empty("after stdin and cancel").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_job_requests_are_refused_precisely_with_nothing_left() {
    let p = platform(1, 256, &[]).await;
    let cases = [
        (
            json!({"version": "v1", "command": []}),
            StatusCode::BAD_REQUEST,
            "command",
        ),
        (
            json!({"version": "v1", "command": ["true"], "timeout_s": 0}),
            StatusCode::BAD_REQUEST,
            "timeout_s",
        ),
        (
            json!({"version": "v1", "command": ["true"], "timeout_s": -3}),
            StatusCode::BAD_REQUEST,
            "timeout_s",
        ),
        (
            json!({"version": "v9", "command": ["true"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not found",
        ),
        (
            json!({"version": "v1", "command": ["true"], "memory_mb": 4096}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "place",
        ),
        (
            json!({"version": "v1", "command": ["true"], "bogus": 1}),
            StatusCode::BAD_REQUEST,
            "bogus",
        ),
    ];
    for (body, status, words) in cases {
        let (s, answer) = start(&p, body.clone()).await;
        assert_eq!(s, status, "{body} → {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(words), "{body} → {answer}");
    }
    let (s, _) = p
        .call(
            "POST",
            "/v1/apps/nope/jobs",
            Some(json!({"version": "v1", "command": ["true"]})),
            TOKEN,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    for path in [
        "/v1/apps/busybox/jobs/j-999",
        "/v1/apps/busybox/jobs/42",
        "/v1/workflows/w-5",
    ] {
        let (s, _) = p.call("GET", path, None, TOKEN).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(
        job_rows(&p).await,
        0,
        "no job row is left by a refused request"
    );
    p.assert_empty("after refused jobs").await;
}

/// A workflow step of busybox.
fn step(name: &str, command: &[&str], memory_mb: u64) -> Value {
    json!({"name": name, "app": "busybox", "version": "v1", "command": command,
           "memory_mb": memory_mb})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_three_step_workflow_pipes_across_hosts() {
    // Two steps fit on a host, three do not: the pipeline spans both hosts.
    let p = platform(2, 160, &[]).await;
    let wf = json!({"name": "count", "steps": [
        step("gen", &["seq", "1", "100000"], 64),
        step("map", &["tr", "0-9", "a-j"], 64),
        step("count", &["wc", "-l"], 64),
    ]});
    let (s, created) = p.call("POST", "/v1/workflows", Some(wf), TOKEN).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let wid = id(&created);
    assert!(wid.starts_with("w-"), "{created}");
    let (s, out) = p
        .text(&format!("/v1/workflows/{wid}/output?follow=true"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(out.trim(), "100000");
    let done = finished(&p, &format!("/v1/workflows/{wid}")).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let steps = done["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3);
    let hosts: std::collections::BTreeSet<_> = steps
        .iter()
        .map(|s| s["host"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(hosts.len(), 2, "steps on both hosts: {done}");
    for s in steps {
        assert_eq!(
            (s["state"].as_str(), s["exit_code"].as_i64()),
            (Some("succeeded"), Some(0)),
            "{done}"
        );
    }
    // Workflow steps are not the app's jobs.
    let (_, jobs) = p.call("GET", "/v1/apps/busybox/jobs", None, TOKEN).await;
    assert_eq!(jobs, json!([]));
    let (_, list) = p.call("GET", "/v1/workflows", None, TOKEN).await;
    assert_eq!(list.as_array().map(|l| l.len()), Some(1), "{list}");
    p.assert_empty("after a workflow").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_middle_step_fails_the_workflow_and_stops_the_others() {
    let p = platform(2, 512, &[]).await;
    let wf = json!({"name": "broken", "steps": [
        step("gen", &["sh", "-c", "while true; do echo y; done"], 32),
        step("bad", &["sh", "-c", "head -n 10 >/dev/null; echo oops >&2; exit 7"], 32),
        step("sink", &["sleep", "60"], 32),
    ]});
    let (s, created) = p.call("POST", "/v1/workflows", Some(wf), TOKEN).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let wid = id(&created);
    let done = finished(&p, &format!("/v1/workflows/{wid}")).await;
    assert_eq!(done["state"], "failed", "{done}");
    let states: Vec<_> = done["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(states, ["cancelled", "failed", "cancelled"], "{done}");
    assert_eq!(done["steps"][1]["exit_code"], 7, "{done}");
    let (_, log) = p.text(&format!("/v1/workflows/{wid}/steps/1/logs")).await;
    assert_eq!(log, "oops\n");
    p.assert_empty("after a failed workflow").await;

    // Bad workflows: one step, 17 steps, an app the caller cannot see, an unknown version.
    let one = json!({"name": "x", "steps": [step("a", &["true"], 32)]});
    let many =
        json!({"name": "x", "steps": (0..17).map(|_| step("a", &["cat"], 32)).collect::<Vec<_>>()});
    let hidden = json!({"name": "x", "steps": [step("a", &["true"], 32),
        {"name": "b", "app": "secret", "version": "v1", "command": ["cat"]}]});
    let unknown = json!({"name": "x", "steps": [step("a", &["true"], 32),
        {"name": "b", "app": "busybox", "version": "v9", "command": ["cat"]}]});
    for (body, status) in [
        (one, StatusCode::BAD_REQUEST),
        (many, StatusCode::BAD_REQUEST),
        (hidden, StatusCode::NOT_FOUND),
        (unknown, StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let (s, answer) = p.call("POST", "/v1/workflows", Some(body), TOKEN).await;
        assert_eq!(s, status, "{answer}");
    }
    let (_, list) = p.call("GET", "/v1/workflows", None, TOKEN).await;
    assert_eq!(list.as_array().map(|l| l.len()), Some(1), "{list}");
    p.assert_empty("after refused workflows").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scheduler_killed_mid_job_leaves_nothing_behind() {
    let extra = ["--job-stale-secs", "3", "--job-heartbeat-secs", "1"];
    let mut p = platform(1, 512, &extra).await;
    // The in-process scheduler steps aside; a real process runs the jobs and is killed.
    p.stop().await;
    let port = platform::free_port();
    let mut child = p.spawn_process(port, env!("CARGO_BIN_EXE_caas-scheduler"), &extra);
    let api = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    platform::wait_serving(&api).await;
    let post = |body: Value| {
        let (http, api) = (http.clone(), api.clone());
        async move {
            let resp = http
                .post(format!("{api}/v1/apps/busybox/jobs"))
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::CREATED);
            resp.json::<Value>().await.unwrap()
        }
    };
    // One keeps running across the kill; the other's container is removed meanwhile.
    let survivor =
        post(json!({"version": "v1", "command": ["sh", "-c", "sleep 8; echo done"]})).await;
    let orphan = post(json!({"version": "v1", "command": ["sleep", "60"]})).await;
    child.kill().expect("kill the scheduler");
    let _ = child.wait();
    let gone = p
        .containers()
        .await
        .into_iter()
        .find(|c| c.labels.get("caas.job").map(String::as_str) == Some(id(&orphan).as_str()))
        .expect("the second job's container");
    p.docker.remove(&gone.id).await.unwrap();

    p.start().await;
    let survivor = finished(&p, &format!("/v1/apps/busybox/jobs/{}", id(&survivor))).await;
    assert_eq!(survivor["state"], "succeeded", "{survivor}");
    let orphan = finished(&p, &format!("/v1/apps/busybox/jobs/{}", id(&orphan))).await;
    assert_eq!(orphan["state"], "failed", "{orphan}");
    assert!(
        orphan["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("gone"),
        "{orphan}"
    );
    eventually("no container, claim or node left", || async {
        let store = p.db.store(1).await;
        let claims: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM instances")
            .fetch_one(store.pool())
            .await
            .unwrap();
        (claims == 0 && p.containers().await.is_empty()).then_some(())
    })
    .await;
    p.assert_empty("after the restart").await;
}
