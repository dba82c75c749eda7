//! The typed configuration: one struct per YAML section, camelCase keys,
//! unknown keys refused, defaults for everything optional.
//!
//! These types are the contract of `shared/reference/orchestrator.yaml`;
//! keys may be added, never renamed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// The whole configuration of one orchestrator process.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// The main listener: proxy and OIDC provider traffic.
    #[serde(default)]
    pub listen: ListenConfig,
    /// The admin listener: health, readiness, metrics.
    #[serde(default)]
    pub admin: AdminConfig,
    /// Directory that `${secret:NAME}` references are read from.
    #[serde(default = "default_secrets_dir")]
    pub secrets_dir: PathBuf,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// Graceful shutdown timings.
    #[serde(default)]
    pub shutdown: ShutdownConfig,
    /// The store behind the OIDC provider and shared gateway sessions.
    #[serde(default)]
    pub cache: CacheConfig,
    /// Optional built-in OpenID Provider.
    #[serde(default)]
    pub oidc_provider: Option<OidcProviderConfig>,
    /// Optional identity-aware reverse proxy.
    #[serde(default)]
    pub app_gateway: Option<AppGatewayConfig>,
    /// The pages people see.
    #[serde(default)]
    pub ui: UiConfig,
    /// OpenTelemetry traces (OTLP over HTTP); off unless an endpoint is
    /// set here or in `OTEL_EXPORTER_OTLP_ENDPOINT`.
    #[serde(default)]
    pub traces: TracesConfig,
}

/// Trace export. Each key mirrors a standard OpenTelemetry variable, which
/// is used when the key is unset. Restart to change.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TracesConfig {
    /// The collector's OTLP/HTTP base URL (`OTEL_EXPORTER_OTLP_ENDPOINT`);
    /// spans go to `{endpoint}/v1/traces`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `http/protobuf`, the only one supported (`OTEL_EXPORTER_OTLP_PROTOCOL`).
    #[serde(default)]
    pub protocol: Option<String>,
    /// `service.name` (`OTEL_SERVICE_NAME`; default `orchestrator`).
    #[serde(default)]
    pub service_name: Option<String>,
    /// `always_on`, `always_off`, `traceidratio`, `parentbased_always_on`,
    /// `parentbased_always_off`, `parentbased_traceidratio`
    /// (`OTEL_TRACES_SAMPLER`; default `parentbased_always_on`).
    #[serde(default)]
    pub sampler: Option<String>,
    /// The ratio of the ratio samplers, 0 to 1 (`OTEL_TRACES_SAMPLER_ARG`).
    #[serde(default)]
    pub sampler_arg: Option<f64>,
    /// Resource attributes (`OTEL_RESOURCE_ATTRIBUTES`), e.g.
    /// `deployment.environment.name: prod`.
    #[serde(default)]
    pub resource_attributes: std::collections::BTreeMap<String, String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: ListenConfig::default(),
            admin: AdminConfig::default(),
            secrets_dir: default_secrets_dir(),
            log: LogConfig::default(),
            shutdown: ShutdownConfig::default(),
            cache: CacheConfig::default(),
            oidc_provider: None,
            app_gateway: None,
            traces: TracesConfig::default(),
            ui: UiConfig::default(),
        }
    }
}

/// The pages people see: login, access denied, sign-out and errors.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UiConfig {
    /// A folder of templates (`login.html`, `forbidden.html`, `error.html`,
    /// `confirm.html`, `signed_out.html`, `base.html`, `style.css`); each file
    /// there replaces the built-in page of its name. Watched: a change is
    /// applied without a restart, and a broken template keeps the old pages.
    #[serde(default)]
    pub templates_dir: Option<PathBuf>,
}

fn default_secrets_dir() -> PathBuf {
    PathBuf::from("/etc/orchestrator/secrets")
}

/// The main listener.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenConfig {
    /// Socket address to bind, e.g. `0.0.0.0:8080`.
    #[serde(default = "default_listen_address")]
    pub address: SocketAddr,
    /// CIDRs whose `X-Forwarded-*` headers are believed (the ingress). None by default.
    #[serde(default)]
    pub trusted_proxies: Vec<IpNet>,
    /// Terminate TLS here when set.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// A client must send its whole request head within this time.
    #[serde(default = "default_header_read_timeout", with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Largest request head (request line + headers) accepted, in bytes.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Most client connections served at once; beyond it new connections wait in the
    /// kernel's accept queue until one closes, so a spike cannot exhaust memory or file handles.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Largest request body the orchestrator itself reads (login forms, token requests), in bytes.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
}

fn default_listen_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_header_bytes() -> usize {
    64 * 1024
}
fn default_max_connections() -> usize {
    10_000
}
fn default_max_body_bytes() -> usize {
    64 * 1024
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            address: default_listen_address(),
            trusted_proxies: Vec::new(),
            tls: None,
            header_read_timeout: default_header_read_timeout(),
            max_header_bytes: default_max_header_bytes(),
            max_connections: default_max_connections(),
            max_body_bytes: default_max_body_bytes(),
        }
    }
}

