//! The admin API's request and response shapes, shared by the scheduler and the CLI.
//!
//! Field names and meanings here are fixed by the brief; adding fields is fine, renaming is not.
//! Requests carry validated types, so a body that deserializes is already well-formed; range and
//! placement checks that need the database happen in the scheduler.
//!
//! These are wire shapes only. The platform reasons with the domain types at the crate's root
//! ([`crate::PlacementPolicy`], [`crate::HealthPolicy`], [`crate::HostState`], ...); the
//! conversions between the two are the `From`/`TryFrom` impls in `api/convert.rs`, used by the
//! scheduler at its API edge.

mod convert;
mod gateway;
mod jobs;
mod logs;
mod traffic;

pub use gateway::{
    AppDemand, AppTraffic, DemandReport, TrafficCounts, LATENCY_BUCKETS_S, LATENCY_SLOTS,
    MAX_DEMAND_APPS,
};
pub use jobs::{
    Concurrency, CreateJob, CreateSchedule, CreateWorkflow, Job, JobState, Schedule, Workflow,
    WorkflowStep, WorkflowStepRequest, DEFAULT_JOB_CPUS, DEFAULT_JOB_MEMORY_MB,
    DEFAULT_JOB_TIMEOUT_S,
};
pub use logs::{LogLine, LogStream};
pub use traffic::{
    AppTrafficSeries, AppTrafficTotal, StatusClasses, TrafficOverview, TrafficPoint, TrafficStats,
};

use crate::{
    AppId, ContainerId, ContainerUser, Domain, Endpoint, HostName, InstanceId, PortRange,
    TenantName, Version,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The body of every error answer: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// A stable machine-readable code and a human message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorDetail {
    /// Stable code, e.g. `not_found`, `conflict`, `unplaceable`, `invalid`.
    pub code: String,
    /// One line for a person.
    pub message: String,
}

/// `POST /v1/apps`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CreateApp {
    /// The new app's id.
    pub id: AppId,
    /// Roll the running deployment to a newly pushed tag automatically.
    #[serde(default)]
    pub auto_deploy: bool,
}

/// `PATCH /v1/apps/{app}`: every field optional, at least one given.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UpdateApp {
    /// Roll the running deployment to a newly pushed tag automatically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_deploy: Option<bool>,
}

/// A tag of an app's image as pushed to the registry (`GET /v1/apps/{app}/tags`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Tag {
    /// The app (the registry repository).
    pub app: AppId,
    /// The tag, a version that can be deployed.
    pub tag: Version,
    /// The manifest digest the tag pointed to at its last push, e.g. `sha256:...`.
    pub digest: String,
    /// The manifest's media type.
    pub media_type: String,
    /// The registry user who pushed it, when the registry has auth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushed_by: Option<String>,
    /// When the scheduler recorded the last push of this tag, RFC 3339 UTC with milliseconds.
    pub pushed_at: String,
}

/// Milliseconds since the Unix epoch as RFC 3339 UTC, e.g. `2026-11-22T06:10:01.123Z`.
pub fn rfc3339_from_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rest = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (days in 400-year eras).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// An app as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct App {
    /// The app id.
    pub id: AppId,
    /// Where the gateway serves it: `{appId}.{gateway-domain}`.
    pub domain: String,
    /// The owning tenant, if any (apps created with the operator token have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<TenantName>,
    /// Custom domains routed to it.
    #[serde(default)]
    pub domains: Vec<Domain>,
    /// Whether a newly pushed tag rolls the running deployment to it.
    #[serde(default)]
    pub auto_deploy: bool,
    /// Its deployments (only in single-app answers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deployments: Vec<Deployment>,
}

/// How instances are placed on hosts.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    /// What "best host" means.
    #[serde(default)]
    pub rank: Rank,
    /// Put instances of one deployment on distinct hosts where possible.
    #[serde(default)]
    pub spread: bool,
    /// Host labels that must match exactly, e.g. `{"zone": "a"}`.
    #[serde(default)]
    pub constraints: BTreeMap<String, String>,
    /// Only hosts that already run an instance of this app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub colocate_with: Option<AppId>,
    /// One instance on every ready host (the instance count is ignored).
    #[serde(default)]
    pub global: bool,
}

