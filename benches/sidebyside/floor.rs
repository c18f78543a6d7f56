//! The floor: a UDP datagram moved by loopstack's own primitives with every decision a
//! stack makes per packet taken once, up front. Not a stack, and not a peer: a yardstick
//! for how much of loopstack's cost per datagram is the mechanics it cannot avoid, and how
//! much is the protocol and API work around them (docs/benchmarks.md, item 25).
//!
//! What a datagram still costs here, per packet, as in loopstack's poll mode over `lo`:
//!
//! - a buffer from a [`PoolCache`] and the payload copied in (`alloc_from_slice`);
//! - an 8-byte UDP header prepended, its checksum field holding the pseudo-header's partial
//!   sum (transport checksums are offloaded on `lo`), and a 20-byte IPv4 header (its header
//!   checksum computed from a precomputed sum plus length and identification, RFC 791 3.1)
//!   or a 40-byte IPv6 header prepended into the headroom;
//! - the handle through [`Loopback`]'s ring, out and back in;
//! - on the way up, the checks a receiver cannot skip on untrusted bytes (version, header
//!   and total lengths against what arrived, protocol, a loopback destination, the UDP
//!   length, the destination port), both headers stripped, the payload queued with its
//!   sender, bounded as loopstack's UDP queue is;
//! - the payload copied out to the application and the buffer returned to the cache.
//!
//! What it leaves out, because it is decided once here: routing and the path's currency,
//! socket handles and their checks, the demultiplexing table (one bound port is compared),
//! martian rules beyond "the destination is a loopback address", statistics, ICMP errors,
//! fragments, IPv4 options, IPv6 extension headers, and the `Result` types that report all
//! of those. Every packet is still checked, and a malformed one panics the benchmark
//! rather than being counted: nothing malformed is ever sent here.

use std::collections::VecDeque;

use loopstack_buf::{PacketBuf, PacketPool, PoolCache, PoolConfig};
use loopstack_internet::checksum;
use loopstack_link::{Device, Instant, Loopback, LoopbackConfig};

use super::{pattern, Family, OneWay, PingPong, BURST, WARM_UP};

/// The server's port, and the client's (the next one).
const PORT: u16 = 7000;
/// IP protocol number of UDP.
const UDP: u8 = 17;
/// The most datagrams a socket queues (loopstack's default, Linux's usual count).
const QUEUE: usize = 1024;
/// The most datagrams sent before the receiver takes them in: what both `lo`'s ring and the
/// queue hold, so nothing is ever dropped.
const ROUND: usize = if LoopbackConfig::DEFAULT_CAPACITY < QUEUE {
    LoopbackConfig::DEFAULT_CAPACITY
} else {
    QUEUE
};

/// One end: a bound port and its receive queue of (payload, sender's port).
struct End {
    port: u16,
    queue: VecDeque<(PacketBuf, u16)>,
}

/// Both ends on one `lo`, with the per-destination work done once: the IP header as a
/// template, its checksum's sum without the per-packet fields, the pseudo-header's sum.
struct Floor {
    family: Family,
    cache: PoolCache,
    lo: Loopback,
    now: Instant,
    /// The IP header every datagram starts from: 20 or 40 bytes used.
    header: [u8; 40],
    /// IPv4: the header's 16-bit sum without total length and identification.
    header_sum: u32,
    /// The pseudo-header's sum without the length.
    pseudo_sum: u64,
    ident: u16,
    ends: [End; 2],
}

