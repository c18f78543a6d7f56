//! Blocking-mode UDP: every public call of [`UdpSocket`] and every error kind it reports,
//! over IPv4 and IPv6 on one in-process `lo`.
//!
//! Each scenario is a function taking a [`Family`]; `both_families!` turns it into two
//! tests, `scenario::v4` and `scenario::v6`. Where loopstack differs from what std's
//! sockets report on Linux, the test asserts loopstack's behaviour and says so.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::thread;
use std::time::Duration;

use loopstack_internet::route::Route;
use loopstack_socket::{Net, UdpSocket};

#[macro_use]
mod common;
use common::*;

// ---------------------------------------------------------------------- helpers

/// A socket on `lo` with an ephemeral port.
fn sock(net: &Net, f: Family) -> UdpSocket {
    UdpSocket::bind(net, f.lo(0)).unwrap()
}

/// An address nobody is bound to: bound once, then freed.
fn closed_port(net: &Net, f: Family) -> SocketAddr {
    sock(net, f).local_addr().unwrap()
}

/// Asserts `s` has nothing queued: a non-blocking receive would block.
#[track_caller]
fn assert_empty(s: &UdpSocket) {
    let was = s.read_timeout().unwrap();
    s.set_nonblocking(true).unwrap();
    let r = s.recv_from(&mut [0u8; 64]);
    s.set_nonblocking(false).unwrap();
    assert_eq!(s.read_timeout().unwrap(), was);
    assert_eq!(kind(r), ErrorKind::WouldBlock);
}

both_families!(
    bind_ephemeral_and_explicit_ports,
    bind_tries_each_address,
    bind_addr_in_use,
    bind_addr_not_available,
    send_to_and_recv_from,
    send_to_invalid_destinations,
    send_to_uses_the_first_address_only,
    connect_send_and_recv,
    connect_filters_other_senders,
    connect_errors_and_list,
    connection_refused_on_recv,
    connection_refused_on_send,
    connection_refused_is_not_reported_unconnected,
    take_error_is_taken_once,
    peek_and_peek_from_do_not_consume,
    a_long_datagram_is_truncated_to_the_buffer,
    read_timeout_option_and_expiry,
    write_timeout_option,
    nonblocking_mode,
    try_clone_shares_the_socket,
    too_large_a_datagram_is_invalid_input,
    the_largest_datagram_goes_through,
    network_and_host_unreachable,
    dropping_frees_the_port,
    a_blocked_recv_wakes_for_a_datagram_from_another_thread,
);

// ---------------------------------------------------------------------- binding

