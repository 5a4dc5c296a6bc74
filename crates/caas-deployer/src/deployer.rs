//! [`Deployer`]: one host's Docker Engine, and every operation the scheduler needs on it.
//!
//! Architecture invariant: this crate is the only place in caas that holds a bollard client (the
//! client lives here; `task/` borrows it for run-to-completion containers). Every engine failure
//! leaves through [`crate::error::classify`], so callers see one error enum.

use crate::endpoint::DockerEndpoint;
use crate::error::{classify, classify_message, Error, Op, Result};
use crate::logs::{Assembler, LogLine};
use crate::observed::{
    ContainerEvent, ContainerStatus, ContainerSummary, PullProgress, RunningContainer,
};
use crate::spec::{RegistryCredentials, RunSpec};
use bollard::auth::DockerCredentials;
use bollard::container::{
    CreateContainerOptions, InspectContainerOptions, KillContainerOptions, ListContainersOptions,
    LogOutput, LogsOptions, RemoveContainerOptions, RestartContainerOptions, StartContainerOptions,
    StopContainerOptions,
};
use bollard::image::CreateImageOptions;
use bollard::system::EventsOptions;
use bollard::{ClientVersion, Docker};
use caas_types::api::LogStream;
use caas_types::{labels, ContainerId, Endpoint, Timestamp};
use futures::{Stream, StreamExt, TryStreamExt};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::OnceCell;
use tracing::{debug, info, warn};

/// The API version we speak at most: Docker 20.10's. Negotiation only ever lowers it, so an
/// older engine gets its own version and a newer one gets this (which it still accepts).
const MAX_API: ClientVersion = ClientVersion {
    major_version: 1,
    minor_version: 41,
};

/// How many times a create is tried when its tenant network vanishes under it (another
/// container's removal pruned it between the ensure and the start).
pub(crate) const NETWORK_ATTEMPTS: u32 = 3;

/// Default bound on one engine request until its response headers (streams run on after).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// A client of one host's Docker Engine. Cheap to clone (an `Arc` inside); clones share the
/// connection settings and the negotiated API version.
#[derive(Clone)]
pub struct Deployer {
    inner: Arc<Inner>,
}

struct Inner {
    docker: Docker,
    endpoint: String,
    /// Set once the API version has been negotiated; not set by a failed attempt, so an engine
    /// that was down at first is negotiated with when it comes back.
    negotiated: OnceCell<()>,
}

impl std::fmt::Debug for Deployer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployer")
            .field("endpoint", &self.inner.endpoint)
            .finish()
    }
}

impl Deployer {
    /// A client for `endpoint` with [`DEFAULT_TIMEOUT`]. Nothing is sent yet: the first call
    /// negotiates the API version; [`Deployer::ping`] checks reachability.
    pub fn connect(endpoint: &DockerEndpoint) -> Result<Deployer> {
        Deployer::connect_with_timeout(endpoint, DEFAULT_TIMEOUT)
    }

    /// Like [`Deployer::connect`] with a request timeout (whole seconds, at least one). Keep it
    /// longer than any stop grace period you pass.
    pub fn connect_with_timeout(endpoint: &DockerEndpoint, timeout: Duration) -> Result<Deployer> {
        let secs = timeout.as_secs().max(1);
        let invalid = |reason: String| Error::InvalidEndpoint {
            endpoint: endpoint.to_string(),
            reason,
        };
        let docker = match endpoint {
            DockerEndpoint::Unix(path) => {
                let path = path
                    .to_str()
                    .ok_or_else(|| invalid("socket path is not UTF-8".into()))?;
                Docker::connect_with_unix(path, secs, &MAX_API)
                    .map_err(|e| classify(Op::Engine, e))?
            }
            DockerEndpoint::Tcp(addr) => Docker::connect_with_http(addr, secs, &MAX_API)
                .map_err(|e| classify(Op::Engine, e))?,
            DockerEndpoint::Tls { addr, files } => {
                for (what, path) in [
                    ("CA", &files.ca),
                    ("certificate", &files.cert),
                    ("key", &files.key),
                ] {
                    if !path.is_file() {
                        return Err(invalid(format!(
                            "{what} file {} is missing",
                            path.display()
                        )));
                    }
                }
                // bollard's TLS client asks rustls for the process-wide provider; installing
                // ring is a no-op when some other part of the process already chose one.
                let _ = rustls::crypto::ring::default_provider().install_default();
                Docker::connect_with_ssl(addr, &files.key, &files.cert, &files.ca, secs, &MAX_API)
                    .map_err(|e| match classify(Op::Engine, e) {
                    Error::Unexpected(m) => invalid(m),
                    other => other,
                })?
            }
        };
        Ok(Deployer {
            inner: Arc::new(Inner {
                docker,
                endpoint: endpoint.to_string(),
                negotiated: OnceCell::new(),
            }),
        })
    }

