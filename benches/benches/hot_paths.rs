//! Gateway and provider hot paths, in process, through public APIs only.
//!
//! The gateway's router, session store, policy and header code are private
//! to `orchestrator-gateway`, so each is measured through [`Gateway::handle`]
//! with a request chosen to stop right after the phase of interest; the
//! differences between benches isolate one phase each:
//!
//! | bench | phases it runs |
//! | --- | --- |
//! | `gateway/route+session_miss (401)` | route, strip, cookie parse, session lookup (miss), 401 page |
//! | `gateway/route+session+policy_deny (403)` | route, strip, local session lookup (hit), the session's cached identity for the app (deny), 403 page |
//! | `gateway/public_path_forward` | route, strip, forward to the upstream (no session, no identity) |
//! | `gateway/authenticated_forward/local` | + local session lookup, cached identity (allow), identity headers |
//! | `gateway/authenticated_forward/local+assertion` | + the assertion header (signed on the session's first request to the app, then reused until half its lifetime) |
//! | `gateway/authenticated_forward/shared_near_cache` | `store: shared`, session from the near-cache |
//! | `gateway/sso_login` | a new gateway session: redirect, authorize with the SSO cookie, callback (code exchange over HTTP, ID token verification) |
//! | `provider/code_exchange` | `Provider::handle`: authorize (SSO) + token (two ES256 signatures) |
//! | `provider/userinfo` | bearer access-token verification (ES256) + claims |
//! | `assertion/verify` | what an upstream does: verify the assertion with the gateway's JWKS |
//!
//! Forwarding benches include one loopback round trip to an in-process
//! upstream. `route/normalise` and `session_id/parse` call the two public
//! helpers directly. Cache operations are in `cache.rs`; provider throughput
//! over HTTP in `oidc.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use orchestrator_http::ConnInfo;
use std::net::SocketAddr;
use std::sync::Arc;

use benches::client::{Browser, CookieJar, OidcClient, code_from};
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt as _, Full};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use orchestrator_config::{SystemSources, load_str};
use orchestrator_gateway::{Gateway, GatewayMetrics, NormalPath, SessionId};
use orchestrator_oidc::{Provider, ProviderMetrics, keys};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

