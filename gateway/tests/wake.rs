//! Scale to zero at the gateway, against the real ZooKeeper (a chroot of its own): a request for
//! a sleeping app (its wake node exists, it has no address) is held until an address appears and
//! then served; it times out with 504; a full hold queue answers 503 with `Retry-After`; an app
//! without a wake node answers 503 at once as before; shutdown ends held requests with 503; and
//! the demand reports reach a stand-in for the scheduler's endpoint (a local HTTP listener: the
//! gateway never depends on the scheduler) with the gateway's bearer token. A sleeping app whose
//! wake node says it failed to start answers 503 at once, held requests included; a gateway
//! whose scheduler is down still holds and times out. Both HTTP/1.1 engines are run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use caas_gateway::{Config, Gateway, Http1Engine, RoutesFeed};
use caas_registry::Registry;
use caas_testkit::eventually;
use caas_testkit::zk::Chroot;
use caas_types::{AppId, ContainerId, Endpoint, Version};
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

const TOKEN: &str = "gw-test-token";

/// A gateway serving from the route cache of `root`, as `run_with_zookeeper` wires it.
struct Served {
    addr: SocketAddr,
    admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<caas_gateway::Result<()>>>,
}

impl Served {
    async fn start(root: &Chroot, config: Config) -> Served {
        let feed = RoutesFeed::start(root.reader());
        let mut status = feed.status.clone();
        let gw = Gateway::bind(config)
            .await
            .expect("bind gateway")
            .with_route_status(feed.status);
        let (addr, admin) = (gw.http_addr(), gw.admin_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(gw.serve(feed.routes, async move {
            let _ = stopped.await;
        }));
        eventually("the route cache is live", || {
            let live = *status.borrow_and_update() == caas_gateway::RouteStatus::Live;
            async move { live.then_some(()) }
        })
        .await;
        Served {
            addr,
            admin,
            stop: Some(stop),
            task: Some(task),
        }
    }

    fn shutdown(&mut self) -> tokio::task::JoinHandle<caas_gateway::Result<()>> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.take().expect("running")
    }

    async fn metrics(&self) -> String {
        client()
            .get(format!("http://{}/metrics", self.admin))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body")
    }

    /// `GET path` as `host`: status, `Retry-After` and body.
    async fn get(&self, host: &str, path: &str) -> (u16, Option<String>, String) {
        let r = client()
            .get(format!("http://{}{}", self.addr, path))
            .header("host", host)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        let retry_after = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, retry_after, r.text().await.unwrap_or_default())
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// One demand report as the stand-in scheduler received it: the Authorization header and the
/// JSON body.
#[derive(Debug)]
struct Report {
    auth: String,
    body: serde_json::Value,
}

/// A local HTTP listener standing in for the scheduler's `POST /v1/gateway/demand`: answers
/// 204 and passes every report on.
async fn demand_endpoint() -> (String, mpsc::UnboundedReceiver<Report>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let tx = tx.clone();
                        async move {
                            let ok = req.method() == hyper::Method::POST
                                && req.uri().path() == "/v1/gateway/demand";
                            let auth = req
                                .headers()
                                .get("authorization")
                                .map(|v| v.to_str().unwrap().to_owned())
                                .unwrap_or_default();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            if ok {
                                let body = serde_json::from_slice(&body).expect("a JSON report");
                                let _ = tx.send(Report { auth, body });
                            }
                            let mut r = hyper::Response::new(Full::new(Bytes::new()));
                            *r.status_mut() = if ok {
                                hyper::StatusCode::NO_CONTENT
                            } else {
                                hyper::StatusCode::NOT_FOUND
                            };
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (url, rx)
}

/// The next report that `want` accepts (earlier ones are skipped), within 10 s.
async fn report_where(
    rx: &mut mpsc::UnboundedReceiver<Report>,
    what: &str,
    want: impl Fn(&Report) -> bool,
) -> Report {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(r)) if want(&r) => return r,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => panic!("no demand report: {what}"),
        }
    }
}

fn config(engine: Http1Engine) -> Config {
    let mut c = test_config();
    c.http1 = engine;
    c
}

fn ids(n: u8) -> (Version, ContainerId) {
    (
        "v1".parse().unwrap(),
        format!("{n:02x}0000000000").parse().unwrap(),
    )
}

/// A chroot of this test's own with the layout's fixed nodes, and the platform's writer on it.
async fn laid_out(name: &str) -> (Chroot, Registry) {
    let root = Chroot::new(name).await;
    let registry = root.registry().await;
    registry.ensure_layout().await.expect("layout");
    (root, registry)
}

