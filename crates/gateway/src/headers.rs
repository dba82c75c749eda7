//! Header surgery: what is removed from the inbound request, what the
//! gateway sets for the upstream, and the hop-by-hop rules of RFC 9110 7.6.1.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

use orchestrator_http::proxies::{X_FORWARDED_FOR, ip_text};
use orchestrator_http::{ConnInfo, authority};
use serde_json::{Map, Value};

/// Header names the gateway owns, compared after lower-casing and mapping
/// `_` to `-`, because some frameworks treat `X_Auth_Request_Email` and
/// `x-auth-request-email` as the same header.
#[derive(Debug, Clone, Default)]
pub(crate) struct OwnedHeaders {
    /// Canonical names; a handful, so a scan beats hashing.
    names: Vec<Box<str>>,
}

/// `name` lower-cased with `_` for `-`: the spelling CGI-style frameworks
/// fold header names to.
fn canonical(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// Calls `check` with a header name as it arrived (lower-case, as every
/// `HeaderName` is) and, when it has a `_`, once more in its canonical
/// spelling; true when either call is.
fn in_any_spelling(name: &HeaderName, check: impl Fn(&str) -> bool) -> bool {
    let name = name.as_str();
    check(name) || (name.contains('_') && check(&canonical(name)))
}

/// Removes every header whose name `doomed` picks, all occurrences: one
/// pass over the names, then one removal per picked name.
fn remove_where(headers: &mut HeaderMap, doomed: impl Fn(&HeaderName) -> bool) {
    let picked: Vec<HeaderName> = headers.keys().filter(|k| doomed(k)).cloned().collect();
    for name in picked {
        headers.remove(&name);
    }
}

impl OwnedHeaders {
    /// The set of every name in `names`.
    pub(crate) fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut names: Vec<Box<str>> = names.into_iter().map(|n| canonical(n).into()).collect();
        names.sort();
        names.dedup();
        Self { names }
    }

    fn owns(&self, canonical_name: &str) -> bool {
        self.names.iter().any(|n| **n == *canonical_name)
    }

    /// True when `headers` has a header the gateway owns under another
    /// spelling than its own (with `_` for `-`); a case difference is none
    /// (header names are case-insensitive and arrive lower-cased).
    pub(crate) fn any_respelled(&self, headers: &HeaderMap) -> bool {
        !self.names.is_empty()
            && headers
                .keys()
                .filter(|k| k.as_str().contains('_'))
                .any(|k| self.owns(&canonical(k.as_str())))
    }

    /// Removes every header the gateway owns, in any spelling, all occurrences.
    pub(crate) fn strip(&self, headers: &mut HeaderMap) {
        if !self.names.is_empty() {
            remove_where(headers, |k| in_any_spelling(k, |n| self.owns(n)));
        }
    }
}

/// Removes the named cookies from the `Cookie` field(s) the upstream will
/// see, as bytes (see [`orchestrator_http::cookies::strip`]).
pub(crate) fn strip_cookies(headers: &mut HeaderMap, names: &[&str]) {
    orchestrator_http::cookies::strip(headers, names);
}

/// The one cookie `name` of the request; two of them are none (see
/// [`orchestrator_http::cookies::unique`]).
pub(crate) fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    orchestrator_http::cookies::unique(headers, name)
}

/// The one cookie of the first of `names` that has one, in one pass (see
/// [`orchestrator_http::cookies::first_unique`]).
pub(crate) fn first_cookie_value<const N: usize>(
    headers: &HeaderMap,
    names: [&str; N],
) -> Option<String> {
    orchestrator_http::cookies::first_unique(headers, names)
}

const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    // Only meaningful with an h2c upgrade, which is never forwarded.
    HeaderName::from_static("http2-settings"),
];

/// Removes hop-by-hop headers and those named in `Connection`; `Upgrade`
/// (and `Connection: upgrade`) survive only when `keep_upgrade` is set.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let mut listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .filter(|n| !(keep_upgrade && n == header::UPGRADE))
        .collect();
    // Sorted, so a `Connection` field of thousands of names costs a search
    // per header, not a scan of all of them.
    listed.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
    listed.dedup();
    let is_listed = |k: &HeaderName| {
        listed
            .binary_search_by(|n| n.as_str().cmp(k.as_str()))
            .is_ok()
    };
    remove_where(headers, |k| {
        HOP_BY_HOP.contains(k) || is_listed(k) || (!keep_upgrade && k == header::UPGRADE)
    });
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

