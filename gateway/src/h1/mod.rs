//! The HTTP/1.1 fast path: HTTP/1.1 client connections (plain, and TLS that negotiated
//! HTTP/1.1) served by the gateway's own request loop instead of hyper's server and client.
//!
//! One task per client connection does everything in order: read a request head into the
//! connection's buffer, parse it in place ([`head`]), route it, write the rewritten head (and a
//! small body) to a pooled backend connection in one write ([`upstream`]), stream what is left
//! of the body, parse the response head, write it with the first body bytes to the client in one
//! write, stream the rest, and put the backend connection back. No header map, no per-request
//! allocation, no second task per exchange, no per-request timer ([`client`]): this is what lets
//! the gateway spend less CPU per request than nginx.
//!
//! What it does not take on, it hands over, with the bytes already read, to the general hyper
//! path at a request boundary (see [`head::Verdict::Handover`]): HTTP/2's preface (h2c), HTTP/1.0,
//! protocol upgrades (WebSocket), `Expect`, CONNECT, non-path targets, and requests whose body
//! is not already whole in the buffer (they stream both ways at once, which hyper does).
//! Behaviour is the same either way: routing, round-robin, retries of replayable requests on
//! connect failures and stale keep-alive connections, passive health, limits (431, 413),
//! timeouts, `X-Forwarded-*`, `Via`, hop-by-hop headers, stats, graceful shutdown.

mod chunked;
mod client;
pub(crate) mod head;
pub(crate) mod upstream;

use crate::answers;
use crate::headers::Client;
use crate::metrics::AppStats;
use crate::proxy::Shared;
use crate::retry::{Failure, Retry};
use crate::table::{AppRoute, Backend, Route, Sleep, Tried, MAX_TRIES};
use crate::wake::Held;
use bytes::{Buf, BytesMut};
use caas_types::AppId;
use chunked::Chunked;
use client::ClientIo;
pub(crate) use client::Timeouts;
use head::{Framing, Refusal, ResponseVerdict, Verdict};
use http::StatusCode;
use std::borrow::Cow;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use upstream::UpConn;

/// How a fast-path connection ended.
#[derive(Debug)]
pub(crate) enum Ended<S> {
    /// Closed (by either side, a timeout, an error or shutdown).
    Closed,
    /// The rest is for the general path: the stream and the bytes read but not used (they
    /// begin with a request head).
    Handover(S, BytesMut),
}

/// What the fast path needs to know of a client connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer {
    /// The client's address.
    pub(crate) addr: SocketAddr,
    /// The connection is TLS (`X-Forwarded-Proto: https`).
    pub(crate) https: bool,
}

/// What a request head comes to, with the borrow of the read buffer over.
enum Step {
    Partial,
    Handover,
    /// The gateway answers itself.
    Own(Own),
    /// The app sleeps: hold the request until it has an address, then read the head again.
    Hold(Hold),
    Forward(Forward),
}

struct Hold {
    app: AppId,
    stats: Arc<AppStats>,
    /// Close after answering ourselves (the client asked, or a body we will not read).
    close: bool,
    /// Head bytes to drop if we answer ourselves and the connection goes on.
    len: usize,
}

struct Own {
    status: StatusCode,
    body: Cow<'static, str>,
    /// Close after answering (a refused head, or a body we will not read).
    close: bool,
    /// Head bytes to drop when the connection goes on.
    len: usize,
    /// Extra header lines (each ending in `\r\n`).
    extra: &'static [u8],
}

/// The `Retry-After` line of the 503 for a sleeping app that failed to start.
const FAILED_RETRY_AFTER: &[u8] = b"retry-after: 5\r\n";

struct Forward {
    /// Bytes of the request in the buffer: head and body.
    len: usize,
    route: Arc<AppRoute>,
    close: bool,
    idempotent: bool,
    head: bool,
}

