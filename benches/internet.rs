//! Internet layer benchmarks: one packet up through [`Internet::receive`], one message down
//! through [`Internet::send`], routing table lookups, and a whole `ping` over `lo`.
//!
//! One element is one packet (one lookup for `route lookup`, one echo request *and* its
//! reply for `ping`). Every benchmark checks what the layer did (a Transport
//! delivery, a packet handed to the device, the right route, the reply) and panics
//! otherwise, so a broken layer fails `cargo test --benches` instead of timing nothing.
//!
//! Buffers come from the real [`PacketPool`], and no benchmark keeps one across
//! iterations: each is freed (or handed back to be reused) before the next starts.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use loopstack_benches::{default_pool, pooled, udp_packet_bytes};
use loopstack_buf::{PacketBuf, PacketPool};
use loopstack_internet::iface::InterfaceId;
use loopstack_internet::ingress::proto;
use loopstack_internet::route::{Route, RouteKind, RoutingTable};
use loopstack_internet::{Cidr, Delivery, Internet, InternetConfig, Links, SendOptions};
use loopstack_link::{ChecksumOffload, Device, DeviceCapabilities, Instant, Loopback, TxError};

const LO: InterfaceId = InterfaceId::LOOPBACK;
const NOW: Instant = Instant::ZERO;
const V4_LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const V6_LO: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// The bytes of an IPv6/UDP packet from [::1]:49152 to [::1]:7 carrying `payload` bytes,
/// with a correct UDP checksum: the IPv6 twin of [`udp_packet_bytes`].
fn udp6_packet_bytes(payload: usize) -> Vec<u8> {
    let data = vec![0x42u8; payload];
    let lo = Ipv6Addr::LOCALHOST.octets();
    let builder = etherparse::PacketBuilder::ipv6(lo, lo, 64).udp(49152, 7);
    let mut out = Vec::with_capacity(builder.size(payload));
    builder
        .write(&mut out, &data)
        .expect("writing into a Vec cannot fail");
    out
}

/// A 64-byte UDP message as transport hands it down: an 8-byte header (port 49152 to 7,
/// length 64, checksum left zero: transport's business, not measured here) and 56 bytes of
/// data.
fn udp_message() -> [u8; 64] {
    let mut m = [0x42u8; 64];
    m[..8].copy_from_slice(&[0xc0, 0x00, 0x00, 0x07, 0x00, 64, 0x00, 0x00]);
    m
}

/// The devices of one host, as the internet layer sees them: `lo` only, a real
/// [`Loopback`]. With `offload` false, `capabilities` claims no checksum offload, so
/// `receive` verifies the IPv4 header checksum (and tells transport to verify its own).
struct Devices {
    lo: Loopback,
    offload: bool,
}

impl Devices {
    fn new(offload: bool) -> Self {
        Devices {
            lo: Loopback::new(),
            offload,
        }
    }
}

impl Links for Devices {
    fn capabilities(&self, iface: InterfaceId) -> Option<DeviceCapabilities> {
        (iface == LO).then(|| {
            let mut caps = self.lo.capabilities();
            if !self.offload {
                caps.checksum_offload = ChecksumOffload::NONE;
            }
            caps
        })
    }

    fn transmit(&mut self, now: Instant, iface: InterfaceId, p: PacketBuf) -> Result<(), TxError> {
        assert_eq!(iface, LO, "a host with only `lo` sends by `lo`");
        self.lo.transmit(now, p)
    }
}

/// A device that takes every packet and keeps nothing, so `send` is measured without a
/// device behind it. It notes the length of the last packet, for the benchmark to check;
/// with `keep` it holds on to the packet instead of dropping it, so the caller can reuse
/// the buffer.
struct Sink {
    caps: DeviceCapabilities,
    last_len: Option<usize>,
    hand_back: Option<PacketBuf>,
    keep: bool,
}

impl Sink {
    fn new(keep: bool) -> Self {
        Sink {
            caps: Loopback::new().capabilities(),
            last_len: None,
            hand_back: None,
            keep,
        }
    }
}

impl Links for Sink {
    fn capabilities(&self, iface: InterfaceId) -> Option<DeviceCapabilities> {
        (iface == LO).then_some(self.caps)
    }

