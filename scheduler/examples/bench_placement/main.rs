//! Placement benchmark: optimistic placement (the scheduler's) against the pessimistic
//! `SELECT ... FOR UPDATE` baseline, in the same run, on 1,000 and 10,000 simulated hosts (rows
//! only, no containers) with 1, 2, 4 and 8 concurrent schedulers (each with its own pool, as
//! separate processes would have). Prints placements/s, conflict rate and p99 latency per run,
//! medians with the min–max spread over interleaved rounds, the ratio to the baseline, and
//! checks the placement invariant after every run. Never fails on a threshold.
//!
//! Run it with `scripts/bench-scheduler` (which builds in release mode and sources the env).
//! The baseline is `pessimistic.rs`, beside this file: it is not part of the scheduler.

mod pessimistic;

use anyhow::{bail, Context, Result};
use caas_scheduler::placement::{self, MetricsSnapshot, PlacementRequest};
use caas_scheduler::store::{NewDeployment, Store};
use caas_types::{Cpus, HealthPolicy, Memory, PlacementPolicy, Resources};
use clap::Parser;
use sqlx::mysql::MySqlPoolOptions;
use sqlx::{Executor, Row};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Placement benchmark against MariaDB.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// MySQL URL without a database; the bench creates and drops `caas_bench_<random>`.
    #[arg(long, env = "CAAS_MYSQL_ADMIN_URL")]
    admin_url: String,
    /// Simulated host counts.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    hosts: Vec<u32>,
    /// Concurrent scheduler counts.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    schedulers: Vec<usize>,
    /// Placements per run (split among the schedulers).
    #[arg(long, default_value_t = 2000)]
    placements: usize,
    /// Interleaved rounds of (optimistic, pessimistic) per configuration.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Upper bound on one run's duration, seconds (a run stops early when it is reached).
    #[arg(long, default_value_t = 30)]
    max_run_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Optimistic,
    Pessimistic,
}

#[derive(Debug, Clone, Copy)]
struct RunResult {
    placed: usize,
    per_sec: f64,
    conflict_rate: f64,
    p50: Duration,
    p99: Duration,
    failures: usize,
    cpu_secs: f64,
}

/// CPU time (user + system) of this process, seconds, from /proc (0 where unavailable).
fn process_cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let mid = v.get(v.len() / 2).copied().unwrap_or(0.0);
    (
        mid,
        v.first().copied().unwrap_or(0.0),
        v.last().copied().unwrap_or(0.0),
    )
}

async fn load_hosts(store: &Store, n: u32) -> Result<()> {
    // 64 GiB, 32 cores, 300 ports: 128 instances of 256 MiB / 0.25 CPU each.
    let mem: i64 = 64 << 30;
    let mut id = 0;
    while id < n {
        let batch = (n - id).min(1000);
        let values: Vec<String> = (id..id + batch)
            .map(|i| {
                format!(
                    "('sim-{i:05}', '10.{}.{}.{}', 'tcp://sim:2375', '{{}}', {mem}, {mem}, \
                     32000, 32000, 25700, 25999, 'ready', 0)",
                    (i >> 16) & 255,
                    (i >> 8) & 255,
                    i & 255
                )
            })
            .collect();
        store
            .pool()
            .execute(
                format!(
                    "INSERT INTO hosts (name, address, docker, labels, mem_total, mem_free, \
                     cpu_total, cpu_free, port_first, port_last, state, version) VALUES {}",
                    values.join(",")
                )
                .as_str(),
            )
            .await
            .context("loading hosts")?;
        id += batch;
    }
    Ok(())
}

async fn reset(store: &Store) -> Result<()> {
    store.pool().execute("DELETE FROM instances").await?;
    store
        .pool()
        .execute(
            "UPDATE hosts SET mem_free = mem_total, cpu_free = cpu_total, version = version + 1",
        )
        .await?;
    Ok(())
}