fn bind_ephemeral_and_explicit_ports(f: Family) {
    let net = Net::new().unwrap();
    let a = sock(&net, f);
    let addr = a.local_addr().unwrap();
    assert_eq!(addr.ip(), f.lo);
    assert_ne!(addr.port(), 0);
    let b = sock(&net, f);
    assert_ne!(b.local_addr().unwrap().port(), addr.port());

    let explicit = UdpSocket::bind(&net, f.lo(5353)).unwrap();
    assert_eq!(explicit.local_addr().unwrap(), f.lo(5353));
    let any = UdpSocket::bind(&net, f.any(0)).unwrap();
    assert_eq!(any.local_addr().unwrap().ip(), f.any);

    // String and tuple forms of ToSocketAddrs (literals: no resolver).
    let text = match f.lo {
        IpAddr::V4(_) => "127.0.0.1:0",
        IpAddr::V6(_) => "[::1]:0",
    };
    assert_eq!(
        UdpSocket::bind(&net, text)
            .unwrap()
            .local_addr()
            .unwrap()
            .ip(),
        f.lo
    );
    assert_eq!(
        UdpSocket::bind(&net, (f.lo.to_string().as_str(), 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .ip(),
        f.lo
    );
    // Fresh sockets are unconnected, without options or errors.
    assert_eq!(kind(a.peer_addr()), ErrorKind::NotConnected);
    assert_eq!(a.read_timeout().unwrap(), None);
    assert_eq!(a.write_timeout().unwrap(), None);
    assert!(a.take_error().unwrap().is_none());
}

fn bind_tries_each_address(f: Family) {
    let net = Net::new().unwrap();
    let a = UdpSocket::bind(&net, &[f.foreign(0), f.lo(0)][..]).unwrap();
    assert_eq!(a.local_addr().unwrap().ip(), f.lo);
    let taken = a.local_addr().unwrap();
    let b = UdpSocket::bind(&net, &[taken, f.lo(0)][..]).unwrap();
    assert_ne!(b.local_addr().unwrap(), taken);
    assert_eq!(
        kind(UdpSocket::bind(&net, &[f.foreign(0), taken][..])),
        ErrorKind::AddrInUse
    );
    assert_eq!(
        kind(UdpSocket::bind(&net, &[taken, f.foreign(0)][..])),
        ErrorKind::AddrNotAvailable
    );
    let none: &[SocketAddr] = &[];
    assert_eq!(kind(UdpSocket::bind(&net, none)), ErrorKind::InvalidInput);
}

fn bind_addr_in_use(f: Family) {
    let net = Net::new().unwrap();
    let a = sock(&net, f);
    let p = a.local_addr().unwrap().port();
    assert_eq!(kind(UdpSocket::bind(&net, f.lo(p))), ErrorKind::AddrInUse);
    assert_eq!(kind(UdpSocket::bind(&net, f.any(p))), ErrorKind::AddrInUse);
    let any = UdpSocket::bind(&net, f.any(0)).unwrap();
    let q = any.local_addr().unwrap().port();
    assert_eq!(kind(UdpSocket::bind(&net, f.lo(q))), ErrorKind::AddrInUse);
    if f.lo2 != f.lo {
        // Another specific local address on the same port is free.
        UdpSocket::bind(&net, SocketAddr::new(f.lo2, p)).unwrap();
    }
    // The other family's port space is separate (loopstack does not make IPv6 sockets
    // dual-stack).
    UdpSocket::bind(&net, SocketAddr::new(f.other, p)).unwrap();
}

fn bind_addr_not_available(f: Family) {
    let net = Net::new().unwrap();
    assert_eq!(
        kind(UdpSocket::bind(&net, f.foreign(0))),
        ErrorKind::AddrNotAvailable
    );
    assert_eq!(
        kind(UdpSocket::bind(&net, f.foreign(53))),
        ErrorKind::AddrNotAvailable
    );
}

// ---------------------------------------------------------------------- datagrams

fn send_to_and_recv_from(f: Family) {
    let net = Net::new().unwrap();
    let a = sock(&net, f);
    let b = sock(&net, f);
    let baddr = b.local_addr().unwrap();
    assert_eq!(a.send_to(b"hello", baddr).unwrap(), 5);
    assert_eq!(a.send_to(b"", baddr).unwrap(), 0);
    assert_eq!(a.send_to(b"world!", baddr).unwrap(), 6);
    let mut buf = [0u8; 64];
    // One datagram per receive, in order, with its sender.
    let (n, from) = b.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"hello"[..], a.local_addr().unwrap()));
    let (n, from) = b.recv_from(&mut buf).unwrap();
    assert_eq!((n, from), (0, a.local_addr().unwrap()), "an empty datagram");
    assert_eq!(b.recv(&mut buf).unwrap(), 6);
    assert_eq!(&buf[..6], b"world!");
    assert_empty(&b);

    // A socket bound to the unspecified address sends from, and is reached at, `lo`.
    let any = UdpSocket::bind(&net, f.any(0)).unwrap();
    let p = any.local_addr().unwrap().port();
    any.send_to(b"from any", baddr).unwrap();
    let (n, from) = b.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"from any"[..], f.lo(p)));
    b.send_to(b"to any", f.lo(p)).unwrap();
    let (n, from) = any.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"to any"[..], baddr));
    // A socket may send to itself.
    b.send_to(b"self", baddr).unwrap();
    assert_eq!(b.recv_from(&mut buf).unwrap(), (4, baddr));
}

