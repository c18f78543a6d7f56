//! TCP under loss: deterministic transfers through the `FaultInjector` on `lo`.
//!
//! Each run moves data in both directions at once over a `lo` shrunk to a 1500-byte MTU (so
//! a mebibyte is hundreds of segments), with drop, duplicate, reorder and corrupt
//! probabilities drawn per seed. Every byte must arrive once and in order (checked by hash)
//! within a bound on simulated time. The sweep here is sized for CI; `cargo xtask soak` runs
//! a larger one through the same function, with `LOOPSTACK_SOAK_SEEDS`.

use std::net::SocketAddr;
use std::time::Duration;

use loopstack_link::{
    FaultConfig, FaultDirection, FaultInjector, Instant, Loopback, LoopbackConfig, Rng,
};
use loopstack_socket::{Stack, StackConfig};
use loopstack_transport::tcp::{Shutdown, State, TcpHandle};

/// One transfer's faults and size.
#[derive(Debug, Clone, Copy)]
struct Run {
    seed: u64,
    drop: f64,
    duplicate: f64,
    reorder: f64,
    corrupt: f64,
    bytes: usize,
    v6: bool,
}

/// A stream of pseudo-random bytes and a running hash of what was seen of it.
struct Stream {
    rng: Rng,
    hash: u64,
    len: usize,
}

impl Stream {
    fn new(seed: u64) -> Self {
        Stream {
            rng: Rng::new(seed),
            hash: 0xcbf29ce484222325,
            len: 0,
        }
    }

    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let v = self.rng.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    /// FNV-1a over every byte, in order.
    fn absorb(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.hash = (self.hash ^ u64::from(b)).wrapping_mul(0x100000001b3);
        }
        self.len += bytes.len();
    }
}

/// One direction of the transfer: a sender with its stream, a receiver hashing what comes.
struct Direction {
    from: TcpHandle,
    to: TcpHandle,
    source: Stream,
    sent_hash: Stream,
    received: Stream,
    pending: Vec<u8>,
    sent: usize,
    shut: bool,
    eof: bool,
}

impl Direction {
    fn new(from: TcpHandle, to: TcpHandle, seed: u64) -> Self {
        Direction {
            from,
            to,
            source: Stream::new(seed),
            sent_hash: Stream::new(0),
            received: Stream::new(0),
            pending: Vec::new(),
            sent: 0,
            shut: false,
            eof: false,
        }
    }

    /// Moves data between the application and the sockets; returns whether anything moved.
    fn pump(&mut self, s: &mut Stack, total: usize, buf: &mut [u8]) -> bool {
        let mut moved = false;
        while self.sent < total {
            if self.pending.is_empty() {
                let n = (total - self.sent).min(16 * 1024);
                self.pending.resize(n, 0);
                self.source.fill(&mut self.pending);
            }
            match s.tcp().send(self.from, &self.pending) {
                Ok(n) => {
                    self.sent_hash.absorb(&self.pending[..n]);
                    self.pending.drain(..n);
                    self.sent += n;
                    moved = true;
                }
                Err(loopstack_transport::Error::WouldBlock) => break,
                Err(e) => panic!("send failed: {e}"),
            }
        }
        if self.sent == total && !self.shut {
            s.tcp().shutdown(self.from, Shutdown::Write).unwrap();
            self.shut = true;
            moved = true;
        }
        loop {
            match s.tcp().recv(self.to, buf) {
                Ok(0) => {
                    moved |= !self.eof;
                    self.eof = true;
                    break;
                }
                Ok(n) => {
                    self.received.absorb(&buf[..n]);
                    moved = true;
                }
                Err(loopstack_transport::Error::WouldBlock) => break,
                Err(e) => panic!("recv failed: {e}"),
            }
        }
        moved
    }
}

