//! The [`Provider`]: built from config, it routes requests under the issuer
//! path to the endpoint modules and records metrics.
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

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response};
use orchestrator_cache::Cache;
use orchestrator_config::{
    CacheBackend, ListenConfig, LoginThrottleConfig, OidcProviderConfig, SigningAlgorithm,
    TokenTtls,
};
use url::Url;

use crate::BoxBody;
use crate::clients::Clients;
use crate::error::{self, OAuthError, ProviderError};
use crate::keys::{self, SigningKey};
use crate::metrics::ProviderMetrics;
use crate::params::Params;
use crate::store::Store;
use crate::throttle::InFlight;
use crate::users::Users;
use crate::web;
use crate::{authorize, discovery, end_session, introspect, jwks, login, revoke, token, userinfo};
use orchestrator_http::ConnInfo;
use orchestrator_ui::PagesHandle;

/// Name of the SSO session cookie.
pub(crate) const SESSION_COOKIE: &str = "oidc_session";
/// Name of the login CSRF cookie (double submit, also bound to the transaction).
pub(crate) const CSRF_COOKIE: &str = "oidc_csrf";
/// How long a user has to complete the login form.
pub(crate) const LOGIN_TTL: Duration = Duration::from_secs(600);

/// Per-request facts the endpoints need besides the request itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestCtx {
    pub(crate) client_ip: IpAddr,
    pub(crate) tls: bool,
}

