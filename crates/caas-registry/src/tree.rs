//! The layout as data: which node a path names, how each node's data parses, and the full read
//! of the routing tree that both the route cache and the reconciler start from.

use crate::error::{Error, Result};
use crate::snapshot::{IpRule, RouteEntry, RouteSnapshot, WakeState};
use caas_types::{zk, AppId, ContainerId, Domain, Endpoint, Version};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use zookeeper_client::{Client, MultiReadResult};

/// What a path of the layout names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    /// `/caas/service/address/{app}/{version}/{container}`
    Instance(AppId, Version, ContainerId),
    /// `/caas/service/address/{app}/{version}`
    Version(AppId, Version),
    /// `/caas/service/address/{app}`
    App(AppId),
    /// `/caas/domains/{domain}`
    Domain(Domain),
    /// `/caas/service/wake/{app}`
    Wake(AppId),
    /// `/caas/config/gateway/blacklist`
    Blacklist,
    /// `/caas`, `/caas/service`, `/caas/service/address`, `/caas/domains`, `/caas/config`, ...:
    /// an ancestor whose deletion takes whatever below it with it.
    Ancestor(String),
    /// Anything else (foreign or malformed names).
    Other,
}

impl Node {
    /// Classifies a chroot-relative path.
    pub(crate) fn classify(path: &str) -> Node {
        if let Some(rest) = strip_dir(path, zk::ADDRESS_ROOT) {
            let parts: Vec<&str> = rest.split('/').collect();
            return match parts.as_slice() {
                [app] => app.parse().map(Node::App).unwrap_or(Node::Other),
                [app, version] => match (app.parse(), version.parse()) {
                    (Ok(a), Ok(v)) => Node::Version(a, v),
                    _ => Node::Other,
                },
                [app, version, container] => {
                    match (app.parse(), version.parse(), container.parse()) {
                        (Ok(a), Ok(v), Ok(c)) => Node::Instance(a, v, c),
                        _ => Node::Other,
                    }
                }
                _ => Node::Other,
            };
        }
        if let Some(rest) = strip_dir(path, zk::DOMAINS_ROOT) {
            return if rest.contains('/') {
                Node::Other
            } else {
                rest.parse().map(Node::Domain).unwrap_or(Node::Other)
            };
        }
        if let Some(rest) = strip_dir(path, zk::WAKE_ROOT) {
            return if rest.contains('/') {
                Node::Other
            } else {
                rest.parse().map(Node::Wake).unwrap_or(Node::Other)
            };
        }
        if path == zk::BLACKLIST {
            return Node::Blacklist;
        }
        let ancestor_of = |deep: &str| {
            deep.strip_prefix(path)
                .is_some_and(|tail| tail.starts_with('/'))
                || deep == path
        };
        if ancestor_of(zk::ADDRESS_ROOT)
            || ancestor_of(zk::DOMAINS_ROOT)
            || ancestor_of(zk::BLACKLIST)
            || ancestor_of(zk::WAKE_ROOT)
        {
            return Node::Ancestor(path.to_owned());
        }
        Node::Other
    }
}

/// `Some(rest)` when `path` is strictly below `dir`.
fn strip_dir<'a>(path: &'a str, dir: &str) -> Option<&'a str> {
    path.strip_prefix(dir)?
        .strip_prefix('/')
        .filter(|r| !r.is_empty())
}

/// Parses an address node's data: `"{hostIP}:{hostPort}"`.
pub(crate) fn parse_endpoint(path: &str, data: &[u8]) -> Result<Endpoint> {
    let text = std::str::from_utf8(data).map_err(|_| malformed(path, "not utf-8"))?;
    text.trim()
        .parse()
        .map_err(|e: caas_types::Error| malformed(path, &e.to_string()))
}

/// Parses a domain node's data: the app id.
pub(crate) fn parse_domain_app(path: &str, data: &[u8]) -> Result<AppId> {
    let text = std::str::from_utf8(data).map_err(|_| malformed(path, "not utf-8"))?;
    text.trim()
        .parse()
        .map_err(|e: caas_types::Error| malformed(path, &e.to_string()))
}

/// Parses the blacklist: a JSON list of addresses or CIDR blocks. An empty node is an empty
/// list; an entry that does not parse is skipped (and logged) so one typo cannot unblock all.
pub(crate) fn parse_blacklist(path: &str, data: &[u8]) -> Result<Vec<IpRule>> {
    if data.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let raw: Vec<String> = serde_json::from_slice(data)
        .map_err(|e| malformed(path, &format!("expected a JSON list of strings: {e}")))?;
    let mut rules = Vec::with_capacity(raw.len());
    for entry in raw {
        match entry.parse::<IpRule>() {
            Ok(rule) => rules.push(rule),
            Err(e) => tracing::warn!(%path, %entry, error = %e, "skipping bad blacklist entry"),
        }
    }
    Ok(rules)
}

