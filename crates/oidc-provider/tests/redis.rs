//! The provider over a real redis-server: the whole flow, and two replicas
//! (two providers, two HTTP servers) sharing one Redis behaving as one.

// Test helpers panic on unexpected results by design.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::*;
use orchestrator_cache::testing::TestRedis;
use orchestrator_cache::{Cache, RedisCache};
use orchestrator_config::{CacheBackend, SigningAlgorithm};
use serde_json::Value;

fn redis_cache(redis: &TestRedis, prefix: &str) -> Arc<dyn Cache> {
    Arc::new(RedisCache::new(&redis.config(prefix)).unwrap())
}

/// Two providers over one Redis key prefix: B shares A's issuer and keys, as
/// replicas behind one Service do; its own Redis connection, its own process state.
async fn replica_pair(redis: &TestRedis, prefix: &str) -> (TestProvider, TestProvider) {
    let key = orchestrator_oidc::keys::generate_pem(SigningAlgorithm::ES256).unwrap();
    let a = TestProvider::start_with(
        redis_cache(redis, prefix),
        CacheBackend::Redis,
        &key,
        None,
        |_| {},
    )
    .await;
    let b = TestProvider::start_with(
        redis_cache(redis, prefix),
        CacheBackend::Redis,
        &key,
        Some(&a.issuer),
        |_| {},
    )
    .await;
    (a, b)
}

#[tokio::test]
async fn browser_flow_over_redis() {
    let redis = TestRedis::start();
    let key = orchestrator_oidc::keys::generate_pem(SigningAlgorithm::ES256).unwrap();
    let tp = TestProvider::start_with(
        redis_cache(&redis, "flow:"),
        CacheBackend::Redis,
        &key,
        None,
        |_| {},
    )
    .await;
    walk_full_flow(&tp).await;
}

#[tokio::test]
async fn two_replicas_over_one_redis_behave_as_one_provider() {
    let redis = TestRedis::start();
    let (a, b) = replica_pair(&redis, "pair:").await;
    let browser = browser();
    let http = reqwest::Client::new();

    // A code issued by A is redeemed at B, once.
    let (verifier, challenge) = pkce();
    let code = login_for_code(&browser, &a, &auth_query(&challenge, &[])).await;
    let resp = exchange(&http, &b, &code, &verifier).await;
    assert_eq!(resp.status(), 200);
    let tokens: Value = resp.json().await.unwrap();
    let resp = exchange(&http, &a, &code, &verifier).await;
    assert_eq!(expect_error(resp, "invalid_grant").await, 400);
    // ...and that replay revoked B's tokens everywhere.
    let access = tokens["access_token"].as_str().unwrap();
    let resp = http
        .get(a.url("/userinfo"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(expect_error(resp, "invalid_token").await, 401);

    // A fresh grant: tokens from A work at B; a refresh token from A works at B.
    let (verifier, challenge) = pkce();
    // The SSO cookie set by A is honoured by B: no login form at B.
    let resp = browser
        .get(b.url("/authorize"))
        .query(&auth_query(&challenge, &[("prompt", "none")]))
        .send()
        .await
        .unwrap();
    let (_, params) = location_params(&resp);
    let code = params
        .get("code")
        .cloned()
        .unwrap_or_else(|| panic!("B ignored A's session: {params:?}"));
    let tokens: Value = exchange(&http, &a, &code, &verifier)
        .await
        .json()
        .await
        .unwrap();
    let id_token = tokens["id_token"].as_str().unwrap();
    verify_id_token(&http, &b, id_token, "app").await;
    let resp = http
        .get(b.url("/userinfo"))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = http
        .post(b.url("/token"))
        .basic_auth("app", Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The spent refresh token is known as spent at A too.
    let resp = http
        .post(a.url("/token"))
        .basic_auth("app", Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(expect_error(resp, "invalid_grant").await, 400);

    // Logout at B (confirmed: no id_token_hint) ends the session for A.
    let resp = sign_out_confirmed(&browser, &b.url("/end_session")).await;
    assert_eq!(resp.status(), 200);
    let resp = browser
        .get(a.url("/authorize"))
        .query(&auth_query(&challenge, &[("prompt", "none")]))
        .send()
        .await
        .unwrap();
    assert_eq!(location_params(&resp).1["error"], "login_required");
}

#[tokio::test]
async fn login_throttling_is_shared_across_replicas() {
    let redis = TestRedis::start();
    let (a, b) = replica_pair(&redis, "thr:").await;
    let browser = browser();
    let (_, challenge) = pkce();
    let (tx, csrf) = open_login(&browser, &a, &auth_query(&challenge, &[])).await;
    // maxFailuresPerUser is 3: spread the failures over both replicas.
    for tp in [&a, &b, &a] {
        assert_eq!(
            submit_login(&browser, tp, &tx, &csrf, "alice", "wrong")
                .await
                .status(),
            401
        );
    }
    assert_eq!(
        submit_login(&browser, &b, &tx, &csrf, "alice", PASSWORD)
            .await
            .status(),
        429
    );
}
