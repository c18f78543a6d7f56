//! UDP driven end to end over a real `Loopback`: sockets send through the internet layer,
//! the loopback ring carries the packets, and a tiny step loop hands what comes up back to
//! UDP. Most tests run for IPv4 and IPv6 alike.

use std::net::{IpAddr, SocketAddr};

use etherparse::PacketBuilder;
use loopstack_buf::{PacketBuf, PacketPool, PoolConfig};
use loopstack_internet::icmp::{IcmpError, QuotedPacket};
use loopstack_internet::iface::InterfaceId;
use loopstack_internet::route::Route;
use loopstack_internet::{Cidr, Delivery, Internet, InternetConfig, IpMeta, Links};
use loopstack_link::{
    ChecksumOffload, Device, DeviceCapabilities, Instant, Loopback, Rng, TxError,
};
use loopstack_transport::checksum;
use loopstack_transport::udp::{Udp, UdpConfig, UdpHandle, MAX_PAYLOAD_V4, MAX_PAYLOAD_V6};
use loopstack_transport::{Error, PortRange};

const UDP: u8 = 17;

/// One family's addresses: the loopback address, the unspecified one, and an address that
/// is not ours.
#[derive(Clone, Copy, Debug)]
struct Family {
    lo: &'static str,
    any: &'static str,
    foreign: &'static str,
    v6: bool,
}

const V4: Family = Family {
    lo: "127.0.0.1",
    any: "0.0.0.0",
    foreign: "192.0.2.1",
    v6: false,
};
const V6: Family = Family {
    lo: "::1",
    any: "::",
    foreign: "2001:db8::1",
    v6: true,
};
const BOTH: [Family; 2] = [V4, V6];

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sa(addr: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip(addr), port)
}

// ------------------------------------------------------------------------------ harness

/// `lo`, with switchable checksum offload (a real `lo` offloads; turning it off makes the
/// stack verify checksums, so corruption is caught).
struct Dev {
    lo: Loopback,
    offload: bool,
}

impl Links for Dev {
    fn capabilities(&self, iface: InterfaceId) -> Option<DeviceCapabilities> {
        (iface == InterfaceId::LOOPBACK).then(|| {
            let mut c = self.lo.capabilities();
            if !self.offload {
                c.checksum_offload = ChecksumOffload::NONE;
            }
            c
        })
    }
    fn transmit(&mut self, now: Instant, iface: InterfaceId, p: PacketBuf) -> Result<(), TxError> {
        if iface != InterfaceId::LOOPBACK {
            return Err(TxError::Io(std::io::ErrorKind::NotFound));
        }
        self.lo.transmit(now, p)
    }
}

/// One host: pool, internet layer, UDP, `lo`, a seeded rng and a clock.
struct Stack {
    pool: PacketPool,
    ip: Internet,
    udp: Udp,
    dev: Dev,
    rng: Rng,
    now: Instant,
}

impl Stack {
    fn new() -> Self {
        Self::with(UdpConfig::default(), PoolConfig::default(), 1)
    }

    fn with(config: UdpConfig, pool: PoolConfig, seed: u64) -> Self {
        let pool = PacketPool::new(pool).unwrap();
        Stack {
            ip: Internet::new(pool.clone(), InternetConfig::default()),
            udp: Udp::new(pool.clone(), config),
            dev: Dev {
                lo: Loopback::new(),
                offload: true,
            },
            rng: Rng::new(seed),
            now: Instant::from_secs(1),
            pool,
        }
    }

    fn try_bind(&mut self, addr: SocketAddr) -> Result<UdpHandle, Error> {
        self.udp.bind(&self.ip, addr, &mut self.rng)
    }

    fn bind(&mut self, addr: SocketAddr) -> UdpHandle {
        self.try_bind(addr).unwrap()
    }

    fn connect(&mut self, h: UdpHandle, to: SocketAddr) -> Result<(), Error> {
        self.udp.connect(h, &self.ip, to)
    }

    fn send_to(&mut self, h: UdpHandle, data: &[u8], to: SocketAddr) -> Result<usize, Error> {
        self.udp
            .send_to(self.now, h, data, to, &mut self.ip, &mut self.dev)
    }

    fn send(&mut self, h: UdpHandle, data: &[u8]) -> Result<usize, Error> {
        self.udp
            .send(self.now, h, data, &mut self.ip, &mut self.dev)
    }

    fn recv_from(&mut self, h: UdpHandle) -> Result<(Vec<u8>, SocketAddr), Error> {
        let mut buf = vec![0; 70_000];
        let (n, from) = self.udp.recv_from(h, &mut buf)?;
        buf.truncate(n);
        Ok((buf, from))
    }

    /// Drains `lo` through the stack until it is quiet.
    fn step(&mut self) {
        self.step_with(|_| {});
    }

    /// [`step`](Self::step), letting `touch` alter each packet as it comes off the wire.
    fn step_with(&mut self, mut touch: impl FnMut(&mut PacketBuf)) {
        while let Some(mut p) = self.dev.lo.receive(self.now) {
            touch(&mut p);
            self.up(p);
        }
    }

    /// Hands one IP packet to the internet layer, and what comes up to UDP.
    fn up(&mut self, p: PacketBuf) {
        match self
            .ip
            .receive(self.now, InterfaceId::LOOPBACK, p, &mut self.dev)
        {
            Some(Delivery::Transport { meta, packet }) if meta.protocol == UDP => {
                self.udp
                    .receive(self.now, meta, packet, &mut self.ip, &mut self.dev)
            }
            Some(Delivery::IcmpError { error, quoted, .. }) => self.udp.icmp_error(error, &quoted),
            _ => {}
        }
    }

    /// Feeds a whole IP packet in as if it came off `lo`, then runs `lo` dry.
    fn inject(&mut self, bytes: &[u8]) {
        let p = self.pool.alloc_from_slice(bytes).unwrap();
        self.up(p);
        self.step();
    }

    /// Feeds a UDP message straight to `Udp::receive`, as the internet layer would.
    fn feed(&mut self, src: IpAddr, dst: IpAddr, message: &[u8], verify_checksum: bool) {
        let meta = IpMeta {
            src,
            dst,
            protocol: UDP,
            ttl: 64,
            iface: InterfaceId::LOOPBACK,
            header_len: 0,
            verify_checksum,
        };
        let p = self.pool.alloc_from_slice(message).unwrap();
        self.udp
            .receive(self.now, meta, p, &mut self.ip, &mut self.dev);
    }

