//! Placement: filter → rank → pick → claim with optimistic locking, and release.
//!
//! The pipeline is nomad's: a snapshot of candidate hosts is read without locks
//! (`snapshot`), the pure `plan` module filters, ranks and picks one host at random among the
//! best few, and `claim` commits the pick in one transaction guarded by the host's `version`
//! (`UPDATE hosts ... WHERE id = ? AND version = ?`). Zero rows means another scheduler won:
//! a new transaction re-reads and re-plans, up to a bound, with jittered back-off.
//!
//! Architecture invariants (tested in `tests/placement.rs` with several pools at once):
//! no host's instance rows exceed its capacity; no (host, host port) is handed out twice; a
//! host's free amounts equal its capacity minus what its instance rows hold.
//!
//! The pessimistic baseline of the placement benchmark (`examples/bench_placement`) is built
//! outside this crate from the few public parts of `claim`, `snapshot` and `random`.

pub mod claim;
mod metrics;
pub mod plan;
pub mod random;
pub mod snapshot;

pub use metrics::{MetricsSnapshot, PlacementMetrics};

use crate::error::{Error, Result};
use crate::store::{DeploymentRow, Quota, Store};
use caas_types::PlacementPolicy;
use caas_types::{AppId, HostName, InstanceId, Resources, TenantName};
use claim::Attempt;
use snapshot::Scope;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};

/// Attempts per instance (and per release) before giving up with [`Error::Contention`].
pub const MAX_ATTEMPTS: u32 = 40;
/// How many of the best-ranked hosts a pick chooses among (the "few" of "best few").
pub const PICK_AMONG: usize = 2;
/// How many hosts with room a plain request reads per attempt, starting at a random id.
pub const WINDOW: u32 = 16;

/// Whose claim an instance row is: a deployment's instance or a job's container (a one-off
/// job or a workflow step), which holds memory and CPU like an instance but no host port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// An instance of the deployment with this database id.
    Deployment(i64),
    /// The job (or workflow step) with this database id.
    Job(i64),
}

impl Owner {
    /// The deployment's id, for an instance's claim.
    pub fn deployment_id(self) -> Option<i64> {
        match self {
            Owner::Deployment(id) => Some(id),
            Owner::Job(_) => None,
        }
    }

    /// The job's id, for a job's claim.
    pub fn job_id(self) -> Option<i64> {
        match self {
            Owner::Job(id) => Some(id),
            Owner::Deployment(_) => None,
        }
    }
}

/// What to place: `count` instances of one deployment, or one job's container.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacementRequest {
    /// Whose claims these are.
    pub owner: Owner,
    /// Its app (instance ids and co-location use it).
    pub app: AppId,
    /// What each instance claims.
    pub resources: Resources,
    /// How many instances; ignored when `placement.global`.
    pub count: u32,
    /// Whether each instance needs a host port (a worker's does not).
    pub port: bool,
    /// The deployment's placement policy.
    pub placement: PlacementPolicy,
}

impl PlacementRequest {
    /// A request for `count` more instances of a stored deployment.
    pub fn for_deployment(deployment: &DeploymentRow, count: u32) -> PlacementRequest {
        PlacementRequest {
            owner: Owner::Deployment(deployment.id),
            app: deployment.spec.app.clone(),
            resources: deployment.spec.resources,
            count,
            port: !deployment.spec.is_worker(),
            placement: deployment.spec.placement.clone(),
        }
    }

    /// What one instance asks of a host, for [`plan::feasible`] and [`plan::pick`].
    pub fn ask(&self) -> plan::Ask<'_> {
        plan::Ask {
            memory: self.resources.memory.bytes(),
            cpu: self.resources.cpus.millis(),
            port: self.port,
            placement: &self.placement,
        }
    }

    /// Memory per instance as the database's signed BIGINT (at most 1 PiB, so it fits).
    pub fn memory_i64(&self) -> i64 {
        i64::try_from(self.resources.memory.bytes()).unwrap_or(i64::MAX)
    }

    /// Policies that must see every host rather than a random window.
    fn needs_every_host(&self) -> bool {
        let p = &self.placement;
        p.spread || p.global || p.colocate_with.is_some() || !p.constraints.is_empty()
    }

    /// What one instance asks, in words, for the [`Error::Unplaceable`] message.
    pub fn describe(&self) -> String {
        format!(
            "{} of memory and {} CPUs",
            self.resources.memory, self.resources.cpus
        )
    }
}

/// One committed claim: an instance row (state `pending`) holding resources and, unless it is a
/// worker's, a host port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The new instance's id.
    pub instance: InstanceId,
    /// Its deployment or job.
    pub owner: Owner,
    /// Its host's database id.
    pub host_id: i64,
    /// Its host's name.
    pub host: HostName,
    /// Its host's address.
    pub address: IpAddr,
    /// The host port it owns (`None`: a worker's instance).
    pub host_port: Option<u16>,
    /// What it holds.
    pub resources: Resources,
}

