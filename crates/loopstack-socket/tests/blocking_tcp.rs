//! Blocking-mode TCP: every public call of [`TcpListener`] and [`TcpStream`], and every
//! error kind they report, over IPv4 and IPv6 on one in-process `lo`.
//!
//! Each scenario is a function taking a [`Family`]; `both_families!` turns it into two
//! tests, `scenario::v4` and `scenario::v6`. Where loopstack differs from what std's
//! sockets report on Linux, the test asserts loopstack's behaviour and says so.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::thread;
use std::time::{Duration, Instant};

use loopstack_internet::route::Route;
use loopstack_link::{FaultConfig, FaultInjector, Loopback};
use loopstack_socket::{Net, Stack, StackConfig, TcpListener, TcpStream, UdpSocket};
use loopstack_transport::tcp::State;

#[macro_use]
mod common;
use common::*;

// ---------------------------------------------------------------------- helpers

/// A listener on `lo`, a client connected to it, and the server's end.
fn pair(net: &Net, f: Family) -> (TcpListener, TcpStream, TcpStream) {
    let listener = TcpListener::bind(net, f.lo(0)).unwrap();
    let client = TcpStream::connect(net, listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (listener, client, server)
}

/// A port nobody listens on: bound once, then freed.
fn closed_port(net: &Net, f: Family) -> SocketAddr {
    let l = TcpListener::bind(net, f.lo(0)).unwrap();
    l.local_addr().unwrap()
}

/// Byte `at` of a test stream: position-dependent, so a lost, repeated or reordered
/// byte is caught.
fn pattern(at: usize) -> u8 {
    (at % 251) as u8
}

fn patterned(from: usize, len: usize) -> Vec<u8> {
    (from..from + len).map(pattern).collect()
}

/// A net whose `lo` drops every packet: SYNs are never answered.
fn black_hole_net() -> Net {
    black_hole_net_with(StackConfig::default())
}

fn black_hole_net_with(config: StackConfig) -> Net {
    let faults = FaultConfig {
        drop: 1.0,
        ..FaultConfig::default()
    };
    let lo = FaultInjector::new(Loopback::new(), faults, 1).unwrap();
    Net::from_stack(Stack::with_loopback(config, Box::new(lo)).unwrap()).unwrap()
}

/// A configuration whose retransmissions give up within a few hundred milliseconds.
fn impatient() -> StackConfig {
    let mut config = StackConfig::default();
    let tcp = &mut config.transport.tcp;
    tcp.rtt.initial_rto = Duration::from_millis(40);
    tcp.rtt.min_rto = Duration::from_millis(20);
    tcp.syn_retries = 1;
    tcp.max_retransmissions = 2;
    config
}

/// Runs `f` on another thread and waits for it at most `limit`: a call that never
/// returns fails the test instead of hanging it (the thread is left behind).
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("still blocked after {limit:?}"))
}

both_families!(
    listener_bind_ephemeral_and_explicit_ports,
    listener_bind_tries_each_address,
    listener_bind_addr_in_use,
    listener_bind_addr_not_available,
    accept_gives_the_peer_and_matching_addresses,
    listener_on_unspecified_address_accepts_on_each_local_address,
    incoming_yields_connections_in_order,
    listener_nonblocking_accept,
    listener_try_clone_shares_the_socket,
    dropping_the_listener_refuses_and_resets,
    connect_refused_and_invalid,
    connect_tries_each_address,
    connect_to_unspecified_goes_to_loopback,
    connect_timeout_zero_success_and_refused,
    connect_timeout_times_out_without_an_answer,
    connect_network_and_host_unreachable,
    read_write_on_stream_and_on_shared_reference,
    large_writes_and_reads_copy_outside_the_lock,
    shutdown_write_half_closes,
    shutdown_read_returns_end_of_file,
    shutdown_both,
    nodelay_option,
    read_timeout_option_and_expiry,
    write_timeout_when_the_peer_window_is_full,
    nonblocking_stream,
    try_clone_shares_the_connection,
    peek_does_not_consume,
    take_error_reports_a_reset_once,
    dropping_with_unread_data_resets_the_peer,
    write_after_the_peer_reset,
    dropping_normally_sends_fin,
    info_and_state,
    accept_after_the_client_closed,
    a_blocked_read_wakes_on_reset,
    a_blocked_write_wakes_on_reset,
    a_blocked_write_wakes_when_the_peer_reads,
    a_blocked_read_wakes_on_shutdown_from_a_clone,
    connect_times_out_when_syn_retries_run_out,
    a_blocked_read_wakes_when_retransmissions_run_out,
    a_timer_run_by_another_call_still_wakes_the_waiter,
    peek_reports_a_reset,
);

// ---------------------------------------------------------------------- the listener

fn listener_bind_ephemeral_and_explicit_ports(f: Family) {
    let net = Net::new().unwrap();
    // Port 0: an ephemeral port, on the address asked for.
    let l = TcpListener::bind(&net, f.lo(0)).unwrap();
    let a = l.local_addr().unwrap();
    assert_eq!(a.ip(), f.lo);
    assert_ne!(a.port(), 0);
    assert!(l.take_error().unwrap().is_none(), "a listener has no error");
    // Two ephemeral binds get two ports.
    let l2 = TcpListener::bind(&net, f.lo(0)).unwrap();
    assert_ne!(l2.local_addr().unwrap().port(), a.port());

    // An explicit port is kept as given.
    let l3 = TcpListener::bind(&net, f.lo(7777)).unwrap();
    assert_eq!(l3.local_addr().unwrap(), f.lo(7777));

    // Dropping frees the port: binding it again works.
    drop(l);
    let again = TcpListener::bind(&net, a).unwrap();
    assert_eq!(again.local_addr().unwrap(), a);

    // The string forms of ToSocketAddrs (literal addresses: no resolver involved).
    let text = match f.lo {
        IpAddr::V4(_) => "127.0.0.1:0",
        IpAddr::V6(_) => "[::1]:0",
    };
    let from_str = TcpListener::bind(&net, text).unwrap();
    assert_eq!(from_str.local_addr().unwrap().ip(), f.lo);
    let tuple = TcpListener::bind(&net, (f.lo.to_string().as_str(), 0)).unwrap();
    assert_eq!(tuple.local_addr().unwrap().ip(), f.lo);
    let ip_tuple = TcpListener::bind(&net, (f.lo, 0)).unwrap();
    assert_eq!(ip_tuple.local_addr().unwrap().ip(), f.lo);

    // The unspecified address stays unspecified in local_addr.
    let any = TcpListener::bind(&net, f.any(0)).unwrap();
    assert_eq!(any.local_addr().unwrap().ip(), f.any);

    // Each listener accepts what comes to its own port.
    let c = TcpStream::connect(&net, l3.local_addr().unwrap()).unwrap();
    let (_s, peer) = l3.accept().unwrap();
    assert_eq!(peer, c.local_addr().unwrap());
}

