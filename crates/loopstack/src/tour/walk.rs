//! Sections 3 and 4 of the tour: packets built and taken apart by hand.
//!
//! Each packet is built the way the layers build one (payload copied once into a pooled
//! buffer, headers prepended into the headroom), sent through a second `lo` on a
//! simulated clock, and stripped again on the way up, checking every checksum. Kept
//! apart from the rest of the tour because it never touches the stack and is
//! deterministic: the same seed gives the same narration and trace.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::IpAddr;
use std::time::Duration;

use etherparse::checksum::Sum16BitWords;
use etherparse::{
    IcmpEchoHeader, Icmpv4Header, Icmpv4Type, Icmpv6Header, Icmpv6Type, IpNumber, Ipv4Header,
    Ipv6FlowLabel, Ipv6Header, NetSlice, SlicedPacket, TcpHeader, TcpOptionElement, TransportSlice,
    UdpHeader,
};
use loopstack_buf::{PacketBuf, PacketPool};
use loopstack_link::{
    Device, FaultInjector, FaultStats, Instant, Loopback, PcapMode, PcapWriter, Tracer,
};

use super::narration::TraceLog;
use super::{TourError, TourOptions, WalkReport};

// ---------------------------------------------------------------------- the walk by hand

/// One packet the sender builds: addresses, ports, and what it carries.
struct Spec {
    what: &'static str,
    src: IpAddr,
    dst: IpAddr,
    kind: Kind,
    payload_len: usize,
}

enum Kind {
    IcmpEcho { id: u16, seq: u16 },
    Udp { sport: u16, dport: u16 },
    TcpSyn { sport: u16, dport: u16, seq: u32 },
}

fn v4(a: [u8; 4]) -> IpAddr {
    IpAddr::from(a)
}

fn v6_loopback() -> IpAddr {
    IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
}

/// The packets of the tour: what `ping`, a UDP client, and a TCP client would send first.
fn specs() -> Vec<Spec> {
    vec![
        Spec {
            what: "ping 127.0.0.1 (ICMP echo request)",
            src: v4([127, 0, 0, 1]),
            dst: v4([127, 0, 0, 1]),
            kind: Kind::IcmpEcho { id: 0x1d, seq: 1 },
            payload_len: 56,
        },
        Spec {
            what: "ping ::1 (ICMPv6 echo request)",
            src: v6_loopback(),
            dst: v6_loopback(),
            kind: Kind::IcmpEcho { id: 0x1d, seq: 1 },
            payload_len: 56,
        },
        Spec {
            what: "UDP datagram to 127.0.0.2:7 (every 127/8 address is loopback)",
            src: v4([127, 0, 0, 1]),
            dst: v4([127, 0, 0, 2]),
            kind: Kind::Udp {
                sport: 49152,
                dport: 7,
            },
            payload_len: 16,
        },
        Spec {
            what: "UDP datagram to [::1]:7",
            src: v6_loopback(),
            dst: v6_loopback(),
            kind: Kind::Udp {
                sport: 49153,
                dport: 7,
            },
            payload_len: 16,
        },
        Spec {
            what: "TCP SYN to 127.0.0.1:80, MSS from the 65536-byte MTU",
            src: v4([127, 0, 0, 1]),
            dst: v4([127, 0, 0, 1]),
            kind: Kind::TcpSyn {
                sport: 49154,
                dport: 80,
                seq: 0x1000_0000,
            },
            payload_len: 0,
        },
        Spec {
            what: "the largest UDP datagram IPv4 allows (65507 bytes of payload)",
            src: v4([127, 0, 0, 1]),
            dst: v4([127, 0, 0, 1]),
            kind: Kind::Udp {
                sport: 49155,
                dport: 9,
            },
            payload_len: 65507,
        },
    ]
}

/// Payload bytes: readable text for small packets, a repeating pattern for large ones.
fn payload(len: usize, out: &mut Vec<u8>) {
    const TEXT: &[u8] = b"Hello, Loopback!";
    out.clear();
    out.extend((0..len).map(|i| TEXT[i % TEXT.len()]));
}

/// A SYN as a client opening a connection over `lo` sends it.
fn tcp_syn(sport: u16, dport: u16, seq: u32) -> TcpHeader {
    let mut hdr = TcpHeader::new(sport, dport, seq, 65535);
    hdr.syn = true;
    // RFC 9293 3.7.1: MSS = MTU - 20 (IPv4 header) - 20 (TCP header) = 65495 on lo. Window
    // scaling (RFC 7323 2.2) lets the window exceed 64 KiB; SACK-permitted as RFC 2018.
    hdr.set_options(&[
        TcpOptionElement::MaximumSegmentSize(65495),
        TcpOptionElement::SelectiveAcknowledgementPermitted,
        TcpOptionElement::Noop,
        TcpOptionElement::WindowScale(7),
    ])
    .expect("ten bytes of options fit");
    hdr
}

