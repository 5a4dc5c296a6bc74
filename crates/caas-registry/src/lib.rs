//! The only code in caas that talks to ZooKeeper: the brief's layout, instance registration,
//! the watched route cache, the `_ping` health checker and leader election.

mod error;
mod snapshot;

pub use error::{Error, Result};
pub use snapshot::{IpRule, RouteEntry, RouteSnapshot};
