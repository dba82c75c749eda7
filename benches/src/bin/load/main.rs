//! `load`: the orchestrator side by side with NGINX and the bare upstream,
//! on loopback, with the same load from the same client.
//!
//! ```text
//! cargo build --release -p orchestrator
//! cargo run --release -p benches --bin load -- [--duration 6s] [--connections 64] [--scenario all] [--json]
//! ```
//!
//! See `benches/README.md` for what each scenario does and how to read the
//! table. In short: one upstream process, one NGINX (`proxy_pass`, keep-alive
//! pool), one orchestrator (OIDC provider + gateway, memory cache), all
//! pinned to the same server CPUs; the load generator (this process) on the
//! others. A real login gives the session cookie every request then carries.
//! Targets alternate in rounds so that drift in a shared machine hits all
//! of them alike.

#![forbid(unsafe_code)]

mod anchors;
mod drive;
mod instructions;
mod procs;
mod report;
mod streams;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use benches::Error;
use benches::client::{Browser, Conn, CookieJar, OidcClient, drain};
use benches::upstream::LARGE_BYTES;
use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper::header;
use hyper::{Method, Request};

use drive::{Outcome, Pace};
use procs::{Backend, Cpus, Nginx, Orchestrator, ProcStats, Role, Sampling, Secrets, Upstream};
use report::{Fact, Report, Row};

