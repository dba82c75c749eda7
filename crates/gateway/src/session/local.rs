//! `store: local`: sessions in this process, in a bounded `quick_cache`
//! (CLOCK-PRO eviction past `maxEntries`). Its entries cost ~60 bytes
//! beside the session; moka's, with their access and expiry orders, cost
//! ~350, a third of a session's memory. What moka did on its own is done
//! here: a session idle longer than `idleTimeout` is gone when next read,
//! and a sweep removes the idle and the too-old ones nobody reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use prometheus::{IntCounter, IntGauge};
use quick_cache::sync::Cache;
use quick_cache::{Lifecycle, OptionsBuilder, UnitWeighter};

use super::id::{SessionId, now_millis};
use super::record::Session;
use crate::fast_hash::FastHash;
use crate::metrics::GatewayMetrics;

/// When a session was last read, whole seconds since the epoch: one atomic
/// field in the record, so a read shares the cache's read lock only. Four
/// bytes, so the record with its `Arc` stays in jemalloc's 160-byte class.
#[derive(Debug)]
pub(crate) struct LastUsed(AtomicU32);

impl LastUsed {
    /// Used now.
    pub(crate) fn now() -> Self {
        Self(AtomicU32::new(secs(now_millis())))
    }

    fn get(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }

    /// Marks it used at `now` (a write only when the second moved on, so
    /// parallel reads of one session do not all dirty its cache line).
    fn touch(&self, now: u32) {
        if self.get() < now {
            self.0.store(now, Ordering::Relaxed);
        }
    }
}

impl Clone for LastUsed {
    fn clone(&self) -> Self {
        Self(AtomicU32::new(self.get()))
    }
}

/// Whole seconds since the epoch of a time in milliseconds (until 2106).
fn secs(ms: u64) -> u32 {
    u32::try_from(ms / 1000).unwrap_or(u32::MAX)
}

/// Counts the sessions the cache evicts to stay within `maxEntries`.
#[derive(Clone)]
struct CountEvictions {
    active: IntGauge,
    evicted: IntCounter,
}

/// What one cache call is doing, for [`CountEvictions`].
#[derive(Default)]
struct Call {
    /// A replacement: the cache hands the value it replaced to the
    /// eviction hook too, and a same-weight replacement evicts nothing else.
    replacing: bool,
}

impl Lifecycle<SessionId, Arc<Session>> for CountEvictions {
    type RequestState = Call;

    fn on_evict(&self, call: &mut Call, _: SessionId, _: Arc<Session>) {
        if call.replacing {
            return;
        }
        self.active.dec();
        self.evicted.inc();
    }
}

/// The sessions of `store: local`.
pub(super) struct LocalSessions {
    cache: Cache<SessionId, Arc<Session>, UnitWeighter, FastHash, CountEvictions>,
    /// The idle timeout in whole seconds, rounded up: a session is never
    /// ended early, and ended on a read at most two seconds late (whole seconds
    /// on both sides of the comparison).
    idle_secs: u64,
    max_lifetime_ms: u64,
    active: IntGauge,
    expired: IntCounter,
}

impl LocalSessions {
    /// At most `max_entries` sessions, each ended after `idle` unread or
    /// `max_lifetime` after its creation.
    pub(super) fn new(
        max_entries: u64,
        idle: Duration,
        max_lifetime: Duration,
        metrics: &GatewayMetrics,
    ) -> Self {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let options = OptionsBuilder::new()
            .estimated_items_capacity(usize::try_from(max_entries).unwrap_or(usize::MAX))
            .weight_capacity(max_entries)
            .build()
            .unwrap_or_else(|_| unreachable!("both sizes are set"));
        let lifecycle = CountEvictions {
            active: metrics.active_sessions.clone(),
            evicted: metrics.sessions_ended.with_label_values(&["eviction"]),
        };
        Self {
            cache: Cache::with_options(options, UnitWeighter, FastHash::default(), lifecycle),
            idle_secs: ms(idle).div_ceil(1000),
            max_lifetime_ms: ms(max_lifetime),
            active: metrics.active_sessions.clone(),
            expired: metrics.sessions_ended.with_label_values(&["expiry"]),
        }
    }

