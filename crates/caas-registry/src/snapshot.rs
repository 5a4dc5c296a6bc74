//! The route snapshot: what the gateway needs from ZooKeeper, as plain immutable data.
//!
//! The [`RouteCache`](crate) publishes a new `RouteSnapshot` behind an atomic pointer each time the
//! tree changes; readers hold an `Arc` to one snapshot and never lock. The gateway builds its own
//! hot-path table from it.

use caas_types::{AppId, ContainerId, Domain, Endpoint, Version};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

/// One registered, healthy instance of an app.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteEntry {
    /// The version it runs.
    pub version: Version,
    /// Its container.
    pub container: ContainerId,
    /// Where it answers.
    pub endpoint: Endpoint,
}

/// A blacklist rule: one address or a CIDR block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpRule {
    /// Network address.
    pub addr: IpAddr,
    /// Prefix length (32 or 128 for a single address).
    pub prefix: u8,
}

impl IpRule {
    /// Whether `ip` falls inside this rule.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let bits = u32::from(self.prefix.min(32));
                let mask = if bits == 0 {
                    0
                } else {
                    u32::MAX << (32 - bits)
                };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let bits = u32::from(self.prefix.min(128));
                let mask = if bits == 0 {
                    0
                } else {
                    u128::MAX << (128 - bits)
                };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            (IpAddr::V4(_), IpAddr::V6(ip)) => ip
                .to_ipv4_mapped()
                .is_some_and(|v4| self.contains(IpAddr::V4(v4))),
            (IpAddr::V6(_), IpAddr::V4(_)) => false,
        }
    }
}

impl std::str::FromStr for IpRule {
    type Err = caas_types::Error;

    /// Parses `10.0.0.1`, `10.0.0.0/8`, `::1`, `fd00::/8`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || caas_types::Error::Invalid {
            kind: "blacklist entry",
            reason: "expected an IP address or CIDR block like 10.0.0.0/8".into(),
        };
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = ip.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(IpRule { addr, prefix })
    }
}

impl std::fmt::Display for IpRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// What the gateway needs of one app's wake node (`/caas/service/wake/{app}`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WakeState {
    /// Why waking the app failed, while the node says it does: the gateway then answers a
    /// request for it with 503 at once instead of holding it. `None`: the app wakes as usual
    /// (also when the node's data does not parse).
    pub failing: Option<Arc<str>>,
}

/// Everything under `/caas` that routing needs, at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteSnapshot {
    /// Every known app (its node `/caas/service/address/{app}` exists) with its registered,
    /// healthy instances across all versions, sorted. An app with no instance maps to an empty
    /// list: the gateway answers 503 for it, and 404 for a name that is not here.
    pub apps: HashMap<AppId, Vec<RouteEntry>>,
    /// Custom domains → app.
    pub domains: HashMap<Domain, AppId>,
    /// Client addresses the gateway refuses.
    pub blacklist: Vec<IpRule>,
    /// Apps that may sleep (their node `/caas/service/wake/{app}` exists), with what the node
    /// says: a request for one with no instance is held until an address appears rather than
    /// answered 503, unless the node says the app failed to start.
    pub wake: HashMap<AppId, WakeState>,
    /// Increases with every published snapshot (for change detection and metrics).
    pub generation: u64,
}

impl RouteSnapshot {
    /// The addresses of `app`, all versions, or `None` if it has no registered instance.
    pub fn endpoints(&self, app: &AppId) -> Option<&[RouteEntry]> {
        self.apps
            .get(app)
            .map(Vec::as_slice)
            .filter(|e| !e.is_empty())
    }

    /// Per-version view of one app, for the admin side.
    pub fn versions(&self, app: &AppId) -> BTreeMap<Version, Vec<Endpoint>> {
        let mut out: BTreeMap<Version, Vec<Endpoint>> = BTreeMap::new();
        for e in self.apps.get(app).into_iter().flatten() {
            out.entry(e.version.clone()).or_default().push(e.endpoint);
        }
        out
    }

    /// Whether `app` may sleep (a request for it with no instance is held, not refused).
    pub fn is_wakeable(&self, app: &AppId) -> bool {
        self.wake.contains_key(app)
    }

    /// Why `app` failed to start, if it may sleep and its wake node says waking it failed.
    pub fn wake_failing(&self, app: &AppId) -> Option<&Arc<str>> {
        self.wake.get(app).and_then(|w| w.failing.as_ref())
    }

    /// Whether `ip` is blacklisted.
    pub fn is_blacklisted(&self, ip: IpAddr) -> bool {
        self.blacklist.iter().any(|r| r.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_rules_match_addresses_and_blocks() {
        let block: IpRule = "10.0.0.0/8".parse().expect("valid");
        assert!(block.contains("10.1.2.3".parse().expect("ip")));
        assert!(!block.contains("11.0.0.1".parse().expect("ip")));
        let one: IpRule = "127.0.0.9".parse().expect("valid");
        assert!(one.contains("127.0.0.9".parse().expect("ip")));
        assert!(!one.contains("127.0.0.1".parse().expect("ip")));
        assert!(
            one.contains("::ffff:127.0.0.9".parse().expect("ip")),
            "v4-mapped v6 matches"
        );
        let v6: IpRule = "fd00::/8".parse().expect("valid");
        assert!(v6.contains("fd12::1".parse().expect("ip")));
        let all: IpRule = "0.0.0.0/0".parse().expect("valid");
        assert!(all.contains("8.8.8.8".parse().expect("ip")));
        for bad in ["", "10.0.0.0/33", "x", "10.0.0.0/", "::/129", "10.0.0.0/-1"] {
            assert!(bad.parse::<IpRule>().is_err(), "{bad:?}");
        }
    }
}
