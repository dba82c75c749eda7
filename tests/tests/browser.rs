//! Logins, denials and sign-outs in a real headless Chromium, deployed as in
//! production: the OpenID Provider and the App Gateway are two processes on
//! two loopback addresses (`127.0.0.2` and `127.0.0.3`: different origins and
//! sites, so neither cookies nor a CSP's `'self'` cover both), once over
//! plain HTTP and once over TLS with a test certificate that Chromium trusts
//! by its public key (never `--ignore-certificate-errors`).

#![allow(clippy::unwrap_used)]

use orchestrator_tests::chromium::Chromium;
use orchestrator_tests::node_op::NodeOp;
use orchestrator_tests::{
    Orchestrator, Setup, TestUpstream, free_port, run_cli, self_signed_with_spki,
};

const ALICE_PW: &str = "alice-browser-password";
const BOB_PW: &str = "bob-browser-password";
const SECRET: &str = "browser-test-client-secret";

const PROVIDER: &str = r#"
listen:
  address: 127.0.0.2:{port}
{tls}{ui}oidcProvider:
  issuer: {scheme}://127.0.0.2:{port}/idp
  signingKeys:
    - id: test-es256
      algorithm: ES256
      privateKey: ${secret:op-key.pem}
  clients:
    - clientId: gateway
      clientName: Demo Reports
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
{session}  identityProviders:
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

/// How a [`Deployment`] differs from the plain one.
#[derive(Default)]
struct Options<'a> {
    /// Both origins over TLS.
    tls: bool,
    /// YAML under `appGateway:` (indented two spaces), e.g. session timings.
    session: &'a str,
    /// `ui.templatesDir` of the provider.
    provider_templates: Option<&'a std::path::Path>,
}

