//! The real ZooKeeper from `scripts/up`: its credentials, raw clients (the super credential
//! sees through every ACL) and a chroot per test, created with the platform's ACLs and removed
//! on drop.

use crate::{clean_up, unique, var, HOW};
use caas_registry::{AclPolicy, Registry, ZkAuth, ZkConfig};
use std::time::Duration;
use zookeeper_client::{Acl, Acls, AuthId, Client, CreateMode, Error, Permission, SessionInfo};

/// The session timeout of every config and client made here: short, so that a test which ends
/// a session sees the expiry's effects soon.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(4);

/// ZooKeeper's address and the three credentials `scripts/up` makes.
#[derive(Debug, Clone)]
pub struct ZkEnv {
    /// `CAAS_ZK`: the connect string.
    pub connect: String,
    /// `CAAS_ZK_AUTH`: the platform's writer credential (ALL on the tree).
    pub platform: ZkAuth,
    /// `CAAS_ZK_READ_AUTH`: the gateways' read-only credential (READ on the tree).
    pub reader: ZkAuth,
    /// `CAAS_ZK_SUPER_AUTH`: the superuser, which no ACL stops; for set-up and clean-up only.
    pub superuser: ZkAuth,
}

impl ZkEnv {
    /// Reads the address and credentials; panics, saying how to set them, when one is missing.
    pub fn from_env() -> ZkEnv {
        ZkEnv {
            connect: var("CAAS_ZK"),
            platform: auth("CAAS_ZK_AUTH"),
            reader: auth("CAAS_ZK_READ_AUTH"),
            superuser: auth("CAAS_ZK_SUPER_AUTH"),
        }
    }
}

fn auth(name: &str) -> ZkAuth {
    var(name)
        .parse()
        .unwrap_or_else(|e| panic!("{name} is not user:password ({e}): {HOW}"))
}

/// A raw client (not rooted) of the ZooKeeper at `address`, authenticated as `auth` if given;
/// panics, saying how to start ZooKeeper, when it cannot connect.
pub async fn connect(address: &str, auth: Option<&ZkAuth>) -> Client {
    try_connect(address, auth)
        .await
        .unwrap_or_else(|e| panic!("zookeeper at {address} unreachable ({e}): {HOW}"))
}

async fn try_connect(address: &str, auth: Option<&ZkAuth>) -> Result<Client, Error> {
    let mut connector = Client::connector().with_session_timeout(SESSION_TIMEOUT);
    if let Some(a) = auth {
        connector = connector.with_auth("digest", format!("{}:{}", a.user, a.password).as_bytes());
    }
    connector.connect(address).await
}

/// A raw client with the super credential, which sees through every ACL: for checking what is
/// really stored, and for changing it behind the platform's back.
pub async fn super_client() -> Client {
    let env = ZkEnv::from_env();
    connect(&env.connect, Some(&env.superuser)).await
}

/// A test's own chroot `/caas-test-{name}-{unique}`, created with the platform's ACLs (the
/// writer gets ALL, the reader READ); removed with everything below it on drop, even when the
/// test failed.
pub struct Chroot {
    /// The chroot's absolute path.
    pub path: String,
    /// The address and credentials it was made with.
    pub env: ZkEnv,
}

impl Chroot {
    /// Creates the chroot; `name` (lower-case, no `/`) tells whose it is.
    pub async fn new(name: &str) -> Chroot {
        let env = ZkEnv::from_env();
        let path = format!("/{}", unique(&format!("caas-test-{name}")));
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
        connect(&env.connect, Some(&env.superuser))
            .await
            .create(
                &path,
                b"",
                &CreateMode::Persistent.with_acls(Acls::new(&acls)),
            )
            .await
            .unwrap_or_else(|e| panic!("creating the chroot {path}: {e}"));
        Chroot { path, env }
    }

    /// A config rooted at the chroot, authenticated as `auth` if given.
    pub fn config(&self, auth: Option<&ZkAuth>) -> ZkConfig {
        let mut config = ZkConfig::new(self.env.connect.clone()).with_chroot(self.path.clone());
        config.auth = auth.cloned();
        config.session_timeout = SESSION_TIMEOUT;
        config
    }

    /// The platform's (writer) config, as the scheduler uses it.
    pub fn platform(&self) -> ZkConfig {
        self.config(Some(&self.env.platform))
    }

    /// The gateways' read-only config.
    pub fn reader(&self) -> ZkConfig {
        self.config(Some(&self.env.reader))
    }

    /// A config with no credential at all.
    pub fn anonymous(&self) -> ZkConfig {
        self.config(None)
    }

    /// The platform's ACL policy: the writer gets ALL, the reader READ.
    pub fn policy(&self) -> AclPolicy {
        AclPolicy::new(self.env.platform.clone(), Some(self.env.reader.clone()))
    }

