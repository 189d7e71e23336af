//! The egress policy: which destinations Depot's own outbound calls (package downloads, the
//! OpenID Connect provider, webhooks) may reach. By default only public unicast addresses:
//! loopback, private (RFC 1918), shared (CGNAT), link-local, unique-local, unspecified,
//! multicast, broadcast, reserved and documentation ranges are refused, and so are IPv6 forms
//! that carry an IPv4 address (mapped, compatible, NAT64, 6to4) when the address they carry is.
//! `allowed_networks` (CIDRs) opens ranges; `allowed_hosts` exempts host names, whatever they
//! resolve to. The HTTP adapter applies the policy to every resolved address, at connect time,
//! and to every redirect hop.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why a destination is refused (for the log; clients get only `destination_forbidden`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("destination {address} is forbidden by the egress policy ({range})")]
pub struct Forbidden {
    pub address: IpAddr,
    pub range: &'static str,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    allowed_networks: Vec<IpNet>,
    allowed_hosts: Vec<String>,
}

/// A CIDR in `egress.allowed_networks` that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a network in CIDR notation (e.g. 10.0.0.0/8 or fd00::/8)")]
pub struct BadNetwork(pub String);

impl EgressPolicy {
    /// The policy from its settings. A bare address is taken as a single-address network.
    pub fn new(allowed_networks: &[String], allowed_hosts: &[String]) -> Result<Self, BadNetwork> {
        let networks = allowed_networks
            .iter()
            .map(|n| n.trim())
            .filter(|n| !n.is_empty())
            .map(|n| {
                n.parse::<IpNet>()
                    .or_else(|_| n.parse::<IpAddr>().map(IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| BadNetwork(n.to_owned()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            allowed_networks: networks,
            allowed_hosts: allowed_hosts
                .iter()
                .map(|h| normalise_host(h))
                .filter(|h| !h.is_empty())
                .collect(),
        })
    }

    /// Whether a host name is exempt from the address check.
    pub fn host_allowed(&self, host: &str) -> bool {
        let host = normalise_host(host);
        self.allowed_hosts.contains(&host)
    }

    /// Whether `address` may be connected to.
    pub fn check(&self, address: IpAddr) -> Result<(), Forbidden> {
        let Some(range) = special_range(address) else {
            return Ok(());
        };
        // An allowed network opens the address in any of its forms (::ffff:10.0.0.1 is
        // 10.0.0.1).
        let canonical = canonical(address);
        if self
            .allowed_networks
            .iter()
            .any(|n| n.contains(&address) || n.contains(&canonical))
        {
            return Ok(());
        }
        Err(Forbidden { address, range })
    }
}

fn normalise_host(host: &str) -> String {
    host.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// The IPv4 address an IPv6 one carries (mapped, compatible, NAT64, 6to4), or the address.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => embedded_v4(v6).map_or(address, IpAddr::V4),
    }
}

fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let o = v6.octets();
    let tail = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4); // ::ffff:a.b.c.d
    }
    if s[..6] == [0, 0, 0, 0, 0, 0] && !(s[6] == 0 && s[7] <= 1) {
        return Some(tail); // ::a.b.c.d (compatible; :: and ::1 are themselves)
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(tail); // 64:ff9b::/96, NAT64
    }
    if s[..3] == [0x64, 0xff9b, 0x0001] {
        return Some(tail); // 64:ff9b:1::/48, local-use NAT64 (RFC 8215), address in the tail
    }
    if s[..6] == [0, 0, 0, 0, 0xffff, 0] {
        return Some(tail); // ::ffff:0:a.b.c.d, SIIT (IPv4-translated)
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5])); // 6to4
    }
    None
}

/// The special-purpose range `address` is in, if any (IANA's special-purpose registries: the
/// ranges that are not globally reachable).
fn special_range(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return special_v4(v4).map(|_| "an IPv6 form of a forbidden IPv4 address");
            }
            let s = v6.segments();
            if v6.is_unspecified() {
                Some("unspecified")
            } else if v6.is_loopback() {
                Some("loopback")
            } else if s[0] & 0xff00 == 0xff00 {
                Some("multicast")
            } else if s[0] & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if s[0] & 0xffc0 == 0xfec0 {
                Some("site-local")
            } else if s[0] & 0xfe00 == 0xfc00 {
                Some("unique local")
            } else if s[0] == 0x2001 && s[1] == 0x0db8 {
                Some("documentation")
            } else if s[0] == 0x0100 && s[1..4] == [0, 0, 0] {
                Some("discard-only")
            } else if s[0] == 0x2001 && s[1] < 0x0200 {
                Some("IETF protocol assignments (Teredo, ORCHID, …)")
            } else {
                None
            }
        }
    }
}

fn special_v4(v4: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = v4.octets();
    match (a, b, c) {
        (0, _, _) => Some("this network / unspecified"),
        (10, _, _) => Some("private (RFC 1918)"),
        (100, 64..=127, _) => Some("shared address space (CGNAT)"),
        (127, _, _) => Some("loopback"),
        (169, 254, _) => Some("link-local"),
        (172, 16..=31, _) => Some("private (RFC 1918)"),
        (192, 0, 0) => Some("IETF protocol assignments"),
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => Some("documentation"),
        (192, 88, 99) => Some("6to4 relay anycast"),
        (192, 168, _) => Some("private (RFC 1918)"),
        (198, 18..=19, _) => Some("benchmarking"),
        (224..=239, _, _) => Some("multicast"),
        (240..=255, _, _) => Some("reserved / broadcast"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn every_non_public_form_is_refused_by_default() {
        let p = EgressPolicy::default();
        for a in [
            "127.0.0.1",
            "127.255.255.254",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.169.254",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "::",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::a9fe:a9fe",
            "::ffff:0:7f00:1",
            "2002:7f00:1::",
            "2001:db8::1",
        ] {
            assert!(p.check(ip(a)).is_err(), "{a} should be refused");
        }
    }

    #[test]
    fn public_addresses_pass() {
        let p = EgressPolicy::default();
        for a in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "172.32.0.1",
            "100.128.0.1",
            "192.169.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "2a00:1450:4001::200e",
        ] {
            assert_eq!(p.check(ip(a)), Ok(()), "{a} should pass");
        }
    }

    #[test]
    fn allowed_networks_open_ranges_in_every_form() {
        let p = EgressPolicy::new(&["127.0.0.0/8".into(), " 10.0.0.5 ".into()], &[]).unwrap();
        assert_eq!(p.check(ip("127.0.0.1")), Ok(()));
        assert_eq!(p.check(ip("::ffff:127.0.0.1")), Ok(()));
        assert_eq!(p.check(ip("10.0.0.5")), Ok(()));
        assert!(p.check(ip("10.0.0.6")).is_err());
        assert!(
            p.check(ip("::1")).is_err(),
            "IPv6 loopback is another network"
        );
        assert_eq!(
            EgressPolicy::new(&["10.0.0.0/33".into()], &[]),
            Err(BadNetwork("10.0.0.0/33".into()))
        );
        assert!(EgressPolicy::new(&["example.com".into()], &[]).is_err());
    }

    #[test]
    fn allowed_hosts_compare_without_case_or_trailing_dot() {
        let p = EgressPolicy::new(&[], &["Registry.Internal".into()]).unwrap();
        assert!(p.host_allowed("registry.internal."));
        assert!(!p.host_allowed("other.internal"));
    }
}
