//! What the engine tells us back: a started container, a container's status, a list entry, an
//! event, a pull's progress. Plain data built from the engine's answers.

use bollard::models::{
    ContainerInspectResponse, ContainerStateStatusEnum, ContainerSummary as DockerSummary,
    CreateImageInfo, EventMessage, PortMap,
};
use caas_types::{ContainerId, Endpoint};
use std::collections::HashMap;

/// A container that `run` created (or adopted) and started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningContainer {
    /// The engine's full container id.
    pub id: ContainerId,
    /// The container name.
    pub name: String,
    /// Where the app answers: the bound host address and port (`None` for a worker).
    pub endpoint: Option<Endpoint>,
    /// True when the container already existed (a retried create) and was adopted.
    pub adopted: bool,
}

/// A container's lifecycle state, as the engine reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    /// Created, never started.
    Created,
    /// Running.
    Running,
    /// Paused.
    Paused,
    /// Being restarted by its restart policy.
    Restarting,
    /// Being removed.
    Removing,
    /// Exited (see the exit code and the OOM flag).
    Exited,
    /// Dead (the engine failed to stop or remove it).
    Dead,
    /// A state this client does not know.
    Unknown,
}

impl ContainerState {
    fn from_docker(s: Option<ContainerStateStatusEnum>) -> ContainerState {
        match s {
            Some(ContainerStateStatusEnum::CREATED) => ContainerState::Created,
            Some(ContainerStateStatusEnum::RUNNING) => ContainerState::Running,
            Some(ContainerStateStatusEnum::PAUSED) => ContainerState::Paused,
            Some(ContainerStateStatusEnum::RESTARTING) => ContainerState::Restarting,
            Some(ContainerStateStatusEnum::REMOVING) => ContainerState::Removing,
            Some(ContainerStateStatusEnum::EXITED) => ContainerState::Exited,
            Some(ContainerStateStatusEnum::DEAD) => ContainerState::Dead,
            _ => ContainerState::Unknown,
        }
    }

    fn from_str(s: &str) -> ContainerState {
        match s {
            "created" => ContainerState::Created,
            "running" => ContainerState::Running,
            "paused" => ContainerState::Paused,
            "restarting" => ContainerState::Restarting,
            "removing" => ContainerState::Removing,
            "exited" => ContainerState::Exited,
            "dead" => ContainerState::Dead,
            _ => ContainerState::Unknown,
        }
    }
}

/// The limits the engine actually applied (read back from the container's host config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AppliedLimits {
    /// `HostConfig.Memory`, bytes.
    pub memory: Option<i64>,
    /// `HostConfig.MemorySwap`, bytes (equal to memory: no swap).
    pub memory_swap: Option<i64>,
    /// `HostConfig.NanoCpus`.
    pub nano_cpus: Option<i64>,
    /// `HostConfig.CpuShares`.
    pub cpu_shares: Option<i64>,
    /// `HostConfig.PidsLimit`.
    pub pids_limit: Option<i64>,
}

/// One container's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerStatus {
    /// Full container id.
    pub id: ContainerId,
    /// Name without the leading `/`.
    pub name: String,
    /// The image reference it was created from.
    pub image: String,
    /// Lifecycle state.
    pub state: ContainerState,
    /// Exit code of the last run (meaningful once exited).
    pub exit_code: Option<i64>,
    /// True when the kernel killed it for exceeding its memory limit.
    pub oom_killed: bool,
    /// The engine's error text for the last start, if any.
    pub error: Option<String>,
    /// How many times the restart policy restarted it.
    pub restart_count: i64,
    /// Its labels.
    pub labels: HashMap<String, String>,
    /// The bound host endpoint of its (first) published port, while it is running.
    pub endpoint: Option<Endpoint>,
    /// The limits the engine applied.
    pub limits: AppliedLimits,
}

impl ContainerStatus {
    pub(crate) fn from_inspect(r: ContainerInspectResponse) -> Option<ContainerStatus> {
        let id: ContainerId = r.id?.parse().ok()?;
        let state = r.state.unwrap_or_default();
        let config = r.config.unwrap_or_default();
        let host = r.host_config.unwrap_or_default();
        // Live bindings first (they exist while running), the requested ones otherwise.
        let endpoint = r
            .network_settings
            .and_then(|n| n.ports)
            .and_then(|p| first_endpoint(&p))
            .or_else(|| host.port_bindings.as_ref().and_then(first_endpoint));
        Some(ContainerStatus {
            id,
            name: r
                .name
                .map(|n| n.trim_start_matches('/').to_owned())
                .unwrap_or_default(),
            image: config.image.unwrap_or_default(),
            state: ContainerState::from_docker(state.status),
            exit_code: state.exit_code,
            oom_killed: state.oom_killed.unwrap_or(false),
            error: state.error.filter(|e| !e.is_empty()),
            restart_count: r.restart_count.unwrap_or(0),
            labels: config.labels.unwrap_or_default(),
            endpoint,
            limits: AppliedLimits {
                memory: host.memory,
                memory_swap: host.memory_swap,
                nano_cpus: host.nano_cpus,
                cpu_shares: host.cpu_shares,
                pids_limit: host.pids_limit,
            },
        })
    }
}

/// The first host binding with a usable address and port.
fn first_endpoint(ports: &PortMap) -> Option<Endpoint> {
    ports.values().flatten().flatten().find_map(|b| {
        let ip = b.host_ip.as_deref()?.parse().ok()?;
        let port = b.host_port.as_deref()?.parse().ok()?;
        Endpoint::new(ip, port).ok()
    })
}

