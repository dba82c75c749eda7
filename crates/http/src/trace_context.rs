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
//! and its upstream call) are made here directly, [`Span`]: sampled by the
//! tracer provider's sampler, their well-known attributes kept as typed
//! fields ([`HttpAttributes`]: no key, value or allocation each) until the
//! exporter's [`SpanSink`] encodes them when they end. A [`Traced`] future
//! makes a span's context current while it runs, so what runs inside (child
//! spans, cache operations, `traceparent` on outgoing requests) is its
//! child; the context carries the span's ids only, the data stays with the
//! [`Span`], which its owner sets and ends. The SDK's spans (a tracer per
//! span, limits, processors, a `SpanData` per span) cost about 1,000
//! instructions a span more; through `tracing`, several microseconds a span.
//! The rarer spans (login steps, IdP calls, cache operations) are `tracing`
//! spans of the target [`TARGET`], which the OpenTelemetry layer turns into
//! children of the current context; with tracing off no subscriber is
//! interested in that target and they cost a cached atomic load each.

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
    Event, Link, SpanContext, SpanId, Status, TraceContextExt as _, TraceFlags, TraceState,
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
    /// Its name; see [`Ended::name`] for the name with its route.
    pub name: &'a str,
    /// When it started.
    pub start_time: SystemTime,
    /// When it ended.
    pub end_time: SystemTime,
    /// Its well-known HTTP attributes ([`HttpAttributes::NONE`] for the
    /// SDK's spans).
    pub http: &'a HttpAttributes,
    /// Its other attributes (at most the limit).
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

impl Ended<'_> {
    /// The span's name as exported: `name`, then ` {route}` when it has an
    /// `http.route` (the HTTP conventions' `{method} {http.route}`); as
    /// parts, so an encoder can write it without joining them first.
    pub fn name(&self) -> (&str, Option<&str>) {
        (self.name, self.http.route.as_ref().map(StringValue::as_str))
    }
}

/// The attributes every proxied request's spans have, by the HTTP semantic
/// conventions, as fields: set ones are exported, in this order, before
/// the span's other attributes.
#[derive(Debug, Clone, Default)]
pub struct HttpAttributes {
    /// `http.request.method`.
    pub method: Option<&'static str>,
    /// `url.path`: the request target's path, without its query (a clone
    /// of the request's URI shares its bytes).
    pub uri: Option<http::Uri>,
    /// `url.scheme`.
    pub scheme: Option<&'static str>,
    /// `network.peer.address` (made once per connection).
    pub peer: Option<StringValue>,
    /// `server.address`.
    pub server_address: Option<StringValue>,
    /// `server.port`.
    pub server_port: Option<u16>,
    /// `http.route`; it also names the span.
    pub route: Option<StringValue>,
    /// `http.response.status_code`.
    pub status_code: Option<u16>,
    /// `orchestrator.app`: the app that served the request.
    pub app: Option<StringValue>,
    /// `orchestrator.request_id`.
    pub request_id: Option<StringValue>,
}

impl HttpAttributes {
    /// None set.
    pub const NONE: Self = Self {
        method: None,
        uri: None,
        scheme: None,
        peer: None,
        server_address: None,
        server_port: None,
        route: None,
        status_code: None,
        app: None,
        request_id: None,
    };

    /// Calls `f` with each set attribute's key and value, in the exported
    /// order.
    pub fn each(&self, mut f: impl FnMut(&'static str, Attr<'_>)) {
        if let Some(m) = self.method {
            f("http.request.method", Attr::Text(m));
        }
        if let Some(uri) = &self.uri {
            f("url.path", Attr::Text(uri.path()));
        }
        if let Some(s) = self.scheme {
            f("url.scheme", Attr::Text(s));
        }
        if let Some(p) = &self.peer {
            f("network.peer.address", Attr::Text(p.as_str()));
        }
        if let Some(a) = &self.server_address {
            f("server.address", Attr::Text(a.as_str()));
        }
        if let Some(p) = self.server_port {
            f("server.port", Attr::Int(i64::from(p)));
        }
        if let Some(r) = &self.route {
            f("http.route", Attr::Text(r.as_str()));
        }
        if let Some(c) = self.status_code {
            f("http.response.status_code", Attr::Int(i64::from(c)));
        }
        if let Some(a) = &self.app {
            f("orchestrator.app", Attr::Text(a.as_str()));
        }
        if let Some(id) = &self.request_id {
            f("orchestrator.request_id", Attr::Text(id.as_str()));
        }
    }

