//! The pure half of placement, nomad style: a snapshot of candidate hosts goes through the
//! feasibility filter, the spread preference and the ranking, and one host comes out, picked at
//! random among the best few. No I/O here, so every rule is unit-tested without a database.

use caas_types::{HostName, PortRange};
use caas_types::{HostState, PlacementPolicy, Rank};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// A host as placement sees it at one moment (one row of a snapshot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Host database id.
    pub id: i64,
    /// Host name.
    pub name: HostName,
    /// The IP its instance ports are bound to.
    pub address: IpAddr,
    /// Scheduling state.
    pub state: HostState,
    /// Labels, matched against constraints.
    pub labels: BTreeMap<String, String>,
    /// Unclaimed memory, bytes.
    pub mem_free: u64,
    /// Unclaimed CPU, millicores.
    pub cpu_free: u32,
    /// The host's port range.
    pub ports: PortRange,
    /// Host ports not yet handed out.
    pub ports_free: u32,
    /// The `version` this snapshot read; the claim succeeds only if it is unchanged.
    pub version: i64,
    /// Instances of the deployment being placed already on this host (spread, global).
    pub same_deployment: u32,
    /// Whether an instance of the `colocate_with` app runs here.
    pub colocated: bool,
}

/// What one instance asks for.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// Memory, bytes.
    pub memory: u64,
    /// CPU, millicores.
    pub cpu: u32,
    /// Whether it needs a host port (a worker's instance does not).
    pub port: bool,
    /// The deployment's placement policy.
    pub placement: &'a PlacementPolicy,
}

/// Why a host was filtered out (the dimension that was exhausted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// Draining or down.
    NotReady,
    /// A label constraint does not match.
    Constraint,
    /// No instance of the `colocate_with` app here.
    Colocate,
    /// Not enough free memory.
    Memory,
    /// Not enough free CPU.
    Cpu,
    /// Every host port is taken.
    Ports,
}

impl Reason {
    fn describe(self) -> &'static str {
        match self {
            Reason::NotReady => "not ready",
            Reason::Constraint => "do not match the constraints",
            Reason::Colocate => "run no instance of the co-location app",
            Reason::Memory => "lack memory",
            Reason::Cpu => "lack CPU",
            Reason::Ports => "have no free host port",
        }
    }
}

/// Whether `host` can take one instance of `ask`, and if not, why.
pub fn feasible(host: &Candidate, ask: &Ask<'_>) -> Result<(), Reason> {
    if host.state != HostState::Ready {
        return Err(Reason::NotReady);
    }
    if ask
        .placement
        .constraints
        .iter()
        .any(|(k, v)| host.labels.get(k) != Some(v))
    {
        return Err(Reason::Constraint);
    }
    if ask.placement.colocate_with.is_some() && !host.colocated {
        return Err(Reason::Colocate);
    }
    if host.mem_free < ask.memory {
        return Err(Reason::Memory);
    }
    if host.cpu_free < ask.cpu {
        return Err(Reason::Cpu);
    }
    if ask.port && host.ports_free == 0 {
        return Err(Reason::Ports);
    }
    Ok(())
}

/// Nothing in the snapshot can take the instance; says how many hosts failed on what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoFit {
    /// Hosts considered.
    pub considered: usize,
    /// How many hosts each reason eliminated (first failing reason per host).
    pub reasons: BTreeMap<Reason, usize>,
}

impl std::fmt::Display for NoFit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.considered == 0 {
            return f.write_str("there are no hosts");
        }
        write!(f, "{} hosts considered", self.considered)?;
        for (reason, n) in &self.reasons {
            write!(f, ", {n} {}", reason.describe())?;
        }
        Ok(())
    }
}

/// The ranking key: larger is better. Ties on the policy's resource break on the other one.
fn score(host: &Candidate, rank: Rank) -> (u64, u64) {
    let (mem, cpu) = (host.mem_free, u64::from(host.cpu_free));
    match rank {
        Rank::Memory => (mem, cpu),
        Rank::Cpu => (cpu, mem),
    }
}

/// Picks the host for one instance: filter, keep the hosts with the fewest instances of this
/// deployment when spreading, rank, then choose uniformly among the best `pick_among` (using
/// `random`). Picking among a few rather than the single best is what keeps concurrent
/// schedulers that read the same snapshot from all claiming the same host.
pub fn pick<'c>(
    hosts: &'c [Candidate],
    ask: &Ask<'_>,
    pick_among: usize,
    random: u64,
) -> Result<&'c Candidate, NoFit> {
    let mut reasons = BTreeMap::new();
    let mut fit: Vec<&Candidate> = Vec::with_capacity(hosts.len());
    for host in hosts {
        match feasible(host, ask) {
            Ok(()) => fit.push(host),
            Err(r) => *reasons.entry(r).or_insert(0) += 1,
        }
    }
    if fit.is_empty() {
        return Err(NoFit {
            considered: hosts.len(),
            reasons,
        });
    }
    if ask.placement.spread {
        let least = fit.iter().map(|h| h.same_deployment).min().unwrap_or(0);
        fit.retain(|h| h.same_deployment == least);
    }
    let rank = ask.placement.rank;
    // Best first; the id breaks exact ties so the order (and thus the tests) is deterministic.
    fit.sort_unstable_by(|a, b| score(b, rank).cmp(&score(a, rank)).then(a.id.cmp(&b.id)));
    let among = pick_among.clamp(1, fit.len());
    let index = usize::try_from(random % among as u64).unwrap_or(0);
    Ok(fit[index])
}

