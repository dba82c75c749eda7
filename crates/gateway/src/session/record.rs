//! What a session and a login in progress hold, and how they are stored:
//! the verified ID token kept compactly, the claims read from it, the
//! sealed refresh token, and the record layout of the shared store.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use orchestrator_cache::Versioned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::id::{SessionId, now_millis, now_secs, open_refresh, seal_refresh};
use super::interned;
use super::local::LastUsed;

/// Bytes a pending login costs beyond its strings (moka's node, key, `Arc`).
const PENDING_OVERHEAD: usize = 256;

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

/// ID token claims that describe the token, not the user (OIDC Core §2,
/// §3.1.3.6): not part of a session's claims.
const TOKEN_ONLY_CLAIMS: &[&str] = &["nonce", "at_hash", "c_hash", "exp", "iat", "nbf"];

/// A logged-in user, never in the cookie. The verified ID token is kept once,
/// compactly: it is the `id_token_hint` at logout and its payload is the
/// claims, read when a request first needs them (see [`crate::identity`]),
/// and the `sid` and `sub` a back-channel logout names ([`Session::logout_ids`]).
#[derive(Clone, Serialize, Deserialize)]
#[serde(into = "Stored", from = "Stored")]
pub(crate) struct Session {
    /// Name of the identity provider that logged the user in.
    pub(crate) idp: Arc<str>,
    /// The host (lower-case, no port) the session was created on: its cookie
    /// is host-only, so on any other host the id is a stolen or planted one.
    /// Shared with the other sessions of the host ([`interned`]).
    pub(crate) host: Arc<str>,
    /// The ID token the login verified.
    id_token: CompactJwt,
    /// Userinfo claims the ID token lacks (a JSON object), if any.
    extra: Option<Box<str>>,
    /// Creation time, milliseconds since the epoch (a logout by subject ends
    /// the sessions created before it, a login in the same second after it
    /// survives).
    pub(crate) created_ms: u64,
    /// The IdP's session id when the ID token no longer has it (a renewal's
    /// token without `sid`: the login's still names the session).
    kept_sid: Option<Box<str>>,
    /// The refresh token, sealed with a key derived from the session id
    /// (see [`seal_refresh`]): a dump of the shared store cannot use it.
    pub(super) refresh: Option<Box<str>>,
    /// Until when the identity holds (the ID token's `exp`, or the renewed
    /// access token's), seconds since the epoch; then it is renewed or,
    /// `identityGrace` later, the session ends. 0: no limit (sessions
    /// written before it was kept).
    pub(crate) valid_until: u64,
    /// Renewals so far: each one may change the claims, so computed
    /// identities are kept per renewal.
    pub(crate) renewals: u32,
    /// When the local store last served it (its idle timeout).
    pub(super) last_used: LastUsed,
}

/// A session as the shared store holds it (layout [`FORMAT_VERSION`]):
/// `sid` and `sub` written out beside the token, for the replicas of
/// releases that read them from there.
#[derive(Clone, Serialize, Deserialize)]
struct Stored {
    idp: Arc<str>,
    host: Arc<str>,
    id_token: CompactJwt,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    extra: Option<Box<str>>,
    /// Seconds since the epoch.
    created: u64,
    /// Milliseconds since the epoch; 0 in sessions written before it was kept.
    #[serde(default)]
    created_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sid: Option<Box<str>>,
    #[serde(default)]
    sub: Box<str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh: Option<Box<str>>,
    #[serde(default)]
    valid_until: u64,
    #[serde(default)]
    renewals: u32,
}

impl From<Session> for Stored {
    fn from(s: Session) -> Self {
        let (sid, sub) = s.logout_ids();
        let created = s.created_secs();
        Self {
            idp: s.idp,
            host: s.host,
            id_token: s.id_token,
            extra: s.extra,
            created,
            created_ms: s.created_ms,
            sid,
            sub,
            refresh: s.refresh,
            valid_until: s.valid_until,
            renewals: s.renewals,
        }
    }
}

impl From<Stored> for Session {
    fn from(s: Stored) -> Self {
        let mut session = Self {
            idp: s.idp,
            host: interned::host(&s.host),
            id_token: s.id_token,
            extra: s.extra,
            created_ms: match s.created_ms {
                0 => s.created.saturating_mul(1000),
                ms => ms,
            },
            kept_sid: None,
            refresh: s.refresh,
            valid_until: s.valid_until,
            renewals: s.renewals,
            last_used: LastUsed::now(),
        };
        if session.token_ids().0.is_none() {
            session.kept_sid = s.sid;
        }
        session
    }
}