impl Floor {
    fn new(family: Family) -> Floor {
        let pool = PacketPool::new(PoolConfig::default()).expect("the default pool is valid");
        let mut header = [0u8; 40];
        let loopback = family.loopback();
        match loopback {
            std::net::IpAddr::V4(a) => {
                header[..12].copy_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, UDP, 0, 0]);
                header[12..16].copy_from_slice(&a.octets());
                header[16..20].copy_from_slice(&a.octets());
            }
            std::net::IpAddr::V6(a) => {
                header[..8].copy_from_slice(&[0x60, 0, 0, 0, 0, 0, UDP, 64]);
                header[8..24].copy_from_slice(&a.octets());
                header[24..40].copy_from_slice(&a.octets());
            }
        }
        let header_sum = header[..20]
            .chunks_exact(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum();
        let end = |port| End {
            port,
            queue: VecDeque::with_capacity(QUEUE),
        };
        Floor {
            family,
            cache: PoolCache::new(pool),
            lo: Loopback::new(),
            now: Instant::ZERO,
            header,
            header_sum,
            pseudo_sum: checksum::pseudo_header(loopback, loopback, UDP, 0),
            ident: 0,
            ends: [end(PORT), end(PORT + 1)],
        }
    }

    /// Sends `data` from end `from` to end `to`.
    fn send(&mut self, from: usize, to: usize, data: &[u8]) {
        let mut packet = self
            .cache
            .alloc_from_slice(data)
            .expect("the pool has a buffer");
        let udp_len = (data.len() + 8) as u16;
        let partial = checksum::fold(self.pseudo_sum + checksum::length_sum(usize::from(udp_len)));
        let u = packet.prepend_array::<8>().expect("headroom for UDP");
        u[0..2].copy_from_slice(&self.ends[from].port.to_be_bytes());
        u[2..4].copy_from_slice(&self.ends[to].port.to_be_bytes());
        u[4..6].copy_from_slice(&udp_len.to_be_bytes());
        u[6..8].copy_from_slice(&partial.to_ne_bytes());
        match self.family {
            Family::V4 => {
                self.ident = self.ident.wrapping_add(1);
                let total = udp_len + 20;
                let mut sum = self.header_sum + u32::from(total) + u32::from(self.ident);
                sum = (sum & 0xffff) + (sum >> 16);
                sum = (sum & 0xffff) + (sum >> 16);
                let h = packet.prepend_array::<20>().expect("headroom for IPv4");
                h.copy_from_slice(&self.header[..20]);
                h[2..4].copy_from_slice(&total.to_be_bytes());
                h[4..6].copy_from_slice(&self.ident.to_be_bytes());
                h[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
            }
            Family::V6 => {
                let h = packet.prepend_array::<40>().expect("headroom for IPv6");
                *h = self.header;
                h[4..6].copy_from_slice(&udp_len.to_be_bytes());
            }
        }
        self.lo
            .transmit(self.now, packet)
            .expect("lo's ring has room");
    }

    /// Takes in everything `lo` holds: checks, strips, queues.
    fn poll(&mut self) {
        while let Some(mut packet) = self.lo.receive(self.now) {
            let s = packet.as_slice();
            let header_len = match (self.family, s.first().map(|b| b >> 4)) {
                (Family::V4, Some(4)) => {
                    let ok = s.len() >= 28
                        && s[0] & 0x0f == 5
                        && usize::from(u16::from_be_bytes([s[2], s[3]])) == s.len()
                        && s[6] & 0x3f == 0
                        && s[7] == 0
                        && s[9] == UDP
                        && s[16] == 127;
                    assert!(ok, "floor: a malformed IPv4 packet");
                    20
                }
                (Family::V6, Some(6)) => {
                    let ok = s.len() >= 48
                        && usize::from(u16::from_be_bytes([s[4], s[5]])) + 40 == s.len()
                        && s[6] == UDP
                        && s[24..40] == std::net::Ipv6Addr::LOCALHOST.octets();
                    assert!(ok, "floor: a malformed IPv6 packet");
                    40
                }
                _ => panic!("floor: a packet of the wrong version"),
            };
            let u = &s[header_len..header_len + 8];
            let sport = u16::from_be_bytes([u[0], u[1]]);
            let dport = u16::from_be_bytes([u[2], u[3]]);
            let udp_len = usize::from(u16::from_be_bytes([u[4], u[5]]));
            assert!(
                udp_len >= 8 && header_len + udp_len == s.len(),
                "floor: a bad UDP length"
            );
            let to = usize::from(dport != self.ends[0].port);
            let end = &mut self.ends[to];
            assert!(end.port == dport, "floor: no socket on port {dport}");
            assert!(end.queue.len() < QUEUE, "floor: the queue is full");
            packet
                .strip_front(header_len + 8)
                .expect("the headers are there");
            end.queue.push_back((packet, sport));
        }
    }

    /// The oldest datagram of end `at`, copied into `out`: (length, sender's port).
    fn recv(&mut self, at: usize, out: &mut [u8]) -> Option<(usize, u16)> {
        let (packet, from) = self.ends[at].queue.pop_front()?;
        let n = packet.copy_out(0, out);
        self.cache.recycle(packet);
        Some((n, from))
    }
}

