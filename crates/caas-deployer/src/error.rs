//! The deployer's error type.

/// What went wrong talking to a Docker Engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The engine could not be reached.
    #[error("docker engine unreachable: {0}")]
    Unreachable(String),
}

/// Result with the deployer's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
