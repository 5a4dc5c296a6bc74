//! The scheduler's configuration: one clap struct, every field from a flag or a `CAAS_` variable,
//! with defaults that work on a laptop after `scripts/up`.

use caas_service::ZkArgs;
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;

/// caas-scheduler: the admin API, placement, deploys, health and reconciliation.
#[derive(Debug, Clone, Parser)]
#[command(name = "caas-scheduler", version, about)]
pub struct Config {
    /// Address of the admin API.
    #[arg(long, env = "CAAS_SCHEDULER_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,

    /// MySQL/MariaDB URL of the scheduler's database (mysql://user:pw@host:port/db).
    #[arg(long, env = "CAAS_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,

    /// Connections in the database pool.
    #[arg(long, env = "CAAS_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,

    /// The operator's bearer token: full access, including hosts and tenants. At least
    /// [`MIN_OPERATOR_TOKEN`] characters (scripts/up and compose generate 24).
    #[arg(long, env = "CAAS_TOKEN", hide_env_values = true, value_parser = operator_token)]
    pub token: String,

    /// Where ZooKeeper is: `--zk`, `--zk-chroot`, `--zk-session-timeout-ms` (shared with the
    /// gateway; the credentials below are the scheduler's own).
    #[command(flatten)]
    pub zk: ZkArgs,

    /// The platform's ZooKeeper digest credential, user:password (write access to the tree).
    #[arg(long, env = "CAAS_ZK_AUTH", hide_env_values = true)]
    pub zk_auth: Option<String>,

    /// The gateways' read-only ZooKeeper digest credential, user:password (granted READ).
    #[arg(long, env = "CAAS_ZK_READ_AUTH", hide_env_values = true)]
    pub zk_read_auth: Option<String>,

    /// The private registry apps are pulled from (host:port); images are {registry}/{app}:{version}.
    #[arg(long, env = "CAAS_REGISTRY", default_value = "127.0.0.1:5000")]
    pub registry: String,

    /// Registry user for pulls, if the registry needs auth.
    #[arg(long, env = "CAAS_REGISTRY_USER")]
    pub registry_user: Option<String>,

    /// Registry password for pulls.
    #[arg(long, env = "CAAS_REGISTRY_PASSWORD", hide_env_values = true)]
    pub registry_password: Option<String>,

    /// Bearer token the registry sends with its notifications to `POST /v1/registry/events`
    /// (its `notifications.endpoints[].headers`); unset or empty, that endpoint answers 404.
    #[arg(long, env = "CAAS_REGISTRY_HOOK_TOKEN", hide_env_values = true)]
    pub registry_hook_token: Option<String>,

    /// The registry token signer's private key (PEM, PKCS#8, EC P-256): with
    /// `--registry-token-cert`, `GET /v1/registry/token` issues ES256 tokens for the registry's
    /// `auth: token`. Unset, that endpoint answers 404 (a registry with htpasswd auth).
    #[arg(long, env = "CAAS_REGISTRY_TOKEN_KEY")]
    pub registry_token_key: Option<PathBuf>,

    /// The signer's certificate (PEM; its chain may follow), sent in each token's `x5c` header;
    /// the registry's `rootcertbundle` holds it or the CA that issued it.
    #[arg(long, env = "CAAS_REGISTRY_TOKEN_CERT")]
    pub registry_token_cert: Option<PathBuf>,

