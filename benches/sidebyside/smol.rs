//! The side-by-side scenarios run by smoltcp 0.14 (the latest release), the peer loopstack
//! is compared with.
//!
//! Both ends live on one smoltcp [`Interface`] over its own [`Loopback`] device with
//! [`Medium::Ip`] (no link header, no neighbour discovery), holding 127.0.0.1/8 and ::1/128.
//! One thread drives everything with [`Interface::poll`]: a poll first takes in every packet
//! the device holds, then lets the sockets send until none has anything left (since smoltcp
//! 0.13; 0.12 sent at most one packet per socket per poll). So a packet needs two polls to
//! cross (out on one, in on the next), and a whole burst of datagrams leaves in one poll.
//!
//! The clock is simulated, as in `benches/transport.rs`: it moves 1 µs per poll, so smoltcp's
//! timers behave as on a fast host and nothing reads the wall clock.
//!
//! Every setting is chosen for smoltcp's best showing, and each is explained where it is made
//! (`Host::new`, `tcp_socket`, `udp_socket` and the constructors). Two things are
//! smoltcp's own design and are measured as they are, not worked around:
//!
//! - **[`Loopback`] allocates a `Vec` per packet** (`vec![0; len]` in its transmit token, which
//!   also zeroes it) and frees it when the packet has been received. loopstack's `lo` recycles
//!   pooled buffers instead.
//! - **[`Loopback`] declares checksums `ignored`**, so smoltcp neither computes nor verifies
//!   IPv4, TCP or UDP checksums on it. loopstack's `lo` offloads them the same way, as
//!   Linux's does: only the pseudo-header's sum is written on send, nothing is verified on
//!   receive, and the IPv4 header checksum (20 bytes) is still computed.
//!
//! One thing the harness controls on this side of the API: where the bulk scenario's
//! application buffers sit relative to the socket rings they are copied to and from (see
//! `placed`). On AMD Zen, glibc copies 64 KiB with `rep movsb`, which runs about 15 times
//! slower (3 GB/s instead of 45-50 GB/s, measured on the 2-vCPU EPYC VM) when the destination
//! is 1 to about 31 bytes ahead of the source modulo 4 KiB. The writer's copy into the send
//! ring keeps the same distance chunk after chunk (chunk and ring are both 64 KiB, and the
//! ring's offset follows the stream's), and so does the reader's main copy out of the receive
//! ring (each chunk arrives as one full segment at ring offset 0 and a 41- or 61-byte rest).
//! So wherever malloc happened to put those buffers decided the result: in one build of the
//! criterion bench, IPv4 bulk ran at 1.9 GiB/s and IPv6 at 6.4 GiB/s, and `perf` put two
//! thirds of the time in the writer's copy; placed, both ran at 6.6-6.9 GiB/s. The copies
//! inside smoltcp (ring to packet, packet to ring) depend on where its per-packet `Vec` lands,
//! which this file cannot choose; the timing binaries' global allocator
//! (`loopstack_testkit::PageAlignedLarge`) starts that `Vec` and the rings on page
//! boundaries, so those copies are a header's length apart modulo 4 KiB and run at full
//! speed. (Without it, a change elsewhere in the benchmark that only moved what the process
//! had allocated before put smoltcp's IPv6 bulk at 1.3-1.5 GiB/s instead of about 6.)
//!
//! Every loop that polls gives up with a panic after `MAX_IDLE_POLLS` (100,000) polls in which
//! nothing moved, so a bug cannot hang CI.

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Loopback, Medium};
use smoltcp::socket::{tcp, udp, Socket};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpEndpoint};

use super::{pattern, Bulk, Family, OneWay, PingPong, BULK_CHUNK, BURST, SOCKET_BUFFER, WARM_UP};

/// How far the simulated clock moves per poll.
const TICK: Duration = Duration::from_micros(1);
/// Polls in a row without progress after which a scenario panics (100 ms of simulated time:
/// ten times smoltcp's delayed-ACK timer and its minimum retransmission timeout, so anything
/// that is merely slow has moved long before).
const MAX_IDLE_POLLS: u32 = 100_000;
/// The server's port.
const SERVER_PORT: u16 = 7000;
/// The client's port.
const CLIENT_PORT: u16 = 49152;

