//! The proxy against plain in-test backends: balancing, routing answers, filters, hygiene,
//! limits, timeouts, streaming, upgrades, failover and shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use caas_testkit::eventually;
use common::*;
use futures::StreamExt;
use std::collections::HashMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HOST: &str = "shop.caas.localhost";

async fn three() -> (Vec<TestBackend>, Vec<std::net::SocketAddr>) {
    let mut v = Vec::new();
    for n in ["b0", "b1", "b2"] {
        v.push(TestBackend::start(n).await);
    }
    let addrs = v.iter().map(|b| b.addr).collect();
    (v, addrs)
}

#[tokio::test]
async fn round_robin_is_even_across_three_backends() {
    let (backends, addrs) = three().await;
    let gw = TestGateway::start(test_config(), Snap::new().app("shop", &addrs).build()).await;
    let c = client();
    let mut seen: HashMap<String, u32> = HashMap::new();
    for _ in 0..300 {
        let (status, body) = get(&c, &gw, HOST, "/").await;
        assert_eq!(status, 200);
        *seen.entry(body).or_default() += 1;
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.values().all(|n| *n == 100), "exactly even: {seen:?}");
    drop(backends);
}

#[tokio::test]
async fn new_instances_get_traffic_and_removed_ones_none() {
    let (backends, addrs) = three().await;
    let gw = TestGateway::start(test_config(), Snap::new().app("shop", &addrs[..2]).build()).await;
    let c = client();
    gw.publish(Snap::new().app("shop", &addrs).build());
    eventually("the new instance gets traffic", || async {
        (get(&c, &gw, HOST, "/").await.1 == "b2").then_some(())
    })
    .await;
    gw.publish(Snap::new().app("shop", &addrs[1..]).build());
    // Once the table swapped, b0 never answers again: wait until 6 answers in a row skip it, then
    // check 60 more.
    eventually("the removed instance stops getting traffic", || async {
        let mut none = true;
        for _ in 0..6 {
            none &= get(&c, &gw, HOST, "/").await.1 != "b0";
        }
        none.then_some(())
    })
    .await;
    let before = backends[0].hits();
    for _ in 0..60 {
        assert_ne!(get(&c, &gw, HOST, "/").await.1, "b0");
    }
    assert_eq!(backends[0].hits(), before);
}

#[tokio::test]
async fn unknown_hosts_get_404_and_apps_without_instances_503() {
    let b = TestBackend::start("b").await;
    let snap = Snap::new()
        .app("shop", &[b.addr])
        .app("idle", &[])
        .domain("www.example.com", "shop")
        .domain("old.example.com", "gone")
        .build();
    let gw = TestGateway::start(test_config(), snap).await;
    let c = client();
    let (s, body) = get(&c, &gw, "nothing.caas.localhost", "/").await;
    assert_eq!((s, body.as_str()), (404, "no app is routed at this host\n"));
    assert_eq!(get(&c, &gw, "example.org", "/").await.0, 404);
    let (s, body) = get(&c, &gw, "idle.caas.localhost", "/").await;
    assert_eq!(s, 503);
    assert!(
        body.contains("idle") && body.contains("no running instance"),
        "{body}"
    );
    assert_eq!(get(&c, &gw, "old.example.com", "/").await.0, 503);
    // The port in Host is ignored; case does not matter.
    assert_eq!(
        get(&c, &gw, "SHOP.caas.localhost:8080", "/").await,
        (200, "b".into())
    );
}

