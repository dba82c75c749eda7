//! Sessions: the random id in the cookie, what it names, and where that lives.
//!
//! `store: local` keeps sessions in a bounded cache in this process ([`local`]).
//! `store: shared` keeps them in the [`orchestrator_cache::Cache`] backend
//! (keyed by a hash of the id, so a dump of Redis holds no usable cookie),
//! with a small local near-cache so most requests never leave the process.
//! Pending logins follow the same split, so a callback may land on any replica.

mod id;
mod interned;
mod local;
mod record;

pub use id::SessionId;
pub(crate) use id::now_secs;
pub(crate) use record::{PendingLogin, Session, binding_hash};

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use orchestrator_cache::{Cache, CacheExt as _};
use orchestrator_config::{AppGatewayConfig, SessionStore as StoreKind};
use quick_cache::UnitWeighter;

use crate::error::GatewayError;
use crate::expiring::Expiring;
use crate::metrics::GatewayMetrics;
use id::{logout_key, now_millis, seal_refresh, storage_key};

/// How long a shared session may be served from the near-cache before the
/// backend is asked again (bounds how late a logout on another replica is seen).
const NEAR_CACHE_TTL: Duration = Duration::from_secs(5);

/// Most client addresses whose started logins are counted at once.
const MAX_COUNTED_CLIENTS: u64 = 100_000;

struct SharedBackend {
    cache: Arc<dyn Cache>,
    near: Expiring<SessionId, Arc<Session>>,
    /// How long the near-cache serves a session.
    near_ttl: Duration,
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
    local: Arc<local::LocalSessions>,
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
    logout_checked: Expiring<[u8; 32], bool>,
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
        let local = Arc::new(local::LocalSessions::new(
            cfg.max_entries,
            cfg.idle_timeout,
            cfg.max_lifetime,
            &metrics,
        ));
        if cfg.store == StoreKind::Local {
            local.keep_swept();
        }
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
            near: {
                let max = cfg.max_entries.min(100_000);
                Expiring::new(max, max, UnitWeighter).swept_every(NEAR_CACHE_TTL)
            },
            near_ttl: NEAR_CACHE_TTL.min(cfg.idle_timeout),
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
            logout_checked: {
                // Swept: an entry per session read in the last seconds, not
                // one per session ever read.
                let max = cfg.max_entries.min(1_000_000);
                Expiring::new(max, max, UnitWeighter).swept_every(LOGOUT_CHECK_TTL)
            },
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
        session.lifetime_left(self.max_lifetime, now_secs())
    }

    /// The session named by `id`, if it exists, is neither expired nor
    /// idle, and its IdP has not ended it (back-channel logout).
    pub(crate) async fn get(&self, id: &SessionId) -> Result<Option<Arc<Session>>, GatewayError> {
        let Some(session) = self.lookup(id).await? else {
            return Ok(None);
        };
        if self.ended_by_idp(id, &session).await? {
            Box::pin(self.remove(id, "backchannel")).await?;
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
        self.logout_checked.clear();
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
            shared.near.remove(id);
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
            return Ok(self.local.replace(*id, next.clone()).then_some(next));
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
        shared.near.insert(*id, next.clone(), shared.near_ttl);
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
        let (sid, sub) = session.logout_ids();
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
                    session.created_ms <= at_ms
                });
        }
        self.logout_checked
            .insert(id.bytes(), ended, LOGOUT_CHECK_TTL);
        Ok(ended)
    }

    async fn lookup(&self, id: &SessionId) -> Result<Option<Arc<Session>>, GatewayError> {
        let Some(shared) = &self.shared else {
            // Idle and too old ones end there (counted as `expiry`).
            return Ok(self.local.get(id));
        };
        if let Some(s) = shared.near.get(id) {
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
        shared.near.insert(*id, session.clone(), shared.near_ttl);
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
                self.local.insert(id, session);
            }
            Some(shared) => {
                let ttl = self.idle_timeout.min(self.max_lifetime);
                shared
                    .cache
                    .set_typed(&id.storage_key(SESSION_PREFIX), &*session, ttl)
                    .await
                    .map_err(cache_err)?;
                shared.near.insert(id, session, shared.near_ttl);
            }
        }
        Ok(id)
    }

    /// Ends a session for `reason` (a label of
    /// `orchestrator_gateway_sessions_ended_total`), then tells the tunnels.
    pub(crate) async fn remove(&self, id: &SessionId, reason: &str) -> Result<(), GatewayError> {
        match &self.shared {
            None => self.local.remove(id),
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
                shared.near.remove(id);
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
}
