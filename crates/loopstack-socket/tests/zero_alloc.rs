//! The whole stack's share of "no heap allocation per packet once warm": UDP ping-pong,
//! TCP 1-byte ping-pong and TCP 64 KiB bulk transfers through a [`Stack`] in poll mode
//! allocate nothing after a warm-up.
//!
//! One test per file, so that no other test allocates while this one counts.

use std::net::SocketAddr;
use std::time::Duration;

use loopstack_link::Instant;
use loopstack_socket::{Stack, StackConfig};
use loopstack_testkit::{allocations_during, CountingAllocator};
use loopstack_transport::tcp::{State, TcpHandle};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const WARM_UP: usize = 500;
const MEASURED: usize = 1000;
const BULK: usize = 64 * 1024;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn tick(now: &mut Instant) {
    *now += Duration::from_micros(1);
}

/// `from` writes all of `data`; the stack polls (a tick between polls) until `to` has read
/// `data.len()` bytes into `buf`.
fn transfer(
    s: &mut Stack,
    now: &mut Instant,
    from: TcpHandle,
    to: TcpHandle,
    data: &[u8],
    buf: &mut [u8],
) {
    let (mut sent, mut got) = (0, 0);
    while got < data.len() {
        if sent < data.len() {
            sent += s.tcp().send(from, &data[sent..]).unwrap_or(0);
        }
        s.poll(*now);
        while got < data.len() {
            match s.tcp().recv(to, &mut buf[got..data.len()]) {
                Ok(0) => panic!("unexpected end of file"),
                Ok(n) => got += n,
                Err(_) => break,
            }
        }
        if got < data.len() {
            tick(now);
        }
    }
}

/// A stack with an established, nodelay TCP connection on `server`: (client, accepted).
fn tcp_pair(server: &str) -> (Stack, Instant, TcpHandle, TcpHandle) {
    let mut s = Stack::new(StackConfig::default()).unwrap();
    let now = Instant::ZERO;
    let l = s.tcp_listen(addr(server), 16).unwrap();
    let c = s.tcp_connect(now, addr(server)).unwrap();
    s.poll(now);
    assert_eq!(s.tcp().state(c), Ok(State::Established));
    let (a, _) = s.tcp().accept(l).unwrap();
    s.tcp().set_nodelay(c, true).unwrap();
    s.tcp().set_nodelay(a, true).unwrap();
    (s, now, c, a)
}

/// Allocations made by `MEASURED` UDP ping-pongs of 64 bytes, after `WARM_UP` of them.
fn udp_pingpong(a_addr: &str, b_addr: &str) -> u64 {
    let mut s = Stack::new(StackConfig::default()).unwrap();
    let mut now = Instant::ZERO;
    let (a_addr, b_addr) = (addr(a_addr), addr(b_addr));
    let a = s.udp_bind(a_addr).unwrap();
    let b = s.udp_bind(b_addr).unwrap();
    let data = [0x42u8; 64];
    let mut buf = [0u8; 128];
    let mut round = |s: &mut Stack, now: &mut Instant| {
        tick(now);
        assert_eq!(s.udp_send_to(*now, a, &data, b_addr), Ok(64));
        s.poll(*now);
        assert_eq!(s.udp().recv_from(b, &mut buf), Ok((64, a_addr)));
        let (echo, rest) = buf.split_at_mut(64);
        assert_eq!(s.udp_send_to(*now, b, echo, a_addr), Ok(64));
        s.poll(*now);
        assert_eq!(s.udp().recv_from(a, rest), Ok((64, b_addr)));
        assert_eq!(rest[..64], data);
    };
    for _ in 0..WARM_UP {
        round(&mut s, &mut now);
    }
    allocations_during(|| {
        for _ in 0..MEASURED {
            round(&mut s, &mut now);
        }
    })
}

/// Allocations made by `MEASURED` TCP round trips of 1 byte, after `WARM_UP` of them.
fn tcp_pingpong(server: &str) -> u64 {
    let (mut s, mut now, c, a) = tcp_pair(server);
    let data = [0x5au8; 1];
    let mut buf = [0u8; 2];
    let mut round = |s: &mut Stack, now: &mut Instant| {
        tick(now);
        transfer(s, now, c, a, &data, &mut buf);
        let (echo, rest) = buf.split_at_mut(1);
        transfer(s, now, a, c, echo, rest);
        assert_eq!(rest, data);
    };
    for _ in 0..WARM_UP {
        round(&mut s, &mut now);
    }
    allocations_during(|| {
        for _ in 0..MEASURED {
            round(&mut s, &mut now);
        }
    })
}

/// Allocations made by `MEASURED` 64 KiB transfers, after `WARM_UP` of them.
fn tcp_bulk(server: &str) -> u64 {
    let (mut s, mut now, c, a) = tcp_pair(server);
    let data: Vec<u8> = (0..BULK).map(|i| (i % 251) as u8).collect();
    let mut buf = vec![0u8; BULK];
    let mut round = |s: &mut Stack, now: &mut Instant| {
        tick(now);
        transfer(s, now, c, a, &data, &mut buf);
        assert!(buf == data);
    };
    for _ in 0..WARM_UP {
        round(&mut s, &mut now);
    }
    allocations_during(|| {
        for _ in 0..MEASURED {
            round(&mut s, &mut now);
        }
    })
}

#[test]
fn udp_and_tcp_hot_paths_allocate_nothing_once_warm() {
    // The counter works: a zero result below means nothing allocated, not nothing counted.
    let one = allocations_during(|| drop(std::hint::black_box(Vec::<u8>::with_capacity(8))));
    assert_eq!(one, 1, "the counting allocator is installed");

    let mut results = Vec::new();
    for (family, a, b) in [
        ("v4", "127.0.0.1:7000", "127.0.0.1:7001"),
        ("v6", "[::1]:7000", "[::1]:7001"),
    ] {
        results.push((family, "UDP ping-pong 64 B", udp_pingpong(a, b)));
        results.push((family, "TCP ping-pong 1 B", tcp_pingpong(a)));
        results.push((family, "TCP bulk 64 KiB", tcp_bulk(a)));
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
