//! End-to-end tests of the gateway against real parts on loopback: an echo
//! upstream, panva's certified `oidc-provider` (node), Redis for `shared`.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use orchestrator_cache::{Cache, RedisCache, testing::TestRedis};
use reqwest::StatusCode;
use serde_json::json;

struct Setup {
    op: NodeOp,
    upstream: EchoUpstream,
    gw: GatewayServer,
}

async fn setup(overrides: serde_json::Value) -> Setup {
    init_crypto();
    let upstream = EchoUpstream::start().await;
    let bound = Bound::new().await;
    let op = NodeOp::start(&[bound.callback()]).await;
    let cfg = config(
        &op.issuer,
        &upstream.url(),
        &closed_port_url().await,
        overrides,
    );
    let gw = GatewayServer::start(bound, &cfg, memory_cache());
    Setup { op, upstream, gw }
}

#[tokio::test]
async fn first_visit_logs_in_and_returns_to_the_original_url_with_identity() {
    let s = setup(json!({})).await;
    let b = browser();
    let v = b
        .visit(
            &s.gw.url("/dash/board?x=1&y=%20z"),
            "alice",
            "alice-password",
        )
        .await;
    assert_eq!(v.status, StatusCode::OK, "{}", v.body);
    assert_eq!(v.login_forms, 1);
    assert_eq!(
        v.url,
        s.gw.url("/dash/board?x=1&y=%20z"),
        "back to the original URL"
    );
    let e = v.echoed();
    assert_eq!(e.path(), "/dash/board");
    assert_eq!(e.0["query"], "x=1&y=%20z");
    assert_eq!(e.header("x-auth-request-user").as_deref(), Some("alice"));
    assert_eq!(
        e.header("x-auth-request-email").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(
        e.header("x-auth-request-groups").as_deref(),
        Some("engineering,admins")
    );
    assert_eq!(e.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(e.header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(e.header("x-forwarded-host"), Some(s.gw.addr.to_string()));
    assert_eq!(e.header("host"), Some(s.upstream.addr.to_string()));
    // The session cookie never reaches the app.
    assert!(
        e.header_all("cookie")
            .iter()
            .all(|c| !c.contains("gw_session")),
        "{:?}",
        e.header_all("cookie")
    );

    // The assertion verifies against the gateway's JWKS, for this app only.
    let jwt = e.header("x-orchestrator-assertion").unwrap();
    let jwks: jsonwebtoken::jwk::JwkSet = reqwest::get(s.gw.url("/.orchestrator/jwks"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(&jwt).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&["demo"]);
    validation.set_issuer(&[orchestrator_gateway::ASSERTION_ISSUER]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(&jwt, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["groups"], json!(["engineering", "admins"]));
    assert!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap() <= 60);
    validation.set_audience(&["admin"]);
    assert!(jsonwebtoken::decode::<serde_json::Value>(&jwt, &key, &validation).is_err());

    // Logged in now: no more round trips.
    let again = b
        .visit(&s.gw.url("/other"), "alice", "alice-password")
        .await;
    assert_eq!(again.hops.len(), 1);
    assert_eq!(again.login_forms, 0);

    // Metrics were recorded.
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&s.gw.registry.gather())
        .unwrap();
    assert!(
        text.contains(
            r#"orchestrator_gateway_logins_total{idp="node",reason="ok",result="success"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"orchestrator_gateway_requests_total{app="demo",class="2xx"} 2"#),
        "{text}"
    );
    assert!(
        text.contains("orchestrator_gateway_active_sessions 1"),
        "{text}"
    );
    assert!(
        text.contains("orchestrator_gateway_upstream_duration_seconds_count{app=\"demo\"} 2"),
        "{text}"
    );
}

#[tokio::test]
async fn hop_by_hop_headers_and_api_clients() {
    let s = setup(json!({})).await;
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // Without a session: browsers are redirected, API calls get 401.
    let r = c
        .get(s.gw.url("/x"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with(&format!("{}/auth?", s.op.issuer))
    );
    let r = c
        .get(s.gw.url("/x"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c
        .get(s.gw.url("/x"))
        .header("x-requested-with", "XMLHttpRequest")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c.post(s.gw.url("/x")).body("data").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A public path: response hop-by-hop headers (and those named in Connection) are dropped.
    let r = c.get(s.gw.url("/public/a")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get("x-hop").is_none());
}

#[tokio::test]
async fn forged_identity_headers_never_reach_the_upstream() {
    let s = setup(json!({})).await;
    let c = reqwest::Client::new();
    // Public path, no session: none of the forged headers pass, in any spelling.
    let forged = [
        ("X-Auth-Request-User", "mallory"),
        ("x-auth-request-user", "mallory2"),
        ("X_Auth_Request_Email", "mallory@example.com"),
        ("x_auth_request_groups", "admins"),
        ("X-AUTH-REQUEST-GROUPS", "admins"),
        ("X-Orchestrator-Assertion", "forged.jwt.value"),
        ("x_orchestrator_assertion", "forged"),
    ];
    let mut req = c.get(s.gw.url("/public/page"));
    for (k, v) in forged {
        req = req.header(k, v);
    }
    let e = Echoed(req.send().await.unwrap().json().await.unwrap());
    for name in e.header_names() {
        let canon = name.replace('_', "-");
        assert!(
            !canon.starts_with("x-auth-request") && canon != "x-orchestrator-assertion",
            "{name} leaked"
        );
    }
    // Logged in: exactly the gateway's values, once each.
    let b = browser();
    b.visit(&s.gw.url("/"), "alice", "alice-password").await;
    let mut req = b.client.get(s.gw.url("/me"));
    for (k, v) in forged {
        req = req.header(k, v);
    }
    let e = Echoed(req.send().await.unwrap().json().await.unwrap());
    assert_eq!(
        e.header_all("x-auth-request-user"),
        vec!["alice".to_owned()]
    );
    assert_eq!(
        e.header_all("x-auth-request-groups"),
        vec!["engineering,admins".to_owned()]
    );
    assert_eq!(e.header_all("x-orchestrator-assertion").len(), 1);
    assert_ne!(
        e.header("x-orchestrator-assertion").as_deref(),
        Some("forged.jwt.value")
    );
    assert!(
        e.header_names().iter().all(|n| !n.contains('_')),
        "{:?}",
        e.header_names()
    );
}

#[tokio::test]
async fn policy_allows_and_denies() {
    let s = setup(json!({})).await;
    let alice = browser();
    let bob = browser();
    let carol = browser();
    let cases = [
        (
            &alice,
            "alice",
            "/admin/x",
            StatusCode::OK,
            "in the admins group",
        ),
        (
            &alice,
            "alice",
            "/mail",
            StatusCode::OK,
            "verified address in the domain",
        ),
        (
            &alice,
            "alice",
            "/sales",
            StatusCode::FORBIDDEN,
            "no `department` claim",
        ),
        (
            &bob,
            "bob",
            "/admin/x",
            StatusCode::FORBIDDEN,
            "not an admin",
        ),
        (
            &bob,
            "bob",
            "/mail",
            StatusCode::FORBIDDEN,
            "address in the domain but not verified",
        ),
        (
            &carol,
            "carol",
            "/mail",
            StatusCode::FORBIDDEN,
            "address in the domain without email_verified (Entra ID's nOAuth class)",
        ),
        (
            &bob,
            "bob",
            "/",
            StatusCode::OK,
            "no policy on the root app: any logged-in user",
        ),
    ];
    for (who, user, path, expected, why) in cases {
        let page = who
            .visit(&s.gw.url(path), user, &format!("{user}-password"))
            .await;
        assert_eq!(page.status, expected, "{user} {path}: {why}");
        if expected == StatusCode::FORBIDDEN && path == "/admin/x" {
            assert!(page.body.contains("admin"), "the page names the app");
            assert!(
                !page.body.contains(&s.upstream.addr.port().to_string()),
                "no internals"
            );
        }
    }
}

/// With shared sessions pending logins go to the cache backend, whose memory
/// the provider's security state needs too: one replica writes at most
/// `maxPendingLoginBytes` of them per `pendingLoginTtl`, then answers 429.
#[tokio::test]
async fn shared_pending_logins_are_bounded_in_bytes() {
    let s = setup(json!({"session": {"store": "shared"}, "maxPendingLoginBytes": 65536})).await;
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut statuses = Vec::new();
    for i in 0..200 {
        let url = s.gw.url(&format!("/page?n={i}&pad={}", "p".repeat(1500)));
        let r = c
            .get(url)
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    let started = statuses.iter().filter(|s| **s == 302).count();
    // About 2 KB each: 65,536 bytes hold a few dozen, never all 200.
    assert!((10..60).contains(&started), "{started} logins started");
    assert!(
        statuses[started..].iter().all(|s| *s == 429),
        "once the budget is spent every login waits: {statuses:?}"
    );
}

/// `trustEmail: true` is the one way an IdP's unverified-looking address
/// passes `allowEmailDomains`; an explicit `email_verified: false` never does.
#[tokio::test]
async fn trust_email_accepts_addresses_without_email_verified() {
    let s = setup(json!({})).await;
    let mut cfg = config(
        &s.op.issuer,
        &s.upstream.url(),
        &closed_port_url().await,
        json!({}),
    );
    cfg.identity_providers[0].trust_email = true;
    s.gw.gateway.reconfigure(&cfg, &Default::default()).unwrap();
    let carol = browser()
        .visit(&s.gw.url("/mail"), "carol", "carol-password")
        .await;
    assert_eq!(carol.status, StatusCode::OK, "{}", carol.body);
    let bob = browser()
        .visit(&s.gw.url("/mail"), "bob", "bob-password")
        .await;
    assert_eq!(bob.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn public_paths_and_path_normalisation_bypasses() {
    let s = setup(json!({})).await;
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get = |p: &str| c.get(s.gw.url(p)).header("accept", "text/html").send();
    let r = get("/public/a.css").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(Echoed(r.json().await.unwrap()).path(), "/public/a.css");
    // The upstream receives exactly the path that was checked.
    let r = get("/public/./x/../y").await.unwrap();
    assert_eq!(Echoed(r.json().await.unwrap()).path(), "/public/y");
    for escape in [
        "/public/../secret",
        "/public/%2e%2e/secret",
        "/public/.%2E/secret",
        "//secret",
        "/public/x/../../secret",
    ] {
        let r = get(escape).await.unwrap();
        assert_eq!(r.status(), StatusCode::FOUND, "{escape} must require login");
    }
    for bad in [
        "/public/..;/secret",
        "/public;/x",
        "/public/..%2fsecret",
        "/public/%2e%2e%5csecret",
        "/public%2f..%2fsecret",
    ] {
        let r = get(bad).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    // A logged-in user who is not an admin cannot reach /admin by any spelling.
    let bob = browser();
    bob.visit(&s.gw.url("/"), "bob", "bob-password").await;
    for admin in [
        "/admin",
        "/public/../admin",
        "/%61dmin/x",
        "//admin",
        "/./admin",
        "/x/%2e%2e/admin",
    ] {
        let r = bob.client.get(s.gw.url(admin)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{admin}");
    }
}

#[tokio::test]
async fn every_open_redirect_form_is_refused() {
    let s = setup(json!({})).await;
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let host = s.gw.addr.to_string();
    let refused = [
        "//evil.example".to_owned(),
        "//evil.example/x".to_owned(),
        "/\\evil.example".to_owned(),
        "\\\\evil.example".to_owned(),
        "https:evil.example".to_owned(),
        "http:/evil.example".to_owned(),
        "https://evil.example/".to_owned(),
        format!("http://{host}@evil.example/"),
        "%2F%2Fevil.example".to_owned(),
        "/%2F%2Fevil.example".to_owned(),
        "/%5Cevil.example".to_owned(),
        "/%255C%255Cevil.example".to_owned(),
        "/%09/evil.example".to_owned(),
        "javascript:alert(1)".to_owned(),
    ];
    for rd in &refused {
        let url = reqwest::Url::parse_with_params(&s.gw.url("/.orchestrator/login"), &[("rd", rd)])
            .unwrap();
        let r = c.get(url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "rd={rd:?}");
    }
    // Same-host absolute URL and a plain path are fine and land after login.
    let b = browser();
    let rd = format!("http://{host}/landing?from=login");
    let url =
        reqwest::Url::parse_with_params(&s.gw.url("/.orchestrator/login"), &[("rd", &rd)]).unwrap();
    let v = b.visit(url.as_str(), "alice", "alice-password").await;
    assert_eq!(v.status, StatusCode::OK);
    assert_eq!(v.echoed().path(), "/landing");
    assert_eq!(v.url, s.gw.url("/landing?from=login"));
}

#[tokio::test]
async fn several_tabs_log_in_at_once() {
    let s = setup(json!({})).await;
    let b = browser();
    let c = &b.client;
    // Two logins started before either completes: both states stay valid.
    let r1 = c
        .get(s.gw.url("/tab1"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    let r2 = c
        .get(s.gw.url("/tab2"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    let l1 = r1.headers()["location"].to_str().unwrap().to_owned();
    let l2 = r2.headers()["location"].to_str().unwrap().to_owned();
    let v1 = b.visit(&l1, "alice", "alice-password").await;
    let v2 = b.visit(&l2, "alice", "alice-password").await;
    assert_eq!(v1.echoed().path(), "/tab1");
    assert_eq!(v2.echoed().path(), "/tab2");
    // A callback from a browser that did not start the login fails.
    let other = browser();
    let starter = browser();
    let r3 = starter
        .client
        .get(s.gw.url("/tab3"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    let l3 = r3.headers()["location"].to_str().unwrap().to_owned();
    let state = reqwest::Url::parse(&l3)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let forged = reqwest::Url::parse_with_params(
        &s.gw.url("/.orchestrator/callback"),
        &[("state", state.as_str()), ("code", "x")],
    )
    .unwrap();
    let r = other.client.get(forged).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Replayed or unknown state.
    let r = c
        .get(s.gw.url("/.orchestrator/callback?state=nope&code=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn idle_sessions_end() {
    let s = setup(json!({"session": {"idleTimeout": "1s"}})).await;
    let b = browser();
    assert_eq!(
        b.visit(&s.gw.url("/"), "alice", "alice-password")
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        b.client.get(s.gw.url("/")).send().await.unwrap().status(),
        StatusCode::OK
    );
    // Letting the idle timeout pass is the behaviour under test, not synchronisation.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let r = b
        .client
        .get(s.gw.url("/"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND, "an idle session must end");
}

#[tokio::test]
async fn sessions_end_at_max_lifetime_even_when_active() {
    let s = setup(json!({"session": {"maxLifetime": "2s"}})).await;
    let b = browser();
    let start = Instant::now();
    assert_eq!(
        b.visit(&s.gw.url("/"), "alice", "alice-password")
            .await
            .status,
        StatusCode::OK
    );
    let mut ok_after_1s = false;
    let ended = loop {
        let r = b
            .client
            .get(s.gw.url("/"))
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::FOUND {
            break start.elapsed();
        }
        ok_after_1s |= start.elapsed() > Duration::from_secs(1);
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "session never expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        ok_after_1s,
        "active use kept it alive until the lifetime ended"
    );
    assert!(ended <= Duration::from_secs(5), "{ended:?}");
}

#[tokio::test]
async fn logout_drops_the_session_and_continues_to_the_idp() {
    let s = setup(json!({})).await;
    let b = browser();
    b.visit(&s.gw.url("/"), "alice", "alice-password").await;
    let r = b.logout(&s.gw.url("/.orchestrator/logout")).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let loc = reqwest::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    assert!(
        loc.as_str()
            .starts_with(&format!("{}/session/end", s.op.issuer)),
        "{loc}"
    );
    let q: std::collections::HashMap<_, _> = loc.query_pairs().into_owned().collect();
    assert!(q.contains_key("id_token_hint"));
    assert_eq!(q.get("post_logout_redirect_uri"), Some(&s.gw.url("/")));
    assert!(
        r.headers()
            .get_all("set-cookie")
            .iter()
            .any(|c| c.to_str().unwrap().starts_with("gw_session=;"))
    );
    // The IdP accepts the request (it shows its confirmation page).
    assert_eq!(
        b.client.get(loc).send().await.unwrap().status(),
        StatusCode::OK
    );
    // The old cookie value is dead even if a client keeps sending it.
    let r = b
        .client
        .get(s.gw.url("/"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
}

#[tokio::test]
async fn logout_at_the_idp_can_be_turned_off_per_idp() {
    let s = setup(json!({})).await;
    let mut cfg = config(
        &s.op.issuer,
        &s.upstream.url(),
        &closed_port_url().await,
        json!({}),
    );
    cfg.identity_providers[0].logout_at_idp = false;
    s.gw.gateway
        .reconfigure(&cfg, &orchestrator_config::ListenConfig::default())
        .unwrap();
    let b = browser();
    b.visit(&s.gw.url("/"), "alice", "alice-password").await;
    let r = b.logout(&s.gw.url("/.orchestrator/logout")).await;
    // Only the gateway session ends: a page, not the IdP's end-session.
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get("location").is_none());
}

#[tokio::test]
async fn a_session_unknown_to_this_process_relogs_in_without_a_password() {
    init_crypto();
    let upstream = EchoUpstream::start().await;
    let (ba, bb) = (Bound::new().await, Bound::new().await);
    let op = NodeOp::start(&[ba.callback(), bb.callback()]).await;
    let down = closed_port_url().await;
    let a = GatewayServer::start(
        ba,
        &config(&op.issuer, &upstream.url(), &down, json!({})),
        memory_cache(),
    );
    let b_gw = GatewayServer::start(
        bb,
        &config(&op.issuer, &upstream.url(), &down, json!({})),
        memory_cache(),
    );
    let b = browser();
    let first = b.visit(&a.url("/"), "alice", "alice-password").await;
    assert_eq!(first.login_forms, 1);
    // Same cookie (cookies ignore ports), another process: it knows nothing,
    // starts a login, and the IdP's SSO session answers without a form.
    let forms_before = op.login_forms_shown().await;
    let v = b
        .visit(
            &b_gw.url("/elsewhere"),
            "alice",
            "wrong-password-never-used",
        )
        .await;
    assert_eq!(v.status, StatusCode::OK, "{}", v.body);
    assert_eq!(v.login_forms, 0);
    assert!(v.hops.len() > 1, "went through the IdP");
    assert_eq!(op.login_forms_shown().await, forms_before);
    assert_eq!(
        v.echoed().header("x-auth-request-user").as_deref(),
        Some("alice")
    );
}

#[tokio::test]
async fn shared_store_serves_a_session_from_any_gateway() {
    init_crypto();
    let redis = TestRedis::start();
    let upstream = EchoUpstream::start().await;
    let (ba, bb) = (Bound::new().await, Bound::new().await);
    let op = NodeOp::start(&[ba.callback()]).await;
    let down = closed_port_url().await;
    let shared = json!({"session": {"store": "shared"}});
    let cache =
        |_: ()| -> Arc<dyn Cache> { Arc::new(RedisCache::new(&redis.config("gwtest:")).unwrap()) };
    let a = GatewayServer::start(
        ba,
        &config(&op.issuer, &upstream.url(), &down, shared.clone()),
        cache(()),
    );
    let b_gw = GatewayServer::start(
        bb,
        &config(&op.issuer, &upstream.url(), &down, shared),
        cache(()),
    );
    let b = browser();
    assert_eq!(
        b.visit(&a.url("/"), "alice", "alice-password").await.status,
        StatusCode::OK
    );
    // Through B: no login at all, the session comes from Redis.
    let v = b
        .visit(&b_gw.url("/via-b"), "alice", "alice-password")
        .await;
    assert_eq!(v.status, StatusCode::OK);
    assert_eq!(v.hops.len(), 1, "{:?}", v.hops);
    assert_eq!(
        v.echoed().header("x-auth-request-email").as_deref(),
        Some("alice@example.com")
    );
    // Logout through B ends it for A too (A's near-cache is bounded by a few seconds).
    b.logout(&b_gw.url("/.orchestrator/logout")).await;
    let cookie = format!("gw_session={}", "A".repeat(43));
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(a.url("/"))
        .header("cookie", cookie)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::FOUND,
        "unknown ids are not sessions"
    );
}

#[tokio::test]
async fn websocket_echo_through_the_gateway() {
    use futures::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest as _};
    let s = setup(json!({})).await;
    let b = browser();
    b.visit(&s.gw.url("/"), "alice", "alice-password").await;
    let mut req = format!("ws://{}/ws", s.gw.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("cookie", b.cookie_header(&s.gw.url("/")).parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("hello through the gateway"))
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        got.into_text().unwrap().as_str(),
        "hello through the gateway"
    );
    // Without a session the handshake is refused.
    let anon = format!("ws://{}/ws", s.gw.addr)
        .into_client_request()
        .unwrap();
    assert!(tokio_tungstenite::connect_async(anon).await.is_err());
}

#[tokio::test]
async fn an_http2_client_is_served() {
    let s = setup(json!({})).await;
    let b = browser();
    b.visit(&s.gw.url("/"), "alice", "alice-password").await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = h2
        .get(s.gw.url("/over-h2"))
        .header("cookie", b.cookie_header(&s.gw.url("/")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), StatusCode::OK);
    let e = Echoed(r.json().await.unwrap());
    assert_eq!(e.path(), "/over-h2");
    assert_eq!(e.header("x-auth-request-user").as_deref(), Some("alice"));
    assert_eq!(e.header("x-forwarded-host"), Some(s.gw.addr.to_string()));
}

#[tokio::test]
async fn upstream_down_is_502_and_slow_is_504() {
    let s = setup(json!({})).await;
    let b = browser();
    b.visit(&s.gw.url("/"), "alice", "alice-password").await;
    let r = b.client.get(s.gw.url("/down/x")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let body = r.text().await.unwrap();
    assert!(body.contains("down"), "names the app");
    assert!(!body.contains("127.0.0.1"), "no internals: {body}");
    let started = Instant::now();
    let r = b.client.get(s.gw.url("/slow")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(r.text().await.unwrap().contains("demo"));
}

#[tokio::test]
async fn reconfigure_keeps_sessions_and_applies_new_policy() {
    let s = setup(json!({})).await;
    let b = browser();
    assert_eq!(
        b.visit(&s.gw.url("/admin"), "alice", "alice-password")
            .await
            .status,
        StatusCode::OK
    );
    let mut cfg = config(
        &s.op.issuer,
        &s.upstream.url(),
        &closed_port_url().await,
        json!({}),
    );
    cfg.apps[1].policy.allow_groups = vec!["nobody".into()];
    s.gw.gateway
        .reconfigure(&cfg, &orchestrator_config::ListenConfig::default())
        .unwrap();
    assert_eq!(
        b.client.get(s.gw.url("/")).send().await.unwrap().status(),
        StatusCode::OK,
        "session kept"
    );
    assert_eq!(
        b.client
            .get(s.gw.url("/admin"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn https_upstream_with_private_ca_speaks_http2_and_mtls() {
    init_crypto();
    let dir = tempfile::tempdir().unwrap();
    for mtls in [false, true] {
        let (addr, task, ca, client) = tls_echo(dir.path(), mtls).await;
        let bound = Bound::new().await;
        let op = NodeOp::start(&[bound.callback()]).await;
        let mut tls = json!({"caFile": ca});
        if let Some((c, k)) = &client {
            tls["certFile"] = json!(c);
            tls["keyFile"] = json!(k);
        }
        let mut cfg = config(
            &op.issuer,
            "http://127.0.0.1:9",
            "http://127.0.0.1:9",
            json!({}),
        );
        cfg.apps[0].upstream = Some(format!("https://localhost:{}", addr.port()));
        cfg.apps[0].upstream_tls = Some(serde_json::from_value(tls).unwrap());
        let gw = GatewayServer::start(bound, &cfg, memory_cache());
        let r = reqwest::get(gw.url("/public/tls")).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "mtls={mtls}");
        let e = Echoed(r.json().await.unwrap());
        assert_eq!(e.0["version"], "HTTP/2.0", "ALPN picked h2");
        assert_eq!(e.path(), "/public/tls");
        if mtls {
            // Without the client certificate the upstream refuses the handshake: 502.
            let bound = Bound::new().await;
            cfg.apps[0].upstream_tls.as_mut().unwrap().cert_file = None;
            cfg.apps[0].upstream_tls.as_mut().unwrap().key_file = None;
            let gw = GatewayServer::start(bound, &cfg, memory_cache());
            let r = reqwest::get(gw.url("/public/tls")).await.unwrap();
            assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
        }
        task.abort();
    }
    // A CA file that does not exist fails the build, naming the key.
    let mut cfg = config(
        "http://127.0.0.1:9",
        "https://localhost:1",
        "http://127.0.0.1:9",
        json!({}),
    );
    cfg.apps[0].upstream_tls =
        Some(serde_json::from_value(json!({"caFile": "/nonexistent/ca.pem"})).unwrap());
    let metrics =
        Arc::new(orchestrator_gateway::GatewayMetrics::new(&prometheus::Registry::new()).unwrap());
    let err =
        orchestrator_gateway::Gateway::new(&cfg, &Default::default(), memory_cache(), metrics)
            .unwrap_err();
    assert!(
        err.to_string()
            .contains("appGateway.apps[0].upstreamTls.caFile"),
        "{err}"
    );
}