/// The ranking policy.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Rank {
    /// Most free memory first (default).
    #[default]
    Memory,
    /// Most free CPU first.
    Cpu,
}

/// What to do with an instance that fails its health checks.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Restart the container in place (default).
    #[default]
    Restart,
    /// Stop it and place a new instance.
    Replace,
}

/// Health-check settings of a deployment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSpec {
    /// Path polled on the instance; must start with `/`.
    pub path: String,
    /// Time between checks.
    pub interval_ms: u64,
    /// Time a check may take.
    pub timeout_ms: u64,
    /// Consecutive failures before the instance leaves ZooKeeper.
    pub failures: u32,
    /// Consecutive successes before it comes back.
    pub successes: u32,
    /// Restart in place or replace.
    pub on_failure: OnFailure,
}

impl Default for HealthSpec {
    fn default() -> Self {
        HealthSpec {
            path: "/_ping".into(),
            interval_ms: 1000,
            timeout_ms: 500,
            failures: 3,
            successes: 1,
            on_failure: OnFailure::Restart,
        }
    }
}

/// `POST /v1/apps/{app}/deployments`
///
/// Deserialized through [`CreateDeploymentWire`], which tells an absent `instances` apart: 1
/// without `autoscale`, 0 with it (the starting count is then clamped to `[min, max]`, so an
/// absent count starts at `min`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(from = "CreateDeploymentWire")]
pub struct CreateDeployment {
    /// The image tag to deploy.
    pub version: Version,
    /// How many instances (ignored when `placement.global`); with `autoscale`, the starting
    /// count, clamped to `[min, max]`.
    pub instances: u32,
    /// Memory limit per instance, MiB.
    pub memory_mb: u64,
    /// CPU limit per instance, cores.
    pub cpus: f64,
    /// The port the app listens on inside its container: absent is 8080; an explicit `null`
    /// (`None`) makes a worker, with no host port, no route and no HTTP health check, supervised
    /// by its container's state instead (an exit is restarted or replaced per
    /// `health.on_failure`). Serialized as given, so a worker's request reads back as one.
    #[serde(default = "default_port")]
    pub port: Option<u16>,
    /// Overrides the image's `CMD` (its `ENTRYPOINT` stays); absent: the image's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Placement policy.
    #[serde(default)]
    pub placement: Placement,
    /// Health-check policy.
    #[serde(default)]
    pub health: HealthSpec,
    /// Grace period between SIGTERM and SIGKILL when an instance is stopped, seconds
    /// (0..=600; absent: the scheduler's `--stop-grace-secs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout_s: Option<u32>,
    /// Replace instances older than this, one at a time, seconds (at least the scheduler's
    /// `--min-recycle-after-s`, 60 by default; at most 30 days; absent: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recycle_after_s: Option<u64>,
    /// Let the platform set the instance count within bounds, from the gateways' demand
    /// (absent: the count is set by hand only). Not for a worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscale: Option<Autoscale>,
    /// The user its containers run as (`"1000"`, `"1000:1000"` or a name the image knows);
    /// absent: the image's `USER`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<ContainerUser>,
    /// Mount the containers' root filesystem read-only (a small tmpfs at `/tmp` stays
    /// writable); absent: false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The body of a deployment request as it comes in; see [`CreateDeployment`] for the fields.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateDeploymentWire {
    version: Version,
    #[serde(default)]
    instances: Option<u32>,
    memory_mb: u64,
    cpus: f64,
    #[serde(default = "default_port")]
    port: Option<u16>,
    #[serde(default)]
    command: Option<Vec<String>>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    placement: Placement,
    #[serde(default)]
    health: HealthSpec,
    #[serde(default)]
    stop_timeout_s: Option<u32>,
    #[serde(default)]
    recycle_after_s: Option<u64>,
    #[serde(default)]
    autoscale: Option<Autoscale>,
    #[serde(default)]
    user: Option<ContainerUser>,
    #[serde(default)]
    read_only: bool,
}

