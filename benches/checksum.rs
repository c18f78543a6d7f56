//! The Internet checksum (RFC 1071): loopstack's sum against etherparse's, over the sizes
//! a loopback stack sums.
//!
//! loopstack sums its own way (`loopstack_internet::checksum`: 32 bytes a step in four
//! independent accumulators) rather than with etherparse's `Sum16BitWords`, which it uses
//! for nothing else on the hot path. This benchmark is the reason, measured: both over the
//! same bytes, from a 20-byte IPv4 header to a 64 KiB segment, where the sum was 42% of a
//! bulk transfer before loopstack had its own (docs/benchmarks.md, item 1). A second group
//! times the receiver's whole test of a 64-byte UDP datagram, pseudo-header included, for
//! each family: what a datagram costs on a device that does not offload checksums (a TUN,
//! a fault injector that corrupts).
//!
//! Before timing, each group checks that the two sums agree and that a checksum completed
//! by loopstack verifies, so a benchmark that times a wrong answer fails instead.

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use etherparse::checksum::Sum16BitWords;
use loopstack_internet::checksum;
use loopstack_internet::ingress::proto;

/// What is summed: an IPv4 header, a small datagram, an Ethernet-sized packet, and a
/// segment of the size `lo` carries.
const SIZES: [usize; 4] = [20, 64, 1500, 65536];

/// `len` bytes that are not all alike, so that no sum is trivially zero. An odd step keeps
/// every byte value in play.
fn bytes(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(151) ^ 0x5a) as u8)
        .collect()
}

/// loopstack's checksum of `data` (wire order): the complement of the folded sum.
fn loopstack_checksum(data: &[u8]) -> [u8; 2] {
    (!checksum::fold(checksum::add(0, data))).to_ne_bytes()
}

/// etherparse's checksum of `data` (wire order). etherparse also sums words read in
/// native order, so its `u16` is in native order too (RFC 1071 2(B)).
fn etherparse_checksum(data: &[u8]) -> [u8; 2] {
    Sum16BitWords::new()
        .add_slice(data)
        .ones_complement()
        .to_ne_bytes()
}

/// An IPv4 header whose checksum is known (0xb861), with the checksum field zeroed: a
/// known answer, so that two sums agreeing with each other cannot both be wrong.
const KNOWN_HEADER: [u8; 20] = [
    0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01,
    0xc0, 0xa8, 0x00, 0xc7,
];

fn sum(c: &mut Criterion) {
    assert_eq!(loopstack_checksum(&KNOWN_HEADER), [0xb8, 0x61]);
    assert_eq!(etherparse_checksum(&KNOWN_HEADER), [0xb8, 0x61]);
    let mut g = c.benchmark_group("checksum");
    for size in SIZES {
        let data = bytes(size);
        // Also at an odd length: the padding byte is where the two could differ.
        for d in [&data[..], &data[..size - 1]] {
            assert_eq!(
                loopstack_checksum(d),
                etherparse_checksum(d),
                "the two sums differ over {} bytes",
                d.len()
            );
        }
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("loopstack", size), &data, |b, data| {
            b.iter(|| loopstack_checksum(black_box(data)))
        });
        g.bench_with_input(BenchmarkId::new("etherparse", size), &data, |b, data| {
            b.iter(|| etherparse_checksum(black_box(data)))
        });
    }
    g.finish();
}

/// A 64-byte UDP datagram (8-byte header and 56 bytes of data) from `src` to `dst`, its
/// checksum completed as the IP layer completes it for a device that does not offload.
fn udp_datagram(src: IpAddr, dst: IpAddr) -> Vec<u8> {
    let mut d = bytes(64);
    d[4..6].copy_from_slice(&64u16.to_be_bytes());
    let partial = checksum::partial(src, dst, proto::UDP, d.len());
    d[6..8].copy_from_slice(&partial);
    checksum::complete(&mut d, 6, proto::UDP);
    d
}

fn verify(c: &mut Criterion) {
    let mut g = c.benchmark_group("checksum verify");
    g.throughput(Throughput::Elements(1));
    let pairs: [(&str, IpAddr, IpAddr); 2] = [
        (
            "v4",
            "127.0.0.1".parse().unwrap(),
            "127.0.0.2".parse().unwrap(),
        ),
        ("v6", "::1".parse().unwrap(), "2001:db8::1".parse().unwrap()),
    ];
    for (family, src, dst) in pairs {
        let datagram = udp_datagram(src, dst);
        assert!(
            checksum::verify(src, dst, proto::UDP, &datagram),
            "a completed {family} checksum does not verify"
        );
        let mut damaged = datagram.clone();
        damaged[20] ^= 0x01;
        assert!(
            !checksum::verify(src, dst, proto::UDP, &damaged),
            "a flipped bit in a {family} datagram verifies"
        );
        g.bench_function(format!("UDP 64 B, pseudo-header included/{family}"), |b| {
            b.iter(|| checksum::verify(src, dst, proto::UDP, black_box(&datagram)))
        });
    }
    g.finish();
}

criterion_group!(benches, sum, verify);
criterion_main!(benches);
