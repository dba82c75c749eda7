//! Typed records of the provider's state in the cache, so endpoints never
//! touch raw keys or bytes.
//!
//! Bearer secrets (codes, refresh tokens, session cookies, used login
//! transactions) are stored under the SHA-256 of their value: a dump of the cache does not
//! hand out working credentials. Records go through the cache crate's one
//! record layer ([`orchestrator_cache::CacheExt`]): JSON behind a header
//! naming the record's kind and layout version. A record of another kind or
//! version reads as a miss (counted in `orchestrator_cache_decode_misses_total`),
//! never as an error page, so a format change across a rolling upgrade only
//! costs a re-login.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use orchestrator_cache::{Cache, CacheError, CacheExt as _, Versioned};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Declares a record's kind and layout version (bump it when the layout
/// changes incompatibly: old records then read as misses).
macro_rules! record {
    ($t:ty, $kind:literal, $version:literal) => {
        impl Versioned for $t {
            const KIND: &'static str = $kind;
            const VERSION: u16 = $version;

            fn from_legacy(bytes: &[u8]) -> Option<Self> {
                legacy(bytes)
            }
        }
    };
}

/// The envelope records had before the cache's record layer:
/// `{"v":1,"r":…}`. Still read, so an upgrade keeps refresh tokens, grants
/// and SSO sessions; remove once no such record can be live (a refresh
/// token's lifetime after the upgrade).
fn legacy<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    #[derive(Deserialize)]
    struct Envelope<T> {
        v: u8,
        r: T,
    }
    serde_json::from_slice::<Envelope<T>>(bytes)
        .ok()
        .filter(|e| e.v == 1)
        .map(|e| e.r)
}

record!(CodeRecord, "oidc.code", 1);
record!(CodeRedeemed, "oidc.code-redeemed", 1);
record!(RefreshRecord, "oidc.refresh", 1);
record!(RefreshSpent, "oidc.refresh-spent", 1);
record!(GrantRecord, "oidc.grant", 1);
record!(SsoSession, "oidc.sso", 1);
record!(FederatedUser, "oidc.federated-user", 1);
record!(SessionEnded, "oidc.session-ended", 1);
record!(SessionClient, "oidc.session-client", 1);

/// The delayed queues of back-channel logout work, shared by the replicas;
/// each is never evicted, so each is bounded here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Queue {
    /// Logout tokens to deliver (and their retries).
    Deliveries,
    /// Session ends to notify, one per session a back-channel client got a
    /// code in: kept apart, so many sign-ins never crowd out deliveries.
    Expiry,
}

impl Queue {
    fn key(self) -> &'static str {
        match self {
            Self::Deliveries => "oidc:bcl-queue",
            Self::Expiry => "oidc:bcl-expiry",
        }
    }
}

/// Most jobs one queue holds at once.
const MAX_QUEUED_JOBS: u64 = 100_000;

/// The cache failed; the request can be retried.
#[derive(Debug, thiserror::Error)]
#[error("cache: {0}")]
pub(crate) struct StoreError(#[from] CacheError);

/// A validated authorization request waiting for the user to log in; it
/// travels sealed in the login form (see `seal`), never in the cache.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PendingAuthorization {
    /// `prompt=login` or `max_age` was asked: an upstream must authenticate
    /// the user again too (not reuse its own session).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) fresh_login: bool,
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) scope: String,
    pub(crate) state: Option<String>,
    pub(crate) nonce: Option<String>,
    pub(crate) code_challenge: Option<String>,
    pub(crate) login_hint: Option<String>,
    /// The CSRF token the login form and cookie must both carry.
    pub(crate) csrf: String,
}

/// An issued authorization code.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CodeRecord {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) username: String,
    pub(crate) scope: String,
    pub(crate) nonce: Option<String>,
    pub(crate) code_challenge: Option<String>,
    pub(crate) auth_time: u64,
    pub(crate) sid: String,
    pub(crate) expires_at: u64,
}

/// Left behind when a code is redeemed, so a replay can revoke what it issued.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CodeRedeemed {
    pub(crate) grant_id: String,
}

/// A live refresh token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RefreshRecord {
    pub(crate) family_id: String,
    pub(crate) client_id: String,
    pub(crate) username: String,
    pub(crate) scope: String,
    pub(crate) auth_time: u64,
    pub(crate) sid: String,
    pub(crate) expires_at: u64,
}

/// Left behind when a refresh token is rotated, so reuse can be detected.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RefreshSpent {
    pub(crate) family_id: String,
}

