//! The seam at the Docker engines: [`Engine`] is everything the scheduler asks of one host's
//! engine (logs included), implemented by `caas_deployer::Deployer`; [`Engines`] keeps one
//! client per host, connected on first use from the host's endpoint URL (bollard clients pool
//! their connections). Code above this module never names `Deployer`, so it can be driven by
//! another implementation in tests.

use crate::config::Config;
use crate::error::{Error, Result};
use caas_deployer::{
    ContainerEvent, ContainerStatus, ContainerSummary, Deployer, DockerEndpoint, LogLine,
    PullProgress, RegistryCredentials, RunSpec, RunningContainer, Task, TaskSpec, TlsFiles,
};
use caas_types::{ContainerId, HostName, Timestamp};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An engine's own result: the error is `caas-deployer`'s classification, turned into the
/// scheduler's [`Error`] (with the host's name) by the caller.
pub type EngineResult<T> = std::result::Result<T, caas_deployer::Error>;

/// What the scheduler asks of one host's container engine.
pub trait Engine: Send + Sync + std::fmt::Debug {
    /// Whether the engine answers.
    fn ping(&self) -> BoxFuture<'_, EngineResult<()>>;
    /// Whether `image` is present locally.
    fn image_present<'a>(&'a self, image: &'a str) -> BoxFuture<'a, EngineResult<bool>>;
    /// Pulls `image`, streaming progress; an error item is the last one.
    fn pull(
        &self,
        image: &str,
        creds: Option<&RegistryCredentials>,
    ) -> BoxStream<'static, EngineResult<PullProgress>>;
    /// Creates and starts a container (adopting one left by a retried create).
    fn run<'a>(&'a self, spec: &'a RunSpec) -> BoxFuture<'a, EngineResult<RunningContainer>>;
    /// A container's state, exit code and OOM flag.
    fn inspect<'a>(&'a self, id: &'a ContainerId) -> BoxFuture<'a, EngineResult<ContainerStatus>>;
    /// Stops a container with a grace period.
    fn stop<'a>(&'a self, id: &'a ContainerId, grace: Duration) -> BoxFuture<'a, EngineResult<()>>;
    /// Kills a container at once, SIGKILL (stopped or gone already is fine).
    fn kill<'a>(&'a self, id: &'a ContainerId) -> BoxFuture<'a, EngineResult<()>>;
    /// Removes a container (gone already is fine).
    fn remove<'a>(&'a self, id: &'a ContainerId) -> BoxFuture<'a, EngineResult<()>>;
    /// Restarts a container in place.
    fn restart<'a>(
        &'a self,
        id: &'a ContainerId,
        grace: Duration,
    ) -> BoxFuture<'a, EngineResult<()>>;
    /// The containers carrying every one of `labels`.
    fn list<'a>(
        &'a self,
        labels: &'a [(&'a str, &'a str)],
    ) -> BoxFuture<'a, EngineResult<Vec<ContainerSummary>>>;
    /// A container's output lines from `since` (inclusive); with `follow`, until it stops.
    fn logs(
        &self,
        id: &ContainerId,
        since: Option<Timestamp>,
        follow: bool,
    ) -> BoxStream<'static, EngineResult<LogLine>>;
    /// Container events (start, die, ...) of containers carrying every one of `labels`, from
    /// now on; the stream ends if the engine closes it.
    fn events(&self, labels: &[(&str, &str)]) -> BoxStream<'static, EngineResult<ContainerEvent>>;
    /// Creates, attaches to and starts a run-to-completion container (a job, a workflow step);
    /// the image must be present. Nothing is left behind on failure.
    fn start_task<'a>(&'a self, spec: &'a TaskSpec) -> BoxFuture<'a, EngineResult<Task>>;
    /// Attaches to a task container that already runs (adopted after a scheduler restart).
    fn attach_task<'a>(&'a self, id: &'a ContainerId) -> BoxFuture<'a, EngineResult<Task>>;
}

