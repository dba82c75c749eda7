//! The processes under test and what `/proc` says about them: CPU placement
//! ([`Cpus`]), the upstream (this binary re-executed with `--serve-upstream`),
//! the orchestrator with a generated config, NGINX with a generated
//! `nginx.conf`, and CPU/RSS readings.
//!
//! Everything listens on 127.0.0.1 ports picked by the OS, lives in a temp
//! dir, and is killed on drop. Readiness is polled, never waited for by time.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use benches::Error;
use benches::client::{Browser, Conn, get};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, Command};

/// `--access-log`: both proxies write an access line per request.
pub(crate) static ACCESS_LOG: AtomicBool = AtomicBool::new(false);

/// How long any process may take to get ready.
const READY_BOUND: Duration = Duration::from_secs(30);

/// The user every bench logs in as, and the group the app's policy asks for.
pub(crate) const USER: &str = "bench";
pub(crate) const PASSWORD: &str = "bench-password-not-secret";

/// A browser logged in as [`USER`] through the real flow on `host` (at
/// `addr`), and the value of its gateway session cookie.
pub(crate) async fn signed_in(addr: SocketAddr, host: &str) -> Result<(Browser, String), Error> {
    let mut browser = Browser::connect(addr, host).await?;
    browser.login("/", USER, PASSWORD).await?;
    let session = browser
        .jar
        .get("orchestrator_session")
        .ok_or_else(|| format!("no session cookie after the login on {host}"))?
        .to_owned();
    Ok((browser, session))
}
/// Host names the targets are addressed by (the listener is always 127.0.0.1).
pub(crate) const APP_HOST: &str = "localhost";
pub(crate) const PLAIN_HOST: &str = "plain.localhost";

/// Which CPUs the load generator and the servers run on.
#[derive(Debug, Clone)]
pub(crate) struct Cpus {
    /// CPUs of this process (the load generator), as a taskset list.
    pub(crate) loadgen: String,
    /// CPUs of every server (upstream, NGINX, orchestrator, Redis).
    pub(crate) servers: String,
    /// How many CPUs the servers share (= NGINX's `worker_processes`).
    pub(crate) server_count: usize,
    /// False when taskset is missing or there is one CPU: nothing is pinned.
    pub(crate) pinned: bool,
    /// CPUs this process could use before pinning.
    pub(crate) total: usize,
}

impl Cpus {
    /// Splits the CPUs this process may use in two halves: the lower one for
    /// the load generator, the upper one for the servers. On 2 CPUs that is
    /// one each: the proxy and the upstream share one core, as they would
    /// share a node, and the load generator never steals from them.
    pub(crate) fn plan(pin: bool) -> Self {
        let allowed = allowed_cpus();
        let taskset = which("taskset").is_some();
        if !pin || !taskset || allowed.len() < 2 {
            let n = allowed.len().max(1);
            return Self {
                loadgen: list(&allowed),
                servers: list(&allowed),
                server_count: n,
                pinned: false,
                total: n,
            };
        }
        let half = allowed.len() / 2;
        let (load, servers) = allowed.split_at(half);
        Self {
            loadgen: list(load),
            servers: list(servers),
            server_count: servers.len(),
            pinned: true,
            total: allowed.len(),
        }
    }

