//! The leader's host watch against the real MariaDB, ZooKeeper, Docker engine and registry. A
//! host whose engine dies is simulated without touching the real engine: host `h1` reaches it
//! through a TCP forwarder the test stops and starts again (`h2` on the engine's own socket).
//! Stopping the forwarder is a machine whose engine is gone while its containers still run:
//! the leader marks `h1` down, its instance is replaced on `h2`; starting it again brings `h1`
//! back to `ready` and the container of the replaced instance, still running on the engine,
//! is removed as an orphan. The periodic reconciler is off (`--reconcile-secs 3600`): every
//! repair here comes from the passes the watch's changes start at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/db.rs"]
mod db;
#[path = "common/platform.rs"]
mod platform;

use caas_testkit::{eventually, var, HOW};
use caas_types::{HostState, InstanceState};
use platform::{instances, ping, Platform, TOKEN};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio::net::{TcpListener, TcpSocket, TcpStream, UnixStream};
use tokio::task::{JoinHandle, JoinSet};

/// Where the forwarder sends connections: the engine the tests use.
#[derive(Clone)]
enum Engine {
    Unix(PathBuf),
    Tcp(String),
}

impl Engine {
    /// The engine of `CAAS_DOCKER` (`unix://` or plain `tcp://`).
    fn from_env() -> Engine {
        let url = var("CAAS_DOCKER");
        if let Some(path) = url.strip_prefix("unix://") {
            Engine::Unix(PathBuf::from(path))
        } else if let Some(addr) = url.strip_prefix("tcp://") {
            Engine::Tcp(addr.trim_end_matches('/').to_owned())
        } else {
            panic!("CAAS_DOCKER={url}: this test forwards to a unix:// or tcp:// engine ({HOW})")
        }
    }
}

/// A TCP forwarder on 127.0.0.1 in front of the engine: a host's engine the test can kill
/// (every connection closed, the port refusing) and bring back on the same port.
struct Forwarder {
    addr: SocketAddr,
    engine: Engine,
    task: Option<JoinHandle<()>>,
}

impl Forwarder {
    async fn start(engine: Engine) -> Forwarder {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the forwarder");
        let mut f = Forwarder {
            addr: listener.local_addr().expect("forwarder address"),
            engine,
            task: None,
        };
        f.serve(listener);
        f
    }

    fn serve(&mut self, listener: TcpListener) {
        let engine = self.engine.clone();
        self.task = Some(tokio::spawn(async move {
            // Dropped with the task: aborting it closes every forwarded connection.
            let mut conns = JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                let engine = engine.clone();
                conns.spawn(async move {
                    match engine {
                        Engine::Unix(path) => {
                            if let Ok(mut out) = UnixStream::connect(&path).await {
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                            }
                        }
                        Engine::Tcp(addr) => {
                            if let Ok(mut out) = TcpStream::connect(&addr).await {
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                            }
                        }
                    }
                });
            }
        }));
    }

    /// The engine dies: the listener and every connection go.
    async fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    /// The engine answers again, on the same port.
    async fn restart(&mut self) {
        let addr = self.addr;
        let listener = eventually("the forwarder's port is free again", || async move {
            let socket = TcpSocket::new_v4().ok()?;
            socket.set_reuseaddr(true).ok()?;
            socket.bind(addr).ok()?;
            socket.listen(128).ok()
        })
        .await;
        self.serve(listener);
    }

    fn url(&self) -> String {
        format!("tcp://{}", self.addr)
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

fn field<'v>(v: &'v Value, name: &str) -> &'v str {
    v[name].as_str().unwrap_or_else(|| panic!("{name} in {v}"))
}

/// Registers host `h{i}` at the test's address `i` with its engine at `docker`.
async fn add_host(p: &Platform, i: u8, docker: &str) {
    let (status, body) = p
        .call(
            "POST",
            "/v1/hosts",
            Some(
                json!({"name": format!("h{i}"), "address": p.host_ip(i), "docker": docker,
                        "memory_mb": 1024, "cpus": 2.0, "ports": "25700-25799"}),
            ),
            TOKEN,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "adding host h{i}: {body}");
}

/// The stored row of host `name`.
async fn host(store: &caas_scheduler::store::Store, name: &str) -> caas_scheduler::store::HostRow {
    store
        .get_host(&name.parse().expect("host name"))
        .await
        .expect("host row")
}

/// The containers on the engine carrying the instance label `instance`.
async fn containers_of(p: &Platform, instance: &str) -> Vec<String> {
    p.containers()
        .await
        .into_iter()
        .filter(|c| {
            c.labels
                .get(caas_types::labels::INSTANCE)
                .map(String::as_str)
                == Some(instance)
        })
        .map(|c| c.id.to_string())
        .collect()
}

