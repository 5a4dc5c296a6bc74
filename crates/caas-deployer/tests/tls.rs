//! The deployer against a second `dockerd` that this test starts on a loopback TCP port with
//! `--tlsverify` and certificates it generates (openssl CLI): reached with the right client
//! certificate, refused without one, with one from another CA, over plain HTTP, and when the
//! engine's certificate is not from the CA we trust. The daemon runs in its own network namespace
//! (see [`LAUNCHER`]) and is stopped by PID at the end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use caas_deployer::{Deployer, DockerEndpoint, Error, TlsFiles};
use caas_testkit::{eventually_within, unique};
use common::free_port;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A temp dir removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        // Short: the daemon's unix sockets live below it and socket paths are limited to 108 bytes.
        let dir = std::env::temp_dir().join(unique("cdt"));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The test's own dockerd; SIGTERM by PID on drop (so it stops its own containerd too), then
/// SIGKILL if it has not exited after 30 s.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the openssl CLI is needed (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA `{name}.pem` / `{name}-key.pem`.
fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}-key.pem"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// A leaf `{name}-cert.pem` / `{name}-key.pem` signed by CA `ca`, with extensions `ext`.
fn make_leaf(dir: &Path, ca: &str, name: &str, ext: &str) {
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}-key.pem"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}-key.pem"),
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &format!("{name}-cert.pem"),
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
}

/// Binds the TLS port in our network namespace, then execs (same PID throughout) `unshare --net
/// dockerd -H fd://` with that socket as fd 3 (systemd socket activation): the daemon serves TLS
/// on our loopback, while everything else it does to networking (with `--bridge=none` it deletes
/// any `docker0` it sees) stays inside its own, empty network namespace and never touches the
/// shared engine's bridge. perl-base is Essential on Debian, so the launcher needs nothing more.
const LAUNCHER: &str = r#"
use Socket; use POSIX;
my $port = shift @ARGV;
$^F = 3; # fds up to 3 survive exec
socket(my $s, PF_INET, SOCK_STREAM, 0) or die "socket: $!";
setsockopt($s, SOL_SOCKET, SO_REUSEADDR, 1) or die "setsockopt: $!";
bind($s, pack_sockaddr_in($port, inet_aton("127.0.0.1"))) or die "bind 127.0.0.1:$port: $!";
listen($s, 128) or die "listen: $!";
if (fileno($s) != 3) { POSIX::dup2(fileno($s), 3) or die "dup2: $!"; }
$ENV{LISTEN_FDS} = "1"; $ENV{LISTEN_PID} = "$$";
exec { $ARGV[0] } @ARGV or die "exec $ARGV[0]: $!";
"#;