/// Which host one instance may go to.
#[derive(Debug, Clone, Copy)]
enum Target {
    Any,
    Host(i64),
}

/// Places `req`: all of its instances or none. On a failure part-way, what was claimed is
/// released before the error returns. Errors: [`Error::Unplaceable`] (nothing fits; the
/// message says which dimension ran out), [`Error::QuotaExceeded`] (the app's tenant would hold
/// more than its quota), [`Error::Contention`] (retry bound reached), [`Error::Database`].
pub async fn place(store: &Store, req: &PlacementRequest) -> Result<Vec<Claim>> {
    // Read once per request; each claim then locks the tenant's row and counts (`try_claim`).
    let quota = store.instance_quota_of_app(&req.app).await?;
    let targets: Vec<Target> = if req.placement.global {
        global_targets(store, req).await?
    } else {
        (0..req.count).map(|_| Target::Any).collect()
    };
    let mut claims = Vec::with_capacity(targets.len());
    for target in targets {
        match place_one(store, req, target, quota.as_ref()).await {
            Ok(claim) => claims.push(claim),
            Err(e) => {
                release_all(store, &claims).await;
                return Err(e);
            }
        }
    }
    tracing::debug!(
        owner = ?req.owner,
        instances = claims.len(),
        "placed"
    );
    Ok(claims)
}

/// Global placement: one instance on every ready host that matches the constraints (and
/// co-location) and has none of this deployment yet.
async fn global_targets(store: &Store, req: &PlacementRequest) -> Result<Vec<Target>> {
    let hosts = snapshot::read(store, req, Scope::All).await?;
    let ask = req.ask();
    let eligible: Vec<_> = hosts
        .iter()
        .filter(|h| {
            !matches!(
                plan::feasible(h, &ask),
                Err(plan::Reason::NotReady | plan::Reason::Constraint | plan::Reason::Colocate)
            )
        })
        .collect();
    if eligible.is_empty() {
        store.metrics().unplaceable();
        return Err(Error::Unplaceable(format!(
            "no ready host matches the placement ({} hosts)",
            hosts.len()
        )));
    }
    Ok(eligible
        .into_iter()
        .filter(|h| h.same_deployment == 0)
        .map(|h| Target::Host(h.id))
        .collect())
}

/// Places one instance, retrying lost races in new transactions.
async fn place_one(
    store: &Store,
    req: &PlacementRequest,
    target: Target,
    quota: Option<&(TenantName, Quota)>,
) -> Result<Claim> {
    let ask = req.ask();
    let metrics = store.metrics();
    // Set once a host turned out to have no free port: the window does not count ports.
    let full_view = AtomicBool::new(req.needs_every_host());
    let (ask, full_view) = (&ask, &full_view);
    let claim = claim::retry(metrics, || async move {
        let (scope, among) = match target {
            Target::Host(id) => (Scope::Host(id), 1),
            Target::Any if full_view.load(Ordering::Relaxed) => (Scope::All, PICK_AMONG),
            Target::Any => (Scope::Window(WINDOW), PICK_AMONG),
        };
        let mut hosts = snapshot::read(store, req, scope).await?;
        let mut picked = plan::pick(&hosts, ask, among, random::next_u64()).cloned();
        if picked.is_err() && matches!(scope, Scope::Window(_)) {
            // The window holds only hosts with room; read everything to say precisely why
            // nothing fits (or to find the host the window missed).
            hosts = snapshot::read(store, req, Scope::All).await?;
            picked = plan::pick(&hosts, ask, among, random::next_u64()).cloned();
        }
        let host = match picked {
            Ok(host) => host,
            Err(no_fit) => {
                metrics.unplaceable();
                return Err(Error::Unplaceable(format!(
                    "no host can take {} ({no_fit})",
                    req.describe()
                )));
            }
        };
        let attempt = claim::try_claim(store, req, &host, quota).await?;
        if matches!(attempt, Attempt::PortsFull) {
            full_view.store(true, Ordering::Relaxed);
        }
        Ok(attempt)
    })
    .await?;
    metrics.placed();
    Ok(claim)
}

/// Releases one instance: deletes its row and gives its memory, CPU and host port back, with
/// the same optimistic host update as a claim. [`Error::NotFound`] if it is not (or no longer)
/// there.
pub async fn release(store: &Store, instance: &InstanceId) -> Result<()> {
    claim::retry(store.metrics(), || claim::try_release(store, instance)).await?;
    store.metrics().released();
    Ok(())
}

/// Releases claims of a failed multi-instance placement, logging what could not be released
/// (the reconciler finds such rows: pending instances without a container).
pub async fn release_all(store: &Store, claims: &[Claim]) {
    for claim in claims {
        match release(store, &claim.instance).await {
            Ok(()) | Err(Error::NotFound(_)) => {}
            Err(e) => tracing::error!(
                instance = %claim.instance,
                error = %e,
                "could not release a claim after a failed placement"
            ),
        }
    }
}
