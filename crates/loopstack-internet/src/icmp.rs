//! ICMP (RFC 792) and ICMPv6 (RFC 4443): error messages, echo, and the rate limit on errors.
//!
//! The internet layer uses this module in four ways:
//!
//! - when it drops a packet for a reason the sender should hear about (no socket on a UDP
//!   port, TTL expired, a packet too big for the next link, a bad header field), it asks
//!   [`may_send_error`] whether an error may be sent at all, asks its [`RateLimiter`] whether
//!   one may be sent *now*, and builds it with [`build_error_v4`] or [`build_error_v6`];
//! - an echo request addressed to the stack becomes its own reply, in place, through
//!   [`echo_request_to_reply_v4`] / [`echo_request_to_reply_v6`]: not a byte of payload moves;
//! - `ping` builds its requests with [`build_echo_request`];
//! - every ICMP message received is [`parse`]d: echo replies go to the pinging socket, errors
//!   to the transport protocol named in the quoted header, with its ports.
//!
//! [`IcmpError`] names each error once for both families; it maps to the ICMP or ICMPv6
//! type and code when the message is built. Headers are written byte by byte, with the RFC
//! field layout in the comments, and checksummed with etherparse's [`Sum16BitWords`].
//!
//! The packet functions allocate nothing beyond the pooled buffer they return, take time as
//! an argument, and never panic, whatever bytes they are given.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::checksum::Sum16BitWords;
use loopstack_buf::{BufError, PacketBuf, PacketPool, PoolError};
use loopstack_link::Instant;
use thiserror::Error;

use crate::ingress::proto;

/// Type, code, checksum and four type-specific bytes: the fixed part of every ICMP and
/// ICMPv6 message.
pub const ICMP_HEADER_LEN: usize = 8;
/// TTL (IPv4) and hop limit (IPv6) of the messages built here: Linux's default
/// (`net.ipv4.ip_default_ttl`, `net.ipv6.conf.*.hop_limit`).
pub const DEFAULT_TTL: u8 = 64;
/// Largest ICMP error datagram, IP header included (RFC 1812 4.3.2.3: as much of the
/// offending packet as fits without the error exceeding 576 bytes).
pub const MAX_ERROR_LEN_V4: usize = 576;
/// Largest ICMPv6 error packet, IPv6 header included: the IPv6 minimum MTU (RFC 4443 2.4(c)).
pub const MAX_ERROR_LEN_V6: usize = 1280;

const IPV4_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;

const V4_ECHO_REPLY: u8 = 0;
const V4_DEST_UNREACHABLE: u8 = 3;
const V4_ECHO_REQUEST: u8 = 8;
const V4_TIME_EXCEEDED: u8 = 11;
const V4_PARAMETER_PROBLEM: u8 = 12;
const V6_DEST_UNREACHABLE: u8 = 1;
const V6_PACKET_TOO_BIG: u8 = 2;
const V6_TIME_EXCEEDED: u8 = 3;
const V6_PARAMETER_PROBLEM: u8 = 4;
const V6_ECHO_REQUEST: u8 = 128;
const V6_ECHO_REPLY: u8 = 129;
const V6_REDIRECT: u8 = 137;

/// What kind of ICMP error to send, or was received. Family-neutral: each kind maps to an
/// ICMP and an ICMPv6 type and code ([`type_code`](Self::type_code)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IcmpError {
    /// v4: type 3 code 2, protocol unreachable. v6: type 4 (Parameter Problem) code 1,
    /// unrecognized Next Header, with `pointer` (RFC 8200 4).
    ProtocolUnreachable {
        /// v6 only: offset in the offending packet of the unrecognized Next Header field.
        /// Not carried by ICMPv4 (reads back as 0).
        pointer: u32,
    },
    /// v4: type 3 code 3. v6: type 1 code 4.
    PortUnreachable,
    /// v4: type 3 code 1, host unreachable. v6: type 1 code 3, address unreachable.
    HostUnreachable,
    /// v4: type 3 code 0, net unreachable. v6: type 1 code 0, no route.
    NetUnreachable,
    /// v4: type 3 code 4, fragmentation needed, with the next-hop MTU (RFC 1191). v6: type 2,
    /// Packet Too Big, with the MTU (RFC 4443 3.2).
    PacketTooBig {
        /// MTU of the next hop. ICMPv4 carries 16 bits: larger values are sent as 65535.
        mtu: u32,
    },
    /// v4: type 11 code 0. v6: type 3 code 0, hop limit exceeded in transit.
    TtlExceeded,
    /// v4: type 11 code 1. v6: type 3 code 1, fragment reassembly time exceeded.
    ReassemblyTimeExceeded,
    /// v4: type 12 code 0. v6: type 4 code 0, erroneous header field.
    ParameterProblem {
        /// Offset of the faulty octet in the offending packet. ICMPv4 carries 8 bits:
        /// larger values are sent as 255.
        pointer: u32,
    },
}

impl IcmpError {
    /// The `(type, code)` this error is sent as: ICMPv6's when `v6`, ICMP's otherwise.
    pub fn type_code(self, v6: bool) -> (u8, u8) {
        use IcmpError::*;
        //                                    ICMP (RFC 792)  ICMPv6 (RFC 4443 3.1-3.4)
        let (v4, v6_type_code) = match self {
            ProtocolUnreachable { .. } => ((3, 2), (4, 1)),
            PortUnreachable => ((3, 3), (1, 4)),
            HostUnreachable => ((3, 1), (1, 3)),
            NetUnreachable => ((3, 0), (1, 0)),
            PacketTooBig { .. } => ((3, 4), (2, 0)),
            TtlExceeded => ((11, 0), (3, 0)),
            ReassemblyTimeExceeded => ((11, 1), (3, 1)),
            ParameterProblem { .. } => ((12, 0), (4, 0)),
        };
        if v6 {
            v6_type_code
        } else {
            v4
        }
    }

    /// The message's first eight bytes, checksum left zero.
    fn header(self, v6: bool) -> [u8; ICMP_HEADER_LEN] {
        let (icmp_type, code) = self.type_code(v6);
        let mut h = [icmp_type, code, 0, 0, 0, 0, 0, 0];
        match (self, v6) {
            // RFC 1191 4: the next-hop MTU goes in the low-order 16 bits of the unused field.
            (IcmpError::PacketTooBig { mtu }, false) => {
                h[6..8].copy_from_slice(&u16::try_from(mtu).unwrap_or(u16::MAX).to_be_bytes());
            }
            // RFC 4443 3.2: a 32-bit MTU.
            (IcmpError::PacketTooBig { mtu }, true) => h[4..8].copy_from_slice(&mtu.to_be_bytes()),
            // RFC 792, Parameter Problem: a one-octet pointer.
            (IcmpError::ParameterProblem { pointer }, false) => {
                h[4] = u8::try_from(pointer).unwrap_or(u8::MAX);
            }
            // RFC 4443 3.4: a 32-bit pointer, for both codes we send.
            (
                IcmpError::ParameterProblem { pointer }
                | IcmpError::ProtocolUnreachable { pointer },
                true,
            ) => h[4..8].copy_from_slice(&pointer.to_be_bytes()),
            _ => {}
        }
        h
    }
}

