//! Trace spans on the request path, and W3C Trace Context (`traceparent`,
//! `tracestate`) across the process's edges: taken from a request only
//! when a trusted proxy sent it, put on every request the process makes
//! (upstream, IdP) from the current span.
//!
//! Off until [`enable`] is given the tracer (traces configured): then and
//! only then do these functions do anything, so with tracing off no
//! request pays for them beyond one atomic load.
//!
//! The spans every proxied request makes (the request, its session lookup
//! and its upstream call) are OpenTelemetry spans made here directly,
//! [`Span`], whose context a [`Traced`] future makes current while it
//! runs: building them through `tracing` costs several microseconds a span.
//! The rarer spans (login steps, IdP calls, cache operations) are `tracing`
//! spans of the target [`TARGET`], which the OpenTelemetry layer turns into
//! children of the current context; with tracing off no subscriber is
//! interested in that target and they cost a cached atomic load each.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::Poll;

use http::HeaderMap;
use opentelemetry::Context;
use opentelemetry::propagation::TextMapPropagator as _;
pub use opentelemetry::trace::SpanKind;
use opentelemetry::trace::{Status, TraceContextExt as _, Tracer as _, TracerProvider as _};
pub use opentelemetry::{KeyValue, StringValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

/// The target of every `tracing` span meant for traces (and for nothing
/// else).
pub const TARGET: &str = "otel";

static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// Turns traces on: spans from here on are made by `provider`'s tracer.
pub fn enable(provider: &SdkTracerProvider) {
    let _ = TRACER.set(provider.tracer("orchestrator"));
}

/// Whether traces are exported.
pub fn enabled() -> bool {
    TRACER.get().is_some()
}

/// Whether the code running now is part of a traced request (a span of
/// it is current): background work makes no spans of its own.
pub fn in_trace() -> bool {
    enabled() && Context::map_current(|cx| cx.has_active_span())
}

/// A span made here, ended when dropped (with the contexts that hold it).
pub struct Span {
    cx: Context,
}

impl Span {
    /// The server span of a request: `name` (the method) until a route
    /// names it, with `attributes`; continues the trace in `headers` when
    /// `trusted` (a trusted proxy sent them), else starts a trace. `None`
    /// when tracing is off.
    pub fn server(
        name: &'static str,
        attributes: Vec<KeyValue>,
        headers: &HeaderMap,
        trusted: bool,
    ) -> Option<Span> {
        let tracer = TRACER.get()?;
        let parent = if trusted && headers.contains_key(TRACEPARENT) {
            TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers))
        } else {
            Context::new()
        };
        let span = tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .start_with_context(tracer, &parent);
        Some(Span {
            cx: parent.with_span(span),
        })
    }

    /// A client or internal span under the current context, if that is a
    /// traced request's; `None` otherwise (or when tracing is off).
    /// `attributes` is called only then.
    pub fn child(
        name: &'static str,
        kind: SpanKind,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> Option<Span> {
        let tracer = TRACER.get()?;
        let parent = Context::current();
        if !parent.has_active_span() {
            return None;
        }
        let span = tracer
            .span_builder(name)
            .with_kind(kind)
            .with_attributes(attributes())
            .start_with_context(tracer, &parent);
        Some(Span {
            cx: parent.with_span(span),
        })
    }

    /// Adds or replaces an attribute.
    pub fn set(&self, attribute: KeyValue) {
        self.cx.span().set_attribute(attribute);
    }

    /// Marks the span failed.
    pub fn failed(&self) {
        self.cx.span().set_status(Status::error(""));
    }
}

/// Runs `fut` with `span` (if any) as the current context on every poll,
/// so the spans, cache operations and outgoing requests in it are its
/// children.
pub fn within<F: Future>(span: Option<&Span>, fut: F) -> Traced<F> {
    Traced {
        fut,
        cx: span.map(|s| s.cx.clone()),
    }
}

pin_project_lite::pin_project! {
    /// A future run inside a span's context (see [`within`]).
    pub struct Traced<F> {
        #[pin]
        fut: F,
        cx: Option<Context>,
    }
}

