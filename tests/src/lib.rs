//! Fixtures for end-to-end tests that run the real `orchestrator` binary on
//! loopback: [`Orchestrator`] (a process with its own config and secrets in a
//! temp dir, on free ports, ready when `/readyz` says so, killed on drop),
//! [`TestUpstream`] (a real HTTP server that echoes what it received), and
//! small helpers for CLI runs and metrics.
//!
//! Nothing here sleeps to synchronise: readiness and exits are polled with
//! bounded loops.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

pub mod browser;
pub mod chromium;
pub mod haproxy;
pub mod ingress;
pub mod node_op;
pub mod otlp;
pub mod raw;
mod upstream;
pub mod ws;

use std::collections::BTreeSet;
use std::net::TcpListener as StdTcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

pub use upstream::TestUpstream;

/// The `orchestrator` binary built by cargo next to this test executable.
pub fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("ORCHESTRATOR_BIN") {
        return PathBuf::from(p);
    }
    // target/debug/deps/<test> → target/debug/orchestrator
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(|d| {
            if d.ends_with("deps") {
                d.parent()
            } else {
                Some(d)
            }
        })
        .expect("target dir");
    let bin = dir.join("orchestrator");
    assert!(
        bin.exists(),
        "{} not found: run `cargo build -p orchestrator` first (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// A port that was free a moment ago, picked at random below the kernel's
/// ephemeral range: the OS hands ports in that range to outgoing connections
/// (every test's clients), so one taken from it can be gone again before the
/// server that was promised it binds. A port is never handed out twice in
/// one test process: two picked for one server (its listener and its admin
/// port) would otherwise be the same now and then.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let (low, _) = ephemeral_range();
    let start = low.saturating_sub(12_000).max(1024);
    for _ in 0..200 {
        let port = start + (rand::random::<u32>() % u32::from(low - start)) as u16;
        if !handed_out.contains(&port) && StdTcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.insert(port);
            return port;
        }
    }
    for _ in 0..200 {
        let port = StdTcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        if handed_out.insert(port) {
            return port;
        }
    }
    panic!("no free port left to hand out");
}

/// A port nothing listens on: connections to it are refused. It stays
/// bound (not listening) while this lives, so no other test's server can
/// take it meanwhile.
pub struct ClosedPort {
    _held: tokio::net::TcpSocket,
    port: u16,
}

impl ClosedPort {
    /// Binds a free port without listening on it.
    pub fn new() -> Self {
        for _ in 0..50 {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            if socket
                .bind(std::net::SocketAddr::from(([127, 0, 0, 1], free_port())))
                .is_ok()
            {
                let port = socket.local_addr().expect("bound").port();
                return Self {
                    _held: socket,
                    port,
                };
            }
        }
        panic!("no closed port could be held");
    }

    /// Its number.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Default for ClosedPort {
    fn default() -> Self {
        Self::new()
    }
}

/// The kernel's range for ephemeral ports (Linux's default where it cannot be read).
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(str::parse::<u16>);
            Some((it.next()?.ok()?, it.next()?.ok()?))
        })
        .filter(|(low, _)| *low > 2048)
        .unwrap_or((32768, 60999))
}

/// How the config file sits on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// A plain file in a directory.
    Plain,
    /// A mounted ConfigMap: `orchestrator.yaml -> ..data/orchestrator.yaml`,
    /// `..data -> ..<timestamp>/`, updated by an atomic symlink swap.
    Kubernetes,
}

/// A running orchestrator process.
pub struct Orchestrator {
    child: Child,
    files: ConfigFiles,
}

/// The temp dir of one process: its config (in a [`Layout`]), secrets and logs.
struct ConfigFiles {
    dir: tempfile::TempDir,
    port: u16,
    admin_port: u16,
    layout: Layout,
    generation: u32,
}

/// What to start.
#[derive(Clone, Copy)]
pub struct Setup<'a> {
    /// Config YAML; `{port}` and `{admin_port}` are replaced. `listen`, `admin` and
    /// `secretsDir` are added when the YAML does not set them.
    pub yaml: &'a str,
    /// Files of the secrets directory.
    pub secrets: &'a [(&'a str, &'a str)],
    /// Extra environment variables.
    pub env: &'a [(&'a str, &'a str)],
    /// Config file layout.
    pub layout: Layout,
    /// Ports to use (None: pick free ones).
    pub ports: Option<(u16, u16)>,
}

impl Default for Setup<'_> {
    fn default() -> Self {
        Self {
            yaml: "",
            secrets: &[],
            env: &[],
            layout: Layout::Plain,
            ports: None,
        }
    }
}

impl Orchestrator {
    /// Starts with a config and secrets, plain layout, and waits for `/readyz`.
    pub async fn start(yaml: &str, secrets: &[(&str, &str)]) -> Self {
        Self::start_with(Setup {
            yaml,
            secrets,
            ..Setup::default()
        })
        .await
    }