/// Serializes blacklist rules the way [`parse_blacklist`] reads them.
pub(crate) fn render_blacklist(rules: &[IpRule]) -> Vec<u8> {
    // Single addresses are written bare ("10.0.0.9"), blocks as CIDR ("10.0.0.0/8").
    let raw: Vec<String> = rules
        .iter()
        .map(|r| {
            let single = if r.addr.is_ipv4() { 32 } else { 128 };
            if r.prefix == single {
                r.addr.to_string()
            } else {
                r.to_string()
            }
        })
        .collect();
    serde_json::to_vec(&raw).unwrap_or_else(|_| b"[]".to_vec())
}

/// What a wake node says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WakeNode {
    /// The deployment that scales to zero.
    pub version: Version,
    /// Why waking the app failed, while it does (the gateway answers 503 at once instead of
    /// holding requests); `None` while the app wakes normally.
    pub failing: Option<String>,
}

impl WakeNode {
    /// The gateway's view of this node: whether it says the app failed to start.
    pub(crate) fn state(&self) -> WakeState {
        WakeState {
            failing: self.failing.as_deref().map(Arc::from),
        }
    }
}

/// Longest failure reason [`render_wake`] writes, in characters.
pub(crate) const MAX_FAILING_CHARS: usize = 200;

/// Parses a wake node's data: `{"version": "v1"}` or `{"version": "v1", "failing": "..."}`;
/// other fields are ignored, `"failing": null` is the same as no field.
pub(crate) fn parse_wake(path: &str, data: &[u8]) -> Result<WakeNode> {
    let value: serde_json::Value = serde_json::from_slice(data)
        .map_err(|e| malformed(path, &format!("expected a JSON object: {e}")))?;
    let version = value
        .get("version")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| malformed(path, "no \"version\" string"))?
        .parse()
        .map_err(|e: caas_types::Error| malformed(path, &e.to_string()))?;
    let failing = match value.get("failing") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(reason)) => Some(reason.clone()),
        Some(_) => return Err(malformed(path, "\"failing\" is not a string")),
    };
    Ok(WakeNode { version, failing })
}

/// The gateway's view of a wake node's data: a node that does not parse still marks an app
/// that may sleep (and is logged), only not a failing one.
pub(crate) fn wake_state(path: &str, data: &[u8]) -> WakeState {
    match parse_wake(path, data) {
        Ok(node) => node.state(),
        Err(err) => {
            tracing::warn!(error = %err, "malformed wake node: the app wakes as usual");
            WakeState::default()
        }
    }
}

/// Renders a wake node's data: `{"version": "v1"}`, or with `"failing": "<reason>"`, the
/// reason cut to [`MAX_FAILING_CHARS`] characters.
pub(crate) fn render_wake(version: &Version, failing: Option<&str>) -> Vec<u8> {
    let mut node = serde_json::json!({ "version": version.as_str() });
    if let Some(reason) = failing {
        let cut = reason
            .char_indices()
            .nth(MAX_FAILING_CHARS)
            .map_or(reason, |(at, _)| &reason[..at]);
        node["failing"] = serde_json::Value::from(cut);
    }
    serde_json::to_vec(&node).unwrap_or_else(|_| b"{}".to_vec())
}

fn malformed(path: &str, reason: &str) -> Error {
    Error::Malformed {
        path: path.to_owned(),
        reason: reason.to_owned(),
    }
}

/// The routing tree in memory, in the shape the watches update it.
#[derive(Debug, Default, Clone)]
pub(crate) struct Tree {
    pub(crate) apps: HashMap<AppId, BTreeMap<(Version, ContainerId), Endpoint>>,
    pub(crate) domains: HashMap<Domain, AppId>,
    pub(crate) blacklist: Vec<IpRule>,
    /// Apps whose wake node exists, with what it says.
    pub(crate) wake: HashMap<AppId, WakeState>,
}

impl Tree {
    /// Sets one instance; returns whether anything changed.
    pub(crate) fn put_instance(
        &mut self,
        a: AppId,
        v: Version,
        c: ContainerId,
        e: Endpoint,
    ) -> bool {
        let versions = self.apps.entry(a).or_default();
        versions.insert((v, c), e) != Some(e)
    }

