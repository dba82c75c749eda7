//! OpenID Connect Back-Channel Logout 1.0 on both sides: a logout token from
//! the IdP ends the gateway sessions it names (next request → login); a
//! forged, expired, replayed, `nonce`-carrying or mis-addressed one gets
//! 400 and ends nothing; and our provider sends one when its SSO session
//! ends, so logging out there ends the gateway session too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use orchestrator_tests::browser::Browser;
use orchestrator_tests::{Orchestrator, TestUpstream, run_cli};
use serde_json::{Value, json};

const YAML: &str = r#"
oidcProvider:
  issuer: http://127.0.0.1:{port}/idp
  signingKeys:
    - {id: bcl, algorithm: ES256, privateKey: "${secret:op-key.pem}"}
  clients:
    - clientId: gw
      clientSecret: gw-secret
      redirectUris: [http://127.0.0.1:{port}/.orchestrator/callback]
      backchannelLogoutUri: http://127.0.0.1:{port}/.orchestrator/backchannel-logout
  users:
    - username: alice
      passwordHash: "${secret:hash}"
      claims: {email: alice@example.com, email_verified: true}
appGateway:
  identityProviders:
    - {name: own, issuer: "http://127.0.0.1:{port}/idp", clientId: gw, clientSecret: gw-secret}
  apps:
    - name: demo
      host: "*"
      pathPrefix: /
      upstream: "{upstream}"
      identityProvider: own
      headers: {X-User: sub, X-Sid: sid}
"#;

struct Setup {
    orch: Orchestrator,
    _app: TestUpstream,
    key: String,
}

async fn start() -> Setup {
    let app = TestUpstream::echo().await;
    let hash = run_cli(&["hash-password"], "pw\n").await;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem();
    let orch = Orchestrator::start(
        &YAML.replace("{upstream}", &app.url()),
        &[("op-key.pem", key.as_str()), ("hash", hash.stdout.trim())],
    )
    .await;
    Setup {
        orch,
        _app: app,
        key,
    }
}

/// A browser signed in at the gateway, and its session's `sid`.
async fn signed_in(s: &Setup) -> (Browser, String) {
    let b = Browser::new();
    let visit = b
        .visit(&format!("{}/page", s.orch.base_url()), "alice", "pw")
        .await
        .unwrap();
    assert_eq!(visit.status, 200, "{}", visit.body);
    let echo: Value = serde_json::from_str(&visit.body).unwrap();
    let sid = echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0] == "x-sid")
        .map(|h| h[1].as_str().unwrap().to_owned())
        .expect("the ID token's sid");
    (b, sid)
}

