//! The pure half of reconciliation: from a [`Snapshot`] of the database, each host's Docker
//! engine and ZooKeeper, compute the list of [`Repair`]s one pass makes. No I/O here; the
//! applier reads the snapshot, calls [`plan`], and runs the repairs in the order given.
//!
//! The decisions are the reconciler's (transitional instances left by a crash, lost
//! containers, orphans, down hosts, address/app/domain nodes, deployments below their count or
//! stuck), with these rules on top, all because one snapshot is planned at once where the
//! reconciler used to re-read the database between its steps:
//!
//! - an instance gets at most one repair per pass, node repairs included: a missing address
//!   node is restored only for an instance no other repair touches, whose container is alive on
//!   a host whose engine answered; the node of an instance whose stop is being finished is left
//!   to that stop;
//! - a deployment one of whose instances is repaired this pass is not topped up or placed on
//!   new hosts (the next pass sees the result), and a stuck deploy whose instance start is being
//!   finished waits for the probe's verdict before it is finished or removed;
//! - a global deployment gets an instance on every ready host that matches its placement and
//!   has none (a host added after the deploy used to never get one).

use crate::store::{DeploymentRow, DeploymentState, HostRow, InstanceRow};
use caas_deployer::{ContainerState, ContainerSummary};
use caas_types::{labels, AppId, ContainerId, Domain, InstanceId, Version};
use caas_types::{HostState, InstanceState};
use std::collections::{HashMap, HashSet};

/// A `running` instance whose container is gone or dead is re-created once its row is this
/// old, even before `stuck_ms` (an `unhealthy` one waits for `stuck_ms`: the healer has it).
pub const RUNNING_GRACE_MS: i64 = 10_000;

/// Everything one reconciliation pass looks at, read in this order by the applier:
/// hosts, then containers per host, then address/app/domain nodes, then rows.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// When the snapshot was taken, milliseconds since the Unix epoch.
    pub now_ms: i64,
    /// How long an instance/deployment may sit in a transitional state before a crash is assumed.
    pub stuck_ms: i64,
    /// Every host.
    pub hosts: Vec<HostRow>,
    /// The containers labelled for each host whose engine answered (keyed by host id); a host
    /// absent here could not be listed.
    pub containers: HashMap<i64, Vec<ContainerSummary>>,
    /// Every instance row.
    pub instances: Vec<InstanceRow>,
    /// Every deployment row.
    pub deployments: Vec<DeploymentRow>,
    /// The app rows.
    pub apps: Vec<AppId>,
    /// The `/caas/service/address/{app}` nodes.
    pub app_nodes: Vec<AppId>,
    /// The address nodes: app, version, container.
    pub address_nodes: Vec<(AppId, Version, ContainerId)>,
    /// The custom domains in the database.
    pub domains: Vec<(Domain, AppId)>,
    /// The custom domain nodes in ZooKeeper.
    pub domain_nodes: Vec<(Domain, AppId)>,
    /// The wake nodes in ZooKeeper (`/caas/service/wake/{app}`) and the version each names
    /// (`None`: its data does not parse).
    pub wake_nodes: Vec<(AppId, Option<Version>)>,
}

/// One repair. Plain data: the applier looks rows up by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repair {
    /// Remove a container whose `caas.instance` label names no instance row on its host.
    RemoveOrphan {
        /// The host whose engine listed it.
        host_id: i64,
        /// The container.
        container: ContainerId,
    },
    /// A `pending`/`starting` instance left by a crash whose container is alive: probe its
    /// health and finish the start (record the container, register, `running`, healthy), or
    /// roll it back as [`Repair::RollBackStart`] (with the row's container, else this one) if
    /// the probe fails.
    FinishStart {
        /// The instance.
        instance: InstanceId,
        /// Its container, as listed by its host's engine.
        container: ContainerId,
    },
    /// A `pending`/`starting` instance left by a crash whose container is not alive: remove
    /// the container and release the claim.
    RollBackStart {
        /// The instance.
        instance: InstanceId,
        /// The row's container id, else the one its host's engine listed.
        container: Option<ContainerId>,
    },
    /// A `stopping` instance left by a crash: stop, remove, release.
    FinishStop {
        /// The instance.
        instance: InstanceId,
    },
    /// A `running`/`unhealthy` instance whose container is gone or dead: re-create it on its
    /// claim.
    Recreate {
        /// The instance.
        instance: InstanceId,
    },
    /// An instance on a host marked down: deregister it, remove its container if the host's
    /// engine still answers, release its claim and place a replacement.
    ReplaceLost {
        /// The instance.
        instance: InstanceId,
        /// Its container if the down host's engine still listed it this pass.
        container: Option<ContainerId>,
    },
    /// Remove an address node whose container has no instance row, or whose row is stopping.
    DeregisterNode {
        /// The node's app.
        app: AppId,
        /// The node's version.
        version: Version,
        /// The node's container.
        container: ContainerId,
    },
    /// Register again a healthy running instance whose address node is missing.
    RegisterNode {
        /// The instance.
        instance: InstanceId,
    },
    /// Create the app node of an app row.
    AddAppNode(AppId),
    /// Remove the app node of an app with no row.
    RemoveAppNode(AppId),
    /// Point a custom domain's node at its app.
    SetDomain {
        /// The domain.
        domain: Domain,
        /// The app the database routes it to.
        app: AppId,
    },
    /// Remove the node of a custom domain the database does not have.
    RemoveDomain(Domain),
    /// Write the wake node of an app that may sleep (its newest deployment with
    /// `autoscale.min` 0), naming that deployment's version; no failure.
    SetWake {
        /// The app.
        app: AppId,
        /// The version of its sleeping deployment.
        version: Version,
    },
    /// Delete the wake node of an app that may not sleep (no deployment with `min` 0).
    ClearWake(AppId),
    /// Place and start instances of a running deployment below its desired count.
    TopUp {
        /// The deployment.
        deployment_id: i64,
        /// How many instances are missing.
        missing: u32,
    },
    /// Place a running global deployment on the ready hosts that match its placement and run
    /// none of it (placement checks again).
    PlaceGlobal {
        /// The deployment.
        deployment_id: i64,
        /// The hosts lacking an instance, in host order.
        hosts: Vec<i64>,
    },
    /// A deploy interrupted after every instance came up: mark the deployment running.
    FinishDeploy {
        /// The deployment.
        deployment_id: i64,
    },
    /// A deploy or undeploy interrupted (or a failed one left behind): tear its instances
    /// down, then delete the deployment once it has none.
    RemoveDeployment {
        /// The deployment.
        deployment_id: i64,
    },
}

