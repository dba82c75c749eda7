//! The span processor: every ended, sampled span is encoded into the open
//! batch at once ([`super::otlp_body`]), and a task on the tokio runtime
//! sends full batches, and every schedule delay whatever is open, to the
//! collector ([`super::otlp_http`]).
//!
//! In place of the SDK's batch processor, which moves each span through a
//! channel to a thread of its own, gathers them in a `Vec` and hands that
//! to an exporter: about 3,400 instructions a request more (benches
//! `instructions` scenario), and a thread. The bounds and the variables are
//! the same: at most `OTEL_BSP_MAX_QUEUE_SIZE` spans (2,048) wait, more are
//! dropped and counted (a request never waits for the collector), and, as
//! what a span holds comes partly from requests (a path may be 64 KiB), at
//! most 16 MiB of them encoded; a batch
//! holds at most `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` (512); the open batch
//! goes every `OTEL_BSP_SCHEDULE_DELAY` (5 s); one export may take
//! `OTEL_BSP_EXPORT_TIMEOUT` (30 s) or the exporter's timeout, the shorter.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use opentelemetry::{Context, InstrumentationScope};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use orchestrator_http::trace_context::{Ended, SpanSink};
use prometheus::IntCounter;
use tokio::sync::Notify;

use super::otlp_body::{self, Batch, Encoder};
use super::otlp_http::OtlpHttp;

/// What waiting spans may take, encoded: 2,048 spans of an 8 KiB path each.
const MAX_QUEUE_BYTES: usize = 16 * 1024 * 1024;

/// The batching bounds (`OTEL_BSP_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Settings {
    pub(crate) max_queue: usize,
    /// Encoded bytes that may wait (no standard variable: 16 MiB).
    pub(crate) max_queue_bytes: usize,
    pub(crate) max_batch: usize,
    pub(crate) delay: Duration,
    pub(crate) export_timeout: Duration,
}

impl Settings {
    /// From the standard variables, with their defaults; a value that is
    /// not a number is refused (naming the variable).
    pub(crate) fn from_env() -> Result<Self, String> {
        Self::from_lookup(|var| std::env::var(var).ok())
    }

    fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let number = |name: &str, default: u64| -> Result<u64, String> {
            match var(name) {
                Some(v) if !v.trim().is_empty() => v
                    .trim()
                    .parse()
                    .map_err(|_| format!("{name}: {v:?} is not a whole number")),
                _ => Ok(default),
            }
        };
        let max_queue = usize::try_from(number("OTEL_BSP_MAX_QUEUE_SIZE", 2_048)?)
            .unwrap_or(usize::MAX)
            .max(1);
        let max_batch = usize::try_from(number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)?)
            .unwrap_or(usize::MAX)
            .clamp(1, max_queue);
        Ok(Settings {
            max_queue,
            max_queue_bytes: MAX_QUEUE_BYTES,
            max_batch,
            delay: Duration::from_millis(number("OTEL_BSP_SCHEDULE_DELAY", 5_000)?.max(1)),
            export_timeout: Duration::from_millis(number("OTEL_BSP_EXPORT_TIMEOUT", 30_000)?),
        })
    }
}

/// The counters the pipeline keeps.
#[derive(Debug, Clone)]
pub(crate) struct Counters {
    /// Batches the collector did not take.
    pub(crate) export_failures: IntCounter,
    /// Spans dropped because the queue was full.
    pub(crate) spans_dropped: IntCounter,
}

/// The processor the tracer provider is built with.
#[derive(Debug)]
pub(crate) struct EncodingProcessor {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    /// A batch is full.
    wake: Notify,
    /// Held while batches are sent: one sender at a time, and a flush
    /// returns only once what was sending before it has gone.
    sending: tokio::sync::Mutex<()>,
    encoder: Encoder,
    settings: Settings,
    counters: Counters,
    exporter: OtlpHttp,
    /// The instrumentation scope of the request path's own spans.
    scope: InstrumentationScope,
    runtime: tokio::runtime::Handle,
}

