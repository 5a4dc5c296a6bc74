//! The HTTP/1.1 fast path on the wire: pipelining, chunked bodies both ways, backends that drop
//! keep-alive connections or answer without a length, smuggling shapes, what is never sent
//! twice, what goes to the general path, and the `hyper` engine still serving everything.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use caas_gateway::Http1Engine;
use common::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const HOST: &str = "shop.caas.localhost";

/// A bare TCP backend: for every request head it reads it counts one, then writes `answer`
/// (nothing at all when empty) and, with `close`, closes the connection without saying so.
async fn raw_backend(answer: &'static [u8], close: bool) -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    buf.drain(..end + 4);
                    counter.fetch_add(1, Ordering::Relaxed);
                    if answer.is_empty() || s.write_all(answer).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// Everything the gateway sends until it closes the connection.
async fn until_closed(mut s: TcpStream) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let b = TestBackend::start("b").await;
    let gw = TestGateway::start(test_config(), Snap::new().app("shop", &[b.addr]).build()).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let requests = format!(
        "GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n\
         POST /echo HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 6\r\n\r\nsecond\
         GET /headers HTTP/1.1\r\nHost: {HOST}\r\nX-Third: 3\r\nConnection: close\r\n\r\n"
    );
    s.write_all(requests.as_bytes()).await.unwrap();
    let out = until_closed(s).await;
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 3, "{out}");
    let first = out.find("\r\n\r\nb").expect("first answer");
    let second = out.find("second").expect("second answer");
    let third = out.find("x-third: 3").expect("third answer");
    assert!(first < second && second < third, "{out}");
    assert!(out.contains("connection: close"), "{out}");
}

#[tokio::test]
async fn chunked_bodies_pass_through_both_ways_and_keep_the_connection() {
    let b = TestBackend::start("b").await;
    let gw = TestGateway::start(test_config(), Snap::new().app("shop", &[b.addr]).build()).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let chunked = format!(
        "POST /echo HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n\
         5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n\
         GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(chunked.as_bytes()).await.unwrap();
    let out = until_closed(s).await;
    let (echo, next) = out
        .split_once("0\r\n\r\n")
        .expect("the echo ends its chunks");
    assert!(echo.starts_with("HTTP/1.1 200 OK"), "{out}");
    assert!(
        echo.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{out}"
    );
    let body: String = echo
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .split("\r\n")
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s)
        .collect();
    assert_eq!(body, "hello, world", "{out}");
    assert!(next.starts_with("HTTP/1.1 200 OK"), "{out}");
    assert!(next.ends_with("\r\n\r\nb"), "{out}");
}

#[tokio::test]
async fn a_backend_that_drops_keep_alive_connections_fails_no_get() {
    // Answers once per connection, then closes it without a `Connection: close`: every pooled
    // connection is stale by the time it is used again.
    let (addr, seen) = raw_backend(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true).await;
    let gw = TestGateway::start(test_config(), Snap::new().app("shop", &[addr]).build()).await;
    let c = client();
    for i in 0..100 {
        let (status, body) = get(&c, &gw, HOST, "/").await;
        assert_eq!((status, body.as_str()), (200, "ok"), "request {i}");
    }
    assert_eq!(
        seen.load(Ordering::Relaxed),
        100,
        "each request reached it once"
    );
}

#[tokio::test]
async fn a_post_is_never_sent_twice_and_a_get_is_retried() {
    // `dead` reads each request and closes without a word: it may have acted on it.
    let (dead, dead_seen) = raw_backend(b"", true).await;
    let live = TestBackend::start("live").await;
    let gw = TestGateway::start(
        test_config(),
        Snap::new().app("shop", &[dead, live.addr]).build(),
    )
    .await;
    let c = client();
    let mut failed = 0;
    for _ in 0..6 {
        let r = c
            .post(gw.url("/echo"))
            .header("host", HOST)
            .body("once")
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            200 => assert_eq!(r.text().await.unwrap(), "once"),
            502 => failed += 1,
            other => panic!("unexpected {other}"),
        }
    }
    let posts_at_dead = dead_seen.load(Ordering::Relaxed);
    assert!(
        failed > 0,
        "round-robin sent some POSTs to the dead backend"
    );
    assert_eq!(
        failed, posts_at_dead,
        "every POST the dead backend saw failed; none went on to the live one"
    );
    for _ in 0..6 {
        assert_eq!(get(&c, &gw, HOST, "/").await, (200, "live".to_owned()));
    }
}

