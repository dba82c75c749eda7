//! Sessions: the random id in the cookie, what it names, and where that lives.
//!
//! `store: local` keeps sessions in a bounded moka cache in this process.
//! `store: shared` keeps them in the [`orchestrator_cache::Cache`] backend
//! (keyed by a hash of the id, so a dump of Redis holds no usable cookie),
//! with a small local near-cache so most requests never leave the process.
//! Pending logins follow the same split, so a callback may land on any replica.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use orchestrator_cache::{Cache, CacheExt as _, Versioned};
use orchestrator_config::{AppGatewayConfig, SessionStore as StoreKind};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::GatewayError;
use crate::metrics::GatewayMetrics;

/// Layout version of the stored [`Session`] and [`PendingLogin`] (the cache
/// crate's record header carries it); another version reads as a miss, so a
/// rolling upgrade only costs a re-login.
const FORMAT_VERSION: u16 = 4;

impl Versioned for Session {
    const KIND: &'static str = "gateway.session";
    const VERSION: u16 = FORMAT_VERSION;

    fn from_legacy(bytes: &[u8]) -> Option<Self> {
        legacy(bytes)
    }
}

impl Versioned for PendingLogin {
    const KIND: &'static str = "gateway.pending-login";
    const VERSION: u16 = FORMAT_VERSION;

    fn from_legacy(bytes: &[u8]) -> Option<Self> {
        legacy(bytes)
    }
}

/// A record of layout 3, written before the cache's record layer: plain
/// JSON with `"v":3` beside the fields. Still read, so shared sessions
/// survive the upgrade; remove once none can be live (`maxLifetime` after it).
fn legacy<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    #[derive(Deserialize)]
    struct Version {
        v: u8,
    }
    let version: Version = serde_json::from_slice(bytes).ok()?;
    (version.v == 3)
        .then(|| serde_json::from_slice(bytes).ok())
        .flatten()
}

/// How long a shared session may be served from the near-cache before the
/// backend is asked again (bounds how late a logout on another replica is seen).
const NEAR_CACHE_TTL: Duration = Duration::from_secs(5);

/// Bytes a pending login costs beyond its strings (moka's node, key, `Arc`).
const PENDING_OVERHEAD: usize = 256;

/// Most client addresses whose started logins are counted at once.
const MAX_COUNTED_CLIENTS: u64 = 100_000;

/// A random 256-bit token; in the cookie as base64url without padding (43
/// characters), in memory as its 32 bytes (no allocation per session key).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId([u8; 32]);

impl SessionId {
    /// A fresh random id from the OS-seeded CSPRNG.
    pub fn random() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Parses a cookie value; anything that is not exactly a 256-bit
    /// base64url token is no session at all.
    pub fn parse(value: &str) -> Option<Self> {
        if value.len() != 43 {
            return None;
        }
        // 43 characters decode to 32 bytes (the buffer is the decoder's
        // estimate); the engine refuses non-canonical spellings of the same
        // bytes (non-zero trailing bits).
        let mut buf = [0u8; 33];
        match URL_SAFE_NO_PAD.decode_slice(value, &mut buf) {
            Ok(32) => {
                let mut bytes = [0u8; 32];
                bytes.copy_from_slice(&buf[..32]);
                Some(Self(bytes))
            }
            _ => None,
        }
    }

    /// The cookie value.
    pub fn expose(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// The sign-out form's token: derived from the id, so only a page that
    /// was served to this session's browser can carry it (a cross-site form
    /// cannot read it), and it needs no storage.
    pub(crate) fn logout_token(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"orchestrator logout\0");
        h.update(self.0);
        URL_SAFE_NO_PAD.encode(h.finalize())
    }

    /// The raw bytes (a key for per-session caches in this process).
    pub(crate) fn bytes(&self) -> [u8; 32] {
        self.0
    }

    /// The key under which the backend stores it: a hash, never the id itself.
    fn storage_key(&self, prefix: &str) -> String {
        storage_key(prefix, &self.expose())
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId([redacted])")
    }
}

/// The key of a back-channel logout marker: a digest of the IdP and the
/// `sid` or `sub` it names.
fn logout_key(prefix: &str, idp: &str, value: &str) -> String {
    let mut h = Sha256::new();
    h.update(idp.as_bytes());
    h.update([0]);
    h.update(value.as_bytes());
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(h.finalize()))
}

fn storage_key(prefix: &str, secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(digest))
}

/// The AES-256-GCM key that seals a session's refresh token: derived from
/// the session id, which the store never holds (it keys by the id's hash).
fn refresh_key(id: &SessionId) -> ring::aead::LessSafeKey {
    let mut h = Sha256::new();
    h.update(b"orchestrator refresh token\0");
    h.update(id.0);
    let unbound = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &h.finalize())
        .unwrap_or_else(|_| unreachable!("a SHA-256 digest is an AES-256 key"));
    ring::aead::LessSafeKey::new(unbound)
}

