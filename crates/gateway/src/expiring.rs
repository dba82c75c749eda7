//! A bounded cache whose entries each end at a deadline of their own: the
//! per-request caches beside the sessions (computed identities, "the IdP has
//! not ended this session", the shared store's near-cache). On `quick_cache`
//! (CLOCK-PRO past its weight capacity): a lookup is a read lock and a hash,
//! where moka's also recorded the read in its access order and its
//! housekeeping, and an entry costs ~100 bytes of the cache's own, not
//! ~350. An entry past its deadline is never returned; it is removed when
//! next read, or evicted as the cache fills.

use std::hash::Hash;
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
    cache: Cache<K, Entry<V>, ByValue<W>, FastHash>,
}

impl<K, V, W> Expiring<K, V, W>
where
    K: Eq + Hash + Clone,
    V: Clone,
    W: Weighter<K, V> + Clone,
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
            cache: Cache::with_options(
                options,
                ByValue(weighter),
                FastHash::default(),
                Default::default(),
            ),
        }
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
    fn a_ttl_past_the_clock_s_range_is_kept_not_a_panic() {
        let cache: Expiring<u32, u32> = Expiring::new(10, 10, UnitWeighter);
        cache.insert(1, 1, Duration::MAX);
        assert_eq!(cache.get(&1), Some(1));
    }
}
