//! Routing under the issuer path, for [`Provider::handle`].
//!
//! Phases of one request, in order:
//! 1. route — strip the issuer path, pick the endpoint by path and method
//!    (405/404 before any body is read);
//! 2. read — parameters from the query (GET) or a bounded form body (POST),
//!    strictly parsed (`params`);
//! 3. endpoint — the endpoint module does its checks and talks to the store;
//! 4. rescue — errors are rendered by `error` in the style the endpoint's
//!    spec demands (JSON, Bearer challenge, redirect or page);
//! 5. metrics — one count and one duration per request.

use std::time::Instant;

use bytes::Bytes;
use http::{Method, Request, Response};

use crate::BoxBody;
use crate::endpoints::{
    authorize, discovery, end_session, introspect, jwks, login, revoke, token, upstream, userinfo,
};
use crate::error::OAuthError;
use crate::params::Params;
use crate::respond;
use crate::state::{Provider, RequestCtx};
use crate::web;
use orchestrator_http::ConnInfo;

impl Provider {
    /// Serves one request under the issuer path.
    pub async fn handle<B>(&self, req: Request<B>, conn: ConnInfo) -> Response<BoxBody>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let started = Instant::now();
        let ctx = RequestCtx {
            client_ip: orchestrator_http::proxies::client_ip(
                req.headers(),
                conn.peer.ip(),
                &self.trusted_proxies,
            ),
            tls: conn.tls,
        };
        let endpoint = self.route(req.uri().path());
        let route = orchestrator_http::trace_context::enabled()
            .then(|| endpoint.template(&self.base_path, req.uri().path()))
            .flatten();
        let mut resp = if req.method() == Method::OPTIONS && endpoint.cors() {
            web::cors_preflight()
        } else {
            self.dispatch(endpoint, req, ctx).await
        };
        if endpoint.cors() {
            web::allow_any_origin(&mut resp);
        }
        if let Some(route) = route {
            resp.extensions_mut()
                .insert(orchestrator_http::RequestIdentity {
                    route: Some(route.into()),
                    ..Default::default()
                });
        }
        let label = endpoint.label();
        self.metrics
            .requests
            .with_label_values(&[label, resp.status().as_str()])
            .inc();
        self.metrics
            .duration
            .with_label_values(&[label])
            .observe(started.elapsed().as_secs_f64());
        resp
    }

    fn route(&self, path: &str) -> Endpoint {
        match self.sub_path(path) {
            Some("/.well-known/openid-configuration") => Endpoint::Discovery,
            Some("/jwks") => Endpoint::Jwks,
            Some("/authorize") => Endpoint::Authorize,
            Some("/login") => Endpoint::Login,
            Some("/token") => Endpoint::Token,
            Some("/userinfo") => Endpoint::Userinfo,
            Some("/introspect") => Endpoint::Introspect,
            Some("/revoke") => Endpoint::Revoke,
            Some("/end_session") => Endpoint::EndSession,
            Some(rest) if rest.starts_with("/upstreams/") => {
                match rest.rsplit_once('/').map(|(_, last)| last) {
                    Some("start") => Endpoint::UpstreamStart,
                    Some("callback") => Endpoint::UpstreamCallback,
                    Some("logged-out") => Endpoint::UpstreamLoggedOut,
                    _ => Endpoint::NotFound,
                }
            }
            _ => Endpoint::NotFound,
        }
    }

    async fn dispatch<B>(
        &self,
        endpoint: Endpoint,
        req: Request<B>,
        ctx: RequestCtx,
    ) -> Response<BoxBody>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let method = req.method().clone();
        let get_like = method == Method::GET || method == Method::HEAD;
        match endpoint {
            Endpoint::NotFound => respond::json_response(&OAuthError::not_found()),
            Endpoint::Discovery if get_like => web::public_json_bytes(
                self.discovery
                    .get_or_init(|| json_bytes(&discovery::document(self)))
                    .clone(),
                3600,
            ),
            Endpoint::Jwks if get_like => web::public_json_bytes(
                self.jwks
                    .get_or_init(|| json_bytes(&jwks::document(self)))
                    .clone(),
                300,
            ),
            Endpoint::Discovery | Endpoint::Jwks => {
                respond::json_response(&OAuthError::method_not_allowed())
            }
            // OpenID Connect Core §3.1.2.1: authorize takes GET and POST.
            Endpoint::Authorize if get_like || method == Method::POST => {
                let (parts, params) = match self.read_params(req).await {
                    Ok(v) => v,
                    Err(e) => return respond::page_response(&self.pages, &e),
                };
                authorize::serve(self, &parts, &params, ctx).await
            }
            Endpoint::Login if method == Method::POST => {
                let (parts, params) = match self.read_params(req).await {
                    Ok(v) => v,
                    Err(e) => return respond::page_response(&self.pages, &e),
                };
                login::serve(self, &parts, &params, ctx).await
            }
            Endpoint::EndSession if get_like || method == Method::POST => {
                let (parts, params) = match self.read_params(req).await {
                    Ok(v) => v,
                    Err(e) => return respond::page_response(&self.pages, &e),
                };
                end_session::serve(self, &parts, &params, ctx).await
            }
            Endpoint::UpstreamStart | Endpoint::UpstreamCallback | Endpoint::UpstreamLoggedOut
                if get_like =>
            {
                // `/upstreams/{name}/start|callback`: the name is the middle segment.
                let name = self
                    .sub_path(req.uri().path())
                    .and_then(|r| r.strip_prefix("/upstreams/"))
                    .and_then(|r| r.rsplit_once('/'))
                    .map(|(name, _)| name.to_owned())
                    .unwrap_or_default();
                let (parts, params) = match self.read_params(req).await {
                    Ok(v) => v,
                    Err(e) => return respond::page_response(&self.pages, &e),
                };
                match endpoint {
                    Endpoint::UpstreamStart => {
                        upstream::start(self, &parts, &params, ctx, &name).await
                    }
                    Endpoint::UpstreamCallback => {
                        upstream::callback(self, &parts, &params, ctx, &name).await
                    }
                    _ => upstream::logged_out(self, &params),
                }
            }
            Endpoint::UpstreamStart | Endpoint::UpstreamCallback | Endpoint::UpstreamLoggedOut => {
                respond::page_response(&self.pages, &OAuthError::method_not_allowed())
            }
            Endpoint::Userinfo if get_like || method == Method::POST => {
                let (parts, _) = req.into_parts();
                userinfo::serve(self, &parts).await
            }
            Endpoint::Token | Endpoint::Introspect | Endpoint::Revoke if method == Method::POST => {
                let (parts, params) = match self.read_params(req).await {
                    Ok(v) => v,
                    Err(e) => return respond::json_response(&e),
                };
                match endpoint {
                    Endpoint::Token => token::serve(self, &parts, &params).await,
                    Endpoint::Introspect => introspect::serve(self, &parts, &params).await,
                    _ => revoke::serve(self, &parts, &params).await,
                }
            }
            Endpoint::Authorize | Endpoint::Login | Endpoint::EndSession => {
                respond::page_response(&self.pages, &OAuthError::method_not_allowed())
            }
            Endpoint::Userinfo => respond::bearer_response(&OAuthError::method_not_allowed()),
            Endpoint::Token | Endpoint::Introspect | Endpoint::Revoke => {
                respond::json_response(&OAuthError::method_not_allowed())
            }
        }
    }

    /// Parameters from the query (GET/HEAD) or a bounded form body (POST).
    async fn read_params<B>(
        &self,
        req: Request<B>,
    ) -> Result<(http::request::Parts, Params), OAuthError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = req.into_parts();
        if parts.method != Method::POST {
            let params = Params::from_query(parts.uri.query())?;
            return Ok((parts, params));
        }
        if !web::is_form(&parts.headers) {
            return Err(OAuthError::invalid_request(
                "body must be application/x-www-form-urlencoded",
            ));
        }
        let bytes = web::read_body(body, self.max_body).await?;
        let params = Params::parse(&bytes)?;
        Ok((parts, params))
    }
}