    fn icmp_port_unreachables_sent(&self, v6: bool) -> u64 {
        if v6 {
            self.ip.stats().icmp6.out_dest_unreachs
        } else {
            self.ip.stats().icmp.out_dest_unreachs
        }
    }

    fn counters(&self, v6: bool) -> loopstack_transport::udp::UdpCounters {
        if v6 {
            self.udp.stats().udp6
        } else {
            self.udp.stats().udp
        }
    }
}

/// A whole IP packet carrying a UDP datagram with a correct checksum, built by etherparse
/// (an independent implementation), and the offset of its UDP header.
fn ip_packet(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> (Vec<u8>, usize) {
    let builder = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), 64),
        _ => panic!("mixed families"),
    }
    .udp(src.port(), dst.port());
    let mut out = Vec::new();
    builder.write(&mut out, payload).unwrap();
    let offset = if src.is_ipv6() { 40 } else { 20 };
    (out, offset)
}

/// A UDP message (header and payload) with a correct checksum.
fn udp_message(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let (packet, offset) = ip_packet(src, dst, payload);
    packet[offset..].to_vec()
}

// ------------------------------------------------------------------------------ tests

#[test]
fn round_trip_with_addresses() {
    for f in BOTH {
        let mut s = Stack::new();
        let server = s.bind(sa(f.lo, 5353));
        let client = s.bind(sa(f.lo, 0));
        let client_addr = s.udp.local_addr(client).unwrap();
        assert_eq!(client_addr.ip(), ip(f.lo));

        assert_eq!(s.send_to(client, b"question", sa(f.lo, 5353)), Ok(8));
        assert!(!s.udp.can_recv(server), "nothing before the loopback runs");
        s.step();
        assert!(s.udp.can_recv(server));
        assert_eq!(s.recv_from(server), Ok((b"question".to_vec(), client_addr)));

        // And back, to the address the question came from.
        s.send_to(server, b"answer", client_addr).unwrap();
        s.step();
        assert_eq!(
            s.recv_from(client),
            Ok((b"answer".to_vec(), sa(f.lo, 5353)))
        );

        let c = s.counters(f.v6);
        assert_eq!((c.out_datagrams, c.in_datagrams), (2, 2), "{f:?}");
        assert_eq!(c.in_errors + c.no_ports + c.in_csum_errors, 0);
        let other = s.counters(!f.v6);
        assert_eq!(
            other,
            Default::default(),
            "the other family's counters stay put"
        );
    }
}

#[test]
fn zero_length_datagram_is_a_datagram() {
    for f in BOTH {
        let mut s = Stack::new();
        let a = s.bind(sa(f.lo, 4000));
        let b = s.bind(sa(f.lo, 4001));
        assert_eq!(s.send_to(a, b"", sa(f.lo, 4001)), Ok(0));
        s.step();
        assert!(s.udp.can_recv(b));
        let mut buf = [0u8; 16];
        assert_eq!(s.udp.recv_from(b, &mut buf), Ok((0, sa(f.lo, 4000))));
        assert_eq!(s.udp.recv_from(b, &mut buf), Err(Error::WouldBlock));
    }
}

#[test]
fn ephemeral_ports_in_range_and_reproducible() {
    for f in BOTH {
        let ports = |seed| {
            let mut s = Stack::with(UdpConfig::default(), PoolConfig::default(), seed);
            (0..20)
                .map(|_| s.bind(sa(f.lo, 0)))
                .collect::<Vec<_>>()
                .into_iter()
                .map(|h| s.udp.local_addr(h).unwrap().port())
                .collect::<Vec<_>>()
        };
        let a = ports(42);
        assert_eq!(a, ports(42), "same seed, same ports");
        assert_ne!(a, ports(43), "another seed, other ports");
        assert!(a.iter().all(|p| (49152..=65535).contains(p)), "{a:?}");
        let mut unique = a.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), a.len(), "no port handed out twice");
    }
}

#[test]
fn ephemeral_range_exhaustion() {
    for f in BOTH {
        let config = UdpConfig {
            ephemeral_ports: PortRange::new(40000, 40002).unwrap(),
            ..UdpConfig::default()
        };
        let mut s = Stack::with(config, PoolConfig::default(), 7);
        let mut got: Vec<u16> = (0..3)
            .map(|_| {
                let h = s.bind(sa(f.lo, 0));
                s.udp.local_addr(h).unwrap().port()
            })
            .collect();
        got.sort_unstable();
        assert_eq!(got, [40000, 40001, 40002]);
        assert_eq!(s.try_bind(sa(f.lo, 0)), Err(Error::AddrNotAvailable));
        // The other family's ports are a separate namespace.
        let other = if f.v6 { V4 } else { V6 };
        assert!(s.try_bind(sa(other.lo, 0)).is_ok());
    }
}

#[test]
fn addr_in_use_rules() {
    for f in BOTH {
        let mut s = Stack::new();
        let a = s.bind(sa(f.lo, 5000));
        assert_eq!(s.try_bind(sa(f.lo, 5000)), Err(Error::AddrInUse));
        assert_eq!(s.try_bind(sa(f.any, 5000)), Err(Error::AddrInUse));
        s.udp.close(a).unwrap();

        let w = s.bind(sa(f.any, 5000));
        assert_eq!(s.try_bind(sa(f.lo, 5000)), Err(Error::AddrInUse));
        assert_eq!(s.try_bind(sa(f.any, 5000)), Err(Error::AddrInUse));
        assert!(s.try_bind(sa(f.any, 5001)).is_ok(), "another port is free");
        s.udp.close(w).unwrap();
        assert!(s.try_bind(sa(f.lo, 5000)).is_ok(), "close frees the port");
    }
    // Distinct specific addresses share a port.
    let mut s = Stack::new();
    s.bind(sa("127.0.0.1", 5000));
    s.bind(sa("127.0.0.2", 5000));
    assert_eq!(s.try_bind(sa("0.0.0.0", 5000)), Err(Error::AddrInUse));
}

