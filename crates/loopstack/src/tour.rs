//! `loopstack tour`: the README's main command. One fresh stack, and packets down and up
//! through its `lo`, narrated section by section.
//!
//! 1. The packet pool every layer draws its buffers from.
//! 2. The stack's `lo`: a `Loopback` wrapped in a tracer, a fault injector and a pcap
//!    capture, so the capture holds the real traffic of everything below.
//! 3. and 4. Packets built and stripped by hand, the way the layers do it: the payload copied
//!    once into a pooled buffer, each header prepended into the headroom on the way down and
//!    stripped from the same buffer on the way up. This walk runs on a second `lo` built
//!    like the stack's but capturing to `io::sink()`, on a simulated clock: hand-made
//!    packets would confuse the stack, and their clock would not line up with the capture's.
//!    It is deterministic: the same seed gives the same narration and trace.
//! 5. to 9. The stack itself, shared as a blocking [`Net`]: `ip addr show lo`, ping
//!    127.0.0.1 and ::1, the TCP echo on 127.0.0.1:65432, a UDP echo on ::1, and the
//!    "Hello, Loopback!" HTTP server fetched `curl -v` style.
//! 10. The counters: `ip -s addr`, the MIB counters `netstat -s` reads, the sockets left
//!     (`ss -tuan`), the pool and the faults.
//!
//! From section 5 on, the stack runs on the wall clock with server threads, so that part
//! is not reproducible byte for byte (poll mode is: see `loopstack_socket::Stack`). With
//! fault options on, the tour still completes and checks every byte: TCP retransmits, the
//! UDP echo client sends again, and lost pings are counted as iputils counts them.
//!
//! The per-packet trace is written by whichever thread moves the packet (a server thread,
//! the stack's timer thread), so the tracer writes into a buffer that the tour's own thread
//! drains between lines of narration: the trace never lands in the middle of a line, and
//! nothing but the tour's thread ever writes to `out` or to the trace sink.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime};

use etherparse::checksum::Sum16BitWords;
use etherparse::{
    IcmpEchoHeader, Icmpv4Header, Icmpv4Type, Icmpv6Header, Icmpv6Type, IpNumber, Ipv4Header,
    Ipv6FlowLabel, Ipv6Header, NetSlice, SlicedPacket, TcpHeader, TcpOptionElement, TransportSlice,
    UdpHeader,
};
use loopstack_buf::{PacketBuf, PacketPool, PoolConfig, PoolError};
use loopstack_internet::iface::InterfaceId;
use loopstack_link::{
    Device, DeviceCapabilities, FaultConfig, FaultConfigError, FaultInjector, FaultStats, Instant,
    LinkStats, Loopback, LoopbackConfig, PcapMode, PcapWriter, Tracer, TxError,
};
use loopstack_socket::{IcmpSocket, Net, Stack, StackConfig, StackError, TcpListener, UdpSocket};
use loopstack_transport::tcp::State;
use thiserror::Error;

use crate::echo::{self, EchoError};
use crate::http::{self, HttpError};

