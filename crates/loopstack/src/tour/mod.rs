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

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime};

use loopstack_buf::{PoolConfig, PoolError};
use loopstack_internet::iface::InterfaceId;
use loopstack_link::{
    DeviceCapabilities, FaultConfig, FaultConfigError, FaultInjector, FaultStats, Loopback,
    LoopbackConfig, PcapMode, PcapWriter, Tracer,
};
use loopstack_socket::{IcmpSocket, Net, Stack, StackConfig, StackError, TcpListener, UdpSocket};
use loopstack_transport::tcp::State;
use thiserror::Error;

use crate::echo::{self, EchoError};
use crate::http::{self, HttpError};

mod narration;
mod walk;

use narration::{lock, LoChain, Narrator, SharedDevice, TraceLog, TRACE_BURST};
use walk::{describe_faults, packet_walk, walk_device};

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

/// Section 8: a UDP echo on `[::1]:7`, and a datagram to a port nobody listens on. Returns
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
        let crate::netstat::Mib { snmp, snmp6 } = crate::netstat::mib(s);
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

#[cfg(test)]
mod tests {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    use loopstack_buf::PacketPool;
    use loopstack_testkit::SharedBuf;

    use super::*;

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
        let pcap = pcap.bytes();
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
        assert!(pcap.bytes().is_empty());
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
