//! `store: local`: sessions in this process, in a bounded `quick_cache`
//! (CLOCK-PRO eviction past `maxEntries`). Its entries cost ~60 bytes
//! beside the session; moka's, with their access and expiry orders, cost
//! ~350, a third of a session's memory. What moka did on its own is done
//! here: a session idle longer than `idleTimeout` is gone when next read,
//! and a sweep removes the idle and the too-old ones nobody reads.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntGauge};
use quick_cache::sync::Cache;
use quick_cache::{Lifecycle, OptionsBuilder, UnitWeighter};

use super::id::{SessionId, now_secs};
use super::record::Session;
use crate::fast_hash::FastHash;
use crate::metrics::GatewayMetrics;

/// A tick of the idle clock: 1/64 s. A `u32` of them spans 2.1 years, so
/// differences are taken wrapping, as signed: half of it (a year) either
/// way, far beyond any session's idle time.
const TICK: Duration = Duration::from_micros(15_625);

/// The time a read is judged at: the wall clock for the max lifetime
/// (creation times are wall-clock, shared with other replicas), a
/// monotonic tick count for the idle timeout (a clock step does not end
/// every session).
#[derive(Clone, Copy)]
struct Now {
    wall_secs: u64,
    ticks: u32,
}

impl Now {
    fn current() -> Self {
        static BASE: OnceLock<Instant> = OnceLock::new();
        let since = BASE.get_or_init(Instant::now).elapsed();
        Self {
            wall_secs: now_secs(),
            // Wrapping on purpose: only differences of ticks are used.
            ticks: (since.as_micros() / TICK.as_micros()) as u32,
        }
    }

    #[cfg(test)]
    fn plus(self, d: Duration) -> Self {
        let ticks = (d.as_micros() / TICK.as_micros()) as u32;
        Self {
            wall_secs: self.wall_secs + d.as_secs(),
            ticks: self.ticks.wrapping_add(ticks),
        }
    }
}

/// When a session was last read, in ticks of the idle clock: one atomic
/// field in the record, so a read shares the cache's read lock only. Four
/// bytes, so the record with its `Arc` stays in jemalloc's 160-byte class.
#[derive(Debug)]
pub(crate) struct LastUsed(AtomicU32);

impl LastUsed {
    /// Used now.
    pub(crate) fn now() -> Self {
        Self(AtomicU32::new(Now::current().ticks))
    }

    fn get(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }

    /// Ticks from the last use to `now`; 0 when a parallel read, whose
    /// clock was read a moment later, marked a later use.
    fn idle_at(&self, now: u32) -> u64 {
        // Reinterpreted as signed on purpose (see `TICK`).
        u64::try_from(now.wrapping_sub(self.get()) as i32).unwrap_or(0)
    }

    /// Marks it used at `now` (a write only when the tick moved on, so
    /// parallel reads of one session do not all dirty its cache line, and
    /// never back to an earlier tick).
    fn touch(&self, now: u32) {
        if self.idle_at(now) > 0 {
            self.0.store(now, Ordering::Relaxed);
        }
    }
}

