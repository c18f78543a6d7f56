//! `loopstack tour`: a guided walk of packets down and up the layers that exist so far.
//!
//! Today the tour shows the foundation: the shared buffer pool and the `lo` device with its
//! middleware. A small "sender" builds real IPv4 and IPv6 packets the way the stack's layers
//! will — payload copied once into a pooled buffer, then each header prepended into the
//! headroom — and a small "receiver" strips the headers from the same buffer on the way up,
//! checking every checksum. Later layers replace the sender and receiver with the real IP,
//! TCP and socket code; the shape of the journey stays the same.
//!
//! The whole run is on a simulated clock and a seeded random generator: the same options give
//! the same trace and a byte-identical pcap file.

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
use loopstack_buf::{ConfigError, PacketBuf, PacketPool, PoolConfig, PoolError};
use loopstack_link::{
    Device, FaultConfig, FaultConfigError, FaultInjector, Instant, Loopback, PcapMode, PcapWriter,
    Tracer,
};
use thiserror::Error;

/// What the tour should do.
#[derive(Debug, Clone)]
pub struct TourOptions {
    /// Seed for every random decision (the fault injector's).
    pub seed: u64,
    /// Faults to inject on `lo`.
    pub faults: FaultConfig,
}

impl Default for TourOptions {
    fn default() -> Self {
        TourOptions {
            seed: 1,
            faults: FaultConfig::default(),
        }
    }
}