/// Whether the browser's session still opens the app (no login redirect).
async fn still_in(s: &Setup, b: &Browser) -> bool {
    let r = b
        .client()
        .get(format!("{}/page", s.orch.base_url()))
        .send()
        .await
        .unwrap();
    r.status() == 200
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A logout token with `claims` signed by `pem` (ES256, kid `bcl`).
fn token(pem: &str, header: Value, claims: Value) -> String {
    let h = URL_SAFE_NO_PAD.encode(header.to_string());
    let c = URL_SAFE_NO_PAD.encode(claims.to_string());
    let input = format!("{h}.{c}");
    let key = jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
    let sig =
        jsonwebtoken::crypto::sign(input.as_bytes(), &key, jsonwebtoken::Algorithm::ES256).unwrap();
    format!("{input}.{sig}")
}

fn claims(s: &Setup, sid: Option<&str>, sub: Option<&str>, jti: &str) -> Value {
    let mut c = json!({
        "iss": format!("{}/idp", s.orch.base_url()),
        "aud": "gw",
        "iat": now(),
        "exp": now() + 120,
        "jti": jti,
        "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
    });
    if let Some(sid) = sid {
        c["sid"] = json!(sid);
    }
    if let Some(sub) = sub {
        c["sub"] = json!(sub);
    }
    c
}

fn header() -> Value {
    json!({"alg": "ES256", "typ": "logout+jwt", "kid": "bcl"})
}

async fn post(s: &Setup, logout_token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!(
            "{}/.orchestrator/backchannel-logout",
            s.orch.base_url()
        ))
        .form(&[("logout_token", logout_token)])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_logout_token_ends_the_session_it_names() {
    let s = start().await;
    let (b, sid) = signed_in(&s).await;
    let (other, _) = signed_in(&s).await;
    let resp = post(
        &s,
        &token(&s.key, header(), claims(&s, Some(&sid), None, "j1")),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert!(
        !still_in(&s, &b).await,
        "the named session still opens the app"
    );
    assert!(still_in(&s, &other).await, "another session ended too");
    // By subject: every session of the user ends.
    let resp = post(
        &s,
        &token(&s.key, header(), claims(&s, None, Some("alice"), "j2")),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(!still_in(&s, &other).await);
    assert_eq!(
        s.orch
            .metric("orchestrator_gateway_backchannel_logouts_total")
            .await,
        Some(2.0)
    );
}

#[tokio::test]
async fn bad_logout_tokens_get_400_and_end_nothing() {
    let s = start().await;
    let (b, sid) = signed_in(&s).await;
    let other_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem();
    let good = |jti: &str| claims(&s, Some(&sid), None, jti);
    let mut expired = good("e");
    expired["exp"] = json!(now() - 3600);
    expired["iat"] = json!(now() - 3700);
    let mut stale = good("o");
    stale["iat"] = json!(now() - 3600);
    stale["exp"] = json!(now() + 3600);
    let mut with_nonce = good("n");
    with_nonce["nonce"] = json!("x");
    let mut wrong_aud = good("a");
    wrong_aud["aud"] = json!("someone-else");
    let mut no_event = good("v");
    no_event["events"] = json!({});
    let mut nobody = good("b");
    nobody.as_object_mut().unwrap().remove("sid");
    let cases = [
        (
            "signed with another key",
            token(&other_key, header(), good("k")),
        ),
        ("expired", token(&s.key, header(), expired)),
        ("issued an hour ago", token(&s.key, header(), stale)),
        ("with a nonce", token(&s.key, header(), with_nonce)),
        ("for another client", token(&s.key, header(), wrong_aud)),
        ("without the event", token(&s.key, header(), no_event)),
        ("naming nobody", token(&s.key, header(), nobody)),
        (
            "typed as an ID token",
            token(
                &s.key,
                json!({"alg": "ES256", "typ": "JWT+id", "kid": "bcl"}),
                good("t"),
            ),
        ),
        ("not a JWT", "garbage".to_owned()),
    ];
    for (what, t) in &cases {
        let resp = post(&s, t).await;
        assert_eq!(resp.status(), 400, "{what}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request", "{what}");
        assert!(still_in(&s, &b).await, "{what} ended the session");
    }
    // A GET is no logout either.
    let r = reqwest::get(format!(
        "{}/.orchestrator/backchannel-logout",
        s.orch.base_url()
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    // Replayed: the first use works, the second is refused.
    let once = token(&s.key, header(), good("r"));
    assert_eq!(post(&s, &once).await.status(), 200);
    assert_eq!(post(&s, &once).await.status(), 400);
}

#[tokio::test]
async fn logging_out_at_our_provider_ends_the_gateway_session_through_the_back_channel() {
    let s = start().await;
    let discovery: Value = reqwest::get(format!(
        "{}/idp/.well-known/openid-configuration",
        s.orch.base_url()
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(discovery["backchannel_logout_supported"], true);
    assert_eq!(discovery["backchannel_logout_session_supported"], true);

    let (b, _) = signed_in(&s).await;
    let mut tunnel = orchestrator_tests::ws::open_echo(
        &format!("ws://127.0.0.1:{}/ws", s.orch.port()),
        &b.cookies_for(&s.orch.base_url()),
    )
    .await;
    // The provider's own sign-out, confirmed by the user in the same browser.
    let end_session = format!("{}/idp/end_session", s.orch.base_url());
    let page = b.client().get(&end_session).send().await.unwrap();
    let token = orchestrator_tests::browser::hidden(&page.text().await.unwrap(), "token")
        .expect("the confirmation form");
    let resp = b
        .client()
        .post(&end_session)
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The provider told the gateway: its session ends without any request
    // of the browser's to the gateway's logout.
    s.orch
        .wait_metric_at_least(
            "orchestrator_oidc_backchannel_logouts_total{client=\"gw\",outcome=\"delivered\"}",
            1.0,
            std::time::Duration::from_secs(10),
        )
        .await;
    // The WebSocket opened in that session ends with it.
    assert!(
        orchestrator_tests::ws::closed_within(&mut tunnel, std::time::Duration::from_secs(1)).await,
        "the tunnel outlived the back-channel logout"
    );
    assert!(
        !still_in(&s, &b).await,
        "the gateway session outlived the IdP's"
    );
}

const WITH_PANVA: &str = r#"
appGateway:
  identityProviders:
    - {name: panva, issuer: "{issuer}", clientId: gateway, clientSecret: gateway-secret, scopes: [openid, email, profile, groups]}
  apps:
    - {name: demo, host: "*", pathPrefix: /, upstream: "{upstream}", identityProvider: panva, headers: {X-User: sub}}
"#;

/// panva's certified `oidc-provider` with Back-Channel Logout on, as the
/// gateway's IdP: signing out there (its own confirmation page) deletes the
/// gateway session, and the WebSocket of that session closes; forged,
/// expired, replayed or `nonce`-carrying tokens were covered above against
/// the same receiver.
#[tokio::test]
async fn signing_out_at_panva_ends_the_gateway_session() {
    use orchestrator_tests::browser::{End, walk};
    let app = TestUpstream::echo().await;
    let (port, admin) = (
        orchestrator_tests::free_port(),
        orchestrator_tests::free_port(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let op = orchestrator_tests::node_op::NodeOp::start_with(
        "127.0.0.1",
        &[format!("{base}/.orchestrator/callback")],
        Some(&format!("{base}/.orchestrator/backchannel-logout")),
    )
    .await;
    let discovery: Value = reqwest::get(format!("{}/.well-known/openid-configuration", op.issuer))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["backchannel_logout_supported"], true);
    let yaml = WITH_PANVA
        .replace("{issuer}", &op.issuer)
        .replace("{upstream}", &app.url());
    let orch = Orchestrator::start_with(orchestrator_tests::Setup {
        yaml: &yaml,
        ports: Some((port, admin)),
        ..orchestrator_tests::Setup::default()
    })
    .await;

    let b = Browser::new();
    let page = format!("{base}/page");
    match walk(&b, &page, "alice", |_| false).await.unwrap() {
        End::Page { status, body, .. } => assert_eq!(status, 200, "{body}"),
        End::Redirect(u) => panic!("stopped at {u}"),
    }
    let mut tunnel = orchestrator_tests::ws::open_echo(
        &format!("ws://127.0.0.1:{port}/ws"),
        &b.cookies_for(&base),
    )
    .await;

    // A logout token in panva's name but not signed by panva (its JWKS
    // does not have the key) ends nothing.
    let forger = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem();
    let mut forged_claims = json!({
        "iss": op.issuer,
        "aud": "gateway",
        "iat": now(),
        "exp": now() + 120,
        "jti": "forged-1",
        "sub": "alice",
        "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
    });
    let forged = reqwest::Client::new()
        .post(format!("{base}/.orchestrator/backchannel-logout"))
        .form(&[(
            "logout_token",
            token(&forger, header(), forged_claims.clone()),
        )])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 400);
    forged_claims["nonce"] = json!("n");
    let with_nonce = reqwest::Client::new()
        .post(format!("{base}/.orchestrator/backchannel-logout"))
        .form(&[("logout_token", token(&forger, header(), forged_claims))])
        .send()
        .await
        .unwrap();
    assert_eq!(with_nonce.status(), 400);
    assert_eq!(
        b.client().get(&page).send().await.unwrap().status(),
        200,
        "refused tokens end nothing"
    );

    // panva's own end_session, confirmed on its page; the walk stops at
    // the redirect back (nothing of the gateway's is visited).
    let end = walk(&b, &format!("{}/session/end", op.issuer), "alice", |u| {
        !u.as_str().starts_with(&op.issuer)
    })
    .await
    .unwrap();
    if let End::Page { status, body, .. } = &end {
        assert_eq!(*status, 200, "panva's sign-out: {body}");
        assert!(body.contains("Sign-out Success"), "{body}");
    }
    orch.wait_metric_at_least(
        "orchestrator_gateway_backchannel_logouts_total",
        1.0,
        std::time::Duration::from_secs(10),
    )
    .await;
    let after = b.client().get(&page).send().await.unwrap();
    assert_eq!(
        after.status(),
        302,
        "the gateway session ended with panva's"
    );
    assert!(
        orchestrator_tests::ws::closed_within(&mut tunnel, std::time::Duration::from_secs(1)).await,
        "the tunnel ended with the session"
    );
}
