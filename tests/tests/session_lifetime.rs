//! A gateway session lives no longer than the identity behind it: when the
//! ID token expires the session is renewed with the refresh token (fresh
//! claims, the policy checked again), a refused renewal (the user removed
//! at the provider) ends it, and without a refresh token it ends when
//! `identityGrace` runs out. Upgraded connections (WebSocket) end with their
//! session: sign-out, back-channel logout, a reload whose policy refuses the
//! user. All against our own provider over HTTP and a real WebSocket upstream.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use orchestrator_tests::browser::{Browser, sign_out};
use orchestrator_tests::ws::{self, Ws, closed_within};
use orchestrator_tests::{Orchestrator, TestUpstream, run_cli};
use serde_json::Value;

const YAML: &str = r#"
oidcProvider:
  issuer: http://127.0.0.1:{port}/idp
  tokens: {idTokenTtl: {id_ttl}}
  signingKeys:
    - {id: k1, algorithm: ES256, privateKey: "${secret:op-key.pem}"}
  clients:
    - clientId: gw
      clientSecret: gw-secret
      redirectUris: [http://127.0.0.1:{port}/.orchestrator/callback]
      grantTypes: [{grants}]
  users:
{users}
appGateway:
  session: {identityGrace: {grace}, idleTimeout: {idle}}
  identityProviders:
    - name: own
      issuer: "http://127.0.0.1:{port}/idp"
      clientId: gw
      clientSecret: gw-secret
      scopes: [openid, profile, email, groups]
  apps:
    - name: demo
      host: "*"
      pathPrefix: /
      upstream: "{upstream}"
      identityProvider: own
      headers: {X-User: sub, X-Groups: groups}
      policy: {allowGroups: [{allowed}]}
"#;

/// The config's knobs.
struct Knobs {
    id_ttl: &'static str,
    grace: &'static str,
    idle: &'static str,
    grants: &'static str,
    /// Groups of alice; `None`: alice is not a user any more.
    alice_groups: Option<&'static str>,
    allowed: &'static str,
}

impl Default for Knobs {
    fn default() -> Self {
        Self {
            id_ttl: "1h",
            grace: "5m",
            idle: "1h",
            grants: "authorization_code, refresh_token",
            alice_groups: Some("eng"),
            allowed: "eng, ops",
        }
    }
}

struct Setup {
    orch: Orchestrator,
    app: TestUpstream,
}

impl Setup {
    fn yaml(&self, k: &Knobs) -> String {
        yaml(k, &self.app.url())
    }
}

fn yaml(k: &Knobs, upstream: &str) -> String {
    // Bob keeps the user list non-empty when alice is removed.
    let mut users = String::from(
        "    - {username: bob, passwordHash: \"${secret:hash}\", claims: {groups: [ops]}}\n",
    );
    if let Some(groups) = k.alice_groups {
        users.push_str(&format!(
            "    - {{username: alice, passwordHash: \"${{secret:hash}}\", claims: {{email: alice@example.com, email_verified: true, groups: [{groups}]}}}}\n"
        ));
    }
    YAML.replace("{id_ttl}", k.id_ttl)
        .replace("{grace}", k.grace)
        .replace("{idle}", k.idle)
        .replace("{grants}", k.grants)
        .replace("{users}\n", &users)
        .replace("{allowed}", k.allowed)
        .replace("{upstream}", upstream)
}

async fn start(k: &Knobs) -> Setup {
    let app = TestUpstream::echo().await;
    let hash = run_cli(&["hash-password"], "pw\n").await.stdout;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem();
    let orch = Orchestrator::start(
        &yaml(k, &app.url()),
        &[("op-key.pem", key.as_str()), ("hash", hash.trim())],
    )
    .await;
    Setup { orch, app }
}

/// Writes the config for `k` and waits until the reload took.
async fn reload(s: &mut Setup, k: &Knobs, reloads_before: f64) {
    let yaml = s.yaml(k);
    s.orch.update_config(&yaml);
    s.orch
        .wait_metric_at_least(
            "orchestrator_config_reloads_total{result=\"success\"}",
            reloads_before + 1.0,
            Duration::from_secs(10),
        )
        .await;
}

/// What `/page` answers for this browser: the status and, when the
/// upstream was reached, its `X-Groups` header.
async fn page(s: &Setup, b: &Browser) -> (u16, Option<String>) {
    let r = b
        .client()
        .get(format!("{}/page", s.orch.base_url()))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    if status != 200 {
        return (status, None);
    }
    let echo: Value = r.json().await.unwrap();
    let groups = echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0] == "x-groups")
        .map(|h| h[1].as_str().unwrap().to_owned());
    (status, groups)
}

