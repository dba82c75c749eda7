//! Forwarding to an app's upstream: a pooled hyper-util client per app,
//! plain HTTP or rustls (optional CA file, mTLS client certificate, HTTP/2
//! when the upstream offers it through ALPN), with connect and
//! response-header timeouts.
//!
//! A request that came on an HTTP/1.1 client connection to a plain-HTTP
//! upstream goes instead on an upstream connection that client connection
//! keeps and drives in its own task ([`ConnUpstreams`]): no task hop per
//! request or response. Upgrades, HTTPS upstreams (HTTP/2 through ALPN) and
//! a connection's fifth upstream use the pool.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use orchestrator_config::AppConfig;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::error::GatewayError;
use orchestrator_http::body::BoxBody;
use orchestrator_http::trace_context::{self, HttpAttributes, StringValue};
use orchestrator_http::upstream_conn::ConnUpstreams;
use tower_service::Service as _;

type HttpClient = Client<HttpsConnector<HttpConnector>, BoxBody>;

/// A connection kept by a client connection and idle this long is closed
/// rather than used: as the pool's idle timeout, shorter than common
/// upstream keep-alive timeouts.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Most bytes an upstream connection buffers as it reads (hyper's default is
/// 400 KB), so also the largest response head an upstream may send (as
/// HAProxy's default buffer; NGINX's is 4 or 8 KiB). Body chunks are read at
/// most this big: with the client connection's write buffer (at most
/// `listen.maxHeaderBytes` and one chunk), what one slow client's download
/// holds in this process, ~100 KiB by default.
const READ_BUF_BYTES: usize = 16 * 1024;

/// Why a forward failed; the caller turns it into 502 or 504.
#[derive(Debug)]
pub(crate) enum ForwardError {
    /// Connection refused/reset, TLS failure, protocol error (502).
    Failed(Box<dyn std::error::Error + Send + Sync>),
    /// No response headers within the response timeout (504).
    Timeout,
}

/// The upstream of one app.
pub(crate) struct Upstream {
    /// Names this upstream (this load of it) in a client connection's
    /// [`ConnUpstreams`].
    id: u64,
    scheme: Scheme,
    authority: Authority,
    /// `authority` as the `Host` header value, made once.
    host: HeaderValue,
    /// The upstream span's `server.address` and `server.port`, made once.
    server_address: StringValue,
    server_port: u16,
    client: HttpClient,
    /// HTTP/1.1 only: upgrades (WebSocket) need an HTTP/1.1 connection even
    /// when the upstream would offer HTTP/2 through ALPN.
    upgrade_client: HttpClient,
    /// TCP connects for the connections client connections keep.
    connector: HttpConnector,
    response_timeout: Duration,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("scheme", &self.scheme)
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// From the app's config (`upstream`, `upstreamTls`); reads CA and
    /// client-certificate files now, so a bad file fails the (re)load.
    pub(crate) fn new(
        upstream: &str,
        app: &AppConfig,
        index: usize,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<Self, GatewayError> {
        let key = |k: &str| format!("appGateway.apps[{index}].{k}");
        let uri: Uri = upstream
            .parse()
            .map_err(|_| GatewayError::config(key("upstream"), "not a URL"))?;
        let scheme = uri
            .scheme()
            .filter(|s| **s == Scheme::HTTP || **s == Scheme::HTTPS)
            .cloned()
            .ok_or_else(|| GatewayError::config(key("upstream"), "scheme must be http or https"))?;
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| GatewayError::config(key("upstream"), "missing host"))?;
        if uri.path() != "/" && !uri.path().is_empty() {
            return Err(GatewayError::config(
                key("upstream"),
                "must not have a path",
            ));
        }
        let tls = tls_config(app, &key)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        let server_name = app
            .upstream_tls
            .as_ref()
            .and_then(|t| t.server_name.clone())
            .map(|n| {
                ServerName::try_from(n).map_err(|_| {
                    GatewayError::config(key("upstreamTls.serverName"), "not a DNS name or IP")
                })
            })
            .transpose()?;
        let build = |h2: bool| {
            let b = HttpsConnectorBuilder::new()
                .with_tls_config(tls.clone())
                .https_or_http();
            let b = match &server_name {
                Some(n) => b.with_server_name_resolver(FixedServerNameResolver::new(n.clone())),
                None => b,
            };
            let connector = if h2 {
                b.enable_all_versions().wrap_connector(http.clone())
            } else {
                b.enable_http1().wrap_connector(http.clone())
            };
            Client::builder(TokioExecutor::new())
                // Shorter than common upstream keep-alive timeouts, so the
                // pool rarely hands out a connection the upstream just closed.
                .pool_idle_timeout(Duration::from_secs(30))
                // hyper only re-sends a request it never wrote to a
                // connection; nothing the upstream may have seen is retried.
                .retry_canceled_requests(true)
                .http1_max_buf_size(READ_BUF_BYTES)
                .build(connector)
        };
        let host = HeaderValue::from_str(authority.as_str()).map_err(|_| {
            GatewayError::config(key("upstream"), "host is not a valid header value")
        })?;
        let server_port =
            authority
                .port_u16()
                .unwrap_or(if scheme == Scheme::HTTPS { 443 } else { 80 });
        static IDS: AtomicU64 = AtomicU64::new(0);
        Ok(Self {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            server_address: StringValue::from(Arc::<str>::from(authority.host())),
            server_port,
            scheme,
            authority,
            host,
            client: build(true),
            upgrade_client: build(false),
            connector: http,
            response_timeout,
        })
    }