    fn transmit(&mut self, _: Instant, iface: InterfaceId, p: PacketBuf) -> Result<(), TxError> {
        assert_eq!(iface, LO);
        self.last_len = Some(p.len());
        if self.keep {
            self.hand_back = Some(p);
        }
        Ok(())
    }
}

fn host(pool: &PacketPool) -> Internet {
    Internet::new(pool.clone(), InternetConfig::default())
}

/// Hands `packet` to `receive` on `lo`, checks it came out as a UDP delivery, and returns
/// the delivered buffer.
fn receive_udp(ip: &mut Internet, dev: &mut Devices, packet: PacketBuf) -> PacketBuf {
    match ip.receive(NOW, LO, packet, dev) {
        Some(Delivery::Transport { meta, mut packet }) => {
            assert_eq!(meta.protocol, proto::UDP);
            assert_eq!(meta.verify_checksum, !dev.offload);
            // Restore the IP header: the buffer is the packet as it arrived again.
            packet.unstrip_front(meta.header_len).unwrap();
            packet
        }
        other => panic!("expected a Transport delivery, got {other:?}"),
    }
}

/// `Internet::receive` of one 92-byte IPv4/UDP (or 112-byte IPv6/UDP) packet on `lo`, up
/// to a `Delivery::Transport`.
///
/// Two ways per case. "alloc + copy + receive + free" is what a packet really costs: a
/// fresh pooled buffer, the bytes copied in, `receive`, the delivered buffer dropped back
/// into the pool; the pool is part of the real cost, about 30 ns of it (see `pool` and the
/// `link` round trip). "receive only" passes the same buffer round: after each delivery the
/// stripped IP header is put back with `unstrip_front` (the bytes are untouched), so the
/// pool drops out. Moving the buffer handle back into the slot is still timed: an upper
/// bound for the layer's own work.
fn ingress(c: &mut Criterion) {
    let pool = default_pool();
    let v4 = udp_packet_bytes(64);
    let v6 = udp6_packet_bytes(64);
    assert_eq!((v4.len(), v6.len()), (92, 112));
    let mut g = c.benchmark_group("internet ingress");
    g.throughput(Throughput::Elements(1));

    let cases = [
        ("IPv4 UDP, lo offload (header checksum skipped)", &v4, true),
        (
            "IPv4 UDP, no offload (header checksum verified)",
            &v4,
            false,
        ),
        ("IPv6 UDP, lo offload", &v6, true),
    ];
    for (name, bytes, offload) in cases {
        let mut ip = host(&pool);
        let mut dev = Devices::new(offload);
        g.bench_function(format!("{name}: receive only"), |b| {
            let mut slot = Some(pooled(&pool, bytes));
            b.iter(|| {
                let p = slot.take().unwrap();
                slot = Some(receive_udp(&mut ip, &mut dev, black_box(p)));
            })
        });
        g.bench_function(format!("{name}: alloc + copy + receive + free"), |b| {
            b.iter(|| black_box(receive_udp(&mut ip, &mut dev, pooled(&pool, bytes))))
        });
        assert_eq!(dev.lo.queued(), 0, "receive sent nothing back");
    }
    g.finish();
    assert_eq!(pool.stats().in_use(), 0, "every buffer went back");
}

