//! Trace spans on the request path, and W3C Trace Context (`traceparent`,
//! `tracestate`) across the process's edges: taken from a request only
//! when a trusted proxy sent it, put on every request the process makes
//! (upstream, IdP) from the current span.
//!
//! Off until [`enable`] is given the sampler and the exporter (traces
//! configured): then and only then do these functions do anything, so with
//! tracing off no request pays for them beyond one atomic load.
//!
//! The spans every proxied request makes (the request, its session lookup
//! and its upstream call) are made here directly, [`Span`], whose context a
//! [`Traced`] future makes current while it runs: sampled by the tracer
//! provider's sampler, recorded by a small [`opentelemetry::trace::Span`]
//! of our own and handed to the exporter's [`SpanSink`] when they end. The
//! SDK's spans (a tracer per span, limits, processors, a `SpanData` per
//! span) cost about 1,000 instructions a span more; through `tracing`,
//! several microseconds a span.
//! The rarer spans (login steps, IdP calls, cache operations) are `tracing`
//! spans of the target [`TARGET`], which the OpenTelemetry layer turns into
//! children of the current context; with tracing off no subscriber is
//! interested in that target and they cost a cached atomic load each.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::SystemTime;

use http::HeaderMap;
use opentelemetry::Context;
use opentelemetry::propagation::TextMapPropagator as _;
pub use opentelemetry::trace::SpanKind;
use opentelemetry::trace::{
    Event, Link, SpanContext, SpanId, Status, TraceContextExt as _, TraceFlags,
};
pub use opentelemetry::{KeyValue, StringValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    IdGenerator as _, RandomIdGenerator, Sampler, SamplingDecision, ShouldSample as _,
};

/// The target of every `tracing` span meant for traces (and for nothing
/// else).
pub const TARGET: &str = "otel";

/// A span as it ended: what an exporter writes.
#[derive(Debug)]
pub struct Ended<'a> {
    /// Its trace id, span id, flags and trace state.
    pub span_context: &'a SpanContext,
    /// The parent's span id (`SpanId::INVALID` for a root).
    pub parent_span_id: SpanId,
    /// Whether the parent came from another process.
    pub parent_span_is_remote: bool,
    /// Server, client, internal, …
    pub kind: &'a SpanKind,
    /// Its name.
    pub name: &'a str,
    /// When it started.
    pub start_time: SystemTime,
    /// When it ended.
    pub end_time: SystemTime,
    /// Its attributes (at most the limit).
    pub attributes: &'a [KeyValue],
    /// Attributes over the limit.
    pub dropped_attributes_count: u32,
    /// Its events (at most the limit).
    pub events: &'a [Event],
    /// Events over the limit.
    pub dropped_events_count: u32,
    /// Its links (at most the limit).
    pub links: &'a [Link],
    /// Links over the limit.
    pub dropped_links_count: u32,
    /// Unset, ok or error.
    pub status: &'a Status,
}

/// Where the spans made here go when they end (the exporter's batches).
pub trait SpanSink: Send + Sync + 'static {
    /// Takes one ended, sampled span.
    fn end(&self, span: &Ended<'_>);
}

/// What makes the spans: the sampler the tracer provider has, ids, and
/// where ended spans go.
struct Pipeline {
    sampler: Sampler,
    ids: RandomIdGenerator,
    sink: Arc<dyn SpanSink>,
}

static PIPELINE: OnceLock<Pipeline> = OnceLock::new();

/// Turns traces on: spans from here on are sampled by `sampler` (the one
/// the tracer provider was built with) and go to `sink` when they end.
pub fn enable(sampler: Sampler, sink: Arc<dyn SpanSink>) {
    let _ = PIPELINE.set(Pipeline {
        sampler,
        ids: RandomIdGenerator::default(),
        sink,
    });
}

/// Whether traces are exported.
pub fn enabled() -> bool {
    PIPELINE.get().is_some()
}

