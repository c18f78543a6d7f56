//! Side by side: the same scenario on loopstack (poll and blocking mode), smoltcp and the
//! kernel's `lo`, in one run, so the ratios mean something on a noisy machine.
//!
//! Groups are named `scenario/family` (`tcp_bulk/v4`, `tcp_rtt_1B/v6`, ...) and each holds
//! one benchmark per implementation: `loopstack-poll`, `smoltcp`, `kernel`,
//! `loopstack-blocking`. The group `memcpy/64KiB` is the physical limit the bulk numbers
//! are read against: copying 64 KiB blocks that stay in cache; `handoff/64KiB`, measured
//! right after the bulk rows, is the limit of a two-thread transfer at that moment (two
//! threads handing 64 KiB chunks over, no stack). `cargo xtask bench` runs this
//! file and writes the table in docs/benchmarks.md; the scenarios themselves are in
//! `benches/sidebyside/` (the benches crate's library).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
// `BULK_CHUNKS` (16 writes of 64 KiB, 1 MiB per iteration) and `IMPLS` (table order) are
// shared with the paired measurement, so both time the same iterations.
use loopstack_benches::sidebyside::paired::{BULK_CHUNKS, IMPLS};
use loopstack_benches::sidebyside::{
    blocking, handoff, kernel, poll, smol, Bulk, Family, OneWay, PingPong, BULK_CHUNK, BURST,
    DATAGRAM, PING_PONG_SIZES,
};

/// Large buffers on page boundaries, so that no implementation's bulk copies land in the
/// 4 KiB-aliasing slow case by where malloc put them (`PageAlignedLarge`).
#[global_allocator]
static GLOBAL: loopstack_testkit::PageAlignedLarge = loopstack_testkit::PageAlignedLarge;

fn tcp_bulk(c: &mut Criterion) {
    for family in Family::ALL {
        let mut g = c.benchmark_group(format!("tcp_bulk/{}", family.name()));
        g.throughput(Throughput::Bytes((BULK_CHUNKS * BULK_CHUNK) as u64));
        for name in IMPLS {
            let mut s: Box<dyn Bulk> = match name {
                "loopstack-poll" => Box::new(poll::tcp_bulk(family)),
                "smoltcp" => Box::new(smol::tcp_bulk(family)),
                "kernel" => Box::new(kernel::tcp_bulk(family)),
                _ => Box::new(blocking::tcp_bulk(family)),
            };
            g.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter(|| s.transfer(black_box(BULK_CHUNKS)))
            });
        }
        g.finish();
    }
    // Right after the bulk rows, so that it sees the machine as they did.
    handoff(c);
}

/// The limit of a two-thread bulk transfer at the time: two threads handing 64 KiB chunks
/// over, one copying each in and the other copying it out, no stack between them
/// (`sidebyside::handoff`). On a VM how fast a chunk written on one vCPU is read on the
/// other depends on where the host runs them, and blocking mode's bulk follows it.
fn handoff(c: &mut Criterion) {
    let mut g = c.benchmark_group("handoff");
    g.throughput(Throughput::Bytes((BULK_CHUNKS * BULK_CHUNK) as u64));
    let mut h = handoff::handoff();
    g.bench_function(BenchmarkId::from_parameter("64KiB"), |b| {
        b.iter(|| h.transfer(black_box(BULK_CHUNKS)))
    });
    g.finish();
}

fn tcp_rtt(c: &mut Criterion) {
    for size in PING_PONG_SIZES {
        for family in Family::ALL {
            let mut g = c.benchmark_group(format!("tcp_rtt_{size}B/{}", family.name()));
            g.throughput(Throughput::Elements(1));
            for name in IMPLS {
                let mut s: Box<dyn PingPong> = match name {
                    "loopstack-poll" => Box::new(poll::tcp_ping_pong(family, size)),
                    "smoltcp" => Box::new(smol::tcp_ping_pong(family, size)),
                    "kernel" => Box::new(kernel::tcp_ping_pong(family, size)),
                    _ => Box::new(blocking::tcp_ping_pong(family, size)),
                };
                g.bench_function(BenchmarkId::from_parameter(name), |b| {
                    b.iter(|| s.round_trip())
                });
            }
            g.finish();
        }
    }
}

fn udp_rtt(c: &mut Criterion) {
    for family in Family::ALL {
        let mut g = c.benchmark_group(format!("udp_rtt_{DATAGRAM}B/{}", family.name()));
        g.throughput(Throughput::Elements(1));
        for name in IMPLS {
            let mut s: Box<dyn PingPong> = match name {
                "loopstack-poll" => Box::new(poll::udp_ping_pong(family, DATAGRAM)),
                "smoltcp" => Box::new(smol::udp_ping_pong(family, DATAGRAM)),
                "kernel" => Box::new(kernel::udp_ping_pong(family, DATAGRAM)),
                _ => Box::new(blocking::udp_ping_pong(family, DATAGRAM)),
            };
            g.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter(|| s.round_trip())
            });
        }
        g.finish();
    }
}

fn udp_one_way(c: &mut Criterion) {
    for family in Family::ALL {
        let mut g = c.benchmark_group(format!("udp_oneway_{DATAGRAM}B/{}", family.name()));
        g.throughput(Throughput::Elements(BURST as u64));
        for name in IMPLS {
            let mut s: Box<dyn OneWay> = match name {
                "loopstack-poll" => Box::new(poll::udp_one_way(family, DATAGRAM)),
                "smoltcp" => Box::new(smol::udp_one_way(family, DATAGRAM)),
                "kernel" => Box::new(kernel::udp_one_way(family, DATAGRAM)),
                _ => Box::new(blocking::udp_one_way(family, DATAGRAM)),
            };
            g.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter(|| s.burst(black_box(BURST)))
            });
        }
        g.finish();
    }
}

/// The physical limit for bulk transfer: copying 64 KiB blocks, source and destination in
/// cache. Any stack copies each byte at least twice (in and out), so half this is the
/// ceiling of a copying stack's bulk throughput.
///
/// Source and destination sit 2 KiB apart modulo 4 KiB, on purpose. glibc copies blocks this
/// large with `rep movsb`, which on AMD Zen falls from about 45 GB/s to about 3 GB/s when the
/// destination is a few bytes to 31 bytes ahead of the source modulo 4 KiB (4K aliasing);
/// two 64 KiB vectors allocated one after the other land 16 bytes apart modulo 4 KiB, which
/// is exactly that case, and measured a tenth of the real limit.
fn memcpy(c: &mut Criterion) {
    let mut buf = vec![0x5au8; 3 * BULK_CHUNK];
    let (src, rest) = buf.split_at_mut(BULK_CHUNK);
    let dst = &mut rest[2048..2048 + BULK_CHUNK];
    let mut g = c.benchmark_group("memcpy");
    g.throughput(Throughput::Bytes(BULK_CHUNK as u64));
    g.bench_function(BenchmarkId::from_parameter("64KiB"), |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&*src));
            black_box(&mut *dst);
        })
    });
    g.finish();
}

criterion_group!(benches, tcp_bulk, tcp_rtt, udp_rtt, udp_one_way, memcpy);
criterion_main!(benches);
