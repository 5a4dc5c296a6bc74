//! The reader side: the route cache a gateway keeps of the whole routing tree, fed by one
//! persistent recursive ZooKeeper watch on `/caas` and published as immutable snapshots behind
//! an atomic pointer.
//!
//! Architecture invariant: the watch is armed *before* the full read, so every change after the
//! read is seen as an event. After a reconnection (where ZooKeeper may drop events,
//! ZOOKEEPER-4698, and does not reliably restore the persistent watch) and after session expiry
//! the cache opens a fresh session, re-arms the watch and re-reads everything instead of
//! replaying. While disconnected the last snapshot keeps being served.

use crate::config::{open_session, ZkConfig};
use crate::error::{Error, Result};
use crate::snapshot::RouteSnapshot;
use crate::tree::{self, Node, Tree};
use arc_swap::ArcSwap;
use caas_types::{zk, AppId};
use futures::FutureExt as _;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use zookeeper_client::{
    AddWatchMode, Client, EventType, PersistentWatcher, SessionState, WatchedEvent,
};

/// Most events applied in one batch before a snapshot is published.
const MAX_BATCH: usize = 4096;

/// The gateway's view of the routing tree. Cheap to clone; all clones share one background task,
/// which stops when the last clone is dropped.
#[derive(Clone)]
pub struct RouteCache {
    state: Arc<State>,
    _task: Arc<AbortOnDrop>,
}

impl std::fmt::Debug for RouteCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteCache")
            .field("generation", &self.state.current.load().generation)
            .field("connected", &self.is_connected())
            .finish()
    }
}