    /// The set attributes as key-values, in the exported order (for a sink
    /// that takes key-values; the encoder's tests compare with it).
    pub fn key_values(&self) -> Vec<KeyValue> {
        let mut out = Vec::new();
        self.each(|k, v| {
            out.push(match v {
                Attr::Text(t) => KeyValue::new(k, t.to_owned()),
                Attr::Int(i) => KeyValue::new(k, i),
            })
        });
        out
    }
}

/// The value of one of [`HttpAttributes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attr<'a> {
    /// A string.
    Text(&'a str),
    /// An integer.
    Int(i64),
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
    /// Whether a span under a local parent takes the parent's decision
    /// (see [`inherits_decisions`]).
    inherit: bool,
    ids: RandomIdGenerator,
    sink: Arc<dyn SpanSink>,
}

/// Whether `sampler` decides a span under a local parent as it decided the
/// parent, so the parent's flag can stand for asking it: the SDK's
/// `ParentBased` takes the parent's flag whenever there is a parent;
/// `TraceIdRatioBased` decides by the trace id, which a child shares; the
/// constant ones are constant. Each keeps the parent's trace state. Every
/// sampler the configuration names is one of these; another (a remote
/// sampler) is asked for every span.
fn inherits_decisions(sampler: &Sampler) -> bool {
    matches!(
        sampler,
        Sampler::AlwaysOn
            | Sampler::AlwaysOff
            | Sampler::TraceIdRatioBased(_)
            | Sampler::ParentBased(_)
    )
}

static PIPELINE: OnceLock<Pipeline> = OnceLock::new();

/// Turns traces on: spans from here on are sampled by `sampler` (the one
/// the tracer provider was built with) and go to `sink` when they end.
pub fn enable(sampler: Sampler, sink: Arc<dyn SpanSink>) {
    let _ = PIPELINE.set(Pipeline {
        inherit: inherits_decisions(&sampler),
        sampler,
        ids: RandomIdGenerator::default(),
        sink,
    });
}

/// Whether traces are exported.
pub fn enabled() -> bool {
    PIPELINE.get().is_some()
}

/// Whether the code running now is part of a sampled request (a sampled
/// span of it is current): background work makes no spans of its own, and
/// a request that is not sampled none that nothing would record.
pub fn in_sampled_trace() -> bool {
    enabled() && Context::map_current(|cx| cx.span().span_context().is_sampled())
}

/// A span made here, ended when dropped.
pub struct Span {
    /// The context its children and outgoing requests continue: its ids.
    cx: Context,
    /// What it records; `None` when not sampled (only the context goes on).
    rec: Option<Box<Recording>>,
}