    /// Starts as `setup` says and waits until `/readyz` answers 200. When
    /// the ports were picked here and one was taken before the process bound
    /// it, starts again on new ones (at most 5 times).
    pub async fn start_with(setup: Setup<'_>) -> Self {
        let picked = setup.ports.is_none();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut orch = Self::spawn(setup).await;
            if picked && attempts < 5 && orch.lost_its_port().await {
                continue;
            }
            return orch.wait_ready().await;
        }
    }

    /// True when the process exited because a port was in use (it exits at
    /// once then; a process that gets past binding is left to `wait_ready`).
    async fn lost_its_port(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = reqwest::Client::new();
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return self.all_logs().contains("Address already in use");
            }
            let answered = client
                .get(format!("{}/readyz", self.admin_url()))
                .send()
                .await
                .is_ok();
            // An answer while ours is still running is ours: another
            // process on the admin port would have made ours exit.
            if answered {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return self.all_logs().contains("Address already in use");
                }
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// Starts without waiting for readiness (for tests of start-up failures).
    pub async fn spawn(setup: Setup<'_>) -> Self {
        let (port, admin_port) = setup.ports.unwrap_or_else(|| (free_port(), free_port()));
        let dir = tempfile::tempdir().expect("tempdir");
        let secrets_dir = dir.path().join("secrets");
        std::fs::create_dir_all(&secrets_dir).unwrap();
        for (name, value) in setup.secrets {
            std::fs::write(secrets_dir.join(name), value).unwrap();
        }
        let mut files = ConfigFiles {
            dir,
            port,
            admin_port,
            layout: setup.layout,
            generation: 0,
        };
        let yaml = files.render(setup.yaml);
        files.write(&yaml);
        let mut cmd = Command::new(binary());
        cmd.arg("run")
            .arg("--config")
            .arg(files.config_path())
            .env_remove("RUST_LOG")
            .env("RUST_LOG", "info,orchestrator=debug")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(files.log_path()).unwrap())
            .stderr(std::fs::File::create(files.stderr_path()).unwrap())
            .kill_on_drop(true);
        for (k, v) in setup.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn orchestrator");
        Self { child, files }
    }

    /// The config with ports filled in and the listener keys added.
    pub fn render(&self, yaml: &str) -> String {
        self.files.render(yaml)
    }

    /// Polls `/readyz` (bounded: 20 s); panics with the logs if the process exits or never gets ready.
    pub async fn wait_ready(mut self) -> Self {
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = reqwest::Client::new();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "orchestrator exited with {status} before getting ready\n{}",
                    self.all_logs()
                );
            }
            if let Ok(resp) = client
                .get(format!("{}/readyz", self.admin_url()))
                .send()
                .await
            {
                if resp.status() == 200 {
                    return self;
                }
            }
            assert!(
                Instant::now() < deadline,
                "orchestrator not ready within 20s\n{}",
                self.all_logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.files.port)
    }

    /// `http://127.0.0.1:<admin port>`.
    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.files.admin_port)
    }

    /// The main listener's port.
    pub fn port(&self) -> u16 {
        self.files.port
    }

    /// The admin listener's port.
    pub fn admin_port(&self) -> u16 {
        self.files.admin_port
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.id().map(|p| p as i32).expect("running")
    }

    /// The temp dir holding config, secrets and logs.
    pub fn dir(&self) -> &Path {
        self.files.dir.path()
    }

    /// The secrets directory.
    pub fn secrets_dir(&self) -> PathBuf {
        self.files.secrets_dir()
    }

    /// The path given to `--config`.
    pub fn config_path(&self) -> PathBuf {
        self.files.config_path()
    }

    /// Waits (at most `limit`) until the logs hold a line for which `found`
    /// is true, and returns all the logs; panics with them otherwise. Lines
    /// are written by the process's log thread, shortly after the request.
    pub async fn wait_for_log_line(&self, found: impl Fn(&str) -> bool, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let logs = self.all_logs();
            if logs.lines().any(&found) {
                return logs;
            }
            assert!(
                Instant::now() < deadline,
                "no such log line in {limit:?}:\n{logs}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything the process logged so far (stdout JSON lines, then stderr).
    pub fn all_logs(&self) -> String {
        let out = std::fs::read_to_string(self.files.log_path()).unwrap_or_default();
        let err = std::fs::read_to_string(self.files.stderr_path()).unwrap_or_default();
        format!("--- stdout ---\n{out}\n--- stderr ---\n{err}")
    }

    /// Writes a new config (ports filled in) the way the layout does it:
    /// plain = write a temp file and rename it over; Kubernetes = a new
    /// timestamped directory and an atomic `..data` symlink swap.
    pub fn write_config(&mut self, yaml: &str) {
        self.files.write(yaml);
    }

    /// Renders and writes a new config (see [`Orchestrator::write_config`]).
    pub fn update_config(&mut self, yaml: &str) {
        let rendered = self.files.render(yaml);
        self.files.write(&rendered);
    }

    /// Sends a signal.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).expect("kill");
    }

    /// Waits (bounded) for the process to exit and returns its exit code.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(Ok(status)) => status.code(),
            _ => panic!(
                "orchestrator did not exit within {limit:?}\n{}",
                self.all_logs()
            ),
        }
    }

    /// The admin `/metrics` text.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.admin_url()))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body")
    }

    /// The value of one sample, e.g. `orchestrator_config_reloads_total{result="success"}`.
    pub async fn metric(&self, sample: &str) -> Option<f64> {
        metric_value(&self.metrics().await, sample)
    }

    /// Polls (bounded) until `sample` reaches at least `min`; returns the last value.
    pub async fn wait_metric_at_least(&self, sample: &str, min: f64, limit: Duration) -> f64 {
        let deadline = Instant::now() + limit;
        loop {
            let v = self.metric(sample).await.unwrap_or(0.0);
            if v >= min {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{sample} stayed at {v} (< {min}) for {limit:?}\n{}",
                self.all_logs()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl ConfigFiles {
    fn secrets_dir(&self) -> PathBuf {
        self.dir.path().join("secrets")
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("config").join("orchestrator.yaml")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("stdout.log")
    }

    fn stderr_path(&self) -> PathBuf {
        self.dir.path().join("stderr.log")
    }

    /// The config with ports filled in and the listener keys added.
    fn render(&self, yaml: &str) -> String {
        let mut out = String::new();
        if !yaml.lines().any(|l| l.starts_with("listen:")) {
            out.push_str("listen:\n  address: 127.0.0.1:{port}\n");
        }
        if !yaml.lines().any(|l| l.starts_with("admin:")) {
            out.push_str("admin:\n  address: 127.0.0.1:{admin_port}\n");
        }
        if !yaml.lines().any(|l| l.starts_with("secretsDir:")) {
            out.push_str(&format!("secretsDir: {}\n", self.secrets_dir().display()));
        }
        if !yaml.lines().any(|l| l.starts_with("log:")) {
            out.push_str("log:\n  format: json\n");
        }
        out.push_str(yaml);
        out.replace("{port}", &self.port.to_string())
            .replace("{admin_port}", &self.admin_port.to_string())
    }

    /// Writes a new config (ports filled in) the way the layout does it:
    /// plain = write a temp file and rename it over; Kubernetes = a new
    /// timestamped directory and an atomic `..data` symlink swap.
    fn write(&mut self, yaml: &str) {
        let config_dir = self.dir.path().join("config");
        std::fs::create_dir_all(&config_dir).unwrap();
        self.generation += 1;
        match self.layout {
            Layout::Plain => {
                let tmp = config_dir.join(".orchestrator.yaml.tmp");
                std::fs::write(&tmp, yaml).unwrap();
                std::fs::rename(&tmp, config_dir.join("orchestrator.yaml")).unwrap();
            }
            Layout::Kubernetes => {
                let ts = format!(
                    "..2026_11_23_00_00_{:02}.{}",
                    self.generation, self.generation
                );
                let ts_dir = config_dir.join(&ts);
                std::fs::create_dir_all(&ts_dir).unwrap();
                std::fs::write(ts_dir.join("orchestrator.yaml"), yaml).unwrap();
                let tmp_link = config_dir.join("..data_tmp");
                let _ = std::fs::remove_file(&tmp_link);
                std::os::unix::fs::symlink(&ts, &tmp_link).unwrap();
                std::fs::rename(&tmp_link, config_dir.join("..data")).unwrap();
                let visible = config_dir.join("orchestrator.yaml");
                if std::fs::symlink_metadata(&visible).is_err() {
                    std::os::unix::fs::symlink("..data/orchestrator.yaml", &visible).unwrap();
                }
            }
        }
    }
}

/// Finds a sample's value in Prometheus text.
pub fn metric_value(text: &str, sample: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(sample)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Output of a one-shot CLI run.
pub struct CliOutput {
    /// Exit code.
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs `orchestrator <args>` with `stdin`, bounded to 30 s.
pub async fn run_cli(args: &[&str], stdin: &str) -> CliOutput {
    use tokio::io::AsyncWriteExt;
    let mut child = Command::new(binary())
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("CLI did not finish within 30s")
        .unwrap();
    CliOutput {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A self-signed certificate and key for `names`, as PEM.
pub fn self_signed(names: &[&str]) -> (String, String) {
    let (cert, key, _) = self_signed_with_spki(names);
    (cert, key)
}

/// [`self_signed`], plus the base64 SHA-256 of the certificate's public key
/// (SubjectPublicKeyInfo): what Chromium's `--ignore-certificate-errors-spki-list`
/// takes to trust exactly this certificate.
pub fn self_signed_with_spki(names: &[&str]) -> (String, String, String) {
    use base64::Engine as _;
    use sha2::Digest as _;
    let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    let ck = rcgen::generate_simple_self_signed(names).expect("rcgen");
    use rcgen::PublicKeyData as _;
    let spki = sha2::Sha256::digest(ck.signing_key.subject_public_key_info());
    (
        ck.cert.pem(),
        ck.signing_key.serialize_pem(),
        base64::engine::general_purpose::STANDARD.encode(spki),
    )
}
