//! Leader election among scheduler processes: each candidate holds an ephemeral sequential node
//! under `/caas/election/scheduler`; the lowest sequence leads. Each candidate watches only its
//! predecessor (no herd effect), and leadership passes on as soon as the leader's session ends.

use crate::config::{open_session, ZkConfig};
use crate::error::{Error, Result};
use caas_types::zk;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use zookeeper_client::{Acl, AuthId, Client, CreateMode, Permission, SessionState};

/// Name prefix of candidate nodes.
const PREFIX: &str = "n-";

/// One candidate's membership in the election. Dropping it (or [`resign`](Self::resign)) ends
/// its session, which hands leadership to the next candidate.
#[derive(Debug)]
pub struct LeaderElection {
    leader: watch::Receiver<bool>,
    session: Arc<Mutex<Option<zookeeper_client::SessionInfo>>>,
    candidacy: Candidacy,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for LeaderElection {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl LeaderElection {
    /// Joins the election as `id` (stored as the candidate node's data, for operators). Returns
    /// once the candidate node exists; leadership is then reported through the handle.
    ///
    /// The session authenticates with `cfg.auth` (the platform credential), and candidate nodes
    /// are writable only by it; without a credential they are open to anyone (development only).
    /// While cut off from ZooKeeper the candidate reports itself as not leading, since another
    /// may take over if its session expires.
    pub async fn join(cfg: &ZkConfig, id: &str) -> Result<LeaderElection> {
        let client = connect(cfg).await?;
        let node = enlist(&client, cfg, id).await?;
        let (tx, leader) = watch::channel(false);
        let (stop_tx, stop_rx) = oneshot::channel();
        let session = Arc::new(Mutex::new(Some(client.session().clone())));
        let candidacy = Candidacy::default();
        candidacy.set(Some((client.clone(), node.clone())));
        let task = tokio::spawn(run(
            cfg.clone(),
            id.to_owned(),
            client,
            node,
            tx,
            stop_rx,
            session.clone(),
            candidacy.clone(),
        ));
        Ok(LeaderElection {
            leader,
            session,
            candidacy,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }

    /// Whether this candidate leads right now.
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// Waits until this candidate leads. Fails if the election task has stopped.
    pub async fn wait_leader(&self) -> Result<()> {
        let mut rx = self.leader.clone();
        rx.wait_for(|l| *l)
            .await
            .map(|_| ())
            .map_err(|_| Error::Stopped)
    }

    /// A receiver of leadership changes (`true` while leading).
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leader.clone()
    }

    /// The fence a leader's duties check before each action: see [`LeaderFence`].
    pub fn fence(&self) -> LeaderFence {
        LeaderFence {
            leader: self.leader.clone(),
            candidacy: self.candidacy.clone(),
        }
    }

    /// The candidate's current ZooKeeper session. Only for tests that force a session expiry.
    #[doc(hidden)]
    pub fn session_info(&self) -> Option<zookeeper_client::SessionInfo> {
        self.session.lock().ok().and_then(|s| s.clone())
    }

    /// Leaves the election: deletes the candidate node and closes the session.
    pub async fn resign(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// The session and candidate node this candidate campaigns with now (`None` once resigned).
#[derive(Debug, Clone, Default)]
struct Candidacy(Arc<Mutex<Option<(Client, String)>>>);

impl Candidacy {
    fn set(&self, now: Option<(Client, String)>) {
        if let Ok(mut c) = self.0.lock() {
            *c = now;
        }
    }

    fn get(&self) -> Option<(Client, String)> {
        self.0.lock().ok().and_then(|c| c.clone())
    }
}

/// A leader's check before it acts, asked of ZooKeeper rather than of the local flag alone: a
/// leader cut off from ZooKeeper, or whose session the ensemble has already expired while its
/// client has not noticed yet, must not repair anything another leader may be repairing.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct LeaderFence {
    leader: watch::Receiver<bool>,
    candidacy: Candidacy,
}

impl LeaderFence {
    /// Whether this candidate still leads: it believes so, and ZooKeeper, after a `sync` with
    /// the ensemble's leader, still holds its candidate node as the lowest. An error (the
    /// session cut off or expired) means it cannot know; callers treat it as not leading.
    pub async fn still_leads(&self) -> Result<bool> {
        if !*self.leader.borrow() {
            return Ok(false);
        }
        let Some((client, node)) = self.candidacy.get() else {
            return Ok(false);
        };
        let dir = zk::SCHEDULER_ELECTION;
        client
            .sync(dir)
            .await
            .map_err(|e| Error::zk("sync", dir, e))?;
        let children = client
            .list_children(dir)
            .await
            .map_err(|e| Error::zk("list", dir, e))?;
        let lowest = children.iter().filter_map(|c| sequence(c)).min();
        Ok(lowest.is_some() && lowest == sequence(&node) && *self.leader.borrow())
    }
}

async fn connect(cfg: &ZkConfig) -> Result<Client> {
    let auths: Vec<_> = cfg.auth.iter().collect();
    open_session(cfg, &auths).await
}

/// Creates this candidate's ephemeral sequential node; returns its name.
async fn enlist(client: &Client, cfg: &ZkConfig, id: &str) -> Result<String> {
    let acls = match &cfg.auth {
        Some(auth) => vec![Acl::new(
            Permission::ALL,
            AuthId::new("digest", &auth.digest_id()),
        )],
        None => vec![Acl::new(Permission::ALL, AuthId::anyone())],
    };
    let dir_opts = CreateMode::Persistent.with_acls(zookeeper_client::Acls::new(&acls));
    client
        .mkdir(zk::SCHEDULER_ELECTION, &dir_opts)
        .await
        .map_err(|e| Error::zk("mkdir", zk::SCHEDULER_ELECTION, e))?;
    let prefix = format!("{}/{PREFIX}", zk::SCHEDULER_ELECTION);
    let opts = CreateMode::EphemeralSequential.with_acls(zookeeper_client::Acls::new(&acls));
    let (_, seq) = client
        .create(&prefix, id.as_bytes(), &opts)
        .await
        .map_err(|e| Error::zk("create", &prefix, e))?;
    Ok(format!("{PREFIX}{seq}"))
}

/// The sequence number of a candidate node name.
fn sequence(name: &str) -> Option<i64> {
    name.strip_prefix(PREFIX)?.parse().ok()
}

enum Outcome {
    /// The session ended: start a new one.
    SessionEnded,
    /// Our node vanished: enlist again in the same session.
    NodeLost,
    /// Resigned.
    Stop,
}

#[allow(clippy::too_many_arguments)]
async fn run(
    cfg: ZkConfig,
    id: String,
    mut client: Client,
    mut node: String,
    tx: watch::Sender<bool>,
    mut stop: oneshot::Receiver<()>,
    session: Arc<Mutex<Option<zookeeper_client::SessionInfo>>>,
    candidacy: Candidacy,
) {
    loop {
        candidacy.set(Some((client.clone(), node.clone())));
        let outcome = campaign(&client, &node, &tx, &mut stop).await;
        tx.send_replace(false);
        match outcome {
            Outcome::Stop => {
                candidacy.set(None);
                let path = format!("{}/{node}", zk::SCHEDULER_ELECTION);
                if let Err(e) = client.delete(&path, None).await {
                    tracing::debug!(%path, error = %e, "could not delete candidate node");
                }
                return;
            }
            Outcome::NodeLost => {}
            Outcome::SessionEnded => {
                tracing::warn!(%id, "election session ended; rejoining");
                let mut backoff = Duration::from_millis(50);
                client = loop {
                    tokio::select! {
                        _ = &mut stop => return,
                        res = connect(&cfg) => match res {
                            Ok(c) => {
                                if let Ok(mut s) = session.lock() {
                                    *s = Some(c.session().clone());
                                }
                                break c;
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "election reconnect failed");
                                tokio::time::sleep(backoff).await;
                                backoff = (backoff * 2).min(Duration::from_secs(2));
                            }
                        }
                    }
                };
            }
        }
        node = loop {
            match enlist(&client, &cfg, &id).await {
                Ok(n) => break n,
                Err(e) => {
                    tracing::warn!(error = %e, "election enlist failed");
                    if client.state().is_terminated() {
                        match connect(&cfg).await {
                            Ok(c) => {
                                if let Ok(mut s) = session.lock() {
                                    *s = Some(c.session().clone());
                                }
                                client = c;
                            }
                            Err(e) => tracing::warn!(error = %e, "election reconnect failed"),
                        }
                    }
                    tokio::select! {
                        _ = &mut stop => return,
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                }
            }
        };
    }
}

/// Runs one candidacy: lead while lowest, otherwise watch the predecessor.
async fn campaign(
    client: &Client,
    node: &str,
    tx: &watch::Sender<bool>,
    stop: &mut oneshot::Receiver<()>,
) -> Outcome {
    let mut states = client.state_watcher();
    let Some(mine) = sequence(node) else {
        return Outcome::NodeLost;
    };
    loop {
        if client.state().is_terminated() {
            return Outcome::SessionEnded;
        }
        let children = match client.list_children(zk::SCHEDULER_ELECTION).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "election list failed");
                tx.send_replace(false);
                // Wait for the session to change (reconnect or expire), then look again.
                tokio::select! {
                    _ = &mut *stop => return Outcome::Stop,
                    state = states.changed() => if state.is_terminated() { return Outcome::SessionEnded },
                }
                continue;
            }
        };
        let mut seqs: Vec<(i64, &String)> = children
            .iter()
            .filter_map(|c| sequence(c).map(|s| (s, c)))
            .collect();
        seqs.sort();
        if !seqs.iter().any(|(s, _)| *s == mine) {
            return Outcome::NodeLost;
        }
        let predecessor = seqs
            .iter()
            .rev()
            .find(|(s, _)| *s < mine)
            .map(|(_, n)| (*n).clone());
        match predecessor {
            None => {
                // Watch our own node while leading: if it goes (deleted by an operator, or by
                // the ensemble while our client has not heard of the expiry yet), step down.
                let own = format!("{}/{node}", zk::SCHEDULER_ELECTION);
                let watcher = match client.check_and_watch_stat(&own).await {
                    Ok((Some(_), watcher)) => Some(watcher),
                    Ok((None, _)) => return Outcome::NodeLost,
                    Err(e) => {
                        tracing::warn!(error = %e, "election watch of our node failed");
                        None
                    }
                };
                if !*tx.borrow() {
                    tracing::info!(%node, "became leader");
                }
                tx.send_replace(true);
                let own_changed = async move {
                    match watcher {
                        Some(w) => {
                            w.changed().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    _ = &mut *stop => return Outcome::Stop,
                    _ = own_changed => {}
                    state = states.changed() => match state {
                        // Cannot be sure we still lead while cut off: step down until back.
                        SessionState::Disconnected => { tx.send_replace(false); }
                        s if s.is_terminated() => return Outcome::SessionEnded,
                        _ => {}
                    },
                }
            }
            Some(pred) => {
                tx.send_replace(false);
                let path = format!("{}/{pred}", zk::SCHEDULER_ELECTION);
                match client.check_and_watch_stat(&path).await {
                    Ok((None, _)) => continue,
                    Ok((Some(_), watcher)) => {
                        tokio::select! {
                            _ = &mut *stop => return Outcome::Stop,
                            _ = watcher.changed() => {}
                            state = states.changed() => if state.is_terminated() { return Outcome::SessionEnded },
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "election watch failed");
                        tokio::select! {
                            _ = &mut *stop => return Outcome::Stop,
                            state = states.changed() => if state.is_terminated() { return Outcome::SessionEnded },
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_parse_from_node_names() {
        assert_eq!(sequence("n-0000000042"), Some(42));
        assert_eq!(sequence("x-1"), None);
    }
}
