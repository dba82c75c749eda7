//! One test per bad-input case of issue 4, each asserting the exact error
//! code the specs name, and that nothing answers 500.

// Test helpers panic on unexpected results by design.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

async fn authorize(
    browser: &reqwest::Client,
    tp: &TestProvider,
    query: &[(String, String)],
) -> reqwest::Response {
    browser
        .get(tp.url("/authorize"))
        .query(query)
        .send()
        .await
        .unwrap()
}

/// An authorize error that must be shown, not redirected.
async fn expect_page(resp: reqwest::Response, code: &str) {
    assert_eq!(resp.status(), 400);
    assert!(
        resp.headers().get("location").is_none(),
        "must not redirect"
    );
    let html = resp.text().await.unwrap();
    assert!(
        html.contains(&format!("<code id=\"error\">{code}</code>")),
        "{html}"
    );
}

/// An authorize error sent back to the client's redirect URI.
fn expect_redirect_error(resp: &reqwest::Response, code: &str) {
    let (location, params) = location_params(resp);
    assert!(location.starts_with(REDIRECT_URI), "{location}");
    assert_eq!(params["error"], code, "{params:?}");
    assert_eq!(params["state"], "st-123");
}

/// Logs in and redeems once; returns (code, tokens).
async fn tokens(tp: &TestProvider) -> (String, Value) {
    let browser = browser();
    let (verifier, challenge) = pkce();
    let code = login_for_code(&browser, tp, &auth_query(&challenge, &[])).await;
    let resp = exchange(&reqwest::Client::new(), tp, &code, &verifier).await;
    assert_eq!(resp.status(), 200);
    (code, resp.json().await.unwrap())
}

