//! Tenant networks: each tenant's containers on a bridge network of their own per engine,
//! created on demand before a container needs it and removed with its last container (or
//! when the start that made it fails).
//!
//! Between two tenants' bridges the engine itself drops traffic (its isolation chains), and
//! because every tenant bridge is named `caast…` ([`BRIDGE_PREFIX`]), one `INPUT` rule and one
//! `DOCKER-USER` rule per prefix (made by `scripts/firewall`) keep containers away from the host
//! they run on and from the platform's own networks, however many tenants there are.

use crate::deployer::{Deployer, NETWORK_ATTEMPTS};
use crate::error::{classify, Error, Op, Result};
use bollard::network::CreateNetworkOptions;
use caas_types::{labels, ContainerId};
use std::collections::HashMap;
use std::net::IpAddr;
use tracing::{debug, info, warn};

/// The name every tenant bridge interface starts with: the host firewall matches `caast+`.
pub const BRIDGE_PREFIX: &str = "caast";

/// The network label naming the tenant a network belongs to.
pub const TENANT_LABEL: &str = "caas.tenant";

/// How many times a create refused for a bridge name in use is tried again, and the pause
/// (growing with each try: 50, 100, ... ms, about 2.7 s in all) before each.
const BRIDGE_CLASH_ATTEMPTS: u32 = 10;
const BRIDGE_CLASH_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// A tenant's bridge network on an engine: its engine name and its Linux bridge name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantNetwork {
    name: String,
    bridge: String,
    tenant: String,
    namespace: String,
}

impl TenantNetwork {
    /// The network of `tenant` (`operator` for apps the operator owns) in the platform's
    /// `namespace`: named `{namespace}-net-{tenant}`, bridge `caast` + 10 hex digits of a hash of
    /// that name (a Linux interface name has at most 15 characters).
    pub fn for_tenant(namespace: &str, tenant: &str) -> TenantNetwork {
        let name = format!("{namespace}-net-{tenant}");
        let bridge = format!("{BRIDGE_PREFIX}{:010x}", fnv1a(name.as_bytes()) >> 24);
        TenantNetwork {
            name,
            bridge,
            tenant: tenant.to_owned(),
            namespace: namespace.to_owned(),
        }
    }

    /// The engine's name of the network (what a container's `NetworkMode` names).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Linux bridge interface of the network.
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// The tenant whose containers it holds.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The engine's create request: a bridge with inter-container traffic allowed (same tenant),
    /// outbound masquerading, labelled with the namespace and the tenant.
    fn create_options(&self) -> CreateNetworkOptions<String> {
        CreateNetworkOptions {
            name: self.name.clone(),
            check_duplicate: true,
            driver: "bridge".to_owned(),
            options: HashMap::from([
                (
                    "com.docker.network.bridge.name".to_owned(),
                    self.bridge.clone(),
                ),
                (
                    "com.docker.network.bridge.enable_icc".to_owned(),
                    "true".to_owned(),
                ),
                (
                    "com.docker.network.bridge.enable_ip_masquerade".to_owned(),
                    "true".to_owned(),
                ),
            ]),
            labels: HashMap::from([
                (labels::MANAGED.to_owned(), self.namespace.clone()),
                (TENANT_LABEL.to_owned(), self.tenant.clone()),
            ]),
            ..Default::default()
        }
    }
}

/// Who has which address on a network, as its engine says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkAddresses {
    /// The host's own address on the bridge (what containers reach the host through).
    pub gateway: Option<IpAddr>,
    /// The IPv4 address of each container on the network, by container id.
    pub containers: HashMap<String, IpAddr>,
}

/// The address part of `10.210.0.2/24` (or a bare address).
fn address(cidr: &str) -> Option<IpAddr> {
    cidr.split('/').next()?.parse().ok()
}

