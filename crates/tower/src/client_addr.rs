//! The client address a request is rate-limited by. Behind a reverse proxy every request comes
//! from the proxy's socket, so one bucket would hold every client; with `--trusted-proxy`, and
//! only when the socket peer is inside a trusted network, the address is read from
//! `X-Forwarded-For` / RFC 7239 `Forwarded: for=`, walked from the right (the hop nearest the
//! tower), skipping trusted proxies. A header from anyone else is ignored, so clients cannot
//! pick their own bucket.

use axum::http::HeaderMap;
use std::net::IpAddr;

pub use ipnet::IpNet;

/// Headers longer than this are ignored (the socket peer is used).
pub const MAX_HEADER_BYTES: usize = 8 * 1024;
/// Chains with more hops than this are ignored (the socket peer is used).
pub const MAX_HOPS: usize = 32;

/// A `--trusted-proxy` value: a network (`10.0.0.0/8`, `fd00::/8`) or a single address.
pub fn parse_network(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if let Ok(n) = s.parse::<IpNet>() {
        return Ok(n.trunc());
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("`{s}` is not an IP network (`10.0.0.0/8`, `fd00::/8`) or address"))
}

/// The networks whose forwarding headers are believed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrustedProxies(pub Vec<IpNet>);

impl TrustedProxies {
    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client address: the socket `peer`, unless it is trusted, then the nearest untrusted
    /// hop of the forwarding headers (`X-Forwarded-For` first, then `Forwarded`). Anything
    /// absent, malformed or over the bounds gives `peer`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if self.0.is_empty() || !self.trusts(peer) {
            return peer;
        }
        let chain = hops(headers, "x-forwarded-for", xff_hop)
            .or_else(|| hops(headers, "forwarded", forwarded_hop));
        let Some(chain) = chain else {
            return peer;
        };
        // All trusted: the leftmost is as near the client as the tower can know.
        let mut last = peer;
        for ip in chain.into_iter().rev() {
            if !self.trusts(ip) {
                return canonical(ip);
            }
            last = ip;
        }
        canonical(last)
    }
}

/// IPv4-mapped IPv6 addresses as IPv4, so `::ffff:10.0.0.1` is inside `10.0.0.0/8`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Every hop of every instance of header `name`, in order; `None` when absent, too long, with
/// too many hops, or with any hop that does not parse.
fn hops(headers: &HeaderMap, name: &str, hop: fn(&str) -> Option<IpAddr>) -> Option<Vec<IpAddr>> {
    let mut out = Vec::new();
    let mut bytes = 0;
    let mut any = false;
    for value in headers.get_all(name) {
        any = true;
        bytes += value.len();
        if bytes > MAX_HEADER_BYTES {
            return None;
        }
        for part in value.to_str().ok()?.split(',') {
            if out.len() == MAX_HOPS {
                return None;
            }
            out.push(hop(part)?);
        }
    }
    any.then_some(out)
}

/// One `X-Forwarded-For` entry: an address (IPv6 optionally in brackets, ports allowed).
fn xff_hop(s: &str) -> Option<IpAddr> {
    node(s.trim())
}

/// One `Forwarded` element (`for=192.0.2.1;proto=https`): its `for` node.
fn forwarded_hop(element: &str) -> Option<IpAddr> {
    let mut found = None;
    for pair in element.split(';') {
        let (k, v) = pair.split_once('=')?;
        if k.trim().eq_ignore_ascii_case("for") {
            if found.is_some() {
                return None;
            }
            let v = v.trim();
            let v = match v.strip_prefix('"') {
                Some(q) => q.strip_suffix('"')?,
                None => v,
            };
            found = Some(node(v)?);
        }
    }
    found
}

