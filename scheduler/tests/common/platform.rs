//! A whole platform per test: its own database (see `db.rs`), its own ZooKeeper chroot and
//! container namespace (`caas-testkit` guards), its own loopback addresses, and a scheduler
//! serving the admin API in-process on a free port. Everything is removed on drop, even when the
//! test failed.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use super::db::TestDb;
use caas_deployer::Deployer;
use caas_scheduler::Config;
use caas_testkit::docker::Namespace;
use caas_testkit::zk::{self, Chroot};
use caas_testkit::{unique_u64, var, var_opt, HOW};
use clap::Parser;
use reqwest::StatusCode;
use serde_json::{json, Value};

pub const TOKEN: &str = "operator-test-token";

/// Everything one test owns.
pub struct Platform {
    // The guards first: fields drop in order, after `Drop for Platform` has stopped the
    // scheduler, so its containers go before its chroot and its database.
    containers: Namespace,
    zk: Chroot,
    pub db: TestDb,
    /// The chroot's path.
    pub chroot: String,
    /// The `caas.managed` value of this test's containers.
    pub namespace: String,
    /// The loopback /24 this test's hosts live in: 127.{a}.{b}.0
    pub net: (u8, u8),
    pub api: String,
    pub http: reqwest::Client,
    pub docker: Deployer,
    pub config: Config,
    server: Option<tokio::task::JoinHandle<()>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    control: Option<std::sync::Arc<caas_scheduler::ControlPlane>>,
}

impl Platform {
    /// A platform with its scheduler started; `extra` adds flags (e.g. `--drain-ms 0`).
    pub async fn new(extra: &[&str]) -> Platform {
        let (db, _store) = TestDb::new().await;
        let zk = Chroot::new("sched").await;
        let containers = Namespace::new("sched");
        let n = unique_u64();
        let net = (100 + (n % 100) as u8, ((n >> 8) % 250) as u8 + 1);
        let docker = caas_testkit::docker::deployer().await;
        let mut p = Platform {
            chroot: zk.path.clone(),
            namespace: containers.as_str().to_owned(),
            containers,
            zk,
            db,
            net,
            api: String::new(),
            http: reqwest::Client::new(),
            docker,
            config: Config::try_parse_from([
                "caas-scheduler",
                "--database-url",
                "mysql://x/y",
                "--token",
                "placeholder-operator-token",
            ])
            .expect("valid flags"),
            server: None,
            stop: None,
            control: None,
        };
        p.config = p.config_with(extra);
        p.start().await;
        p
    }

    /// This test's scheduler configuration plus `extra` flags.
    pub fn config_with(&self, extra: &[&str]) -> Config {
        let args = std::iter::once("caas-scheduler".to_string())
            .chain(self.flags(extra).into_iter().flat_map(|(k, v)| [k, v]));
        Config::try_parse_from(args).expect("valid scheduler flags")
    }

