//! Hello containers for the live test, started with the docker CLI (the engine picks each host
//! port) in a `caas-testkit` namespace, which removes them on drop even when the test fails.

use caas_testkit::docker::Namespace;
use caas_testkit::{var, HOW};
use std::net::SocketAddr;
use std::process::Command;

/// Hello containers started by one test, all carrying its namespace's label.
pub struct Containers {
    namespace: Namespace,
    started: usize,
}

/// `docker -H $CAAS_DOCKER args`: its trimmed stdout, or its stderr as the error.
fn docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .arg("-H")
        .arg(var("CAAS_DOCKER"))
        .args(args)
        .output()
        .map_err(|e| format!("docker not runnable ({e}): {HOW}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

impl Containers {
    /// An empty set in a fresh namespace; `test` tells whose it is.
    pub fn new(test: &str) -> Containers {
        Containers {
            namespace: Namespace::new(&format!("gw-{test}")),
            started: 0,
        }
    }

    /// Runs `{CAAS_REGISTRY}/hello:{version}` with its port 8080 published on `ip` (a free host
    /// port): (full container id, endpoint).
    pub fn run(&mut self, ip: &str, version: &str) -> (String, SocketAddr) {
        let image = format!("{}/hello:{version}", var("CAAS_REGISTRY"));
        self.started += 1;
        let name = self.namespace.container_name(&self.started.to_string());
        let id = docker(&[
            "run",
            "-d",
            "--name",
            &name,
            "--label",
            &format!("caas.managed={}", self.namespace),
            "-p",
            &format!("{ip}::8080"),
            &image,
        ])
        .unwrap_or_else(|e| {
            panic!("docker run {image}: {e} ({HOW}; `scripts/build-hello` pushes the image)")
        });
        let port =
            docker(&["port", &name, "8080/tcp"]).unwrap_or_else(|e| panic!("docker port: {e}"));
        let addr: SocketAddr = port
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected docker port output {port:?}"));
        (id, addr)
    }

    /// Kills one container (SIGKILL), as a crash would.
    pub fn kill(&self, id: &str) {
        docker(&["kill", id]).unwrap_or_else(|e| panic!("docker kill: {e}"));
    }
}