fn listener_bind_tries_each_address(f: Family) {
    let net = Net::new().unwrap();
    // The first address is not ours, the second is: std's rule, the first success wins.
    let addrs = [f.foreign(0), f.lo(0)];
    let l = TcpListener::bind(&net, &addrs[..]).unwrap();
    assert_eq!(l.local_addr().unwrap().ip(), f.lo);

    // The first is in use, the second free.
    let taken = l.local_addr().unwrap();
    let l2 = TcpListener::bind(&net, &[taken, f.lo(0)][..]).unwrap();
    let a2 = l2.local_addr().unwrap();
    assert_eq!(a2.ip(), f.lo);
    assert_ne!(a2.port(), taken.port());

    // All fail: the last error is reported.
    assert_eq!(
        kind(TcpListener::bind(&net, &[f.foreign(0), taken][..])),
        ErrorKind::AddrInUse
    );
    assert_eq!(
        kind(TcpListener::bind(&net, &[taken, f.foreign(0)][..])),
        ErrorKind::AddrNotAvailable
    );
    // Nothing to try at all.
    let none: &[SocketAddr] = &[];
    assert_eq!(kind(TcpListener::bind(&net, none)), ErrorKind::InvalidInput);
}

fn listener_bind_addr_in_use(f: Family) {
    let net = Net::new().unwrap();
    let l = TcpListener::bind(&net, f.lo(0)).unwrap();
    let p = l.local_addr().unwrap().port();
    assert_eq!(kind(TcpListener::bind(&net, f.lo(p))), ErrorKind::AddrInUse);
    // The unspecified address covers the specific one.
    assert_eq!(
        kind(TcpListener::bind(&net, f.any(p))),
        ErrorKind::AddrInUse
    );
    // And the other way round.
    let any = TcpListener::bind(&net, f.any(0)).unwrap();
    let q = any.local_addr().unwrap().port();
    assert_eq!(kind(TcpListener::bind(&net, f.lo(q))), ErrorKind::AddrInUse);
    assert_eq!(
        kind(TcpListener::bind(&net, f.any(q))),
        ErrorKind::AddrInUse
    );
    if f.lo2 != f.lo {
        // Another specific local address on the same port does not clash.
        let other = TcpListener::bind(&net, SocketAddr::new(f.lo2, p)).unwrap();
        assert_eq!(other.local_addr().unwrap(), SocketAddr::new(f.lo2, p));
    }
    // Once the listener is gone the port is free.
    drop(l);
    TcpListener::bind(&net, f.lo(p)).unwrap();
}

fn listener_bind_addr_not_available(f: Family) {
    let net = Net::new().unwrap();
    assert_eq!(
        kind(TcpListener::bind(&net, f.foreign(0))),
        ErrorKind::AddrNotAvailable
    );
    assert_eq!(
        kind(TcpListener::bind(&net, f.foreign(8080))),
        ErrorKind::AddrNotAvailable
    );
}

fn accept_gives_the_peer_and_matching_addresses(f: Family) {
    let net = Net::new().unwrap();
    let listener = TcpListener::bind(&net, f.lo(0)).unwrap();
    let laddr = listener.local_addr().unwrap();
    let mut client = TcpStream::connect(&net, laddr).unwrap();
    let (mut server, peer) = listener.accept().unwrap();

    let caddr = client.local_addr().unwrap();
    assert_eq!(caddr.ip(), f.lo);
    assert_ne!(caddr.port(), 0);
    assert_eq!(peer, caddr);
    assert_eq!(server.peer_addr().unwrap(), caddr);
    assert_eq!(server.local_addr().unwrap(), laddr);
    assert_eq!(client.peer_addr().unwrap(), laddr);

    client.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    server.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
    server.write_all(b"pong").unwrap();
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"pong");
}

fn listener_on_unspecified_address_accepts_on_each_local_address(f: Family) {
    let net = Net::new().unwrap();
    let listener = TcpListener::bind(&net, f.any(0)).unwrap();
    let p = listener.local_addr().unwrap().port();
    for dst in [f.lo, f.lo2] {
        let client = TcpStream::connect(&net, SocketAddr::new(dst, p)).unwrap();
        let (server, peer) = listener.accept().unwrap();
        // The accepted end is bound to the address the client asked for, not to `any`.
        assert_eq!(server.local_addr().unwrap(), SocketAddr::new(dst, p));
        assert_eq!(client.peer_addr().unwrap(), SocketAddr::new(dst, p));
        assert_eq!(peer, client.local_addr().unwrap());
    }
}

fn incoming_yields_connections_in_order(f: Family) {
    let net = Net::new().unwrap();
    let listener = TcpListener::bind(&net, f.lo(0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let clients: Vec<TcpStream> = (0..3u8)
        .map(|i| {
            let mut c = TcpStream::connect(&net, addr).unwrap();
            c.write_all(&[i]).unwrap();
            c
        })
        .collect();
    for (i, s) in listener.incoming().take(3).enumerate() {
        let mut s = s.unwrap();
        assert_eq!(s.peer_addr().unwrap(), clients[i].local_addr().unwrap());
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
        assert_eq!(b[0] as usize, i);
    }
    // The iterator does not end: with nothing pending, a non-blocking listener's next
    // item is an error rather than `None`.
    listener.set_nonblocking(true).unwrap();
    let next = listener.incoming().next().expect("incoming never ends");
    assert_eq!(kind(next), ErrorKind::WouldBlock);
}

fn listener_nonblocking_accept(f: Family) {
    let net = Net::new().unwrap();
    let listener = TcpListener::bind(&net, f.lo(0)).unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let (r, took) = timed(|| listener.accept());
    assert_eq!(kind(r), ErrorKind::WouldBlock);
    assert!(
        took < Duration::from_secs(1),
        "non-blocking accept waited {took:?}"
    );

    let _client = TcpStream::connect(&net, addr).unwrap();
    let (server, _) = listener.accept().unwrap();
    // The accepted stream blocks whatever the listener's mode (as on Linux): a read with
    // a timeout waits for it.
    server
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let (r, took) = timed(|| (&server).read(&mut [0u8; 8]));
    assert_eq!(kind(r), ErrorKind::WouldBlock);
    assert!(
        took >= Duration::from_millis(50),
        "read returned after {took:?}"
    );

    // Back to blocking: accept waits for a connection made later by another thread.
    listener.set_nonblocking(false).unwrap();
    let net2 = net.clone();
    let connector = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        TcpStream::connect(&net2, addr).unwrap()
    });
    let (accepted, peer) = listener.accept().unwrap();
    let client = connector.join().unwrap();
    assert_eq!(peer, client.local_addr().unwrap());
    assert_eq!(accepted.peer_addr().unwrap(), peer);
}