impl From<CreateDeploymentWire> for CreateDeployment {
    fn from(w: CreateDeploymentWire) -> Self {
        let CreateDeploymentWire {
            version,
            instances,
            memory_mb,
            cpus,
            port,
            command,
            env,
            placement,
            health,
            stop_timeout_s,
            recycle_after_s,
            autoscale,
            user,
            read_only,
        } = w;
        // Absent with autoscale: 0, which the clamp to [min, max] turns into `min`.
        let absent = if autoscale.is_some() { 0 } else { 1 };
        CreateDeployment {
            version,
            instances: instances.unwrap_or(absent),
            memory_mb,
            cpus,
            port,
            command,
            env,
            placement,
            health,
            stop_timeout_s,
            recycle_after_s,
            autoscale,
            user,
            read_only,
        }
    }
}

/// A deployment's autoscaling bounds and targets (`"autoscale"` on a deployment request). The
/// ranges are the scheduler's to check (its validation names the field and the bounds).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Autoscale {
    /// Fewest instances; 0 lets the app sleep when nothing asks for it.
    pub min: u32,
    /// Most instances (at most 1000).
    pub max: u32,
    /// In-flight requests per instance above which the platform adds instances.
    #[serde(default = "default_target_concurrency")]
    pub target_concurrency: u32,
    /// How long demand must stay lower before instances are removed, seconds (0..=86400).
    /// Signed on the wire so a negative value is refused by name rather than by serde.
    #[serde(default = "default_scale_down_delay_s")]
    pub scale_down_delay_s: i64,
}

/// `autoscale.target_concurrency` when absent.
pub const DEFAULT_TARGET_CONCURRENCY: u32 = 10;
/// `autoscale.scale_down_delay_s` when absent.
pub const DEFAULT_SCALE_DOWN_DELAY_S: i64 = 60;

fn default_target_concurrency() -> u32 {
    DEFAULT_TARGET_CONCURRENCY
}

fn default_scale_down_delay_s() -> i64 {
    DEFAULT_SCALE_DOWN_DELAY_S
}

/// The container port of a deployment request without `port`.
pub const DEFAULT_PORT: u16 = 8080;

fn default_port() -> Option<u16> {
    Some(DEFAULT_PORT)
}

/// A release: one deploy or rollback of an app, pinned to the manifest digest its tag resolved
/// to (`GET /v1/apps/{app}/releases`, newest first).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Release {
    /// Number within the app, from 1.
    pub number: u32,
    /// The version (tag) deployed.
    pub version: Version,
    /// The manifest digest the tag resolved to, `sha256:...`; instances run
    /// `{registry}/{app}@{digest}`.
    pub digest: String,
    /// The app's config version the release runs with (0: no config).
    pub config_version: u64,
    /// The deployment request as given.
    pub spec: CreateDeployment,
    /// RFC 3339 UTC with milliseconds.
    pub created_at: String,
    /// `operator`, the tenant's name, or `auto-deploy`.
    pub created_by: String,
    /// Whether this release's deployment runs now.
    pub active: bool,
}

/// `POST /v1/apps/{app}/rollback`; an empty body or no `release` rolls back to the release before
/// the active one.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    /// The release number to roll to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<u32>,
}

/// `PUT /v1/apps/{app}/deployments/{version}`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Scale {
    /// The new instance count.
    pub instances: u32,
}

/// A deployment as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Deployment {
    /// The app.
    pub app: AppId,
    /// The version.
    pub version: Version,
    /// The image reference.
    pub image: String,
    /// Desired instance count.
    pub instances: u32,
    /// Memory limit per instance, MiB.
    pub memory_mb: u64,
    /// CPU limit per instance, cores.
    pub cpus: f64,
    /// Container port; `null` for a worker.
    pub port: Option<u16>,
    /// The command overriding the image's `CMD`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Stop grace period of its instances, seconds (absent: the scheduler's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout_s: Option<u32>,
    /// Age after which its instances are replaced, seconds (absent: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recycle_after_s: Option<u64>,
    /// Its autoscaling bounds, if the platform sets its count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscale: Option<Autoscale>,
    /// The instance count the autoscaler wants (only with `autoscale`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<u32>,
    /// The user its containers run as (absent: the image's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<ContainerUser>,
    /// Whether its containers' root filesystem is read-only.
    #[serde(default)]
    pub read_only: bool,
    /// Its instances.
    #[serde(default)]
    pub instance_list: Vec<Instance>,
}

