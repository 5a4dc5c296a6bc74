//! HTTPS: a rustls acceptor offering h2 and HTTP/1.1 by ALPN, with the certificate chosen by
//! the client's SNI name: one per domain from a directory (`--tls-dir`), a wildcard one per
//! parent domain, and the `--tls-cert` pair for every other name (and clients without SNI).
//!
//! A certificate of the directory is offered for a name only while the live routing table
//! routes that name (a custom domain in ZooKeeper's domains node, which the scheduler gives only
//! to an app whose tenant may hold it; or a platform name `{app}.{gateway domain}` of a routed
//! app). The wildcard for the gateway's own domain is the platform's and serves every platform
//! name. A name nothing routes gets the default pair: a certificate lying in the directory is
//! never handed to whoever asks for its name.

use crate::error::{Error, Result};
use crate::table::Table;
use arc_swap::ArcSwap;
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
    /// The gateway's own domain: its wildcard serves every platform name, routed or not.
    platform: String,
}

impl SniCerts {
    /// The certificate for `name`: its own, else its parent's wildcard, else the default. A
    /// certificate of the directory counts only if `routed(name)` (the platform's wildcard
    /// always does); `routed` is called at most once, and only when the directory has a
    /// candidate.
    fn pick(&self, name: Option<&str>, routed: impl Fn(&str) -> bool) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = name {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            let mut known = None;
            let mut is_routed = || *known.get_or_insert_with(|| routed(&name));
            if let Some(c) = self.exact.get(&name) {
                if is_routed() {
                    return Some(Arc::clone(c));
                }
            }
            if let Some((parent, c)) = name
                .split_once('.')
                .and_then(|(_, parent)| Some((parent, self.wildcard.get(parent)?)))
            {
                if parent == self.platform || is_routed() {
                    return Some(Arc::clone(c));
                }
            }
        }
        self.default.clone()
    }
}

/// The certificates and the live routing table they are offered by.
#[derive(Debug)]
struct Resolver {
    certs: SniCerts,
    routes: Arc<ArcSwap<Table>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // One lock-free load per handshake, and only when a directory certificate matches.
        self.certs
            .pick(hello.server_name(), |name| self.routes.load().routes(name))
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
/// Certificates of the directory are offered by `routes`, the live routing table of the gateway
/// for `platform` (its domain).
pub(crate) fn acceptor(
    sources: Sources<'_>,
    platform: &str,
    routes: Arc<ArcSwap<Table>>,
) -> Result<Option<TlsAcceptor>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut certs = SniCerts {
        platform: platform.trim_end_matches('.').to_ascii_lowercase(),
        ..SniCerts::default()
    };
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
        .with_cert_resolver(Arc::new(Resolver { certs, routes }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A marker certificate: its one byte says which it is.
    fn marker(n: u8) -> Arc<CertifiedKey> {
        Arc::new(CertifiedKey::new(
            vec![rustls::pki_types::CertificateDer::from(vec![n])],
            Arc::new(NoKey),
        ))
    }

    /// Default 0, `shop.example.com` 1, `*.caas.example.com` (the platform's) 2,
    /// `*.example.org` 3, `shop.caas.example.com` 4.
    fn certs() -> SniCerts {
        let mut certs = SniCerts {
            platform: "caas.example.com".into(),
            ..SniCerts::default()
        };
        certs.default = Some(marker(0));
        certs.exact.insert("shop.example.com".into(), marker(1));
        certs.wildcard.insert("caas.example.com".into(), marker(2));
        certs.wildcard.insert("example.org".into(), marker(3));
        certs
            .exact
            .insert("shop.caas.example.com".into(), marker(4));
        certs
    }

    fn which(certs: &SniCerts, name: Option<&str>, routed: &[&str]) -> Option<u8> {
        certs
            .pick(name, |n| routed.contains(&n))
            .map(|c| c.cert[0].as_ref()[0])
    }

    #[test]
    fn routed_names_pick_their_own_then_the_wildcard_then_the_default() {
        // The resolver's choice only: real keys are exercised by tests/https.rs.
        let empty = SniCerts::default();
        assert!(
            empty.pick(Some("a.example.com"), |_| true).is_none(),
            "nothing loaded"
        );
        let certs = certs();
        let all = [
            "shop.example.com",
            "a.example.org",
            "shop.caas.example.com",
            "app1.caas.example.com",
        ];
        let which = |name| which(&certs, name, &all);
        assert_eq!(which(Some("shop.example.com")), Some(1));
        assert_eq!(which(Some("Shop.Example.com.")), Some(1));
        assert_eq!(which(Some("app1.caas.example.com")), Some(2));
        assert_eq!(which(Some("shop.caas.example.com")), Some(4));
        assert_eq!(which(Some("a.example.org")), Some(3));
        assert_eq!(
            which(Some("a.b.caas.example.com")),
            Some(0),
            "one label deep"
        );
        assert_eq!(which(Some("other.org")), Some(0));
        assert_eq!(which(None), Some(0));
    }

    #[test]
    fn a_directory_certificate_is_offered_only_while_its_name_is_routed() {
        let certs = certs();
        let none = |name| which(&certs, Some(name), &[]);
        // Custom names nothing routes: the default, never the certificate lying in the directory.
        assert_eq!(none("shop.example.com"), Some(0));
        assert_eq!(none("a.example.org"), Some(0), "a custom parent's wildcard");
        // An exact certificate of a platform name whose app is not routed falls back to the
        // platform's wildcard; the platform's wildcard serves every platform name.
        assert_eq!(none("shop.caas.example.com"), Some(2));
        assert_eq!(none("app1.caas.example.com"), Some(2));
        // Routing one name opens that name only.
        let some = |name| which(&certs, Some(name), &["a.example.org"]);
        assert_eq!(some("a.example.org"), Some(3));
        assert_eq!(some("b.example.org"), Some(0));
        assert_eq!(some("shop.example.com"), Some(0));
        // Without a default, an unrouted name gets no certificate at all.
        let bare = SniCerts {
            default: None,
            ..certs
        };
        assert_eq!(which(&bare, Some("shop.example.com"), &[]), None);
        assert_eq!(
            which(&bare, Some("shop.example.com"), &["shop.example.com"]),
            Some(1)
        );
    }

    #[test]
    fn the_route_table_is_read_at_most_once_and_only_for_a_directory_candidate() {
        let mut certs = certs();
        // A name with both an exact certificate and a custom parent's wildcard.
        certs.exact.insert("a.example.org".into(), marker(5));
        for (name, reads) in [
            ("other.org", 0),
            ("app1.caas.example.com", 0),
            ("shop.caas.example.com", 1),
            ("shop.example.com", 1),
            ("b.example.org", 1),
            ("a.example.org", 1),
        ] {
            let count = std::cell::Cell::new(0);
            certs.pick(Some(name), |_| {
                count.set(count.get() + 1);
                false
            });
            assert_eq!(count.get(), reads, "{name}");
        }
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
