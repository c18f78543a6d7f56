//! The internet layer driven end to end: hosts with a real `Loopback` device, and pairs of
//! hosts joined by a simulated point-to-point wire, stepped on a virtual clock.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::Duration;

use etherparse::{IpNumber, PacketBuilder};
use loopstack_buf::{PacketBuf, PacketPool, PoolConfig};
use loopstack_internet::icmp::IcmpError;
use loopstack_internet::icmp::QuotedPacket;
use loopstack_internet::iface::{InterfaceId, InterfaceKind};
use loopstack_internet::layer::{
    Delivery, Internet, InternetConfig, IpMeta, Links, SendError, SendOptions, Upper,
};
use loopstack_internet::route::{Route, RouteError, RouteKind};
use loopstack_internet::Cidr;
use loopstack_link::{
    ChecksumOffload, Device, DeviceCapabilities, Instant, Loopback, Medium, TxError,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn cidr(s: &str) -> Cidr {
    s.parse().unwrap()
}

/// The devices of one host: `lo`, and optionally one end of a wire (interface 2), whose
/// transmitted packets queue up for the host at the other end.
struct Devices {
    lo: Loopback,
    wire_out: VecDeque<PacketBuf>,
    wire_mtu: usize,
}

impl Links for Devices {
    fn capabilities(&self, iface: InterfaceId) -> Option<DeviceCapabilities> {
        match iface.0 {
            1 => Some(self.lo.capabilities()),
            2 => Some(DeviceCapabilities {
                mtu: self.wire_mtu,
                medium: Medium::Ip,
                checksum_offload: ChecksumOffload::NONE,
                scatter_gather: false,
            }),
            _ => None,
        }
    }
    fn transmit(&mut self, now: Instant, iface: InterfaceId, p: PacketBuf) -> Result<(), TxError> {
        match iface.0 {
            1 => self.lo.transmit(now, p),
            2 if p.len() > self.wire_mtu => Err(TxError::TooLarge {
                len: p.len(),
                mtu: self.wire_mtu,
            }),
            2 => {
                self.wire_out.push_back(p);
                Ok(())
            }
            _ => Err(TxError::Io(std::io::ErrorKind::NotFound)),
        }
    }
}

struct Host {
    ip: Internet,
    dev: Devices,
    pool: PacketPool,
    delivered: Vec<Delivery>,
}

impl Host {
    fn new(pool: &PacketPool) -> Self {
        Host {
            ip: Internet::new(pool.clone(), InternetConfig::default()),
            dev: Devices {
                lo: Loopback::new(),
                wire_out: VecDeque::new(),
                wire_mtu: 1500,
            },
            pool: pool.clone(),
            delivered: Vec::new(),
        }
    }

    /// Gives the host a wire interface with `addr`.
    fn wired(pool: &PacketPool, addr: &str, mtu: usize) -> Self {
        let mut h = Host::new(pool);
        let id =
            h.ip.add_interface("sim0", InterfaceKind::PointToPoint, mtu)
                .unwrap();
        assert_eq!(id, InterfaceId(2));
        h.ip.add_address(id, cidr(addr)).unwrap();
        h.dev.wire_mtu = mtu;
        h
    }

    /// Processes everything queued on `lo` until quiet.
    fn run_lo(&mut self, now: Instant) {
        while let Some(p) = self.dev.lo.receive(now) {
            if let Some(d) = self
                .ip
                .receive(now, InterfaceId::LOOPBACK, p, &mut self.dev)
            {
                self.delivered.push(d);
            }
        }
    }

    fn inject(&mut self, now: Instant, iface: InterfaceId, bytes: &[u8]) {
        let p = self.pool.alloc_from_slice(bytes).unwrap();
        if let Some(d) = self.ip.receive(now, iface, p, &mut self.dev) {
            self.delivered.push(d);
        }
        self.run_lo(now);
    }

    fn ping(&mut self, now: Instant, dst: &str, seq: u16, size: usize) -> Result<(), SendError> {
        self.ip
            .send_echo_request(now, ip(dst), 7, seq, size, &mut self.dev)?;
        self.run_lo(now);
        Ok(())
    }
}

/// Moves everything on the wire between two hosts until both are quiet.
fn run_wire(a: &mut Host, b: &mut Host, now: Instant) {
    loop {
        let mut moved = false;
        while let Some(p) = a.dev.wire_out.pop_front() {
            moved = true;
            if let Some(d) = b.ip.receive(now, InterfaceId(2), p, &mut b.dev) {
                b.delivered.push(d);
            }
            b.run_lo(now);
        }
        while let Some(p) = b.dev.wire_out.pop_front() {
            moved = true;
            if let Some(d) = a.ip.receive(now, InterfaceId(2), p, &mut a.dev) {
                a.delivered.push(d);
            }
            a.run_lo(now);
        }
        if !moved {
            break;
        }
    }
}

/// Recomputes the IPv4 header checksum after a test has edited the header.
fn reseal_v4(p: &mut [u8]) {
    p[10] = 0;
    p[11] = 0;
    let sum = etherparse::Ipv4HeaderSlice::from_slice(p)
        .unwrap()
        .to_header()
        .calc_header_checksum();
    p[10..12].copy_from_slice(&sum.to_be_bytes());
}

fn pool() -> PacketPool {
    PacketPool::new(PoolConfig::default()).unwrap()
}

fn udp_bytes(src: &str, dst: &str, payload: &[u8]) -> Vec<u8> {
    let b = match (ip(src), ip(dst)) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            PacketBuilder::ipv4(s.octets(), d.octets(), 64).udp(5000, 6000)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            PacketBuilder::ipv6(s.octets(), d.octets(), 64).udp(5000, 6000)
        }
        _ => unreachable!(),
    };
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