#[test]
fn families_are_separate_namespaces() {
    let mut s = Stack::new();
    let v4 = s.bind(sa("0.0.0.0", 6000));
    let v6 = s.bind(sa("::", 6000));
    s.bind(sa("::1", 6001));
    s.bind(sa("127.0.0.1", 6001));

    // IPV6_V6ONLY behaviour: [::] does not see IPv4, and 0.0.0.0 does not see IPv6.
    let client = s.bind(sa("127.0.0.1", 0));
    s.send_to(client, b"four", sa("127.0.0.1", 6000)).unwrap();
    s.step();
    assert!(!s.udp.can_recv(v6));
    assert_eq!(s.recv_from(v4).unwrap().0, b"four");

    // With only [::] bound, an IPv4 datagram finds no socket.
    s.udp.close(v4).unwrap();
    s.send_to(client, b"four again", sa("127.0.0.1", 6000))
        .unwrap();
    s.step();
    assert!(!s.udp.can_recv(v6));
    assert_eq!(s.udp.stats().udp.no_ports, 1);
    assert_eq!(s.udp.stats().udp6.no_ports, 0);
}

#[test]
fn addr_not_available() {
    for f in BOTH {
        let mut s = Stack::new();
        assert_eq!(
            s.try_bind(sa(f.foreign, 5000)),
            Err(Error::AddrNotAvailable)
        );
        assert_eq!(s.try_bind(sa(f.foreign, 0)), Err(Error::AddrNotAvailable));
    }
    let mut s = Stack::new();
    // ::1 is a /128: ::2 is not ours, unlike 127.0.0.2.
    assert_eq!(s.try_bind(sa("::2", 5000)), Err(Error::AddrNotAvailable));
    // An IPv4-mapped address is not one of ours either (no dual-stack sockets).
    assert_eq!(
        s.try_bind(sa("::ffff:127.0.0.1", 5000)),
        Err(Error::AddrNotAvailable)
    );
}

#[test]
fn all_of_127_slash_8_works() {
    let mut s = Stack::new();
    let one = s.bind(sa("127.0.0.1", 7000));
    let two = s.bind(sa("127.0.0.2", 7000));
    let far = s.bind(sa("127.255.0.9", 0));
    s.send_to(far, b"to two", sa("127.0.0.2", 7000)).unwrap();
    s.send_to(far, b"to one", sa("127.0.0.1", 7000)).unwrap();
    s.step();
    let far_addr = s.udp.local_addr(far).unwrap();
    assert_eq!(far_addr.ip(), ip("127.255.0.9"));
    assert_eq!(s.recv_from(two), Ok((b"to two".to_vec(), far_addr)));
    assert_eq!(s.recv_from(one), Ok((b"to one".to_vec(), far_addr)));

    // A wildcard socket receives for any address in 127/8, and a socket bound to the
    // unspecified address sends from the route's source (127.0.0.1 for a 127/8 peer).
    let any = s.bind(sa("0.0.0.0", 7001));
    s.send_to(any, b"hi", sa("127.0.0.2", 7000)).unwrap();
    s.send_to(far, b"yo", sa("127.3.2.1", 7001)).unwrap();
    s.step();
    assert_eq!(
        s.recv_from(two),
        Ok((b"hi".to_vec(), sa("127.0.0.1", 7001)))
    );
    assert_eq!(s.recv_from(any), Ok((b"yo".to_vec(), far_addr)));
}

/// A socket keeps the path to the last destination it sent to: a socket bound to the
/// unspecified address still gets each destination's own source when it alternates between
/// two, and a route or setting that changes under a kept path is followed from the next
/// datagram on.
#[test]
fn the_kept_path_follows_destinations_and_changes() {
    for f in BOTH {
        let mut s = Stack::new();
        let prefix = if f.v6 { 64 } else { 24 };
        let other: Cidr = format!("{}/{prefix}", f.foreign).parse().unwrap();
        s.ip.add_address(InterfaceId::LOOPBACK, other).unwrap();
        let server = s.bind(sa(f.any, 7000));
        let client = s.bind(sa(f.any, 7001));
        for round in 0..2 {
            for to in [f.foreign, f.lo] {
                s.send_to(client, b"hi", sa(to, 7000)).unwrap();
                s.step();
                assert_eq!(
                    s.recv_from(server),
                    Ok((b"hi".to_vec(), sa(to, 7001))),
                    "{f:?} round {round}: the source is the one the route to {to} picks"
                );
            }
        }

        // A new default hop limit reaches the next datagram along the kept path.
        s.send_to(client, b"a", sa(f.lo, 7000)).unwrap();
        s.ip.config_mut().default_ttl = 9;
        s.send_to(client, b"b", sa(f.lo, 7000)).unwrap();
        let hop_limit = |p: &PacketBuf| if f.v6 { p[7] } else { p[8] };
        let first = s.dev.lo.receive(s.now).unwrap();
        let second = s.dev.lo.receive(s.now).unwrap();
        assert_eq!((hop_limit(&first), hop_limit(&second)), (64, 9), "{f:?}");

        // A destination off this host (a route out of `lo` stands in for a link) becomes
        // unreachable, and reachable again. A route cannot override a local address, which
        // is why this one is not ours.
        let (net, far) = if f.v6 {
            ("2001:db8:1::/64", "2001:db8:1::7")
        } else {
            ("198.51.100.0/24", "198.51.100.7")
        };
        let source = |p: &PacketBuf| -> IpAddr {
            if f.v6 {
                <[u8; 16]>::try_from(&p[8..24]).unwrap().into()
            } else {
                <[u8; 4]>::try_from(&p[12..16]).unwrap().into()
            }
        };
        let net: Cidr = net.parse().unwrap();
        for src in [f.lo, f.foreign] {
            // The route's preferred source changes: the kept path is stale, and the socket
            // (bound to the unspecified address) takes the new source.
            let _ = s.ip.routes_mut().remove(net, 0);
            let route = Route::connected(net, InterfaceId::LOOPBACK, ip(src));
            s.ip.routes_mut().add(route).unwrap();
            assert_eq!(s.send_to(client, b"c", sa(far, 7000)), Ok(1), "{f:?}");
            let p = s.dev.lo.receive(s.now).unwrap();
            assert_eq!(source(&p), ip(src), "{f:?}");
        }
        let host = Cidr::host(ip(far));
        s.ip.routes_mut().add(Route::unreachable(host)).unwrap();
        assert_eq!(
            s.send_to(client, b"d", sa(far, 7000)),
            Err(Error::HostUnreachable),
            "{f:?}"
        );
        s.ip.routes_mut().remove(host, 0).unwrap();
        assert_eq!(s.send_to(client, b"e", sa(far, 7000)), Ok(1), "{f:?}");
    }
}