fn send_to_invalid_destinations(f: Family) {
    let net = Net::new().unwrap();
    let a = sock(&net, f);
    // Port 0 is not a destination; the other family is not this socket's.
    assert_eq!(kind(a.send_to(b"x", f.lo(0))), ErrorKind::InvalidInput);
    assert_eq!(
        kind(a.send_to(b"x", SocketAddr::new(f.other, 9))),
        ErrorKind::InvalidInput
    );
    let none: &[SocketAddr] = &[];
    assert_eq!(kind(a.send_to(b"x", none)), ErrorKind::InvalidInput);
}

fn send_to_uses_the_first_address_only(f: Family) {
    let net = Net::new().unwrap();
    let a = sock(&net, f);
    let b = sock(&net, f);
    let c = sock(&net, f);
    let to = [b.local_addr().unwrap(), c.local_addr().unwrap()];
    a.send_to(b"once", &to[..]).unwrap();
    assert_eq!(b.recv(&mut [0u8; 8]).unwrap(), 4);
    assert_empty(&c);
}

fn connect_send_and_recv(f: Family) {
    let net = Net::new().unwrap();
    let a = UdpSocket::bind(&net, f.any(0)).unwrap();
    let b = sock(&net, f);
    let baddr = b.local_addr().unwrap();
    assert_eq!(kind(a.peer_addr()), ErrorKind::NotConnected);
    // Unconnected: send has no destination (Linux: EDESTADDRREQ, which std does not
    // map to NotConnected; loopstack reports NotConnected).
    assert_eq!(kind(a.send(b"x")), ErrorKind::NotConnected);

    a.connect(baddr).unwrap();
    assert_eq!(a.peer_addr().unwrap(), baddr);
    // Connecting picked the source address for the unspecified bind, as Linux does.
    let aaddr = a.local_addr().unwrap();
    assert_eq!(aaddr.ip(), f.lo);

    assert_eq!(a.send(b"hi b").unwrap(), 4);
    let mut buf = [0u8; 16];
    let (n, from) = b.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"hi b"[..], aaddr));
    b.send_to(b"hi a", aaddr).unwrap();
    assert_eq!(a.recv(&mut buf).unwrap(), 4);
    assert_eq!(&buf[..4], b"hi a");
    // A connected socket may still send elsewhere with send_to.
    let c = sock(&net, f);
    a.send_to(b"aside", c.local_addr().unwrap()).unwrap();
    assert_eq!(c.recv_from(&mut buf).unwrap(), (5, aaddr));

    // Connecting again changes the peer.
    a.connect(c.local_addr().unwrap()).unwrap();
    assert_eq!(a.peer_addr().unwrap(), c.local_addr().unwrap());
    a.send(b"now c").unwrap();
    assert_eq!(c.recv(&mut buf).unwrap(), 5);
    assert_empty(&b);
}

fn connect_filters_other_senders(f: Family) {
    let net = Net::new().unwrap();
    let a = sock(&net, f);
    let b = sock(&net, f);
    let c = sock(&net, f);
    a.connect(b.local_addr().unwrap()).unwrap();
    // From c: not the peer, dropped.
    c.send_to(b"stranger", a.local_addr().unwrap()).unwrap();
    assert_empty(&a);
    // From b: received.
    b.send_to(b"peer", a.local_addr().unwrap()).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(a.recv_from(&mut buf).unwrap(), (4, b.local_addr().unwrap()));
}