/// Why one try at a backend failed.
enum TryError {
    /// Nothing of the request reached a backend that took it (connecting or the first write on
    /// a new connection failed; inside [`try_backend`] also a reused connection closed before
    /// any answer).
    NotSent(io::Error),
    /// The backend may have seen the request.
    Sent(io::Error),
    /// The backend answered something that is not HTTP.
    Invalid(&'static str),
    /// No response head within the response timeout: never sent again, answered 504.
    TimedOut,
}

impl TryError {
    /// What failed, for the retry policy, once [`try_backend`] gave up on the backend.
    fn failure(&self) -> Failure {
        match self {
            TryError::NotSent(_) => Failure::Connect,
            TryError::Sent(_) | TryError::Invalid(_) => Failure::Sent,
            TryError::TimedOut => Failure::TimedOut,
        }
    }
}

impl std::fmt::Display for TryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TryError::NotSent(e) => write!(f, "not sent: {e}"),
            TryError::Sent(e) => write!(f, "failed after sending: {e}"),
            TryError::Invalid(why) => write!(f, "invalid response: {}", why.trim_end()),
            TryError::TimedOut => write!(f, "no response head within the response timeout"),
        }
    }
}

/// Serves one HTTP/1.1 client connection (plain, or TLS that negotiated HTTP/1.1) until it
/// ends or needs the general path.
pub(crate) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    peer: Peer,
    shared: &Shared,
    token: &CancellationToken,
    timeouts: Timeouts,
) -> Ended<S> {
    let accepted = Instant::now();
    let mut c = ClientIo::new(stream, timeouts, token);
    let client = Client::new(peer.addr.ip(), &shared.trusted);
    let https = peer.https;
    let mut out: Vec<u8> = Vec::with_capacity(2048);
    let mut resp: Vec<u8> = Vec::with_capacity(2048);
    let mut first = true;
    loop {
        // 1. A complete request head.
        let mut began = first.then_some(accepted);
        let mut idle_until: Option<Instant> = None;
        // The first look parses straight away (the whole head is usually there). After that a
        // head can only have ended where a new line feed arrived: bytes trickling in without
        // one are not parsed again (a slow client cannot make us rescan its head per byte).
        let mut scanned = 0;
        let step = loop {
            let fresh = &c.buf[scanned.min(c.buf.len())..];
            if scanned == 0 || fresh.contains(&b'\n') || c.buf.len() > shared.max_header_bytes {
                out.clear();
                match prepare(&c.buf, shared, &client, https, &mut out) {
                    Step::Partial => {}
                    step => break step,
                }
            }
            scanned = c.buf.len();
            let (deadline, idle) = if c.buf.is_empty() && !first {
                let until = *idle_until.get_or_insert_with(|| Instant::now() + timeouts.idle);
                (until, true)
            } else {
                let since = *began.get_or_insert_with(Instant::now);
                (since + timeouts.header, c.buf.is_empty())
            };
            match c.fill(deadline, idle).await {
                Ok(0) | Err(_) => return Ended::Closed,
                Ok(_) => {}
            }
        };
        first = false;
        let fwd = match step {
            Step::Partial => continue,
            Step::Handover => {
                let (stream, buf) = c.into_parts();
                return Ended::Handover(stream, buf);
            }
            Step::Hold(hold) => {
                let started = Instant::now();
                let held = shared
                    .wake
                    .hold(&hold.app, || shared.table.load().release(&hold.app))
                    .await;
                let (status, body, extra): (_, _, &[u8]) = match held {
                    // The head is still in the buffer: read it again, routed this time (or
                    // answered at once if the app failed to start).
                    Held::Ready => continue,
                    Held::TimedOut => (
                        StatusCode::GATEWAY_TIMEOUT,
                        answers::ACTIVATION_TIMED_OUT,
                        b"",
                    ),
                    Held::QueueFull => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        answers::HOLD_QUEUE_FULL,
                        b"retry-after: 1\r\n",
                    ),
                    Held::ShuttingDown => {
                        (StatusCode::SERVICE_UNAVAILABLE, answers::SHUTTING_DOWN, b"")
                    }
                };
                hold.stats.response(status.as_u16(), started.elapsed());
                let close = hold.close || token.is_cancelled();
                resp.clear();
                head::write_own_with(status, body, close, extra, &mut resp);
                let wrote = c.send(&resp).await.is_ok();
                if close || !wrote {
                    c.linger().await;
                    return Ended::Closed;
                }
                c.buf.advance(hold.len);
                continue;
            }
            Step::Own(own) => {
                resp.clear();
                head::write_own_with(own.status, &own.body, own.close, own.extra, &mut resp);
                let wrote = c.send(&resp).await.is_ok();
                if own.close || !wrote {
                    c.linger().await;
                    return Ended::Closed;
                }
                c.buf.advance(own.len);
                continue;
            }
            Step::Forward(fwd) => fwd,
        };
        // Shutting down: this answer is the connection's last.
        let mut fwd = fwd;
        fwd.close |= token.is_cancelled();
        // 2. Forward it; the connection goes on only if the exchange ended cleanly.
        c.buf.advance(fwd.len);
        let keep = exchange(&mut c, shared, &fwd, &out, &mut resp).await;
        if !keep {
            return Ended::Closed;
        }
    }
}

