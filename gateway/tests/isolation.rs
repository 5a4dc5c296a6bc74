//! The gateway's tenant-isolation defences on the wire (issue 16), on both HTTP/1.1 engines
//! where the paths differ: connection caps closed at accept and counted, a backend stalled
//! mid-body cut by the body timeout with its connection never reused, no Content-Length beside
//! chunked framing, `X-Forwarded-For` believed only from trusted proxies (and the blacklist
//! applied to the client it names), and two Host headers refused on every path.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use caas_gateway::{Config, Http1Engine};
use caas_testkit::eventually;
use common::*;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

const HOST: &str = "shop.caas.localhost";
const ENGINES: [Http1Engine; 2] = [Http1Engine::Own, Http1Engine::Hyper];

fn config(engine: Http1Engine) -> Config {
    let mut c = test_config();
    c.http1 = engine;
    c
}

/// A connection to `to` from the loopback address `from`.
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    sock.connect(to).await.expect("connect")
}

/// One keep-alive `GET /` for `shop` on `s`: the whole answer (head and its Content-Length
/// body), or what came before the gateway closed (nothing, for a connection refused at accept).
async fn get_on(s: &mut TcpStream) -> String {
    let req = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if out.len() >= end + 4 + len {
                return text;
            }
        }
        match tokio::time::timeout(WAIT, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return text,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// The value of a metric line (name with its labels).
fn metric(text: &str, line: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(line)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn connections_over_the_caps_are_closed_at_accept_and_counted() {
    let b = TestBackend::start("b").await;
    let mut c = test_config();
    c.max_connections = 3;
    c.max_connections_per_ip = 2;
    let gw = TestGateway::start(c, Snap::new().app("shop", &[b.addr]).build()).await;

    let mut a1 = connect_from("127.0.0.1", gw.addr).await;
    let mut a2 = connect_from("127.0.0.1", gw.addr).await;
    assert!(get_on(&mut a1).await.starts_with("HTTP/1.1 200"));
    assert!(get_on(&mut a2).await.starts_with("HTTP/1.1 200"));
    // A third from the same address: closed at accept, nothing answered.
    let mut a3 = connect_from("127.0.0.1", gw.addr).await;
    assert_eq!(get_on(&mut a3).await, "", "over the per-address cap");
    // Another address has its own count, up to the global cap.
    let mut b1 = connect_from("127.0.0.2", gw.addr).await;
    assert!(get_on(&mut b1).await.starts_with("HTTP/1.1 200"));
    let mut b2 = connect_from("127.0.0.2", gw.addr).await;
    assert_eq!(get_on(&mut b2).await, "", "over the global cap");
    let text = gw.metrics().await;
    assert_eq!(
        metric(
            &text,
            "caas_gateway_connections_refused_total{reason=\"per_ip\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "caas_gateway_connections_refused_total{reason=\"global\"}"
        ),
        Some(1.0),
        "{text}"
    );
    // A connection that closes gives its place back.
    drop(a1);
    eventually("a closed connection's place is free again", || async {
        let mut s = connect_from("127.0.0.1", gw.addr).await;
        get_on(&mut s)
            .await
            .starts_with("HTTP/1.1 200")
            .then_some(())
    })
    .await;
    drop((a2, b1));
}

/// A backend that answers every request with a 100-byte body of which it sends 5 bytes, then
/// stalls: counts the connections it accepted and those the gateway closed.
async fn stalling_backend() -> (SocketAddr, Arc<AtomicU64>, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (accepted, closed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (a, c) = (Arc::clone(&accepted), Arc::clone(&closed));
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            a.fetch_add(1, Ordering::Relaxed);
            let c = Arc::clone(&c);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello")
                    .await;
                // Stalled: nothing more, until the gateway closes the connection.
                loop {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
                c.fetch_add(1, Ordering::Relaxed);
            });
        }
    });
    (addr, accepted, closed)
}

#[tokio::test]
async fn a_backend_stalled_mid_body_is_cut_and_its_connection_never_reused() {
    for engine in ENGINES {
        let (addr, accepted, closed) = stalling_backend().await;
        let mut c = config(engine);
        c.body_timeout_ms = 300;
        let gw = TestGateway::start(c, Snap::new().app("shop", &[addr]).build()).await;
        for round in 1..=2u64 {
            let mut s = TcpStream::connect(gw.addr).await.unwrap();
            let req = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
            s.write_all(req.as_bytes()).await.unwrap();
            let mut out = Vec::new();
            let read = tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await;
            let text = String::from_utf8_lossy(&out);
            assert!(
                read.is_ok(),
                "{engine:?}: the gateway closed the client connection: {text}"
            );
            assert!(text.starts_with("HTTP/1.1 200"), "{engine:?}: {text}");
            assert!(
                text.ends_with("\r\n\r\nhello"),
                "{engine:?}: cut after what came: {text}"
            );
            eventually("the gateway closes the stalled backend connection", || {
                let n = closed.load(Ordering::Relaxed);
                async move { (n == round).then_some(()) }
            })
            .await;
            // Each request needed a new backend connection: the stalled one was not reused.
            assert_eq!(accepted.load(Ordering::Relaxed), round, "{engine:?}");
        }
        let text = gw.metrics().await;
        assert_eq!(
            metric(&text, "caas_gateway_body_timeouts_total{app=\"shop\"}"),
            Some(2.0),
            "{engine:?}: {text}"
        );
    }
}

