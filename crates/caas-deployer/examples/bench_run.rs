//! Deploy latency benchmark: deployer `run` until `/_ping` answers, next to
//! `docker run -d -p` + the same poll, same image already on the host, interleaved (A B, B A, ...),
//! in the same run. Prints medians, min–max and the ratio; never fails on a threshold.
//!
//! `cargo run --release -p caas-deployer --example bench_run -- [rounds]` (default 9), with
//! `CAAS_DOCKER` and `CAAS_REGISTRY` from `source .caas/env`. Containers carry the label
//! `caas.managed=bench-deployer-{pid}` and are removed after each sample and at exit.

use anyhow::{bail, Context, Result};
use caas_deployer::{Deployer, DockerEndpoint, RunSpec};
use caas_types::{Cpus, Endpoint, Memory, Resources};
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HOST: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// Removes every container of the benchmark's namespace, also on early exit.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let filter = format!("label=caas.managed={}", self.0);
        if let Ok(out) = std::process::Command::new("docker")
            .args(["ps", "-aq", "--filter", &filter])
            .output()
        {
            let ids = String::from_utf8_lossy(&out.stdout).into_owned();
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let _ = std::process::Command::new("docker")
                    .args(["rm", "-f"])
                    .args(&ids)
                    .output();
            }
        }
    }
}

fn free_port() -> Result<u16> {
    for _ in 0..50 {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if TcpListener::bind((HOST, port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port")
}

/// One `GET /_ping`; true on a `pong`.
async fn ping(port: u16) -> bool {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect((HOST, port)).await.ok()?;
        s.write_all(b"GET /_ping HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf);
        Some(text.starts_with("HTTP/1.1 200") && text.trim_end().ends_with("pong"))
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// Polls `/_ping` every 2 ms until it answers (at most 30 s).
async fn wait_ping(port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if ping(port).await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    bail!("/_ping on port {port} never answered")
}

/// Deployer side: (run returned, ping answered) since start.
async fn deployer_sample(d: &Deployer, ns: &str, image: &str, i: usize) -> Result<(f64, f64)> {
    let port = free_port()?;
    let app = "bench".parse()?;
    let version = "v1".parse()?;
    let instance = format!("bench-d{i}").parse()?;
    let resources = Resources {
        memory: Memory::from_mib(128)?,
        cpus: Cpus::from_millis(500)?,
    };
    let mut spec = RunSpec::for_instance(
        ns,
        &app,
        &version,
        &instance,
        image.to_owned(),
        8080,
        Endpoint::new(HOST, port)?,
        resources,
    );
    spec.name = format!("{ns}-d{i}");
    let t0 = Instant::now();
    let c = d.run(&spec).await?;
    let ran = t0.elapsed().as_secs_f64();
    wait_ping(port).await?;
    let total = t0.elapsed().as_secs_f64();
    d.remove(&c.id).await?;
    Ok((ran, total))
}

/// Baseline: `docker run -d -p 127.0.0.2:{port}:8080` then the same poll.
async fn docker_sample(ns: &str, image: &str, i: usize) -> Result<(f64, f64)> {
    let port = free_port()?;
    let name = format!("{ns}-c{i}");
    let t0 = Instant::now();
    let out = tokio::process::Command::new("docker")
        .args([
            "run",
            "-d",
            "-p",
            &format!("{HOST}:{port}:8080"),
            "--name",
            &name,
        ])
        .args(["--label", &format!("caas.managed={ns}"), image])
        .output()
        .await?;
    let ran = t0.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("docker run: {}", String::from_utf8_lossy(&out.stderr));
    }
    wait_ping(port).await?;
    let total = t0.elapsed().as_secs_f64();
    tokio::process::Command::new("docker")
        .args(["rm", "-f", &name])
        .output()
        .await?;
    Ok((ran, total))
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn spread(v: &[f64]) -> (f64, f64) {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(0.0, f64::max);
    (min, max)
}

#[tokio::main]
async fn main() -> Result<()> {
    let rounds: usize = match std::env::args().nth(1) {
        Some(n) => n.parse().context("rounds must be a number")?,
        None => 9,
    };
    let docker_url = std::env::var("CAAS_DOCKER")
        .context("CAAS_DOCKER is not set: run `scripts/up && source .caas/env`")?;
    let registry = std::env::var("CAAS_REGISTRY")
        .context("CAAS_REGISTRY is not set: run `scripts/up && source .caas/env`")?;
    let image = format!("{registry}/hello:v1");
    let endpoint: DockerEndpoint = docker_url.parse()?;
    let d = Deployer::connect(&endpoint)?;
    d.ping().await.context("docker does not answer")?;
    if !d.image_present(&image).await? {
        let creds = caas_deployer::RegistryCredentials::from_env(&registry);
        d.pull_to_end(&image, creds.as_ref()).await?;
    }
    let ns = format!("bench-deployer-{}", std::process::id());
    let _cleanup = Cleanup(ns.clone());

    // Warm-up, one of each (page cache, engine caches, our connection setup).
    deployer_sample(&d, &ns, &image, 0).await?;
    docker_sample(&ns, &image, 0).await?;

    let (mut dep_run, mut dep_total, mut cli_run, mut cli_total) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 1..=rounds {
        // A B, then B A: neither side always goes first.
        let order = if i % 2 == 1 {
            [true, false]
        } else {
            [false, true]
        };
        for deployer_side in order {
            if deployer_side {
                let (r, t) = deployer_sample(&d, &ns, &image, i).await?;
                dep_run.push(r);
                dep_total.push(t);
            } else {
                let (r, t) = docker_sample(&ns, &image, i).await?;
                cli_run.push(r);
                cli_total.push(t);
            }
        }
        println!(
            "round {i:2}: deployer {:.3} s (run {:.3}) | docker run {:.3} s (cli {:.3})",
            dep_total[i - 1],
            dep_run[i - 1],
            cli_total[i - 1],
            cli_run[i - 1]
        );
    }
    let (dmin, dmax) = spread(&dep_total);
    let (cmin, cmax) = spread(&cli_total);
    println!("image {image}, {rounds} rounds interleaved, /_ping polled every 2 ms");
    println!(
        "deployer run → /_ping : median {:.3} s  (min {dmin:.3}, max {dmax:.3}; run() alone {:.3} s)",
        median(&dep_total),
        median(&dep_run)
    );
    println!(
        "docker run -d -p → /_ping : median {:.3} s  (min {cmin:.3}, max {cmax:.3}; CLI alone {:.3} s)",
        median(&cli_total),
        median(&cli_run)
    );
    println!(
        "ratio deployer / docker run (medians): {:.2}",
        median(&dep_total) / median(&cli_total)
    );
    Ok(())
}