impl Repair {
    /// The instance this repair acts on, for the repairs that name one.
    pub fn instance(&self) -> Option<&InstanceId> {
        match self {
            Repair::FinishStart { instance, .. }
            | Repair::RollBackStart { instance, .. }
            | Repair::FinishStop { instance }
            | Repair::Recreate { instance }
            | Repair::ReplaceLost { instance, .. }
            | Repair::RegisterNode { instance } => Some(instance),
            _ => None,
        }
    }
}

/// Whether a container still stands for its instance: running, or paused (frozen, not gone:
/// its failing health check and the deployment's `on_failure` policy deal with it, not a
/// re-creation behind the policy's back).
pub fn still_there(state: ContainerState) -> bool {
    matches!(state, ContainerState::Running | ContainerState::Paused)
}

/// The listed containers of each answering host, by the instance id on their label.
type Listed<'a> = HashMap<i64, HashMap<&'a str, Vec<&'a ContainerSummary>>>;

/// What the instance repairs of a pass touched.
#[derive(Default)]
struct Touched<'a> {
    /// Instances with an instance repair.
    instances: HashSet<&'a InstanceId>,
    /// Deployments one of whose instances has an instance repair.
    deployments: HashSet<i64>,
    /// Deployments one of whose instances has its start finished (the probe decides).
    finishing: HashSet<i64>,
}

/// The repairs one pass makes, in the order the applier runs them: orphans, instance repairs,
/// app nodes, address nodes, domains, deployments.
pub fn plan(s: &Snapshot) -> Vec<Repair> {
    let listed = index(s);
    let mut out = Vec::new();
    orphans(s, &mut out);
    let touched = instance_repairs(s, &listed, &mut out);
    app_nodes(s, &mut out);
    address_nodes(s, &listed, &touched, &mut out);
    domains(s, &mut out);
    wake_nodes(s, &mut out);
    deployments(s, &touched, &mut out);
    out
}

fn index(s: &Snapshot) -> Listed<'_> {
    s.containers
        .iter()
        .map(|(host, list)| {
            let mut by_instance: HashMap<&str, Vec<&ContainerSummary>> = HashMap::new();
            for c in list {
                if let Some(instance) = c.labels.get(labels::INSTANCE) {
                    by_instance.entry(instance.as_str()).or_default().push(c);
                }
            }
            (*host, by_instance)
        })
        .collect()
}

/// The listed container of `r` on its host: the one with the row's container id if listed,
/// else the last one listed with its label. `None` if its host was not listed or has none.
fn container_of<'a>(listed: &Listed<'a>, r: &InstanceRow) -> Option<&'a ContainerSummary> {
    let candidates = listed.get(&r.host_id)?.get(r.id.as_str())?;
    candidates
        .iter()
        .find(|c| Some(&c.id) == r.container_id.as_ref())
        .or_else(|| candidates.last())
        .copied()
}

/// Containers whose instance label names no instance row on the host that listed them (a
/// container listed for host A whose row is on host B is an orphan of A). Containers without
/// an instance label are not ours to judge and stay.
fn orphans(s: &Snapshot, out: &mut Vec<Repair>) {
    let known: HashSet<(i64, &str)> = s
        .instances
        .iter()
        .map(|r| (r.host_id, r.id.as_str()))
        .collect();
    for h in &s.hosts {
        let Some(list) = s.containers.get(&h.id) else {
            continue;
        };
        for c in list {
            let Some(instance) = c.labels.get(labels::INSTANCE) else {
                continue;
            };
            if !known.contains(&(h.id, instance.as_str())) {
                out.push(Repair::RemoveOrphan {
                    host_id: h.id,
                    container: c.id.clone(),
                });
            }
        }
    }
}

fn instance_repairs<'a>(
    s: &'a Snapshot,
    listed: &Listed<'_>,
    out: &mut Vec<Repair>,
) -> Touched<'a> {
    let down: HashSet<i64> = s
        .hosts
        .iter()
        .filter(|h| h.state == HostState::Down)
        .map(|h| h.id)
        .collect();
    let mut touched = Touched::default();
    for r in &s.instances {
        let Some(repair) = instance_repair(s, listed, &down, r) else {
            continue;
        };
        touched.instances.insert(&r.id);
        touched.deployments.insert(r.deployment_id);
        if matches!(repair, Repair::FinishStart { .. }) {
            touched.finishing.insert(r.deployment_id);
        }
        out.push(repair);
    }
    touched
}

fn instance_repair(
    s: &Snapshot,
    listed: &Listed<'_>,
    down: &HashSet<i64>,
    r: &InstanceRow,
) -> Option<Repair> {
    let instance = r.id.clone();
    let container = container_of(listed, r);
    if down.contains(&r.host_id) {
        // A stopping instance of a down host is left as it is.
        return (r.state != InstanceState::Stopping).then(|| Repair::ReplaceLost {
            instance,
            container: container.map(|c| c.id.clone()),
        });
    }
    // A host we could not list: leave its instances alone this pass.
    if !listed.contains_key(&r.host_id) {
        return None;
    }
    let age = s.now_ms - r.updated_ms;
    let stuck = age > s.stuck_ms;
    let alive = container.filter(|c| still_there(c.state));
    match r.state {
        InstanceState::Pending | InstanceState::Starting if stuck => Some(match alive {
            Some(c) => Repair::FinishStart {
                instance,
                container: c.id.clone(),
            },
            None => Repair::RollBackStart {
                instance,
                container: r
                    .container_id
                    .clone()
                    .or_else(|| container.map(|c| c.id.clone())),
            },
        }),
        InstanceState::Stopping if stuck => Some(Repair::FinishStop { instance }),
        // Gone or dead. An `unhealthy` instance is being restarted by the healer: act on it
        // only once that had its time. So is a worker whose container is listed but exited:
        // its exit is the healer's to answer, per `on_failure` and with back-off.
        InstanceState::Running | InstanceState::Unhealthy
            if alive.is_none()
                && (stuck
                    || (r.state == InstanceState::Running
                        && age > RUNNING_GRACE_MS
                        && !(r.is_worker() && container.is_some()))) =>
        {
            Some(Repair::Recreate { instance })
        }
        _ => None,
    }
}

/// App nodes equal to the app rows. An app being created has its row before its node, so a
/// node without a row is stale.
fn app_nodes(s: &Snapshot, out: &mut Vec<Repair>) {
    let rows: HashSet<&AppId> = s.apps.iter().collect();
    let nodes: HashSet<&AppId> = s.app_nodes.iter().collect();
    let mut seen = HashSet::new();
    for app in &s.apps {
        if seen.insert(app) && !nodes.contains(app) {
            out.push(Repair::AddAppNode(app.clone()));
        }
    }
    let mut seen = HashSet::new();
    for app in &s.app_nodes {
        if seen.insert(app) && !rows.contains(app) {
            out.push(Repair::RemoveAppNode(app.clone()));
        }
    }
}

