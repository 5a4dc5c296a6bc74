//! Requests held for sleeping apps (scale to zero).
//!
//! An app whose wake node exists (`/caas/service/wake/{app}`, carried into the routing table as
//! [`AppRoute::sleep`](crate::table::AppRoute)) may have no instance: it sleeps. A request
//! for it is not answered 503 but held here, in a bounded queue per app, until the route cache
//! shows the app's first address; then every waiter is released in arrival order and proxies
//! as usual. A request held longer than the activation timeout gets 504; one that finds its
//! app's queue full gets 503 with `Retry-After: 1`; at shutdown every held request ends at once
//! with 503. When the wake node says waking the app failed, the held requests are released too
//! and answered 503 with the reason (as is every new request for it, without being held).
//!
//! Only a request that found no address comes here: an app with addresses never takes the lock
//! below. The first request held for an app pings the demand reporter ([`crate::demand`]), so
//! the scheduler hears of it at once.

use crate::metrics::Stats;
use caas_types::AppId;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{oneshot, Notify};
use tokio_util::sync::CancellationToken;

/// Why the requests held for an app may go now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Release {
    /// The app has an address.
    Address,
    /// Its wake node says it failed to start: they are answered 503 at once.
    Failing,
}

/// How a held request's wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Held {
    /// The app has an address now, or failed to start: route the request again (which
    /// forwards it, or answers the failure).
    Ready,
    /// No address within the activation timeout: 504.
    TimedOut,
    /// The app's queue was full: 503 with `Retry-After`.
    QueueFull,
    /// The gateway is shutting down: 503.
    ShuttingDown,
}

/// The waiters of one app, by arrival number (so in arrival order).
#[derive(Debug, Default)]
struct Queue {
    waiters: BTreeMap<u64, oneshot::Sender<Release>>,
}

#[derive(Debug, Default)]
struct Queues {
    apps: HashMap<AppId, Queue>,
    /// The next arrival number.
    next: u64,
}

/// Every app's held requests.
#[derive(Debug)]
pub(crate) struct Wake {
    max_queue: usize,
    timeout: Duration,
    queues: Mutex<Queues>,
    closed: CancellationToken,
    /// Pinged when an app's first request is held (the reporter reports at once).
    pub(crate) demand: Notify,
    stats: Arc<Stats>,
}

/// Takes a held request out of its queue however its wait ends (released, timed out, shut
/// down, or dropped with its client).
struct Waiter<'a> {
    wake: &'a Wake,
    app: &'a AppId,
    id: u64,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut q = self.wake.lock();
        if let Some(queue) = q.apps.get_mut(self.app) {
            queue.waiters.remove(&self.id);
            if queue.waiters.is_empty() {
                q.apps.remove(self.app);
            }
        }
        drop(q);
        self.wake.stats.global.held.fetch_sub(1, Relaxed);
    }
}

