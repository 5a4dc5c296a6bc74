//! The gateway's routes from ZooKeeper: the connection config (the shared [`ZkArgs`] with the
//! gateway's read-only credential), and the task that starts the registry's [`RouteCache`]
//! (retrying until ZooKeeper answers) and feeds its snapshots and its connection state into the
//! watch channels [`Gateway::serve`](crate::Gateway::serve) and `/healthz` read.
//!
//! The gateway serves from the start (404 for everything) and switches to the cache's snapshots
//! once ZooKeeper answers, so a gateway started before ZooKeeper comes up on its own; a cache that
//! loses ZooKeeper keeps its last good snapshot and `/healthz` says so.

use crate::error::{Error, Result};
use crate::route_source::RouteStatus;
use caas_registry::{RouteCache, RouteSnapshot, ZkAuth, ZkConfig};
use caas_service::ZkArgs;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often the cache's connection state is looked at for `/healthz`.
const STATUS_EVERY: Duration = Duration::from_millis(500);

/// Time between two attempts to start the route cache.
const START_RETRY: Duration = Duration::from_secs(2);

/// The gateway's ZooKeeper config: `zk`'s connect string, chroot and session timeout, with the
/// read-only credential `read_auth` (`user:password`, from `CAAS_ZK_READ_AUTH`) if any. The
/// gateway never takes the writer's credential: see [`ZkArgs`].
pub fn zk_config(zk: &ZkArgs, read_auth: Option<&str>) -> Result<ZkConfig> {
    let auth = read_auth
        .map(|a| a.parse::<ZkAuth>().map_err(Error::ReadAuth))
        .transpose()?;
    Ok(zk.zk_config(auth))
}

/// The two channels a gateway serves from, fed by a task that follows the route cache.
#[derive(Debug)]
pub struct RoutesFeed {
    /// The latest routes: empty until the cache has started, then each snapshot it publishes.
    pub routes: watch::Receiver<Arc<RouteSnapshot>>,
    /// Where the routes come from, for `/healthz`.
    pub status: watch::Receiver<RouteStatus>,
}

impl RoutesFeed {
    /// Starts following the routes under `zk` on a task of its own, which ends when both
    /// receivers are dropped (at the latest once ZooKeeper has answered) or the cache stops.
    /// Until the cache starts, the routes are empty and the status is
    /// [`RouteStatus::Starting`] with the last reason it did not.
    pub fn start(zk: ZkConfig) -> RoutesFeed {
        let (tx, routes) = watch::channel(Arc::new(RouteSnapshot::default()));
        let (status_tx, status) = watch::channel(RouteStatus::Starting {
            reason: format!("connecting to ZooKeeper at {}", zk.connect),
        });
        tokio::spawn(follow_routes(zk, tx, status_tx));
        RoutesFeed { routes, status }
    }
}

/// Starts the route cache (retrying until ZooKeeper answers), forwards its snapshots and keeps
/// the route status current.
async fn follow_routes(
    zk: ZkConfig,
    tx: watch::Sender<Arc<RouteSnapshot>>,
    status: watch::Sender<RouteStatus>,
) {
    let cache = loop {
        match RouteCache::start(&zk).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(error = %e, connect = %zk.connect, "route cache not started; retrying");
                status.send_replace(RouteStatus::Starting {
                    reason: e.to_string(),
                });
                tokio::time::sleep(START_RETRY).await;
            }
        }
    };
    tracing::info!(connect = %zk.connect, "route cache started");
    status.send_replace(RouteStatus::Live);
    let mut rx = cache.subscribe();
    let mut tick = tokio::time::interval(STATUS_EVERY);
    let mut snap = rx.borrow_and_update().clone();
    loop {
        if tx.send(snap).is_err() {
            break;
        }
        loop {
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    break;
                }
                _ = tick.tick() => {
                    let connected = cache.is_connected();
                    status.send_if_modified(|s| match (connected, &*s) {
                        (true, RouteStatus::Live) | (false, RouteStatus::Disconnected { .. }) => false,
                        (true, _) => {
                            tracing::info!("route cache connected again");
                            *s = RouteStatus::Live;
                            true
                        }
                        (false, _) => {
                            tracing::warn!("route cache lost ZooKeeper; serving the last good routes");
                            *s = RouteStatus::Disconnected {
                                since: Instant::now(),
                                reason: format!("no ZooKeeper session to {}", zk.connect),
                            };
                            true
                        }
                    });
                }
            }
        }
        snap = rx.borrow_and_update().clone();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn args(chroot: Option<&str>) -> ZkArgs {
        ZkArgs {
            connect: "zk1:2181,zk2:2181".into(),
            chroot: chroot.map(str::to_owned),
            session_timeout_ms: 6000,
        }
    }

    #[test]
    fn config_from_flags_and_the_read_credential() {
        let zk = zk_config(&args(Some("/prod")), Some("gateway:secret")).unwrap();
        assert_eq!(zk.connect, "zk1:2181,zk2:2181");
        assert_eq!(zk.chroot.as_deref(), Some("/prod"));
        assert_eq!(zk.auth, Some("gateway:secret".parse().unwrap()));
        assert_eq!(zk.session_timeout, Duration::from_secs(6));

        let zk = zk_config(&args(Some("")), None).unwrap();
        assert_eq!((zk.chroot, zk.auth), (None, None));
    }

    #[test]
    fn a_malformed_credential_names_its_variable() {
        for bad in ["gateway", ":secret", "gateway:"] {
            let err = zk_config(&args(None), Some(bad)).unwrap_err();
            assert!(matches!(err, Error::ReadAuth(_)), "{bad}: {err:?}");
            assert!(err.to_string().contains("CAAS_ZK_READ_AUTH"), "{err}");
        }
    }
}