/// What the tour should do.
#[derive(Debug, Clone)]
pub struct TourOptions {
    /// Seed for every random decision: the fault injector's, and the stack's ephemeral
    /// ports and initial sequence numbers.
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
    /// Writing the narration, the trace or the capture failed, or a socket call did.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The pool refused a buffer to the hand-built packets (only possible with a
    /// misconfigured pool).
    #[error("packet pool: {0}")]
    Pool(#[from] PoolError),
    /// The stack could not be built.
    #[error("stack: {0}")]
    Stack(#[from] StackError),
    /// The TCP or UDP echo did not give back what was sent.
    #[error("echo: {0}")]
    Echo(#[from] EchoError),
    /// The HTTP GET failed.
    #[error("HTTP: {0}")]
    Http(#[from] HttpError),
    /// One of the tour's servers failed.
    #[error("{0} server: {1}")]
    Server(&'static str, io::Error),
}

/// What the hand-built packets of sections 3 and 4 went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WalkReport {
    /// Packets built and handed to the device.
    pub sent: u64,
    /// Packets that came back up with every checksum correct.
    pub received_ok: u64,
    /// Packets that came back with a wrong checksum (corruption) and were dropped.
    pub received_bad: u64,
    /// Packets that came back unparseable and were dropped.
    pub received_malformed: u64,
    /// Packets the device refused on transmit.
    pub refused: u64,
    /// What the walk's fault injector did.
    pub faults: FaultStats,
}

/// What happened, for tests and for callers that want numbers rather than text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TourReport {
    /// The hand-built packets (sections 3 and 4).
    pub walk: WalkReport,
    /// Echo requests the pings sent, both addresses together.
    pub pings_sent: u64,
    /// Distinct echo replies they got back.
    pub ping_replies: u64,
    /// Bytes the TCP echo got back intact.
    pub tcp_echoed: u64,
    /// Bytes the UDP echo got back intact.
    pub udp_echoed: u64,
    /// Datagrams the UDP echo client sent again after a timeout.
    pub udp_resent: u64,
    /// The status of the HTTP GET.
    pub http_status: u16,
    /// What the fault injector on the stack's `lo` did.
    pub faults: FaultStats,
    /// Packets written to the capture (flushed before [`run`] returns).
    pub captured: u64,
}

// ---------------------------------------------------------------------- the trace buffer

/// Complete trace lines kept at the start of a burst, and at its end.
const TRACE_HEAD_CAP: usize = 256;
const TRACE_TAIL_CAP: usize = 256;

/// Trace lines written by any thread, waiting for the tour's thread to print them.
///
/// A burst longer than the caps keeps its first and last lines and counts the middle, so
/// a bulk transfer costs bounded memory; the capture keeps every packet anyway.
#[derive(Debug, Default)]
struct TraceLines {
    /// The line being written (the tracer may write one line in several calls).
    partial: Vec<u8>,
    head: Vec<Vec<u8>>,
    tail: VecDeque<Vec<u8>>,
    /// Lines between `head` and `tail` that were not kept.
    skipped: u64,
}

/// A cloneable handle on [`TraceLines`]: the sink the tracers write to.
#[derive(Debug, Clone, Default)]
struct TraceLog(Arc<Mutex<TraceLines>>);

impl TraceLog {
    fn lock(&self) -> MutexGuard<'_, TraceLines> {
        // A panicking writer leaves whole lines behind it: the buffer is still usable.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes the lines buffered so far to `sink`. A burst of more than `head + tail`
    /// lines shows its first `head` and last `tail`, with a count of those in between.
    fn drain_to(&self, sink: &mut dyn Write, head: usize, tail: usize) -> io::Result<()> {
        let (lines, split, skipped) = {
            let mut t = self.lock();
            let mut lines = std::mem::take(&mut t.head);
            let split = lines.len();
            lines.extend(t.tail.drain(..));
            (lines, split, std::mem::take(&mut t.skipped))
        };
        if skipped == 0 && lines.len() <= head + tail {
            for line in &lines {
                sink.write_all(line)?;
            }
            return Ok(());
        }
        // The kept lines are contiguous unless some were skipped after the first `split`.
        let gap = if skipped > 0 { split } else { lines.len() };
        let front = head.min(gap);
        // Lines after the gap run contiguously to the end; never print across the gap.
        let first_back = if skipped > 0 { split.max(front) } else { front };
        let back = tail.min(lines.len() - first_back);
        for line in &lines[..front] {
            sink.write_all(line)?;
        }
        let omitted = (lines.len() - front - back) as u64 + skipped;
        writeln!(
            sink,
            "... {omitted} more trace lines (the capture has every packet) ..."
        )?;
        for line in &lines[lines.len() - back..] {
            sink.write_all(line)?;
        }
        Ok(())
    }
}

impl Write for TraceLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut t = self.lock();
        for piece in buf.split_inclusive(|&b| b == b'\n') {
            t.partial.extend_from_slice(piece);
            if !piece.ends_with(b"\n") {
                continue;
            }
            let line = std::mem::take(&mut t.partial);
            if t.tail.is_empty() && t.head.len() < TRACE_HEAD_CAP {
                t.head.push(line);
            } else {
                t.tail.push_back(line);
                if t.tail.len() > TRACE_TAIL_CAP {
                    t.tail.pop_front();
                    t.skipped += 1;
                }
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The narration: `out` and the trace, written by the tour's thread only. Every line of
/// narration first prints the trace lines buffered before it, so packets show up right
/// after the line that caused them.
struct Narrator<'a, O, T> {
    out: &'a mut O,
    trace: T,
    log: TraceLog,
    at_line_start: bool,
}

/// Trace lines shown per burst, unless a section asks for fewer.
const TRACE_BURST: usize = 64;

impl<O: Write, T: Write> Narrator<'_, O, T> {
    /// Prints the buffered trace: at most `head` + `tail` lines of it.
    fn trace_burst(&mut self, head: usize, tail: usize) -> io::Result<()> {
        self.log.drain_to(&mut self.trace, head, tail)?;
        self.trace.flush()
    }
}

impl<O: Write, T: Write> Write for Narrator<'_, O, T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.at_line_start {
            self.trace_burst(TRACE_BURST, TRACE_BURST)?;
        }
        let n = self.out.write(buf)?;
        self.at_line_start = buf[..n].ends_with(b"\n");
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

// ---------------------------------------------------------------------- the shared `lo`

/// A device behind a mutex, so that the tour can reach the middleware it built (the fault
/// counters, the capture) while the stack owns the device, and take it back afterwards.
struct SharedDevice<D> {
    /// Kept outside the lock: [`Device::name`] returns a borrow.
    name: String,
    dev: Arc<Mutex<D>>,
}

fn lock<D>(dev: &Mutex<D>) -> MutexGuard<'_, D> {
    dev.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<D: Device> Device for SharedDevice<D> {
    fn name(&self) -> &str {
        &self.name
    }
    fn capabilities(&self) -> DeviceCapabilities {
        lock(&self.dev).capabilities()
    }
    fn transmit(&mut self, now: Instant, packet: PacketBuf) -> Result<(), TxError> {
        lock(&self.dev).transmit(now, packet)
    }
    fn receive(&mut self, now: Instant) -> Option<PacketBuf> {
        lock(&self.dev).receive(now)
    }
    fn stats(&self) -> LinkStats {
        lock(&self.dev).stats()
    }
    fn poll_at(&self) -> Option<Instant> {
        lock(&self.dev).poll_at()
    }
}

/// The stack's `lo`, outermost first: what the stack sent and received is traced, faults
/// apply, and the capture records what went onto the "wire" after them.
type LoChain<P> = Tracer<FaultInjector<PcapWriter<Loopback, P>>, TraceLog>;

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
type WalkDevice = Tracer<FaultInjector<PcapWriter<Loopback, io::Sink>>, TraceLog>;

fn walk_device(options: &TourOptions, trace: TraceLog) -> Result<WalkDevice, TourError> {
    let capture = PcapWriter::new(Loopback::new(), io::sink(), PcapMode::TxOnly)?;
    let faults = FaultInjector::new(capture, options.faults.clone(), options.seed)?;
    Ok(Tracer::new(faults, trace))
}

/// Sections 3 and 4: the packets of `specs` built by hand from `pool`, sent through `dev`
/// on a simulated clock, and taken apart again. Deterministic: the same options give the
/// same narration and trace.
fn packet_walk(
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

fn describe_faults(f: &FaultStats) -> String {
    format!(
        "faults: {} seen, {} dropped, {} duplicated, {} reordered, {} delayed, {} corrupted",
        f.seen, f.dropped, f.duplicated, f.reordered, f.delayed, f.corrupted
    )
}

/// The fault injector's delay as the command line sets it: every packet held `--delay MS`
/// (a probability below 1 only comes from code that builds its own `FaultConfig`).
fn delay(f: &FaultConfig) -> String {
    let ms = format!("{} ms", f.delay_time.as_secs_f64() * 1e3);
    match f.delay {
        p if p <= 0.0 => "0 ms".to_owned(),
        p if p >= 1.0 => ms,
        p => format!("{ms} for {} of packets", pct(p)),
    }
}

/// `n thing` or `n things`.
fn plural(n: u64, thing: &str) -> String {
    if n == 1 {
        format!("{n} {thing}")
    } else {
        format!("{n} {thing}s")
    }
}

/// A probability as the command line takes it: a percentage.
fn pct(p: f64) -> String {
    let s = format!("{:.3}", p * 100.0);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

// ---------------------------------------------------------------------- run

/// Where the TCP echo listens: the classic Python echo server's address.
const TCP_ECHO: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 65432);
/// Bytes the TCP echo client sends (and checks on their way back).
const TCP_ECHO_BYTES: u64 = 1 << 20;
/// Where the UDP echo listens: ::1, on the echo port (RFC 862).
const UDP_ECHO: SocketAddr = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 7);
/// Bytes the UDP echo client sends: eight datagrams of [`echo::UDP_CHUNK`] bytes.
const UDP_ECHO_BYTES: u64 = 8 * echo::UDP_CHUNK as u64;
/// Where the HTTP server listens.
const HTTP: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);
/// Echo requests per ping, and the time between them (iputils `-c 3 -i 0.01`).
const PING_COUNT: u16 = 3;
const PING_INTERVAL: Duration = Duration::from_millis(10);
/// Data bytes per echo request: iputils' default (`-s 56`).
const PING_SIZE: usize = 56;

/// Runs the tour: narration to `out`, the per-packet trace to `trace`, and a pcap capture of
/// the stack's traffic to `pcap`. The capture is flushed, and everything the tour started
/// (the stack, its timer thread, the servers) is gone, by the time this returns.
///
/// Invalid fault options fail with [`TourError::Faults`] before anything is written.
pub fn run<O: Write, T: Write, P: Write + Send + 'static>(
    options: &TourOptions,
    out: &mut O,
    trace: T,
    pcap: P,
) -> Result<TourReport, TourError> {
    let log = TraceLog::default();
    // Built first: it checks the fault options.
    let walk_dev = walk_device(options, log.clone())?;

    let config = StackConfig {
        seed: options.seed,
        ..StackConfig::default()
    };
    let lo = Loopback::with_config(config.loopback.clone()).map_err(StackError::from)?;
    let capture = PcapWriter::new(lo, pcap, PcapMode::TxOnly)?;
    let faults = FaultInjector::new(capture, options.faults.clone(), options.seed)?;
    let chain: Arc<Mutex<LoChain<P>>> = Arc::new(Mutex::new(Tracer::new(faults, log.clone())));
    let shared = SharedDevice {
        name: "lo".to_owned(),
        dev: Arc::clone(&chain),
    };
    let stack = Stack::with_loopback(config.clone(), Box::new(shared))?;
    let caps = stack
        .device(InterfaceId::LOOPBACK)
        .map(|d| d.capabilities())
        .expect("the stack has lo");
    let pool = stack.pool().clone();

    let mut t = Narrator {
        out,
        trace,
        log,
        at_line_start: true,
    };
    let mut report = TourReport::default();
    writeln!(
        t,
        "loopstack tour: one fresh stack, and packets down and up through its `lo`\n"
    )?;
    pool_section(&mut t, &config.pool)?;
    device_section(&mut t, options, caps, &config.loopback)?;
    report.walk = packet_walk(&pool, walk_dev, &mut t)?;

    // The stack's clock starts at zero when the `Net` is made; the capture shows it as
    // today's date and time, so Wireshark's absolute times are real ones.
    let wall = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    lock(&chain).inner_mut().inner_mut().set_clock_offset(wall);
    let net = Net::from_stack(stack)?;
    stack_sections(&mut t, &net, options, &chain, &mut report)?;
    // The last handle on the stack: its timer thread stops and the stack is dropped, with
    // its `lo`. Nothing can write to the capture after this.
    drop(net);

    let captured = match Arc::try_unwrap(chain) {
        Ok(chain) => {
            let (faults, _) = chain
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner)
                .into_inner();
            report.faults = faults.fault_stats();
            let capture = faults.into_inner();
            let captured = (capture.packets_written(), capture.write_errors());
            let (_, mut sink) = capture.into_inner();
            sink.flush()?;
            captured
        }
        // Only if a socket outlived its section (a bug): count and flush what is there.
        Err(chain) => {
            let mut chain = lock(&chain);
            report.faults = chain.inner().fault_stats();
            let capture = chain.inner_mut().inner_mut();
            capture.flush()?;
            (capture.packets_written(), capture.write_errors())
        }
    };
    // The writer lets packets through when a write fails (a full disk); the tour's file is
    // then incomplete, and saying so beats a capture that silently lacks packets.
    let (captured, lost) = captured;
    if lost > 0 {
        return Err(TourError::Io(io::Error::other(format!(
            "{lost} packets could not be written to the capture ({captured} were)"
        ))));
    }
    report.captured = captured;
    // Packets traced after the last line of narration (the closing exchanges).
    t.trace_burst(TRACE_BURST, TRACE_BURST)?;
    t.flush()?;
    Ok(report)
}