/// Removes address nodes no live instance owns; restores the node of a healthy running
/// instance whose container is alive (a worker has none).
fn address_nodes(s: &Snapshot, listed: &Listed<'_>, touched: &Touched<'_>, out: &mut Vec<Repair>) {
    let owned: HashMap<&ContainerId, &InstanceRow> = s
        .instances
        .iter()
        .filter_map(|r| r.container_id.as_ref().map(|c| (c, r)))
        .collect();
    for (app, version, container) in &s.address_nodes {
        match owned.get(container) {
            Some(r) if r.state != InstanceState::Stopping => {}
            // Its stop is being finished this pass, which deregisters it.
            Some(r) if touched.instances.contains(&r.id) => {}
            _ => out.push(Repair::DeregisterNode {
                app: app.clone(),
                version: version.clone(),
                container: container.clone(),
            }),
        }
    }
    let present: HashSet<&ContainerId> = s.address_nodes.iter().map(|(_, _, c)| c).collect();
    for r in &s.instances {
        let Some(cid) = &r.container_id else {
            continue;
        };
        let alive = container_of(listed, r).is_some_and(|c| &c.id == cid && still_there(c.state));
        if r.state == InstanceState::Running
            && r.healthy
            && !r.is_worker()
            && !present.contains(cid)
            && !touched.instances.contains(&r.id)
            && alive
        {
            out.push(Repair::RegisterNode {
                instance: r.id.clone(),
            });
        }
    }
}

/// Wake nodes exactly for the apps that may sleep, each naming its sleeping deployment's
/// version. A node that is right is left alone (its failure, if the autoscaler wrote one,
/// stays until the autoscaler's back-off ends).
fn wake_nodes(s: &Snapshot, out: &mut Vec<Repair>) {
    let want = crate::autoscale::wake::sleepers(&s.deployments);
    let have: HashMap<&AppId, Option<&Version>> =
        s.wake_nodes.iter().map(|(a, v)| (a, v.as_ref())).collect();
    let mut apps: Vec<(&AppId, &Version)> = want.iter().map(|(a, v)| (*a, *v)).collect();
    apps.sort();
    for (app, version) in apps {
        if have.get(app) != Some(&Some(version)) {
            out.push(Repair::SetWake {
                app: app.clone(),
                version: version.clone(),
            });
        }
    }
    for (app, _) in &s.wake_nodes {
        if !want.contains_key(app) {
            out.push(Repair::ClearWake(app.clone()));
        }
    }
}

/// Domain nodes equal to the database's domains (the database is the truth; ZooKeeper's copy
/// is what gateways route by).
fn domains(s: &Snapshot, out: &mut Vec<Repair>) {
    let want: HashMap<&Domain, &AppId> = s.domains.iter().map(|(d, a)| (d, a)).collect();
    let have: HashMap<&Domain, &AppId> = s.domain_nodes.iter().map(|(d, a)| (d, a)).collect();
    let mut seen = HashSet::new();
    for (domain, _) in &s.domains {
        if !seen.insert(domain) {
            continue;
        }
        let app = want[domain];
        if have.get(domain) != Some(&app) {
            out.push(Repair::SetDomain {
                domain: domain.clone(),
                app: app.clone(),
            });
        }
    }
    let mut seen = HashSet::new();
    for (domain, _) in &s.domain_nodes {
        if seen.insert(domain) && !want.contains_key(domain) {
            out.push(Repair::RemoveDomain(domain.clone()));
        }
    }
}

/// Tops deployments up to their desired count, places global ones on the hosts they lack,
/// finishes or removes deployments stuck after a crash.
fn deployments(s: &Snapshot, touched: &Touched<'_>, out: &mut Vec<Repair>) {
    let mut by_deployment: HashMap<i64, Vec<&InstanceRow>> = HashMap::new();
    for i in &s.instances {
        by_deployment.entry(i.deployment_id).or_default().push(i);
    }
    // The apps with a live instance on each host (co-location of global deployments).
    let live_apps: HashSet<(i64, &AppId)> = s
        .instances
        .iter()
        .filter(|i| i.state != InstanceState::Stopping)
        .map(|i| (i.host_id, &i.app))
        .collect();
    for d in &s.deployments {
        let mine = by_deployment.get(&d.id).map_or(&[][..], Vec::as_slice);
        let live = mine
            .iter()
            .filter(|i| i.state != InstanceState::Stopping)
            .count();
        let running = mine
            .iter()
            .filter(|i| i.state == InstanceState::Running)
            .count();
        let desired = u64::from(d.spec.instances);
        let global = d.spec.placement.global;
        let stuck = s.now_ms - d.updated_ms > s.stuck_ms;
        // An instance repaired this pass changes what the deployment has: the next pass sees it.
        let repaired = touched.deployments.contains(&d.id);
        // Whether an instance's start is finished or rolled back decides between finishing and
        // removing a stuck deploy: wait for that.
        let awaits_start = !global && touched.finishing.contains(&d.id);
        match d.state {
            DeploymentState::Running if !global && !repaired && (live as u64) < desired => {
                out.push(Repair::TopUp {
                    deployment_id: d.id,
                    missing: u32::try_from(desired - live as u64).unwrap_or(u32::MAX),
                });
            }
            DeploymentState::Running if global && !repaired => {
                let hosts = global_hosts(s, d, mine, &live_apps);
                if !hosts.is_empty() {
                    out.push(Repair::PlaceGlobal {
                        deployment_id: d.id,
                        hosts,
                    });
                }
            }
            DeploymentState::Deploying if stuck && awaits_start => {}
            // Its deploy was interrupted after every instance came up: finish it.
            DeploymentState::Deploying if stuck && !global && running as u64 >= desired => {
                out.push(Repair::FinishDeploy {
                    deployment_id: d.id,
                });
            }
            // Its deploy or undeploy was interrupted: the user never got a success, so the
            // safe end state is "not deployed".
            DeploymentState::Deploying | DeploymentState::Stopping | DeploymentState::Failed
                if stuck =>
            {
                out.push(Repair::RemoveDeployment {
                    deployment_id: d.id,
                });
            }
            _ => {}
        }
    }
}

