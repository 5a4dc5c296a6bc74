//! Row fixtures for the scheduler's unit tests: one way to build a container id, an instance
//! row, a deployment row and a stored log line, shared by the pure planners' tests (`healing::plan`, `reconcile::plan`), which
//! adjust the fields they care about with struct update syntax.

use super::{DeploymentRow, DeploymentState, InstanceRow, LogRow, NewDeployment};
use caas_types::api::{LogLine, LogStream};
use caas_types::{
    ContainerId, Cpus, HealthPolicy, InstanceState, Memory, PlacementPolicy, Resources, Timestamp,
};

/// A running deployment `id` of `app` at `version`: `instances` of 64 MiB and 100 mCPU on port
/// 8080, image `r:5000/{app}:{version}`, default placement and health, nothing optional set,
/// last changed at time 0.
pub(crate) fn deployment(id: i64, app: &str, version: &str, instances: u32) -> DeploymentRow {
    DeploymentRow {
        id,
        spec: NewDeployment {
            app: app.parse().expect("valid app"),
            version: version.parse().expect("valid version"),
            image: format!("r:5000/{app}:{version}"),
            resources: Resources {
                memory: Memory::from_mib(64).expect("valid memory"),
                cpus: Cpus::from_millis(100).expect("valid cpus"),
            },
            port: Some(8080),
            command: None,
            env: Default::default(),
            placement: PlacementPolicy::default(),
            health: HealthPolicy::default(),
            instances,
            stop_timeout_s: None,
            recycle_after_s: None,
            autoscale: None,
            user: None,
            read_only: false,
        },
        state: DeploymentState::Running,
        updated_ms: 0,
        desired: None,
    }
}

/// The container id numbered `n` (64 hex digits).
pub(crate) fn cid(n: u8) -> ContainerId {
    format!("{n:064x}").parse().expect("valid container id")
}

/// The instance `id` (`{app}-{suffix}`, the app taken from before the first `-`) of deployment
/// 1 at version `v1`, on host `h{host_id}` at 10.0.0.1:20000 with 64 MiB and 100 mCPU, in
/// container `container`; healthy when running, last changed at time 0.
pub(crate) fn instance(
    id: &str,
    host_id: i64,
    state: InstanceState,
    container: Option<u8>,
) -> InstanceRow {
    let app = id.split('-').next().expect("app prefix");
    InstanceRow {
        id: id.parse().expect("valid instance id"),
        deployment_id: 1,
        app: app.parse().expect("valid app id"),
        version: "v1".parse().expect("valid version"),
        host_id,
        host: format!("h{host_id}").parse().expect("valid host name"),
        host_address: [10, 0, 0, 1].into(),
        host_port: Some(20_000),
        memory: 64 << 20,
        cpu: 100,
        container_id: container.map(cid),
        state,
        healthy: state == InstanceState::Running,
        updated_ms: 0,
        started_ms: 0,
        stop_timeout_s: None,
    }
}

/// Line `index` of chunk `chunk`: `instance` at version `v1` wrote `text` on stdout at `ts`
/// nanoseconds (the log planners' and store's tests).
pub(crate) fn log_row(chunk: i64, index: u32, instance: &str, ts: i64, text: &str) -> LogRow {
    LogRow {
        chunk,
        index,
        line: LogLine {
            ts: Timestamp::from_nanos(ts),
            instance: instance.parse().expect("valid instance id"),
            version: "v1".parse().expect("valid version"),
            stream: LogStream::Stdout,
            line: text.into(),
        },
    }
}
