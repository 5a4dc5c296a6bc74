//! The route cache follows the tree through watches: creates, data changes, deletes, domains,
//! the blacklist, and a forced session expiry after which it re-reads what changed meanwhile.

use caas_registry::{IpRule, RouteCache, RouteEntry};
use caas_testkit::zk::{end_session, Chroot};
use caas_testkit::{eventually, init_tracing};
use caas_types::{AppId, ContainerId, Domain, Endpoint, Version};
use std::net::IpAddr;

fn app(s: &str) -> AppId {
    s.parse().expect("app")
}
fn ver(s: &str) -> Version {
    s.parse().expect("version")
}
fn cid(s: &str) -> ContainerId {
    s.parse().expect("container")
}
fn ep(s: &str) -> Endpoint {
    s.parse().expect("endpoint")
}

fn endpoints(cache: &RouteCache, a: &AppId) -> Vec<String> {
    cache
        .snapshot()
        .endpoints(a)
        .unwrap_or_default()
        .iter()
        .map(|e: &RouteEntry| format!("{}/{}={}", e.version, e.container, e.endpoint))
        .collect()
}

#[tokio::test]
async fn cache_sees_creates_changes_and_deletes() {
    init_tracing("caas_registry=debug");
    let root = Chroot::new("cache").await;
    let reg = root.registry().await;
    let a = app("shop");
    let (v1, c1) = (ver("v1"), cid("aaaaaaaaaaaa"));
    reg.register(&a, &v1, &c1, ep("127.0.0.2:25700"))
        .await
        .expect("register");

    // Read-only credential, as a gateway runs it; the initial read sees what exists.
    let cache = RouteCache::start(&root.reader()).await.expect("start");
    assert!(cache.is_connected());
    assert_eq!(
        endpoints(&cache, &a),
        vec!["v1/aaaaaaaaaaaa=127.0.0.2:25700"]
    );
    let mut changes = cache.subscribe();
    let first = cache.snapshot().generation;

    // Create.
    let (v2, c2) = (ver("v2"), cid("bbbbbbbbbbbb"));
    reg.register(&a, &v2, &c2, ep("127.0.0.3:25701"))
        .await
        .expect("register v2");
    eventually("cache sees the new instance", || async {
        (endpoints(&cache, &a).len() == 2).then_some(())
    })
    .await;
    assert_eq!(
        endpoints(&cache, &a),
        vec![
            "v1/aaaaaaaaaaaa=127.0.0.2:25700",
            "v2/bbbbbbbbbbbb=127.0.0.3:25701"
        ]
    );
    changes.changed().await.expect("notified");
    assert!(changes.borrow_and_update().generation > first);

    // Data change.
    reg.register(&a, &v1, &c1, ep("127.0.0.4:25702"))
        .await
        .expect("move");
    eventually("cache sees the data change", || async {
        endpoints(&cache, &a)
            .contains(&"v1/aaaaaaaaaaaa=127.0.0.4:25702".to_owned())
            .then_some(())
    })
    .await;

    // Delete (the emptied version node is pruned), then the whole app.
    reg.deregister(&a, &v1, &c1).await.expect("deregister");
    eventually("cache sees the delete", || async {
        (endpoints(&cache, &a) == vec!["v2/bbbbbbbbbbbb=127.0.0.3:25701".to_owned()]).then_some(())
    })
    .await;
    reg.deregister(&a, &v2, &c2).await.expect("deregister v2");
    eventually("the app has no instance left", || async {
        cache.snapshot().endpoints(&a).is_none().then_some(())
    })
    .await;
    assert_eq!(
        cache.snapshot().apps.get(&a),
        Some(&Vec::new()),
        "still a known app"
    );
    reg.remove_app(&a).await.expect("remove app");
    eventually("app disappears", || async {
        (!cache.snapshot().apps.contains_key(&a)).then_some(())
    })
    .await;

    // Domains and blacklist.
    let d: Domain = "shop.example.com".parse().expect("domain");
    reg.set_domain(&d, &a).await.expect("domain");
    eventually("domain appears", || async {
        (cache.snapshot().domains.get(&d) == Some(&a)).then_some(())
    })
    .await;
    reg.set_domain(&d, &app("other"))
        .await
        .expect("domain moves");
    eventually("domain moves", || async {
        (cache.snapshot().domains.get(&d) == Some(&app("other"))).then_some(())
    })
    .await;
    reg.remove_domain(&d).await.expect("remove domain");
    eventually("domain goes", || async {
        cache.snapshot().domains.is_empty().then_some(())
    })
    .await;
    let rule: IpRule = "10.0.0.0/8".parse().expect("rule");
    reg.set_blacklist(&[rule]).await.expect("blacklist");
    let ip: IpAddr = "10.1.2.3".parse().expect("ip");
    eventually("blacklist applies", || async {
        cache.snapshot().is_blacklisted(ip).then_some(())
    })
    .await;
    reg.set_blacklist(&[]).await.expect("clear blacklist");
    eventually("blacklist clears", || async {
        (!cache.snapshot().is_blacklisted(ip)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn cache_recovers_from_session_expiry_and_sees_what_changed_meanwhile() {
    init_tracing("caas_registry=debug");
    let root = Chroot::new("expiry").await;
    let reg = root.registry().await;
    let a = app("shop");
    let v = ver("v1");
    let (old, new) = (cid("aaaaaaaaaaaa"), cid("cccccccccccc"));
    reg.register(&a, &v, &old, ep("127.0.0.2:25700"))
        .await
        .expect("register");

    let cache = RouteCache::start(&root.reader()).await.expect("start");
    assert_eq!(
        endpoints(&cache, &a),
        vec!["v1/aaaaaaaaaaaa=127.0.0.2:25700"]
    );
    let session = cache.session_info().expect("session");
    let before = session.id();

    // Close the cache's session from a second client that takes it over: the cache's own
    // connection then finds its session expired.
    end_session(&root.env.connect, session).await;

    // Changes while the cache is cut off: one instance goes, another comes, a domain appears.
    reg.deregister(&a, &v, &old).await.expect("deregister");
    reg.register(&a, &v, &new, ep("127.0.0.3:25701"))
        .await
        .expect("register");
    let d: Domain = "shop.example.com".parse().expect("domain");
    reg.set_domain(&d, &a).await.expect("domain");

    eventually("cache is on a new session", || async {
        cache
            .session_info()
            .filter(|s| s.id() != before && cache.is_connected())
            .map(|_| ())
    })
    .await;
    eventually("cache re-read the tree", || async {
        (endpoints(&cache, &a) == vec!["v1/cccccccccccc=127.0.0.3:25701".to_owned()]
            && cache.snapshot().domains.get(&d) == Some(&a))
        .then_some(())
    })
    .await;

    // And its watches are armed again.
    let v2 = ver("v2");
    let c2 = cid("dddddddddddd");
    reg.register(&a, &v2, &c2, ep("127.0.0.5:25702"))
        .await
        .expect("register after");
    eventually("cache sees changes after recovery", || async {
        (endpoints(&cache, &a).len() == 2).then_some(())
    })
    .await;
}

#[tokio::test]
async fn cache_started_before_the_layout_exists_sees_it_appear() {
    init_tracing("caas_registry=debug");
    let root = Chroot::new("early").await;
    // A gateway may start before any scheduler has written the layout.
    let cache = RouteCache::start(&root.reader())
        .await
        .expect("start on an empty tree");
    assert!(cache.snapshot().apps.is_empty());
    let reg = root.registry().await;
    let a = app("late");
    reg.register(&a, &ver("v1"), &cid("eeeeeeeeeeee"), ep("127.0.0.2:25799"))
        .await
        .expect("register");
    eventually("cache sees the first instance", || async {
        (endpoints(&cache, &a) == vec!["v1/eeeeeeeeeeee=127.0.0.2:25799".to_owned()]).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_known_app_without_instances_stays_in_the_snapshot_until_removed() {
    let root = Chroot::new("known").await;
    let reg = root.registry().await;
    let (known, before) = (app("known"), app("before"));
    // An app added before the cache starts is seen by the initial read.
    reg.add_app(&before).await.expect("add app");
    let cache = RouteCache::start(&root.reader()).await.expect("start");
    assert_eq!(cache.snapshot().apps.get(&before), Some(&Vec::new()));

    // Added while watching: known, with no instance (the gateway's 503).
    reg.add_app(&known).await.expect("add app");
    eventually("the new app is known", || async {
        (cache.snapshot().apps.get(&known) == Some(&Vec::new())).then_some(())
    })
    .await;
    // An instance comes and goes; the app stays known.
    let (v, c) = (ver("v1"), cid("dddddddddddd"));
    reg.register(&known, &v, &c, ep("127.0.0.2:25710"))
        .await
        .expect("register");
    eventually("the instance is seen", || async {
        (endpoints(&cache, &known).len() == 1).then_some(())
    })
    .await;
    reg.deregister(&known, &v, &c).await.expect("deregister");
    eventually("the instance is gone, the app still known", || async {
        (cache.snapshot().apps.get(&known) == Some(&Vec::new())).then_some(())
    })
    .await;
    assert!(cache.snapshot().endpoints(&known).is_none());
    // Removed: unknown (the gateway's 404).
    reg.remove_app(&known).await.expect("remove app");
    eventually("the app is forgotten", || async {
        (!cache.snapshot().apps.contains_key(&known)).then_some(())
    })
    .await;
    assert_eq!(reg.apps().await.expect("apps"), vec![before]);
}

#[tokio::test]
async fn a_full_read_sees_wake_failures_and_malformed_wake_nodes_stay_wakeable() {
    init_tracing("caas_registry=debug");
    let root = Chroot::new("wake-read").await;
    let reg = root.registry().await;
    reg.ensure_layout().await.expect("layout");
    let (failing, fine) = (app("failing"), app("fine"));
    reg.set_wake(&failing, &ver("v3"), Some("exit 1"))
        .await
        .expect("failing");
    reg.set_wake(&fine, &ver("v1"), None).await.expect("wake");
    // A node whose data does not follow the layout (written behind the registry's back).
    let raw = root.raw(Some(&root.env.platform)).await;
    let odd = "/caas/service/wake/odd";
    raw.create(
        odd,
        b"not json",
        &zookeeper_client::CreateMode::Persistent.with_acls(zookeeper_client::Acls::anyone_all()),
    )
    .await
    .expect("odd node");

    let cache = RouteCache::start(&root.reader()).await.expect("start");
    let snap = cache.snapshot();
    assert_eq!(snap.wake_failing(&failing).map(|r| &**r), Some("exit 1"));
    assert!(snap.is_wakeable(&fine) && snap.wake_failing(&fine).is_none());
    assert!(
        snap.is_wakeable(&app("odd")) && snap.wake_failing(&app("odd")).is_none(),
        "malformed: wakeable, not failing"
    );

    // The reconciler's read: every node, the malformed one without what it says.
    let nodes = reg.wake_nodes().await.expect("wake nodes");
    let readable: Vec<&AppId> = nodes
        .iter()
        .filter(|(_, n)| n.is_some())
        .map(|(a, _)| a)
        .collect();
    assert_eq!(readable, vec![&failing, &fine]);
    let node = |a: &AppId| nodes[a].clone().expect("readable");
    assert_eq!(node(&failing).version, ver("v3"));
    assert_eq!(node(&failing).failing.as_deref(), Some("exit 1"));
    assert_eq!(node(&fine).failing, None);
    assert_eq!(nodes[&app("odd")], None);
    assert_eq!(
        reg.wake_apps().await.expect("wake apps"),
        vec![failing.clone(), fine.clone(), app("odd")]
    );
    // set_wake repairs it.
    reg.set_wake(&app("odd"), &ver("v1"), None)
        .await
        .expect("repair");
    assert!(reg.wake_nodes().await.expect("wake nodes")[&app("odd")].is_some());
}

#[tokio::test]
async fn the_wake_set_follows_wake_nodes_and_leaves_the_address_tree_alone() {
    init_tracing("caas_registry=debug");
    let root = Chroot::new("wake").await;
    let reg = root.registry().await;
    reg.ensure_layout().await.expect("layout");
    let (early, sleepy) = (app("early"), app("sleepy"));
    reg.add_app(&early).await.expect("add app");
    reg.set_wake(&early, &ver("v1"), None).await.expect("wake");
    // The initial read sees a wake node written before the cache started.
    let cache = RouteCache::start(&root.reader()).await.expect("start");
    assert!(cache.snapshot().is_wakeable(&early));
    assert_eq!(cache.snapshot().apps.get(&early), Some(&Vec::new()));

    reg.add_app(&sleepy).await.expect("add app");
    reg.set_wake(&sleepy, &ver("v1"), None).await.expect("wake");
    reg.set_wake(&sleepy, &ver("v2"), None)
        .await
        .expect("wake again, another version");
    eventually("the new wake node is seen", || async {
        cache.snapshot().is_wakeable(&sleepy).then_some(())
    })
    .await;
    assert_eq!(
        reg.wake_apps().await.expect("wake apps"),
        vec![early.clone(), sleepy.clone()]
    );
    // The wake node is not an address: the app stays known with no instance.
    assert!(cache.snapshot().endpoints(&sleepy).is_none());
    assert_eq!(reg.apps().await.expect("apps").len(), 2);
    assert_eq!(cache.snapshot().wake_failing(&sleepy), None);

    // A failure written on the node reaches the snapshot, and goes again when cleared.
    reg.set_wake(&sleepy, &ver("v2"), Some("image pull failed"))
        .await
        .expect("failing");
    eventually("the failure is seen", || async {
        (cache
            .snapshot()
            .wake_failing(&sleepy)
            .map(|r| r.to_string())
            == Some("image pull failed".to_owned()))
        .then_some(())
    })
    .await;
    assert!(
        cache.snapshot().is_wakeable(&sleepy),
        "failing is still wakeable"
    );
    assert_eq!(cache.snapshot().wake_failing(&early), None);
    reg.set_wake(&sleepy, &ver("v2"), None)
        .await
        .expect("failure cleared");
    eventually("the cleared failure is seen", || async {
        let snap = cache.snapshot();
        (snap.is_wakeable(&sleepy) && snap.wake_failing(&sleepy).is_none()).then_some(())
    })
    .await;

    reg.clear_wake(&sleepy).await.expect("clear");
    reg.clear_wake(&sleepy).await.expect("clear twice");
    eventually("the cleared wake node is gone", || async {
        (!cache.snapshot().is_wakeable(&sleepy)).then_some(())
    })
    .await;
    assert!(cache.snapshot().apps.contains_key(&sleepy), "still known");

    // Removing an app takes its wake node with it.
    reg.remove_app(&early).await.expect("remove app");
    eventually("a removed app is neither known nor wakeable", || async {
        let snap = cache.snapshot();
        (!snap.is_wakeable(&early) && !snap.apps.contains_key(&early)).then_some(())
    })
    .await;
    assert!(reg.wake_apps().await.expect("wake apps").is_empty());
}
