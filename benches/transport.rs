//! Transport layer benchmarks through the whole [`Stack`] in poll mode, on one thread:
//! UDP datagrams and TCP segments from a socket down to `lo` and back up to a socket.
//!
//! The clock is simulated: it moves 1 µs per iteration (and per extra poll a transfer
//! needs), so timers behave as they would on a fast host and nothing reads the wall clock.
//!
//! Every benchmark checks what came out (the byte count, and the data for the small ones)
//! and panics otherwise, so a broken stack fails `cargo test --benches` instead of timing
//! nothing. Buffers are made once, before timing: an iteration allocates nothing once warm
//! (`crates/loopstack-socket/tests/zero_alloc.rs` checks that).

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use loopstack_link::Instant;
use loopstack_socket::{Stack, StackConfig};
use loopstack_transport::tcp::{State, TcpHandle};
use loopstack_transport::udp::UdpHandle;

const TICK: Duration = Duration::from_micros(1);
const BULK: usize = 64 * 1024;
/// Connected pairs that sit idle beside the measured one in `pingpong_1B_idle_2000`.
const IDLE_PAIRS: usize = 1000;

/// The address families benchmarked: a server address on `lo` for each.
const FAMILIES: [(&str, &str, &str); 2] = [
    ("v4", "127.0.0.1:7000", "127.0.0.1:7001"),
    ("v6", "[::1]:7000", "[::1]:7001"),
];

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a valid socket address")
}

/// A stack and its simulated clock.
struct Host {
    stack: Stack,
    now: Instant,
}

impl Host {
    fn new() -> Self {
        Host {
            stack: Stack::new(StackConfig::default()).expect("the default stack config is valid"),
            now: Instant::ZERO,
        }
    }

    fn tick(&mut self) {
        self.now += TICK;
    }

    fn poll(&mut self) {
        self.stack.poll(self.now);
    }
}

/// Two UDP sockets on one host.
struct UdpPair {
    host: Host,
    a: UdpHandle,
    b: UdpHandle,
    a_addr: SocketAddr,
    b_addr: SocketAddr,
}

impl UdpPair {
    fn new(a: &str, b: &str) -> Self {
        let mut host = Host::new();
        let (a_addr, b_addr) = (addr(a), addr(b));
        let a = host.stack.udp_bind(a_addr).expect("bind a");
        let b = host.stack.udp_bind(b_addr).expect("bind b");
        UdpPair {
            host,
            a,
            b,
            a_addr,
            b_addr,
        }
    }

    /// `from` sends `data` to `to_addr`, the stack polls, `to` receives it into `buf`.
    fn one_way(
        &mut self,
        from: UdpHandle,
        to: UdpHandle,
        to_addr: SocketAddr,
        data: &[u8],
        buf: &mut [u8],
    ) -> usize {
        let h = &mut self.host;
        let sent = h
            .stack
            .udp_send_to(h.now, from, data, to_addr)
            .expect("send_to");
        assert_eq!(sent, data.len());
        h.poll();
        let (n, _) = h.stack.udp().recv_from(to, buf).expect("a datagram");
        assert_eq!(n, data.len());
        n
    }

    /// a ─▶ b.
    fn send_recv(&mut self, data: &[u8], buf: &mut [u8]) -> usize {
        self.host.tick();
        let (a, b, b_addr) = (self.a, self.b, self.b_addr);
        self.one_way(a, b, b_addr, data, buf)
    }

    /// a ─▶ b, b echoes what it got ─▶ a.
    fn pingpong(&mut self, data: &[u8], buf: &mut [u8]) -> usize {
        self.host.tick();
        let (a, b, a_addr, b_addr) = (self.a, self.b, self.a_addr, self.b_addr);
        let n = self.one_way(a, b, b_addr, data, buf);
        let (echo, rest) = buf.split_at_mut(n);
        self.one_way(b, a, a_addr, echo, rest)
    }
}

/// An established TCP connection on one host: `c` connected, `s` accepted, both nodelay.
struct TcpPair {
    host: Host,
    c: TcpHandle,
    s: TcpHandle,
}

impl TcpPair {
    fn new(server: &str) -> Self {
        TcpPair::with_idle(server, 0)
    }

    /// Like [`new`](Self::new), after `idle` other connected pairs on the same listener,
    /// which then carry nothing: `2 * idle` connections a poll must not have to visit.
    fn with_idle(server: &str, idle: usize) -> Self {
        let mut host = Host::new();
        let l = host.stack.tcp_listen(addr(server), 16).expect("listen");
        for _ in 0..idle {
            host.stack
                .tcp_connect(host.now, addr(server))
                .expect("connect an idle pair");
            host.poll();
            host.stack.tcp().accept(l).expect("accept an idle pair");
        }
        let c = host
            .stack
            .tcp_connect(host.now, addr(server))
            .expect("connect");
        host.poll();
        assert_eq!(host.stack.tcp().state(c), Ok(State::Established));
        let (s, _) = host.stack.tcp().accept(l).expect("accept");
        host.stack.tcp().set_nodelay(c, true).expect("nodelay c");
        host.stack.tcp().set_nodelay(s, true).expect("nodelay s");
        TcpPair { host, c, s }
    }