/// The placement invariant: per host, claims within capacity, free = capacity - claims, no
/// port twice. Returns the number of hosts violating it.
async fn invariant_violations(store: &Store) -> Result<i64> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS bad FROM ( \
           SELECT h.id FROM hosts h LEFT JOIN instances i ON i.host_id = h.id GROUP BY h.id \
           HAVING COALESCE(SUM(i.memory), 0) > MAX(h.mem_total) \
               OR COALESCE(SUM(i.cpu), 0) > MAX(h.cpu_total) \
               OR MAX(h.mem_free) <> MAX(h.mem_total) - COALESCE(SUM(i.memory), 0) \
               OR MAX(h.cpu_free) <> MAX(h.cpu_total) - COALESCE(SUM(i.cpu), 0) \
               OR COUNT(i.id) <> COUNT(DISTINCT i.host_port)) bad_hosts",
    )
    .fetch_one(store.pool())
    .await?;
    Ok(row.try_get("bad")?)
}

async fn run(
    url: &str,
    req: &PlacementRequest,
    mode: Mode,
    schedulers: usize,
    total: usize,
    max: Duration,
) -> Result<RunResult> {
    let mut stores = Vec::with_capacity(schedulers);
    for _ in 0..schedulers {
        // Two connections: a scheduler places one instance at a time.
        stores.push(Store::connect(url, 2).await?);
    }
    let per = total.div_ceil(schedulers);
    let cpu0 = process_cpu_secs();
    let start = Instant::now();
    let deadline = start + max;
    let mut tasks = tokio::task::JoinSet::new();
    for store in &stores {
        let store = store.clone();
        let req = req.clone();
        tasks.spawn(async move {
            let mut lat = Vec::with_capacity(per);
            let mut failures = 0;
            for _ in 0..per {
                if Instant::now() > deadline {
                    break;
                }
                let t = Instant::now();
                let r = match mode {
                    Mode::Optimistic => placement::place(&store, &req).await,
                    Mode::Pessimistic => pessimistic::place_pessimistic(&store, &req).await,
                };
                match r {
                    Ok(_) => lat.push(t.elapsed()),
                    Err(_) => failures += 1,
                }
            }
            (lat, failures)
        });
    }
    let mut lat = Vec::with_capacity(total);
    let mut failures = 0;
    while let Some(r) = tasks.join_next().await {
        let (l, f) = r?;
        lat.extend(l);
        failures += f;
    }
    let elapsed = start.elapsed();
    let cpu_secs = process_cpu_secs() - cpu0;
    let mut m = MetricsSnapshot::default();
    for s in &stores {
        let x = s.metrics().snapshot();
        m.placements += x.placements;
        m.conflicts += x.conflicts;
        m.retries += x.retries;
        s.pool().close().await;
    }
    lat.sort();
    let attempts = m.placements + m.conflicts;
    Ok(RunResult {
        placed: lat.len(),
        per_sec: lat.len() as f64 / elapsed.as_secs_f64(),
        conflict_rate: if attempts == 0 {
            0.0
        } else {
            m.conflicts as f64 / attempts as f64
        },
        p50: percentile(&lat, 0.50),
        p99: percentile(&lat, 0.99),
        failures,
        cpu_secs,
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn bench_hosts(args: &Args, hosts: u32) -> Result<()> {
    let admin = args.admin_url.trim_end_matches('/');
    let name = format!("caas_bench_{:08x}", std::process::id() ^ hosts);
    let admin_pool = MySqlPoolOptions::new()
        .max_connections(1)
        .connect(admin)
        .await
        .context("connecting with CAAS_MYSQL_ADMIN_URL (start the services with scripts/up)")?;
    admin_pool
        .execute(format!("DROP DATABASE IF EXISTS `{name}`").as_str())
        .await?;
    admin_pool
        .execute(format!("CREATE DATABASE `{name}`").as_str())
        .await?;
    let url = format!("{admin}/{name}");
    let outcome = bench_in(args, hosts, &url).await;
    admin_pool
        .execute(format!("DROP DATABASE IF EXISTS `{name}`").as_str())
        .await?;
    admin_pool.close().await;
    outcome
}

async fn bench_in(args: &Args, hosts: u32, url: &str) -> Result<()> {
    let store = Store::connect(url, 4).await?;
    let t = Instant::now();
    load_hosts(&store, hosts).await?;
    println!(
        "\n## {hosts} hosts (loaded in {:.1} s); {} placements per run of 256 MiB / 0.25 CPU",
        t.elapsed().as_secs_f64(),
        args.placements
    );
    let app = "bench".parse()?;
    store.create_app(&app, None, false).await?;
    let d = store
        .create_deployment(&NewDeployment {
            app,
            version: "v1".parse()?,
            image: "127.0.0.1:5000/bench:v1".into(),
            resources: Resources {
                memory: Memory::from_mib(256)?,
                cpus: Cpus::from_millis(250)?,
            },
            port: Some(8080),
            command: None,
            env: BTreeMap::new(),
            placement: PlacementPolicy::default(),
            health: HealthPolicy::default(),
            instances: 1,
            stop_timeout_s: None,
            recycle_after_s: None,
            autoscale: None,
            user: None,
            read_only: false,
        })
        .await?;
    let req = PlacementRequest::for_deployment(&d, 1);
    println!(
        "{:>5} {:>11} | {:>9} {:>9} {:>8} {:>8} {:>6} {:>5} | {:>9} {:>8} {:>8} | {:>6} invariant",
        "sched",
        "mode",
        "place/s",
        "spread",
        "p50 ms",
        "p99 ms",
        "confl",
        "fail",
        "bench cpu",
        "pess/s",
        "p99 ms",
        "ratio",
    );
    let max = Duration::from_secs(args.max_run_secs);
    for &s in &args.schedulers {
        let mut results: BTreeMap<&str, Vec<RunResult>> = BTreeMap::new();
        let mut violations = 0;
        // Warm-up (caches, connections), not recorded.
        reset(&store).await?;
        run(url, &req, Mode::Optimistic, s, args.placements / 10, max).await?;
        for _ in 0..args.rounds {
            for mode in [Mode::Optimistic, Mode::Pessimistic] {
                reset(&store).await?;
                let r = run(url, &req, mode, s, args.placements, max).await?;
                violations += invariant_violations(&store).await?;
                let placed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM instances")
                    .fetch_one(store.pool())
                    .await?;
                if placed != i64::try_from(r.placed)? {
                    bail!("{placed} instance rows after {} placements", r.placed);
                }
                let key = if mode == Mode::Optimistic {
                    "opt"
                } else {
                    "pess"
                };
                results.entry(key).or_default().push(r);
            }
        }
        let opt = results.remove("opt").unwrap_or_default();
        let pess = results.remove("pess").unwrap_or_default();
        let (o_rate, o_min, o_max) = median(opt.iter().map(|r| r.per_sec).collect());
        let (p_rate, _, _) = median(pess.iter().map(|r| r.per_sec).collect());
        let (o_p50, _, _) = median(opt.iter().map(|r| ms(r.p50)).collect());
        let (o_p99, _, _) = median(opt.iter().map(|r| ms(r.p99)).collect());
        let (p_p99, _, _) = median(pess.iter().map(|r| ms(r.p99)).collect());
        let (conf, _, _) = median(opt.iter().map(|r| r.conflict_rate * 100.0).collect());
        let fails: usize = opt.iter().chain(&pess).map(|r| r.failures).sum();
        let (cpu, _, _) = median(opt.iter().map(|r| r.cpu_secs).collect());
        println!(
            "{s:>5} {:>11} | {o_rate:>9.0} {:>9} {o_p50:>8.2} {o_p99:>8.2} {conf:>5.2}% {fails:>5} | {cpu:>8.2}s {p_rate:>8.0} {p_p99:>8.2} | {:>5.2}x {}",
            "optimistic",
            format!("{o_min:.0}-{o_max:.0}"),
            if p_rate > 0.0 { o_rate / p_rate } else { 0.0 },
            if violations == 0 { "ok" } else { "VIOLATED" }
        );
        let spread = if o_rate > 0.0 {
            (o_max - o_min) / o_rate
        } else {
            0.0
        };
        if spread > 0.2 {
            println!(
                "      (optimistic spread {:.0}% > 20%: the machine was noisy)",
                spread * 100.0
            );
        }
    }
    store.pool().close().await;
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    println!(
        "placement benchmark: optimistic (version check, random window of {} hosts, pick among \
         the best {}) vs pessimistic (same window locked with SELECT ... FOR UPDATE)",
        placement::WINDOW,
        placement::PICK_AMONG
    );
    println!(
        "columns: medians of {} interleaved rounds; spread = min-max placements/s; confl = \
         optimistic claims that lost their version check; ratio = optimistic / pessimistic",
        args.rounds
    );
    for &h in &args.hosts {
        bench_hosts(&args, h).await?;
    }
    Ok(())
}
