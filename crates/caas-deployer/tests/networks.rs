//! Tenant networks against the real engine (`scripts/up`): containers of one tenant started
//! and removed concurrently on its network never fail (a create that loses its network to a
//! concurrent prune makes it again), and the network goes with its last container.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use caas_deployer::{RunningContainer, TenantNetwork};
use caas_testkit::docker::{deployer, hello_image, Namespace};
use common::*;
use futures::future::join_all;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_starts_and_removals_on_one_tenant_network_all_succeed() {
    let d = deployer().await;
    let image = hello_image(&d, "v1").await;
    let ns = Namespace::new("tenantnet");
    let net = TenantNetwork::for_tenant(ns.as_str(), "churn");
    let spec = |i: usize| {
        let mut s = hello_spec(&ns, &format!("n{i}"), &image, HOST_A, free_port());
        s.network = Some(net.clone());
        s
    };

    // Six at once onto a network that does not exist yet: one creates it, the others find it.
    let first: Vec<RunningContainer> = join_all((0..6).map(|i| {
        let s = spec(i);
        let d = d.clone();
        async move { d.run(&s).await }
    }))
    .await
    .into_iter()
    .map(|r| r.expect("every start succeeds"))
    .collect();
    let on_net = d.network_addresses(net.name()).await.expect("network");
    assert_eq!(on_net.containers.len(), 6, "{on_net:?}");
    assert_eq!(
        cli_inspect(first[0].id.as_str(), "{{.HostConfig.NetworkMode}}"),
        net.name()
    );

    // Rounds of removing every container while new ones start: each removal may prune the
    // network from under a start, which then makes it again.
    let mut live = first;
    for round in 1..=3 {
        let removals = live.iter().map(|c| {
            let d = d.clone();
            let id = c.id.clone();
            async move { d.remove(&id).await }
        });
        let starts = (0..3).map(|i| {
            let s = spec(round * 10 + i);
            let d = d.clone();
            async move { d.run(&s).await }
        });
        let (removed, started) = tokio::join!(join_all(removals), join_all(starts));
        for r in removed {
            r.expect("every removal succeeds");
        }
        live = started
            .into_iter()
            .map(|r| r.unwrap_or_else(|e| panic!("a start in round {round} failed: {e}")))
            .collect();
        let on_net = d.network_addresses(net.name()).await.expect("network");
        assert_eq!(on_net.containers.len(), 3, "round {round}: {on_net:?}");
    }

    for c in &live {
        d.remove(&c.id).await.expect("remove");
    }
    let left = d.tenant_networks().await.expect("list networks");
    assert!(
        !left.iter().any(|n| n == net.name()),
        "the network went with its last container: {left:?}"
    );
    assert!(cli_containers(&ns).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_concurrent_ensures_of_a_new_network_all_succeed() {
    let d = deployer().await;
    let ns = Namespace::new("netrace");
    for round in 0..3 {
        let net = TenantNetwork::for_tenant(ns.as_str(), &format!("race{round}"));
        let ensured = join_all((0..8).map(|_| {
            let (d, net) = (d.clone(), net.clone());
            async move { d.ensure_network(&net).await }
        }))
        .await;
        for r in ensured {
            r.unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
        assert!(d.network_addresses(net.name()).await.is_ok());
        d.remove_network_if_unused(net.name()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_start_leaves_no_network_behind() {
    let d = deployer().await;
    let ns = Namespace::new("netfail");
    let net = TenantNetwork::for_tenant(ns.as_str(), "failing");
    let mut spec = hello_spec(
        &ns,
        "f1",
        "127.0.0.1:5000/no-such-app:v1",
        HOST_A,
        free_port(),
    );
    spec.network = Some(net.clone());
    assert!(
        d.run(&spec).await.is_err(),
        "an image that is not there fails"
    );
    let left = d.tenant_networks().await.expect("list networks");
    assert!(!left.iter().any(|n| n == net.name()), "{left:?}");
}
