//! Test fixtures: a provider served by hyper on 127.0.0.1:0, a browser-like
//! client with a cookie jar, and helpers that walk the login flow.

#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use orchestrator_http::ConnInfo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use argon2::password_hash::{PasswordHasher as _, SaltString};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
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
    pub registry: prometheus::Registry,
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
        let registry = prometheus::Registry::new();
        let metrics = Arc::new(ProviderMetrics::new(&registry).unwrap());
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
                                Ok::<_, Infallible>(
                                    provider.handle(req, ConnInfo::plain(peer)).await,
                                )
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
            registry,
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

/// POSTs `fields` as a form to the provider's `path`; any client
/// authentication is in the fields (`client_secret_post`) or absent.
pub async fn post_form(
    tp: &TestProvider,
    path: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    reqwest::Client::new()
        .post(tp.url(path))
        .form(fields)
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

/// Verifies an ID token with a key built from the JWKS the provider serves.
pub async fn verify_id_token(
    http: &reqwest::Client,
    tp: &TestProvider,
    id_token: &str,
    aud: &str,
) -> Value {
    let discovery: Value = http
        .get(tp.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwks_uri = discovery["jwks_uri"].as_str().unwrap();
    // The discovery document names the issuer's host; fetch from this server.
    assert!(jwks_uri.ends_with("/idp/jwks"));
    let jwks: JwkSet = http
        .get(tp.url("/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(id_token).unwrap();
    let advertised = discovery["id_token_signing_alg_values_supported"]
        .as_array()
        .unwrap();
    let alg_name = serde_json::to_value(header.alg).unwrap();
    assert!(advertised.contains(&alg_name), "{alg_name} not advertised");
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("kid published in JWKS");
    let key = DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[aud]);
    validation.set_issuer(&[tp.issuer.as_str()]);
    jsonwebtoken::decode::<Value>(id_token, &key, &validation)
        .unwrap()
        .claims
}

/// discovery → authorize → login form → code → token → userinfo → refresh →
/// introspect → revoke → logout, as a browser and a client would.
pub async fn walk_full_flow(tp: &TestProvider) {
    let browser = browser();
    let http = reqwest::Client::new();

    // Discovery.
    let resp = http
        .get(tp.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let d: Value = resp.json().await.unwrap();
    assert_eq!(d["issuer"], tp.issuer.as_str());
    for key in [
        "authorization_endpoint",
        "token_endpoint",
        "userinfo_endpoint",
        "jwks_uri",
        "introspection_endpoint",
        "revocation_endpoint",
        "end_session_endpoint",
    ] {
        assert!(d[key].as_str().unwrap().starts_with(&tp.issuer), "{key}");
    }
    assert_eq!(d["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(
        d["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(
        d["id_token_signing_alg_values_supported"],
        serde_json::json!(["ES256"])
    );
    assert_eq!(d["request_parameter_supported"], false);
    let auth_methods = d["token_endpoint_auth_methods_supported"]
        .as_array()
        .unwrap();
    assert!(auth_methods.contains(&"client_secret_basic".into()));
    assert!(
        auth_methods.contains(&"none".into()),
        "a public client is configured"
    );

    // Authorize → login page → code.
    let (verifier, challenge) = pkce();
    let query = auth_query(&challenge, &[]);
    let (tx, csrf) = open_login(&browser, tp, &query).await;
    let resp = submit_login(&browser, tp, &tx, &csrf, "alice", PASSWORD).await;
    let set_cookie: Vec<String> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let session_cookie = set_cookie
        .iter()
        .find(|c| c.starts_with("oidc_session="))
        .unwrap();
    assert!(session_cookie.contains("HttpOnly"));
    assert!(session_cookie.contains("SameSite=Lax"));
    assert!(session_cookie.contains("Path=/idp"));
    assert!(!session_cookie.contains("Secure"), "plain HTTP here");
    let (location, params) = location_params(&resp);
    assert!(location.starts_with(REDIRECT_URI));
    assert_eq!(params["state"], "st-123");
    assert_eq!(params["iss"], tp.issuer.as_str());
    let code = params["code"].clone();

    // Code → tokens.
    let resp = exchange(&http, tp, &code, &verifier).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let tokens: Value = resp.json().await.unwrap();
    assert_eq!(tokens["token_type"], "Bearer");
    assert!(tokens["expires_in"].as_u64().unwrap() > 500);
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let id_token = tokens["id_token"].as_str().unwrap();

    // The ID token, verified with the published JWKS only.
    let claims = verify_id_token(&http, tp, id_token, "app").await;
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["nonce"], "n-456");
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(
        claims["groups"],
        serde_json::json!(["engineering", "admins"])
    );
    assert!(claims["auth_time"].as_u64().is_some());
    assert!(claims["sid"].as_str().is_some());
    let digest = Sha256::digest(access.as_bytes());
    use base64::Engine as _;
    let expected_at_hash = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16]);
    assert_eq!(claims["at_hash"], expected_at_hash.as_str());
    // The access token is an RFC 9068 JWT.
    let at_header = jsonwebtoken::decode_header(access).unwrap();
    assert_eq!(at_header.typ.as_deref(), Some("at+jwt"));

    // Userinfo.
    let resp = http
        .get(tp.url("/userinfo"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let info: Value = resp.json().await.unwrap();
    assert_eq!(info["sub"], "alice");
    assert_eq!(info["name"], "Alice Example");
    assert_eq!(info["preferred_username"], "alice");

    // Refresh: rotation.
    let resp = http
        .post(tp.url("/token"))
        .basic_auth("app", Some(CLIENT_SECRET))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let refreshed: Value = resp.json().await.unwrap();
    let refresh2 = refreshed["refresh_token"].as_str().unwrap();
    assert_ne!(refresh2, refresh);
    let access2 = refreshed["access_token"].as_str().unwrap();
    let id2 = verify_id_token(&http, tp, refreshed["id_token"].as_str().unwrap(), "app").await;
    assert_eq!(id2["sid"], claims["sid"]);

    // Introspection (client_secret_post this time).
    let introspect = |token: String| {
        let http = http.clone();
        let url = tp.url("/introspect");
        async move {
            let resp = http
                .post(url)
                .form(&[
                    ("token", token.as_str()),
                    ("client_id", "app"),
                    ("client_secret", CLIENT_SECRET),
                ])
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            resp.json::<Value>().await.unwrap()
        }
    };
    let i = introspect(access2.to_owned()).await;
    assert_eq!(i["active"], true);
    assert_eq!(i["client_id"], "app");
    assert_eq!(i["sub"], "alice");
    let i = introspect(refresh2.to_owned()).await;
    assert_eq!(i["active"], true);
    assert_eq!(i["token_type"], "refresh_token");
    assert_eq!(
        introspect(refresh.to_owned()).await["active"],
        false,
        "rotated away"
    );

    // Revoke the access token, then the refresh token.
    let revoke = |token: String| {
        let http = http.clone();
        let url = tp.url("/revoke");
        async move {
            let resp = http
                .post(url)
                .basic_auth("app", Some(CLIENT_SECRET))
                .form(&[("token", token.as_str())])
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
        }
    };
    revoke(access2.to_owned()).await;
    assert_eq!(introspect(access2.to_owned()).await["active"], false);
    let resp = http
        .get(tp.url("/userinfo"))
        .bearer_auth(access2)
        .send()
        .await
        .unwrap();
    assert_eq!(expect_error(resp, "invalid_token").await, 401);
    revoke(refresh2.to_owned()).await;
    assert_eq!(introspect(refresh2.to_owned()).await["active"], false);

    // SSO: a second authorization needs no login.
    let (_, challenge) = pkce();
    let resp = browser
        .get(tp.url("/authorize"))
        .query(&auth_query(&challenge, &[("prompt", "none")]))
        .send()
        .await
        .unwrap();
    let (_, params) = location_params(&resp);
    assert!(
        params.contains_key("code"),
        "SSO session reused: {params:?}"
    );

    // Logout with id_token_hint and a registered post-logout URI.
    let resp = browser
        .get(tp.url("/end_session"))
        .query(&[
            ("id_token_hint", id_token),
            ("post_logout_redirect_uri", LOGOUT_URI),
            ("state", "bye-1"),
        ])
        .send()
        .await
        .unwrap();
    let (location, params) = location_params(&resp);
    assert!(location.starts_with(LOGOUT_URI));
    assert_eq!(params["state"], "bye-1");

    // The session is gone: prompt=none now says login_required.
    let resp = browser
        .get(tp.url("/authorize"))
        .query(&auth_query(&challenge, &[("prompt", "none")]))
        .send()
        .await
        .unwrap();
    let (_, params) = location_params(&resp);
    assert_eq!(params["error"], "login_required");
    assert_eq!(params["state"], "st-123");
}

/// Signs out at `end_session_url` without an `id_token_hint`, as a person
/// would: the confirmation page, then its form. The form's answer.
pub async fn sign_out_confirmed(
    browser: &reqwest::Client,
    end_session_url: &str,
) -> reqwest::Response {
    let page = browser
        .get(end_session_url)
        .send()
        .await
        .expect("end_session");
    assert_eq!(page.status(), 200, "the confirmation page");
    let html = page.text().await.expect("page");
    let token = hidden(&html, "token");
    browser
        .post(end_session_url)
        .form(&[("token", token)])
        .send()
        .await
        .expect("confirmation")
}