/// The provider's endpoints (also the metrics label).

#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Discovery,
    Jwks,
    Authorize,
    Login,
    Token,
    Userinfo,
    Introspect,
    Revoke,
    EndSession,
    UpstreamStart,
    UpstreamCallback,
    UpstreamLoggedOut,
    NotFound,
}

impl Endpoint {
    /// Endpoints browser-based (public) clients call with `fetch`: CORS from
    /// any origin is safe there, as none of them relies on cookies.
    /// Introspection is not one of them: only confidential clients (servers)
    /// may call it, so no browser needs to read its answers.
    fn cors(self) -> bool {
        matches!(
            self,
            Self::Discovery | Self::Jwks | Self::Token | Self::Userinfo | Self::Revoke
        )
    }

    /// The route traces name this endpoint by: its path, or the template
    /// of a path with a name in it; none for "not found".
    fn template(self, base: &str, path: &str) -> Option<String> {
        Some(match self {
            Self::NotFound => return None,
            Self::UpstreamStart => format!("{base}/upstreams/{{name}}/start"),
            Self::UpstreamCallback => format!("{base}/upstreams/{{name}}/callback"),
            Self::UpstreamLoggedOut => format!("{base}/upstreams/{{name}}/logged-out"),
            _ => path.to_owned(),
        })
    }

    fn label(self) -> &'static str {
        match self {
            Self::Discovery => "discovery",
            Self::Jwks => "jwks",
            Self::Authorize => "authorize",
            Self::Login => "login",
            Self::Token => "token",
            Self::Userinfo => "userinfo",
            Self::Introspect => "introspect",
            Self::Revoke => "revoke",
            Self::EndSession => "end_session",
            Self::UpstreamStart => "upstream_start",
            Self::UpstreamCallback => "upstream_callback",
            Self::UpstreamLoggedOut => "upstream_logged_out",
            Self::NotFound => "not_found",
        }
    }
}

fn json_bytes(value: &serde_json::Value) -> Bytes {
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}
