//! Picking and assembling the configured backend.

use std::sync::Arc;

use orchestrator_config::{CacheBackend, CacheConfig};

use crate::{Cache, CacheError, CacheMetrics, Instrumented, MemoryCache, RedisCache};

/// Builds the configured backend, wrapped in the metrics decorator.
///
/// Never connects: with `backend: redis` it succeeds while Redis is down
/// (check [`Cache::health`] for readiness). Fails only on configuration
/// errors, each naming its key. Every call returns a new, empty
/// `MemoryCache`, so a config reload should rebuild the cache only when the
/// `cache` section changed.
pub async fn build(
    cfg: &CacheConfig,
    metrics: Arc<CacheMetrics>,
) -> Result<Arc<dyn Cache>, CacheError> {
    let backend: Arc<dyn Cache> = match cfg.backend {
        CacheBackend::Memory => Arc::new(MemoryCache::new(&cfg.memory)),
        CacheBackend::Redis => Arc::new(RedisCache::new(&cfg.redis)?),
    };
    Ok(Arc::new(Instrumented::new(backend, metrics)))
}
