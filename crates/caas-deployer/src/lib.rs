//! The only code in caas that talks to a Docker Engine: pull, run with port mapping and limits,
//! stop, remove, inspect, list by label, and the engine's event stream.
//!
//! A [`Deployer`] is one host's engine, reached through a [`DockerEndpoint`] (local socket,
//! plain TCP, or TCP with mutual TLS). [`RunSpec`] says what to run; every failure is one
//! [`Error`] variant that says what happened, so the scheduler can map it to a status.

mod deployer;
mod endpoint;
mod error;
mod spec;
mod status;

pub use deployer::{Deployer, DEFAULT_TIMEOUT};
pub use endpoint::{DockerEndpoint, TlsFiles};
pub use error::{Error, Result};
pub use spec::{container_name, RegistryCredentials, RestartPolicy, RunSpec, DEFAULT_PIDS_LIMIT};
pub use status::{
    AppliedLimits, ContainerEvent, ContainerState, ContainerStatus, ContainerSummary, EventKind,
    PullProgress, RunningContainer,
};
