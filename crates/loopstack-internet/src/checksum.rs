//! The Internet checksum (RFC 1071) over transport messages, and its completion for devices
//! that do not offload it (Linux's `CHECKSUM_PARTIAL`).
//!
//! # Why not etherparse's sum here
//!
//! etherparse (used for every header) sums four bytes per step with a carry check, about
//! 13 GB/s on the reference VM: on a 64 KiB TCP segment that was 42% of loopstack's bulk
//! transfer time. [`add`] sums 32 bytes per step into four independent accumulators, with no
//! carry to propagate, which the compiler keeps in registers and the CPU runs in parallel:
//! about 34 GB/s on the same machine (`benches/checksum.rs` compares the two). The result is
//! the same one's-complement sum.
//!
//! # Why any 32- or 64-bit word can be added
//!
//! The one's-complement sum of 16-bit words is the ordinary sum reduced modulo `0xffff`
//! (RFC 1071 2(A), "end-around carry"). Because `2^16 ≡ 1 (mod 0xffff)`, a 32-bit word
//! `hi·2^16 + lo` is congruent to `hi + lo`, and a 64-bit word likewise to its four 16-bit
//! halves: so the bytes can be read in any word size, and an ordinary (wide enough) integer
//! sum folded at the end gives the same checksum. Reading words in native byte order gives
//! the sum in native order too (RFC 1071 2(B), byte-order independence), so it is written
//! back with `to_ne_bytes` and comes out in network order on either endianness.
//!
//! # Offload (the partial checksum)
//!
//! On `lo` nothing can damage a packet, so, as Linux does for its loopback device, the
//! stack need not sum the payload at all. The transport layer writes only the sum of the
//! pseudo-header into its checksum field ([`partial`]) and tells the IP layer where the
//! field is ([`SendOptions::checksum_at`](crate::SendOptions::checksum_at)). The IP layer
//! finishes it ([`complete`]) when the device it picks cannot vouch for the packet: a TUN,
//! a pcap capture (a capture must show correct checksums), a fault injector that corrupts.
//! On plain `lo` the field keeps the partial sum and the receiver, told by the device that
//! the packet is intact, does not verify it.

use std::net::IpAddr;

/// Adds `bytes` to the running sum `acc` (a value from [`add`], [`pseudo_header`] or 0).
///
/// A trailing odd byte is summed as if followed by a zero byte (RFC 1071 1, RFC 768).
/// `acc` stays below `2^50` for any message up to 4 GiB, so it never overflows.
#[inline]
pub fn add(acc: u64, bytes: &[u8]) -> u64 {
    // Reduce the incoming sum below 2^33 first (still congruent modulo 0xffff), so that
    // an accumulator passed in from elsewhere cannot make the additions below overflow.
    let mut a = [(acc & 0xffff_ffff) + (acc >> 32), 0, 0, 0];
    let mut blocks = bytes.chunks_exact(32);
    for block in &mut blocks {
        // Four independent accumulators: no dependency chain between the four words, so
        // they are added in parallel. Each word adds less than 2^33.
        for (lane, word) in a.iter_mut().zip(block.chunks_exact(8)) {
            let w = u64::from_ne_bytes(word.try_into().unwrap_or([0; 8]));
            *lane += (w & 0xffff_ffff) + (w >> 32);
        }
    }
    let mut sum = a[0] + a[1] + a[2] + a[3];
    let mut words = blocks.remainder().chunks_exact(8);
    for word in &mut words {
        let w = u64::from_ne_bytes(word.try_into().unwrap_or([0; 8]));
        sum += (w & 0xffff_ffff) + (w >> 32);
    }
    // The last 0 to 7 bytes, as a 4-, a 2- and a 1-byte piece: each starts at an even
    // offset, so each is whole 16-bit words and adds like one. Copying them into a zeroed
    // word instead was a `memcpy` call of variable length, which made a 20-byte header
    // take 2.6 times as long as etherparse's sum (benches/checksum.rs).
    let mut rest = words.remainder();
    if let Some((four, more)) = rest.split_first_chunk::<4>() {
        sum += u64::from(u32::from_ne_bytes(*four));
        rest = more;
    }
    if let Some((two, more)) = rest.split_first_chunk::<2>() {
        sum += u64::from(u16::from_ne_bytes(*two));
        rest = more;
    }
    if let [last] = rest {
        // Zero-padded on the right: an odd last byte becomes the high-order byte of a word
        // in network order, as the RFCs pad it.
        sum += u64::from(u16::from_ne_bytes([*last, 0]));
    }
    sum
}

/// The sum folded to 16 bits with end-around carries (not complemented), in native order.
#[inline]
pub fn fold(acc: u64) -> u16 {
    let mut s = (acc & 0xffff_ffff) + (acc >> 32);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    // Three folds take any u64 below 2^17, then to at most 0xffff.
    s as u16
}

