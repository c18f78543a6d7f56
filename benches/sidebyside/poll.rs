//! loopstack in poll mode: one thread, both ends of every exchange on one [`Stack`] over
//! its `lo`, driven by [`Stack::poll`] on a simulated clock.
//!
//! The clock is an [`Instant`] that moves one tick (1 µs) before every poll, so timers
//! behave as on a fast host; nothing here reads the wall clock. Every loop that waits for
//! the stack counts the polls that moved nothing and panics after [`MAX_IDLE_POLLS`] of
//! them, so a stack that lost a packet fails loudly instead of spinning for ever.
//!
//! The settings match the smoltcp side ([`super::smol`]) where loopstack has them:
//!
//! - TCP socket buffers: [`SOCKET_BUFFER`] (64 KiB) each way. loopstack's are stack-wide,
//!   `StackConfig.transport.tcp.send_buffer` and `recv_buffer` (default 1 MiB each), so
//!   every scenario builds its own stack with both set to 64 KiB.
//! - Nagle: off in the ping-pong scenarios (`TcpConfig::nodelay`, which every new
//!   connection of the stack inherits, as `Tcp::set_nodelay` would set it per socket); on
//!   (the default, as in smoltcp) in the bulk scenario, where every write is a full chunk.
//! - Delayed ACK: 10 ms in every TCP scenario (`TcpConfig::ack_delay`), smoltcp's default,
//!   which the smoltcp side keeps. In ping-pong the ACK of each message then rides on the
//!   answer: two segments per round trip instead of four (a data segment and a bare ACK
//!   each way), which is 40% fewer instructions per round trip. In bulk the data of a
//!   64 KiB chunk is acknowledged by the window update that the reader's 64 KiB read sends
//!   (RFC 9293 3.8.6.2.2): three segments per chunk instead of four. Bulk used to run with
//!   no delay, because with 10 ms it measured 0.07 GB/s and later 4.2 GB/s; neither was
//!   the delay's doing. The first was Nagle holding the short last segment of each chunk
//!   until the delayed ACK came (segments now end at send-buffer block ends, and such a
//!   segment counts as full); the second was where the send buffer's blocks happened to
//!   land in memory (`rep movsb` and 4 KiB aliasing, docs/benchmarks.md, item 9).
//! - TCP timestamps (RFC 7323): off (`TcpConfig::timestamps`), as smoltcp sends none by
//!   default, so both put the same segments on the wire. loopstack's default, like
//!   Linux's, is on; with them a round trip takes about 3.6% more instructions and 4% to
//!   5% more time (docs/benchmarks.md, item 36). Blocking mode keeps them, as the kernel
//!   it is compared with does.
//! - UDP: the default receive queue bounds (1024 datagrams, 212,992 bytes, Linux's
//!   `rmem_default`) and `lo`'s default ring (1000 packets). A burst is sent in rounds that
//!   fit all three, so nothing is dropped whatever `n` is; [`BURST`](super::BURST) = 32
//!   datagrams of 64 bytes is one round.
//! - Everything else is the stack's default: `lo` MTU 65536, the default pool, transport
//!   checksums offloaded both ways on `lo` (a partial checksum on send, no verification on
//!   receive; a capture or a fault injector on `lo` turns that off). smoltcp's loopback
//!   skips them both ways.
//!
//! Every buffer is made by the constructor; once warm, an iteration allocates nothing
//! (`tests/zero_alloc_poll.rs` counts).

use std::net::SocketAddr;
use std::time::Duration;

use loopstack_link::Instant;
use loopstack_socket::{Stack, StackConfig};
use loopstack_transport::tcp::{State, TcpHandle};
use loopstack_transport::udp::UdpHandle;
use loopstack_transport::Error;

use super::{pattern, Bulk, Family, OneWay, PingPong, BULK_CHUNK, SOCKET_BUFFER, WARM_UP};

/// How far the simulated clock moves before each poll.
const TICK: Duration = Duration::from_micros(1);
/// Polls in a row that move nothing before a scenario gives up.
pub const MAX_IDLE_POLLS: usize = 100_000;
/// The delayed-ACK timer of every TCP scenario: smoltcp's default, which the smoltcp side
/// keeps.
const ACK_DELAY: Duration = Duration::from_millis(10);
/// The server's port (and the UDP client's is the next one).
const PORT: u16 = 7000;

/// A stack and its simulated clock.
struct Host {
    stack: Stack,
    now: Instant,
}

