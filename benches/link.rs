//! Link layer benchmarks: the loopback ring, and what each middleware adds to a packet's
//! round trip through `lo` (transmit + receive).

use std::hint::black_box;
use std::io;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use loopstack_benches::{default_pool, pooled, udp_packet_bytes};
use loopstack_link::{
    Device, FaultConfig, FaultInjector, Instant, Loopback, PcapMode, PcapWriter, Tracer,
};

/// One packet through `dev`: allocate and copy in, transmit, receive, free.
fn round_trip<D: Device>(dev: &mut D, pool: &loopstack_buf::PacketPool, bytes: &[u8]) {
    let now = Instant::ZERO;
    dev.transmit(now, pooled(pool, bytes)).unwrap();
    black_box(dev.receive(now).unwrap());
}

fn ring(c: &mut Criterion) {
    let pool = default_pool();
    let mut g = c.benchmark_group("loopback ring");
    g.throughput(Throughput::Elements(1));
    let mut lo = Loopback::new();
    g.bench_function("enqueue+dequeue (handle only)", |b| {
        // The same buffer circles through the ring: this measures the ring, not the pool.
        let mut slot = Some(pooled(&pool, &udp_packet_bytes(64)));
        b.iter(|| {
            lo.transmit(Instant::ZERO, slot.take().unwrap()).unwrap();
            slot = lo.receive(Instant::ZERO);
        })
    });
    let burst = 64;
    g.throughput(Throughput::Elements(burst));
    g.bench_function("64 enqueues then 64 dequeues", |b| {
        let mut held: Vec<_> = (0..burst).map(|_| pooled(&pool, b"E")).collect();
        b.iter(|| {
            for p in held.drain(..) {
                lo.transmit(Instant::ZERO, p).unwrap();
            }
            while let Some(p) = lo.receive(Instant::ZERO) {
                held.push(p);
            }
        })
    });
    g.finish();
}

fn middleware(c: &mut Criterion) {
    let pool = default_pool();
    let packet = udp_packet_bytes(64);
    let mut g = c.benchmark_group("middleware round trip (92-byte UDP packet)");
    g.throughput(Throughput::Elements(1));

    let mut bare = Loopback::new();
    g.bench_function("Loopback alone", |b| {
        b.iter(|| round_trip(&mut bare, &pool, &packet))
    });

    let mut pcap = PcapWriter::new(Loopback::new(), io::sink(), PcapMode::TxOnly).unwrap();
    g.bench_function("PcapWriter(tx) -> Loopback", |b| {
        b.iter(|| round_trip(&mut pcap, &pool, &packet))
    });

    let mut tracer = Tracer::new(Loopback::new(), io::sink());
    g.bench_function("Tracer -> Loopback", |b| {
        b.iter(|| round_trip(&mut tracer, &pool, &packet))
    });

    let mut clean = FaultInjector::new(Loopback::new(), FaultConfig::default(), 1).unwrap();
    g.bench_function("FaultInjector(no faults) -> Loopback", |b| {
        b.iter(|| round_trip(&mut clean, &pool, &packet))
    });

    let faults = FaultConfig {
        duplicate: 0.01,
        corrupt: 0.01,
        reorder: 0.01,
        ..FaultConfig::default()
    };
    let mut lossy = FaultInjector::new(Loopback::new(), faults, 1).unwrap();
    g.bench_function("FaultInjector(1% dup/corrupt/reorder) -> Loopback", |b| {
        b.iter(|| {
            lossy
                .transmit(Instant::ZERO, pooled(&pool, &packet))
                .unwrap();
            while let Some(p) = lossy.receive(Instant::ZERO) {
                black_box(p);
            }
        })
    });

    let inner = PcapWriter::new(Loopback::new(), io::sink(), PcapMode::TxOnly).unwrap();
    let inner = FaultInjector::new(inner, FaultConfig::default(), 1).unwrap();
    let mut all = Tracer::new(inner, io::sink());
    g.bench_function("Tracer -> FaultInjector -> PcapWriter -> Loopback", |b| {
        b.iter(|| round_trip(&mut all, &pool, &packet))
    });
    g.finish();
}

criterion_group!(benches, ring, middleware);
criterion_main!(benches);
