//! One [`Deployer`] per host, connected on first use from the host's Docker endpoint URL and
//! kept for reuse (bollard clients pool their connections).

use crate::config::Config;
use crate::error::{Error, Result};
use caas_deployer::{Deployer, DockerEndpoint, TlsFiles};
use caas_types::HostName;
use std::collections::HashMap;
use std::sync::Mutex;

/// The engines of every host this scheduler has talked to.
#[derive(Debug, Default)]
pub struct Engines {
    by_host: Mutex<HashMap<HostName, (String, Deployer)>>,
    tls: Option<TlsFiles>,
}

impl Engines {
    /// Engines whose `https://` endpoints use the client files in `config.docker_cert_path`.
    pub fn new(config: &Config) -> Engines {
        Engines {
            by_host: Mutex::new(HashMap::new()),
            tls: config.docker_cert_path.as_ref().map(TlsFiles::from_dir),
        }
    }

    /// Connects to an endpoint URL without caching it (to check a host before adding it).
    pub fn connect(&self, url: &str) -> Result<Deployer> {
        let endpoint = DockerEndpoint::parse(url, self.tls.clone())
            .map_err(|e| Error::Invalid(format!("docker endpoint: {e}")))?;
        Deployer::connect(&endpoint).map_err(|e| Error::Docker(e.to_string()))
    }

    /// The deployer of `host`, whose endpoint is `url`; reconnects if the URL changed.
    pub fn get(&self, host: &HostName, url: &str) -> Result<Deployer> {
        let mut map = self.by_host.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((u, d)) = map.get(host) {
            if u == url {
                return Ok(d.clone());
            }
        }
        let d = self.connect(url)?;
        map.insert(host.clone(), (url.to_owned(), d.clone()));
        Ok(d)
    }

    /// Drops the cached deployer of a removed host.
    pub fn forget(&self, host: &HostName) {
        self.by_host
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(host);
    }
}
