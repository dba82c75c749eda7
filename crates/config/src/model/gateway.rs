//! The App Gateway: identity providers, sessions, apps and their policies.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::defaults::{default_scopes, default_true};
use super::provider::SigningKeyConfig;

use crate::secret::Secret;

/// The App Gateway.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppGatewayConfig {
    /// Path of the OIDC callback, on every app's host.
    #[serde(default = "default_callback_path")]
    pub callback_path: String,
    /// Path that logs the user out.
    #[serde(default = "default_logout_path")]
    pub logout_path: String,
    /// Path that starts a login explicitly: `?rd=/path` names where to return
    /// (a path on an app of the same host; anything else is refused).
    #[serde(default = "default_login_path")]
    pub login_path: String,
    /// Path of the forward-auth endpoint (any method, on every host): an
    /// ingress controller asks it about each request (ingress-nginx
    /// `auth-url`, Traefik `forwardAuth`, Envoy `ext_authz`, Caddy
    /// `forward_auth`); 200 with the app's identity headers, 401 or 403.
    #[serde(default = "default_auth_path")]
    pub auth_path: String,
    /// Path of the OpenID Connect Back-Channel Logout 1.0 receiver: an IdP
    /// POSTs a logout token here to end the sessions it names.
    #[serde(default = "default_backchannel_logout_path")]
    pub backchannel_logout_path: String,
    /// Session settings.
    #[serde(default)]
    pub session: SessionConfig,
    /// OpenID Providers that apps log in through.
    #[serde(default)]
    pub identity_providers: Vec<IdentityProviderConfig>,
    /// Protected apps.
    #[serde(default)]
    pub apps: Vec<AppConfig>,
    /// Keys that sign identity assertions (first signs, all are published at `/.orchestrator/jwks`).
    #[serde(default)]
    pub assertion_signing_keys: Vec<SigningKeyConfig>,
    /// Lifetime of an identity assertion JWT.
    #[serde(default = "default_assertion_ttl", with = "humantime_serde")]
    pub assertion_ttl: Duration,
    /// How long a started login may take before its state expires.
    #[serde(default = "default_pending_login_ttl", with = "humantime_serde")]
    pub pending_login_ttl: Duration,
    /// Most logins one client IP may start per `pendingLoginTtl` on one
    /// replica (unauthenticated requests create them); beyond it, 429.
    /// 0 turns the limit off.
    #[serde(default = "default_max_pending_logins_per_client")]
    pub max_pending_logins_per_client: u32,
    /// Most bytes of pending logins one replica holds (`store: local`) or
    /// writes to the shared store per `pendingLoginTtl` (`store: shared`);
    /// beyond it, new logins get 429 until older ones expire.
    #[serde(default = "default_max_pending_login_bytes")]
    pub max_pending_login_bytes: u64,
    /// Upstream connect timeout.
    #[serde(default = "default_upstream_connect_timeout", with = "humantime_serde")]
    pub upstream_connect_timeout: Duration,
    /// Time the upstream has to send its response headers.
    #[serde(
        default = "default_upstream_response_timeout",
        with = "humantime_serde"
    )]
    pub upstream_response_timeout: Duration,
}

fn default_callback_path() -> String {
    "/.orchestrator/callback".to_owned()
}
fn default_logout_path() -> String {
    "/.orchestrator/logout".to_owned()
}
fn default_login_path() -> String {
    "/.orchestrator/login".to_owned()
}
fn default_auth_path() -> String {
    "/.orchestrator/auth".to_owned()
}
fn default_backchannel_logout_path() -> String {
    "/.orchestrator/backchannel-logout".to_owned()
}
fn default_assertion_ttl() -> Duration {
    Duration::from_secs(60)
}
fn default_pending_login_ttl() -> Duration {
    Duration::from_secs(600)
}
fn default_max_pending_logins_per_client() -> u32 {
    100
}
fn default_max_pending_login_bytes() -> u64 {
    32 * 1024 * 1024
}
fn default_upstream_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_upstream_response_timeout() -> Duration {
    Duration::from_secs(60)
}

/// Where gateway sessions live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SessionStore {
    /// In-process; needs sticky sessions with several replicas.
    #[default]
    Local,
    /// In the cache backend with a local near-cache.
    Shared,
}

/// Gateway session settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionConfig {
    /// Name of the session cookie.
    #[serde(default = "default_cookie_name")]
    pub cookie_name: String,
    /// `local` or `shared`.
    #[serde(default)]
    pub store: SessionStore,
    /// Absolute lifetime of a session.
    #[serde(default = "default_max_lifetime", with = "humantime_serde")]
    pub max_lifetime: Duration,
    /// A session unused for this long ends.
    #[serde(default = "default_idle_timeout_session", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Most sessions held in the local cache.
    #[serde(default = "default_session_max_entries")]
    pub max_entries: u64,
    /// Parent domain (`example.com`) the session cookie is set for, so one
    /// login serves every app host under it (forward auth with a central
    /// sign-in host). Unset: host-only cookies, one session per app host.
    #[serde(default)]
    pub cookie_domain: Option<String>,
    /// A session never outlives its identity: when the ID token expires it
    /// is renewed with the refresh token (claims and groups with it), and
    /// served meanwhile for at most this long; with no refresh token, or
    /// when the renewal keeps failing, it ends this long after the ID
    /// token's `exp` (a navigation then signs in again, silently while the
    /// IdP's own session lives). A refused renewal ends it at once.
    #[serde(default = "default_identity_grace", with = "humantime_serde")]
    pub identity_grace: Duration,
}

