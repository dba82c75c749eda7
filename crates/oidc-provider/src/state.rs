//! The [`Provider`]: what the endpoints share — its config-derived parts
//! (issuer, keys, clients, users, TTLs), the store, the pages, and the
//! per-request context. Built once per config; all state lives in the cache.
//! Routing is in [`crate::router`], the endpoints in [`crate::endpoints`].

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use orchestrator_cache::Cache;
use orchestrator_config::{
    CacheBackend, ListenConfig, LoginThrottleConfig, OidcProviderConfig, SigningAlgorithm,
    TokenTtls,
};
use url::Url;

use crate::clients::Clients;
use crate::error::{OAuthError, ProviderError};
use crate::keys::{self, SigningKey};
use crate::metrics::ProviderMetrics;
use crate::store::Store;
use crate::store::StoreError;
use crate::throttle::InFlight;
use crate::tokens::{self, AccessClaims, Expect};
use crate::upstreams::{USERNAME_PREFIX, Upstreams};
use crate::users::{User, Users};
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
    pub(crate) upstreams: Upstreams,
    pub(crate) ttls: TokenTtls,
    pub(crate) sso_ttl: Duration,
    pub(crate) throttle: LoginThrottleConfig,
    /// Password verifications running per user name (`throttle`).
    pub(crate) verifying: Arc<InFlight>,
    pub(crate) store: Store,
    pub(crate) metrics: Arc<ProviderMetrics>,
    /// The pages (login, errors, signed out), shared with the gateway.
    pub(crate) pages: PagesHandle,
    pub(crate) trusted_proxies: Vec<ipnet::IpNet>,
    pub(crate) max_body: usize,
    /// The discovery document and the JWKS, rendered from the finished
    /// provider on first use (they only change with the config).
    pub(crate) discovery: OnceLock<Bytes>,
    pub(crate) jwks: OnceLock<Bytes>,
    /// Sends back-channel logout tokens: no redirects, short timeouts.
    pub(crate) backchannel_http: reqwest::Client,
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
    /// The user behind `username`: a local one, or a user of an upstream
    /// (their claims as mapped at their last login, from the store).
    pub(crate) async fn user(&self, username: &str) -> Result<Option<Arc<User>>, StoreError> {
        if !username.starts_with(USERNAME_PREFIX) {
            return Ok(self.users.get(username));
        }
        // An upstream removed from the config takes its users with it:
        // their sessions, grants and tokens stop working at the reload.
        Ok(self
            .store
            .federated_user(username)
            .await?
            .filter(|f| self.upstreams.get(&f.upstream).is_some())
            .map(|f| {
                Arc::new(User::federated(
                    username.to_owned(),
                    f.sub,
                    f.upstream,
                    f.claims,
                ))
            }))
    }

    /// How long an upstream user's record is kept after a login: as long
    /// as the SSO session, and a grant started at its very end, may name
    /// them.
    pub(crate) fn federated_user_ttl(&self) -> Duration {
        self.sso_ttl
            .saturating_add(self.ttls.refresh_token_ttl.max(self.ttls.access_token_ttl))
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
        let upstreams = Upstreams::new(&cfg.upstreams)?;

        let provider = Self {
            issuer,
            issuer_host,
            base_path,
            keys,
            clients,
            users,
            upstreams,
            ttls: cfg.tokens.clone(),
            sso_ttl: cfg.sso_session_ttl,
            throttle: cfg.login_throttle.clone(),
            verifying: InFlight::new(cfg.login_throttle.max_concurrent_per_user),
            store: Store::new(cache),
            metrics,
            pages: PagesHandle::default(),
            trusted_proxies: listen.trusted_proxies.clone(),
            max_body: listen.max_body_bytes,
            discovery: OnceLock::new(),
            jwks: OnceLock::new(),
            backchannel_http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(Duration::from_secs(3))
                .timeout(Duration::from_secs(5))
                .build()
                .map_err(|e| ProviderError::Issuer(format!("HTTP client: {e}")))?,
        };
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

    /// True when `path` is the issuer's or below it (whatever the host): the
    /// cheap half of [`matches`](Self::matches), to ask first.
    pub fn serves_path(&self, path: &str) -> bool {
        self.sub_path(path).is_some()
    }

    /// The path below the issuer, starting with '/' (or empty for the issuer itself).
    pub(crate) fn sub_path<'a>(&self, path: &'a str) -> Option<&'a str> {
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

    /// Verifies an access token and checks that it is still backed: its client
    /// is still configured and its grant record is live. Revocation fails closed:
    /// a grant record that is gone for any reason (revoked, expired, evicted)
    /// makes the token invalid.
    pub(crate) async fn verify_access_token(
        &self,
        token: &str,
    ) -> Result<AccessClaims, OAuthError> {
        let claims: AccessClaims = tokens::verify(&self.keys, &self.issuer, token, Expect::Access)?;
        if self.clients.get(&claims.client_id).is_none() {
            return Err(OAuthError::invalid_token("client no longer registered"));
        }
        let revoked = || OAuthError::invalid_token("token revoked");
        let gid = claims.gid.as_deref().ok_or_else(revoked)?;
        match self.store.grant(gid).await? {
            Some(grant) if grant.client_id == claims.client_id => Ok(claims),
            _ => Err(revoked()),
        }
    }

    /// The key that signs new tokens.
    pub(crate) fn active_key(&self) -> &SigningKey {
        // `load_keys` guarantees at least one key.
        &self.keys[0]
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
