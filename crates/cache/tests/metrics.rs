//! `build` wraps the backend in the metrics decorator; the counters and
//! histograms carry the documented names and labels.

use std::sync::Arc;
use std::time::Duration;

use orchestrator_cache::testing::conformance::{Probe, ProbeV2};
use orchestrator_cache::{CacheExt, CacheMetrics, build};
use orchestrator_config::CacheConfig;
use prometheus::Registry;

fn counter(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    registry
        .gather()
        .into_iter()
        .filter(|family| family.name() == name)
        .flat_map(|family| family.get_metric().to_vec())
        .find(|m| {
            labels.iter().all(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == *k && l.value() == *v)
            })
        })
        .map(|m| m.get_counter().value())
}

#[tokio::test]
async fn operations_are_counted_by_backend_op_and_result() {
    let registry = Registry::new();
    let metrics = Arc::new(CacheMetrics::new(&registry).expect("register"));
    let cache = build(&CacheConfig::default(), Arc::clone(&metrics))
        .await
        .expect("memory cache");
    assert_eq!(cache.backend(), "memory");

    let ttl = Duration::from_secs(60);
    assert!(cache.get("a").await.expect("get").is_none());
    cache.set("a", b"1", ttl).await.expect("set");
    assert!(cache.get("a").await.expect("get").is_some());
    assert!(cache.set_if_absent("a", b"2", ttl).await.is_ok_and(|s| !s));
    assert!(cache.take("a").await.expect("take").is_some());

    let ops = "orchestrator_cache_operations_total";
    let mem = ("backend", "memory");
    assert_eq!(
        counter(&registry, ops, &[mem, ("op", "get"), ("result", "miss")]),
        Some(1.0)
    );
    assert_eq!(
        counter(&registry, ops, &[mem, ("op", "get"), ("result", "hit")]),
        Some(1.0)
    );
    assert_eq!(
        counter(&registry, ops, &[mem, ("op", "set"), ("result", "ok")]),
        Some(1.0)
    );
    assert_eq!(
        counter(
            &registry,
            ops,
            &[mem, ("op", "set_if_absent"), ("result", "exists")]
        ),
        Some(1.0)
    );
    assert_eq!(
        counter(&registry, ops, &[mem, ("op", "take"), ("result", "hit")]),
        Some(1.0)
    );
    // Pairs never seen are not exported.
    assert_eq!(
        counter(&registry, ops, &[mem, ("op", "take"), ("result", "miss")]),
        None
    );

    let durations = registry
        .gather()
        .into_iter()
        .find(|f| f.name() == "orchestrator_cache_operation_duration_seconds")
        .expect("duration histogram registered");
    let get = durations
        .get_metric()
        .iter()
        .find(|m| {
            m.get_label()
                .iter()
                .any(|l| l.name() == "op" && l.value() == "get")
        })
        .expect("get histogram");
    assert_eq!(get.get_histogram().get_sample_count(), 2);

    // A typed read of another version is a miss, counted as a decode miss.
    cache
        .set_typed(
            "p",
            &Probe {
                n: 1,
                s: "s".into(),
            },
            ttl,
        )
        .await
        .expect("set_typed");
    assert_eq!(
        cache.get_typed::<ProbeV2>("p").await.expect("get_typed"),
        None
    );
    assert_eq!(
        counter(
            &registry,
            "orchestrator_cache_decode_misses_total",
            &[mem, ("reason", "version")]
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn metrics_register_once_and_serve_many_builds() {
    let registry = Registry::new();
    let metrics = Arc::new(CacheMetrics::new(&registry).expect("register"));
    // A config reload builds again with the same metrics: no re-registration.
    for _ in 0..3 {
        build(&CacheConfig::default(), Arc::clone(&metrics))
            .await
            .expect("build");
    }
    assert!(
        CacheMetrics::new(&registry).is_err(),
        "registering twice in one registry must fail loudly"
    );
}
