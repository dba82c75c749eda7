//! The OIDC provider: signing keys, upstream IdPs, clients, users, token
//! lifetimes and login throttling.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::defaults::{default_scopes, default_true};

use crate::secret::Secret;

/// Signature algorithms for keys we sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum SigningAlgorithm {
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// Ed25519.
    EdDSA,
}

impl SigningAlgorithm {
    /// The JOSE `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ES256 => "ES256",
            Self::RS256 => "RS256",
            Self::EdDSA => "EdDSA",
        }
    }
}

/// One signing key: an id, an algorithm and a PEM (PKCS#8) private key.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SigningKeyConfig {
    /// The `kid` published in JWKS and set in token headers.
    pub id: String,
    /// The signature algorithm; must fit the key type.
    pub algorithm: SigningAlgorithm,
    /// The PEM private key, normally `${secret:…}`.
    pub private_key: Secret,
}

/// The built-in OpenID Provider.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcProviderConfig {
    /// Issuer URL; its host and path select the provider's routes on the main listener.
    pub issuer: String,
    /// Keys: the first signs, all are published.
    #[serde(default)]
    pub signing_keys: Vec<SigningKeyConfig>,
    /// Token lifetimes.
    #[serde(default)]
    pub tokens: TokenTtls,
    /// Lifetime of the provider's SSO session cookie.
    #[serde(default = "default_sso_session_ttl", with = "humantime_serde")]
    pub sso_session_ttl: Duration,
    /// Registered clients.
    #[serde(default)]
    pub clients: Vec<OidcClientConfig>,
    /// Built-in user directory.
    #[serde(default)]
    pub users: Vec<UserConfig>,
    /// Other OpenID Providers users log in through (identity orchestration).
    #[serde(default)]
    pub upstreams: Vec<UpstreamConfig>,
    /// Login throttling.
    #[serde(default)]
    pub login_throttle: LoginThrottleConfig,
}

/// The prefix of the internal user names of upstream users; local users may
/// not start with it (validation refuses them), so the two never collide.
pub const UPSTREAM_USERNAME_PREFIX: &str = "upstream:";

/// An upstream OpenID Provider the provider logs users in through; the
/// redirect URI to register there is `{issuer}/upstreams/{name}/callback`.
///
/// Its client fields repeat the gateway's `IdentityProviderConfig`'s on
/// purpose: serde cannot flatten a shared struct into one that refuses
/// unknown keys, and refusing them is what catches a misspelt key.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Name in URLs, in `sub` and in the `idp` claim: lower-case letters,
    /// digits and `-`.
    pub name: String,
    /// Text of its button on the sign-in page (default: the name).
    #[serde(default)]
    pub display_name: Option<String>,
    /// Issuer URL (discovery, lazy and retried).
    pub issuer: String,
    /// Our client id there.
    pub client_id: String,
    /// Our client secret there (none: a public client with PKCE).
    #[serde(default)]
    pub client_secret: Option<Secret>,
    /// Scopes requested.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// PEM CA bundle to trust for it instead of the public roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Its `email` counts as verified even without `email_verified: true`.
    #[serde(default)]
    pub trust_email: bool,
    /// Our claim → the upstream's claim (a dotted path into nested objects);
    /// empty: the standard profile, email and `groups` claims as they are.
    #[serde(default)]
    pub claims: BTreeMap<String, String>,
    /// What is done to the upstream's groups before they become ours.
    #[serde(default)]
    pub groups: GroupTransforms,
    /// Home-realm discovery: a `login_hint` with one of these email domains
    /// goes straight to this upstream.
    #[serde(default)]
    pub email_domains: Vec<String>,
    /// The upstream claims that identify a user (default `iss` and `sub`;
    /// Entra ID: `tid` and `oid`); our `sub` is derived from them.
    #[serde(default = "default_upstream_subject")]
    pub subject: Vec<String>,
}

fn default_upstream_subject() -> Vec<String> {
    vec!["iss".into(), "sub".into()]
}

/// Group transforms, applied in order: keep those matching `include`
/// (`*` wildcards; empty keeps all), `rename`, then `prefix`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupTransforms {
    /// Patterns of groups to keep (`eng-*`); empty: every group.
    #[serde(default)]
    pub include: Vec<String>,
    /// Upstream group → our group.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Put before every group (`corp:`).
    #[serde(default)]
    pub prefix: String,
}

fn default_sso_session_ttl() -> Duration {
    Duration::from_secs(8 * 3600)
}

/// Token lifetimes of the OIDC provider.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenTtls {
    /// Authorization codes.
    #[serde(default = "default_code_ttl", with = "humantime_serde")]
    pub authorization_code_ttl: Duration,
    /// Access tokens.
    #[serde(default = "default_access_ttl", with = "humantime_serde")]
    pub access_token_ttl: Duration,
    /// ID tokens.
    #[serde(default = "default_access_ttl", with = "humantime_serde")]
    pub id_token_ttl: Duration,
    /// Refresh tokens: the grant ends this long after the code exchange; rotation never extends it.
    #[serde(default = "default_refresh_ttl", with = "humantime_serde")]
    pub refresh_token_ttl: Duration,
}

fn default_code_ttl() -> Duration {
    Duration::from_secs(60)
}
fn default_access_ttl() -> Duration {
    Duration::from_secs(600)
}
fn default_refresh_ttl() -> Duration {
    Duration::from_secs(24 * 3600)
}

