//! The Internet checksum over a transport message and its pseudo-header (RFC 768, RFC 9293
//! 3.1, RFC 8200 8.1): the one piece of arithmetic UDP and TCP share.

use std::net::IpAddr;

use loopstack_internet::checksum::{add, finish, pseudo_header};
pub use loopstack_internet::checksum::{partial, verify, verify_parts};

/// The checksum bytes to write into a transport header whose checksum field is zero: the
/// complement of the sum over the pseudo-header and `message` (header and payload). UDP
/// sends a computed zero as `0xffff` (RFC 768), TCP as it is (RFC 1624 3); see
/// [`loopstack_internet::checksum::finish`].
pub fn compute(src: IpAddr, dst: IpAddr, protocol: u8, message: &[u8]) -> [u8; 2] {
    finish(
        add(pseudo_header(src, dst, protocol, message.len()), message),
        protocol,
    )
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
