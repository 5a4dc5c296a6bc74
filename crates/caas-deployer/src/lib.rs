//! The only code in caas that talks to a Docker Engine: pull, run with port mapping and limits,
//! stop, remove, inspect, list by label, tenant networks, follow a container's logs, the engine's event stream,
//! and run-to-completion containers with their standard streams attached ([`Task`]).
//!
//! A [`Deployer`] is one host's engine, reached through a [`DockerEndpoint`] (local socket,
//! plain TCP, or TCP with mutual TLS). [`RunSpec`] says what to run; every failure is one
//! [`Error`] variant that says what happened, so the scheduler can map it to a status.
//!
//! ```no_run
//! # async fn deploy() -> caas_deployer::Result<()> {
//! use caas_deployer::{Deployer, DockerEndpoint, RunSpec};
//! use std::time::Duration;
//! # let (app, version, instance, resources): (caas_types::AppId, caas_types::Version,
//! #     caas_types::InstanceId, caas_types::Resources) = todo!();
//! let engine = Deployer::connect(&"unix:///var/run/docker.sock".parse()?)?;
//! let image = app.image("127.0.0.1:5000", &version);
//! engine.pull_to_end(&image, None).await?;
//! let host = "127.0.0.2:25700".parse().expect("valid endpoint");
//! let spec = RunSpec::for_instance("caas", &app, &version, &instance, image, 8080, host, resources);
//! let running = engine.run(&spec).await?; // running.endpoint is what goes to ZooKeeper
//! engine.stop(&running.id, Duration::from_secs(10)).await?;
//! engine.remove(&running.id).await?;
//! # Ok(())
//! # }
//! ```

mod deployer;
mod endpoint;
mod error;
mod logs;
mod network;
mod observed;
mod spec;
mod task;

pub use deployer::{Deployer, DEFAULT_TIMEOUT};
pub use endpoint::{DockerEndpoint, TlsFiles};
pub use error::{Error, Result};
pub use logs::{LogLine, MAX_LINE_BYTES};
pub use network::{NetworkAddresses, TenantNetwork, BRIDGE_PREFIX, TENANT_LABEL};
pub use observed::{
    AppliedLimits, ContainerEvent, ContainerState, ContainerStatus, ContainerSummary, EventKind,
    PullProgress, RunningContainer,
};
pub use spec::{
    container_name, LogRotation, PortMapping, RegistryCredentials, RestartPolicy, RunSpec,
    DEFAULT_NOFILE, DEFAULT_PIDS_LIMIT, READ_ONLY_TMPFS,
};
pub use task::{pipe, Task, TaskEnd, TaskExit, TaskOutput, TaskSpec, TaskStdin, MAX_CHUNK};