    /// Removes one instance; returns whether it was there.
    pub(crate) fn remove_instance(&mut self, a: &AppId, v: &Version, c: &ContainerId) -> bool {
        let Some(versions) = self.apps.get_mut(a) else {
            return false;
        };
        // The app stays known (its node exists) with no instance.
        versions.remove(&(v.clone(), c.clone())).is_some()
    }

    /// Removes every instance of one version; returns whether any was there.
    pub(crate) fn remove_version(&mut self, a: &AppId, v: &Version) -> bool {
        let Some(versions) = self.apps.get_mut(a) else {
            return false;
        };
        let before = versions.len();
        versions.retain(|(ver, _), _| ver != v);
        versions.len() != before
    }

    /// The entries of one app, sorted, as the snapshot holds them.
    pub(crate) fn entries(&self, app: &AppId) -> Vec<RouteEntry> {
        self.apps
            .get(app)
            .into_iter()
            .flatten()
            .map(|((version, container), endpoint)| RouteEntry {
                version: version.clone(),
                container: container.clone(),
                endpoint: *endpoint,
            })
            .collect()
    }

    /// A whole snapshot of this tree.
    pub(crate) fn to_snapshot(&self, generation: u64) -> RouteSnapshot {
        RouteSnapshot {
            apps: self
                .apps
                .keys()
                .map(|app| (app.clone(), self.entries(app)))
                .collect(),
            domains: self.domains.clone(),
            blacklist: self.blacklist.clone(),
            wake: self.wake.clone(),
            generation,
        }
    }
}

/// Children of `path`, or none if it does not exist.
pub(crate) async fn children(client: &Client, path: &str) -> Result<Vec<String>> {
    match client.list_children(path).await {
        Ok(c) => Ok(c),
        Err(zookeeper_client::Error::NoNode) => Ok(Vec::new()),
        Err(e) => Err(Error::zk("list", path, e)),
    }
}

/// Data of `path`, or `None` if it does not exist.
pub(crate) async fn data(client: &Client, path: &str) -> Result<Option<Vec<u8>>> {
    match client.get_data(path).await {
        Ok((d, _)) => Ok(Some(d)),
        Err(zookeeper_client::Error::NoNode) => Ok(None),
        Err(e) => Err(Error::zk("get", path, e)),
    }
}

/// Operations per multi-read request: large enough to amortize round trips, small enough to
/// stay far below ZooKeeper's 1 MiB packet limit.
const MULTI_CHUNK: usize = 256;

/// What one multi-read asks of each path.
#[derive(Clone, Copy)]
enum Read {
    Children,
    Data,
}

/// Reads `paths` with multi-read requests of [`MULTI_CHUNK`] operations, all sent before any
/// answer is awaited. A missing node yields `None`.
async fn multi_read(
    client: &Client,
    paths: &[String],
    what: Read,
) -> Result<Vec<Option<MultiReadResult>>> {
    let mut pending = Vec::with_capacity(paths.len().div_ceil(MULTI_CHUNK));
    for chunk in paths.chunks(MULTI_CHUNK) {
        let mut reader = client.new_multi_reader();
        for path in chunk {
            match what {
                Read::Children => reader.add_get_children(path),
                Read::Data => reader.add_get_data(path),
            }
            .map_err(|e| Error::zk("read", path, e))?;
        }
        // The request is sent here; awaiting happens below, so chunks are pipelined.
        let first = chunk.first().cloned().unwrap_or_default();
        let fut = reader.commit();
        pending.push(async move { fut.await.map_err(|e| Error::zk("multi-read", &first, e)) });
    }
    let answers = futures::future::try_join_all(pending).await?;
    let mut out = Vec::with_capacity(paths.len());
    for (path, result) in paths.iter().zip(answers.into_iter().flatten()) {
        match result {
            MultiReadResult::Error {
                err: zookeeper_client::Error::NoNode,
            } => out.push(None),
            MultiReadResult::Error { err } => return Err(Error::zk("read", path, err)),
            other => out.push(Some(other)),
        }
    }
    Ok(out)
}

/// Children of each of `paths` (none for a missing node).
async fn multi_children(client: &Client, paths: &[String]) -> Result<Vec<Vec<String>>> {
    Ok(multi_read(client, paths, Read::Children)
        .await?
        .into_iter()
        .map(|r| match r {
            Some(MultiReadResult::Children { children }) => children,
            _ => Vec::new(),
        })
        .collect())
}