/// A TCP connection moving [`BULK_CHUNK`]-sized pieces client to server over smoltcp.
pub fn tcp_bulk(family: Family) -> impl Bulk {
    let mut host = Host::new();
    // Nagle stays on here (smoltcp's default): the writer always has a whole window's worth
    // queued, so segments are full-sized or end what the window allows, and Nagle never holds
    // one back. Measured: the same polls and instructions per chunk with it off.
    let pair = host.tcp_connect(family, true);
    // The writer's chunk and the reader's buffer, each placed 2 KiB (mod 4 KiB) after the ring
    // it meets, away from the `rep movsb` slow case (module docs).
    let (mut data, data_start) = placed(pair.client_tx);
    for (i, b) in data[data_start..data_start + BULK_CHUNK]
        .iter_mut()
        .enumerate()
    {
        *b = pattern(i);
    }
    let (buf, buf_start) = placed(pair.server_rx);
    let mut b = SmolBulk {
        host,
        client: pair.client,
        server: pair.server,
        data,
        data_start,
        buf,
        buf_start,
    };
    for _ in 0..WARM_UP {
        b.transfer(1);
    }
    b
}

/// A TCP connection echoing `size`-byte messages over smoltcp.
pub fn tcp_ping_pong(family: Family, size: usize) -> impl PingPong {
    assert!(size > 0, "a ping-pong message needs at least one byte");
    let mut host = Host::new();
    // Nagle off on both ends (smoltcp's TCP_NODELAY): each message is one small segment that
    // must leave at once, not wait for the ACK of the one before.
    let pair = host.tcp_connect(family, false);
    let mut p = SmolTcpPingPong {
        host,
        client: pair.client,
        server: pair.server,
        msg: (0..size).map(pattern).collect(),
        at_server: vec![0; size],
        at_client: vec![0; size],
        round: 0,
    };
    for _ in 0..WARM_UP {
        p.round_trip();
    }
    p
}

/// Two UDP sockets echoing `size`-byte datagrams over smoltcp.
pub fn udp_ping_pong(family: Family, size: usize) -> impl PingPong {
    let mut host = Host::new();
    let (client, server, client_ep, server_ep) = host.udp_pair(family, size);
    let mut p = SmolUdpPingPong {
        host,
        client,
        server,
        client_ep,
        server_ep,
        msg: (0..size).map(pattern).collect(),
        at_server: vec![0; size],
        at_client: vec![0; size],
        round: 0,
    };
    for _ in 0..WARM_UP {
        p.round_trip();
    }
    p
}

/// `size`-byte datagrams sent client to server over smoltcp, in bursts.
pub fn udp_one_way(family: Family, size: usize) -> impl OneWay {
    assert!(size > 0, "the burst check reads the first and last byte");
    let mut host = Host::new();
    let (client, server, _, server_ep) = host.udp_pair(family, size);
    let mut o = SmolOneWay {
        host,
        client,
        server,
        server_ep,
        msg: (0..size).map(pattern).collect(),
        buf: vec![0; size],
    };
    for _ in 0..WARM_UP {
        o.burst(BURST);
    }
    o
}

/// The page size the copy slowdown repeats with (the CPU compares the low 12 bits of load
/// and store addresses).
const PAGE: usize = 4096;
/// Where, modulo [`PAGE`], a bulk application buffer starts relative to the ring it is copied
/// to or from: half a page, as far from the slow distances (destination 1-31 bytes ahead) as
/// it gets, and a multiple of 64 so both ends keep the same alignment within a cache line.
const RING_DISTANCE: usize = PAGE / 2;

/// A zeroed buffer with room for a [`BULK_CHUNK`] window at the returned offset, where the
/// window starts [`RING_DISTANCE`] bytes (mod [`PAGE`]) after the address `ring`. Copies
/// between the window and the ring at the same offset in each then run at full speed
/// (module docs).
fn placed(ring: usize) -> (Vec<u8>, usize) {
    let buf = vec![0; BULK_CHUNK + PAGE];
    let base = buf.as_ptr() as usize % PAGE;
    let start = (ring % PAGE + RING_DISTANCE + PAGE - base) % PAGE;
    (buf, start)
}

// ---------------------------------------------------------------------- the host

/// One smoltcp interface over its loopback device, the sockets on it, and the clock.
struct Host {
    iface: Interface,
    device: Loopback,
    sockets: SocketSet<'static>,
    now: Instant,
}