/// The life-cycle state of an instance.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum InstanceState {
    /// Claimed on a host; nothing started yet.
    Pending,
    /// Container created or starting, not yet healthy.
    Starting,
    /// Healthy and registered in ZooKeeper.
    Running,
    /// Failing its health checks; not in ZooKeeper.
    Unhealthy,
    /// Being drained and stopped.
    Stopping,
}

/// An instance as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Instance {
    /// Instance id.
    pub id: InstanceId,
    /// App id.
    pub app: AppId,
    /// Version.
    pub version: Version,
    /// Host name.
    pub host: HostName,
    /// `{hostIP}:{hostPort}`; `null` for a worker's instance, which has no port.
    pub address: Option<Endpoint>,
    /// Docker container id, once created.
    pub container_id: Option<ContainerId>,
    /// Life-cycle state.
    pub state: InstanceState,
    /// Whether its last health checks passed.
    pub healthy: bool,
}

/// `POST /v1/hosts`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CreateHost {
    /// Host name.
    pub name: HostName,
    /// The IP that instance ports are bound to and that gateways connect to.
    pub address: std::net::IpAddr,
    /// Docker endpoint URL: `unix:///var/run/docker.sock`, `tcp://h:2375`, `https://h:2376`.
    #[serde(default = "default_docker")]
    pub docker: String,
    /// Memory capacity, MiB.
    pub memory_mb: u64,
    /// CPU capacity, cores.
    pub cpus: f64,
    /// Labels for placement constraints.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Host ports handed to instances.
    #[serde(default)]
    pub ports: PortRange,
}

fn default_docker() -> String {
    "unix:///var/run/docker.sock".into()
}

/// `PATCH /v1/hosts/{name}`: every field optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpdateHost {
    /// New state: `ready`, `draining` or `down`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<HostState>,
    /// New labels (replaces all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

/// A host's scheduling state.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum HostState {
    /// Accepts new instances.
    Ready,
    /// Keeps its instances, takes no new ones.
    Draining,
    /// Unreachable; its instances are re-created elsewhere.
    Down,
}

/// A host as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Host {
    /// Host name.
    pub name: HostName,
    /// Instance address.
    pub address: std::net::IpAddr,
    /// Docker endpoint URL.
    pub docker: String,
    /// Memory capacity, MiB.
    pub memory_mb: u64,
    /// Free memory, MiB.
    pub memory_free_mb: u64,
    /// CPU capacity, cores.
    pub cpus: f64,
    /// Free CPU, cores.
    pub cpus_free: f64,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Port range.
    pub ports: PortRange,
    /// State.
    pub state: HostState,
}

/// `POST /v1/tenants`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// Tenant name.
    pub name: TenantName,
    /// Domain suffixes under which the tenant may route custom domains (the suffix itself or
    /// any name below it); none: it may add no custom domain.
    #[serde(default)]
    pub domains: Vec<Domain>,
    /// Limits on what the tenant's apps hold; none: unlimited.
    #[serde(default)]
    pub quota: Option<TenantQuota>,
}

/// `PATCH /v1/tenants/{name}`: what is given replaces what is stored (`"quota": null` removes
/// the quota).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    /// New domain suffixes (replacing the old ones; routed domains stay routed).
    #[serde(default)]
    pub domains: Option<Vec<Domain>>,
    /// New quota; `null`: unlimited.
    #[serde(default, deserialize_with = "present")]
    pub quota: Option<Option<TenantQuota>>,
}

/// Deserializes a field that is present (even as `null`) to `Some`, so `Option<Option<T>>`
/// tells "absent" from "null".
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A tenant's limits. Each one absent is unlimited. Jobs, workflow steps and autoscaled
/// replicas count like any instance; a rolling deploy needs room for its new instances
/// before the old ones go.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TenantQuota {
    /// Apps it may own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_apps: Option<u32>,
    /// Instances (and running jobs) its apps may hold at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_instances: Option<u32>,
    /// Memory its apps' instances may hold together, MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory_mb: Option<u64>,
    /// CPUs its apps' instances may hold together (fractions allowed, to the millicore).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cpus: Option<f64>,
}

