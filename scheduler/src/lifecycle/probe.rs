//! Waiting for a new instance's health path before it is registered, with the same check the
//! registry's health checker makes afterwards (`caas_registry::check_once`).

use caas_types::Endpoint;
use std::time::Duration;

/// Whether `GET {path}` on `endpoint` answers 2xx within `timeout`.
pub async fn check(endpoint: Endpoint, path: &str, timeout: Duration) -> bool {
    caas_registry::check_once(endpoint, path, timeout).await
}

/// Polls `check` every `every` until it passes or `deadline` elapses.
pub async fn wait_healthy(
    endpoint: Endpoint,
    path: &str,
    per_try: Duration,
    every: Duration,
    deadline: Duration,
) -> bool {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if check(endpoint, path, per_try).await {
            return true;
        }
        if tokio::time::Instant::now() + every > until {
            return false;
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn server(status: &'static str) -> Endpoint {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(
                        format!("HTTP/1.1 {status}\r\ncontent-length: 4\r\n\r\npong").as_bytes(),
                    )
                    .await;
            }
        });
        Endpoint::new(addr.ip(), addr.port()).expect("endpoint")
    }

    #[tokio::test]
    async fn passes_on_2xx_only() {
        let ok = server("200 OK").await;
        let bad = server("503 Service Unavailable").await;
        assert!(check(ok, "/_ping", Duration::from_secs(2)).await);
        assert!(!check(bad, "/_ping", Duration::from_secs(2)).await);
    }

    #[tokio::test]
    async fn a_closed_port_fails() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        drop(l);
        let e = Endpoint::new(addr.ip(), addr.port()).expect("endpoint");
        assert!(!check(e, "/_ping", Duration::from_secs(2)).await);
        assert!(
            !wait_healthy(
                e,
                "/_ping",
                Duration::from_millis(100),
                Duration::from_millis(20),
                Duration::from_millis(100)
            )
            .await
        );
    }
}
