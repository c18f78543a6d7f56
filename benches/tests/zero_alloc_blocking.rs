//! loopstack's blocking-mode side-by-side scenarios (`benches/sidebyside/blocking.rs`)
//! allocate nothing once warm: [`MEASURED`] iterations of each, over IPv4 and IPv6, on the
//! client thread (the benchmark's) and on the server thread.
//!
//! The server thread counts through the scenario's [`Probe`]: it starts measuring right
//! after the warm-up, before it waits for the next request, and stops after it answered
//! the `MEASURED`th. The client is not measuring then, so the count is the server's; one
//! more call makes sure the server has stopped. Then the client counts `MEASURED`
//! iterations of its own, the server no longer measuring. The UDP one-way scenario has no
//! server thread: the benchmark's thread does both ends.
//!
//! One test in this file, so that no other test measures while it counts (the counter is
//! global; only measuring threads add to it).

use loopstack_benches::sidebyside::blocking::{self, Probe};
use loopstack_benches::sidebyside::{
    Bulk, Family, OneWay, PingPong, BURST, DATAGRAM, PING_PONG_SIZES,
};
use loopstack_testkit::{
    allocations, allocations_during, start_measuring, stop_measuring, CountingAllocator,
};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Iterations counted, on each thread.
const MEASURED: usize = 100;

/// Chunks per bulk transfer: the benchmark's (1 MiB).
const BULK_CHUNKS: usize = 16;

/// The server thread measures the `MEASURED` iterations right after the warm-up.
const PROBE: Probe = Probe {
    start: start_measuring,
    stop: stop_measuring,
    skip: 0,
    iterations: MEASURED,
};

/// (server, client) allocations of `MEASURED` iterations of `step` each.
fn server_then_client(mut step: impl FnMut()) -> (u64, u64) {
    let before = allocations();
    for _ in 0..MEASURED {
        step();
    }
    // The server stopped measuring after it answered the last one, before this one.
    step();
    let server = allocations() - before;
    let client = allocations_during(|| {
        for _ in 0..MEASURED {
            step();
        }
    });
    (server, client)
}

#[test]
fn blocking_scenarios_allocate_nothing_once_warm() {
    // (scenario, server thread's count if it has one, client thread's count)
    let mut rows: Vec<(String, Option<u64>, u64)> = Vec::new();
    for family in Family::ALL {
        let f = family.name();

        let mut b = blocking::tcp_bulk_probed(family, PROBE);
        let (server, client) = server_then_client(|| b.transfer(BULK_CHUNKS));
        drop(b);
        rows.push((format!("tcp_bulk/{f}"), Some(server), client));

        for size in PING_PONG_SIZES {
            let mut p = blocking::tcp_ping_pong_probed(family, size, PROBE);
            let (server, client) = server_then_client(|| p.round_trip());
            drop(p);
            rows.push((format!("tcp_rtt_{size}B/{f}"), Some(server), client));
        }

        let mut p = blocking::udp_ping_pong_probed(family, DATAGRAM, PROBE);
        let (server, client) = server_then_client(|| p.round_trip());
        drop(p);
        rows.push((format!("udp_rtt_{DATAGRAM}B/{f}"), Some(server), client));

        let mut o = blocking::udp_one_way(family, DATAGRAM);
        let client = allocations_during(|| {
            for _ in 0..MEASURED {
                o.burst(BURST);
            }
        });
        drop(o);
        rows.push((format!("udp_oneway_{DATAGRAM}B/{f}"), None, client));
    }

    let mut table = format!(
        "allocations in {MEASURED} iterations once warm:\n{:<20} {:>8} {:>8}\n",
        "scenario", "server", "client"
    );
    for (name, server, client) in &rows {
        let server = server.map_or_else(|| "-".to_string(), |n| n.to_string());
        table += &format!("{name:<20} {server:>8} {client:>8}\n");
    }
    eprint!("{table}");
    assert!(
        rows.iter()
            .all(|(_, server, client)| server.unwrap_or(0) == 0 && *client == 0),
        "loopstack's blocking path allocates once warm\n{table}"
    );
}
