//! Forward auth through real ingress proxies, and bearer tokens.
//!
//! - NGINX configured exactly as ingress-nginx renders `auth-url`,
//!   `auth-signin` and `auth-response-headers` (its auth location sets
//!   `X-Original-URL`, `X-Original-Method`, `X-Sent-From`,
//!   `X-Auth-Request-Redirect`, empties `X-Forwarded-Proto` and the body, and
//!   passes every client header through).
//! - Caddy's `forward_auth … copy_headers`.
//! - The endpoint called as Envoy's `ext_authz` HTTP service calls it (the
//!   original method, Host and path below the auth path), from a trusted
//!   proxy and from an untrusted peer.
//! - Bearer tokens from our own provider (client credentials), forged ones
//!   signed with its real key, another key, `alg: none` and HS256 keyed with
//!   the public key; from panva's `oidc-provider`, a JWT and an opaque token
//!   (introspection, with its cache).
//!
//! The apps here have no `upstream`: the proxy forwards to the app itself.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use orchestrator_tests::browser::Browser;
use orchestrator_tests::ingress::{Proxy, caddy, nginx};
use orchestrator_tests::node_op::NodeOp;
use orchestrator_tests::{Orchestrator, TestUpstream, free_port, run_cli};
use serde_json::{Value, json};

const YAML: &str = r#"
listen:
  address: 127.0.0.1:{port}
  trustedProxies: [127.0.0.1/32]
oidcProvider:
  issuer: http://127.0.0.1:{port}/idp
  signingKeys:
    - id: fa-es256
      algorithm: ES256
      privateKey: ${secret:op-key.pem}
  clients:
    - clientId: demo-gateway
      clientSecret: ${secret:client-secret}
      redirectUris: [{redirect_uris}]
    - clientId: api-client
      clientSecret: ${secret:api-secret}
      grantTypes: [client_credentials]
  users:
    - username: alice
      passwordHash: "${secret:hash}"
      claims: {email: alice@example.com, email_verified: true, groups: [engineering]}
    - username: bob
      passwordHash: "${secret:hash}"
      claims: {email: bob@example.com, email_verified: true, groups: [sales]}
appGateway:
  identityProviders:
    - name: own
      issuer: http://127.0.0.1:{port}/idp
      clientId: demo-gateway
      clientSecret: ${secret:client-secret}
      scopes: [openid, profile, email, groups]
{more_idps}
  apps:
    - name: dash
      host: "*"
      pathPrefix: /
      identityProvider: own
      publicPaths: [/public/]
      policy: {allowGroups: [engineering]}
      headers:
        X-Auth-Request-User: sub
        X-Auth-Request-Email: email
        X-Auth-Request-Groups: groups
    - name: api
      host: "*"
      pathPrefix: /api
      upstream: {upstream}
      identityProvider: own
      bearer: {audiences: [api-client]}
      headers: {X-Auth-Request-User: sub, X-Token-Scope: scope}
    - name: strict-api
      host: "*"
      pathPrefix: /strict-api
      upstream: {upstream}
      identityProvider: own
      bearer: {audiences: [api-client]}
      policy: {allowGroups: [engineering]}
{more_apps}
"#;

