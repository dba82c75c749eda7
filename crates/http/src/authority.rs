//! Which host a request is for: one rule for the dispatcher (provider or
//! gateway), the gateway's router and the provider's issuer match, so no two
//! parts of the process can route one request by different hosts.

use http::Request;
use http::header::HOST;
use http::uri::Authority;

/// The request's authority: the URI's (HTTP/2 `:authority`, or an
/// absolute-form target, which RFC 9112 §3.2.2 says wins over `Host`), else
/// the `Host` header when it is a valid authority. `None` when neither is.
pub fn of_request<B>(req: &Request<B>) -> Option<&str> {
    if let Some(a) = req.uri().authority() {
        return Some(a.as_str());
    }
    req.headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && Authority::try_from(*h).is_ok())
}

/// The host of an authority as routing compares hosts: the port dropped,
/// IPv6 brackets removed, lower-case, without a trailing dot
/// (`App.Example.:8443` → `app.example`, `[::1]:80` → `::1`).
pub fn host(authority: &str) -> String {
    host_part(authority).to_ascii_lowercase()
}

/// True when `authority` names `host` (as [`host`] gives it), without
/// allocating: for a match on every request.
pub fn names_host(authority: &str, host: &str) -> bool {
    host_part(authority).eq_ignore_ascii_case(host)
}

/// [`host`] before lower-casing.
fn host_part(authority: &str) -> &str {
    let a = authority.trim();
    let host = if let Some(rest) = a.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        a.rsplit_once(':').map_or(a, |(h, port)| {
            if port.bytes().all(|c| c.is_ascii_digit()) {
                h
            } else {
                a
            }
        })
    };
    host.trim_end_matches('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_compare_without_port_case_brackets_or_final_dot() {
        for (authority, want) in [
            ("App.Example:8443", "app.example"),
            ("app.example.", "app.example"),
            ("[::1]:80", "::1"),
            ("[::1]", "::1"),
            ("127.0.0.1", "127.0.0.1"),
            ("localhost:8080", "localhost"),
        ] {
            assert_eq!(host(authority), want, "{authority}");
            assert!(names_host(authority, want), "{authority}");
        }
    }

    #[test]
    fn the_uri_authority_wins_and_a_bad_host_is_none() {
        let req = |uri: &str, host: Option<&str>| {
            let mut b = Request::builder().uri(uri);
            if let Some(h) = host {
                b = b.header(HOST, h);
            }
            b.body(()).unwrap_or_default()
        };
        assert_eq!(
            of_request(&req("http://a.example/x", Some("b.example"))),
            Some("a.example")
        );
        assert_eq!(
            of_request(&req("/x", Some("b.example:8080"))),
            Some("b.example:8080")
        );
        assert_eq!(of_request(&req("/x", Some("bad host"))), None);
        assert_eq!(of_request(&req("/x", Some(""))), None);
        assert_eq!(of_request(&req("/x", None)), None);
    }
}
