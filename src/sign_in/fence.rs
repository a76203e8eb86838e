//! The address fence of the one request this server makes to a place a stranger chooses
//! (a client metadata document): which IP addresses count as "on the public internet".
//!
//! IPv6 is judged by allow-list: only global unicast (`2000::/3`) minus the special
//! blocks inside it, plus the two forms that carry an IPv4 address a network may route
//! to (IPv4-mapped `::ffff:a.b.c.d` and the well-known NAT64 prefix `64:ff9b::/96`),
//! which are judged by the address they embed. Everything else (IPv4-compatible `::/96`,
//! SIIT `::ffff:0:0:0/96`, site-local `fec0::/10`, discard-only `100::/64`, unique-local,
//! link-local, multicast, local-use NAT64 `64:ff9b:1::/48`) is refused without a look
//! inside, because on some network each of them reaches an internal IPv4 host.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether `ip` is an address on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(v4: Ipv4Addr) -> bool {
    let [a, b, c, _] = v4.octets();
    !(v4.is_private()
        || v4.is_loopback()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || v4.is_documentation()
        || a == 0
        // shared address space (carrier-grade NAT)
        || (a == 100 && (64..128).contains(&b))
        // IETF protocol assignments
        || (a == 192 && b == 0 && c == 0)
        // 6to4 relay anycast (deprecated)
        || (a == 192 && b == 88 && c == 99)
        // benchmarking
        || (a == 198 && (18..20).contains(&b))
        // reserved
        || a >= 240)
}

fn is_public_v6(v6: Ipv6Addr) -> bool {
    let s = v6.segments();
    // IPv4-mapped: what a dual-stack socket connects to for an IPv4 address.
    if let Some(v4) = v6.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    // Well-known NAT64 prefix (RFC 6052): the gateway connects to the embedded address.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_public_v4(embedded_v4(s[6], s[7]));
    }
    if s[0] & 0xe000 != 0x2000 {
        return false;
    }
    // 6to4 (RFC 3056): the relay forwards to the embedded IPv4 address.
    if s[0] == 0x2002 {
        return is_public_v4(embedded_v4(s[1], s[2]));
    }
    // IETF protocol assignments 2001::/23: Teredo 2001::/32 (its embedded addresses are
    // obfuscated and relay-dependent), benchmarking, ORCHID; documentation 2001:db8::/32
    // and 3fff::/20.
    let protocol = s[0] == 0x2001 && s[1] < 0x0200;
    let documentation = (s[0] == 0x2001 && s[1] == 0x0db8) || (s[0] & 0xfff0) == 0x3ff0;
    !(protocol || documentation)
}

fn embedded_v4(high: u16, low: u16) -> Ipv4Addr {
    let [a, b] = high.to_be_bytes();
    let [c, d] = low.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

#[cfg(test)]
mod tests {
    use super::is_public;

    fn public(s: &str) -> bool {
        is_public(s.parse().unwrap_or_else(|_| panic!("{s} is an address")))
    }

    #[test]
    fn private_and_special_ipv4_is_refused() {
        for ip in [
            "10.0.0.1",
            "192.168.1.1",
            "172.16.0.1",
            "127.0.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "192.0.0.8",
            "192.0.2.1",
            "192.88.99.1",
            "198.18.0.1",
            "203.0.113.9",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(!public(ip), "{ip}");
        }
        assert!(public("93.184.216.34"));
        assert!(public("8.8.8.8"));
    }

    #[test]
    fn ipv6_outside_global_unicast_is_refused() {
        for ip in [
            "::",
            "::1",
            // IPv4-compatible (::/96), even of a public address: deprecated, never routed
            "::127.0.0.1",
            "::a9fe:a9fe",
            "::8.8.8.8",
            // SIIT
            "::ffff:0:a9fe:a9fe",
            "::ffff:0:808:808",
            // site-local, discard-only, unique-local, link-local, multicast
            "fec0::1",
            "100::1",
            "fd00::1",
            "fc00::1",
            "fe80::1",
            "ff02::1",
            // local-use NAT64
            "64:ff9b:1::a9fe:a9fe",
            "64:ff9b:1::808:808",
        ] {
            assert!(!public(ip), "{ip}");
        }
    }

    #[test]
    fn embedded_ipv4_is_judged_by_the_ipv4_rules() {
        // IPv4-mapped
        assert!(!public("::ffff:10.0.0.1"));
        assert!(!public("::ffff:127.0.0.1"));
        assert!(public("::ffff:8.8.8.8"));
        // NAT64 well-known prefix
        assert!(!public("64:ff9b::a9fe:a9fe"));
        assert!(!public("64:ff9b::7f00:1"));
        assert!(public("64:ff9b::808:808"));
        // 6to4
        assert!(!public("2002:a9fe:a9fe::1"));
        assert!(!public("2002:7f00:1::1"));
        assert!(!public("2002:0a00:0001::1"));
        assert!(public("2002:0808:0808::1"));
    }

    #[test]
    fn special_blocks_inside_global_unicast_are_refused() {
        for ip in [
            // Teredo
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            // benchmarking, ORCHIDv2
            "2001:2::1",
            "2001:20::1",
            // documentation
            "2001:db8::1",
            "3fff::1",
        ] {
            assert!(!public(ip), "{ip}");
        }
        assert!(public("2606:4700::1"));
        assert!(public("2a00:1450:4001::200e"));
        assert!(public("2001:4860:4860::8888"));
    }
}
