//! orchestrator-rp: the OpenID relying party that both the App Gateway (its
//! identity providers) and the OpenID Provider (its upstream IdPs) log users
//! in through: lazy discovery with backoff, the authorization request (code +
//! PKCE S256 + state + nonce), the code exchange with ID token verification,
//! userinfo, the RP-initiated logout URL, the IdP's keys (bearer tokens) and
//! token introspection (RFC 7662).

#![forbid(unsafe_code)]

mod error;
mod exchange;
mod introspect;
mod metrics;
mod refresh;

pub use error::RpError;
use metrics::Call;
pub use metrics::install_metrics;

use std::borrow::Cow;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{CoreAuthPrompt, CoreAuthenticationFlow, CoreClient, CoreIdToken};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndSessionUrl, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, IssuerUrl, LogoutRequest, Nonce, OAuth2TokenResponse as _,
    PkceCodeChallenge, PkceCodeVerifier, PostLogoutRedirectUrl, RedirectUrl, Scope,
    TokenResponse as _,
};
use serde_json::{Map, Value};
use tokio::sync::Mutex;
use tracing::Instrument as _;

use jsonwebtoken::jwk::Jwk;

type OidcClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Discovery documents are refreshed this often, so key rotation at the IdP
/// is picked up even without a verification failure.
const METADATA_MAX_AGE: Duration = Duration::from_secs(3600);
/// A failed verification refreshes the metadata (new keys?) at most this often.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// Most introspection calls to one IdP in flight; beyond it, 503 at once.
const MAX_INTROSPECTIONS: usize = 32;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Discovery fields beyond what `openidconnect` reads: the introspection
/// endpoint (RFC 8414 / RFC 7662), for opaque bearer tokens.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
struct IntrospectionMetadata {
    #[serde(default)]
    introspection_endpoint: Option<url::Url>,
}

impl openidconnect::AdditionalProviderMetadata for IntrospectionMetadata {}

type Metadata = openidconnect::ProviderMetadata<
    openidconnect::LogoutProviderMetadata<IntrospectionMetadata>,
    openidconnect::core::CoreAuthDisplay,
    openidconnect::core::CoreClientAuthMethod,
    openidconnect::core::CoreClaimName,
    openidconnect::core::CoreClaimType,
    openidconnect::core::CoreGrantType,
    openidconnect::core::CoreJweContentEncryptionAlgorithm,
    openidconnect::core::CoreJweKeyManagementAlgorithm,
    openidconnect::core::CoreJsonWebKey,
    openidconnect::core::CoreResponseMode,
    openidconnect::core::CoreResponseType,
    openidconnect::core::CoreSubjectIdentifierType,
>;

struct Discovered {
    client: OidcClient,
    end_session: Option<EndSessionUrl>,
    introspection: Option<url::Url>,
    /// The IdP's keys as `jsonwebtoken` reads them (bearer tokens); keys it
    /// cannot use are left out.
    jwks: Arc<Vec<Jwk>>,
    fetched: Instant,
}

/// Clock skew tolerated between this process and an identity provider, in
/// seconds: on an ID token's `exp` at sign-in and refresh (OpenID Connect
/// Core §3.1.3.7 allows a small leeway), on a bearer token's `exp`, `nbf`
/// and `iat`, and on a logout token's `iat` and `exp`. An IdP whose clock runs a
/// little ahead, or a short-lived token issued late in its second (the
/// claims are whole seconds), is still taken; one rule for every check.
pub const CLOCK_SKEW_SECS: u64 = 30;

/// [`CLOCK_SKEW_SECS`] as the ID token verifier's clock takes it.
const ID_TOKEN_LEEWAY: chrono::TimeDelta = chrono::TimeDelta::seconds(CLOCK_SKEW_SECS as i64);

impl Discovered {
    /// The ID token verifier of this IdP, with [`ID_TOKEN_LEEWAY`] on `exp`.
    fn id_token_verifier(&self) -> openidconnect::core::CoreIdTokenVerifier<'_> {
        self.client
            .id_token_verifier()
            .set_time_fn(|| chrono::Utc::now() - ID_TOKEN_LEEWAY)
    }
}

#[derive(Default)]
struct Backoff {
    failures: u32,
    next_attempt: Option<Instant>,
}

/// What an [`Idp`] is built from (the gateway's `identityProviders[]`, the
/// provider's `upstreams[]`).
#[derive(Debug, Clone, Copy)]
pub struct IdpSettings<'a> {
    /// Configured name (logs, metrics, sessions).
    pub name: &'a str,
    /// Issuer URL (discovery at `{issuer}/.well-known/openid-configuration`).
    pub issuer: &'a str,
    /// Our client id there.
    pub client_id: &'a str,
    /// Our client secret there (none: a public client with PKCE).
    pub client_secret: Option<&'a str>,
    /// Scopes to ask for (`openid` is always added).
    pub scopes: &'a [String],
    /// PEM CA bundle to trust instead of the public roots.
    pub ca_file: Option<&'a std::path::Path>,
    /// Config key path of this entry, for errors (`appGateway.identityProviders[0]`).
    pub key: &'a str,
}