/// Section 1: the pool the stack's layers (and the walk) draw from.
fn pool_section(out: &mut dyn Write, config: &PoolConfig) -> io::Result<()> {
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
    )
}

/// Section 2: the middleware around the stack's `lo`, and what it does to checksum offload.
fn device_section(
    out: &mut dyn Write,
    options: &TourOptions,
    caps: DeviceCapabilities,
    lo: &LoopbackConfig,
) -> io::Result<()> {
    let f = &options.faults;
    writeln!(
        out,
        "== 2. the stack's `lo` (loopstack-link): middleware around the device, outermost first"
    )?;
    writeln!(
        out,
        "  Tracer -> FaultInjector(seed {}, drop {}, dup {}, reorder {}, corrupt {}, delay {})\n  \
         -> PcapWriter(transmitted packets, to the capture file) -> Loopback(lo, mtu {}, ring of {} packets)",
        options.seed,
        pct(f.drop),
        pct(f.duplicate),
        pct(f.reorder),
        pct(f.corrupt),
        delay(f),
        caps.mtu,
        lo.capacity,
    )?;
    writeln!(
        out,
        "  checksum offload: tx {}, rx {} (a capture needs real checksums; corruption needs them verified)\n",
        if caps.checksum_offload.tx { "on" } else { "off" },
        if caps.checksum_offload.rx { "on" } else { "off" },
    )
}

