//! Identity orchestration: our OpenID Provider logs users in through an
//! upstream IdP (panva's certified `oidc-provider`), and a certified relying
//! party library (the `openidconnect` crate) walks code + PKCE + nonce
//! through our provider into the upstream and back; the gateway in front of
//! our provider too. Bad input: an unknown upstream, an upstream that is
//! down or refuses our client, a replayed or tampered state.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use openidconnect::OAuth2TokenResponse as _;
use openidconnect::core::{CoreClient, CoreIdTokenClaims, CoreProviderMetadata, CoreResponseType};
use std::time::Duration;

use openidconnect::{
    AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    PkceCodeChallenge, RedirectUrl, Scope, TokenResponse as _,
};
use orchestrator_cache::testing::TestRedis;
use orchestrator_tests::browser::{Browser, End, walk};
use orchestrator_tests::node_op::NodeOp;
use orchestrator_tests::{Orchestrator, Setup, TestUpstream, free_port, run_cli};
use serde_json::Value;

const RP_REDIRECT: &str = "http://rp.test/cb";

/// Our provider with panva as its only upstream (no local users), a client
/// for the test's relying party, and the gateway in front of our provider.
fn yaml(op_issuer: &str, upstream_secret: &str, app: &str, extra_upstream: &str) -> String {
    format!(
        r#"
oidcProvider:
  issuer: http://127.0.0.1:{{port}}/idp
  signingKeys:
    - {{id: k, algorithm: ES256, privateKey: "${{secret:op-key.pem}}"}}
  clients:
    - clientId: rp
      clientSecret: rp-secret
      redirectUris: [{RP_REDIRECT}]
      postLogoutRedirectUris: [http://rp.test/bye]
    - clientId: gw
      clientSecret: gw-secret
      redirectUris: [http://127.0.0.1:{{port}}/.orchestrator/callback]
  upstreams:
    - name: panva
      issuer: {op_issuer}
      clientId: gateway
      clientSecret: {upstream_secret}
      scopes: [openid, email, profile, groups]
{extra_upstream}
appGateway:
  identityProviders:
    - {{name: own, issuer: "http://127.0.0.1:{{port}}/idp", clientId: gw, clientSecret: gw-secret, scopes: [openid, email, profile, groups]}}
  apps:
    - name: demo
      host: "*"
      pathPrefix: /app
      upstream: {app}
      identityProvider: own
      policy: {{allowGroups: [engineering], allowEmailDomains: [example.com]}}
      headers: {{X-User: sub, X-Email: email, X-Groups: groups, X-Idp: idp}}
"#
    )
}

struct Fed {
    orch: Orchestrator,
    op: NodeOp,
    _app: TestUpstream,
}

async fn start_with(upstream_secret: &str, extra_upstream: &str) -> Fed {
    let app = TestUpstream::echo().await;
    let (port, admin) = (free_port(), free_port());
    let callback = format!("http://127.0.0.1:{port}/idp/upstreams/panva/callback");
    let op = NodeOp::start("127.0.0.1", &[callback]).await;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem();
    let yaml = yaml(&op.issuer, upstream_secret, &app.url(), extra_upstream);
    let orch = Orchestrator::start_with(Setup {
        yaml: &yaml,
        secrets: &[("op-key.pem", key.as_str())],
        ports: Some((port, admin)),
        ..Setup::default()
    })
    .await;
    Fed {
        orch,
        op,
        _app: app,
    }
}

async fn start() -> Fed {
    start_with("gateway-secret", "").await
}

/// Walks to the first redirect to the relying party: its URL.
async fn walk_to_rp(b: &Browser, url: &str, user: &str) -> Result<url::Url, String> {
    match walk(b, url, user, |u| u.as_str().starts_with(RP_REDIRECT)).await? {
        End::Redirect(u) => Ok(u),
        End::Page { url, status, body } => Err(format!("{url} answered {status}: {body}")),
    }
}

/// A certified RP (the `openidconnect` crate) against our provider.
struct Rp {
    client: CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    >,
    http: reqwest::Client,
}

impl Rp {
    async fn discover(issuer: &str) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let metadata =
            CoreProviderMetadata::discover_async(IssuerUrl::new(issuer.to_owned()).unwrap(), &http)
                .await
                .unwrap();
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new("rp".into()),
            Some(ClientSecret::new("rp-secret".into())),
        )
        .set_redirect_uri(RedirectUrl::new(RP_REDIRECT.into()).unwrap());
        Self { client, http }
    }

    /// The token response of a login of `user` in browser `b`.
    async fn tokens_in(&self, b: &Browser, user: &str) -> openidconnect::core::CoreTokenResponse {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, _, _) = self
            .client
            .authorize_url(
                AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("email".into()))
            .set_pkce_challenge(challenge)
            .url();
        let back = walk_to_rp(b, url.as_str(), user).await.unwrap();
        let code = back
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| panic!("no code: {back}"));
        self.client
            .exchange_code(AuthorizationCode::new(code))
            .unwrap()
            .set_pkce_verifier(verifier)
            .request_async(&self.http)
            .await
            .unwrap()
    }

    /// Logs `user` in with a fresh browser; the verified ID token's claims,
    /// and its whole payload (the claims the library has no field for).
    async fn login(&self, user: &str, extra: &[(&str, &str)]) -> (CoreIdTokenClaims, Value) {
        let (claims, payload, _) = self.login_in(&Browser::new(), user, extra).await;
        (claims, payload)
    }

    /// [`login`](Self::login) in browser `b`; also the raw ID token.
    async fn login_in(
        &self,
        b: &Browser,
        user: &str,
        extra: &[(&str, &str)],
    ) -> (CoreIdTokenClaims, Value, String) {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = self
            .client
            .authorize_url(
                AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .add_scope(Scope::new("groups".into()))
            .set_pkce_challenge(challenge);
        for (k, v) in extra {
            request = request.add_extra_param(*k, *v);
        }
        let (url, state, nonce) = request.url();
        let back = walk_to_rp(b, url.as_str(), user).await.unwrap();
        let q = |name: &str| {
            back.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        assert_eq!(q("state").as_deref(), Some(state.secret().as_str()));
        let code = q("code").unwrap_or_else(|| panic!("no code: {back}"));
        let token = self
            .client
            .exchange_code(AuthorizationCode::new(code))
            .unwrap()
            .set_pkce_verifier(verifier)
            .request_async(&self.http)
            .await
            .unwrap();
        let id_token = token.id_token().unwrap();
        let claims = id_token
            .claims(&self.client.id_token_verifier(), &nonce)
            .unwrap()
            .clone();
        // Verified above; read the rest of the payload.
        let raw = id_token.to_string();
        let payload = raw.split('.').nth(1).unwrap();
        let payload: Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
                .unwrap(),
        )
        .unwrap();
        (claims, payload, raw)
    }
}