/// The claims of an ID token's payload a back-channel logout names (of
/// any JSON type: one that is not a string is not there).
#[derive(Deserialize)]
struct LogoutIds {
    #[serde(default)]
    sid: Option<Value>,
    #[serde(default)]
    sub: Option<Value>,
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
        let extra = encode_extra(extra);
        let id_token = CompactJwt::new(id_token);
        #[derive(Deserialize)]
        struct Expiry {
            #[serde(default)]
            exp: Option<Value>,
        }
        let valid_until = id_token
            .payload()
            .and_then(|p| serde_json::from_slice::<Expiry>(&p).ok())
            .and_then(|e| e.exp?.as_u64())
            .unwrap_or(0);
        Self {
            idp,
            host: interned::host(host),
            valid_until,
            id_token,
            extra,
            created_ms: now_millis(),
            kept_sid: None,
            refresh: None,
            renewals: 0,
            last_used: LastUsed::now(),
        }
    }

    /// Creation time, seconds since the epoch.
    pub(crate) fn created_secs(&self) -> u64 {
        self.created_ms / 1000
    }

    /// How long it may live on at `now_secs` (seconds since the epoch)
    /// under `max_lifetime`; `None` once that is over. The one rule of both
    /// stores.
    pub(super) fn lifetime_left(&self, max_lifetime: Duration, now_secs: u64) -> Option<Duration> {
        let age = now_secs.saturating_sub(self.created_secs());
        max_lifetime
            .checked_sub(Duration::from_secs(age))
            .filter(|d| !d.is_zero())
    }

    /// The IdP's session id (`sid`) and the user's `sub`: what an IdP's
    /// back-channel logout names (`sub` empty when the token has none).
    pub(crate) fn logout_ids(&self) -> (Option<Box<str>>, Box<str>) {
        let (sid, sub) = self.token_ids();
        (
            sid.or_else(|| self.kept_sid.clone()),
            sub.unwrap_or_default(),
        )
    }

    /// `sid` and `sub` of the ID token.
    fn token_ids(&self) -> (Option<Box<str>>, Option<Box<str>>) {
        let Some(payload) = self.id_token.payload() else {
            return (None, None);
        };
        let Ok(ids) = serde_json::from_slice::<LogoutIds>(&payload) else {
            return (None, None);
        };
        let text = |v: Option<Value>| v.as_ref().and_then(Value::as_str).map(Box::from);
        (text(ids.sid), text(ids.sub))
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
                fresh.created_ms = self.created_ms;
                if fresh.token_ids().0.is_none() {
                    fresh.kept_sid = self.logout_ids().0;
                }
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
            next.extra = encode_extra(extra);
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
            .field("created_ms", &self.created_ms)
            .finish_non_exhaustive()
    }
}

/// Userinfo claims as kept in a session: their JSON, or nothing when none.
fn encode_extra(extra: &Map<String, Value>) -> Option<Box<str>> {
    (!extra.is_empty())
        .then(|| serde_json::to_string(extra).ok())
        .flatten()
        .map(String::into_boxed_str)
}

