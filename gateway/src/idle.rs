//! Client connection timeouts, kept in one IO wrapper with one timer per connection instead of a
//! timer per request: the **header timeout** bounds how long a request head may take once it has
//! begun (and how long a new connection may wait before its first request), the **idle timeout**
//! bounds how long a connection may sit with no request in flight and no traffic — a keep-alive
//! client idle between requests is governed by the idle timeout alone, as an operator expects
//! (nginx's `client_header_timeout` and `keepalive_timeout` work the same way).
//!
//! The timer is never re-armed on the request path: it fires at most every quarter of the
//! header timeout while a connection is open, and each firing checks the deadlines. A slow
//! client is therefore cut off between 1× and 1.25× the header timeout.

use bytes::{Buf, BytesMut};
use hyper::rt::{Read, ReadBufCursor, Write};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// What the service tells the connection's IO about requests: how many are in flight, how many
/// have started in all, and whether the connection has stopped carrying HTTP/1 request heads
/// (it speaks HTTP/2, or switched protocols, e.g. to WebSocket): then only the idle timeout
/// applies.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    inflight: AtomicUsize,
    started: AtomicU64,
    no_heads: AtomicBool,
}

/// Marks one request in flight until dropped.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Activity>);

impl Activity {
    /// Marks a request in flight: its head is complete.
    pub(crate) fn enter(self: &Arc<Self>, http2: bool) -> InFlight {
        self.inflight.fetch_add(1, Relaxed);
        self.started.fetch_add(1, Relaxed);
        if http2 {
            self.no_heads.store(true, Relaxed);
        }
        InFlight(Arc::clone(self))
    }

    /// The connection switched protocols: what it reads from now on are no request heads.
    pub(crate) fn switched(&self) {
        self.no_heads.store(true, Relaxed);
    }
}

impl InFlight {
    /// The request switched the connection's protocol.
    pub(crate) fn switched(&self) {
        self.0.switched();
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Relaxed);
    }
}

/// An IO whose reads fail with `TimedOut` when a request head takes too long or the connection
/// stays idle too long.
#[derive(Debug)]
pub(crate) struct IdleIo<T> {
    inner: T,
    activity: Arc<Activity>,
    idle: Duration,
    header: Duration,
    /// How far ahead the timer is ever set.
    check_every: Duration,
    last: Instant,
    /// A request head under way: when its first byte came and the `started` count then.
    head: Option<(Instant, u64)>,
    sleep: Pin<Box<Sleep>>,
    /// Bytes already read from the connection by the fast path, read again before `inner`.
    prefix: BytesMut,
}

impl<T> IdleIo<T> {
    /// Wraps a freshly accepted connection: its first request head must begin and end within
    /// `header`.
    pub(crate) fn new(
        inner: T,
        idle: Duration,
        header: Duration,
        activity: Arc<Activity>,
    ) -> IdleIo<T> {
        let now = Instant::now();
        let check_every = (header / 4).min(idle).max(Duration::from_millis(1));
        IdleIo {
            inner,
            activity,
            idle,
            header,
            check_every,
            last: now,
            head: Some((now, 0)),
            sleep: Box::pin(tokio::time::sleep_until(now + check_every)),
            prefix: BytesMut::new(),
        }
    }

    /// Puts back bytes already read from the connection (the fast path's, at a request
    /// boundary): they are read before anything new.
    pub(crate) fn with_prefix(mut self, prefix: BytesMut) -> IdleIo<T> {
        self.prefix = prefix;
        self
    }

    /// Notes bytes read: with no request in flight they begin a request head.
    fn on_read(&mut self) {
        let now = Instant::now();
        self.last = now;
        if self.head.is_none()
            && self.activity.inflight.load(Relaxed) == 0
            && !self.activity.no_heads.load(Relaxed)
        {
            self.head = Some((now, self.activity.started.load(Relaxed)));
        }
    }

    /// Ready with an error once a deadline has passed; otherwise keeps the timer armed.
    fn poll_timeouts(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            if self.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let now = Instant::now();
            if let Some((_, seen)) = self.head {
                if self.activity.started.load(Relaxed) != seen
                    || self.activity.no_heads.load(Relaxed)
                {
                    self.head = None;
                }
            }
            let mut next = now + self.check_every;
            if self.activity.inflight.load(Relaxed) == 0 {
                if let Some((began, _)) = self.head {
                    let deadline = began + self.header;
                    if deadline <= now {
                        return Poll::Ready(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "request head timed out",
                        ));
                    }
                    next = next.min(deadline);
                }
                let deadline = self.last + self.idle;
                if deadline <= now {
                    return Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, "connection idle"));
                }
                next = next.min(deadline);
            }
            self.sleep.as_mut().reset(next);
        }
    }
}

impl<T: Read + Unpin> Read for IdleIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            this.on_read();
            return Poll::Ready(Ok(()));
        }
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.on_read();
                Poll::Ready(r)
            }
            Poll::Pending => match this.poll_timeouts(cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<T: Write + Unpin> Write for IdleIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if r.is_ready() {
            this.last = Instant::now();
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if r.is_ready() {
            this.last = Instant::now();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