#[test]
fn largest_datagrams() {
    let mut s = Stack::new();
    let a = s.bind(sa("127.0.0.1", 0));
    let b = s.bind(sa("127.0.0.1", 9000));
    let big: Vec<u8> = (0..MAX_PAYLOAD_V4).map(|i| (i % 251) as u8).collect();
    assert_eq!(MAX_PAYLOAD_V4, 65507);
    assert_eq!(s.send_to(a, &big, sa("127.0.0.1", 9000)), Ok(65507));
    s.step();
    assert_eq!(s.recv_from(b).unwrap().0, big);
    let too_big = vec![0; 65508];
    assert_eq!(
        s.send_to(a, &too_big, sa("127.0.0.1", 9000)),
        Err(Error::MessageTooLong {
            len: 65508,
            max: 65507
        })
    );
    assert_eq!(s.udp.stats().udp.out_datagrams, 1);

    let mut s = Stack::new();
    let a = s.bind(sa("::1", 0));
    let b = s.bind(sa("::1", 9000));
    assert_eq!(MAX_PAYLOAD_V6, 65527);
    assert_eq!(
        s.send_to(a, &vec![0; 65528], sa("::1", 9000)),
        Err(Error::MessageTooLong {
            len: 65528,
            max: 65527
        })
    );
    // The largest IPv6 datagram: 40 + 8 + 65527 = 65575 bytes, more than `lo`'s 65536-byte
    // MTU, so it goes out in two fragments and is reassembled on the way in.
    let big: Vec<u8> = (0..MAX_PAYLOAD_V6).map(|i| (i % 253) as u8).collect();
    assert_eq!(s.send_to(a, &big, sa("::1", 9000)), Ok(65527));
    s.step();
    assert_eq!(s.recv_from(b).unwrap().0, big);
    let ip6 = s.ip.stats().ip6;
    assert_eq!((ip6.frag_oks, ip6.reasm_oks, ip6.reasm_fails), (1, 1, 0));
    // The largest one that fits the MTU unfragmented still goes out whole.
    let unfragmented: Vec<u8> = (0..65536 - 40 - 8).map(|i| (i % 241) as u8).collect();
    s.send_to(a, &unfragmented, sa("::1", 9000)).unwrap();
    s.step();
    assert_eq!(s.recv_from(b).unwrap().0, unfragmented);
    assert_eq!(s.ip.stats().ip6.frag_oks, 1);
    assert_eq!(s.counters(true).out_datagrams, 2);
}

#[test]
fn truncating_recv_discards_the_rest() {
    for f in BOTH {
        let mut s = Stack::new();
        let a = s.bind(sa(f.lo, 0));
        let b = s.bind(sa(f.lo, 9001));
        s.send_to(a, b"0123456789", sa(f.lo, 9001)).unwrap();
        s.send_to(a, b"next", sa(f.lo, 9001)).unwrap();
        s.step();
        let from = s.udp.local_addr(a).unwrap();
        let mut small = [0u8; 4];
        // Peeking leaves the datagram queued.
        assert_eq!(s.udp.peek_from(b, &mut small), Ok((4, from)));
        assert_eq!(s.udp.peek_from(b, &mut small), Ok((4, from)));
        assert_eq!(s.udp.recv_from(b, &mut small), Ok((4, from)));
        assert_eq!(&small, b"0123");
        // The remaining six bytes are gone; the next datagram is next.
        let mut buf = [0u8; 64];
        assert_eq!(s.udp.recv(b, &mut buf), Ok(4));
        assert_eq!(&buf[..4], b"next");
        assert_eq!(s.udp.recv(b, &mut buf), Err(Error::WouldBlock));
    }
}

#[test]
fn closed_port_gets_port_unreachable_and_connected_sender_is_refused_once() {
    for f in BOTH {
        let mut s = Stack::new();
        let c = s.bind(sa(f.lo, 0));
        s.connect(c, sa(f.lo, 9)).unwrap();
        assert_eq!(s.send(c, b"anyone?"), Ok(7));
        s.step();
        assert_eq!(s.counters(f.v6).no_ports, 1);
        assert_eq!(s.icmp_port_unreachables_sent(f.v6), 1, "{f:?}");
        // The error comes back through ICMP to the connected socket: once.
        assert!(s.udp.can_recv(c));
        assert_eq!(s.recv_from(c), Err(Error::ConnectionRefused));
        assert!(!s.udp.can_recv(c));
        assert_eq!(s.recv_from(c), Err(Error::WouldBlock));

        // Again, this time noticed by send (as Linux's next send() reports ECONNREFUSED).
        s.send(c, b"still?").unwrap();
        s.step();
        assert_eq!(s.send(c, b"hello?"), Err(Error::ConnectionRefused));
        assert_eq!(s.udp.take_error(c), Ok(None));
        assert_eq!(s.send(c, b"hello?"), Ok(6));
        s.step();
        assert_eq!(s.udp.take_error(c), Ok(Some(Error::ConnectionRefused)));
        assert_eq!(s.udp.take_error(c), Ok(None));

        // An unconnected sender is not told (Linux without IP_RECVERR).
        let u = s.bind(sa(f.lo, 0));
        s.send_to(u, b"x", sa(f.lo, 9)).unwrap();
        s.step();
        assert_eq!(s.icmp_port_unreachables_sent(f.v6), 4);
        assert!(!s.udp.can_recv(u));
        assert_eq!(s.udp.take_error(u), Ok(None));
    }
}