impl Clone for LastUsed {
    fn clone(&self) -> Self {
        Self(AtomicU32::new(self.get()))
    }
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
    /// The idle timeout in ticks, rounded up, plus the tick a reading can
    /// be short by: a session is never ended early, and on a read at most
    /// three ticks (~47 ms) late.
    idle_ticks: u64,
    max_lifetime: Duration,
    /// A quarter of the shorter limit, between 1 s and 1 min.
    sweep_every: Duration,
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
            idle_ticks: u64::try_from(idle.as_micros().div_ceil(TICK.as_micros()))
                .unwrap_or(u64::MAX)
                .saturating_add(1),
            max_lifetime,
            sweep_every: (idle.min(max_lifetime) / 4)
                .clamp(Duration::from_secs(1), Duration::from_secs(60)),
            active: metrics.active_sessions.clone(),
            expired: metrics.sessions_ended.with_label_values(&["expiry"]),
        }
    }

    fn expired(&self, session: &Session, now: Now) -> bool {
        session.last_used.idle_at(now.ticks) > self.idle_ticks
            || session
                .lifetime_left(self.max_lifetime, now.wall_secs)
                .is_none()
    }

    /// Session `id`, marked used; `None` when there is none or it just
    /// ran out (ended then, counted as `expiry`).
    pub(super) fn get(&self, id: &SessionId) -> Option<Arc<Session>> {
        self.get_at(id, Now::current())
    }

    fn get_at(&self, id: &SessionId, now: Now) -> Option<Arc<Session>> {
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
        found.last_used.touch(now.ticks);
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
        self.sweep_at(Now::current());
    }

    /// Walks the sessions one read lock at a time (never a whole shard
    /// locked for the walk; the walk goes by slot, so a removal behind it
    /// does not disturb it) and removes each one that ran out, unless it was
    /// replaced meanwhile.
    fn sweep_at(&self, now: Now) {
        for (id, session) in self.cache.iter() {
            if !self.expired(&session, now) {
                continue;
            }
            if self
                .cache
                .remove_if(&id, |v| Arc::ptr_eq(v, &session))
                .is_some()
            {
                self.active.dec();
                self.expired.inc();
            }
        }
    }

    /// Sweeps every `sweep_every` on the current
    /// Tokio runtime (none outside one: reads still end what ran out), for
    /// as long as the sessions live.
    pub(super) fn keep_swept(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let sessions = Arc::downgrade(self);
        let interval = self.sweep_every;
        runtime.spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(sessions) = sessions.upgrade() else {
                    return;
                };
                // Off the runtime's workers: a walk of a million sessions
                // takes a while.
                if tokio::task::spawn_blocking(move || sessions.sweep())
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    const SEC: Duration = Duration::from_secs(1);
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
        store.insert(kept, session());
        store.insert(left, session());
        let t0 = Now::current();
        assert_eq!(m.active_sessions.get(), 2);
        // Read every 50 s, `kept` outlives the 60 s idle timeout twice over.
        for step in 1..=3 {
            assert!(store.get_at(&kept, t0.plus(step * 50 * SEC)).is_some());
        }
        assert!(
            store.get_at(&left, t0.plus(150 * SEC)).is_none(),
            "idle 150 s"
        );
        assert!(store.get_at(&left, t0).is_none(), "gone, not just hidden");
        assert_eq!(m.active_sessions.get(), 1);
        assert_eq!(ended(&m, "expiry"), 1);
    }

    #[test]
    fn a_read_judged_just_before_a_parallel_one_marked_the_session_used_keeps_it() {
        let m = metrics();
        let store = LocalSessions::new(100, IDLE, LIFETIME, &m);
        let id = SessionId::random();
        store.insert(id, session());
        let t0 = Now::current();
        // The later reader marks it first; the earlier one's clock is behind.
        assert!(store.get_at(&id, t0.plus(SEC)).is_some());
        assert!(store.get_at(&id, t0).is_some(), "not idle: used after `t0`");
        assert!(
            store.get_at(&id, t0.plus(SEC + IDLE)).is_some(),
            "the later use stays the last one"
        );
        assert_eq!(ended(&m, "expiry"), 0);
    }

    #[test]
    fn a_short_idle_timeout_is_kept_to_the_tick_and_never_early() {
        let m = metrics();
        let store = LocalSessions::new(100, SEC, LIFETIME, &m);
        let id = SessionId::random();
        store.insert(id, session());
        let t0 = Now::current();
        let ms = Duration::from_millis;
        assert!(store.get_at(&id, t0.plus(ms(900))).is_some());
        assert!(
            store.get_at(&id, t0.plus(ms(1900))).is_some(),
            "1 s after the last read"
        );
        assert!(store.get_at(&id, t0.plus(ms(3000))).is_none(), "1.1 s idle");
        assert_eq!(ended(&m, "expiry"), 1);
    }

    #[test]
    fn a_session_ends_at_its_max_lifetime_however_often_it_is_read() {
        let m = metrics();
        let store = LocalSessions::new(100, IDLE, Duration::from_secs(120), &m);
        let id = SessionId::random();
        store.insert(id, session());
        let t0 = Now::current();
        assert!(store.get_at(&id, t0.plus(50 * SEC)).is_some());
        assert!(store.get_at(&id, t0.plus(100 * SEC)).is_some());
        assert!(store.get_at(&id, t0.plus(120 * SEC)).is_none());
        assert_eq!(ended(&m, "expiry"), 1);
        assert_eq!(m.active_sessions.get(), 0);
    }

    #[test]
    fn a_sweep_removes_the_sessions_that_ran_out_unread() {
        let m = metrics();
        let store = LocalSessions::new(100, IDLE, LIFETIME, &m);
        let ids: Vec<_> = (0..10).map(|_| SessionId::random()).collect();
        for id in &ids {
            store.insert(*id, session());
        }
        let t0 = Now::current();
        for id in &ids[..4] {
            assert!(store.get_at(id, t0.plus(40 * SEC)).is_some());
        }
        store.sweep_at(t0.plus(90 * SEC));
        assert_eq!(store.cache.len(), 4, "the six unread for 90 s are gone");
        assert_eq!(m.active_sessions.get(), 4);
        assert_eq!(ended(&m, "expiry"), 6);
        for id in &ids[..4] {
            assert!(store.get_at(id, t0.plus(90 * SEC)).is_some());
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
        let every = |idle, life| LocalSessions::new(10, idle, life, &m).sweep_every;
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