    /// Pins this process (call before any thread starts: threads inherit it).
    pub(crate) fn pin_self(&self) -> Result<(), Error> {
        if !self.pinned {
            return Ok(());
        }
        let status = std::process::Command::new("taskset")
            .args([
                "-a",
                "-c",
                "-p",
                &self.loadgen,
                &std::process::id().to_string(),
            ])
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            return Err("taskset could not pin the load generator".into());
        }
        Ok(())
    }

    /// A command for `program` that runs on the server CPUs.
    pub(crate) fn server_command(&self, program: &Path) -> Command {
        if self.pinned {
            let mut cmd = Command::new("taskset");
            cmd.arg("-c").arg(&self.servers).arg(program);
            cmd
        } else {
            Command::new(program)
        }
    }

    /// [`server_command`](Self::server_command) for `bin` run by `wrapper`
    /// (a program and its arguments, e.g. valgrind), or alone when empty.
    pub(crate) fn wrapped_server_command(&self, bin: &Path, wrapper: &[String]) -> Command {
        match wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = self.server_command(Path::new(program));
                cmd.args(args).arg(bin);
                cmd
            }
            None => self.server_command(bin),
        }
    }

    /// Moves an already running process (all its threads) to the server CPUs.
    pub(crate) fn pin_server(&self, pid: u32) {
        self.move_to(&self.servers, pid);
    }

    /// Moves an already running process (all its threads) to the load
    /// generator's CPUs.
    pub(crate) fn pin_loadgen_side(&self, pid: u32) {
        self.move_to(&self.loadgen, pid);
    }

    fn move_to(&self, cpus: &str, pid: u32) {
        if self.pinned {
            let _ = std::process::Command::new("taskset")
                .args(["-a", "-c", "-p", cpus, &pid.to_string()])
                .stdout(Stdio::null())
                .status();
        }
    }

    /// True when processes are pinned to CPUs.
    pub(crate) fn pinned(&self) -> bool {
        self.pinned
    }

    /// One line for the report.
    pub(crate) fn describe(&self) -> String {
        if self.pinned {
            format!(
                "load generator on CPU {}; upstream, NGINX (worker_processes {}), orchestrator \
                 (tokio workers = {}) and Redis share CPU {} (taskset)",
                self.loadgen, self.server_count, self.server_count, self.servers
            )
        } else {
            format!(
                "not pinned: every process shares CPUs {} (NGINX worker_processes {})",
                self.servers, self.server_count
            )
        }
    }
}

fn allowed_cpus() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let parsed = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|l| parse_list(l.trim()))
        .unwrap_or_default();
    if parsed.is_empty() {
        let n = std::thread::available_parallelism().map_or(1, usize::from);
        (0..n).collect()
    } else {
        parsed
    }
}

fn parse_list(s: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in s.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<usize>().ok()),
        }
    }
    out
}

fn list(cpus: &[usize]) -> String {
    cpus.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The first `name` on `PATH` (and in the sbin directories, where Debian puts nginx).
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A port that was free a moment ago.
pub(crate) fn free_port() -> Result<u16, Error> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// CPU time and memory of a process tree, from `/proc`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProcStats {
    /// utime + stime of the process and its direct children, in seconds.
    pub(crate) cpu_seconds: f64,
    /// VmRSS, summed over the tree, in KiB.
    pub(crate) rss_kib: u64,
    /// VmHWM (peak RSS), summed over the tree, in KiB.
    pub(crate) peak_rss_kib: u64,
}

impl ProcStats {
    /// Reads `pid` and its direct children (NGINX's workers).
    pub(crate) fn read(pid: u32) -> Self {
        let mut pids = vec![pid];
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        pids.extend(
            children
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
        let ticks = clock_ticks();
        let mut out = Self::default();
        for p in pids {
            if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
                // Fields after the ")" that closes the command name: utime is
                // the 14th field of the line, stime the 15th.
                if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
                    let f: Vec<&str> = rest.split_whitespace().collect();
                    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
                    out.cpu_seconds += (t(11) + t(12)) / ticks;
                }
            }
            if let Ok(status) = std::fs::read_to_string(format!("/proc/{p}/status")) {
                out.rss_kib += status_kib(&status, "VmRSS:");
                out.peak_rss_kib += status_kib(&status, "VmHWM:");
            }
        }
        out
    }
}

