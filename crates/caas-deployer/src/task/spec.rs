//! What to run to completion: [`TaskSpec`] and its translation into the engine's create
//! request. Pure data, unit-tested without an engine.

use crate::network::TenantNetwork;
use crate::spec::{
    docker_restart, hardened, nofile, LogRotation, RestartPolicy, DEFAULT_NOFILE,
    DEFAULT_PIDS_LIMIT,
};
use bollard::container::Config;
use bollard::models::{HostConfig, HostConfigLogConfig};
use caas_types::{labels, AppId, Resources};
use std::collections::{BTreeMap, HashMap};

/// One container that runs a command to completion: no port, no restart, its standard streams
/// attached. Its `Debug` shows the names of `env`, never the values (they may be secrets).
#[derive(Clone, PartialEq)]
pub struct TaskSpec {
    /// Container name (unique on the engine; e.g. `caas-job-{id}`).
    pub name: String,
    /// The image reference, present on the engine already (pull it first).
    pub image: String,
    /// Overrides the image's `CMD` when not empty (the image's `ENTRYPOINT` stays).
    pub command: Vec<String>,
    /// Environment.
    pub env: BTreeMap<String, String>,
    /// Labels besides `caas.managed` (which [`TaskSpec::namespace`] sets). [`TaskSpec::new`]
    /// sets `caas.app`. Never `caas.instance`: the reconciler would take the container for an
    /// instance without a row, an orphan, and remove it.
    pub labels: BTreeMap<String, String>,
    /// Value of the `caas.managed` label: the platform's namespace (`caas`), or a test's own.
    pub namespace: String,
    /// Memory (and memory+swap) and CPU limits.
    pub resources: Resources,
    /// Open the container's stdin for [`crate::Task::stdin`]; it reads end-of-file when that
    /// writer is closed or dropped. Without, the container's stdin is empty.
    pub stdin: bool,
    /// Maximum number of processes in the container.
    pub pids_limit: i64,
    /// The `nofile` limit, soft and hard.
    pub nofile: u64,
    /// Run an init process as PID 1 so signals reach the command and zombies are reaped.
    pub init: bool,
    /// The engine's own copy of the output: `None` (the default) keeps none, since the output
    /// reaches the caller through the attached streams and a workflow moving a GiB through
    /// its steps would otherwise write it to disk once per step; `Some` keeps a rotated
    /// `json-file` log (for `docker logs` while it runs).
    pub engine_logs: Option<LogRotation>,
    /// The tenant network the task joins (made on demand by [`crate::Deployer::start_task`]);
    /// `None`: the engine's default bridge.
    pub network: Option<TenantNetwork>,
}

impl std::fmt::Debug for TaskSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskSpec")
            .field("name", &self.name)
            .field("image", &self.image)
            .field("command", &self.command)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("labels", &self.labels)
            .field("namespace", &self.namespace)
            .field("resources", &self.resources)
            .field("stdin", &self.stdin)
            .field("pids_limit", &self.pids_limit)
            .field("nofile", &self.nofile)
            .field("init", &self.init)
            .field("engine_logs", &self.engine_logs)
            .field("network", &self.network.as_ref().map(TenantNetwork::name))
            .finish()
    }
}

impl TaskSpec {
    /// A task of `app` with the platform's defaults: the image's own command, label `caas.app`,
    /// no stdin, [`DEFAULT_PIDS_LIMIT`], an init process, no engine log.
    pub fn new(
        namespace: &str,
        app: &AppId,
        name: String,
        image: String,
        resources: Resources,
    ) -> TaskSpec {
        TaskSpec {
            name,
            image,
            command: Vec::new(),
            env: BTreeMap::new(),
            labels: BTreeMap::from([(labels::APP.to_owned(), app.to_string())]),
            namespace: namespace.to_owned(),
            resources,
            stdin: false,
            pids_limit: DEFAULT_PIDS_LIMIT,
            nofile: DEFAULT_NOFILE,
            init: true,
            engine_logs: None,
            network: None,
        }
    }

    /// Every label the container carries, `caas.managed` included.
    pub fn all_labels(&self) -> HashMap<String, String> {
        let mut all: HashMap<String, String> = self.labels.clone().into_iter().collect();
        all.insert(labels::MANAGED.to_owned(), self.namespace.clone());
        all
    }