impl Span {
    /// The server span of a request: `name` (the method) until a route
    /// names it, with `http` (called only when it is sampled); continues
    /// the trace in `headers` when `trusted` (a trusted proxy sent them),
    /// else starts a trace. `None` when tracing is off.
    pub fn server(
        name: &'static str,
        http: impl FnOnce() -> HttpAttributes,
        headers: &HeaderMap,
        trusted: bool,
    ) -> Option<Span> {
        let pipeline = PIPELINE.get()?;
        let parent = if trusted && headers.contains_key(TRACEPARENT) {
            TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers))
        } else {
            Context::new()
        };
        Some(pipeline.start(&parent, name, SpanKind::Server, http))
    }

    /// A client or internal span under the current context, if that is a
    /// traced request's; `None` otherwise (or when tracing is off), and an
    /// internal one also when the request is not sampled (nothing would
    /// record it or see its id; a client span's id still goes out in
    /// `traceparent`). `http` is called only when it is sampled.
    pub fn child(
        name: &'static str,
        kind: SpanKind,
        http: impl FnOnce() -> HttpAttributes,
    ) -> Option<Span> {
        PIPELINE.get()?.child(name, kind, http)
    }

    /// Its HTTP attributes, to set; `None` when it is not sampled.
    pub fn http(&mut self) -> Option<&mut HttpAttributes> {
        self.rec.as_mut().map(|r| &mut r.http)
    }

    /// Writes its context into `headers` as W3C Trace Context, as
    /// [`inject`] writes the current one: for a request it sends itself
    /// (whose future then needs no [`within`]).
    pub fn inject(&self, headers: &mut HeaderMap) {
        write_trace_context(self.cx.span().span_context(), headers);
    }

    /// Marks the span failed.
    pub fn failed(&mut self) {
        if let Some(r) = &mut self.rec {
            // Ok > Error > Unset, as the SDK orders them.
            if r.status == Status::Unset {
                r.status = Status::error("");
            }
        }
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        let Some(rec) = self.rec.take() else {
            return;
        };
        let span = self.cx.span();
        rec.sink.end(&Ended {
            span_context: span.span_context(),
            parent_span_id: rec.parent_id,
            parent_span_is_remote: rec.parent_remote,
            kind: &rec.kind,
            name: rec.name,
            start_time: rec.start,
            end_time: SystemTime::now(),
            http: &rec.http,
            attributes: &[],
            dropped_attributes_count: 0,
            events: &[],
            dropped_events_count: 0,
            links: &[],
            dropped_links_count: 0,
            status: &rec.status,
        });
    }
}

impl Pipeline {
    /// A span under the current context, if that is a traced request's.
    fn child(
        &'static self,
        name: &'static str,
        kind: SpanKind,
        http: impl FnOnce() -> HttpAttributes,
    ) -> Option<Span> {
        let parent = Context::current();
        if !parent.has_active_span() {
            return None;
        }
        let parent_span = parent.span();
        let psc = parent_span.span_context();
        if self.inherit && psc.is_valid() && !psc.is_remote() {
            let sampled = psc.is_sampled();
            if !sampled && kind == SpanKind::Internal {
                return None;
            }
            let state = psc.trace_state().clone();
            return Some(self.open(&parent, psc, sampled, state, name, kind, http));
        }
        Some(self.start(&parent, name, kind, http))
    }

    /// A span under `parent` (a valid span of it, else a new trace), as the
    /// SDK's tracer makes one: sampled, it records until dropped; not
    /// sampled, it only carries its context (for `traceparent`). The
    /// sampler sees no attributes and adds none: the SDK's read and add
    /// none.
    fn start(
        &'static self,
        parent: &Context,
        name: &'static str,
        kind: SpanKind,
        http: impl FnOnce() -> HttpAttributes,
    ) -> Span {
        let parent_span = parent.span();
        let psc = parent_span.span_context();
        let trace_id = if psc.is_valid() {
            psc.trace_id()
        } else {
            self.ids.new_trace_id()
        };
        let sampling = self
            .sampler
            .should_sample(Some(parent), trace_id, name, &kind, &[], &[]);
        let sampled = sampling.decision == SamplingDecision::RecordAndSample;
        let root;
        let psc = if psc.is_valid() {
            psc
        } else {
            root = SpanContext::new(
                trace_id,
                SpanId::INVALID,
                TraceFlags::default(),
                false,
                TraceState::NONE,
            );
            &root
        };
        self.open(parent, psc, sampled, sampling.trace_state, name, kind, http)
    }

    /// The span of the decision `sampled` under `parent` (whose span's
    /// context is `psc`, or one with an invalid span id for a root, which
    /// gives the trace id).
    #[allow(clippy::too_many_arguments)]
    fn open(
        &'static self,
        parent: &Context,
        psc: &SpanContext,
        sampled: bool,
        trace_state: TraceState,
        name: &'static str,
        kind: SpanKind,
        http: impl FnOnce() -> HttpAttributes,
    ) -> Span {
        let (parent_id, parent_remote) = (psc.span_id(), psc.is_remote());
        let sc = SpanContext::new(
            psc.trace_id(),
            self.ids.new_span_id(),
            psc.trace_flags().with_sampled(sampled),
            false,
            trace_state,
        );
        // The context holds the ids only (a local span's: not remote).
        let cx = parent.with_remote_span_context(sc);
        if !sampled {
            // Recording a span nobody exports is wasted: the context alone
            // goes on (children and the upstream see it unsampled).
            return Span { cx, rec: None };
        }
        Span {
            cx,
            rec: Some(Box::new(Recording {
                parent_id,
                parent_remote,
                kind,
                name,
                start: SystemTime::now(),
                http: http(),
                status: Status::Unset,
                sink: &*self.sink,
            })),
        }
    }
}

