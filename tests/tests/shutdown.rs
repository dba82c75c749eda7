//! Graceful shutdown through the real binary: SIGTERM while a slow request is
//! in flight → `/readyz` 503 at once → the request completes → exit 0.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use orchestrator_tests::{Orchestrator, TestUpstream};

/// A gateway whose whole app is public, so requests go straight to the upstream.
fn config(upstream: &str, delay: &str, drain: &str) -> String {
    format!(
        r#"shutdown:
  delay: {delay}
  drainTimeout: {drain}
appGateway:
  identityProviders:
    - {{name: idp, issuer: "http://127.0.0.1:9/idp", clientId: gw}}
  apps:
    - name: slow
      upstream: "{upstream}"
      identityProvider: idp
      publicPaths: [/]
"#
    )
}

async fn wait_until(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let upstream = TestUpstream::echo().await;
    let mut orch = Orchestrator::start(&config(&upstream.url(), "500ms", "10s"), &[]).await;
    let slow_url = format!("{}/slow/1500", orch.base_url());
    let in_flight = tokio::spawn(async move { reqwest::get(slow_url).await });
    wait_until(
        "the slow request reaching the upstream",
        Duration::from_secs(5),
        async || upstream.requests() >= 1,
    )
    .await;

    orch.signal(Signal::SIGTERM);
    let admin = orch.admin_url();
    wait_until("/readyz turning 503", Duration::from_secs(5), async || {
        matches!(reqwest::get(format!("{admin}/readyz")).await, Ok(r) if r.status() == 503)
    })
    .await;
    let body = reqwest::get(format!("{admin}/readyz"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("shutting down"), "{body}");

    let resp = in_flight
        .await
        .unwrap()
        .expect("in-flight request completed");
    assert_eq!(resp.status(), 200);
    let echoed: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(echoed["uri"], "/slow/1500");

    assert_eq!(orch.wait_exit(Duration::from_secs(15)).await, Some(0));
    let logs = orch.all_logs();
    assert!(
        logs.contains("SIGTERM received") && logs.contains("shutdown complete"),
        "{logs}"
    );
}

#[tokio::test]
async fn drain_timeout_bounds_the_wait() {
    let upstream = TestUpstream::echo().await;
    let mut orch = Orchestrator::start(&config(&upstream.url(), "100ms", "1s"), &[]).await;
    let url = format!("{}/slow/30000", orch.base_url());
    let stuck = tokio::spawn(async move { reqwest::get(url).await });
    wait_until(
        "the request reaching the upstream",
        Duration::from_secs(5),
        async || upstream.requests() >= 1,
    )
    .await;
    let started = Instant::now();
    orch.signal(Signal::SIGTERM);
    assert_eq!(orch.wait_exit(Duration::from_secs(15)).await, Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "exited after {:?}, far beyond delay + drainTimeout",
        started.elapsed()
    );
    // The request that outlived the drain was cut, not answered.
    assert!(stuck.await.unwrap().is_err());
}

#[tokio::test]
async fn sigint_shuts_down_too() {
    let mut orch = Orchestrator::start("shutdown:\n  delay: 0s\n", &[]).await;
    orch.signal(Signal::SIGINT);
    assert_eq!(orch.wait_exit(Duration::from_secs(10)).await, Some(0));
}