#[test]
fn icmp_errors_reach_only_the_connected_socket_they_concern() {
    for f in BOTH {
        let mut s = Stack::new();
        let c = s.bind(sa(f.lo, 40000));
        s.connect(c, sa(f.lo, 53)).unwrap();
        let quote = |sport: u16, dport: u16, protocol: u8| {
            let mut first8 = [0u8; 8];
            first8[0..2].copy_from_slice(&sport.to_be_bytes());
            first8[2..4].copy_from_slice(&dport.to_be_bytes());
            QuotedPacket {
                src: ip(f.lo),
                dst: ip(f.lo),
                protocol,
                first8,
                first8_len: 8,
            }
        };
        // Wrong destination port, wrong source port, TCP, a short quote: ignored.
        s.udp
            .icmp_error(IcmpError::PortUnreachable, &quote(40000, 54, UDP));
        s.udp
            .icmp_error(IcmpError::PortUnreachable, &quote(40001, 53, UDP));
        s.udp
            .icmp_error(IcmpError::PortUnreachable, &quote(40000, 53, 6));
        let mut short = quote(40000, 53, UDP);
        short.first8_len = 2;
        s.udp.icmp_error(IcmpError::PortUnreachable, &short);
        // Errors UDP does not report.
        s.udp
            .icmp_error(IcmpError::TtlExceeded, &quote(40000, 53, UDP));
        s.udp.icmp_error(
            IcmpError::PacketTooBig { mtu: 1280 },
            &quote(40000, 53, UDP),
        );
        assert_eq!(s.udp.take_error(c), Ok(None));

        for (icmp, err) in [
            (IcmpError::PortUnreachable, Error::ConnectionRefused),
            (IcmpError::HostUnreachable, Error::HostUnreachable),
            (IcmpError::NetUnreachable, Error::NetworkUnreachable),
        ] {
            s.udp.icmp_error(icmp, &quote(40000, 53, UDP));
            let mut buf = [0u8; 4];
            assert_eq!(s.udp.peek_from(c, &mut buf), Err(err.clone()));
            assert_eq!(s.udp.recv(c, &mut buf), Err(err));
            assert_eq!(s.udp.recv(c, &mut buf), Err(Error::WouldBlock));
        }
    }
}

#[test]
fn corrupted_checksum_is_dropped_and_counted() {
    for f in BOTH {
        let mut s = Stack::new();
        s.dev.offload = false;
        let a = s.bind(sa(f.lo, 0));
        let b = s.bind(sa(f.lo, 9002));
        s.send_to(a, b"precious bytes", sa(f.lo, 9002)).unwrap();
        // Flip a payload bit: the IP header is intact, only UDP's checksum can tell.
        s.step_with(|p| {
            let last = p.len() - 1;
            p.as_mut_slice()[last] ^= 0x01;
        });
        assert!(!s.udp.can_recv(b));
        let c = s.counters(f.v6);
        assert_eq!((c.in_csum_errors, c.in_errors, c.in_datagrams), (1, 1, 0));
        assert_eq!(c.no_ports, 0);

        // Intact, the same datagram verifies and arrives.
        s.send_to(a, b"precious bytes", sa(f.lo, 9002)).unwrap();
        s.step();
        assert_eq!(s.recv_from(b).unwrap().0, b"precious bytes");
    }
}

#[test]
fn corrupted_checksum_fed_directly() {
    for f in BOTH {
        let mut s = Stack::new();
        let b = s.bind(sa(f.lo, 9003));
        let mut m = udp_message(sa(f.lo, 1234), sa(f.lo, 9003), b"data");
        m[9] ^= 0x80;
        s.feed(ip(f.lo), ip(f.lo), &m, true);
        assert_eq!(s.counters(f.v6).in_csum_errors, 1);
        // Without verification (offload), the same bytes are taken as they are.
        s.feed(ip(f.lo), ip(f.lo), &m, false);
        assert!(s.udp.can_recv(b));
        assert_eq!(s.counters(f.v6).in_datagrams, 1);
    }
}

/// On an offloading `lo` only the pseudo-header's sum is written (Linux's
/// `CHECKSUM_PARTIAL`): never zero, so an IPv6 receiver still sees a checksum present.
/// On a device without offload the IP layer finishes it, and it is the one etherparse
/// computes independently.
#[test]
fn checksum_is_partial_on_offloading_lo_and_complete_without_offload() {
    for f in BOTH {
        for offload in [true, false] {
            let mut s = Stack::new();
            s.dev.offload = offload;
            let a = s.bind(sa(f.lo, 1111));
            s.send_to(a, b"odd", sa(f.lo, 2222)).unwrap();
            let p = s.dev.lo.receive(s.now).unwrap();
            let udp = &p[if f.v6 { 40 } else { 20 }..];
            assert_eq!(&udp[..6], &[0x04, 0x57, 0x08, 0xae, 0, 11]);
            assert_ne!(&udp[6..8], &[0, 0]);
            let full = udp_message(sa(f.lo, 1111), sa(f.lo, 2222), b"odd");
            if offload {
                assert_eq!(udp[6..8], checksum::partial(ip(f.lo), ip(f.lo), UDP, 11));
                assert_ne!(udp, &full[..], "the payload was not summed");
            } else {
                assert!(checksum::verify(ip(f.lo), ip(f.lo), UDP, udp));
                assert_eq!(udp, &full[..]);
            }
        }
    }
}

#[test]
fn zero_checksum_accepted_over_ipv4_rejected_over_ipv6() {
    for offload in [true, false] {
        for f in BOTH {
            let mut s = Stack::new();
            s.dev.offload = offload;
            let b = s.bind(sa(f.lo, 9004));
            let (mut packet, off) = ip_packet(sa(f.lo, 1234), sa(f.lo, 9004), b"unsummed");
            packet[off + 6] = 0;
            packet[off + 7] = 0;
            s.inject(&packet);
            let c = s.counters(f.v6);
            if f.v6 {
                // RFC 8200 8.1: zero is not "no checksum" over IPv6, even on offload.
                assert!(!s.udp.can_recv(b));
                assert_eq!((c.in_csum_errors, c.in_errors), (1, 1));
            } else {
                assert_eq!(s.recv_from(b).unwrap().0, b"unsummed");
                assert_eq!((c.in_datagrams, c.in_errors), (1, 0));
            }
        }
    }
}

#[test]
fn malformed_datagrams_are_dropped_and_counted() {
    for f in BOTH {
        let mut s = Stack::new();
        let b = s.bind(sa(f.lo, 9005));
        let src = ip(f.lo);
        let good = udp_message(sa(f.lo, 1), sa(f.lo, 9005), b"abcde");
        // Shorter than a header.
        s.feed(src, src, &good[..7], false);
        s.feed(src, src, &[], false);
        // Length field below 8.
        let mut m = good.clone();
        m[4..6].copy_from_slice(&7u16.to_be_bytes());
        s.feed(src, src, &m, false);
        // Length field beyond the bytes present.
        let mut m = good.clone();
        m[4..6].copy_from_slice(&14u16.to_be_bytes());
        s.feed(src, src, &m, false);
        assert_eq!(s.counters(f.v6).in_errors, 4);
        assert!(!s.udp.can_recv(b));

        // Bytes beyond the length field are padding: trimmed, and the checksum (which
        // covers only `length` bytes) still verifies.
        let short = udp_message(sa(f.lo, 1), sa(f.lo, 9005), b"abc");
        let mut padded = short.clone();
        padded.extend_from_slice(b"PAD");
        s.feed(src, src, &padded, true);
        assert_eq!(s.recv_from(b), Ok((b"abc".to_vec(), sa(f.lo, 1))));
        assert_eq!(s.counters(f.v6).in_errors, 4);
    }
}

