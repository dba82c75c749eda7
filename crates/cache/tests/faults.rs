//! Fault tests against a real redis-server: down at start, killed mid-run,
//! hung (SIGSTOP). Operations must fail within the operation timeout and the
//! cache must recover by itself, without being rebuilt.

use std::sync::Arc;
use std::time::{Duration, Instant};

use orchestrator_cache::testing::TestRedis;
use orchestrator_cache::{Cache, CacheError, CacheMetrics, build};
use orchestrator_config::{CacheBackend, CacheConfig, RedisConfig};

const OP_TIMEOUT: Duration = Duration::from_millis(250);
/// Scheduling slack on a busy 2-core machine; an operation must never take
/// longer than the timeout plus this.
const MARGIN: Duration = Duration::from_millis(300);
/// How long recovery may take once Redis is back.
const RECOVERY_BOUND: Duration = Duration::from_secs(10);

fn redis_config(port: u16) -> CacheConfig {
    CacheConfig {
        backend: CacheBackend::Redis,
        redis: RedisConfig {
            url: format!("redis://127.0.0.1:{port}/0"),
            key_prefix: "faults:".into(),
            operation_timeout: OP_TIMEOUT,
            ..RedisConfig::default()
        },
        ..CacheConfig::default()
    }
}

async fn built(port: u16) -> Arc<dyn Cache> {
    let metrics = CacheMetrics::new(&prometheus::Registry::new()).expect("metrics");
    build(&redis_config(port), Arc::new(metrics))
        .await
        .expect("build must succeed whatever the state of Redis")
}

/// Runs `get` and checks it fails as a connection problem, within the deadline.
async fn assert_fails_fast(cache: &dyn Cache) -> CacheError {
    let start = Instant::now();
    let err = cache
        .get("k")
        .await
        .expect_err("get must fail while Redis is unreachable");
    let elapsed = start.elapsed();
    assert!(
        elapsed <= OP_TIMEOUT + MARGIN,
        "failure took {elapsed:?}, more than {OP_TIMEOUT:?} + {MARGIN:?}"
    );
    assert!(
        matches!(err, CacheError::Unavailable(_) | CacheError::Timeout),
        "unexpected error kind: {err:?}"
    );
    err
}

/// Polls until a round trip works again; panics after the bound.
async fn wait_recovered(cache: &dyn Cache) {
    let start = Instant::now();
    loop {
        if cache.health().await.is_ok()
            && cache
                .set("recovered", b"yes", Duration::from_secs(10))
                .await
                .is_ok()
        {
            let read = cache.get("recovered").await.expect("get after recovery");
            assert_eq!(read.as_deref(), Some(&b"yes"[..]));
            return;
        }
        assert!(
            start.elapsed() < RECOVERY_BOUND,
            "cache did not recover within {RECOVERY_BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn redis_down_at_start_then_recovers() {
    let port = TestRedis::free_port();
    let cache = built(port).await;

    for _ in 0..3 {
        let err = assert_fails_fast(&*cache).await;
        // Refused on loopback: reported as unavailable, not as a slow timeout.
        assert!(matches!(err, CacheError::Unavailable(_)), "{err:?}");
    }
    assert!(
        cache.health().await.is_err(),
        "health must fail while Redis is down"
    );

    let _server = TestRedis::start_on(port);
    wait_recovered(&*cache).await;
}

#[tokio::test]
async fn redis_killed_mid_run_fails_fast_and_recovers() {
    let mut server = TestRedis::start();
    let cache = built(server.port()).await;
    cache
        .set("k", b"v", Duration::from_secs(60))
        .await
        .expect("set while up");

    server.stop();
    for _ in 0..5 {
        assert_fails_fast(&*cache).await;
    }
    assert!(cache.health().await.is_err());

    server.restart();
    wait_recovered(&*cache).await;
}

#[tokio::test]
async fn hung_redis_times_out_then_recovers() {
    let server = TestRedis::start();
    let cache = built(server.port()).await;
    cache.health().await.expect("healthy at first");

    server.pause();
    for _ in 0..3 {
        let start = Instant::now();
        let err = cache
            .get("k")
            .await
            .expect_err("a frozen Redis cannot answer");
        let elapsed = start.elapsed();
        assert_eq!(err, CacheError::Timeout);
        assert!(
            elapsed >= OP_TIMEOUT - Duration::from_millis(10) && elapsed <= OP_TIMEOUT + MARGIN,
            "timed out after {elapsed:?}, expected about {OP_TIMEOUT:?}"
        );
    }
    let start = Instant::now();
    assert!(cache.health().await.is_err());
    assert!(start.elapsed() <= OP_TIMEOUT + MARGIN, "health hung");

    server.resume();
    wait_recovered(&*cache).await;
}

#[tokio::test]
async fn invalid_url_names_the_key_and_hides_the_password() {
    let metrics = Arc::new(CacheMetrics::new(&prometheus::Registry::new()).expect("metrics"));
    for url in [
        "redis://user:hunter2@[::1",
        "http://user:hunter2@127.0.0.1:6379",
        "hunter2",
        "redis://user:hunter2@/0",
    ] {
        let mut cfg = redis_config(1);
        cfg.redis.url = url.into();
        let err = build(&cfg, Arc::clone(&metrics))
            .await
            .err()
            .expect("a malformed url must be refused");
        let msg = err.to_string();
        assert!(
            msg.starts_with("cache.redis.url: "),
            "error must name the key: {msg}"
        );
        assert!(!msg.contains("hunter2"), "error leaks the password: {msg}");
    }

    let mut cfg = redis_config(1);
    cfg.redis.cluster_urls = vec!["redis://127.0.0.1:7000".into(), "nope://x".into()];
    let err = build(&cfg, metrics).await.err().expect("bad cluster url");
    assert!(
        err.to_string().starts_with("cache.redis.clusterUrls: "),
        "{err}"
    );
}

#[tokio::test]
async fn unreadable_ca_file_names_the_key() {
    let mut cfg = redis_config(1);
    cfg.redis.url = "rediss://127.0.0.1:1/0".into();
    cfg.redis.ca_file = Some("/nonexistent/ca.pem".into());
    let metrics = Arc::new(CacheMetrics::new(&prometheus::Registry::new()).expect("metrics"));
    let err = build(&cfg, metrics).await.err().expect("missing CA file");
    assert!(err.to_string().starts_with("cache.redis.caFile: "), "{err}");
}
