//! `Tracer`: one readable line per packet, in the style of `tcpdump -n`.
//!
//! Wrap any [`Device`] in a [`Tracer`] and every packet that crosses it is written to a
//! sink (`std::io::stderr()`, a file, a `Vec<u8>` in a test) as one line of text:
//!
//! ```text
//! 0.000100s lo tx IP 127.0.0.1.40000 > 127.0.0.1.80: Flags [S], seq 1000, win 65535, options [mss 65495,sackOK,TS val 1 ecr 0,nop,wscale 7], length 0 (ttl 64, id 0, DF, len 60)
//! 0.000100s lo rx IP 127.0.0.1.40000 > 127.0.0.1.80: Flags [S], seq 1000, win 65535, options [mss 65495,sackOK,TS val 1 ecr 0,nop,wscale 7], length 0 (ttl 64, id 0, DF, len 60)
//! 0.000300s lo tx IP 127.0.0.1.80 > 127.0.0.1.40000: Flags [S.], seq 2000, ack 1001, win 65483, options [mss 65495,sackOK,TS val 2 ecr 1,nop,wscale 7], length 0 (ttl 64, id 0, DF, len 60)
//! 0.000900s lo tx-error a 1501-byte packet exceeds the device MTU of 1500 bytes
//! ```
//!
//! Each line is `<time> <interface> <event> <text>`, where the event is `tx` (the stack
//! handed the packet to the device; traced *before* the device sees it), `rx` (the device
//! handed the packet up to the stack) or `tx-error` (the device refused the packet just
//! traced as `tx`; the text is the [`TxError`]).
//!
//! The text after the event is [`format_packet`]'s, which documents it in full. In short,
//! it is what `tcpdump -n` prints, followed by the IP header's details in parentheses,
//! which always include the total length of the IP packet (`len`).

use std::fmt::{self, Write as _};
use std::io;
use std::net::IpAddr;

use etherparse::{
    icmpv4, icmpv6, ip_number, tcp_option, Icmpv4Slice, Icmpv6Slice, IpNumber, IpPayloadSlice,
    Ipv4Slice, Ipv6ExtensionSlice, Ipv6Slice, NetSlice, SlicedPacket, TcpSlice, TransportSlice,
};
use loopstack_buf::PacketBuf;

use crate::device::{Device, DeviceCapabilities, LinkStats, TxError};
use crate::time::Instant;

/// Writes a one-line, tcpdump-style description of the IP packet `packet` to `out`.
///
/// No newline is written. Any bytes are accepted, an empty slice included: what cannot be
/// parsed as IP is described as `malformed (<why>)`. The only error returned is one from
/// `out` itself.
///
/// The text follows `tcpdump -n`: numeric addresses and ports, the same protocol summaries,
/// the same TCP flag letters and option names. Every line ends with the IP header's details in parentheses, so that every line
/// shows the total length of the IP packet (`len`), whatever the protocol:
///
/// - IPv4: `(ttl 64, id 4660, DF, len 33)`: time to live, identification, `DF` when the
///   don't-fragment bit is set, total length;
/// - IPv6: `(hlim 64, len 53)`: hop limit, total length (40-byte header included).
///
/// If the buffer holds bytes beyond the length the IP header declares, a `, trailing N`
/// goes before the closing parenthesis: such bytes are usually a bug in whoever built the
/// packet.
///
/// `length` before the parentheses is always the length of the *payload* of the protocol
/// named just before it (tcpdump's convention), `len` inside them is the whole IP packet:
///
/// | Packet | Text |
/// |---|---|
/// | UDP | `IP 127.0.0.1.49152 > 127.0.0.1.7: UDP, length 5 (ttl 64, id 0, DF, len 33)` |
/// | UDP over IPv6 | `IP6 ::1.49152 > ::1.7: UDP, length 5 (hlim 64, len 53)` |
/// | TCP SYN | `IP 127.0.0.1.40000 > 127.0.0.1.80: Flags [S], seq 1000, win 65535, options [mss 65495,sackOK,TS val 1 ecr 0,nop,wscale 7], length 0 (ttl 64, id 0, DF, len 60)` |
/// | TCP data | `IP 127.0.0.1.40000 > 127.0.0.1.80: Flags [P.], seq 1001:1006, ack 2001, win 512, length 5 (ttl 64, id 0, DF, len 45)` |
/// | ICMP | `IP 127.0.0.1 > 127.0.0.1: ICMP echo request, id 1, seq 1, length 64 (ttl 64, id 0, DF, len 84)` |
/// | ICMPv6 | `IP6 ::1 > ::1: ICMP6, echo reply, id 1, seq 1, length 64 (hlim 64, len 104)` |
/// | fragment | `IP 127.0.0.1 > 127.0.0.2: frag id 7 offset 1480 more, proto UDP, length 1480 (ttl 64, id 7, len 1500)` |
/// | other protocol | `IP 127.0.0.1 > 127.0.0.1: ip-proto-132, length 12 (ttl 64, id 0, DF, len 32)` |
/// | unparsable | `malformed (<why>), version 4, len 25` |
///
/// In detail:
///
/// - **TCP**: `Flags [..]` uses tcpdump's letters in tcpdump's order: `F` FIN, `S` SYN,
///   `R` RST, `P` PSH, `.` ACK, `U` URG, `E` ECE, `W` CWR, `e` AE (the former NS bit);
///   `none` when no flag is set. Sequence numbers are absolute (tcpdump's `-S`), because
///   a one-line formatter keeps no per-connection state. Unlike tcpdump, `seq` is always
///   shown; when the segment carries data it is the range `first:next` (`seq 1001:1006` for
///   five bytes), so the next expected sequence number can be read off directly. `ack N`
///   follows when ACK is set, `urg N` after the window when URG is set. Options are named as
///   tcpdump names them: `mss N`, `wscale N`, `sackOK`, `sack N {left:right}..`,
///   `TS val N ecr N`, `nop`, `eol`, `unknown-<kind>`; listing stops at `eol`, as the
///   option list does. An option list that cannot be walked (a length byte that runs past the
///   header, a known option with the wrong length) shows as `options [bad]`.
/// - **ICMP**: `ICMP echo request, id I, seq S` and `echo reply` likewise;
///   `destination unreachable (code C)` with `, mtu M` for code 4 (fragmentation needed);
///   `time exceeded`; anything else `type T code C`. `length` is the whole ICMP message.
/// - **ICMPv6**: `ICMP6, ` then `echo request, id I, seq S`, `echo reply, ..`,
///   `destination unreachable (code C)`, `packet too big, mtu M`, `time exceeded`,
///   `parameter problem`, `router solicitation`, `router advertisement`,
///   `neighbor solicitation`, `neighbor advertisement`, or `type T code C`.
/// - **Fragments** (IPv4 with MF set or a non-zero offset, IPv6 with a fragment header that
///   fragments): the transport header is not decoded, even in the first fragment, because
///   reassembly is the IP layer's business. The text is
///   `frag id <identification> offset <byte offset>[ more], proto <protocol>, length <bytes
///   of fragment data>`, with `more` when the more-fragments bit is set. The protocol is a
///   name (`UDP`, `TCP`, `ICMP`, `ICMP6`, or IANA's keyword) or `ip-proto-N`.
/// - **IGMP**: `IGMP, length N`.
/// - **Any other protocol**: `ip-proto-N, length L`, where `L` is the IP payload length.
/// - **Unparsable** input: `malformed (<etherparse's error>)`, then `, version V` with the
///   first nibble if there is at least one byte, then `, len N` with the buffer length.
///
/// Formatting never panics, whatever the bytes, and never allocates: it writes straight
/// into the [`fmt::Write`] it is given.
///
/// # Example
///
/// ```
/// use etherparse::PacketBuilder;
/// use loopstack_link::format_packet;
///
/// let mut packet = Vec::new();
/// PacketBuilder::ipv4([127, 0, 0, 1], [127, 0, 0, 1], 64)
///     .udp(49152, 7)
///     .write(&mut packet, b"hello")
///     .unwrap();
/// let mut line = String::new();
/// format_packet(&packet, &mut line).unwrap();
/// assert_eq!(line, "IP 127.0.0.1.49152 > 127.0.0.1.7: UDP, length 5 (ttl 64, id 0, DF, len 33)");
/// ```
pub fn format_packet(packet: &[u8], out: &mut impl fmt::Write) -> fmt::Result {
    let sliced = match SlicedPacket::from_ip(packet) {
        Ok(sliced) => sliced,
        Err(err) => {
            write!(out, "malformed ({err})")?;
            if let Some(first) = packet.first() {
                write!(out, ", version {}", first >> 4)?;
            }
            return write!(out, ", len {}", packet.len());
        }
    };
    let ip = match &sliced.net {
        Some(NetSlice::Ipv4(ipv4)) => IpSummary::v4(ipv4),
        Some(NetSlice::Ipv6(ipv6)) => IpSummary::v6(ipv6, packet.len()),
        // `from_ip` only ever produces IPv4 or IPv6; this arm keeps the match total.
        Some(NetSlice::Arp(_)) | None => return write!(out, "not IP, len {}", packet.len()),
    };

    out.write_str(ip.family)?;
    match &sliced.transport {
        Some(TransportSlice::Udp(udp)) => {
            write_endpoints(out, &ip, Some((udp.source_port(), udp.destination_port())))?;
            write!(out, "UDP, length {}", udp.payload().len())?;
        }
        Some(TransportSlice::Tcp(tcp)) => {
            write_endpoints(out, &ip, Some((tcp.source_port(), tcp.destination_port())))?;
            write_tcp(out, tcp)?;
        }
        Some(TransportSlice::Icmpv4(icmp)) => {
            write_endpoints(out, &ip, None)?;
            write_icmpv4(out, icmp)?;
        }
        Some(TransportSlice::Icmpv6(icmp)) => {
            write_endpoints(out, &ip, None)?;
            write_icmpv6(out, icmp)?;
        }
        Some(TransportSlice::Igmp(igmp)) => {
            write_endpoints(out, &ip, None)?;
            write!(out, "IGMP, length {}", igmp.slice().len())?;
        }
        None => {
            write_endpoints(out, &ip, None)?;
            let payload = ip.payload;
            match ip.fragment {
                Some(frag) => {
                    write!(out, "frag id {} offset {}", frag.id, frag.offset)?;
                    if frag.more {
                        out.write_str(" more")?;
                    }
                    out.write_str(", proto ")?;
                    write_protocol(out, payload.ip_number)?;
                    write!(out, ", length {}", payload.payload.len())?;
                }
                None => write!(
                    out,
                    "ip-proto-{}, length {}",
                    payload.ip_number.0,
                    payload.payload.len()
                )?,
            }
        }
    }
    ip.write_details(out, packet.len())
}

