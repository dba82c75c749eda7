//! Logins, denials and sign-outs in a real headless Chromium, deployed as in
//! production: the OpenID Provider and the App Gateway are two processes on
//! two loopback addresses (`127.0.0.2` and `127.0.0.3`: different origins and
//! sites, so neither cookies nor a CSP's `'self'` cover both), once over
//! plain HTTP and once over TLS with a test certificate that Chromium trusts
//! by its public key (never `--ignore-certificate-errors`).

#![allow(clippy::unwrap_used)]

use orchestrator_tests::chromium::Chromium;
use orchestrator_tests::{
    Orchestrator, Setup, TestUpstream, free_port, run_cli, self_signed_with_spki,
};

const ALICE_PW: &str = "alice-browser-password";
const BOB_PW: &str = "bob-browser-password";
const SECRET: &str = "browser-test-client-secret";

const PROVIDER: &str = r#"
listen:
  address: 127.0.0.2:{port}
{tls}oidcProvider:
  issuer: {scheme}://127.0.0.2:{port}/idp
  signingKeys:
    - id: test-es256
      algorithm: ES256
      privateKey: ${secret:op-key.pem}
  clients:
    - clientId: gateway
      clientSecret: ${secret:client-secret}
      redirectUris: [{app}/.orchestrator/callback]
      postLogoutRedirectUris: [{app}/]
  users:
    - username: alice
      passwordHash: "${secret:alice-hash}"
      claims: {email: alice@example.com, groups: [engineering]}
    - username: bob
      passwordHash: "${secret:bob-hash}"
      claims: {email: bob@example.com, groups: [sales]}
"#;

const GATEWAY: &str = r#"
listen:
  address: 127.0.0.3:{port}
{tls}appGateway:
  identityProviders:
    - name: own
      issuer: {idp}
      clientId: gateway
      clientSecret: ${secret:client-secret}
      scopes: [openid, profile, email, groups]
{ca}  apps:
    - name: demo
      host: "*"
      pathPrefix: /
      upstream: {upstream}
      identityProvider: own
      policy: {allowGroups: [engineering], allowEmailDomains: [example.com]}
      headers: {X-Auth-Request-User: sub, X-Auth-Request-Email: email}
"#;

/// The provider, the gateway and the app, and where the browser finds them.
struct Deployment {
    _provider: Orchestrator,
    _gateway: Orchestrator,
    _upstream: TestUpstream,
    _certs: Option<tempfile::TempDir>,
    /// `{scheme}://127.0.0.3:{port}`.
    app: String,
    /// The issuer, `{scheme}://127.0.0.2:{port}/idp`.
    idp: String,
    /// Chromium flags this deployment needs (trust for its certificate).
    browser_args: Vec<String>,
}

impl Deployment {
    async fn start(tls: bool) -> Self {
        let upstream = TestUpstream::echo().await;
        let key = run_cli(&["keys", "generate", "--algorithm", "ES256"], "").await;
        let alice = run_cli(&["hash-password"], &format!("{ALICE_PW}\n")).await;
        let bob = run_cli(&["hash-password"], &format!("{BOB_PW}\n")).await;
        let scheme = if tls { "https" } else { "http" };
        let (op_port, gw_port) = (free_port(), free_port());
        let app = format!("{scheme}://127.0.0.3:{gw_port}");
        let idp = format!("{scheme}://127.0.0.2:{op_port}/idp");
        let mut browser_args = Vec::new();
        let (mut tls_yaml, mut ca_yaml, mut certs) = (String::new(), String::new(), None);
        if tls {
            let (cert, key, spki) = self_signed_with_spki(&["127.0.0.2", "127.0.0.3"]);
            let dir = tempfile::tempdir().unwrap();
            let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
            std::fs::write(&cert_path, cert).unwrap();
            std::fs::write(&key_path, key).unwrap();
            tls_yaml = format!(
                "  tls: {{certFile: {}, keyFile: {}}}\n",
                cert_path.display(),
                key_path.display()
            );
            ca_yaml = format!("      caFile: {}\n", cert_path.display());
            browser_args.push(format!("--ignore-certificate-errors-spki-list={spki}"));
            certs = Some(dir);
        }
        let secrets = [
            ("op-key.pem", key.stdout.trim()),
            ("alice-hash", alice.stdout.trim()),
            ("bob-hash", bob.stdout.trim()),
            ("client-secret", SECRET),
        ];
        let provider_yaml = PROVIDER
            .replace("{tls}", &tls_yaml)
            .replace("{scheme}", scheme)
            .replace("{app}", &app);
        let provider = Orchestrator::start_with(Setup {
            yaml: &provider_yaml,
            secrets: &secrets,
            ports: Some((op_port, free_port())),
            ..Setup::default()
        })
        .await;
        let gateway_yaml = GATEWAY
            .replace("{tls}", &tls_yaml)
            .replace("{ca}", &ca_yaml)
            .replace("{idp}", &idp)
            .replace("{upstream}", &upstream.url());
        let gateway = Orchestrator::start_with(Setup {
            yaml: &gateway_yaml,
            secrets: &secrets,
            ports: Some((gw_port, free_port())),
            ..Setup::default()
        })
        .await;
        Self {
            _provider: provider,
            _gateway: gateway,
            _upstream: upstream,
            _certs: certs,
            app,
            idp,
            browser_args,
        }
    }

