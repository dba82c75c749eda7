//! The sender of export requests: OTLP/HTTP, protobuf bodies
//! ([`super::otlp_body`]) POSTed by hyper's client, with the standard
//! variables for headers (`OTEL_EXPORTER_OTLP_TRACES_HEADERS`, else
//! `OTEL_EXPORTER_OTLP_HEADERS`: `key=value` pairs, comma-separated,
//! values percent-encoded) and the timeout of one export
//! (`OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, else `OTEL_EXPORTER_OTLP_TIMEOUT`,
//! milliseconds, default 10 s).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Uri, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// What the collector may answer at most (a partial-success message).
const ANSWER_LIMIT: usize = 64 * 1024;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends export requests to one collector.
pub(crate) struct OtlpHttp {
    client: Client<HttpConnector, Full<Bytes>>,
    endpoint: Uri,
    headers: HeaderMap,
    timeout: Duration,
}

impl std::fmt::Debug for OtlpHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The headers may hold a collector's credentials.
        f.debug_struct("OtlpHttp")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl OtlpHttp {
    /// A sender to `endpoint` (the full `/v1/traces` URL), headers and
    /// timeout from the environment.
    pub(crate) fn new(endpoint: &str) -> Result<Self, String> {
        let endpoint: Uri = endpoint
            .parse()
            .map_err(|e| format!("traces: the OTLP endpoint {endpoint} is not a URL: {e}"))?;
        let headers = match env_either(
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            "OTEL_EXPORTER_OTLP_HEADERS",
        ) {
            Some((var, text)) => parse_headers(&text).map_err(|e| format!("{var}: {e}"))?,
            None => HeaderMap::new(),
        };
        let timeout = match env_either(
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ) {
            Some((var, text)) => text
                .trim()
                .parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| format!("{var}: {text:?} is not a number of milliseconds"))?,
            None => DEFAULT_TIMEOUT,
        };
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        Ok(OtlpHttp {
            client: Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .build(connector),
            endpoint,
            headers,
            timeout,
        })
    }

    /// POSTs one export request; an error says why the collector did not
    /// take it (unreachable, no answer in time, not 2xx). Runs on the tokio
    /// runtime.
    pub(crate) async fn send(&self, body: Bytes) -> Result<(), String> {
        let mut req = Request::post(self.endpoint.clone())
            .header(header::CONTENT_TYPE, "application/x-protobuf")
            .header(
                header::USER_AGENT,
                concat!("orchestrator/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        req.headers_mut()
            .extend(self.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
        let sent = async {
            let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status();
            // Read the answer, so the connection is kept for the next batch.
            let _ = Limited::new(resp.into_body(), ANSWER_LIMIT).collect().await;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("the collector answered {status}"))
            }
        };
        tokio::time::timeout(self.timeout, sent)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {:?}", self.timeout)))
    }
}

/// The first of two variables that is set and not empty, with its name.
fn env_either(first: &str, second: &str) -> Option<(String, String)> {
    [first, second].into_iter().find_map(|var| {
        std::env::var(var)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(|v| (var.to_owned(), v))
    })
}

/// `key=value,key2=value2` (W3C Baggage's form, values percent-encoded)
/// as headers. Errors name the key, never the value (it may be a token).
fn parse_headers(text: &str) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| "every entry must be key=value".to_owned())?;
        let key = key.trim();
        let name = HeaderName::from_bytes(key.as_bytes())
            .map_err(|_| format!("{key:?} is not a header name"))?;
        let value = percent_encoding::percent_decode_str(value.trim())
            .decode_utf8()
            .map_err(|_| format!("the value of {key} is not UTF-8 once decoded"))?;
        let mut value = HeaderValue::from_str(&value)
            .map_err(|_| format!("the value of {key} is not a header value"))?;
        value.set_sensitive(true);
        headers.append(name, value);
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_decoded_pairs() {
        let h = parse_headers("api-key=a%20b%3Dc , x-tenant=t1,,x-tenant=t2").unwrap();
        assert_eq!(h["api-key"], "a b=c");
        let tenants: Vec<_> = h.get_all("x-tenant").iter().collect();
        assert_eq!(tenants, ["t1", "t2"]);
    }

    #[test]
    fn bad_headers_name_the_key_not_the_value() {
        let e = parse_headers("authorization=Bearer%0Asecret-token").unwrap_err();
        assert!(e.contains("authorization"), "{e}");
        assert!(!e.contains("secret-token"), "{e}");
        assert!(parse_headers("no-equals-sign").is_err());
        assert!(parse_headers("bad name=1").is_err());
    }
}
