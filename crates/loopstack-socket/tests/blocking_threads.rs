//! Blocking mode under load: 64 connections, each echoing 1 MiB, from 64 client threads
//! and 64 server threads on one shared stack; and an idle stack that does not spin.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

use loopstack_socket::{Net, TcpListener, TcpStream, UdpSocket};

const CONNS: usize = 64;
const BYTES: usize = 1 << 20;
const CHUNK: usize = 64 * 1024;

/// The bytes client `i` sends: distinct per client and per position, so a byte delivered
/// to the wrong connection or out of order is caught.
fn pattern(i: usize, at: usize) -> u8 {
    (at.wrapping_mul(31) ^ (at >> 8) ^ i.wrapping_mul(97)) as u8
}

fn sockets_are_send_and_sync<T: Send + Sync>() {}

#[test]
fn sockets_are_send_and_sync_as_std() {
    sockets_are_send_and_sync::<Net>();
    sockets_are_send_and_sync::<TcpListener>();
    sockets_are_send_and_sync::<TcpStream>();
    sockets_are_send_and_sync::<UdpSocket>();
    sockets_are_send_and_sync::<loopstack_socket::IcmpSocket>();
}

fn echo_many(bind: &str) {
    let net = Net::new().unwrap();
    let listener = TcpListener::bind(&net, bind).unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let mut workers = Vec::new();
        for _ in 0..CONNS {
            let (mut s, _) = listener.accept().unwrap();
            workers.push(thread::spawn(move || {
                let mut buf = vec![0u8; 16 * 1024];
                let mut total = 0;
                loop {
                    let n = s.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    s.write_all(&buf[..n]).unwrap();
                    total += n;
                }
                total
            }));
        }
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .sum::<usize>()
    });
    let clients: Vec<_> = (0..CONNS)
        .map(|i| {
            let net = net.clone();
            thread::spawn(move || {
                let mut s = TcpStream::connect(&net, addr).unwrap();
                let mut out = vec![0u8; CHUNK];
                let mut back = vec![0u8; CHUNK];
                let mut at = 0;
                while at < BYTES {
                    for (k, b) in out.iter_mut().enumerate() {
                        *b = pattern(i, at + k);
                    }
                    s.write_all(&out).unwrap();
                    s.read_exact(&mut back).unwrap();
                    assert_eq!(back, out, "connection {i} at byte {at}");
                    at += CHUNK;
                }
                s.shutdown(std::net::Shutdown::Write).unwrap();
                assert_eq!(s.read(&mut back).unwrap(), 0, "end of file after the echo");
                at
            })
        })
        .collect();
    let sent: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert_eq!(sent, CONNS * BYTES);
    assert_eq!(server.join().unwrap(), CONNS * BYTES);
}

#[test]
fn sixty_four_threads_echo_a_mebibyte_each_ipv4() {
    echo_many("127.0.0.1:0");
}

#[test]
fn sixty_four_threads_echo_a_mebibyte_each_ipv6() {
    echo_many("[::1]:0");
}

/// An idle stack sleeps: after the traffic stops, the timer thread wakes only for real
/// deadlines (here none for a while), not in a polling loop.
#[test]
fn an_idle_stack_does_not_wake_up() {
    let net = Net::new().unwrap();
    {
        let listener = TcpListener::bind(&net, "127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(&net, listener.local_addr().unwrap()).unwrap();
        let (mut s, _) = listener.accept().unwrap();
        c.write_all(b"hello").unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        // The server closes first, so its side ends in TIME-WAIT (60 s): one timer, far off.
        drop(s);
        assert_eq!(c.read(&mut buf).unwrap(), 0);
    }
    thread::sleep(Duration::from_millis(50));
    let before = net.stats();
    thread::sleep(Duration::from_millis(500));
    let after = net.stats();
    assert!(
        after.timer_wakeups - before.timer_wakeups <= 1,
        "an idle stack woke {} times in 500 ms",
        after.timer_wakeups - before.timer_wakeups
    );
    assert_eq!(after.timer_polls, before.timer_polls);
}
