//! Store and placement against the real MariaDB: typed CRUD with conflicts mapped, placement
//! policies, all-or-nothing requests, and the concurrency invariant with several schedulers
//! (separate pools) placing and releasing at once on a few small hosts.

#[path = "common/db.rs"]
mod db;

use caas_scheduler::placement::{self, PlacementRequest};
use caas_scheduler::store::{DeploymentRow, NewDeployment, NewHost, Store};
use caas_scheduler::Error;
use caas_types::{
    AppId, Cpus, HealthPolicy, HostName, HostState, InstanceId, Memory, PlacementPolicy, PortRange,
    Rank, Resources, TenantName,
};
use db::TestDb;
use sqlx::Row;
use std::collections::{BTreeMap, BTreeSet};

fn app(id: &str) -> AppId {
    id.parse().expect("valid app id")
}

fn host_name(n: &str) -> HostName {
    n.parse().expect("valid host name")
}

fn new_host(name: &str, ip: u8, mem_mib: u64, millis: u32, ports: (u16, u16)) -> NewHost {
    NewHost {
        name: host_name(name),
        address: [127, 0, 0, ip].into(),
        docker: "unix:///var/run/docker.sock".into(),
        memory: Memory::from_mib(mem_mib).expect("valid memory"),
        cpus: Cpus::from_millis(millis).expect("valid cpus"),
        labels: BTreeMap::new(),
        ports: PortRange::new(ports.0, ports.1).expect("valid ports"),
    }
}

fn resources(mem_mib: u64, millis: u32) -> Resources {
    Resources {
        memory: Memory::from_mib(mem_mib).expect("valid memory"),
        cpus: Cpus::from_millis(millis).expect("valid cpus"),
    }
}

async fn deployment(
    store: &Store,
    app_id: &str,
    version: &str,
    res: Resources,
    placement: PlacementPolicy,
) -> DeploymentRow {
    let app_id = app(app_id);
    match store.create_app(&app_id, None, false).await {
        Ok(_) | Err(Error::Conflict(_)) => {}
        Err(e) => panic!("create app: {e}"),
    }
    store
        .create_deployment(&NewDeployment {
            app: app_id.clone(),
            version: version.parse().expect("valid version"),
            image: format!("127.0.0.1:5000/{app_id}:{version}"),
            resources: res,
            port: Some(8080),
            command: None,
            env: BTreeMap::new(),
            placement,
            health: HealthPolicy::default(),
            instances: 1,
            stop_timeout_s: None,
            recycle_after_s: None,
            autoscale: None,
            user: None,
            read_only: false,
        })
        .await
        .expect("create deployment")
}

