//! The hot-path routing table: host → app → backends, rebuilt from each route snapshot and read
//! without locks. Round-robin counters and passive-health state live in `Arc`s that survive
//! rebuilds, so a changing address set keeps balancing fairly and a failing backend stays
//! skipped.

use crate::h1::upstream::IdleConns;
use crate::metrics::{AppStats, Stats};
use crate::pool::Pool;
use crate::wake::Release;
use caas_registry::{IpRule, RouteSnapshot, WakeState};
use caas_types::{AppId, Endpoint};
use http::uri::Authority;
use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most backends one request may try, whatever the configuration says.
pub(crate) const MAX_TRIES: usize = 8;

/// Passive-health policy and the clock it runs on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HealthPolicy {
    /// Consecutive failures that eject a backend.
    pub(crate) eject_after: u32,
    /// How long an ejected backend is skipped.
    pub(crate) eject_for: Duration,
    /// Zero of the millisecond clock stored in atomics.
    pub(crate) epoch: Instant,
    /// Requests in flight per backend at most.
    pub(crate) max_inflight: usize,
}

impl HealthPolicy {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// One backend address and what the gateway has seen of it.
#[derive(Debug)]
pub(crate) struct Backend {
    pub(crate) endpoint: Endpoint,
    failures: AtomicU32,
    /// Milliseconds since the policy's epoch until which the backend is skipped.
    ejected_until: AtomicU64,
    inflight: AtomicUsize,
    /// Idle keep-alive connections to it of the general (hyper) path; they close when the
    /// backend leaves the table.
    pub(crate) pool: Arc<Pool>,
    /// Idle keep-alive connections to it of the HTTP/1.1 fast path.
    pub(crate) idle: IdleConns,
}

impl Backend {
    fn new(endpoint: Endpoint) -> Option<Backend> {
        Authority::try_from(endpoint.to_string()).ok()?;
        Some(Backend {
            endpoint,
            failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            inflight: AtomicUsize::new(0),
            pool: Arc::default(),
            idle: IdleConns::default(),
        })
    }

    fn ejected(&self, now_ms: u64) -> bool {
        self.ejected_until.load(Relaxed) > now_ms
    }

    /// A try succeeded: the backend is healthy again.
    pub(crate) fn success(&self) {
        if self.failures.load(Relaxed) != 0 {
            self.failures.store(0, Relaxed);
        }
    }

    /// A try failed; after enough in a row the backend is skipped for a while.
    pub(crate) fn failure(&self, policy: &HealthPolicy) {
        let n = self.failures.fetch_add(1, Relaxed) + 1;
        if n >= policy.eject_after {
            let until = policy.now_ms() + u64::try_from(policy.eject_for.as_millis()).unwrap_or(0);
            self.ejected_until.store(until, Relaxed);
            tracing::warn!(backend = %self.endpoint, failures = n, "backend ejected");
        }
    }
}

/// Holds one in-flight slot of a backend until dropped.
#[derive(Debug)]
pub(crate) struct Slot(Arc<Backend>);

impl Slot {
    pub(crate) fn backend(&self) -> &Arc<Backend> {
        &self.0
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Relaxed);
    }
}

/// One app's routes.
#[derive(Debug)]
pub(crate) struct AppRoute {
    pub(crate) app: AppId,
    backends: Box<[Arc<Backend>]>,
    rr: Arc<AtomicUsize>,
    pub(crate) stats: Arc<AppStats>,
    /// What a request for the app gets while it has no address; never looked at while it has
    /// one.
    pub(crate) sleep: Sleep,
}

/// What a request for an app with no address gets, by the app's wake node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Sleep {
    /// No wake node: 503 at once.
    Never,
    /// The app may sleep: the request is held (`crate::wake`) until it has an address.
    Wakes,
    /// The app may sleep but the wake node says waking it failed (the reason): 503 at once,
    /// with `Retry-After`.
    Failing(Arc<str>),
}

impl Sleep {
    fn of(snap: &RouteSnapshot, app: &AppId) -> Sleep {
        match snap.wake.get(app) {
            None => Sleep::Never,
            Some(WakeState { failing: None }) => Sleep::Wakes,
            Some(WakeState {
                failing: Some(reason),
            }) => Sleep::Failing(Arc::clone(reason)),
        }
    }
}

/// Backends already tried by one request.
#[derive(Debug, Default)]
pub(crate) struct Tried {
    idx: [usize; MAX_TRIES],
    len: usize,
}

impl Tried {
    fn contains(&self, i: usize) -> bool {
        self.idx[..self.len].contains(&i)
    }

    /// How many backends were tried.
    pub(crate) fn count(&self) -> usize {
        self.len
    }
}

