//! The internet layer's share of "no heap allocation per packet once warm": pings over IPv4
//! and IPv6 (send, echo, reply, both directions through the layer) and UDP deliveries,
//! counted by a global allocator. One test per file, so nothing else allocates meanwhile.

use loopstack_buf::{PacketBuf, PacketPool, PoolConfig};
use loopstack_internet::iface::InterfaceId;
use loopstack_internet::layer::{Delivery, Internet, InternetConfig, Links};
use loopstack_link::{Device, DeviceCapabilities, Instant, Loopback, TxError};
use loopstack_testkit::{allocations, start_measuring, stop_measuring, CountingAllocator};
use std::net::IpAddr;

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

struct Lo(Loopback);

impl Links for Lo {
    fn capabilities(&self, _: InterfaceId) -> Option<DeviceCapabilities> {
        Some(self.0.capabilities())
    }
    fn transmit(&mut self, now: Instant, _: InterfaceId, p: PacketBuf) -> Result<(), TxError> {
        self.0.transmit(now, p)
    }
}

/// One round: a ping to each target, and a UDP datagram delivered to transport.
fn round(ip: &mut Internet, lo: &mut Lo, pool: &PacketPool, udp: &[u8], i: u64) -> u64 {
    let now = Instant::from_micros(i);
    let mut got = 0;
    for dst in [
        "127.0.0.2".parse::<IpAddr>().unwrap(),
        "::1".parse().unwrap(),
    ] {
        ip.send_echo_request(now, dst, 1, i as u16, 56, lo).unwrap();
        while let Some(p) = lo.0.receive(now) {
            assert!(ip.receive(now, InterfaceId::LOOPBACK, p, lo).is_none());
        }
        while ip.take_echo_reply().is_some() {
            got += 1;
        }
    }
    let p = pool.alloc_from_slice(udp).unwrap();
    match ip.receive(now, InterfaceId::LOOPBACK, p, lo) {
        Some(Delivery::Transport { packet, .. }) => {
            assert_eq!(packet.len(), 8 + 32);
            got += 1;
        }
        other => panic!("{other:?}"),
    }
    got
}

#[test]
fn pings_and_deliveries_allocate_nothing_once_warm() {
    let pool = PacketPool::new(PoolConfig::default()).unwrap();
    let mut ip = Internet::new(pool.clone(), InternetConfig::default());
    let mut lo = Lo(Loopback::new());
    let mut udp = Vec::new();
    etherparse::PacketBuilder::ipv4([127, 0, 0, 1], [127, 0, 0, 1], 64)
        .udp(4000, 5000)
        .write(&mut udp, &[7u8; 32])
        .unwrap();

    for i in 0..100 {
        assert_eq!(round(&mut ip, &mut lo, &pool, &udp, i), 3);
    }
    start_measuring();
    let mut got = 0;
    for i in 100..10_100 {
        got += round(&mut ip, &mut lo, &pool, &udp, i);
    }
    stop_measuring();
    assert_eq!(got, 30_000);
    assert_eq!(pool.stats().in_use(), 0);
    let allocations = allocations();
    assert_eq!(
        allocations, 0,
        "the internet layer allocated {allocations} times in 20,000 pings"
    );
}