/// A bare TCP backend that answers every request with `answer` and closes.
async fn raw_backend(answer: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = s.write_all(answer).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_backend_sending_both_framings_reaches_the_client_without_content_length() {
    let backend = raw_backend(
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    for engine in ENGINES {
        let gw =
            TestGateway::start(config(engine), Snap::new().app("shop", &[backend]).build()).await;
        // HTTP/1.1 (the fast path, or hyper), and HTTP/1.0 (handed over to hyper).
        for version in ["1.1", "1.0"] {
            let mut s = TcpStream::connect(gw.addr).await.unwrap();
            let req = format!("GET / HTTP/{version}\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
            s.write_all(req.as_bytes()).await.unwrap();
            let mut out = Vec::new();
            let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await;
            let text = String::from_utf8_lossy(&out).into_owned();
            let (head, body) = text.split_once("\r\n\r\n").expect("a response");
            let head = head.to_ascii_lowercase();
            assert!(
                head.starts_with(&format!("http/{version} 200"))
                    || head.starts_with("http/1.1 200"),
                "{engine:?} {version}: {text}"
            );
            assert!(
                !head.contains("content-length"),
                "{engine:?} {version}: both framings reached the client: {text}"
            );
            assert!(body.contains("hello"), "{engine:?} {version}: {text}");
            if version == "1.1" {
                assert!(
                    head.contains("transfer-encoding: chunked"),
                    "{engine:?}: {text}"
                );
            }
        }
    }
}

/// (status, body) of `GET /headers` for `shop` with `X-Forwarded-For: xff` if given.
async fn headers_with(gw: &TestGateway, xff: Option<&str>) -> (u16, String) {
    let mut r = client().get(gw.url("/headers")).header("host", HOST);
    if let Some(v) = xff {
        r = r.header("x-forwarded-for", v);
    }
    let r = r.send().await.expect("request");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

#[tokio::test]
async fn x_forwarded_for_is_believed_only_from_trusted_proxies() {
    let b = TestBackend::start("b").await;
    let snap = || {
        Snap::new()
            .app("shop", &[b.addr])
            .block("203.0.113.9")
            .build()
    };
    for engine in ENGINES {
        // No trusted proxy (the default): the peer is the client, its header is replaced.
        let gw = TestGateway::start(config(engine), snap()).await;
        let (code, body) = headers_with(&gw, Some("203.0.113.9")).await;
        assert_eq!(
            code, 200,
            "{engine:?}: a forged address escapes nothing: {body}"
        );
        assert!(
            body.contains("x-forwarded-for: 127.0.0.1\n"),
            "{engine:?}: {body}"
        );
        assert!(!body.contains("203.0.113.9"), "{engine:?}: {body}");
        drop(gw);

        // Loopback trusted: the right-most untrusted address is the client.
        let mut c = config(engine);
        c.trusted_proxies = vec![
            "127.0.0.0/8".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ];
        let gw = TestGateway::start(c, snap()).await;
        let (code, body) = headers_with(&gw, Some("198.51.100.1, 203.0.113.9")).await;
        assert_eq!(
            code, 403,
            "{engine:?}: the blacklist applies to the real client: {body}"
        );
        let (code, body) = headers_with(&gw, Some("203.0.113.9, 198.51.100.7, 10.1.2.3")).await;
        assert_eq!(code, 200, "{engine:?}: {body}");
        assert!(
            body.contains("x-forwarded-for: 198.51.100.7, 10.1.2.3, 127.0.0.1\n"),
            "{engine:?}: what the backend sees starts with the real client: {body}"
        );
        let (code, body) = headers_with(&gw, None).await;
        assert_eq!(code, 200, "{engine:?}: {body}");
        assert!(
            body.contains("x-forwarded-for: 127.0.0.1\n"),
            "{engine:?}: {body}"
        );
    }
}

#[tokio::test]
async fn two_host_headers_are_refused_on_every_path() {
    let b = TestBackend::start("b").await;
    let snap = Snap::new()
        .app("shop", &[b.addr])
        .sleeping("sleepy")
        .build();
    for engine in ENGINES {
        let gw = TestGateway::start(config(engine), snap.clone()).await;
        let requests = [
            // The fast path (or hyper), an app with an address.
            format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nHost: other.caas.localhost\r\n\r\n"),
            // HTTP/1.0: handed over to hyper on the own engine.
            format!("GET / HTTP/1.0\r\nHost: {HOST}\r\nHost: other.caas.localhost\r\n\r\n"),
            // A sleeping app: refused at once, never held.
            "GET / HTTP/1.1\r\nHost: sleepy.caas.localhost\r\nHost: shop.caas.localhost\r\n\r\n"
                .to_owned(),
        ];
        for req in &requests {
            let answer = raw(gw.addr, req.as_bytes()).await;
            let status = answer.split_once("\r\n").map(|(l, _)| l).unwrap_or("");
            assert!(
                status.starts_with("HTTP/1.") && status.contains(" 400 "),
                "{engine:?} {req:?}: {answer}"
            );
        }
        let answer = raw(
            gw.admin,
            b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 400"), "admin: {answer}");
    }
    assert_eq!(b.hits(), 0, "no backend saw any of them");
}