#[test]
fn every_loopback_address_answers_ping() {
    let pool = pool();
    let mut h = Host::new(&pool);
    let now = Instant::from_millis(1);
    let targets = [
        "127.0.0.1",
        "127.0.0.2",
        "127.255.255.254",
        "127.1.2.3",
        "::1",
    ];
    for (seq, t) in targets.iter().enumerate() {
        h.ping(now, t, seq as u16, 56).unwrap();
        let r =
            h.ip.take_echo_reply()
                .unwrap_or_else(|| panic!("no reply from {t}"));
        assert_eq!(r.from, ip(t), "reply comes from the address pinged");
        assert_eq!((r.id, r.seq, r.ttl, r.len), (7, seq as u16, 64, 64));
        assert_eq!(r.rtt, Some(Duration::ZERO));
    }
    let s = h.ip.stats();
    assert_eq!(
        (s.icmp.out_echos, s.icmp.in_echos, s.icmp.out_echo_reps),
        (4, 4, 4)
    );
    assert_eq!(s.icmp.in_echo_reps, 4);
    assert_eq!((s.icmp6.out_echos, s.icmp6.in_echo_replies), (1, 1));
    assert_eq!(pool.stats().in_use(), 0, "every buffer went back");
}

#[test]
fn unroutable_destinations_fail_clearly() {
    let pool = pool();
    let mut h = Host::new(&pool);
    let now = Instant::ZERO;
    for dst in ["8.8.8.8", "192.0.2.1", "::2", "2001:db8::1"] {
        let err = h.ping(now, dst, 1, 56).unwrap_err();
        assert_eq!(err, SendError::Route(RouteError::NoRoute(ip(dst))), "{dst}");
        assert!(err.to_string().contains("network is unreachable"), "{err}");
    }
    assert_eq!(h.ip.stats().ip.out_no_routes, 2);
    assert_eq!(h.ip.stats().ip6.out_no_routes, 2);
}

#[test]
fn echo_replies_can_be_switched_off() {
    let pool = pool();
    let mut h = Host::new(&pool);
    h.ip.config_mut().echo_reply = false;
    h.ping(Instant::ZERO, "127.0.0.1", 1, 56).unwrap();
    assert!(h.ip.take_echo_reply().is_none());
    assert_eq!(h.ip.stats().icmp.in_echos, 1);
    assert_eq!(h.ip.stats().icmp.out_echo_reps, 0);
}

#[test]
fn transport_packets_are_delivered_with_headers_stripped() {
    let pool = pool();
    let mut h = Host::new(&pool);
    for (src, dst) in [("127.0.0.1", "127.0.0.9"), ("::1", "::1")] {
        h.inject(
            Instant::ZERO,
            InterfaceId::LOOPBACK,
            &udp_bytes(src, dst, b"hello"),
        );
        let Some(Delivery::Transport { meta, mut packet }) = h.delivered.pop() else {
            panic!("not delivered")
        };
        assert_eq!((meta.src, meta.dst, meta.protocol), (ip(src), ip(dst), 17));
        assert_eq!(&packet[8..], b"hello");
        // The header can be restored for an ICMP error.
        packet.unstrip_front(meta.header_len).unwrap();
        assert_eq!(packet[0] >> 4, if meta.dst.is_ipv6() { 6 } else { 4 });
    }
}

/// Martians arriving on the wire: dropped and counted, never delivered.
#[test]
fn martians_on_a_non_loopback_interface_are_dropped() {
    let pool = pool();
    let cases = [
        ("127.0.0.1", "192.0.2.2"),
        ("192.0.2.1", "127.0.0.1"),
        ("224.0.0.5", "192.0.2.2"),
        ("0.1.2.3", "192.0.2.2"),
        ("::1", "2001:db8::2"),
        ("2001:db8::1", "::1"),
        ("ff02::1", "2001:db8::2"),
    ];
    let mut h = Host::wired(&pool, "192.0.2.2/24", 1500);
    h.ip.add_address(InterfaceId(2), cidr("2001:db8::2/64"))
        .unwrap();
    for (src, dst) in cases {
        h.inject(Instant::ZERO, InterfaceId(2), &udp_bytes(src, dst, b"x"));
        assert!(h.delivered.is_empty(), "{src} -> {dst} was delivered");
    }
    let s = h.ip.stats();
    assert_eq!(s.ip.in_martians + s.ip6.in_martians, cases.len() as u64);
    // The same kind of packet from a proper address is delivered.
    h.inject(
        Instant::ZERO,
        InterfaceId(2),
        &udp_bytes("192.0.2.1", "192.0.2.2", b"x"),
    );
    assert_eq!(h.delivered.len(), 1);
}

