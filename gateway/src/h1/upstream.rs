//! Backend connections of the fast path: plain TCP sockets with their read buffer, kept per
//! backend in a small stack of idle ones. No connection task: the request that holds a
//! connection reads and writes it itself, and an idle one sits unpolled; whether the backend
//! closed it meanwhile is read off the reactor's readiness when it is taken out (no syscall
//! unless the socket became readable).

use super::head::Framing;
use crate::deadline::LazyDeadline;
use bytes::BytesMut;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Read buffer space kept free before each read from a backend.
const READ_SPACE: usize = 16 * 1024;

/// One connection to a backend.
#[derive(Debug)]
pub(crate) struct UpConn {
    pub(crate) stream: TcpStream,
    /// The response timeout's timer, one per connection. Its deadlines only move later (each
    /// is "now + the same timeout"), so it is set to them exactly.
    timer: LazyDeadline,
    /// Bytes read and not yet passed on.
    pub(crate) buf: BytesMut,
    /// Taken from the idle stack (so it may have been closed by the backend meanwhile).
    pub(crate) reused: bool,
}

/// What the proxy keeps of a response head once it is written out for the client.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Head {
    pub(crate) status: u16,
    pub(crate) framing: Framing,
    /// The backend closes the connection after this response.
    pub(crate) close: bool,
    /// The client connection closes after this response.
    pub(crate) close_client: bool,
}

impl UpConn {
    /// Reads more from the backend into the buffer; `Ok(0)` is its end of stream. With a
    /// deadline, fails with `TimedOut` once it has passed.
    pub(crate) async fn fill(
        &mut self,
        deadline: Option<tokio::time::Instant>,
    ) -> io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < READ_SPACE / 4 {
            self.buf.reserve(READ_SPACE);
        }
        std::future::poll_fn(|cx| {
            if let Poll::Ready(r) =
                tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.buf)
            {
                return Poll::Ready(r);
            }
            match deadline {
                Some(d) => self.timer.poll_passed(cx, d).map(|()| {
                    Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the backend sent nothing in time",
                    ))
                }),
                None => Poll::Pending,
            }
        })
        .await
    }

    /// Whether the connection still looks open and has nothing unread: the backend has not
    /// closed it or sent anything unasked.
    fn is_idle_and_open(&self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }
}

/// Opens a connection to `addr` within `timeout`.
pub(crate) async fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<UpConn> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(UpConn {
        stream,
        timer: LazyDeadline::new(None),
        buf: BytesMut::with_capacity(READ_SPACE),
        reused: false,
    })
}

/// The idle fast-path connections of one backend. The mutex is held for one push or pop.
#[derive(Debug, Default)]
pub(crate) struct IdleConns {
    idle: Mutex<Vec<(UpConn, Instant)>>,
}

impl IdleConns {
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<(UpConn, Instant)>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently used idle connection that is still open.
    pub(crate) fn checkout(&self) -> Option<UpConn> {
        let mut idle = self.idle();
        while let Some((mut c, _)) = idle.pop() {
            if c.is_idle_and_open() {
                c.reused = true;
                return Some(c);
            }
        }
        None
    }

    /// Keeps a connection whose exchange ended cleanly, unless `max_idle` are kept already.
    pub(crate) fn checkin(&self, c: UpConn, max_idle: usize) {
        let mut idle = self.idle();
        if idle.len() < max_idle {
            idle.push((c, Instant::now()));
        }
    }

    /// Closes connections idle longer than `idle_timeout`, and those the backend closed.
    pub(crate) fn sweep(&self, idle_timeout: Duration, now: Instant) {
        let mut idle = self.idle();
        idle.retain(|(c, since)| {
            now.saturating_duration_since(*since) < idle_timeout && c.is_idle_and_open()
        });
    }
}
