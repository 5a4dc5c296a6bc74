//! The command line: flags, subcommands and their arguments (clap).

use caas_types::{
    AppId, Cpus, Domain, HostName, InstanceId, Memory, PortRange, TenantName, Timestamp, Version,
};
use clap::{Args, Parser, Subcommand, ValueEnum};

/// caas: push, deploy and reach containers.
#[derive(Debug, Parser)]
#[command(name = "caas", version, about)]
pub struct Cli {
    /// Admin API URL [env: CAAS_API; default http://127.0.0.1:7070, or the config file's].
    #[arg(long, global = true)]
    pub api: Option<String>,
    /// Bearer token [env: CAAS_TOKEN, or the config file's].
    #[arg(long, global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// A file of `export CAAS_X=...` lines (as written by scripts/up) [env: CAAS_CONFIG;
    /// default ./.caas/env, then ~/.config/caas/env].
    #[arg(long, global = true)]
    pub config: Option<std::path::PathBuf>,
    /// Output format of listings.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns for people.
    Table,
    /// The API's JSON, for scripts.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apps: list, create, remove.
    #[command(subcommand)]
    Apps(AppsCmd),
    /// Deploy a version of an app (its image is {registry}/{app}:{version}); after `--`, a
    /// command to run instead of the image's CMD. `--worker`: no port, supervised by its exits.
    Deploy(DeployArgs),
    /// Change the number of instances of a deployed version.
    Scale {
        /// App id.
        app: AppId,
        /// Version.
        version: Version,
        /// New instance count.
        instances: u32,
    },
    /// Undeploy one version of an app.
    Undeploy {
        /// App id.
        app: AppId,
        /// Version.
        version: Version,
    },
    /// Tags of an app's image pushed to the registry, newest push first.
    Tags {
        /// App id.
        app: AppId,
    },
    /// Releases of an app (every deploy and rollback, pinned by digest), newest first.
    Releases {
        /// App id.
        app: AppId,
        /// Releases to show (1 to 500).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Only releases numbered below this (the next page).
        #[arg(long)]
        before: Option<u32>,
    },
    /// Roll an app back to a release (default: the one before the active release); afterwards
    /// the app runs only that release.
    Rollback {
        /// App id.
        app: AppId,
        /// Release number.
        release: Option<u32>,
        /// Don't show progress; print only the result.
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// An app's config: `caas config APP` shows it; `set` and `unset` change it (a change
    /// restarts the app's instances, rolling).
    Config(ConfigArgs),
    /// An app's secrets (write-only): `set` reads the value from standard input.
    #[command(subcommand)]
    Secrets(SecretsCmd),
    /// Restart every instance of an app, rolling: each new one healthy before the old drains.
    Restart {
        /// App id.
        app: AppId,
        /// Don't show progress; print only the result.
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// Kill one instance (SIGKILL, once a replacement is healthy and it is drained); its
    /// deployment replaces it with a new container.
    Kill {
        /// App id.
        app: AppId,
        /// Instance id, as `caas ps APP` shows it.
        instance: InstanceId,
        /// Don't show progress; print only the result.
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// List instances (of one app, or of every app).
    Ps {
        /// App id.
        app: Option<AppId>,
    },
    /// An app's log lines, every instance merged in time order.
    Logs(LogsArgs),
    /// Events of your apps (deploys, scaling, health, releases, restarts, config changes),
    /// oldest first; `-f` keeps following new ones.
    Events {
        /// Keep the stream open and show new events as they come.
        #[arg(long, short = 'f')]
        follow: bool,
        /// Only this app's events.
        #[arg(long)]
        app: Option<AppId>,
        /// How many past events (1 to 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Only events with ids below this (the next page; not with -f).
        #[arg(long, conflicts_with = "follow")]
        before: Option<i64>,
    },
    /// Webhooks: URLs events are POSTed to, signed with HMAC-SHA256 (`X-Caas-Signature`).
    #[command(subcommand)]
    Webhooks(WebhooksCmd),
    /// Hosts (operator only).
    #[command(subcommand)]
    Hosts(HostsCmd),
    /// Custom domains routed to an app.
    #[command(subcommand)]
    Domains(DomainsCmd),
    /// Client IPs/CIDRs the gateway refuses.
    #[command(subcommand)]
    Blacklist(BlacklistCmd),
    /// Tenants (operator only).
    #[command(subcommand)]
    Tenants(TenantsCmd),
}

/// `caas apps ...`
#[derive(Debug, Subcommand)]
pub enum AppsCmd {
    /// List apps.
    #[command(alias = "list")]
    Ls,
    /// Create an app.
    Create {
        /// App id (a DNS label: lowercase letters, digits, '-').
        id: AppId,
        /// Roll the running deployment to each newly pushed tag.
        #[arg(long)]
        auto_deploy: bool,
    },
    /// Change an app's settings.
    Update {
        /// App id.
        id: AppId,
        /// Roll the running deployment to each newly pushed tag (true or false).
        #[arg(long, action = clap::ArgAction::Set, required = true)]
        auto_deploy: Option<bool>,
    },
    /// Undeploy everything of an app and delete it.
    #[command(alias = "delete")]
    Rm {
        /// App id.
        id: AppId,
    },
}

/// `caas config [APP | show APP | set APP K=V... | unset APP K...]`
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ConfigArgs {
    /// App id: shows its config (vars, and secrets by name).
    #[arg(required = true)]
    pub app: Option<AppId>,
    /// What to change.
    #[command(subcommand)]
    pub command: Option<ConfigCmd>,
}

/// `caas config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Show an app's config (the same as `caas config APP`).
    Show {
        /// App id.
        app: AppId,
    },
    /// Set vars, K=V (several at once make one config version and one restart).
    Set {
        /// App id.
        app: AppId,
        /// K=V pairs.
        #[arg(required = true, value_parser = parse_kv)]
        pairs: Vec<(String, String)>,
        /// Don't show the restart's progress.
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// Remove vars.
    Unset {
        /// App id.
        app: AppId,
        /// Names.
        #[arg(required = true)]
        names: Vec<String>,
        /// Don't show the restart's progress.
        #[arg(long, short = 'q')]
        quiet: bool,
    },
}

/// `caas webhooks ...`
#[derive(Debug, Subcommand)]
pub enum WebhooksCmd {
    /// List your webhooks.
    #[command(alias = "list")]
    Ls,
    /// Add a webhook; its signing secret is read from standard input.
    Add {
        /// An http:// or https:// URL.
        url: String,
        /// Event types, comma-separated, e.g. deploy.failed,instance.unhealthy.
        #[arg(long, value_delimiter = ',', required = true)]
        events: Vec<String>,
        /// Read the signing secret from standard input (the only way to give it).
        #[arg(long)]
        secret_stdin: bool,
    },
    /// Remove a webhook.
    #[command(alias = "delete")]
    Rm {
        /// The webhook's id.
        id: String,
    },
}

/// `caas secrets ...`
#[derive(Debug, Subcommand)]
pub enum SecretsCmd {
    /// List an app's secrets by name (values are never shown).
    #[command(alias = "list")]
    Ls {
        /// App id.
        app: AppId,
    },
    /// Set a secret; its value is read from standard input (never from the command line,
    /// where `ps` and shell history would show it). One trailing newline is dropped.
    Set {
        /// App id.
        app: AppId,
        /// The secret's name (an environment variable name).
        name: String,
        /// Don't show the restart's progress.
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// Remove a secret.
    #[command(alias = "unset")]
    Rm {
        /// App id.
        app: AppId,
        /// The secret's name.
        name: String,
        /// Don't show the restart's progress.
        #[arg(long, short = 'q')]
        quiet: bool,
    },
}

/// `caas deploy ...`
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// App id.
    pub app: AppId,
    /// Version (the image tag).
    pub version: Version,
    /// Number of instances.
    #[arg(long, short = 'n', default_value_t = 1)]
    pub instances: u32,
    /// Memory limit per instance (256m, 1g, ...).
    #[arg(long, short = 'm', default_value = "128m")]
    pub memory: Memory,
    /// CPU limit per instance (0.5, 2, 500m).
    #[arg(long, default_value = "0.5")]
    pub cpus: Cpus,
    /// The port the app listens on in its container.
    #[arg(long, short = 'p', default_value_t = 8080, conflicts_with = "worker")]
    pub port: u16,
    /// A worker: no port, no route, no health path; an exited instance is restarted or
    /// replaced per --on-failure.
    #[arg(long)]
    pub worker: bool,
    /// Environment variable K=V (repeatable).
    #[arg(long, short = 'e', value_parser = parse_kv)]
    pub env: Vec<(String, String)>,
    /// Put instances on distinct hosts where possible.
    #[arg(long)]
    pub spread: bool,
    /// Host label that must match, K=V (repeatable).
    #[arg(long, value_parser = parse_kv)]
    pub constraint: Vec<(String, String)>,
    /// Rank hosts by free memory or free CPU.
    #[arg(long, value_enum, default_value_t = RankArg::Memory)]
    pub rank: RankArg,
    /// Only hosts that already run this app.
    #[arg(long)]
    pub colocate_with: Option<AppId>,
    /// One instance on every ready host.
    #[arg(long)]
    pub global: bool,
    /// Health-check path.
    #[arg(long, default_value = "/_ping")]
    pub health_path: String,
    /// What to do when an instance keeps failing its health check.
    #[arg(long, value_enum, default_value_t = OnFailureArg::Restart)]
    pub on_failure: OnFailureArg,
    /// Seconds between SIGTERM and SIGKILL when an instance is stopped (0 to 600; default:
    /// the scheduler's).
    #[arg(long, value_name = "SECS")]
    pub stop_timeout: Option<u32>,
    /// Replace instances older than this many seconds, one at a time (at least 60; at most
    /// 30 days).
    #[arg(long, value_name = "SECS")]
    pub recycle_after: Option<u64>,
    /// Don't show progress; print only the result.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// The command to run instead of the image's CMD, after `--`.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// `caas logs ...`
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// App id.
    pub app: AppId,
    /// Keep printing new lines as instances write them (instances started later included).
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Lines of history to print first (at most 10000).
    #[arg(long, short = 'n', default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub tail: u32,
    /// Only lines at or after this time (RFC 3339, e.g. 2024-05-01T12:00:00Z).
    #[arg(long)]
    pub since: Option<Timestamp>,
}

/// `--rank`
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RankArg {
    /// Most free memory first.
    Memory,
    /// Most free CPU first.
    Cpu,
}

/// `--on-failure`
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnFailureArg {
    /// Restart the container in place.
    Restart,
    /// Replace the instance on a new placement.
    Replace,
}

/// `caas hosts ...`
#[derive(Debug, Subcommand)]
pub enum HostsCmd {
    /// List hosts with capacity and free amounts.
    #[command(alias = "list")]
    Ls,
    /// Register a host.
    Add {
        /// Host name.
        name: HostName,
        /// IP that instance ports bind to and gateways connect to.
        #[arg(long)]
        address: std::net::IpAddr,
        /// Docker endpoint URL.
        #[arg(long, default_value = "unix:///var/run/docker.sock")]
        docker: String,
        /// Memory capacity (4g, 4096m).
        #[arg(long)]
        memory: Memory,
        /// CPU capacity (cores).
        #[arg(long)]
        cpus: Cpus,
        /// Label K=V (repeatable).
        #[arg(long, value_parser = parse_kv)]
        label: Vec<(String, String)>,
        /// Host port range for instances.
        #[arg(long, default_value = "25700-25999")]
        ports: PortRange,
    },
    /// Stop placing new instances on a host (it keeps its instances).
    Drain {
        /// Host name.
        name: HostName,
    },
    /// Make a drained host take new instances again.
    Ready {
        /// Host name.
        name: HostName,
    },
    /// Remove a host (it must have no instances).
    #[command(alias = "delete")]
    Rm {
        /// Host name.
        name: HostName,
    },
}

/// `caas domains ...`
#[derive(Debug, Subcommand)]
pub enum DomainsCmd {
    /// Route a custom domain (a CNAME of {app}.{gateway-domain}) to an app.
    Add {
        /// App id.
        app: AppId,
        /// Domain.
        domain: Domain,
    },
    /// Stop routing a custom domain.
    Rm {
        /// App id.
        app: AppId,
        /// Domain.
        domain: Domain,
    },
}

/// `caas blacklist ...`
#[derive(Debug, Subcommand)]
pub enum BlacklistCmd {
    /// List the rules.
    #[command(alias = "list")]
    Ls,
    /// Refuse an IP or CIDR block.
    Add {
        /// IP or CIDR, e.g. 10.0.0.0/8.
        rule: String,
    },
    /// Remove a rule.
    Rm {
        /// IP or CIDR, as listed.
        rule: String,
    },
}

/// `caas tenants ...`
#[derive(Debug, Subcommand)]
pub enum TenantsCmd {
    /// List tenants.
    #[command(alias = "list")]
    Ls,
    /// Create a tenant and print its token (shown once).
    Create {
        /// Tenant name.
        name: TenantName,
    },
    /// Delete a tenant.
    Rm {
        /// Tenant name.
        name: TenantName,
    },
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn logs_takes_follow_tail_and_since() {
        let cli = Cli::try_parse_from([
            "caas",
            "logs",
            "-f",
            "--tail",
            "5",
            "--since",
            "2024-05-01T12:00:00Z",
            "hello",
        ])
        .expect("valid command line");
        let Command::Logs(args) = cli.command else {
            panic!("not logs: {:?}", cli.command)
        };
        assert!(args.follow);
        assert_eq!(args.tail, 5);
        assert_eq!(args.since.map(|t| t.as_secs()), Some(1_714_564_800));
        assert!(Cli::try_parse_from(["caas", "logs", "--tail", "10001", "hello"]).is_err());
        assert!(Cli::try_parse_from(["caas", "logs", "--since", "today", "hello"]).is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn deploy_parses_docker_like_flags() {
        let cli = Cli::try_parse_from([
            "caas",
            "deploy",
            "hello",
            "v1",
            "--instances",
            "3",
            "--memory",
            "256m",
            "--cpus",
            "0.5",
            "--port",
            "8080",
            "--env",
            "A=b=c",
            "--spread",
            "--constraint",
            "zone=a",
        ])
        .expect("valid command line");
        let Command::Deploy(d) = cli.command else {
            panic!("not a deploy")
        };
        assert_eq!(d.instances, 3);
        assert_eq!(d.memory.mib(), 256);
        assert_eq!(d.cpus.millis(), 500);
        assert_eq!(d.env, vec![("A".into(), "b=c".into())]);
        assert!(d.spread);
    }

    #[test]
    fn apps_update_and_tags_parse() {
        let cli = Cli::try_parse_from(["caas", "apps", "update", "hello", "--auto-deploy", "true"])
            .expect("valid command line");
        let Command::Apps(AppsCmd::Update { id, auto_deploy }) = cli.command else {
            panic!("not an apps update")
        };
        assert_eq!((id.as_str(), auto_deploy), ("hello", Some(true)));
        let cli =
            Cli::try_parse_from(["caas", "apps", "update", "hello", "--auto-deploy", "false"])
                .expect("valid command line");
        assert!(matches!(
            cli.command,
            Command::Apps(AppsCmd::Update {
                auto_deploy: Some(false),
                ..
            })
        ));
        assert!(Cli::try_parse_from(["caas", "apps", "update", "hello"]).is_err());
        assert!(
            Cli::try_parse_from(["caas", "apps", "update", "hello", "--auto-deploy", "yes"])
                .is_err()
        );
        assert!(Cli::try_parse_from(["caas", "apps", "update", "hello", "--auto-deploy"]).is_err());
        let cli = Cli::try_parse_from(["caas", "tags", "hello", "-o", "json"]).expect("valid");
        assert!(matches!(cli.command, Command::Tags { .. }));
        assert!(Cli::try_parse_from(["caas", "tags", "Bad_App"]).is_err());
    }

    #[test]
    fn releases_and_rollback_parse() {
        let cli = Cli::try_parse_from(["caas", "releases", "hello", "-o", "json"]).expect("valid");
        assert!(matches!(
            cli.command,
            Command::Releases {
                limit: 50,
                before: None,
                ..
            }
        ));
        let cli = Cli::try_parse_from(["caas", "rollback", "hello"]).expect("valid");
        assert!(matches!(
            cli.command,
            Command::Rollback {
                release: None,
                quiet: false,
                ..
            }
        ));
        let cli = Cli::try_parse_from(["caas", "rollback", "hello", "3", "-q"]).expect("valid");
        assert!(matches!(
            cli.command,
            Command::Rollback {
                release: Some(3),
                quiet: true,
                ..
            }
        ));
        assert!(Cli::try_parse_from(["caas", "rollback", "hello", "v1"]).is_err());
        assert!(Cli::try_parse_from(["caas", "rollback", "Bad_App"]).is_err());
    }

    #[test]
    fn kill_and_the_deploy_timings_parse() {
        let cli = Cli::try_parse_from(["caas", "kill", "hello", "hello-0a1b2c3d4e", "-q"])
            .expect("valid command line");
        let Command::Kill {
            app,
            instance,
            quiet,
        } = cli.command
        else {
            panic!("not a kill")
        };
        assert_eq!(
            (app.as_str(), instance.as_str(), quiet),
            ("hello", "hello-0a1b2c3d4e", true)
        );
        assert!(Cli::try_parse_from(["caas", "kill", "hello"]).is_err());
        assert!(Cli::try_parse_from(["caas", "kill", "hello", "../x"]).is_err());
        let cli = Cli::try_parse_from([
            "caas",
            "deploy",
            "hello",
            "v1",
            "--stop-timeout",
            "30",
            "--recycle-after",
            "86400",
        ])
        .expect("valid command line");
        let Command::Deploy(d) = cli.command else {
            panic!("not a deploy")
        };
        assert_eq!((d.stop_timeout, d.recycle_after), (Some(30), Some(86400)));
        let cli = Cli::try_parse_from(["caas", "deploy", "hello", "v1"]).expect("valid");
        let Command::Deploy(d) = cli.command else {
            panic!("not a deploy")
        };
        assert_eq!((d.stop_timeout, d.recycle_after), (None, None));
        assert!(
            Cli::try_parse_from(["caas", "deploy", "hello", "v1", "--stop-timeout", "-1"]).is_err()
        );
    }

    #[test]
    fn bad_ids_are_refused_before_any_request() {
        assert!(Cli::try_parse_from(["caas", "deploy", "Bad_App", "v1"]).is_err());
        assert!(Cli::try_parse_from(["caas", "deploy", "app", "../v1"]).is_err());
        assert!(Cli::try_parse_from(["caas", "deploy", "app", "v1", "--memory", "lots"]).is_err());
        assert!(Cli::try_parse_from(["caas", "deploy", "app", "v1", "--env", "novalue"]).is_err());
    }
}
