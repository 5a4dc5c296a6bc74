//! The proxy's one body type, used both ways: a client's request body streamed to a backend
//! (counted as bytes in, size-limited) and a backend's response body streamed to the client
//! (counted as bytes out, its connection handed back to the pool at the end), never buffered
//! whole; plus small bodies held in memory (replayable requests, the gateway's own answers).
//! An enum rather than a box, so no allocation per request.

use crate::deadline::LazyDeadline;
use crate::error::{BodyStalled, BodyTooLarge};
use crate::metrics::AppStats;
use crate::pool::{Pool, PoolPolicy, Sender};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// Any error a body can end with.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A body on its way through the gateway, in either direction.
#[derive(Debug)]
pub struct ProxyBody(Kind);

#[derive(Debug)]
enum Kind {
    /// A peer's body, streamed and counted.
    Stream(Stream),
    /// Bytes in memory.
    Full(Full<Bytes>),
}

/// Which way a streamed body flows, i.e. which counter its bytes go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// Client to backend: bytes in, bounded by the body limit.
    Up,
    /// Backend to client: bytes out.
    Down,
}

#[derive(Debug)]
struct Stream {
    inner: Incoming,
    way: Way,
    stats: Arc<AppStats>,
    seen: u64,
    limit: u64,
    /// For a response: the backend connection it arrives on.
    reuse: Option<Reuse>,
    /// For a response: the body timeout.
    stall: Option<Stall>,
}

/// The body timeout of one response: a backend that sends nothing for `after` fails the body,
/// which closes the client connection (HTTP/1) or resets the stream (HTTP/2), and drops the
/// backend connection unreused.
#[derive(Debug)]
struct Stall {
    after: Duration,
    deadline: tokio::time::Instant,
    /// One timer per response, re-armed only when it fires (the deadline only moves later).
    timer: LazyDeadline,
}

/// A backend connection lent to one response: back to the pool when the body ends, closed when
/// the body is dropped before its end.
#[derive(Debug)]
pub(crate) struct Reuse {
    conn: Option<(Sender, Arc<Pool>, PoolPolicy)>,
    done: bool,
}

impl Reuse {
    pub(crate) fn new(sender: Sender, pool: Arc<Pool>, policy: PoolPolicy) -> Reuse {
        Reuse {
            conn: Some((sender, pool, policy)),
            done: false,
        }
    }

    fn finish(&mut self) {
        self.done = true;
        if let Some((s, pool, policy)) = self.conn.take() {
            pool.checkin(s, &policy);
        }
    }
}

impl Drop for Reuse {
    fn drop(&mut self) {
        if self.done {
            self.finish();
        }
    }
}

impl ProxyBody {
    /// A client's request body, streamed to a backend; more than `limit` bytes fail it with
    /// [`BodyTooLarge`].
    pub(crate) fn request(inner: Incoming, stats: Arc<AppStats>, limit: u64) -> ProxyBody {
        ProxyBody(Kind::Stream(Stream {
            inner,
            way: Way::Up,
            stats,
            seen: 0,
            limit,
            reuse: None,
            stall: None,
        }))
    }

    /// A backend's response body, its connection reused after the end; `stall_after`: the
    /// body timeout.
    pub(crate) fn response(
        inner: Incoming,
        stats: Arc<AppStats>,
        mut reuse: Reuse,
        stall_after: Option<Duration>,
    ) -> ProxyBody {
        reuse.done = inner.is_end_stream();
        let stall = stall_after.filter(|_| !reuse.done).map(|after| Stall {
            after,
            deadline: tokio::time::Instant::now() + after,
            timer: LazyDeadline::new(None),
        });
        ProxyBody(Kind::Stream(Stream {
            inner,
            way: Way::Down,
            stats,
            seen: 0,
            limit: u64::MAX,
            reuse: Some(reuse),
            stall,
        }))
    }

    /// Bytes already in memory.
    pub(crate) fn bytes(b: Bytes) -> ProxyBody {
        ProxyBody(Kind::Full(Full::new(b)))
    }

    /// A short plain answer.
    pub(crate) fn text(s: &'static str) -> ProxyBody {
        ProxyBody::bytes(Bytes::from_static(s.as_bytes()))
    }

    /// An owned answer.
    pub(crate) fn owned(s: String) -> ProxyBody {
        ProxyBody::bytes(Bytes::from(s))
    }

    /// No body.
    pub(crate) fn empty() -> ProxyBody {
        ProxyBody::bytes(Bytes::new())
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let s = match &mut self.get_mut().0 {
            Kind::Full(full) => {
                return Pin::new(full)
                    .poll_frame(cx)
                    .map_err(|never| match never {})
            }
            Kind::Stream(s) => s,
        };
        let polled = match Pin::new(&mut s.inner).poll_frame(cx) {
            Poll::Ready(p) => p,
            Poll::Pending => {
                if let Some(st) = &mut s.stall {
                    if st.timer.poll_passed(cx, st.deadline).is_ready() {
                        s.stats.body_timeout();
                        tracing::debug!(after = ?st.after, "backend stalled mid-body; cutting the response");
                        return Poll::Ready(Some(Err(Box::new(BodyStalled { after: st.after }))));
                    }
                }
                return Poll::Pending;
            }
        };
        if let Some(st) = &mut s.stall {
            st.deadline = tokio::time::Instant::now() + st.after;
        }
        match polled {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    s.seen += n;
                    match s.way {
                        Way::Up => s.stats.bytes_in(n),
                        Way::Down => s.stats.bytes_out(n),
                    }
                    if s.seen > s.limit {
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge { limit: s.limit }))));
                    }
                }
                if s.inner.is_end_stream() {
                    if let Some(r) = &mut s.reuse {
                        r.finish();
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(Box::new(e)))),
            None => {
                if let Some(r) = &mut s.reuse {
                    r.finish();
                }
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Stream(s) => s.reuse.as_ref().is_some_and(|r| r.done) || s.inner.is_end_stream(),
            Kind::Full(full) => full.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Stream(s) => s.inner.size_hint(),
            Kind::Full(full) => full.size_hint(),
        }
    }
}
