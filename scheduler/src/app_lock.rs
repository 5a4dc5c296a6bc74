//! One operation per app at a time within this process: a deploy, an undeploy, a restart, a
//! config change, a rollback or an auto-deploy roll of one app waits for the one before it
//! instead of failing or interleaving (a restart replacing instances while a roll removes
//! them would leave neither done). Other apps are not held up. Several schedulers are kept
//! consistent by the database; this keeps one process from racing itself.
//!
//! Whoever runs the whole operation takes the lock (the API handler, the auto-deployer);
//! [`Deployments`](crate::deployments::Deployments)' own steps do not, so an operation made of
//! several steps (a roll: deploy, then undeploy) holds it once, across all of them.

use caas_types::AppId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::OwnedMutexGuard;

/// Held while an operation on one app runs; dropping it lets the next one in.
pub type AppGuard = OwnedMutexGuard<()>;

/// The per-app locks. Entries live only while someone holds or waits for them.
#[derive(Debug, Default)]
pub struct AppLocks {
    locks: Mutex<HashMap<AppId, Weak<tokio::sync::Mutex<()>>>>,
}

impl AppLocks {
    /// Waits until no other operation on `app` runs in this process, then holds it.
    pub async fn lock(&self, app: &AppId) -> AppGuard {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            // Drop the entries nobody holds any more, so the map stays as small as the work.
            locks.retain(|_, l| l.strong_count() > 0);
            match locks.get(app).and_then(Weak::upgrade) {
                Some(l) => l,
                None => {
                    let l = Arc::new(tokio::sync::Mutex::new(()));
                    locks.insert(app.clone(), Arc::downgrade(&l));
                    l
                }
            }
        };
        lock.lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn app(name: &str) -> AppId {
        name.parse().expect("valid app id")
    }

    #[tokio::test]
    async fn operations_on_one_app_queue_and_other_apps_pass() {
        let locks = Arc::new(AppLocks::default());
        let first = locks.lock(&app("shop")).await;
        let waiting = {
            let locks = locks.clone();
            tokio::spawn(async move { locks.lock(&app("shop")).await })
        };
        // Another app is not held up by the first.
        drop(locks.lock(&app("blog")).await);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the second operation waits");
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("the second operation gets the lock once the first is done")
            .expect("task");
        drop(second);
        drop(locks.lock(&app("other")).await);
        let left = locks.locks.lock().expect("not poisoned").len();
        assert!(left <= 1, "idle entries are dropped: {left}");
    }
}
