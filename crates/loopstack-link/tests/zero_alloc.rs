//! The link layer's share of "no heap allocation per packet once warm": packets pushed through
//! every middleware at once (tracer, fault injector with every fault enabled, pcap capture)
//! around the loopback device allocate nothing after a warm-up.
//!
//! One test per file, so that no other test allocates while this one counts.

use loopstack_buf::{PacketPool, PoolConfig};
use loopstack_link::{
    Device, FaultConfig, FaultDirection, FaultInjector, Instant, Loopback, PcapMode, PcapWriter,
    Tracer,
};
use loopstack_testkit::{allocations, start_measuring, stop_measuring, CountingAllocator};
use std::io;
use std::time::Duration;

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// A real IPv4/UDP packet, so the tracer decodes and formats a full line for each one.
fn udp_packet(seq: u32) -> Vec<u8> {
    let payload = seq.to_be_bytes();
    let builder = etherparse::PacketBuilder::ipv4([127, 0, 0, 1], [127, 0, 0, 2], 64).udp(49152, 7);
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut out, &payload).unwrap();
    out
}

/// Sends `n` packets, one every 10 us, receiving everything that is due after each send.
/// Returns how many packets came out.
fn pump<D: Device>(dev: &mut D, pool: &PacketPool, packet: &[u8], start: u64, n: u64) -> u64 {
    let mut received = 0;
    for i in start..start + n {
        let now = Instant::from_micros(i * 10);
        let buf = pool.alloc_from_slice(packet).unwrap();
        let _ = dev.transmit(now, buf);
        while let Some(p) = dev.receive(now) {
            received += 1;
            drop(p);
        }
    }
    received
}

#[test]
fn every_middleware_at_once_allocates_nothing_per_packet() {
    let pool = PacketPool::new(PoolConfig::default()).unwrap();
    let faults = FaultConfig {
        drop: 0.05,
        duplicate: 0.05,
        reorder: 0.05,
        delay: 0.05,
        corrupt: 0.05,
        delay_time: Duration::from_micros(200),
        delay_jitter: Duration::from_micros(100),
        direction: FaultDirection::Both,
        ..FaultConfig::default()
    };
    let capture = PcapWriter::new(Loopback::new(), io::sink(), PcapMode::Both).unwrap();
    let lossy = FaultInjector::new(capture, faults, 42).unwrap();
    let mut dev = Tracer::new(lossy, io::sink());
    let packet = udp_packet(1);

    // Warm-up: the tracer's line buffer reaches its working size, the delay heap and the
    // ring have been used. Everything they need was reserved when they were built or here.
    let warm = pump(&mut dev, &pool, &packet, 0, 10_000);
    assert!(warm > 9_000);

    start_measuring();
    let received = pump(&mut dev, &pool, &packet, 10_000, 100_000);
    stop_measuring();

    let stats = dev.inner().fault_stats();
    assert!(received > 90_000, "{received}");
    assert!(stats.delayed > 0 && stats.duplicated > 0 && stats.reordered > 0);
    assert!(dev.lines_written() > 200_000);
    let allocations = allocations();
    assert_eq!(
        allocations, 0,
        "the link path allocated {allocations} times in 100,000 packets"
    );
}