/// One identity provider, discovered on first use.
pub struct Idp {
    name: Arc<str>,
    issuer: IssuerUrl,
    client_id: ClientId,
    client_secret: Option<ClientSecret>,
    scopes: Vec<Scope>,
    http: reqwest::Client,
    discovered: ArcSwapOption<Discovered>,
    backoff: Mutex<Backoff>,
    /// Introspection calls in flight: each unknown opaque token costs one,
    /// and a flood of made-up ones must not queue up behind the IdP.
    introspections: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Idp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idp")
            .field("name", &self.name)
            .field("issuer", &self.issuer.as_str())
            .finish_non_exhaustive()
    }
}

/// What the browser is sent to, and what must be remembered until the callback.
#[derive(Debug)]
pub struct AuthorizationStart {
    /// The IdP's authorization URL.
    pub url: url::Url,
    /// The `state`, key of the pending login.
    pub state: String,
    /// The `nonce` expected back in the ID token.
    pub nonce: String,
    /// The PKCE verifier.
    pub pkce_verifier: String,
}

/// The verified outcome of a callback.
pub struct LoginResult {
    /// The raw, verified ID token: its payload is the user's claims.
    pub id_token: String,
    /// Userinfo claims the ID token lacks.
    pub extra: Map<String, Value>,
    /// The refresh token, when the IdP issued one (renews the identity
    /// when the ID token expires).
    pub refresh_token: Option<String>,
}

impl std::fmt::Debug for LoginResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginResult")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .finish_non_exhaustive()
    }
}

/// The verified outcome of a refresh (OpenID Connect Core §12).
pub struct Refreshed {
    /// A new ID token, verified against the one the login gave (same
    /// `iss`, `sub`, `aud`; a `nonce` only if it is the original's).
    pub id_token: Option<String>,
    /// Userinfo claims the ID token lacks, when userinfo answered.
    pub extra: Option<Map<String, Value>>,
    /// The rotated refresh token, when the IdP issued a new one.
    pub refresh_token: Option<String>,
    /// The new access token's lifetime (`expires_in`), when given.
    pub expires_in: Option<Duration>,
}

impl std::fmt::Debug for Refreshed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refreshed")
            .field("id_token", &self.id_token.is_some())
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// The IdP's HTTP client for `openidconnect`, putting the current span's
/// `traceparent` on each request.
struct Traced<'a>(&'a reqwest::Client);

impl<'c> openidconnect::AsyncHttpClient<'c> for Traced<'_> {
    type Error = openidconnect::HttpClientError<reqwest::Error>;
    type Future = std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<openidconnect::HttpResponse, Self::Error>>
                + Send
                + Sync
                + 'c,
        >,
    >;

    fn call(&'c self, mut request: openidconnect::HttpRequest) -> Self::Future {
        orchestrator_http::trace_context::inject(request.headers_mut());
        openidconnect::AsyncHttpClient::call(self.0, request)
    }
}

/// The current span's `traceparent` (empty when traces are off).
fn trace_headers() -> reqwest::header::HeaderMap {
    let mut headers = reqwest::header::HeaderMap::new();
    orchestrator_http::trace_context::inject(&mut headers);
    headers
}

