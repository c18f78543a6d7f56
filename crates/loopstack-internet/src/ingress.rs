//! Header validation on the way in: the checks a packet must pass before the internet layer
//! looks at its addresses. Pure functions of the bytes, so each rule is tested alone.
//!
//! IPv4 (RFC 791 3.1, RFC 1122 3.2.1): version 4, a header length of at least 20 bytes that
//! fits the buffer, a total length that covers the header and fits the buffer (extra bytes
//! after it are link padding and are cut off), and a correct header checksum.
//!
//! IPv6 (RFC 8200): version 6, a payload length that fits the buffer, and a walk along the
//! extension headers to the upper-layer header. Hop-by-Hop must come first (4.3);
//! Hop-by-Hop and Destination options are processed by the action bits of their type (4.2);
//! a Routing header with segments left is refused, since no routing type is supported (4.4);
//! a Fragment header hands the packet to reassembly (4.5). An unknown next header is
//! answered with Parameter Problem code 1, pointing at the field that named it (4).

use std::net::{IpAddr, Ipv6Addr};

use etherparse::checksum::Sum16BitWords;

/// Protocol numbers the walk needs (IANA "Assigned Internet Protocol Numbers").
pub mod proto {
    /// IPv6 Hop-by-Hop Options.
    pub const HOP_BY_HOP: u8 = 0;
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// IPv6 Routing header.
    pub const ROUTING: u8 = 43;
    /// IPv6 Fragment header.
    pub const FRAGMENT: u8 = 44;
    /// IPsec Authentication Header (RFC 4302), an extension header a quote may carry.
    pub const AUTH: u8 = 51;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// IPv6 "No Next Header".
    pub const NO_NEXT_HEADER: u8 = 59;
    /// IPv6 Destination Options.
    pub const DEST_OPTS: u8 = 60;
}

/// Why a packet was dropped before its addresses were looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeaderError {
    /// Shorter than its headers say (counted as InTruncatedPkts for IPv6).
    Truncated,
    /// The version nibble does not match.
    BadVersion,
    /// IPv4 header length below 20 bytes.
    BadHeaderLength,
    /// IPv4 total length below the header length.
    BadTotalLength,
    /// IPv4 header checksum wrong.
    BadChecksum,
    /// An IPv6 option whose type says "discard" (RFC 8200 4.2, action 01) or "discard and
    /// answer" when the answer is not allowed.
    DiscardOption,
    /// IPv6 jumbograms (payload length zero with a Jumbo option, RFC 2675) are not supported.
    Jumbogram,
    /// IPv6 "No Next Header": nothing to deliver (RFC 8200 4.7). Not an error, but the end.
    NoNextHeader,
}

/// Where reassembly needs to find a fragment's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fragment {
    /// Fragment offset in bytes.
    pub offset: usize,
    /// More fragments follow.
    pub more: bool,
    /// Identification (16 bits in IPv4, 32 in IPv6).
    pub ident: u32,
    /// IPv6: offset of the Fragment header in the packet. IPv4: 0.
    pub header_offset: usize,
}

/// A packet's network header, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Upper-layer protocol (after any IPv6 extension headers).
    pub protocol: u8,
    /// TTL or hop limit.
    pub ttl: u8,
    /// Bytes before the upper-layer header: IPv4 header with options, or IPv6 header with
    /// every extension header.
    pub header_len: usize,
    /// Length of the packet as its header states it; bytes beyond it are link padding.
    pub total_len: usize,
    /// Set if the packet is a fragment.
    pub fragment: Option<Fragment>,
    /// Byte offset of the field that named `protocol` (for a Parameter Problem pointer).
    pub protocol_field: usize,
}

/// The result of validating a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Checked {
    /// Good: process it.
    Ok(Header),
    /// Drop it silently and count the reason.
    Drop(HeaderError),
    /// Drop it and answer with Parameter Problem (RFC 8200 4, 4.2; RFC 792 for IPv4).
    /// `code` is the ICMPv6 code (0 erroneous field, 1 unknown next header, 2 unknown
    /// option); `pointer` the offending byte's offset. `header` is filled in as far as the
    /// walk got, so the answer can be addressed.
    ParameterProblem {
        /// ICMPv6 Parameter Problem code.
        code: u8,
        /// Offset of the offending byte.
        pointer: u32,
        /// Source and destination, for addressing the answer.
        src: IpAddr,
        /// Destination of the offending packet.
        dst: IpAddr,
    },
}

