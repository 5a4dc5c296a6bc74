//! The faults, one after another under the load, each measured from the moment it is made:
//! when the platform noticed (detection) and when it was whole again (recovery).

use crate::admin::Admin;
use crate::cluster::Cluster;
use crate::load::Load;
use anyhow::{bail, Context, Result};
use caas_types::api::{HostState, InstanceState};
use reqwest::Method;
use std::future::Future;
use std::time::{Duration, Instant};

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// What was done.
    pub fault: String,
    /// From the fault until the platform acted on it.
    pub detection: Option<Duration>,
    /// From the fault until the platform was whole again.
    pub recovery: Option<Duration>,
    /// The load during the fault's window.
    pub counts: crate::load::Counts,
    /// What else was seen.
    pub note: String,
}

/// What the faults act on.
#[derive(Debug)]
pub struct Chaos<'a> {
    /// The schedulers.
    pub admin: &'a Admin,
    /// The cluster's parts.
    pub cluster: &'a Cluster,
    /// The load running meanwhile.
    pub load: &'a Load,
    /// The app under load.
    pub app: String,
    /// Its instance count.
    pub instances: u32,
    /// The schedulers' ZooKeeper session timeout.
    pub session: Duration,
    /// How long to let the load run before and after each fault.
    pub settle: Duration,
}

