//! Leader fencing against the real ZooKeeper, MariaDB, Docker engine and registry (hello
//! image): a scheduler whose candidacy another took over repairs nothing, even when its own
//! flag has not caught up, and repairs again once it leads.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/db.rs"]
mod db;
#[path = "common/platform.rs"]
mod platform;

use caas_registry::LeaderElection;
use caas_scheduler::Error;
use caas_testkit::eventually;
use caas_testkit::zk::{children, super_client};
use platform::Platform;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scheduler_that_lost_the_leadership_repairs_nothing() {
    // Periodic passes rare, so only the passes this test runs repair anything.
    let p = Platform::new(&["--reconcile-secs", "3600"]).await;
    caas_testkit::docker::hello_image(&p.docker, "v1").await;
    p.add_hosts(1, 1024, 2.0).await;
    p.create_app("hello").await;
    p.deploy(
        "hello",
        json!({"version": "v1", "instances": 1, "memory_mb": 64, "cpus": 0.1}),
    )
    .await;
    let zk = super_client().await;
    let election = format!("{}/caas/election/scheduler", p.chroot);
    eventually("the scheduler leads", || async {
        p.control().is_leader().then_some(())
    })
    .await;

    // Another candidate takes over: the scheduler's node is deleted behind its back and the
    // thief, queued behind it, becomes the lowest.
    let thief = LeaderElection::join(&p.zk_platform(), "thief")
        .await
        .expect("join");
    let mut nodes = children(&zk, &election).await.expect("candidates");
    nodes.sort();
    zk.delete(&format!("{election}/{}", nodes[0]), None)
        .await
        .expect("delete the scheduler's candidate node");
    thief.wait_leader().await.expect("the thief leads");

    // Drift the reconciler would repair: an address node gone.
    let nodes = p.nodes().await;
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    let path = format!("{}/caas/service/address/{}", p.chroot, nodes[0].0);
    zk.delete(&path, None)
        .await
        .expect("delete the address node");
    match p.control().reconciler.reconcile().await {
        Err(Error::NotLeader(m)) => assert!(m.contains("leader"), "{m}"),
        other => panic!("a pass without the leadership repairs nothing: {other:?}"),
    }
    assert!(p.nodes().await.is_empty(), "the node stays missing");

    // The thief resigns: the scheduler leads again and its pass restores the node.
    thief.resign().await;
    eventually("the scheduler leads again", || async {
        p.control().is_leader().then_some(())
    })
    .await;
    // Leading again starts with a pass of its own (the interval's first tick); ours may find
    // the node back already. Either way it is restored, once.
    let report = eventually("a pass with the leadership", || async {
        p.control().reconciler.reconcile().await.ok()
    })
    .await;
    assert!(report.nodes <= 1, "{report:?}");
    eventually("the address node restored", || async {
        (p.nodes().await.len() == 1).then_some(())
    })
    .await;
}
