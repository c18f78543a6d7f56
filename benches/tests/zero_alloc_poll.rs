//! loopstack's poll-mode side-by-side scenarios (`benches/sidebyside/poll.rs`) allocate
//! nothing once warm: 100 iterations of each, over IPv4 and IPv6, counted by
//! [`CountingAllocator`]. The constructors warm every scenario up (`WARM_UP` iterations)
//! before handing it over, so what is counted here is the steady state the benchmark times.
//!
//! One test per file, so that no other test allocates while this one counts.

use loopstack_benches::sidebyside::{
    poll, Bulk, Family, OneWay, PingPong, BURST, DATAGRAM, PING_PONG_SIZES,
};
use loopstack_testkit::{allocations_during, CountingAllocator};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Iterations counted per scenario.
const MEASURED: usize = 100;
/// Chunks per bulk transfer, as the benchmark moves them: 16 x 64 KiB.
const BULK_CHUNKS: usize = 16;

#[test]
fn poll_mode_scenarios_allocate_nothing_once_warm() {
    // The counter works: a zero result below means nothing allocated, not nothing counted.
    let one = allocations_during(|| drop(std::hint::black_box(Vec::<u8>::with_capacity(8))));
    assert_eq!(one, 1, "the counting allocator is installed");

    let mut results = Vec::new();
    for family in Family::ALL {
        let f = family.name();
        let mut b = poll::tcp_bulk(family);
        let n = allocations_during(|| {
            for _ in 0..MEASURED {
                b.transfer(BULK_CHUNKS);
            }
        });
        results.push((f, "TCP bulk 16 x 64 KiB".to_string(), n));

        for size in PING_PONG_SIZES {
            let mut p = poll::tcp_ping_pong(family, size);
            let n = allocations_during(|| {
                for _ in 0..MEASURED {
                    p.round_trip();
                }
            });
            results.push((f, format!("TCP ping-pong {size} B"), n));

            let mut p = poll::udp_ping_pong(family, size);
            let n = allocations_during(|| {
                for _ in 0..MEASURED {
                    p.round_trip();
                }
            });
            results.push((f, format!("UDP ping-pong {size} B"), n));
        }

        let mut o = poll::udp_one_way(family, DATAGRAM);
        let n = allocations_during(|| {
            for _ in 0..MEASURED {
                o.burst(BURST);
            }
        });
        results.push((f, format!("UDP one-way {BURST} x {DATAGRAM} B"), n));
    }
    for (family, what, n) in &results {
        println!("{family} {what}: {n} allocations in {MEASURED} iterations");
    }
    let allocating: Vec<_> = results.iter().filter(|r| r.2 != 0).collect();
    assert!(
        allocating.is_empty(),
        "allocations per {MEASURED} iterations: {allocating:?}"
    );
}