/// `token` sealed for session `id`: base64url of a random nonce and the
/// ciphertext with its tag.
fn seal_refresh(id: &SessionId, token: &str) -> Box<str> {
    let mut nonce = [0u8; ring::aead::NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    let mut buf = token.as_bytes().to_vec();
    // Sealing fails only for inputs beyond AES-GCM's limit (64 GiB).
    if refresh_key(id)
        .seal_in_place_append_tag(
            ring::aead::Nonce::assume_unique_for_key(nonce),
            ring::aead::Aad::empty(),
            &mut buf,
        )
        .is_err()
    {
        buf.clear();
    }
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buf);
    URL_SAFE_NO_PAD.encode(out).into_boxed_str()
}

fn open_refresh(id: &SessionId, sealed: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
    let (nonce, rest) = bytes.split_at_checked(ring::aead::NONCE_LEN)?;
    let nonce = ring::aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut rest = rest.to_vec();
    let plain = refresh_key(id)
        .open_in_place(nonce, ring::aead::Aad::empty(), &mut rest)
        .ok()?;
    String::from_utf8(plain.to_vec()).ok()
}

/// Milliseconds since the Unix epoch.
fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Seconds since the Unix epoch.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// ID token claims that describe the token, not the user (OIDC Core §2,
/// §3.1.3.6): not part of a session's claims.
const TOKEN_ONLY_CLAIMS: &[&str] = &["nonce", "at_hash", "c_hash", "exp", "iat", "nbf"];

/// A logged-in user, never in the cookie. The verified ID token is kept once,
/// compactly: it is the `id_token_hint` at logout and its payload is the
/// claims, read when a request first needs them (see [`crate::identity`]).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Session {
    /// Name of the identity provider that logged the user in.
    pub(crate) idp: Arc<str>,
    /// The host (lower-case, no port) the session was created on: its cookie
    /// is host-only, so on any other host the id is a stolen or planted one.
    pub(crate) host: Box<str>,
    /// The ID token the login verified.
    id_token: CompactJwt,
    /// Userinfo claims the ID token lacks (a JSON object), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    extra: Option<Box<str>>,
    /// Creation time, seconds since the epoch.
    pub(crate) created: u64,
    /// Creation time in milliseconds (a logout by subject ends the sessions
    /// created before it, a login in the same second after it survives);
    /// 0 in sessions written before it was kept.
    #[serde(default)]
    created_ms: u64,
    /// The IdP's session id (`sid`) and the user's `sub`, from the ID token:
    /// what an IdP's back-channel logout names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) sid: Option<Box<str>>,
    #[serde(default)]
    pub(crate) sub: Box<str>,
    /// The refresh token, sealed with a key derived from the session id
    /// (see [`seal_refresh`]): a dump of the shared store cannot use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh: Option<Box<str>>,
    /// Until when the identity holds (the ID token's `exp`, or the renewed
    /// access token's), seconds since the epoch; then it is renewed or,
    /// `identityGrace` later, the session ends. 0: no limit (sessions
    /// written before it was kept).
    #[serde(default)]
    pub(crate) valid_until: u64,
    /// Renewals so far: each one may change the claims, so computed
    /// identities are kept per renewal.
    #[serde(default)]
    pub(crate) renewals: u32,
}

impl Session {
    /// A new session created now from a verified ID token and the userinfo
    /// claims it lacks.
    pub(crate) fn new(
        idp: Arc<str>,
        host: &str,
        id_token: &str,
        extra: &Map<String, Value>,
    ) -> Self {
        let extra = (!extra.is_empty())
            .then(|| serde_json::to_string(extra).ok())
            .flatten()
            .map(String::into_boxed_str);
        let id_token = CompactJwt::new(id_token);
        let token_claims = id_token
            .payload()
            .and_then(|p| serde_json::from_slice::<Map<String, Value>>(&p).ok())
            .unwrap_or_default();
        let text = |c: &str| token_claims.get(c).and_then(Value::as_str).map(Box::from);
        Self {
            idp,
            host: host.into(),
            sid: text("sid"),
            sub: text("sub").unwrap_or_default(),
            valid_until: token_claims.get("exp").and_then(Value::as_u64).unwrap_or(0),
            id_token,
            extra,
            created: now_secs(),
            created_ms: now_millis(),
            refresh: None,
            renewals: 0,
        }
    }

    /// Whether the login left a refresh token to renew the identity with.
    pub(crate) fn renewable(&self) -> bool {
        self.refresh.is_some()
    }

