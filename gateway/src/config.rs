//! The gateway's configuration: one `clap` struct, every field a flag and a `CAAS_` env var.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything the gateway can be told. Defaults work on a laptop.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address of the plain HTTP listener (HTTP/1.1 and h2c).
    #[arg(long, env = "CAAS_GATEWAY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Address of the HTTPS listener, used only when a certificate and key are configured.
    #[arg(
        long,
        env = "CAAS_GATEWAY_TLS_LISTEN",
        default_value = "127.0.0.1:8443"
    )]
    pub tls_listen: SocketAddr,

    /// PEM certificate chain for HTTPS; with `--tls-key` it enables the HTTPS listener. Served
    /// to every name `--tls-dir` has no certificate for.
    #[arg(long, env = "CAAS_GATEWAY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for HTTPS.
    #[arg(long, env = "CAAS_GATEWAY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// A directory of certificates chosen by SNI: `{domain}.crt` (PEM chain) with
    /// `{domain}.key` for each custom domain, `_.{domain}.crt` for `*.{domain}`; other names
    /// get `--tls-cert`. Enables the HTTPS listener on its own too.
    #[arg(long, env = "CAAS_GATEWAY_TLS_DIR")]
    pub tls_dir: Option<PathBuf>,

    /// Address of the admin listener serving `/metrics` and `/healthz`; kept apart from user
    /// traffic so it can stay on loopback.
    #[arg(
        long,
        env = "CAAS_GATEWAY_ADMIN_LISTEN",
        default_value = "127.0.0.1:9090"
    )]
    pub admin_listen: SocketAddr,

    /// The gateway domain: `{appId}.{domain}` routes to the app.
    #[arg(long, env = "CAAS_DOMAIN", default_value = "caas.localhost")]
    pub domain: String,

    /// Largest request head (request line plus headers) in bytes; bigger gets 431.
    #[arg(long, env = "CAAS_GATEWAY_MAX_HEADER_BYTES", default_value_t = 16 * 1024)]
    pub max_header_bytes: usize,

    /// Most request headers; more gets 431.
    #[arg(long, env = "CAAS_GATEWAY_MAX_HEADERS", default_value_t = 100)]
    pub max_headers: usize,

    /// Largest request body in bytes; bigger gets 413 (checked on Content-Length up front and
    /// while streaming otherwise).
    #[arg(long, env = "CAAS_GATEWAY_MAX_BODY_BYTES", default_value_t = 1024 * 1024 * 1024)]
    pub max_body_bytes: u64,

    /// Connect timeout to a backend, in milliseconds.
    #[arg(long, env = "CAAS_GATEWAY_CONNECT_TIMEOUT_MS", default_value_t = 2_000)]
    pub connect_timeout_ms: u64,

    /// Longest wait for a backend's response head once the request is sent, in milliseconds;
    /// past it the client gets 504 and the backend counts a failure (a hung instance must not
    /// hold client connections forever). 0 waits without limit.
    #[arg(
        long,
        env = "CAAS_GATEWAY_RESPONSE_TIMEOUT_MS",
        default_value_t = 60_000
    )]
    pub response_timeout_ms: u64,

    /// Time a client has to send a complete request head, in milliseconds. Without it a client
    /// sending one byte a second holds a connection forever. For HTTP/1 it also bounds how long
    /// a keep-alive connection may wait for its next request.
    #[arg(long, env = "CAAS_GATEWAY_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_timeout_ms: u64,

    /// A client connection with no request in flight and no traffic for this long is closed,
    /// in milliseconds.
    #[arg(long, env = "CAAS_GATEWAY_IDLE_TIMEOUT_MS", default_value_t = 60_000)]
    pub idle_timeout_ms: u64,

    /// Idle keep-alive connections kept per backend.
    #[arg(
        long,
        env = "CAAS_GATEWAY_POOL_IDLE_PER_BACKEND",
        default_value_t = 128
    )]
    pub pool_idle_per_backend: usize,

    /// Requests in flight per backend at most; a full backend is passed over, and when all are
    /// full the request gets 503.
    #[arg(
        long,
        env = "CAAS_GATEWAY_MAX_INFLIGHT_PER_BACKEND",
        default_value_t = 1024
    )]
    pub max_inflight_per_backend: usize,

    /// How many backends one request may try (retries go only to the next address, and only
    /// when replaying is safe).
    #[arg(long, env = "CAAS_GATEWAY_MAX_TRIES", default_value_t = 3)]
    pub max_tries: usize,

    /// Consecutive failures after which a backend is skipped (passive health).
    #[arg(long, env = "CAAS_GATEWAY_EJECT_AFTER", default_value_t = 2)]
    pub eject_after: u32,

    /// How long a failing backend is skipped, in milliseconds; then it gets traffic again.
    #[arg(long, env = "CAAS_GATEWAY_EJECT_MS", default_value_t = 5_000)]
    pub eject_ms: u64,

    /// How long graceful shutdown waits for requests in flight, in milliseconds.
    #[arg(long, env = "CAAS_GATEWAY_SHUTDOWN_GRACE_MS", default_value_t = 10_000)]
    pub shutdown_grace_ms: u64,

    /// What serves HTTP/1.1 connections, plain and TLS: `own`, the gateway's fast path (it hands
    /// h2c, HTTP/1.0, upgrades and `Expect` over to hyper), or `hyper` for everything.
    #[arg(long, env = "CAAS_GATEWAY_HTTP1", value_enum, default_value_t = Http1Engine::Own)]
    pub http1: Http1Engine,
}

/// The code that serves HTTP/1.1 client connections (plain, and TLS that negotiated HTTP/1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Http1Engine {
    /// The gateway's own request loop (no header maps, no task per exchange, one write per
    /// answer), with hyper taking over what it does not do.
    #[default]
    Own,
    /// hyper's server and client for every request.
    Hyper,
}

impl Config {
    /// The defaults, as `--help` shows them, for code that builds a config without a command line.
    pub fn new() -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls_listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            tls_cert: None,
            tls_key: None,
            tls_dir: None,
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            domain: "caas.localhost".into(),
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_body_bytes: 1024 * 1024 * 1024,
            connect_timeout_ms: 2_000,
            response_timeout_ms: 60_000,
            header_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            pool_idle_per_backend: 128,
            max_inflight_per_backend: 1024,
            max_tries: 3,
            eject_after: 2,
            eject_ms: 5_000,
            shutdown_grace_ms: 10_000,
            http1: Http1Engine::Own,
        }
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// `None`: no limit.
    pub(crate) fn response_timeout(&self) -> Option<Duration> {
        (self.response_timeout_ms > 0).then(|| Duration::from_millis(self.response_timeout_ms))
    }

    pub(crate) fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms)
    }

    pub(crate) fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    pub(crate) fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}