/// Rewrites the checksum of the IPv4 header `b[..header_len]` after a change to the header
/// (RFC 791 3.1, RFC 1071). Does nothing if the buffer is shorter than a header.
///
/// `Sum16BitWords` adds words in native byte order, so its complement is in native order:
/// written back with `to_ne_bytes`, the bytes come out right on either endianness.
pub(crate) fn set_ipv4_checksum(b: &mut [u8], header_len: usize) {
    if header_len < 20 || b.len() < header_len {
        return;
    }
    b[10..12].fill(0);
    let sum = Sum16BitWords::new().add_slice(&b[..header_len]);
    b[10..12].copy_from_slice(&sum.ones_complement().to_ne_bytes());
}

/// Validates an IPv4 header. Verifies the header checksum unless `skip_checksum` (a device
/// that vouches for its packets); the IPv4 header checksum is cheap and is never skipped on
/// a capture or a lossy link, because their devices do not offer that.
pub fn check_v4(b: &[u8], skip_checksum: bool) -> Checked {
    check_v4_len(b, b.len(), skip_checksum)
}

/// [`check_v4`] of a packet `len` bytes long of which `b` is the front, holding at least the
/// header: a packet whose payload is an attached fragment (`PacketBuf::attach`).
// Inlined into the receive path: returned through memory, the `Header`'s addresses (an
// `IpAddr` is 17 bytes, byte-aligned) were written in pieces and read back whole, a
// store-forwarding stall. With the like one on `Internet::deliver`'s return, perf put
// them at about 9% of a UDP datagram's time (docs/benchmarks.md, item 14).
#[inline(always)]
pub fn check_v4_len(b: &[u8], len: usize, skip_checksum: bool) -> Checked {
    use etherparse::err::ipv4::{HeaderError as Bad, HeaderSliceError};
    // etherparse checks the version, the header length, and that the header fits.
    let h = match etherparse::Ipv4HeaderSlice::from_slice(b) {
        Ok(h) => h,
        Err(HeaderSliceError::Len(_)) => return Checked::Drop(HeaderError::Truncated),
        Err(HeaderSliceError::Content(Bad::UnexpectedVersion { .. })) => {
            return Checked::Drop(HeaderError::BadVersion)
        }
        Err(HeaderSliceError::Content(_)) => return Checked::Drop(HeaderError::BadHeaderLength),
    };
    let ihl = h.slice().len();
    let total_len = usize::from(h.total_len());
    if total_len < ihl {
        return Checked::Drop(HeaderError::BadTotalLength);
    }
    if total_len > len {
        return Checked::Drop(HeaderError::Truncated);
    }
    // RFC 1071: the one's-complement sum of the header, checksum included, is all ones.
    if !skip_checksum && Sum16BitWords::new().add_slice(h.slice()).ones_complement() != 0 {
        return Checked::Drop(HeaderError::BadChecksum);
    }
    let more = h.more_fragments();
    let offset = usize::from(h.fragments_offset().value()) * 8;
    let fragment = (more || offset > 0).then_some(Fragment {
        offset,
        more,
        ident: u32::from(h.identification()),
        header_offset: 0,
    });
    Checked::Ok(Header {
        src: IpAddr::V4(h.source_addr()),
        dst: IpAddr::V4(h.destination_addr()),
        protocol: h.protocol().0,
        ttl: h.ttl(),
        header_len: ihl,
        total_len,
        fragment,
        protocol_field: 9,
    })
}

/// Validates an IPv6 header and walks its extension headers to the upper-layer header. A
/// Fragment header ends the walk: what follows it is only known after reassembly.
///
/// The walk is written out here rather than left to etherparse's `Ipv6Slice`, because the
/// answers RFC 8200 requires (Parameter Problem with a pointer to the offending byte, option
/// actions by type bits) need the byte offset of every field, which a parsed view hides.
pub fn check_v6(b: &[u8]) -> Checked {
    check_v6_len(b, b.len())
}