fn listener_try_clone_shares_the_socket(f: Family) {
    let net = Net::new().unwrap();
    let listener = TcpListener::bind(&net, f.lo(0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let clone = listener.try_clone().unwrap();
    assert_eq!(clone.local_addr().unwrap(), addr);

    // A connection queued on the socket is accepted through either handle.
    let c1 = TcpStream::connect(&net, addr).unwrap();
    let (_s1, p1) = clone.accept().unwrap();
    assert_eq!(p1, c1.local_addr().unwrap());

    // Options are shared: non-blocking set on one applies to the other.
    clone.set_nonblocking(true).unwrap();
    assert_eq!(kind(listener.accept()), ErrorKind::WouldBlock);
    clone.set_nonblocking(false).unwrap();

    // Dropping one handle does not close the socket.
    drop(listener);
    assert_eq!(
        kind(TcpListener::bind(&net, addr)),
        ErrorKind::AddrInUse,
        "the port is still held by the clone"
    );
    let c2 = TcpStream::connect(&net, addr).unwrap();
    let (_s2, p2) = clone.accept().unwrap();
    assert_eq!(p2, c2.local_addr().unwrap());

    // Dropping the last one does.
    drop(clone);
    assert_eq!(
        kind(TcpStream::connect(&net, addr)),
        ErrorKind::ConnectionRefused
    );
}

fn dropping_the_listener_refuses_and_resets(f: Family) {
    let net = Net::new().unwrap();
    let listener = TcpListener::bind(&net, f.lo(0)).unwrap();
    let addr = listener.local_addr().unwrap();
    // Established (the handshake completes in the stack) but never accepted.
    let mut queued = TcpStream::connect(&net, addr).unwrap();
    assert_eq!(queued.state().unwrap(), State::Established);
    drop(listener);
    // Later connects are refused...
    assert_eq!(
        kind(TcpStream::connect(&net, addr)),
        ErrorKind::ConnectionRefused
    );
    // ...and the connection nobody accepted was reset, as Linux does.
    let mut buf = [0u8; 8];
    assert_eq!(kind(queued.read(&mut buf)), ErrorKind::ConnectionReset);
    assert_eq!(queued.state().unwrap(), State::Closed);
}

// ---------------------------------------------------------------------- connecting

fn connect_refused_and_invalid(f: Family) {
    let net = Net::new().unwrap();
    let closed = closed_port(&net, f);
    assert_eq!(
        kind(TcpStream::connect(&net, closed)),
        ErrorKind::ConnectionRefused
    );
    // A port that was never bound is refused the same way.
    assert_eq!(
        kind(TcpStream::connect(&net, f.lo(9))),
        ErrorKind::ConnectionRefused
    );
    // Port 0 is not a destination.
    assert_eq!(
        kind(TcpStream::connect(&net, f.lo(0))),
        ErrorKind::InvalidInput
    );
    // A refused connect leaves nothing behind: a listener on that port still works.
    let l = TcpListener::bind(&net, closed).unwrap();
    let _c = TcpStream::connect(&net, closed).unwrap();
    l.accept().unwrap();
    // It listens in its own family only: the other family's loopback is refused.
    assert_eq!(
        kind(TcpStream::connect(
            &net,
            SocketAddr::new(f.other, closed.port())
        )),
        ErrorKind::ConnectionRefused
    );
}

fn connect_tries_each_address(f: Family) {
    let net = Net::new().unwrap();
    let closed = closed_port(&net, f);
    let listener = TcpListener::bind(&net, f.lo(0)).unwrap();
    let addr = listener.local_addr().unwrap();
    // Refused, no route, then success: the first success wins.
    let c = TcpStream::connect(&net, &[closed, f.foreign(80), addr][..]).unwrap();
    assert_eq!(c.peer_addr().unwrap(), addr);
    let (_s, peer) = listener.accept().unwrap();
    assert_eq!(peer, c.local_addr().unwrap());
    // All fail: the last error.
    assert_eq!(
        kind(TcpStream::connect(&net, &[f.foreign(80), closed][..])),
        ErrorKind::ConnectionRefused
    );
    assert_eq!(
        kind(TcpStream::connect(&net, &[closed, f.foreign(80)][..])),
        ErrorKind::NetworkUnreachable
    );
}

fn connect_to_unspecified_goes_to_loopback(f: Family) {
    let net = Net::new().unwrap();
    let listener = TcpListener::bind(&net, f.lo(0)).unwrap();
    let p = listener.local_addr().unwrap().port();
    // Linux (and so std) connects to the loopback address for 0.0.0.0 and ::.
    let c = TcpStream::connect(&net, f.any(p)).unwrap();
    assert_eq!(c.peer_addr().unwrap(), f.lo(p));
    listener.accept().unwrap();
}

fn connect_timeout_zero_success_and_refused(f: Family) {
    let net = Net::new().unwrap();
    let listener = TcpListener::bind(&net, f.lo(0)).unwrap();
    let addr = listener.local_addr().unwrap();
    assert_eq!(
        kind(TcpStream::connect_timeout(&net, &addr, Duration::ZERO)),
        ErrorKind::InvalidInput
    );
    let (c, took) = timed(|| TcpStream::connect_timeout(&net, &addr, Duration::from_secs(5)));
    let mut c = c.unwrap();
    assert!(
        took < Duration::from_secs(2),
        "a loopback connect took {took:?}"
    );
    let (mut s, peer) = listener.accept().unwrap();
    assert_eq!(peer, c.local_addr().unwrap());
    c.write_all(b"t").unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"t");

    let closed = closed_port(&net, f);
    assert_eq!(
        kind(TcpStream::connect_timeout(
            &net,
            &closed,
            Duration::from_secs(5)
        )),
        ErrorKind::ConnectionRefused
    );
}

fn connect_timeout_times_out_without_an_answer(f: Family) {
    let net = black_hole_net();
    let listener = TcpListener::bind(&net, f.lo(0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let (r, took) = timed(|| TcpStream::connect_timeout(&net, &addr, Duration::from_millis(100)));
    assert_eq!(kind(r), ErrorKind::TimedOut);
    assert!(took >= Duration::from_millis(100), "gave up after {took:?}");
    assert!(took < Duration::from_secs(3), "gave up only after {took:?}");
    // The abandoned attempt is gone: nothing is queued on the listener.
    listener.set_nonblocking(true).unwrap();
    assert_eq!(kind(listener.accept()), ErrorKind::WouldBlock);
}

fn connect_network_and_host_unreachable(f: Family) {
    let net = Net::new().unwrap();
    // No route at all to the documentation prefix (nothing is sent).
    assert_eq!(
        kind(TcpStream::connect(&net, f.foreign(80))),
        ErrorKind::NetworkUnreachable
    );
    assert_eq!(
        kind(TcpStream::connect_timeout(
            &net,
            &f.foreign(80),
            Duration::from_secs(1)
        )),
        ErrorKind::NetworkUnreachable
    );

    let listener = TcpListener::bind(&net, f.lo(0)).unwrap();
    let addr = listener.local_addr().unwrap();
    // Take away the local route loopback traffic uses: no route, network unreachable.
    let removed = net
        .with(|s| s.ip_mut().routes_mut().remove(f.local_route(), 0))
        .unwrap();
    assert_eq!(
        kind(TcpStream::connect(&net, addr)),
        ErrorKind::NetworkUnreachable
    );
    // An `unreachable` route in its place: no route to host.
    net.with(|s| {
        s.ip_mut()
            .routes_mut()
            .add(Route::unreachable(f.local_route()))
    })
    .unwrap();
    assert_eq!(
        kind(TcpStream::connect(&net, addr)),
        ErrorKind::HostUnreachable
    );
    // Routes back as they were: the listener is reachable again.
    net.with(|s| {
        let routes = s.ip_mut().routes_mut();
        routes.remove(f.local_route(), 0).unwrap();
        routes.add(removed).unwrap();
    });
    let c = TcpStream::connect(&net, addr).unwrap();
    let (_s, peer) = listener.accept().unwrap();
    assert_eq!(peer, c.local_addr().unwrap());
}

// ---------------------------------------------------------------------- data

fn read_write_on_stream_and_on_shared_reference(f: Family) {
    const LEN: usize = 512 * 1024;
    let net = Net::new().unwrap();
    let (_l, client, mut server) = pair(&net, f);

    // An echo server on its own thread, through `TcpStream` itself (`&mut self`).
    let echo = thread::spawn(move || {
        let mut buf = vec![0u8; 20_000];
        let mut total = 0;
        loop {
            let n = server.read(&mut buf).unwrap();
            if n == 0 {
                return total;
            }
            server.write_all(&buf[..n]).unwrap();
            total += n;
        }
    });

    // The client writes from one thread and reads from another at the same time, both
    // through `&TcpStream`.
    let data = patterned(0, LEN);
    thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut w = &client;
            for chunk in data.chunks(7_001) {
                w.write_all(chunk).unwrap();
            }
            w.flush().unwrap();
        });
        let reader = scope.spawn(|| {
            let mut r = &client;
            let mut got = vec![0u8; LEN];
            r.read_exact(&mut got).unwrap();
            got
        });
        writer.join().unwrap();
        assert!(reader.join().unwrap() == data, "the echo differs");
    });
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(echo.join().unwrap(), LEN);
    // Zero-length calls do nothing and do not block.
    assert_eq!((&client).write(&[]).unwrap(), 0);
    assert_eq!((&client).read(&mut []).unwrap(), 0);
    // The echo server's drop ended the connection: end of file.
    assert_eq!((&client).read(&mut [0u8; 8]).unwrap(), 0);
}