#[tokio::test]
async fn custom_domains_route_to_their_app() {
    let shop = TestBackend::start("shop").await;
    let blog = TestBackend::start("blog").await;
    let snap = Snap::new()
        .app("shop", &[shop.addr])
        .app("blog", &[blog.addr])
        .domain("www.example.com", "shop")
        .build();
    let gw = TestGateway::start(test_config(), snap).await;
    let c = client();
    assert_eq!(
        get(&c, &gw, "www.example.com", "/").await,
        (200, "shop".into())
    );
    assert_eq!(
        get(&c, &gw, "www.example.com:443", "/").await,
        (200, "shop".into())
    );
    gw.publish(
        Snap::new()
            .app("shop", &[shop.addr])
            .app("blog", &[blog.addr])
            .domain("www.example.com", "blog")
            .build(),
    );
    eventually("the domain follows its new app", || async {
        (get(&c, &gw, "www.example.com", "/").await.1 == "blog").then_some(())
    })
    .await;
}

#[tokio::test]
async fn blacklist_applies_live() {
    let b = TestBackend::start("b").await;
    let gw = TestGateway::start(test_config(), Snap::new().app("shop", &[b.addr]).build()).await;
    let c = client();
    assert_eq!(get(&c, &gw, HOST, "/").await.0, 200);
    gw.publish(
        Snap::new()
            .app("shop", &[b.addr])
            .block("127.0.0.0/8")
            .build(),
    );
    eventually("the blacklist refuses us", || async {
        (get(&c, &gw, HOST, "/").await.0 == 403).then_some(())
    })
    .await;
    gw.publish(Snap::new().app("shop", &[b.addr]).block("10.0.0.1").build());
    eventually("lifting it lets us in", || async {
        (get(&c, &gw, HOST, "/").await.0 == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_killed_backend_fails_no_get() {
    let (mut backends, addrs) = three().await;
    let mut config = test_config();
    config.eject_ms = 60_000;
    let gw = TestGateway::start(config, Snap::new().app("shop", &addrs).build()).await;
    let c = client();
    // Warm the pool so the killed backend has open keep-alive connections to break.
    for _ in 0..30 {
        assert_eq!(get(&c, &gw, HOST, "/").await.0, 200);
    }
    backends[1].kill().await;
    let mut seen: HashMap<String, u32> = HashMap::new();
    for _ in 0..300 {
        let (status, body) = get(&c, &gw, HOST, "/").await;
        assert_eq!(status, 200, "GET failed after a backend died: {body}");
        *seen.entry(body).or_default() += 1;
    }
    assert!(!seen.contains_key("b1"), "{seen:?}");
    assert!(
        (140..=160).contains(&seen["b0"]) && (140..=160).contains(&seen["b2"]),
        "the survivors share the load evenly: {seen:?}"
    );
    // Passive health: the dead backend was skipped, not tried 300 times.
    let metrics = gw.metrics().await;
    let errors: u64 = metrics
        .lines()
        .find(|l| l.starts_with("caas_gateway_upstream_errors_total{app=\"shop\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("upstream error counter");
    assert!(
        (1..=10).contains(&errors),
        "dead backend ejected after a few errors, saw {errors}"
    );
}

/// Reads `r`'s body as it streams in, checking that every byte is `byte`; how many there were.
async fn count_all(r: reqwest::Response, byte: u8, what: &str) -> u64 {
    let mut stream = r.bytes_stream();
    let mut got = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap_or_else(|e| panic!("{what} chunk: {e}"));
        assert!(chunk.iter().all(|b| *b == byte));
        got += chunk.len() as u64;
    }
    got
}

#[tokio::test]
async fn streams_100_mb_both_ways() {
    const SIZE: u64 = 100 * 1024 * 1024;
    let b = TestBackend::start("b").await;
    let gw = TestGateway::start(test_config(), Snap::new().app("shop", &[b.addr]).build()).await;
    let c = client();
    // Download.
    let r = c
        .get(gw.url(&format!("/bytes/{SIZE}")))
        .header("host", HOST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(count_all(r, b'x', "download").await, SIZE);
    // Upload, echoed back while it is still being sent.
    let chunks = futures::stream::iter(
        (0..SIZE / (1024 * 1024))
            .map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'y'; 1024 * 1024]))),
    );
    let r = c
        .post(gw.url("/echo"))
        .header("host", HOST)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(count_all(r, b'y', "echo").await, SIZE);
}

#[tokio::test]
async fn websocket_echo_passes_through() {
    let b = TestBackend::start("b").await;
    // A short header timeout: an upgraded connection quiet for longer is not cut by it.
    let mut config = test_config();
    config.header_timeout_ms = 300;
    let gw = TestGateway::start(config, Snap::new().app("shop", &[b.addr]).build()).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(
        format!(
            "GET /ws HTTP/1.1\r\nHost: {HOST}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        s.read_exact(&mut byte).await.expect("101 head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    for msg in ["hello", "through the gateway"] {
        ws_write(&mut s, msg.as_bytes(), Some([1, 2, 3, 4])).await;
        let (op, payload) = ws_read(&mut s).await.expect("echo frame");
        assert_eq!((op, payload.as_slice()), (1, msg.as_bytes()));
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
}

#[tokio::test]
async fn forwarded_headers_and_via_are_set_and_hop_by_hop_dropped() {
    let b = TestBackend::start("b").await;
    let gw = TestGateway::start(test_config(), Snap::new().app("shop", &[b.addr]).build()).await;
    let r = client()
        .get(gw.url("/headers"))
        .header("host", "shop.caas.localhost:8080")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "https")
        .header("connection", "keep-alive, x-private")
        .header("x-private", "secret")
        .send()
        .await
        .unwrap();
    assert!(r
        .headers()
        .get("via")
        .is_some_and(|v| v == "1.1 caas-gateway"));
    let body = r.text().await.unwrap();
    // The client is no trusted proxy: what it claims in X-Forwarded-For is replaced.
    assert!(body.contains("x-forwarded-for: 127.0.0.1\n"), "{body}");
    assert!(!body.contains("203.0.113.9"), "{body}");
    assert!(body.contains("x-forwarded-proto: http\n"), "{body}");
    assert!(
        body.contains("x-forwarded-host: shop.caas.localhost:8080\n"),
        "{body}"
    );
    assert!(body.contains("host: shop.caas.localhost:8080\n"), "{body}");
    assert!(body.contains("via: 1.1 caas-gateway\n"), "{body}");
    assert!(!body.contains("x-private"), "{body}");
}

#[tokio::test]
async fn oversized_headers_get_431_and_oversized_bodies_413() {
    let b = TestBackend::start("b").await;
    let mut config = test_config();
    config.max_header_bytes = 8 * 1024;
    config.max_headers = 20;
    config.max_body_bytes = 1024;
    let gw = TestGateway::start(config, Snap::new().app("shop", &[b.addr]).build()).await;
    let big = "a".repeat(16 * 1024);
    let r = raw(
        gw.addr,
        format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Big: {big}\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 431"), "{r}");
    let many: String = (0..40).map(|i| format!("X-H{i}: v\r\n")).collect();
    let r = raw(
        gw.addr,
        format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n{many}\r\n").as_bytes(),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 431"), "{r}");
    let c = client();
    let r = c
        .post(gw.url("/echo"))
        .header("host", HOST)
        .body(vec![0u8; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // Without a length up front the limit is enforced while streaming.
    let chunks = futures::stream::iter(
        (0..8).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![0u8; 512]))),
    );
    let r = c
        .post(gw.url("/echo"))
        .header("host", HOST)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await;
    match r {
        Ok(r) => {
            // The backend may already have started answering; then the stream is cut instead.
            if r.status() != 413 {
                assert!(
                    r.bytes().await.is_err(),
                    "oversized stream must not complete"
                );
            }
        }
        Err(e) => assert!(e.is_request() || e.is_body(), "{e}"),
    }
    // Within the limits all is well.
    let r = c
        .post(gw.url("/echo"))
        .header("host", HOST)
        .body(vec![1u8; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn slow_header_clients_are_cut_off_while_others_are_served() {
    let b = TestBackend::start("b").await;
    let mut config = test_config();
    config.header_timeout_ms = 2_000;
    let gw = TestGateway::start(config, Snap::new().app("shop", &[b.addr]).build()).await;
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Slow: {}\r\n\r\n",
        "z".repeat(40)
    );
    let mut slow = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let addr = gw.addr;
    let slowloris = tokio::spawn(async move {
        // One byte a second; the full head would take about a minute.
        for (sent, byte) in request.bytes().enumerate() {
            if slow.write_all(&[byte]).await.is_err() {
                return Some(sent);
            }
            let mut buf = [0u8; 256];
            match tokio::time::timeout(Duration::from_secs(1), slow.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Some(sent),
                Ok(Ok(n)) => {
                    // hyper may answer 408 before closing; that is a cut-off too.
                    let text = String::from_utf8_lossy(&buf[..n]).to_string();
                    assert!(!text.contains("200 OK"), "slow client was served: {text}");
                    return Some(sent);
                }
                Err(_) => {}
            }
        }
        None
    });
    // Meanwhile other clients are served normally.
    let c = client();
    while !slowloris.is_finished() {
        assert_eq!(get(&c, &gw, HOST, "/").await.0, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sent = slowloris
        .await
        .unwrap()
        .expect("the slow client was cut off before finishing its head");
    let _ = addr;
    assert!(sent < 40, "cut off after {sent} bytes");
}

#[tokio::test]
async fn h2c_clients_are_served() {
    let b = TestBackend::start("b").await;
    let gw = TestGateway::start(test_config(), Snap::new().app("shop", &[b.addr]).build()).await;
    let stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("h2c handshake");
    tokio::spawn(conn);
    let req = hyper::Request::get(format!("http://{HOST}/headers"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let r = send.send_request(req).await.expect("h2 response");
    assert_eq!(r.version(), hyper::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    assert!(r
        .headers()
        .get("via")
        .is_some_and(|v| v == "2 caas-gateway"));
    let body = http_body_util::BodyExt::collect(r.into_body())
        .await
        .unwrap()
        .to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert!(
        body.contains("x-forwarded-host: shop.caas.localhost"),
        "{body}"
    );
    assert!(body.contains("host: shop.caas.localhost"), "{body}");
}

#[tokio::test]
async fn graceful_shutdown_finishes_requests_in_flight() {
    let b = TestBackend::start("b").await;
    let mut gw =
        TestGateway::start(test_config(), Snap::new().app("shop", &[b.addr]).build()).await;
    let c = client();
    let url = gw.url("/slow");
    let pending = tokio::spawn(async move {
        let r = c
            .get(url)
            .header("host", HOST)
            .send()
            .await
            .expect("answered");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    });
    eventually("the slow request reached the backend", || async {
        (b.hits() == 1).then_some(())
    })
    .await;
    let serving = gw.shutdown();
    // New connections are refused once the listener is closed.
    eventually("the listener closes", || async {
        tokio::net::TcpStream::connect(gw.addr)
            .await
            .is_err()
            .then_some(())
    })
    .await;
    b.release.notify_one();
    assert_eq!(pending.await.unwrap(), (200, "b slow".into()));
    serving.await.unwrap().expect("clean shutdown");
}

#[tokio::test]
async fn metrics_and_healthz_are_on_the_admin_address() {
    let b = TestBackend::start("b").await;
    let gw = TestGateway::start(test_config(), Snap::new().app("shop", &[b.addr]).build()).await;
    let c = client();
    for _ in 0..3 {
        get(&c, &gw, HOST, "/").await;
    }
    get(&c, &gw, "nope.caas.localhost", "/").await;
    let health = c
        .get(format!("http://{}/healthz", gw.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let m = gw.metrics().await;
    assert!(
        m.contains("caas_gateway_requests_total{app=\"shop\",class=\"2xx\"} 3"),
        "{m}"
    );
    assert!(m.contains("caas_gateway_unknown_host_total 1"), "{m}");
    assert!(
        m.contains("caas_gateway_request_duration_seconds_count{app=\"shop\"} 3"),
        "{m}"
    );
    assert!(
        m.contains("caas_gateway_response_bytes_total{app=\"shop\"} 3"),
        "{m}"
    );
    // The admin address is not a proxy, and the proxy does not serve metrics.
    assert_eq!(
        get(&c, &gw, "metrics.caas.localhost", "/metrics").await.0,
        404
    );
}

/// Sends one GET on `conn` and reads the answer: `None` if the connection is closed.
async fn raw_get(conn: &mut tokio::net::TcpStream) -> Option<String> {
    let req = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    conn.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .expect("content-length");
            if body.len() >= len {
                return Some(text);
            }
        }
    }
}

#[tokio::test]
async fn idle_keep_alive_connections_live_until_the_idle_timeout() {
    let b = TestBackend::start("b").await;
    let mut config = test_config();
    config.header_timeout_ms = 300;
    config.idle_timeout_ms = 3_000;
    let gw = TestGateway::start(config, Snap::new().app("shop", &[b.addr]).build()).await;
    let mut conn = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let first = raw_get(&mut conn).await.expect("first answer");
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    // Idle for several header timeouts (the cut-off is at most 1.25 of one), well within the
    // idle timeout: the connection must still serve.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let second = raw_get(&mut conn)
        .await
        .expect("the keep-alive connection survived an idle gap longer than the header timeout");
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    // Past the idle timeout the gateway closes it.
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(30), conn.read(&mut buf))
        .await
        .expect("closed by the idle timeout");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
}

#[tokio::test]
async fn a_silent_new_connection_is_cut_at_the_header_timeout() {
    let b = TestBackend::start("b").await;
    let mut config = test_config();
    config.header_timeout_ms = 300;
    config.idle_timeout_ms = 60_000;
    let gw = TestGateway::start(config, Snap::new().app("shop", &[b.addr]).build()).await;
    let mut conn = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let mut buf = [0u8; 16];
    // Far below the idle timeout: only the header timeout can have closed it.
    let closed = tokio::time::timeout(Duration::from_secs(20), conn.read(&mut buf))
        .await
        .expect("closed by the header timeout");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
}

#[tokio::test]
async fn healthz_reports_a_disconnected_route_cache_and_still_routes() {
    let b = TestBackend::start("b").await;
    let (status, rx) = tokio::sync::watch::channel(caas_gateway::RouteStatus::Live);
    let gw = TestGateway::start_with_status(
        test_config(),
        Snap::new().app("shop", &[b.addr]).build(),
        rx,
    )
    .await;
    let c = client();
    let health = |c: reqwest::Client| {
        let url = format!("http://{}/healthz", gw.admin);
        async move {
            let r = c.get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    assert_eq!(health(c.clone()).await, (200, "ok\n".to_owned()));
    status.send_replace(caas_gateway::RouteStatus::Disconnected {
        since: std::time::Instant::now(),
        reason: "no ZooKeeper session".into(),
    });
    let (code, text) = health(c.clone()).await;
    assert_eq!(code, 503, "{text}");
    assert!(
        text.contains("disconnected") && text.contains("no ZooKeeper session"),
        "{text}"
    );
    // The last good routes still serve.
    assert_eq!(get(&c, &gw, HOST, "/").await, (200, "b".to_owned()));
    status.send_replace(caas_gateway::RouteStatus::Starting {
        reason: "connection refused".into(),
    });
    let (code, text) = health(c.clone()).await;
    assert_eq!(code, 503, "{text}");
    assert!(text.contains("not started"), "{text}");
    status.send_replace(caas_gateway::RouteStatus::Live);
    assert_eq!(health(c.clone()).await.0, 200);
}