fn default_identity_grace() -> Duration {
    Duration::from_secs(300)
}

fn default_cookie_name() -> String {
    "orchestrator_session".to_owned()
}
fn default_max_lifetime() -> Duration {
    Duration::from_secs(8 * 3600)
}
fn default_idle_timeout_session() -> Duration {
    Duration::from_secs(3600)
}
fn default_session_max_entries() -> u64 {
    1_000_000
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            cookie_name: default_cookie_name(),
            store: SessionStore::default(),
            max_lifetime: default_max_lifetime(),
            idle_timeout: default_idle_timeout_session(),
            max_entries: default_session_max_entries(),
            cookie_domain: None,
            identity_grace: default_identity_grace(),
        }
    }
}

/// An OpenID Provider the gateway logs users in through.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdentityProviderConfig {
    /// Name that apps refer to.
    pub name: String,
    /// Issuer URL (discovery at `{issuer}/.well-known/openid-configuration`).
    pub issuer: String,
    /// Our client id at the IdP.
    pub client_id: String,
    /// Our client secret at the IdP (none: public client with PKCE).
    #[serde(default)]
    pub client_secret: Option<Secret>,
    /// Scopes requested.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// PEM CA bundle to trust for the IdP instead of the public roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Treat this IdP's `email` as verified even without `email_verified: true`
    /// (only for IdPs whose addresses cannot be chosen by users). Default false:
    /// `allowEmailDomains` then needs `email_verified == true`.
    #[serde(default)]
    pub trust_email: bool,
    /// Signing out of the gateway continues to this IdP's
    /// `end_session_endpoint` (with `id_token_hint`), so the user is out of
    /// the IdP too. Off: only the gateway session ends.
    #[serde(default = "default_true")]
    pub logout_at_idp: bool,
}

/// One protected app.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppConfig {
    /// Unique name (metrics label, assertion audience).
    pub name: String,
    /// Host matched against Host/:authority, port ignored; `*` matches any.
    #[serde(default = "default_host")]
    pub host: String,
    /// Path prefix; the longest match wins.
    #[serde(default = "default_path_prefix")]
    pub path_prefix: String,
    /// `http(s)://host:port` of the app; none for an app that the ingress
    /// proxies itself, asking `authPath` about each request (forward auth only).
    #[serde(default)]
    pub upstream: Option<String>,
    /// TLS settings toward an `https://` upstream.
    #[serde(default)]
    pub upstream_tls: Option<UpstreamTlsConfig>,
    /// Name of an entry of `identityProviders`.
    pub identity_provider: String,
    /// Path prefixes served without login.
    #[serde(default)]
    pub public_paths: Vec<String>,
    /// Who may use the app.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// Upstream header name → claim name.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Header carrying a short-lived signed JWT of the identity.
    #[serde(default)]
    pub assertion_header: Option<String>,
    /// `Upgrade` protocols tunnelled to this app besides WebSocket (which is
    /// always allowed); any other upgrade request is refused with 400. `h2c`
    /// is never allowed (RFC 9113 §3.1).
    #[serde(default)]
    pub allow_upgrades: Vec<String>,
    /// API access with `Authorization: Bearer` tokens issued by the app's
    /// IdP (off when unset); the policy and headers apply to their claims.
    #[serde(default)]
    pub bearer: Option<BearerConfig>,
}

/// Bearer-token access to one app (RFC 6750): a JWT access token verified
/// against the app's IdP keys, or an opaque one through the IdP's
/// introspection endpoint (RFC 7662).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BearerConfig {
    /// The token's `aud` must contain one of these.
    pub audiences: Vec<String>,
    /// JWS algorithms accepted (asymmetric only; `none` and HMAC never).
    #[serde(default = "default_bearer_algorithms")]
    pub algorithms: Vec<String>,
    /// Tokens that are not JWTs are sent to the IdP's
    /// `introspection_endpoint`, authenticated as the gateway's client.
    #[serde(default)]
    pub introspection: bool,
    /// How long an introspection answer is reused (never past the token's `exp`).
    #[serde(default = "default_introspection_cache_ttl", with = "humantime_serde")]
    pub introspection_cache_ttl: Duration,
}

fn default_bearer_algorithms() -> Vec<String> {
    ["RS256", "PS256", "ES256", "ES384", "EdDSA"]
        .map(str::to_owned)
        .to_vec()
}
fn default_introspection_cache_ttl() -> Duration {
    Duration::from_secs(30)
}

fn default_host() -> String {
    "*".to_owned()
}
fn default_path_prefix() -> String {
    "/".to_owned()
}

/// TLS toward an upstream.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpstreamTlsConfig {
    /// PEM CA bundle to trust instead of the public roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain for mTLS.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// Client private key for mTLS.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// SNI / certificate name to verify, when it differs from the upstream host.
    #[serde(default)]
    pub server_name: Option<String>,
}

/// Access policy of an app; every listed condition must hold.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyConfig {
    /// The user must be in one of these groups.
    #[serde(default)]
    pub allow_groups: Vec<String>,
    /// The user's (verified) email must be in one of these domains.
    #[serde(default)]
    pub allow_email_domains: Vec<String>,
    /// Claim name → accepted values; the claim must have one of them.
    #[serde(default)]
    pub claims: BTreeMap<String, Vec<String>>,
}
