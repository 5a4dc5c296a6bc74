//! The gateway's own test support (waits, ZooKeeper chroots and container namespaces come from
//! `caas-testkit`): in-test backends (plain hyper servers), a gateway run in-process with a
//! route channel the test publishes to, snapshot builders and raw HTTP helpers.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod containers;

use bytes::Bytes;
use caas_gateway::{Config, Gateway, RouteSnapshot};
use caas_registry::{IpRule, RouteEntry, WakeState};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, Notify};
use tokio::task::JoinSet;

/// How long a raw read waits for the gateway: shorter than [`client`]'s 60 s timeout, so a
/// test can tell an answer the gateway's own timeout produced from the client giving up.
pub const WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Backends

/// A body of `left` bytes of `b'x'`, produced in 64 KiB chunks (never in memory whole).
pub struct Pattern {
    pub left: u64,
}

impl Body for Pattern {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(64 * 1024);
        self.left -= n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'x'; n as usize])))))
    }
    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.left)
    }
}

type BoxBody =
    http_body_util::combinators::BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

fn boxed<B>(b: B) -> BoxBody
where
    B: Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    b.map_err(Into::into).boxed()
}

/// A plain hyper server standing in for an app instance.
///
/// `GET /` answers its name; `GET /headers` lists the request headers; `POST|PUT /echo` streams
/// the body back; `GET /bytes/N` streams N bytes; `GET /slow` waits for [`TestBackend::release`];
/// `GET /ws` accepts a WebSocket upgrade and echoes frames.
pub struct TestBackend {
    pub name: String,
    pub addr: SocketAddr,
    pub hits: Arc<AtomicU64>,
    pub release: Arc<Notify>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestBackend {
    pub async fn start(name: &str) -> TestBackend {
        Self::start_at("127.0.0.1:0".parse().unwrap(), name).await
    }

    pub async fn start_at(addr: SocketAddr, name: &str) -> TestBackend {
        let listener = TcpListener::bind(addr).await.expect("bind backend");
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicU64::new(0));
        let release = Arc::new(Notify::new());
        let (stop, mut stopped) = oneshot::channel();
        let (n, h, r) = (name.to_owned(), hits.clone(), release.clone());
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let (stream, _) = tokio::select! {
                    _ = &mut stopped => break,
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                };
                let (n, h, r) = (n.clone(), h.clone(), r.clone());
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        backend_handle(n.clone(), h.clone(), r.clone(), req)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
            // A killed instance: listener gone, every open connection cut.
            conns.abort_all();
        });
        TestBackend {
            name: name.to_owned(),
            addr,
            hits,
            release,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the server as a crash would: refuses new connections, cuts open ones.
    pub async fn kill(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

async fn backend_handle(
    name: String,
    hits: Arc<AtomicU64>,
    release: Arc<Notify>,
    mut req: Request<Incoming>,
) -> Result<Response<BoxBody>, std::convert::Infallible> {
    hits.fetch_add(1, Ordering::Relaxed);
    let path = req.uri().path().to_owned();
    let text = |s: String| Response::new(boxed(Full::new(Bytes::from(s))));
    let resp = match (req.method().as_str(), path.as_str()) {
        ("GET", "/") => text(name),
        ("GET", "/headers") => {
            let mut s = String::new();
            for (k, v) in req.headers() {
                s.push_str(&format!("{}: {}\n", k, v.to_str().unwrap_or("?")));
            }
            text(s)
        }
        ("POST" | "PUT", "/echo") => Response::new(boxed(req.into_body())),
        ("GET", "/slow") => {
            release.notified().await;
            text(format!("{name} slow"))
        }
        ("GET", "/ws") => {
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(up) = on.await {
                    ws_echo(TokioIo::new(up)).await;
                }
            });
            let mut r = Response::new(boxed(Full::new(Bytes::new())));
            *r.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
            r.headers_mut()
                .insert("connection", "upgrade".parse().unwrap());
            r.headers_mut()
                .insert("upgrade", "websocket".parse().unwrap());
            r.headers_mut()
                .insert("sec-websocket-accept", "test".parse().unwrap());
            r
        }
        ("GET", p) if p.starts_with("/bytes/") => {
            let n: u64 = p["/bytes/".len()..].parse().unwrap_or(0);
            Response::new(boxed(Pattern { left: n }))
        }
        _ => {
            let mut r = text("not found".into());
            *r.status_mut() = hyper::StatusCode::NOT_FOUND;
            r
        }
    };
    Ok(resp)
}

/// Reads one WebSocket frame (payload < 126 bytes, as the tests send): (opcode, payload).
pub async fn ws_read<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    s.read_exact(&mut head).await.ok()?;
    let masked = head[1] & 0x80 != 0;
    let len = usize::from(head[1] & 0x7f);
    let mut mask = [0u8; 4];
    if masked {
        s.read_exact(&mut mask).await.ok()?;
    }
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await.ok()?;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
    }
    Some((head[0] & 0x0f, payload))
}

/// Writes one final WebSocket text frame, masked as a client must.
pub async fn ws_write<S: tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) {
    let mut frame = vec![
        0x81,
        payload.len() as u8 | if mask.is_some() { 0x80 } else { 0 },
    ];
    match mask {
        Some(m) => {
            frame.extend_from_slice(&m);
            frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
        }
        None => frame.extend_from_slice(payload),
    }
    s.write_all(&frame).await.expect("ws write");
}

