//! Initial sequence numbers (RFC 6528).
//!
//! Every connection starts numbering its bytes at an initial sequence number (ISN) chosen
//! by each side in its SYN. The choice matters twice over:
//!
//! * Segments of an old connection with the same four-tuple (addresses and ports) may still
//!   be in flight. If the new connection's numbers start well away from the old one's, such
//!   stragglers fall outside the window and are dropped (RFC 9293 3.4.1).
//! * An off-path attacker who can guess the ISN can forge segments that the receiver will
//!   accept, and inject data into or reset a connection it cannot see (RFC 6528 1).
//!
//! RFC 6528 reconciles both: `ISN = M + F(localip, localport, remoteip, remoteport, key)`.
//! `M` is a clock ticking every 4 microseconds, so successive connections on one four-tuple
//! get increasing ISNs, as RFC 793's clock-driven scheme intended; `F` is a keyed
//! pseudo-random function, so the offset per four-tuple is unpredictable to anyone without
//! the key. As Linux does, `F` is SipHash-2-4 (Aumasson and Bernstein, 2012), a fast keyed
//! hash built for short inputs, implemented below from its specification.
//!
//! ```text
//!   ISN = (now_us / 4  mod 2^32)  +  low 32 bits of SipHash-2-4(key, lip | lport | rip | rport)
//! ```

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use loopstack_link::Instant;

use super::SeqNum;

/// One SipHash round: additions, rotations and xors mixing the four state words.
#[inline]
fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13);
    v[1] ^= v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16);
    v[3] ^= v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21);
    v[3] ^= v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17);
    v[1] ^= v[2];
    v[2] = v[2].rotate_left(32);
}

/// Absorbs one 8-byte message word: `c = 2` rounds, hence the "2" in SipHash-2-4.
#[inline]
fn compress(v: &mut [u64; 4], m: u64) {
    v[3] ^= m;
    sip_round(v);
    sip_round(v);
    v[0] ^= m;
}