/// Large writes and reads copy without the stack's lock (docs/benchmarks.md, item 33):
/// writes of whole blocks into lent send-buffer blocks, reads out of received buffers
/// taken whole. Writes of other sizes leave the stream off a block boundary, and those
/// copy under the lock until a write ends on one again. Whatever the mix, the bytes arrive
/// in order, and both ways were taken.
fn large_writes_and_reads_copy_outside_the_lock(f: Family) {
    let net = Net::new().unwrap();
    let (_l, client, server) = pair(&net, f);
    let sizes: Vec<usize> = [65_536, 65_536, 100, 65_436, 70_000, 16_384, 3 * 65_536, 1]
        .iter()
        .cycle()
        .take(48)
        .copied()
        .collect();
    let total: usize = sizes.iter().sum();
    let data = patterned(0, total);
    thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut w = &client;
            let mut at = 0;
            for &n in &sizes {
                w.write_all(&data[at..at + n]).unwrap();
                at += n;
            }
        });
        let mut got = vec![0u8; total];
        let mut r = &server;
        let mut at = 0;
        while at < total {
            let end = (at + 65_536).min(total);
            let n = r.read(&mut got[at..end]).unwrap();
            assert!(n > 0, "end of file after {at} of {total} bytes");
            at += n;
        }
        writer.join().unwrap();
        assert!(got == data, "the stream differs");
    });
    let stats = net.with(|s| s.tcp().stats().clone());
    assert!(
        stats.lent_writes > 0,
        "no write was lent a block: {stats:?}"
    );
    assert!(stats.taken_reads > 0, "no read took buffers: {stats:?}");
}