/// One grant: what a code redemption or a `client_credentials` request
/// bought. Every access token names its grant (`gid`) and every refresh token
/// its family (the same id); both work only while this record exists, so
/// deleting it revokes them all, and a record lost for any reason (expiry,
/// eviction, a flushed Redis) fails closed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct GrantRecord {
    pub(crate) client_id: String,
    /// The user behind the grant; none for `client_credentials`.
    #[serde(default)]
    pub(crate) username: Option<String>,
    /// When refresh tokens of the grant stop working, whatever the rotations
    /// (seconds since the epoch): the code's redemption plus `refreshTokenTtl`.
    pub(crate) refresh_until: u64,
}

/// Left behind when an SSO session is ended (logout), under its public `sid`:
/// no code of it is redeemed, no refresh token of it is used again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SessionEnded {
    pub(crate) at: u64,
}

/// A client that got tokens in an SSO session and takes back-channel
/// logout tokens: one record per session and client, so two clients signing
/// in at once (on two replicas) never overwrite each other.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SessionClient {
    pub(crate) at: u64,
}

/// A user of an upstream IdP: the claims mapped at their last login there,
/// kept while a session or grant may name them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FederatedUser {
    pub(crate) sub: String,
    pub(crate) upstream: String,
    pub(crate) claims: std::collections::BTreeMap<String, serde_json::Value>,
}

/// The upstream login behind an SSO session, for logging out there too.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct UpstreamLink {
    /// The upstream's name.
    pub(crate) name: String,
    /// Its ID token (the `id_token_hint` of its end-session request).
    pub(crate) id_token: String,
    /// Its session id, when it sent one.
    #[serde(default)]
    pub(crate) sid: Option<String>,
}

/// An SSO session at the provider.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SsoSession {
    /// Public session id (the ID token's `sid`); not the cookie value.
    pub(crate) sid: String,
    pub(crate) username: String,
    pub(crate) auth_time: u64,
    pub(crate) expires_at: u64,
    /// The upstream login, for a user of an upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) upstream: Option<UpstreamLink>,
}

/// What a login throttle counts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ThrottleSubject {
    Username,
    ClientIp,
    /// One user name from one client IP.
    Pair,
}

impl ThrottleSubject {
    fn as_str(self) -> &'static str {
        match self {
            Self::Username => "user",
            Self::ClientIp => "ip",
            Self::Pair => "pair",
        }
    }
}

/// The provider's view of the cache.
#[derive(Clone)]
pub(crate) struct Store {
    cache: Arc<dyn Cache>,
}

/// SHA-256 of a secret handle, base64url: the key it is stored under.
pub(crate) fn digest(secret: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(secret.as_bytes()))
}