/// Asks `/page` (bounded: every 100 ms for `limit`) until `done` holds.
async fn page_until(
    s: &Setup,
    b: &Browser,
    limit: Duration,
    done: impl Fn(&(u16, Option<String>)) -> bool,
) -> (u16, Option<String>) {
    let deadline = Instant::now() + limit;
    loop {
        let seen = page(s, b).await;
        if done(&seen) || Instant::now() > deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn signed_in(s: &Setup) -> Browser {
    let b = Browser::new();
    let visit = b
        .visit(&format!("{}/page", s.orch.base_url()), "alice", "pw")
        .await
        .unwrap();
    assert_eq!(visit.status, 200, "{}", visit.body);
    b
}

#[tokio::test]
async fn an_expired_identity_is_renewed_with_fresh_claims_and_a_removed_user_is_signed_out() {
    let mut k = Knobs {
        id_ttl: "2s",
        grace: "1m",
        ..Knobs::default()
    };
    let mut s = start(&k).await;
    let b = signed_in(&s).await;
    assert_eq!(page(&s, &b).await, (200, Some("eng".into())));

    // The provider now says alice is in ops: the session learns it when its
    // ID token is renewed, without a new login.
    k.alice_groups = Some("ops");
    reload(&mut s, &k, 0.0).await;
    let seen = page_until(&s, &b, Duration::from_secs(15), |(_, g)| {
        g.as_deref() == Some("ops")
    })
    .await;
    assert_eq!(seen, (200, Some("ops".into())), "{}", s.orch.all_logs());
    assert!(
        s.orch
            .metric("orchestrator_gateway_session_renewals_total{outcome=\"renewed\"}")
            .await
            .unwrap_or(0.0)
            >= 1.0
    );
    // Alice is removed at the provider: the next renewal is refused
    // (invalid_grant) and the session ends at once; the browser is sent
    // to sign in again.
    k.alice_groups = None;
    reload(&mut s, &k, 1.0).await;
    let seen = page_until(&s, &b, Duration::from_secs(15), |(status, _)| {
        *status != 200
    })
    .await;
    assert_eq!(seen.0, 302, "signed out: {}", s.orch.all_logs());
    s.orch
        .wait_metric_at_least(
            "orchestrator_gateway_session_renewals_total{outcome=\"refused\"}",
            1.0,
            Duration::from_secs(5),
        )
        .await;
}

#[tokio::test]
async fn an_idle_session_nobody_reads_again_is_swept_and_one_in_use_stays() {
    let s = start(&Knobs {
        // Long enough for the second login and the first count to come
        // before the first session can run out.
        idle: "5s",
        ..Knobs::default()
    })
    .await;
    let _idle = signed_in(&s).await;
    let in_use = signed_in(&s).await;
    let active = "orchestrator_gateway_active_sessions";
    let expired = "orchestrator_gateway_sessions_ended_total{reason=\"expiry\"}";
    assert_eq!(s.orch.metric(active).await, Some(2.0));
    // Only `in_use` is read from here on: the other ends with nobody asking
    // for it (the sweep), this one stays (bounded: 20 s).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, groups) = page(&s, &in_use).await;
        assert_eq!((status, groups.as_deref()), (200, Some("eng")));
        if s.orch.metric(active).await == Some(1.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the idle session was never swept\n{}",
            s.orch.all_logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(s.orch.metric(expired).await, Some(1.0));
    assert_eq!(page(&s, &in_use).await.0, 200, "the session in use stays");
}

#[tokio::test]
async fn without_a_refresh_token_a_session_ends_when_the_grace_runs_out() {
    let k = Knobs {
        id_ttl: "1s",
        grace: "2s",
        grants: "authorization_code",
        ..Knobs::default()
    };
    let s = start(&k).await;
    let started = Instant::now();
    let b = signed_in(&s).await;
    // Past the ID token's `exp` but inside the grace it is still served.
    assert_eq!(page(&s, &b).await.0, 200);
    let seen = page_until(&s, &b, Duration::from_secs(10), |(status, _)| {
        *status != 200
    })
    .await;
    assert_eq!(seen.0, 302, "the session ends: {}", s.orch.all_logs());
    // `exp` is in whole seconds: exp + grace is at least 2 s after login.
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "not before exp + grace"
    );
    s.orch
        .wait_metric_at_least(
            "orchestrator_gateway_session_renewals_total{outcome=\"expired\"}",
            1.0,
            Duration::from_secs(5),
        )
        .await;
}

/// A WebSocket to the echo upstream through the gateway, with `b`'s cookies.
async fn websocket(s: &Setup, b: &Browser) -> Ws {
    let url = format!("ws://127.0.0.1:{}/ws", s.orch.port());
    ws::open_echo(&url, &b.cookies_for(&s.orch.base_url())).await
}

#[tokio::test]
async fn a_websocket_is_closed_when_its_session_signs_out() {
    let s = start(&Knobs::default()).await;
    let b = signed_in(&s).await;
    let mut ws = websocket(&s, &b).await;
    // Another user's tunnel stays open.
    let other = signed_in(&s).await;
    let mut other_ws = websocket(&s, &other).await;

    let signed_out = Instant::now();
    let r = sign_out(
        b.client(),
        &format!("{}/.orchestrator/logout", s.orch.base_url()),
    )
    .await;
    assert!(r.status().is_redirection(), "{}", r.status());
    assert!(
        closed_within(&mut ws, Duration::from_secs(1)).await,
        "closed within a second of the sign-out"
    );
    assert!(signed_out.elapsed() < Duration::from_secs(2));
    assert!(
        ws::echoes(&mut other_ws, "still").await,
        "the other tunnel still answers"
    );
    assert_eq!(
        s.orch
            .metric("orchestrator_gateway_tunnels_closed_total")
            .await,
        Some(1.0)
    );
}

#[tokio::test]
async fn a_websocket_is_closed_when_a_reload_refuses_its_user() {
    let mut k = Knobs::default();
    let mut s = start(&k).await;
    let b = signed_in(&s).await;
    let mut ws = websocket(&s, &b).await;
    // Same policy, other wording: the tunnel stays.
    k.allowed = "ops, eng";
    reload(&mut s, &k, 0.0).await;
    assert!(
        !closed_within(&mut ws, Duration::from_millis(1500)).await,
        "a policy that still admits alice keeps the tunnel"
    );
    k.allowed = "ops";
    reload(&mut s, &k, 1.0).await;
    assert!(
        closed_within(&mut ws, Duration::from_secs(1)).await,
        "closed once the policy refuses alice"
    );
}

#[tokio::test]
async fn a_websocket_is_closed_when_its_session_expires_unrenewed() {
    let k = Knobs {
        id_ttl: "1s",
        grace: "1s",
        grants: "authorization_code",
        ..Knobs::default()
    };
    let s = start(&k).await;
    let b = signed_in(&s).await;
    let mut ws = websocket(&s, &b).await;
    assert!(
        closed_within(&mut ws, Duration::from_secs(6)).await,
        "closed once the identity is over"
    );
}
