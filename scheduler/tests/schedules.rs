//! Cron schedules against the real MariaDB, ZooKeeper, Docker engine and registry: a 6-field
//! expression runs once per due time while two schedulers run and more ticks race for the same
//! due times; bad schedules are refused naming the field.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/db.rs"]
mod db;
#[path = "common/platform.rs"]
mod platform;

use caas_testkit::eventually_within;
use caas_types::Timestamp;
use platform::{Platform, TOKEN};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn busybox_platform() -> Platform {
    let p = Platform::new(&[]).await;
    caas_testkit::docker::busybox_image(&p.docker).await;
    p.add_hosts(1, 1024, 2.0).await;
    p.create_app("busybox").await;
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_six_field_schedule_runs_once_per_due_time_with_two_schedulers() {
    let mut p = busybox_platform().await;
    // A second scheduler process on the same database and ZooKeeper.
    let port = platform::free_port();
    let mut second = p.spawn_process(port, env!("CARGO_BIN_EXE_caas-scheduler"), &[]);
    platform::wait_serving(&format!("http://127.0.0.1:{port}")).await;

    let (s, created) = p
        .call(
            "POST",
            "/v1/apps/busybox/schedules",
            Some(
                json!({"name": "tick", "cron": "*/2 * * * * *", "concurrency": "allow",
                        "job": {"version": "v1", "command": ["true"], "memory_mb": 32}}),
            ),
            TOKEN,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert_eq!(created["cron"], "*/2 * * * * *");
    assert!(created["next_run_at"].is_string(), "{created}");

    // Besides the leader's own tick, three more race for the same due times for 7 s.
    let control: Arc<_> = p.control().schedules.clone();
    let until = Instant::now() + Duration::from_secs(7);
    let racers: Vec<_> = (0..3)
        .map(|_| {
            let schedules = control.clone();
            tokio::spawn(async move {
                let mut started = 0;
                while Instant::now() < until {
                    started += schedules.tick(Timestamp::now()).await.unwrap_or(0);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                started
            })
        })
        .collect();
    for r in racers {
        r.await.unwrap();
    }
    // No scheduler ticks from here on: the runs so far are all there will be.
    second.kill().unwrap();
    let _ = second.wait();
    p.stop().await;

    let store = p.db.store(1).await;
    let schedule = store
        .get_schedule(&"busybox".parse().unwrap(), "tick")
        .await
        .unwrap();
    // Runs claimed just before the stop may still be starting: wait for the counts to settle.
    let (outcomes, started, runs) = eventually_within(
        "every claimed due time to have its job",
        Duration::from_secs(30),
        || async {
            let outcomes = store.due_time_outcomes(schedule.id).await.unwrap();
            let started: Vec<i64> = outcomes
                .iter()
                .filter(|(_, o)| o == "started")
                .map(|(due, _)| *due)
                .collect();
            let runs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE schedule_id = ?")
                .bind(schedule.id)
                .fetch_one(store.pool())
                .await
                .unwrap();
            (runs as usize == started.len()).then_some((outcomes, started, runs))
        },
    )
    .await;
    assert!(
        started.len() >= 3,
        "runs in 7 s of a 2 s schedule: {outcomes:?}"
    );
    for pair in started.windows(2) {
        assert_eq!(
            (pair[1] - pair[0]) % 2000,
            0,
            "due times 2 s apart: {outcomes:?}"
        );
    }
    assert!(
        outcomes.iter().all(|(_, o)| o == "started"),
        "every due time started (allow, no gap): {outcomes:?}"
    );
    assert_eq!(runs as usize, started.len(), "one job per due time");

    p.start().await;
    let (_, jobs) = eventually_within("every run to end", Duration::from_secs(60), || async {
        let (s, jobs) = p.call("GET", "/v1/apps/busybox/jobs", None, TOKEN).await;
        let done = jobs
            .as_array()
            .is_some_and(|j| j.iter().all(|j| j["state"] == "succeeded"));
        done.then_some((s, jobs))
    })
    .await;
    let jobs = jobs.as_array().unwrap();
    assert!(jobs.iter().all(|j| j["schedule"] == "tick"), "{jobs:?}");
    let (_, listed) = p
        .call("GET", "/v1/apps/busybox/schedules", None, TOKEN)
        .await;
    let last_runs = listed[0]["last_runs"].as_array().map(Vec::len);
    assert!(last_runs.is_some_and(|n| n >= 1), "{listed}");
    let (s, _) = p
        .call("DELETE", "/v1/apps/busybox/schedules/tick", None, TOKEN)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = p
        .call("DELETE", "/v1/apps/busybox/schedules/tick", None, TOKEN)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    p.assert_empty("after the schedule").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_schedules_are_refused_naming_the_field() {
    let p = busybox_platform().await;
    let job = json!({"version": "v1", "command": ["true"]});
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (
            json!({"name": "a", "cron": "61 * * * *", "job": job}),
            StatusCode::BAD_REQUEST,
            "minute",
        ),
        (
            json!({"name": "a", "cron": "* * * *", "job": job}),
            StatusCode::BAD_REQUEST,
            "5 fields",
        ),
        (
            json!({"name": "a", "cron": "*/5 * * * * 9", "job": job}),
            StatusCode::BAD_REQUEST,
            "day-of-week",
        ),
        (
            json!({"name": "A b", "cron": "* * * * *", "job": job}),
            StatusCode::BAD_REQUEST,
            "name",
        ),
        (
            json!({"name": "a", "cron": "* * * * *", "job": {"version": "v1", "command": []}}),
            StatusCode::BAD_REQUEST,
            "job.command",
        ),
        (
            json!({"name": "a", "cron": "* * * * *", "job": {"version": "v1", "command": ["true"], "timeout_s": 0}}),
            StatusCode::BAD_REQUEST,
            "job.timeout_s",
        ),
        (
            json!({"name": "a", "cron": "* * * * *", "job": {"version": "v7", "command": ["true"]}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not found",
        ),
    ];
    for (body, status, words) in cases {
        let (s, answer) = p
            .call(
                "POST",
                "/v1/apps/busybox/schedules",
                Some(body.clone()),
                TOKEN,
            )
            .await;
        assert_eq!(s, status, "{body} → {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(words), "{body} → {answer}");
    }
    let ok = json!({"name": "nightly", "cron": "0 3 * * *", "job": job});
    let (s, _) = p
        .call(
            "POST",
            "/v1/apps/busybox/schedules",
            Some(ok.clone()),
            TOKEN,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, answer) = p
        .call("POST", "/v1/apps/busybox/schedules", Some(ok), TOKEN)
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{answer}");
    let (_, listed) = p
        .call("GET", "/v1/apps/busybox/schedules", None, TOKEN)
        .await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
}
