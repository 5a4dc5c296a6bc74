//! The scheduler library's error type: one enum for the store, placement, the engines,
//! ZooKeeper and configuration. Messages are lower-case, carry no SQL text and never end with a period;
//! the admin API maps each variant to a status and a stable code.

/// What went wrong in the scheduler.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database failed or is unreachable. The text names what was being done, never the
    /// driver's message (that is logged where it happens).
    #[error("database error: {0}")]
    Database(String),
    /// Applying the embedded migrations failed.
    #[error("database migration failed: {0}")]
    Migration(String),
    /// A unique key or a reference refused the write: the thing exists already, or is still in
    /// use (admin API: 409).
    #[error("{0}")]
    Conflict(String),
    /// The tenant's quota does not allow it; nothing was taken (admin API: 403
    /// `quota_exceeded`).
    #[error("quota exceeded: {0}")]
    QuotaExceeded(String),
    /// The caller may not do this to this thing, such as a custom domain outside its tenant's
    /// suffixes (admin API: 403).
    #[error("{0}")]
    NotAllowed(String),
    /// The named thing does not exist (admin API: 404).
    #[error("{0} not found")]
    NotFound(String),
    /// No set of hosts can take the request (admin API: 422). Nothing was claimed.
    #[error("cannot place: {0}")]
    Unplaceable(String),
    /// Other schedulers kept winning the same hosts until the retry bound ran out. Nothing was
    /// claimed; trying again later is safe (admin API: 503).
    #[error("placement gave up after {attempts} attempts under contention")]
    Contention {
        /// How many claim attempts were made.
        attempts: u32,
    },
    /// A value read from or destined to the database is out of range or malformed.
    #[error("invalid {0}")]
    Invalid(String),
    /// The image of a deployment is not in the registry (admin API: 422).
    #[error("{0}")]
    ImageNotFound(String),
    /// The image registry could not be asked what a tag or digest points to: unreachable,
    /// credentials refused, or an answer without a digest (admin API: 502).
    #[error("{0}")]
    Registry(String),
    /// A host's Docker engine (or the registry it pulls from) failed (admin API: 502).
    #[error("host {host}: {source}")]
    Engine {
        /// The host, or the endpoint URL of one not added yet.
        host: String,
        /// What the engine said, classified by `caas-deployer`.
        #[source]
        source: caas_deployer::Error,
    },
    /// An operation stopped part-way and left the rest to the reconciler (admin API: 502).
    #[error("{0}")]
    Incomplete(String),
    /// ZooKeeper failed or is unreachable (admin API: 503).
    #[error("zookeeper: {0}")]
    Zookeeper(#[from] caas_registry::Error),
    /// An instance did not become healthy in time (admin API: 502).
    #[error("{0}")]
    Timeout(String),
    /// Secrets cannot be set or opened because this scheduler has no secrets key (admin API:
    /// 422 `secrets_disabled`).
    #[error("{0}")]
    SecretsOff(String),
    /// A stored secret does not open (sealed with another key, or altered), or sealing failed.
    /// The text names no value (admin API: 503).
    #[error("secrets: {0}")]
    Secrets(#[source] crate::app_config::crypto::CryptoError),
    /// The scheduler's configuration is unusable (a flag or variable is missing or malformed).
    #[error("configuration: {0}")]
    Config(String),
    /// This process may not repair: ZooKeeper says another scheduler leads, or cannot say
    /// (admin API: 503).
    #[error("{0}")]
    NotLeader(String),
    /// The admin API's listener failed while serving.
    #[error("admin API server: {0}")]
    Serve(#[source] std::io::Error),
}

impl Error {
    /// An engine failure on `host`, keeping "image not found" distinct (admin API: 422, not 502).
    pub fn engine(host: impl std::fmt::Display, e: caas_deployer::Error) -> Error {
        match e {
            caas_deployer::Error::ImageNotFound { image, .. } => {
                Error::ImageNotFound(format!("image {image} not found in the registry"))
            }
            source => Error::Engine {
                host: host.to_string(),
                source,
            },
        }
    }

    /// Whether retrying the same operation later may succeed (database down, contention).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Database(_) | Error::Contention { .. })
    }
}

/// Result with the scheduler's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