/// Sections 5 to 10, on the shared stack. Every socket and server thread is gone when this
/// returns `Ok`.
fn stack_sections<O: Write, T: Write, P: Write + Send + 'static>(
    t: &mut Narrator<'_, O, T>,
    net: &Net,
    options: &TourOptions,
    chain: &Mutex<LoChain<P>>,
    report: &mut TourReport,
) -> Result<(), TourError> {
    writeln!(
        t,
        "== 5. the stack (loopstack-socket): one `Stack`, shared as a blocking `Net`\n  \
         (std::net-shaped sockets on any thread; the calling thread carries each packet down,\n  \
         through `lo` and up to the receiving socket; a timer thread runs retransmissions)"
    )?;
    writeln!(t, "$ ip addr show lo")?;
    let table = net.with(|s| {
        s.ip()
            .interfaces()
            .render_ip_addr(Some("lo"), &|_| None)
            .expect("lo exists")
    });
    write!(t, "{table}")?;

    writeln!(
        t,
        "\n== 6. ping (loopstack-internet): ICMP echo (RFC 792) and ICMPv6 echo (RFC 4443 4)"
    )?;
    // A reply can be held up by twice the fault injector's delay (request and reply).
    let linger = Duration::from_millis(250)
        .max(2 * (options.faults.delay_time + options.faults.delay_jitter) + PING_INTERVAL);
    for dst in [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ] {
        let (sent, received) = ping(t, net, dst, linger)?;
        report.pings_sent += sent;
        report.ping_replies += received;
    }

    let tcp_listener = tcp_echo(t, net, report)?;
    let udp_server = udp_echo(t, net, report)?;
    let http_listener = http_hello(t, net, report)?;

    counters(t, net, chain)?;
    drop((tcp_listener, udp_server, http_listener));
    Ok(())
}

/// `ping -c 3 -i 0.01 DST`, printed as iputils prints it. Returns (sent, received).
fn ping<O: Write, T: Write>(
    t: &mut Narrator<'_, O, T>,
    net: &Net,
    dst: IpAddr,
    linger: Duration,
) -> Result<(u64, u64), TourError> {
    let interval = PING_INTERVAL.as_secs_f64();
    writeln!(t, "\n$ ping -c {PING_COUNT} -i {interval} {dst}")?;
    let any = if dst.is_ipv6() {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    };
    // The socket's "port" is the echo identifier: 0 asks for a free one.
    let socket = IcmpSocket::bind(net, SocketAddr::new(any, 0))?;
    if dst.is_ipv6() {
        writeln!(t, "PING {dst} ({dst}) {PING_SIZE} data bytes")?;
    } else {
        // iputils counts the 20-byte IPv4 header and the 8-byte ICMP header too.
        writeln!(
            t,
            "PING {dst} ({dst}) {PING_SIZE}({}) bytes of data.",
            PING_SIZE + 28
        )?;
    }
    let start = std::time::Instant::now();
    let mut seen = [false; PING_COUNT as usize + 1];
    // The round trip is timed on the wall clock. The reply's own `rtt` comes from the
    // stack's clock, which a blocking call reads once: the request, the reply and its
    // delivery all happen inside that one call on `lo`, so it reads 0 unless a fault
    // delayed a packet.
    let mut sent_at = [start; PING_COUNT as usize + 1];
    let (mut sent, mut received, mut duplicates) = (0u64, 0u64, 0u64);
    let mut rtts = Vec::new();
    for seq in 1..=PING_COUNT {
        sent_at[usize::from(seq)] = std::time::Instant::now();
        sent += 1;
        if let Err(e) = socket.send_to(dst, seq, PING_SIZE) {
            // A request lost on the way out is a lost request, as in iputils.
            writeln!(t, "ping: sendmsg: {e}")?;
        }
        let until = sent_at[usize::from(seq)]
            + if seq < PING_COUNT {
                PING_INTERVAL
            } else {
                linger
            };
        loop {
            // After the last request, stop as soon as every reply is in.
            if seq == PING_COUNT && received >= sent {
                break;
            }
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            socket.set_read_timeout(Some(left))?;
            let reply = match socket.recv() {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            };
            let arrived = std::time::Instant::now();
            let Some(slot) = seen.get_mut(usize::from(reply.seq)) else {
                continue;
            };
            let dup = std::mem::replace(slot, true);
            if dup {
                duplicates += 1;
            } else {
                received += 1;
            }
            write!(
                t,
                "{} bytes from {}: icmp_seq={} ttl={}",
                reply.len, reply.from, reply.seq, reply.ttl
            )?;
            let rtt = arrived - sent_at[usize::from(reply.seq)];
            write!(t, " time={} ms", fmt_ms(rtt))?;
            if !dup {
                rtts.push(rtt);
            }
            writeln!(t, "{}", if dup { " (DUP!)" } else { "" })?;
        }
    }
    let elapsed = start.elapsed();
    crate::ping::write_statistics(
        t,
        &dst.to_string(),
        (sent, received, duplicates),
        elapsed,
        &rtts,
    )?;
    Ok((sent, received))
}

/// iputils prints round-trip times with three significant digits below 100 ms.
fn fmt_ms(d: Duration) -> String {
    match d.as_micros() {
        u if u >= 100_000 => format!("{}", u / 1000),
        u if u >= 10_000 => format!("{}.{:01}", u / 1000, (u % 1000) / 100),
        u if u >= 1_000 => format!("{}.{:02}", u / 1000, (u % 1000) / 10),
        u => format!("{}.{:03}", u / 1000, u % 1000),
    }
}

