//! The request path: blacklist, Host → app, limits, round-robin pick, upstream call with bounded
//! retries and passive health, response streaming, protocol upgrades. Reads the routing table
//! through one lock-free load; never touches ZooKeeper.

use crate::answers;
use crate::body::{ProxyBody, Reuse};
use crate::error::{BodyTooLarge, UpstreamError};
use crate::headers::{self, Client};
use crate::metrics::{AppStats, Stats};
use crate::pool::{self, PoolPolicy};
use crate::retry::{self, Failure, Retry};
use crate::route_source::{self, Freshness};
use crate::table::{AppRoute, Backend, HealthPolicy, Route, Sleep, Table, Tried, MAX_TRIES};
use crate::wake::{Held, Wake};
use arc_swap::ArcSwap;
use bytes::Bytes;
use caas_registry::IpRule;
use caas_types::AppId;
use http::header::{self, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// Bodies up to this size of idempotent requests are read before sending, so the request can be
/// replayed to the next backend; bigger ones stream and get one try.
const REPLAY_BUFFER: u64 = 64 * 1024;

/// What every request handler shares.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The routing table (shared with the TLS certificate resolver).
    pub(crate) table: Arc<ArcSwap<Table>>,
    pub(crate) pool: PoolPolicy,
    pub(crate) policy: HealthPolicy,
    pub(crate) stats: Arc<Stats>,
    pub(crate) max_body: u64,
    pub(crate) max_headers: usize,
    pub(crate) max_header_bytes: usize,
    pub(crate) max_tries: usize,
    /// Requests held for sleeping apps.
    pub(crate) wake: Wake,
    /// Proxies whose `X-Forwarded-For` is believed (`--trusted-proxies`).
    pub(crate) trusted: Vec<IpRule>,
    /// Whether the routes are stale (cut off from ZooKeeper too long): then every proxied
    /// request gets 503.
    pub(crate) fresh: Arc<Freshness>,
    /// Longest wait between two reads of a response body; `None`: no limit.
    pub(crate) body_timeout: Option<Duration>,
}

impl Shared {
    /// `Some(503 body)` while the routes are stale, counted; one atomic load otherwise.
    pub(crate) fn stale(&self) -> Option<String> {
        let cut_off = self.fresh.stale_for()?;
        self.stats.global.stale_refused.fetch_add(1, Relaxed);
        Some(route_source::stale_reason(cut_off))
    }
}

/// Whether a request carries more than one Host header (refused with 400 on every path: two
/// Hosts are how a request routed as one app reaches another).
pub(crate) fn duplicate_host(headers: &http::HeaderMap) -> bool {
    let mut hosts = headers.get_all(header::HOST).iter();
    hosts.next().is_some() && hosts.next().is_some()
}

/// A short plain-text answer from the gateway itself.
fn plain(status: StatusCode, body: ProxyBody) -> Response<ProxyBody> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Answers one client request.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    client: &Client,
    https: bool,
) -> Result<Response<ProxyBody>, Infallible> {
    let start = Instant::now();
    if duplicate_host(req.headers()) {
        return Ok(plain(
            StatusCode::BAD_REQUEST,
            ProxyBody::text(answers::DUPLICATE_HOST),
        ));
    }
    if let Some(reason) = shared.stale() {
        return Ok(plain(
            StatusCode::SERVICE_UNAVAILABLE,
            ProxyBody::owned(reason),
        ));
    }
    // Behind a trusted proxy, the client its X-Forwarded-For names.
    let behind = client.peer_trusted.then(|| {
        client.behind(
            req.headers()
                .get_all(&headers::X_FORWARDED_FOR)
                .iter()
                .map(HeaderValue::as_bytes),
            &shared.trusted,
        )
    });
    let client = behind.as_ref().unwrap_or(client);
    let route = {
        let table = shared.table.load();
        if table.is_blacklisted(client.ip) {
            shared.stats.global.blacklisted.fetch_add(1, Relaxed);
            return Ok(plain(
                StatusCode::FORBIDDEN,
                ProxyBody::text(answers::FORBIDDEN),
            ));
        }
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()));
        let Some(host) = host else {
            return Ok(plain(
                StatusCode::BAD_REQUEST,
                ProxyBody::text(answers::MISSING_HOST),
            ));
        };
        match table.lookup(host) {
            Route::App(r) => Arc::clone(r),
            Route::Unknown => {
                shared.stats.global.unknown_host.fetch_add(1, Relaxed);
                return Ok(plain(
                    StatusCode::NOT_FOUND,
                    ProxyBody::text(answers::UNKNOWN_HOST),
                ));
            }
        }
    };
    // The one branch an app with addresses passes: no address is 503, or a wait for one.
    let route = if route.is_empty() {
        match no_address(&shared, &route).await {
            Ok(ready) => ready,
            Err(answer) => {
                route
                    .stats
                    .response(answer.status().as_u16(), start.elapsed());
                return Ok(answer);
            }
        }
    } else {
        route
    };
    let resp = forward(&shared, &route, req, client, https).await;
    route
        .stats
        .response(resp.status().as_u16(), start.elapsed());
    Ok(resp)
}