/// `Internet::send` of a 64-byte UDP message (8-byte header + 56 bytes of data) to
/// 127.0.0.1 and ::1, down to a device that keeps nothing ([`Sink`]): route lookup, source
/// selection, the IP header built and prepended, the martian and MTU checks, the hand-off.
/// No device work and no receive side are in these numbers.
///
/// "alloc + copy + send + free" prepares each message in a fresh pooled buffer (128 bytes
/// of headroom) and the device drops it. "send only" has the device hand the buffer back;
/// the IP header is stripped off again and the same buffer sent next time. That keeps the
/// pool out, but moving the handle through the device's slot and back costs nearly as much
/// (see docs/benchmarks.md), so "send only" is an upper bound, not the layer alone.
fn egress(c: &mut Criterion) {
    let pool = default_pool();
    let msg = udp_message();
    let mut g = c.benchmark_group("internet egress");
    g.throughput(Throughput::Elements(1));
    for (name, dst, header) in [("IPv4", V4_LO, 20), ("IPv6", V6_LO, 40)] {
        let mut ip = host(&pool);
        let mut sink = Sink::new(true);
        g.bench_function(format!("{name} UDP 64 B to {dst}: send only"), |b| {
            let mut slot = Some(pooled(&pool, &msg));
            b.iter(|| {
                let p = slot.take().unwrap();
                ip.send(
                    NOW,
                    black_box(p),
                    dst,
                    proto::UDP,
                    SendOptions::default(),
                    &mut sink,
                )
                .unwrap();
                let mut p = sink.hand_back.take().expect("the device got the packet");
                assert_eq!(p.len(), 64 + header);
                p.strip_front(header).unwrap();
                slot = Some(p);
            })
        });

        let mut sink = Sink::new(false);
        g.bench_function(
            format!("{name} UDP 64 B to {dst}: alloc + copy + send + free"),
            |b| {
                b.iter(|| {
                    let p = pooled(&pool, &msg);
                    ip.send(NOW, p, dst, proto::UDP, SendOptions::default(), &mut sink)
                        .unwrap();
                    assert_eq!(sink.last_len.take(), Some(64 + header), "sent whole");
                })
            },
        );
    }
    g.finish();
    assert_eq!(pool.stats().in_use(), 0, "every buffer went back");
}

fn v4(a: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

fn cidr(addr: IpAddr, len: u8) -> Cidr {
    Cidr::new(addr, len).unwrap()
}

/// A host's local routes (127.0.0.0/8 and ::1 on `lo`, as `Internet::new` adds them) plus
/// a default route per family through interface 2.
fn base_table() -> RoutingTable {
    let wire = InterfaceId(2);
    let mut t = RoutingTable::new();
    t.add(Route::local("127.0.0.1/8".parse().unwrap(), LO))
        .unwrap();
    t.add(Route::local("::1/128".parse().unwrap(), LO)).unwrap();
    t.add(Route::via(
        "0.0.0.0/0".parse().unwrap(),
        "192.0.2.254".parse().unwrap(),
        wire,
    ))
    .unwrap();
    t.add(Route::via(
        "::/0".parse().unwrap(),
        "2001:db8:ffff::1".parse().unwrap(),
        wire,
    ))
    .unwrap();
    t
}

/// `n` distinct IPv4 /24s, counting up from 10.0.0.0/24 (10.0.0.0/24 ... 10.3.231.0/24 for
/// 1,000), each through a gateway on interface 2.
fn add_v4_slash24s(t: &mut RoutingTable, n: u32) {
    let gw = "192.0.2.1".parse().unwrap();
    for i in 0..n {
        t.add(Route::via(
            cidr(v4(0x0a00_0000 + (i << 8)), 24),
            gw,
            InterfaceId(2),
        ))
        .unwrap();
    }
}

/// The 1,000-route tables: IPv4 /24s plus overlapping /16s and a /8, IPv6 /64s under
/// 2001:db8::/32, and the defaults and local routes of [`base_table`].
fn big_table() -> RoutingTable {
    let mut t = base_table();
    add_v4_slash24s(&mut t, 1000);
    let gw = "192.0.2.2".parse().unwrap();
    for c in ["10.0.0.0/8", "10.1.0.0/16", "10.3.0.0/16", "10.200.0.0/16"] {
        t.add(Route::via(c.parse().unwrap(), gw, InterfaceId(2)))
            .unwrap();
    }
    let gw6: IpAddr = "2001:db8:ffff::2".parse().unwrap();
    for i in 0..1000u16 {
        let net = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, i, 0, 0, 0, 0));
        t.add(Route::via(cidr(net, 64), gw6, InterfaceId(2)))
            .unwrap();
    }
    t
}