/// Waits for a server thread, turning a panic into an error.
fn join<R>(server: JoinHandle<R>, what: &'static str) -> Result<R, TourError> {
    server
        .join()
        .map_err(|_| TourError::Server(what, io::Error::other("the thread panicked")))
}

/// Section 7: the classic echo server on 127.0.0.1:65432 and a client that checks every
/// byte. Returns the listener, so the socket list at the end shows it.
fn tcp_echo<O: Write, T: Write>(
    t: &mut Narrator<'_, O, T>,
    net: &Net,
    report: &mut TourReport,
) -> Result<TcpListener, TourError> {
    writeln!(
        t,
        "\n== 7. TCP echo (loopstack-transport, RFC 9293) on {TCP_ECHO}: the classic Python echo server"
    )?;
    writeln!(
        t,
        "server thread: bind, listen, accept; then read up to 1024 bytes and write them all back,\n  \
         until the client's FIN makes read return 0 (echo::serve_tcp_conn)\n\
         client: connect, write {TCP_ECHO_BYTES} bytes from one thread while another reads the echo\n  \
         back and checks every byte, then shut down writing (echo::tcp_client)"
    )?;
    let listener = TcpListener::bind(net, TCP_ECHO)?;
    let server = thread::Builder::new()
        .name("tour-tcp-echo".into())
        .spawn(move || {
            let served = listener
                .accept()
                .and_then(|(conn, peer)| echo::serve_tcp_conn(conn).map(|n| (peer, n)));
            (listener, served)
        })?;
    let client = echo::tcp_client(net, TCP_ECHO, TCP_ECHO_BYTES);
    // The handshake and the first segments, then the last ones and the close.
    t.trace_burst(10, 8)?;
    let client = client?;
    let (listener, served) = join(server, "TCP echo")?;
    let (peer, served) = served.map_err(|e| TourError::Server("TCP echo", e))?;
    writeln!(t, "Connected by {peer}")?;
    writeln!(
        t,
        "echoed {} bytes intact in {:.1} ms ({:.0} MB/s each way); the server echoed {served} bytes",
        client.bytes,
        client.elapsed.as_secs_f64() * 1e3,
        client.throughput() / 1e6
    )?;
    report.tcp_echoed = client.bytes;
    Ok(listener)
}

/// Section 8: a UDP echo on [::1]:7, and a datagram to a port nobody listens on. Returns
/// the server's socket, so the socket list at the end shows it.
fn udp_echo<O: Write, T: Write>(
    t: &mut Narrator<'_, O, T>,
    net: &Net,
    report: &mut TourReport,
) -> Result<UdpSocket, TourError> {
    writeln!(
        t,
        "\n== 8. UDP echo (RFC 768) on {UDP_ECHO}, the echo port (RFC 862)"
    )?;
    writeln!(
        t,
        "client: {UDP_ECHO_BYTES} bytes in datagrams of {} bytes, each waiting for its echo; UDP\n  \
         promises nothing, so a datagram whose echo does not come back in time is sent again\n  \
         (echo::udp_client; the server is echo::serve_udp)",
        echo::UDP_CHUNK
    )?;
    let socket = UdpSocket::bind(net, UDP_ECHO)?;
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = Arc::clone(&stop);
        thread::Builder::new()
            .name("tour-udp-echo".into())
            .spawn(move || {
                let served = echo::serve_udp(&socket, &stop);
                (socket, served)
            })?
    };
    let client = echo::udp_client(net, UDP_ECHO, UDP_ECHO_BYTES);
    // The server checks `stop` every 20 ms, so this join is short whatever the client did.
    stop.store(true, Ordering::Relaxed);
    let (socket, served) = join(server, "UDP echo")?;
    let client = client?;
    let served = served.map_err(|e| TourError::Server("UDP echo", e))?;
    writeln!(
        t,
        "echoed {} bytes intact; {} sent again; the server echoed {}",
        client.bytes,
        plural(client.resent, "datagram"),
        plural(served, "datagram")
    )?;
    report.udp_echoed = client.bytes;
    report.udp_resent = client.resent;

    // Nobody listens on the discard port: the stack answers with an ICMPv6 Port
    // Unreachable (RFC 4443 3.1), which a connected socket reports on its next call.
    let closed = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 9);
    let probe = UdpSocket::bind(net, "[::1]:0")?;
    probe.connect(closed)?;
    probe.send(b"anyone?")?;
    probe.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut buf = [0u8; 64];
    match probe.recv(&mut buf) {
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => writeln!(
            t,
            "to {closed}, where nobody listens: {e} (an ICMPv6 Port Unreachable came back)"
        )?,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => writeln!(
            t,
            "to {closed}, where nobody listens: no answer (the datagram or the ICMPv6 error was lost)"
        )?,
        Err(e) => return Err(e.into()),
        Ok(_) => writeln!(t, "to {closed}: unexpectedly answered")?,
    }
    Ok(socket)
}

/// Section 9: the "Hello, Loopback!" server, fetched `curl -v` style. Returns the
/// listener, so the socket list at the end shows it.
fn http_hello<O: Write, T: Write>(
    t: &mut Narrator<'_, O, T>,
    net: &Net,
    report: &mut TourReport,
) -> Result<TcpListener, TourError> {
    writeln!(
        t,
        "\n== 9. HTTP/1.1 (RFC 9112) on {HTTP}: the \"{}\" server (http::serve)",
        http::HELLO
    )?;
    let listener = TcpListener::bind(net, HTTP)?;
    let server = thread::Builder::new()
        .name("tour-http".into())
        .spawn(move || {
            let served = http::serve(&listener, 1);
            (listener, served)
        })?;
    writeln!(t, "$ curl -v http://{HTTP}/")?;
    let response = http::get(net, HTTP, "/", t);
    let response = response?;
    let (listener, served) = join(server, "HTTP")?;
    served.map_err(|e| TourError::Server("HTTP", e))?;
    writeln!(t, "{}", String::from_utf8_lossy(&response.body))?;
    report.http_status = response.status;
    Ok(listener)
}