pub(crate) use orchestrator_http::proxies::is_trusted;

/// Headers that name another request target or method than the request's
/// own. Frameworks honour them (Symfony and IIS take `X-Original-URL` as the
/// path: CVE-2018-14773), and the gateway forwards exactly the path its
/// policy checked, so they are removed from every request, trusted proxies'
/// too: load balancers (ALB, a default NGINX) pass a client's copy through.
const TARGET_OVERRIDES: [&str; 6] = [
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-original-method",
    "x-forwarded-uri",
    "x-forwarded-method",
];

/// Headers through which a proxy tells the app another host, scheme, prefix
/// or client address than the request's own: believed from trusted proxies
/// only. `X-Forwarded-For/-Proto/-Host` and `Forwarded` are replaced by
/// [`ClientView::apply`] instead.
const PROXY_ONLY: [&str; 14] = [
    "x-original-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "x-url-scheme",
    "x-host",
    "x-real-ip",
    "true-client-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
];

/// What the gateway believes about the client, after weighing `X-Forwarded-*`
/// against the list of trusted proxies.
#[derive(Debug, Clone)]
pub(crate) struct ClientView {
    /// The peer is a trusted proxy (its routing headers are believed).
    pub(crate) via_trusted_proxy: bool,
    /// The host the request was routed by (`:authority`/`Host`, lower-case,
    /// no port): what a session is bound to, since that is what picked the
    /// app. `host` may come from `X-Forwarded-Host` instead.
    pub(crate) route_host: String,
    /// The client's address: the rightmost untrusted hop of `X-Forwarded-For`.
    pub(crate) client_ip: IpAddr,
    /// `https` or `http`, as the client used it.
    pub(crate) proto: &'static str,
    /// The host the client asked for (with port if any).
    pub(crate) host: String,
    /// The `X-Forwarded-For` chain to send upstream.
    pub(crate) forwarded_for: String,
}

impl ClientView {
    /// Reads the client's view from the request; inbound `X-Forwarded-*`
    /// count only when the peer is a trusted proxy.
    pub(crate) fn new(headers: &HeaderMap, host: &str, conn: &ConnInfo, trusted: &[IpNet]) -> Self {
        let (peer, tls) = (conn.peer, conn.tls);
        let own_proto = if tls { "https" } else { "http" };
        if !is_trusted(trusted, peer.ip()) {
            return Self {
                via_trusted_proxy: false,
                route_host: authority::host(host),
                client_ip: peer.ip().to_canonical(),
                proto: own_proto,
                host: host.to_owned(),
                forwarded_for: ip_text(peer.ip()),
            };
        }
        let mut forwarded_for = String::new();
        for hop in headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            forwarded_for.push_str(hop);
            forwarded_for.push_str(", ");
        }
        forwarded_for.push_str(&ip_text(peer.ip()));
        let client_ip = orchestrator_http::proxies::client_ip(headers, peer.ip(), trusted);
        let proto = match headers.get(X_FORWARDED_PROTO).and_then(|v| v.to_str().ok()) {
            Some(p) if p.trim().eq_ignore_ascii_case("https") => "https",
            Some(p) if p.trim().eq_ignore_ascii_case("http") => "http",
            _ => own_proto,
        };
        let fwd_host = headers
            .get(X_FORWARDED_HOST)
            .and_then(|v| v.to_str().ok())
            .map(|h| h.split(',').next().unwrap_or("").trim().to_owned())
            .filter(|h| !h.is_empty());
        Self {
            via_trusted_proxy: true,
            route_host: authority::host(host),
            client_ip,
            proto,
            host: fwd_host.unwrap_or_else(|| host.to_owned()),
            forwarded_for,
        }
    }

    /// Replaces inbound `X-Forwarded-*` / `Forwarded` with the gateway's own,
    /// sets `X-Real-IP` to the client's address, drops the target overrides
    /// ([`TARGET_OVERRIDES`]) and, unless a trusted proxy sent them, the other
    /// proxy headers ([`PROXY_ONLY`]), in every spelling: CGI, WSGI and PHP
    /// read `X_Original_URL` as `HTTP_X_ORIGINAL_URL` too.
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        remove_where(headers, |k| {
            in_any_spelling(k, |n| {
                TARGET_OVERRIDES.contains(&n)
                    || (!self.via_trusted_proxy && PROXY_ONLY.contains(&n))
                    || matches!(
                        n,
                        "x-forwarded-for" | "x-forwarded-proto" | "x-forwarded-host" | "forwarded"
                    )
                    // Respellings of the ones set below.
                    || (n == "x-real-ip" && k.as_str() != n)
            })
        });
        let real_ip = HeaderValue::from_str(&ip_text(self.client_ip)).ok();
        // Straight from a client (no proxy before us) the chain is that
        // same address: one value for both.
        let forwarded_for = match &real_ip {
            Some(ip) if ip.as_bytes() == self.forwarded_for.as_bytes() => Some(ip.clone()),
            _ => HeaderValue::from_str(&self.forwarded_for).ok(),
        };
        // Usually the `Host` the client sent: its value is shared, not copied.
        let host = match headers.get(header::HOST) {
            Some(h) if h.as_bytes() == self.host.as_bytes() => Some(h.clone()),
            _ => HeaderValue::from_str(&self.host).ok(),
        };
        for (name, value) in [
            (X_REAL_IP, real_ip),
            (X_FORWARDED_FOR, forwarded_for),
            (
                X_FORWARDED_PROTO,
                Some(HeaderValue::from_static(self.proto)),
            ),
            (X_FORWARDED_HOST, host),
        ] {
            if let Some(v) = value {
                headers.insert(name, v);
            }
        }
    }
}

