//! A bounded cache whose entries each end at a deadline of their own: the
//! per-request caches beside the sessions (computed identities, "the IdP has
//! not ended this session", the shared store's near-cache). On `quick_cache`
//! (CLOCK-PRO past its weight capacity): a lookup is a read lock and a hash,
//! where moka's also recorded the read in its access order and its
//! housekeeping, and an entry costs ~100 bytes of the cache's own, not
//! ~350. An entry past its deadline is never returned; it is removed when
//! next read, by a sweep (see [`Expiring::swept_every`]), or evicted as the
//! cache fills.

use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quick_cache::sync::Cache;
use quick_cache::{OptionsBuilder, UnitWeighter, Weighter};

use crate::fast_hash::FastHash;

/// A value and when it stops being served.
#[derive(Clone)]
struct Entry<V> {
    value: V,
    until: Instant,
}

/// Weighs an entry by its value, with the value's weigher.
#[derive(Clone)]
struct ByValue<W>(W);

impl<K, V, W: Weighter<K, V>> Weighter<K, Entry<V>> for ByValue<W> {
    fn weight(&self, key: &K, entry: &Entry<V>) -> u64 {
        self.0.weight(key, &entry.value)
    }
}

/// Values of type `V` by `K`, at most `max_weight` of them by `W`'s measure
/// (by count with [`UnitWeighter`]), each for as long as it was inserted for.
pub(crate) struct Expiring<K, V, W = UnitWeighter> {
    cache: Arc<Cache<K, Entry<V>, ByValue<W>, FastHash>>,
}

impl<K, V, W> Expiring<K, V, W>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    W: Weighter<K, V> + Clone + Send + Sync + 'static,
{
    /// At most `max_weight`, weighed by `weighter`; `expected_items` sizes
    /// the eviction bookkeeping (memory is taken as entries arrive, not up
    /// front).
    pub(crate) fn new(max_weight: u64, expected_items: u64, weighter: W) -> Self {
        let options = OptionsBuilder::new()
            .estimated_items_capacity(
                usize::try_from(expected_items.clamp(1, max_weight.max(1))).unwrap_or(usize::MAX),
            )
            .weight_capacity(max_weight)
            .build()
            .unwrap_or_else(|_| unreachable!("both sizes are set"));
        Self {
            cache: Arc::new(Cache::with_options(
                options,
                ByValue(weighter),
                FastHash::default(),
                Default::default(),
            )),
        }
    }

