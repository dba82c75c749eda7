//! The body of an OTLP/HTTP trace export (`ExportTraceServiceRequest`,
//! protobuf), written straight from ended spans (the SDK's, and the request
//! path's own).
//!
//! The OTLP crate converts every span into its generated message types
//! first (a `String` or `Vec` per id, name, key and value), measures each
//! nested message again at every level when encoding, then frees it all:
//! about 9,700 instructions per span, so for a proxied request's three
//! spans half of what the gateway spends proxying it (benches
//! `instructions` scenario); here about 1,300. Each span is written once into the batch's buffer with prost's wire primitives: the
//! messages and field numbers are those of
//! `opentelemetry/proto/trace/v1/trace.proto` (and `common`, `resource`),
//! and a test decodes what is written with the generated types and
//! compares it with the OTLP crate's own conversion of the same spans.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use opentelemetry::trace::{SpanId, SpanKind, Status, TraceState};
use opentelemetry::{Array, InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SpanData;
use orchestrator_http::trace_context::{Attr, Ended, HttpAttributes};
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

/// The parts of a batch that do not change between batches: the process's
/// resource, encoded once.
#[derive(Debug)]
pub(crate) struct Encoder {
    /// `ResourceSpans.resource` (field 1, the `Resource` message) and
    /// `ResourceSpans.schema_url` (field 3), as written.
    resource: Vec<u8>,
    schema: Vec<u8>,
}

/// Spans encoded so far for one export request, grouped by scope.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    scopes: Vec<ScopeSpans>,
    last: usize,
    /// Where the spans of the scope passed as `own` go (found once).
    own: Option<usize>,
    spans: usize,
    /// The spans' encoded bytes.
    bytes: usize,
    /// Room for spans the first scope's buffer is made with.
    room: usize,
}

#[derive(Debug)]
struct ScopeSpans {
    scope: InstrumentationScope,
    /// `ScopeSpans.scope` (field 1), as written.
    head: Vec<u8>,
    /// `ScopeSpans.schema_url` (field 3), as written.
    tail: Vec<u8>,
    /// `reserved` bytes of room, then the `ScopeSpans.spans` fields.
    body: Vec<u8>,
    reserved: usize,
}

impl Batch {
    /// An empty batch with room for `bytes` of spans (what the last full
    /// one took, so its buffer is not grown again span by span), within
    /// 16 KiB to 4 MiB.
    pub(crate) fn with_room(bytes: usize) -> Self {
        Self {
            room: bytes.clamp(MIN_ROOM, MAX_ROOM),
            ..Self::default()
        }
    }

    /// How many spans are in it.
    pub(crate) fn len(&self) -> usize {
        self.spans
    }

    /// How many bytes its spans take, encoded.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

/// The least and most room a batch's buffer is made with.
const MIN_ROOM: usize = 16 * 1024;
const MAX_ROOM: usize = 4 * 1024 * 1024;

/// The largest key and length prefix of a length-delimited field.
const MAX_PREFIX: usize = 1 + 10;

/// `SpanFlags`: the context's remoteness is known, and whether it is remote.
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

impl Encoder {
    /// An encoder for the spans of `resource`.
    pub(crate) fn new(resource: &Resource) -> Self {
        let mut fields = Vec::new();
        for (key, value) in resource.iter() {
            key_value(&mut fields, 1, key.as_str(), value);
        }
        let mut encoded = Vec::with_capacity(fields.len() + MAX_PREFIX);
        length_delimited(&mut encoded, 1, &fields);
        let mut schema = Vec::new();
        string(&mut schema, 3, resource.schema_url().unwrap_or_default());
        Encoder {
            resource: encoded,
            schema,
        }
    }

