//! `TestRedis`: a throwaway redis-server for tests.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use orchestrator_config::{RedisConfig, Secret};

/// How long a fresh redis-server may take to answer PING.
const START_BOUND: Duration = Duration::from_secs(10);

/// A `redis-server` on `127.0.0.1:<free port>`, without persistence, killed on drop.
///
/// `stop`/`restart` keep the port, so a cache built against [`TestRedis::url`]
/// can be shown to recover; `pause`/`resume` (SIGSTOP/SIGCONT) simulate a hung server.
#[derive(Debug)]
pub struct TestRedis {
    port: u16,
    password: Option<String>,
    tls: Option<TlsFiles>,
    extra_args: Vec<String>,
    child: Option<Child>,
}

/// A throwaway CA and a server certificate for `localhost` / `127.0.0.1`.
#[derive(Debug)]
struct TlsFiles {
    dir: tempfile::TempDir,
}

impl TlsFiles {
    fn generate() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let dir = tempfile::tempdir().expect("tempdir for TLS files");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let ca = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().expect("server key");
        let cert = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("server params")
            .signed_by(&key, &ca)
            .expect("server certificate");
        let files = Self { dir };
        std::fs::write(files.ca(), ca_cert.pem()).expect("write CA");
        std::fs::write(files.cert(), cert.pem()).expect("write cert");
        std::fs::write(files.key(), key.serialize_pem()).expect("write key");
        files
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
    fn cert(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }
    fn key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }
}

impl TestRedis {
    /// Starts a server; panics with a clear message when `redis-server` is missing.
    pub fn start() -> Self {
        Self::start_inner(None)
    }

    /// Starts a server that requires `password` (`requirepass`, user `default`).
    pub fn start_with_password(password: &str) -> Self {
        Self::start_inner(Some(password.to_owned()))
    }

    /// A free port that nothing listens on (yet): for "Redis is down at start" tests,
    /// followed by [`TestRedis::start_on`].
    pub fn free_port() -> u16 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        listener.local_addr().expect("local_addr").port()
    }

    /// Starts a server on a given port (one from [`TestRedis::free_port`]).
    pub fn start_on(port: u16) -> Self {
        let mut redis = Self {
            port,
            password: None,
            tls: None,
            extra_args: Vec::new(),
            child: None,
        };
        redis.restart();
        redis
    }

    /// Starts a server with extra `redis-server` arguments (e.g.
    /// `--maxmemory 1mb --maxmemory-policy allkeys-lru`).
    pub fn start_with_args(args: &[&str]) -> Self {
        let mut redis = Self {
            port: Self::free_port(),
            password: None,
            tls: None,
            extra_args: args.iter().map(|a| (*a).to_owned()).collect(),
            child: None,
        };
        redis.restart();
        redis
    }

    fn start_inner(password: Option<String>) -> Self {
        let mut redis = Self {
            port: Self::free_port(),
            password,
            tls: None,
            extra_args: Vec::new(),
            child: None,
        };
        redis.restart();
        redis
    }

    /// Starts a TLS-only server with a throwaway CA ([`TestRedis::ca_file`]);
    /// [`TestRedis::url`] is then `rediss://localhost:<port>/0`.
    pub fn start_tls() -> Self {
        let mut redis = Self {
            port: Self::free_port(),
            password: None,
            tls: Some(TlsFiles::generate()),
            extra_args: Vec::new(),
            child: None,
        };
        redis.restart();
        redis
    }

    /// The PEM CA that signed a TLS server's certificate.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.tls.as_ref().map(TlsFiles::ca)
    }

    /// `redis://127.0.0.1:<port>/0`, or `rediss://localhost:<port>/0` with TLS
    /// (no credentials: pass the password through config).
    pub fn url(&self) -> String {
        if self.tls.is_some() {
            format!("rediss://localhost:{}/0", self.port)
        } else {
            format!("redis://127.0.0.1:{}/0", self.port)
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A `RedisConfig` for this server with the given key prefix and the defaults otherwise.
    pub fn config(&self, key_prefix: &str) -> RedisConfig {
        RedisConfig {
            url: self.url(),
            password: self.password.as_deref().map(Secret::new),
            ca_file: self.ca_file(),
            key_prefix: key_prefix.to_owned(),
            ..RedisConfig::default()
        }
    }

    /// Kills the server (SIGKILL) and waits for it; the port stays reserved for `restart`.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (stopping it first if it runs)
    /// and waits, bounded, until it answers PING.
    pub fn restart(&mut self) {
        self.stop();
        let mut cmd = Command::new("redis-server");
        let port = self.port.to_string();
        match &self.tls {
            None => cmd.args(["--port", &port]),
            Some(tls) => cmd
                .args([
                    "--port",
                    "0",
                    "--tls-port",
                    &port,
                    "--tls-auth-clients",
                    "no",
                ])
                .arg("--tls-cert-file")
                .arg(tls.cert())
                .arg("--tls-key-file")
                .arg(tls.key())
                .arg("--tls-ca-cert-file")
                .arg(tls.ca()),
        };
        cmd.args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--protected-mode", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(password) = &self.password {
            cmd.args(["--requirepass", password]);
        }
        cmd.args(&self.extra_args);
        let child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "redis-server is not installed (apt-get install -y redis-server); the Redis tests need a real server"
            ),
            Err(e) => panic!("cannot start redis-server: {e}"),
        };
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_BOUND;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "redis-server on port {} exited at start ({status}); is the port taken?",
                        self.port
                    );
                }
            }
            // A TLS port cannot be probed in plain text; listening is enough.
            let ready = if self.tls.is_some() {
                TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            } else {
                answers_ping(addr)
            };
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer PING within {START_BOUND:?}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = self.pid().expect("redis-server is not running");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid fits i32"));
        nix::sys::signal::kill(pid, signal).expect("signal redis-server");
    }
}

