//! The request id: one per request, taken from a trusted proxy's
//! `X-Request-Id` or made here, sent to the upstream, written in the access
//! log and shown on every error page, so a user's "it said request id …"
//! finds its log line.
//!
//! The listener sets it for the whole of a request's handling with
//! [`RequestId::scope`]; pages read it with [`RequestId::current`], so no
//! handler has to thread it through.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

/// The header that carries the id, in and out.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest id accepted from a proxy; a longer one is replaced.
const MAX_LEN: usize = 128;

tokio::task_local! {
    static CURRENT: RequestId;
}

/// A request id: printable, at most 128 bytes of `[A-Za-z0-9._:+/=-]`.
/// Its text is made once and the header value it is sent as shares it: the
/// request's and the response's headers and the span clone it, none copies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId {
    text: Arc<str>,
    value: HeaderValue,
}

/// The id's text as the bytes of a [`Bytes`].
struct Shared(Arc<str>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl RequestId {
    /// A fresh id: 128 random bits as 32 hex digits (the form NGINX's
    /// `$request_id` has).
    pub fn generate() -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let bytes: [u8; 16] = rand::random();
        let mut text = [0u8; 32];
        for (pair, b) in text.chunks_exact_mut(2).zip(bytes) {
            pair[0] = HEX[usize::from(b >> 4)];
            pair[1] = HEX[usize::from(b & 0xf)];
        }
        Self::of(std::str::from_utf8(&text).unwrap_or("-"))
    }

    /// The id a trusted proxy sent in `headers`, if it has exactly one
    /// well-formed `X-Request-Id`.
    pub fn from_proxy(headers: &HeaderMap) -> Option<Self> {
        let mut values = headers.get_all(HEADER).iter();
        let value = values.next()?;
        if values.next().is_some() {
            return None;
        }
        let text = value.to_str().ok()?;
        let ok = !text.is_empty()
            && text.len() <= MAX_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:+/=-".contains(&b));
        ok.then(|| Self::of(text))
    }

    /// An id of checked characters (visible ASCII).
    fn of(text: &str) -> Self {
        let text: Arc<str> = Arc::from(text);
        let value = HeaderValue::from_maybe_shared(Bytes::from_owner(Shared(text.clone())))
            .unwrap_or(HeaderValue::from_static("-"));
        Self { text, value }
    }

    /// The id as a shared string (a cheap clone).
    pub fn to_shared(&self) -> Arc<str> {
        self.text.clone()
    }

    /// The id of the request being served by this task, if the listener set one.
    pub fn current() -> Option<Self> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// Runs `fut` with this id as [`RequestId::current`].
    pub fn scope<F: Future>(self, fut: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(self, fut)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The id as a header value: a clone sharing its bytes.
    pub fn header_value(&self) -> HeaderValue {
        self.value.clone()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(HEADER, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn generated_ids_are_random_hex() {
        let (a, b) = (RequestId::generate(), RequestId::generate());
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 32);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a.header_value().as_bytes(), a.as_str().as_bytes());
        assert_eq!(&*a.to_shared(), a.as_str());
        assert_eq!(RequestId::from_proxy(&headers(&[a.as_str()])), Some(a));
    }

    #[test]
    fn a_proxy_s_id_is_kept_only_when_it_is_one_and_well_formed() {
        let uuid = "3f2c8a4e-9b1d-4c55-8f00-0123456789ab";
        assert_eq!(
            RequestId::from_proxy(&headers(&[uuid])).unwrap().as_str(),
            uuid
        );
        assert!(
            RequestId::from_proxy(&headers(&["Root=1-5759e988-bd862e3fe1be46a994272793"]))
                .is_some()
        );
        for bad in ["", "a b", "<script>", "x\"y", &"a".repeat(129)] {
            assert_eq!(RequestId::from_proxy(&headers(&[bad])), None, "{bad:?}");
        }
        assert_eq!(RequestId::from_proxy(&headers(&["a", "b"])), None);
        assert_eq!(RequestId::from_proxy(&HeaderMap::new()), None);
    }

    #[tokio::test]
    async fn current_is_the_scoped_id_and_none_outside() {
        assert_eq!(RequestId::current(), None);
        let id = RequestId::generate();
        let seen = id.clone().scope(async { RequestId::current() }).await;
        assert_eq!(seen, Some(id));
    }
}
