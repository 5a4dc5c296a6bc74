//! Listeners and connections: binding, accepting, serving HTTP/1.1 + h2c (and h2/HTTP/1.1 over
//! TLS), applying the header-read and idle timeouts, following route snapshots, and shutting
//! down gracefully.

use crate::body::ProxyBody;
use crate::config::{Config, Http1Engine};
use crate::error::{Error, Result};
use crate::headers::Client;
use crate::idle::{Activity, IdleIo};
use crate::limits::{ConnLimits, Refused};
use crate::metrics::Stats;
use crate::pool::PoolPolicy;
use crate::proxy::Shared;
use crate::route_source::{self, Freshness, RouteStatus};
use crate::table::{HealthPolicy, Table};
use crate::wake::Wake;
use crate::{admin, demand, h1, proxy, tls};
use arc_swap::ArcSwap;
use caas_registry::RouteSnapshot;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// An idle upstream connection is closed after this long.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// A gateway whose listeners are bound; [`Gateway::serve`] runs it.
pub struct Gateway {
    config: Config,
    http: TcpListener,
    tls: Option<(TcpListener, TlsAcceptor)>,
    admin: TcpListener,
    status: Option<watch::Receiver<RouteStatus>>,
    /// The routing table, swapped whole on each snapshot; the TLS certificate resolver reads it
    /// too, so it exists from bind on (empty until [`Gateway::serve`]).
    table: Arc<ArcSwap<Table>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("http", &self.http_addr())
            .field("tls", &self.tls_addr())
            .field("admin", &self.admin_addr())
            .finish()
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

fn local(l: &TcpListener) -> SocketAddr {
    l.local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

impl Gateway {
    /// Checks the configuration and binds every listener (port 0 picks a free port).
    pub async fn bind(config: Config) -> Result<Gateway> {
        if config.domain.parse::<caas_types::Domain>().is_err() {
            return Err(Error::Domain(config.domain.clone()));
        }
        let sources = tls::Sources {
            cert: config.tls_cert.as_deref(),
            key: config.tls_key.as_deref(),
            dir: config.tls_dir.as_deref(),
        };
        let table = Arc::new(ArcSwap::from_pointee(Table::empty(&config.domain)));
        let tls = match tls::acceptor(sources, &config.domain, Arc::clone(&table))? {
            Some(acceptor) => Some((bind(config.tls_listen).await?, acceptor)),
            None => None,
        };
        Ok(Gateway {
            http: bind(config.listen).await?,
            admin: bind(config.admin_listen).await?,
            tls,
            config,
            status: None,
            table,
        })
    }

    /// Reports the route source's state on `/healthz` (503 with the reason unless
    /// [`RouteStatus::Live`]). Without it the routes are taken as fixed and always healthy.
    pub fn with_route_status(mut self, status: watch::Receiver<RouteStatus>) -> Gateway {
        self.status = Some(status);
        self
    }

    /// Where plain HTTP is served.
    pub fn http_addr(&self) -> SocketAddr {
        local(&self.http)
    }

    /// Where HTTPS is served, if configured.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().map(|(l, _)| local(l))
    }

    /// Where `/metrics` and `/healthz` are served.
    pub fn admin_addr(&self) -> SocketAddr {
        local(&self.admin)
    }

    /// Serves until `shutdown` completes, then stops accepting, lets requests in flight finish
    /// (up to the grace period) and returns. Routes follow `routes`: each published snapshot
    /// replaces the routing table.
    pub async fn serve(
        self,
        mut routes: watch::Receiver<Arc<RouteSnapshot>>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<()> {
        let Gateway {
            config,
            http,
            tls,
            admin,
            status,
            table: routing,
        } = self;
        let stats = Arc::new(Stats::default());
        let first = routes.borrow_and_update().clone();
        let table = Table::build(&first, &Table::empty(&config.domain), &stats);
        publish_gauges(&stats, &table);
        routing.store(Arc::new(table));
        let shared = Arc::new(Shared {
            table: routing,
            pool: PoolPolicy {
                max_idle: config.pool_idle_per_backend,
                idle_timeout: POOL_IDLE_TIMEOUT,
                connect_timeout: config.connect_timeout(),
                response_timeout: config.response_timeout(),
            },
            policy: HealthPolicy {
                eject_after: config.eject_after.max(1),
                eject_for: Duration::from_millis(config.eject_ms),
                epoch: Instant::now(),
                max_inflight: config.max_inflight_per_backend.max(1),
            },
            stats: Arc::clone(&stats),
            max_body: config.max_body_bytes,
            max_headers: config.max_headers,
            max_header_bytes: config.max_header_bytes,
            max_tries: config.max_tries,
            wake: Wake::new(
                config.hold_queue,
                config.activation_timeout(),
                Arc::clone(&stats),
            ),
            trusted: config.trusted_proxies.clone(),
            fresh: Arc::new(Freshness::default()),
            body_timeout: config.body_timeout(),
        });

        let token = CancellationToken::new();
        let tracker = TaskTracker::new();
        let builder = Arc::new(server_builder(&config));

        // Route updates: rebuild off the request path, publish with one pointer swap.
        let watcher = {
            let shared = Arc::clone(&shared);
            let token = token.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = token.cancelled() => break,
                        changed = routes.changed() => {
                            if changed.is_err() {
                                tracing::warn!("route source closed; keeping the last routes");
                                break;
                            }
                        }
                    }
                    let snap = routes.borrow_and_update().clone();
                    let prev = shared.table.load_full();
                    let table = Table::build(&snap, &prev, &shared.stats);
                    publish_gauges(&shared.stats, &table);
                    tracing::debug!(
                        generation = table.generation,
                        apps = table.len(),
                        "routes updated"
                    );
                    let table = Arc::new(table);
                    shared.table.store(Arc::clone(&table));
                    // Requests held for an app that has its first address now go, in order; so
                    // do those for an app that failed to start (answered 503 at once).
                    let released = shared.wake.release(|app| table.release(app));
                    if released > 0 {
                        tracing::debug!(released, "held requests released");
                    }
                }
            })
        };

        // Stale routes: cut off from ZooKeeper longer than the staleness period, the gateway
        // stops routing (503) until the route cache is back.
        let staleness = match (&status, config.max_route_staleness()) {
            (Some(status), Some(max)) => Some(tokio::spawn(route_source::follow_staleness(
                status.clone(),
                max,
                Arc::clone(&shared.fresh),
                token.clone(),
            ))),
            _ => None,
        };

        // Demand and traffic reports to the admin API, if one is configured. They stop after
        // the connections are closed, with one last report of the traffic counted meanwhile.
        let report_stop = CancellationToken::new();
        let reporter = config.demand_target().map(|target| {
            let shared = Arc::clone(&shared);
            let stop = report_stop.clone();
            tokio::spawn(async move {
                demand::run(target, &shared.wake, &shared.stats, stop).await;
            })
        });

        // Idle upstream connections past their time close, off the request path.
        let sweeper = {
            let shared = Arc::clone(&shared);
            let token = token.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(POOL_IDLE_TIMEOUT / 4);
                loop {
                    tokio::select! {
                        _ = token.cancelled() => break,
                        _ = tick.tick() => {}
                    }
                    let table = shared.table.load();
                    let now = Instant::now();
                    for b in table.backends() {
                        b.pool.sweep(&shared.pool, now);
                        b.idle.sweep(shared.pool.idle_timeout, now);
                    }
                }
            })
        };

        let ctx = ConnCtx {
            shared: Arc::clone(&shared),
            builder,
            token: token.clone(),
            tracker: tracker.clone(),
            idle: config.idle_timeout(),
            header_timeout: config.header_timeout(),
            http1: config.http1,
            limits: Arc::new(ConnLimits::new(
                config.max_connections,
                config.max_connections_per_ip,
            )),
        };
        tracing::info!(http = %local(&http), admin = %local(&admin), https = ?tls.as_ref().map(|(l, _)| local(l)), "gateway listening");
        let mut loops = vec![tokio::spawn(accept_loop(http, None, ctx.clone()))];
        if let Some((l, acceptor)) = tls {
            loops.push(tokio::spawn(accept_loop(l, Some(acceptor), ctx.clone())));
        }
        let admin_state = Arc::new(admin::Admin {
            stats,
            status,
            fresh: Arc::clone(&shared.fresh),
        });
        loops.push(tokio::spawn(admin_loop(admin, admin_state, ctx.clone())));

        shutdown.await;
        tracing::info!("shutting down: no new connections, finishing requests in flight");
        token.cancel();
        // Held requests end now (503): their app may never start while we wait.
        shared.wake.close();
        for l in loops {
            let _ = l.await;
        }
        let _ = watcher.await;
        let _ = sweeper.await;
        if let Some(s) = staleness {
            let _ = s.await;
        }
        tracker.close();
        if tokio::time::timeout(config.shutdown_grace(), tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("grace period over; dropping the remaining connections");
        }
        report_stop.cancel();
        if let Some(r) = reporter {
            let _ = r.await;
        }
        Ok(())
    }
}

