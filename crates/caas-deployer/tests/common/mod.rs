//! The deployer's own test helpers (the engine, the hello image, namespaces and waits come from
//! `caas-testkit`): the docker CLI as an independent view, two loopback "hosts", free ports,
//! hello run specs and a tiny HTTP client.
#![allow(dead_code, clippy::unwrap_used)]

use caas_deployer::RunSpec;
use caas_testkit::docker::Namespace;
use caas_types::{Cpus, Memory, Resources};
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::process::Command;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Containers of a namespace as the docker CLI sees them (an independent check).
pub fn cli_containers(ns: &Namespace) -> Vec<String> {
    let filter = format!("label=caas.managed={ns}");
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
        ns.as_str(),
        &app,
        &version,
        &instance,
        image.to_owned(),
        8080,
        caas_types::Endpoint::new(ip, port).unwrap(),
        resources(64, 500),
    );
    spec.name = ns.container_name(suffix);
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

/// Waits for hello's `/_ping` to answer `pong` on `ip:port`.
pub async fn wait_ping(ip: IpAddr, port: u16) {
    caas_testkit::eventually("/_ping to answer", || async move {
        match http_get(ip, port, "/_ping").await {
            Some((200, body)) if body.trim() == "pong" => Some(()),
            _ => None,
        }
    })
    .await
}
