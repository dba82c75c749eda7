//! Which peers are trusted proxies: the one rule behind every header that is
//! believed only from the ingress (`X-Forwarded-*`, `X-Request-Id`).

use std::net::IpAddr;

use http::HeaderMap;
use http::header::HeaderName;
use ipnet::IpNet;

/// `X-Forwarded-For`, the one name every reader of the chain uses.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// `ip` as text (dotted quad, or RFC 5952 for IPv6), in one allocation:
/// the IPv4 case, every request's, without the formatting machinery.
pub fn ip_text(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut text = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            text.push(char::from(b'0' + octet / 10 % 10));
        }
        text.push(char::from(b'0' + octet % 10));
    }
    text
}

/// True when `ip` belongs to one of the `trusted` networks. An IPv4-mapped
/// IPv6 address (`::ffff:10.0.0.1`, what a dual-stack socket reports) counts
/// as its IPv4 address.
pub fn is_trusted(trusted: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    trusted.iter().any(|net| net.contains(&ip))
}

/// The client's address. From an untrusted peer, the peer. From a trusted
/// proxy, `X-Forwarded-For` read from the right (each hop appends its peer):
/// the first address that is not a trusted proxy is the client; an entry that
/// is not an address stops the walk at the last trusted hop (what is left of
/// it may have been written by anyone); when every entry is trusted, the
/// leftmost one.
pub fn client_ip(headers: &HeaderMap, peer: IpAddr, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    if !is_trusted(trusted, peer) {
        return peer;
    }
    let entries: Vec<&str> = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let mut client = peer;
    for entry in entries.iter().rev() {
        // Some load balancers write the client's port too (`1.2.3.4:5678`,
        // `[2001:db8::1]:5678`).
        let Some(ip) = entry
            .parse::<IpAddr>()
            .ok()
            .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        else {
            break;
        };
        client = ip.to_canonical();
        if !is_trusted(trusted, client) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn chain(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                "x-forwarded-for",
                HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("")),
            );
        }
        h
    }

    #[test]
    fn ip_text_is_display_for_every_kind_of_address() {
        for ip in [
            "0.0.0.0",
            "10.0.0.1",
            "127.0.0.1",
            "192.168.100.99",
            "255.255.255.255",
            "1.20.199.200",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:10.0.0.1",
        ] {
            let parsed: IpAddr = ip.parse().unwrap_or_else(|_| unreachable!());
            assert_eq!(ip_text(parsed), parsed.to_string(), "{ip}");
        }
        for n in 0..=255u8 {
            let ip = IpAddr::from([n, 0, n, 9]);
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_hop_behind_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap_or_else(|_| unreachable!())];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap_or_else(|_| unreachable!());
        let cases: &[(&str, &[&str], &str)] = &[
            // An untrusted peer's header means nothing.
            ("192.0.2.1", &["203.0.113.9"], "192.0.2.1"),
            // The client forged 1.1.1.1 to the left of its real address.
            (
                "10.0.0.2",
                &["1.1.1.1, 198.51.100.7", "10.0.0.5"],
                "198.51.100.7",
            ),
            // Garbage stops the walk at the last trusted hop.
            ("10.0.0.2", &["1.1.1.1, unknown, 10.0.0.9"], "10.0.0.9"),
            // Every hop trusted: the leftmost.
            ("10.0.0.2", &["10.1.1.1, 10.0.0.9"], "10.1.1.1"),
            // Entries with a port are addresses too.
            ("10.0.0.2", &["198.51.100.7:5678, 10.0.0.9"], "198.51.100.7"),
            ("10.0.0.2", &["[2001:db8::7]:443"], "2001:db8::7"),
            // No header behind a proxy: the proxy.
            ("10.0.0.2", &[], "10.0.0.2"),
            // A mapped IPv6 peer is its IPv4 address.
            ("::ffff:10.0.0.2", &["198.51.100.7"], "198.51.100.7"),
        ];
        for (peer, xff, want) in cases {
            assert_eq!(
                client_ip(&chain(xff), ip(peer), &trusted),
                ip(want),
                "{peer} {xff:?}"
            );
        }
    }

    #[test]
    fn mapped_addresses_count_as_their_ipv4_address() {
        let nets: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()];
        for (ip, want) in [
            ("10.1.2.3", true),
            ("::ffff:10.1.2.3", true),
            ("fd00::1", true),
            ("11.0.0.1", false),
            ("::ffff:11.0.0.1", false),
            ("::1", false),
        ] {
            assert_eq!(is_trusted(&nets, ip.parse().unwrap()), want, "{ip}");
        }
        assert!(!is_trusted(&[], "10.0.0.1".parse().unwrap()));
    }
}
