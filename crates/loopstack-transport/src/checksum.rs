//! The Internet checksum over a transport message and its pseudo-header (RFC 768, RFC 9293
//! 3.1, RFC 8200 8.1): the one piece of arithmetic UDP and TCP share.

use std::net::IpAddr;

use etherparse::checksum::u64_16bit_word as sum;

/// The one's-complement sum of the pseudo-header: source, destination, protocol and the
/// transport length. IPv4 (RFC 768, RFC 9293 3.1) and IPv6 (RFC 8200 8.1) lay it out
/// differently, but the sum is the same words in another order.
fn pseudo_header_sum(src: IpAddr, dst: IpAddr, protocol: u8, len: usize) -> u64 {
    // The length is 16 bits in the IPv4 pseudo-header and 32 in the IPv6 one; summing it as
    // 32 bits covers both (the high half is zero for IPv4, where len < 65536).
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    let mut acc = sum::add_4bytes(0, len.to_be_bytes());
    acc = sum::add_2bytes(acc, [0, protocol]);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            acc = sum::add_4bytes(acc, s.octets());
            sum::add_4bytes(acc, d.octets())
        }
        (s, d) => {
            acc = sum::add_slice(acc, &v6_octets(s));
            sum::add_slice(acc, &v6_octets(d))
        }
    }
}

fn v6_octets(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// The checksum bytes to write into a transport header whose checksum field is zero: the
/// complement of the sum over the pseudo-header and `message` (header and payload).
///
/// A computed zero is sent as `0xffff` (RFC 768: zero means "no checksum" for UDP over
/// IPv4; TCP may send either form, and all-ones is what Linux sends).
pub fn compute(src: IpAddr, dst: IpAddr, protocol: u8, message: &[u8]) -> [u8; 2] {
    let acc = sum::add_slice(
        pseudo_header_sum(src, dst, protocol, message.len()),
        message,
    );
    // etherparse sums 16-bit words in native byte order, so the result is written back in
    // native order too: the bytes come out in network order either way.
    sum::ones_complement_with_no_zero(acc).to_ne_bytes()
}

/// Whether `message` (with its checksum field as received) sums to all-ones with its
/// pseudo-header: the receiver's test (RFC 1071 1).
pub fn verify(src: IpAddr, dst: IpAddr, protocol: u8, message: &[u8]) -> bool {
    let acc = sum::add_slice(
        pseudo_header_sum(src, dst, protocol, message.len()),
        message,
    );
    sum::ones_complement(acc) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Our sum agrees with etherparse's UDP checksum for both families, and verifies.
    #[test]
    fn matches_etherparse_udp() {
        for (s, d) in [("127.0.0.1", "127.0.0.2"), ("::1", "2001:db8::7")] {
            let b = match (ip(s), ip(d)) {
                (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), 64),
                (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), 64),
                _ => unreachable!(),
            }
            .udp(4000, 53);
            let mut out = Vec::new();
            b.write(&mut out, b"odd-length payload!").unwrap();
            let sliced = SlicedPacket::from_ip(&out).unwrap();
            let Some(TransportSlice::Udp(udp)) = sliced.transport else {
                panic!("not udp")
            };
            let mut msg = udp.slice().to_vec();
            let expected = [msg[6], msg[7]];
            assert!(verify(ip(s), ip(d), 17, &msg));
            msg[6] = 0;
            msg[7] = 0;
            let c = compute(ip(s), ip(d), 17, &msg);
            assert_eq!(c, expected);
            msg[6..8].copy_from_slice(&c);
            assert!(verify(ip(s), ip(d), 17, &msg));
            msg[9] ^= 1;
            assert!(!verify(ip(s), ip(d), 17, &msg), "a flipped bit must fail");
        }
    }
}