    async fn browser(&self, name: &str) -> Option<Chromium> {
        Chromium::start(name, &self.browser_args).await
    }
}

/// Opens `path` on the app, signs in at the provider with `user`/`password`
/// and waits until the browser is back on the app at `path`.
async fn log_in(b: &Chromium, d: &Deployment, path: &str, user: &str, password: &str) {
    b.goto(&format!("{}{path}", d.app)).await;
    b.wait_for_url(&format!("{}/authorize", d.idp)).await;
    b.fill("username", user).await;
    b.fill("password", password).await;
    b.submit().await;
    b.wait_for_url(&format!("{}{path}", d.app)).await;
}

/// The app received the user's identity, as its echo page shows.
async fn expect_identity(b: &Chromium, email: &str) {
    let page = b.text().await;
    if !page.contains("x-auth-request-email") || !page.contains(email) {
        b.fail(&format!("the app did not get {email}: {page}"))
            .await;
    }
}

/// The login form's POST answers with a redirect to the app on another
/// origin, and Chromium applies the login page's CSP `form-action` to that
/// redirect. The return URL keeps its path and query through the login.
#[tokio::test]
async fn cross_origin_login_keeps_the_return_url() {
    let d = Deployment::start(false).await;
    let Some(b) = d.browser("cross_origin_login_keeps_the_return_url").await else {
        return;
    };
    log_in(
        &b,
        &d,
        "/reports/q3?region=emea&sort=desc",
        "alice",
        ALICE_PW,
    )
    .await;
    expect_identity(&b, "alice@example.com").await;
    b.close().await;
}

/// The same login over TLS on both origins, the gateway's cookies named
/// `__Host-…` (Chromium refuses those without `Secure`, `Path=/`).
#[tokio::test]
async fn cross_origin_login_over_tls() {
    let d = Deployment::start(true).await;
    let Some(b) = d.browser("cross_origin_login_over_tls").await else {
        return;
    };
    log_in(&b, &d, "/whoami", "alice", ALICE_PW).await;
    expect_identity(&b, "alice@example.com").await;
    b.close().await;
}

