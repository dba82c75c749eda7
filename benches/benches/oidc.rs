//! OIDC provider benchmarks through HTTP on loopback (hyper server, reqwest
//! client with keep-alive), reported as throughput (criterion's elements/s):
//!
//! - `code_exchange/{memory,redis}`: one authorization-code exchange =
//!   client authentication (constant-time secret check) + `Cache::take` of
//!   the code + the "code used" and refresh-token writes + two ES256
//!   signatures (access and ID token), 32 exchanges in flight. Codes are
//!   minted untimed through the SSO session (`/authorize` without a form).
//! - `discovery` and `jwks`: pre-rendered documents, 32 requests in flight.
//!
//! Goal (issue 4): at least 3,000 code exchanges/s with memory on 2 cores.

use orchestrator_http::ConnInfo;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use orchestrator_cache::testing::TestRedis;
use orchestrator_cache::{Cache, MemoryCache, RedisCache};
use orchestrator_config::{CacheBackend, ListenConfig, OidcProviderConfig, SigningAlgorithm};
use orchestrator_oidc::{Provider, ProviderMetrics};
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

const CONCURRENCY: usize = 32;
const SECRET: &str = "bench-client-secret";
const REDIRECT: &str = "http://bench.test/cb";
/// argon2id of "bench-password" with small parameters: the bench logs in
/// once and must not measure password hashing.
const HASH: &str = "$argon2id$v=19$m=1024,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$Fx3vzeZg/UnjP5WsNl1OKVF1o4DKfQjYc8KyH/6sUx8";

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A provider on 127.0.0.1:0 and a browser that is logged in to it.
struct Bench {
    base: String,
    browser: reqwest::Client,
    http: reqwest::Client,
}

fn config(issuer: &str) -> OidcProviderConfig {
    let key = orchestrator_oidc::keys::generate_pem(SigningAlgorithm::ES256).expect("key");
    serde_json::from_value(serde_json::json!({
        "issuer": issuer,
        "signingKeys": [{"id": "bench", "algorithm": "ES256", "privateKey": key}],
        // A confidential client that skips PKCE keeps the bench to what it
        // measures; PKCE costs one SHA-256.
        "clients": [{
            "clientId": "bench",
            "clientSecret": SECRET,
            "requirePkce": false,
            "redirectUris": [REDIRECT],
        }],
        "users": [{"username": "bench", "passwordHash": HASH, "claims": {"email": "b@example.com"}}],
    }))
    .expect("config")
}

async fn start(cache: Arc<dyn Cache>, backend: CacheBackend) -> Bench {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let base = format!("http://{addr}/idp");
    let metrics = Arc::new(ProviderMetrics::new(&prometheus::Registry::new()).expect("metrics"));
    let provider = Arc::new(
        Provider::new(
            &config(&base),
            backend,
            &ListenConfig::default(),
            cache,
            metrics,
        )
        .expect("provider"),
    );
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            let provider = provider.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let provider = provider.clone();
                    async move { Ok::<_, Infallible>(provider.handle(req, ConnInfo::plain(peer)).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
            });
        }
    });
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let bench = Bench {
        base,
        browser,
        http: reqwest::Client::new(),
    };
    bench.login().await;
    bench
}

fn value_after<'a>(text: &'a str, marker: &str, end: char) -> &'a str {
    let start = text.find(marker).expect("marker") + marker.len();
    let rest = &text[start..];
    &rest[..rest.find(end).unwrap_or(rest.len())]
}

impl Bench {
    fn authorize_query(&self) -> [(&'static str, &'static str); 5] {
        [
            ("response_type", "code"),
            ("client_id", "bench"),
            ("redirect_uri", REDIRECT),
            ("scope", "openid email"),
            ("state", "s"),
        ]
    }

    async fn login(&self) {
        let page = self
            .browser
            .get(format!("{}/authorize", self.base))
            .query(&self.authorize_query())
            .send()
            .await
            .expect("authorize")
            .text()
            .await
            .expect("page");
        let tx = value_after(&page, "name=\"tx\" value=\"", '"').to_owned();
        let csrf = value_after(&page, "name=\"csrf\" value=\"", '"').to_owned();
        let resp = self
            .browser
            .post(format!("{}/login", self.base))
            .form(&[
                ("tx", tx.as_str()),
                ("csrf", &csrf),
                ("username", "bench"),
                ("password", "bench-password"),
            ])
            .send()
            .await
            .expect("login");
        assert_eq!(resp.status(), 302, "bench login failed");
    }

