//! The registry's error type: one enum for everything this crate can fail at.

/// What went wrong talking to ZooKeeper or to an instance.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// ZooKeeper could not be reached or the session could not be established.
    #[error("zookeeper unreachable at {connect}: {source}")]
    Unreachable {
        /// The connect string that was tried.
        connect: String,
        /// What the client reported.
        source: zookeeper_client::Error,
    },
    /// A ZooKeeper operation on one path failed.
    #[error("zookeeper {op} {path}: {source}")]
    Zk {
        /// The operation (create, delete, get, ...).
        op: &'static str,
        /// The path, relative to the chroot.
        path: String,
        /// What the server or client reported.
        source: zookeeper_client::Error,
    },
    /// The session's credentials may not do this (digest ACL refused it).
    #[error("zookeeper refused {op} {path}: not authorized")]
    NotAuthorized {
        /// The operation.
        op: &'static str,
        /// The path, relative to the chroot.
        path: String,
    },
    /// A node holds data that does not follow the layout.
    #[error("malformed data at {path}: {reason}")]
    Malformed {
        /// The node.
        path: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The configuration is unusable (bad chroot, bad credential string, ...).
    #[error("invalid registry configuration: {0}")]
    Config(String),
    /// The background task that owned this handle has stopped.
    #[error("registry task stopped")]
    Stopped,
}

impl Error {
    /// Wraps a ZooKeeper error with the operation and path it came from.
    pub(crate) fn zk(op: &'static str, path: &str, source: zookeeper_client::Error) -> Error {
        match source {
            zookeeper_client::Error::NoAuth => Error::NotAuthorized {
                op,
                path: path.to_owned(),
            },
            source => Error::Zk {
                op,
                path: path.to_owned(),
                source,
            },
        }
    }

    /// Whether retrying on a fresh session may succeed (connection loss, expiry).
    pub fn is_transient(&self) -> bool {
        use zookeeper_client::Error as Z;
        match self {
            Error::Unreachable { .. } => true,
            Error::Zk { source, .. } => matches!(
                source,
                Z::ConnectionLoss
                    | Z::SessionExpired
                    | Z::ClientClosed
                    | Z::Timeout
                    | Z::NoHosts
                    | Z::Throttled
                    | Z::SessionMoved
            ),
            _ => false,
        }
    }
}

/// Result with the registry's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