#[derive(Debug, Default)]
struct Queue {
    open: Batch,
    full: VecDeque<Batch>,
    /// Spans in `open` and `full`, and their encoded bytes.
    waiting: usize,
    waiting_bytes: usize,
    shut: bool,
}

impl Queue {
    /// The open batch; the next one is made with room for as many bytes
    /// and an eighth more (spans differ a little in size: without it, most
    /// batches grew once, a copy of the whole buffer).
    fn take_open(&mut self) -> Batch {
        let room = self.open.bytes();
        std::mem::replace(&mut self.open, Batch::with_room(room + room / 8))
    }
}

impl EncodingProcessor {
    /// Where the request path's own spans go: the same batches.
    pub(crate) fn sink(&self) -> Arc<dyn SpanSink> {
        self.shared.clone()
    }

    /// Starts the sending task on the current tokio runtime; `scope` is
    /// the tracer's (the request path's spans are of it), `resource` the
    /// one the provider is built with.
    pub(crate) fn start(
        exporter: OtlpHttp,
        settings: Settings,
        counters: Counters,
        scope: InstrumentationScope,
        resource: &Resource,
    ) -> Self {
        let runtime = tokio::runtime::Handle::current();
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
            sending: tokio::sync::Mutex::new(()),
            encoder: Encoder::new(resource),
            settings,
            counters,
            exporter,
            scope,
            runtime: runtime.clone(),
        });
        runtime.spawn(Shared::run(Arc::clone(&shared)));
        EncodingProcessor { shared }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding the lock leaves a queue that is still whole.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends full batches as they come, and the open one every delay.
    async fn run(self: Arc<Self>) {
        loop {
            let due = tokio::select! {
                () = self.wake.notified() => false,
                () = tokio::time::sleep(self.settings.delay) => true,
            };
            if self.lock().shut {
                return;
            }
            self.send_waiting(due).await;
        }
    }

    /// Sends the full batches, and the open one too when `all`.
    async fn send_waiting(&self, all: bool) {
        let _sending = self.sending.lock().await;
        loop {
            let batch = {
                let mut q = self.lock();
                let batch = match q.full.pop_front() {
                    Some(b) => b,
                    None if all && q.open.len() > 0 => q.take_open(),
                    None => return,
                };
                q.waiting -= batch.len();
                q.waiting_bytes -= batch.bytes();
                batch
            };
            let body = self.encoder.finish(batch);
            let timeout = self.settings.export_timeout;
            let sent = tokio::time::timeout(timeout, self.exporter.send(body))
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")));
            if let Err(e) = sent {
                self.counters.export_failures.inc();
                tracing::debug!(error = %e, "trace export failed");
            }
        }
    }

    /// Sends everything waiting, from a thread outside the runtime (or a
    /// worker of a multi-thread one), giving up after `timeout`.
    fn flush_blocking(self: &Arc<Self>, timeout: Duration) -> OTelSdkResult {
        let (done, finished) = std::sync::mpsc::channel();
        let shared = Arc::clone(self);
        self.runtime.spawn(async move {
            shared.send_waiting(true).await;
            let _ = done.send(());
        });
        finished
            .recv_timeout(timeout)
            .map_err(|_| OTelSdkError::Timeout(timeout))
    }

    /// Encodes one ended, sampled span into the open batch, or drops and
    /// counts it when the queue is full.
    /// `own`: `scope` is the processor's own (see [`otlp_body::Encoder::append`]).
    fn append(&self, ended: &Ended<'_>, scope: &InstrumentationScope, own: bool) {
        let mut q = self.lock();
        if q.shut
            || q.waiting >= self.settings.max_queue
            || q.waiting_bytes >= self.settings.max_queue_bytes
        {
            drop(q);
            self.counters.spans_dropped.inc();
            return;
        }
        let before = q.open.bytes();
        self.encoder.append(&mut q.open, ended, scope, own);
        q.waiting += 1;
        q.waiting_bytes += q.open.bytes() - before;
        if q.open.len() >= self.settings.max_batch {
            let full = q.take_open();
            q.full.push_back(full);
            drop(q);
            self.wake.notify_one();
        }
    }
}