/// Why an ICMP message could not be built.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IcmpBuildError {
    /// No buffer for the message: back-pressure, the caller drops and counts.
    #[error("no buffer for the ICMP message: {0}")]
    Pool(#[from] PoolError),
    /// A buffer edit was refused (cannot happen with a correctly sized buffer).
    #[error("buffer edit refused: {0}")]
    Buf(#[from] BufError),
    /// The packet given is not a well-formed IPv4 or IPv6 packet of the kind expected.
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// The packet is well formed but not an echo request.
    #[error("not an echo request")]
    NotEchoRequest,
    /// The echo request went to a broadcast or multicast address: its reply must come from a
    /// unicast address of the receiving interface (RFC 1122 3.2.2.6, RFC 4443 4.2), which the
    /// caller chooses; swapping the addresses in place would send from a group address.
    #[error("echo request to a broadcast or multicast address cannot be answered in place")]
    NonUnicastDestination,
}

/// Why a received ICMP message was rejected. The IP layer counts it (`InErrors`,
/// `InCsumErrors`) and drops it.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IcmpParseError {
    /// Shorter than the 8-byte ICMP header.
    #[error("ICMP message of {len} bytes is shorter than the 8-byte header")]
    Truncated {
        /// Bytes received.
        len: usize,
    },
    /// The checksum does not verify.
    #[error("ICMP checksum mismatch")]
    BadChecksum,
    /// An ICMPv6 checksum was to be verified, but the addresses given are not IPv6.
    #[error("the ICMPv6 checksum needs IPv6 source and destination addresses")]
    AddressFamily,
    /// An error message whose quoted packet is not a usable IP header of the same family.
    #[error("malformed quoted packet in ICMP error: {0}")]
    BadQuote(&'static str),
}

/// A received ICMP or ICMPv6 message, as [`parse`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpMessage<'a> {
    /// Echo request (ICMP type 8, ICMPv6 type 128).
    EchoRequest {
        /// Identifier.
        id: u16,
        /// Sequence number.
        seq: u16,
        /// Data, to be returned unchanged.
        payload: &'a [u8],
    },
    /// Echo reply (ICMP type 0, ICMPv6 type 129).
    EchoReply {
        /// Identifier.
        id: u16,
        /// Sequence number.
        seq: u16,
        /// Data.
        payload: &'a [u8],
    },
    /// An error, with the quoted packet's addresses, protocol and first 8 bytes after its IP
    /// header (the ports, for TCP and UDP), so that transport can find the socket concerned.
    Error {
        /// The kind of error. Codes without a kind of their own map to the nearest one, as
        /// Linux's `icmp_err_convert` does: the "administratively prohibited" family to
        /// [`IcmpError::HostUnreachable`], for example.
        error: IcmpError,
        /// What the error quotes.
        quoted: QuotedPacket,
    },
    /// Anything else (router advertisements, timestamps, redirects, source quench, unknown
    /// codes): ignored by the stack, but counted.
    Other {
        /// ICMP type.
        icmp_type: u8,
        /// ICMP code.
        code: u8,
    },
}

/// The packet an ICMP error quotes: enough to find the socket that sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuotedPacket {
    /// Source address of the quoted packet: our own address, when the error is about a packet
    /// we sent.
    pub src: IpAddr,
    /// Its destination.
    pub dst: IpAddr,
    /// Its upper-layer protocol (for IPv6, the Next Header ending the extension-header chain).
    pub protocol: u8,
    /// The first bytes after its IP header (and IPv6 extension headers): up to 8.
    pub first8: [u8; 8],
    /// How many of `first8` were quoted: 0 if the quote stops inside the IP header chain or
    /// the quoted packet is a non-first fragment.
    pub first8_len: usize,
}

impl QuotedPacket {
    fn new(src: IpAddr, dst: IpAddr, protocol: u8, transport: &[u8]) -> Self {
        let mut first8 = [0; 8];
        let first8_len = transport.len().min(8);
        first8[..first8_len].copy_from_slice(&transport[..first8_len]);
        QuotedPacket {
            src,
            dst,
            protocol,
            first8,
            first8_len,
        }
    }

    /// The quoted transport bytes (`first8[..first8_len]`).
    pub fn transport_bytes(&self) -> &[u8] {
        self.first8.get(..self.first8_len).unwrap_or(&[])
    }

