//! HTTPS: the rustls listener terminates TLS and proxies as plain HTTP, telling the backend
//! the original scheme.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh directory for certificates.
fn cert_dir() -> TempDir {
    let dir = TempDir(std::env::temp_dir().join(caas_testkit::unique("caas-gwtest-tls")));
    std::fs::create_dir_all(&dir.0).unwrap();
    dir
}

/// A self-signed certificate for `name` (which may be a wildcard) written to `cert` and `key`.
fn self_signed(name: &str, cert: &Path, key: &Path) {
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", &format!("/CN={name}")])
        .args(["-addext", &format!("subjectAltName=DNS:{name}")])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(cert)
        .output()
        .expect("openssl must be installed (Debian package openssl) to make a test certificate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A gateway serving `shop` over HTTPS with a self-signed certificate for
/// `shop.caas.localhost` (the path of its PEM, to trust it), and its backend.
struct HttpsShop {
    _dir: TempDir,
    cert: PathBuf,
    _backend: TestBackend,
    _gw: TestGateway,
    tls: std::net::SocketAddr,
}

async fn https_shop() -> HttpsShop {
    let dir = cert_dir();
    let (cert, key) = (dir.0.join("cert.pem"), dir.0.join("key.pem"));
    self_signed("shop.caas.localhost", &cert, &key);
    let backend = TestBackend::start("b").await;
    let mut config = test_config();
    config.tls_cert = Some(cert.clone());
    config.tls_key = Some(key);
    let gw = TestGateway::start(config, Snap::new().app("shop", &[backend.addr]).build()).await;
    let tls = gw.tls.expect("https listener");
    HttpsShop {
        _dir: dir,
        cert,
        _backend: backend,
        _gw: gw,
        tls,
    }
}

#[tokio::test]
async fn https_is_terminated_and_proxied() {
    let shop = https_shop().await;
    let (cert, tls) = (shop.cert.clone(), shop.tls);
    let c = reqwest::Client::builder()
        .no_proxy()
        .use_rustls_tls()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap(),
        )
        .resolve("shop.caas.localhost", tls)
        .build()
        .unwrap();
    let r = c
        .get(format!(
            "https://shop.caas.localhost:{}/headers",
            tls.port()
        ))
        .send()
        .await
        .expect("https request");
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(body.contains("x-forwarded-proto: https\n"), "{body}");
    assert!(body.contains("host: shop.caas.localhost"), "{body}");
}

#[tokio::test]
async fn sni_picks_each_domains_certificate() {
    let dir = cert_dir();
    let certs = dir.0.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    // An exact one for a custom domain, a wildcard one for the gateway domain.
    self_signed(
        "shop.example.com",
        &certs.join("shop.example.com.crt"),
        &certs.join("shop.example.com.key"),
    );
    self_signed(
        "*.caas.localhost",
        &certs.join("_.caas.localhost.crt"),
        &certs.join("_.caas.localhost.key"),
    );
    let b = TestBackend::start("b").await;
    let mut config = test_config();
    config.tls_dir = Some(certs.clone());
    let gw = TestGateway::start(
        config,
        Snap::new()
            .app("shop", &[b.addr])
            .domain("shop.example.com", "shop")
            .build(),
    )
    .await;
    let tls = gw.tls.expect("https listener from --tls-dir alone");
    for (name, file) in [
        ("shop.example.com", "shop.example.com.crt"),
        ("shop.caas.localhost", "_.caas.localhost.crt"),
    ] {
        // Trusting only the certificate this name should get: any other fails the handshake.
        let c = reqwest::Client::builder()
            .no_proxy()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(&std::fs::read(certs.join(file)).unwrap()).unwrap(),
            )
            .resolve(name, tls)
            .build()
            .unwrap();
        let r = c
            .get(format!("https://{name}:{}/", tls.port()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{name} with {file}: {e:?}"));
        assert_eq!(r.status(), 200, "{name}");
        assert_eq!(r.text().await.unwrap(), "b");
    }
    // A directory with a certificate but no key is refused at start, with the file named.
    std::fs::remove_file(certs.join("shop.example.com.key")).unwrap();
    let mut config = test_config();
    config.tls_dir = Some(certs);
    let err = caas_gateway::Gateway::bind(config).await.unwrap_err();
    assert!(
        err.to_string().contains("shop.example.com.crt has no key"),
        "{err}"
    );
}

/// A TLS connection to `shop.caas.localhost` at `tls`, trusting `cert`, offering `alpn`.
async fn tls_connect(
    cert: &Path,
    tls: std::net::SocketAddr,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut std::fs::read(cert).unwrap().as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![alpn.to_vec()];
    let tcp = tokio::net::TcpStream::connect(tls).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("shop.caas.localhost").unwrap();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(client))
        .connect(name, tcp)
        .await
        .unwrap()
}

#[tokio::test]
async fn two_host_headers_are_refused_over_tls_on_both_engines() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = cert_dir();
    let (cert, key) = (dir.0.join("cert.pem"), dir.0.join("key.pem"));
    self_signed("shop.caas.localhost", &cert, &key);
    let b = TestBackend::start("b").await;
    for engine in [
        caas_gateway::Http1Engine::Own,
        caas_gateway::Http1Engine::Hyper,
    ] {
        let mut config = test_config();
        config.http1 = engine;
        config.tls_cert = Some(cert.clone());
        config.tls_key = Some(key.clone());
        let gw = TestGateway::start(config, Snap::new().app("shop", &[b.addr]).build()).await;
        let mut s = tls_connect(&cert, gw.tls.expect("https listener"), b"http/1.1").await;
        s.write_all(
            b"GET / HTTP/1.1\r\nHost: shop.caas.localhost\r\nHost: other.caas.localhost\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await;
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 400"), "{engine:?}: {text}");
        assert!(
            text.ends_with("more than one Host header\n"),
            "{engine:?}: {text}"
        );
    }
    assert_eq!(b.hits(), 0);
}

#[tokio::test]
async fn h2_over_tls_is_served_by_the_general_path() {
    use http_body_util::BodyExt;
    let shop = https_shop().await;
    let (cert, tls) = (shop.cert.clone(), shop.tls);

    // A client that offers only h2 by ALPN.
    let stream = tls_connect(&cert, tls, b"h2").await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    let req = hyper::Request::get(format!("https://shop.caas.localhost:{}/", tls.port()))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.expect("h2 request");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), hyper::Version::HTTP_2);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"b");
}