    /// The refresh token, opened with the session's id.
    pub(crate) fn refresh_token(&self, id: &SessionId) -> Option<String> {
        open_refresh(id, self.refresh.as_deref()?)
    }

    /// This session after a renewal: the new ID token (or the old one, held
    /// `expires_in` longer), userinfo's claims when it answered, the
    /// rotated refresh token.
    pub(crate) fn renewed(&self, id: &SessionId, r: &orchestrator_rp::Refreshed) -> Self {
        /// How long a renewal without an ID token or `expires_in` holds.
        const DEFAULT_VALIDITY: u64 = 300;
        let now = now_secs();
        let mut next = match &r.id_token {
            Some(token) => {
                let mut fresh = Self::new(self.idp.clone(), &self.host, token, &Map::new());
                fresh.extra = self.extra.clone();
                fresh.created = self.created;
                fresh.created_ms = self.created_ms;
                fresh.sid = fresh.sid.or_else(|| self.sid.clone());
                fresh
            }
            None => {
                let mut same = self.clone();
                same.valid_until = now.saturating_add(
                    r.expires_in
                        .map_or(DEFAULT_VALIDITY, |d| d.as_secs().max(1)),
                );
                same
            }
        };
        if let Some(extra) = &r.extra {
            next.extra = (!extra.is_empty())
                .then(|| serde_json::to_string(extra).ok())
                .flatten()
                .map(String::into_boxed_str);
        }
        next.refresh = match &r.refresh_token {
            Some(t) => Some(seal_refresh(id, t)),
            None => self.refresh.clone(),
        };
        next.renewals = self.renewals.wrapping_add(1);
        next
    }

    /// The raw ID token, for `id_token_hint`.
    pub(crate) fn id_token(&self) -> String {
        self.id_token.to_string()
    }

    /// The user's claims: the ID token's (less [`TOKEN_ONLY_CLAIMS`]), then
    /// userinfo's where the token has none. `None` if they cannot be read.
    pub(crate) fn claims(&self) -> Option<Map<String, Value>> {
        let payload = self.id_token.payload()?;
        let mut claims = serde_json::from_slice::<Map<String, Value>>(&payload).ok()?;
        if let Some(extra) = &self.extra {
            let extra = serde_json::from_str::<Map<String, Value>>(extra).ok()?;
            for (k, v) in extra {
                claims.entry(k).or_insert(v);
            }
        }
        for k in TOKEN_ONLY_CLAIMS {
            claims.remove(*k);
        }
        Some(claims)
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("idp", &self.idp)
            .field("host", &self.host)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

/// A compact JWS (`header.payload.signature`) held as its decoded bytes: a
/// quarter smaller than the base64url text, and the payload needs no decoding
/// to read. A token whose text would not come back byte for byte from its
/// bytes (non-canonical base64url) is kept as text.
#[derive(Clone)]
enum CompactJwt {
    Decoded {
        /// Header, payload and signature bytes, one after the other.
        bytes: Box<[u8]>,
        header_len: u32,
        payload_len: u32,
    },
    Text(Box<str>),
}

impl CompactJwt {
    fn new(text: &str) -> Self {
        let decoded = (|| {
            let mut parts = text.split('.');
            let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
            if parts.next().is_some() {
                return None;
            }
            let mut bytes = URL_SAFE_NO_PAD.decode(h).ok()?;
            let header_len = u32::try_from(bytes.len()).ok()?;
            URL_SAFE_NO_PAD.decode_vec(p, &mut bytes).ok()?;
            let payload_len = u32::try_from(bytes.len()).ok()? - header_len;
            URL_SAFE_NO_PAD.decode_vec(s, &mut bytes).ok()?;
            let jwt = Self::Decoded {
                bytes: bytes.into_boxed_slice(),
                header_len,
                payload_len,
            };
            (jwt.to_string() == text).then_some(jwt)
        })();
        decoded.unwrap_or_else(|| Self::Text(text.into()))
    }

    /// Header, payload and signature bytes of a decoded token.
    fn parts(bytes: &[u8], header_len: u32, payload_len: u32) -> Option<(&[u8], &[u8], &[u8])> {
        let (header, rest) = bytes.split_at_checked(usize::try_from(header_len).ok()?)?;
        let (payload, signature) = rest.split_at_checked(usize::try_from(payload_len).ok()?)?;
        Some((header, payload, signature))
    }

    /// The payload's bytes (the claims JSON).
    fn payload(&self) -> Option<std::borrow::Cow<'_, [u8]>> {
        match self {
            Self::Decoded {
                bytes,
                header_len,
                payload_len,
            } => Self::parts(bytes, *header_len, *payload_len)
                .map(|(_, payload, _)| std::borrow::Cow::Borrowed(payload)),
            Self::Text(t) => {
                let p = t.split('.').nth(1)?;
                URL_SAFE_NO_PAD.decode(p).ok().map(std::borrow::Cow::Owned)
            }
        }
    }
}

impl fmt::Display for CompactJwt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Decoded {
                bytes,
                header_len,
                payload_len,
            } => {
                let (header, payload, signature) =
                    Self::parts(bytes, *header_len, *payload_len).ok_or(fmt::Error)?;
                write!(
                    f,
                    "{}.{}.{}",
                    URL_SAFE_NO_PAD.encode(header),
                    URL_SAFE_NO_PAD.encode(payload),
                    URL_SAFE_NO_PAD.encode(signature)
                )
            }
            Self::Text(t) => f.write_str(t),
        }
    }
}