/// A request for an app with no address: 503, or for an app that may sleep, held until it has
/// one (then its route) or answered (504, or 503 when the queue is full or at shutdown); 503
/// with `Retry-After` at once, or as soon as it is known, for one that failed to start.
async fn no_address(
    shared: &Shared,
    route: &Arc<AppRoute>,
) -> Result<Arc<AppRoute>, Response<ProxyBody>> {
    let no_instance = || {
        shared.stats.global.no_backend.fetch_add(1, Relaxed);
        plain(
            StatusCode::SERVICE_UNAVAILABLE,
            ProxyBody::owned(answers::no_instance(&route.app)),
        )
    };
    match &route.sleep {
        Sleep::Never => return Err(no_instance()),
        Sleep::Failing(reason) => return Err(failed_to_start(shared, &route.app, reason)),
        Sleep::Wakes => {}
    }
    let held = shared
        .wake
        .hold(&route.app, || shared.table.load().release(&route.app))
        .await;
    let (status, text) = match held {
        Held::Ready => {
            // The app's route in the table that let the request go: with its address, or
            // failed to start (if the address went again at once, 503 as for any app with
            // none).
            let table = shared.table.load();
            return match table.app(&route.app) {
                Some(r) if !r.is_empty() => Ok(Arc::clone(r)),
                Some(r) => match &r.sleep {
                    Sleep::Failing(reason) => Err(failed_to_start(shared, &route.app, reason)),
                    Sleep::Never | Sleep::Wakes => Err(no_instance()),
                },
                None => Err(no_instance()),
            };
        }
        Held::TimedOut => (StatusCode::GATEWAY_TIMEOUT, answers::ACTIVATION_TIMED_OUT),
        Held::QueueFull => (StatusCode::SERVICE_UNAVAILABLE, answers::HOLD_QUEUE_FULL),
        Held::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, answers::SHUTTING_DOWN),
    };
    let mut answer = plain(status, ProxyBody::text(text));
    if held == Held::QueueFull {
        answer
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    Err(answer)
}

/// 503 with `Retry-After` for a sleeping app whose wake node says it failed to start.
fn failed_to_start(shared: &Shared, app: &AppId, reason: &str) -> Response<ProxyBody> {
    shared.stats.global.wake_failed.fetch_add(1, Relaxed);
    let mut answer = plain(
        StatusCode::SERVICE_UNAVAILABLE,
        ProxyBody::owned(answers::failed_to_start(app, reason)),
    );
    answer.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_static(answers::FAILED_RETRY_AFTER),
    );
    answer
}

