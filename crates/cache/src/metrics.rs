//! Cache metrics and the decorator that records them around any backend.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};

use crate::{Cache, CacheError};

/// The cache's Prometheus metrics; registered once per process, shared by
/// every cache built afterwards (hot reloads included).
#[derive(Debug, Clone)]
pub struct CacheMetrics {
    operations: IntCounterVec,
    duration: HistogramVec,
    decode_misses: IntCounterVec,
    evictions: IntCounterVec,
}

impl CacheMetrics {
    /// Creates and registers the metrics in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let operations = IntCounterVec::new(
            Opts::new(
                "orchestrator_cache_operations_total",
                "Cache operations by backend, operation and result.",
            ),
            &["backend", "op", "result"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "orchestrator_cache_operation_duration_seconds",
                "Duration of cache operations, errors included.",
            )
            // From a memory hit (~1µs) to beyond any sane operation timeout.
            .buckets(vec![
                0.000_01, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
                0.05, 0.1, 0.25, 0.5, 1.0,
            ]),
            &["backend", "op"],
        )?;
        let decode_misses = IntCounterVec::new(
            Opts::new(
                "orchestrator_cache_decode_misses_total",
                "Typed entries read as misses because they were unreadable (version, kind, format, body).",
            ),
            &["backend", "reason"],
        )?;
        let evictions = IntCounterVec::new(
            Opts::new(
                "orchestrator_cache_evictions_total",
                "Entries the backend evicted to stay within its memory bound (state lost early: \
                 should stay 0). Read at health checks; Redis: the server's evicted_keys.",
            ),
            &["backend"],
        )?;
        registry.register(Box::new(operations.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(decode_misses.clone()))?;
        registry.register(Box::new(evictions.clone()))?;
        Ok(Self {
            operations,
            duration,
            decode_misses,
            evictions,
        })
    }
}

/// The operations of [`Cache`], as metric label values.
#[derive(Debug, Clone, Copy)]
enum Op {
    Get,
    Set,
    SetIfAbsent,
    Take,
    Delete,
    Expire,
    Incr,
    Decr,
    Enqueue,
    ClaimDue,
    Dequeue,
    Health,
}

const OPS: [Op; 12] = [
    Op::Get,
    Op::Set,
    Op::SetIfAbsent,
    Op::Take,
    Op::Delete,
    Op::Expire,
    Op::Incr,
    Op::Decr,
    Op::Enqueue,
    Op::ClaimDue,
    Op::Dequeue,
    Op::Health,
];

impl Op {
    fn label(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Set => "set",
            Self::SetIfAbsent => "set_if_absent",
            Self::Take => "take",
            Self::Delete => "delete",
            Self::Expire => "expire",
            Self::Incr => "incr",
            Self::Decr => "decr",
            Self::Enqueue => "enqueue",
            Self::ClaimDue => "claim_due",
            Self::Dequeue => "dequeue",
            Self::Health => "health",
        }
    }
}

/// Every `result` label value; a fixed set keeps the series count bounded.
const RESULTS: [&str; 11] = [
    "ok",
    "hit",
    "miss",
    "stored",
    "exists",
    "timeout",
    "unavailable",
    "corrupt",
    "encode",
    "error",
    "config",
];

fn result_index(label: &str) -> usize {
    RESULTS
        .iter()
        .position(|r| *r == label)
        .unwrap_or(RESULTS.len() - 2)
}

/// Wraps a backend and records `orchestrator_cache_*` metrics for every call.
///
/// Label lookups cost a lock and a hash per call, too much next to a 1µs
/// memory hit, so the counters are resolved once (lazily, so unused
/// op/result pairs never appear as series) and the histograms up front.
pub struct Instrumented {
    inner: Arc<dyn Cache>,
    metrics: Arc<CacheMetrics>,
    histograms: Vec<Histogram>,
    counters: Vec<OnceLock<IntCounter>>,
    /// The backend's eviction total at the last health check, so the
    /// counter only ever adds what is new.
    evictions_seen: AtomicU64,
}

impl std::fmt::Debug for Instrumented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instrumented")
            .field("backend", &self.inner.backend())
            .finish()
    }
}

/// `evictions_seen` before the backend's first report.
const NOT_SEEN: u64 = u64::MAX;