fn shutdown_write_half_closes(f: Family) {
    let net = Net::new().unwrap();
    let (_l, mut client, mut server) = pair(&net, f);
    client.write_all(b"last words").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    // Shutting down twice is harmless.
    client.shutdown(Shutdown::Write).unwrap();

    // The peer reads the data, then end of file, for every later read.
    let mut got = Vec::new();
    server.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"last words");
    assert_eq!(server.read(&mut [0u8; 4]).unwrap(), 0);
    assert_eq!(server.state().unwrap(), State::CloseWait);
    assert_eq!(client.state().unwrap(), State::FinWait2);
    let client_peer = client.peer_addr().unwrap();

    // Writing after the shutdown is a broken pipe (EPIPE, as on Linux).
    assert_eq!(kind(client.write(b"more")), ErrorKind::BrokenPipe);

    // The other direction still works.
    server.write_all(b"reply").unwrap();
    let mut b = [0u8; 5];
    client.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"reply");

    // The peer closes too: end of file here; the peer's socket ends CLOSED.
    server.shutdown(Shutdown::Write).unwrap();
    assert_eq!(client.read(&mut b).unwrap(), 0);
    assert_eq!(client.state().unwrap(), State::TimeWait);
    assert_eq!(server.state().unwrap(), State::Closed);
    // The connection is over for the application in TIME-WAIT too: no peer, as on Linux
    // (whose application socket is CLOSED while a time-wait mini-socket keeps the rest).
    assert_eq!(kind(client.peer_addr()), ErrorKind::NotConnected);
    // A closed connection has no peer, and cannot be shut down again (ENOTCONN).
    assert_eq!(kind(server.peer_addr()), ErrorKind::NotConnected);
    assert_eq!(
        kind(server.shutdown(Shutdown::Write)),
        ErrorKind::NotConnected
    );
    // Its local address is still known.
    assert_eq!(server.local_addr().unwrap(), client_peer);
}

fn shutdown_read_returns_end_of_file(f: Family) {
    let net = Net::new().unwrap();
    let (_l, mut client, mut server) = pair(&net, f);
    client.shutdown(Shutdown::Read).unwrap();
    // With nothing received, the read returns end of file at once instead of blocking.
    let (r, took) = timed(|| client.read(&mut [0u8; 8]));
    assert_eq!(r.unwrap(), 0);
    assert!(took < Duration::from_secs(1), "read blocked for {took:?}");
    assert_eq!(client.peek(&mut [0u8; 8]).unwrap(), 0);
    // Writing still works.
    client.write_all(b"still here").unwrap();
    let mut b = [0u8; 10];
    server.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"still here");

    // Bytes queued before the shutdown are still read first, as on Linux; then end of
    // file, and bytes that arrive later are discarded.
    let (_l2, mut c2, mut s2) = pair(&net, f);
    s2.write_all(b"queued").unwrap();
    // Run to completion: the write returns with the bytes in the reader's queue.
    assert_eq!(c2.info().unwrap().recv_queue, 6);
    c2.shutdown(Shutdown::Read).unwrap();
    s2.write_all(b"late").unwrap();
    let mut got = Vec::new();
    c2.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"queued");
}

fn shutdown_both(f: Family) {
    let net = Net::new().unwrap();
    let (_l, mut client, mut server) = pair(&net, f);
    client.shutdown(Shutdown::Both).unwrap();
    assert_eq!(client.read(&mut [0u8; 4]).unwrap(), 0);
    assert_eq!(kind(client.write(b"x")), ErrorKind::BrokenPipe);
    assert_eq!(server.read(&mut [0u8; 4]).unwrap(), 0);
}

fn nodelay_option(f: Family) {
    let net = Net::new().unwrap();
    let (_l, mut client, mut server) = pair(&net, f);
    assert!(!client.nodelay().unwrap(), "Nagle is on by default");
    client.set_nodelay(true).unwrap();
    assert!(client.nodelay().unwrap());
    assert!(!server.nodelay().unwrap(), "the option is per connection");
    // Small writes go out at once with Nagle off, even with earlier data unread.
    for i in 0..10u8 {
        client.write_all(&[i]).unwrap();
    }
    let mut b = [0u8; 10];
    server.read_exact(&mut b).unwrap();
    assert_eq!(b, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    client.set_nodelay(false).unwrap();
    assert!(!client.nodelay().unwrap());
}

fn read_timeout_option_and_expiry(f: Family) {
    let net = Net::new().unwrap();
    let (_l, client, mut server) = pair(&net, f);
    assert_eq!(client.read_timeout().unwrap(), None);
    assert_eq!(client.write_timeout().unwrap(), None);

    let t = Duration::from_millis(100);
    client.set_read_timeout(Some(t)).unwrap();
    assert_eq!(client.read_timeout().unwrap(), Some(t));
    // A zero timeout is refused (as std does) and leaves the setting alone.
    assert_eq!(
        kind(client.set_read_timeout(Some(Duration::ZERO))),
        ErrorKind::InvalidInput
    );
    assert_eq!(client.read_timeout().unwrap(), Some(t));

    // Nothing to read: WouldBlock (Linux's EAGAIN for SO_RCVTIMEO) once the time is up.
    let (r, took) = timed(|| (&client).read(&mut [0u8; 16]));
    assert_eq!(kind(r), ErrorKind::WouldBlock);
    assert!(took >= t, "returned after {took:?}");
    assert!(
        took < Duration::from_secs(3),
        "returned only after {took:?}"
    );
    // peek waits the same way.
    let (r, took) = timed(|| client.peek(&mut [0u8; 16]));
    assert_eq!(kind(r), ErrorKind::WouldBlock);
    assert!(took >= t, "peek returned after {took:?}");

    // A read that data arrives for in the meantime succeeds.
    let writer = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        server.write_all(b"in time").unwrap();
        server
    });
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut b = [0u8; 7];
    (&client).read_exact(&mut b).unwrap();
    assert_eq!(&b, b"in time");
    let _server = writer.join().unwrap();

    // None: no timeout.
    client.set_read_timeout(None).unwrap();
    assert_eq!(client.read_timeout().unwrap(), None);
}

