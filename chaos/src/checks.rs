//! What must hold after the faults: the placement invariant (every host's free memory and CPU
//! equal its capacity less what its instances claim; no host port twice), no orphan container
//! on any engine, exactly one address node per healthy instance in ZooKeeper, and the app's
//! deployment whole.

use crate::faults::Chaos;
use anyhow::Result;
use caas_registry::{AclPolicy, Registry, ZkAuth, ZkConfig};
use std::collections::{HashMap, HashSet};

/// Each check's name and what it found wrong (empty: it holds).
pub async fn run(
    chaos: &Chaos<'_>,
    namespace: &str,
    zk: &str,
    read_auth: Option<&str>,
) -> Result<Vec<(String, Vec<String>)>> {
    let mut out = Vec::new();
    out.push((
        "placement: free = capacity - claims".to_owned(),
        placement(chaos).await?,
    ));
    out.push(("no host port twice".to_owned(), ports(chaos).await?));
    let mut orphans = Vec::new();
    for host in chaos.cluster.host_names() {
        for name in chaos.orphans(&host, namespace).await? {
            orphans.push(format!("{host}: {name}"));
        }
    }
    out.push(("no orphan container".to_owned(), orphans));
    out.push((
        "one address node per healthy instance".to_owned(),
        registrations(chaos, zk, read_auth).await?,
    ));
    let deps = chaos.admin.deployments(&chaos.app).await?;
    let whole = match deps.as_slice() {
        [d] if d.instance_list.len() == d.instances as usize
            && d.instance_list.iter().all(|i| i.healthy) =>
        {
            Vec::new()
        }
        other => vec![format!(
            "{} deployments: {:?}",
            other.len(),
            other
                .iter()
                .map(|d| (d.version.to_string(), d.instances, d.instance_list.len()))
                .collect::<Vec<_>>()
        )],
    };
    out.push((
        format!("{}: one deployment, every instance healthy", chaos.app),
        whole,
    ));
    Ok(out)
}

async fn placement(chaos: &Chaos<'_>) -> Result<Vec<String>> {
    let hosts = chaos.admin.hosts().await?;
    let apps: Vec<caas_types::api::App> = chaos.admin.get("/v1/apps").await?;
    let mut claims: HashMap<String, (u64, f64)> = HashMap::new();
    for a in &apps {
        for d in chaos.admin.deployments(a.id.as_str()).await? {
            for i in &d.instance_list {
                let c = claims.entry(i.host.to_string()).or_default();
                c.0 += d.memory_mb;
                c.1 += d.cpus;
            }
        }
    }
    let mut wrong = Vec::new();
    for h in hosts {
        let (mem, cpu) = claims.get(h.name.as_str()).copied().unwrap_or_default();
        if h.memory_free_mb + mem != h.memory_mb || (h.cpus_free + cpu - h.cpus).abs() > 0.01 {
            wrong.push(format!(
                "{}: {} MiB free of {} with {} claimed; {:.2} CPUs free of {:.2} with {:.2} claimed",
                h.name, h.memory_free_mb, h.memory_mb, mem, h.cpus_free, h.cpus, cpu
            ));
        }
    }
    Ok(wrong)
}

async fn ports(chaos: &Chaos<'_>) -> Result<Vec<String>> {
    let mut seen = HashSet::new();
    let mut wrong = Vec::new();
    for i in chaos.all_instances().await? {
        if let Some(a) = &i.address {
            if !seen.insert(a.to_string()) {
                wrong.push(format!("{a} twice ({})", i.id));
            }
        }
    }
    Ok(wrong)
}

async fn registrations(
    chaos: &Chaos<'_>,
    zk: &str,
    read_auth: Option<&str>,
) -> Result<Vec<String>> {
    let mut cfg = ZkConfig::new(zk);
    let auth = read_auth
        .and_then(|a| a.split_once(':'))
        .map(|(u, p)| ZkAuth {
            user: u.to_owned(),
            password: p.to_owned(),
        });
    let writer = auth.clone().unwrap_or(ZkAuth {
        user: "chaos".into(),
        password: String::new(),
    });
    if let Some(a) = auth {
        cfg = cfg.with_auth(a);
    }
    let registry = Registry::connect(&cfg, AclPolicy::new(writer, None)).await?;
    let nodes = registry.instances().await?;
    let live: HashMap<String, caas_types::api::Instance> = chaos
        .all_instances()
        .await?
        .into_iter()
        .filter_map(|i| i.container_id.clone().map(|c| (c.to_string(), i)))
        .collect();
    let mut wrong = Vec::new();
    let mut seen = HashSet::new();
    for (app, version, container, endpoint) in &nodes {
        if !seen.insert(container.to_string()) {
            wrong.push(format!("{container} registered twice"));
        }
        match live.get(container.as_str()) {
            Some(i) if i.healthy && i.address.as_ref() == Some(endpoint) => {}
            Some(i) => wrong.push(format!(
                "{app}/{version}/{container}: instance {} not healthy at {endpoint}",
                i.id
            )),
            None => wrong.push(format!(
                "{app}/{version}/{container} ({endpoint}): no such instance"
            )),
        }
    }
    for (c, i) in &live {
        if i.healthy
            && i.state == caas_types::api::InstanceState::Running
            && i.address.is_some()
            && !seen.contains(c)
        {
            wrong.push(format!("{} ({c}) healthy but not registered", i.id));
        }
    }
    Ok(wrong)
}
