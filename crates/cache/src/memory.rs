//! `MemoryCache`: the in-process backend on quick_cache.
//!
//! Every write is one step under the key's shard lock (quick_cache's `entry`):
//! a check and the write it decides cannot be split by another caller. moka,
//! its predecessor here, took a lock entry of its own per compute and rehashed
//! its tables as codes came and went: ~11% of a code exchange's CPU.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use orchestrator_config::MemoryCacheConfig;
use quick_cache::sync::{Cache as Store, EntryAction, EntryResult};
use quick_cache::{DefaultHashBuilder, Lifecycle, OptionsBuilder, Weighter};

use crate::cache::ttl_millis;
use crate::{Cache, CacheError};

/// Bytes counted per entry on top of key and value: the cache's slot, the
/// key's and the value's allocations, the deadline. An estimate; it keeps
/// many tiny entries from looking free.
const ENTRY_OVERHEAD: u64 = 96;

/// Shards of the store (each its own lock) when it is large. A value may
/// take at most the hot part of one shard's bytes (see
/// [`MemoryCache::max_entry_weight`]), so a store under [`SHARD_BYTES`] per
/// shard is one shard: whatever fits in `maxBytes` fits in the store.
const SHARDS: usize = 4;

/// The least bytes per shard when the store is sharded.
const SHARD_BYTES: u64 = 16 * 1024 * 1024;

/// The part of a shard's bytes its hot entries may take: quick_cache's
/// default, set here since it bounds the largest value.
const HOT_SHARE: f64 = 0.97;

/// How often a background task looks at how full the store is.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Past this share of `maxBytes`, that task removes the expired entries: the
/// store's eviction does not know deadlines, and would otherwise push out
/// live entries (codes, grants) while expired ones keep their place.
const SWEEP_ABOVE: f64 = 0.75;

/// One stored value and the moment it stops existing.
#[derive(Clone)]
struct Entry {
    value: Arc<[u8]>,
    expires_at: Instant,
}

impl Entry {
    fn new(value: &[u8], ttl: Duration) -> Self {
        Self {
            value: Arc::from(value),
            expires_at: deadline(ttl),
        }
    }

    /// Expired entries stay until read or evicted; every read checks the
    /// deadline, so an entry is never seen after its TTL.
    fn is_live(&self, now: Instant) -> bool {
        self.expires_at > now
    }
}

