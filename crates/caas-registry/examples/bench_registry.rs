//! Registry benchmark (run by `scripts/bench-registry`): write→snapshot propagation delay of the
//! route cache against a raw ZooKeeper watch in the same run, and snapshot lookup cost with
//! 10,000 instances across 1,000 apps against a one-app snapshot. Prints figures; never fails
//! on a threshold. Works in its own chroot, removed at the end.

#![allow(clippy::unwrap_used)]

use caas_registry::{AclPolicy, Registry, RouteCache, RouteSnapshot, ZkAuth, ZkConfig};
use caas_types::{AppId, ContainerId, Endpoint, Version};
use futures::StreamExt as _;
use std::hint::black_box;
use std::time::{Duration, Instant};
use zookeeper_client::{Acl, AuthId, Client, CreateMode, Permission};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const CHANGES: usize = 1000;
const RAW_CHANGES: usize = 500;
const RUNS: usize = 3;
const APPS: usize = 1000;
const PER_APP: usize = 10;
const LOOKUPS: usize = 5_000_000;

fn var(name: &str) -> Result<String, BoxError> {
    std::env::var(name)
        .map_err(|_| format!("{name} is not set: run `scripts/up && source .caas/env`").into())
}

async fn raw(connect: &str, auth: &ZkAuth) -> Result<Client, BoxError> {
    Ok(Client::connector()
        .with_auth(
            "digest",
            format!("{}:{}", auth.user, auth.password).as_bytes(),
        )
        .connect(connect)
        .await?)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

struct Stats {
    p50: Duration,
    p99: Duration,
    max: Duration,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    Stats {
        p50: pct(&v, 0.5),
        p99: pct(&v, 0.99),
        max: *v.last().unwrap_or(&Duration::ZERO),
    }
}

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// Baseline: a raw client sets data on a node another raw session watches; time from issuing
/// the write to the watch event (ZooKeeper's own floor on loopback).
async fn raw_watch_run(
    writer: &Client,
    watcher: &Client,
    path: &str,
) -> Result<Vec<Duration>, BoxError> {
    let mut out = Vec::with_capacity(RAW_CHANGES);
    for i in 0..RAW_CHANGES {
        let (_, _, w) = watcher.get_and_watch_data(path).await?;
        let t0 = Instant::now();
        let write = writer.set_data(path, format!("{i}").as_bytes(), None);
        let (res, _ev) = tokio::join!(write, w.changed());
        res?;
        out.push(t0.elapsed());
    }
    Ok(out)
}

/// caas: the same single ZooKeeper writes as the baseline (create, set, delete of an address
/// node, issued by a raw platform session); time from issuing the write to the first published
/// snapshot that shows it.
async fn cache_raw_run(
    writer: &Client,
    reg: &Registry,
    cache: &RouteCache,
    run: usize,
    acls: &[Acl],
) -> Result<Vec<Duration>, BoxError> {
    let app: AppId = format!("bench-raw-{run}").parse()?;
    let version: Version = "v1".parse()?;
    // A sibling that stays, so the version node is never pruned under the measured writes.
    let keep: ContainerId = "ffffffffffff".parse()?;
    reg.register(&app, &version, &keep, "127.0.0.9:9".parse()?)
        .await?;
    let opts = CreateMode::Persistent.with_acls(zookeeper_client::Acls::new(acls));
    let mut rx = cache.subscribe();
    let mut delays = Vec::with_capacity(CHANGES);
    for i in 0..CHANGES {
        let container: ContainerId = format!("{:012x}", i / 3 + 1).parse()?;
        let path = caas_types::zk::instance(&app, &version, &container);
        let endpoint: Endpoint = format!("127.0.0.2:{}", 20000 + (i % 3000) as u16).parse()?;
        let data = endpoint.to_string();
        rx.borrow_and_update();
        let t0 = Instant::now();
        let expect = match i % 3 {
            0 => {
                writer.create(&path, data.as_bytes(), &opts).await?;
                Some(endpoint)
            }
            1 => {
                writer.set_data(&path, data.as_bytes(), None).await?;
                Some(endpoint)
            }
            _ => {
                writer.delete(&path, None).await?;
                None
            }
        };
        loop {
            let seen = {
                let snap = rx.borrow_and_update();
                snap.endpoints(&app)
                    .unwrap_or_default()
                    .iter()
                    .find(|e| e.container == container)
                    .map(|e| e.endpoint)
                    == expect
            };
            if seen {
                break;
            }
            tokio::time::timeout(Duration::from_secs(10), rx.changed()).await??;
        }
        delays.push(t0.elapsed());
    }
    reg.deregister(&app, &version, &keep).await?;
    Ok(delays)
}

/// For information: register / move / deregister through the Registry API; time from issuing the write to a
/// published snapshot that shows it (also records the write's own acknowledgement time).
async fn cache_run(
    reg: &Registry,
    cache: &RouteCache,
    run: usize,
) -> Result<(Vec<Duration>, Vec<Duration>), BoxError> {
    let app: AppId = format!("bench-prop-{run}").parse()?;
    let version: Version = "v1".parse()?;
    let mut rx = cache.subscribe();
    let mut delays = Vec::with_capacity(CHANGES);
    let mut acks = Vec::with_capacity(CHANGES);
    for i in 0..CHANGES {
        let container: ContainerId = format!("{:012x}", i / 3 + 1).parse()?;
        let port = 20000 + (i % 3000) as u16;
        let endpoint: Endpoint = format!("127.0.0.2:{port}").parse()?;
        let expect: Option<Endpoint> = match i % 3 {
            0 | 1 => Some(endpoint),
            _ => None,
        };
        rx.borrow_and_update();
        let t0 = Instant::now();
        match expect {
            Some(e) => reg.register(&app, &version, &container, e).await?,
            None => reg.deregister(&app, &version, &container).await?,
        }
        acks.push(t0.elapsed());
        loop {
            let seen = {
                let snap = rx.borrow_and_update();
                let found = snap
                    .endpoints(&app)
                    .unwrap_or_default()
                    .iter()
                    .find(|e| e.container == container)
                    .map(|e| e.endpoint);
                found == expect
            };
            if seen {
                break;
            }
            tokio::time::timeout(Duration::from_secs(10), rx.changed()).await??;
        }
        delays.push(t0.elapsed());
    }
    Ok((delays, acks))
}

#[allow(clippy::too_many_arguments)]
async fn propagation(
    label: &str,
    reg: &Registry,
    cache: &RouteCache,
    writer: &Client,
    watcher: &Client,
    node: &str,
    base: usize,
    acls: &[Acl],
) -> Result<(), BoxError> {
    // Warm-up of both sides.
    let _ = raw_watch_run(writer, watcher, node).await?;
    let _ = cache_raw_run(writer, reg, cache, base + 99, acls).await?;
    let mut caas_p50 = Vec::new();
    let mut caas_p99 = Vec::new();
    let mut raw_p50 = Vec::new();
    let mut raw_p99 = Vec::new();
    println!("\n## propagation, {label}");
    println!("| run | side | changes | p50 | p99 | max |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for run in 0..RUNS {
        let d = cache_raw_run(writer, reg, cache, base + run, acls).await?;
        let n = d.len();
        let s = stats(d);
        println!(
            "| {run} | caas cache (write -> snapshot) | {n} | {} | {} | {} |",
            ms(s.p50),
            ms(s.p99),
            ms(s.max)
        );
        caas_p50.push(s.p50.as_secs_f64() * 1e3);
        caas_p99.push(s.p99.as_secs_f64() * 1e3);
        let r = raw_watch_run(writer, watcher, node).await?;
        let n = r.len();
        let s = stats(r);
        println!(
            "| {run} | raw watch (write -> event) | {n} | {} | {} | {} |",
            ms(s.p50),
            ms(s.p99),
            ms(s.max)
        );
        raw_p50.push(s.p50.as_secs_f64() * 1e3);
        raw_p99.push(s.p99.as_secs_f64() * 1e3);
    }
    let (d, acks) = cache_run(reg, cache, base + 50).await?;
    let n = d.len();
    let (s, a) = (stats(d), stats(acks));
    println!(
        "| - | via Registry API (register/move/deregister incl. parent create/prune) | {n} | {} | {} | {} |",
        ms(s.p50),
        ms(s.p99),
        ms(s.max)
    );
    println!(
        "  (Registry API write acknowledged after p50 {}, p99 {})",
        ms(a.p50),
        ms(a.p99)
    );
    let (c50, c50lo, c50hi) = median(caas_p50);
    let (c99, c99lo, c99hi) = median(caas_p99);
    let (r50, r50lo, r50hi) = median(raw_p50);
    let (r99, r99lo, r99hi) = median(raw_p99);
    println!("\nmedians over {RUNS} runs ({label}):");
    println!("  caas cache p50 {c50:.3} ms [{c50lo:.3}-{c50hi:.3}], p99 {c99:.3} ms [{c99lo:.3}-{c99hi:.3}]");
    println!("  raw watch  p50 {r50:.3} ms [{r50lo:.3}-{r50hi:.3}], p99 {r99:.3} ms [{r99lo:.3}-{r99hi:.3}]");
    println!(
        "  ratio caas/raw: p50 {:.2}x, p99 {:.2}x",
        c50 / r50,
        c99 / r99
    );
    Ok(())
}

fn lookup_ns(snap: &RouteSnapshot, apps: &[AppId]) -> f64 {
    let t0 = Instant::now();
    let mut hits = 0usize;
    for i in 0..LOOKUPS {
        let app = &apps[i % apps.len()];
        if let Some(e) = black_box(snap).endpoints(black_box(app)) {
            hits += e.len();
        }
    }
    black_box(hits);
    t0.elapsed().as_nanos() as f64 / LOOKUPS as f64
}

fn load_lookup_ns(cache: &RouteCache, apps: &[AppId]) -> f64 {
    let t0 = Instant::now();
    let mut hits = 0usize;
    for i in 0..LOOKUPS {
        let app = &apps[i % apps.len()];
        let snap = cache.snapshot();
        if let Some(e) = snap.endpoints(black_box(app)) {
            hits += e.len();
        }
    }
    black_box(hits);
    t0.elapsed().as_nanos() as f64 / LOOKUPS as f64
}

async fn bench(
    connect: &str,
    root: &str,
    platform: &ZkAuth,
    reader: &ZkAuth,
) -> Result<(), BoxError> {
    let cfg = |auth: &ZkAuth| ZkConfig {
        connect: connect.to_owned(),
        chroot: Some(root.to_owned()),
        auth: Some(auth.clone()),
        session_timeout: Duration::from_secs(6),
    };
    let reg = Registry::connect(
        &cfg(platform),
        AclPolicy::new(platform.clone(), Some(reader.clone())),
    )
    .await?;
    reg.ensure_layout().await?;
    let cache = RouteCache::start(&cfg(reader)).await?;
    // Baseline node and two raw sessions (writer, watcher) in the same chroot.
    let writer = raw(connect, platform)
        .await?
        .chroot(root.to_owned())
        .map_err(|_| "chroot")?;
    let watcher = raw(connect, reader)
        .await?
        .chroot(root.to_owned())
        .map_err(|_| "chroot")?;
    let node = "/bench-baseline";
    let acls = [
        Acl::new(
            Permission::ALL,
            AuthId::new("digest", &platform.digest_id()),
        ),
        Acl::new(Permission::READ, AuthId::new("digest", &reader.digest_id())),
    ];
    writer
        .create(
            node,
            b"0",
            &CreateMode::Persistent.with_acls(zookeeper_client::Acls::new(&acls)),
        )
        .await?;

    propagation(
        "empty tree",
        &reg,
        &cache,
        &writer,
        &watcher,
        node,
        0,
        &acls,
    )
    .await?;

    // Populate 10,000 instances across 1,000 apps, 64 writes in flight.
    let t0 = Instant::now();
    let version: Version = "v1".parse()?;
    let items: Vec<(AppId, ContainerId, Endpoint)> = (0..APPS * PER_APP)
        .map(|i| {
            let app: AppId = format!("app{:04}", i / PER_APP).parse().unwrap();
            let c: ContainerId = format!("{:012x}", i + 1).parse().unwrap();
            let e: Endpoint = format!(
                "127.0.{}.{}:{}",
                (i / 250) % 250 + 1,
                i % 250 + 1,
                25700 + (i % 300)
            )
            .parse()
            .unwrap();
            (app, c, e)
        })
        .collect();
    let results: Vec<_> = futures::stream::iter(
        items
            .iter()
            .map(|(a, c, e)| reg.register(a, &version, c, *e)),
    )
    .buffer_unordered(64)
    .collect()
    .await;
    for r in results {
        r?;
    }
    let wrote = t0.elapsed();
    let mut rx = cache.subscribe();
    loop {
        let n: usize = rx.borrow_and_update().apps.values().map(Vec::len).sum();
        if n >= APPS * PER_APP {
            break;
        }
        tokio::time::timeout(Duration::from_secs(30), rx.changed()).await??;
    }
    println!("\npopulated {} instances across {APPS} apps: written in {:.2} s, in the cache after {:.2} s", APPS * PER_APP, wrote.as_secs_f64(), t0.elapsed().as_secs_f64());
    let t1 = Instant::now();
    let cold = RouteCache::start(&cfg(reader)).await?;
    println!(
        "cold start of a second cache (full read of 10,000 instances): {:.1} ms",
        t1.elapsed().as_secs_f64() * 1e3
    );
    drop(cold);

    propagation(
        "10,000 instances present",
        &reg,
        &cache,
        &writer,
        &watcher,
        node,
        10,
        &acls,
    )
    .await?;

    // Lookups.
    let apps: Vec<AppId> = (0..APPS)
        .map(|i| format!("app{i:04}").parse().unwrap())
        .collect();
    let big = cache.snapshot();
    let one_app: AppId = "app0000".parse()?;
    let small = RouteSnapshot {
        apps: [(
            one_app.clone(),
            big.apps.get(&one_app).cloned().unwrap_or_default(),
        )]
        .into_iter()
        .collect(),
        ..RouteSnapshot::default()
    };
    let one = vec![one_app];
    let _ = lookup_ns(&big, &apps);
    let _ = lookup_ns(&small, &one);
    let (mut b, mut s, mut l) = (Vec::new(), Vec::new(), Vec::new());
    println!("\n## lookup ({LOOKUPS} lookups per run)");
    println!("| run | 10k inst / 1,000 apps, held snapshot | 1 app, held snapshot | 10k: cache.snapshot() + lookup |");
    println!("| --- | --- | --- | --- |");
    for run in 0..RUNS {
        let x = lookup_ns(&big, &apps);
        let y = lookup_ns(&small, &one);
        let z = load_lookup_ns(&cache, &apps);
        println!("| {run} | {x:.1} ns | {y:.1} ns | {z:.1} ns |");
        b.push(x);
        s.push(y);
        l.push(z);
    }
    let (bm, blo, bhi) = median(b);
    let (sm, slo, shi) = median(s);
    let (lm, llo, lhi) = median(l);
    println!("\nmedians: 10k/1,000 apps {bm:.1} ns [{blo:.1}-{bhi:.1}], 1 app {sm:.1} ns [{slo:.1}-{shi:.1}], ratio {:.2}x; with cache.snapshot() load {lm:.1} ns [{llo:.1}-{lhi:.1}]", bm / sm);
    drop(big);
    Ok(())
}

async fn delete_recursive(client: &Client, path: &str) -> Result<(), BoxError> {
    let children = match client.list_children(path).await {
        Ok(c) => c,
        Err(zookeeper_client::Error::NoNode) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let futs = children.iter().map(|c| {
        let child = format!("{path}/{c}");
        async move { Box::pin(delete_recursive(client, &child)).await }
    });
    for r in futures::future::join_all(futs).await {
        r?;
    }
    match client.delete(path, None).await {
        Ok(()) | Err(zookeeper_client::Error::NoNode) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let connect = var("CAAS_ZK")?;
    let platform: ZkAuth = var("CAAS_ZK_AUTH")?.parse()?;
    let reader: ZkAuth = var("CAAS_ZK_READ_AUTH")?.parse()?;
    let superuser: ZkAuth = var("CAAS_ZK_SUPER_AUTH")?.parse()?;
    let root = format!("/caas-bench-{}", std::process::id());
    let admin = raw(&connect, &superuser).await?;
    let acls = [
        Acl::new(
            Permission::ALL,
            AuthId::new("digest", &platform.digest_id()),
        ),
        Acl::new(Permission::READ, AuthId::new("digest", &reader.digest_id())),
    ];
    admin
        .create(
            &root,
            b"",
            &CreateMode::Persistent.with_acls(zookeeper_client::Acls::new(&acls)),
        )
        .await?;
    println!("caas-registry benchmark, chroot {root}, ZooKeeper {connect}");
    let result = bench(&connect, &root, &platform, &reader).await;
    let cleanup = delete_recursive(&admin, &root).await;
    result?;
    cleanup?;
    Ok(())
}