async fn userinfo(tp: &TestProvider, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(tp.url("/userinfo"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn token_request(tp: &TestProvider, form: &[(&str, &str)]) -> reqwest::Response {
    reqwest::Client::new()
        .post(tp.url("/token"))
        .basic_auth("app", Some(CLIENT_SECRET))
        .form(form)
        .send()
        .await
        .unwrap()
}

// --- clients ---

#[tokio::test]
async fn unknown_client_at_authorize_gets_an_error_page() {
    let tp = TestProvider::start(memory_cache(), |_| {}).await;
    let (_, challenge) = pkce();
    let resp = authorize(
        &browser(),
        &tp,
        &auth_query(&challenge, &[("client_id", "nobody")]),
    )
    .await;
    expect_page(resp, "invalid_client").await;
}

#[tokio::test]
async fn unknown_client_at_token_is_invalid_client() {
    let tp = TestProvider::start(memory_cache(), |_| {}).await;
    let resp = reqwest::Client::new()
        .post(tp.url("/token"))
        .basic_auth("nobody", Some("x"))
        .form(&[("grant_type", "authorization_code"), ("code", "x")])
        .send()
        .await
        .unwrap();
    assert!(resp.headers().contains_key("www-authenticate"));
    assert_eq!(expect_error(resp, "invalid_client").await, 401);
}

#[tokio::test]
async fn wrong_secret_is_invalid_client() {
    let tp = TestProvider::start(memory_cache(), |_| {}).await;
    for secret in [
        "wrong",
        "s3cret-of-the-demo-clien",
        "s3cret-of-the-demo-client!",
    ] {
        let resp = reqwest::Client::new()
            .post(tp.url("/token"))
            .basic_auth("app", Some(secret))
            .form(&[("grant_type", "authorization_code"), ("code", "x")])
            .send()
            .await
            .unwrap();
        assert_eq!(expect_error(resp, "invalid_client").await, 401);
    }
    // Same through client_secret_post, and a confidential client without any secret.
    let resp = post_form(
        &tp,
        "/introspect",
        &[
            ("token", "x"),
            ("client_id", "app"),
            ("client_secret", "wrong"),
        ],
    )
    .await;
    assert_eq!(expect_error(resp, "invalid_client").await, 401);
    let resp = post_form(
        &tp,
        "/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", "x"),
            ("client_id", "app"),
        ],
    )
    .await;
    assert_eq!(expect_error(resp, "invalid_client").await, 401);
}

// --- redirect URIs ---

#[tokio::test]
async fn redirect_uri_near_misses_get_an_error_page_never_a_redirect() {
    let tp = TestProvider::start(memory_cache(), |_| {}).await;
    let browser = browser();
    let (_, challenge) = pkce();
    for uri in [
        "http://app.test/callback/",          // trailing slash
        "http://APP.test/callback",           // case
        "http://app.test/Callback",           // case in path
        "http://app.test:8080/callback",      // port
        "http://app.test/callback?x=1",       // query
        "http://app.test/callback#frag",      // fragment
        "http://app.test@evil.test/callback", // userinfo trick
        "http://evil.test/#http://app.test/callback",
        "http://app.test/callback/../evil",
    ] {
        let resp = authorize(
            &browser,
            &tp,
            &auth_query(&challenge, &[("redirect_uri", uri)]),
        )
        .await;
        expect_page(resp, "invalid_request").await;
    }
    let resp = authorize(
        &browser,
        &tp,
        &auth_query(&challenge, &[("redirect_uri", "")]),
    )
    .await;
    expect_page(resp, "invalid_request").await;
}

// --- PKCE ---

#[tokio::test]
async fn missing_pkce_is_invalid_request() {
    let tp = TestProvider::start(memory_cache(), |_| {}).await;
    let q = auth_query("", &[("code_challenge", ""), ("code_challenge_method", "")]);
    expect_redirect_error(&authorize(&browser(), &tp, &q).await, "invalid_request");
}

#[tokio::test]
async fn plain_pkce_is_refused() {
    let tp = TestProvider::start(memory_cache(), |_| {}).await;
    let (verifier, _) = pkce();
    let q = auth_query(&verifier, &[("code_challenge_method", "plain")]);
    expect_redirect_error(&authorize(&browser(), &tp, &q).await, "invalid_request");
    // A challenge without a method defaults to plain (RFC 7636 §4.3): refused too.
    let q = auth_query(&verifier, &[("code_challenge_method", "")]);
    expect_redirect_error(&authorize(&browser(), &tp, &q).await, "invalid_request");
}

#[tokio::test]
async fn missing_verifier_is_invalid_grant() {
    let tp = TestProvider::start(memory_cache(), |_| {}).await;
    let (_, challenge) = pkce();
    let code = login_for_code(&browser(), &tp, &auth_query(&challenge, &[])).await;
    let resp = token_request(
        &tp,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT_URI),
        ],
    )
    .await;
    assert_eq!(expect_error(resp, "invalid_grant").await, 400);
}

#[tokio::test]
async fn wrong_verifier_is_invalid_grant() {
    let tp = TestProvider::start(memory_cache(), |_| {}).await;
    let (_, challenge) = pkce();
    let (other_verifier, _) = pkce();
    let code = login_for_code(&browser(), &tp, &auth_query(&challenge, &[])).await;
    let resp = exchange(&reqwest::Client::new(), &tp, &code, &other_verifier).await;
    assert_eq!(expect_error(resp, "invalid_grant").await, 400);
}

