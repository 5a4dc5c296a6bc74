//! The deployer against the real engine and registry (`scripts/up`): limits, port bindings on
//! two loopback "hosts", `/_ping` through the mapped port, taken ports, adoption, stop/remove,
//! list by label, OOM kills, pulls and their errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use caas_deployer::{ContainerState, Deployer, DockerEndpoint, Error, EventKind};
use caas_testkit::docker::{deployer, hello_image, registry_credentials, Namespace};
use caas_testkit::{eventually_within, var, HOW};
use common::*;
use futures::StreamExt;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_with_limits_on_two_hosts_and_answers_ping() {
    let d = deployer().await;
    let image = hello_image(&d, "v1").await;
    let ns = Namespace::new("limits");
    let port = free_port();

    let a = d
        .run(&hello_spec(&ns, "a", &image, HOST_A, port))
        .await
        .unwrap();
    let b = d
        .run(&hello_spec(&ns, "b", &image, HOST_B, port))
        .await
        .unwrap();
    assert_eq!(a.endpoint.unwrap().to_string(), format!("127.0.0.2:{port}"));
    assert_eq!(b.endpoint.unwrap().to_string(), format!("127.0.0.3:{port}"));
    assert!(!a.adopted);

    // The engine's own view, through the CLI rather than our client.
    let fields = "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.NanoCpus}} {{.HostConfig.CpuShares}} {{.HostConfig.PidsLimit}} {{.HostConfig.Privileged}} {{.HostConfig.NetworkMode}} {{.HostConfig.Init}} {{.HostConfig.SecurityOpt}} {{.HostConfig.CapDrop}}";
    assert_eq!(
        cli_inspect(a.id.as_str(), fields),
        format!(
            "{} {} 500000000 512 256 false bridge true [no-new-privileges] [ALL]",
            64 << 20,
            64 << 20
        )
    );
    assert_eq!(
        cli_inspect(a.id.as_str(), "{{range $p, $b := .HostConfig.PortBindings}}{{$p}}={{range $b}}{{.HostIp}}:{{.HostPort}}{{end}}{{end}}"),
        format!("8080/tcp=127.0.0.2:{port}")
    );
    assert_eq!(
        cli_inspect(b.id.as_str(), "{{.Config.Labels}}"),
        format!(
            "map[caas.app:hello caas.instance:hello-b caas.managed:{} caas.version:v1]",
            ns.as_str()
        )
    );

    // Both answer at once on the same port, each on its own address.
    wait_ping(HOST_A, port).await;
    wait_ping(HOST_B, port).await;
    let (_, body_a) = http_get(HOST_A, port, "/").await.unwrap();
    let (_, body_b) = http_get(HOST_B, port, "/").await.unwrap();
    assert!(body_a.contains(&a.id.as_str()[..12]), "{body_a}");
    assert!(body_b.contains(&b.id.as_str()[..12]), "{body_b}");

    // Our inspect agrees.
    let status = d.inspect(&a.id).await.unwrap();
    assert_eq!(status.state, ContainerState::Running);
    assert_eq!(status.endpoint, a.endpoint);
    assert_eq!(status.limits.memory, Some(64 << 20));
    assert_eq!(status.limits.nano_cpus, Some(500_000_000));
    assert_eq!(status.name, ns.container_name("a"));
    assert_eq!(
        status.labels.get("caas.instance").map(String::as_str),
        Some("hello-a")
    );

    // Listing by label: the namespace, then one instance of it.
    let mut all: Vec<_> = d
        .list_managed(ns.as_str())
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    all.sort();
    let mut expected = vec![a.id.clone(), b.id.clone()];
    expected.sort();
    assert_eq!(all, expected);
    let only_b = d
        .list(&[("caas.managed", ns.as_str()), ("caas.instance", "hello-b")])
        .await
        .unwrap();
    assert_eq!(only_b.len(), 1);
    assert_eq!(only_b[0].id, b.id);
    assert_eq!(only_b[0].state, ContainerState::Running);

    // Restart keeps it answering.
    d.restart(&b.id, Duration::from_secs(5)).await.unwrap();
    wait_ping(HOST_B, port).await;

    // Stop (twice: idempotent), then remove (twice), and it is gone everywhere.
    d.stop(&a.id, Duration::from_secs(5)).await.unwrap();
    d.stop(&a.id, Duration::from_secs(5)).await.unwrap();
    let stopped = d.inspect(&a.id).await.unwrap();
    assert_eq!(stopped.state, ContainerState::Exited);
    assert!(!stopped.oom_killed);
    let listed = d.list_managed(ns.as_str()).await.unwrap();
    assert!(
        listed
            .iter()
            .any(|c| c.id == a.id && c.state == ContainerState::Exited),
        "stopped containers are listed too"
    );
    // Kill: SIGKILL at once (twice: a stopped container is fine, and so is a gone one below).
    d.kill(&b.id).await.unwrap();
    let killed = d.inspect(&b.id).await.unwrap();
    assert_eq!(
        (killed.state, killed.exit_code),
        (ContainerState::Exited, Some(137))
    );
    d.kill(&b.id).await.unwrap();
    d.remove(&a.id).await.unwrap();
    d.remove(&a.id).await.unwrap();
    d.remove(&b.id).await.unwrap();
    assert!(matches!(
        d.inspect(&a.id).await,
        Err(Error::ContainerNotFound(_))
    ));
    d.stop(&a.id, Duration::from_secs(1)).await.unwrap();
    d.kill(&a.id).await.unwrap();
    assert!(d.list_managed(ns.as_str()).await.unwrap().is_empty());
    assert!(cli_containers(&ns).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_on_a_taken_port_fails_cleanly() {
    let d = deployer().await;
    let image = hello_image(&d, "v1").await;
    let ns = Namespace::new("taken");
    let port = free_port();

    let first = d
        .run(&hello_spec(&ns, "one", &image, HOST_A, port))
        .await
        .unwrap();
    let err = d
        .run(&hello_spec(&ns, "two", &image, HOST_A, port))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PortAllocated(_)), "{err:?}");
    let left = cli_containers(&ns);
    assert_eq!(
        left,
        vec![first.id.to_string()],
        "only the first container remains"
    );

    // A port held by some other process is the same error, and also leaves nothing behind.
    let other = free_port();
    let _holder = std::net::TcpListener::bind((HOST_B, other)).unwrap();
    let err = d
        .run(&hello_spec(&ns, "three", &image, HOST_B, other))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PortAllocated(_)), "{err:?}");
    assert_eq!(cli_containers(&ns), vec![first.id.to_string()]);

    // An image that does not exist locally is refused at create, with nothing left either.
    let missing = format!("{}/hello:no-such-tag", var("CAAS_REGISTRY"));
    let err = d
        .run(&hello_spec(&ns, "four", &missing, HOST_A, free_port()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ImageNotFound { .. }), "{err:?}");
    assert_eq!(cli_containers(&ns), vec![first.id.to_string()]);

    d.remove(&first.id).await.unwrap();
    assert!(cli_containers(&ns).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerun_adopts_ours_and_refuses_a_foreign_name() {
    let d = deployer().await;
    let image = hello_image(&d, "v1").await;
    let ns = Namespace::new("adopt");
    let port = free_port();
    let spec = hello_spec(&ns, "x", &image, HOST_A, port);

    let first = d.run(&spec).await.unwrap();
    let again = d.run(&spec).await.unwrap();
    assert!(again.adopted);
    assert_eq!(again.id, first.id);

    // Stopped (or created and never started, after a crash): adopted and started again.
    d.stop(&first.id, Duration::from_secs(5)).await.unwrap();
    let restarted = d.run(&spec).await.unwrap();
    assert!(restarted.adopted);
    assert_eq!(
        d.inspect(&first.id).await.unwrap().state,
        ContainerState::Running
    );
    wait_ping(HOST_A, port).await;

    // The same name with other labels (another namespace's container) is a conflict, untouched.
    let mut foreign = spec.clone();
    foreign.namespace = format!("{}-other", ns.as_str());
    foreign.port = Some(caas_deployer::PortMapping {
        container_port: 8080,
        host: caas_types::Endpoint::new(HOST_A, free_port()).unwrap(),
    });
    let err = d.run(&foreign).await.unwrap_err();
    assert!(matches!(err, Error::NameConflict(_)), "{err:?}");
    assert_eq!(cli_containers(&ns), vec![first.id.to_string()]);
    d.remove(&first.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oom_kill_is_reported() {
    let d = deployer().await;
    let image = hello_image(&d, "v1").await;
    let ns = Namespace::new("oom");
    let port = free_port();
    let mut spec = hello_spec(&ns, "oom", &image, HOST_A, port);
    spec.resources = resources(32, 500);

    let events = d.events(&[("caas.managed", ns.as_str())]);
    let c = d.run(&spec).await.unwrap();
    wait_ping(HOST_A, port).await;
    // Allocate far past the 32 MiB limit: the kernel kills the app mid-request.
    let answer = http_get(HOST_A, port, "/alloc/256").await;
    assert!(
        !matches!(answer, Some((200, _))),
        "allocation survived: {answer:?}"
    );

    let status = eventually_within("the container to exit", Duration::from_secs(60), || {
        let d = d.clone();
        let id = c.id.clone();
        async move {
            let s = d.inspect(&id).await.ok()?;
            (s.state == ContainerState::Exited).then_some(s)
        }
    })
    .await;
    assert!(status.oom_killed, "{status:?}");
    assert_eq!(status.exit_code, Some(137));

    // The event stream saw it too: start, oom, then die with 137.
    let mine: Vec<EventKind> = tokio::time::timeout(
        Duration::from_secs(30),
        events
            .filter_map(|e| {
                let id = c.id.clone();
                async move { e.ok().filter(|e| e.id == id).map(|e| e.kind) }
            })
            .take_while(|k| futures::future::ready(!matches!(k, EventKind::Die { .. })))
            .collect::<Vec<_>>(),
    )
    .await
    .expect("events up to die within 30 s");
    assert!(mine.contains(&EventKind::Start), "{mine:?}");
    assert!(mine.contains(&EventKind::Oom), "{mine:?}");
    d.remove(&c.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_engine_is_reported() {
    let missing: DockerEndpoint = "unix:///nonexistent/docker.sock".parse().unwrap();
    assert!(matches!(
        Deployer::connect(&missing),
        Err(Error::Unreachable(_))
    ));
    let closed = free_port();
    let tcp: DockerEndpoint = format!("tcp://127.0.0.1:{closed}").parse().unwrap();
    let d = Deployer::connect(&tcp).unwrap();
    let err = d.ping().await.unwrap_err();
    assert!(matches!(err, Error::Unreachable(_)), "{err:?}");
    assert!(err.is_transient());
}

/// An image pushed to the registry for one test; removed locally and from the registry on drop.
struct PushedImage {
    image: String,
    repo: String,
    digest: Option<String>,
}

impl Drop for PushedImage {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rmi", "-f", &self.image])
            .output();
        if let Some(digest) = &self.digest {
            let url = format!(
                "http://{}/v2/{}/manifests/{digest}",
                var("CAAS_REGISTRY"),
                self.repo
            );
            let mut curl = std::process::Command::new("curl");
            curl.args(["-fsS", "-X", "DELETE", &url]);
            if let Some(c) = registry_credentials() {
                curl.args(["-u", &format!("{}:{}", c.username, c.password)]);
            }
            let _ = curl.output();
        }
    }
}

/// Builds `FROM hello:v1` plus a unique 1 MiB layer, pushes it, and removes it locally, so a
/// pull must really download that layer.
fn push_unique_image(ns: &Namespace) -> PushedImage {
    let registry = var("CAAS_REGISTRY");
    let repo = "caas-test-deployer-pull".to_owned();
    let image = format!("{registry}/{repo}:{}", ns.as_str());
    let mut pushed = PushedImage {
        image: image.clone(),
        repo,
        digest: None,
    };
    let dir = std::env::temp_dir().join(format!("{}-ctx", ns.as_str()));
    std::fs::create_dir_all(&dir).unwrap();
    let blob: Vec<u8> = (0..(1u32 << 20))
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 ^ ns.as_str().len() as u8)
        .chain(ns.as_str().bytes())
        .collect();
    std::fs::write(dir.join("blob"), blob).unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        format!("FROM {registry}/hello:v1\nCOPY blob /blob\n"),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new("docker")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&["build", "-q", "-t", &image, dir.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    let out = run(&["push", &image]);
    pushed.digest = out
        .split_whitespace()
        .find(|w| w.starts_with("sha256:"))
        .map(str::to_owned);
    assert!(pushed.digest.is_some(), "no digest in push output: {out}");
    run(&["rmi", &image]);
    pushed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_reports_progress_and_distinct_errors() {
    let d = deployer().await;
    hello_image(&d, "v1").await;
    let ns = Namespace::new("pull");
    let pushed = push_unique_image(&ns);
    assert!(!d.image_present(&pushed.image).await.unwrap());
    let creds = registry_credentials();

    let steps: Vec<_> = d.pull(&pushed.image, creds.as_ref()).collect().await;
    let steps: Vec<_> = steps.into_iter().map(|s| s.unwrap()).collect();
    assert!(d.image_present(&pushed.image).await.unwrap());
    // Layers reported by id, the shared ones as already there, the new one with byte counts.
    assert!(
        steps
            .iter()
            .any(|s| s.layer.is_some() && s.status == "Already exists"),
        "{steps:#?}"
    );
    assert!(
        steps
            .iter()
            .any(|s| s.layer.is_some() && s.status == "Pull complete"),
        "{steps:#?}"
    );
    assert!(
        steps
            .iter()
            .any(|s| s.total.is_some_and(|t| t > 0) && s.current.is_some_and(|c| c > 0)),
        "no byte progress in {steps:#?}"
    );
    // Pulling again is quick and fine.
    d.pull_to_end(&pushed.image, creds.as_ref()).await.unwrap();

    let registry = var("CAAS_REGISTRY");
    let err = d
        .pull_to_end(&format!("{registry}/hello:no-such-tag"), creds.as_ref())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ImageNotFound { .. }), "{err:?}");
    let err = d
        .pull_to_end(
            &format!("{registry}/no-such-repo-{}:v1", ns.as_str()),
            creds.as_ref(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ImageNotFound { .. }), "{err:?}");
    let closed = free_port();
    let err = d
        .pull_to_end(&format!("127.0.0.1:{closed}/hello:v1"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RegistryUnreachable { .. }), "{err:?}");
    assert!(err.is_transient());
    drop(pushed);
}

/// A registry with htpasswd auth that this test starts on a free port; killed by PID on drop.
struct AuthRegistry {
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl Drop for AuthRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_auth_registry(ns: &Namespace, port: u16, user: &str, password: &str) -> AuthRegistry {
    let dir = std::env::temp_dir().join(format!("{}-registry", ns.as_str()));
    std::fs::create_dir_all(dir.join("data")).unwrap();
    // The registry reads bcrypt only; glibc's crypt (through perl-base, Essential) makes it.
    let salt: String = ns
        .as_str()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .cycle()
        .take(22)
        .collect();
    let out = std::process::Command::new("perl")
        .args([
            "-e",
            "print crypt($ARGV[0], '$2b$05$' . $ARGV[1])",
            password,
            &salt,
        ])
        .output()
        .unwrap();
    let hash = String::from_utf8(out.stdout).unwrap();
    assert!(hash.starts_with("$2b$"), "crypt gave {hash:?}");
    std::fs::write(dir.join("htpasswd"), format!("{user}:{hash}\n")).unwrap();
    let config = format!(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {data}\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: {secret}\nauth:\n  htpasswd:\n    realm: caas-test\n    path: {htpasswd}\n",
        data = dir.join("data").display(),
        secret = ns.as_str(),
        htpasswd = dir.join("htpasswd").display(),
    );
    std::fs::write(dir.join("config.yml"), config).unwrap();
    let child = std::process::Command::new("docker-registry")
        .arg("serve")
        .arg(dir.join("config.yml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("docker-registry is needed ({e}); {HOW}"));
    AuthRegistry { child, dir }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_auth_failure_is_its_own_error() {
    let d = deployer().await;
    let ns = Namespace::new("auth");
    let port = free_port();
    let _registry = start_auth_registry(&ns, port, "caas", "right-password");
    eventually_within(
        "the auth registry to answer",
        Duration::from_secs(30),
        || async move {
            matches!(
                http_get("127.0.0.1".parse().unwrap(), port, "/v2/").await,
                Some((401, _))
            )
            .then_some(())
        },
    )
    .await;
    let image = format!("127.0.0.1:{port}/nothing:v1");
    let creds = |password: &str| caas_deployer::RegistryCredentials {
        username: "caas".into(),
        password: password.into(),
        server: format!("127.0.0.1:{port}"),
    };

    let err = d.pull_to_end(&image, None).await.unwrap_err();
    assert!(matches!(err, Error::RegistryAuth { .. }), "{err:?}");
    let err = d
        .pull_to_end(&image, Some(&creds("wrong")))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RegistryAuth { .. }), "{err:?}");
    // The right credentials get through: now the image is what is missing.
    let err = d
        .pull_to_end(&image, Some(&creds("right-password")))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ImageNotFound { .. }), "{err:?}");
}

/// The container hardening a deployment can ask for, as the engine applied it: log rotation,
/// the `nofile` ulimit, the user, a read-only root with a tmpfs at `/tmp`. hello (a static
/// binary in a `FROM scratch` image, `USER 65534:65534`) runs and answers that way as another
/// user than its image's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_rotation_ulimit_user_and_read_only_root_are_applied() {
    let d = deployer().await;
    let image = hello_image(&d, "v1").await;
    let ns = Namespace::new("harden");
    let port = free_port();

    let mut spec = hello_spec(&ns, "ro", &image, HOST_A, port);
    spec.log_rotation = caas_deployer::LogRotation {
        max_size_mb: 10,
        max_files: 3,
    };
    spec.nofile = 4096;
    spec.user = Some("1000:1000".to_owned());
    spec.read_only_rootfs = true;
    let ro = d.run(&spec).await.unwrap();

    let fields = "{{.HostConfig.LogConfig.Type}} {{index .HostConfig.LogConfig.Config \"max-size\"}} {{index .HostConfig.LogConfig.Config \"max-file\"}} | {{range .HostConfig.Ulimits}}{{.Name}}={{.Soft}}:{{.Hard}}{{end}} | {{.Config.User}} | {{.HostConfig.ReadonlyRootfs}} {{index .HostConfig.Tmpfs \"/tmp\"}}";
    assert_eq!(
        cli_inspect(ro.id.as_str(), fields),
        format!(
            "json-file 10m 3 | nofile=4096:4096 | 1000:1000 | true {}",
            caas_deployer::READ_ONLY_TMPFS.1
        )
    );
    wait_ping(HOST_A, port).await;
    let (status, _) = http_get(HOST_A, port, "/").await.unwrap();
    assert_eq!(status, 200);

    // Without asking: the image's user (no `User` of ours over it), a writable root, no tmpfs,
    // the default ulimit.
    let port_b = free_port();
    let plain = d
        .run(&hello_spec(&ns, "plain", &image, HOST_B, port_b))
        .await
        .unwrap();
    assert_eq!(
        cli_inspect(plain.id.as_str(), "{{range .HostConfig.Ulimits}}{{.Name}}={{.Soft}}:{{.Hard}}{{end}} |{{.Config.User}}| {{.HostConfig.ReadonlyRootfs}} {{len .HostConfig.Tmpfs}}"),
        format!(
            "nofile={0}:{0} |65534:65534| false 0",
            caas_deployer::DEFAULT_NOFILE
        )
    );
    // The namespace removes both containers when dropped.
}
