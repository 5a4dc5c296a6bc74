//! ZooKeeper paths of the brief's layout, built only from validated values.
//!
//! ```text
//! /caas/service/address/{appId}/{version}/{containerId}   data: "{hostIP}:{hostPort}"
//! /caas/domains/{domain}                                  data: "{appId}"
//! /caas/config/gateway/blacklist                          data: JSON list of IPs/CIDRs
//! ```
//!
//! The layout is a contract with gateways that may run older or newer code: never change it.
//! Paths here are relative to the client's chroot (if any).

use crate::{AppId, ContainerId, Domain, Version};

/// The root of everything caas keeps in ZooKeeper.
pub const ROOT: &str = "/caas";
/// Parent of every app's address subtree.
pub const ADDRESS_ROOT: &str = "/caas/service/address";
/// Parent of custom-domain nodes.
pub const DOMAINS_ROOT: &str = "/caas/domains";
/// The gateway's blacklist node.
pub const BLACKLIST: &str = "/caas/config/gateway/blacklist";
/// Parent of the scheduler's leader-election candidates (ephemeral sequential nodes). Not part
/// of the routing layout; gateways never read it.
pub const SCHEDULER_ELECTION: &str = "/caas/election/scheduler";

/// `/caas/service/address/{appId}`
pub fn app(app: &AppId) -> String {
    format!("{ADDRESS_ROOT}/{app}")
}

/// `/caas/service/address/{appId}/{version}`
pub fn version(app: &AppId, version: &Version) -> String {
    format!("{ADDRESS_ROOT}/{app}/{version}")
}

/// `/caas/service/address/{appId}/{version}/{containerId}`: one node per healthy instance.
pub fn instance(app: &AppId, version: &Version, container: &ContainerId) -> String {
    format!("{ADDRESS_ROOT}/{app}/{version}/{container}")
}

/// `/caas/domains/{domain}`
pub fn domain(domain: &Domain) -> String {
    format!("{DOMAINS_ROOT}/{domain}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_brief() {
        let a: AppId = "app01".parse().expect("valid");
        let v: Version = "v1".parse().expect("valid");
        let c: ContainerId = "0123456789abcdef".parse().expect("valid");
        let d: Domain = "shop.example.com".parse().expect("valid");
        assert_eq!(app(&a), "/caas/service/address/app01");
        assert_eq!(version(&a, &v), "/caas/service/address/app01/v1");
        assert_eq!(
            instance(&a, &v, &c),
            "/caas/service/address/app01/v1/0123456789abcdef"
        );
        assert_eq!(domain(&d), "/caas/domains/shop.example.com");
        assert_eq!(BLACKLIST, "/caas/config/gateway/blacklist");
    }
}