    /// The engine's create request: attached streams without a TTY (so stdout and stderr stay
    /// apart and stdin carries any bytes: detach keys apply only to a TTY), stdin open once
    /// when asked, no port, no restart, the hardened limits of every caas container.
    pub(crate) fn to_config(&self) -> Config<String> {
        let log_config = match self.engine_logs {
            Some(rotation) => rotation.to_docker(),
            None => HostConfigLogConfig {
                typ: Some("none".to_owned()),
                config: None,
            },
        };
        let host_config = HostConfig {
            init: Some(self.init),
            restart_policy: Some(docker_restart(RestartPolicy::No)),
            auto_remove: Some(false),
            log_config: Some(log_config),
            ulimits: Some(vec![nofile(self.nofile)]),
            ..hardened(&self.resources, self.pids_limit, self.network.as_ref())
        };
        Config {
            image: Some(self.image.clone()),
            cmd: (!self.command.is_empty()).then(|| self.command.clone()),
            env: Some(self.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(self.all_labels()),
            attach_stdin: Some(self.stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            open_stdin: Some(self.stdin),
            // The container's stdin closes when the first attached writer closes: that is the
            // end-of-file a `cat` or `wc` waits for.
            stdin_once: Some(self.stdin),
            tty: Some(false),
            host_config: Some(host_config),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use caas_types::{Cpus, Memory};

    fn spec() -> TaskSpec {
        TaskSpec::new(
            "caas",
            &"tools".parse().expect("valid"),
            "caas-job-1".to_owned(),
            "127.0.0.1:5000/tools:v1".to_owned(),
            Resources {
                memory: Memory::from_mib(64).expect("valid"),
                cpus: Cpus::from_millis(250).expect("valid"),
            },
        )
    }

    #[test]
    fn a_task_has_its_command_labels_limits_and_no_port() {
        let mut spec = spec();
        spec.command = vec!["sh".into(), "-c".into(), "exit 3".into()];
        spec.env.insert("K".into(), "V".into());
        let config = spec.to_config();
        assert_eq!(
            config.cmd,
            Some(vec!["sh".to_owned(), "-c".to_owned(), "exit 3".to_owned()])
        );
        assert_eq!(config.entrypoint, None, "the image's entrypoint stays");
        assert_eq!(config.env, Some(vec!["K=V".to_owned()]));
        let labels = config.labels.expect("labels");
        assert_eq!(labels.get("caas.managed").map(String::as_str), Some("caas"));
        assert_eq!(labels.get("caas.app").map(String::as_str), Some("tools"));
        assert!(!labels.contains_key("caas.instance"));
        assert_eq!(config.exposed_ports, None);
        assert_eq!(config.tty, Some(false));
        assert_eq!(config.attach_stdout, Some(true));
        assert_eq!(config.attach_stderr, Some(true));
        assert_eq!(config.open_stdin, Some(false));
        let host = config.host_config.expect("host config");
        assert_eq!(host.port_bindings, None);
        assert_eq!(host.memory, Some(64 << 20));
        assert_eq!(host.memory_swap, Some(64 << 20));
        assert_eq!(host.nano_cpus, Some(250_000_000));
        assert_eq!(host.pids_limit, Some(DEFAULT_PIDS_LIMIT));
        assert_eq!(host.ulimits, Some(vec![nofile(DEFAULT_NOFILE)]));
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(host.privileged, Some(false));
        assert_eq!(
            host.auto_remove,
            Some(false),
            "removed after its exit is read"
        );
        assert_eq!(
            host.log_config.and_then(|l| l.typ).as_deref(),
            Some("none"),
            "no engine copy of the output by default"
        );
    }

    #[test]
    fn an_empty_command_keeps_the_images_and_stdin_opens_once() {
        let mut spec = spec();
        spec.stdin = true;
        spec.engine_logs = Some(LogRotation::default());
        let config = spec.to_config();
        assert_eq!(config.cmd, None);
        assert_eq!(config.attach_stdin, Some(true));
        assert_eq!(config.open_stdin, Some(true));
        assert_eq!(config.stdin_once, Some(true));
        assert_eq!(
            config
                .host_config
                .and_then(|h| h.log_config)
                .and_then(|l| l.typ)
                .as_deref(),
            Some("json-file")
        );
    }

    #[test]
    fn debug_shows_env_names_but_no_values() {
        let mut spec = spec();
        spec.env.insert("TOKEN".into(), "plain-secret-value".into());
        let shown = format!("{spec:?}");
        assert!(shown.contains("TOKEN"), "{shown}");
        assert!(!shown.contains("plain-secret-value"), "{shown}");
    }
}