    /// The same, with the entries past their deadline removed every `every`
    /// by a task on the current runtime (none outside one), which ends with
    /// the cache: entries nobody reads again would otherwise stay until the
    /// cache is full.
    pub(crate) fn swept_every(self, every: Duration) -> Self {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let cache = Arc::downgrade(&self.cache);
            runtime.spawn(async move {
                let mut ticks = tokio::time::interval(every);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                ticks.tick().await;
                loop {
                    ticks.tick().await;
                    let Some(cache) = cache.upgrade() else { return };
                    if cache.is_empty() {
                        continue;
                    }
                    // Each shard locked in turn: off the runtime's threads.
                    if tokio::task::spawn_blocking(move || sweep(&cache, Instant::now()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
        self
    }

    /// The value for `key`, unless there is none or it ran out (removed then).
    pub(crate) fn get(&self, key: &K) -> Option<V> {
        self.get_at(key, Instant::now())
    }

    fn get_at(&self, key: &K, now: Instant) -> Option<V> {
        let found = self.cache.get(key)?;
        if now < found.until {
            return Some(found.value);
        }
        // Only the entry judged: one inserted meanwhile stays.
        self.cache.remove_if(key, |e| e.until == found.until);
        None
    }

    /// Keeps `value` for `key` for `ttl` from now (replacing what was there).
    pub(crate) fn insert(&self, key: K, value: V, ttl: Duration) {
        let until = Instant::now()
            .checked_add(ttl)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 24 * 3600));
        self.cache.insert(key, Entry { value, until });
    }

    /// Forgets `key`.
    pub(crate) fn remove(&self, key: &K) {
        self.cache.remove(key);
    }

    /// Forgets everything.
    pub(crate) fn clear(&self) {
        self.cache.clear();
    }

    /// Entries held (those past their deadline and not yet read included).
    pub(crate) fn len(&self) -> usize {
        self.cache.len()
    }
}

/// Removes the entries past their deadline at `now`.
fn sweep<K, V, W>(cache: &Cache<K, Entry<V>, ByValue<W>, FastHash>, now: Instant)
where
    K: Eq + Hash + Clone,
    V: Clone,
    W: Weighter<K, V> + Clone,
{
    cache.retain(|_, e| now < e.until);
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(2);

    #[test]
    fn an_entry_is_served_until_its_deadline_and_never_after() {
        let cache: Expiring<u32, &str> = Expiring::new(10, 10, UnitWeighter);
        cache.insert(1, "one", TTL);
        let start = Instant::now();
        assert_eq!(cache.get_at(&1, start), Some("one"));
        assert_eq!(cache.get_at(&1, start + TTL / 2), Some("one"));
        assert_eq!(cache.get_at(&1, start + TTL), None, "at the deadline");
        assert_eq!(cache.len(), 0, "removed when read past it");
        assert_eq!(cache.get(&1), None);
    }

    #[test]
    fn each_entry_keeps_its_own_deadline_and_a_new_value_its_new_one() {
        let cache: Expiring<u32, u32> = Expiring::new(10, 10, UnitWeighter);
        cache.insert(1, 10, Duration::from_secs(1));
        cache.insert(2, 20, Duration::from_secs(10));
        let later = Instant::now() + Duration::from_secs(5);
        assert_eq!(cache.get_at(&1, later), None);
        assert_eq!(cache.get_at(&2, later), Some(20));
        cache.insert(2, 21, Duration::from_secs(60));
        assert_eq!(
            cache.get_at(&2, Instant::now() + Duration::from_secs(30)),
            Some(21)
        );
    }

    #[test]
    fn it_holds_no_more_than_its_weight() {
        #[derive(Clone)]
        struct Len;
        impl Weighter<u32, String> for Len {
            fn weight(&self, _: &u32, v: &String) -> u64 {
                v.len() as u64
            }
        }
        let cache = Expiring::new(1_000, 10, Len);
        for i in 0..1_000 {
            cache.insert(i, "x".repeat(100), TTL);
        }
        let held: usize = (0..1_000)
            .filter_map(|i| cache.get(&i))
            .map(|v| v.len())
            .sum();
        assert!(held <= 1_000, "{held} bytes held");
        assert!(held > 0);
    }

    #[test]
    fn remove_and_clear_forget() {
        let cache: Expiring<u32, u32> = Expiring::new(10, 10, UnitWeighter);
        cache.insert(1, 1, TTL);
        cache.insert(2, 2, TTL);
        cache.remove(&1);
        assert_eq!(cache.get(&1), None);
        assert_eq!(cache.get(&2), Some(2));
        cache.clear();
        assert_eq!(cache.get(&2), None);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_sweep_removes_what_ran_out_and_keeps_the_rest() {
        let cache: Expiring<u32, u32> = Expiring::new(100, 100, UnitWeighter);
        for i in 0..50 {
            cache.insert(i, i, Duration::from_secs(1));
        }
        cache.insert(100, 100, Duration::from_secs(60));
        sweep(&cache.cache, Instant::now() + Duration::from_secs(2));
        assert_eq!(cache.len(), 1, "only the entry still in its time");
        assert_eq!(cache.get(&100), Some(100));
    }

    #[tokio::test]
    async fn a_swept_cache_loses_its_expired_entries_unread() {
        let cache: Expiring<u32, u32> =
            Expiring::new(100, 100, UnitWeighter).swept_every(Duration::from_millis(10));
        for i in 0..50 {
            cache.insert(i, i, Duration::from_millis(1));
        }
        // Bounded wait for the background task's sweep.
        let deadline = Instant::now() + Duration::from_secs(10);
        while cache.len() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_ttl_past_the_clock_s_range_is_kept_not_a_panic() {
        let cache: Expiring<u32, u32> = Expiring::new(10, 10, UnitWeighter);
        cache.insert(1, 1, Duration::MAX);
        assert_eq!(cache.get(&1), Some(1));
    }
}