fn publish_gauges(stats: &Stats, table: &Table) {
    stats.global.generation.store(table.generation, Relaxed);
    stats.global.routes.store(table.len() as u64, Relaxed);
}

fn server_builder(config: &Config) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    // No hyper timer for HTTP/1: with one, hyper arms a header-read timer for every request
    // (and closes idle keep-alive connections at the header timeout). `IdleIo` keeps both
    // timeouts with one timer per connection.
    b.http1()
        // Small answers dominate: copying body bytes into the head's buffer and sending one
        // plain write costs less than a multi-segment writev (measured: -2 % CPU per request).
        .writev(false)
        .max_buf_size(config.max_header_bytes.max(8192))
        .max_headers(config.max_headers)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    b
}

/// What every connection task needs.
#[derive(Clone)]
struct ConnCtx {
    shared: Arc<Shared>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    token: CancellationToken,
    tracker: TaskTracker,
    idle: Duration,
    header_timeout: Duration,
    http1: Http1Engine,
    /// Connection caps, applied at accept.
    limits: Arc<ConnLimits>,
}

async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, ctx: ConnCtx) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = ctx.token.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // The caps: one atomic and one shard of the per-address map, once per connection.
        let permit = match ctx.limits.admit(peer.ip()) {
            Ok(p) => p,
            Err(over) => {
                let global = &ctx.shared.stats.global;
                match over {
                    Refused::Global => global.refused_global.fetch_add(1, Relaxed),
                    Refused::PerIp => global.refused_per_ip.fetch_add(1, Relaxed),
                };
                tracing::debug!(%peer, ?over, "connection over its cap; closed at accept");
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let ctx2 = ctx.clone();
        let tls = tls.clone();
        ctx.tracker.spawn(async move {
            ctx2.shared.stats.global.connections.fetch_add(1, Relaxed);
            serve_connection(stream, peer, tls, &ctx2).await;
            ctx2.shared.stats.global.connections.fetch_sub(1, Relaxed);
            drop(permit);
        });
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    ctx: &ConnCtx,
) {
    let activity = Arc::new(Activity::default());
    let shared = Arc::clone(&ctx.shared);
    let https = tls.is_some();
    let act = Arc::clone(&activity);
    let client = Arc::new(Client::new(peer.ip(), &ctx.shared.trusted));
    let svc = service_fn(move |req: hyper::Request<Incoming>| {
        let guard = act.enter(req.version() == http::Version::HTTP_2);
        let shared = Arc::clone(&shared);
        let client = Arc::clone(&client);
        async move {
            let r = proxy::handle(shared, req, &client, https).await;
            if matches!(&r, Ok(resp) if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS) {
                guard.switched();
            }
            drop(guard);
            r
        }
    });
    match tls {
        None => {
            let Some((stream, read)) = fast_path(ctx, stream, peer, false).await else {
                return;
            };
            let io = IdleIo::new(TokioIo::new(stream), ctx.idle, ctx.header_timeout, activity)
                .with_prefix(read);
            drive(ctx, io, svc).await;
        }
        Some(acceptor) => {
            let handshake = tokio::time::timeout(ctx.header_timeout, acceptor.accept(stream));
            let tls_stream = match handshake.await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "tls handshake failed"),
                Err(_) => return tracing::debug!(%peer, "tls handshake timed out"),
            };
            // HTTP/1.1 (ALPN, or none) takes the fast path like plain HTTP; h2 is hyper's.
            let (stream, read) = if tls_stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                (tls_stream, bytes::BytesMut::new())
            } else {
                let Some(handed) = fast_path(ctx, tls_stream, peer, true).await else {
                    return;
                };
                handed
            };
            let io = IdleIo::new(TokioIo::new(stream), ctx.idle, ctx.header_timeout, activity)
                .with_prefix(read);
            drive(ctx, io, svc).await;
        }
    }
}

