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
    out.push((
        "a workflow's steps on different hosts, piped stdout to stdin".to_owned(),
        workflow_across_hosts(chaos).await?,
    ));
    Ok(out)
}

/// `seq 1 200000 | tr 0-9 a-j | wc -l` as a workflow of Debian's busybox (the `busybox` app,
/// pushed by scripts/up): it succeeds, prints 200000, and its steps ran on at least two hosts.
async fn workflow_across_hosts(chaos: &Chaos<'_>) -> Result<Vec<String>> {
    use reqwest::Method;
    let api = chaos.admin.api(0).to_owned();
    let alive = chaos
        .admin
        .leader()
        .await
        .map_or(api, |l| chaos.admin.api(l).to_owned());
    // Created once; a second run finds it (409).
    let _ = chaos
        .admin
        .call::<serde_json::Value>(
            &alive,
            Method::POST,
            "/v1/apps",
            Some(&serde_json::json!({"id": "busybox"})),
        )
        .await;
    let body = serde_json::json!({"name": "chaos-pipe", "steps": [
        {"name": "gen", "app": "busybox", "version": "v1", "command": ["seq", "1", "200000"]},
        {"name": "map", "app": "busybox", "version": "v1", "command": ["tr", "0-9", "a-j"], "memory_mb": 64},
        {"name": "count", "app": "busybox", "version": "v1", "command": ["wc", "-l"]},
    ]});
    let created: serde_json::Value = chaos
        .admin
        .call(&alive, Method::POST, "/v1/workflows", Some(&body))
        .await?;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    let mut last = serde_json::Value::Null;
    for _ in 0..600 {
        last = chaos
            .admin
            .call(&alive, Method::GET, &format!("/v1/workflows/{id}"), None)
            .await?;
        if !matches!(
            last["state"].as_str(),
            Some("running" | "pending" | "starting")
        ) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut wrong = Vec::new();
    if last["state"] != "succeeded" {
        wrong.push(format!("workflow {id}: {last}"));
        return Ok(wrong);
    }
    let output = reqwest::Client::new()
        .get(format!("{alive}/v1/workflows/{id}/output"))
        .bearer_auth(chaos.admin.token())
        .send()
        .await?
        .text()
        .await?;
    if output.trim() != "200000" {
        wrong.push(format!(
            "workflow {id} printed {:?}, not 200000",
            output.trim()
        ));
    }
    let hosts: HashSet<&str> = last["steps"]
        .as_array()
        .map(|s| s.iter().filter_map(|st| st["host"].as_str()).collect())
        .unwrap_or_default();
    if hosts.len() < 2 {
        wrong.push(format!("workflow {id}: every step on {hosts:?}"));
    }
    Ok(wrong)
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