impl Host {
    /// An interface holding 127.0.0.1/8 and ::1/128, with no sockets yet.
    fn new() -> Host {
        // `Medium::Ip`: IP packets straight on the device, no Ethernet header and no ARP or
        // NDP, which is what a loopback interface is (and what loopstack's `lo` does).
        // The device's MTU is 65535, so a TCP segment carries up to 65495 (IPv4) or 65475
        // (IPv6) bytes and a 64 KiB chunk is two segments.
        let mut device = Loopback::new(Medium::Ip);
        let now = Instant::ZERO;
        let mut config = Config::new(HardwareAddress::Ip);
        // A fixed seed (it picks the initial sequence numbers), so every run is the same.
        config.random_seed = 0x5eed;
        let mut iface = Interface::new(config, &mut device, now);
        iface.update_ip_addrs(|addrs| {
            // The two addresses fill smoltcp's default IFACE_MAX_ADDR_COUNT (2) exactly.
            addrs
                .push(IpCidr::new(IpAddress::v4(127, 0, 0, 1), 8))
                .expect("room for 127.0.0.1/8");
            addrs
                .push(IpCidr::new(IpAddress::v6(0, 0, 0, 0, 0, 0, 0, 1), 128))
                .expect("room for ::1/128");
        });
        Host {
            iface,
            device,
            // Two sockets per scenario; the set grows its `Vec` once, here.
            sockets: SocketSet::new(Vec::with_capacity(2)),
            now,
        }
    }

    /// Moves the clock one tick and polls the interface once.
    fn poll(&mut self) {
        self.now += TICK;
        // What changed is read from the sockets themselves, so the result is not needed.
        let _ = self
            .iface
            .poll(self.now, &mut self.device, &mut self.sockets);
    }

    fn tcp(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket<'static>>(h)
    }

    fn udp(&mut self, h: SocketHandle) -> &mut udp::Socket<'static> {
        self.sockets.get_mut::<udp::Socket<'static>>(h)
    }

    /// A connected pair on `family`'s loopback address, established.
    fn tcp_connect(&mut self, family: Family, nagle: bool) -> TcpPair {
        let (server, server_rx, _) = tcp_socket(nagle);
        let (client, _, client_tx) = tcp_socket(nagle);
        let server = self.sockets.add(server);
        let client = self.sockets.add(client);
        // smoltcp has no accept: the listening socket itself becomes the connection.
        self.tcp(server)
            .listen(family.addr(SERVER_PORT))
            .expect("listen");
        let cx = self.iface.context();
        self.sockets
            .get_mut::<tcp::Socket<'static>>(client)
            .connect(cx, family.addr(SERVER_PORT), family.addr(CLIENT_PORT))
            .expect("connect");
        let mut watchdog = Watchdog::new("tcp handshake");
        while !(self.tcp(client).state() == tcp::State::Established
            && self.tcp(server).state() == tcp::State::Established)
        {
            self.poll();
            watchdog.idle(self);
        }
        TcpPair {
            client,
            server,
            client_tx,
            server_rx,
        }
    }

    /// Two bound UDP sockets for `size`-byte datagrams: (client, server, client's endpoint,
    /// server's endpoint).
    fn udp_pair(
        &mut self,
        family: Family,
        size: usize,
    ) -> (SocketHandle, SocketHandle, IpEndpoint, IpEndpoint) {
        let (client_addr, server_addr) = (family.addr(CLIENT_PORT), family.addr(SERVER_PORT));
        let client = self.sockets.add(udp_socket(size));
        let server = self.sockets.add(udp_socket(size));
        // Bound to the address as well as the port, so sending uses it as the source and
        // skips smoltcp's source address selection.
        self.udp(client).bind(client_addr).expect("bind client");
        self.udp(server).bind(server_addr).expect("bind server");
        (client, server, client_addr.into(), server_addr.into())
    }

    /// What the sockets are doing, for a stall's panic message.
    fn describe(&self) -> String {
        let mut out = format!("at {} µs:", self.now.total_micros());
        for (h, socket) in self.sockets.iter() {
            match socket {
                Socket::Tcp(s) => out.push_str(&format!(
                    " [tcp {h}: {}, {} B to send, {} B to read]",
                    s.state(),
                    s.send_queue(),
                    s.recv_queue()
                )),
                Socket::Udp(s) => out.push_str(&format!(
                    " [udp {h}: {:?}, can send {}, can recv {}]",
                    s.endpoint(),
                    s.can_send(),
                    s.can_recv()
                )),
                // Other socket kinds exist only if another crate in the build switches on
                // their smoltcp features; these scenarios never make them.
                #[allow(unreachable_patterns)]
                _ => out.push_str(&format!(" [socket {h}]")),
            }
        }
        out
    }
}

