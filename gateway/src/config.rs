//! The gateway's configuration: one `clap` struct, every field a flag and a `CAAS_` env var.

use caas_registry::IpRule;
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

    /// Longest a backend may leave a response body waiting between two reads, in
    /// milliseconds; past it the client connection is closed mid-body (the client sees a short
    /// body) and the backend connection is closed, never reused. 0 waits without limit.
    #[arg(long, env = "CAAS_GATEWAY_BODY_TIMEOUT_MS", default_value_t = 60_000)]
    pub body_timeout_ms: u64,

    /// Client connections open at most (plain and HTTPS together); one more is closed at
    /// accept and counted in `caas_gateway_connections_refused_total{reason="global"}`.
    #[arg(long, env = "CAAS_GATEWAY_MAX_CONNECTIONS", default_value_t = 16_384)]
    pub max_connections: usize,

    /// Client connections open at most from one peer address; one more is closed at accept
    /// and counted in `caas_gateway_connections_refused_total{reason="per_ip"}`. The peer is
    /// the TCP peer (a trusted proxy's connections count as its own).
    #[arg(
        long,
        env = "CAAS_GATEWAY_MAX_CONNECTIONS_PER_IP",
        default_value_t = 4_096
    )]
    pub max_connections_per_ip: usize,

    /// Proxies (IPs or CIDR blocks, comma-separated) whose `X-Forwarded-For` is believed: from
    /// one of them the client is the right-most address in it that is not a trusted proxy;
    /// from anyone else it is the peer address and the header is replaced. Default: none.
    #[arg(long, env = "CAAS_GATEWAY_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<IpRule>,

    /// Longest the gateway serves routes while cut off from ZooKeeper, in milliseconds; past
    /// it every proxied request gets 503 (`routes stale: ...`) and `/healthz` says so, until
    /// the route cache is connected and has read the tree again. The default is the
    /// scheduler's port quarantine: a host port freed while we were cut off is not handed to
    /// another app before our copy of the routes stops being used. 0: never stale.
    #[arg(
        long,
        env = "CAAS_GATEWAY_MAX_ROUTE_STALENESS_MS",
        default_value_t = 600_000
    )]
    pub max_route_staleness_ms: u64,

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

    /// Requests held at most per sleeping app (an app that scales to zero, with no instance);
    /// past it a request gets 503 with `Retry-After: 1`. 0 holds none.
    #[arg(long, env = "CAAS_GATEWAY_HOLD_QUEUE", default_value_t = 1000)]
    pub hold_queue: usize,

    /// Longest a request is held for a sleeping app to get its first instance, in
    /// milliseconds; past it the request gets 504.
    #[arg(
        long,
        env = "CAAS_GATEWAY_ACTIVATION_TIMEOUT_MS",
        default_value_t = 30_000
    )]
    pub activation_timeout_ms: u64,

    /// The admin API (the scheduler's base URL, e.g. `http://127.0.0.1:7070`) that demand
    /// reports go to: held and in-flight requests per app, for autoscaling. With
    /// `--gateway-token`; without both, no reports (held requests still wait for an instance).
    #[arg(long, env = "CAAS_API")]
    pub admin_api: Option<String>,

    /// The gateway's bearer token for the admin API (role `gateway`: it can only report
    /// demand). Empty is the same as unset.
    #[arg(long, env = "CAAS_GATEWAY_TOKEN", hide_env_values = true)]
    pub gateway_token: Option<GatewayToken>,

    /// This gateway's name in its demand reports (reports of several gateways add up);
    /// default `{hostname}-{pid}`.
    #[arg(long, env = "CAAS_GATEWAY_ID")]
    pub gateway_id: Option<String>,
}

/// The gateway's admin API token; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct GatewayToken(String);

impl GatewayToken {
    /// The token itself, for the `Authorization` header.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for GatewayToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GatewayToken(<redacted>)")
    }
}

impl std::str::FromStr for GatewayToken {
    type Err = String;

    /// Visible ASCII; an empty value (a variable set to nothing, as compose does) is kept and
    /// means no token.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err("expected a token of visible ASCII characters".into());
        }
        Ok(GatewayToken(s.to_owned()))
    }
}

