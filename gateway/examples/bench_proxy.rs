//! The gateway library as `scripts/bench-gateway` runs it: the same code as `caas-gateway`, fed
//! a fixed route snapshot instead of ZooKeeper, so the benchmark needs no registry.
//!
//! Usage: `bench_proxy LISTEN ADMIN THREADS ROUTES BACKEND...` — routes `app0` … `app{ROUTES-1}`
//! (under `caas.localhost`), each to all the backends.

use caas_gateway::{Config, Http1Engine, RouteSnapshot};
use caas_registry::RouteEntry;
use std::sync::Arc;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(
        args.len() >= 5,
        "usage: bench_proxy LISTEN ADMIN THREADS ROUTES BACKEND..."
    );
    let mut config = Config::new();
    // CAAS_GATEWAY_HTTP1=hyper benchmarks the general path instead of the fast path.
    if let Ok(engine) = std::env::var("CAAS_GATEWAY_HTTP1") {
        config.http1 = match engine.as_str() {
            "hyper" => Http1Engine::Hyper,
            "own" => Http1Engine::Own,
            other => anyhow::bail!("CAAS_GATEWAY_HTTP1 is own or hyper, not {other:?}"),
        };
    }
    config.listen = args[0].parse()?;
    config.admin_listen = args[1].parse()?;
    let threads: usize = args[2].parse()?;
    let routes: usize = args[3].parse()?;
    let mut snap = RouteSnapshot::default();
    for i in 0..routes {
        let entries = args[4..]
            .iter()
            .enumerate()
            .map(|(j, b)| -> anyhow::Result<RouteEntry> {
                Ok(RouteEntry {
                    version: "v1".parse()?,
                    container: format!("{:012x}{:04x}", i, j).parse()?,
                    endpoint: b.parse()?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        snap.apps.insert(format!("app{i}").parse()?, entries);
    }
    snap.generation = 1;
    // One thread: a single-threaded runtime, the same event-loop model as one nginx worker
    // (`caas-gateway --threads 1` runs the same way).
    let rt = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    rt.block_on(async move {
        let (_tx, rx) = tokio::sync::watch::channel(Arc::new(snap));
        caas_gateway::run(config, rx, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
    })?;
    Ok(())
}