/// `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]`, `[::1]:80`; `unknown` and obfuscated ids do not
/// parse.
fn node(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (ip, tail) = rest.split_once(']')?;
        if !(tail.is_empty() || port(tail.strip_prefix(':')?)) {
            return None;
        }
        return ip.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let (ip, p) = s.split_once(':')?;
    if !port(p) {
        return None;
    }
    ip.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

fn port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn trusted(nets: &[&str]) -> TrustedProxies {
        TrustedProxies(nets.iter().map(|n| parse_network(n).unwrap()).collect())
    }

    fn with(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn networks_parse_and_bad_values_are_refused() {
        assert_eq!(
            parse_network("10.0.0.0/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            parse_network("10.1.2.3/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            parse_network("192.0.2.7").unwrap().to_string(),
            "192.0.2.7/32"
        );
        assert_eq!(parse_network("fd00::/8").unwrap().to_string(), "fd00::/8");
        assert_eq!(parse_network("::1").unwrap().to_string(), "::1/128");
        for bad in [
            "",
            "10.0.0.0/33",
            "10.0.0",
            "example.com",
            "fd00::/129",
            "1.2.3.4/",
        ] {
            let e = parse_network(bad).unwrap_err();
            assert!(e.contains("not an IP network"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_header_from_an_untrusted_peer_is_ignored() {
        let t = trusted(&["10.0.0.0/8"]);
        let h = with(&[("x-forwarded-for", "1.1.1.1"), ("forwarded", "for=2.2.2.2")]);
        assert_eq!(t.client(ip("203.0.113.9"), &h), ip("203.0.113.9"));
        assert_eq!(
            TrustedProxies::default().client(ip("10.0.0.1"), &h),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn chains_are_walked_from_the_right_past_trusted_hops() {
        let t = trusted(&["10.0.0.0/8", "192.0.2.1"]);
        // The client put a spoofed address first; the nearest untrusted hop wins.
        let h = with(&[(
            "x-forwarded-for",
            "6.6.6.6, 198.51.100.4, 192.0.2.1, 10.0.0.3",
        )]);
        assert_eq!(t.client(ip("10.0.0.2"), &h), ip("198.51.100.4"));
        // Several header lines are one list.
        let h = with(&[
            ("x-forwarded-for", "198.51.100.4"),
            ("x-forwarded-for", "10.0.0.3"),
        ]);
        assert_eq!(t.client(ip("10.0.0.2"), &h), ip("198.51.100.4"));
        // Every hop trusted: the leftmost.
        let h = with(&[("x-forwarded-for", "10.9.9.9, 10.0.0.3")]);
        assert_eq!(t.client(ip("10.0.0.2"), &h), ip("10.9.9.9"));
        // No header: the proxy itself.
        assert_eq!(t.client(ip("10.0.0.2"), &HeaderMap::new()), ip("10.0.0.2"));
    }

    #[test]
    fn forwarded_and_ipv6() {
        let t = trusted(&["fd00::/8", "10.0.0.0/8"]);
        let h = with(&[(
            "forwarded",
            "for=192.0.2.60;proto=http, For=\"[2001:db8:cafe::17]:4711\";by=x, for=10.0.0.5",
        )]);
        assert_eq!(t.client(ip("fd00::1"), &h), ip("2001:db8:cafe::17"));
        let h = with(&[("forwarded", "for=\"192.0.2.43:47011\"")]);
        assert_eq!(t.client(ip("10.0.0.1"), &h), ip("192.0.2.43"));
        let h = with(&[("x-forwarded-for", "[2001:db8::1]:443, 2001:db8::2")]);
        assert_eq!(t.client(ip("::ffff:10.0.0.1"), &h), ip("2001:db8::2"));
        let h = with(&[("x-forwarded-for", "::ffff:198.51.100.4")]);
        assert_eq!(t.client(ip("10.0.0.1"), &h), ip("198.51.100.4"));
        // X-Forwarded-For is preferred when both are sent.
        let h = with(&[
            ("x-forwarded-for", "198.51.100.1"),
            ("forwarded", "for=198.51.100.2"),
        ]);
        assert_eq!(t.client(ip("10.0.0.1"), &h), ip("198.51.100.1"));
    }

    #[test]
    fn malformed_or_oversized_headers_give_the_peer() {
        let t = trusted(&["10.0.0.0/8"]);
        let peer = ip("10.0.0.1");
        for xff in [
            "",
            "not-an-ip",
            "198.51.100.4, , 10.0.0.3",
            "198.51.100.4:",
            "198.51.100.4:99999x",
            "2001:db8::1:443]",
            "[2001:db8::1",
            "[198.51.100.4]",
            "unknown",
        ] {
            assert_eq!(
                t.client(peer, &with(&[("x-forwarded-for", xff)])),
                peer,
                "{xff:?}"
            );
        }
        for fwd in [
            "for=",
            "for=\"198.51.100.4",
            "for=_hidden",
            "for=unknown",
            "proto=https",
            "for=1.1.1.1;for=2.2.2.2",
            "garbage",
        ] {
            assert_eq!(
                t.client(peer, &with(&[("forwarded", fwd)])),
                peer,
                "{fwd:?}"
            );
        }
        let long = vec!["198.51.100.4"; MAX_HOPS + 1].join(",");
        assert_eq!(t.client(peer, &with(&[("x-forwarded-for", &long)])), peer);
        let ok = vec!["198.51.100.4"; MAX_HOPS].join(",");
        assert_eq!(
            t.client(peer, &with(&[("x-forwarded-for", &ok)])),
            ip("198.51.100.4")
        );
        let huge = format!("{}198.51.100.4", " ".repeat(MAX_HEADER_BYTES));
        assert_eq!(t.client(peer, &with(&[("x-forwarded-for", &huge)])), peer);
    }
}