/// What the line needs from the IP header, IPv4 or IPv6 alike.
struct IpSummary<'a> {
    /// `IP` or `IP6`, as tcpdump starts its lines.
    family: &'static str,
    source: IpAddr,
    destination: IpAddr,
    payload: &'a IpPayloadSlice<'a>,
    /// Set when the payload is a fragment, so no transport header was decoded.
    fragment: Option<Fragment>,
    details: IpDetails,
    /// Length of the IP packet according to its header.
    len: usize,
}

/// Where a fragment sits in the datagram it is a piece of.
#[derive(Clone, Copy)]
struct Fragment {
    id: u32,
    /// In bytes (the header counts in units of 8 bytes).
    offset: u32,
    more: bool,
}

/// The per-family fields shown in parentheses at the end of the line.
enum IpDetails {
    V4 {
        ttl: u8,
        id: u16,
        dont_fragment: bool,
    },
    V6 {
        hop_limit: u8,
    },
}

impl<'a> IpSummary<'a> {
    fn v4(ip: &'a Ipv4Slice<'a>) -> Self {
        let header = ip.header();
        let fragment = ip.is_payload_fragmented().then(|| Fragment {
            id: u32::from(header.identification()),
            offset: u32::from(header.fragments_offset().value()) * 8,
            more: header.more_fragments(),
        });
        IpSummary {
            family: "IP",
            source: header.source_addr().into(),
            destination: header.destination_addr().into(),
            payload: ip.payload(),
            fragment,
            details: IpDetails::V4 {
                ttl: header.ttl(),
                id: header.identification(),
                dont_fragment: header.dont_fragment(),
            },
            // `Ipv4Slice` has already checked that the buffer holds `total_len` bytes.
            len: usize::from(header.total_len()),
        }
    }

    fn v6(ip: &'a Ipv6Slice<'a>, buffer_len: usize) -> Self {
        let header = ip.header();
        let fragment = if ip.is_payload_fragmented() {
            // The fragment header is somewhere in the extension header chain; the first one
            // that actually fragments is the one describing this packet.
            ip.extensions()
                .clone()
                .into_iter()
                .find_map(|ext| match ext {
                    Ipv6ExtensionSlice::Fragment(frag) if frag.is_fragmenting_payload() => {
                        Some(Fragment {
                            id: frag.identification(),
                            offset: u32::from(frag.fragment_offset().value()) * 8,
                            more: frag.more_fragments(),
                        })
                    }
                    _ => None,
                })
        } else {
            None
        };
        // A payload length of zero means a jumbogram (RFC 2675), whose real length is in a
        // hop-by-hop option; etherparse then takes the whole buffer as the packet, and so
        // do we.
        let len = match header.payload_length() {
            0 => buffer_len,
            n => usize::from(n) + etherparse::Ipv6Header::LEN,
        };
        IpSummary {
            family: "IP6",
            source: header.source_addr().into(),
            destination: header.destination_addr().into(),
            payload: ip.payload(),
            fragment,
            details: IpDetails::V6 {
                hop_limit: header.hop_limit(),
            },
            len,
        }
    }