impl AppRoute {
    /// Whether the app has any address at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.backends.is_empty()
    }

    /// The next backend in round-robin order that is not ejected, not full and not yet tried by
    /// this request. A backend passed over costs another draw of the counter, so the usable
    /// backends keep sharing evenly (the one after a dead backend does not get its turns too).
    /// If no draw finds one, a scan takes the first usable backend, else the first untried one
    /// that is not full even if ejected (a guess beats a certain 503). `None` when nothing is
    /// left.
    pub(crate) fn pick(&self, tried: &mut Tried, policy: &HealthPolicy) -> Option<Slot> {
        let n = self.backends.len();
        if n == 0 || tried.len >= MAX_TRIES || tried.len >= n {
            return None;
        }
        let now = policy.now_ms();
        let usable = |i: usize| {
            let b = &self.backends[i];
            !tried.contains(i) && b.inflight.load(Relaxed) < policy.max_inflight && !b.ejected(now)
        };
        let mut last = 0;
        for _ in 0..n {
            last = self.rr.fetch_add(1, Relaxed) % n;
            if usable(last) {
                return Some(self.take(last, tried));
            }
        }
        let mut fallback = None;
        for k in 0..n {
            let i = (last + k) % n;
            if usable(i) {
                return Some(self.take(i, tried));
            }
            let b = &self.backends[i];
            if !tried.contains(i) && b.inflight.load(Relaxed) < policy.max_inflight {
                fallback.get_or_insert(i);
            }
        }
        fallback.map(|i| self.take(i, tried))
    }

    fn take(&self, i: usize, tried: &mut Tried) -> Slot {
        tried.idx[tried.len] = i;
        tried.len += 1;
        let b = &self.backends[i];
        b.inflight.fetch_add(1, Relaxed);
        Slot(Arc::clone(b))
    }
}

/// What a Host header resolves to.
#[derive(Debug)]
pub(crate) enum Route<'a> {
    /// A known app (possibly with no address: 503).
    App(&'a Arc<AppRoute>),
    /// Nothing routes there: 404.
    Unknown,
}

/// The table one snapshot produces.
#[derive(Debug, Default)]
pub(crate) struct Table {
    apps: HashMap<Box<str>, Arc<AppRoute>>,
    domains: HashMap<Box<str>, Arc<AppRoute>>,
    blacklist: Vec<IpRule>,
    /// `.{gateway domain}`
    suffix: Box<str>,
    pub(crate) generation: u64,
}

impl Table {
    /// An empty table for `domain`.
    pub(crate) fn empty(domain: &str) -> Table {
        Table {
            suffix: format!(".{domain}").into_boxed_str(),
            ..Table::default()
        }
    }

    /// Builds the table for `snap`, reusing `prev`'s counters and backend state.
    pub(crate) fn build(snap: &RouteSnapshot, prev: &Table, stats: &Stats) -> Table {
        let mut apps: HashMap<Box<str>, Arc<AppRoute>> = HashMap::with_capacity(snap.apps.len());
        let old_backends: HashMap<Endpoint, &Arc<Backend>> = prev
            .apps
            .values()
            .flat_map(|r| r.backends.iter())
            .map(|b| (b.endpoint, b))
            .collect();
        let route_for = |app: &AppId, endpoints: &[Endpoint]| -> Arc<AppRoute> {
            let old = prev.apps.get(app.as_str());
            let mut backends: Vec<Arc<Backend>> = Vec::with_capacity(endpoints.len());
            for e in endpoints {
                if backends.iter().any(|b| b.endpoint == *e) {
                    continue;
                }
                match old_backends.get(e) {
                    Some(b) => backends.push(Arc::clone(b)),
                    None => match Backend::new(*e) {
                        Some(b) => backends.push(Arc::new(b)),
                        None => tracing::warn!(endpoint = %e, "unusable endpoint skipped"),
                    },
                }
            }
            Arc::new(AppRoute {
                app: app.clone(),
                backends: backends.into_boxed_slice(),
                rr: old.map(|r| Arc::clone(&r.rr)).unwrap_or_default(),
                stats: old
                    .map(|r| Arc::clone(&r.stats))
                    .unwrap_or_else(|| stats.app(app.as_str())),
                sleep: Sleep::of(snap, app),
            })
        };
        for (app, entries) in &snap.apps {
            let endpoints: Vec<Endpoint> = entries.iter().map(|e| e.endpoint).collect();
            apps.insert(app.as_str().into(), route_for(app, &endpoints));
        }
        let mut domains = HashMap::with_capacity(snap.domains.len());
        for (domain, app) in &snap.domains {
            let route = match apps.get(app.as_str()) {
                Some(r) => Arc::clone(r),
                None => route_for(app, &[]),
            };
            domains.insert(domain.as_str().into(), route);
        }
        Table {
            apps,
            domains,
            blacklist: snap.blacklist.clone(),
            suffix: prev.suffix.clone(),
            generation: snap.generation,
        }
    }

