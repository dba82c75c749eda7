//! The provider's Prometheus metrics, registered once per process and shared
//! by every [`crate::Provider`] built on reload.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// Counters and histograms of the OpenID Provider.
#[derive(Debug, Clone)]
pub struct ProviderMetrics {
    /// Requests by endpoint and status code.
    pub(crate) requests: IntCounterVec,
    /// Request duration by endpoint.
    pub(crate) duration: HistogramVec,
    /// Tokens issued by grant type.
    pub(crate) tokens_issued: IntCounterVec,
    /// `orchestrator_oidc_token_errors_total{error}`.
    pub(crate) token_errors: IntCounterVec,
    /// Login attempts by result (success, failure, throttled).
    pub(crate) logins: IntCounterVec,
    /// Security events: code replay, refresh-token reuse.
    pub(crate) replays: IntCounterVec,
    /// Logins through upstream IdPs, by upstream and outcome.
    pub(crate) upstream_logins: IntCounterVec,
    /// Back-channel logout deliveries, by client and outcome.
    pub(crate) backchannel_logouts: IntCounterVec,
}

impl ProviderMetrics {
    /// Creates the metrics and registers them with `registry`. Call once.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "orchestrator_oidc_requests_total",
                "Requests served by the OIDC provider.",
            ),
            &["endpoint", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "orchestrator_oidc_request_duration_seconds",
                "Time to serve an OIDC provider request.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ]),
            &["endpoint"],
        )?;
        let tokens_issued = IntCounterVec::new(
            Opts::new(
                "orchestrator_oidc_tokens_issued_total",
                "Token responses issued, by client and grant type.",
            ),
            &["client", "grant_type"],
        )?;
        let token_errors = IntCounterVec::new(
            Opts::new(
                "orchestrator_oidc_token_errors_total",
                "Token requests refused, by OAuth error code (invalid_grant, invalid_client, ...).",
            ),
            &["error"],
        )?;
        registry.register(Box::new(token_errors.clone()))?;
        let logins = IntCounterVec::new(
            Opts::new(
                "orchestrator_oidc_logins_total",
                "Login form submissions, by result.",
            ),
            &["result"],
        )?;
        let replays = IntCounterVec::new(
            Opts::new(
                "orchestrator_oidc_replays_total",
                "Replayed authorization codes and reused refresh tokens (their grants are revoked).",
            ),
            &["kind"],
        )?;
        let upstream_logins = IntCounterVec::new(
            Opts::new(
                "orchestrator_oidc_upstream_logins_total",
                "Logins through upstream identity providers, by upstream and outcome (started, success, denied, failure, unavailable, invalid_state, replayed).",
            ),
            &["upstream", "outcome"],
        )?;
        registry.register(Box::new(upstream_logins.clone()))?;
        let backchannel_logouts = IntCounterVec::new(
            Opts::new(
                "orchestrator_oidc_backchannel_logouts_total",
                "Back-channel logout tokens sent to clients, by client and outcome (delivered, refused, failed).",
            ),
            &["client", "outcome"],
        )?;
        registry.register(Box::new(backchannel_logouts.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(tokens_issued.clone()))?;
        registry.register(Box::new(logins.clone()))?;
        registry.register(Box::new(replays.clone()))?;
        Ok(Self {
            requests,
            duration,
            tokens_issued,
            token_errors,
            logins,
            replays,
            upstream_logins,
            backchannel_logouts,
        })
    }
}
