//! The rate limit of sign-ins: attempts per client address in the current minute. Behind
//! a reverse proxy every request comes from the proxy: the client's address is then read
//! from `X-Forwarded-For`, but only when the peer is one of `auth.trusted_proxies` (a
//! client could otherwise name any address it likes, and escape the limit).

use std::collections::HashMap;
use std::net::IpAddr;
use std::str::FromStr;

use axum::http::HeaderMap;
use parking_lot::Mutex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An address or a network (`10.0.0.0/8`, `::1`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), self.prefix),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), self.prefix),
            // An IPv4 peer seen as IPv6 (`::ffff:a.b.c.d`) is the IPv4 address.
            (IpAddr::V4(_), IpAddr::V6(a)) => a.to_ipv4_mapped().is_some_and(|a| self.contains(IpAddr::V4(a))),
            (IpAddr::V6(_), IpAddr::V4(_)) => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let (whole, rest) = (usize::from(prefix / 8), prefix % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[whole] & mask == b[whole] & mask
    }
}

impl FromStr for Network {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| format!("{s:?} is not an address or network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => {
                p.trim().parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| format!("{s:?}: bad prefix length"))?
            }
        };
        Ok(Network { addr, prefix })
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for Network {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The client's address: the peer's, or, when the peer is a trusted proxy, the rightmost
/// address of `X-Forwarded-For` that is not itself a trusted proxy (the leftmost if all
/// are; the peer's if the header is missing or does not parse).
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[Network]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|h| h.trim().parse::<IpAddr>())
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    hops.iter().rev().find(|ip| !is_trusted(**ip)).or(hops.first()).copied().unwrap_or(peer)
}

/// Sign-in attempts per client address in the current minute.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    windows: Mutex<HashMap<IpAddr, (i64, u32)>>,
}

impl LoginLimiter {
    /// Counts an attempt; false when the address is over its budget for this minute.
    pub fn allow(&self, ip: IpAddr, now_ms: i64, per_minute: u32) -> bool {
        let minute = now_ms.div_euclid(60_000);
        let mut w = self.windows.lock();
        if w.len() > 10_000 {
            w.retain(|_, (m, _)| *m == minute);
        }
        let e = w.entry(ip).or_insert((minute, 0));
        if e.0 != minute {
            *e = (minute, 0);
        }
        e.1 += 1;
        e.1 <= per_minute
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(s: &[&str]) -> Vec<Network> {
        s.iter().map(|n| n.parse().expect("network")).collect()
    }

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", v.parse().expect("header"));
        h
    }

    #[test]
    fn networks_parse_and_contain() {
        let n: Network = "10.1.0.0/16".parse().expect("net");
        assert!(n.contains("10.1.200.3".parse().expect("ip")));
        assert!(!n.contains("10.2.0.1".parse().expect("ip")));
        assert!(n.contains("::ffff:10.1.0.9".parse().expect("ip")), "IPv4-mapped");
        let one: Network = "192.168.1.7".parse().expect("ip");
        assert!(one.contains("192.168.1.7".parse().expect("ip")) && !one.contains("192.168.1.8".parse().expect("ip")));
        let v6: Network = "fd00::/8".parse().expect("net");
        assert!(v6.contains("fd12::1".parse().expect("ip")) && !v6.contains("fe80::1".parse().expect("ip")));
        let odd: Network = "10.0.0.0/9".parse().expect("net");
        assert!(odd.contains("10.127.0.1".parse().expect("ip")) && !odd.contains("10.128.0.1".parse().expect("ip")));
        for bad in ["10.0.0.0/33", "proxy", "10.0.0.0/x", "::/129"] {
            assert!(bad.parse::<Network>().is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_addresses_count_only_behind_a_trusted_proxy() {
        let proxy: IpAddr = "10.0.0.2".parse().expect("ip");
        let trusted = nets(&["10.0.0.0/24"]);
        // Not trusted: the header is the client's to invent, and is ignored.
        assert_eq!(client_address(proxy, &xff("203.0.113.5"), &[]), proxy);
        // Trusted: the rightmost hop that is not a proxy of ours; a forged left part is skipped.
        assert_eq!(
            client_address(proxy, &xff("1.2.3.4, 203.0.113.5, 10.0.0.3"), &trusted),
            "203.0.113.5".parse::<IpAddr>().expect("ip")
        );
        // No header, or one that does not parse: the peer.
        assert_eq!(client_address(proxy, &HeaderMap::new(), &trusted), proxy);
        assert_eq!(client_address(proxy, &xff("not-an-address"), &trusted), proxy);
        // Every hop trusted: the first.
        assert_eq!(
            client_address(proxy, &xff("10.0.0.7, 10.0.0.8"), &trusted),
            "10.0.0.7".parse::<IpAddr>().expect("ip")
        );
    }
}
