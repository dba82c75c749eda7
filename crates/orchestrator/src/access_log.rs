//! The access log: one line per request of the main listener, target
//! `access`, with the fields docs/configuration.md lists.
//!
//! In JSON (the production format) a line is formatted straight into a
//! reused buffer, with no tracing event and no JSON value built, and handed
//! to the log writer thread in one piece; the line is the one the tracing
//! JSON layer would print. In text format (a developer's terminal) it goes
//! through tracing like every other line.

use std::cell::RefCell;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use http::{Method, Version};
use tracing_appender::non_blocking::NonBlocking;

use crate::logging;

/// One request, as the access log records it.
pub(crate) struct AccessLine<'a> {
    pub(crate) method: &'a Method,
    /// The path without the query (it may carry codes or tokens).
    pub(crate) path: &'a str,
    pub(crate) version: Version,
    pub(crate) status: u16,
    /// Until the response head.
    pub(crate) duration: Duration,
    pub(crate) peer: SocketAddr,
    pub(crate) app: &'a str,
    pub(crate) user: &'a str,
    pub(crate) request_id: &'a str,
}

/// Writes access lines.
pub(crate) struct AccessLog {
    /// The writer for JSON lines; `None` in text format.
    json: Option<NonBlocking>,
}

thread_local! {
    /// Each worker thread formats into its own buffer, kept between requests.
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
}

impl AccessLog {
    /// JSON lines through `writer` when `json`, else tracing events.
    pub(crate) fn new(writer: &NonBlocking, json: bool) -> Self {
        Self {
            json: json.then(|| writer.clone()),
        }
    }

    /// Records `line`, unless the level filter (`log.level`, `RUST_LOG`)
    /// turns target `access` off.
    pub(crate) fn write(&self, line: &AccessLine<'_>) {
        if !tracing::enabled!(target: "access", tracing::Level::INFO) {
            return;
        }
        let Some(writer) = &self.json else {
            tracing::info!(
                target: "access",
                method = %line.method,
                path = line.path,
                version = ?line.version,
                status = line.status,
                duration_ms = line.duration.as_secs_f64() * 1000.0,
                peer = %line.peer,
                app = line.app,
                user = line.user,
                request_id = line.request_id,
                "request"
            );
            return;
        };
        LINE.with_borrow_mut(|buf| {
            buf.clear();
            format_json(buf, line, SystemTime::now());
            logging::write_line(writer, buf);
        });
    }
}

/// Longest path an access line carries; a longer one (a path can be as long
/// as the header limit) is cut, so that queued lines stay small.
const MAX_LOGGED_PATH: usize = 2048;

/// `path`, cut to [`MAX_LOGGED_PATH`] bytes (at a character boundary) with
/// `…` at the end when longer.
fn bounded_path(path: &str) -> std::borrow::Cow<'_, str> {
    if path.len() <= MAX_LOGGED_PATH {
        return std::borrow::Cow::Borrowed(path);
    }
    let mut end = MAX_LOGGED_PATH;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}…", &path[..end]))
}

/// Appends `line` as the JSON object the tracing JSON layer prints for the
/// equivalent event (flattened fields, `target` last), and a newline.
fn format_json(buf: &mut Vec<u8>, line: &AccessLine<'_>, now: SystemTime) {
    let string = |buf: &mut Vec<u8>, s: &str| {
        // serde_json escapes quotes, backslashes and control characters.
        let _ = serde_json::to_writer(&mut *buf, s);
    };
    let _ = write!(
        buf,
        "{{\"timestamp\":\"{}\",\"level\":\"INFO\",\"message\":\"request\",\"method\":",
        humantime::format_rfc3339_micros(now)
    );
    string(buf, line.method.as_str());
    buf.extend_from_slice(b",\"path\":");
    string(buf, &bounded_path(line.path));
    let _ = write!(
        buf,
        ",\"version\":\"{:?}\",\"status\":{},\"duration_ms\":",
        line.version, line.status
    );
    // serde_json writes floats as the JSON layer does (`2.0`, not `2`).
    let _ = serde_json::to_writer(&mut *buf, &(line.duration.as_secs_f64() * 1000.0));
    let _ = write!(buf, ",\"peer\":\"{}\",\"app\":", line.peer);
    string(buf, line.app);
    buf.extend_from_slice(b",\"user\":");
    string(buf, line.user);
    buf.extend_from_slice(b",\"request_id\":");
    string(buf, line.request_id);
    buf.extend_from_slice(b",\"target\":\"access\"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_the_documented_json_object_with_every_value_escaped() {
        let method = Method::GET;
        let line = AccessLine {
            method: &method,
            path: "/reports/\"q3\"\\x",
            version: Version::HTTP_11,
            status: 302,
            duration: Duration::from_micros(1_250),
            peer: "10.0.0.7:41000".parse().unwrap_or_else(|_| unreachable!()),
            app: "demo",
            user: "alice\u{1}\nnewline",
            request_id: "0123456789abcdef0123456789abcdef",
        };
        let mut buf = Vec::new();
        format_json(
            &mut buf,
            &line,
            SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_583_200_123_456),
        );
        assert_eq!(buf.last(), Some(&b'\n'));
        assert_eq!(buf.iter().filter(|b| **b == b'\n').count(), 1, "one line");
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap_or_default();
        assert_eq!(v["timestamp"], "2025-12-01T10:00:00.123456Z");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["message"], "request");
        assert_eq!(v["target"], "access");
        assert_eq!(v["method"], "GET");
        assert_eq!(v["path"], "/reports/\"q3\"\\x");
        assert_eq!(v["version"], "HTTP/1.1");
        assert_eq!(v["status"], 302);
        assert_eq!(v["duration_ms"], 1.25);
        buf.clear();
        let long = format!("/{}", "a".repeat(10_000));
        let whole_ms = AccessLine {
            path: &long,
            duration: Duration::from_millis(2),
            ..line
        };
        format_json(&mut buf, &whole_ms, SystemTime::UNIX_EPOCH);
        let text = String::from_utf8_lossy(&buf);
        assert!(text.contains("\"duration_ms\":2.0,"), "{text}");
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap_or_default();
        assert_eq!(v["path"].as_str().map(str::len), Some(2048 + "…".len()));
        assert_eq!(v["peer"], "10.0.0.7:41000");
        assert_eq!(v["app"], "demo");
        assert_eq!(v["user"], "alice\u{1}\nnewline");
        assert_eq!(v["request_id"], "0123456789abcdef0123456789abcdef");
        let keys: Vec<&str> = v
            .as_object()
            .map_or_else(Vec::new, |o| o.keys().map(String::as_str).collect());
        assert_eq!(keys.len(), 13, "{keys:?}");
    }
}