#[tokio::test]
async fn extra_verifier_without_challenge_is_invalid_grant() {
    // "legacy" may skip PKCE; sending a verifier anyway is a downgrade sign.
    let tp = TestProvider::start(memory_cache(), |_| {}).await;
    let q = auth_query(
        "",
        &[
            ("client_id", "legacy"),
            ("redirect_uri", "http://legacy.test/cb"),
            ("code_challenge", ""),
            ("code_challenge_method", ""),
        ],
    );
    let code = login_for_code(&browser(), &tp, &q).await;
    let (verifier, _) = pkce();
    let resp = reqwest::Client::new()
        .post(tp.url("/token"))
        .basic_auth("legacy", Some("legacy-secret"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", "http://legacy.test/cb"),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(expect_error(resp, "invalid_grant").await, 400);
}

// --- codes ---

#[tokio::test]
async fn replayed_code_fails_and_revokes_what_the_first_use_issued() {
    let tp = TestProvider::start(memory_cache(), |_| {}).await;
    let browser = browser();
    let (verifier, challenge) = pkce();
    let code = login_for_code(&browser, &tp, &auth_query(&challenge, &[])).await;
    let http = reqwest::Client::new();
    let first: Value = exchange(&http, &tp, &code, &verifier)
        .await
        .json()
        .await
        .unwrap();
    let access = first["access_token"].as_str().unwrap();
    let refresh = first["refresh_token"].as_str().unwrap();
    assert_eq!(userinfo(&tp, access).await.status(), 200);

    let resp = exchange(&http, &tp, &code, &verifier).await;
    assert_eq!(expect_error(resp, "invalid_grant").await, 400);

    assert_eq!(
        expect_error(userinfo(&tp, access).await, "invalid_token").await,
        401
    );
    let resp = token_request(
        &tp,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
    )
    .await;
    assert_eq!(expect_error(resp, "invalid_grant").await, 400);
}

#[tokio::test]
async fn expired_code_is_invalid_grant() {
    let tp = TestProvider::start(memory_cache(), |cfg| {
        cfg.tokens.authorization_code_ttl = Duration::from_secs(1);
    })
    .await;
    let (verifier, challenge) = pkce();
    let code = login_for_code(&browser(), &tp, &auth_query(&challenge, &[])).await;
    // Expiry is the behaviour under test: let the code's lifetime pass.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let resp = exchange(&reqwest::Client::new(), &tp, &code, &verifier).await;
    assert_eq!(expect_error(resp, "invalid_grant").await, 400);
}

#[tokio::test]
async fn code_issued_to_another_client_is_invalid_grant() {
    let tp = TestProvider::start(memory_cache(), |_| {}).await;
    let (verifier, challenge) = pkce();
    let code = login_for_code(&browser(), &tp, &auth_query(&challenge, &[])).await;
    let resp = reqwest::Client::new()
        .post(tp.url("/token"))
        .basic_auth("legacy", Some("legacy-secret"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(expect_error(resp, "invalid_grant").await, 400);
}

#[tokio::test]
async fn redirect_uri_mismatch_at_token_is_invalid_grant() {
    let tp = TestProvider::start(memory_cache(), |_| {}).await;
    let (verifier, challenge) = pkce();
    let code = login_for_code(&browser(), &tp, &auth_query(&challenge, &[])).await;
    let resp = token_request(
        &tp,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://app.test/callback/"),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(expect_error(resp, "invalid_grant").await, 400);
}

#[tokio::test]
async fn unknown_code_is_invalid_grant() {
    let tp = TestProvider::start(memory_cache(), |_| {}).await;
    let (verifier, _) = pkce();
    let resp = exchange(&reqwest::Client::new(), &tp, "made-up-code", &verifier).await;
    assert_eq!(expect_error(resp, "invalid_grant").await, 400);
}

// --- refresh tokens ---

#[tokio::test]
async fn reused_refresh_token_revokes_the_family() {
    let tp = TestProvider::start(memory_cache(), |_| {}).await;
    let (_, first) = tokens(&tp).await;
    let rt1 = first["refresh_token"].as_str().unwrap();
    let second: Value = token_request(
        &tp,
        &[("grant_type", "refresh_token"), ("refresh_token", rt1)],
    )
    .await
    .json()
    .await
    .unwrap();
    let rt2 = second["refresh_token"].as_str().unwrap();
    let access2 = second["access_token"].as_str().unwrap();

    // rt1 again: reuse. Fails, and rt2 (the legitimate successor) dies too.
    let resp = token_request(
        &tp,
        &[("grant_type", "refresh_token"), ("refresh_token", rt1)],
    )
    .await;
    assert_eq!(expect_error(resp, "invalid_grant").await, 400);
    let resp = token_request(
        &tp,
        &[("grant_type", "refresh_token"), ("refresh_token", rt2)],
    )
    .await;
    assert_eq!(expect_error(resp, "invalid_grant").await, 400);
    assert_eq!(
        expect_error(userinfo(&tp, access2).await, "invalid_token").await,
        401
    );
}

#[tokio::test]
async fn rotation_never_outlives_the_refresh_token_ttl() {
    let tp = TestProvider::start(memory_cache(), |cfg| {
        cfg.tokens.refresh_token_ttl = std::time::Duration::from_secs(2);
    })
    .await;
    let started = std::time::Instant::now();
    let (_, first) = tokens(&tp).await;
    let mut refresh = first["refresh_token"].as_str().unwrap().to_owned();
    // Rotate as often as the provider allows; each rotation must not extend the grant.
    let mut rotations = 0;
    loop {
        let resp = token_request(
            &tp,
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        )
        .await;
        if resp.status() != 200 {
            assert_eq!(expect_error(resp, "invalid_grant").await, 400);
            break;
        }
        let body: Value = resp.json().await.unwrap();
        refresh = body["refresh_token"].as_str().unwrap().to_owned();
        rotations += 1;
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "rotations kept the grant alive past refreshTokenTtl ({rotations} rotations)"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(rotations >= 1, "refresh worked within its lifetime");
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
}

#[tokio::test]
async fn refresh_cannot_widen_scope() {
    let tp = TestProvider::start(memory_cache(), |cfg| {
        cfg.clients[0].allowed_scopes = vec![
            "openid".into(),
            "email".into(),
            "profile".into(),
            "groups".into(),
            "phone".into(),
        ];
    })
    .await;
    let (_, first) = tokens(&tp).await;
    let rt = first["refresh_token"].as_str().unwrap();
    let resp = token_request(
        &tp,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("scope", "openid phone"),
        ],
    )
    .await;
    assert_eq!(expect_error(resp, "invalid_scope").await, 400);
}

// --- tokens at userinfo ---

fn forge(tp: &TestProvider, header: Header, claims: &Value) -> String {
    let key = EncodingKey::from_ec_pem(tp.key_pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn access_claims(tp: &TestProvider) -> Value {
    let now = jsonwebtoken::get_current_timestamp();
    json!({
        "iss": tp.issuer, "sub": "alice", "aud": "app", "client_id": "app",
        "exp": now + 600, "iat": now, "jti": "forged-1", "scope": "openid profile",
        "username": "alice",
    })
}

fn at_header() -> Header {
    let mut h = Header::new(Algorithm::ES256);
    h.typ = Some("at+jwt".into());
    h.kid = Some("test-key".into());
    h
}

#[tokio::test]
async fn a_token_signed_like_ours_is_accepted_at_userinfo() {
    // The control for the forgeries below: the same recipe with our key works
    // when it names a live grant (taken from a real token of alice's).
    let tp = TestProvider::start(memory_cache(), |_| {}).await;
    let (_, t) = tokens(&tp).await;
    let real = t["access_token"].as_str().unwrap();
    let mut claims = access_claims(&tp);
    claims["gid"] = payload(real)["gid"].clone();
    let token = forge(&tp, at_header(), &claims);
    assert_eq!(userinfo(&tp, &token).await.status(), 200);
    // Without a grant, even a perfectly signed token is refused (fail closed).
    let token = forge(&tp, at_header(), &access_claims(&tp));
    assert_eq!(
        expect_error(userinfo(&tp, &token).await, "invalid_token").await,
        401
    );
}

fn payload(token: &str) -> Value {
    use base64::Engine as _;
    let part = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn alg_none_token_is_invalid_token() {
    use base64::Engine as _;
    let b64 = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    };
    let tp = TestProvider::start(memory_cache(), |_| {}).await;
    for header in [
        json!({"alg": "none", "typ": "at+jwt", "kid": "test-key"}),
        json!({"alg": "none", "typ": "at+jwt"}),
    ] {
        let token = format!("{}.{}.", b64(&header), b64(&access_claims(&tp)));
        assert_eq!(
            expect_error(userinfo(&tp, &token).await, "invalid_token").await,
            401
        );
    }
}

#[tokio::test]
async fn hs256_token_is_invalid_token() {
    let tp = TestProvider::start(memory_cache(), |_| {}).await;
    // The classic confusion attack: HMAC keyed with the public JWK.
    let jwks: Value = reqwest::get(tp.url("/jwks"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = serde_json::to_vec(&jwks["keys"][0]).unwrap();
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    header.kid = Some("test-key".into());
    let token = jsonwebtoken::encode(
        &header,
        &access_claims(&tp),
        &EncodingKey::from_secret(&secret),
    )
    .unwrap();
    assert_eq!(
        expect_error(userinfo(&tp, &token).await, "invalid_token").await,
        401
    );
}

#[tokio::test]
async fn expired_token_is_invalid_token() {
    let tp = TestProvider::start(memory_cache(), |_| {}).await;
    let mut claims = access_claims(&tp);
    let now = jsonwebtoken::get_current_timestamp();
    claims["exp"] = json!(now - 5);
    claims["iat"] = json!(now - 700);
    let token = forge(&tp, at_header(), &claims);
    let resp = userinfo(&tp, &token).await;
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert_eq!(expect_error(resp, "invalid_token").await, 401);
}

#[tokio::test]
async fn foreign_issuer_token_is_invalid_token() {
    let tp = TestProvider::start(memory_cache(), |_| {}).await;
    let mut claims = access_claims(&tp);
    claims["iss"] = json!("https://evil.test/idp");
    let token = forge(&tp, at_header(), &claims);
    assert_eq!(
        expect_error(userinfo(&tp, &token).await, "invalid_token").await,
        401
    );
}

#[tokio::test]
async fn tampered_token_is_invalid_token() {
    let tp = TestProvider::start(memory_cache(), |_| {}).await;
    let (_, t) = tokens(&tp).await;
    let access = t["access_token"].as_str().unwrap();
    let parts: Vec<&str> = access.split('.').collect();
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value = serde_json::from_slice(&engine.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = json!("mallory");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        engine.encode(serde_json::to_vec(&claims).unwrap()),
        parts[2]
    );
    assert_eq!(
        expect_error(userinfo(&tp, &tampered).await, "invalid_token").await,
        401
    );
    // An ID token is not an access token.
    let id_token = t["id_token"].as_str().unwrap();
    assert_eq!(
        expect_error(userinfo(&tp, id_token).await, "invalid_token").await,
        401
    );
    // Garbage.
    assert_eq!(
        expect_error(userinfo(&tp, "not.a.jwt").await, "invalid_token").await,
        401
    );
}

#[tokio::test]
async fn userinfo_without_token_gets_a_bare_challenge() {
    let tp = TestProvider::start(memory_cache(), |_| {}).await;
    let resp = reqwest::get(tp.url("/userinfo")).await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer realm=\"oidc\"");
}

// --- malformed requests ---

#[tokio::test]
async fn malformed_form_bodies_are_invalid_request() {
    let tp = TestProvider::start(memory_cache(), |_| {}).await;
    let http = reqwest::Client::new();
    let send = |body: &'static [u8], ctype: &'static str| {
        http.post(tp.url("/token"))
            .basic_auth("app", Some(CLIENT_SECRET))
            .header("content-type", ctype)
            .body(body)
            .send()
    };
    let form = "application/x-www-form-urlencoded";
    // Not a form at all.
    let resp = send(
        br#"{"grant_type":"authorization_code"}"#,
        "application/json",
    )
    .await
    .unwrap();
    assert_eq!(expect_error(resp, "invalid_request").await, 400);
    // Invalid UTF-8 after percent-decoding.
    let resp = send(b"grant_type=authorization_code&code=%ff%fe", form)
        .await
        .unwrap();
    assert_eq!(expect_error(resp, "invalid_request").await, 400);
    // Raw binary.
    let resp = send(b"\xff\xfe\x00\x01=\x80", form).await.unwrap();
    assert_eq!(expect_error(resp, "invalid_request").await, 400);
    // Repeated parameter.
    let resp = send(b"grant_type=authorization_code&code=a&code=b", form)
        .await
        .unwrap();
    assert_eq!(expect_error(resp, "invalid_request").await, 400);
    // Missing grant_type.
    let resp = send(b"code=a", form).await.unwrap();
    assert_eq!(expect_error(resp, "invalid_request").await, 400);
    // Missing code.
    let resp = send(b"grant_type=authorization_code", form).await.unwrap();
    assert_eq!(expect_error(resp, "invalid_request").await, 400);
}

#[tokio::test]
async fn oversized_parameters_are_invalid_request_and_bodies_413() {
    let tp = TestProvider::start(memory_cache(), |_| {}).await;
    let (_, challenge) = pkce();
    let big = "x".repeat(5000);
    let resp = authorize(&browser(), &tp, &auth_query(&challenge, &[("state", &big)])).await;
    expect_page(resp, "invalid_request").await;
    let resp = token_request(
        &tp,
        &[
            ("grant_type", "authorization_code"),
            ("code", "x"),
            ("redirect_uri", &big),
        ],
    )
    .await;
    assert_eq!(expect_error(resp, "invalid_request").await, 400);
    // Bigger than listen.maxBodyBytes (16 KiB in these tests).
    let huge = "y".repeat(20 * 1024);
    let resp = token_request(
        &tp,
        &[("grant_type", "authorization_code"), ("code", &huge)],
    )
    .await;
    assert_eq!(resp.status(), 413);
}

#[tokio::test]
async fn duplicate_authorize_parameters_are_invalid_request() {
    let tp = TestProvider::start(memory_cache(), |_| {}).await;
    let (_, challenge) = pkce();
    let mut q = auth_query(&challenge, &[]);
    q.push(("scope".into(), "openid".into()));
    expect_page(authorize(&browser(), &tp, &q).await, "invalid_request").await;
}

#[tokio::test]
async fn unsupported_grant_type() {
    let tp = TestProvider::start(memory_cache(), |_| {}).await;
    for grant in [
        "password",
        "implicit",
        "urn:ietf:params:oauth:grant-type:device_code",
    ] {
        let resp = token_request(&tp, &[("grant_type", grant)]).await;
        assert_eq!(expect_error(resp, "unsupported_grant_type").await, 400);
    }
    // Supported, but not for this client.
    let resp = token_request(&tp, &[("grant_type", "client_credentials")]).await;
    assert_eq!(expect_error(resp, "unauthorized_client").await, 400);
}

#[tokio::test]
async fn unsupported_response_type() {
    let tp = TestProvider::start(memory_cache(), |_| {}).await;
    let (_, challenge) = pkce();
    for rt in ["token", "id_token", "code id_token", "code token"] {
        let q = auth_query(&challenge, &[("response_type", rt)]);
        expect_redirect_error(
            &authorize(&browser(), &tp, &q).await,
            "unsupported_response_type",
        );
    }
    let q = auth_query(&challenge, &[("response_type", "")]);
    expect_redirect_error(&authorize(&browser(), &tp, &q).await, "invalid_request");
}

#[tokio::test]
async fn request_objects_unknown_scopes_and_bad_prompt_are_refused() {
    let tp = TestProvider::start(memory_cache(), |_| {}).await;
    let (_, challenge) = pkce();
    let b = browser();
    let q = auth_query(&challenge, &[("request", "eyJhbGciOiJub25lIn0.e30.")]);
    expect_redirect_error(&authorize(&b, &tp, &q).await, "request_not_supported");
    let q = auth_query(&challenge, &[("request_uri", "https://evil.test/r")]);
    expect_redirect_error(&authorize(&b, &tp, &q).await, "request_uri_not_supported");
    let q = auth_query(&challenge, &[("scope", "openid admin")]);
    expect_redirect_error(&authorize(&b, &tp, &q).await, "invalid_scope");
    let q = auth_query(&challenge, &[("prompt", "none login")]);
    expect_redirect_error(&authorize(&b, &tp, &q).await, "invalid_request");
    let q = auth_query(&challenge, &[("max_age", "-1")]);
    expect_redirect_error(&authorize(&b, &tp, &q).await, "invalid_request");
    let q = auth_query(&challenge, &[("response_mode", "fragment")]);
    expect_redirect_error(&authorize(&b, &tp, &q).await, "invalid_request");
}

// --- login page ---

#[tokio::test]
async fn bad_credentials_show_a_clear_message_and_throttle_per_user() {
    let tp = TestProvider::start(memory_cache(), |_| {}).await;
    let browser = browser();
    let (_, challenge) = pkce();
    let (tx, csrf) = open_login(&browser, &tp, &auth_query(&challenge, &[])).await;
    // maxFailuresPerUser is 3 in the test config.
    for _ in 0..3 {
        let resp = submit_login(&browser, &tp, &tx, &csrf, "alice", "wrong").await;
        assert_eq!(resp.status(), 401);
        assert!(
            resp.text()
                .await
                .unwrap()
                .contains("Incorrect username or password.")
        );
    }
    // Locked: even the right password is not checked now.
    let resp = submit_login(&browser, &tp, &tx, &csrf, "alice", PASSWORD).await;
    assert_eq!(resp.status(), 429);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("Too many failed sign-in attempts")
    );
    // An unknown user gets the same message as a wrong password.
    let resp = submit_login(&browser, &tp, &tx, &csrf, "mallory", "x").await;
    assert_eq!(resp.status(), 401);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("Incorrect username or password.")
    );
}

#[tokio::test]
async fn login_is_throttled_per_client_ip() {
    let tp = TestProvider::start(memory_cache(), |cfg| {
        cfg.login_throttle.max_failures_per_ip = 2;
    })
    .await;
    let browser = browser();
    let (_, challenge) = pkce();
    let (tx, csrf) = open_login(&browser, &tp, &auth_query(&challenge, &[])).await;
    for user in ["u1", "u2"] {
        assert_eq!(
            submit_login(&browser, &tp, &tx, &csrf, user, "x")
                .await
                .status(),
            401
        );
    }
    let resp = submit_login(&browser, &tp, &tx, &csrf, "alice", PASSWORD).await;
    assert_eq!(resp.status(), 429);
}

#[tokio::test]
async fn login_without_the_csrf_cookie_is_refused() {
    let tp = TestProvider::start(memory_cache(), |_| {}).await;
    let (_, challenge) = pkce();
    let (tx, csrf) = open_login(&browser(), &tp, &auth_query(&challenge, &[])).await;
    // Another browser (no cookie) posting the victim's form fields.
    let resp = submit_login(&browser(), &tp, &tx, &csrf, "alice", PASSWORD).await;
    expect_page(resp, "invalid_request").await;
    // The right cookie but a wrong form token.
    let b = browser();
    let (tx, _) = open_login(&b, &tp, &auth_query(&challenge, &[])).await;
    let resp = submit_login(&b, &tp, &tx, "forged", "alice", PASSWORD).await;
    expect_page(resp, "invalid_request").await;
}

#[tokio::test]
async fn login_hint_is_escaped_in_the_page() {
    let tp = TestProvider::start(memory_cache(), |_| {}).await;
    let (_, challenge) = pkce();
    let q = auth_query(
        &challenge,
        &[("login_hint", "\"><script>alert(1)</script>")],
    );
    let resp = authorize(&browser(), &tp, &q).await;
    assert_eq!(resp.status(), 200);
    let html = resp.text().await.unwrap();
    assert!(!html.contains("<script>"));
    assert!(html.contains("&quot;&gt;&lt;script&gt;"));
}

// --- logout ---

#[tokio::test]
async fn unregistered_post_logout_redirect_uri_is_refused() {
    let tp = TestProvider::start(memory_cache(), |_| {}).await;
    let resp = browser()
        .get(tp.url("/end_session"))
        .query(&[
            ("client_id", "app"),
            ("post_logout_redirect_uri", "http://evil.test/"),
        ])
        .send()
        .await
        .unwrap();
    expect_page(resp, "invalid_request").await;
    let resp = browser()
        .get(tp.url("/end_session"))
        .query(&[
            ("id_token_hint", "not-a-jwt"),
            ("post_logout_redirect_uri", LOGOUT_URI),
        ])
        .send()
        .await
        .unwrap();
    expect_page(resp, "invalid_request").await;
}
