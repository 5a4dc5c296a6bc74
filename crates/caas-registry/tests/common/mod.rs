//! Shared test support: the real ZooKeeper from `scripts/up`, one chroot per test (created and
//! removed with the super credential), raw clients for checking what is really stored, and
//! "eventually" waits.

#![allow(dead_code, clippy::unwrap_used)]

use caas_registry::{AclPolicy, ZkAuth, ZkConfig};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use zookeeper_client::{Acl, AuthId, Client, CreateMode, Permission};

const HOW: &str = "start the services with `scripts/up && source .caas/env`, or run `scripts/test`";

/// Deadline of every "eventually" wait: generous, since the machine is shared and noisy.
pub const WAIT: Duration = Duration::from_secs(20);

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: {HOW}"))
}

fn auth(name: &str) -> ZkAuth {
    var(name)
        .parse()
        .unwrap_or_else(|e| panic!("{name} is not user:password ({e}): {HOW}"))
}

/// The services' coordinates from the environment.
#[derive(Clone)]
pub struct Env {
    pub connect: String,
    pub platform: ZkAuth,
    pub reader: ZkAuth,
    pub superuser: ZkAuth,
}

pub fn env() -> Env {
    Env {
        connect: var("CAAS_ZK"),
        platform: auth("CAAS_ZK_AUTH"),
        reader: auth("CAAS_ZK_READ_AUTH"),
        superuser: auth("CAAS_ZK_SUPER_AUTH"),
    }
}

/// A raw client (not rooted) authenticated as `auth`, if any.
pub async fn raw_client(connect: &str, auth: Option<&ZkAuth>) -> Client {
    let mut c = Client::connector().with_session_timeout(Duration::from_secs(4));
    if let Some(a) = auth {
        c = c.with_auth("digest", format!("{}:{}", a.user, a.password).as_bytes());
    }
    c.connect(connect)
        .await
        .unwrap_or_else(|e| panic!("zookeeper at {connect} unreachable ({e}): {HOW}"))
}

/// A test's own chroot `/caas-test-…`; removed recursively on drop, even if the test failed.
pub struct Chroot {
    pub path: String,
    pub env: Env,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl Chroot {
    pub async fn new(name: &str) -> Chroot {
        let env = env();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = format!(
            "/caas-test-{name}-{}-{nanos}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let admin = raw_client(&env.connect, Some(&env.superuser)).await;
        let acls = [
            Acl::new(
                Permission::ALL,
                AuthId::new("digest", &env.platform.digest_id()),
            ),
            Acl::new(
                Permission::READ,
                AuthId::new("digest", &env.reader.digest_id()),
            ),
        ];
        admin
            .create(
                &path,
                b"",
                &CreateMode::Persistent.with_acls(zookeeper_client::Acls::new(&acls)),
            )
            .await
            .unwrap_or_else(|e| panic!("creating chroot {path}: {e}"));
        Chroot { path, env }
    }

    fn cfg(&self, auth: Option<&ZkAuth>) -> ZkConfig {
        ZkConfig {
            connect: self.env.connect.clone(),
            chroot: Some(self.path.clone()),
            auth: auth.cloned(),
            session_timeout: Duration::from_secs(4),
        }
    }

    /// Config of the platform (writer) credential.
    pub fn platform(&self) -> ZkConfig {
        self.cfg(Some(&self.env.platform))
    }

    /// Config of the gateways' read-only credential.
    pub fn reader(&self) -> ZkConfig {
        self.cfg(Some(&self.env.reader))
    }

    /// Config with no credential at all.
    pub fn anonymous(&self) -> ZkConfig {
        self.cfg(None)
    }

    pub fn policy(&self) -> AclPolicy {
        AclPolicy::new(self.env.platform.clone(), Some(self.env.reader.clone()))
    }

    /// A raw client rooted at the chroot, authenticated as `auth`.
    pub async fn raw(&self, auth: Option<&ZkAuth>) -> Client {
        raw_client(&self.env.connect, auth)
            .await
            .chroot(self.path.clone())
            .unwrap_or_else(|_| panic!("bad chroot"))
    }
}

impl Drop for Chroot {
    fn drop(&mut self) {
        let connect = self.env.connect.clone();
        let superuser = self.env.superuser.clone();
        let path = self.path.clone();
        // Drop cannot await; clean up on a thread of its own so it works inside a runtime too.
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let admin = raw_client(&connect, Some(&superuser)).await;
                if let Err(e) = delete_recursive(&admin, &path).await {
                    eprintln!("cleanup of {path} failed: {e}");
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// Deletes `path` and everything below it; retries levels that grow meanwhile.
pub async fn delete_recursive(client: &Client, path: &str) -> Result<(), zookeeper_client::Error> {
    for _ in 0..10 {
        let children = match client.list_children(path).await {
            Ok(c) => c,
            Err(zookeeper_client::Error::NoNode) => return Ok(()),
            Err(e) => return Err(e),
        };
        for child in children {
            Box::pin(delete_recursive(client, &format!("{path}/{child}"))).await?;
        }
        match client.delete(path, None).await {
            Ok(()) | Err(zookeeper_client::Error::NoNode) => return Ok(()),
            Err(zookeeper_client::Error::NotEmpty) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(zookeeper_client::Error::NotEmpty)
}

/// Polls `check` until it returns `Some`, or panics with `what` after [`WAIT`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The data of a node as a string, or `None` if it does not exist.
pub async fn read(client: &Client, path: &str) -> Option<String> {
    match client.get_data(path).await {
        Ok((d, _)) => Some(String::from_utf8(d).expect("utf-8")),
        Err(zookeeper_client::Error::NoNode) => None,
        Err(e) => panic!("reading {path}: {e}"),
    }
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "caas_registry=debug".into()),
        )
        .try_init();
}

/// Ends a session from outside, as an expiry would: a second client takes the session over
/// (same id and password) and closes it. If the owner has already let go of the session (it
/// reacts to the takeover by opening a fresh one and closing the old), that is fine too.
pub async fn end_session(connect: &str, session: zookeeper_client::SessionInfo) {
    for _ in 0..5 {
        let attempt = zookeeper_client::Client::connector()
            .with_session(session.clone())
            .connect(connect)
            .await;
        match attempt {
            // Dropping the last handle of a non-detached client closes its session.
            Ok(thief) => return drop(thief),
            Err(zookeeper_client::Error::SessionExpired) => return,
            Err(e) => eprintln!("taking over the session failed ({e}); retrying"),
        }
    }
    panic!("could not end session {}", session.id());
}
