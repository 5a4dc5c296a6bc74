//! Following a container's logs against the real engine (`scripts/up`): every line the hello
//! app writes (`HELLO_LOG_LINES`) comes back once, in order per stream, stderr tagged; `since`
//! bounds a read; the follow ends when the container stops; containers get the engine's log
//! rotation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use caas_deployer::{LogLine, LogRotation};
use caas_testkit::docker::{deployer, hello_image, Namespace};
use caas_types::api::LogStream;
use common::*;
use futures::StreamExt;
use std::time::Duration;

/// What hello writes with `HELLO_LOG_LINES=n`: `hello-log {i} {nanos}`, i = 1..=n.
fn numbered(lines: &[LogLine], stream: LogStream) -> Vec<u64> {
    lines
        .iter()
        .filter(|l| l.stream == stream)
        .filter_map(|l| l.line.strip_prefix("hello-log "))
        .map(|rest| rest.split(' ').next().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_every_line_in_order_with_streams_tagged_until_the_container_stops() {
    const N: u64 = 5_000;
    let d = deployer().await;
    let image = hello_image(&d, "v1").await;
    let ns = Namespace::new("logs");
    let mut spec = hello_spec(&ns, "logs", &image, HOST_A, free_port());
    spec.env.insert("HELLO_LOG_LINES".into(), N.to_string());
    spec.log_rotation = LogRotation {
        max_size_mb: 7,
        max_files: 3,
    };
    let running = d.run(&spec).await.unwrap();
    assert_eq!(
        cli_inspect(
            running.id.as_str(),
            "{{.HostConfig.LogConfig.Type}} {{index .HostConfig.LogConfig.Config \"max-size\"}} {{index .HostConfig.LogConfig.Config \"max-file\"}}"
        ),
        "json-file 7m 3"
    );

    // Follow from the start while the app writes; read until every line is in.
    let follow = d.logs(&running.id, None, true);
    futures::pin_mut!(follow);
    let mut got: Vec<LogLine> = Vec::new();
    let all_in = tokio::time::timeout(Duration::from_secs(120), async {
        while (got.len() as u64) < N + 1 {
            let line = follow.next().await.expect("stream ended early").unwrap();
            got.push(line);
        }
    })
    .await;
    assert!(all_in.is_ok(), "only {} of {} lines came", got.len(), N + 1);

    let expected_out: Vec<u64> = (1..=N).filter(|i| i % 10 != 0).collect();
    let expected_err: Vec<u64> = (1..=N).filter(|i| i % 10 == 0).collect();
    assert_eq!(numbered(&got, LogStream::Stdout), expected_out);
    assert_eq!(numbered(&got, LogStream::Stderr), expected_err);
    let listening: Vec<&LogLine> = got
        .iter()
        .filter(|l| l.line.starts_with("hello: listening"))
        .collect();
    assert_eq!(listening.len(), 1, "one start line");
    assert_eq!(listening[0].stream, LogStream::Stderr);
    // Per stream, the engine's timestamps never go back.
    for stream in [LogStream::Stdout, LogStream::Stderr] {
        let ts: Vec<_> = got
            .iter()
            .filter(|l| l.stream == stream)
            .map(|l| l.ts)
            .collect();
        assert!(
            ts.windows(2).all(|w| w[0] <= w[1]),
            "{stream:?} out of order"
        );
    }

    // A bounded read from the timestamp of a line starts at that line (a stdout line, as
    // stdout's and stderr's timestamps come from two readers in the engine and may cross).
    let from = got
        .iter()
        .find(|l| l.line.starts_with("hello-log 2501 "))
        .unwrap()
        .ts;
    let since: Vec<LogLine> = d
        .logs(&running.id, Some(from), false)
        .map(|l| l.unwrap())
        .collect()
        .await;
    assert!(since.iter().all(|l| l.ts >= from));
    assert!(since.iter().any(|l| l.line.starts_with("hello-log 2501 ")));
    assert!(!since.iter().any(|l| l.line.starts_with("hello-log 2499 ")));
    assert_eq!(
        since.len(),
        got.iter().filter(|l| l.ts >= from).count(),
        "the same lines from `since` on"
    );

    // The follow ends once the container stops, with nothing new.
    d.stop(&running.id, Duration::from_secs(2)).await.unwrap();
    let rest = tokio::time::timeout(Duration::from_secs(60), follow.collect::<Vec<_>>()).await;
    let rest = rest.expect("the follow ends when the container stops");
    assert!(rest.is_empty(), "lines after the end: {rest:?}");
    d.remove(&running.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_of_a_missing_container_are_a_not_found_error() {
    let d = deployer().await;
    let id = "0".repeat(64).parse().unwrap();
    let items: Vec<_> = d.logs(&id, None, true).collect().await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert!(
        matches!(items[0], Err(caas_deployer::Error::ContainerNotFound(_))),
        "{items:?}"
    );
}