/// How ingress-nginx renders an Ingress with `auth-url`, `auth-signin` and
/// `auth-response-headers` (controller v1.x `nginx.tmpl`; `set_escape_uri`
/// needs its Lua module, so `rd` carries the URI unescaped: the tests'
/// URIs have no query).
fn ingress_nginx_server(orch_port: u16, app_port: u16) -> String {
    format!(
        r#"
    location = /_external-auth-Lw-Prefix {{
      internal;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Forwarded-Proto "";
      proxy_set_header X-Request-ID $request_id;
      proxy_set_header Host orchestrator.auth.svc.cluster.local;
      proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Sent-From "nginx-ingress-controller";
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Auth-Request-Redirect $request_uri;
      proxy_pass_request_headers on;
      proxy_pass http://127.0.0.1:{orch_port}/.orchestrator/auth;
    }}
    location @auth-signin {{
      internal;
      return 302 http://$http_host/.orchestrator/login?rd=$scheme://$http_host$request_uri;
    }}
    # The documented second Ingress rule: /.orchestrator/ on the app's host.
    location /.orchestrator/ {{
      proxy_redirect off;
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_pass http://127.0.0.1:{orch_port};
    }}
    location / {{
      auth_request /_external-auth-Lw-Prefix;
      auth_request_set $authHeader0 $upstream_http_x_auth_request_user;
      proxy_set_header 'X-Auth-Request-User' $authHeader0;
      auth_request_set $authHeader1 $upstream_http_x_auth_request_email;
      proxy_set_header 'X-Auth-Request-Email' $authHeader1;
      auth_request_set $authHeader2 $upstream_http_x_auth_request_groups;
      proxy_set_header 'X-Auth-Request-Groups' $authHeader2;
      error_page 401 = @auth-signin;
      proxy_set_header Host $http_host;
      proxy_pass http://127.0.0.1:{app_port};
    }}"#
    )
}