    /// The endpoint this client talks to, for logs.
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    /// The client, after negotiating the API version once.
    pub(crate) async fn docker(&self) -> Result<&Docker> {
        let inner = &self.inner;
        inner
            .negotiated
            .get_or_try_init(|| async {
                // The version lives behind an Arc shared by clones: negotiating a clone sets ours.
                inner
                    .docker
                    .clone()
                    .negotiate_version()
                    .await
                    .map(|_| ())
                    .map_err(|e| classify(Op::Engine, e))
            })
            .await?;
        Ok(&inner.docker)
    }

    /// Checks that the engine answers (and negotiates the API version).
    pub async fn ping(&self) -> Result<()> {
        self.docker()
            .await?
            .ping()
            .await
            .map(|_| ())
            .map_err(|e| classify(Op::Engine, e))
    }

    /// Pulls `image` (`{registry}/{repo}:{tag}`), streaming the engine's progress. The stream
    /// ends after the last step; an error item (image not found, registry auth failed, registry
    /// unreachable, ...) is the last item.
    pub fn pull(
        &self,
        image: &str,
        creds: Option<&RegistryCredentials>,
    ) -> impl Stream<Item = Result<PullProgress>> + Send + 'static {
        let this = self.clone();
        let image = image.to_owned();
        let (from_image, tag) = split_reference(&image);
        let options = CreateImageOptions {
            from_image,
            tag,
            ..Default::default()
        };
        let credentials = creds.map(|c| DockerCredentials {
            username: Some(c.username.clone()),
            password: Some(c.password.clone()),
            serveraddress: Some(c.server.clone()),
            ..Default::default()
        });
        futures::stream::once(async move {
            let docker = this.docker().await?.clone();
            let stream = docker
                .create_image(Some(options), None, credentials)
                .map(move |item| match item {
                    Ok(info) => match info.error.clone() {
                        // An error after the stream started arrives as a line, not a status.
                        Some(message) => Err(classify_message(Op::Image(&image), 500, message)),
                        None => Ok(PullProgress::from_docker(info)),
                    },
                    Err(e) => Err(classify(Op::Image(&image), e)),
                });
            Ok::<_, Error>(stream)
        })
        .try_flatten()
        .scan(false, |failed, item| {
            // Stop after the first error: the engine's later lines add nothing.
            if *failed {
                return futures::future::ready(None);
            }
            *failed = item.is_err();
            futures::future::ready(Some(item))
        })
    }

    /// Pulls `image` to the end, logging layer progress through `tracing` (one line per layer
    /// state change, not per byte).
    pub async fn pull_to_end(
        &self,
        image: &str,
        creds: Option<&RegistryCredentials>,
    ) -> Result<()> {
        let stream = self.pull(image, creds);
        futures::pin_mut!(stream);
        let mut last: HashMap<String, String> = HashMap::new();
        while let Some(step) = stream.next().await {
            let step = step?;
            let key = step.layer.clone().unwrap_or_default();
            if last.get(&key) != Some(&step.status) {
                debug!(image, layer = %key, status = %step.status, current = ?step.current, total = ?step.total, "pull");
                last.insert(key, step.status);
            }
        }
        info!(image, layers = last.len().saturating_sub(1), "pulled");
        Ok(())
    }

    /// True when the engine has `image` locally.
    pub async fn image_present(&self, image: &str) -> Result<bool> {
        match self.docker().await?.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(false),
            Err(e) => Err(classify(Op::Image(image), e)),
        }
    }

    /// Creates and starts the container of `spec`. If start fails the container is removed, so a
    /// failed run leaves nothing behind. If a container of that name already exists with our
    /// labels for this spec (a create that timed out but happened), it is adopted (and started
    /// if needed) instead of duplicated; a name held by anything else is [`Error::NameConflict`].
    #[tracing::instrument(skip_all, fields(name = %spec.name, image = %spec.image, bind = ?spec.port.map(|p| p.host)))]
    pub async fn run(&self, spec: &RunSpec) -> Result<RunningContainer> {
        self.on_network(spec.network.as_ref(), || self.create_and_start(spec))
            .await
    }

    async fn create_and_start(&self, spec: &RunSpec) -> Result<RunningContainer> {
        let endpoint = spec.port.map(|p| p.host);
        let docker = self.docker().await?;
        let options = CreateContainerOptions {
            name: spec.name.clone(),
            platform: None,
        };
        let created = docker
            .create_container(Some(options), spec.to_config())
            .await;
        let id = match created {
            Ok(resp) => parse_id(&resp.id)?,
            Err(e) => {
                return match classify(Op::Container(&spec.name), e) {
                    Error::NameConflict(message) => self.adopt(spec, endpoint, message).await,
                    Error::ImageNotFound { message, .. } => Err(Error::ImageNotFound {
                        image: spec.image.clone(),
                        message,
                    }),
                    other => Err(other),
                };
            }
        };
        debug!(id = %id, "created");
        self.start_or_remove(&id, &spec.name).await?;
        info!(id = %id, "started");
        Ok(RunningContainer {
            id,
            name: spec.name.clone(),
            endpoint,
            adopted: false,
        })
    }

    /// Starts a created container; on failure removes it and returns the start's error.
    pub(crate) async fn start_or_remove(&self, id: &ContainerId, name: &str) -> Result<()> {
        let docker = self.docker().await?;
        let started = docker
            .start_container(id.as_str(), None::<StartContainerOptions<String>>)
            .await;
        if let Err(e) = started {
            let err = classify(Op::Container(name), e);
            warn!(id = %id, error = %err, "start failed; removing the container");
            if let Err(cleanup) = self.remove(id).await {
                warn!(id = %id, error = %cleanup, "could not remove the container after a failed start");
            }
            return Err(err);
        }
        Ok(())
    }

    /// Takes over an existing container named like `spec` if it is ours for this spec.
    async fn adopt(
        &self,
        spec: &RunSpec,
        endpoint: Option<Endpoint>,
        conflict: String,
    ) -> Result<RunningContainer> {
        let status = match self.inspect_name(&spec.name).await {
            Ok(s) => s,
            // Removed between our create and our look: still a conflict for the caller to retry.
            Err(Error::ContainerNotFound(_)) => return Err(Error::NameConflict(conflict)),
            Err(e) => return Err(e),
        };
        let ours = spec
            .all_labels()
            .iter()
            .all(|(k, v)| status.labels.get(k) == Some(v))
            && status.image == spec.image
            && status.endpoint == endpoint;
        if !ours {
            return Err(Error::NameConflict(conflict));
        }
        info!(id = %status.id, state = ?status.state, "adopting existing container");
        if status.state != crate::ContainerState::Running {
            self.start_or_remove(&status.id, &spec.name).await?;
        }
        Ok(RunningContainer {
            id: status.id,
            name: spec.name.clone(),
            endpoint,
            adopted: true,
        })
    }

    /// Stops a container: SIGTERM, then SIGKILL after `grace`. A container already stopped or
    /// already gone is fine.
    #[tracing::instrument(level = "debug", skip(self), fields(engine = %self.inner.endpoint))]
    pub async fn stop(&self, id: &ContainerId, grace: Duration) -> Result<()> {
        let options = StopContainerOptions {
            t: i64::try_from(grace.as_secs()).unwrap_or(i64::MAX),
        };
        match self
            .docker()
            .await?
            .stop_container(id.as_str(), Some(options))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => match classify(Op::Container(id.as_str()), e) {
                Error::ContainerNotFound(_) => Ok(()),
                other => Err(other),
            },
        }
    }

    /// Kills a container at once (SIGKILL). A container already stopped or already gone is fine.
    #[tracing::instrument(level = "debug", skip(self), fields(engine = %self.inner.endpoint))]
    pub async fn kill(&self, id: &ContainerId) -> Result<()> {
        let options = KillContainerOptions { signal: "SIGKILL" };
        let done = self
            .docker()
            .await?
            .kill_container(id.as_str(), Some(options))
            .await;
        already_done(id, done, "is not running")
    }

    /// Removes a container, killing it if running, with its anonymous volumes. Already gone (or
    /// already being removed) is fine.
    #[tracing::instrument(level = "debug", skip(self), fields(engine = %self.inner.endpoint))]
    pub async fn remove(&self, id: &ContainerId) -> Result<()> {
        // Which network it is on, asked first: once removed, nobody can say.
        let network = self.user_network_of(id).await;
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            link: false,
        };
        let done = self
            .docker()
            .await?
            .remove_container(id.as_str(), Some(options))
            .await;
        already_done(id, done, "already in progress")?;
        // The last container of a tenant's network takes the network with it (that network
        // only: a prune would also take other tenants' networks made a moment ago for a
        // container not started yet).
        if let Some(network) = network {
            self.remove_network_if_unused(&network).await;
        }
        Ok(())
    }

    /// Restarts a container (stop with `grace`, then start).
    #[tracing::instrument(level = "debug", skip(self), fields(engine = %self.inner.endpoint))]
    pub async fn restart(&self, id: &ContainerId, grace: Duration) -> Result<()> {
        let options = RestartContainerOptions {
            t: isize::try_from(grace.as_secs()).unwrap_or(isize::MAX),
        };
        self.docker()
            .await?
            .restart_container(id.as_str(), Some(options))
            .await
            .map_err(|e| classify(Op::Container(id.as_str()), e))
    }

    /// A container's state, exit code, OOM flag, labels, bound endpoint and applied limits.
    pub async fn inspect(&self, id: &ContainerId) -> Result<ContainerStatus> {
        self.inspect_name(id.as_str()).await
    }

    async fn inspect_name(&self, name: &str) -> Result<ContainerStatus> {
        let resp = self
            .docker()
            .await?
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
            .map_err(|e| classify(Op::Container(name), e))?;
        ContainerStatus::from_inspect(resp)
            .ok_or_else(|| Error::Unexpected(format!("inspect of {name} has no valid id")))
    }

    /// Every container (running or not) carrying all of `labels` (`key`, `value`) — e.g.
    /// `[(caas.managed, "caas")]` for all of ours on this host.
    pub async fn list(&self, labels: &[(&str, &str)]) -> Result<Vec<ContainerSummary>> {
        let options = ListContainersOptions {
            all: true,
            filters: label_filters(labels),
            ..Default::default()
        };
        let list = self
            .docker()
            .await?
            .list_containers(Some(options))
            .await
            .map_err(|e| classify(Op::Engine, e))?;
        Ok(list
            .into_iter()
            .filter_map(ContainerSummary::from_docker)
            .collect())
    }

    /// The engine's container events (start, die with exit code, oom, stop, destroy, ...) for
    /// containers carrying all of `labels`, from the moment of this call (even though the
    /// request is only sent when the stream is first polled). The stream ends if the engine
    /// closes it (e.g. a daemon restart); callers re-subscribe and re-list to catch up.
    pub fn events(
        &self,
        labels: &[(&str, &str)],
    ) -> impl Stream<Item = Result<ContainerEvent>> + Send + 'static {
        self.events_since(labels, SystemTime::now())
    }

    /// Like [`Deployer::events`], replaying from `since` (the engine's clock: a remote engine's
    /// skew shifts the window).
    pub fn events_since(
        &self,
        labels: &[(&str, &str)],
        since: SystemTime,
    ) -> impl Stream<Item = Result<ContainerEvent>> + Send + 'static {
        let this = self.clone();
        let mut filters = label_filters(labels);
        filters.insert("type".to_owned(), vec!["container".to_owned()]);
        let since = since
            .duration_since(UNIX_EPOCH)
            .map(|d| format!("{}.{:09}", d.as_secs(), d.subsec_nanos()))
            .ok();
        futures::stream::once(async move {
            let docker = this.docker().await?.clone();
            let options = EventsOptions {
                since,
                filters,
                ..Default::default()
            };
            Ok::<_, Error>(
                docker
                    .events(Some(options))
                    .map_err(|e| classify(Op::Engine, e)),
            )
        })
        .try_flatten()
        .try_filter_map(|e| futures::future::ready(Ok(ContainerEvent::from_docker(e))))
    }

    /// A container's stdout and stderr as [`LogLine`]s in the order the engine stored them,
    /// from `since` (inclusive; `None`: from the start of what the engine keeps). With
    /// `follow` the stream goes on with new lines and ends when the container stops;
    /// without, it ends at the last stored line.
    ///
    /// The stream is pulled, never pushed: nothing is read from the engine while the caller
    /// does not poll, so a slow consumer slows the read (the engine's log file is the buffer)
    /// and memory stays at one line per stream ([`crate::MAX_LINE_BYTES`] at most).
    pub fn logs(
        &self,
        id: &ContainerId,
        since: Option<Timestamp>,
        follow: bool,
    ) -> impl Stream<Item = Result<LogLine>> + Send + 'static {
        let this = self.clone();
        let id = id.clone();
        let options = LogsOptions::<String> {
            follow,
            stdout: true,
            stderr: true,
            // The engine takes whole seconds here; lines before `since` are dropped below.
            since: since.map_or(0, Timestamp::as_secs),
            until: 0,
            timestamps: true,
            tail: "all".to_owned(),
        };
        let frames = futures::stream::once(async move {
            let docker = this.docker().await?.clone();
            let name = id.as_str().to_owned();
            Ok::<_, Error>(
                docker
                    .logs(id.as_str(), Some(options))
                    .map_err(move |e| classify(Op::Container(&name), e)),
            )
        })
        .try_flatten();
        frames
            .map(Some)
            .chain(futures::stream::once(async { None }))
            .scan(
                (Assembler::default(), false),
                |(assembler, failed), item| {
                    // After an error the engine's later frames add nothing.
                    if *failed {
                        return futures::future::ready(None);
                    }
                    let out: Vec<Result<LogLine>> = match item {
                        Some(Ok(LogOutput::StdOut { message })) => assembler
                            .push(LogStream::Stdout, &message)
                            .into_iter()
                            .map(Ok)
                            .collect(),
                        Some(Ok(LogOutput::StdErr { message })) => assembler
                            .push(LogStream::Stderr, &message)
                            .into_iter()
                            .map(Ok)
                            .collect(),
                        // Our containers have no TTY and no stdin.
                        Some(Ok(LogOutput::StdIn { .. } | LogOutput::Console { .. })) => Vec::new(),
                        Some(Err(e)) => {
                            *failed = true;
                            let mut out: Vec<Result<LogLine>> =
                                assembler.flush().into_iter().map(Ok).collect();
                            out.push(Err(e));
                            out
                        }
                        None => assembler.flush().into_iter().map(Ok).collect(),
                    };
                    futures::future::ready(Some(futures::stream::iter(out)))
                },
            )
            .flatten()
            .try_filter(move |line| futures::future::ready(since.is_none_or(|s| line.ts >= s)))
    }

    /// Containers of our `namespace` on this host: shorthand for
    /// `list(&[(caas.managed, namespace)])`.
    pub async fn list_managed(&self, namespace: &str) -> Result<Vec<ContainerSummary>> {
        self.list(&[(labels::MANAGED, namespace)]).await
    }
}

