//! loopstack's poll-mode side-by-side scenarios (`benches/sidebyside/poll.rs`) run a few
//! iterations each over IPv4 and IPv6. Every scenario checks what it moves (byte counts,
//! chunk stamps, datagram sequence numbers, echoed contents) and panics on a mismatch or
//! after too many polls without progress, so the benchmark can only time loopstack if
//! these pass.

use loopstack_benches::sidebyside::{
    poll, Bulk, Family, OneWay, PingPong, BURST, DATAGRAM, PING_PONG_SIZES,
};

#[test]
fn tcp_bulk_moves_every_byte() {
    for family in Family::ALL {
        let mut b = poll::tcp_bulk(family);
        b.transfer(4);
        // One chunk, and none, after a longer transfer: the stream offsets carry over.
        b.transfer(1);
        b.transfer(0);
        // Longer than both socket buffers together.
        b.transfer(16);
    }
}

#[test]
fn tcp_ping_pong_echoes() {
    for family in Family::ALL {
        for size in PING_PONG_SIZES {
            let mut p = poll::tcp_ping_pong(family, size);
            for _ in 0..10 {
                p.round_trip();
            }
        }
        // A message larger than the socket buffers takes several polls each way.
        let mut p = poll::tcp_ping_pong(family, 200_000);
        p.round_trip();
    }
}

#[test]
fn udp_ping_pong_echoes() {
    for family in Family::ALL {
        for size in PING_PONG_SIZES {
            let mut p = poll::udp_ping_pong(family, size);
            for _ in 0..10 {
                p.round_trip();
            }
        }
    }
}

#[test]
fn udp_one_way_delivers_bursts() {
    for family in Family::ALL {
        let mut o = poll::udp_one_way(family, DATAGRAM);
        for _ in 0..3 {
            o.burst(BURST);
        }
        // Longer than lo's ring and the receive queue hold, so it goes in rounds; and
        // shorter ones.
        o.burst(2500);
        o.burst(1);
        o.burst(0);
        // Large datagrams: the receive queue's byte limit sets the round.
        let mut o = poll::udp_one_way(family, 60_000);
        o.burst(BURST);
    }
}
