//! The health checker against a real HTTP server that the test stops and restarts: the node
//! leaves ZooKeeper after N failures and comes back after M successes, with events for both;
//! a hanging instance delays no other.

use caas_registry::{HealthChecker, HealthEvent, HealthEventKind, HealthTarget, Registry};
use caas_testkit::zk::{read, Chroot};
use caas_testkit::{eventually, init_tracing, WAIT};
use caas_types::{AppId, ContainerId, Endpoint, HealthPolicy, Version};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// A tiny HTTP server answering `GET /_ping` with 200 "pong", until dropped.
struct PingServer {
    task: tokio::task::JoinHandle<()>,
}

impl PingServer {
    async fn start(addr: SocketAddr) -> PingServer {
        let listener = eventually("the port can be bound", || async {
            TcpListener::bind(addr).await.ok()
        })
        .await;
        Self::serve(listener)
    }

    fn serve(listener: TcpListener) -> PingServer {
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = conn.read(&mut buf).await;
                    let _ = conn
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\npong")
                        .await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        PingServer { task }
    }
}

impl Drop for PingServer {
    fn drop(&mut self) {
        // Aborting drops the listener: the port refuses connections from then on.
        self.task.abort();
    }
}

fn spec() -> HealthPolicy {
    HealthPolicy {
        interval_ms: 100,
        timeout_ms: 1000,
        failures: 3,
        successes: 2,
        ..HealthPolicy::default()
    }
}

async fn next_event(rx: &mut mpsc::Receiver<HealthEvent>) -> HealthEvent {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a health event in time")
        .expect("channel open")
}

/// Starts a checker of `reg` that checks at most `max_concurrent` instances at once, in a task
/// of its own: (the checker, its events, the sender that stops it when used or dropped, the task).
fn start_checker(
    reg: &Registry,
    max_concurrent: usize,
) -> (
    HealthChecker,
    mpsc::Receiver<HealthEvent>,
    oneshot::Sender<()>,
    JoinHandle<()>,
) {
    let (checker, events) = HealthChecker::new(reg.clone(), max_concurrent);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(checker.clone().run(async {
        let _ = stopped.await;
    }));
    (checker, events, stop, task)
}

#[tokio::test]
async fn unhealthy_instance_leaves_zookeeper_and_comes_back() {
    init_tracing("caas_registry=debug");
    let root = Chroot::new("health").await;
    let reg = root.registry().await;

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = PingServer::serve(listener);
    let app: AppId = "shop".parse().expect("app");
    let version: Version = "v1".parse().expect("version");
    let container: ContainerId = "abcdefabcdef".parse().expect("container");
    let endpoint = Endpoint::new(addr.ip(), addr.port()).expect("endpoint");
    reg.register(&app, &version, &container, endpoint)
        .await
        .expect("register");
    let node = format!("/caas/service/address/shop/v1/{container}");
    let raw = root.raw(Some(&root.env.reader)).await;

    let (checker, mut events, stop_tx, running) = start_checker(&reg, 4);
    checker.watch(HealthTarget {
        app: app.clone(),
        version: version.clone(),
        container: container.clone(),
        endpoint,
        spec: spec(),
        registered: true,
    });

    // Stop the server: after 3 failures the node goes and an event says so.
    drop(server);
    let ev = next_event(&mut events).await;
    assert_eq!(ev.kind, HealthEventKind::Unhealthy);
    assert_eq!(
        (&ev.app, &ev.version, &ev.container, ev.endpoint),
        (&app, &version, &container, endpoint)
    );
    assert_eq!(
        read(&raw, &node).await,
        None,
        "node removed before the event"
    );
    assert_eq!(
        read(&raw, &format!("/caas/service/address/shop/{version}")).await,
        None,
        "empty version node pruned"
    );

    // Bring it back on the same port: after 2 successes the node is back with its address.
    let server = PingServer::start(addr).await;
    let ev = next_event(&mut events).await;
    assert_eq!(ev.kind, HealthEventKind::Healthy);
    assert_eq!(read(&raw, &node).await, Some(endpoint.to_string()));

    // Unwatched targets are no longer checked: stopping the server changes nothing.
    checker.unwatch(&container);
    assert!(checker.watched().is_empty());
    drop(server);
    let _ = stop_tx.send(());
    running.await.expect("checker stops on shutdown");
    assert!(events.try_recv().is_err(), "no event after unwatch");
    assert_eq!(read(&raw, &node).await, Some(endpoint.to_string()));
}