/// An established connection, and where the rings the bulk copies meet live.
struct TcpPair {
    client: SocketHandle,
    server: SocketHandle,
    /// Address of the client's send ring.
    client_tx: usize,
    /// Address of the server's receive ring.
    server_rx: usize,
}

/// A TCP socket with the settings of every TCP scenario here, and the addresses of its
/// receive and send rings (for `placed`).
fn tcp_socket(nagle: bool) -> (tcp::Socket<'static>, usize, usize) {
    // 64 KiB each way (`SOCKET_BUFFER`), as every implementation in the comparison. A 64 KiB
    // receive buffer makes smoltcp offer window scaling (shift 1), so the whole buffer can be
    // advertised.
    let (rx, tx) = (vec![0; SOCKET_BUFFER], vec![0; SOCKET_BUFFER]);
    // Moving a `Vec` into the socket keeps its heap block where it is.
    let (rx_at, tx_at) = (rx.as_ptr() as usize, tx.as_ptr() as usize);
    let mut s = tcp::Socket::new(tcp::SocketBuffer::new(rx), tcp::SocketBuffer::new(tx));
    s.set_nagle_enabled(nagle);
    // The delayed ACK stays at smoltcp's default (10 ms), set explicitly so the choice shows.
    // Turning it off (`set_ack_delay(None)`) was measured and costs in both TCP scenarios:
    // - ping-pong: each side sends a bare ACK for every message instead of carrying it on the
    //   next one (four segments per round trip instead of two); 50% more instructions per
    //   round trip (callgrind: 12.0 k against 8.0 k) and 1.5 to 2 times the time.
    // - bulk: smoltcp already answers at once when the reader frees the buffer (a window
    //   update that doubles the window goes out without delay), so the extra per-segment
    //   ACKs only add work (2% more instructions; the same polls per chunk).
    // The timer never fires in these scenarios: the clock moves 1 µs per poll and every
    // exchange is over within a few polls, so an ACK that waits always rides on data.
    s.set_ack_delay(Some(Duration::from_millis(10)));
    // No congestion control. It is already the default without smoltcp's `socket-tcp-reno`
    // and `socket-tcp-cubic` features, but set here so that a feature switched on elsewhere
    // in the build cannot change the scenario. Loopback loses nothing; the 64 KiB window is
    // the only limit, as with loopstack on `lo`.
    s.set_congestion_control(tcp::CongestionControl::None);
    // No TCP timestamps (smoltcp's default: no `tsval` generator; loopstack's poll-mode
    // side turns its own off to match), and no keep-alive or timeout (also defaults):
    // nothing but the exchange itself is on the wire.
    (s, rx_at, tx_at)
}

/// A UDP socket with room for a whole burst of `size`-byte datagrams each way.
fn udp_socket(size: usize) -> udp::Socket<'static> {
    // `BURST` metadata slots and exactly `BURST` datagrams of payload. Every datagram in a
    // scenario has the same size and the ring is a whole number of them, so smoltcp's packet
    // ring never needs padding at its end. A longer burst is sent in rounds by
    // `SmolOneWay::burst`.
    let buffer = || {
        udp::PacketBuffer::new(
            vec![udp::PacketMetadata::EMPTY; BURST],
            vec![0; BURST * size.max(1)],
        )
    };
    udp::Socket::new(buffer(), buffer())
}

/// Counts polls without progress and panics, with the sockets' state, when there are too many.
struct Watchdog {
    what: &'static str,
    idle: u32,
}

impl Watchdog {
    fn new(what: &'static str) -> Watchdog {
        Watchdog { what, idle: 0 }
    }

    /// Something moved: the count starts again.
    fn progress(&mut self) {
        self.idle = 0;
    }