/// [`check_v6`] of a packet `len` bytes long of which `b` is the front, holding at least the
/// headers: a packet whose payload is an attached fragment (`PacketBuf::attach`). An
/// extension header that would reach past `b` counts as truncated.
pub fn check_v6_len(b: &[u8], len: usize) -> Checked {
    if b.len() < 40 {
        return Checked::Drop(HeaderError::Truncated);
    }
    if b[0] >> 4 != 6 {
        return Checked::Drop(HeaderError::BadVersion);
    }
    let payload_len = usize::from(u16::from_be_bytes([b[4], b[5]]));
    let src = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&b[8..24]).expect("16")));
    let dst = IpAddr::V6(Ipv6Addr::from(
        <[u8; 16]>::try_from(&b[24..40]).expect("16"),
    ));
    if payload_len == 0 && b[6] == proto::HOP_BY_HOP {
        return Checked::Drop(HeaderError::Jumbogram);
    }
    let total_len = 40 + payload_len;
    if total_len > len.max(b.len()) {
        return Checked::Drop(HeaderError::Truncated);
    }
    let b = &b[..total_len.min(b.len())];
    let dst_multicast = b[24] == 0xff;
    let mut next = b[6];
    let mut field = 6usize; // where `next` was read from
    let mut off = 40usize;
    loop {
        match next {
            proto::HOP_BY_HOP | proto::DEST_OPTS | proto::ROUTING => {
                // RFC 8200 4.3: Hop-by-Hop may appear only right after the IPv6 header.
                if next == proto::HOP_BY_HOP && off != 40 {
                    return Checked::ParameterProblem {
                        code: 1,
                        pointer: field as u32,
                        src,
                        dst,
                    };
                }
                if off + 8 > b.len() {
                    return Checked::Drop(HeaderError::Truncated);
                }
                let len = (usize::from(b[off + 1]) + 1) * 8;
                if off + len > b.len() {
                    return Checked::Drop(HeaderError::Truncated);
                }
                if next == proto::ROUTING {
                    // RFC 8200 4.4: no routing type is supported; with segments left the
                    // packet must be refused, pointing at the Routing Type field.
                    if b[off + 3] != 0 {
                        return Checked::ParameterProblem {
                            code: 0,
                            pointer: (off + 2) as u32,
                            src,
                            dst,
                        };
                    }
                } else if let Err(e) = check_options(&b[off..off + len], off, dst_multicast) {
                    return match e {
                        OptionVerdict::Discard => Checked::Drop(HeaderError::DiscardOption),
                        OptionVerdict::Answer(pointer) => Checked::ParameterProblem {
                            code: 2,
                            pointer,
                            src,
                            dst,
                        },
                    };
                }
                field = off;
                next = b[off];
                off += len;
            }
            proto::FRAGMENT => {
                if off + 8 > b.len() {
                    return Checked::Drop(HeaderError::Truncated);
                }
                let fo = u16::from_be_bytes([b[off + 2], b[off + 3]]);
                let ident = u32::from_be_bytes([b[off + 4], b[off + 5], b[off + 6], b[off + 7]]);
                let offset = usize::from(fo >> 3) * 8;
                let more = fo & 1 != 0;
                let header = Header {
                    src,
                    dst,
                    protocol: b[off],
                    ttl: b[7],
                    header_len: off + 8,
                    total_len,
                    // RFC 8200 4.5: an "atomic fragment" (offset 0, M clear) is processed
                    // as a whole packet, not held for reassembly (RFC 6946).
                    fragment: (offset > 0 || more).then_some(Fragment {
                        offset,
                        more,
                        ident,
                        header_offset: off,
                    }),
                    protocol_field: off,
                };
                if header.fragment.is_none() {
                    // Continue the walk after an atomic fragment's header.
                    field = off;
                    next = b[off];
                    off += 8;
                    continue;
                }
                return Checked::Ok(header);
            }
            proto::NO_NEXT_HEADER => return Checked::Drop(HeaderError::NoNextHeader),
            _ => {
                return Checked::Ok(Header {
                    src,
                    dst,
                    protocol: next,
                    ttl: b[7],
                    header_len: off,
                    total_len,
                    fragment: None,
                    protocol_field: field,
                })
            }
        }
    }
}

/// What an unknown option asks for (RFC 8200 4.2, the two high-order bits of its type).
enum OptionVerdict {
    /// 01: discard silently (or 11 to a multicast destination).
    Discard,
    /// 10, or 11 to a unicast destination: discard and send Parameter Problem code 2
    /// pointing at the option's type byte.
    Answer(u32),
}