impl Idp {
    /// From config; builds the HTTP client (redirects off, optional CA) but
    /// contacts nobody.
    pub fn new(cfg: IdpSettings<'_>) -> Result<Self, RpError> {
        let key = |k: &str| format!("{}.{k}", cfg.key);
        let issuer = IssuerUrl::new(cfg.issuer.to_owned())
            .map_err(|_| RpError::config(key("issuer"), "not a URL"))?;
        // No redirects: a discovery or token endpoint that redirects could
        // steer the gateway's requests elsewhere (SSRF).
        let mut http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15));
        if let Some(ca) = cfg.ca_file {
            let pem = std::fs::read(ca).map_err(|e| {
                RpError::config(key("caFile"), format!("cannot read {}: {e}", ca.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|_| RpError::config(key("caFile"), "not a PEM certificate bundle"))?;
            if certs.is_empty() {
                return Err(RpError::config(key("caFile"), "no certificate in the file"));
            }
            http = http.tls_built_in_root_certs(false);
            for c in certs {
                http = http.add_root_certificate(c);
            }
        }
        let http = http
            .build()
            .map_err(|e| RpError::config(key("caFile"), e.to_string()))?;
        Ok(Self {
            name: cfg.name.into(),
            issuer,
            client_id: ClientId::new(cfg.client_id.to_owned()),
            client_secret: cfg.client_secret.map(|s| ClientSecret::new(s.to_owned())),
            scopes: cfg
                .scopes
                .iter()
                // openidconnect always adds `openid` itself.
                .filter(|s| s.as_str() != "openid")
                .map(|s| Scope::new(s.clone()))
                .collect(),
            http,
            discovered: ArcSwapOption::empty(),
            backoff: Mutex::new(Backoff::default()),
            introspections: tokio::sync::Semaphore::new(MAX_INTROSPECTIONS),
        })
    }

    /// The configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The configured name, shared by every session this IdP logs in.
    pub fn name_shared(&self) -> Arc<str> {
        self.name.clone()
    }

    /// The gateway's client id at this IdP.
    pub fn client_id(&self) -> &str {
        self.client_id.as_str()
    }

    /// The issuer URL, as configured (and as discovery must confirm).
    pub fn issuer(&self) -> &str {
        self.issuer.as_str()
    }

    /// The HTTP client as `openidconnect` calls it, with the current span's
    /// `traceparent` on every request (discovery, keys, token).
    fn traced(&self) -> Traced<'_> {
        Traced(&self.http)
    }

    fn unavailable(&self) -> RpError {
        RpError::IdpUnavailable {
            idp: self.name.to_string(),
        }
    }

    /// The discovered client: cached, refreshed when old, retried with
    /// exponential backoff while the IdP is unreachable (it may be this very
    /// process, still starting).
    async fn client(&self, force: bool) -> Result<Arc<Discovered>, RpError> {
        let current = self.discovered.load_full();
        let fresh = |d: &Discovered| {
            let age = d.fetched.elapsed();
            if force {
                age < MIN_REFRESH_INTERVAL
            } else {
                age < METADATA_MAX_AGE
            }
        };
        if let Some(d) = &current {
            if fresh(d) {
                return Ok(d.clone());
            }
        }
        // One discovery at a time; the others wait for its result.
        let mut backoff = self.backoff.lock().await;
        let current = self.discovered.load_full();
        if let Some(d) = &current {
            if fresh(d) {
                return Ok(d.clone());
            }
        }
        if backoff.next_attempt.is_some_and(|t| Instant::now() < t) {
            return current.ok_or_else(|| self.unavailable());
        }
        let call = Call::start(&self.name, "discovery");
        let discovered = Metadata::discover_async(self.issuer.clone(), &self.traced())
            .instrument(tracing::trace_span!(target: "otel", "oidc.discovery", otel.kind = "client", orchestrator.idp = %self.name))
            .await;
        call.done(discovered.is_ok());
        match discovered {
            Ok(metadata) => {
                let extra = metadata.additional_metadata();
                let end_session = extra.end_session_endpoint.clone();
                let introspection = extra.additional_metadata.introspection_endpoint.clone();
                let jwks = serde_json::to_value(metadata.jwks())
                    .ok()
                    .and_then(|set| set.get("keys").and_then(Value::as_array).cloned())
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|k| serde_json::from_value::<Jwk>(k).ok())
                    .collect();
                let client = CoreClient::from_provider_metadata(
                    metadata,
                    self.client_id.clone(),
                    self.client_secret.clone(),
                );
                let d = Arc::new(Discovered {
                    client,
                    end_session,
                    introspection,
                    jwks: Arc::new(jwks),
                    fetched: Instant::now(),
                });
                self.discovered.store(Some(d.clone()));
                *backoff = Backoff::default();
                Ok(d)
            }
            Err(e) => {
                backoff.failures = backoff.failures.saturating_add(1);
                let delay = FIRST_BACKOFF
                    .saturating_mul(2u32.saturating_pow(backoff.failures.min(16) - 1))
                    .min(MAX_BACKOFF);
                backoff.next_attempt = Some(Instant::now() + delay);
                tracing::warn!(idp = %self.name, error = %e, retry_in = ?delay, "OpenID discovery failed");
                current.ok_or_else(|| self.unavailable())
            }
        }
    }

    /// The RP-initiated logout URL, when the IdP advertises `end_session_endpoint`.
    pub async fn logout_url(
        &self,
        id_token: &str,
        post_logout_redirect_uri: &str,
    ) -> Option<url::Url> {
        self.logout_url_with_state(id_token, post_logout_redirect_uri, None)
            .await
    }

    /// [`logout_url`](Self::logout_url) with a `state` the IdP sends back
    /// to `post_logout_redirect_uri`.
    pub async fn logout_url_with_state(
        &self,
        id_token: &str,
        post_logout_redirect_uri: &str,
        state: Option<String>,
    ) -> Option<url::Url> {
        let d = self.client(false).await.ok()?;
        let end_session = d.end_session.clone()?;
        let mut req = LogoutRequest::from(end_session).set_client_id(self.client_id.clone());
        if let Ok(token) = CoreIdToken::from_str(id_token) {
            req = req.set_id_token_hint(&token);
        }
        if let Ok(uri) = PostLogoutRedirectUrl::new(post_logout_redirect_uri.to_owned()) {
            req = req.set_post_logout_redirect_uri(uri);
        }
        if let Some(state) = state {
            req = req.set_state(CsrfToken::new(state));
        }
        Some(req.http_get_url())
    }
}