/// The sender: the payload is copied once into a pooled buffer, then each layer prepends its
/// header into the headroom, computing checksums unless the device offloads them. Returns the
/// buffer and a one-line account of the layout at each step.
fn build(
    pool: &PacketPool,
    spec: &Spec,
    data: &[u8],
    fill_checksums: bool,
    log: &mut String,
) -> Result<PacketBuf, TourError> {
    let (proto, l4_len) = match &spec.kind {
        Kind::IcmpEcho { .. } if spec.dst.is_ipv6() => (IpNumber::IPV6_ICMP, 8),
        Kind::IcmpEcho { .. } => (IpNumber::ICMP, 8),
        Kind::Udp { .. } => (IpNumber::UDP, 8),
        Kind::TcpSyn { sport, dport, seq } => {
            (IpNumber::TCP, tcp_syn(*sport, *dport, *seq).header_len())
        }
    };
    let ip_len = if spec.dst.is_ipv6() { 40 } else { 20 };
    // Ask for exactly the packet that will be built: the pool picks the smallest class.
    let mut buf = pool.alloc(ip_len + l4_len + data.len())?;
    buf.extend_from_slice(data)
        .expect("the buffer was sized for the payload");
    let _ = write!(
        log,
        "payload {} B copied in at offset {}",
        data.len(),
        buf.headroom()
    );
    let ip_payload_len = (data.len() + l4_len) as u16;
    let (ip4, ip6) = match (spec.src, spec.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut h = Ipv4Header::new(ip_payload_len, 64, proto, s.octets(), d.octets())
                .expect("the tour's packets fit IPv4");
            h.dont_fragment = true;
            h.header_checksum = h.calc_header_checksum();
            (Some(h), None)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => (
            None,
            Some(Ipv6Header {
                traffic_class: 0,
                flow_label: Ipv6FlowLabel::ZERO,
                payload_length: ip_payload_len,
                next_header: proto,
                hop_limit: 64,
                source: s.octets(),
                destination: d.octets(),
            }),
        ),
        _ => unreachable!("the tour never mixes address families"),
    };

    // Transport layer: its header goes into the headroom in front of the payload.
    let name = match &spec.kind {
        Kind::IcmpEcho { id, seq } => {
            let echo = IcmpEchoHeader { id: *id, seq: *seq };
            match &ip6 {
                Some(h) => {
                    let t = Icmpv6Type::EchoRequest(echo);
                    let hdr = if fill_checksums {
                        Icmpv6Header::with_checksum(t, h.source, h.destination, data).expect("fits")
                    } else {
                        Icmpv6Header::new(t)
                    };
                    buf.prepend_slice(&hdr.to_bytes()).expect("headroom");
                }
                None => {
                    let t = Icmpv4Type::EchoRequest(echo);
                    // ICMPv4's checksum covers only the message: no offload exists for it.
                    let hdr = Icmpv4Header::with_checksum(t, data);
                    buf.prepend_slice(&hdr.to_bytes()).expect("headroom");
                }
            }
            if ip6.is_some() {
                "ICMPv6"
            } else {
                "ICMP"
            }
        }
        Kind::Udp { sport, dport } => {
            let hdr = match (&ip4, &ip6, fill_checksums) {
                (Some(h), _, true) => UdpHeader::with_ipv4_checksum(*sport, *dport, h, data),
                (_, Some(h), true) => UdpHeader::with_ipv6_checksum(*sport, *dport, h, data),
                _ => UdpHeader::without_ipv4_checksum(*sport, *dport, data.len()),
            }
            .expect("the tour's datagrams fit UDP");
            buf.prepend_slice(&hdr.to_bytes()).expect("headroom");
            "UDP"
        }
        Kind::TcpSyn { sport, dport, seq } => {
            let mut hdr = tcp_syn(*sport, *dport, *seq);
            if fill_checksums {
                hdr.checksum = match (&ip4, &ip6) {
                    (Some(h), _) => hdr.calc_checksum_ipv4(h, data),
                    (_, Some(h)) => hdr.calc_checksum_ipv6(h, data),
                    _ => unreachable!(),
                }
                .expect("fits");
            }
            buf.prepend_slice(&hdr.to_bytes()).expect("headroom");
            "TCP"
        }
    };
    let _ = write!(log, ", {name} header -> offset {}", buf.headroom());

    // Internet layer: the IP header goes in front of that.
    match (&ip4, &ip6) {
        (Some(h), _) => buf.prepend_slice(&h.to_bytes()).expect("headroom"),
        (_, Some(h)) => buf.prepend_slice(&h.to_bytes()).expect("headroom"),
        _ => unreachable!(),
    }
    let _ = write!(
        log,
        ", {} header -> offset {} ({} B on the wire)",
        if ip4.is_some() { "IPv4" } else { "IPv6" },
        buf.headroom(),
        buf.len()
    );
    Ok(buf)
}

