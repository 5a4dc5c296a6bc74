//! The gateway's error type: what failed, where (downstream client, upstream backend, or the
//! gateway itself), and whether the request may be sent again.

use std::net::SocketAddr;

/// Errors of the gateway library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be loaded.
    #[error("tls configuration: {0}")]
    Tls(String),
    /// The gateway domain is not a valid DNS name.
    #[error("invalid gateway domain {0:?}")]
    Domain(String),
}

/// Result with the gateway's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why one try at a backend failed: the proxy decides from this whether to try the next one.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    /// No connection could be made: nothing was sent, so any request may go elsewhere.
    #[error("connect to {backend} failed: {source}")]
    Connect {
        backend: SocketAddr,
        source: crate::pool::ConnectError,
    },
    /// No response head within the response timeout: never sent again (the backend may be
    /// working on it), answered 504.
    #[error("{backend} sent no response head within {after:?}")]
    Timeout {
        backend: SocketAddr,
        after: std::time::Duration,
    },
    /// The connection broke after the request (or part of it) was sent: only idempotent
    /// requests may be sent again.
    #[error("request to {backend} failed: {source}")]
    Send {
        backend: SocketAddr,
        source: hyper::Error,
    },
}

impl UpstreamError {
    /// Whether a request with `idempotent` semantics may be sent to another backend.
    pub(crate) fn retry_safe(&self, idempotent: bool) -> bool {
        match self {
            UpstreamError::Connect { .. } => true,
            UpstreamError::Timeout { .. } => false,
            UpstreamError::Send { .. } => idempotent,
        }
    }
}

/// The request body grew past the configured limit while streaming.
#[derive(Debug, thiserror::Error)]
#[error("request body larger than {limit} bytes")]
pub(crate) struct BodyTooLarge {
    pub(crate) limit: u64,
}
