//! Validation of the URL a user returns to after login: it must stay on the
//! same app, so the gateway can never be used as an open redirector.

use std::collections::HashSet;

use percent_encoding::percent_decode_str;

use crate::error::GatewayError;
use crate::route::NormalPath;

/// Longest return URL kept in a pending login; unauthenticated requests
/// choose it, and each one is held for `pendingLoginTtl`.
pub(crate) const MAX_RETURN_URL: usize = 2048;

/// `path_and_query`, or only its path when it is longer than
/// [`MAX_RETURN_URL`], or `/` when even the path is.
pub(crate) fn bounded(path_and_query: String) -> String {
    if path_and_query.len() <= MAX_RETURN_URL {
        return path_and_query;
    }
    match path_and_query.split_once('?') {
        Some((path, _)) if path.len() <= MAX_RETURN_URL => path.to_owned(),
        _ => "/".to_owned(),
    }
}

const REFUSED: GatewayError = GatewayError::BadRequest("return URL must be a path on this app");

/// Where a login returns to, once checked.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Target {
    /// The host (lower-case, no port) whose app the URL belongs to.
    pub(crate) host: String,
    /// Its normalised path.
    pub(crate) path: NormalPath,
    /// What to redirect to: the path-and-query on the request's own host,
    /// or the absolute URL on another app's host.
    pub(crate) location: String,
}

/// Checks `raw` and returns where to redirect to.
///
/// Accepted: a path starting with a single `/` (on `own_host`, the request's
/// routing host), or an absolute `http(s)://` URL either on `authority` (the
/// host the client asked for, port included) or on one of `app_hosts` (the
/// configured apps' hosts: forward auth sends users back to the app the
/// ingress proxies); in every case `same_app(host, path)` must accept the
/// normalised path. Refused: `//evil`, `/\evil`, `https:evil`, other hosts,
/// user info, backslashes, control characters, and the same tricks
/// percent-encoded (browsers decode some of them before navigating).
pub(crate) fn validate(
    raw: &str,
    authority: &str,
    own_host: &str,
    app_hosts: &HashSet<String>,
    same_app: impl Fn(&str, &NormalPath) -> bool,
) -> Result<Target, GatewayError> {
    // Non-ASCII too: browsers send it percent-encoded, and a raw one could
    // never be put in the Location header after login (the user would be
    // stuck on an error page after signing in).
    if raw.is_empty() || raw.bytes().any(|b| b <= 0x20 || b >= 0x7f || b == b'\\') {
        return Err(REFUSED);
    }
    // Decode until stable (bounded) and look at every layer: `/%2F%2Fevil`
    // and `%252F` must fail like their plain forms.
    let mut layer = raw.to_owned();
    for _ in 0..4 {
        let decoded = percent_decode_str(&layer).decode_utf8_lossy().into_owned();
        if decoded
            .chars()
            .any(|c| c.is_control() || c == '\\' || c == ' ')
            || decoded.starts_with("//")
            || decoded.starts_with("/\\")
        {
            return Err(REFUSED);
        }
        if decoded == layer {
            break;
        }
        layer = decoded;
    }
    // (host, origin to prefix the location with, path-and-query)
    let (host, origin, path_and_query) = if raw.starts_with('/') {
        if raw.starts_with("//") {
            return Err(REFUSED);
        }
        (own_host.to_owned(), None, raw.to_owned())
    } else {
        let lower = raw.to_ascii_lowercase();
        if !(lower.starts_with("https://") || lower.starts_with("http://")) {
            return Err(REFUSED);
        }
        let url = url::Url::parse(raw).map_err(|_| REFUSED)?;
        let (url_host, url_authority) = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => (h.to_ascii_lowercase(), format!("{h}:{p}")),
            (Some(h), None) => (h.to_ascii_lowercase(), h.to_owned()),
            _ => return Err(REFUSED),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(REFUSED);
        }
        let path_and_query = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        if url_authority.eq_ignore_ascii_case(authority) {
            (own_host.to_owned(), None, path_and_query)
        } else if app_hosts.contains(&url_host) {
            let origin = format!("{}://{url_authority}", url.scheme());
            (url_host, Some(origin), path_and_query)
        } else {
            return Err(REFUSED);
        }
    };
    let without_fragment = path_and_query.split('#').next().unwrap_or("/");
    let (path, query) = match without_fragment.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (without_fragment, None),
    };
    let normal = NormalPath::parse(path).map_err(|_| REFUSED)?;
    if !same_app(&host, &normal) {
        return Err(REFUSED);
    }
    let mut location = origin.unwrap_or_default();
    location.push_str(normal.as_str());
    if let Some(q) = query {
        location.push('?');
        location.push_str(q);
    }
    Ok(Target {
        host,
        path: normal,
        location,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &str) -> Option<String> {
        let app_hosts = HashSet::from(["api.example".to_owned()]);
        validate(
            raw,
            "app.example:8443",
            "app.example",
            &app_hosts,
            |_, p| !p.is_under("/other-app"),
        )
        .ok()
        .map(|t| t.location)
    }

    #[test]
    fn return_url_table() {
        let accepted = [
            ("/", "/"),
            ("/dash?x=1", "/dash?x=1"),
            ("/a/../b", "/b"),
            ("/dash#frag", "/dash"),
            ("https://app.example:8443/x?y", "/x?y"),
            ("HTTPS://APP.EXAMPLE:8443/x", "/x"),
            // Another configured app host: an absolute URL there.
            ("https://api.example/v1?q=1", "https://api.example/v1?q=1"),
            (
                "http://API.example:9000/a/../b",
                "http://api.example:9000/b",
            ),
        ];
        for (raw, want) in accepted {
            assert_eq!(check(raw).as_deref(), Some(want), "{raw}");
        }
        let refused = [
            "",
            "//evil.example",
            "//evil.example/path",
            "/\\evil.example",
            "\\\\evil.example",
            "https:evil.example",
            "https:/evil.example",
            "http:evil.example",
            "https://evil.example/",
            "https://app.example/",
            "https://app.example:8443@evil.example/",
            "https://user@app.example:8443/",
            "//app.example:8443/x",
            "javascript:alert(1)",
            "evil.example",
            "/%2F%2Fevil.example",
            "%2F%2Fevil.example",
            "/%2f/evil.example",
            "/%5Cevil.example",
            "/%255C%255Cevil.example",
            "/%09/evil.example",
            "/\t/evil.example",
            "/ /evil.example",
            "/\u{3000}/evil.example",
            "/caf\u{e9}",
            "/other-app/x",
            "https://app.example:8443/other-app",
            "/x/../other-app/y",
            "https://api.example.evil/",
            "https://evil.api.example/",
            "https://user@api.example/",
            "https://api.example/other-app",
        ];
        for raw in refused {
            assert_eq!(check(raw), None, "{raw:?} must be refused");
        }
    }

    #[test]
    fn long_return_urls_are_cut_to_their_path_or_the_root() {
        let long_query = format!("/dash?q={}", "x".repeat(MAX_RETURN_URL));
        assert_eq!(bounded(long_query), "/dash");
        let long_path = format!("/{}", "p".repeat(MAX_RETURN_URL));
        assert_eq!(bounded(format!("{long_path}?q=1")), "/");
        assert_eq!(bounded("/dash?q=1".to_owned()), "/dash?q=1");
    }
}
