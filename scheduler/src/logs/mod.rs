//! App logs: the leader's [`LogCollector`] follows every instance's container on every host and
//! stores its lines in MariaDB (`app_log_chunks`), so lines outlive their containers and a scheduler
//! restart; [`LogFeed`] reads them back for `GET /v1/apps/{app}/logs`, from any scheduler.
//!
//! Who collects: the leader, from `LeaderDuties`, so each container has one follower. A line is
//! stored once even across a change of leader: a follower resumes its container after the last
//! stored timestamp of its instance, and the table's unique (instance, timestamp, stream) key
//! drops what an old leader and a new one both read in the moment they overlap.
//!
//! A container is followed from its first line: each engine's start events (one watcher per
//! engine endpoint) report new containers at once, and a pass over the instance rows every
//! [`SYNC`] catches the rest (containers started while no scheduler led, a lost event stream).
//!
//! The path of a line: the engine's log file (`json-file`, rotated; the buffer while anything
//! downstream is slow) → one follower per container (`caas_deployer::Deployer::logs`, pulled,
//! so it reads only as fast as lines are taken) → a bounded channel → one writer that commits
//! what came during each [`FLUSH`] (up to [`crate::store::MAX_INSERT_BYTES`]) in one statement,
//! as one chunk per instance → the table, which the trimmer cuts back to each app's newest
//! `--logs-keep-lines` lines every [`TRIM_EVERY`]. A chunk per instance and flush, rather than
//! a row per line, is what lets one writer keep up with tens of thousands of lines a second:
//! a commit costs a few rows whatever the rate.
//! After each commit the writer publishes what it stored, with the chunk ids, on
//! `ControlPlane::logs_live`: follows in this process take their lines from there at once,
//! without reading the table; follows on other schedulers find the lines at their next poll.
//! Memory is bounded everywhere: [`CHANNEL_LINES`] lines of 16 KiB at most, one batch, and one
//! partial line per stream and follower.

mod feed;
pub mod plan;
pub mod query;

pub use feed::LogFeed;
pub use query::LogQuery;

use crate::config::Config;
use crate::engine::{EngineRef, Engines};
use crate::store::{NewLogLine, Store, StoredBatch, MAX_INSERT_BYTES};
use caas_deployer::EventKind;
use caas_types::{labels, AppId, InstanceId, Timestamp};
use futures::StreamExt;
use plan::Source;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

/// How often the collector reads the instance rows for containers to follow that it has not
/// heard of (it hears of most at once, from each engine's start events) and for engines to
/// watch.
pub const SYNC: Duration = Duration::from_secs(1);
/// Longest time a line waits in the writer's batch before it is committed: short, since a
/// commit of chunks costs little whatever it holds, and every follow waits for it.
pub const FLUSH: Duration = Duration::from_millis(10);
/// How often apps that received lines are trimmed back to their ring size.
pub const TRIM_EVERY: Duration = Duration::from_secs(5);
/// Lines between the followers and the writer; a full channel pauses the followers.
pub const CHANNEL_LINES: usize = 8_192;
/// Commits kept for follows that fall behind on `ControlPlane::logs_live` (about 2.5 s of
/// flushes); one further behind reads the table instead.
pub const LIVE_BATCHES: usize = 256;
/// Chunks deleted per trimming statement.
const TRIM_BATCH: u32 = 1_000;
/// Attempts at one batch before it is dropped (with an error in the log).
const WRITE_ATTEMPTS: u32 = 5;

/// Follows every instance's container and stores its lines (the leader runs it).
#[derive(Debug)]
pub struct LogCollector {
    store: Store,
    engines: Arc<Engines>,
    keep_lines: u32,
    /// The `caas.managed` label value of our containers, whose start events are watched.
    namespace: String,
    /// Each commit's chunks, for this process's log follows.
    live: broadcast::Sender<Arc<StoredBatch>>,
}

/// The running collector's tasks.
#[derive(Default)]
struct Tasks {
    /// One per followed instance; a finished one is let go at the next sync.
    followers: HashMap<InstanceId, JoinHandle<()>>,
    /// One start-event watcher per engine endpoint (hosts on one engine share it).
    watchers: HashMap<String, JoinHandle<()>>,
}

impl LogCollector {
    /// A collector over `store` and `engines` with `config`'s ring size and namespace that
    /// publishes each commit on `live`.
    pub fn new(
        store: Store,
        engines: Arc<Engines>,
        config: &Config,
        live: broadcast::Sender<Arc<StoredBatch>>,
    ) -> LogCollector {
        LogCollector {
            store,
            engines,
            keep_lines: config.logs_keep_lines,
            namespace: config.namespace.clone(),
            live,
        }
    }

