//! Busy-polling in blocking mode (`Net::set_busy_poll`): a waiting call spins for the
//! stack to change before it sleeps, and the counters say which way each wait ended.

use std::thread;
use std::time::Duration;

use loopstack_socket::{Net, NetStats, UdpSocket};

const ROUND_TRIPS: usize = 300;

/// `ROUND_TRIPS` UDP round trips between two threads; returns the counters' growth.
fn ping_pong(net: &Net) -> NetStats {
    let server = UdpSocket::bind(net, "127.0.0.1:0").unwrap();
    let client = UdpSocket::bind(net, "127.0.0.1:0").unwrap();
    let server_addr = server.local_addr().unwrap();
    let before = net.stats();
    let echo = thread::spawn(move || {
        let mut buf = [0u8; 64];
        for _ in 0..ROUND_TRIPS {
            let (n, from) = server.recv_from(&mut buf).unwrap();
            server.send_to(&buf[..n], from).unwrap();
        }
    });
    let mut buf = [0u8; 64];
    for i in 0..ROUND_TRIPS {
        let msg = (i as u64).to_le_bytes();
        client.send_to(&msg, server_addr).unwrap();
        let (n, _) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], &msg, "round trip {i}");
    }
    echo.join().unwrap();
    let after = net.stats();
    NetStats {
        busy_poll_hits: after.busy_poll_hits - before.busy_poll_hits,
        sleeps: after.sleeps - before.sleeps,
        ..after
    }
}

#[test]
fn the_default_is_50_microseconds_and_it_can_be_changed() {
    let net = Net::new().unwrap();
    assert_eq!(net.busy_poll(), Duration::from_micros(50));
    net.set_busy_poll(Duration::from_millis(3));
    assert_eq!(net.busy_poll(), Duration::from_millis(3));
    // A clone is the same stack, with the same setting.
    assert_eq!(net.clone().busy_poll(), Duration::from_millis(3));
}

/// Off, every wait sleeps: no hit is counted, and the waits that happened were sleeps.
#[test]
fn without_busy_poll_every_wait_sleeps() {
    let net = Net::new().unwrap();
    net.set_busy_poll(Duration::ZERO);
    let d = ping_pong(&net);
    assert_eq!(d.busy_poll_hits, 0);
    assert!(d.sleeps > 0, "{d:?}");
}

/// With a generous spin, waits end by seeing the change while spinning, where the machine
/// has a second CPU for the peer thread; on one CPU nobody spins.
#[test]
fn with_busy_poll_waits_see_the_change_while_spinning() {
    let net = Net::new().unwrap();
    net.set_busy_poll(Duration::from_millis(20));
    let d = ping_pong(&net);
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    if cpus > 1 {
        assert!(d.busy_poll_hits > 0, "{d:?}");
    } else {
        assert_eq!(d.busy_poll_hits, 0, "{d:?}");
    }
}

/// A read timeout still holds while spinning: a spin longer than the timeout ends at the
/// timeout, with `WouldBlock` as std reports it.
#[test]
fn a_read_timeout_cuts_the_spin_short() {
    let net = Net::new().unwrap();
    net.set_busy_poll(Duration::from_secs(10));
    let s = UdpSocket::bind(&net, "127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(30))).unwrap();
    let start = std::time::Instant::now();
    let err = s.recv_from(&mut [0u8; 8]).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}