/// Accepts any server certificate: the test looks at which one was served, not whether it is
/// trusted.
#[derive(Debug)]
struct AnyCert(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The leaf certificate (DER) the gateway at `tls` serves for the SNI name `name`.
async fn served_cert(tls: std::net::SocketAddr, name: &str) -> Vec<u8> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(std::sync::Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(tls).await.unwrap();
    let server = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
    let stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client))
        .connect(server, tcp)
        .await
        .unwrap_or_else(|e| panic!("handshake for {name}: {e}"));
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// The DER of the first certificate of a PEM file.
fn der(pem: &Path) -> Vec<u8> {
    rustls_pemfile::certs(&mut std::fs::read(pem).unwrap().as_slice())
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn a_directory_certificate_is_served_only_while_zookeeper_routes_its_domain() {
    use caas_testkit::eventually;
    use caas_types::{AppId, Domain};
    let dir = cert_dir();
    let certs = dir.0.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let (default_crt, default_key) = (dir.0.join("default.pem"), dir.0.join("default.key"));
    self_signed("*.caas.localhost", &default_crt, &default_key);
    let (shop_crt, shop_key) = (
        certs.join("shop.example.org.crt"),
        certs.join("shop.example.org.key"),
    );
    self_signed("shop.example.org", &shop_crt, &shop_key);
    let (default, shop) = (der(&default_crt), der(&shop_crt));
    assert_ne!(default, shop);

    let root = caas_testkit::zk::Chroot::new("tls-routed").await;
    let registry = root.registry().await;
    let app: AppId = "shop".parse().unwrap();
    registry.add_app(&app).await.expect("app node");
    let feed = caas_gateway::RoutesFeed::start(root.reader());
    let mut config = test_config();
    config.tls_cert = Some(default_crt.clone());
    config.tls_key = Some(default_key);
    config.tls_dir = Some(certs);
    let gw =
        TestGateway::start_with_status(config, feed.routes.borrow().clone(), feed.status).await;
    let forward = {
        let mut rx = feed.routes;
        let tx = gw.routes.clone();
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let snap = rx.borrow_and_update().clone();
                tx.send_replace(snap);
            }
        })
    };
    let tls = gw.tls.expect("https listener");
    let c = client();
    eventually("the gateway routes the app", || async {
        (get(&c, &gw, "shop.caas.localhost", "/").await.0 == 503).then_some(())
    })
    .await;

    // Not routed: the certificate lying in --tls-dir is not handed out; the default one is.
    assert!(
        served_cert(tls, "shop.example.org").await == default,
        "an unrouted domain got its directory certificate"
    );
    assert!(served_cert(tls, "shop.caas.localhost").await == default);

    // Routed to an app in ZooKeeper: its certificate.
    let domain: Domain = "shop.example.org".parse().unwrap();
    registry.set_domain(&domain, &app).await.expect("domain");
    eventually("the routed domain gets its certificate", || async {
        (served_cert(tls, "shop.example.org").await == shop).then_some(())
    })
    .await;
    assert!(served_cert(tls, "Shop.Example.Org").await == shop);
    assert!(served_cert(tls, "shop.caas.localhost").await == default);

    // Removed: no longer.
    registry
        .remove_domain(&domain)
        .await
        .expect("remove domain");
    eventually(
        "the removed domain no longer gets its certificate",
        || async { (served_cert(tls, "shop.example.org").await == default).then_some(()) },
    )
    .await;
    forward.abort();
}
