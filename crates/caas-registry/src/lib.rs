//! The only code in caas that talks to ZooKeeper: the brief's layout, instance registration,
//! the watched route cache, the `_ping` health checker and leader election.
//!
//! - [`Registry`]: the writer side (scheduler): register/deregister instances, domains, the
//!   blacklist; every node carries the digest ACL of an [`AclPolicy`].
//! - [`RouteCache`]: the reader side (gateway): the whole routing tree in memory, kept current
//!   by one recursive watch, read lock-free as [`RouteSnapshot`]s.
//! - [`HealthChecker`]: polls instances and (de)registers them on threshold crossings.
//! - [`LeaderElection`]: exactly one scheduler runs the health checker at a time.

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
pub use election::LeaderElection;
pub use error::{Error, Result};
pub use health::{HealthChecker, HealthEvent, HealthEventKind, HealthTarget};
pub use registry::Registry;
pub use snapshot::{IpRule, RouteEntry, RouteSnapshot};
