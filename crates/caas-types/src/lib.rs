//! The vocabulary every caas crate shares.
//!
//! Every type here is built by parsing (`FromStr`, `TryFrom<String>`, and serde through the same
//! checks), so a value that exists is valid: an [`AppId`] is always a DNS label, a [`Version`] is
//! always a Docker tag, a [`ContainerId`] is always hex. Code further in (Docker, ZooKeeper, SQL)
//! can therefore splice them into names, paths and queries without re-checking.
//!
//! The domain types the platform reasons with live at the root too: a deployment's policies
//! ([`PlacementPolicy`], [`HealthPolicy`]) and the states of hosts and instances ([`HostState`],
//! [`InstanceState`]). [`api`] holds only the admin API's wire shapes, with the conversions to and
//! from the domain types; the scheduler converts at its API edge.

mod error;
mod ids;
mod net;
mod policy;
mod resources;
mod state;
mod time;

pub mod api;
pub mod zk;

pub use error::{Error, Result};
pub use ids::{
    AppId, ContainerId, ContainerUser, Domain, GatewayName, HostName, InstanceId, TenantName,
    Version, MAX_CONTAINER_USER,
};
pub use net::{Endpoint, PortRange};
pub use policy::{AutoscalePolicy, HealthPath, HealthPolicy, OnFailure, PlacementPolicy, Rank};
pub use resources::{Cpus, Memory, Resources};
pub use state::{HostState, InstanceState};
pub use time::Timestamp;

/// Label keys the platform puts on every container it starts. The reconciler finds "our"
/// containers by these, so they are part of the contract between deployer and scheduler.
pub mod labels {
    /// Marks a container as managed by caas; its value is the platform's namespace
    /// (`caas` by default, a per-test namespace in tests).
    pub const MANAGED: &str = "caas.managed";
    /// The app id.
    pub const APP: &str = "caas.app";
    /// The deployment version.
    pub const VERSION: &str = "caas.version";
    /// The instance id (also the container name's suffix).
    pub const INSTANCE: &str = "caas.instance";
    /// The host name the scheduler placed the instance (or job) on.
    pub const HOST: &str = "caas.host";
    /// The job id (`j-{n}`) of a job's or workflow step's container. Such containers never
    /// carry [`INSTANCE`], so the reconciler leaves them to the jobs' own sweep.
    pub const JOB: &str = "caas.job";
}