/// A random 256-bit handle, base64url (codes, refresh tokens, cookies).
pub(crate) fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A random 128-bit identifier (jti, sid, family ids): unique, not secret.
pub(crate) fn random_id() -> String {
    let bytes: [u8; 16] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

impl Store {
    pub(crate) fn new(cache: Arc<dyn Cache>) -> Self {
        Self { cache }
    }

    async fn put<T: Versioned + Serialize>(
        &self,
        key: &str,
        rec: &T,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.cache
            .set_typed(key, rec, ttl.max(Duration::from_secs(1)))
            .await?;
        Ok(())
    }

    async fn get<T: Versioned + DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        Ok(self.cache.get_typed(key).await?)
    }

    async fn take<T: Versioned + DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        Ok(self.cache.take_typed(key).await?)
    }

    // --- login transactions (sealed, see `seal`; only their use is stored) ---

    /// Claims a login transaction for one successful sign-in; `false` when it
    /// was already used (a double submit, a replayed form). Kept until the
    /// transaction would have expired anyway.
    pub(crate) async fn claim_login_tx(&self, tx: &str, ttl: Duration) -> Result<bool, StoreError> {
        Ok(self
            .cache
            .set_if_absent(
                &format!("oidc:tx-used:{}", digest(tx)),
                b"1",
                ttl.max(Duration::from_secs(1)),
            )
            .await?)
    }

    // --- authorization codes ---

    pub(crate) async fn put_code(
        &self,
        code: &str,
        rec: &CodeRecord,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.put(&format!("oidc:code:{}", digest(code)), rec, ttl)
            .await
    }

    /// Redeems a code: atomic get-and-delete, so it works once across replicas.
    pub(crate) async fn take_code(&self, code: &str) -> Result<Option<CodeRecord>, StoreError> {
        self.take(&format!("oidc:code:{}", digest(code))).await
    }

    pub(crate) async fn mark_code_redeemed(
        &self,
        code: &str,
        rec: &CodeRedeemed,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.put(&format!("oidc:code-used:{}", digest(code)), rec, ttl)
            .await
    }

    pub(crate) async fn code_redeemed(
        &self,
        code: &str,
    ) -> Result<Option<CodeRedeemed>, StoreError> {
        self.get(&format!("oidc:code-used:{}", digest(code))).await
    }

    // --- refresh tokens and their families ---

    pub(crate) async fn put_refresh(
        &self,
        token: &str,
        rec: &RefreshRecord,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.put(&format!("oidc:rt:{}", digest(token)), rec, ttl)
            .await
    }

    pub(crate) async fn refresh(&self, token: &str) -> Result<Option<RefreshRecord>, StoreError> {
        self.get(&format!("oidc:rt:{}", digest(token))).await
    }

    /// Spends a refresh token (atomic, like codes).
    pub(crate) async fn take_refresh(
        &self,
        token: &str,
    ) -> Result<Option<RefreshRecord>, StoreError> {
        self.take(&format!("oidc:rt:{}", digest(token))).await
    }

    pub(crate) async fn delete_refresh(&self, token: &str) -> Result<(), StoreError> {
        self.cache
            .delete(&format!("oidc:rt:{}", digest(token)))
            .await?;
        Ok(())
    }

    pub(crate) async fn mark_refresh_spent(
        &self,
        token: &str,
        rec: &RefreshSpent,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.put(&format!("oidc:rt-spent:{}", digest(token)), rec, ttl)
            .await
    }

    pub(crate) async fn refresh_spent(
        &self,
        token: &str,
    ) -> Result<Option<RefreshSpent>, StoreError> {
        self.get(&format!("oidc:rt-spent:{}", digest(token))).await
    }

    /// Stores a grant for `ttl`, which must cover every token it backs.
    pub(crate) async fn put_grant(
        &self,
        id: &str,
        rec: &GrantRecord,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.put(&format!("oidc:grant:{id}"), rec, ttl).await
    }

    pub(crate) async fn grant(&self, id: &str) -> Result<Option<GrantRecord>, StoreError> {
        self.get(&format!("oidc:grant:{id}")).await
    }

    /// Sets a live grant's TTL; `false` (and nothing stored) when it is gone.
    pub(crate) async fn extend_grant(&self, id: &str, ttl: Duration) -> Result<bool, StoreError> {
        Ok(self
            .cache
            .expire(&format!("oidc:grant:{id}"), ttl.max(Duration::from_secs(1)))
            .await?)
    }

    /// Revokes a grant: its access and refresh tokens stop working at once.
    pub(crate) async fn revoke_grant(&self, id: &str) -> Result<(), StoreError> {
        self.cache.delete(&format!("oidc:grant:{id}")).await?;
        Ok(())
    }

    // --- SSO sessions ---

    pub(crate) async fn put_session(
        &self,
        cookie: &str,
        rec: &SsoSession,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.put(&format!("oidc:sso:{}", digest(cookie)), rec, ttl)
            .await
    }

    pub(crate) async fn session(&self, cookie: &str) -> Result<Option<SsoSession>, StoreError> {
        self.get(&format!("oidc:sso:{}", digest(cookie))).await
    }

    pub(crate) async fn delete_session(&self, cookie: &str) -> Result<(), StoreError> {
        self.cache
            .delete(&format!("oidc:sso:{}", digest(cookie)))
            .await?;
        Ok(())
    }

    // --- ended SSO sessions, by their public sid ---

    pub(crate) async fn mark_session_ended(
        &self,
        sid: &str,
        rec: &SessionEnded,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.put(&format!("oidc:sid-ended:{}", digest(sid)), rec, ttl)
            .await
    }

    pub(crate) async fn session_ended(&self, sid: &str) -> Result<bool, StoreError> {
        Ok(self
            .get::<SessionEnded>(&format!("oidc:sid-ended:{}", digest(sid)))
            .await?
            .is_some())
    }

    fn session_client_key(sid: &str, client_id: &str) -> String {
        format!("oidc:sid-client:{}", digest(&format!("{sid}\0{client_id}")))
    }

    pub(crate) async fn put_session_client(
        &self,
        sid: &str,
        client_id: &str,
        rec: &SessionClient,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.put(&Self::session_client_key(sid, client_id), rec, ttl)
            .await
    }

    pub(crate) async fn session_client(
        &self,
        sid: &str,
        client_id: &str,
    ) -> Result<bool, StoreError> {
        Ok(self
            .get::<SessionClient>(&Self::session_client_key(sid, client_id))
            .await?
            .is_some())
    }

    // --- the back-channel logout queue ---

    /// Queues `job` (its exact bytes are its identity), due at `due_ms`;
    /// `false` when the queue is full.
    pub(crate) async fn enqueue_job(
        &self,
        queue: Queue,
        job: &[u8],
        due_ms: u64,
    ) -> Result<bool, StoreError> {
        Ok(self
            .cache
            .enqueue(queue.key(), job, due_ms, MAX_QUEUED_JOBS)
            .await?)
    }

    /// Claims up to `limit` jobs due at `now_ms`, each leased for `lease`.
    pub(crate) async fn claim_jobs(
        &self,
        queue: Queue,
        now_ms: u64,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
        Ok(self
            .cache
            .claim_due(queue.key(), now_ms, lease_ms, limit)
            .await?)
    }

    /// Removes a job (done, or given up).
    pub(crate) async fn dequeue_job(&self, queue: Queue, job: &[u8]) -> Result<(), StoreError> {
        self.cache.dequeue(queue.key(), job).await?;
        Ok(())
    }

    /// Every SSO session of `username` signed in until `at` is over.
    pub(crate) async fn mark_user_revoked(
        &self,
        username: &str,
        rec: &SessionEnded,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.put(&format!("oidc:user-revoked:{}", digest(username)), rec, ttl)
            .await
    }

    /// When the sessions of `username` were last revoked by an operator.
    pub(crate) async fn user_revoked_at(&self, username: &str) -> Result<Option<u64>, StoreError> {
        Ok(self
            .get::<SessionEnded>(&format!("oidc:user-revoked:{}", digest(username)))
            .await?
            .map(|r| r.at))
    }

    // --- users of upstreams ---

    pub(crate) async fn put_federated_user(
        &self,
        username: &str,
        rec: &FederatedUser,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.put(&format!("oidc:fuser:{}", digest(username)), rec, ttl)
            .await
    }

    pub(crate) async fn federated_user(
        &self,
        username: &str,
    ) -> Result<Option<FederatedUser>, StoreError> {
        self.get(&format!("oidc:fuser:{}", digest(username))).await
    }

    // --- login throttling (see `throttle`) ---

    fn throttle_key(kind: &str, subject: ThrottleSubject, value: &str) -> String {
        format!("oidc:{kind}:{}:{}", subject.as_str(), digest(value))
    }

    /// Counts one attempt of `value` in the current window; returns the count.
    /// The window starts with the first attempt, so memory stays bounded by
    /// the number of distinct subjects per window.
    pub(crate) async fn count(
        &self,
        subject: ThrottleSubject,
        value: &str,
        window: Duration,
    ) -> Result<u64, StoreError> {
        let key = Self::throttle_key("fail", subject, value);
        Ok(self.cache.incr(&key, window).await?)
    }

    /// Takes one attempt back (never creates a counter).
    pub(crate) async fn uncount(
        &self,
        subject: ThrottleSubject,
        value: &str,
    ) -> Result<(), StoreError> {
        let key = Self::throttle_key("fail", subject, value);
        self.cache.decr(&key).await?;
        Ok(())
    }

    /// Passes the gate of `value` if it is open, closing it behind for `ttl`;
    /// `false` while it is closed.
    pub(crate) async fn take_gate(
        &self,
        subject: ThrottleSubject,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let key = Self::throttle_key("gate", subject, value);
        Ok(self.cache.set_if_absent(&key, b"1", ttl).await?)
    }

    /// Closes the gate of `value` for `ttl` from now.
    pub(crate) async fn close_gate(
        &self,
        subject: ThrottleSubject,
        value: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let key = Self::throttle_key("gate", subject, value);
        Ok(self.cache.set(&key, b"1", ttl).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_written_before_the_record_layer_still_read() {
        let cache: Arc<dyn Cache> = Arc::new(orchestrator_cache::MemoryCache::new(
            &orchestrator_config::MemoryCacheConfig::default(),
        ));
        let store = Store::new(cache.clone());
        let rec = SsoSession {
            sid: "sid".into(),
            username: "alice".into(),
            auth_time: 1,
            expires_at: 2,
            upstream: None,
        };
        let key = |cookie: &str| format!("oidc:sso:{}", digest(cookie));
        let ttl = Duration::from_secs(60);
        for (cookie, v, want) in [("old", 1, Some("alice")), ("other", 7, None)] {
            let bytes = serde_json::to_vec(&serde_json::json!({"v": v, "r": rec})).expect("json");
            cache.set(&key(cookie), &bytes, ttl).await.expect("set");
            let read = store.session(cookie).await.ok().flatten();
            assert_eq!(read.map(|s| s.username).as_deref(), want, "v{v}");
        }
        // And what is written now reads back.
        store.put_session("new", &rec, ttl).await.expect("put");
        assert!(store.session("new").await.ok().flatten().is_some());
    }

    #[test]
    fn handles_are_random_and_digests_stable() {
        assert_ne!(random_token(), random_token());
        assert_eq!(random_token().len(), 43);
        assert_eq!(digest("abc"), digest("abc"));
        assert_ne!(digest("abc"), "abc");
    }
}
