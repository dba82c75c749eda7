//! `MemoryCache`: the in-process backend on moka.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache as Moka;
use moka::notification::RemovalCause;
use moka::ops::compute::{CompResult, Op};
use orchestrator_config::MemoryCacheConfig;

use crate::cache::ttl_millis;
use crate::{Cache, CacheError};

/// Bytes counted per entry on top of key and value: moka's node, the `Arc`, the
/// deadline. An estimate; it keeps many tiny entries from looking free.
const ENTRY_OVERHEAD: u64 = 96;

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

    /// moka evicts expired entries lazily; every read also checks the deadline
    /// so an entry is never seen after its TTL, whatever moka's housekeeping does.
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

/// Tells moka each entry's own deadline, on creation and on every update
/// (`expire` and `incr` rewrite the entry with the deadline they want).
struct Deadline;

impl Expiry<String, Entry> for Deadline {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Entry,
        created_at: Instant,
    ) -> Option<Duration> {
        Some(value.expires_at.saturating_duration_since(created_at))
    }

    fn expire_after_update(
        &self,
        _key: &String,
        value: &Entry,
        updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.expires_at.saturating_duration_since(updated_at))
    }
}

/// The in-process cache: bounded, per-entry TTL, every operation atomic per key.
///
/// Both bounds hold at once although moka knows only one capacity: the
/// capacity is `maxBytes`, and every entry weighs at least
/// `maxBytes / maxEntries`, so no more than `maxEntries` ever fit.
///
/// A `MemoryCache` is private to its process and has no key prefix; wrap it in
/// [`crate::Prefixed`] to give several users of one cache separate namespaces.
#[derive(Clone)]
pub struct MemoryCache {
    inner: Moka<String, Entry>,
    /// Delayed queues: few, small (each bounded by its caller's `max`), and
    /// never evicted, so they live beside moka rather than in it.
    queues: Arc<std::sync::Mutex<HashMap<String, Queue>>>,
    /// Entries evicted because the cache was full (not expired or replaced).
    evicted: Arc<AtomicU64>,
}

impl std::fmt::Debug for MemoryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCache")
            .field("entries", &self.inner.entry_count())
            .finish()
    }
}

impl MemoryCache {
    /// A cache bounded by `cfg.maxEntries` and `cfg.maxBytes`.
    pub fn new(cfg: &MemoryCacheConfig) -> Self {
        let max_bytes = cfg.max_bytes.max(1);
        let min_weight = max_bytes.div_ceil(cfg.max_entries.max(1));
        let evicted = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&evicted);
        let inner = Moka::builder()
            .eviction_listener(move |_key, _value, cause| {
                if cause == RemovalCause::Size {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
            .max_capacity(max_bytes)
            .weigher(move |key: &String, entry: &Entry| {
                let bytes = key.len() as u64 + entry.value.len() as u64 + ENTRY_OVERHEAD;
                u32::try_from(bytes.max(min_weight)).unwrap_or(u32::MAX)
            })
            .expire_after(Deadline)
            .build();
        Self {
            inner,
            queues: Arc::default(),
            evicted,
        }
    }

    /// Entries currently held (approximate: moka counts lazily).
    pub fn entry_count(&self) -> u64 {
        self.inner.entry_count()
    }

    /// Runs moka's pending housekeeping (evictions, expiry); for tests of the bounds.
    pub async fn run_pending_tasks(&self) {
        self.inner.run_pending_tasks().await;
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
            .await
            .filter(|e| e.is_live(now))
            .map(|e| e.value.to_vec()))
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        self.inner
            .insert(key.to_owned(), Entry::new(value, ttl))
            .await;
        Ok(())
    }

    async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        // Under moka's per-key lock: the check and the insert are one step.
        let result = self
            .inner
            .entry_by_ref(key)
            .and_compute_with(|existing| {
                let now = Instant::now();
                let op = match existing {
                    Some(e) if e.value().is_live(now) => Op::Nop,
                    _ => Op::Put(Entry::new(value, ttl)),
                };
                std::future::ready(op)
            })
            .await;
        Ok(matches!(
            result,
            CompResult::Inserted(_) | CompResult::ReplacedWith(_)
        ))
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        // `remove` is atomic: of concurrent callers exactly one receives the entry.
        let now = Instant::now();
        Ok(self
            .inner
            .remove(key)
            .await
            .filter(|e| e.is_live(now))
            .map(|e| e.value.to_vec()))
    }

    async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        let now = Instant::now();
        Ok(self.inner.remove(key).await.is_some_and(|e| e.is_live(now)))
    }

    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool, CacheError> {
        let result = self
            .inner
            .entry_by_ref(key)
            .and_compute_with(|existing| {
                let now = Instant::now();
                let op = match existing {
                    Some(e) if e.value().is_live(now) => Op::Put(Entry {
                        value: Arc::clone(&e.value().value),
                        expires_at: deadline(ttl),
                    }),
                    _ => Op::Nop,
                };
                std::future::ready(op)
            })
            .await;
        Ok(matches!(result, CompResult::ReplacedWith(_)))
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
        // moka evicts (and notifies) during its housekeeping; run what is
        // pending so the count is current when a health check reads it.
        self.inner.run_pending_tasks().await;
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
        let mut outcome: Result<u64, CacheError> = Ok(0);
        let out = &mut outcome;
        self.inner
            .entry_by_ref(key)
            .and_compute_with(|existing| {
                let now = Instant::now();
                let op = match existing {
                    Some(e) if e.value().is_live(now) => match parse_counter(&e.value().value) {
                        Some(n) => {
                            let next = step(n);
                            *out = Ok(next);
                            Op::Put(Entry {
                                value: Arc::from(next.to_string().as_bytes()),
                                expires_at: e.value().expires_at,
                            })
                        }
                        None => {
                            *out = Err(CacheError::Corrupt("value is not a counter".into()));
                            Op::Nop
                        }
                    },
                    _ => match new_ttl {
                        Some(ttl) => {
                            *out = Ok(1);
                            Op::Put(Entry::new(b"1", ttl))
                        }
                        None => Op::Nop,
                    },
                };
                std::future::ready(op)
            })
            .await;
        outcome
    }
}

/// Counters are stored as decimal text, as Redis stores them.
fn parse_counter(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        cache.run_pending_tasks().await;
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
        cache.run_pending_tasks().await;
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
