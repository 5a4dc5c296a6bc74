//! Body types of the proxy: client bodies streamed to backends (counted, size-limited) and
//! backend bodies streamed to clients (counted), never buffered whole, plus the gateway's own
//! short answers. Enums rather than boxes, so no allocation per request.

use crate::error::BodyTooLarge;
use crate::metrics::AppStats;
use crate::pool::{Pool, PoolPolicy, Sender};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

/// Any error a body can end with.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body on its way to a backend.
#[derive(Debug)]
pub(crate) enum UpstreamBody {
    /// The client's body, streamed.
    Stream {
        inner: Incoming,
        seen: u64,
        limit: u64,
        stats: Arc<AppStats>,
    },
    /// A small body read up front so the request can be replayed to another backend.
    Buffered(Full<Bytes>),
}

impl UpstreamBody {
    /// An empty body.
    pub(crate) fn empty() -> UpstreamBody {
        UpstreamBody::Buffered(Full::new(Bytes::new()))
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            UpstreamBody::Stream {
                inner,
                seen,
                limit,
                stats,
            } => match ready!(Pin::new(inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        let n = data.len() as u64;
                        *seen += n;
                        stats.bytes_in(n);
                        if *seen > *limit {
                            return Poll::Ready(Some(Err(Box::new(BodyTooLarge {
                                limit: *limit,
                            }))));
                        }
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Some(Err(e)) => Poll::Ready(Some(Err(Box::new(e)))),
                None => Poll::Ready(None),
            },
            UpstreamBody::Buffered(full) => Pin::new(full)
                .poll_frame(cx)
                .map_err(|never| match never {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Stream { inner, .. } => inner.is_end_stream(),
            UpstreamBody::Buffered(full) => full.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Stream { inner, .. } => inner.size_hint(),
            UpstreamBody::Buffered(full) => full.size_hint(),
        }
    }
}

/// A response body on its way to the client.
#[derive(Debug)]
pub enum ProxyBody {
    /// A backend's body, streamed and counted.
    Upstream {
        /// The backend's body.
        inner: Incoming,
        /// Where bytes are counted.
        stats: Arc<AppStats>,
        /// The connection it arrives on, returned to its pool once the body has ended.
        reuse: Reuse,
    },
    /// The gateway's own answer.
    Full(Full<Bytes>),
}

/// A backend connection lent to one response: back to the pool when the body ends, closed when
/// the body is dropped before its end.
#[derive(Debug)]
pub struct Reuse {
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
    /// A backend's response body, its connection reused after the end.
    pub(crate) fn upstream(inner: Incoming, stats: Arc<AppStats>, reuse: Reuse) -> ProxyBody {
        let mut b = ProxyBody::Upstream {
            inner,
            stats,
            reuse,
        };
        if let ProxyBody::Upstream { inner, reuse, .. } = &mut b {
            reuse.done = inner.is_end_stream();
        }
        b
    }

    /// A short plain answer.
    pub(crate) fn text(s: &'static str) -> ProxyBody {
        ProxyBody::Full(Full::new(Bytes::from_static(s.as_bytes())))
    }

    /// An owned answer.
    pub(crate) fn owned(s: String) -> ProxyBody {
        ProxyBody::Full(Full::new(Bytes::from(s)))
    }

    /// No body.
    pub(crate) fn empty() -> ProxyBody {
        ProxyBody::Full(Full::new(Bytes::new()))
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ProxyBody::Upstream {
                inner,
                stats,
                reuse,
            } => match ready!(Pin::new(&mut *inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        stats.bytes_out(data.len() as u64);
                    }
                    if inner.is_end_stream() {
                        reuse.finish();
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Some(Err(e)) => Poll::Ready(Some(Err(Box::new(e)))),
                None => {
                    reuse.finish();
                    Poll::Ready(None)
                }
            },
            ProxyBody::Full(full) => Pin::new(full)
                .poll_frame(cx)
                .map_err(|never| match never {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream { inner, reuse, .. } => reuse.done || inner.is_end_stream(),
            ProxyBody::Full(full) => full.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream { inner, .. } => inner.size_hint(),
            ProxyBody::Full(full) => full.size_hint(),
        }
    }
}
