//! The registry writes exactly the brief's layout, with the digest ACL, idempotently; checked
//! with raw ZooKeeper reads, not through the crate.

use caas_registry::{Error, IpRule, Registry};
use caas_testkit::init_tracing;
use caas_testkit::zk::{read, Chroot};
use caas_types::{AppId, ContainerId, Domain, Endpoint, Version};
use zookeeper_client::{CreateMode, Permission};

fn ids() -> (AppId, Version, ContainerId, Endpoint) {
    (
        "app01".parse().expect("app"),
        "v1".parse().expect("version"),
        "0123456789abcdef".parse().expect("container"),
        "127.0.0.2:25700".parse().expect("endpoint"),
    )
}

/// A node's data as JSON.
async fn json(raw: &zookeeper_client::Client, path: &str) -> serde_json::Value {
    serde_json::from_str(&read(raw, path).await.expect("node")).expect("json")
}

#[tokio::test]
async fn writes_the_exact_layout_with_digest_acl() {
    init_tracing("caas_registry=debug");
    let root = Chroot::new("layout").await;
    let reg = root.registry().await;
    reg.ensure_layout().await.expect("layout is idempotent");
    let raw = root.raw(Some(&root.env.reader)).await;
    assert_eq!(
        read(&raw, "/caas/config/gateway/blacklist")
            .await
            .as_deref(),
        Some("[]")
    );
    for dir in [
        "/caas/service/address",
        "/caas/service/wake",
        "/caas/domains",
        "/caas/election/scheduler",
    ] {
        assert!(read(&raw, dir).await.is_some(), "{dir} exists");
    }

    let (app, version, container, endpoint) = ids();
    reg.register(&app, &version, &container, endpoint)
        .await
        .expect("register");
    reg.register(&app, &version, &container, endpoint)
        .await
        .expect("register twice");
    let node = "/caas/service/address/app01/v1/0123456789abcdef";
    assert_eq!(read(&raw, node).await.as_deref(), Some("127.0.0.2:25700"));

    // Persistent, not ephemeral, and only the platform may write it, the reader read it.
    let (_, stat) = raw.get_data(node).await.expect("stat");
    // ZooKeeper masks digests for callers without ADMIN: read ACLs as the platform.
    let admin = root.raw(Some(&root.env.platform)).await;
    assert_eq!(stat.ephemeral_owner, 0, "address nodes are persistent");
    for path in [
        node,
        "/caas/service/address/app01",
        "/caas",
        "/caas/config/gateway/blacklist",
    ] {
        let (acls, _) = admin.get_acl(path).await.expect("acl");
        let mut got: Vec<(String, String, Permission)> = acls
            .iter()
            .map(|a| (a.scheme().to_owned(), a.id().to_owned(), a.permission()))
            .collect();
        got.sort_by(|a, b| a.1.cmp(&b.1));
        let mut want = vec![
            (
                "digest".to_owned(),
                root.env.platform.digest_id(),
                Permission::ALL,
            ),
            (
                "digest".to_owned(),
                root.env.reader.digest_id(),
                Permission::READ,
            ),
        ];
        want.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(got, want, "acl of {path}");
    }

    // A new endpoint for the same container overwrites the data.
    let moved: Endpoint = "127.0.0.3:25701".parse().expect("endpoint");
    reg.register(&app, &version, &container, moved)
        .await
        .expect("re-register");
    assert_eq!(read(&raw, node).await.as_deref(), Some("127.0.0.3:25701"));
    assert_eq!(
        reg.instances().await.expect("instances"),
        vec![(app.clone(), version.clone(), container.clone(), moved)]
    );

    // A second version keeps the app node when the first goes.
    let v2: Version = "v2".parse().expect("version");
    let c2: ContainerId = "fedcba9876543210".parse().expect("container");
    reg.register(&app, &v2, &c2, endpoint)
        .await
        .expect("register v2");
    reg.deregister(&app, &version, &container)
        .await
        .expect("deregister");
    assert_eq!(read(&raw, node).await, None);
    assert_eq!(
        read(&raw, "/caas/service/address/app01/v1").await,
        None,
        "empty version pruned"
    );
    assert!(
        read(&raw, "/caas/service/address/app01").await.is_some(),
        "app kept for v2"
    );
    reg.deregister(&app, &v2, &c2).await.expect("deregister v2");
    reg.deregister(&app, &v2, &c2)
        .await
        .expect("deregister twice");
    assert_eq!(
        read(&raw, "/caas/service/address/app01/v2").await,
        None,
        "empty version pruned"
    );
    assert!(
        read(&raw, "/caas/service/address/app01").await.is_some(),
        "the app node stays while the app exists (the gateway answers 503, not 404)"
    );
    reg.remove_app(&app).await.expect("remove app");
    reg.remove_app(&app).await.expect("remove app twice");
    assert_eq!(
        read(&raw, "/caas/service/address/app01").await,
        None,
        "removed app"
    );
    assert_eq!(
        raw.list_children("/caas/service/address")
            .await
            .expect("list"),
        Vec::<String>::new()
    );
    assert!(reg.instances().await.expect("instances").is_empty());

    // Wake nodes: `/caas/service/wake/{app}` = {"version": ...}, with the same ACL, next to
    // (never inside) the address tree.
    reg.set_wake(&app, &version, None).await.expect("wake");
    let wake_node = "/caas/service/wake/app01";
    assert_eq!(
        json(&raw, wake_node).await,
        serde_json::json!({"version": "v1"})
    );
    // A failure is written next to the version, its reason cut to 200 characters; None clears
    // it; writing the same again changes nothing.
    let long = format!("image pull failed: {}", "ü".repeat(300));
    reg.set_wake(&app, &version, Some(&long))
        .await
        .expect("failing");
    let cut: String = long.chars().take(200).collect();
    assert_eq!(
        json(&raw, wake_node).await,
        serde_json::json!({"version": "v1", "failing": cut})
    );
    let (_, before) = raw.get_data(wake_node).await.expect("stat");
    reg.set_wake(&app, &version, Some(&long))
        .await
        .expect("failing again");
    let (_, after) = raw.get_data(wake_node).await.expect("stat");
    assert_eq!(before.version, after.version, "idempotent: no write");
    let nodes = reg.wake_nodes().await.expect("wake nodes");
    assert_eq!(nodes.len(), 1);
    assert_eq!(
        nodes[&app],
        Some(caas_registry::WakeNode {
            version: version.clone(),
            failing: Some(cut.clone())
        })
    );
    reg.set_wake(&app, &version, None).await.expect("recovered");
    assert_eq!(
        json(&raw, wake_node).await,
        serde_json::json!({"version": "v1"})
    );
    assert_eq!(
        reg.wake_nodes().await.expect("wake nodes")[&app]
            .as_ref()
            .map(|n| n.failing.clone()),
        Some(None)
    );
    let (acls, _) = admin.get_acl(wake_node).await.expect("acl");
    assert_eq!(acls.len(), 2, "platform ALL and reader READ");
    assert!(acls.iter().all(|a| a.scheme() == "digest"));
    reg.clear_wake(&app).await.expect("clear wake");
    assert_eq!(read(&raw, wake_node).await, None);
    assert_eq!(
        raw.list_children("/caas/service/wake").await.expect("list"),
        Vec::<String>::new()
    );

    // Domains and blacklist.
    let domain: Domain = "shop.example.com".parse().expect("domain");
    reg.set_domain(&domain, &app).await.expect("domain");
    assert_eq!(
        read(&raw, "/caas/domains/shop.example.com")
            .await
            .as_deref(),
        Some("app01")
    );
    reg.remove_domain(&domain).await.expect("remove domain");
    reg.remove_domain(&domain)
        .await
        .expect("remove domain twice");
    assert_eq!(read(&raw, "/caas/domains/shop.example.com").await, None);
    let rules: Vec<IpRule> = vec![
        "10.0.0.0/8".parse().expect("rule"),
        "127.0.0.9".parse().expect("rule"),
    ];
    reg.set_blacklist(&rules).await.expect("blacklist");
    let stored = read(&raw, "/caas/config/gateway/blacklist")
        .await
        .expect("blacklist node");
    let parsed: Vec<String> = serde_json::from_str(&stored).expect("a JSON list");
    assert_eq!(
        parsed,
        vec!["10.0.0.0/8".to_owned(), "127.0.0.9".to_owned()]
    );
    assert_eq!(reg.blacklist().await.expect("read back"), rules);
}