    /// Collects until `until` completes (leadership lost or shutdown), then stops every
    /// follower and commits what they had read.
    pub async fn run(self: Arc<Self>, until: impl Future<Output = ()> + Send) {
        let (tx, rx) = mpsc::channel::<NewLogLine>(CHANNEL_LINES);
        let dirty: Arc<Mutex<HashSet<AppId>>> = Arc::default();
        // After a restart or a change of `--logs-keep-lines`, every ring is checked once.
        match self.store.apps_with_logs().await {
            Ok(apps) => lock(&dirty).extend(apps),
            Err(e) => tracing::warn!(error = %e, "could not list apps with logs"),
        }
        // Ids of one insert are consecutive only with a step of 1 (the default); otherwise
        // follows read the table.
        let step = match self.store.id_step().await {
            Ok(step) => step,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the id step; follows read the table");
                0
            }
        };
        let writer = tokio::spawn(write(
            self.store.clone(),
            rx,
            dirty.clone(),
            self.live.clone(),
            step,
        ));
        let (found_tx, mut found) = mpsc::channel::<(Source, EngineRef)>(256);
        let mut tasks = Tasks::default();
        let mut sync = tokio::time::interval(SYNC);
        let mut trim = tokio::time::interval(TRIM_EVERY);
        tokio::pin!(until);
        loop {
            tokio::select! {
                _ = &mut until => break,
                Some((source, engine)) = found.recv() => {
                    start(&self.store, &mut tasks.followers, source, engine, &tx);
                }
                _ = sync.tick() => self.sync(&mut tasks, &tx, &found_tx).await,
                _ = trim.tick() => self.trim(&dirty).await,
            }
        }
        let followers = tasks.followers.into_values();
        for t in followers.chain(tasks.watchers.into_values()) {
            t.abort();
            let _ = t.await;
        }
        // The writer ends once every sender is gone, after committing its last batch.
        drop(tx);
        let _ = writer.await;
    }

    /// Watches every engine that has none, and starts a follower for every instance with a
    /// container that has none.
    async fn sync(
        &self,
        tasks: &mut Tasks,
        tx: &mpsc::Sender<NewLogLine>,
        found: &mpsc::Sender<(Source, EngineRef)>,
    ) {
        tasks.followers.retain(|_, f| !f.is_finished());
        tasks.watchers.retain(|_, w| !w.is_finished());
        let (instances, hosts) = match (
            self.store.list_all_instances().await,
            self.store.list_hosts().await,
        ) {
            (Ok(i), Ok(h)) => (i, h),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "log collector could not read instances");
                return;
            }
        };
        for host in &hosts {
            if tasks.watchers.contains_key(&host.docker) {
                continue;
            }
            if let Ok(engine) = self.engines.get(&host.name, &host.docker) {
                let watcher = watch(engine, self.namespace.clone(), found.clone());
                tasks
                    .watchers
                    .insert(host.docker.clone(), tokio::spawn(watcher));
            }
        }
        let urls: HashMap<_, _> = hosts.iter().map(|h| (h.name.clone(), &h.docker)).collect();
        let followed: HashSet<InstanceId> = tasks.followers.keys().cloned().collect();
        for (instance, container) in plan::to_follow(&instances, &followed) {
            let Some(url) = urls.get(&instance.host) else {
                continue;
            };
            let engine = match self.engines.get(&instance.host, url) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(host = %instance.host, error = %e, "no engine to follow logs on");
                    continue;
                }
            };
            let source = Source::of_row(instance, container);
            start(&self.store, &mut tasks.followers, source, engine, tx);
        }
    }

    /// Cuts every app that received lines back to its newest `keep_lines`.
    async fn trim(&self, dirty: &Mutex<HashSet<AppId>>) {
        let apps: Vec<AppId> = lock(dirty).drain().collect();
        for app in apps {
            let result = async {
                if plan::over_ring(self.store.count_log_lines(&app).await?, self.keep_lines) {
                    let n = self
                        .store
                        .trim_logs(&app, self.keep_lines, TRIM_BATCH)
                        .await?;
                    tracing::debug!(app = %app, deleted = n, "log ring trimmed");
                }
                Ok::<_, crate::Error>(())
            }
            .await;
            if let Err(e) = result {
                tracing::warn!(app = %app, error = %e, "could not trim logs");
                lock(dirty).insert(app);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts following `source` unless its instance has a live follower.
fn start(
    store: &Store,
    followers: &mut HashMap<InstanceId, JoinHandle<()>>,
    source: Source,
    engine: EngineRef,
    tx: &mpsc::Sender<NewLogLine>,
) {
    if followers
        .get(&source.instance)
        .is_some_and(|f| !f.is_finished())
    {
        return;
    }
    let instance = source.instance.clone();
    let task = follow(store.clone(), engine, source, tx.clone());
    followers.insert(instance, tokio::spawn(task));
}

/// Reports every container of `namespace` that starts on `engine` (a new instance, or one
/// restarted in place), so it is followed from its first line; ends with the event stream
/// (the next sync watches again).
async fn watch(engine: EngineRef, namespace: String, found: mpsc::Sender<(Source, EngineRef)>) {
    let mut events = engine.events(&[(labels::MANAGED, namespace.as_str())]);
    while let Some(Ok(event)) = events.next().await {
        if event.kind != EventKind::Start {
            continue;
        }
        if let Some(source) = Source::of_event(&event) {
            if found.send((source, engine.clone())).await.is_err() {
                return;
            }
        }
    }
}

/// Follows one container from after its instance's last stored line until the container
/// stops (or is gone), handing lines to the writer.
async fn follow(store: Store, engine: EngineRef, source: Source, tx: mpsc::Sender<NewLogLine>) {
    let Source {
        app,
        version,
        instance,
        container,
    } = source;
    let last = match store.last_log_ts(&instance).await {
        Ok(t) => t,
        Err(e) => {
            // The next sync tries again.
            tracing::warn!(instance = %instance, error = %e, "cannot resume logs");
            return;
        }
    };
    let since = last.map(|t| Timestamp::from_nanos(t.as_nanos().saturating_add(1)));
    tracing::debug!(instance = %instance, since = ?since, "following logs");
    let mut lines = engine.logs(&container, since, true);
    while let Some(item) = lines.next().await {
        match item {
            Ok(l) => {
                let line = NewLogLine {
                    app: app.clone(),
                    instance: instance.clone(),
                    version: version.clone(),
                    stream: l.stream,
                    ts: l.ts,
                    line: l.line,
                };
                if tx.send(line).await.is_err() {
                    return;
                }
            }
            Err(caas_deployer::Error::ContainerNotFound(_)) => return,
            Err(e) => {
                tracing::debug!(instance = %instance, error = %e, "log follow ended");
                return;
            }
        }
    }
}

/// The one writer: commits lines in batches, in the order they came, so chunk ids grow in
/// commit order (what a follow of the API relies on).
async fn write(
    store: Store,
    mut rx: mpsc::Receiver<NewLogLine>,
    dirty: Arc<Mutex<HashSet<AppId>>>,
    live: broadcast::Sender<Arc<StoredBatch>>,
    step: i64,
) {
    let mut batch: Vec<NewLogLine> = Vec::with_capacity(CHANNEL_LINES);
    loop {
        let open = fill(&mut rx, &mut batch).await;
        if !batch.is_empty() {
            lock(&dirty).extend(batch.iter().map(|l| l.app.clone()));
            // The lines are copied for the follows only while there is one.
            let stored = commit(&store, &batch, step, live.receiver_count() > 0).await;
            // No follow listening is no error.
            let _ = live.send(Arc::new(stored));
            batch.clear();
        }
        if !open {
            return;
        }
    }
}

/// Waits for a first line, lets [`FLUSH`] pass, then takes what came meanwhile (up to
/// [`MAX_INSERT_BYTES`]). Not reading during the wait spares a wake-up per line: at 20,000
/// lines/s, waking the writer for each one cost more CPU than storing them. False once the
/// channel is closed and empty.
async fn fill(rx: &mut mpsc::Receiver<NewLogLine>, batch: &mut Vec<NewLogLine>) -> bool {
    let Some(first) = rx.recv().await else {
        return false;
    };
    let mut bytes = first.line.len();
    batch.push(first);
    tokio::time::sleep(FLUSH).await;
    // Lines are 16 KiB at most: the cap is overshot by one line, far below the server's
    // 16 MiB packet.
    while bytes < MAX_INSERT_BYTES {
        match rx.try_recv() {
            Ok(line) => {
                bytes += line.line.len();
                batch.push(line);
            }
            Err(mpsc::error::TryRecvError::Empty) => break,
            Err(mpsc::error::TryRecvError::Disconnected) => return false,
        }
    }
    true
}

/// Stores `batch`, retrying; what was stored (an unknown batch after the last failure, so
/// follows read the table).
async fn commit(store: &Store, batch: &[NewLogLine], step: i64, with_lines: bool) -> StoredBatch {
    let mut wait = Duration::from_millis(100);
    for attempt in 1..=WRITE_ATTEMPTS {
        match store.store_log_batch(batch, step, with_lines).await {
            Ok(stored) => return stored,
            Err(e) if attempt < WRITE_ATTEMPTS => {
                tracing::warn!(error = %e, attempt, "storing log lines failed; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                tracing::error!(error = %e, lines = batch.len(), "log lines dropped");
            }
        }
    }
    StoredBatch { chunks: None }
}
