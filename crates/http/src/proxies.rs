//! Which peers are trusted proxies: the one rule behind every header that is
//! believed only from the ingress (`X-Forwarded-*`, `X-Request-Id`).

use std::net::IpAddr;

use ipnet::IpNet;

/// True when `ip` belongs to one of the `trusted` networks. An IPv4-mapped
/// IPv6 address (`::ffff:10.0.0.1`, what a dual-stack socket reports) counts
/// as its IPv4 address.
pub fn is_trusted(trusted: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    trusted.iter().any(|net| net.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;

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
