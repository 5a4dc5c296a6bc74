//! The command line: flags, subcommands and their arguments (clap).

use caas_types::{
    AppId, Cpus, Domain, HostName, InstanceId, Memory, PortRange, TenantName, Timestamp, Version,
};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

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
    /// Your apps by traffic over the last window, as the gateways counted it (requests per
    /// second, status classes, p50 and p99 latency, bytes out per second), refreshed every 2 s
    /// until Ctrl-C.
    Top {
        /// How far back to add up, 1m to 1h (90s, 5m, 1h).
        #[arg(long, default_value = "1m")]
        window: String,
        /// Print the table once and exit.
        #[arg(long)]
        once: bool,
    },
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
    /// Run a command to completion in a new container of an app's version (a job), like
    /// `docker run --rm`: its output streams here as it comes and caas exits with its exit
    /// code. `-i` sends standard input to it; Ctrl-C cancels it (exit 130).
    Run(RunArgs),
    /// An app's jobs: list, show, logs, remove (cancels a running one).
    #[command(subcommand)]
    Jobs(JobsCmd),
    /// Workflows: 2 to 16 jobs run at once as a pipeline, `a | b | c`.
    #[command(subcommand)]
    Workflow(WorkflowCmd),
    /// Schedules: jobs an app runs at cron times (UTC).
    #[command(subcommand)]
    Schedules(SchedulesCmd),
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
    /// Number of instances (default 1; with --autoscale, the starting count, clamped to
    /// [min, max], default min).
    #[arg(long, short = 'n')]
    pub instances: Option<u32>,
    /// Memory limit per instance (256m, 1g, ...; whole MiB).
    #[arg(long, short = 'm', default_value = "128m", value_parser = parse_memory)]
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
    /// Run the containers as this user: a uid, `uid:gid` or a name the image knows (default:
    /// the image's `USER`).
    #[arg(long, value_name = "USER")]
    pub user: Option<caas_types::ContainerUser>,
    /// Mount the containers' root filesystem read-only (a small tmpfs at /tmp stays writable).
    #[arg(long)]
    pub read_only: bool,
    /// Let the platform set the count from the demand: MIN:MAX[:TARGET], TARGET the in-flight
    /// requests per instance it aims for (default 10). MIN 0 lets the app sleep.
    #[arg(long, value_name = "MIN:MAX[:TARGET]", value_parser = parse_autoscale,
          conflicts_with_all = ["worker", "global"])]
    pub autoscale: Option<AutoscaleArg>,
    /// With --autoscale: seconds of lower demand before instances are removed (0 to 86400;
    /// default 60).
    #[arg(long, value_name = "SECS", requires = "autoscale")]
    pub scale_down_delay: Option<u32>,
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

/// A job's resources and environment, shared by `caas run` and `caas schedules add`. Left out,
/// each takes the API's default (64m, 0.25 CPU, 10 minutes).
#[derive(Debug, Clone, Default, Args)]
pub struct JobResources {
    /// Memory limit (64m, 1g, 512M, ...; whole MiB) [default: 64m].
    #[arg(long, short = 'm', value_parser = parse_memory)]
    pub memory: Option<Memory>,
    /// CPU limit (0.25, 1, 250m) [default: 0.25].
    #[arg(long)]
    pub cpus: Option<Cpus>,
    /// Longest run (30s, 10m, 1h, or plain seconds); then the job is killed (`timed_out`)
    /// [default: 10m].
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub timeout: Option<i64>,
    /// Environment variable K=V (repeatable).
    #[arg(long, short = 'e', value_parser = parse_kv)]
    pub env: Vec<(String, String)>,
}