/// Data of each of `paths` (`None` for a missing node).
async fn multi_data(client: &Client, paths: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
    Ok(multi_read(client, paths, Read::Data)
        .await?
        .into_iter()
        .map(|r| match r {
            Some(MultiReadResult::Data { data, .. }) => Some(data),
            _ => None,
        })
        .collect())
}

/// Reads every instance under the address root, level by level, each level in pipelined
/// multi-read requests: 10,000 instances cost a few dozen requests, not 10,000 round trips.
/// Malformed names and data are skipped (and logged).
pub(crate) async fn read_instances(
    client: &Client,
) -> Result<Vec<(AppId, Version, ContainerId, Endpoint)>> {
    let apps: Vec<AppId> = children(client, zk::ADDRESS_ROOT)
        .await?
        .into_iter()
        .filter_map(|name| name.parse().ok())
        .collect();
    let app_paths: Vec<String> = apps.iter().map(zk::app).collect();
    let version_lists = multi_children(client, &app_paths).await?;
    let versions: Vec<(AppId, Version)> = apps
        .iter()
        .zip(version_lists)
        .flat_map(|(a, vs)| {
            vs.into_iter()
                .filter_map(|v| v.parse().ok())
                .map(move |v| (a.clone(), v))
        })
        .collect();
    let version_paths: Vec<String> = versions.iter().map(|(a, v)| zk::version(a, v)).collect();
    let instance_lists = multi_children(client, &version_paths).await?;
    let instances: Vec<(AppId, Version, ContainerId)> = versions
        .into_iter()
        .zip(instance_lists)
        .flat_map(|((a, v), cs)| {
            cs.into_iter()
                .filter_map(|c| c.parse().ok())
                .map(move |c| (a.clone(), v.clone(), c))
        })
        .collect();
    let paths: Vec<String> = instances
        .iter()
        .map(|(a, v, c)| zk::instance(a, v, c))
        .collect();
    let datas = multi_data(client, &paths).await?;
    let mut out = Vec::with_capacity(instances.len());
    for ((a, v, c), (path, d)) in instances.into_iter().zip(paths.iter().zip(datas)) {
        let Some(d) = d else { continue };
        match parse_endpoint(path, &d) {
            Ok(e) => out.push((a, v, c, e)),
            Err(err) => tracing::warn!(error = %err, "skipping malformed address node"),
        }
    }
    Ok(out)
}

/// Every wake node: its app and its data as read (`None` for a node deleted meanwhile), the
/// data of all nodes read in pipelined multi-read requests. Names that do not parse are skipped.
pub(crate) async fn read_wake(client: &Client) -> Result<Vec<(AppId, String, Option<Vec<u8>>)>> {
    let apps: Vec<AppId> = children(client, zk::WAKE_ROOT)
        .await?
        .into_iter()
        .filter_map(|name| name.parse().ok())
        .collect();
    let paths: Vec<String> = apps.iter().map(zk::wake).collect();
    let datas = multi_data(client, &paths).await?;
    Ok(apps
        .into_iter()
        .zip(paths)
        .zip(datas)
        .map(|((app, path), data)| (app, path, data))
        .collect())
}

