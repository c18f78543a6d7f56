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
/// For UDP a computed zero is sent as `0xffff`, because zero in the field means "no
/// checksum" (RFC 768; Linux's `CSUM_MANGLED_0`). Every other protocol sends the complement
/// as it is: TCP's field has no such meaning, and RFC 1624 3 shows that a correct
/// computation never yields `0xffff` (negative zero) for it; Wireshark flags one as bad.
pub fn compute(src: IpAddr, dst: IpAddr, protocol: u8, message: &[u8]) -> [u8; 2] {
    const UDP: u8 = 17;
    let acc = sum::add_slice(
        pseudo_header_sum(src, dst, protocol, message.len()),
        message,
    );
    // etherparse sums 16-bit words in native byte order, so the result is written back in
    // native order too: the bytes come out in network order either way.
    let folded = if protocol == UDP {
        sum::ones_complement_with_no_zero(acc)
    } else {
        sum::ones_complement(acc)
    };
    folded.to_ne_bytes()
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

    /// A message whose sum comes to all-ones has a checksum of zero: TCP sends 0x0000
    /// (RFC 1624 3), UDP sends 0xffff (RFC 768), and both verify.
    #[test]
    fn a_zero_checksum_is_zero_for_tcp_and_all_ones_for_udp() {
        let (src, dst) = (ip("127.0.0.1"), ip("127.0.0.1"));
        for (protocol, expected) in [(6u8, [0u8, 0u8]), (17, [0xff, 0xff])] {
            // Two bytes chosen so the whole sum is 0xffff: the checksum field (bytes 2-3)
            // starts at zero and the last word makes up the difference.
            let mut msg = vec![0u8; 8];
            let partial = ones(pseudo_header_sum(src, dst, protocol, msg.len()));
            msg[6..8].copy_from_slice(&(0xffff - partial).to_be_bytes());
            let c = compute(src, dst, protocol, &msg);
            assert_eq!(c, expected, "protocol {protocol}");
            msg[2..4].copy_from_slice(&c);
            assert!(verify(src, dst, protocol, &msg), "protocol {protocol}");
        }
    }

    /// `acc` folded to 16 bits, in network order as a number.
    fn ones(acc: u64) -> u16 {
        u16::from_be_bytes((!sum::ones_complement(acc)).to_ne_bytes())
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