/// Reads the head at the start of `buf` and decides; on [`Step::Forward`] the upstream head is
/// in `out`.
fn prepare(buf: &[u8], shared: &Shared, client: &Client, https: bool, out: &mut Vec<u8>) -> Step {
    let mut slots = head::header_slots();
    let req = match head::parse_request(
        buf,
        &mut slots,
        shared.max_headers,
        shared.max_header_bytes,
        shared.max_body,
    ) {
        Verdict::Partial => return Step::Partial,
        Verdict::Handover => return Step::Handover,
        Verdict::Refuse(r) => {
            return refuse(match r {
                Refusal::BadRequest(why) => (StatusCode::BAD_REQUEST, why),
                Refusal::TooLarge => (
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    answers::HEADERS_TOO_LARGE,
                ),
                Refusal::BodyTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, answers::BODY_TOO_LARGE),
            })
        }
        Verdict::Forward(req) => req,
    };
    let own = |status, body: Cow<'static, str>| {
        Step::Own(Own {
            status,
            body,
            close: req.close || req.framing != Framing::Empty,
            len: req.len,
            extra: b"",
        })
    };
    if let Some(reason) = shared.stale() {
        return own(StatusCode::SERVICE_UNAVAILABLE, Cow::Owned(reason));
    }
    // Behind a trusted proxy, the client its X-Forwarded-For names.
    let behind = client
        .peer_trusted
        .then(|| client.behind(req.forwarded_for(), &shared.trusted));
    let client = behind.as_ref().unwrap_or(client);
    let table = shared.table.load();
    if table.is_blacklisted(client.ip) {
        shared.stats.global.blacklisted.fetch_add(1, Relaxed);
        return own(StatusCode::FORBIDDEN, Cow::Borrowed(answers::FORBIDDEN));
    }
    let route = match table.lookup(req.host) {
        Route::App(r) => Arc::clone(r),
        Route::Unknown => {
            shared.stats.global.unknown_host.fetch_add(1, Relaxed);
            return own(StatusCode::NOT_FOUND, Cow::Borrowed(answers::UNKNOWN_HOST));
        }
    };
    if route.is_empty() {
        match &route.sleep {
            Sleep::Never => {}
            Sleep::Wakes => {
                return Step::Hold(Hold {
                    app: route.app.clone(),
                    stats: Arc::clone(&route.stats),
                    close: req.close || req.framing != Framing::Empty,
                    len: req.len,
                })
            }
            // Also where a held request comes back to when its app failed to start.
            Sleep::Failing(reason) => {
                shared.stats.global.wake_failed.fetch_add(1, Relaxed);
                route.stats.response(503, Duration::ZERO);
                return Step::Own(Own {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    body: Cow::Owned(answers::failed_to_start(&route.app, reason)),
                    close: req.close || req.framing != Framing::Empty,
                    len: req.len,
                    extra: FAILED_RETRY_AFTER,
                });
            }
        }
        shared.stats.global.no_backend.fetch_add(1, Relaxed);
        route.stats.response(503, Duration::ZERO);
        let body = answers::no_instance(&route.app);
        return own(StatusCode::SERVICE_UNAVAILABLE, Cow::Owned(body));
    }
    // The fast path forwards a request whose body it already holds whole (empty, or small and
    // read with the head, as most are): it can be replayed to the next backend and needs no
    // full-duplex streaming. A body still on its way goes to the general path, which streams it
    // both ways at once.
    let rest = &buf[req.len..];
    // (bytes of the body as framed, decoded body bytes for the traffic counters)
    let (body, decoded) = match req.framing {
        Framing::Empty | Framing::UntilClose => (0, 0),
        Framing::Length(n) if n <= rest.len() as u64 => (n as usize, n),
        Framing::Length(_) => return Step::Handover,
        Framing::Chunked => {
            let mut scan = Chunked::default();
            match scan.scan(rest) {
                Err(_) => return refuse((StatusCode::BAD_REQUEST, "malformed chunked body\n")),
                Ok(_) if scan.total() > shared.max_body => {
                    route.stats.response(413, Duration::ZERO);
                    return refuse((StatusCode::PAYLOAD_TOO_LARGE, answers::BODY_TOO_LARGE));
                }
                Ok(n) if scan.is_done() => (n, scan.data()),
                Ok(_) => return Step::Handover,
            }
        }
    };
    req.write_upstream(client.xff(), https, out);
    out.extend_from_slice(&rest[..body]);
    route.stats.bytes_in(decoded);
    Step::Forward(Forward {
        len: req.len + body,
        route,
        close: req.close,
        idempotent: req.idempotent,
        head: req.head,
    })
}