    /// ` (ttl 64, id 0, DF, len 33)` or ` (hlim 64, len 53)`.
    fn write_details<W: fmt::Write + ?Sized>(&self, out: &mut W, buffer_len: usize) -> fmt::Result {
        match self.details {
            IpDetails::V4 {
                ttl,
                id,
                dont_fragment,
            } => {
                write!(out, " (ttl {ttl}, id {id}, ")?;
                if dont_fragment {
                    out.write_str("DF, ")?;
                }
            }
            IpDetails::V6 { hop_limit } => write!(out, " (hlim {hop_limit}, ")?,
        }
        write!(out, "len {}", self.len)?;
        if buffer_len > self.len {
            write!(out, ", trailing {}", buffer_len - self.len)?;
        }
        out.write_char(')')
    }
}

/// ` 127.0.0.1.49152 > 127.0.0.1.7: ` with ports, ` ::1 > ::1: ` without.
fn write_endpoints<W: fmt::Write + ?Sized>(
    out: &mut W,
    ip: &IpSummary<'_>,
    ports: Option<(u16, u16)>,
) -> fmt::Result {
    match ports {
        Some((source_port, destination_port)) => write!(
            out,
            " {}.{source_port} > {}.{destination_port}: ",
            ip.source, ip.destination
        ),
        None => write!(out, " {} > {}: ", ip.source, ip.destination),
    }
}

/// A protocol's short name, or `ip-proto-N` when IANA has none.
fn write_protocol<W: fmt::Write + ?Sized>(out: &mut W, protocol: IpNumber) -> fmt::Result {
    let name = match protocol {
        ip_number::TCP => Some("TCP"),
        ip_number::UDP => Some("UDP"),
        ip_number::ICMP => Some("ICMP"),
        // IANA's keyword is `IPv6-ICMP`; tcpdump and this module say `ICMP6`.
        ip_number::IPV6_ICMP => Some("ICMP6"),
        other => other.keyword_str(),
    };
    match name {
        Some(name) => out.write_str(name),
        None => write!(out, "ip-proto-{}", protocol.0),
    }
}

/// `Flags [S.], seq 2000, ack 1001, win 65483, options [..], length 0`.
fn write_tcp<W: fmt::Write + ?Sized>(out: &mut W, tcp: &TcpSlice<'_>) -> fmt::Result {
    // tcpdump's table order, which is the order of the bits from least significant up.
    let flags = [
        (tcp.fin(), 'F'),
        (tcp.syn(), 'S'),
        (tcp.rst(), 'R'),
        (tcp.psh(), 'P'),
        (tcp.ack(), '.'),
        (tcp.urg(), 'U'),
        (tcp.ece(), 'E'),
        (tcp.cwr(), 'W'),
        (tcp.ns(), 'e'),
    ];
    out.write_str("Flags [")?;
    let mut any = false;
    for (set, letter) in flags {
        if set {
            out.write_char(letter)?;
            any = true;
        }
    }
    if !any {
        out.write_str("none")?;
    }

    let data_len = tcp.payload().len();
    let seq = tcp.sequence_number();
    write!(out, "], seq {seq}")?;
    if data_len > 0 {
        // A segment is at most 64 KiB, and sequence space wraps around modulo 2^32.
        write!(out, ":{}", seq.wrapping_add(data_len as u32))?;
    }
    if tcp.ack() {
        write!(out, ", ack {}", tcp.acknowledgment_number())?;
    }
    write!(out, ", win {}", tcp.window_size())?;
    if tcp.urg() {
        write!(out, ", urg {}", tcp.urgent_pointer())?;
    }

    let options = TcpOptions {
        rest: tcp.options(),
    };
    if !tcp.options().is_empty() {
        out.write_str(", options [")?;
        // Check the whole list first, so a bad option late in the list doesn't leave half
        // a list printed: without a buffer to build into, what is written is final.
        if options.clone().any(|option| option.is_err()) {
            out.write_str("bad")?;
        } else {
            for (i, option) in options.flatten().enumerate() {
                if i > 0 {
                    out.write_char(',')?;
                }
                write_tcp_option(out, option)?;
            }
        }
        out.write_char(']')?;
    }
    write!(out, ", length {data_len}")
}

/// One TCP option, as tcpdump names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TcpOption<'a> {
    EndOfList,
    Nop,
    Mss(u16),
    WindowScale(u8),
    SackPermitted,
    /// The blocks, 8 bytes each (left edge, right edge), at least one.
    Sack(&'a [u8]),
    Timestamp {
        value: u32,
        echo: u32,
    },
    Unknown(u8),
}

/// An option list that cannot be walked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BadOption;

/// Walks the TCP option bytes (RFC 9293 section 3.1).
///
/// This is written here rather than taken from etherparse's `TcpOptionsIterator` because
/// that one stops with an error at the first option kind it does not know and never shows
/// the end-of-list option, and a tracer should show both.
#[derive(Clone)]
struct TcpOptions<'a> {
    rest: &'a [u8],
}

impl<'a> TcpOptions<'a> {
    fn fail(&mut self) -> Option<Result<TcpOption<'a>, BadOption>> {
        self.rest = &[];
        Some(Err(BadOption))
    }
}

impl<'a> Iterator for TcpOptions<'a> {
    type Item = Result<TcpOption<'a>, BadOption>;

    fn next(&mut self) -> Option<Self::Item> {
        let (&kind, after_kind) = self.rest.split_first()?;
        match kind {
            tcp_option::KIND_END => {
                // Whatever follows end-of-list is padding.
                self.rest = &[];
                return Some(Ok(TcpOption::EndOfList));
            }
            tcp_option::KIND_NOOP => {
                self.rest = after_kind;
                return Some(Ok(TcpOption::Nop));
            }
            _ => {}
        }
        // Every other option is kind, length, data, with the length counting all three.
        let Some(&len) = after_kind.first() else {
            return self.fail();
        };
        let len = usize::from(len);
        if len < 2 || len > self.rest.len() {
            return self.fail();
        }
        let (option, rest) = self.rest.split_at(len);
        self.rest = rest;
        let data = &option[2..];
        let option = match (kind, data) {
            (tcp_option::KIND_MAXIMUM_SEGMENT_SIZE, &[hi, lo]) => {
                TcpOption::Mss(u16::from_be_bytes([hi, lo]))
            }
            (tcp_option::KIND_WINDOW_SCALE, &[shift]) => TcpOption::WindowScale(shift),
            (tcp_option::KIND_SELECTIVE_ACK_PERMITTED, &[]) => TcpOption::SackPermitted,
            (tcp_option::KIND_SELECTIVE_ACK, blocks)
                if !blocks.is_empty() && blocks.len() % 8 == 0 =>
            {
                TcpOption::Sack(blocks)
            }
            (tcp_option::KIND_TIMESTAMP, &[v0, v1, v2, v3, e0, e1, e2, e3]) => {
                TcpOption::Timestamp {
                    value: u32::from_be_bytes([v0, v1, v2, v3]),
                    echo: u32::from_be_bytes([e0, e1, e2, e3]),
                }
            }
            // A known option with a length its RFC does not allow.
            (
                tcp_option::KIND_MAXIMUM_SEGMENT_SIZE
                | tcp_option::KIND_WINDOW_SCALE
                | tcp_option::KIND_SELECTIVE_ACK_PERMITTED
                | tcp_option::KIND_SELECTIVE_ACK
                | tcp_option::KIND_TIMESTAMP,
                _,
            ) => return self.fail(),
            (other, _) => TcpOption::Unknown(other),
        };
        Some(Ok(option))
    }
}