    /// `(source port, destination port)` of a quoted TCP or UDP header, if quoted.
    pub fn ports(&self) -> Option<(u16, u16)> {
        match (self.protocol, self.transport_bytes()) {
            (proto::TCP | proto::UDP, [a, b, c, d, ..]) => {
                Some((u16::from_be_bytes([*a, *b]), u16::from_be_bytes([*c, *d])))
            }
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Reading IP headers (of offending packets, echo requests and quotes).

/// What this module needs from an IPv4 header.
#[derive(Debug, Clone, Copy)]
struct V4Header {
    header_len: usize,
    /// The total length field if it is consistent (header length to the bytes at hand),
    /// otherwise the bytes at hand: a quote is truncated, an offending packet may be bogus.
    packet_len: usize,
    total_len_valid: bool,
    tos: u8,
    protocol: u8,
    frag_offset: u16,
    more_fragments: bool,
    src: Ipv4Addr,
    dst: Ipv4Addr,
}

/// Reads an IPv4 header: version 4 and a complete header (IHL of 5 to 15 words, all
/// present), or `None`.
fn read_v4(p: &[u8]) -> Option<V4Header> {
    let first = *p.first()?;
    let header_len = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || header_len < IPV4_HEADER_LEN || header_len > p.len() {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
    let total_len_valid = (header_len..=p.len()).contains(&total);
    let flags_offset = u16::from_be_bytes([p[6], p[7]]);
    Some(V4Header {
        header_len,
        packet_len: if total_len_valid { total } else { p.len() },
        total_len_valid,
        tos: p[1],
        protocol: p[9],
        frag_offset: flags_offset & 0x1fff,
        more_fragments: flags_offset & 0x2000 != 0,
        src: Ipv4Addr::new(p[12], p[13], p[14], p[15]),
        dst: Ipv4Addr::new(p[16], p[17], p[18], p[19]),
    })
}

/// Whether `a` names a single host: not 0.0.0.0, not the limited broadcast, not multicast
/// (224/4), not reserved class E (240/4). RFC 1122 3.2.2 lists these as sources that must
/// not get an ICMP error. (A subnet-directed broadcast needs the interface table; the IP
/// layer checks it.)
fn is_unicast_v4(a: Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_multicast() || a.octets()[0] >= 240)
}

/// Where the IPv6 extension-header chain of a packet ends (RFC 8200 4).
#[derive(Debug, Clone, Copy)]
struct Chain {
    /// The Next Header value that ended the walk: normally the upper-layer protocol.
    next_header: u8,
    /// Offset of the header it names.
    offset: usize,
    /// Whether a Fragment header was passed.
    fragment: bool,
    /// The fragment offset in 8-octet units: nonzero for a non-first fragment, whose
    /// remaining bytes are the middle of the upper-layer data, not a header.
    fragment_offset: u16,
    /// Whether the bytes ended inside an extension header.
    truncated: bool,
}

/// Walks the extension headers the stack knows, stopping at the first other Next Header
/// value. Each step advances at least 8 bytes and is bounded by `p`, so the walk ends.
fn walk_v6(p: &[u8]) -> Chain {
    let mut chain = Chain {
        next_header: p.get(6).copied().unwrap_or(proto::NO_NEXT_HEADER),
        offset: IPV6_HEADER_LEN,
        fragment: false,
        fragment_offset: 0,
        truncated: false,
    };
    loop {
        let off = chain.offset;
        let len = match chain.next_header {
            // RFC 8200 4.3, 4.4, 4.6: Hdr Ext Len in 8-octet units, not counting the first 8.
            proto::HOP_BY_HOP | proto::ROUTING | proto::DEST_OPTS => {
                p.get(off + 1).map(|&l| (usize::from(l) + 1) * 8)
            }
            // RFC 8200 4.5: always 8 bytes.
            proto::FRAGMENT => Some(8),
            // RFC 4302 2.2: Payload Len in 4-octet units, minus 2.
            proto::AUTH => p.get(off + 1).map(|&l| (usize::from(l) + 2) * 4),
            _ => return chain,
        };
        let Some(len) = len.filter(|&len| off + len <= p.len()) else {
            chain.truncated = true;
            return chain;
        };
        let was_fragment = chain.next_header == proto::FRAGMENT;
        chain.next_header = p[off];
        chain.offset = off + len;
        if was_fragment {
            chain.fragment = true;
            chain.fragment_offset = u16::from_be_bytes([p[off + 2], p[off + 3]]) >> 3;
            if chain.fragment_offset != 0 {
                return chain;
            }
        }
    }
}

/// What this module needs from an IPv6 header.
#[derive(Debug, Clone, Copy)]
struct V6Header {
    /// 40 + Payload Length if consistent, otherwise the bytes at hand (a truncated quote, a
    /// jumbogram with Payload Length 0).
    packet_len: usize,
    total_len_valid: bool,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    chain: Chain,
}

fn read_v6(p: &[u8]) -> Option<V6Header> {
    if p.len() < IPV6_HEADER_LEN || p[0] >> 4 != 6 {
        return None;
    }
    let payload_len = usize::from(u16::from_be_bytes([p[4], p[5]]));
    let total_len_valid = payload_len != 0 && IPV6_HEADER_LEN + payload_len <= p.len();
    let packet_len = if total_len_valid {
        IPV6_HEADER_LEN + payload_len
    } else {
        p.len()
    };
    let mut src = [0; 16];
    let mut dst = [0; 16];
    src.copy_from_slice(&p[8..24]);
    dst.copy_from_slice(&p[24..40]);
    Some(V6Header {
        packet_len,
        total_len_valid,
        src: src.into(),
        dst: dst.into(),
        chain: walk_v6(&p[..packet_len]),
    })
}

// ---------------------------------------------------------------------------------------
// Checksums (RFC 1071).

/// The two checksum bytes, in wire order, for a sum of every covered word except the
/// checksum field itself (taken as zero). `Sum16BitWords` adds words in native byte order,
/// so its complement is in native order too.
fn checksum_bytes(sum: Sum16BitWords) -> [u8; 2] {
    sum.ones_complement().to_ne_bytes()
}

/// The ICMPv6 pseudo-header (RFC 4443 2.3, RFC 8200 8.1): source, destination,
/// upper-layer length, three zero bytes and Next Header 58.
fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, len: usize) -> Sum16BitWords {
    Sum16BitWords::new()
        .add_16bytes(src.octets())
        .add_16bytes(dst.octets())
        .add_4bytes(u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes())
        .add_4bytes([0, 0, 0, proto::ICMPV6])
}

/// Incremental checksum update (RFC 1624 eqn. 3): `HC' = ~(~HC + ~m + m')` when one 16-bit
/// word of the covered data changes from `old` to `new`. It keeps a wrong checksum wrong,
/// rather than blessing a corrupted packet as a recomputation would.
fn checksum_adjust(checksum: [u8; 2], old: [u8; 2], new: [u8; 2]) -> [u8; 2] {
    let mut sum = u32::from(!u16::from_be_bytes(checksum))
        + u32::from(!u16::from_be_bytes(old))
        + u32::from(u16::from_be_bytes(new));
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    (!(sum as u16)).to_be_bytes()
}

/// Recomputes the header checksum of the IPv4 header at the front of `header`, whose IHL
/// the caller has validated.
fn set_ipv4_checksum(header: &mut [u8]) {
    let len = usize::from(header[0] & 0x0f) * 4;
    crate::ingress::set_ipv4_checksum(header, len);
}

/// An option-less IPv4 header (RFC 791 3.1) with DF clear, TTL 64 and its checksum.
fn ipv4_header(
    total_len: u16,
    tos: u8,
    ident: u16,
    protocol: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
) -> [u8; IPV4_HEADER_LEN] {
    let mut h = [0; IPV4_HEADER_LEN];
    h[0] = 0x45; // version 4, IHL 5 words
    h[1] = tos;
    h[2..4].copy_from_slice(&total_len.to_be_bytes());
    h[4..6].copy_from_slice(&ident.to_be_bytes());
    // h[6..8]: flags and fragment offset, all zero: DF clear, so the error can be
    // fragmented on its way back like any datagram of 576 bytes or less.
    h[8] = DEFAULT_TTL;
    h[9] = protocol;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    set_ipv4_checksum(&mut h);
    h
}

// ---------------------------------------------------------------------------------------
// Errors: whether to send, and building them.

/// Whether an ICMP error of kind `error` may be sent in answer to `offending`, a raw IPv4 or
/// IPv6 packet as received. Unparseable input gives `false`.
///
/// Never in answer to (RFC 1122 3.2.2, RFC 1812 4.3.2.7, RFC 4443 2.4(e)):
/// - an ICMP error message (an answer to an answer could loop forever); queries such as
///   echo requests do get errors. Like Linux, ICMPv4 types not known to be queries or
///   replies count as errors; ICMPv6 types below 128 are errors (RFC 4443 2.1), and
///   Redirect is excluded too (RFC 4443 2.4(e.2));
/// - a non-first fragment, which names no transport endpoint. One exception: the IPv6
///   Parameter Problem that RFC 8200 4.5 asks for about any fragment whose length is not a
///   multiple of 8;
/// - a packet to a broadcast or multicast address (one packet would draw an error from every
///   member of the group), except ICMPv6 Packet Too Big, which RFC 4443 2.4(e.3) allows so
///   that path MTU discovery works for multicast (its Parameter Problem code 2 exception
///   has no [`IcmpError`] kind: the stack never sends it);
/// - a packet whose source does not name a single host: 0.0.0.0, broadcast, multicast,
///   class E; `::` or multicast for IPv6. RFC 1122 lists loopback sources too, but a stack
///   that mostly talks to itself over `lo` must answer them, as Linux does.
///
/// Whether the error may be sent *now* is the [`RateLimiter`]'s decision.
pub fn may_send_error(offending: &[u8], error: IcmpError) -> bool {
    match offending.first().map(|b| b >> 4) {
        Some(4) => may_send_error_v4(offending),
        Some(6) => may_send_error_v6(offending, error),
        _ => false,
    }
}

fn may_send_error_v4(p: &[u8]) -> bool {
    let Some(h) = read_v4(p) else {
        return false;
    };
    // RFC 1122 3.2.2: not "a non-initial fragment".
    if h.frag_offset != 0 {
        return false;
    }
    // RFC 1122 3.2.2: "a datagram destined to an IP broadcast or IP multicast address", and
    // "a datagram whose source address does not define a single host".
    if !is_unicast_v4(h.dst) || !is_unicast_v4(h.src) {
        return false;
    }
    if h.protocol == proto::ICMP {
        // RFC 1122 3.2.2: "an ICMP error message". Queries and replies (echo 8/0, timestamp
        // 13/14, information 15/16, address mask 17/18) are not errors.
        return match p[..h.packet_len].get(h.header_len) {
            Some(&t) => matches!(t, V4_ECHO_REPLY | V4_ECHO_REQUEST | 13..=18),
            None => false,
        };
    }
    true
}

fn may_send_error_v6(p: &[u8], error: IcmpError) -> bool {
    let Some(h) = read_v6(p) else {
        return false;
    };
    // RFC 4443 2.4(e.6): the source must uniquely identify a single node. (Anycast sources
    // cannot be told apart here and are rare.)
    if h.src.is_unspecified() || h.src.is_multicast() {
        return false;
    }
    // RFC 4443 2.4(e.3): not to a multicast destination, except Packet Too Big.
    if h.dst.is_multicast() && !matches!(error, IcmpError::PacketTooBig { .. }) {
        return false;
    }
    if h.chain.fragment_offset != 0 {
        // RFC 8200 4.5: a fragment of bad length gets a Parameter Problem whichever it is.
        return matches!(error, IcmpError::ParameterProblem { .. });
    }
    if h.chain.next_header == proto::ICMPV6 && !h.chain.truncated {
        // RFC 4443 2.4(e.1, e.2): not an error message (types 0 to 127), not a Redirect.
        return match p[..h.packet_len].get(h.chain.offset) {
            Some(&t) => t >= V6_ECHO_REQUEST && t != V6_REDIRECT,
            None => false,
        };
    }
    true
}

/// Builds a complete IPv4 datagram carrying an ICMP error about `offending`, addressed to the
/// offending packet's source, from `src`, with TTL 64, DF clear and identification `ident`.
///
/// RFC 792 requires the offending IP header and its first 8 data bytes in the error; RFC
/// 1812 4.3.2.3 (and Linux) quote as much more as fits in a 576-byte datagram, every host's
/// minimum reassembly size, so the error is never too big to arrive. The quote stops at the
/// offending packet's total length, leaving out any link padding. The TOS is precedence 6,
/// internetwork control (RFC 1812 4.3.2.5), plus the offending packet's TOS bits, as in
/// Linux. `offending` needs a complete IPv4 header, or the result is
/// [`IcmpBuildError::Malformed`]; call [`may_send_error`] first.
pub fn build_error_v4(
    pool: &PacketPool,
    error: IcmpError,
    offending: &[u8],
    src: Ipv4Addr,
    ident: u16,
) -> Result<PacketBuf, IcmpBuildError> {
    let h = read_v4(offending).ok_or(IcmpBuildError::Malformed(
        "offending packet has no complete IPv4 header",
    ))?;
    let quote_len = h
        .packet_len
        .min(MAX_ERROR_LEN_V4 - IPV4_HEADER_LEN - ICMP_HEADER_LEN);
    let quote = &offending[..quote_len];
    let mut icmp = error.header(false);
    // RFC 792: the checksum covers the ICMP message, starting with the type; no pseudo-header.
    let checksum = checksum_bytes(Sum16BitWords::new().add_8bytes(icmp).add_slice(quote));
    icmp[2..4].copy_from_slice(&checksum);
    let total_len = IPV4_HEADER_LEN + ICMP_HEADER_LEN + quote_len; // at most 576
    let tos = 0xc0 | (h.tos & 0x1e);
    let ip = ipv4_header(total_len as u16, tos, ident, proto::ICMP, src, h.src);
    let mut buf = pool.alloc(total_len)?;
    buf.extend_from_slice(&ip)?;
    buf.extend_from_slice(&icmp)?;
    buf.extend_from_slice(quote)?;
    Ok(buf)
}

/// Builds a complete IPv6 packet carrying an ICMPv6 error about `offending`, addressed to the
/// offending packet's source, from `src`, hop limit 64.
///
/// RFC 4443 2.4(c): "as much of invoking packet as possible without the ICMPv6 packet
/// exceeding the minimum IPv6 MTU", 1280 bytes. The checksum covers the pseudo-header (RFC
/// 4443 2.3). `offending` needs a complete IPv6 header, or the result is
/// [`IcmpBuildError::Malformed`]; call [`may_send_error`] first.
pub fn build_error_v6(
    pool: &PacketPool,
    error: IcmpError,
    offending: &[u8],
    src: Ipv6Addr,
) -> Result<PacketBuf, IcmpBuildError> {
    let h = read_v6(offending).ok_or(IcmpBuildError::Malformed(
        "offending packet has no complete IPv6 header",
    ))?;
    let quote_len = h
        .packet_len
        .min(MAX_ERROR_LEN_V6 - IPV6_HEADER_LEN - ICMP_HEADER_LEN);
    let quote = &offending[..quote_len];
    let message_len = ICMP_HEADER_LEN + quote_len; // at most 1240
    let mut icmp = error.header(true);
    let sum = pseudo_header_v6(src, h.src, message_len)
        .add_8bytes(icmp)
        .add_slice(quote);
    icmp[2..4].copy_from_slice(&checksum_bytes(sum));

    // RFC 8200 3: version 6, traffic class and flow label 0, payload length, next header,
    // hop limit, source, destination.
    let mut ip = [0; IPV6_HEADER_LEN];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&(message_len as u16).to_be_bytes());
    ip[6] = proto::ICMPV6;
    ip[7] = DEFAULT_TTL;
    ip[8..24].copy_from_slice(&src.octets());
    ip[24..40].copy_from_slice(&h.src.octets());
    let mut buf = pool.alloc(IPV6_HEADER_LEN + message_len)?;
    buf.extend_from_slice(&ip)?;
    buf.extend_from_slice(&icmp)?;
    buf.extend_from_slice(quote)?;
    Ok(buf)
}

// ---------------------------------------------------------------------------------------
// Echo.

/// Turns a received IPv4 echo request (`packet` holds the whole datagram, reassembled) into
/// its echo reply, in place: the payload does not move.
///
/// The reply comes from the address the request was sent to (RFC 1122 3.2.2.6), so a ping
/// of 127.0.0.2 is answered by 127.0.0.2: source and destination are swapped. The TTL is
/// reset to 64, type 8 becomes 0 and the ICMP checksum is updated incrementally (RFC 1624);
/// the header checksum is recomputed. Link padding past the total length is trimmed. IP
/// options are dropped by sliding the fixed header over them (RFC 1122 3.2.2.6 would have
/// record-route and timestamp options updated and source routes reversed; the stack
/// implements neither). Errors leave `packet` unchanged.
pub fn echo_request_to_reply_v4(packet: &mut PacketBuf) -> Result<(), IcmpBuildError> {
    let p = packet.as_slice();
    let h = read_v4(p).ok_or(IcmpBuildError::Malformed("no complete IPv4 header"))?;
    if !h.total_len_valid || h.packet_len < h.header_len + ICMP_HEADER_LEN {
        return Err(IcmpBuildError::Malformed(
            "IPv4 total length does not fit an ICMP message",
        ));
    }
    if h.frag_offset != 0 || h.more_fragments {
        return Err(IcmpBuildError::Malformed("a fragment: reassemble first"));
    }
    if h.protocol != proto::ICMP || p[h.header_len] != V4_ECHO_REQUEST || p[h.header_len + 1] != 0 {
        return Err(IcmpBuildError::NotEchoRequest);
    }
    if !is_unicast_v4(h.dst) {
        return Err(IcmpBuildError::NonUnicastDestination);
    }

    packet.truncate(h.packet_len);
    let options = h.header_len - IPV4_HEADER_LEN;
    if options > 0 {
        packet
            .as_mut_slice()
            .copy_within(..IPV4_HEADER_LEN, options);
        packet.strip_front(options)?;
    }
    let total_len = (h.packet_len - options) as u16;
    let p = packet.as_mut_slice();
    p[0] = 0x45;
    p[2..4].copy_from_slice(&total_len.to_be_bytes());
    let (src, dst) = p[12..20].split_at_mut(4);
    src.swap_with_slice(dst);
    p[8] = DEFAULT_TTL;
    let icmp = &mut p[IPV4_HEADER_LEN..];
    icmp[0] = V4_ECHO_REPLY;
    // Only the type/code word changed: 08 00 -> 00 00.
    let checksum = checksum_adjust([icmp[2], icmp[3]], [V4_ECHO_REQUEST, 0], [V4_ECHO_REPLY, 0]);
    icmp[2..4].copy_from_slice(&checksum);
    set_ipv4_checksum(p);
    Ok(())
}

/// Turns a received ICMPv6 echo request (`packet` holds the whole IPv6 packet, reassembled)
/// into its echo reply, in place (RFC 4443 4.2).
///
/// Source and destination are swapped (the reply to ::1 comes from ::1), the hop limit is
/// reset to 64 and type 128 becomes 129. Extension headers (hop-by-hop, routing,
/// destination options, AH) are dropped by sliding the fixed header over them. The checksum
/// covers a pseudo-header; the new one has the addresses swapped and the same ICMPv6 length,
/// and one's-complement addition does not care about order, so the new pseudo-header sums
/// exactly like the old and an incremental update of the type word (RFC 1624) is the full
/// recomputation. Errors leave `packet` unchanged.
pub fn echo_request_to_reply_v6(packet: &mut PacketBuf) -> Result<(), IcmpBuildError> {
    let p = packet.as_slice();
    let h = read_v6(p).ok_or(IcmpBuildError::Malformed("no complete IPv6 header"))?;
    let chain = h.chain;
    if !h.total_len_valid || chain.truncated {
        return Err(IcmpBuildError::Malformed(
            "IPv6 payload length does not fit the packet",
        ));
    }
    if chain.fragment {
        return Err(IcmpBuildError::Malformed("a fragment: reassemble first"));
    }
    let icmp_at = chain.offset;
    if chain.next_header != proto::ICMPV6 || icmp_at + ICMP_HEADER_LEN > h.packet_len {
        return Err(IcmpBuildError::NotEchoRequest);
    }
    if p[icmp_at] != V6_ECHO_REQUEST || p[icmp_at + 1] != 0 {
        return Err(IcmpBuildError::NotEchoRequest);
    }
    if h.dst.is_multicast() {
        return Err(IcmpBuildError::NonUnicastDestination);
    }

    packet.truncate(h.packet_len);
    let extensions = icmp_at - IPV6_HEADER_LEN;
    if extensions > 0 {
        packet
            .as_mut_slice()
            .copy_within(..IPV6_HEADER_LEN, extensions);
        packet.strip_front(extensions)?;
    }
    let payload_len = (h.packet_len - icmp_at) as u16;
    let p = packet.as_mut_slice();
    p[4..6].copy_from_slice(&payload_len.to_be_bytes());
    p[6] = proto::ICMPV6;
    p[7] = DEFAULT_TTL;
    let (src, dst) = p[8..40].split_at_mut(16);
    src.swap_with_slice(dst);
    let icmp = &mut p[IPV6_HEADER_LEN..];
    icmp[0] = V6_ECHO_REPLY;
    let checksum = checksum_adjust([icmp[2], icmp[3]], [V6_ECHO_REQUEST, 0], [V6_ECHO_REPLY, 0]);
    icmp[2..4].copy_from_slice(&checksum);
    Ok(())
}

/// Builds the ICMP (`v6_addrs` `None`) or ICMPv6 (`Some((src, dst))`, needed for the
/// pseudo-header checksum) echo request message, without IP header, into a buffer from
/// `pool` that keeps the pool's headroom for the IP layer to prepend its header.
pub fn build_echo_request(
    pool: &PacketPool,
    v6_addrs: Option<(Ipv6Addr, Ipv6Addr)>,
    id: u16,
    seq: u16,
    payload: &[u8],
) -> Result<PacketBuf, IcmpBuildError> {
    let len = ICMP_HEADER_LEN + payload.len();
    // IPv4's total length and IPv6's payload length are 16-bit fields.
    let max = match v6_addrs {
        Some(_) => usize::from(u16::MAX),
        None => usize::from(u16::MAX) - IPV4_HEADER_LEN,
    };
    if len > max {
        return Err(IcmpBuildError::Malformed(
            "echo payload too large for one IP packet",
        ));
    }
    let echo_type = if v6_addrs.is_some() {
        V6_ECHO_REQUEST
    } else {
        V4_ECHO_REQUEST
    };
    // RFC 792 / RFC 4443 4.1: type, code 0, checksum, identifier, sequence number.
    let [id_hi, id_lo] = id.to_be_bytes();
    let [seq_hi, seq_lo] = seq.to_be_bytes();
    let mut header = [echo_type, 0, 0, 0, id_hi, id_lo, seq_hi, seq_lo];
    let mut sum = match v6_addrs {
        Some((src, dst)) => pseudo_header_v6(src, dst, len),
        None => Sum16BitWords::new(),
    };
    let checksum = checksum_bytes(sum.add_8bytes(header).add_slice(payload));
    header[2..4].copy_from_slice(&checksum);
    let mut buf = pool.alloc(len)?;
    buf.extend_from_slice(&header)?;
    buf.extend_from_slice(payload)?;
    Ok(buf)
}

// ---------------------------------------------------------------------------------------
// Parsing.

/// Parses a received ICMP (`v6` false) or ICMPv6 message: the bytes after the IP header (and
/// IPv6 extension headers). Malformed input is an `Err`, never a panic.
///
/// With `verify`, the checksum is checked first: over the message for ICMP (RFC 792), over
/// the pseudo-header built from `src` and `dst` and the message for ICMPv6 (RFC 4443 2.3).
/// The addresses are not used otherwise.
pub fn parse(
    message: &[u8],
    v6: bool,
    src: IpAddr,
    dst: IpAddr,
    verify: bool,
) -> Result<IcmpMessage<'_>, IcmpParseError> {
    if message.len() < ICMP_HEADER_LEN {
        return Err(IcmpParseError::Truncated { len: message.len() });
    }
    if verify {
        let sum = if v6 {
            let (IpAddr::V6(src), IpAddr::V6(dst)) = (src, dst) else {
                return Err(IcmpParseError::AddressFamily);
            };
            pseudo_header_v6(src, dst, message.len())
        } else {
            Sum16BitWords::new()
        };
        // RFC 1071: summing the data with its checksum gives all ones, whose complement is 0.
        if sum.add_slice(message).ones_complement() != 0 {
            return Err(IcmpParseError::BadChecksum);
        }
    }
    let (icmp_type, code) = (message[0], message[1]);
    let rest = [message[4], message[5], message[6], message[7]];
    let id = u16::from_be_bytes([rest[0], rest[1]]);
    let seq = u16::from_be_bytes([rest[2], rest[3]]);
    let body = &message[ICMP_HEADER_LEN..];
    let (request, reply) = if v6 {
        (V6_ECHO_REQUEST, V6_ECHO_REPLY)
    } else {
        (V4_ECHO_REQUEST, V4_ECHO_REPLY)
    };
    if code == 0 && icmp_type == request {
        return Ok(IcmpMessage::EchoRequest {
            id,
            seq,
            payload: body,
        });
    }
    if code == 0 && icmp_type == reply {
        return Ok(IcmpMessage::EchoReply {
            id,
            seq,
            payload: body,
        });
    }
    let error = if v6 {
        error_from_v6(icmp_type, code, rest)
    } else {
        error_from_v4(icmp_type, code, rest)
    };
    match error {
        Some(error) => {
            let quoted = if v6 { quote_v6(body)? } else { quote_v4(body)? };
            Ok(IcmpMessage::Error { error, quoted })
        }
        None => Ok(IcmpMessage::Other { icmp_type, code }),
    }
}