/// `caas run APP VERSION [-i] [-m 64m] [--cpus 0.25] [--timeout 10m] [-e K=V]... -- CMD ARG...`
#[derive(Debug, Args)]
pub struct RunArgs {
    /// App id (the job runs its image, {registry}/{app}:{version}).
    pub app: AppId,
    /// Version (the image tag).
    pub version: Version,
    /// Send standard input to the job (its end is the job's end of input).
    #[arg(long, short = 'i')]
    pub interactive: bool,
    /// Resources, timeout and environment.
    #[command(flatten)]
    pub resources: JobResources,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// `caas jobs ...`
#[derive(Debug, Subcommand)]
pub enum JobsCmd {
    /// List an app's jobs, newest first.
    #[command(alias = "list")]
    Ls {
        /// App id.
        app: AppId,
        /// Jobs to show.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Only jobs older than this one (the next page).
        #[arg(long, value_parser = parse_id)]
        before: Option<String>,
    },
    /// Show one job.
    Show {
        /// App id.
        app: AppId,
        /// Job id, as `caas jobs ls APP` shows it.
        #[arg(value_parser = parse_id)]
        id: String,
    },
    /// A job's output (stdout and stderr, as written); `-f` follows it until the job ends.
    Logs {
        /// App id.
        app: AppId,
        /// Job id.
        #[arg(value_parser = parse_id)]
        id: String,
        /// Keep printing until the job ends.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Cancel a running job, or forget a finished one.
    #[command(alias = "delete")]
    Rm {
        /// App id.
        app: AppId,
        /// Job id.
        #[arg(value_parser = parse_id)]
        id: String,
    },
}

/// `caas workflow ...`
#[derive(Debug, Subcommand)]
pub enum WorkflowCmd {
    /// Start the workflow a JSON file describes (the body of `POST /v1/workflows`), print the
    /// last step's output as it comes, and exit 0 when it succeeded, else with the first
    /// failed step's exit code (or 1).
    Run {
        /// The workflow's JSON: `{"name", "steps": [{"name", "app", "version", "command"},
        /// ...], "stdin", "timeout_s"}`.
        file: PathBuf,
        /// Send standard input to the first step (sets `"stdin": true`).
        #[arg(long, short = 'i')]
        interactive: bool,
    },
    /// List workflows, newest first.
    #[command(alias = "list")]
    Ls {
        /// Workflows to show.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Only workflows older than this one (the next page).
        #[arg(long, value_parser = parse_id)]
        before: Option<String>,
    },
    /// Show one workflow and its steps.
    Show {
        /// Workflow id, as `caas workflow ls` shows it.
        #[arg(value_parser = parse_id)]
        id: String,
    },
    /// One step's stderr; `-f` follows it until the step ends.
    Logs {
        /// Workflow id.
        #[arg(value_parser = parse_id)]
        id: String,
        /// The step's index, 0 for the first.
        step: u32,
        /// Keep printing until the step ends.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// The last step's stdout; `-f` follows it until the workflow ends.
    Output {
        /// Workflow id.
        #[arg(value_parser = parse_id)]
        id: String,
        /// Keep printing until the workflow ends.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Cancel a running workflow, or forget a finished one.
    #[command(alias = "delete")]
    Rm {
        /// Workflow id.
        #[arg(value_parser = parse_id)]
        id: String,
    },
}

/// `caas schedules ...`
#[derive(Debug, Subcommand)]
pub enum SchedulesCmd {
    /// Run a job at cron times: `caas schedules add APP NAME --cron EXPR --version V -- CMD...`.
    Add(ScheduleAddArgs),
    /// List an app's schedules with their next run and last state.
    #[command(alias = "list")]
    Ls {
        /// App id.
        app: AppId,
    },
    /// Remove a schedule (its running jobs go on).
    #[command(alias = "delete")]
    Rm {
        /// App id.
        app: AppId,
        /// The schedule's name.
        #[arg(value_parser = parse_id)]
        name: String,
    },
}

/// `caas schedules add ...`
#[derive(Debug, Args)]
pub struct ScheduleAddArgs {
    /// App id.
    pub app: AppId,
    /// The schedule's name, unique within the app.
    #[arg(value_parser = parse_id)]
    pub name: String,
    /// When: 5 cron fields, or 6 with seconds first, UTC (e.g. "0 3 * * *").
    #[arg(long)]
    pub cron: String,
    /// The version (image tag) each run starts.
    #[arg(long)]
    pub version: Version,
    /// Whether a run may start while the previous one still runs.
    #[arg(long, value_enum, default_value_t = ConcurrencyArg::Forbid)]
    pub concurrency: ConcurrencyArg,
    /// Resources, timeout and environment of each run.
    #[command(flatten)]
    pub resources: JobResources,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// `--concurrency`
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConcurrencyArg {
    /// Skip a due time while the previous run still runs.
    Forbid,
    /// Start it anyway.
    Allow,
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
        /// A domain suffix it may route custom domains under (repeatable).
        #[arg(long = "domain")]
        domains: Vec<Domain>,
        /// Its limits (each one left out is unlimited).
        #[command(flatten)]
        quota: QuotaArgs,
    },
    /// Show a tenant: its domain suffixes, quota and what it holds now.
    Show {
        /// Tenant name.
        name: TenantName,
    },
    /// Change a tenant's domain suffixes (replaced as a whole) and/or quota.
    Set {
        /// Tenant name.
        name: TenantName,
        /// The domain suffixes it may route custom domains under (repeatable; replaces all).
        #[arg(long = "domain")]
        domains: Vec<Domain>,
        /// Remove every domain suffix.
        #[arg(long, conflicts_with = "domains")]
        no_domains: bool,
        /// New limits (replacing the whole quota; none given: the quota stays).
        #[command(flatten)]
        quota: QuotaArgs,
        /// Remove the quota (unlimited).
        #[arg(long)]
        unlimited: bool,
    },
    /// Give a tenant a new token (printed once); the old one fails at once.
    Token {
        /// Tenant name.
        name: TenantName,
    },
    /// Delete a tenant.
    Rm {
        /// Tenant name.
        name: TenantName,
    },
}

/// A tenant's quota flags.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct QuotaArgs {
    /// Apps it may own.
    #[arg(long)]
    pub max_apps: Option<u32>,
    /// Instances (and running jobs) it may hold.
    #[arg(long)]
    pub max_instances: Option<u32>,
    /// Memory it may hold, MiB.
    #[arg(long)]
    pub max_memory_mb: Option<u64>,
    /// CPUs it may hold.
    #[arg(long)]
    pub max_cpus: Option<f64>,
}

/// `--autoscale MIN:MAX[:TARGET]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoscaleArg {
    /// Fewest instances.
    pub min: u32,
    /// Most instances.
    pub max: u32,
    /// In-flight requests per instance (absent: the platform's default).
    pub target: Option<u32>,
}

fn parse_autoscale(s: &str) -> Result<AutoscaleArg, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let number = |what: &str, v: &str| {
        v.parse::<u32>()
            .map_err(|_| format!("{what} must be a whole number, got {v:?}"))
    };
    let (min, max, target) = match parts.as_slice() {
        [min, max] => (number("MIN", min)?, number("MAX", max)?, None),
        [min, max, target] => (
            number("MIN", min)?,
            number("MAX", max)?,
            Some(number("TARGET", target)?),
        ),
        _ => return Err(format!("expected MIN:MAX or MIN:MAX:TARGET, got {s:?}")),
    };
    if min > max {
        return Err(format!("MIN ({min}) is more than MAX ({max})"));
    }
    Ok(AutoscaleArg { min, max, target })
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// A memory size as `Memory` parses it (64m, 1g, 512M), in whole MiB: the API takes `memory_mb`.
fn parse_memory(s: &str) -> Result<Memory, String> {
    let m: Memory = s.parse().map_err(|e: caas_types::Error| e.to_string())?;
    if m.bytes() % (1 << 20) != 0 {
        return Err(format!("{s:?} is not a whole number of MiB"));
    }
    Ok(m)
}

/// Longest a job may be asked to run: 30 days, in seconds.
const MAX_TIMEOUT_S: i64 = 30 * 86_400;

/// A duration as whole seconds: `30s`, `10m`, `1h`, or plain seconds; more than 0, at most
/// 30 days.
pub fn parse_timeout(s: &str) -> Result<i64, String> {
    let bad = || format!("expected a duration like 30s, 10m, 1h or 90, got {s:?}");
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: i64 = num.parse().map_err(|_| bad())?;
    let unit_s = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(bad()),
    };
    match n.checked_mul(unit_s) {
        Some(secs) if (1..=MAX_TIMEOUT_S).contains(&secs) => Ok(secs),
        _ => Err(format!(
            "{s:?}: a timeout must be more than 0 and at most 30 days"
        )),
    }
}

/// A job or workflow id, or a schedule name: one segment of a URL path, so letters, digits,
/// `-`, `_` and `.` only, and not `.` or `..`.
fn parse_id(s: &str) -> Result<String, String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if s.is_empty() || s.len() > 128 || !s.chars().all(allowed) || s.chars().all(|c| c == '.') {
        return Err(format!(
            "{s:?} is not an id (letters, digits, '-', '_', '.'; at most 128)"
        ));
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn deploy_takes_autoscale_bounds_and_a_delay() {
        let cli = Cli::try_parse_from([
            "caas",
            "deploy",
            "hello",
            "v1",
            "--autoscale",
            "0:10:5",
            "--scale-down-delay",
            "30",
        ])
        .expect("valid command line");
        let Command::Deploy(args) = cli.command else {
            panic!("not deploy: {:?}", cli.command)
        };
        assert_eq!(
            args.autoscale,
            Some(AutoscaleArg {
                min: 0,
                max: 10,
                target: Some(5)
            })
        );
        assert_eq!((args.scale_down_delay, args.instances), (Some(30), None));
        assert_eq!(
            parse_autoscale("2:5"),
            Ok(AutoscaleArg {
                min: 2,
                max: 5,
                target: None
            })
        );
        for bad in ["", "5", "5:2", "a:2", "1:2:3:4", "-1:2", "1:2:x"] {
            assert!(parse_autoscale(bad).is_err(), "{bad:?}");
        }
        for bad in [
            vec!["caas", "deploy", "hello", "v1", "--scale-down-delay", "30"],
            vec![
                "caas",
                "deploy",
                "hello",
                "v1",
                "--autoscale",
                "0:2",
                "--worker",
            ],
            vec![
                "caas",
                "deploy",
                "hello",
                "v1",
                "--autoscale",
                "0:2",
                "--global",
            ],
        ] {
            assert!(Cli::try_parse_from(&bad).is_err(), "{bad:?}");
        }
    }

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
    fn timeouts_take_seconds_minutes_hours_or_plain_seconds() {
        for (s, secs) in [
            ("30s", 30),
            ("10m", 600),
            ("1h", 3600),
            ("90", 90),
            ("720h", 30 * 86_400),
        ] {
            assert_eq!(parse_timeout(s), Ok(secs), "{s}");
        }
        for bad in [
            "",
            "0",
            "0s",
            "-5",
            "1.5h",
            "10 m",
            "10M",
            "1d",
            "m",
            "721h",
            "99999999999999999999",
        ] {
            assert!(parse_timeout(bad).is_err(), "{bad:?}");
        }
        assert!(parse_timeout("10x")
            .expect_err("no such unit")
            .contains("like 30s, 10m, 1h"));
    }

    #[test]
    fn memory_and_env_pairs_parse_once_for_every_command() {
        assert_eq!(parse_memory("64m").map(|m| m.mib()), Ok(64));
        assert_eq!(parse_memory("512M").map(|m| m.mib()), Ok(512));
        assert_eq!(parse_memory("1g").map(|m| m.mib()), Ok(1024));
        assert!(parse_memory("7000k")
            .expect_err("not whole MiB")
            .contains("whole number of MiB"));
        assert!(parse_memory("lots").is_err());
        assert_eq!(parse_kv("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert_eq!(parse_kv("A="), Ok(("A".into(), String::new())));
        for bad in ["A", "=b", ""] {
            assert!(parse_kv(bad)
                .expect_err("not a pair")
                .contains("expected KEY=VALUE"));
        }
    }

    #[test]
    fn ids_are_one_path_segment() {
        for ok in ["j-42", "w-7", "tools-j1", "nightly", "a.b_c"] {
            assert_eq!(parse_id(ok).as_deref(), Ok(ok));
        }
        for bad in ["", ".", "..", "a/b", "a?b", "a%2f", "a b", &"x".repeat(129)] {
            assert!(parse_id(bad).is_err(), "{bad:?}");
        }
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
        assert_eq!(d.instances, Some(3));
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
        assert_eq!((d.user, d.read_only), (None, false));
        let cli = Cli::try_parse_from([
            "caas",
            "deploy",
            "hello",
            "v1",
            "--user",
            "65534:65534",
            "--read-only",
        ])
        .expect("valid");
        let Command::Deploy(d) = cli.command else {
            panic!("not a deploy")
        };
        assert_eq!(d.user.map(String::from).as_deref(), Some("65534:65534"));
        assert!(d.read_only);
        assert!(Cli::try_parse_from(["caas", "deploy", "hello", "v1", "--user", "a b"]).is_err());
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