/// Feeds `message` to `Udp::receive` in a buffer of `pool` with no headroom in front of it,
/// as a caller outside the stack could.
fn feed_without_headroom(s: &mut Stack, pool: &PacketPool, src: IpAddr, message: &[u8]) {
    let mut p = pool.alloc(message.len()).unwrap();
    let headroom = p.headroom();
    p.prepend(headroom).unwrap();
    p.truncate(0);
    p.extend_from_slice(message).unwrap();
    assert_eq!(p.headroom(), 0);
    let meta = IpMeta {
        src,
        dst: src,
        protocol: UDP,
        ttl: 64,
        iface: InterfaceId::LOOPBACK,
        header_len: 0,
        verify_checksum: false,
    };
    s.udp.receive(s.now, meta, p, &mut s.ip, &mut s.dev);
}

#[test]
fn a_queued_datagram_keeps_its_sender_whatever_the_headroom() {
    // The sender is noted in the headroom (19 bytes in front of the payload). A datagram
    // with less moves to a buffer with the pool's headroom and keeps its sender.
    for f in BOTH {
        let mut s = Stack::new();
        let b = s.bind(sa(f.lo, 9006));
        let pool = s.pool.clone();
        let m = udp_message(sa(f.lo, 4242), sa(f.lo, 9006), b"roomless");
        feed_without_headroom(&mut s, &pool, ip(f.lo), &m);
        assert_eq!(s.recv_from(b), Ok((b"roomless".to_vec(), sa(f.lo, 4242))));
        assert_eq!(s.counters(f.v6).in_errors, 0);
    }
    // A pool with no headroom at all has nowhere to note it: dropped and counted, never a
    // panic or a wrong sender.
    for f in BOTH {
        let pool = PoolConfig {
            headroom: 0,
            ..PoolConfig::default()
        };
        let mut s = Stack::with(UdpConfig::default(), pool, 1);
        let b = s.bind(sa(f.lo, 9007));
        let pool = s.pool.clone();
        let m = udp_message(sa(f.lo, 4243), sa(f.lo, 9007), b"nowhere");
        feed_without_headroom(&mut s, &pool, ip(f.lo), &m);
        assert!(!s.udp.can_recv(b));
        let c = s.counters(f.v6);
        assert_eq!((c.in_datagrams, c.in_errors), (0, 1));
    }
}

#[test]
fn receive_queue_overflow_drops_without_growing() {
    for f in BOTH {
        let config = UdpConfig {
            recv_queue_datagrams: 3,
            ..UdpConfig::default()
        };
        let mut s = Stack::with(config, PoolConfig::default(), 1);
        let a = s.bind(sa(f.lo, 0));
        let b = s.bind(sa(f.lo, 9006));
        for i in 0..5u8 {
            s.send_to(a, &[i; 10], sa(f.lo, 9006)).unwrap();
        }
        s.step();
        let c = s.counters(f.v6);
        assert_eq!(
            (c.in_datagrams, c.rcvbuf_errors, c.in_errors),
            (3, 2, 2),
            "{f:?}"
        );
        let queued = |s: &Stack| s.udp.sockets().find(|x| x.0 == b).unwrap().3;
        assert_eq!(queued(&s), 30);
        // The oldest are kept; the newest were dropped.
        assert_eq!(s.recv_from(b).unwrap().0, [0; 10]);
        s.send_to(a, &[9; 10], sa(f.lo, 9006)).unwrap();
        s.step();
        let got: Vec<u8> = (0..3).map(|_| s.recv_from(b).unwrap().0[0]).collect();
        assert_eq!(got, [1, 2, 9]);
    }

    // The byte limit: full at 100 payload bytes, but an empty queue takes any datagram.
    let config = UdpConfig {
        recv_queue_bytes: 100,
        ..UdpConfig::default()
    };
    let mut s = Stack::with(config, PoolConfig::default(), 1);
    let a = s.bind(sa("127.0.0.1", 0));
    let b = s.bind(sa("127.0.0.1", 9007));
    for len in [60, 60, 40, 1] {
        s.send_to(a, &vec![7; len], sa("127.0.0.1", 9007)).unwrap();
    }
    s.step();
    assert_eq!(s.udp.sockets().find(|x| x.0 == b).unwrap().3, 100);
    assert_eq!(s.udp.stats().udp.rcvbuf_errors, 2);
    s.recv_from(b).unwrap();
    s.recv_from(b).unwrap();
    s.send_to(a, &[1; 500], sa("127.0.0.1", 9007)).unwrap();
    s.step();
    assert_eq!(s.recv_from(b).unwrap().0.len(), 500);
}

#[test]
fn connected_socket_ignores_other_sources() {
    for f in BOTH {
        let mut s = Stack::new();
        let peer = s.bind(sa(f.lo, 0));
        let stranger = s.bind(sa(f.lo, 0));
        let b = s.bind(sa(f.lo, 9008));
        let peer_addr = s.udp.local_addr(peer).unwrap();
        s.connect(b, peer_addr).unwrap();
        assert_eq!(s.udp.peer_addr(b), Ok(peer_addr));

        s.send_to(stranger, b"psst", sa(f.lo, 9008)).unwrap();
        s.send_to(peer, b"hello", sa(f.lo, 9008)).unwrap();
        s.step();
        assert_eq!(s.recv_from(b), Ok((b"hello".to_vec(), peer_addr)));
        assert_eq!(s.recv_from(b), Err(Error::WouldBlock));
        // As on Linux, the stranger's datagram found no socket to take it.
        assert_eq!(s.counters(f.v6).no_ports, 1);
        assert_eq!(s.icmp_port_unreachables_sent(f.v6), 1);
        // The stranger is not connected, so it is not told.
        assert_eq!(s.udp.take_error(stranger), Ok(None));

        // Connecting again changes the peer.
        let stranger_addr = s.udp.local_addr(stranger).unwrap();
        s.connect(b, stranger_addr).unwrap();
        s.send_to(stranger, b"now me", sa(f.lo, 9008)).unwrap();
        s.send_to(peer, b"not me", sa(f.lo, 9008)).unwrap();
        s.step();
        assert_eq!(s.recv_from(b), Ok((b"now me".to_vec(), stranger_addr)));
        assert_eq!(s.recv_from(b), Err(Error::WouldBlock));

        // A connected socket may still send elsewhere.
        assert_eq!(s.send_to(b, b"aside", peer_addr), Ok(5));
        s.step();
        assert_eq!(s.recv_from(peer).unwrap().0, b"aside");
    }
}