/// Runs one transfer; returns the simulated time it took.
fn transfer(run: Run) -> Duration {
    let faults = FaultConfig {
        drop: run.drop,
        duplicate: run.duplicate,
        reorder: run.reorder,
        corrupt: run.corrupt,
        direction: FaultDirection::Tx,
        ..FaultConfig::default()
    };
    let lo = Loopback::with_config(LoopbackConfig {
        mtu: 1500,
        ..LoopbackConfig::default()
    })
    .unwrap();
    let lo = FaultInjector::new(lo, faults, run.seed).unwrap();
    let lo: loopstack_socket::BoxedDevice = if std::env::var_os("LOOPSTACK_TRACE").is_some() {
        Box::new(loopstack_link::Tracer::new(lo, std::io::stderr()))
    } else {
        Box::new(lo)
    };
    let mut config = StackConfig {
        seed: run.seed,
        ..StackConfig::default()
    };
    config.transport.tcp.time_wait = Duration::from_secs(1);
    config.transport.tcp.send_buffer = 256 * 1024;
    config.transport.tcp.recv_buffer = 256 * 1024;
    let mut s = Stack::with_loopback(config, lo).unwrap();
    let server: SocketAddr = if run.v6 {
        "[::1]:5001".parse().unwrap()
    } else {
        "127.0.0.1:5001".parse().unwrap()
    };
    let listener = s.tcp_listen(server, 8).unwrap();
    let start = Instant::from_secs(1);
    let mut now = start;
    let client = s.tcp_connect(now, server).unwrap();
    let limit = start + Duration::from_secs(7200);
    let accepted = loop {
        s.poll(now);
        if let Ok((a, _)) = s.tcp().accept(listener) {
            break a;
        }
        now = next_time(&s, now);
        assert!(now < limit, "{run:?}: no connection within the limit");
    };
    let mut up = Direction::new(client, accepted, run.seed ^ 1);
    let mut down = Direction::new(accepted, client, run.seed ^ 2);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut moved = up.pump(&mut s, run.bytes, &mut buf);
        moved |= down.pump(&mut s, run.bytes, &mut buf);
        let worked = s.poll(now);
        if up.eof && down.eof {
            break;
        }
        if !moved && !worked {
            now = next_time(&s, now);
        }
        assert!(
            now < limit,
            "{run:?}: stalled: up {} of {} bytes, down {} of {}, client {:?}, server {:?}, tcp {:?}, ip {:?}",
            up.received.len,
            run.bytes,
            down.received.len,
            run.bytes,
            s.tcp().info(client),
            s.tcp().info(accepted),
            s.transport().tcp.stats(),
            s.ip().stats(),
        );
    }
    for (name, d) in [("client to server", &up), ("server to client", &down)] {
        assert_eq!(d.received.len, run.bytes, "{run:?} {name}: byte count");
        assert_eq!(d.received.hash, d.sent_hash.hash, "{run:?} {name}: content");
    }
    let took = now.saturating_duration_since(start);
    if std::env::var_os("LOOPSTACK_VERBOSE").is_some() {
        eprintln!(
            "{run:?}: {took:?}\n  client {:?}\n  server {:?}",
            s.tcp().info(client).unwrap(),
            s.tcp().info(accepted).unwrap()
        );
    }
    // Both close cleanly: one side ends in TIME-WAIT, then everything is reaped.
    s.tcp().close(client).unwrap();
    s.tcp().close(accepted).unwrap();
    let end = now + Duration::from_secs(300);
    while s.tcp().sockets().count() > 1 && now < end {
        s.poll(now);
        now = next_time(&s, now);
    }
    let left: Vec<State> = s.tcp().sockets().map(|e| e.state).collect();
    assert_eq!(left, vec![State::Listen], "{run:?}: connections left over");
    took
}

/// The next moment anything can happen: the stack's next timer, or a little later.
fn next_time(s: &Stack, now: Instant) -> Instant {
    match s.poll_at() {
        Some(t) if t > now => t,
        _ => now + Duration::from_micros(100),
    }
}

fn runs(count: u64, first_seed: u64, bytes: usize) -> impl Iterator<Item = Run> {
    (first_seed..first_seed + count).map(move |seed| {
        let mut rng = Rng::new(seed);
        let mut p = || rng.next_f64() * 0.10;
        Run {
            seed,
            drop: p(),
            duplicate: p(),
            reorder: p(),
            corrupt: p(),
            bytes,
            v6: seed % 2 == 1,
        }
    })
}

fn seeds_from_env(default: u64) -> u64 {
    std::env::var("LOOPSTACK_SOAK_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn clean_transfer_has_no_retransmissions() {
    let run = Run {
        seed: 7,
        drop: 0.0,
        duplicate: 0.0,
        reorder: 0.0,
        corrupt: 0.0,
        bytes: 1 << 20,
        v6: false,
    };
    let took = transfer(run);
    assert!(took < Duration::from_secs(1), "clean 1 MiB took {took:?}");
}

/// Runs `count` seeds from `first` with every fault up to 10%.
fn sweep(first: u64, count: u64) {
    for run in runs(count, first, 1 << 20) {
        let took = transfer(run);
        assert!(took < Duration::from_secs(60), "{run:?} took {took:?}");
    }
}

/// The seed count per sweep test: 50 (four tests make the 200 CI runs), or
/// `LOOPSTACK_SOAK_SEEDS` for `cargo xtask soak`.
fn sweep_size() -> u64 {
    seeds_from_env(50)
}

#[test]
fn mixed_faults_up_to_ten_percent_a() {
    sweep(1000, sweep_size());
}

#[test]
fn mixed_faults_up_to_ten_percent_b() {
    sweep(100_000, sweep_size());
}

#[test]
fn mixed_faults_up_to_ten_percent_c() {
    sweep(200_000, sweep_size());
}

#[test]
fn mixed_faults_up_to_ten_percent_d() {
    sweep(300_000, sweep_size());
}

#[test]
fn heavy_drop_thirty_percent() {
    for seed in 0..seeds_from_env(4) {
        let run = Run {
            seed: 5000 + seed,
            drop: 0.30,
            duplicate: 0.0,
            reorder: 0.0,
            corrupt: 0.0,
            bytes: 1 << 20,
            v6: seed % 2 == 0,
        };
        let took = transfer(run);
        assert!(took < Duration::from_secs(1200), "{run:?} took {took:?}");
    }
}
