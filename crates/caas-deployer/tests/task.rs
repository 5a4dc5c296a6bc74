//! Run-to-completion containers against the real engine (`scripts/up`) with the busybox image
//! (`scripts/build-busybox`): exit codes, stdout and stderr apart, stdin round trips of any
//! bytes, back-pressure, a pipe of two containers, timeout and cancel killing and reporting, a
//! running task adopted by a new attach, and no container left in any case.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use caas_deployer::{pipe, ContainerState, Deployer, Error, TaskEnd, TaskOutput, TaskSpec};
use caas_testkit::docker::{busybox_image, deployer, Namespace};
use caas_testkit::eventually_true;
use common::*;
use std::io;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

/// Far longer than any of these tasks needs: the deadline of the tests that do not test it.
const LONG: Duration = Duration::from_secs(300);

fn spec(ns: &Namespace, suffix: &str, image: &str, command: &[&str]) -> TaskSpec {
    let mut s = TaskSpec::new(
        ns.as_str(),
        &"busybox".parse().unwrap(),
        ns.container_name(suffix),
        image.to_owned(),
        resources(64, 250),
    );
    s.command = command.iter().map(|c| c.to_string()).collect();
    s
}

/// Reads `out` to its end in a task of its own.
fn read_all(mut out: TaskOutput) -> JoinHandle<io::Result<Vec<u8>>> {
    tokio::spawn(async move {
        let mut all = Vec::new();
        out.read_to_end(&mut all).await.map(|_| all)
    })
}

async fn text(reader: JoinHandle<io::Result<Vec<u8>>>) -> String {
    String::from_utf8(reader.await.unwrap().expect("read to the end")).unwrap()
}

async fn setup(test: &str) -> (Deployer, String, Namespace) {
    let d = deployer().await;
    let image = busybox_image(&d).await;
    (d, image, Namespace::new(test))
}