    /// Adds `span` to `batch`, under the instrumentation scope that made
    /// it (scopes in the order they first appear). `own`: `scope` is the
    /// caller's one scope, always the same (its place is not looked up
    /// again).
    pub(crate) fn append(
        &self,
        batch: &mut Batch,
        span: &Ended<'_>,
        scope: &InstrumentationScope,
        own: bool,
    ) {
        let at = if let Some(at) = batch.own.filter(|_| own) {
            at
        } else if batch
            .scopes
            .get(batch.last)
            .is_some_and(|s| same(&s.scope, scope))
        {
            batch.last
        } else if let Some(i) = batch.scopes.iter().position(|s| same(&s.scope, scope)) {
            i
        } else {
            let mut head = Vec::with_capacity(64);
            message(&mut head, 1, |buf| write_scope(buf, scope));
            let mut tail = Vec::new();
            string(&mut tail, 3, scope.schema_url().unwrap_or_default());
            // Room for what goes in front of the spans when this is the
            // batch's only scope: the request's and the `ResourceSpans`'
            // prefixes, the resource, the `ScopeSpans` prefix and its scope.
            let reserved = MAX_PREFIX * 2 + self.resource.len() + MAX_PREFIX + head.len();
            // The room is the first scope's: the others are rare.
            let room = std::mem::take(&mut batch.room);
            let mut body = Vec::with_capacity(reserved + room.max(MIN_ROOM));
            body.resize(reserved, 0);
            batch.scopes.push(ScopeSpans {
                scope: scope.clone(),
                head,
                tail,
                body,
                reserved,
            });
            batch.scopes.len() - 1
        };
        batch.last = at;
        if own {
            batch.own = Some(at);
        }
        batch.spans += 1;
        let body = &mut batch.scopes[at].body;
        let before = body.len();
        message(body, 2, |buf| write_span(buf, span));
        batch.bytes += body.len() - before;
    }

    /// The export request (`ExportTraceServiceRequest`) of `batch`: one
    /// `ResourceSpans`, one `ScopeSpans` per scope. With one scope (the
    /// usual case) the spans are not copied: the rest is written into the
    /// room left in front of them.
    pub(crate) fn finish(&self, batch: Batch) -> Bytes {
        let scope_len = |s: &ScopeSpans| s.head.len() + (s.body.len() - s.reserved) + s.tail.len();
        let scopes_len: usize = batch.scopes.iter().map(|s| field_len(scope_len(s))).sum();
        let rs_len = self.resource.len() + scopes_len + self.schema.len();
        let mut front = Vec::with_capacity(MAX_PREFIX * 3 + self.resource.len() + 64);
        prefix(&mut front, 1, rs_len);
        front.extend_from_slice(&self.resource);
        let mut scopes = batch.scopes.into_iter();
        match (scopes.next(), scopes.next()) {
            (Some(mut only), None) => {
                prefix(&mut front, 2, scope_len(&only));
                front.extend_from_slice(&only.head);
                let start = only.reserved - front.len();
                only.body[start..only.reserved].copy_from_slice(&front);
                only.body.extend_from_slice(&only.tail);
                only.body.extend_from_slice(&self.schema);
                Bytes::from(only.body).slice(start..)
            }
            (first, second) => {
                let mut out = front;
                out.reserve(scopes_len + self.schema.len());
                for s in first.into_iter().chain(second).chain(scopes) {
                    prefix(&mut out, 2, scope_len(&s));
                    out.extend_from_slice(&s.head);
                    out.extend_from_slice(&s.body[s.reserved..]);
                    out.extend_from_slice(&s.tail);
                }
                out.extend_from_slice(&self.schema);
                Bytes::from(out)
            }
        }
    }
}

/// Whether two scopes are one: equal field by field in order first (the
/// SDK's equality sorts copies of the attributes, on every span).
fn same(a: &InstrumentationScope, b: &InstrumentationScope) -> bool {
    (a.name() == b.name()
        && a.version() == b.version()
        && a.schema_url() == b.schema_url()
        && a.attributes().eq(b.attributes()))
        || a == b
}

/// The encoded size of a length-delimited field of `len` bytes with a tag
/// below 16, its key and length included.
fn field_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// The SDK's span data as what an exporter writes.
pub(crate) fn ended(span: &SpanData) -> Ended<'_> {
    Ended {
        span_context: &span.span_context,
        parent_span_id: span.parent_span_id,
        parent_span_is_remote: span.parent_span_is_remote,
        kind: &span.span_kind,
        name: &span.name,
        start_time: span.start_time,
        end_time: span.end_time,
        http: &HttpAttributes::NONE,
        attributes: &span.attributes,
        dropped_attributes_count: span.dropped_attributes_count,
        events: &span.events.events,
        dropped_events_count: span.events.dropped_count,
        links: &span.links.links,
        dropped_links_count: span.links.dropped_count,
        status: &span.status,
    }
}

