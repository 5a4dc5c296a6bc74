//! What to run: [`RunSpec`] and its translation into the engine's create request, with the
//! platform's hardened defaults. Pure data, so the translation is unit-tested without an engine.

use crate::network::TenantNetwork;
use bollard::container::Config;
use bollard::models::{
    HostConfig, HostConfigLogConfig, PortBinding, ResourcesUlimits, RestartPolicy as DockerRestart,
    RestartPolicyNameEnum,
};
use caas_types::{labels, AppId, Endpoint, InstanceId, Resources, Version};
use std::collections::{BTreeMap, HashMap};

/// The default pids limit: plenty for a web app, small enough that a fork bomb stays contained.
pub const DEFAULT_PIDS_LIMIT: i64 = 256;

/// The default `nofile` limit (soft and hard) of a container: enough open files and sockets
/// for a busy server, bounded so one app cannot take the host's file table. It must not exceed
/// the engine's own hard limit (a container cannot be given more than its engine has; the start
/// then fails with "error setting rlimits"), which is 20,000 on some machines, hence not 65,536.
pub const DEFAULT_NOFILE: u64 = 16_384;

/// The tmpfs a read-only container gets at `/tmp`, so apps can still write temporary files
/// (counted in the container's memory).
pub const READ_ONLY_TMPFS: (&str, &str) = ("/tmp", "rw,nosuid,nodev,size=64m");

/// What the engine does when the container's process exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    /// Never restart: the scheduler's health checker decides (the default).
    #[default]
    No,
    /// Restart after a non-zero exit, at most this many times.
    OnFailure(u32),
    /// Restart unless stopped through the API.
    UnlessStopped,
    /// Always restart.
    Always,
}

/// The engine's log rotation for a container: the `json-file` driver with at most `max_files`
/// files of `max_size_mb` MiB each, so one noisy app cannot fill the host's disk.
///
/// The default, 20 MiB × 5, keeps about 100 MiB per container: at 20,000 lines/s of ~100
/// bytes across 3 instances (about 1.2 MB/s per container once the driver's JSON is added),
/// that is over a minute of output, so a follower that falls seconds behind loses nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRotation {
    /// Size of one log file before the engine rotates it, MiB (at least 1).
    pub max_size_mb: u32,
    /// Number of files kept, the current one included (at least 1).
    pub max_files: u32,
}

impl Default for LogRotation {
    fn default() -> LogRotation {
        LogRotation {
            max_size_mb: 20,
            max_files: 5,
        }
    }
}

impl LogRotation {
    /// The engine's `LogConfig`: `json-file` (the driver whose logs can be read back and
    /// followed) with `max-size` and `max-file`.
    pub(crate) fn to_docker(self) -> HostConfigLogConfig {
        HostConfigLogConfig {
            typ: Some("json-file".to_owned()),
            config: Some(HashMap::from([
                (
                    "max-size".to_owned(),
                    format!("{}m", self.max_size_mb.max(1)),
                ),
                ("max-file".to_owned(), self.max_files.max(1).to_string()),
            ])),
        }
    }
}

/// Credentials for a private registry, passed to the engine with a pull.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryCredentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
    /// The registry's `host:port`.
    pub server: String,
}

impl RegistryCredentials {
    /// The credentials for `server` in `CAAS_REGISTRY_USER` / `CAAS_REGISTRY_PASSWORD` (what
    /// `scripts/up` writes to `.caas/env`), if both are set: for tools and tests outside the
    /// scheduler, which takes them as flags.
    pub fn from_env(server: &str) -> Option<RegistryCredentials> {
        Some(RegistryCredentials {
            username: std::env::var("CAAS_REGISTRY_USER").ok()?,
            password: std::env::var("CAAS_REGISTRY_PASSWORD").ok()?,
            server: server.to_owned(),
        })
    }
}