/// The provider, the gateway and the app, and where the browser finds them.
struct Deployment {
    provider: Orchestrator,
    gateway: Orchestrator,
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
        Self::with(Options {
            tls,
            ..Options::default()
        })
        .await
    }

    async fn with(opts: Options<'_>) -> Self {
        let tls = opts.tls;
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
        let provider_ui = opts.provider_templates.map_or_else(String::new, |dir| {
            format!("ui:\n  templatesDir: {}\n", dir.display())
        });
        let provider_yaml = PROVIDER
            .replace("{ui}", &provider_ui)
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
            .replace("{session}", opts.session)
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
            provider,
            gateway,
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

/// The next visit to the app goes to the provider's password form (no
/// session is left at either); fails with `why` otherwise.
async fn expect_password_asked(b: &Chromium, d: &Deployment, why: &str) {
    b.goto(&format!("{}/whoami", d.app)).await;
    b.wait_for_url(&format!("{}/authorize", d.idp)).await;
    if b.client()
        .find(fantoccini::Locator::Css("input[name=\"password\"]"))
        .await
        .is_err()
    {
        let page = b.text().await;
        b.fail(&format!("{why}: {page}")).await;
    }
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
    // The page names the application (clients[].clientName), not its client_id,
    // and a password manager can fill it.
    let app_name = b.element_text("#client-name").await;
    if app_name != "Demo Reports" {
        b.fail(&format!("the login page names {app_name:?}")).await;
    }
    for (field, want) in [("username", "username"), ("password", "current-password")] {
        let got = b
            .client()
            .find(fantoccini::Locator::Css(&format!(
                "input[name=\"{field}\"]"
            )))
            .await
            .unwrap()
            .attr("autocomplete")
            .await
            .unwrap();
        if got.as_deref() != Some(want) {
            b.fail(&format!("{field} has autocomplete {got:?}")).await;
        }
    }
    b.expect_clean_page().await;
    b.screenshot_as("page-login").await;
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
    b.expect_clean_page().await;
    b.screenshot_as("page-login-wrong-password").await;
    b.fill("password", ALICE_PW).await;
    b.submit().await;
    b.wait_for_url(&format!("{}/whoami", d.app)).await;
    expect_identity(&b, "alice@example.com").await;
    b.close().await;
}

/// A signed-in user whom the app's policy refuses gets the 403 page: it
/// names the app and who is signed in, the app never sees the request, and
/// "sign in as someone else" asks the provider for a password again (its
/// SSO session is alive) and lands the other user on the page first asked for.
#[tokio::test]
async fn a_user_denied_by_policy_gets_the_403_page() {
    let d = Deployment::start(false).await;
    let Some(b) = d.browser("a_user_denied_by_policy_gets_the_403_page").await else {
        return;
    };
    log_in(&b, &d, "/reports?q=1", "bob", BOB_PW).await;
    let page = b.text().await;
    if !page.contains("Access denied") || !page.contains("demo") || page.contains("x-auth-request")
    {
        b.fail(&format!("not the 403 page: {page}")).await;
    }
    if b.element_text("#user").await != "bob@example.com" {
        b.fail(&format!(
            "the 403 page does not say who is signed in: {page}"
        ))
        .await;
    }
    if !page.contains("Sign out") || b.element_text("#request-id").await.len() != 32 {
        b.fail(&format!("no sign-out or request id: {page}")).await;
    }
    b.expect_clean_page().await;
    b.screenshot_as("page-403").await;
    b.click("#switch-user").await;
    b.wait_for_url(&format!("{}/authorize", d.idp)).await;
    b.fill("username", "alice").await;
    b.fill("password", ALICE_PW).await;
    b.submit().await;
    b.wait_for_url(&format!("{}/reports?q=1", d.app)).await;
    expect_identity(&b, "alice@example.com").await;
    b.close().await;
}

/// The 403 page's "sign out" ends the gateway session and the provider's:
/// the next visit asks for a password.
#[tokio::test]
async fn the_403_page_signs_out() {
    let d = Deployment::start(false).await;
    let Some(b) = d.browser("the_403_page_signs_out").await else {
        return;
    };
    log_in(&b, &d, "/whoami", "bob", BOB_PW).await;
    b.click("#sign-out").await;
    b.wait_for_url(&d.idp).await;
    expect_password_asked(&b, &d, "still signed in after sign-out").await;
    b.close().await;
}

/// An error page says what happened and what to do, and shows a request id
/// that the gateway's access log line for that request carries too.
#[tokio::test]
async fn an_error_page_gives_the_request_id_of_its_access_log_line() {
    let d = Deployment::start(false).await;
    let Some(b) = d
        .browser("an_error_page_gives_the_request_id_of_its_access_log_line")
        .await
    else {
        return;
    };
    // A callback whose login this gateway never started (stale, or forged).
    b.goto(&format!(
        "{}/.orchestrator/callback?state=never-issued&code=x",
        d.app
    ))
    .await;
    let page = b.text().await;
    if !page.contains("Sign-in failed") || !page.contains("sign in again") {
        b.fail(&format!("not the sign-in error page: {page}")).await;
    }
    let id = b.element_text("#request-id").await;
    b.expect_clean_page().await;
    b.screenshot_as("page-sign-in-error").await;
    let is_its_line = |l: &str| l.contains("\"target\":\"access\"") && l.contains(&id);
    let logs = d
        .gateway
        .wait_for_log_line(is_its_line, std::time::Duration::from_secs(10))
        .await;
    let line = logs.lines().find(|l| is_its_line(l)).unwrap_or_default();
    assert!(line.contains("\"status\":400"), "{line}");
    assert!(line.contains("/.orchestrator/callback"), "{line}");
    b.close().await;
}

/// The gateway session ends (its maximum lifetime passes) while the
/// provider's SSO session lives: the next visit goes through the provider
/// and back without a password form, to the page asked for.
#[tokio::test]
async fn session_expiry_signs_in_again_through_sso() {
    let d = Deployment::with(Options {
        session: "  session: {maxLifetime: 2s, idleTimeout: 2s}\n",
        ..Options::default()
    })
    .await;
    let Some(b) = d.browser("session_expiry_signs_in_again_through_sso").await else {
        return;
    };
    log_in(&b, &d, "/first", "alice", ALICE_PW).await;
    // The behaviour under test is time passing: wait out the lifetime.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    b.goto(&format!("{}/after-expiry?x=1", d.app)).await;
    b.wait_for_url(&format!("{}/after-expiry?x=1", d.app)).await;
    expect_identity(&b, "alice@example.com").await;
    // Both visits went through the provider's authorize endpoint; only the
    // first showed a password form and signed in with it.
    let logs = d.provider.all_logs();
    let authorize = logs
        .lines()
        .filter(|l| l.contains("\"target\":\"access\"") && l.contains("/idp/authorize"))
        .count();
    let password_sign_ins = logs.lines().filter(|l| l.contains("\"sign-in\"")).count();
    assert_eq!((authorize, password_sign_ins), (2, 1), "{logs}");
    b.close().await;
}

/// Login through panva's certified `oidc-provider` on a third origin
/// (127.0.0.4): the gateway works with an IdP that is not ours.
#[tokio::test]
async fn login_through_panva_oidc_provider() {
    let upstream = TestUpstream::echo().await;
    let gw_port = free_port();
    let app = format!("http://127.0.0.3:{gw_port}");
    let op = NodeOp::start("127.0.0.4", &[format!("{app}/.orchestrator/callback")]).await;
    let yaml = format!(
        r#"
listen:
  address: 127.0.0.3:{{port}}
appGateway:
  identityProviders:
    - name: node
      issuer: {issuer}
      clientId: gateway
      clientSecret: gateway-secret
      scopes: [openid, email, profile, groups]
  apps:
    - name: demo
      host: "*"
      pathPrefix: /
      upstream: {upstream}
      identityProvider: node
      policy: {{allowGroups: [engineering]}}
      headers: {{X-Auth-Request-User: sub, X-Auth-Request-Email: email}}
"#,
        issuer = op.issuer,
        upstream = upstream.url(),
    );
    let _gateway = Orchestrator::start_with(Setup {
        yaml: &yaml,
        ports: Some((gw_port, free_port())),
        ..Setup::default()
    })
    .await;
    let Some(b) = Chromium::start("login_through_panva_oidc_provider", &[]).await else {
        return;
    };
    b.goto(&format!("{app}/docs/page?lang=en")).await;
    b.wait_for_url(&format!("{}/interaction/", op.issuer)).await;
    b.fill("login", "alice").await;
    b.fill("password", "alice-password").await;
    b.submit().await;
    b.wait_for_url(&format!("{app}/docs/page?lang=en")).await;
    expect_identity(&b, "alice@example.com").await;
    b.close().await;
}

/// `ui.templatesDir` replaces the login page without a fork, and a changed
/// template is served without a restart.
#[tokio::test]
async fn templates_from_the_config_replace_the_login_page_and_reload() {
    let templates = tempfile::tempdir().unwrap();
    let branded = |title: &str| {
        format!(
            "{{% extends \"base.html\" %}}{{% block content %}}<h1 id=\"brand\">{title}</h1>\
             <p>{{{{ client_name }}}}</p><form method=\"post\" action=\"{{{{ action }}}}\">\
             <input type=\"hidden\" name=\"tx\" value=\"{{{{ transaction }}}}\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{{{{ csrf }}}}\">\
             <input name=\"username\" autocomplete=\"username\" value=\"{{{{ username }}}}\">\
             <input name=\"password\" type=\"password\" autocomplete=\"current-password\">\
             <button type=\"submit\">Go</button></form>{{% endblock %}}"
        )
    };
    std::fs::write(templates.path().join("login.html"), branded("Acme sign-in")).unwrap();
    let d = Deployment::with(Options {
        provider_templates: Some(templates.path()),
        ..Options::default()
    })
    .await;
    let Some(b) = d
        .browser("templates_from_the_config_replace_the_login_page_and_reload")
        .await
    else {
        return;
    };
    b.goto(&format!("{}/whoami", d.app)).await;
    b.wait_for_url(&format!("{}/authorize", d.idp)).await;
    if b.element_text("#brand").await != "Acme sign-in" {
        b.fail("the login page is not the configured template")
            .await;
    }
    b.expect_clean_page().await;
    // A new version of the template, written the way an editor saves it.
    let tmp = templates.path().join(".login.html.tmp");
    std::fs::write(&tmp, branded("Acme sign-in, new look")).unwrap();
    std::fs::rename(&tmp, templates.path().join("login.html")).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        b.goto(&format!("{}/whoami", d.app)).await;
        b.wait_for_url(&format!("{}/authorize", d.idp)).await;
        if b.element_text("#brand").await == "Acme sign-in, new look" {
            break;
        }
        if std::time::Instant::now() >= deadline {
            b.fail("the changed template was not served").await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    b.fill("username", "alice").await;
    b.fill("password", ALICE_PW).await;
    b.submit().await;
    b.wait_for_url(&format!("{}/whoami", d.app)).await;
    expect_identity(&b, "alice@example.com").await;
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
    b.expect_clean_page().await;
    b.screenshot_as("page-sign-out-confirm").await;
    b.submit().await;
    b.wait_for_url(&d.idp).await;
    // Whatever the provider shows (a confirmation or the way back), the
    // gateway session is gone: the app sends the browser to sign in.
    expect_password_asked(&b, &d, "signed in again without a password").await;
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

/// A template cannot bring script or outside resources: the pages' CSP blocks
/// both, and the console check used by every page test sees the violations.
#[tokio::test]
async fn a_template_s_script_and_outside_image_are_blocked() {
    let templates = tempfile::tempdir().unwrap();
    std::fs::write(
        templates.path().join("signed_out.html"),
        "{% extends \"base.html\" %}{% block content %}<h1 id=\"done\">{{ title }}</h1>\
         <script>document.title = 'scripted';</script>\
         <img src=\"http://127.0.0.9:9/logo.png\" alt=\"\">{% endblock %}",
    )
    .unwrap();
    let d = Deployment::with(Options {
        provider_templates: Some(templates.path()),
        ..Options::default()
    })
    .await;
    let Some(b) = d
        .browser("a_template_s_script_and_outside_image_are_blocked")
        .await
    else {
        return;
    };
    // The provider's end-session page with no client to return to.
    b.goto(&format!("{}/end_session", d.idp)).await;
    if b.element_text("#done").await != "Signed out" {
        b.fail("not the signed-out template").await;
    }
    let title = b.client().title().await.unwrap_or_default();
    let problems = b.console_problems().await.join("\n");
    // Chromium reports each CSP refusal on the console, naming what it refused.
    let refusals = problems.matches("Content Security Policy").count();
    if title == "scripted" || refusals < 2 || !problems.contains("logo.png") {
        b.fail(&format!("title {title:?}; console: {problems}"))
            .await;
    }
    b.close().await;
}

/// Three origins: the gateway (127.0.0.3) → our provider (127.0.0.2) →
/// panva's `oidc-provider` as its upstream (127.0.0.4), and back, in a real
/// browser: the app gets the upstream user's mapped identity.
#[tokio::test]
async fn login_through_our_provider_federated_to_panva() {
    let upstream = TestUpstream::echo().await;
    let (op_port, gw_port) = (free_port(), free_port());
    let idp = format!("http://127.0.0.2:{op_port}/idp");
    let app = format!("http://127.0.0.3:{gw_port}");
    let node = NodeOp::start("127.0.0.4", &[format!("{idp}/upstreams/corp/callback")]).await;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem();
    let provider_yaml = format!(
        r#"
listen:
  address: 127.0.0.2:{{port}}
oidcProvider:
  issuer: {idp}
  signingKeys: [{{id: k, algorithm: ES256, privateKey: "${{secret:op-key.pem}}"}}]
  clients:
    - {{clientId: gw, clientSecret: gw-secret, redirectUris: ["{app}/.orchestrator/callback"]}}
  upstreams:
    - name: corp
      displayName: Corp
      issuer: {issuer}
      clientId: gateway
      clientSecret: gateway-secret
      scopes: [openid, email, profile, groups]
"#,
        issuer = node.issuer,
    );
    let _provider = Orchestrator::start_with(Setup {
        yaml: &provider_yaml,
        secrets: &[("op-key.pem", key.as_str())],
        ports: Some((op_port, free_port())),
        ..Setup::default()
    })
    .await;
    let gateway_yaml = format!(
        r#"
listen:
  address: 127.0.0.3:{{port}}
appGateway:
  identityProviders:
    - {{name: own, issuer: "{idp}", clientId: gw, clientSecret: gw-secret, scopes: [openid, email, profile, groups]}}
  apps:
    - name: demo
      host: "*"
      pathPrefix: /
      upstream: {upstream}
      identityProvider: own
      policy: {{allowGroups: [engineering], claims: {{idp: [corp]}}}}
      headers: {{X-Auth-Request-User: sub, X-Auth-Request-Email: email}}
"#,
        upstream = upstream.url(),
    );
    let _gateway = Orchestrator::start_with(Setup {
        yaml: &gateway_yaml,
        ports: Some((gw_port, free_port())),
        ..Setup::default()
    })
    .await;
    let Some(b) = Chromium::start("login_through_our_provider_federated_to_panva", &[]).await
    else {
        return;
    };
    b.goto(&format!("{app}/docs/page")).await;
    // One upstream and no local users: straight to it, no chooser.
    b.wait_for_url(&format!("{}/interaction/", node.issuer))
        .await;
    b.fill("login", "alice").await;
    b.fill("password", "alice-password").await;
    b.submit().await;
    b.wait_for_url(&format!("{app}/docs/page")).await;
    expect_identity(&b, "alice@example.com").await;
    b.close().await;
}