impl Host {
    /// A stack for a TCP scenario: 64 KiB socket buffers each way, Nagle off on new
    /// connections if `nodelay`, ACKs delayed by `ack_delay` (zero: at the end of each
    /// batch of input, loopstack's default), no timestamps.
    fn tcp(nodelay: bool, ack_delay: Duration) -> Self {
        let mut config = StackConfig::default();
        // The socket buffers of the comparison (the smoltcp side gives each socket 64 KiB
        // rings). loopstack's are stack-wide and 1 MiB each way by default.
        config.transport.tcp.send_buffer = SOCKET_BUFFER;
        config.transport.tcp.recv_buffer = SOCKET_BUFFER;
        // TCP_NODELAY, inherited by every connection of this stack.
        config.transport.tcp.nodelay = nodelay;
        config.transport.tcp.ack_delay = ack_delay;
        // No RFC 7323 timestamps, as smoltcp sends none (it has no `tsval` generator by
        // default): the same segments on the wire, 12 bytes of option fewer on each. They
        // are on by default, as on Linux; what they cost here is in docs/benchmarks.md,
        // item 36. (Blocking mode keeps them, as does the kernel it is compared with.)
        config.transport.tcp.timestamps = false;
        Host::with_config(config)
    }

    /// A stack for a UDP scenario: the defaults.
    fn udp() -> Self {
        Host::with_config(StackConfig::default())
    }

    fn with_config(config: StackConfig) -> Self {
        Host {
            stack: Stack::new(config).expect("the stack config is valid"),
            now: Instant::ZERO,
        }
    }

    /// Moves the clock one tick and polls.
    fn poll(&mut self) {
        self.now += TICK;
        self.stack.poll(self.now);
    }

    /// An established connection from the client to a listener on `family`'s loopback:
    /// (client, accepted server end).
    fn tcp_pair(&mut self, family: Family) -> (TcpHandle, TcpHandle) {
        let server = family.addr(PORT);
        let listener = self.stack.tcp_listen(server, 1).expect("listen");
        let client = self.stack.tcp_connect(self.now, server).expect("connect");
        let mut idle = Idle::new("the TCP handshake");
        let accepted = loop {
            self.poll();
            match self.stack.tcp().accept(listener) {
                Ok((s, _)) => break s,
                Err(Error::WouldBlock) => idle.stalled(),
                Err(e) => panic!("accept: {e}"),
            }
        };
        assert_eq!(self.stack.tcp().state(client), Ok(State::Established));
        assert_eq!(self.stack.tcp().state(accepted), Ok(State::Established));
        for end in [client, accepted] {
            let info = self.stack.tcp().info(end).expect("a connection's info");
            assert!(!info.timestamps, "no timestamps, as on the smoltcp side");
        }
        // The listener is not needed any more; closing it frees nothing the
        // connection uses.
        self.stack
            .tcp()
            .close(listener)
            .expect("close the listener");
        (client, accepted)
    }

    /// Two UDP sockets on `family`'s loopback: (client, server) and their addresses.
    fn udp_pair(&mut self, family: Family) -> UdpEnds {
        let (client_addr, server_addr) = (family.addr(PORT + 1), family.addr(PORT));
        UdpEnds {
            client: self.stack.udp_bind(client_addr).expect("bind the client"),
            server: self.stack.udp_bind(server_addr).expect("bind the server"),
            client_addr,
            server_addr,
        }
    }
}

/// Counts polls in a row that moved nothing, and panics after [`MAX_IDLE_POLLS`].
struct Idle {
    what: &'static str,
    polls: usize,
}

impl Idle {
    fn new(what: &'static str) -> Self {
        Idle { what, polls: 0 }
    }

    /// A poll moved something.
    fn progressed(&mut self) {
        self.polls = 0;
    }

    /// A round of polling ended: `moved` says whether it changed anything.
    #[track_caller]
    fn round(&mut self, moved: bool) {
        if moved {
            self.progressed();
        } else {
            self.stalled();
        }
    }

    /// A poll moved nothing.
    #[track_caller]
    fn stalled(&mut self) {
        self.polls += 1;
        assert!(
            self.polls < MAX_IDLE_POLLS,
            "loopstack poll mode: {} made no progress in {MAX_IDLE_POLLS} polls",
            self.what
        );
    }
}

// ---------------------------------------------------------------------- TCP bulk

/// The byte at offset `at` of the whole stream: each chunk starts with its number (a
/// little-endian `u64`, so a lost, repeated or reordered chunk shows), then [`pattern`].
fn expected(at: u64) -> u8 {
    let chunk = BULK_CHUNK as u64;
    let i = (at % chunk) as usize;
    if i < 8 {
        (at / chunk).to_le_bytes()[i]
    } else {
        pattern(i)
    }
}

