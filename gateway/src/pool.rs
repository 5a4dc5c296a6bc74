//! Upstream keep-alive connections: one small stack of idle HTTP/1.1 senders per backend. A
//! request pops a sender (or connects), sends on it from its own task and pushes it back once the
//! response body has ended. This replaces hyper-util's pooled client, whose per-request costs
//! (a pool shared by all backends behind one mutex, a spawned task per request to wait for the
//! connection to become idle again, URI and Host rewriting) made the gateway spend more CPU per
//! request than nginx.

use crate::body::ProxyBody;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// A connection to one backend, ready for its next request.
pub(crate) type Sender = SendRequest<ProxyBody>;

/// How the pools behave; one per gateway.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolPolicy {
    /// Idle connections kept per backend.
    pub(crate) max_idle: usize,
    /// An idle connection older than this is closed.
    pub(crate) idle_timeout: Duration,
    /// Connect timeout.
    pub(crate) connect_timeout: Duration,
    /// Longest wait for a response head after sending; `None`: no limit.
    pub(crate) response_timeout: Option<Duration>,
}

/// The idle connections of one backend. The mutex is per backend, held for one push or pop, and
/// uncontended unless several worker threads hit the same backend at the same instant.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    idle: Mutex<Vec<(Sender, Instant)>>,
}

/// Why no connection could be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("connect timed out")]
    Timeout,
    #[error("handshake: {0}")]
    Handshake(#[from] hyper::Error),
}

impl Pool {
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<(Sender, Instant)>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently used idle connection that is still open and ready.
    pub(crate) fn checkout(&self) -> Option<Sender> {
        let mut idle = self.idle();
        while let Some((s, _)) = idle.pop() {
            if s.is_ready() {
                return Some(s);
            }
        }
        None
    }

    /// Gives back a connection whose last response has ended. A sender not ready yet (its
    /// connection task has not seen the end of the exchange) is waited for off the request path.
    pub(crate) fn checkin(self: &Arc<Self>, mut s: Sender, policy: &PoolPolicy) {
        if s.is_closed() {
            return;
        }
        if s.is_ready() {
            self.push(s, policy);
            return;
        }
        let pool = Arc::clone(self);
        let policy = *policy;
        tokio::spawn(async move {
            if s.ready().await.is_ok() {
                pool.push(s, &policy);
            }
        });
    }

    fn push(&self, s: Sender, policy: &PoolPolicy) {
        let mut idle = self.idle();
        if idle.len() < policy.max_idle {
            idle.push((s, Instant::now()));
        }
    }

    /// Closes idle connections unused for longer than the policy allows, and dead ones.
    pub(crate) fn sweep(&self, policy: &PoolPolicy, now: Instant) {
        let mut idle = self.idle();
        if !idle.is_empty() {
            idle.retain(|(s, since)| {
                !s.is_closed() && now.saturating_duration_since(*since) < policy.idle_timeout
            });
        }
    }
}

/// Opens a new connection to `addr`; its connection task runs until the sender is dropped or the
/// backend closes it.
pub(crate) async fn connect(addr: SocketAddr, policy: &PoolPolicy) -> Result<Sender, ConnectError> {
    let tcp = tokio::time::timeout(policy.connect_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| ConnectError::Timeout)??;
    let _ = tcp.set_nodelay(true);
    // One flat write per request, as on the client-facing side (see `server_builder`).
    let (sender, conn) = http1::Builder::new()
        .writev(false)
        .handshake(TokioIo::new(tcp))
        .await?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(backend = %addr, error = %e, "upstream connection ended");
        }
    });
    Ok(sender)
}