    /// This test's scheduler flags plus `extra` (flag/value pairs that override them), for the
    /// in-process scheduler and for scheduler processes alike.
    fn flags(&self, extra: &[&str]) -> Vec<(String, String)> {
        let zk = var("CAAS_ZK");
        let zk_auth = var("CAAS_ZK_AUTH");
        let zk_read = var("CAAS_ZK_READ_AUTH");
        let registry = var("CAAS_REGISTRY");
        let mut flags: Vec<(String, String)> = [
            ("--listen", "127.0.0.1:0"),
            ("--database-url", self.db.url.as_str()),
            ("--token", TOKEN),
            ("--zk", zk.as_str()),
            ("--zk-chroot", self.chroot.as_str()),
            ("--zk-auth", zk_auth.as_str()),
            ("--zk-read-auth", zk_read.as_str()),
            ("--registry", registry.as_str()),
            ("--namespace", self.namespace.as_str()),
            ("--drain-ms", "200"),
            ("--stop-grace-secs", "2"),
            ("--start-timeout-secs", "20"),
            ("--reconcile-secs", "2"),
            // Every test's platform shares one registry and its `hello` and `busybox`
            // repositories: deleting an app named `hello` must not purge them. The purge's own
            // test (tests/image_purge.rs) turns it on, for per-test repositories.
            ("--purge-images", "false"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        // Once the registry has auth (scripts/up then exports these), pulls need them.
        for (flag, name) in [
            ("--registry-user", "CAAS_REGISTRY_USER"),
            ("--registry-password", "CAAS_REGISTRY_PASSWORD"),
        ] {
            if let Some(v) = var_opt(name) {
                flags.push((flag.to_string(), v));
            }
        }
        // `extra` is flag/value pairs that override the defaults above.
        for pair in extra.chunks(2) {
            let (k, v) = (
                pair[0].to_string(),
                pair.get(1).map(|v| v.to_string()).unwrap_or_default(),
            );
            match flags.iter_mut().find(|(f, _)| *f == k) {
                Some(slot) => slot.1 = v,
                None => flags.push((k, v)),
            }
        }
        flags
    }

    /// Starts (or restarts) the in-process scheduler.
    pub async fn start(&mut self) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        self.api = format!("http://{}", listener.local_addr().expect("addr"));
        let scheduler = caas_scheduler::Scheduler::start(self.config.clone())
            .await
            .unwrap_or_else(|e| panic!("scheduler failed to start ({e}): {HOW}"));
        self.control = Some(scheduler.state.control.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        self.stop = Some(tx);
        self.server = Some(tokio::spawn(async move {
            let _ = scheduler
                .serve(listener, async move {
                    let _ = rx.await;
                })
                .await;
        }));
    }

    /// The read-only ZooKeeper config of this test's chroot, as a gateway uses it.
    pub fn zk_reader(&self) -> caas_registry::ZkConfig {
        self.zk.reader()
    }

    /// The platform's ZooKeeper config of this test's chroot, as a scheduler uses it.
    pub fn zk_platform(&self) -> caas_registry::ZkConfig {
        self.zk.platform()
    }

    /// The running scheduler's control plane (to run a reconciliation pass on demand).
    pub fn control(&self) -> &caas_scheduler::ControlPlane {
        self.control.as_deref().expect("scheduler started")
    }

    /// Stops the in-process scheduler gracefully.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            let _ = h.await;
        }
    }

    /// The address of test host `i` (1-based): 127.a.b.i
    pub fn host_ip(&self, i: u8) -> String {
        format!("127.{}.{}.{}", self.net.0, self.net.1, i)
    }

    /// Registers hosts h1..=hn with `memory_mb` and `cpus` each.
    pub async fn add_hosts(&self, n: u8, memory_mb: u64, cpus: f64) {
        for i in 1..=n {
            let (status, body) = self
                .call(
                    "POST",
                    "/v1/hosts",
                    Some(json!({"name": format!("h{i}"), "address": self.host_ip(i), "docker": var("CAAS_DOCKER"),
                                "memory_mb": memory_mb, "cpus": cpus, "ports": "25700-25799"})),
                    TOKEN,
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "adding host h{i}: {body}");
        }
    }

    /// Creates the app `id` as the operator; its answer, checked to be a 201.
    pub async fn create_app(&self, id: &str) -> Value {
        let (s, app) = self
            .call("POST", "/v1/apps", Some(json!({"id": id})), TOKEN)
            .await;
        assert_eq!(s, StatusCode::CREATED, "creating app {id}: {app}");
        app
    }

    /// Deploys `body` to the app `app` as the operator; the deployment, checked to be a 201.
    pub async fn deploy(&self, app: &str, body: Value) -> Value {
        let (s, d) = self
            .call(
                "POST",
                &format!("/v1/apps/{app}/deployments"),
                Some(body),
                TOKEN,
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "deploying {app}: {d}");
        d
    }

    /// A page of events (`GET /v1/events{query}`) as its NDJSON lines.
    pub async fn events(&self, query: &str, token: &str) -> Vec<Value> {
        let resp = self
            .http
            .get(format!("{}/v1/events{query}", self.api))
            .bearer_auth(token)
            .send()
            .await
            .expect("admin API reachable");
        assert_eq!(resp.status(), StatusCode::OK, "GET /v1/events{query}");
        assert_eq!(
            resp.headers()["content-type"],
            "application/x-ndjson",
            "GET /v1/events{query}"
        );
        let text = resp.text().await.expect("body");
        text.lines()
            .map(|l| serde_json::from_str(l).expect("one JSON event per line"))
            .collect()
    }