fn write_tcp_option<W: fmt::Write + ?Sized>(out: &mut W, option: TcpOption<'_>) -> fmt::Result {
    match option {
        TcpOption::EndOfList => out.write_str("eol"),
        TcpOption::Nop => out.write_str("nop"),
        TcpOption::Mss(mss) => write!(out, "mss {mss}"),
        TcpOption::WindowScale(shift) => write!(out, "wscale {shift}"),
        TcpOption::SackPermitted => out.write_str("sackOK"),
        TcpOption::Sack(blocks) => {
            write!(out, "sack {} ", blocks.len() / 8)?;
            for block in blocks.chunks_exact(8) {
                if let &[l0, l1, l2, l3, r0, r1, r2, r3] = block {
                    write!(
                        out,
                        "{{{}:{}}}",
                        u32::from_be_bytes([l0, l1, l2, l3]),
                        u32::from_be_bytes([r0, r1, r2, r3])
                    )?;
                }
            }
            Ok(())
        }
        TcpOption::Timestamp { value, echo } => write!(out, "TS val {value} ecr {echo}"),
        TcpOption::Unknown(kind) => write!(out, "unknown-{kind}"),
    }
}

/// Identifier and sequence number of an echo request or reply: the first and second
/// halves of the ICMP header's "rest of header" word.
fn echo_id_seq(rest: [u8; 4]) -> (u16, u16) {
    (
        u16::from_be_bytes([rest[0], rest[1]]),
        u16::from_be_bytes([rest[2], rest[3]]),
    )
}

/// `ICMP echo request, id 1, seq 1, length 64`.
fn write_icmpv4<W: fmt::Write + ?Sized>(out: &mut W, icmp: &Icmpv4Slice<'_>) -> fmt::Result {
    let rest = icmp.bytes5to8();
    let code = icmp.code_u8();
    match icmp.type_u8() {
        icmpv4::TYPE_ECHO_REQUEST => {
            let (id, seq) = echo_id_seq(rest);
            write!(out, "ICMP echo request, id {id}, seq {seq}")?;
        }
        icmpv4::TYPE_ECHO_REPLY => {
            let (id, seq) = echo_id_seq(rest);
            write!(out, "ICMP echo reply, id {id}, seq {seq}")?;
        }
        icmpv4::TYPE_DEST_UNREACH => {
            write!(out, "ICMP destination unreachable (code {code})")?;
            // Code 4, "fragmentation needed and DF set", carries the next hop's MTU in the
            // low half of the word (RFC 1191): path MTU discovery runs on it.
            if code == 4 {
                write!(out, ", mtu {}", u16::from_be_bytes([rest[2], rest[3]]))?;
            }
        }
        icmpv4::TYPE_TIME_EXCEEDED => out.write_str("ICMP time exceeded")?,
        other => write!(out, "ICMP type {other} code {code}")?,
    }
    write!(out, ", length {}", icmp.slice().len())
}

/// `ICMP6, echo request, id 1, seq 1, length 64`.
fn write_icmpv6<W: fmt::Write + ?Sized>(out: &mut W, icmp: &Icmpv6Slice<'_>) -> fmt::Result {
    let rest = icmp.bytes5to8();
    let code = icmp.code_u8();
    out.write_str("ICMP6, ")?;
    match icmp.type_u8() {
        icmpv6::TYPE_ECHO_REQUEST => {
            let (id, seq) = echo_id_seq(rest);
            write!(out, "echo request, id {id}, seq {seq}")?;
        }
        icmpv6::TYPE_ECHO_REPLY => {
            let (id, seq) = echo_id_seq(rest);
            write!(out, "echo reply, id {id}, seq {seq}")?;
        }
        icmpv6::TYPE_DST_UNREACH => write!(out, "destination unreachable (code {code})")?,
        icmpv6::TYPE_PACKET_TOO_BIG => {
            write!(out, "packet too big, mtu {}", u32::from_be_bytes(rest))?;
        }
        icmpv6::TYPE_TIME_EXCEEDED => out.write_str("time exceeded")?,
        icmpv6::TYPE_PARAMETER_PROBLEM => out.write_str("parameter problem")?,
        icmpv6::TYPE_ROUTER_SOLICITATION => out.write_str("router solicitation")?,
        icmpv6::TYPE_ROUTER_ADVERTISEMENT => out.write_str("router advertisement")?,
        icmpv6::TYPE_NEIGHBOR_SOLICITATION => out.write_str("neighbor solicitation")?,
        icmpv6::TYPE_NEIGHBOR_ADVERTISEMENT => out.write_str("neighbor advertisement")?,
        other => write!(out, "type {other} code {code}")?,
    }
    write!(out, ", length {}", icmp.slice().len())
}

/// Middleware that writes one line per packet to a sink, like `tcpdump -n -i lo`.
///
/// Transmitted packets are traced as `tx` before the inner device gets them (if it refuses
/// one, a `tx-error` line follows); received packets are traced as `rx` as they come up.
/// Everything else is the inner device's, unchanged. Each line is
/// `<time> <interface> <event> <text>`, `<text>` being [`format_packet`]'s for `tx` and `rx`
/// and the [`TxError`] for `tx-error`:
///
/// ```text
/// 0.000100s lo tx IP 127.0.0.1.49152 > 127.0.0.1.7: UDP, length 5 (ttl 64, id 0, DF, len 33)
/// 0.000250s lo rx IP 127.0.0.1.49152 > 127.0.0.1.7: UDP, length 5 (ttl 64, id 0, DF, len 33)
/// 0.003000s lo tx-error a 1501-byte packet exceeds the device MTU of 1500 bytes
/// ```
///
/// Tracing never gets in the way of the packets: if the sink fails, the line is lost, the
/// failure is counted in [`write_errors`](Tracer::write_errors), and the packet goes on as
/// if nothing had happened. The tracer does not flush the sink; wrap a file in a
/// `BufWriter` and flush it through [`sink_mut`](Tracer::sink_mut) or after
/// [`into_inner`](Tracer::into_inner).
///
/// Lines are built in a buffer the tracer keeps, so after the first few packets tracing
/// allocates nothing.
///
/// ```
/// use loopstack_buf::{PacketPool, PoolConfig};
/// use loopstack_link::{Device, Instant, Loopback, Tracer};
///
/// let pool = PacketPool::new(PoolConfig::default()).unwrap();
/// let mut lo = Tracer::new(Loopback::new(), Vec::new());
/// let garbage = pool.alloc_from_slice(&[0xff; 4]).unwrap();
/// lo.transmit(Instant::from_micros(100), garbage).unwrap();
/// let trace = String::from_utf8(lo.sink().clone()).unwrap();
/// assert!(trace.starts_with("0.000100s lo tx malformed ("));
/// ```
#[derive(Debug)]
pub struct Tracer<D, W> {
    inner: D,
    sink: W,
    /// The line being written, reused from packet to packet.
    line: String,
    lines_written: u64,
    write_errors: u64,
}

