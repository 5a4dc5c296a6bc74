//! `caas-chaos`: faults under a steady load on the cluster `scripts/cluster` runs (issue 17).
//! In turn: kill -9 the leading scheduler in the middle of a deploy; kill -9 a ZooKeeper
//! follower, bring it back, then the ensemble's leader (quorum holds throughout); kill -9 a
//! gateway and bring it back; cut the power of an engine host and bring it back. Then the
//! invariants. Prints a table (fault, detection, recovery, requests ok/failed) and exits
//! non-zero when a request failed, a fault was not recovered from, or an invariant broke.
//! `scripts/chaos` runs it with the cluster's environment.

mod admin;
mod checks;
mod cluster;
mod faults;
mod load;

use anyhow::{Context, Result};
use clap::Parser;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Faults under load on a scripts/cluster cluster.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The gateways' URLs, space-separated.
    #[arg(long, env = "CAAS_GATEWAYS")]
    gateways: String,
    /// The schedulers' admin API URLs, space-separated.
    #[arg(long, env = "CAAS_APIS")]
    apis: String,
    /// The operator token.
    #[arg(long, env = "CAAS_TOKEN", hide_env_values = true)]
    token: String,
    /// The gateways' domain.
    #[arg(long, env = "CAAS_DOMAIN", default_value = "caas.localhost")]
    domain: String,
    /// The ensemble's connect string.
    #[arg(long, env = "CAAS_ZK")]
    zk: String,
    /// The gateways' read-only ZooKeeper credential (`user:password`).
    #[arg(long, env = "CAAS_ZK_READ_AUTH", hide_env_values = true)]
    zk_read_auth: Option<String>,
    /// The engine hosts, `name=url` space-separated.
    #[arg(long, env = "CAAS_CLUSTER_ENGINES")]
    engines: String,
    /// The platform's client certificate directory for the engines.
    #[arg(long, env = "CAAS_DOCKER_CERT_PATH")]
    cert_path: PathBuf,
    /// `scripts/cluster`.
    #[arg(long, default_value = "scripts/cluster")]
    cluster_script: PathBuf,
    /// Where scripts/cluster's output goes.
    #[arg(long, default_value = ".caas/logs/chaos-cluster.log")]
    cluster_log: PathBuf,
    /// The app under load (deployed by scripts/cluster).
    #[arg(long, default_value = "hello")]
    app: String,
    /// Its instance count.
    #[arg(long, default_value_t = 3)]
    instances: u32,
    /// Requests per second.
    #[arg(long, default_value_t = 50)]
    rate: u32,
    /// Seconds of load before and after each fault.
    #[arg(long, default_value_t = 5)]
    settle_secs: u64,
    /// The schedulers' ZooKeeper session timeout, ms (for the table's note).
    #[arg(long, env = "CAAS_CLUSTER_ZK_SESSION_MS", default_value_t = 6000)]
    session_ms: u64,
    /// The containers' namespace label.
    #[arg(long, env = "CAAS_NAMESPACE", default_value = "caas")]
    namespace: String,
    /// Only these faults (comma-separated: scheduler, zk-follower, zk-leader, gateway, host).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "scheduler,zk-follower,zk-leader,gateway,host"
    )]
    faults: Vec<String>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let split = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    let admin = admin::Admin::new(split(&args.apis), args.token.clone())?;
    let cluster = cluster::Cluster::new(
        args.cluster_script.clone(),
        args.cluster_log.clone(),
        &args.zk,
        &args.engines,
        args.cert_path.clone(),
    )?;
    let load = load::Load::start(load::Target {
        gateways: split(&args.gateways),
        host: format!("{}.{}", args.app, args.domain),
        rate: args.rate,
    })?;
    let started = Instant::now();
    let chaos = faults::Chaos {
        admin: &admin,
        cluster: &cluster,
        load: &load,
        app: args.app.clone(),
        instances: args.instances,
        session: Duration::from_millis(args.session_ms),
        settle: Duration::from_secs(args.settle_secs),
    };
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for f in &args.faults {
        let row = match f.as_str() {
            "scheduler" => chaos.scheduler_leader_mid_deploy().await,
            "zk-follower" => chaos.zookeeper("follower").await,
            "zk-leader" => chaos.zookeeper("leader").await,
            "gateway" => chaos.gateway(1).await,
            "host" => chaos.host(&args.namespace).await,
            other => Err(anyhow::anyhow!("unknown fault {other}")),
        };
        match row {
            Ok(r) => rows.push(r),
            Err(e) => {
                eprintln!("chaos: {f}: {e:#}");
                errors.push(format!("{f}: {e:#}"));
                // Whatever the fault left down comes back before the next one.
                if let Err(e) = cluster.up().await {
                    errors.push(format!("scripts/cluster up after {f}: {e:#}"));
                }
            }
        }
    }
    let total = load.count(started, Instant::now());
    let checks = checks::run(
        &chaos,
        &args.namespace,
        &args.zk,
        args.zk_read_auth.as_deref(),
    )
    .await
    .context("checking the invariants")?;
    load.stop().await;

    println!();
    println!("| fault | detection | recovery | requests ok | failed | note |");
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.fault,
            faults::secs(r.detection),
            faults::secs(r.recovery),
            r.counts.ok,
            r.counts.failed,
            r.note
        );
    }
    println!(
        "\nwhole run: {} requests ok, {} failed ({} moved to the other gateway), {} rps through {} gateways, {:.0} s",
        total.ok,
        total.failed,
        total.moved,
        args.rate,
        split(&args.gateways).len(),
        started.elapsed().as_secs_f64()
    );
    for e in &total.errors {
        println!("  failed: {e}");
    }
    let mut broken = 0;
    for (name, wrong) in &checks {
        if wrong.is_empty() {
            println!("ok: {name}");
        } else {
            broken += 1;
            println!("BROKEN: {name}: {}", wrong.join("; "));
        }
    }
    for e in &errors {
        println!("FAILED: {e}");
    }
    if total.failed > 0 || broken > 0 || !errors.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}
