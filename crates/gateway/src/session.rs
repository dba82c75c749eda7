//! Sessions: the random id in the cookie, what it names, and where that lives.
//!
//! `store: local` keeps sessions in a bounded moka cache in this process.
//! `store: shared` keeps them in the [`orchestrator_cache::Cache`] backend
//! (keyed by a hash of the id, so a dump of Redis holds no usable cookie),
//! with a small local near-cache so most requests never leave the process.
//! Pending logins follow the same split, so a callback may land on any replica.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use orchestrator_cache::Cache;
use orchestrator_config::{SessionConfig, SessionStore as StoreKind};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};

use crate::assertion::AssertionCache;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::GatewayError;
use crate::metrics::GatewayMetrics;

/// Version of the serialised [`Session`] and [`PendingLogin`]; another
/// version reads as a miss, so a rolling upgrade only costs a re-login.
const FORMAT_VERSION: u8 = 1;

/// How long a shared session may be served from the near-cache before the
/// backend is asked again (bounds how late a logout on another replica is seen).
const NEAR_CACHE_TTL: Duration = Duration::from_secs(5);

/// Most pending logins held locally: they are created by unauthenticated
/// requests, so they must be bounded.
const MAX_PENDING_LOGINS: u64 = 100_000;

/// A random 256-bit token, base64url without padding (43 characters).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

impl SessionId {
    /// A fresh random id from the OS-seeded CSPRNG.
    pub fn random() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Parses a cookie value; anything that is not exactly a 256-bit
    /// base64url token is no session at all.
    pub fn parse(value: &str) -> Option<Self> {
        let ok = value.len() == 43
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && URL_SAFE_NO_PAD.decode(value).is_ok_and(|b| b.len() == 32);
        ok.then(|| Self(value.to_owned()))
    }

    /// The cookie value.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The key under which the backend stores it: a hash, never the id itself.
    fn storage_key(&self, prefix: &str) -> String {
        storage_key(prefix, &self.0)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId([redacted])")
    }
}

fn storage_key(prefix: &str, secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(digest))
}

/// Seconds since the Unix epoch.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A logged-in user: the claims of the verified ID token, never in the cookie.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Session {
    v: u8,
    /// Name of the identity provider that logged the user in.
    pub(crate) idp: String,
    /// Claims of the ID token (and userinfo).
    pub(crate) claims: Map<String, Value>,
    /// The raw ID token, sent back as `id_token_hint` at logout.
    pub(crate) id_token: String,
    /// Creation time, seconds since the epoch.
    pub(crate) created: u64,
    /// Assertions already signed for this session (never stored: each process signs its own).
    #[serde(skip)]
    pub(crate) assertions: AssertionCache,
}

impl Session {
    /// A new session created now.
    pub(crate) fn new(idp: String, claims: Map<String, Value>, id_token: String) -> Self {
        Self {
            v: FORMAT_VERSION,
            idp,
            claims,
            id_token,
            created: now_secs(),
            assertions: AssertionCache::default(),
        }
    }

    /// The `sub` claim.
    pub(crate) fn subject(&self) -> &str {
        self.claims.get("sub").and_then(Value::as_str).unwrap_or("")
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("idp", &self.idp)
            .field("sub", &self.subject())
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

/// A login in progress, keyed by its `state`.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct PendingLogin {
    v: u8,
    /// Identity provider name.
    pub(crate) idp: String,
    /// App the login started on.
    pub(crate) app: String,
    /// Where to go after login (a validated path on the same app).
    pub(crate) return_to: String,
    /// The PKCE verifier.
    pub(crate) pkce_verifier: String,
    /// The nonce expected in the ID token.
    pub(crate) nonce: String,
    /// Hash of the browser-binding cookie value.
    pub(crate) binding: String,
    /// The redirect URI used in the authorization request.
    pub(crate) redirect_uri: String,
}

impl PendingLogin {
    /// A pending login.
    pub(crate) fn new(
        idp: String,
        app: String,
        return_to: String,
        pkce_verifier: String,
        nonce: String,
        binding: String,
        redirect_uri: String,
    ) -> Self {
        Self {
            v: FORMAT_VERSION,
            idp,
            app,
            return_to,
            pkce_verifier,
            nonce,
            binding,
            redirect_uri,
        }
    }
}

/// Hash of the browser-binding cookie as stored in a pending login.
pub(crate) fn binding_hash(cookie_value: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(cookie_value.as_bytes()))
}

struct SharedBackend {
    cache: Arc<dyn Cache>,
    near: moka::future::Cache<SessionId, Arc<Session>>,
}

/// Where sessions and pending logins live; built once, kept across reloads.
pub(crate) struct SessionStore {
    max_lifetime: Duration,
    idle_timeout: Duration,
    local: moka::future::Cache<SessionId, Arc<Session>>,
    pending_local: moka::future::Cache<String, Arc<PendingLogin>>,
    shared: Option<SharedBackend>,
}

impl fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionStore")
            .field("shared", &self.shared.is_some())
            .finish_non_exhaustive()
    }
}

const SESSION_PREFIX: &str = "gw:session:";
const PENDING_PREFIX: &str = "gw:login:";