async fn ws_echo<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut s: S) {
    while let Some((op, payload)) = ws_read(&mut s).await {
        if op == 0x8 {
            break;
        }
        ws_write(&mut s, &payload, None).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Snapshots

static SEQ: AtomicU64 = AtomicU64::new(1);

/// Builds route snapshots for the tests.
#[derive(Default, Clone)]
pub struct Snap(pub RouteSnapshot);

impl Snap {
    pub fn new() -> Snap {
        Snap::default()
    }

    /// Adds `app` with one instance per address (an empty list makes a known app with none).
    pub fn app(mut self, app: &str, addrs: &[SocketAddr]) -> Snap {
        let entries = addrs
            .iter()
            .map(|a| RouteEntry {
                version: "v1".parse().unwrap(),
                container: format!("{:016x}", SEQ.fetch_add(1, Ordering::Relaxed))
                    .parse()
                    .unwrap(),
                endpoint: a.to_string().parse().unwrap(),
            })
            .collect();
        self.0.apps.insert(app.parse().unwrap(), entries);
        self
    }

    /// Adds `app` as a sleeping app: known, no instance, its wake node present.
    pub fn sleeping(mut self, app: &str) -> Snap {
        self.0.apps.insert(app.parse().unwrap(), Vec::new());
        self.0
            .wake
            .insert(app.parse().unwrap(), WakeState::default());
        self
    }

    pub fn domain(mut self, domain: &str, app: &str) -> Snap {
        self.0
            .domains
            .insert(domain.parse().unwrap(), app.parse().unwrap());
        self
    }

    pub fn block(mut self, rule: &str) -> Snap {
        self.0.blacklist.push(rule.parse::<IpRule>().unwrap());
        self
    }

    pub fn build(mut self) -> Arc<RouteSnapshot> {
        self.0.generation = SEQ.fetch_add(1, Ordering::Relaxed);
        Arc::new(self.0)
    }
}

// ---------------------------------------------------------------------------------------------
// The gateway under test

/// A config for tests: free ports, short timeouts.
pub fn test_config() -> Config {
    let mut c = Config::new();
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.admin_listen = "127.0.0.1:0".parse().unwrap();
    c.tls_listen = "127.0.0.1:0".parse().unwrap();
    c
}

/// A gateway running in-process; shut down when dropped.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub tls: Option<SocketAddr>,
    pub routes: watch::Sender<Arc<RouteSnapshot>>,
    stop: Option<oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<caas_gateway::Result<()>>>,
}

impl TestGateway {
    pub async fn start(config: Config, snap: Arc<RouteSnapshot>) -> TestGateway {
        Self::start_gateway(Gateway::bind(config).await.expect("bind gateway"), snap)
    }

    /// A gateway that reports `status` on `/healthz`.
    pub async fn start_with_status(
        config: Config,
        snap: Arc<RouteSnapshot>,
        status: watch::Receiver<caas_gateway::RouteStatus>,
    ) -> TestGateway {
        let gw = Gateway::bind(config).await.expect("bind gateway");
        Self::start_gateway(gw.with_route_status(status), snap)
    }

    fn start_gateway(gw: Gateway, snap: Arc<RouteSnapshot>) -> TestGateway {
        let (addr, admin, tls) = (gw.http_addr(), gw.admin_addr(), gw.tls_addr());
        let (tx, rx) = watch::channel(snap);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(gw.serve(rx, async move {
            let _ = stopped.await;
        }));
        TestGateway {
            addr,
            admin,
            tls,
            routes: tx,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Publishes a new snapshot, as the route cache would.
    pub fn publish(&self, snap: Arc<RouteSnapshot>) {
        self.routes.send_replace(snap);
    }

    /// The Prometheus text of the admin address's `/metrics`.
    pub async fn metrics(&self) -> String {
        client()
            .get(format!("http://{}/metrics", self.admin))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Starts graceful shutdown and returns the serve task.
    pub fn shutdown(&mut self) -> tokio::task::JoinHandle<caas_gateway::Result<()>> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.take().expect("running")
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A keep-alive HTTP client (no proxy from the environment).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// GET `path` from the gateway as host `host`: (status, body).
pub async fn get(c: &reqwest::Client, gw: &TestGateway, host: &str, path: &str) -> (u16, String) {
    let r = c
        .get(gw.url(path))
        .header("host", host)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

/// Sends raw bytes on a new connection and reads the answer until the gateway closes or
/// `until` appears.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(WAIT, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => {
                out.extend_from_slice(&buf[..n]);
                if out.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------------
// ZooKeeper cut-offs

/// A TCP relay in front of ZooKeeper that a test can cut (every connection closed, nothing
/// accepted) and restore on the same address.
pub struct Relay {
    pub addr: SocketAddr,
    target: String,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Relay {
    pub async fn start(target: String) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().unwrap();
        let mut relay = Relay {
            addr,
            target,
            task: None,
        };
        relay.run(listener);
        relay
    }

    fn run(&mut self, listener: TcpListener) {
        let target = self.target.clone();
        self.task = Some(tokio::spawn(async move {
            // Dropped with the task: aborting it closes every relayed connection.
            let mut conns = JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                conns.spawn(async move {
                    if let Ok(mut out) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
            }
        }));
    }

    pub fn cut(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    pub async fn restore(&mut self) {
        let addr = self.addr;
        let listener =
            caas_testkit::eventually("the relay's address is free again", || async move {
                TcpListener::bind(addr).await.ok()
            })
            .await;
        self.run(listener);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
    }
}
