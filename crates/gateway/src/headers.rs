//! Header surgery: what is removed from the inbound request, what the
//! gateway sets for the upstream, and the hop-by-hop rules of RFC 9110 7.6.1.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;
use serde_json::{Map, Value};

/// Header names the gateway owns, compared after lower-casing and mapping
/// `_` to `-`, because some frameworks treat `X_Auth_Request_Email` and
/// `x-auth-request-email` as the same header.
#[derive(Debug, Clone, Default)]
pub(crate) struct OwnedHeaders {
    names: HashSet<String>,
}

fn canonical(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

impl OwnedHeaders {
    /// The set of every name in `names`.
    pub(crate) fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            names: names.into_iter().map(canonical).collect(),
        }
    }

    /// Removes every header the gateway owns, in any spelling, all occurrences.
    pub(crate) fn strip(&self, headers: &mut HeaderMap) {
        if self.names.is_empty() {
            return;
        }
        let doomed: Vec<HeaderName> = headers
            .keys()
            .filter(|k| self.names.contains(&canonical(k.as_str())))
            .cloned()
            .collect();
        for name in doomed {
            headers.remove(&name);
        }
    }
}

/// Removes the named cookies from the `Cookie` header(s) the upstream will see.
pub(crate) fn strip_cookies(headers: &mut HeaderMap, names: &[&str]) {
    let mut kept: Vec<String> = Vec::new();
    let mut changed = false;
    for value in headers.get_all(header::COOKIE) {
        let Ok(value) = value.to_str() else {
            // Not ours to judge; forward opaque bytes as they came.
            return;
        };
        for part in value.split(';') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let name = part.split_once('=').map_or(part, |(n, _)| n).trim();
            if names.contains(&name) {
                changed = true;
            } else {
                kept.push(part.to_owned());
            }
        }
    }
    if !changed {
        return;
    }
    headers.remove(header::COOKIE);
    if !kept.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&kept.join("; ")) {
            headers.insert(header::COOKIE, v);
        }
    }
}

/// The value of one cookie in the request, if present (first wins).
pub(crate) fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Removes hop-by-hop headers and those named in `Connection`; `Upgrade`
/// (and `Connection: upgrade`) survive only when `keep_upgrade` is set.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .filter(|n| !(keep_upgrade && n == header::UPGRADE))
        .collect();
    for name in listed {
        headers.remove(&name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// True when `ip` belongs to a trusted proxy.
pub(crate) fn is_trusted(trusted: &[IpNet], ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    trusted.iter().any(|net| net.contains(&ip))
}

/// What the gateway believes about the client, after weighing `X-Forwarded-*`
/// against the list of trusted proxies.
#[derive(Debug, Clone)]
pub(crate) struct ClientView {
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
    pub(crate) fn new(
        headers: &HeaderMap,
        host: &str,
        peer: SocketAddr,
        tls: bool,
        trusted: &[IpNet],
    ) -> Self {
        let own_proto = if tls { "https" } else { "http" };
        if !is_trusted(trusted, peer.ip()) {
            return Self {
                client_ip: peer.ip(),
                proto: own_proto,
                host: host.to_owned(),
                forwarded_for: peer.ip().to_string(),
            };
        }
        let chain: Vec<String> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        // From the right: the first hop that is not one of our proxies is the client.
        let client_ip = chain
            .iter()
            .rev()
            .filter_map(|s| s.parse::<IpAddr>().ok())
            .find(|ip| !is_trusted(trusted, *ip))
            .unwrap_or(peer.ip());
        let proto = match headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
        {
            Some(p) if p.trim().eq_ignore_ascii_case("https") => "https",
            Some(p) if p.trim().eq_ignore_ascii_case("http") => "http",
            _ => own_proto,
        };
        let fwd_host = headers
            .get("x-forwarded-host")
            .and_then(|v| v.to_str().ok())
            .map(|h| h.split(',').next().unwrap_or("").trim().to_owned())
            .filter(|h| !h.is_empty());
        let mut forwarded_for = chain.join(", ");
        if !forwarded_for.is_empty() {
            forwarded_for.push_str(", ");
        }
        forwarded_for.push_str(&peer.ip().to_string());
        Self {
            client_ip,
            proto,
            host: fwd_host.unwrap_or_else(|| host.to_owned()),
            forwarded_for,
        }
    }

    /// Replaces inbound `X-Forwarded-*` / `Forwarded` with the gateway's own.
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        headers.remove(header::FORWARDED);
        for (name, value) in [
            ("x-forwarded-for", self.forwarded_for.as_str()),
            ("x-forwarded-proto", self.proto),
            ("x-forwarded-host", self.host.as_str()),
        ] {
            match HeaderValue::from_str(value) {
                Ok(v) => {
                    headers.insert(name, v);
                }
                Err(_) => {
                    headers.remove(name);
                }
            }
        }
    }
}

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
    fn strips_session_cookie_only() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; sess=secret; b=2"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("sess=again"));
        strip_cookies(&mut h, &["sess"]);
        assert_eq!(h.get_all(header::COOKIE).iter().count(), 1);
        assert_eq!(
            h.get(header::COOKIE).map(|v| v.as_bytes()),
            Some(&b"a=1; b=2"[..])
        );
        let mut only = HeaderMap::new();
        only.append(header::COOKIE, HeaderValue::from_static("sess=secret"));
        strip_cookies(&mut only, &["sess"]);
        assert!(only.get(header::COOKIE).is_none());
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
        let untrusted = ClientView::new(&h, "app.example", peer, false, &[]);
        assert_eq!(untrusted.client_ip, peer.ip());
        assert_eq!(untrusted.proto, "http");
        assert_eq!(untrusted.host, "app.example");
        assert_eq!(untrusted.forwarded_for, "10.0.0.1");
        let nets: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("cidr")];
        let trusted = ClientView::new(&h, "app.example", peer, false, &nets);
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
