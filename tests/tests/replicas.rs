//! Several orchestrator replicas, one real Redis, HAProxy in front with
//! cookie-sticky sessions, and simulated browsers that log in through the
//! real login form. Faults happen under load; each test prints its numbers
//! (requests sent, failed, re-logins, password prompts).
//!
//! Loops are bounded in count and time; waiting is polling (`/readyz`,
//! HAProxy's stats, the load's own counters), never a fixed sleep.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nix::sys::signal::Signal;
use orchestrator_cache::testing::TestRedis;
use orchestrator_tests::browser::Browser;
use orchestrator_tests::haproxy::{Backend, Haproxy};
use orchestrator_tests::{Layout, Orchestrator, Setup, TestUpstream, free_port, run_cli};
use sha2::{Digest as _, Sha256};
use tokio::sync::watch;

const PASSWORD: &str = "replica-test-password";
const GATEWAY_SECRET: &str = "replica-gateway-secret";

struct Secrets {
    op_key: String,
    hash: String,
}

impl Secrets {
    async fn new() -> Self {
        let key = run_cli(&["keys", "generate", "--algorithm", "ES256"], "").await;
        let hash = run_cli(&["hash-password"], &format!("{PASSWORD}\n")).await;
        assert_eq!(key.code, Some(0), "{}", key.stderr);
        assert_eq!(hash.code, Some(0), "{}", hash.stderr);
        Self {
            op_key: key.stdout.trim().to_owned(),
            hash: hash.stdout.trim().to_owned(),
        }
    }
}

/// The replica config: Redis for the provider (and for sessions when
/// `store` is `shared`); the issuer is the ingress's address.
fn replica_yaml(issuer_base: &str, redis: &str, upstream: &str, store: &str, hash: &str) -> String {
    let users: String = (0..8)
        .map(|i| {
            format!(
                "    - username: user{i}\n      passwordHash: \"{hash}\"\n      claims: {{email: user{i}@example.com}}\n"
            )
        })
        .collect();
    format!(
        r#"shutdown:
  delay: 1s
  drainTimeout: 5s
cache:
  backend: redis
  redis:
    url: {redis}
    keyPrefix: "replicas:"
    operationTimeout: 250ms
oidcProvider:
  issuer: {issuer_base}/idp
  signingKeys:
    - id: shared-key
      algorithm: ES256
      privateKey: ${{secret:op-key.pem}}
  clients:
    - clientId: gateway
      clientSecret: ${{secret:gateway-secret}}
      redirectUris: [{issuer_base}/.orchestrator/callback]
    - clientId: app
      clientSecret: app-secret
      redirectUris: [http://app.test/cb]
  users:
{users}  # Throttling is not under test here; several browsers sign in as user0 at once, and
  # checks in flight count against the budgets until they succeed.
  loginThrottle: {{maxFailuresPerUser: 1000, maxFailuresPerIp: 100000, freeFailuresPerClient: 1000, maxConcurrentPerUser: 64}}
appGateway:
  session:
    store: {store}
  identityProviders:
    - name: op
      issuer: {issuer_base}/idp
      clientId: gateway
      clientSecret: ${{secret:gateway-secret}}
  apps:
    - name: echo
      host: "*"
      pathPrefix: /
      upstream: {upstream}
      identityProvider: op
"#
    )
}

/// Replicas, Redis, upstream and ingress of one test.
struct Cluster {
    /// Kept alive for the cluster's lifetime.
    _redis: TestRedis,
    upstream: TestUpstream,
    haproxy: Option<Haproxy>,
    backends: Vec<Backend>,
    replicas: Vec<Option<Orchestrator>>,
    secrets: Secrets,
    yaml: String,
    layout: Layout,
}

impl Cluster {
    /// `n` backends are declared at the ingress; the first `running` start.
    async fn start(n: usize, running: usize, store: &str, layout: Layout) -> Self {
        let secrets = Secrets::new().await;
        let redis = TestRedis::start();
        let upstream = TestUpstream::echo().await;
        let backends: Vec<Backend> = (0..n)
            .map(|_| Backend {
                port: free_port(),
                admin_port: free_port(),
            })
            .collect();
        let haproxy = Haproxy::start(&backends).await;
        let yaml = replica_yaml(
            &haproxy.url(),
            &redis.url(),
            &upstream.url(),
            store,
            &secrets.hash,
        );
        let mut cluster = Self {
            _redis: redis,
            upstream,
            haproxy: Some(haproxy),
            backends,
            replicas: (0..n).map(|_| None).collect(),
            secrets,
            yaml,
            layout,
        };
        let started =
            futures::future::join_all((0..running).map(|i| cluster.spawn_replica(i))).await;
        for (i, orch) in started.into_iter().enumerate() {
            cluster.replicas[i] = Some(orch);
        }
        for i in 0..n {
            let want = if i < running { "UP" } else { "DOWN" };
            cluster
                .lb()
                .wait_state(&format!("r{i}"), want, Duration::from_secs(10))
                .await;
        }
        cluster
    }

    fn lb(&self) -> &Haproxy {
        self.haproxy.as_ref().unwrap()
    }

    fn spawn_replica(&self, i: usize) -> impl std::future::Future<Output = Orchestrator> + '_ {
        let b = self.backends[i];
        async move {
            Orchestrator::start_with(Setup {
                yaml: &self.yaml,
                secrets: &[
                    ("op-key.pem", &self.secrets.op_key),
                    ("gateway-secret", GATEWAY_SECRET),
                ],
                layout: self.layout,
                ports: Some((b.port, b.admin_port)),
                ..Setup::default()
            })
            .await
        }
    }

    async fn start_replica(&mut self, i: usize) {
        let orch = self.spawn_replica(i).await;
        self.replicas[i] = Some(orch);
        self.lb()
            .wait_state(&format!("r{i}"), "UP", Duration::from_secs(10))
            .await;
    }
}