async fn forward(
    shared: &Shared,
    route: &AppRoute,
    mut req: Request<Incoming>,
    client: &Client,
    https: bool,
) -> Response<ProxyBody> {
    // `handle` sends only routes with an address here.
    let _in_flight = route.stats.enter();
    if req.version() == Version::HTTP_2 && headers_too_big(shared, req.headers()) {
        return plain(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyBody::text(answers::HEADERS_TOO_LARGE),
        );
    }
    let declared_len = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_len.is_some_and(|n| n > shared.max_body) {
        return too_large();
    }
    let http2 = req.version() == Version::HTTP_2;
    let upgrade = !http2 && headers::wants_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let original_host = parts.headers.get(header::HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    headers::strip_hop_by_hop(&mut parts.headers, upgrade);
    if !parts.headers.contains_key(header::HOST) {
        if let Some(h) = &original_host {
            parts.headers.insert(header::HOST, h.clone());
        }
    }
    headers::add_forwarded(&mut parts.headers, client, https, original_host, http2);
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let is_idempotent = retry::is_idempotent(parts.method.as_str());

    // A body we can send again, or the one-shot stream.
    let mut replay: Option<Bytes> = None;
    let mut stream: Option<Incoming> = None;
    if body.is_end_stream() {
        replay = Some(Bytes::new());
    } else if is_idempotent && declared_len.is_some_and(|n| n <= REPLAY_BUFFER) {
        match http_body_util::Limited::new(body, REPLAY_BUFFER as usize)
            .collect()
            .await
        {
            Ok(b) => {
                let b = b.to_bytes();
                route.stats.bytes_in(b.len() as u64);
                replay = Some(b);
            }
            Err(_) => {
                return plain(
                    StatusCode::BAD_REQUEST,
                    ProxyBody::text("request body could not be read\n"),
                )
            }
        }
    } else {
        stream = Some(body);
    }

    let max_tries = shared.max_tries.clamp(1, MAX_TRIES);
    let mut tried = Tried::default();
    loop {
        let Some(slot) = route.pick(&mut tried, &shared.policy) else {
            shared.stats.global.no_backend.fetch_add(1, Relaxed);
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                ProxyBody::text(answers::NO_BACKEND),
            );
        };
        let backend = slot.backend();
        // Origin form: the connection already goes to the backend, Host says which app.
        let uri = Uri::from(path.clone());
        let body = match (&replay, stream.take()) {
            (Some(b), _) => ProxyBody::bytes(b.clone()),
            (None, Some(inner)) => {
                ProxyBody::request(inner, Arc::clone(&route.stats), shared.max_body)
            }
            (None, None) => ProxyBody::empty(),
        };
        let can_retry = replay.is_some() && tried.count() < max_tries;
        let mut up = Request::new(body);
        *up.method_mut() = parts.method.clone();
        *up.uri_mut() = uri;
        *up.version_mut() = Version::HTTP_11;
        *up.headers_mut() = if can_retry {
            parts.headers.clone()
        } else {
            std::mem::take(&mut parts.headers)
        };
        let addr = backend.endpoint.addr();
        let span = tracing::debug_span!("upstream", app = %route.app, backend = %addr);
        let sent = send(shared, backend, addr, up, is_idempotent).instrument(span);
        let result = match shared.pool.response_timeout {
            Some(after) => tokio::time::timeout(after, sent).await.unwrap_or_else(|_| {
                Err(UpstreamError::Timeout {
                    backend: addr,
                    after,
                })
            }),
            None => sent.await,
        };
        match result {
            Ok((mut resp, sender)) => {
                backend.success();
                let reuse = Reuse::new(sender, Arc::clone(&backend.pool), shared.pool);
                drop(slot);
                if upgrade && resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                    return switch_protocols(resp, client_upgrade, Arc::clone(&route.stats));
                }
                // A body framed by Transfer-Encoding is re-framed for the client: a
                // Content-Length sent with it (RFC 9112 §6.3: ignored) must not go along, or
                // the two framings disagree downstream.
                if resp.headers().contains_key(header::TRANSFER_ENCODING) {
                    resp.headers_mut().remove(header::CONTENT_LENGTH);
                }
                headers::strip_hop_by_hop(resp.headers_mut(), false);
                headers::add_via(resp.headers_mut(), http2);
                let (parts, inner) = resp.into_parts();
                return Response::from_parts(
                    parts,
                    ProxyBody::response(
                        inner,
                        Arc::clone(&route.stats),
                        reuse,
                        shared.body_timeout,
                    ),
                );
            }
            Err(err) => {
                if let UpstreamError::Send { source, .. } = &err {
                    if body_too_large(source) {
                        return too_large();
                    }
                }
                backend.failure(&shared.policy);
                route.stats.upstream_error();
                let retry = can_retry
                    && err.failure().retry(is_idempotent, replay.is_some()) == Retry::NextBackend;
                tracing::warn!(app = %route.app, error = %err, retry, "upstream try failed");
                if !retry {
                    if matches!(err, UpstreamError::Timeout { .. }) {
                        return plain(
                            StatusCode::GATEWAY_TIMEOUT,
                            ProxyBody::text(answers::BACKEND_TIMED_OUT),
                        );
                    }
                    return plain(
                        StatusCode::BAD_GATEWAY,
                        ProxyBody::text(answers::BACKEND_FAILED),
                    );
                }
            }
        }
    }
}