/// Where demand reports go and who sends them.
#[derive(Debug, Clone)]
pub(crate) struct DemandTarget {
    /// `{admin api}/v1/gateway/demand`
    pub(crate) url: String,
    pub(crate) token: GatewayToken,
    pub(crate) gateway: String,
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
            body_timeout_ms: 60_000,
            max_connections: 16_384,
            max_connections_per_ip: 4_096,
            trusted_proxies: Vec::new(),
            max_route_staleness_ms: 600_000,
            header_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            pool_idle_per_backend: 128,
            max_inflight_per_backend: 1024,
            max_tries: 3,
            eject_after: 2,
            eject_ms: 5_000,
            shutdown_grace_ms: 10_000,
            http1: Http1Engine::Own,
            hold_queue: 1000,
            activation_timeout_ms: 30_000,
            admin_api: None,
            gateway_token: None,
            gateway_id: None,
        }
    }

    pub(crate) fn activation_timeout(&self) -> Duration {
        Duration::from_millis(self.activation_timeout_ms)
    }

    /// Where to report demand: `None` unless both the admin API and the token are set.
    pub(crate) fn demand_target(&self) -> Option<DemandTarget> {
        let api = self
            .admin_api
            .as_deref()
            .map(str::trim)
            .filter(|a| !a.is_empty())?;
        let token = self.gateway_token.clone().filter(|t| !t.0.is_empty())?;
        Some(DemandTarget {
            url: format!("{}/v1/gateway/demand", api.trim_end_matches('/')),
            token,
            gateway: self
                .gateway_id
                .clone()
                .filter(|g| !g.trim().is_empty())
                .unwrap_or_else(default_gateway_id),
        })
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// `None`: no limit.
    pub(crate) fn response_timeout(&self) -> Option<Duration> {
        (self.response_timeout_ms > 0).then(|| Duration::from_millis(self.response_timeout_ms))
    }

    /// `None`: no limit.
    pub(crate) fn body_timeout(&self) -> Option<Duration> {
        (self.body_timeout_ms > 0).then(|| Duration::from_millis(self.body_timeout_ms))
    }

    /// `None`: routes never go stale.
    pub(crate) fn max_route_staleness(&self) -> Option<Duration> {
        (self.max_route_staleness_ms > 0)
            .then(|| Duration::from_millis(self.max_route_staleness_ms))
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

/// `{hostname}-{pid}`: unique per process on a host, readable in the scheduler's view.
fn default_gateway_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "gateway".to_owned());
    format!("{host}-{}", std::process::id())
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn demand_reports_need_both_the_api_and_the_token() {
        let mut c = Config::new();
        assert!(c.demand_target().is_none());
        c.admin_api = Some("http://127.0.0.1:7070/".into());
        assert!(c.demand_target().is_none(), "no token");
        c.gateway_token = Some("secret".parse().unwrap());
        let t = c.demand_target().unwrap();
        assert_eq!(t.url, "http://127.0.0.1:7070/v1/gateway/demand");
        assert!(
            t.gateway.ends_with(&format!("-{}", std::process::id())),
            "{}",
            t.gateway
        );
        c.gateway_id = Some("gw1".into());
        assert_eq!(c.demand_target().unwrap().gateway, "gw1");
        c.admin_api = Some(" ".into());
        assert!(c.demand_target().is_none(), "blank api");
        c.admin_api = Some("http://127.0.0.1:7070".into());
        c.gateway_token = Some("".parse().unwrap());
        assert!(c.demand_target().is_none(), "empty token");
    }

    #[test]
    fn the_token_never_shows_and_must_be_visible_ascii() {
        let t: GatewayToken = "s3cret".parse().unwrap();
        assert_eq!(t.expose(), "s3cret");
        assert!(!format!("{t:?}").contains("s3cret"));
        let mut c = Config::new();
        c.gateway_token = Some(t);
        assert!(!format!("{c:?}").contains("s3cret"));
        for bad in ["a b", "é", "a\tb"] {
            assert!(bad.parse::<GatewayToken>().is_err(), "{bad:?}");
        }
    }
}
