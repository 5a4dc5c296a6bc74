//! The steady load: idempotent GETs of one app at a fixed rate through every gateway in turn,
//! as a load balancer in front of them would send them. A connection failure marks that gateway
//! out for a moment and the request goes to the next one (at most once to each); an answer other
//! than 2xx, or no gateway taking the request, is a failed request.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// One request's outcome.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When it was sent.
    pub at: Instant,
    /// Whether it got a 2xx answer.
    pub ok: bool,
    /// Whether it went to another gateway after a connection failure.
    pub moved: bool,
    /// What went wrong, for a failed one.
    pub error: Option<String>,
}

/// A running load and what it has recorded.
#[derive(Debug)]
pub struct Load {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// How long a gateway that refused a connection is skipped.
const OUT_FOR: Duration = Duration::from_secs(1);

/// Where the load goes and how fast.
#[derive(Debug, Clone)]
pub struct Target {
    /// The gateways' base URLs (`http://127.0.0.1:8181`).
    pub gateways: Vec<String>,
    /// The app's host name (`hello.caas.localhost`).
    pub host: String,
    /// Requests per second.
    pub rate: u32,
}

impl Load {
    /// Starts sending. Requests go out on a fixed schedule whatever the answers' latency
    /// (open loop), each with a 10 s deadline.
    pub fn start(target: Target) -> anyhow::Result<Load> {
        let clients = target
            .gateways
            .iter()
            .map(|g| client_for(g, &target.host))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = watch::channel(false);
        let shared = Arc::new(Shared {
            clients,
            out_until: Mutex::new(vec![None; target.gateways.len()]),
        });
        let period = Duration::from_secs_f64(1.0 / f64::from(target.rate.max(1)));
        let recorded = samples.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut n: usize = 0;
            let mut inflight = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.wait_for(|s| *s) => break,
                }
                n = n.wrapping_add(1);
                let shared = shared.clone();
                let recorded = recorded.clone();
                inflight.spawn(async move {
                    let sample = shared.send(n).await;
                    recorded
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(sample);
                });
                while inflight.try_join_next().is_some() {}
            }
            while inflight.join_next().await.is_some() {}
        });
        Ok(Load {
            samples,
            stop,
            task,
        })
    }

    /// The requests sent in `[from, to)`: (ok, failed, moved to another gateway), and the
    /// first few failures' reasons.
    pub fn count(&self, from: Instant, to: Instant) -> Counts {
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let mut c = Counts::default();
        for s in samples.iter().filter(|s| s.at >= from && s.at < to) {
            if s.ok {
                c.ok += 1;
            } else {
                c.failed += 1;
                if c.errors.len() < 3 {
                    c.errors.extend(s.error.clone());
                }
            }
            if s.moved {
                c.moved += 1;
            }
        }
        c
    }

    /// Stops sending and waits for the requests in flight.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// What a window of the load saw.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    /// 2xx answers.
    pub ok: u64,
    /// Anything else.
    pub failed: u64,
    /// Requests that went to another gateway after a connection failure.
    pub moved: u64,
    /// The first failures' reasons.
    pub errors: Vec<String>,
}

#[derive(Debug)]
struct Shared {
    /// Per gateway: a client that resolves the app's name to that gateway, and the URL.
    clients: Vec<(reqwest::Client, String)>,
    out_until: Mutex<Vec<Option<Instant>>>,
}

impl Shared {
    async fn send(&self, n: usize) -> Sample {
        let at = Instant::now();
        let count = self.clients.len();
        let mut moved = false;
        let mut last = String::from("no gateway");
        for k in 0..count {
            let i = (n + k) % count;
            if k + 1 < count && self.is_out(i) {
                continue;
            }
            let (client, url) = &self.clients[i];
            match client.get(url).send().await {
                Ok(resp) if resp.status().is_success() => {
                    // Read the body whole: a request is ok only once its answer is in.
                    return match resp.bytes().await {
                        Ok(_) => Sample {
                            at,
                            ok: true,
                            moved,
                            error: None,
                        },
                        Err(e) => failed(at, moved, format!("gateway {}: body: {e}", i + 1)),
                    };
                }
                Ok(resp) => {
                    return failed(
                        at,
                        moved,
                        format!("gateway {}: HTTP {}", i + 1, resp.status()),
                    );
                }
                Err(e) if e.is_connect() || (e.is_request() && !e.is_timeout()) => {
                    // The gateway is gone (refused, or the connection broke before an
                    // answer): a load balancer would send the request to the next one.
                    self.mark_out(i);
                    moved = true;
                    last = format!("gateway {}: {e}", i + 1);
                }
                Err(e) => return failed(at, moved, format!("gateway {}: {e}", i + 1)),
            }
        }
        failed(at, moved, last)
    }

    fn is_out(&self, i: usize) -> bool {
        let out = self.out_until.lock().unwrap_or_else(|p| p.into_inner());
        out[i].is_some_and(|t| Instant::now() < t)
    }

    fn mark_out(&self, i: usize) {
        let mut out = self.out_until.lock().unwrap_or_else(|p| p.into_inner());
        out[i] = Some(Instant::now() + OUT_FOR);
    }
}

fn failed(at: Instant, moved: bool, error: String) -> Sample {
    Sample {
        at,
        ok: false,
        moved,
        error: Some(error),
    }
}

/// A client that sends `http://{host}:{port}/` to `gateway` (`http://IP:PORT`), and that URL:
/// the gateway routes by the Host header, as it would behind a real name.
fn client_for(gateway: &str, host: &str) -> anyhow::Result<(reqwest::Client, String)> {
    let addr: std::net::SocketAddr = gateway
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .map_err(|e| anyhow::anyhow!("gateway {gateway}: not http://IP:PORT: {e}"))?;
    let client = reqwest::Client::builder()
        .resolve(host, addr)
        .timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(30))
        .build()?;
    Ok((client, format!("http://{host}:{}/", addr.port())))
}