/// 64-bit FNV-1a: a stable, dependency-free hash for bridge names (not a security boundary:
/// two names that collide fail the second network's creation, loudly).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl Deployer {
    /// Creates the tenant's network unless the engine has it already.
    ///
    /// The engine refuses a second network on a bridge name ("same bridge name") while a
    /// concurrent create of the same network is still under way (not yet found by name), or
    /// while a prune is still deleting it: both pass, so that answer is tried again, briefly,
    /// until the network is found by our name or made. Only a clash that outlasts that is an
    /// error (two names hashed to one bridge).
    pub async fn ensure_network(&self, net: &TenantNetwork) -> Result<()> {
        let docker = self.docker().await?;
        let mut clash = String::new();
        for attempt in 0..BRIDGE_CLASH_ATTEMPTS {
            match docker.create_network(net.create_options()).await {
                Ok(_) => {
                    info!(
                        network = net.name(),
                        bridge = net.bridge(),
                        "tenant network created"
                    );
                    return Ok(());
                }
                Err(e) => match classify(Op::Engine, e) {
                    Error::Docker { status: 409, .. } => return Ok(()),
                    Error::Docker { message, .. } if message.contains("already exists") => {
                        return Ok(())
                    }
                    Error::Docker { message, .. } if message.contains("same bridge name") => {
                        if self.network_addresses(net.name()).await.is_ok() {
                            return Ok(());
                        }
                        debug!(
                            network = net.name(),
                            attempt, "bridge name taken for now; again"
                        );
                        clash = message;
                        tokio::time::sleep(BRIDGE_CLASH_PAUSE * (attempt + 1)).await;
                    }
                    other => return Err(other),
                },
            }
        }
        Err(Error::Docker {
            status: 409,
            message: format!("network {}: {clash}", net.name()),
        })
    }

    /// Runs `create` (a container's create and start) on `net`: the network made first, and
    /// made again when a concurrent removal pruned it before the start
    /// ([`Error::NetworkNotFound`], at most [`NETWORK_ATTEMPTS`] tries). Without a network,
    /// `create` runs once.
    pub(crate) async fn on_network<T, F, Fut>(
        &self,
        net: Option<&TenantNetwork>,
        mut create: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut attempt = 1;
        loop {
            if let Some(net) = net {
                self.ensure_network(net).await?;
            }
            match create().await {
                Err(Error::NetworkNotFound(m)) if attempt < NETWORK_ATTEMPTS => {
                    debug!(attempt, error = %m, "network gone under a create; again");
                    attempt += 1;
                }
                Err(e) => {
                    // A failed start leaves no network behind that nothing uses.
                    if let Some(net) = net {
                        self.remove_network_if_unused(net.name()).await;
                    }
                    return Err(e);
                }
                ok => return ok,
            }
        }
    }

    /// The user-defined network container `id` is on (its `NetworkMode`), if any: `None` for
    /// the engine's own networks, another container's, or a container that is gone.
    pub(crate) async fn user_network_of(&self, id: &ContainerId) -> Option<String> {
        let docker = self.docker().await.ok()?;
        let inspected = docker
            .inspect_container(
                id.as_str(),
                None::<bollard::container::InspectContainerOptions>,
            )
            .await
            .ok()?;
        let mode = inspected.host_config?.network_mode?;
        let builtin = ["", "default", "bridge", "host", "none"].contains(&mode.as_str());
        (!builtin && !mode.starts_with("container:")).then_some(mode)
    }

    /// Removes the network `name` if no container uses it any more; one in use (the engine
    /// refuses), gone already, or failing is left (logged), for the next removal.
    pub async fn remove_network_if_unused(&self, name: &str) {
        let Ok(docker) = self.docker().await else {
            return;
        };
        match docker.remove_network(name).await {
            Ok(()) => debug!(
                network = name,
                "tenant network removed with its last container"
            ),
            Err(e) => match classify(Op::Engine, e) {
                // In use (403 "has active endpoints"), or gone (404).
                Error::Docker {
                    status: 403 | 409, ..
                }
                | Error::NetworkNotFound(_) => {}
                Error::Docker { message, .. } if message.contains("active endpoints") => {}
                other => warn!(network = name, error = %other, "could not remove a tenant network"),
            },
        }
    }

    /// The gateway and the containers' addresses of the network `name`
    /// ([`Error::NetworkNotFound`] when the engine has none).
    pub async fn network_addresses(&self, name: &str) -> Result<NetworkAddresses> {
        let net = self
            .docker()
            .await?
            .inspect_network(
                name,
                None::<bollard::network::InspectNetworkOptions<String>>,
            )
            .await
            .map_err(|e| classify(Op::Engine, e))?;
        let gateway = net
            .ipam
            .and_then(|ipam| ipam.config)
            .and_then(|configs| configs.into_iter().find_map(|c| c.gateway))
            .and_then(|g| address(&g));
        let containers = net
            .containers
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(id, c)| Some((id, address(c.ipv4_address.as_deref()?)?)))
            .collect();
        Ok(NetworkAddresses {
            gateway,
            containers,
        })
    }

    /// The names of the tenant networks on this engine (all namespaces).
    pub async fn tenant_networks(&self) -> Result<Vec<String>> {
        let options = bollard::network::ListNetworksOptions {
            filters: HashMap::from([("label", vec![TENANT_LABEL])]),
        };
        let list = self
            .docker()
            .await?
            .list_networks(Some(options))
            .await
            .map_err(|e| classify(Op::Engine, e))?;
        Ok(list.into_iter().filter_map(|n| n.name).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_drop_their_prefix_length() {
        assert_eq!(address("10.210.0.2/24"), "10.210.0.2".parse().ok());
        assert_eq!(address("10.210.0.1"), "10.210.0.1".parse().ok());
        assert_eq!(address(""), None);
    }

    #[test]
    fn bridge_names_fit_linux_and_carry_the_firewall_prefix() {
        let net = TenantNetwork::for_tenant("caas", "a-very-long-tenant-name-of-sixty-chars");
        assert_eq!(
            net.name(),
            "caas-net-a-very-long-tenant-name-of-sixty-chars"
        );
        assert!(net.bridge().starts_with(BRIDGE_PREFIX), "{}", net.bridge());
        assert_eq!(net.bridge().len(), 15, "{}", net.bridge());
        assert!(net.bridge().bytes().all(|b| b.is_ascii_alphanumeric()));
    }

    #[test]
    fn names_are_stable_and_differ_by_tenant_and_namespace() {
        let a = TenantNetwork::for_tenant("caas", "acme");
        assert_eq!(a, TenantNetwork::for_tenant("caas", "acme"));
        let b = TenantNetwork::for_tenant("caas", "globex");
        let c = TenantNetwork::for_tenant("caas-test", "acme");
        assert_ne!(a.bridge(), b.bridge());
        assert_ne!(a.bridge(), c.bridge());
        assert_ne!(a.name(), c.name());
    }

    #[test]
    fn the_create_request_names_the_bridge_and_labels_the_tenant() {
        let net = TenantNetwork::for_tenant("caas", "acme");
        let o = net.create_options();
        assert!(o.check_duplicate);
        assert_eq!(o.driver, "bridge");
        assert_eq!(
            o.options.get("com.docker.network.bridge.name"),
            Some(&net.bridge().to_owned())
        );
        assert_eq!(o.labels.get(TENANT_LABEL), Some(&"acme".to_owned()));
        assert_eq!(o.labels.get(labels::MANAGED), Some(&"caas".to_owned()));
    }
}