    /// A poll in which nothing moved.
    fn idle(&mut self, host: &Host) {
        self.idle += 1;
        if self.idle > MAX_IDLE_POLLS {
            self.stall(host);
        }
    }

    #[cold]
    fn stall(&self, host: &Host) -> ! {
        panic!(
            "smoltcp {}: no progress in {MAX_IDLE_POLLS} polls {}",
            self.what,
            host.describe()
        )
    }
}

// ---------------------------------------------------------------------- the scenarios

/// [`tcp_bulk`]'s connection, its source chunk and the server's read buffer.
struct SmolBulk {
    host: Host,
    client: SocketHandle,
    server: SocketHandle,
    /// One chunk of the stream at `data[data_start..][..BULK_CHUNK]`: byte `i` is
    /// `pattern(i)`; the stream repeats it.
    data: Vec<u8>,
    data_start: usize,
    /// The server's reads land in `buf[buf_start..][..BULK_CHUNK]`, up to a whole chunk at a
    /// time.
    buf: Vec<u8>,
    buf_start: usize,
}

impl Bulk for SmolBulk {
    fn transfer(&mut self, chunks: usize) {
        let total = chunks * BULK_CHUNK;
        let data = &self.data[self.data_start..self.data_start + BULK_CHUNK];
        let buf = &mut self.buf[self.buf_start..self.buf_start + BULK_CHUNK];
        let (mut sent, mut got) = (0, 0);
        let mut watchdog = Watchdog::new("tcp bulk");
        while got < total {
            if sent < total {
                // As much of the rest of the current chunk as the send buffer takes.
                let off = sent % BULK_CHUNK;
                let n = self
                    .host
                    .tcp(self.client)
                    .send_slice(&data[off..])
                    .expect("client send");
                sent += n;
                if n > 0 {
                    watchdog.progress();
                }
            }
            self.host.poll();
            loop {
                let n = self
                    .host
                    .tcp(self.server)
                    .recv_slice(buf)
                    .expect("server recv");
                if n == 0 {
                    break;
                }
                // The stream repeats `data`, and every transfer starts at a chunk boundary:
                // the first and last byte of each read must sit where their offsets say.
                assert_eq!(buf[0], data[got % BULK_CHUNK], "byte {got}");
                let last = got + n - 1;
                assert_eq!(buf[n - 1], data[last % BULK_CHUNK], "byte {last}");
                got += n;
                watchdog.progress();
            }
            watchdog.idle(&self.host);
        }
        assert_eq!(got, total, "the server read more than was sent");
    }
}

/// `from` sends all of `data` over TCP and the interface is polled until `to` has read
/// exactly `out.len()` (= `data.len()`) bytes into `out`.
fn tcp_deliver(
    host: &mut Host,
    from: SocketHandle,
    to: SocketHandle,
    data: &[u8],
    out: &mut [u8],
    watchdog: &mut Watchdog,
) {
    let (mut sent, mut got) = (0, 0);
    while got < out.len() {
        if sent < data.len() {
            sent += host.tcp(from).send_slice(&data[sent..]).expect("send");
        }
        host.poll();
        let n = host.tcp(to).recv_slice(&mut out[got..]).expect("recv");
        got += n;
        if n > 0 {
            watchdog.progress();
        } else {
            watchdog.idle(host);
        }
    }
}

/// [`tcp_ping_pong`]'s connection and message buffers.
struct SmolTcpPingPong {
    host: Host,
    client: SocketHandle,
    server: SocketHandle,
    /// The client's message; its first byte is the round number, so a stale echo shows.
    msg: Vec<u8>,
    at_server: Vec<u8>,
    at_client: Vec<u8>,
    round: u8,
}

impl PingPong for SmolTcpPingPong {
    fn round_trip(&mut self) {
        self.round = self.round.wrapping_add(1);
        self.msg[0] = self.round;
        let mut watchdog = Watchdog::new("tcp ping-pong");
        let h = &mut self.host;
        tcp_deliver(
            h,
            self.client,
            self.server,
            &self.msg,
            &mut self.at_server,
            &mut watchdog,
        );
        assert_eq!(self.at_server, self.msg, "the server got the wrong message");
        tcp_deliver(
            h,
            self.server,
            self.client,
            &self.at_server,
            &mut self.at_client,
            &mut watchdog,
        );
        assert_eq!(self.at_client, self.msg, "the client got the wrong echo");
    }
}

