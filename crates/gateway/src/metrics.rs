//! The gateway's Prometheus metrics, registered once per process.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

/// Gateway metrics; create once with [`GatewayMetrics::new`] and share the `Arc`
/// across hot reloads (constructors of the gateway never register anything).
#[derive(Debug, Clone)]
pub struct GatewayMetrics {
    /// `orchestrator_gateway_requests_total{app, class}`: responses by app and status class.
    pub requests: IntCounterVec,
    /// `orchestrator_gateway_upstream_duration_seconds{app}`: time to upstream response headers.
    pub upstream_latency: HistogramVec,
    /// `orchestrator_gateway_logins_total{idp, result, reason}`: login
    /// callbacks by IdP, result (success, failure, denied) and reason.
    pub logins: IntCounterVec,
    /// `orchestrator_gateway_logins_started_total{idp}`: logins sent to an IdP.
    pub logins_started: IntCounterVec,
    /// `orchestrator_gateway_active_sessions`: sessions held in the local store.
    pub active_sessions: IntGauge,
    /// `orchestrator_gateway_backchannel_logouts_total`: logout tokens accepted.
    pub sessions_ended_by_idp: IntCounter,
    /// `orchestrator_gateway_session_renewals_total{outcome}`: renewals of
    /// expired identities (renewed, refused, unavailable, expired).
    pub session_renewals: IntCounterVec,
    /// `orchestrator_gateway_tunnels_closed_total`: upgraded connections
    /// closed because their session ended or its user is refused.
    pub tunnels_closed: IntCounter,
    /// `orchestrator_gateway_sessions_created_total{idp}`: logins that made a session.
    pub sessions_created: IntCounterVec,
    /// `orchestrator_gateway_sessions_ended_total{reason}`: sessions ended,
    /// by reason (logout, backchannel, renewal_refused, identity_expired,
    /// replaced, expiry, eviction).
    pub sessions_ended: IntCounterVec,
    /// `orchestrator_gateway_policy_denials_total{app}`: signed-in users the
    /// app's policy refused (403), inline and through forward auth.
    pub policy_denials: IntCounterVec,
    /// `orchestrator_gateway_upstream_errors_total{app, kind}`: requests the
    /// upstream did not answer (`connect`: refused or failed; `timeout`).
    pub upstream_errors: IntCounterVec,
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
                "Login callbacks, by IdP, result (success, failure, denied) and reason (ok, expired, wrong_browser, idp_error, idp_gone, issuer_mismatch, exchange_failed).",
            ),
            &["idp", "result", "reason"],
        )?;
        let logins_started = IntCounterVec::new(
            Opts::new(
                "orchestrator_gateway_logins_started_total",
                "Logins started (the browser sent to the IdP), by IdP.",
            ),
            &["idp"],
        )?;
        registry.register(Box::new(logins_started.clone()))?;
        let active_sessions = IntGauge::new(
            "orchestrator_gateway_active_sessions",
            "Gateway sessions held in this process's local store.",
        )?;
        let sessions_ended_by_idp = IntCounter::new(
            "orchestrator_gateway_backchannel_logouts_total",
            "Back-channel logout tokens accepted (each ends the sessions it names).",
        )?;
        let session_renewals = IntCounterVec::new(
            Opts::new(
                "orchestrator_gateway_session_renewals_total",
                "Renewals of sessions whose ID token expired, by outcome (renewed; refused: the IdP said no and the session ended; unavailable: retried later; expired: nothing could renew it and the grace ran out).",
            ),
            &["outcome"],
        )?;
        let tunnels_closed = IntCounter::new(
            "orchestrator_gateway_tunnels_closed_total",
            "Upgraded connections (WebSocket) closed because their session ended or the policy no longer admits its user.",
        )?;
        let sessions_created = IntCounterVec::new(
            Opts::new(
                "orchestrator_gateway_sessions_created_total",
                "Gateway sessions created by a login, by identity provider.",
            ),
            &["idp"],
        )?;
        let sessions_ended = IntCounterVec::new(
            Opts::new(
                "orchestrator_gateway_sessions_ended_total",
                "Gateway sessions ended, by reason (logout, backchannel, renewal_refused, identity_expired, replaced; expiry and eviction for the local store).",
            ),
            &["reason"],
        )?;
        let policy_denials = IntCounterVec::new(
            Opts::new(
                "orchestrator_gateway_policy_denials_total",
                "Signed-in users an app's policy refused (403), by app.",
            ),
            &["app"],
        )?;
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "orchestrator_gateway_upstream_errors_total",
                "Requests the upstream did not answer, by app and kind (connect, timeout).",
            ),
            &["app", "kind"],
        )?;
        registry.register(Box::new(sessions_created.clone()))?;
        registry.register(Box::new(sessions_ended.clone()))?;
        registry.register(Box::new(policy_denials.clone()))?;
        registry.register(Box::new(upstream_errors.clone()))?;
        registry.register(Box::new(session_renewals.clone()))?;
        registry.register(Box::new(tunnels_closed.clone()))?;
        registry.register(Box::new(sessions_ended_by_idp.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(upstream_latency.clone()))?;
        registry.register(Box::new(logins.clone()))?;
        registry.register(Box::new(active_sessions.clone()))?;
        Ok(Self {
            requests,
            upstream_latency,
            logins,
            logins_started,
            active_sessions,
            sessions_ended_by_idp,
            session_renewals,
            tunnels_closed,
            sessions_created,
            sessions_ended,
            policy_denials,
            upstream_errors,
        })
    }

    pub(crate) fn renewal(&self, outcome: &str) {
        self.session_renewals.with_label_values(&[outcome]).inc();
    }

    pub(crate) fn record(&self, app: &str, status: http::StatusCode) {
        self.requests
            .with_label_values(&[app, CLASSES[class_index(status)]])
            .inc();
    }
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn class_index(status: http::StatusCode) -> usize {
    usize::from((status.as_u16() / 100).clamp(1, 5)) - 1
}

/// One app's series, resolved when the app is built (no label lookup per request).
#[derive(Debug)]
pub(crate) struct AppMetrics {
    by_class: [IntCounter; 5],
    upstream_latency: Histogram,
    /// Signed-in users the policy refused.
    pub(crate) denials: IntCounter,
    /// The upstream failed to answer: connect (or any transport failure), timeout.
    pub(crate) upstream_connect_errors: IntCounter,
    pub(crate) upstream_timeouts: IntCounter,
}

impl AppMetrics {
    pub(crate) fn new(metrics: &GatewayMetrics, app: &str) -> Self {
        Self {
            by_class: CLASSES.map(|class| metrics.requests.with_label_values(&[app, class])),
            upstream_latency: metrics.upstream_latency.with_label_values(&[app]),
            denials: metrics.policy_denials.with_label_values(&[app]),
            upstream_connect_errors: metrics.upstream_errors.with_label_values(&[app, "connect"]),
            upstream_timeouts: metrics.upstream_errors.with_label_values(&[app, "timeout"]),
        }
    }

    /// Counts one response of this app.
    pub(crate) fn record(&self, status: http::StatusCode) {
        if let Some(counter) = self.by_class.get(class_index(status)) {
            counter.inc();
        }
    }

    /// Time from sending upstream to the response head.
    pub(crate) fn upstream(&self, elapsed: std::time::Duration) {
        self.upstream_latency.observe(elapsed.as_secs_f64());
    }
}
