//! The real ZooKeeper and Docker from `scripts/up`: one ZooKeeper chroot per test (created and
//! removed with the super credential) and hello containers with unique names and labels, removed
//! on drop even when the test fails.

use caas_registry::{AclPolicy, ZkAuth, ZkConfig};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use zookeeper_client::{Acl, AuthId, Client, CreateMode, Permission};

const HOW: &str = "start the services with `scripts/up && source .caas/env`, or run `scripts/test`";

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: {HOW}"))
}

fn auth(name: &str) -> ZkAuth {
    var(name)
        .parse()
        .unwrap_or_else(|e| panic!("{name} is not user:password ({e}): {HOW}"))
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name unique to this test process and call.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

async fn raw_client(connect: &str, auth: &ZkAuth) -> Client {
    Client::connector()
        .with_session_timeout(Duration::from_secs(4))
        .with_auth(
            "digest",
            format!("{}:{}", auth.user, auth.password).as_bytes(),
        )
        .connect(connect)
        .await
        .unwrap_or_else(|e| panic!("zookeeper at {connect} unreachable ({e}): {HOW}"))
}

/// A test's own chroot; removed recursively on drop.
pub struct Chroot {
    pub path: String,
    connect: String,
    platform: ZkAuth,
    reader: ZkAuth,
    superuser: ZkAuth,
}

impl Chroot {
    pub async fn new(name: &str) -> Chroot {
        let connect = var("CAAS_ZK");
        let (platform, reader, superuser) = (
            auth("CAAS_ZK_AUTH"),
            auth("CAAS_ZK_READ_AUTH"),
            auth("CAAS_ZK_SUPER_AUTH"),
        );
        let path = format!("/{}", unique(&format!("caas-gwtest-{name}")));
        let admin = raw_client(&connect, &superuser).await;
        let acls = [
            Acl::new(
                Permission::ALL,
                AuthId::new("digest", &platform.digest_id()),
            ),
            Acl::new(Permission::READ, AuthId::new("digest", &reader.digest_id())),
        ];
        admin
            .create(
                &path,
                b"",
                &CreateMode::Persistent.with_acls(zookeeper_client::Acls::new(&acls)),
            )
            .await
            .unwrap_or_else(|e| panic!("creating chroot {path}: {e}"));
        Chroot {
            path,
            connect,
            platform,
            reader,
            superuser,
        }
    }

    fn cfg(&self, auth: &ZkAuth) -> ZkConfig {
        ZkConfig::new(self.connect.clone())
            .with_chroot(self.path.clone())
            .with_auth(auth.clone())
    }

    /// The platform (writer) side, as the scheduler uses it.
    pub fn platform(&self) -> ZkConfig {
        self.cfg(&self.platform)
    }

    /// The gateway's read-only side.
    pub fn reader(&self) -> ZkConfig {
        self.cfg(&self.reader)
    }

    pub fn policy(&self) -> AclPolicy {
        AclPolicy::new(self.platform.clone(), Some(self.reader.clone()))
    }
}

fn delete_recursive<'a>(
    c: &'a Client,
    path: &'a str,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
    Box::pin(async move {
        if let Ok(children) = c.list_children(path).await {
            for child in children {
                delete_recursive(c, &format!("{path}/{child}")).await;
            }
        }
        let _ = c.delete(path, None).await;
    })
}

impl Drop for Chroot {
    fn drop(&mut self) {
        let (connect, superuser, path) = (
            self.connect.clone(),
            self.superuser.clone(),
            self.path.clone(),
        );
        // Drop cannot await; clean up on a thread of its own so it works inside a runtime.
        let cleanup = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let admin = raw_client(&connect, &superuser).await;
                delete_recursive(&admin, &path).await;
            });
        });
        let _ = cleanup.join();
    }
}

/// Hello containers started by one test, all carrying its label; removed on drop.
pub struct Containers {
    pub label: String,
    names: Vec<String>,
}

fn docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
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
    pub fn new(test: &str) -> Containers {
        Containers {
            label: unique(&format!("gwtest-{test}")),
            names: Vec::new(),
        }
    }

    /// Runs `127.0.0.1:5000/hello:{version}` with its port 8080 published on `ip` (a free host
    /// port): (full container id, endpoint).
    pub fn run(&mut self, ip: &str, version: &str) -> (String, SocketAddr) {
        let registry = std::env::var("CAAS_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".into());
        let name = unique("caas-gwtest");
        let image = format!("{registry}/hello:{version}");
        // Remembered before it exists: a failed start can leave a created container behind.
        self.names.push(name.clone());
        let id = docker(&[
            "run",
            "-d",
            "--name",
            &name,
            "--label",
            &format!("caas.managed={}", self.label),
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

impl Drop for Containers {
    fn drop(&mut self) {
        if !self.names.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(self.names.iter().map(String::as_str));
            let _ = docker(&args);
        }
    }
}