fn write_span(buf: &mut Vec<u8>, span: &Ended<'_>) {
    let cx = span.span_context;
    bytes(buf, 1, &cx.trace_id().to_bytes());
    bytes(buf, 2, &cx.span_id().to_bytes());
    trace_state(buf, 3, cx.trace_state());
    if span.parent_span_id != SpanId::INVALID {
        bytes(buf, 4, &span.parent_span_id.to_bytes());
    }
    match span.name() {
        (name, None) => string(buf, 5, name),
        (name, Some(route)) => {
            prefix(buf, 5, name.len() + 1 + route.len());
            buf.extend_from_slice(name.as_bytes());
            buf.push(b' ');
            buf.extend_from_slice(route.as_bytes());
        }
    }
    uint(buf, 6, span_kind(span.kind));
    fixed64(buf, 7, nanos(span.start_time));
    fixed64(buf, 8, nanos(span.end_time));
    span.http.each(|key, value| match value {
        Attr::Text(text) => text_attribute(buf, 9, key, text),
        Attr::Int(v) => int_attribute(buf, 9, key, v),
    });
    for kv in span.attributes {
        key_value(buf, 9, kv.key.as_str(), &kv.value);
    }
    uint(buf, 10, span.dropped_attributes_count.into());
    for event in span.events {
        message(buf, 11, |buf| {
            fixed64(buf, 1, nanos(event.timestamp));
            string(buf, 2, &event.name);
            attributes(buf, 3, &event.attributes);
            uint(buf, 4, event.dropped_attributes_count.into());
        });
    }
    uint(buf, 12, span.dropped_events_count.into());
    for link in span.links {
        let lc = &link.span_context;
        message(buf, 13, |buf| {
            bytes(buf, 1, &lc.trace_id().to_bytes());
            bytes(buf, 2, &lc.span_id().to_bytes());
            trace_state(buf, 3, lc.trace_state());
            attributes(buf, 4, &link.attributes);
            uint(buf, 5, link.dropped_attributes_count.into());
            fixed32(buf, 6, flags(lc.is_remote(), lc.trace_flags().to_u8()));
        });
    }
    uint(buf, 14, span.dropped_links_count.into());
    // `Status` is always present: code UNSET 0, OK 1, ERROR 2.
    match span.status {
        Status::Unset => buf.extend_from_slice(&[key_byte(15, WireType::LengthDelimited), 0]),
        Status::Ok => buf.extend_from_slice(&[
            key_byte(15, WireType::LengthDelimited),
            2,
            key_byte(3, WireType::Varint),
            1,
        ]),
        Status::Error { description } => message(buf, 15, |buf| {
            string(buf, 2, description);
            uint(buf, 3, 2);
        }),
    }
    // `Span.flags` (field 16, fixed32): never 0 (the remoteness is known).
    buf.extend_from_slice(&SPAN_FLAGS_KEY);
    buf.extend_from_slice(
        &flags(span.parent_span_is_remote, cx.trace_flags().to_u8()).to_le_bytes(),
    );
}