/// A sampled span's data while it runs; handed to the sink when it ends.
struct Recording {
    parent_id: SpanId,
    parent_remote: bool,
    kind: SpanKind,
    name: &'static str,
    start: SystemTime,
    http: HttpAttributes,
    status: Status,
    /// The pipeline's (which lives as long as the process).
    sink: &'static dyn SpanSink,
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
    Context::map_current(|cx| write_trace_context(cx.span().span_context(), headers));
}

/// `sc` into `headers` as W3C Trace Context (see [`inject`]); nothing when
/// it is not a valid span's.
fn write_trace_context(sc: &SpanContext, headers: &mut HeaderMap) {
    if !sc.is_valid() {
        return;
    }
    // `00-{trace id}-{span id}-{flags}`, written into a fixed buffer: the
    // propagator formats and re-parses a String for it.
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
    let state = sc.trace_state();
    let state = (*state != TraceState::NONE).then(|| state.header());
    match state.as_deref().map(http::HeaderValue::from_str) {
        Some(Ok(v)) if !v.is_empty() => {
            headers.insert(TRACESTATE, v);
        }
        _ => {
            headers.remove(TRACESTATE);
        }
    }
}

const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
const TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");
const TRACEPARENT_LEN: usize = 55;

/// Each byte's two lower-case hex digits.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0; 2]; 256];
    let mut b = 0;
    while b < 256 {
        pairs[b] = [DIGITS[b >> 4], DIGITS[b & 0xf]];
        b += 1;
    }
    pairs
};

