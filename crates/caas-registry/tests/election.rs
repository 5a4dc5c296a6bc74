//! Leader election: exactly one leader; leadership passes on when the leader's session ends,
//! whether it resigns, is dropped, or its session is closed from outside; the fence asks
//! ZooKeeper, so a leader that has lost its node is refused before it hears of it.

use caas_registry::LeaderElection;
use caas_testkit::zk::{end_session, Chroot};
use caas_testkit::{eventually, init_tracing, WAIT};

fn leaders(c: &[&LeaderElection]) -> usize {
    c.iter().filter(|e| e.is_leader()).count()
}

#[tokio::test]
async fn leadership_hands_over_when_the_leader_session_ends() {
    init_tracing("caas_registry=debug");
    let root = Chroot::new("election").await;
    let cfg = root.platform();
    let a = LeaderElection::join(&cfg, "sched-a").await.expect("join a");
    a.wait_leader().await.expect("first candidate leads");
    let b = LeaderElection::join(&cfg, "sched-b").await.expect("join b");
    let c = LeaderElection::join(&cfg, "sched-c").await.expect("join c");
    let mut b_changes = b.subscribe();
    assert!(a.is_leader());
    assert_eq!(leaders(&[&a, &b, &c]), 1, "exactly one leader");

    // The candidate nodes are ephemeral sequential nodes holding each candidate's id.
    let raw = root.raw(Some(&root.env.platform)).await;
    let mut nodes = raw
        .list_children("/caas/election/scheduler")
        .await
        .expect("list");
    nodes.sort();
    assert_eq!(nodes.len(), 3);
    let (data, stat) = raw
        .get_data(&format!("/caas/election/scheduler/{}", nodes[0]))
        .await
        .expect("leader node");
    assert_eq!(data, b"sched-a");
    assert_ne!(stat.ephemeral_owner, 0, "candidate nodes are ephemeral");

    // The leader's process goes away (its session is closed): the next candidate takes over.
    drop(a);
    tokio::time::timeout(WAIT, b.wait_leader())
        .await
        .expect("b leads in time")
        .expect("b leads");
    assert!(*b_changes.borrow_and_update());
    assert_eq!(leaders(&[&b, &c]), 1);

    // The new leader's session is closed from outside (as when it expires): c takes over,
    // and b, back on a new session, queues up behind c.
    let before = b.session_info().expect("session");
    let before_id = before.id();
    // Closing a session from outside races with b's own client reconnecting to it (the
    // thief's close is sent as it drops); under load b may win and keep the session, so end it
    // again while b still holds it, until c leads.
    let mut c_leads = false;
    for _ in 0..4 {
        let session = b
            .session_info()
            .filter(|s| s.id() == before_id)
            .unwrap_or_else(|| before.clone());
        end_session(&root.env.connect, session).await;
        if let Ok(led) = tokio::time::timeout(WAIT / 4, c.wait_leader()).await {
            led.expect("c leads");
            c_leads = true;
            break;
        }
    }
    assert!(c_leads, "c leads in time");
    eventually("b rejoins on a new session as a follower", || async {
        let rejoined = b.session_info().is_some_and(|s| s.id() != before_id);
        let nodes = raw
            .list_children("/caas/election/scheduler")
            .await
            .expect("list");
        (rejoined && nodes.len() == 2).then_some(())
    })
    .await;
    assert!(c.is_leader());
    assert!(!b.is_leader(), "b does not lead after losing its session");

    // Resigning deletes the node at once and hands over.
    c.resign().await;
    tokio::time::timeout(WAIT, b.wait_leader())
        .await
        .expect("b leads again in time")
        .expect("b leads again");
    b.resign().await;
    let left = raw
        .list_children("/caas/election/scheduler")
        .await
        .expect("list");
    assert!(
        left.is_empty(),
        "resigned candidates leave no node: {left:?}"
    );
}

#[tokio::test]
async fn the_fence_asks_zookeeper_so_a_leader_that_lost_its_node_is_refused_at_once() {
    init_tracing("caas_registry=debug");
    let root = Chroot::new("fence").await;
    let cfg = root.platform();
    let a = LeaderElection::join(&cfg, "sched-a").await.expect("join a");
    a.wait_leader().await.expect("a leads");
    let b = LeaderElection::join(&cfg, "sched-b").await.expect("join b");
    let (fence_a, fence_b) = (a.fence(), b.fence());
    assert!(
        fence_a.still_leads().await.expect("ask"),
        "the leader passes"
    );
    assert!(
        !fence_b.still_leads().await.expect("ask"),
        "a follower does not"
    );

    // a's node goes behind its back (as when the ensemble expires its session and its client
    // has not heard yet): the very next check refuses a, whatever its local flag says.
    let raw = root.raw(Some(&root.env.platform)).await;
    let mut nodes = raw
        .list_children("/caas/election/scheduler")
        .await
        .expect("list");
    nodes.sort();
    raw.delete(&format!("/caas/election/scheduler/{}", nodes[0]), None)
        .await
        .expect("delete a's candidate node");
    assert!(
        !fence_a.still_leads().await.unwrap_or(false),
        "a is refused as soon as its node is gone"
    );
    tokio::time::timeout(WAIT, b.wait_leader())
        .await
        .expect("b leads in time")
        .expect("b leads");
    assert!(
        fence_b.still_leads().await.expect("ask"),
        "the new leader passes"
    );
    // a notices (it watches its own node while leading) and queues up behind b.
    eventually("a steps down and rejoins behind b", || async {
        (!a.is_leader()).then_some(())
    })
    .await;
    assert!(!fence_a.still_leads().await.unwrap_or(false));

    // Resigned, the fence refuses: nothing is left to lead with.
    let fence_after = b.fence();
    b.resign().await;
    tokio::time::timeout(WAIT, a.wait_leader())
        .await
        .expect("a leads again in time")
        .expect("a leads again");
    assert!(!fence_after.still_leads().await.unwrap_or(false));
    assert!(a.fence().still_leads().await.expect("ask"));
    a.resign().await;
}