/// Runs the HTTP/1.1 fast path on a connection (unless `--http1 hyper`); what it hands over,
/// with the bytes it read, is for hyper. `None`: the connection is done.
async fn fast_path<S>(
    ctx: &ConnCtx,
    stream: S,
    addr: SocketAddr,
    https: bool,
) -> Option<(S, bytes::BytesMut)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match ctx.http1 {
        Http1Engine::Own => {
            let timeouts = h1::Timeouts {
                header: ctx.header_timeout,
                idle: ctx.idle,
            };
            let peer = h1::Peer { addr, https };
            match h1::serve(stream, peer, &ctx.shared, &ctx.token, timeouts).await {
                h1::Ended::Closed => None,
                h1::Ended::Handover(stream, read) => {
                    ctx.shared.stats.global.handovers.fetch_add(1, Relaxed);
                    Some((stream, read))
                }
            }
        }
        Http1Engine::Hyper => Some((stream, bytes::BytesMut::new())),
    }
}

async fn drive<I, S>(ctx: &ConnCtx, io: I, svc: S)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::Service<
            hyper::Request<Incoming>,
            Response = hyper::Response<ProxyBody>,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let conn = ctx.builder.serve_connection_with_upgrades(io, svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "client connection ended with an error");
            }
        }
        _ = ctx.token.cancelled() => {
            conn.as_mut().graceful_shutdown();
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "client connection ended during shutdown");
            }
        }
    }
}

async fn admin_loop(listener: TcpListener, state: Arc<admin::Admin>, ctx: ConnCtx) {
    loop {
        let stream = tokio::select! {
            _ = ctx.token.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let state = Arc::clone(&state);
        let token = ctx.token.clone();
        ctx.tracker.spawn(async move {
            let svc = service_fn(move |req| admin::handle(Arc::clone(&state), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = token.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}