    /// Every backend once per app that routes to it (for sweeping idle connections).
    pub(crate) fn backends(&self) -> impl Iterator<Item = &Arc<Backend>> {
        self.apps.values().flat_map(|r| r.backends.iter())
    }

    /// The route of `app` by its id (the one its domains share).
    pub(crate) fn app(&self, app: &AppId) -> Option<&Arc<AppRoute>> {
        self.apps.get(app.as_str())
    }

    /// Whether a request held for `app` can go, and why: the app has an address now, or it
    /// failed to start (the request is answered 503 at once rather than left waiting).
    pub(crate) fn release(&self, app: &AppId) -> Option<Release> {
        let route = self.app(app)?;
        if !route.is_empty() {
            Some(Release::Address)
        } else if matches!(route.sleep, Sleep::Failing(_)) {
            Some(Release::Failing)
        } else {
            None
        }
    }

    /// Number of apps routed.
    pub(crate) fn len(&self) -> usize {
        self.apps.len()
    }

    /// Whether `ip` is refused.
    pub(crate) fn is_blacklisted(&self, ip: IpAddr) -> bool {
        !self.blacklist.is_empty() && self.blacklist.iter().any(|r| r.contains(ip))
    }

    /// Whether `host` routes to an app (a platform name of a routed app, or a custom domain in
    /// the table): what a certificate of `--tls-dir` is offered by.
    pub(crate) fn routes(&self, host: &str) -> bool {
        matches!(self.lookup(host), Route::App(_))
    }

    /// Resolves a Host header (or `:authority`): the port is ignored, case does not matter.
    pub(crate) fn lookup(&self, host: &str) -> Route<'_> {
        let host = strip_port(host);
        let host = host.strip_suffix('.').unwrap_or(host);
        let host: Cow<'_, str> = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(host.to_ascii_lowercase())
        } else {
            Cow::Borrowed(host)
        };
        let found = match host.strip_suffix(&*self.suffix) {
            Some(label) if !label.contains('.') => self.apps.get(label),
            _ => self.domains.get(&*host),
        };
        match found {
            Some(r) => Route::App(r),
            None => Route::Unknown,
        }
    }
}