/// Polls `check` every 100 ms until it is true or `limit` passes; the time from `since`.
pub async fn until<F, Fut>(since: Instant, limit: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    loop {
        if check().await {
            return Some(since.elapsed());
        }
        if since.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Chaos<'_> {
    async fn window<F, Fut>(&self, fault: &str, body: F) -> Result<Row>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(Option<Duration>, Option<Duration>, String)>>,
    {
        tokio::time::sleep(self.settle).await;
        let from = Instant::now();
        eprintln!("chaos: {fault}");
        let (detection, recovery, note) = body().await?;
        tokio::time::sleep(self.settle).await;
        let counts = self.load.count(from, Instant::now());
        eprintln!(
            "chaos: {fault}: detection {:?}, recovery {:?}, {} ok, {} failed {:?}; {note}",
            detection, recovery, counts.ok, counts.failed, counts.errors
        );
        Ok(Row {
            fault: fault.to_owned(),
            detection,
            recovery,
            counts,
            note,
        })
    }

    /// Whether `app` runs `version` with every instance healthy, and nothing else.
    async fn whole(&self, version: Option<&str>) -> bool {
        let Ok(deps) = self.admin.deployments(&self.app).await else {
            return false;
        };
        let [d] = deps.as_slice() else { return false };
        version.is_none_or(|v| d.version.as_str() == v)
            && d.instance_list.len() == d.instances as usize
            && d.instance_list
                .iter()
                .all(|i| i.healthy && i.state == InstanceState::Running)
    }

    /// Kill -9 the leading scheduler half-way through a deploy that it serves; the other takes
    /// over; the deploy ends whole (finished by the new leader's reconciler, or sent again by
    /// the client when the interrupted one was rolled back); then the old version goes.
    pub async fn scheduler_leader_mid_deploy(&self) -> Result<Row> {
        let leader = self.wait_leader().await?;
        let deps = self.admin.deployments(&self.app).await?;
        let old = deps
            .first()
            .map(|d| d.version.to_string())
            .context("the app has no deployment")?;
        let new = if old == "v1" { "v2" } else { "v1" };
        let body = serde_json::json!({
            "version": new, "instances": self.instances, "memory_mb": 64, "cpus": 0.1,
            "placement": {"spread": true},
        });
        let fault = format!("kill -9 leading scheduler{} mid-deploy", leader + 1);
        self.window(&fault, || async {
            // The deploy's progress stream: the kill comes when its first container starts
            // (placed, claimed, started, not yet healthy nor registered).
            let url = format!("{}/v1/apps/{}/deployments", self.admin.api(leader), self.app);
            let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
            let deploy = tokio::spawn(self.admin.deploy_streamed(url, body.clone(), "\"starting\"", started_tx));
            let _ = tokio::time::timeout(Duration::from_secs(20), started_rx).await;
            let t0 = Instant::now();
            self.cluster.kill(&format!("scheduler{}", leader + 1)).await?;
            let answered = deploy.await.unwrap_or(false);
            let other = 1 - leader.min(1);
            let takeover = until(t0, Duration::from_secs(60), || async {
                self.admin.leader().await == Some(other)
            })
            .await;
            // The user's side: a deploy that came back without an answer is looked at, and
            // sent again to a scheduler that answers when it was rolled back.
            let resent = std::sync::atomic::AtomicU32::new(0);
            let done = until(t0, Duration::from_secs(240), || async {
                let Ok(deps) = self.admin.deployments(&self.app).await else { return false };
                match deps.iter().find(|d| d.version.as_str() == new) {
                    Some(d) => {
                        d.instance_list.len() == d.instances as usize
                            && d.instance_list.iter().all(|i| i.healthy && i.state == InstanceState::Running)
                    }
                    None => {
                        let api = self.admin.api(other).to_owned();
                        let path = format!("/v1/apps/{}/deployments", self.app);
                        if self.admin.call::<serde_json::Value>(&api, Method::POST, &path, Some(&body)).await.is_ok() {
                            resent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        false
                    }
                }
            })
            .await;
            if done.is_none() {
                bail!("{} {new} did not become whole within 240 s after the kill", self.app);
            }
            let path = format!("/v1/apps/{}/deployments/{old}", self.app);
            let api = self.admin.api(other).to_owned();
            self.admin.call::<serde_json::Value>(&api, Method::DELETE, &path, None).await?;
            self.cluster.up().await?;
            let note = format!(
                "takeover {} (session {} s); deploy {}; old {old} undeployed; scheduler{} restarted",
                secs(takeover),
                self.session.as_secs(),
                if answered { "answered before the kill" } else if resent.load(std::sync::atomic::Ordering::Relaxed) > 0 { "rolled back, sent again" } else { "finished by the new leader" },
                leader + 1
            );
            Ok((takeover, done, note))
        })
        .await
    }

    async fn wait_leader(&self) -> Result<usize> {
        let t = Instant::now();
        loop {
            if let Some(l) = self.admin.leader().await {
                return Ok(l);
            }
            if t.elapsed() > Duration::from_secs(60) {
                bail!("no scheduler leads after 60 s");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Kill -9 one ZooKeeper server (`leader` or `follower`); quorum holds; bring it back
    /// and wait until it has rejoined.
    pub async fn zookeeper(&self, role: &str) -> Result<Row> {
        let modes = self.cluster.zk_modes().await;
        if modes.iter().any(Option::is_none) {
            bail!("a ZooKeeper server is not serving before the fault: {modes:?}");
        }
        let victim = modes
            .iter()
            .position(|m| m.as_deref() == Some(role))
            .with_context(|| format!("no ZooKeeper {role}: {modes:?}"))?;
        let leader_before = self.admin.leader().await;
        let fault = format!("kill -9 ZooKeeper {role} (zk{})", victim + 1);
        self.window(&fault, || async {
            let t0 = Instant::now();
            self.cluster.kill(&format!("zk{}", victim + 1)).await?;
            // Quorum: the others serve, one of them leads.
            let quorum = until(t0, Duration::from_secs(60), || async {
                let m = self.cluster.zk_modes().await;
                m.iter()
                    .enumerate()
                    .filter(|(i, _)| *i != victim)
                    .all(|(_, m)| m.is_some())
                    && m.iter().any(|m| m.as_deref() == Some("leader"))
            })
            .await;
            self.cluster.up().await?;
            let rejoined = until(t0, Duration::from_secs(120), || async {
                self.cluster.zk_modes().await.iter().all(Option::is_some)
            })
            .await;
            let leader_after = self.admin.leader().await;
            let note = format!(
                "quorum served again after {}; zk{} rejoined; scheduler leader {}",
                secs(quorum),
                victim + 1,
                if leader_before == leader_after {
                    "unchanged".to_owned()
                } else {
                    format!("{leader_before:?} -> {leader_after:?}")
                }
            );
            Ok((quorum, rejoined, note))
        })
        .await
    }

    /// Kill -9 a gateway; the load moves to the other; bring it back.
    pub async fn gateway(&self, n: usize) -> Result<Row> {
        let fault = format!("kill -9 gateway{n}");
        self.window(&fault, || async {
            let t0 = Instant::now();
            self.cluster.kill(&format!("gateway{n}")).await?;
            let moved = until(t0, Duration::from_secs(30), || async {
                self.load.count(t0, Instant::now()).moved > 0
            })
            .await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            self.cluster.up().await?;
            let back = Some(t0.elapsed());
            Ok((
                moved,
                back,
                "load moved to the other gateway; restarted".to_owned(),
            ))
        })
        .await
    }

    /// Cut the power of the engine host that runs the app's first instance: every process
    /// of it killed. The leader marks it down and replaces its instances on the others; when
    /// it returns, its stale containers are removed.
    pub async fn host(&self, namespace: &str) -> Result<Row> {
        let instances = self.admin.instances(&self.app).await?;
        let victim = instances
            .first()
            .map(|i| i.host.to_string())
            .context("no instance")?;
        let fault = format!("power cut of engine host {victim}");
        self.window(&fault, || async {
            let t0 = Instant::now();
            self.cluster.kill(&victim).await?;
            let down = until(t0, Duration::from_secs(60), || async {
                self.admin.hosts().await.is_ok_and(|hs| {
                    hs.iter()
                        .any(|h| h.name.as_str() == victim && h.state == HostState::Down)
                })
            })
            .await;
            let replaced = until(t0, Duration::from_secs(180), || async {
                self.whole(None).await
                    && self
                        .admin
                        .instances(&self.app)
                        .await
                        .is_ok_and(|is| is.iter().all(|i| i.host.as_str() != victim))
            })
            .await;
            self.cluster.up().await?;
            let back = Instant::now();
            let cleaned = until(back, Duration::from_secs(120), || async {
                let ready = self.admin.hosts().await.is_ok_and(|hs| {
                    hs.iter()
                        .any(|h| h.name.as_str() == victim && h.state == HostState::Ready)
                });
                ready
                    && self
                        .orphans(&victim, namespace)
                        .await
                        .is_ok_and(|o| o.is_empty())
            })
            .await;
            if down.is_none() || replaced.is_none() {
                bail!(
                    "host {victim}: marked down after {}, instances replaced after {}",
                    secs(down),
                    secs(replaced)
                );
            }
            let note = format!(
                "marked down after {}; back: ready and stale containers removed after {}",
                secs(down),
                secs(cleaned)
            );
            if cleaned.is_none() {
                bail!("host {victim} came back but {note}");
            }
            Ok((down, replaced, note))
        })
        .await
    }

    /// Containers on `host` that carry an instance label no instance of that host has.
    pub async fn orphans(&self, host: &str, namespace: &str) -> Result<Vec<String>> {
        let known = self.all_instances().await?;
        let containers = self.cluster.containers(host, namespace).await?;
        Ok(containers
            .into_iter()
            .filter(|c| {
                c.labels
                    .get(caas_types::labels::INSTANCE)
                    .is_some_and(|id| {
                        !known
                            .iter()
                            .any(|i| i.id.as_str() == id.as_str() && i.host.as_str() == host)
                    })
            })
            .map(|c| c.name)
            .collect())
    }

    /// Every instance of every app.
    pub async fn all_instances(&self) -> Result<Vec<caas_types::api::Instance>> {
        let apps: Vec<caas_types::api::App> = self.admin.get("/v1/apps").await?;
        let mut all = Vec::new();
        for a in apps {
            all.extend(self.admin.instances(a.id.as_str()).await?);
        }
        Ok(all)
    }
}

/// `1.23 s`, or `-` when it never happened.
pub fn secs(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()))
}