/// What a tenant's apps hold now (`GET /v1/tenants/{name}`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct TenantUsage {
    /// Apps it owns.
    pub apps: u32,
    /// Instances and running jobs.
    pub instances: u32,
    /// Memory they hold, MiB.
    pub memory_mb: u64,
    /// CPUs they hold.
    pub cpus: f64,
}

/// A tenant, with its token only in the answer to its creation or to a token rotation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Tenant {
    /// Tenant name.
    pub name: TenantName,
    /// Bearer token; shown once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Domain suffixes it may route custom domains under.
    #[serde(default)]
    pub domains: Vec<Domain>,
    /// Its limits; absent: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<TenantQuota>,
    /// What it holds now (single-tenant answers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<TenantUsage>,
}

/// `POST /v1/tenants/{name}/token` → 200: the new token; the old one fails from now on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TenantToken {
    /// Tenant name.
    pub name: TenantName,
    /// The new bearer token; shown once.
    pub token: String,
}

/// `POST /v1/apps/{app}/domains`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AddDomain {
    /// The custom domain (a CNAME of the app's gateway name).
    pub domain: Domain,
}

/// One line of a streamed deploy (`POST .../deployments` with `Accept: application/x-ndjson`):
/// progress while images pull and containers start, then exactly one `done` or `failed`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum DeployEvent {
    /// A step of one instance's deploy.
    Progress {
        /// The instance, once it has an id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        instance: Option<InstanceId>,
        /// `placed`, `pulling`, `pulled`, `starting`, `healthy`, `registered`, ...
        stage: String,
        /// A line for a person (e.g. layer progress).
        message: String,
    },
    /// The deployment is up; the same body a non-streamed request gets.
    Done {
        /// The deployment with its instances.
        deployment: Deployment,
    },
    /// The deploy failed and everything it started was rolled back.
    Failed {
        /// The error, as in an error answer.
        error: ErrorDetail,
    },
}

/// `GET /v1/apps/{app}/config`, and the answer of its `PATCH`: the app's current config.
/// Secret values are write-only: only their names are ever shown.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AppConfig {
    /// The config version: 0 for an app never configured, one more on every change.
    pub version: u64,
    /// Plain variables, by name.
    pub vars: BTreeMap<String, String>,
    /// The names of the app's secrets, sorted.
    pub secrets: Vec<String>,
}

/// `PATCH /v1/apps/{app}/config`: set (a value) or remove (`null`) vars and secrets; names
/// not given are kept.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ConfigPatch {
    /// Vars to set (a string) or remove (`null`).
    #[serde(default)]
    pub vars: BTreeMap<String, Option<String>>,
    /// Secrets to set (a string) or remove (`null`).
    #[serde(default)]
    pub secrets: BTreeMap<String, Option<SecretValue>>,
}

impl ConfigPatch {
    /// Whether the patch changes nothing at all (an empty patch is refused).
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty() && self.secrets.is_empty()
    }
}

/// A secret's value on its way in. Its `Debug` never shows the value, so a request logged
/// with `{:?}` (or an error that carries one) cannot leak it; [`SecretValue::expose`] is the
/// one way to read it.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct SecretValue(String);

impl SecretValue {
    /// Wraps a value (the CLI, from standard input).
    pub fn new(value: String) -> SecretValue {
        SecretValue(value)
    }

    /// The value, for encryption (and only that).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

/// `POST /v1/webhooks`: where to POST which events, and the secret their bodies are signed
/// with (write-only: no answer shows it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// An `http://` or `https://` URL without credentials.
    pub url: String,
    /// Event types, e.g. `["deploy.failed"]`.
    pub events: Vec<String>,
    /// The HMAC-SHA256 key of `X-Caas-Signature`.
    pub secret: SecretValue,
}

/// A webhook as the API shows it (never its secret).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Webhook {
    /// Its id (`DELETE /v1/webhooks/{id}`).
    pub id: String,
    /// Where events are POSTed.
    pub url: String,
    /// The event types it receives.
    pub events: Vec<String>,
    /// When it was added (RFC 3339).
    pub created_at: String,
}