/// A mistyped password shows the form again with a message and the user
/// name kept; the right one then signs in.
#[tokio::test]
async fn wrong_password_then_right() {
    let d = Deployment::start(false).await;
    let Some(b) = d.browser("wrong_password_then_right").await else {
        return;
    };
    b.goto(&format!("{}/whoami", d.app)).await;
    b.wait_for_url(&format!("{}/authorize", d.idp)).await;
    b.fill("username", "alice").await;
    b.fill("password", "not-her-password").await;
    b.submit().await;
    b.wait_for_url(&format!("{}/login", d.idp)).await;
    if !b.text().await.contains("Incorrect username or password") {
        b.fail("no message after a wrong password").await;
    }
    let kept = b
        .client()
        .find(fantoccini::Locator::Css("input[name=\"username\"]"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    if kept.as_deref() != Some("alice") {
        b.fail(&format!("user name not kept: {kept:?}")).await;
    }
    b.fill("password", ALICE_PW).await;
    b.submit().await;
    b.wait_for_url(&format!("{}/whoami", d.app)).await;
    expect_identity(&b, "alice@example.com").await;
    b.close().await;
}

/// A signed-in user whom the app's policy refuses gets the 403 page naming
/// the app, and the app never sees the request.
#[tokio::test]
async fn a_user_denied_by_policy_gets_the_403_page() {
    let d = Deployment::start(false).await;
    let Some(b) = d.browser("a_user_denied_by_policy_gets_the_403_page").await else {
        return;
    };
    log_in(&b, &d, "/whoami", "bob", BOB_PW).await;
    let page = b.text().await;
    if !page.contains("Access denied") || !page.contains("demo") || page.contains("x-auth-request")
    {
        b.fail(&format!("not the 403 page: {page}")).await;
    }
    b.close().await;
}

/// Sign-out is the confirmation page's POST; it ends the gateway session and
/// continues to the provider, which ends the SSO session too: the next visit
/// asks for the password again.
#[tokio::test]
async fn sign_out_then_the_password_is_asked_again() {
    let d = Deployment::start(false).await;
    let Some(b) = d.browser("sign_out_then_the_password_is_asked_again").await else {
        return;
    };
    log_in(&b, &d, "/whoami", "alice", ALICE_PW).await;
    b.goto(&format!("{}/.orchestrator/logout", d.app)).await;
    if !b.text().await.contains("Do you want to sign out?") {
        b.fail("no sign-out confirmation page").await;
    }
    b.submit().await;
    b.wait_for_url(&d.idp).await;
    // Whatever the provider shows (a confirmation or the way back), the
    // gateway session is gone: the app sends the browser to sign in.
    b.goto(&format!("{}/whoami", d.app)).await;
    b.wait_for_url(&format!("{}/authorize", d.idp)).await;
    if b.client()
        .find(fantoccini::Locator::Css("input[name=\"password\"]"))
        .await
        .is_err()
    {
        let page = b.text().await;
        b.fail(&format!("signed in again without a password: {page}"))
            .await;
    }
    b.close().await;
}

/// After login, the app's page opens a WebSocket to the app through the
/// gateway (the session cookie rides on the handshake) and gets its echo.
#[tokio::test]
async fn a_websocket_from_the_page_after_login() {
    let d = Deployment::start(false).await;
    let Some(b) = d.browser("a_websocket_from_the_page_after_login").await else {
        return;
    };
    log_in(&b, &d, "/whoami", "alice", ALICE_PW).await;
    let ws_url = format!("{}/ws", d.app.replacen("http", "ws", 1));
    let script = r#"
        const done = arguments[arguments.length - 1];
        const ws = new WebSocket(arguments[0]);
        ws.onopen = () => ws.send("hello through the gateway");
        ws.onmessage = (e) => { done("echo: " + e.data); ws.close(); };
        ws.onerror = () => done("error");
    "#;
    let answer = b
        .client()
        .execute_async(script, vec![serde_json::Value::String(ws_url)])
        .await;
    match answer {
        Ok(serde_json::Value::String(s)) if s == "echo: hello through the gateway" => {}
        other => b.fail(&format!("WebSocket answered {other:?}")).await,
    }
    b.close().await;
}

/// Two tabs start a login each before either finishes; both land on their
/// own page (one binding cookie per browser, one pending login per tab).
#[tokio::test]
async fn two_tabs_log_in_at_once() {
    let d = Deployment::start(false).await;
    let Some(b) = d.browser("two_tabs_log_in_at_once").await else {
        return;
    };
    let first = b.client().window().await.unwrap();
    b.goto(&format!("{}/tab-one", d.app)).await;
    b.wait_for_url(&format!("{}/authorize", d.idp)).await;
    let second = b.client().new_window(true).await.unwrap().handle;
    b.client().switch_to_window(second).await.unwrap();
    b.goto(&format!("{}/tab-two?x=2", d.app)).await;
    b.wait_for_url(&format!("{}/authorize", d.idp)).await;
    for (tab, path) in [(None, "/tab-two?x=2"), (Some(first), "/tab-one")] {
        if let Some(handle) = tab {
            b.client().switch_to_window(handle).await.unwrap();
        }
        b.fill("username", "alice").await;
        b.fill("password", ALICE_PW).await;
        b.submit().await;
        b.wait_for_url(&format!("{}{path}", d.app)).await;
        expect_identity(&b, "alice@example.com").await;
    }
    b.close().await;
}
