//! Workers' supervision. A worker's instance has no port and no health path, so its container's
//! state is its health: an exit is a failed health check (the instance is marked unhealthy and
//! healed per `on_failure` after its back-off), the container running again is a passed one.
//!
//! Each engine's `die` and `start` events report those at once (one watcher per engine
//! endpoint, hosts on one engine share it, like the log collector's); a listing of each host's
//! containers at every health sync catches what events missed (a watcher re-subscribing after
//! its stream ended, an exit while no scheduler led). Both end in [`Healer::on_transition`].

use super::plan::{self, WorkerSignal};
use super::Healer;
use crate::engine::EngineRef;
use crate::error::{Error, Result};
use caas_deployer::EventKind;
use caas_types::{labels, ContainerId, InstanceId, InstanceState};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A worker container's exit or start, as its engine reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerEvent {
    /// The instance its `caas.instance` label names.
    pub instance: InstanceId,
    /// The container.
    pub container: ContainerId,
    /// What it did.
    pub signal: WorkerSignal,
}

/// The leader's engine watchers for workers, one per engine endpoint; they stop when this is
/// dropped (leadership lost).
#[derive(Debug)]
pub struct WorkerWatch {
    watchers: HashMap<String, JoinHandle<()>>,
    tx: mpsc::Sender<WorkerEvent>,
}

impl WorkerWatch {
    /// Watchers that report on `tx` (none yet: [`Healer::sync_workers`] starts them).
    pub fn new(tx: mpsc::Sender<WorkerEvent>) -> WorkerWatch {
        WorkerWatch {
            watchers: HashMap::new(),
            tx,
        }
    }
}

impl Drop for WorkerWatch {
    fn drop(&mut self) {
        for w in self.watchers.values() {
            w.abort();
        }
    }
}

impl Healer {
    /// Acts on a worker container's event (nothing for a container that is not a worker's,
    /// or not its instance's current one).
    pub async fn on_worker_event(self: &Arc<Self>, ev: WorkerEvent) -> Result<()> {
        let row = match self.store.get_instance(&ev.instance).await {
            Ok(r) => r,
            Err(Error::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let Some(kind) = plan::worker_transition(&row, &ev.container, ev.signal) else {
            return Ok(());
        };
        let cause = match ev.signal {
            WorkerSignal::Exited {
                exit_code: Some(code),
            } => format!("worker container exited with code {code}"),
            WorkerSignal::Exited { exit_code: None } => "worker container exited".to_owned(),
            WorkerSignal::Running => "worker container running again".to_owned(),
        };
        self.on_transition(kind, &ev.container, Some(&row), &cause)
            .await
    }

    /// Starts an event watcher for every engine that has none, then acts on the transitions
    /// each host's listing shows for its workers (what the events missed).
    pub async fn sync_workers(self: &Arc<Self>, watch: &mut WorkerWatch) -> Result<()> {
        let hosts = self.store.list_hosts().await?;
        let namespace = self.lifecycle.config.namespace.clone();
        watch.watchers.retain(|_, w| !w.is_finished());
        for host in &hosts {
            if watch.watchers.contains_key(&host.docker) {
                continue;
            }
            if let Ok(engine) = self.lifecycle.engines.get(&host.name, &host.docker) {
                let watcher = watch_engine(engine, namespace.clone(), watch.tx.clone());
                watch
                    .watchers
                    .insert(host.docker.clone(), tokio::spawn(watcher));
            }
        }
        let workers: Vec<_> = self
            .store
            .list_all_instances()
            .await?
            .into_iter()
            .filter(|r| {
                r.is_worker()
                    && matches!(r.state, InstanceState::Running | InstanceState::Unhealthy)
            })
            .collect();
        for host in hosts
            .iter()
            .filter(|h| workers.iter().any(|w| w.host_id == h.id))
        {
            let listed = match self.lifecycle.engines.get(&host.name, &host.docker) {
                Ok(engine) => {
                    let by = [
                        (labels::MANAGED, namespace.as_str()),
                        (labels::HOST, host.name.as_str()),
                    ];
                    engine
                        .list(&by)
                        .await
                        .map_err(|e| Error::engine(&host.name, e))
                }
                Err(e) => Err(e),
            };
            let listed = match listed {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(host = %host.name, error = %e, "cannot list the workers' containers");
                    continue;
                }
            };
            for (row, kind) in plan::worker_transitions(&workers, host.id, &listed) {
                let Some(container) = &row.container_id else {
                    continue;
                };
                let cause = "its container's state, as listed";
                if let Err(e) = self.on_transition(kind, container, Some(row), cause).await {
                    tracing::warn!(instance = %row.id, error = %e, "could not act on a worker's state");
                }
            }
        }
        Ok(())
    }
}

/// Reports the exits and starts of `namespace`'s containers on `engine` until the event stream
/// ends (the next sync watches again).
async fn watch_engine(engine: EngineRef, namespace: String, tx: mpsc::Sender<WorkerEvent>) {
    let mut events = engine.events(&[(labels::MANAGED, namespace.as_str())]);
    while let Some(Ok(event)) = events.next().await {
        let signal = match event.kind {
            EventKind::Die { exit_code } => WorkerSignal::Exited { exit_code },
            EventKind::Start => WorkerSignal::Running,
            _ => continue,
        };
        // Only instances carry the label; a job's container (none) is not ours to supervise.
        let Some(instance) = event
            .attributes
            .get(labels::INSTANCE)
            .and_then(|i| i.parse().ok())
        else {
            continue;
        };
        let ev = WorkerEvent {
            instance,
            container: event.id,
            signal,
        };
        if tx.send(ev).await.is_err() {
            return;
        }
    }
}
