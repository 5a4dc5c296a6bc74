//! Blacklist edits from several schedulers at once: ZooKeeper's version check makes every
//! read-modify-write land, none overwriting another.

use caas_registry::{IpRule, Registry};
use caas_testkit::zk::Chroot;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_blacklist_edits_all_land() {
    let root = Chroot::new("blacklist").await;
    // Two "schedulers": two sessions with the platform credential.
    let a = Registry::connect(&root.platform(), root.policy())
        .await
        .expect("connect a");
    let b = Registry::connect(&root.platform(), root.policy())
        .await
        .expect("connect b");
    a.ensure_layout().await.expect("layout");
    let mut tasks = Vec::new();
    for i in 0..20u8 {
        let reg = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let rule: IpRule = format!("10.0.{i}.0/24").parse().expect("rule");
            reg.update_blacklist(|rules| {
                if !rules.contains(&rule) {
                    rules.push(rule);
                }
            })
            .await
            .expect("update")
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let rules = a.blacklist().await.expect("read");
    assert_eq!(rules.len(), 20, "every concurrent edit landed: {rules:?}");
    // Removing is the same read-modify-write.
    let gone: IpRule = "10.0.3.0/24".parse().expect("rule");
    let left = b
        .update_blacklist(|rules| rules.retain(|r| *r != gone))
        .await
        .expect("remove");
    assert_eq!(left.len(), 19);
    assert!(!a.blacklist().await.expect("read").contains(&gone));
}