/// In the shared store a session's token is its text.
impl Serialize for CompactJwt {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CompactJwt {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Ok(Self::new(&text))
    }
}

/// A login in progress, keyed by its `state`.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct PendingLogin {
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
    /// What it weighs in the local store, in bytes.
    fn weight(&self) -> u32 {
        let bytes = PENDING_OVERHEAD
            + self.idp.len()
            + self.app.len()
            + self.return_to.len()
            + self.pkce_verifier.len()
            + self.nonce.len()
            + self.binding.len()
            + self.redirect_uri.len();
        u32::try_from(bytes).unwrap_or(u32::MAX)
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

/// What ended sessions on this replica, for the tunnels that watch them
/// (see [`crate::tunnels`]).
#[derive(Debug, Clone)]
pub(crate) enum Ended {
    /// This session (sign-out, a failed renewal, a new login).
    Session([u8; 32]),
    /// An IdP's back-channel logout: the session `sid`, or every session of
    /// `sub`.
    ByIdp {
        idp: Arc<str>,
        sid: Option<Arc<str>>,
        sub: Option<Arc<str>>,
    },
    /// A reload: policies may refuse users they admitted.
    Reload,
}

/// Where sessions and pending logins live; built once, kept across reloads.
pub(crate) struct SessionStore {
    max_lifetime: Duration,
    idle_timeout: Duration,
    /// How long past its identity's end a session may be served while it
    /// is renewed (`session.identityGrace`).
    pub(crate) identity_grace: Duration,
    events: tokio::sync::broadcast::Sender<Ended>,
    metrics: Arc<GatewayMetrics>,
    local: moka::future::Cache<SessionId, Arc<Session>>,
    pending_local: moka::future::Cache<String, Arc<PendingLogin>>,
    /// Logins started per client address in the current `pendingLoginTtl`.
    started_by_client: moka::sync::Cache<IpAddr, Arc<AtomicU32>>,
    /// Bytes of pending logins written to the shared store in this window.
    shared_pending_bytes: WindowBudget,
    shared: Option<SharedBackend>,
    /// Where back-channel logouts are kept (the cache backend, so every
    /// replica sees them).
    cache: Arc<dyn Cache>,
    /// Recent answers of "did the IdP end this session?", per session, so
    /// the backend is asked at most once per [`LOGOUT_CHECK_TTL`].
    logout_checked: moka::sync::Cache<[u8; 32], bool>,
}

/// How long "the IdP has not ended this session" is believed before the
/// cache backend is asked again: the longest a back-channel logout takes to
/// reach every replica.
const LOGOUT_CHECK_TTL: Duration = Duration::from_secs(2);
/// Session-ending events a slow tunnel may fall behind by before it
/// re-checks its session anyway.
const EVENT_QUEUE: usize = 1024;
/// How long a replica may hold a session's renewal before another may try:
/// longer than a renewal may take ([`crate::renewal`] bounds it), so the
/// claim never lapses while its holder still works.
pub(crate) const RENEWAL_LOCK_TTL: Duration = Duration::from_secs(90);
const RENEWAL_PREFIX: &str = "gw:renew:";
/// Marks a session removed, for as long as a renewal started before the
/// removal may still try to write it back.
const REMOVED_PREFIX: &str = "gw:removed:";
const LOGOUT_SID_PREFIX: &str = "gw:bcl:sid:";
const LOGOUT_SUB_PREFIX: &str = "gw:bcl:sub:";

/// A byte budget that starts afresh every `window`. Unauthenticated requests
/// write pending logins to the shared store, whose memory the cache's
/// security state needs too: this bounds what one replica adds per window.
struct WindowBudget {
    window: Duration,
    max: u64,
    /// Start of the current window and the bytes spent in it.
    state: std::sync::Mutex<(std::time::Instant, u64)>,
}

impl WindowBudget {
    fn new(window: Duration, max: u64) -> Self {
        Self {
            window,
            max,
            state: std::sync::Mutex::new((std::time::Instant::now(), 0)),
        }
    }

    /// Spends `bytes` if the window has them left (one locked step).
    fn spend(&self, bytes: u64) -> bool {
        // Poisoned only by a panic while holding it; the numbers stay sound.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        if now.duration_since(state.0) >= self.window {
            *state = (now, 0);
        }
        if state.1.saturating_add(bytes) > self.max {
            return false;
        }
        state.1 += bytes;
        true
    }
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
        gw: &AppGatewayConfig,
        cache: Arc<dyn Cache>,
        metrics: Arc<GatewayMetrics>,
    ) -> Self {
        let cfg = &gw.session;
        let pending_ttl = gw.pending_login_ttl;
        let gauge = metrics.active_sessions.clone();
        let ended = metrics.sessions_ended.clone();
        // The max lifetime is checked on every read (`remaining`), so moka
        // keeps one expiry order per entry (idle), not two.
        let local = moka::future::Cache::builder()
            .max_capacity(cfg.max_entries)
            .time_to_idle(cfg.idle_timeout)
            .eviction_listener(move |_k, _v, cause| {
                use moka::notification::RemovalCause;
                if cause != RemovalCause::Replaced {
                    gauge.dec();
                }
                // Explicit removals are counted by `remove`, with their reason.
                match cause {
                    RemovalCause::Expired => ended.with_label_values(&["expiry"]).inc(),
                    RemovalCause::Size => ended.with_label_values(&["eviction"]).inc(),
                    _ => {}
                }
            })
            .build();
        let pending_local = moka::future::Cache::builder()
            .max_capacity(gw.max_pending_login_bytes)
            .weigher(|k: &String, v: &Arc<PendingLogin>| {
                v.weight()
                    .saturating_add(u32::try_from(k.len()).unwrap_or(u32::MAX))
            })
            .time_to_live(pending_ttl)
            .build();
        let started_by_client = moka::sync::Cache::builder()
            .max_capacity(MAX_COUNTED_CLIENTS)
            .time_to_live(pending_ttl)
            .build();
        let shared = (cfg.store == StoreKind::Shared).then(|| SharedBackend {
            cache: cache.clone(),
            near: moka::future::Cache::builder()
                .max_capacity(cfg.max_entries.min(100_000))
                .time_to_live(NEAR_CACHE_TTL.min(cfg.idle_timeout))
                .build(),
        });
        Self {
            max_lifetime: cfg.max_lifetime,
            idle_timeout: cfg.idle_timeout,
            identity_grace: cfg.identity_grace,
            events: tokio::sync::broadcast::channel(EVENT_QUEUE).0,
            metrics,
            local,
            pending_local,
            started_by_client,
            shared_pending_bytes: WindowBudget::new(pending_ttl, gw.max_pending_login_bytes),
            shared,
            cache,
            logout_checked: moka::sync::Cache::builder()
                .max_capacity(cfg.max_entries.min(1_000_000))
                .time_to_live(LOGOUT_CHECK_TTL)
                .build(),
        }
    }

    /// Counts a login started by `client`; `false` once it has started
    /// `limit` in the current window (0: no limit). The count is one atomic
    /// step, so parallel requests cannot all slip under the limit.
    pub(crate) fn admit_login(&self, client: IpAddr, limit: u32) -> bool {
        if limit == 0 {
            return true;
        }
        let counter = self
            .started_by_client
            .get_with(client_network(client), || Arc::new(AtomicU32::new(0)));
        counter.fetch_add(1, Ordering::Relaxed) < limit
    }

    fn remaining(&self, session: &Session) -> Option<Duration> {
        let age = now_secs().saturating_sub(session.created);
        self.max_lifetime
            .checked_sub(Duration::from_secs(age))
            .filter(|d| !d.is_zero())
    }

    /// The session named by `id`, if it exists, is neither expired nor
    /// idle, and its IdP has not ended it (back-channel logout).
    pub(crate) async fn get(&self, id: &SessionId) -> Result<Option<Arc<Session>>, GatewayError> {
        let Some(session) = self.lookup(id).await? else {
            return Ok(None);
        };
        if self.ended_by_idp(id, &session).await? {
            self.remove(id, "backchannel").await?;
            return Ok(None);
        }
        Ok(Some(session))
    }

    /// Records a back-channel logout from `idp`: the session `sid`, or (no
    /// `sid`) every session of `sub` created until now, ends on every
    /// replica within [`LOGOUT_CHECK_TTL`].
    pub(crate) async fn end_by_idp(
        &self,
        idp: &str,
        sid: Option<&str>,
        sub: Option<&str>,
    ) -> Result<(), GatewayError> {
        let now = now_millis().to_string();
        let (prefix, value) = match (sid, sub) {
            (Some(sid), _) => (LOGOUT_SID_PREFIX, sid),
            (None, Some(sub)) => (LOGOUT_SUB_PREFIX, sub),
            (None, None) => return Ok(()),
        };
        self.cache
            .set(
                &logout_key(prefix, idp, value),
                now.as_bytes(),
                self.max_lifetime,
            )
            .await
            .map_err(cache_err)?;
        // This replica believes it at once.
        self.logout_checked.invalidate_all();
        let _ = self.events.send(Ended::ByIdp {
            idp: idp.into(),
            sid: sid.map(Arc::from),
            sub: if sid.is_none() {
                sub.map(Arc::from)
            } else {
                None
            },
        });
        Ok(())
    }

    /// Session-ending events on this replica, from now on.
    pub(crate) fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Ended> {
        self.events.subscribe()
    }

    /// Tells the tunnels that the config changed.
    pub(crate) fn reloaded(&self) {
        let _ = self.events.send(Ended::Reload);
    }

    /// Claims the renewal of session `id` for this replica (a refresh token
    /// works once: two replicas spending it at once would end the grant).
    /// Always true for local sessions, which live on one replica.
    pub(crate) async fn lock_renewal(&self, id: &SessionId) -> Result<bool, GatewayError> {
        if self.shared.is_none() {
            return Ok(true);
        }
        self.claim_once(&id.storage_key(RENEWAL_PREFIX), RENEWAL_LOCK_TTL)
            .await
    }

    /// Gives the renewal claim back.
    pub(crate) async fn unlock_renewal(&self, id: &SessionId) -> Result<(), GatewayError> {
        if self.shared.is_none() {
            return Ok(());
        }
        self.release(&id.storage_key(RENEWAL_PREFIX)).await
    }

    /// The session as stored now, past the near-cache (what another
    /// replica may just have renewed).
    pub(crate) async fn reread(
        &self,
        id: &SessionId,
    ) -> Result<Option<Arc<Session>>, GatewayError> {
        if let Some(shared) = &self.shared {
            shared.near.invalidate(id).await;
        }
        self.lookup(id).await
    }

    /// Replaces session `id` by its renewal `next`, keeping its lifetime,
    /// unless it was removed meanwhile (a sign-out during the renewal must
    /// not be undone): `None` then.
    pub(crate) async fn replace(
        &self,
        id: &SessionId,
        next: Session,
    ) -> Result<Option<Arc<Session>>, GatewayError> {
        let next = Arc::new(next);
        let Some(shared) = &self.shared else {
            // One atomic step per key: only a session still there is replaced.
            let replaced = self
                .local
                .entry(*id)
                .and_compute_with(|current| {
                    let op = match current {
                        Some(_) => moka::ops::compute::Op::Put(next.clone()),
                        None => moka::ops::compute::Op::Nop,
                    };
                    std::future::ready(op)
                })
                .await;
            return Ok(
                matches!(replaced, moka::ops::compute::CompResult::ReplacedWith(_)).then_some(next),
            );
        };
        let Some(remaining) = self.remaining(&next) else {
            return Ok(None);
        };
        let key = id.storage_key(SESSION_PREFIX);
        let removed = id.storage_key(REMOVED_PREFIX);
        if self.cache.get(&removed).await.map_err(cache_err)?.is_some() {
            return Ok(None);
        }
        shared
            .cache
            .set_typed(&key, &*next, self.idle_timeout.min(remaining))
            .await
            .map_err(cache_err)?;
        // `remove` marks before it deletes: a removal that raced this write
        // is seen now, and wins.
        if self.cache.get(&removed).await.map_err(cache_err)?.is_some() {
            shared.cache.delete(&key).await.map_err(cache_err)?;
            return Ok(None);
        }
        shared.near.insert(*id, next.clone()).await;
        Ok(Some(next))
    }

    /// Gives back a claim that could not be acted on (see [`claim_once`](Self::claim_once)).
    pub(crate) async fn release(&self, key: &str) -> Result<(), GatewayError> {
        self.cache.delete(key).await.map(|_| ()).map_err(cache_err)
    }

    /// True the first time `key` is claimed within `ttl` (a logout token's
    /// `jti`), on every replica.
    pub(crate) async fn claim_once(&self, key: &str, ttl: Duration) -> Result<bool, GatewayError> {
        self.cache
            .set_if_absent(key, b"1", ttl)
            .await
            .map_err(cache_err)
    }

    async fn ended_by_idp(&self, id: &SessionId, session: &Session) -> Result<bool, GatewayError> {
        if let Some(known) = self.logout_checked.get(&id.bytes()) {
            return Ok(known);
        }
        // Sessions written before `sid`/`sub` were kept: from the ID token.
        let (sid, sub): (Option<Box<str>>, Box<str>) =
            if session.sid.is_none() && session.sub.is_empty() {
                let claims = session.claims().unwrap_or_default();
                let text = |c: &str| claims.get(c).and_then(Value::as_str).map(Box::from);
                (text("sid"), text("sub").unwrap_or_default())
            } else {
                (session.sid.clone(), session.sub.clone())
            };
        let mut ended = false;
        if let Some(sid) = &sid {
            ended = self
                .cache
                .get(&logout_key(LOGOUT_SID_PREFIX, &session.idp, sid))
                .await
                .map_err(cache_err)?
                .is_some();
        }
        if !ended && !sub.is_empty() {
            // A logout by subject ends the sessions created before it.
            ended = self
                .cache
                .get(&logout_key(LOGOUT_SUB_PREFIX, &session.idp, &sub))
                .await
                .map_err(cache_err)?
                .and_then(|at| std::str::from_utf8(&at).ok()?.parse::<u64>().ok())
                .is_some_and(|at| {
                    // Markers of earlier versions hold seconds.
                    let at_ms = if at < 100_000_000_000 {
                        at.saturating_mul(1000)
                    } else {
                        at
                    };
                    let created_ms = match session.created_ms {
                        0 => session.created.saturating_mul(1000),
                        ms => ms,
                    };
                    created_ms <= at_ms
                });
        }
        self.logout_checked.insert(id.bytes(), ended);
        Ok(ended)
    }

    async fn lookup(&self, id: &SessionId) -> Result<Option<Arc<Session>>, GatewayError> {
        let Some(shared) = &self.shared else {
            let Some(found) = self.local.get(id).await else {
                return Ok(None);
            };
            if self.remaining(&found).is_none() {
                self.local.invalidate(id).await;
                self.metrics
                    .sessions_ended
                    .with_label_values(&["expiry"])
                    .inc();
                return Ok(None);
            }
            return Ok(Some(found));
        };
        if let Some(s) = shared.near.get(id).await {
            if self.remaining(&s).is_some() {
                return Ok(Some(s));
            }
        }
        let key = id.storage_key(SESSION_PREFIX);
        let Some(session) = shared
            .cache
            .get_typed::<Session>(&key)
            .await
            .map_err(cache_err)?
        else {
            return Ok(None);
        };
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
        shared.near.insert(*id, session.clone()).await;
        Ok(Some(session))
    }

    /// Stores a new session under a fresh id, with the login's refresh
    /// token sealed for that id, and returns the id.
    pub(crate) async fn create(
        &self,
        mut session: Session,
        refresh_token: Option<&str>,
        metrics: &GatewayMetrics,
    ) -> Result<SessionId, GatewayError> {
        let id = SessionId::random();
        session.refresh = refresh_token.map(|t| seal_refresh(&id, t));
        metrics
            .sessions_created
            .with_label_values(&[&session.idp])
            .inc();
        let session = Arc::new(session);
        match &self.shared {
            None => {
                self.local.insert(id, session).await;
                metrics.active_sessions.inc();
            }
            Some(shared) => {
                let ttl = self.idle_timeout.min(self.max_lifetime);
                shared
                    .cache
                    .set_typed(&id.storage_key(SESSION_PREFIX), &*session, ttl)
                    .await
                    .map_err(cache_err)?;
                shared.near.insert(id, session).await;
            }
        }
        Ok(id)
    }

    /// Ends a session for `reason` (a label of
    /// `orchestrator_gateway_sessions_ended_total`), then tells the tunnels.
    pub(crate) async fn remove(&self, id: &SessionId, reason: &str) -> Result<(), GatewayError> {
        match &self.shared {
            None => {
                self.local.invalidate(id).await;
            }
            Some(shared) => {
                // Marked first, so a renewal in flight cannot write it back
                // (see `replace`); the store before the near-cache, so no
                // lookup in between puts it back there.
                shared
                    .cache
                    .set(&id.storage_key(REMOVED_PREFIX), b"1", RENEWAL_LOCK_TTL)
                    .await
                    .map_err(cache_err)?;
                shared
                    .cache
                    .delete(&id.storage_key(SESSION_PREFIX))
                    .await
                    .map_err(cache_err)?;
                shared.near.invalidate(id).await;
            }
        }
        let _ = self.events.send(Ended::Session(id.bytes()));
        self.metrics
            .sessions_ended
            .with_label_values(&[reason])
            .inc();
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
                let bytes = orchestrator_cache::encode(&login).map_err(cache_err)?;
                let weight = u64::try_from(bytes.len() + state.len()).unwrap_or(u64::MAX);
                if !self.shared_pending_bytes.spend(weight) {
                    return Err(GatewayError::TooManyLogins);
                }
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
            Some(shared) => shared
                .cache
                .take_typed::<PendingLogin>(&storage_key(PENDING_PREFIX, state))
                .await
                .map_err(cache_err),
        }
    }
}

