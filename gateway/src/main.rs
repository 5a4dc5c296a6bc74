//! The `caas-gateway` binary: parses its flags and runs the gateway on the routes ZooKeeper
//! holds ([`caas_gateway::run_with_zookeeper`]) until Ctrl-C or SIGTERM.

use anyhow::Context as _;
use caas_gateway::Config;
use caas_service::{LogFormat, ZkArgs};
use clap::Parser;

/// caas-gateway: round-robin reverse proxy for caas apps.
#[derive(Debug, Parser)]
#[command(version, about)]
// The gateway keeps the 6 s ZooKeeper session it has always had (`ZkConfig::new`'s), not the
// scheduler's 10 s.
#[command(mut_arg(ZkArgs::SESSION_TIMEOUT_ID, |a| a.default_value("6000")))]
struct Cli {
    #[command(flatten)]
    gateway: Config,

    #[command(flatten)]
    zk: ZkArgs,

    /// Read-only digest credential `user:password` for ZooKeeper. Its own variable, never the
    /// scheduler's `CAAS_ZK_AUTH`: a gateway only ever reads the tree.
    #[arg(long, env = "CAAS_ZK_READ_AUTH", hide_env_values = true)]
    zk_auth: Option<String>,

    /// Worker threads; 0 means one per CPU. With 1 the gateway runs a single-threaded event
    /// loop (like one nginx worker), which spends the least CPU per request.
    #[arg(long, env = "CAAS_GATEWAY_THREADS", default_value_t = 0)]
    threads: usize,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = match cli.threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        0 => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
    .context("cannot start the async runtime")?;
    rt.block_on(async {
        caas_service::init_logging("info", LogFormat::Text);
        let zk = caas_gateway::routes_feed::zk_config(&cli.zk, cli.zk_auth.as_deref())?;
        caas_gateway::run_with_zookeeper(cli.gateway, zk, caas_service::shutdown_signal())
            .await
            .context("gateway failed")
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use clap::CommandFactory as _;

    fn env_of(long: &str) -> Option<String> {
        Cli::command()
            .get_arguments()
            .find(|a| a.get_long() == Some(long))
            .and_then(|a| a.get_env())
            .map(|e| e.to_str().unwrap().to_owned())
    }

    #[test]
    fn zookeeper_flags_keep_their_names_and_variables() {
        Cli::command().debug_assert();
        assert_eq!(env_of("zk").as_deref(), Some("CAAS_ZK"));
        assert_eq!(env_of("zk-chroot").as_deref(), Some("CAAS_ZK_CHROOT"));
        assert_eq!(env_of("zk-auth").as_deref(), Some("CAAS_ZK_READ_AUTH"));
        assert_eq!(env_of("threads").as_deref(), Some("CAAS_GATEWAY_THREADS"));
    }

    #[test]
    fn scale_to_zero_flags_keep_their_names_and_variables() {
        assert_eq!(env_of("admin-api").as_deref(), Some("CAAS_API"));
        assert_eq!(
            env_of("gateway-token").as_deref(),
            Some("CAAS_GATEWAY_TOKEN")
        );
        assert_eq!(env_of("gateway-id").as_deref(), Some("CAAS_GATEWAY_ID"));
        assert_eq!(
            env_of("hold-queue").as_deref(),
            Some("CAAS_GATEWAY_HOLD_QUEUE")
        );
        assert_eq!(
            env_of("activation-timeout-ms").as_deref(),
            Some("CAAS_GATEWAY_ACTIVATION_TIMEOUT_MS")
        );
        let cli = Cli::try_parse_from(["caas-gateway"]).unwrap();
        assert_eq!(cli.gateway.hold_queue, 1000);
        assert_eq!(cli.gateway.activation_timeout_ms, 30_000);
    }

    #[test]
    fn tenant_isolation_flags_keep_their_names_variables_and_defaults() {
        for (flag, var) in [
            ("max-connections", "CAAS_GATEWAY_MAX_CONNECTIONS"),
            (
                "max-connections-per-ip",
                "CAAS_GATEWAY_MAX_CONNECTIONS_PER_IP",
            ),
            ("body-timeout-ms", "CAAS_GATEWAY_BODY_TIMEOUT_MS"),
            ("trusted-proxies", "CAAS_GATEWAY_TRUSTED_PROXIES"),
            (
                "max-route-staleness-ms",
                "CAAS_GATEWAY_MAX_ROUTE_STALENESS_MS",
            ),
        ] {
            assert_eq!(env_of(flag).as_deref(), Some(var), "{flag}");
        }
        let cli = Cli::try_parse_from(["caas-gateway"]).unwrap();
        let d = caas_gateway::Config::new();
        assert_eq!(cli.gateway.max_connections, d.max_connections);
        assert_eq!(cli.gateway.max_connections_per_ip, d.max_connections_per_ip);
        assert!(
            cli.gateway.max_connections_per_ip >= 1024,
            "a load test from one address"
        );
        assert_eq!(cli.gateway.body_timeout_ms, d.body_timeout_ms);
        assert_eq!(cli.gateway.max_route_staleness_ms, 600_000);
        assert_eq!(cli.gateway.max_route_staleness_ms, d.max_route_staleness_ms);
        assert!(cli.gateway.trusted_proxies.is_empty());
        let cli =
            Cli::try_parse_from(["caas-gateway", "--trusted-proxies", "10.0.0.0/8,192.0.2.1"])
                .unwrap();
        assert_eq!(cli.gateway.trusted_proxies.len(), 2);
        assert!(Cli::try_parse_from(["caas-gateway", "--trusted-proxies", "nope"]).is_err());
    }

    #[test]
    fn never_reads_the_writer_credential() {
        assert!(Cli::command()
            .get_arguments()
            .all(|a| a.get_env().is_none_or(|e| e != "CAAS_ZK_AUTH")));
    }

    #[test]
    fn the_session_timeout_stays_that_of_zk_config() {
        let arg = Cli::command()
            .get_arguments()
            .find(|a| a.get_long() == Some("zk-session-timeout-ms"))
            .cloned()
            .unwrap();
        let default: u64 = arg.get_default_values()[0]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            std::time::Duration::from_millis(default),
            caas_registry::ZkConfig::new("").session_timeout
        );
    }
}