impl<D, W> Tracer<D, W> {
    /// Traces every packet crossing `inner` to `sink`.
    pub fn new(inner: D, sink: W) -> Self {
        Tracer {
            inner,
            sink,
            // Enough for a TCP segment with a full option list, so the buffer rarely grows.
            line: String::with_capacity(256),
            lines_written: 0,
            write_errors: 0,
        }
    }

    /// The wrapped device.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// The wrapped device, mutably. Packets sent or received through it directly are not
    /// traced.
    pub fn inner_mut(&mut self) -> &mut D {
        &mut self.inner
    }

    /// Unwraps the tracer into the device and the sink.
    pub fn into_inner(self) -> (D, W) {
        (self.inner, self.sink)
    }

    /// Where the lines go.
    pub fn sink(&self) -> &W {
        &self.sink
    }

    /// Where the lines go, mutably: to flush it, say.
    pub fn sink_mut(&mut self) -> &mut W {
        &mut self.sink
    }

    /// Lines written to the sink in full.
    pub fn lines_written(&self) -> u64 {
        self.lines_written
    }

    /// Lines lost because the sink returned an error.
    pub fn write_errors(&self) -> u64 {
        self.write_errors
    }
}

impl<D: Device, W: io::Write> Tracer<D, W> {
    /// Writes `<now> <ifname> <event> <body>\n` to the sink, counting the outcome.
    fn trace(&mut self, now: Instant, event: &str, body: impl FnOnce(&mut String) -> fmt::Result) {
        self.line.clear();
        // Formatting into a `String` cannot fail, and `body` only fails when its writer
        // does, so these results carry no information.
        let _ = write!(self.line, "{now} {} {event} ", self.inner.name());
        let _ = body(&mut self.line);
        self.line.push('\n');
        match self.sink.write_all(self.line.as_bytes()) {
            Ok(()) => self.lines_written += 1,
            Err(_) => self.write_errors += 1,
        }
    }
}