impl Wake {
    /// At most `max_queue` requests held per app, each for at most `timeout`.
    pub(crate) fn new(max_queue: usize, timeout: Duration, stats: Arc<Stats>) -> Wake {
        Wake {
            max_queue,
            timeout,
            queues: Mutex::default(),
            closed: CancellationToken::new(),
            demand: Notify::new(),
            stats,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds one request for `app` until `ready` (whether the current table lets it go: the app
    /// has an address, or failed to start) says so, the timeout passes or the gateway shuts
    /// down. `ready` is asked once after the request joined the queue, which closes the race
    /// with a table that changed between the caller's lookup and the queueing:
    /// [`Wake::release`] runs after every table swap and finds the request either way.
    pub(crate) async fn hold(&self, app: &AppId, ready: impl FnOnce() -> Option<Release>) -> Held {
        let global = &self.stats.global;
        let (id, rx, first) = {
            let mut q = self.lock();
            if self.closed.is_cancelled() {
                return Held::ShuttingDown;
            }
            let id = q.next;
            let queue = q.apps.entry(app.clone()).or_default();
            if queue.waiters.len() >= self.max_queue {
                global.hold_queue_full.fetch_add(1, Relaxed);
                return Held::QueueFull;
            }
            let (tx, rx) = oneshot::channel();
            queue.waiters.insert(id, tx);
            let first = queue.waiters.len() == 1;
            q.next += 1;
            global.held.fetch_add(1, Relaxed);
            (id, rx, first)
        };
        let _waiter = Waiter {
            wake: self,
            app,
            id,
        };
        if first {
            self.demand.notify_one();
        }
        let activated = |why: Release| {
            if why == Release::Address {
                global.activated.fetch_add(1, Relaxed);
            }
            Held::Ready
        };
        if let Some(why) = ready() {
            return activated(why);
        }
        tokio::select! {
            released = rx => match released {
                Ok(why) => activated(why),
                // Dropped unsent: only `close` does that.
                Err(_) => Held::ShuttingDown,
            },
            () = tokio::time::sleep(self.timeout) => {
                global.activation_timeouts.fetch_add(1, Relaxed);
                Held::TimedOut
            }
            () = self.closed.cancelled() => Held::ShuttingDown,
        }
    }

    /// Releases, in arrival order, every request held for an app that `ready` now lets go (it
    /// has an address, or failed to start). Called after each routing table swap; returns how
    /// many were released.
    pub(crate) fn release(&self, ready: impl Fn(&AppId) -> Option<Release>) -> usize {
        let mut q = self.lock();
        if q.apps.is_empty() {
            return 0;
        }
        let go: Vec<(AppId, Release)> = q
            .apps
            .keys()
            .filter_map(|a| ready(a).map(|why| (a.clone(), why)))
            .collect();
        let mut released = 0;
        for (app, why) in go {
            if let Some(queue) = q.apps.remove(&app) {
                for (_, tx) in queue.waiters {
                    released += usize::from(tx.send(why).is_ok());
                }
            }
        }
        released
    }

    /// How many requests each app has held right now (apps with none are left out).
    pub(crate) fn held(&self) -> Vec<(AppId, usize)> {
        let q = self.lock();
        q.apps
            .iter()
            .map(|(a, queue)| (a.clone(), queue.waiters.len()))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Ends every held request with [`Held::ShuttingDown`], and every later one at once.
    pub(crate) fn close(&self) {
        let mut q = self.lock();
        self.closed.cancel();
        q.apps.clear();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::sync::atomic::AtomicBool;

    fn app(s: &str) -> AppId {
        s.parse().unwrap()
    }

    fn wake(max: usize, timeout_ms: u64) -> Arc<Wake> {
        Arc::new(Wake::new(
            max,
            Duration::from_millis(timeout_ms),
            Arc::new(Stats::default()),
        ))
    }

    /// Spawns a held request; returns its task and waits until it is queued.
    async fn spawn_hold(
        w: &Arc<Wake>,
        a: &AppId,
        order: Option<(u32, Arc<Mutex<Vec<u32>>>)>,
    ) -> tokio::task::JoinHandle<Held> {
        let before = w.held().iter().find(|(x, _)| x == a).map_or(0, |(_, n)| *n);
        let (w2, a2) = (Arc::clone(w), a.clone());
        let task = tokio::spawn(async move {
            let held = w2.hold(&a2, || None).await;
            if let Some((n, log)) = order {
                log.lock().unwrap().push(n);
            }
            held
        });
        while w.held().iter().find(|(x, _)| x == a).map_or(0, |(_, n)| *n) == before {
            tokio::task::yield_now().await;
        }
        task
    }

    #[tokio::test(flavor = "current_thread")]
    async fn held_requests_are_released_in_arrival_order_when_their_app_gets_an_address() {
        let w = wake(10, 60_000);
        let (sleepy, other) = (app("sleepy"), app("other"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for n in 0..5 {
            tasks.push(spawn_hold(&w, &sleepy, Some((n, Arc::clone(&log)))).await);
        }
        let waiting = spawn_hold(&w, &other, None).await;
        assert_eq!(w.stats.global.held.load(Relaxed), 6);
        let mut held = w.held();
        held.sort();
        assert_eq!(held, vec![(other.clone(), 1), (sleepy.clone(), 5)]);

        // A table without the app's address releases nothing.
        assert_eq!(w.release(|_| None), 0);
        assert_eq!(w.release(|a| (*a == sleepy).then_some(Release::Address)), 5);
        for t in tasks {
            assert_eq!(t.await.unwrap(), Held::Ready);
        }
        assert_eq!(*log.lock().unwrap(), vec![0, 1, 2, 3, 4], "arrival order");
        assert_eq!(w.held(), vec![(other.clone(), 1)]);
        assert_eq!(w.stats.global.held.load(Relaxed), 1);
        assert_eq!(w.stats.global.activated.load(Relaxed), 5);
        assert!(!waiting.is_finished());
        w.close();
        assert_eq!(waiting.await.unwrap(), Held::ShuttingDown);
        assert_eq!(w.stats.global.held.load(Relaxed), 0);
        assert_eq!(
            w.hold(&other, || Some(Release::Address)).await,
            Held::ShuttingDown,
            "closed for good"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_full_queue_refuses_and_a_long_wait_times_out() {
        let w = wake(2, 200);
        let a = app("sleepy");
        let first = spawn_hold(&w, &a, None).await;
        let second = spawn_hold(&w, &a, None).await;
        assert_eq!(w.hold(&a, || None).await, Held::QueueFull);
        assert_eq!(w.stats.global.hold_queue_full.load(Relaxed), 1);
        // Another app has its own queue.
        let other = spawn_hold(&w, &app("other"), None).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(first.await.unwrap(), Held::TimedOut);
        assert_eq!(second.await.unwrap(), Held::TimedOut);
        assert_eq!(other.await.unwrap(), Held::TimedOut);
        assert_eq!(w.stats.global.activation_timeouts.load(Relaxed), 3);
        assert!(w.held().is_empty(), "timed-out requests leave their queue");
        assert_eq!(w.stats.global.held.load(Relaxed), 0);
        // Room again.
        let again = spawn_hold(&w, &a, None).await;
        assert_eq!(w.release(|_| Some(Release::Address)), 1);
        assert_eq!(again.await.unwrap(), Held::Ready);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_failing_app_releases_its_held_requests_without_counting_them_activated() {
        let w = wake(10, 60_000);
        let (broken, other) = (app("broken"), app("other"));
        let held = [
            spawn_hold(&w, &broken, None).await,
            spawn_hold(&w, &broken, None).await,
        ];
        let waiting = spawn_hold(&w, &other, None).await;
        assert_eq!(w.release(|a| (*a == broken).then_some(Release::Failing)), 2);
        for t in held {
            assert_eq!(t.await.unwrap(), Held::Ready);
        }
        assert_eq!(w.held(), vec![(other.clone(), 1)]);
        assert_eq!(w.stats.global.activated.load(Relaxed), 0);
        // Failing already when queued: let go at once, not counted either.
        assert_eq!(
            w.hold(&broken, || Some(Release::Failing)).await,
            Held::Ready
        );
        assert_eq!(w.stats.global.activated.load(Relaxed), 0);
        assert_eq!(w.release(|_| Some(Release::Address)), 1);
        assert_eq!(waiting.await.unwrap(), Held::Ready);
        assert_eq!(w.stats.global.activated.load(Relaxed), 1);
        assert_eq!(w.stats.global.held.load(Relaxed), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_address_that_arrived_before_queueing_releases_at_once_and_the_first_hold_pings_demand(
    ) {
        let w = wake(10, 60_000);
        let a = app("sleepy");
        let seen = AtomicBool::new(false);
        let held = w
            .hold(&a, || {
                seen.store(true, Relaxed);
                Some(Release::Address)
            })
            .await;
        assert_eq!(held, Held::Ready);
        assert!(seen.load(Relaxed));
        assert!(w.held().is_empty());
        // The first hold of the app stored a permit for the reporter.
        tokio::time::timeout(Duration::from_millis(100), w.demand.notified())
            .await
            .expect("demand pinged");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_dropped_request_leaves_its_queue() {
        let w = wake(1, 60_000);
        let a = app("sleepy");
        let task = spawn_hold(&w, &a, None).await;
        task.abort();
        let _ = task.await;
        assert!(w.held().is_empty());
        assert_eq!(w.stats.global.held.load(Relaxed), 0);
        let again = spawn_hold(&w, &a, None).await;
        assert_eq!(w.release(|_| Some(Release::Address)), 1);
        assert_eq!(again.await.unwrap(), Held::Ready);
    }
}
