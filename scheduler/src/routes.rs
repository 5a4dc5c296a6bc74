//! The seam at ZooKeeper: [`RouteRegistry`] is everything the scheduler writes to or reads from
//! the service registry (address nodes, app nodes, custom domains, the blacklist), implemented
//! by `caas_registry::Registry`. Code above this module never names `Registry`.

use caas_registry::{IpRule, Registry, Result, WakeNode};
use caas_types::{AppId, ContainerId, Domain, Endpoint, Version};
use futures::future::BoxFuture;
use std::collections::BTreeMap;
use std::sync::Arc;

/// An address node as read back: app, version, container, endpoint.
pub type AddressNode = (AppId, Version, ContainerId, Endpoint);

/// A blacklist edit, applied again if another writer won the race.
pub type BlacklistEdit<'a> = Box<dyn FnMut(&mut Vec<IpRule>) + Send + 'a>;

/// What the scheduler asks of the service registry.
pub trait RouteRegistry: Send + Sync + std::fmt::Debug {
    /// Registers a healthy instance at `/caas/service/address/{app}/{version}/{container}`.
    fn register<'a>(
        &'a self,
        app: &'a AppId,
        version: &'a Version,
        container: &'a ContainerId,
        endpoint: Endpoint,
    ) -> BoxFuture<'a, Result<()>>;
    /// Removes an instance's address node (absent is fine); prunes an emptied version node.
    fn deregister<'a>(
        &'a self,
        app: &'a AppId,
        version: &'a Version,
        container: &'a ContainerId,
    ) -> BoxFuture<'a, Result<()>>;
    /// Every address node: app, version, container, endpoint.
    fn instances(&self) -> BoxFuture<'_, Result<Vec<AddressNode>>>;
    /// Creates an app's node (known to gateways: 503 until an instance runs).
    fn add_app<'a>(&'a self, app: &'a AppId) -> BoxFuture<'a, Result<()>>;
    /// Removes an app's node and everything under it.
    fn remove_app<'a>(&'a self, app: &'a AppId) -> BoxFuture<'a, Result<()>>;
    /// Every app node.
    fn apps(&self) -> BoxFuture<'_, Result<Vec<AppId>>>;
    /// Routes a custom domain to an app.
    fn set_domain<'a>(&'a self, domain: &'a Domain, app: &'a AppId) -> BoxFuture<'a, Result<()>>;
    /// Stops routing a custom domain (absent is fine).
    fn remove_domain<'a>(&'a self, domain: &'a Domain) -> BoxFuture<'a, Result<()>>;
    /// Every custom domain node with its app.
    fn domains(&self) -> BoxFuture<'_, Result<Vec<(Domain, AppId)>>>;
    /// The blacklist.
    fn blacklist(&self) -> BoxFuture<'_, Result<Vec<IpRule>>>;
    /// Replaces the blacklist.
    fn set_blacklist<'a>(&'a self, rules: &'a [IpRule]) -> BoxFuture<'a, Result<()>>;
    /// Read-modify-write of the blacklist under ZooKeeper's version check.
    fn update_blacklist<'a>(
        &'a self,
        edit: BlacklistEdit<'a>,
    ) -> BoxFuture<'a, Result<Vec<IpRule>>>;
    /// Writes `/caas/service/wake/{app}`: the app may sleep (`version` is its sleeping
    /// deployment), and `failing` says why waking it failed (gateways answer 503 with it).
    fn set_wake<'a>(
        &'a self,
        app: &'a AppId,
        version: &'a Version,
        failing: Option<&'a str>,
    ) -> BoxFuture<'a, Result<()>>;
    /// Deletes the app's wake node (idempotent).
    fn clear_wake<'a>(&'a self, app: &'a AppId) -> BoxFuture<'a, Result<()>>;
    /// Every wake node with what it says (`None`: its data does not parse).
    fn wake_nodes(&self) -> BoxFuture<'_, Result<BTreeMap<AppId, Option<WakeNode>>>>;
}

/// A shared route registry.
pub type RoutesRef = Arc<dyn RouteRegistry>;

impl RouteRegistry for Registry {
    fn register<'a>(
        &'a self,
        app: &'a AppId,
        version: &'a Version,
        container: &'a ContainerId,
        endpoint: Endpoint,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(Registry::register(self, app, version, container, endpoint))
    }
    fn deregister<'a>(
        &'a self,
        app: &'a AppId,
        version: &'a Version,
        container: &'a ContainerId,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(Registry::deregister(self, app, version, container))
    }
    fn instances(&self) -> BoxFuture<'_, Result<Vec<AddressNode>>> {
        Box::pin(Registry::instances(self))
    }
    fn add_app<'a>(&'a self, app: &'a AppId) -> BoxFuture<'a, Result<()>> {
        Box::pin(Registry::add_app(self, app))
    }
    fn remove_app<'a>(&'a self, app: &'a AppId) -> BoxFuture<'a, Result<()>> {
        Box::pin(Registry::remove_app(self, app))
    }
    fn apps(&self) -> BoxFuture<'_, Result<Vec<AppId>>> {
        Box::pin(Registry::apps(self))
    }
    fn set_domain<'a>(&'a self, domain: &'a Domain, app: &'a AppId) -> BoxFuture<'a, Result<()>> {
        Box::pin(Registry::set_domain(self, domain, app))
    }
    fn remove_domain<'a>(&'a self, domain: &'a Domain) -> BoxFuture<'a, Result<()>> {
        Box::pin(Registry::remove_domain(self, domain))
    }
    fn domains(&self) -> BoxFuture<'_, Result<Vec<(Domain, AppId)>>> {
        Box::pin(Registry::domains(self))
    }
    fn blacklist(&self) -> BoxFuture<'_, Result<Vec<IpRule>>> {
        Box::pin(Registry::blacklist(self))
    }
    fn set_blacklist<'a>(&'a self, rules: &'a [IpRule]) -> BoxFuture<'a, Result<()>> {
        Box::pin(Registry::set_blacklist(self, rules))
    }
    fn update_blacklist<'a>(
        &'a self,
        edit: BlacklistEdit<'a>,
    ) -> BoxFuture<'a, Result<Vec<IpRule>>> {
        Box::pin(Registry::update_blacklist(self, edit))
    }
    fn set_wake<'a>(
        &'a self,
        app: &'a AppId,
        version: &'a Version,
        failing: Option<&'a str>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(Registry::set_wake(self, app, version, failing))
    }
    fn clear_wake<'a>(&'a self, app: &'a AppId) -> BoxFuture<'a, Result<()>> {
        Box::pin(Registry::clear_wake(self, app))
    }
    fn wake_nodes(&self) -> BoxFuture<'_, Result<BTreeMap<AppId, Option<WakeNode>>>> {
        Box::pin(Registry::wake_nodes(self))
    }
}
