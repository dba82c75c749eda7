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
    conformance::version_mismatch(Arc::clone(&cache)).await;
    conformance::take_race_64(cache).await;
}