fn deadline(ttl: Duration) -> Instant {
    let ttl = Duration::from_millis(ttl_millis(ttl));
    let now = Instant::now();
    // A TTL too large for `Instant` means "practically forever": cap at ~100 years.
    now.checked_add(ttl)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// One delayed queue: each item's due time, and the items in due order.
#[derive(Default)]
struct Queue {
    due: HashMap<Vec<u8>, u64>,
    order: BTreeSet<(u64, Vec<u8>)>,
}

impl Queue {
    fn put(&mut self, item: &[u8], due_ms: u64) {
        if let Some(old) = self.due.insert(item.to_vec(), due_ms) {
            self.order.remove(&(old, item.to_vec()));
        }
        self.order.insert((due_ms, item.to_vec()));
    }
}

/// Weighs an entry by its bytes, and at least `min` (see [`MemoryCache`]).
#[derive(Clone)]
struct ByBytes {
    min: u64,
}

impl ByBytes {
    fn of(&self, key: &str, value: &[u8]) -> u64 {
        (key.len() as u64 + value.len() as u64 + ENTRY_OVERHEAD).max(self.min)
    }
}

impl Weighter<String, Entry> for ByBytes {
    fn weight(&self, key: &String, entry: &Entry) -> u64 {
        self.of(key, &entry.value)
    }
}

/// Counts the live entries evicted because the cache was full (replacements
/// never reach it: every write changes an entry in place).
#[derive(Clone)]
struct CountEvictions(Arc<AtomicU64>);

impl Lifecycle<String, Entry> for CountEvictions {
    type RequestState = ();

    fn on_evict(&self, _: &mut (), _key: String, entry: Entry) {
        if entry.is_live(Instant::now()) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The in-process cache: bounded, per-entry TTL, every operation atomic per key.
///
/// Both bounds hold at once although the store knows only one capacity: the
/// capacity is `maxBytes`, and every entry weighs at least
/// `maxBytes / maxEntries`, so no more than `maxEntries` ever fit.
///
/// A `MemoryCache` is private to its process and has no key prefix; wrap it in
/// [`crate::Prefixed`] to give several users of one cache separate namespaces.
#[derive(Clone)]
pub struct MemoryCache {
    inner: Arc<Inner>,
    weigher: ByBytes,
    /// The heaviest entry the store admits (what one shard's hot part holds).
    max_entry_weight: u64,
    /// Delayed queues: few, small (each bounded by its caller's `max`), and
    /// never evicted, so they live beside the store rather than in it.
    queues: Arc<std::sync::Mutex<HashMap<String, Queue>>>,
    /// Entries evicted because the cache was full (not expired or replaced).
    evicted: Arc<AtomicU64>,
}

impl std::fmt::Debug for MemoryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCache")
            .field("entries", &self.inner.len())
            .finish()
    }
}

type Inner = Store<String, Entry, ByBytes, DefaultHashBuilder, CountEvictions>;

#[allow(clippy::cast_precision_loss)]
fn over_sweep_mark(store: &Inner) -> bool {
    store.weight() as f64 > store.capacity() as f64 * SWEEP_ABOVE
}

/// Removes every expired entry.
fn sweep(store: &Inner) {
    let now = Instant::now();
    store.retain(|_, e| e.is_live(now));
}

/// What a write does to a key whose entry is missing or expired: the entry
/// to put there, if any, and what the write answers.
type Absent<T> = (Option<Entry>, T);

impl MemoryCache {
    /// A cache bounded by `cfg.maxEntries` and `cfg.maxBytes`.
    pub fn new(cfg: &MemoryCacheConfig) -> Self {
        let max_bytes = cfg.max_bytes.max(1);
        let max_entries = cfg.max_entries.max(1);
        let weigher = ByBytes {
            min: max_bytes.div_ceil(max_entries),
        };
        let options = OptionsBuilder::new()
            .shards(if max_bytes / SHARDS as u64 >= SHARD_BYTES {
                SHARDS
            } else {
                1
            })
            .hot_allocation(HOT_SHARE)
            .estimated_items_capacity(usize::try_from(max_entries).unwrap_or(usize::MAX))
            // `maxEntries` entries of the least weight fit exactly (it is
            // rounded up: at most `maxEntries` bytes over `maxBytes`); a
            // least weight of 1 byte bounds nothing beyond `maxBytes`.
            .weight_capacity(if weigher.min > 1 {
                max_bytes.max(weigher.min.saturating_mul(max_entries))
            } else {
                max_bytes
            })
            .build()
            .unwrap_or_else(|_| unreachable!("both sizes are set"));
        let evicted = Arc::new(AtomicU64::new(0));
        let inner = Store::with_options(
            options,
            weigher.clone(),
            DefaultHashBuilder::default(),
            CountEvictions(Arc::clone(&evicted)),
        );
        // Truncated on purpose: a bound, rounded down.
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let max_entry_weight = (inner.shard_capacity() as f64 * HOT_SHARE) as u64;
        let cache = Self {
            inner: Arc::new(inner),
            weigher,
            max_entry_weight,
            queues: Arc::default(),
            evicted,
        };
        cache.keep_swept();
        cache
    }

    /// Removes the expired entries once the store is more than
    /// [`SWEEP_ABOVE`] full, checked every [`SWEEP_EVERY`] on the runtime
    /// this cache was made on (none outside one: a command's short-lived
    /// cache); ends with the cache.
    fn keep_swept(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let store = Arc::downgrade(&self.inner);
        runtime.spawn(async move {
            let mut every = tokio::time::interval(SWEEP_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let Some(store) = store.upgrade() else { return };
                if !over_sweep_mark(&store) {
                    continue;
                }
                // A walk under each shard's lock in turn: off the runtime's threads.
                if tokio::task::spawn_blocking(move || sweep(&store))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
    }

    /// Entries currently held (expired ones not yet read or evicted included).
    pub fn entry_count(&self) -> u64 {
        self.inner.len() as u64
    }

    /// A new entry for `key`, unless it is too large for the store to admit
    /// (an error, not a value silently dropped).
    fn entry(&self, key: &str, value: &[u8], ttl: Duration) -> Result<Entry, CacheError> {
        if self.weigher.of(key, value) > self.max_entry_weight {
            return Err(CacheError::Backend(format!(
                "a value of {} bytes is more than cache.memory.maxBytes admits per entry ({} bytes)",
                value.len(),
                self.max_entry_weight
            )));
        }
        Ok(Entry::new(value, ttl))
    }

    /// One atomic step on `key`: `live` changes a live entry in place (or
    /// asks for its removal), `absent` says what a missing or expired one
    /// becomes. Both run under the key's shard lock or its placeholder, so
    /// no other caller's step on `key` falls in between.
    async fn step<T>(
        &self,
        key: &str,
        mut live: impl FnMut(&mut Entry) -> (EntryAction<()>, T) + Send,
        mut absent: impl FnMut() -> Absent<T> + Send,
    ) -> T
    where
        T: Send,
    {
        loop {
            let now = Instant::now();
            let mut out = None;
            let result = self
                .inner
                .entry_async(key, |_, e: &mut Entry| {
                    let (action, answer) = if e.is_live(now) {
                        live(e)
                    } else {
                        match absent() {
                            (Some(next), answer) => {
                                *e = next;
                                (EntryAction::Retain(()), answer)
                            }
                            (None, answer) => (EntryAction::Remove, answer),
                        }
                    };
                    out = Some(answer);
                    action
                })
                .await;
            match result {
                EntryResult::Retained(()) | EntryResult::Removed(..) => {
                    if let Some(answer) = out {
                        return answer;
                    }
                }
                EntryResult::Vacant(guard) | EntryResult::Replaced(guard, _) => {
                    let (next, answer) = absent();
                    let Some(next) = next else {
                        return answer;
                    };
                    // Err: a removal of `key` took the placeholder; go again.
                    if guard.insert(next).is_ok() {
                        return answer;
                    }
                }
                // Not returned by `entry_async` (it waits without a timeout).
                EntryResult::Timeout => {}
            }
        }
    }
}

#[async_trait::async_trait]
impl Cache for MemoryCache {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let now = Instant::now();
        Ok(self
            .inner
            .get(key)
            .filter(|e| e.is_live(now))
            .map(|e| e.value.to_vec()))
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        let entry = self.entry(key, value, ttl)?;
        self.step(
            key,
            |e| {
                *e = entry.clone();
                (EntryAction::Retain(()), ())
            },
            || (Some(entry.clone()), ()),
        )
        .await;
        Ok(())
    }

    async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        let entry = self.entry(key, value, ttl)?;
        Ok(self
            .step(
                key,
                |_| (EntryAction::Retain(()), false),
                || (Some(entry.clone()), true),
            )
            .await)
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        // `remove` is atomic: of concurrent callers exactly one receives the entry.
        let now = Instant::now();
        Ok(self
            .inner
            .remove(key)
            .map(|(_, e)| e)
            .filter(|e| e.is_live(now))
            .map(|e| e.value.to_vec()))
    }

    async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        let now = Instant::now();
        Ok(self.inner.remove(key).is_some_and(|(_, e)| e.is_live(now)))
    }

    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool, CacheError> {
        Ok(self
            .step(
                key,
                |e| {
                    e.expires_at = deadline(ttl);
                    (EntryAction::Retain(()), true)
                },
                || (None, false),
            )
            .await)
    }

    async fn incr(&self, key: &str, ttl: Duration) -> Result<u64, CacheError> {
        self.adjust(key, |n| n.saturating_add(1), Some(ttl)).await
    }

    async fn decr(&self, key: &str) -> Result<u64, CacheError> {
        // Missing or expired: nothing to undo, and nothing created.
        self.adjust(key, |n| n.saturating_sub(1), None).await
    }

    async fn enqueue(
        &self,
        queue: &str,
        item: &[u8],
        due_ms: u64,
        max: u64,
    ) -> Result<bool, CacheError> {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        let q = queues.entry(queue.to_owned()).or_default();
        if !q.due.contains_key(item) && q.due.len() as u64 >= max {
            return Ok(false);
        }
        q.put(item, due_ms);
        Ok(true)
    }

    async fn claim_due(
        &self,
        queue: &str,
        now_ms: u64,
        lease_ms: u64,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, CacheError> {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        let Some(q) = queues.get_mut(queue) else {
            return Ok(Vec::new());
        };
        let claimed: Vec<Vec<u8>> = q
            .order
            .iter()
            .take_while(|(due, _)| *due <= now_ms)
            .take(limit)
            .map(|(_, item)| item.clone())
            .collect();
        let again = now_ms.saturating_add(lease_ms);
        for item in &claimed {
            q.put(item, again);
        }
        Ok(claimed)
    }

    async fn dequeue(&self, queue: &str, item: &[u8]) -> Result<bool, CacheError> {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        let Some(q) = queues.get_mut(queue) else {
            return Ok(false);
        };
        let Some(due) = q.due.remove(item) else {
            return Ok(false);
        };
        q.order.remove(&(due, item.to_vec()));
        if q.due.is_empty() {
            queues.remove(queue);
        }
        Ok(true)
    }

    async fn health(&self) -> Result<(), CacheError> {
        Ok(())
    }

    async fn evictions(&self) -> Result<Option<u64>, CacheError> {
        Ok(Some(self.evicted.load(Ordering::Relaxed)))
    }
}

impl MemoryCache {
    /// Applies `step` to the counter under `key` in one atomic step, keeping
    /// its deadline (a counter's window never moves). A missing counter
    /// starts at 1 with `new_ttl`, or stays missing (0) when it is `None`.
    async fn adjust(
        &self,
        key: &str,
        step: fn(u64) -> u64,
        new_ttl: Option<Duration>,
    ) -> Result<u64, CacheError> {
        self.step(
            key,
            |e| match parse_counter(&e.value) {
                Some(n) => {
                    let next = step(n);
                    e.value = Arc::from(next.to_string().as_bytes());
                    (EntryAction::Retain(()), Ok(next))
                }
                None => (
                    EntryAction::Retain(()),
                    Err(CacheError::Corrupt("value is not a counter".into())),
                ),
            },
            || match new_ttl {
                Some(ttl) => (Some(Entry::new(b"1", ttl)), Ok(1)),
                None => (None, Ok(0)),
            },
        )
        .await
    }
}

/// Counters are stored as decimal text, as Redis stores them.
fn parse_counter(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn bounded_by_entries() {
        let cache = MemoryCache::new(&MemoryCacheConfig {
            max_entries: 100,
            max_bytes: 1024 * 1024,
        });
        for i in 0..1000 {
            cache
                .set(&format!("k{i}"), b"v", Duration::from_secs(60))
                .await
                .expect("set");
        }
        assert!(
            cache.entry_count() <= 100,
            "{} entries",
            cache.entry_count()
        );
    }

    #[tokio::test]
    async fn bounded_by_bytes() {
        let cache = MemoryCache::new(&MemoryCacheConfig {
            max_entries: 1_000_000,
            max_bytes: 64 * 1024,
        });
        let value = vec![7u8; 4096];
        for i in 0..100 {
            cache
                .set(&format!("k{i}"), &value, Duration::from_secs(60))
                .await
                .expect("set");
        }
        // 64 KiB hold at most 15 entries of 4 KiB + overhead.
        assert!(cache.entry_count() <= 16, "{} entries", cache.entry_count());
    }

    #[tokio::test]
    async fn evictions_for_size_are_counted_and_expiry_is_not() {
        let cache = MemoryCache::new(&MemoryCacheConfig {
            max_entries: 10,
            max_bytes: 1024 * 1024,
        });
        assert_eq!(cache.evictions().await.expect("evictions"), Some(0));
        cache
            .set("short", b"v", Duration::from_millis(1))
            .await
            .expect("set");
        for i in 0..100 {
            cache
                .set(&format!("k{i}"), b"v", Duration::from_secs(60))
                .await
                .expect("set");
        }
        let evicted = cache.evictions().await.expect("evictions").unwrap_or(0);
        assert!(evicted >= 80, "{evicted} evictions counted");
        assert!(evicted <= 100, "{evicted} evictions counted");
    }

    #[tokio::test]
    async fn a_value_larger_than_the_store_admits_is_an_error_and_keeps_the_old_one() {
        let cache = MemoryCache::new(&MemoryCacheConfig {
            max_entries: 1_000,
            max_bytes: 64 * 1024,
        });
        cache.set("k", b"small", LONG).await.expect("set");
        let huge = vec![1u8; 128 * 1024];
        assert!(matches!(
            cache.set("k", &huge, LONG).await,
            Err(CacheError::Backend(_))
        ));
        assert!(cache.set_if_absent("other", &huge, LONG).await.is_err());
        assert_eq!(
            cache.get("k").await.expect("get").as_deref(),
            Some(&b"small"[..])
        );
        // What fits in `maxBytes` fits, although a large store is sharded.
        let big = MemoryCache::new(&MemoryCacheConfig::default());
        let value = vec![2u8; 32 * 1024 * 1024];
        big.set("big", &value, LONG).await.expect("set");
        assert_eq!(
            big.get("big").await.expect("get").map(|v| v.len()),
            Some(value.len())
        );
    }

    #[tokio::test]
    async fn a_full_store_sweeps_its_expired_entries_so_live_ones_are_not_pushed_out() {
        let cache = MemoryCache::new(&MemoryCacheConfig {
            max_entries: 10,
            max_bytes: 1024 * 1024,
        });
        for i in 0..9 {
            cache
                .set(&format!("old{i}"), b"v", Duration::from_millis(1))
                .await
                .expect("set");
        }
        let past = Instant::now() + Duration::from_millis(2);
        while Instant::now() < past {
            std::hint::spin_loop();
        }
        assert!(over_sweep_mark(&cache.inner), "9 of 10 is past the mark");
        sweep(&cache.inner);
        assert_eq!(cache.entry_count(), 0, "the expired ones are gone");
        assert!(!over_sweep_mark(&cache.inner));
        for i in 0..10 {
            cache
                .set(&format!("new{i}"), b"v", LONG)
                .await
                .expect("set");
        }
        assert_eq!(cache.evictions().await.expect("evictions"), Some(0));
        for i in 0..10 {
            assert!(cache.get(&format!("new{i}")).await.expect("get").is_some());
        }
        // Past the bound, live entries are evicted and counted.
        cache.set("one_more", b"v", LONG).await.expect("set");
        assert_eq!(cache.evictions().await.expect("evictions"), Some(1));
    }

    #[tokio::test]
    async fn a_store_past_the_mark_is_swept_in_the_background() {
        let cache = MemoryCache::new(&MemoryCacheConfig {
            max_entries: 10,
            max_bytes: 1024 * 1024,
        });
        for i in 0..9 {
            cache
                .set(&format!("old{i}"), b"v", Duration::from_millis(1))
                .await
                .expect("set");
        }
        // The task looks once a second: wait for its sweep, boundedly.
        let deadline = Instant::now() + SWEEP_EVERY * 10;
        while cache.entry_count() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(cache.entry_count(), 0, "swept without a read");
    }

    #[tokio::test]
    async fn incr_on_non_counter_is_corrupt() {
        let cache = MemoryCache::new(&MemoryCacheConfig::default());
        cache
            .set("k", b"abc", Duration::from_secs(60))
            .await
            .expect("set");
        assert!(matches!(
            cache.incr("k", Duration::from_secs(60)).await,
            Err(CacheError::Corrupt(_))
        ));
    }
}