/// `ss` state names, which shorten two of RFC 9293's.
fn ss_state(state: State) -> &'static str {
    match state {
        State::Established => "ESTAB",
        State::SynReceived => "SYN-RECV",
        s => s.name(),
    }
}

/// An address as `ss` shows it: `*` for no port, IPv6 in brackets.
fn ss_addr(a: SocketAddr) -> String {
    match (a.port(), a) {
        (0, SocketAddr::V4(v4)) => format!("{}:*", v4.ip()),
        (0, SocketAddr::V6(v6)) => format!("[{}]:*", v6.ip()),
        _ => a.to_string(),
    }
}

/// One line of `ss -tuan`.
fn ss_row(
    netid: &str,
    state: &str,
    recv_q: &dyn std::fmt::Display,
    send_q: &dyn std::fmt::Display,
    local: &str,
    peer: &str,
) -> String {
    format!("{netid:<6}{state:<12}{recv_q:>6} {send_q:>6} {local:<22}{peer}\n")
}

/// Section 10: interface counters, MIB counters, sockets, pool and faults.
fn counters<O: Write, T: Write, P: Write + Send + 'static>(
    t: &mut Narrator<'_, O, T>,
    net: &Net,
    chain: &Mutex<LoChain<P>>,
) -> Result<(), TourError> {
    // One look at the stack, under its lock, so the numbers agree with each other.
    let (ip_addr, snmp, sockets, pool) = net.with(|s| {
        let lo = s.device(InterfaceId::LOOPBACK).map(|d| d.stats());
        let ip_addr = s
            .ip()
            .interfaces()
            .render_ip_addr(Some("lo"), &|id| lo.filter(|_| id == InterfaceId::LOOPBACK))
            .expect("lo exists");
        let ip = s.ip().stats();
        let transport = s.transport();
        let mut snmp = String::new();
        let mut snmp6 = String::new();
        let rendered = [
            ip.render_snmp(),
            transport.tcp.stats().render_snmp(),
            transport.udp.stats().render_snmp(),
            ip.render_snmp6(),
        ];
        for line in rendered.iter().flat_map(|r| r.lines()) {
            // `/proc/net/snmp` lines are `Group: ...`; `/proc/net/snmp6` ones `Name value`,
            // of which only the non-zero are shown, as `nstat` shows them.
            if line.contains(':') {
                snmp.push_str(line);
                snmp.push('\n');
            } else if line.split_whitespace().last() != Some("0") {
                snmp6.push_str(line);
                snmp6.push('\n');
            }
        }
        let mut sockets = ss_row(
            "Netid",
            "State",
            &"Recv-Q",
            &"Send-Q",
            "Local Address:Port",
            "Peer Address:Port",
        );
        for e in s.tcp().sockets() {
            sockets += &ss_row(
                "tcp",
                ss_state(e.state),
                &e.recv_q,
                &e.send_q,
                &ss_addr(e.local),
                &ss_addr(e.remote),
            );
        }
        for (_, local, peer, queued) in s.udp().sockets() {
            let any = SocketAddr::new(
                if local.is_ipv6() {
                    IpAddr::V6(Ipv6Addr::UNSPECIFIED)
                } else {
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                },
                0,
            );
            let state = if peer.is_some() { "ESTAB" } else { "UNCONN" };
            sockets += &ss_row(
                "udp",
                state,
                &queued,
                &0,
                &ss_addr(local),
                &ss_addr(peer.unwrap_or(any)),
            );
        }
        (ip_addr, snmp + &snmp6, sockets, s.pool().stats())
    });
    // Taken apart from the stack's lock: the stack takes this one inside its own.
    let faults = lock(chain).inner().fault_stats();
    let timers = net.stats();

    writeln!(t, "\n== 10. counters")?;
    writeln!(t, "$ ip -s addr show lo")?;
    write!(t, "{ip_addr}")?;
    writeln!(
        t,
        "\n$ netstat -s, as the raw counters it reads: /proc/net/snmp, then the non-zero lines of /proc/net/snmp6"
    )?;
    write!(t, "{snmp}")?;
    writeln!(
        t,
        "\n$ ss -tuan   (what is left: the listeners, and TIME-WAIT for whoever closed first, RFC 9293 3.6)"
    )?;
    write!(t, "{sockets}")?;
    writeln!(t, "\n{pool}")?;
    writeln!(t, "{} on the stack's lo", describe_faults(&faults))?;
    writeln!(
        t,
        "timer thread: woke {}, found a timer due {}",
        plural(timers.timer_wakeups, "time"),
        plural(timers.timer_polls, "time")
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A capture sink the test can read after the tour dropped its end.
    #[derive(Clone, Default)]
    struct SharedBuf(Arc<Mutex<Vec<u8>>>);

    impl Write for SharedBuf {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    struct Run {
        report: TourReport,
        out: String,
        trace: String,
        pcap: Vec<u8>,
    }

    fn tour(options: &TourOptions) -> Run {
        let mut out = Vec::new();
        let mut trace = Vec::new();
        let pcap = SharedBuf::default();
        let report = run(options, &mut out, &mut trace, pcap.clone()).unwrap();
        let pcap = pcap.0.lock().unwrap().clone();
        Run {
            report,
            out: String::from_utf8(out).unwrap(),
            trace: String::from_utf8(trace).unwrap(),
            pcap,
        }
    }

    /// The records of a classic little-endian pcap file, parsed from the format
    /// description: (seconds, microseconds, packet).
    fn pcap_records(file: &[u8]) -> Vec<(u32, u32, Vec<u8>)> {
        let word = |i: usize| u32::from_le_bytes(file[i..i + 4].try_into().unwrap());
        assert_eq!(word(0), 0xa1b2_c3d4, "microsecond pcap magic");
        assert_eq!(&file[4..8], &[2, 0, 4, 0], "version 2.4");
        assert_eq!(word(20), 101, "LINKTYPE_RAW");
        let mut records = Vec::new();
        let mut i = 24;
        while i < file.len() {
            let (sec, usec, incl, orig) = (word(i), word(i + 4), word(i + 8), word(i + 12));
            assert_eq!(incl, orig, "no packet is cut");
            assert!(usec < 1_000_000);
            records.push((sec, usec, file[i + 16..i + 16 + incl as usize].to_vec()));
            i += 16 + incl as usize;
        }
        assert_eq!(i, file.len(), "no trailing bytes");
        records
    }

    fn assert_sections(out: &str) {
        for needle in [
            "== 1. the packet pool",
            "== 2. the stack's `lo`",
            "== 3. by hand, sending",
            "== 4. by hand, receiving",
            "$ ip addr show lo\n1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536",
            "    inet 127.0.0.1/8 scope host lo\n",
            "    inet6 ::1/128 scope host",
            "PING 127.0.0.1 (127.0.0.1) 56(84) bytes of data.\n",
            "PING ::1 (::1) 56 data bytes\n",
            "--- 127.0.0.1 ping statistics ---\n3 packets transmitted, ",
            "--- ::1 ping statistics ---\n3 packets transmitted, ",
            "== 7. TCP echo",
            "Connected by 127.0.0.1:",
            "echoed 1048576 bytes intact",
            "== 8. UDP echo",
            "echoed 131072 bytes intact",
            "$ curl -v http://127.0.0.1:8080/\n*   Trying 127.0.0.1:8080...\n",
            "> GET / HTTP/1.1\n",
            "< HTTP/1.1 200 OK\n",
            "\nHello, Loopback!\n",
            "== 10. counters",
            "$ ip -s addr show lo\n",
            "    RX:  bytes packets errors dropped",
            "\nIp: InReceives",
            "\nIcmp: InMsgs",
            "\nTcp: ActiveOpens",
            "\nUdp: InDatagrams",
            "\nIp6InReceives",
            "\nIcmp6InEchos",
            "$ ss -tuan",
            "tcp   LISTEN           0    128 127.0.0.1:65432       0.0.0.0:*\n",
            "tcp   LISTEN           0    128 127.0.0.1:8080        0.0.0.0:*\n",
            "udp   UNCONN           0      0 [::1]:7               [::]:*\n",
            "pool class  1920B: ",
            " on the stack's lo\n",
        ] {
            assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
        }
        assert!(!out.contains("later releases"), "{out}");
    }

    #[test]
    fn a_clean_tour_runs_every_section_and_captures_the_traffic() {
        let r = tour(&TourOptions::default());
        assert_sections(&r.out);
        let w = r.report.walk;
        assert_eq!((w.sent, w.received_ok), (6, 6), "{}", r.out);
        assert_eq!((w.received_bad, w.received_malformed, w.refused), (0, 0, 0));
        assert_eq!((r.report.pings_sent, r.report.ping_replies), (6, 6));
        assert!(r
            .out
            .contains("3 packets transmitted, 3 received, 0% packet loss"));
        assert!(r
            .out
            .contains("64 bytes from 127.0.0.1: icmp_seq=3 ttl=64 time="));
        assert!(r.out.contains("64 bytes from ::1: icmp_seq=1 ttl=64 time="));
        assert_eq!(r.report.tcp_echoed, TCP_ECHO_BYTES);
        assert_eq!(r.report.udp_echoed, UDP_ECHO_BYTES);
        assert_eq!(r.report.http_status, 200);
        assert!(r
            .out
            .contains("connection refused (an ICMPv6 Port Unreachable came back)"));
        // The HTTP server closed first (RFC 9293 3.6): its end waits in TIME-WAIT.
        assert!(
            r.out.contains("TIME-WAIT        0      0 127.0.0.1:8080"),
            "{}",
            r.out
        );

        // The capture holds the stack's traffic, flushed: one record per packet counted.
        let records = pcap_records(&r.pcap);
        assert_eq!(r.report.captured, records.len() as u64);
        assert_eq!(r.report.faults.seen, records.len() as u64);
        // ping (4 packets each way for 3 requests on two addresses), the echoes, HTTP.
        assert!(records.len() > 12 + 16 + 10, "{}", records.len());
        let mut kinds = std::collections::BTreeSet::new();
        for (_, _, bytes) in &records {
            let p = SlicedPacket::from_ip(bytes).expect("every captured packet parses");
            let v6 = matches!(p.net, Some(NetSlice::Ipv6(_)));
            kinds.insert(match p.transport {
                Some(TransportSlice::Icmpv4(_)) => "icmp",
                Some(TransportSlice::Icmpv6(_)) => "icmp6",
                Some(TransportSlice::Udp(_)) if v6 => "udp6",
                Some(TransportSlice::Tcp(_)) if !v6 => "tcp",
                _ => "other",
            });
        }
        assert_eq!(
            kinds.into_iter().collect::<Vec<_>>(),
            ["icmp", "icmp6", "tcp", "udp6"]
        );
        // Timestamps are the wall clock's: well after 2020.
        assert!(records[0].0 > 1_577_836_800);

        // The trace: the walk's packets, then the stack's, the bulk transfer elided.
        assert!(r
            .trace
            .contains(" lo tx IP 127.0.0.1 > 127.0.0.1: ICMP echo request"));
        assert!(r
            .trace
            .contains("more trace lines (the capture has every packet)"));
        // Every buffer is back in the pool before the counters are printed.
        assert!(
            r.out.contains("pool class  1920B: 0/2048 in use"),
            "{}",
            r.out
        );
    }

    #[test]
    fn with_faults_every_byte_still_arrives() {
        let r = tour(&TourOptions {
            seed: 5,
            faults: FaultConfig {
                drop: 0.03,
                duplicate: 0.03,
                reorder: 0.03,
                delay: 0.03,
                corrupt: 0.03,
                delay_time: Duration::from_millis(5),
                ..FaultConfig::default()
            },
        });
        assert_sections(&r.out);
        assert_eq!(r.report.tcp_echoed, TCP_ECHO_BYTES);
        assert_eq!(r.report.udp_echoed, UDP_ECHO_BYTES);
        assert_eq!(r.report.http_status, 200);
        assert_eq!(r.report.pings_sent, 6);
        assert!(r.report.ping_replies <= 6);
        let f = r.report.faults;
        assert!(f.dropped + f.duplicated + f.corrupted > 0, "{f:?}");
        assert!(
            r.out.contains("checksum offload: tx off, rx off"),
            "{}",
            r.out
        );
        let records = pcap_records(&r.pcap);
        assert_eq!(r.report.captured, records.len() as u64);
    }

    #[test]
    fn invalid_faults_fail_before_anything_is_written() {
        let mut out = Vec::new();
        let pcap = SharedBuf::default();
        let err = run(
            &TourOptions {
                faults: FaultConfig {
                    drop: 1.5,
                    ..FaultConfig::default()
                },
                ..TourOptions::default()
            },
            &mut out,
            io::sink(),
            pcap.clone(),
        )
        .unwrap_err();
        assert!(matches!(err, TourError::Faults(_)), "{err}");
        assert!(out.is_empty());
        assert!(pcap.0.lock().unwrap().is_empty());
    }

    /// The walk alone, as [`run`] narrates it: (report, narration, trace).
    fn walk(options: &TourOptions) -> (WalkReport, String, String) {
        let pool = PacketPool::new(PoolConfig::default()).unwrap();
        let log = TraceLog::default();
        let dev = walk_device(options, log.clone()).unwrap();
        let (mut out, mut trace) = (Vec::new(), Vec::new());
        let report = {
            let mut t = Narrator {
                out: &mut out,
                trace: &mut trace,
                log,
                at_line_start: true,
            };
            let report = packet_walk(&pool, dev, &mut t).unwrap();
            t.trace_burst(TRACE_BURST, TRACE_BURST).unwrap();
            report
        };
        (
            report,
            String::from_utf8(out).unwrap(),
            String::from_utf8(trace).unwrap(),
        )
    }

    #[test]
    fn the_walk_delivers_every_hand_built_packet_intact() {
        let (r, out, trace) = walk(&TourOptions::default());
        assert_eq!((r.sent, r.received_ok, r.refused), (6, 6, 0), "{out}");
        assert!(out.contains("payload 16 B \"Hello, Loopback!\""), "{out}");
        assert!(out.contains("payload 65507 B"), "{out}");
        assert!(out.contains("pool buffers still in use: 0"), "{out}");
        assert_eq!(trace.lines().filter(|l| l.contains(" lo tx ")).count(), 6);
        assert_eq!(trace.lines().filter(|l| l.contains(" lo rx ")).count(), 6);
        assert!(trace.starts_with("0.000100s lo tx IP 127.0.0.1 > 127.0.0.1: ICMP echo request"));
    }

    /// The blocking part of the tour runs on threads and the wall clock, so only the walk
    /// can be compared run to run; poll-mode determinism is tested in loopstack-socket.
    #[test]
    fn the_walk_is_the_same_for_the_same_seed() {
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
        let a = walk(&options);
        assert_eq!(a, walk(&options));
        let seeds_differ = (8..20).any(|seed| {
            walk(&TourOptions {
                seed,
                ..options.clone()
            }) != a
        });
        assert!(seeds_differ);
    }

    #[test]
    fn corruption_is_caught_by_checksums() {
        let (r, out, _) = walk(&TourOptions {
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
    }

    #[test]
    fn every_dropped_packet_is_accounted_for() {
        let (r, out, _) = walk(&TourOptions {
            faults: FaultConfig {
                drop: 1.0,
                ..FaultConfig::default()
            },
            ..TourOptions::default()
        });
        assert_eq!(r.received_ok, 0);
        assert!(out.contains("faults: 6 seen, 6 dropped"), "{out}");
        assert!(out.contains("nothing came back"), "{out}");
    }

    #[test]
    fn a_long_trace_burst_shows_its_ends() {
        let mut log = TraceLog::default();
        for i in 0..1000 {
            writeln!(log, "packet {i}").unwrap();
        }
        write!(log, "half a li").unwrap();
        let mut shown = Vec::new();
        log.drain_to(&mut shown, 3, 2).unwrap();
        assert_eq!(
            String::from_utf8(shown).unwrap(),
            "packet 0\npacket 1\npacket 2\n\
             ... 995 more trace lines (the capture has every packet) ...\n\
             packet 998\npacket 999\n"
        );
        // The unfinished line waits for its end; a short burst is shown whole.
        writeln!(log, "ne").unwrap();
        writeln!(log, "next").unwrap();
        let mut shown = Vec::new();
        log.drain_to(&mut shown, 3, 2).unwrap();
        assert_eq!(String::from_utf8(shown).unwrap(), "half a line\nnext\n");
    }

    #[test]
    fn narration_never_splits_a_line_for_the_trace() {
        let log = TraceLog::default();
        let (mut out, mut trace) = (Vec::new(), Vec::new());
        {
            let mut t = Narrator {
                out: &mut out,
                trace: &mut trace,
                log: log.clone(),
                at_line_start: true,
            };
            write!(t, "first ").unwrap();
            writeln!(log.clone(), "a packet").unwrap();
            writeln!(t, "line").unwrap();
            assert!(t.trace.is_empty(), "the trace waits for the line to end");
            writeln!(t, "second line").unwrap();
        }
        assert_eq!(out, b"first line\nsecond line\n");
        assert_eq!(trace, b"a packet\n");
    }

    #[test]
    fn percentages_read_as_the_command_line_takes_them() {
        assert_eq!(pct(0.0), "0%");
        assert_eq!(pct(0.05), "5%");
        assert_eq!(pct(0.125), "12.5%");
        assert_eq!(pct(1.0), "100%");
    }
}