/// Checks the placement invariant in the database and returns the instance count per host.
async fn check_invariant(store: &Store) -> BTreeMap<String, i64> {
    let rows = sqlx::query(
        "SELECT CAST(h.name AS BINARY) AS name, h.mem_total, h.mem_free, h.cpu_total, h.cpu_free, \
         h.port_last - h.port_first + 1 AS ports, \
         CAST(COALESCE(SUM(i.memory), 0) AS SIGNED) AS mem_used, \
         CAST(COALESCE(SUM(i.cpu), 0) AS SIGNED) AS cpu_used, COUNT(i.id) AS n, \
         COUNT(DISTINCT i.host_port) AS distinct_ports, \
         CAST(COALESCE(SUM(i.host_port NOT BETWEEN h.port_first AND h.port_last), 0) AS SIGNED) \
            AS outside \
         FROM hosts h LEFT JOIN instances i ON i.host_id = h.id GROUP BY h.id ORDER BY h.name",
    )
    .fetch_all(store.pool())
    .await
    .expect("read the invariant");
    let mut counts = BTreeMap::new();
    for r in rows {
        let name = String::from_utf8(r.get("name")).expect("utf-8 name");
        let (mem_total, mem_free, mem_used): (i64, i64, i64) =
            (r.get("mem_total"), r.get("mem_free"), r.get("mem_used"));
        let (cpu_total, cpu_free, cpu_used): (i32, i32, i64) =
            (r.get("cpu_total"), r.get("cpu_free"), r.get("cpu_used"));
        let (ports, n, distinct, outside): (i64, i64, i64, i64) = (
            r.get("ports"),
            r.get("n"),
            r.get("distinct_ports"),
            r.get("outside"),
        );
        assert!(mem_used <= mem_total, "{name}: memory over-committed");
        assert!(
            cpu_used <= i64::from(cpu_total),
            "{name}: cpu over-committed"
        );
        assert_eq!(
            mem_free,
            mem_total - mem_used,
            "{name}: free memory != capacity - claims"
        );
        assert_eq!(
            i64::from(cpu_free),
            i64::from(cpu_total) - cpu_used,
            "{name}: free cpu != capacity - claims"
        );
        assert_eq!(n, distinct, "{name}: a host port was handed out twice");
        assert!(n <= ports, "{name}: more instances than ports");
        assert_eq!(outside, 0, "{name}: a host port outside the range");
        counts.insert(name, n);
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_crud_maps_conflicts_and_not_found() {
    let (_db, store) = TestDb::new().await;
    store.ping().await.expect("ping");

    let acme: TenantName = "acme".parse().expect("valid tenant");
    store
        .create_tenant(&acme, &"ab".repeat(32), &[], Default::default())
        .await
        .expect("tenant");
    assert!(matches!(
        store
            .create_tenant(&acme, &"cd".repeat(32), &[], Default::default())
            .await,
        Err(Error::Conflict(_))
    ));
    let found = store
        .tenant_by_token_hash(&"ab".repeat(32))
        .await
        .expect("lookup");
    assert_eq!(found.map(|t| t.name), Some(acme.clone()));

    let a = store
        .create_app(&app("app01"), Some(&acme), true)
        .await
        .expect("app");
    assert_eq!(a.tenant.as_ref(), Some(&acme));
    assert!(a.auto_deploy);
    let err = store.create_app(&app("app01"), None, false).await;
    let Err(Error::Conflict(msg)) = err else {
        panic!("duplicate app: {err:?}")
    };
    assert_eq!(msg, "app app01 already exists");
    assert!(
        !msg.to_lowercase().contains("duplicate entry"),
        "no sqlx text: {msg}"
    );
    let ghost: TenantName = "ghost".parse().expect("valid tenant");
    assert!(matches!(
        store.create_app(&app("app02"), Some(&ghost), false).await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(store.list_apps(Some(&acme)).await.expect("list").len(), 1);
    assert!(matches!(
        store.get_app(&app("nope")).await,
        Err(Error::NotFound(_))
    ));

    let domain = "www.example.com".parse().expect("valid domain");
    store
        .add_domain(&app("app01"), &domain)
        .await
        .expect("domain");
    assert!(matches!(
        store.add_domain(&app("app01"), &domain).await,
        Err(Error::Conflict(_))
    ));
    assert_eq!(
        store
            .list_domains(&app("app01"))
            .await
            .expect("domains")
            .len(),
        1
    );

    let mut h = new_host("h1", 2, 1024, 2000, (25700, 25999));
    h.labels.insert("zone".into(), "a".into());
    let row = store.create_host(&h).await.expect("host");
    assert_eq!(row.mem_free, row.mem_total);
    assert_eq!(row.labels.get("zone").map(String::as_str), Some("a"));
    assert_eq!(row.to_api().memory_mb, 1024);
    assert!(matches!(
        store.create_host(&h).await,
        Err(Error::Conflict(_))
    ));
    let drained = store
        .set_host_state(&host_name("h1"), HostState::Draining)
        .await
        .expect("drain");
    assert_eq!(drained.state, HostState::Draining);
    assert!(
        drained.version > row.version,
        "a state change bumps the version"
    );
    assert!(matches!(
        store.get_host(&host_name("h9")).await,
        Err(Error::NotFound(_))
    ));
    store
        .set_host_state(&host_name("h1"), HostState::Ready)
        .await
        .expect("ready");

    let d = deployment(
        &store,
        "app01",
        "v1",
        resources(128, 500),
        PlacementPolicy::default(),
    )
    .await;
    assert_eq!(d.spec.resources, resources(128, 500));
    assert!(matches!(
        store
            .create_deployment(&NewDeployment {
                app: app("app01"),
                version: "v1".parse().expect("valid"),
                image: String::new(),
                resources: resources(128, 500),
                port: Some(8080),
                command: None,
                env: BTreeMap::new(),
                placement: PlacementPolicy::default(),
                health: HealthPolicy::default(),
                instances: 1,
                stop_timeout_s: None,
                recycle_after_s: None,
                autoscale: None,
                user: None,
                read_only: false,
            })
            .await,
        Err(Error::Conflict(_))
    ));
    let claims = placement::place(&store, &PlacementRequest::for_deployment(&d, 1))
        .await
        .expect("place");
    let inst = &claims[0].instance;
    store
        .set_instance_state(inst, caas_types::InstanceState::Starting)
        .await
        .expect("state");
    let cid = "0123456789ab".parse().expect("valid container id");
    store
        .set_instance_container(inst, Some(&cid))
        .await
        .expect("container");
    let got = store.get_instance(inst).await.expect("instance");
    assert_eq!(got.container_id, Some(cid));
    assert_eq!(
        got.to_api().expect("api").address.map(|a| a.to_string()),
        Some("127.0.0.2:25700".to_owned())
    );

    // Things in use refuse deletion with a conflict, never a driver error.
    assert!(matches!(
        store.delete_host(&host_name("h1")).await,
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        store.delete_deployment(d.id).await,
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        store.delete_app(&app("app01")).await,
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        store.delete_tenant(&acme).await,
        Err(Error::Conflict(_))
    ));
    placement::release(&store, inst).await.expect("release");
    assert!(matches!(
        placement::release(&store, inst).await,
        Err(Error::NotFound(_))
    ));
    store
        .delete_deployment(d.id)
        .await
        .expect("delete deployment");
    store.delete_app(&app("app01")).await.expect("delete app");
    store.delete_tenant(&acme).await.expect("delete tenant");
    store
        .delete_host(&host_name("h1"))
        .await
        .expect("delete host");
    assert!(check_invariant(&store).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_against_the_database() {
    let (_db, store) = TestDb::new().await;
    for (name, ip, zone, cpu) in [
        ("h1", 2, "a", 4000),
        ("h2", 3, "a", 8000),
        ("h3", 4, "b", 2000),
    ] {
        let mut h = new_host(name, ip, 2048, cpu, (25700, 25799));
        h.labels.insert("zone".into(), zone.into());
        store.create_host(&h).await.expect("host");
    }
    let mut h4 = new_host("h4", 5, 65536, 64000, (25700, 25799));
    h4.labels.insert("zone".into(), "a".into());
    store.create_host(&h4).await.expect("host");
    store
        .set_host_state(&host_name("h4"), HostState::Draining)
        .await
        .expect("drain");
    let hosts_of = |claims: &[placement::Claim]| -> Vec<String> {
        let mut v: Vec<String> = claims.iter().map(|c| c.host.to_string()).collect();
        v.sort();
        v
    };

    // Spread: one per ready host; the draining (and much bigger) h4 gets nothing.
    let spread = PlacementPolicy {
        spread: true,
        ..PlacementPolicy::default()
    };
    let d = deployment(&store, "web", "v1", resources(128, 250), spread.clone()).await;
    let claims = placement::place(&store, &PlacementRequest::for_deployment(&d, 3))
        .await
        .expect("spread");
    assert_eq!(hosts_of(&claims), vec!["h1", "h2", "h3"]);
    // Spread keeps balancing when instances outnumber hosts.
    let more = placement::place(&store, &PlacementRequest::for_deployment(&d, 3))
        .await
        .expect("spread again");
    assert_eq!(hosts_of(&more), vec!["h1", "h2", "h3"]);

    // Constraints.
    let zone_a = PlacementPolicy {
        spread: true,
        constraints: [("zone".to_string(), "a".to_string())].into(),
        ..PlacementPolicy::default()
    };
    let d = deployment(&store, "api", "v1", resources(64, 100), zone_a).await;
    let claims = placement::place(&store, &PlacementRequest::for_deployment(&d, 4))
        .await
        .expect("zone a");
    assert_eq!(hosts_of(&claims), vec!["h1", "h1", "h2", "h2"]);

    // Rank by CPU: h2 has the most free CPU.
    let by_cpu = PlacementPolicy {
        rank: Rank::Cpu,
        ..PlacementPolicy::default()
    };
    let d = deployment(&store, "cpu", "v1", resources(64, 100), by_cpu).await;
    let claims = placement::place(&store, &PlacementRequest::for_deployment(&d, 1))
        .await
        .expect("by cpu");
    assert!(
        ["h2", "h1"].contains(&claims[0].host.as_str()),
        "one of the best two by CPU, got {}",
        claims[0].host
    );

    // Co-location: "db" runs only in zone b (h3); "cache" follows it there.
    let zone_b = PlacementPolicy {
        constraints: [("zone".to_string(), "b".to_string())].into(),
        ..PlacementPolicy::default()
    };
    let d = deployment(&store, "db", "v1", resources(64, 100), zone_b).await;
    placement::place(&store, &PlacementRequest::for_deployment(&d, 1))
        .await
        .expect("db");
    let near_db = PlacementPolicy {
        colocate_with: Some(app("db")),
        ..PlacementPolicy::default()
    };
    let d = deployment(&store, "cache", "v1", resources(64, 100), near_db).await;
    let claims = placement::place(&store, &PlacementRequest::for_deployment(&d, 2))
        .await
        .expect("colocate");
    assert_eq!(hosts_of(&claims), vec!["h3", "h3"]);

    // Global: one per ready host, again only where missing, and with a constraint.
    let global = PlacementPolicy {
        global: true,
        ..PlacementPolicy::default()
    };
    let d = deployment(&store, "agent", "v1", resources(16, 10), global).await;
    let req = PlacementRequest::for_deployment(&d, 99);
    let claims = placement::place(&store, &req).await.expect("global");
    assert_eq!(hosts_of(&claims), vec!["h1", "h2", "h3"]);
    assert!(placement::place(&store, &req)
        .await
        .expect("global again")
        .is_empty());
    let global_a = PlacementPolicy {
        global: true,
        constraints: [("zone".to_string(), "a".to_string())].into(),
        ..PlacementPolicy::default()
    };
    let d = deployment(&store, "agent-a", "v1", resources(16, 10), global_a).await;
    let claims = placement::place(&store, &PlacementRequest::for_deployment(&d, 1))
        .await
        .expect("global zone a");
    assert_eq!(hosts_of(&claims), vec!["h1", "h2"]);

    // 10 TiB: unplaceable, nothing claimed, the message says memory ran out.
    let before = check_invariant(&store).await;
    let hosts_before = store.list_hosts().await.expect("hosts");
    let d = deployment(
        &store,
        "huge",
        "v1",
        resources(10 << 20, 500),
        PlacementPolicy::default(),
    )
    .await;
    let err = placement::place(&store, &PlacementRequest::for_deployment(&d, 1)).await;
    let Err(Error::Unplaceable(msg)) = err else {
        panic!("10 TiB should be unplaceable: {err:?}")
    };
    assert!(msg.contains("lack memory"), "{msg}");
    // All or nothing: 40 × 1 GiB cannot fit; the instances claimed before it ran out are released.
    let d = deployment(
        &store,
        "big",
        "v1",
        resources(1024, 100),
        PlacementPolicy::default(),
    )
    .await;
    let err = placement::place(&store, &PlacementRequest::for_deployment(&d, 40)).await;
    assert!(matches!(err, Err(Error::Unplaceable(_))), "{err:?}");
    assert_eq!(check_invariant(&store).await, before);
    assert_eq!(
        store
            .list_hosts()
            .await
            .expect("hosts")
            .iter()
            .map(|h| (h.mem_free, h.cpu_free))
            .collect::<Vec<_>>(),
        hosts_before
            .iter()
            .map(|h| (h.mem_free, h.cpu_free))
            .collect::<Vec<_>>()
    );
    assert!(store
        .list_instances_by_deployment(d.id)
        .await
        .expect("list")
        .is_empty());
    assert_eq!(before.get("h4"), Some(&0), "nothing on the draining host");
    assert!(store.metrics().snapshot().unplaceable >= 2);
}

/// Several schedulers (separate pools, as separate processes would have) fill a few small hosts
/// at once, then release and re-place concurrently; the invariant holds throughout and the
/// hosts end exactly full.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_schedulers_never_overcommit() {
    const SCHEDULERS: usize = 6;
    const TASKS_PER_SCHEDULER: usize = 3;
    let (db, store) = TestDb::new().await;
    // Phase 2 reuses released ports at once (the quarantine has its own test).
    let store = store.with_port_quarantine(0);
    // Capacity in instances of 32 MiB / 100m: h1-h3 are CPU-bound (40 each), h4 port-bound (30).
    for (name, ip, ports) in [
        ("h1", 2, (25700, 25759)),
        ("h2", 3, (25700, 25759)),
        ("h3", 4, (25700, 25759)),
        ("h4", 5, (25700, 25729)),
    ] {
        store
            .create_host(&new_host(name, ip, 2048, 4000, ports))
            .await
            .expect("host");
    }
    const CAPACITY: i64 = 40 * 3 + 30;
    let mut deployments = Vec::new();
    for (i, spread) in [(0, false), (1, true), (2, false)] {
        let p = PlacementPolicy {
            spread,
            ..PlacementPolicy::default()
        };
        deployments.push(deployment(&store, &format!("app{i}"), "v1", resources(32, 100), p).await);
    }

    let mut tasks = tokio::task::JoinSet::new();
    for s in 0..SCHEDULERS {
        let scheduler = db
            .store(TASKS_PER_SCHEDULER as u32)
            .await
            .with_port_quarantine(0);
        for t in 0..TASKS_PER_SCHEDULER {
            let scheduler = scheduler.clone();
            let d = deployments[(s + t) % deployments.len()].clone();
            // Some tasks ask for 2 instances at once, exercising all-or-nothing under contention.
            let count = if t == 0 { 2 } else { 1 };
            tasks.spawn(async move {
                let req = PlacementRequest::for_deployment(&d, count);
                let mut mine: Vec<InstanceId> = Vec::new();
                let mut contention = 0;
                // Phase 1: place until nothing fits.
                for _ in 0..200 {
                    match placement::place(&scheduler, &req).await {
                        Ok(claims) => mine.extend(claims.into_iter().map(|c| c.instance)),
                        Err(Error::Unplaceable(_)) => break,
                        Err(Error::Contention { .. }) => contention += 1,
                        Err(e) => panic!("place: {e}"),
                    }
                }
                // Phase 2: give back half, place again, concurrently with everyone else.
                let half = mine.len() / 2;
                let given_back: Vec<InstanceId> = mine.drain(..half).collect();
                for id in given_back {
                    placement::release(&scheduler, &id).await.expect("release");
                    match placement::place(&scheduler, &req).await {
                        Ok(claims) => mine.extend(claims.into_iter().map(|c| c.instance)),
                        Err(Error::Unplaceable(_)) => {}
                        Err(Error::Contention { .. }) => contention += 1,
                        Err(e) => panic!("place: {e}"),
                    }
                }
                (mine.len(), contention, scheduler.metrics().snapshot())
            });
        }
    }
    let mut held = 0;
    let mut conflicts = 0;
    let mut placements = 0;
    while let Some(result) = tasks.join_next().await {
        let (n, _contention, m) = result.expect("task");
        held += n;
        conflicts += m.conflicts;
        placements += m.placements;
    }
    let counts = check_invariant(&store).await;
    let total: i64 = counts.values().sum();
    assert_eq!(
        total,
        i64::try_from(held).expect("small"),
        "rows == what the tasks hold"
    );
    assert!(total <= CAPACITY);
    assert!(
        placements > 0 && conflicts < placements * 100,
        "{placements} {conflicts}"
    );

    // Fill what phase 2 left (a 2-instance request may not fit the last single slot).
    let single = PlacementRequest::for_deployment(&deployments[0], 1);
    loop {
        match placement::place(&store, &single).await {
            Ok(_) => {}
            Err(Error::Unplaceable(_)) => break,
            Err(e) => panic!("fill: {e}"),
        }
    }
    let counts = check_invariant(&store).await;
    assert_eq!(counts.values().sum::<i64>(), CAPACITY, "{counts:?}");
    assert_eq!(counts.get("h4"), Some(&30));
    let ports: BTreeSet<i64> = sqlx::query_scalar::<_, i32>(
        "SELECT host_port FROM instances i JOIN hosts h ON h.id = i.host_id WHERE h.name = 'h4'",
    )
    .fetch_all(store.pool())
    .await
    .expect("ports")
    .into_iter()
    .map(i64::from)
    .collect();
    assert_eq!(ports, (25700..=25729).collect());
}

/// A released host port stays out of use for the quarantine: the next claims take other
/// ports, and with every port in quarantine nothing fits; without a quarantine it is reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_port_is_not_handed_out_again_during_its_quarantine() {
    let (_db, store) = TestDb::new().await;
    store
        .create_host(&new_host("h1", 2, 1024, 2000, (30000, 30001)))
        .await
        .expect("host");
    let d = deployment(
        &store,
        "web",
        "v1",
        resources(32, 100),
        PlacementPolicy::default(),
    )
    .await;
    let req = PlacementRequest::for_deployment(&d, 1);
    let first = placement::place(&store, &req).await.expect("place")[0].clone();
    assert_eq!(first.host_port, Some(30000));
    placement::release(&store, &first.instance)
        .await
        .expect("release");
    let second = placement::place(&store, &req).await.expect("place")[0].clone();
    assert_eq!(second.host_port, Some(30001), "30000 is in quarantine");
    placement::release(&store, &second.instance)
        .await
        .expect("release");
    match placement::place(&store, &req).await {
        Err(Error::Unplaceable(m)) => assert!(m.contains("port"), "{m}"),
        other => panic!("both ports in quarantine: {other:?}"),
    }
    let quarantined: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM port_quarantine")
        .fetch_one(store.pool())
        .await
        .expect("count");
    assert_eq!(quarantined, 2);
    let reusing = store.clone().with_port_quarantine(0);
    let again = placement::place(&reusing, &req).await.expect("place")[0].clone();
    assert_eq!(
        again.host_port,
        Some(30000),
        "no quarantine: the lowest port again"
    );
    check_invariant(&store).await;
}

/// State changes from health verdicts are compare-and-set: once teardown marked an instance
/// `stopping`, a late verdict changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_health_verdict_never_turns_stopping_back_into_running() {
    use caas_types::InstanceState::{Pending, Running, Starting, Stopping, Unhealthy};
    let (_db, store) = TestDb::new().await;
    store
        .create_host(&new_host("h1", 2, 1024, 2000, (30000, 30009)))
        .await
        .expect("host");
    let d = deployment(
        &store,
        "web",
        "v1",
        resources(32, 100),
        PlacementPolicy::default(),
    )
    .await;
    let req = PlacementRequest::for_deployment(&d, 1);
    let id = placement::place(&store, &req).await.expect("place")[0]
        .instance
        .clone();
    let alive = [Pending, Starting, Running, Unhealthy];
    assert!(store
        .set_instance_state_if(&id, &alive, Running)
        .await
        .expect("cas"));
    store.set_instance_state(&id, Stopping).await.expect("stop");
    assert!(!store
        .set_instance_state_if(&id, &alive, Running)
        .await
        .expect("cas"));
    assert_eq!(store.get_instance(&id).await.expect("row").state, Stopping);
}

// The baseline is the benchmark's, not the scheduler's: it lives beside the example.
#[path = "../examples/bench_placement/pessimistic.rs"]
mod pessimistic;

/// The benchmark's pessimistic baseline keeps the same invariant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pessimistic_baseline_keeps_the_invariant() {
    let (db, store) = TestDb::new().await;
    for (name, ip) in [("h1", 2), ("h2", 3)] {
        store
            .create_host(&new_host(name, ip, 1024, 2000, (25700, 25799)))
            .await
            .expect("host");
    }
    let d = deployment(
        &store,
        "base",
        "v1",
        resources(64, 100),
        PlacementPolicy::default(),
    )
    .await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let scheduler = db.store(2).await;
        let req = PlacementRequest::for_deployment(&d, 1);
        tasks.spawn(async move {
            let mut n = 0;
            for _ in 0..100 {
                match pessimistic::place_pessimistic(&scheduler, &req).await {
                    Ok(c) => n += c.len(),
                    Err(Error::Unplaceable(_)) => break,
                    Err(e) => panic!("place: {e}"),
                }
            }
            n
        });
    }
    let mut placed = 0;
    while let Some(n) = tasks.join_next().await {
        placed += n.expect("task");
    }
    let counts = check_invariant(&store).await;
    // 1024 MiB / 64 MiB = 16 per host, CPU allows 20.
    assert_eq!(placed, 32);
    assert_eq!(counts.values().sum::<i64>(), 32);
}