    /// The tokens' issuer (`iss`), the registry's `auth.token.issuer`.
    #[arg(
        long,
        env = "CAAS_REGISTRY_TOKEN_ISSUER",
        default_value = "caas-scheduler"
    )]
    pub registry_token_issuer: String,

    /// The registry's service name (`aud`), its `auth.token.service`.
    #[arg(long, env = "CAAS_REGISTRY_SERVICE", default_value = "caas-registry")]
    pub registry_service: String,

    /// Seconds a registry token is valid.
    #[arg(long, env = "CAAS_REGISTRY_TOKEN_TTL_SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(10..=3600))]
    pub registry_token_ttl_secs: u64,

    /// Whether `DELETE /v1/apps/{app}` deletes every manifest of the app's repository (so a
    /// new owner of the id never runs the old owner's images). The registry must allow
    /// deletes. Off only for a registry shared with something else that uses the same
    /// repository names (the test suite's shared `hello` and `busybox` images).
    #[arg(long, env = "CAAS_PURGE_IMAGES", default_value_t = true,
          action = clap::ArgAction::Set)]
    pub purge_images: bool,

    /// Bearer token the gateways send with their demand reports to `POST /v1/gateway/demand`,
    /// the only endpoint it opens (no operator or tenant token opens that one); unset or empty,
    /// that endpoint answers 404.
    #[arg(long, env = "CAAS_GATEWAY_TOKEN", hide_env_values = true)]
    pub gateway_token: Option<String>,

    /// Releases kept per app; older ones are pruned (never an active one, never the newest).
    #[arg(long, env = "CAAS_RELEASES_KEEP", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub releases_keep: u32,

    /// Events kept (all apps together); older ones are pruned.
    #[arg(long, env = "CAAS_EVENTS_KEEP", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub events_keep: u32,

    /// Bytes of output kept per job (and per workflow's output and step log): the last ones.
    #[arg(long, env = "CAAS_JOB_OUTPUT_KEEP_BYTES", default_value_t = 1 << 20,
          value_parser = clap::value_parser!(u64).range(1024..=16 * 1024 * 1024 - 1))]
    pub job_output_keep_bytes: u64,

    /// Hours a finished job or workflow stays readable (its state, exit code and output).
    #[arg(long, env = "CAAS_JOBS_KEEP_HOURS", default_value_t = 24,
          value_parser = clap::value_parser!(u64).range(1..=24 * 365))]
    pub jobs_keep_hours: u64,

    /// Seconds between a job runner's heartbeats (and refreshes of the stored output).
    #[arg(long, env = "CAAS_JOB_HEARTBEAT_SECS", default_value_t = 2,
          value_parser = clap::value_parser!(u64).range(1..=60))]
    pub job_heartbeat_secs: u64,

    /// Seconds without a heartbeat after which the leader adopts a job (its scheduler is
    /// taken for dead): it attaches to the job's container again, or fails the job if the
    /// container is gone, and releases its claim.
    #[arg(long, env = "CAAS_JOB_STALE_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub job_stale_secs: u64,

    /// Seconds a released host port stays out of use, so a gateway cut off from ZooKeeper
    /// (which serves its cached routes at most `--max-route-staleness-ms`, the same 10 minutes
    /// by default) never reaches another app's container on a reused port. 0: reuse at once.
    #[arg(long, env = "CAAS_PORT_QUARANTINE_SECS",
          default_value_t = crate::store::DEFAULT_PORT_QUARANTINE_S)]
    pub port_quarantine_secs: u64,

    /// The gateway's domain: apps are reached at {app}.{domain}.
    #[arg(long, env = "CAAS_DOMAIN", default_value = "caas.localhost")]
    pub domain: String,

    /// Value of the `caas.managed` label on our containers; the reconciler only touches
    /// containers carrying it. Tests use one per test.
    #[arg(long, env = "CAAS_NAMESPACE", default_value = "caas")]
    pub namespace: String,

    /// Time between deregistering an instance and stopping it, so every gateway's cache drops the
    /// address and requests in flight finish, milliseconds.
    #[arg(long, env = "CAAS_DRAIN_MS", default_value_t = 1500)]
    pub drain_ms: u64,

    /// Grace period of `docker stop`, seconds.
    #[arg(long, env = "CAAS_STOP_GRACE_SECS", default_value_t = 10)]
    pub stop_grace_secs: u64,

    /// Smallest `recycle_after_s` a deployment may ask for, seconds (tests lower it).
    #[arg(long, env = "CAAS_MIN_RECYCLE_AFTER_S", default_value_t = 60)]
    pub min_recycle_after_s: u64,

    /// How long a new instance may take to answer its health check, seconds.
    #[arg(long, env = "CAAS_START_TIMEOUT_SECS", default_value_t = 60)]
    pub start_timeout_secs: u64,

    /// Time between reconciliation passes, seconds.
    #[arg(long, env = "CAAS_RECONCILE_SECS", default_value_t = 30)]
    pub reconcile_secs: u64,

    /// Time between the leader's pings of every host's engine, milliseconds. A `ready` host
    /// whose engine misses `--host-down-after` pings in a row is marked `down` (its instances
    /// are then replaced elsewhere); a host marked down so is `ready` again once its engine
    /// answers 2 pings in a row. A state an operator set is never changed.
    #[arg(long, env = "CAAS_HOST_CHECK_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(50..=600_000))]
    pub host_check_ms: u64,

    /// How long one ping of a host's engine may take before it counts as failed, milliseconds.
    #[arg(long, env = "CAAS_HOST_PING_TIMEOUT_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(50..=60_000))]
    pub host_ping_timeout_ms: u64,

    /// Failed pings in a row after which the leader marks a `ready` host `down`. 0: the leader
    /// never marks a host down (it still brings back the hosts it marked down before).
    #[arg(long, env = "CAAS_HOST_DOWN_AFTER", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub host_down_after: u32,

    /// Largest request body the admin API accepts, bytes.
    #[arg(long, env = "CAAS_MAX_BODY_BYTES", default_value_t = 256 * 1024)]
    pub max_body_bytes: usize,

    /// Health checks in flight at once.
    #[arg(long, env = "CAAS_HEALTH_CONCURRENCY", default_value_t = 64)]
    pub health_concurrency: usize,

    /// Log lines kept per app (a ring: the collector trims older lines in the background, so
    /// an app may briefly hold a few seconds' worth more).
    #[arg(long, env = "CAAS_LOGS_KEEP_LINES", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub logs_keep_lines: u32,

    /// Size of one container log file before the engine rotates it (`json-file` `max-size`),
    /// MiB. With `--log-max-files` it bounds each container's logs on its host's disk.
    #[arg(long, env = "CAAS_LOG_MAX_SIZE_MB", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub log_max_size_mb: u32,

    /// Container log files kept by the engine (`json-file` `max-file`), the current one included.
    #[arg(long, env = "CAAS_LOG_MAX_FILES", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub log_max_files: u32,

    /// The `nofile` ulimit (soft and hard) of every container the platform starts (instances,
    /// jobs, workflow steps). At most the engine's
    /// own hard limit (`/proc/$(pidof dockerd)/limits`), or containers fail to start.
    #[arg(long, env = "CAAS_CONTAINER_NOFILE", default_value_t = caas_deployer::DEFAULT_NOFILE,
          value_parser = clap::value_parser!(u64).range(64..=1_048_576))]
    pub container_nofile: u64,

    /// Failed logins (unknown bearer tokens, wrong registry credentials) allowed per client
    /// address per minute, also the burst; beyond, 429 with `Retry-After` before any lookup.
    /// 0: no limit.
    #[arg(long, env = "CAAS_AUTH_FAILURES_PER_MINUTE", default_value_t = 30)]
    pub auth_failures_per_minute: u32,

    /// Put each tenant's containers (instances, jobs, workflow steps) on a bridge network of
    /// its own per engine (`{namespace}-net-{tenant}`, `operator` for the operator's apps;
    /// Linux bridge `caast…`, which `scripts/firewall` keeps off the host), made on demand and
    /// removed with its last container. `false`: the engine's default bridge, where every
    /// container reaches every other.
    #[arg(long, env = "CAAS_TENANT_NETWORKS", default_value_t = true,
          action = clap::ArgAction::Set)]
    pub tenant_networks: bool,

    /// Directory with TLS client files for `https://` Docker endpoints (ca.pem, cert.pem, key.pem).
    #[arg(long, env = "CAAS_DOCKER_CERT_PATH")]
    pub docker_cert_path: Option<PathBuf>,

    /// The key that seals apps' secrets at rest: 32 bytes as 64 hex digits or base64
    /// (`openssl rand -hex 32`). Unset or empty: setting a secret is refused, the rest works.
    /// Keep it with the database's backups; see docs/OPERATIONS.md to rotate it.
    #[arg(long, env = "CAAS_SECRETS_KEY", hide_env_values = true)]
    pub secrets_key: Option<Redacted>,

    /// Log format: `text` or `json`.
    #[arg(long, env = "CAAS_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