/// The sum of the pseudo-header: source, destination, protocol and the transport length.
/// IPv4 (RFC 768, RFC 9293 3.1) and IPv6 (RFC 8200 8.1) lay it out differently, but the sum
/// is the same words in another order. Mixed families sum the IPv4 address as IPv4-mapped.
#[inline]
pub fn pseudo_header(src: IpAddr, dst: IpAddr, protocol: u8, len: usize) -> u64 {
    let fixed = length_sum(len) + u64::from(u16::from_ne_bytes([0, protocol]));
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            fixed
                + u64::from(u32::from_ne_bytes(s.octets()))
                + u64::from(u32::from_ne_bytes(d.octets()))
        }
        (s, d) => add(add(fixed, &v6_octets(s)), &v6_octets(d)),
    }
}

/// The transport length's share of the pseudo-header sum. The pseudo-header is a sum, so a
/// sender that keeps the rest of it (the addresses and protocol of a path it sends along
/// again and again) adds only this per message.
#[inline]
pub fn length_sum(len: usize) -> u64 {
    // The length is 16 bits in the IPv4 pseudo-header and 32 in the IPv6 one; summing it as
    // 32 bits covers both (the high half is zero for IPv4, where len < 65536).
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    u64::from(u32::from_ne_bytes(len.to_be_bytes()))
}

