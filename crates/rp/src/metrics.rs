//! How the identity providers answer: the duration and the failures of
//! every call to one, by IdP and endpoint. One set per process (the gateway
//! and the provider both call IdPs through this crate), installed by the
//! binary with [`install_metrics`]; without it nothing is recorded.

use std::sync::OnceLock;
use std::time::Instant;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

struct IdpMetrics {
    duration: HistogramVec,
    errors: IntCounterVec,
}

static METRICS: OnceLock<IdpMetrics> = OnceLock::new();

/// Registers `orchestrator_idp_request_duration_seconds{idp, endpoint}` and
/// `orchestrator_idp_request_errors_total{idp, endpoint}` in `registry`
/// and records into them from now on; a second call changes nothing.
pub fn install_metrics(registry: &Registry) -> Result<(), prometheus::Error> {
    if METRICS.get().is_some() {
        return Ok(());
    }
    let duration = HistogramVec::new(
        HistogramOpts::new(
            "orchestrator_idp_request_duration_seconds",
            "Calls to identity providers, by IdP and endpoint (discovery, token, userinfo, introspection), errors included.",
        )
        .buckets(vec![
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0,
        ]),
        &["idp", "endpoint"],
    )?;
    let errors = IntCounterVec::new(
        Opts::new(
            "orchestrator_idp_request_errors_total",
            "Calls to identity providers that failed (unreachable, timed out, 5xx, refused), by IdP and endpoint.",
        ),
        &["idp", "endpoint"],
    )?;
    registry.register(Box::new(duration.clone()))?;
    registry.register(Box::new(errors.clone()))?;
    let _ = METRICS.set(IdpMetrics { duration, errors });
    Ok(())
}

/// Times one call to `idp`'s `endpoint`; `ok` says whether it succeeded.
pub(crate) struct Call<'a> {
    idp: &'a str,
    endpoint: &'static str,
    started: Instant,
}

impl<'a> Call<'a> {
    pub(crate) fn start(idp: &'a str, endpoint: &'static str) -> Self {
        Self {
            idp,
            endpoint,
            started: Instant::now(),
        }
    }

    pub(crate) fn done(self, ok: bool) {
        let Some(m) = METRICS.get() else {
            return;
        };
        let labels = [self.idp, self.endpoint];
        m.duration
            .with_label_values(&labels)
            .observe(self.started.elapsed().as_secs_f64());
        if !ok {
            m.errors.with_label_values(&labels).inc();
        }
    }
}