fn too_large() -> Response<ProxyBody> {
    plain(
        StatusCode::PAYLOAD_TOO_LARGE,
        ProxyBody::text(answers::BODY_TOO_LARGE),
    )
}

fn headers_too_big(shared: &Shared, h: &http::HeaderMap) -> bool {
    if h.len() > shared.max_headers {
        return true;
    }
    let bytes: usize = h.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    bytes > shared.max_header_bytes
}

/// One try at `backend`: on a pooled connection, or a new one. A pooled connection the backend
/// closed before taking the request (a keep-alive race) costs nothing: the request comes back
/// unsent and goes out on a fresh connection.
async fn send(
    shared: &Shared,
    backend: &Backend,
    addr: SocketAddr,
    mut req: Request<ProxyBody>,
    idempotent: bool,
) -> Result<(Response<Incoming>, pool::Sender), UpstreamError> {
    if let Some(mut sender) = backend.pool.checkout() {
        match sender.try_send_request(req).await {
            Ok(resp) => return Ok((resp, sender)),
            Err(mut e) => match e.take_message() {
                // Handed back whole, so replayable whatever its body.
                Some(unsent)
                    if Failure::StaleUnsent.retry(idempotent, true) == Retry::FreshConnection =>
                {
                    req = unsent
                }
                _ => {
                    return Err(UpstreamError::Send {
                        backend: addr,
                        source: e.into_error(),
                    })
                }
            },
        }
    }
    let mut sender =
        pool::connect(addr, &shared.pool)
            .await
            .map_err(|source| UpstreamError::Connect {
                backend: addr,
                source,
            })?;
    match sender.send_request(req).await {
        Ok(resp) => Ok((resp, sender)),
        Err(source) => Err(UpstreamError::Send {
            backend: addr,
            source,
        }),
    }
}

fn body_too_large(e: &hyper::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<BodyTooLarge>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// Hands the client 101 and splices the two upgraded connections together.
fn switch_protocols(
    mut resp: Response<Incoming>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    stats: Arc<AppStats>,
) -> Response<ProxyBody> {
    let upstream_upgrade = hyper::upgrade::on(&mut resp);
    if let Some(client_upgrade) = client_upgrade {
        tokio::spawn(async move {
            let (client, upstream) = match tokio::join!(client_upgrade, upstream_upgrade) {
                (Ok(c), Ok(u)) => (c, u),
                (c, u) => {
                    tracing::debug!(client = c.is_ok(), upstream = u.is_ok(), "upgrade failed");
                    return;
                }
            };
            let mut client = TokioIo::new(client);
            let mut upstream = TokioIo::new(upstream);
            match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                Ok((up, down)) => {
                    stats.bytes_in(up);
                    stats.bytes_out(down);
                }
                Err(e) => tracing::debug!(error = %e, "upgraded connection ended"),
            }
        });
    }
    let (parts, _) = resp.into_parts();
    Response::from_parts(parts, ProxyBody::empty())
}
