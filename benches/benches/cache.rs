//! Cache benchmarks: get/set/take on `MemoryCache` and `RedisCache`, one at a
//! time and 64 in flight at once.
//!
//! Memory numbers are per operation (ns/op); Redis numbers are throughput
//! (criterion's elements/s = ops/s) against a real redis-server on loopback
//! started by `TestRedis`. Compare with
//! `redis-benchmark -p <port> -t get,set -c 64 -n 200000 -q`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use orchestrator_cache::testing::TestRedis;
use orchestrator_cache::{Cache, CacheMetrics, Instrumented, MemoryCache, RedisCache};
use orchestrator_config::MemoryCacheConfig;
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

const TTL: Duration = Duration::from_secs(600);
const CONCURRENCY: usize = 64;
const VALUE: &[u8] = &[0x5a; 128];

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn instrumented(inner: Arc<dyn Cache>) -> Arc<dyn Cache> {
    let metrics = CacheMetrics::new(&prometheus::Registry::new()).expect("metrics");
    Arc::new(Instrumented::new(inner, Arc::new(metrics)))
}

/// `take` consumes its key, so keys are refilled untimed, in chunks.
async fn timed_takes(cache: &Arc<dyn Cache>, iters: u64) -> Duration {
    const CHUNK: u64 = 10_000;
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let n = CHUNK.min(iters - done);
        for i in 0..n {
            cache
                .set(&format!("take:{i}"), VALUE, TTL)
                .await
                .expect("fill");
        }
        let start = Instant::now();
        for i in 0..n {
            let _ = cache.take(&format!("take:{i}")).await;
        }
        total += start.elapsed();
        done += n;
    }
    total
}

/// One iteration = `CONCURRENCY` operations in flight together on spawned tasks.
async fn fan_out<F, Fut>(cache: &Arc<dyn Cache>, op: F)
where
    F: Fn(Arc<dyn Cache>, usize) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut set = JoinSet::new();
    for i in 0..CONCURRENCY {
        set.spawn(op(Arc::clone(cache), i));
    }
    while set.join_next().await.is_some() {}
}

fn bench_backend(c: &mut Criterion, name: &str, rt: &Runtime, cache: Arc<dyn Cache>) {
    rt.block_on(async {
        cache.set("hot", VALUE, TTL).await.expect("seed");
        for i in 0..CONCURRENCY {
            cache
                .set(&format!("hot:{i}"), VALUE, TTL)
                .await
                .expect("seed");
        }
    });

    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(1));
    group.bench_function("get", |b| {
        b.to_async(rt)
            .iter(|| async { cache.get("hot").await.expect("get") })
    });
    group.bench_function("set", |b| {
        b.to_async(rt)
            .iter(|| async { cache.set("hot", VALUE, TTL).await.expect("set") })
    });
    group.bench_function("take", |b| {
        b.to_async(rt).iter_custom(|iters| {
            let cache = Arc::clone(&cache);
            async move { timed_takes(&cache, iters).await }
        })
    });

    group.throughput(Throughput::Elements(CONCURRENCY as u64));
    group.bench_function("get_x64", |b| {
        b.to_async(rt).iter(|| {
            fan_out(&cache, |c, i| async move {
                c.get(&format!("hot:{i}")).await.expect("get");
            })
        })
    });
    group.bench_function("set_x64", |b| {
        b.to_async(rt).iter(|| {
            fan_out(&cache, |c, i| async move {
                c.set(&format!("hot:{i}"), VALUE, TTL).await.expect("set");
            })
        })
    });
    group.bench_function("set_then_take_x64", |b| {
        b.to_async(rt).iter(|| {
            fan_out(&cache, |c, i| async move {
                let key = format!("t64:{i}");
                c.set(&key, VALUE, TTL).await.expect("set");
                c.take(&key).await.expect("take");
            })
        })
    });
    group.finish();
}

fn memory(c: &mut Criterion) {
    let rt = runtime();
    let raw: Arc<dyn Cache> = Arc::new(MemoryCache::new(&MemoryCacheConfig::default()));
    bench_backend(c, "memory", &rt, Arc::clone(&raw));
    bench_backend(c, "memory_instrumented", &rt, instrumented(raw));
}

fn redis(c: &mut Criterion) {
    let rt = runtime();
    let server = TestRedis::start();
    let cache = rt.block_on(async {
        let cache: Arc<dyn Cache> =
            Arc::new(RedisCache::new(&server.config("bench:")).expect("redis cache"));
        cache.health().await.expect("redis up");
        cache
    });
    print_redis_benchmark(server.port());
    bench_backend(c, "redis", &rt, instrumented(cache));
    drop(server);
}

/// The reference point, measured in the same run against the same kind of
/// server: `redis-benchmark -t get,set -c 64` (skipped when not installed).
fn print_redis_benchmark(port: u16) {
    let out = std::process::Command::new("redis-benchmark")
        .args([
            "-p",
            &port.to_string(),
            "-t",
            "get,set",
            "-c",
            "64",
            "-n",
            "200000",
            "-q",
        ])
        .output();
    match out {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            // -q still prints progress separated by \r; keep the summaries.
            for line in text
                .split(['\r', '\n'])
                .filter(|l| l.contains("requests per second"))
            {
                println!("redis-benchmark -c 64: {}", line.trim());
            }
        }
        Err(e) => println!("redis-benchmark not run: {e}"),
    }
}

criterion_group!(benches, memory, redis);
criterion_main!(benches);