impl Instrumented {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Cache>, metrics: Arc<CacheMetrics>) -> Self {
        let backend = inner.backend();
        let histograms = OPS
            .iter()
            .map(|op| metrics.duration.with_label_values(&[backend, op.label()]))
            .collect();
        let counters = (0..OPS.len() * RESULTS.len())
            .map(|_| OnceLock::new())
            .collect();
        // The eviction series exists from the start at 0, so an alert can
        // tell "no evictions" from "not reported".
        metrics.evictions.with_label_values(&[backend]);
        Self {
            inner,
            metrics,
            histograms,
            counters,
            evictions_seen: AtomicU64::new(NOT_SEEN),
        }
    }

    /// Adds the evictions the backend reports since the last look. A total
    /// below the last one means the backend restarted (its count began anew).
    /// The first total is only a baseline: a Redis shared by several replicas
    /// reports its lifetime count, and each replica counts what happens while
    /// it runs (so `rate()` and alerts see evictions, not history).
    async fn sync_evictions(&self) {
        let total = match self.inner.evictions().await {
            Ok(Some(total)) => total,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(backend = self.inner.backend(), error = %e, "eviction count unavailable");
                return;
            }
        };
        let last = self.evictions_seen.swap(total, Ordering::Relaxed);
        let new = match last {
            NOT_SEEN if self.inner.backend() == "redis" => 0,
            NOT_SEEN => total,
            last if total >= last => total - last,
            _ => total,
        };
        if new > 0 {
            self.metrics
                .evictions
                .with_label_values(&[self.inner.backend()])
                .inc_by(new);
        }
    }

    fn record(&self, op: Op, result: &'static str, elapsed: Duration) {
        let i = op as usize;
        self.histograms[i].observe(elapsed.as_secs_f64());
        let cell = &self.counters[i * RESULTS.len() + result_index(result)];
        cell.get_or_init(|| {
            self.metrics
                .operations
                .with_label_values(&[self.inner.backend(), op.label(), result])
        })
        .inc();
    }

    /// Times `fut`, labels its outcome with `ok_label`, and passes it on.
    async fn observe<T>(
        &self,
        op: Op,
        fut: impl Future<Output = Result<T, CacheError>>,
        ok_label: impl FnOnce(&T) -> &'static str,
    ) -> Result<T, CacheError> {
        let start = Instant::now();
        // A span per operation of a sampled request (the target is off
        // when traces are; background work, probes and the queue's poll
        // make no traces of their own, nor do requests not sampled).
        let result = if !orchestrator_http::trace_context::in_sampled_trace() {
            fut.await
        } else {
            let span = tracing::trace_span!(
                target: "otel",
                "cache",
                otel.name = op.label(),
                otel.kind = "client",
                db.system.name = self.inner.backend(),
                db.operation.name = op.label(),
            );
            tracing::Instrument::instrument(fut, span).await
        };
        let label = match &result {
            Ok(v) => ok_label(v),
            Err(e) => {
                tracing::debug!(backend = self.inner.backend(), op = op.label(), error = %e, "cache operation failed");
                e.label()
            }
        };
        self.record(op, label, start.elapsed());
        result
    }
}

fn hit_or_miss<T>(v: &Option<T>) -> &'static str {
    if v.is_some() { "hit" } else { "miss" }
}

fn hit_if(found: &bool) -> &'static str {
    if *found { "hit" } else { "miss" }
}

#[async_trait::async_trait]
impl Cache for Instrumented {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        self.observe(Op::Get, self.inner.get(key), hit_or_miss)
            .await
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        self.observe(Op::Set, self.inner.set(key, value, ttl), |_| "ok")
            .await
    }

    async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        self.observe(
            Op::SetIfAbsent,
            self.inner.set_if_absent(key, value, ttl),
            |stored| if *stored { "stored" } else { "exists" },
        )
        .await
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        self.observe(Op::Take, self.inner.take(key), hit_or_miss)
            .await
    }

    async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        self.observe(Op::Delete, self.inner.delete(key), hit_if)
            .await
    }

    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool, CacheError> {
        self.observe(Op::Expire, self.inner.expire(key, ttl), hit_if)
            .await
    }

    async fn incr(&self, key: &str, ttl: Duration) -> Result<u64, CacheError> {
        self.observe(Op::Incr, self.inner.incr(key, ttl), |_| "ok")
            .await
    }

    async fn decr(&self, key: &str) -> Result<u64, CacheError> {
        self.observe(Op::Decr, self.inner.decr(key), |_| "ok").await
    }

    async fn enqueue(
        &self,
        queue: &str,
        item: &[u8],
        due_ms: u64,
        max: u64,
    ) -> Result<bool, CacheError> {
        self.observe(
            Op::Enqueue,
            self.inner.enqueue(queue, item, due_ms, max),
            |queued| if *queued { "stored" } else { "exists" },
        )
        .await
    }

    async fn claim_due(
        &self,
        queue: &str,
        now_ms: u64,
        lease_ms: u64,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, CacheError> {
        self.observe(
            Op::ClaimDue,
            self.inner.claim_due(queue, now_ms, lease_ms, limit),
            |items| if items.is_empty() { "miss" } else { "hit" },
        )
        .await
    }

    async fn dequeue(&self, queue: &str, item: &[u8]) -> Result<bool, CacheError> {
        self.observe(Op::Dequeue, self.inner.dequeue(queue, item), hit_if)
            .await
    }

    async fn health(&self) -> Result<(), CacheError> {
        let result = self
            .observe(Op::Health, self.inner.health(), |_| "ok")
            .await;
        // Health checks run on every readiness probe: a steady, cheap moment
        // to notice that the backend dropped state.
        if result.is_ok() {
            self.sync_evictions().await;
        }
        result
    }

    async fn evictions(&self) -> Result<Option<u64>, CacheError> {
        self.inner.evictions().await
    }

    fn record_decode_miss(&self, reason: &'static str) {
        self.metrics
            .decode_misses
            .with_label_values(&[self.inner.backend(), reason])
            .inc();
        self.inner.record_decode_miss(reason);
    }
}