    /// The upstream URI of a request for `path_and_query`.
    pub(crate) fn uri(&self, path_and_query: PathAndQuery) -> Result<Uri, http::Error> {
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
    }

    /// The `Host` the upstream sees.
    pub(crate) fn host_header(&self) -> HeaderValue {
        self.host.clone()
    }

    /// Sends `req` (in its own span when traces are on, whose context the
    /// upstream gets as `traceparent`), on a connection of `held` (the
    /// client connection's) when it can; waits at most the response timeout
    /// for headers. The body then streams without a deadline (downloads may
    /// be long).
    pub(crate) async fn send(
        &self,
        mut req: Request<BoxBody>,
        upgrade: bool,
        held: Option<&ConnUpstreams>,
    ) -> Result<Response<Incoming>, ForwardError> {
        let mut span =
            trace_context::Span::child("upstream", trace_context::SpanKind::Client, || {
                HttpAttributes {
                    method: Some(trace_context::method_name(req.method())),
                    server_address: Some(self.server_address.clone()),
                    server_port: Some(self.server_port),
                    ..HttpAttributes::NONE
                }
            });
        // The span's context goes to the upstream; nothing else in the
        // sending makes spans, so it is not made current (a context
        // attached on every poll costs).
        if let Some(span) = &span {
            span.inject(req.headers_mut());
        }
        let held = held.filter(|_| !upgrade && self.scheme == Scheme::HTTP);
        let sent = async {
            match held {
                Some(held) => self.send_held(req, held).await,
                None => self.send_pooled(req, upgrade).await,
            }
        };
        let result = tokio::time::timeout(self.response_timeout, sent)
            .await
            .unwrap_or(Err(ForwardError::Timeout));
        if let Some(span) = &mut span {
            match &result {
                Ok(resp) => {
                    if let Some(http) = span.http() {
                        http.status_code = Some(resp.status().as_u16());
                    }
                }
                Err(_) => span.failed(),
            }
        }
        result
    }

    /// Through the pool (its connections are tasks of their own).
    async fn send_pooled(
        &self,
        req: Request<BoxBody>,
        upgrade: bool,
    ) -> Result<Response<Incoming>, ForwardError> {
        let client = if upgrade {
            &self.upgrade_client
        } else {
            &self.client
        };
        client
            .request(req)
            .await
            .map_err(|e| ForwardError::Failed(e.into()))
    }

