//! `AppLocks`: one queue per app within a process, so that the operations that change what an
//! app runs (deploy, rollback, an auto-deploy roll) wait for each other instead of failing or
//! interleaving. The database keeps several schedulers consistent; this keeps one scheduler from
//! racing itself.

use caas_types::AppId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::OwnedMutexGuard;

/// Per-app locks, taken in arrival order (tokio's mutex is fair).
#[derive(Debug, Default)]
pub struct AppLocks {
    locks: Mutex<HashMap<AppId, Arc<tokio::sync::Mutex<()>>>>,
}

/// Held while one operation changes what an app runs; dropping it lets the next one in.
#[derive(Debug)]
pub struct AppGuard {
    _guard: OwnedMutexGuard<()>,
}

impl AppLocks {
    /// Waits until no other operation on `app` runs in this process.
    pub async fn lock(&self, app: &AppId) -> AppGuard {
        let lock = {
            let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            // Drop idle entries now and then, so the map does not keep every app ever seen:
            // a count of one is the map's own handle (handles are cloned only under this lock).
            if map.len() > 1024 {
                map.retain(|_, l| Arc::strong_count(l) > 1);
            }
            map.entry(app.clone()).or_default().clone()
        };
        AppGuard {
            _guard: lock.lock_owned().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn operations_on_one_app_queue_and_other_apps_do_not_wait() {
        let locks = Arc::new(AppLocks::default());
        let a: AppId = "a".parse().expect("valid app");
        let b: AppId = "b".parse().expect("valid app");
        let first = locks.lock(&a).await;
        let waiting = {
            let locks = locks.clone();
            let a = a.clone();
            tokio::spawn(async move { locks.lock(&a).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "a second operation on `a` waits");
        // Another app is not held up.
        let _other = tokio::time::timeout(Duration::from_secs(5), locks.lock(&b))
            .await
            .expect("`b` is free");
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the queued operation runs once the first is done")
            .expect("task");
    }
}