impl<D: Device, W: io::Write> Device for Tracer<D, W> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = self.inner.capabilities();
        // The trace line decodes the packet's bytes, so it wants them in one piece.
        caps.scatter_gather = false;
        caps
    }

    fn transmit(&mut self, now: Instant, packet: PacketBuf) -> Result<(), TxError> {
        // Trace first: the inner device takes the packet and, if it refuses it, drops it, so
        // this is the last moment its bytes can be read. The `tx-error` line then says what
        // became of the packet traced just before.
        self.trace(now, "tx", |line| format_packet(&packet, line));
        let result = self.inner.transmit(now, packet);
        if let Err(err) = &result {
            self.trace(now, "tx-error", |line| write!(line, "{err}"));
        }
        result
    }

    fn receive(&mut self, now: Instant) -> Option<PacketBuf> {
        let packet = self.inner.receive(now)?;
        self.trace(now, "rx", |line| format_packet(&packet, line));
        Some(packet)
    }

    fn stats(&self) -> LinkStats {
        self.inner.stats()
    }

    fn poll_at(&self) -> Option<Instant> {
        self.inner.poll_at()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Loopback, LoopbackConfig, Rng};
    use etherparse::{
        IpFragOffset, Ipv4Header, Ipv6FragmentHeader, Ipv6Header, PacketBuilder, TcpOptionElement,
    };
    use loopstack_buf::{PacketPool, PoolConfig};

    const LOCAL: [u8; 4] = [127, 0, 0, 1];
    const LOCAL6: [u8; 16] = {
        let mut a = [0; 16];
        a[15] = 1;
        a
    };

    fn line(packet: &[u8]) -> String {
        let mut s = String::new();
        format_packet(packet, &mut s).unwrap();
        s
    }

    fn udp4(payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ipv4(LOCAL, LOCAL, 64)
            .udp(49152, 7)
            .write(&mut v, payload)
            .unwrap();
        v
    }

    fn syn_options(ts_val: u32, ts_ecr: u32) -> [TcpOptionElement; 5] {
        [
            TcpOptionElement::MaximumSegmentSize(65495),
            TcpOptionElement::SelectiveAcknowledgementPermitted,
            TcpOptionElement::Timestamp(ts_val, ts_ecr),
            TcpOptionElement::Noop,
            TcpOptionElement::WindowScale(7),
        ]
    }

    fn syn() -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ipv4(LOCAL, LOCAL, 64)
            .tcp(40000, 80, 1000, 65535)
            .syn()
            .options(&syn_options(1, 0))
            .unwrap()
            .write(&mut v, &[])
            .unwrap();
        v
    }

    fn echo4(reply: bool) -> Vec<u8> {
        let mut v = Vec::new();
        let ip = PacketBuilder::ipv4(LOCAL, LOCAL, 64);
        let icmp = if reply {
            ip.icmpv4_echo_reply(1, 1)
        } else {
            ip.icmpv4_echo_request(1, 1)
        };
        icmp.write(&mut v, &[0xa5; 56]).unwrap();
        v
    }

    fn echo6(reply: bool) -> Vec<u8> {
        let mut v = Vec::new();
        let ip = PacketBuilder::ipv6(LOCAL6, LOCAL6, 64);
        let icmp = if reply {
            ip.icmpv6_echo_reply(1, 1)
        } else {
            ip.icmpv6_echo_request(1, 1)
        };
        icmp.write(&mut v, &[0xa5; 56]).unwrap();
        v
    }

    /// An IPv4 fragment carrying `data_len` bytes of a UDP datagram.
    fn fragment4(offset_units: u16, more: bool, data_len: u16) -> Vec<u8> {
        let mut header =
            Ipv4Header::new(data_len, 64, ip_number::UDP, LOCAL, [127, 0, 0, 2]).unwrap();
        header.identification = 7;
        header.dont_fragment = false;
        header.more_fragments = more;
        header.fragment_offset = IpFragOffset::try_new(offset_units).unwrap();
        header.header_checksum = header.calc_header_checksum();
        let mut v = Vec::new();
        header.write(&mut v).unwrap();
        v.resize(v.len() + usize::from(data_len), 0x5a);
        v
    }

    #[test]
    fn udp_over_ipv4() {
        assert_eq!(
            line(&udp4(b"hello")),
            "IP 127.0.0.1.49152 > 127.0.0.1.7: UDP, length 5 (ttl 64, id 0, DF, len 33)"
        );
    }

    #[test]
    fn udp_over_ipv6() {
        let mut v = Vec::new();
        PacketBuilder::ipv6(LOCAL6, LOCAL6, 64)
            .udp(49152, 7)
            .write(&mut v, b"hello")
            .unwrap();
        assert_eq!(
            line(&v),
            "IP6 ::1.49152 > ::1.7: UDP, length 5 (hlim 64, len 53)"
        );
    }

    #[test]
    fn ipv4_details_show_identification_and_no_df() {
        let mut header = Ipv4Header::new(8, 1, ip_number::UDP, LOCAL, LOCAL).unwrap();
        header.identification = 0x1234;
        header.dont_fragment = false;
        let mut v = Vec::new();
        header.write(&mut v).unwrap();
        // A bare UDP header: ports 53 -> 5353, length 8, no checksum.
        v.extend_from_slice(&[0, 53, 0x14, 0xe9, 0, 8, 0, 0]);
        assert_eq!(
            line(&v),
            "IP 127.0.0.1.53 > 127.0.0.1.5353: UDP, length 0 (ttl 1, id 4660, len 28)"
        );
    }

    #[test]
    fn tcp_syn_with_linux_options() {
        assert_eq!(
            line(&syn()),
            "IP 127.0.0.1.40000 > 127.0.0.1.80: Flags [S], seq 1000, win 65535, \
             options [mss 65495,sackOK,TS val 1 ecr 0,nop,wscale 7], length 0 \
             (ttl 64, id 0, DF, len 60)"
        );
    }

    #[test]
    fn tcp_syn_ack_shows_the_ack() {
        let mut v = Vec::new();
        PacketBuilder::ipv4(LOCAL, LOCAL, 64)
            .tcp(80, 40000, 2000, 65483)
            .syn()
            .ack(1001)
            .options(&syn_options(2, 1))
            .unwrap()
            .write(&mut v, &[])
            .unwrap();
        assert_eq!(
            line(&v),
            "IP 127.0.0.1.80 > 127.0.0.1.40000: Flags [S.], seq 2000, ack 1001, win 65483, \
             options [mss 65495,sackOK,TS val 2 ecr 1,nop,wscale 7], length 0 \
             (ttl 64, id 0, DF, len 60)"
        );
    }

    #[test]
    fn tcp_data_shows_the_sequence_range() {
        let mut v = Vec::new();
        PacketBuilder::ipv4(LOCAL, LOCAL, 64)
            .tcp(40000, 80, 1001, 512)
            .ack(2001)
            .psh()
            .write(&mut v, b"hello")
            .unwrap();
        assert_eq!(
            line(&v),
            "IP 127.0.0.1.40000 > 127.0.0.1.80: Flags [P.], seq 1001:1006, ack 2001, win 512, \
             length 5 (ttl 64, id 0, DF, len 45)"
        );
    }

    #[test]
    fn tcp_sequence_range_wraps() {
        let mut v = Vec::new();
        PacketBuilder::ipv6(LOCAL6, LOCAL6, 64)
            .tcp(40000, 80, u32::MAX - 1, 512)
            .ack(1)
            .write(&mut v, b"abcd")
            .unwrap();
        assert_eq!(
            line(&v),
            "IP6 ::1.40000 > ::1.80: Flags [.], seq 4294967294:2, ack 1, win 512, length 4 \
             (hlim 64, len 64)"
        );
    }

    #[test]
    fn tcp_flags_in_tcpdump_order() {
        let mut v = Vec::new();
        PacketBuilder::ipv4(LOCAL, LOCAL, 64)
            .tcp(1, 2, 3, 4)
            .fin()
            .syn()
            .rst()
            .psh()
            .ack(5)
            .urg(6)
            .ece()
            .cwr()
            .ns()
            .write(&mut v, &[])
            .unwrap();
        assert_eq!(
            line(&v),
            "IP 127.0.0.1.1 > 127.0.0.1.2: Flags [FSRP.UEWe], seq 3, ack 5, win 4, urg 6, \
             length 0 (ttl 64, id 0, DF, len 40)"
        );

        v.clear();
        PacketBuilder::ipv4(LOCAL, LOCAL, 64)
            .tcp(1, 2, 3, 4)
            .write(&mut v, &[])
            .unwrap();
        assert!(line(&v).contains("Flags [none], seq 3, win 4, length 0"));
    }

    #[test]
    fn tcp_sack_blocks() {
        let mut v = Vec::new();
        PacketBuilder::ipv4(LOCAL, LOCAL, 64)
            .tcp(80, 40000, 2001, 512)
            .ack(1001)
            .options(&[
                TcpOptionElement::Noop,
                TcpOptionElement::Noop,
                TcpOptionElement::SelectiveAcknowledgement(
                    (3001, 4001),
                    [Some((5001, 6001)), None, None],
                ),
            ])
            .unwrap()
            .write(&mut v, &[])
            .unwrap();
        assert!(
            line(&v).contains("options [nop,nop,sack 2 {3001:4001}{5001:6001}], length 0"),
            "{}",
            line(&v)
        );
    }

    #[test]
    fn tcp_unknown_option_and_end_of_list() {
        let mut v = Vec::new();
        // nop; kind 30 (multipath TCP) of length 4; end of list; padding.
        PacketBuilder::ipv4(LOCAL, LOCAL, 64)
            .tcp(1, 2, 3, 4)
            .options_raw(&[1, 30, 4, 0xab, 0xcd, 0, 0, 0])
            .unwrap()
            .write(&mut v, &[])
            .unwrap();
        assert!(
            line(&v).contains("win 4, options [nop,unknown-30,eol], length 0"),
            "{}",
            line(&v)
        );
    }

    #[test]
    fn tcp_bad_options() {
        for raw in [
            // MSS with a length of 3.
            &[2, 3, 0, 1][..],
            // A length byte that runs past the header.
            &[1, 1, 77, 9],
            // A length below 2.
            &[1, 77, 1, 0],
            // A timestamp cut short.
            &[8, 6, 0, 0, 0, 0, 0, 0],
            // An empty SACK.
            &[5, 2, 0, 0],
        ] {
            let mut v = Vec::new();
            PacketBuilder::ipv4(LOCAL, LOCAL, 64)
                .tcp(1, 2, 3, 4)
                .options_raw(raw)
                .unwrap()
                .write(&mut v, b"x")
                .unwrap();
            assert!(
                line(&v).contains("win 4, options [bad], length 1"),
                "{raw:?}: {}",
                line(&v)
            );
        }
    }

    #[test]
    fn icmp_echo_over_ipv4() {
        assert_eq!(
            line(&echo4(false)),
            "IP 127.0.0.1 > 127.0.0.1: ICMP echo request, id 1, seq 1, length 64 \
             (ttl 64, id 0, DF, len 84)"
        );
        assert_eq!(
            line(&echo4(true)),
            "IP 127.0.0.1 > 127.0.0.1: ICMP echo reply, id 1, seq 1, length 64 \
             (ttl 64, id 0, DF, len 84)"
        );
    }

    #[test]
    fn icmp_echo_over_ipv6() {
        assert_eq!(
            line(&echo6(false)),
            "IP6 ::1 > ::1: ICMP6, echo request, id 1, seq 1, length 64 (hlim 64, len 104)"
        );
        assert_eq!(
            line(&echo6(true)),
            "IP6 ::1 > ::1: ICMP6, echo reply, id 1, seq 1, length 64 (hlim 64, len 104)"
        );
    }

    #[test]
    fn icmp_errors() {
        // Port unreachable, quoting 28 bytes of the offending datagram.
        let mut v = Vec::new();
        PacketBuilder::ipv4(LOCAL, LOCAL, 64)
            .icmpv4_raw(3, 3, [0; 4])
            .write(&mut v, &udp4(b"")[..28])
            .unwrap();
        assert!(line(&v).ends_with(
            ": ICMP destination unreachable (code 3), length 36 (ttl 64, id 0, DF, len 56)"
        ));
        // Fragmentation needed, next-hop MTU 1500.
        v.clear();
        PacketBuilder::ipv4(LOCAL, LOCAL, 64)
            .icmpv4_raw(3, 4, [0, 0, 0x05, 0xdc])
            .write(&mut v, &udp4(b"")[..28])
            .unwrap();
        assert!(line(&v).contains(": ICMP destination unreachable (code 4), mtu 1500, length 36"));
        v.clear();
        PacketBuilder::ipv4(LOCAL, LOCAL, 64)
            .icmpv4_raw(11, 0, [0; 4])
            .write(&mut v, &udp4(b"")[..28])
            .unwrap();
        assert!(line(&v).contains(": ICMP time exceeded, length 36"));
        v.clear();
        PacketBuilder::ipv4(LOCAL, LOCAL, 64)
            .icmpv4_raw(42, 7, [0; 4])
            .write(&mut v, &[])
            .unwrap();
        assert!(line(&v).contains(": ICMP type 42 code 7, length 8"));

        v.clear();
        PacketBuilder::ipv6(LOCAL6, LOCAL6, 64)
            .icmpv6_raw(2, 0, [0, 0, 0x05, 0x00])
            .write(&mut v, &[])
            .unwrap();
        assert_eq!(
            line(&v),
            "IP6 ::1 > ::1: ICMP6, packet too big, mtu 1280, length 8 (hlim 64, len 48)"
        );
        for (icmp_type, code, text) in [
            (1, 4, "destination unreachable (code 4)"),
            (3, 0, "time exceeded"),
            (4, 0, "parameter problem"),
            (133, 0, "router solicitation"),
            (134, 0, "router advertisement"),
            (135, 0, "neighbor solicitation"),
            (136, 0, "neighbor advertisement"),
            (200, 9, "type 200 code 9"),
        ] {
            v.clear();
            PacketBuilder::ipv6(LOCAL6, LOCAL6, 255)
                .icmpv6_raw(icmp_type, code, [0; 4])
                .write(&mut v, &[])
                .unwrap();
            assert_eq!(
                line(&v),
                format!("IP6 ::1 > ::1: ICMP6, {text}, length 8 (hlim 255, len 48)")
            );
        }
    }

    #[test]
    fn ipv4_fragments_are_not_decoded() {
        assert_eq!(
            line(&fragment4(185, true, 1480)),
            "IP 127.0.0.1 > 127.0.0.2: frag id 7 offset 1480 more, proto UDP, length 1480 \
             (ttl 64, id 7, len 1500)"
        );
        // The first fragment holds the UDP header, but it is still just a fragment.
        assert_eq!(
            line(&fragment4(0, true, 1480)),
            "IP 127.0.0.1 > 127.0.0.2: frag id 7 offset 0 more, proto UDP, length 1480 \
             (ttl 64, id 7, len 1500)"
        );
        // The last fragment: no "more".
        assert_eq!(
            line(&fragment4(370, false, 520)),
            "IP 127.0.0.1 > 127.0.0.2: frag id 7 offset 2960, proto UDP, length 520 \
             (ttl 64, id 7, len 540)"
        );
    }

    #[test]
    fn ipv6_fragments_are_not_decoded() {
        let data_len = 1232u16;
        let header = Ipv6Header {
            traffic_class: 0,
            flow_label: Default::default(),
            payload_length: data_len + 8,
            next_header: ip_number::IPV6_FRAG,
            hop_limit: 64,
            source: LOCAL6,
            destination: LOCAL6,
        };
        let frag = Ipv6FragmentHeader::new(
            ip_number::UDP,
            IpFragOffset::try_new(154).unwrap(),
            true,
            0x1234_5678,
        );
        let mut v = Vec::new();
        header.write(&mut v).unwrap();
        frag.write(&mut v).unwrap();
        v.resize(v.len() + usize::from(data_len), 0);
        assert_eq!(
            line(&v),
            "IP6 ::1 > ::1: frag id 305419896 offset 1232 more, proto UDP, length 1232 \
             (hlim 64, len 1280)"
        );
    }

    #[test]
    fn other_protocols_show_their_number() {
        let mut header = Ipv4Header::new(12, 64, IpNumber(132), LOCAL, LOCAL).unwrap();
        header.header_checksum = header.calc_header_checksum();
        let mut v = Vec::new();
        header.write(&mut v).unwrap();
        v.extend_from_slice(&[0; 12]);
        assert_eq!(
            line(&v),
            "IP 127.0.0.1 > 127.0.0.1: ip-proto-132, length 12 (ttl 64, id 0, DF, len 32)"
        );
    }

    #[test]
    fn trailing_bytes_are_pointed_out() {
        let mut v = udp4(b"hello");
        v.extend_from_slice(&[0; 7]);
        assert!(line(&v).ends_with("UDP, length 5 (ttl 64, id 0, DF, len 33, trailing 7)"));
    }

    #[test]
    fn truncated_packet_is_malformed() {
        let full = udp4(b"hello");
        let cut = &full[..25];
        let err = SlicedPacket::from_ip(cut).unwrap_err();
        let text = line(cut);
        assert_eq!(text, format!("malformed ({err}), version 4, len 25"));
        assert!(
            text.starts_with("malformed (") && text.contains("33"),
            "{text}"
        );
    }

    #[test]
    fn garbage_is_malformed() {
        let garbage = [0xde, 0xad, 0xbe, 0xef, 0x01, 0x02];
        let err = SlicedPacket::from_ip(&garbage).unwrap_err();
        assert_eq!(
            line(&garbage),
            format!("malformed ({err}), version 13, len 6")
        );
    }

    #[test]
    fn empty_slice_is_malformed() {
        let err = SlicedPacket::from_ip(&[]).unwrap_err();
        let text = line(&[]);
        assert_eq!(text, format!("malformed ({err}), len 0"));
        assert!(text.starts_with("malformed ("));
    }

    #[test]
    fn no_input_panics() {
        let packets = [
            udp4(b"hello"),
            syn(),
            echo4(false),
            echo6(true),
            fragment4(185, true, 64),
        ];
        let mut rng = Rng::new(7);
        let mut text = String::new();
        for packet in &packets {
            // Every prefix of a valid packet...
            for len in 0..=packet.len() {
                text.clear();
                format_packet(&packet[..len], &mut text).unwrap();
                assert!(!text.is_empty() && !text.contains('\n'));
            }
            // ...and valid packets with random bytes scrambled.
            for _ in 0..2000 {
                let mut damaged = packet.clone();
                for _ in 0..=rng.below(4) {
                    let at = rng.below(damaged.len() as u64) as usize;
                    damaged[at] = rng.next_u64() as u8;
                }
                text.clear();
                format_packet(&damaged, &mut text).unwrap();
                assert!(!text.is_empty() && !text.contains('\n'));
            }
        }
        // Pure noise, with an IP version nibble half of the time.
        for _ in 0..2000 {
            let len = rng.below(80) as usize;
            let mut noise: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            if let Some(first) = noise.first_mut() {
                if rng.chance(0.5) {
                    *first = (*first & 0x0f) | if rng.chance(0.5) { 0x40 } else { 0x60 };
                }
            }
            text.clear();
            format_packet(&noise, &mut text).unwrap();
            assert!(!text.is_empty());
        }
    }

    /// A fixed-size writer: formatting needs no heap of its own.
    struct Fixed {
        buf: [u8; 512],
        len: usize,
    }

    impl fmt::Write for Fixed {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let end = self.len + s.len();
            let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
            dst.copy_from_slice(s.as_bytes());
            self.len = end;
            Ok(())
        }
    }

    #[test]
    fn writes_into_any_fmt_write_and_passes_its_errors_on() {
        let mut fixed = Fixed {
            buf: [0; 512],
            len: 0,
        };
        format_packet(&syn(), &mut fixed).unwrap();
        assert_eq!(
            std::str::from_utf8(&fixed.buf[..fixed.len]).unwrap(),
            line(&syn())
        );

        let mut tiny = Fixed {
            buf: [0; 512],
            len: 500,
        };
        assert_eq!(format_packet(&syn(), &mut tiny), Err(fmt::Error));
    }

    fn pool() -> PacketPool {
        PacketPool::new(PoolConfig::default()).unwrap()
    }

    fn trace_text<D>(tracer: &Tracer<D, Vec<u8>>) -> &str {
        std::str::from_utf8(tracer.sink()).unwrap()
    }

    #[test]
    fn tracer_writes_tx_and_rx_lines_and_passes_packets_through() {
        let pool = pool();
        let mut lo = Tracer::new(Loopback::new(), Vec::new());
        let bytes = udp4(b"hello");
        lo.transmit(
            Instant::from_micros(100),
            pool.alloc_from_slice(&bytes).unwrap(),
        )
        .unwrap();
        assert_eq!(
            trace_text(&lo),
            "0.000100s lo tx IP 127.0.0.1.49152 > 127.0.0.1.7: UDP, length 5 \
             (ttl 64, id 0, DF, len 33)\n"
        );
        let received = lo.receive(Instant::from_micros(250)).unwrap();
        assert_eq!(received.as_slice(), &bytes[..]);
        assert!(lo.receive(Instant::from_micros(300)).is_none());
        assert_eq!(
            trace_text(&lo),
            "0.000100s lo tx IP 127.0.0.1.49152 > 127.0.0.1.7: UDP, length 5 \
             (ttl 64, id 0, DF, len 33)\n\
             0.000250s lo rx IP 127.0.0.1.49152 > 127.0.0.1.7: UDP, length 5 \
             (ttl 64, id 0, DF, len 33)\n"
        );
        assert_eq!((lo.lines_written(), lo.write_errors()), (2, 0));
    }

    #[test]
    fn tracer_delegates_everything_else() {
        let pool = pool();
        let inner = Loopback::with_config(LoopbackConfig {
            name: "lo7".to_owned(),
            ..LoopbackConfig::default()
        })
        .unwrap();
        let mut dev = Tracer::new(inner, Vec::new());
        assert_eq!(dev.name(), "lo7");
        // Everything but scatter-gather: a trace line reads the whole packet.
        let mut caps = dev.inner().capabilities();
        assert!(caps.scatter_gather);
        caps.scatter_gather = false;
        assert_eq!(dev.capabilities(), caps);
        assert_eq!(dev.poll_at(), None);
        dev.transmit(Instant::ZERO, pool.alloc_from_slice(&syn()).unwrap())
            .unwrap();
        assert_eq!(dev.poll_at(), Some(Instant::ZERO));
        assert_eq!(dev.stats(), dev.inner().stats());
        assert_eq!(dev.stats().tx_packets, 1);
        assert!(trace_text(&dev).starts_with("0.000000s lo7 tx IP 127.0.0.1.40000 > "));

        // Packets sent around the tracer are not traced.
        let echo = pool.alloc_from_slice(&echo4(false)).unwrap();
        dev.inner_mut().transmit(Instant::ZERO, echo).unwrap();
        assert_eq!(dev.lines_written(), 1);
        let (inner, sink) = dev.into_inner();
        assert_eq!(inner.queued(), 2);
        assert_eq!(sink.iter().filter(|&&b| b == b'\n').count(), 1);
    }

    #[test]
    fn tracer_reports_refused_packets() {
        let pool = pool();
        let inner = Loopback::with_config(LoopbackConfig {
            mtu: 1500,
            ..LoopbackConfig::default()
        })
        .unwrap();
        let mut lo = Tracer::new(inner, Vec::new());
        let big = udp4(&[0; 1473]);
        assert_eq!(big.len(), 1501);
        let now = Instant::from_millis(3);
        assert_eq!(
            lo.transmit(now, pool.alloc_from_slice(&big).unwrap()),
            Err(TxError::TooLarge {
                len: 1501,
                mtu: 1500
            })
        );
        assert_eq!(
            trace_text(&lo),
            "0.003000s lo tx IP 127.0.0.1.49152 > 127.0.0.1.7: UDP, length 1473 \
             (ttl 64, id 0, DF, len 1501)\n\
             0.003000s lo tx-error a 1501-byte packet exceeds the device MTU of 1500 bytes\n"
        );
        assert_eq!(lo.lines_written(), 2);
        assert_eq!(lo.stats().tx_errors, 1);
        assert!(lo.receive(now).is_none());
        assert_eq!(pool.stats().in_use(), 0);
    }

    /// A sink that refuses every write.
    struct BrokenSink {
        attempts: u32,
    }

    impl io::Write for BrokenSink {
        fn write(&mut self, _buf: &[u8]) -> io::Result<usize> {
            self.attempts += 1;
            Err(io::Error::other("disk on fire"))
        }

        fn flush(&mut self) -> io::Result<()> {
            Err(io::Error::other("disk on fire"))
        }
    }

    #[test]
    fn a_failing_sink_loses_lines_not_packets() {
        let pool = pool();
        let mut lo = Tracer::new(Loopback::new(), BrokenSink { attempts: 0 });
        for i in 0..3u8 {
            lo.transmit(Instant::ZERO, pool.alloc_from_slice(&udp4(&[i])).unwrap())
                .unwrap();
        }
        for i in 0..3u8 {
            let packet = lo.receive(Instant::ZERO).unwrap();
            assert_eq!(packet.as_slice(), &udp4(&[i])[..]);
        }
        assert!(lo.receive(Instant::ZERO).is_none());
        assert_eq!((lo.lines_written(), lo.write_errors()), (0, 6));
        assert_eq!(lo.sink().attempts, 6);
        assert_eq!(lo.stats().rx_packets, 3);
    }
}
