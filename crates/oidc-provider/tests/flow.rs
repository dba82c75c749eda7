//! The whole flow walked as a browser and a client would, against a provider
//! served over HTTP on loopback with the memory cache.

// Test helpers panic on unexpected results by design.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

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
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("kid published in JWKS");
    let key = DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&[aud]);
    validation.set_issuer(&[tp.issuer.as_str()]);
    jsonwebtoken::decode::<Value>(id_token, &key, &validation)
        .unwrap()
        .claims
}

#[tokio::test]
async fn browser_walks_discovery_login_token_userinfo_refresh_introspect_revoke_logout() {
    let tp = TestProvider::start(memory_cache(), |_| {}).await;
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
    let (tx, csrf) = open_login(&browser, &tp, &query).await;
    let resp = submit_login(&browser, &tp, &tx, &csrf, "alice", PASSWORD).await;
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
    let resp = exchange(&http, &tp, &code, &verifier).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let tokens: Value = resp.json().await.unwrap();
    assert_eq!(tokens["token_type"], "Bearer");
    assert!(tokens["expires_in"].as_u64().unwrap() > 500);
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let id_token = tokens["id_token"].as_str().unwrap();

    // The ID token, verified with the published JWKS only.
    let claims = verify_id_token(&http, &tp, id_token, "app").await;
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
    let id2 = verify_id_token(&http, &tp, refreshed["id_token"].as_str().unwrap(), "app").await;
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
    let resp = reqwest::Client::new()
        .post(tp.url("/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", "http://spa.test/cb"),
            ("client_id", "spa"),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .unwrap();
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
