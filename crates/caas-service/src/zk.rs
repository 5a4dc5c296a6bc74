//! Where a daemon finds ZooKeeper, as flags: connect string, chroot and session timeout.

use caas_registry::{ZkAuth, ZkConfig};
use std::time::Duration;

/// The session timeout a daemon asks for unless told otherwise (the scheduler's
/// `--zk-session-timeout-ms` default), milliseconds.
pub const DEFAULT_SESSION_TIMEOUT_MS: u64 = 10_000;

/// Where a daemon finds ZooKeeper: flatten it into the daemon's `clap::Parser`
/// (`#[command(flatten)]`).
///
/// There is no credential here, on purpose: each binary declares its own flag for it, under its
/// own name. The scheduler's is the platform's writer credential (`--zk-auth`, `CAAS_ZK_AUTH`);
/// the gateway's is the read-only one (`CAAS_ZK_READ_AUTH`). Because the names differ, a gateway
/// started in an environment that also holds the writer's credential (a shared env file, a
/// developer's shell after `source .caas/env`) never picks it up: a gateway can only ever read
/// the tree. Pass the parsed credential to [`ZkArgs::zk_config`].
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ZkArgs {
    /// ZooKeeper connect string (`host:port,...`).
    #[arg(
        long = "zk",
        env = "CAAS_ZK",
        value_name = "ZK",
        default_value = "127.0.0.1:2181"
    )]
    pub connect: String,

    /// ZooKeeper chroot the caas tree lives under (e.g. /prod); unset or empty for none. The
    /// scheduler and its gateways must use the same one.
    #[arg(long = "zk-chroot", env = "CAAS_ZK_CHROOT", value_name = "ZK_CHROOT")]
    pub chroot: Option<String>,

    /// ZooKeeper session timeout, milliseconds.
    #[arg(
        long = "zk-session-timeout-ms",
        env = "CAAS_ZK_SESSION_TIMEOUT_MS",
        value_name = "ZK_SESSION_TIMEOUT_MS",
        default_value_t = DEFAULT_SESSION_TIMEOUT_MS
    )]
    pub session_timeout_ms: u64,
}

impl ZkArgs {
    /// The clap id of [`ZkArgs::session_timeout_ms`], for a binary that sets its own default
    /// with `#[command(mut_arg(ZkArgs::SESSION_TIMEOUT_ID, ...))]`.
    pub const SESSION_TIMEOUT_ID: &'static str = "session_timeout_ms";

    /// The registry's connection config: these flags, authenticated with `auth` (the binary's own
    /// credential, see the type's documentation) if any. An empty chroot is no chroot.
    pub fn zk_config(&self, auth: Option<ZkAuth>) -> ZkConfig {
        let mut zk = ZkConfig::new(self.connect.clone());
        if let Some(root) = self.chroot.as_deref().filter(|r| !r.is_empty()) {
            zk = zk.with_chroot(root);
        }
        if let Some(auth) = auth {
            zk = zk.with_auth(auth);
        }
        zk.session_timeout = Duration::from_millis(self.session_timeout_ms);
        zk
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use clap::{CommandFactory as _, Parser};

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        zk: ZkArgs,
    }

    fn parse(args: &[&str]) -> ZkArgs {
        Cli::try_parse_from(std::iter::once("test").chain(args.iter().copied()))
            .unwrap()
            .zk
    }

    #[test]
    fn flags_names_and_variables() {
        let cmd = Cli::command();
        let flags: Vec<_> = cmd
            .get_arguments()
            .map(|a| {
                (
                    a.get_long().unwrap().to_owned(),
                    a.get_env().unwrap().to_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            flags,
            [
                ("zk".to_owned(), "CAAS_ZK".to_owned()),
                ("zk-chroot".to_owned(), "CAAS_ZK_CHROOT".to_owned()),
                (
                    "zk-session-timeout-ms".to_owned(),
                    "CAAS_ZK_SESSION_TIMEOUT_MS".to_owned()
                ),
            ]
        );
        assert!(
            cmd.get_arguments()
                .all(|a| !a.get_long().unwrap().contains("auth")),
            "no credential in ZkArgs"
        );
        assert!(cmd
            .get_arguments()
            .any(|a| a.get_id() == ZkArgs::SESSION_TIMEOUT_ID));
    }

    #[test]
    fn defaults_are_a_local_zookeeper_without_chroot() {
        // Read from the definition, not by parsing: the test environment may set CAAS_ZK.
        let cmd = Cli::command();
        let default = |long: &str| {
            let arg = cmd
                .get_arguments()
                .find(|a| a.get_long() == Some(long))
                .unwrap();
            arg.get_default_values()
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(default("zk"), ["127.0.0.1:2181"]);
        assert!(default("zk-chroot").is_empty());
        assert_eq!(default("zk-session-timeout-ms"), ["10000"]);
    }

    #[test]
    fn config_carries_every_flag_and_the_given_credential() {
        let args = parse(&[
            "--zk",
            "zk1:2181",
            "--zk-chroot",
            "/prod",
            "--zk-session-timeout-ms",
            "4000",
        ]);
        assert_eq!(
            args,
            ZkArgs {
                connect: "zk1:2181".into(),
                chroot: Some("/prod".into()),
                session_timeout_ms: 4000,
            }
        );
        let auth: ZkAuth = "gateway:secret".parse().unwrap();
        let zk = args.zk_config(Some(auth.clone()));
        assert_eq!(zk.connect, "zk1:2181");
        assert_eq!(zk.chroot.as_deref(), Some("/prod"));
        assert_eq!(zk.auth, Some(auth));
        assert_eq!(zk.session_timeout, Duration::from_secs(4));
    }

    #[test]
    fn an_empty_chroot_is_none() {
        let zk = parse(&["--zk-chroot", ""]).zk_config(None);
        assert_eq!(zk.chroot, None);
    }
}