/// A TCP connection on one stack, client to server.
struct TcpBulk {
    host: Host,
    client: TcpHandle,
    server: TcpHandle,
    /// One chunk, pre-filled; its stamp is rewritten before each chunk is written.
    data: Vec<u8>,
    /// Where the server reads, [`BULK_CHUNK`] at a time.
    buf: Vec<u8>,
    /// Bytes written so far, over all transfers: the stream offset of the next write.
    written: u64,
    /// Bytes read so far, over all transfers.
    read: u64,
}

/// A connected TCP bulk scenario over `family`'s loopback, warmed up.
pub fn tcp_bulk(family: Family) -> impl Bulk {
    // Nagle stays on (the default, as in smoltcp): every write is a full chunk. ACKs are
    // delayed as in smoltcp; the reader's window update carries them (module docs).
    let mut host = Host::tcp(false, ACK_DELAY);
    let (client, server) = host.tcp_pair(family);
    let mut bulk = TcpBulk {
        host,
        client,
        server,
        data: (0..BULK_CHUNK).map(pattern).collect(),
        buf: vec![0; BULK_CHUNK],
        written: 0,
        read: 0,
    };
    for _ in 0..WARM_UP {
        bulk.transfer(1);
    }
    bulk
}

impl TcpBulk {
    /// Checks a piece the server read at stream offset `at`: its first and last bytes and
    /// the stamp of every chunk that starts in it. A few bytes per read, not a pass over it.
    fn check(at: u64, piece: &[u8]) {
        let Some(&last) = piece.last() else {
            return;
        };
        let end = at + piece.len() as u64;
        assert_eq!(piece[0], expected(at), "TCP bulk: byte {at}");
        assert_eq!(last, expected(end - 1), "TCP bulk: byte {}", end - 1);
        let chunk = BULK_CHUNK as u64;
        let mut start = at.div_ceil(chunk) * chunk;
        while start < end {
            for p in start..(start + 8).min(end) {
                let got = piece[(p - at) as usize];
                assert_eq!(got, expected(p), "TCP bulk: stamp byte {p}");
            }
            start += chunk;
        }
    }
}

impl Bulk for TcpBulk {
    fn transfer(&mut self, chunks: usize) {
        let total = (chunks * BULK_CHUNK) as u64;
        let (write_end, read_end) = (self.written + total, self.read + total);
        let mut idle = Idle::new("TCP bulk");
        while self.read < read_end {
            let before = (self.written, self.read);
            // As much as the send buffer takes, a chunk (or the rest of one) per write.
            while self.written < write_end {
                let at = (self.written % BULK_CHUNK as u64) as usize;
                if at == 0 {
                    let stamp = self.written / BULK_CHUNK as u64;
                    self.data[..8].copy_from_slice(&stamp.to_le_bytes());
                }
                match self.host.stack.tcp().send(self.client, &self.data[at..]) {
                    Ok(n) => self.written += n as u64,
                    Err(Error::WouldBlock) => break,
                    Err(e) => panic!("TCP bulk: send: {e}"),
                }
            }
            self.host.poll();
            // Everything that arrived, BULK_CHUNK at a time.
            while self.read < read_end {
                let want = (read_end - self.read).min(BULK_CHUNK as u64) as usize;
                match self
                    .host
                    .stack
                    .tcp()
                    .recv(self.server, &mut self.buf[..want])
                {
                    Ok(0) => panic!("TCP bulk: unexpected end of file"),
                    Ok(n) => {
                        Self::check(self.read, &self.buf[..n]);
                        self.read += n as u64;
                    }
                    Err(Error::WouldBlock) => break,
                    Err(e) => panic!("TCP bulk: recv: {e}"),
                }
            }
            idle.round((self.written, self.read) != before);
        }
        assert_eq!(self.read, read_end, "TCP bulk: byte count");
    }
}

// ---------------------------------------------------------------------- TCP ping-pong

/// A TCP connection on one stack with Nagle off: the client sends a message, the server
/// echoes it.
struct TcpPingPong {
    host: Host,
    client: TcpHandle,
    server: TcpHandle,
    /// The message; its first byte counts the round trips.
    message: Vec<u8>,
    /// What the server read, and sends back.
    echo: Vec<u8>,
    /// What the client read back.
    reply: Vec<u8>,
    rounds: u8,
}

