//! What a session means to one app: whether the app's policy lets the user
//! in, and the identity headers (assertion included) the upstream gets.
//! Computed from the session's claims on its first request to the app, then
//! reused by every request after it until the assertion is past half its
//! lifetime, from a cache bounded in bytes: sessions themselves stay small
//! (they keep only the ID token), and only recently active ones cost more.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use quick_cache::Weighter;
use serde_json::{Map, Value};

use crate::expiring::Expiring;
use crate::headers::identity_values;
use crate::session::{Session, SessionId};
use crate::{App, Runtime};

/// Most memory held by computed identities (each entry weighed).
const MAX_BYTES: u64 = 16 * 1024 * 1024;

/// How long an identity without an assertion is reused (policy and headers
/// depend only on the session's fixed claims and on the config generation,
/// which is part of the key; this only bounds idle entries).
const MAX_AGE: Duration = Duration::from_secs(300);

/// Bytes per entry beyond its header values: the cache's slot (key,
/// deadline, links, its hash-table slot: ~100), the `Identity` in its `Arc`
/// (~112), the `Vec`'s allocation and the allocator's rounding.
const ENTRY_OVERHEAD: usize = 256;

/// How often identities past their lifetime are removed unread.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// What an entry typically weighs (four headers and an assertion), to size
/// the cache's bookkeeping.
const TYPICAL_WEIGHT: u64 = 1024;

/// A fresh number per config generation: identities of an older config are
/// never read again (and age out).
pub(crate) fn next_generation() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// One session's identity for one app under one config.
#[derive(Debug)]
pub(crate) struct Identity {
    /// The app's policy lets this user in.
    pub(crate) allowed: bool,
    /// The `sub` claim.
    pub(crate) subject: Arc<str>,
    /// For a user the policy refuses: who the 403 page says is signed in
    /// (email, else preferred user name, else name, else `sub`).
    pub(crate) denied_as: Option<Arc<str>>,
    /// Headers to set on the upstream request (identity headers, assertion).
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    /// How long this may be reused.
    lifetime: Duration,
}

impl Identity {
    /// What `claims` mean to `app`: the policy's decision, the headers, the
    /// assertion (bearer tokens are judged with this too, uncached).
    pub(crate) fn for_claims(rt: &Runtime, app: &App, claims: &Map<String, Value>) -> Self {
        let allowed = app.policy.allows(claims);
        let subject: Arc<str> = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or("")
            .into();
        let mut headers = Vec::new();
        let mut lifetime = MAX_AGE;
        if allowed {
            headers.extend(identity_values(&app.headers, claims));
            if let (Some(name), Some(signer)) = (&app.assertion_header, &rt.signer) {
                if let Some(v) = signer
                    .sign(&app.name, claims)
                    .and_then(|jwt| HeaderValue::from_str(&jwt).ok())
                {
                    headers.push((name.clone(), v));
                    // The upstream always gets at least half the assertion's lifetime.
                    lifetime = lifetime.min((signer.ttl() / 2).max(Duration::from_secs(1)));
                }
            }
        }
        // An address nobody verified is not shown as who is signed in.
        let email_verified = claims.get("email_verified").and_then(Value::as_bool) != Some(false);
        let denied_as = (!allowed).then(|| {
            ["email", "preferred_username", "name"]
                .iter()
                .filter(|c| **c != "email" || email_verified)
                .find_map(|c| claims.get(*c).and_then(Value::as_str))
                .map_or_else(|| subject.clone(), Arc::from)
        });
        Self {
            allowed,
            subject,
            denied_as,
            headers,
            lifetime,
        }
    }

    fn weight(&self) -> u32 {
        let bytes = ENTRY_OVERHEAD
            + self.subject.len()
            + self.denied_as.as_ref().map_or(0, |d| d.len())
            + self
                .headers
                .iter()
                // Each value is an allocation of its own, plus its slot in the `Vec`.
                .map(|(n, v)| n.as_str().len() + v.len() + 64)
                .sum::<usize>();
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    session: [u8; 32],
    generation: u64,
    app: u32,
    /// The session's renewal count: a renewal may bring other claims.
    renewals: u32,
}

/// Weighs an identity by the bytes it holds.
#[derive(Clone)]
struct ByBytes;

impl Weighter<Key, Arc<Identity>> for ByBytes {
    fn weight(&self, _key: &Key, value: &Arc<Identity>) -> u64 {
        u64::from(value.weight())
    }
}

/// The bounded cache of computed identities; built once, kept across reloads.
pub(crate) struct IdentityCache {
    cache: Expiring<Key, Arc<Identity>, ByBytes>,
}

impl std::fmt::Debug for IdentityCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityCache")
            .field("entries", &self.cache.len())
            .finish()
    }
}

impl IdentityCache {
    pub(crate) fn new() -> Self {
        Self {
            cache: Expiring::new(MAX_BYTES, MAX_BYTES / TYPICAL_WEIGHT, ByBytes)
                .swept_every(SWEEP_EVERY),
        }
    }

    /// The identity of session `id` for `app`; `None` when the session's
    /// claims cannot be read (the caller treats it as no session).
    pub(crate) fn get(
        &self,
        rt: &Runtime,
        app: &App,
        id: &SessionId,
        session: &Session,
    ) -> Option<Arc<Identity>> {
        let key = Key {
            session: id.bytes(),
            generation: rt.generation,
            app: app.index,
            renewals: session.renewals,
        };
        if let Some(hit) = self.cache.get(&key) {
            return Some(hit);
        }
        let identity = Arc::new(Identity::for_claims(rt, app, &session.claims()?));
        self.cache.insert(key, identity.clone(), identity.lifetime);
        Some(identity)
    }
}
