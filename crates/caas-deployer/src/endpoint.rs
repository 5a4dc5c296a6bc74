//! Where a host's Docker Engine listens: the URL in the host's record, plus the client
//! certificate files when the URL is `https://`.

use crate::error::{Error, Result};
use std::fmt;
use std::path::{Path, PathBuf};

/// The PEM files of a mutual-TLS connection to an engine started with `--tlsverify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA that signed the engine's server certificate.
    pub ca: PathBuf,
    /// Our client certificate, signed by a CA the engine trusts.
    pub cert: PathBuf,
    /// The client certificate's private key.
    pub key: PathBuf,
}

impl TlsFiles {
    /// Docker's own layout: `ca.pem`, `cert.pem` and `key.pem` in one directory
    /// (what `DOCKER_CERT_PATH` points at).
    pub fn from_dir(dir: impl AsRef<Path>) -> TlsFiles {
        let dir = dir.as_ref();
        TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }
}

/// One engine's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerEndpoint {
    /// `unix:///var/run/docker.sock`: the local engine.
    Unix(PathBuf),
    /// `tcp://127.0.0.1:2375`: plain HTTP (only ever on a trusted network).
    Tcp(String),
    /// `https://127.0.0.1:2376`: HTTP over mutual TLS.
    Tls {
        /// `host:port`.
        addr: String,
        /// The CA and client certificate.
        files: TlsFiles,
    },
}

impl DockerEndpoint {
    /// Parses a host record's URL. `https://` (and `tcp://` with `tls` given) needs the client
    /// certificate files; `unix://` and plain `tcp://` take none.
    pub fn parse(url: &str, tls: Option<TlsFiles>) -> Result<DockerEndpoint> {
        let bad = |reason: &str| Error::InvalidEndpoint {
            endpoint: url.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(path) = url.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(bad("a unix socket path must be absolute"));
            }
            return Ok(DockerEndpoint::Unix(PathBuf::from(path)));
        }
        let (addr, wants_tls) = if let Some(rest) = url.strip_prefix("https://") {
            (rest, true)
        } else if let Some(rest) = url.strip_prefix("tcp://") {
            (rest, tls.is_some())
        } else {
            return Err(bad("expected unix://, tcp:// or https://"));
        };
        let addr = addr.trim_end_matches('/');
        check_host_port(addr).map_err(bad)?;
        match (wants_tls, tls) {
            (true, Some(files)) => Ok(DockerEndpoint::Tls {
                addr: addr.to_owned(),
                files,
            }),
            (true, None) => Err(bad("https:// needs client certificate files")),
            (false, _) => Ok(DockerEndpoint::Tcp(addr.to_owned())),
        }
    }

    /// The local engine's default socket.
    pub fn local() -> DockerEndpoint {
        DockerEndpoint::Unix(PathBuf::from("/var/run/docker.sock"))
    }
}

impl std::str::FromStr for DockerEndpoint {
    type Err = Error;
    /// Parses `unix://` and `tcp://` URLs; `https://` needs [`DockerEndpoint::parse`] with files.
    fn from_str(s: &str) -> Result<Self> {
        DockerEndpoint::parse(s, None)
    }
}

impl fmt::Display for DockerEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DockerEndpoint::Unix(p) => write!(f, "unix://{}", p.display()),
            DockerEndpoint::Tcp(a) => write!(f, "tcp://{a}"),
            DockerEndpoint::Tls { addr, .. } => write!(f, "https://{addr}"),
        }
    }
}

/// `host:port` with a non-empty host and a numeric, non-zero port (`[::1]:2376` allowed).
fn check_host_port(addr: &str) -> std::result::Result<(), &'static str> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or("expected host:port after the scheme")?;
    if host.is_empty() || host.contains(['/', '@', ' ', '?', '#']) {
        return Err("bad host");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err("bad port"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_kinds() {
        assert_eq!(
            "unix:///var/run/docker.sock"
                .parse::<DockerEndpoint>()
                .expect("valid"),
            DockerEndpoint::local()
        );
        assert_eq!(
            "tcp://127.0.0.1:2375"
                .parse::<DockerEndpoint>()
                .expect("valid"),
            DockerEndpoint::Tcp("127.0.0.1:2375".into())
        );
        let files = TlsFiles::from_dir("/certs");
        let tls =
            DockerEndpoint::parse("https://127.0.0.1:2376/", Some(files.clone())).expect("valid");
        assert_eq!(
            tls,
            DockerEndpoint::Tls {
                addr: "127.0.0.1:2376".into(),
                files: files.clone()
            }
        );
        assert_eq!(tls.to_string(), "https://127.0.0.1:2376");
        assert!(matches!(
            DockerEndpoint::parse("tcp://[::1]:2376", Some(files)).expect("valid"),
            DockerEndpoint::Tls { .. }
        ));
    }

    #[test]
    fn refuses_bad_urls() {
        for bad in [
            "",
            "/var/run/docker.sock",
            "unix://relative.sock",
            "http://127.0.0.1:2375",
            "tcp://127.0.0.1",
            "tcp://:2375",
            "tcp://127.0.0.1:0",
            "tcp://127.0.0.1:99999",
            "tcp://user@127.0.0.1:2375",
            "https://127.0.0.1:2376",
        ] {
            assert!(bad.parse::<DockerEndpoint>().is_err(), "{bad:?} accepted");
        }
    }
}