/// `from` sends `data` as one UDP datagram to `to_ep`, and the interface is polled until `to`
/// has it in `out` (which is `data.len()` long: a longer datagram fails as truncated). Returns
/// the sender's endpoint as `to` saw it.
fn udp_deliver(
    host: &mut Host,
    from: SocketHandle,
    to: SocketHandle,
    to_ep: IpEndpoint,
    data: &[u8],
    out: &mut [u8],
    watchdog: &mut Watchdog,
) -> IpEndpoint {
    host.udp(from).send_slice(data, to_ep).expect("udp send");
    loop {
        host.poll();
        match host.udp(to).recv_slice(out) {
            Ok((n, meta)) => {
                assert_eq!(n, out.len(), "datagram size");
                watchdog.progress();
                return meta.endpoint;
            }
            Err(udp::RecvError::Exhausted) => watchdog.idle(host),
            Err(e) => panic!("udp recv: {e}"),
        }
    }
}

/// [`udp_ping_pong`]'s sockets, endpoints and message buffers.
struct SmolUdpPingPong {
    host: Host,
    client: SocketHandle,
    server: SocketHandle,
    client_ep: IpEndpoint,
    server_ep: IpEndpoint,
    /// The client's message; its first byte is the round number, so a stale echo shows.
    msg: Vec<u8>,
    at_server: Vec<u8>,
    at_client: Vec<u8>,
    round: u8,
}

impl PingPong for SmolUdpPingPong {
    fn round_trip(&mut self) {
        self.round = self.round.wrapping_add(1);
        if let Some(first) = self.msg.first_mut() {
            *first = self.round;
        }
        let mut watchdog = Watchdog::new("udp ping-pong");
        let h = &mut self.host;
        let from = udp_deliver(
            h,
            self.client,
            self.server,
            self.server_ep,
            &self.msg,
            &mut self.at_server,
            &mut watchdog,
        );
        assert_eq!(from, self.client_ep, "the datagram's source");
        assert_eq!(self.at_server, self.msg, "the server got the wrong message");
        // The server answers the address it saw, as an echo server does.
        udp_deliver(
            h,
            self.server,
            self.client,
            from,
            &self.at_server,
            &mut self.at_client,
            &mut watchdog,
        );
        assert_eq!(self.at_client, self.msg, "the client got the wrong echo");
    }
}

/// [`udp_one_way`]'s sockets, the datagram and the server's receive buffer.
struct SmolOneWay {
    host: Host,
    client: SocketHandle,
    server: SocketHandle,
    server_ep: IpEndpoint,
    msg: Vec<u8>,
    buf: Vec<u8>,
}

impl OneWay for SmolOneWay {
    fn burst(&mut self, n: usize) {
        let size = self.msg.len();
        let (mut sent, mut got) = (0, 0);
        let mut watchdog = Watchdog::new("udp burst");
        while got < n {
            // Queue as many as the client's buffer holds (all of a `BURST`). A longer burst
            // goes in rounds: each poll sends everything queued and frees the slots, the next
            // pass of this loop fills them again. The server drains its socket after every
            // poll, and a poll takes in only what the previous poll sent (at most a `BURST`,
            // the size of the server's buffer), so that buffer never overflows (smoltcp
            // would drop silently).
            while sent < n {
                match self
                    .host
                    .udp(self.client)
                    .send_slice(&self.msg, self.server_ep)
                {
                    Ok(()) => sent += 1,
                    Err(udp::SendError::BufferFull) => break,
                    Err(e) => panic!("udp send: {e}"),
                }
            }
            self.host.poll();
            loop {
                match self.host.udp(self.server).recv_slice(&mut self.buf) {
                    Ok((len, _)) => {
                        assert_eq!(len, size, "datagram size");
                        assert!(
                            self.buf[0] == self.msg[0] && self.buf[size - 1] == self.msg[size - 1],
                            "datagram content"
                        );
                        got += 1;
                        watchdog.progress();
                    }
                    Err(udp::RecvError::Exhausted) => break,
                    Err(e) => panic!("udp recv: {e}"),
                }
            }
            watchdog.idle(&self.host);
        }
        assert_eq!(got, n, "datagrams received");
    }
}
