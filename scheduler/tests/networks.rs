//! Tenant networks, proved from inside containers against the real Docker engine, MariaDB,
//! ZooKeeper and registry (hello and busybox images): a job of tenant acme reaches acme's own
//! instance, and nothing else: not another tenant's container, not a listener on `0.0.0.0` of
//! the host it runs on (through any of the host's addresses), not ZooKeeper, MariaDB, the admin
//! API, the registry or instance host ports. A tenant's network goes with its last container.
//!
//! Needs the host firewall (`scripts/firewall up`, which `scripts/up` runs as root).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/db.rs"]
mod db;
#[path = "common/platform.rs"]
mod platform;

use caas_deployer::{RunSpec, TenantNetwork};
use caas_testkit::{eventually, eventually_within, var};
use platform::{Platform, TOKEN};
use reqwest::StatusCode;
use serde_json::json;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

/// This machine's own non-loopback IPv4 addresses (eth0's, docker0's, every bridge's).
fn host_addresses() -> Vec<IpAddr> {
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .expect("`ip` runs (iproute2; scripts/up installs it)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            words.find(|w| *w == "inet")?;
            words.next()?.split('/').next()?.parse().ok()
        })
        .collect()
}

/// The port of a `scheme://host:port/...` URL.
fn port_of(url: &str) -> u16 {
    let authority = url.split("://").nth(1).unwrap_or(url);
    let authority = authority.split('/').next().unwrap_or(authority);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    authority
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {url}"))
}

