//! The gateway blacklist, kept in ZooKeeper only (`/caas/config/gateway/blacklist`).

use crate::error::Result;
use crate::routes::RoutesRef;
use caas_registry::IpRule;

/// Reads and edits the blacklist.
#[derive(Debug)]
pub struct Blacklist {
    routes: RoutesRef,
    /// Whole replacements from this process go one at a time.
    lock: tokio::sync::Mutex<()>,
}

impl Blacklist {
    /// The blacklist in `routes`.
    pub fn new(routes: RoutesRef) -> Blacklist {
        Blacklist {
            routes,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The rules as stored.
    pub async fn get(&self) -> Result<Vec<IpRule>> {
        Ok(self.routes.blacklist().await?)
    }

    /// Replaces the rules.
    pub async fn set(&self, rules: Vec<IpRule>) -> Result<()> {
        let _guard = self.lock.lock().await;
        Ok(self.routes.set_blacklist(&rules).await?)
    }

    /// Read-modify-write; ZooKeeper's version check keeps concurrent edits (from several
    /// schedulers) from overwriting each other.
    pub async fn update(&self, f: impl FnMut(&mut Vec<IpRule>) + Send) -> Result<Vec<IpRule>> {
        Ok(self.routes.update_blacklist(Box::new(f)).await?)
    }
}
