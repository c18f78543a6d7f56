//! The two-thread side-by-side scenarios, the kernel's (`benches/sidebyside/kernel.rs`,
//! `std::net`) and loopstack's blocking mode (`benches/sidebyside/blocking.rs`), run a few
//! iterations each over IPv4 and IPv6, then are dropped.
//!
//! Every scenario checks what it moves (byte counts, the pattern at the ends of each bulk
//! read, sequence numbers in echoed messages and datagrams) and panics on a mismatch, or
//! when it waits more than 10 s for anything. Each test runs on a thread of its own under
//! a time limit, so a server thread that does not stop when its scenario is dropped fails
//! the test instead of hanging it; and after the drop no server thread (nor, for loopstack,
//! the stack's timer thread) may be left. The tests take turns, so that the threads one
//! leaves are not confused with another's.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use loopstack_benches::sidebyside::{
    blocking, kernel, Bulk, Family, OneWay, PingPong, BURST, DATAGRAM, PING_PONG_SIZES,
};

/// How long one test may take, drops included. The scenarios panic after 10 s without
/// progress, so only a drop that never returns gets here.
const LIMIT: Duration = Duration::from_secs(120);

/// One test at a time: the leftover-thread check looks at the whole process.
static SERIAL: Mutex<()> = Mutex::new(());

/// Names of this process's threads that a dropped scenario must not leave behind: its
/// server threads (`sbs-...`) and a loopstack stack's timer thread.
fn leftover_threads() -> Vec<String> {
    let mut names = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let path = task.expect("a task").path().join("comm");
        // A thread that ended since the listing has no comm any more.
        if let Ok(name) = std::fs::read_to_string(path) {
            let name = name.trim_end().to_string();
            if name.starts_with("sbs-") || name.starts_with("loopstack-timer") {
                names.push(name);
            }
        }
    }
    names
}

/// Runs `f` on a thread of its own, fails if it does not return within [`LIMIT`], and then
/// checks that no scenario thread is left.
fn bounded(name: &'static str, f: impl FnOnce() + Send + 'static) {
    let _turn = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    assert_eq!(
        leftover_threads(),
        Vec::<String>::new(),
        "threads before {name}"
    );
    let (tx, rx) = mpsc::channel();
    let t = thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            f();
            let _ = tx.send(());
        })
        .expect("spawning the test thread");
    match rx.recv_timeout(LIMIT) {
        Ok(()) => t.join().expect("the test thread"),
        Err(RecvTimeoutError::Disconnected) => {
            if let Err(panic) = t.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(RecvTimeoutError::Timeout) => {
            panic!("{name}: not done after {LIMIT:?}: a scenario's drop does not return?")
        }
    }
    // A joined thread can linger in /proc for a moment after `join` returns.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = leftover_threads();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: threads left after the scenarios were dropped: {left:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

fn bulk<B: Bulk>(make: fn(Family) -> B) {
    for family in Family::ALL {
        let mut b = make(family);
        b.transfer(4);
        // One chunk, and none, after a longer transfer: the stream offsets carry over.
        b.transfer(1);
        b.transfer(0);
        // Longer than loopstack's socket buffers together.
        b.transfer(16);
        drop(b);
    }
}

fn tcp_ping_pong<P: PingPong>(make: fn(Family, usize) -> P) {
    for family in Family::ALL {
        for size in PING_PONG_SIZES {
            let mut p = make(family, size);
            for _ in 0..10 {
                p.round_trip();
            }
            drop(p);
        }
        // A message larger than loopstack's socket buffers: both ends block on a full
        // buffer and must wait for the other.
        let mut p = make(family, 200_000);
        p.round_trip();
        p.round_trip();
    }
}

fn udp_ping_pong<P: PingPong>(make: fn(Family, usize) -> P) {
    for family in Family::ALL {
        for size in PING_PONG_SIZES.into_iter().chain([DATAGRAM, 60_000]) {
            let mut p = make(family, size);
            for _ in 0..10 {
                p.round_trip();
            }
            drop(p);
        }
    }
}

fn udp_one_way<O: OneWay>(make: fn(Family, usize) -> O) {
    for family in Family::ALL {
        let mut o = make(family, DATAGRAM);
        for _ in 0..3 {
            o.burst(BURST);
        }
        // Longer than a receive queue holds safely: it goes in rounds. And shorter ones.
        o.burst(2500);
        o.burst(1);
        o.burst(0);
        drop(o);
        // Large datagrams: a round is a few of them.
        let mut o = make(family, 60_000);
        o.burst(BURST);
    }
}

#[test]
fn kernel_tcp_bulk() {
    bounded("kernel_tcp_bulk", || bulk(kernel::tcp_bulk));
}

#[test]
fn kernel_tcp_ping_pong() {
    bounded("kernel_tcp_pp", || tcp_ping_pong(kernel::tcp_ping_pong));
}

#[test]
fn kernel_udp_ping_pong() {
    bounded("kernel_udp_pp", || udp_ping_pong(kernel::udp_ping_pong));
}

#[test]
fn kernel_udp_one_way() {
    bounded("kernel_udp_1way", || udp_one_way(kernel::udp_one_way));
}

#[test]
fn blocking_tcp_bulk() {
    bounded("blocking_tcp_bulk", || bulk(blocking::tcp_bulk));
}

#[test]
fn blocking_tcp_ping_pong() {
    bounded("blocking_tcp_pp", || tcp_ping_pong(blocking::tcp_ping_pong));
}

#[test]
fn blocking_udp_ping_pong() {
    bounded("blocking_udp_pp", || udp_ping_pong(blocking::udp_ping_pong));
}

#[test]
fn blocking_udp_one_way() {
    bounded("blocking_udp_1way", || udp_one_way(blocking::udp_one_way));
}

/// A scenario dropped in the middle of its server's probe window stops as promptly, and
/// the server closes the window on its way out.
#[test]
fn drop_with_a_probe_window_open() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static STARTS: AtomicUsize = AtomicUsize::new(0);
    static STOPS: AtomicUsize = AtomicUsize::new(0);
    fn start() {
        STARTS.fetch_add(1, Ordering::SeqCst);
    }
    fn stop() {
        STOPS.fetch_add(1, Ordering::SeqCst);
    }
    bounded("probe_window", || {
        let probe = blocking::Probe {
            start,
            stop,
            skip: 0,
            iterations: 1000,
        };
        let mut p = blocking::tcp_ping_pong_probed(Family::V4, 1, probe);
        p.round_trip();
        drop(p);
        let mut p = kernel::udp_ping_pong_probed(Family::V6, 1, probe);
        p.round_trip();
        drop(p);
        let mut b = blocking::tcp_bulk_probed(Family::V6, probe);
        b.transfer(1);
        drop(b);
        assert_eq!(STARTS.load(Ordering::SeqCst), 3);
        assert_eq!(STOPS.load(Ordering::SeqCst), 3);
    });
}