fn status_kib(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// `program`, installed from Debian's `package` (`apt-get install -y`, after
/// `apt-get update` when the lists are stale) when it is not on the PATH.
/// Where apt-get's progress goes: this process's stderr, so the results on
/// stdout (markdown or `--json`) stay clean.
fn apt_output() -> Stdio {
    std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_or_else(|_| Stdio::null(), Stdio::from)
}

pub(crate) async fn ensure_installed(program: &str, package: &str) -> Result<PathBuf, Error> {
    if let Some(p) = which(program) {
        return Ok(p);
    }
    eprintln!("{program} not found: apt-get install -y {package}");
    let install = || async {
        Command::new("apt-get")
            .args([
                "install",
                "-y",
                "-q",
                "-o",
                "DPkg::Lock::Timeout=300",
                package,
            ])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stdout(apt_output())
            .status()
            .await
    };
    if !install().await?.success() {
        // A fresh machine may need the package lists first.
        let _ = Command::new("apt-get")
            .args(["update", "-q"])
            .stdin(Stdio::null())
            .stdout(apt_output())
            .status()
            .await?;
        install().await?;
    }
    which(program).ok_or_else(|| {
        format!("{program} is not installed and apt-get could not install it").into()
    })
}

/// Polls `GET path` on `addr` until it answers 200; returns how long that took
/// from `since`. Fails when `child` exits or after [`READY_BOUND`].
pub(crate) async fn poll_ready(
    child: &mut Child,
    what: &str,
    addr: SocketAddr,
    host: &str,
    path: &str,
    since: Instant,
) -> Result<Duration, Error> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Err(format!("{what} exited with {status} before getting ready").into());
        }
        if let Ok(mut conn) = Conn::connect(addr).await {
            if let Ok(resp) = conn.fetch(get(host, path)?).await {
                if resp.status == 200 {
                    return Ok(since.elapsed());
                }
            }
        }
        if since.elapsed() > READY_BOUND {
            return Err(format!("{what} not ready within {READY_BOUND:?}").into());
        }
        // Polling interval: short, so the start-to-ready time is exact to ~1 ms.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// This binary re-executed as a server on the server CPUs: the upstream
/// (`--serve-upstream`) or the bare hyper proxy in front of it
/// (`--serve-bare-proxy`). It prints its port and serves until killed.
pub(crate) struct Upstream {
    _child: Child,
    pub(crate) pid: u32,
    pub(crate) addr: SocketAddr,
}

impl Upstream {
    /// The upstream every target forwards to.
    pub(crate) async fn start(cpus: &Cpus) -> Result<Self, Error> {
        Self::spawn(cpus, &["--serve-upstream".to_owned()], &[]).await
    }

    /// The bare hyper proxy ([`benches::bare_proxy`]) in front of `upstream`,
    /// under `wrapper` when it is not empty.
    pub(crate) async fn bare_proxy(
        cpus: &Cpus,
        upstream: SocketAddr,
        wrapper: &[String],
    ) -> Result<Self, Error> {
        let args = ["--serve-bare-proxy".to_owned(), upstream.to_string()];
        Self::spawn(cpus, &args, wrapper).await
    }

    async fn spawn(cpus: &Cpus, args: &[String], wrapper: &[String]) -> Result<Self, Error> {
        let exe = std::env::current_exe()?;
        let mut child = cpus
            .wrapped_server_command(&exe, wrapper)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().ok_or("server stdout")?;
        let mut line = String::new();
        tokio::time::timeout(READY_BOUND, BufReader::new(stdout).read_line(&mut line))
            .await
            .map_err(|_| format!("{args:?} did not report its port"))??;
        let port: u16 = line
            .trim()
            .parse()
            .map_err(|_| format!("{args:?} said {line:?}"))?;
        let pid = child.id().ok_or("server exited")?;
        Ok(Self {
            _child: child,
            pid,
            addr: loopback(port),
        })
    }
}

/// Cache backend of a generated orchestrator config.
#[derive(Debug, Clone)]
pub(crate) enum Backend {
    Memory,
    Redis(String),
}

/// What one orchestrator process serves.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Role {
    /// Provider and gateway on one listener (the shape of `config/orchestrator.yaml`).
    Both,
    /// Only the OIDC provider, for a gateway listening on `gateway_port`.
    Provider { gateway_port: u16 },
    /// Only the App Gateway, logging users in at the provider on `provider_port`.
    Gateway { provider_port: u16 },
}

/// Which requests a traced orchestrator samples.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Sampling {
    /// Every request (`always_on`).
    Every,
    /// This share of new traces (`parentbased_traceidratio`), as operators
    /// run it: the others are not recorded, their context still propagated.
    Ratio(f64),
}

/// One orchestrator process with a generated config in a temp dir.
pub(crate) struct Orchestrator {
    child: Child,
    pub(crate) pid: u32,
    pub(crate) addr: SocketAddr,
    pub(crate) admin: SocketAddr,
    /// Time from spawn to the first `/readyz` 200.
    pub(crate) ready_after: Duration,
    /// `localhost:<port>`: the app's and the issuer's host.
    pub(crate) host: String,
    /// The secret of the `bench-client` OIDC client.
    pub(crate) client_secret: String,
    _dir: tempfile::TempDir,
}