#[tokio::test]
async fn writes_are_refused_without_the_platform_credential() {
    init_tracing("caas_registry=debug");
    let root = Chroot::new("acl").await;
    let reg = root.registry().await;
    let (app, version, container, endpoint) = ids();
    reg.register(&app, &version, &container, endpoint)
        .await
        .expect("register");
    let node = "/caas/service/address/app01/v1/0123456789abcdef";

    // The gateway's read-only credential reads but cannot write.
    let reader = root.raw(Some(&root.env.reader)).await;
    assert_eq!(
        read(&reader, node).await.as_deref(),
        Some("127.0.0.2:25700")
    );
    let opts = CreateMode::Persistent.with_acls(zookeeper_client::Acls::anyone_all());
    assert_eq!(
        reader
            .create("/caas/service/address/evil", b"x", &opts)
            .await
            .err(),
        Some(zookeeper_client::Error::NoAuth)
    );
    assert_eq!(
        reader.set_data(node, b"6.6.6.6:1", None).await.err(),
        Some(zookeeper_client::Error::NoAuth)
    );
    assert_eq!(
        reader.delete(node, None).await.err(),
        Some(zookeeper_client::Error::NoAuth)
    );

    // Nobody else even reads it (no world access).
    let anonymous = root.raw(None).await;
    assert_eq!(
        anonymous.get_data(node).await.err(),
        Some(zookeeper_client::Error::NoAuth)
    );
    assert_eq!(
        anonymous
            .set_data("/caas/config/gateway/blacklist", b"[]", None)
            .await
            .err(),
        Some(zookeeper_client::Error::NoAuth)
    );

    // Through the crate: a registry holding only the reader credential is refused too.
    let as_reader = caas_registry::AclPolicy::new(root.env.reader.clone(), None);
    let weak = Registry::connect(&root.reader(), as_reader)
        .await
        .expect("connect");
    let other: ContainerId = "aaaaaaaaaaaa".parse().expect("container");
    let err = weak
        .register(&app, &version, &other, endpoint)
        .await
        .expect_err("reader must not write");
    assert!(matches!(err, Error::NotAuthorized { .. }), "{err}");
    assert_eq!(
        read(&reader, node).await.as_deref(),
        Some("127.0.0.2:25700"),
        "untouched"
    );
}

