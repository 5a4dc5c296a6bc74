//! The namespace guards against the real services: each removes what it owns when dropped, and
//! the ZooKeeper helpers tell a missing node from a failure.

use caas_deployer::RunSpec;
use caas_testkit::docker::{deployer, hello_image, Namespace};
use caas_testkit::mysql::{database_exists, TestDatabase};
use caas_testkit::zk::{children, read, super_client, Chroot};
use caas_testkit::zookeeper_client::{Acls, CreateMode};
use caas_types::{Cpus, Endpoint, Memory, Resources};
use std::net::{Ipv4Addr, TcpListener};

#[tokio::test]
async fn a_chroot_is_removed_with_everything_below_it() {
    let root = Chroot::new("testkit").await;
    let path = root.path.clone();
    let writer = root.raw(Some(&root.env.platform)).await;
    let mode = CreateMode::Persistent.with_acls(Acls::anyone_all());
    writer.create("/a", b"1", &mode).await.expect("create /a");
    writer
        .create("/a/b", b"2", &mode)
        .await
        .expect("create /a/b");
    assert_eq!(read(&writer, "/a/b").await.as_deref(), Some("2"));
    assert_eq!(children(&writer, "/a").await, Some(vec!["b".to_owned()]));
    assert_eq!(read(&writer, "/missing").await, None);
    assert_eq!(children(&writer, "/missing").await, None);
    drop(root);
    let admin = super_client().await;
    assert_eq!(read(&admin, &path).await, None, "{path} left after drop");
}

#[tokio::test]
#[should_panic(expected = "listing zookeeper node")]
async fn a_node_that_cannot_be_listed_is_not_an_empty_one() {
    let root = Chroot::new("testkit-noauth").await;
    // No credential: the chroot's ACL lets nobody else in.
    let anonymous = root.raw(None).await;
    children(&anonymous, "/").await;
}

#[tokio::test]
async fn a_test_database_is_dropped() {
    let db = TestDatabase::create().await;
    let name = db.name.clone();
    assert!(name.starts_with("caas_t_"), "{name}");
    assert!(db.url.ends_with(&format!("/{name}")));
    assert!(database_exists(&name).await, "{name} was not created");
    drop(db);
    assert!(!database_exists(&name).await, "{name} left after drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_removes_its_containers() {
    let d = deployer().await;
    let image = hello_image(&d, "v1").await;
    let ns = Namespace::new("testkit");
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut spec = RunSpec::for_instance(
        ns.as_str(),
        &"hello".parse().expect("app id"),
        &"v1".parse().expect("version"),
        &"hello-testkit".parse().expect("instance id"),
        image,
        8080,
        Endpoint::new(Ipv4Addr::LOCALHOST.into(), port).expect("endpoint"),
        Resources {
            memory: Memory::from_mib(32).expect("memory"),
            cpus: Cpus::from_millis(100).expect("cpus"),
        },
    );
    spec.name = ns.container_name("one");
    d.run(&spec)
        .await
        .expect("run a container in the namespace");
    let namespace = ns.as_str().to_owned();
    assert_eq!(d.list_managed(&namespace).await.expect("list").len(), 1);
    drop(ns);
    assert!(
        d.list_managed(&namespace).await.expect("list").is_empty(),
        "containers of {namespace} left after drop"
    );
}