/// Keys, secrets and the password hash, made once per run with the binary itself.
pub(crate) struct Secrets {
    oidc_key: String,
    assertion_key: String,
    password_hash: String,
    /// The gateway's client secret at the provider (shared when they run apart).
    gateway_secret: String,
}

impl Secrets {
    pub(crate) async fn generate(bin: &Path) -> Result<Self, Error> {
        let key = || async {
            let out = Command::new(bin)
                .args(["keys", "generate", "--algorithm", "ES256"])
                .output()
                .await?;
            if !out.status.success() {
                return Err::<String, Error>("orchestrator keys generate failed".into());
            }
            Ok(String::from_utf8(out.stdout)?)
        };
        let mut child = Command::new(bin)
            .arg("hash-password")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut stdin = child.stdin.take().ok_or("hash-password stdin")?;
        stdin.write_all(PASSWORD.as_bytes()).await?;
        drop(stdin);
        let out = child.wait_with_output().await?;
        if !out.status.success() {
            return Err("orchestrator hash-password failed".into());
        }
        Ok(Self {
            oidc_key: key().await?,
            assertion_key: key().await?,
            password_hash: String::from_utf8(out.stdout)?.trim().to_owned(),
            gateway_secret: orchestrator_gateway::SessionId::random()
                .expose()
                .to_owned(),
        })
    }
}

impl Orchestrator {
    /// Provider and gateway in one process on a free port; see [`Self::start_as`].
    pub(crate) async fn start(
        bin: &Path,
        cpus: &Cpus,
        secrets: &Secrets,
        upstream: SocketAddr,
        backend: &Backend,
    ) -> Result<Self, Error> {
        Self::start_as(
            bin,
            cpus,
            secrets,
            upstream,
            backend,
            Role::Both,
            free_port()?,
        )
        .await
    }

    /// [`Self::start`] with traces on, sampled by `sampling`, the spans
    /// exported over OTLP/HTTP to `collector`; under `wrapper` when it is
    /// not empty.
    pub(crate) async fn start_traced(
        bin: &Path,
        cpus: &Cpus,
        secrets: &Secrets,
        upstream: SocketAddr,
        collector: SocketAddr,
        sampling: Sampling,
        wrapper: &[String],
    ) -> Result<Self, Error> {
        let sampler = match sampling {
            Sampling::Every => "sampler: always_on".to_owned(),
            Sampling::Ratio(r) => format!("sampler: parentbased_traceidratio\n  samplerArg: {r}"),
        };
        let traces = format!("traces:\n  endpoint: http://{collector}\n  {sampler}\n");
        Self::start_with(
            bin,
            cpus,
            secrets,
            upstream,
            &Backend::Memory,
            Role::Both,
            free_port()?,
            &traces,
            wrapper,
        )
        .await
    }

    /// [`Self::start`] under `wrapper` (a program and its arguments, e.g.
    /// valgrind), which is given the binary and its arguments.
    pub(crate) async fn start_wrapped(
        bin: &Path,
        cpus: &Cpus,
        secrets: &Secrets,
        upstream: SocketAddr,
        wrapper: &[String],
    ) -> Result<Self, Error> {
        Self::start_with(
            bin,
            cpus,
            secrets,
            upstream,
            &Backend::Memory,
            Role::Both,
            free_port()?,
            "",
            wrapper,
        )
        .await
    }

    /// Writes a config for `role` listening on `port` and starts the binary on
    /// the server CPUs; returns once `/readyz` answers 200.
    pub(crate) async fn start_as(
        bin: &Path,
        cpus: &Cpus,
        secrets: &Secrets,
        upstream: SocketAddr,
        backend: &Backend,
        role: Role,
        port: u16,
    ) -> Result<Self, Error> {
        Self::start_with(bin, cpus, secrets, upstream, backend, role, port, "", &[]).await
    }