/// A refused request: answered, then the connection closes (what follows is not trusted).
fn refuse((status, body): (StatusCode, &'static str)) -> Step {
    Step::Own(Own {
        status,
        body: Cow::Borrowed(body),
        close: true,
        len: 0,
        extra: b"",
    })
}

/// One request through to its response. Returns whether the client connection can carry the
/// next request.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    c: &mut ClientIo<S>,
    shared: &Shared,
    fwd: &Forward,
    out: &[u8],
    resp: &mut Vec<u8>,
) -> bool {
    let start = Instant::now();
    let stats = &fwd.route.stats;
    let _in_flight = stats.enter();
    // 2. Tries: round-robin, the next backend after a failure when that is safe.
    let max_tries = shared.max_tries.clamp(1, MAX_TRIES);
    let mut tried = Tried::default();
    let (mut up, head, backend) = loop {
        let Some(slot) = fwd.route.pick(&mut tried, &shared.policy) else {
            shared.stats.global.no_backend.fetch_add(1, Relaxed);
            stats.response(503, start.elapsed());
            return own_answer(
                c,
                StatusCode::SERVICE_UNAVAILABLE,
                answers::NO_BACKEND,
                fwd.close,
            )
            .await;
        };
        let backend = Arc::clone(slot.backend());
        match try_backend(shared, fwd, &backend, out, resp).await {
            Ok((up, head)) => {
                backend.success();
                drop(slot);
                break (up, head, backend);
            }
            Err(err) => {
                backend.failure(&shared.policy);
                stats.upstream_error();
                // Every body the fast path forwards is whole in `out`: always replayable.
                let retry = tried.count() < max_tries
                    && err.failure().retry(fwd.idempotent, true) == Retry::NextBackend;
                tracing::warn!(app = %fwd.route.app, backend = %backend.endpoint, error = %err, retry, "upstream try failed");
                if !retry {
                    let (status, body) = match err {
                        TryError::TimedOut => {
                            (StatusCode::GATEWAY_TIMEOUT, answers::BACKEND_TIMED_OUT)
                        }
                        _ => (StatusCode::BAD_GATEWAY, answers::BACKEND_FAILED),
                    };
                    stats.response(status.as_u16(), start.elapsed());
                    return own_answer(c, status, body, fwd.close).await;
                }
            }
        }
    };

    // 3. The response: head and first body bytes in one write, then the rest as it comes.
    let upstream::Head {
        status,
        framing,
        close: up_close,
        close_client,
    } = head;
    stats.response(status, start.elapsed());
    let mut scan = Chunked::default();
    let mut body_left = match framing {
        Framing::Length(n) => n,
        _ => 0,
    };
    let mut ended = matches!(framing, Framing::Empty);
    // The body bytes the backend sent with the head.
    let mut pass = |up: &mut UpConn, resp: &mut Vec<u8>| -> Result<bool, ()> {
        // (bytes passed on as framed, decoded body bytes among them)
        let (take, decoded) = match framing {
            Framing::Empty => (0, 0),
            Framing::Length(_) => {
                let t = body_left.min(up.buf.len() as u64) as usize;
                body_left -= t as u64;
                (t, t as u64)
            }
            Framing::Chunked => {
                let before = scan.data();
                let t = scan.scan(&up.buf).map_err(|_| ())?;
                (t, scan.data() - before)
            }
            Framing::UntilClose => (up.buf.len(), up.buf.len() as u64),
        };
        resp.extend_from_slice(&up.buf[..take]);
        up.buf.advance(take);
        // Body bytes as the general path counts them: chunk framing left out.
        stats.bytes_out(decoded);
        Ok(match framing {
            Framing::Empty => true,
            Framing::Length(_) => body_left == 0,
            Framing::Chunked => scan.is_done(),
            Framing::UntilClose => false,
        })
    };
    match pass(&mut up, resp) {
        Ok(done) => ended |= done,
        Err(()) => return false,
    }
    if c.send(resp).await.is_err() {
        return false;
    }
    while !ended {
        // The body timeout: from the last bytes read. Past it the client connection closes
        // mid-body and the backend connection is dropped with `up`, never reused.
        let stall = shared.body_timeout.map(|t| Instant::now() + t);
        match up.fill(stall).await {
            // Until-close framing: the backend's close ends the body, ours the client's copy.
            // Any other: cut short, the client sees the connection close mid-body.
            Ok(0) => {
                if framing != Framing::UntilClose {
                    tracing::debug!(app = %fwd.route.app, "backend closed mid-body");
                }
                return false;
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                stats.body_timeout();
                tracing::debug!(app = %fwd.route.app, "backend stalled mid-body; cutting the response");
                return false;
            }
            Err(e) => {
                tracing::debug!(app = %fwd.route.app, error = %e, "backend read failed mid-body");
                return false;
            }
        }
        resp.clear();
        match pass(&mut up, resp) {
            Ok(done) => ended = done,
            Err(()) => return false,
        }
        if c.send(resp).await.is_err() {
            return false;
        }
    }
    // 4. The backend connection goes back only after a clean end with nothing extra read.
    if !up_close && up.buf.is_empty() {
        backend.idle.checkin(up, shared.pool.max_idle);
    }
    !close_client
}

