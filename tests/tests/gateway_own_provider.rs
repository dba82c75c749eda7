//! The App Gateway through the real binary, logging in through this same
//! process's own OpenID Provider (issuer `http://127.0.0.1:<port>/idp`),
//! discovered over HTTP exactly like any other IdP.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use orchestrator_tests::{Orchestrator, TestUpstream, run_cli};
use reqwest::StatusCode;
use reqwest::cookie::CookieStore as _;
use serde_json::Value;

const YAML: &str = r#"
oidcProvider:
  issuer: http://127.0.0.1:{port}/idp
  signingKeys:
    - id: test-es256
      algorithm: ES256
      privateKey: ${secret:op-key.pem}
  clients:
    - clientId: demo-gateway
      clientSecret: ${secret:client-secret}
      redirectUris: [http://127.0.0.1:{port}/.orchestrator/callback]
      postLogoutRedirectUris: [http://127.0.0.1:{port}/]
  users:
    - username: alice
      passwordHash: "${secret:alice-hash}"
      claims:
        email: alice@example.com
        email_verified: true
        groups: [engineering, admins]
    - username: bob
      passwordHash: "${secret:alice-hash}"
      claims:
        email: bob@example.com
        groups: [sales]
appGateway:
  identityProviders:
    - name: own
      issuer: http://127.0.0.1:{port}/idp
      clientId: demo-gateway
      clientSecret: ${secret:client-secret}
      scopes: [openid, profile, email, groups]
  apps:
    - name: demo
      host: "*"
      pathPrefix: /
      upstream: {upstream}
      identityProvider: own
      publicPaths: [/public/]
      policy:
        allowGroups: [engineering]
      headers:
        X-Auth-Request-User: sub
        X-Auth-Request-Email: email
        X-Auth-Request-Groups: groups
        X-Auth-Request-Sid: sid
        X-Token-Nonce: nonce
      assertionHeader: X-Orchestrator-Assertion
"#;

struct Browser {
    client: reqwest::Client,
    jar: Arc<reqwest::cookie::Jar>,
}

impl Browser {
    fn new() -> Self {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let client = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self { client, jar }
    }

    /// Follows redirects and fills in the provider's login form (hidden
    /// fields included) when it appears. Returns status, final URL, body and
    /// how many times the password form was shown.
    async fn visit(
        &self,
        url: &str,
        user: &str,
        password: &str,
    ) -> (StatusCode, String, String, usize) {
        let mut url = url.to_owned();
        let mut forms = 0;
        for _ in 0..20 {
            let resp = self
                .client
                .get(&url)
                .header("accept", "text/html")
                .send()
                .await
                .unwrap();
            if resp.status().is_redirection() {
                let loc = resp.headers()["location"].to_str().unwrap().to_owned();
                url = reqwest::Url::parse(&url)
                    .unwrap()
                    .join(&loc)
                    .unwrap()
                    .to_string();
                continue;
            }
            let status = resp.status();
            let body = resp.text().await.unwrap();
            if !body.contains("name=\"password\"") {
                return (status, url, body, forms);
            }
            forms += 1;
            let attr = |name: &str| {
                let marker = format!("name=\"{name}\" value=\"");
                body.split(&marker)
                    .nth(1)
                    .map(|r| r.split('"').next().unwrap().replace("&amp;", "&"))
            };
            let action = body
                .split("action=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .replace("&amp;", "&");
            let mut fields = vec![
                ("username".to_owned(), user.to_owned()),
                ("password".to_owned(), password.to_owned()),
            ];
            for hidden in ["tx", "csrf"] {
                if let Some(v) = attr(hidden) {
                    fields.push((hidden.to_owned(), v));
                }
            }
            let post = reqwest::Url::parse(&url).unwrap().join(&action).unwrap();
            let resp = self
                .client
                .post(post.clone())
                .form(&fields)
                .send()
                .await
                .unwrap();
            assert!(
                resp.status().is_redirection(),
                "login refused at {post}: {}",
                resp.status()
            );
            let loc = resp.headers()["location"].to_str().unwrap().to_owned();
            url = post.join(&loc).unwrap().to_string();
        }
        panic!("too many redirects");
    }
}

fn header(echo: &Value, name: &str) -> Vec<String> {
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|h| h[1].as_str().unwrap().to_owned())
        .collect()
}

async fn start() -> (Orchestrator, TestUpstream) {
    start_with(YAML).await
}

async fn start_with(yaml: &str) -> (Orchestrator, TestUpstream) {
    let upstream = TestUpstream::echo().await;
    let hash = run_cli(&["hash-password"], "alice-password\n").await;
    assert_eq!(hash.code, Some(0), "{}", hash.stderr);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem();
    let yaml = yaml.replace("{upstream}", &upstream.url());
    let orch = Orchestrator::start(
        &yaml,
        &[
            ("op-key.pem", key.as_str()),
            ("client-secret", "s3cret-for-the-gateway"),
            ("alice-hash", hash.stdout.trim()),
        ],
    )
    .await;
    (orch, upstream)
}

#[tokio::test]
async fn login_through_our_own_provider_reaches_the_app_with_identity() {
    let (orch, _upstream) = start().await;
    let b = Browser::new();
    let (status, url, body, forms) = b
        .visit(
            &format!("{}/dash?x=1", orch.base_url()),
            "alice",
            "alice-password",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", orch.all_logs());
    assert_eq!(forms, 1);
    assert_eq!(url, format!("{}/dash?x=1", orch.base_url()));
    let echo: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo["uri"], "/dash?x=1");
    assert_eq!(
        header(&echo, "x-auth-request-user"),
        vec!["alice".to_owned()]
    );
    assert_eq!(
        header(&echo, "x-auth-request-email"),
        vec!["alice@example.com".to_owned()]
    );
    assert_eq!(
        header(&echo, "x-auth-request-groups"),
        vec!["engineering,admins".to_owned()]
    );
    // The access log names app and user, and never the query (the callback's carries the code).
    let logs = orch
        .wait_for_log_line(
            |l| {
                l.contains("\"target\":\"access\"")
                    && l.contains("\"path\":\"/dash\"")
                    && l.contains("\"status\":200")
            },
            Duration::from_secs(10),
        )
        .await;
    let access: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["target"] == "access")
        .collect();
    assert!(
        access
            .iter()
            .any(|l| l["path"] == "/dash" && l["user"] == "alice" && l["status"] == 200),
        "{logs}"
    );
    assert!(
        access
            .iter()
            .any(|l| l["path"] == "/.orchestrator/callback"),
        "{logs}"
    );
    assert!(!logs.contains("code="), "a query reached the logs:\n{logs}");
    // Session claims keep who the user is (sid included) but not what only bound the token.
    assert_eq!(header(&echo, "x-auth-request-sid").len(), 1);
    assert!(
        header(&echo, "x-token-nonce").is_empty(),
        "nonce kept in the session"
    );

    // Forged identity headers are replaced, whatever their spelling.
    let r = b
        .client
        .get(format!("{}/again", orch.base_url()))
        .header("X-Auth-Request-User", "mallory")
        .header("x_auth_request_groups", "admins")
        .send()
        .await
        .unwrap();
    let echo: Value = r.json().await.unwrap();
    assert_eq!(
        header(&echo, "x-auth-request-user"),
        vec!["alice".to_owned()]
    );
    assert!(header(&echo, "x_auth_request_groups").is_empty());

    // A session unknown to the gateway (cookie dropped) logs in again through
    // the provider's SSO session: no password form.
    let fresh = Browser::new();
    let base = reqwest::Url::parse(&format!("{}/idp/", orch.base_url())).unwrap();
    let cookies = b.jar.cookies(&base).unwrap();
    for c in cookies.to_str().unwrap().split("; ") {
        if !c.starts_with("orchestrator_session") {
            fresh.jar.add_cookie_str(&format!("{c}; Path=/"), &base);
        }
    }
    let (status, _, _, forms) = fresh
        .visit(&format!("{}/sso", orch.base_url()), "alice", "wrong")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        forms, 0,
        "the IdP session answered without a password prompt"
    );

    // Logout continues to the provider's end-session endpoint.
    let r = orchestrator_tests::browser::sign_out(
        &b.client,
        &format!("{}/.orchestrator/logout", orch.base_url()),
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        loc.starts_with(&format!("{}/idp/", orch.base_url())),
        "{loc}"
    );
    assert!(loc.contains("id_token_hint="));
    // The hint is the ID token byte for byte: the provider accepts it.
    let r = b.client.get(&loc).send().await.unwrap();
    assert!(
        r.status().is_success() || r.status().is_redirection(),
        "end-session refused the hint: {}",
        r.status()
    );
}

