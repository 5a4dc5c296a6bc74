//! Reliability against the real MariaDB, ZooKeeper, Docker engine and registry: an instance
//! that fails its health check while its container still runs is replaced (`on_failure:
//! "replace"`); the instances of a host marked `down` are replaced on another host; a container
//! removed behind the scheduler's back is re-created on its own claim. Each test ends with the
//! platform empty, and checks that dropping the platform removes its namespace.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/db.rs"]
mod db;
#[path = "common/platform.rs"]
mod platform;

use caas_scheduler::store::{InstanceRow, Store};
use caas_testkit::zk::super_client;
use caas_testkit::{eventually, var, HOW};
use caas_types::InstanceState;
use platform::{instances, ping, Platform, TOKEN};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Runs the docker CLI against the engine the tests use.
fn docker(args: &[&str]) {
    let out = std::process::Command::new("docker")
        .arg("-H")
        .arg(var("CAAS_DOCKER"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running docker {args:?} ({e}): {HOW}"));
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Creates app `hello` and deploys `body` (hello v1); returns the deployment's instances.
async fn deploy_hello(p: &Platform, body: Value) -> Vec<Value> {
    p.create_app("hello").await;
    let d = p.deploy("hello", body).await;
    instances(&d)
}

/// A platform whose reconciler runs only when a test asks (so each pass's report is the
/// test's), two hosts, and hello v1 deployed with two instances plus `extra` request fields.
async fn two_hosts_passes_on_demand(extra: Value) -> (Platform, Store, Vec<Value>) {
    let p = Platform::new(&["--reconcile-secs", "3600"]).await;
    p.add_hosts(2, 1024, 2.0).await;
    let store = p.db.store(2).await;
    let mut body = json!({"version": "v1", "instances": 2, "memory_mb": 64, "cpus": 0.25,
                          "port": 8080});
    for (k, v) in extra.as_object().expect("an object") {
        body[k] = v.clone();
    }
    let list = deploy_hello(&p, body).await;
    assert_eq!(list.len(), 2, "{list:?}");
    (p, store, list)
}

fn field<'v>(v: &'v Value, name: &str) -> &'v str {
    v[name].as_str().unwrap_or_else(|| panic!("{name} in {v}"))
}

/// Asserts that every host's free memory and CPU equal its capacity minus its instance rows.
async fn assert_claims_match_rows(store: &Store, when: &str) {
    let rows = store.list_all_instances().await.expect("instances");
    for h in store.list_hosts().await.expect("hosts") {
        let on_host: Vec<&InstanceRow> = rows.iter().filter(|r| r.host_id == h.id).collect();
        let memory: u64 = on_host.iter().map(|r| r.memory).sum();
        let cpu: u32 = on_host.iter().map(|r| r.cpu).sum();
        assert_eq!(
            (h.mem_free + memory, h.cpu_free + cpu),
            (h.mem_total, h.cpu_total),
            "{when}: claims on {} equal its instance rows {on_host:?}",
            h.name
        );
    }
    let ports: BTreeSet<(i64, u16)> = rows
        .iter()
        .filter_map(|r| Some((r.host_id, r.host_port?)))
        .collect();
    let with_port = rows.iter().filter(|r| r.host_port.is_some()).count();
    assert_eq!(ports.len(), with_port, "{when}: a host port held twice");
}

/// ZooKeeper's view: container id → address, for app `hello` v1.
async fn hello_nodes(p: &Platform) -> BTreeMap<String, String> {
    p.nodes()
        .await
        .into_iter()
        .map(|(path, addr)| {
            let cid = path
                .strip_prefix("hello/v1/")
                .unwrap_or_else(|| panic!("unexpected node {path}"));
            (cid.to_owned(), addr)
        })
        .collect()
}

/// The platform's containers: container id → (instance label, host label, state).
async fn containers(p: &Platform) -> BTreeMap<String, (String, String)> {
    p.containers()
        .await
        .into_iter()
        .map(|c| {
            let label = |k: &str| c.labels.get(k).cloned().unwrap_or_default();
            (
                c.id.to_string(),
                (
                    label(caas_types::labels::INSTANCE),
                    label(caas_types::labels::HOST),
                ),
            )
        })
        .collect()
}

/// Undeploys and deletes `hello`, checks nothing is left, then drops the platform and checks
/// that its namespace went with it: no container with its label, no ZooKeeper chroot, no
/// database.
async fn finish(p: Platform) {
    let (s, body) = p
        .call("DELETE", "/v1/apps/hello/deployments/v1", None, TOKEN)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    p.assert_empty("after undeploy").await;
    let (s, _) = p.call("DELETE", "/v1/apps/hello", None, TOKEN).await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    // Something left behind on purpose, to see that drop removes it.
    let (namespace, chroot, database) = (p.namespace.clone(), p.chroot.clone(), p.db.name.clone());
    let docker = p.docker.clone();
    drop(p);
    assert!(
        docker
            .list_managed(&namespace)
            .await
            .expect("docker list")
            .is_empty(),
        "containers of {namespace} left after drop"
    );
    let zk = super_client().await;
    assert!(
        zk.check_stat(&chroot).await.expect("zookeeper").is_none(),
        "chroot {chroot} left after drop"
    );
    assert!(
        !caas_testkit::mysql::database_exists(&database).await,
        "database {database} left after drop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unhealthy_instance_is_replaced_when_the_policy_says_replace() {
    let p = Platform::new(&[]).await;
    p.add_hosts(3, 1024, 2.0).await;
    let store = p.db.store(2).await;
    let list = deploy_hello(
        &p,
        json!({"version": "v1", "instances": 2, "memory_mb": 64, "cpus": 0.25, "port": 8080,
               "placement": {"spread": true},
               "health": {"interval_ms": 200, "timeout_ms": 200, "failures": 2, "successes": 1,
                          "on_failure": "replace"}}),
    )
    .await;
    assert_eq!(list.len(), 2, "{list:?}");
    let victim = &list[0];
    let survivor = &list[1];
    let (victim_id, victim_cid) = (field(victim, "id"), field(victim, "container_id"));
    let used: BTreeSet<&str> = list.iter().map(|i| field(i, "host")).collect();
    assert_eq!(used.len(), 2, "spread: one instance per host: {list:?}");

    // The container keeps running but stops answering: its health check fails.
    docker(&["pause", victim_cid]);

    let (replacement, nodes) = eventually("the paused instance is replaced", || async {
        let rows = store.list_all_instances().await.ok()?;
        let ids: BTreeSet<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        if rows.len() != 2 || ids.contains(victim_id) {
            return None;
        }
        if !rows
            .iter()
            .all(|r| r.state == InstanceState::Running && r.healthy)
        {
            return None;
        }
        let nodes = hello_nodes(&p).await;
        let live: BTreeSet<String> = containers(&p).await.into_keys().collect();
        let cids: BTreeSet<String> = rows
            .iter()
            .filter_map(|r| r.container_id.as_ref().map(ToString::to_string))
            .collect();
        let keys: BTreeSet<String> = nodes.keys().cloned().collect();
        if keys != cids || live != cids {
            return None;
        }
        let new = rows
            .into_iter()
            .find(|r| r.id.as_str() != field(survivor, "id"))?;
        Some((new, nodes))
    })
    .await;

    // The survivor is untouched; the replacement runs, answers and is registered at its
    // address. With spread, the one host without an instance of this deployment takes it.
    assert!(
        nodes.contains_key(field(survivor, "container_id")),
        "the survivor stays registered: {nodes:?}"
    );
    let address = replacement.endpoint().expect("endpoint").to_string();
    let cid = replacement
        .container_id
        .as_ref()
        .expect("container")
        .to_string();
    assert_eq!(nodes.get(&cid), Some(&address), "{nodes:?}");
    assert!(
        ping(&address).await.is_some(),
        "the replacement answers at {address}"
    );
    let free_host = ["h1", "h2", "h3"]
        .into_iter()
        .find(|h| !used.contains(h))
        .expect("a third host");
    assert_eq!(
        replacement.host.as_str(),
        free_host,
        "spread places it on the free host"
    );
    // The failed one is gone: no node (checked above), no container, no row, no claim.
    assert!(
        !containers(&p).await.contains_key(victim_cid),
        "the paused container is removed"
    );
    assert_claims_match_rows(&store, "after the replacement").await;
    let (s, d) = p
        .call("GET", "/v1/apps/hello/deployments/v1", None, TOKEN)
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["instances"], 2, "the desired count is unchanged: {d}");
    finish(p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_reconciler_moves_the_instances_of_a_host_marked_down() {
    let (p, store, list) = two_hosts_passes_on_demand(json!({"placement": {"spread": true}})).await;
    let lost: Vec<&Value> = list.iter().filter(|i| i["host"] == "h1").collect();
    assert_eq!(lost.len(), 1, "spread: one instance on h1: {list:?}");
    let lost_id = field(lost[0], "id");
    let lost_cid = field(lost[0], "container_id");

    let (s, h) = p
        .call(
            "PATCH",
            "/v1/hosts/h1",
            Some(json!({"state": "down"})),
            TOKEN,
        )
        .await;
    assert_eq!((s, &h["state"]), (StatusCode::OK, &json!("down")), "{h}");
    let report = p.control().reconciler.reconcile().await.expect("reconcile");
    assert_eq!(
        report.recreated, 1,
        "one lost instance replaced: {report:?}"
    );
    assert_eq!(
        report.topped_up, 0,
        "the replacement kept the count: {report:?}"
    );

    let rows = store.list_all_instances().await.expect("instances");
    assert_eq!(
        rows.len(),
        2,
        "the deployment keeps its desired count: {rows:?}"
    );
    assert!(
        rows.iter().all(|r| r.host.as_str() == "h2"
            && r.id.as_str() != lost_id
            && r.state == InstanceState::Running
            && r.healthy),
        "every instance runs on h2, the lost one is gone: {rows:?}"
    );
    let cids: BTreeSet<String> = rows
        .iter()
        .filter_map(|r| r.container_id.as_ref().map(ToString::to_string))
        .collect();
    let nodes = hello_nodes(&p).await;
    assert_eq!(
        nodes.keys().cloned().collect::<BTreeSet<_>>(),
        cids,
        "ZooKeeper holds exactly the live instances"
    );
    assert!(
        !nodes.contains_key(lost_cid),
        "the lost one is deregistered"
    );
    for r in &rows {
        let address = r.endpoint().expect("endpoint").to_string();
        assert!(
            ping(&address).await.is_some(),
            "{} answers at {address}",
            r.id
        );
    }
    let on_engine = containers(&p).await;
    assert!(
        on_engine.values().all(|(_, host)| host != "h1"),
        "no container of the down host is left: {on_engine:?}"
    );
    assert_eq!(
        on_engine.keys().cloned().collect::<BTreeSet<_>>(),
        cids,
        "only the live instances' containers run"
    );
    assert_claims_match_rows(&store, "after the host went down").await;
    let h1 = store
        .list_hosts()
        .await
        .expect("hosts")
        .into_iter()
        .find(|h| h.name.as_str() == "h1")
        .expect("h1");
    assert_eq!(
        (h1.mem_free, h1.cpu_free),
        (h1.mem_total, h1.cpu_total),
        "nothing is claimed on the down host"
    );

    // A second pass has nothing left to do.
    let report = p.control().reconciler.reconcile().await.expect("reconcile");
    assert_eq!(report, Default::default(), "settled");
    finish(p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_reconciler_recreates_a_removed_container_on_its_claim() {
    // A health check too slow to act within the test, so what repairs (or leaves alone) an
    // instance is the reconciler and nothing else.
    let (p, store, list) =
        two_hosts_passes_on_demand(json!({"health": {"interval_ms": 600000, "failures": 100}}))
            .await;
    let gone = &list[0];
    let (gone_id, gone_cid, gone_address) = (
        field(gone, "id"),
        field(gone, "container_id"),
        field(gone, "address"),
    );
    docker(&["rm", "-f", gone_cid]);
    // The other one is paused: its container is still there, so it is the health checker's
    // to judge (and the deployment's policy's to act on), not the reconciler's to re-create.
    let paused_cid = field(&list[1], "container_id");
    docker(&["pause", paused_cid]);

    // The reconciler gives a running instance's container some time to come back before it
    // acts (a restart in progress is not a loss): pass until it does.
    let recreated = AtomicUsize::new(0);
    let row = eventually("a reconcile pass re-creates the container", || {
        let (p, store, recreated) = (&p, &store, &recreated);
        async move {
            let report = p.control().reconciler.reconcile().await.ok()?;
            recreated.fetch_add(report.recreated, Ordering::Relaxed);
            let row = store.get_instance(&gone_id.parse().ok()?).await.ok()?;
            let cid = row.container_id.as_ref()?.to_string();
            (cid != gone_cid).then_some(row)
        }
    })
    .await;
    assert_eq!(recreated.into_inner(), 1, "one instance re-created");
    assert_eq!(row.state, InstanceState::Running);
    assert!(row.healthy);
    assert_eq!(row.host.as_str(), field(gone, "host"), "same host");
    assert_eq!(
        row.endpoint().expect("endpoint").to_string(),
        gone_address,
        "same claim: same host address and port"
    );
    let cid = row.container_id.as_ref().expect("container").to_string();
    let nodes = hello_nodes(&p).await;
    assert_eq!(
        nodes.get(&cid).map(String::as_str),
        Some(gone_address),
        "registered again"
    );
    assert!(!nodes.contains_key(gone_cid), "the old node is gone");
    assert_eq!(nodes.len(), 2, "{nodes:?}");
    assert!(
        ping(gone_address).await.is_some(),
        "it answers again at {gone_address}"
    );
    assert!(
        nodes.contains_key(paused_cid),
        "the paused one is left alone"
    );
    let on_engine = containers(&p).await;
    assert_eq!(on_engine.len(), 2, "{on_engine:?}");
    assert!(on_engine.contains_key(paused_cid), "{on_engine:?}");
    docker(&["unpause", paused_cid]);
    assert_eq!(
        on_engine.get(&cid).map(|(i, h)| (i.as_str(), h.as_str())),
        Some((gone_id, field(gone, "host"))),
        "the new container carries the instance's labels"
    );
    let rows = store.list_all_instances().await.expect("instances");
    assert_eq!(rows.len(), 2, "no instance added: {rows:?}");
    assert_claims_match_rows(&store, "after the re-creation").await;
    finish(p).await;
}