impl<F: Future> Future for Traced<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, task: &mut std::task::Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _guard = this.cx.as_ref().map(|cx| cx.clone().attach());
        this.fut.poll(task)
    }
}

/// Writes the current span's context into `headers` as W3C Trace Context
/// (replacing any `traceparent`/`tracestate` already there); nothing when
/// tracing is off or no span is current.
pub fn inject(headers: &mut HeaderMap) {
    if !enabled() {
        return;
    }
    Context::map_current(|cx| {
        let span = cx.span();
        let sc = span.span_context();
        if !sc.is_valid() {
            return;
        }
        // `00-{trace id}-{span id}-{flags}`, written into a fixed buffer:
        // the propagator formats and re-parses a String for it.
        let mut value = [0u8; TRACEPARENT_LEN];
        value[..3].copy_from_slice(b"00-");
        hex_into(&mut value[3..35], &sc.trace_id().to_bytes());
        value[35] = b'-';
        hex_into(&mut value[36..52], &sc.span_id().to_bytes());
        value[52] = b'-';
        hex_into(&mut value[53..55], &[sc.trace_flags().to_u8() & 1]);
        if let Ok(v) = http::HeaderValue::from_bytes(&value) {
            headers.insert(TRACEPARENT, v);
        }
        let state = sc.trace_state().header();
        match http::HeaderValue::from_str(&state) {
            Ok(v) if !state.is_empty() => {
                headers.insert(TRACESTATE, v);
            }
            _ => {
                headers.remove(TRACESTATE);
            }
        }
    });
}

const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
const TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");
const TRACEPARENT_LEN: usize = 55;

fn hex_into(out: &mut [u8], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0xf)];
    }
}

/// The method as span names and attributes carry it: a standard one, or
/// `_OTHER` (any token is a method; names must stay few).
pub fn method_name(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::CONNECT => "CONNECT",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::TRACE => "TRACE",
        http::Method::PATCH => "PATCH",
        _ => "_OTHER",
    }
}

/// Names the current (request) span after its route, as the HTTP
/// conventions want it (`GET /api`), and records `http.route` (a shared
/// route, e.g. an `Arc<str>`, is recorded without a copy).
pub fn route<R>(method: &http::Method, route: &R)
where
    R: AsRef<str> + Clone + Into<StringValue>,
{
    if !enabled() {
        return;
    }
    Context::map_current(|cx| {
        let span = cx.span();
        let (method, route_text) = (method_name(method), route.as_ref());
        let mut name = String::with_capacity(method.len() + 1 + route_text.len());
        name.push_str(method);
        name.push(' ');
        name.push_str(route_text);
        span.update_name(name);
        span.set_attribute(KeyValue::new("http.route", route.clone().into()));
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

    fn injected(sc: SpanContext) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(TRACESTATE, http::HeaderValue::from_static("old=1"));
        let cx = Context::new().with_remote_span_context(sc);
        let _guard = cx.attach();
        // `inject` is a no-op until traces are on.
        let _ = TRACER.set(SdkTracerProvider::builder().build().tracer("test"));
        inject(&mut headers);
        headers
    }

    #[test]
    fn inject_writes_what_the_w3c_propagator_reads_back() {
        let sc = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::from_key_value([("vendor", "v1")]).unwrap(),
        );
        let headers = injected(sc.clone());
        assert_eq!(
            headers["traceparent"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert_eq!(headers["tracestate"], "vendor=v1");
        let back =
            TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(&headers));
        let back = back.span().span_context().clone();
        assert_eq!(back.trace_id(), sc.trace_id());
        assert_eq!(back.span_id(), sc.span_id());
        assert!(back.is_sampled());
        assert_eq!(back.trace_state().get("vendor"), Some("v1"));
    }

    #[test]
    fn an_unsampled_context_without_state_says_so_and_drops_old_state() {
        let sc = SpanContext::new(
            TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
            SpanId::from_hex("b7ad6b7169203331").unwrap(),
            TraceFlags::default(),
            true,
            TraceState::default(),
        );
        let headers = injected(sc);
        assert_eq!(
            headers["traceparent"],
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
        );
        assert!(!headers.contains_key("tracestate"));
    }
}
