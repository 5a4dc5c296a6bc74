//! HTTPS: the rustls listener terminates TLS and proxies as plain HTTP, telling the backend
//! the original scheme.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::path::PathBuf;
use std::process::Command;

/// A directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn https_is_terminated_and_proxied() {
    let dir = TempDir(std::env::temp_dir().join(common::zk::unique("caas-gwtest-tls")));
    std::fs::create_dir_all(&dir.0).unwrap();
    let (cert, key) = (dir.0.join("cert.pem"), dir.0.join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=shop.caas.localhost"])
        .args(["-addext", "subjectAltName=DNS:shop.caas.localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl must be installed (Debian package openssl) to make a test certificate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let b = TestBackend::start("b").await;
    let mut config = test_config();
    config.tls_cert = Some(cert.clone());
    config.tls_key = Some(key);
    let gw = TestGateway::start(config, Snap::new().app("shop", &[b.addr]).build()).await;
    let tls = gw.tls.expect("https listener");
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