/// The OpenID Provider. Cheap to rebuild: all state lives in the cache.
pub struct Provider {
    pub(crate) issuer: String,
    issuer_host: String,
    /// The issuer's path without a trailing slash ("" at the root).
    pub(crate) base_path: String,
    pub(crate) keys: Vec<SigningKey>,
    pub(crate) clients: Clients,
    pub(crate) users: Users,
    pub(crate) ttls: TokenTtls,
    pub(crate) sso_ttl: Duration,
    pub(crate) throttle: LoginThrottleConfig,
    /// Password verifications running per user name (`throttle`).
    pub(crate) verifying: Arc<InFlight>,
    pub(crate) store: Store,
    pub(crate) metrics: Arc<ProviderMetrics>,
    /// The pages (login, errors, signed out), shared with the gateway.
    pub(crate) pages: PagesHandle,
    trusted_proxies: Vec<ipnet::IpNet>,
    max_body: usize,
    discovery: Bytes,
    jwks: Bytes,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("issuer", &self.issuer)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl Provider {
    /// Builds from config; fails on bad keys etc. Runs again on every hot
    /// reload (state is all in the cache, so rebuilding loses nothing).
    pub fn new(
        cfg: &OidcProviderConfig,
        backend: CacheBackend,
        listen: &ListenConfig,
        cache: Arc<dyn Cache>,
        metrics: Arc<ProviderMetrics>,
    ) -> Result<Self, ProviderError> {
        let issuer_url =
            Url::parse(&cfg.issuer).map_err(|e| ProviderError::Issuer(e.to_string()))?;
        if !matches!(issuer_url.scheme(), "http" | "https") {
            return Err(ProviderError::Issuer("must be an http(s) URL".into()));
        }
        if issuer_url.query().is_some() || issuer_url.fragment().is_some() {
            return Err(ProviderError::Issuer(
                "must not have a query or fragment".into(),
            ));
        }
        let issuer_host = orchestrator_http::authority::host(
            issuer_url
                .host_str()
                .ok_or_else(|| ProviderError::Issuer("must have a host".into()))?,
        );
        // The issuer is used verbatim in tokens (clients compare it exactly);
        // only a trailing slash is dropped so endpoint URLs join cleanly.
        let issuer = cfg.issuer.trim_end_matches('/').to_owned();
        let base_path = issuer_url.path().trim_end_matches('/').to_owned();

        let keys = load_keys(cfg, backend)?;
        let clients = Clients::new(&cfg.clients)?;
        let users = Users::new(&cfg.users)?;

        let mut provider = Self {
            issuer,
            issuer_host,
            base_path,
            keys,
            clients,
            users,
            ttls: cfg.tokens.clone(),
            sso_ttl: cfg.sso_session_ttl,
            throttle: cfg.login_throttle.clone(),
            verifying: InFlight::new(cfg.login_throttle.max_concurrent_per_user),
            store: Store::new(cache),
            metrics,
            pages: PagesHandle::default(),
            trusted_proxies: listen.trusted_proxies.clone(),
            max_body: listen.max_body_bytes,
            discovery: Bytes::new(),
            jwks: Bytes::new(),
        };
        // Both documents only change with the config: render them once.
        provider.discovery =
            Bytes::from(serde_json::to_vec(&discovery::document(&provider)).unwrap_or_default());
        provider.jwks =
            Bytes::from(serde_json::to_vec(&jwks::document(&provider)).unwrap_or_default());
        Ok(provider)
    }

    /// Renders its pages with `pages` (shared with the gateway and replaced
    /// when the templates change) instead of the built-ins.
    #[must_use]
    pub fn with_pages(mut self, pages: PagesHandle) -> Self {
        self.pages = pages;
        self
    }

    /// True when the request's `authority` (`Host`; port ignored) and `path`
    /// fall under the issuer's host and path.
    pub fn matches(&self, authority: Option<&str>, path: &str) -> bool {
        if !authority
            .is_some_and(|a| orchestrator_http::authority::names_host(a, &self.issuer_host))
        {
            return false;
        }
        self.sub_path(path).is_some()
    }

    /// The path below the issuer, starting with '/' (or empty for the issuer itself).
    fn sub_path<'a>(&self, path: &'a str) -> Option<&'a str> {
        let rest = path.strip_prefix(self.base_path.as_str())?;
        (rest.is_empty() || rest.starts_with('/')).then_some(rest)
    }

    /// The issuer's absolute URL of a sub path (`/token` → `{issuer}/token`).
    pub(crate) fn endpoint(&self, sub: &str) -> String {
        format!("{}{sub}", self.issuer)
    }

    /// The issuer's path of a sub path (`/login` → `/idp/login`).
    pub(crate) fn local_path(&self, sub: &str) -> String {
        format!("{}{sub}", self.base_path)
    }

    /// The path the provider's cookies are scoped to.
    pub(crate) fn cookie_path(&self) -> &str {
        if self.base_path.is_empty() {
            "/"
        } else {
            &self.base_path
        }
    }

    /// The key that signs new tokens.
    pub(crate) fn active_key(&self) -> &SigningKey {
        // `load_keys` guarantees at least one key.
        &self.keys[0]
    }

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
        let mut resp = if req.method() == Method::OPTIONS && endpoint.cors() {
            web::cors_preflight()
        } else {
            self.dispatch(endpoint, req, ctx).await
        };
        if endpoint.cors() {
            web::allow_any_origin(&mut resp);
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
            Endpoint::NotFound => error::json_response(&OAuthError::not_found()),
            Endpoint::Discovery if get_like => web::public_json_bytes(self.discovery.clone(), 3600),
            Endpoint::Jwks if get_like => web::public_json_bytes(self.jwks.clone(), 300),
            Endpoint::Discovery | Endpoint::Jwks => {
                error::json_response(&OAuthError::method_not_allowed())
            }
            // OpenID Connect Core §3.1.2.1: authorize takes GET and POST.
            Endpoint::Authorize if get_like || method == Method::POST => {
                let (parts, params) = match self.read_params(req).await {
                    Ok(v) => v,
                    Err(e) => return error::page_response(&self.pages, &e),
                };
                authorize::serve(self, &parts, &params, ctx).await
            }
            Endpoint::Login if method == Method::POST => {
                let (parts, params) = match self.read_params(req).await {
                    Ok(v) => v,
                    Err(e) => return error::page_response(&self.pages, &e),
                };
                login::serve(self, &parts, &params, ctx).await
            }
            Endpoint::EndSession if get_like || method == Method::POST => {
                let (parts, params) = match self.read_params(req).await {
                    Ok(v) => v,
                    Err(e) => return error::page_response(&self.pages, &e),
                };
                end_session::serve(self, &parts, &params, ctx).await
            }
            Endpoint::Userinfo if get_like || method == Method::POST => {
                let (parts, _) = req.into_parts();
                userinfo::serve(self, &parts).await
            }
            Endpoint::Token | Endpoint::Introspect | Endpoint::Revoke if method == Method::POST => {
                let (parts, params) = match self.read_params(req).await {
                    Ok(v) => v,
                    Err(e) => return error::json_response(&e),
                };
                match endpoint {
                    Endpoint::Token => token::serve(self, &parts, &params).await,
                    Endpoint::Introspect => introspect::serve(self, &parts, &params).await,
                    _ => revoke::serve(self, &parts, &params).await,
                }
            }
            Endpoint::Authorize | Endpoint::Login | Endpoint::EndSession => {
                error::page_response(&self.pages, &OAuthError::method_not_allowed())
            }
            Endpoint::Userinfo => error::bearer_response(&OAuthError::method_not_allowed()),
            Endpoint::Token | Endpoint::Introspect | Endpoint::Revoke => {
                error::json_response(&OAuthError::method_not_allowed())
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
            Self::NotFound => "not_found",
        }
    }
}

fn load_keys(
    cfg: &OidcProviderConfig,
    backend: CacheBackend,
) -> Result<Vec<SigningKey>, ProviderError> {
    if cfg.signing_keys.is_empty() {
        if backend == CacheBackend::Redis {
            return Err(ProviderError::KeysRequired);
        }
        tracing::warn!(
            "oidcProvider.signingKeys is empty: signing with a freshly generated ES256 \
             DEVELOPMENT key; tokens will not survive a restart or verify at another \
             replica. Configure signingKeys for anything but local development."
        );
        let pem = keys::generate_pem(SigningAlgorithm::ES256).map_err(ProviderError::DevKey)?;
        let key = SigningKey::from_pem("dev", SigningAlgorithm::ES256, &pem)
            .map_err(ProviderError::DevKey)?;
        return Ok(vec![key]);
    }
    let mut out: Vec<SigningKey> = Vec::with_capacity(cfg.signing_keys.len());
    for (index, k) in cfg.signing_keys.iter().enumerate() {
        if out.iter().any(|o| o.kid == k.id) {
            return Err(ProviderError::DuplicateKeyId {
                index,
                id: k.id.clone(),
            });
        }
        let key = SigningKey::from_config(k).map_err(|source| ProviderError::Key {
            index,
            id: k.id.clone(),
            source,
        })?;
        out.push(key);
    }
    Ok(out)
}