impl std::fmt::Debug for RegistryCredentials {
    // Never print the password, even in debug logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCredentials")
            .field("username", &self.username)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// A container port published on a host address and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortMapping {
    /// The port the app listens on inside the container (also passed as `$PORT`).
    pub container_port: u16,
    /// The host address and port it is bound to (the host's address, loopback aliases in
    /// tests; the port claimed by the scheduler from the host's range).
    pub host: Endpoint,
}

/// One container to create and start. Its `Debug` shows the names of `env`, never the values
/// (they may be an app's decrypted secrets).
#[derive(Clone, PartialEq)]
pub struct RunSpec {
    /// Container name, `caas-{instanceId}`: deterministic so a retried create finds the first.
    pub name: String,
    /// `{registry}/{appId}:{version}`.
    pub image: String,
    /// Overrides the image's `CMD` when not empty (the image's `ENTRYPOINT` stays).
    pub command: Vec<String>,
    /// The published port; `None` for a worker, which listens on nothing and gets no `$PORT`.
    pub port: Option<PortMapping>,
    /// Memory (and memory+swap) and CPU limits.
    pub resources: Resources,
    /// Environment of the app.
    pub env: BTreeMap<String, String>,
    /// Labels besides `caas.managed` (which [`RunSpec::namespace`] sets): app, version, instance...
    pub labels: BTreeMap<String, String>,
    /// Value of the `caas.managed` label: the platform's namespace (`caas`), or a test's own.
    pub namespace: String,
    /// Restart policy.
    pub restart: RestartPolicy,
    /// Maximum number of processes in the container.
    pub pids_limit: i64,
    /// Capabilities to keep after dropping all (none needed for a non-root app on a high port).
    pub cap_add: Vec<String>,
    /// Mount the root filesystem read-only, with a writable tmpfs at `/tmp`
    /// ([`READ_ONLY_TMPFS`]).
    pub read_only_rootfs: bool,
    /// The user to run as (Docker's `User`: `uid`, `uid:gid` or names; validated by
    /// `caas_types::ContainerUser`); `None`: the image's.
    pub user: Option<String>,
    /// The `nofile` limit, soft and hard.
    pub nofile: u64,
    /// Run an init process as PID 1 so SIGTERM reaches the app and zombies are reaped.
    pub init: bool,
    /// The container's own stop timeout, seconds (`StopTimeout`: how long the engine waits
    /// after SIGTERM before SIGKILL when no timeout is given); `None`: the engine's default.
    pub stop_timeout: Option<u32>,
    /// The engine's log rotation for this container.
    pub log_rotation: LogRotation,
    /// The tenant network the container joins (made on demand by [`crate::Deployer::run`]);
    /// `None`: the engine's default bridge.
    pub network: Option<TenantNetwork>,
}

impl std::fmt::Debug for RunSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunSpec")
            .field("name", &self.name)
            .field("image", &self.image)
            .field("command", &self.command)
            .field("port", &self.port)
            .field("resources", &self.resources)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("labels", &self.labels)
            .field("namespace", &self.namespace)
            .field("restart", &self.restart)
            .field("pids_limit", &self.pids_limit)
            .field("cap_add", &self.cap_add)
            .field("read_only_rootfs", &self.read_only_rootfs)
            .field("user", &self.user)
            .field("nofile", &self.nofile)
            .field("init", &self.init)
            .field("stop_timeout", &self.stop_timeout)
            .field("network", &self.network.as_ref().map(TenantNetwork::name))
            .finish()
    }
}

impl RunSpec {
    /// The spec of one instance with the platform's defaults: name `caas-{instance}`, labels
    /// `caas.app`, `caas.version`, `caas.instance`, `$PORT` set to the container port, no
    /// restart by the engine, [`DEFAULT_PIDS_LIMIT`], all capabilities dropped (plus
    /// `NET_BIND_SERVICE` only for a port below 1024), an init process.
    #[allow(clippy::too_many_arguments)]
    pub fn for_instance(
        namespace: &str,
        app: &AppId,
        version: &Version,
        instance: &InstanceId,
        image: String,
        container_port: u16,
        host: Endpoint,
        resources: Resources,
    ) -> RunSpec {
        let mut spec = RunSpec::for_worker(namespace, app, version, instance, image, resources);
        spec.port = Some(PortMapping {
            container_port,
            host,
        });
        if container_port < 1024 {
            spec.cap_add = vec!["NET_BIND_SERVICE".to_owned()];
        }
        spec
    }