const PASSWORD: &str = "bench-password";
/// argon2id of "bench-password" with small parameters: setup logs in a few
/// times and must not measure password hashing.
const HASH: &str = "$argon2id$v=19$m=1024,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$Fx3vzeZg/UnjP5WsNl1OKVF1o4DKfQjYc8KyH/6sUx8";
const PEER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 40000);

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// One listener: the provider under `/idp` when it is there, else the gateway.
async fn serve(listener: TcpListener, provider: Option<Arc<Provider>>, gateway: Arc<Gateway>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (provider, gateway) = (provider.clone(), gateway.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let (provider, gateway) = (provider.clone(), gateway.clone());
                async move {
                    let host = req
                        .headers()
                        .get(header::HOST)
                        .and_then(|h| h.to_str().ok())
                        .map(str::to_owned);
                    let resp = match &provider {
                        Some(p) if p.matches(host.as_deref(), req.uri().path()) => {
                            p.handle(req, ConnInfo::plain(peer)).await
                        }
                        _ => gateway.handle(req, ConnInfo::plain(peer)).await,
                    };
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

struct Setup {
    provider: Arc<Provider>,
    local: Arc<Gateway>,
    shared: Arc<Gateway>,
    host_a: String,
    host_b: String,
    alice: String,
    alice_shared: String,
    outsider: String,
    sso: String,
    client_secret: String,
    jwks: jsonwebtoken::jwk::JwkSet,
    assertion: String,
    access_token: String,
}

fn config_yaml(port_a: u16, port_b: u16, upstream: SocketAddr) -> String {
    let oidc_key = keys::generate_pem(orchestrator_config::SigningAlgorithm::ES256).unwrap();
    let gw_key = keys::generate_pem(orchestrator_config::SigningAlgorithm::ES256).unwrap();
    let indent = |pem: &str| {
        pem.lines()
            .map(|l| format!("        {l}\n"))
            .collect::<String>()
    };
    let (oidc_key, gw_key) = (indent(&oidc_key), indent(&gw_key));
    let app = |name: &str, host: &str, assertion: bool| {
        format!(
            "    - name: {name}\n      host: {host}\n      pathPrefix: /\n      upstream: http://{upstream}\n      identityProvider: default\n      publicPaths: [/public/]\n      policy:\n        allowGroups: [engineering]\n        allowEmailDomains: [example.com]\n      headers:\n        X-Auth-Request-User: sub\n        X-Auth-Request-Email: email\n        X-Auth-Request-Groups: groups\n{}",
            if assertion {
                "      assertionHeader: X-Orchestrator-Assertion\n"
            } else {
                ""
            }
        )
    };
    let apps = [
        app("signed", "signed.localhost", true),
        app("plain", "localhost", false),
    ]
    .concat();
    format!(
        r#"listen:
  address: 127.0.0.1:{port_a}
cache:
  backend: memory
oidcProvider:
  issuer: http://localhost:{port_a}/idp
  signingKeys:
    - id: bench-oidc
      algorithm: ES256
      privateKey: |
{oidc_key}  clients:
    - clientId: gw
      clientSecret: gw-secret
      redirectUris: [http://localhost:{port_a}/.orchestrator/callback, http://localhost:{port_b}/.orchestrator/callback, http://signed.localhost:{port_a}/.orchestrator/callback]
      grantTypes: [authorization_code]
    - clientId: bench-client
      clientSecret: bench-client-secret
      redirectUris: [http://localhost:{port_a}/bench/callback]
      grantTypes: [authorization_code]
  users:
    - username: alice
      passwordHash: "{HASH}"
      claims: {{email: alice@example.com, email_verified: true, groups: [engineering]}}
    - username: outsider
      passwordHash: "{HASH}"
      claims: {{email: outsider@example.com, email_verified: true, groups: [sales]}}
appGateway:
  session:
    store: local
  assertionSigningKeys:
    - id: bench-gw
      algorithm: ES256
      privateKey: |
{gw_key}  identityProviders:
    - name: default
      issuer: http://localhost:{port_a}/idp
      clientId: gw
      clientSecret: gw-secret
      scopes: [openid, profile, email, groups]
  apps:
{apps}"#
    )
}

async fn setup() -> Setup {
    let upstream = benches::upstream::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let la = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let lb = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (pa, pb) = (
        la.local_addr().unwrap().port(),
        lb.local_addr().unwrap().port(),
    );
    let cfg = load_str(&config_yaml(pa, pb, upstream), "hot_paths", &SystemSources)
        .unwrap_or_else(|e| panic!("bench config: {e:?}"));
    let registry = prometheus::Registry::new();
    let cache: Arc<dyn orchestrator_cache::Cache> =
        Arc::new(orchestrator_cache::MemoryCache::new(&cfg.cache.memory));
    let provider = Arc::new(
        Provider::new(
            cfg.oidc_provider.as_ref().unwrap(),
            cfg.cache.backend,
            &cfg.listen,
            cache.clone(),
            Arc::new(ProviderMetrics::new(&registry).unwrap()),
        )
        .unwrap(),
    );
    let gw_cfg = cfg.app_gateway.as_ref().unwrap();
    let metrics = Arc::new(GatewayMetrics::new(&registry).unwrap());
    let local =
        Arc::new(Gateway::new(gw_cfg, &cfg.listen, cache.clone(), metrics.clone()).unwrap());
    let mut shared_cfg = gw_cfg.clone();
    shared_cfg.session.store = orchestrator_config::SessionStore::Shared;
    let shared_metrics = Arc::new(GatewayMetrics::new(&prometheus::Registry::new()).unwrap());
    let shared = Arc::new(Gateway::new(&shared_cfg, &cfg.listen, cache, shared_metrics).unwrap());
    tokio::spawn(serve(la, Some(provider.clone()), local.clone()));
    tokio::spawn(serve(lb, None, shared.clone()));

    let host_a = format!("localhost:{pa}");
    let host_b = format!("localhost:{pb}");
    let addr_a: SocketAddr = ([127, 0, 0, 1], pa).into();
    let addr_b: SocketAddr = ([127, 0, 0, 1], pb).into();
    let mut alice = Browser::connect(addr_a, &host_a).await.unwrap();
    alice.login("/", "alice", PASSWORD).await.unwrap();
    let sso = alice.jar.get("oidc_session").unwrap().to_owned();
    let alice_session = alice.jar.get("orchestrator_session").unwrap().to_owned();
    let mut outsider = Browser::connect(addr_a, &host_a).await.unwrap();
    let denied = outsider.login("/", "outsider", PASSWORD).await;
    assert!(denied.is_err(), "outsider must be refused by the policy");
    let outsider_session = outsider.jar.get("orchestrator_session").unwrap().to_owned();
    // Gateway B: a login that rides on the SSO session at A.
    let mut b = Browser::connect(addr_b, &host_b).await.unwrap();
    b.jar = sso_jar(&sso);
    let page = b.navigate(hyper::Method::GET, "/", None).await.unwrap();
    assert_eq!(page.status, StatusCode::OK);
    let shared_session = b.jar.get("orchestrator_session").unwrap().to_owned();

    // The assertion an upstream receives, and the JWKS that verifies it.
    let cookie = format!("orchestrator_session={alice_session}");
    let resp = local
        .handle(
            get("signed.localhost", "/assertion", Some(&cookie)),
            ConnInfo::plain(PEER),
        )
        .await;
    let assertion = String::from_utf8(body(resp).await.to_vec()).unwrap();
    assert!(
        assertion.starts_with("ey"),
        "the signed app sends an assertion"
    );
    let resp = local
        .handle(
            get("localhost", "/assertion", Some(&cookie)),
            ConnInfo::plain(PEER),
        )
        .await;
    assert!(body(resp).await.is_empty(), "the plain app sends none");
    let resp = local
        .handle(
            get("localhost", "/.orchestrator/jwks", None),
            ConnInfo::plain(PEER),
        )
        .await;
    let jwks = serde_json::from_slice(&body(resp).await).unwrap();

    let client = OidcClient::new(
        "/idp",
        "bench-client",
        "bench-client-secret",
        &format!("http://{host_a}/bench/callback"),
    )
    .unwrap();
    let token = exchange(&provider, &client, &host_a, &sso).await;
    let token: serde_json::Value = serde_json::from_slice(&token).unwrap();
    Setup {
        provider,
        local,
        shared,
        host_a,
        host_b,
        alice: cookie,
        alice_shared: format!("orchestrator_session={shared_session}"),
        outsider: format!("orchestrator_session={outsider_session}"),
        sso,
        client_secret: "bench-client-secret".to_owned(),
        jwks,
        assertion,
        access_token: token["access_token"].as_str().unwrap().to_owned(),
    }
}

fn sso_jar(sso: &str) -> CookieJar {
    let mut jar = CookieJar::default();
    let mut h = header::HeaderMap::new();
    h.insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&format!("oidc_session={sso}; Path=/idp")).unwrap(),
    );
    jar.store(&h);
    jar
}

fn get(host: &str, path: &str, cookie: Option<&str>) -> Request<Full<Bytes>> {
    let mut b = Request::get(path).header(header::HOST, host);
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(Full::default()).unwrap()
}

async fn body(resp: hyper::Response<orchestrator_gateway::BoxBody>) -> Bytes {
    resp.into_body().collect().await.unwrap().to_bytes()
}

async fn exchange(provider: &Provider, client: &OidcClient, host: &str, sso: &str) -> Bytes {
    let cookie = format!("oidc_session={sso}");
    let auth = provider
        .handle(
            client.authorize_request(host, &cookie).unwrap(),
            ConnInfo::plain(PEER),
        )
        .await;
    let location = auth.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    let code = code_from(&location).expect("a code");
    let token = provider
        .handle(
            client.token_request(host, &code).unwrap(),
            ConnInfo::plain(PEER),
        )
        .await;
    assert_eq!(token.status(), StatusCode::OK);
    token.into_body().collect().await.unwrap().to_bytes()
}

fn benches(c: &mut Criterion) {
    let rt = runtime();
    let s = Arc::new(rt.block_on(setup()));

    c.bench_function("route/normalise", |b| {
        b.iter(|| NormalPath::parse(std::hint::black_box("/api/v1/users/../items/%2e%2e/42;x")))
    });
    let cookie = SessionId::random().expose();
    c.bench_function("session_id/parse", |b| {
        b.iter(|| SessionId::parse(std::hint::black_box(&cookie)))
    });

    let mut g = c.benchmark_group("gateway");
    g.bench_function("route+session_miss (401)", |b| {
        b.to_async(&rt).iter(|| async {
            let req = Request::get("/x")
                .header(header::HOST, "localhost")
                .header(header::ACCEPT, "application/json")
                .body(Full::<Bytes>::default())
                .unwrap();
            let resp = s.local.handle(req, ConnInfo::plain(PEER)).await;
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        })
    });
    g.bench_function("route+session+policy_deny (403)", |b| {
        b.to_async(&rt).iter(|| async {
            let resp = s
                .local
                .handle(
                    get("localhost", "/x", Some(&s.outsider)),
                    ConnInfo::plain(PEER),
                )
                .await;
            assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        })
    });
    let forward = |gw: &Arc<Gateway>, host: &str, path: &str, cookie: Option<&str>| {
        let (gw, host, path, cookie) = (
            gw.clone(),
            host.to_owned(),
            path.to_owned(),
            cookie.map(str::to_owned),
        );
        async move {
            let resp = gw
                .handle(get(&host, &path, cookie.as_deref()), ConnInfo::plain(PEER))
                .await;
            assert_eq!(resp.status(), StatusCode::OK);
            body(resp).await
        }
    };
    g.bench_function("public_path_forward", |b| {
        b.to_async(&rt)
            .iter(|| forward(&s.local, "localhost", "/public/x", None))
    });
    g.bench_function("authenticated_forward/local", |b| {
        b.to_async(&rt)
            .iter(|| forward(&s.local, "localhost", "/x", Some(&s.alice)))
    });
    g.bench_function("authenticated_forward/local+assertion", |b| {
        b.to_async(&rt)
            .iter(|| forward(&s.local, "signed.localhost", "/x", Some(&s.alice)))
    });
    g.bench_function("authenticated_forward/shared_near_cache", |b| {
        b.to_async(&rt)
            .iter(|| forward(&s.shared, &s.host_b, "/x", Some(&s.alice_shared)))
    });
    g.bench_function("sso_login", |b| {
        b.to_async(&rt).iter(|| async {
            // Fresh browser state each time; the work is the gateway's
            // redirect, the provider's authorize and the gateway's callback.
            let jar = sso_jar(&s.sso);
            let start = s
                .local
                .handle(get(&s.host_a, "/x", None), ConnInfo::plain(PEER))
                .await;
            assert_eq!(start.status(), StatusCode::FOUND);
            let mut jar = jar;
            let mut h = start.headers().clone();
            jar.store(&h);
            let location = h.remove(header::LOCATION).unwrap();
            let path = location
                .to_str()
                .unwrap()
                .split_once(&s.host_a)
                .unwrap()
                .1
                .to_owned();
            let cookie = jar.header_for("/idp/authorize").unwrap();
            let auth = s
                .provider
                .handle(get(&s.host_a, &path, Some(&cookie)), ConnInfo::plain(PEER))
                .await;
            let location = auth.headers()[header::LOCATION].to_str().unwrap();
            let callback = location.split_once(&s.host_a).unwrap().1.to_owned();
            let cookie = jar.header_for("/").unwrap();
            let done = s
                .local
                .handle(
                    get(&s.host_a, &callback, Some(&cookie)),
                    ConnInfo::plain(PEER),
                )
                .await;
            assert_eq!(done.status(), StatusCode::SEE_OTHER);
        })
    });
    g.finish();

    let mut g = c.benchmark_group("provider");
    let client = OidcClient::new(
        "/idp",
        "bench-client",
        &s.client_secret,
        &format!("http://{}/bench/callback", s.host_a),
    )
    .unwrap();
    g.bench_function("code_exchange", |b| {
        b.to_async(&rt)
            .iter(|| exchange(&s.provider, &client, &s.host_a, &s.sso))
    });
    g.bench_function("userinfo", |b| {
        b.to_async(&rt).iter(|| async {
            let req = Request::get("/idp/userinfo")
                .header(header::HOST, &s.host_a)
                .header(header::AUTHORIZATION, format!("Bearer {}", s.access_token))
                .body(Full::<Bytes>::default())
                .unwrap();
            let resp = s.provider.handle(req, ConnInfo::plain(PEER)).await;
            assert_eq!(resp.status(), StatusCode::OK);
        })
    });
    g.finish();

    let jwk = s.jwks.find("bench-gw").expect("assertion key published");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&["signed"]);
    validation.set_issuer(&[orchestrator_gateway::ASSERTION_ISSUER]);
    c.bench_function("assertion/verify", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<serde_json::Value>(&s.assertion, &key, &validation).unwrap()
        })
    });
}

criterion_group! {
    name = hot_paths;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = benches
}
criterion_main!(hot_paths);