/// Reads the whole routing tree: instances, domains, the wake set and the blacklist.
pub(crate) async fn read_tree(client: &Client) -> Result<Tree> {
    let mut tree = Tree::default();
    // Known apps first (an app node with no instance is a known app: 503, not 404).
    for name in children(client, zk::ADDRESS_ROOT).await? {
        if let Ok(a) = name.parse::<AppId>() {
            tree.apps.entry(a).or_default();
        }
    }
    for (a, v, c, e) in read_instances(client).await? {
        tree.put_instance(a, v, c, e);
    }
    let domains: Vec<Domain> = children(client, zk::DOMAINS_ROOT)
        .await?
        .into_iter()
        .filter_map(|name| name.parse().ok())
        .collect();
    let paths: Vec<String> = domains.iter().map(zk::domain).collect();
    let datas = multi_data(client, &paths).await?;
    for ((domain, path), d) in domains.into_iter().zip(&paths).zip(datas) {
        let Some(d) = d else { continue };
        match parse_domain_app(path, &d) {
            Ok(app) => {
                tree.domains.insert(domain, app);
            }
            Err(err) => tracing::warn!(error = %err, "skipping malformed domain node"),
        }
    }
    for (app, path, data) in read_wake(client).await? {
        if let Some(d) = data {
            tree.wake.insert(app, wake_state(&path, &d));
        }
    }
    if let Some(d) = data(client, zk::BLACKLIST).await? {
        tree.blacklist = parse_blacklist(zk::BLACKLIST, &d).unwrap_or_else(|err| {
            tracing::warn!(error = %err, "ignoring malformed blacklist");
            Vec::new()
        });
    }
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_layout_paths() {
        let a: AppId = "app01".parse().expect("valid");
        let v: Version = "v1".parse().expect("valid");
        let c: ContainerId = "abc123abc123".parse().expect("valid");
        assert_eq!(
            Node::classify("/caas/service/address/app01/v1/abc123abc123"),
            Node::Instance(a.clone(), v.clone(), c)
        );
        assert_eq!(
            Node::classify("/caas/service/address/app01/v1"),
            Node::Version(a.clone(), v)
        );
        assert_eq!(Node::classify("/caas/service/address/app01"), Node::App(a));
        assert_eq!(
            Node::classify("/caas/domains/shop.example.com"),
            Node::Domain("shop.example.com".parse().expect("valid"))
        );
        assert_eq!(
            Node::classify("/caas/config/gateway/blacklist"),
            Node::Blacklist
        );
        assert_eq!(
            Node::classify("/caas/service/wake/app01"),
            Node::Wake("app01".parse().expect("valid"))
        );
        assert_eq!(Node::classify("/caas/service/wake/app01/x"), Node::Other);
        assert_eq!(Node::classify("/caas/service/wake/Bad_App"), Node::Other);
        for anc in [
            "/caas",
            "/caas/service",
            "/caas/service/address",
            "/caas/domains",
            "/caas/config/gateway",
            "/caas/service/wake",
        ] {
            assert_eq!(Node::classify(anc), Node::Ancestor(anc.into()), "{anc}");
        }
        assert_eq!(Node::classify("/caas/election/scheduler"), Node::Other);
        assert_eq!(Node::classify("/caas/service/address/Bad_App"), Node::Other);
        assert_eq!(Node::classify("/caasx"), Node::Other);
    }

    #[test]
    fn parses_node_data() {
        let e = parse_endpoint("/p", b"127.0.0.2:25700").expect("valid");
        assert_eq!(e.to_string(), "127.0.0.2:25700");
        assert!(parse_endpoint("/p", b"nope").is_err());
        let rules = parse_blacklist("/b", br#"["10.0.0.0/8","127.0.0.9","junk"]"#).expect("list");
        assert_eq!(rules.len(), 2);
        assert_eq!(
            parse_blacklist("/b", &render_blacklist(&rules)).expect("list"),
            rules
        );
        assert!(parse_blacklist("/b", b"").expect("empty").is_empty());
        assert!(parse_blacklist("/b", b"{").is_err());
    }

    #[test]
    fn wake_nodes_parse_render_and_degrade_to_wakeable() {
        let v: Version = "v1".parse().expect("valid");
        let plain = render_wake(&v, None);
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&plain).expect("json"),
            serde_json::json!({"version": "v1"})
        );
        let node = parse_wake("/w", &plain).expect("parses");
        assert_eq!(node.failing, None);
        assert_eq!(node.state(), WakeState::default());
        let failing =
            parse_wake("/w", &render_wake(&v, Some("image pull failed"))).expect("parses");
        assert_eq!(failing.version, v);
        assert_eq!(failing.failing.as_deref(), Some("image pull failed"));
        assert_eq!(
            failing.state().failing.as_deref(),
            Some("image pull failed")
        );
        // Unknown fields are ignored, null is no failure.
        let extra = parse_wake("/w", br#"{"version":"v2","failing":null,"since":3}"#).expect("ok");
        assert_eq!(extra.failing, None);
        assert_eq!(extra.version.as_str(), "v2");
        // Malformed data: not a WakeNode, but still a wakeable app that is not failing.
        for bad in [
            &b""[..],
            b"{",
            b"[]",
            br#"{"failing":"x"}"#,
            br#"{"version":"Not A Version!"}"#,
            br#"{"version":"v1","failing":7}"#,
        ] {
            assert!(parse_wake("/w", bad).is_err(), "{bad:?}");
            assert_eq!(wake_state("/w", bad), WakeState::default(), "{bad:?}");
        }
        // The reason is cut to 200 characters, never inside one.
        let long = "é".repeat(300);
        let cut = parse_wake("/w", &render_wake(&v, Some(&long))).expect("parses");
        assert_eq!(cut.failing.as_deref(), Some("é".repeat(200).as_str()));
        let short = "x".repeat(200);
        let kept = parse_wake("/w", &render_wake(&v, Some(&short))).expect("parses");
        assert_eq!(kept.failing.as_deref(), Some(short.as_str()));
    }
}