/// The answer of `POST /v1/apps/{app}/restart`: what was restarted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Restarted {
    /// How many instances were replaced by new ones.
    pub restarted: u32,
    /// The app's deployments with their instances afterwards.
    pub deployments: Vec<Deployment>,
}

/// `GET /v1/blacklist`, and the body of `PUT /v1/blacklist`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Blacklist {
    /// IPs and CIDR blocks, e.g. `["10.0.0.0/8", "192.0.2.7"]`.
    pub rules: Vec<String>,
}

/// `POST /v1/blacklist`: add one rule.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BlacklistRule {
    /// An IP or CIDR block.
    pub rule: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_value_never_shows_in_debug() {
        let p: ConfigPatch = serde_json::from_str(
            r#"{"vars":{"A":"1","OLD":null},"secrets":{"DB_PASSWORD":"hunter2-plain","GONE":null}}"#,
        )
        .expect("valid");
        let shown = format!("{p:?} {:#?}", p.secrets);
        assert!(!shown.contains("hunter2-plain"), "{shown}");
        assert!(shown.contains("DB_PASSWORD") && shown.contains("<redacted>"));
        assert_eq!(
            p.secrets["DB_PASSWORD"].as_ref().map(SecretValue::expose),
            Some("hunter2-plain")
        );
        assert_eq!(p.vars["OLD"], None);
        assert!(serde_json::from_str::<ConfigPatch>("{}")
            .expect("valid")
            .is_empty());
        assert!(serde_json::from_str::<ConfigPatch>(r#"{"env":{}}"#).is_err());
    }

    #[test]
    fn deployment_request_with_defaults() {
        let d: CreateDeployment =
            serde_json::from_str(r#"{"version":"v1","memory_mb":128,"cpus":0.5}"#).expect("valid");
        assert_eq!(d.instances, 1);
        assert_eq!(d.port, Some(8080));
        assert_eq!(d.command, None);
        assert_eq!(d.health.path, "/_ping");
        assert_eq!(d.placement.rank, Rank::Memory);
    }

    #[test]
    fn autoscale_takes_its_defaults_and_an_absent_count_starts_at_min() {
        let d: CreateDeployment = serde_json::from_str(
            r#"{"version":"v1","memory_mb":128,"cpus":0.5,"autoscale":{"min":2,"max":5}}"#,
        )
        .expect("valid");
        assert_eq!(
            d.autoscale,
            Some(Autoscale {
                min: 2,
                max: 5,
                target_concurrency: 10,
                scale_down_delay_s: 60
            })
        );
        assert_eq!(
            d.instances, 0,
            "absent with autoscale: clamped up to min later"
        );
        let plain: CreateDeployment =
            serde_json::from_str(r#"{"version":"v1","memory_mb":128,"cpus":0.5}"#).expect("valid");
        assert_eq!((plain.instances, plain.autoscale), (1, None));
        let json = serde_json::to_value(&plain).expect("serializable");
        assert!(json.get("autoscale").is_none());
        // The request round-trips (a release stores it), autoscale and count included.
        let full: CreateDeployment = serde_json::from_str(
            r#"{"version":"v1","instances":9,"memory_mb":128,"cpus":0.5,
                "autoscale":{"min":0,"max":3,"target_concurrency":4,"scale_down_delay_s":-1}}"#,
        )
        .expect("a negative delay parses; the scheduler refuses it by name");
        let back: CreateDeployment =
            serde_json::from_value(serde_json::to_value(&full).expect("serializable"))
                .expect("round trip");
        assert_eq!(back, full);
        for bad in [
            r#"{"version":"v1","memory_mb":128,"cpus":0.5,"autoscale":{"max":5}}"#,
            r#"{"version":"v1","memory_mb":128,"cpus":0.5,"autoscale":{"min":0}}"#,
            r#"{"version":"v1","memory_mb":128,"cpus":0.5,"autoscale":{"min":0,"max":1,"x":1}}"#,
            r#"{"version":"v1","memory_mb":128,"cpus":0.5,"autoscale":{"min":-1,"max":1}}"#,
            r#"{"version":"v1","memory_mb":128,"cpus":0.5,"surprise":1}"#,
        ] {
            assert!(
                serde_json::from_str::<CreateDeployment>(bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn deployment_request_full_shape_from_the_brief() {
        let body = r#"{"version": "v1", "instances": 3, "memory_mb": 128, "cpus": 0.5, "port": 8080,
            "env": {"K": "V"},
            "placement": {"rank": "cpu", "spread": true, "constraints": {"zone": "a"},
                          "colocate_with": "otherapp", "global": false},
            "health": {"path": "/_ping", "interval_ms": 1000, "timeout_ms": 500,
                       "failures": 3, "successes": 1, "on_failure": "replace"}}"#;
        let d: CreateDeployment = serde_json::from_str(body).expect("valid");
        assert_eq!(d.placement.rank, Rank::Cpu);
        assert_eq!(d.health.on_failure, OnFailure::Replace);
        assert_eq!(
            d.placement.colocate_with.as_ref().map(AppId::as_str),
            Some("otherapp")
        );
    }

    #[test]
    fn an_absent_port_is_the_default_and_a_null_one_a_worker() {
        let base = r#""version":"v1","memory_mb":64,"cpus":0.25"#;
        let parse = |extra: &str| {
            serde_json::from_str::<CreateDeployment>(&format!("{{{base}{extra}}}")).expect("valid")
        };
        assert_eq!(parse("").port, Some(DEFAULT_PORT));
        assert_eq!(parse(r#","port":9000"#).port, Some(9000));
        let worker = parse(r#","port":null,"command":["sh","-c","exec w"]"#);
        assert_eq!(worker.port, None);
        assert_eq!(
            worker.command,
            Some(vec!["sh".to_owned(), "-c".to_owned(), "exec w".to_owned()])
        );
        // Written back as given: the worker stays a worker, the default stays explicit.
        let json = serde_json::to_value(&worker).expect("serializable");
        assert_eq!(json["port"], serde_json::Value::Null);
        assert_eq!(
            serde_json::from_value::<CreateDeployment>(json).expect("valid"),
            worker
        );
        let json = serde_json::to_value(parse("")).expect("serializable");
        assert_eq!(json["port"], 8080);
        assert!(json.get("command").is_none());
        for bad in [r#","command":"sh""#, r#","command":[1]"#, r#","port":"x""#] {
            assert!(
                serde_json::from_str::<CreateDeployment>(&format!("{{{base}{bad}}}")).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_bodies_are_refused() {
        for bad in [
            r#"{"version":"../x","memory_mb":128,"cpus":0.5}"#,
            r#"{"version":"v1","memory_mb":128,"cpus":0.5,"surprise":1}"#,
            r#"{"version":"v1","memory_mb":-1,"cpus":0.5}"#,
            r#"{"version":"v1","memory_mb":128,"cpus":0.5,"port":70000}"#,
            r#"{"version":"v1","memory_mb":128,"cpus":0.5,"placement":{"rank":"disk"}}"#,
        ] {
            assert!(
                serde_json::from_str::<CreateDeployment>(bad).is_err(),
                "{bad}"
            );
        }
        assert!(serde_json::from_str::<CreateApp>(r#"{"id":"Bad_App"}"#).is_err());
        assert!(serde_json::from_str::<UpdateApp>(r#"{"auto_deploy":"yes"}"#).is_err());
        assert!(serde_json::from_str::<UpdateApp>(r#"{"autodeploy":true}"#).is_err());
    }

    #[test]
    fn update_app_shape() {
        let u: UpdateApp = serde_json::from_str(r#"{"auto_deploy":true}"#).expect("valid");
        assert_eq!(u.auto_deploy, Some(true));
        let empty: UpdateApp = serde_json::from_str("{}").expect("valid");
        assert_eq!(empty, UpdateApp::default());
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339_from_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_from_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            rfc3339_from_ms(1_795_327_801_123),
            "2026-11-22T06:10:01.123Z"
        );
        assert_eq!(rfc3339_from_ms(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            rfc3339_from_ms(4_107_542_399_000),
            "2100-02-28T23:59:59.000Z"
        );
    }
}