/// The hosts a global deployment lacks: ready, its engine answered this pass, labels matching
/// every constraint, running a live instance of the `colocate_with` app if one is set, and no
/// live instance of the deployment.
fn global_hosts(
    s: &Snapshot,
    d: &DeploymentRow,
    mine: &[&InstanceRow],
    live_apps: &HashSet<(i64, &AppId)>,
) -> Vec<i64> {
    let placement = &d.spec.placement;
    let has: HashSet<i64> = mine
        .iter()
        .filter(|i| i.state != InstanceState::Stopping)
        .map(|i| i.host_id)
        .collect();
    s.hosts
        .iter()
        .filter(|h| h.state == HostState::Ready && s.containers.contains_key(&h.id))
        .filter(|h| {
            placement
                .constraints
                .iter()
                .all(|(k, v)| h.labels.get(k) == Some(v))
        })
        .filter(|h| {
            placement
                .colocate_with
                .as_ref()
                .is_none_or(|other| live_apps.contains(&(h.id, other)))
        })
        .filter(|h| !has.contains(&h.id))
        .map(|h| h.id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fixtures::{self, cid};
    use crate::store::NewDeployment;
    use caas_types::PlacementPolicy;
    use caas_types::PortRange;
    use std::collections::BTreeMap;

    const NOW: i64 = 1_700_000_000_000;
    const STUCK: i64 = 60_000;
    /// An age past `stuck`.
    const OLD: i64 = STUCK + 1;

    fn iid(id: &str) -> InstanceId {
        id.parse().expect("valid instance id")
    }

    fn app(id: &str) -> AppId {
        id.parse().expect("valid app id")
    }

    fn v1() -> Version {
        "v1".parse().expect("valid version")
    }

    fn domain(d: &str) -> Domain {
        d.parse().expect("valid domain")
    }

    fn host(id: i64, state: HostState) -> HostRow {
        HostRow {
            id,
            name: format!("h{id}").parse().expect("valid host name"),
            address: [10, 0, 0, 1].into(),
            docker: format!("tcp://10.0.0.{id}:2375"),
            labels: BTreeMap::new(),
            mem_total: 1 << 30,
            mem_free: 1 << 29,
            cpu_total: 4000,
            cpu_free: 2000,
            ports: PortRange::default(),
            state,
            version: 0,
            auto_down: false,
        }
    }

    /// An instance `{app}-{suffix}` of deployment `deployment`, last changed `age_ms` ago;
    /// healthy when running.
    fn inst(
        id: &str,
        deployment: i64,
        host_id: i64,
        state: InstanceState,
        container: Option<u8>,
        age_ms: i64,
    ) -> InstanceRow {
        InstanceRow {
            deployment_id: deployment,
            updated_ms: NOW - age_ms,
            started_ms: 0,
            stop_timeout_s: None,
            ..fixtures::instance(id, host_id, state, container)
        }
    }

    fn container(instance: &str, host_id: i64, n: u8, state: ContainerState) -> ContainerSummary {
        ContainerSummary {
            id: cid(n),
            name: format!("caas-{instance}"),
            image: "registry:5000/web:v1".into(),
            state,
            status: String::new(),
            labels: [
                (labels::MANAGED.to_string(), "caas".to_string()),
                (labels::INSTANCE.to_string(), instance.to_string()),
                (labels::HOST.to_string(), format!("h{host_id}")),
            ]
            .into(),
        }
    }

    fn spec(app_id: &str, instances: u32, placement: PlacementPolicy) -> NewDeployment {
        NewDeployment {
            placement,
            ..fixtures::deployment(0, app_id, "v1", instances).spec
        }
    }

    fn deployment(
        id: i64,
        app_id: &str,
        instances: u32,
        state: DeploymentState,
        age_ms: i64,
    ) -> DeploymentRow {
        DeploymentRow {
            id,
            spec: spec(app_id, instances, PlacementPolicy::default()),
            state,
            updated_ms: NOW - age_ms,
            desired: None,
        }
    }

    fn global(id: i64, app_id: &str, placement: PlacementPolicy) -> DeploymentRow {
        DeploymentRow {
            id,
            spec: spec(
                app_id,
                1,
                PlacementPolicy {
                    global: true,
                    ..placement
                },
            ),
            state: DeploymentState::Running,
            updated_ms: NOW - OLD,
            desired: None,
        }
    }

    /// Two ready hosts whose engines answered with nothing, the app `web` with its node and a
    /// running deployment (id 1) of no instances; add to it.
    fn world() -> Snapshot {
        Snapshot {
            now_ms: NOW,
            stuck_ms: STUCK,
            hosts: vec![host(1, HostState::Ready), host(2, HostState::Ready)],
            containers: [(1, Vec::new()), (2, Vec::new())].into(),
            deployments: vec![deployment(1, "web", 0, DeploymentState::Running, OLD)],
            apps: vec![app("web")],
            app_nodes: vec![app("web")],
            ..Snapshot::default()
        }
    }

    impl Snapshot {
        /// A healthy running instance: its row, its running container, its node; counted in
        /// its deployment's desired instances.
        fn healthy(&mut self, id: &str, deployment: i64, host_id: i64, n: u8) -> &mut Self {
            let row = inst(
                id,
                deployment,
                host_id,
                InstanceState::Running,
                Some(n),
                OLD,
            );
            self.address_nodes
                .push((row.app.clone(), row.version.clone(), cid(n)));
            self.instances.push(row);
            self.list(container(id, host_id, n, ContainerState::Running));
            if let Some(d) = self.deployments.iter_mut().find(|d| d.id == deployment) {
                d.spec.instances += 1;
            }
            self
        }

        fn list(&mut self, c: ContainerSummary) -> &mut Self {
            let host_id: i64 = c.labels[labels::HOST]
                .trim_start_matches('h')
                .parse()
                .expect("host id");
            self.containers.entry(host_id).or_default().push(c);
            self
        }

        fn row(&mut self, r: InstanceRow) -> &mut Self {
            self.instances.push(r);
            self
        }
    }

    #[test]
    fn wake_nodes_follow_the_deployments_that_may_sleep() {
        let sleeping = |id: i64, app_id: &str, version: &str, min: u32| {
            let mut d = deployment(id, app_id, 0, DeploymentState::Running, OLD);
            d.spec.version = version.parse().expect("version");
            d.spec.autoscale = Some(caas_types::AutoscalePolicy {
                min,
                max: 3,
                target_concurrency: 10,
                scale_down_delay_s: 60,
            });
            d.desired = Some(0);
            d
        };
        let mut s = world();
        s.apps.extend([app("shop"), app("blog"), app("api")]);
        s.app_nodes.extend([app("shop"), app("blog"), app("api")]);
        s.deployments.extend([
            sleeping(2, "shop", "v2", 0),
            sleeping(3, "blog", "v1", 0),
            sleeping(4, "api", "v1", 1),
        ]);
        // shop's node is missing; blog's names an old version; api (min 1) and web (no
        // autoscale) may not sleep, and a node of a deleted app goes too.
        s.wake_nodes = vec![
            (app("blog"), Some("v0".parse().expect("version"))),
            (app("api"), Some(v1())),
            (app("gone"), None),
        ];
        let wake: Vec<Repair> = plan(&s)
            .into_iter()
            .filter(|r| matches!(r, Repair::SetWake { .. } | Repair::ClearWake(_)))
            .collect();
        assert_eq!(
            wake,
            vec![
                Repair::SetWake {
                    app: app("blog"),
                    version: v1()
                },
                Repair::SetWake {
                    app: app("shop"),
                    version: "v2".parse().expect("version")
                },
                Repair::ClearWake(app("api")),
                Repair::ClearWake(app("gone")),
            ]
        );
        // Right nodes are left alone.
        s.wake_nodes = vec![
            (app("blog"), Some(v1())),
            (app("shop"), Some("v2".parse().expect("version"))),
        ];
        assert!(!plan(&s)
            .iter()
            .any(|r| matches!(r, Repair::SetWake { .. } | Repair::ClearWake(_))));
    }

    #[test]
    fn only_a_gone_or_dead_container_counts_as_lost() {
        assert!(still_there(ContainerState::Running));
        assert!(still_there(ContainerState::Paused));
        for lost in [
            ContainerState::Created,
            ContainerState::Restarting,
            ContainerState::Exited,
            ContainerState::Dead,
            ContainerState::Removing,
            ContainerState::Unknown,
        ] {
            assert!(!still_there(lost), "{lost:?}");
        }
    }

    #[test]
    fn a_healthy_platform_plans_nothing() {
        let mut s = world();
        s.healthy("web-a", 1, 1, 1).healthy("web-b", 1, 2, 2);
        s.apps.push(app("db"));
        s.app_nodes.push(app("db"));
        s.deployments
            .push(global(2, "db", PlacementPolicy::default()));
        s.healthy("db-a", 2, 1, 3).healthy("db-b", 2, 2, 4);
        s.domains.push((domain("shop.example.com"), app("web")));
        s.domain_nodes
            .push((domain("shop.example.com"), app("web")));
        // Young transitional states and a deploy in progress are not stuck.
        s.deployments
            .push(deployment(3, "web", 1, DeploymentState::Deploying, 1_000));
        s.row(inst("web-c", 3, 1, InstanceState::Starting, None, 1_000));
        assert_eq!(plan(&s), vec![]);
    }

    #[test]
    fn a_container_without_an_instance_row_is_an_orphan() {
        let mut s = world();
        s.healthy("web-a", 1, 1, 1);
        s.list(container("web-gone", 1, 9, ContainerState::Running));
        s.list(container("web-gone2", 2, 8, ContainerState::Exited));
        assert_eq!(
            plan(&s),
            vec![
                Repair::RemoveOrphan {
                    host_id: 1,
                    container: cid(9)
                },
                Repair::RemoveOrphan {
                    host_id: 2,
                    container: cid(8)
                },
            ]
        );
    }

    #[test]
    fn a_container_listed_for_another_host_than_its_row_is_an_orphan_of_that_host() {
        let mut s = world();
        s.healthy("web-a", 1, 1, 1);
        // Host 2's engine lists a container for web-a, whose row is on host 1.
        s.list(container("web-a", 2, 7, ContainerState::Running));
        assert_eq!(
            plan(&s),
            vec![Repair::RemoveOrphan {
                host_id: 2,
                container: cid(7)
            }]
        );
    }

    #[test]
    fn a_container_without_an_instance_label_is_left_alone() {
        let mut s = world();
        let mut c = container("web-x", 1, 5, ContainerState::Running);
        c.labels.remove(labels::INSTANCE);
        s.list(c);
        assert_eq!(plan(&s), vec![]);
    }

    #[test]
    fn a_running_instance_whose_container_is_gone_is_recreated_after_ten_seconds() {
        let mut s = world();
        s.deployments[0].spec.instances = 3;
        s.row(inst("web-a", 1, 1, InstanceState::Running, Some(1), 10_001))
            .row(inst(
                "web-b",
                1,
                1,
                InstanceState::Running,
                Some(2),
                RUNNING_GRACE_MS,
            ))
            .row(inst("web-c", 1, 2, InstanceState::Running, None, 500));
        let repairs = plan(&s);
        assert_eq!(
            repairs,
            vec![Repair::Recreate {
                instance: iid("web-a")
            }]
        );
    }

    #[test]
    fn an_exited_or_dead_container_is_recreated() {
        let mut s = world();
        s.healthy("web-a", 1, 1, 1).healthy("web-b", 1, 2, 2);
        s.containers.get_mut(&1).expect("host 1")[0].state = ContainerState::Exited;
        s.containers.get_mut(&2).expect("host 2")[0].state = ContainerState::Dead;
        assert_eq!(
            plan(&s),
            vec![
                Repair::Recreate {
                    instance: iid("web-a")
                },
                Repair::Recreate {
                    instance: iid("web-b")
                },
            ]
        );
    }

    #[test]
    fn a_workers_exited_container_is_the_healers_and_a_lost_one_the_reconcilers() {
        let mut s = world();
        s.deployments[0].spec.instances = 3;
        s.deployments[0].spec.port = None;
        let worker = |id: &str, n: u8, state: InstanceState, age: i64| InstanceRow {
            host_port: None,
            ..inst(id, 1, 1, state, Some(n), age)
        };
        // Exited: the healer restarts or replaces it per its policy, unless that is stuck.
        s.row(worker("web-a", 1, InstanceState::Running, OLD - 1))
            .list(container("web-a", 1, 1, ContainerState::Exited));
        s.row(worker("web-b", 2, InstanceState::Unhealthy, OLD))
            .list(container("web-b", 1, 2, ContainerState::Exited));
        // Gone: re-created on its claim after the grace, like any instance.
        s.row(worker(
            "web-c",
            3,
            InstanceState::Running,
            RUNNING_GRACE_MS + 1,
        ));
        assert_eq!(
            plan(&s),
            vec![
                Repair::Recreate {
                    instance: iid("web-b")
                },
                Repair::Recreate {
                    instance: iid("web-c")
                },
            ]
        );
    }

    #[test]
    fn a_worker_never_gets_an_address_node() {
        let mut s = world();
        s.deployments[0].spec.instances = 1;
        s.deployments[0].spec.port = None;
        s.row(InstanceRow {
            host_port: None,
            ..inst("web-a", 1, 1, InstanceState::Running, Some(1), OLD)
        })
        .list(container("web-a", 1, 1, ContainerState::Running));
        assert_eq!(plan(&s), vec![]);
    }

    #[test]
    fn a_paused_container_is_left_alone() {
        let mut s = world();
        s.healthy("web-a", 1, 1, 1);
        s.row(inst("web-b", 1, 2, InstanceState::Unhealthy, Some(2), OLD))
            .list(container("web-b", 2, 2, ContainerState::Paused));
        s.deployments[0].spec.instances = 2;
        s.containers.get_mut(&1).expect("host 1")[0].state = ContainerState::Paused;
        assert_eq!(plan(&s), vec![]);
    }

    #[test]
    fn an_unhealthy_instance_is_recreated_only_once_stuck() {
        let mut s = world();
        s.deployments[0].spec.instances = 2;
        s.row(inst(
            "web-a",
            1,
            1,
            InstanceState::Unhealthy,
            Some(1),
            STUCK,
        ))
        .row(inst("web-b", 1, 2, InstanceState::Unhealthy, Some(2), OLD));
        assert_eq!(
            plan(&s),
            vec![Repair::Recreate {
                instance: iid("web-b")
            }]
        );
    }

    #[test]
    fn a_stuck_start_with_a_live_container_is_finished() {
        let mut s = world();
        s.deployments[0].spec.instances = 2;
        // Crashed after creating the container, before recording it.
        s.row(inst("web-a", 1, 1, InstanceState::Pending, None, OLD))
            .list(container("web-a", 1, 1, ContainerState::Running))
            .row(inst("web-b", 1, 2, InstanceState::Starting, Some(2), OLD))
            .list(container("web-b", 2, 2, ContainerState::Paused));
        assert_eq!(
            plan(&s),
            vec![
                Repair::FinishStart {
                    instance: iid("web-a"),
                    container: cid(1)
                },
                Repair::FinishStart {
                    instance: iid("web-b"),
                    container: cid(2)
                },
            ]
        );
    }

    #[test]
    fn a_stuck_start_without_a_live_container_is_rolled_back() {
        let mut s = world();
        s.deployments[0].spec.instances = 3;
        s.row(inst("web-a", 1, 1, InstanceState::Starting, None, OLD))
            // The row's container is named even when the engine lists another (exited) one.
            .row(inst("web-b", 1, 1, InstanceState::Starting, Some(2), OLD))
            .list(container("web-b", 1, 3, ContainerState::Exited))
            // No container recorded: the listed one is.
            .row(inst("web-c", 1, 2, InstanceState::Pending, None, OLD))
            .list(container("web-c", 2, 4, ContainerState::Created));
        assert_eq!(
            plan(&s),
            vec![
                Repair::RollBackStart {
                    instance: iid("web-a"),
                    container: None
                },
                Repair::RollBackStart {
                    instance: iid("web-b"),
                    container: Some(cid(2))
                },
                Repair::RollBackStart {
                    instance: iid("web-c"),
                    container: Some(cid(4))
                },
            ]
        );
    }

    #[test]
    fn a_young_transitional_instance_is_left_alone() {
        let mut s = world();
        s.deployments[0].spec.instances = 2;
        s.row(inst("web-a", 1, 1, InstanceState::Pending, None, STUCK))
            .row(inst("web-b", 1, 2, InstanceState::Starting, Some(2), 5))
            .list(container("web-b", 2, 2, ContainerState::Running))
            .row(inst("web-c", 1, 2, InstanceState::Stopping, Some(3), STUCK));
        assert_eq!(plan(&s), vec![]);
    }

    #[test]
    fn a_stuck_stop_is_finished_and_its_node_left_to_it() {
        let mut s = world();
        s.row(inst("web-a", 1, 1, InstanceState::Stopping, Some(1), OLD))
            .list(container("web-a", 1, 1, ContainerState::Running));
        s.address_nodes.push((app("web"), v1(), cid(1)));
        assert_eq!(
            plan(&s),
            vec![Repair::FinishStop {
                instance: iid("web-a")
            }]
        );
    }

    #[test]
    fn instances_of_a_down_host_are_replaced() {
        let mut s = world();
        s.hosts.push(host(3, HostState::Down));
        s.hosts.push(host(4, HostState::Down));
        s.deployments[0].spec.instances = 3;
        // Host 3's engine still answers; host 4's does not.
        s.containers.insert(3, Vec::new());
        s.row(inst("web-a", 1, 3, InstanceState::Running, Some(1), 5))
            .list(container("web-a", 3, 1, ContainerState::Running))
            .row(inst("web-b", 1, 3, InstanceState::Unhealthy, Some(2), 5))
            .row(inst("web-c", 1, 4, InstanceState::Starting, None, 5));
        assert_eq!(
            plan(&s),
            vec![
                Repair::ReplaceLost {
                    instance: iid("web-a"),
                    container: Some(cid(1))
                },
                Repair::ReplaceLost {
                    instance: iid("web-b"),
                    container: None
                },
                Repair::ReplaceLost {
                    instance: iid("web-c"),
                    container: None
                },
            ]
        );
    }

    #[test]
    fn a_stopping_instance_of_a_down_host_is_left_alone() {
        let mut s = world();
        s.hosts.push(host(3, HostState::Down));
        s.containers.insert(3, Vec::new());
        s.row(inst("web-a", 1, 3, InstanceState::Stopping, Some(1), OLD))
            .list(container("web-a", 3, 1, ContainerState::Running));
        assert_eq!(plan(&s), vec![]);
    }

    #[test]
    fn orphans_of_a_down_host_whose_engine_answered_are_removed() {
        let mut s = world();
        s.hosts.push(host(3, HostState::Down));
        s.list(container("web-gone", 3, 9, ContainerState::Running));
        assert_eq!(
            plan(&s),
            vec![Repair::RemoveOrphan {
                host_id: 3,
                container: cid(9)
            }]
        );
    }

    #[test]
    fn a_host_whose_engine_was_not_listed_is_left_alone() {
        let mut s = world();
        s.healthy("web-a", 1, 1, 1);
        s.containers.remove(&1);
        s.deployments[0].spec.instances = 4;
        s.row(inst("web-b", 1, 1, InstanceState::Running, Some(2), OLD))
            .row(inst("web-c", 1, 1, InstanceState::Starting, None, OLD))
            .row(inst("web-d", 1, 1, InstanceState::Stopping, None, OLD))
            .row(inst("web-e", 1, 1, InstanceState::Unhealthy, Some(5), OLD));
        // The node of web-b is missing, but its container could not be seen.
        assert_eq!(plan(&s), vec![]);
    }

    #[test]
    fn a_stale_address_node_is_deregistered() {
        let mut s = world();
        s.healthy("web-a", 1, 1, 1);
        s.address_nodes.push((app("web"), v1(), cid(9)));
        s.address_nodes.push((app("old"), v1(), cid(8)));
        assert_eq!(
            plan(&s),
            vec![
                Repair::DeregisterNode {
                    app: app("web"),
                    version: v1(),
                    container: cid(9)
                },
                Repair::DeregisterNode {
                    app: app("old"),
                    version: v1(),
                    container: cid(8)
                },
            ]
        );
    }

    #[test]
    fn the_node_of_a_stopping_instance_is_deregistered() {
        let mut s = world();
        s.row(inst("web-a", 1, 1, InstanceState::Stopping, Some(1), 1_000))
            .list(container("web-a", 1, 1, ContainerState::Running));
        s.address_nodes.push((app("web"), v1(), cid(1)));
        assert_eq!(
            plan(&s),
            vec![Repair::DeregisterNode {
                app: app("web"),
                version: v1(),
                container: cid(1)
            }]
        );
    }

    #[test]
    fn a_missing_node_is_restored_only_for_a_live_container() {
        let mut s = world();
        for (id, host_id, n, state) in [
            ("web-a", 1, 1, ContainerState::Running),
            ("web-b", 1, 2, ContainerState::Paused),
            ("web-c", 2, 3, ContainerState::Exited),
        ] {
            s.healthy(id, 1, host_id, n);
            s.containers
                .get_mut(&host_id)
                .expect("host")
                .last_mut()
                .expect("listed")
                .state = state;
        }
        // Young enough not to be re-created yet: still no node for a dead container.
        let mut young = inst("web-d", 1, 2, InstanceState::Running, Some(4), 1_000);
        young.healthy = true;
        s.row(young)
            .list(container("web-d", 2, 4, ContainerState::Exited));
        // Not healthy: the health checker registers it once it passes.
        let mut sick = inst("web-e", 1, 2, InstanceState::Running, Some(5), 1_000);
        sick.healthy = false;
        s.row(sick)
            .list(container("web-e", 2, 5, ContainerState::Running));
        s.deployments[0].spec.instances = 5;
        s.address_nodes.clear();
        assert_eq!(
            plan(&s),
            vec![
                Repair::Recreate {
                    instance: iid("web-c")
                },
                Repair::RegisterNode {
                    instance: iid("web-a")
                },
                Repair::RegisterNode {
                    instance: iid("web-b")
                },
            ]
        );
    }

    #[test]
    fn a_node_is_restored_only_for_the_rows_container() {
        let mut s = world();
        let mut r = inst("web-a", 1, 1, InstanceState::Running, Some(1), 1_000);
        r.healthy = true;
        s.deployments[0].spec.instances = 1;
        // The engine lists another container for the instance, not the recorded one.
        s.row(r)
            .list(container("web-a", 1, 2, ContainerState::Running));
        assert_eq!(plan(&s), vec![]);
    }

    #[test]
    fn a_duplicate_container_prefers_the_rows_container() {
        let mut s = world();
        s.healthy("web-a", 1, 1, 1);
        // A second container for web-a listed after the recorded one, exited: the recorded,
        // running one stands for the instance.
        s.list(container("web-a", 1, 2, ContainerState::Exited));
        assert_eq!(plan(&s), vec![]);
    }

    #[test]
    fn app_nodes_follow_the_app_rows() {
        let mut s = world();
        s.apps.push(app("new"));
        s.app_nodes.push(app("deleted"));
        assert_eq!(
            plan(&s),
            vec![
                Repair::AddAppNode(app("new")),
                Repair::RemoveAppNode(app("deleted")),
            ]
        );
    }

    #[test]
    fn domain_nodes_follow_the_database() {
        let mut s = world();
        s.domains = vec![
            (domain("same.example.com"), app("web")),
            (domain("missing.example.com"), app("web")),
            (domain("moved.example.com"), app("web")),
        ];
        s.domain_nodes = vec![
            (domain("same.example.com"), app("web")),
            (domain("moved.example.com"), app("old")),
            (domain("stale.example.com"), app("web")),
        ];
        assert_eq!(
            plan(&s),
            vec![
                Repair::SetDomain {
                    domain: domain("missing.example.com"),
                    app: app("web")
                },
                Repair::SetDomain {
                    domain: domain("moved.example.com"),
                    app: app("web")
                },
                Repair::RemoveDomain(domain("stale.example.com")),
            ]
        );
    }

    #[test]
    fn a_deployment_below_its_count_is_topped_up() {
        let mut s = world();
        s.healthy("web-a", 1, 1, 1);
        s.deployments[0].spec.instances = 4;
        // A stopping instance is not live; a young starting one is.
        s.row(inst("web-b", 1, 2, InstanceState::Stopping, None, 1_000))
            .row(inst("web-c", 1, 2, InstanceState::Starting, None, 1_000));
        assert_eq!(
            plan(&s),
            vec![Repair::TopUp {
                deployment_id: 1,
                missing: 2
            }]
        );
    }

    #[test]
    fn no_top_up_while_an_instance_of_the_deployment_is_repaired() {
        let mut s = world();
        s.healthy("web-a", 1, 1, 1);
        s.deployments[0].spec.instances = 3;
        s.row(inst("web-b", 1, 2, InstanceState::Starting, None, OLD));
        assert_eq!(
            plan(&s),
            vec![Repair::RollBackStart {
                instance: iid("web-b"),
                container: None
            }]
        );
    }

    #[test]
    fn only_running_deployments_are_topped_up() {
        let mut s = world();
        s.deployments = vec![
            deployment(1, "web", 2, DeploymentState::Deploying, 1_000),
            deployment(2, "web", 2, DeploymentState::Stopping, 1_000),
            deployment(3, "web", 2, DeploymentState::Failed, 1_000),
        ];
        assert_eq!(plan(&s), vec![]);
    }

    #[test]
    fn a_global_deployment_reaches_a_host_added_later() {
        let mut s = world();
        s.deployments = vec![global(1, "web", PlacementPolicy::default())];
        s.healthy("web-a", 1, 1, 1).healthy("web-b", 1, 2, 2);
        assert_eq!(plan(&s), vec![]);
        s.hosts.push(host(3, HostState::Ready));
        s.containers.insert(3, Vec::new());
        assert_eq!(
            plan(&s),
            vec![Repair::PlaceGlobal {
                deployment_id: 1,
                hosts: vec![3]
            }]
        );
    }

    #[test]
    fn a_global_deployment_respects_constraints_readiness_and_existing_instances() {
        let mut s = world();
        let zone_a: BTreeMap<String, String> = [("zone".to_string(), "a".to_string())].into();
        s.deployments = vec![global(
            1,
            "web",
            PlacementPolicy {
                constraints: zone_a.clone(),
                ..PlacementPolicy::default()
            },
        )];
        s.hosts = vec![
            HostRow {
                labels: zone_a.clone(),
                ..host(1, HostState::Ready)
            },
            // Another zone.
            HostRow {
                labels: [("zone".to_string(), "b".to_string())].into(),
                ..host(2, HostState::Ready)
            },
            // No labels.
            host(3, HostState::Ready),
            HostRow {
                labels: zone_a.clone(),
                ..host(4, HostState::Draining)
            },
            HostRow {
                labels: zone_a.clone(),
                ..host(5, HostState::Down)
            },
            // Only a stopping instance here: it lacks one.
            HostRow {
                labels: zone_a.clone(),
                ..host(6, HostState::Ready)
            },
            // Its engine did not answer this pass.
            HostRow {
                labels: zone_a.clone(),
                ..host(7, HostState::Ready)
            },
            // Has one, young and still starting.
            HostRow {
                labels: zone_a,
                ..host(8, HostState::Ready)
            },
        ];
        s.containers = (1..=6).chain([8]).map(|h| (h, Vec::new())).collect();
        s.healthy("web-a", 1, 1, 1);
        s.row(inst("web-b", 1, 6, InstanceState::Stopping, None, 1_000))
            .row(inst("web-c", 1, 8, InstanceState::Starting, None, 1_000));
        assert_eq!(
            plan(&s),
            vec![Repair::PlaceGlobal {
                deployment_id: 1,
                hosts: vec![6]
            }]
        );
    }

    #[test]
    fn a_global_deployment_with_colocation_goes_where_the_other_app_runs() {
        let mut s = world();
        s.hosts.push(host(3, HostState::Ready));
        s.containers.insert(3, Vec::new());
        s.apps.push(app("db"));
        s.app_nodes.push(app("db"));
        s.deployments.push(global(
            2,
            "db",
            PlacementPolicy {
                colocate_with: Some(app("web")),
                ..PlacementPolicy::default()
            },
        ));
        s.healthy("web-a", 1, 1, 1).healthy("web-b", 1, 2, 2);
        // Host 3 only has a stopping web instance.
        s.row(inst("web-c", 1, 3, InstanceState::Stopping, None, 1_000));
        s.healthy("db-a", 2, 1, 3);
        assert_eq!(
            plan(&s),
            vec![Repair::PlaceGlobal {
                deployment_id: 2,
                hosts: vec![2]
            }]
        );
    }

    #[test]
    fn a_global_deployment_is_neither_counted_nor_placed_while_an_instance_is_repaired() {
        let mut s = world();
        s.deployments = vec![global(1, "web", PlacementPolicy::default())];
        s.deployments[0].spec.instances = 5;
        s.row(inst("web-a", 1, 1, InstanceState::Running, Some(1), OLD));
        assert_eq!(
            plan(&s),
            vec![Repair::Recreate {
                instance: iid("web-a")
            }]
        );
    }

    #[test]
    fn a_stuck_deploy_is_finished_when_its_instances_run() {
        let mut s = world();
        s.deployments = vec![deployment(1, "web", 0, DeploymentState::Deploying, OLD)];
        s.healthy("web-a", 1, 1, 1).healthy("web-b", 1, 2, 2);
        assert_eq!(plan(&s), vec![Repair::FinishDeploy { deployment_id: 1 }]);
    }

    #[test]
    fn a_stuck_deploy_short_of_running_instances_is_removed() {
        let mut s = world();
        s.deployments = vec![deployment(1, "web", 0, DeploymentState::Deploying, OLD)];
        s.healthy("web-a", 1, 1, 1);
        s.deployments[0].spec.instances = 2;
        // Its other instance is rolled back first.
        s.row(inst("web-b", 1, 2, InstanceState::Pending, None, OLD));
        assert_eq!(
            plan(&s),
            vec![
                Repair::RollBackStart {
                    instance: iid("web-b"),
                    container: None
                },
                Repair::RemoveDeployment { deployment_id: 1 },
            ]
        );
    }

    #[test]
    fn a_stuck_deploy_waits_for_the_verdict_on_its_instance_start() {
        let mut s = world();
        s.deployments = vec![deployment(1, "web", 0, DeploymentState::Deploying, OLD)];
        s.healthy("web-a", 1, 1, 1);
        s.deployments[0].spec.instances = 2;
        s.row(inst("web-b", 1, 2, InstanceState::Starting, Some(2), OLD))
            .list(container("web-b", 2, 2, ContainerState::Running));
        assert_eq!(
            plan(&s),
            vec![Repair::FinishStart {
                instance: iid("web-b"),
                container: cid(2)
            }]
        );
    }

    #[test]
    fn stuck_undeploys_failed_and_global_deploys_are_removed_young_ones_kept() {
        let mut s = world();
        let mut stuck_global = global(4, "web", PlacementPolicy::default());
        stuck_global.state = DeploymentState::Deploying;
        s.deployments = vec![
            deployment(1, "web", 1, DeploymentState::Stopping, OLD),
            deployment(2, "web", 1, DeploymentState::Failed, OLD),
            deployment(3, "web", 1, DeploymentState::Stopping, STUCK),
            stuck_global,
            deployment(5, "web", 1, DeploymentState::Deploying, STUCK),
        ];
        s.healthy("web-a", 4, 1, 1);
        assert_eq!(
            plan(&s),
            vec![
                Repair::RemoveDeployment { deployment_id: 1 },
                Repair::RemoveDeployment { deployment_id: 2 },
                Repair::RemoveDeployment { deployment_id: 4 },
            ]
        );
    }

    #[test]
    fn repairs_come_in_apply_order_one_per_instance() {
        let mut s = world();
        s.domains.push((domain("shop.example.com"), app("web")));
        s.app_nodes.push(app("gone"));
        s.address_nodes.push((app("gone"), v1(), cid(9)));
        s.deployments
            .push(deployment(2, "web", 0, DeploymentState::Failed, OLD));
        s.deployments[0].spec.instances = 2;
        s.row(inst("web-a", 1, 1, InstanceState::Running, Some(1), OLD));
        s.list(container("web-x", 2, 8, ContainerState::Running));
        let repairs = plan(&s);
        assert_eq!(
            repairs,
            vec![
                Repair::RemoveOrphan {
                    host_id: 2,
                    container: cid(8)
                },
                Repair::Recreate {
                    instance: iid("web-a")
                },
                Repair::RemoveAppNode(app("gone")),
                Repair::DeregisterNode {
                    app: app("gone"),
                    version: v1(),
                    container: cid(9)
                },
                Repair::SetDomain {
                    domain: domain("shop.example.com"),
                    app: app("web")
                },
                Repair::RemoveDeployment { deployment_id: 2 },
            ]
        );
        let mut seen = HashSet::new();
        assert!(repairs
            .iter()
            .filter_map(Repair::instance)
            .all(|i| seen.insert(i.clone())));
    }
}