fn connect_errors_and_list(f: Family) {
    let net = Net::new().unwrap();
    let a = sock(&net, f);
    let b = sock(&net, f);
    assert_eq!(kind(a.connect(f.lo(0))), ErrorKind::InvalidInput);
    assert_eq!(
        kind(a.connect(SocketAddr::new(f.other, 9))),
        ErrorKind::InvalidInput
    );
    assert_eq!(kind(a.connect(f.foreign(9))), ErrorKind::NetworkUnreachable);
    assert_eq!(
        kind(a.peer_addr()),
        ErrorKind::NotConnected,
        "still unconnected"
    );
    // A list: the first that works.
    a.connect(&[f.foreign(9), b.local_addr().unwrap()][..])
        .unwrap();
    assert_eq!(a.peer_addr().unwrap(), b.local_addr().unwrap());
}

fn connection_refused_on_recv(f: Family) {
    let net = Net::new().unwrap();
    let closed = closed_port(&net, f);
    let a = sock(&net, f);
    a.connect(closed).unwrap();
    // The datagram is sent; the Port Unreachable it causes comes back at once.
    assert_eq!(a.send(b"anyone?").unwrap(), 7);
    let (r, took) = timed(|| a.recv(&mut [0u8; 16]));
    assert_eq!(kind(r), ErrorKind::ConnectionRefused);
    assert!(took < Duration::from_secs(1), "recv waited {took:?}");
    // Reported once.
    assert_empty(&a);
    assert!(a.take_error().unwrap().is_none());
    // peek reports it too (without clearing it, unlike Linux: see loopstack's
    // `Udp::peek_from`), then recv takes it.
    a.send(b"again").unwrap();
    assert_eq!(kind(a.peek(&mut [0u8; 16])), ErrorKind::ConnectionRefused);
    assert_eq!(
        kind(a.peek_from(&mut [0u8; 16])),
        ErrorKind::ConnectionRefused
    );
    assert_eq!(
        kind(a.recv_from(&mut [0u8; 16])),
        ErrorKind::ConnectionRefused
    );
    assert_empty(&a);
}

fn connection_refused_on_send(f: Family) {
    let net = Net::new().unwrap();
    let closed = closed_port(&net, f);
    let a = sock(&net, f);
    a.connect(closed).unwrap();
    assert_eq!(a.send(b"1").unwrap(), 1);
    // The next send reports the refusal instead of sending (as on Linux)...
    assert_eq!(kind(a.send(b"2")), ErrorKind::ConnectionRefused);
    // ...and the one after sends again.
    assert_eq!(a.send(b"3").unwrap(), 1);
    assert_eq!(kind(a.send_to(b"4", closed)), ErrorKind::ConnectionRefused);
    // Once something listens there, the traffic flows.
    let b = UdpSocket::bind(&net, closed).unwrap();
    a.send(b"5").unwrap();
    let mut buf = [0u8; 4];
    assert_eq!(b.recv_from(&mut buf).unwrap(), (1, a.local_addr().unwrap()));
    assert_eq!(buf[0], b'5');
}

fn connection_refused_is_not_reported_unconnected(f: Family) {
    let net = Net::new().unwrap();
    let closed = closed_port(&net, f);
    let a = sock(&net, f);
    // Linux reports ICMP errors only to connected UDP sockets (without IP_RECVERR).
    a.send_to(b"x", closed).unwrap();
    assert!(a.take_error().unwrap().is_none());
    assert_eq!(a.send_to(b"y", closed).unwrap(), 1);
    assert_empty(&a);
}

fn take_error_is_taken_once(f: Family) {
    let net = Net::new().unwrap();
    let closed = closed_port(&net, f);
    let a = sock(&net, f);
    assert!(a.take_error().unwrap().is_none());
    a.connect(closed).unwrap();
    a.send(b"x").unwrap();
    let e = a.take_error().unwrap().expect("the refusal is pending");
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
    assert!(a.take_error().unwrap().is_none());
    // Taken: neither recv nor send sees it.
    assert_empty(&a);
    assert_eq!(a.send(b"y").unwrap(), 1);
}