/// What the receiver made of one packet.
enum Verdict {
    /// Every checksum holds; the payload is what is left in the buffer.
    Ok { summary: String },
    /// A checksum is wrong: the packet is dropped, as a real stack would drop it.
    BadChecksum(&'static str),
    /// The packet does not parse.
    Malformed(String),
}

/// One's-complement sum over the pseudo-header and the whole transport message, stored
/// checksum included: it must come out as all ones (RFC 1071 section 1; pseudo-headers per
/// RFC 768, RFC 9293 3.1 and RFC 8200 8.1).
fn transport_sum_ok(net: &NetSlice<'_>, proto: IpNumber, message: &[u8]) -> bool {
    let sum = match net {
        NetSlice::Ipv4(ip) => Sum16BitWords::new()
            .add_4bytes(ip.header().source())
            .add_4bytes(ip.header().destination())
            .add_2bytes([0, proto.0])
            .add_2bytes((message.len() as u16).to_be_bytes()),
        NetSlice::Ipv6(ip) => Sum16BitWords::new()
            .add_16bytes(ip.header().source())
            .add_16bytes(ip.header().destination())
            .add_4bytes((message.len() as u32).to_be_bytes())
            .add_4bytes([0, 0, 0, proto.0]),
        NetSlice::Arp(_) => return false,
    };
    sum.add_slice(message).ones_complement() == 0
}

/// The receiver: parses, checks checksums (unless the device vouches for them), then strips
/// the IP and transport headers from the same buffer, leaving the payload.
fn receive(buf: &mut PacketBuf, verify: bool) -> Verdict {
    let (ip_len, l4_len, label) = match inspect(buf.as_slice(), verify) {
        Ok(found) => found,
        Err(verdict) => return verdict,
    };
    // Up the stack: each layer strips its header from the front of the same buffer.
    let before = buf.headroom();
    if buf.strip_front(ip_len).is_err() || buf.strip_front(l4_len).is_err() {
        return Verdict::Malformed("truncated".to_owned());
    }
    let preview: String = buf
        .iter()
        .take(16)
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        })
        .collect();
    Verdict::Ok {
        summary: format!(
            "{label}: IP header {ip_len} B and {l4_len} B stripped (offset {before} -> {}), payload {} B \"{preview}\"",
            buf.headroom(),
            buf.len(),
        ),
    }
}

/// Parses a packet and checks its checksums. Returns the IP header length, the transport
/// header length and a label, or the verdict that ends the packet's journey.
fn inspect(packet: &[u8], verify: bool) -> Result<(usize, usize, String), Verdict> {
    let parsed = match SlicedPacket::from_ip(packet) {
        Ok(p) => p,
        Err(e) => return Err(Verdict::Malformed(e.to_string())),
    };
    let Some(net) = &parsed.net else {
        return Err(Verdict::Malformed("no IP header".to_owned()));
    };
    let (ip_len, proto) = match net {
        NetSlice::Ipv4(ip) => {
            let h = ip.header();
            // RFC 791 3.1: the header checksum is verified on every IPv4 packet; IPv4
            // header checksums are never offloaded on loopback.
            if Sum16BitWords::new().add_slice(h.slice()).ones_complement() != 0 {
                return Err(Verdict::BadChecksum("IPv4 header"));
            }
            (h.slice().len(), ip.payload().ip_number)
        }
        NetSlice::Ipv6(ip) => (
            packet.len() - ip.payload().payload.len(),
            ip.payload().ip_number,
        ),
        NetSlice::Arp(_) => return Err(Verdict::Malformed("ARP on an IP link".to_owned())),
    };
    let message = &packet[ip_len..];
    let (l4_len, label) = match &parsed.transport {
        Some(TransportSlice::Udp(u)) => {
            // A zero UDP checksum over IPv4 means "not computed" (RFC 768).
            let absent = u.checksum() == 0 && matches!(net, NetSlice::Ipv4(_));
            if verify && !absent && !transport_sum_ok(net, proto, message) {
                return Err(Verdict::BadChecksum("UDP"));
            }
            (
                8,
                format!("UDP {} -> {}", u.source_port(), u.destination_port()),
            )
        }
        Some(TransportSlice::Tcp(t)) => {
            if verify && !transport_sum_ok(net, proto, message) {
                return Err(Verdict::BadChecksum("TCP"));
            }
            (
                t.header_slice().len(),
                format!(
                    "TCP {} -> {}{}",
                    t.source_port(),
                    t.destination_port(),
                    if t.syn() { " SYN" } else { "" }
                ),
            )
        }
        Some(TransportSlice::Icmpv4(i)) => {
            // The ICMP checksum covers the message alone (RFC 792) and is always checked.
            if Sum16BitWords::new().add_slice(message).ones_complement() != 0 {
                return Err(Verdict::BadChecksum("ICMP"));
            }
            (i.header_len(), format!("ICMP type {}", i.type_u8()))
        }
        Some(TransportSlice::Icmpv6(i)) => {
            if verify && !transport_sum_ok(net, proto, message) {
                return Err(Verdict::BadChecksum("ICMPv6"));
            }
            (i.header_len(), format!("ICMPv6 type {}", i.type_u8()))
        }
        _ => {
            return Err(Verdict::Malformed(format!(
                "unexpected protocol {}",
                proto.0
            )))
        }
    };
    Ok((ip_len, l4_len, label))
}

