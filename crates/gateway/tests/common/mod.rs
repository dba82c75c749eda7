//! Real parts for the gateway's end-to-end tests: an echo upstream, panva's
//! `oidc-provider` on loopback, the gateway itself in a hyper server, and a
//! cookie-keeping browser that fills in the login form.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use orchestrator_http::ConnInfo;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use orchestrator_cache::{Cache, MemoryCache};
use orchestrator_config::{AppGatewayConfig, ListenConfig, MemoryCacheConfig};
use orchestrator_gateway::{Gateway, GatewayMetrics};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub fn init_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// An upstream that answers every request with JSON describing it; `/slow`
/// waits 3 s first; `/ws` is a WebSocket echo.
pub struct EchoUpstream {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for EchoUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo(mut req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    if req.uri().path() == "/ws" {
        let key = req
            .headers()
            .get("sec-websocket-key")
            .map(|v| v.as_bytes().to_vec())
            .unwrap_or_default();
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key);
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            use futures::{SinkExt as _, StreamExt as _};
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                tokio_tungstenite::tungstenite::protocol::Role::Server,
                None,
            )
            .await;
            while let Some(Ok(msg)) = ws.next().await {
                if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                    break;
                }
            }
        });
        return Ok(Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .header("sec-websocket-accept", accept)
            .body(Full::new(Bytes::new()))
            .unwrap());
    }
    if req.uri().path() == "/slow" {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let version = format!("{:?}", req.version());
    let body = req.into_body().collect().await?.to_bytes();
    let out = json!({
        "method": method, "path": path, "query": query, "version": version,
        "headers": headers, "body": String::from_utf8_lossy(&body),
    });
    Ok(Response::builder()
        .header("content-type", "application/json")
        .header("connection", "x-hop")
        .header("x-hop", "must-not-pass")
        .body(Full::new(Bytes::from(out.to_string())))
        .unwrap())
}

impl EchoUpstream {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    break;
                };
                tokio::spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), service_fn(echo))
                        .await;
                });
            }
        });
        Self { addr, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// What the echo upstream saw.
pub struct Echoed(pub Value);

impl Echoed {
    /// All values of a header (lower-case name).
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.0["headers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h[0].as_str().unwrap().eq_ignore_ascii_case(name))
            .map(|h| h[1].as_str().unwrap().to_owned())
            .collect()
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.header_all(name).into_iter().next()
    }
    pub fn path(&self) -> &str {
        self.0["path"].as_str().unwrap()
    }
    /// Every header name, lower-cased.
    pub fn header_names(&self) -> Vec<String> {
        self.0["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h[0].as_str().unwrap().to_ascii_lowercase())
            .collect()
    }
}

/// panva's certified `oidc-provider` in a node process on a free port.
pub struct NodeOp {
    pub issuer: String,
    child: tokio::process::Child,
}

fn node_op_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/node-op")
}

impl NodeOp {
    /// Starts the OP accepting these redirect URIs; `npm ci` first if needed.
    pub async fn start(redirect_uris: &[String]) -> Self {
        let dir = node_op_dir();
        if !dir.join("node_modules/oidc-provider").exists() {
            let status = tokio::process::Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir)
                .status()
                .await
                .unwrap();
            assert!(status.success(), "npm ci failed in {}", dir.display());
        }
        let mut child = tokio::process::Command::new("node")
            .arg("op.mjs")
            .arg(redirect_uris.join(","))
            .current_dir(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("node OP did not start in 30 s")
            .unwrap()
            .expect("node OP exited");
        let v: Value = serde_json::from_str(&line).unwrap();
        // Keep draining stdout: a closed pipe would kill node with EPIPE.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            issuer: v["issuer"].as_str().unwrap().to_owned(),
            child,
        }
    }

    /// How often the password form was shown so far.
    pub async fn login_forms_shown(&self) -> u64 {
        let v: Value = reqwest::get(format!("{}/test/stats", self.issuer))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["loginFormsShown"].as_u64().unwrap()
    }
}

/// A listener bound before the gateway exists, so its URL can be registered at the OP.
pub struct Bound {
    pub listener: TcpListener,
    pub addr: SocketAddr,
}

