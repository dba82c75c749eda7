//! The gateway's Prometheus metrics, registered once per process.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

/// Gateway metrics; create once with [`GatewayMetrics::new`] and share the `Arc`
/// across hot reloads (constructors of the gateway never register anything).
#[derive(Debug, Clone)]
pub struct GatewayMetrics {
    /// `orchestrator_gateway_requests_total{app, class}`: responses by app and status class.
    pub requests: IntCounterVec,
    /// `orchestrator_gateway_upstream_duration_seconds{app}`: time to upstream response headers.
    pub upstream_latency: HistogramVec,
    /// `orchestrator_gateway_logins_total{result}`: completed login callbacks by result.
    pub logins: IntCounterVec,
    /// `orchestrator_gateway_active_sessions`: sessions held in the local store.
    pub active_sessions: IntGauge,
}

impl GatewayMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "orchestrator_gateway_requests_total",
                "Requests answered by the gateway, by app and status class.",
            ),
            &["app", "class"],
        )?;
        let upstream_latency = HistogramVec::new(
            HistogramOpts::new(
                "orchestrator_gateway_upstream_duration_seconds",
                "Time from sending a request upstream to its response headers.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["app"],
        )?;
        let logins = IntCounterVec::new(
            Opts::new(
                "orchestrator_gateway_logins_total",
                "Login callbacks, by result (success, failure, expired).",
            ),
            &["result"],
        )?;
        let active_sessions = IntGauge::new(
            "orchestrator_gateway_active_sessions",
            "Gateway sessions held in this process's local store.",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(upstream_latency.clone()))?;
        registry.register(Box::new(logins.clone()))?;
        registry.register(Box::new(active_sessions.clone()))?;
        Ok(Self {
            requests,
            upstream_latency,
            logins,
            active_sessions,
        })
    }

    pub(crate) fn record(&self, app: &str, status: http::StatusCode) {
        let class = match status.as_u16() {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.requests.with_label_values(&[app, class]).inc();
    }
}