/// One entry of [`crate::Deployer::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSummary {
    /// Full container id.
    pub id: ContainerId,
    /// Name without the leading `/`.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Lifecycle state.
    pub state: ContainerState,
    /// The engine's human status (`Up 3 seconds`, `Exited (137) 2 seconds ago`).
    pub status: String,
    /// Labels.
    pub labels: HashMap<String, String>,
}

impl ContainerSummary {
    pub(crate) fn from_docker(s: DockerSummary) -> Option<ContainerSummary> {
        Some(ContainerSummary {
            id: s.id?.parse().ok()?,
            name: s
                .names
                .and_then(|n| n.into_iter().next())
                .map(|n| n.trim_start_matches('/').to_owned())
                .unwrap_or_default(),
            image: s.image.unwrap_or_default(),
            state: ContainerState::from_str(s.state.as_deref().unwrap_or("")),
            status: s.status.unwrap_or_default(),
            labels: s.labels.unwrap_or_default(),
        })
    }
}

/// What happened to a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// Created.
    Create,
    /// Started.
    Start,
    /// Its process exited (any reason), with the exit code when the engine gave one.
    Die {
        /// Exit code.
        exit_code: Option<i64>,
    },
    /// The kernel's OOM killer hit it.
    Oom,
    /// Killed by a signal through the API.
    Kill,
    /// Stopped through the API.
    Stop,
    /// Restarted.
    Restart,
    /// Removed.
    Destroy,
    /// Any other action (`pause`, `rename`, ...).
    Other(String),
}

/// An engine event about one of our containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    /// The container.
    pub id: ContainerId,
    /// What happened.
    pub kind: EventKind,
    /// The container's name and labels as the event carries them.
    pub attributes: HashMap<String, String>,
    /// Unix time in nanoseconds.
    pub time_nanos: i64,
}

impl ContainerEvent {
    pub(crate) fn from_docker(e: EventMessage) -> Option<ContainerEvent> {
        let actor = e.actor?;
        let id: ContainerId = actor.id?.parse().ok()?;
        let attributes = actor.attributes.unwrap_or_default();
        let action = e.action.unwrap_or_default();
        // Some actions carry a suffix (`exec_start: sh`, `health_status: healthy`).
        let kind = match action.split(':').next().unwrap_or("") {
            "create" => EventKind::Create,
            "start" => EventKind::Start,
            "die" => EventKind::Die {
                exit_code: attributes.get("exitCode").and_then(|c| c.parse().ok()),
            },
            "oom" => EventKind::Oom,
            "kill" => EventKind::Kill,
            "stop" => EventKind::Stop,
            "restart" => EventKind::Restart,
            "destroy" => EventKind::Destroy,
            _ => EventKind::Other(action.clone()),
        };
        Some(ContainerEvent {
            id,
            kind,
            attributes,
            time_nanos: e.time_nano.unwrap_or(0),
        })
    }
}

/// One step of a pull, for logging or rendering a progress bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullProgress {
    /// The layer id (short digest), or `None` for whole-image messages.
    pub layer: Option<String>,
    /// The engine's status text (`Pulling fs layer`, `Downloading`, `Pull complete`, ...).
    pub status: String,
    /// Bytes done so far in this phase of this layer.
    pub current: Option<u64>,
    /// Total bytes of this phase of this layer.
    pub total: Option<u64>,
}

impl PullProgress {
    pub(crate) fn from_docker(info: CreateImageInfo) -> PullProgress {
        let detail = info.progress_detail.unwrap_or_default();
        PullProgress {
            layer: info.id.filter(|s| !s.is_empty()),
            status: info.status.unwrap_or_default(),
            current: detail.current.and_then(|c| u64::try_from(c).ok()),
            total: detail.total.and_then(|t| u64::try_from(t).ok()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{EventActor, ProgressDetail};

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn event(action: &str, attrs: &[(&str, &str)]) -> EventMessage {
        EventMessage {
            action: Some(action.into()),
            actor: Some(EventActor {
                id: Some(ID.into()),
                attributes: Some(
                    attrs
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
            }),
            time_nano: Some(7),
            ..Default::default()
        }
    }

    #[test]
    fn events_keep_what_the_scheduler_needs() {
        let die = ContainerEvent::from_docker(event("die", &[("exitCode", "137")])).expect("valid");
        assert_eq!(
            die.kind,
            EventKind::Die {
                exit_code: Some(137)
            }
        );
        assert_eq!(die.id.as_str(), ID);
        assert_eq!(die.time_nanos, 7);
        let oom = ContainerEvent::from_docker(event("oom", &[])).expect("valid");
        assert_eq!(oom.kind, EventKind::Oom);
        let health =
            ContainerEvent::from_docker(event("health_status: healthy", &[])).expect("valid");
        assert_eq!(
            health.kind,
            EventKind::Other("health_status: healthy".into())
        );
        let mut no_id = event("start", &[]);
        no_id.actor = None;
        assert!(ContainerEvent::from_docker(no_id).is_none());
    }

    #[test]
    fn pull_progress_carries_layer_and_bytes() {
        let p = PullProgress::from_docker(CreateImageInfo {
            id: Some("a1b2c3".into()),
            status: Some("Downloading".into()),
            progress_detail: Some(ProgressDetail {
                current: Some(512),
                total: Some(1024),
            }),
            ..Default::default()
        });
        assert_eq!(p.layer.as_deref(), Some("a1b2c3"));
        assert_eq!((p.current, p.total), (Some(512), Some(1024)));
        let whole = PullProgress::from_docker(CreateImageInfo {
            status: Some("Status: Downloaded newer image".into()),
            ..Default::default()
        });
        assert_eq!(whole.layer, None);
    }
}