/// The request path's own spans ([`orchestrator_http::trace_context::Span`]), of the scope
/// the tracer has.
impl SpanSink for Shared {
    fn end(&self, span: &Ended<'_>) {
        self.append(span, &self.scope, true);
    }
}

impl SpanProcessor for EncodingProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if span.span_context.is_sampled() {
            self.shared
                .append(&otlp_body::ended(&span), &span.instrumentation_scope, false);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.shared
            .flush_blocking(self.shared.settings.export_timeout)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let result = self.shared.flush_blocking(timeout);
        self.shared.lock().shut = true;
        self.shared.wake.notify_one();
        result
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::time::UNIX_EPOCH;

    use bytes::Bytes;
    use http_body_util::{BodyExt as _, Full};
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use opentelemetry::trace::{
        SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
    };
    use opentelemetry::{InstrumentationScope, KeyValue};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use prost::Message as _;
    use tokio::sync::mpsc;

    use super::*;

    fn counters() -> Counters {
        Counters {
            export_failures: IntCounter::new("failures", "f").unwrap(),
            spans_dropped: IntCounter::new("dropped", "d").unwrap(),
        }
    }

    fn scope() -> InstrumentationScope {
        InstrumentationScope::builder("test").build()
    }

    fn settings(max_queue: usize, max_batch: usize) -> Settings {
        Settings {
            max_queue,
            max_queue_bytes: MAX_QUEUE_BYTES,
            max_batch,
            delay: Duration::from_secs(3600),
            export_timeout: Duration::from_secs(10),
        }
    }