    /// `from` writes all of `data`, then the stack polls (the clock moving a tick between
    /// polls) until `to` has read `data.len()` bytes into `buf`.
    fn transfer(&mut self, from: TcpHandle, to: TcpHandle, data: &[u8], buf: &mut [u8]) {
        let h = &mut self.host;
        let (mut sent, mut got) = (0, 0);
        while got < data.len() {
            if sent < data.len() {
                sent += h.stack.tcp().send(from, &data[sent..]).unwrap_or(0);
            }
            h.poll();
            while got < data.len() {
                match h.stack.tcp().recv(to, &mut buf[got..data.len()]) {
                    Ok(0) => panic!("unexpected end of file"),
                    Ok(n) => got += n,
                    Err(_) => break,
                }
            }
            if got < data.len() {
                h.tick();
            }
        }
    }

    /// Client ─▶ server.
    fn one_way(&mut self, data: &[u8], buf: &mut [u8]) {
        self.host.tick();
        let (c, s) = (self.c, self.s);
        self.transfer(c, s, data, buf);
    }

    /// Client ─▶ server, server echoes ─▶ client.
    fn pingpong(&mut self, data: &[u8], buf: &mut [u8]) {
        self.host.tick();
        let (c, s, n) = (self.c, self.s, data.len());
        self.transfer(c, s, data, buf);
        let (echo, rest) = buf.split_at_mut(n);
        self.transfer(s, c, echo, rest);
    }
}

fn udp(c: &mut Criterion) {
    let mut g = c.benchmark_group("udp");
    g.throughput(Throughput::Elements(1));
    let data = [0x42u8; 64];
    let mut buf = [0u8; 128];
    for (family, a, b) in FAMILIES {
        let mut p = UdpPair::new(a, b);
        g.bench_function(format!("send_to_recv_64B/{family}"), |bench| {
            bench.iter(|| black_box(p.send_recv(black_box(&data), &mut buf)));
            // Checked in the closure, not after `bench_function`: a benchmark that a filter
            // leaves out never runs, and every check of this file is placed the same way.
            assert_eq!(buf[..64], data);
        });

        let mut p = UdpPair::new(a, b);
        g.bench_function(format!("pingpong_64B/{family}"), |bench| {
            bench.iter(|| black_box(p.pingpong(black_box(&data), &mut buf)));
            assert_eq!(buf[64..128], data);
        });
    }
    g.finish();
}

fn tcp(c: &mut Criterion) {
    let mut g = c.benchmark_group("tcp");
    let data = vec![0x5au8; BULK];
    let mut buf = vec![0u8; 2 * BULK];
    for (family, server, _) in FAMILIES {
        g.throughput(Throughput::Elements(1));
        for (name, n) in [("one_segment_1B", 1), ("one_segment_1KiB", 1024)] {
            let mut p = TcpPair::new(server);
            g.bench_function(format!("{name}/{family}"), |bench| {
                bench.iter(|| p.one_way(black_box(&data[..n]), &mut buf));
                assert_eq!(buf[..n], data[..n]);
            });
        }

        let mut p = TcpPair::new(server);
        g.bench_function(format!("pingpong_1B/{family}"), |bench| {
            bench.iter(|| p.pingpong(black_box(&data[..1]), &mut buf));
            assert_eq!(buf[..2], data[..2]);
        });

        // The same beside 2,000 idle connections: a poll finds due timers in a heap of
        // deadlines, so this should cost what the round trip above costs.
        let mut p = TcpPair::with_idle(server, IDLE_PAIRS);
        g.bench_function(
            format!("pingpong_1B_idle_{}/{family}", 2 * IDLE_PAIRS),
            |bench| {
                bench.iter(|| p.pingpong(black_box(&data[..1]), &mut buf));
                assert_eq!(buf[..2], data[..2]);
            },
        );

        g.throughput(Throughput::Bytes(BULK as u64));
        let mut p = TcpPair::new(server);
        g.bench_function(format!("bulk_64KiB/{family}"), |bench| {
            bench.iter(|| p.one_way(black_box(&data), &mut buf));
            assert!(buf[..BULK] == data[..]);
        });
    }
    g.finish();
}

criterion_group!(benches, udp, tcp);
criterion_main!(benches);