/// A flag's value that is a secret: `Debug` never shows it, so neither does a `Config` that
/// is logged or printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Redacted(String);

impl Redacted {
    /// The value itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Redacted {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Redacted(s.to_owned()))
    }
}

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `caas-scheduler rotate-secrets-key`: re-seals every stored secret from the old key to the new
/// one (see docs/OPERATIONS.md). Run it with the schedulers stopped, then start them with the
/// new key.
#[derive(Debug, Clone, Parser)]
#[command(name = "caas-scheduler rotate-secrets-key")]
pub struct RotateSecretsKey {
    /// MySQL/MariaDB URL of the scheduler's database.
    #[arg(long, env = "CAAS_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,

    /// The key the secrets are sealed with now (64 hex digits or base64).
    #[arg(long, env = "CAAS_OLD_SECRETS_KEY", hide_env_values = true)]
    pub old_key: Redacted,

    /// The new key (64 hex digits or base64); the schedulers start with it afterwards.
    #[arg(long = "secrets-key", env = "CAAS_SECRETS_KEY", hide_env_values = true)]
    pub new_key: Redacted,
}

/// The shortest operator token the scheduler starts with: a guessable operator token opens
/// everything.
pub const MIN_OPERATOR_TOKEN: usize = 16;

/// `--token`'s parser: refuses a token shorter than [`MIN_OPERATOR_TOKEN`] or with white space.
fn operator_token(raw: &str) -> std::result::Result<String, String> {
    if raw.chars().count() < MIN_OPERATOR_TOKEN {
        return Err(format!(
            "the operator token must be at least {MIN_OPERATOR_TOKEN} characters"
        ));
    }
    if raw.chars().any(char::is_whitespace) || raw.len() > 256 {
        return Err("the operator token must be at most 256 characters, without spaces".into());
    }
    Ok(raw.to_owned())
}