/// Routing: `RoutingTable::lookup` (longest prefix match, local table first) in tables of
/// 1,000 routes per family, and `Internet::route` (`ip route get`: lookup plus source
/// selection) on a fresh host.
fn routing(c: &mut Criterion) {
    let mut g = c.benchmark_group("route lookup");
    g.throughput(Throughput::Elements(1));

    let big = big_table();
    let hit = |s: &str, prefix: &str| {
        (
            s.parse::<IpAddr>().unwrap(),
            prefix.parse::<Cidr>().unwrap(),
        )
    };
    let cases = [
        ("IPv4 hits a /24", hit("10.0.3.42", "10.0.3.0/24")),
        ("IPv4 hits a /16", hit("10.3.250.1", "10.3.0.0/16")),
        ("IPv4 hits the /8", hit("10.99.0.1", "10.0.0.0/8")),
        ("IPv4 falls to default", hit("198.51.100.7", "0.0.0.0/0")),
        (
            "IPv6 hits a /64",
            hit("2001:db8:0:1f4::42", "2001:db8:0:1f4::/64"),
        ),
        ("IPv6 falls to default", hit("2001:db9::1", "::/0")),
    ];
    for (name, (dst, want)) in cases {
        g.bench_function(format!("{name} (1,000 routes)"), |b| {
            b.iter(|| {
                let r = big.lookup(black_box(dst)).unwrap();
                assert_eq!(r.dest, want);
            })
        });
    }

    // The same kind of /24 hit as the table grows.
    let want: Cidr = "10.0.3.0/24".parse().unwrap();
    let dst: IpAddr = "10.0.3.42".parse().unwrap();
    // Each table also holds the local and default routes of `base_table`.
    for (n, label) in [(10u32, "10"), (100_000, "100,000")] {
        let mut t = base_table();
        add_v4_slash24s(&mut t, n);
        g.bench_function(format!("IPv4 hits a /24 ({label} routes)"), |b| {
            b.iter(|| {
                let r = t.lookup(black_box(dst)).unwrap();
                assert_eq!(r.dest, want);
            })
        });
    }

    let pool = default_pool();
    let ip = host(&pool);
    let addrs: Vec<_> = ip.interfaces().all_addrs().collect();
    let dst: IpAddr = "127.0.0.2".parse().unwrap();
    g.bench_function("127.0.0.2 on a fresh host: RoutingTable::lookup", |b| {
        b.iter(|| {
            let r = ip.routes().lookup(black_box(dst)).unwrap();
            assert_eq!(r.kind, RouteKind::Local);
        })
    });
    g.bench_function(
        "127.0.0.2 on a fresh host: RoutingTable::route_get (addresses collected once)",
        |b| {
            b.iter(|| {
                let d = ip.routes().route_get(black_box(dst), &addrs).unwrap();
                assert_eq!((d.iface, d.src), (LO, V4_LO));
            })
        },
    );
    for dst in [dst, V6_LO] {
        g.bench_function(format!("{dst} on a fresh host: Internet::route"), |b| {
            b.iter(|| {
                let d = ip.route(black_box(dst)).unwrap();
                assert_eq!(d.kind, RouteKind::Local);
                assert_eq!(d.src.is_ipv6(), dst.is_ipv6());
            })
        });
    }
    g.finish();
}

/// One `ping` over `lo`, both ways through the whole internet layer:
/// `send_echo_request` (route, build the ICMP message in a pooled buffer, `send`), then
/// drain the [`Loopback`] through `receive` (the request: validated, turned into a reply in
/// place and sent back; the reply: validated and queued) until `take_echo_reply` has it.
/// 56 bytes of data, as ping sends by default: 84-byte IPv4 and 104-byte IPv6 packets.
fn ping(c: &mut Criterion) {
    let pool = default_pool();
    let mut g = c.benchmark_group("ping");
    g.throughput(Throughput::Elements(1));
    for dst in [V4_LO, V6_LO] {
        let mut ip = host(&pool);
        let mut dev = Devices::new(true);
        let mut seq = 0u16;
        g.bench_function(format!("echo request + reply to {dst} over lo"), |b| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                ip.send_echo_request(NOW, dst, 7, seq, 56, &mut dev)
                    .unwrap();
                let mut packets = 0;
                while let Some(p) = dev.lo.receive(NOW) {
                    packets += 1;
                    assert!(ip.receive(NOW, LO, p, &mut dev).is_none());
                }
                let reply = ip.take_echo_reply().expect("the reply arrived");
                assert_eq!((reply.from, reply.seq, packets), (dst, seq, 2));
            })
        });
    }
    g.finish();
    assert_eq!(pool.stats().in_use(), 0, "every buffer went back");
}

criterion_group!(benches, ingress, egress, routing, ping);
criterion_main!(benches);