    fn span(n: u64, sampled: bool) -> SpanData {
        let flags = if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(u128::from(n) + 1),
                SpanId::from(n + 1),
                flags,
                false,
                TraceState::NONE,
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: Cow::Owned(format!("span {n}")),
            start_time: UNIX_EPOCH + Duration::from_secs(1),
            end_time: UNIX_EPOCH + Duration::from_secs(2),
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: InstrumentationScope::builder("test").build(),
        }
    }

    /// A collector on loopback: every request's span names, in order.
    async fn collector() -> (String, mpsc::UnboundedReceiver<Vec<String>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let tx = tx.clone();
                        async move {
                            let body = req.into_body().collect().await?.to_bytes();
                            let decoded = ExportTraceServiceRequest::decode(body).unwrap();
                            let names = decoded
                                .resource_spans
                                .iter()
                                .flat_map(|r| &r.scope_spans)
                                .flat_map(|s| &s.spans)
                                .map(|s| s.name.clone())
                                .collect();
                            let _ = tx.send(names);
                            Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::new())))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        (url, rx)
    }

    async fn next(rx: &mut mpsc::UnboundedReceiver<Vec<String>>) -> Vec<String> {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("an export within 10 s")
            .expect("the collector is up")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn full_batches_go_at_once_and_the_rest_on_flush() {
        let (url, mut rx) = collector().await;
        let c = counters();
        let p = EncodingProcessor::start(
            OtlpHttp::new(&url).unwrap(),
            settings(100, 2),
            c.clone(),
            scope(),
            &Resource::builder_empty().build(),
        );
        for n in 0..5 {
            p.on_end(span(n, true));
        }
        // Not sampled: never exported.
        p.on_end(span(99, false));
        assert_eq!(next(&mut rx).await, ["span 0", "span 1"]);
        assert_eq!(next(&mut rx).await, ["span 2", "span 3"]);
        // The open batch waits for the schedule, or a flush.
        let p = tokio::task::spawn_blocking(move || {
            p.force_flush().unwrap();
            p
        })
        .await
        .unwrap();
        assert_eq!(next(&mut rx).await, ["span 4"]);
        assert_eq!(c.spans_dropped.get(), 0);
        assert_eq!(c.export_failures.get(), 0);
        tokio::task::spawn_blocking(move || p.shutdown().unwrap())
            .await
            .unwrap();
    }

    /// A processor started on a runtime nobody drives: the sending task
    /// never runs, so nothing leaves the queue.
    fn undriven(settings: Settings) -> (tokio::runtime::Runtime, EncodingProcessor, Counters) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let c = counters();
        let p = {
            let _inside = rt.enter();
            EncodingProcessor::start(
                OtlpHttp::new("http://127.0.0.1:9/v1/traces").unwrap(),
                settings,
                c.clone(),
                scope(),
                &Resource::builder_empty().build(),
            )
        };
        (rt, p, c)
    }

    #[test]
    fn a_full_queue_drops_spans_and_counts_them() {
        let (_rt, p, c) = undriven(settings(3, 2));
        for n in 0..5 {
            p.on_end(span(n, true));
        }
        assert_eq!(c.spans_dropped.get(), 2);
        let q = p.shared.lock();
        assert_eq!(q.waiting, 3);
        assert_eq!(q.full.len(), 1);
        assert_eq!(q.open.len(), 1);
    }

    #[test]
    fn spans_past_the_byte_bound_are_dropped_and_counted() {
        let (_rt, p, c) = undriven(Settings {
            max_queue_bytes: 10_000,
            ..settings(100, 50)
        });
        // Each span carries a 4 KiB path: the third fills the bound.
        for n in 0..5 {
            let mut s = span(n, true);
            s.attributes = vec![KeyValue::new("url.path", "/".repeat(4096))];
            p.on_end(s);
        }
        assert_eq!(c.spans_dropped.get(), 2);
        let q = p.shared.lock();
        assert_eq!(q.waiting, 3);
        assert!(q.waiting_bytes > 3 * 4096 && q.waiting_bytes < 3 * 4096 + 1024);
        assert_eq!(q.waiting_bytes, q.open.bytes());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_collector_that_is_down_is_counted_per_batch() {
        // A port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = counters();
        let p = EncodingProcessor::start(
            OtlpHttp::new(&format!("http://127.0.0.1:{port}/v1/traces")).unwrap(),
            settings(100, 1),
            c.clone(),
            scope(),
            &Resource::builder_empty().build(),
        );
        p.on_end(span(0, true));
        p.on_end(span(1, true));
        let failures = c.export_failures.clone();
        tokio::task::spawn_blocking(move || p.force_flush().unwrap())
            .await
            .unwrap();
        assert_eq!(failures.get(), 2);
    }

    #[test]
    fn settings_take_the_standard_variables() {
        let none = Settings::from_lookup(|_| None).unwrap();
        assert_eq!(
            none,
            Settings {
                max_queue: 2_048,
                max_queue_bytes: 16 * 1024 * 1024,
                max_batch: 512,
                delay: Duration::from_secs(5),
                export_timeout: Duration::from_secs(30),
            }
        );
        let set = Settings::from_lookup(|v| {
            Some(
                match v {
                    "OTEL_BSP_MAX_QUEUE_SIZE" => "100",
                    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE" => "1000",
                    "OTEL_BSP_SCHEDULE_DELAY" => " 250 ",
                    _ => "",
                }
                .to_owned(),
            )
        })
        .unwrap();
        // A batch never holds more than the queue.
        assert_eq!((set.max_queue, set.max_batch), (100, 100));
        assert_eq!(set.delay, Duration::from_millis(250));
        assert_eq!(set.export_timeout, Duration::from_secs(30));
        let e =
            Settings::from_lookup(|v| (v == "OTEL_BSP_SCHEDULE_DELAY").then(|| "5s".to_owned()))
                .unwrap_err();
        assert!(e.contains("OTEL_BSP_SCHEDULE_DELAY"), "{e}");
    }
}