pub(crate) fn parse_id(id: &str) -> Result<ContainerId> {
    id.parse()
        .map_err(|e| Error::Unexpected(format!("engine returned container id {id:?}: {e}")))
}

fn label_filters(labels: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
    let mut filters = HashMap::new();
    if !labels.is_empty() {
        filters.insert(
            "label".to_owned(),
            labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        );
    }
    filters
}

/// Splits `repo[:tag]` or `repo@digest` into the engine's `fromImage` and `tag`. A missing tag
/// is `latest`: an empty tag would make the engine pull every tag of the repository.
fn split_reference(image: &str) -> (String, String) {
    if image.contains('@') {
        return (image.to_owned(), String::new());
    }
    let last_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_slash..].rfind(':') {
        Some(i) => {
            let at = last_slash + i;
            (image[..at].to_owned(), image[at + 1..].to_owned())
        }
        None => (image.to_owned(), "latest".to_owned()),
    }
}

/// The answer to an operation on container `id` whose end state is "gone" or "stopped": a
/// container that is not there, or a 409 whose message holds `benign` (the engine is already
/// doing it, or has done it), counts as done.
fn already_done(
    id: &ContainerId,
    done: std::result::Result<(), bollard::errors::Error>,
    benign: &str,
) -> Result<()> {
    match done {
        Ok(()) => Ok(()),
        Err(e) => match classify(Op::Container(id.as_str()), e) {
            Error::ContainerNotFound(_) => Ok(()),
            Error::Docker {
                status: 409,
                message,
            } if message.contains(benign) => Ok(()),
            other => Err(other),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_at_the_tag_not_the_registry_port() {
        assert_eq!(
            split_reference("127.0.0.1:5000/hello:v1"),
            ("127.0.0.1:5000/hello".into(), "v1".into())
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/hello"),
            ("127.0.0.1:5000/hello".into(), "latest".into())
        );
        assert_eq!(
            split_reference("hello@sha256:abcd"),
            ("hello@sha256:abcd".into(), String::new())
        );
        // A release's pinned reference: the registry's port is not a tag, and the digest stays
        // in the name (the engine pulls `repo@sha256:...` with an empty tag).
        let digest = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(
            split_reference(&format!("127.0.0.1:5000/hello@{digest}")),
            (format!("127.0.0.1:5000/hello@{digest}"), String::new())
        );
        assert_eq!(
            split_reference("busybox"),
            ("busybox".into(), "latest".into())
        );
    }

    #[test]
    fn label_filters_are_key_equals_value() {
        let f = label_filters(&[("caas.managed", "t1"), ("caas.app", "a")]);
        assert_eq!(
            f.get("label"),
            Some(&vec!["caas.managed=t1".to_owned(), "caas.app=a".to_owned()])
        );
        assert!(label_filters(&[]).is_empty());
    }
}