/// Whether the code running now is part of a traced request (a span of
/// it is current): background work makes no spans of its own.
pub fn in_trace() -> bool {
    enabled() && Context::map_current(|cx| cx.has_active_span())
}

/// The SDK's default span limits: more attributes, events or links than
/// this are counted, not kept.
const LIMIT: usize = 128;

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
        let pipeline = PIPELINE.get()?;
        let parent = if trusted && headers.contains_key(TRACEPARENT) {
            TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers))
        } else {
            Context::new()
        };
        Some(pipeline.start(&parent, name, SpanKind::Server, attributes))
    }

    /// A client or internal span under the current context, if that is a
    /// traced request's; `None` otherwise (or when tracing is off).
    /// `attributes` is called only then.
    pub fn child(
        name: &'static str,
        kind: SpanKind,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> Option<Span> {
        let pipeline = PIPELINE.get()?;
        let parent = Context::current();
        if !parent.has_active_span() {
            return None;
        }
        Some(pipeline.start(&parent, name, kind, attributes()))
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

impl Pipeline {
    /// A span under `parent` (a valid span of it, else a new trace), as the
    /// SDK's tracer makes one: sampled, it records until dropped; not
    /// sampled, it only carries its context (for `traceparent`).
    fn start(
        &self,
        parent: &Context,
        name: &'static str,
        kind: SpanKind,
        mut attributes: Vec<KeyValue>,
    ) -> Span {
        let parent_span = parent.span();
        let psc = parent_span.span_context();
        let (trace_id, parent_id, parent_remote, flags) = if psc.is_valid() {
            (
                psc.trace_id(),
                psc.span_id(),
                psc.is_remote(),
                psc.trace_flags(),
            )
        } else {
            (
                self.ids.new_trace_id(),
                SpanId::INVALID,
                false,
                TraceFlags::default(),
            )
        };
        let sampling =
            self.sampler
                .should_sample(Some(parent), trace_id, name, &kind, &attributes, &[]);
        let span_id = self.ids.new_span_id();
        let sampled = sampling.decision == SamplingDecision::RecordAndSample;
        let sc = SpanContext::new(
            trace_id,
            span_id,
            flags.with_sampled(sampled),
            false,
            sampling.trace_state,
        );
        if !sampled {
            // Recording a span nobody exports is wasted: the context alone
            // goes on (children and the upstream see it unsampled).
            return Span {
                cx: parent.with_remote_span_context(sc),
            };
        }
        if !sampling.attributes.is_empty() {
            attributes.extend(sampling.attributes);
        }
        let (attributes, dropped_attributes) = limited(attributes);
        Span {
            cx: parent.with_span(Recording {
                sc,
                parent_id,
                parent_remote,
                kind,
                name: Cow::Borrowed(name),
                start: SystemTime::now(),
                attributes,
                dropped_attributes,
                events: Vec::new(),
                dropped_events: 0,
                links: Vec::new(),
                dropped_links: 0,
                status: Status::Unset,
                sink: Some(Arc::clone(&self.sink)),
            }),
        }
    }
}

/// The first [`LIMIT`] attributes, and how many more there were.
fn limited(mut attributes: Vec<KeyValue>) -> (Vec<KeyValue>, u32) {
    let dropped = attributes.len().saturating_sub(LIMIT);
    attributes.truncate(LIMIT);
    (attributes, u32::try_from(dropped).unwrap_or(u32::MAX))
}

/// A sampled span's data while it runs; handed to the sink when it ends.
struct Recording {
    sc: SpanContext,
    parent_id: SpanId,
    parent_remote: bool,
    kind: SpanKind,
    name: Cow<'static, str>,
    start: SystemTime,
    attributes: Vec<KeyValue>,
    dropped_attributes: u32,
    events: Vec<Event>,
    dropped_events: u32,
    links: Vec<Link>,
    dropped_links: u32,
    status: Status,
    /// `None` once ended.
    sink: Option<Arc<dyn SpanSink>>,
}

impl opentelemetry::trace::Span for Recording {
    fn add_event_with_timestamp<T>(
        &mut self,
        name: T,
        timestamp: SystemTime,
        attributes: Vec<KeyValue>,
    ) where
        T: Into<Cow<'static, str>>,
    {
        if self.events.len() >= LIMIT {
            self.dropped_events = self.dropped_events.saturating_add(1);
            return;
        }
        let (attributes, dropped) = limited(attributes);
        self.events
            .push(Event::new(name, timestamp, attributes, dropped));
    }

    fn span_context(&self) -> &SpanContext {
        &self.sc
    }

    fn is_recording(&self) -> bool {
        self.sink.is_some()
    }

    fn set_attribute(&mut self, attribute: KeyValue) {
        if self.sink.is_none() {
            return;
        }
        if let Some(old) = self
            .attributes
            .iter_mut()
            .find(|kv| kv.key == attribute.key)
        {
            *old = attribute;
        } else if self.attributes.len() < LIMIT {
            self.attributes.push(attribute);
        } else {
            self.dropped_attributes = self.dropped_attributes.saturating_add(1);
        }
    }

    fn set_status(&mut self, status: Status) {
        // Ok > Error > Unset, as the SDK orders them.
        if status > self.status {
            self.status = status;
        }
    }

    fn update_name<T>(&mut self, new_name: T)
    where
        T: Into<Cow<'static, str>>,
    {
        self.name = new_name.into();
    }

    fn add_link(&mut self, span_context: SpanContext, attributes: Vec<KeyValue>) {
        if self.links.len() >= LIMIT || !span_context.is_valid() {
            self.dropped_links = self.dropped_links.saturating_add(1);
            return;
        }
        let (attributes, dropped) = limited(attributes);
        self.links
            .push(Link::new(span_context, attributes, dropped));
    }

    fn end_with_timestamp(&mut self, timestamp: SystemTime) {
        let Some(sink) = self.sink.take() else {
            return;
        };
        sink.end(&Ended {
            span_context: &self.sc,
            parent_span_id: self.parent_id,
            parent_span_is_remote: self.parent_remote,
            kind: &self.kind,
            name: &self.name,
            start_time: self.start,
            end_time: timestamp,
            attributes: &self.attributes,
            dropped_attributes_count: self.dropped_attributes,
            events: &self.events,
            dropped_events_count: self.dropped_events,
            links: &self.links,
            dropped_links_count: self.dropped_links,
            status: &self.status,
        });
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        opentelemetry::trace::Span::end_with_timestamp(self, SystemTime::now());
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
    use opentelemetry::trace::{TraceId, TraceState};

    struct Discard;

    impl SpanSink for Discard {
        fn end(&self, _span: &Ended<'_>) {}
    }

    /// What ended: (name, trace id, span id, parent id, attributes, status).
    type Kept = Vec<(
        String,
        TraceId,
        SpanId,
        SpanId,
        Vec<(String, String)>,
        Status,
    )>;

    #[derive(Default)]
    struct Keep(std::sync::Mutex<Kept>);

    impl SpanSink for Keep {
        fn end(&self, s: &Ended<'_>) {
            self.0.lock().unwrap().push((
                s.name.to_owned(),
                s.span_context.trace_id(),
                s.span_context.span_id(),
                s.parent_span_id,
                s.attributes
                    .iter()
                    .map(|kv| (kv.key.to_string(), kv.value.to_string()))
                    .collect(),
                s.status.clone(),
            ));
        }
    }

    fn pipeline(sampler: Sampler) -> (Pipeline, Arc<Keep>) {
        let keep = Arc::new(Keep::default());
        let p = Pipeline {
            sampler,
            ids: RandomIdGenerator::default(),
            sink: keep.clone(),
        };
        (p, keep)
    }

    #[test]
    fn spans_end_into_the_sink_as_a_tree_with_what_was_set() {
        // `route` acts only once traces are on (the global pipeline's sink
        // is not this test's: the spans here are made by a local one).
        enable(Sampler::AlwaysOn, Arc::new(Discard));
        let (p, keep) = pipeline(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)));
        let server = p.start(
            &Context::new(),
            "GET",
            SpanKind::Server,
            vec![KeyValue::new("url.path", "/a")],
        );
        let child = p.start(&server.cx, "upstream", SpanKind::Client, Vec::new());
        child.set(KeyValue::new("http.response.status_code", 502_i64));
        child.failed();
        drop(child);
        {
            let _in = server.cx.clone().attach();
            route(&http::Method::GET, &"/api".to_owned());
        }
        server.set(KeyValue::new("url.path", "/b"));
        assert_eq!(keep.0.lock().unwrap().len(), 1, "the child ended first");
        drop(server);
        let kept = keep.0.lock().unwrap();
        let (c, s) = (&kept[0], &kept[1]);
        assert_eq!(c.0, "upstream");
        assert_eq!(s.0, "GET /api");
        assert_eq!(c.1, s.1, "one trace");
        assert_eq!(c.3, s.2, "the child's parent is the server span");
        assert_eq!(s.3, SpanId::INVALID, "a root");
        assert!(matches!(c.5, Status::Error { .. }));
        assert_eq!(
            s.4,
            [
                ("url.path".to_owned(), "/b".to_owned()),
                ("http.route".to_owned(), "/api".to_owned())
            ],
            "set replaces an attribute of the same key"
        );
    }

    #[test]
    fn an_unsampled_parent_makes_unsampled_spans_that_still_propagate() {
        let (p, keep) = pipeline(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)));
        let remote = SpanContext::new(
            TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
            SpanId::from_hex("b7ad6b7169203331").unwrap(),
            TraceFlags::default(),
            true,
            TraceState::default(),
        );
        let parent = Context::new().with_remote_span_context(remote.clone());
        let server = p.start(&parent, "GET", SpanKind::Server, Vec::new());
        let sc = server.cx.span().span_context().clone();
        assert_eq!(sc.trace_id(), remote.trace_id());
        assert_ne!(sc.span_id(), remote.span_id());
        assert!(!sc.is_sampled());
        drop(server);
        let (off, off_keep) = pipeline(Sampler::AlwaysOff);
        drop(off.start(&Context::new(), "GET", SpanKind::Server, Vec::new()));
        assert!(keep.0.lock().unwrap().is_empty());
        assert!(off_keep.0.lock().unwrap().is_empty());
    }

    #[test]
    fn attributes_over_the_limit_are_counted_not_kept() {
        struct Count(std::sync::Mutex<Option<(usize, u32)>>);
        impl SpanSink for Count {
            fn end(&self, s: &Ended<'_>) {
                *self.0.lock().unwrap() = Some((s.attributes.len(), s.dropped_attributes_count));
            }
        }
        let count = Arc::new(Count(std::sync::Mutex::new(None)));
        let p = Pipeline {
            sampler: Sampler::AlwaysOn,
            ids: RandomIdGenerator::default(),
            sink: count.clone(),
        };
        let many = (0..LIMIT + 5)
            .map(|i| KeyValue::new(format!("k{i}"), 1_i64))
            .collect();
        let span = p.start(&Context::new(), "GET", SpanKind::Server, many);
        span.set(KeyValue::new("one.more", 1_i64));
        drop(span);
        assert_eq!(*count.0.lock().unwrap(), Some((LIMIT, 6)));
    }

    fn injected(sc: SpanContext) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(TRACESTATE, http::HeaderValue::from_static("old=1"));
        let cx = Context::new().with_remote_span_context(sc);
        let _guard = cx.attach();
        // `inject` is a no-op until traces are on.
        enable(Sampler::AlwaysOn, Arc::new(Discard));
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