fn v6_octets(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// The checksum bytes (wire order) for a sum taken with the checksum field at zero: the
/// complement of the folded sum.
///
/// For UDP a computed zero is sent as `0xffff`, because zero in the field means "no
/// checksum" (RFC 768; Linux's `CSUM_MANGLED_0`). Every other protocol sends the complement
/// as it is: TCP's field has no such meaning, and RFC 1624 3 shows that a correct
/// computation never yields `0xffff` (negative zero) for it; Wireshark flags one as bad.
#[inline]
pub fn finish(acc: u64, protocol: u8) -> [u8; 2] {
    const UDP: u8 = 17;
    let c = !fold(acc);
    if c == 0 && protocol == UDP {
        [0xff, 0xff]
    } else {
        c.to_ne_bytes()
    }
}

/// What the transport layer writes into its checksum field when the IP layer or the device
/// is to finish the checksum: the folded pseudo-header sum, not complemented (as Linux
/// leaves it for `CHECKSUM_PARTIAL`). It is never zero: the pseudo-header always has a
/// non-zero protocol, and a fold of a non-zero sum is at least 1. So a UDP receiver that
/// does not verify (an offloading device) still sees a checksum present.
#[inline]
pub fn partial(src: IpAddr, dst: IpAddr, protocol: u8, len: usize) -> [u8; 2] {
    fold(pseudo_header(src, dst, protocol, len)).to_ne_bytes()
}

/// Finishes a partial checksum in place: `message` is the transport message (header and
/// payload) whose field at `offset` holds [`partial`]. Summing the message with the
/// pseudo-header's sum in the field gives the sum of both, whose complement replaces it.
/// Does nothing if the field does not fit in the message.
pub fn complete(message: &mut [u8], offset: usize, protocol: u8) {
    if offset + 2 > message.len() {
        return;
    }
    let sum = add(0, message);
    let c = finish(sum, protocol);
    message[offset..offset + 2].copy_from_slice(&c);
}

/// Whether `message` (with its checksum field as received) sums to all-ones with its
/// pseudo-header: the receiver's test (RFC 1071 1).
#[inline]
pub fn verify(src: IpAddr, dst: IpAddr, protocol: u8, message: &[u8]) -> bool {
    fold(add(
        pseudo_header(src, dst, protocol, message.len()),
        message,
    )) == 0xffff
}

/// [`verify`] of a message in two pieces, `head` then `tail`: a packet whose payload is an
/// attached fragment (`PacketBuf::attach`), checked without copying it together.
///
/// The sum is independent of byte order (RFC 1071 2(B)): a piece that starts at an odd
/// offset sums to the byte-swapped sum of the same bytes at an even one.
pub fn verify_parts(src: IpAddr, dst: IpAddr, protocol: u8, head: &[u8], tail: &[u8]) -> bool {
    let mut tail_sum = fold(add(0, tail));
    if head.len() % 2 == 1 {
        tail_sum = tail_sum.swap_bytes();
    }
    let acc = add(
        pseudo_header(src, dst, protocol, head.len() + tail.len()),
        head,
    ) + u64::from(tail_sum);
    fold(acc) == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::checksum::u64_16bit_word as reference;

    /// A deterministic byte pattern (xorshift), so failures reproduce.
    fn bytes(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn reference_fold(b: &[u8], start: u64) -> u16 {
        !reference::ones_complement(reference::add_slice(start, b))
    }

    /// Every length from 0 to 300 (all tails and alignments of the 32-byte loop), at
    /// every offset 0-7 into the buffer, agrees with etherparse's sum.
    #[test]
    fn agrees_with_etherparse_for_every_length_and_alignment() {
        let data = bytes(400, 7);
        for offset in 0..8 {
            for len in 0..=300 {
                let b = &data[offset..offset + len];
                assert_eq!(
                    fold(add(0, b)),
                    reference_fold(b, 0),
                    "len {len} at {offset}"
                );
            }
        }
    }

    /// Large messages and large starting sums agree too (no overflow, carries folded).
    #[test]
    fn agrees_for_large_messages_and_starting_sums() {
        for (len, seed) in [(65_535, 3), (65_536, 5), (1 << 20, 9)] {
            let b = bytes(len, seed);
            for start in [0, 0xffff, u64::from(u32::MAX), u64::MAX >> 1, u64::MAX] {
                let want = !reference::ones_complement(reference::add_slice(0, &b));
                // Start sums are folded in separately: etherparse's own start is a 32-bit
                // carry chain, so compare the fold of (start + message) instead.
                let got = fold(add(start, &b));
                let start_fold = fold(start);
                let expect = fold(u64::from(want) + u64::from(start_fold));
                assert_eq!(got, expect, "len {len}, start {start:#x}");
            }
        }
        // All 0xff: the sum is large in every lane.
        let b = vec![0xff; 100_000];
        assert_eq!(fold(add(0, &b)), reference_fold(&b, 0));
    }

    /// A partial checksum completed by the IP layer equals the checksum computed in one
    /// go, and verifies, for TCP and UDP over both families.
    #[test]
    fn a_completed_partial_checksum_is_the_full_checksum() {
        let pairs: [(IpAddr, IpAddr); 2] = [
            ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap()),
            ("::1".parse().unwrap(), "2001:db8::7".parse().unwrap()),
        ];
        for (src, dst) in pairs {
            for (protocol, field) in [(6u8, 16usize), (17, 6)] {
                for len in [20usize, 21, 64, 1461, 65_000] {
                    let mut msg = bytes(len, len as u64);
                    msg[field..field + 2].fill(0);
                    let full = finish(add(pseudo_header(src, dst, protocol, len), &msg), protocol);
                    let p = partial(src, dst, protocol, len);
                    assert_ne!(p, [0, 0]);
                    msg[field..field + 2].copy_from_slice(&p);
                    complete(&mut msg, field, protocol);
                    assert_eq!(msg[field..field + 2], full, "{src} {protocol} {len}");
                    assert!(verify(src, dst, protocol, &msg));
                    msg[len / 2] ^= 0x10;
                    assert!(!verify(src, dst, protocol, &msg), "a flipped bit is caught");
                }
            }
        }
    }

    /// A sum of all-ones: TCP sends 0x0000, UDP 0xffff (RFC 768), and both verify.
    #[test]
    fn a_zero_checksum_is_zero_for_tcp_and_all_ones_for_udp() {
        let (src, dst): (IpAddr, IpAddr) =
            ("127.0.0.1".parse().unwrap(), "127.0.0.1".parse().unwrap());
        for (protocol, expected) in [(6u8, [0u8, 0u8]), (17, [0xff, 0xff])] {
            let mut msg = vec![0u8; 8];
            let partial =
                u16::from_be_bytes(fold(pseudo_header(src, dst, protocol, 8)).to_ne_bytes());
            msg[6..8].copy_from_slice(&(0xffff - partial).to_be_bytes());
            let c = finish(add(pseudo_header(src, dst, protocol, 8), &msg), protocol);
            assert_eq!(c, expected, "protocol {protocol}");
            msg[2..4].copy_from_slice(&c);
            assert!(verify(src, dst, protocol, &msg), "protocol {protocol}");
        }
    }

    /// A field too far out is left alone rather than panicking.
    #[test]
    fn complete_ignores_a_field_past_the_end() {
        let mut msg = vec![1u8; 7];
        complete(&mut msg, 6, 17);
        assert_eq!(msg, vec![1u8; 7]);
    }

    /// A message split anywhere, at odd and even offsets, verifies in two pieces exactly
    /// when it verifies whole, for both families.
    #[test]
    fn verify_parts_agrees_with_verify_at_every_split() {
        for (src, dst) in [("127.0.0.1", "127.0.0.2"), ("::1", "2001:db8::7")] {
            let (src, dst): (IpAddr, IpAddr) = (src.parse().unwrap(), dst.parse().unwrap());
            for len in [0usize, 1, 2, 7, 33, 64, 301] {
                let mut msg = bytes(len.max(18), len as u64 + 3);
                msg.truncate(len.max(18));
                msg[16..18].fill(0);
                let c = finish(add(pseudo_header(src, dst, 6, msg.len()), &msg), 6);
                msg[16..18].copy_from_slice(&c);
                assert!(verify(src, dst, 6, &msg));
                for split in 0..=msg.len() {
                    let (head, tail) = msg.split_at(split);
                    assert!(
                        verify_parts(src, dst, 6, head, tail),
                        "len {len} split {split}"
                    );
                }
                // One flipped bit anywhere fails in pieces too.
                let last = msg.len() - 1;
                msg[last] ^= 0x10;
                for split in [0, 1, 17, last] {
                    let (head, tail) = msg.split_at(split);
                    assert!(
                        !verify_parts(src, dst, 6, head, tail),
                        "len {len} split {split}"
                    );
                }
            }
        }
    }
}