#[tokio::test]
async fn a_certified_rp_logs_in_through_our_provider_into_the_upstream() {
    let f = start().await;
    let issuer = format!("{}/idp", f.orch.base_url());
    let rp = Rp::discover(&issuer).await;

    let (alice, v) = rp.login("alice", &[]).await;
    assert_eq!(
        alice.issuer().as_str(),
        issuer,
        "our issuer, not the upstream's"
    );
    let sub = alice.subject().as_str().to_owned();
    assert!(sub.starts_with("panva."), "{sub}");
    assert_ne!(sub, "alice", "never the raw upstream sub");
    assert_eq!(v["email"], "alice@example.com");
    assert_eq!(v["email_verified"], true);
    assert_eq!(v["groups"], serde_json::json!(["engineering", "admins"]));
    assert_eq!(v["idp"], "panva");

    // Stable: the same upstream user is the same user at the next login.
    let (again, _) = rp.login("alice", &[]).await;
    assert_eq!(again.subject().as_str(), sub);
    // bob's upstream says email_verified false; carol's says nothing (as
    // Entra does): neither address counts as verified.
    let (_, bob) = rp.login("bob", &[]).await;
    assert_eq!(bob["email_verified"], false);
    let (_, carol) = rp.login("carol", &[]).await;
    assert_eq!(carol["email"], "carol@example.com");
    assert_eq!(carol["email_verified"], false);
    assert_ne!(carol["sub"], serde_json::json!(sub));

    let logins = f
        .orch
        .metric("orchestrator_oidc_upstream_logins_total{outcome=\"success\",upstream=\"panva\"}")
        .await;
    assert_eq!(logins, Some(4.0));
}

