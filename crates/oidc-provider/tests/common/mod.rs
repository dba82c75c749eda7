//! Test fixtures: a provider served by hyper on 127.0.0.1:0, a browser-like
//! client with a cookie jar, and helpers that walk the login flow.

#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use argon2::password_hash::{PasswordHasher as _, SaltString};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use orchestrator_cache::{Cache, MemoryCache};
use orchestrator_config::{CacheBackend, ListenConfig, OidcProviderConfig, SigningAlgorithm};
use orchestrator_oidc::{Provider, ProviderMetrics};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

pub const PASSWORD: &str = "correct horse battery staple";
pub const CLIENT_SECRET: &str = "s3cret-of-the-demo-client";
pub const REDIRECT_URI: &str = "http://app.test/callback";
pub const LOGOUT_URI: &str = "http://app.test/bye";

/// A provider behind a real HTTP server.
pub struct TestProvider {
    pub addr: SocketAddr,
    pub issuer: String,
    pub key_pem: String,
    pub provider: Arc<Provider>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestProvider {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A cheap argon2id hash (tests need not pay production cost).
pub fn hash(password: &str) -> String {
    let params = argon2::Params::new(1024, 1, 1, None).unwrap();
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
    argon
        .hash_password(password.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

/// The standard test config: one confidential client ("app"), one public
/// client ("spa"), one client without PKCE requirement ("legacy"), one
/// machine client ("machine"), and alice.
pub fn config(issuer: &str, key_pem: &str) -> OidcProviderConfig {
    // The same camelCase shape as the YAML reference config.
    let value = serde_json::json!({
        "issuer": issuer,
        "signingKeys": [{"id": "test-key", "algorithm": "ES256", "privateKey": key_pem}],
        "tokens": {
            "authorizationCodeTtl": "60s",
            "accessTokenTtl": "10m",
            "idTokenTtl": "10m",
            "refreshTokenTtl": "1h",
        },
        "clients": [
            {
                "clientId": "app",
                "clientSecret": CLIENT_SECRET,
                "redirectUris": [REDIRECT_URI],
                "postLogoutRedirectUris": [LOGOUT_URI],
            },
            {"clientId": "spa", "redirectUris": ["http://spa.test/cb"]},
            {
                "clientId": "legacy",
                "clientSecret": "legacy-secret",
                "requirePkce": false,
                "redirectUris": ["http://legacy.test/cb"],
            },
            {"clientId": "machine", "clientSecret": "machine-secret", "grantTypes": ["client_credentials"]},
        ],
        "users": [{
            "username": "alice",
            "passwordHash": hash(PASSWORD),
            "claims": {
                "email": "alice@example.com",
                "name": "Alice Example",
                "groups": ["engineering", "admins"],
            },
        }],
        "loginThrottle": {"maxFailuresPerUser": 3, "maxFailuresPerIp": 50, "window": "5m"},
    });
    serde_json::from_value(value).unwrap()
}

pub fn memory_cache() -> Arc<dyn Cache> {
    Arc::new(MemoryCache::new(&Default::default()))
}

impl TestProvider {
    /// A provider over `cache` with the standard config, edited by `edit`.
    pub async fn start(cache: Arc<dyn Cache>, edit: impl FnOnce(&mut OidcProviderConfig)) -> Self {
        let key_pem = orchestrator_oidc::keys::generate_pem(SigningAlgorithm::ES256).unwrap();
        Self::start_with(cache, CacheBackend::Memory, &key_pem, None, edit).await
    }

    /// Full control: backend, key, and an issuer to share with another replica.
    pub async fn start_with(
        cache: Arc<dyn Cache>,
        backend: CacheBackend,
        key_pem: &str,
        issuer: Option<&str>,
        edit: impl FnOnce(&mut OidcProviderConfig),
    ) -> Self {
        install_crypto();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let issuer = issuer
            .map(str::to_owned)
            .unwrap_or_else(|| format!("http://127.0.0.1:{}/idp", addr.port()));
        let mut cfg = config(&issuer, key_pem);
        edit(&mut cfg);
        let listen = ListenConfig {
            max_body_bytes: 16 * 1024,
            ..ListenConfig::default()
        };
        let metrics = Arc::new(ProviderMetrics::new(&prometheus::Registry::new()).unwrap());
        let provider = Arc::new(Provider::new(&cfg, backend, &listen, cache, metrics).unwrap());
        let served = provider.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    continue;
                };
                let provider = served.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let provider = provider.clone();
                            async move {
                                let host = req
                                    .headers()
                                    .get(hyper::header::HOST)
                                    .and_then(|h| h.to_str().ok())
                                    .map(str::to_owned);
                                if !provider.matches(host.as_deref(), req.uri().path()) {
                                    let mut resp = hyper::Response::new(orchestrator_oidc_empty());
                                    *resp.status_mut() = hyper::StatusCode::IM_A_TEAPOT;
                                    return Ok::<_, Infallible>(resp);
                                }
                                Ok::<_, Infallible>(provider.handle(req, peer, false).await)
                            }
                        },
                    );
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
                });
            }
        });
        Self {
            addr,
            issuer,
            key_pem: key_pem.to_owned(),
            provider,
            server,
        }
    }

    /// `http://127.0.0.1:<port>/idp<sub>` on *this* server (the issuer may name another).
    pub fn url(&self, sub: &str) -> String {
        format!("http://{}/idp{sub}", self.addr)
    }
}

