//! The writer side: the platform's session that registers instances, custom domains, the
//! blacklist and wake nodes, creating every node with the digest ACL of an [`AclPolicy`].

use crate::config::{open_session, AclPolicy, ZkConfig};
use crate::error::{Error, Result};
use crate::snapshot::IpRule;
use crate::tree::{self, WakeNode};
use caas_types::{zk, AppId, ContainerId, Domain, Endpoint, Version};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::Mutex;
use zookeeper_client::{Acl, Acls, Client, CreateMode, Error as Z};

/// How many times a write retries when a concurrent prune or a session expiry gets in its way.
const ATTEMPTS: usize = 5;
/// Pause before retrying after a transient failure (connection loss, expiry), so the client
/// has a moment to reconnect instead of failing five times in a row at once.
const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// The writer side of the registry (used by the scheduler). Cheap to clone; clones share one
/// ZooKeeper session, which is replaced transparently if it expires.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: ZkConfig,
    policy: AclPolicy,
    acls: Vec<Acl>,
    /// The live session; swapped for a new one after expiry.
    client: Mutex<Client>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("connect", &self.inner.cfg.connect)
            .field("chroot", &self.inner.cfg.chroot)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// Opens the platform's session. It authenticates with `acl.writer` (and `cfg.auth`, if it
    /// names another credential) and writes every node with `acl`'s ACL.
    pub async fn connect(cfg: &ZkConfig, acl: AclPolicy) -> Result<Registry> {
        let client = Self::open(cfg, &acl).await?;
        Ok(Registry {
            inner: Arc::new(Inner {
                cfg: cfg.clone(),
                acls: acl.acls(),
                policy: acl,
                client: Mutex::new(client),
            }),
        })
    }

    async fn open(cfg: &ZkConfig, acl: &AclPolicy) -> Result<Client> {
        let mut auths = vec![&acl.writer];
        if let Some(extra) = cfg.auth.as_ref().filter(|a| **a != acl.writer) {
            auths.push(extra);
        }
        open_session(cfg, &auths).await
    }

    /// The current session, replaced by a fresh one if it has expired or been closed.
    async fn client(&self) -> Result<Client> {
        let mut guard = self.inner.client.lock().await;
        if guard.state().is_terminated() {
            tracing::warn!(state = %guard.state(), "registry session ended; reconnecting");
            *guard = Self::open(&self.inner.cfg, &self.inner.policy).await?;
        }
        Ok(guard.clone())
    }

    fn acls(&self) -> Acls<'_> {
        Acls::new(&self.inner.acls)
    }

    /// Creates the layout's fixed nodes (address root, wake root, domains root, gateway config
    /// with an empty blacklist, election parent). Idempotent.
    pub async fn ensure_layout(&self) -> Result<()> {
        let client = self.client().await?;
        let opts = CreateMode::Persistent.with_acls(self.acls());
        for dir in [
            zk::ADDRESS_ROOT,
            zk::WAKE_ROOT,
            zk::DOMAINS_ROOT,
            parent(zk::BLACKLIST),
            zk::SCHEDULER_ELECTION,
        ] {
            client
                .mkdir(dir, &opts)
                .await
                .map_err(|e| Error::zk("mkdir", dir, e))?;
        }
        match client.create(zk::BLACKLIST, b"[]", &opts).await {
            Ok(_) | Err(Z::NodeExists) => Ok(()),
            Err(e) => Err(Error::zk("create", zk::BLACKLIST, e)),
        }
    }

    /// Registers one healthy instance: a persistent node at
    /// `/caas/service/address/{app}/{version}/{container}` holding `"{ip}:{port}"`. Registering
    /// the same instance again is not an error (a changed endpoint is overwritten).
    pub async fn register(
        &self,
        app: &AppId,
        version: &Version,
        container: &ContainerId,
        endpoint: Endpoint,
    ) -> Result<()> {
        let path = zk::instance(app, version, container);
        self.put(&path, endpoint.to_string().as_bytes()).await?;
        tracing::debug!(%path, %endpoint, "registered");
        Ok(())
    }

    /// Removes one instance's node, then its version and app nodes if they became empty.
    /// Removing an instance that is not there is not an error.
    pub async fn deregister(
        &self,
        app: &AppId,
        version: &Version,
        container: &ContainerId,
    ) -> Result<()> {
        let path = zk::instance(app, version, container);
        self.delete(&path).await?;
        // Prune the version node once empty (a concurrent register that loses its parent here
        // recreates it). The app node stays: it marks a known app, which the gateway answers
        // with 503 rather than 404 while it has no instance; `remove_app` deletes it.
        self.delete_if_empty(&zk::version(app, version)).await?;
        tracing::debug!(%path, "deregistered");
        Ok(())
    }

    /// Marks `app` as known (`/caas/service/address/{app}`, no data): the gateway routes its
    /// name and answers 503 while it has no instance. Idempotent.
    pub async fn add_app(&self, app: &AppId) -> Result<()> {
        self.put(&zk::app(app), b"").await
    }

    /// Forgets `app`: deletes its node and anything left under it, and its wake node (the
    /// gateway answers 404 from then on). Idempotent.
    pub async fn remove_app(&self, app: &AppId) -> Result<()> {
        self.clear_wake(app).await?;
        let root = zk::app(app);
        let client = self.client().await?;
        let mut stack = vec![root.clone()];
        let mut order = Vec::new();
        while let Some(path) = stack.pop() {
            match client.list_children(&path).await {
                Ok(children) => stack.extend(children.into_iter().map(|c| format!("{path}/{c}"))),
                Err(Z::NoNode) => continue,
                Err(e) => return Err(Error::zk("list", &path, e)),
            }
            order.push(path);
        }
        for path in order.iter().rev() {
            self.delete(path).await?;
        }
        Ok(())
    }

    /// Marks `app` as one that may sleep (`/caas/service/wake/{app}` =
    /// `{"version": "..."}`, `version` the deployment that scales to zero): a gateway then
    /// holds a request for it while it has no address, and reports the demand, instead of
    /// answering 503.
    ///
    /// With `failing`, the node says waking the app failed and why
    /// (`{"version": "...", "failing": "<reason>"}`, the reason cut to its first 200
    /// characters): gateways then answer a request for it with 503 at once (`Retry-After: 5`,
    /// the reason in the body) instead of holding it. `None` clears a failure.
    ///
    /// Creates the node or overwrites its data; writing what is there already changes nothing.
    pub async fn set_wake(
        &self,
        app: &AppId,
        version: &Version,
        failing: Option<&str>,
    ) -> Result<()> {
        self.put(&zk::wake(app), &tree::render_wake(version, failing))
            .await
    }

    /// `app` may no longer sleep: deletes its wake node (gateways answer 503 again while it has
    /// no address). Removing one that is not there is not an error.
    pub async fn clear_wake(&self, app: &AppId) -> Result<()> {
        self.delete(&zk::wake(app)).await
    }

    /// Every app whose wake node exists, sorted, read straight from ZooKeeper; also the apps
    /// whose node's data does not parse.
    pub async fn wake_apps(&self) -> Result<Vec<AppId>> {
        Ok(self.wake_nodes().await?.into_keys().collect())
    }

    /// Every wake node with what it says (`None`: its data does not parse; logged, and
    /// gateways treat it as an app that may sleep and is not failing, while
    /// [`set_wake`](Registry::set_wake) or [`clear_wake`](Registry::clear_wake) repair it),
    /// read straight from ZooKeeper in one listing and pipelined multi-read requests (for the
    /// scheduler's reconciler and autoscaler).
    pub async fn wake_nodes(&self) -> Result<BTreeMap<AppId, Option<WakeNode>>> {
        let client = self.client().await?;
        let mut nodes = BTreeMap::new();
        for (app, path, data) in tree::read_wake(&client).await? {
            // Deleted between the listing and the read: not there.
            let Some(data) = data else { continue };
            let node = match tree::parse_wake(&path, &data) {
                Ok(node) => Some(node),
                Err(err) => {
                    tracing::warn!(error = %err, "malformed wake node");
                    None
                }
            };
            nodes.insert(app, node);
        }
        Ok(nodes)
    }

    /// Every known app (the children of the address root), read straight from ZooKeeper.
    pub async fn apps(&self) -> Result<Vec<AppId>> {
        let client = self.client().await?;
        Ok(tree::children(&client, zk::ADDRESS_ROOT)
            .await?
            .into_iter()
            .filter_map(|name| name.parse().ok())
            .collect())
    }

    /// Every registered instance, read straight from ZooKeeper (for the reconciler).
    pub async fn instances(&self) -> Result<Vec<(AppId, Version, ContainerId, Endpoint)>> {
        let client = self.client().await?;
        tree::read_instances(&client).await
    }

    /// Routes the custom domain `domain` to `app` (`/caas/domains/{domain}` = `"{app}"`).
    pub async fn set_domain(&self, domain: &Domain, app: &AppId) -> Result<()> {
        self.put(&zk::domain(domain), app.as_str().as_bytes()).await
    }

    /// Removes a custom domain; removing one that is not there is not an error.
    pub async fn remove_domain(&self, domain: &Domain) -> Result<()> {
        self.delete(&zk::domain(domain)).await
    }

    /// Replaces the gateway blacklist.
    pub async fn set_blacklist(&self, rules: &[IpRule]) -> Result<()> {
        self.put(zk::BLACKLIST, &tree::render_blacklist(rules))
            .await
    }

    /// Read-modify-write of the blacklist with ZooKeeper's version check, so two schedulers
    /// editing at once never lose each other's change: a write that lost the race re-reads and
    /// applies `f` again. Returns the rules as written.
    pub async fn update_blacklist(
        &self,
        mut f: impl FnMut(&mut Vec<IpRule>),
    ) -> Result<Vec<IpRule>> {
        for _ in 0..ATTEMPTS * 4 {
            let client = self.client().await?;
            let (mut rules, version) = match client.get_data(zk::BLACKLIST).await {
                Ok((data, stat)) => (
                    tree::parse_blacklist(zk::BLACKLIST, &data)?,
                    Some(stat.version),
                ),
                Err(Z::NoNode) => (Vec::new(), None),
                Err(e) => return Err(Error::zk("get", zk::BLACKLIST, e)),
            };
            f(&mut rules);
            let data = tree::render_blacklist(&rules);
            let written = match version {
                Some(v) => client
                    .set_data(zk::BLACKLIST, &data, Some(v))
                    .await
                    .map(|_| ()),
                None => {
                    let opts = CreateMode::Persistent.with_acls(self.acls());
                    client.create(zk::BLACKLIST, &data, &opts).await.map(|_| ())
                }
            };
            match written {
                Ok(()) => return Ok(rules),
                // Someone else wrote (or created) it first: go round with their version.
                Err(Z::BadVersion) | Err(Z::NodeExists) | Err(Z::NoNode) => continue,
                Err(e) => return Err(Error::zk("set", zk::BLACKLIST, e)),
            }
        }
        Err(Error::Malformed {
            path: zk::BLACKLIST.to_owned(),
            reason: "kept changing while being updated".into(),
        })
    }

    /// Every custom domain with its app, read straight from ZooKeeper (for the reconciler).
    pub async fn domains(&self) -> Result<Vec<(Domain, AppId)>> {
        let client = self.client().await?;
        let mut out = Vec::new();
        for name in tree::children(&client, zk::DOMAINS_ROOT).await? {
            let Ok(domain) = name.parse::<Domain>() else {
                continue;
            };
            let path = zk::domain(&domain);
            if let Some(data) = tree::data(&client, &path).await? {
                if let Ok(app) = tree::parse_domain_app(&path, &data) {
                    out.push((domain, app));
                }
            }
        }
        Ok(out)
    }

    /// The gateway blacklist as stored (empty if the node is missing).
    pub async fn blacklist(&self) -> Result<Vec<IpRule>> {
        let client = self.client().await?;
        match tree::data(&client, zk::BLACKLIST).await? {
            Some(d) => tree::parse_blacklist(zk::BLACKLIST, &d),
            None => Ok(Vec::new()),
        }
    }

    /// Creates `path` with `data`, or overwrites it if its data differs; creates missing parents.
    async fn put(&self, path: &str, data: &[u8]) -> Result<()> {
        let opts = CreateMode::Persistent.with_acls(self.acls());
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let client = self.client().await?;
            let err = match client.create(path, data, &opts).await {
                Ok(_) => return Ok(()),
                Err(Z::NodeExists) => match client.get_data(path).await {
                    Ok((current, _)) if current == data => return Ok(()),
                    Ok((_, stat)) => match client.set_data(path, data, Some(stat.version)).await {
                        Ok(_) => return Ok(()),
                        // Changed or deleted under us: go round again.
                        Err(Z::BadVersion) | Err(Z::NoNode) => continue,
                        Err(e) => Error::zk("set", path, e),
                    },
                    Err(Z::NoNode) => continue,
                    Err(e) => Error::zk("get", path, e),
                },
                Err(Z::NoNode) => {
                    let dir = parent(path);
                    match client.mkdir(dir, &opts).await {
                        Ok(()) => continue,
                        Err(e) => Error::zk("mkdir", dir, e),
                    }
                }
                Err(e) => Error::zk("create", path, e),
            };
            if !err.is_transient() {
                return Err(err);
            }
            tracing::debug!(%path, error = %err, "retrying write");
            last = Some(err);
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        Err(last.unwrap_or_else(|| Error::Malformed {
            path: path.to_owned(),
            reason: "kept changing while being written".into(),
        }))
    }

    /// Deletes `path`; a missing node is fine.
    async fn delete(&self, path: &str) -> Result<()> {
        let mut last = None;
        for _ in 0..2 {
            let client = self.client().await?;
            match client.delete(path, None).await {
                Ok(()) | Err(Z::NoNode) => return Ok(()),
                Err(e) => {
                    let err = Error::zk("delete", path, e);
                    if !err.is_transient() {
                        return Err(err);
                    }
                    last = Some(err);
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
        Err(last.unwrap_or(Error::Stopped))
    }

    /// Deletes `path` if it has no children; returns whether it is gone now.
    async fn delete_if_empty(&self, path: &str) -> Result<bool> {
        let client = self.client().await?;
        match client.delete(path, None).await {
            Ok(()) | Err(Z::NoNode) => Ok(true),
            Err(Z::NotEmpty) => Ok(false),
            Err(e) => Err(Error::zk("delete", path, e)),
        }
    }
}

/// The parent of an absolute path (`/` for top-level nodes).
pub(crate) fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}