    /// A fresh code through the SSO session.
    async fn code(&self) -> String {
        let resp = self
            .browser
            .get(format!("{}/authorize", self.base))
            .query(&self.authorize_query())
            .send()
            .await
            .expect("authorize");
        let location = resp.headers()["location"]
            .to_str()
            .expect("location")
            .to_owned();
        value_after(&location, "code=", '&').to_owned()
    }

    async fn codes(self: &Arc<Self>, n: u64) -> Vec<String> {
        let mut set = JoinSet::new();
        let per = n.div_ceil(CONCURRENCY as u64);
        for _ in 0..CONCURRENCY {
            let b = self.clone();
            set.spawn(async move {
                let mut out = Vec::new();
                for _ in 0..per {
                    out.push(b.code().await);
                }
                out
            });
        }
        let mut all = Vec::new();
        while let Some(chunk) = set.join_next().await {
            all.extend(chunk.expect("task"));
        }
        all.truncate(usize::try_from(n).expect("n"));
        all
    }

    async fn exchange(&self, code: &str) {
        let resp = self
            .http
            .post(format!("{}/token", self.base))
            .basic_auth("bench", Some(SECRET))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", REDIRECT),
            ])
            .send()
            .await
            .expect("token");
        assert_eq!(resp.status(), 200);
        let _ = resp.bytes().await;
    }

    /// Exchanges `codes` with `CONCURRENCY` in flight; returns the wall time.
    async fn exchange_all(self: &Arc<Self>, codes: Vec<String>) -> Duration {
        let chunks: Vec<Vec<String>> = codes
            .chunks(codes.len().div_ceil(CONCURRENCY).max(1))
            .map(<[String]>::to_vec)
            .collect();
        let start = Instant::now();
        let mut set = JoinSet::new();
        for chunk in chunks {
            let b = self.clone();
            set.spawn(async move {
                for code in chunk {
                    b.exchange(&code).await;
                }
            });
        }
        while let Some(r) = set.join_next().await {
            r.expect("task");
        }
        start.elapsed()
    }

    async fn get_many(self: &Arc<Self>, path: &'static str, n: u64) -> Duration {
        let per = n.div_ceil(CONCURRENCY as u64);
        let start = Instant::now();
        let mut set = JoinSet::new();
        for _ in 0..CONCURRENCY {
            let b = self.clone();
            set.spawn(async move {
                for _ in 0..per {
                    let resp = b
                        .http
                        .get(format!("{}{path}", b.base))
                        .send()
                        .await
                        .expect("get");
                    let _ = resp.bytes().await;
                }
            });
        }
        while let Some(r) = set.join_next().await {
            r.expect("task");
        }
        // Normalise to exactly `n` requests' worth of time.
        start
            .elapsed()
            .mul_f64(n as f64 / (per * CONCURRENCY as u64) as f64)
    }
}

fn code_exchange(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("oidc");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));

    let memory = rt.block_on(async {
        let cache: Arc<dyn Cache> = Arc::new(MemoryCache::new(&Default::default()));
        Arc::new(start(cache, CacheBackend::Memory).await)
    });
    group.bench_function("code_exchange/memory", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let bench = memory.clone();
            async move {
                let codes = bench.codes(iters).await;
                bench.exchange_all(codes).await
            }
        });
    });
    group.bench_function("discovery", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let bench = memory.clone();
            async move {
                bench
                    .get_many("/.well-known/openid-configuration", iters)
                    .await
            }
        });
    });
    group.bench_function("jwks", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let bench = memory.clone();
            async move { bench.get_many("/jwks", iters).await }
        });
    });

    let redis = TestRedis::start();
    let with_redis = rt.block_on(async {
        let cache: Arc<dyn Cache> =
            Arc::new(RedisCache::new(&redis.config("bench:")).expect("redis"));
        Arc::new(start(cache, CacheBackend::Redis).await)
    });
    group.bench_function("code_exchange/redis", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let bench = with_redis.clone();
            async move {
                let codes = bench.codes(iters).await;
                bench.exchange_all(codes).await
            }
        });
    });
    group.finish();
}

criterion_group!(benches, code_exchange);
criterion_main!(benches);