/// `host:port` → `host`; IPv6 literals (`[::1]:80`) keep their brackets.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map_or(host, |(h, _)| h);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use caas_registry::RouteEntry;

    fn entry(port: u16) -> RouteEntry {
        RouteEntry {
            version: "v1".parse().expect("version"),
            container: format!("{port:012x}").parse().expect("container"),
            endpoint: format!("127.0.0.1:{port}").parse().expect("endpoint"),
        }
    }

    fn snapshot(ports: &[u16]) -> RouteSnapshot {
        let mut s = RouteSnapshot::default();
        s.apps.insert(
            "shop".parse().expect("app"),
            ports.iter().map(|p| entry(*p)).collect(),
        );
        s.apps.insert("empty".parse().expect("app"), vec![]);
        s.apps.insert("sleepy".parse().expect("app"), vec![]);
        s.wake
            .insert("sleepy".parse().expect("app"), WakeState::default());
        s.apps.insert("broken".parse().expect("app"), vec![]);
        s.wake.insert(
            "broken".parse().expect("app"),
            WakeState {
                failing: Some(Arc::from("exit 1")),
            },
        );
        s.domains.insert(
            "www.example.com".parse().expect("domain"),
            "shop".parse().expect("app"),
        );
        s.domains.insert(
            "gone.example.com".parse().expect("domain"),
            "gone".parse().expect("app"),
        );
        s
    }

    fn policy() -> HealthPolicy {
        HealthPolicy {
            eject_after: 2,
            eject_for: Duration::from_secs(60),
            epoch: Instant::now(),
            max_inflight: 100,
        }
    }

    fn port_of(r: &AppRoute, p: &HealthPolicy) -> u16 {
        r.pick(&mut Tried::default(), p)
            .expect("backend")
            .backend()
            .endpoint
            .port()
    }

    #[test]
    fn hosts_resolve_with_port_case_and_custom_domains() {
        let stats = Stats::default();
        let t = Table::build(&snapshot(&[1001]), &Table::empty("caas.localhost"), &stats);
        for host in [
            "shop.caas.localhost",
            "SHOP.caas.localhost:8080",
            "shop.caas.localhost.",
            "www.example.com:443",
        ] {
            assert!(
                matches!(t.lookup(host), Route::App(r) if r.app.as_str() == "shop"),
                "{host}"
            );
        }
        assert!(matches!(t.lookup("empty.caas.localhost"), Route::App(r) if r.is_empty()));
        assert!(matches!(t.lookup("gone.example.com"), Route::App(r) if r.is_empty()));
        assert!(
            matches!(t.lookup("sleepy.caas.localhost"), Route::App(r) if r.is_empty() && r.sleep == Sleep::Wakes)
        );
        assert!(
            matches!(t.lookup("broken.caas.localhost"), Route::App(r) if r.is_empty() && r.sleep == Sleep::Failing(Arc::from("exit 1")))
        );
        assert!(
            matches!(t.lookup("empty.caas.localhost"), Route::App(r) if r.sleep == Sleep::Never)
        );
        assert!(
            matches!(t.lookup("shop.caas.localhost"), Route::App(r) if r.sleep == Sleep::Never)
        );
        let release = |app: &str| t.release(&app.parse().expect("app"));
        assert_eq!(release("shop"), Some(Release::Address));
        assert_eq!(release("broken"), Some(Release::Failing));
        assert_eq!(release("sleepy"), None);
        assert_eq!(release("empty"), None);
        assert_eq!(release("nope"), None);
        for host in [
            "nope.caas.localhost",
            "a.shop.caas.localhost",
            "caas.localhost",
            "127.0.0.1:8080",
            "[::1]:80",
            "",
        ] {
            assert!(matches!(t.lookup(host), Route::Unknown), "{host}");
        }
    }

    #[test]
    fn round_robin_is_even_and_survives_rebuilds() {
        let stats = Stats::default();
        let p = policy();
        let t1 = Table::build(
            &snapshot(&[1, 2, 3]),
            &Table::empty("caas.localhost"),
            &stats,
        );
        let Route::App(r) = t1.lookup("shop.caas.localhost") else {
            panic!("routed")
        };
        let mut counts = HashMap::new();
        for _ in 0..300 {
            *counts.entry(port_of(r, &p)).or_insert(0) += 1;
        }
        assert_eq!(
            counts.values().copied().collect::<Vec<_>>(),
            vec![100, 100, 100]
        );
        let t2 = Table::build(&snapshot(&[1, 2, 3, 4]), &t1, &stats);
        let Route::App(r2) = t2.lookup("shop.caas.localhost") else {
            panic!("routed")
        };
        assert!(Arc::ptr_eq(&r.rr, &r2.rr), "the counter survives");
        let mut counts = HashMap::new();
        for _ in 0..400 {
            *counts.entry(port_of(r2, &p)).or_insert(0) += 1;
        }
        assert!(counts.values().all(|c| *c == 100), "{counts:?}");
    }

    #[test]
    fn failing_backends_are_skipped_then_return() {
        let stats = Stats::default();
        let mut p = policy();
        let t = Table::build(&snapshot(&[1, 2]), &Table::empty("caas.localhost"), &stats);
        let Route::App(r) = t.lookup("shop.caas.localhost") else {
            panic!("routed")
        };
        let bad = r
            .backends
            .iter()
            .find(|b| b.endpoint.port() == 1)
            .expect("backend");
        bad.failure(&p);
        assert!(
            (0..10).any(|_| port_of(r, &p) == 1),
            "one failure does not eject"
        );
        bad.failure(&p);
        assert!((0..10).all(|_| port_of(r, &p) == 2), "two do");
        let t3 = Table::build(&snapshot(&[1, 2, 3]), &t, &stats);
        let Route::App(r3) = t3.lookup("shop.caas.localhost") else {
            panic!("routed")
        };
        let mut counts = HashMap::new();
        for _ in 0..100 {
            *counts.entry(port_of(r3, &p)).or_insert(0) += 1;
        }
        assert_eq!(
            counts.get(&2),
            Some(&50),
            "survivors share evenly: {counts:?}"
        );
        assert_eq!(
            counts.get(&3),
            Some(&50),
            "survivors share evenly: {counts:?}"
        );
        let t2 = Table::build(&snapshot(&[1, 2]), &t, &stats);
        let Route::App(r2) = t2.lookup("shop.caas.localhost") else {
            panic!("routed")
        };
        assert!(
            (0..10).all(|_| port_of(r2, &p) == 2),
            "ejection survives a rebuild"
        );
        p.eject_for = Duration::ZERO;
        bad.failure(&p);
        assert!(
            (0..10).any(|_| port_of(r2, &p) == 1),
            "back after the ejection time"
        );
    }

    #[test]
    fn a_request_never_tries_one_backend_twice() {
        let stats = Stats::default();
        let p = policy();
        let t = Table::build(
            &snapshot(&[1, 2, 3]),
            &Table::empty("caas.localhost"),
            &stats,
        );
        let Route::App(r) = t.lookup("shop.caas.localhost") else {
            panic!("routed")
        };
        let mut tried = Tried::default();
        let mut seen: Vec<u16> = (0..3)
            .map(|_| {
                r.pick(&mut tried, &p)
                    .expect("backend")
                    .backend()
                    .endpoint
                    .port()
            })
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, vec![1, 2, 3]);
        assert!(r.pick(&mut tried, &p).is_none());
    }
}
