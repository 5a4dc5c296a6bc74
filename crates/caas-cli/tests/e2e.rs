//! End to end, from the outside only, as a user would: `docker push`, the `caas` CLI, HTTP
//! through the gateway. Needs the platform that `scripts/up` starts (the README's test command,
//! `scripts/test`, runs it first).
//!
//! push → deploy 3 → requests spread over all three → v2 deployed beside v1, v1 undeployed, no
//! failed request under steady load → `docker kill` one instance under load: no failed GET, it
//! leaves ZooKeeper within the health policy's time and is restarted → scheduler restarted:
//! state intact → undeploy → 503 → app deleted → 404.
//!
//! Jobs with the busybox image pushed as an app: `caas run` prints a job's stdout and stderr and
//! exits with its code, and `caas run -i` sends its standard input to the job.
//!
//! And auto-deploy through the real registry: an app with auto-deploy on runs v1; `docker push`
//! of v2 reaches the scheduler as a registry notification and the app rolls to v2 under steady
//! load with no failed request.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use caas_testkit::{eventually_within, var, HOW};
use serde_json::Value;
use std::collections::HashSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `caas ARGS`, asserting success; returns stdout.
fn caas(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_caas"))
        .args(args)
        .output()
        .expect("run caas");
    assert!(
        out.status.success(),
        "caas {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn caas_json(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&caas(&all)).expect("caas printed JSON")
}

fn docker(args: &[&str]) {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// GET `path` of `app` through the gateway: (status, body).
async fn get(http: &reqwest::Client, app: &str, path: &str) -> Result<(u16, String), String> {
    let gateway = var("CAAS_GATEWAY");
    let domain = var("CAAS_DOMAIN");
    let resp = http
        .get(format!("{gateway}{path}"))
        .header("host", format!("{app}.{domain}"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await.map_err(|e| e.to_string())?))
}

/// A steady, bounded load: sequential GETs until stopped (at most 3 minutes), counting failures.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Load {
    fn start(app: &str) -> Load {
        let (stop, ok, failed) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let (s, o, f, app) = (stop.clone(), ok.clone(), failed.clone(), app.to_owned());
        let task = tokio::spawn(async move {
            let http = reqwest::Client::new();
            let until = Instant::now() + Duration::from_secs(180);
            let mut errors = Vec::new();
            while !s.load(Ordering::Relaxed) && Instant::now() < until {
                match get(&http, &app, "/").await {
                    Ok((200, _)) => {
                        o.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        f.fetch_add(1, Ordering::Relaxed);
                        if errors.len() < 10 {
                            errors.push(format!("{other:?}"));
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            errors
        });
        Load {
            stop,
            ok,
            failed,
            task,
        }
    }

    /// Stops the load and asserts that no request failed `during` what it watched; returns how
    /// many succeeded.
    async fn finish_without_failures(self, during: &str) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let errors = self.task.await.expect("load task");
        let (ok, failed) = (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        );
        assert_eq!(
            failed, 0,
            "requests failed during {during} ({ok} ok): {errors:?}"
        );
        ok
    }
}

/// The tests of this file run one at a time: the first restarts the scheduler, which would cut
/// the other's roll short.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The admin API's address and an HTTP client, once the API answers.
async fn platform() -> (String, reqwest::Client) {
    let api = var("CAAS_API");
    let http = reqwest::Client::new();
    if http.get(format!("{api}/healthz")).send().await.is_err() {
        panic!("the admin API at {api} does not answer: {HOW}");
    }
    (api, http)
}

fn instances(app: &str) -> Vec<Value> {
    caas_json(&["ps", app])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn push_deploy_reach_roll_kill_restart_undeploy() {
    let _serial = SERIAL.lock().await;
    let (api, http) = platform().await;
    let registry = var("CAAS_REGISTRY");
    let app = format!("e2e-{:x}", std::process::id());
    let t0 = Instant::now();
    let phase = |name: &str| eprintln!("e2e: {:>6.1}s {name}", t0.elapsed().as_secs_f64());

    // Push, as a user would: the sample images re-tagged under this app's name.
    for v in ["v1", "v2"] {
        docker(&[
            "tag",
            &format!("{registry}/hello:{v}"),
            &format!("{registry}/{app}:{v}"),
        ]);
        docker(&["push", "--quiet", &format!("{registry}/{app}:{v}")]);
    }
    phase("pushed");
    caas(&["apps", "create", &app]);

    // Deploy three instances, spread over the hosts.
    let d = caas_json(&[
        "deploy", &app, "v1", "-n", "3", "--memory", "64m", "--cpus", "0.1", "--spread", "-q",
    ]);
    assert_eq!(d["instance_list"].as_array().map(Vec::len), Some(3), "{d}");

    phase("deployed 3");
    // Requests reach all three.
    let hostnames = eventually_within(
        "requests spread over all three instances",
        Duration::from_secs(30),
        || {
            let http = http.clone();
            let app = app.clone();
            async move {
                let mut seen = HashSet::new();
                for _ in 0..30 {
                    let (s, body) = get(&http, &app, "/").await.ok()?;
                    if s != 200 {
                        return None;
                    }
                    let v: Value = serde_json::from_str(&body).ok()?;
                    seen.insert(v["hostname"].as_str()?.to_owned());
                }
                (seen.len() == 3).then_some(seen)
            }
        },
    )
    .await;
    assert_eq!(hostnames.len(), 3);

    phase("spread checked");
    // A new version beside the old one, then the old one removed, under steady load.
    let load = Load::start(&app);
    caas(&[
        "deploy", &app, "v2", "-n", "3", "--memory", "64m", "--cpus", "0.1", "--spread", "-q",
    ]);
    caas(&["undeploy", &app, "v1"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ok = load.finish_without_failures("the switch").await;
    assert!(ok > 10, "the load ran ({ok} requests)");
    for _ in 0..10 {
        let (_, body) = get(&http, &app, "/").await.expect("gateway");
        assert!(
            body.contains("\"version\":\"v2\""),
            "only v2 answers now: {body}"
        );
    }

    phase("rolled to v2");
    // Kill one instance under load: no failed GET; it leaves the registry and is restarted.
    let before = instances(&app);
    let victim = before[0].clone();
    let victim_id = victim["id"].as_str().unwrap().to_owned();
    let container = victim["container_id"].as_str().unwrap().to_owned();
    let load = Load::start(&app);
    tokio::time::sleep(Duration::from_millis(300)).await;
    docker(&["kill", &container]);
    let killed = Instant::now();
    eventually_within(
        "the killed instance is marked unhealthy (left ZooKeeper)",
        Duration::from_secs(30),
        || {
            let id = victim_id.clone();
            let app = app.clone();
            async move {
                instances(&app)
                    .iter()
                    .any(|i| i["id"] == id.as_str() && i["healthy"] == false)
                    .then_some(())
            }
        },
    )
    .await;
    let detected = killed.elapsed();
    eventually_within(
        "the killed instance is restarted and healthy again",
        Duration::from_secs(60),
        || {
            let id = victim_id.clone();
            let app = app.clone();
            async move {
                instances(&app)
                    .iter()
                    .any(|i| {
                        i["id"] == id.as_str() && i["healthy"] == true && i["state"] == "running"
                    })
                    .then_some(())
            }
        },
    )
    .await;
    let ok = load
        .finish_without_failures("the kill of an instance")
        .await;
    eprintln!("e2e: kill detected in {detected:?}, {ok} requests served meanwhile");

    phase("kill survived");
    // Restart the scheduler: the state survives.
    let pid_file = root().join(".caas/pids/scheduler.pid");
    let pid = std::fs::read_to_string(&pid_file)
        .unwrap_or_else(|_| panic!("no {}: {HOW}", pid_file.display()));
    let before: Vec<(String, String)> = instances(&app)
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap().to_owned(),
                i["container_id"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert!(Command::new("kill")
        .arg(pid.trim())
        .status()
        .expect("kill")
        .success());
    eventually_within("the scheduler stops", Duration::from_secs(30), || {
        let http = http.clone();
        let api = api.clone();
        async move {
            http.get(format!("{api}/healthz"))
                .send()
                .await
                .is_err()
                .then_some(())
        }
    })
    .await;
    let up = Command::new(root().join("scripts/up"))
        .arg("--no-build")
        .output()
        .expect("scripts/up");
    assert!(
        up.status.success(),
        "scripts/up restarts the scheduler: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    let after: Vec<(String, String)> = instances(&app)
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap().to_owned(),
                i["container_id"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        before, after,
        "the same instances and containers after a scheduler restart"
    );
    let (s, _) = get(&http, &app, "/").await.expect("gateway");
    assert_eq!(s, 200);

    phase("scheduler restarted");
    // Undeploy → 503; delete the app → 404.
    caas(&["undeploy", &app, "v2"]);
    let (s, body) = eventually_within(
        "503 once nothing is deployed",
        Duration::from_secs(10),
        || {
            let http = http.clone();
            let app = app.clone();
            async move { get(&http, &app, "/").await.ok().filter(|(s, _)| *s == 503) }
        },
    )
    .await;
    assert_eq!(s, 503, "{body}");
    caas(&["apps", "rm", &app]);
    let (s, _) = get(&http, &app, "/").await.expect("gateway");
    assert_eq!(s, 404, "a deleted app is unknown to the gateway");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_rolls_an_auto_deploy_app() {
    let _serial = SERIAL.lock().await;
    let (api, http) = platform().await;
    let token = var("CAAS_TOKEN");
    let registry = var("CAAS_REGISTRY");
    let app = format!("e2e-auto-{:x}", std::process::id());
    let t0 = Instant::now();
    let phase = |name: &str| eprintln!("e2e auto: {:>6.1}s {name}", t0.elapsed().as_secs_f64());
    let push = |v: &str| {
        let image = format!("{registry}/{app}:{v}");
        docker(&["tag", &format!("{registry}/hello:{v}"), &image]);
        docker(&["push", "--quiet", &image]);
    };

    caas(&["apps", "create", &app, "--auto-deploy"]);
    push("v1");
    // The registry's notification reaches the scheduler, which records the tag.
    eventually_within(
        "the push of v1 recorded by the scheduler",
        Duration::from_secs(30),
        || {
            let (http, api, token, app) = (http.clone(), api.clone(), token.clone(), app.clone());
            async move {
                let tags: Value = http
                    .get(format!("{api}/v1/apps/{app}/tags"))
                    .bearer_auth(token)
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                tags.as_array()?
                    .iter()
                    .any(|t| t["tag"] == "v1")
                    .then_some(())
            }
        },
    )
    .await;
    phase("push recorded");
    caas(&[
        "deploy", &app, "v1", "-n", "2", "--memory", "64m", "--cpus", "0.1", "-q",
    ]);
    let version_served = |want: &'static str| {
        let (http, app) = (http.clone(), app.clone());
        move || {
            let (http, app) = (http.clone(), app.clone());
            async move {
                let (s, body) = get(&http, &app, "/").await.ok()?;
                let v: Value = serde_json::from_str(&body).ok()?;
                (s == 200 && v["version"] == want).then_some(())
            }
        }
    };
    eventually_within(
        "v1 served through the gateway",
        Duration::from_secs(30),
        version_served("v1"),
    )
    .await;
    phase("v1 deployed");

    // Push v2 under steady load: the app rolls to it, and no request fails.
    let load = Load::start(&app);
    push("v2");
    eventually_within(
        "every instance on v2 after the push",
        Duration::from_secs(90),
        || {
            let app = app.clone();
            async move {
                let all = instances(&app);
                let on_v2 = all
                    .iter()
                    .all(|i| i["version"] == "v2" && i["state"] == "running");
                (all.len() == 2 && on_v2).then_some(())
            }
        },
    )
    .await;
    eventually_within(
        "v2 served through the gateway",
        Duration::from_secs(30),
        version_served("v2"),
    )
    .await;
    phase("rolled to v2");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ok = load.finish_without_failures("the auto-deploy roll").await;
    assert!(ok > 0, "the load ran");
    caas(&["apps", "rm", &app]);
}

/// What a `caas` run ended with: its exit code (`None` if a signal ended it), stdout, stderr.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `caas ARGS` with `input` as its standard input (none: an empty one), for at most
/// `limit`; kills it and fails the test past that.
fn caas_with_input(args: &[&str], input: Option<&[u8]>, limit: Duration) -> Ran {
    use std::io::{Read, Write};
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_caas"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run caas");
    let mut stdin = child.stdin.take().expect("stdin piped");
    let input = input.unwrap_or_default().to_vec();
    // Written, then closed: the end of input, as `echo hello |` gives it.
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let reader = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            r.read_to_string(&mut text).map(|_| text)
        })
    };
    let out = reader(Box::new(child.stdout.take().expect("stdout piped")));
    let err = reader(Box::new(child.stderr.take().expect("stderr piped")));
    let until = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for caas") {
            break status;
        }
        if Instant::now() > until {
            child.kill().ok();
            child.wait().ok();
            panic!("caas {args:?} still ran after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // The job may end without reading its input: a closed pipe then is no failure.
    let _ = writer.join();
    Ran {
        code: status.code(),
        stdout: out.join().expect("stdout reader").expect("stdout text"),
        stderr: err.join().expect("stderr reader").expect("stderr text"),
    }
}

/// A new app running the busybox image (`scripts/build-busybox`, which `scripts/up` runs):
/// `{registry}/busybox:v1` pushed as the app's `v1`, as a user would push their own image.
fn busybox_app(name: &str) -> String {
    let registry = var("CAAS_REGISTRY");
    let busybox = format!("{registry}/busybox:v1");
    let present = Command::new("docker")
        .args(["image", "inspect", &busybox])
        .output()
        .expect("run docker")
        .status
        .success();
    if !present {
        docker(&["pull", "--quiet", &busybox]);
    }
    let app = format!("e2e-{name}-{:x}", std::process::id());
    caas(&["apps", "create", &app]);
    let image = format!("{registry}/{app}:v1");
    docker(&["tag", &busybox, &image]);
    docker(&["push", "--quiet", &image]);
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_streams_stdout_and_stderr_and_exits_with_the_job_s_code() {
    let _serial = SERIAL.lock().await;
    platform().await;
    let app = busybox_app("run");
    let ran = caas_with_input(
        &[
            "run",
            &app,
            "v1",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
        None,
        Duration::from_secs(120),
    );
    assert_eq!(
        ran.code,
        Some(3),
        "the job's exit code: stdout {:?}, stderr {:?}",
        ran.stdout,
        ran.stderr
    );
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert!(
        lines.contains(&"out") && lines.contains(&"err"),
        "both lines printed: stdout {:?}, stderr {:?}",
        ran.stdout,
        ran.stderr
    );
    // The job is listed, finished with its code.
    let jobs = caas_json(&["jobs", "ls", &app]);
    let job = &jobs.as_array().expect("a list of jobs")[0];
    assert_eq!(
        (job["state"].as_str(), job["exit_code"].as_i64()),
        (Some("failed"), Some(3)),
        "{job}"
    );
    remove_busybox_app(&app);
}

/// Forgets `app`'s jobs (`caas jobs rm`), then removes it.
fn remove_busybox_app(app: &str) {
    for job in caas_json(&["jobs", "ls", app])
        .as_array()
        .expect("a list of jobs")
    {
        let id = job["id"].as_str().expect("a job id");
        assert!(
            caas(&["jobs", "rm", app, id]).starts_with("removed"),
            "a finished job is forgotten"
        );
    }
    caas(&["apps", "rm", app]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_i_sends_standard_input_to_the_job() {
    let _serial = SERIAL.lock().await;
    platform().await;
    let app = busybox_app("run-i");
    let ran = caas_with_input(
        &["run", "-i", &app, "v1", "--", "cat"],
        Some(b"hello\n"),
        Duration::from_secs(120),
    );
    assert_eq!(
        (ran.code, ran.stdout.as_str()),
        (Some(0), "hello\n"),
        "stderr: {:?}",
        ran.stderr
    );
    remove_busybox_app(&app);
}
