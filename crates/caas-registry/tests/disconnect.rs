//! The route cache keeps serving its last snapshot while ZooKeeper is down, and follows the
//! tree again once it is back. This test runs its OWN ZooKeeper on a free port (never the
//! shared one), stops it and starts it again.

use caas_registry::{AclPolicy, Registry, RouteCache, ZkAuth, ZkConfig};
use caas_testkit::{eventually, init_tracing};
use caas_types::{AppId, ContainerId, Version};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

const ZK_SERVER: &str = "/usr/share/zookeeper/bin/zkServer.sh";

/// Our own ZooKeeper: a data dir and a running server, both removed on drop.
struct OwnZk {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl OwnZk {
    fn new() -> OwnZk {
        assert!(
            Path::new(ZK_SERVER).exists(),
            "{ZK_SERVER} missing: install ZooKeeper with `scripts/up` (Debian package zookeeper)"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir =
            std::env::temp_dir().join(format!("caas-registry-zk-{}-{port}", std::process::id()));
        std::fs::create_dir_all(dir.join("data")).expect("data dir");
        std::fs::write(
            dir.join("zoo.cfg"),
            format!(
                "tickTime=500\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={port}\n\
                 clientPortAddress=127.0.0.1\nminSessionTimeout=1000\nmaxSessionTimeout=30000\n\
                 admin.enableServer=false\n",
                dir.join("data").display()
            ),
        )
        .expect("zoo.cfg");
        OwnZk {
            dir,
            port,
            child: None,
        }
    }

    fn connect(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    async fn start(&mut self) {
        let log = std::fs::File::create(self.dir.join("zk.log")).expect("log file");
        let child = Command::new(ZK_SERVER)
            .arg("start-foreground")
            .arg(self.dir.join("zoo.cfg"))
            .env("ZOO_LOG_DIR", &self.dir)
            .env("SERVER_JVMFLAGS", "-Xmx128m")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("start our own zookeeper");
        self.child = Some(child);
        // A JVM on a busy 2-core machine can take a while to answer.
        let deadline = Instant::now() + Duration::from_secs(60);
        let connect = self.connect();
        loop {
            let attempt = zookeeper_client::Client::connector()
                .with_session_timeout(Duration::from_secs(2))
                .with_fail_eagerly()
                .connect(&connect);
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(3), attempt).await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "our zookeeper did not start; see {}",
                self.dir.join("zk.log").display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }
}

impl Drop for OwnZk {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn cache_serves_last_snapshot_while_zookeeper_is_down() {
    init_tracing("caas_registry=debug");
    let mut zk = OwnZk::new();
    zk.start().await;
    let platform: ZkAuth = "caas:platform-test".parse().expect("auth");
    let reader: ZkAuth = "gateway:reader-test".parse().expect("auth");
    let cfg = |auth: &ZkAuth| ZkConfig {
        connect: zk.connect(),
        chroot: None,
        auth: Some(auth.clone()),
        // Long enough that the session survives the restart: this is the disconnect path.
        session_timeout: Duration::from_secs(20),
    };
    let reg = Registry::connect(
        &cfg(&platform),
        AclPolicy::new(platform.clone(), Some(reader.clone())),
    )
    .await
    .expect("connect");
    reg.ensure_layout().await.expect("layout");
    let app: AppId = "shop".parse().expect("app");
    let v: Version = "v1".parse().expect("version");
    let a: ContainerId = "aaaaaaaaaaaa".parse().expect("container");
    let b: ContainerId = "bbbbbbbbbbbb".parse().expect("container");
    reg.register(&app, &v, &a, "127.0.0.2:25700".parse().expect("endpoint"))
        .await
        .expect("register");
    let cache = RouteCache::start(&cfg(&reader)).await.expect("start");
    assert_eq!(cache.snapshot().endpoints(&app).map(<[_]>::len), Some(1));

    zk.stop().await;
    eventually("cache notices the outage", || async {
        (!cache.is_connected()).then_some(())
    })
    .await;
    let during = cache.snapshot();
    assert_eq!(
        during.endpoints(&app).map(<[_]>::len),
        Some(1),
        "last snapshot still served"
    );

    zk.start().await;
    eventually("cache reconnects", || async {
        cache.is_connected().then_some(())
    })
    .await;
    eventually("registry writes again", || async {
        reg.register(&app, &v, &b, "127.0.0.3:25701".parse().expect("endpoint"))
            .await
            .ok()
    })
    .await;
    eventually("cache follows changes after the outage", || async {
        (cache.snapshot().endpoints(&app).map(<[_]>::len) == Some(2)).then_some(())
    })
    .await;
    zk.stop().await;
}
