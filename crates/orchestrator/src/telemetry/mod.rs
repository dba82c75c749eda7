//! OpenTelemetry traces: OTLP over HTTP (protobuf) through the hyper
//! client, set up from `traces` in the config or the standard variables
//! (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_PROTOCOL`,
//! `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`/`_ARG`,
//! `OTEL_RESOURCE_ATTRIBUTES`); off when neither names an endpoint (or
//! `OTEL_SDK_DISABLED=true`), and then nothing of it runs.
//!
//! Spans are batched ([`batch`]): a bounded queue (2,048 spans) that drops
//! when full, so export never blocks a request, counted in
//! `orchestrator_trace_spans_dropped_total`; each span is encoded as it ends
//! ([`otlp_body`]), batches are sent on the tokio runtime ([`otlp_http`]),
//! and failed batches are counted in
//! `orchestrator_trace_export_failures_total`.

mod batch;
mod otlp_body;
mod otlp_http;

pub(crate) use batch::Counters;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
use orchestrator_config::TracesConfig;

/// The running trace pipeline; flushes what is queued when shut down.
pub(crate) struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// Sends what is still queued (bounded by the exporter's timeout).
    pub(crate) fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::debug!(error = %e, "trace pipeline shutdown");
        }
    }
}

/// The endpoint the config or the environment names, if traces are on.
fn endpoint(cfg: &TracesConfig) -> Option<String> {
    if std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true")) {
        return None;
    }
    let base = cfg
        .endpoint
        .clone()
        .or_else(|| non_empty("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").map(|e| format!("{e}#signal")))
        .or_else(|| non_empty("OTEL_EXPORTER_OTLP_ENDPOINT"))?;
    // The signal-specific variable is the full URL already; the others are
    // the collector's base URL.
    Some(match base.strip_suffix("#signal") {
        Some(full) => full.to_owned(),
        None => format!("{}/v1/traces", base.trim_end_matches('/')),
    })
}

fn non_empty(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.is_empty())
}

fn sampler(name: &str, arg: Option<f64>) -> Option<Sampler> {
    let ratio = arg.unwrap_or(1.0);
    Some(match name {
        "always_on" => Sampler::AlwaysOn,
        "always_off" => Sampler::AlwaysOff,
        "traceidratio" => Sampler::TraceIdRatioBased(ratio),
        "parentbased_always_on" => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        "parentbased_always_off" => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        "parentbased_traceidratio" => {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio)))
        }
        _ => return None,
    })
}

/// The instrumentation scope of every span (the tracing layer's and the
/// request path's).
const TRACER_NAME: &str = "orchestrator";

/// The sampler names the config and `OTEL_TRACES_SAMPLER` take.
const SAMPLERS: &str = "always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio";

/// `traces.sampler`/`samplerArg`, else `OTEL_TRACES_SAMPLER`/`_ARG`, else
/// `parentbased_always_on`: one sampler for the tracing layer's spans and
/// the request path's.
fn configured_sampler(cfg: &TracesConfig) -> Result<Sampler, String> {
    if let Some(name) = &cfg.sampler {
        return sampler(name, cfg.sampler_arg)
            .ok_or_else(|| format!("traces.sampler: unknown sampler {name} (one of {SAMPLERS})"));
    }
    let Some(name) = non_empty("OTEL_TRACES_SAMPLER") else {
        return Ok(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)));
    };
    let arg = match non_empty("OTEL_TRACES_SAMPLER_ARG") {
        Some(text) => Some(
            text.trim()
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| {
                    format!("OTEL_TRACES_SAMPLER_ARG: {text:?} is not a ratio from 0 to 1")
                })?,
        ),
        None => None,
    };
    sampler(name.trim(), arg)
        .ok_or_else(|| format!("OTEL_TRACES_SAMPLER: unknown sampler {name} (one of {SAMPLERS})"))
}

/// Builds the pipeline when traces are configured: the tracer for the
/// tracing layer, and the handle to shut it down. Must run inside the
/// tokio runtime (batches are sent on it).
pub(crate) fn init(
    cfg: &TracesConfig,
    counters: Counters,
) -> Result<Option<(SdkTracer, Traces)>, String> {
    let Some(endpoint) = endpoint(cfg) else {
        return Ok(None);
    };
    if !endpoint.starts_with("http://") {
        return Err(format!(
            "traces: the OTLP endpoint {endpoint} must be http:// (TLS to the collector is not supported; run it in-cluster or as a sidecar)"
        ));
    }
    let protocol = cfg
        .protocol
        .clone()
        .or_else(|| non_empty("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|| "http/protobuf".to_owned());
    if protocol != "http/protobuf" {
        return Err(format!(
            "traces.protocol: {protocol} is not supported (only http/protobuf)"
        ));
    }
    let sampler = configured_sampler(cfg)?;
    let service = cfg
        .service_name
        .clone()
        .or_else(|| non_empty("OTEL_SERVICE_NAME"))
        .unwrap_or_else(|| "orchestrator".to_owned());
    let resource = Resource::builder()
        .with_service_name(service)
        .with_attributes(
            cfg.resource_attributes
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        )
        .build();
    let exporter = otlp_http::OtlpHttp::new(&endpoint)?;
    let processor = batch::EncodingProcessor::start(
        exporter,
        batch::Settings::from_env()?,
        counters,
        InstrumentationScope::builder(TRACER_NAME).build(),
        &resource,
    );
    let sink = processor.sink();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(sampler.clone())
        .with_resource(resource)
        .build();
    let tracer = provider.tracer(TRACER_NAME);
    orchestrator_http::trace_context::enable(sampler, sink);
    Ok(Some((tracer, Traces { provider })))
}
