//! The gateway's error type: what failed and where (downstream client, upstream backend, or the
//! gateway itself); for a failed try at a backend, the [`Failure`] from which [`crate::retry`]
//! decides whether the request may be sent again.

use crate::retry::Failure;
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
    /// The read-only ZooKeeper credential is not `user:password`. The message names the
    /// variable the operator sets; the cause says what is wrong with it.
    #[error("CAAS_ZK_READ_AUTH")]
    ReadAuth(#[source] caas_registry::Error),
}

/// Result with the gateway's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why one try at a backend failed: the proxy decides from this whether to try the next one.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    /// No connection could be made: nothing was sent.
    #[error("connect to {backend} failed: {source}")]
    Connect {
        backend: SocketAddr,
        source: crate::pool::ConnectError,
    },
    /// No response head within the response timeout: answered 504.
    #[error("{backend} sent no response head within {after:?}")]
    Timeout {
        backend: SocketAddr,
        after: std::time::Duration,
    },
    /// The connection broke after the request (or part of it) was sent.
    #[error("request to {backend} failed: {source}")]
    Send {
        backend: SocketAddr,
        source: hyper::Error,
    },
}

impl UpstreamError {
    /// What failed, for the retry policy ([`crate::retry`]).
    pub(crate) fn failure(&self) -> Failure {
        match self {
            UpstreamError::Connect { .. } => Failure::Connect,
            UpstreamError::Timeout { .. } => Failure::TimedOut,
            UpstreamError::Send { .. } => Failure::Sent,
        }
    }
}

/// The request body grew past the configured limit while streaming.
#[derive(Debug, thiserror::Error)]
#[error("request body larger than {limit} bytes")]
pub(crate) struct BodyTooLarge {
    pub(crate) limit: u64,
}

/// A backend sent no response body bytes for longer than the body timeout.
#[derive(Debug, thiserror::Error)]
#[error("the backend sent no body bytes for {after:?}")]
pub(crate) struct BodyStalled {
    pub(crate) after: std::time::Duration,
}
