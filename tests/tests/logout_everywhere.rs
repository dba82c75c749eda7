//! Logout that ends access everywhere, with real processes: our provider
//! and two gateways (two apps with single sign-on between them). Signing
//! out at one gateway ends its session, the provider's SSO session (the
//! next login asks for the password), the other gateway's session through
//! the back-channel, and the session's refresh tokens. And a relying party
//! that is down gets its deliveries retried, bounded and counted, while the
//! provider keeps answering.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use orchestrator_tests::browser::{Browser, sign_out};
use orchestrator_tests::{ClosedPort, Orchestrator, Setup, TestUpstream, free_port, run_cli};

/// The provider and gateway A, in one process.
const PROVIDER_AND_A: &str = r#"
oidcProvider:
  issuer: http://127.0.0.1:{port}/idp
  signingKeys:
    - {id: k1, algorithm: ES256, privateKey: "${secret:op-key.pem}"}
  clients:
    - clientId: gw-a
      clientSecret: secret-a
      redirectUris: [http://a.test:{port}/.orchestrator/callback]
      postLogoutRedirectUris: [http://a.test:{port}/]
      backchannelLogoutUri: http://127.0.0.1:{port}/.orchestrator/backchannel-logout
    - clientId: gw-b
      clientSecret: secret-b
      redirectUris: [http://b.test:{b_port}/.orchestrator/callback]
      backchannelLogoutUri: http://127.0.0.1:{b_port}/.orchestrator/backchannel-logout
    - clientId: gone
      clientSecret: secret-gone
      redirectUris: [http://a.test:{port}/gone/callback]
      backchannelLogoutUri: http://127.0.0.1:{dead_port}/backchannel
  users:
    - username: alice
      passwordHash: "${secret:hash}"
      claims: {email: alice@example.com, email_verified: true}
appGateway:
  identityProviders:
    - {name: own, issuer: "http://127.0.0.1:{port}/idp", clientId: gw-a, clientSecret: secret-a}
  apps:
    - {name: a, host: a.test, pathPrefix: /, upstream: "{upstream}", identityProvider: own, headers: {X-User: sub}}
"#;

/// Gateway B, in a process of its own.
const B: &str = r#"
appGateway:
  identityProviders:
    - {name: own, issuer: "http://127.0.0.1:{a_port}/idp", clientId: gw-b, clientSecret: secret-b}
  apps:
    - {name: b, host: b.test, pathPrefix: /, upstream: "{upstream}", identityProvider: own, headers: {X-User: sub}}
"#;

struct Two {
    a: Orchestrator,
    b: Orchestrator,
    _app: TestUpstream,
    /// The port of the client that is never there.
    _dead: ClosedPort,
}

async fn start() -> Two {
    let app = TestUpstream::echo().await;
    let hash = run_cli(&["hash-password"], "pw\n").await.stdout;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem();
    let (b_port, dead) = (free_port(), ClosedPort::new());
    let a = Orchestrator::start(
        &PROVIDER_AND_A
            .replace("{b_port}", &b_port.to_string())
            .replace("{dead_port}", &dead.port().to_string())
            .replace("{upstream}", &app.url()),
        &[("op-key.pem", key.as_str()), ("hash", hash.trim())],
    )
    .await;
    let b_yaml = B
        .replace("{a_port}", &a.port().to_string())
        .replace("{upstream}", &app.url());
    let b = Orchestrator::start_with(Setup {
        yaml: &b_yaml,
        ports: Some((b_port, free_port())),
        ..Setup::default()
    })
    .await;
    Two {
        a,
        b,
        _app: app,
        _dead: dead,
    }
}

fn browser() -> Browser {
    Browser::resolving(&["a.test", "b.test"], SocketAddr::from(([127, 0, 0, 1], 0)))
}

fn url(o: &Orchestrator, host: &str, path: &str) -> String {
    format!("http://{host}:{}{path}", o.port())
}

#[tokio::test]
async fn signing_out_at_one_gateway_ends_the_other_and_the_providers_session() {
    let t = start().await;
    let browser = browser();
    let a_page = url(&t.a, "a.test", "/page");
    let b_page = url(&t.b, "b.test", "/page");
    let first = browser.visit(&a_page, "alice", "pw").await.unwrap();
    assert_eq!((first.status, first.prompts), (200, 1), "{}", first.body);
    let second = browser.visit(&b_page, "alice", "pw").await.unwrap();
    assert_eq!(
        (second.status, second.prompts),
        (200, 0),
        "single sign-on: no password at the second app"
    );

    // Sign out at A: A's session ends and the browser goes on to the
    // provider's end_session with A's id_token_hint, which ends the SSO
    // session at once (the hint names it) and returns to A.
    let out = sign_out(
        browser.client(),
        &url(&t.a, "a.test", "/.orchestrator/logout"),
    )
    .await;
    assert_eq!(out.status(), 303);
    let end_session = out.headers()["location"].to_str().unwrap().to_owned();
    assert!(end_session.contains("/idp/end_session"), "{end_session}");
    let back = browser.client().get(&end_session).send().await.unwrap();
    assert!(back.status().is_redirection(), "{}", back.status());
    assert_eq!(
        back.headers()["location"].to_str().unwrap(),
        url(&t.a, "a.test", "/")
    );

    // The provider told B through the back-channel; the browser never
    // visited B's sign-out.
    t.a.wait_metric_at_least(
        "orchestrator_oidc_backchannel_logouts_total{client=\"gw-b\",outcome=\"delivered\"}",
        1.0,
        Duration::from_secs(10),
    )
    .await;
    let at_b = browser.client().get(&b_page).send().await.unwrap();
    assert_eq!(at_b.status(), 302, "B's session ended");
    assert_eq!(
        t.b.metric("orchestrator_gateway_backchannel_logouts_total")
            .await,
        Some(1.0)
    );
    // And the provider's SSO session is over: signing in asks again.
    let again = browser.visit(&b_page, "alice", "pw").await.unwrap();
    assert_eq!((again.status, again.prompts), (200, 1));
}

#[tokio::test]
async fn a_relying_party_that_is_down_gets_bounded_retries_and_the_provider_keeps_answering() {
    let t = start().await;
    let issuer = format!("{}/idp", t.a.base_url());
    let browser = browser();
    // A client whose back-channel URI is a closed port gets tokens in the
    // SSO session: the plain authorization code flow, by hand.
    let signed_in = browser
        .visit(&url(&t.a, "a.test", "/page"), "alice", "pw")
        .await
        .unwrap();
    assert_eq!(signed_in.status, 200);
    let verifier = "v".repeat(43);
    let challenge = {
        use base64::Engine as _;
        use sha2::Digest as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(verifier.as_bytes()))
    };
    let redirect = url(&t.a, "a.test", "/gone/callback");
    let authorize = browser
        .client()
        .get(format!("{issuer}/authorize"))
        .query(&[
            ("response_type", "code"),
            ("client_id", "gone"),
            ("redirect_uri", redirect.as_str()),
            ("scope", "openid"),
            ("state", "s1"),
            ("nonce", "n1"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await
        .unwrap();
    assert!(
        authorize.status().is_redirection(),
        "SSO: {}",
        authorize.status()
    );
    let location = authorize.headers()["location"].to_str().unwrap().to_owned();
    let code = url::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("a code");
    let tokens = reqwest::Client::new()
        .post(format!("{issuer}/token"))
        .basic_auth("gone", Some("secret-gone"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect.as_str()),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(tokens.status(), 200);

    let out = sign_out(
        browser.client(),
        &url(&t.a, "a.test", "/.orchestrator/logout"),
    )
    .await;
    let end_session = out.headers()["location"].to_str().unwrap().to_owned();
    let ended = Instant::now();
    let back = browser.client().get(&end_session).send().await.unwrap();
    assert!(back.status().is_redirection());

    // While the deliveries to the dead client are retried, the provider
    // answers at once, and the live clients got theirs.
    for _ in 0..5 {
        let asked = Instant::now();
        let discovery = reqwest::get(format!("{issuer}/.well-known/openid-configuration"))
            .await
            .unwrap();
        assert_eq!(discovery.status(), 200);
        assert!(asked.elapsed() < Duration::from_secs(1));
    }
    t.a.wait_metric_at_least(
        "orchestrator_oidc_backchannel_logouts_total{client=\"gw-a\",outcome=\"delivered\"}",
        1.0,
        Duration::from_secs(10),
    )
    .await;
    // Three attempts (now, +1 s, +3 s), then counted as failed, once.
    t.a.wait_metric_at_least(
        "orchestrator_oidc_backchannel_logouts_total{client=\"gone\",outcome=\"failed\"}",
        1.0,
        Duration::from_secs(20),
    )
    .await;
    assert!(
        ended.elapsed() >= Duration::from_secs(4),
        "retried before giving up"
    );
    assert_eq!(
        t.a.metric(
            "orchestrator_oidc_backchannel_logouts_total{client=\"gone\",outcome=\"failed\"}"
        )
        .await,
        Some(1.0)
    );
}

/// One process with our provider (SSO sessions of `sso_ttl`) and a gateway
/// that takes its logout tokens; `admin.apiToken` set.
async fn provider_with_gateway(sso_ttl: &str) -> (Orchestrator, TestUpstream) {
    let app = TestUpstream::echo().await;
    let hash = run_cli(&["hash-password"], "pw\n").await.stdout;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem();
    let yaml = format!(
        r#"
admin:
  address: 127.0.0.1:{{admin_port}}
  apiToken: "${{secret:admin-token}}"
oidcProvider:
  issuer: http://127.0.0.1:{{port}}/idp
  ssoSessionTtl: {sso_ttl}
  signingKeys:
    - {{id: k1, algorithm: ES256, privateKey: "${{secret:op-key.pem}}"}}
  clients:
    - clientId: gw
      clientSecret: gw-secret
      redirectUris: [http://127.0.0.1:{{port}}/.orchestrator/callback]
      backchannelLogoutUri: http://127.0.0.1:{{port}}/.orchestrator/backchannel-logout
  users:
    - {{username: alice, passwordHash: "${{secret:hash}}", claims: {{email: alice@example.com}}}}
appGateway:
  identityProviders:
    - {{name: own, issuer: "http://127.0.0.1:{{port}}/idp", clientId: gw, clientSecret: gw-secret}}
  apps:
    - {{name: demo, host: "*", pathPrefix: /, upstream: "{upstream}", identityProvider: own}}
"#,
        upstream = app.url(),
    );
    let orch = Orchestrator::start(
        &yaml,
        &[
            ("op-key.pem", key.as_str()),
            ("hash", hash.trim()),
            ("admin-token", ADMIN_TOKEN),
        ],
    )
    .await;
    (orch, app)
}

const ADMIN_TOKEN: &str = "an-admin-token-of-at-least-32-characters";

#[tokio::test]
async fn an_sso_session_that_expires_is_notified_like_a_sign_out() {
    let (orch, _app) = provider_with_gateway("3s").await;
    let b = Browser::new();
    let page = format!("{}/page", orch.base_url());
    assert_eq!(b.visit(&page, "alice", "pw").await.unwrap().status, 200);
    // Nobody signs out: the provider's session reaches its end, and the
    // gateway hears of it through the back-channel.
    orch.wait_metric_at_least(
        "orchestrator_oidc_backchannel_logouts_total{client=\"gw\",outcome=\"delivered\"}",
        1.0,
        Duration::from_secs(15),
    )
    .await;
    let after = b.client().get(&page).send().await.unwrap();
    assert_eq!(
        after.status(),
        302,
        "the gateway session ended with the SSO session"
    );
    assert_eq!(
        orch.metric("orchestrator_gateway_backchannel_logouts_total")
            .await,
        Some(1.0)
    );
}

#[tokio::test]
async fn an_operator_revokes_every_session_of_a_user_through_the_admin_api() {
    let (orch, _app) = provider_with_gateway("1h").await;
    let b = Browser::new();
    let page = format!("{}/page", orch.base_url());
    assert_eq!(b.visit(&page, "alice", "pw").await.unwrap().status, 200);
    let revoke = format!("{}/sessions/revoke", orch.admin_url());
    let http = reqwest::Client::new();
    let wrong = http
        .post(&revoke)
        .bearer_auth("not-the-token-but-just-as-long-as-it")
        .form(&[("user", "alice")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(wrong.headers()["www-authenticate"], "Bearer");
    let none = http
        .post(&revoke)
        .form(&[("user", "alice")])
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 401);
    assert_eq!(
        b.client().get(&page).send().await.unwrap().status(),
        200,
        "a refused call ends nothing"
    );
    let unknown = http
        .post(&revoke)
        .bearer_auth(ADMIN_TOKEN)
        .form(&[("user", "mallory")])
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let missing = http
        .post(&revoke)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 400);

    let ok = http
        .post(&revoke)
        .bearer_auth(ADMIN_TOKEN)
        .form(&[("user", "alice")])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["cache-control"], "no-store");
    // The gateway got a logout token naming the user, and ended her session.
    orch.wait_metric_at_least(
        "orchestrator_gateway_backchannel_logouts_total",
        1.0,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(b.client().get(&page).send().await.unwrap().status(), 302);
    // The provider's SSO session is over too: signing in asks again.
    let again = b.visit(&page, "alice", "pw").await.unwrap();
    assert_eq!((again.status, again.prompts), (200, 1));
}

#[tokio::test]
async fn a_delivery_outlives_the_replica_that_queued_it() {
    let redis = orchestrator_cache::testing::TestRedis::start();
    let app = TestUpstream::echo().await;
    let hash = run_cli(&["hash-password"], "pw\n").await.stdout;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem();
    let (p1, p2, gw) = (free_port(), free_port(), free_port());
    // Two provider replicas over one Redis; the issuer names the second
    // (the one that stays), the gateway is the relying party.
    let provider = format!(
        r#"
cache: {{backend: redis, redis: {{url: "{redis}", keyPrefix: "bcl:"}}}}
oidcProvider:
  issuer: http://127.0.0.1:{p2}/idp
  signingKeys: [{{id: shared, algorithm: ES256, privateKey: "${{secret:op-key.pem}}"}}]
  clients:
    - clientId: gw
      clientSecret: gw-secret
      redirectUris: [http://127.0.0.1:{gw}/.orchestrator/callback]
      backchannelLogoutUri: http://127.0.0.1:{gw}/.orchestrator/backchannel-logout
  users:
    - {{username: alice, passwordHash: "${{secret:hash}}"}}
"#,
        redis = redis.url(),
    );
    let gateway = format!(
        r#"
appGateway:
  identityProviders:
    - {{name: own, issuer: "http://127.0.0.1:{p2}/idp", clientId: gw, clientSecret: gw-secret}}
  apps:
    - {{name: demo, host: "*", pathPrefix: /, upstream: "{upstream}", identityProvider: own}}
"#,
        upstream = app.url(),
    );
    let secrets = [("op-key.pem", key.as_str()), ("hash", hash.trim())];
    let start = |port: u16, yaml: String| async move {
        Orchestrator::start_with(Setup {
            yaml: &yaml,
            secrets: &secrets,
            ports: Some((port, free_port())),
            ..Setup::default()
        })
        .await
    };
    let replica1 = start(p1, provider.clone()).await;
    let replica2 = start(p2, provider.clone()).await;
    let relying_party = start(gw, gateway.clone()).await;
    let b = Browser::new();
    let page = format!("http://127.0.0.1:{gw}/page");
    assert_eq!(b.visit(&page, "alice", "pw").await.unwrap().status, 200);

    // The relying party goes down; the user signs out at the first replica,
    // which queues the delivery, fails to make it, and dies.
    drop(relying_party);
    // Its port stays taken while it is down, so no other test's server
    // takes it before it comes back: a listener that hangs up on every
    // connection (a delivery fails as with nothing there).
    let hold = hang_up_on(gw).await;
    let end_session = format!("http://127.0.0.1:{p1}/idp/end_session");
    let confirm = b.client().get(&end_session).send().await.unwrap();
    let token = orchestrator_tests::browser::hidden(&confirm.text().await.unwrap(), "token")
        .expect("the confirmation form");
    let ended = b
        .client()
        .post(&end_session)
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), 200);
    drop(replica1);
    hold.abort();
    let _ = hold.await;

    // The relying party is back; the second replica finds the job (a retry
    // that is due, or one whose lease ran out) and delivers it.
    let relying_party = start(gw, gateway).await;
    replica2
        .wait_metric_at_least(
            "orchestrator_oidc_backchannel_logouts_total{client=\"gw\",outcome=\"delivered\"}",
            1.0,
            Duration::from_secs(45),
        )
        .await;
    assert_eq!(
        relying_party
            .metric("orchestrator_gateway_backchannel_logouts_total")
            .await,
        Some(1.0)
    );
}

/// Listens on `port` (once the killed process that had it is gone: bounded
/// retries) and closes every connection unanswered, until aborted.
async fn hang_up_on(port: u16) -> tokio::task::JoinHandle<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let listener = loop {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        match socket
            .bind(SocketAddr::from(([127, 0, 0, 1], port)))
            .and_then(|()| socket.listen(64))
        {
            Ok(l) => break l,
            Err(e) => {
                assert!(Instant::now() < deadline, "port {port} not released: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    })
}