// ---- load -------------------------------------------------------------------

/// Numbers of one simulated browser.
#[derive(Debug, Default, Clone)]
struct Stats {
    requests: u64,
    failed: u64,
    /// Visits that went through the IdP again after the first login.
    relogins: u64,
    /// Password prompts after the first login.
    prompts: u64,
    errors: Vec<String>,
    /// Replica (SERVERID) at the first login.
    pinned: Option<String>,
    /// Slowest visit (redirects and logins included).
    slowest: Duration,
}

struct Load {
    stats: Vec<Arc<Mutex<Stats>>>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// `n` browsers: each logs in once (user{i % 8}), then visits the app in a
/// loop (paced, at most `max_requests`) until stopped.
async fn start_load(base: &str, n: usize, first: usize, max_requests: u64) -> Load {
    let (stop, stopped) = watch::channel(false);
    let mut stats = Vec::new();
    let mut tasks = Vec::new();
    let mut logins = Vec::new();
    for i in first..first + n {
        let browser = Browser::new();
        let user = format!("user{}", i % 8);
        // The first login, with its password prompt, before the load starts.
        let v = browser
            .visit(&format!("{base}/b{i}/login"), &user, PASSWORD)
            .await
            .unwrap_or_else(|e| panic!("browser {i} cannot log in: {e}"));
        assert_eq!(v.status, 200, "browser {i}: {}", v.body);
        assert_eq!(v.prompts, 1, "browser {i}");
        logins.push((i, browser, user));
    }
    for (i, browser, user) in logins {
        let s = Arc::new(Mutex::new(Stats {
            pinned: browser.cookie(base, "SERVERID"),
            ..Stats::default()
        }));
        stats.push(s.clone());
        let base = base.to_owned();
        let stopped = stopped.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..max_requests {
                if *stopped.borrow() {
                    break;
                }
                let started = Instant::now();
                let result = browser
                    .visit(&format!("{base}/b{i}/{n}"), &user, PASSWORD)
                    .await;
                {
                    let mut s = s.lock().unwrap();
                    s.requests += 1;
                    s.slowest = s.slowest.max(started.elapsed());
                    match result {
                        Ok(v) if v.status == 200 => {
                            s.relogins += u64::from(v.authorizations);
                            s.prompts += u64::from(v.prompts);
                        }
                        Ok(v) => {
                            s.failed += 1;
                            s.errors.push(format!(
                                "{}: {}",
                                v.status,
                                v.body.chars().take(200).collect::<String>()
                            ));
                        }
                        Err(e) => {
                            s.failed += 1;
                            s.errors.push(e);
                        }
                    }
                }
                // Pacing, so a few browsers do not saturate two shared cores.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    Load { stats, stop, tasks }
}

impl Load {
    fn total(&self) -> u64 {
        self.stats.iter().map(|s| s.lock().unwrap().requests).sum()
    }

    /// Polls until `extra` more requests were sent in total (bounded).
    async fn wait_requests(&self, extra: u64, limit: Duration) {
        let target = self.total() + extra;
        let deadline = Instant::now() + limit;
        while self.total() < target {
            assert!(
                Instant::now() < deadline,
                "load stalled at {} requests",
                self.total()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn finish(self) -> Vec<Stats> {
        let _ = self.stop.send(true);
        for t in self.tasks {
            tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("a browser hung")
                .expect("a browser panicked");
        }
        self.stats
            .iter()
            .map(|s| s.lock().unwrap().clone())
            .collect()
    }
}

fn report(name: &str, stats: &[Stats]) {
    let sum = |f: fn(&Stats) -> u64| stats.iter().map(f).sum::<u64>();
    println!(
        "{name}: {} browsers, requests sent {}, failed {}, re-logins {}, password prompts {}",
        stats.len(),
        sum(|s| s.requests),
        sum(|s| s.failed),
        sum(|s| s.relogins),
        sum(|s| s.prompts)
    );
    for (i, s) in stats.iter().enumerate() {
        println!(
            "  browser {i} pinned {:?}: requests {}, failed {}, re-logins {}, prompts {}, slowest {:?} {:?}",
            s.pinned,
            s.requests,
            s.failed,
            s.relogins,
            s.prompts,
            s.slowest,
            s.errors.iter().take(3).collect::<Vec<_>>()
        );
    }
}

// ---- tests ------------------------------------------------------------------

async fn replica_killed(store: &str) {
    let mut cluster = Cluster::start(3, 3, store, Layout::Plain).await;
    let base = cluster.lb().url();
    let load = start_load(&base, 6, 0, 400).await;
    load.wait_requests(30, Duration::from_secs(30)).await;
    // The replica most browsers are pinned to, as long as not all are.
    let mut pins: HashMap<String, usize> = HashMap::new();
    for s in &load.stats {
        *pins
            .entry(s.lock().unwrap().pinned.clone().unwrap_or_default())
            .or_default() += 1;
    }
    let (victim, _) = pins
        .iter()
        .filter(|(_, n)| **n < load.stats.len())
        .max_by_key(|(_, n)| **n)
        .unwrap_or_else(|| panic!("every browser on one replica: {pins:?}"));
    let victim = victim.clone();
    let index: usize = victim.trim_start_matches('r').parse().unwrap();
    let mut dead = cluster.replicas[index].take().unwrap();
    dead.signal(Signal::SIGKILL);
    let _ = dead.wait_exit(Duration::from_secs(10)).await;
    cluster
        .lb()
        .wait_state(&victim, "DOWN", Duration::from_secs(10))
        .await;
    load.wait_requests(90, Duration::from_secs(40)).await;
    let stats = load.finish().await;
    report(&format!("replica killed (store: {store})"), &stats);

    let (on_dead, elsewhere): (Vec<&Stats>, Vec<&Stats>) = stats
        .iter()
        .partition(|s| s.pinned.as_deref() == Some(victim.as_str()));
    assert!(!on_dead.is_empty() && !elsewhere.is_empty(), "{stats:?}");
    for s in &elsewhere {
        assert_eq!(s.failed, 0, "a browser pinned elsewhere failed: {s:?}");
        assert_eq!(
            s.relogins, 0,
            "a browser pinned elsewhere re-logged in: {s:?}"
        );
    }
    for s in &on_dead {
        // The request in flight at the moment of the kill may be lost.
        assert!(s.failed <= 1, "{s:?}");
        assert_eq!(s.prompts, 0, "never a password prompt again: {s:?}");
        if store == "local" {
            assert!(s.relogins >= 1, "its session died with the replica: {s:?}");
        } else {
            assert_eq!(s.relogins, 0, "a shared session survives: {s:?}");
        }
    }
    drop(cluster.upstream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_killed_local_sessions_relogin_through_sso() {
    replica_killed("local").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_killed_shared_sessions_survive() {
    replica_killed("shared").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_loses_no_request() {
    let mut cluster = Cluster::start(3, 3, "shared", Layout::Plain).await;
    let base = cluster.lb().url();
    let load = start_load(&base, 6, 0, 1000).await;
    load.wait_requests(20, Duration::from_secs(30)).await;
    for i in 0..3 {
        let mut old = cluster.replicas[i].take().unwrap();
        old.signal(Signal::SIGTERM);
        assert_eq!(old.wait_exit(Duration::from_secs(15)).await, Some(0));
        cluster
            .lb()
            .wait_state(&format!("r{i}"), "DOWN", Duration::from_secs(10))
            .await;
        cluster.start_replica(i).await;
        load.wait_requests(15, Duration::from_secs(30)).await;
    }
    let stats = load.finish().await;
    report("rolling restart (store: shared)", &stats);
    let failed: u64 = stats.iter().map(|s| s.failed).sum();
    assert_eq!(failed, 0, "{stats:?}");
    assert_eq!(stats.iter().map(|s| s.prompts).sum::<u64>(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_up_from_two_to_three_mid_load() {
    let mut cluster = Cluster::start(3, 2, "local", Layout::Plain).await;
    let base = cluster.lb().url();
    let load = start_load(&base, 4, 0, 1000).await;
    load.wait_requests(20, Duration::from_secs(30)).await;
    cluster.start_replica(2).await;
    // New browsers arrive after the scale-up; round robin sends some to r2.
    let late = start_load(&base, 3, 4, 1000).await;
    load.wait_requests(40, Duration::from_secs(30)).await;
    late.wait_requests(20, Duration::from_secs(30)).await;
    let mut stats = load.finish().await;
    stats.extend(late.finish().await);
    report("scale 2 → 3", &stats);
    // Which browsers land on r2 depends on the round robin (the gateways'
    // own calls to the issuer take turns too); that r2 serves is what counts.
    let served = cluster.lb().served("r2").await;
    println!("  r2 served {served} requests after joining");
    assert!(served > 0, "the new replica got no traffic");
    assert_eq!(stats.iter().map(|s| s.failed).sum::<u64>(), 0, "{stats:?}");
    assert_eq!(
        stats.iter().map(|s| s.relogins).sum::<u64>(),
        0,
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_config_pushed_to_every_replica_keeps_them_serving() {
    let mut cluster = Cluster::start(3, 3, "local", Layout::Kubernetes).await;
    let base = cluster.lb().url();
    let load = start_load(&base, 6, 0, 1000).await;
    load.wait_requests(20, Duration::from_secs(30)).await;
    let broken = format!("{}\nlisten:\n  adress: nowhere\n", cluster.yaml);
    for r in cluster.replicas.iter_mut().flatten() {
        r.update_config(&broken);
    }
    for r in cluster.replicas.iter().flatten() {
        r.wait_metric_at_least(
            "orchestrator_config_reloads_total{result=\"error\"}",
            1.0,
            Duration::from_secs(10),
        )
        .await;
    }
    load.wait_requests(60, Duration::from_secs(30)).await;
    for r in cluster.replicas.iter().flatten() {
        let ready = reqwest::get(format!("{}/readyz", r.admin_url()))
            .await
            .unwrap();
        assert_eq!(ready.status(), 200);
    }
    let stats = load.finish().await;
    report("broken config pushed", &stats);
    assert_eq!(stats.iter().map(|s| s.failed).sum::<u64>(), 0, "{stats:?}");
    assert_eq!(
        stats.iter().map(|s| s.relogins).sum::<u64>(),
        0,
        "{stats:?}"
    );
}

/// Redis down and back under OIDC load, straight at two replicas (through
/// HAProxy every replica would be marked down by its failing `/readyz`, and
/// HAProxy's own 503 would hide the provider's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_under_oidc_load() {
    let secrets = Secrets::new().await;
    let mut redis = TestRedis::start();
    let upstream = TestUpstream::echo().await;
    let (p0, a0) = (free_port(), free_port());
    let issuer_base = format!("http://127.0.0.1:{p0}");
    let yaml = replica_yaml(
        &issuer_base,
        &redis.url(),
        &upstream.url(),
        "local",
        &secrets.hash,
    );
    let setup = |ports| Setup {
        yaml: &yaml,
        secrets: &[],
        ports: Some(ports),
        ..Setup::default()
    };
    let secret_files = [
        ("op-key.pem", secrets.op_key.as_str()),
        ("gateway-secret", GATEWAY_SECRET),
    ];
    let (r0, r1) = tokio::join!(
        Orchestrator::start_with(Setup {
            secrets: &secret_files,
            ..setup((p0, a0))
        }),
        Orchestrator::start_with(Setup {
            secrets: &secret_files,
            ..setup((free_port(), free_port()))
        })
    );
    // The issuer's host is what routes to the provider; the port is ignored,
    // so both replicas serve the same issuer on their own ports.
    let replicas = [r0, r1];

    // One SSO session (cookie scoped to host, so valid at both ports).
    let browser = Browser::new();
    let sso = oidc_round(&browser, &replicas[0].base_url(), Some(PASSWORD)).await;
    assert_eq!(sso, Round::Ok(true), "first login");

    let (stop, stopped) = watch::channel(false);
    let counts: Arc<Mutex<HashMap<&'static str, u64>>> = Arc::default();
    let mut tasks = Vec::new();
    for w in 0..4 {
        let base = replicas[w % 2].base_url();
        let browser = browser.clone();
        let counts = counts.clone();
        let stopped = stopped.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..2000 {
                if *stopped.borrow() {
                    break;
                }
                let started = Instant::now();
                let round = oidc_round(&browser, &base, Some(PASSWORD)).await;
                let label = match round {
                    Round::Ok(prompted) => {
                        if prompted {
                            *counts.lock().unwrap().entry("prompted").or_default() += 1;
                        }
                        "ok"
                    }
                    Round::Unavailable => "unavailable",
                    Round::Failed(e) => {
                        eprintln!("unexpected: {e}");
                        "failed"
                    }
                };
                if started.elapsed() > Duration::from_secs(3) {
                    *counts.lock().unwrap().entry("slow").or_default() += 1;
                }
                *counts.lock().unwrap().entry(label).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    let wait_count = |label: &'static str, min: u64| {
        let counts = counts.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let n = counts.lock().unwrap().get(label).copied().unwrap_or(0);
                if n >= min {
                    return;
                }
                assert!(Instant::now() < deadline, "{label} stayed at {n}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_count("ok", 10).await;
    redis.stop();
    let down_at = counts
        .lock()
        .unwrap()
        .get("unavailable")
        .copied()
        .unwrap_or(0);
    wait_count("unavailable", down_at + 8).await;
    // /readyz says why.
    for r in &replicas {
        let resp = reqwest::get(format!("{}/readyz", r.admin_url()))
            .await
            .unwrap();
        assert_eq!(resp.status(), 503);
        let body = resp.text().await.unwrap();
        assert!(
            body.contains("cache (redis) unavailable")
                || body.contains("cache (redis) did not answer"),
            "{body}"
        );
    }
    let ok_before = counts.lock().unwrap().get("ok").copied().unwrap_or(0);
    redis.restart();
    let back = Instant::now();
    // Within 2 s of Redis answering again, every replica completes rounds.
    let deadline = back + Duration::from_secs(2);
    loop {
        let ok = counts.lock().unwrap().get("ok").copied().unwrap_or(0);
        if ok >= ok_before + 8 {
            break;
        }
        if Instant::now() >= deadline {
            let counts = counts.lock().unwrap().clone();
            panic!("OIDC not back within 2 s of Redis: {counts:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let recovered_in = back.elapsed();
    for r in &replicas {
        let resp = reqwest::get(format!("{}/readyz", r.admin_url()))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let _ = stop.send(true);
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .expect("a worker hung")
            .unwrap();
    }
    let counts = counts.lock().unwrap().clone();
    let rounds: u64 = counts
        .iter()
        .filter(|(k, _)| !matches!(**k, "slow" | "prompted"))
        .map(|(_, v)| v)
        .sum();
    // Redis here keeps no data across a restart (no persistence), so SSO
    // sessions are gone afterwards: users see the login form once more.
    println!(
        "redis outage: rounds sent {rounds} (authorize+token+userinfo each), ok {} ({} re-prompted after the data loss), 503 while down {}, failed {}, slow (>3 s) {}, recovered {recovered_in:?} after Redis returned",
        counts.get("ok").unwrap_or(&0),
        counts.get("prompted").unwrap_or(&0),
        counts.get("unavailable").unwrap_or(&0),
        counts.get("failed").unwrap_or(&0),
        counts.get("slow").unwrap_or(&0),
    );
    assert_eq!(counts.get("failed"), None, "{counts:?}");
    assert_eq!(counts.get("slow"), None, "no hang: {counts:?}");
    drop(upstream);
}

#[derive(Debug, PartialEq)]
enum Round {
    /// The round completed; `true` when the login form had to be filled in.
    Ok(bool),
    /// A 503 (or `temporarily_unavailable` redirect) that says why.
    Unavailable,
    Failed(String),
}

/// One OIDC round at `base`: authorize (SSO, or login when `password`) →
/// token → userinfo, for the `app` client with PKCE.
async fn oidc_round(browser: &Browser, base: &str, password: Option<&str>) -> Round {
    let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let c = browser.client();
    let url = format!(
        "{base}/idp/authorize?response_type=code&client_id=app&redirect_uri=http%3A%2F%2Fapp.test%2Fcb&scope=openid%20email&state=s&code_challenge={challenge}&code_challenge_method=S256"
    );
    let mut resp = match c.get(&url).send().await {
        Ok(r) => r,
        Err(e) => return Round::Failed(format!("authorize: {e}")),
    };
    let prompted = resp.status() == 200;
    if prompted {
        let Some(pw) = password else {
            return Round::Failed("login form without a password to give".into());
        };
        let body = resp.text().await.unwrap_or_default();
        let (Some(tx), Some(csrf)) = (
            orchestrator_tests::browser::hidden(&body, "tx"),
            orchestrator_tests::browser::hidden(&body, "csrf"),
        ) else {
            return Round::Failed(format!("no form: {body}"));
        };
        resp = match c
            .post(format!("{base}/idp/login"))
            .form(&[
                ("tx", tx.as_str()),
                ("csrf", &csrf),
                ("username", "user0"),
                ("password", pw),
            ])
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return Round::Failed(format!("login: {e}")),
        };
    }
    if resp.status() == 503 {
        return clear_503(&resp.text().await.unwrap_or_default());
    }
    let Some(loc) = resp.headers().get("location").and_then(|v| v.to_str().ok()) else {
        return Round::Failed(format!("authorize answered {}", resp.status()));
    };
    let loc = url::Url::parse(loc).unwrap();
    let params: HashMap<String, String> = loc.query_pairs().into_owned().collect();
    if params.get("error").map(String::as_str) == Some("temporarily_unavailable") {
        return Round::Unavailable;
    }
    let Some(code) = params.get("code") else {
        return Round::Failed(format!("no code: {loc}"));
    };
    let resp = match c
        .post(format!("{base}/idp/token"))
        .basic_auth("app", Some("app-secret"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", "http://app.test/cb"),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => return Round::Failed(format!("token: {e}")),
    };
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    if status == 503 {
        return clear_503(&body);
    }
    if status != 200 {
        return Round::Failed(format!("token {status}: {body}"));
    }
    let tokens: serde_json::Value = serde_json::from_str(&body).unwrap();
    let resp = match c
        .get(format!("{base}/idp/userinfo"))
        .bearer_auth(tokens["access_token"].as_str().unwrap_or_default())
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => return Round::Failed(format!("userinfo: {e}")),
    };
    let status = resp.status().as_u16();
    let www = resp
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = resp.text().await.unwrap_or_default();
    match status {
        200 => Round::Ok(prompted),
        503 => clear_503(&format!("{www} {body}")),
        _ => Round::Failed(format!("userinfo {status}: {www} {body}")),
    }
}

fn clear_503(body: &str) -> Round {
    if body.contains("temporarily_unavailable") {
        Round::Unavailable
    } else {
        Round::Failed(format!("503 without a clear reason: {body}"))
    }
}