#[test]
fn the_stack_never_sends_loopback_sources_onto_the_wire() {
    let pool = pool();
    let mut h = Host::wired(&pool, "192.0.2.2/24", 1500);
    let buf = pool.alloc_from_slice(&[0u8; 8]).unwrap();
    let err =
        h.ip.send(
            Instant::ZERO,
            buf,
            ip("192.0.2.1"),
            17,
            SendOptions {
                src: Some(ip("127.0.0.1")),
                ..Default::default()
            },
            &mut h.dev,
        )
        .unwrap_err();
    assert!(matches!(err, SendError::Martian(_)), "{err}");
    assert!(h.dev.wire_out.is_empty());
    let buf = pool.alloc_from_slice(&[0u8; 8]).unwrap();
    let err =
        h.ip.send(
            Instant::ZERO,
            buf,
            ip("127.0.0.1"),
            17,
            SendOptions {
                src: Some(ip("10.9.9.9")),
                ..Default::default()
            },
            &mut h.dev,
        )
        .unwrap_err();
    assert_eq!(err, SendError::AddrNotAvailable(ip("10.9.9.9")));
}

/// Malformed headers of every kind are dropped and counted, never delivered, never a panic.
/// They arrive on the wire, whose device offers no checksum offload, so every check runs.
#[test]
fn malformed_packets_are_counted() {
    let pool = pool();
    let mut h = Host::wired(&pool, "192.0.2.2/24", 1500);
    let good = udp_bytes("192.0.2.1", "192.0.2.2", b"hello");
    let mutated = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut p = good.clone();
        f(&mut p);
        p
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("one byte", vec![0x45]),
        ("19 bytes", good[..19].to_vec()),
        ("bad header checksum", mutated(&|p| p[10] ^= 0xff)),
        ("total length < header", mutated(&|p| p[3] = 10)),
        ("total length > packet", mutated(&|p| p[3] = 200)),
        ("version 7", vec![0x75; 40]),
    ];
    for (what, c) in &cases {
        h.inject(Instant::ZERO, InterfaceId(2), c);
        assert!(h.delivered.is_empty(), "{what} was delivered");
    }
    let s = h.ip.stats();
    assert_eq!(s.ip.in_receives, cases.len() as u64);
    assert_eq!(s.ip.in_hdr_errors, cases.len() as u64);
    assert_eq!(s.ip.in_csum_errors, 1);
    let v6 = udp_bytes("2001:db8::1", "2001:db8::2", b"x");
    h.inject(Instant::ZERO, InterfaceId(2), &v6[..39]);
    h.inject(Instant::ZERO, InterfaceId(2), &v6[..45]);
    assert_eq!(h.ip.stats().ip6.in_truncated_pkts, 2);
    // The good packet itself is delivered.
    h.inject(Instant::ZERO, InterfaceId(2), &good);
    assert_eq!(h.delivered.len(), 1);
}

/// On `lo` the device vouches for its packets (checksum offload), as Linux's does, so a
/// damaged header checksum is not even looked at there.
#[test]
fn loopback_offload_skips_header_checksums() {
    let pool = pool();
    let mut h = Host::new(&pool);
    let mut p = udp_bytes("127.0.0.1", "127.0.0.1", b"hello");
    p[10] ^= 0xff;
    h.inject(Instant::ZERO, InterfaceId::LOOPBACK, &p);
    assert_eq!(h.delivered.len(), 1);
    assert_eq!(h.ip.stats().ip.in_csum_errors, 0);
}