fn peek_and_peek_from_do_not_consume(f: Family) {
    let net = Net::new().unwrap();
    let a = sock(&net, f);
    let b = sock(&net, f);
    let aaddr = a.local_addr().unwrap();
    a.send_to(b"first", b.local_addr().unwrap()).unwrap();
    a.send_to(b"second", b.local_addr().unwrap()).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(b.peek_from(&mut buf).unwrap(), (5, aaddr));
    assert_eq!(&buf[..5], b"first");
    assert_eq!(b.peek(&mut buf).unwrap(), 5);
    // A short buffer: truncated, still not consumed.
    let mut short = [0u8; 3];
    assert_eq!(b.peek(&mut short).unwrap(), 3);
    assert_eq!(&short, b"fir");
    assert_eq!(b.recv_from(&mut buf).unwrap(), (5, aaddr));
    assert_eq!(&buf[..5], b"first");
    // Now the second is at the front.
    assert_eq!(b.peek_from(&mut buf).unwrap(), (6, aaddr));
    assert_eq!(b.recv(&mut buf).unwrap(), 6);
    assert_eq!(&buf[..6], b"second");
    assert_empty(&b);
}

fn a_long_datagram_is_truncated_to_the_buffer(f: Family) {
    let net = Net::new().unwrap();
    let a = sock(&net, f);
    let b = sock(&net, f);
    let data: Vec<u8> = (0..100u8).collect();
    a.send_to(&data, b.local_addr().unwrap()).unwrap();
    a.send_to(b"next", b.local_addr().unwrap()).unwrap();
    let mut small = [0u8; 10];
    assert_eq!(
        b.recv_from(&mut small).unwrap(),
        (10, a.local_addr().unwrap())
    );
    assert_eq!(&small[..], &data[..10]);
    // The rest of that datagram is gone: the next receive gets the next datagram.
    let mut buf = [0u8; 128];
    assert_eq!(b.recv(&mut buf).unwrap(), 4);
    assert_eq!(&buf[..4], b"next");
    // An empty buffer takes (and discards) a whole datagram.
    a.send_to(b"lost", b.local_addr().unwrap()).unwrap();
    assert_eq!(b.recv(&mut []).unwrap(), 0);
    assert_empty(&b);
}

// ---------------------------------------------------------------------- options

fn read_timeout_option_and_expiry(f: Family) {
    let net = Net::new().unwrap();
    let a = sock(&net, f);
    let t = Duration::from_millis(100);
    assert_eq!(
        kind(a.set_read_timeout(Some(Duration::ZERO))),
        ErrorKind::InvalidInput
    );
    a.set_read_timeout(Some(t)).unwrap();
    assert_eq!(a.read_timeout().unwrap(), Some(t));
    assert_eq!(
        kind(a.set_read_timeout(Some(Duration::ZERO))),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        a.read_timeout().unwrap(),
        Some(t),
        "unchanged by the refusal"
    );
    let mut buf = [0u8; 8];
    for (name, r) in [
        ("recv", timed(|| a.recv(&mut buf).map(drop))),
        ("recv_from", timed(|| a.recv_from(&mut buf).map(drop))),
        ("peek", timed(|| a.peek(&mut buf).map(drop))),
        ("peek_from", timed(|| a.peek_from(&mut buf).map(drop))),
    ] {
        let (r, took) = r;
        assert_eq!(kind(r), ErrorKind::WouldBlock, "{name}");
        assert!(took >= t, "{name} returned after {took:?}");
        assert!(
            took < Duration::from_secs(3),
            "{name} returned after {took:?}"
        );
    }
    a.set_read_timeout(None).unwrap();
    assert_eq!(a.read_timeout().unwrap(), None);
}

