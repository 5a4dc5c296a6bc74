//! The health checker: polls every watched instance's health path over plain HTTP/1.1, with the
//! interval, timeout and thresholds of its deployment, and keeps ZooKeeper in step: after N
//! consecutive failures the instance's node is removed at once, after M consecutive successes it
//! is registered again. Each transition is reported on a channel; the scheduler decides what to
//! do about it (restart or replace). Checks run concurrently under a bound, so one slow instance
//! delays no other.

use crate::registry::Registry;
use bytes::Bytes;
use caas_types::{AppId, ContainerId, Endpoint, HealthPolicy, Version};
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Most of a health response's body that is read (the rest is dropped).
const BODY_LIMIT: usize = 64 * 1024;
/// Capacity of the event channel; checks wait when the scheduler falls this far behind.
const EVENT_BUFFER: usize = 1024;

/// One instance to check.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthTarget {
    /// Its app.
    pub app: AppId,
    /// Its version.
    pub version: Version,
    /// Its container (the key: watching the same container again replaces the target).
    pub container: ContainerId,
    /// Where it answers.
    pub endpoint: Endpoint,
    /// Path, interval, timeout and thresholds from its deployment.
    pub spec: HealthPolicy,
    /// Whether its node is in ZooKeeper now. A registered target is deregistered after
    /// `spec.failures` failures; an unregistered one registered after `spec.successes` successes.
    pub registered: bool,
}

/// Which way an instance's health flipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HealthEventKind {
    /// Failed `failures` times in a row; its node has been removed.
    Unhealthy,
    /// Passed `successes` times in a row; its node has been created again.
    Healthy,
}

/// A health transition, reported after ZooKeeper has been updated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthEvent {
    /// The app.
    pub app: AppId,
    /// The version.
    pub version: Version,
    /// The container.
    pub container: ContainerId,
    /// Where it answers.
    pub endpoint: Endpoint,
    /// Which way it flipped.
    pub kind: HealthEventKind,
}

/// Polls instances and keeps their registration in step with their health. Cheap to clone:
/// keep one clone to [`watch`](Self::watch)/[`unwatch`](Self::unwatch) while another
/// [`run`](Self::run)s.
#[derive(Clone)]
pub struct HealthChecker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for HealthChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthChecker")
            .field("targets", &self.targets().len())
            .finish_non_exhaustive()
    }
}

struct Inner {
    registry: Registry,
    events: mpsc::Sender<HealthEvent>,
    targets: Mutex<HashMap<ContainerId, Tracked>>,
    /// Wakes the scheduling loop when targets change or a check finishes.
    wake: Notify,
    permits: Arc<Semaphore>,
    http: Client<HttpConnector, Empty<Bytes>>,
}

/// A target with its counters.
struct Tracked {
    target: HealthTarget,
    /// Bumped when the target is replaced, so a check started before is ignored.
    epoch: u64,
    failures: u32,
    successes: u32,
    next_due: Instant,
    in_flight: bool,
}

impl HealthChecker {
    /// A checker that writes through `registry` and runs at most `max_concurrent` checks at
    /// once. Returns the receiver of its [`HealthEvent`]s.
    pub fn new(
        registry: Registry,
        max_concurrent: usize,
    ) -> (HealthChecker, mpsc::Receiver<HealthEvent>) {
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        let http = check_client();
        let inner = Inner {
            registry,
            events: tx,
            targets: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            http,
        };
        (
            HealthChecker {
                inner: Arc::new(inner),
            },
            rx,
        )
    }

    fn targets(&self) -> MutexGuard<'_, HashMap<ContainerId, Tracked>> {
        lock(&self.inner.targets)
    }

    /// Starts checking `target` (first check right away); replaces a target with the same
    /// container, resetting its counters.
    pub fn watch(&self, target: HealthTarget) {
        let mut targets = self.targets();
        let epoch = targets.get(&target.container).map_or(0, |t| t.epoch + 1);
        targets.insert(
            target.container.clone(),
            Tracked {
                target,
                epoch,
                failures: 0,
                successes: 0,
                next_due: Instant::now(),
                in_flight: false,
            },
        );
        drop(targets);
        self.inner.wake.notify_one();
    }

    /// Stops checking `container` (its registration is left as it is).
    pub fn unwatch(&self, container: &ContainerId) {
        self.targets().remove(container);
        self.inner.wake.notify_one();
    }

    /// The targets being checked, with whether each is registered now.
    pub fn watched(&self) -> Vec<HealthTarget> {
        self.targets().values().map(|t| t.target.clone()).collect()
    }

    /// Runs checks until `shutdown` completes; checks in flight are cancelled then.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut checks = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            let now = Instant::now();
            let mut next = now + Duration::from_secs(1);
            for (container, t) in self.targets().iter_mut() {
                if t.in_flight {
                    continue;
                }
                if t.next_due <= now {
                    t.in_flight = true;
                    checks.spawn(check(
                        self.inner.clone(),
                        container.clone(),
                        t.epoch,
                        t.target.clone(),
                    ));
                } else {
                    next = next.min(t.next_due);
                }
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep_until(next) => {}
                () = self.inner.wake.notified() => {}
                Some(res) = checks.join_next() => {
                    if let Err(e) = res {
                        if e.is_panic() {
                            tracing::error!(error = %e, "health check task panicked");
                        }
                    }
                }
            }
        }
        checks.abort_all();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere cannot leave the map half-updated in a way that matters here.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What a check result asks for.