/// Why the tour could not run.
#[derive(Debug, Error)]
pub enum TourError {
    /// The fault options are invalid.
    #[error("invalid fault options: {0}")]
    Faults(#[from] FaultConfigError),
    /// Writing the report or the capture failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The pool configuration is invalid.
    #[error("packet pool configuration: {0}")]
    PoolConfig(#[from] ConfigError),
    /// The pool refused a buffer (only possible with a misconfigured pool).
    #[error("packet pool: {0}")]
    Pool(#[from] PoolError),
    /// A socket call failed.
    #[error("socket: {0}")]
    Socket(#[from] loopstack_transport::Error),
    /// The stack could not be built.
    #[error("stack: {0}")]
    Stack(#[from] loopstack_socket::StackError),
    /// The TCP echo did not give back what was sent.
    #[error("TCP echo mismatch: {0}")]
    Echo(String),
}

/// What happened, for tests and for callers that want numbers rather than text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TourReport {
    /// Packets the sender built and handed to the device.
    pub sent: u64,
    /// Packets that came back up with every checksum correct.
    pub received_ok: u64,
    /// Packets that came back with a wrong checksum (corruption) and were dropped.
    pub received_bad: u64,
    /// Packets that came back unparseable and were dropped.
    pub received_malformed: u64,
    /// Packets the device refused on transmit.
    pub refused: u64,
    /// Records written to the pcap capture.
    pub captured: u64,
    /// Echo replies received by the tour's pings.
    pub ping_replies: u64,
    /// Bytes the tour's TCP echo got back intact.
    pub tcp_echoed: u64,
    /// Datagrams the tour's UDP sockets received.
    pub udp_received: u64,
}

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

/// Runs the tour, writing the narration to `out`, the trace (if enabled) to `trace_sink`, and
/// the capture to `pcap_sink`.
pub fn run<O: Write, T: Write, P: Write>(
    options: &TourOptions,
    out: &mut O,
    trace_sink: T,
    pcap_sink: P,
) -> Result<TourReport, TourError> {
    let config = PoolConfig::default();
    let pool = PacketPool::new(config.clone())?;

    writeln!(
        out,
        "loopstack tour: packets down and up through `lo`\n\
         (today: the buffer pool and the link layer; IP, TCP and sockets join in later releases)\n"
    )?;
    writeln!(out, "== 1. the packet pool (loopstack-buf)")?;
    let classes: Vec<String> = config
        .classes
        .iter()
        .map(|c| format!("{} x {} B", c.count, c.capacity))
        .collect();
    writeln!(
        out,
        "  {} buffers allocated once, {:.1} MiB in all: {}; {} B of headroom in front of each packet\n",
        config.classes.iter().map(|c| c.count).sum::<usize>(),
        config.total_bytes() as f64 / (1024.0 * 1024.0),
        classes.join(", "),
        config.headroom
    )?;

    // The device stack, outermost first. The capture sits right on the loopback ring, so it
    // records what actually went onto the "wire" after the faults were applied.
    let lo = Loopback::new();
    let pcap = PcapWriter::new(lo, pcap_sink, PcapMode::TxOnly)?;
    let faults = FaultInjector::new(pcap, options.faults.clone(), options.seed)?;
    let mut dev = Tracer::new(faults, trace_sink);
    let caps = dev.capabilities();
    let f = &options.faults;
    writeln!(
        out,
        "== 2. the device stack (loopstack-link), outermost first"
    )?;
    writeln!(
        out,
        "  Tracer -> FaultInjector(seed {}, drop {}, duplicate {}, reorder {}, delay {} x {:?}, corrupt {})\n  \
         -> PcapWriter(transmitted packets) -> Loopback(lo, mtu {}, ring of {} packets)",
        options.seed,
        f.drop,
        f.duplicate,
        f.reorder,
        f.delay,
        f.delay_time,
        f.corrupt,
        caps.mtu,
        loopstack_link::LoopbackConfig::DEFAULT_CAPACITY
    )?;
    writeln!(
        out,
        "  checksum offload: tx {}, rx {} (a capture needs real checksums; corruption needs them verified)\n",
        if caps.checksum_offload.tx { "on" } else { "off" },
        if caps.checksum_offload.rx { "on" } else { "off" },
    )?;

    let mut report = TourReport::default();
    let mut now = Instant::ZERO;
    let step = Duration::from_micros(100);
    let mut data = Vec::new();
    writeln!(
        out,
        "== 3. sending: one copy in, then each layer prepends its header into the headroom"
    )?;
    for (i, spec) in specs().iter().enumerate() {
        payload(spec.payload_len, &mut data);
        let mut log = String::new();
        let buf = build(&pool, spec, &data, !caps.checksum_offload.tx, &mut log)?;
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
        "\n== 4. receiving: each layer strips its header from the same buffer"
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

    let fault_stats = dev.inner().fault_stats();
    let link = dev.stats();
    let (faults, mut trace_sink) = dev.into_inner();
    trace_sink.flush()?;
    let pcap = faults.into_inner();
    report.captured = pcap.packets_written();
    let (lo, _) = pcap.into_inner();

    writeln!(out, "\n== 5. counters")?;
    writeln!(
        out,
        "1: {}: <LOOPBACK,UP,LOWER_UP> mtu {} qdisc noqueue state UNKNOWN qlen {}",
        lo.name(),
        caps.mtu,
        lo.capacity()
    )?;
    writeln!(
        out,
        "    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00"
    )?;
    writeln!(out, "{link}")?;
    writeln!(out, "{}", pool.stats())?;
    writeln!(
        out,
        "faults: {} seen, {} dropped, {} duplicated, {} reordered, {} delayed, {} corrupted",
        fault_stats.seen,
        fault_stats.dropped,
        fault_stats.duplicated,
        fault_stats.reordered,
        fault_stats.delayed,
        fault_stats.corrupted
    )?;
    writeln!(
        out,
        "received: {} ok, {} bad checksum, {} malformed",
        report.received_ok, report.received_bad, report.received_malformed
    )?;

    internet_section(out, &mut report)?;
    transport_section(out, &mut report)?;
    Ok(report)
}

/// The transport layer's turn: a TCP echo of 1 MiB and a UDP exchange on a fresh
/// [`Stack`](loopstack_socket::Stack), on a simulated clock, then the counters.
fn transport_section<O: Write>(out: &mut O, report: &mut TourReport) -> Result<(), TourError> {
    use loopstack_socket::{Stack, StackConfig};
    use loopstack_transport::tcp::Shutdown;
    use loopstack_transport::Error as SockError;
    use std::net::SocketAddr;
    use std::time::Duration;

    let mut stack = Stack::new(StackConfig::default())?;
    let mut now = Instant::ZERO;
    let server: SocketAddr = "127.0.0.1:65432".parse().expect("literal");
    writeln!(
        out,
        "\n== 7. the transport layer (loopstack-transport): TCP echo of 1 MiB on {server}"
    )?;
    let listener = stack.tcp_listen(server, 16)?;
    let client = stack.tcp_connect(now, server)?;
    stack.poll(now);
    let (conn, peer) = stack.tcp().accept(listener)?;
    writeln!(out, "accepted {peer}: handshake done in one poll")?;

    let message: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    let (mut sent, mut echoed) = (0, Vec::with_capacity(message.len()));
    let mut buf = vec![0u8; 64 * 1024];
    let mut rounds = 0;
    while echoed.len() < message.len() && rounds < 100_000 {
        rounds += 1;
        if sent < message.len() {
            match stack.tcp().send(client, &message[sent..]) {
                Ok(n) => sent += n,
                Err(SockError::WouldBlock) => {}
                Err(e) => return Err(e.into()),
            }
        }
        stack.poll(now);
        // The server echoes what it reads (the classic echo loop: recv, then sendall).
        loop {
            match stack.tcp().recv(conn, &mut buf) {
                Ok(0) | Err(SockError::WouldBlock) => break,
                Ok(n) => {
                    let mut off = 0;
                    while off < n {
                        match stack.tcp().send(conn, &buf[off..n]) {
                            Ok(m) => off += m,
                            Err(SockError::WouldBlock) => {
                                stack.poll(now);
                                let _ = drain(&mut stack, client, &mut echoed);
                            }
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        stack.poll(now);
        drain(&mut stack, client, &mut echoed)?;
        now += Duration::from_micros(10);
    }
    if echoed != message {
        return Err(TourError::Echo(format!(
            "{} of {} bytes came back",
            echoed.len(),
            message.len()
        )));
    }
    report.tcp_echoed = echoed.len() as u64;
    let info = stack.tcp().info(client)?;
    writeln!(
        out,
        "echoed {} bytes intact; client: {} mss:{} cwnd:{} wscale:{:?} segs_out:{} retrans:{}",
        echoed.len(),
        info.state,
        info.snd_mss,
        info.cwnd,
        info.wscale,
        info.stats.segs_out,
        info.stats.retrans_segs
    )?;
    stack.tcp().shutdown(client, Shutdown::Write)?;
    stack.poll(now);
    stack.tcp().close(conn)?;
    stack.poll(now);
    let state = stack.tcp().state(client)?;
    stack.tcp().close(client)?;
    writeln!(out, "closed: the client ends in {state}")?;

    writeln!(
        out,
        "\nUDP: two sockets on ::1, and one datagram to a closed port"
    )?;
    let a = stack.udp_bind("[::1]:0".parse().expect("literal"))?;
    let b = stack.udp_bind("[::1]:0".parse().expect("literal"))?;
    let b_addr = stack.udp().local_addr(b)?;
    stack.udp_send_to(now, a, b"hello, loopback", b_addr)?;
    stack.poll(now);
    let (n, from) = stack.udp().recv_from(b, &mut buf)?;
    report.udp_received += 1;
    writeln!(
        out,
        "{b_addr} got {n} bytes from {from}: {:?}",
        String::from_utf8_lossy(&buf[..n])
    )?;
    stack.udp_connect(a, "[::1]:9".parse().expect("literal"))?;
    stack.udp_send(now, a, b"anyone?")?;
    stack.poll(now);
    match stack.udp().recv(a, &mut buf) {
        Err(e) => writeln!(out, "to [::1]:9: {e} (ICMPv6 port unreachable came back)")?,
        Ok(_) => writeln!(out, "to [::1]:9: unexpectedly answered")?,
    }

    writeln!(out, "\n$ netstat -s (the transport counters)")?;
    write!(out, "{}", stack.transport().tcp.stats().render_snmp())?;
    write!(out, "{}", stack.transport().udp.stats().render_snmp())?;
    Ok(())
}

/// Reads whatever the client has received into `echoed`.
fn drain(
    stack: &mut loopstack_socket::Stack,
    client: loopstack_transport::tcp::TcpHandle,
    echoed: &mut Vec<u8>,
) -> Result<(), TourError> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stack.tcp().recv(client, &mut buf) {
            Ok(0) | Err(loopstack_transport::Error::WouldBlock) => return Ok(()),
            Ok(n) => echoed.extend_from_slice(&buf[..n]),
            Err(e) => return Err(e.into()),
        }
    }
}

/// The internet layer's turn: the interface table, then pings through the real layer
/// (`loopstack-internet`) on a fresh host, on a simulated clock so the output is the same
/// every run.
fn internet_section<O: Write>(out: &mut O, report: &mut TourReport) -> Result<(), TourError> {
    use crate::host::Host;
    use crate::ping::{self, PingOptions, SimClock};

    let pool = PacketPool::new(PoolConfig::default())?;
    let mut host = Host::new(pool, Box::new(Loopback::new()));
    writeln!(
        out,
        "\n== 6. the internet layer (loopstack-internet): ip addr show lo"
    )?;
    let table = host
        .ip
        .interfaces()
        .render_ip_addr(Some("lo"), &|_| None)
        .expect("lo exists");
    write!(out, "{table}")?;
    writeln!(
        out,
        "\n(the tour's clock is simulated, so round trips show 0 ms: `loopstack ping` uses the real one)"
    )?;
    for target in ["127.0.0.1", "127.0.0.2", "::1"] {
        writeln!(out, "\n$ loopstack ping -c 2 {target}")?;
        let options = PingOptions {
            target: target.to_owned(),
            count: 2,
            ipv6: target.contains(':'),
            ..PingOptions::default()
        };
        let mut clock = SimClock::default();
        let summary = ping::run(&options, &mut host, &mut clock, out, &mut io::sink())?;
        report.ping_replies += u64::from(summary.received);
    }
    let s = host.ip.stats();
    writeln!(
        out,
        "\nIcmp: InEchos {} OutEchoReps {} InEchoReps {}; Icmp6: InEchos {} OutEchoReplies {}",
        s.icmp.in_echos,
        s.icmp.out_echo_reps,
        s.icmp.in_echo_reps,
        s.icmp6.in_echos,
        s.icmp6.out_echo_replies
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tour(options: &TourOptions) -> (TourReport, String, Vec<u8>, Vec<u8>) {
        let mut out = Vec::new();
        let mut trace = Vec::new();
        let mut pcap = Vec::new();
        let report = run(options, &mut out, &mut trace, &mut pcap).unwrap();
        (report, String::from_utf8(out).unwrap(), trace, pcap)
    }

    #[test]
    fn clean_run_delivers_every_packet_intact() {
        let (r, out, trace, pcap) = tour(&TourOptions::default());
        assert_eq!(r.sent, 6);
        assert_eq!(r.received_ok, 6, "{out}");
        assert_eq!((r.received_bad, r.received_malformed, r.refused), (0, 0, 0));
        assert_eq!(r.captured, 6);
        assert_eq!(r.ping_replies, 6, "{out}");
        assert_eq!(r.tcp_echoed, 1 << 20, "{out}");
        assert_eq!(r.udp_received, 1, "{out}");
        assert!(out.contains("connection refused"), "{out}");
        assert!(out.contains("64 bytes from 127.0.0.2: icmp_seq=2 ttl=64 time=0.000 ms"));
        assert!(
            out.contains("64 bytes from ::1: icmp_seq=1 ttl=64"),
            "{out}"
        );
        assert!(
            out.contains("    inet 127.0.0.1/8 scope host lo\n"),
            "{out}"
        );
        assert!(out.contains("payload 16 B \"Hello, Loopback!\""), "{out}");
        assert!(out.contains("payload 65507 B"), "{out}");
        // The pool is empty again at the end.
        assert!(out.contains("pool class  1920B: 0/2048 in use"), "{out}");
        let trace = String::from_utf8(trace).unwrap();
        assert_eq!(trace.lines().filter(|l| l.contains(" lo tx ")).count(), 6);
        assert_eq!(trace.lines().filter(|l| l.contains(" lo rx ")).count(), 6);
        assert!(pcap.len() > 65535);
    }

    #[test]
    fn same_seed_gives_identical_output_and_capture() {
        let options = TourOptions {
            seed: 7,
            faults: FaultConfig {
                drop: 0.2,
                duplicate: 0.3,
                reorder: 0.3,
                delay: 0.3,
                corrupt: 0.3,
                ..FaultConfig::default()
            },
        };
        let a = tour(&options);
        let b = tour(&options);
        assert_eq!(a.0, b.0);
        assert_eq!(a.1, b.1);
        assert_eq!(a.2, b.2);
        assert_eq!(a.3, b.3);
        let mut seeds_differ = false;
        for seed in 8..20 {
            let c = tour(&TourOptions {
                seed,
                ..options.clone()
            });
            seeds_differ |= c.3 != a.3;
        }
        assert!(seeds_differ);
    }

    #[test]
    fn corruption_is_caught_by_checksums() {
        let (r, out, _, _) = tour(&TourOptions {
            faults: FaultConfig {
                corrupt: 1.0,
                ..FaultConfig::default()
            },
            ..TourOptions::default()
        });
        // Every packet had one bit flipped; a flip anywhere is caught by the IP header
        // checksum or the transport checksum, except in the few IPv6 header bytes that no
        // checksum covers (traffic class, flow label, hop limit), which still parse.
        assert_eq!(r.received_ok + r.received_bad + r.received_malformed, 6);
        assert!(r.received_bad + r.received_malformed >= 4, "{out}");
        assert!(out.contains("checksum offload: tx off, rx off"), "{out}");
    }

    #[test]
    fn every_dropped_packet_is_accounted_for() {
        let (r, out, _, _) = tour(&TourOptions {
            faults: FaultConfig {
                drop: 1.0,
                ..FaultConfig::default()
            },
            ..TourOptions::default()
        });
        assert_eq!(r.received_ok, 0);
        assert_eq!(r.captured, 0);
        assert!(out.contains("faults: 6 seen, 6 dropped"), "{out}");
        assert!(out.contains("nothing came back"), "{out}");
    }
}