    /// The spec of one worker instance: like [`RunSpec::for_instance`] without a port (no
    /// binding, no `$PORT`, no capability at all).
    pub fn for_worker(
        namespace: &str,
        app: &AppId,
        version: &Version,
        instance: &InstanceId,
        image: String,
        resources: Resources,
    ) -> RunSpec {
        let labels = BTreeMap::from([
            (labels::APP.to_owned(), app.to_string()),
            (labels::VERSION.to_owned(), version.to_string()),
            (labels::INSTANCE.to_owned(), instance.to_string()),
        ]);
        RunSpec {
            name: container_name(instance),
            image,
            command: Vec::new(),
            port: None,
            resources,
            env: BTreeMap::new(),
            labels,
            namespace: namespace.to_owned(),
            restart: RestartPolicy::No,
            pids_limit: DEFAULT_PIDS_LIMIT,
            cap_add: Vec::new(),
            read_only_rootfs: false,
            user: None,
            nofile: DEFAULT_NOFILE,
            init: true,
            stop_timeout: None,
            log_rotation: LogRotation::default(),
            network: None,
        }
    }

    /// Every label the container carries, `caas.managed` included.
    pub fn all_labels(&self) -> HashMap<String, String> {
        let mut all: HashMap<String, String> = self.labels.clone().into_iter().collect();
        all.insert(labels::MANAGED.to_owned(), self.namespace.clone());
        all
    }

    /// The engine's create request.
    pub(crate) fn to_config(&self) -> Config<String> {
        let mut env: Vec<String> = Vec::with_capacity(self.env.len() + 1);
        if let Some(p) = self.port.filter(|_| !self.env.contains_key("PORT")) {
            env.push(format!("PORT={}", p.container_port));
        }
        env.extend(self.env.iter().map(|(k, v)| format!("{k}={v}")));
        // The `{port}/tcp` key Docker uses for the container port.
        let port_key = self.port.map(|p| format!("{}/tcp", p.container_port));
        let bindings = self.port.zip(port_key.clone()).map(|(p, key)| {
            HashMap::from([(
                key,
                Some(vec![PortBinding {
                    host_ip: Some(p.host.ip().to_string()),
                    host_port: Some(p.host.port().to_string()),
                }]),
            )])
        });
        let host_config = HostConfig {
            port_bindings: bindings,
            cap_add: (!self.cap_add.is_empty()).then(|| self.cap_add.clone()),
            readonly_rootfs: Some(self.read_only_rootfs),
            tmpfs: self.read_only_rootfs.then(|| {
                HashMap::from([(READ_ONLY_TMPFS.0.to_owned(), READ_ONLY_TMPFS.1.to_owned())])
            }),
            init: Some(self.init),
            restart_policy: Some(docker_restart(self.restart)),
            log_config: Some(self.log_rotation.to_docker()),
            ulimits: Some(vec![nofile(self.nofile)]),
            ..hardened(&self.resources, self.pids_limit, self.network.as_ref())
        };
        Config {
            image: Some(self.image.clone()),
            user: self.user.clone(),
            cmd: (!self.command.is_empty()).then(|| self.command.clone()),
            env: Some(env),
            labels: Some(self.all_labels()),
            exposed_ports: port_key.map(|key| HashMap::from([(key, HashMap::new())])),
            host_config: Some(host_config),
            stop_timeout: self.stop_timeout.map(i64::from),
            ..Default::default()
        }
    }
}

/// The `nofile` ulimit, soft and hard at `limit`.
pub(crate) fn nofile(limit: u64) -> ResourcesUlimits {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    ResourcesUlimits {
        name: Some("nofile".to_owned()),
        soft: Some(limit),
        hard: Some(limit),
    }
}

