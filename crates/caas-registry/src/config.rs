//! How to reach ZooKeeper: connect string, chroot, digest credentials, the ACL policy the tree
//! is written with, and the one function that opens a session from them.

use crate::error::{Error, Result};
use base64::Engine as _;
use sha1::Digest as _;
use std::time::Duration;
use zookeeper_client::{Acl, AuthId, Client, Permission};

/// Where and how to connect to ZooKeeper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkConfig {
    /// Comma-separated `host:port` list, e.g. `127.0.0.1:2181`.
    pub connect: String,
    /// Optional chroot (`/caas-test-1`): every path of the layout lives below it.
    pub chroot: Option<String>,
    /// Digest credential the session authenticates with (platform or read-only).
    pub auth: Option<ZkAuth>,
    /// Session timeout to negotiate; the server clamps it to its own bounds.
    pub session_timeout: Duration,
}

impl ZkConfig {
    /// A config for `connect` with no chroot, no credential and a 6 s session timeout.
    pub fn new(connect: impl Into<String>) -> ZkConfig {
        ZkConfig {
            connect: connect.into(),
            chroot: None,
            auth: None,
            session_timeout: Duration::from_secs(6),
        }
    }

    /// The same config with `auth` as its credential.
    pub fn with_auth(mut self, auth: ZkAuth) -> ZkConfig {
        self.auth = Some(auth);
        self
    }

    /// The same config rooted at `chroot`.
    pub fn with_chroot(mut self, chroot: impl Into<String>) -> ZkConfig {
        self.chroot = Some(chroot.into());
        self
    }
}

/// A ZooKeeper `digest` credential: user name and password.
#[derive(Clone, PartialEq, Eq)]
pub struct ZkAuth {
    /// User name (no `:`).
    pub user: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for ZkAuth {
    // Never print the password into logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZkAuth")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl ZkAuth {
    /// The digest id ZooKeeper stores in ACLs: `user:base64(sha1("user:password"))`.
    pub fn digest_id(&self) -> String {
        let hash = sha1::Sha1::digest(format!("{}:{}", self.user, self.password).as_bytes());
        format!(
            "{}:{}",
            self.user,
            base64::engine::general_purpose::STANDARD.encode(hash)
        )
    }

    fn auth_bytes(&self) -> Vec<u8> {
        format!("{}:{}", self.user, self.password).into_bytes()
    }
}

impl std::str::FromStr for ZkAuth {
    type Err = Error;

    /// Parses `user:password` (the form of `CAAS_ZK_AUTH`).
    fn from_str(s: &str) -> Result<Self> {
        match s.split_once(':') {
            Some((user, password)) if !user.is_empty() && !password.is_empty() => Ok(ZkAuth {
                user: user.to_owned(),
                password: password.to_owned(),
            }),
            _ => Err(Error::Config(
                "zookeeper credential must look like user:password".into(),
            )),
        }
    }
}

/// The ACL every node of the tree is created with: the platform's writer credential gets ALL,
/// the read-only reader identity (the gateways') gets READ, and nobody else gets anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclPolicy {
    /// The platform credential; the registry's session authenticates with it.
    pub writer: ZkAuth,
    /// The identity gateways read with, if any.
    pub reader: Option<ZkAuth>,
}

impl AclPolicy {
    /// Writer gets ALL, `reader` (if any) gets READ.
    pub fn new(writer: ZkAuth, reader: Option<ZkAuth>) -> AclPolicy {
        AclPolicy { writer, reader }
    }

    /// The ZooKeeper ACL list this policy stands for.
    pub fn acls(&self) -> Vec<Acl> {
        let mut acls = vec![Acl::new(
            Permission::ALL,
            AuthId::new("digest", &self.writer.digest_id()),
        )];
        if let Some(reader) = &self.reader {
            acls.push(Acl::new(
                Permission::READ,
                AuthId::new("digest", &reader.digest_id()),
            ));
        }
        acls
    }
}

/// Opens a session: authenticates with every credential in `auths` and roots the client at
/// the configured chroot.
pub(crate) async fn open_session(cfg: &ZkConfig, auths: &[&ZkAuth]) -> Result<Client> {
    let mut connector = Client::connector().with_session_timeout(cfg.session_timeout);
    for auth in auths {
        connector = connector.with_auth("digest", &auth.auth_bytes());
    }
    let client = connector
        .connect(&cfg.connect)
        .await
        .map_err(|source| Error::Unreachable {
            connect: cfg.connect.clone(),
            source,
        })?;
    match cfg.chroot.as_deref() {
        None | Some("") | Some("/") => Ok(client),
        Some(root) => client
            .chroot(root.to_owned())
            .map_err(|_| Error::Config(format!("bad chroot {root:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_id_matches_zookeeper() {
        // Reference value from ZooKeeper's DigestAuthenticationProvider.generateDigest("super:test").
        let auth: ZkAuth = "super:test".parse().expect("valid");
        assert_eq!(auth.digest_id(), "super:D/InIHSb7yEEbrWz8b9l71RjZJU=");
        assert!("nocolon".parse::<ZkAuth>().is_err());
        assert!(":pw".parse::<ZkAuth>().is_err());
        assert!(!format!("{auth:?}").contains("test"), "password hidden");
    }

    #[test]
    fn policy_grants_writer_all_and_reader_read() {
        let w: ZkAuth = "caas:pw".parse().expect("valid");
        let r: ZkAuth = "gateway:pw2".parse().expect("valid");
        let acls = AclPolicy::new(w.clone(), Some(r.clone())).acls();
        assert_eq!(acls.len(), 2);
        assert_eq!(acls[0].permission(), Permission::ALL);
        assert_eq!(acls[0].id(), w.digest_id());
        assert_eq!(acls[1].permission(), Permission::READ);
        assert_eq!(acls[1].id(), r.digest_id());
        assert!(acls.iter().all(|a| a.scheme() == "digest"));
    }
}