fn write_timeout_when_the_peer_window_is_full(f: Family) {
    const CHUNK: usize = 256 * 1024;
    let net = Net::new().unwrap();
    let (_l, mut client, mut server) = pair(&net, f);
    assert_eq!(
        kind(client.set_write_timeout(Some(Duration::ZERO))),
        ErrorKind::InvalidInput
    );
    let t = Duration::from_millis(100);
    client.set_write_timeout(Some(t)).unwrap();
    assert_eq!(client.write_timeout().unwrap(), Some(t));

    // The server never reads: its receive buffer fills, then our send buffer, then a
    // write waits out its timeout.
    let mut sent = 0;
    let blocked_after = loop {
        let chunk = patterned(sent, CHUNK);
        let start = Instant::now();
        match client.write(&chunk) {
            Ok(n) => {
                assert!(n > 0);
                sent += n;
            }
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
                break start.elapsed();
            }
        }
        assert!(sent < 16 << 20, "16 MiB written without blocking");
    };
    assert!(
        blocked_after >= t,
        "the write gave up after {blocked_after:?}"
    );
    // Default buffers: 1 MiB each way; both are full before a write blocks.
    assert!(sent >= 1 << 20, "blocked after only {sent} bytes");
    assert!(sent <= 3 << 20, "{sent} bytes buffered");
    let info = client.info().unwrap();
    assert!(info.send_queue > 0, "{info:?}");
    assert!(server.info().unwrap().recv_queue > 0);

    // The server reads everything, in order; writing works again.
    let mut got = vec![0u8; sent];
    server.read_exact(&mut got).unwrap();
    assert!(got == patterned(0, sent), "the stream differs");
    client.write_all(b"after").unwrap();
    let mut b = [0u8; 5];
    server.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"after");
    client.set_write_timeout(None).unwrap();
    assert_eq!(client.write_timeout().unwrap(), None);
}

fn nonblocking_stream(f: Family) {
    const CHUNK: usize = 256 * 1024;
    let net = Net::new().unwrap();
    let (_l, mut client, mut server) = pair(&net, f);
    client.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 16];
    let (r, took) = timed(|| client.read(&mut buf));
    assert_eq!(kind(r), ErrorKind::WouldBlock);
    assert!(took < Duration::from_secs(1));
    assert_eq!(kind(client.peek(&mut buf)), ErrorKind::WouldBlock);

    // Data arrives: the next read gets it, and the one after blocks again.
    server.write_all(b"hi").unwrap();
    assert_eq!(client.read(&mut buf).unwrap(), 2);
    assert_eq!(&buf[..2], b"hi");
    assert_eq!(kind(client.read(&mut buf)), ErrorKind::WouldBlock);

    // Writes take what fits, then would block (the server is not reading).
    let mut sent = 0;
    loop {
        match client.write(&patterned(sent, CHUNK)) {
            Ok(n) => sent += n,
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
                break;
            }
        }
        assert!(sent < 16 << 20);
    }
    assert!(sent >= 1 << 20);
    let mut got = vec![0u8; sent];
    server.read_exact(&mut got).unwrap();
    assert!(got == patterned(0, sent));

    // Back to blocking: a read waits for data written later.
    client.set_nonblocking(false).unwrap();
    let writer = thread::spawn(move || {
        thread::sleep(Duration::from_millis(30));
        server.write_all(b"later").unwrap();
        server
    });
    let mut b = [0u8; 5];
    client.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"later");
    writer.join().unwrap();
}

fn try_clone_shares_the_connection(f: Family) {
    let net = Net::new().unwrap();
    let (_l, client, mut server) = pair(&net, f);
    let mut clone = client.try_clone().unwrap();
    assert_eq!(clone.local_addr().unwrap(), client.local_addr().unwrap());
    assert_eq!(clone.peer_addr().unwrap(), client.peer_addr().unwrap());

    // Write on the clone, the peer reads it; the peer answers, the original reads it.
    clone.write_all(b"from clone").unwrap();
    let mut b = [0u8; 10];
    server.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"from clone");
    server.write_all(b"to original").unwrap();
    let mut b = [0u8; 11];
    (&client).read_exact(&mut b).unwrap();
    assert_eq!(&b, b"to original");

    // Options are shared, as a dup'ed descriptor's are.
    clone
        .set_read_timeout(Some(Duration::from_millis(70)))
        .unwrap();
    assert_eq!(
        client.read_timeout().unwrap(),
        Some(Duration::from_millis(70))
    );
    clone.set_nonblocking(true).unwrap();
    assert_eq!(kind((&client).read(&mut [0u8; 1])), ErrorKind::WouldBlock);
    clone.set_nonblocking(false).unwrap();
    clone.set_nodelay(true).unwrap();
    assert!(client.nodelay().unwrap());

    // Dropping one handle does not close the connection.
    drop(clone);
    assert_eq!(client.state().unwrap(), State::Established);
    (&client).write_all(b"still open").unwrap();
    let mut b = [0u8; 10];
    server.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"still open");
    server
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    assert_eq!(kind(server.read(&mut b)), ErrorKind::WouldBlock);

    // Dropping the last one does: the peer reads end of file.
    drop(client);
    server.set_read_timeout(None).unwrap();
    assert_eq!(server.read(&mut b).unwrap(), 0);
}

fn peek_does_not_consume(f: Family) {
    let net = Net::new().unwrap();
    let (_l, mut client, mut server) = pair(&net, f);
    server.write_all(b"hello").unwrap();
    let mut b = [0u8; 3];
    assert_eq!(client.peek(&mut b).unwrap(), 3);
    assert_eq!(&b, b"hel");
    let mut b = [0u8; 16];
    assert_eq!(client.peek(&mut b).unwrap(), 5);
    assert_eq!(&b[..5], b"hello");
    assert_eq!(client.info().unwrap().recv_queue, 5);
    let mut r = [0u8; 16];
    assert_eq!(client.read(&mut r).unwrap(), 5);
    assert_eq!(&r[..5], b"hello");
    assert_eq!(client.info().unwrap().recv_queue, 0);
    // At end of file peek returns 0, without blocking.
    drop(server);
    assert_eq!(client.peek(&mut b).unwrap(), 0);
    assert_eq!(client.read(&mut r).unwrap(), 0);
}

fn take_error_reports_a_reset_once(f: Family) {
    let net = Net::new().unwrap();
    let (_l, mut client, server) = pair(&net, f);
    assert!(client.take_error().unwrap().is_none());
    assert!(server.take_error().unwrap().is_none());

    // The server leaves data unread and drops: RST.
    client.write_all(b"unread").unwrap();
    drop(server);
    let e = client
        .take_error()
        .unwrap()
        .expect("an error after the reset");
    assert_eq!(e.kind(), ErrorKind::ConnectionReset);
    assert!(client.take_error().unwrap().is_none(), "reported once");
    // With the error taken, a write is a broken pipe (as on Linux).
    assert_eq!(kind(client.write(b"x")), ErrorKind::BrokenPipe);
    // With the error taken, reads are end of file (as on Linux).
    assert_eq!(client.read(&mut [0u8; 4]).unwrap(), 0);

    // Successful traffic leaves no error behind.
    let (_l2, mut c2, mut s2) = pair(&net, f);
    c2.write_all(b"ok").unwrap();
    s2.read_exact(&mut [0u8; 2]).unwrap();
    assert!(c2.take_error().unwrap().is_none());
    assert!(s2.take_error().unwrap().is_none());
}