/// Applies a claim to a snapshot row, so several instances can be planned from one snapshot.
pub fn take(host: &mut Candidate, ask: &Ask<'_>) {
    host.mem_free = host.mem_free.saturating_sub(ask.memory);
    host.cpu_free = host.cpu_free.saturating_sub(ask.cpu);
    if ask.port {
        host.ports_free = host.ports_free.saturating_sub(1);
    }
    host.same_deployment += 1;
    host.version += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn host(id: i64, mem_mib: u64, cpu: u32) -> Candidate {
        Candidate {
            id,
            name: format!("h{id}").parse().expect("valid host name"),
            address: [127, 0, 0, 2].into(),
            state: HostState::Ready,
            labels: BTreeMap::new(),
            mem_free: mem_mib * MIB,
            cpu_free: cpu,
            ports: PortRange::default(),
            ports_free: 10,
            version: 0,
            same_deployment: 0,
            colocated: false,
        }
    }

    fn ask(placement: &PlacementPolicy) -> Ask<'_> {
        Ask {
            memory: 128 * MIB,
            cpu: 500,
            port: true,
            placement,
        }
    }

    #[test]
    fn ranks_by_memory_by_default_and_by_cpu_on_request() {
        let hosts = vec![
            host(1, 1024, 4000),
            host(2, 4096, 1000),
            host(3, 2048, 8000),
        ];
        let p = PlacementPolicy::default();
        assert_eq!(pick(&hosts, &ask(&p), 1, 7).map(|h| h.id), Ok(2));
        let p = PlacementPolicy {
            rank: Rank::Cpu,
            ..PlacementPolicy::default()
        };
        assert_eq!(pick(&hosts, &ask(&p), 1, 7).map(|h| h.id), Ok(3));
    }

    #[test]
    fn picks_only_among_the_best_few() {
        let hosts: Vec<_> = (1..=10).map(|i| host(i, 1000 + i as u64, 1000)).collect();
        let p = PlacementPolicy::default();
        let mut seen = std::collections::BTreeSet::new();
        for r in 0..100 {
            seen.insert(pick(&hosts, &ask(&p), 3, r).map(|h| h.id).unwrap_or(-1));
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![8, 9, 10]);
    }

    #[test]
    fn filters_state_resources_ports_and_constraints() {
        let mut draining = host(1, 8192, 8000);
        draining.state = HostState::Draining;
        let small = host(2, 64, 8000);
        let no_cpu = host(3, 8192, 100);
        let mut no_ports = host(4, 8192, 8000);
        no_ports.ports_free = 0;
        let mut zone_b = host(5, 8192, 8000);
        zone_b.labels.insert("zone".into(), "b".into());
        let mut zone_a = host(6, 1024, 1000);
        zone_a.labels.insert("zone".into(), "a".into());
        let hosts = vec![draining, small, no_cpu, no_ports, zone_b, zone_a];
        let p = PlacementPolicy {
            constraints: [("zone".to_string(), "a".to_string())].into(),
            ..PlacementPolicy::default()
        };
        assert_eq!(pick(&hosts, &ask(&p), 4, 3).map(|h| h.id), Ok(6));
        let p = PlacementPolicy::default();
        // Without the constraint the zone-b host (most memory) wins.
        assert_eq!(pick(&hosts, &ask(&p), 1, 3).map(|h| h.id), Ok(5));
        // A worker needs no port: the host without one is as good as any.
        let worker = Ask {
            port: false,
            ..ask(&p)
        };
        assert_eq!(feasible(&hosts[3], &ask(&p)), Err(Reason::Ports));
        assert_eq!(feasible(&hosts[3], &worker), Ok(()));
        let mut h = hosts[3].clone();
        take(&mut h, &worker);
        assert_eq!(h.ports_free, 0, "and takes none");
    }

    #[test]
    fn spread_prefers_hosts_without_the_deployment_then_doubles_up() {
        let mut hosts = vec![
            host(1, 8192, 8000),
            host(2, 1024, 8000),
            host(3, 2048, 8000),
        ];
        let p = PlacementPolicy {
            spread: true,
            ..PlacementPolicy::default()
        };
        let a = ask(&p);
        let mut order = Vec::new();
        for _ in 0..4 {
            let id = pick(&hosts, &a, 1, 0).map(|h| h.id).unwrap_or(-1);
            order.push(id);
            if let Some(h) = hosts.iter_mut().find(|h| h.id == id) {
                take(h, &a);
            }
        }
        assert_eq!(order, vec![1, 3, 2, 1]);
    }

    #[test]
    fn colocate_keeps_only_hosts_running_the_other_app() {
        let mut with = host(2, 512, 1000);
        with.colocated = true;
        let hosts = vec![host(1, 8192, 8000), with];
        let p = PlacementPolicy {
            colocate_with: Some("other".parse().expect("valid app id")),
            ..PlacementPolicy::default()
        };
        assert_eq!(pick(&hosts, &ask(&p), 4, 1).map(|h| h.id), Ok(2));
    }

    #[test]
    fn no_fit_says_what_ran_out() {
        let hosts = vec![host(1, 1024, 8000), host(2, 2048, 100)];
        let p = PlacementPolicy::default();
        let huge = Ask {
            memory: 10 << 40,
            cpu: 500,
            port: true,
            placement: &p,
        };
        let err = pick(&hosts, &huge, 2, 0).map(|h| h.id);
        let Err(no_fit) = err else {
            panic!("10 TiB should not fit: {err:?}")
        };
        assert_eq!(no_fit.considered, 2);
        assert_eq!(no_fit.reasons.get(&Reason::Memory), Some(&2));
        assert_eq!(no_fit.to_string(), "2 hosts considered, 2 lack memory");
        assert_eq!(
            pick(&[], &huge, 2, 0)
                .map(|h| h.id)
                .map_err(|e| e.to_string()),
            Err("there are no hosts".to_string())
        );
    }
}