    /// [`Self::start_as`] with `extra` appended to the config, under
    /// `wrapper` when it is not empty.
    #[allow(clippy::too_many_arguments)]
    async fn start_with(
        bin: &Path,
        cpus: &Cpus,
        secrets: &Secrets,
        upstream: SocketAddr,
        backend: &Backend,
        role: Role,
        port: u16,
        extra: &str,
        wrapper: &[String],
    ) -> Result<Self, Error> {
        let dir = tempfile::Builder::new()
            .prefix("orchestrator-bench-")
            .tempdir()?;
        let secrets_dir = dir.path().join("secrets");
        std::fs::create_dir_all(&secrets_dir)?;
        let client_secret = orchestrator_gateway::SessionId::random()
            .expose()
            .to_owned();
        for (name, value) in [
            ("oidc-signing-key.pem", secrets.oidc_key.as_str()),
            ("gateway-assertion-key.pem", secrets.assertion_key.as_str()),
            ("gateway-client-secret", secrets.gateway_secret.as_str()),
            ("bench-client-secret", client_secret.as_str()),
        ] {
            std::fs::write(secrets_dir.join(name), value)?;
        }
        let admin_port = free_port()?;
        let yaml = config_yaml(
            port,
            admin_port,
            &secrets_dir,
            upstream,
            backend,
            secrets,
            role,
        );
        let config = dir.path().join("orchestrator.yaml");
        std::fs::write(&config, yaml + extra)?;
        let started = Instant::now();
        let mut cmd = cpus.wrapped_server_command(bin, wrapper);
        let mut child = cmd
            .arg("run")
            .arg("--config")
            .arg(&config)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("stdout.log"))?)
            .stderr(std::fs::File::create(dir.path().join("stderr.log"))?)
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().ok_or("orchestrator exited at once")?;
        let admin = loopback(admin_port);
        let ready_after = match poll_ready(
            &mut child,
            "orchestrator",
            admin,
            "127.0.0.1",
            "/readyz",
            started,
        )
        .await
        {
            Ok(d) => d,
            Err(e) => {
                let log = std::fs::read_to_string(dir.path().join("stderr.log"))
                    .unwrap_or_default()
                    + &std::fs::read_to_string(dir.path().join("stdout.log")).unwrap_or_default();
                return Err(format!("{e}\n{log}").into());
            }
        };
        Ok(Self {
            child,
            pid,
            addr: loopback(port),
            admin,
            ready_after,
            host: format!("{APP_HOST}:{port}"),
            client_secret,
            _dir: dir,
        })
    }

    /// The value of one Prometheus sample on the admin listener.
    pub(crate) async fn metric(&self, sample: &str) -> Result<Option<f64>, Error> {
        let mut conn = Conn::connect(self.admin).await?;
        let resp = conn.fetch(get("127.0.0.1", "/metrics")?).await?;
        let text = String::from_utf8_lossy(&resp.body);
        Ok(text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
            l.strip_prefix(sample)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        }))
    }

    pub(crate) fn stats(&self) -> ProcStats {
        ProcStats::read(self.pid)
    }

    /// Kills the process and waits for it (bounded).
    pub(crate) async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(READY_BOUND, self.child.wait()).await;
    }
}

fn config_yaml(
    port: u16,
    admin_port: u16,
    secrets_dir: &Path,
    upstream: SocketAddr,
    backend: &Backend,
    secrets: &Secrets,
    role: Role,
) -> String {
    let cache = match backend {
        Backend::Memory => "cache:\n  backend: memory\n".to_owned(),
        Backend::Redis(url) => format!(
            "cache:\n  backend: redis\n  redis:\n    url: {url}\n    keyPrefix: \"bench:\"\n"
        ),
    };
    let secrets_dir = secrets_dir.display();
    let access_log = ACCESS_LOG.load(Ordering::Relaxed);
    let common = format!(
        r#"listen:
  address: 127.0.0.1:{port}
  trustedProxies: [127.0.0.1/32]
admin:
  address: 127.0.0.1:{admin_port}
secretsDir: {secrets_dir}
log:
  level: info
  format: json
  accessLog: {access_log}   # NGINX's access log is on or off the same (--access-log)
shutdown:
  delay: 0s
  drainTimeout: 1s
{cache}"#
    );
    match role {
        Role::Both => common + &provider_yaml(port, port, secrets) + &gateway_yaml(port, upstream),
        Role::Provider { gateway_port } => common + &provider_yaml(port, gateway_port, secrets),
        Role::Gateway { provider_port } => common + &gateway_yaml(provider_port, upstream),
    }
}