    /// On the client connection's idle connection to this upstream, or on a
    /// new one it then keeps, or through the pool when it keeps its most.
    async fn send_held(
        &self,
        mut req: Request<BoxBody>,
        held: &ConnUpstreams,
    ) -> Result<Response<Incoming>, ForwardError> {
        let mut kept = None;
        if let Some(mut sender) = held.take(self.id, IDLE_TIMEOUT) {
            // Ready at once, or once the previous response's end is read.
            if sender.ready().await.is_ok() {
                kept = Some(sender);
            }
        }
        let mut sender = match kept {
            Some(sender) => sender,
            // Boxed: connecting is rare, and its futures would otherwise
            // enlarge (and be copied with) every request's future.
            None if held.has_room() => Box::pin(self.open(req.uri(), held)).await?,
            None => return self.send_pooled(req, false).await,
        };
        // A connection of its own writes the URI as it is: the origin form
        // (path and query), as the pool sends it, never the absolute form.
        let origin = origin_form(req.uri());
        let absolute = std::mem::replace(req.uri_mut(), origin);
        match sender.try_send_request(req).await {
            Ok(resp) => {
                held.give_back(self.id, sender);
                Ok(resp)
            }
            Err(mut e) => match e.take_message() {
                // The connection closed before the request left it (a kept
                // one at the upstream's idle timeout): nothing was sent, so
                // once more through the pool, which needs the absolute URI.
                Some(mut req) => {
                    *req.uri_mut() = absolute;
                    self.send_pooled(req, false).await
                }
                None => Err(ForwardError::Failed(e.into_error().into())),
            },
        }
    }

    /// A new HTTP/1.1 connection, driven from now on by `held`'s client
    /// connection.
    async fn open(
        &self,
        uri: &Uri,
        held: &ConnUpstreams,
    ) -> Result<hyper::client::conn::http1::SendRequest<BoxBody>, ForwardError> {
        let io = self
            .connector
            .clone()
            .call(uri.clone())
            .await
            .map_err(|e| ForwardError::Failed(e.into()))?;
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(READ_BUF_BYTES)
            .handshake(io)
            .await
            .map_err(|e| ForwardError::Failed(e.into()))?;
        held.open(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }
}

/// The origin form of `uri` (RFC 9112 §3.2.1): its path and query, `/` when
/// it has none.
fn origin_form(uri: &Uri) -> Uri {
    uri.path_and_query()
        .cloned()
        .map_or_else(|| Uri::from_static("/"), Uri::from)
}

fn tls_config(
    app: &AppConfig,
    key: &dyn Fn(&str) -> String,
) -> Result<rustls::ClientConfig, GatewayError> {
    let t = app.upstream_tls.clone().unwrap_or_default();
    let mut roots = rustls::RootCertStore::empty();
    match &t.ca_file {
        Some(ca) => {
            let certs = CertificateDer::pem_file_iter(ca).map_err(|e| {
                GatewayError::config(
                    key("upstreamTls.caFile"),
                    format!("cannot read {}: {e}", ca.display()),
                )
            })?;
            for cert in certs {
                let cert = cert.map_err(|_| {
                    GatewayError::config(key("upstreamTls.caFile"), "not a PEM certificate bundle")
                })?;
                roots
                    .add(cert)
                    .map_err(|e| GatewayError::config(key("upstreamTls.caFile"), e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(GatewayError::config(
                    key("upstreamTls.caFile"),
                    "no certificate in the file",
                ));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| GatewayError::config(key("upstreamTls"), e.to_string()))?
    .with_root_certificates(roots);
    match (&t.cert_file, &t.key_file) {
        (Some(cert), Some(pk)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|_| {
                    GatewayError::config(
                        key("upstreamTls.certFile"),
                        format!("cannot read a PEM chain from {}", cert.display()),
                    )
                })?;
            let private = PrivateKeyDer::from_pem_file(pk).map_err(|_| {
                GatewayError::config(
                    key("upstreamTls.keyFile"),
                    format!("cannot read a PEM private key from {}", pk.display()),
                )
            })?;
            builder
                .with_client_auth_cert(chain, private)
                .map_err(|e| GatewayError::config(key("upstreamTls.keyFile"), e.to_string()))
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(GatewayError::config(
            key("upstreamTls"),
            "certFile and keyFile go together",
        )),
    }
}