    /// How often [`sweep`](Self::sweep) should run: a quarter of the
    /// shorter limit, between 1 s and 1 min.
    pub(super) fn sweep_interval(&self) -> Duration {
        let ms = self
            .idle_secs
            .saturating_mul(1000)
            .min(self.max_lifetime_ms)
            / 4;
        Duration::from_millis(ms.clamp(1_000, 60_000))
    }

    fn expired(&self, session: &Session, now: u64) -> bool {
        u64::from(secs(now).saturating_sub(session.last_used.get())) > self.idle_secs
            || now.saturating_sub(session.created_ms) >= self.max_lifetime_ms
    }

    /// Session `id`, marked used; `None` when there is none or it just
    /// ran out (ended then, counted as `expiry`).
    pub(super) fn get(&self, id: &SessionId) -> Option<Arc<Session>> {
        self.get_at(id, now_millis())
    }

    fn get_at(&self, id: &SessionId, now: u64) -> Option<Arc<Session>> {
        let found = self.cache.get(id)?;
        if self.expired(&found, now) {
            // Only this value: a session put there meanwhile stays.
            if self
                .cache
                .remove_if(id, |v| Arc::ptr_eq(v, &found))
                .is_some()
            {
                self.active.dec();
                self.expired.inc();
            }
            return None;
        }
        found.last_used.touch(secs(now));
        Some(found)
    }

    /// Adds a new session.
    pub(super) fn insert(&self, id: SessionId, session: Arc<Session>) {
        self.active.inc();
        self.cache.insert(id, session);
    }

    /// Replaces session `id` by `next` in one step, only if it is still
    /// there (a sign-out during a renewal must not be undone).
    pub(super) fn replace(&self, id: SessionId, next: Arc<Session>) -> bool {
        let mut call = Call { replacing: true };
        self.cache
            .replace_with_lifecycle(id, next, true, &mut call)
            .is_ok()
    }

    /// Removes session `id`; whoever asked counts why.
    pub(super) fn remove(&self, id: &SessionId) {
        if self.cache.remove(id).is_some() {
            self.active.dec();
        }
    }

    /// Removes the sessions that ran out unread (counted as `expiry`).
    pub(super) fn sweep(&self) {
        self.sweep_at(now_millis());
    }

    fn sweep_at(&self, now: u64) {
        let removed = AtomicU64::new(0);
        self.cache.retain(|_, session| {
            let keep = !self.expired(session, now);
            if !keep {
                removed.fetch_add(1, Ordering::Relaxed);
            }
            keep
        });
        let removed = removed.into_inner();
        self.active.sub(i64::try_from(removed).unwrap_or(i64::MAX));
        self.expired.inc_by(removed);
    }

