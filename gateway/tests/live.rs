//! The gateway as deployed: routes from the registry's real `RouteCache` on the real ZooKeeper
//! (a chroot of its own), traffic to the hello image in real containers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use caas_registry::{IpRule, RouteCache};
use caas_testkit::eventually;
use caas_testkit::zk::Chroot;
use caas_types::{AppId, ContainerId, Domain, Endpoint, Version};
use common::containers::Containers;
use common::*;
use std::collections::HashMap;

/// `GET /` through the gateway: (status, hostname of the container that answered).
async fn hello(c: &reqwest::Client, gw: &TestGateway, host: &str) -> (u16, String) {
    let (status, body) = get(c, gw, host, "/").await;
    let name = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["hostname"].as_str().map(str::to_owned))
        .unwrap_or(body);
    (status, name)
}

#[tokio::test]
async fn routes_follow_zookeeper_to_real_containers() {
    let root = Chroot::new("live").await;
    let registry = root.registry().await;
    registry
        .add_app(&"hello".parse().unwrap())
        .await
        .expect("app node");
    let mut containers = Containers::new("live");
    let mut instances = Vec::new();
    for (ip, version) in [
        ("127.0.0.2", "v1"),
        ("127.0.0.3", "v1"),
        ("127.0.0.4", "v2"),
    ] {
        let (id, addr) = containers.run(ip, version);
        instances.push((id, addr, version));
    }
    let direct = client();
    for (_, addr, _) in &instances {
        eventually("the container answers /_ping", || async {
            let r = direct
                .get(format!("http://{addr}/_ping"))
                .send()
                .await
                .ok()?;
            (r.text().await.ok()? == "pong").then_some(())
        })
        .await;
    }
    let app: AppId = "hello".parse().unwrap();
    let host = "hello.caas.localhost";
    let short = |id: &str| id[..12].to_owned();
    let register = |i: usize| {
        let (id, addr, version) = &instances[i];
        let registry = registry.clone();
        let app = app.clone();
        let (id, addr, version) = (id.clone(), *addr, *version);
        async move {
            registry
                .register(
                    &app,
                    &version.parse::<Version>().unwrap(),
                    &id.parse::<ContainerId>().unwrap(),
                    addr.to_string().parse::<Endpoint>().unwrap(),
                )
                .await
                .expect("register");
        }
    };
    register(0).await;
    register(1).await;

    let cache = RouteCache::start(&root.reader())
        .await
        .expect("route cache with the read-only credential");
    let gw = TestGateway::start(test_config(), cache.snapshot()).await;
    let forward = {
        let mut rx = cache.subscribe();
        let tx = gw.routes.clone();
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let snap = rx.borrow_and_update().clone();
                tx.send_replace(snap);
            }
        })
    };
    let c = client();

    // Two instances registered: both answer.
    eventually("both registered containers answer", || async {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..4 {
            let (s, name) = hello(&c, &gw, host).await;
            if s == 200 {
                seen.insert(name);
            }
        }
        (seen.len() == 2).then_some(())
    })
    .await;

    // A new instance (another version) gets traffic, and the three share it evenly.
    register(2).await;
    let third = short(&instances[2].0);
    eventually("the new instance gets traffic", || async {
        (hello(&c, &gw, host).await.1 == third).then_some(())
    })
    .await;
    let mut seen: HashMap<String, u32> = HashMap::new();
    for _ in 0..150 {
        let (s, name) = hello(&c, &gw, host).await;
        assert_eq!(s, 200);
        *seen.entry(name).or_default() += 1;
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(
        seen.values().all(|n| *n == 50),
        "even across 3 containers: {seen:?}"
    );

    // Custom domain.
    let domain: Domain = "hello.example.com".parse().unwrap();
    assert_eq!(get(&c, &gw, "hello.example.com", "/").await.0, 404);
    registry.set_domain(&domain, &app).await.expect("domain");
    eventually("the custom domain routes", || async {
        (hello(&c, &gw, "hello.example.com").await.0 == 200).then_some(())
    })
    .await;

    // Blacklist, live.
    registry
        .set_blacklist(&["127.0.0.0/8".parse::<IpRule>().unwrap()])
        .await
        .expect("blacklist");
    eventually("blacklisted", || async {
        (hello(&c, &gw, host).await.0 == 403).then_some(())
    })
    .await;
    registry.set_blacklist(&[]).await.expect("blacklist");
    eventually("unblocked", || async {
        (hello(&c, &gw, host).await.0 == 200).then_some(())
    })
    .await;

    // A removed instance gets no more traffic.
    let (id0, _, v0) = &instances[0];
    registry
        .deregister(&app, &v0.parse().unwrap(), &id0.parse().unwrap())
        .await
        .expect("deregister");
    let first = short(id0);
    eventually("the removed instance stops getting traffic", || async {
        let mut none = true;
        for _ in 0..4 {
            none &= hello(&c, &gw, host).await.1 != first;
        }
        none.then_some(())
    })
    .await;
    for _ in 0..40 {
        assert_ne!(hello(&c, &gw, host).await.1, first);
    }

    // A container killed while still registered: no GET fails, the survivor answers.
    containers.kill(&instances[1].0);
    let survivor = third.clone();
    for _ in 0..100 {
        let (s, name) = hello(&c, &gw, host).await;
        assert_eq!(
            (s, name.as_str()),
            (200, survivor.as_str()),
            "GET failed after a container was killed"
        );
    }

    // The app exists but its last instances leave: 503 (the app node stays); an app never
    // created: 404.
    for (id, _, version) in &instances[1..] {
        registry
            .deregister(&app, &version.parse().unwrap(), &id.parse().unwrap())
            .await
            .expect("deregister");
    }
    eventually("an app with no instance answers 503", || async {
        (hello(&c, &gw, host).await.0 == 503).then_some(())
    })
    .await;
    assert_eq!(hello(&c, &gw, "never.caas.localhost").await.0, 404);
    registry.remove_app(&app).await.expect("remove app");
    eventually("a removed app answers 404", || async {
        (hello(&c, &gw, host).await.0 == 404).then_some(())
    })
    .await;
    forward.abort();
}
