//! Addresses and prefixes: CIDR blocks, and the address classes the internet layer treats
//! specially (loopback, unspecified, broadcast, multicast).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use thiserror::Error;

/// An IP address with a prefix length, as written `127.0.0.1/8` or `::1/128`.
///
/// The address keeps its host bits: `127.0.0.1/8` is the address 127.0.0.1 on the network
/// 127.0.0.0/8, as `ip addr` shows it. [`network`](Cidr::network) clears the host bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    addr: IpAddr,
    prefix_len: u8,
}

/// Why a CIDR could not be built or parsed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CidrError {
    /// The prefix is longer than the address (32 bits for IPv4, 128 for IPv6).
    #[error("prefix length {prefix_len} is longer than the {max}-bit address")]
    PrefixTooLong {
        /// The prefix length given.
        prefix_len: u8,
        /// The address width.
        max: u8,
    },
    /// The text is not `ADDRESS/LENGTH` (or a bare address).
    #[error("invalid address or prefix: {0:?}")]
    Syntax(String),
}

impl Cidr {
    /// `addr/prefix_len`; fails if the prefix is longer than the address.
    pub fn new(addr: IpAddr, prefix_len: u8) -> Result<Self, CidrError> {
        let max = max_prefix(addr);
        if prefix_len > max {
            return Err(CidrError::PrefixTooLong { prefix_len, max });
        }
        Ok(Cidr { addr, prefix_len })
    }

    /// A host prefix: `/32` for IPv4, `/128` for IPv6.
    pub fn host(addr: IpAddr) -> Self {
        Cidr {
            addr,
            prefix_len: max_prefix(addr),
        }
    }

    /// The address, host bits included.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Whether this is an IPv6 prefix.
    pub fn is_ipv6(&self) -> bool {
        self.addr.is_ipv6()
    }

    /// The network: the address with its host bits cleared (`127.0.0.1/8` -> `127.0.0.0/8`).
    pub fn network(&self) -> Cidr {
        Cidr {
            addr: mask(self.addr, self.prefix_len),
            prefix_len: self.prefix_len,
        }
    }

    /// Whether `addr` lies in this prefix (always false across address families).
    pub fn contains(&self, addr: IpAddr) -> bool {
        // The bits that differ, under the prefix's mask: on every received packet (is the
        // destination ours?), so done on integers rather than through `mask`.
        match (self.addr, addr) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                (u32::from(n) ^ u32::from(a)) & mask_v4(self.prefix_len) == 0
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                (u128::from(n) ^ u128::from(a)) & mask_v6(self.prefix_len) == 0
            }
            _ => false,
        }
    }

    /// The IPv4 directed broadcast address of the prefix (all host bits set), if IPv4 and
    /// shorter than /31 (RFC 3021: /31 links have no broadcast).
    pub fn broadcast(&self) -> Option<Ipv4Addr> {
        match self.addr {
            IpAddr::V4(a) if self.prefix_len < 31 => {
                let host_bits = u32::MAX >> self.prefix_len;
                Some(Ipv4Addr::from(u32::from(a) | host_bits))
            }
            _ => None,
        }
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

/// `addr` with all but the first `prefix_len` bits cleared.
pub fn mask(addr: IpAddr, prefix_len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask_v4(prefix_len))),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask_v6(prefix_len))),
    }
}

/// The address as a number: an IPv4 address in the low 32 bits, an IPv6 one whole. Two
/// addresses of one family compare as their numbers do; a key that mixes families must
/// carry the family beside it, since an IPv4 address and the IPv6 address with the same
/// low bits give the same number.
#[inline]
pub fn bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u32::from(a).into(),
        IpAddr::V6(a) => a.into(),
    }
}

/// The IPv4 netmask of a `prefix_len`-bit prefix as an integer (a length above 32 counts
/// as 32).
#[inline]
pub(crate) fn mask_v4(prefix_len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix_len.min(32)))
        .unwrap_or(0)
}

/// The IPv6 netmask of a `prefix_len`-bit prefix as an integer (a length above 128 counts
/// as 128).
#[inline]
pub(crate) fn mask_v6(prefix_len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix_len.min(128)))
        .unwrap_or(0)
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// Parses `ADDRESS/LENGTH`, or a bare address as a host prefix.
    fn from_str(s: &str) -> Result<Self, CidrError> {
        let syntax = || CidrError::Syntax(s.to_owned());
        match s.split_once('/') {
            Some((a, l)) => {
                let addr: IpAddr = a.parse().map_err(|_| syntax())?;
                let len: u8 = l.parse().map_err(|_| syntax())?;
                Cidr::new(addr, len)
            }
            None => Ok(Cidr::host(s.parse().map_err(|_| syntax())?)),
        }
    }
}

/// Whether `addr` is a loopback address: anything in 127.0.0.0/8 (RFC 1122 3.2.1.3(g)), or
/// ::1 (RFC 4291 2.5.3). Note that Linux, like loopstack, answers on every address of
/// 127.0.0.0/8, not only 127.0.0.1.
pub fn is_loopback(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => a.octets()[0] == 127,
        IpAddr::V6(a) => a == Ipv6Addr::LOCALHOST,
    }
}

