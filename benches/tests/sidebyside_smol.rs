//! smoltcp's side-by-side scenarios (`benches/sidebyside/smol.rs`) run a few iterations each
//! over IPv4 and IPv6. Every scenario checks the bytes it moves and panics on a mismatch (or
//! after too many polls without progress), so this is a test of the harness itself: the
//! benchmark can only time smoltcp if these pass.

use loopstack_benches::sidebyside::{
    smol, Bulk, Family, OneWay, PingPong, BURST, DATAGRAM, PING_PONG_SIZES,
};

#[test]
fn tcp_bulk_moves_every_byte() {
    for family in Family::ALL {
        let mut b = smol::tcp_bulk(family);
        b.transfer(4);
        b.transfer(1);
    }
}

#[test]
fn tcp_ping_pong_echoes() {
    for family in Family::ALL {
        for size in PING_PONG_SIZES {
            let mut p = smol::tcp_ping_pong(family, size);
            for _ in 0..10 {
                p.round_trip();
            }
        }
    }
}

#[test]
fn udp_ping_pong_echoes() {
    for family in Family::ALL {
        for size in PING_PONG_SIZES {
            let mut p = smol::udp_ping_pong(family, size);
            for _ in 0..10 {
                p.round_trip();
            }
        }
    }
}

#[test]
fn udp_one_way_delivers_bursts() {
    for family in Family::ALL {
        let mut o = smol::udp_one_way(family, DATAGRAM);
        for _ in 0..3 {
            o.burst(BURST);
        }
        // Longer than the sockets hold, so it goes in rounds; and shorter ones.
        o.burst(3 * BURST + 5);
        o.burst(1);
        o.burst(0);
    }
}