/// True when something on `addr` speaks RESP (`+PONG`, or `-NOAUTH` with a password).
fn answers_ping(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(stream.read(&mut buf), Ok(n) if n > 0 && (buf[0] == b'+' || buf[0] == b'-'))
}

/// A three-master Redis Cluster on free loopback ports (no replicas), for
/// `cache.redis.clusterUrls`. Needs `redis-cli` (Debian: redis-tools) to form it.
#[derive(Debug)]
pub struct TestRedisCluster {
    nodes: Vec<TestRedis>,
    _dir: tempfile::TempDir,
}

impl TestRedisCluster {
    /// Starts three cluster-enabled servers, joins them, and waits (bounded)
    /// until the cluster reports `cluster_state:ok`.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir for cluster config");
        let nodes: Vec<TestRedis> = (0..3)
            .map(|_| {
                let port = TestRedis::free_port();
                let mut node = TestRedis {
                    port,
                    password: None,
                    tls: None,
                    extra_args: vec![
                        "--cluster-enabled".into(),
                        "yes".into(),
                        "--cluster-config-file".into(),
                        dir.path()
                            .join(format!("nodes-{port}.conf"))
                            .display()
                            .to_string(),
                        "--cluster-node-timeout".into(),
                        "2000".into(),
                    ],
                    child: None,
                };
                node.restart();
                node
            })
            .collect();
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        let out = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli is not installed (apt-get install -y redis-tools)");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = Self { nodes, _dir: dir };
        cluster.wait_ok();
        cluster
    }

    fn wait_ok(&self) {
        let deadline = Instant::now() + START_BOUND;
        loop {
            let all_ok = self.nodes.iter().all(|node| {
                Command::new("redis-cli")
                    .args(["-p", &node.port.to_string(), "cluster", "info"])
                    .output()
                    .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
            });
            if all_ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "cluster not ok within {START_BOUND:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `redis://127.0.0.1:<port>` of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(TestRedis::url).collect()
    }

    /// A `RedisConfig` in cluster mode over these nodes.
    pub fn config(&self, key_prefix: &str) -> RedisConfig {
        RedisConfig {
            cluster_urls: self.urls(),
            key_prefix: key_prefix.to_owned(),
            ..RedisConfig::default()
        }
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        // SIGKILL also ends a SIGSTOPped process.
        self.stop();
    }
}
