//! The whole flow walked as a browser and a client would, against a provider
//! served over HTTP on loopback with the memory cache.

// Test helpers panic on unexpected results by design.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use orchestrator_config::CacheBackend;
use orchestrator_oidc::{Provider, ProviderMetrics};
use serde_json::Value;

#[tokio::test]
async fn browser_walks_discovery_login_token_userinfo_refresh_introspect_revoke_logout() {
    let tp = TestProvider::start(memory_cache(), |_| {}).await;
    walk_full_flow(&tp).await;
}

#[tokio::test]
async fn redis_backend_requires_configured_keys() {
    let mut cfg = config("http://127.0.0.1:1/idp", "unused");
    cfg.signing_keys.clear();
    let metrics = std::sync::Arc::new(ProviderMetrics::new(&prometheus::Registry::new()).unwrap());
    let listen = orchestrator_config::ListenConfig::default();
    let err = Provider::new(
        &cfg,
        CacheBackend::Redis,
        &listen,
        memory_cache(),
        metrics.clone(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "oidcProvider.signingKeys: required with cache.backend redis"
    );
    // With memory a development key is generated (and published).
    let p = Provider::new(
        &cfg,
        CacheBackend::Memory,
        &listen,
        memory_cache(),
        metrics.clone(),
    )
    .unwrap();
    assert!(p.matches(Some("127.0.0.1:1"), "/idp/jwks"));
    assert!(!p.matches(Some("127.0.0.1:1"), "/idpx"));
    assert!(!p.matches(Some("other.test"), "/idp/jwks"));
    // A broken key names its entry and never echoes the key.
    let mut bad = config(
        "http://127.0.0.1:1/idp",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
    );
    bad.signing_keys[0].id = "k9".into();
    let err =
        Provider::new(&bad, CacheBackend::Memory, &listen, memory_cache(), metrics).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("oidcProvider.signingKeys[0] (k9):"),
        "{msg}"
    );
    assert!(!msg.contains("AAAA"));
}

#[tokio::test]
async fn public_client_uses_pkce_without_secret() {
    let tp = TestProvider::start(memory_cache(), |_| {}).await;
    let browser = browser();
    let (verifier, challenge) = pkce();
    let query = auth_query(
        &challenge,
        &[("client_id", "spa"), ("redirect_uri", "http://spa.test/cb")],
    );
    let code = login_for_code(&browser, &tp, &query).await;
    let resp = post_form(
        &tp,
        "/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", "http://spa.test/cb"),
            ("client_id", "spa"),
            ("code_verifier", verifier.as_str()),
        ],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert!(body["id_token"].is_string());
}