#[tokio::test]
async fn the_gateway_in_front_logs_in_through_our_provider_and_the_upstream() {
    let f = start().await;
    let b = Browser::new();
    let start = format!("{}/app/dash", f.orch.base_url());
    // gateway → our provider → panva (its form) → our provider → gateway.
    let End::Page {
        url: current,
        status,
        body,
    } = walk(&b, &start, "alice", |_| false).await.unwrap()
    else {
        panic!("the walk stopped at a redirect");
    };
    assert_eq!(status, 200, "{current}: {body}");
    assert_eq!(current.as_str(), start);
    let echo: Value = serde_json::from_str(&body).unwrap();
    let header = |name: &str| {
        echo["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h[0] == name)
            .map(|h| h[1].as_str().unwrap().to_owned())
    };
    assert!(header("x-user").unwrap().starts_with("panva."));
    assert_eq!(header("x-email").as_deref(), Some("alice@example.com"));
    assert_eq!(header("x-groups").as_deref(), Some("engineering,admins"));
    assert_eq!(header("x-idp").as_deref(), Some("panva"));
}

/// The relying party's redirect after a failed login: the OAuth error.
async fn error_for(f: &Fed, extra: &str, user: &str) -> (String, String) {
    let url = format!(
        "{}/idp/authorize?response_type=code&client_id=rp&redirect_uri={RP_REDIRECT}\
         &scope=openid&state=s1&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM\
         &code_challenge_method=S256{extra}",
        f.orch.base_url()
    );
    let back = walk_to_rp(&Browser::new(), &url, user).await.unwrap();
    let q = |name: &str| {
        back.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    assert_eq!(q("state"), "s1", "{back}");
    (q("error"), q("error_description"))
}

#[tokio::test]
async fn upstream_failures_reach_the_client_as_oauth_errors() {
    // Our client is refused by the upstream (wrong secret): the code
    // exchange fails and the client hears access_denied.
    let f = start_with("not-the-secret", "").await;
    let (error, _) = error_for(&f, "", "alice").await;
    assert_eq!(error, "access_denied");
    // An unknown upstream name.
    let (error, why) = error_for(&f, "&idp=nope", "alice").await;
    assert_eq!(error, "invalid_request");
    assert!(why.contains("idp"), "{why}");
    let failures = f
        .orch
        .metric("orchestrator_oidc_upstream_logins_total{outcome=\"failure\",upstream=\"panva\"}")
        .await;
    assert_eq!(failures, Some(1.0));
    let _ = &f.op;
}

#[tokio::test]
async fn an_unreachable_upstream_is_temporarily_unavailable() {
    // A second upstream on a port nobody listens on, chosen by idp=.
    let dead = format!(
        "    - {{name: dead, issuer: \"http://127.0.0.1:{}\", clientId: x, clientSecret: y}}\n",
        free_port()
    );
    let f = start_with("gateway-secret", &dead).await;
    let (error, _) = error_for(&f, "&idp=dead", "alice").await;
    assert_eq!(error, "temporarily_unavailable");
    // The sign-in page offers both upstreams when neither is chosen.
    let page = Browser::new()
        .client()
        .get(format!(
            "{}/idp/authorize?response_type=code&client_id=rp&redirect_uri={RP_REDIRECT}&scope=openid\
             &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
            f.orch.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("/idp/upstreams/panva/start?tx="), "{html}");
    assert!(html.contains("/idp/upstreams/dead/start?tx="), "{html}");
    assert!(
        !html.contains("name=\"password\""),
        "no local users, no form"
    );
}

#[tokio::test]
async fn a_callback_is_used_once_and_only_by_the_browser_that_started_it() {
    let f = start().await;
    let url = format!(
        "{}/idp/authorize?response_type=code&client_id=rp&redirect_uri={RP_REDIRECT}\
         &scope=openid&state=s1&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM\
         &code_challenge_method=S256",
        f.orch.base_url()
    );
    // Stop at the callback URL on its way back from panva.
    let b = Browser::new();
    let End::Redirect(callback) = walk(&b, &url, "alice", |u| {
        u.path().ends_with("/upstreams/panva/callback")
    })
    .await
    .unwrap() else {
        panic!("no callback");
    };
    // Another browser (no CSRF cookie) cannot use it.
    let stranger = Browser::new()
        .client()
        .get(callback.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(stranger.status(), 400);
    // A tampered state is no state.
    let tampered = callback.as_str().replace("state=", "state=x");
    let r = b.client().get(&tampered).send().await.unwrap();
    assert_eq!(r.status(), 400);
    // The browser that started it gets its code, once.
    let first = b.client().get(callback.clone()).send().await.unwrap();
    assert_eq!(first.status(), 302, "{:?}", first.text().await);
    let replay = b.client().get(callback).send().await.unwrap();
    let location = replay
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert!(
        !location.contains("code="),
        "a replayed callback issued a code: {location}"
    );
}

#[tokio::test]
async fn logging_out_at_our_provider_logs_out_at_the_upstream_too() {
    let f = start().await;
    let issuer = format!("{}/idp", f.orch.base_url());
    let rp = Rp::discover(&issuer).await;
    let b = Browser::new();
    let (_, _, id_token) = rp.login_in(&b, "alice", &[]).await;
    let stats = || async {
        let v: Value = reqwest::get(format!("{}/test/stats", f.op.issuer))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["loginFormsShown"].as_u64().unwrap()
    };
    let forms_before = stats().await;

    // RP-initiated logout at our provider: on to the upstream's end-session
    // endpoint, its confirmation, back to us, back to the client.
    let mut url = url::Url::parse(&format!("{issuer}/end_session")).unwrap();
    url.query_pairs_mut()
        .append_pair("id_token_hint", &id_token)
        .append_pair("post_logout_redirect_uri", "http://rp.test/bye")
        .append_pair("state", "z");
    let mut via_upstream = false;
    let End::Redirect(last) = walk(&b, url.as_str(), "alice", |u| {
        via_upstream |= u.as_str().starts_with(&f.op.issuer);
        u.as_str().starts_with("http://rp.test/")
    })
    .await
    .unwrap() else {
        panic!("the logout did not return to the client");
    };
    assert!(via_upstream, "the upstream was never asked to log out");
    assert_eq!(last.as_str(), "http://rp.test/bye?state=z");

    // The upstream session is gone: the next login asks for the password there.
    let (again, _, _) = rp.login_in(&b, "alice", &[]).await;
    assert!(again.subject().as_str().starts_with("panva."));
    assert_eq!(
        stats().await,
        forms_before + 1,
        "the upstream logged in silently"
    );
}

#[tokio::test]
async fn our_provider_is_the_upstream_of_another_instance_of_it() {
    // A: our provider with local users, on its own host (its cookies must
    // not mix with B's in the browser's jar, which ignores ports).
    let (a_port, b_port) = (free_port(), free_port());
    let hash = run_cli(&["hash-password"], "alice-password\n").await;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem();
    let a_yaml = format!(
        r#"
listen: {{address: "127.0.0.2:{{port}}"}}
oidcProvider:
  issuer: http://127.0.0.2:{{port}}/idp
  signingKeys: [{{id: a, algorithm: ES256, privateKey: "${{secret:op-key.pem}}"}}]
  clients:
    - clientId: b
      clientSecret: b-secret
      redirectUris: [http://127.0.0.1:{b_port}/idp/upstreams/corp/callback]
  users:
    - username: alice
      passwordHash: "${{secret:hash}}"
      claims: {{email: alice@corp.example, email_verified: true, groups: [eng]}}
"#
    );
    let a = Orchestrator::start_with(Setup {
        yaml: &a_yaml,
        secrets: &[("op-key.pem", key.as_str()), ("hash", hash.stdout.trim())],
        ports: Some((a_port, free_port())),
        ..Setup::default()
    })
    .await;
    let b_yaml = format!(
        r#"
oidcProvider:
  issuer: http://127.0.0.1:{{port}}/idp
  signingKeys: [{{id: b, algorithm: ES256, privateKey: "${{secret:op-key.pem}}"}}]
  clients:
    - {{clientId: rp, clientSecret: rp-secret, redirectUris: [{RP_REDIRECT}]}}
  upstreams:
    - name: corp
      issuer: http://127.0.0.2:{a_port}/idp
      clientId: b
      clientSecret: b-secret
      scopes: [openid, email, profile, groups]
      groups: {{prefix: "corp:"}}
"#
    );
    let b = Orchestrator::start_with(Setup {
        yaml: &b_yaml,
        secrets: &[("op-key.pem", key.as_str())],
        ports: Some((b_port, free_port())),
        ..Setup::default()
    })
    .await;
    let rp = Rp::discover(&format!("{}/idp", b.base_url())).await;
    let (claims, v) = rp.login("alice", &[]).await;
    assert_eq!(claims.issuer().as_str(), format!("{}/idp", b.base_url()));
    assert!(claims.subject().as_str().starts_with("corp."));
    assert_eq!(v["email"], "alice@corp.example");
    assert_eq!(v["email_verified"], true);
    assert_eq!(v["groups"], serde_json::json!(["corp:eng"]));
    assert_eq!(v["idp"], "corp");
    drop(a);
}

#[tokio::test]
async fn the_upstream_callback_may_land_on_another_replica() {
    let redis = TestRedis::start();
    let (p1, p2) = (free_port(), free_port());
    // Both replicas have the issuer of the first (a load balancer in front).
    let callback = format!("http://127.0.0.1:{p1}/idp/upstreams/panva/callback");
    let op = NodeOp::start("127.0.0.1", &[callback]).await;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem();
    let yaml = format!(
        r#"
cache: {{backend: redis, redis: {{url: "{redis}", keyPrefix: "fed:"}}}}
oidcProvider:
  issuer: http://127.0.0.1:{p1}/idp
  signingKeys: [{{id: shared, algorithm: ES256, privateKey: "${{secret:op-key.pem}}"}}]
  clients:
    - {{clientId: rp, clientSecret: rp-secret, redirectUris: [{RP_REDIRECT}]}}
  upstreams:
    - {{name: panva, issuer: "{issuer}", clientId: gateway, clientSecret: gateway-secret, scopes: [openid, email, groups]}}
"#,
        redis = redis.url(),
        issuer = op.issuer,
    );
    let start = |port: u16| {
        let yaml = yaml.clone();
        let key = key.clone();
        async move {
            Orchestrator::start_with(Setup {
                yaml: &yaml,
                secrets: &[("op-key.pem", key.as_str())],
                ports: Some((port, free_port())),
                ..Setup::default()
            })
            .await
        }
    };
    let r1 = start(p1).await;
    let r2 = start(p2).await;
    let rp = Rp::discover(&format!("{}/idp", r1.base_url())).await;
    // Log in, but send the upstream's callback to the second replica.
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _, nonce) = rp
        .client
        .authorize_url(
            AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(challenge)
        .url();
    let b = Browser::new();
    let mut moved = false;
    let End::Redirect(back) = walk(&b, url.as_str(), "alice", |u| {
        if u.path().ends_with("/upstreams/panva/callback") {
            u.set_port(Some(p2)).unwrap();
            moved = true;
        }
        u.as_str().starts_with(RP_REDIRECT)
    })
    .await
    .unwrap() else {
        panic!("no code");
    };
    assert!(moved);
    let code = back
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no code: {back}"));
    // The code the second replica issued is redeemed at the first.
    let token = rp
        .client
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&rp.http)
        .await
        .unwrap();
    let claims = token
        .id_token()
        .unwrap()
        .claims(&rp.client.id_token_verifier(), &nonce)
        .unwrap();
    assert!(claims.subject().as_str().starts_with("panva."));
    drop(r2);
}

#[tokio::test]
async fn removing_an_upstream_ends_its_users_sessions_and_tokens() {
    let mut f = start().await;
    let issuer = format!("{}/idp", f.orch.base_url());
    let rp = Rp::discover(&issuer).await;
    let b = Browser::new();
    let tokens = rp.tokens_in(&b, "alice").await;
    let userinfo = |token: String| {
        let url = format!("{issuer}/userinfo");
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let access = tokens.access_token().secret().clone();
    assert_eq!(userinfo(access.clone()).await, 200);
    // The access token carries what its scopes release, as RFC 9068 allows:
    // an API behind the gateway can apply a policy to it.
    let payload: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            access.split('.').nth(1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(payload["idp"], "panva");
    assert_eq!(payload["email"], "alice@example.com");

    // The operator drops the upstream (a compromised partner IdP).
    let yaml = std::fs::read_to_string(f.orch.config_path()).unwrap();
    let start = yaml.find("  upstreams:").unwrap();
    let end = yaml.find("appGateway:").unwrap();
    let without = format!("{}{}", &yaml[..start], &yaml[end..]);
    f.orch.update_config(&without);
    f.orch
        .wait_metric_at_least(
            "orchestrator_config_reloads_total{result=\"success\"}",
            1.0,
            Duration::from_secs(10),
        )
        .await;
    // Its users' tokens stop working, and their SSO session with them.
    assert_eq!(userinfo(access).await, 401);
    let (challenge, _) = PkceCodeChallenge::new_random_sha256();
    let (url, _, _) = rp
        .client
        .authorize_url(
            AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge)
        .url();
    let resp = b.client().get(url).send().await.unwrap();
    let location = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert!(
        !location.contains("code="),
        "the old session still issued a code: {location}"
    );
}

#[tokio::test]
async fn an_upstream_without_email_does_not_pass_an_email_domain_policy() {
    // The upstream maps no email at all (as an IdP that sends none would).
    let f = start_with("gateway-secret", "      claims: {groups: groups}\n").await;
    let b = Browser::new();
    let start = format!("{}/app/dash", f.orch.base_url());
    let End::Page { status, body, .. } = walk(&b, &start, "alice", |_| false).await.unwrap() else {
        panic!("the walk stopped at a redirect");
    };
    assert_eq!(status, 403, "{body}");
    assert!(f._app.requests() == 0, "the app was reached");
}

/// How a rogue upstream spoils its ID token.
#[derive(Clone, Copy)]
enum Forgery {
    /// Nothing forged: the control, which must sign the user in.
    None,
    /// Signed with a key its JWKS does not publish.
    OtherKey,
    /// Signed right, but for another client.
    OtherAudience,
    /// Signed right, but without the nonce of the login.
    WrongNonce,
}

/// A rogue upstream IdP on a real HTTP server: discovery, JWKS, an
/// authorization endpoint that signs anyone in at once, and a token
/// endpoint whose ID token is forged as `forgery` says.
async fn rogue_idp(forgery: Forgery) -> String {
    use http_body_util::{BodyExt as _, Full};
    use hyper::body::Bytes;
    use std::sync::{Arc, Mutex};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let published = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let raw = published.public_key_raw().to_vec();
    let b64 =
        |b: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, b);
    let jwks = serde_json::json!({"keys": [{
        "kty": "EC", "crv": "P-256", "kid": "k", "alg": "ES256", "use": "sig",
        "x": b64(&raw[1..33]), "y": b64(&raw[33..65]),
    }]});
    let signing = match forgery {
        Forgery::OtherKey => other.serialize_pem(),
        _ => published.serialize_pem(),
    };
    let nonce: Arc<Mutex<String>> = Arc::default();
    let state = Arc::new((base.clone(), jwks, signing, nonce));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let state = state.clone();
                        async move {
                            let (base, jwks, signing, nonce) = &*state;
                            let path = req.uri().path().to_owned();
                            let query: std::collections::HashMap<String, String> = req
                                .uri()
                                .query()
                                .map(|q| {
                                    url::form_urlencoded::parse(q.as_bytes())
                                        .into_owned()
                                        .collect()
                                })
                                .unwrap_or_default();
                            let json = |v: serde_json::Value| {
                                hyper::Response::builder()
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(v.to_string())))
                                    .unwrap()
                            };
                            let resp = match path.as_str() {
                                "/.well-known/openid-configuration" => json(serde_json::json!({
                                    "issuer": base,
                                    "authorization_endpoint": format!("{base}/auth"),
                                    "token_endpoint": format!("{base}/token"),
                                    "jwks_uri": format!("{base}/jwks"),
                                    "response_types_supported": ["code"],
                                    "subject_types_supported": ["public"],
                                    "id_token_signing_alg_values_supported": ["ES256"],
                                })),
                                "/jwks" => json(jwks.clone()),
                                "/auth" => {
                                    *nonce.lock().unwrap() =
                                        query.get("nonce").cloned().unwrap_or_default();
                                    let mut to = url::Url::parse(&query["redirect_uri"]).unwrap();
                                    to.query_pairs_mut()
                                        .append_pair("code", "rogue-code")
                                        .append_pair("state", &query["state"]);
                                    hyper::Response::builder()
                                        .status(302)
                                        .header("location", to.as_str())
                                        .body(Full::new(Bytes::new()))
                                        .unwrap()
                                }
                                "/token" => {
                                    let _ = req.into_body().collect().await;
                                    let now = std::time::SystemTime::now()
                                        .duration_since(std::time::UNIX_EPOCH)
                                        .unwrap()
                                        .as_secs();
                                    let the_nonce = match forgery {
                                        Forgery::WrongNonce => "not-the-nonce".to_owned(),
                                        _ => nonce.lock().unwrap().clone(),
                                    };
                                    let aud = match forgery {
                                        Forgery::OtherAudience => "someone-else",
                                        _ => "gateway",
                                    };
                                    let claims = serde_json::json!({
                                        "iss": base, "sub": "admin", "aud": aud, "exp": now + 300,
                                        "iat": now, "nonce": the_nonce, "email": "admin@example.com",
                                        "email_verified": true, "groups": ["engineering"],
                                    });
                                    let mut header =
                                        jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
                                    header.kid = Some("k".into());
                                    let key =
                                        jsonwebtoken::EncodingKey::from_ec_pem(signing.as_bytes())
                                            .unwrap();
                                    let id_token =
                                        jsonwebtoken::encode(&header, &claims, &key).unwrap();
                                    json(serde_json::json!({
                                        "access_token": "rogue-access", "token_type": "Bearer",
                                        "expires_in": 300, "id_token": id_token,
                                    }))
                                }
                                _ => hyper::Response::builder()
                                    .status(404)
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            };
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            });
        }
    });
    base
}