#[tokio::test]
async fn a_hanging_instance_delays_no_other() {
    init_tracing("caas_registry=debug");
    let root = Chroot::new("hang").await;
    let reg = root.registry().await;
    let app: AppId = "shop".parse().expect("app");
    let version: Version = "v1".parse().expect("version");

    // One instance accepts connections but never answers; its checks take the full timeout.
    let hang = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hang_addr = hang.local_addr().expect("addr");
    let hang_task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = hang.accept().await {
            held.push(conn);
        }
    });
    // The other answers, then is stopped.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = PingServer::serve(listener);

    let slow: ContainerId = "111111111111".parse().expect("container");
    let fast: ContainerId = "222222222222".parse().expect("container");
    for (c, a) in [(&slow, hang_addr), (&fast, addr)] {
        let e = Endpoint::new(a.ip(), a.port()).expect("endpoint");
        reg.register(&app, &version, c, e).await.expect("register");
    }
    // Bound of 2: the hanging check holds one permit for a long time, the other keeps going.
    let (checker, mut events, stop_tx, running) = start_checker(&reg, 2);
    let slow_spec = HealthPolicy {
        timeout_ms: 60_000,
        failures: 1,
        ..spec()
    };
    checker.watch(HealthTarget {
        app: app.clone(),
        version: version.clone(),
        container: slow.clone(),
        endpoint: Endpoint::new(hang_addr.ip(), hang_addr.port()).expect("endpoint"),
        spec: slow_spec,
        registered: true,
    });
    checker.watch(HealthTarget {
        app: app.clone(),
        version: version.clone(),
        container: fast.clone(),
        endpoint: Endpoint::new(addr.ip(), addr.port()).expect("endpoint"),
        spec: spec(),
        registered: true,
    });
    drop(server);
    let ev = next_event(&mut events).await;
    assert_eq!(
        ev.container, fast,
        "the stopped instance is detected while the other hangs"
    );
    assert_eq!(ev.kind, HealthEventKind::Unhealthy);
    let raw = root.raw(Some(&root.env.reader)).await;
    assert!(read(&raw, &format!("/caas/service/address/shop/v1/{slow}"))
        .await
        .is_some());
    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("shutdown does not wait for the hanging check")
        .expect("checker task");
    hang_task.abort();
}

#[tokio::test]
async fn status_codes_and_the_configured_path_decide_health() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    init_tracing("caas_registry=debug");
    let root = Chroot::new("status").await;
    let reg = root.registry().await;

    // Answers 200 on /healthz only while `up`, 503 otherwise, 404 on any other path.
    let up = Arc::new(AtomicBool::new(false));
    let checks = Arc::new(AtomicUsize::new(0));
    let counter = checks.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let flag = up.clone();
    let server = tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let flag = flag.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let n = conn.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]);
                let status = if !request.starts_with("GET /healthz ") {
                    "404 Not Found"
                } else {
                    counter.fetch_add(1, Ordering::SeqCst);
                    if flag.load(Ordering::SeqCst) {
                        "200 OK"
                    } else {
                        "503 Service Unavailable"
                    }
                };
                let response =
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = conn.write_all(response.as_bytes()).await;
            });
        }
    });

    let app: AppId = "shop".parse().expect("app");
    let version: Version = "v2".parse().expect("version");
    let container: ContainerId = "cafecafecafe".parse().expect("container");
    let endpoint = Endpoint::new(addr.ip(), addr.port()).expect("endpoint");
    let node = format!("/caas/service/address/shop/v2/{container}");
    let raw = root.raw(Some(&root.env.reader)).await;

    let (checker, mut events, stop_tx, running) = start_checker(&reg, 4);
    // A new instance, not registered yet: it enters ZooKeeper only once it passes.
    checker.watch(HealthTarget {
        app: app.clone(),
        version: version.clone(),
        container: container.clone(),
        endpoint,
        spec: HealthPolicy {
            path: "/healthz".parse().expect("health path"),
            ..spec()
        },
        registered: false,
    });
    // 503s keep it out: wait until the server has answered several checks.
    eventually("several failing checks on /healthz", || async {
        (checks.load(Ordering::SeqCst) >= 4).then_some(())
    })
    .await;
    assert!(events.try_recv().is_err(), "no event while failing");
    assert_eq!(read(&raw, &node).await, None);

    up.store(true, std::sync::atomic::Ordering::SeqCst);
    let ev = next_event(&mut events).await;
    assert_eq!(
        (ev.kind, &ev.container),
        (HealthEventKind::Healthy, &container)
    );
    assert_eq!(read(&raw, &node).await, Some(endpoint.to_string()));
    assert!(checker.watched().iter().all(|t| t.registered));

    up.store(false, std::sync::atomic::Ordering::SeqCst);
    let ev = next_event(&mut events).await;
    assert_eq!(ev.kind, HealthEventKind::Unhealthy, "a 503 is a failure");
    assert_eq!(read(&raw, &node).await, None);

    let _ = stop_tx.send(());
    running.await.expect("checker stops");
    server.abort();
}