    /// One admin API call; returns the status and the JSON body (`null` if empty).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        token: &str,
    ) -> (StatusCode, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("admin API reachable");
        let status = resp.status();
        let bytes = resp.bytes().await.expect("body");
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        (status, v)
    }

    /// `call` that expects `want`; the body.
    pub async fn expect(
        &self,
        want: StatusCode,
        method: &str,
        path: &str,
        body: Option<Value>,
        token: &str,
    ) -> Value {
        let (s, v) = self.call(method, path, body, token).await;
        assert_eq!(s, want, "{method} {path}: {v}");
        v
    }

    /// A `GET` whose answer is text (job output, step logs): the status and the body.
    pub async fn text(&self, path: &str) -> (StatusCode, String) {
        let resp = self
            .http
            .get(format!("{}{path}", self.api))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("admin API reachable");
        let status = resp.status();
        let body = resp
            .text()
            .await
            .unwrap_or_else(|e| panic!("reading {path}: {e:?}"));
        (status, body)
    }

    /// Our containers on the engine (any state).
    pub async fn containers(&self) -> Vec<caas_deployer::ContainerSummary> {
        self.docker
            .list_managed(&self.namespace)
            .await
            .expect("docker list")
    }

    /// Address nodes under our chroot: (app/version/container, data). Only a missing root
    /// means none; any other ZooKeeper error fails the test, so "no node left" cannot pass
    /// because ZooKeeper could not be read.
    pub async fn nodes(&self) -> Vec<(String, String)> {
        let client = zk::super_client().await;
        let root = format!("{}/caas/service/address", self.chroot);
        let mut out = Vec::new();
        let Some(apps) = zk::children(&client, &root).await else {
            return out;
        };
        // Below the root, a node that went between listing and reading (an undeploy in
        // flight) is simply not there any more.
        for a in apps {
            let Some(versions) = zk::children(&client, &format!("{root}/{a}")).await else {
                continue;
            };
            for v in versions {
                let Some(cs) = zk::children(&client, &format!("{root}/{a}/{v}")).await else {
                    continue;
                };
                for c in cs {
                    if let Some(data) = zk::read(&client, &format!("{root}/{a}/{v}/{c}")).await {
                        out.push((format!("{a}/{v}/{c}"), data));
                    }
                }
            }
        }
        out
    }

    /// The scheduler binary `bin` (`env!("CARGO_BIN_EXE_caas-scheduler")`) as its own process
    /// on `127.0.0.1:{port}`, with this platform's flags plus `extra` (flag/value pairs): a
    /// second scheduler, or one a test kills.
    pub fn spawn_process(&self, port: u16, bin: &str, extra: &[&str]) -> std::process::Child {
        let listen = format!("127.0.0.1:{port}");
        let args = self
            .flags(&[&["--listen", listen.as_str()], extra].concat())
            .into_iter()
            .flat_map(|(k, v)| [k, v]);
        std::process::Command::new(bin)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the scheduler binary {bin} ({e}): {HOW}"))
    }

    /// Asserts the platform holds no trace of any deployment: no container, no address node,
    /// no instance row, and every host's free amounts equal to its capacity.
    pub async fn assert_empty(&self, when: &str) {
        assert!(
            self.containers().await.is_empty(),
            "{when}: containers left: {:?}",
            self.containers().await
        );
        assert!(
            self.nodes().await.is_empty(),
            "{when}: address nodes left: {:?}",
            self.nodes().await
        );
        let store = self.db.store(2).await;
        let rows = store.list_all_instances().await.expect("instances");
        assert!(rows.is_empty(), "{when}: instance rows left: {rows:?}");
        // Jobs' and workflow steps' claims are instance rows without a deployment.
        let claims: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM instances")
            .fetch_one(store.pool())
            .await
            .expect("count claims");
        assert_eq!(claims, 0, "{when}: job claims left");
        for h in store.list_hosts().await.expect("hosts") {
            assert_eq!(
                (h.mem_free, h.cpu_free),
                (h.mem_total, h.cpu_total),
                "{when}: claims left on {}",
                h.name
            );
        }
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        // Stop the scheduler first; the guards then remove the containers, the chroot and the
        // database.
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            h.abort();
        }
    }
}

/// A free TCP port on loopback (for a scheduler process's `--listen`).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// Waits until the admin API at `api` answers `/healthz`.
pub async fn wait_serving(api: &str) {
    let http = reqwest::Client::new();
    caas_testkit::eventually("the scheduler process to serve", || async {
        http.get(format!("{api}/healthz"))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())
    })
    .await;
}

/// The body of `GET http://{address}/_ping` when it answers with a success in time.
pub async fn ping(address: &str) -> Option<String> {
    let resp = reqwest::Client::new()
        .get(format!("http://{address}/_ping"))
        .timeout(std::time::Duration::from_secs(3))
        .send()
        .await
        .ok()?;
    resp.status().is_success().then_some(())?;
    resp.text().await.ok()
}

/// The instances of a deployment as the admin API answers it.
pub fn instances(deployment: &Value) -> Vec<Value> {
    deployment["instance_list"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}