fn dropping_with_unread_data_resets_the_peer(f: Family) {
    let net = Net::new().unwrap();
    let (_l, mut client, server) = pair(&net, f);
    client.write_all(b"never read").unwrap();
    assert_eq!(server.info().unwrap().recv_queue, 10);
    let resets_before = net.with(|s| s.tcp().stats().out_rsts);
    drop(server);
    assert_eq!(
        net.with(|s| s.tcp().stats().out_rsts),
        resets_before + 1,
        "one RST sent"
    );

    // The peer sees the reset on its next read.
    assert_eq!(kind(client.read(&mut [0u8; 8])), ErrorKind::ConnectionReset);
    assert_eq!(client.state().unwrap(), State::Closed);
    // Every read after the ECONNRESET is end of file, as on Linux.
    assert_eq!(client.read(&mut [0u8; 8]).unwrap(), 0);
    // Writing is a broken pipe, the peer is gone, shutdown has nothing to shut (all three
    // as on Linux).
    assert_eq!(kind(client.write(b"x")), ErrorKind::BrokenPipe);
    assert_eq!(kind(client.peer_addr()), ErrorKind::NotConnected);
    assert_eq!(
        kind(client.shutdown(Shutdown::Both)),
        ErrorKind::NotConnected
    );
}

fn write_after_the_peer_reset(f: Family) {
    let net = Net::new().unwrap();
    let (_l, mut client, server) = pair(&net, f);
    client.write_all(b"never read").unwrap();
    drop(server);
    // As on Linux: the first write reports the reset, later ones a broken pipe.
    assert_eq!(kind(client.write(b"x")), ErrorKind::ConnectionReset);
    assert_eq!(kind(client.write(b"x")), ErrorKind::BrokenPipe);
    assert_eq!(kind(client.write(b"x")), ErrorKind::BrokenPipe);
}

fn dropping_normally_sends_fin(f: Family) {
    let net = Net::new().unwrap();
    let (_l, mut client, mut server) = pair(&net, f);
    // Data written before the drop is delivered before the end of file.
    server.write_all(b"goodbye").unwrap();
    let resets_before = net.with(|s| s.tcp().stats().out_rsts);
    drop(server);
    let mut got = Vec::new();
    client.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"goodbye");
    assert_eq!(client.read(&mut [0u8; 4]).unwrap(), 0, "end of file again");
    assert_eq!(client.state().unwrap(), State::CloseWait);
    assert_eq!(
        net.with(|s| s.tcp().stats().out_rsts),
        resets_before,
        "a FIN, not a RST"
    );
    // CLOSE-WAIT: the peer address is still known.
    assert_eq!(client.peer_addr().unwrap().ip(), f.lo);

    // Writing to the closed peer: the write is taken, and the orphaned peer answers it
    // with a RST (it has no reader). Linux turns a RST in CLOSE-WAIT into EPIPE, so its
    // next write is BrokenPipe; loopstack's is ConnectionReset, then BrokenPipe.
    client.write_all(b"anyone?").unwrap();
    assert_eq!(client.state().unwrap(), State::Closed);
    assert_eq!(kind(client.write(b"x")), ErrorKind::ConnectionReset);
    assert_eq!(kind(client.write(b"x")), ErrorKind::BrokenPipe);
}

fn info_and_state(f: Family) {
    let net = Net::new().unwrap();
    let (_l, mut client, mut server) = pair(&net, f);
    assert_eq!(client.state().unwrap(), State::Established);
    assert_eq!(server.state().unwrap(), State::Established);
    let info = client.info().unwrap();
    assert_eq!(info.state, State::Established);
    assert!(info.snd_mss > 0);
    assert!(info.cwnd > 0);
    assert!(info.snd_wnd > 0);
    assert!(info.wscale.is_some(), "1 MiB buffers need window scaling");
    assert_eq!((info.unacked, info.send_queue, info.recv_queue), (0, 0, 0));

    client.write_all(&[7u8; 1000]).unwrap();
    let s = server.info().unwrap();
    assert_eq!(s.recv_queue, 1000);
    assert!(s.stats.bytes_received >= 1000);
    let c = client.info().unwrap();
    assert_eq!(c.unacked, 0, "loopback acknowledges at once");
    assert!(c.srtt.is_some(), "a round trip was measured");
    server.read_exact(&mut [0u8; 1000]).unwrap();
    assert_eq!(server.info().unwrap().recv_queue, 0);

    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(client.state().unwrap(), State::FinWait2);
    assert_eq!(server.state().unwrap(), State::CloseWait);
    assert_eq!(server.info().unwrap().state, State::CloseWait);
    drop(server);
    assert_eq!(client.state().unwrap(), State::TimeWait);
}

fn accept_after_the_client_closed(f: Family) {
    let net = Net::new().unwrap();
    let listener = TcpListener::bind(&net, f.lo(0)).unwrap();
    let mut client = TcpStream::connect(&net, listener.local_addr().unwrap()).unwrap();
    let caddr = client.local_addr().unwrap();
    client.write_all(b"before accept").unwrap();
    drop(client);
    // The connection waited in the accept queue: its data and its end are both there.
    let (mut server, peer) = listener.accept().unwrap();
    assert_eq!(peer, caddr);
    let mut got = Vec::new();
    server.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"before accept");
}

fn a_blocked_read_wakes_on_reset(f: Family) {
    let net = Net::new().unwrap();
    let (_l, client, server) = pair(&net, f);
    (&client).write_all(b"unread").unwrap();
    thread::scope(|scope| {
        let reader = scope.spawn(|| (&client).read(&mut [0u8; 8]));
        thread::sleep(Duration::from_millis(50));
        drop(server);
        let r = reader.join().unwrap();
        assert_eq!(kind(r), ErrorKind::ConnectionReset);
    });
}

