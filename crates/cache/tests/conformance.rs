//! The conformance suite, run against both backends: `memory_<property>` and
//! `redis_<property>` for every property of `testing::conformance`.

use std::sync::Arc;

use orchestrator_cache::testing::{TestRedis, TestRedisCluster, conformance};
use orchestrator_cache::{Cache, MemoryCache, Prefixed, RedisCache};
use orchestrator_config::MemoryCacheConfig;

fn memory() -> Arc<dyn Cache> {
    Arc::new(MemoryCache::new(&MemoryCacheConfig::default()))
}

/// Two views over one memory store with different prefixes.
fn memory_pair() -> (Arc<dyn Cache>, Arc<dyn Cache>) {
    let store = memory();
    (
        Arc::new(Prefixed::new(Arc::clone(&store), "a:")),
        Arc::new(Prefixed::new(store, "b:")),
    )
}

/// A Redis cache over its own server; the server lives as long as the returned guard.
fn redis() -> (TestRedis, Arc<dyn Cache>) {
    let server = TestRedis::start();
    let cache = RedisCache::new(&server.config("test:")).expect("redis cache");
    (server, Arc::new(cache))
}

/// Two Redis caches with different `keyPrefix` over one server.
fn redis_pair() -> (TestRedis, Arc<dyn Cache>, Arc<dyn Cache>) {
    let server = TestRedis::start();
    let a = RedisCache::new(&server.config("a:")).expect("redis cache a");
    let b = RedisCache::new(&server.config("b:")).expect("redis cache b");
    (server, Arc::new(a), Arc::new(b))
}

macro_rules! conformance {
    ($($property:ident),* $(,)?) => {
        mod memory {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $property() {
                    conformance::$property(memory()).await;
                }
            )*
        }
        mod redis {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $property() {
                    let (_server, cache) = redis();
                    conformance::$property(cache).await;
                }
            )*
        }
    };
}

conformance!(
    ttl_expiry,
    expire_touch,
    overwrite,
    nx_semantics,
    take_once,
    missing_keys,
    large_values,
    binary_values,
    version_mismatch,
    take_race_64,
    nx_race_64,
    incr_counter,
    decr_counter,
    delayed_queue,
    delayed_queue_claim_race,
    evictions_reported,
);

#[tokio::test]
async fn memory_key_prefix_isolation() {
    let (a, b) = memory_pair();
    conformance::key_prefix_isolation(a, b).await;
}

#[tokio::test]
async fn redis_key_prefix_isolation() {
    let (_server, a, b) = redis_pair();
    conformance::key_prefix_isolation(a, b).await;
}

/// The password comes from config (a Secret), not the URL.
#[tokio::test]
async fn redis_with_password() {
    let server = TestRedis::start_with_password("s3cret-pw");
    let cache: Arc<dyn Cache> = Arc::new(RedisCache::new(&server.config("pw:")).expect("cache"));
    cache.health().await.expect("health with password");
    conformance::take_once(Arc::clone(&cache)).await;

    let mut wrong = server.config("pw:");
    wrong.password = Some(orchestrator_config::Secret::new("wrong-pw"));
    let wrong = RedisCache::new(&wrong).expect("cache");
    let err = wrong.health().await.expect_err("wrong password must fail");
    assert!(
        !err.to_string().contains("wrong-pw"),
        "error leaks the password: {err}"
    );
}

/// `rediss://` with the CA from `caFile`: the suite's core properties over TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = TestRedis::start_tls();
    let cache: Arc<dyn Cache> = Arc::new(RedisCache::new(&server.config("tls:")).expect("cache"));
    cache.health().await.expect("health over TLS");
    conformance::take_once(Arc::clone(&cache)).await;
    conformance::binary_values(Arc::clone(&cache)).await;
    conformance::take_race_64(cache).await;

    // Without the CA the server's certificate is not trusted.
    let mut untrusted = server.config("tls:");
    untrusted.ca_file = None;
    let untrusted = RedisCache::new(&untrusted).expect("cache");
    assert!(
        untrusted.health().await.is_err(),
        "untrusted certificate accepted"
    );
}

/// Cluster mode (`clusterUrls`): keys spread over three masters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster() {
    let cluster = TestRedisCluster::start();
    let cache: Arc<dyn Cache> = Arc::new(RedisCache::new(&cluster.config("c:")).expect("cache"));
    cache.health().await.expect("cluster health");
    conformance::take_once(Arc::clone(&cache)).await;
    conformance::nx_semantics(Arc::clone(&cache)).await;
    conformance::incr_counter(Arc::clone(&cache)).await;
    conformance::decr_counter(Arc::clone(&cache)).await;
    conformance::version_mismatch(Arc::clone(&cache)).await;
    conformance::take_race_64(cache).await;
}

/// A full store evicts, and the metrics decorator counts it at the next health
/// check as `orchestrator_cache_evictions_total{backend}`: memory (live entries
/// evicted for space) and Redis (`evicted_keys` of a server that may evict).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evictions_are_counted_at_health_checks() {
    use orchestrator_cache::{CacheMetrics, Instrumented};
    use orchestrator_config::MemoryCacheConfig;
    use std::time::Duration;

    let registry = prometheus::Registry::new();
    let metrics = Arc::new(CacheMetrics::new(&registry).expect("metrics"));
    let server =
        TestRedis::start_with_args(&["--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru"]);
    let small_memory: Arc<dyn Cache> = Arc::new(MemoryCache::new(&MemoryCacheConfig {
        max_entries: 1_000_000,
        max_bytes: 64 * 1024,
    }));
    let redis: Arc<dyn Cache> =
        Arc::new(RedisCache::new(&server.config("evict:")).expect("redis cache"));
    for (backend, inner) in [("memory", small_memory), ("redis", redis)] {
        let cache = Instrumented::new(inner, Arc::clone(&metrics));
        cache.health().await.expect("health");
        let value = vec![7u8; 16 * 1024];
        for i in 0..400 {
            cache
                .set(&format!("k{i}"), &value, Duration::from_secs(600))
                .await
                .expect("set");
        }
        cache.health().await.expect("health");
        let counted = registry
            .gather()
            .iter()
            .filter(|f| f.name() == "orchestrator_cache_evictions_total")
            .flat_map(|f| f.get_metric().iter())
            .filter(|m| m.get_label().iter().any(|l| l.value() == backend))
            .map(|m| m.get_counter().value())
            .sum::<f64>();
        assert!(counted >= 100.0, "{backend}: {counted} evictions counted");
    }
}