/// What counts as one client for the per-client login limit: the IPv4
/// address, or the IPv6 /64 (one subscriber's prefix: rotating addresses
/// inside it must not buy more logins).
fn client_network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !u128::from(u64::MAX);
                IpAddr::V6(std::net::Ipv6Addr::from(bits))
            }
        },
        v4 => v4,
    }
}

fn cache_err(e: orchestrator_cache::CacheError) -> GatewayError {
    GatewayError::Cache(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_count_per_64_and_budgets_refill_per_window() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_network(a), client_network(b));
        assert_ne!(client_network(a), client_network(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(
            client_network(mapped),
            "192.0.2.7".parse::<IpAddr>().unwrap()
        );
        let budget = WindowBudget::new(Duration::from_secs(3600), 100);
        assert!(budget.spend(60));
        assert!(!budget.spend(60), "over the window's bytes");
        assert!(budget.spend(40));
        let zero = WindowBudget::new(Duration::ZERO, 100);
        assert!(
            zero.spend(100) && zero.spend(100),
            "a new window every time"
        );
    }

    #[test]
    fn session_ids_are_random_256_bit_tokens() {
        let a = SessionId::random();
        let b = SessionId::random();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 43);
        assert_eq!(SessionId::parse(&a.expose()), Some(a));
        assert!(SessionId::parse("short").is_none());
        assert!(SessionId::parse(&format!("{}=", &a.expose()[..42])).is_none());
        assert!(SessionId::parse(&"+".repeat(43)).is_none());
        assert_eq!(format!("{a:?}"), "SessionId([redacted])");
    }

    fn jwt(payload: &serde_json::Value) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","kid":"k"}"#),
            URL_SAFE_NO_PAD.encode(payload.to_string()),
            URL_SAFE_NO_PAD.encode([7u8; 64])
        )
    }

    #[test]
    fn sessions_of_layout_3_still_read_and_others_do_not() {
        let token = jwt(&serde_json::json!({"sub": "alice"}));
        let session = Session::new("idp".into(), "app.example", &token, &Map::new());
        let mut old = serde_json::to_value(&session).unwrap();
        old["v"] = 3.into();
        let bytes = serde_json::to_vec(&old).unwrap();
        let read = Session::from_legacy(&bytes).expect("a layout-3 session");
        assert_eq!(read.id_token(), token);
        old["v"] = 2.into();
        assert!(Session::from_legacy(&serde_json::to_vec(&old).unwrap()).is_none());
    }

    #[test]
    fn a_session_keeps_its_id_token_byte_for_byte_and_reads_claims_from_it() {
        let token = jwt(&serde_json::json!({
            "sub": "alice", "email": "a@example.com", "groups": ["eng", "ops"],
            "nonce": "n", "at_hash": "h", "exp": 2, "iat": 1, "nbf": 1,
        }));
        let extra = serde_json::json!({"sub": "ignored", "department": "R&D"});
        let session = Session::new(
            "idp".into(),
            "app.example",
            &token,
            extra.as_object().unwrap(),
        );
        assert!(matches!(session.id_token, CompactJwt::Decoded { .. }));
        assert_eq!(session.id_token(), token);
        let claims = session.claims().unwrap();
        assert_eq!(claims["sub"], "alice", "the ID token wins over userinfo");
        assert_eq!(
            claims["department"], "R&D",
            "userinfo fills what the token lacks"
        );
        assert_eq!(claims["groups"], serde_json::json!(["eng", "ops"]));
        for k in TOKEN_ONLY_CLAIMS {
            assert!(!claims.contains_key(*k), "{k} is dropped");
        }
        // Through the shared store's serialisation and back.
        let stored = serde_json::to_vec(&session).unwrap();
        let back: Session = serde_json::from_slice(&stored).unwrap();
        assert_eq!(back.id_token(), token);
        assert_eq!(back.claims(), Some(claims));
    }

    #[test]
    fn a_token_that_would_not_round_trip_is_kept_as_text() {
        // "Ag" and "Ah" decode to the same byte only if trailing bits were
        // allowed; the engine refuses them, so this token stays text.
        let token = format!("{}.Ah.sig", URL_SAFE_NO_PAD.encode(b"{}"));
        let session = Session::new("idp".into(), "app.example", &token, &Map::new());
        assert!(matches!(session.id_token, CompactJwt::Text(_)));
        assert_eq!(session.id_token(), token);
        assert_eq!(session.claims(), None, "unreadable claims are no claims");
    }
}