#[tokio::test]
async fn a_response_without_a_length_ends_with_the_connection() {
    let (addr, _) = raw_backend(b"HTTP/1.1 200 OK\r\nX-Kind: raw\r\n\r\nuntil the end", true).await;
    let gw = TestGateway::start(test_config(), Snap::new().app("shop", &[addr]).build()).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let out = until_closed(s).await;
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.contains("connection: close\r\n"), "{out}");
    assert!(out.contains("X-Kind: raw\r\n"), "{out}");
    assert!(out.ends_with("\r\n\r\nuntil the end"), "{out}");
}

#[tokio::test]
async fn smuggling_shapes_are_refused_before_any_backend() {
    let b = TestBackend::start("b").await;
    let gw = TestGateway::start(test_config(), Snap::new().app("shop", &[b.addr]).build()).await;
    for request in [
        format!("POST /echo HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        format!("POST /echo HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde"),
        format!("POST /echo HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked, identity\r\n\r\n"),
        format!("POST /echo HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"),
        format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nHost: other.caas.localhost\r\n\r\n"),
    ] {
        let r = raw(gw.addr, request.as_bytes()).await;
        assert!(r.starts_with("HTTP/1.1 400"), "{request:?} -> {r}");
    }
    assert_eq!(b.hits(), 0, "nothing reached the backend");
}

#[tokio::test]
async fn http_1_0_and_expect_go_to_the_general_path() {
    let b = TestBackend::start("b").await;
    let gw = TestGateway::start(test_config(), Snap::new().app("shop", &[b.addr]).build()).await;
    let s = {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(format!("GET / HTTP/1.0\r\nHost: {HOST}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        s
    };
    let out = until_closed(s).await;
    assert!(out.starts_with("HTTP/1.0 200 OK"), "{out}");
    assert!(out.ends_with("\r\n\r\nb"), "{out}");
    // A body sent after `100 Continue`, and a request on the same connection after it.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(
        format!("PUT /echo HTTP/1.1\r\nHost: {HOST}\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(WAIT, s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100 Continue"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    let rest = format!("helloGET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
    s.write_all(rest.as_bytes()).await.unwrap();
    let out = until_closed(s).await;
    assert!(out.contains("\r\n\r\nhello"), "{out}");
    assert!(out.ends_with("\r\n\r\nb"), "{out}");
    // Both connections went over, and operators can see it.
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("\ncaas_gateway_handovers_total 2\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_hyper_engine_still_serves_everything() {
    let (backends, addrs): (Vec<_>, Vec<_>) = {
        let mut v = Vec::new();
        for n in ["b0", "b1", "b2"] {
            v.push(TestBackend::start(n).await);
        }
        let addrs = v.iter().map(|b| b.addr).collect();
        (v, addrs)
    };
    let mut config = test_config();
    config.http1 = Http1Engine::Hyper;
    let gw = TestGateway::start(config, Snap::new().app("shop", &addrs).build()).await;
    let c = client();
    for _ in 0..30 {
        assert_eq!(get(&c, &gw, HOST, "/").await.0, 200);
    }
    for b in &backends {
        assert_eq!(b.hits(), 10, "{} got its third", b.name);
    }
    let (status, headers) = get(&c, &gw, HOST, "/headers").await;
    assert_eq!(status, 200);
    assert!(headers.contains("via: 1.1 caas-gateway\n"), "{headers}");
}

#[tokio::test]
async fn a_hung_backend_gets_504_after_the_response_timeout_on_both_paths() {
    for engine in [Http1Engine::Own, Http1Engine::Hyper] {
        let b = TestBackend::start("b").await;
        let mut config = test_config();
        config.http1 = engine;
        config.response_timeout_ms = 400;
        let gw = TestGateway::start(config, Snap::new().app("shop", &[b.addr]).build()).await;
        let c = client();
        let started = std::time::Instant::now();
        let (status, body) = get(&c, &gw, HOST, "/slow").await;
        assert_eq!(
            (status, body.as_str()),
            (504, "the app's instance did not answer in time\n"),
            "{engine:?}"
        );
        assert!(
            started.elapsed() < WAIT,
            "{engine:?}: answered by the timeout, not by the client giving up"
        );
        // The backend is not poisoned for the requests after.
        b.release.notify_waiters();
        assert_eq!(
            get(&c, &gw, HOST, "/").await,
            (200, "b".to_owned()),
            "{engine:?}"
        );
    }
}
