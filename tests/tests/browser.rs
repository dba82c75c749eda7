//! Logins and sign-outs in a real headless Chromium, with the provider and
//! the app on different origins as in a deployment (the provider at
//! `http://localhost:{port}/idp`, the app at `http://127.0.0.1:{port}/`): a
//! different site, so neither cookies nor `'self'` in a CSP cover both.

#![allow(clippy::unwrap_used)]

use orchestrator_tests::chromium::Chromium;
use orchestrator_tests::{Orchestrator, TestUpstream, run_cli};

const PASSWORD: &str = "alice-browser-password";

const YAML: &str = r#"
oidcProvider:
  issuer: http://localhost:{port}/idp
  signingKeys:
    - id: test-es256
      algorithm: ES256
      privateKey: ${secret:op-key.pem}
  clients:
    - clientId: gateway
      clientSecret: ${secret:client-secret}
      redirectUris: [http://127.0.0.1:{port}/.orchestrator/callback]
      postLogoutRedirectUris: [http://127.0.0.1:{port}/]
  users:
    - username: alice
      passwordHash: "${secret:alice-hash}"
      claims: {email: alice@example.com, groups: [engineering]}
appGateway:
  identityProviders:
    - name: own
      issuer: http://localhost:{port}/idp
      clientId: gateway
      clientSecret: ${secret:client-secret}
      scopes: [openid, profile, email, groups]
  apps:
    - name: demo
      host: "*"
      pathPrefix: /
      upstream: {upstream}
      identityProvider: own
      policy: {allowGroups: [engineering], allowEmailDomains: [example.com]}
      headers: {X-Auth-Request-User: sub, X-Auth-Request-Email: email}
"#;

async fn start() -> (Orchestrator, TestUpstream) {
    let upstream = TestUpstream::echo().await;
    let key = run_cli(&["keys", "generate", "--algorithm", "ES256"], "").await;
    let hash = run_cli(&["hash-password"], &format!("{PASSWORD}\n")).await;
    let yaml = YAML.replace("{upstream}", &upstream.url());
    let orch = Orchestrator::start(
        &yaml,
        &[
            ("op-key.pem", key.stdout.trim()),
            ("alice-hash", hash.stdout.trim()),
            ("client-secret", "browser-test-client-secret"),
        ],
    )
    .await;
    (orch, upstream)
}

/// The login form's POST answers with a redirect to the app on another
/// origin; Chromium applies the login page's CSP `form-action` to that
/// redirect, so the CSP must allow it. Then the user signs out through the
/// confirmation page and is asked to log in again.
#[tokio::test]
async fn cross_origin_login_and_sign_out_in_chromium() {
    let Some(browser) = Chromium::start("cross_origin_login_and_sign_out", "").await else {
        return;
    };
    let (orch, _upstream) = start().await;
    let app = format!("http://127.0.0.1:{}", orch.port());
    let idp = format!("http://localhost:{}/idp", orch.port());

    browser.goto(&format!("{app}/whoami?x=1")).await;
    browser.wait_for_url(&format!("{idp}/authorize")).await;
    browser.fill("username", "alice").await;
    browser.fill("password", PASSWORD).await;
    browser.submit().await;
    browser.wait_for_url(&format!("{app}/whoami?x=1")).await;
    let page = browser.text().await;
    if !page.contains("x-auth-request-email") || !page.contains("alice@example.com") {
        browser
            .fail(&format!("the app did not get the identity: {page}"))
            .await;
    }

    // Sign out: the page's form, then the provider's end-session.
    browser.goto(&format!("{app}/.orchestrator/logout")).await;
    browser.submit().await;
    browser.wait_for_url(&idp).await;
    // The gateway session is gone: the app sends the browser to log in again.
    browser.goto(&format!("{app}/whoami")).await;
    browser.wait_for_url(&format!("{idp}/")).await;
    if browser.text().await.contains("x-auth-request-email") {
        browser.fail("still signed in at the app").await;
    }
    browser.close().await;
}