/// ICMPv4 type and code to error kind, grouping codes as Linux's `icmp_err_convert` does.
fn error_from_v4(icmp_type: u8, code: u8, rest: [u8; 4]) -> Option<IcmpError> {
    Some(match (icmp_type, code) {
        // Net unreachable, net unknown, net prohibited, net unreachable for TOS.
        (V4_DEST_UNREACHABLE, 0 | 6 | 9 | 11) => IcmpError::NetUnreachable,
        // Host unreachable, source route failed, host unknown, isolated, host prohibited,
        // host unreachable for TOS, communication prohibited, precedence problems.
        (V4_DEST_UNREACHABLE, 1 | 5 | 7 | 8 | 10 | 12..=15) => IcmpError::HostUnreachable,
        (V4_DEST_UNREACHABLE, 2) => IcmpError::ProtocolUnreachable { pointer: 0 },
        (V4_DEST_UNREACHABLE, 3) => IcmpError::PortUnreachable,
        // RFC 1191 4: next-hop MTU in the low 16 bits (0 from routers older than RFC 1191).
        (V4_DEST_UNREACHABLE, 4) => IcmpError::PacketTooBig {
            mtu: u32::from(u16::from_be_bytes([rest[2], rest[3]])),
        },
        (V4_TIME_EXCEEDED, 0) => IcmpError::TtlExceeded,
        (V4_TIME_EXCEEDED, 1) => IcmpError::ReassemblyTimeExceeded,
        // Codes 0 (pointer), 1 (missing option) and 2 (bad length, RFC 1812 5.2.5.4).
        (V4_PARAMETER_PROBLEM, 0..=2) => IcmpError::ParameterProblem {
            pointer: u32::from(rest[0]),
        },
        // Source quench (4) is deprecated and ignored (RFC 6633), redirects (5) too.
        _ => return None,
    })
}

