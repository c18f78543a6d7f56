//! The internet layer's share of "no heap allocation per packet once warm": pings over IPv4
//! and IPv6 (send, echo, reply, both directions through the layer) and UDP deliveries,
//! counted by a global allocator. One test per file, so nothing else allocates meanwhile.

// A global allocator can only be written with `unsafe`; this one forwards every call to the
// system allocator unchanged and counts it.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use loopstack_buf::{PacketBuf, PacketPool, PoolConfig};
use loopstack_internet::iface::InterfaceId;
use loopstack_internet::layer::{Delivery, Internet, InternetConfig, Links};
use loopstack_link::{Device, DeviceCapabilities, Instant, Loopback, TxError};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static MEASURING: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if MEASURING.with(Cell::get) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards its arguments unchanged to `System`, which upholds the
// `GlobalAlloc` contract; counting has no effect on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

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
    MEASURING.with(|m| m.set(true));
    let mut got = 0;
    for i in 100..10_100 {
        got += round(&mut ip, &mut lo, &pool, &udp, i);
    }
    MEASURING.with(|m| m.set(false));
    assert_eq!(got, 30_000);
    assert_eq!(pool.stats().in_use(), 0);
    let allocations = ALLOCATIONS.load(Ordering::SeqCst);
    assert_eq!(
        allocations, 0,
        "the internet layer allocated {allocations} times in 20,000 pings"
    );
}