/// The key of `Span.flags`: field 16, fixed32, as its two-byte varint.
const SPAN_FLAGS_KEY: [u8; 2] = [((16 << 3) | 5) as u8 | 0x80, 1];

/// A field's key when its tag is below 16.
const fn key_byte(tag: u32, wire_type: WireType) -> u8 {
    ((tag << 3) | wire_type as u32) as u8
}

fn write_scope(buf: &mut Vec<u8>, scope: &InstrumentationScope) {
    string(buf, 1, scope.name());
    string(buf, 2, scope.version().unwrap_or_default());
    for kv in scope.attributes() {
        key_value(buf, 3, kv.key.as_str(), &kv.value);
    }
}

fn attributes(buf: &mut Vec<u8>, tag: u32, attributes: &[KeyValue]) {
    for kv in attributes {
        key_value(buf, tag, kv.key.as_str(), &kv.value);
    }
}

#[inline]
fn flags(remote: bool, trace_flags: u8) -> u32 {
    u32::from(trace_flags) | HAS_IS_REMOTE | if remote { IS_REMOTE } else { 0 }
}

/// `SpanKind` of the protocol: INTERNAL 1, SERVER 2, CLIENT 3, PRODUCER 4,
/// CONSUMER 5.
#[inline]
fn span_kind(kind: &SpanKind) -> u64 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

#[inline]
fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| {
        d.as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(d.subsec_nanos()))
    })
}

#[inline]
fn trace_state(buf: &mut Vec<u8>, tag: u32, state: &TraceState) {
    if *state != TraceState::NONE {
        string(buf, tag, &state.header());
    }
}

/// The head of a short `KeyValue` (each length one byte): its key and the
/// prefix of an `AnyValue` of `any_len` bytes, with room for those. `false`,
/// and nothing written, when it is not short.
// Always inlined: as a call it costs ~50 instructions per attribute.
#[inline(always)]
fn short_key_value_head(buf: &mut Vec<u8>, tag: u32, key: &[u8], any_len: usize) -> bool {
    let kv_len = 2 + key.len() + 2 + any_len;
    if tag >= 16 || key.is_empty() || kv_len >= 0x80 {
        return false;
    }
    let ld = WireType::LengthDelimited;
    buf.reserve(2 + kv_len);
    buf.extend_from_slice(&[
        key_byte(tag, ld),
        kv_len as u8,
        key_byte(1, ld),
        key.len() as u8,
    ]);
    buf.extend_from_slice(key);
    buf.extend_from_slice(&[key_byte(2, ld), any_len as u8]);
    true
}

/// A `KeyValue` message whose value is a string.
fn text_attribute(buf: &mut Vec<u8>, tag: u32, key: &str, text: &str) {
    // Most attributes: a short key and a short text, every length one byte.
    let v = text.as_bytes();
    if short_key_value_head(buf, tag, key.as_bytes(), 2 + v.len()) {
        buf.extend_from_slice(&[key_byte(1, WireType::LengthDelimited), v.len() as u8]);
        buf.extend_from_slice(v);
    } else {
        let any_len = field_len(v.len());
        let kv_len = str_field_len(key) + 1 + encoded_len_varint(any_len as u64) + any_len;
        buf.reserve(MAX_PREFIX + kv_len);
        prefix(buf, tag, kv_len);
        string(buf, 1, key);
        prefix(buf, 2, any_len);
        length_delimited(buf, 1, v);
    }
}

/// A `KeyValue` message whose value is an integer.
fn int_attribute(buf: &mut Vec<u8>, tag: u32, key: &str, value: i64) {
    let any_len = 1 + encoded_len_varint(value as u64);
    if short_key_value_head(buf, tag, key.as_bytes(), any_len) {
        buf.push(key_byte(3, WireType::Varint));
        varint(buf, value as u64);
    } else {
        key_value(buf, tag, key, &Value::I64(value));
    }
}