/// ICMPv6 type and code to error kind (RFC 4443 3), grouped like Linux's
/// `icmpv6_err_convert`.
fn error_from_v6(icmp_type: u8, code: u8, rest: [u8; 4]) -> Option<IcmpError> {
    let word = u32::from_be_bytes(rest);
    Some(match (icmp_type, code) {
        (V6_DEST_UNREACHABLE, 0) => IcmpError::NetUnreachable,
        // Prohibited, beyond scope, address unreachable, policy failure, reject route.
        (V6_DEST_UNREACHABLE, 1 | 2 | 3 | 5 | 6) => IcmpError::HostUnreachable,
        (V6_DEST_UNREACHABLE, 4) => IcmpError::PortUnreachable,
        // RFC 4443 3.2: the code is set to 0 by the sender and ignored by the receiver.
        (V6_PACKET_TOO_BIG, _) => IcmpError::PacketTooBig { mtu: word },
        (V6_TIME_EXCEEDED, 0) => IcmpError::TtlExceeded,
        (V6_TIME_EXCEEDED, 1) => IcmpError::ReassemblyTimeExceeded,
        (V6_PARAMETER_PROBLEM, 1) => IcmpError::ProtocolUnreachable { pointer: word },
        (V6_PARAMETER_PROBLEM, _) => IcmpError::ParameterProblem { pointer: word },
        _ => return None,
    })
}

/// The packet quoted by an ICMPv4 error (RFC 792: its IP header and at least 8 more bytes).
fn quote_v4(q: &[u8]) -> Result<QuotedPacket, IcmpParseError> {
    let h = read_v4(q).ok_or(IcmpParseError::BadQuote(
        "the quoted packet has no complete IPv4 header",
    ))?;
    // A non-first fragment's data is not the start of a transport header.
    let transport = match h.frag_offset {
        0 => q.get(h.header_len..h.packet_len).unwrap_or(&[]),
        _ => &[],
    };
    Ok(QuotedPacket::new(
        h.src.into(),
        h.dst.into(),
        h.protocol,
        transport,
    ))
}

/// The packet quoted by an ICMPv6 error, walking its extension headers to the transport
/// header as far as the quote goes.
fn quote_v6(q: &[u8]) -> Result<QuotedPacket, IcmpParseError> {
    let h = read_v6(q).ok_or(IcmpParseError::BadQuote(
        "the quoted packet has no complete IPv6 header",
    ))?;
    let chain = h.chain;
    let transport = if chain.truncated || chain.fragment_offset != 0 {
        &[]
    } else {
        q.get(chain.offset..h.packet_len).unwrap_or(&[])
    };
    Ok(QuotedPacket::new(
        h.src.into(),
        h.dst.into(),
        chain.next_header,
        transport,
    ))
}