/// Why a source or destination address is not acceptable, whichever interface the packet
/// came on (RFC 1122 3.2.1.3, RFC 5735, RFC 4291 2.5.2 and 2.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Martian {
    /// An IPv4 source in 0.0.0.0/8 other than 0.0.0.0 itself ("this network" hosts may only
    /// appear as sources during boot, as 0.0.0.0), or a destination in 0.0.0.0/8.
    ThisNetwork,
    /// Limited broadcast 255.255.255.255 as a source.
    BroadcastSource,
    /// A multicast source (IPv4 224.0.0.0/4, IPv6 ff00::/8).
    MulticastSource,
    /// The unspecified address (:: or 0.0.0.0) as a destination.
    UnspecifiedDestination,
    /// IPv4 class E (240.0.0.0/4, reserved) as a source or destination, other than the
    /// limited broadcast destination.
    Reserved,
    /// A loopback source or destination on a non-loopback interface.
    LoopbackOnWire,
}

impl fmt::Display for Martian {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Martian::ThisNetwork => "address in 0.0.0.0/8",
            Martian::BroadcastSource => "broadcast source",
            Martian::MulticastSource => "multicast source",
            Martian::UnspecifiedDestination => "unspecified destination",
            Martian::Reserved => "reserved address (240.0.0.0/4)",
            Martian::LoopbackOnWire => "loopback address on a non-loopback interface",
        })
    }
}

/// Checks a packet's addresses as they arrive on an interface (`on_loopback` tells which
/// kind). Returns the first rule broken, if any.
///
/// RFC 1122 3.2.1.3: a host must silently discard a datagram whose source is 0.0.0.0/8 other
/// than 0.0.0.0, a broadcast or multicast address, or (g) 127/8 "if it arrives from the
/// network"; RFC 4291 2.5.3 says the same of ::1 for IPv6.
pub fn check_incoming(src: IpAddr, dst: IpAddr, on_loopback: bool) -> Option<Martian> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => check_incoming_v4(s, d, on_loopback),
        (IpAddr::V6(s), IpAddr::V6(d)) => check_incoming_v6(s, d, on_loopback),
        // A header cannot mix families; treat it as unspecified rather than panic.
        _ => Some(Martian::UnspecifiedDestination),
    }
}

/// [`check_incoming`] of an IPv4 packet. The receive path calls it with the addresses read
/// from the packet's bytes, which keeps them in registers (see `Internet::receive_with`).
#[inline]
pub fn check_incoming_v4(s: Ipv4Addr, d: Ipv4Addr, on_loopback: bool) -> Option<Martian> {
    // Loopback to loopback, every packet on `lo`: none of the rules below can object to
    // 127/8, so one comparison of each first octet settles it (the full walk was about 20
    // instructions per check, two checks per packet; docs/benchmarks.md, item 18).
    if s.octets()[0] == 127 && d.octets()[0] == 127 {
        return (!on_loopback).then_some(Martian::LoopbackOnWire);
    }
    if !on_loopback && (s.is_loopback() || d.is_loopback()) {
        return Some(Martian::LoopbackOnWire);
    }
    if s.is_multicast() {
        return Some(Martian::MulticastSource);
    }
    if s.is_broadcast() {
        return Some(Martian::BroadcastSource);
    }
    if s.octets()[0] == 0 && !s.is_unspecified() || d.octets()[0] == 0 {
        return Some(Martian::ThisNetwork);
    }
    if (s.octets()[0] >= 240) || (d.octets()[0] >= 240 && !d.is_broadcast()) {
        return Some(Martian::Reserved);
    }
    None
}

/// [`check_incoming`] of an IPv6 packet.
#[inline]
pub fn check_incoming_v6(s: Ipv6Addr, d: Ipv6Addr, on_loopback: bool) -> Option<Martian> {
    if !on_loopback && (s.is_loopback() || d.is_loopback()) {
        return Some(Martian::LoopbackOnWire);
    }
    if s.is_multicast() {
        return Some(Martian::MulticastSource);
    }
    if d.is_unspecified() {
        return Some(Martian::UnspecifiedDestination);
    }
    None
}

