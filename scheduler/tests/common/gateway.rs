#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // each test binary uses the part it needs
//! Real gateways in-process, routing from the platform's ZooKeeper chroot and reporting demand
//! and traffic to the platform's scheduler with the gateway token.

use super::platform::Platform;
use caas_gateway::{Gateway, RouteStatus, RoutesFeed};
use caas_testkit::eventually;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::oneshot;

/// The gateway token the tests' schedulers take (`--gateway-token`).
pub const GATEWAY_TOKEN: &str = "gateway-test-token";

/// A real gateway in-process, reporting demand to the platform's scheduler.
pub struct Gw {
    /// Where it serves plain HTTP.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<caas_gateway::Result<()>>,
}

impl Gw {
    /// A gateway named `id` in its reports, once its route cache is live.
    pub async fn start(p: &Platform, id: &str) -> Gw {
        let mut c = caas_gateway::Config::new();
        c.listen = "127.0.0.1:0".parse().unwrap();
        c.admin_listen = "127.0.0.1:0".parse().unwrap();
        c.tls_listen = "127.0.0.1:0".parse().unwrap();
        c.admin_api = Some(p.api.clone());
        c.gateway_token = Some(GATEWAY_TOKEN.parse().unwrap());
        c.gateway_id = Some(id.to_owned());
        let feed = RoutesFeed::start(p.zk_reader());
        let mut status = feed.status.clone();
        let gw = Gateway::bind(c)
            .await
            .expect("bind gateway")
            .with_route_status(feed.status);
        let addr = gw.http_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(gw.serve(feed.routes, async move {
            let _ = stopped.await;
        }));
        eventually("the gateway's route cache is live", || {
            let live = *status.borrow_and_update() == RouteStatus::Live;
            async move { live.then_some(()) }
        })
        .await;
        Gw {
            addr,
            stop: Some(stop),
            task,
        }
    }

    /// `GET path` of `app` through this gateway: status, `Retry-After`, body.
    pub async fn get(
        &self,
        http: &reqwest::Client,
        app: &str,
        path: &str,
    ) -> (u16, Option<String>, String) {
        let r = http
            .get(format!("http://{}{path}", self.addr))
            .header("host", format!("{app}.caas.localhost"))
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} of {app} through the gateway: {e}"));
        let status = r.status().as_u16();
        let retry = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, retry, r.text().await.unwrap_or_default())
    }

    /// Stops it gracefully (its connections closed, its last report sent) and waits.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = self.task.await;
    }
}

/// An HTTP client for requests through the gateways (no proxy, many idle connections kept).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap()
}