fn start_dockerd(dir: &Path, port: u16) -> Daemon {
    let p = |s: &str| dir.join(s).to_str().unwrap().to_owned();
    std::fs::write(dir.join("daemon.json"), "{}").unwrap();
    std::fs::write(dir.join("launch.pl"), LAUNCHER).unwrap();
    let log = dir.join("dockerd.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let child = Command::new("perl")
        .arg(p("launch.pl"))
        .arg(port.to_string())
        .args(["unshare", "--net", "dockerd"])
        .args([
            "--config-file", &p("daemon.json"),
            "--data-root", &p("data"),
            "--exec-root", &p("exec"),
            "--pidfile", &p("dockerd.pid"),
            "-H", &format!("unix://{}", p("d.sock")),
            "-H", "fd://",
            "--tlsverify",
            "--tlscacert", &p("ca.pem"),
            "--tlscert", &p("server-cert.pem"),
            "--tlskey", &p("server-key.pem"),
            "--bridge=none",
            "--iptables=false",
            "--ip-forward=false",
            "--storage-driver", "vfs",
            "--log-level", "warn",
        ])
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .expect("perl, unshare (util-linux) and dockerd (docker.io) are needed; scripts/up installs docker.io");
    Daemon { child, log }
}

/// The engine refused us. It says so with a TLS alert (or, for plain HTTP, a 400), then closes;
/// but it rejects the client certificate only after the TLS 1.3 handshake, when our request is
/// already on its way, so closing with unread data can make the kernel send a reset that
/// overtakes the alert, and the HTTP client may see the connection die before it is even used
/// ("connection was not ready", "canceled"). All are refusals (the same engine accepts us with
/// the right certificate); only the alert can be named as one.
fn assert_refused(err: Error) {
    let dropped = matches!(&err, Error::Unreachable(m)
        if ["reset", "closed", "not ready", "canceled", "broken pipe", "eof"]
            .iter()
            .any(|w| m.to_lowercase().contains(w)));
    assert!(matches!(err, Error::TlsRefused(_)) || dropped, "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_engine_needs_our_client_certificate() {
    let tmp = TempDir::new();
    let dir = tmp.0.clone();
    make_ca(&dir, "ca");
    make_ca(&dir, "rogue");
    make_leaf(
        &dir,
        "ca",
        "server",
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    );
    let client_ext = "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n";
    make_leaf(&dir, "ca", "client", client_ext);
    make_leaf(&dir, "rogue", "intruder", client_ext);
    std::fs::write(dir.join("empty.pem"), "").unwrap();

    // The shared engine's bridge must survive this test (a daemon with --bridge=none deletes it).
    let docker0 = Path::new("/sys/class/net/docker0");
    let had_docker0 = docker0.exists();
    let port = free_port();
    let mut daemon = start_dockerd(&dir, port);
    // Ready when its own unix socket answers; fail early with its log if it died.
    let local: DockerEndpoint = format!("unix://{}", dir.join("d.sock").display())
        .parse()
        .unwrap();
    let log = daemon.log.clone();
    eventually_within(
        "the test's dockerd to start",
        Duration::from_secs(90),
        || {
            let exited = daemon.child.try_wait().ok().flatten();
            assert!(
                exited.is_none(),
                "dockerd exited ({exited:?}): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            let local = local.clone();
            async move {
                let d = Deployer::connect(&local).ok()?;
                d.ping().await.ok()
            }
        },
    )
    .await;

    let url = format!("https://127.0.0.1:{port}");
    let files = |ca: &str, cert: &str, key: &str| TlsFiles {
        ca: dir.join(ca),
        cert: dir.join(cert),
        key: dir.join(key),
    };
    let connect = |files: TlsFiles| {
        let endpoint = DockerEndpoint::parse(&url, Some(files)).unwrap();
        Deployer::connect(&endpoint).unwrap()
    };

    // With our client certificate: it answers, and lists (nothing).
    let good = connect(files("ca.pem", "client-cert.pem", "client-key.pem"));
    good.ping().await.unwrap();
    assert!(good.list(&[]).await.unwrap().is_empty());

    // Without a client certificate (an empty certificate file: none is sent): refused.
    let none = connect(files("ca.pem", "empty.pem", "client-key.pem"));
    assert_refused(none.ping().await.unwrap_err());

    // With a certificate from another CA: refused.
    let intruder = connect(files("ca.pem", "intruder-cert.pem", "intruder-key.pem"));
    assert_refused(intruder.ping().await.unwrap_err());

    // Trusting another CA than the engine's: we refuse it.
    let untrusted = connect(files("rogue.pem", "client-cert.pem", "client-key.pem"));
    let err = untrusted.ping().await.unwrap_err();
    assert!(matches!(err, Error::TlsRefused(_)), "{err:?}");

    // Plain HTTP to the TLS port: refused.
    let plain = Deployer::connect(&format!("tcp://127.0.0.1:{port}").parse().unwrap()).unwrap();
    assert_refused(plain.ping().await.unwrap_err());

    // Missing files are a configuration error, found at connect.
    let missing =
        DockerEndpoint::parse(&url, Some(files("ca.pem", "nope.pem", "client-key.pem"))).unwrap();
    assert!(matches!(
        Deployer::connect(&missing),
        Err(Error::InvalidEndpoint { .. })
    ));

    drop(daemon);
    drop(tmp);
    assert_eq!(
        docker0.exists(),
        had_docker0,
        "the shared docker0 bridge was touched"
    );
}