#[test]
fn unknown_protocols_get_protocol_unreachable_back() {
    let pool = pool();
    let mut h = Host::new(&pool);
    let mut p = udp_bytes("127.0.0.1", "127.0.0.1", b"hello");
    p[9] = 253;
    reseal_v4(&mut p);
    h.inject(Instant::ZERO, InterfaceId::LOOPBACK, &p);
    // The error came back to us (we sent it to ourselves), and is passed up to transport.
    match h.delivered.pop() {
        Some(Delivery::IcmpError { error, quoted, .. }) => {
            assert_eq!(error, IcmpError::ProtocolUnreachable { pointer: 0 });
            assert_eq!(quoted.protocol, 253);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.ip.stats().ip.in_unknown_protos, 1);
    assert_eq!(h.ip.stats().icmp.out_dest_unreachs, 1);
}

#[test]
fn icmp_errors_are_rate_limited() {
    let pool = pool();
    let mut h = Host::new(&pool);
    let mut p = udp_bytes("127.0.0.1", "127.0.0.1", b"x");
    p[9] = 253;
    reseal_v4(&mut p);
    for _ in 0..200 {
        h.inject(Instant::ZERO, InterfaceId::LOOPBACK, &p);
    }
    let s = h.ip.stats();
    assert_eq!(s.icmp.out_dest_unreachs, 50, "the burst");
    assert_eq!(s.icmp.out_rate_limit_global, 150);
    // A millisecond later one more token is there (1000 per second).
    h.inject(Instant::from_millis(1), InterfaceId::LOOPBACK, &p);
    assert_eq!(h.ip.stats().icmp.out_dest_unreachs, 51);
}

/// A datagram bigger than the wire's MTU is fragmented by the sender and reassembled by the
/// receiver, for IPv4 and IPv6, with the payload intact.
#[test]
fn fragmentation_across_a_small_mtu_link() {
    let pool = pool();
    let mut a = Host::wired(&pool, "192.0.2.1/24", 1500);
    let mut b = Host::wired(&pool, "192.0.2.2/24", 1500);
    a.ip.add_address(InterfaceId(2), cidr("2001:db8::1/64"))
        .unwrap();
    b.ip.add_address(InterfaceId(2), cidr("2001:db8::2/64"))
        .unwrap();
    let payload: Vec<u8> = (0..6000u32).map(|i| (i % 251) as u8).collect();
    for (src, dst) in [("192.0.2.1", "192.0.2.2"), ("2001:db8::1", "2001:db8::2")] {
        let full = udp_bytes(src, dst, &payload);
        // Hand the UDP message (everything after the IP header) to `send`.
        let ip_len = if ip(dst).is_ipv6() { 40 } else { 20 };
        let msg = pool.alloc_from_slice(&full[ip_len..]).unwrap();
        a.ip.send(
            Instant::ZERO,
            msg,
            ip(dst),
            17,
            SendOptions {
                src: Some(ip(src)),
                ..Default::default()
            },
            &mut a.dev,
        )
        .unwrap();
        assert!(
            a.dev.wire_out.len() >= 5,
            "fragmented into {}",
            a.dev.wire_out.len()
        );
        assert!(a.dev.wire_out.iter().all(|f| f.len() <= 1500));
        // Deliver the fragments in reverse order.
        let frags: Vec<PacketBuf> = a.dev.wire_out.drain(..).rev().collect();
        for f in frags {
            if let Some(d) = b.ip.receive(Instant::ZERO, InterfaceId(2), f, &mut b.dev) {
                b.delivered.push(d);
            }
        }
        match b.delivered.pop() {
            Some(Delivery::Transport { meta, packet }) => {
                assert_eq!(meta.src, ip(src));
                assert_eq!(&packet[8..], &payload[..]);
            }
            other => panic!("{other:?}"),
        }
    }
    let (sa, sb) = (a.ip.stats(), b.ip.stats());
    assert_eq!((sa.ip.frag_oks, sa.ip6.frag_oks), (1, 1));
    assert_eq!((sb.ip.reasm_oks, sb.ip6.reasm_oks), (1, 1));
    // With Don't Fragment, the sender refuses instead.
    let msg = pool.alloc_from_slice(&[0u8; 3000]).unwrap();
    let err =
        a.ip.send(
            Instant::ZERO,
            msg,
            ip("192.0.2.2"),
            17,
            SendOptions {
                dont_fragment: true,
                ..Default::default()
            },
            &mut a.dev,
        )
        .unwrap_err();
    assert_eq!(
        err,
        SendError::MessageTooLong {
            len: 3020,
            mtu: 1500
        }
    );
}

/// The largest IPv6 packet, 40 + 65535 bytes, does not fit `lo`'s 65536-byte MTU: it leaves
/// in two fragments and must come back reassembled, which takes a buffer of 65575 bytes.
#[test]
fn largest_ipv6_datagram_round_trips_through_lo_fragmented() {
    let pool = pool();
    let mut h = Host::new(&pool);
    // A UDP-sized message: an 8-byte dummy header and 65527 bytes of payload, 65535 in all.
    let payload: Vec<u8> = (0..65527u32).map(|i| (i % 253) as u8).collect();
    let mut message = vec![0u8; 8];
    message.extend_from_slice(&payload);
    assert_eq!(message.len(), 65535, "the largest IPv6 payload length");
    let msg = pool.alloc_from_slice(&message).unwrap();
    h.ip.send(
        Instant::ZERO,
        msg,
        ip("::1"),
        17,
        SendOptions::default(),
        &mut h.dev,
    )
    .unwrap();
    h.run_lo(Instant::ZERO);
    match h.delivered.pop() {
        Some(Delivery::Transport { meta, packet }) => {
            assert_eq!(
                (meta.src, meta.dst, meta.protocol),
                (ip("::1"), ip("::1"), 17)
            );
            assert_eq!(packet.len(), 65535);
            assert!(packet[8..] == payload[..], "payload intact");
        }
        other => panic!("not delivered: {other:?}"),
    }
    assert!(h.delivered.is_empty());
    let s = h.ip.stats().ip6;
    assert_eq!((s.frag_oks, s.frag_creates), (1, 2));
    assert_eq!((s.reasm_reqds, s.reasm_oks, s.reasm_fails), (2, 1, 0));
    assert_eq!(pool.stats().in_use(), 0, "every buffer went back");
}

#[test]
fn reassembly_timeout_answers_time_exceeded() {
    let pool = pool();
    let mut a = Host::wired(&pool, "192.0.2.1/24", 1500);
    let mut b = Host::wired(&pool, "192.0.2.2/24", 1500);
    let payload = vec![1u8; 4000];
    let msg = pool
        .alloc_from_slice(&udp_bytes("192.0.2.1", "192.0.2.2", &payload)[20..])
        .unwrap();
    a.ip.send(
        Instant::ZERO,
        msg,
        ip("192.0.2.2"),
        17,
        Default::default(),
        &mut a.dev,
    )
    .unwrap();
    // Lose the last fragment.
    a.dev.wire_out.pop_back();
    run_wire(&mut a, &mut b, Instant::ZERO);
    assert!(b.delivered.is_empty());
    let due = b.ip.poll_at().expect("a reassembly is pending");
    assert_eq!(due, Instant::from_secs(30));
    b.ip.poll(due, &mut b.dev);
    run_wire(&mut a, &mut b, due);
    assert_eq!(b.ip.stats().ip.reasm_timeout, 1);
    assert_eq!(b.ip.stats().icmp.out_time_excds, 1);
    match a.delivered.pop() {
        Some(Delivery::IcmpError { error, quoted, .. }) => {
            assert_eq!(error, IcmpError::ReassemblyTimeExceeded);
            assert_eq!(quoted.dst, ip("192.0.2.2"));
        }
        other => panic!("{other:?}"),
    }
}

/// Forwarding: off by default; on, a router decrements TTL and answers Time Exceeded when it
/// runs out, and never forwards loopback addresses.
#[test]
fn forwarding_is_off_by_default_and_decrements_ttl_when_on() {
    let pool = pool();
    let mut router = Host::wired(&pool, "192.0.2.1/24", 1500);
    let to_elsewhere = udp_bytes("192.0.2.9", "198.51.100.7", b"x");
    router.inject(Instant::ZERO, InterfaceId(2), &to_elsewhere);
    assert_eq!(router.ip.stats().ip.in_addr_errors, 1);
    assert!(router.dev.wire_out.is_empty());

    router.ip.config_mut().forwarding = true;
    router
        .ip
        .routes_mut()
        .add(Route::via(
            cidr("198.51.100.0/24"),
            ip("192.0.2.254"),
            InterfaceId(2),
        ))
        .unwrap();
    router.inject(Instant::ZERO, InterfaceId(2), &to_elsewhere);
    let out = router.dev.wire_out.pop_front().expect("forwarded");
    assert_eq!(out[8], 63, "TTL decremented");
    let h = etherparse::Ipv4HeaderSlice::from_slice(&out).unwrap();
    assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum());
    assert_eq!(router.ip.stats().ip.forw_datagrams, 1);

    // TTL 1: Time Exceeded goes back to the sender, the packet goes nowhere.
    let mut dying = to_elsewhere.clone();
    dying[8] = 1;
    reseal_v4(&mut dying);
    router.inject(Instant::ZERO, InterfaceId(2), &dying);
    let back = router.dev.wire_out.pop_front().expect("time exceeded sent");
    let parsed = etherparse::SlicedPacket::from_ip(&back).unwrap();
    match parsed.transport {
        Some(etherparse::TransportSlice::Icmpv4(i)) => assert_eq!(i.type_u8(), 11),
        other => panic!("{other:?}"),
    }
    assert!(router.dev.wire_out.is_empty());
    assert_eq!(router.ip.stats().icmp.out_time_excds, 1);
    let _ = IpNumber::UDP;
}