// ---------------------------------------------------------------------------------------
// Rate limiting.

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// A token bucket limiting the ICMP errors the stack generates (RFC 1812 4.3.2.8, RFC 4443
/// 2.4(f)): without it, a flood of packets to a closed port would draw a flood of errors.
///
/// The bucket holds up to `burst` tokens and gains `per_second` tokens a second; each error
/// sent takes one. It starts full. Time is passed in, so runs are reproducible; tokens are
/// kept in billionths so that refilling by any number of nanoseconds is exact. Linux's
/// global limit has the same defaults (`net.ipv4.icmp_msgs_per_sec` 1000,
/// `icmp_msgs_burst` 50). Linux applies it only to the types in `net.ipv4.icmp_ratemask`
/// (by default the errors, not echo replies); here the caller decides which messages go
/// through [`allow`](Self::allow).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimiter {
    per_second: u32,
    burst: u32,
    /// Tokens, in billionths of a token.
    credit: u64,
    /// When the bucket was last refilled; `None` before the first call.
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimiter {
    /// A full bucket of `burst` tokens refilling at `per_second` tokens a second.
    pub fn new(per_second: u32, burst: u32) -> Self {
        RateLimiter {
            per_second,
            burst,
            credit: u64::from(burst) * NANOS_PER_SEC,
            last: None,
            suppressed: 0,
        }
    }

    /// Linux's defaults: 1000 messages a second, bursts of 50.
    pub fn linux_default() -> Self {
        Self::new(1000, 50)
    }

    /// Whether one message may be sent at `now`; takes a token if so, counts a suppressed
    /// message if not. A clock going backwards refills nothing.
    pub fn allow(&mut self, now: Instant) -> bool {
        let capacity = u64::from(self.burst) * NANOS_PER_SEC;
        match self.last {
            Some(last) if now > last => {
                let elapsed = u128::from(now.as_nanos() - last.as_nanos());
                let credit = u128::from(self.credit) + elapsed * u128::from(self.per_second);
                self.credit = u64::try_from(credit).unwrap_or(u64::MAX).min(capacity);
                self.last = Some(now);
            }
            Some(_) => {}
            None => self.last = Some(now),
        }
        if self.credit >= NANOS_PER_SEC {
            self.credit -= NANOS_PER_SEC;
            true
        } else {
            self.suppressed = self.suppressed.saturating_add(1);
            false
        }
    }

    /// Messages refused so far (Linux's `OutRateLimitGlobal` counter).
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }
}