impl Bound {
    pub async fn new() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        Self { listener, addr }
    }
    pub fn callback(&self) -> String {
        format!("http://{}/.orchestrator/callback", self.addr)
    }
}

/// The gateway served by hyper-util's auto (HTTP/1.1 + h2c) server.
pub struct GatewayServer {
    pub addr: SocketAddr,
    pub gateway: Arc<Gateway>,
    pub registry: prometheus::Registry,
    task: JoinHandle<()>,
}

impl Drop for GatewayServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GatewayServer {
    pub fn start(bound: Bound, cfg: &AppGatewayConfig, cache: Arc<dyn Cache>) -> Self {
        let registry = prometheus::Registry::new();
        let metrics = Arc::new(GatewayMetrics::new(&registry).unwrap());
        let gateway =
            Arc::new(Gateway::new(cfg, &ListenConfig::default(), cache, metrics).unwrap());
        let reg = registry.clone();
        let gw = gateway.clone();
        let Bound { listener, addr } = bound;
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    break;
                };
                let gw = gw.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let gw = gw.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                gw.handle(req, ConnInfo::plain(peer)).await,
                            )
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            gateway,
            registry: reg,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

pub fn memory_cache() -> Arc<dyn Cache> {
    Arc::new(MemoryCache::new(&MemoryCacheConfig::default()))
}

/// A fresh P-256 PKCS#8 PEM key.
pub fn es256_pem() -> String {
    rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem()
}

/// The standard test config: apps `demo` (/), `admin` (/admin, group admins),
/// `mail` (/mail, domain example.com), `sales` (/sales, claim department),
/// `down` (/down, nothing listens), `slow` (/slow, 500 ms timeout).
pub fn config(issuer: &str, upstream: &str, down: &str, overrides: Value) -> AppGatewayConfig {
    let app = |name: &str, prefix: &str, up: &str, extra: Value| {
        let mut a = json!({
            "name": name, "host": "*", "pathPrefix": prefix, "upstream": up,
            "identityProvider": "node",
            "headers": {
                "X-Auth-Request-User": "sub",
                "X-Auth-Request-Email": "email",
                "X-Auth-Request-Groups": "groups"
            },
            "assertionHeader": "X-Orchestrator-Assertion"
        });
        for (k, v) in extra.as_object().unwrap() {
            a[k] = v.clone();
        }
        a
    };
    let mut cfg = json!({
        "session": {"cookieName": "gw_session", "store": "local", "maxLifetime": "1h", "idleTimeout": "30m", "maxEntries": 1000},
        "identityProviders": [{
            "name": "node", "issuer": issuer, "clientId": "gateway", "clientSecret": "gateway-secret",
            "scopes": ["openid", "email", "profile", "groups"]
        }],
        "apps": [
            app("demo", "/", upstream, json!({"publicPaths": ["/public/"]})),
            app("admin", "/admin", upstream, json!({"policy": {"allowGroups": ["admins"]}})),
            app("mail", "/mail", upstream, json!({"policy": {"allowEmailDomains": ["example.com"]}})),
            app("sales", "/sales", upstream, json!({"policy": {"claims": {"department": ["sales"]}}})),
            app("down", "/down", down, json!({})),
        ],
        "assertionSigningKeys": [{"id": "gw-test-1", "algorithm": "ES256", "privateKey": es256_pem()}],
        "upstreamConnectTimeout": "1s",
        "upstreamResponseTimeout": "500ms"
    });
    for (k, v) in overrides.as_object().unwrap() {
        if k == "session" {
            for (sk, sv) in v.as_object().unwrap() {
                cfg["session"][sk] = sv.clone();
            }
        } else {
            cfg[k] = v.clone();
        }
    }
    serde_json::from_value(cfg).unwrap()
}

/// A cookie-keeping client that never follows redirects by itself.
pub struct Browser {
    pub client: reqwest::Client,
    pub jar: Arc<reqwest::cookie::Jar>,
}

pub fn browser() -> Browser {
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let client = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Browser { client, jar }
}