/// Sends the request to `backend` (a pooled connection, or a fresh one if that turns out
/// closed) and reads the response head; the client's copy of it is in `resp`.
async fn try_backend(
    shared: &Shared,
    fwd: &Forward,
    backend: &Backend,
    out: &[u8],
    resp: &mut Vec<u8>,
) -> Result<(UpConn, upstream::Head), TryError> {
    let addr = backend.endpoint.addr();
    let mut pooled = backend.idle.checkout();
    loop {
        let mut up = match pooled.take() {
            Some(up) => up,
            None => upstream::connect(addr, shared.pool.connect_timeout)
                .await
                .map_err(TryError::NotSent)?,
        };
        let reused = up.reused;
        // The whole request is in `out`: replayable.
        let fresh_again = |failure: Failure| {
            reused && failure.retry(fwd.idempotent, true) == Retry::FreshConnection
        };
        if let Err(e) = up.stream.write_all(out).await {
            // A keep-alive connection the backend had closed: try a fresh one.
            if fresh_again(Failure::StaleUnsent) {
                continue;
            }
            return Err(TryError::NotSent(e));
        }
        let deadline = shared.pool.response_timeout.map(|t| Instant::now() + t);
        match read_head(&mut up, fwd.head, fwd.close, deadline, resp).await {
            Ok(head) => return Ok((up, head)),
            // A reused connection closed before any answer: most likely the backend dropped an
            // idle keep-alive connection as the request went out.
            Err(TryError::NotSent(_)) if fresh_again(Failure::StaleSent) => continue,
            // Closed without an answer, not retried here: the backend may have acted on it.
            Err(TryError::NotSent(e)) => return Err(TryError::Sent(e)),
            Err(e) => return Err(e),
        }
    }
}

