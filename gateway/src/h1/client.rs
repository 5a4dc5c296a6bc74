//! The client side of a fast-path connection: the socket, its read buffer, and the header, idle
//! and write timeouts kept on one timer per connection that is re-armed only when it fires (at
//! most every quarter of the header timeout), never on the request path. A slow client is cut
//! off between 1× and 1.25× its deadline.

use crate::deadline::LazyDeadline;
use bytes::BytesMut;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Timeouts of a client connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// A request head must be complete within this (the first one: from accept).
    pub(crate) header: Duration,
    /// No request and no traffic for this long closes the connection.
    pub(crate) idle: Duration,
}

/// Read buffer space kept free before each read.
const READ_SPACE: usize = 16 * 1024;

/// A client connection on the fast path: a TCP socket, or a TLS stream that negotiated
/// HTTP/1.1.
pub(crate) struct ClientIo<S> {
    pub(crate) stream: S,
    /// The connection's timeouts.
    pub(crate) timeouts: Timeouts,
    /// Bytes read and not yet used: the rest of a head, body bytes, pipelined requests.
    pub(crate) buf: BytesMut,
    timer: LazyDeadline,
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl<S> std::fmt::Debug for ClientIo<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIo")
            .field("buffered", &self.buf.len())
            .finish_non_exhaustive()
    }
}

/// The error a read ends with when the gateway shuts down while the connection is idle.
fn shutting_down() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "gateway shutting down")
}

impl<S: AsyncRead + AsyncWrite + Unpin> ClientIo<S> {
    /// Wraps an accepted connection; the header timeout sets how often the timer checks.
    pub(crate) fn new(stream: S, timeouts: Timeouts, token: &CancellationToken) -> ClientIo<S> {
        ClientIo {
            stream,
            timeouts,
            buf: BytesMut::with_capacity(READ_SPACE),
            // A new head's deadline can be earlier than the idle one the timer was set for.
            timer: LazyDeadline::new(Some(timeouts.header / 4)),
            shutdown: Box::pin(token.clone().cancelled_owned()),
        }
    }

    /// The socket and what was read but not used, for the general path to go on with.
    pub(crate) fn into_parts(self) -> (S, BytesMut) {
        (self.stream, self.buf)
    }

    /// Reads more into the buffer; `Ok(0)` is the client's end of stream. Fails with `TimedOut`
    /// past `deadline`, and, with `idle`, when the gateway shuts down.
    pub(crate) async fn fill(&mut self, deadline: Instant, idle: bool) -> io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < READ_SPACE / 4 {
            self.buf.reserve(READ_SPACE);
        }
        poll_fn(|cx| {
            if let Poll::Ready(r) =
                tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.buf)
            {
                return Poll::Ready(r);
            }
            if idle && self.shutdown.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(shutting_down()));
            }
            self.poll_deadline(cx, deadline).map(Err)
        })
        .await
    }

    /// Writes all of `data`; fails once the client has read nothing for the idle timeout.
    pub(crate) async fn send(&mut self, data: &[u8]) -> io::Result<()> {
        let deadline = Instant::now() + self.timeouts.idle;
        self.write_all(data, deadline).await
    }

    /// Closes after a final answer the way nginx's lingering close does: our side is shut
    /// first (FIN), then what the client still sends is read and dropped for a moment, so that
    /// closing with unread bytes does not reset the connection and destroy the answer before the
    /// client has read it.
    pub(crate) async fn linger(&mut self) {
        const LINGER: Duration = Duration::from_millis(500);
        const MAX_DRAIN: usize = 256 * 1024;
        if self.stream.shutdown().await.is_err() {
            return;
        }
        let deadline = Instant::now() + LINGER;
        let mut drained = 0;
        while drained < MAX_DRAIN {
            self.buf.clear();
            match self.fill(deadline, false).await {
                Ok(0) | Err(_) => return,
                Ok(n) => drained += n,
            }
        }
    }

    /// Writes all of `data`, failing with `TimedOut` if the client stops reading past
    /// `deadline`.
    async fn write_all(&mut self, data: &[u8], deadline: Instant) -> io::Result<()> {
        let mut off = 0;
        poll_fn(|cx| {
            while off < data.len() {
                match Pin::new(&mut self.stream).poll_write(cx, &data[off..]) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    Poll::Ready(Ok(n)) => off += n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return self.poll_deadline(cx, deadline).map(Err),
                }
            }
            Poll::Ready(Ok(()))
        })
        .await
    }

    fn poll_deadline(&mut self, cx: &mut Context<'_>, deadline: Instant) -> Poll<io::Error> {
        self.timer
            .poll_passed(cx, deadline)
            .map(|()| io::Error::new(io::ErrorKind::TimedOut, "client timed out"))
    }
}