fn write_timeout_option(f: Family) {
    let net = Net::new().unwrap();
    let a = sock(&net, f);
    let t = Duration::from_millis(250);
    assert_eq!(
        kind(a.set_write_timeout(Some(Duration::ZERO))),
        ErrorKind::InvalidInput
    );
    a.set_write_timeout(Some(t)).unwrap();
    assert_eq!(a.write_timeout().unwrap(), Some(t));
    // Sends still go through (a buffer is free).
    let b = sock(&net, f);
    a.send_to(b"x", b.local_addr().unwrap()).unwrap();
    assert_eq!(b.recv(&mut [0u8; 4]).unwrap(), 1);
    a.set_write_timeout(None).unwrap();
    assert_eq!(a.write_timeout().unwrap(), None);
}

fn nonblocking_mode(f: Family) {
    let net = Net::new().unwrap();
    let a = sock(&net, f);
    let b = sock(&net, f);
    b.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 8];
    let (r, took) = timed(|| b.recv_from(&mut buf));
    assert_eq!(kind(r), ErrorKind::WouldBlock);
    assert!(took < Duration::from_secs(1));
    assert_eq!(kind(b.recv(&mut buf)), ErrorKind::WouldBlock);
    assert_eq!(kind(b.peek(&mut buf)), ErrorKind::WouldBlock);
    assert_eq!(kind(b.peek_from(&mut buf)), ErrorKind::WouldBlock);
    // Non-blocking wins over a read timeout.
    b.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (r, took) = timed(|| b.recv(&mut buf));
    assert_eq!(kind(r), ErrorKind::WouldBlock);
    assert!(took < Duration::from_secs(1));
    // A datagram arrives: the next receive gets it.
    a.send_to(b"data", b.local_addr().unwrap()).unwrap();
    assert_eq!(b.recv_from(&mut buf).unwrap(), (4, a.local_addr().unwrap()));
    assert_eq!(kind(b.recv(&mut buf)), ErrorKind::WouldBlock);
    // Sending never waits for a peer: it works non-blocking.
    b.send_to(b"back", a.local_addr().unwrap()).unwrap();
    assert_eq!(a.recv(&mut buf).unwrap(), 4);
}

fn try_clone_shares_the_socket(f: Family) {
    let net = Net::new().unwrap();
    let a = sock(&net, f);
    let b = sock(&net, f);
    let addr = a.local_addr().unwrap();
    let clone = a.try_clone().unwrap();
    assert_eq!(clone.local_addr().unwrap(), addr);
    // Send on the clone: it comes from the same address.
    clone.send_to(b"clone", b.local_addr().unwrap()).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(b.recv_from(&mut buf).unwrap(), (5, addr));
    // One queue: a datagram read through one handle is gone for the other.
    b.send_to(b"one", addr).unwrap();
    assert_eq!(a.recv(&mut buf).unwrap(), 3);
    clone.set_nonblocking(true).unwrap();
    assert_eq!(kind(clone.recv(&mut buf)), ErrorKind::WouldBlock);
    // Options are shared: non-blocking set on the clone applies to the original.
    assert_eq!(kind(a.recv(&mut buf)), ErrorKind::WouldBlock);
    clone.set_nonblocking(false).unwrap();
    clone
        .set_read_timeout(Some(Duration::from_millis(40)))
        .unwrap();
    assert_eq!(a.read_timeout().unwrap(), Some(Duration::from_millis(40)));
    // Connecting through one connects both.
    clone.connect(b.local_addr().unwrap()).unwrap();
    assert_eq!(a.peer_addr().unwrap(), b.local_addr().unwrap());
    // Dropping one handle keeps the socket; dropping the last frees the port.
    drop(a);
    assert_eq!(kind(UdpSocket::bind(&net, addr)), ErrorKind::AddrInUse);
    clone.send(b"alive").unwrap();
    assert_eq!(b.recv(&mut buf).unwrap(), 5);
    drop(clone);
    UdpSocket::bind(&net, addr).unwrap();
}