/// The server's end, as an index into [`Floor::ends`].
const SERVER: usize = 0;
/// The client's end.
const CLIENT: usize = 1;

/// [`udp_one_way`]'s floor, its datagram and the server's receive buffer.
struct FloorOneWay {
    floor: Floor,
    msg: Vec<u8>,
    buf: Vec<u8>,
}

/// Datagrams of `size` bytes, client to server, over `family`'s loopback, warmed up.
pub fn udp_one_way(family: Family, size: usize) -> impl OneWay {
    assert!(size > 0, "the burst check reads the first and last byte");
    let mut o = FloorOneWay {
        floor: Floor::new(family),
        msg: (0..size).map(pattern).collect(),
        buf: vec![0; size],
    };
    for _ in 0..WARM_UP {
        o.burst(BURST);
    }
    o
}

impl OneWay for FloorOneWay {
    fn burst(&mut self, n: usize) {
        let size = self.msg.len();
        let mut got = 0;
        while got < n {
            // In rounds that the ring and the queue hold, as loopstack's own scenario does.
            let round = (n - got).min(ROUND);
            for _ in 0..round {
                self.floor.send(CLIENT, SERVER, &self.msg);
            }
            self.floor.poll();
            while let Some((len, from)) = self.floor.recv(SERVER, &mut self.buf) {
                assert_eq!((len, from), (size, PORT + 1), "floor: datagram");
                assert!(
                    self.buf[0] == self.msg[0] && self.buf[size - 1] == self.msg[size - 1],
                    "floor: datagram content"
                );
                got += 1;
            }
        }
        assert_eq!(got, n, "floor: datagrams received");
    }
}

/// [`udp_ping_pong`]'s floor: the message, what the server got, what the client got back.
struct FloorPingPong {
    floor: Floor,
    msg: Vec<u8>,
    at_server: Vec<u8>,
    at_client: Vec<u8>,
    rounds: u8,
}

/// A UDP echo of `size`-byte datagrams over `family`'s loopback, warmed up.
pub fn udp_ping_pong(family: Family, size: usize) -> impl PingPong {
    assert!(size > 0, "the first byte counts the round trips");
    let mut pp = FloorPingPong {
        floor: Floor::new(family),
        msg: (0..size).map(pattern).collect(),
        at_server: vec![0; size],
        at_client: vec![0; size],
        rounds: 0,
    };
    for _ in 0..WARM_UP {
        pp.round_trip();
    }
    pp
}

impl PingPong for FloorPingPong {
    fn round_trip(&mut self) {
        self.rounds = self.rounds.wrapping_add(1);
        self.msg[0] = self.rounds;
        let size = self.msg.len();
        self.floor.send(CLIENT, SERVER, &self.msg);
        self.floor.poll();
        let (n, from) = self
            .floor
            .recv(SERVER, &mut self.at_server)
            .expect("floor: the request arrived");
        assert_eq!((n, from), (size, PORT + 1), "floor: request");
        self.floor.send(SERVER, CLIENT, &self.at_server[..n]);
        self.floor.poll();
        let (n, from) = self
            .floor
            .recv(CLIENT, &mut self.at_client)
            .expect("floor: the answer arrived");
        assert_eq!((n, from), (size, PORT), "floor: answer");
        assert_eq!(self.at_client, self.msg, "floor: the echo differs");
    }
}