/// Checks the addresses of a packet about to leave by an interface: the stack never sends a
/// loopback address out of a non-loopback interface, nor a martian source.
pub fn check_outgoing(src: IpAddr, dst: IpAddr, on_loopback: bool) -> Option<Martian> {
    check_incoming(src, dst, on_loopback)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parse_display_and_network() {
        let c: Cidr = "127.0.0.1/8".parse().unwrap();
        assert_eq!(c.addr(), ip("127.0.0.1"));
        assert_eq!(c.prefix_len(), 8);
        assert_eq!(c.to_string(), "127.0.0.1/8");
        assert_eq!(c.network().to_string(), "127.0.0.0/8");
        let h: Cidr = "::1".parse().unwrap();
        assert_eq!(h.to_string(), "::1/128");
        let d: Cidr = "2001:db8::1/64".parse().unwrap();
        assert_eq!(d.network().to_string(), "2001:db8::/64");
        assert_eq!("0.0.0.0/0".parse::<Cidr>().unwrap().prefix_len(), 0);
    }

    #[test]
    fn bad_cidrs_are_errors() {
        assert_eq!(
            "10.0.0.0/33".parse::<Cidr>(),
            Err(CidrError::PrefixTooLong {
                prefix_len: 33,
                max: 32
            })
        );
        assert!(matches!(
            "::/129".parse::<Cidr>(),
            Err(CidrError::PrefixTooLong { max: 128, .. })
        ));
        for bad in ["", "/8", "1.2.3/8", "1.2.3.4/x", "1.2.3.4/-1", "hello"] {
            assert!(
                matches!(bad.parse::<Cidr>(), Err(CidrError::Syntax(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn contains_respects_prefix_and_family() {
        let lo: Cidr = "127.0.0.1/8".parse().unwrap();
        for a in ["127.0.0.1", "127.0.0.2", "127.255.255.254", "127.0.0.0"] {
            assert!(lo.contains(ip(a)), "{a}");
        }
        assert!(!lo.contains(ip("128.0.0.1")));
        assert!(!lo.contains(ip("::1")));
        let any: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(any.contains(ip("192.0.2.7")));
        let doc: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(doc.contains(ip("2001:db8:ffff::1")));
        assert!(!doc.contains(ip("2001:db9::1")));
    }

    #[test]
    fn broadcast_addresses() {
        let c: Cidr = "192.0.2.1/24".parse().unwrap();
        assert_eq!(c.broadcast(), Some(Ipv4Addr::new(192, 0, 2, 255)));
        assert_eq!("192.0.2.0/31".parse::<Cidr>().unwrap().broadcast(), None);
        assert_eq!("::1/128".parse::<Cidr>().unwrap().broadcast(), None);
    }

    #[test]
    fn loopback_is_all_of_127_8_and_only_colon_colon_1() {
        assert!(is_loopback(ip("127.0.0.1")));
        assert!(is_loopback(ip("127.255.255.254")));
        assert!(is_loopback(ip("127.1.2.3")));
        assert!(!is_loopback(ip("128.0.0.1")));
        assert!(is_loopback(ip("::1")));
        assert!(!is_loopback(ip("::2")));
        assert!(!is_loopback(ip("::")));
    }

    /// (source, destination, on loopback, expected verdict), for both families.
    #[test]
    fn martians() {
        let cases: &[(&str, &str, bool, Option<Martian>)] = &[
            ("127.0.0.1", "127.0.0.1", true, None),
            ("127.0.0.1", "127.0.0.9", true, None),
            ("127.255.255.255", "127.0.0.0", true, None),
            // Loopback to loopback off `lo` (the short cut for 127/8 must not pass it).
            (
                "127.0.0.1",
                "127.0.0.2",
                false,
                Some(Martian::LoopbackOnWire),
            ),
            ("::1", "::1", true, None),
            ("192.0.2.1", "192.0.2.2", false, None),
            ("2001:db8::1", "2001:db8::2", false, None),
            (
                "127.0.0.1",
                "192.0.2.2",
                false,
                Some(Martian::LoopbackOnWire),
            ),
            (
                "192.0.2.1",
                "127.0.0.1",
                false,
                Some(Martian::LoopbackOnWire),
            ),
            ("::1", "2001:db8::2", false, Some(Martian::LoopbackOnWire)),
            ("2001:db8::1", "::1", false, Some(Martian::LoopbackOnWire)),
            (
                "224.0.0.1",
                "192.0.2.2",
                false,
                Some(Martian::MulticastSource),
            ),
            (
                "ff02::1",
                "2001:db8::2",
                false,
                Some(Martian::MulticastSource),
            ),
            (
                "255.255.255.255",
                "192.0.2.2",
                false,
                Some(Martian::BroadcastSource),
            ),
            ("0.1.2.3", "192.0.2.2", false, Some(Martian::ThisNetwork)),
            ("192.0.2.1", "0.0.0.5", false, Some(Martian::ThisNetwork)),
            ("0.0.0.0", "255.255.255.255", false, None),
            ("240.0.0.1", "192.0.2.2", false, Some(Martian::Reserved)),
            ("192.0.2.1", "250.0.0.1", false, Some(Martian::Reserved)),
            (
                "2001:db8::1",
                "::",
                false,
                Some(Martian::UnspecifiedDestination),
            ),
        ];
        for &(s, d, lo, want) in cases {
            assert_eq!(check_incoming(ip(s), ip(d), lo), want, "{s} -> {d} lo={lo}");
            assert_eq!(check_outgoing(ip(s), ip(d), lo), want, "{s} -> {d} lo={lo}");
        }
    }
}