fn too_large_a_datagram_is_invalid_input(f: Family) {
    let net = Net::new().unwrap();
    let a = sock(&net, f);
    let b = sock(&net, f);
    // One byte over the limit (65508 on IPv4, 65528 on IPv6): "message too long". Linux
    // says EMSGSIZE, which std reports as an uncategorized kind; loopstack as InvalidInput.
    let big = vec![0u8; f.max_payload + 1];
    assert_eq!(
        kind(a.send_to(&big, b.local_addr().unwrap())),
        ErrorKind::InvalidInput
    );
    a.connect(b.local_addr().unwrap()).unwrap();
    assert_eq!(kind(a.send(&big)), ErrorKind::InvalidInput);
    assert_empty(&b);
}

fn the_largest_datagram_goes_through(f: Family) {
    let net = Net::new().unwrap();
    let a = sock(&net, f);
    let b = sock(&net, f);
    let data: Vec<u8> = (0..f.max_payload).map(|i| (i % 253) as u8).collect();
    assert_eq!(
        a.send_to(&data, b.local_addr().unwrap()).unwrap(),
        f.max_payload
    );
    let mut buf = vec![0u8; 70_000];
    let (n, from) = b.recv_from(&mut buf).unwrap();
    assert_eq!((n, from), (f.max_payload, a.local_addr().unwrap()));
    assert!(buf[..n] == data[..], "the datagram differs");
}

fn network_and_host_unreachable(f: Family) {
    let net = Net::new().unwrap();
    let a = sock(&net, f);
    let b = sock(&net, f);
    let baddr = b.local_addr().unwrap();
    // No route to the documentation prefix: nothing is sent.
    assert_eq!(
        kind(a.send_to(b"x", f.foreign(9))),
        ErrorKind::NetworkUnreachable
    );
    // Without the local route, loopback is unreachable too; with an unreachable route in
    // its place, it is "no route to host".
    let removed = net
        .with(|s| s.ip_mut().routes_mut().remove(f.local_route(), 0))
        .unwrap();
    assert_eq!(kind(a.send_to(b"x", baddr)), ErrorKind::NetworkUnreachable);
    assert_eq!(kind(a.connect(baddr)), ErrorKind::NetworkUnreachable);
    net.with(|s| {
        s.ip_mut()
            .routes_mut()
            .add(Route::unreachable(f.local_route()))
    })
    .unwrap();
    assert_eq!(kind(a.send_to(b"x", baddr)), ErrorKind::HostUnreachable);
    assert_eq!(kind(a.connect(baddr)), ErrorKind::HostUnreachable);
    net.with(|s| {
        let routes = s.ip_mut().routes_mut();
        routes.remove(f.local_route(), 0).unwrap();
        routes.add(removed).unwrap();
    });
    a.send_to(b"ok", baddr).unwrap();
    assert_eq!(b.recv(&mut [0u8; 4]).unwrap(), 2);
}

fn dropping_frees_the_port(f: Family) {
    let net = Net::new().unwrap();
    let a = sock(&net, f);
    let addr = a.local_addr().unwrap();
    let b = sock(&net, f);
    b.send_to(b"unread", addr).unwrap();
    drop(a);
    // Bound again, the port is free, and the old socket's queue did not survive.
    let again = UdpSocket::bind(&net, addr).unwrap();
    assert_eq!(again.local_addr().unwrap(), addr);
    assert_empty(&again);
    b.send_to(b"new", addr).unwrap();
    assert_eq!(again.recv(&mut [0u8; 8]).unwrap(), 3);
}

fn a_blocked_recv_wakes_for_a_datagram_from_another_thread(f: Family) {
    let net = Net::new().unwrap();
    let a = sock(&net, f);
    let b = sock(&net, f);
    let baddr = b.local_addr().unwrap();
    let sender = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        a.send_to(b"wake up", baddr).unwrap();
        a
    });
    let mut buf = [0u8; 16];
    let (r, took) = timed(|| b.recv_from(&mut buf));
    let a = sender.join().unwrap();
    assert_eq!(r.unwrap(), (7, a.local_addr().unwrap()));
    assert!(
        took >= Duration::from_millis(40),
        "recv returned after {took:?}"
    );
}