/// Runs a busybox job as `token` that tries a TCP connection to each target (label → host,
/// port); label → whether it connected.
async fn probe_from_inside(
    p: &Platform,
    token: &str,
    targets: &BTreeMap<String, (String, u16)>,
) -> BTreeMap<String, bool> {
    let mut script = String::from(
        "probe() { if nc -w 2 \"$2\" \"$3\" </dev/null >/dev/null 2>&1; \
         then echo \"$1 open\"; else echo \"$1 closed\"; fi; }\n",
    );
    for (label, (host, port)) in targets {
        assert!(!label.contains('\''), "labels are single-quoted: {label}");
        script.push_str(&format!("probe '{label}' '{host}' {port}\n"));
    }
    let job = json!({"version": "v1", "command": ["sh", "-c", script], "memory_mb": 32});
    let job = p
        .expect(
            StatusCode::CREATED,
            "POST",
            "/v1/apps/busybox/jobs",
            Some(job),
            token,
        )
        .await;
    let jid = job["id"].as_str().expect("job id").to_owned();
    let path = format!("/v1/apps/busybox/jobs/{jid}");
    let done = eventually_within("the probe job to end", Duration::from_secs(120), || async {
        let (_, v) = p.call("GET", &path, None, TOKEN).await;
        (!["pending", "running"].contains(&v["state"].as_str().unwrap_or_default())).then_some(v)
    })
    .await;
    let (_, out) = p.text(&format!("{path}/logs")).await;
    assert_eq!(done["state"], "succeeded", "{done}\n{out}");
    let seen: BTreeMap<String, bool> = out
        .lines()
        .filter_map(|l| {
            let (label, verdict) = l.rsplit_once(' ')?;
            Some((label.to_owned(), verdict == "open"))
        })
        .collect();
    for label in targets.keys() {
        assert!(
            seen.contains_key(label),
            "no verdict for {label} in {out:?}"
        );
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenants_container_reaches_its_own_tenant_and_nothing_else() {
    let p = Platform::new(&[]).await;
    let hello = caas_testkit::docker::hello_image(&p.docker, "v1").await;
    caas_testkit::docker::busybox_image(&p.docker).await;
    p.add_hosts(1, 2048, 2.0).await;
    let (s, acme) = p
        .call("POST", "/v1/tenants", Some(json!({"name": "acme"})), TOKEN)
        .await;
    assert_eq!(s, StatusCode::CREATED, "{acme}");
    let acme = acme["token"].as_str().expect("token").to_owned();
    for app in ["hello", "busybox"] {
        let body = Some(json!({"id": app}));
        p.expect(StatusCode::CREATED, "POST", "/v1/apps", body, &acme)
            .await;
    }
    let deploy = json!({"version": "v1", "instances": 1, "memory_mb": 64, "cpus": 0.1});
    let path = "/v1/apps/hello/deployments";
    let deployment = p
        .expect(StatusCode::CREATED, "POST", path, Some(deploy), &acme)
        .await;
    let own_port = platform::instances(&deployment)[0]["address"]
        .as_str()
        .map(port_of)
        .expect("instance address");

    // Another tenant's container, on its own network on the same engine.
    let globex_net = TenantNetwork::for_tenant(&p.namespace, "globex");
    let mut spec = RunSpec::for_instance(
        &p.namespace,
        &"hello".parse().expect("app"),
        &"v1".parse().expect("version"),
        &"hello-globex1".parse().expect("instance"),
        hello,
        8080,
        format!("{}:25799", p.host_ip(9)).parse().expect("endpoint"),
        caas_types::Resources {
            memory: caas_types::Memory::from_mib(64).expect("memory"),
            cpus: caas_types::Cpus::from_millis(100).expect("cpus"),
        },
    );
    spec.network = Some(globex_net.clone());
    let globex = p.docker.run(&spec).await.expect("globex's container runs");

    let acme_net = TenantNetwork::for_tenant(&p.namespace, "acme");
    let acme_addrs = p
        .docker
        .network_addresses(acme_net.name())
        .await
        .expect("acme's network exists while its instance runs");
    let globex_addrs = p
        .docker
        .network_addresses(globex_net.name())
        .await
        .expect("globex's network exists while its container runs");
    let own_instance = acme_addrs
        .containers
        .values()
        .next()
        .copied()
        .expect("acme's instance is on acme's network");
    let other_tenant = globex_addrs.containers[globex.id.as_str()];
    let bridge_gateway = acme_addrs.gateway.expect("acme's network has a gateway");

    // A listener on every address of this host, which the host itself reaches.
    let listener = std::net::TcpListener::bind("0.0.0.0:0").expect("bind 0.0.0.0");
    let open_port = listener.local_addr().expect("addr").port();
    std::net::TcpStream::connect((bridge_gateway, open_port))
        .expect("the host reaches its own 0.0.0.0 listener through the bridge address");
    let accept = std::thread::spawn(move || {
        // Keep accepting (and dropping) until the test ends, so an open port stays open.
        for conn in listener.incoming() {
            drop(conn);
        }
    });

    let mut targets = BTreeMap::new();
    targets.insert("own tenant".to_owned(), (own_instance.to_string(), 8080));
    targets.insert("other tenant".to_owned(), (other_tenant.to_string(), 8080));
    let services = [
        ("zookeeper", port_of(&format!("tcp://{}", var("CAAS_ZK")))),
        ("mariadb", port_of(&var("CAAS_DATABASE_URL"))),
        ("admin api", port_of(&p.api)),
        (
            "registry",
            port_of(&format!("tcp://{}", var("CAAS_REGISTRY"))),
        ),
        ("listener on 0.0.0.0", open_port),
        ("own host port", own_port),
        ("other tenant host port", 25799),
    ];
    let mut addresses = host_addresses();
    addresses.push(bridge_gateway);
    addresses.sort();
    addresses.dedup();
    for addr in &addresses {
        for (what, port) in services {
            targets.insert(format!("{what} at {addr}"), (addr.to_string(), port));
        }
    }
    // Published ports are bound to loopback aliases: inside a container that is its own.
    targets.insert(
        "own host port at its binding".to_owned(),
        (p.host_ip(1), own_port),
    );

    let seen = probe_from_inside(&p, &acme, &targets).await;
    let open: Vec<&String> = seen.iter().filter(|(_, v)| **v).map(|(k, _)| k).collect();
    assert_eq!(
        open,
        vec!["own tenant"],
        "from inside acme's container only acme's own instance may answer; open: {open:?} \
         (is the host firewall up? `scripts/firewall up` as root; scripts/up runs it)"
    );

    // The last container of a network takes the network with it.
    p.docker
        .remove(&globex.id)
        .await
        .expect("remove globex's container");
    for app in ["hello", "busybox"] {
        let path = format!("/v1/apps/{app}");
        p.expect(StatusCode::NO_CONTENT, "DELETE", &path, None, &acme)
            .await;
    }
    eventually("both tenant networks to be removed", || async {
        let left = p.docker.tenant_networks().await.expect("list networks");
        (!left
            .iter()
            .any(|n| n == acme_net.name() || n == globex_net.name()))
        .then_some(())
    })
    .await;
    drop(accept);
}