/// RFC 8200 4: an unknown next header is answered with Parameter Problem code 1 pointing at
/// the field that named it; here the IPv6 header's own Next Header, byte 6.
#[test]
fn ipv6_unknown_next_header_gets_parameter_problem() {
    let pool = pool();
    let mut h = Host::new(&pool);
    let mut p = udp_bytes("::1", "::1", b"hello");
    p[6] = 253;
    h.inject(Instant::ZERO, InterfaceId::LOOPBACK, &p);
    match h.delivered.pop() {
        Some(Delivery::IcmpError { error, quoted, .. }) => {
            assert_eq!(error, IcmpError::ProtocolUnreachable { pointer: 6 });
            assert_eq!(quoted.protocol, 253);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.ip.stats().ip6.in_unknown_protos, 1);
    assert_eq!(h.ip.stats().icmp6.out_parm_problems, 1);
}

/// A router cannot fragment a packet with Don't Fragment set: it answers Fragmentation
/// Needed with the next hop's MTU (RFC 1191), and sends nothing on.
#[test]
fn forwarding_a_dont_fragment_packet_over_a_small_link_answers_frag_needed() {
    let pool = pool();
    let mut router = Host::wired(&pool, "192.0.2.1/24", 1500);
    router.ip.config_mut().forwarding = true;
    let small = router
        .ip
        .add_interface("sim1", InterfaceKind::PointToPoint, 576)
        .unwrap();
    router
        .ip
        .add_address(small, cidr("198.51.100.1/24"))
        .unwrap();
    // udp_bytes sets DF (etherparse's default for IPv4).
    let big = udp_bytes("192.0.2.9", "198.51.100.7", &[0u8; 1000]);
    assert_ne!(big[6] & 0x40, 0, "DF is set");
    router.inject(Instant::ZERO, InterfaceId(2), &big);
    let back = router.dev.wire_out.pop_front().expect("an ICMP error");
    let parsed = etherparse::SlicedPacket::from_ip(&back).unwrap();
    match parsed.transport {
        Some(etherparse::TransportSlice::Icmpv4(i)) => {
            assert_eq!((i.type_u8(), i.code_u8()), (3, 4));
            assert_eq!(
                u16::from_be_bytes([i.bytes5to8()[2], i.bytes5to8()[3]]),
                576
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(router.dev.wire_out.is_empty());
    assert_eq!(router.ip.stats().ip.forw_datagrams, 0);
}

/// The IP headers `send` writes by hand are byte for byte the ones etherparse builds from
/// the same fields, with a header checksum that verifies, for both settings of DF.
#[test]
fn sent_headers_match_etherparse() {
    let pool = pool();
    let mut a = Host::wired(&pool, "192.0.2.1/24", 1500);
    a.ip.add_address(InterfaceId(2), cidr("2001:db8::1/64"))
        .unwrap();
    for (dst, df, ttl) in [
        ("192.0.2.2", false, None),
        ("192.0.2.2", true, Some(7)),
        ("2001:db8::2", false, Some(255)),
    ] {
        let payload = b"sixteen bytes!!!";
        let msg = pool.alloc_from_slice(payload).unwrap();
        let options = SendOptions {
            ttl,
            dont_fragment: df,
            ..Default::default()
        };
        a.ip.send(Instant::ZERO, msg, ip(dst), 17, options, &mut a.dev)
            .unwrap();
        let out = a.dev.wire_out.pop_front().expect("sent");
        let ttl = ttl.unwrap_or(64);
        let expected = match ip(dst) {
            IpAddr::V4(d) => {
                let sent = etherparse::Ipv4HeaderSlice::from_slice(&out).unwrap();
                let mut h = etherparse::Ipv4Header::new(
                    16,
                    ttl,
                    etherparse::IpNumber(17),
                    [192, 0, 2, 1],
                    d.octets(),
                )
                .unwrap();
                h.dont_fragment = df;
                h.identification = sent.identification();
                h.header_checksum = h.calc_header_checksum();
                h.to_bytes().to_vec()
            }
            IpAddr::V6(d) => etherparse::Ipv6Header {
                traffic_class: 0,
                flow_label: etherparse::Ipv6FlowLabel::ZERO,
                payload_length: 16,
                next_header: etherparse::IpNumber(17),
                hop_limit: ttl,
                source: "2001:db8::1"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets(),
                destination: d.octets(),
            }
            .to_bytes()
            .to_vec(),
        };
        assert_eq!(&out[..expected.len()], &expected[..], "{dst}");
        assert_eq!(&out[expected.len()..], payload);
    }
}

/// The route cache never answers differently from the tables: a route added after a
/// lookup, and an address added after one, are seen by the next lookup.
#[test]
fn route_cache_follows_route_and_address_changes() {
    let pool = pool();
    let mut h = Host::wired(&pool, "192.0.2.1/24", 1500);
    let dst = ip("198.51.100.7");
    assert!(h.ip.route(dst).is_err(), "no route yet");
    h.ip.routes_mut()
        .add(Route::via(
            cidr("198.51.100.0/24"),
            ip("192.0.2.254"),
            InterfaceId(2),
        ))
        .unwrap();
    let first = h.ip.route(dst).unwrap();
    assert_eq!(first.next_hop, ip("192.0.2.254"));
    assert_eq!(h.ip.route(dst).unwrap(), first, "a repeated lookup agrees");
    // A more specific route wins from the next lookup on.
    h.ip.routes_mut()
        .add(Route::via(
            cidr("198.51.100.7/32"),
            ip("192.0.2.253"),
            InterfaceId(2),
        ))
        .unwrap();
    assert_eq!(h.ip.route(dst).unwrap().next_hop, ip("192.0.2.253"));
    // A destination that becomes one of our addresses is local from the next lookup on.
    let other = ip("198.51.100.9");
    let before = h.ip.route(other).unwrap();
    assert_eq!(
        (before.src, before.kind),
        (ip("192.0.2.1"), RouteKind::Unicast)
    );
    h.ip.add_address(InterfaceId(2), cidr("198.51.100.9/32"))
        .unwrap();
    let after = h.ip.route(other).unwrap();
    assert_eq!((after.src, after.kind), (other, RouteKind::Local));
}

/// A UDP message from port 1000 to port 2000 with `payload`, its checksum field holding
/// `partial` (the pseudo-header's sum, for the IP layer to finish).
fn partial_udp(pool: &PacketPool, partial: [u8; 2], payload: &[u8]) -> PacketBuf {
    let len = u16::try_from(8 + payload.len()).unwrap();
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&1000u16.to_be_bytes());
    bytes.extend_from_slice(&2000u16.to_be_bytes());
    bytes.extend_from_slice(&len.to_be_bytes());
    bytes.extend_from_slice(&partial);
    bytes.extend_from_slice(payload);
    pool.alloc_from_slice(&bytes).unwrap()
}

/// Checks a packet off the wire with etherparse: its IPv4 header checksum, and its UDP
/// checksum (the wire does not offload, so the IP layer must have finished it).
fn assert_checksums_verify(packet: &[u8], what: &str) {
    let headers = etherparse::PacketHeaders::from_ip_slice(packet).unwrap();
    let Some(etherparse::TransportHeader::Udp(udp)) = headers.transport else {
        panic!("{what}: not UDP");
    };
    let payload = headers.payload.slice();
    let expected = match headers.net.unwrap() {
        etherparse::NetHeaders::Ipv4(h, _) => {
            assert_eq!(h.header_checksum, h.calc_header_checksum(), "{what}");
            udp.calc_checksum_ipv4(&h, payload).unwrap()
        }
        etherparse::NetHeaders::Ipv6(h, _) => udp.calc_checksum_ipv6(&h, payload).unwrap(),
        _ => unreachable!(),
    };
    assert_eq!(udp.checksum, expected, "{what}: UDP checksum");
}

/// A prepared path sends what `send` sends: the same header but for IPv4's identification
/// (and so its checksum), and the transport checksum finished, for IPv4 and IPv6, with and
/// without Don't Fragment and a TTL of its own.
#[test]
fn prepared_paths_send_what_send_sends() {
    let pool = pool();
    let mut a = Host::wired(&pool, "192.0.2.1/24", 1500);
    a.ip.add_address(InterfaceId(2), cidr("2001:db8::1/64"))
        .unwrap();
    let payload = b"sixteen bytes!!!";
    for (dst, src, df, ttl) in [
        ("192.0.2.2", "192.0.2.1", false, None),
        ("192.0.2.2", "192.0.2.1", true, Some(7)),
        ("2001:db8::2", "2001:db8::1", false, Some(255)),
    ] {
        let options = SendOptions {
            ttl,
            dont_fragment: df,
            checksum_at: Some(6),
            ..Default::default()
        };
        let path = a.ip.prepare(ip(dst), 17, options).unwrap();
        assert_eq!((path.src(), path.dst()), (ip(src), ip(dst)));
        let partial = loopstack_internet::checksum::partial(ip(src), ip(dst), 17, 24);
        assert_eq!(
            path.partial(24),
            partial,
            "{dst}: the kept pseudo-header sum"
        );
        a.ip.send(
            Instant::ZERO,
            partial_udp(&pool, partial, payload),
            ip(dst),
            17,
            options,
            &mut a.dev,
        )
        .unwrap();
        let by_send = a.dev.wire_out.pop_front().expect("sent");
        for round in 0..2 {
            let msg = partial_udp(&pool, path.partial(24), payload);
            a.ip.send_prepared(Instant::ZERO, msg, &path, &mut a.dev)
                .unwrap();
            let by_path = a.dev.wire_out.pop_front().expect("sent along the path");
            assert_eq!(by_path.len(), by_send.len());
            assert_checksums_verify(&by_path, dst);
            let same = |p: &[u8]| {
                let mut v = p.to_vec();
                if !dst.contains(':') {
                    // Identification and header checksum differ from packet to packet.
                    v[4..6].fill(0);
                    v[10..12].fill(0);
                }
                v
            };
            assert_eq!(same(&by_path), same(&by_send), "{dst}, packet {round}");
        }
    }
    let ip4 = a.ip.stats().ip;
    assert_eq!((ip4.out_requests, ip4.out_discards), (6, 0));
    assert_eq!(a.ip.stats().ip6.out_requests, 3);
}

/// A prepared path is stale after any change it could depend on, and a stale one is worked
/// out again for the packet sent along it: the packet follows the change.
#[test]
fn prepared_paths_go_stale_with_every_change_they_depend_on() {
    let pool = pool();
    let mut h = Host::wired(&pool, "192.0.2.1/24", 1500);
    let dst = ip("192.0.2.2");
    type Change = Box<dyn Fn(&mut Internet)>;
    let changes: Vec<(&str, Change)> = vec![
        (
            "default TTL",
            Box::new(|ip| ip.config_mut().default_ttl = 9),
        ),
        (
            "MTU",
            Box::new(|ip| ip.set_mtu(InterfaceId(2), 1400).unwrap()),
        ),
        (
            "route",
            Box::new(|ip| {
                ip.routes_mut()
                    .add(Route::via(
                        cidr("198.51.100.0/24"),
                        "192.0.2.254".parse().unwrap(),
                        InterfaceId(2),
                    ))
                    .unwrap()
            }),
        ),
        (
            "address",
            Box::new(|ip| {
                ip.add_address(InterfaceId(2), cidr("198.51.100.9/32"))
                    .unwrap()
            }),
        ),
        (
            "interface",
            Box::new(|ip| {
                ip.add_interface("sim1", InterfaceKind::PointToPoint, 1500)
                    .map(|_| ())
                    .unwrap()
            }),
        ),
    ];
    for (what, change) in changes {
        let path = h.ip.prepare(dst, 17, SendOptions::default()).unwrap();
        assert!(h.ip.is_current(&path), "{what}: fresh");
        change(&mut h.ip);
        assert!(!h.ip.is_current(&path), "{what}: stale after the change");
        let msg = pool.alloc_from_slice(b"x").unwrap();
        h.ip.send_prepared(Instant::ZERO, msg, &path, &mut h.dev)
            .unwrap();
        let out = h.dev.wire_out.pop_front().expect(what);
        assert_eq!(out[8], 9, "{what}: the TTL set by the first change");
    }

    // The TTL changes under a prepared path: its next packet carries the new one.
    let path = h.ip.prepare(dst, 17, SendOptions::default()).unwrap();
    h.ip.config_mut().default_ttl = 20;
    let msg = pool.alloc_from_slice(b"x").unwrap();
    h.ip.send_prepared(Instant::ZERO, msg, &path, &mut h.dev)
        .unwrap();
    assert_eq!(h.dev.wire_out.pop_front().unwrap()[8], 20);

    // The destination becomes unreachable: the stale path's packet fails and is counted as
    // `send` counts it.
    let path = h.ip.prepare(dst, 17, SendOptions::default()).unwrap();
    h.ip.routes_mut()
        .add(Route::unreachable(Cidr::host(dst)))
        .unwrap();
    let before = h.ip.stats().ip;
    let msg = pool.alloc_from_slice(b"x").unwrap();
    assert_eq!(
        h.ip.send_prepared(Instant::ZERO, msg, &path, &mut h.dev),
        Err(SendError::Route(RouteError::Unreachable(dst)))
    );
    let after = h.ip.stats().ip;
    assert_eq!(after.out_requests, before.out_requests + 1);
    assert_eq!(after.out_no_routes, before.out_no_routes + 1);
    assert!(h.dev.wire_out.is_empty());
    assert_eq!(
        h.ip.prepare(dst, 17, SendOptions::default()),
        Err(SendError::Route(RouteError::Unreachable(dst)))
    );
}

/// A path with a martian on it is made, and refuses every packet along it, counting each
/// as a discard, as `send` does; a source that is not ours fails to prepare at all.
#[test]
fn prepared_paths_refuse_martians_per_packet() {
    let pool = pool();
    let mut h = Host::wired(&pool, "192.0.2.2/24", 1500);
    let options = SendOptions {
        src: Some(ip("127.0.0.1")),
        ..Default::default()
    };
    let path = h.ip.prepare(ip("192.0.2.1"), 17, options).unwrap();
    for n in 1..=2 {
        let msg = pool.alloc_from_slice(&[0u8; 8]).unwrap();
        let err =
            h.ip.send_prepared(Instant::ZERO, msg, &path, &mut h.dev)
                .unwrap_err();
        assert!(matches!(err, SendError::Martian(_)), "{err}");
        assert_eq!(h.ip.stats().ip.out_discards, n);
    }
    assert!(h.dev.wire_out.is_empty());
    let options = SendOptions {
        src: Some(ip("10.9.9.9")),
        ..Default::default()
    };
    assert_eq!(
        h.ip.prepare(ip("192.0.2.1"), 17, options),
        Err(SendError::AddrNotAvailable(ip("10.9.9.9")))
    );
}

/// An upper layer that writes down what it is handed and, if asked, answers each transport
/// message from inside the call, as TCP answers a segment with a reset.
#[derive(Default)]
struct Recorder {
    seen: Vec<String>,
    answer: bool,
}

impl Upper for Recorder {
    fn transport<L: Links>(
        &mut self,
        now: Instant,
        meta: IpMeta,
        packet: PacketBuf,
        ip: &mut Internet,
        links: &mut L,
    ) {
        self.seen.push(format!(
            "transport {} > {} proto {} ttl {} {:?}",
            meta.src,
            meta.dst,
            meta.protocol,
            meta.ttl,
            String::from_utf8_lossy(&packet[8..])
        ));
        if self.answer {
            // The answer is of an unknown protocol, so the host it goes to (the sender,
            // this host) answers it with an ICMP error.
            let reply = packet.pool().alloc_from_slice(b"answer").unwrap();
            ip.send(now, reply, meta.src, 253, SendOptions::default(), links)
                .unwrap();
        }
    }

    fn icmp_error<L: Links>(
        &mut self,
        _: Instant,
        meta: IpMeta,
        error: IcmpError,
        quoted: QuotedPacket,
        _: &mut Internet,
        _: &mut L,
    ) {
        self.seen.push(format!(
            "icmp from {} {error:?} about proto {}",
            meta.src, quoted.protocol
        ));
    }
}

/// `receive_with` hands the upper layer exactly what `receive` returns, with the addresses
/// it read from the packet, and lets it send from inside the call.
#[test]
fn receive_with_hands_deliveries_to_the_upper_layer() {
    let pool = pool();
    let mut h = Host::new(&pool);
    let mut up = Recorder {
        answer: true,
        ..Recorder::default()
    };
    for (src, dst) in [("127.0.0.3", "127.0.0.9"), ("::1", "::1")] {
        let p = pool.alloc_from_slice(&udp_bytes(src, dst, b"hi")).unwrap();
        h.ip.receive_with(Instant::ZERO, InterfaceId::LOOPBACK, p, &mut h.dev, &mut up);
        // The answer went out on `lo`; the error about it comes back up.
        while let Some(p) = h.dev.lo.receive(Instant::ZERO) {
            let up = &mut up;
            up.answer = false;
            h.ip.receive_with(Instant::ZERO, InterfaceId::LOOPBACK, p, &mut h.dev, up);
        }
        up.answer = true;
    }
    assert_eq!(
        up.seen,
        [
            "transport 127.0.0.3 > 127.0.0.9 proto 17 ttl 64 \"hi\"",
            "icmp from 127.0.0.3 ProtocolUnreachable { pointer: 0 } about proto 253",
            "transport ::1 > ::1 proto 17 ttl 64 \"hi\"",
            "icmp from ::1 ProtocolUnreachable { pointer: 6 } about proto 253",
        ]
    );
    // A martian is dropped before the upper layer sees it, whatever the caller.
    let p = pool
        .alloc_from_slice(&udp_bytes("127.0.0.1", "192.0.2.1", b"x"))
        .unwrap();
    h.ip.receive_with(Instant::ZERO, InterfaceId(9), p, &mut h.dev, &mut up);
    assert_eq!(up.seen.len(), 4, "nothing more delivered");
    assert_eq!(pool.stats().in_use(), 0, "every buffer went back");
}