#[tokio::test]
async fn policy_denies_through_our_own_provider() {
    let (orch, _upstream) = start().await;
    let b = Browser::new();
    let (status, _, body, _) = b
        .visit(&format!("{}/", orch.base_url()), "bob", "alice-password")
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("demo"));
    // Public paths need no login at all.
    let r = reqwest::get(format!("{}/public/x", orch.base_url()))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_assertion_verifies_is_reused_and_a_reload_reapplies_the_policy() {
    let (mut orch, upstream) = start().await;
    let b = Browser::new();
    let (status, _, body, _) = b
        .visit(&format!("{}/a", orch.base_url()), "alice", "alice-password")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let echo: Value = serde_json::from_str(&body).unwrap();
    let jwt = header(&echo, "x-orchestrator-assertion");
    assert_eq!(jwt.len(), 1, "{echo}");

    // An upstream verifies it with the gateway's published keys.
    let jwks: jsonwebtoken::jwk::JwkSet =
        reqwest::get(format!("{}/.orchestrator/jwks", orch.base_url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let kid = jsonwebtoken::decode_header(&jwt[0]).unwrap().kid.unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(jwks.find(&kid).unwrap()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&["demo"]);
    validation.set_issuer(&[orchestrator_gateway::ASSERTION_ISSUER]);
    let claims = jsonwebtoken::decode::<Value>(&jwt[0], &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(
        claims["groups"],
        serde_json::json!(["engineering", "admins"])
    );

    // The next request reuses it (signing is the costliest step of a request).
    let r = b
        .client
        .get(format!("{}/b", orch.base_url()))
        .send()
        .await
        .unwrap();
    let echo: Value = r.json().await.unwrap();
    assert_eq!(header(&echo, "x-orchestrator-assertion"), jwt);

    // A reload that changes the policy applies to this live session at once.
    let denying = YAML
        .replace("{upstream}", &upstream.url())
        .replace("allowGroups: [engineering]", "allowGroups: [sales]");
    orch.update_config(&denying);
    orch.wait_metric_at_least(
        "orchestrator_config_reloads_total{result=\"success\"}",
        1.0,
        std::time::Duration::from_secs(10),
    )
    .await;
    let r = b
        .client
        .get(format!("{}/c", orch.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}
