//! The process-wide Prometheus registry and the metrics the binary owns.

use std::time::Duration;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};
use tracing_appender::non_blocking::ErrorCounter;

/// The log writer's count of dropped lines, read at each scrape.
struct DroppedLines {
    dropped: ErrorCounter,
    counter: IntCounter,
    /// Scrapes may run at once: one at a time moves the counter up.
    catching_up: std::sync::Mutex<()>,
}

impl DroppedLines {
    fn new(dropped: ErrorCounter) -> Self {
        let counter = IntCounter::new(
            "orchestrator_log_lines_dropped_total",
            "Log lines (access lines included) dropped because the log writer fell behind.",
        )
        .unwrap_or_else(|_| unreachable!("a valid metric name and help"));
        Self {
            dropped,
            counter,
            catching_up: std::sync::Mutex::new(()),
        }
    }
}

impl Collector for DroppedLines {
    fn desc(&self) -> Vec<&Desc> {
        self.counter.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        {
            let _one = self
                .catching_up
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = u64::try_from(self.dropped.dropped_lines()).unwrap_or(u64::MAX);
            let seen = self.counter.get();
            if now > seen {
                self.counter.inc_by(now - seen);
            }
        }
        self.counter.collect()
    }
}

/// Metrics of the binary itself; the crates register their own on the same registry.
pub(crate) struct Metrics {
    pub(crate) registry: Registry,
    reloads: IntCounterVec,
    /// The main listener's series, resolved once (no label lookup per request).
    pub(crate) main: ListenerMetrics,
    /// The admin listener's series.
    pub(crate) admin: ListenerMetrics,
}

/// One listener's request counter (by status class) and latency histogram.
pub(crate) struct ListenerMetrics {
    /// `1xx` … `5xx`.
    by_class: [IntCounter; 5],
    latency: Histogram,
}

impl ListenerMetrics {
    fn new(requests: &IntCounterVec, latency: &HistogramVec, listener: &str) -> Self {
        Self {
            by_class: ["1xx", "2xx", "3xx", "4xx", "5xx"]
                .map(|class| requests.with_label_values(&[listener, class])),
            latency: latency.with_label_values(&[listener]),
        }
    }

    /// Counts one response and its time to the response head.
    pub(crate) fn request(&self, status: u16, elapsed: Duration) {
        let class = usize::from((status / 100).clamp(1, 5)) - 1;
        if let Some(counter) = self.by_class.get(class) {
            counter.inc();
        }
        self.latency.observe(elapsed.as_secs_f64());
    }
}

impl Metrics {
    pub(crate) fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let build_info = IntGaugeVec::new(
            Opts::new("orchestrator_build_info", "Build information; always 1."),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        registry.register(Box::new(build_info))?;
        let reloads = IntCounterVec::new(
            Opts::new(
                "orchestrator_config_reloads_total",
                "Config reloads after the files changed, by result (success or error).",
            ),
            &["result"],
        )?;
        registry.register(Box::new(reloads.clone()))?;
        let requests = IntCounterVec::new(
            Opts::new(
                "orchestrator_http_requests_total",
                "Requests served, by listener and status class.",
            ),
            &["listener", "status"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "orchestrator_http_request_duration_seconds",
                "Time to the response head, by listener.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            &["listener"],
        )?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        // Pre-create the series so dashboards see zeros rather than nothing.
        for result in ["success", "error"] {
            reloads.with_label_values(&[result]);
        }
        Ok(Self {
            registry,
            reloads,
            main: ListenerMetrics::new(&requests, &latency, "main"),
            admin: ListenerMetrics::new(&requests, &latency, "admin"),
        })
    }

    /// Publishes `orchestrator_log_lines_dropped_total`: log lines (access
    /// lines included) dropped because the writer thread fell behind.
    pub(crate) fn count_dropped_log_lines(&self, dropped: ErrorCounter) {
        if let Err(e) = self.registry.register(Box::new(DroppedLines::new(dropped))) {
            tracing::warn!(error = %e, "orchestrator_log_lines_dropped_total not registered");
        }
    }

    pub(crate) fn reload(&self, ok: bool) {
        self.reloads
            .with_label_values(&[if ok { "success" } else { "error" }])
            .inc();
    }

    /// The text exposition of every registered metric.
    pub(crate) fn render(&self) -> String {
        let encoder = prometheus::TextEncoder::new();
        encoder
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# metrics encoding failed: {e}\n"))
    }
}

/// The trace pipeline's counters (`orchestrator_trace_export_failures_total`,
/// `orchestrator_trace_spans_dropped_total`): made before the registry (the
/// pipeline starts before the metrics), registered with it.
pub(crate) fn trace_counters() -> crate::telemetry::Counters {
    let counter = |name: &str, help: &str| {
        IntCounter::new(name, help).unwrap_or_else(|_| unreachable!("a valid metric name"))
    };
    crate::telemetry::Counters {
        export_failures: counter(
            "orchestrator_trace_export_failures_total",
            "Batches of spans the OTLP exporter failed to send (collector down or refusing).",
        ),
        spans_dropped: counter(
            "orchestrator_trace_spans_dropped_total",
            "Spans dropped because the export queue was full (the collector is slower than the traffic).",
        ),
    }
}
