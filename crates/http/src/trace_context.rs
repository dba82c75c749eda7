//! W3C Trace Context (`traceparent`, `tracestate`) across the process's
//! edges: taken from a request only when a trusted proxy sent it, put on
//! every request the process makes (upstream, IdP) from the current span.
//!
//! Off until [`enable`] is called (tracing configured): then and only then
//! do [`inject`] and [`parent_from`] do anything, so with tracing off no
//! request pays for them. The spans themselves use the target [`TARGET`]:
//! with tracing off no subscriber is interested in it and they cost a
//! cached atomic load each.

use std::sync::atomic::{AtomicBool, Ordering};

use http::HeaderMap;
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The target of every span meant for traces (and for nothing else).
pub const TARGET: &str = "otel";

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns propagation on (once traces are exported).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether traces are exported.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Writes the current span's context into `headers` (replacing any
/// `traceparent`/`tracestate` already there); nothing when tracing is off.
pub fn inject(headers: &mut HeaderMap) {
    if !enabled() {
        return;
    }
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new()
        .inject_context(&cx, &mut opentelemetry_http::HeaderInjector(headers));
}

/// Makes the context in `headers` the parent of `span`, when tracing is on
/// and `trusted` (the peer is a trusted proxy); otherwise the span starts a
/// trace of its own.
pub fn parent_from(span: &tracing::Span, headers: &HeaderMap, trusted: bool) {
    if !enabled() || !trusted || !headers.contains_key("traceparent") {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers));
    let _ = span.set_parent(cx);
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
/// conventions want it (`GET /api`), and records `http.route`.
pub fn route(method: &http::Method, route: &str) {
    if !enabled() {
        return;
    }
    let span = tracing::Span::current();
    span.record("http.route", route);
    // The span has started on the OpenTelemetry side: renamed there.
    span.context()
        .span()
        .update_name(format!("{} {route}", method_name(method)));
}
