//! What both caas daemons (`caas-scheduler` and `caas-gateway`) share around their own work: the
//! ZooKeeper flags ([`ZkArgs`]), the logging set-up ([`init_logging`]) and the shutdown signal
//! ([`shutdown_signal`]). Nothing here knows what either daemon does; each `main.rs` parses its
//! own flags (with [`ZkArgs`] flattened in), calls these, and hands over to its library.

mod logging;
mod shutdown;
mod zk;

pub use logging::{env_filter, init_logging, LogFormat};
pub use shutdown::shutdown_signal;
pub use zk::{ZkArgs, DEFAULT_SESSION_TIMEOUT_MS};