/// A connected TCP ping-pong scenario of `size`-byte messages over `family`'s loopback,
/// warmed up.
pub fn tcp_ping_pong(family: Family, size: usize) -> impl PingPong {
    assert!(size > 0, "a TCP message has at least one byte");
    // Nagle off; the ACK of each message rides on the answer (see the module
    // documentation).
    let mut host = Host::tcp(true, ACK_DELAY);
    let (client, server) = host.tcp_pair(family);
    let mut pp = TcpPingPong {
        host,
        client,
        server,
        message: (0..size).map(pattern).collect(),
        echo: vec![0; size],
        reply: vec![0; size],
        rounds: 0,
    };
    for _ in 0..WARM_UP {
        pp.round_trip();
    }
    pp
}

/// `from` writes all of `data`, and the stack is polled until `to` has read `out.len()`
/// (= `data.len()`) bytes into `out`. On `lo` a small message takes one poll.
fn tcp_exchange(host: &mut Host, from: TcpHandle, to: TcpHandle, data: &[u8], out: &mut [u8]) {
    let (mut sent, mut got) = (0, 0);
    let mut idle = Idle::new("TCP ping-pong");
    while got < out.len() {
        let before = (sent, got);
        if sent < data.len() {
            match host.stack.tcp().send(from, &data[sent..]) {
                Ok(n) => sent += n,
                Err(Error::WouldBlock) => {}
                Err(e) => panic!("TCP ping-pong: send: {e}"),
            }
        }
        host.poll();
        while got < out.len() {
            match host.stack.tcp().recv(to, &mut out[got..]) {
                Ok(0) => panic!("TCP ping-pong: unexpected end of file"),
                Ok(n) => got += n,
                Err(Error::WouldBlock) => break,
                Err(e) => panic!("TCP ping-pong: recv: {e}"),
            }
        }
        idle.round((sent, got) != before);
    }
}

impl PingPong for TcpPingPong {
    fn round_trip(&mut self) {
        self.rounds = self.rounds.wrapping_add(1);
        self.message[0] = self.rounds;
        tcp_exchange(
            &mut self.host,
            self.client,
            self.server,
            &self.message,
            &mut self.echo,
        );
        tcp_exchange(
            &mut self.host,
            self.server,
            self.client,
            &self.echo,
            &mut self.reply,
        );
        assert!(self.reply == self.message, "TCP ping-pong: content");
    }
}

// ---------------------------------------------------------------------- UDP

/// Two UDP sockets and their addresses.
struct UdpEnds {
    client: UdpHandle,
    server: UdpHandle,
    client_addr: SocketAddr,
    server_addr: SocketAddr,
}

/// Writes `seq` into the first bytes of a datagram (as many as fit, up to 8).
fn stamp(datagram: &mut [u8], seq: u64) {
    let n = datagram.len().min(8);
    datagram[..n].copy_from_slice(&seq.to_le_bytes()[..n]);
}

/// Whether a datagram carries `seq` (as far as [`stamp`] wrote it). One 8-byte compare for
/// a datagram of 8 bytes or more, rather than a call to `memcmp`.
fn stamped(datagram: &[u8], seq: u64) -> bool {
    match datagram.first_chunk::<8>() {
        Some(head) => u64::from_le_bytes(*head) == seq,
        None => datagram[..] == seq.to_le_bytes()[..datagram.len()],
    }
}

/// Two UDP sockets on one stack: the client sends a datagram, the server sends it back.
struct UdpPingPong {
    host: Host,
    ends: UdpEnds,
    /// The datagram; it is stamped with the round-trip count.
    message: Vec<u8>,
    /// Room for what the server gets, and for the reply: one byte more than a datagram, so
    /// a longer datagram would show.
    buf: Vec<u8>,
    rounds: u64,
}

/// A UDP ping-pong scenario of `size`-byte datagrams over `family`'s loopback, warmed up.
pub fn udp_ping_pong(family: Family, size: usize) -> impl PingPong {
    let mut host = Host::udp();
    let ends = host.udp_pair(family);
    let mut pp = UdpPingPong {
        host,
        ends,
        message: (0..size).map(pattern).collect(),
        buf: vec![0; size + 1],
        rounds: 0,
    };
    for _ in 0..WARM_UP {
        pp.round_trip();
    }
    pp
}

/// Polls until `to` has a datagram, and takes it into `buf`: (length, sender).
fn udp_recv(
    host: &mut Host,
    to: UdpHandle,
    buf: &mut [u8],
    what: &'static str,
) -> (usize, SocketAddr) {
    let mut idle = Idle::new(what);
    loop {
        host.poll();
        match host.stack.udp().recv_from(to, buf) {
            Ok(got) => return got,
            Err(Error::WouldBlock) => idle.stalled(),
            Err(e) => panic!("{what}: recv_from: {e}"),
        }
    }
}

