//! The registry's error type.

/// What went wrong talking to ZooKeeper.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// ZooKeeper could not be reached.
    #[error("zookeeper unreachable: {0}")]
    Unreachable(String),
}

/// Result with the registry's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