#[tokio::test]
async fn full_reads_span_several_multi_read_chunks() {
    use futures::StreamExt as _;
    init_tracing("caas_registry=debug");
    let root = Chroot::new("chunks").await;
    let reg = root.registry().await;
    // 300 apps × 2 instances: every level of the read exceeds one 256-operation request.
    let version: Version = "v1".parse().expect("version");
    let mut want: Vec<(AppId, Version, ContainerId, Endpoint)> = (0..600u16)
        .map(|i| {
            (
                format!("app{:03}", i / 2).parse().expect("app"),
                version.clone(),
                format!("{:012x}", u64::from(i) + 1)
                    .parse()
                    .expect("container"),
                format!("127.0.0.2:{}", 20000 + i)
                    .parse()
                    .expect("endpoint"),
            )
        })
        .collect();
    let results: Vec<_> =
        futures::stream::iter(want.iter().map(|(a, v, c, e)| reg.register(a, v, c, *e)))
            .buffer_unordered(32)
            .collect()
            .await;
    assert!(results.iter().all(Result::is_ok), "all registered");
    let mut got = reg.instances().await.expect("instances");
    got.sort();
    want.sort();
    assert_eq!(got, want);
    let cache = caas_registry::RouteCache::start(&root.reader())
        .await
        .expect("cache");
    let snap = cache.snapshot();
    assert_eq!(snap.apps.len(), 300);
    assert_eq!(snap.apps.values().map(Vec::len).sum::<usize>(), 600);
}