/// The receive path remembers which socket a port and address went to lately: a socket
/// closed and its slot taken by another must not keep receiving through that memory.
#[test]
fn a_closed_socket_slot_reused_does_not_inherit_its_datagrams() {
    for f in BOTH {
        let mut s = Stack::new();
        let client = s.bind(sa(f.lo, 0));
        let wildcard = s.bind(sa(f.any, 7200));
        s.send_to(client, b"one", sa(f.lo, 7200)).unwrap();
        s.step();
        assert_eq!(s.recv_from(wildcard).unwrap().0, b"one");

        s.udp.close(wildcard).unwrap();
        // Another port takes the freed slot, then a socket bound to the exact address
        // takes the port.
        let other = s.bind(sa(f.lo, 7300));
        let exact = s.bind(sa(f.lo, 7200));
        s.send_to(client, b"two", sa(f.lo, 7200)).unwrap();
        s.step();
        assert_eq!(s.recv_from(other), Err(Error::WouldBlock), "{f:?}");
        assert_eq!(s.recv_from(exact).unwrap().0, b"two");

        s.udp.close(exact).unwrap();
        s.send_to(client, b"three", sa(f.lo, 7200)).unwrap();
        s.step();
        assert_eq!(s.recv_from(other), Err(Error::WouldBlock));
        assert_eq!(s.counters(f.v6).no_ports, 1);
    }
}

#[test]
fn connect_rules() {
    for f in BOTH {
        let mut s = Stack::new();
        let h = s.bind(sa(f.any, 7100));
        let other = if f.v6 { V4 } else { V6 };
        assert!(matches!(
            s.connect(h, sa(f.lo, 0)),
            Err(Error::InvalidInput(_))
        ));
        assert!(matches!(
            s.connect(h, sa(other.lo, 53)),
            Err(Error::InvalidInput(_))
        ));
        // No default route on a loopback-only host.
        assert_eq!(
            s.connect(h, sa(f.foreign, 53)),
            Err(Error::NetworkUnreachable)
        );
        assert_eq!(s.udp.peer_addr(h), Err(Error::NotConnected));
        assert_eq!(s.udp.local_addr(h), Ok(sa(f.any, 7100)));

        // Bound to the unspecified address, connect picks the route's source.
        s.connect(h, sa(f.lo, 53)).unwrap();
        assert_eq!(s.udp.local_addr(h), Ok(sa(f.lo, 7100)));
        assert_eq!(s.udp.peer_addr(h), Ok(sa(f.lo, 53)));
        // It still holds the port.
        assert_eq!(s.try_bind(sa(f.lo, 7100)), Err(Error::AddrInUse));
        assert_eq!(s.try_bind(sa(f.any, 7100)), Err(Error::AddrInUse));
    }
    // 127.0.0.2 is reached from 127.0.0.1, Linux's `ip route get 127.0.0.2`.
    let mut s = Stack::new();
    let h = s.bind(sa("0.0.0.0", 7101));
    s.connect(h, sa("127.0.0.2", 53)).unwrap();
    assert_eq!(s.udp.local_addr(h), Ok(sa("127.0.0.1", 7101)));
}

#[test]
fn send_argument_errors() {
    for f in BOTH {
        let mut s = Stack::new();
        let h = s.bind(sa(f.lo, 0));
        let other = if f.v6 { V4 } else { V6 };
        assert_eq!(s.send(h, b"x"), Err(Error::NotConnected));
        assert!(matches!(
            s.send_to(h, b"x", sa(f.lo, 0)),
            Err(Error::InvalidInput(_))
        ));
        assert!(matches!(
            s.send_to(h, b"x", sa(other.lo, 53)),
            Err(Error::InvalidInput(_))
        ));
        assert_eq!(
            s.send_to(h, b"x", sa(f.foreign, 53)),
            Err(Error::NetworkUnreachable)
        );
        assert_eq!(s.counters(f.v6).out_datagrams, 0);
        assert_eq!(s.dev.lo.queued(), 0);
    }
}

#[test]
fn closed_and_stale_handles_are_bad() {
    let mut s = Stack::new();
    let h = s.bind(sa("127.0.0.1", 7200));
    s.udp.close(h).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(s.udp.close(h), Err(Error::BadHandle));
    assert_eq!(s.udp.local_addr(h), Err(Error::BadHandle));
    assert_eq!(s.udp.peer_addr(h), Err(Error::BadHandle));
    assert_eq!(s.udp.take_error(h), Err(Error::BadHandle));
    assert_eq!(s.udp.recv_from(h, &mut buf), Err(Error::BadHandle));
    assert_eq!(s.udp.recv(h, &mut buf), Err(Error::BadHandle));
    assert_eq!(s.udp.peek_from(h, &mut buf), Err(Error::BadHandle));
    assert!(!s.udp.can_recv(h));
    assert_eq!(s.connect(h, sa("127.0.0.1", 53)), Err(Error::BadHandle));
    assert_eq!(s.send(h, b"x"), Err(Error::BadHandle));
    assert_eq!(
        s.send_to(h, b"x", sa("127.0.0.1", 53)),
        Err(Error::BadHandle)
    );
    // The slot is reused by the next socket, under a new handle; the old one stays stale.
    let n = s.bind(sa("127.0.0.1", 7200));
    assert_ne!(n, h);
    assert_eq!(s.udp.close(h), Err(Error::BadHandle));
    assert_eq!(s.udp.local_addr(n), Ok(sa("127.0.0.1", 7200)));
}

#[test]
fn recv_on_empty_would_block() {
    for f in BOTH {
        let mut s = Stack::new();
        let h = s.bind(sa(f.lo, 0));
        let mut buf = [0u8; 8];
        assert!(!s.udp.can_recv(h));
        assert_eq!(s.udp.recv_from(h, &mut buf), Err(Error::WouldBlock));
        assert_eq!(s.udp.recv(h, &mut buf), Err(Error::WouldBlock));
        assert_eq!(s.udp.peek_from(h, &mut buf), Err(Error::WouldBlock));
    }
}

