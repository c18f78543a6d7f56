//! The floor (`benches/sidebyside/floor.rs`, docs/benchmarks.md item 25) moves what the UDP
//! scenarios move, over IPv4 and IPv6, and checks it: its numbers mean something only if
//! every datagram arrives, whole, from the right port. And it exists for the UDP scenarios
//! only.

use loopstack_benches::sidebyside::paired::{Run, SCENARIOS};
use loopstack_benches::sidebyside::{floor, Family, OneWay, PingPong, BURST, DATAGRAM};

#[test]
fn floor_one_way_delivers_bursts() {
    for family in Family::ALL {
        let mut o = floor::udp_one_way(family, DATAGRAM);
        for _ in 0..3 {
            o.burst(BURST);
        }
        // More than lo's ring and the queue hold: it goes in rounds. And a short one.
        o.burst(2500);
        o.burst(1);
        let mut big = floor::udp_one_way(family, 1400);
        big.burst(BURST);
    }
}

#[test]
fn floor_ping_pong_echoes() {
    for family in Family::ALL {
        for size in [1, DATAGRAM, 1400] {
            let mut p = floor::udp_ping_pong(family, size);
            // More than 256 rounds: the round counter in the first byte wraps.
            for _ in 0..300 {
                p.round_trip();
            }
        }
    }
}

#[test]
fn the_floor_runs_the_udp_scenarios_only() {
    for scenario in SCENARIOS {
        for family in Family::ALL {
            let built = Run::build("floor", scenario, family);
            assert_eq!(
                built.is_some(),
                scenario.starts_with("udp_"),
                "{scenario} {family:?}"
            );
            if let Some(mut run) = built {
                run.go(3);
            }
        }
    }
}