    /// Sweeps every [`sweep_interval`](Self::sweep_interval) on the current
    /// Tokio runtime (none outside one: reads still end what ran out), for
    /// as long as the sessions live.
    pub(super) fn keep_swept(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let sessions = Arc::downgrade(self);
        let interval = self.sweep_interval();
        runtime.spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(sessions) = sessions.upgrade() else {
                    return;
                };
                sessions.sweep();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    const IDLE: Duration = Duration::from_secs(60);
    const LIFETIME: Duration = Duration::from_secs(3600);

    fn metrics() -> GatewayMetrics {
        GatewayMetrics::new(&prometheus::Registry::new()).expect("metrics")
    }

    fn session() -> Arc<Session> {
        Arc::new(Session::new(
            "idp".into(),
            "app.example",
            "e30.e30.c2ln",
            &Map::new(),
        ))
    }

    fn ended(m: &GatewayMetrics, reason: &str) -> u64 {
        m.sessions_ended.with_label_values(&[reason]).get()
    }

    #[test]
    fn a_session_read_within_its_idle_timeout_stays_and_one_left_longer_ends() {
        let m = metrics();
        let store = LocalSessions::new(100, IDLE, LIFETIME, &m);
        let (kept, left) = (SessionId::random(), SessionId::random());
        let s = session();
        let t0 = s.created_ms;
        store.insert(kept, s);
        store.insert(left, session());
        assert_eq!(m.active_sessions.get(), 2);
        // Read every 50 s, `kept` outlives the 60 s idle timeout twice over.
        for step in 1..=3 {
            assert!(store.get_at(&kept, t0 + step * 50_000).is_some());
        }
        assert!(store.get_at(&left, t0 + 150_000).is_none(), "idle 150 s");
        assert!(store.get_at(&left, t0).is_none(), "gone, not just hidden");
        assert_eq!(m.active_sessions.get(), 1);
        assert_eq!(ended(&m, "expiry"), 1);
    }

    #[test]
    fn a_session_ends_at_its_max_lifetime_however_often_it_is_read() {
        let m = metrics();
        let store = LocalSessions::new(100, IDLE, Duration::from_secs(120), &m);
        let id = SessionId::random();
        let s = session();
        let t0 = s.created_ms;
        store.insert(id, s);
        assert!(store.get_at(&id, t0 + 50_000).is_some());
        assert!(store.get_at(&id, t0 + 100_000).is_some());
        assert!(store.get_at(&id, t0 + 120_000).is_none());
        assert_eq!(ended(&m, "expiry"), 1);
        assert_eq!(m.active_sessions.get(), 0);
    }

    #[test]
    fn a_sweep_removes_the_sessions_that_ran_out_unread() {
        let m = metrics();
        let store = LocalSessions::new(100, IDLE, LIFETIME, &m);
        let ids: Vec<_> = (0..10).map(|_| SessionId::random()).collect();
        let t0 = now_millis();
        for id in &ids {
            store.insert(*id, session());
        }
        for id in &ids[..4] {
            assert!(store.get_at(id, t0 + 40_000).is_some());
        }
        store.sweep_at(t0 + 90_000);
        assert_eq!(store.cache.len(), 4, "the six unread for 90 s are gone");
        assert_eq!(m.active_sessions.get(), 4);
        assert_eq!(ended(&m, "expiry"), 6);
        for id in &ids[..4] {
            assert!(store.get_at(id, t0 + 90_000).is_some());
        }
    }

    #[test]
    fn past_max_entries_sessions_are_evicted_and_counted() {
        let m = metrics();
        let store = LocalSessions::new(64, IDLE, LIFETIME, &m);
        for _ in 0..200 {
            store.insert(SessionId::random(), session());
        }
        let held = store.cache.len();
        assert!(held <= 64, "{held} held");
        assert_eq!(m.active_sessions.get(), i64::try_from(held).unwrap());
        assert_eq!(ended(&m, "eviction"), 200 - u64::try_from(held).unwrap());
    }

    #[test]
    fn any_max_entries_the_config_allows_builds_a_store_that_allocates_as_it_fills() {
        let m = metrics();
        for max in [1, u64::MAX] {
            let store = LocalSessions::new(max, IDLE, LIFETIME, &m);
            assert_eq!(
                store.cache.memory_used().entries,
                0,
                "{max}: nothing up front"
            );
            let id = SessionId::random();
            store.insert(id, session());
            assert!(store.get(&id).is_some(), "{max}");
            store.remove(&id);
        }
        assert_eq!(m.active_sessions.get(), 0);
    }

    #[test]
    fn replace_only_replaces_a_session_still_there() {
        let m = metrics();
        let store = LocalSessions::new(100, IDLE, LIFETIME, &m);
        let id = SessionId::random();
        let (first, next) = (session(), session());
        store.insert(id, first);
        assert!(store.replace(id, next.clone()));
        assert!(Arc::ptr_eq(&store.get(&id).unwrap(), &next));
        store.remove(&id);
        assert!(!store.replace(id, session()), "signed out meanwhile");
        assert!(store.get(&id).is_none());
        assert_eq!(m.active_sessions.get(), 0);
        store.remove(&id);
        assert_eq!(
            m.active_sessions.get(),
            0,
            "a second removal counts nothing"
        );
    }

    #[test]
    fn sweeps_run_between_once_a_second_and_once_a_minute() {
        let m = metrics();
        let every = |idle, life| LocalSessions::new(10, idle, life, &m).sweep_interval();
        assert_eq!(
            every(Duration::from_secs(2), LIFETIME),
            Duration::from_secs(1)
        );
        assert_eq!(
            every(Duration::from_secs(120), LIFETIME),
            Duration::from_secs(30)
        );
        assert_eq!(every(IDLE * 60, LIFETIME * 8), Duration::from_secs(60));
    }
}
