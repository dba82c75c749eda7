//! Routing: the normalised request path and the app it belongs to.
//!
//! Every decision (which app, public or not) is made on the normalised path,
//! and that same path is what the upstream receives, so `/public/../admin`,
//! `%2e%2e`, `//admin` or `;` tricks cannot make the gateway check one path
//! and forward another.

use std::sync::Arc;

use crate::error::GatewayError;
use orchestrator_http::authority;

/// A request path after normalisation: starts with `/`, no dot segments, no
/// empty segments, unreserved characters decoded, other escapes upper-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalPath(String);

impl NormalPath {
    /// The normalised path.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Normalises a raw request path (no query).
    ///
    /// Refused (400): paths not starting with `/`, `;` path parameters (servlet
    /// containers treat `/admin;x=/` as `/admin`), backslashes, control
    /// characters, malformed escapes and encoded `/`, `\`, `;` or NUL, which
    /// upstreams decode inconsistently.
    pub fn parse(raw: &str) -> Result<Self, GatewayError> {
        let decoded = Self::decode(raw)?;
        // What browsers send is already normal: kept as decoded, no copy.
        if is_normal(&decoded) {
            return Ok(Self(decoded));
        }
        Ok(Self(collapse(&decoded)))
    }

    /// Like [`parse`](Self::parse), but also refuses a path that
    /// normalisation would change beyond decoding unreserved escapes: `.`
    /// and `..` segments (in any encoding) and empty segments (`//`). For
    /// forward auth, where the ingress, not the gateway, sends the app its
    /// path: `/admin/../public/x` must not be judged as `/public/x` while an
    /// app that does not normalise serves `/admin`. Browsers never send dot
    /// segments.
    pub fn parse_as_sent(raw: &str) -> Result<Self, GatewayError> {
        let decoded = Self::decode(raw)?;
        if !is_normal(&decoded) {
            return Err(GatewayError::BadRequest(
                "dot or empty segments in the original path",
            ));
        }
        Ok(Self(decoded))
    }

    /// The checks every raw path passes, and its unreserved escapes decoded.
    fn decode(raw: &str) -> Result<String, GatewayError> {
        if !raw.starts_with('/') {
            return Err(GatewayError::BadRequest("path must start with /"));
        }
        decode_unreserved(raw)
    }

    /// True when this path is `prefix` or below it, on a segment boundary
    /// (`/app` matches `/app` and `/app/x`, not `/apple`).
    pub fn is_under(&self, prefix: &str) -> bool {
        let p = self.0.as_str();
        if prefix.ends_with('/') {
            p.starts_with(prefix) || p == prefix.trim_end_matches('/')
        } else {
            p == prefix || (p.starts_with(prefix) && p.as_bytes().get(prefix.len()) == Some(&b'/'))
        }
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// True when [`collapse`] would leave `decoded` as it is: no `.` or `..`
/// segment and no empty one but the last (a trailing `/`).
fn is_normal(decoded: &str) -> bool {
    let mut segments = decoded.split('/').skip(1).peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        if matches!(seg, "." | "..") || (seg.is_empty() && !last) {
            return false;
        }
    }
    true
}

/// Segments of a decoded path collapsed: empty ones (`//`) go, `.`
/// disappears, `..` pops; a trailing `/` stays.
fn collapse(decoded: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = decoded.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "" | "." => trailing_slash = i == last,
            ".." => {
                out.pop();
                trailing_slash = i == last;
            }
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut path = String::with_capacity(decoded.len());
    for seg in &out {
        path.push('/');
        path.push_str(seg);
    }
    if path.is_empty() || trailing_slash {
        path.push('/');
    }
    path
}

/// Decodes `%XX` of unreserved characters (RFC 3986 6.2.2.2), keeps other
/// escapes upper-cased, and refuses the characters that change meaning
/// between proxies and apps.
fn decode_unreserved(raw: &str) -> Result<String, GatewayError> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let (Some(h), Some(l)) = (
                    bytes.get(i + 1).copied().and_then(hex_val),
                    bytes.get(i + 2).copied().and_then(hex_val),
                ) else {
                    return Err(GatewayError::BadRequest(
                        "malformed percent-encoding in path",
                    ));
                };
                let v = h * 16 + l;
                if is_unreserved(v) {
                    out.push(char::from(v));
                } else if matches!(v, b'/' | b'\\' | b';' | 0) || v < 0x20 || v == 0x7f {
                    return Err(GatewayError::BadRequest("encoded separator in path"));
                } else if v == b'%'
                    && bytes
                        .get(i + 3)
                        .copied()
                        .is_some_and(|c| hex_val(c).is_some())
                {
                    // `%25%32%65` style double encoding: refuse rather than guess
                    // how many times the upstream decodes.
                    return Err(GatewayError::BadRequest("double percent-encoding in path"));
                } else {
                    out.push('%');
                    out.push(char::from(b"0123456789ABCDEF"[usize::from(h)]));
                    out.push(char::from(b"0123456789ABCDEF"[usize::from(l)]));
                }
                i += 3;
            }
            b';' => return Err(GatewayError::BadRequest("path parameters are not allowed")),
            b'\\' => return Err(GatewayError::BadRequest("backslash in path")),
            b if b < 0x20 || b == 0x7f || b == b' ' => {
                return Err(GatewayError::BadRequest("control character in path"));
            }
            _ => {
                // Non-ASCII never reaches here through `http::Uri`, but keep
                // the string valid whatever the caller passes.
                let ch_len = utf8_len(b);
                let end = (i + ch_len).min(bytes.len());
                out.push_str(raw.get(i..end).unwrap_or(""));
                i = end;
                continue;
            }
        }
        if b != b'%' {
            i += 1;
        }
    }
    // Double encoding can also be assembled from escapes that decode to hex
    // digits (`%25%32%65` → `%252e`): look at the result, not just the input.
    let bytes = out.as_bytes();
    if bytes
        .windows(4)
        .any(|w| w.starts_with(b"%25") && hex_val(w[3]).is_some())
    {
        return Err(GatewayError::BadRequest("double percent-encoding in path"));
    }
    Ok(out)
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