/// The host config every caas container starts from: its memory (no swap on top) and CPU
/// limits, a pids limit, the [`DEFAULT_NOFILE`] ulimit, unprivileged, on its tenant's network
/// (else the default bridge), no new privileges, every capability dropped.
pub(crate) fn hardened(
    resources: &Resources,
    pids_limit: i64,
    network: Option<&TenantNetwork>,
) -> HostConfig {
    let memory = resources.memory.docker_bytes();
    HostConfig {
        memory: Some(memory),
        // Equal to memory: no swap on top, so the limit is the real one.
        memory_swap: Some(memory),
        nano_cpus: Some(resources.cpus.docker_nano_cpus()),
        cpu_shares: Some(resources.cpus.docker_cpu_shares()),
        pids_limit: Some(pids_limit),
        privileged: Some(false),
        network_mode: Some(network.map_or("bridge", TenantNetwork::name).to_owned()),
        security_opt: Some(vec!["no-new-privileges".to_owned()]),
        cap_drop: Some(vec!["ALL".to_owned()]),
        ulimits: Some(vec![nofile(DEFAULT_NOFILE)]),
        ..Default::default()
    }
}

/// The container name of an instance.
pub fn container_name(instance: &InstanceId) -> String {
    format!("caas-{instance}")
}

pub(crate) fn docker_restart(policy: RestartPolicy) -> DockerRestart {
    let (name, retries) = match policy {
        RestartPolicy::No => (RestartPolicyNameEnum::NO, None),
        RestartPolicy::OnFailure(n) => (RestartPolicyNameEnum::ON_FAILURE, Some(i64::from(n))),
        RestartPolicy::UnlessStopped => (RestartPolicyNameEnum::UNLESS_STOPPED, None),
        RestartPolicy::Always => (RestartPolicyNameEnum::ALWAYS, None),
    };
    DockerRestart {
        name: Some(name),
        maximum_retry_count: retries,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use caas_types::{Cpus, Memory};

    fn spec() -> RunSpec {
        let app: AppId = "shop".parse().expect("valid");
        let version: Version = "v1".parse().expect("valid");
        let instance: InstanceId = "shop-abc123".parse().expect("valid");
        RunSpec::for_instance(
            "caas",
            &app,
            &version,
            &instance,
            app.image("127.0.0.1:5000", &version),
            8080,
            "127.0.0.2:25700".parse().expect("valid"),
            Resources {
                memory: Memory::from_mib(64).expect("valid"),
                cpus: Cpus::from_millis(500).expect("valid"),
            },
        )
    }

    #[test]
    fn debug_shows_env_names_but_no_values() {
        let mut spec = spec();
        spec.env
            .insert("DB_PASSWORD".to_owned(), "plain-secret-value".to_owned());
        let shown = format!("{spec:?}");
        assert!(shown.contains("DB_PASSWORD"), "{shown}");
        assert!(!shown.contains("plain-secret-value"), "{shown}");
    }

    #[test]
    fn hardened_defaults_and_limits() {
        let spec = spec();
        assert_eq!(spec.name, "caas-shop-abc123");
        let config = spec.to_config();
        let host = config.host_config.expect("host config");
        assert_eq!(host.memory, Some(64 << 20));
        assert_eq!(host.memory_swap, Some(64 << 20));
        assert_eq!(host.nano_cpus, Some(500_000_000));
        assert_eq!(host.cpu_shares, Some(512));
        assert_eq!(host.pids_limit, Some(DEFAULT_PIDS_LIMIT));
        assert_eq!(host.privileged, Some(false));
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(host.cap_add, None);
        assert_eq!(
            host.security_opt,
            Some(vec!["no-new-privileges".to_owned()])
        );
        assert_eq!(host.init, Some(true));
        let binding = host
            .port_bindings
            .and_then(|mut b| b.remove("8080/tcp"))
            .flatten()
            .expect("binding");
        assert_eq!(binding[0].host_ip.as_deref(), Some("127.0.0.2"));
        assert_eq!(binding[0].host_port.as_deref(), Some("25700"));
        let labels = config.labels.expect("labels");
        assert_eq!(labels.get("caas.managed").map(String::as_str), Some("caas"));
        assert_eq!(labels.get("caas.app").map(String::as_str), Some("shop"));
        assert_eq!(
            labels.get("caas.instance").map(String::as_str),
            Some("shop-abc123")
        );
        assert_eq!(config.env, Some(vec!["PORT=8080".to_owned()]));
        let logs = host.log_config.expect("log config");
        assert_eq!(logs.typ.as_deref(), Some("json-file"));
        let opts = logs.config.expect("log options");
        assert_eq!(opts.get("max-size").map(String::as_str), Some("20m"));
        assert_eq!(opts.get("max-file").map(String::as_str), Some("5"));
        assert_eq!(host.ulimits, Some(vec![nofile(DEFAULT_NOFILE)]));
        assert_eq!(host.readonly_rootfs, Some(false));
        assert_eq!(host.tmpfs, None);
        assert_eq!(config.user, None);
    }

    #[test]
    fn read_only_user_and_nofile_reach_the_create_request() {
        let mut spec = spec();
        spec.read_only_rootfs = true;
        spec.user = Some("65534:65534".to_owned());
        spec.nofile = 1024;
        let config = spec.to_config();
        assert_eq!(config.user.as_deref(), Some("65534:65534"));
        let host = config.host_config.expect("host config");
        assert_eq!(host.readonly_rootfs, Some(true));
        assert_eq!(
            host.tmpfs.and_then(|t| t.get("/tmp").cloned()).as_deref(),
            Some(READ_ONLY_TMPFS.1)
        );
        let limit = host
            .ulimits
            .and_then(|u| u.into_iter().next())
            .expect("ulimit");
        assert_eq!(
            (limit.name.as_deref(), limit.soft, limit.hard),
            (Some("nofile"), Some(1024), Some(1024))
        );
    }

    #[test]
    fn low_port_keeps_only_bind_capability() {
        let s = spec();
        let s = RunSpec::for_instance(
            &s.namespace,
            &"shop".parse().expect("valid"),
            &"v1".parse().expect("valid"),
            &"shop-abc123".parse().expect("valid"),
            s.image.clone(),
            80,
            "127.0.0.2:25700".parse().expect("valid"),
            s.resources,
        );
        assert_eq!(s.cap_add, vec!["NET_BIND_SERVICE".to_owned()]);
    }

    #[test]
    fn a_worker_publishes_nothing_and_runs_its_command() {
        let s = spec();
        let mut w = RunSpec::for_worker(
            &s.namespace,
            &"shop".parse().expect("valid"),
            &"v1".parse().expect("valid"),
            &"shop-abc123".parse().expect("valid"),
            s.image.clone(),
            s.resources,
        );
        w.command = vec!["sh".into(), "-c".into(), "exec worker".into()];
        let config = w.to_config();
        assert_eq!(config.exposed_ports, None);
        assert_eq!(config.env, Some(Vec::new()), "no $PORT");
        assert_eq!(
            config.cmd,
            Some(vec![
                "sh".to_owned(),
                "-c".to_owned(),
                "exec worker".to_owned()
            ])
        );
        let host = config.host_config.expect("host config");
        assert_eq!(host.port_bindings, None);
        assert_eq!(host.cap_add, None);
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(
            config.labels.and_then(|l| l.get("caas.instance").cloned()),
            Some("shop-abc123".to_owned())
        );
        // An instance keeps the image's command unless given one.
        assert_eq!(s.to_config().cmd, None);
    }

    #[test]
    fn credentials_never_print_the_password() {
        let c = RegistryCredentials {
            username: "u".into(),
            password: "hunter2".into(),
            server: "r:5000".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
