//! The only code in caas that talks to ZooKeeper: the brief's layout, instance registration,
//! the watched route cache, the `_ping` health checker and leader election.
//!
//! - [`Registry`]: the writer side (scheduler): register/deregister instances, domains, the
//!   blacklist, wake nodes ([`WakeNode`]); every node carries the digest ACL of an
//!   [`AclPolicy`].
//! - [`RouteCache`]: the reader side (gateway): the whole routing tree in memory, kept current
//!   by one recursive watch, read lock-free as [`RouteSnapshot`]s.
//! - [`HealthChecker`]: polls instances and (de)registers them on threshold crossings.
//! - [`LeaderElection`]: exactly one scheduler runs the health checker at a time.
//!
//! Architecture invariants:
//! - Only this crate talks to ZooKeeper; paths come only from `caas_types::zk`, built from
//!   validated ids.
//! - Address nodes are persistent: a scheduler's session ending never unregisters healthy
//!   instances; stale nodes are removed by the health checker and the reconciler.
//! - Every node the platform writes carries the digest ACL (platform ALL, gateways READ), never
//!   world access.
//! - The route cache never replays: after any reconnection or expiry it re-arms its watch on a
//!   fresh session and re-reads the whole tree, serving the last snapshot meanwhile.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use caas_registry::{AclPolicy, Registry, RouteCache, ZkAuth, ZkConfig};
//! let platform: ZkAuth = "caas:secret".parse()?;
//! let reader: ZkAuth = "gateway:secret2".parse()?;
//! let cfg = ZkConfig::new("127.0.0.1:2181").with_auth(platform.clone());
//! // Scheduler side: nodes writable by the platform, readable by gateways, nobody else.
//! let registry = Registry::connect(&cfg, AclPolicy::new(platform, Some(reader.clone()))).await?;
//! registry.ensure_layout().await?;
//! registry
//!     .register(&"shop".parse()?, &"v1".parse()?, &"0123456789ab".parse()?, "127.0.0.2:25700".parse()?)
//!     .await?;
//! // Gateway side: read-only credential, lock-free snapshots.
//! let cache = RouteCache::start(&ZkConfig::new("127.0.0.1:2181").with_auth(reader)).await?;
//! let snapshot = cache.snapshot();
//! let _backends = snapshot.endpoints(&"shop".parse()?);
//! # Ok(()) }
//! ```

mod cache;
mod config;
mod election;
mod error;
mod health;
mod registry;
mod snapshot;
mod tree;

pub use cache::RouteCache;
pub use config::{AclPolicy, ZkAuth, ZkConfig};
pub use election::{LeaderElection, LeaderFence};
pub use error::{Error, Result};
pub use health::{check_once, HealthChecker, HealthEvent, HealthEventKind, HealthTarget};
pub use registry::Registry;
pub use snapshot::{IpRule, RouteEntry, RouteSnapshot, WakeState};
pub use tree::WakeNode;
