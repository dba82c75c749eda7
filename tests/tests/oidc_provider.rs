//! The OpenID Provider through the real binary: a cookie-keeping client walks
//! discovery → authorize → login form → code → token → userinfo → refresh →
//! introspect → revoke → logout, with `cache.backend: memory` and with a real
//! redis-server; and two processes sharing one Redis behave as one provider.
//! ID tokens are verified with a key built from the served JWKS only.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use orchestrator_cache::testing::TestRedis;
use orchestrator_tests::{Orchestrator, run_cli};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

const CLIENT_SECRET: &str = "e2e-client-secret";
const REDIRECT_URI: &str = "http://app.test/callback";
const LOGOUT_URI: &str = "http://app.test/bye";

/// `{issuer}` is filled per test: replicas share one issuer.
const YAML: &str = r#"
oidcProvider:
  issuer: {issuer}
  signingKeys:
    - id: e2e-key
      algorithm: ES256
      privateKey: ${secret:op-key.pem}
  clients:
    - clientId: app
      clientSecret: ${secret:client-secret}
      redirectUris: [http://app.test/callback]
      postLogoutRedirectUris: [http://app.test/bye]
  users:
    - username: alice
      passwordHash: "${secret:alice-hash}"
      claims:
        email: alice@example.com
        name: Alice Example
        groups: [engineering]
"#;

struct Secrets {
    key: String,
    hash: String,
}

async fn secrets() -> Secrets {
    let key = run_cli(&["keys", "generate", "--algorithm", "ES256"], "").await;
    assert_eq!(key.code, Some(0), "{}", key.stderr);
    let hash = run_cli(&["hash-password"], "alice-password\n").await;
    assert_eq!(hash.code, Some(0), "{}", hash.stderr);
    Secrets {
        key: key.stdout,
        hash: hash.stdout.trim().to_owned(),
    }
}

async fn start(s: &Secrets, issuer: &str, cache_yaml: &str) -> Orchestrator {
    let yaml = format!("{cache_yaml}{}", YAML.replace("{issuer}", issuer));
    Orchestrator::start(
        &yaml,
        &[
            ("op-key.pem", s.key.as_str()),
            ("client-secret", CLIENT_SECRET),
            ("alice-hash", s.hash.as_str()),
        ],
    )
    .await
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn pkce() -> (String, String) {
    let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

fn auth_query(challenge: &str, prompt: Option<&str>) -> Vec<(&'static str, String)> {
    let mut q = vec![
        ("response_type", "code".to_owned()),
        ("client_id", "app".to_owned()),
        ("redirect_uri", REDIRECT_URI.to_owned()),
        ("scope", "openid profile email groups".to_owned()),
        ("state", "st-e2e".to_owned()),
        ("nonce", "n-e2e".to_owned()),
        ("code_challenge", challenge.to_owned()),
        ("code_challenge_method", "S256".to_owned()),
    ];
    if let Some(p) = prompt {
        q.push(("prompt", p.to_owned()));
    }
    q
}

fn redirect_params(resp: &reqwest::Response) -> HashMap<String, String> {
    assert_eq!(resp.status(), 302);
    let loc = resp.headers()["location"].to_str().unwrap();
    url::Url::parse(loc)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).expect("hidden field") + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

/// authorize → login form → code, at `base` (`http://127.0.0.1:<port>/idp`).
async fn login_for_code(browser: &reqwest::Client, base: &str, challenge: &str) -> String {
    let resp = browser
        .get(format!("{base}/authorize"))
        .query(&auth_query(challenge, None))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let html = resp.text().await.unwrap();
    assert!(html.contains("<form method=\"post\""));
    let resp = browser
        .post(format!("{base}/login"))
        .form(&[
            ("tx", hidden(&html, "tx").as_str()),
            ("csrf", &hidden(&html, "csrf")),
            ("username", "alice"),
            ("password", "alice-password"),
        ])
        .send()
        .await
        .unwrap();
    let params = redirect_params(&resp);
    assert_eq!(params["state"], "st-e2e");
    params["code"].clone()
}

async fn exchange(base: &str, code: &str, verifier: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}/token"))
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

async fn post_form(url: String, form: &[(&str, &str)]) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .basic_auth("app", Some(CLIENT_SECRET))
        .form(form)
        .send()
        .await
        .unwrap()
}

async fn error_code(resp: reqwest::Response) -> String {
    let body: Value = resp.json().await.unwrap();
    body["error"].as_str().unwrap_or_default().to_owned()
}

/// Verifies with the JWKS served at `base`, nothing else.
async fn verify_id_token(base: &str, issuer: &str, id_token: &str) -> Value {
    let jwks: JwkSet = reqwest::get(format!("{base}/jwks"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(id_token).unwrap();
    let key = DecodingKey::from_jwk(jwks.find(header.kid.as_deref().unwrap()).unwrap()).unwrap();
    let mut v = Validation::new(header.alg);
    v.set_audience(&["app"]);
    v.set_issuer(&[issuer]);
    jsonwebtoken::decode::<Value>(id_token, &key, &v)
        .unwrap()
        .claims
}

async fn walk(orch: &Orchestrator) {
    let base = format!("{}/idp", orch.base_url());
    let issuer = base.clone();
    let browser = browser();

    let d: Value = reqwest::get(format!("{base}/.well-known/openid-configuration"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d["issuer"], issuer.as_str());
    assert_eq!(d["token_endpoint"], format!("{issuer}/token"));

    let (verifier, challenge) = pkce();
    let code = login_for_code(&browser, &base, &challenge).await;
    let resp = exchange(&base, &code, &verifier).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let tokens: Value = resp.json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    let id_token = tokens["id_token"].as_str().unwrap();
    let claims = verify_id_token(&base, &issuer, id_token).await;
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["nonce"], "n-e2e");
    assert_eq!(claims["groups"], serde_json::json!(["engineering"]));

    let resp = reqwest::Client::new()
        .get(format!("{base}/userinfo"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let info: Value = resp.json().await.unwrap();
    assert_eq!(info["email"], "alice@example.com");

    let refresh = tokens["refresh_token"].as_str().unwrap();
    let resp = post_form(
        format!("{base}/token"),
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let refreshed: Value = resp.json().await.unwrap();
    let refresh2 = refreshed["refresh_token"].as_str().unwrap();

    let resp = post_form(format!("{base}/introspect"), &[("token", refresh2)]).await;
    let i: Value = resp.json().await.unwrap();
    assert_eq!(i["active"], true);

    let resp = post_form(format!("{base}/revoke"), &[("token", refresh2)]).await;
    assert_eq!(resp.status(), 200);
    let resp = post_form(format!("{base}/introspect"), &[("token", refresh2)]).await;
    assert_eq!(resp.json::<Value>().await.unwrap()["active"], false);

    let resp = browser
        .get(format!("{base}/end_session"))
        .query(&[
            ("id_token_hint", id_token),
            ("post_logout_redirect_uri", LOGOUT_URI),
            ("state", "bye"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(redirect_params(&resp)["state"], "bye");
    let resp = browser
        .get(format!("{base}/authorize"))
        .query(&auth_query(&challenge, Some("none")))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect_params(&resp)["error"], "login_required");
}

#[tokio::test]
async fn provider_flow_through_the_binary_with_memory() {
    let s = secrets().await;
    let orch = start(&s, "http://127.0.0.1:{port}/idp", "").await;
    walk(&orch).await;
}

#[tokio::test]
async fn provider_flow_through_the_binary_with_redis() {
    let redis = TestRedis::start();
    let s = secrets().await;
    let cache = format!(
        "cache:\n  backend: redis\n  redis:\n    url: {}\n",
        redis.url()
    );
    let orch = start(&s, "http://127.0.0.1:{port}/idp", &cache).await;
    walk(&orch).await;
}

#[tokio::test]
async fn two_processes_over_one_redis_are_one_provider() {
    let redis = TestRedis::start();
    let s = secrets().await;
    let cache = format!(
        "cache:\n  backend: redis\n  redis:\n    url: {}\n",
        redis.url()
    );
    let a = start(&s, "http://127.0.0.1:{port}/idp", &cache).await;
    let issuer = format!("{}/idp", a.base_url());
    // B answers for the same issuer (host match, port ignored), as a second
    // replica behind one Service would.
    let b = start(&s, &issuer, &cache).await;
    let base_a = issuer.clone();
    let base_b = format!("{}/idp", b.base_url());
    let browser = browser();

    // Code from A, redeemed at B once; the replay at A fails and revokes.
    let (verifier, challenge) = pkce();
    let code = login_for_code(&browser, &base_a, &challenge).await;
    let resp = exchange(&base_b, &code, &verifier).await;
    assert_eq!(resp.status(), 200);
    let tokens: Value = resp.json().await.unwrap();
    verify_id_token(&base_a, &issuer, tokens["id_token"].as_str().unwrap()).await;
    assert_eq!(
        error_code(exchange(&base_a, &code, &verifier).await).await,
        "invalid_grant"
    );
    let resp = reqwest::Client::new()
        .get(format!("{base_b}/userinfo"))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        401,
        "replay revoked the first tokens everywhere"
    );

    // SSO cookie from A honoured by B.
    let resp = browser
        .get(format!("{base_b}/authorize"))
        .query(&auth_query(&challenge, Some("none")))
        .send()
        .await
        .unwrap();
    let code = redirect_params(&resp)["code"].clone();
    // Refresh token from A works at B.
    let tokens: Value = exchange(&base_a, &code, &verifier)
        .await
        .json()
        .await
        .unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let resp = post_form(
        format!("{base_b}/token"),
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let rotated: Value = resp.json().await.unwrap();
    let refresh = rotated["refresh_token"].as_str().unwrap().to_owned();

    // Logout at B ends the session for A (confirmed: no id_token_hint).
    let page = browser
        .get(format!("{base_b}/end_session"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let token = orchestrator_tests::browser::hidden(&page.text().await.unwrap(), "token")
        .expect("the confirmation form");
    let resp = browser
        .post(format!("{base_b}/end_session"))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The refresh token of the ended session is refused, here and at A.
    let resp = post_form(
        format!("{base_a}/token"),
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("session"),
        "{body}"
    );
    let resp = browser
        .get(format!("{base_a}/authorize"))
        .query(&auth_query(&challenge, Some("none")))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect_params(&resp)["error"], "login_required");
}
