//! HTTPS: a rustls acceptor offering h2 and HTTP/1.1 by ALPN, with the certificate chosen by
//! the client's SNI name: one per custom domain from a directory (`--tls-dir`), a wildcard one
//! per parent domain, and the `--tls-cert` pair for every other name (and clients without SNI).

use crate::error::{Error, Result};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// Where the certificates come from; all optional, at least one must be given for HTTPS.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sources<'a> {
    /// The default pair: PEM chain and key.
    pub(crate) cert: Option<&'a Path>,
    pub(crate) key: Option<&'a Path>,
    /// A directory of `{domain}.crt` + `{domain}.key` pairs; `_.{domain}` serves
    /// `*.{domain}`.
    pub(crate) dir: Option<&'a Path>,
}

/// Certificates by SNI name.
#[derive(Debug, Default)]
struct SniCerts {
    default: Option<Arc<CertifiedKey>>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// By parent domain: `caas.example.com` serves `*.caas.example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl SniCerts {
    /// The certificate for `name`: its own, else its parent's wildcard, else the default.
    fn pick(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = name {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if let Some(c) = self.exact.get(&name) {
                return Some(Arc::clone(c));
            }
            if let Some(c) = name
                .split_once('.')
                .and_then(|(_, parent)| self.wildcard.get(parent))
            {
                return Some(Arc::clone(c));
            }
        }
        self.default.clone()
    }
}

impl ResolvesServerCert for SniCerts {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(hello.server_name())
    }
}

fn read(p: &Path) -> Result<Vec<u8>> {
    std::fs::read(p).map_err(|e| Error::Tls(format!("cannot read {}: {e}", p.display())))
}

/// Loads one PEM chain and its key, checking that they belong together.
fn load_pair(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>> {
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let chain = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Tls(format!("bad certificate {}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(Error::Tls(format!("no certificate in {}", cert.display())));
    }
    let key_der = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| Error::Tls(format!("bad key {}: {e}", key.display())))?
        .ok_or_else(|| Error::Tls(format!("no private key in {}", key.display())))?;
    CertifiedKey::from_der(chain, key_der, provider)
        .map(Arc::new)
        .map_err(|e| Error::Tls(format!("{} with {}: {e}", cert.display(), key.display())))
}

/// Reads every `{name}.crt` of `dir` with its `{name}.key` into `certs`.
fn load_dir(dir: &Path, provider: &CryptoProvider, certs: &mut SniCerts) -> Result<()> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::Tls(format!("cannot read {}: {e}", dir.display())))?;
    let mut crts: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "crt"))
        .collect();
    crts.sort();
    if crts.is_empty() {
        return Err(Error::Tls(format!(
            "no {{domain}}.crt certificate in {}",
            dir.display()
        )));
    }
    for crt in crts {
        let stem = crt
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| Error::Tls(format!("unreadable file name {}", crt.display())))?;
        let (wild, domain) = match stem.strip_prefix("_.") {
            Some(parent) => (true, parent),
            None => (false, stem),
        };
        let domain = domain
            .to_ascii_lowercase()
            .parse::<caas_types::Domain>()
            .map_err(|e| Error::Tls(format!("{}: {e}", crt.display())))?;
        let key = crt.with_extension("key");
        if !key.exists() {
            return Err(Error::Tls(format!(
                "{} has no key beside it ({})",
                crt.display(),
                key.display()
            )));
        }
        let pair = load_pair(&crt, &key, provider)?;
        let map = if wild {
            &mut certs.wildcard
        } else {
            &mut certs.exact
        };
        map.insert(domain.to_string(), pair);
    }
    Ok(())
}

/// The acceptor for `sources`, or `None` when no certificate is configured (no HTTPS).
pub(crate) fn acceptor(sources: Sources<'_>) -> Result<Option<TlsAcceptor>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut certs = SniCerts::default();
    match (sources.cert, sources.key) {
        (Some(cert), Some(key)) => certs.default = Some(load_pair(cert, key, &provider)?),
        (None, None) => {}
        _ => {
            return Err(Error::Tls(
                "--tls-cert and --tls-key go together".to_owned(),
            ))
        }
    }
    if let Some(dir) = sources.dir {
        load_dir(dir, &provider, &mut certs)?;
    }
    if certs.default.is_none() && certs.exact.is_empty() && certs.wildcard.is_empty() {
        return Ok(None);
    }
    tracing::info!(
        default = certs.default.is_some(),
        domains = certs.exact.len(),
        wildcards = certs.wildcard.len(),
        "https certificates loaded"
    );
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(certs));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_pick_their_own_then_the_wildcard_then_the_default() {
        // The resolver's choice only: real keys are exercised by tests/https.rs.
        let mut certs = SniCerts::default();
        assert!(
            certs.pick(Some("a.example.com")).is_none(),
            "nothing loaded"
        );
        let marker = |n: usize| {
            Arc::new(CertifiedKey::new(
                vec![rustls::pki_types::CertificateDer::from(vec![n as u8])],
                Arc::new(NoKey),
            ))
        };
        certs.default = Some(marker(0));
        certs.exact.insert("shop.example.com".into(), marker(1));
        certs.wildcard.insert("caas.example.com".into(), marker(2));
        let which = |name: Option<&str>| certs.pick(name).map(|c| c.cert[0].as_ref()[0]);
        assert_eq!(which(Some("shop.example.com")), Some(1));
        assert_eq!(which(Some("Shop.Example.com.")), Some(1));
        assert_eq!(which(Some("app1.caas.example.com")), Some(2));
        assert_eq!(
            which(Some("a.b.caas.example.com")),
            Some(0),
            "one label deep"
        );
        assert_eq!(which(Some("other.org")), Some(0));
        assert_eq!(which(None), Some(0));
    }

    /// A signing key that signs nothing, to build markers.
    #[derive(Debug)]
    struct NoKey;

    impl rustls::sign::SigningKey for NoKey {
        fn choose_scheme(
            &self,
            _offered: &[rustls::SignatureScheme],
        ) -> Option<Box<dyn rustls::sign::Signer>> {
            None
        }

        fn algorithm(&self) -> rustls::SignatureAlgorithm {
            rustls::SignatureAlgorithm::ED25519
        }
    }
}