#[tokio::test]
async fn client_credentials_issues_an_access_token_for_the_client() {
    let tp = TestProvider::start(memory_cache(), |_| {}).await;
    let http = reqwest::Client::new();
    let resp = http
        .post(tp.url("/token"))
        .basic_auth("machine", Some("machine-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert!(body.get("refresh_token").is_none());
    assert!(body.get("id_token").is_none());
    let access = body["access_token"].as_str().unwrap();
    let resp = http
        .post(tp.url("/introspect"))
        .basic_auth("machine", Some("machine-secret"))
        .form(&[("token", access)])
        .send()
        .await
        .unwrap();
    let i: Value = resp.json().await.unwrap();
    assert_eq!(i["active"], true);
    assert_eq!(i["sub"], "machine");
    // No user behind it: userinfo refuses.
    let resp = http
        .get(tp.url("/userinfo"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(expect_error(resp, "insufficient_scope").await, 403);
}

#[tokio::test]
async fn prompt_login_and_max_age_force_a_new_login() {
    let tp = TestProvider::start(memory_cache(), |_| {}).await;
    let browser = browser();
    let (_, challenge) = pkce();
    login_for_code(&browser, &tp, &auth_query(&challenge, &[])).await;
    // With the session, a plain request gets a code straight away...
    let resp = browser
        .get(tp.url("/authorize"))
        .query(&auth_query(&challenge, &[]))
        .send()
        .await
        .unwrap();
    assert!(location_params(&resp).1.contains_key("code"));
    // ...but prompt=login and max_age=0 show the form again.
    for extra in [("prompt", "login"), ("max_age", "0")] {
        let resp = browser
            .get(tp.url("/authorize"))
            .query(&auth_query(&challenge, &[extra]))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{extra:?}");
        assert!(
            resp.text().await.unwrap().contains("name=\"password\""),
            "{extra:?}"
        );
    }
    // A generous max_age keeps the session.
    let resp = browser
        .get(tp.url("/authorize"))
        .query(&auth_query(&challenge, &[("max_age", "3600")]))
        .send()
        .await
        .unwrap();
    assert!(location_params(&resp).1.contains_key("code"));
    // prompt=none cannot show a form: login_required.
    let resp = browser
        .get(tp.url("/authorize"))
        .query(&auth_query(
            &challenge,
            &[("prompt", "none"), ("max_age", "0")],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(location_params(&resp).1["error"], "login_required");
}

#[tokio::test]
async fn discovery_and_jwks_are_cacheable_and_not_found_is_404() {
    let tp = TestProvider::start(memory_cache(), |_| {}).await;
    let http = reqwest::Client::new();
    let resp = http.get(tp.url("/jwks")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["cache-control"]
            .to_str()
            .unwrap()
            .starts_with("public")
    );
    let jwks: Value = resp.json().await.unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["kid"], "test-key");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["kty"], "EC");
    assert!(key.get("d").is_none());
    let resp = http.get(tp.url("/nope")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let resp = http.post(tp.url("/jwks")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    // Outside the issuer path: not the provider's route.
    let resp = http
        .get(format!("http://{}/other", tp.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 418);
}

#[tokio::test]
async fn rotated_keys_are_all_published_and_old_tokens_still_verify() {
    use orchestrator_config::{Secret, SigningAlgorithm, SigningKeyConfig};
    // The key being rotated out is EdDSA, the new (first) one ES256.
    let old_pem = orchestrator_oidc::keys::generate_pem(SigningAlgorithm::EdDSA).unwrap();
    let old = old_pem.clone();
    let tp = TestProvider::start(memory_cache(), move |cfg| {
        cfg.signing_keys.push(SigningKeyConfig {
            id: "old-key".into(),
            algorithm: SigningAlgorithm::EdDSA,
            private_key: Secret::new(old),
        });
    })
    .await;
    let http = reqwest::Client::new();
    let jwks: Value = http
        .get(tp.url("/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, ["test-key", "old-key"]);
    assert_eq!(jwks["keys"][1]["kty"], "OKP");
    assert_eq!(jwks["keys"][1]["crv"], "Ed25519");

    // New tokens are signed by the first key.
    let (verifier, challenge) = pkce();
    let code = login_for_code(&browser(), &tp, &auth_query(&challenge, &[])).await;
    let tokens: Value = exchange(&http, &tp, &code, &verifier)
        .await
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(tokens["id_token"].as_str().unwrap()).unwrap();
    assert_eq!(header.kid.as_deref(), Some("test-key"));

    // A token the old key signed before the rotation still works (while its
    // grant lives: it borrows the grant of the token just issued).
    let access = tokens["access_token"].as_str().unwrap();
    let gid = {
        use base64::Engine as _;
        let part = access.split('.').nth(1).unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap();
        serde_json::from_slice::<Value>(&bytes).unwrap()["gid"].clone()
    };
    let now = jsonwebtoken::get_current_timestamp();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    h.typ = Some("at+jwt".into());
    h.kid = Some("old-key".into());
    let claims = serde_json::json!({
        "iss": tp.issuer, "sub": "alice", "aud": "app", "client_id": "app",
        "exp": now + 300, "iat": now, "jti": "pre-rotation", "scope": "openid email",
        "username": "alice", "gid": gid,
    });
    let key = jsonwebtoken::EncodingKey::from_ed_pem(old_pem.as_bytes()).unwrap();
    let token = jsonwebtoken::encode(&h, &claims, &key).unwrap();
    let resp = http
        .get(tp.url("/userinfo"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The same token claiming the new key's kid does not.
    h.kid = Some("test-key".into());
    let token = jsonwebtoken::encode(&h, &claims, &key).unwrap();
    let resp = http
        .get(tp.url("/userinfo"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(expect_error(resp, "invalid_token").await, 401);
}

#[tokio::test]
async fn rs256_and_eddsa_id_tokens_verify_from_the_jwks() {
    use orchestrator_config::{Secret, SigningAlgorithm};
    for alg in [SigningAlgorithm::RS256, SigningAlgorithm::EdDSA] {
        let pem = orchestrator_oidc::keys::generate_pem(alg).unwrap();
        let tp = TestProvider::start(memory_cache(), move |cfg| {
            cfg.signing_keys[0].algorithm = alg;
            cfg.signing_keys[0].private_key = Secret::new(pem);
        })
        .await;
        let http = reqwest::Client::new();
        let (verifier, challenge) = pkce();
        let code = login_for_code(&browser(), &tp, &auth_query(&challenge, &[])).await;
        let tokens: Value = exchange(&http, &tp, &code, &verifier)
            .await
            .json()
            .await
            .unwrap();
        let claims = verify_id_token(&http, &tp, tokens["id_token"].as_str().unwrap(), "app").await;
        assert_eq!(claims["sub"], "alice", "{alg:?}");
        let resp = http
            .get(tp.url("/userinfo"))
            .bearer_auth(tokens["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{alg:?}");
    }
}

#[tokio::test]
async fn token_endpoint_answers_cors_preflights_and_counts_requests() {
    let tp = TestProvider::start(memory_cache(), |_| {}).await;
    let http = reqwest::Client::new();
    let resp = http
        .request(reqwest::Method::OPTIONS, tp.url("/token"))
        .header("origin", "http://spa.test")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    assert!(
        resp.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    // The login page is not for other origins.
    let resp = http
        .request(reqwest::Method::OPTIONS, tp.url("/login"))
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("access-control-allow-origin").is_none());

    let resp = http
        .post(tp.url("/token"))
        .form(&[("grant_type", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    let text = {
        let mut buf = String::new();
        let encoder = prometheus::TextEncoder::new();
        encoder
            .encode_utf8(&tp.registry.gather(), &mut buf)
            .unwrap();
        buf
    };
    assert!(
        text.contains("orchestrator_oidc_requests_total{endpoint=\"token\",status=\"401\"} 1"),
        "{text}"
    );
}
