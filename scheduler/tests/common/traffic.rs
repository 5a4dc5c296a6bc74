#![allow(dead_code)] // each test binary uses the part it needs
//! A request loop against the app `hello`'s instances as ZooKeeper lists them (as a gateway
//! would), for tests that assert "no failed request" while instances are replaced.

use caas_testkit::zk::super_client;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the request loop saw.
#[derive(Debug, Default)]
pub struct Traffic {
    /// Successful answers by the `app` field hello reports (its `HELLO_APP` variable).
    pub ok: BTreeMap<String, u64>,
    /// Successful answers by the version whose ZooKeeper node listed the instance.
    pub ok_by_version: BTreeMap<String, u64>,
    /// Every failure, with the address and what went wrong.
    pub failed: Vec<String>,
}

impl Traffic {
    /// Successful answers in all.
    pub fn total_ok(&self) -> u64 {
        self.ok.values().sum()
    }
}

/// Requests `GET /` from `hello`'s instances as ZooKeeper lists them: [`traffic_to`] for app
/// `hello`.
pub async fn traffic(chroot: String, stop: Arc<AtomicBool>, seen: Arc<Mutex<Traffic>>) {
    traffic_to(chroot, "hello".into(), stop, seen).await
}

/// Requests `GET /` from `app`'s instances in ZooKeeper under `chroot`, round-robin, one new
/// connection each, until `stop` or a bound on count and time. An answer counts only if it
/// comes from the version its node is listed under (hello reports its `HELLO_VERSION`).
pub async fn traffic_to(
    chroot: String,
    app: String,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Traffic>>,
) {
    let zk = super_client().await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let root = format!("{chroot}/caas/service/address/{app}");
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) && n < 100_000 && Instant::now() < deadline {
        let mut live = Vec::new();
        for v in zk
            .get_children(&root)
            .await
            .map(|r| r.0)
            .unwrap_or_default()
        {
            for c in zk
                .get_children(&format!("{root}/{v}"))
                .await
                .map(|r| r.0)
                .unwrap_or_default()
            {
                if let Ok((data, _)) = zk.get_data(&format!("{root}/{v}/{c}")).await {
                    live.push((v.clone(), String::from_utf8_lossy(&data).into_owned()));
                }
            }
        }
        n += 1;
        let Some((version, addr)) = live.get(n % live.len().max(1)).cloned() else {
            seen.lock()
                .unwrap()
                .failed
                .push(format!("request {n}: no instance registered"));
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let outcome = match http.get(format!("http://{addr}/")).send().await {
            Ok(r) if r.status().is_success() => match r.json::<Value>().await {
                Ok(body) if body["version"] == version.as_str() => {
                    Ok(body["app"].as_str().unwrap_or_default().to_owned())
                }
                Ok(body) => Err(format!("{version} {addr}: answered {body}")),
                Err(e) => Err(format!("{version} {addr}: body {e}")),
            },
            Ok(r) => Err(format!("{version} {addr}: status {}", r.status())),
            Err(e) => Err(format!("{version} {addr}: {e}")),
        };
        let mut seen = seen.lock().unwrap();
        match outcome {
            Ok(app) => {
                *seen.ok.entry(app).or_default() += 1;
                *seen.ok_by_version.entry(version).or_default() += 1;
            }
            Err(e) => seen.failed.push(e),
        }
    }
}
