//! `Prefixed`: a namespace over any cache.

use std::sync::Arc;
use std::time::Duration;

use crate::{Cache, CacheError};

/// Prepends a fixed prefix to every key of an inner cache, so several users
/// of one cache (the OIDC provider, the gateway) cannot collide.
///
/// `RedisCache` applies `cache.redis.keyPrefix` itself; this decorator is for
/// namespaces inside one installation and for the in-process `MemoryCache`.
pub struct Prefixed {
    inner: Arc<dyn Cache>,
    prefix: String,
}

impl std::fmt::Debug for Prefixed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefixed")
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Prefixed {
    /// Wraps `inner`; every key becomes `prefix + key`.
    pub fn new(inner: Arc<dyn Cache>, prefix: impl Into<String>) -> Self {
        Self {
            inner,
            prefix: prefix.into(),
        }
    }

    fn key(&self, key: &str) -> String {
        let mut k = String::with_capacity(self.prefix.len() + key.len());
        k.push_str(&self.prefix);
        k.push_str(key);
        k
    }
}

#[async_trait::async_trait]
impl Cache for Prefixed {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        self.inner.get(&self.key(key)).await
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        self.inner.set(&self.key(key), value, ttl).await
    }

    async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        self.inner.set_if_absent(&self.key(key), value, ttl).await
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        self.inner.take(&self.key(key)).await
    }

    async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        self.inner.delete(&self.key(key)).await
    }

    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool, CacheError> {
        self.inner.expire(&self.key(key), ttl).await
    }

    async fn incr(&self, key: &str, ttl: Duration) -> Result<u64, CacheError> {
        self.inner.incr(&self.key(key), ttl).await
    }

    async fn decr(&self, key: &str) -> Result<u64, CacheError> {
        self.inner.decr(&self.key(key)).await
    }

    async fn enqueue(
        &self,
        queue: &str,
        item: &[u8],
        due_ms: u64,
        max: u64,
    ) -> Result<bool, CacheError> {
        self.inner
            .enqueue(&self.key(queue), item, due_ms, max)
            .await
    }

    async fn claim_due(
        &self,
        queue: &str,
        now_ms: u64,
        lease_ms: u64,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, CacheError> {
        self.inner
            .claim_due(&self.key(queue), now_ms, lease_ms, limit)
            .await
    }

    async fn dequeue(&self, queue: &str, item: &[u8]) -> Result<bool, CacheError> {
        self.inner.dequeue(&self.key(queue), item).await
    }

    async fn health(&self) -> Result<(), CacheError> {
        self.inner.health().await
    }

    async fn evictions(&self) -> Result<Option<u64>, CacheError> {
        self.inner.evictions().await
    }

    fn record_decode_miss(&self, reason: &'static str) {
        self.inner.record_decode_miss(reason);
    }
}