impl Default for TokenTtls {
    fn default() -> Self {
        Self {
            authorization_code_ttl: default_code_ttl(),
            access_token_ttl: default_access_ttl(),
            id_token_ttl: default_access_ttl(),
            refresh_token_ttl: default_refresh_ttl(),
        }
    }
}

/// Login throttling: failed attempts allowed per window, per username and per client IP.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoginThrottleConfig {
    /// Failed logins per username per window.
    #[serde(default = "default_max_failures_per_user")]
    pub max_failures_per_user: u32,
    /// Failed logins per client IP per window.
    #[serde(default = "default_max_failures_per_ip")]
    pub max_failures_per_ip: u32,
    /// Length of the counting window.
    #[serde(default = "default_throttle_window", with = "humantime_serde")]
    pub window: Duration,
    /// Failures of one user from one client IP per window that cost nothing;
    /// beyond them every attempt of that pair waits out a growing delay.
    #[serde(default = "default_free_failures_per_client")]
    pub free_failures_per_client: u32,
    /// The first delay once the free failures (or `maxFailuresPerUser`) are
    /// used up; it doubles with every further failure.
    #[serde(default = "default_throttle_delay", with = "humantime_serde")]
    pub delay: Duration,
    /// The longest delay.
    #[serde(default = "default_throttle_max_delay", with = "humantime_serde")]
    pub max_delay: Duration,
    /// Password verifications of one user name running at once in a process;
    /// more are refused at once.
    #[serde(default = "default_max_concurrent_per_user")]
    pub max_concurrent_per_user: u32,
}

fn default_max_failures_per_user() -> u32 {
    5
}
fn default_max_failures_per_ip() -> u32 {
    20
}
fn default_throttle_window() -> Duration {
    Duration::from_secs(300)
}
fn default_free_failures_per_client() -> u32 {
    3
}
fn default_throttle_delay() -> Duration {
    Duration::from_secs(1)
}
fn default_throttle_max_delay() -> Duration {
    Duration::from_secs(60)
}
fn default_max_concurrent_per_user() -> u32 {
    2
}

impl Default for LoginThrottleConfig {
    fn default() -> Self {
        Self {
            max_failures_per_user: default_max_failures_per_user(),
            max_failures_per_ip: default_max_failures_per_ip(),
            window: default_throttle_window(),
            free_failures_per_client: default_free_failures_per_client(),
            delay: default_throttle_delay(),
            max_delay: default_throttle_max_delay(),
            max_concurrent_per_user: default_max_concurrent_per_user(),
        }
    }
}

/// OAuth grant types a client may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    /// `authorization_code`.
    AuthorizationCode,
    /// `refresh_token`.
    RefreshToken,
    /// `client_credentials`.
    ClientCredentials,
}

/// A registered OIDC client.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcClientConfig {
    /// The `client_id`.
    pub client_id: String,
    /// The name the login page shows ("Sign in to continue to …"); the
    /// `client_id` when unset.
    #[serde(default)]
    pub client_name: Option<String>,
    /// The secret of a confidential client; none makes a public client (PKCE required).
    #[serde(default)]
    pub client_secret: Option<Secret>,
    /// Exact redirect URIs.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Exact post-logout redirect URIs.
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// OpenID Connect Back-Channel Logout 1.0: where the provider POSTs a
    /// logout token when an SSO session in which this client got tokens ends.
    #[serde(default)]
    pub backchannel_logout_uri: Option<String>,
    /// The client needs `sid` in logout tokens (it is always sent).
    #[serde(default)]
    pub backchannel_logout_session_required: bool,
    /// Allowed grants.
    #[serde(default = "default_grant_types")]
    pub grant_types: Vec<GrantType>,
    /// Scopes this client may ask for; empty means the standard ones.
    #[serde(default)]
    pub allowed_scopes: Vec<String>,
    /// Require PKCE even though the client is confidential (recommended; default true).
    #[serde(default = "default_true")]
    pub require_pkce: bool,
    /// Whose tokens this (confidential) client may introspect besides its own:
    /// `true` for a resource server that accepts every client's tokens, or a
    /// list of client ids. Default: only its own.
    #[serde(default)]
    pub introspection_allowed: IntrospectionAllowed,
}

/// `oidcProvider.clients[].introspectionAllowed`: `true`/`false` or a list of client ids.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum IntrospectionAllowed {
    /// `true`: tokens of every client; `false`: only the client's own.
    All(bool),
    /// Tokens of these clients (and the client's own).
    Clients(Vec<String>),
}

impl Default for IntrospectionAllowed {
    fn default() -> Self {
        Self::All(false)
    }
}

impl IntrospectionAllowed {
    /// True when a client with this setting may see tokens issued to `client_id`
    /// (its own are always allowed and not checked here).
    pub fn covers(&self, client_id: &str) -> bool {
        match self {
            Self::All(all) => *all,
            Self::Clients(ids) => ids.iter().any(|id| id == client_id),
        }
    }
}

fn default_grant_types() -> Vec<GrantType> {
    vec![GrantType::AuthorizationCode, GrantType::RefreshToken]
}

/// A user of the built-in directory.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserConfig {
    /// Login name; also the `sub` unless `claims.sub` is set.
    pub username: String,
    /// argon2id PHC string.
    pub password_hash: Secret,
    /// Claims released about the user (email, name, groups, …).
    #[serde(default)]
    pub claims: BTreeMap<String, serde_json::Value>,
}