fn orchestrator_oidc_empty() -> orchestrator_oidc::BoxBody {
    use http_body_util::BodyExt as _;
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed()
}

/// A browser: keeps cookies, does not follow redirects (we read them).
pub fn browser() -> reqwest::Client {
    install_crypto();
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A PKCE pair (verifier, S256 challenge).
pub fn pkce() -> (String, String) {
    let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// The query of an authorization request for `app` with PKCE.
pub fn auth_query(challenge: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut q: Vec<(String, String)> = vec![
        ("response_type".into(), "code".into()),
        ("client_id".into(), "app".into()),
        ("redirect_uri".into(), REDIRECT_URI.into()),
        ("scope".into(), "openid profile email groups".into()),
        ("state".into(), "st-123".into()),
        ("nonce".into(), "n-456".into()),
        ("code_challenge".into(), challenge.into()),
        ("code_challenge_method".into(), "S256".into()),
    ];
    for (k, v) in extra {
        q.retain(|(name, _)| name != k);
        if !v.is_empty() {
            q.push(((*k).into(), (*v).into()));
        }
    }
    q
}

/// Value of hidden input `name` in a login page.
pub fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in page: {html}"))
        + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_owned()
}

/// Query parameters of a redirect's Location.
pub fn location_params(
    resp: &reqwest::Response,
) -> (String, std::collections::HashMap<String, String>) {
    assert_eq!(resp.status(), 302, "expected a redirect");
    let loc = resp.headers()["location"].to_str().unwrap().to_owned();
    let url = url::Url::parse(&loc).unwrap();
    let params = url.query_pairs().into_owned().collect();
    (loc, params)
}

/// GET authorize, expecting the login page; returns (tx, csrf).
pub async fn open_login(
    browser: &reqwest::Client,
    tp: &TestProvider,
    query: &[(String, String)],
) -> (String, String) {
    let resp = browser
        .get(tp.url("/authorize"))
        .query(query)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let html = resp.text().await.unwrap();
    assert!(html.contains("<form method=\"post\""));
    (hidden(&html, "tx"), hidden(&html, "csrf"))
}

/// POST the login form.
pub async fn submit_login(
    browser: &reqwest::Client,
    tp: &TestProvider,
    tx: &str,
    csrf: &str,
    user: &str,
    password: &str,
) -> reqwest::Response {
    browser
        .post(tp.url("/login"))
        .form(&[
            ("tx", tx),
            ("csrf", csrf),
            ("username", user),
            ("password", password),
        ])
        .send()
        .await
        .unwrap()
}

/// The whole browser leg: authorize → login → code. Returns the code.
pub async fn login_for_code(
    browser: &reqwest::Client,
    tp: &TestProvider,
    query: &[(String, String)],
) -> String {
    let (tx, csrf) = open_login(browser, tp, query).await;
    let resp = submit_login(browser, tp, &tx, &csrf, "alice", PASSWORD).await;
    let (_, params) = location_params(&resp);
    params
        .get("code")
        .cloned()
        .unwrap_or_else(|| panic!("no code: {params:?}"))
}

/// A code-for-tokens exchange with `client_secret_basic`.
pub async fn exchange(
    http: &reqwest::Client,
    tp: &TestProvider,
    code: &str,
    verifier: &str,
) -> reqwest::Response {
    http.post(tp.url("/token"))
        .basic_auth("app", Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap()
}

/// Asserts an RFC 6749 §5.2 error body with `code` and returns the status.
pub async fn expect_error(resp: reqwest::Response, code: &str) -> u16 {
    let status = resp.status().as_u16();
    assert_eq!(
        resp.headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap()),
        Some("no-store")
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], code, "body: {body}");
    status
}
