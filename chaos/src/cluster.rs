//! The cluster's moving parts, as `scripts/cluster` runs them: kill one part, bring everything
//! back (`up` is idempotent and starts what is down), and the ZooKeeper servers' own view of
//! the ensemble (the `srvr` four-letter word).

use anyhow::{bail, Context, Result};
use caas_deployer::{ContainerSummary, Deployer, DockerEndpoint, TlsFiles};
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// `scripts/cluster` and where its output goes.
#[derive(Debug, Clone)]
pub struct Cluster {
    script: PathBuf,
    log: PathBuf,
    zk: Vec<String>,
    engines: Vec<(String, String)>,
    cert_path: PathBuf,
}

impl Cluster {
    /// The cluster that `script` runs; `zk` its ensemble's connect string, `engines` the
    /// `name=url` pairs of `CAAS_CLUSTER_ENGINES`, `cert_path` the platform's client
    /// certificate directory; the script's output is appended to `log`.
    pub fn new(
        script: PathBuf,
        log: PathBuf,
        zk: &str,
        engines: &str,
        cert_path: PathBuf,
    ) -> Result<Cluster> {
        let engines = engines
            .split_whitespace()
            .map(|e| {
                e.split_once('=')
                    .map(|(n, u)| (n.to_owned(), u.to_owned()))
                    .with_context(|| format!("CAAS_CLUSTER_ENGINES: {e} is not name=url"))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Cluster {
            script,
            log,
            zk: zk.split(',').map(str::to_owned).collect(),
            engines,
            cert_path,
        })
    }

    /// `scripts/cluster kill PART`: kill -9 (a host: every process of it).
    pub async fn kill(&self, part: &str) -> Result<String> {
        self.run(&["kill", part]).await
    }

    /// `scripts/cluster up`: start whatever is down, wait until it answers.
    pub async fn up(&self) -> Result<()> {
        self.run(&["up"]).await.map(|_| ())
    }

    async fn run(&self, args: &[&str]) -> Result<String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("open {}", self.log.display()))?;
        let out = Command::new(&self.script)
            .args(args)
            .stderr(log)
            .output()
            .await
            .with_context(|| format!("run {}", self.script.display()))?;
        if !out.status.success() {
            bail!(
                "{} {} failed ({}); see {}",
                self.script.display(),
                args.join(" "),
                out.status,
                self.log.display()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Each ZooKeeper server's mode (`leader`, `follower`), `None` where it does not serve.
    pub async fn zk_modes(&self) -> Vec<Option<String>> {
        let mut modes = Vec::new();
        for addr in &self.zk {
            modes.push(zk_mode(addr).await);
        }
        modes
    }

    /// The engine hosts' names.
    pub fn host_names(&self) -> Vec<String> {
        self.engines.iter().map(|(n, _)| n.clone()).collect()
    }

    /// The containers `namespace` manages on host `name`'s engine (over its mTLS endpoint).
    pub async fn containers(&self, name: &str, namespace: &str) -> Result<Vec<ContainerSummary>> {
        let (_, url) = self
            .engines
            .iter()
            .find(|(n, _)| n == name)
            .with_context(|| format!("no engine host {name}"))?;
        let endpoint = DockerEndpoint::parse(url, Some(TlsFiles::from_dir(&self.cert_path)))?;
        let engine = Deployer::connect_with_timeout(&endpoint, Duration::from_secs(5))?;
        Ok(engine.list_managed(namespace).await?)
    }
}

/// One server's `srvr` answer's `Mode:`, if it serves in a quorum.
async fn zk_mode(addr: &str) -> Option<String> {
    let ask = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(b"srvr").await.ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.ok()?;
        out.lines()
            .find_map(|l| l.strip_prefix("Mode: "))
            .map(|m| m.trim().to_owned())
    };
    tokio::time::timeout(Duration::from_secs(2), ask)
        .await
        .ok()
        .flatten()
}