/// The operator's events of type `kind` (host events belong to no app).
async fn host_events(p: &Platform, kind: &str) -> Vec<Value> {
    p.events("?limit=1000", TOKEN)
        .await
        .into_iter()
        .filter(|e| e["type"] == kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_host_whose_engine_dies_is_marked_down_replaced_and_back_when_it_answers() {
    let mut forwarder = Forwarder::start(Engine::from_env()).await;
    let p = Platform::new(&[
        "--host-check-ms",
        "200",
        "--host-ping-timeout-ms",
        "500",
        "--host-down-after",
        "3",
        "--reconcile-secs",
        "3600",
    ])
    .await;
    add_host(&p, 1, &forwarder.url()).await;
    add_host(&p, 2, &var("CAAS_DOCKER")).await;
    let store = p.db.store(2).await;

    p.create_app("hello").await;
    let d = p
        .deploy(
            "hello",
            json!({"version": "v1", "instances": 2, "memory_mb": 64, "cpus": 0.25, "port": 8080,
                   "placement": {"spread": true}}),
        )
        .await;
    let list = instances(&d);
    assert_eq!(list.len(), 2, "{list:?}");
    let lost: Vec<&Value> = list.iter().filter(|i| i["host"] == "h1").collect();
    assert_eq!(lost.len(), 1, "spread: one instance on each host: {list:?}");
    let (lost_id, lost_cid) = (field(lost[0], "id"), field(lost[0], "container_id"));
    let kept_id = field(
        list.iter().find(|i| i["host"] == "h2").expect("one on h2"),
        "id",
    );
    // While both engines answer, nothing is marked down.
    assert!(host_events(&p, "host.down").await.is_empty());

    // h1's engine dies; its container keeps running on the real engine.
    forwarder.stop().await;

    let h1 = eventually("h1 is marked down by the watch", || async {
        let h = host(&store, "h1").await;
        (h.state == HostState::Down).then_some(h)
    })
    .await;
    assert!(h1.auto_down, "marked down by the watch, not an operator");
    assert_eq!(host(&store, "h2").await.state, HostState::Ready);

    // Its instance is replaced on h2: two running healthy instances there, registered, the
    // lost one deregistered and released (its container is still on the engine: h1's engine
    // cannot be asked to remove it).
    let rows = eventually("the lost instance is replaced on h2", || async {
        let rows = store.list_all_instances().await.ok()?;
        let settled = rows.len() == 2
            && rows.iter().all(|r| {
                r.host.as_str() == "h2"
                    && r.id.as_str() != lost_id
                    && r.state == InstanceState::Running
                    && r.healthy
            });
        if !settled {
            return None;
        }
        let cids: BTreeSet<String> = rows
            .iter()
            .filter_map(|r| r.container_id.as_ref().map(ToString::to_string))
            .collect();
        let nodes: BTreeSet<String> = p
            .nodes()
            .await
            .into_iter()
            .filter_map(|(path, _)| path.strip_prefix("hello/v1/").map(str::to_owned))
            .collect();
        (nodes == cids).then_some(rows)
    })
    .await;
    assert!(
        rows.iter().any(|r| r.id.as_str() == kept_id),
        "h2's instance is untouched: {rows:?}"
    );
    for r in &rows {
        let address = r.endpoint().expect("endpoint").to_string();
        assert!(
            ping(&address).await.is_some(),
            "{} answers at {address}",
            r.id
        );
    }
    let h1 = host(&store, "h1").await;
    assert_eq!(
        (h1.mem_free, h1.cpu_free),
        (h1.mem_total, h1.cpu_total),
        "nothing is claimed on the down host"
    );
    assert_eq!(
        containers_of(&p, lost_id).await,
        vec![lost_cid.to_owned()],
        "the replaced instance's container still runs behind the dead engine"
    );
    let down = host_events(&p, "host.down").await;
    assert_eq!(down.len(), 1, "{down:?}");
    assert_eq!(down[0]["host"], "h1", "{down:?}");
    assert_eq!(down[0]["app"], Value::Null, "{down:?}");

    // The engine answers again: h1 is ready, and the stale container is removed as an orphan.
    forwarder.restart().await;
    eventually("h1 is ready again", || async {
        let h = host(&store, "h1").await;
        (h.state == HostState::Ready && !h.auto_down).then_some(())
    })
    .await;
    eventually("the replaced instance's container is removed", || async {
        containers_of(&p, lost_id).await.is_empty().then_some(())
    })
    .await;
    let nodes = p.nodes().await;
    assert!(
        nodes.iter().all(|(path, _)| !path.ends_with(lost_cid)),
        "no address node for the replaced instance: {nodes:?}"
    );
    assert_eq!(nodes.len(), 2, "{nodes:?}");
    let up = host_events(&p, "host.up").await;
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(up[0]["host"], "h1", "{up:?}");
    let metrics = p.control().render_metrics();
    for line in [
        "caas_scheduler_host_transitions_total{to=\"down\"} 1",
        "caas_scheduler_host_transitions_total{to=\"ready\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in:\n{metrics}");
    }

    // An operator's state is never the watch's: setting one clears `auto_down`, and the
    // watch's writes leave it alone.
    let (s, h) = p
        .call(
            "PATCH",
            "/v1/hosts/h1",
            Some(json!({"state": "draining"})),
            TOKEN,
        )
        .await;
    assert_eq!(
        (s, &h["state"]),
        (StatusCode::OK, &json!("draining")),
        "{h}"
    );
    let h1 = host(&store, "h1").await;
    assert!(!h1.auto_down);
    assert!(!store.mark_host_down_auto(h1.id).await.expect("store"));
    assert!(!store.mark_host_ready_auto(h1.id).await.expect("store"));
    let (s, h) = p
        .call(
            "PATCH",
            "/v1/hosts/h1",
            Some(json!({"state": "down"})),
            TOKEN,
        )
        .await;
    assert_eq!((s, &h["state"]), (StatusCode::OK, &json!("down")), "{h}");
    assert!(!store.mark_host_ready_auto(h1.id).await.expect("store"));
    assert_eq!(host(&store, "h1").await.state, HostState::Down);

    // A clean end: nothing of the app left anywhere.
    let (s, body) = p
        .call("DELETE", "/v1/apps/hello/deployments/v1", None, TOKEN)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    p.assert_empty("after undeploy").await;
    let (s, _) = p.call("DELETE", "/v1/apps/hello", None, TOKEN).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    drop(p);
    forwarder.stop().await;
}