/// A PEM certificate chain and private key on disk.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// The admin listener.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdminConfig {
    /// Socket address to bind, e.g. `0.0.0.0:9090`.
    #[serde(default = "default_admin_address")]
    pub address: SocketAddr,
    /// Bearer token of the admin API (`POST /sessions/revoke`); unset, the
    /// API is off (404) and the listener only serves probes and metrics.
    #[serde(default)]
    pub api_token: Option<Secret>,
}

fn default_admin_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9090))
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            address: default_admin_address(),
            api_token: None,
        }
    }
}

/// Logging settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter directive (`info`, `debug,hyper=info`); `RUST_LOG` wins when set.
    #[serde(default = "default_log_level")]
    pub level: String,
    /// Output format; unset means JSON unless stdout is a terminal.
    #[serde(default)]
    pub format: Option<LogFormat>,
    /// One `info` line per request of the main listener (target `access`): method, path
    /// without the query (it may carry codes or tokens), status, duration, client, app, user.
    #[serde(default = "default_true")]
    pub access_log: bool,
}

fn default_log_level() -> String {
    "info".to_owned()
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: default_log_level(),
            format: None,
            access_log: true,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

/// Graceful shutdown timings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShutdownConfig {
    /// After SIGTERM, `/readyz` answers 503 for this long before listeners close.
    #[serde(default = "default_shutdown_delay", with = "humantime_serde")]
    pub delay: Duration,
    /// In-flight requests get at most this long to finish.
    #[serde(default = "default_drain_timeout", with = "humantime_serde")]
    pub drain_timeout: Duration,
}

fn default_shutdown_delay() -> Duration {
    Duration::from_secs(2)
}
fn default_drain_timeout() -> Duration {
    Duration::from_secs(20)
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            delay: default_shutdown_delay(),
            drain_timeout: default_drain_timeout(),
        }
    }
}

/// Which cache backend holds shared state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CacheBackend {
    /// In the process: fine for one replica.
    #[default]
    Memory,
    /// Redis (standalone or cluster): required for several replicas.
    Redis,
}

impl CacheBackend {
    /// The name used in config and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Redis => "redis",
        }
    }
}

/// The cache section.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CacheConfig {
    /// `memory` or `redis`.
    #[serde(default)]
    pub backend: CacheBackend,
    /// Bounds of the in-memory backend.
    #[serde(default)]
    pub memory: MemoryCacheConfig,
    /// Redis connection settings (used when `backend: redis`).
    #[serde(default)]
    pub redis: RedisConfig,
}

/// Bounds of the in-memory cache backend.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MemoryCacheConfig {
    /// Most entries held; the least useful are evicted beyond it.
    #[serde(default = "default_memory_max_entries")]
    pub max_entries: u64,
    /// Most bytes of keys + values held (approximate).
    #[serde(default = "default_memory_max_bytes")]
    pub max_bytes: u64,
}

fn default_memory_max_entries() -> u64 {
    1_000_000
}
fn default_memory_max_bytes() -> u64 {
    256 * 1024 * 1024
}

impl Default for MemoryCacheConfig {
    fn default() -> Self {
        Self {
            max_entries: default_memory_max_entries(),
            max_bytes: default_memory_max_bytes(),
        }
    }
}

/// Redis connection settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port/db` or `rediss://` for TLS (standalone).
    #[serde(default = "default_redis_url")]
    pub url: String,
    /// Redis Cluster node URLs; when non-empty, cluster mode is used and `url` is ignored.
    #[serde(default)]
    pub cluster_urls: Vec<String>,
    /// ACL user name, if any.
    #[serde(default)]
    pub username: Option<String>,
    /// Password (usually `${secret:redis-password}`).
    #[serde(default)]
    pub password: Option<Secret>,
    /// Prefix of every key, so several installations can share one Redis.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// Deadline of every single Redis call.
    #[serde(default = "default_operation_timeout", with = "humantime_serde")]
    pub operation_timeout: Duration,
    /// Deadline to establish a connection.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// PEM CA bundle to trust for `rediss://` instead of the public roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_redis_url() -> String {
    "redis://127.0.0.1:6379/0".to_owned()
}
fn default_key_prefix() -> String {
    "orchestrator:".to_owned()
}
fn default_operation_timeout() -> Duration {
    Duration::from_millis(250)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(1)
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: default_redis_url(),
            cluster_urls: Vec::new(),
            username: None,
            password: None,
            key_prefix: default_key_prefix(),
            operation_timeout: default_operation_timeout(),
            connect_timeout: default_connect_timeout(),
            ca_file: None,
        }
    }
}

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
fn default_true() -> bool {
    true
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

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "profile".into(), "email".into()]
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