async fn sleeping_app(registry: &Registry, name: &str) -> AppId {
    let app: AppId = name.parse().unwrap();
    registry.add_app(&app).await.expect("app node");
    registry
        .set_wake(&app, &"v1".parse().unwrap(), None)
        .await
        .expect("wake node");
    app
}

/// `GET /slow` for `app`, in a task: status, `Retry-After` and body.
fn spawn_get(gw: &Served, app: &AppId) -> tokio::task::JoinHandle<(u16, Option<String>, String)> {
    let (addr, host) = (gw.addr, host(app));
    tokio::spawn(async move {
        let r = client()
            .get(format!("http://{addr}/slow"))
            .header("host", host)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        let retry_after = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, retry_after, r.text().await.unwrap())
    })
}

fn host(app: &AppId) -> String {
    format!("{app}.caas.localhost")
}

#[tokio::test]
async fn a_held_request_is_served_once_the_sleeping_app_has_an_address_and_reported() {
    let (root, registry) = laid_out("wake-serve").await;
    for (n, engine) in [Http1Engine::Own, Http1Engine::Hyper]
        .into_iter()
        .enumerate()
    {
        let app = sleeping_app(&registry, &format!("sleepy{n}")).await;
        let (url, mut reports) = demand_endpoint().await;
        let mut c = config(engine);
        c.admin_api = Some(url);
        c.gateway_token = Some(TOKEN.parse().unwrap());
        c.gateway_id = Some("gw-test".into());
        let gw = Served::start(&root, c).await;
        let backend = TestBackend::start(&format!("b{n}")).await;

        let started = Instant::now();
        let held = {
            let (addr, host) = (gw.addr, host(&app));
            tokio::spawn(async move {
                let r = client()
                    .get(format!("http://{addr}/slow"))
                    .header("host", host)
                    .send()
                    .await
                    .expect("request");
                (r.status().as_u16(), r.text().await.unwrap())
            })
        };
        // The report goes out as soon as the request is held, with the gateway's token.
        let first = report_where(&mut reports, "the first held request", |r| {
            r.body["apps"] == serde_json::json!([{"app": app.as_str(), "held": 1, "in_flight": 0}])
        })
        .await;
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "{engine:?}: reported at once, not at the next tick: {:?}",
            started.elapsed()
        );
        assert_eq!(first.auth, format!("Bearer {TOKEN}"));
        assert_eq!(first.body["gateway"], "gw-test");
        assert!(gw.metrics().await.contains("caas_gateway_held_requests 1"));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!held.is_finished(), "{engine:?}: held while asleep");
        assert_eq!(backend.hits(), 0);

        // The first instance registers: the held request goes to it.
        let (version, container) = ids(n as u8 + 1);
        let endpoint: Endpoint = backend.addr.to_string().parse().unwrap();
        registry
            .register(&app, &version, &container, endpoint)
            .await
            .expect("register");
        // While the backend holds it, it is in flight and no longer held.
        report_where(&mut reports, "the released request in flight", |r| {
            r.body["apps"] == serde_json::json!([{"app": app.as_str(), "held": 0, "in_flight": 1}])
        })
        .await;
        backend.release.notify_one();
        let (status, body) = held.await.unwrap();
        assert_eq!(
            (status, body.as_str()),
            (200, format!("b{n} slow").as_str()),
            "{engine:?}"
        );
        // Demand gone: one empty report, then the gateway stops reporting.
        report_where(&mut reports, "the demand is gone", |r| {
            r.body["apps"] == serde_json::json!([])
        })
        .await;
        let metrics = gw.metrics().await;
        assert!(
            metrics.contains("caas_gateway_activated_total 1"),
            "{metrics}"
        );
        assert!(
            metrics.contains("caas_gateway_held_requests 0"),
            "{metrics}"
        );

        // Awake: served at once, never held.
        assert_eq!(gw.get(&host(&app), "/").await.0, 200);
        assert!(gw
            .metrics()
            .await
            .contains("caas_gateway_activated_total 1"));
    }
}