/// The device of the hand-built walk: the stack's chain, but its capture goes nowhere.
/// Keeping the `PcapWriter` keeps the checksum offload the same as on the stack's `lo`
/// (checksums filled in on transmit), so the walk computes and checks every checksum.
pub(super) type WalkDevice = Tracer<FaultInjector<PcapWriter<Loopback, io::Sink>>, TraceLog>;

pub(super) fn walk_device(options: &TourOptions, trace: TraceLog) -> Result<WalkDevice, TourError> {
    let capture = PcapWriter::new(Loopback::new(), io::sink(), PcapMode::TxOnly)?;
    let faults = FaultInjector::new(capture, options.faults.clone(), options.seed)?;
    Ok(Tracer::new(faults, trace))
}

/// Sections 3 and 4: the packets of `specs` built by hand from `pool`, sent through `dev`
/// on a simulated clock, and taken apart again. Deterministic: the same options give the
/// same narration and trace.
pub(super) fn packet_walk(
    pool: &PacketPool,
    mut dev: WalkDevice,
    out: &mut dyn Write,
) -> Result<WalkReport, TourError> {
    let caps = dev.capabilities();
    let mut report = WalkReport::default();
    let mut now = Instant::ZERO;
    let step = Duration::from_micros(100);
    let mut data = Vec::new();
    writeln!(
        out,
        "== 3. by hand, sending: one copy in, then each layer prepends its header into the headroom"
    )?;
    writeln!(
        out,
        "  (on a second `lo` built like the stack's, whose capture goes nowhere: these packets are\n  \
         made by hand on a simulated clock and never reach the stack, so the capture file holds\n  \
         only the stack's own traffic, from section 5 on)"
    )?;
    for (i, spec) in specs().iter().enumerate() {
        payload(spec.payload_len, &mut data);
        let mut log = String::new();
        let buf = build(pool, spec, &data, !caps.checksum_offload.tx, &mut log)?;
        writeln!(out, "  #{} {}\n     {log}", i + 1, spec.what)?;
        now += step;
        report.sent += 1;
        if let Err(e) = dev.transmit(now, buf) {
            report.refused += 1;
            writeln!(out, "     refused by the device: {e}")?;
        }
    }

    writeln!(
        out,
        "\n== 4. by hand, receiving: each layer strips its header from the same buffer"
    )?;
    let verify = !caps.checksum_offload.rx;
    let mut n = 0;
    loop {
        while let Some(mut buf) = dev.receive(now) {
            n += 1;
            match receive(&mut buf, verify) {
                Verdict::Ok { summary } => {
                    report.received_ok += 1;
                    writeln!(out, "  #{n} at {now}: {summary}")?;
                }
                Verdict::BadChecksum(which) => {
                    report.received_bad += 1;
                    writeln!(out, "  #{n} at {now}: bad {which} checksum, dropped")?;
                }
                Verdict::Malformed(why) => {
                    report.received_malformed += 1;
                    writeln!(out, "  #{n} at {now}: malformed ({why}), dropped")?;
                }
            }
        }
        // Delayed or reordered packets are still held: move the clock to when they are due.
        match dev.poll_at() {
            Some(t) if t > now => now = t,
            Some(_) => now += step,
            None => break,
        }
    }
    if n == 0 {
        writeln!(out, "  nothing came back")?;
    }
    report.faults = dev.inner().fault_stats();
    writeln!(
        out,
        "  received: {} ok, {} bad checksum, {} malformed; {}",
        report.received_ok,
        report.received_bad,
        report.received_malformed,
        describe_faults(&report.faults)
    )?;
    // Every buffer went back to the pool when its packet was dropped or read.
    writeln!(
        out,
        "  pool buffers still in use: {}\n",
        pool.stats().in_use()
    )?;
    Ok(report)
}

pub(super) fn describe_faults(f: &FaultStats) -> String {
    format!(
        "faults: {} seen, {} dropped, {} duplicated, {} reordered, {} delayed, {} corrupted",
        f.seen, f.dropped, f.duplicated, f.reordered, f.delayed, f.corrupted
    )
}