/// Writes on `stream` in another thread until it blocks (no timeout), and waits until
/// the send buffer is full.
fn fill_until_blocked<'s>(
    scope: &'s thread::Scope<'s, '_>,
    stream: &'s TcpStream,
) -> thread::ScopedJoinHandle<'s, (usize, io::Result<()>)> {
    let writer = scope.spawn(move || {
        let mut sent = 0;
        loop {
            let chunk = patterned(sent, 256 * 1024);
            match (&*stream).write(&chunk) {
                Ok(n) => sent += n,
                Err(e) => return (sent, Err(e)),
            }
            if sent >= 64 << 20 {
                return (sent, Ok(()));
            }
        }
    });
    let start = Instant::now();
    while stream.info().unwrap().send_queue < 1 << 20 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the writer never filled"
        );
        thread::sleep(Duration::from_millis(5));
    }
    // Give the writer time to enter its wait.
    thread::sleep(Duration::from_millis(30));
    assert!(!writer.is_finished(), "the writer did not block");
    writer
}

fn a_blocked_write_wakes_on_reset(f: Family) {
    let net = Net::new().unwrap();
    let (_l, client, server) = pair(&net, f);
    thread::scope(|scope| {
        let writer = fill_until_blocked(scope, &client);
        // The server has a full buffer unread: dropping it sends RST.
        drop(server);
        let (sent, r) = writer.join().unwrap();
        assert!(sent >= 1 << 20);
        assert_eq!(kind(r), ErrorKind::ConnectionReset);
    });
}

fn a_blocked_write_wakes_when_the_peer_reads(f: Family) {
    let net = Net::new().unwrap();
    let (_l, client, mut server) = pair(&net, f);
    thread::scope(|scope| {
        let writer = fill_until_blocked(scope, &client);
        // Reading opens the window; the writer goes on, and stops only at the end.
        let mut got = vec![0u8; 4 << 20];
        server.read_exact(&mut got).unwrap();
        assert!(got == patterned(0, 4 << 20), "the stream differs");
        client.shutdown(Shutdown::Write).ok();
        drop(server);
        let (sent, r) = writer.join().unwrap();
        assert!(sent >= 4 << 20, "only {sent} bytes written");
        // The writer ended on the shutdown or the server's reset: either way, an error.
        assert!(r.is_err());
    });
}

fn a_blocked_read_wakes_on_shutdown_from_a_clone(f: Family) {
    let net = Net::new().unwrap();
    let (_l, client, _server) = pair(&net, f);
    let mut clone = client.try_clone().unwrap();
    let reader = thread::spawn(move || clone.read(&mut [0u8; 8]));
    thread::sleep(Duration::from_millis(50));
    client.shutdown(Shutdown::Read).unwrap();
    assert_eq!(reader.join().unwrap().unwrap(), 0);
}

fn connect_times_out_when_syn_retries_run_out(f: Family) {
    // No timeout given: the SYN and its one retransmission go unanswered, and the blocked
    // connect must be woken by the timer that gives up.
    let net = black_hole_net_with(impatient());
    let listener = TcpListener::bind(&net, f.lo(0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let net2 = net.clone();
    let (r, took) = within(Duration::from_secs(5), move || {
        timed(|| TcpStream::connect(&net2, addr).map(drop))
    });
    assert_eq!(kind(r), ErrorKind::TimedOut);
    // 40 ms, then 80 ms backed off.
    assert!(took >= Duration::from_millis(100), "gave up after {took:?}");
}

fn a_blocked_read_wakes_when_retransmissions_run_out(f: Family) {
    let net = Net::with_config(impatient()).unwrap();
    let (_l, client, _server) = pair(&net, f);
    // Cut the route: what the client sends next is lost, and so is every retransmission.
    net.with(|s| s.ip_mut().routes_mut().remove(f.local_route(), 0))
        .unwrap();
    (&client).write_all(b"lost").unwrap();
    let (r, took) = within(Duration::from_secs(5), move || {
        timed(|| (&client).read(&mut [0u8; 8]))
    });
    assert_eq!(kind(r), ErrorKind::TimedOut);
    assert!(took >= Duration::from_millis(40), "gave up after {took:?}");
}

fn a_timer_run_by_another_call_still_wakes_the_waiter(f: Family) {
    // Another thread polls the stack without pause (non-blocking receives), so the timers
    // that end the connect are mostly run by its calls rather than by the timer thread:
    // the blocked connect must be woken all the same.
    let net = black_hole_net_with(impatient());
    let listener = TcpListener::bind(&net, f.lo(0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let udp = UdpSocket::bind(&net, f.lo(0)).unwrap();
    udp.set_nonblocking(true).unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spinner = {
        let done = done.clone();
        thread::spawn(move || {
            let start = Instant::now();
            while !done.load(std::sync::atomic::Ordering::Relaxed)
                && start.elapsed() < Duration::from_secs(6)
            {
                assert_eq!(kind(udp.recv(&mut [0u8; 4])), ErrorKind::WouldBlock);
            }
        })
    };
    let net2 = net.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(TcpStream::connect(&net2, addr).map(drop));
    });
    let r = rx.recv_timeout(Duration::from_secs(5));
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    spinner.join().unwrap();
    assert_eq!(
        kind(r.expect("connect never returned")),
        ErrorKind::TimedOut
    );
}

fn peek_reports_a_reset(f: Family) {
    let net = Net::new().unwrap();
    let (_l, mut client, server) = pair(&net, f);
    client.write_all(b"never read").unwrap();
    drop(server);
    // As on Linux: peek reports the reset (and takes it), rather than an end of file.
    assert_eq!(kind(client.peek(&mut [0u8; 8])), ErrorKind::ConnectionReset);
    assert!(client.take_error().unwrap().is_none());
    // Later peeks and reads are end of file, as on Linux.
    assert_eq!(client.peek(&mut [0u8; 8]).unwrap(), 0);
    assert_eq!(client.read(&mut [0u8; 8]).unwrap(), 0);
    // Data queued before a reset is still peeked and read first (as on Linux), then
    // the reset.
    let (_l2, mut c2, mut s2) = pair(&net, f);
    s2.write_all(b"data").unwrap();
    c2.write_all(b"unread").unwrap();
    drop(s2);
    let mut b = [0u8; 8];
    assert_eq!(c2.peek(&mut b).unwrap(), 4);
    assert_eq!(&b[..4], b"data");
    assert_eq!(c2.read(&mut b).unwrap(), 4);
    assert_eq!(&b[..4], b"data");
    assert_eq!(kind(c2.peek(&mut b)), ErrorKind::ConnectionReset);
}