#[tokio::test]
async fn timeout_is_504_a_full_queue_503_with_retry_after_and_no_wake_node_503_at_once() {
    let (root, registry) = laid_out("wake-limits").await;
    let awake: AppId = "awake".parse().unwrap();
    registry.add_app(&awake).await.expect("app node");
    for (n, engine) in [Http1Engine::Own, Http1Engine::Hyper]
        .into_iter()
        .enumerate()
    {
        let app = sleeping_app(&registry, &format!("sleepy{n}")).await;
        // No admin API configured: nothing is reported, requests are still held.
        let mut c = config(engine);
        c.hold_queue = 1;
        c.activation_timeout_ms = 1_500;
        let gw = Served::start(&root, c).await;

        let started = Instant::now();
        let held = {
            let (addr, host) = (gw.addr, host(&app));
            tokio::spawn(async move {
                let r = client()
                    .get(format!("http://{addr}/"))
                    .header("host", host)
                    .send()
                    .await
                    .expect("request");
                (r.status().as_u16(), r.text().await.unwrap())
            })
        };
        eventually("the first request is held", || async {
            gw.metrics()
                .await
                .contains("caas_gateway_held_requests 1")
                .then_some(())
        })
        .await;
        // The queue (1) is full: 503 with Retry-After, at once.
        let (status, retry_after, body) = gw.get(&host(&app), "/").await;
        assert_eq!(
            (status, retry_after.as_deref()),
            (503, Some("1")),
            "{engine:?}: {body}"
        );
        assert!(started.elapsed() < Duration::from_millis(1_500));
        // The held one times out: 504 with a short body.
        let (status, body) = held.await.unwrap();
        assert_eq!(status, 504, "{engine:?}: {body}");
        assert_eq!(body, "the app did not start in time\n");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(1_400) && waited < Duration::from_secs(5),
            "{engine:?}: {waited:?}"
        );

        // An app without a wake node and no instance: 503 at once, as before.
        let t = Instant::now();
        let (status, retry_after, body) = gw.get(&host(&awake), "/").await;
        assert_eq!((status, retry_after), (503, None), "{body}");
        assert_eq!(body, "app awake has no running instance\n");
        assert!(t.elapsed() < Duration::from_millis(500));

        // A wake node removed: the app answers 503 at once again.
        registry.clear_wake(&app).await.expect("clear wake");
        eventually("the app is no longer held", || async {
            let t = Instant::now();
            let (status, _, _) = gw.get(&host(&app), "/").await;
            (status == 503 && t.elapsed() < Duration::from_millis(500)).then_some(())
        })
        .await;

        let metrics = gw.metrics().await;
        // At least the one above: a probe of the loop just before may also have been held
        // until the timeout while the wake node's removal was on its way.
        let timeouts = metrics
            .lines()
            .find_map(|l| l.strip_prefix("caas_gateway_activation_timeouts_total "))
            .and_then(|v| v.trim().parse::<u64>().ok());
        assert!(
            timeouts.is_some_and(|n| n >= 1),
            "{engine:?}: activation timeouts {timeouts:?}"
        );
        for line in [
            "caas_gateway_hold_queue_full_total 1",
            "caas_gateway_held_requests 0",
            "caas_gateway_activated_total 0",
        ] {
            assert!(metrics.contains(line), "{engine:?}: {line} in {metrics}");
        }
    }
}

#[tokio::test]
async fn shutdown_ends_held_requests_promptly_with_503() {
    let (root, registry) = laid_out("wake-stop").await;
    for (n, engine) in [Http1Engine::Own, Http1Engine::Hyper]
        .into_iter()
        .enumerate()
    {
        let app = sleeping_app(&registry, &format!("sleepy{n}")).await;
        let mut gw = Served::start(&root, config(engine)).await;
        let held = {
            let (addr, host) = (gw.addr, host(&app));
            tokio::spawn(async move {
                let r = client()
                    .get(format!("http://{addr}/"))
                    .header("host", host)
                    .send()
                    .await
                    .expect("request");
                r.status().as_u16()
            })
        };
        eventually("the request is held", || async {
            gw.metrics()
                .await
                .contains("caas_gateway_held_requests 1")
                .then_some(())
        })
        .await;
        let t = Instant::now();
        let task = gw.shutdown();
        assert_eq!(held.await.unwrap(), 503, "{engine:?}");
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the gateway stops promptly")
            .unwrap()
            .expect("clean stop");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }
}