/// Reads the backend's final response head (1xx interim answers other than 101 are dropped:
/// the client asked for none, as `Expect` goes to the general path), writes the head for the
/// client into `resp` and consumes it from the connection's buffer. `NotSent` means the backend
/// closed without a byte of answer.
async fn read_head(
    up: &mut UpConn,
    head_req: bool,
    force_close: bool,
    deadline: Option<Instant>,
    resp: &mut Vec<u8>,
) -> Result<upstream::Head, TryError> {
    let mut got_any = false;
    loop {
        if !up.buf.is_empty() {
            got_any = true;
            let mut slots = head::header_slots();
            let (len, head) = match head::parse_response(&up.buf, &mut slots, head_req) {
                ResponseVerdict::Partial => (0, None),
                ResponseVerdict::Invalid(why) => return Err(TryError::Invalid(why)),
                ResponseVerdict::Head(r) if r.status == 101 => {
                    return Err(TryError::Invalid("switching protocols unasked"))
                }
                ResponseVerdict::Head(r) if r.status < 200 => (r.len, None),
                ResponseVerdict::Head(r) => {
                    let close_client = force_close || r.framing == Framing::UntilClose;
                    resp.clear();
                    r.write_client(close_client, resp);
                    let head = upstream::Head {
                        status: r.status,
                        framing: r.framing,
                        close: r.close,
                        close_client,
                    };
                    (r.len, Some(head))
                }
            };
            up.buf.advance(len);
            if let Some(head) = head {
                return Ok(head);
            }
            if len > 0 {
                continue;
            }
        }
        match up.fill(deadline).await {
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(TryError::TimedOut),
            Ok(0) if got_any => {
                return Err(TryError::Sent(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "backend closed mid-head",
                )))
            }
            Ok(0) => {
                return Err(TryError::NotSent(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "backend closed before answering",
                )))
            }
            Ok(_) => {}
            Err(e) if !got_any => return Err(TryError::NotSent(e)),
            Err(e) => return Err(TryError::Sent(e)),
        }
    }
}

/// Answers a request (read whole) from the gateway; returns whether the connection goes on.
async fn own_answer<S: AsyncRead + AsyncWrite + Unpin>(
    c: &mut ClientIo<S>,
    status: StatusCode,
    body: &'static str,
    close: bool,
) -> bool {
    let mut out = Vec::with_capacity(256);
    head::write_own(status, body, close, &mut out);
    c.send(&out).await.is_ok() && !close
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_failed_to_start_retry_after_is_the_general_paths() {
        let line = format!("retry-after: {}\r\n", crate::answers::FAILED_RETRY_AFTER);
        assert_eq!(super::FAILED_RETRY_AFTER, line.as_bytes());
    }
}
