//! `routes_feed` against the real ZooKeeper (a chroot of its own): the feed follows the
//! registry's route cache into the gateway's two channels, and its status goes starting → live,
//! live → disconnected (the last routes kept) → live again, as `/healthz` reports it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use caas_gateway::{Gateway, RouteStatus, RoutesFeed};
use caas_registry::ZkConfig;
use caas_testkit::eventually;
use caas_testkit::zk::Chroot;
use caas_types::{AppId, ContainerId, Endpoint, Version};
use common::*;
use std::net::SocketAddr;
use tokio::sync::oneshot;

/// A gateway serving from `feed`, as `run_with_zookeeper` wires it; stops when dropped.
struct Served {
    addr: SocketAddr,
    admin: SocketAddr,
    _stop: oneshot::Sender<()>,
}

async fn serve(feed: RoutesFeed) -> Served {
    let gw = Gateway::bind(test_config())
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

/// (status, body) of `GET url`, with `host` as the Host header if given.
async fn fetch(url: String, host: Option<&str>) -> (u16, String) {
    let mut r = client().get(url);
    if let Some(h) = host {
        r = r.header("host", h);
    }
    let r = r.send().await.expect("request");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

async fn healthz(gw: &Served) -> (u16, String) {
    fetch(format!("http://{}/healthz", gw.admin), None).await
}

async fn status_of_host(gw: &Served, host: &str) -> u16 {
    fetch(format!("http://{}/", gw.addr), Some(host)).await.0
}

#[tokio::test]
async fn the_feed_follows_zookeeper_into_the_gateway() {
    let root = Chroot::new("feed").await;
    let registry = root.registry().await;
    let app: AppId = "shop".parse().unwrap();
    registry.add_app(&app).await.expect("app node");

    let feed = RoutesFeed::start(root.reader());
    let (mut routes, mut status) = (feed.routes.clone(), feed.status.clone());
    let gw = serve(feed).await;
    eventually("the feed is live", || {
        let live = *status.borrow_and_update() == RouteStatus::Live;
        async move { live.then_some(()) }
    })
    .await;
    eventually("the app's node is in the routes", || {
        let known = routes.borrow_and_update().apps.contains_key(&app);
        async move { known.then_some(()) }
    })
    .await;
    assert_eq!(healthz(&gw).await, (200, "ok\n".to_owned()));
    // Known app, no instance: 503; a name ZooKeeper does not hold: 404.
    assert_eq!(status_of_host(&gw, "shop.caas.localhost").await, 503);
    assert_eq!(status_of_host(&gw, "nope.caas.localhost").await, 404);

    // A registered instance reaches the routes.
    let endpoint: Endpoint = "127.0.0.2:1".parse().unwrap();
    let version: Version = "v1".parse().unwrap();
    let container: ContainerId = "0123456789ab".parse().unwrap();
    registry
        .register(&app, &version, &container, endpoint)
        .await
        .expect("register");
    eventually("the instance is in the routes", || {
        let has = routes
            .borrow_and_update()
            .endpoints(&app)
            .is_some_and(|e| e.iter().any(|r| r.endpoint == endpoint));
        async move { has.then_some(()) }
    })
    .await;
    registry
        .deregister(&app, &version, &container)
        .await
        .expect("deregister");
    eventually("the instance leaves the routes", || {
        let gone = routes
            .borrow_and_update()
            .endpoints(&app)
            .is_none_or(|e| e.is_empty());
        async move { gone.then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_zookeeper_is_starting_and_routes_nothing() {
    // Port 1 on loopback: nothing listens, connecting is refused.
    let zk = ZkConfig::new("127.0.0.1:1");
    let feed = RoutesFeed::start(zk);
    let mut status = feed.status.clone();
    assert!(
        matches!(&*status.borrow(), RouteStatus::Starting { reason } if reason.contains("127.0.0.1:1")),
        "{:?}",
        *status.borrow()
    );
    let gw = serve(feed).await;
    // The first failed start replaces the initial reason with its own.
    eventually("a failed start is reported", || {
        let failed = matches!(
            &*status.borrow_and_update(),
            RouteStatus::Starting { reason } if !reason.starts_with("connecting to ZooKeeper")
        );
        async move { failed.then_some(()) }
    })
    .await;
    let (code, text) = healthz(&gw).await;
    assert_eq!(code, 503, "{text}");
    assert!(text.contains("not started"), "{text}");
    assert_eq!(status_of_host(&gw, "shop.caas.localhost").await, 404);
}

#[tokio::test]
async fn a_lost_zookeeper_keeps_the_last_routes_and_comes_back() {
    let root = Chroot::new("feed-cut").await;
    let registry = root.registry().await;
    let app: AppId = "shop".parse().unwrap();
    registry.add_app(&app).await.expect("app node");

    let mut zk = root.reader();
    let target = zk.connect.split(',').next().unwrap().to_owned();
    let mut relay = Relay::start(target).await;
    zk.connect = relay.addr.to_string();
    let feed = RoutesFeed::start(zk);
    let (mut routes, mut status) = (feed.routes.clone(), feed.status.clone());
    let gw = serve(feed).await;
    eventually("the feed is live with the app", || {
        let ready = *status.borrow_and_update() == RouteStatus::Live
            && routes.borrow_and_update().apps.contains_key(&app);
        async move { ready.then_some(()) }
    })
    .await;
    let generation = routes.borrow().generation;

    relay.cut();
    eventually("the lost session is reported", || {
        let lost = matches!(
            &*status.borrow_and_update(),
            RouteStatus::Disconnected { reason, .. } if reason.contains(&relay.addr.to_string())
        );
        async move { lost.then_some(()) }
    })
    .await;
    let (code, text) = healthz(&gw).await;
    assert_eq!(code, 503, "{text}");
    assert!(text.contains("disconnected"), "{text}");
    // Still routed from the last good snapshot.
    assert_eq!(routes.borrow().generation, generation);
    assert_eq!(status_of_host(&gw, "shop.caas.localhost").await, 503);

    relay.restore().await;
    eventually("the feed is live again", || {
        let live = *status.borrow_and_update() == RouteStatus::Live;
        async move { live.then_some(()) }
    })
    .await;
    assert_eq!(healthz(&gw).await, (200, "ok\n".to_owned()));
}