impl PingPong for UdpPingPong {
    fn round_trip(&mut self) {
        let size = self.message.len();
        let UdpEnds {
            client,
            server,
            client_addr,
            server_addr,
        } = self.ends;
        self.rounds += 1;
        stamp(&mut self.message, self.rounds);
        let host = &mut self.host;
        let sent = host
            .stack
            .udp_send_to(host.now, client, &self.message, server_addr)
            .expect("UDP ping-pong: client send_to");
        assert_eq!(sent, size);
        let (n, from) = udp_recv(host, server, &mut self.buf, "UDP ping-pong, request");
        assert_eq!((n, from), (size, client_addr), "UDP ping-pong: request");
        let sent = host
            .stack
            .udp_send_to(host.now, server, &self.buf[..n], from)
            .expect("UDP ping-pong: server send_to");
        assert_eq!(sent, size);
        let (n, from) = udp_recv(host, client, &mut self.buf, "UDP ping-pong, reply");
        assert_eq!((n, from), (size, server_addr), "UDP ping-pong: reply");
        assert!(self.buf[..n] == self.message[..], "UDP ping-pong: content");
    }
}

/// Two UDP sockets on one stack: the client sends bursts of datagrams, the server takes
/// them all.
struct UdpOneWay {
    host: Host,
    ends: UdpEnds,
    /// The datagram; it is stamped with its sequence number.
    message: Vec<u8>,
    /// Where the server receives (one byte more than a datagram).
    buf: Vec<u8>,
    /// Datagrams sent so far, over all bursts.
    sent: u64,
    /// Datagrams received so far.
    received: u64,
    /// The most datagrams in flight at once: what `lo`'s ring and the server's receive
    /// queue both hold.
    round: u64,
}

/// A UDP one-way scenario of `size`-byte datagrams over `family`'s loopback, warmed up.
pub fn udp_one_way(family: Family, size: usize) -> impl OneWay {
    let mut host = Host::udp();
    let ends = host.udp_pair(family);
    // The bounds a burst must respect so that nothing is dropped: lo's ring, and the
    // receive queue's datagram and byte limits (an empty queue takes any one datagram).
    let config = StackConfig::default();
    let round = config
        .loopback
        .capacity
        .min(config.transport.udp.recv_queue_datagrams)
        .min((config.transport.udp.recv_queue_bytes / size.max(1)).max(1));
    let mut one_way = UdpOneWay {
        host,
        ends,
        message: (0..size).map(pattern).collect(),
        buf: vec![0; size + 1],
        sent: 0,
        received: 0,
        round: round as u64,
    };
    for _ in 0..WARM_UP {
        one_way.burst(super::BURST);
    }
    one_way
}

impl OneWay for UdpOneWay {
    fn burst(&mut self, n: usize) {
        let size = self.message.len();
        let UdpEnds {
            client,
            server,
            client_addr,
            server_addr,
        } = self.ends;
        let (send_end, recv_end) = (self.sent + n as u64, self.received + n as u64);
        let mut idle = Idle::new("UDP one-way");
        while self.received < recv_end {
            let before = (self.sent, self.received);
            // Back to back, as many as fit in flight.
            let limit = send_end.min(self.received + self.round);
            while self.sent < limit {
                stamp(&mut self.message, self.sent);
                let host = &mut self.host;
                match host
                    .stack
                    .udp_send_to(host.now, client, &self.message, server_addr)
                {
                    Ok(sent) => assert_eq!(sent, size, "UDP one-way: short send"),
                    Err(Error::WouldBlock) => break,
                    Err(e) => panic!("UDP one-way: send_to: {e}"),
                }
                self.sent += 1;
            }
            self.host.poll();
            while self.received < self.sent {
                match self.host.stack.udp().recv_from(server, &mut self.buf) {
                    Ok((got, from)) => {
                        assert_eq!((got, from), (size, client_addr), "UDP one-way: datagram");
                        assert!(
                            stamped(&self.buf[..got], self.received),
                            "UDP one-way: datagram {} out of order",
                            self.received
                        );
                        self.received += 1;
                    }
                    Err(Error::WouldBlock) => break,
                    Err(e) => panic!("UDP one-way: recv_from: {e}"),
                }
            }
            idle.round((self.sent, self.received) != before);
        }
        assert_eq!(self.received, recv_end, "UDP one-way: datagram count");
    }
}