impl Default for RateLimiter {
    /// [`RateLimiter::linux_default`].
    fn default() -> Self {
        Self::linux_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::icmpv4::{self, DestUnreachableHeader as D4, TimeExceededCode as T4};
    use etherparse::icmpv6::ParameterProblemCode as Ppc;
    use etherparse::icmpv6::{self, DestUnreachableCode as D6, TimeExceededCode as T6};
    use etherparse::TransportSlice;
    use etherparse::{IcmpEchoHeader, Icmpv4Type, Icmpv6Type, NetSlice, SlicedPacket};
    use loopstack_buf::PoolConfig;
    use std::time::Duration;

    const LO4: Ipv4Addr = Ipv4Addr::LOCALHOST;
    const LO6: Ipv6Addr = Ipv6Addr::LOCALHOST;
    const A4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 9);
    const A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 9);
    const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    /// A UDP header, port 40000 to 53, and 8 bytes of data.
    const UDP: [u8; 16] = [0x9c, 0x40, 0, 53, 0, 16, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
    const PAYLOAD: &[u8] = b"loopstack ping payload";
    /// A hop-by-hop options header's second to eighth bytes: length 0, one PadN option.
    const HBH_PADN: [u8; 7] = [0, 1, 4, 0, 0, 0, 0];

    fn pool() -> PacketPool {
        PacketPool::new(PoolConfig::single(65536, 12)).unwrap()
    }

    fn v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, payload: &[u8]) -> Vec<u8> {
        let len = (IPV4_HEADER_LEN + payload.len()) as u16;
        [&ipv4_header(len, 0, 7, protocol, src, dst)[..], payload].concat()
    }

    fn v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, payload: &[u8]) -> Vec<u8> {
        let len = (payload.len() as u16).to_be_bytes();
        let fixed = [0x60, 0, 0, 0, len[0], len[1], next_header, 64];
        [&fixed[..], &src.octets(), &dst.octets(), payload].concat()
    }

    fn sum_ok(bytes: &[u8]) -> bool {
        Sum16BitWords::new().add_slice(bytes).ones_complement() == 0
    }

    /// What etherparse reads from ICMP over IPv4: source, destination, TTL, type, payload.
    /// Both checksums must verify.
    fn read4(b: &[u8]) -> (Ipv4Addr, Ipv4Addr, u8, Icmpv4Type, Vec<u8>) {
        let s = SlicedPacket::from_ip(b).unwrap();
        let (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Icmpv4(icmp))) = (s.net, s.transport)
        else {
            panic!("not ICMP over IPv4");
        };
        let h = ip.header();
        assert!(sum_ok(h.slice()) && sum_ok(icmp.slice()), "checksums");
        let payload = icmp.payload().to_vec();
        (
            h.source_addr(),
            h.destination_addr(),
            h.ttl(),
            icmp.icmp_type(),
            payload,
        )
    }

    /// The same for ICMPv6 over IPv6, with the hop limit.
    fn read6(b: &[u8]) -> (Ipv6Addr, Ipv6Addr, u8, Icmpv6Type, Vec<u8>) {
        let s = SlicedPacket::from_ip(b).unwrap();
        let (Some(NetSlice::Ipv6(ip)), Some(TransportSlice::Icmpv6(icmp))) = (s.net, s.transport)
        else {
            panic!("not ICMPv6 over IPv6");
        };
        let h = ip.header();
        let (src, dst) = (h.source_addr(), h.destination_addr());
        assert!(
            icmp.is_checksum_valid(src.octets(), dst.octets()),
            "checksum"
        );
        (
            src,
            dst,
            h.hop_limit(),
            icmp.icmp_type(),
            icmp.payload().to_vec(),
        )
    }

    /// Each kind, with what etherparse must read back for ICMPv4 and for ICMPv6.
    fn kinds() -> [(IcmpError, Icmpv4Type, Icmpv6Type); 8] {
        use IcmpError::*;
        use Icmpv4Type::DestinationUnreachable as Du4;
        use Icmpv6Type::DestinationUnreachable as Du6;
        let pp6 = |code, pointer| {
            Icmpv6Type::ParameterProblem(icmpv6::ParameterProblemHeader { code, pointer })
        };
        let pp4 =
            Icmpv4Type::ParameterProblem(icmpv4::ParameterProblemHeader::PointerIndicatesError(9));
        let mtu = 1400;
        let (te4, te6) = (Icmpv4Type::TimeExceeded, Icmpv6Type::TimeExceeded);
        [
            (
                ProtocolUnreachable { pointer: 6 },
                Du4(D4::Protocol),
                pp6(Ppc::UnrecognizedNextHeader, 6),
            ),
            (PortUnreachable, Du4(D4::Port), Du6(D6::Port)),
            (HostUnreachable, Du4(D4::Host), Du6(D6::Address)),
            (NetUnreachable, Du4(D4::Network), Du6(D6::NoRoute)),
            (
                PacketTooBig { mtu: 1400 },
                Du4(D4::FragmentationNeeded { next_hop_mtu: 1400 }),
                Icmpv6Type::PacketTooBig { mtu },
            ),
            (
                TtlExceeded,
                te4(T4::TtlExceededInTransit),
                te6(T6::HopLimitExceeded),
            ),
            (
                ReassemblyTimeExceeded,
                te4(T4::FragmentReassemblyTimeExceeded),
                te6(T6::FragmentReassemblyTimeExceeded),
            ),
            (
                ParameterProblem { pointer: 9 },
                pp4,
                pp6(Ppc::ErroneousHeaderField, 9),
            ),
        ]
    }

    #[test]
    fn every_error_kind_builds_a_valid_packet_that_parses_back() {
        let pool = pool();
        let (off4, off6) = (v4(A4, LO4, proto::UDP, &UDP), v6(A6, LO6, proto::UDP, &UDP));
        for (kind, want4, want6) in kinds() {
            let b = build_error_v4(&pool, kind, &off4, LO4, 0x4242).unwrap();
            // A small packet is quoted whole.
            assert_eq!(read4(&b), (LO4, A4, 64, want4, off4.clone()), "{kind:?}");
            assert_eq!(&b[4..8], &[0x42, 0x42, 0, 0], "identification, DF clear");
            assert_eq!(b[9], proto::ICMP);
            // ICMPv4 has no pointer for protocol unreachable: it reads back as 0.
            let error = match kind {
                IcmpError::ProtocolUnreachable { .. } => {
                    IcmpError::ProtocolUnreachable { pointer: 0 }
                }
                k => k,
            };
            let quoted = QuotedPacket::new(A4.into(), LO4.into(), proto::UDP, &UDP);
            assert_eq!(quoted.ports(), Some((40000, 53)));
            let parsed = parse(&b[20..], false, LO4.into(), A4.into(), true);
            assert_eq!(parsed, Ok(IcmpMessage::Error { error, quoted }));

            let b = build_error_v6(&pool, kind, &off6, LO6).unwrap();
            assert_eq!(read6(&b), (LO6, A6, 64, want6, off6.clone()), "{kind:?}");
            let quoted = QuotedPacket::new(A6.into(), LO6.into(), proto::UDP, &UDP);
            let parsed = parse(&b[40..], true, LO6.into(), A6.into(), true);
            assert_eq!(
                parsed,
                Ok(IcmpMessage::Error {
                    error: kind,
                    quoted
                })
            );
        }
    }

    #[test]
    fn quotes_fill_576_and_1280_bytes_and_skip_link_padding() {
        let pool = pool();
        let big = vec![0xab; 3000];
        let off4 = v4(A4, LO4, proto::UDP, &big[..2000]);
        let b = build_error_v4(&pool, IcmpError::PortUnreachable, &off4, LO4, 1).unwrap();
        assert_eq!(
            (b.len(), &b[2..4]),
            (MAX_ERROR_LEN_V4, &576u16.to_be_bytes()[..])
        );
        assert_eq!(read4(&b).4, &off4[..548]);

        let off6 = v6(A6, LO6, proto::UDP, &big);
        let b = build_error_v6(&pool, IcmpError::TtlExceeded, &off6, LO6).unwrap();
        assert_eq!(
            (b.len(), &b[4..6]),
            (MAX_ERROR_LEN_V6, &1240u16.to_be_bytes()[..])
        );
        assert_eq!(read6(&b).4, &off6[..1232]);

        let padded = [&v4(A4, LO4, proto::UDP, &UDP)[..], &[0xee; 6]].concat();
        let b = build_error_v4(&pool, IcmpError::PortUnreachable, &padded, LO4, 1).unwrap();
        assert_eq!(&b[28..], &padded[..36]);
        let garbage = build_error_v4(&pool, IcmpError::PortUnreachable, &UDP, LO4, 1);
        assert!(matches!(garbage, Err(IcmpBuildError::Malformed(_))));
    }

    #[test]
    fn may_send_error_v4_table() {
        let udp = |src, dst| v4(src, dst, proto::UDP, &UDP);
        let icmp = |t: u8| v4(A4, LO4, proto::ICMP, &[t, 0, 0, 0, 0, 0, 0, 0]);
        let fragment = |flags_offset: u16| {
            let mut p = udp(A4, LO4);
            p[6..8].copy_from_slice(&flags_offset.to_be_bytes());
            p
        };
        let mut ihl_past_end = udp(A4, LO4);
        ihl_past_end[0] = 0x4f;
        let cases: &[(&str, Vec<u8>, bool)] = &[
            ("udp", udp(A4, LO4), true),
            ("echo request", icmp(V4_ECHO_REQUEST), true),
            ("echo reply", icmp(V4_ECHO_REPLY), true),
            ("dest unreachable", icmp(V4_DEST_UNREACHABLE), false),
            ("time exceeded", icmp(V4_TIME_EXCEEDED), false),
            ("icmp without type", v4(A4, LO4, proto::ICMP, &[]), false),
            ("non-first fragment", fragment(185), false),
            ("first fragment", fragment(0x2000), true),
            ("to broadcast", udp(A4, Ipv4Addr::BROADCAST), false),
            ("to multicast", udp(A4, Ipv4Addr::new(224, 0, 0, 1)), false),
            ("from 0.0.0.0", udp(Ipv4Addr::UNSPECIFIED, LO4), false),
            ("from broadcast", udp(Ipv4Addr::BROADCAST, LO4), false),
            (
                "from multicast",
                udp(Ipv4Addr::new(239, 1, 1, 1), LO4),
                false,
            ),
            ("ihl past end", ihl_past_end, false),
            ("garbage", vec![0xde, 0xad, 0xbe, 0xef], false),
            ("empty", vec![], false),
        ];
        for (name, packet, want) in cases {
            assert_eq!(
                may_send_error(packet, IcmpError::PortUnreachable),
                *want,
                "{name}"
            );
        }
    }

    #[test]
    fn may_send_error_v6_table() {
        use IcmpError::{PacketTooBig, ParameterProblem, PortUnreachable as Port};
        let udp = |src, dst| v6(src, dst, proto::UDP, &UDP);
        let icmp = |t: u8| v6(A6, LO6, proto::ICMPV6, &[t, 0, 0, 0, 0, 0, 0, 0]);
        let fragment = |offset_flags: u16| {
            let [hi, lo] = offset_flags.to_be_bytes();
            let header = [proto::UDP, 0, hi, lo, 0, 0, 0, 1];
            v6(A6, LO6, proto::FRAGMENT, &[&header[..], &UDP].concat())
        };
        let error = [V6_DEST_UNREACHABLE, 4, 0, 0, 0, 0, 0, 0];
        let hbh_error = v6(
            A6,
            LO6,
            proto::HOP_BY_HOP,
            &[&[58][..], &HBH_PADN, &error].concat(),
        );
        let ptb = PacketTooBig { mtu: 1280 };
        let pp = ParameterProblem { pointer: 4 };
        let cases: &[(&str, Vec<u8>, IcmpError, bool)] = &[
            ("udp", udp(A6, LO6), Port, true),
            ("echo request", icmp(V6_ECHO_REQUEST), Port, true),
            ("echo reply", icmp(V6_ECHO_REPLY), Port, true),
            ("dest unreachable", icmp(V6_DEST_UNREACHABLE), Port, false),
            ("packet too big", icmp(V6_PACKET_TOO_BIG), ptb, false),
            ("redirect", icmp(V6_REDIRECT), Port, false),
            ("error behind hop-by-hop", hbh_error, Port, false),
            ("non-first fragment", fragment(8), Port, false),
            ("non-first fragment, bad length", fragment(9), pp, true),
            ("first fragment", fragment(1), Port, true),
            ("to multicast", udp(A6, ALL_NODES), Port, false),
            ("to multicast, too big", udp(A6, ALL_NODES), ptb, true),
            ("from ::", udp(Ipv6Addr::UNSPECIFIED, LO6), Port, false),
            ("from multicast", udp(ALL_NODES, LO6), ptb, false),
            ("garbage", vec![0x60; 39], Port, false),
        ];
        for (name, packet, error, want) in cases {
            assert_eq!(may_send_error(packet, *error), *want, "{name}");
        }
    }

    /// An echo request as the IP layer receives it: header prepended in the pooled buffer.
    fn echo_v4(pool: &PacketPool, src: Ipv4Addr, dst: Ipv4Addr) -> PacketBuf {
        let mut b = build_echo_request(pool, None, 0x1234, 7, PAYLOAD).unwrap();
        let mut header = ipv4_header((20 + b.len()) as u16, 0, 1, proto::ICMP, src, dst);
        header[8] = 3; // a request that has come a long way
        set_ipv4_checksum(&mut header);
        b.prepend_slice(&header).unwrap();
        b
    }

    fn echo_v6(pool: &PacketPool, src: Ipv6Addr, dst: Ipv6Addr) -> PacketBuf {
        let mut b = build_echo_request(pool, Some((src, dst)), 0x1234, 7, PAYLOAD).unwrap();
        b.prepend_slice(&v6(src, dst, proto::ICMPV6, &b)[..40])
            .unwrap();
        b
    }

    #[test]
    fn echo_reply_in_place_from_the_address_pinged() {
        let pool = pool();
        let echo = IcmpEchoHeader { id: 0x1234, seq: 7 };
        let reply = IcmpMessage::EchoReply {
            id: 0x1234,
            seq: 7,
            payload: PAYLOAD,
        };
        for dst in [LO4, Ipv4Addr::new(127, 0, 0, 2)] {
            let mut b = echo_v4(&pool, LO4, dst);
            let (ptr, headroom) = (b.as_slice().as_ptr(), b.headroom());
            echo_request_to_reply_v4(&mut b).unwrap();
            assert_eq!((b.as_slice().as_ptr(), b.headroom()), (ptr, headroom));
            let want = (dst, LO4, 64, Icmpv4Type::EchoReply(echo), PAYLOAD.to_vec());
            assert_eq!(read4(&b), want);
            assert_eq!(
                parse(&b[20..], false, dst.into(), LO4.into(), true),
                Ok(reply)
            );
        }
        for src in [LO6, A6] {
            let mut b = echo_v6(&pool, src, LO6);
            let (ptr, headroom) = (b.as_slice().as_ptr(), b.headroom());
            echo_request_to_reply_v6(&mut b).unwrap();
            assert_eq!((b.as_slice().as_ptr(), b.headroom()), (ptr, headroom));
            let want = (LO6, src, 64, Icmpv6Type::EchoReply(echo), PAYLOAD.to_vec());
            assert_eq!(read6(&b), want);
        }
    }

    #[test]
    fn echo_reply_drops_options_and_extension_headers() {
        let pool = pool();
        let request = echo_v4(&pool, A4, LO4).to_vec();
        let mut raw = [&request[..20], &[1, 1, 1, 1], &request[20..]].concat(); // NOP options
        raw[0] = 0x46;
        raw[2..4].copy_from_slice(&(request.len() as u16 + 4).to_be_bytes());
        set_ipv4_checksum(&mut raw);
        let mut b = pool.alloc_from_slice(&raw).unwrap();
        echo_request_to_reply_v4(&mut b).unwrap();
        assert_eq!(b.len(), request.len());
        assert_eq!(read4(&b).0, LO4);

        let request = echo_v6(&pool, A6, LO6).to_vec();
        let payload = [&[proto::ICMPV6][..], &HBH_PADN, &request[40..]].concat();
        let mut b = pool
            .alloc_from_slice(&v6(A6, LO6, proto::HOP_BY_HOP, &payload))
            .unwrap();
        echo_request_to_reply_v6(&mut b).unwrap();
        assert_eq!(b.len(), request.len());
        assert_eq!(read6(&b).0, LO6);
    }

    #[test]
    fn echo_reply_refuses_what_is_not_a_unicast_echo_request() {
        use IcmpBuildError::{Malformed, NonUnicastDestination, NotEchoRequest};
        let pool = pool();
        let mut reply = echo_v4(&pool, A4, LO4);
        echo_request_to_reply_v4(&mut reply).unwrap();
        let request = echo_v4(&pool, A4, LO4);
        let cases: &[(Vec<u8>, IcmpBuildError)] = &[
            (v4(A4, LO4, proto::UDP, &UDP), NotEchoRequest),
            (reply.to_vec(), NotEchoRequest),
            (
                echo_v4(&pool, A4, Ipv4Addr::BROADCAST).to_vec(),
                NonUnicastDestination,
            ),
            (
                request[..30].to_vec(),
                Malformed("IPv4 total length does not fit an ICMP message"),
            ),
        ];
        for (raw, want) in cases {
            let mut b = pool.alloc_from_slice(raw).unwrap();
            assert_eq!(echo_request_to_reply_v4(&mut b), Err(*want));
            assert_eq!(&b[..], &raw[..], "unchanged");
        }
        let mut b = echo_v6(&pool, A6, ALL_NODES);
        assert_eq!(echo_request_to_reply_v6(&mut b), Err(NonUnicastDestination));
        let mut b = pool
            .alloc_from_slice(&v6(A6, LO6, proto::UDP, &UDP))
            .unwrap();
        assert_eq!(echo_request_to_reply_v6(&mut b), Err(NotEchoRequest));
    }

    #[test]
    fn parse_round_trips_echo_requests_and_checks_checksums() {
        let pool = pool();
        let m = build_echo_request(&pool, None, 9, 10, PAYLOAD).unwrap();
        assert_eq!(
            m.headroom(),
            PoolConfig::DEFAULT_HEADROOM,
            "room for the IP header"
        );
        let want = IcmpMessage::EchoRequest {
            id: 9,
            seq: 10,
            payload: PAYLOAD,
        };
        assert_eq!(parse(&m, false, A4.into(), LO4.into(), true), Ok(want));
        let mut bad = m.to_vec();
        bad[10] ^= 1;
        let e = parse(&bad, false, A4.into(), LO4.into(), true);
        assert_eq!(e, Err(IcmpParseError::BadChecksum));
        assert!(parse(&bad, false, A4.into(), LO4.into(), false).is_ok());

        let m = build_echo_request(&pool, Some((A6, LO6)), 9, 10, PAYLOAD).unwrap();
        assert_eq!(parse(&m, true, A6.into(), LO6.into(), true), Ok(want));
        let wrong_dst = parse(&m, true, A6.into(), ALL_NODES.into(), true);
        assert_eq!(wrong_dst, Err(IcmpParseError::BadChecksum));
        let v4_addrs = parse(&m, true, A4.into(), LO4.into(), true);
        assert_eq!(v4_addrs, Err(IcmpParseError::AddressFamily));
        let big = build_echo_request(&pool, None, 1, 1, &vec![0; 65535 - 28 + 1]);
        assert!(matches!(big, Err(IcmpBuildError::Malformed(_))));
    }

    #[test]
    fn parse_finds_the_transport_header_behind_quoted_extension_headers() {
        let pool = pool();
        let payload = [&[proto::UDP][..], &HBH_PADN, &UDP].concat();
        let offending = v6(LO6, A6, proto::HOP_BY_HOP, &payload);
        let e = build_error_v6(&pool, IcmpError::PortUnreachable, &offending, A6).unwrap();
        let parsed = parse(&e[40..], true, A6.into(), LO6.into(), true);
        let Ok(IcmpMessage::Error { quoted, .. }) = parsed else {
            panic!("not an error: {parsed:?}");
        };
        assert_eq!(
            (quoted.protocol, quoted.ports()),
            (proto::UDP, Some((40000, 53)))
        );

        let lo = IpAddr::from(LO4);
        let short_quote = parse(&[3, 3, 0, 0, 0, 0, 0, 0, 0x45], false, lo, lo, false);
        assert!(matches!(short_quote, Err(IcmpParseError::BadQuote(_))));
        let timestamp = parse(&[13, 0, 0, 0, 0, 0, 0, 0], false, lo, lo, false);
        assert_eq!(
            timestamp,
            Ok(IcmpMessage::Other {
                icmp_type: 13,
                code: 0
            })
        );
    }

    #[test]
    fn no_input_makes_anything_panic() {
        let pool = pool();
        let port = IcmpError::PortUnreachable;
        let mut packets = vec![
            echo_v4(&pool, A4, LO4).to_vec(),
            echo_v6(&pool, A6, LO6).to_vec(),
            build_error_v4(&pool, port, &v4(A4, LO4, proto::UDP, &UDP), LO4, 1)
                .unwrap()
                .to_vec(),
            build_error_v6(&pool, port, &v6(A6, LO6, proto::UDP, &UDP), LO6)
                .unwrap()
                .to_vec(),
        ];
        // Noise from a small LCG, half of it looking like IPv4 and half like IPv6.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for i in 0..400 {
            let mut p: Vec<u8> = (0..i % 120)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (x >> 56) as u8
                })
                .collect();
            if let Some(b) = p.first_mut() {
                *b = if i % 2 == 0 { 0x45 } else { 0x60 };
            }
            packets.push(p);
        }
        for packet in &packets {
            for p in (0..=packet.len()).map(|n| &packet[..n]) {
                for (kind, _, _) in kinds() {
                    may_send_error(p, kind);
                }
                let _ = build_error_v4(&pool, IcmpError::TtlExceeded, p, LO4, 1);
                let _ = build_error_v6(&pool, IcmpError::TtlExceeded, p, LO6);
                let _ = echo_request_to_reply_v4(&mut pool.alloc_from_slice(p).unwrap());
                let _ = echo_request_to_reply_v6(&mut pool.alloc_from_slice(p).unwrap());
                for (v6, m) in [(false, p.get(20..)), (true, p.get(40..))] {
                    let m = m.unwrap_or(p);
                    for verify in [false, true] {
                        let r = parse(m, v6, LO6.into(), LO6.into(), verify);
                        if m.len() < ICMP_HEADER_LEN {
                            assert_eq!(r, Err(IcmpParseError::Truncated { len: m.len() }));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn rate_limiter_allows_a_burst_then_one_per_millisecond() {
        let mut rl = RateLimiter::linux_default();
        let t0 = Instant::ZERO;
        assert!((0..50).all(|_| rl.allow(t0)));
        assert!(!rl.allow(t0));
        assert!(!rl.allow(t0 + Duration::from_micros(999)));
        assert_eq!(rl.suppressed(), 2);
        let t1 = Instant::from_millis(1);
        assert!(rl.allow(t1));
        assert!(!rl.allow(t1));
        // Ten milliseconds give ten tokens; a long idle time only refills the burst.
        let t2 = Instant::from_millis(11);
        assert_eq!((0..20).filter(|_| rl.allow(t2)).count(), 10);
        let t3 = Instant::from_secs(100);
        assert_eq!((0..100).filter(|_| rl.allow(t3)).count(), 50);
        // A clock going backwards refills nothing, and panics nowhere.
        assert!(!rl.allow(t1));
        assert_eq!(rl.suppressed(), 2 + 1 + 10 + 50 + 1);
        let mut never = RateLimiter::new(0, 0);
        assert!(!never.allow(Instant::MAX));
        assert_eq!(RateLimiter::default(), RateLimiter::new(1000, 50));
    }
}