fn hex_into(out: &mut [u8], bytes: &[u8]) {
    for (pair, &b) in out.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(b)]);
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

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceId;

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
            let name = match s.name() {
                (name, None) => name.to_owned(),
                (name, Some(route)) => format!("{name} {route}"),
            };
            self.0.lock().unwrap().push((
                name,
                s.span_context.trace_id(),
                s.span_context.span_id(),
                s.parent_span_id,
                s.http
                    .key_values()
                    .iter()
                    .chain(s.attributes)
                    .map(|kv| (kv.key.to_string(), kv.value.to_string()))
                    .collect(),
                s.status.clone(),
            ));
        }
    }

    /// A pipeline of its own (leaked: spans hold it for `'static`, as they
    /// hold the process's one).
    fn pipeline(sampler: Sampler) -> (&'static Pipeline, Arc<Keep>) {
        let keep = Arc::new(Keep::default());
        let p = Box::leak(Box::new(Pipeline {
            inherit: inherits_decisions(&sampler),
            sampler,
            ids: RandomIdGenerator::default(),
            sink: keep.clone(),
        }));
        (p, keep)
    }

    fn pairs(kv: &[(&str, &str)]) -> Vec<(String, String)> {
        kv.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn spans_end_into_the_sink_as_a_tree_with_what_was_set() {
        let (p, keep) = pipeline(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)));
        let mut server = p.start(&Context::new(), "GET", SpanKind::Server, || {
            HttpAttributes {
                method: Some("GET"),
                uri: Some(http::Uri::from_static("/a/b?secret=1")),
                peer: Some("10.0.0.7".into()),
                ..HttpAttributes::NONE
            }
        });
        let mut child = p.start(&server.cx, "upstream", SpanKind::Client, || {
            HttpAttributes {
                server_port: Some(8080),
                ..HttpAttributes::NONE
            }
        });
        child.http().unwrap().status_code = Some(502);
        child.failed();
        drop(child);
        assert_eq!(keep.0.lock().unwrap().len(), 1, "the child ended first");
        let http = server.http().unwrap();
        http.route = Some("/a/{rest}".into());
        http.status_code = Some(200);
        drop(server);
        let kept = keep.0.lock().unwrap();
        let (c, s) = (&kept[0], &kept[1]);
        assert_eq!(c.0, "upstream");
        assert_eq!(s.0, "GET /a/{rest}", "a route names the span");
        assert_eq!(c.1, s.1, "one trace");
        assert_eq!(c.3, s.2, "the child's parent is the server span");
        assert_eq!(s.3, SpanId::INVALID, "a root");
        assert!(matches!(c.5, Status::Error { .. }));
        assert_eq!(s.5, Status::Unset);
        assert_eq!(
            c.4,
            pairs(&[
                ("server.port", "8080"),
                ("http.response.status_code", "502")
            ])
        );
        assert_eq!(
            s.4,
            pairs(&[
                ("http.request.method", "GET"),
                ("url.path", "/a/b"),
                ("network.peer.address", "10.0.0.7"),
                ("http.route", "/a/{rest}"),
                ("http.response.status_code", "200"),
            ]),
            "the path without its query"
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
        let mut server = p.start(&parent, "GET", SpanKind::Server, || HttpAttributes::NONE);
        let sc = server.cx.span().span_context().clone();
        assert_eq!(sc.trace_id(), remote.trace_id());
        assert_ne!(sc.span_id(), remote.span_id());
        assert!(!sc.is_sampled());
        assert!(server.http().is_none(), "nothing to record");
        drop(server);
        let (off, off_keep) = pipeline(Sampler::AlwaysOff);
        drop(off.start(&Context::new(), "GET", SpanKind::Server, || {
            HttpAttributes::NONE
        }));
        assert!(keep.0.lock().unwrap().is_empty());
        assert!(off_keep.0.lock().unwrap().is_empty());
    }

    /// Every sampler the configuration can name.
    fn configurable_samplers() -> Vec<Sampler> {
        let ratio = || Sampler::TraceIdRatioBased(0.5);
        vec![
            Sampler::AlwaysOn,
            Sampler::AlwaysOff,
            ratio(),
            Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
            Sampler::ParentBased(Box::new(ratio())),
        ]
    }

    #[test]
    fn children_take_the_decision_and_state_the_sampler_would_give_them() {
        let mut seen = (0, 0);
        for sampler in configurable_samplers() {
            assert!(inherits_decisions(&sampler), "{sampler:?}");
            let (p, _keep) = pipeline(sampler.clone());
            for n in 0..64_u64 {
                // No parent, and remote parents sampled and not, with state.
                let parent = match n % 3 {
                    0 => Context::new(),
                    r => Context::new().with_remote_span_context(SpanContext::new(
                        TraceId::from(
                            u128::from(n) << 64 | u128::from(n.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                        ),
                        SpanId::from(n + 1),
                        if r == 1 {
                            TraceFlags::SAMPLED
                        } else {
                            TraceFlags::default()
                        },
                        true,
                        TraceState::from_key_value([("vendor", "v1")]).unwrap(),
                    )),
                };
                let server = p.start(&parent, "GET", SpanKind::Server, || HttpAttributes::NONE);
                let server_sc = server.cx.span().span_context().clone();
                let asked = sampler.should_sample(
                    Some(&server.cx),
                    server_sc.trace_id(),
                    "upstream",
                    &SpanKind::Client,
                    &[],
                    &[],
                );
                let child = {
                    let _in = server.cx.clone().attach();
                    p.child("upstream", SpanKind::Client, HttpAttributes::default)
                        .expect("a client span goes on, sampled or not")
                };
                let sc = child.cx.span().span_context().clone();
                let sampled = asked.decision == SamplingDecision::RecordAndSample;
                assert_eq!(sc.is_sampled(), sampled, "{sampler:?}, parent {n}");
                assert_eq!(child.rec.is_some(), sampled);
                assert_eq!(sc.trace_state(), &asked.trace_state);
                assert_eq!(sc.trace_id(), server_sc.trace_id());
                if sampled { seen.0 += 1 } else { seen.1 += 1 }
            }
        }
        assert!(
            seen.0 > 0 && seen.1 > 0,
            "both decisions were checked: {seen:?}"
        );
    }

    #[test]
    fn an_unsampled_request_has_no_internal_spans_and_builds_no_attributes() {
        let (p, keep) = pipeline(Sampler::AlwaysOff);
        let server = p.start(&Context::new(), "GET", SpanKind::Server, || {
            panic!("attributes built for a span nobody records")
        });
        let _in = server.cx.clone().attach();
        assert!(
            p.child("session.lookup", SpanKind::Internal, || panic!("built"))
                .is_none(),
            "nothing would record it or see its id"
        );
        let upstream = p
            .child("upstream", SpanKind::Client, || panic!("built"))
            .expect("its id still goes to the upstream");
        let mut headers = HeaderMap::new();
        upstream.inject(&mut headers);
        let sc = upstream.cx.span().span_context().clone();
        assert_eq!(
            headers["traceparent"],
            format!("00-{}-{}-00", sc.trace_id(), sc.span_id()).as_str()
        );
        assert_eq!(sc.trace_id(), server.cx.span().span_context().trace_id());
        drop(upstream);
        assert!(keep.0.lock().unwrap().is_empty());
    }

    #[test]
    fn only_a_sampled_span_makes_the_code_in_it_part_of_a_sampled_trace() {
        enable(Sampler::AlwaysOn, Arc::new(Discard));
        assert!(!in_sampled_trace(), "outside any span");
        for (sampler, sampled) in [(Sampler::AlwaysOff, false), (Sampler::AlwaysOn, true)] {
            let (p, _keep) = pipeline(sampler);
            let server = p.start(&Context::new(), "GET", SpanKind::Server, || {
                HttpAttributes::NONE
            });
            let _in = server.cx.clone().attach();
            assert_eq!(in_sampled_trace(), sampled);
        }
    }

    #[test]
    fn a_local_parent_is_not_remote_to_its_children() {
        /// The spans' (span id, parent id, parent is remote).
        #[derive(Default)]
        struct Parents(std::sync::Mutex<Vec<(SpanId, SpanId, bool)>>);
        impl SpanSink for Parents {
            fn end(&self, s: &Ended<'_>) {
                self.0.lock().unwrap().push((
                    s.span_context.span_id(),
                    s.parent_span_id,
                    s.parent_span_is_remote,
                ));
            }
        }
        let keep = Arc::new(Parents::default());
        let p: &'static Pipeline = Box::leak(Box::new(Pipeline {
            sampler: Sampler::AlwaysOn,
            inherit: true,
            ids: RandomIdGenerator::default(),
            sink: keep.clone(),
        }));
        let server = p.start(&Context::new(), "GET", SpanKind::Server, || {
            HttpAttributes::NONE
        });
        assert!(!server.cx.span().span_context().is_remote());
        let child = {
            let _in = server.cx.clone().attach();
            p.child(
                "session.lookup",
                SpanKind::Internal,
                HttpAttributes::default,
            )
        };
        assert!(child.is_some(), "under the attached server span");
        drop(child);
        drop(server);
        let kept = keep.0.lock().unwrap();
        assert_eq!(
            kept[0].1, kept[1].0,
            "the child's parent is the server span"
        );
        assert!(!kept[0].2, "and not a remote one");
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
    fn a_span_writes_its_own_context_into_a_request_it_sends() {
        let (p, _keep) = pipeline(Sampler::AlwaysOn);
        let server = p.start(&Context::new(), "GET", SpanKind::Server, || {
            HttpAttributes::NONE
        });
        let upstream = {
            let _in = server.cx.clone().attach();
            p.child("upstream", SpanKind::Client, HttpAttributes::default)
                .expect("under the server span")
        };
        let mut headers = HeaderMap::new();
        headers.insert(TRACESTATE, http::HeaderValue::from_static("old=1"));
        upstream.inject(&mut headers);
        let sc = upstream.cx.span().span_context().clone();
        assert_eq!(
            headers["traceparent"],
            format!("00-{}-{}-01", sc.trace_id(), sc.span_id()).as_str(),
            "the upstream span's own ids, not the current context's (none)"
        );
        assert!(
            !headers.contains_key("tracestate"),
            "no state: the old one goes"
        );
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