impl Engine for Deployer {
    fn ping(&self) -> BoxFuture<'_, EngineResult<()>> {
        Box::pin(Deployer::ping(self))
    }
    fn image_present<'a>(&'a self, image: &'a str) -> BoxFuture<'a, EngineResult<bool>> {
        Box::pin(Deployer::image_present(self, image))
    }
    fn pull(
        &self,
        image: &str,
        creds: Option<&RegistryCredentials>,
    ) -> BoxStream<'static, EngineResult<PullProgress>> {
        Deployer::pull(self, image, creds).boxed()
    }
    fn run<'a>(&'a self, spec: &'a RunSpec) -> BoxFuture<'a, EngineResult<RunningContainer>> {
        Box::pin(Deployer::run(self, spec))
    }
    fn inspect<'a>(&'a self, id: &'a ContainerId) -> BoxFuture<'a, EngineResult<ContainerStatus>> {
        Box::pin(Deployer::inspect(self, id))
    }
    fn stop<'a>(&'a self, id: &'a ContainerId, grace: Duration) -> BoxFuture<'a, EngineResult<()>> {
        Box::pin(Deployer::stop(self, id, grace))
    }
    fn kill<'a>(&'a self, id: &'a ContainerId) -> BoxFuture<'a, EngineResult<()>> {
        Box::pin(Deployer::kill(self, id))
    }
    fn remove<'a>(&'a self, id: &'a ContainerId) -> BoxFuture<'a, EngineResult<()>> {
        Box::pin(Deployer::remove(self, id))
    }
    fn restart<'a>(
        &'a self,
        id: &'a ContainerId,
        grace: Duration,
    ) -> BoxFuture<'a, EngineResult<()>> {
        Box::pin(Deployer::restart(self, id, grace))
    }
    fn list<'a>(
        &'a self,
        labels: &'a [(&'a str, &'a str)],
    ) -> BoxFuture<'a, EngineResult<Vec<ContainerSummary>>> {
        Box::pin(Deployer::list(self, labels))
    }
    fn logs(
        &self,
        id: &ContainerId,
        since: Option<Timestamp>,
        follow: bool,
    ) -> BoxStream<'static, EngineResult<LogLine>> {
        Deployer::logs(self, id, since, follow).boxed()
    }
    fn events(&self, labels: &[(&str, &str)]) -> BoxStream<'static, EngineResult<ContainerEvent>> {
        Deployer::events(self, labels).boxed()
    }
    fn start_task<'a>(&'a self, spec: &'a TaskSpec) -> BoxFuture<'a, EngineResult<Task>> {
        Box::pin(Deployer::start_task(self, spec))
    }
    fn attach_task<'a>(&'a self, id: &'a ContainerId) -> BoxFuture<'a, EngineResult<Task>> {
        Box::pin(Deployer::attach_task(self, id))
    }
}

/// A shared engine client.
pub type EngineRef = Arc<dyn Engine>;

/// How an endpoint URL becomes an engine client.
pub trait Connector: Send + Sync + std::fmt::Debug {
    /// Connects to `url` (no I/O yet: clients connect lazily).
    fn connect(&self, url: &str) -> Result<EngineRef>;
}

/// Connects `caas-deployer` clients; `https://` endpoints use the client files of
/// `--docker-cert-path`.
#[derive(Debug, Default)]
pub struct DockerConnector {
    tls: Option<TlsFiles>,
}

impl DockerConnector {
    /// A connector with the TLS client files of `config`, if any.
    pub fn new(config: &Config) -> DockerConnector {
        DockerConnector {
            tls: config.docker_cert_path.as_ref().map(TlsFiles::from_dir),
        }
    }
}

impl Connector for DockerConnector {
    fn connect(&self, url: &str) -> Result<EngineRef> {
        let endpoint = DockerEndpoint::parse(url, self.tls.clone())
            .map_err(|e| Error::Invalid(format!("docker endpoint: {e}")))?;
        let deployer = Deployer::connect(&endpoint).map_err(|e| Error::engine(url, e))?;
        Ok(Arc::new(deployer))
    }
}

/// The engines of every host this scheduler has talked to.
#[derive(Debug)]
pub struct Engines {
    by_host: Mutex<HashMap<HostName, (String, EngineRef)>>,
    connector: Box<dyn Connector>,
}

impl Engines {
    /// Engines connected by `connector`.
    pub fn new(connector: impl Connector + 'static) -> Engines {
        Engines {
            by_host: Mutex::new(HashMap::new()),
            connector: Box::new(connector),
        }
    }

    /// Connects to an endpoint URL without caching it (to check a host before adding it).
    pub fn connect(&self, url: &str) -> Result<EngineRef> {
        self.connector.connect(url)
    }

    /// Checks that the engine at `url` answers (before a host is added).
    pub async fn check(&self, url: &str) -> Result<()> {
        let engine = self.connect(url)?;
        engine.ping().await.map_err(|e| Error::engine(url, e))
    }

    /// The engine of `host`, whose endpoint is `url`; reconnects if the URL changed.
    pub fn get(&self, host: &HostName, url: &str) -> Result<EngineRef> {
        let mut map = self.by_host.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((u, d)) = map.get(host) {
            if u == url {
                return Ok(d.clone());
            }
        }
        let d = self.connect(url)?;
        map.insert(host.clone(), (url.to_owned(), d.clone()));
        Ok(d)
    }

    /// Drops the cached client of a removed host.
    pub fn forget(&self, host: &HostName) {
        self.by_host
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(host);
    }
}
