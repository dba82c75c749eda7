//! Logout that ends access: RP-Initiated Logout 1.0 §6 (only the session's
//! own relying party logs out without asking), and what a session issued
//! ends with it (refresh tokens, unredeemed codes).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::Value;

/// Alice's SSO session in `browser`, and the tokens of one code flow.
async fn signed_in(tp: &TestProvider, browser: &reqwest::Client) -> Value {
    let (verifier, challenge) = pkce();
    let code = login_for_code(browser, tp, &auth_query(&challenge, &[])).await;
    exchange(&reqwest::Client::new(), tp, &code, &verifier)
        .await
        .json()
        .await
        .unwrap()
}

/// Whether `browser` still has an SSO session (`prompt=none` gets a code).
async fn still_signed_in(tp: &TestProvider, browser: &reqwest::Client) -> bool {
    let (_, challenge) = pkce();
    let resp = browser
        .get(tp.url("/authorize"))
        .query(&auth_query(&challenge, &[("prompt", "none")]))
        .send()
        .await
        .unwrap();
    location_params(&resp).1.contains_key("code")
}

#[tokio::test]
async fn a_bare_get_or_a_foreign_hint_asks_before_logging_out() {
    let tp = TestProvider::start(memory_cache(), |_| {}).await;
    let browser = browser();
    signed_in(&tp, &browser).await;
    // A link on another site: the confirmation page, and nothing ends.
    let page = browser.get(tp.url("/end_session")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("name=\"token\""));
    assert!(still_signed_in(&tp, &browser).await);
    // Someone else's ID token (another browser's session) is no proof either.
    let other = common::browser();
    let theirs = signed_in(&tp, &other).await;
    let page = browser
        .get(tp.url("/end_session"))
        .query(&[("id_token_hint", theirs["id_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("name=\"token\""));
    assert!(still_signed_in(&tp, &browser).await);
    // The confirmation shown to this browser does not log the other one out.
    let token = hidden(&html, "token");
    let resp = other
        .post(tp.url("/end_session"))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(still_signed_in(&tp, &other).await);
    // Its own browser confirms: signed out.
    let resp = browser
        .post(tp.url("/end_session"))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(!still_signed_in(&tp, &browser).await);
}

#[tokio::test]
async fn the_session_s_own_hint_logs_out_at_once_and_ends_its_refresh_tokens() {
    let tp = TestProvider::start(memory_cache(), |_| {}).await;
    let browser = browser();
    let tokens = signed_in(&tp, &browser).await;
    // A code issued in the session, not redeemed before the logout.
    let (verifier, challenge) = pkce();
    let resp = browser
        .get(tp.url("/authorize"))
        .query(&auth_query(&challenge, &[]))
        .send()
        .await
        .unwrap();
    let late_code = location_params(&resp).1["code"].clone();

    let resp = browser
        .get(tp.url("/end_session"))
        .query(&[
            ("id_token_hint", tokens["id_token"].as_str().unwrap()),
            ("post_logout_redirect_uri", LOGOUT_URI),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        302,
        "the session's own hint needs no confirmation"
    );
    assert!(!still_signed_in(&tp, &browser).await);

    // Its refresh token is refused, and so is the code it issued.
    let resp = post_form(
        &tp,
        "/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ("client_id", "app"),
            ("client_secret", CLIENT_SECRET),
        ],
    )
    .await;
    assert_eq!(expect_error(resp, "invalid_grant").await, 400);
    let resp = exchange(&reqwest::Client::new(), &tp, &late_code, &verifier).await;
    assert_eq!(expect_error(resp, "invalid_grant").await, 400);
}