/// Walks the TLV options of a Hop-by-Hop or Destination Options header (`ext`, starting at
/// `base` in the packet). Pad1 and PadN are understood; any other type is unknown here.
fn check_options(ext: &[u8], base: usize, dst_multicast: bool) -> Result<(), OptionVerdict> {
    let mut i = 2;
    while i < ext.len() {
        let t = ext[i];
        if t == 0 {
            i += 1; // Pad1
            continue;
        }
        if i + 1 >= ext.len() {
            return Err(OptionVerdict::Discard);
        }
        let len = usize::from(ext[i + 1]);
        if t != 1 {
            match t >> 6 {
                0b00 => {}
                0b01 => return Err(OptionVerdict::Discard),
                0b11 if dst_multicast => return Err(OptionVerdict::Discard),
                _ => return Err(OptionVerdict::Answer((base + i) as u32)),
            }
        }
        i += 2 + len;
    }
    if i > ext.len() {
        return Err(OptionVerdict::Discard);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{IpNumber, Ipv4Header, Ipv6Header};

    fn v4_packet(payload: usize) -> Vec<u8> {
        let mut h = Ipv4Header::new(
            payload as u16,
            64,
            IpNumber::UDP,
            [127, 0, 0, 1],
            [127, 0, 0, 2],
        )
        .unwrap();
        h.header_checksum = h.calc_header_checksum();
        let mut v = h.to_bytes().to_vec();
        v.resize(20 + payload, 0xAB);
        v
    }

    /// An IPv6 packet from ::1 to `dst` with the given extension header bytes (their first
    /// next-header byte is `first`) and `payload` bytes of upper-layer data.
    fn v6_packet(first: u8, ext: &[u8], payload: usize, dst: Ipv6Addr) -> Vec<u8> {
        let h = Ipv6Header {
            traffic_class: 0,
            flow_label: Default::default(),
            payload_length: (ext.len() + payload) as u16,
            next_header: IpNumber(first),
            hop_limit: 64,
            source: Ipv6Addr::LOCALHOST.octets(),
            destination: dst.octets(),
        };
        let mut v = h.to_bytes().to_vec();
        v.extend_from_slice(ext);
        v.resize(40 + ext.len() + payload, 0xCD);
        v
    }

    #[test]
    fn good_v4_header() {
        let p = v4_packet(8);
        match check_v4(&p, false) {
            Checked::Ok(h) => {
                assert_eq!(h.src, "127.0.0.1".parse::<IpAddr>().unwrap());
                assert_eq!(h.dst, "127.0.0.2".parse::<IpAddr>().unwrap());
                assert_eq!(
                    (h.protocol, h.ttl, h.header_len, h.total_len),
                    (17, 64, 20, 28)
                );
                assert_eq!(h.fragment, None);
            }
            other => panic!("{other:?}"),
        }
        // Link padding beyond the total length is accepted (and later cut off).
        let mut padded = p.clone();
        padded.extend_from_slice(&[0; 10]);
        assert!(matches!(check_v4(&padded, false), Checked::Ok(h) if h.total_len == 28));
    }

    /// Every malformed IPv4 header, one rule each.
    #[test]
    fn malformed_v4_headers() {
        let good = v4_packet(8);
        let mutate = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut p = good.clone();
            f(&mut p);
            p
        };
        let cases: Vec<(&str, Vec<u8>, HeaderError)> = vec![
            ("empty", vec![], HeaderError::Truncated),
            ("19 bytes", good[..19].to_vec(), HeaderError::Truncated),
            (
                "version 5",
                mutate(&|p| p[0] = 0x55),
                HeaderError::BadVersion,
            ),
            (
                "ihl 4",
                mutate(&|p| p[0] = 0x44),
                HeaderError::BadHeaderLength,
            ),
            (
                "ihl past end",
                mutate(&|p| {
                    p[0] = 0x4f;
                    p.truncate(40)
                }),
                HeaderError::Truncated,
            ),
            (
                "total < ihl",
                mutate(&|p| p[3] = 10),
                HeaderError::BadTotalLength,
            ),
            (
                "total > buffer",
                mutate(&|p| p[3] = 200),
                HeaderError::Truncated,
            ),
            (
                "bad checksum",
                mutate(&|p| p[8] = 63),
                HeaderError::BadChecksum,
            ),
        ];
        for (what, p, want) in cases {
            assert_eq!(check_v4(&p, false), Checked::Drop(want), "{what}");
        }
        // With the checksum offloaded, a changed TTL is not noticed.
        assert!(matches!(
            check_v4(&mutate(&|p| p[8] = 63), true),
            Checked::Ok(_)
        ));
    }

    #[test]
    fn v4_fragment_fields() {
        let mut h = Ipv4Header::new(16, 64, IpNumber::UDP, [127, 0, 0, 1], [127, 0, 0, 2]).unwrap();
        h.identification = 0x1234;
        h.dont_fragment = false;
        h.more_fragments = true;
        h.fragment_offset = etherparse::IpFragOffset::try_new(185).unwrap(); // 1480 bytes
        h.header_checksum = h.calc_header_checksum();
        let mut p = h.to_bytes().to_vec();
        p.resize(36, 0);
        let Checked::Ok(h) = check_v4(&p, false) else {
            panic!("{:?}", check_v4(&p, false))
        };
        assert_eq!(
            h.fragment,
            Some(Fragment {
                offset: 1480,
                more: true,
                ident: 0x1234,
                header_offset: 0
            })
        );
    }

    #[test]
    fn every_prefix_of_a_packet_is_handled() {
        let p4 = v4_packet(30);
        for n in 0..p4.len() {
            let _ = check_v4(&p4[..n], false);
        }
        let hbh = [proto::UDP, 0, 1, 4, 0, 0, 0, 0];
        let p6 = v6_packet(proto::HOP_BY_HOP, &hbh, 20, Ipv6Addr::LOCALHOST);
        for n in 0..p6.len() {
            let _ = check_v6(&p6[..n]);
        }
    }

    #[test]
    fn v6_walks_extension_headers() {
        // Hop-by-Hop with a PadN option, then Destination Options with Pad1s, then UDP.
        let hbh = [proto::DEST_OPTS, 0, 1, 4, 0, 0, 0, 0];
        let dopts = [proto::UDP, 0, 0, 0, 0, 0, 0, 0];
        let ext = [&hbh[..], &dopts[..]].concat();
        let p = v6_packet(proto::HOP_BY_HOP, &ext, 8, Ipv6Addr::LOCALHOST);
        let Checked::Ok(h) = check_v6(&p) else {
            panic!("{:?}", check_v6(&p))
        };
        assert_eq!((h.protocol, h.header_len, h.protocol_field), (17, 56, 48));
        assert_eq!(h.ttl, 64);
    }

    /// (what, first next header, extension bytes, expected)
    #[test]
    fn v6_extension_rules() {
        let lo = Ipv6Addr::LOCALHOST;
        let mcast: Ipv6Addr = "ff02::1".parse().unwrap();
        let src: IpAddr = lo.into();
        let pp = |code, pointer, dst: Ipv6Addr| Checked::ParameterProblem {
            code,
            pointer,
            src,
            dst: dst.into(),
        };
        let unknown_opt = |action: u8| [proto::UDP, 0, (action << 6) | 0x1e, 2, 0, 0, 1, 0];
        let cases: Vec<(&str, u8, Vec<u8>, Ipv6Addr, Checked)> = vec![
            // An unknown upper-layer protocol is reported with the field that named it; the
            // layer, which knows what it can deliver, answers Parameter Problem code 1.
            (
                "unknown next header",
                253,
                vec![],
                lo,
                Checked::Ok(Header {
                    src,
                    dst: lo.into(),
                    protocol: 253,
                    ttl: 64,
                    header_len: 40,
                    total_len: 48,
                    fragment: None,
                    protocol_field: 6,
                }),
            ),
            (
                "unknown after dest opts",
                proto::DEST_OPTS,
                vec![253, 0, 1, 4, 0, 0, 0, 0],
                lo,
                Checked::Ok(Header {
                    src,
                    dst: lo.into(),
                    protocol: 253,
                    ttl: 64,
                    header_len: 48,
                    total_len: 56,
                    fragment: None,
                    protocol_field: 40,
                }),
            ),
            (
                "hop-by-hop not first",
                proto::DEST_OPTS,
                vec![
                    proto::HOP_BY_HOP,
                    0,
                    1,
                    4,
                    0,
                    0,
                    0,
                    0,
                    proto::UDP,
                    0,
                    1,
                    4,
                    0,
                    0,
                    0,
                    0,
                ],
                lo,
                pp(1, 40, lo),
            ),
            (
                "routing with segments left",
                proto::ROUTING,
                vec![proto::UDP, 0, 0, 1, 0, 0, 0, 0],
                lo,
                pp(0, 42, lo),
            ),
            (
                "unknown option, skip",
                proto::DEST_OPTS,
                unknown_opt(0b00).to_vec(),
                lo,
                Checked::Ok(Header {
                    src,
                    dst: lo.into(),
                    protocol: proto::UDP,
                    ttl: 64,
                    header_len: 48,
                    total_len: 56,
                    fragment: None,
                    protocol_field: 40,
                }),
            ),
            (
                "unknown option, discard",
                proto::DEST_OPTS,
                unknown_opt(0b01).to_vec(),
                lo,
                Checked::Drop(HeaderError::DiscardOption),
            ),
            (
                "unknown option, answer",
                proto::DEST_OPTS,
                unknown_opt(0b10).to_vec(),
                lo,
                pp(2, 42, lo),
            ),
            (
                "unknown option, answer unless multicast (unicast)",
                proto::DEST_OPTS,
                unknown_opt(0b11).to_vec(),
                lo,
                pp(2, 42, lo),
            ),
            (
                "unknown option, answer unless multicast (multicast)",
                proto::DEST_OPTS,
                unknown_opt(0b11).to_vec(),
                mcast,
                Checked::Drop(HeaderError::DiscardOption),
            ),
            (
                "no next header",
                proto::NO_NEXT_HEADER,
                vec![],
                lo,
                Checked::Drop(HeaderError::NoNextHeader),
            ),
            (
                "extension header past the end",
                proto::DEST_OPTS,
                vec![proto::UDP, 3, 0, 0, 0, 0, 0, 0],
                lo,
                Checked::Drop(HeaderError::Truncated),
            ),
        ];
        for (what, first, ext, dst, want) in cases {
            let p = v6_packet(first, &ext, 8, dst);
            assert_eq!(check_v6(&p), want, "{what}");
        }
    }

    #[test]
    fn v6_fragments_and_atomic_fragments() {
        let lo = Ipv6Addr::LOCALHOST;
        // Offset 1232 (154 * 8), M set, id 0xdeadbeef.
        let frag = [proto::UDP, 0, 0x04, 0xd1, 0xde, 0xad, 0xbe, 0xef];
        let Checked::Ok(h) = check_v6(&v6_packet(proto::FRAGMENT, &frag, 16, lo)) else {
            panic!()
        };
        assert_eq!(
            h.fragment,
            Some(Fragment {
                offset: 1232,
                more: true,
                ident: 0xdead_beef,
                header_offset: 40
            })
        );
        // An atomic fragment (offset 0, M clear) is a whole packet (RFC 6946).
        let atomic = [proto::UDP, 0, 0, 0, 0, 0, 0, 1];
        let Checked::Ok(h) = check_v6(&v6_packet(proto::FRAGMENT, &atomic, 16, lo)) else {
            panic!()
        };
        assert_eq!((h.fragment, h.protocol, h.header_len), (None, 17, 48));
    }

    #[test]
    fn malformed_v6_headers() {
        let lo = Ipv6Addr::LOCALHOST;
        let good = v6_packet(proto::UDP, &[], 8, lo);
        assert!(matches!(check_v6(&good), Checked::Ok(_)));
        let mut bad_version = good.clone();
        bad_version[0] = 0x45;
        assert_eq!(
            check_v6(&bad_version),
            Checked::Drop(HeaderError::BadVersion)
        );
        assert_eq!(check_v6(&good[..47]), Checked::Drop(HeaderError::Truncated));
        let mut jumbo = v6_packet(
            proto::HOP_BY_HOP,
            &[proto::UDP, 0, 0xc2, 4, 0, 1, 0, 0],
            0,
            lo,
        );
        jumbo[4] = 0;
        jumbo[5] = 0;
        assert_eq!(check_v6(&jumbo), Checked::Drop(HeaderError::Jumbogram));
    }
}
