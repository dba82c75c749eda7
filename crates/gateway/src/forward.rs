//! Forwarding to an app's upstream: a pooled hyper-util client per app,
//! plain HTTP or rustls (optional CA file, mTLS client certificate, HTTP/2
//! when the upstream offers it through ALPN), with connect and
//! response-header timeouts.

use std::sync::Arc;
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
use orchestrator_http::trace_context::{self, KeyValue};

type HttpClient = Client<HttpsConnector<HttpConnector>, BoxBody>;

/// Why a forward failed; the caller turns it into 502 or 504.
#[derive(Debug)]
pub(crate) enum ForwardError {
    /// Connection refused/reset, TLS failure, protocol error (502).
    Failed(hyper_util::client::legacy::Error),
    /// No response headers within the response timeout (504).
    Timeout,
}

/// The upstream of one app.
pub(crate) struct Upstream {
    scheme: Scheme,
    authority: Authority,
    /// `authority` as the `Host` header value, made once.
    host: HeaderValue,
    client: HttpClient,
    /// HTTP/1.1 only: upgrades (WebSocket) need an HTTP/1.1 connection even
    /// when the upstream would offer HTTP/2 through ALPN.
    upgrade_client: HttpClient,
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
                .build(connector)
        };
        let host = HeaderValue::from_str(authority.as_str()).map_err(|_| {
            GatewayError::config(key("upstream"), "host is not a valid header value")
        })?;
        Ok(Self {
            scheme,
            authority,
            host,
            client: build(true),
            upgrade_client: build(false),
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

    /// Sends the request; waits at most the response timeout for headers.
    /// The body then streams without a deadline (downloads may be long).
    /// Sends `req` (in its own span when traces are on, whose context the
    /// upstream gets as `traceparent`).
    pub(crate) async fn send(
        &self,
        mut req: Request<BoxBody>,
        upgrade: bool,
    ) -> Result<Response<Incoming>, ForwardError> {
        let client = if upgrade {
            &self.upgrade_client
        } else {
            &self.client
        };
        let span = trace_context::Span::child("upstream", trace_context::SpanKind::Client, || {
            let uri = req.uri();
            let port = uri
                .port_u16()
                .unwrap_or(if uri.scheme() == Some(&Scheme::HTTPS) {
                    443
                } else {
                    80
                });
            vec![
                KeyValue::new(
                    "http.request.method",
                    trace_context::method_name(req.method()),
                ),
                KeyValue::new("server.address", uri.host().unwrap_or_default().to_owned()),
                KeyValue::new("server.port", i64::from(port)),
            ]
        });
        let sent = async {
            trace_context::inject(req.headers_mut());
            match tokio::time::timeout(self.response_timeout, client.request(req)).await {
                Ok(Ok(resp)) => Ok(resp),
                Ok(Err(e)) => Err(ForwardError::Failed(e)),
                Err(_) => Err(ForwardError::Timeout),
            }
        };
        let result = trace_context::within(span.as_ref(), sent).await;
        if let Some(span) = span {
            match &result {
                Ok(resp) => span.set(KeyValue::new(
                    "http.response.status_code",
                    i64::from(resp.status().as_u16()),
                )),
                Err(_) => span.failed(),
            }
        }
        result
    }
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