/// SipHash-2-4 of `data` under the 128-bit key `key` (two compression rounds per 8-byte
/// word, four finalization rounds).
///
/// `key[0]` and `key[1]` are the key's two halves `k0` and `k1`, each read little-endian
/// from the 16 key bytes, as in the reference implementation: the key bytes `00 01 .. 0f`
/// are `[0x0706050403020100, 0x0f0e0d0c0b0a0908]`.
pub fn siphash24(key: [u64; 2], data: &[u8]) -> u64 {
    // The initial state: the key xored with "somepseudorandomlygeneratedbytes".
    let mut v = [
        key[0] ^ 0x736f_6d65_7073_6575,
        key[1] ^ 0x646f_7261_6e64_6f6d,
        key[0] ^ 0x6c79_6765_6e65_7261,
        key[1] ^ 0x7465_6462_7974_6573,
    ];
    let mut words = data.chunks_exact(8);
    for word in &mut words {
        let mut m = [0u8; 8];
        m.copy_from_slice(word);
        compress(&mut v, u64::from_le_bytes(m));
    }
    // The last word: the 0-7 remaining bytes, zero padded, with the input length (mod 256)
    // in the top byte.
    let rest = words.remainder();
    let mut last = [0u8; 8];
    last[..rest.len()].copy_from_slice(rest);
    last[7] = data.len() as u8; // the spec takes the length mod 256: truncation intended
    compress(&mut v, u64::from_le_bytes(last));

    // Finalization: `d = 4` rounds, the "4".
    v[2] ^= 0xff;
    for _ in 0..4 {
        sip_round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// Picks ISNs as RFC 6528 specifies, with a secret key.
///
/// The key must be secret and random (RFC 6528 3 suggests at least 128 bits, picked at boot
/// or on the first use); a simulator may derive it from its seed to stay reproducible. The
/// [`Debug`](fmt::Debug) output never shows it.
#[derive(Clone)]
pub struct IsnGenerator {
    key: [u64; 2],
}

impl IsnGenerator {
    /// A generator keyed with `key`.
    pub fn new(key: [u64; 2]) -> Self {
        IsnGenerator { key }
    }

    /// The ISN for a connection from `local` to `remote` started at `now`.
    ///
    /// The hash input is the local address's octets (4 or 16), the local port (big-endian),
    /// then the same for the remote end: the IPv6 flow label and scope are not part of a
    /// connection's identity and are left out.
    pub fn isn(&self, now: Instant, local: SocketAddr, remote: SocketAddr) -> SeqNum {
        // Two IPv6 endpoints: 2 * (16 + 2) bytes, on the stack.
        let mut input = [0u8; 36];
        let mut len = 0;
        for end in [local, remote] {
            match end.ip() {
                IpAddr::V4(ip) => {
                    input[len..len + 4].copy_from_slice(&ip.octets());
                    len += 4;
                }
                IpAddr::V6(ip) => {
                    input[len..len + 16].copy_from_slice(&ip.octets());
                    len += 16;
                }
            }
            input[len..len + 2].copy_from_slice(&end.port().to_be_bytes());
            len += 2;
        }
        let f = siphash24(self.key, &input[..len]) as u32; // low 32 bits of the hash
        let m = (now.as_micros() / 4) as u32; // the 4 us timer, wrapping every ~4.77 hours
        SeqNum(m.wrapping_add(f))
    }
}

impl fmt::Debug for IsnGenerator {
    /// Leaves the key out: it is a secret, and debug output ends up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IsnGenerator").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// The reference implementation's key: bytes 00 01 .. 0f.
    const REF_KEY: [u64; 2] = [0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908];

    /// The reference message: bytes 00 01 02 .. of the given length.
    fn message(len: usize) -> Vec<u8> {
        (0..len).map(|i| i as u8).collect()
    }

    #[test]
    fn siphash_reference_vectors() {
        // From the SipHash reference implementation's `vectors_sip64` (there as
        // little-endian bytes; `vectors_sip64[0]` is 31 0e 0e dd 47 db 6f 72).
        let vectors: [(usize, u64); 16] = [
            (0, 0x726f_db47_dd0e_0e31),
            (1, 0x74f8_39c5_93dc_67fd),
            (2, 0x0d6c_8009_d9a9_4f5a),
            (3, 0x8567_6696_d7fb_7e2d),
            (4, 0xcf27_94e0_2771_87b7),
            (5, 0x1876_5564_cd99_a68d),
            (6, 0xcbc9_466e_58fe_e3ce),
            (7, 0xab02_00f5_8b01_d137),
            (8, 0x93f5_f579_9a93_2462),
            (9, 0x9e00_82df_0ba9_e4b0),
            (15, 0xa129_ca61_49be_45e5),
            (16, 0x3f2a_cc7f_57c2_9bdb),
            (17, 0x699a_e9f5_2cbe_4794),
            (31, 0x32d8_92fa_d841_c342),
            (32, 0x7127_512f_72f2_7cce),
            (63, 0x958a_324c_eb06_4572),
        ];
        for (len, expected) in vectors {
            assert_eq!(
                siphash24(REF_KEY, &message(len)),
                expected,
                "message of length {len}"
            );
        }
    }

    #[test]
    #[allow(deprecated)] // `SipHasher` is deprecated for hashing, but it is SipHash-2-4.
    fn siphash_matches_std_for_every_length() {
        use std::hash::{Hasher, SipHasher};
        let keys = [REF_KEY, [0, 0], [u64::MAX, 0x1234_5678_9abc_def0]];
        for key in keys {
            for len in 0..=100 {
                let data = message(len);
                let mut h = SipHasher::new_with_keys(key[0], key[1]);
                h.write(&data);
                assert_eq!(siphash24(key, &data), h.finish(), "len {len}");
            }
        }
    }

    #[test]
    fn the_key_matters() {
        let data = message(12);
        assert_ne!(siphash24(REF_KEY, &data), siphash24([1, 2], &data));
        assert_ne!(siphash24([1, 2], &data), siphash24([2, 1], &data));
    }

    fn v4(a: u8, port: u16) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::new(10, 0, 0, a), port))
    }

    fn v6(a: u16, port: u16) -> SocketAddr {
        SocketAddr::from((Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, a), port))
    }

    #[test]
    fn deterministic_for_one_key_and_tuple() {
        let now = Instant::from_millis(1234);
        let a = IsnGenerator::new([7, 9]);
        let b = a.clone();
        assert_eq!(
            a.isn(now, v4(1, 40000), v4(2, 80)),
            b.isn(now, v4(1, 40000), v4(2, 80))
        );
        let c = IsnGenerator::new([7, 9]);
        assert_eq!(
            a.isn(now, v6(1, 40000), v6(2, 80)),
            c.isn(now, v6(1, 40000), v6(2, 80))
        );
    }

    #[test]
    fn equals_clock_plus_hash() {
        let g = IsnGenerator::new(REF_KEY);
        let (local, remote) = (v4(1, 0x1234), v4(2, 0x0050));
        let input = [10, 0, 0, 1, 0x12, 0x34, 10, 0, 0, 2, 0x00, 0x50];
        let f = siphash24(REF_KEY, &input) as u32;
        assert_eq!(g.isn(Instant::ZERO, local, remote), SeqNum(f));
        let now = Instant::from_micros(4 * 1000 + 3);
        assert_eq!(g.isn(now, local, remote), SeqNum(f.wrapping_add(1000)));
    }

    #[test]
    fn every_part_of_the_tuple_matters() {
        let g = IsnGenerator::new([0xdead_beef, 0xfeed_face]);
        let now = Instant::from_secs(5);
        let base = g.isn(now, v4(1, 1000), v4(2, 80));
        let variants = [
            g.isn(now, v4(3, 1000), v4(2, 80)),
            g.isn(now, v4(1, 1001), v4(2, 80)),
            g.isn(now, v4(1, 1000), v4(3, 80)),
            g.isn(now, v4(1, 1000), v4(2, 81)),
            // Swapping the ends is a different connection (the peer's view of ours).
            g.isn(now, v4(2, 80), v4(1, 1000)),
            g.isn(now, v6(1, 1000), v6(2, 80)),
        ];
        for (i, v) in variants.iter().enumerate() {
            assert_ne!(*v, base, "variant {i}");
        }
        let other_key = IsnGenerator::new([0xdead_beef, 0xfeed_facf]);
        assert_ne!(other_key.isn(now, v4(1, 1000), v4(2, 80)), base);
    }

    #[test]
    fn advances_one_per_four_microseconds() {
        let g = IsnGenerator::new([42, 43]);
        let (l, r) = (v6(1, 5555), v6(2, 443));
        let t0 = Instant::from_secs(100);
        let isn0 = g.isn(t0, l, r);
        assert_eq!(g.isn(t0 + std::time::Duration::from_micros(3), l, r), isn0);
        assert_eq!(
            g.isn(t0 + std::time::Duration::from_micros(4), l, r),
            isn0 + 1
        );
        let later = g.isn(t0 + std::time::Duration::from_millis(1), l, r);
        assert_eq!(later - isn0, 250);
        assert!(later.gt(isn0));
    }

    #[test]
    fn the_clock_wraps_modulo_2_32() {
        let g = IsnGenerator::new([1, 1]);
        let (l, r) = (v4(1, 1), v4(2, 2));
        // 2^32 ticks of 4 us later, the clock part is back where it started.
        let period = Instant::from_micros(4 << 32);
        assert_eq!(g.isn(period, l, r), g.isn(Instant::ZERO, l, r));
    }

    #[test]
    fn debug_hides_the_key() {
        let g = IsnGenerator::new([0x1122_3344_5566_7788, 0x99aa_bbcc_ddee_ff00]);
        let shown = format!("{g:?}");
        assert_eq!(shown, "IsnGenerator { .. }");
        assert!(!shown.contains("1122") && !shown.contains(&0x1122_3344_5566_7788u64.to_string()));
    }
}