#[tokio::test]
async fn a_forged_upstream_id_token_signs_nobody_in() {
    // The control first: the same rogue IdP, honest, does sign the user in.
    let honest = rogue_idp(Forgery::None).await;
    let extra = format!(
        "    - {{name: rogue, issuer: \"{honest}\", clientId: gateway, clientSecret: s}}\n"
    );
    let f = start_with("gateway-secret", &extra).await;
    let (error, why) = error_for(&f, "&idp=rogue", "admin").await;
    assert_eq!(error, "", "the honest IdP was refused: {why}");
    drop(f);
    for forgery in [
        Forgery::OtherKey,
        Forgery::OtherAudience,
        Forgery::WrongNonce,
    ] {
        let rogue = rogue_idp(forgery).await;
        let extra = format!(
            "    - {{name: rogue, issuer: \"{rogue}\", clientId: gateway, clientSecret: s}}\n"
        );
        let f = start_with("gateway-secret", &extra).await;
        let (error, _) = error_for(&f, "&idp=rogue", "admin").await;
        assert_eq!(error, "access_denied");
        let success = f
            .orch
            .metric(
                "orchestrator_oidc_upstream_logins_total{outcome=\"success\",upstream=\"rogue\"}",
            )
            .await;
        assert_eq!(success, None);
    }
}
