//! Reading one reconciliation snapshot. The order is the invariant: containers first, then
//! ZooKeeper's nodes, then the rows. A row is always written before its container and its
//! node, so a container or node seen here without a row (read afterwards) really has none.

use super::plan::Snapshot;
use super::{Reconciler, DOWN_ENGINE_WAIT};
use crate::error::Result;
use caas_types::labels;
use caas_types::HostState;
use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Reconciler {
    /// Reads what one pass looks at.
    pub(super) async fn snapshot(&self) -> Result<Snapshot> {
        let stuck_ms = i64::try_from(self.stuck_after().as_millis()).unwrap_or(i64::MAX);
        let hosts = self.store.list_hosts().await?;
        // A host marked down is asked too, briefly: if its engine still answers, what ran there
        // is removed rather than left running unaccounted for. Several hosts may share one
        // engine (loopback hosts on one machine): each is asked for its own containers only.
        let mut containers = HashMap::new();
        for h in &hosts {
            let engine = match self.engines.get(&h.name, &h.docker) {
                Ok(engine) => engine,
                Err(e) => {
                    tracing::warn!(host = %h.name, error = %e, "reconciler: engine unusable; skipping host");
                    continue;
                }
            };
            let ns = self.config.namespace.as_str();
            let by_label = [(labels::MANAGED, ns), (labels::HOST, h.name.as_str())];
            let list = engine.list(&by_label);
            let listed = if h.state != HostState::Down {
                list.await
            } else if let Ok(listed) = tokio::time::timeout(DOWN_ENGINE_WAIT, list).await {
                listed
            } else {
                tracing::info!(host = %h.name, "reconciler: the engine of a down host does not answer; leaving its containers");
                continue;
            };
            match listed {
                Ok(list) => {
                    containers.insert(h.id, list);
                }
                Err(e) => {
                    tracing::warn!(host = %h.name, error = %e, "reconciler: cannot list containers; skipping host")
                }
            }
        }
        let address_nodes = self
            .routes
            .instances()
            .await?
            .into_iter()
            .map(|(app, version, container, _)| (app, version, container))
            .collect();
        let app_nodes = self.routes.apps().await?;
        let domain_nodes = self.routes.domains().await?;
        // Every wake node, with its version where its data parses (one that does not is
        // rewritten or removed like a wrong one).
        let wake_nodes = self
            .routes
            .wake_nodes()
            .await?
            .into_iter()
            .map(|(app, node)| (app, node.map(|n| n.version)))
            .collect();
        let instances = self.store.list_all_instances().await?;
        let deployments = self.store.list_all_deployments().await?;
        let apps = self
            .store
            .list_apps(None)
            .await?
            .into_iter()
            .map(|a| a.id)
            .collect();
        let domains = self
            .store
            .list_all_domains()
            .await?
            .into_iter()
            .map(|d| (d.domain, d.app))
            .collect();
        Ok(Snapshot {
            now_ms: now_ms(),
            stuck_ms,
            hosts,
            containers,
            instances,
            deployments,
            apps,
            app_nodes,
            address_nodes,
            domains,
            domain_nodes,
            wake_nodes,
        })
    }
}