impl Config {
    /// The public URL of an app through the gateway.
    pub fn app_domain(&self, app: &caas_types::AppId) -> String {
        format!("{app}.{}", self.domain)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn log_flags_default_to_the_ring_and_rotation_the_docs_give() {
        let base = [
            "caas-scheduler",
            "--database-url",
            "mysql://u:p@h/db",
            "--token",
            "operator-token-long-enough",
        ];
        let config = Config::try_parse_from(base).unwrap();
        assert_eq!(
            (
                config.logs_keep_lines,
                config.log_max_size_mb,
                config.log_max_files
            ),
            (10_000, 20, 5)
        );
        assert_eq!(config.container_nofile, caas_deployer::DEFAULT_NOFILE);
        let cmd = Config::command();
        for (long, env) in [
            ("logs-keep-lines", "CAAS_LOGS_KEEP_LINES"),
            ("log-max-size-mb", "CAAS_LOG_MAX_SIZE_MB"),
            ("log-max-files", "CAAS_LOG_MAX_FILES"),
            ("container-nofile", "CAAS_CONTAINER_NOFILE"),
        ] {
            let arg = cmd
                .get_arguments()
                .find(|a| a.get_long() == Some(long))
                .unwrap();
            assert_eq!(arg.get_env().unwrap(), env);
            let flag = format!("--{long}");
            let mut zero = base.to_vec();
            zero.extend([flag.as_str(), "0"]);
            assert!(Config::try_parse_from(zero).is_err(), "--{long} 0");
        }
    }

    #[test]
    fn host_watch_flags_default_to_one_second_and_three_failures() {
        let base = [
            "caas-scheduler",
            "--database-url",
            "mysql://u:p@h/db",
            "--token",
            "operator-token-long-enough",
        ];
        let config = Config::try_parse_from(base).unwrap();
        assert_eq!(
            (
                config.host_check_ms,
                config.host_ping_timeout_ms,
                config.host_down_after
            ),
            (1000, 1000, 3)
        );
        let cmd = Config::command();
        for (long, env) in [
            ("host-check-ms", "CAAS_HOST_CHECK_MS"),
            ("host-ping-timeout-ms", "CAAS_HOST_PING_TIMEOUT_MS"),
            ("host-down-after", "CAAS_HOST_DOWN_AFTER"),
        ] {
            let arg = cmd
                .get_arguments()
                .find(|a| a.get_long() == Some(long))
                .unwrap();
            assert_eq!(arg.get_env().unwrap(), env);
        }
        for (flag, bad) in [("--host-check-ms", "0"), ("--host-ping-timeout-ms", "10")] {
            let mut args = base.to_vec();
            args.extend([flag, bad]);
            assert!(Config::try_parse_from(args).is_err(), "{flag} {bad}");
        }
    }

    #[test]
    fn a_short_operator_token_is_refused_at_start() {
        let with = |token: &str| {
            Config::try_parse_from([
                "caas-scheduler",
                "--database-url",
                "mysql://u:p@h/db",
                "--token",
                token,
            ])
        };
        let err = with("short").expect_err("5 characters").to_string();
        assert!(err.contains("at least 16 characters"), "{err}");
        assert!(with("sixteen-chars-ok").is_ok());
        assert!(with("sixteen chars no").is_err(), "spaces");
    }

    #[test]
    fn zookeeper_flags_parse_as_before_the_shared_zk_args() {
        let config = Config::try_parse_from([
            "caas-scheduler",
            "--database-url",
            "mysql://u:p@127.0.0.1:3306/caas",
            "--token",
            "operator-token-long-enough",
            "--zk",
            "zk1:2181,zk2:2181",
            "--zk-chroot",
            "/prod",
            "--zk-auth",
            "caas:pw",
            "--zk-read-auth",
            "gateway:pw2",
            "--zk-session-timeout-ms",
            "4000",
        ])
        .unwrap();
        assert_eq!(config.zk.connect, "zk1:2181,zk2:2181");
        assert_eq!(config.zk.chroot.as_deref(), Some("/prod"));
        assert_eq!(config.zk.session_timeout_ms, 4000);
        assert_eq!(config.zk_auth.as_deref(), Some("caas:pw"));
        assert_eq!(config.zk_read_auth.as_deref(), Some("gateway:pw2"));

        let cmd = Config::command();
        let arg = |long: &str| {
            cmd.get_arguments()
                .find(|a| a.get_long() == Some(long))
                .unwrap()
        };
        for (long, env, default) in [
            ("zk", "CAAS_ZK", Some("127.0.0.1:2181")),
            ("zk-chroot", "CAAS_ZK_CHROOT", None),
            ("zk-auth", "CAAS_ZK_AUTH", None),
            ("zk-read-auth", "CAAS_ZK_READ_AUTH", None),
            (
                "zk-session-timeout-ms",
                "CAAS_ZK_SESSION_TIMEOUT_MS",
                Some("10000"),
            ),
        ] {
            assert_eq!(arg(long).get_env().unwrap(), env, "--{long}");
            assert_eq!(
                arg(long)
                    .get_default_values()
                    .first()
                    .map(|v| v.to_str().unwrap()),
                default,
                "--{long}"
            );
        }
    }
}