const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The `header → claim` pairs' values from the claims; arrays are joined
/// with `,`; claims that are absent, objects, or not valid header bytes are
/// skipped.
pub(crate) fn identity_values<'a>(
    mapping: &'a [(HeaderName, String)],
    claims: &'a Map<String, Value>,
) -> impl Iterator<Item = (HeaderName, HeaderValue)> + 'a {
    mapping.iter().filter_map(|(name, claim)| {
        let value = match claims.get(claim)? {
            Value::String(s) => s.clone(),
            Value::Array(items) => items
                .iter()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    Value::Bool(b) => Some(b.to_string()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join(","),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return None,
        };
        let value = HeaderValue::from_bytes(value.as_bytes()).ok()?;
        Some((name.clone(), value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::net::SocketAddr;

    #[test]
    fn strips_owned_headers_in_any_spelling() {
        let owned = OwnedHeaders::new(["X-Auth-Request-Email", "X-Orchestrator-Assertion"]);
        let mut h = HeaderMap::new();
        h.append("x-auth-request-email", HeaderValue::from_static("a"));
        h.append("X-AUTH-REQUEST-EMAIL", HeaderValue::from_static("b"));
        h.append("x_auth_request_email", HeaderValue::from_static("c"));
        h.append("X_Auth-Request_Email", HeaderValue::from_static("d"));
        h.append("x-orchestrator-assertion", HeaderValue::from_static("e"));
        h.append("x-other", HeaderValue::from_static("kept"));
        owned.strip(&mut h);
        assert_eq!(h.len(), 1);
        assert_eq!(h.get("x-other").map(|v| v.as_bytes()), Some(&b"kept"[..]));
    }

    #[test]
    fn routing_headers_count_only_from_trusted_proxies() {
        let mut h = HeaderMap::new();
        for name in PROXY_ONLY.iter().chain(&TARGET_OVERRIDES) {
            h.insert(*name, HeaderValue::from_static("/admin"));
        }
        h.insert("x_original_url", HeaderValue::from_static("/admin"));
        h.insert("X_Forwarded_Host", HeaderValue::from_static("evil.example"));
        h.insert("x_custom_app_header", HeaderValue::from_static("kept"));
        let peer: SocketAddr = ([10, 0, 0, 1], 5000).into();
        let mut from_client = h.clone();
        ClientView::new(&h, "app.example", &ConnInfo::plain(peer), &[]).apply(&mut from_client);
        for name in PROXY_ONLY
            .iter()
            .chain(&TARGET_OVERRIDES)
            .chain(&["x_original_url", "x_forwarded_host"])
            .filter(|n| **n != "x-real-ip")
        {
            assert!(from_client.get(*name).is_none(), "{name} kept");
        }
        assert_eq!(from_client["x-real-ip"], "10.0.0.1");
        assert_eq!(from_client["x_custom_app_header"], "kept");
        let nets: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("cidr")];
        let mut from_proxy = h.clone();
        ClientView::new(&h, "app.example", &ConnInfo::plain(peer), &nets).apply(&mut from_proxy);
        assert_eq!(from_proxy["x-forwarded-prefix"], "/admin");
        for name in TARGET_OVERRIDES
            .iter()
            .chain(&["x_original_url", "x_forwarded_host"])
        {
            assert!(from_proxy.get(*name).is_none(), "{name} kept from a proxy");
        }
        assert_eq!(from_proxy["x-real-ip"], "10.0.0.1", "set by the gateway");
    }

    #[test]
    fn hop_by_hop_and_connection_listed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("x-end", HeaderValue::from_static("2"));
        let mut up = h.clone();
        remove_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        remove_hop_by_hop(&mut up, true);
        assert_eq!(
            up.get(header::UPGRADE).map(|v| v.as_bytes()),
            Some(&b"websocket"[..])
        );
        assert_eq!(
            up.get(header::CONNECTION).map(|v| v.as_bytes()),
            Some(&b"upgrade"[..])
        );
    }

    #[test]
    fn every_name_of_a_long_connection_field_is_removed() {
        // Thousands of names, repeated and in any order: each listed one
        // goes, the others stay.
        let listed: Vec<String> = (0..3000).rev().map(|i| format!("x-hop-{i}")).collect();
        let mut h = HeaderMap::new();
        let field = format!("{}, x-hop-7, X-Hop-2999", listed.join(", "));
        h.insert(header::CONNECTION, HeaderValue::from_str(&field).unwrap());
        for n in ["x-hop-0", "x-hop-7", "x-hop-2999", "x-kept"] {
            h.insert(HeaderName::from_static(n), HeaderValue::from_static("1"));
        }
        remove_hop_by_hop(&mut h, false);
        let left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["x-kept"]);
    }

    #[test]
    fn forwarded_headers_trust_only_proxies() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 10.0.0.7"),
        );
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        h.insert(
            "x-forwarded-host",
            HeaderValue::from_static("forged.example"),
        );
        let peer: SocketAddr = ([10, 0, 0, 1], 5000).into();
        let untrusted = ClientView::new(&h, "app.example", &ConnInfo::plain(peer), &[]);
        assert_eq!(untrusted.client_ip, peer.ip());
        assert_eq!(untrusted.proto, "http");
        assert_eq!(untrusted.host, "app.example");
        assert_eq!(untrusted.forwarded_for, "10.0.0.1");
        let nets: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("cidr")];
        let trusted = ClientView::new(&h, "app.example", &ConnInfo::plain(peer), &nets);
        assert_eq!(trusted.client_ip, "6.6.6.6".parse::<IpAddr>().expect("ip"));
        assert_eq!(trusted.proto, "https");
        assert_eq!(trusted.host, "forged.example");
        assert_eq!(trusted.forwarded_for, "6.6.6.6, 10.0.0.7, 10.0.0.1");
    }

    #[test]
    fn identity_headers_from_claims() {
        let mapping = vec![
            (HeaderName::from_static("x-user"), "sub".to_owned()),
            (HeaderName::from_static("x-groups"), "groups".to_owned()),
            (HeaderName::from_static("x-missing"), "nope".to_owned()),
            (HeaderName::from_static("x-evil"), "evil".to_owned()),
        ];
        let claims = json!({"sub": "alice", "groups": ["a", "b"], "evil": "x\r\nInjected: 1"});
        let h: HeaderMap = identity_values(&mapping, claims.as_object().expect("object")).collect();
        assert_eq!(h.get("x-user").map(|v| v.as_bytes()), Some(&b"alice"[..]));
        assert_eq!(h.get("x-groups").map(|v| v.as_bytes()), Some(&b"a,b"[..]));
        assert!(h.get("x-missing").is_none());
        assert!(h.get("x-evil").is_none());
    }
}