/// A compact JWS (`header.payload.signature`) held as its decoded bytes: a
/// quarter smaller than the base64url text, and the payload needs no decoding
/// to read. The header, the same in every token an IdP key signs, is shared
/// ([`interned`]). A token whose text would not come back byte for byte from
/// its bytes (non-canonical base64url) is kept as text.
#[derive(Clone)]
enum CompactJwt {
    Decoded {
        header: Arc<[u8]>,
        /// Payload and signature bytes, one after the other.
        rest: Box<[u8]>,
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
            let header = URL_SAFE_NO_PAD.decode(h).ok()?;
            let mut rest = URL_SAFE_NO_PAD.decode(p).ok()?;
            let payload_len = u32::try_from(rest.len()).ok()?;
            URL_SAFE_NO_PAD.decode_vec(s, &mut rest).ok()?;
            let jwt = Self::Decoded {
                header: interned::header(&header),
                rest: rest.into_boxed_slice(),
                payload_len,
            };
            (jwt.to_string() == text).then_some(jwt)
        })();
        decoded.unwrap_or_else(|| Self::Text(text.into()))
    }

    /// Payload and signature bytes of a decoded token.
    fn split(rest: &[u8], payload_len: u32) -> Option<(&[u8], &[u8])> {
        rest.split_at_checked(usize::try_from(payload_len).ok()?)
    }

    /// The payload's bytes (the claims JSON).
    fn payload(&self) -> Option<std::borrow::Cow<'_, [u8]>> {
        match self {
            Self::Decoded {
                rest, payload_len, ..
            } => Self::split(rest, *payload_len)
                .map(|(payload, _)| std::borrow::Cow::Borrowed(payload)),
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
                header,
                rest,
                payload_len,
            } => {
                let (payload, signature) = Self::split(rest, *payload_len).ok_or(fmt::Error)?;
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
    pub(super) fn weight(&self) -> u32 {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &serde_json::Value) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","kid":"k"}"#),
            URL_SAFE_NO_PAD.encode(payload.to_string()),
            URL_SAFE_NO_PAD.encode([7u8; 64])
        )
    }

    #[test]
    fn logout_ids_come_from_the_token_and_a_renewal_without_sid_keeps_the_logins() {
        let login = jwt(&serde_json::json!({"sub": "alice", "sid": "s-1", "exp": 10}));
        let session = Session::new("idp".into(), "app.example", &login, &Map::new());
        assert_eq!(session.logout_ids(), (Some("s-1".into()), "alice".into()));
        assert_eq!(session.valid_until, 10);
        let id = SessionId::random();
        let renewed = session.renewed(
            &id,
            &orchestrator_rp::Refreshed {
                id_token: Some(jwt(&serde_json::json!({"sub": "alice", "exp": 20}))),
                extra: None,
                refresh_token: None,
                expires_in: None,
            },
        );
        assert_eq!(renewed.valid_until, 20);
        assert_eq!(
            renewed.logout_ids(),
            (Some("s-1".into()), "alice".into()),
            "the login's sid still names the session"
        );
        // The shared store writes both out (older replicas read them there)
        // and reads the kept sid back.
        let stored = serde_json::to_value(&renewed).unwrap();
        assert_eq!(stored["sid"], "s-1");
        assert_eq!(stored["sub"], "alice");
        let back: Session = serde_json::from_value(stored).unwrap();
        assert_eq!(back.logout_ids(), (Some("s-1".into()), "alice".into()));
        // A token with escapes in its claims, and one without them.
        let escaped = jwt(&serde_json::json!({"sub": "a\"b\u{e9}"}));
        let session = Session::new("idp".into(), "app.example", &escaped, &Map::new());
        assert_eq!(session.logout_ids(), (None, "a\"b\u{e9}".into()));
        let odd = jwt(&serde_json::json!({"sub": "alice", "sid": 123}));
        let session = Session::new("idp".into(), "app.example", &odd, &Map::new());
        assert_eq!(
            session.logout_ids(),
            (None, "alice".into()),
            "a sid that is not a string is not one; the sub still counts"
        );
        let bare = jwt(&serde_json::json!({}));
        let session = Session::new("idp".into(), "app.example", &bare, &Map::new());
        assert_eq!(session.logout_ids(), (None, Box::<str>::from("")));
    }

    #[test]
    fn sessions_share_their_tokens_header_and_host_and_keep_their_creation_time() {
        let a = Session::new(
            "idp".into(),
            "app.example",
            &jwt(&serde_json::json!({"sub": "a"})),
            &Map::new(),
        );
        let b = Session::new(
            "idp".into(),
            "app.example",
            &jwt(&serde_json::json!({"sub": "b"})),
            &Map::new(),
        );
        let header = |s: &Session| match &s.id_token {
            CompactJwt::Decoded { header, .. } => header.clone(),
            CompactJwt::Text(_) => unreachable!("canonical tokens are decoded"),
        };
        assert!(Arc::ptr_eq(&header(&a), &header(&b)));
        assert!(Arc::ptr_eq(&a.host, &b.host));
        // Read back from the store, and from a record without milliseconds.
        let mut stored = serde_json::to_value(&a).unwrap();
        assert_eq!(stored["created"], a.created_secs());
        let back: Session = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(back.created_ms, a.created_ms);
        assert!(Arc::ptr_eq(&back.host, &a.host));
        stored["created_ms"] = 0.into();
        stored["created"] = 1234.into();
        let old: Session = serde_json::from_value(stored).unwrap();
        assert_eq!((old.created_ms, old.created_secs()), (1_234_000, 1234));
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