fn caddy_site(orch_port: u16, app_port: u16) -> String {
    format!(
        r#"
  handle /.orchestrator/* {{
    reverse_proxy 127.0.0.1:{orch_port}
  }}
  handle {{
    forward_auth 127.0.0.1:{orch_port} {{
      uri /.orchestrator/auth
      copy_headers X-Auth-Request-User X-Auth-Request-Email X-Auth-Request-Groups
    }}
    reverse_proxy 127.0.0.1:{app_port}
  }}"#
    )
}

struct Setup {
    orch: Orchestrator,
    app: TestUpstream,
    nginx: Proxy,
    caddy: Proxy,
    op_key: String,
}

async fn start_with(more_idps: &str, more_apps: &str) -> Setup {
    let app = TestUpstream::echo().await;
    let (nginx_port, caddy_port) = (free_port(), free_port());
    let hash = run_cli(&["hash-password"], "pw\n").await;
    assert_eq!(hash.code, Some(0), "{}", hash.stderr);
    let op_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem();
    let redirect_uris = [nginx_port, caddy_port]
        .map(|p| format!("http://127.0.0.1:{p}/.orchestrator/callback"))
        .join(", ");
    let yaml = YAML
        .replace("{more_idps}", more_idps)
        .replace("{more_apps}", more_apps)
        .replace("{redirect_uris}", &redirect_uris)
        .replace("{upstream}", &app.url());
    let orch = Orchestrator::start(
        &yaml,
        &[
            ("op-key.pem", op_key.as_str()),
            ("client-secret", "gateway-client-secret"),
            ("api-secret", "api-client-secret"),
            ("panva-secret", "gateway-secret"),
            ("hash", hash.stdout.trim()),
        ],
    )
    .await;
    let nginx = nginx(nginx_port, &ingress_nginx_server(orch.port(), app.port())).await;
    let caddy = caddy(caddy_port, &caddy_site(orch.port(), app.port())).await;
    Setup {
        orch,
        app,
        nginx,
        caddy,
        op_key,
    }
}

async fn start() -> Setup {
    start_with("", "").await
}

/// The values of header `name` in the echo upstream's JSON.
fn echoed(body: &str, name: &str) -> Vec<String> {
    let echo: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not an echo: {body}"));
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|h| h[1].as_str().unwrap().to_owned())
        .collect()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A client whose connections come from `127.0.0.2`: outside `trustedProxies`.
fn untrusted_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address("127.0.0.2".parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test]
async fn ingress_nginx_login_round_trip_reaches_the_app_with_identity() {
    let s = start().await;
    let b = Browser::new();
    let visit = b
        .visit(&format!("{}/dash", s.nginx.url()), "alice", "pw")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", s.orch.all_logs()));
    assert_eq!(visit.status, 200, "{}\n{}", visit.body, s.nginx.logs());
    assert_eq!(visit.prompts, 1);
    assert_eq!(visit.url, format!("{}/dash", s.nginx.url()));
    assert_eq!(echoed(&visit.body, "x-auth-request-user"), ["alice"]);
    assert_eq!(
        echoed(&visit.body, "x-auth-request-email"),
        ["alice@example.com"]
    );
    assert_eq!(
        echoed(&visit.body, "x-auth-request-groups"),
        ["engineering"]
    );
    // That page is the app's own, reached through NGINX.
    assert!(s.app.requests() >= 1);

    // A forged identity header is replaced by the auth answer's value.
    let forged = b
        .client()
        .get(format!("{}/dash", s.nginx.url()))
        .header("X-Auth-Request-User", "mallory")
        .header("X-Auth-Request-Groups", "admins")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 200);
    let body = forged.text().await.unwrap();
    assert_eq!(echoed(&body, "x-auth-request-user"), ["alice"]);
    assert_eq!(echoed(&body, "x-auth-request-groups"), ["engineering"]);

    // A public path needs no session, and a forged header does not survive it.
    let public = client()
        .get(format!("{}/public/x", s.nginx.url()))
        .header("X-Auth-Request-User", "mallory")
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 200);
    let body = public.text().await.unwrap();
    assert!(echoed(&body, "x-auth-request-user").is_empty(), "{body}");
}

#[tokio::test]
async fn ingress_nginx_refuses_with_403_and_no_redirect_loop() {
    let s = start().await;
    let bob = Browser::new();
    let visit = bob
        .visit(&format!("{}/dash", s.nginx.url()), "bob", "pw")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", s.nginx.logs()));
    assert_eq!(visit.status, 403, "{}", visit.body);
    assert_eq!(visit.prompts, 1, "one login, then the refusal");
    let again = bob
        .client()
        .get(format!("{}/dash", s.nginx.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 403, "a refusal, not a redirect");
}

#[tokio::test]
async fn ingress_nginx_ignores_a_client_x_forwarded_uri() {
    let s = start().await;
    // Without a session: a client's X-Forwarded-Uri naming a public path
    // must not open a protected one; NGINX sends the browser to sign in.
    let r = client()
        .get(format!("{}/dash", s.nginx.url()))
        .header("X-Forwarded-Uri", "/public/x")
        .header("X-Forwarded-Host", "127.0.0.1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "{}", s.nginx.logs());
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.contains("/.orchestrator/login?rd="), "{location}");
    assert_eq!(s.app.requests(), 0, "the app was reached");

    // Signed in as bob (refused by the policy), the same trick is refused too.
    let bob = Browser::new();
    let visit = bob
        .visit(&format!("{}/dash", s.nginx.url()), "bob", "pw")
        .await
        .unwrap();
    assert_eq!(visit.status, 403);
    let r = bob
        .client()
        .get(format!("{}/dash", s.nginx.url()))
        .header("X-Forwarded-Uri", "/public/x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(s.app.requests(), 0, "the app was reached");

    // The raw path NGINX forwards as sent: `/dash/%2e%2e/public/x` is not
    // judged as the public `/public/x` (NGINX answers 500 for the 400).
    let nginx_addr = std::net::SocketAddr::from((
        [127, 0, 0, 1],
        s.nginx
            .url()
            .rsplit(':')
            .next()
            .unwrap()
            .parse::<u16>()
            .unwrap(),
    ));
    for trick in ["/dash/%2e%2e/public/x", "/dash/../public/x"] {
        let request =
            format!("GET {trick} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        let r = orchestrator_tests::raw::exchange(
            nginx_addr,
            request.as_bytes(),
            Duration::from_secs(5),
        )
        .await;
        assert_ne!(r.status, Some(200), "{trick}: {}", r.text);
    }
    assert_eq!(s.app.requests(), 0, "the app was reached");
}

#[tokio::test]
async fn caddy_forward_auth_redirects_the_browser_and_lands_on_the_app() {
    let s = start().await;
    // The first answer is the orchestrator's 302, passed to the browser.
    let first = client()
        .get(format!("{}/dash", s.caddy.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 302, "{}", s.caddy.logs());
    let location = first.headers()["location"].to_str().unwrap().to_owned();
    let rd: String =
        url::form_urlencoded::byte_serialize(format!("{}/dash", s.caddy.url()).as_bytes())
            .collect();
    assert_eq!(
        location,
        format!("{}/.orchestrator/login?rd={rd}", s.caddy.url())
    );
    assert_eq!(
        first.headers()["cache-control"],
        "no-store",
        "an auth answer is never cached"
    );
    let b = Browser::new();
    let visit = b
        .visit(&format!("{}/dash", s.caddy.url()), "alice", "pw")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", s.caddy.logs()));
    assert_eq!(visit.status, 200, "{}", visit.body);
    assert_eq!(visit.url, format!("{}/dash", s.caddy.url()));
    assert_eq!(echoed(&visit.body, "x-auth-request-user"), ["alice"]);
    // A forged header is replaced (Caddy deletes what it copies, first).
    let r = b
        .client()
        .get(format!("{}/dash", s.caddy.url()))
        .header("X-Auth-Request-Email", "mallory@evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert_eq!(echoed(&body, "x-auth-request-email"), ["alice@example.com"]);
    // An API call without a session gets 401, not a login page.
    let api = client()
        .get(format!("{}/dash", s.caddy.url()))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 401);
}

/// Logs `user` in through Caddy and returns the `Cookie` header its
/// browser sends to the app's host.
async fn session_cookie(s: &Setup, user: &str) -> String {
    let b = Browser::new();
    let visit = b
        .visit(&format!("{}/public/", s.caddy.url()), user, "pw")
        .await
        .unwrap();
    assert_eq!(visit.status, 200);
    let login = b
        .visit(
            &format!("{}/.orchestrator/login?rd=/public/", s.caddy.url()),
            user,
            "pw",
        )
        .await
        .unwrap();
    assert_eq!(login.status, 200, "{}", login.body);
    let cookies = b.cookies_for(&s.caddy.url());
    assert!(cookies.contains("orchestrator_session="), "{cookies}");
    cookies
}

#[tokio::test]
async fn envoy_style_auth_requests_get_exact_answers() {
    let s = start().await;
    let alice = session_cookie(&s, "alice").await;
    let bob = session_cookie(&s, "bob").await;
    let auth = |path: &str| format!("{}/.orchestrator/auth{path}", s.orch.base_url());
    // The session is bound to the app's host, as the browser sent it.
    let host = format!("127.0.0.1:{}", s.caddy.url().rsplit(':').next().unwrap());
    let c = client();

    let ok = c
        .get(auth("/dash"))
        .header("host", &host)
        .header("cookie", &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["x-auth-request-user"], "alice");
    assert_eq!(ok.headers()["x-auth-request-groups"], "engineering");
    assert_eq!(ok.headers()["cache-control"], "no-store");
    assert!(
        ok.headers().get("set-cookie").is_none(),
        "a 200 sets no cookie"
    );

    // Any method: the original method is the auth request's own.
    let post = c
        .post(auth("/dash/items"))
        .header("host", &host)
        .header("cookie", &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 200);

    let refused = c
        .get(auth("/dash"))
        .header("host", &host)
        .header("cookie", &bob)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert!(refused.headers().get("x-auth-request-user").is_none());

    let browser = c
        .get(auth("/dash"))
        .header("host", &host)
        .send()
        .await
        .unwrap();
    assert_eq!(browser.status(), 302);
    let api = c
        .post(auth("/dash"))
        .header("host", &host)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 401);
    assert_eq!(api.headers()["cache-control"], "no-store");

    let public = c
        .get(auth("/public/a"))
        .header("host", &host)
        .header("x-auth-request-user", "mallory")
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 200);
    // Every identity header is in the answer, empty here: Envoy overwrites
    // a client's copy only with a header the answer has.
    assert_eq!(public.headers()["x-auth-request-user"], "");
    // A path the ingress would forward as sent but that normalises to
    // another one is no description of a request: judged as `/public/x`,
    // `/dash/../public/x` could reach an app that serves it as `/dash`.
    let orch_addr = std::net::SocketAddr::from(([127, 0, 0, 1], s.orch.port()));
    for trick in ["/dash/../public/x", "/dash/%2e%2e/public/x", "/public//x"] {
        // Raw: an HTTP client would normalise the path before sending it.
        let request = format!(
            "GET /.orchestrator/auth{trick} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        );
        let r = orchestrator_tests::raw::exchange(
            orch_addr,
            request.as_bytes(),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(r.status, Some(400), "{trick}: {}", r.text);
        let r = c
            .get(auth(""))
            .header("x-original-url", format!("http://{host}{trick}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "X-Original-URL {trick}");
    }
    // Envoy sends the original Host itself: a client's X-Forwarded-Host the
    // proxy passed along must not choose another app.
    let r = c
        .get(auth("/dash"))
        .header("host", &host)
        .header("x-forwarded-host", "other.example")
        .header("cookie", &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // A client's other spelling of an identity header would reach the app
    // beside the answer's (Traefik, Caddy and Envoy replace the exact name).
    let r = c
        .get(auth("/dash"))
        .header("host", &host)
        .header("cookie", &alice)
        .header("x_auth_request_user", "mallory")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // An auth URL pinned to an app refuses a request described as another's.
    let pinned = |app: &str| format!("{}?orchestrator-app={app}", auth("/dash"));
    let r = c
        .get(pinned("api"))
        .header("host", &host)
        .header("cookie", &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = c
        .get(pinned("dash"))
        .header("host", &host)
        .header("cookie", &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Over plain HTTP the secure cookie counts too (TLS ended before the
    // proxy that describes the request): a copy named `__Host-` still works.
    let secure = alice.replace("orchestrator_session=", "__Host-orchestrator_session=");
    let r = c
        .get(auth("/dash"))
        .header("host", &host)
        .header("cookie", &secure)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A session from another host proves nothing there.
    let elsewhere = c
        .get(auth("/dash"))
        .header("host", "other.example")
        .header("cookie", &alice)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 401);

    // Descriptions that disagree on the host are refused outright.
    let conflicting = c
        .get(auth("/dash"))
        .header("host", &host)
        .header("cookie", &alice)
        .header("x-original-url", "http://other.example/dash")
        .send()
        .await
        .unwrap();
    assert_eq!(conflicting.status(), 403);
}

#[tokio::test]
async fn an_untrusted_peer_cannot_describe_the_original_request() {
    let s = start().await;
    let alice = session_cookie(&s, "alice").await;
    let host = format!("127.0.0.1:{}", s.caddy.url().rsplit(':').next().unwrap());
    let auth = format!("{}/.orchestrator/auth", s.orch.base_url());
    let c = untrusted_client();
    // Traefik's and ingress-nginx's headers from anyone else: ignored, so
    // nothing describes the original request.
    for (name, value) in [
        ("x-forwarded-uri", "/public/x".to_owned()),
        ("x-original-url", format!("http://{host}/public/x")),
    ] {
        let r = c
            .get(&auth)
            .header("host", &host)
            .header(name, &value)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{name}");
        assert!(
            r.text().await.unwrap().contains("trustedProxies"),
            "the reason says what to set"
        );
    }
    // The request's own path still works (Envoy's form), and its headers
    // cannot widen it: a protected path stays protected.
    let r = c
        .get(format!("{auth}/dash"))
        .header("host", &host)
        .header("x-forwarded-uri", "/public/x")
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .get(format!("{auth}/dash"))
        .header("host", &host)
        .header("cookie", &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// A compact JWS over `claims` with `header`, signed by `sign` (or unsigned).
fn jws(header: &Value, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let h = URL_SAFE_NO_PAD.encode(header.to_string());
    let c = URL_SAFE_NO_PAD.encode(claims.to_string());
    let input = format!("{h}.{c}");
    let sig = URL_SAFE_NO_PAD.encode(sign(input.as_bytes()));
    format!("{input}.{sig}")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Signs with `key` and `alg` through jsonwebtoken's own crypto.
fn signer(
    key: jsonwebtoken::EncodingKey,
    alg: jsonwebtoken::Algorithm,
) -> impl Fn(&[u8]) -> Vec<u8> {
    move |input: &[u8]| {
        let sig = jsonwebtoken::crypto::sign(input, &key, alg).unwrap();
        URL_SAFE_NO_PAD.decode(sig).unwrap()
    }
}

fn es256(pem: &str) -> impl Fn(&[u8]) -> Vec<u8> {
    signer(
        jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        jsonwebtoken::Algorithm::ES256,
    )
}

async fn client_credentials(s: &Setup) -> String {
    let r = client()
        .post(format!("{}/idp/token", s.orch.base_url()))
        .basic_auth("api-client", Some("api-client-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn bearer_tokens_from_our_provider_and_forgeries() {
    let s = start().await;
    let token = client_credentials(&s).await;
    let api = format!("{}/api/items", s.orch.base_url());
    let c = client();
    let call = |t: String| {
        let c = c.clone();
        let api = api.clone();
        async move {
            c.get(&api)
                .header("authorization", format!("Bearer {t}"))
                .header("X-Auth-Request-User", "mallory")
                .send()
                .await
                .unwrap()
        }
    };

    let ok = call(token.clone()).await;
    assert_eq!(ok.status(), 200);
    let body = ok.text().await.unwrap();
    assert_eq!(echoed(&body, "x-auth-request-user"), ["api-client"]);

    // The same token through forward auth (Envoy's form).
    let fa = c
        .get(format!(
            "{}/.orchestrator/auth/api/items",
            s.orch.base_url()
        ))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(fa.status(), 200);
    assert_eq!(fa.headers()["x-auth-request-user"], "api-client");

    // A valid token the app's policy refuses: 403, insufficient_scope.
    let strict = c
        .get(format!("{}/strict-api/x", s.orch.base_url()))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(strict.status(), 403);
    assert!(
        strict.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );

    let issuer = format!("{}/idp", s.orch.base_url());
    let claims = |aud: &str, exp: u64| json!({"iss": issuer, "sub": "mallory", "aud": aud, "exp": exp, "iat": now(), "client_id": "x"});
    let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": "fa-es256"});
    let real_key = es256(&s.op_key);
    let other_pem = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem();
    let other_key = es256(&other_pem);
    // The control: signed with the provider's real key, it passes.
    let forged_ok = jws(&header, &claims("api-client", now() + 300), &real_key);
    assert_eq!(call(forged_ok).await.status(), 200);

    let public_jwk = reqwest::get(format!("{issuer}/jwks"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let cases: Vec<(&str, String)> = vec![
        (
            "expired",
            jws(&header, &claims("api-client", now() - 3600), &real_key),
        ),
        (
            "wrong aud",
            jws(&header, &claims("other-api", now() + 300), &real_key),
        ),
        (
            "wrong key",
            jws(&header, &claims("api-client", now() + 300), &other_key),
        ),
        (
            "alg none",
            jws(
                &json!({"alg": "none", "typ": "at+jwt", "kid": "fa-es256"}),
                &claims("api-client", now() + 300),
                |_| Vec::new(),
            ),
        ),
        (
            "HS256 keyed with the public key",
            jws(
                &json!({"alg": "HS256", "typ": "at+jwt", "kid": "fa-es256"}),
                &claims("api-client", now() + 300),
                signer(
                    jsonwebtoken::EncodingKey::from_secret(public_jwk.as_bytes()),
                    jsonwebtoken::Algorithm::HS256,
                ),
            ),
        ),
        (
            "a logout token",
            jws(
                &json!({"alg": "ES256", "typ": "logout+jwt", "kid": "fa-es256"}),
                &claims("api-client", now() + 300),
                &real_key,
            ),
        ),
        (
            "an ID token (same key, same audience)",
            jws(
                &json!({"alg": "ES256", "typ": "JWT", "kid": "fa-es256"}),
                &json!({"iss": issuer, "sub": "alice", "aud": "api-client", "exp": now() + 300,
                        "iat": now(), "auth_time": now(), "nonce": "n-0S6_WzA2Mj"}),
                &real_key,
            ),
        ),
        ("garbage", "not-a-token".to_owned()),
    ];
    for (what, t) in cases {
        let r = call(t).await;
        assert_eq!(r.status(), 401, "{what}");
        let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(
            challenge.starts_with("Bearer error=\"invalid_token\""),
            "{what}: {challenge}"
        );
        assert_eq!(r.headers()["content-type"], "application/json", "{what}");
    }

    // An API call without any credential: a Bearer challenge, no login.
    let none = c
        .get(&api)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 401);
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    assert_eq!(
        s.app.requests(),
        2,
        "only the two valid tokens reached the app"
    );
}

/// A client-credentials token from panva's provider for `resource`
/// (`urn:demo-api`: opaque; `urn:demo-api:jwt`: a JWT; see the fixture).
async fn panva_token(op: &NodeOp, resource: &str) -> String {
    let r = client()
        .post(format!("{}/token", op.issuer))
        .basic_auth("api-client", Some("api-secret"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("resource", resource),
            ("scope", "api:read"),
        ])
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn bearer_tokens_from_panva_oidc_provider_jwt_and_introspected() {
    let op = NodeOp::start("127.0.0.1", &["http://127.0.0.1:1/cb".to_owned()]).await;
    let more_idps = format!(
        "    - name: panva\n      issuer: {}\n      clientId: gateway\n      clientSecret: ${{secret:panva-secret}}\n",
        op.issuer
    );
    let more_apps = "    - name: panva-api\n      host: \"*\"\n      pathPrefix: /panva-api\n      \
         upstream: {upstream}\n      identityProvider: panva\n      \
         bearer: {audiences: [\"urn:demo-api\", \"urn:demo-api:jwt\"], introspection: true}\n      \
         headers: {X-Auth-Request-User: sub, X-Token-Scope: scope}\n    \
         - name: panva-other\n      host: \"*\"\n      pathPrefix: /panva-other\n      \
         upstream: {upstream}\n      identityProvider: panva\n      \
         bearer: {audiences: [\"urn:other-api\"], introspection: true}\n";
    let s = start_with(&more_idps, more_apps).await;
    let c = client();
    let call = |path: &str, token: &str| {
        c.get(format!("{}{path}", s.orch.base_url()))
            .header("authorization", format!("Bearer {token}"))
            .send()
    };

    let jwt = panva_token(&op, "urn:demo-api:jwt").await;
    assert_eq!(jwt.split('.').count(), 3, "a JWT: {jwt}");
    let r = call("/panva-api/x", &jwt).await.unwrap();
    assert_eq!(r.status(), 200, "{}", s.orch.all_logs());
    assert_eq!(
        echoed(&r.text().await.unwrap(), "x-auth-request-user"),
        ["api-client"]
    );

    let opaque = panva_token(&op, "urn:demo-api").await;
    assert_ne!(opaque.split('.').count(), 3, "opaque: {opaque}");
    let r = call("/panva-api/x", &opaque).await.unwrap();
    assert_eq!(r.status(), 200, "{}", s.orch.all_logs());
    let body = r.text().await.unwrap();
    assert_eq!(echoed(&body, "x-auth-request-user"), ["api-client"]);
    assert_eq!(echoed(&body, "x-token-scope"), ["api:read"]);
    // The cached answer for one app never admits the token to another:
    // the other app's audience is checked (and cached) on its own.
    let r = call("/panva-other/x", &opaque).await.unwrap();
    assert_eq!(r.status(), 401);
    let r = call("/panva-api/x", &opaque).await.unwrap();
    assert_eq!(r.status(), 200);
    // An opaque token the IdP does not know: inactive.
    let r = call("/panva-api/x", "made-up-opaque-token").await.unwrap();
    assert_eq!(r.status(), 401);
    // Our own provider's tokens are not panva's.
    let ours = client_credentials(&s).await;
    let r = call("/panva-api/x", &ours).await.unwrap();
    assert_eq!(r.status(), 401);
}

const DOMAIN_YAML: &str = r#"
oidcProvider:
  issuer: http://127.0.0.1:{port}/idp
  signingKeys:
    - {id: k, algorithm: ES256, privateKey: "${secret:op-key.pem}"}
  clients:
    - clientId: gw
      clientSecret: ${secret:client-secret}
      redirectUris: [http://a.example.test:{port}/.orchestrator/callback, http://c.other.test:{port}/.orchestrator/callback]
  users:
    - username: alice
      passwordHash: "${secret:hash}"
      claims: {email: alice@example.com, email_verified: true}
appGateway:
  session: {cookieDomain: example.test}
  identityProviders:
    - {name: own, issuer: "http://127.0.0.1:{port}/idp", clientId: gw, clientSecret: "${secret:client-secret}"}
  apps:
    - {name: a, host: a.example.test, upstream: "{upstream}", identityProvider: own, headers: {X-User: sub}}
    - {name: b, host: b.example.test, upstream: "{upstream}", identityProvider: own, headers: {X-User: sub}}
    - {name: c, host: c.other.test, upstream: "{upstream}", identityProvider: own, headers: {X-User: sub}}
"#;

#[tokio::test]
async fn a_cookie_domain_session_serves_every_app_host_under_it() {
    let app = TestUpstream::echo().await;
    let hash = run_cli(&["hash-password"], "pw\n").await;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem();
    let orch = Orchestrator::start(
        &DOMAIN_YAML.replace("{upstream}", &app.url()),
        &[
            ("op-key.pem", key.as_str()),
            ("client-secret", "gw-secret"),
            ("hash", hash.stdout.trim()),
        ],
    )
    .await;
    let port = orch.port();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let b = Browser::resolving(&["a.example.test", "b.example.test", "c.other.test"], addr);
    let on = |host: &str, path: &str| format!("http://{host}:{port}{path}");

    let first = b
        .visit(&on("a.example.test", "/x"), "alice", "pw")
        .await
        .unwrap();
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.prompts, 1);
    // The cookie is the domain's: the browser sends it to b as well…
    assert!(
        b.cookies_for(&on("b.example.test", "/"))
            .contains("orchestrator_session="),
        "no domain cookie"
    );
    let second = b
        .visit(&on("b.example.test", "/y"), "alice", "pw")
        .await
        .unwrap();
    assert_eq!(second.status, 200);
    assert_eq!(second.authorizations, 0, "b needed a login of its own");
    assert_eq!(echoed(&second.body, "x-user"), ["alice"]);
    // …and the auth endpoint takes it for any host of the domain.
    let fa = b
        .client()
        .get(on("b.example.test", "/.orchestrator/auth/y"))
        .send()
        .await
        .unwrap();
    assert_eq!(fa.status(), 200);
    assert_eq!(fa.headers()["x-user"], "alice");
    // A host outside the domain never sees the cookie, and a copied cookie
    // is no session there.
    assert!(
        !b.cookies_for(&on("c.other.test", "/"))
            .contains("orchestrator_session=")
    );
    let cookie = b.cookies_for(&on("a.example.test", "/"));
    let copied = client()
        .get(format!("{}/.orchestrator/auth/z", orch.base_url()))
        .header("host", format!("c.other.test:{port}"))
        .header("cookie", cookie)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(copied.status(), 401);
}