#[tokio::test]
async fn a_sleeping_app_that_failed_to_start_answers_503_at_once_and_releases_held_requests() {
    let (root, registry) = laid_out("wake-failing").await;
    let v1: Version = "v1".parse().unwrap();
    for (n, engine) in [Http1Engine::Own, Http1Engine::Hyper]
        .into_iter()
        .enumerate()
    {
        // Failing before the gateway starts: its first full read sees it.
        let broken = sleeping_app(&registry, &format!("broken{n}")).await;
        registry
            .set_wake(&broken, &v1, Some("exit status 1"))
            .await
            .expect("failing");
        let app = sleeping_app(&registry, &format!("sleepy{n}")).await;
        // The default activation timeout (30 s): everything below must be far quicker.
        let gw = Served::start(&root, config(engine)).await;

        let t = Instant::now();
        let (status, retry_after, body) = gw.get(&host(&broken), "/").await;
        assert_eq!(
            (status, retry_after.as_deref(), body.as_str()),
            (
                503,
                Some("5"),
                format!("app broken{n} failed to start: exit status 1\n").as_str()
            ),
            "{engine:?}"
        );
        assert!(t.elapsed() < Duration::from_secs(10), "{engine:?}: at once");

        // A request held while the app wakes is released when the failure is written, with the
        // same 503.
        let held = spawn_get(&gw, &app);
        eventually("the request is held", || async {
            gw.metrics()
                .await
                .contains("caas_gateway_held_requests 1")
                .then_some(())
        })
        .await;
        let reason = "image pull failed: manifest unknown";
        let t = Instant::now();
        registry
            .set_wake(&app, &v1, Some(reason))
            .await
            .expect("failing");
        let want = format!("app sleepy{n} failed to start: {reason}\n");
        let (status, retry_after, body) = held.await.unwrap();
        assert_eq!(
            (status, retry_after.as_deref(), body.as_str()),
            (503, Some("5"), want.as_str()),
            "{engine:?}"
        );
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{engine:?}: released well before the activation timeout: {:?}",
            t.elapsed()
        );
        // New requests are not held: 503 at once.
        let t = Instant::now();
        let (status, retry_after, body) = gw.get(&host(&app), "/").await;
        assert_eq!(
            (status, retry_after.as_deref(), body.as_str()),
            (503, Some("5"), want.as_str()),
            "{engine:?}"
        );
        assert!(t.elapsed() < Duration::from_secs(10), "{engine:?}: at once");
        let metrics = gw.metrics().await;
        for line in [
            "caas_gateway_wake_failed_total 3",
            "caas_gateway_held_requests 0",
            "caas_gateway_activated_total 0",
            "caas_gateway_activation_timeouts_total 0",
        ] {
            assert!(metrics.contains(line), "{engine:?}: {line} in {metrics}");
        }

        // The failure cleared (the scheduler's back-off is over): requests are held again, and
        // served once the app has an address.
        registry
            .set_wake(&app, &v1, None)
            .await
            .expect("failure cleared");
        let held = loop {
            let req = spawn_get(&gw, &app);
            tokio::time::sleep(Duration::from_millis(300)).await;
            if !req.is_finished() {
                break req;
            }
            // The gateway had not seen the cleared failure yet.
            let (status, _, body) = req.await.unwrap();
            assert_eq!((status, body.as_str()), (503, want.as_str()), "{engine:?}");
        };
        eventually("the request is held again", || async {
            gw.metrics()
                .await
                .contains("caas_gateway_held_requests 1")
                .then_some(())
        })
        .await;
        let backend = TestBackend::start(&format!("b{n}")).await;
        let (version, container) = ids(n as u8 + 1);
        registry
            .register(
                &app,
                &version,
                &container,
                backend.addr.to_string().parse().unwrap(),
            )
            .await
            .expect("register");
        backend.release.notify_one();
        let (status, _, body) = held.await.unwrap();
        assert_eq!(
            (status, body.as_str()),
            (200, format!("b{n} slow").as_str()),
            "{engine:?}"
        );
        assert!(gw
            .metrics()
            .await
            .contains("caas_gateway_activated_total 1"));
    }
}

#[tokio::test]
async fn with_the_scheduler_down_a_held_request_still_ends_in_504_at_the_activation_timeout() {
    let (root, registry) = laid_out("wake-nosched").await;
    for (n, engine) in [Http1Engine::Own, Http1Engine::Hyper]
        .into_iter()
        .enumerate()
    {
        let app = sleeping_app(&registry, &format!("sleepy{n}")).await;
        // The admin API at a local port where nothing listens: every report fails.
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            l.local_addr().unwrap()
        };
        let mut c = config(engine);
        c.admin_api = Some(format!("http://{closed}"));
        c.gateway_token = Some(TOKEN.parse().unwrap());
        c.activation_timeout_ms = 1_000;
        let gw = Served::start(&root, c).await;

        let t = Instant::now();
        let (status, retry_after, body) = gw.get(&host(&app), "/").await;
        assert_eq!(
            (status, retry_after, body.as_str()),
            (504, None, "the app did not start in time\n"),
            "{engine:?}"
        );
        assert!(t.elapsed() < Duration::from_secs(10), "{engine:?}");
        let metrics = gw.metrics().await;
        for line in [
            "caas_gateway_activation_timeouts_total 1",
            "caas_gateway_held_requests 0",
            "caas_gateway_activated_total 0",
        ] {
            assert!(metrics.contains(line), "{engine:?}: {line} in {metrics}");
        }
    }
}