/// What the background task and the handles share.
struct State {
    current: ArcSwap<RouteSnapshot>,
    tx: watch::Sender<Arc<RouteSnapshot>>,
    connected: AtomicBool,
    /// The live session, for tests that force its expiry.
    session: Mutex<Option<zookeeper_client::SessionInfo>>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl RouteCache {
    /// Connects with `cfg` (normally the read-only credential), reads the whole tree, then keeps
    /// it current from a background task. Fails only if the first connection or read fails.
    pub async fn start(cfg: &ZkConfig) -> Result<RouteCache> {
        let (client, watcher, tree) = load(cfg).await?;
        let publisher = Publisher::new(&tree);
        let first = publisher.current.clone();
        let (tx, _) = watch::channel(first.clone());
        let state = Arc::new(State {
            current: ArcSwap::new(first),
            tx,
            connected: AtomicBool::new(true),
            session: Mutex::new(Some(client.session().clone())),
        });
        let task = tokio::spawn(run(
            cfg.clone(),
            state.clone(),
            client,
            watcher,
            tree,
            publisher,
        ));
        Ok(RouteCache {
            state,
            _task: Arc::new(AbortOnDrop(task)),
        })
    }

    /// The current snapshot: one atomic load, no lock. Hold the `Arc` for as long as one
    /// request needs a consistent view.
    pub fn snapshot(&self) -> Arc<RouteSnapshot> {
        self.state.current.load_full()
    }

    /// A receiver that is notified with each new snapshot.
    pub fn subscribe(&self) -> watch::Receiver<Arc<RouteSnapshot>> {
        self.state.tx.subscribe()
    }

    /// Whether the cache's session is connected right now (if not, it serves the last snapshot).
    pub fn is_connected(&self) -> bool {
        self.state.connected.load(Ordering::Acquire)
    }

    /// The current ZooKeeper session (id and password). Only for tests that force a session
    /// expiry by closing the session from a second client.
    #[doc(hidden)]
    pub fn session_info(&self) -> Option<zookeeper_client::SessionInfo> {
        self.state.session.lock().ok().and_then(|s| s.clone())
    }
}

/// Connects, arms the recursive watch, then reads everything.
async fn load(cfg: &ZkConfig) -> Result<(Client, PersistentWatcher, Tree)> {
    let auths: Vec<_> = cfg.auth.iter().collect();
    let client = open_session(cfg, &auths).await?;
    let watcher = client
        .watch(zk::ROOT, AddWatchMode::PersistentRecursive)
        .await
        .map_err(|e| Error::zk("watch", zk::ROOT, e))?;
    let tree = tree::read_tree(&client).await?;
    Ok((client, watcher, tree))
}

/// The background task: serve one session until it ends, then reconnect and re-read.
async fn run(
    cfg: ZkConfig,
    state: Arc<State>,
    mut client: Client,
    mut watcher: PersistentWatcher,
    mut tree: Tree,
    mut publisher: Publisher,
) {
    loop {
        serve_session(&client, &mut watcher, &mut tree, &mut publisher, &state).await;
        state.connected.store(false, Ordering::Release);
        tracing::warn!("route cache session interrupted; reconnecting (serving the last snapshot)");
        let mut backoff = Duration::from_millis(50);
        loop {
            match load(&cfg).await {
                Ok((c, w, t)) => {
                    client = c;
                    watcher = w;
                    tree = t;
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "route cache reconnect failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
        if let Ok(mut s) = state.session.lock() {
            *s = Some(client.session().clone());
        }
        publisher.replace_all();
        publisher.publish(&tree, &state);
        state.connected.store(true, Ordering::Release);
        tracing::info!("route cache reconnected and re-read the tree");
    }
}

/// Applies events of one session until it ends (expired, closed, auth failed) or comes back
/// from a disconnect, after which the caller starts over on a fresh session.
async fn serve_session(
    client: &Client,
    watcher: &mut PersistentWatcher,
    tree: &mut Tree,
    publisher: &mut Publisher,
    state: &State,
) {
    loop {
        let first = watcher.changed().await;
        let mut batch = vec![first];
        // Take whatever else is already queued so a burst becomes one snapshot; stop at a
        // session event, after which the watcher must not be polled blindly.
        while batch.len() < MAX_BATCH
            && batch
                .last()
                .is_some_and(|e| e.event_type != EventType::Session)
        {
            match watcher.changed().now_or_never() {
                Some(ev) => batch.push(ev),
                None => break,
            }
        }
        let session_event = batch
            .last()
            .filter(|e| e.event_type == EventType::Session)
            .map(|e| e.session_state);
        let nodes: Vec<WatchedEvent> = batch
            .into_iter()
            .filter(|e| e.event_type != EventType::Session)
            .collect();
        if !nodes.is_empty() {
            apply(client, &nodes, tree, publisher).await;
            publisher.publish(tree, state);
        }
        match session_event {
            None => {}
            Some(SessionState::Disconnected) => {
                state.connected.store(false, Ordering::Release);
                tracing::warn!("route cache disconnected; serving the last snapshot");
            }
            Some(SessionState::SyncConnected) | Some(SessionState::ConnectedReadOnly) => {
                // Back after a disconnect. Events may have been lost meanwhile (ZOOKEEPER-4698)
                // and the persistent watch is not reliably re-armed by the automatic watch
                // reset (seen with ZooKeeper 3.8: no events after a server restart). So start
                // over on a fresh session: new watch first, then a full re-read.
                tracing::info!("route cache reconnected; re-arming its watch on a fresh session");
                return;
            }
            Some(_) => return,
        }
    }
}

/// Applies node events in order. Data reads for the whole batch are pipelined; each read
/// returns the node's data as of after the event, so applying in order converges on the
/// latest state.
async fn apply(
    client: &Client,
    events: &[WatchedEvent],
    tree: &mut Tree,
    publisher: &mut Publisher,
) {
    let reads = futures::future::join_all(events.iter().map(|ev| {
        let wants_data = matches!(
            ev.event_type,
            EventType::NodeCreated | EventType::NodeDataChanged
        ) && matches!(
            Node::classify(&ev.path),
            Node::Instance(..) | Node::Domain(_) | Node::Wake(_) | Node::Blacklist
        );
        async move {
            if wants_data {
                tree::data(client, &ev.path).await.map(Some)
            } else {
                Ok(None)
            }
        }
    }))
    .await;
    for (ev, read) in events.iter().zip(reads) {
        let deleted = ev.event_type == EventType::NodeDeleted;
        let data = match read {
            Ok(d) => d.flatten(),
            Err(e) => {
                // A lost connection is followed by a full re-read; nothing to do here.
                tracing::warn!(path = %ev.path, error = %e, "route cache read failed");
                continue;
            }
        };
        match Node::classify(&ev.path) {
            Node::Instance(a, v, c) => {
                let parsed = data.and_then(|d| match tree::parse_endpoint(&ev.path, &d) {
                    Ok(e) => Some(e),
                    Err(err) => {
                        tracing::warn!(error = %err, "ignoring malformed address node");
                        None
                    }
                });
                let changed = match (deleted, parsed) {
                    (false, Some(e)) => tree.put_instance(a.clone(), v, c, e),
                    _ => tree.remove_instance(&a, &v, &c),
                };
                if changed {
                    publisher.dirty_app(a);
                }
            }
            Node::Version(a, v) if deleted && tree.remove_version(&a, &v) => {
                publisher.dirty_app(a);
            }
            Node::App(a) if deleted && tree.apps.remove(&a).is_some() => {
                publisher.dirty_app(a);
            }
            Node::App(a) if !deleted && !tree.apps.contains_key(&a) => {
                tree.apps.insert(a.clone(), Default::default());
                publisher.dirty_app(a);
            }
            Node::Domain(d) => {
                let app = data.and_then(|x| tree::parse_domain_app(&ev.path, &x).ok());
                match (deleted, app) {
                    (false, Some(app)) => {
                        tree.domains.insert(d, app);
                    }
                    _ => {
                        tree.domains.remove(&d);
                    }
                }
                publisher.changes.domains = true;
            }
            Node::Wake(a) => {
                // Gone by the time it was read: its deletion event follows.
                let state = match (deleted, data) {
                    (false, Some(d)) => Some(tree::wake_state(&ev.path, &d)),
                    _ => None,
                };
                let changed = match state {
                    Some(s) if tree.wake.get(&a) != Some(&s) => {
                        tree.wake.insert(a, s);
                        true
                    }
                    Some(_) => false,
                    None => tree.wake.remove(&a).is_some(),
                };
                publisher.changes.wake |= changed;
            }
            Node::Blacklist => {
                tree.blacklist = match (deleted, data) {
                    (false, Some(d)) => tree::parse_blacklist(&ev.path, &d).unwrap_or_else(|err| {
                        tracing::warn!(error = %err, "ignoring malformed blacklist");
                        Vec::new()
                    }),
                    _ => Vec::new(),
                };
                publisher.changes.blacklist = true;
            }
            Node::Ancestor(path) if deleted => {
                let under = |deep: &str| deep == path || deep.starts_with(&format!("{path}/"));
                if under(zk::ADDRESS_ROOT) {
                    publisher
                        .changes
                        .apps
                        .extend(tree.apps.drain().map(|(a, _)| a));
                }
                if under(zk::DOMAINS_ROOT) {
                    tree.domains.clear();
                    publisher.changes.domains = true;
                }
                if under(zk::BLACKLIST) {
                    tree.blacklist.clear();
                    publisher.changes.blacklist = true;
                }
                if under(zk::WAKE_ROOT) {
                    tree.wake.clear();
                    publisher.changes.wake = true;
                }
            }
            _ => {}
        }
    }
}

/// Turns tree changes into snapshots, touching only the apps that changed.
///
/// Cloning a 10,000-instance snapshot per change would make every change O(tree). Instead the
/// publisher recycles the snapshot published two generations ago once no reader holds it any
/// more (`Arc::try_unwrap`), bringing it up to date with the apps changed since; only if a
/// reader still holds it does it fall back to cloning the current one.
struct Publisher {
    /// The last published snapshot.
    current: Arc<RouteSnapshot>,
    /// The one published before it, and what changed between the two.
    spare: Option<Arc<RouteSnapshot>>,
    spare_changes: Changes,
    /// What changed in the tree since `current`.
    changes: Changes,
}

/// What a snapshot must refresh from the tree.
#[derive(Default)]
struct Changes {
    apps: HashSet<AppId>,
    domains: bool,
    blacklist: bool,
    wake: bool,
    /// Everything (after a full re-read).
    all: bool,
}

impl Changes {
    fn is_empty(&self) -> bool {
        self.apps.is_empty() && !self.domains && !self.blacklist && !self.wake && !self.all
    }

    /// Brings `snap` up to date with `tree` for everything listed here.
    fn refresh(&self, snap: &mut RouteSnapshot, tree: &Tree) {
        if self.all {
            let generation = snap.generation;
            *snap = tree.to_snapshot(generation);
            return;
        }
        for app in &self.apps {
            if tree.apps.contains_key(app) {
                snap.apps.insert(app.clone(), tree.entries(app));
            } else {
                snap.apps.remove(app);
            }
        }
        if self.domains {
            snap.domains = tree.domains.clone();
        }
        if self.blacklist {
            snap.blacklist = tree.blacklist.clone();
        }
        if self.wake {
            snap.wake = tree.wake.clone();
        }
    }
}

impl Publisher {
    fn new(tree: &Tree) -> Publisher {
        Publisher {
            current: Arc::new(tree.to_snapshot(1)),
            spare: None,
            spare_changes: Changes::default(),
            changes: Changes::default(),
        }
    }

    fn dirty_app(&mut self, app: AppId) {
        self.changes.apps.insert(app);
    }

    /// Marks everything for rebuild (after a full re-read); published even if nothing differs,
    /// so subscribers see the re-read happened.
    fn replace_all(&mut self) {
        self.changes.all = true;
    }

    /// Publishes a new snapshot if anything changed since the last one.
    fn publish(&mut self, tree: &Tree, state: &State) {
        if self.changes.is_empty() {
            return;
        }
        let recycled = self
            .spare
            .take()
            .and_then(|spare| Arc::try_unwrap(spare).ok());
        let mut next = match recycled {
            Some(mut old) => {
                self.spare_changes.refresh(&mut old, tree);
                old
            }
            None => (*self.current).clone(),
        };
        self.changes.refresh(&mut next, tree);
        next.generation = self.current.generation + 1;
        let next = Arc::new(next);
        state.current.store(next.clone());
        state.tx.send_replace(next.clone());
        self.spare = Some(std::mem::replace(&mut self.current, next));
        self.spare_changes = std::mem::take(&mut self.changes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::WakeState;
    use caas_types::{ContainerId, Endpoint, Version};

    fn state(first: Arc<RouteSnapshot>) -> State {
        State {
            current: ArcSwap::new(first.clone()),
            tx: watch::channel(first).0,
            connected: AtomicBool::new(true),
            session: Mutex::new(None),
        }
    }

    #[test]
    fn recycled_and_cloned_snapshots_both_match_the_tree() {
        let mut tree = Tree::default();
        let mut publisher = Publisher::new(&tree);
        let state = state(publisher.current.clone());
        let v: Version = "v1".parse().expect("version");
        let mut held = Vec::new();
        let mut saw_failing = false;
        for i in 0..40u16 {
            let app: AppId = format!("app{}", i % 5).parse().expect("app");
            let c: ContainerId = format!("{:012x}", i % 7 + 1).parse().expect("container");
            if i % 4 == 3 {
                tree.remove_instance(&app, &v, &c);
            } else {
                let e: Endpoint = format!("127.0.0.2:{}", 1000 + i).parse().expect("endpoint");
                tree.put_instance(app.clone(), v.clone(), c, e);
            }
            publisher.dirty_app(app);
            if i % 6 == 0 {
                tree.domains.insert(
                    format!("d{i}.example.com").parse().expect("domain"),
                    "app1".parse().expect("app"),
                );
                publisher.changes.domains = true;
            }
            if i % 7 == 0 {
                let sleeper: AppId = format!("app{}", i % 3).parse().expect("app");
                if tree.wake.remove(&sleeper).is_none() {
                    tree.wake.insert(sleeper, WakeState::default());
                }
                publisher.changes.wake = true;
            }
            if i % 11 == 0 {
                // A failure written, then cleared, on a wake node.
                let sleeper: AppId = "app1".parse().expect("app");
                let failing = match tree.wake.get(&sleeper) {
                    Some(WakeState { failing: None }) => Some(Arc::from(format!("failed {i}"))),
                    _ => None,
                };
                tree.wake.insert(sleeper, WakeState { failing });
                publisher.changes.wake = true;
            }
            if i % 9 == 0 {
                publisher.replace_all();
            }
            publisher.publish(&tree, &state);
            let snap = state.current.load_full();
            let want = tree.to_snapshot(snap.generation);
            assert_eq!(*snap, want, "after change {i}");
            assert_eq!(snap.generation, u64::from(i) + 2);
            saw_failing |= snap.wake.values().any(|w| w.failing.is_some());
            // Sometimes a reader keeps an old snapshot, forcing the clone path.
            if i % 5 == 0 {
                held.push(snap);
            }
        }
        assert!(saw_failing, "some snapshot had a failing wake node");
    }
}
