//! Shared helpers of the deployer's integration tests: the real engine from the environment, a
//! per-test namespace that removes its containers when dropped, free ports, a tiny HTTP client
//! and an "eventually" wait.
#![allow(dead_code, clippy::unwrap_used)]

use caas_deployer::{Deployer, DockerEndpoint, RegistryCredentials, RunSpec};
use caas_types::{Cpus, Memory, Resources};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How to bring the services up, for failure messages.
pub const HOW: &str =
    "start the services with `scripts/up && source .caas/env`, or run `scripts/test`";

/// An environment variable the tests need; fails the test (never skips) when missing.
pub fn env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!("{name} is not set: {HOW}"),
    }
}

/// The shared engine (`CAAS_DOCKER`), checked to answer.
pub async fn deployer() -> Deployer {
    let url = env("CAAS_DOCKER");
    let endpoint: DockerEndpoint = url
        .parse()
        .unwrap_or_else(|e| panic!("CAAS_DOCKER={url}: {e}"));
    let d = Deployer::connect(&endpoint)
        .unwrap_or_else(|e| panic!("cannot reach docker at {url}: {e}; {HOW}"));
    if let Err(e) = d.ping().await {
        panic!("docker at {url} does not answer: {e}; {HOW}");
    }
    d
}

/// The registry's credentials (`CAAS_REGISTRY_USER` / `CAAS_REGISTRY_PASSWORD`, written to
/// .caas/env by scripts/up), if it asks for any.
pub fn registry_creds() -> Option<RegistryCredentials> {
    RegistryCredentials::from_env(&env("CAAS_REGISTRY"))
}

/// `{CAAS_REGISTRY}/hello:{tag}`, pulled if the engine lacks it.
pub async fn hello(d: &Deployer, tag: &str) -> String {
    let image = format!("{}/hello:{tag}", env("CAAS_REGISTRY"));
    if !d.image_present(&image).await.unwrap() {
        d.pull_to_end(&image, registry_creds().as_ref())
            .await
            .unwrap_or_else(|e| {
                panic!("cannot pull {image}: {e}; {HOW} (it pushes the hello images)")
            });
    }
    image
}

/// A test's own `caas.managed` value; every container carrying it is removed on drop, so a
/// failing test leaves nothing behind either.
pub struct Namespace(pub String);

impl Namespace {
    pub fn new(test: &str) -> Namespace {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        Namespace(format!("t-dep-{test}-{}-{nanos:x}", std::process::id()))
    }

    /// A container name unique to this namespace.
    pub fn name(&self, suffix: &str) -> String {
        format!("caas-{}-{suffix}", self.0)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let filter = format!("label=caas.managed={}", self.0);
        let Ok(out) = Command::new("docker")
            .args(["ps", "-aq", "--filter", &filter])
            .output()
        else {
            return;
        };
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v"])
                .args(&ids)
                .output();
        }
    }
}

/// Containers of a namespace as the docker CLI sees them (an independent check).
pub fn cli_containers(ns: &Namespace) -> Vec<String> {
    let filter = format!("label=caas.managed={}", ns.0);
    let out = Command::new("docker")
        .args(["ps", "-aq", "--no-trunc", "--filter", &filter])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// `docker inspect -f {format} {id}`, trimmed.
pub fn cli_inspect(id: &str, format: &str) -> String {
    let out = Command::new("docker")
        .args(["inspect", "-f", format, id])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker inspect {id}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub const HOST_A: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
pub const HOST_B: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

/// A port free on 127.0.0.1, .2 and .3 right now (the kernel picks it, so parallel tests differ).
pub fn free_port() -> u16 {
    for _ in 0..50 {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if TcpListener::bind((HOST_A, port)).is_ok() && TcpListener::bind((HOST_B, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port found");
}

pub fn resources(mib: u64, millis: u32) -> Resources {
    Resources {
        memory: Memory::from_mib(mib).unwrap(),
        cpus: Cpus::from_millis(millis).unwrap(),
    }
}

/// A hello spec in `ns`, named `caas-{ns}-{suffix}`, bound to `ip:port`.
pub fn hello_spec(ns: &Namespace, suffix: &str, image: &str, ip: IpAddr, port: u16) -> RunSpec {
    let app = "hello".parse().unwrap();
    let version = "v1".parse().unwrap();
    let instance = format!("hello-{suffix}").parse().unwrap();
    let mut spec = RunSpec::for_instance(
        &ns.0,
        &app,
        &version,
        &instance,
        image.to_owned(),
        8080,
        caas_types::Endpoint::new(ip, port).unwrap(),
        resources(64, 500),
    );
    spec.name = ns.name(suffix);
    spec
}

/// `GET path` on `ip:port`: `Some((status, body))`, or `None` if no complete answer came.
pub async fn http_get(ip: IpAddr, port: u16, path: &str) -> Option<(u16, String)> {
    let work = async {
        let mut s = tokio::net::TcpStream::connect((ip, port)).await.ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let status = text.split(' ').nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n")?.1.to_owned();
        Some((status, body))
    };
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .ok()
        .flatten()
}

/// Polls `check` until it returns `Some` or `limit` passes (then fails with `what`).
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for hello's `/_ping` to answer `pong` on `ip:port`.
pub async fn wait_ping(ip: IpAddr, port: u16) {
    eventually("/_ping to answer", Duration::from_secs(60), || async move {
        match http_get(ip, port, "/_ping").await {
            Some((200, body)) if body.trim() == "pong" => Some(()),
            _ => None,
        }
    })
    .await
}