/// The provider, issuer `http://localhost:<port>/idp`, with the gateway's
/// client registered for callbacks on `gateway_port`. The shape of
/// `config/orchestrator.yaml`; differences: the clients only have the
/// authorization_code grant (the gateway never refreshes, so no refresh
/// tokens pile up in the cache) and one more client for the code-exchange bench.
fn provider_yaml(port: u16, gateway_port: u16, secrets: &Secrets) -> String {
    let hash = &secrets.password_hash;
    format!(
        r#"oidcProvider:
  issuer: http://{APP_HOST}:{port}/idp
  signingKeys:
    - id: bench-es256
      algorithm: ES256
      privateKey: ${{secret:oidc-signing-key.pem}}
  clients:
    - clientId: bench-gateway
      clientSecret: ${{secret:gateway-client-secret}}
      redirectUris: [http://{APP_HOST}:{gateway_port}/.orchestrator/callback, http://{PLAIN_HOST}:{gateway_port}/.orchestrator/callback]
      grantTypes: [authorization_code]
    - clientId: bench-client
      clientSecret: ${{secret:bench-client-secret}}
      redirectUris: [http://{APP_HOST}:{port}/bench/callback]
      grantTypes: [authorization_code]
  # One user signs in from many connections at once: as many concurrent
  # password checks as the harness runs; checks in flight count against the
  # throttle budgets, which are abuse limits, not what this measures.
  loginThrottle: {{maxConcurrentPerUser: 1024, freeFailuresPerClient: 1024, maxFailuresPerUser: 1024, maxFailuresPerIp: 1024}}
  users:
    - username: {USER}
      passwordHash: "{hash}"
      claims:
        email: bench@example.com
        email_verified: true
        name: Bench User
        groups: [engineering, admins]
"#
    )
}

/// The gateway, logging users in at the provider on `provider_port` over
/// HTTP; a second app, `plain.localhost`, has no assertion JWT, to show
/// what signing it costs.
fn gateway_yaml(provider_port: u16, upstream: SocketAddr) -> String {
    format!(
        r#"appGateway:
  # The harness starts every login from one address; the per-client cap on
  # started logins is an abuse limit, not what this measures.
  maxPendingLoginsPerClient: 0
  session:
    cookieName: orchestrator_session
    store: local
    maxLifetime: 8h
    idleTimeout: 1h
    maxEntries: 1000000
  assertionSigningKeys:
    - id: bench-gw
      algorithm: ES256
      privateKey: ${{secret:gateway-assertion-key.pem}}
  identityProviders:
    - name: default
      issuer: http://{APP_HOST}:{provider_port}/idp
      clientId: bench-gateway
      clientSecret: ${{secret:gateway-client-secret}}
      scopes: [openid, profile, email, groups]
  apps:
    - name: bench
      host: {APP_HOST}
      pathPrefix: /
      upstream: http://{upstream}
      identityProvider: default
      publicPaths: [/public/]
      policy:
        allowGroups: [engineering]
        allowEmailDomains: [example.com]
      headers:
        X-Auth-Request-User: sub
        X-Auth-Request-Email: email
        X-Auth-Request-Groups: groups
      assertionHeader: X-Orchestrator-Assertion
    - name: plain
      host: {PLAIN_HOST}
      pathPrefix: /
      upstream: http://{upstream}
      identityProvider: default
      policy:
        allowGroups: [engineering]
        allowEmailDomains: [example.com]
      headers:
        X-Auth-Request-User: sub
        X-Auth-Request-Email: email
        X-Auth-Request-Groups: groups
"#
    )
}

/// NGINX with a generated config: `proxy_pass` with a keep-alive upstream pool.
pub(crate) struct Nginx {
    child: Child,
    pub(crate) pid: u32,
    pub(crate) addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// Installs NGINX (`apt-get install -y nginx`) when it is missing.
    pub(crate) async fn ensure_installed() -> Result<PathBuf, Error> {
        ensure_installed("nginx", "nginx").await
    }

    /// Plain `proxy_pass` to `upstream`; with `auth`, every request first
    /// asks that orchestrator's forward-auth endpoint (`auth_request`, as
    /// ingress-nginx renders `auth-url`) and copies the identity header.
    pub(crate) async fn start(
        bin: &Path,
        cpus: &Cpus,
        upstream: SocketAddr,
        auth: Option<SocketAddr>,
    ) -> Result<Self, Error> {
        Self::start_with(bin, cpus, upstream, auth, &[]).await
    }

    /// Plain `proxy_pass` as one process (`master_process off`) under
    /// `wrapper` (a program and its arguments, e.g. valgrind).
    pub(crate) async fn start_wrapped(
        bin: &Path,
        cpus: &Cpus,
        upstream: SocketAddr,
        wrapper: &[String],
    ) -> Result<Self, Error> {
        Self::start_with(bin, cpus, upstream, None, wrapper).await
    }

    async fn start_with(
        bin: &Path,
        cpus: &Cpus,
        upstream: SocketAddr,
        auth: Option<SocketAddr>,
        wrapper: &[String],
    ) -> Result<Self, Error> {
        let dir = tempfile::Builder::new().prefix("nginx-bench-").tempdir()?;
        // When run as root NGINX's workers drop to `nobody`: they must be able
        // to reach the temp paths inside this dir.
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        }
        let port = free_port()?;
        let d = dir.path().display();
        // Like the orchestrator's line: JSON, buffered (NGINX writes per 64 KiB).
        let access_log = if ACCESS_LOG.load(Ordering::Relaxed) {
            format!(
                "log_format json escape=json '{{\"time\":\"$time_iso8601\",\"method\":\"$request_method\",\"path\":\"$uri\",\"status\":$status,\"duration\":$request_time,\"peer\":\"$remote_addr\",\"request_id\":\"$request_id\"}}';\n    access_log {d}/access.log json buffer=64k flush=1s;"
            )
        } else {
            "access_log off;".to_owned()
        };
        let (auth_upstream, auth_location, auth_request) = match auth {
            Some(orch) => (
                format!("upstream orchestrator {{\n        server {orch};\n        keepalive 128;\n    }}"),
                "location = /_external-auth {\n            internal;\n            proxy_pass http://orchestrator/.orchestrator/auth;\n            \
                 proxy_http_version 1.1;\n            proxy_set_header Connection \"\";\n            \
                 proxy_pass_request_body off;\n            proxy_set_header Content-Length \"\";\n            \
                 proxy_set_header X-Original-URL $scheme://$http_host$request_uri;\n            \
                 proxy_set_header X-Original-Method $request_method;\n        }"
                    .to_owned(),
                "auth_request /_external-auth;\n            auth_request_set $user $upstream_http_x_auth_request_user;\n            \
                 proxy_set_header X-Auth-Request-User $user;"
                    .to_owned(),
            ),
            None => (String::new(), String::new(), String::new()),
        };
        let conf = format!(
            r#"# Generated by the load harness. Plain proxy_pass, NGINX's defaults otherwise,
# except the access log: off, or JSON with a buffer when the orchestrator logs too.
daemon off;
master_process {master};
worker_processes {workers};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    {access_log}
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    client_max_body_size 4m;
    upstream app {{
        server {upstream};
        keepalive 128;
    }}
    {auth_upstream}
    server {{
        listen 127.0.0.1:{port};
        {auth_location}
        location / {{
            {auth_request}
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"#,
            workers = cpus.server_count,
            master = if wrapper.is_empty() { "on" } else { "off" },
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let started = Instant::now();
        let mut cmd = cpus.wrapped_server_command(bin, wrapper);
        let mut child = cmd
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr.log"))?)
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().ok_or("nginx exited at once")?;
        let addr = loopback(port);
        // With auth, "/" needs a session: the app's public path answers without.
        let probe = if auth.is_some() { "/public/" } else { "/" };
        if let Err(e) = poll_ready(&mut child, "nginx", addr, APP_HOST, probe, started).await {
            // A fast shutdown of the master takes its workers with it (a
            // kill of the master alone would leave them running).
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            let _ = child.wait().await;
            let log = std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
            return Err(format!("{e}\n{log}").into());
        }
        Ok(Self {
            child,
            pid,
            addr,
            _dir: dir,
        })
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGKILL to the master would leave the workers running: ask for a
        // fast shutdown (SIGTERM), poll (bounded) for the master to exit, and
        // only then kill whatever is left, workers included.
        let workers = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.pid))
            .unwrap_or_default();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::yield_now();
        }
        let _ = self.child.start_kill();
        for w in workers.split_whitespace() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", w])
                .stderr(Stdio::null())
                .status();
        }
    }
}
