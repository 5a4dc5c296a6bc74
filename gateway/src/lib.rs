//! The caas gateway: the front door every user request goes through.
//!
//! It routes `{appId}.{domain}` (and custom domains) round-robin over the app's registered
//! instances, from a table rebuilt whenever the registry's route cache publishes a new
//! [`RouteSnapshot`]. The request path reads that table with one lock-free load and never
//! calls ZooKeeper.
//!
//! Modules: `config` (flags), `server` (listeners, connections, shutdown), `h1` (the HTTP/1.1
//! fast path: the gateway's own request loop for HTTP/1.1 connections, plain and TLS), `proxy` (the
//! general request path on hyper: h2c, h2 over TLS, HTTP/1.0, upgrades), `table` (routing table, round-robin, passive health), `headers` (proxy hygiene),
//! `body` (streaming bodies), `pool` (upstream keep-alive connections), `retry` (the one retry policy of both paths), `idle` (idle timeout), `limits` (connection caps at accept), `deadline` (the lazily re-armed per-connection timer of the fast path), `answers` (the gateway's own answer texts), `metrics` and `admin` (stats,
//! `/healthz`), `route_source` (where routes come from: live, starting, disconnected), `routes_feed`
//! (ZooKeeper's routes into the gateway: the connection config and the task that follows the
//! registry's route cache), `wake` (requests held for sleeping apps until their first
//! address), `demand` (held and in-flight requests reported to the admin API), `tls`.

mod admin;
mod answers;
mod body;
mod config;
mod deadline;
mod demand;
mod error;
mod h1;
mod headers;
mod idle;
mod limits;
mod metrics;
mod pool;
mod proxy;
mod retry;
mod route_source;
pub mod routes_feed;
mod server;
mod table;
mod tls;
mod traffic;
mod wake;

pub use body::ProxyBody;
pub use caas_registry::RouteSnapshot;
pub use config::{Config, GatewayToken, Http1Engine};
pub use error::{Error, Result};
pub use route_source::RouteStatus;
pub use routes_feed::RoutesFeed;
pub use server::Gateway;

use std::future::Future;
use std::sync::Arc;
use tokio::sync::watch;

/// Binds the listeners of `config` and serves until `shutdown` completes, routing by the
/// snapshots `routes` publishes.
pub async fn run(
    config: Config,
    routes: watch::Receiver<Arc<RouteSnapshot>>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    Gateway::bind(config).await?.serve(routes, shutdown).await
}

/// Runs the gateway as deployed: follows the routes under `zk` ([`RoutesFeed`], starting before
/// ZooKeeper answers), binds the listeners of `config`, and serves until `shutdown` completes.
pub async fn run_with_zookeeper(
    config: Config,
    zk: caas_registry::ZkConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let feed = RoutesFeed::start(zk);
    Gateway::bind(config)
        .await?
        .with_route_status(feed.status)
        .serve(feed.routes, shutdown)
        .await
}