impl SessionStore {
    /// A store as configured; `cache` is used only for `store: shared`.
    pub(crate) fn new(
        cfg: &SessionConfig,
        pending_ttl: Duration,
        cache: Arc<dyn Cache>,
        metrics: Arc<GatewayMetrics>,
    ) -> Self {
        let gauge = metrics.active_sessions.clone();
        let local = moka::future::Cache::builder()
            .max_capacity(cfg.max_entries)
            .time_to_live(cfg.max_lifetime)
            .time_to_idle(cfg.idle_timeout)
            .eviction_listener(move |_k, _v, cause| {
                if cause != moka::notification::RemovalCause::Replaced {
                    gauge.dec();
                }
            })
            .build();
        let pending_local = moka::future::Cache::builder()
            .max_capacity(MAX_PENDING_LOGINS)
            .time_to_live(pending_ttl)
            .build();
        let shared = (cfg.store == StoreKind::Shared).then(|| SharedBackend {
            cache,
            near: moka::future::Cache::builder()
                .max_capacity(cfg.max_entries.min(100_000))
                .time_to_live(NEAR_CACHE_TTL.min(cfg.idle_timeout))
                .build(),
        });
        Self {
            max_lifetime: cfg.max_lifetime,
            idle_timeout: cfg.idle_timeout,
            local,
            pending_local,
            shared,
        }
    }

    fn remaining(&self, session: &Session) -> Option<Duration> {
        let age = now_secs().saturating_sub(session.created);
        self.max_lifetime
            .checked_sub(Duration::from_secs(age))
            .filter(|d| !d.is_zero())
    }

    /// The session named by `id`, if it exists and is neither expired nor idle.
    pub(crate) async fn get(&self, id: &SessionId) -> Result<Option<Arc<Session>>, GatewayError> {
        let Some(shared) = &self.shared else {
            let found = self.local.get(id).await;
            return Ok(found.filter(|s| self.remaining(s).is_some()));
        };
        if let Some(s) = shared.near.get(id).await {
            if self.remaining(&s).is_some() {
                return Ok(Some(s));
            }
        }
        let key = id.storage_key(SESSION_PREFIX);
        let Some(bytes) = shared.cache.get(&key).await.map_err(cache_err)? else {
            return Ok(None);
        };
        let Ok(session) = serde_json::from_slice::<Session>(&bytes) else {
            return Ok(None);
        };
        if session.v != FORMAT_VERSION {
            return Ok(None);
        }
        let Some(remaining) = self.remaining(&session) else {
            return Ok(None);
        };
        // Slide the idle window; the near-cache means this happens at most
        // once per NEAR_CACHE_TTL per replica for an active user.
        shared
            .cache
            .expire(&key, self.idle_timeout.min(remaining))
            .await
            .map_err(cache_err)?;
        let session = Arc::new(session);
        shared.near.insert(id.clone(), session.clone()).await;
        Ok(Some(session))
    }

    /// Stores a new session under a fresh id and returns the id.
    pub(crate) async fn create(
        &self,
        session: Session,
        metrics: &GatewayMetrics,
    ) -> Result<SessionId, GatewayError> {
        let id = SessionId::random();
        let session = Arc::new(session);
        match &self.shared {
            None => {
                self.local.insert(id.clone(), session).await;
                metrics.active_sessions.inc();
            }
            Some(shared) => {
                let bytes = serde_json::to_vec(&*session)
                    .map_err(|e| GatewayError::Cache(e.to_string()))?;
                let ttl = self.idle_timeout.min(self.max_lifetime);
                shared
                    .cache
                    .set(&id.storage_key(SESSION_PREFIX), &bytes, ttl)
                    .await
                    .map_err(cache_err)?;
                shared.near.insert(id.clone(), session).await;
            }
        }
        Ok(id)
    }

    /// Ends a session (logout, or replaced by a new login).
    pub(crate) async fn remove(&self, id: &SessionId) -> Result<(), GatewayError> {
        match &self.shared {
            None => {
                self.local.invalidate(id).await;
            }
            Some(shared) => {
                shared.near.invalidate(id).await;
                shared
                    .cache
                    .delete(&id.storage_key(SESSION_PREFIX))
                    .await
                    .map_err(cache_err)?;
            }
        }
        Ok(())
    }

    /// Remembers a login in progress under its `state`.
    pub(crate) async fn put_pending(
        &self,
        state: &str,
        login: PendingLogin,
        ttl: Duration,
    ) -> Result<(), GatewayError> {
        match &self.shared {
            None => {
                self.pending_local
                    .insert(state.to_owned(), Arc::new(login))
                    .await;
            }
            Some(shared) => {
                let bytes =
                    serde_json::to_vec(&login).map_err(|e| GatewayError::Cache(e.to_string()))?;
                shared
                    .cache
                    .set(&storage_key(PENDING_PREFIX, state), &bytes, ttl)
                    .await
                    .map_err(cache_err)?;
            }
        }
        Ok(())
    }

    /// Takes (atomically: a `state` works once) the login started with `state`.
    pub(crate) async fn take_pending(
        &self,
        state: &str,
    ) -> Result<Option<PendingLogin>, GatewayError> {
        match &self.shared {
            None => Ok(self.pending_local.remove(state).await.map(|p| (*p).clone())),
            Some(shared) => {
                let Some(bytes) = shared
                    .cache
                    .take(&storage_key(PENDING_PREFIX, state))
                    .await
                    .map_err(cache_err)?
                else {
                    return Ok(None);
                };
                Ok(serde_json::from_slice::<PendingLogin>(&bytes)
                    .ok()
                    .filter(|p| p.v == FORMAT_VERSION))
            }
        }
    }
}

fn cache_err(e: orchestrator_cache::CacheError) -> GatewayError {
    GatewayError::Cache(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_random_256_bit_tokens() {
        let a = SessionId::random();
        let b = SessionId::random();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 43);
        assert_eq!(SessionId::parse(a.expose()), Some(a.clone()));
        assert!(SessionId::parse("short").is_none());
        assert!(SessionId::parse(&format!("{}=", &a.expose()[..42])).is_none());
        assert!(SessionId::parse(&"+".repeat(43)).is_none());
        assert_eq!(format!("{a:?}"), "SessionId([redacted])");
    }
}