/// One routable app: its host and path prefix.
#[derive(Debug)]
struct RouteEntry<T> {
    host: Option<String>,
    prefix: String,
    target: Arc<T>,
}

/// Apps by host and longest path prefix; an exact host beats `*`.
#[derive(Debug)]
pub(crate) struct Router<T> {
    entries: Vec<RouteEntry<T>>,
}

impl<T> Router<T> {
    /// Builds the table from `(host, prefix, target)`; `*` means any host.
    pub(crate) fn new(routes: impl IntoIterator<Item = (String, String, Arc<T>)>) -> Self {
        let mut entries: Vec<RouteEntry<T>> = routes
            .into_iter()
            .map(|(host, prefix, target)| RouteEntry {
                host: (host != "*").then(|| authority::host(&host)),
                prefix: if prefix.is_empty() {
                    "/".to_owned()
                } else {
                    prefix
                },
                target,
            })
            .collect();
        // Most specific first: exact host, then longest prefix.
        entries.sort_by(|a, b| {
            b.host
                .is_some()
                .cmp(&a.host.is_some())
                .then(b.prefix.len().cmp(&a.prefix.len()))
        });
        Self { entries }
    }

    /// The app serving `host` (already without port) and `path`.
    pub(crate) fn find(&self, host: &str, path: &NormalPath) -> Option<&Arc<T>> {
        self.entries
            .iter()
            .find(|e| e.host.as_deref().is_none_or(|h| h == host) && path.is_under(&e.prefix))
            .map(|e| &e.target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_as_sent_must_already_be_normal() {
        for ok in ["/", "/a", "/a/", "/a/b.c", "/%7Euser", "/a%2Eb"] {
            assert!(NormalPath::parse_as_sent(ok).is_ok(), "{ok}");
        }
        for bad in [
            "/admin/../public/x",
            "/admin/%2e%2e/public/x",
            "/admin/%2E%2E/x",
            "/./admin",
            "/public//x",
            "//public/x",
            "/a/.",
            "/a/..",
        ] {
            assert!(NormalPath::parse_as_sent(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_path_taken_as_normal_is_one_collapsing_leaves_alone() {
        for p in [
            "/", "/a", "/a/", "/a/b", "/a/b/", "/a.b", "/.a", "/a..", "/...", "/a/.b/", "//",
            "/a//b", "/./", "/a/.", "/a/..", "/../a", "/a/./b", "/a/b/..",
        ] {
            assert_eq!(is_normal(p), collapse(p) == p, "{p}");
        }
    }

    #[test]
    fn normalisation_table() {
        let ok = [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/a/b/", "/a/b/"),
            ("//admin", "/admin"),
            ("/public/../admin", "/admin"),
            ("/public/%2e%2e/admin", "/admin"),
            ("/public/%2E%2e/admin", "/admin"),
            ("/public/.%2e/admin", "/admin"),
            ("/./admin/./x", "/admin/x"),
            ("/../../admin", "/admin"),
            ("/a/..", "/"),
            ("/a/.", "/a/"),
            ("/%61dmin", "/admin"),
            ("/a%20b", "/a%20b"),
            ("/a%c3%a9", "/a%C3%A9"),
            ("/public//..//admin", "/admin"),
        ];
        for (raw, want) in ok {
            assert_eq!(
                NormalPath::parse(raw).map(|p| p.0).ok().as_deref(),
                Some(want),
                "{raw}"
            );
        }
        let refused = [
            "admin",
            "/admin;jsessionid=1",
            "/public/..;/admin",
            "/public%2f..%2fadmin",
            "/public/%2e%2e%2fadmin",
            "/a\\..\\admin",
            "/a%5c..%5cadmin",
            "/a%00",
            "/a%zz",
            "/a%2",
            "/a%3b/b",
            "/a%252e%252e/admin",
            // Found by fuzz/path_normalise: escapes that decode to hex digits.
            "/public/%25%32%65%25%32%65/admin",
            "//%25%25%64o",
            "/a b",
        ];
        for raw in refused {
            assert!(NormalPath::parse(raw).is_err(), "{raw} should be refused");
        }
    }

    #[test]
    fn prefix_is_segment_aware() {
        let p = |s: &str| NormalPath::parse(s).expect("valid");
        assert!(p("/app").is_under("/app"));
        assert!(p("/app/x").is_under("/app"));
        assert!(!p("/apple").is_under("/app"));
        assert!(p("/public/x").is_under("/public/"));
        assert!(p("/public").is_under("/public/"));
        assert!(!p("/publicity").is_under("/public/"));
        assert!(p("/anything").is_under("/"));
    }

    #[test]
    fn host_and_longest_prefix() {
        let r = Router::new([
            ("*".to_owned(), "/".to_owned(), Arc::new("any-root")),
            ("*".to_owned(), "/api".to_owned(), Arc::new("any-api")),
            (
                "app.example".to_owned(),
                "/".to_owned(),
                Arc::new("app-root"),
            ),
        ]);
        let p = |s: &str| NormalPath::parse(s).expect("valid");
        assert_eq!(**r.find("other", &p("/x")).expect("match"), "any-root");
        assert_eq!(**r.find("other", &p("/api/v1")).expect("match"), "any-api");
        assert_eq!(
            **r.find("app.example", &p("/api")).expect("match"),
            "app-root"
        );
    }
}