    /// The platform's `Registry` on the chroot (writer config, platform ACLs) with its layout
    /// made, as the scheduler has it once started.
    pub async fn registry(&self) -> Registry {
        let mut attempt = 1;
        loop {
            let made = async {
                let registry = Registry::connect(&self.platform(), self.policy())
                    .await
                    .map_err(|e| format!("connecting the registry in {}: {e}", self.path))?;
                registry
                    .ensure_layout()
                    .await
                    .map_err(|e| format!("making the layout in {}: {e}", self.path))?;
                Ok::<_, String>(registry)
            }
            .await;
            match made {
                Ok(registry) => return registry,
                Err(e) if attempt < TRANSIENT_ATTEMPTS => {
                    eprintln!("zookeeper set-up failed ({e}); again");
                    attempt += 1;
                    tokio::time::sleep(TRANSIENT_PAUSE).await;
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// A raw client rooted at the chroot, authenticated as `auth` if given.
    pub async fn raw(&self, auth: Option<&ZkAuth>) -> Client {
        connect(&self.env.connect, auth)
            .await
            .chroot(self.path.clone())
            .unwrap_or_else(|_| panic!("{} is not a valid chroot", self.path))
    }
}

impl Drop for Chroot {
    fn drop(&mut self) {
        let (connect, superuser, path) = (
            self.env.connect.clone(),
            self.env.superuser.clone(),
            self.path.clone(),
        );
        clean_up(&format!("zookeeper chroot {path}"), move || async move {
            let admin = try_connect(&connect, Some(&superuser))
                .await
                .map_err(|e| e.to_string())?;
            delete_recursive(&admin, &path)
                .await
                .map_err(|e| e.to_string())
        });
    }
}

/// Deletes `path` and everything below it; already gone is fine. Retries a level that grows
/// meanwhile (a watcher re-creating a node), a few times.
pub async fn delete_recursive(client: &Client, path: &str) -> Result<(), Error> {
    for _ in 0..10 {
        let Some(children) = none_if_no_node(client.list_children(path).await)? else {
            return Ok(());
        };
        for child in children {
            Box::pin(delete_recursive(client, &format!("{path}/{child}"))).await?;
        }
        match client.delete(path, None).await {
            Ok(()) | Err(Error::NoNode) => return Ok(()),
            Err(Error::NotEmpty) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::NotEmpty)
}

fn none_if_no_node<T>(result: Result<T, Error>) -> Result<Option<T>, Error> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(Error::NoNode) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The data of the node at `path` as text, or `None` if there is no such node; any other error
/// fails the test (an unreadable node is not an absent one).
pub async fn read(client: &Client, path: &str) -> Option<String> {
    let (data, _) = patiently(&format!("reading zookeeper node {path}"), || {
        client.get_data(path)
    })
    .await?;
    Some(String::from_utf8(data).unwrap_or_else(|e| panic!("node {path} is not UTF-8: {e}")))
}

/// The children of the node at `path`, or `None` if there is no such node; any other error
/// fails the test (a node that cannot be listed is not an empty one).
pub async fn children(client: &Client, path: &str) -> Option<Vec<String>> {
    patiently(&format!("listing zookeeper node {path}"), || {
        client.list_children(path)
    })
    .await
}

/// How many times a test's own ZooKeeper read or set-up is tried when the server does not
/// answer in time (a shared server on a loaded 2-core machine can stall past the short request
/// timeout of the tests' 4 s sessions), and the pause between tries. Only transport failures
/// ("no response from connection", connection lost, timed out) are tried again; an answer
/// (even an error) is final.
const TRANSIENT_ATTEMPTS: u32 = 3;
const TRANSIENT_PAUSE: Duration = Duration::from_millis(300);

/// `op`'s result, `None` for no such node; a transport failure (no response, connection lost)
/// tried again up to [`TRANSIENT_ATTEMPTS`] times; any other error fails the test (an
/// unreadable node is not an absent one).
async fn patiently<T, F, Fut>(what: &str, mut op: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let mut attempt = 1;
    loop {
        match none_if_no_node(op().await) {
            Ok(v) => return v,
            Err(e @ (Error::ConnectionLoss | Error::Timeout | Error::Custom(_)))
                if attempt < TRANSIENT_ATTEMPTS =>
            {
                eprintln!("{what}: {e}; again");
                attempt += 1;
                tokio::time::sleep(TRANSIENT_PAUSE).await;
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

/// Ends `session` from outside, as an expiry would: a second client takes the session over
/// (same id and password) and closes it. If the owner has already let go of the session (it
/// reacts to the takeover by opening a fresh one and closing the old), that is fine too.
pub async fn end_session(address: &str, session: SessionInfo) {
    for _ in 0..5 {
        let attempt = Client::connector()
            .with_session(session.clone())
            .connect(address)
            .await;
        match attempt {
            // Dropping the last handle of a non-detached client closes its session.
            Ok(thief) => return drop(thief),
            Err(Error::SessionExpired) => return,
            Err(e) => eprintln!("taking over the session failed ({e}); retrying"),
        }
    }
    panic!("could not end session {}", session.id());
}
