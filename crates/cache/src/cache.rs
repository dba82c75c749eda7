//! The `Cache` trait: byte values with a per-entry TTL.

use std::time::Duration;

use crate::CacheError;

/// A key-value store with per-entry expiry, shared by the OIDC provider and
/// the gateway's shared sessions.
///
/// Object-safe: callers hold an `Arc<dyn Cache>` and never know the backend.
/// Every operation is atomic with respect to the others on the same key, in
/// every backend, so two replicas racing to redeem one code cannot both win.
///
/// A TTL below one millisecond is treated as one millisecond (Redis `PX` has
/// millisecond resolution and refuses 0).
#[async_trait::async_trait]
pub trait Cache: Send + Sync + 'static {
    /// The backend's name, used as the `backend` metrics label: `memory` or `redis`.
    fn backend(&self) -> &'static str;

    /// The value under `key`, if present and not expired.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError>;

    /// Stores `value` under `key` for `ttl`, replacing any value and its TTL.
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError>;

    /// Stores `value` only when `key` is absent; `true` when it was stored.
    async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, CacheError>;

    /// Atomically reads and deletes `key`: of several concurrent calls, at most one gets the value.
    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError>;

    /// Deletes `key`; `true` when it existed.
    async fn delete(&self, key: &str) -> Result<bool, CacheError>;

    /// Sets a new TTL on an existing entry (touch); `false` when it is missing.
    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool, CacheError>;

    /// Increments a counter and returns its new value; a new counter starts at 1
    /// and gets `ttl`, later increments keep the original expiry.
    async fn incr(&self, key: &str, ttl: Duration) -> Result<u64, CacheError>;

    /// Decrements a live counter (never below 0) and returns its new value,
    /// keeping its expiry; a missing key stays missing (returns 0), so undoing
    /// an increment can never create a counter without a TTL.
    async fn decr(&self, key: &str) -> Result<u64, CacheError>;

    /// Adds `item` to the delayed queue `queue` (a set of distinct items,
    /// each with a due time in milliseconds since the Unix epoch), unless
    /// the queue holds `max` items already; `true` when it is queued. An
    /// item already queued only gets the new due time. Queues do not expire:
    /// whoever queues an item dequeues it.
    async fn enqueue(
        &self,
        queue: &str,
        item: &[u8],
        due_ms: u64,
        max: u64,
    ) -> Result<bool, CacheError>;

    /// Claims up to `limit` items of `queue` due at `now_ms`, in due order:
    /// in the same atomic step each is made due again at `now_ms + lease_ms`,
    /// so two claimers never get the same item and an item whose claimer
    /// dies comes back after the lease.
    async fn claim_due(
        &self,
        queue: &str,
        now_ms: u64,
        lease_ms: u64,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, CacheError>;

    /// Removes `item` from `queue`; `true` when it was there.
    async fn dequeue(&self, queue: &str, item: &[u8]) -> Result<bool, CacheError>;

    /// `Ok` when the backend answers; drives `/readyz`.
    async fn health(&self) -> Result<(), CacheError>;

    /// Entries the backend has evicted to stay within its memory bound, in
    /// total since it started (`None`: the backend cannot tell). An eviction
    /// means state such as refresh-token families or SSO sessions was lost
    /// early; the metrics decorator turns it into
    /// `orchestrator_cache_evictions_total` at every health check.
    async fn evictions(&self) -> Result<Option<u64>, CacheError> {
        Ok(None)
    }

    /// Called by the typed helpers when an entry is unreadable (wrong version,
    /// wrong kind, undecodable) and counted as a miss. Decorators that keep
    /// metrics override it; backends need not.
    fn record_decode_miss(&self, reason: &'static str) {
        let _ = reason;
    }
}

/// TTL in whole milliseconds, at least 1 (see [`Cache`]).
pub(crate) fn ttl_millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}