enum Action {
    Deregister,
    Register,
}

/// One check of one target, then whatever transition it causes.
async fn check(inner: Arc<Inner>, container: ContainerId, epoch: u64, target: HealthTarget) {
    let ok = {
        let _permit = inner.permits.clone().acquire_owned().await;
        let timeout = Duration::from_millis(target.spec.timeout_ms.max(1));
        probe(
            &inner.http,
            target.endpoint,
            target.spec.path.as_str(),
            timeout,
        )
        .await
    };
    let action = {
        let mut targets = lock(&inner.targets);
        let Some(t) = targets.get_mut(&container).filter(|t| t.epoch == epoch) else {
            return;
        };
        if ok {
            t.failures = 0;
            t.successes = t.successes.saturating_add(1);
            (!t.target.registered && t.successes >= t.target.spec.successes.max(1))
                .then_some(Action::Register)
        } else {
            t.successes = 0;
            t.failures = t.failures.saturating_add(1);
            (t.target.registered && t.failures >= t.target.spec.failures.max(1))
                .then_some(Action::Deregister)
        }
    };
    let kind = match action {
        None => None,
        Some(Action::Deregister) => {
            match inner
                .registry
                .deregister(&target.app, &target.version, &target.container)
                .await
            {
                Ok(()) => Some(HealthEventKind::Unhealthy),
                Err(e) => {
                    // Counters stay past the threshold: the next failure tries again.
                    tracing::warn!(container = %target.container, error = %e, "could not deregister unhealthy instance");
                    None
                }
            }
        }
        Some(Action::Register) => {
            match inner
                .registry
                .register(
                    &target.app,
                    &target.version,
                    &target.container,
                    target.endpoint,
                )
                .await
            {
                Ok(()) => Some(HealthEventKind::Healthy),
                Err(e) => {
                    tracing::warn!(container = %target.container, error = %e, "could not register recovered instance");
                    None
                }
            }
        }
    };
    {
        let mut targets = lock(&inner.targets);
        if let Some(t) = targets.get_mut(&container).filter(|t| t.epoch == epoch) {
            t.in_flight = false;
            t.next_due = Instant::now() + Duration::from_millis(t.target.spec.interval_ms.max(1));
            if let Some(kind) = kind {
                t.target.registered = kind == HealthEventKind::Healthy;
            }
        }
    }
    inner.wake.notify_one();
    if let Some(kind) = kind {
        tracing::info!(app = %target.app, version = %target.version, container = %target.container, ?kind, "health changed");
        let event = HealthEvent {
            app: target.app,
            version: target.version,
            container: target.container,
            endpoint: target.endpoint,
            kind,
        };
        // A dropped receiver only means nobody listens; ZooKeeper is already updated.
        let _ = inner.events.send(event).await;
    }
}

/// One HTTP GET of the target's health path: healthy means a 2xx answer within the timeout.
/// The client health checks use: a fresh connection per check ("accepts new connections" is part
/// of being healthy), no idle pool.
fn check_client() -> Client<HttpConnector, Empty<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(connector)
}

/// One health check by the checker's rules: `GET {path}` on `endpoint` answers 2xx, with its
/// (bounded) body, within `timeout`. The scheduler uses it to wait for a new instance.
pub async fn check_once(endpoint: Endpoint, path: &str, timeout: Duration) -> bool {
    probe(&check_client(), endpoint, path, timeout).await
}

async fn probe(
    http: &Client<HttpConnector, Empty<Bytes>>,
    endpoint: Endpoint,
    path: &str,
    timeout: Duration,
) -> bool {
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    let uri = match format!("http://{endpoint}{path}").parse::<http::Uri>() {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(%endpoint, error = %e, "bad health check uri");
            return false;
        }
    };
    let attempt = async {
        let response = http.get(uri).await.map_err(|e| e.to_string())?;
        let status = response.status();
        // Read (a bounded part of) the body so the answer is complete, not just its head.
        Limited::new(response.into_body(), BODY_LIMIT)
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(status)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(status)) if status.is_success() => true,
        Ok(Ok(status)) => {
            tracing::debug!(%endpoint, %status, "health check failed");
            false
        }
        Ok(Err(e)) => {
            tracing::debug!(%endpoint, error = %e, "health check failed");
            false
        }
        Err(_) => {
            tracing::debug!(%endpoint, "health check timed out");
            false
        }
    }
}