impl Browser {
    /// The `Cookie` header the browser would send to `url`.
    pub fn cookie_header(&self, url: &str) -> String {
        use reqwest::cookie::CookieStore as _;
        self.jar
            .cookies(&reqwest::Url::parse(url).unwrap())
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    pub async fn visit(&self, url: &str, user: &str, password: &str) -> Visit {
        visit(&self.client, url, user, password).await
    }

    /// Signs out as a person would: opens the sign-out page at `url` and
    /// submits its form. Returns the form POST's response.
    pub async fn logout(&self, url: &str) -> reqwest::Response {
        let page = self.client.get(url).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        let page = page.text().await.unwrap();
        let token =
            hidden_value(&page, "token").unwrap_or_else(|| panic!("no sign-out form in {page}"));
        self.client
            .post(url)
            .form(&[("token", token)])
            .send()
            .await
            .unwrap()
    }
}

/// The value of the hidden form field `name` in `html`.
pub fn hidden_value(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\" value=\""))?;
    let rest = &html[at + name.len() + 15..];
    rest.split('"').next().map(str::to_owned)
}

/// What happened while following a URL like a browser.
pub struct Visit {
    pub status: StatusCode,
    pub url: String,
    pub body: String,
    pub login_forms: usize,
    pub hops: Vec<String>,
}

/// Follows redirects (at most 20) and fills in the OP's login form with
/// `user` / `password` when it appears.
pub async fn visit(client: &reqwest::Client, url: &str, user: &str, password: &str) -> Visit {
    let mut url = url.to_owned();
    let mut login_forms = 0;
    let mut hops = Vec::new();
    for _ in 0..20 {
        hops.push(url.clone());
        let resp = client
            .get(&url)
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        let status = resp.status();
        if status.is_redirection() {
            let loc = resp.headers()["location"].to_str().unwrap().to_owned();
            url = reqwest::Url::parse(&url)
                .unwrap()
                .join(&loc)
                .unwrap()
                .to_string();
            continue;
        }
        let body = resp.text().await.unwrap();
        if status == StatusCode::OK && body.contains("name=\"password\"") {
            login_forms += 1;
            let action = body
                .split("action=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            let post = reqwest::Url::parse(&url).unwrap().join(action).unwrap();
            let resp = client
                .post(post.clone())
                .form(&[("login", user), ("password", password)])
                .send()
                .await
                .unwrap();
            if !resp.status().is_redirection() {
                return Visit {
                    status: resp.status(),
                    url: post.to_string(),
                    body: resp.text().await.unwrap(),
                    login_forms,
                    hops,
                };
            }
            let loc = resp.headers()["location"].to_str().unwrap().to_owned();
            url = post.join(&loc).unwrap().to_string();
            continue;
        }
        return Visit {
            status,
            url,
            body,
            login_forms,
            hops,
        };
    }
    panic!("too many redirects: {hops:?}");
}

impl Visit {
    pub fn echoed(&self) -> Echoed {
        Echoed(
            serde_json::from_str(&self.body)
                .unwrap_or_else(|_| panic!("not an echo: {} {}", self.status, self.body)),
        )
    }
}

/// A loopback address where nothing listens.
pub async fn closed_port_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

/// The echo upstream behind TLS (certificate for `localhost` from a test CA
/// written to `ca_path`), offering h2 and http/1.1 through ALPN; when
/// `client_ca` is set, clients must present a certificate it signed.
pub async fn tls_echo(
    dir: &std::path::Path,
    require_client_cert: bool,
) -> (
    SocketAddr,
    JoinHandle<()>,
    PathBuf,
    Option<(PathBuf, PathBuf)>,
) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca_cert.pem()).unwrap();
    let client_files = require_client_cert.then(|| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["gateway".to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let (c, k) = (dir.join("client.pem"), dir.join("client.key"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    });
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = if require_client_cert {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca_cert.der().clone()).unwrap();
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut server = builder
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls_pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap(),
        )
        .unwrap();
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                break;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tls), service_fn(echo))
                    .await;
            });
        }
    });
    (addr, task, ca_path, client_files)
}