/// A `KeyValue` message (`key` 1, `value` 2: an `AnyValue`, always present).
fn key_value(buf: &mut Vec<u8>, tag: u32, key: &str, value: &Value) {
    if let Value::String(text) = value {
        return text_attribute(buf, tag, key, text.as_str());
    }
    // Scalars are measured and written in one go; arrays are rare.
    let scalar = match value {
        Value::Bool(_) => Some(1 + 1),
        Value::I64(v) => Some(1 + encoded_len_varint(*v as u64)),
        Value::F64(_) => Some(1 + 8),
        _ => None,
    };
    match scalar {
        Some(any_len) => {
            let kv_len = str_field_len(key) + 1 + encoded_len_varint(any_len as u64) + any_len;
            buf.reserve(MAX_PREFIX + kv_len);
            prefix(buf, tag, kv_len);
            string(buf, 1, key);
            prefix(buf, 2, any_len);
            any_value(buf, value);
        }
        None => message(buf, tag, |buf| {
            string(buf, 1, key);
            message(buf, 2, |buf| any_value(buf, value));
        }),
    }
}

/// An `AnyValue`'s fields: the oneof is written even when it holds its
/// type's default (`false`, `0`, `""`), so it reads back as set.
fn any_value(buf: &mut Vec<u8>, value: &Value) {
    match value {
        Value::String(s) => length_delimited(buf, 1, s.as_str().as_bytes()),
        Value::Bool(b) => {
            key(buf, 2, WireType::Varint);
            varint(buf, u64::from(*b));
        }
        Value::I64(v) => {
            key(buf, 3, WireType::Varint);
            varint(buf, *v as u64);
        }
        Value::F64(v) => {
            key(buf, 4, WireType::SixtyFourBit);
            buf.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        Value::Array(Array::Bool(vs)) => message(buf, 5, |buf| each(buf, vs, |&b| Value::Bool(b))),
        Value::Array(Array::I64(vs)) => message(buf, 5, |buf| each(buf, vs, |&v| Value::I64(v))),
        Value::Array(Array::F64(vs)) => message(buf, 5, |buf| each(buf, vs, |&v| Value::F64(v))),
        Value::Array(Array::String(vs)) => {
            message(buf, 5, |buf| each(buf, vs, |s| Value::String(s.clone())))
        }
        // A kind of value newer than this code: sent as its text.
        other => length_delimited(buf, 1, other.as_str().as_bytes()),
    }
}

/// `ArrayValue.values` (field 1), one `AnyValue` per element.
fn each<T>(buf: &mut Vec<u8>, values: &[T], to: impl Fn(&T) -> Value) {
    for v in values {
        let v = to(v);
        message(buf, 1, |buf| any_value(buf, &v));
    }
}

/// Writes the fields `body` writes as a length-delimited field `tag`: two
/// bytes are left for the length (spans are 128 bytes to 16 KiB), then
/// closed up or widened when the body is shorter or longer.
fn message(buf: &mut Vec<u8>, tag: u32, body: impl FnOnce(&mut Vec<u8>)) {
    key(buf, tag, WireType::LengthDelimited);
    let at = buf.len();
    buf.extend_from_slice(&[0, 0]);
    let start = buf.len();
    body(buf);
    let len = buf.len() - start;
    if (0x80..0x4000).contains(&len) {
        buf[at] = (len & 0x7f) as u8 | 0x80;
        buf[at + 1] = (len >> 7) as u8;
    } else if len < 0x80 {
        buf[at] = len as u8;
        buf.copy_within(start.., at + 1);
        buf.truncate(buf.len() - 1);
    } else {
        let mut head = Vec::with_capacity(10);
        encode_varint(len as u64, &mut head);
        buf.splice(at..start, head);
    }
}

/// The key and length of a length-delimited field of `len` bytes.
#[inline]
fn prefix(buf: &mut Vec<u8>, tag: u32, len: usize) {
    key(buf, tag, WireType::LengthDelimited);
    varint(buf, len as u64);
}

/// A field's key: one byte for the tags below 16 (all but `Span.flags`).
#[inline]
fn key(buf: &mut Vec<u8>, tag: u32, wire_type: WireType) {
    if tag < 16 {
        buf.push(((tag << 3) | wire_type as u32) as u8);
    } else {
        encode_key(tag, wire_type, buf);
    }
}

/// A varint: one byte below 128 (most lengths, kinds and flags here), two
/// below 16,384 (status codes, ports).
#[inline]
fn varint(buf: &mut Vec<u8>, value: u64) {
    if value < 0x80 {
        buf.push(value as u8);
    } else if value < 0x4000 {
        buf.extend_from_slice(&[(value & 0x7f) as u8 | 0x80, (value >> 7) as u8]);
    } else {
        encode_varint(value, buf);
    }
}

#[inline]
fn length_delimited(buf: &mut Vec<u8>, tag: u32, value: &[u8]) {
    prefix(buf, tag, value.len());
    buf.extend_from_slice(value);
}

/// The encoded size of a string field (tag below 16); nothing when empty.
fn str_field_len(s: &str) -> usize {
    if s.is_empty() { 0 } else { field_len(s.len()) }
}

/// A string or bytes field; left out when empty (proto3's default).
#[inline]
fn string(buf: &mut Vec<u8>, tag: u32, value: &str) {
    bytes(buf, tag, value.as_bytes());
}

#[inline]
fn bytes(buf: &mut Vec<u8>, tag: u32, value: &[u8]) {
    if !value.is_empty() {
        length_delimited(buf, tag, value);
    }
}

/// A varint field (uint32, uint64, enum); left out when 0.
#[inline]
fn uint(buf: &mut Vec<u8>, tag: u32, value: u64) {
    if value != 0 {
        key(buf, tag, WireType::Varint);
        varint(buf, value);
    }
}

#[inline]
fn fixed64(buf: &mut Vec<u8>, tag: u32, value: u64) {
    if value != 0 {
        key(buf, tag, WireType::SixtyFourBit);
        buf.extend_from_slice(&value.to_le_bytes());
    }
}

fn fixed32(buf: &mut Vec<u8>, tag: u32, value: u32) {
    if value != 0 {
        key(buf, tag, WireType::ThirtyTwoBit);
        buf.extend_from_slice(&value.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::time::Duration;

    use opentelemetry::trace::{Event, Link, SpanContext, TraceFlags, TraceId};
    use opentelemetry::{InstrumentationScope, KeyValue, StringValue};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
    use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use prost::Message as _;

    use super::*;

    fn context(trace: u128, span: u64, sampled: bool, remote: bool, state: &str) -> SpanContext {
        let state = if state.is_empty() {
            TraceState::NONE
        } else {
            state.parse().unwrap()
        };
        SpanContext::new(
            TraceId::from(trace),
            SpanId::from(span),
            if sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            },
            remote,
            state,
        )
    }

    fn span(name: &'static str, scope: &InstrumentationScope) -> SpanData {
        let start = UNIX_EPOCH + Duration::from_nanos(1_764_000_000_123_456_789);
        SpanData {
            span_context: context(
                0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
                0x00f0_67aa_0ba9_02b7,
                true,
                false,
                "",
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Server,
            name: Cow::Borrowed(name),
            start_time: start,
            end_time: start + Duration::from_micros(42),
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: scope.clone(),
        }
    }

    /// What the OTLP crate would send for `spans`, decoded.
    fn reference(spans: Vec<SpanData>, resource: &Resource) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(
                spans,
                &ResourceAttributesWithSchema::from(resource),
            ),
        }
    }

    fn ours(spans: &[SpanData], resource: &Resource) -> ExportTraceServiceRequest {
        let encoder = Encoder::new(resource);
        let mut batch = Batch::default();
        for s in spans {
            // The first scope seen is the caller's own, as the processor's is.
            let own = s.instrumentation_scope == spans[0].instrumentation_scope;
            encoder.append(&mut batch, &ended(s), &s.instrumentation_scope, own);
        }
        assert_eq!(batch.len(), spans.len());
        let body = encoder.finish(batch);
        ExportTraceServiceRequest::decode(body).expect("a valid export request")
    }

    fn assert_same(spans: Vec<SpanData>, resource: &Resource) {
        let mine = ours(&spans, resource);
        assert_eq!(mine, reference(spans, resource));
    }

    #[test]
    fn a_plain_server_span_reads_back_as_the_otlp_crate_writes_it() {
        let scope = InstrumentationScope::builder("orchestrator").build();
        let resource = Resource::builder_empty()
            .with_service_name("orchestrator")
            .build();
        let mut s = span("GET /", &scope);
        s.attributes = vec![
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("url.path", "/page".to_owned()),
            KeyValue::new("http.response.status_code", 200_i64),
        ];
        assert_same(vec![s], &resource);
    }

    #[test]
    fn every_field_and_value_kind_reads_back_the_same() {
        let scope = InstrumentationScope::builder("orchestrator")
            .with_version("1.2.3")
            .with_schema_url("https://opentelemetry.io/schemas/1.26.0")
            .with_attributes([KeyValue::new("scope.attr", true)])
            .build();
        let resource = Resource::builder_empty()
            .with_service_name("svc")
            .with_attributes([
                KeyValue::new("deployment.environment.name", "prod"),
                KeyValue::new("k8s.pod.count", 3_i64),
            ])
            .with_schema_url([], "https://opentelemetry.io/schemas/1.27.0")
            .build();
        let mut s = span("POST /idp/token", &scope);
        s.span_context = context(
            u128::MAX - 7,
            u64::MAX - 1,
            false,
            false,
            "vendor=v1,other=x",
        );
        s.parent_span_id = SpanId::from(0x1122_3344_5566_7788);
        s.parent_span_is_remote = true;
        s.span_kind = SpanKind::Client;
        s.attributes = vec![
            KeyValue::new("empty", ""),
            KeyValue::new("false", false),
            KeyValue::new("zero", 0_i64),
            KeyValue::new("negative", -5_i64),
            KeyValue::new("big", i64::MAX),
            KeyValue::new("float", 0.25_f64),
            KeyValue::new("float.zero", 0.0_f64),
            KeyValue::new("long", "x".repeat(300)),
            KeyValue::new("unicode", "héllo ✓"),
            KeyValue::new("bools", Value::Array(Array::Bool(vec![true, false]))),
            KeyValue::new("ints", Value::Array(Array::I64(vec![1, -1, 0]))),
            KeyValue::new("floats", Value::Array(Array::F64(vec![1.5]))),
            KeyValue::new(
                "strings",
                Value::Array(Array::String(vec![
                    StringValue::from("a"),
                    StringValue::from(""),
                ])),
            ),
            KeyValue::new("empty.array", Value::Array(Array::I64(vec![]))),
            KeyValue::new("", "keyless"),
        ];
        s.dropped_attributes_count = 2;
        s.events.events = vec![
            Event::new(
                "retry",
                UNIX_EPOCH + Duration::from_secs(5),
                vec![KeyValue::new("attempt", 2_i64)],
                1,
            ),
            Event::new("", UNIX_EPOCH, vec![], 0),
        ];
        s.events.dropped_count = 3;
        s.links.links = vec![Link::new(
            context(7, 9, true, true, "a=b"),
            vec![KeyValue::new("link.attr", "v")],
            4,
        )];
        s.links.dropped_count = 5;
        s.status = Status::error("upstream refused");
        let mut ok = span("ok", &scope);
        ok.status = Status::Ok;
        ok.span_kind = SpanKind::Producer;
        let mut internal = span("", &scope);
        internal.span_kind = SpanKind::Internal;
        let mut consumer = span("consumer", &scope);
        consumer.span_kind = SpanKind::Consumer;
        consumer.status = Status::error("");
        assert_same(vec![s, ok, internal, consumer], &resource);
    }

    #[test]
    fn typed_http_attributes_and_a_route_read_back_as_key_values_and_a_joined_name() {
        let scope = InstrumentationScope::builder("orchestrator").build();
        let resource = Resource::builder_empty().build();
        // Long enough for a key-value over 127 bytes.
        let long_path = format!("/files/{}", "a".repeat(200));
        let cases = [
            HttpAttributes {
                method: Some("GET"),
                uri: Some(format!("{long_path}?q=1").parse().unwrap()),
                scheme: Some("https"),
                peer: Some(StringValue::from("2001:db8::7")),
                route: Some(StringValue::from("/files")),
                status_code: Some(404),
                app: Some(StringValue::from(std::sync::Arc::<str>::from("files"))),
                request_id: Some(StringValue::from("0af7651916cd43dd8448eb211c80319c")),
                ..HttpAttributes::NONE
            },
            HttpAttributes {
                method: Some("_OTHER"),
                server_address: Some(StringValue::from("upstream.internal")),
                server_port: Some(8443),
                status_code: Some(200),
                ..HttpAttributes::NONE
            },
            HttpAttributes {
                peer: Some(StringValue::from("192.168.100.254")),
                ..HttpAttributes::NONE
            },
        ];
        for http in cases {
            let mut sdk = span("GET", &scope);
            sdk.attributes = http.key_values();
            sdk.attributes.push(KeyValue::new("sampler.attr", 1_i64));
            if let Some(route) = &http.route {
                sdk.name = Cow::Owned(format!("GET {}", route.as_str()));
            }
            let mut typed = span("GET", &scope);
            typed.attributes = vec![KeyValue::new("sampler.attr", 1_i64)];
            let ended = Ended {
                http: &http,
                ..ended(&typed)
            };
            let encoder = Encoder::new(&resource);
            let mut batch = Batch::default();
            encoder.append(&mut batch, &ended, &scope, true);
            let mine = ExportTraceServiceRequest::decode(encoder.finish(batch)).unwrap();
            assert_eq!(mine, reference(vec![sdk], &resource));
        }
    }

    #[test]
    fn spans_of_several_scopes_are_grouped_in_first_seen_order() {
        let a = InstrumentationScope::builder("orchestrator").build();
        let b = InstrumentationScope::builder("tracing-opentelemetry")
            .with_version("0.34")
            .build();
        let resource = Resource::builder().build();
        let spans = vec![
            span("a1", &a),
            span("b1", &b),
            span("a2", &a),
            span("b2", &b),
            span("a3", &a),
        ];
        let mine = ours(&spans, &resource);
        let scopes = &mine.resource_spans[0].scope_spans;
        assert_eq!(scopes.len(), 2);
        let names: Vec<_> = scopes[0].spans.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a1", "a2", "a3"]);
        assert_same(spans, &resource);
    }

    #[test]
    fn messages_of_every_length_class_read_back_the_same() {
        // Nested messages under 128 bytes, up to 16 KiB and over it take
        // one, two and three bytes of length.
        let scope = InstrumentationScope::builder("orchestrator").build();
        let spans = [1, 30, 3_000]
            .into_iter()
            .map(|n| {
                let mut s = span("sized", &scope);
                s.attributes = vec![KeyValue::new(
                    "list",
                    Value::Array(Array::String(vec![StringValue::from("abcdef"); n])),
                )];
                s
            })
            .collect();
        assert_same(spans, &Resource::builder_empty().build());
    }

    #[test]
    fn times_before_the_epoch_are_zero() {
        let scope = InstrumentationScope::builder("orchestrator").build();
        let mut s = span("old", &scope);
        s.start_time = UNIX_EPOCH - Duration::from_secs(1);
        assert_same(vec![s], &Resource::builder_empty().build());
    }
}