#[test]
fn close_returns_queued_buffers_to_the_pool() {
    let mut s = Stack::new();
    let a = s.bind(sa("127.0.0.1", 0));
    let b = s.bind(sa("127.0.0.1", 7300));
    for _ in 0..5 {
        s.send_to(a, b"held", sa("127.0.0.1", 7300)).unwrap();
    }
    s.step();
    assert_eq!(
        s.pool.stats().in_use(),
        5,
        "received datagrams stay in their buffers"
    );
    s.udp.close(b).unwrap();
    assert_eq!(s.pool.stats().in_use(), 0);
    // The port is free again, and nothing old is delivered to the new socket.
    let b2 = s.bind(sa("127.0.0.1", 7300));
    assert!(!s.udp.can_recv(b2));
}

#[test]
fn pool_exhaustion_is_would_block_and_counted() {
    for f in BOTH {
        let mut s = Stack::with(UdpConfig::default(), PoolConfig::single(2048, 3), 1);
        let a = s.bind(sa(f.lo, 0));
        s.bind(sa(f.lo, 7400));
        // Each datagram waits in the loopback ring, holding its buffer.
        for _ in 0..3 {
            s.send_to(a, b"x", sa(f.lo, 7400)).unwrap();
        }
        assert_eq!(s.send_to(a, b"x", sa(f.lo, 7400)), Err(Error::WouldBlock));
        let c = s.counters(f.v6);
        assert_eq!((c.sndbuf_errors, c.out_datagrams), (1, 3));
        // A message the pool can never hold is too long, not a shortage.
        assert!(matches!(
            s.send_to(a, &[0; 4096], sa(f.lo, 7400)),
            Err(Error::MessageTooLong { len: 4096, .. })
        ));
        assert_eq!(s.counters(f.v6).sndbuf_errors, 1);
    }
}

#[test]
fn sockets_listing_in_handle_order() {
    let mut s = Stack::new();
    let a = s.bind(sa("127.0.0.1", 8000));
    let b = s.bind(sa("::1", 8000));
    let c = s.bind(sa("0.0.0.0", 8001));
    s.connect(c, sa("127.0.0.1", 8000)).unwrap();
    s.send(c, b"12345").unwrap();
    s.step();
    s.udp.close(b).unwrap();
    let d = s.bind(sa("::", 8002));
    let list: Vec<_> = s.udp.sockets().collect();
    let mut sorted = list.clone();
    sorted.sort_by_key(|x| x.0);
    assert_eq!(list, sorted);
    assert_eq!(
        list,
        vec![
            (a, sa("127.0.0.1", 8000), None, 5),
            (d, sa("::", 8002), None, 0),
            (c, sa("127.0.0.1", 8001), Some(sa("127.0.0.1", 8000)), 0),
        ]
    );
}

#[test]
fn same_seed_same_bytes_on_the_wire() {
    let run = || {
        let mut s = Stack::new();
        let mut wire = Vec::new();
        for f in BOTH {
            let a = s.bind(sa(f.lo, 0));
            let b = s.bind(sa(f.any, 0));
            let to = SocketAddr::new(ip(f.lo), s.udp.local_addr(b).unwrap().port());
            s.send_to(a, b"deterministic", to).unwrap();
            s.connect(a, sa(f.lo, 9)).unwrap();
            s.send(a, b"refused").unwrap();
            while let Some(p) = s.dev.lo.receive(s.now) {
                wire.push(p.to_vec());
                s.up(p);
            }
        }
        wire
    };
    let a = run();
    assert!(a.len() >= 6, "datagrams and ICMP errors: {}", a.len());
    assert_eq!(a, run());
}

/// Random bytes, in every place a packet can carry them: nothing panics, and every drop
/// is counted somewhere.
#[test]
fn garbage_never_panics() {
    let mut rng = Rng::new(2024);
    for f in BOTH {
        for offload in [true, false] {
            let mut s = Stack::new();
            s.dev.offload = offload;
            s.bind(sa(f.lo, 1));
            s.bind(sa(f.any, 2));
            let c = s.bind(sa(f.lo, 3));
            s.connect(c, sa(f.lo, 1)).unwrap();
            let mut bytes = Vec::new();
            for _ in 0..2000 {
                let len = rng.below(40) as usize;
                bytes.clear();
                bytes.extend((0..len).map(|_| rng.below(256) as u8));
                // Aim some at the bound ports so demux and queueing run too.
                if len >= 4 && rng.chance(0.5) {
                    bytes[2] = 0;
                    bytes[3] = rng.below(4) as u8;
                }
                if len >= 6 && rng.chance(0.5) {
                    bytes[4..6].copy_from_slice(&(len as u16).to_be_bytes());
                }
                // Straight to UDP ...
                s.feed(ip(f.lo), ip(f.lo), &bytes, rng.chance(0.5));
                // ... and inside a well-formed IP packet.
                let (mut packet, off) = ip_packet(sa(f.lo, 7), sa(f.lo, 8), &[]);
                packet.truncate(off);
                packet.extend_from_slice(&bytes);
                if f.v6 {
                    packet[4..6].copy_from_slice(&(bytes.len() as u16).to_be_bytes());
                } else {
                    let total = (off + bytes.len()) as u16;
                    packet[2..4].copy_from_slice(&total.to_be_bytes());
                    packet[10..12].copy_from_slice(&[0, 0]);
                    let h = etherparse::Ipv4HeaderSlice::from_slice(&packet[..off])
                        .unwrap()
                        .to_header();
                    packet[10..12].copy_from_slice(&h.calc_header_checksum().to_be_bytes());
                }
                s.inject(&packet);
                // Drain receive queues now and then.
                for h in s.udp.sockets().map(|x| x.0).collect::<Vec<_>>() {
                    while s.udp.recv_from(h, &mut [0u8; 64]).is_ok() {}
                }
            }
            let k = s.counters(f.v6);
            assert!(
                k.in_errors > 0 && k.no_ports > 0 && k.in_datagrams > 0,
                "{k:?}"
            );
            assert_eq!(
                s.counters(!f.v6),
                Default::default(),
                "only {f:?} traffic was sent"
            );
        }
    }
}
