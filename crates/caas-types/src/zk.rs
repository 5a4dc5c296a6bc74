//! ZooKeeper paths of the brief's layout, built only from validated values.
//!
//! ```text
//! /caas/service/address/{appId}/{version}/{containerId}   data: "{hostIP}:{hostPort}"
//! /caas/domains/{domain}                                  data: "{appId}"
//! /caas/config/gateway/blacklist                          data: JSON list of IPs/CIDRs
//! /caas/service/wake/{appId}                              data: {"version": "v1", "failing"?: "..."}
//! ```
//!
//! The layout is a contract with gateways that may run older or newer code: never change it.
//! It only grows: the wake nodes were added next to the address tree (scale to zero); a gateway
//! that does not know them ignores them and answers 503 for a sleeping app as before.
//!
//! A wake node's data is `{"version": "v1"}`, the deployment that scales to zero, or
//! `{"version": "v1", "failing": "<reason>"}` (reason at most 200 characters) while waking the
//! app fails: the scheduler's autoscaler writes `failing` when starting the app for a held
//! request fails, and clears it (rewrites the node without it) after its back-off or on a new
//! deploy. A gateway answers a request for a failing sleeping app 503 at once (`Retry-After: 5`,
//! the reason in the body) instead of holding it. Readers ignore fields they do not know; data
//! that does not parse marks an app that may sleep and is not failing. A gateway that predates
//! `failing` only looks at the node's existence and keeps holding requests (504 at its
//! activation timeout).
//! Paths here are relative to the client's chroot (if any).

use crate::{AppId, ContainerId, Domain, Version};

/// The root of everything caas keeps in ZooKeeper.
pub const ROOT: &str = "/caas";
/// Parent of every app's address subtree.
pub const ADDRESS_ROOT: &str = "/caas/service/address";
/// Parent of the wake nodes: `/caas/service/wake/{appId}` exists while the app may sleep (a
/// deployment with `autoscale.min == 0`), so a gateway holds a request for it while it has no
/// address instead of answering 503. Written by the scheduler, read by gateways.
pub const WAKE_ROOT: &str = "/caas/service/wake";
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

/// `/caas/service/wake/{appId}`: exists while `app` may sleep; data `{"version": "v1"}`, with
/// `"failing": "<reason>"` while waking the app fails.
pub fn wake(app: &AppId) -> String {
    format!("{WAKE_ROOT}/{app}")
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
        assert_eq!(wake(&a), "/caas/service/wake/app01");
        assert_eq!(BLACKLIST, "/caas/config/gateway/blacklist");
    }
}