/// Load benches: orchestrator vs NGINX vs the bare upstream, on loopback.
#[derive(Debug, Parser)]
#[command(name = "load")]
struct Args {
    /// Time per target for the authenticated-GET scenario (split in rounds);
    /// the other throughput scenarios get half of it per target.
    #[arg(long, default_value = "6s", value_parser = parse_duration)]
    duration: Duration,
    /// Concurrent keep-alive connections (closed-loop tasks) per target.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Rounds the targets alternate in (drift cancels out).
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Scenarios, comma separated: small, latency, download, upload, streams,
    /// logins, exchanges, sessions, startup, or all; and instructions (callgrind's
    /// count per request; only when named).
    #[arg(long, default_value = "all")]
    scenario: String,
    /// Live sessions to create in the memory scenario (the report
    /// extrapolates to 100,000 when fewer).
    #[arg(long, default_value_t = 10_000)]
    sessions: u64,
    /// Starts to take the median start-to-ready time over.
    #[arg(long, default_value_t = 5)]
    starts: usize,
    /// Where the instructions scenario leaves callgrind's files (for
    /// `callgrind_annotate`); a temp dir, removed after, when not given.
    #[arg(long)]
    callgrind_dir: Option<PathBuf>,
    /// Print JSON instead of markdown.
    #[arg(long)]
    json: bool,
    /// Do not pin processes to CPUs.
    #[arg(long)]
    no_pin: bool,
    /// Access logs on: the orchestrator's `log.accessLog` (JSON lines to a
    /// file, as a pod's stdout goes to a pipe) and NGINX's JSON access log
    /// with a 64 KiB buffer. Off by default for both.
    #[arg(long)]
    access_log: bool,
    /// Leave NGINX, HAProxy and Caddy out (no install, no rows of theirs):
    /// for a quick check that every orchestrator target serves.
    #[arg(long)]
    no_nginx: bool,
    /// The orchestrator binary (default: target/release/orchestrator).
    #[arg(long)]
    orchestrator_bin: Option<PathBuf>,
    /// Internal: run as the upstream server and print its port.
    #[arg(long, hide = true)]
    serve_upstream: bool,
    /// Internal: run as the bare hyper proxy in front of this upstream and
    /// print its port.
    #[arg(long, hide = true)]
    serve_bare_proxy: Option<SocketAddr>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    let n: f64 = num.parse().map_err(|_| format!("not a duration: {s}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        _ => return Err(format!("unknown unit in {s} (use ms, s or m)")),
    };
    if !(secs > 0.0 && secs < 86_400.0) {
        return Err(format!("duration out of range: {s}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

const ALL: [&str; 9] = [
    "small",
    "latency",
    "download",
    "upload",
    "streams",
    "logins",
    "exchanges",
    "sessions",
    "startup",
];

/// Scenarios only run when named (they need valgrind and take minutes).
const ON_REQUEST: [&str; 1] = ["instructions"];

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if args.serve_upstream {
        return serve("upstream", benches::upstream::serve);
    }
    if let Some(upstream) = args.serve_bare_proxy {
        return serve("bare proxy", move |l| {
            benches::bare_proxy::serve(l, upstream)
        });
    }
    procs::ACCESS_LOG.store(args.access_log, std::sync::atomic::Ordering::Relaxed);
    let cpus = Cpus::plan(!args.no_pin);
    if let Err(e) = cpus.pin_self() {
        eprintln!("warning: {e}; running unpinned");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("load: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&args, &cpus)) {
        Ok(report) => {
            if args.json {
                println!("{}", report.json());
            } else {
                println!("{}", report.markdown());
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("load: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A server mode (the upstream, the bare proxy): bind, print the port, serve
/// until killed.
fn serve<F, Fut>(what: &str, serve: F) -> std::process::ExitCode
where
    F: FnOnce(tokio::net::TcpListener) -> Fut,
    Fut: Future<Output = ()>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{what}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("{what}: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        match listener.local_addr() {
            Ok(a) => println!("{}", a.port()),
            Err(e) => {
                eprintln!("{what}: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
        serve(listener).await;
        std::process::ExitCode::SUCCESS
    })
}

fn orchestrator_bin(args: &Args) -> Result<PathBuf, Error> {
    let bin = match &args.orchestrator_bin {
        Some(p) => p.clone(),
        None => {
            let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
                || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
                PathBuf::from,
            );
            target.join("release/orchestrator")
        }
    };
    if !bin.is_file() {
        return Err(format!(
            "{} not found: run `cargo build --release -p orchestrator` first",
            bin.display()
        )
        .into());
    }
    Ok(bin)
}

/// One thing the load is pointed at.
#[derive(Debug, Clone)]
struct Target {
    name: &'static str,
    addr: SocketAddr,
    /// The process whose CPU and memory count for this target.
    pid: u32,
    /// Another process whose CPU counts too (the orchestrator answering
    /// NGINX's auth requests).
    also: Option<u32>,
    /// `Host` of every request.
    host: String,
    /// The session cookie for this target when it is not the shared one
    /// (a session is bound to the host it was made on).
    cookie: Option<String>,
}

/// The request one scenario repeats.
#[derive(Debug, Clone)]
enum Work {
    Get(&'static str),
    Upload(Bytes),
}

async fn run(args: &Args, cpus: &Cpus) -> Result<Report, Error> {
    let scenarios: Vec<&str> = if args.scenario == "all" {
        ALL.to_vec()
    } else {
        let chosen: Vec<&str> = args.scenario.split(',').map(str::trim).collect();
        if let Some(bad) = chosen
            .iter()
            .find(|s| !ALL.contains(s) && !ON_REQUEST.contains(s))
        {
            return Err(format!(
                "unknown scenario {bad}; one of {}, {} or all",
                ALL.join(", "),
                ON_REQUEST.join(", ")
            )
            .into());
        }
        chosen
    };
    let wants = |s: &str| scenarios.contains(&s);
    let bin = orchestrator_bin(args)?;
    let mut report = Report::new(cpus, args);
    let secrets = Secrets::generate(&bin).await?;
    let upstream = Upstream::start(cpus).await?;
    let needs_proxies = ["small", "latency", "download", "upload", "streams"]
        .iter()
        .any(|s| wants(s));
    let nginx = if needs_proxies && !args.no_nginx {
        let nginx_bin = Nginx::ensure_installed().await?;
        report.note(format!("NGINX: {}", nginx_version(&nginx_bin).await));
        Some(Nginx::start(&nginx_bin, cpus, upstream.addr, None).await?)
    } else {
        None
    };
    // HAProxy and Caddy beside NGINX, for the same rows.
    let mut anchors = Vec::new();
    if nginx.is_some() {
        for kind in [anchors::Kind::Haproxy, anchors::Kind::Caddy] {
            match anchors::Anchor::start(kind, cpus, upstream.addr).await {
                Ok(a) => {
                    report.note(a.version.clone());
                    anchors.push((kind, a));
                }
                Err(e) => report.note(format!("{} left out: {e}", kind.name())),
            }
        }
    }
    // The floor of the stack: what a proxy on hyper and tokio costs before
    // it does anything of its own.
    let bare = if needs_proxies {
        Some(Upstream::bare_proxy(cpus, upstream.addr, &[]).await?)
    } else {
        None
    };
    let orch = Orchestrator::start(&bin, cpus, &secrets, upstream.addr, &Backend::Memory).await?;
    report.fact(Fact::new(
        "orchestrator RSS right after ready (memory cache, nothing served)",
        format!("{:.1} MiB", mib(orch.stats().rss_kib)),
        "idle RSS ≤ 16 MiB",
        Some(mib(orch.stats().rss_kib) <= 16.0),
    ));

    // One real login; every later request carries its cookies.
    let (browser, session) = procs::signed_in(orch.addr, &orch.host).await?;
    let sso = browser
        .jar
        .get("oidc_session")
        .ok_or("no SSO cookie after login")?
        .to_owned();
    let cookie = format!("orchestrator_session={session}");

    let direct = Target {
        name: "direct",
        addr: upstream.addr,
        pid: upstream.pid,
        also: None,
        host: orch.host.clone(),
        cookie: None,
    };
    let mut proxies = vec![direct.clone()];
    if let Some(n) = &nginx {
        proxies.push(Target {
            name: "nginx",
            addr: n.addr,
            pid: n.pid,
            also: None,
            host: orch.host.clone(),
            cookie: None,
        });
    }
    for (kind, a) in &anchors {
        proxies.push(Target {
            name: kind.name(),
            addr: a.addr,
            pid: a.pid,
            also: None,
            host: orch.host.clone(),
            cookie: None,
        });
    }
    if let Some(b) = &bare {
        proxies.push(Target {
            name: "bare hyper proxy",
            addr: b.addr,
            pid: b.pid,
            also: None,
            host: orch.host.clone(),
            cookie: None,
        });
    }
    let orch_target = Target {
        name: "orchestrator",
        addr: orch.addr,
        pid: orch.pid,
        also: None,
        host: orch.host.clone(),
        cookie: None,
    };
    proxies.push(orch_target.clone());
    // NGINX proxying, asking the orchestrator about every request first.
    let nginx_auth = match &nginx {
        Some(_) => {
            let nginx_bin = Nginx::ensure_installed().await?;
            Some(Nginx::start(&nginx_bin, cpus, upstream.addr, Some(orch.addr)).await?)
        }
        None => None,
    };
    if let Some(n) = &nginx_auth {
        proxies.push(Target {
            name: "nginx + forward auth",
            addr: n.addr,
            pid: n.pid,
            also: Some(orch.pid),
            host: orch.host.clone(),
            cookie: None,
        });
    }
    let port = orch.addr.port();
    // Sessions are bound to the host they were made on: the second app's
    // requests carry a session of its own.
    let plain_host = format!("{}:{port}", procs::PLAIN_HOST);
    let (_plain_browser, plain_session) = procs::signed_in(orch.addr, &plain_host).await?;
    let plain = Target {
        name: "orchestrator (no assertion JWT)",
        addr: orch.addr,
        pid: orch.pid,
        also: None,
        host: plain_host,
        cookie: Some(format!("orchestrator_session={plain_session}")),
    };

    // The same orchestrator tracing every request (100% sampling, OTLP to
    // a sink on the upstream): what traces cost.
    let traced = if wants("small") {
        // A binary from before traces existed refuses the config: no traced row then.
        match Orchestrator::start_traced(
            &bin,
            cpus,
            &secrets,
            upstream.addr,
            upstream.addr,
            Sampling::Every,
            &[],
        )
        .await
        {
            Ok(t) => {
                let (_browser, session) = procs::signed_in(t.addr, &t.host).await?;
                Some((t, session))
            }
            Err(e) => {
                let first = e.to_string().lines().next().unwrap_or_default().to_owned();
                report.note(format!("traced orchestrator not started: {first}"));
                None
            }
        }
    } else {
        None
    };

    // First, while the processes have served nothing large: RSS growth is
    // what the stalled streams hold, not memory the allocator kept from
    // earlier downloads and uploads.
    if wants("streams") {
        let mut subjects = vec![streams::Subject {
            name: "orchestrator",
            addr: orch.addr,
            pid: orch.pid,
            host: &orch.host,
            cookie: Some(&cookie),
        }];
        if let Some(n) = &nginx {
            subjects.push(streams::Subject {
                name: "nginx",
                addr: n.addr,
                pid: n.pid,
                host: &orch.host,
                cookie: None,
            });
        }
        streams::streams(&mut report, &subjects).await?;
    }

    let half = args.duration / 2;
    let mut max_rps = None;
    if wants("small") {
        let mut targets = proxies.clone();
        targets.push(plain.clone());
        if let Some((t, session)) = &traced {
            targets.push(Target {
                name: "orchestrator (traces on, 100%)",
                addr: t.addr,
                pid: t.pid,
                also: None,
                host: t.host.clone(),
                cookie: Some(format!("orchestrator_session={session}")),
            });
        }
        let rows = compare(
            args,
            "small GET",
            &targets,
            &Work::Get("/small"),
            &cookie,
            args.duration,
            Pace::Closed,
        )
        .await;
        max_rps = rows
            .iter()
            .find(|r| r.target == "orchestrator")
            .map(|r| r.outcome.rate());
        report.rows("small GET", rows);
    }
    if wants("latency") {
        let rps = match max_rps {
            Some(r) => r,
            None => {
                let probe = compare(
                    args,
                    "probe",
                    std::slice::from_ref(&orch_target),
                    &Work::Get("/small"),
                    &cookie,
                    Duration::from_secs(2),
                    Pace::Closed,
                )
                .await;
                probe.first().map_or(1000.0, |r| r.outcome.rate())
            }
        };
        let rate = (rps / 2.0).max(1.0);
        report.note(format!(
            "latency scenario: open loop at {rate:.0} req/s = half of the orchestrator's closed-loop maximum ({rps:.0} req/s)"
        ));
        // The latency a proxy adds is measured with the proxy on a core of its
        // own, as in a deployment (the app runs elsewhere): for this scenario
        // the upstream moves next to the load generator, for every target
        // alike. Sharing a core with the upstream would add the scheduler's
        // time slices (milliseconds) to whichever process waits, proxy or not.
        cpus.pin_loadgen_side(upstream.pid);
        if cpus.pinned() {
            report.note(
                "latency scenario: the upstream runs on the load generator's CPUs, so NGINX and the \
                 orchestrator each have the server CPUs to themselves"
                    .to_owned(),
            );
        }
        let rows = compare(
            args,
            "small GET at half max",
            &proxies,
            &Work::Get("/small"),
            &cookie,
            half,
            Pace::Rate(rate),
        )
        .await;
        cpus.pin_server(upstream.pid);
        report.rows("small GET at half max", rows);
    }
    if wants("download") {
        let rows = compare(
            args,
            "1 MiB download",
            &proxies,
            &Work::Get("/large"),
            &cookie,
            half,
            Pace::Closed,
        )
        .await;
        report.rows("1 MiB download", rows);
    }
    if wants("upload") {
        let body = Bytes::from(vec![b'u'; LARGE_BYTES]);
        let rows = compare(
            args,
            "1 MiB upload",
            &proxies,
            &Work::Upload(body),
            &cookie,
            half,
            Pace::Closed,
        )
        .await;
        report.rows("1 MiB upload", rows);
    }
    drop(nginx_auth);
    drop(nginx);
    drop(anchors);
    drop(bare);
    if wants("logins") {
        logins(args, &mut report, &orch, &sso, half).await;
    }
    if wants("exchanges") {
        exchanges(args, &mut report, &orch, &sso, "memory", half).await?;
        if procs::which("redis-server").is_some() {
            let redis = tokio::task::spawn_blocking(orchestrator_cache::testing::TestRedis::start)
                .await
                .map_err(|e| format!("redis-server did not start: {e}"))?;
            if let Some(pid) = redis.pid() {
                cpus.pin_server(pid);
            }
            let with_redis = Orchestrator::start(
                &bin,
                cpus,
                &secrets,
                upstream.addr,
                &Backend::Redis(redis.url()),
            )
            .await?;
            let mut b = Browser::connect(with_redis.addr, &with_redis.host).await?;
            b.login("/", procs::USER, procs::PASSWORD).await?;
            let sso_redis = b.jar.get("oidc_session").ok_or("no SSO cookie")?.to_owned();
            exchanges(args, &mut report, &with_redis, &sso_redis, "redis", half).await?;
            with_redis.stop().await;
            drop(redis);
        } else {
            report.note("redis-server not installed: code exchanges with Redis skipped (apt-get install -y redis-server)".to_owned());
        }
    }
    let peak = orch.stats().peak_rss_kib;
    orch.stop().await;
    report.note(format!(
        "orchestrator peak RSS over the whole run (VmHWM): {:.1} MiB",
        mib(peak)
    ));
    if wants("sessions") {
        sessions(args, cpus, &mut report, &bin, &secrets, upstream.addr).await?;
    }
    if wants("startup") {
        startup(args, cpus, &mut report, &bin, &secrets, upstream.addr).await?;
    }
    if wants("instructions") {
        let nginx_bin = match args.no_nginx {
            true => None,
            false => Some(Nginx::ensure_installed().await?),
        };
        instructions::instructions(
            cpus,
            &mut report,
            &bin,
            &secrets,
            upstream.addr,
            nginx_bin.as_deref(),
            args.callgrind_dir.as_deref(),
        )
        .await?;
    }
    Ok(report)
}

async fn nginx_version(bin: &std::path::Path) -> String {
    match tokio::process::Command::new(bin).arg("-v").output().await {
        Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
        Err(_) => "unknown version".to_owned(),
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Runs `work` against every target for `per_target` each, in rounds that
/// alternate the targets, and returns one row per target.
async fn compare(
    args: &Args,
    scenario: &str,
    targets: &[Target],
    work: &Work,
    cookie: &str,
    per_target: Duration,
    pace: Pace,
) -> Vec<Row> {
    let rounds = args.rounds.max(1);
    let slice = per_target / rounds;
    let mut outcomes: Vec<(Outcome, f64)> = targets.iter().map(|_| (Outcome::new(), 0.0)).collect();
    for round in 0..rounds {
        for (i, t) in targets.iter().enumerate() {
            eprintln!(
                "{scenario}: round {}/{rounds}, {} for {slice:?}",
                round + 1,
                t.name
            );
            let cpu = |t: &Target| {
                ProcStats::read(t.pid).cpu_seconds
                    + t.also.map_or(0.0, |p| ProcStats::read(p).cpu_seconds)
            };
            let before = cpu(t);
            let cookie = t.cookie.as_deref().unwrap_or(cookie);
            let out = drive_requests(t, work, cookie, args.connections, slice, pace).await;
            let after = cpu(t);
            outcomes[i].0.merge(&out);
            outcomes[i].1 += after - before;
        }
    }
    targets
        .iter()
        .zip(outcomes)
        .map(|(t, (outcome, cpu))| {
            Row::new(
                t.name,
                outcome,
                cpu,
                ProcStats::read(t.pid).peak_rss_kib,
                work_bytes(work),
            )
        })
        .collect()
}

fn work_bytes(work: &Work) -> Option<usize> {
    match work {
        Work::Get("/large") | Work::Upload(_) => Some(LARGE_BYTES),
        Work::Get(_) => None,
    }
}

/// Closed- or open-loop HTTP requests to one target.
async fn drive_requests(
    t: &Target,
    work: &Work,
    cookie: &str,
    connections: usize,
    duration: Duration,
    pace: Pace,
) -> Outcome {
    let addr = t.addr;
    let host = Arc::new(t.host.clone());
    let cookie = Arc::new(cookie.to_owned());
    let work = Arc::new(work.clone());
    drive::run(
        connections,
        Duration::from_millis(300),
        duration,
        pace,
        move || Conn::connect(addr),
        move |mut conn: Conn| {
            let host = host.clone();
            let cookie = cookie.clone();
            let work = work.clone();
            async move {
                // A server may end a keep-alive connection after N requests
                // (NGINX: keepalive_requests 1000) with `Connection: close`;
                // a client then opens a new one, and so do we: not an error.
                if conn.is_closed() {
                    match Conn::connect(addr).await {
                        Ok(c) => conn = c,
                        Err(e) => return (conn, Err(e)),
                    }
                }
                let result = request_once(&mut conn, &host, &cookie, &work).await;
                let reconnect = match &result {
                    Ok(keep_alive) => !keep_alive,
                    Err(_) => true,
                };
                if reconnect {
                    if let Ok(c) = Conn::connect(addr).await {
                        conn = c;
                    }
                }
                (conn, result.map(|_| ()))
            }
        },
    )
    .await
}

/// One request; `Ok(false)` when the server said it closes the connection.
async fn request_once(
    conn: &mut Conn,
    host: &str,
    cookie: &str,
    work: &Work,
) -> Result<bool, Error> {
    let builder = Request::builder()
        .header(header::HOST, host)
        .header(header::COOKIE, cookie);
    let req = match work {
        Work::Get(path) => builder.uri(*path).body(Full::default())?,
        Work::Upload(body) => builder
            .method(Method::POST)
            .uri("/upload")
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(Full::new(body.clone()))?,
    };
    let resp = conn.send(req).await?;
    let status = resp.status();
    let keep_alive = !resp
        .headers()
        .get(header::CONNECTION)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    let n = drain(resp).await?;
    if status != 200 {
        return Err(format!("status {status}").into());
    }
    let expected = match work {
        Work::Get("/large") => LARGE_BYTES,
        Work::Get(_) => benches::upstream::SMALL_BODY.len(),
        Work::Upload(_) => LARGE_BYTES.to_string().len(),
    };
    if n != expected {
        return Err(format!("{n} body bytes, expected {expected}").into());
    }
    Ok(keep_alive)
}

/// New logins per second: the full flow with the password (argon2id), and
/// a gateway login riding on the provider's SSO session (no password).
async fn logins(args: &Args, report: &mut Report, orch: &Orchestrator, sso: &str, per: Duration) {
    let addr = orch.addr;
    let host = Arc::new(orch.host.clone());
    // Each password check holds ~19 MiB for argon2id: a few at a time is
    // what a login page sees, and more would only measure the allocator.
    let tasks = args.connections.clamp(1, 8);
    eprintln!("logins: password flow, {tasks} browsers, {per:?}");
    let before = orch.stats();
    let h = host.clone();
    let out = drive::run(
        tasks,
        Duration::from_millis(300),
        per,
        Pace::Closed,
        move || {
            let h = h.clone();
            async move { Browser::connect(addr, &h).await }
        },
        |mut b: Browser| async move {
            b.jar = CookieJar::default();
            let r = b.login("/", procs::USER, procs::PASSWORD).await.map(|_| ());
            (b, r)
        },
    )
    .await;
    report.rows(
        "new login (password, full flow)",
        orchestrator_row(orch, out, &before),
    );

    let tasks = args.connections.max(1);
    eprintln!("logins: SSO flow, {tasks} browsers, {per:?}");
    let before = orch.stats();
    let sso = Arc::new(sso.to_owned());
    let out = drive::run(
        tasks,
        Duration::from_millis(300),
        per,
        Pace::Closed,
        move || {
            let host = host.clone();
            async move { Browser::connect(addr, &host).await }
        },
        move |b: Browser| sso_login(b, sso.clone()),
    )
    .await;
    report.rows(
        "new login (existing SSO session)",
        orchestrator_row(orch, out, &before),
    );
}

/// One gateway login for a browser that has only the provider's SSO cookie.
async fn sso_login(mut b: Browser, sso: Arc<String>) -> (Browser, Result<(), Error>) {
    b.jar = CookieJar::default();
    let mut h = header::HeaderMap::new();
    if let Ok(v) = header::HeaderValue::from_str(&format!("oidc_session={sso}; Path=/idp")) {
        h.insert(header::SET_COOKIE, v);
    }
    b.jar.store(&h);
    let r = match b.navigate(Method::GET, "/", None).await {
        Ok(resp) if resp.status == 200 && b.jar.get("orchestrator_session").is_some() => Ok(()),
        Ok(resp) => Err(format!("SSO login ended with {}", resp.status).into()),
        Err(e) => Err(e),
    };
    (b, r)
}

/// One orchestrator-only row: `out`, with the CPU the process used since `before`.
fn orchestrator_row(orch: &Orchestrator, out: Outcome, before: &ProcStats) -> Vec<Row> {
    let now = orch.stats();
    vec![Row::new(
        "orchestrator",
        out,
        now.cpu_seconds - before.cpu_seconds,
        now.peak_rss_kib,
        None,
    )]
}

/// OIDC code exchanges per second: authorize with the SSO cookie, then token.
async fn exchanges(
    args: &Args,
    report: &mut Report,
    orch: &Orchestrator,
    sso: &str,
    backend: &str,
    per: Duration,
) -> Result<(), Error> {
    let client = Arc::new(OidcClient::new(
        "/idp",
        "bench-client",
        &orch.client_secret,
        &format!("http://{}/bench/callback", orch.host),
    )?);
    let addr = orch.addr;
    let host = Arc::new(orch.host.clone());
    let cookie = Arc::new(format!("oidc_session={sso}"));
    let tasks = args.connections.max(1);
    eprintln!("exchanges ({backend}): {tasks} clients, {per:?}");
    let before = orch.stats();
    let out = drive::run(
        tasks,
        Duration::from_millis(300),
        per,
        Pace::Closed,
        move || Conn::connect(addr),
        move |mut conn: Conn| {
            let client = client.clone();
            let host = host.clone();
            let cookie = cookie.clone();
            async move {
                let r = client.exchange(&mut conn, &host, &cookie).await.map(|_| ());
                if r.is_err() {
                    if let Ok(c) = Conn::connect(addr).await {
                        conn = c;
                    }
                }
                (conn, r)
            }
        },
    )
    .await;
    let rate = out.rate();
    report.rows(
        &format!("OIDC code exchange ({backend})"),
        orchestrator_row(orch, out, &before),
    );
    if backend == "memory" {
        report.fact(Fact::new(
            "OIDC code exchanges/s, memory cache (authorize + token)",
            format!("{rate:.0}"),
            "≥ 9,000/s",
            Some(rate >= 9000.0),
        ));
    } else {
        report.fact(Fact::new(
            "OIDC code exchanges/s, Redis cache (authorize + token)",
            format!("{rate:.0}"),
            "≥ 6,000/s",
            Some(rate >= 6000.0),
        ));
    }
    Ok(())
}

/// RSS before and after `--sessions` live gateway sessions. The gateway runs
/// in a fresh process of its own, logging users in at a provider in another
/// process (as in front of an external IdP), so its RSS holds gateway
/// sessions only; the provider's growth per login is reported beside it.
async fn sessions(
    args: &Args,
    cpus: &Cpus,
    report: &mut Report,
    bin: &std::path::Path,
    secrets: &Secrets,
    upstream: SocketAddr,
) -> Result<(), Error> {
    let (op_port, gw_port) = (procs::free_port()?, procs::free_port()?);
    let op = Orchestrator::start_as(
        bin,
        cpus,
        secrets,
        upstream,
        &Backend::Memory,
        Role::Provider {
            gateway_port: gw_port,
        },
        op_port,
    )
    .await?;
    let gw = Orchestrator::start_as(
        bin,
        cpus,
        secrets,
        upstream,
        &Backend::Memory,
        Role::Gateway {
            provider_port: op_port,
        },
        gw_port,
    )
    .await?;
    let mut b = Browser::connect(gw.addr, &gw.host).await?;
    b.login("/", procs::USER, procs::PASSWORD).await?;
    let sso = Arc::new(b.jar.get("oidc_session").ok_or("no SSO cookie")?.to_owned());
    // A few hundred logins first, so one-time growth (connection buffers,
    // caches' first segments, the allocator's arenas) is in the baseline.
    let warm = create_sessions(&gw, &sso, args.connections, 500, Duration::from_secs(30)).await;
    let (base, op_base) = (gw.stats().rss_kib, op.stats().rss_kib);
    let base_sessions = gw
        .metric("orchestrator_gateway_active_sessions")
        .await?
        .unwrap_or(0.0);
    let budget = Duration::from_secs(120).max(Duration::from_secs(args.sessions / 100));
    let started = Instant::now();
    let created = create_sessions(&gw, &sso, args.connections, args.sessions, budget).await;
    let took = started.elapsed();
    let (after, op_after) = (gw.stats().rss_kib, op.stats().rss_kib);
    let live = gw
        .metric("orchestrator_gateway_active_sessions")
        .await?
        .unwrap_or(0.0);
    gw.stop().await;
    op.stop().await;
    let added = (live - base_sessions).max(0.0);
    let per = |grown_kib: u64, n: f64| {
        if n > 0.0 {
            grown_kib as f64 * 1024.0 / n
        } else {
            0.0
        }
    };
    let per_session = per(after.saturating_sub(base), added);
    let at_100k = mib(base) + per_session * 100_000.0 / (1024.0 * 1024.0);
    report.note(format!(
        "sessions: {warm} warm-up logins, then {created} more in {:.1} s ({:.0}/s, SSO logins with {} browsers); \
         live sessions (gauge) {base_sessions:.0} → {live:.0}; gateway RSS {:.1} → {:.1} MiB; \
         provider (own process) RSS {:.1} → {:.1} MiB",
        took.as_secs_f64(),
        created as f64 / took.as_secs_f64().max(1e-9),
        args.connections,
        mib(base),
        mib(after),
        mib(op_base),
        mib(op_after),
    ));
    report.fact(Fact::new(
        "RSS per live gateway session",
        format!("{per_session:.0} B (over {added:.0} sessions)"),
        "≤ 1 KiB",
        Some(per_session <= 1024.0),
    ));
    let extrapolated = if (added as u64) < 100_000 {
        " (extrapolated linearly)"
    } else {
        ""
    };
    report.fact(Fact::new(
        "gateway RSS with 100,000 live sessions",
        format!("{at_100k:.1} MiB{extrapolated}"),
        "≤ 100 MiB",
        Some(at_100k <= 100.0),
    ));
    report.fact(Fact::new(
        "provider RSS growth per login (what it keeps until the access token expires)",
        format!(
            "{:.0} B (over {created} logins)",
            per(op_after.saturating_sub(op_base), created as f64)
        ),
        "—",
        None,
    ));
    Ok(())
}

/// Creates up to `n` sessions with SSO logins from `tasks` browsers, within `budget`.
async fn create_sessions(
    orch: &Orchestrator,
    sso: &Arc<String>,
    tasks: usize,
    n: u64,
    budget: Duration,
) -> u64 {
    let claimed = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + budget;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..tasks.max(1) {
        let (claimed, done, sso) = (claimed.clone(), done.clone(), sso.clone());
        let (addr, host) = (orch.addr, orch.host.clone());
        set.spawn(async move {
            let Ok(mut b) = Browser::connect(addr, &host).await else {
                return;
            };
            while Instant::now() < deadline && claimed.fetch_add(1, Ordering::Relaxed) < n {
                let (next, r) = sso_login(b, sso.clone()).await;
                b = next;
                if r.is_ok() {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while set.join_next().await.is_some() {}
    done.load(Ordering::Relaxed)
}

/// Median time from spawn to `/readyz` 200 over `--starts` fresh processes.
async fn startup(
    args: &Args,
    cpus: &Cpus,
    report: &mut Report,
    bin: &std::path::Path,
    secrets: &Secrets,
    upstream: SocketAddr,
) -> Result<(), Error> {
    let mut times = Vec::new();
    let mut rss = Vec::new();
    for i in 0..args.starts.max(1) {
        eprintln!("startup: {}/{}", i + 1, args.starts.max(1));
        let orch = Orchestrator::start(bin, cpus, secrets, upstream, &Backend::Memory).await?;
        times.push(orch.ready_after);
        rss.push(orch.stats().rss_kib);
        orch.stop().await;
    }
    times.sort();
    rss.sort_unstable();
    let median = times[times.len() / 2];
    report.fact(Fact::new(
        "start to /readyz 200 (median)",
        format!(
            "{:.0} ms (min {:.0}, max {:.0}, {} starts)",
            median.as_secs_f64() * 1000.0,
            times[0].as_secs_f64() * 1000.0,
            times[times.len() - 1].as_secs_f64() * 1000.0,
            times.len()
        ),
        "≤ 10 ms",
        Some(median <= Duration::from_millis(10)),
    ));
    report.fact(Fact::new(
        "idle RSS after start (median)",
        format!("{:.1} MiB", mib(rss[rss.len() / 2])),
        "≤ 16 MiB",
        Some(mib(rss[rss.len() / 2]) <= 16.0),
    ));
    Ok(())
}
