//! `/readyz` follows the cache backend's health through the real binary:
//! Redis down at start → 503 naming the cache, and ready without a restart
//! once Redis comes up; Redis killed → 503; back → 200.

use std::time::{Duration, Instant};

use orchestrator_cache::testing::TestRedis;
use orchestrator_tests::{Orchestrator, Setup};

async fn readyz(orch: &Orchestrator) -> (u16, String) {
    match reqwest::get(format!("{}/readyz", orch.admin_url())).await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

async fn wait_status(orch: &Orchestrator, want: u16, limit: Duration) -> String {
    wait_until(orch, |status, _| status == want, limit).await
}

/// Polls `/readyz` (bounded) until `done(status, body)`; the last body.
async fn wait_until(
    orch: &Orchestrator,
    done: impl Fn(u16, &str) -> bool,
    limit: Duration,
) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let (status, body) = readyz(orch).await;
        if done(status, &body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stayed {status} ({body})\n{}",
            orch.all_logs()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn redis_down_at_start_then_up_without_restart() {
    let port = TestRedis::free_port();
    let yaml = format!(
        "cache:\n  backend: redis\n  redis:\n    url: redis://127.0.0.1:{port}/0\n    operationTimeout: 200ms\n    connectTimeout: 200ms\n"
    );
    let orch = Orchestrator::spawn(Setup {
        yaml: &yaml,
        ..Setup::default()
    })
    .await;
    // The process starts and serves its admin port, but is not ready, and
    // says why once its listeners are bound: the cache.
    wait_until(
        &orch,
        |status, body| status == 503 && body.contains("cache (redis)"),
        Duration::from_secs(10),
    )
    .await;

    let _redis = TestRedis::start_on(port);
    wait_status(&orch, 200, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn redis_killed_and_back() {
    let mut redis = TestRedis::start();
    let yaml = format!(
        "cache:\n  backend: redis\n  redis:\n    url: {}\n    operationTimeout: 200ms\n",
        redis.url()
    );
    let orch = Orchestrator::start(&yaml, &[]).await;
    redis.stop();
    let body = wait_status(&orch, 503, Duration::from_secs(10)).await;
    assert!(
        body.contains("unavailable") || body.contains("did not answer"),
        "{body}"
    );
    redis.restart();
    wait_status(&orch, 200, Duration::from_secs(10)).await;
}