fn assert_gone(ns: &Namespace, when: &str) {
    assert_eq!(
        cli_containers(ns),
        Vec::<String>::new(),
        "{when}: containers left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exit_code_is_kept_stdout_and_stderr_stay_apart_and_the_container_goes() {
    let (d, image, ns) = setup("task-exit").await;
    let mut task = d
        .start_task(&spec(
            &ns,
            "exit",
            &image,
            &["sh", "-c", "echo out; echo err >&2; echo more; exit 3"],
        ))
        .await
        .unwrap();
    assert!(task.stdin.is_none(), "no stdin unless asked");
    let out = read_all(task.stdout.take().unwrap());
    let err = read_all(task.stderr.take().unwrap());
    let exit = task.wait(LONG, std::future::pending()).await.unwrap();
    assert_eq!(exit.end, TaskEnd::Exited);
    assert_eq!(exit.exit_code, Some(3));
    assert!(!exit.oom_killed);
    assert!(exit.removed);
    assert_eq!(text(out).await, "out\nmore\n");
    assert_eq!(text(err).await, "err\n");
    assert_gone(&ns, "after an exit 3");

    // Success, and output nobody took is discarded without blocking the container.
    let task = d
        .start_task(&spec(
            &ns,
            "true",
            &image,
            &["sh", "-c", "seq 1 200000; true"],
        ))
        .await
        .unwrap();
    let exit = task.wait(LONG, std::future::pending()).await.unwrap();
    assert_eq!((exit.end, exit.exit_code), (TaskEnd::Exited, Some(0)));
    assert_gone(&ns, "after output nobody read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_round_trips_through_cat_and_wc_counts_mebibytes_of_any_bytes() {
    let (d, image, ns) = setup("task-stdin").await;
    let mut cat_spec = spec(&ns, "cat", &image, &["cat"]);
    cat_spec.stdin = true;
    let mut task = d.start_task(&cat_spec).await.unwrap();
    let mut stdin = task.stdin.take().expect("stdin asked for");
    let out = read_all(task.stdout.take().unwrap());
    stdin.write_all(b"hello\nworld\n").await.unwrap();
    stdin.shutdown().await.unwrap();
    let exit = task.wait(LONG, std::future::pending()).await.unwrap();
    assert_eq!((exit.end, exit.exit_code), (TaskEnd::Exited, Some(0)));
    assert_eq!(text(out).await, "hello\nworld\n");
    assert_gone(&ns, "after cat");

    // 4 MiB of every byte value, ^P^Q (a TTY's detach keys) included, written while the
    // count is read.
    const SIZE: usize = 4 << 20;
    let data: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    assert!(data.windows(2).any(|w| w == [0x10, 0x11]));
    let mut wc_spec = spec(&ns, "wc", &image, &["wc", "-c"]);
    wc_spec.stdin = true;
    let mut task = d.start_task(&wc_spec).await.unwrap();
    let mut stdin = task.stdin.take().unwrap();
    let out = read_all(task.stdout.take().unwrap());
    let writer = tokio::spawn(async move {
        stdin.write_all(&data).await?;
        stdin.shutdown().await
    });
    let exit = task.wait(LONG, std::future::pending()).await.unwrap();
    writer.await.unwrap().expect("stdin taken whole");
    assert_eq!((exit.end, exit.exit_code), (TaskEnd::Exited, Some(0)));
    assert_eq!(text(out).await.trim(), SIZE.to_string());

    // A stdin that was never taken is closed by `wait`: cat sees end-of-file and exits.
    let task = d.start_task(&cat_spec_named(&ns, &image)).await.unwrap();
    let exit = task.wait(LONG, std::future::pending()).await.unwrap();
    assert_eq!((exit.end, exit.exit_code), (TaskEnd::Exited, Some(0)));
    assert_gone(&ns, "after wc and an untaken stdin");
}

fn cat_spec_named(ns: &Namespace, image: &str) -> TaskSpec {
    let mut s = spec(ns, "cat-untaken", image, &["cat"]);
    s.stdin = true;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipe_of_two_containers_counts_every_line() {
    let (d, image, ns) = setup("task-pipe").await;
    let mut seq = d
        .start_task(&spec(&ns, "seq", &image, &["seq", "1", "100000"]))
        .await
        .unwrap();
    let mut wc_spec = spec(&ns, "wc", &image, &["wc", "-l"]);
    wc_spec.stdin = true;
    let mut wc = d.start_task(&wc_spec).await.unwrap();
    let piped = tokio::spawn(pipe(seq.stdout.take().unwrap(), wc.stdin.take().unwrap()));
    let out = read_all(wc.stdout.take().unwrap());
    let (a, b) = tokio::join!(
        seq.wait(LONG, std::future::pending()),
        wc.wait(LONG, std::future::pending())
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!((a.end, a.exit_code), (TaskEnd::Exited, Some(0)));
    assert_eq!((b.end, b.exit_code), (TaskEnd::Exited, Some(0)));
    let moved = piped.await.unwrap().expect("piped whole");
    // "1\n" .. "100000\n": 9×2 + 90×3 + 900×4 + 9000×5 + 90000×6 + 7 bytes.
    assert_eq!(moved, 588_895);
    assert_eq!(text(out).await.trim(), "100000");
    assert_gone(&ns, "after the pipe");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_does_not_read_holds_the_writer_back() {
    const SIZE: usize = 8 << 20;
    let (d, image, ns) = setup("task-backpressure").await;
    let mut task = d
        .start_task(&spec(
            &ns,
            "zeros",
            &image,
            &["head", "-c", &SIZE.to_string(), "/dev/zero"],
        ))
        .await
        .unwrap();
    let mut out = task.stdout.take().unwrap();
    let mut first = vec![0u8; 1 << 20];
    out.read_exact(&mut first).await.unwrap();
    // 7 MiB are unread and every buffer between the container and us is far smaller, so the
    // container is still blocked writing: it cannot have exited.
    let status = d.inspect(task.id()).await.unwrap();
    assert_eq!(status.state, ContainerState::Running, "{status:?}");
    let rest = read_all(out);
    let exit = task.wait(LONG, std::future::pending()).await.unwrap();
    assert_eq!((exit.end, exit.exit_code), (TaskEnd::Exited, Some(0)));
    assert_eq!(rest.await.unwrap().unwrap().len(), SIZE - first.len());
    assert_gone(&ns, "after the slow read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_past_its_timeout_is_killed_reported_and_removed() {
    let (d, image, ns) = setup("task-timeout").await;
    let mut task = d
        .start_task(&spec(
            &ns,
            "sleep",
            &image,
            &["sh", "-c", "echo started; exec sleep 600"],
        ))
        .await
        .unwrap();
    let mut out = task.stdout.take().unwrap();
    let exit = task
        .wait(Duration::from_secs(2), std::future::pending())
        .await
        .unwrap();
    assert_eq!(exit.end, TaskEnd::TimedOut);
    assert_eq!(exit.exit_code, Some(137), "killed");
    assert!(exit.removed);
    let mut got = Vec::new();
    let err = out
        .read_to_end(&mut got)
        .await
        .expect_err("a cut output fails");
    assert_eq!(String::from_utf8_lossy(&got), "started\n");
    assert!(err.to_string().contains("timed out"), "{err}");
    assert_gone(&ns, "after the timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_task_is_killed_and_removed_and_ran_as_specified() {
    let (d, image, ns) = setup("task-cancel").await;
    let mut s = spec(&ns, "cancel", &image, &["sleep", "600"]);
    s.env.insert("GREETING".into(), "hi".into());
    s.labels.insert("caas.job".into(), "j1".into());
    let task = d.start_task(&s).await.unwrap();
    let id = task.id().to_string();
    // As created: labels, limits, env, command, no port.
    assert_eq!(
        cli_inspect(&id, "{{index .Config.Labels \"caas.app\"}} {{index .Config.Labels \"caas.managed\"}} {{index .Config.Labels \"caas.job\"}}"),
        format!("busybox {ns} j1")
    );
    assert_eq!(
        cli_inspect(&id, "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}"),
        format!("{} 250000000", 64 << 20)
    );
    assert_eq!(
        cli_inspect(&id, "{{json .Config.Cmd}}"),
        r#"["sleep","600"]"#
    );
    assert!(cli_inspect(&id, "{{json .Config.Env}}").contains("GREETING=hi"));
    assert_eq!(cli_inspect(&id, "{{json .NetworkSettings.Ports}}"), "{}");

    let (cancel, cancelled) = tokio::sync::oneshot::channel::<()>();
    let waiting = tokio::spawn(task.wait(LONG, async move {
        let _ = cancelled.await;
    }));
    cancel.send(()).unwrap();
    let exit = waiting.await.unwrap().unwrap();
    assert_eq!(exit.end, TaskEnd::Cancelled);
    assert_eq!(exit.exit_code, Some(137));
    assert_gone(&ns, "after the cancel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_and_dropped_tasks_leave_no_container() {
    let (d, image, ns) = setup("task-fail").await;
    // An image the engine does not have: refused before anything exists.
    let missing = image.replace(":v1", ":no-such-tag");
    let err = d
        .start_task(&spec(&ns, "missing", &missing, &["true"]))
        .await
        .expect_err("no such image");
    assert!(matches!(err, Error::ImageNotFound { .. }), "{err:?}");
    // A name in use is a conflict, and the container holding it stays.
    let task = d
        .start_task(&spec(&ns, "twice", &image, &["sleep", "600"]))
        .await
        .unwrap();
    let err = d
        .start_task(&spec(&ns, "twice", &image, &["true"]))
        .await
        .expect_err("name taken");
    assert!(matches!(err, Error::NameConflict(_)), "{err:?}");
    assert_eq!(cli_containers(&ns), vec![task.id().to_string()]);
    // A task dropped without `wait` is removed all the same.
    drop(task);
    eventually_true("the dropped task's container is removed", || async {
        cli_containers(&ns).is_empty()
    })
    .await;
    // A command that does not exist: the init process reports it as exit 127.
    let task = d
        .start_task(&spec(&ns, "nocmd", &image, &["no-such-command"]))
        .await;
    match task {
        Ok(task) => {
            let exit = task.wait(LONG, std::future::pending()).await.unwrap();
            assert_eq!(exit.exit_code, Some(127), "{exit:?}");
        }
        Err(e) => panic!("a missing command is the container's exit, not a start error: {e}"),
    }
    assert_gone(&ns, "after the failures");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_task_is_adopted_by_a_new_attach() {
    let (d, image, ns) = setup("task-adopt").await;
    let mut s = spec(
        &ns,
        "adopt",
        &image,
        &["sh", "-c", "read x; echo got-$x; exit 4"],
    );
    s.stdin = true;
    let mut task = d.start_task(&s).await.unwrap();
    let mut stdin = task.stdin.take().unwrap();
    let id = task.id().clone();
    // The process that started it is gone (a scheduler restart): its handle never cleans up.
    std::mem::forget(task);

    let other = deployer().await;
    let mut adopted = other.attach_task(&id).await.unwrap();
    assert!(adopted.stdin.is_none(), "an adopted task has no stdin");
    let out = read_all(adopted.stdout.take().unwrap());
    // Only now does the command go on: everything it writes comes after the new attach.
    stdin.write_all(b"hi\n").await.unwrap();
    stdin.shutdown().await.unwrap();
    let exit = adopted.wait(LONG, std::future::pending()).await.unwrap();
    assert_eq!((exit.end, exit.exit_code), (TaskEnd::Exited, Some(4)));
    assert_eq!(text(out).await, "got-hi\n");
    assert_gone(&ns, "after the adopted task");
}
