//! Stale routes, against the real ZooKeeper: a gateway cut off from it (a relay in front of
//! ZooKeeper that the test cuts) for longer than `--max-route-staleness-ms` stops serving its
//! cached routes — every proxied request gets 503 with the reason, `/healthz` says the routes are
//! stale, `/metrics` shows their age — and serves again once it is back and has re-read the
//! tree. Both HTTP/1.1 engines.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use caas_gateway::{Gateway, Http1Engine, RoutesFeed};
use caas_testkit::eventually;
use caas_testkit::zk::Chroot;
use caas_types::{AppId, ContainerId, Endpoint, Version};
use common::*;
use std::net::SocketAddr;
use tokio::sync::oneshot;

/// A gateway on its own feed through the relay; stops when dropped.
struct Served {
    addr: SocketAddr,
    admin: SocketAddr,
    _stop: oneshot::Sender<()>,
}

async fn serve(zk: caas_registry::ZkConfig, engine: Http1Engine) -> Served {
    let feed = RoutesFeed::start(zk);
    let mut config = test_config();
    config.http1 = engine;
    // Short enough for a test; the default is the scheduler's port quarantine (10 minutes).
    config.max_route_staleness_ms = 2_000;
    let gw = Gateway::bind(config)
        .await
        .expect("bind gateway")
        .with_route_status(feed.status);
    let (addr, admin) = (gw.http_addr(), gw.admin_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(gw.serve(feed.routes, async move {
        let _ = stopped.await;
    }));
    Served {
        addr,
        admin,
        _stop: stop,
    }
}

async fn fetch(url: String, host: Option<&str>) -> (u16, String) {
    let mut r = client().get(url);
    if let Some(h) = host {
        r = r.header("host", h);
    }
    let r = r.send().await.expect("request");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

async fn shop(gw: &Served) -> (u16, String) {
    fetch(format!("http://{}/", gw.addr), Some("shop.caas.localhost")).await
}

async fn healthz(gw: &Served) -> (u16, String) {
    fetch(format!("http://{}/healthz", gw.admin), None).await
}

/// The value of an unlabelled metric.
async fn metric(gw: &Served, name: &str) -> f64 {
    let text = fetch(format!("http://{}/metrics", gw.admin), None).await.1;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[tokio::test]
async fn a_cut_off_gateway_stops_serving_stale_routes_and_serves_again_once_back() {
    let root = Chroot::new("stale").await;
    let registry = root.registry().await;
    let backend = TestBackend::start("b").await;
    let app: AppId = "shop".parse().unwrap();
    registry.add_app(&app).await.expect("app node");
    let endpoint: Endpoint = backend.addr.to_string().parse().unwrap();
    let version: Version = "v1".parse().unwrap();
    let container: ContainerId = "0123456789ab".parse().unwrap();
    registry
        .register(&app, &version, &container, endpoint)
        .await
        .expect("register");

    let mut zk = root.reader();
    let target = zk.connect.split(',').next().unwrap().to_owned();
    let mut relay = Relay::start(target).await;
    zk.connect = relay.addr.to_string();
    let gateways = [
        serve(zk.clone(), Http1Engine::Own).await,
        serve(zk, Http1Engine::Hyper).await,
    ];
    for gw in &gateways {
        eventually("the gateway routes the app", || async {
            (shop(gw).await == (200, "b".to_owned())).then_some(())
        })
        .await;
        assert_eq!(healthz(gw).await, (200, "ok\n".to_owned()));
        assert_eq!(metric(gw, "caas_gateway_routes_stale").await, 0.0);
        assert_eq!(metric(gw, "caas_gateway_route_age_seconds").await, 0.0);
    }

    relay.cut();
    for gw in &gateways {
        let body = eventually("requests get 503 for stale routes", || async {
            let (code, body) = shop(gw).await;
            (code == 503).then_some(body)
        })
        .await;
        assert!(
            body.starts_with("routes stale: cut off from ZooKeeper for "),
            "{body}"
        );
        // Every proxied request, known host or not.
        let (code, body) = fetch(format!("http://{}/", gw.addr), Some("nope.caas.localhost")).await;
        assert_eq!(code, 503, "{body}");
        let (code, text) = healthz(gw).await;
        assert_eq!(code, 503, "{text}");
        assert!(text.starts_with("degraded: routes stale"), "{text}");
        assert_eq!(metric(gw, "caas_gateway_routes_stale").await, 1.0);
        assert!(metric(gw, "caas_gateway_route_age_seconds").await >= 2.0);
        assert!(metric(gw, "caas_gateway_stale_refused_total").await >= 2.0);
    }
    assert!(backend.hits() > 0);
    let hits = backend.hits();

    relay.restore().await;
    for gw in &gateways {
        eventually(
            "the gateway serves again once ZooKeeper is back",
            || async { (shop(gw).await == (200, "b".to_owned())).then_some(()) },
        )
        .await;
        assert_eq!(healthz(gw).await, (200, "ok\n".to_owned()));
        assert_eq!(metric(gw, "caas_gateway_routes_stale").await, 0.0);
    }
    assert!(backend.hits() > hits);
}
